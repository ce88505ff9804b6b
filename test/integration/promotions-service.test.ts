import { webApi } from '@slack/bolt';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { Db, PgDb } from '../../src/db/index.js';
import { ConflictError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { IdentityService, type Actor } from '../../src/services/identity.js';
import { Masker } from '../../src/services/masking.js';
import { PromotionService } from '../../src/services/promotions.js';
import { Outbox } from '../../src/services/outbox.js';
import { SlackChat } from '../../src/slack/chat-port.js';
import { textOf } from '../../src/slack/sim/driver.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import type { Store } from '../../src/store/index.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, linkSlack, totpOf, type TestUser } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';
import { IdentityChanges } from '../../src/services/identity-changes.js';
import { noDirectory, testStepUp } from '../helpers/identity.js';

/**
 * PromotionService against a real database (PGlite, or PostgreSQL in CI) and the real
 * Slack Web API client talking to a local fake: the cursor's look-back for ids that commit
 * out of order, retries after Slack failures, one pending request per user under
 * concurrency, the 30-day history summary, and — on PostgreSQL — an approval that loses the
 * race inside the conditional UPDATE itself.
 */

const CHANNEL = 'C_APPR';
let db: Db;
let dbUrl: string | undefined;
let store: Store;
let fake: FakeSlack;
let cleanup: () => Promise<void>;
let promotions: PromotionService;
let alice: TestUser;
let carol: TestUser;

const actorOf = async (u: TestUser, slackUserId = `U_${u.username.toUpperCase()}`): Promise<Actor> => {
  const { rows } = await db.query<any>(
    'SELECT id, username, email, role, dispatch_area, two_fa_enabled, failed_login_attempts, locked_until, last_failed_login, created_at, last_login FROM "user" WHERE id = $1',
    [u.id],
  );
  return { user: rows[0], slack: { userId: slackUserId, teamId: 'T_WARDEN', channelId: 'C_X' } };
};

beforeAll(async () => {
  ({ db, url: dbUrl, cleanup } = await createTestDb());
  store = createTestStore();
  fake = await new FakeSlack().start();
  const config = loadConfig({ APPROVALS_CHANNEL: CHANNEL, PROMOTION_TTL: '7d', SLACK_API_URL: fake.apiUrl });
  const client = new webApi.WebClient('xoxb-test', { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } });
  const chat = new SlackChat(client);
  promotions = new PromotionService({
    config,
    db,
    chat,
    outbox: new Outbox(db, chat, silentLogger()),
    identity: new IdentityService(db, noDirectory),
    identityChanges: new IdentityChanges(db, config.IDENTITY_COOLDOWN),
    stepUp: testStepUp(db, store, 5),
    masker: new Masker(true),
    logger: silentLogger(),
  });
  alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  carol = await createUser(db, { username: 'carol', role: 'admin', twoFa: true, area: null });
  await linkSlack(db, 'U_ALICE', alice.id);
  await linkSlack(db, 'U_CAROL', carol.id);
});

afterAll(async () => {
  await fake?.stop();
  await store?.close();
  await cleanup?.();
});

const postsOf = (id: number) =>
  fake.calls.filter((c) => c.method === 'chat.postMessage' && c.args.channel === CHANNEL && textOf(c.args).includes(`Promotion request #${id}:`));

async function appInserts(userId: number, reason: string, id?: number): Promise<number> {
  const { rows } = await db.query<{ id: number }>(
    id === undefined
      ? 'INSERT INTO promotion_request (user_id, reason) VALUES ($1, $2) RETURNING id'
      : 'INSERT INTO promotion_request (id, user_id, reason) VALUES ($3, $1, $2) RETURNING id',
    id === undefined ? [userId, reason] : [userId, reason, id],
  );
  return rows[0].id;
}

