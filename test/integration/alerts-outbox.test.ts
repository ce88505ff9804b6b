import { webApi } from '@slack/bolt';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { silentLogger } from '../../src/logger.js';
import { Outbox } from '../../src/services/outbox.js';
import { SlackChat } from '../../src/slack/chat-port.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import { createTestDb } from '../helpers/db.js';
import { md } from '../../src/ui.js';

let db: Db;
let cleanup: () => Promise<void>;
let fake: FakeSlack;

/** The same client settings as the outbox's in src/bootstrap.ts. */
function alertChat(): SlackChat {
  return new SlackChat(
    new webApi.WebClient('xoxb-test', {
      slackApiUrl: fake.apiUrl,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      timeout: 5000,
      logLevel: webApi.LogLevel.ERROR,
    }),
  );
}

const made: Outbox[] = [];
/**
 * A replica's outbox; closed after each test so no stray kick crosses into the next one.
 * Unpaced here (these tests are about order and retries); pacing has its own tests in
 * test/faults/alert-delivery.test.ts.
 */
function outbox(opts: { baseBackoffMs?: number; maxBackoffMs?: number } = {}): Outbox {
  const ob = new Outbox(db, alertChat(), silentLogger(), { baseBackoffMs: 20, maxBackoffMs: 200, paceMs: 0, ...opts });
  made.push(ob);
  return ob;
}

const posts = () => fake.callsTo('chat.postMessage');

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  fake = await new FakeSlack().start();
});

afterAll(async () => {
  await fake?.stop();
  await cleanup?.();
});

afterEach(async () => {
  for (const ob of made.splice(0)) await ob.close();
});

beforeEach(async () => {
  fake.clear();
  fake.down = false;
  await db.query('DELETE FROM warden_outbox');
  await db.query('DELETE FROM warden_outbox_lane');
});

