import { webApi } from '@slack/bolt';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Db, Queryable } from '../../src/db/index.js';
import { silentLogger } from '../../src/logger.js';
import { Outbox, type OutboxOptions } from '../../src/services/outbox.js';
import { SlackChat } from '../../src/slack/chat-port.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import { createTestDb } from '../helpers/db.js';
import { md } from '../../src/ui.js';

/**
 * Issue 12 / 15, alert delivery under Slack faults, on a real PostgreSQL (skipped on the
 * embedded defaults). Each test asserts what a reader of the channel sees: the messages in
 * the fake's conversation, not the calls Warden made.
 */
const real = !!process.env.DATABASE_URL;

let db: Db;
let cleanup: () => Promise<void>;
let fake: FakeSlack;
const made: Outbox[] = [];
const stops: (() => Promise<void>)[] = [];

/** The outbox client of src/bootstrap.ts (no retries, 429s surfaced), with a given timeout. */
function chat(timeoutMs: number): SlackChat {
  return new SlackChat(
    new webApi.WebClient('xoxb-test', {
      slackApiUrl: fake.apiUrl,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      timeout: timeoutMs,
      logLevel: webApi.LogLevel.ERROR,
    }),
  );
}

function replica(opts: OutboxOptions & { timeoutMs?: number; db?: Db } = {}): Outbox {
  const ob = new Outbox(opts.db ?? db, chat(opts.timeoutMs ?? 300), silentLogger(), { baseBackoffMs: 20, maxBackoffMs: 200, ...opts });
  made.push(ob);
  return ob;
}

/** The database, except that each write of a lane's pace record waits `ms` before it is sent. */
function slowPaceWrites(ms: number): Db {
  const slowed = (q: Queryable): Queryable => ({
    query: async (sql, params) => {
      if (sql.trimStart().startsWith('INSERT INTO warden_outbox_lane')) await sleep(ms);
      return q.query(sql, params);
    },
    exec: (sql) => q.exec(sql),
  });
  return Object.create(db, {
    query: { value: slowed(db).query },
    tx: { value: <T>(fn: (q: Queryable) => Promise<T>) => db.tx((q) => fn(slowed(q))) },
  }) as Db;
}

const texts = (channel: string) => fake.channelMessages(channel).map((m) => m.text);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
async function rowOf(id: number) {
  const { rows } = await db.query<{ status: string; posted_ts: string | null; attempts: number; next_attempt_at: Date; rate_limited: boolean }>(
    'SELECT status, posted_ts, attempts, next_attempt_at, rate_limited FROM warden_outbox WHERE id = $1',
    [id],
  );
  return rows[0];
}

