import { performance } from 'node:perf_hooks';
import cron from 'node-cron';
import { request } from 'undici';
import { jobRuns, type JobRunRow } from '../db/job-runs.js';
import { RedisStore } from '../store/index.js';
import type { Services } from './index.js';

/**
 * System health (seed 001, "System Health Monitoring"): each component measured against the
 * seed's thresholds, and an overall status. A component that cannot be measured is
 * "unknown", never silently healthy; an optional part that is not set up is "not
 * configured" and does not count towards the overall status (e-mail counts only when a
 * feature needs it; the cache is the application's, APP_REDIS_URL, never Warden's store).
 */

export type Status = 'healthy' | 'degraded' | 'unhealthy' | 'unknown';
export type ComponentStatus = Status | 'not_configured';
export type ComponentKey = 'database' | 'cache' | 'audit' | 'application' | 'email' | 'scheduler';

export interface ComponentReport {
  key: ComponentKey;
  name: string;
  status: ComponentStatus;
  /** The figure, in one line: "query 2.1 ms · pool 12% (12 of 100 connections)". */
  summary: string;
  /** The seed's thresholds for this component, in one line. */
  thresholds: string;
  /** Further lines (the application's own components, jobs). Untrusted text is escaped by renderers. */
  details?: string[];
  figures: Record<string, number | string | boolean | null>;
}

export interface JobHealth {
  job: string;
  lastStarted: string | null;
  lastSuccess: string | null;
  lastError: string | null;
  lastErrorAt: string | null;
  runs: number;
  failures: number;
  /** Interval between runs (ms) from this process's schedule; null when not scheduled here. */
  intervalMs: number | null;
  nextRun: string | null;
  stale: boolean;
  failing: boolean;
  /** Why the job is flagged, or its state in words. */
  note: string;
}

export interface HealthReport {
  status: Status;
  checkedAt: string;
  components: ComponentReport[];
  jobs: JobHealth[];
}

export interface PoolReading {
  inUse: number;
  max: number;
  percent: number;
  /** Warden's own pg pool (or the one embedded connection). */
  own: { total: number; idle: number; waiting: number; max: number };
}

export type PoolBand = 'healthy' | 'warning' | 'critical' | 'danger';

export interface PoolTrend {
  samples: { at: string; percent: number }[];
  direction: 'increasing' | 'decreasing' | 'stable' | 'not enough samples';
  min: number | null;
  max: number | null;
  avg: number | null;
  /** Change over the window from a least-squares line, in percentage points. */
  change: number | null;
}

export interface PoolReport {
  reading: PoolReading | null;
  error?: string;
  band: PoolBand | null;
  recommendation: string;
  trend: PoolTrend;
  bands: { warning: number; critical: number; danger: number };
}

/** The seed's pool dashboard recommendations. */
export const POOL_RECOMMENDATIONS: Record<PoolBand, string> = {
  healthy: 'No action needed.',
  warning: 'Monitor pool usage trends',
  critical: 'Review active queries for optimization',
  danger: 'Scale up database connection limits immediately',
};

const SEVERITY: Record<ComponentStatus, number> = { not_configured: -1, healthy: 0, unknown: 1, degraded: 2, unhealthy: 3 };

/** The worst of several statuses (not_configured ignored; none at all → unknown). */
export function worst(statuses: ComponentStatus[]): Status {
  const counted = statuses.filter((s): s is Status => s !== 'not_configured');
  if (!counted.length) return 'unknown';
  return counted.reduce((a, b) => (SEVERITY[b] > SEVERITY[a] ? b : a));
}

export const STATUS_EMOJI: Record<ComponentStatus, string> = {
  healthy: ':large_green_circle:',
  degraded: ':large_yellow_circle:',
  unhealthy: ':red_circle:',
  unknown: ':white_circle:',
  not_configured: ':heavy_minus_sign:',
};

