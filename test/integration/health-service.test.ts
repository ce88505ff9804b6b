import net from 'node:net';
import { webApi } from '@slack/bolt';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { Db } from '../../src/db/index.js';
import { healthJob, healthTick, startHealthJob } from '../../src/jobs/health.js';
import { runJobOnce } from '../../src/jobs/runner.js';
import { silentLogger } from '../../src/logger.js';
import { HealthService, POOL_RECOMMENDATIONS, sparkline, trendOf } from '../../src/services/health.js';
import { createServices, type Services } from '../../src/services/index.js';
import type { Mailer } from '../../src/services/mailer.js';
import { SlackChat } from '../../src/slack/chat-port.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import type { Store } from '../../src/store/index.js';
import { AppHealthServer } from '../helpers/app-health-server.js';
import { createTestDb } from '../helpers/db.js';
import { createTestStore } from '../helpers/store.js';
import { noDirectory } from '../helpers/identity.js';

let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
let fake: FakeSlack;
let app: AppHealthServer;
const made: Services[] = [];

const mailer: Mailer = { configured: true, send: async () => {} };

/** Services of one "replica" with its own settings over the shared database. */
function services(env: Record<string, string> = {}, opts: { jobInterval?: (j: string) => number | null } = {}): Services {
  const config = loadConfig({
    LOG_LEVEL: 'silent',
    ALERTS_CHANNEL: 'C_ALERTS',
    APP_HEALTH_URL: app.url,
    APP_HEALTH_TIMEOUT_MS: '300',
    // The shared test Redis's hit rate belongs to every test run: not this test's subject.
    CACHE_DEGRADED_HIT_RATE: '0',
    CACHE_UNHEALTHY_HIT_RATE: '0',
    // Channel pacing has its own tests (test/faults/alert-delivery.test.ts).
    OUTBOX_PACE_MS: '0',
    // One check opens / resolves here; the N-bad / M-good rule has its own test (test/faults/health.test.ts).
    HEALTH_OPEN_AFTER: '1',
    HEALTH_RESOLVE_AFTER: '1',
    ...env,
  });
  const chat = new SlackChat(new webApi.WebClient('xoxb-test', { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } }));
  const s = createServices({ config, db, store, logger: silentLogger(), chat, directory: noDirectory, mailer });
  if (opts.jobInterval) s.health = new HealthService(() => s, opts);
  made.push(s);
  return s;
}

const component = (r: Awaited<ReturnType<HealthService['evaluate']>>, key: string) => r.components.find((c) => c.key === key)!;
const topPosts = () => fake.callsTo('chat.postMessage').filter((c) => !c.args.thread_ts);
const threadPosts = () => fake.callsTo('chat.postMessage').filter((c) => c.args.thread_ts);
const textOfCall = (c: { args: any }) => JSON.stringify(c.args.blocks ?? c.args.text);

