import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { healthJob, healthTick } from '../../src/jobs/health.js';
import { runJobOnce } from '../../src/jobs/runner.js';
import type { Services } from '../../src/services/index.js';
import { buttonsOf, textOf } from '../../src/slack/sim/driver.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { AppHealthServer } from '../helpers/app-health-server.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, linkSlack, snapshot } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';

let t: TestApp;
let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
let appHealth: AppHealthServer;
let services: Services;
let bobId: number;

const TABLES = ['"user"', 'audit_log', 'warden_health_incident'];
// Each component has its own incident: a query slowed by a loaded machine may open one for the
// database or audit logging next to the application's that these tests are about; not counted.
const alertPosts = () =>
  t.fake
    .callsTo('chat.postMessage')
    .filter((c) => c.args.channel === 'C_ALERTS' && !c.args.thread_ts && !/^Health incident #\d+: (Database|Audit logging) /.test(String(c.args.text)));

/** Slack's Events API request for a user opening the Home tab. */
async function openHome(user: string) {
  const since = t.fake.calls.length;
  const answer = await t.driver.homeOpened(user);
  expect(answer.status).toBe(200);
  const call = await t.fake.waitFor((c) => c.method === 'views.publish' && c.args.user_id === user, 10_000, since);
  return { view: call.args.view, text: textOf({ blocks: call.args.view.blocks }) };
}

/** Drives incidents to a clean state: resolves anything open. */
async function settle() {
  appHealth.mode = 'healthy';
  await healthTick(services);
  await db.query('DELETE FROM warden_health_incident');
}

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  appHealth = await new AppHealthServer().start();
  const alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  const bob = await createUser(db, { username: 'bob', role: 'dispatcher', area: 'indore' });
  bobId = bob.id;
  await createUser(db, { username: 'lockedlarry', role: 'biller', area: null, lockedMinutes: 30, failed: 5 });
  await db.query(`INSERT INTO promotion_request (user_id, reason) VALUES ($1, 'covering the night shift')`, [bob.id]);
  t = await startTestApp({
    db,
    store,
    env: {
      ALERTS_CHANNEL: 'C_ALERTS',
      APP_HEALTH_URL: appHealth.url,
      APP_HEALTH_TIMEOUT_MS: '300',
      EMAIL_API_URL: 'http://127.0.0.1:9/v3/mail/send',
      EMAIL_API_KEY: 'test-key',
      EMAIL_FROM: 'warden@example.com',
      // The shared test Redis's hit rate belongs to every test run: not this test's subject.
      CACHE_DEGRADED_HIT_RATE: '0',
      CACHE_UNHEALTHY_HIT_RATE: '0',
      HEALTH_OPEN_AFTER: '1',
      HEALTH_RESOLVE_AFTER: '1',
    },
  });
  services = t.warden.services;
  await linkSlack(db, 'U_ALICE', alice.id);
  await linkSlack(db, 'U_BOB', bob.id);
  t.fake.addUser({ id: 'U_NOBODY', name: 'nobody', email: 'nobody@elsewhere.org' });
  // One real run of the health job, as the scheduler would do it.
  expect(await runJobOnce(services, healthJob('* * * * *'))).toBe('ran');
});

afterAll(async () => {
  await t?.stop();
  await appHealth?.stop();
  await store?.close();
  await cleanup?.();
});

beforeEach(async () => {
  await settle();
});

