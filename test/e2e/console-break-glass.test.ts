import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { runConsole } from '../helpers/console-process.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, linkSlack, snapshot, totpOf, type TestUser } from '../helpers/fixtures.js';

/**
 * Break-glass: `npm run console -- --database-url …` against a real PostgreSQL, as an
 * operator would run it when Slack is down. Needs DATABASE_URL (CI, scripts/test-services.sh).
 */
describe.skipIf(!process.env.DATABASE_URL)('break-glass console on a real PostgreSQL', () => {
  let db: Db;
  let url: string;
  let cleanup: () => Promise<void>;
  let ops: TestUser;
  let dispatcher: TestUser;

  beforeAll(async () => {
    ({ db, url, cleanup } = (await createTestDb()) as { db: Db; url: string; cleanup: () => Promise<void> });
    ops = await createUser(db, { username: 'ops.admin', role: 'admin', twoFa: true });
    dispatcher = await createUser(db, { username: 'night.dispatch', twoFa: true });
    await createUser(db, { username: 'locked.out', lockedMinutes: 20, failed: 5 });
  }, 60_000);
  afterAll(async () => cleanup?.());

  // The console's own environment: no DATABASE_URL of the test runner leaks into it.
  const env = () => ({ LOG_LEVEL: 'error', REDIS_URL: process.env.REDIS_URL });

  it('refuses a wrong code, a non-admin and an unknown user before anything runs; changes nothing', async () => {
    const before = await snapshot(db, ['"user"', 'audit_log']);
    const wrong = await runConsole(['--database-url', url, '--as', 'ops.admin', '/users unlock locked.out'], env(), '000000\n');
    expect(wrong.code).toBe(2);
    expect(wrong.out).toContain('Refused: That 2FA code is not valid');
    const notAdmin = await runConsole(['--database-url', url, '/users unlock locked.out'], env(), `night.dispatch\n${await totpOf(dispatcher)}\n`);
    expect(notAdmin.code).toBe(2);
    expect(notAdmin.out).toContain('Refused: break-glass is for application admins with 2FA.');
    const nobody = await runConsole(['--database-url', url, '--as', 'no.such.user', '/users list'], env(), '123456\n');
    expect(nobody.code).toBe(2);
    expect(nobody.out).toContain('Refused: break-glass is for application admins with 2FA.');
    const after = await snapshot(db, ['"user"', 'audit_log']);
    expect(after['"user"']).toEqual(before['"user"']);
    // The only trace is the audited wrong code (step-up failures are audited since #10).
    expect(after.audit_log.slice(before.audit_log.length).map((r: any) => r.action)).toEqual(['stepup_failed']);
  }, 180_000);

  it('signs the operator in with their TOTP, runs the command, audits it as source console with the OS user, prints instead of posting', async () => {
    // A change without a form (forms need the interactive prompt): dispatcher → biller needs no step-up.
    const r = await runConsole(['--database-url', url, '/users role night.dispatch biller', 'as U_ADMIN2'], env(), `ops.admin\n${await totpOf(ops)}\n`);
    expect(r.out).toContain('Signed in as ops.admin');
    expect(r.out).toContain('Updated night.dispatch: role dispatcher → biller');
    // `as` is refused in break-glass: the operator acts as themselves only.
    expect(r.out).toContain('Break-glass: you act as ops.admin only.');
    expect(r.code).toBe(1);
    const [row] = await auditRows(db, 'role_change');
    expect(row.user_id).toBe(ops.id);
    expect(row.details).toMatchObject({ source: 'console', os_user: os.userInfo().username, actor: 'ops.admin' });
    // No demo data in a real database, and no Slack link written for the console's stand-in Slack user.
    const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "user"`);
    expect(rows[0].n).toBe(3);
    const links = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM warden_slack_link`);
    expect(links.rows[0].n).toBe(0);
  }, 180_000);

  it('prints what it queues for Slack (alerts, DMs) as it appears, and leaves every row queued for the deployed Warden', async () => {
    const glass = await createUser(db, { username: 'glass.admin', role: 'admin', twoFa: true });
    const requester = await createUser(db, { username: 'req.biller', role: 'biller' });
    await linkSlack(db, 'U_REQ', requester.id);
    const other = await createUser(db, { username: 'req.other', role: 'biller' });
    const ids: number[] = [];
    for (const u of [requester, other]) {
      const { rows } = await db.query<{ id: number }>(
        `INSERT INTO promotion_request (user_id, reason, status) VALUES ($1, 'I run the month-end billing', 'pending') RETURNING id`,
        [u.id],
      );
      ids.push(rows[0].id);
    }
    // An alert the deployed Warden could not post yet (Slack is down): it must stay for it.
    await db.query(
      `INSERT INTO warden_outbox (kind, lane, channel, message) VALUES ('post', 'C_ALERTS', 'C_ALERTS', '{"text":"database slow since 02:00"}')`,
    );
    const { rows: before } = await db.query<{ max: number }>(`SELECT max(id)::int AS max FROM warden_outbox`);
    const stdin = [
      'glass.admin',
      await totpOf(glass),
      `/promotions show ${ids[0]}`,
      'click Reject',
      'Not this quarter, ask again in March',
      `/promotions show ${ids[1]}`,
      'click Approve',
      '', // notes
      '000000',
      '000001',
      '000002',
      'cancel',
      'quit',
    ].join('\n');
    const r = await runConsole(['--database-url', url], env(), `${stdin}\n`);
    expect(r.out).toContain('1 message already waits in the outbox for Slack');
    expect(r.out).not.toContain('database slow since 02:00');
    // The decision DM and the security alert about three wrong codes, printed, labelled, not sent.
    expect(r.out).toMatch(/📮 queued for Slack, not sent from here — DM to @U_REQ[^\n]*\n[\s\S]*rejected[\s\S]*Not this quarter, ask again in March/);
    expect(r.out).toMatch(/📮 queued for Slack, not sent from here — #C_SECURITY[^\n]*\n[\s\S]*glass\.admin/);
    const { rows: queued } = await db.query<{ kind: string; channel: string; status: string }>(
      `SELECT kind, channel, status FROM warden_outbox WHERE id > $1 ORDER BY id`,
      [before[0].max],
    );
    expect(queued).toEqual([
      { kind: 'dm', channel: 'U_REQ', status: 'pending' },
      { kind: 'post', channel: 'C_SECURITY', status: 'pending' },
    ]);
    // Each printed once.
    expect(r.out.split('queued for Slack, not sent from here —').length - 1).toBe(2);
    const { rows: all } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM warden_outbox WHERE status <> 'pending'`);
    expect(all[0].n).toBe(0);
  }, 180_000);
});
