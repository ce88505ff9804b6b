import { z } from 'zod';
import type { Db, Queryable } from '../db/index.js';
import { roleSchema, usernameSchema, userRowSchema, type Role, type UserRow } from '../domain/user.js';
import { ConflictError, ForbiddenError, NotFoundError, UserError, ValidationErrors } from '../errors.js';
import { writeAudit } from './audit-writer.js';
import type { Logger } from '../logger.js';
import type { Store } from '../store/index.js';
import { md, mrkdwn, type Message } from '../ui.js';
import { recordIdentityChange, type IdentityChanges } from './identity-changes.js';
import { requireAdmin, type Actor, type IdentityService } from './identity.js';
import type { Mailer, MailMessage } from './mailer.js';
import type { Outbox } from './outbox.js';
import { secretHash, type PendingSendRow, type PendingSends, type SendOutcome } from './pending-sends.js';
import { maskEmail, maskIp } from './masking.js';
import { generateResetToken, generateTempPassword, hashPassword, RESET_TOKEN_TTL_MS } from './passwords.js';
import type { StepUpService } from './step-up.js';
import { pickUsernameMatch, usernameLookupSql, type FailedAttempt, type UserDirectory } from './users.js';

/**
 * Write side of user management: every account operation of the guide's "User Management"
 * section. Each public method checks that the actor is an admin, validates against the
 * guide's rules, verifies step-up where the operation is destructive or grants privilege,
 * and makes its change plus exactly one audit row in one transaction that re-reads and
 * locks what it changes (so double clicks, retries and two admins at once stay correct).
 *
 * Account status as the application's schema expresses it (there is no status column):
 * - active:   locked_until NULL or in the past;
 * - locked:   locked_until in the future (the automatic lockout is 30 minutes);
 * - disabled: locked until 9999-12-31, i.e. a lock that never runs out. The application's
 *             own lock check (locked_until > now) enforces it without any schema change.
 */

export const ACCOUNT_STATUSES = ['active', 'locked', 'disabled'] as const;
export type AccountStatus = (typeof ACCOUNT_STATUSES)[number];
export const DISABLED_UNTIL = new Date('9999-12-31T00:00:00Z');
/** Manual lock length: the guide's automatic lockout ("locks for 30 minutes"). */
export const LOCK_MINUTES = 30;

export function accountStatus(u: { locked_until: Date | null }, now = new Date()): AccountStatus {
  if (!u.locked_until) return 'active';
  if (u.locked_until.getUTCFullYear() >= 9999) return 'disabled';
  return u.locked_until.getTime() > now.getTime() ? 'locked' : 'active';
}

export type PasswordSetup = 'link' | 'temp';

export interface NewUserInput {
  username: string;
  email: string;
  role: string;
  area?: string | null;
  password: PasswordSetup;
}

export interface UserChanges {
  email?: string;
  role?: string;
  /** undefined: not given (kept for a dispatcher staying one, cleared otherwise); '' or null: none. */
  area?: string | null;
  status?: AccountStatus;
}

export interface CreateResult {
  user: UserRow;
  tempPassword?: string;
  /** Address the set-password link goes to (unmasked; mask before showing). */
  mailedTo?: string;
  /** Sends the set-password link (after the account's transaction committed); revoked if it fails. */
  send?: () => Promise<SendOutcome>;
  /** The new account is an admin without 2FA: a reminder notification was recorded. */
  twoFaReminder: boolean;
}

export interface UpdateResult {
  before: UserRow;
  user: UserRow;
  changed: string[];
  action: 'role_change' | 'user_updated';
  twoFaReminder: boolean;
}

export interface UserAdminDeps {
  db: Db;
  mailer: Mailer;
  stepUp: StepUpService;
  identity: IdentityService;
  identityChanges: IdentityChanges;
  users: UserDirectory;
  /** Rate limits of password resets. */
  store: Store;
  logger: Logger;
  /** Base of reset links; the token is appended as is. */
  resetUrl?: string;
  /** Links are e-mailed after the form was answered and the transaction committed (issue 12). */
  pendingSends: PendingSends;
  /** DMs about identity changes are queued in the change's transaction (a crash cannot lose them). */
  outbox: Outbox;
}

const emailSchema = z
  .string()
  .trim()
  .min(1, 'Enter an e-mail address.')
  .max(255, 'The e-mail address is longer than 255 characters.')
  .pipe(z.email('That is not a valid e-mail address.'));

const areaSchema = z
  .string()
  .trim()
  .min(2, 'A dispatch area has 2–64 characters.')
  .max(64, 'A dispatch area has 2–64 characters.')
  .regex(/^[\p{L}\p{N}][\p{L}\p{N} ._-]*$/u, 'A dispatch area is a name like lucknow or indore (letters, digits, spaces, . _ -).');

const slackUserSchema = z.string().regex(/^[UW][A-Z0-9_]{2,20}$/, 'Mention the Slack user, e.g. @bob.');

function firstIssue(result: { success: boolean; error?: z.ZodError }): string {
  return result.error?.issues[0]?.message ?? 'Invalid value.';
}

function notFound(username: string): NotFoundError {
  return new NotFoundError(`No user named \`${username}\`. Try \`/users list q:${username.slice(0, 3)}\`.`);
}

function toUser(row: Record<string, unknown>): UserRow {
  return userRowSchema.parse(row);
}

/** Password resets (links and temporary passwords) per hour: per account, and per acting admin. */
export const RESETS_PER_TARGET_HOUR = 3;
export const RESETS_PER_ADMIN_HOUR = 10;

/**
 * Where an identity change of an admin account is made instead of Slack: changing who an
 * admin is (e-mail, Slack link, re-enabling, password) must not be one admin's decision.
 */
export const ADMIN_IDENTITY_ELSEWHERE =
  'Admin accounts are not changed this way from Slack, so that no single admin can rewrite who another admin is. ' +
  'Do it in the application’s own admin dashboard (Admin → Users), or take the admin role away first (`/users role`), ' +
  'make the change, and have the account ask again with `/promotions request`, which a second admin approves after the identity cool-down.';

