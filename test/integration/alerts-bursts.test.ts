import { webApi } from '@slack/bolt';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { Db } from '../../src/db/index.js';
import { silentLogger } from '../../src/logger.js';
import { AlertStorms } from '../../src/services/storms.js';
import { BurstAlerts } from '../../src/services/bursts.js';
import { Digests } from '../../src/services/digests.js';
import { LockoutAlerts } from '../../src/services/lockouts.js';
import { Masker } from '../../src/services/masking.js';
import { Outbox } from '../../src/services/outbox.js';
import { SlackChat } from '../../src/slack/chat-port.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import { textOf } from '../../src/slack/sim/driver.js';
import { createTestDb } from '../helpers/db.js';
import { createUser } from '../helpers/fixtures.js';

/**
 * Issue 7: failed-login bursts and 2FA failure spikes (one alert per IP per window, updated
 * with the new count), and the daily digest (only when there is something to say).
 * Real database, real outbox, Slack Web API on a local fake.
 */

const SEC = 'C_SECURITY';
const ALERTS = 'C_ALERTS';
let db: Db;
let cleanup: () => Promise<void>;
let fake: FakeSlack;
const config = loadConfig({
  SECURITY_CHANNEL: SEC,
  ALERTS_CHANNEL: ALERTS,
  FAILED_LOGIN_BURST_THRESHOLD: '5',
  FAILED_LOGIN_BURST_WINDOW: '1h',
  TWOFA_FAILURE_SPIKE_THRESHOLD: '3',
  LOG_LEVEL: 'silent',
});

function replica() {
  const chat = new SlackChat(
    new webApi.WebClient('xoxb-test', { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 }, rejectRateLimitedCalls: true, logLevel: webApi.LogLevel.ERROR }),
  );
  // Unpaced: channel pacing has its own tests (test/faults/alert-delivery.test.ts).
  const outbox = new Outbox(db, chat, silentLogger(), { baseBackoffMs: 10, maxBackoffMs: 50, paceMs: 0 });
  const base = { config, db, outbox, masker: new Masker(true), logger: silentLogger() };
  const deps = { ...base, storms: new AlertStorms(base) };
  return { outbox, bursts: new BurstAlerts(deps), digests: new Digests(deps), storms: deps.storms, lockouts: new LockoutAlerts(deps) };
}

let r: ReturnType<typeof replica>;

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  fake = await new FakeSlack().start();
  r = replica();
});

afterAll(async () => {
  await r.outbox.close();
  await fake?.stop();
  await cleanup?.();
});

beforeEach(() => fake.clear());

async function fail(action: 'login_failed' | '2fa_verify_failed', ip: string, n: number, username = 'victim', agoSeconds = 0) {
  for (let i = 0; i < n; i++) {
    await db.query(
      `INSERT INTO audit_log (action, entity_type, details, ip_address, "timestamp")
       VALUES ($1, 'user', $2, $3, now() - make_interval(secs => $4::int))`,
      [action, JSON.stringify({ username: `${username}${i % 2 ? '' : '2'}` }), ip, agoSeconds + (n - i)],
    );
  }
}

const postsAbout = (ip: string) => fake.callsTo('chat.postMessage').filter((c) => textOf(c.args).includes(ip));
const updatesOf = (ts: string) => fake.callsTo('chat.update').filter((c) => c.args.ts === ts);

