import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { RedisStore } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { realServers, watchProcessDeaths } from './support.js';

/** Issue 12: "Without Redis a Slack retry runs twice." */
describe.runIf(realServers)('Redis down', () => {
  let db: Db;
  let cleanup: () => Promise<void>;
  let store: RedisStore;
  let t: TestApp;
  const deaths = watchProcessDeaths();

  beforeAll(async () => {
    ({ db, cleanup } = await createTestDb());
    // Nothing listens on port 1: every Redis call fails, as in an outage.
    store = RedisStore.connect('redis://127.0.0.1:1/0', 'warden-down:');
    t = await startTestApp({ db, store });
  });
  afterAll(async () => {
    deaths.stop();
    await t?.stop();
    await store?.close();
    await cleanup?.();
  });

  it('a Slack retry of a command still runs once: duplicate detection falls back to the database', async () => {
    const body = t.driver.commandBody('U_RETRY', '/users help');
    const first = await t.driver.postSigned(body, { 'x-slack-retry-num': '0' });
    const again = await t.driver.postSigned(body, { 'x-slack-retry-num': '1', 'x-slack-retry-reason': 'http_timeout' });
    expect([first.status, again.status]).toEqual([200, 200]);
    const responseId = new URLSearchParams(body).get('response_url')!.split('/').pop();
    await t.fake.waitFor((c) => c.method === 'response_url' && c.responseId === responseId);
    await new Promise((r) => setTimeout(r, 500));
    expect(t.fake.calls.filter((c) => c.method === 'response_url' && c.responseId === responseId)).toHaveLength(1);
    expect((await db.query(`SELECT count(*)::int AS n FROM warden_delivery`)).rows[0]).toEqual({ n: 1 });

    // A genuine second command (a new trigger_id) runs.
    const other = await t.driver.command('U_RETRY', '/users help');
    expect((await t.driver.reply(other)).method).toBe('response_url');
    expect(deaths.errors).toEqual([]);
  });
});
