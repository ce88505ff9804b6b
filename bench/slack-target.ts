import { App, HTTPReceiver, LogLevel } from '@slack/bolt';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startWarden } from '../src/bootstrap.js';
import { loadConfig, type Config } from '../src/config.js';
import { PgDb } from '../src/db/index.js';
import { USER_COLUMNS } from '../src/domain/user.js';
import { usernameLookupSql } from '../src/services/users.js';
import { createLogger } from '../src/logger.js';
import { openStore } from '../src/store/index.js';

/**
 * The HTTP app under test for the Slack benchmark (bench/suites/slack.ts), one of:
 *  - 'warden': the real Warden (startWarden over the benchmark database, Redis when given);
 *  - 'bare': a bare Bolt app whose /users handler acks and answers a static text through
 *    respond() — no I/O at all, the floor of what Bolt itself costs;
 *  - 'bare-sql': a bare Bolt app doing the same work as Warden's `/users show USERNAME` minus
 *    Warden's framework: ack, the same user lookup SQL (usernameLookupSql, the very statement
 *    Warden runs: case-insensitive, exact spelling first) through its own pg Pool of Warden's
 *    size (DATABASE_POOL_MAX), respond() with `${username}: ${role}` — the "same request"
 *    DESIGN §5's overhead target compares against.
 * Each listens on a free loopback port and talks to the suite's FakeSlack.
 *
 * Run as a child process (`node --import tsx bench/slack-target.ts`) so the app under test
 * has its own event loop and heap: the load generator and FakeSlack stay out of its latency
 * and its RSS. The child reports over IPC: `ready` with its port, then answers `rss`
 * (max RSS sampled since the last `rss-reset`, and CPU time used since) and exits on `stop`.
 * The suite normally runs this file bundled by esbuild under plain `node` (as production
 * runs compiled JS), so the tsx loader's thread and transforms are not counted.
 */

export type TargetKind = 'warden' | 'bare' | 'bare-sql';

export interface TargetOptions {
  kind: TargetKind;
  /** FakeSlack Web API base (…/api/). */
  slackApiUrl: string;
  signingSecret: string;
  databaseUrl: string;
  redisUrl?: string;
  /** Apply migrations at start (off when the bundle runs outside the source tree; the suite migrates). */
  migrate?: boolean;
}

export interface RunningTarget {
  port: number;
  stop(): Promise<void>;
}

export const BARE_TEXT = 'bare bolt: static answer';

/** Warden's settings for the benchmark; 'bare-sql' takes its pool size from them too. */
function benchConfig(opts: TargetOptions): Config {
  return loadConfig({
    SLACK_BOT_TOKEN: 'xoxb-bench-token',
    SLACK_SIGNING_SECRET: opts.signingSecret,
    SLACK_API_URL: opts.slackApiUrl,
    DATABASE_URL: opts.databaseUrl,
    PORT: '0',
    MIGRATE: opts.migrate === false ? 'off' : 'on',
    LOG_LEVEL: 'info',
  });
}

export async function startTarget(opts: TargetOptions): Promise<RunningTarget> {
  if (opts.kind === 'bare') return startBare(opts);
  if (opts.kind === 'bare-sql') return startBareSql(opts);
  const config = benchConfig(opts);
  // Logging at info as in production; the child's stdout goes to /dev/null.
  const logger = createLogger({ level: 'info', format: 'json' });
  const db = PgDb.connect(opts.databaseUrl, config.DATABASE_POOL_MAX);
  const store = openStore(opts.redisUrl, 'warden-bench:');
  const warden = await startWarden({ config, logger, db, store, jobs: false });
  return {
    port: warden.port!,
    async stop() {
      await warden.stop();
      await store.close();
      await db.close();
    },
  };
}

function bareApp(opts: TargetOptions): App {
  const receiver = new HTTPReceiver({
    signingSecret: opts.signingSecret,
    endpoints: '/slack/events',
    processBeforeResponse: false,
  });
  const app = new App({
    token: 'xoxb-bench-bare',
    receiver,
    logLevel: LogLevel.ERROR,
    clientOptions: { slackApiUrl: opts.slackApiUrl },
  });
  return app;
}

async function listen(app: App, cleanup?: () => Promise<void>): Promise<RunningTarget> {
  const server: any = await app.start(0);
  return {
    port: (server.address() as AddressInfo).port,
    async stop() {
      await app.stop().catch(() => {});
      await cleanup?.();
    },
  };
}

async function startBare(opts: TargetOptions): Promise<RunningTarget> {
  const app = bareApp(opts);
  app.command('/users', async ({ ack, respond }) => {
    await ack();
    await respond({ response_type: 'ephemeral', text: BARE_TEXT });
  });
  return listen(app);
}

/**
 * Warden's `/users show USERNAME` without Warden: no retry dedupe, no identity lookup or role
 * check, no zod, no Block Kit — one query on a plain pg Pool (same size and timeouts as
 * PgDb.connect), one plain-text respond().
 */
async function startBareSql(opts: TargetOptions): Promise<RunningTarget> {
  const pool = new pg.Pool({
    connectionString: opts.databaseUrl,
    max: benchConfig(opts).DATABASE_POOL_MAX,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30000,
  });
  pool.on('error', () => {});
  const app = bareApp(opts);
  app.command('/users', async ({ ack, respond, command }) => {
    await ack();
    const username = (command.text ?? '').trim().split(/\s+/)[1] ?? '';
    let text: string;
    try {
      const { rows } = await pool.query(usernameLookupSql(USER_COLUMNS), [username]);
      text = rows[0] ? `${rows[0].username}: ${rows[0].role}` : `No user named ${username}.`;
    } catch (e) {
      text = `error: ${(e as Error).message}`;
    }
    await respond({ response_type: 'ephemeral', text });
  });
  return listen(app, () => pool.end());
}

/** Child-process entry: options as JSON in argv[2]. */
async function child(): Promise<void> {
  const opts = JSON.parse(process.argv[2]) as TargetOptions;
  const target = await startTarget(opts);
  let max = process.memoryUsage.rss();
  let cpu = process.cpuUsage();
  const sample = () => {
    const rss = process.memoryUsage.rss();
    if (rss > max) max = rss;
    return rss;
  };
  const timer = setInterval(sample, 20);
  process.on('message', (m: any) => {
    if (m?.type === 'rss-reset') {
      max = sample();
      cpu = process.cpuUsage();
      process.send!({ type: 'rss-reset', rss: max });
    } else if (m?.type === 'rss') {
      const current = sample();
      const used = process.cpuUsage(cpu);
      // cpuMs: CPU time (user + system) of this process since the last reset.
      process.send!({ type: 'rss', max, current, cpuMs: (used.user + used.system) / 1000 });
    } else if (m?.type === 'stop') {
      clearInterval(timer);
      void target
        .stop()
        .catch(() => {})
        .then(() => process.exit(0));
    }
  });
  process.on('disconnect', () => process.exit(0));
  process.send!({ type: 'ready', port: target.port, rss: sample() });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && process.send) {
  child().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
