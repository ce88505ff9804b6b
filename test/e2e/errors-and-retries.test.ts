import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWarden, type Warden } from '../../src/bootstrap.js';
import { loadConfig } from '../../src/config.js';
import { PgDb, type Db } from '../../src/db/index.js';
import { createLogger, redactPaths } from '../../src/logger.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import { SlackDriver, textOf } from '../../src/slack/sim/driver.js';
import { RedisStore, type Store } from '../../src/store/index.js';
import { freePort, SIGNING_SECRET } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { createUser, linkSlack, totpOf } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';

let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
let warden: Warden;
let fake: FakeSlack;
let driver: SlackDriver;
const logLines: any[] = [];

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  fake = await new FakeSlack().start();
  const admin = await createUser(db, { username: 'erradmin', role: 'admin', area: null });
  await linkSlack(db, 'U_ERR', admin.id);
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logLines.push(JSON.parse(line));
      cb();
    },
  });
  const logger = pino({ level: 'info', redact: { paths: redactPaths, censor: '[redacted]' } }, sink);
  const config = loadConfig({
    SLACK_BOT_TOKEN: 'xoxb-err',
    SLACK_SIGNING_SECRET: SIGNING_SECRET,
    SLACK_API_URL: fake.apiUrl,
    PORT: String(await freePort()),
  });
  warden = await startWarden({ config, logger, db, store, jobs: false });
  driver = new SlackDriver({ appUrl: `http://127.0.0.1:${warden.port}`, signingSecret: SIGNING_SECRET, fake });
});

afterAll(async () => {
  await warden?.stop();
  await fake?.stop();
  await store?.close();
  await cleanup?.();
});

describe('unexpected errors', () => {
  it('answer with a short apology whose reference matches the log line', async () => {
    await db.query('ALTER TABLE "user" RENAME COLUMN last_login TO last_login_moved');
    try {
      const reply = await driver.reply(await driver.command('U_ERR', '/users list'));
      const text = textOf(reply.args);
      const ref = /ref `([0-9a-f]{8})`/.exec(text)?.[1];
      expect(ref, text).toBeDefined();
      expect(text).toContain('Sorry, something went wrong');
      expect(text).not.toContain('last_login'); // no internals leak to Slack
      const line = logLines.find((l) => l.ref === ref);
      expect(line?.msg).toBe('unexpected error while handling a Slack request');
      expect(JSON.stringify(line.err)).toContain('last_login');
    } finally {
      await db.query('ALTER TABLE "user" RENAME COLUMN last_login_moved TO last_login');
    }
  });
});

describe('Slack retries', () => {
  it('run a re-sent identical request only once', async () => {
    const body = driver.commandBody('U_ERR', '/users list');
    const first = await driver.postSigned(body, { 'x-slack-retry-num': '0' });
    const again = await driver.postSigned(body, { 'x-slack-retry-num': '1', 'x-slack-retry-reason': 'http_timeout' });
    expect(first.status).toBe(200);
    expect(again.status).toBe(200);
    const responseId = new URLSearchParams(body).get('response_url')!.split('/').pop();
    await fake.waitFor((c) => c.method === 'response_url' && c.responseId === responseId);
    await new Promise((r) => setTimeout(r, 500));
    expect(fake.calls.filter((c) => c.method === 'response_url' && c.responseId === responseId)).toHaveLength(1);
  });

  it('answer a read-only command once when the retry arrives while the first delivery still runs (#15: reads overlap the check)', async () => {
    for (const line of ['/users show erradmin', '/users list', '/audit action:login since:1h', '/audit failed-logins 1h']) {
      const body = driver.commandBody('U_ERR', line);
      const [first, again] = await Promise.all([
        driver.postSigned(body, { 'x-slack-retry-num': '0' }),
        driver.postSigned(body, { 'x-slack-retry-num': '1', 'x-slack-retry-reason': 'http_timeout' }),
      ]);
      expect([first.status, again.status]).toEqual([200, 200]);
      const responseId = new URLSearchParams(body).get('response_url')!.split('/').pop();
      await fake.waitFor((c) => c.method === 'response_url' && c.responseId === responseId);
      await new Promise((r) => setTimeout(r, 300));
      expect(fake.calls.filter((c) => c.method === 'response_url' && c.responseId === responseId), line).toHaveLength(1);
    }
  });
});

