import { z } from 'zod';

/** The application's roles (seed 001, "Create New User"). */
export const ROLES = ['admin', 'biller', 'dispatcher'] as const;
export type Role = (typeof ROLES)[number];
/** Case-insensitive, like areas: `role:Admin` is admin. */
export const roleSchema = z.preprocess(
  (v) => (typeof v === 'string' ? v.trim().toLowerCase() : v),
  z.enum(ROLES, { error: () => `role must be one of ${ROLES.join(', ')}` }),
);

/** Username rule of the guide: unique, 3–64 characters; no spaces so it can be typed in commands. */
export const usernameSchema = z
  .string()
  .min(3, 'username must be 3–64 characters')
  .max(64, 'username must be 3–64 characters')
  .regex(/^[A-Za-z0-9._@-]+$/, 'username may contain letters, digits and . _ @ - only (no spaces)');

/** A row of "user" as Warden reads it. Secrets are read only where a service needs them. */
export const userRowSchema = z.object({
  id: z.number(),
  username: z.string(),
  email: z.string(),
  role: z.string(),
  dispatch_area: z.string().nullable(),
  two_fa_enabled: z.boolean().nullable(),
  failed_login_attempts: z.number().nullable(),
  locked_until: z.date().nullable(),
  last_failed_login: z.date().nullable(),
  created_at: z.date().nullable(),
  last_login: z.date().nullable(),
});
export type UserRow = z.infer<typeof userRowSchema>;

/** Columns matching userRowSchema, for SELECTs. */
export const USER_COLUMNS =
  'id, username, email, role, dispatch_area, two_fa_enabled, failed_login_attempts, locked_until, last_failed_login, created_at, last_login';

export function isLocked(u: Pick<UserRow, 'locked_until'>, now = new Date()): boolean {
  return !!u.locked_until && u.locked_until.getTime() > now.getTime();
}

/** Fields that never go into audit snapshots, messages or logs. */
export const SECRET_USER_FIELDS = ['password_hash', 'totp_secret', 'password_reset_token', 'password_reset_token_expires'] as const;

/** A snapshot of a user row safe to store in audit_log.before_state / after_state. */
export function userSnapshot(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    if ((SECRET_USER_FIELDS as readonly string[]).includes(k)) continue;
    out[k] = v instanceof Date ? v.toISOString() : v;
  }
  return out;
}
