import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { ForbiddenError, UserError } from '../../src/errors.js';
import { IdentityService, type Actor } from '../../src/services/identity.js';
import type { Mailer, MailMessage } from '../../src/services/mailer.js';
import { Outbox } from '../../src/services/outbox.js';
import { PendingSends } from '../../src/services/pending-sends.js';
import { accountStatus, DISABLED_UNTIL, UserAdminService } from '../../src/services/user-admin.js';
import { UserDirectory } from '../../src/services/users.js';
import type { Store } from '../../src/store/index.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, snapshot, type TestUser } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';
import { StepUpCodes } from '../e2e/users-support.js';
import { IdentityChanges } from '../../src/services/identity-changes.js';
import { silentLogger } from '../../src/logger.js';
import { mapDirectory, member, noDirectory, testStepUp, recordingChat } from '../helpers/identity.js';

/**
 * UserAdminService against a real database (PostgreSQL when DATABASE_URL is set, else PGlite):
 * authorization inside the service, and races (two admins at once, double clicks) that the
 * Slack layer cannot rule out.
 */

let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
let service: UserAdminService;
const sent: MailMessage[] = [];
const mailer: Mailer = {
  configured: true,
  async send(m) {
    sent.push(m);
  },
};
const codes = new StepUpCodes(() => store);

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  const logger = silentLogger();
  const outbox = new Outbox(db, recordingChat(), logger, { paceMs: 0 });
  const pendingSends: PendingSends = new PendingSends({
    db,
    logger,
    outbox,
    leaseMs: 60_000,
    revokers: () => ({ '2fa_code': async () => '', set_password_link: (q, r, why) => service.revokeUnsentLink(q, r, why), reset_link: (q, r, why) => service.revokeUnsentLink(q, r, why) }),
  });
  service = new UserAdminService({
    pendingSends,
    outbox,
    db,
    mailer,
    stepUp: testStepUp(db, store, 50),
    identity: new IdentityService(db, noDirectory),
    identityChanges: new IdentityChanges(db, 72 * 3600),
    users: new UserDirectory(db),
    store,
    logger: silentLogger(),
    resetUrl: 'https://app.example.com/reset/',
  });
});

afterAll(async () => {
  await store?.close();
  await cleanup?.();
});

async function actorOf(u: TestUser, slackUser = `U${u.id}`): Promise<Actor> {
  const user = (await new UserDirectory(db).findByUsername(u.username))!;
  return { user, slack: { userId: slackUser, teamId: 'T_WARDEN', channelId: 'C_ADMIN' } };
}

describe('authorization inside the service', () => {
  it('refuses every mutation to a non-admin, whatever the Slack layer let through', async () => {
    await createUser(db, { username: 'victim', role: 'biller', area: null, lockedMinutes: 10, failed: 5 });
    const mallory = await createUser(db, { username: 'mallory', role: 'dispatcher', twoFa: true });
    const actor = await actorOf(mallory);
    const snap = await snapshot(db);
    const attempts: [string, () => Promise<unknown>][] = [
      ['create', () => service.create(actor, { username: 'evil', email: 'evil@example.com', role: 'admin', password: 'temp' }, '000000')],
      ['update', () => service.update(actor, 'victim', { role: 'admin' })],
      ['role', () => service.changeRole(actor, 'mallory', 'admin', null)],
      ['unlock', () => service.unlock(actor, 'victim', '000000')],
      ['link', () => service.sendResetLink(actor, 'victim', '000000')],
      ['temp', () => service.setTempPassword(actor, 'victim', '000000')],
      ['delete', () => service.delete(actor, 'victim', { confirm: 'victim', anonymise: true }, '000000')],
      ['slack link', () => service.link(actor, 'victim', 'U_MALLORY2', '000000')],
    ];
    for (const [what, attempt] of attempts) {
      const e = await attempt().then(() => null, (err) => err);
      expect(e, what).toBeInstanceOf(ForbiddenError);
      expect((e as Error).message, what).toMatch(/^Only admins can/);
    }
    expect(await snapshot(db)).toEqual(snap);
    expect(sent).toEqual([]);
  });

  it('an admin demoted or disabled a moment ago is refused inside the transaction', async () => {
    const ex = await createUser(db, { username: 'exadmin', role: 'admin', twoFa: true, area: null });
    const stale = await actorOf(ex); // resolved while still admin
    await db.query(`UPDATE "user" SET role = 'biller' WHERE id = $1`, [ex.id]);
    const snap = await snapshot(db);
    await expect(service.unlock(stale, 'victim', await codes.of(ex))).rejects.toThrow('You are not an admin any more');
    await expect(service.update(stale, 'victim', { status: 'disabled' })).rejects.toThrow('You are not an admin any more');
    expect(await snapshot(db)).toEqual(snap);

    const off = await createUser(db, { username: 'offadmin', role: 'admin', twoFa: true, area: null });
    const offActor = await actorOf(off);
    await db.query(`UPDATE "user" SET locked_until = $2 WHERE id = $1`, [off.id, DISABLED_UNTIL]);
    const snap2 = await snapshot(db);
    await expect(service.unlock(offActor, 'victim', await codes.of(off))).rejects.toThrow('Your account is disabled');
    await expect(service.update(offActor, 'victim', { status: 'active' }, await codes.of(off))).rejects.toThrow('Your account is disabled');
    expect(await snapshot(db)).toEqual(snap2);
  });
});

