import { webApi } from '@slack/bolt';
import { commands, interactionModules } from '../commands/index.js';
import type { Config } from './config.js';
import { openDb, type Db } from './db/index.js';
import { migrate } from './db/migrate.js';
import { startJobs } from './jobs/index.js';
import type { Logger } from './logger.js';
import { Metrics } from './metrics.js';
import type { SlackDirectory } from './services/identity.js';
import { createServices, type Services } from './services/index.js';
import type { Mailer } from './services/mailer.js';
import { createSlackApp } from './slack/app.js';
import { SlackAuthProbe } from './slack/auth-probe.js';
import { SlackChat, SlackProfileDirectory } from './slack/chat-port.js';
import type { ErrorReplyObserver } from './slack/router.js';
import { openStore, RedisStore, type Store } from './store/index.js';

/**
 * The composition root shared by `npm start`, the console and the end-to-end tests:
 * config → logger → db/store → services → Slack app → jobs.
 */
export interface Warden {
  services: Services;
  /** Port the HTTP receiver listens on (HTTP mode). */
  port?: number;
  stop(): Promise<void>;
}

export interface StartOptions {
  config: Config;
  logger: Logger;
  /** Use an already open database / store (tests share one across app restarts). */
  db?: Db;
  store?: Store;
  mailer?: Mailer;
  directory?: SlackDirectory;
  /** Run the scheduled jobs (off in tests that drive jobs by hand). */
  jobs?: boolean;
  socketMode?: boolean;
  /** Told of every error answer to a command or click (the console's exit codes). */
  onErrorReply?: ErrorReplyObserver;
}

export async function startWarden(opts: StartOptions): Promise<Warden> {
  const { config, logger } = opts;
  const ownDb = !opts.db;
  const db = opts.db ?? (await openDb({ url: config.DATABASE_URL, dataDir: config.WARDEN_DATA_DIR, poolMax: config.DATABASE_POOL_MAX }));
  if (config.MIGRATE === 'on') {
    const applied = await migrate(db);
    if (applied.length) logger.info({ applied }, 'migrations applied');
  }
  const ownStore = !opts.store;
  const store = opts.store ?? openStore(config.REDIS_URL);
  if (store instanceof RedisStore) {
    try {
      const version = await store.checkVersion();
      if (version) logger.info({ version }, 'redis version');
    } catch (e) {
      if (ownStore) await store.close();
      if (ownDb) await db.close();
      throw e;
    }
  }
  // Calls made while someone waits (DMs, cards, replies, uploads): a timeout, one quick retry,
  // and a 429 surfaces at once. Bolt's default (10 retries over ~30 minutes, waiting out every
  // Retry-After) once stalled promotions-poll for 80 s and SIGTERM for 35 s.
  const client = new webApi.WebClient(config.SLACK_BOT_TOKEN, {
    slackApiUrl: config.SLACK_API_URL,
    logger: undefined,
    timeout: config.SLACK_TIMEOUT_MS,
    retryConfig: { retries: 1, factor: 1, minTimeout: 300, maxTimeout: 300 },
    rejectRateLimitedCalls: true,
  });
  // The alert outbox retries by itself (issue 7): its client surfaces 429s and errors at once
  // instead of pausing every Slack call of the app while it waits out a Retry-After.
  const alertClient = new webApi.WebClient(config.SLACK_BOT_TOKEN, {
    slackApiUrl: config.SLACK_API_URL,
    logger: undefined,
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
    timeout: 10_000,
    // Failures are logged by the outbox (pino, with the retry plan), not by the client.
    logLevel: webApi.LogLevel.ERROR,
  });
  const metrics = new Metrics({ db });
  const services = createServices({
    config,
    db,
    store,
    logger,
    chat: new SlackChat(client),
    alertChat: metrics.countDeliveries(new SlackChat(alertClient)),
    directory: opts.directory ?? new SlackProfileDirectory(client),
    mailer: opts.mailer,
  });
  metrics.observeStepUp(services.stepUp);
  // Readiness includes Slack: auth.test until it succeeds, with backoff, on a client of its own
  // (no retries of the client's: the probe has its own schedule).
  const slackProbe = new SlackAuthProbe(
    new webApi.WebClient(config.SLACK_BOT_TOKEN, {
      slackApiUrl: config.SLACK_API_URL,
      logger: undefined,
      timeout: 3000,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      logLevel: webApi.LogLevel.ERROR,
    }),
    logger,
  );
  await slackProbe.start();
  // Identity changes made on other replicas reach this one within a second (NOTIFY).
  await services.identity.start();
  const { app, receiver } = createSlackApp({ config, logger, services, commands, interactionModules, socketMode: opts.socketMode, onErrorReply: opts.onErrorReply, metrics, slackProbe });
  // Socket Mode: returns after the first connection attempt, connected or not (it keeps trying
  // in the background and /readyz says so), so jobs and the SIGTERM handler are always installed.
  const server = opts.socketMode ? await app.start() : await app.start(config.PORT);
  const address = (server as any)?.address?.();
  const port = typeof address === 'object' && address ? address.port : config.PORT;
  const stopJobs = opts.jobs === false ? async () => {} : await startJobs(services);
  const slackSocket = 'connected' in receiver ? { slackSocket: receiver.connected ? 'connected' : 'not connected' } : {};
  logger.info({ port, mode: opts.socketMode ? 'socket' : 'http', database: db.kind, store: store.kind, ...slackSocket }, 'Warden is running');
  let stopping: Promise<void> | undefined;
  return {
    services,
    port,
    stop() {
      stopping ??= shutdown();
      return stopping;
    },
  };

  /**
   * Graceful shutdown within SHUTDOWN_DEADLINE_MS: readiness 503 at once; requests still served
   * for SHUTDOWN_DRAIN_MS; then no new requests or job ticks; work in flight may finish until
   * a few seconds before the deadline, then is told to hand back (messages say "interrupted,
   * run again", leases released, temp files removed); then connections close.
   */
  async function shutdown(): Promise<void> {
    const started = Date.now();
    const left = () => config.SHUTDOWN_DEADLINE_MS - (Date.now() - started);
    const { lifecycle } = services;
    lifecycle.beginDrain();
    slackProbe.stop();
    await sleep(Math.min(config.SHUTDOWN_DRAIN_MS, Math.max(0, left() - 5000)));
    // No new work: the port closes, cron ticks stop (a tick in progress is awaited below).
    const closed = Promise.allSettled([app.stop(), stopJobs()]);
    // Let work in flight finish while there is time; keep the last seconds for handing back.
    await within(lifecycle.drained(), Math.max(0, left() - 4000));
    lifecycle.stop();
    await within(Promise.all([lifecycle.drained(), closed]), Math.max(0, left() - 1500));
    await within(services.identity.stop(), 500).catch(() => {});
    if (ownStore) await within(store.close(), 500).catch(() => {});
    if (ownDb) await within(db.close(), Math.max(0, left() - 200)).catch(() => {});
    logger.info({ ms: Date.now() - started }, 'Warden stopped');
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/** Waits for p at most ms; never rejects (shutdown goes on whatever the work did). */
async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}