export const BAND_EMOJI: Record<PoolBand, string> = {
  healthy: ':large_green_circle:',
  warning: ':large_yellow_circle:',
  critical: ':large_orange_circle:',
  danger: ':red_circle:',
};

/** A job is stale when it has not succeeded within this many of its intervals. */
export const STALE_INTERVALS = 3;
/** Window of the pool trend (seed: "Usage trend (last 10 minutes)"). */
export const TREND_WINDOW_MINUTES = 10;
/** Pool samples older than this are deleted by the health job. */
export const SAMPLE_RETENTION_HOURS = 24;

class TimeoutError extends Error {}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new TimeoutError(`${what} did not answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;
const errText = (e: unknown) => String((e as Error)?.message ?? e).replace(/\s+/g, ' ').slice(0, 200);

export interface HealthOptions {
  /** Interval of a job by name (ms), when this process does not schedule it (tests, other tools). */
  jobInterval?: (job: string) => number | null | undefined;
}

export class HealthService {
  private homeCache?: { at: number; report: Promise<HealthReport> };
  private appCache?: RedisStore;

  constructor(
    private readonly services: () => Services,
    private readonly opts: HealthOptions = {},
  ) {}

  private get s() {
    return this.services();
  }

  /** Measures every component now. Never throws: what fails to measure is reported as such. */
  async evaluate(): Promise<HealthReport> {
    // The database first and alone: on the embedded database every query shares one
    // connection, and the query time must not include the other checks' queries.
    const database = await this.checkDatabase();
    const auditThenJobs = (async () => [await this.checkAudit(), await this.checkJobs()] as const)();
    const [[audit, scheduler], cache, application] = await Promise.all([auditThenJobs, this.checkCache(), this.checkApplication()]);
    const email = this.checkEmail();
    const components = [database, cache, audit, application, email, scheduler.component];
    return {
      status: worst(components.map((c) => c.status)),
      checkedAt: new Date().toISOString(),
      components,
      jobs: scheduler.jobs,
    };
  }

  /** The last evaluation if it is younger than maxAgeMs, else a fresh one (App Home). */
  async recent(maxAgeMs = 30_000): Promise<HealthReport> {
    if (this.homeCache && Date.now() - this.homeCache.at < maxAgeMs) return this.homeCache.report;
    const report = this.evaluate();
    this.homeCache = { at: Date.now(), report };
    return report;
  }

  private dbTimeout(): number {
    return Math.max(2000, 2 * this.s.config.DB_QUERY_UNHEALTHY_MS);
  }

  /** Server connections in use vs `SHOW max_connections`. */
  async poolReading(): Promise<PoolReading> {
    const { db } = this.s;
    const { rows } = await within(
      db.query<{ max: number; in_use: number }>(
        `SELECT current_setting('max_connections')::int AS max,
                (SELECT count(*)::int FROM pg_stat_activity
                  WHERE backend_type IN ('client backend', 'standalone backend')) AS in_use`,
      ),
      this.dbTimeout(),
      'The database',
    );
    const max = Number(rows[0].max);
    const inUse = Number(rows[0].in_use);
    if (!(max > 0)) throw new Error('max_connections is not a positive number');
    return { inUse, max, percent: round((100 * inUse) / max), own: db.poolStats() };
  }

  poolBand(percent: number): PoolBand {
    const c = this.s.config;
    if (percent < c.POOL_WARNING_PERCENT) return 'healthy';
    if (percent < c.POOL_CRITICAL_PERCENT) return 'warning';
    if (percent <= c.POOL_DANGER_PERCENT) return 'critical';
    return 'danger';
  }

  /** The database component's pool rule (seed: <80% healthy, <95% degraded, >95% unhealthy). */
  databasePoolStatus(percent: number): Status {
    const c = this.s.config;
    return percent < c.POOL_DEGRADED_PERCENT ? 'healthy' : percent <= c.POOL_UNHEALTHY_PERCENT ? 'degraded' : 'unhealthy';
  }

  async checkDatabase(): Promise<ComponentReport> {
    const c = this.s.config;
    const thresholds =
      `healthy <${c.DB_QUERY_DEGRADED_MS} ms query and <${c.POOL_DEGRADED_PERCENT}% pool · ` +
      `degraded <${c.DB_QUERY_UNHEALTHY_MS} ms, ≤${c.POOL_UNHEALTHY_PERCENT}% · unhealthy above`;
    const base = { key: 'database' as const, name: 'Database', thresholds };
    let queryMs: number;
    try {
      const t0 = performance.now();
      await within(this.s.db.query('SELECT 1'), this.dbTimeout(), 'The database');
      queryMs = round(performance.now() - t0, 2);
    } catch (e) {
      return { ...base, status: 'unhealthy', summary: `unavailable: ${errText(e)}`, figures: { connected: false } };
    }
    const queryStatus: Status =
      queryMs < c.DB_QUERY_DEGRADED_MS ? 'healthy' : queryMs <= c.DB_QUERY_UNHEALTHY_MS ? 'degraded' : 'unhealthy';
    let pool: PoolReading | null = null;
    let poolError = '';
    try {
      pool = await this.poolReading();
    } catch (e) {
      poolError = errText(e);
    }
    const poolStatus: Status = pool ? this.databasePoolStatus(pool.percent) : 'unknown';
    const poolText = pool
      ? `pool ${pool.percent}% (${pool.inUse} of ${pool.max} connections)`
      : `pool unknown (${poolError})`;
    return {
      ...base,
      status: worst([queryStatus, poolStatus]),
      summary: `query ${queryMs} ms · ${poolText}`,
      figures: {
        connected: true,
        query_time_ms: queryMs,
        pool_percent: pool?.percent ?? null,
        pool_in_use: pool?.inUse ?? null,
        max_connections: pool?.max ?? null,
      },
    };
  }

  async checkAudit(): Promise<ComponentReport> {
    const c = this.s.config;
    const thresholds = `healthy <${c.AUDIT_QUERY_DEGRADED_MS} ms · degraded ≤${c.AUDIT_QUERY_UNHEALTHY_MS} ms · unhealthy above or unavailable`;
    const base = { key: 'audit' as const, name: 'Audit logging', thresholds };
    try {
      // The guide's default audit view: the last 100 events.
      const t0 = performance.now();
      const { rows } = await within(
        this.s.db.query(
          `SELECT id, "timestamp", user_id, action, entity_type, entity_id, ip_address
             FROM audit_log ORDER BY "timestamp" DESC, id DESC LIMIT 100`,
        ),
        Math.max(2000, 2 * c.AUDIT_QUERY_UNHEALTHY_MS),
        'The audit log',
      );
      const ms = round(performance.now() - t0, 2);
      const status: Status = ms < c.AUDIT_QUERY_DEGRADED_MS ? 'healthy' : ms <= c.AUDIT_QUERY_UNHEALTHY_MS ? 'degraded' : 'unhealthy';
      return { ...base, status, summary: `recent-events query ${ms} ms (${rows.length} rows)`, figures: { query_time_ms: ms } };
    } catch (e) {
      return { ...base, status: 'unhealthy', summary: `unavailable: ${errText(e)}`, figures: { query_time_ms: null } };
    }
  }

  /**
   * The application's cache: its own Redis (APP_REDIS_URL), whose server-wide hit rate is what
   * the seed's thresholds are about. Warden's store is never rated: its probe reads miss by
   * design, and its counters say nothing about the application.
   */
  async checkCache(): Promise<ComponentReport> {
    const c = this.s.config;
    const thresholds = `healthy ≥${c.CACHE_DEGRADED_HIT_RATE}% hit rate · degraded ≥${c.CACHE_UNHEALTHY_HIT_RATE}% · unhealthy below`;
    const base = { key: 'cache' as const, name: "Application cache (Redis)", thresholds };
    if (!c.APP_REDIS_URL) {
      return { ...base, status: 'not_configured', summary: "not configured (APP_REDIS_URL unset; Warden's own store is not rated)", figures: {} };
    }
    this.appCache ??= RedisStore.connect(c.APP_REDIS_URL, '');
    const store = this.appCache;
    try {
      const stats = await within(store.hitRate(), 2000, 'Redis');
      if (!stats) return { ...base, status: 'unknown', summary: 'Redis keeps no hit statistics', figures: {} };
      if (stats.rate === null) {
        return {
          ...base,
          status: 'healthy',
          summary: `reachable; no lookups yet, so no hit rate (hits 0, misses 0)`,
          figures: { hits: stats.hits, misses: stats.misses, hit_rate: null },
        };
      }
      const rate = round(stats.rate);
      const status: Status = rate < c.CACHE_UNHEALTHY_HIT_RATE ? 'unhealthy' : rate < c.CACHE_DEGRADED_HIT_RATE ? 'degraded' : 'healthy';
      return {
        ...base,
        status,
        summary: `hit rate ${rate}% (${stats.hits} hits, ${stats.misses} misses)`,
        figures: { hits: stats.hits, misses: stats.misses, hit_rate: rate },
      };
    } catch (e) {
      return { ...base, status: 'unhealthy', summary: `unreachable: ${errText(e)}`, figures: {} };
    }
  }

  async checkApplication(): Promise<ComponentReport> {
    const c = this.s.config;
    const url = c.APP_HEALTH_URL;
    const thresholds = `the application's own status; unreachable, HTTP error or no answer within ${c.APP_HEALTH_TIMEOUT_MS} ms → unhealthy`;
    const base = { key: 'application' as const, name: 'Application', thresholds };
    if (!url) return { ...base, status: 'not_configured', summary: 'not configured (APP_HEALTH_URL is not set)', figures: {} };
    const t0 = performance.now();
    let statusCode: number;
    let body: string;
    try {
      const res = await request(url, {
        method: 'GET',
        headers: { accept: 'application/json' },
        headersTimeout: c.APP_HEALTH_TIMEOUT_MS,
        bodyTimeout: c.APP_HEALTH_TIMEOUT_MS,
        signal: AbortSignal.timeout(c.APP_HEALTH_TIMEOUT_MS),
      });
      statusCode = res.statusCode;
      body = (await res.body.text()).slice(0, 65_536);
    } catch (e) {
      const ms = round(performance.now() - t0);
      const name = (e as Error)?.name ?? '';
      const timedOut = /timeout|abort/i.test(name) || /timeout|aborted/i.test(errText(e));
      return {
        ...base,
        status: 'unhealthy',
        summary: timedOut ? `no answer within ${c.APP_HEALTH_TIMEOUT_MS} ms` : `unreachable (${errText(e)})`,
        figures: { reachable: false, response_ms: ms },
      };
    }
    const ms = round(performance.now() - t0);
    let json: any = null;
    try {
      json = JSON.parse(body);
    } catch {
      /* not JSON: reported below */
    }
    const reported = typeof json?.status === 'string' ? String(json.status).toLowerCase() : null;
    const known = reported && ['healthy', 'degraded', 'unhealthy', 'unknown'].includes(reported) ? (reported as Status) : null;
    const details = json && typeof json.components === 'object' && json.components ? appComponentLines(json.components) : [];
    const figures = { reachable: true, http_status: statusCode, response_ms: ms, reported_status: reported };
    if (statusCode < 200 || statusCode >= 300) {
      return {
        ...base,
        status: 'unhealthy',
        summary: `HTTP ${statusCode}${reported ? `, reports "${reported}"` : ''} (${ms} ms)`,
        details,
        figures,
      };
    }
    if (!known) {
      return {
        ...base,
        status: 'unknown',
        summary: `HTTP ${statusCode} but ${json ? (reported ? `an unknown status "${reported.slice(0, 40)}"` : 'no "status" field') : 'not JSON'} (${ms} ms)`,
        details,
        figures,
      };
    }
    const message = typeof json.message === 'string' ? ` — ${json.message.slice(0, 120)}` : '';
    return { ...base, status: known, summary: `reports ${known}${message} (${ms} ms)`, details, figures };
  }

  /**
   * E-mail is rated only when a feature needs it: reset links (PASSWORD_RESET_URL) go out by
   * e-mail. Otherwise "not configured" is a deployment choice, not an incident.
   */
  checkEmail(): ComponentReport {
    const needed = !!this.s.config.PASSWORD_RESET_URL;
    const base = {
      key: 'email' as const,
      name: 'E-mail',
      thresholds: 'configured → healthy · not configured → degraded when a feature needs it (PASSWORD_RESET_URL set), else not rated',
    };
    if (this.s.mailer.configured) return { ...base, status: 'healthy', summary: 'configured', figures: { configured: true } };
    return needed
      ? { ...base, status: 'degraded', summary: 'not configured (EMAIL_API_URL, EMAIL_API_KEY, EMAIL_FROM), but PASSWORD_RESET_URL sends reset links by e-mail', figures: { configured: false } }
      : { ...base, status: 'not_configured', summary: 'not configured (EMAIL_API_URL, EMAIL_API_KEY, EMAIL_FROM); no feature needs it', figures: { configured: false } };
  }

  /** Closes the connection to the application's Redis, if one was opened. */
  async close(): Promise<void> {
    await this.appCache?.close();
    this.appCache = undefined;
  }

  /** Every job from warden_job_run (plus jobs scheduled here that never ran), flagged when stale or failing. */
  async checkJobs(now = new Date()): Promise<{ component: ComponentReport; jobs: JobHealth[] }> {
    const base = {
      key: 'scheduler' as const,
      name: 'Scheduled jobs',
      thresholds: `stale when no success within ${STALE_INTERVALS}× its interval, or when its last run failed → degraded`,
    };
    let rows: JobRunRow[];
    try {
      rows = await within(jobRuns(this.s.db), this.dbTimeout(), 'The database');
    } catch (e) {
      return { component: { ...base, status: 'unknown', summary: `cannot read job runs: ${errText(e)}`, figures: {} }, jobs: [] };
    }
    const scheduled = scheduledJobs();
    const names = new Set([...rows.map((r) => r.job), ...[...scheduled].filter(([, v]) => v.running).map(([k]) => k)]);
    const jobs: JobHealth[] = [];
    for (const name of [...names].sort()) {
      const r = rows.find((x) => x.job === name);
      const sched = scheduled.get(name);
      const intervalMs = sched?.intervalMs ?? this.opts.jobInterval?.(name) ?? null;
      jobs.push(assessJob(name, r, intervalMs, sched?.nextRun ?? null, now));
    }
    const flagged = jobs.filter((j) => j.stale || j.failing);
    if (!jobs.length) {
      return { component: { ...base, status: 'unknown', summary: 'no job has run yet and none is scheduled here', figures: { jobs: 0 } }, jobs };
    }
    return {
      component: {
        ...base,
        status: flagged.length ? 'degraded' : 'healthy',
        summary: flagged.length
          ? `${flagged.length} of ${jobs.length} flagged: ${flagged.map((j) => j.job).join(', ')}`
          : `${jobs.length} job${jobs.length === 1 ? '' : 's'} on time`,
        figures: { jobs: jobs.length, flagged: flagged.length },
      },
      jobs,
    };
  }

  /** Stores one pool sample (the health job, once a tick) and prunes old ones. */
  async recordPoolSample(reading?: PoolReading): Promise<PoolReading | null> {
    const r = reading ?? (await this.poolReading().catch(() => null));
    if (!r) return null;
    await this.s.db.query('INSERT INTO warden_pool_sample (in_use, max_connections, usage_percent) VALUES ($1, $2, $3)', [
      r.inUse,
      r.max,
      r.percent,
    ]);
    await this.s.db.query(`DELETE FROM warden_pool_sample WHERE taken_at < now() - make_interval(hours => $1::int)`, [
      SAMPLE_RETENTION_HOURS,
    ]);
    return r;
  }

  async poolTrend(): Promise<PoolTrend> {
    const { rows } = await this.s.db.query<{ taken_at: Date; usage_percent: number }>(
      `SELECT taken_at, usage_percent FROM warden_pool_sample
        WHERE taken_at > now() - make_interval(mins => $1::int) ORDER BY taken_at, id`,
      [TREND_WINDOW_MINUTES],
    );
    return trendOf(rows.map((r) => ({ at: r.taken_at, percent: Number(r.usage_percent) })));
  }

  /** `/health pool`: usage now, the seed's band and recommendation, the 10-minute trend. */
  async pool(): Promise<PoolReport> {
    const c = this.s.config;
    const bands = { warning: c.POOL_WARNING_PERCENT, critical: c.POOL_CRITICAL_PERCENT, danger: c.POOL_DANGER_PERCENT };
    const trend = await this.poolTrend().catch(() => trendOf([]));
    try {
      const reading = await this.poolReading();
      const band = this.poolBand(reading.percent);
      return { reading, band, recommendation: POOL_RECOMMENDATIONS[band], trend, bands };
    } catch (e) {
      return { reading: null, error: errText(e), band: null, recommendation: 'Check that the database is reachable.', trend, bands };
    }
  }
}