describe('failed-login bursts', () => {
  it('alerts once when an IP passes the threshold and updates that alert with the new count', async () => {
    await fail('login_failed', '203.0.113.5', 5);
    expect(await r.bursts.scan()).toBe(0); // 5 is not more than 5
    await r.outbox.deliverDue();
    expect(postsAbout('203.0.xxx.xxx')).toHaveLength(0);

    await fail('login_failed', '203.0.113.5', 1);
    expect(await r.bursts.scan()).toBe(1);
    await r.outbox.deliverDue();
    const [post] = postsAbout('203.0.xxx.xxx');
    expect(post.args.channel).toBe(SEC);
    const text = textOf(post.args);
    expect(text).toContain('Failed-login burst from 203.0.xxx.xxx');
    expect(text).toMatch(/Failed logins\*\n6 \(threshold: more than 5 in 1h\)/);
    expect(text).toContain('`victim`');
    expect(text).not.toContain('203.0.113.5');

    // Nothing new: no message at all.
    expect(await r.bursts.scan()).toBe(0);
    await fail('login_failed', '203.0.113.5', 3);
    expect(await r.bursts.scan()).toBe(1);
    await r.outbox.deliverDue();
    expect(postsAbout('203.0.xxx.xxx')).toHaveLength(1);
    const updates = updatesOf(post.result!.ts);
    expect(updates).toHaveLength(1);
    expect(textOf(updates[0].args)).toMatch(/Failed logins\*\n9 /);
    const rows = (await db.query<any>(`SELECT count, kind FROM warden_burst_alert WHERE ip_address = '203.0.113.5'`)).rows;
    expect(rows).toEqual([{ count: 9, kind: 'failed_login' }]);
  });

  it('two replicas scanning at once open one alert', async () => {
    const other = replica();
    try {
      await fail('login_failed', '198.51.100.20', 7);
      await Promise.all([r.bursts.scan(), other.bursts.scan(), r.bursts.scan(), other.bursts.scan()]);
      await Promise.all([r.outbox.deliverDue(), other.outbox.deliverDue()]);
      expect(postsAbout('198.51.xxx.xxx')).toHaveLength(1);
      expect((await db.query<any>(`SELECT count(*)::int AS n FROM warden_burst_alert WHERE ip_address = '198.51.100.20'`)).rows[0].n).toBe(1);
    } finally {
      await other.outbox.close();
    }
  });

  it('opens a new alert when the burst goes on past its window', async () => {
    await fail('login_failed', '192.0.2.99', 6);
    await r.bursts.scan();
    await r.outbox.deliverDue();
    expect(postsAbout('192.0.xxx.xxx')).toHaveLength(1);
    // Two hours pass: the old failures and the alert's window move into the past.
    await db.query(`UPDATE audit_log SET "timestamp" = "timestamp" - interval '2 hours' WHERE ip_address = '192.0.2.99'`);
    await db.query(`UPDATE warden_burst_alert SET window_start = window_start - interval '2 hours' WHERE ip_address = '192.0.2.99'`);
    await fail('login_failed', '192.0.2.99', 6);
    expect(await r.bursts.scan()).toBe(1);
    await r.outbox.deliverDue();
    expect(postsAbout('192.0.xxx.xxx')).toHaveLength(2);
    expect((await db.query<any>(`SELECT count(*)::int AS n FROM warden_burst_alert WHERE ip_address = '192.0.2.99'`)).rows[0].n).toBe(2);
  });

  it('alerts on 2FA verification failure spikes separately, with their own threshold', async () => {
    await fail('2fa_verify_failed', '203.0.113.66', 3);
    expect(await r.bursts.scan()).toBe(0);
    await fail('2fa_verify_failed', '203.0.113.66', 1);
    expect(await r.bursts.scan()).toBe(1);
    await r.outbox.deliverDue();
    const posts = fake.callsTo('chat.postMessage').filter((c) => textOf(c.args).includes('2FA failure spike'));
    expect(posts).toHaveLength(1);
    expect(textOf(posts[0].args)).toMatch(/Failed 2FA verifications\*\n4 \(threshold: more than 3 in 1h\)/);
  });

  it('ignores failures older than the window and rows without an IP', async () => {
    await fail('login_failed', '10.9.8.7', 10, 'old', 2 * 3600);
    await db.query(`INSERT INTO audit_log (action, details) SELECT 'login_failed', '{"username":"noip"}' FROM generate_series(1, 10)`);
    expect(await r.bursts.scan()).toBe(0);
  });
});

describe('daily digest', () => {
  it('posts nothing when there is nothing to say', async () => {
    expect(await r.digests.run(new Date('2030-01-01T09:00:00Z'))).toBeNull();
    await r.outbox.deliverDue();
    expect(fake.callsTo('chat.postMessage')).toHaveLength(0);
  });

  it('lists admins without 2FA, locked accounts, and promotions and recoveries waiting over a day, once per tick', async () => {
    await createUser(db, { username: 'adminnofa', role: 'admin', area: null });
    await createUser(db, { username: 'adminok', role: 'admin', twoFa: true, area: null });
    await createUser(db, { username: 'locky', role: 'biller', area: null, lockedMinutes: 20, failed: 5 });
    const gone = await createUser(db, { username: 'disabled1', role: 'biller', area: null });
    await db.query(`UPDATE "user" SET locked_until = '9999-12-31T00:00:00Z' WHERE id = $1`, [gone.id]);
    const asker = await createUser(db, { username: 'asker', role: 'dispatcher' });
    await db.query(`INSERT INTO promotion_request (user_id, reason, requested_at) VALUES ($1, 'old one', now() - interval '2 days')`, [asker.id]);
    await db.query(`INSERT INTO promotion_request (user_id, reason, requested_at) VALUES ($1, 'fresh one', now() - interval '2 hours')`, [asker.id]);
    const hasRecovery = (await db.query<any>(`SELECT to_regclass('warden_2fa_recovery')::text AS t`)).rows[0].t;
    if (hasRecovery) {
      await db.query(
        `INSERT INTO warden_2fa_recovery (target_user_id, target_username, initiator_username, status, evidence, created_at, expires_at)
         VALUES ($1, 'adminok', 'adminnofa', 'pending', 'called back', now() - interval '30 hours', now() + interval '1 hour')`,
        [asker.id],
      );
    }

    const tick = new Date('2030-01-02T09:00:00Z');
    const id = await r.digests.run(tick);
    expect(id).toBeGreaterThan(0);
    expect(await r.digests.run(tick)).toBe(id); // the same tick twice: one message
    await r.outbox.deliverDue();
    const posts = fake.callsTo('chat.postMessage');
    expect(posts).toHaveLength(1);
    expect(posts[0].args.channel).toBe(ALERTS);
    const text = textOf(posts[0].args);
    expect(text).toContain('Security digest, 2030-01-02');
    expect(text).toContain('Admins without 2FA (1)');
    expect(text).toContain('adminnofa');
    expect(text).not.toMatch(/• adminok/);
    expect(text).toContain('Locked accounts (1)');
    expect(text).toContain('locky');
    expect(text).not.toContain('disabled1');
    expect(text).toContain('Promotion requests waiting over a day (1)');
    expect(text).toContain('asker');
    if (hasRecovery) expect(text).toContain('2FA recoveries waiting over a day (1)');
  });
});

