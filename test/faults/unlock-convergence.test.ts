import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alertsInteractions } from '../../commands/alerts.js';
import { adminViews } from '../../commands/users-admin.js';
import type { Db } from '../../src/db/index.js';
import type { Services } from '../../src/services/index.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import { MemoryStore } from '../../src/store/index.js';
import { createTestDb } from '../helpers/db.js';
import { createUser, linkSlack, totpOf, type TestUser } from '../helpers/fixtures.js';
import { realServers, servicesOn } from './support.js';

/**
 * Issue 12: "Unlock from a lockout card uses two transactions; a crash between them leaves the
 * card 'locked' forever and a second Unlock says 'nothing to unlock'."
 */
describe.runIf(realServers)('the lockout card\'s Unlock converges', () => {
  let db: Db;
  let cleanup: () => Promise<void>;
  let fake: FakeSlack;
  let services: Services;
  beforeAll(async () => {
    ({ db, cleanup } = await createTestDb());
    fake = await new FakeSlack().start();
    services = servicesOn(db, new MemoryStore(), fake);
  });
  afterAll(async () => {
    await fake?.stop();
    await cleanup?.();
  });

  let alice: TestUser;
  let bob: TestUser;
  beforeAll(async () => {
    alice = await createUser(db, { username: 'conv.alice', role: 'admin', twoFa: true, area: null });
    bob = await createUser(db, { username: 'conv.bob', role: 'admin', twoFa: true, area: null });
    await linkSlack(db, 'U_CONV_ALICE', alice.id);
    await linkSlack(db, 'U_CONV_BOB', bob.id);
  });

  it('the process dying between unlocking the account and marking the card leaves neither done; Unlock again finishes both', async () => {
    const larry = await createUser(db, { username: 'conv.larry', role: 'biller', area: null, lockedMinutes: 30, failed: 5 });
    // The card of the lockout (its outbox row is not needed: a pruned card is handled).
    const { rows } = await db.query<{ id: number }>(
      `INSERT INTO warden_lockout_alert (user_id, username, locked_at, locked_until, post_id)
       VALUES ($1, 'conv.larry', now(), now() + interval '30 minutes', 0) RETURNING id`,
      [larry.id],
    );
    const metadata = JSON.stringify({ a: rows[0].id });
    const submit = alertsInteractions.views!['alerts:unlock'];
    const ctxOf = async (slackUser: string) => ({
      actor: await services.identity.resolve({ userId: slackUser, teamId: 'T_WARDEN' }),
      services,
    });
    const state = async () => ({
      locked: (await db.query<any>(`SELECT locked_until FROM "user" WHERE id = $1`, [larry.id])).rows[0].locked_until !== null,
      card: (await db.query<any>(`SELECT unlocked_by FROM warden_lockout_alert WHERE id = $1`, [rows[0].id])).rows[0].unlocked_by,
    });

    // The process "dies" right after the account step.
    const real = services.lockouts.markUnlocked.bind(services.lockouts);
    services.lockouts.markUnlocked = async () => {
      throw new Error('killed here');
    };
    await expect(submit(await ctxOf('U_CONV_BOB'), { totp: await totpOf(bob) }, metadata)).rejects.toThrow('killed here');
    services.lockouts.markUnlocked = real;
    expect(await state()).toEqual({ locked: true, card: null });

    // Unlock again (another admin): both steps done, the card says who.
    const r = await submit(await ctxOf('U_CONV_ALICE'), { totp: await totpOf(alice) }, metadata);
    expect(r.kind).toBe('close');
    expect(await state()).toEqual({ locked: false, card: 'conv.alice' });
  });
  it('`/users unlock`: a failure while marking the lockout cards leaves the account locked too; unlocking again does both', async () => {
    const lena = await createUser(db, { username: 'conv.lena', role: 'biller', area: null, lockedMinutes: 30, failed: 5 });
    const { rows } = await db.query<{ id: number }>(
      `INSERT INTO warden_lockout_alert (user_id, username, locked_at, locked_until, post_id)
       VALUES ($1, 'conv.lena', now(), now() + interval '30 minutes', 0) RETURNING id`,
      [lena.id],
    );
    const submit = adminViews['users:unlock'];
    const metadata = JSON.stringify({ u: 'conv.lena' });
    const ctxOf = async (slackUser: string) => ({ actor: await services.identity.resolve({ userId: slackUser, teamId: 'T_WARDEN' }), services });
    const state = async () => ({
      locked: (await db.query<any>(`SELECT locked_until FROM "user" WHERE id = $1`, [lena.id])).rows[0].locked_until !== null,
      card: (await db.query<any>(`SELECT unlocked_by FROM warden_lockout_alert WHERE id = $1`, [rows[0].id])).rows[0].unlocked_by,
      audited: (await db.query<any>(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'unlock_account' AND entity_id = $1`, [lena.id])).rows[0].n,
    });
    const real = services.lockouts.markUserUnlocked.bind(services.lockouts);
    services.lockouts.markUserUnlocked = async () => {
      throw new Error('killed here');
    };
    try {
      await expect(submit(await ctxOf('U_CONV_ALICE'), { totp: await totpOf(alice, 30) }, metadata)).rejects.toThrow('killed here');
    } finally {
      services.lockouts.markUserUnlocked = real;
    }
    // One transaction: neither step (nor its audit row) survived.
    expect(await state()).toEqual({ locked: true, card: null, audited: 0 });
    const r = await submit(await ctxOf('U_CONV_BOB'), { totp: await totpOf(bob, 30) }, metadata);
    expect(r.kind).toBe('close');
    expect(await state()).toEqual({ locked: false, card: 'conv.bob', audited: 1 });
  });
});