/** Least-squares change over the window; within ±5 points is stable. */
export function trendOf(samples: { at: Date; percent: number }[]): PoolTrend {
  const out = samples.map((s) => ({ at: s.at.toISOString(), percent: s.percent }));
  if (samples.length < 2) {
    return { samples: out, direction: 'not enough samples', min: samples[0]?.percent ?? null, max: samples[0]?.percent ?? null, avg: samples[0]?.percent ?? null, change: null };
  }
  const xs = samples.map((s) => s.at.getTime() / 60_000);
  const ys = samples.map((s) => s.percent);
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < xs.length; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  const slope = den > 0 ? num / den : 0;
  const change = round(slope * (xs[xs.length - 1] - xs[0]));
  return {
    samples: out,
    direction: change > 5 ? 'increasing' : change < -5 ? 'decreasing' : 'stable',
    min: Math.min(...ys),
    max: Math.max(...ys),
    avg: round(my),
    change,
  };
}

const SPARK = '▁▂▃▄▅▆▇█';
/** A one-line chart of percentages (0–100). */
export function sparkline(values: number[]): string {
  return values.map((v) => SPARK[Math.min(7, Math.max(0, Math.floor((v / 100) * 8)))]).join('');
}

/**
 * Jobs known to this process's node-cron: their interval (the largest gap between the next
 * runs) and next run. A stopped task still tells its interval (a scheduler that stopped is
 * exactly what staleness must catch), but only running ones are listed when they never ran.
 */
