import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

/**
 * A real `npm run console` process driven like a person at a keyboard: send a line, wait
 * until the expected text appears, read what was printed since. stdin is a pipe, so the
 * console echoes each line it reads (as a terminal would show it).
 */
const TSX = path.resolve('node_modules/.bin/tsx');
const MAIN = path.resolve('src/console/main.ts');

export function consoleEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'error', ...extra } as NodeJS.ProcessEnv;
}

export class ConsoleProcess {
  readonly child: ChildProcess;
  out = '';
  /** Where the last `since()` read up to. */
  private mark = 0;
  readonly exited: Promise<number | null>;

  constructor(args: string[], env: Record<string, string | undefined>) {
    // Its own process group: tsx runs the console in a child process, and kill() must reach both.
    this.child = spawn(TSX, [MAIN, ...args], { env: consoleEnv(env), detached: true });
    this.child.stdout!.on('data', (d) => (this.out += d));
    this.child.stderr!.on('data', (d) => (this.out += d));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  /** Moves the mark (where the next waitFor starts looking) to an index of `out`. */
  skipTo(index: number): void {
    this.mark = Math.max(this.mark, index);
  }

  /** Waits until `pattern` matches `out` from `from` on (not moving the mark); returns the match and where it ends. */
  async seen(pattern: RegExp, from: number, timeoutMs = 60_000): Promise<{ match: RegExpExecArray; end: number }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = pattern.exec(this.out.slice(from));
      if (m) return { match: m, end: from + m.index + m[0].length };
      if (this.child.exitCode !== null) throw new Error(`console exited (${this.child.exitCode}) before ${pattern}:\n${this.out.slice(from)}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}; output since:\n${this.out.slice(from)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** Waits until the output after the mark matches; returns that output and moves the mark past it. */
  async waitFor(pattern: RegExp | string, timeoutMs = 60_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const rest = this.out.slice(this.mark);
      const m = typeof pattern === 'string' ? rest.indexOf(pattern) : rest.search(pattern);
      if (m >= 0) {
        const len = typeof pattern === 'string' ? pattern.length : (rest.match(pattern)?.[0].length ?? 0);
        this.mark += m + len;
        return rest.slice(0, m + len);
      }
      if (this.child.exitCode !== null) throw new Error(`console exited (${this.child.exitCode}) before ${pattern}:\n${rest}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}; output since mark:\n${rest}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Sends a line and waits for the next prompt (`USER> ` at the start of a line) or a form question. */
  async line(line: string, until: RegExp | string = /\n[A-Z_0-9]+> $/, timeoutMs = 60_000): Promise<string> {
    this.send(line);
    return this.waitFor(until, timeoutMs);
  }

  async quit(): Promise<number | null> {
    this.send('quit');
    this.child.stdin!.end();
    return this.exited;
  }

  kill(): void {
    if (this.child.exitCode !== null || !this.child.pid) return;
    try {
      process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      this.child.kill('SIGKILL');
    }
  }
}

/** Runs the console with arguments to its end (scripted use). */
export async function runConsole(args: string[], env: Record<string, string | undefined>, stdin = ''): Promise<{ code: number | null; out: string; ms: number }> {
  const started = Date.now();
  const c = new ConsoleProcess(args, env);
  c.child.stdin!.end(stdin);
  const code = await c.exited;
  return { code, out: c.out, ms: Date.now() - started };
}
