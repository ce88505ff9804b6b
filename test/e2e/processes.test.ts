import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import { SlackDriver, textOf } from '../../src/slack/sim/driver.js';
import { freePort } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';

/** The README's commands, run as a newcomer would: real processes, real HTTP. */
const TSX = path.resolve('node_modules/.bin/tsx');
const children: ChildProcess[] = [];
const cleanups: (() => Promise<void>)[] = [];

function run(args: string[], env: Record<string, string | undefined>, timeoutMs = 90_000, stdin?: string) {
  const child = spawn(TSX, args, { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env } as NodeJS.ProcessEnv });
  if (stdin !== undefined) child.stdin.end(stdin);
  children.push(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const done = new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
  return { child, done, output: () => out + err };
}

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  for (const c of cleanups) await c();
});

describe('npm start', () => {
  it('names every missing setting, hints at the console, and exits non-zero', async () => {
    const { code, err } = await run(['src/main.ts'], {}).done;
    expect(code).toBe(2);
    expect(err).toContain('SLACK_BOT_TOKEN is not set');
    expect(err).toContain('SLACK_SIGNING_SECRET is not set');
    expect(err).toContain('npm run console');
  });

  it('serves signed requests over HTTP with Slack settings', { timeout: 120_000 }, async () => {
    const fake = await new FakeSlack().start();
    cleanups.push(() => fake.stop());
    const { url, cleanup } = await createTestDb();
    cleanups.push(cleanup);
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-start-'));
    const port = await freePort();
    const secret = 'process-test-secret';
    const proc = run(['src/main.ts'], {
      SLACK_BOT_TOKEN: 'xoxb-process-test',
      SLACK_SIGNING_SECRET: secret,
      SLACK_API_URL: fake.apiUrl,
      PORT: String(port),
      DATABASE_URL: url,
      WARDEN_DATA_DIR: dataDir,
      REDIS_URL: process.env.REDIS_URL,
      LOG_LEVEL: 'warn',
    });
    let ready = false;
    for (let i = 0; i < 300 && !ready; i++) {
      await new Promise((r) => setTimeout(r, 200));
      ready = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200, () => false);
      if (proc.child.exitCode !== null) throw new Error(`npm start exited: ${proc.output()}`);
    }
    expect(ready).toBe(true);
    const driver = new SlackDriver({ appUrl: `http://127.0.0.1:${port}`, signingSecret: secret, fake });
    const i = await driver.command('U_ANYONE', '/users help');
    expect(i.answer.status).toBe(200);
    expect(textOf((await driver.reply(i)).args)).toContain('/users list');
    const unsigned = await driver.post(driver.commandBody('U_ANYONE', '/users help'), {});
    expect(unsigned.status).toBe(401);
    proc.child.kill('SIGTERM');
    expect((await proc.done).code).toBe(0);
  });
});

describe('npm run console', () => {
  it('answers a scripted command on the embedded database with demo data', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-console-'));
    const { code, out, err } = await run(
      ['src/console/main.ts', '--as', 'U_ADMIN', '/users list role:admin', '/users show ravi.k'],
      { WARDEN_DATA_DIR: dataDir, LOG_LEVEL: 'warn' },
      120_000,
    ).done;
    expect(err).not.toMatch(/Error|failed/);
    expect(code).toBe(0);
    expect(out).toMatch(/\d+ users match `role:admin`/);
    expect(out).toContain('alice · admin');
    expect(out).toMatch(/== ravi\.k ==[\s\S]*locked until[\s\S]*\[\d+\] Unlock/);
    expect(fs.existsSync(path.join(dataDir, 'PG_VERSION'))).toBe(true);
  }, 150_000);

  it('asks a form\'s fields at prompts, shows field errors, and can cancel (interactive, piped)', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-console-'));
    const input = ['as U_ADMIN2', '/users delete erin', 'erin', '', '000000', 'cancel', 'quit', ''].join('\n');
    const { code, out } = await run(['src/console/main.ts'], { WARDEN_DATA_DIR: dataDir, LOG_LEVEL: 'error' }, 120_000, input).done;
    expect(code).toBe(0);
    expect(out).toContain('Now acting as U_ADMIN2 (@carol');
    expect(out).toContain('Type erin to confirm');
    expect(out).toContain('That 2FA code is not valid');
    expect(out).toContain('└─ cancelled');
    expect(out).not.toContain('Console error');
  }, 150_000);
});
