import { webApi } from '@slack/bolt';
import { loadConfig } from '../../src/config.js';
import type { Db } from '../../src/db/index.js';
import { silentLogger } from '../../src/logger.js';
import { createServices, type Services } from '../../src/services/index.js';
import { SlackChat } from '../../src/slack/chat-port.js';
import type { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import type { Store } from '../../src/store/index.js';

/** The fault suite runs on real PostgreSQL and Redis only (CI); skipped on the embedded defaults. */
export const realServers = !!process.env.DATABASE_URL && !!process.env.REDIS_URL;

/**
 * Errors that would have killed a production process: an 'error' event nobody listens to
 * and a rejected promise nobody handles both end up here. Every fault test asserts none.
 */
export function watchProcessDeaths(): { errors: unknown[]; stop: () => void } {
  const errors: unknown[] = [];
  const onError = (e: unknown) => errors.push(e);
  process.on('uncaughtException', onError);
  process.on('unhandledRejection', onError);
  return {
    errors,
    stop: () => {
      process.off('uncaughtException', onError);
      process.off('unhandledRejection', onError);
    },
  };
}

export function servicesOn(db: Db, store: Store, fake: FakeSlack, env: Record<string, string> = {}): Services {
  const config = loadConfig({ SLACK_BOT_TOKEN: 'xoxb-faults', SLACK_API_URL: fake.apiUrl, LOG_LEVEL: 'silent', ...env });
  const client = new webApi.WebClient('xoxb-faults', { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 }, timeout: 2000 });
  return createServices({ config, db, store, logger: silentLogger(), chat: new SlackChat(client), directory: { profileOf: async () => null } });
}
