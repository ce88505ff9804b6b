import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { createLogger } from '../../src/logger.js';
import { textOf } from '../../src/slack/sim/driver.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { createUser, linkSlack, totpOf, type TestUser } from '../helpers/fixtures.js';
import { parsePrometheusText, sampleValue, type Family } from '../helpers/prometheus-text.js';
import { createTestStore } from '../helpers/store.js';
import { md } from '../../src/ui.js';

/**
 * Issue 13: one info line per Slack request (request id, Slack user, account, id, outcome,
 * durations; nothing secret), the request id as the reference users see, and GET /metrics
 * in the Prometheus text format with the series the README documents — read with a
 * Prometheus text-format parser, before and after traffic.
 */

const TOKEN = 'metrics-token-for-tests-0123';
let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
let t: TestApp;
let admin: TestUser;
const lines: any[] = [];

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  admin = await createUser(db, { username: 'opsadmin', role: 'admin', area: null, twoFa: true });
  const biller = await createUser(db, { username: 'opsbiller', role: 'biller', area: null });
  await createUser(db, { username: 'victim', role: 'dispatcher' });
  await linkSlack(db, 'U_OPS', admin.id);
  await linkSlack(db, 'U_BILL', biller.id);
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  t = await startTestApp({ db, store, env: { METRICS_TOKEN: TOKEN }, logger: createLogger({ level: 'info', destination: sink }) });
});

afterAll(async () => {
  await t?.stop();
  await store?.close();
  await cleanup?.();
});

const requestLines = () => lines.filter((l) => l.msg === 'slack request');

async function scrape(): Promise<Map<string, Family>> {
  const res = await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  return parsePrometheusText(await res.text());
}

function family(all: Map<string, Family>, name: string): Family {
  const f = all.get(name);
  if (!f) throw new Error(`series ${name} missing from /metrics`);
  return f;
}

/** A sample's value; for a histogram family name, its _count. */
function value(all: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  family(all, name);
  const f = all.get(name)!;
  return sampleValue(all, f.type === 'histogram' ? `${name}_count` : name, labels);
}

