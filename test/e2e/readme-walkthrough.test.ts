import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConsoleProcess } from '../helpers/console-process.js';

/**
 * The README's "Try it" walk-through, typed into a real console exactly as written: each
 * `USER> command` is sent, each `│ question: answer` is answered when the question appears,
 * and every other line must appear in that order. Numbers in the README (counts, one-time
 * codes) stand for whatever the console shows; a code the README types back is the one the
 * console showed in its place.
 */
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-readme-'));
const consoles: ConsoleProcess[] = [];
afterAll(() => {
  for (const c of consoles) c.kill();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

function block(name: string): string[] {
  const readme = fs.readFileSync('README.md', 'utf8');
  const at = readme.indexOf(`<!-- walkthrough:${name} -->`);
  expect(at).toBeGreaterThan(0);
  const start = readme.indexOf('```text\n', at) + '```text\n'.length;
  return readme.slice(start, readme.indexOf('```', start)).split('\n').filter((l) => l.trim());
}

/** WALKTHROUGH_TRANSCRIPTS=dir keeps what the newcomer saw (the issue closes with it). */
function keep(name: string, out: string): void {
  const dir = process.env.WALKTHROUGH_TRANSCRIPTS;
  if (dir) fs.writeFileSync(path.join(dir, `i14-walkthrough-${name}.txt`), `$ npm run console\n${out}`);
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function walk(c: ConsoleProcess, lines: string[]): Promise<void> {
  const seen = new Map<string, string>(); // README digits → the console's
  const typed = (answer: string) => answer.replace(/\d+/g, (d) => seen.get(d) ?? d);
  // The lines after one input may arrive in any order (a reply, a card updated by a job, a DM):
  // each is looked for from where that input was sent; the next input waits until all were seen.
  let from = 0;
  let end = 0;
  const sendAfter = (text: string) => {
    c.skipTo(end);
    c.send(text);
  };
  for (const line of lines) {
    const command = /^([A-Z_0-9]+)> (.*)$/.exec(line);
    const form = /^│ (.+?: )(.*)$/.exec(line);
    if (command) {
      c.skipTo(end);
      await c.waitFor(new RegExp(`\\n${command[1]}> $`), 120_000);
      from = end = c.out.length;
      sendAfter(command[2]);
    } else if (form) {
      c.skipTo(end);
      await c.waitFor(new RegExp(`${escape(form[1])}$`));
      from = end = c.out.length;
      sendAfter(typed(form[2]));
    } else {
      const digits = line.match(/\d+/g) ?? [];
      const pattern = new RegExp(escape(line).replace(/\d+/g, '(\\d+)'));
      const got = await c.seen(pattern, from).catch((e: Error) => {
        throw new Error(`README line not seen: ${line}\n${e.message}`);
      });
      digits.forEach((d, i) => seen.set(d, got.match[i + 1]));
      end = Math.max(end, got.end);
    }
  }
  expect(await c.exited).toBe(0);
}

describe('README "Try it" walk-through', () => {
  it('first run: every described outcome, including the 2FA recovery', async () => {
    const c = new ConsoleProcess([], { WARDEN_DATA_DIR: dataDir });
    consoles.push(c);
    try {
      await c.waitFor('First run: creating demo data', 180_000);
      await walk(c, block('first'));
    } finally {
      c.kill();
      await c.exited;
      keep('first', c.out);
    }
    // The unlock lists the five attempts that locked ravi.k, not an older one of the same name.
    expect(c.out).toMatch(/led here \(5\):\n(• [^\n]*\n){5}\n/);
  }, 600_000);

  it('second run: says how old the demo is, how to reset it, and shows the state left behind', async () => {
    const c = new ConsoleProcess([], { WARDEN_DATA_DIR: dataDir });
    consoles.push(c);
    try {
      await c.waitFor(/Demo data created .* ago; .*`npm run console -- --reset-demo` restores the demo\./, 120_000);
      await walk(c, block('second'));
    } finally {
      c.kill();
      await c.exited;
      keep('second', c.out);
    }
    expect(c.out).not.toContain('First run');
  }, 300_000);
});