describe.skipIf(!real)('alert delivery under Slack faults (real PostgreSQL)', () => {
  beforeAll(async () => {
    ({ db, cleanup } = await createTestDb());
    fake = await new FakeSlack().start();
  });
  afterAll(async () => {
    await fake?.stop();
    await cleanup?.();
  });
  beforeEach(async () => {
    fake.clear();
    fake.down = false;
    await db.query('DELETE FROM warden_outbox');
    await db.query('DELETE FROM warden_outbox_lane');
  });
  afterEach(async () => {
    for (const s of stops.splice(0)) await s();
    for (const ob of made.splice(0)) await ob.close();
  });

  it('Slack accepts a post but answers after the timeout: the retry finds it in the history, one message', async () => {
    const ob = replica({ timeoutMs: 300 });
    fake.holdNext('chat.postMessage', { answerAfterMs: 2000 });
    const id = await ob.post(db, 'C_LATE', { text: md.text('locked: alice') });
    await ob.deliverDue();
    // The post is in the channel; Warden heard nothing back within its timeout.
    expect(texts('C_LATE')).toEqual(['locked: alice']);
    await until(async () => (await ob.deliverDue(), (await rowOf(id)).status === 'sent'), 5000, 'the row to be settled');
    expect(texts('C_LATE')).toEqual(['locked: alice']);
    expect((await rowOf(id)).posted_ts).toBe(fake.channelMessages('C_LATE')[0].ts);
    expect(fake.callsTo('conversations.history').length).toBeGreaterThan(0);
    expect(fake.callsTo('chat.postMessage')).toHaveLength(1);
  });

  it('Slack hangs on the first post: nothing landed, the retry posts once', async () => {
    const ob = replica({ timeoutMs: 300 });
    fake.holdNext('chat.postMessage', {});
    const id = await ob.post(db, 'C_HANG', { text: md.text('storm') });
    await until(async () => (await ob.deliverDue(), (await rowOf(id)).status === 'sent'), 5000, 'the row to be sent');
    expect(texts('C_HANG')).toEqual(['storm']);
  });

  it('a replica frozen past its lease mid-post (its post landed): the next claimer adopts it, one message', async () => {
    const frozen = replica({ leaseMs: 300, timeoutMs: 10_000 });
    const next = replica({ leaseMs: 300 });
    fake.holdNext('chat.postMessage', { answerAfterMs: 1500 });
    const id = await frozen.post(db, 'C_FREEZE', { text: md.text('locked: bob') });
    const inFlight = frozen.deliverDue();
    await until(() => texts('C_FREEZE').length === 1, 3000, 'the post to land');
    await sleep(400); // the lease has run out while the post is still unanswered
    await next.deliverDue();
    expect((await rowOf(id)).status).toBe('sent');
    await inFlight; // the frozen replica wakes up and hears Slack's late answer
    expect(texts('C_FREEZE')).toEqual(['locked: bob']);
    expect(fake.callsTo('chat.postMessage')).toHaveLength(1);
    expect(fake.callsTo('chat.delete')).toHaveLength(0);
  });

  it('a replica frozen before its request left (it lands after the next claimer posted): the late copy is withdrawn', async () => {
    const frozen = replica({ leaseMs: 300, timeoutMs: 10_000 });
    const next = replica({ leaseMs: 300 });
    fake.holdNext('chat.postMessage', { arriveAfterMs: 1200 });
    const id = await frozen.post(db, 'C_FREEZE2', { text: md.text('locked: carol') });
    const inFlight = frozen.deliverDue();
    await sleep(400);
    await next.deliverDue(); // checks the history (nothing yet), posts
    expect((await rowOf(id)).status).toBe('sent');
    expect(texts('C_FREEZE2')).toEqual(['locked: carol']);
    await inFlight; // the old request lands now: a second copy for a moment, withdrawn by its sender
    expect(fake.callsTo('chat.postMessage')).toHaveLength(2);
    expect(texts('C_FREEZE2')).toEqual(['locked: carol']);
    expect(fake.channelMessages('C_FREEZE2')[0].ts).toBe((await rowOf(id)).posted_ts);
  });

  it('429 with Retry-After: retried at Retry-After by its own timer (not by a poll), and not before', async () => {
    const ob = replica({ pollMs: 60_000, baseBackoffMs: 60_000, maxBackoffMs: 60_000 });
    stops.push(await ob.start());
    fake.failNext('chat.postMessage', { status: 429, retryAfter: 1 });
    const id = await ob.post(db, 'C_429', { text: md.text('after the limit') });
    const failed = await fake.waitFor((c) => c.method === 'chat.postMessage!failed', 5000);
    await until(async () => (await rowOf(id)).rate_limited, 3000, 'the 429 to be recorded');
    const posted = await fake.waitFor((c) => c.method === 'chat.postMessage', 8000);
    // Not before Slack said (the fake's clock and ours are the same machine's).
    expect(posted.at - failed.at).toBeGreaterThanOrEqual(1000);
    expect(texts('C_429')).toEqual(['after the limit']);
    expect((await rowOf(id)).attempts).toBe(2);
  });

  it('Slack down, then back: the whole backlog drains in order at once, not after the first row\'s backoff', async () => {
    const ob = replica({ pollMs: 60_000, baseBackoffMs: 60_000, maxBackoffMs: 5 * 60_000, probeMs: 200, paceMs: 50 });
    stops.push(await ob.start());
    fake.down = true;
    for (let i = 0; i < 6; i++) await ob.post(db, i % 3 === 2 ? 'C_OTHER' : 'C_BACK', { text: md.text(`n${i}`) });
    await until(async () => (await db.query(`SELECT 1 FROM warden_outbox WHERE attempts > 0 AND status = 'pending'`)).rows.length >= 2, 5000, 'failed attempts');
    // Every lane head now waits out a minute's backoff.
    fake.down = false;
    await until(() => texts('C_BACK').length === 4 && texts('C_OTHER').length === 2, 8000, 'the backlog to drain');
    expect(texts('C_BACK')).toEqual(['n0', 'n1', 'n3', 'n4']);
    expect(texts('C_OTHER')).toEqual(['n2', 'n5']);
  });

  it('paces each channel to one message per paceMs, shared by replicas', async () => {
    const a = replica({ paceMs: 1000 });
    const b = replica({ paceMs: 1000 });
    stops.push(await a.start(), await b.start());
    for (let i = 0; i < 3; i++) await a.post(db, 'C_PACE', { text: md.text(`p${i}`) });
    await a.post(db, 'C_FAST', { text: md.text('other channel') });
    await until(() => texts('C_PACE').length === 3, 8000, 'three posts');
    const at = fake.callsTo('chat.postMessage').filter((c) => c.args.channel === 'C_PACE').map((c) => c.at);
    expect(at).toHaveLength(3);
    for (let i = 1; i < at.length; i++) expect(at[i] - at[i - 1]).toBeGreaterThanOrEqual(990);
    // Another channel is not held back by this one's pace.
    const other = fake.callsTo('chat.postMessage').find((c) => c.args.channel === 'C_FAST')!;
    expect(other.at - at[0]).toBeLessThan(1000);
    expect(texts('C_PACE')).toEqual(['p0', 'p1', 'p2']);
  });

  it('a replica claiming between another one\'s post and its pace record still waits the pace (one commit)', async () => {
    // The pace record of each post takes 400 ms to reach the database, and both replicas look
    // for due rows every 25 ms: had "sent" and "paced" been two commits, the other replica would
    // take the lane's next row in between and post it at once.
    const slow = slowPaceWrites(400);
    const a = replica({ paceMs: 1000, pollMs: 25, db: slow });
    const b = replica({ paceMs: 1000, pollMs: 25, db: slow });
    stops.push(await a.start(), await b.start());
    for (let i = 0; i < 2; i++) await a.post(db, 'C_RACE', { text: md.text(`r${i}`) });
    await until(() => texts('C_RACE').length === 2, 8000, 'two posts');
    const at = fake.callsTo('chat.postMessage').filter((c) => c.args.channel === 'C_RACE').map((c) => c.at);
    expect(at).toHaveLength(2);
    expect(at[1] - at[0]).toBeGreaterThanOrEqual(990);
    expect(texts('C_RACE')).toEqual(['r0', 'r1']);
  });
});