/** Waits for the request's log line (it is written when the handler finished, after the answer). */
async function lineFor(predicate: (l: any) => boolean): Promise<any> {
  for (let i = 0; i < 100; i++) {
    const l = requestLines().find(predicate);
    if (l) return l;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no request log line');
}

describe('GET /metrics', () => {
  it('is refused without the bearer token and with a wrong one', async () => {
    expect((await fetch(`${t.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${t.url}/metrics`, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status).toBe(401);
    expect((await fetch(`${t.url}/metrics`, { headers: { authorization: TOKEN } })).status).toBe(401);
  });
});

describe('request log and metrics', () => {
  let before: Map<string, Family>;
  beforeAll(async () => {
    before = await scrape();
  });

  it('an ok command: one info line with request id, user, account, id, outcome and durations; nothing of the text', async () => {
    const reply = await t.driver.reply(await t.driver.command('U_OPS', '/users show victim'));
    expect(textOf(reply.args)).toContain('victim');
    const line = await lineFor((l) => l.slackUser === 'U_OPS' && l.id === '/users');
    expect(line).toMatchObject({ level: 30, kind: 'command', id: '/users', slackUser: 'U_OPS', team: 'T_WARDEN', account: admin.id, outcome: 'ok' });
    expect(line.requestId).toMatch(/^[0-9a-f]{8}$/);
    expect(line.durationMs).toBeGreaterThanOrEqual(0);
    expect(line.ackMs).toBeLessThanOrEqual(line.durationMs);
    expect(JSON.stringify(line)).not.toContain('victim');
  });

  it('a refused command, a user error and an unlinked user are told apart', async () => {
    await t.driver.reply(await t.driver.command('U_BILL', '/users list'));
    expect((await lineFor((l) => l.slackUser === 'U_BILL')).outcome).toBe('refused');
    await t.driver.reply(await t.driver.command('U_OPS', '/users show nobody-by-that-name'));
    expect((await lineFor((l) => l.slackUser === 'U_OPS' && l.outcome === 'user_error')).account).toBe(admin.id);
    await t.driver.reply(await t.driver.command('U_STRANGER', '/users list'));
    const stranger = await lineFor((l) => l.slackUser === 'U_STRANGER');
    expect(stranger.outcome).toBe('refused');
    expect(stranger.account).toBeUndefined();
  });

  it('a failure: the reference the user sees is the request id of the log line', async () => {
    await db.query('ALTER TABLE "user" RENAME COLUMN last_login TO last_login_moved');
    try {
      const text = textOf((await t.driver.reply(await t.driver.command('U_OPS', '/users list'))).args);
      const ref = /ref `([0-9a-f]{8})`/.exec(text)?.[1];
      expect(ref).toBeDefined();
      const line = await lineFor((l) => l.requestId === ref);
      expect(line).toMatchObject({ outcome: 'failed', id: '/users', slackUser: 'U_OPS' });
      // The error line names the same reference and keeps err.code (a SQLSTATE) readable.
      const err = lines.find((l) => l.ref === ref && l.level === 50);
      expect(err.err.code).toBe('42703');
    } finally {
      await db.query('ALTER TABLE "user" RENAME COLUMN last_login_moved TO last_login');
    }
  });

  it('a wrong step-up code in a form: user_error, counted as a step-up failure; the code is never logged', async () => {
    const opened = await t.driver.reply(await t.driver.command('U_OPS', '/users reset-password victim temp'));
    expect(opened.method).toBe('views.open');
    const wrong = await t.driver.submit('U_OPS', opened.args.view, { method: 'temp', totp: '000000' });
    expect(wrong.ack.errors.totp).toMatch(/not valid/);
    const line = await lineFor((l) => l.kind === 'view' && l.slackUser === 'U_OPS');
    expect(line).toMatchObject({ id: 'users:reset', outcome: 'user_error', account: admin.id });
    expect(lines.map((l) => JSON.stringify(l)).join('\n')).not.toContain('000000');
    // A right code afterwards succeeds and logs ok.
    const ok = await t.driver.submit('U_OPS', opened.args.view, { method: 'temp', totp: await totpOf(admin) });
    expect(ok.answer.status).toBe(200);
    await lineFor((l) => l.kind === 'view' && l.outcome === 'ok');
  });

  it('documented series exist and move', async () => {
    // Database-backed series: one alert delivered, one refused by Slack and still waiting; a job run; an open incident.
    const { outbox } = t.warden.services;
    await outbox.post(db, 'C_OPS_OK', { text: md.text('delivered') });
    await outbox.deliverDue();
    t.fake.failNext('chat.postMessage', { status: 500 }, 1000);
    await outbox.post(db, 'C_OPS_WAIT', { text: md.text('waiting') });
    await outbox.deliverDue();
    await db.query(`INSERT INTO warden_job_run (job, last_started, last_success, runs, failures) VALUES ('ops-test-job', now(), now(), 3, 1)`);
    await db.query(`INSERT INTO warden_health_incident (status, first_status, last_status, worst_status) VALUES ('open', 'degraded', 'degraded', 'degraded')`);

    const after = await scrape();
    const inc = (name: string, labels: Record<string, string>) => (value(after, name, labels) ?? 0) - (value(before, name, labels) ?? 0);

    expect(inc('warden_slack_requests_total', { kind: 'command', id: '/users', outcome: 'ok' })).toBeGreaterThanOrEqual(1);
    expect(inc('warden_slack_requests_total', { kind: 'command', id: '/users', outcome: 'refused' })).toBeGreaterThanOrEqual(2);
    expect(inc('warden_slack_requests_total', { kind: 'command', id: '/users', outcome: 'user_error' })).toBeGreaterThanOrEqual(1);
    expect(inc('warden_slack_requests_total', { kind: 'command', id: '/users', outcome: 'failed' })).toBe(1);
    expect(inc('warden_slack_requests_total', { kind: 'view', id: 'users:reset', outcome: 'user_error' })).toBe(1);
    expect(family(after, 'warden_slack_ack_seconds').type).toBe('histogram');
    expect(family(after, 'warden_slack_requests_total').type).toBe('counter');
    expect(inc('warden_slack_ack_seconds', { kind: 'command' })).toBeGreaterThanOrEqual(5);
    expect(inc('warden_slack_handler_seconds', { kind: 'command', outcome: 'failed' })).toBe(1);
    expect(inc('warden_stepup_failures_total', {})).toBe(1);

    expect(inc('warden_alert_deliveries_total', { call: 'post', result: 'ok' })).toBeGreaterThanOrEqual(1);
    expect(inc('warden_alert_deliveries_total', { call: 'post', result: 'error' })).toBeGreaterThanOrEqual(1);
    expect(value(after, 'warden_outbox_backlog', { channel: 'C_OPS_WAIT' })).toBe(1);
    expect(value(after, 'warden_outbox_backlog', { channel: 'C_OPS_OK' })).toBeUndefined();
    expect(value(after, 'warden_outbox_oldest_age_seconds', { channel: 'C_OPS_WAIT' })).toBeGreaterThanOrEqual(0);
    expect(value(after, 'warden_job_runs', { job: 'ops-test-job' })).toBe(3);
    expect(value(after, 'warden_job_failures', { job: 'ops-test-job' })).toBe(1);
    expect(Math.abs(value(after, 'warden_job_last_success_timestamp_seconds', { job: 'ops-test-job' })! - Date.now() / 1000)).toBeLessThan(60);
    expect(value(after, 'warden_open_incidents')).toBe(1);
    expect(value(after, 'warden_database_up')).toBe(1);
    for (const state of ['in_use', 'idle', 'waiting', 'max']) expect(value(after, 'warden_db_pool_connections', { state })).toBeGreaterThanOrEqual(0);
    // Process metrics.
    expect(value(after, 'warden_process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(value(after, 'warden_process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(family(after, 'warden_nodejs_eventloop_lag_seconds')).toBeDefined();
    expect(value(after, 'warden_build_info')).toBe(1);
  });
});
