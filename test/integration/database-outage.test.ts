import { webApi } from '@slack/bolt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { PgDb, type Db } from '../../src/db/index.js';
import { healthJob } from '../../src/jobs/health.js';
import { runJobOnce } from '../../src/jobs/runner.js';
import { silentLogger } from '../../src/logger.js';
import { createServices, type Services } from '../../src/services/index.js';
import { SlackChat } from '../../src/slack/chat-port.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import type { Store } from '../../src/store/index.js';
import { createTestDb } from '../helpers/db.js';
import { createTestStore } from '../helpers/store.js';
import { noDirectory } from '../helpers/identity.js';

let fake: FakeSlack;
let store: Store;
let downDb: Db;
let upDb: Db;
let cleanup: () => Promise<void>;

const servicesWith = (db: Db): Services => {
  const config = loadConfig({ ALERTS_CHANNEL: 'C_ALERTS', SLACK_BOT_TOKEN: 'xoxb-outage', SLACK_API_URL: fake.apiUrl });
  const client = new webApi.WebClient('xoxb-outage', { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 } });
  return createServices({ config, db, store, logger: silentLogger(), chat: new SlackChat(client), directory: noDirectory });
};

beforeAll(async () => {
  fake = await new FakeSlack().start();
  store = createTestStore();
  // Nothing listens on port 1 of loopback: every connection is refused at once.
  downDb = PgDb.connect('postgres://warden@127.0.0.1:1/warden', 2);
  ({ db: upDb, cleanup } = await createTestDb());
});

afterAll(async () => {
  await downDb?.close().catch(() => {});
  await cleanup?.();
  await store?.close();
  await fake?.stop();
});

describe('the database itself is down', () => {
  it('is posted to the alerts channel once per outage, and closed in the thread when it is back', async () => {
    const job = healthJob('* * * * *');
    const down = servicesWith(downDb);
    expect(await runJobOnce(down, job)).toBe('failed');
    expect(await runJobOnce(down, job)).toBe('failed');
    const posts = fake.callsTo('chat.postMessage');
    expect(posts).toHaveLength(1);
    expect(posts[0].args.channel).toBe('C_ALERTS');
    expect(posts[0].args.text).toContain('Database unreachable: connection refused (ECONNREFUSED)');
    expect(JSON.stringify(posts[0].args.blocks)).not.toContain('127.0.0.1'); // no connection details in the channel

    const up = servicesWith(upDb);
    expect(await runJobOnce(up, job)).toBe('ran');
    const reply = fake.callsTo('chat.postMessage').at(-1)!;
    expect(reply.args.thread_ts).toBe(posts[0].result!.ts);
    expect(reply.args.text).toMatch(/Database reachable again after about \d+ min/);
    const update = fake.callsTo('chat.update').find((c) => c.args.ts === posts[0].result!.ts)!;
    expect(update.args.text).toContain('Resolved');

    const before = fake.calls.length;
    await runJobOnce(up, job);
    expect(fake.calls.slice(before).filter((c) => /Database (unreachable|reachable again)/.test(JSON.stringify(c.args)))).toEqual([]);
  });
});

describe.runIf(!!process.env.DATABASE_URL)('LISTEN survives a lost connection (PostgreSQL)', () => {
  it('reconnects, catches up once, and receives later notifications', async () => {
    const pg = upDb as PgDb;
    const got: string[] = [];
    await pg.listen('warden_reconnect_test', (p) => got.push(p));
    await pg.query(`SELECT pg_notify('warden_reconnect_test', 'before')`);
    await expect.poll(() => got).toContain('before');
    await pg.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN warden_reconnect_test' AND pid <> pg_backend_pid()`,
    );
    // The catch-up call after reconnecting carries an empty payload.
    await expect.poll(() => got.includes(''), { timeout: 10_000 }).toBe(true);
    await pg.query(`SELECT pg_notify('warden_reconnect_test', 'after')`);
    await expect.poll(() => got, { timeout: 5_000 }).toContain('after');
  });
});
