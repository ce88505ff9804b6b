import fs from 'node:fs';
import util from 'node:util';
import cron from 'node-cron';
import { z } from 'zod';

/**
 * Every setting Warden reads, validated once at start (DESIGN §1 "Settings").
 * `.env.example` documents each one; keep the two in step.
 * Defaults for thresholds come from the seed admin guide's "System Health" and
 * "Connection Pool Dashboard" tables and its security rules.
 */

const bool = (def: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'])
    .default(def ? 'true' : 'false')
    .transform((v) => ['true', '1', 'yes', 'on'].includes(v));

const int = (def: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max).default(def);

const optionalString = z
  .string()
  .trim()
  .transform((v) => (v === '' ? undefined : v))
  .optional();

/** http(s) only: `localhost:8080` parses as a URL with the scheme `localhost:`, which undici cannot call. */
const httpUrl = () => z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });

const optionalUrl = optionalString.pipe(httpUrl().optional());

/** Durations like 90s, 15m, 1h, 7d → seconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+)\s*(s|m|h|d|w)$/.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2] as 's' | 'm' | 'h' | 'd' | 'w'];
  return n * unit;
}

/** A node-cron expression (5 fields, or 6 with a leading seconds field), checked before anything starts. */
const cronExpr = (def: string) =>
  z
    .string()
    .default(def)
    .refine((v) => cron.validate(v), 'is not a valid cron expression (5 fields, or 6 with seconds first, e.g. "0 9 * * *")');

/** An IANA time zone such as Europe/Berlin or UTC (what Intl and node-cron accept). */
export function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

const timeZone = optionalString.pipe(
  z.string().refine(isTimeZone, 'is not an IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)').optional(),
);

const duration = (def: string) =>
  z
    .string()
    .default(def)
    .transform((v, ctx) => {
      const s = parseDuration(v);
      if (s === undefined) {
        ctx.addIssue({ code: 'custom', message: `"${v}" is not a duration like 30m, 1h or 7d` });
        return z.NEVER;
      }
      return s;
    });