async function deliver(s: Services) {
  // Kicks after each enqueue deliver too (other replicas' outboxes may hold a row for a moment);
  // drain until nothing is pending.
  for (let i = 0; i < 100; i++) {
    await s.outbox.deliverDue();
    const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM warden_outbox WHERE status = 'pending'`);
    if (!rows[0].n) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  fake = await new FakeSlack().start();
  app = await new AppHealthServer().start();
});

afterAll(async () => {
  await app?.stop();
  await fake?.stop();
  await store?.close();
  await cleanup?.();
});

beforeEach(async () => {
  fake.clear();
  app.mode = 'healthy';
  await db.query('DELETE FROM warden_health_incident');
  await db.query('DELETE FROM warden_job_run');
  await db.query('DELETE FROM warden_pool_sample');
  // A recent successful run, so that the scheduler component has something to judge.
  await db.query(`INSERT INTO warden_job_run (job, last_started, last_success, runs) VALUES ('health', now(), now(), 1)`);
});

afterEach(async () => {
  for (const s of made.splice(0)) {
    await s.outbox.close?.();
    await s.health.close();
  }
});

describe('component checks', () => {
  it('reports every component with its figure; healthy when all are', async () => {
    const r = await services().health.evaluate();
    expect(r.components.map((c) => c.key)).toEqual(['database', 'cache', 'audit', 'application', 'email', 'scheduler']);
    const database = component(r, 'database');
    expect(database.status).toBe('healthy');
    expect(database.figures.query_time_ms).toEqual(expect.any(Number));
    expect(database.figures.max_connections).toBeGreaterThan(0);
    expect(database.summary).toMatch(/query [\d.]+ ms · pool [\d.]+% \(\d+ of \d+ connections\)/);
    expect(component(r, 'audit').summary).toMatch(/recent-events query [\d.]+ ms/);
    expect(component(r, 'application').summary).toContain('reports healthy — All systems operational');
    expect(component(r, 'application').details).toContain('database: healthy (connected true, query_time_ms 5.2, pool.size 40, pool.checked_out 15, pool.usage_percent 37.5)');
    // Warden's own store (Redis or not) is never rated: only APP_REDIS_URL, the application's cache.
    expect(component(r, 'cache')).toMatchObject({ status: 'not_configured', summary: expect.stringContaining('APP_REDIS_URL unset') });
    expect(r.status).toBe('healthy');
  });

  it('a slow database query (thresholds under the measured time) is degraded, then unhealthy', async () => {
    const degraded = await services({ DB_QUERY_DEGRADED_MS: '0' }).health.evaluate();
    expect(component(degraded, 'database').status).toBe('degraded');
    expect(degraded.status).toBe('degraded');
    const unhealthy = await services({ DB_QUERY_DEGRADED_MS: '0', DB_QUERY_UNHEALTHY_MS: '0' }).health.evaluate();
    expect(component(unhealthy, 'database').status).toBe('unhealthy');
    expect(unhealthy.status).toBe('unhealthy');
    const audit = await services({ AUDIT_QUERY_DEGRADED_MS: '0' }).health.evaluate();
    expect(component(audit, 'audit').status).toBe('degraded');
  });

  it('the pool rule of the database component (seed: <80% healthy, ≤95% degraded, above unhealthy)', async () => {
    const h = services().health;
    expect([0, 79.9, 80, 95, 95.1, 100].map((p) => h.databasePoolStatus(p))).toEqual([
      'healthy', 'healthy', 'degraded', 'degraded', 'unhealthy', 'unhealthy',
    ]);
    const r = await services({ POOL_DEGRADED_PERCENT: '1', POOL_UNHEALTHY_PERCENT: '100' }).health.evaluate();
    const percent = Number(component(r, 'database').figures.pool_percent);
    expect(component(r, 'database').status).toBe(percent >= 1 ? 'degraded' : 'healthy');
  });

  it('the application endpoint: unreachable, HTTP 500, hanging → unhealthy; not JSON → unknown', async () => {
    // A port nobody listens on.
    const closed = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const unreachable = await services({ APP_HEALTH_URL: `http://127.0.0.1:${closed}/api/system_health` }).health.evaluate();
    expect(component(unreachable, 'application')).toMatchObject({ status: 'unhealthy', summary: expect.stringContaining('unreachable') });
    expect(unreachable.status).toBe('unhealthy');

    app.mode = '500';
    const e500 = await services().health.evaluate();
    expect(component(e500, 'application')).toMatchObject({ status: 'unhealthy', summary: expect.stringContaining('HTTP 500, reports "unhealthy"') });

    app.mode = 'hang';
    const hang = await services().health.evaluate();
    expect(component(hang, 'application')).toMatchObject({ status: 'unhealthy', summary: 'no answer within 300 ms' });

    app.mode = 'not-json';
    const notJson = await services().health.evaluate();
    expect(component(notJson, 'application')).toMatchObject({ status: 'unknown', summary: expect.stringContaining('not JSON') });
    expect(notJson.status).toBe('unknown');

    app.mode = 'degraded';
    const degraded = await services().health.evaluate();
    expect(component(degraded, 'application').status).toBe('degraded');
  });

  it('without APP_HEALTH_URL the application is "not configured"; e-mail not configured is degraded only when a feature needs it', async () => {
    const noMail: Mailer = { configured: false, send: async () => {} };
    const s = services({ APP_HEALTH_URL: '' });
    s.mailer = noMail;
    const r = await s.health.evaluate();
    expect(component(r, 'application').status).toBe('not_configured');
    expect(component(r, 'email')).toMatchObject({ status: 'not_configured', summary: expect.stringContaining('no feature needs it') });
    expect(r.status).toBe('healthy');

    // Reset links go out by e-mail: now its absence is a real problem.
    const needs = services({ APP_HEALTH_URL: '', PASSWORD_RESET_URL: 'https://app.example.com/reset' });
    needs.mailer = noMail;
    const r2 = await needs.health.evaluate();
    expect(component(r2, 'email')).toMatchObject({ status: 'degraded', summary: expect.stringContaining('PASSWORD_RESET_URL') });
    expect(r2.status).toBe('degraded');
  });

  it('flags a stale job and a failing job (seed 000 "scheduler not executing")', async () => {
    await db.query(
      `INSERT INTO warden_job_run (job, last_started, last_success, runs) VALUES ('digest', now() - interval '4 days', now() - interval '4 days', 3)`,
    );
    await db.query(
      `INSERT INTO warden_job_run (job, last_started, last_success, last_error, last_error_at, runs, failures)
       VALUES ('retention', now() - interval '1 minute', now() - interval '1 day', 'relation "x" does not exist', now() - interval '1 minute', 5, 1)`,
    );
    const day = 24 * 3600 * 1000;
    const s = services({}, { jobInterval: (j) => (j === 'digest' || j === 'retention' ? day : j === 'health' ? 60_000 : null) });
    const r = await s.health.evaluate();
    const digest = r.jobs.find((j) => j.job === 'digest')!;
    expect(digest).toMatchObject({ stale: true, failing: false, intervalMs: day });
    expect(digest.note).toMatch(/no success for 4 d/);
    const retention = r.jobs.find((j) => j.job === 'retention')!;
    expect(retention).toMatchObject({ stale: false, failing: true });
    expect(retention.note).toContain('last run failed');
    expect(r.jobs.find((j) => j.job === 'health')).toMatchObject({ stale: false, failing: false });
    expect(component(r, 'scheduler')).toMatchObject({ status: 'degraded', summary: '2 of 3 flagged: digest, retention' });
    expect(r.status).toBe('degraded');
  });

  it('knows the interval of jobs scheduled in this process (node-cron) and flags them when stale', async () => {
    const s = services({ HEALTH_CRON: '0 0 1 1 *' });
    await db.query(`UPDATE warden_job_run SET last_success = now() - interval '4 years', last_started = now() - interval '4 years'`);
    // No check at start here: it would record a fresh success and the job would not be stale.
    const stop = startHealthJob(s, { checkNow: false });
    try {
      const r = await s.health.evaluate();
      const job = r.jobs.find((j) => j.job === 'health')!;
      expect(job.intervalMs).toBeGreaterThanOrEqual(365 * 24 * 3600 * 1000);
      expect(job.nextRun).not.toBeNull();
      expect(job.stale).toBe(true);
      expect(component(r, 'scheduler').status).toBe('degraded');
    } finally {
      await stop();
    }
  });

  it('no recorded job at all is "unknown", not healthy', async () => {
    await db.query('DELETE FROM warden_job_run');
    const r = await services().health.evaluate();
    expect(component(r, 'scheduler').status).toBe('unknown');
    expect(r.status).toBe('unknown');
  });
});