/**
 * Issue 12: "Beyond a configurable rate … lockouts and bursts become one summary message per
 * storm, updated in place." A credential-stuffing wave comes from many IPs at once.
 */
describe('failed-login bursts and storms (LOCKOUT_STORM_PER_MINUTE = 5)', () => {
  const topLevel = () => fake.callsTo('chat.postMessage').filter((c) => c.args.channel === SEC && !c.args.thread_ts);
  const inChannel = (ts: string) => fake.channelMessages(SEC).find((m) => m.ts === ts)!;
  async function drain() {
    for (let i = 0; i < 20; i++) {
      await r.outbox.deliverDue();
      const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM warden_outbox WHERE status = 'pending'`);
      if (!rows[0].n) return;
      await new Promise((res) => setTimeout(res, 50));
    }
  }
  /** The application locks an account: locked_until and a login_locked row in one transaction. */
  async function lock(username: string) {
    const u = await createUser(db, { username, role: 'dispatcher', failed: 5, lockedMinutes: 30 });
    await db.query(
      `INSERT INTO audit_log (user_id, action, entity_type, entity_id, details, ip_address) VALUES ($1, 'login_locked', 'user', $1, $2, '198.51.100.7')`,
      [u.id, JSON.stringify({ username, attempts: 5 })],
    );
  }

  beforeEach(async () => {
    // Earlier tests' bursts and failures are not part of these waves.
    await db.query(`DELETE FROM warden_burst_alert`);
    await db.query(`DELETE FROM audit_log WHERE action IN ('login_failed', '2fa_verify_failed')`);
  });

  it('below the rate: each bursting IP gets its own message, as before', async () => {
    await fail('login_failed', '203.0.113.101', 6);
    await fail('login_failed', '203.0.113.102', 6);
    expect(await r.bursts.scan()).toBe(2);
    await drain();
    expect(topLevel().map((c) => textOf(c.args)).filter((t) => t.includes('Failed-login burst from'))).toHaveLength(2);
    expect((await db.query(`SELECT count(*)::int AS n FROM warden_alert_storm`)).rows[0].n).toBe(0);
    // Past the storm's quiet time for the next test.
    await db.query(`UPDATE warden_burst_alert SET last_seen = last_seen - interval '10 minutes'`);
  });

  it('a credential-stuffing wave (12 IPs bursting, 8 lockouts) is ONE storm message with the counts and top IPs, not a message per IP', async () => {
    for (let i = 0; i < 12; i++) await fail('login_failed', `192.0.2.${10 + i}`, 6 + (i % 4), `stuffed${i}_`);
    for (let i = 0; i < 8; i++) await lock(`locked${i}`);
    // The bursts scan sees the wave first (the worst order: nothing to join yet).
    await r.bursts.scan();
    await r.lockouts.scan();
    await drain();
    const posts = topLevel();
    expect(posts.map((c) => textOf(c.args).slice(0, 60))).toHaveLength(1);
    expect(posts.some((c) => textOf(c.args).includes('Failed-login burst from'))).toBe(false);
    const msg = inChannel(posts[0].result!.ts);
    const text = textOf({ text: msg.text, blocks: msg.blocks });
    expect(text).toContain('Lockout storm: 8 accounts locked');
    expect(text).toContain('12 IPs, 90 failed logins'); // 3×6 + 3×7 + 3×8 + 3×9
    expect(text).toMatch(/Failed-login bursts in this storm\* \(top 5 of 12 IPs\)/);
    expect(text).toContain('`192.0.xxx.xxx` — 9 failed logins'); // masked, biggest first
    expect(text).toContain('and 7 more IPs');
    expect(text).not.toMatch(/192\.0\.2\.\d+/);
    expect((await db.query(`SELECT count(*)::int AS n FROM warden_burst_alert WHERE storm_id IS NOT NULL AND post_id = 0`)).rows[0].n).toBe(12);

    // The wave goes on: a new IP and more failures join the same message, updated in place.
    await fail('login_failed', '192.0.2.99', 6, 'late_');
    await fail('login_failed', '192.0.2.10', 3, 'stuffed0_');
    await r.bursts.scan();
    await drain();
    expect(topLevel()).toHaveLength(1);
    const after = inChannel(msg.ts);
    expect(textOf({ text: after.text, blocks: after.blocks })).toContain('13 IPs, 99 failed logins');
    expect(fake.callsTo('chat.update').filter((c) => c.args.ts === msg.ts).length).toBeGreaterThan(0);
  });
});
