import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import util from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, describeConfig, loadConfig, loadDotEnv, normaliseEnv, settingNames } from '../../src/config.js';

/**
 * Settings as an operator meets them (issue 13): `.env.example` copied as-is, the same file
 * given to `docker run --env-file` or sourced by a shell, and every setting empty, missing
 * or invalid.
 */

const EXAMPLE = fs.readFileSync(path.join(import.meta.dirname, '../../.env.example'), 'utf8');

/** Docker's --env-file rules: `KEY=VALUE` taken literally (no quote removal), `#` lines and blanks skipped. */
function dockerEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const t = line.trimStart();
    if (!t || t.startsWith('#')) continue;
    const i = t.indexOf('=');
    if (i < 0) env[t] = process.env[t] ?? '';
    else env[t.slice(0, i)] = t.slice(i + 1);
  }
  return env;
}

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
    return [];
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.problems;
  }
}

/** A value each setting must refuse; settings that accept any text have none. */
const INVALID: Record<string, string | null> = {
  SLACK_BOT_TOKEN: 'xoxp-user-token',
  SLACK_SIGNING_SECRET: null,
  SLACK_APP_TOKEN: 'xoxb-not-an-app-token',
  SLACK_API_URL: 'not a url',
  PORT: '70000',
  SLACK_TIMEOUT_MS: '100',
  DATABASE_URL: 'mysql://db/app',
  DATABASE_POOL_MAX: '0',
  WARDEN_DATA_DIR: null,
  REDIS_URL: 'memcached://x',
  MIGRATE: 'maybe',
  ALERTS_CHANNEL: '#alerts and more',
  SECURITY_CHANNEL: 'C1;drop',
  APPROVALS_CHANNEL: '<#C1>',
  APP_HEALTH_URL: 'localhost:8080',
  APP_HEALTH_TIMEOUT_MS: 'soon',
  EMAIL_API_URL: 'sendgrid',
  EMAIL_API_KEY: null,
  EMAIL_FROM: 'warden at example',
  EMAIL_TIMEOUT_MS: '5',
  PASSWORD_RESET_URL: 'reset-page',
  ANONYMIZE_AUDIT_LOGS: 'maybe',
  LOG_LEVEL: 'verbose',
  LOG_FORMAT: 'xml',
  HEALTH_CRON: '* * *',
  DIGEST_CRON: '0 25 * * *',
  RETENTION_CRON: 'nightly',
  PROMOTION_POLL_CRON: '*/15 * * * * * *',
  WARDEN_TIMEZONE: 'Mars/Olympus',
  TZ: 'CEST+2h',
  PROMOTION_TTL: '7 days',
  RECOVERY_TTL: '-1h',
  RECOVERY_MIN_WARDEN_CHECKS: '3',
  IDENTITY_COOLDOWN: '3 days',
  DB_QUERY_DEGRADED_MS: '-1',
  DB_QUERY_UNHEALTHY_MS: '1.5',
  POOL_DEGRADED_PERCENT: '0',
  POOL_UNHEALTHY_PERCENT: '101',
  POOL_WARNING_PERCENT: 'seventy',
  POOL_CRITICAL_PERCENT: '200',
  POOL_DANGER_PERCENT: '-5',
  CACHE_DEGRADED_HIT_RATE: '101',
  CACHE_UNHEALTHY_HIT_RATE: 'x',
  AUDIT_QUERY_DEGRADED_MS: 'fast',
  AUDIT_QUERY_UNHEALTHY_MS: '-2',
  FAILED_LOGIN_BURST_THRESHOLD: '0',
  FAILED_LOGIN_BURST_WINDOW: 'hour',
  TWOFA_FAILURE_SPIKE_THRESHOLD: '0',
  AUDIT_RETENTION_DAYS: '0',
  AUDIT_SNAPSHOT_DAYS: 'month',
  STEPUP_MAX_FAILURES: '0',
  OUTBOX_POLL_MS: '10',
  OUTBOX_PACE_MS: '-1',
  OUTBOX_BACKOFF_MAX: '5 minutes',
  LOCKOUT_CATCHUP_WINDOW: '1y',
  LOCKOUT_STORM_PER_MINUTE: '0',
  LOCKOUT_STORM_HOLD_MS: '20000',
  METRICS_TOKEN: 'short',
  SHUTDOWN_DRAIN_MS: '-5',
  SHUTDOWN_DEADLINE_MS: '30000',
  APP_REDIS_URL: 'localhost:6379',
  HEALTH_OPEN_AFTER: '0',
  HEALTH_RESOLVE_AFTER: 'two',
};

describe('settings: every one empty, missing and invalid', () => {
  it('the table covers every setting', () => {
    expect(Object.keys(INVALID).sort()).toEqual([...settingNames].sort());
  });

  const defaults = loadConfig({});
  for (const name of settingNames) {
    it(`${name}: empty and whitespace mean unset (the default); invalid is refused by name`, () => {
      expect(loadConfig({ [name]: '' })).toEqual(defaults);
      expect(loadConfig({ [name]: '   ' })).toEqual(defaults);
      const bad = INVALID[name];
      if (bad === null) return; // free text: any value is accepted
      const problems = problemsOf({ [name]: bad });
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(new RegExp(`^${name}: `));
    });
  }
});