export class UserAdminService {
  constructor(private readonly deps: UserAdminDeps) {}

  private get db() {
    return this.deps.db;
  }

  /** Whether creating this account needs step-up: an admin account, or a temporary password shown in Slack. */
  static createNeedsStepUp(input: Pick<NewUserInput, 'role' | 'password'>): boolean {
    return input.role === 'admin' || input.password === 'temp';
  }

  /**
   * Whether a change needs step-up (docs/SECURITY.md, "Step-up"): role to or from admin,
   * any status change of an admin, an e-mail change (it changes who the account is), and
   * lifting a lock or re-enabling (as the lockout alert's Unlock does).
   */
  static changeNeedsStepUp(
    current: { role: string; email?: string; locked_until?: Date | null },
    next: { role: string; email?: string; status?: AccountStatus },
  ): boolean {
    if ((current.role === 'admin') !== (next.role === 'admin')) return true;
    const status = current.locked_until === undefined ? undefined : accountStatus({ locked_until: current.locked_until });
    if (current.role === 'admin' && next.status !== undefined && next.status !== status) return true;
    if (next.email !== undefined && current.email !== undefined && next.email !== current.email) return true;
    return status !== undefined && status !== 'active' && next.status === 'active';
  }

  // ---------------------------------------------------------------- create

  /** Every check of create except step-up, without changing anything (inline commands answer mistakes at once). */
  async checkCreate(actor: Actor, input: NewUserInput): Promise<void> {
    requireAdmin(actor, 'create users');
    await this.validateNewUser(this.db, input);
    if (input.password === 'link') this.requireMail('password');
  }

  async create(actor: Actor, input: NewUserInput, stepUpCode?: string | null): Promise<CreateResult> {
    requireAdmin(actor, 'create users');
    const valid = await this.validateNewUser(this.db, input);
    if (input.password === 'link') this.requireMail('password');
    if (UserAdminService.createNeedsStepUp({ role: valid.role, password: input.password })) await this.deps.stepUp.verify(actor, stepUpCode, 'user_create');

    const tempPassword = input.password === 'temp' ? generateTempPassword() : undefined;
    // For a link, the account gets a password nobody knows until the link is used.
    const passwordHash = await hashPassword(tempPassword ?? generateTempPassword(32));
    const token = input.password === 'link' ? generateResetToken() : null;

    // The account and the pending send are written together; the link is mailed after the commit.
    const created = await this.db.tx(async (q) => {
      await this.assertStillAdmin(q, actor);
      if (this.db.kind === 'pg') await q.query('SELECT pg_advisory_xact_lock($1)', [727_003]);
      await this.validateNewUser(q, input);
      const { rows } = await q.query(
        `INSERT INTO "user" (username, email, password_hash, role, dispatch_area, two_fa_enabled,
                             failed_login_attempts, password_reset_token, password_reset_token_expires, created_at)
         VALUES ($1, $2, $3, $4, $5, false, 0, $6, $7, now())
         RETURNING *`,
        [valid.username, valid.email, passwordHash, valid.role, valid.area, token, token ? new Date(Date.now() + RESET_TOKEN_TTL_MS) : null],
      );
      const row = rows[0] as Record<string, unknown>;
      const user = toUser(row);
      const twoFaReminder = valid.role === 'admin';
      if (twoFaReminder) await this.remindTwoFa(q, user.id);
      await writeAudit(q, actor, {
        action: 'user_created',
        entityType: 'user',
        entityId: user.id,
        after: row,
        details: { username: user.username, role: user.role, password_setup: input.password },
      });
      const sendId = token
        ? await this.deps.pendingSends.record(q, {
            kind: 'set_password_link',
            channel: 'email',
            targetUserId: user.id,
            refId: user.id,
            destination: maskEmail(user.email),
            secret: token,
            actor,
          })
        : undefined;
      return { user, tempPassword, mailedTo: token ? user.email : undefined, twoFaReminder, sendId };
    });
    if (!created.sendId || !token) return created;
    const { sendId, ...result } = created;
    const message: MailMessage = {
      to: result.user.email,
      subject: 'Set your password',
      text:
        `Hello ${result.user.username},\n\nAn administrator created an account for you (role: ${result.user.role}).\n` +
        `Set your password here (the link is valid for 1 hour):\n\n${this.deps.resetUrl}${token}\n\n` +
        'If the link has expired, ask an administrator for a new one.',
    };
    return { ...result, send: () => this.deps.pendingSends.deliver(sendId, () => this.deps.mailer.send(message)) };
  }

  private async validateNewUser(q: Queryable, input: NewUserInput) {
    const errors: Record<string, string> = {};
    const username = usernameSchema.safeParse((input.username ?? '').trim());
    if (!username.success) errors.username = firstIssue(username).replace(/^username/, 'The username');
    const email = emailSchema.safeParse(input.email ?? '');
    if (!email.success) errors.email = firstIssue(email);
    const role = roleSchema.safeParse(input.role);
    if (!role.success) errors.role = 'The role must be admin, biller or dispatcher.';
    let area: string | null = null;
    if (role.success) {
      try {
        area = await this.resolveArea(q, role.data, input.area, null);
      } catch (e) {
        if (e instanceof UserError) errors.area = e.message;
        else throw e;
      }
    }
    if (username.success) {
      const { rows } = await q.query<{ username: string }>('SELECT username FROM "user" WHERE lower(username) = lower($1)', [username.data]);
      if (rows[0]) {
        errors.username =
          rows[0].username === username.data
            ? `The username \`${username.data}\` is taken.`
            : `The username is taken: \`${rows[0].username}\` exists (usernames are unique regardless of case).`;
      }
    }
    if (email.success) {
      const { rows } = await q.query('SELECT 1 FROM "user" WHERE lower(email) = lower($1)', [email.data]);
      if (rows[0]) errors.email = 'Another account already uses this e-mail address (compared regardless of case).';
    }
    if (Object.keys(errors).length) throw new ValidationErrors(errors);
    return { username: username.data!, email: email.data!, role: role.data! as Role, area };
  }