describe('connection pool', () => {
  it('bands and the seed recommendation, from config thresholds', async () => {
    const d = services();
    expect([10, 69.9, 70, 84.9, 85, 95, 95.1].map((v) => d.health.poolBand(v))).toEqual([
      'healthy', 'healthy', 'warning', 'warning', 'critical', 'critical', 'danger',
    ]);
    const p = await d.health.pool();
    expect(p.reading!.max).toBeGreaterThan(0);
    expect(p.reading!.inUse).toBeGreaterThan(0);
    expect(p.band).toBe(d.health.poolBand(p.reading!.percent));
    const s = services({ POOL_WARNING_PERCENT: '1', POOL_CRITICAL_PERCENT: '1', POOL_DANGER_PERCENT: '100' });
    const q = await s.health.pool();
    expect(q.bands).toEqual({ warning: 1, critical: 1, danger: 100 });
    expect(q.band).toBe(q.reading!.percent < 1 ? 'healthy' : 'critical');
    expect(POOL_RECOMMENDATIONS).toEqual({
      healthy: 'No action needed.',
      warning: 'Monitor pool usage trends',
      critical: 'Review active queries for optimization',
      danger: 'Scale up database connection limits immediately',
    });
    expect(q.recommendation).toBe(POOL_RECOMMENDATIONS[q.band!]);
  });

  it('stores samples from the health job and shows the 10-minute trend', async () => {
    const s = services();
    await healthTick(s);
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM warden_pool_sample');
    expect(rows[0].n).toBe(1);
    await db.query('DELETE FROM warden_pool_sample');
    for (let i = 0; i < 10; i++) {
      await db.query(
        `INSERT INTO warden_pool_sample (taken_at, in_use, max_connections, usage_percent)
         VALUES (now() - make_interval(mins => $1::int), $2::int, 100, $2::int)`,
        [9 - i, 20 + i * 7],
      );
    }
    // An old sample outside the window is ignored.
    await db.query(`INSERT INTO warden_pool_sample (taken_at, in_use, max_connections, usage_percent) VALUES (now() - interval '30 minutes', 99, 100, 99)`);
    const trend = await s.health.poolTrend();
    expect(trend.samples).toHaveLength(10);
    expect(trend).toMatchObject({ direction: 'increasing', min: 20, max: 83 });
    expect(trend.change).toBeCloseTo(63, 0);
  });

  it('trend directions and the sparkline', () => {
    const at = (m: number) => new Date(Date.UTC(2025, 0, 1, 10, m));
    expect(trendOf([{ at: at(0), percent: 50 }, { at: at(5), percent: 52 }]).direction).toBe('stable');
    expect(trendOf([{ at: at(0), percent: 80 }, { at: at(5), percent: 40 }]).direction).toBe('decreasing');
    expect(trendOf([{ at: at(0), percent: 80 }]).direction).toBe('not enough samples');
    expect(sparkline([0, 50, 100])).toBe('▁▅█');
  });
});

