import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { startBurstWatcher, startOutboxDelivery } from '../../src/jobs/alerts.js';
import { textOf } from '../../src/slack/sim/driver.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { createTestStore } from '../helpers/store.js';

/**
 * Issue 7, bursts end to end: the running app, woken by the audit trigger's NOTIFY, posts
 * one alert to SECURITY_CHANNEL when an IP passes the threshold and then updates that same
 * message with the new count.
 */

const SEC = 'C_SECURITY';
let t: TestApp;
let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
let stops: (() => Promise<void>)[] = [];

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  t = await startTestApp({ db, store, env: { SECURITY_CHANNEL: SEC, FAILED_LOGIN_BURST_THRESHOLD: '5' } });
  stops = [await startBurstWatcher(t.warden.services), await startOutboxDelivery(t.warden.services)];
});

afterAll(async () => {
  for (const s of stops) await s();
  await t?.stop();
  await store?.close();
  await cleanup?.();
});

async function failedLogins(ip: string, n: number) {
  for (let i = 0; i < n; i++) {
    await db.query(`INSERT INTO audit_log (action, entity_type, details, ip_address) VALUES ('login_failed', 'user', $1, $2)`, [
      JSON.stringify({ username: `target${i % 3}` }),
      ip,
    ]);
  }
}

describe('failed-login burst alerts', () => {
  it('posts one alert when an IP passes the threshold and updates it with the new count', async () => {
    await failedLogins('203.0.113.200', 6);
    const post = await t.fake.waitFor((c) => c.method === 'chat.postMessage' && textOf(c.args).includes('Failed-login burst'), 5000);
    expect(post.args.channel).toBe(SEC);
    expect(textOf(post.args)).toMatch(/Failed logins\*\n6 \(threshold: more than 5 in 1h\)/);
    expect(textOf(post.args)).toContain('203.0.xxx.xxx');

    await failedLogins('203.0.113.200', 2);
    const update = await t.fake.waitFor(
      (c) => c.method === 'chat.update' && c.args.ts === post.result?.ts && /Failed logins\*\n8 /.test(textOf(c.args)),
      5000,
    );
    expect(update.args.channel).toBe(SEC);
    await t.warden.services.bursts.scan();
    await t.warden.services.outbox.deliverDue();
    expect(t.fake.callsTo('chat.postMessage').filter((c) => textOf(c.args).includes('Failed-login burst'))).toHaveLength(1);
  });
});