describe('races', () => {
  it('two admins demoting each other at once: exactly one wins and an admin remains', async () => {
    await db.query(`UPDATE "user" SET role = 'biller' WHERE role = 'admin'`);
    const a = await createUser(db, { username: 'duel-a', role: 'admin', twoFa: true, area: null });
    const b = await createUser(db, { username: 'duel-b', role: 'admin', twoFa: true, area: null });
    const [actorA, actorB] = [await actorOf(a), await actorOf(b)];
    const results = await Promise.allSettled([
      service.changeRole(actorA, 'duel-b', 'biller', null, await codes.of(a)),
      service.changeRole(actorB, 'duel-a', 'biller', null, await codes.of(b)),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const failure = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(failure.reason).toBeInstanceOf(UserError);
    expect(failure.reason.message).toMatch(/not an admin any more|no admin who can sign in/);
    const admins = (await db.query<{ username: string }>(`SELECT username FROM "user" WHERE role = 'admin'`)).rows;
    expect(admins).toHaveLength(1);
    expect((await auditRows(db, 'role_change')).filter((r: any) => [a.id, b.id].includes(r.entity_id))).toHaveLength(1);
  });

  it('two admins deleting each other at once: exactly one wins', async () => {
    const c = await createUser(db, { username: 'duel-c', role: 'admin', twoFa: true, area: null });
    const d = await createUser(db, { username: 'duel-d', role: 'admin', twoFa: true, area: null });
    const [actorC, actorD] = [await actorOf(c), await actorOf(d)];
    const results = await Promise.allSettled([
      service.delete(actorC, 'duel-d', { confirm: 'duel-d', anonymise: false }, await codes.of(c)),
      service.delete(actorD, 'duel-c', { confirm: 'duel-c', anonymise: false }, await codes.of(d)),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const left = (await db.query(`SELECT 1 FROM "user" WHERE username IN ('duel-c', 'duel-d')`)).rows;
    expect(left).toHaveLength(1);
    expect((await auditRows(db, 'user_deleted')).filter((r: any) => [c.id, d.id].includes(r.entity_id))).toHaveLength(1);
  });

  it('a double-clicked Unlock writes one audit row; the second click is told there is nothing to unlock', async () => {
    const admin = await createUser(db, { username: 'unlocker', role: 'admin', twoFa: true, area: null });
    const locked = await createUser(db, { username: 'twice', role: 'biller', area: null, lockedMinutes: 20, failed: 5 });
    const actor = await actorOf(admin);
    // Each click's form carries its own code (unlock needs step-up on every path); the race is on the row.
    const [c1, c2] = [await codes.of(admin), await codes.of(admin)];
    const results = await Promise.allSettled([service.unlock(actor, 'twice', c1), service.unlock(actor, 'twice', c2)]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason.message).toContain('nothing to unlock');
    expect((await auditRows(db, 'unlock_account')).filter((r: any) => r.entity_id === locked.id)).toHaveLength(1);
  });

  it('two creates of e-mails differing only in case at once: one account', async () => {
    const admin = await createUser(db, { username: 'creator', role: 'admin', twoFa: true, area: null });
    const actor = await actorOf(admin);
    const results = await Promise.allSettled([
      service.create(actor, { username: 'twin-a', email: 'Twin@Example.com', role: 'biller', password: 'link' }),
      service.create(actor, { username: 'twin-b', email: 'twin@example.COM', role: 'biller', password: 'link' }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason.message).toContain('already uses this e-mail');
    expect((await db.query(`SELECT 1 FROM "user" WHERE lower(email) = 'twin@example.com'`)).rows).toHaveLength(1);
  });
});

describe('rules', () => {
  it('account status follows locked_until; disabling is a lock that never runs out', async () => {
    expect(accountStatus({ locked_until: null })).toBe('active');
    expect(accountStatus({ locked_until: new Date(Date.now() - 1000) })).toBe('active');
    expect(accountStatus({ locked_until: new Date(Date.now() + 60_000) })).toBe('locked');
    expect(accountStatus({ locked_until: DISABLED_UNTIL })).toBe('disabled');
    // The seed's own locked-accounts query sees a disabled account as locked.
    const admin = await createUser(db, { username: 'status-admin', role: 'admin', twoFa: true, area: null });
    await createUser(db, { username: 'to-disable', role: 'biller', area: null });
    await service.update(await actorOf(admin), 'to-disable', { status: 'disabled' });
    const { rows } = await db.query(`SELECT username, locked_until FROM "user" WHERE locked_until > NOW() AND username = 'to-disable'`);
    expect(rows).toHaveLength(1);
  });

  it('step-up decisions: to/from admin, any status change of an admin, e-mail changes, unlocking and re-enabling need it; other changes do not', () => {
    const need = UserAdminService.changeNeedsStepUp;
    expect(need({ role: 'biller' }, { role: 'admin' })).toBe(true);
    expect(need({ role: 'admin' }, { role: 'dispatcher' })).toBe(true);
    expect(need({ role: 'admin' }, { role: 'admin', status: 'disabled' })).toBe(true);
    expect(need({ role: 'biller' }, { role: 'dispatcher', status: 'disabled' })).toBe(false);
    // Identity and lock changes (issue 10): e-mail, unlocking, re-enabling.
    const locked = new Date(Date.now() + 60_000);
    expect(need({ role: 'biller', email: 'a@x.io' }, { role: 'biller', email: 'b@x.io' })).toBe(true);
    expect(need({ role: 'biller', email: 'a@x.io', locked_until: locked }, { role: 'biller', status: 'active' })).toBe(true);
    expect(need({ role: 'biller', locked_until: DISABLED_UNTIL }, { role: 'biller', status: 'active' })).toBe(true);
    expect(need({ role: 'biller', email: 'a@x.io', locked_until: null }, { role: 'biller', email: 'a@x.io', status: 'locked' })).toBe(false);
    expect(UserAdminService.createNeedsStepUp({ role: 'admin', password: 'link' })).toBe(true);
    expect(UserAdminService.createNeedsStepUp({ role: 'biller', password: 'temp' })).toBe(true);
    expect(UserAdminService.createNeedsStepUp({ role: 'biller', password: 'link' })).toBe(false);
  });

  it('changing an e-mail needs step-up, pauses links made by matching the old address, and is recorded as an identity change', async () => {
    const admin = await createUser(db, { username: 'mail-admin', role: 'admin', twoFa: true, area: null });
    const u = await createUser(db, { username: 'mover', role: 'biller', area: null });
    await db.query(
      `INSERT INTO warden_slack_link (slack_team_id, slack_user_id, user_id, method, email) VALUES ('T_WARDEN', 'U_MOVER', $1, 'email', 'mover@example.com')`,
      [u.id],
    );
    await expect(service.update(await actorOf(admin), 'mover', { email: 'mover.new@example.com' })).rejects.toThrow(/6-digit code/);
    await service.update(await actorOf(admin), 'mover', { email: 'mover.new@example.com' }, await codes.of(admin));
    // The link stays (so its Slack user can be told) but no longer resolves: it recorded the old address.
    expect((await db.query<any>('SELECT email FROM warden_slack_link WHERE user_id = $1', [u.id])).rows).toEqual([{ email: 'mover@example.com' }]);
    const slackProfile = mapDirectory(new Map([['U_MOVER', member('U_MOVER', 'mover@example.com')]]));
    await expect(new IdentityService(db, slackProfile).resolve({ userId: 'U_MOVER', teamId: 'T_WARDEN' })).rejects.toThrow(/account’s e-mail has changed since/);
    const changes = (await db.query<any>('SELECT kind, changed_by FROM warden_identity_change WHERE user_id = $1', [u.id])).rows;
    expect(changes).toEqual([{ kind: 'email', changed_by: admin.id }]);
  });
});

describe('convergence (issue 12)', () => {
  it('the DM owed to the account of a temporary password is queued in the same transaction: a change never commits without it', async () => {
    const admin = await createUser(db, { username: 'conv-admin', role: 'admin', twoFa: true, area: null });
    const target = await createUser(db, { username: 'conv-target', role: 'biller', area: null });
    await db.query(`INSERT INTO warden_slack_link (slack_team_id, slack_user_id, user_id, method) VALUES ('T_WARDEN', 'U_CONV_TARGET', $1, 'explicit')`, [target.id]);
    const dms = () => db.query<any>(`SELECT status, message FROM warden_outbox WHERE kind = 'dm' AND channel = 'U_CONV_TARGET'`).then((r) => r.rows);
    // A failure after the change's statements: the whole change rolls back, the DM with it.
    const tx = db.tx.bind(db);
    (db as any).tx = async (fn: any) => tx(async (q: any) => {
      const out = await fn(q);
      throw Object.assign(new Error('killed before commit'), { out });
    });
    try {
      await expect(service.setTempPassword(await actorOf(admin), 'conv-target', await codes.of(admin))).rejects.toThrow('killed before commit');
    } finally {
      (db as any).tx = tx;
    }
    expect(await dms()).toEqual([]);
    await service.setTempPassword(await actorOf(admin), 'conv-target', await codes.of(admin));
    // Committed with the change: delivered by the outbox even if the process dies right after the commit.
    const queued = await dms();
    expect(queued).toHaveLength(1);
    expect(JSON.stringify(queued[0].message)).toContain('set a temporary password for your account conv-target');
    expect((await auditRows(db, 'password_change')).filter((a) => a.entity_id === target.id)).toHaveLength(1);
  });
});