describe('incident lifecycle', () => {
  it('one message per incident: posted, updated, threaded on status change, acknowledged, resolved', async () => {
    const s = services();
    expect((await healthTick(s)).outcome.action).toBe('none');
    await deliver(s);
    expect(fake.callsTo('chat.postMessage')).toHaveLength(0);

    app.mode = '500';
    const opened = await healthTick(s);
    expect(opened.outcome.action).toBe('opened');
    await deliver(s);
    expect(topPosts()).toHaveLength(1);
    const post = topPosts()[0];
    expect(post.args.channel).toBe('C_ALERTS');
    expect(textOfCall(post)).toContain('Health incident #');
    expect(textOfCall(post)).toContain('unhealthy');
    expect(textOfCall(post)).toContain('HTTP 500');
    expect(textOfCall(post)).toContain('health:ack');

    expect((await healthTick(s)).outcome.action).toBe('updated');
    await deliver(s);
    expect(topPosts()).toHaveLength(1);
    const ts = (await s.incidents.messageRef((await s.incidents.openIncidents())[0]))!.ts;
    expect(fake.callsTo('chat.update').filter((c) => c.args.ts === ts).length).toBeGreaterThanOrEqual(1);

    app.mode = 'degraded';
    expect((await healthTick(s)).outcome.action).toBe('changed');
    await deliver(s);
    expect(threadPosts()).toHaveLength(1);
    expect(threadPosts()[0].args.thread_ts).toBe(ts);
    expect(threadPosts()[0].args.text).toContain('unhealthy → degraded');

    app.mode = 'healthy';
    const resolved = await healthTick(s);
    expect(resolved.outcome.action).toBe('resolved');
    await deliver(s);
    const lastUpdate = fake.callsTo('chat.update').filter((c) => c.args.ts === ts).at(-1)!;
    expect(textOfCall(lastUpdate)).toMatch(/resolved/);
    expect(textOfCall(lastUpdate)).toMatch(/after \*\d+ s\*/);
    expect(textOfCall(lastUpdate)).not.toContain('health:ack');
    expect(threadPosts().at(-1)!.args.text).toContain('healthy again; resolved after');
    expect(topPosts()).toHaveLength(1);
    const rows = (await db.query<any>('SELECT * FROM warden_health_incident')).rows;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'resolved', first_status: 'unhealthy', last_status: 'degraded', worst_status: 'unhealthy', changes: 1 });

    // Healthy ticks after that post nothing more.
    expect((await healthTick(s)).outcome.action).toBe('none');
  });

  it('a slow query opens an incident on one replica and a normal one resolves it', async () => {
    const slow = services({ DB_QUERY_DEGRADED_MS: '0' });
    expect((await healthTick(slow)).outcome.action).toBe('opened');
    expect((await healthTick(slow)).outcome.action).toBe('updated');
    expect((await healthTick(services())).outcome.action).toBe('resolved');
    await deliver(slow);
    expect(topPosts()).toHaveLength(1);
    expect(textOfCall(topPosts()[0])).toContain('degraded');
    expect(textOfCall(topPosts()[0])).toContain('Database');
  });

  it.runIf(!!process.env.DATABASE_URL)('a query really slowed by a lock turns audit logging unhealthy', async () => {
    const s = services({ AUDIT_QUERY_DEGRADED_MS: '50', AUDIT_QUERY_UNHEALTHY_MS: '100' });
    const pg = (db as any).pool;
    const holder = await pg.connect();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE');
    const evaluation = s.health.evaluate();
    await new Promise((r) => setTimeout(r, 300));
    await holder.query('COMMIT');
    holder.release();
    const r = await evaluation;
    expect(component(r, 'audit').status).toBe('unhealthy');
    expect(Number(component(r, 'audit').figures.query_time_ms)).toBeGreaterThanOrEqual(250);
  });

  it('an incident opened while ALERTS_CHANNEL was unset is posted once the channel is set', async () => {
    app.mode = '500';
    expect((await healthTick(services({ ALERTS_CHANNEL: '' }))).outcome.action).toBe('opened');
    const s = services();
    await deliver(s);
    expect(topPosts()).toHaveLength(0);
    expect((await healthTick(s)).outcome.action).toBe('updated');
    expect((await healthTick(s)).outcome.action).toBe('updated');
    await deliver(s);
    expect(topPosts()).toHaveLength(1);
    expect(topPosts()[0].args.channel).toBe('C_ALERTS');
  });

  it('two job runners at once post one incident message', async () => {
    app.mode = '500';
    const a = services();
    const b = services();
    // Through the runner (lock) and straight at the service (no lock): one incident either way.
    const outcomes = await Promise.all([runJobOnce(a, healthJob('* * * * *')), runJobOnce(b, healthJob('* * * * *'))]);
    expect(outcomes.filter((o) => o === 'ran').length).toBeGreaterThanOrEqual(1);
    await Promise.all([healthTick(a), healthTick(b), healthTick(a)]);
    await deliver(a);
    await deliver(b);
    expect(topPosts()).toHaveLength(1);
    expect((await db.query<any>('SELECT * FROM warden_health_incident')).rows).toHaveLength(1);
  });
});