describe('.env.example as shipped', () => {
  it('lists every setting (TZ is described under WARDEN_TIMEZONE)', () => {
    const listed = new Set([...EXAMPLE.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]));
    expect([...listed].sort()).toEqual(settingNames.filter((n) => n !== 'TZ').sort());
    expect(EXAMPLE).toMatch(/^#.*\bTZ\b/m);
  });

  it('copied as-is gives exactly the defaults, read by Node (npm start)', () => {
    expect(loadConfig(util.parseEnv(EXAMPLE) as Record<string, string>)).toEqual(loadConfig({}));
  });

  it('gives exactly the defaults through docker run --env-file (quotes passed literally)', () => {
    const env = dockerEnvFile(EXAMPLE);
    expect(env.HEALTH_CRON).toBe('"* * * * *"');
    expect(loadConfig(env)).toEqual(loadConfig({}));
  });

  it('can be sourced by a shell without globbing the schedules', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-env-'));
    try {
      // Files a glob would expand to, if the value were unquoted.
      fs.writeFileSync(path.join(dir, 'a-file'), '');
      fs.copyFileSync(path.join(import.meta.dirname, '../../.env.example'), path.join(dir, '.env'));
      const out = execFileSync('bash', ['-c', 'set -a; . ./.env; printf "%s|%s" "$HEALTH_CRON" "$PROMOTION_POLL_CRON"'], { cwd: dir, encoding: 'utf8' });
      expect(out).toBe('* * * * *|*/15 * * * * *');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('.env loading and value normalising', () => {
  it('fills unset variables from .env; real variables win; an empty real variable counts as unset', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-env-'));
    const file = path.join(dir, '.env');
    fs.writeFileSync(file, 'SLACK_BOT_TOKEN=xoxb-from-file\nPORT=4000\nLOG_LEVEL=debug\n# comment\nDIGEST_CRON="0 8 * * 1-5"\n');
    try {
      const env: NodeJS.ProcessEnv = { PORT: '5000', LOG_LEVEL: '' };
      expect(loadDotEnv(file, env)).toBe(file);
      expect(env).toEqual({ PORT: '5000', LOG_LEVEL: 'debug', SLACK_BOT_TOKEN: 'xoxb-from-file', DIGEST_CRON: '0 8 * * 1-5' });
      expect(loadDotEnv(path.join(dir, 'missing.env'), env)).toBeUndefined();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('trims values and removes one pair of surrounding quotes', () => {
    expect(normaliseEnv({ A: ' "x y" ', B: "'z'", C: '"', D: '""', E: ' ' })).toEqual({ A: 'x y', B: 'z', C: '"' });
    expect(loadConfig({ PORT: '"8080"', ALERTS_CHANNEL: "'C0ALERTS'" })).toMatchObject({ PORT: 8080, ALERTS_CHANNEL: 'C0ALERTS' });
  });
});

describe('schedules and time zone', () => {
  it('WARDEN_TIMEZONE, else TZ, else the system zone', () => {
    expect(loadConfig({ WARDEN_TIMEZONE: 'Europe/Berlin', TZ: 'America/New_York' }).WARDEN_TIMEZONE).toBe('Europe/Berlin');
    expect(loadConfig({ TZ: 'America/New_York' }).WARDEN_TIMEZONE).toBe('America/New_York');
    expect(loadConfig({}).WARDEN_TIMEZONE).toBe(Intl.DateTimeFormat().resolvedOptions().timeZone);
  });

  it('accepts six-field schedules (seconds first) and refuses every bad one together', () => {
    expect(loadConfig({ HEALTH_CRON: '*/30 * * * * *' }).HEALTH_CRON).toBe('*/30 * * * * *');
    const problems = problemsOf({ HEALTH_CRON: 'every minute', DIGEST_CRON: '0 9 * *', WARDEN_TIMEZONE: 'Berlin' });
    expect(problems.map((p) => p.split(':')[0]).sort()).toEqual(['DIGEST_CRON', 'HEALTH_CRON', 'WARDEN_TIMEZONE']);
  });
});

describe('the start line', () => {
  it('shows database, store, channels, schedules and zone, and nothing secret', () => {
    const secrets = {
      SLACK_BOT_TOKEN: 'xoxb-secret-bot-token',
      SLACK_SIGNING_SECRET: 'signing-secret-value',
      DATABASE_URL: 'postgres://warden:db-password@db.internal:5432/app?sslmode=require',
      REDIS_URL: 'redis://:redis-password@cache.internal:6379/0',
      EMAIL_API_URL: 'https://api.mail.example/v3/mail/send',
      EMAIL_API_KEY: 'SG.mail-api-key',
      METRICS_TOKEN: 'metrics-token-0123456789',
      APP_HEALTH_URL: 'https://user:pw-in-url@app.example/api/system_health',
    };
    const line = describeConfig(loadConfig({ ...secrets, ALERTS_CHANNEL: 'C0ALERTS', WARDEN_TIMEZONE: 'Europe/Berlin' }));
    const text = JSON.stringify(line);
    for (const s of ['secret-bot-token', 'signing-secret-value', 'db-password', 'redis-password', 'mail-api-key', 'metrics-token', 'pw-in-url']) {
      expect(text).not.toContain(s);
    }
    expect(line).toMatchObject({
      mode: 'http',
      database: { kind: 'postgres', host: 'db.internal:5432', name: 'app' },
      store: { kind: 'redis', host: 'cache.internal:6379' },
      channels: { alerts: 'C0ALERTS', security: null },
      schedules: { health: '* * * * *', digest: '0 9 * * *' },
      timezone: 'Europe/Berlin',
      metrics: 'on (bearer token)',
    });
  });
});
