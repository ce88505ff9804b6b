import { webApi } from '@slack/bolt';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { Db } from '../../src/db/index.js';
import { silentLogger } from '../../src/logger.js';
import { BurstAlerts } from '../../src/services/bursts.js';
import { Digests } from '../../src/services/digests.js';
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
  const deps = { config, db, outbox, masker: new Masker(true), logger: silentLogger() };
  return { outbox, bursts: new BurstAlerts(deps), digests: new Digests(deps) };
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