  // ---------------------------------------------------------------- edit and role

  /** `/users edit` and `/users role`: e-mail, role, area and status in one audited change. */
  async update(actor: Actor, username: string, changes: UserChanges, stepUpCode?: string | null): Promise<UpdateResult> {
    requireAdmin(actor, 'change users');
    const first = await this.planUpdate(this.db, actor, username, changes, false);
    if (UserAdminService.changeNeedsStepUp(first.before, first.next)) {
      await this.deps.stepUp.verify(actor, stepUpCode, first.changed.includes('role') ? 'role_change' : 'user_update');
    }

    const result = await this.db.tx(async (q) => {
      await this.lockAdmins(q, actor);
      const plan = await this.planUpdate(q, actor, username, changes, true);
      if (UserAdminService.changeNeedsStepUp(plan.before, plan.next) && !UserAdminService.changeNeedsStepUp(first.before, first.next)) {
        // The account changed between the check and now in a way that needs step-up.
        throw new ConflictError(`\`${username}\` changed meanwhile. Start again.`);
      }
      const n = plan.next;
      const { rows } = await q.query(
        `UPDATE "user" SET email = $2, role = $3, dispatch_area = $4, locked_until = $5,
                failed_login_attempts = $6, last_failed_login = $7
          WHERE id = $1 RETURNING *`,
        [plan.row.id, n.email, n.role, n.area, n.lockedUntil, n.failedAttempts, n.lastFailed],
      );
      const after = rows[0] as Record<string, unknown>;
      const twoFaReminder = n.role === 'admin' && plan.before.role !== 'admin' && !plan.before.two_fa_enabled;
      if (twoFaReminder) await this.remindTwoFa(q, plan.row.id as number);
      // Links made by matching the old address stop working by themselves (they recorded it);
      // they stay so that the Slack users behind them can be told, and re-confirmed with /users link.
      if (plan.changed.includes('email')) {
        await recordIdentityChange(q, actor, plan.row.id as number, 'email', `${maskEmail(plan.before.email)} → ${maskEmail(n.email)}`);
        await this.queueDmLinked(q, plan.row.id as number, { text: mrkdwn`:warning: ${emailChangedText(actor, plan.before, n.email)}` });
      }
      if (plan.changed.includes('status') && accountStatus(plan.before) === 'disabled' && n.status === 'active') {
        await recordIdentityChange(q, actor, plan.row.id as number, 'reenabled', 'disabled → active');
      }
      const action = plan.changed.includes('role') ? ('role_change' as const) : ('user_updated' as const);
      await writeAudit(q, actor, {
        action,
        entityType: 'user',
        entityId: plan.row.id as number,
        before: plan.row,
        after,
        details: { username: plan.before.username, changed: plan.changed },
      });
      return { before: plan.before, user: toUser(after), changed: plan.changed, action, twoFaReminder };
    });
    this.deps.identity.forgetAccount(result.user.id);
    if (result.changed.includes('email')) {
      this.deps.identity.forget();
      // Not awaited: the form is answered without waiting for the mail API (issue 12); a failure is logged.
      void this.mailOldAddress(actor, result.before, result.user.email);
    }
    return result;
  }

  /** The old address is told of an e-mail change (the linked Slack users were DMed through the outbox). */
  private async mailOldAddress(actor: Actor, before: UserRow, newEmail: string): Promise<void> {
    if (!this.deps.mailer.configured) return;
    await this.deps.mailer
      .send({ to: before.email, subject: 'Your account e-mail was changed', text: `Hello ${before.username},\n\n${emailChangedText(actor, before, newEmail)}\n` })
      .catch((err) => this.deps.logger.warn({ err: { message: (err as Error).message }, user: before.id }, 'could not mail the old address about an e-mail change'));
  }

  /** Queues a DM to every Slack user linked to the account, in the caller's transaction (the outbox delivers it once). */
  private async queueDmLinked(q: Queryable, userId: number, message: Message, except?: string): Promise<void> {
    const { rows } = await q.query<{ slack_user_id: string }>('SELECT slack_user_id FROM warden_slack_link WHERE user_id = $1 ORDER BY created_at', [userId]);
    for (const l of rows) if (l.slack_user_id !== except) await this.deps.outbox.dm(q, l.slack_user_id, message);
  }

  /** `/users role USERNAME ROLE [area:A]`. */
  async changeRole(actor: Actor, username: string, role: string, area: string | null | undefined, stepUpCode?: string | null) {
    return this.update(actor, username, { role, area }, stepUpCode);
  }

