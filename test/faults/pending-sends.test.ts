import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import type { Actor } from '../../src/services/identity.js';
import type { Services } from '../../src/services/index.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import { MemoryStore } from '../../src/store/index.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, linkSlack, totpOf, type TestUser } from '../helpers/fixtures.js';
import { MailServer } from '../helpers/mail-server.js';
import { servicesOn } from './support.js';

/**
 * Issue 12, ack first: "A crash between steps must be resumable or visibly reported." The rows
 * of a form that e-mails a secret are committed before the send; if the process dies there
 * (here: the send is never run, as after a kill -9 right after the commit), the pending-sends
 * job finds the send once its lease ran out, revokes the secret, audits it and DMs the admin
 * who asked. A process that stalled past its lease and answers late cannot undo that.
 * Runs on PostgreSQL and on PGlite.
 */
describe('a send abandoned between its commit and its e-mail is reported, its secret revoked', () => {
  let db: Db;
  let cleanup: () => Promise<void>;
  let fake: FakeSlack;
  let mail: MailServer;
  let services: Services;
  let admin: TestUser;
  let actor: Actor;
  const SLACK_ADMIN = 'U_PS_ADMIN';

  beforeAll(async () => {
    ({ db, cleanup } = await createTestDb());
    fake = await new FakeSlack().start();
    mail = await new MailServer().start();
    services = servicesOn(db, new MemoryStore(), fake, {
      ...mail.env(),
      APPROVALS_CHANNEL: 'C_APPROVALS',
      PASSWORD_RESET_URL: 'https://app.example.com/reset?token=',
      OUTBOX_PACE_MS: '0',
    });
    admin = await createUser(db, { username: 'ps.admin', role: 'admin', twoFa: true, area: null });
    await linkSlack(db, SLACK_ADMIN, admin.id);
    actor = await services.identity.resolve({ userId: SLACK_ADMIN, teamId: 'T_WARDEN' });
  });
  afterAll(async () => {
    await services?.outbox.close();
    await mail?.stop();
    await fake?.stop();
    await cleanup?.();
  });

  /** The lease of every pending send runs out (as it would a minute after the process died). */
  const expireLeases = () => db.query(`UPDATE warden_pending_send SET lease_until = now() - interval '1 second' WHERE status = 'pending'`);
  const dmsToAdmin = async () => {
    await services.outbox.deliverDue();
    return fake.calls.filter((c) => c.method === 'chat.postMessage' && c.args.channel === `D_${SLACK_ADMIN}`).map((c) => String(c.args.text));
  };

  it('a 2FA recovery whose code was never sent: code revoked, check "not sent", audited, the admin told by DM', async () => {
    const bob = await createUser(db, { username: 'ps.bob', role: 'biller', twoFa: true, area: null });
    const opened = await services.twofaRecovery.open(actor, {
      username: 'ps.bob',
      manualChecks: ['phone_callback'],
      evidence: 'Called bob back on the number on file.',
      wardenChecks: ['email'],
      totp: await totpOf(admin),
    });
    // The process dies here: opened.send() never runs. Nothing is revoked while the lease runs.
    expect(await services.pendingSends.sweep()).toBe(0);
    await expireLeases();
    expect(await services.pendingSends.sweep()).toBe(1);

    const rec = await services.twofaRecovery.get(opened.recovery.id);
    expect(rec.status).toBe('verifying');
    expect(rec.checks.email.result).toBe('unsent');
    const codes = (await db.query<any>('SELECT revoked_at FROM warden_2fa_code WHERE recovery_id = $1', [rec.id])).rows;
    expect(codes).toHaveLength(1);
    expect(codes[0].revoked_at).not.toBeNull();
    const sends = (await db.query<any>('SELECT status, error FROM warden_pending_send WHERE target_user_id = $1', [bob.id])).rows;
    expect(sends).toHaveLength(1);
    expect(sends[0].status).toBe('interrupted');
    const audit = (await auditRows(db, '2fa_recovery_code_unsent')).filter((a) => a.entity_id === rec.id);
    expect(audit).toHaveLength(1);
    expect(audit[0].details).toMatchObject({ check: 'email', requested_by: 'ps.admin' });
    const dms = await dmsToAdmin();
    expect(dms.some((t) => /2FA recovery e-mail code to .*Warden stopped before it could confirm this send.*revoked.*`\/2fa recover ps\.bob`/s.test(t))).toBe(true);
    // The sweep does it once.
    expect(await services.pendingSends.sweep()).toBe(0);
    expect(mail.received).toHaveLength(0);

    // The stalled process wakes up and sends after all: its code no longer works, and it says so.
    const late = await opened.send();
    expect(late.unsent.email?.reason).toMatch(/gave up on this send/);
    const code = mail.lastCodeTo('ps.bob@example.com')!;
    const out = await services.twofaRecovery.verifyCodes(actor, rec.id, { email: code });
    expect(out.passed).toEqual([]);
    expect(out.errors.email).toMatch(/No e-mail code is active/);
  });

  it('a reset link never mailed: the token is cleared (only if still the same), audited, the admin told by DM', async () => {
    const ray = await createUser(db, { username: 'ps.ray', role: 'biller', area: null });
    await services.userAdmin.sendResetLink(actor, 'ps.ray', await totpOf(admin, 30));
    // The process dies before mailing.
    expect((await db.query<any>('SELECT password_reset_token FROM "user" WHERE id = $1', [ray.id])).rows[0].password_reset_token).toBeTruthy();
    await expireLeases();
    expect(await services.pendingSends.sweep()).toBe(1);
    expect((await db.query<any>('SELECT password_reset_token, password_reset_token_expires FROM "user" WHERE id = $1', [ray.id])).rows[0]).toEqual({
      password_reset_token: null,
      password_reset_token_expires: null,
    });
    const audit = (await auditRows(db, 'password_reset_link_unsent')).filter((a) => a.entity_id === ray.id);
    expect(audit).toHaveLength(1);
    expect(audit[0].details).toMatchObject({ link: 'reset', token_revoked: true, requested_by: 'ps.admin' });
    expect((await dmsToAdmin()).some((t) => /password reset link to .*Warden stopped before.*`\/users reset-password ps\.ray`/s.test(t))).toBe(true);
  });

  it('an account created with a link that was never mailed: the account stays, its link is revoked, audited, reported', async () => {
    const r = await services.userAdmin.create(actor, { username: 'ps.newbie', email: 'newbie@example.com', role: 'biller', password: 'link' });
    expect(r.send).toBeDefined();
    // The process dies before r.send() runs.
    await expireLeases();
    expect(await services.pendingSends.sweep()).toBe(1);
    const row = (await db.query<any>('SELECT id, password_reset_token FROM "user" WHERE username = $1', ['ps.newbie'])).rows[0];
    expect(row.password_reset_token).toBeNull();
    expect((await auditRows(db)).filter((a) => a.entity_id === row.id).map((a) => a.action)).toEqual(['user_created', 'password_reset_link_unsent']);
    expect((await dmsToAdmin()).some((t) => /set-password link of a new account.*`\/users reset-password ps\.newbie link`/s.test(t))).toBe(true);
  });
});