describe('logging', () => {
  it('redacts secrets at any of the first three levels', () => {
    const lines: string[] = [];
    // Warden's own logger: key paths plus shapes (a 6-digit `code` is a TOTP, `err.code` stays readable).
    const log = createLogger({ destination: new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }) });
    log.info({ token: 'xoxb-1', req: { password: 'p', body: { code: '123456', totp_secret: 'S', email: 'a@b.c' } }, apiKey: 'k' }, 'x');
    const out = lines.join('');
    for (const secret of ['xoxb-1', '"p"', '123456', '"S"', 'a@b.c', '"k"']) expect(out).not.toContain(secret);
    expect(out).toContain('[redacted]');
  });
});

describe('outages are answered as outages, not as bugs', () => {
  const startWith = async (opts: { db: Db; store: Store; migrate: 'on' | 'off' }) => {
    const config = loadConfig({
      SLACK_BOT_TOKEN: 'xoxb-err',
      SLACK_SIGNING_SECRET: SIGNING_SECRET,
      SLACK_API_URL: fake.apiUrl,
      PORT: String(await freePort()),
      MIGRATE: opts.migrate,
    });
    const w = await startWarden({ config, logger: pino({ level: 'silent' }), db: opts.db, store: opts.store, jobs: false });
    return { w, d: new SlackDriver({ appUrl: `http://127.0.0.1:${w.port}`, signingSecret: SIGNING_SECRET, fake }) };
  };

  it('database down: a clear answer, and /readyz says why', async () => {
    // Nothing listens on port 1 of loopback: every connection is refused at once.
    const deadDb = PgDb.connect('postgres://warden@127.0.0.1:1/warden', 2);
    const { w, d } = await startWith({ db: deadDb, store, migrate: 'off' });
    try {
      const text = textOf((await d.reply(await d.command('U_ERR', '/users list'))).args);
      expect(text).toContain('Warden cannot reach the application database right now (connection refused (ECONNREFUSED))');
      expect(text).toContain('Nothing was changed');
      expect(text).not.toContain('127.0.0.1');
      const ready = await fetch(`http://127.0.0.1:${w.port}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ status: 'unready', checks: { database: { ok: false } } });
    } finally {
      await w.stop();
      await deadDb.close().catch(() => {});
    }
  });

  it('Redis down: reads still work, step-up refuses clearly and changes nothing', async () => {
    const stepper = await createUser(db, { username: 'outagestepper', role: 'admin', twoFa: true, area: null });
    await createUser(db, { username: 'outagetarget', role: 'dispatcher', area: 'indore' });
    await linkSlack(db, 'U_OUTAGE', stepper.id);
    const deadStore = RedisStore.connect('redis://127.0.0.1:1/0', 'warden-outage:');
    const { w, d } = await startWith({ db, store: deadStore, migrate: 'on' });
    try {
      const list = textOf((await d.reply(await d.command('U_OUTAGE', '/users show outagetarget'))).args);
      expect(list).toContain('outagetarget');
      const modal = await d.reply(await d.command('U_OUTAGE', '/users role outagetarget admin'));
      expect(modal.method).toBe('views.open');
      const { ack } = await d.submit('U_OUTAGE', modal.args.view, { role: 'admin', totp: await totpOf(stepper) });
      expect(JSON.stringify(ack)).toContain('Warden cannot reach its store (Redis) right now');
      const { rows } = await db.query<{ role: string }>(`SELECT role FROM "user" WHERE username = 'outagetarget'`);
      expect(rows[0].role).toBe('dispatcher');
      const ready = await fetch(`http://127.0.0.1:${w.port}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ checks: { store: { ok: false }, database: { ok: true } } });
    } finally {
      await w.stop();
      await deadStore.close();
    }
  });
});
