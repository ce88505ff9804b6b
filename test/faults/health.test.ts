import { webApi } from '@slack/bolt';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { Db } from '../../src/db/index.js';
import { healthJob, healthTick, startHealthJob } from '../../src/jobs/health.js';
import { runJobOnce } from '../../src/jobs/runner.js';
import { silentLogger } from '../../src/logger.js';
import { createServices, type Services } from '../../src/services/index.js';
import { SlackChat } from '../../src/slack/chat-port.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import type { Store } from '../../src/store/index.js';
import { createTestDb } from '../helpers/db.js';
import { createTestStore } from '../helpers/store.js';
import { realServers } from './support.js';

/**
 * Issue 12: "With a Redis used only by Warden, the cache is rated 'unhealthy: hit rate 0%' … an
 * incident opens at start and never resolves; a deployment without e-mail has a standing
 * 'degraded' incident … The first health run waits for the next cron minute."
 */
describe.runIf(realServers)('honest health', () => {
  let db: Db;
  let store: Store;
  let fake: FakeSlack;
  let cleanup: () => Promise<void>;
  const made: Services[] = [];

  // A deployment as on-call runs it: Warden's own Redis, no e-mail, nothing else configured;
  // the thresholds are the seed's defaults.
  const services = (env: Record<string, string> = {}): Services => {
    const config = loadConfig({ LOG_LEVEL: 'silent', ALERTS_CHANNEL: 'C_ALERTS', REDIS_URL: process.env.REDIS_URL, OUTBOX_PACE_MS: '0', ...env });
    const chat = new SlackChat(new webApi.WebClient('xoxb-health', { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } }));
    const s = createServices({ config, db, store, logger: silentLogger(), chat, directory: { profileOf: async () => null } });
    made.push(s);
    return s;
  };

  beforeAll(async () => {
    ({ db, cleanup } = await createTestDb());
    store = createTestStore();
    fake = await new FakeSlack().start();
    // Warden's store sees only misses (its probe reads), as in production.
    for (let i = 0; i < 20; i++) await store.get(`nothing-here-${i}`);
  });
  afterAll(async () => {
    for (const s of made) await s.outbox.close?.();
    await fake?.stop();
    await store?.close();
    await cleanup?.();
  });

  beforeEach(async () => {
    await db.query('DELETE FROM warden_health_incident');
    await db.query('DELETE FROM warden_health_streak');
  });

  it('a healthy system produces no incident over several checks (own Redis not rated, no e-mail not an incident)', async () => {
    // Query-time thresholds far above a loaded CI machine's: timing is not this test's subject.
    const s = services({ DB_QUERY_DEGRADED_MS: '5000', DB_QUERY_UNHEALTHY_MS: '10000', AUDIT_QUERY_DEGRADED_MS: '5000', AUDIT_QUERY_UNHEALTHY_MS: '10000' });
    const job = healthJob('* * * * *');
    for (let i = 0; i < 4; i++) {
      // Through the job runner, as in production (it records the run the scheduler check reads).
      expect(await runJobOnce(s, job)).toBe('ran');
      const report = await s.health.evaluate();
      expect(report.components.find((c) => c.key === 'cache')!.status).toBe('not_configured');
      expect(report.components.find((c) => c.key === 'email')!.status).toBe('not_configured');
      expect(report.status).toBe('healthy');
    }
    expect(await s.incidents.openIncidents()).toEqual([]);
    expect((await db.query(`SELECT count(*)::int AS n FROM warden_outbox`)).rows[0].n).toBe(0);
  });

  it('one bad check opens nothing; HEALTH_OPEN_AFTER in a row opens; HEALTH_RESOLVE_AFTER good ones resolve', async () => {
    const s = services({ HEALTH_OPEN_AFTER: '3', HEALTH_RESOLVE_AFTER: '2' });
    const slow = services({ HEALTH_OPEN_AFTER: '3', HEALTH_RESOLVE_AFTER: '2', DB_QUERY_DEGRADED_MS: '0' });
    expect((await healthTick(slow)).outcome.action).toBe('none');
    expect((await healthTick(s)).outcome.action).toBe('none'); // the streak is broken
    expect((await healthTick(slow)).outcome.action).toBe('none');
    expect((await healthTick(slow)).outcome.action).toBe('none');
    expect((await healthTick(slow)).outcome.action).toBe('opened');
    expect((await healthTick(s)).outcome.action).toBe('none'); // one good check: still open
    expect(await s.incidents.openIncidents()).toHaveLength(1);
    expect((await healthTick(s)).outcome.action).toBe('resolved');
  });

  it('the first check runs at start, not at the next cron tick', async () => {
    await db.query(`DELETE FROM warden_job_run WHERE job = 'health'`);
    const s = services({ HEALTH_CRON: '0 0 1 1 *' });
    const stop = startHealthJob(s);
    try {
      await expect
        .poll(async () => (await db.query(`SELECT last_success FROM warden_job_run WHERE job = 'health'`)).rows[0]?.last_success ?? null, {
          timeout: 10_000,
        })
        .not.toBeNull();
    } finally {
      await stop();
    }
  });
});
