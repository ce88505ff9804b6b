import { generate } from 'otplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { NotLinkedError, StepUpError } from '../../src/errors.js';
import { writeAudit } from '../../src/services/audit-writer.js';
import { IdentityService, requireAdmin, type Actor, type SlackProfile } from '../../src/services/identity.js';
import type { Store } from '../../src/store/index.js';
import { createTestDb } from '../helpers/db.js';
import { createUser, linkSlack, totpOf, type TestUser } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';
import { mapDirectory, member, testStepUp } from '../helpers/identity.js';

let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
let admin: TestUser;
let plain: TestUser;
const profiles = new Map<string, SlackProfile>();
const directory = mapDirectory(profiles);

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  admin = await createUser(db, { username: 'stepper', role: 'admin', twoFa: true, area: null });
  plain = await createUser(db, { username: 'nofa', role: 'admin', area: null });
});
afterAll(async () => {
  await store?.close();
  await cleanup?.();
});

const actorOf = async (u: TestUser): Promise<Actor> => {
  const { rows } = await db.query<any>('SELECT * FROM "user" WHERE id = $1', [u.id]);
  return { user: rows[0], slack: { userId: `U_${u.username}`, teamId: 'T1', channelId: 'C1' } };
};

describe('store', () => {
  it('counts, expires, and sets only once', async () => {
    expect(await store.incr('k:count', 60)).toBe(1);
    expect(await store.incr('k:count', 60)).toBe(2);
    expect(await store.setIfAbsent('k:once', 'a', 60)).toBe(true);
    expect(await store.setIfAbsent('k:once', 'b', 60)).toBe(false);
    expect(await store.get('k:once')).toBe('a');
    await store.set('k:short', 'x', 1);
    await new Promise((r) => setTimeout(r, 1100));
    expect(await store.get('k:short')).toBeNull();
    await store.del('k:once');
    expect(await store.get('k:once')).toBeNull();
  });
});

describe('step-up', () => {
  it('accepts the current code once, and the neighbouring steps', async () => {
    const s = testStepUp(db, store, 5);
    const a = await actorOf(admin);
    await expect(s.verify(a, await totpOf(admin), 'test')).resolves.toBeUndefined();
    await expect(s.verify(a, await totpOf(admin), 'test')).rejects.toThrow(/already used/);
    await expect(s.verify(a, await totpOf(admin, -30), 'test')).resolves.toBeUndefined();
  });

  it('refuses wrong, malformed and far-off codes, then locks after the limit', async () => {
    const s = testStepUp(db, store, 3);
    const other = await createUser(db, { username: 'stepper2', role: 'admin', twoFa: true, area: null });
    const a = await actorOf(other);
    const far = await generate({ secret: other.totpSecret!, epoch: Math.floor(Date.now() / 1000) - 300 });
    await expect(s.verify(a, far, 'test')).rejects.toBeInstanceOf(StepUpError);
    await expect(s.verify(a, 'abc', 'test')).rejects.toThrow(/6-digit/);
    await expect(s.verify(a, '000000', 'test')).rejects.toThrow(/not valid/);
    // The malformed entry was a field error, not a wrong code: the third wrong code reaches the limit.
    await expect(s.verify(a, '000001', 'test')).rejects.toThrow(/Too many wrong 2FA codes/);
    await expect(s.verify(a, await totpOf(other), 'test')).rejects.toThrow(/Too many wrong 2FA codes/);
  });

  it('tells admins without 2FA to enrol first', async () => {
    const s = testStepUp(db, store, 5);
    await expect(s.verify(await actorOf(plain), '123456', 'test')).rejects.toThrow(/Enrol/);
  });
});

describe('identity', () => {
  it('links by Slack profile e-mail (case-insensitive), remembers it, and refuses strangers', async () => {
    const identity = new IdentityService(db, directory);
    profiles.set('U_MAIL', member('U_MAIL', 'STEPPER@example.com', { teamId: 'T1' }));
    const actor = await identity.resolve({ userId: 'U_MAIL', teamId: 'T1' });
    expect(actor.user.username).toBe('stepper');
    const link = await db.query<any>(`SELECT method FROM warden_slack_link WHERE slack_user_id = 'U_MAIL'`);
    expect(link.rows[0].method).toBe('email');
    await expect(identity.resolve({ userId: 'U_NONE', teamId: 'T1' })).rejects.toBeInstanceOf(NotLinkedError);
  });

  it('prefers an explicit link and reads the role fresh', async () => {
    const identity = new IdentityService(db, directory);
    await linkSlack(db, 'U_EXPL', plain.id, 'T1');
    const a = await identity.resolve({ userId: 'U_EXPL', teamId: 'T1' });
    expect(a.user.username).toBe('nofa');
    requireAdmin(a);
    await db.query(`UPDATE "user" SET role = 'biller' WHERE id = $1`, [plain.id]);
    const again = await identity.resolve({ userId: 'U_EXPL', teamId: 'T1' });
    expect(() => requireAdmin(again)).toThrow(/Only admins/);
  });
});

describe('audit writer', () => {
  it('writes the actor, Slack context and secret-free snapshots in the caller\'s transaction', async () => {
    const a = await actorOf(admin);
    const id = await db.tx((q) =>
      writeAudit(q, a, {
        action: 'user_updated',
        entityType: 'user',
        entityId: admin.id,
        before: { role: 'biller', password_hash: 'h', totp_secret: 's', password_reset_token: 't' },
        after: { role: 'admin', password_hash: 'h2' },
      }),
    );
    const { rows } = await db.query<any>('SELECT * FROM audit_log WHERE id = $1', [id]);
    expect(rows[0].user_id).toBe(admin.id);
    expect(rows[0].details).toMatchObject({ via: 'warden', actor: 'stepper', slack_user: 'U_stepper', slack_team: 'T1', slack_channel: 'C1' });
    expect(rows[0].before_state).toEqual({ role: 'biller' });
    expect(rows[0].after_state).toEqual({ role: 'admin' });
  });
});