  /** What an update would do, checked against every rule; throws field errors. */
  async planUpdate(q: Queryable, actor: Actor, username: string, changes: UserChanges, lock: boolean) {
    const row = await this.loadTarget(q, username, lock);
    const before = toUser(row);
    const errors: Record<string, string> = {};
    const changed: string[] = [];

    let email = before.email;
    if (changes.email !== undefined && changes.email.trim() !== before.email) {
      const parsed = emailSchema.safeParse(changes.email);
      if (!parsed.success) errors.email = firstIssue(parsed);
      else {
        const { rows } = await q.query('SELECT 1 FROM "user" WHERE lower(email) = lower($1) AND id <> $2', [parsed.data, before.id]);
        if (rows[0]) errors.email = 'Another account already uses this e-mail address (compared regardless of case).';
        else if (before.role === 'admin' && parsed.data !== before.email) errors.email = ADMIN_IDENTITY_ELSEWHERE;
        email = parsed.data;
        if (email !== before.email) changed.push('email');
      }
    }

    let role = before.role;
    if (changes.role !== undefined && changes.role !== before.role) {
      const parsed = roleSchema.safeParse(changes.role);
      if (!parsed.success) errors.role = 'The role must be admin, biller or dispatcher.';
      else if (before.id === actor.user.id) errors.role = 'You cannot change your own role. Ask another admin.';
      else {
        role = parsed.data;
        changed.push('role');
      }
    }

    let area = before.dispatch_area;
    if (!errors.role && roleSchema.safeParse(role).success) {
      try {
        area = await this.resolveArea(q, role as Role, changes.area, before);
      } catch (e) {
        if (e instanceof UserError) errors.area = e.message;
        else throw e;
      }
      if (!errors.area && (area ?? null) !== (before.dispatch_area ?? null)) changed.push('dispatch_area');
    }

    const currentStatus = accountStatus(before);
    let lockedUntil = before.locked_until;
    let failedAttempts = before.failed_login_attempts ?? 0;
    let lastFailed = before.last_failed_login;
    const status = changes.status ?? currentStatus;
    if (status !== currentStatus) {
      if (!ACCOUNT_STATUSES.includes(status)) errors.status = 'The status must be active, locked or disabled.';
      else if (before.id === actor.user.id && status !== 'active') errors.status = 'You cannot lock or disable your own account.';
      else if (before.role === 'admin' && currentStatus === 'disabled') errors.status = ADMIN_IDENTITY_ELSEWHERE;
      else {
        changed.push('status');
        if (status === 'active') {
          lockedUntil = null;
          failedAttempts = 0;
          lastFailed = null;
        } else if (status === 'locked') {
          lockedUntil = new Date(Date.now() + LOCK_MINUTES * 60_000);
        } else {
          lockedUntil = DISABLED_UNTIL;
        }
      }
    }
    if (Object.keys(errors).length) throw new ValidationErrors(errors);
    if (!changed.length) {
      throw new UserError(`Nothing to change: \`${before.username}\` already has these settings.`, changes.role !== undefined ? 'role' : undefined);
    }

    // Last-admin protection: some admin that can sign in must remain.
    const losesAdmin = before.role === 'admin' && (role !== 'admin' || status === 'locked' || status === 'disabled');
    if (losesAdmin) await this.assertOtherAdminRemains(q, before.id, lock, changed.includes('role') ? 'role' : 'status');

    return {
      row,
      before,
      changed,
      next: { email, role, area, status, lockedUntil, failedAttempts, lastFailed },
    };
  }

  /**
   * The guide's area rules: a dispatcher needs exactly one dispatch area; billers and
   * admins work in all areas, so giving them one is a mistake, and a role change to
   * biller or admin clears it. An area matching an existing one regardless of case is
   * stored with the existing spelling.
   */
  private async resolveArea(
    q: Queryable,
    role: Role,
    given: string | null | undefined,
    current: { role: string; dispatch_area: string | null } | null,
  ): Promise<string | null> {
    const text = typeof given === 'string' ? given.trim() : given;
    if (role !== 'dispatcher') {
      if (text) throw new UserError(`Only dispatchers have a dispatch area; a ${role} works in all areas. Leave the area out.`, 'area');
      return null;
    }
    if (!text) {
      if (text === undefined && current?.role === 'dispatcher' && current.dispatch_area) return current.dispatch_area;
      throw new UserError('A dispatcher needs a dispatch area: e.g. `lucknow` in the form, or `area:lucknow` in the command.', 'area');
    }
    const parsed = areaSchema.safeParse(text);
    if (!parsed.success) throw new UserError(firstIssue(parsed), 'area');
    const { rows } = await q.query<{ dispatch_area: string }>(
      'SELECT dispatch_area FROM "user" WHERE lower(dispatch_area) = lower($1) LIMIT 1',
      [parsed.data],
    );
    return rows[0]?.dispatch_area ?? parsed.data;
  }

  // ---------------------------------------------------------------- unlock

  /**
   * Clears the lockout (the guide's "Database Unlock"), returning the failed attempts that caused
   * it: the account's counted attempts since its last sign-in, not older ones of the same name.
   * Lifting a lockout needs step-up on every path (docs/SECURITY.md). `alsoInTx` runs in the
   * unlock's own transaction (e.g. marking the lockout cards unlocked), so that a crash can
   * never leave one step done without the other.
   */
  async unlock(
    actor: Actor,
    username: string,
    stepUpCode: string | null | undefined,
    opts: { alsoInTx?: (q: Queryable, user: UserRow) => Promise<void> } = {},
  ): Promise<{ before: UserRow; user: UserRow; attempts: FailedAttempt[] }> {
    requireAdmin(actor, 'unlock accounts');
    await this.checkUnlock(this.db, username, false);
    await this.deps.stepUp.verify(actor, stepUpCode, 'unlock_account');
    return this.unlockAfterStepUp(actor, username, opts);
  }

  /**
   * The unlock itself, for a caller that already verified the actor's step-up for this very
   * batch (the storm's "Unlock all": one code, many accounts). Everything else is checked again.
   */
  async unlockAfterStepUp(
    actor: Actor,
    username: string,
    opts: { alsoInTx?: (q: Queryable, user: UserRow) => Promise<void> } = {},
  ): Promise<{ before: UserRow; user: UserRow; attempts: FailedAttempt[] }> {
    requireAdmin(actor, 'unlock accounts');
    const done = await this.db.tx(async (q) => {
      await this.assertStillAdmin(q, actor);
      const { row, before, status } = await this.checkUnlock(q, username, true);
      const { rows } = await q.query(
        `UPDATE "user" SET failed_login_attempts = 0, locked_until = NULL, last_failed_login = NULL WHERE id = $1 RETURNING *`,
        [before.id],
      );
      await writeAudit(q, actor, {
        action: 'unlock_account',
        entityType: 'user',
        entityId: before.id,
        before: row,
        after: rows[0],
        details: { username, failed_attempts: before.failed_login_attempts ?? 0, was_locked: status === 'locked' },
      });
      await opts.alsoInTx?.(q, before);
      return { before, user: toUser(rows[0]) };
    });
    this.deps.identity.forgetAccount(done.before.id);
    const counted = Math.min(Math.max(done.before.failed_login_attempts ?? 0, 1), 10);
    const attempts = await this.deps.users.recentFailedLogins(username, counted, done.before.last_login);
    return { ...done, attempts };
  }

