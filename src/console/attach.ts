import fs from 'node:fs';
import net from 'node:net';

/**
 * Scripted commands sent to the console that holds the data directory. The holder listens
 * on a Unix socket (mode 0600, next to the database: only its OS user can connect); a second
 * `npm run console -- --as U_ADMIN "…"` sends its lines there instead of opening the database
 * itself, so there is one writer and the change is seen by the open console at once. It is
 * also fast: the second process opens neither the database nor the app.
 *
 * Protocol: one JSON line `{as, lines}` in; JSON lines `{out}` back, then `{done, failed}`.
 */

export interface AttachRequest {
  as: string;
  lines: string[];
}

export type RunRemote = (req: AttachRequest, out: (text: string) => void) => Promise<{ failed: boolean }>;

export async function serveAttach(socketPath: string, run: RunRemote): Promise<{ close(): Promise<void> }> {
  fs.rmSync(socketPath, { force: true });
  const active = new Set<Promise<unknown>>();
  const server = net.createServer((sock) => {
    sock.on('error', () => {});
    let buf = '';
    sock.on('data', (chunk) => {
      buf += chunk.toString('utf8');
      const nl = buf.indexOf('\n');
      if (nl < 0) {
        if (buf.length > 1_000_000) sock.destroy();
        return;
      }
      sock.removeAllListeners('data');
      let req: AttachRequest;
      try {
        req = JSON.parse(buf.slice(0, nl));
        if (typeof req.as !== 'string' || !Array.isArray(req.lines) || !req.lines.every((l) => typeof l === 'string')) throw new Error('bad request');
      } catch {
        sock.end(`${JSON.stringify({ out: 'The console did not understand the request.' })}\n${JSON.stringify({ done: true, failed: true })}\n`);
        return;
      }
      const write = (o: object) => {
        if (!sock.destroyed) sock.write(`${JSON.stringify(o)}\n`);
      };
      const job = run(req, (text) => write({ out: text }))
        .then(
          (r) => write({ done: true, failed: r.failed }),
          (e) => write({ out: `Console error: ${(e as Error).message}`, done: true, failed: true }),
        )
        .finally(() => {
          sock.end();
          active.delete(job);
        });
      active.add(job);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  fs.chmodSync(socketPath, 0o600);
  return {
    async close() {
      // Scripted commands already running finish first: nothing they were told is lost.
      await Promise.allSettled([...active]);
      await new Promise<void>((resolve) => server.close(() => resolve()));
      fs.rmSync(socketPath, { force: true });
    },
  };
}

/** Sends lines to the holding console and prints what it answers; resolves with the exit code. */
export function sendToConsole(socketPath: string, req: AttachRequest, print: (text: string) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    let buf = '';
    let code: number | undefined;
    sock.on('connect', () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on('data', (chunk) => {
      buf += chunk.toString('utf8');
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (typeof msg.out === 'string') print(msg.out);
        if (msg.done) code = msg.failed ? 1 : 0;
      }
    });
    sock.on('error', reject);
    sock.on('close', () => {
      if (code === undefined) print('The console holding the database closed before answering; the command may not have run.');
      resolve(code ?? 1);
    });
  });
}
