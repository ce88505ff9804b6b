import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { startLockoutWatcher, startOutboxDelivery } from '../../src/jobs/alerts.js';
import { buttonsOf, textOf } from '../../src/slack/sim/driver.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, linkSlack, totpOf, type TestUser } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';

/**
 * Issue 12, storms: a wave of lockouts (credential stuffing) beyond LOCKOUT_STORM_PER_MINUTE
 * becomes ONE summary message in the security channel, updated in place; no card per lockout
 * unless an admin asks; "Unlock all listed" needs admin + step-up and is audited per account.
 * Real PostgreSQL (the wave comes from 100 application connections at once); Slack's pace is on.
 */
const real = !!process.env.DATABASE_URL;
const SEC = 'C_SECURITY';
const WAVE = 100;

let db: Db;
let url: string;
let store: Store;
let fake: FakeSlack;
let cleanup: () => Promise<void>;
let t: TestApp;
let stops: (() => Promise<void>)[] = [];
let bob: TestUser;

async function until<T>(get: () => T | Promise<T>, ok: (v: T) => boolean, timeoutMs: number, what: string): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The application locks `names` at the same moment, one connection each (as in the benchmark). */
async function wave(names: string[]) {
  const clients = await Promise.all(
    names.map(async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      return c;
    }),
  );
  try {
    await Promise.all(
      names.map(async (username, i) => {
        const c = clients[i];
        const { rows } = await c.query<{ id: number }>('SELECT id FROM "user" WHERE username = $1', [username]);
        await c.query(
          `INSERT INTO audit_log (user_id, action, entity_type, details, ip_address) VALUES ($1, 'login_failed', 'user', $2, $3)`,
          [rows[0].id, JSON.stringify({ username, reason: 'invalid_password' }), `198.51.100.${(i % 3) + 1}`],
        );
        await c.query('BEGIN');
        await c.query(`UPDATE "user" SET failed_login_attempts = 5, locked_until = now() + interval '30 minutes' WHERE id = $1`, [rows[0].id]);
        await c.query(
          `INSERT INTO audit_log (user_id, action, entity_type, entity_id, details, ip_address) VALUES ($1, 'login_locked', 'user', $1, $2, '198.51.100.1')`,
          [rows[0].id, JSON.stringify({ username, attempts: 5 })],
        );
        await c.query('COMMIT');
      }),
    );
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
}