describe('poll cursor', () => {
  it('posts a request whose id committed after a higher one (look-back below the cursor), once', async () => {
    const u1 = await createUser(db, { username: 'early', role: 'biller', area: null });
    const u2 = await createUser(db, { username: 'late', role: 'biller', area: null });
    // Transaction A takes an id, transaction B takes the next one and commits first.
    const reserved = (await db.query<{ id: number }>(`SELECT nextval(pg_get_serial_sequence('promotion_request', 'id'))::int AS id`)).rows[0].id;
    const higher = await appInserts(u2.id, 'Committed first with the higher id');
    await promotions.pollNew();
    expect(await promotions.cursor()).toBe(higher);
    expect(postsOf(higher)).toHaveLength(1);
    // Now A commits, below the cursor.
    const lower = await appInserts(u1.id, 'Committed late with the lower id', reserved);
    expect(lower).toBeLessThan(higher);
    await promotions.pollNew();
    await promotions.pollNew();
    expect(postsOf(lower)).toHaveLength(1);
    expect(postsOf(higher)).toHaveLength(1);
    expect(await promotions.cursor()).toBe(higher);
  });

  it('retries a card Slack refused, once it is no longer in flight, and never posts it twice', async () => {
    const u = await createUser(db, { username: 'unlucky', role: 'dispatcher', area: 'indore' });
    fake.failNext('chat.postMessage', { status: 500, error: 'internal_error' });
    const r = await promotions.request(await actorOf(u), 'Slack was down when I asked for this');
    expect(r.card).toBeNull();
    expect(r.cardError).toBeDefined();
    const id = r.request.id;
    expect(postsOf(id)).toHaveLength(0);
    const claim = (await db.query<any>('SELECT posted_at, ts FROM warden_promotion_card WHERE request_id = $1', [id])).rows[0];
    expect(claim).toEqual({ posted_at: null, ts: null });
    // Too fresh to retry: the original poster may still be working on it.
    expect((await promotions.pollNew()).retried).toBe(0);
    expect(postsOf(id)).toHaveLength(0);
    await db.query(`UPDATE warden_promotion_card SET claimed_at = now() - interval '2 minutes' WHERE request_id = $1`, [id]);
    const [a, b] = await Promise.all([promotions.pollNew(), promotions.pollNew()]);
    expect(a.retried + b.retried).toBe(1);
    expect(postsOf(id)).toHaveLength(1);
    await db.query(`UPDATE warden_promotion_card SET claimed_at = now() - interval '2 minutes' WHERE request_id = $1`, [id]);
    await promotions.pollNew();
    expect(postsOf(id)).toHaveLength(1);
    const row = (await db.query<any>('SELECT posted_at, attempts FROM warden_promotion_card WHERE request_id = $1', [id])).rows[0];
    expect(row.posted_at).toBeInstanceOf(Date);
    expect(row.attempts).toBe(1);
  });
});