  /** Everything that refuses an unlock before a 2FA code is asked for. */
  async checkUnlock(q: Queryable, username: string, lock: boolean) {
    const row = await this.loadTarget(q, username, lock);
    const before = toUser(row);
    const status = accountStatus(before);
    if (status === 'disabled') {
      throw new ConflictError(`\`${username}\` is disabled, not locked out. Re-enable the account with \`/users edit ${username}\`.`);
    }
    if (status === 'active' && !before.failed_login_attempts && !before.last_failed_login) {
      throw new ConflictError(`\`${username}\` is not locked and has no failed attempts: nothing to unlock.`);
    }
    return { row, before, status };
  }

  // ---------------------------------------------------------------- passwords

  /**
   * What refuses a password reset before a code is asked for: admins (elsewhere), oneself,
   * and an account whose e-mail changed within the identity cool-down (the link would go
   * to an address nobody has vouched for yet).
   */
  async checkReset(actor: Actor, username: string, method: PasswordSetup): Promise<UserRow> {
    requireAdmin(actor, 'reset passwords');
    const target = toUser(await this.loadTarget(this.db, username, false));
    if (target.id === actor.user.id) {
      throw new ForbiddenError('Change your own password in the application, not with a temporary one.', 'method');
    }
    if (target.role === 'admin') throw new ForbiddenError(ADMIN_IDENTITY_ELSEWHERE, 'method');
    if (method === 'link') {
      this.requireMail('method');
      const recent = (await this.deps.identityChanges.recent([target.id])).find((c) => c.kind === 'email');
      if (recent) {
        throw new ForbiddenError(
          `The e-mail of \`${target.username}\` was changed ${md.date(recent.at)} by ${recent.changedByUsername ?? 'the application'}; ` +
            `reset links are not sent to an address changed within the last ${this.deps.identityChanges.cooldownText} (IDENTITY_COOLDOWN). ` +
            'Use a temporary password given over a trusted channel, or wait.',
          'method',
        );
      }
    }
    return target;
  }

  /** Counts a reset against the target's and the admin's hourly limits; refuses past either. */
  private async countReset(actor: Actor, target: UserRow): Promise<void> {
    const perTarget = await this.deps.store.incr(`reset:target:${target.id}`, 3600);
    const perAdmin = await this.deps.store.incr(`reset:admin:${actor.user.id}`, 3600);
    if (perTarget > RESETS_PER_TARGET_HOUR) {
      throw new UserError(`\`${target.username}\` already had ${RESETS_PER_TARGET_HOUR} password resets in the last hour. Nothing was sent; try again later.`, 'method');
    }
    if (perAdmin > RESETS_PER_ADMIN_HOUR) {
      throw new UserError(`You have sent ${RESETS_PER_ADMIN_HOUR} password resets in the last hour, the limit. Nothing was sent; try again later.`, 'method');
    }
  }

  /**
   * The guide's "Email Reset Link": a fresh token valid 1 hour, e-mailed to the user. The token,
   * its audit row and a pending send are committed first; `send` mails it afterwards (outside
   * any transaction) and revokes the token if the mail fails.
   */
  async sendResetLink(
    actor: Actor,
    username: string,
    stepUpCode: string | null | undefined,
  ): Promise<{ user: UserRow; mailedTo: string; expiresAt: Date; send: () => Promise<SendOutcome> }> {
    const target = await this.checkReset(actor, username, 'link');
    await this.deps.stepUp.verify(actor, stepUpCode, 'password_reset_link');
    await this.countReset(actor, target);
    const token = generateResetToken();
    const r = await this.db.tx(async (q) => {
      await this.assertStillAdmin(q, actor);
      const row = await this.loadTarget(q, username, true);
      const before = toUser(row);
      if (accountStatus(before) === 'disabled') {
        throw new ConflictError(`\`${username}\` is disabled. Re-enable the account with \`/users edit ${username}\` first.`, 'method');
      }
      if (before.role === 'admin') throw new ForbiddenError(ADMIN_IDENTITY_ELSEWHERE, 'method');
      const expiresAt = new Date(Date.now() + RESET_TOKEN_TTL_MS);
      const { rows } = await q.query(
        `UPDATE "user" SET password_reset_token = $2, password_reset_token_expires = $3 WHERE id = $1 RETURNING *`,
        [before.id, token, expiresAt],
      );
      await writeAudit(q, actor, {
        action: 'password_reset_request',
        entityType: 'user',
        entityId: before.id,
        before: row,
        after: rows[0],
        details: { username, method: 'link', expires_at: expiresAt.toISOString(), mailed_to: maskEmail(before.email) },
      });
      const sendId = await this.deps.pendingSends.record(q, {
        kind: 'reset_link',
        channel: 'email',
        targetUserId: before.id,
        refId: before.id,
        destination: maskEmail(before.email),
        secret: token,
        actor,
      });
      return { user: toUser(rows[0]), mailedTo: before.email, expiresAt, sendId };
    });
    const message: MailMessage = {
      to: r.mailedTo,
      subject: 'Reset your password',
      text:
        `Hello ${r.user.username},\n\nAn administrator started a password reset for your account.\n` +
        `Choose a new password here (the link is valid for 1 hour):\n\n${this.deps.resetUrl}${token}\n\n` +
        'If you did not expect this, tell your administrator.',
    };
    return {
      user: r.user,
      mailedTo: r.mailedTo,
      expiresAt: r.expiresAt,
      send: () => this.deps.pendingSends.deliver(r.sendId, () => this.deps.mailer.send(message)),
    };
  }