describe.skipIf(!real)('lockout storms (real PostgreSQL)', () => {
  beforeAll(async () => {
    let made;
    ({ db, cleanup, url: made } = await createTestDb());
    url = made!;
    store = createTestStore();
    fake = await new FakeSlack().start();
    bob = await createUser(db, { username: 'bob', role: 'admin', twoFa: true, area: null });
    await linkSlack(db, 'U_BOB', bob.id);
    const dave = await createUser(db, { username: 'dave', role: 'dispatcher', area: 'indore' });
    await linkSlack(db, 'U_DAVE', dave.id);
    for (let i = 0; i < WAVE; i++) await createUser(db, { username: `victim${String(i).padStart(3, '0')}`, role: 'dispatcher', area: 'indore' });
    // The real pace (one message a second per channel): storms are about it.
    t = await startTestApp({ db, store, fake, env: { SECURITY_CHANNEL: SEC, OUTBOX_PACE_MS: '1000' } });
    stops = [await startLockoutWatcher(t.warden.services), await startOutboxDelivery(t.warden.services)];
  }, 60_000);

  afterAll(async () => {
    for (const s of stops) await s();
    await t?.stop();
    await fake?.stop();
    await store?.close();
    await cleanup?.();
  });

  it('a wave of 100 lockouts in a second posts one storm message, updated in place, and no per-lockout cards', async () => {
    const names = Array.from({ length: WAVE }, (_, i) => `victim${String(i).padStart(3, '0')}`);
    await wave(names);
    const final = await until(
      () => fake.channelMessages(SEC),
      (ms) => ms.length === 1 && /Lockout storm: 100 accounts locked/.test(ms[0].text ?? ''),
      20_000,
      'the storm message to count all 100',
    );
    // One message in the channel, nothing else: no card per lockout.
    expect(final).toHaveLength(1);
    const posts = fake.callsTo('chat.postMessage').filter((c) => c.args.channel === SEC);
    expect(posts).toHaveLength(1);
    expect(posts.some((c) => /Account locked:/.test(textOf(c.args)))).toBe(false);
    const updates = fake.callsTo('chat.update').filter((c) => c.args.ts === final[0].ts);
    expect(updates.length).toBeGreaterThan(0);
    const text = textOf({ text: final[0].text, blocks: final[0].blocks });
    expect(text).toContain('100 (100 still locked)');
    expect(text).toMatch(/`victim\d{3}`/);
    expect(text).toContain('and 60 more');
    expect(text).toContain('198.51.xxx.xxx'); // top IPs, masked
    expect(buttonsOf(final[0].blocks as any[]).map((b) => b.text)).toEqual(['Unlock all listed', 'Post individual cards']);
    const alerts = await db.query<{ n: number; carded: number }>(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE post_id <> 0)::int AS carded FROM warden_lockout_alert WHERE storm_id IS NOT NULL`,
    );
    expect(alerts.rows[0]).toEqual({ n: 100, carded: 0 });
  });

  it('"Unlock all listed" is refused to non-admins and wrong codes, then unlocks every account with one audit row each', async () => {
    const [msg] = fake.channelMessages(SEC);
    const unlockAll = buttonsOf(msg.blocks as any[]).find((b) => b.text === 'Unlock all listed')!;
    const refused = await t.driver.reply(await t.driver.click('U_DAVE', { ...unlockAll, message: { ts: msg.ts, blocks: msg.blocks as any[] }, channel: SEC }));
    expect(textOf(refused.args)).toMatch(/admin/i);
    const modal = await t.driver.reply(await t.driver.click('U_BOB', { ...unlockAll, message: { ts: msg.ts, blocks: msg.blocks as any[] }, channel: SEC }));
    const wrong = await t.driver.submit('U_BOB', modal.args.view, { totp: '000000' });
    expect(JSON.stringify(wrong.ack)).toMatch(/code/i);
    expect((await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "user" WHERE locked_until > now()`)).rows[0].n).toBe(WAVE);
    const ok = await t.driver.submit('U_BOB', modal.args.view, { totp: await totpOf(bob) });
    expect(ok.answer.status).toBe(200);
    await until(
      async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "user" WHERE locked_until > now()`)).rows[0].n,
      (n) => n === 0,
      15_000,
      'every account to be unlocked',
    );
    const audit = (await auditRows(db, 'unlock_account')).filter((r) => String(r.details.username).startsWith('victim'));
    expect(audit).toHaveLength(WAVE);
    expect(audit[0].details).toMatchObject({ actor: 'bob', slack_user: 'U_BOB' });
    await until(
      () => fake.channelMessages(SEC)[0],
      (m) => /\(0 still locked\)/.test(textOf({ text: m.text, blocks: m.blocks })),
      10_000,
      'the storm message to show the unlock',
    );
    const after = fake.channelMessages(SEC);
    expect(after).toHaveLength(1);
    const afterText = textOf({ text: after[0].text, blocks: after[0].blocks });
    expect(afterText, afterText).toContain('unlocked by bob');
  });

  it('individual cards on demand: an admin asks, they go into the storm\'s thread, paced; the channel still has one message', async () => {
    const [msg] = fake.channelMessages(SEC);
    const cards = buttonsOf(msg.blocks as any[]).find((b) => b.text === 'Post individual cards')!;
    const refused = await t.driver.reply(await t.driver.click('U_DAVE', { ...cards, message: { ts: msg.ts, blocks: msg.blocks as any[] }, channel: SEC }));
    expect(textOf(refused.args)).toMatch(/admin/i);
    const reply = await t.driver.reply(await t.driver.click('U_BOB', { ...cards, message: { ts: msg.ts, blocks: msg.blocks as any[] }, channel: SEC }));
    expect(textOf(reply.args)).toContain(`Posting ${WAVE} individual cards`);
    const first = await fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.thread_ts === msg.ts, 10_000);
    expect(textOf(first.args)).toMatch(/Unlocked: victim\d{3}/);
    const queued = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM warden_outbox o JOIN warden_alert_storm s ON o.thread_of_id = s.post_id`);
    expect(queued.rows[0].n).toBe(WAVE);
    expect(fake.channelMessages(SEC)).toHaveLength(1);
    await until(
      () => fake.channelMessages(SEC)[0],
      (m) => !buttonsOf(m.blocks as any[]).some((b) => b.text === 'Post individual cards'),
      10_000,
      'the storm message to drop the cards button',
    );
  });
});
