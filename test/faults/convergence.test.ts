import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { startOutboxDelivery } from '../../src/jobs/alerts.js';
import { USER_COLUMNS, userRowSchema } from '../../src/domain/user.js';
import type { Actor } from '../../src/services/identity.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { createUser, linkSlack, totpOf, type TestUser } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';

/**
 * Issue 12, convergence: what a committed decision owes (the requester's DM, the card updated
 * in place) is queued in the deciding transaction, so a Warden that stops right after the
 * commit — before it could tell anyone — delivers it after restart, once.
 */
const real = !!process.env.DATABASE_URL;
const APPROVALS = 'C_APPROVALS';

let db: Db;
let store: Store;
let fake: FakeSlack;
let cleanup: () => Promise<void>;
let carol: TestUser;
let bob: TestUser;

async function actor(u: TestUser, slackUserId: string): Promise<Actor> {
  const { rows } = await db.query(`SELECT ${USER_COLUMNS} FROM "user" WHERE id = $1`, [u.id]);
  return { user: userRowSchema.parse(rows[0]), slack: { userId: slackUserId, teamId: 'T_WARDEN', channelId: 'C_ADMIN' } };
}

async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string) {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(!real)('convergence after a crash (real PostgreSQL)', () => {
  beforeAll(async () => {
    ({ db, cleanup } = await createTestDb());
    store = createTestStore();
    fake = await new FakeSlack().start();
    carol = await createUser(db, { username: 'carol', role: 'admin', twoFa: true, area: null });
    bob = await createUser(db, { username: 'bob', role: 'biller', area: null });
    await linkSlack(db, 'U_CAROL', carol.id);
    await linkSlack(db, 'U_BOB', bob.id);
  });
  afterAll(async () => {
    await fake?.stop();
    await store?.close();
    await cleanup?.();
  });

  it('an approval committed just before Warden stops: the DM and the card update are delivered after restart, once', async () => {
    const env = { APPROVALS_CHANNEL: APPROVALS };
    const first = await startTestApp({ db, store, fake, env });
    const { request, card } = await first.warden.services.promotions.request(await actor(bob, 'U_BOB'), 'I run the night shift and need to unlock accounts');
    expect(card).not.toBeNull();
    // Slack is unreachable from the commit until the process is gone: nothing owed gets out.
    fake.down = true;
    const view = await first.warden.services.promotions.approve(await actor(carol, 'U_CAROL'), request.id, { totp: await totpOf(carol), notes: 'Welcome' });
    expect(view.request.status).toBe('approved');
    await first.stop(); // the "crash": the decision is committed, its DM and card update are not delivered
    expect(fake.channelMessages('D_U_BOB')).toEqual([]);
    expect(fake.channelMessages(APPROVALS)[0].text).toMatch(/asks to become admin/);
    fake.down = false;

    const second = await startTestApp({ db, store, fake, env });
    const stop = await startOutboxDelivery(second.warden.services);
    try {
      await until(() => fake.channelMessages('D_U_BOB').length > 0 && /approved/.test(fake.channelMessages(APPROVALS)[0].text ?? ''), 15_000, 'the owed DM and card update');
      await second.warden.services.outbox.deliverDue();
      const dms = fake.channelMessages('D_U_BOB');
      expect(dms).toHaveLength(1);
      expect(dms[0].text).toContain('*approved* by <@U_CAROL> (carol)');
      const cards = fake.channelMessages(APPROVALS);
      expect(cards).toHaveLength(1);
      expect(cards[0].text).toMatch(/Promotion request #\d+ \(bob\): approved/);
      expect((await second.warden.services.outbox.stats()).pending).toBe(0);
    } finally {
      await stop();
      await second.stop();
    }
  });
});