  /**
   * A set-password or reset link that was not sent (the mail API refused or timed out, or the
   * process died before it knew): the token is cleared if it is still the one of that send, and
   * `password_reset_link_unsent` is audited. Runs in the transaction that marks the send.
   */
  async revokeUnsentLink(q: Queryable, send: PendingSendRow, reason: string): Promise<string> {
    const { rows } = await q.query<Record<string, any>>('SELECT * FROM "user" WHERE id = $1 FOR UPDATE', [send.target_user_id]);
    const row = rows[0];
    if (!row) return 'The account no longer exists.';
    const still = typeof row.password_reset_token === 'string' && secretHash(row.password_reset_token) === send.secret_hash;
    const after = still
      ? (
          await q.query(
            'UPDATE "user" SET password_reset_token = NULL, password_reset_token_expires = NULL WHERE id = $1 RETURNING *',
            [row.id],
          )
        ).rows[0]
      : row;
    await writeAudit(q, null, {
      action: 'password_reset_link_unsent',
      entityType: 'user',
      entityId: row.id,
      before: row,
      after,
      details: {
        username: row.username,
        link: send.kind === 'set_password_link' ? 'set_password' : 'reset',
        mailed_to: send.destination,
        reason,
        token_revoked: still,
        requested_by: send.requested_by_username,
        send_id: send.id,
      },
    });
    const name = row.username as string;
    if (send.kind === 'set_password_link') {
      return row.role === 'admin'
        ? `The account \`${name}\` exists but has no password anyone knows: set one in the application’s admin dashboard.`
        : `The account \`${name}\` exists but has no password anyone knows: send a new link with \`/users reset-password ${name} link\`, or give a temporary password with \`/users reset-password ${name} temp\`.`;
    }
    return `The link was revoked and nothing else changed. Try \`/users reset-password ${name}\` again later, or use a temporary password.`;
  }

  /** The guide's "Set Temporary Password", with step-up. The password is returned once and never stored in clear. */
  async setTempPassword(actor: Actor, username: string, stepUpCode: string | null | undefined): Promise<{ user: UserRow; password: string }> {
    const target = await this.checkReset(actor, username, 'temp');
    await this.deps.stepUp.verify(actor, stepUpCode, 'password_temporary');
    await this.countReset(actor, target);
    const password = generateTempPassword();
    const hash = await hashPassword(password);
    const result = await this.db.tx(async (q) => {
      await this.assertStillAdmin(q, actor);
      const row = await this.loadTarget(q, username, true);
      if (row.role === 'admin') throw new ForbiddenError(ADMIN_IDENTITY_ELSEWHERE, 'method');
      const { rows } = await q.query(
        `UPDATE "user" SET password_hash = $2, password_reset_token = NULL, password_reset_token_expires = NULL
          WHERE id = $1 RETURNING *`,
        [row.id, hash],
      );
      await q.query(
        `INSERT INTO notification (user_id, title, message, type) VALUES ($1, $2, $3, 'warning')`,
        [row.id, 'Change your password', 'An administrator set a temporary password for your account. Change it right after you sign in.'],
      );
      await writeAudit(q, actor, {
        action: 'password_change',
        entityType: 'user',
        entityId: row.id as number,
        before: row,
        after: rows[0],
        details: { username, method: 'temporary_password' },
      });
      await this.queueDmLinked(q, row.id as number, {
        text: mrkdwn`:warning: The administrator ${actor.user.username} set a temporary password for your account ${row.username as string}. If you did not ask for this, tell your security team at once.`,
      });
      return { user: toUser(rows[0]), password };
    });
    return result;
  }

  // ---------------------------------------------------------------- delete

  /**
   * The guide's "Delete User": typed confirmation, optional GDPR anonymisation of the
   * user's e-mail and IPs in audit_log (entries stay), step-up. audit_log.user_id becomes
   * NULL through the foreign key; the user_deleted row keeps a before-snapshot.
   */
  async delete(
    actor: Actor,
    username: string,
    opts: { confirm: string; anonymise: boolean },
    stepUpCode: string | null | undefined,
  ): Promise<{ before: UserRow; anonymisedRows: number }> {
    requireAdmin(actor, 'delete users');
    await this.checkDelete(this.db, actor, username, opts.confirm, false);
    await this.deps.stepUp.verify(actor, stepUpCode, 'user_delete');
    const result = await this.db.tx(async (q) => {
      await this.lockAdmins(q, actor);
      const row = await this.checkDelete(q, actor, username, opts.confirm, true);
      const before = toUser(row);
      const anonymisedRows = opts.anonymise ? await this.anonymiseAudit(q, before) : 0;
      const snapshot = opts.anonymise ? { ...row, email: maskEmail(before.email) } : row;
      await writeAudit(q, actor, {
        action: 'user_deleted',
        entityType: 'user',
        entityId: before.id,
        before: snapshot,
        details: { username: before.username, role: before.role, anonymised_audit_rows: anonymisedRows, anonymised: opts.anonymise },
      });
      await q.query('DELETE FROM "user" WHERE id = $1', [before.id]);
      return { before, anonymisedRows };
    });
    this.deps.identity.forget();
    return result;
  }

  private async checkDelete(q: Queryable, actor: Actor, username: string, confirm: string, lock: boolean) {
    const row = await this.loadTarget(q, username, lock);
    if (row.id === actor.user.id) throw new ForbiddenError('You cannot delete your own account. Ask another admin.', 'confirm');
    if ((confirm ?? '').trim() !== row.username) {
      throw new ValidationErrors({ confirm: `Type the username exactly — ${row.username} — to confirm the deletion.` });
    }
    if (row.role === 'admin') await this.assertOtherAdminRemains(q, row.id as number, lock, 'confirm');
    return row;
  }

