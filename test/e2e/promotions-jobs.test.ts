import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { promotionExpiryJob, promotionPollJob } from '../../src/jobs/promotions.js';
import { runJobOnce } from '../../src/jobs/runner.js';
import { buttonsOf, textOf } from '../../src/slack/sim/driver.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, linkSlack, snapshot, totpOf, type TestUser } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';

/**
 * Issue 4, the scheduled side, end to end: requests the web application inserts into
 * promotion_request itself are posted exactly once (two job runs, two concurrent runs, a
 * restart); pending requests past PROMOTION_TTL expire (card, notification, DM, audit) and
 * can no longer be approved.
 */

const CHANNEL = 'C_APPROVALS';
const ENV = { APPROVALS_CHANNEL: CHANNEL, PROMOTION_TTL: '7d' };
let t: TestApp;
let fake: FakeSlack;
let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
let alice: TestUser;

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  fake = await new FakeSlack().start();
  alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  await linkSlack(db, 'U_ALICE', alice.id);
  t = await startTestApp({ db, store, fake, env: ENV });
});

afterAll(async () => {
  await t?.warden.services.promotions.idle();
  await t?.stop();
  await fake?.stop();
  await store?.close();
  await cleanup?.();
});

/** What the web application does: a plain INSERT, no Warden involved. */
async function appInserts(userId: number, reason: string, ageSql = '0 seconds'): Promise<number> {
  const { rows } = await db.query<{ id: number }>(
    `INSERT INTO promotion_request (user_id, reason, requested_at) VALUES ($1, $2, now() - $3::interval) RETURNING id`,
    [userId, reason, ageSql],
  );
  return rows[0].id;
}

const postsOf = (id: number) =>
  fake.calls.filter((c) => c.method === 'chat.postMessage' && c.args.channel === CHANNEL && textOf(c.args).includes(`Promotion request #${id}:`));

describe('requests inserted by the application', () => {
  it('are posted exactly once across two job runs, two concurrent runs and a restart', async () => {
    const ivy = await createUser(db, { username: 'ivy', role: 'biller', area: null });
    const jack = await createUser(db, { username: 'jack', role: 'dispatcher', area: 'indore' });
    const a = await appInserts(ivy.id, 'Asked from the dashboard: I handle billing escalations');
    const b = await appInserts(jack.id, 'Asked from the dashboard: Indore needs a local admin');
    // A request that was decided in the application before Warden saw it is not posted.
    const decided = await appInserts(jack.id, 'An old request the dashboard already rejected');
    await db.query(`UPDATE promotion_request SET status = 'rejected', reviewed_by = $2, reviewed_at = now(), rejection_reason = 'no' WHERE id = $1`, [decided, alice.id]);

    expect(await runJobOnce(t.warden.services, promotionPollJob)).toBe('ran');
    expect(await runJobOnce(t.warden.services, promotionPollJob)).toBe('ran');
    // Two replicas' ticks at once (the job lock let both through, say): the card claim still lets one post.
    await Promise.all([t.warden.services.promotions.pollNew(), t.warden.services.promotions.pollNew()]);
    expect(postsOf(a)).toHaveLength(1);
    expect(postsOf(b)).toHaveLength(1);
    expect(postsOf(decided)).toHaveLength(0);
    expect(textOf(postsOf(a)[0].args)).toContain('Asked from the dashboard: I handle billing escalations');
    expect(buttonsOf(postsOf(b)[0].args.blocks).map((x) => x.text)).toEqual(['Approve', 'Reject']);
    expect(await t.warden.services.promotions.cursor()).toBe(decided);
    const runs = (await db.query<any>(`SELECT runs, failures FROM warden_job_run WHERE job = 'promotions-poll'`)).rows[0];
    expect(runs).toEqual({ runs: 2, failures: 0 });

    // Restart: a new process over the same database finds nothing new to post…
    await t.stop();
    t = await startTestApp({ db, store, fake, env: ENV });
    expect(await runJobOnce(t.warden.services, promotionPollJob)).toBe('ran');
    expect(postsOf(a)).toHaveLength(1);
    expect(postsOf(b)).toHaveLength(1);
    // …and posts what the application inserted while it was down, once.
    const kim = await createUser(db, { username: 'kim', role: 'biller', area: null });
    const c = await appInserts(kim.id, 'Inserted while Warden was restarting');
    await runJobOnce(t.warden.services, promotionPollJob);
    await runJobOnce(t.warden.services, promotionPollJob);
    expect(postsOf(c)).toHaveLength(1);
    const cards = (await db.query<any>('SELECT request_id, channel, posted_at FROM warden_promotion_card ORDER BY request_id')).rows;
    expect(cards.map((r) => r.request_id)).toEqual([a, b, c]);
    expect(cards.every((r) => r.channel === CHANNEL && r.posted_at instanceof Date)).toBe(true);
  });

  it('a card the job posted works like any other: approve from it', async () => {
    const lee = await createUser(db, { username: 'lee', role: 'biller', area: null });
    await linkSlack(db, 'U_LEE', lee.id);
    const id = await appInserts(lee.id, 'Dashboard request that an admin approves in Slack');
    await runJobOnce(t.warden.services, promotionPollJob);
    const [post] = postsOf(id);
    const approve = buttonsOf(post.args.blocks).find((x) => x.text === 'Approve')!;
    const { rows: card } = await db.query<{ ts: string }>('SELECT ts FROM warden_promotion_card WHERE request_id = $1', [id]);
    const click = await t.driver.click('U_ALICE', { ...approve, channel: CHANNEL, message: { ts: card[0].ts, blocks: post.args.blocks } });
    const modal = await t.driver.reply(click);
    const sub = await t.driver.submit('U_ALICE', modal.args.view, { notes: '', totp: await totpOf(alice) });
    expect(sub.ack).toBeNull();
    expect((await db.query<any>('SELECT role FROM "user" WHERE id = $1', [lee.id])).rows[0].role).toBe('admin');
    expect((await db.query<any>('SELECT status FROM promotion_request WHERE id = $1', [id])).rows[0].status).toBe('approved');
  });
});