describe('/health', () => {
  it('shows the overall status and every component with its figure and thresholds, to a linked non-admin', async () => {
    const reply = await t.driver.reply(await t.driver.command('U_BOB', '/health'));
    expect(reply.args.response_type).toBe('ephemeral');
    const text = textOf(reply.args);
    expect(text).toContain('System health: healthy');
    expect(text).toMatch(/\*Database\* — healthy: query [\d.]+ ms · pool [\d.]+% \(\d+ of \d+ connections\)/);
    expect(text).toContain('healthy &lt;100 ms query and &lt;80% pool');
    expect(text).toMatch(/\*Audit logging\* — healthy: recent-events query [\d.]+ ms/);
    expect(text).toContain('*Application* — healthy: reports healthy — All systems operational');
    expect(text).toContain('cache: healthy (hit_rate 72.5)');
    expect(text).toContain('*E-mail* — healthy: configured');
    expect(text).toMatch(/\*Application cache \(Redis\)\* — not configured/);
    expect(text).toMatch(/`health` — .*last success/);
    expect(text).toContain('`/health pool`');
    expect(text).toMatch(/\*Alert delivery\* — (nothing waiting in the outbox|\d+ alerts? waiting)/);
    // `/health status` is the same.
    const again = textOf((await t.driver.reply(await t.driver.command('U_ALICE', '/health status'))).args);
    expect(again).toContain('System health: healthy');
  });

  it('flags a failing job and a stale one, and the overall status follows', async () => {
    await db.query(
      `INSERT INTO warden_job_run (job, last_started, last_success, last_error, last_error_at, runs, failures)
       VALUES ('digest', now() - interval '2 minutes', now() - interval '2 days', 'connect ECONNREFUSED 127.0.0.1:5432', now() - interval '2 minutes', 9, 1)`,
    );
    try {
      const text = textOf((await t.driver.reply(await t.driver.command('U_BOB', '/health'))).args);
      expect(text).toContain('System health: degraded');
      expect(text).toMatch(/:warning: `digest` \*FAILING\* — .*last run failed 2 min ago: connect ECONNREFUSED/);
      expect(text).toContain('*Scheduled jobs* — degraded: 1 of 2 flagged: digest');
    } finally {
      await db.query(`DELETE FROM warden_job_run WHERE job = 'digest'`);
    }
  });

  it('/health pool: usage vs max_connections, band, 10-minute trend from stored samples, recommendation', async () => {
    await db.query('DELETE FROM warden_pool_sample');
    const empty = textOf((await t.driver.reply(await t.driver.command('U_BOB', '/health pool'))).args);
    expect(empty).toMatch(/Connection pool: [\d.]+% — healthy/);
    expect(empty).toContain('(`SHOW max_connections`)');
    expect(empty).toContain('not enough samples yet (0)');
    expect(empty).toContain('*Recommendation:* No action needed.');
    expect(empty).toContain('Bands: &lt;70% healthy · 70–85% warning · 85–95% critical · &gt;95% danger');
    for (let i = 0; i < 6; i++) {
      await db.query(
        `INSERT INTO warden_pool_sample (taken_at, in_use, max_connections, usage_percent)
         VALUES (now() - make_interval(mins => $1::int), $2::int, 100, $2::int)`,
        [8 - i, 10 + i * 12],
      );
    }
    const text = textOf((await t.driver.reply(await t.driver.command('U_BOB', '/health pool'))).args);
    expect(text).toMatch(/\*increasing\* \(\+\d+(\.\d)? points\) `▁▂▃▄▅▆`/);
    expect(text).toContain('min 10% · avg 40% · max 70% over 6 samples');
  });

  it('explains bad input and refuses unlinked users; nothing changes', async () => {
    const before = await snapshot(db, TABLES);
    const cases: [string, string, RegExp][] = [
      ['U_BOB', '/health frobnicate', /Unknown subcommand `frobnicate`/],
      ['U_BOB', '/health pool now', /Unexpected `now`/],
      ['U_BOB', '/health status verbose:yes', /Unknown option `verbose:`/],
      ['U_NOBODY', '/health', /not linked to an application account/],
    ];
    for (const [user, line, expected] of cases) {
      const text = textOf((await t.driver.reply(await t.driver.command(user, line))).args);
      expect(text, line).toMatch(expected);
    }
    const help = textOf((await t.driver.reply(await t.driver.command('U_NOBODY', '/health help'))).args);
    expect(help).toContain('/health pool');
    expect(await snapshot(db, TABLES)).toEqual(before);
  });
});

