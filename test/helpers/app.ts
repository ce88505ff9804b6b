import net from 'node:net';
import { startWarden, type Warden } from '../../src/bootstrap.js';
import { loadConfig, type Config } from '../../src/config.js';
import type { Db } from '../../src/db/index.js';
import { silentLogger, type Logger } from '../../src/logger.js';
import type { Mailer } from '../../src/services/mailer.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import { SlackDriver } from '../../src/slack/sim/driver.js';
import type { Store } from '../../src/store/index.js';

export const SIGNING_SECRET = 'test-signing-secret-0123456789';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export type Transport = 'http' | 'socket';

export interface TestApp {
  warden: Warden;
  fake: FakeSlack;
  driver: SlackDriver;
  config: Config;
  url: string;
  stop(): Promise<void>;
}

/**
 * Starts the real HTTP app on a free loopback port with SLACK_API_URL pointing at a
 * FakeSlack, over the given database and store.
 */
export async function startTestApp(opts: {
  db: Db;
  store: Store;
  env?: Record<string, string>;
  mailer?: Mailer;
  fake?: FakeSlack;
  jobs?: boolean;
  /** Capture log lines (e.g. a pino logger writing to a stream); silent by default. */
  logger?: Logger;
  /**
   * How Slack reaches the app: signed HTTP requests (default) or Socket Mode over the fake's
   * WebSocket (SLACK_APP_TOKEN set); the driver's commands, clicks and submissions work on both.
   */
  transport?: Transport;
}): Promise<TestApp> {
  const fake = opts.fake ?? (await new FakeSlack().start());
  // WARDEN_TEST_TRANSPORT=socket runs every e2e file that does not choose over Socket Mode.
  const transport = opts.transport ?? (process.env.WARDEN_TEST_TRANSPORT === 'socket' ? 'socket' : 'http');
  const socket = transport === 'socket' ? await fake.enableSocketMode() : undefined;
  const port = await freePort();
  const config = loadConfig({
    SLACK_BOT_TOKEN: 'xoxb-test-token',
    SLACK_SIGNING_SECRET: SIGNING_SECRET,
    SLACK_API_URL: fake.apiUrl,
    PORT: String(port),
    MIGRATE: 'on',
    LOG_LEVEL: 'silent',
    // Channel pacing (one message a second) is tested in test/faults/alert-delivery.test.ts;
    // here it would only make tests that share a channel wait for each other's messages.
    OUTBOX_PACE_MS: '0',
    // Tests stop apps all the time; the drain before closing the port is tested on its own.
    SHUTDOWN_DRAIN_MS: '0',
    ...(socket ? { SLACK_APP_TOKEN: socket.appToken } : {}),
    ...opts.env,
  });
  const warden = await startWarden({
    config,
    logger: opts.logger ?? silentLogger(),
    db: opts.db,
    store: opts.store,
    mailer: opts.mailer,
    jobs: opts.jobs ?? false,
    socketMode: !!socket,
  });
  const url = `http://127.0.0.1:${warden.port}`;
  const driver = new SlackDriver({ appUrl: url, signingSecret: SIGNING_SECRET, fake, socket });
  return {
    warden,
    fake,
    driver,
    config,
    url,
    async stop() {
      await warden.stop();
      // Anything Slack would have held against the app over the socket (e.g. an ack for an
      // unknown envelope) fails the file that caused it.
      const violations = socket ? [...socket.violations] : [];
      if (!opts.fake) await fake.stop();
      if (violations.length) throw new Error(`Socket Mode violations:\n- ${violations.join('\n- ')}`);
    },
  };
}
