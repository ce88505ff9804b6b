import { ConfigError, loadConfig, slackProblems } from './config.js';
import { createLogger } from './logger.js';
import { startWarden } from './bootstrap.js';

/** `npm start`: the bot, in Socket Mode when SLACK_APP_TOKEN is set, else HTTP on PORT. */
async function main() {
  let config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`${e.message}\n\nSee .env.example for every setting.`);
      process.exit(2);
    }
    throw e;
  }
  const problems = slackProblems(config);
  if (problems.length) {
    console.error(
      `Warden cannot connect to Slack:\n${problems.map((p) => `  - ${p}`).join('\n')}\n\n` +
        'See README.md ("Install into a Slack workspace"). To try Warden without Slack, run: npm run console',
    );
    process.exit(2);
  }
  const logger = createLogger({ level: config.LOG_LEVEL, format: config.LOG_FORMAT });
  const warden = await startWarden({ config, logger, socketMode: !!config.SLACK_APP_TOKEN });
  const shutdown = async (signal: string) => {
    logger.info({ signal }, 'shutting down');
    await warden.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((e) => {
  console.error(`Warden failed to start: ${(e as Error).message}`);
  process.exit(1);
});