describe('health incidents in the alerts channel', () => {
  it('an HTTP 500 from the app: one message, updated, acknowledged by an on-call non-admin, threaded, resolved', async () => {
    const postsBefore = alertPosts().length;
    appHealth.mode = '500';
    expect((await healthTick(services)).outcome.action).toBe('opened');
    const post = await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === 'C_ALERTS' && !c.args.thread_ts, 5000, 0);
    const [inc] = await services.incidents.openIncidents();
    expect(textOf(post.args)).toContain(`Health incident #${inc.id}: unhealthy`);
    expect(textOf(post.args)).toContain('HTTP 500, reports "unhealthy"');
    const [ack] = buttonsOf(post.args.blocks);
    expect(ack).toMatchObject({ text: 'Acknowledge', actionId: 'health:ack' });

    // Still failing: the same message is updated, no new one.
    const since = t.fake.calls.length;
    expect((await healthTick(services)).outcome.action).toBe('updated');
    const ref = (await services.incidents.messageRef(inc))!;
    await t.fake.waitFor((c) => c.method === 'chat.update' && c.args.ts === ref.ts, 5000, since);
    expect(alertPosts().length).toBe(postsBefore + 1);

    // Bob is on call, linked, not an admin.
    const click = await t.driver.click('U_BOB', { actionId: ack.actionId, value: ack.value, channel: 'C_ALERTS', message: { ts: ref.ts } });
    const updated = await t.driver.reply(click);
    expect(updated.args.replace_original).toBe(true);
    expect(textOf(updated.args)).toContain('Acknowledged by <@U_BOB> (bob)');
    expect(buttonsOf(updated.args.blocks)).toEqual([]);
    const audits = await auditRows(db, 'incident_acknowledged');
    expect(audits).toHaveLength(1);
    expect(audits[0]).toMatchObject({ user_id: bobId, entity_type: 'health_incident', entity_id: inc.id });
    expect(audits[0].details).toMatchObject({ slack_user: 'U_BOB', actor: 'bob', incident: inc.id, status: 'unhealthy' });
    const thread = await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.thread_ts === ref.ts, 5000, since);
    expect(thread.args.text).toContain('<@U_BOB> (bob) acknowledged this incident');
    const row = (await services.incidents.get(inc.id))!;
    expect(row).toMatchObject({ acknowledged_by: bobId, acknowledged_by_name: 'bob', acknowledged_by_slack: 'U_BOB' });

    // A second click (anyone) is told who took it; nothing changes.
    const before = await snapshot(db, TABLES);
    const second = await t.driver.reply(
      await t.driver.click('U_ALICE', { actionId: ack.actionId, value: ack.value, channel: 'C_ALERTS', message: { ts: ref.ts } }),
    );
    expect(textOf(second.args)).toMatch(new RegExp(`Incident #${inc.id} was already acknowledged by <@U_BOB> \\(bob\\)`));
    // Forged values and unlinked clickers are refused.
    const forged = await t.driver.reply(await t.driver.click('U_BOB', { actionId: 'health:ack', value: '{"i":"1; DROP TABLE x"}' }));
    expect(textOf(forged.args)).toContain('not valid any more');
    const missing = await t.driver.reply(await t.driver.click('U_BOB', { actionId: 'health:ack', value: '{"i":99999}' }));
    expect(textOf(missing.args)).toContain('There is no health incident #99999');
    const nobody = await t.driver.reply(await t.driver.click('U_NOBODY', { actionId: ack.actionId, value: ack.value }));
    expect(textOf(nobody.args)).toContain('not linked');
    expect(await snapshot(db, TABLES)).toEqual(before);

    // Healthy again: resolved with its duration, a line in the thread, still one message.
    appHealth.mode = 'healthy';
    const since2 = t.fake.calls.length;
    expect((await healthTick(services)).outcome.action).toBe('resolved');
    const resolved = await t.fake.waitFor((c) => c.method === 'chat.update' && c.args.ts === ref.ts && /resolved/.test(textOf(c.args)), 5000, since2);
    expect(textOf(resolved.args)).toMatch(/Resolved\* at .* after \*\d+ s\*/);
    expect(textOf(resolved.args)).toContain('Acknowledged by <@U_BOB> (bob)');
    await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.thread_ts === ref.ts && /resolved after/.test(c.args.text), 5000, since2);
    expect(alertPosts().length).toBe(postsBefore + 1);

    // Acknowledging a resolved incident is refused.
    const late = await t.driver.reply(await t.driver.click('U_ALICE', { actionId: ack.actionId, value: ack.value }));
    expect(textOf(late.args)).toMatch(/already acknowledged|was resolved/);
  });

  it('a change of status is threaded under the one message', async () => {
    appHealth.mode = 'degraded';
    expect((await healthTick(services)).outcome.action).toBe('opened');
    const [inc] = await services.incidents.openIncidents();
    appHealth.mode = 'hang';
    expect((await healthTick(services)).outcome.action).toBe('changed');
    const ref = await waitForRef(inc.id);
    const line = await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.thread_ts === ref.ts && /degraded → unhealthy/.test(c.args.text), 5000, 0);
    expect(line.args.text).toContain('no answer within 300 ms');
  });

  it('Slack down when the incident opens: /health shows the alert waiting; it is posted once when Slack is back', async () => {
    const before = alertPosts().length;
    t.fake.down = true;
    try {
      appHealth.mode = '500';
      expect((await healthTick(services)).outcome.action).toBe('opened');
      await services.outbox.deliverDue();
      const text = textOf((await t.driver.reply(await t.driver.command('U_BOB', '/health'))).args);
      expect(text).toMatch(/\*Alert delivery\* — [1-9]\d* alerts? waiting \(oldest queued/);
      expect(text).toMatch(/:rotating_light: \*Open incident #\d+\* — unhealthy since .* · not acknowledged/);
    } finally {
      t.fake.down = false;
    }
    const [inc] = await services.incidents.openIncidents();
    // The outbox retries after its backoff; keep asking it until the post is through.
    for (let i = 0; i < 100 && !(await services.incidents.messageRef(inc)); i++) {
      await services.outbox.deliverDue();
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await services.incidents.messageRef(inc)).not.toBeNull();
    expect(alertPosts().length).toBe(before + 1);
  });

  it('two job runners at once post one incident message', async () => {
    const before = alertPosts().length;
    appHealth.mode = '500';
    const job = healthJob('* * * * *');
    await Promise.all([runJobOnce(services, job), runJobOnce(services, job), healthTick(services), healthTick(services)]);
    const [inc] = await services.incidents.openIncidents();
    await waitForRef(inc.id);
    expect(alertPosts().length).toBe(before + 1);
    expect((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM warden_health_incident')).rows[0].n).toBe(1);
  });
});

describe('App Home', () => {
  it('admins see health, open incidents, pending promotions and recoveries, locked accounts', async () => {
    appHealth.mode = '500';
    await healthTick(services);
    (services.health as any).homeCache = undefined;
    const { text } = await openHome('U_ALICE');
    expect(text).toContain('Signed in as *alice* (admin)');
    expect(text).toMatch(/System health: (unhealthy|degraded|healthy)/);
    expect(text).toMatch(/:rotating_light: #\d+ — unhealthy since .* · not acknowledged/);
    expect(text).toContain('*Pending promotion requests (1)*');
    expect(text).toContain('bob — requested');
    expect(text).toContain('*Pending 2FA recoveries*\nNone.');
    expect(text).toContain('*Locked accounts (1)*');
    expect(text).toContain(':lock: lockedlarry (biller)');
  });

  it('a linked non-admin sees health only; an unlinked user is told how to get linked', async () => {
    const bob = await openHome('U_BOB');
    expect(bob.text).toContain('System health');
    expect(bob.text).toContain('*Open incidents*');
    expect(bob.text).not.toContain('lockedlarry');
    expect(bob.text).not.toContain('Pending promotion requests');
    expect(bob.text).toContain('shown to admins');
    const nobody = await openHome('U_NOBODY');
    expect(nobody.text).toContain('not linked to an application account');
    expect(nobody.text).not.toContain('System health');
  });
});

describe('an unreachable application endpoint', () => {
  it('turns the status unhealthy and posts one incident', async () => {
    await appHealth.stop();
    const before = alertPosts().length;
    const since = t.fake.calls.length;
    const { report, outcome } = await healthTick(services);
    expect(report.status).toBe('unhealthy');
    expect(report.components.find((c) => c.key === 'application')!.summary).toMatch(/unreachable/);
    expect(outcome.action).toBe('opened');
    // (From this test's calls on: the incident cards show the component's thresholds, which name "unreachable" too.)
    await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === 'C_ALERTS' && /unreachable \(/.test(textOf(c.args)), 5000, since);
    expect(alertPosts().length).toBe(before + 1);
  });
});

async function waitForRef(incidentId: number) {
  for (let i = 0; i < 100; i++) {
    const inc = (await services.incidents.get(incidentId))!;
    const ref = await services.incidents.messageRef(inc);
    if (ref) return ref;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('incident message never delivered');
}
