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
  const client = new webApi.WebClient(config.SLACK_BOT_TOKEN, {
    slackApiUrl: config.SLACK_API_URL,
    logger: undefined,
    retryConfig: { retries: 2, factor: 2, minTimeout: 200, maxTimeout: 2000 },
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
  const { app } = createSlackApp({ config, logger, services, commands, interactionModules, socketMode: opts.socketMode, onErrorReply: opts.onErrorReply, metrics });
  const server = opts.socketMode ? await app.start() : await app.start(config.PORT);
  const address = (server as any)?.address?.();
  const port = typeof address === 'object' && address ? address.port : config.PORT;
  const stopJobs = opts.jobs === false ? async () => {} : await startJobs(services);
  logger.info({ port, mode: opts.socketMode ? 'socket' : 'http', database: db.kind, store: store.kind }, 'Warden is running');
  return {
    services,
    port,
    async stop() {
      await stopJobs();
      await app.stop().catch(() => {});
      if (ownStore) await store.close();
      if (ownDb) await db.close();
    },
  };
}