function scheduledJobs(): Map<string, { intervalMs: number | null; nextRun: string | null; running: boolean }> {
  const out = new Map<string, { intervalMs: number | null; nextRun: string | null; running: boolean }>();
  for (const task of cron.getTasks().values()) {
    const state = task.getStatus();
    if (!task.name || state === 'destroyed') continue;
    if (out.get(task.name)?.running && state === 'stopped') continue;
    let intervalMs: number | null = null;
    let nextRun: string | null = null;
    try {
      const next = task.getNextRuns(4);
      nextRun = next[0]?.toISOString() ?? null;
      for (let i = 1; i < next.length; i++) intervalMs = Math.max(intervalMs ?? 0, next[i].getTime() - next[i - 1].getTime());
    } catch {
      /* no schedule information */
    }
    out.set(task.name, { intervalMs, nextRun: state === 'stopped' ? null : nextRun, running: state !== 'stopped' });
  }
  return out;
}

type JobRow = JobRunRow;

export function assessJob(name: string, r: JobRow | undefined, intervalMs: number | null, nextRun: string | null, now: Date): JobHealth {
  const iso = (d: Date | null | undefined) => (d ? new Date(d).toISOString() : null);
  const lastSuccess = r?.last_success ? new Date(r.last_success) : null;
  const lastStarted = r?.last_started ? new Date(r.last_started) : null;
  const lastErrorAt = r?.last_error_at ? new Date(r.last_error_at) : null;
  const failing = !!lastErrorAt && (!lastSuccess || lastErrorAt.getTime() > lastSuccess.getTime());
  const window = intervalMs ? STALE_INTERVALS * intervalMs : null;
  let stale = false;
  let note: string;
  if (!r) {
    note = 'not run yet';
  } else if (window && lastSuccess && now.getTime() - lastSuccess.getTime() > window) {
    stale = true;
    note = `no success for ${ago(now.getTime() - lastSuccess.getTime())} (more than ${STALE_INTERVALS}× its interval)`;
  } else if (window && !lastSuccess && lastStarted && now.getTime() - lastStarted.getTime() > window) {
    stale = true;
    note = `never succeeded; first started ${ago(now.getTime() - lastStarted.getTime())} ago`;
  } else if (!lastSuccess) {
    note = 'no successful run yet';
  } else {
    note = `last success ${ago(now.getTime() - lastSuccess.getTime())} ago`;
  }
  if (failing) note = `last run failed${lastErrorAt ? ` ${ago(now.getTime() - lastErrorAt.getTime())} ago` : ''}: ${(r?.last_error ?? 'unknown error').slice(0, 200)}; ${note}`;
  return {
    job: name,
    lastStarted: iso(lastStarted),
    lastSuccess: iso(lastSuccess),
    lastError: r?.last_error ?? null,
    lastErrorAt: iso(lastErrorAt),
    runs: r?.runs ?? 0,
    failures: r?.failures ?? 0,
    intervalMs,
    nextRun,
    stale,
    failing,
    note,
  };
}

