import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { startLockoutWatcher, startOutboxDelivery, startStormRenderer } from '../../src/jobs/alerts.js';
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
const LATE = 10;

let db: Db;
let url: string;
let store: Store;
let fake: FakeSlack;
let cleanup: () => Promise<void>;
let t: TestApp;
let stops: (() => Promise<void>)[] = [];
let bob: TestUser;
// Two more admins: each step-up code works once, and bob's of this minute are used by then.
let carol: TestUser;
let erin: TestUser;

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
    carol = await createUser(db, { username: 'carol', role: 'admin', twoFa: true, area: null });
    await linkSlack(db, 'U_CAROL', carol.id);
    erin = await createUser(db, { username: 'erin', role: 'admin', twoFa: true, area: null });
    await linkSlack(db, 'U_ERIN', erin.id);
    const dave = await createUser(db, { username: 'dave', role: 'dispatcher', area: 'indore' });
    await linkSlack(db, 'U_DAVE', dave.id);
    for (let i = 0; i < WAVE; i++) await createUser(db, { username: `victim${String(i).padStart(3, '0')}`, role: 'dispatcher', area: 'indore' });
    for (let i = 0; i < LATE; i++) await createUser(db, { username: `late${String(i).padStart(2, '0')}`, role: 'dispatcher', area: 'indore' });
    // The real pace (one message a second per channel): storms are about it.
    t = await startTestApp({ db, store, fake, env: { SECURITY_CHANNEL: SEC, OUTBOX_PACE_MS: '1000' } });
    stops = [await startLockoutWatcher(t.warden.services), await startStormRenderer(t.warden.services), await startOutboxDelivery(t.warden.services)];
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
    // The message is re-rendered off the lockouts' transactions, a few times a second at most —
    // not once per lockout (each lockout arrives twice: its audit row and its locked_until).
    const renders = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM warden_outbox o JOIN warden_alert_storm s ON o.target_id = s.post_id WHERE o.kind = 'update'`,
    );
    expect(renders.rows[0].n).toBeLessThan(WAVE / 2);
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

  it('"Unlock all listed" stopped half-way: every account it unlocked is marked in the storm; a second click finishes exactly the rest', async () => {
    const services = t.warden.services;
    const names = Array.from({ length: LATE }, (_, i) => `late${String(i).padStart(2, '0')}`);
    await wave(names);
    const lateAlerts = async () =>
      (await db.query<{ username: string; storm_id: number | null; unlocked: boolean }>(
        `SELECT username, storm_id, unlocked_at IS NOT NULL AS unlocked FROM warden_lockout_alert WHERE username LIKE 'late%' ORDER BY username`,
      )).rows;
    await until(lateAlerts, (rows) => rows.length === LATE && rows.every((r) => r.storm_id), 20_000, 'the late lockouts to join a storm');
    const stormId = (await lateAlerts())[0].storm_id!;
    const storm = await services.storms.get(stormId);
    const ref = (await until(() => services.outbox.refOf(storm.post_id), (r) => !!r, 10_000, 'the storm message'))!;
    const stormText = () => {
      const m = fake.channelMessages(SEC).find((x) => x.ts === ref.ts)!;
      return textOf({ text: m.text, blocks: m.blocks });
    };
    const stillLockedLine = new RegExp(`\\((\\d+) still locked\\)`);
    await until(stormText, (txt) => stillLockedLine.test(txt) && Number(stillLockedLine.exec(txt)![1]) === LATE, 10_000, 'the storm to list the late accounts as locked');

    // In the order Unlock all takes them.
    const order = (await services.storms.lockedAlerts(stormId)).map((a) => a.username);
    expect([...order].sort()).toEqual(names);
    // The process stops after the 4th unlock (injected: the 5th never starts).
    const ua = services.userAdmin;
    const real = ua.unlockAfterStepUp.bind(ua);
    let calls = 0;
    ua.unlockAfterStepUp = async (...args: Parameters<typeof real>) => {
      if (++calls > 4) throw new Error('injected fault: Warden stopped half-way through Unlock all');
      return real(...args);
    };
    const lockedNow = async () =>
      (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "user" WHERE username LIKE 'late%' AND locked_until > now()`)).rows[0].n;
    const click = async (slackUser: string, admin: TestUser) => {
      const m = fake.channelMessages(SEC).find((x) => x.ts === ref.ts)!;
      const button = buttonsOf(m.blocks as any[]).find((b) => b.text === 'Unlock all listed')!;
      const modal = await t.driver.reply(await t.driver.click(slackUser, { ...button, message: { ts: m.ts, blocks: m.blocks as any[] }, channel: SEC }));
      return { modal, submit: async () => t.driver.submit(slackUser, modal.args.view, { totp: await totpOf(admin) }) };
    };
    try {
      const first = await click('U_CAROL', carol);
      expect(JSON.stringify(first.modal.args.view)).toContain(`Unlock the *${LATE}* account`);
      expect((await first.submit()).answer.status).toBe(200);
      await until(() => calls, (n) => n > 4, 10_000, 'the unlock to stop half-way');
    } finally {
      ua.unlockAfterStepUp = real;
    }
    // Four accounts unlocked, each audited once — and each marked unlocked in the storm, in the same transaction.
    expect(await lockedNow()).toBe(LATE - 4);
    const audited = () => auditRows(db, 'unlock_account').then((rows) => rows.filter((r) => String(r.details.username).startsWith('late')));
    expect(await audited()).toHaveLength(4);
    const marked = (await lateAlerts()).filter((r) => r.unlocked).map((r) => r.username);
    expect(marked).toEqual(order.slice(0, 4).sort());
    expect((await services.storms.lockedAlerts(stormId)).map((a) => a.username)).toEqual(order.slice(4));
    // The storm message follows: it no longer lists them as locked.
    await until(stormText, (txt) => Number(stillLockedLine.exec(txt)?.[1]) === LATE - 4, 10_000, 'the storm message to show the four unlocked');

    // A second click offers exactly the rest and finishes them: no account unlocked (or audited) twice.
    const second = await click('U_ERIN', erin);
    expect(JSON.stringify(second.modal.args.view)).toContain(`Unlock the *${LATE - 4}* account`);
    expect((await second.submit()).answer.status).toBe(200);
    await until(lockedNow, (n) => n === 0, 15_000, 'every late account to be unlocked');
    await until(async () => (await lateAlerts()).every((r) => r.unlocked), (ok) => ok, 10_000, 'every late lockout marked');
    const rows = await audited();
    expect(rows).toHaveLength(LATE);
    expect(new Set(rows.map((r) => r.details.username)).size).toBe(LATE);
    await until(stormText, (txt) => /\(0 still locked\)/.test(txt) && /unlocked by erin/.test(txt), 10_000, 'the storm message to show every account unlocked');
  });

  it('individual cards on demand: an admin asks, they go into the storm\'s thread, paced; the channel still has one message', async () => {
    const [msg] = fake.channelMessages(SEC);
    const cards = buttonsOf(msg.blocks as any[]).find((b) => b.text === 'Post individual cards')!;
    const refused = await t.driver.reply(await t.driver.click('U_DAVE', { ...cards, message: { ts: msg.ts, blocks: msg.blocks as any[] }, channel: SEC }));
    expect(textOf(refused.args)).toMatch(/admin/i);
    const reply = await t.driver.reply(await t.driver.click('U_BOB', { ...cards, message: { ts: msg.ts, blocks: msg.blocks as any[] }, channel: SEC }));
    // The wave's lockouts and the late ones of the half-way test joined the same storm.
    expect(textOf(reply.args)).toContain(`Posting ${WAVE + LATE} individual cards`);
    const first = await fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.thread_ts === msg.ts, 10_000);
    expect(textOf(first.args)).toMatch(/Unlocked: victim\d{3}/);
    const queued = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM warden_outbox o JOIN warden_alert_storm s ON o.thread_of_id = s.post_id`);
    expect(queued.rows[0].n).toBe(WAVE + LATE);
    expect(fake.channelMessages(SEC)).toHaveLength(1);
    await until(
      () => fake.channelMessages(SEC)[0],
      (m) => !buttonsOf(m.blocks as any[]).some((b) => b.text === 'Post individual cards'),
      10_000,
      'the storm message to drop the cards button',
    );
  });
});