  /**
   * Masks the user's e-mail (everywhere in details and snapshots) and IP addresses
   * (of rows the user made or that carry no user, such as failed logins) in the audit
   * rows that belong to or are about the user. Returns how many rows changed.
   */
  private async anonymiseAudit(q: Queryable, user: UserRow): Promise<number> {
    const escaped = JSON.stringify(user.email).slice(1, -1);
    const emailRe = new RegExp(escaped.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gi');
    const maskedEmail = maskEmail(user.email);
    const ipv4 = /\b(\d{1,3})\.(\d{1,3})\.\d{1,3}\.\d{1,3}\b/g;
    let changed = 0;
    let after = 0;
    for (;;) {
      const { rows } = await q.query<{
        id: number;
        user_id: number | null;
        ip_address: string | null;
        details: unknown;
        before_state: unknown;
        after_state: unknown;
      }>(
        `SELECT id, user_id, ip_address, details, before_state, after_state FROM audit_log
          WHERE id > $4 AND (user_id = $1 OR (entity_type = 'user' AND entity_id = $1) OR details->>'username' = $2
                 OR details::text ILIKE $3)
          ORDER BY id LIMIT 500`,
        [user.id, user.username, `%${user.email.replace(/[\\%_]/g, (c) => `\\${c}`)}%`, after],
      );
      if (!rows.length) break;
      for (const r of rows) {
        after = r.id;
        const ownIp = r.user_id === user.id || r.user_id === null;
        const mask = (v: unknown) => {
          if (v === null || v === undefined) return null;
          let text = JSON.stringify(v).replace(emailRe, maskedEmail);
          if (ownIp) text = text.replace(ipv4, (_m, a, b) => `${a}.${b}.xxx.xxx`);
          return text;
        };
        const details = mask(r.details);
        const beforeState = mask(r.before_state);
        const afterState = mask(r.after_state);
        const ip = ownIp && r.ip_address ? maskIp(r.ip_address) : r.ip_address;
        const same =
          details === (r.details == null ? null : JSON.stringify(r.details)) &&
          beforeState === (r.before_state == null ? null : JSON.stringify(r.before_state)) &&
          afterState === (r.after_state == null ? null : JSON.stringify(r.after_state)) &&
          ip === r.ip_address;
        if (same) continue;
        await q.query(
          `UPDATE audit_log SET details = $2::jsonb, before_state = $3::jsonb, after_state = $4::jsonb, ip_address = $5 WHERE id = $1`,
          [r.id, details, beforeState, afterState, ip],
        );
        changed++;
      }
    }
    return changed;
  }

  // ---------------------------------------------------------------- link

  /**
   * `/users link USERNAME @slack-user`: an explicit link replacing any e-mail match, with
   * step-up; never for admin accounts (nor taking a Slack user away from one). The Slack user
   * linked, the Slack users already linked to the account and the account the Slack user
   * acted as before are all told.
   */
  async link(actor: Actor, username: string, slackUserId: string, stepUpCode: string | null | undefined) {
    requireAdmin(actor, 'link Slack accounts');
    await this.planLink(this.db, actor, username, slackUserId, false);
    await this.checkLinkProfile(actor, slackUserId);
    await this.deps.stepUp.verify(actor, stepUpCode, 'slack_link');
    const result = await this.db.tx(async (q) => {
      await this.assertStillAdmin(q, actor);
      const p = await this.planLink(q, actor, username, slackUserId, true);
      const beforeLinks = await this.linksOf(q, p.row.id as number);
      await q.query(
        `INSERT INTO warden_slack_link (slack_team_id, slack_user_id, user_id, method, linked_by)
         VALUES ($1, $2, $3, 'explicit', $4)
         ON CONFLICT (slack_team_id, slack_user_id)
         DO UPDATE SET user_id = EXCLUDED.user_id, method = 'explicit', linked_by = EXCLUDED.linked_by, created_at = now()`,
        [actor.slack.teamId, slackUserId, p.row.id, actor.user.id],
      );
      const afterLinks = await this.linksOf(q, p.row.id as number);
      await recordIdentityChange(q, actor, p.row.id as number, 'slack_link', `linked to Slack user ${slackUserId}`);
      if (p.previous && p.previous.user_id !== p.row.id) {
        await recordIdentityChange(q, actor, p.previous.user_id, 'slack_unlink', `Slack user ${slackUserId} now acts as ${p.row.username}`);
      }
      await writeAudit(q, actor, {
        action: 'user_updated',
        entityType: 'user',
        entityId: p.row.id as number,
        before: { ...p.row, slack_links: beforeLinks },
        after: { ...p.row, slack_links: afterLinks },
        details: {
          username,
          changed: ['slack_link'],
          linked_slack_user: slackUserId,
          replaced: p.previous ? { username: p.previous.username, method: p.previous.method } : null,
        },
      });
      // Both people are told in the link's own transaction: the outbox delivers after the commit, once.
      const who = actor.user.username;
      const name = md.bold(p.row.username as string);
      await this.deps.outbox.dm(q, slackUserId, {
        text: mrkdwn`:link: The administrator ${who} linked your Slack account to the application account ${name} (${p.row.role as string}): in Warden you now act as that account.${
          p.previous && p.previous.username !== p.row.username ? mrkdwn` Before, you acted as ${md.bold(p.previous.username)}.` : ''
        } If this is not right, tell your security team at once.`,
      });
      await this.queueDmLinked(
        q,
        p.row.id as number,
        { text: mrkdwn`:warning: The administrator ${who} linked another Slack account, ${md.user(slackUserId)}, to your application account ${name}: it can now act as you in Warden. If you did not ask for this, tell your security team at once.` },
        slackUserId,
      );
      return { user: toUser(p.row), previous: p.previous, otherLinks: beforeLinks };
    });
    this.deps.identity.forget({ teamId: actor.slack.teamId, userId: slackUserId });
    return result;
  }

  /** Only a Slack user of this workspace that is a person and not deactivated can be linked. */
  private async checkLinkProfile(actor: Actor, slackUserId: string): Promise<void> {
    const p = await this.deps.identity.profileOf(slackUserId);
    const why = !p
      ? 'Warden could not find that Slack user'
      : p.deleted
        ? 'that Slack account is deactivated'
        : p.isBot
          ? 'that is a bot'
          : p.teamId !== actor.slack.teamId
            ? 'that Slack user belongs to another workspace (Slack Connect)'
            : null;
    if (why) throw new UserError(mrkdwn`Cannot link ${md.user(slackUserId)}: ${why}.`, 'slack');
  }

  /** Who the Slack user is linked to now (for the confirmation modal), after checking the rules. */
  async planLink(q: Queryable, actor: Actor, username: string, slackUserId: string, lock: boolean) {
    const parsed = slackUserSchema.safeParse(slackUserId);
    if (!parsed.success) throw new UserError(firstIssue(parsed), 'slack');
    if (slackUserId === actor.slack.userId) {
      throw new ForbiddenError('You cannot link your own Slack account. Ask another admin.', 'slack');
    }
    const row = await this.loadTarget(q, username, lock);
    if (row.role === 'admin') throw new ForbiddenError(ADMIN_IDENTITY_ELSEWHERE, 'slack');
    const { rows } = await q.query<{ user_id: number; method: string; username: string; role: string }>(
      `SELECT l.user_id, l.method, u.username, u.role FROM warden_slack_link l JOIN "user" u ON u.id = l.user_id
        WHERE l.slack_team_id = $1 AND l.slack_user_id = $2${lock ? ' FOR UPDATE OF l' : ''}`,
      [actor.slack.teamId, slackUserId],
    );
    const previous = rows[0] ?? null;
    if (previous && previous.user_id !== row.id && previous.role === 'admin') {
      throw new ForbiddenError(mrkdwn`${md.user(slackUserId)} acts as the admin ${md.bold(previous.username)} now. ${ADMIN_IDENTITY_ELSEWHERE}`, 'slack');
    }
    if (previous && previous.user_id === row.id && previous.method === 'explicit') {
      throw new ConflictError(mrkdwn`${md.user(slackUserId)} is already linked to ${md.code(username)}.`, 'slack');
    }
    return { row, previous };
  }

  private async linksOf(q: Queryable, userId: number): Promise<string[]> {
    const { rows } = await q.query<{ slack_team_id: string; slack_user_id: string; method: string }>(
      'SELECT slack_team_id, slack_user_id, method FROM warden_slack_link WHERE user_id = $1 ORDER BY slack_team_id, slack_user_id',
      [userId],
    );
    return rows.map((r) => `${r.slack_team_id}:${r.slack_user_id} (${r.method})`);
  }

  // ---------------------------------------------------------------- shared

  private async loadTarget(q: Queryable, username: string, lock: boolean): Promise<Record<string, any>> {
    const { rows } = await q.query<Record<string, any>>(usernameLookupSql('*', lock), [username]);
    const row = pickUsernameMatch(rows, username);
    if (!row) throw notFound(username);
    return row;
  }

  /** The actor's role is read again inside the transaction: a demotion a moment ago counts. */
  private async assertStillAdmin(q: Queryable, actor: Actor): Promise<void> {
    const { rows } = await q.query<{ role: string; locked_until: Date | null }>('SELECT role, locked_until FROM "user" WHERE id = $1', [
      actor.user.id,
    ]);
    if (rows[0]?.role !== 'admin') throw new ForbiddenError('You are not an admin any more; nothing was changed.');
    if (accountStatus(rows[0]) === 'disabled') throw new ForbiddenError('Your account is disabled; nothing was changed.');
  }

  /**
   * For changes that can take the admin role away: locks every admin row, always in id
   * order and before the target row, so two admins acting on each other at once are
   * serialised instead of deadlocking, and the second one sees the first one's result.
   */
  private async lockAdmins(q: Queryable, actor: Actor): Promise<void> {
    const { rows } = await q.query<{ id: number; locked_until: Date | null }>(
      `SELECT id, locked_until FROM "user" WHERE role = 'admin' ORDER BY id FOR UPDATE`,
    );
    const me = rows.find((r) => r.id === actor.user.id);
    if (!me) throw new ForbiddenError('You are not an admin any more; nothing was changed.');
    if (accountStatus(me) === 'disabled') throw new ForbiddenError('Your account is disabled; nothing was changed.');
  }

  /** Some other admin that is not disabled must remain (the guide: never lose the last admin). */
  private async assertOtherAdminRemains(q: Queryable, targetId: number, lock: boolean, field: string): Promise<void> {
    const { rows } = await q.query<{ id: number; locked_until: Date | null }>(
      `SELECT id, locked_until FROM "user" WHERE role = 'admin' ORDER BY id${lock ? ' FOR UPDATE' : ''}`,
    );
    const others = rows.filter((r) => r.id !== targetId && accountStatus(r) !== 'disabled');
    if (!others.length) {
      throw new ConflictError('That would leave no admin who can sign in. Make another account admin first.', field);
    }
  }

  private async remindTwoFa(q: Queryable, userId: number): Promise<void> {
    await q.query(`INSERT INTO notification (user_id, title, message, type) VALUES ($1, $2, $3, 'warning')`, [
      userId,
      'Enable two-factor authentication',
      'Your account now has the admin role. Admin accounts require two-factor authentication: enable it under Profile → Enable Two-Factor Authentication.',
    ]);
  }

  private requireMail(field: 'password' | 'method'): void {
    // The hint matches the grammar of the command that got here: `create … password:temp`, `reset-password USERNAME temp`.
    const instead = `Use a temporary password instead (${field === 'password' ? '`password:temp`' : '`/users reset-password USERNAME temp`'}, or choose it in the form).`;
    if (!this.deps.mailer.configured) {
      throw new UserError(`E-mail is not configured (EMAIL_API_URL, EMAIL_API_KEY, EMAIL_FROM), so no link can be sent. ${instead}`, field);
    }
    if (!this.deps.resetUrl) {
      throw new UserError(`PASSWORD_RESET_URL is not configured, so no link can be sent. ${instead}`, field);
    }
  }

}

/** What the account's people are told when its e-mail changes (masked addresses only). */
function emailChangedText(actor: Actor, before: UserRow, newEmail: string): string {
  return (
    `The e-mail address of your account ${before.username} was changed by the administrator ${actor.user.username} ` +
    `from ${maskEmail(before.email)} to ${maskEmail(newEmail)}. If you did not ask for this, tell your security team at once.`
  );
}