/** "45 s", "12 min", "3 h 5 min", "2 d 4 h". */
export function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 90) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h${m % 60 ? ` ${m % 60} min` : ''}`;
  const d = Math.floor(h / 24);
  return `${d} d${h % 24 ? ` ${h % 24} h` : ''}`;
}

export function intervalText(ms: number | null): string {
  if (!ms) return 'interval unknown here';
  return `every ${ago(ms)}`;
}

/** The application's components (its JSON `components`), one line each, at most 12. */
function appComponentLines(components: Record<string, unknown>): string[] {
  const lines: string[] = [];
  for (const [name, raw] of Object.entries(components).slice(0, 12)) {
    const comp = (raw && typeof raw === 'object' ? raw : { status: raw }) as Record<string, unknown>;
    const status = typeof comp.status === 'string' ? comp.status : 'no status';
    const figs: string[] = [];
    for (const [k, v] of Object.entries(comp)) {
      if (k === 'status') continue;
      if (typeof v === 'number' || typeof v === 'boolean') figs.push(`${k} ${v}`);
      else if (v && typeof v === 'object') {
        for (const [k2, v2] of Object.entries(v as Record<string, unknown>)) {
          if (typeof v2 === 'number') figs.push(`${k}.${k2} ${v2}`);
        }
      }
      if (figs.length >= 5) break;
    }
    lines.push(`${name.slice(0, 40)}: ${status.slice(0, 20)}${figs.length ? ` (${figs.join(', ').slice(0, 200)})` : ''}`);
  }
  return lines;
}