describe('requests', () => {
  it('allows one pending request per user even when two arrive at once', async () => {
    const u = await createUser(db, { username: 'eager', role: 'biller', area: null });
    const actor = await actorOf(u);
    const results = await Promise.allSettled([
      promotions.request(actor, 'First of two simultaneous requests'),
      promotions.request(actor, 'Second of two simultaneous requests'),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(rejected.reason).toBeInstanceOf(ConflictError);
    expect(rejected.reason.message).toMatch(/already have a pending request/);
    const { rows } = await db.query<any>('SELECT count(*)::int AS n FROM promotion_request WHERE user_id = $1', [u.id]);
    expect(rows[0].n).toBe(1);
    expect((await auditRows(db, 'promotion_requested')).filter((r) => r.details.requester_id === u.id)).toHaveLength(1);
  });

  it('summarises 30 days of history from user id, logged username and role changes', async () => {
    const u = await createUser(db, { username: 'histy', role: 'dispatcher', area: 'indore' });
    await db.query(
      `INSERT INTO audit_log (user_id, action, entity_type, entity_id, details, "timestamp") VALUES
         ($1, 'login_failed', NULL, NULL, '{}', now() - interval '1 day'),
         (NULL, 'login_failed', NULL, NULL, '{"username":"histy"}', now() - interval '3 days'),
         (NULL, 'login_failed', NULL, NULL, '{"username":"someone_else"}', now() - interval '3 days'),
         ($1, 'login_locked', NULL, NULL, '{"username":"histy"}', now() - interval '3 days'),
         ($2, 'role_change', 'user', $1, '{}', now() - interval '10 days'),
         ($2, 'role_change', 'user', $1, '{}', now() - interval '40 days'),
         ($1, 'login_success', NULL, NULL, '{}', now() - interval '1 day')`,
      [u.id, alice.id],
    );
    const h = await promotions.history({ id: u.id, username: 'histy' });
    expect(h).toMatchObject({ failedLogins: 2, lockouts: 1, roleChanges: 1, previousRequests: 0, previousRejected: 0 });
    expect(h.lastFailedLogin).toBeInstanceOf(Date);
  });
});

describe('deciding', () => {
  it('expires an overdue request without a card: notification and DM, no card update', async () => {
    const u = await createUser(db, { username: 'quiet', role: 'biller', area: null });
    await linkSlack(db, 'U_QUIET', u.id);
    const { rows } = await db.query<{ id: number }>(
      `INSERT INTO promotion_request (user_id, reason, requested_at) VALUES ($1, 'Long forgotten request', now() - interval '30 days') RETURNING id`,
      [u.id],
    );
    const since = fake.calls.length;
    expect(await promotions.expireDue()).toBe(1);
    // The DM was queued in the expiring transaction; the outbox delivers it.
    await promotions.idle();
    expect((await db.query<any>('SELECT status FROM promotion_request WHERE id = $1', [rows[0].id])).rows[0].status).toBe('expired');
    expect(fake.calls.slice(since).filter((c) => c.method === 'chat.update')).toEqual([]);
    expect(fake.calls.slice(since).filter((c) => c.method === 'chat.postMessage' && c.args.channel === 'D_U_QUIET')).toHaveLength(1);
    expect(await promotions.expireDue()).toBe(0);
  });

  it.runIf(!!process.env.DATABASE_URL)(
    'PostgreSQL: an approval that passed every check still loses inside the conditional UPDATE when another decision commits first',
    async () => {
      const u = await createUser(db, { username: 'racer', role: 'biller', area: null });
      const { request } = await promotions.request(await actorOf(u), 'Two admins will race for this one');
      // Carol's decision is in flight: her transaction holds the row, not yet committed.
      const other = new pg.Client({ connectionString: dbUrl });
      await other.connect();
      await other.query('BEGIN');
      await other.query(
        `UPDATE promotion_request SET status = 'approved', reviewed_by = $2, reviewed_at = now(), admin_notes = 'carol first' WHERE id = $1`,
        [request.id, carol.id],
      );
      const pending = promotions.approve(await actorOf(alice, 'U_ALICE'), request.id, { notes: 'alice second', totp: await totpOf(alice) });
      const outcome = pending.then(
        () => 'won',
        (e) => e,
      );
      // Wait (deterministically) until alice's UPDATE is blocked on carol's row lock.
      const pool = (db as PgDb).pool;
      for (let i = 0; i < 500; i++) {
        const { rows } = await pool.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'UPDATE promotion_request%'`,
        );
        if (rows[0].n > 0) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      const blocked = await pool.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
      );
      expect(blocked.rows[0].n).toBe(1);
      await other.query('COMMIT');
      await other.end();
      const err = await outcome;
      expect(err).toBeInstanceOf(ConflictError);
      expect(err.message).toMatch(new RegExp(`Request #${request.id} was already approved by <@U_CAROL> \\(carol\\)`));
      const [row] = (await db.query<any>('SELECT * FROM promotion_request WHERE id = $1', [request.id])).rows;
      expect(row).toMatchObject({ reviewed_by: carol.id, admin_notes: 'carol first' });
      expect((await db.query<any>('SELECT role FROM "user" WHERE id = $1', [u.id])).rows[0].role).toBe('biller');
      expect((await auditRows(db, 'role_change')).filter((r) => r.entity_id === u.id)).toEqual([]);
      expect((await db.query<any>('SELECT count(*)::int AS n FROM notification WHERE user_id = $1', [u.id])).rows[0].n).toBe(0);
    },
  );
});
