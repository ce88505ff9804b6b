import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import { freePort } from '../helpers/app.js';

/**
 * The "done": an operator copies .env.example to .env, fills in the Slack values and
 * runs `npm start` (scripts/start.mjs) — the real process, from that directory, nothing else in
 * its environment but PATH and HOME (and PORT, because 3000 may be taken on a shared machine).
 * The values filled: SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, and SLACK_API_URL only because
 * Slack here is the local fake (readiness asks Slack's auth.test).
 */

const cleanups: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function fill(text: string, values: Record<string, string>): string {
  let out = text;
  for (const [k, v] of Object.entries(values)) {
    const line = new RegExp(`^${k}=$`, 'm');
    if (!line.test(out)) throw new Error(`.env.example has no empty ${k}= line to fill`);
    out = out.replace(line, `${k}=${v}`);
  }
  return out;
}

it('starts from a copied .env.example with the Slack values filled: /healthz and /readyz 200, one settings line without secrets', { timeout: 180_000 }, async () => {
  const fake = await new FakeSlack().start();
  cleanups.push(() => fake.stop());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-env-example-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const secret = 'env-example-signing-secret-4f1c';
  const token = 'xoxb-env-example-token-77ab';
  fs.writeFileSync(
    path.join(dir, '.env'),
    fill(fs.readFileSync('.env.example', 'utf8'), { SLACK_BOT_TOKEN: token, SLACK_SIGNING_SECRET: secret, SLACK_API_URL: fake.apiUrl }),
  );
  const port = await freePort();
  const child = spawn(process.execPath, [path.resolve('scripts/start.mjs'), 'main'], {
    cwd: dir,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(port) },
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  cleanups.push(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });

  let ready = 0;
  for (let i = 0; i < 600 && ready !== 200 && child.exitCode === null; i++) {
    await new Promise((r) => setTimeout(r, 200));
    ready = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status, () => 0);
  }
  expect(ready, out).toBe(200);
  expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);

  const lines = out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
  const settings = lines.filter((l) => l.msg === 'settings');
  expect(settings).toHaveLength(1);
  expect(settings[0].level).toBe(30);
  expect(settings[0].envFile).toBe('.env');
  expect(settings[0].config).toMatchObject({
    mode: 'http',
    port,
    slackApi: new URL(fake.apiUrl).host,
    database: { kind: 'pglite' },
    store: { kind: 'memory' },
    schedules: expect.objectContaining({ health: '* * * * *', digest: '0 9 * * *' }),
  });
  expect(JSON.stringify(settings[0])).toMatch(/channels/);
  // The embedded database is where .env.example puts it: in the directory Warden was started from.
  expect(fs.existsSync(path.join(dir, '.warden'))).toBe(true);
  // Nothing secret anywhere in the output.
  expect(out).not.toContain(secret);
  expect(out).not.toContain(token);

  child.kill('SIGTERM');
  expect(await exited, out).toBe(0);
});