const channel = optionalString.pipe(
  z
    .string()
    .regex(/^[#]?[A-Za-z0-9_-]+$/, 'must be a channel ID (C0123…) or name')
    .optional(),
);

const settingsSchema = z.object({
  // Slack
  SLACK_BOT_TOKEN: optionalString.pipe(z.string().startsWith('xoxb-', 'must start with xoxb-').optional()),
  SLACK_SIGNING_SECRET: optionalString,
  SLACK_APP_TOKEN: optionalString.pipe(z.string().startsWith('xapp-', 'must start with xapp-').optional()),
  SLACK_API_URL: httpUrl()
    .default('https://slack.com/api/')
    .transform((u) => (u.endsWith('/') ? u : `${u}/`)),
  PORT: int(3000, 0, 65535),
  /** Timeout of each Slack Web API call made while a user waits (commands, clicks, DMs, cards). */
  SLACK_TIMEOUT_MS: int(4000, 500, 30000),

  // Storage
  DATABASE_URL: optionalString.pipe(z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional()),
  DATABASE_POOL_MAX: int(10, 1, 500),
  WARDEN_DATA_DIR: z.string().default('./.warden'),
  REDIS_URL: optionalString.pipe(z.string().regex(/^rediss?:\/\//, 'must be a redis:// URL').optional()),
  MIGRATE: z.enum(['on', 'off']).default('on'),

  // Channels
  ALERTS_CHANNEL: channel,
  SECURITY_CHANNEL: channel,
  APPROVALS_CHANNEL: channel,

  // Integrations
  APP_HEALTH_URL: optionalUrl,
  APP_HEALTH_TIMEOUT_MS: int(3000, 100, 60000),
  EMAIL_API_URL: optionalUrl,
  EMAIL_API_KEY: optionalString,
  EMAIL_FROM: optionalString.pipe(z.email().optional()),
  // Runs after the form was answered (ack first): only the "Sending…" view waits for it.
  EMAIL_TIMEOUT_MS: int(10000, 100, 60000),
  PASSWORD_RESET_URL: optionalUrl,

  // Behaviour
  ANONYMIZE_AUDIT_LOGS: bool(true),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_FORMAT: z.enum(['json', 'pretty']).optional(),
  HEALTH_CRON: cronExpr('* * * * *'),
  DIGEST_CRON: cronExpr('0 9 * * *'),
  RETENTION_CRON: cronExpr('30 3 * * *'),
  PROMOTION_POLL_CRON: cronExpr('*/15 * * * * *'),
  /** Time zone of the schedules; unset → TZ; unset → the system's zone (UTC in most containers). */
  WARDEN_TIMEZONE: timeZone,
  /** The process's own zone, validated too: Node silently falls back to UTC on a typo. */
  TZ: timeZone,
  PROMOTION_TTL: duration('7d'),
  RECOVERY_TTL: duration('24h'),
  /** Warden-run identity checks (e-mail code, Slack DM code) that must pass before a 2FA recovery goes to approval. */
  RECOVERY_MIN_WARDEN_CHECKS: int(1, 1, 2),
  /** After an account's e-mail or Slack link changed, how long it can neither open nor approve recoveries and promotions (issue 10). */
  IDENTITY_COOLDOWN: duration('72h'),

  // Thresholds (seed 001, "System Health" and "Unlock Account")
  DB_QUERY_DEGRADED_MS: int(100),
  DB_QUERY_UNHEALTHY_MS: int(500),
  POOL_DEGRADED_PERCENT: int(80, 1, 100),
  POOL_UNHEALTHY_PERCENT: int(95, 1, 100),
  // Connection pool dashboard bands (seed: <70 healthy, 70–85 warning, 85–95 critical, >95 danger)
  POOL_WARNING_PERCENT: int(70, 1, 100),
  POOL_CRITICAL_PERCENT: int(85, 1, 100),
  POOL_DANGER_PERCENT: int(95, 1, 100),
  /** The application's own Redis (its cache), rated by /health; Warden's REDIS_URL never is. */
  APP_REDIS_URL: optionalString.pipe(z.string().regex(/^rediss?:\/\//, 'must be a redis:// URL').optional()),
  /** Consecutive bad health checks before an incident opens, and good ones before it resolves. */
  HEALTH_OPEN_AFTER: int(2, 1, 60),
  HEALTH_RESOLVE_AFTER: int(2, 1, 60),
  CACHE_DEGRADED_HIT_RATE: int(60, 0, 100),
  CACHE_UNHEALTHY_HIT_RATE: int(30, 0, 100),
  AUDIT_QUERY_DEGRADED_MS: int(200),
  AUDIT_QUERY_UNHEALTHY_MS: int(500),
  FAILED_LOGIN_BURST_THRESHOLD: int(5, 1),
  FAILED_LOGIN_BURST_WINDOW: duration('1h'),
  TWOFA_FAILURE_SPIKE_THRESHOLD: int(5, 1),
  AUDIT_RETENTION_DAYS: int(90, 1),
  AUDIT_SNAPSHOT_DAYS: int(30, 1),
  STEPUP_MAX_FAILURES: int(5, 1),

  // Shutdown (issue 12): SIGTERM → /readyz 503, requests still served for the drain period,
  // then no new work; in-flight work finishes or is handed back; exit before the deadline
  // (Kubernetes kills at 30 s by default).
  SHUTDOWN_DRAIN_MS: int(3000, 0, 20000),
  SHUTDOWN_DEADLINE_MS: int(25000, 1000, 29000),

  // Alerts (issue 7): outbox delivery and lockout catch-up
  OUTBOX_POLL_MS: int(10000, 100, 60000),
  OUTBOX_PACE_MS: int(1000, 0, 60000),
  OUTBOX_BACKOFF_MAX: duration('5m'),
  LOCKOUT_CATCHUP_WINDOW: duration('24h'),
  // Storms (issue 12): more than this many lockouts (or failed-login bursts) in a minute → one summary message.
  LOCKOUT_STORM_PER_MINUTE: int(5, 1),
  // A single lockout's card waits this long for the rest of a possible storm before it goes.
  LOCKOUT_STORM_HOLD_MS: int(300, 0, 10000),

  // Operations (issue 13)
  /** Bearer token that GET /metrics requires; unset → /metrics is off (404). */
  METRICS_TOKEN: optionalString.pipe(z.string().min(16, 'must be at least 16 characters').optional()),
});

export const configSchema = settingsSchema.transform((c) => ({
  ...c,
  // One effective zone for every schedule, so the 09:00 digest is 09:00 where the admins are.
  WARDEN_TIMEZONE: c.WARDEN_TIMEZONE ?? c.TZ ?? Intl.DateTimeFormat().resolvedOptions().timeZone,
}));

export type Config = z.output<typeof configSchema>;

/** Every setting's name, in the order `.env.example` documents them. */
export const settingNames = Object.keys(settingsSchema.shape) as (keyof typeof settingsSchema.shape)[];

/**
 * The environment as Warden reads it, the same way whether it came from the shell, a
 * `.env` file or `docker run --env-file`: values are trimmed, one pair of surrounding quotes
 * is removed (docker's --env-file passes `"* * * * *"` with its quotes), and an empty value
 * means unset, so the setting gets its default.
 */
export function normaliseEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, raw] of Object.entries(env)) {
    if (raw === undefined) continue;
    let v = raw.trim();
    if (v.length >= 2 && (v[0] === '"' || v[0] === "'") && v.at(-1) === v[0]) v = v.slice(1, -1).trim();
    if (v !== '') out[key] = v;
  }
  return out;
}

/**
 * Loads `.env` from the working directory into process.env when the file exists
 * (Node's own parser). Variables already set in the environment win. Returns the path
 * read, or undefined.
 */
export function loadDotEnv(file = '.env', env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (!fs.existsSync(file)) return undefined;
  // Node's own .env parser (Node ≥ 20.12): quotes, comments and `export` as dotenv reads them.
  const parsed = util.parseEnv(fs.readFileSync(file, 'utf8'));
  for (const [k, v] of Object.entries(parsed)) {
    if (v === undefined) continue;
    // An empty real variable counts as unset, so a blank `export X=` in the shell does not hide the file's value.
    if (env[k] === undefined || env[k] === '') env[k] = v;
  }
  return file;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid settings:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** Parses settings. Values are never echoed back in messages: they may be secrets. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const result = configSchema.safeParse(normaliseEnv(env));
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  }
  return result.data;
}

/** What `npm start` additionally needs to talk to a real Slack workspace. */
export function slackProblems(config: Config): string[] {
  const problems: string[] = [];
  if (!config.SLACK_BOT_TOKEN) problems.push('SLACK_BOT_TOKEN is not set (the xoxb- bot token from "OAuth & Permissions")');
  if (!config.SLACK_APP_TOKEN && !config.SLACK_SIGNING_SECRET) {
    problems.push(
      'SLACK_SIGNING_SECRET is not set (from "Basic Information"), or set SLACK_APP_TOKEN (xapp-…) for Socket Mode',
    );
  }
  return problems;
}

/** host[:port] of a URL, never its user, password, path or query (they can carry secrets). */
function hostOf(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    return new URL(url).host || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The effective configuration without secrets, for the one info line at start: enough for
 * on-call to see which database, store, channels and schedules this process really uses.
 */
export function describeConfig(c: Config) {
  return {
    mode: c.SLACK_APP_TOKEN ? 'socket' : 'http',
    port: c.PORT,
    slackApi: hostOf(c.SLACK_API_URL),
    database: c.DATABASE_URL
      ? { kind: 'postgres', host: hostOf(c.DATABASE_URL), name: new URL(c.DATABASE_URL).pathname.slice(1) || undefined, poolMax: c.DATABASE_POOL_MAX }
      : { kind: 'pglite', dir: c.WARDEN_DATA_DIR },
    store: c.REDIS_URL ? { kind: 'redis', host: hostOf(c.REDIS_URL) } : { kind: 'memory' },
    migrate: c.MIGRATE,
    channels: { alerts: c.ALERTS_CHANNEL ?? null, security: c.SECURITY_CHANNEL ?? null, approvals: c.APPROVALS_CHANNEL ?? null },
    schedules: { health: c.HEALTH_CRON, digest: c.DIGEST_CRON, retention: c.RETENTION_CRON, promotionPoll: c.PROMOTION_POLL_CRON },
    timezone: c.WARDEN_TIMEZONE,
    appHealth: hostOf(c.APP_HEALTH_URL) ?? 'off',
    mail: c.EMAIL_API_URL ? { host: hostOf(c.EMAIL_API_URL), from: c.EMAIL_FROM ?? null } : 'off',
    anonymizeAuditLogs: c.ANONYMIZE_AUDIT_LOGS,
    logLevel: c.LOG_LEVEL,
    metrics: c.METRICS_TOKEN ? 'on (bearer token)' : 'off',
  };
}
