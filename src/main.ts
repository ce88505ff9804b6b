import { ConfigError, describeConfig, loadConfig, loadDotEnv, slackProblems } from './config.js';
import { createLogger } from './logger.js';
import { startWarden } from './bootstrap.js';
import { acquireDataDirLock, describeHolder, type DataDirLock } from './db/data-dir-lock.js';

/** `npm start`: the bot, in Socket Mode when SLACK_APP_TOKEN is set, else HTTP on PORT. */
async function main() {
  // .env in the working directory, when present; real environment variables win.
  const envFile = loadDotEnv();
  // Every problem at once: invalid values and the Slack settings `npm start` needs.
  let config;
  let problems: string[];
  try {
    config = loadConfig();
    problems = slackProblems(config);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    problems = [...e.problems, ...slackProblems(loadConfig({}))
      .filter((p) => !process.env[p.split(' ')[0]])];
  }
  if (problems.length || !config) {
    console.error(
      `Warden cannot start:\n${problems.map((p) => `  - ${p}`).join('\n')}\n\n` +
        'Every setting is described in .env.example and README.md ("Install into a Slack workspace").\n' +
        'To try Warden without Slack, run: npm run console',
    );
    process.exit(2);
  }
  // The embedded database has one writer: a console (or a second npm start) on the same
  // directory would silently lose one side's changes.
  let lock: DataDirLock | undefined;
  if (!config.DATABASE_URL) {
    const taken = acquireDataDirLock(config.WARDEN_DATA_DIR, 'npm start');
    if (!taken.ok) {
      console.error(
        `Warden cannot start: the embedded database ${config.WARDEN_DATA_DIR} is in use by ${describeHolder(taken.holder)}.\n` +
          `Stop it first, or set WARDEN_DATA_DIR (or DATABASE_URL) for this process. (If no such process is running, delete ${taken.file}.)`,
      );
      process.exit(2);
    }
    lock = taken.lock;
    process.on('exit', () => lock?.release());
  }
  const logger = createLogger({ level: config.LOG_LEVEL, format: config.LOG_FORMAT });
  logger.info({ envFile: envFile ?? null, config: describeConfig(config) }, 'settings');
  const warden = await startWarden({ config, logger, socketMode: !!config.SLACK_APP_TOKEN });
  let exiting = false;
  const shutdown = async (signal: string) => {
    if (exiting) return;
    exiting = true;
    logger.info({ signal, deadlineMs: config.SHUTDOWN_DEADLINE_MS }, 'shutting down');
    // Whatever hangs (Slack, the database), the process is gone before the deadline.
    setTimeout(() => {
      logger.error({ signal }, 'shutdown deadline reached; exiting with work still in flight');
      process.exit(1);
    }, config.SHUTDOWN_DEADLINE_MS).unref();
    await warden.stop();
    lock?.release();
    process.exit(0);
  };
  // Last line of defence: a promise nobody awaited (a fault in a fire-and-forget path) is
  // logged, not a reason to take the whole bot down.
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled promise rejection (a bug; please report it)'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((e) => {
  console.error(`Warden failed to start: ${(e as Error).message}`);
  process.exit(1);
});