describe('Outbox', () => {
  it('queues inside the caller transaction: a rolled-back decision posts nothing', async () => {
    const ob = outbox();
    await db
      .tx(async (q) => {
        await ob.post(q, 'C_SEC', { text: md.text('never') });
        throw new Error('rollback');
      })
      .catch(() => {});
    expect(await ob.deliverDue()).toBe(0);
    const id = await db.tx((q) => ob.post(q, 'C_SEC', { text: md.text('committed') }));
    expect(await ob.deliverDue()).toBe(1);
    expect(posts().map((c) => c.args.text)).toEqual(['committed']);
    const ref = await ob.refOf(id);
    expect(ref).toEqual({ channel: 'C_SEC', ts: posts()[0].result?.ts ?? expect.any(String) });
  });

  it('never queues the same dedupeKey twice and returns the existing id', async () => {
    const ob = outbox();
    const a = await ob.post(db, 'C_SEC', { text: md.text('once') }, { dedupeKey: 'k:1' });
    const b = await ob.post(db, 'C_SEC', { text: md.text('once again') }, { dedupeKey: 'k:1' });
    expect(b).toBe(a);
    await ob.deliverDue();
    await ob.deliverDue();
    expect(posts().map((c) => c.args.text)).toEqual(['once']);
  });

  it('delivers updates and thread replies after their post, and only the newest of waiting updates', async () => {
    const ob = outbox();
    const id = await ob.post(db, 'C_SEC', { text: md.text('v1') });
    await ob.update(db, id, { text: md.text('v2') });
    await ob.update(db, id, { text: md.text('v3') });
    await ob.post(db, 'C_SEC', { text: md.text('reply') }, { threadOfId: id });
    await ob.deliverDue();
    const post = posts()[0];
    const updates = fake.callsTo('chat.update');
    expect(updates.map((c) => c.args.text)).toEqual(['v3']);
    expect(updates[0].args.ts).toBe(post.result?.ts);
    const reply = posts()[1];
    expect(reply.args.text).toBe('reply');
    expect(reply.args.thread_ts).toBe(post.result?.ts);
    const { rows } = await db.query<{ status: string }>('SELECT status FROM warden_outbox ORDER BY id');
    expect(rows.map((r) => r.status)).toEqual(['sent', 'superseded', 'sent', 'sent']);
  });

  it('two replicas delivering at the same time post each row exactly once, in order', async () => {
    const a = outbox();
    const b = outbox();
    for (let i = 0; i < 12; i++) await a.post(db, i % 2 ? 'C_ONE' : 'C_TWO', { text: md.text(`m${i}`) });
    await Promise.all([a.deliverDue(), b.deliverDue(), a.deliverDue(), b.deliverDue()]);
    // A replica stops when the other holds every lane head; drain until nothing is pending.
    for (let i = 0; i < 20 && (await a.stats()).pending > 0; i++) await Promise.all([a.deliverDue(), b.deliverDue()]);
    const texts = posts().map((c) => c.args.text);
    expect([...texts].sort()).toEqual(Array.from({ length: 12 }, (_, i) => `m${i}`).sort());
    for (const ch of ['C_ONE', 'C_TWO']) {
      const inChannel = posts().filter((c) => c.args.channel === ch).map((c) => Number(c.args.text.slice(1)));
      expect(inChannel).toEqual([...inChannel].sort((x, y) => x - y));
    }
  });

  it('retries 429 with Retry-After and 5xx, and posts once', async () => {
    const ob = outbox();
    fake.failNext('chat.postMessage', { status: 429, retryAfter: 0 }, 2);
    fake.failNext('chat.postMessage', { status: 503 }, 1);
    await ob.post(db, 'C_SEC', { text: md.text('eventually') });
    for (let i = 0; i < 50 && posts().length === 0; i++) {
      await ob.deliverDue();
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(fake.callsTo('chat.postMessage!failed')).toHaveLength(3);
    expect(posts().map((c) => c.args.text)).toEqual(['eventually']);
    const { rows } = await db.query<{ attempts: number; status: string }>('SELECT attempts, status FROM warden_outbox');
    expect(rows).toEqual([{ attempts: 4, status: 'sent' }]);
  });

  it('holds a channel back while Slack is unreachable and then delivers everything in order', async () => {
    const ob = outbox();
    fake.down = true;
    for (let i = 0; i < 5; i++) await ob.post(db, 'C_SEC', { text: md.text(`n${i}`) });
    await ob.deliverDue();
    await ob.deliverDue();
    expect(posts()).toHaveLength(0);
    const stats = await ob.stats();
    expect(stats.pending).toBe(5);
    expect(stats.lastError).toBe('network error');
    fake.down = false;
    for (let i = 0; i < 100 && posts().length < 5; i++) {
      await ob.deliverDue();
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(posts().map((c) => c.args.text)).toEqual(['n0', 'n1', 'n2', 'n3', 'n4']);
  });

  it('parks a message Slack refuses for good so the rest of its channel still goes, and keeps retrying it', async () => {
    const ob = outbox({ baseBackoffMs: 60_000, maxBackoffMs: 60_000 });
    fake.failNext('chat.postMessage', { status: 200, error: 'invalid_blocks' }, 1);
    // FakeSlack answers the failure with HTTP 200 + ok:false: a platform error.
    await ob.post(db, 'C_SEC', { text: md.text('bad') });
    await ob.post(db, 'C_SEC', { text: md.text('good') });
    await ob.deliverDue();
    expect(posts().map((c) => c.args.text)).toEqual(['good']);
    const { rows } = await db.query<{ text: string; parked: boolean; status: string }>(
      `SELECT message->>'text' AS text, parked, status FROM warden_outbox ORDER BY id`,
    );
    expect(rows).toEqual([
      { text: 'bad', parked: true, status: 'pending' },
      { text: 'good', parked: false, status: 'sent' },
    ]);
    // Not dropped: when its retry is due it goes, once Slack accepts it.
    await db.query(`UPDATE warden_outbox SET next_attempt_at = now() WHERE parked`);
    await ob.deliverDue();
    expect(posts().map((c) => c.args.text)).toEqual(['good', 'bad']);
  });
});
