import { generate, generateSecret } from 'otplib';
import type { Db } from '../../src/db/index.js';

export interface TestUser {
  id: number;
  username: string;
  email: string;
  role: string;
  totpSecret: string | null;
}

/** Inserts an application account. `twoFa: true` gives it a TOTP secret for step-up. */
export async function createUser(
  db: Db,
  u: { username: string; email?: string; role?: string; area?: string | null; twoFa?: boolean; lockedMinutes?: number; failed?: number },
): Promise<TestUser> {
  const role = u.role ?? 'dispatcher';
  const area = u.area === undefined ? (role === 'dispatcher' ? 'lucknow' : null) : u.area;
  const secret = u.twoFa ? generateSecret() : null;
  const email = u.email ?? `${u.username}@example.com`;
  const { rows } = await db.query<{ id: number }>(
    `INSERT INTO "user" (username, email, password_hash, role, dispatch_area, two_fa_enabled, totp_secret,
                         failed_login_attempts, locked_until, last_failed_login, created_at)
     VALUES ($1, $2, 'pbkdf2:sha256:600000$x$y', $3, $4, $5, $6, $7,
             CASE WHEN $8::int IS NULL THEN NULL ELSE now() + make_interval(mins => $8::int) END,
             CASE WHEN $7::int > 0 THEN now() - interval '1 minute' END, now() - interval '90 days')
     RETURNING id`,
    [u.username, email, role, area, !!u.twoFa, secret, u.failed ?? 0, u.lockedMinutes ?? null],
  );
  return { id: rows[0].id, username: u.username, email, role, totpSecret: secret };
}

/** The current TOTP code of a test user (as their authenticator app would show it). */
export async function totpOf(user: TestUser, offsetSeconds = 0): Promise<string> {
  if (!user.totpSecret) throw new Error(`${user.username} has no 2FA`);
  return generate({ secret: user.totpSecret, epoch: Math.floor(Date.now() / 1000) + offsetSeconds });
}

/** Links a Slack user id to an account explicitly, as `/users link` would. */
export async function linkSlack(db: Db, slackUserId: string, userId: number, teamId = 'T_WARDEN'): Promise<void> {
  await db.query(
    `INSERT INTO warden_slack_link (slack_team_id, slack_user_id, user_id, method) VALUES ($1, $2, $3, 'explicit')
     ON CONFLICT (slack_team_id, slack_user_id) DO UPDATE SET user_id = EXCLUDED.user_id`,
    [teamId, slackUserId, userId],
  );
}

/** Rows of audit_log for assertions, oldest first. */
export async function auditRows(db: Db, action?: string) {
  const { rows } = await db.query<any>(
    `SELECT * FROM audit_log ${action ? 'WHERE action = $1' : ''} ORDER BY id`,
    action ? [action] : [],
  );
  return rows;
}

/** A snapshot of tables for "nothing changed" assertions. */
export async function snapshot(db: Db, tables = ['"user"', 'audit_log', 'promotion_request', 'notification']) {
  const out: Record<string, unknown[]> = {};
  for (const t of tables) out[t] = (await db.query(`SELECT * FROM ${t} ORDER BY id`)).rows;
  return out;
}

/**
 * A snapshot without the `stepup_failed` audit rows that refused 2FA codes leave behind:
 * those rows are the trace a refusal must leave (issue 10), not a change it made.
 */
export function withoutStepUpFailures<T extends Record<string, unknown[]>>(s: T): T {
  return { ...s, audit_log: (s.audit_log as any[] | undefined)?.filter((r) => r.action !== 'stepup_failed') };
}