describe('decisions made outside Slack', () => {
  it('a request decided in the web dashboard: the next poll updates the card, once', async () => {
    const pat = await createUser(db, { username: 'pat', role: 'biller', area: null });
    const id = await appInserts(pat.id, 'Decided in the dashboard, not in Slack');
    await runJobOnce(t.warden.services, promotionPollJob);
    const { rows } = await db.query<{ ts: string }>('SELECT ts FROM warden_promotion_card WHERE request_id = $1', [id]);
    const since = fake.calls.length;
    await db.query(
      `UPDATE promotion_request SET status = 'rejected', reviewed_by = $2, reviewed_at = now(), rejection_reason = 'Rejected on the dashboard by alice' WHERE id = $1`,
      [id, alice.id],
    );
    await runJobOnce(t.warden.services, promotionPollJob);
    await runJobOnce(t.warden.services, promotionPollJob);
    const updates = fake.calls.slice(since).filter((c) => c.method === 'chat.update' && c.args.ts === rows[0].ts);
    expect(updates).toHaveLength(1);
    expect(textOf(updates[0].args)).toMatch(/Rejected by <@U_ALICE> \(alice\) at \d\d:\d\d UTC .* — Rejected on the dashboard by alice/);
    expect(buttonsOf(updates[0].args.blocks)).toEqual([]);
  });
});

describe('expiry', () => {
  it('expires pending requests older than PROMOTION_TTL: card updated, requester notified by DM and notification, audited', async () => {
    const mo = await createUser(db, { username: 'moe', role: 'dispatcher', area: 'lucknow' });
    await linkSlack(db, 'U_MOE', mo.id);
    const old = await appInserts(mo.id, 'An old request nobody looked at', '8 days');
    const young = await appInserts((await createUser(db, { username: 'ned', role: 'biller', area: null })).id, 'A fresh request', '6 days');
    await runJobOnce(t.warden.services, promotionPollJob);
    const { rows: cards } = await db.query<{ ts: string }>('SELECT ts FROM warden_promotion_card WHERE request_id = $1', [old]);
    const since = fake.calls.length;

    expect(await runJobOnce(t.warden.services, promotionExpiryJob)).toBe('ran');
    const rows = (await db.query<any>('SELECT id, status, reviewed_at FROM promotion_request WHERE id = ANY($1) ORDER BY id', [[old, young]])).rows;
    expect(rows.map((r) => r.status)).toEqual(['expired', 'pending']);
    const [n] = (await db.query<any>('SELECT * FROM notification WHERE user_id = $1', [mo.id])).rows;
    expect(n).toMatchObject({ title: 'Admin promotion request expired', type: 'info' });
    expect(n.message).toContain('expired without a decision after 7 days');
    const audit = (await auditRows(db, 'promotion_expired')).filter((r) => r.entity_id === old);
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ user_id: null, entity_type: 'promotion_request' });
    const update = await fake.waitFor((c) => c.method === 'chat.update' && c.args.ts === cards[0].ts, 5000, since);
    expect(textOf(update.args)).toMatch(/Expired at \d\d:\d\d UTC .* without a decision/);
    expect(buttonsOf(update.args.blocks)).toEqual([]);
    const dm = await fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === 'D_U_MOE', 5000, since);
    expect(textOf(dm.args)).toContain('expired without a decision');

    // A second run changes nothing.
    const before = await snapshot(db);
    await runJobOnce(t.warden.services, promotionExpiryJob);
    expect(await snapshot(db)).toEqual(before);
  });

  it('an expired request cannot be approved, even before the expiry job has run', async () => {
    const otto = await createUser(db, { username: 'otto', role: 'biller', area: null });
    const id = await appInserts(otto.id, 'Waiting for a very long time now', '1 day');
    await runJobOnce(t.warden.services, promotionPollJob);
    const [post] = postsOf(id);
    const approve = buttonsOf(post.args.blocks).find((x) => x.text === 'Approve')!;
    // Time passes beyond the TTL; the expiry job has not ticked yet.
    await db.query(`UPDATE promotion_request SET requested_at = now() - interval '7 days 1 minute' WHERE id = $1`, [id]);
    const before = (await db.query<any>(`SELECT role FROM "user" WHERE id = $1`, [otto.id])).rows[0];
    const reply = await t.driver.reply(await t.driver.click('U_ALICE', { ...approve, channel: CHANNEL }));
    expect(reply.method).toBe('response_url');
    expect(textOf(reply.args)).toMatch(new RegExp(`Request #${id} expired`));
    expect((await db.query<any>(`SELECT role FROM "user" WHERE id = $1`, [otto.id])).rows[0]).toEqual(before);
    expect((await db.query<any>('SELECT status FROM promotion_request WHERE id = $1', [id])).rows[0].status).toBe('expired');
    // And a click after the job: told it expired.
    const again = await t.driver.reply(await t.driver.click('U_ALICE', { ...approve, channel: CHANNEL }));
    expect(textOf(again.args)).toMatch(new RegExp(`Request #${id} already expired at \\d\\d:\\d\\d UTC`));
    expect((await auditRows(db, 'role_change')).filter((r) => r.entity_id === otto.id)).toEqual([]);
  });
});