describe('several components unhealthy at once (issue 12: one incident per component)', () => {
  // Query-time thresholds far above a loaded CI machine's, except where a test makes one slow.
  const calm = { DB_QUERY_DEGRADED_MS: '5000', DB_QUERY_UNHEALTHY_MS: '10000', AUDIT_QUERY_DEGRADED_MS: '5000', AUDIT_QUERY_UNHEALTHY_MS: '10000' };
  const dbDegraded = { DB_QUERY_DEGRADED_MS: '0', DB_QUERY_UNHEALTHY_MS: '60000' };
  // Nothing listens on port 1: the application's cache is unreachable → unhealthy.
  const cacheDown = { APP_REDIS_URL: 'redis://127.0.0.1:1' };
  const tick = (env: Record<string, string>) => healthTick(services({ HEALTH_OPEN_AFTER: '2', HEALTH_RESOLVE_AFTER: '2', ...calm, ...env }));
  const actions = (o: Awaited<ReturnType<typeof healthTick>>['outcome']) =>
    Object.fromEntries(o.incidents.map((i) => [i.component, i.action]));
  const openComponents = async (s: Services) => (await s.incidents.openIncidents()).map((i) => i.component).sort();

  it('the application database degraded, then its cache unhealthy while that incident is open: two incidents, each opened and resolved on its own', async () => {
    const s = services();
    // The database is slow: after two bad checks in a row its incident opens.
    expect(actions((await tick(dbDegraded)).outcome)).toEqual({});
    expect(actions((await tick(dbDegraded)).outcome)).toEqual({ database: 'opened' });
    // One bad check of the cache is a blip: nothing opens for it, the database's incident is only updated.
    expect(actions((await tick({ ...dbDegraded, ...cacheDown })).outcome)).toEqual({ database: 'updated' });
    expect(actions((await tick(dbDegraded)).outcome)).toEqual({ database: 'updated' });
    // Now it stays down: its OWN incident opens — not a status change of the database's.
    expect(actions((await tick({ ...dbDegraded, ...cacheDown })).outcome)).toEqual({ database: 'updated' });
    expect(actions((await tick({ ...dbDegraded, ...cacheDown })).outcome)).toEqual({ database: 'updated', cache: 'opened' });
    expect(await openComponents(s)).toEqual(['cache', 'database']);
    await deliver(s);
    expect(topPosts()).toHaveLength(2);
    const [dbPost, cachePost] = topPosts();
    expect(textOfCall(dbPost)).toMatch(/Health incident #\d+: degraded — Database/);
    expect(textOfCall(cachePost)).toMatch(/Health incident #\d+: unhealthy — Application cache \(Redis\)/);
    expect(textOfCall(cachePost)).toContain('unreachable');
    // Neither is a status change of the other: nothing threaded.
    expect(threadPosts()).toHaveLength(0);

    // The cache comes back while the database is still slow: the cache's incident resolves (after two
    // good checks), the database's stays open.
    expect(actions((await tick(dbDegraded)).outcome)).toEqual({ database: 'updated' });
    expect(actions((await tick(dbDegraded)).outcome)).toEqual({ database: 'updated', cache: 'resolved' });
    expect(await openComponents(s)).toEqual(['database']);
    await deliver(s);
    const resolvedLines = threadPosts().filter((c) => /healthy again; resolved after/.test(c.args.text));
    expect(resolvedLines).toHaveLength(1);
    expect(resolvedLines[0].args.text).toContain('Application cache (Redis)');

    // Then the database: resolved on its own, after two good checks (the first one moves nothing).
    expect(actions((await tick({})).outcome)).toEqual({});
    expect(actions((await tick({})).outcome)).toEqual({ database: 'resolved' });
    expect(await openComponents(s)).toEqual([]);
    expect(actions((await tick({})).outcome)).toEqual({});
    await deliver(s);
    expect(topPosts()).toHaveLength(2);
    const rows = (await db.query<any>('SELECT component, status, first_status, worst_status, changes FROM warden_health_incident ORDER BY id')).rows;
    expect(rows).toEqual([
      { component: 'database', status: 'resolved', first_status: 'degraded', worst_status: 'degraded', changes: 0 },
      { component: 'cache', status: 'resolved', first_status: 'unhealthy', worst_status: 'unhealthy', changes: 0 },
    ]);
  });

  it('an incident opened before per-component incidents (overall) follows the overall status and resolves; no second one for it', async () => {
    await db.query(`INSERT INTO warden_health_incident (status, first_status, last_status, worst_status) VALUES ('open', 'degraded', 'degraded', 'degraded')`);
    expect(await openComponents(services())).toEqual(['overall']);
    expect(actions((await tick(dbDegraded)).outcome)).toEqual({ overall: 'updated' });
    expect(actions((await tick(dbDegraded)).outcome)).toEqual({ overall: 'updated', database: 'opened' });
    expect(actions((await tick({})).outcome)).toEqual({});
    expect(actions((await tick({})).outcome)).toEqual({ overall: 'resolved', database: 'resolved' });
    expect(await openComponents(services())).toEqual([]);
  });

  it('a component flapping bad/good opens nothing, whatever the others do', async () => {
    for (let i = 0; i < 3; i++) {
      expect(actions((await tick(cacheDown)).outcome)).toEqual({});
      expect(actions((await tick({})).outcome)).toEqual({});
    }
    expect(await openComponents(services())).toEqual([]);
    await deliver(services());
    expect(topPosts()).toHaveLength(0);
  });

  it("a change of one component's status is threaded under that component's message only", async () => {
    const s = services();
    app.mode = 'degraded';
    await tick(cacheDown);
    expect(actions((await tick(cacheDown)).outcome)).toEqual({ cache: 'opened', application: 'opened' });
    app.mode = '500';
    expect(actions((await tick(cacheDown)).outcome)).toEqual({ cache: 'updated', application: 'changed' });
    await deliver(s);
    expect(topPosts()).toHaveLength(2);
    const appRef = (await s.incidents.messageRef((await s.incidents.openIncidents()).find((i) => i.component === 'application')!))!;
    expect(threadPosts()).toHaveLength(1);
    expect(threadPosts()[0].args.thread_ts).toBe(appRef.ts);
    expect(threadPosts()[0].args.text).toContain('degraded → unhealthy');
  });
});
