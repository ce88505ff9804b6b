import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { IdentityService, ROW_TTL_MS, type SlackIdentity } from '../../src/services/identity.js';
import { createTestDb } from '../helpers/db.js';
import { createUser, linkSlack, type TestUser } from '../helpers/fixtures.js';
import { HeldChannel, noDirectory } from '../helpers/identity.js';

/**
 * #15: the account row of whoever acts is cached with the Slack link (one SQL round trip less
 * per request), and must never outlive a change that was announced: sql/015 and sql/020
 * announce every change of the row on warden_identity, Warden's own writes drop it at once,
 * and while the channel is not listened to nothing is cached.
 *
 * `HeldChannel` stands in for the notification channel so that each test decides what is
 * heard: the database and its rows are real, only the delivery of notifications is in the
 * test's hand (a change made "behind the cache's back" is one whose notification is held).
 */
let db: Db;
let cleanup: () => Promise<void>;
let ann: TestUser;
const slack: SlackIdentity = { userId: 'U_ANN', teamId: 'T_WARDEN' };

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  ann = await createUser(db, { username: 'ann', role: 'admin', twoFa: true, area: null });
  await linkSlack(db, 'U_ANN', ann.id);
});
afterAll(async () => {
  await cleanup?.();
});
afterEach(async () => {
  vi.useRealTimers();
  await db.query(`UPDATE "user" SET role = 'admin', two_fa_enabled = true WHERE id = $1`, [ann.id]);
});

async function started(channel = new HeldChannel()) {
  const identity = new IdentityService(channel.wrap(db), noDirectory);
  await identity.start();
  return { identity, channel };
}

const roleNow = async (identity: IdentityService) => (await identity.resolve(slack)).user.role;
const demote = () => db.query(`UPDATE "user" SET role = 'biller' WHERE id = $1`, [ann.id]);

describe('the cached account row (#15)', () => {
  it('is served from memory while no change is announced, and read again after ROW_TTL_MS at the latest', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { identity } = await started();
    expect(await roleNow(identity)).toBe('admin');
    await demote(); // its notification is held: the cache cannot know
    expect(await roleNow(identity)).toBe('admin');
    vi.setSystemTime(Date.now() + ROW_TTL_MS + 1);
    expect(await roleNow(identity)).toBe('biller');
  });

  it('is dropped by the notification of its row (row:ID, user:ID) and by a reconnect', async () => {
    const { identity, channel } = await started();
    for (const payload of [`row:${ann.id}`, `user:${ann.id}`, '']) {
      await db.query(`UPDATE "user" SET role = 'admin' WHERE id = $1`, [ann.id]);
      channel.onPayload!(payload);
      expect(await roleNow(identity), payload).toBe('admin');
      await demote();
      channel.onPayload!(payload);
      expect(await roleNow(identity), payload).toBe('biller');
    }
    // Another account's row changing does not drop this one.
    await db.query(`UPDATE "user" SET role = 'admin' WHERE id = $1`, [ann.id]);
    channel.onPayload!(`row:${ann.id}`);
    expect(await roleNow(identity)).toBe('admin');
    await demote();
    channel.onPayload!(`row:${ann.id + 1000}`);
    expect(await roleNow(identity)).toBe('admin');
  });

  it('is read fresh on every request while the channel is lost, and cached again once it is back', async () => {
    const { identity, channel } = await started();
    expect(await roleNow(identity)).toBe('admin');
    channel.onLost!();
    await demote();
    expect(await roleNow(identity)).toBe('biller');
    await db.query(`UPDATE "user" SET role = 'admin' WHERE id = $1`, [ann.id]);
    expect(await roleNow(identity)).toBe('admin');
    channel.onPayload!(''); // listened to again
    expect(await roleNow(identity)).toBe('admin');
    await demote(); // held
    expect(await roleNow(identity)).toBe('admin');
  });

  it('is never cached when LISTEN failed, or after stop()', async () => {
    const refused = new HeldChannel();
    refused.refuse = true;
    const { identity } = await started(refused);
    expect(await roleNow(identity)).toBe('admin');
    await demote();
    expect(await roleNow(identity)).toBe('biller');

    await db.query(`UPDATE "user" SET role = 'admin' WHERE id = $1`, [ann.id]);
    const { identity: stopped } = await started();
    expect(await roleNow(stopped)).toBe('admin');
    await stopped.stop();
    await demote();
    expect(await roleNow(stopped)).toBe('biller');
  });

  it("is dropped at once by forgetAccount (Warden's own writes), without waiting for the notification", async () => {
    const { identity } = await started();
    expect(await roleNow(identity)).toBe('admin');
    await demote();
    identity.forgetAccount(ann.id);
    expect(await roleNow(identity)).toBe('biller');
  });

  it('is frozen: a handler cannot change the row other requests are served', async () => {
    const { identity } = await started();
    await identity.resolve(slack);
    const actor = await identity.resolve(slack);
    expect(() => {
      (actor.user as { role: string }).role = 'admin-ish';
    }).toThrow(TypeError);
    expect(await roleNow(identity)).toBe('admin');
  });
});

describe('what the database announces on warden_identity (sql/015, sql/020)', () => {
  it('every change of an account row, whoever makes it; an UPDATE that changes nothing announces nothing', async () => {
    const heard: string[] = [];
    const unlisten = await db.listen('warden_identity', (p) => heard.push(p));
    try {
      const waitFor = async (payload: string) => {
        for (let i = 0; i < 100 && !heard.includes(payload); i++) await new Promise((r) => setTimeout(r, 20));
        return heard.includes(payload);
      };
      // Columns the identity trigger (015) does not watch: 2FA, dispatch area, login counters.
      for (const change of [
        'two_fa_enabled = false',
        `dispatch_area = 'lucknow'`,
        'failed_login_attempts = 3',
        'last_login = now()',
        'last_failed_login = now()',
      ]) {
        heard.length = 0;
        await db.query(`UPDATE "user" SET ${change} WHERE id = $1`, [ann.id]);
        expect(await waitFor(`row:${ann.id}`), change).toBe(true);
      }
      // Identity columns: both announcements (015 drops links, 020 the row).
      heard.length = 0;
      await demote();
      expect(await waitFor(`user:${ann.id}`)).toBe(true);
      expect(await waitFor(`row:${ann.id}`)).toBe(true);
      // No change, no announcement (a marker after it proves the channel is flowing).
      heard.length = 0;
      await db.query(`UPDATE "user" SET role = role WHERE id = $1`, [ann.id]);
      await db.query(`SELECT pg_notify('warden_identity', 'marker')`);
      expect(await waitFor('marker')).toBe(true);
      expect(heard).toEqual(['marker']);
    } finally {
      await unlisten();
    }
  });
});
