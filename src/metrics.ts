import fs from 'node:fs';
import client from 'prom-client';
import type { Db } from './db/index.js';
import type { Chat } from './services/chat.js';
import type { StepUpService } from './services/step-up.js';
import { StepUpError } from './errors.js';

/**
 * Prometheus metrics (prom-client), one registry per running Warden so that tests starting
 * several apps in one process do not share counters. README "Metrics" documents every series.
 *
 * Request counters and latencies are counted as requests happen (src/slack/request-log.ts).
 * Everything that lives in the database — the outbox backlog, job runs, open incidents — is
 * read at scrape time, so it is the same on every replica, needs no hooks in the services
 * that own it, and is right even for work done by another replica.
 */

export type Outcome = 'ok' | 'refused' | 'user_error' | 'failed' | 'duplicate';
export type RequestKind = 'command' | 'action' | 'view' | 'event';

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Distinct command/action ids kept as label values; anything beyond is counted as "other". */
const MAX_IDS = 200;

export class Metrics {
  readonly registry = new client.Registry();

  readonly requests = new client.Counter({
    name: 'warden_slack_requests_total',
    help: 'Slack requests handled, by kind (command, action, view, event), command or action id, and outcome (ok, refused, user_error, failed, duplicate).',
    labelNames: ['kind', 'id', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly ackSeconds = new client.Histogram({
    name: 'warden_slack_ack_seconds',
    help: "Time from a Slack request's arrival to its ack (Slack gives up after 3 s).",
    labelNames: ['kind'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly handlerSeconds = new client.Histogram({
    name: 'warden_slack_handler_seconds',
    help: 'Time from arrival until the handler finished (answer delivered), by kind and outcome.',
    labelNames: ['kind', 'outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly stepUpFailures = new client.Counter({
    name: 'warden_stepup_failures_total',
    help: 'Step-up (TOTP) verifications refused: wrong, malformed, replayed or rate-limited codes, or no 2FA enrolled.',
    registers: [this.registry],
  });
  readonly deliveries = new client.Counter({
    name: 'warden_alert_deliveries_total',
    help: "Slack calls made by the alert outbox, by call (post, update, …) and result (ok, rate_limited, error).",
    labelNames: ['call', 'result'] as const,
    registers: [this.registry],
  });

  // Read at scrape time.
  private readonly databaseUp = this.gauge('warden_database_up', 'Whether the scrape-time queries reached the database (1) or not (0).');
  private readonly outboxBacklog = this.gauge('warden_outbox_backlog', 'Alerts waiting in the outbox (pending), by channel.', ['channel']);
  private readonly outboxOldest = this.gauge(
    'warden_outbox_oldest_age_seconds',
    'Age of the oldest alert waiting in the outbox, by channel (absent when nothing waits).',
    ['channel'],
  );
  private readonly jobRuns = this.gauge('warden_job_runs', 'Runs of each scheduled job so far, all replicas together (cumulative, kept in warden_job_run).', ['job']);
  private readonly jobFailures = this.gauge('warden_job_failures', 'Failed runs of each scheduled job so far, all replicas together (cumulative).', ['job']);
  private readonly jobLastSuccess = this.gauge(
    'warden_job_last_success_timestamp_seconds',
    'Unix time of the last successful run of each scheduled job (any replica).',
    ['job'],
  );
  private readonly openIncidents = this.gauge('warden_open_incidents', 'Health incidents open now.');
  private readonly pool = this.gauge('warden_db_pool_connections', "Warden's database pool: connections in use, idle, waiting for a connection, and the maximum.", [
    'state',
  ]);

  private readonly ids = new Set<string>();

  constructor(private readonly deps: { db: Db }) {
    client.collectDefaultMetrics({ register: this.registry, prefix: 'warden_' });
    new client.Gauge({
      name: 'warden_build_info',
      help: 'Always 1; labels say which Warden and Node.js run.',
      labelNames: ['version', 'node'] as const,
      registers: [this.registry],
    }).set({ version: packageVersion(), node: process.version }, 1);
  }

  private gauge(name: string, help: string, labelNames: string[] = []) {
    return new client.Gauge({ name, help, labelNames, registers: [this.registry] });
  }

  /** A command/action id as a label value, bounded so forged or generated ids cannot grow the series without end. */
  idLabel(id: string): string {
    if (this.ids.has(id)) return id;
    if (this.ids.size >= MAX_IDS) return 'other';
    this.ids.add(id);
    return id;
  }

  /** Counts step-up refusals where they happen, whichever handler asked (command, button or form). */
  observeStepUp(stepUp: StepUpService): void {
    const verify = stepUp.verify.bind(stepUp);
    stepUp.verify = async (...args: Parameters<StepUpService['verify']>) => {
      try {
        return await verify(...args);
      } catch (e) {
        if (e instanceof StepUpError) this.stepUpFailures.inc();
        throw e;
      }
    };
  }

  /** Wraps the outbox's chat port so every Slack call it makes is counted by result. */
  countDeliveries<C extends Chat>(chat: C): C {
    return new Proxy(chat, {
      get: (target, prop, receiver) => {
        const value = Reflect.get(target, prop, receiver);
        if (typeof value !== 'function' || typeof prop !== 'string') return value;
        return (...args: unknown[]) => {
          const result = (value as (...a: unknown[]) => unknown).apply(target, args);
          if (!(result instanceof Promise)) return result;
          return result.then(
            (r) => {
              this.deliveries.inc({ call: prop, result: 'ok' });
              return r;
            },
            (e: unknown) => {
              const rateLimited = (e as { code?: string })?.code === 'slack_webapi_rate_limited_error';
              this.deliveries.inc({ call: prop, result: rateLimited ? 'rate_limited' : 'error' });
              throw e;
            },
          );
        };
      },
    });
  }

  /** Reads the database-backed series, then renders everything in the text format. */
  async render(): Promise<string> {
    await this.refresh();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private async refresh(): Promise<void> {
    const { db } = this.deps;
    const stats = db.poolStats();
    this.pool.set({ state: 'in_use' }, Math.max(0, stats.total - stats.idle));
    this.pool.set({ state: 'idle' }, stats.idle);
    this.pool.set({ state: 'waiting' }, stats.waiting);
    this.pool.set({ state: 'max' }, stats.max);
    const timeout = <T>(p: Promise<T>) =>
      Promise.race([p, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('metrics query timed out')), 2000).unref())]);
    try {
      const [outbox, jobs, incidents] = await timeout(
        Promise.all([
          db.query<{ channel: string; n: number; oldest: number }>(
            `SELECT channel, count(*)::int AS n, extract(epoch FROM now() - min(created_at))::float8 AS oldest
               FROM warden_outbox WHERE status = 'pending' GROUP BY channel`,
          ),
          db.query<{ job: string; runs: number; failures: number; last_success: number | null }>(
            `SELECT job, runs, failures, extract(epoch FROM last_success)::float8 AS last_success FROM warden_job_run`,
          ),
          db.query<{ n: number }>(`SELECT count(*)::int AS n FROM warden_health_incident WHERE status = 'open'`),
        ]),
      );
      this.databaseUp.set(1);
      // A channel whose backlog drained disappears from the series instead of staying at its last value.
      this.outboxBacklog.reset();
      this.outboxOldest.reset();
      for (const r of outbox.rows) {
        this.outboxBacklog.set({ channel: r.channel }, Number(r.n));
        this.outboxOldest.set({ channel: r.channel }, Math.max(0, Number(r.oldest)));
      }
      for (const r of jobs.rows) {
        this.jobRuns.set({ job: r.job }, Number(r.runs));
        this.jobFailures.set({ job: r.job }, Number(r.failures));
        if (r.last_success !== null) this.jobLastSuccess.set({ job: r.job }, Number(r.last_success));
      }
      this.openIncidents.set(Number(incidents.rows[0]?.n ?? 0));
    } catch {
      // The database is down or slow: say so, and keep the other series (process, requests) scrapeable.
      this.databaseUp.set(0);
    }
  }
}

/**
 * Warden's version from package.json (one level above src/ in the sources and in dist/, which
 * carries its own copy): npm_package_version is only set when started through npm, and the
 * image and `node dist/src/main.js` are not.
 */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return process.env.npm_package_version ?? 'unknown';
  }
}
