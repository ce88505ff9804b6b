import crypto from 'node:crypto';
import { z } from 'zod';
import type { Queryable } from '../db/index.js';
import { USER_COLUMNS, userRowSchema, type UserRow } from '../domain/user.js';
import { ConflictError, ForbiddenError, NotFoundError, UserError, ValidationErrors } from '../errors.js';
import { md, type Message } from '../ui.js';
import { describeDecided, describeOpen, recoveryCodeDm, recoveryDoneDm, renderRecoveryCard } from '../slack/cards/twofa-recovery.js';
import { writeAudit } from './audit-writer.js';
import { requireAdmin, type Actor } from './identity.js';
import type { IdentityChange } from './identity-changes.js';
import type { Services } from './index.js';
import { maskEmail, maskText } from './masking.js';
import type { PendingSendRow, SendOutcome } from './pending-sends.js';

/**
 * 2FA recovery (issue #5): the guide's "2FA Lockout Recovery" without the raw UPDATE.
 *
 *   verifying ──(enough Warden-run checks passed)──▶ pending ──(second admin + step-up)──▶ approved
 *       │                                              │
 *       └──────────── cancelled / rejected / expired ◀─┘
 *
 * The initiating admin records the checks they performed (call-back, in person, manager…)
 * and their evidence, and chooses Warden-run checks: a one-time code sent to the e-mail on
 * record and/or by Slack DM, which the user reads back to the admin. Codes are 8 digits,
 * stored only as a salted scrypt hash, valid 10 minutes, 5 attempts, sends rate limited.
 * Once RECOVERY_MIN_WARDEN_CHECKS checks passed, a card goes to APPROVALS_CHANNEL; a
 * second admin (never the initiator, never the target) approves with their TOTP, and in one
 * transaction the recovery is marked approved, 2FA is disabled and `2fa_disabled` audited.
 * Every state change writes an audit row in the transaction that makes it.
 */

export const MANUAL_CHECKS = {
  phone_callback: 'Phone call-back to the number on file',
  in_person_id: 'In person, photo ID checked',
  manager: 'Confirmed by their manager',
  other: 'Other (described in the evidence)',
} as const;
export type ManualCheck = keyof typeof MANUAL_CHECKS;

export const WARDEN_CHECKS = ['email', 'slack'] as const;
export type WardenCheck = (typeof WARDEN_CHECKS)[number];
export const CHECK_LABELS: Record<WardenCheck, string> = { email: 'E-mail code', slack: 'Slack DM code' };

/** Modal field ids the service names in its validation errors (the command builds the modals). */
export const RECOVERY_FIELDS = {
  manualChecks: 'manual_checks',
  evidence: 'evidence',
  wardenChecks: 'warden_checks',
  code: (c: WardenCheck) => `${c}_code`,
  reason: 'reason',
} as const;

export const CODE_DIGITS = 8;
export const CODE_TTL_SECONDS = 10 * 60;
export const CODE_MAX_ATTEMPTS = 5;
/** Codes sent for one user in an hour, across recoveries and channels. */
export const CODE_SENDS_PER_HOUR = 6;
/** Codes one admin may have sent in an hour, across every account. */
export const CODE_SENDS_PER_ADMIN_HOUR = 10;
/** A Slack link must be older than this before a code may be sent through it. */
export const SLACK_LINK_MIN_AGE_MS = 24 * 3600 * 1000;

const OPEN_STATUSES = ['verifying', 'pending'] as const;
export type RecoveryStatus = 'verifying' | 'pending' | 'approved' | 'rejected' | 'expired' | 'cancelled';

const checkStateSchema = z.object({
  // unsent: the code's e-mail or DM failed (or its process died) and the code was revoked.
  result: z.enum(['sent', 'passed', 'failed', 'locked', 'unsent']),
  sends: z.number().default(1),
  attempts: z.number().default(0),
  sent_at: z.string().optional(),
  /** Why the last code did not go out (result unsent). */
  error: z.string().optional(),
  passed_at: z.string().optional(),
  via: z.string().optional(),
});
export type CheckState = z.infer<typeof checkStateSchema>;

const recoveryRowSchema = z.object({
  id: z.number(),
  target_user_id: z.number(),
  target_username: z.string(),
  initiator_id: z.number().nullable(),
  initiator_username: z.string(),
  initiator_slack: z.string().nullable(),
  status: z.enum(['verifying', 'pending', 'approved', 'rejected', 'expired', 'cancelled']),
  manual_checks: z.array(z.string()),
  evidence: z.string(),
  checks: z.record(z.string(), checkStateSchema),
  created_at: z.date(),
  expires_at: z.date(),
  submitted_at: z.date().nullable(),
  decided_at: z.date().nullable(),
  decided_by: z.number().nullable(),
  decided_by_username: z.string().nullable(),
  rejection_reason: z.string().nullable(),
  card_channel: z.string().nullable(),
  card_ts: z.string().nullable(),
});
export type Recovery = z.infer<typeof recoveryRowSchema>;

const RECOVERY_COLUMNS =
  'id, target_user_id, target_username, initiator_id, initiator_username, initiator_slack, status, manual_checks, evidence, checks, ' +
  'created_at, expires_at, submitted_at, decided_at, decided_by, decided_by_username, rejection_reason, card_channel, card_ts';

export interface CheckAvailability {
  ok: boolean;
  /** Why the check cannot run, when it cannot. */
  why?: string;
  /** Masked destination, for the admin: `bob***@***.com`, or the Slack user mention. */
  destination?: string;
  slackUserId?: string;
}

export type Preparation =
  | { kind: 'new'; target: UserRow; available: Record<WardenCheck, CheckAvailability>; minChecks: number }
  | { kind: 'resume'; recovery: Recovery };

export interface VerifyOutcome {
  recovery: Recovery;
  /** Field errors by check, for the checks that did not pass in this submission. */
  errors: Partial<Record<WardenCheck, string>>;
  passed: WardenCheck[];
  /** True when this submission sent the recovery to approval. */
  submitted: boolean;
}

/** A recovery whose codes are recorded and not sent yet: `send` sends them, after the commit. */
export interface OpenedRecovery {
  recovery: Recovery;
  send(): Promise<CodesSent>;
}

export interface CodesSent {
  recovery: Recovery;
  /** Checks whose code did not go out: why, and what the admin can do. */
  unsent: Partial<Record<WardenCheck, { reason: string; next: string }>>;
}

/** The outbox dedupe key of a recovery's approval card (one card per recovery, ever). */
const cardKey = (id: number) => `2fa-recovery:${id}:card`;

function isUniqueViolation(e: unknown): boolean {
  return (e as { code?: string })?.code === '23505';
}

export function generateCode(): string {
  return String(crypto.randomInt(0, 10 ** CODE_DIGITS)).padStart(CODE_DIGITS, '0');
}

/** Salted scrypt: even with the table in hand, 10^8 codes cost real work per guess. */
export async function hashCode(code: string, salt: string): Promise<string> {
  return new Promise((resolve, reject) =>
    crypto.scrypt(code, salt, 32, { N: 16384, r: 8, p: 1 }, (err, key) => (err ? reject(err) : resolve(key.toString('hex')))),
  );
}

async function codeMatches(code: string, salt: string, expectedHex: string): Promise<boolean> {
  const got = Buffer.from(await hashCode(code, salt), 'hex');
  const want = Buffer.from(expectedHex, 'hex');
  return got.length === want.length && crypto.timingSafeEqual(got, want);
}

export function normalizeCode(input: string): string {
  return input.replace(/[\s-]+/g, '');
}

const fmtCode = (c: string) => `${c.slice(0, 4)} ${c.slice(4)}`;

export class TwoFaRecoveryService {
  constructor(private readonly services: () => Services) {}

  private get s(): Services {
    return this.services();
  }

  get minChecks(): number {
    return this.s.config.RECOVERY_MIN_WARDEN_CHECKS;
  }

  // ---------------------------------------------------------------- reading

  async get(id: number, q: Queryable = this.s.db): Promise<Recovery> {
    const { rows } = await q.query(`SELECT ${RECOVERY_COLUMNS} FROM warden_2fa_recovery WHERE id = $1`, [id]);
    if (!rows[0]) throw new NotFoundError(`There is no 2FA recovery #${id}.`);
    return recoveryRowSchema.parse(rows[0]);
  }

  /** The open (verifying or pending, not yet past its expiry) recovery of a user, if any. */
  async openFor(userId: number, q: Queryable = this.s.db): Promise<Recovery | undefined> {
    const { rows } = await q.query(
      `SELECT ${RECOVERY_COLUMNS} FROM warden_2fa_recovery
        WHERE target_user_id = $1 AND status IN ('verifying', 'pending') AND expires_at > now()`,
      [userId],
    );
    return rows[0] ? recoveryRowSchema.parse(rows[0]) : undefined;
  }

  async latestFor(userId: number): Promise<Recovery | undefined> {
    const { rows } = await this.s.db.query(
      `SELECT ${RECOVERY_COLUMNS} FROM warden_2fa_recovery WHERE target_user_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1`,
      [userId],
    );
    return rows[0] ? recoveryRowSchema.parse(rows[0]) : undefined;
  }

  /** Which Warden-run checks can be used for this user right now, and why not. */
  async availability(target: UserRow): Promise<Record<WardenCheck, CheckAvailability>> {
    const changes = await this.s.identityChanges.recent([target.id]);
    const cooldown = this.s.identityChanges.cooldownText;
    const email: CheckAvailability = !this.s.mailer.configured
      ? { ok: false, why: 'e-mail is not configured in Warden (EMAIL_API_URL, EMAIL_API_KEY, EMAIL_FROM)' }
      : !target.email
        ? { ok: false, why: 'the account has no e-mail address' }
        : changes.some((c) => c.kind === 'email')
          ? { ok: false, why: `the account’s e-mail address was changed within the last ${cooldown} (IDENTITY_COOLDOWN)` }
          : { ok: true, destination: maskEmail(target.email) };
    const links = await this.s.identity.slackAccountsOf(target.id);
    const old = links.filter((l) => Date.now() - l.createdAt.getTime() > SLACK_LINK_MIN_AGE_MS);
    const slack: CheckAvailability = changes.some((c) => c.kind === 'slack_link' || c.kind === 'slack_unlink')
      ? { ok: false, why: `their Slack link was changed within the last ${cooldown} (IDENTITY_COOLDOWN)` }
      : old[0]
        ? { ok: true, destination: String(md.user(old[0].slackUserId)), slackUserId: old[0].slackUserId }
        : {
            ok: false,
            why: links.length
              ? 'their Slack link is less than 24 hours old (a fresh link could be an attacker’s)'
              : 'no Slack account is linked to the user',
          };
    return { email, slack };
  }

  // ---------------------------------------------------------------- opening

  /**
   * First step of `/2fa recover USERNAME`: everything that refuses before a form is shown.
   * Returns the initiator's own verifying recovery when there is one, so they can go on.
   */
  async prepare(actor: Actor, username: string): Promise<Preparation> {
    requireAdmin(actor, 'recover 2FA');
    if (!this.s.config.APPROVALS_CHANNEL) {
      throw new UserError('APPROVALS_CHANNEL is not set: a 2FA recovery needs a channel where a second admin can approve it.');
    }
    // The initiator vouches for the user's identity: they prove their own with 2FA (step-up at open).
    if (!(await this.s.stepUp.canStepUp(actor))) {
      throw new ForbiddenError(
        'Opening a 2FA recovery needs your own 2FA code, but your account has no two-factor authentication. Enrol in the application first (Profile → Enable Two-Factor Authentication).',
      );
    }
    const target = await this.s.users.getByUsername(username);
    this.refuseTarget(actor, target);
    await this.s.identityChanges.assertClear(actor, `open a 2FA recovery for \`${target.username}\``, [
      { userId: target.id, label: 'the account to recover' },
    ]);
    const open = await this.openFor(target.id);
    if (open) {
      if (open.status === 'verifying' && open.initiator_id === actor.user.id) return { kind: 'resume', recovery: open };
      throw new ConflictError(describeOpen(open));
    }
    const available = await this.availability(target);
    this.refuseUnavailable(target, available);
    return { kind: 'new', target, available, minChecks: this.minChecks };
  }

  private refuseTarget(actor: Actor, target: UserRow) {
    if (target.id === actor.user.id) {
      throw new ForbiddenError('You cannot open a 2FA recovery for your own account. Ask another admin to run it for you.');
    }
    if (!target.two_fa_enabled) {
      throw new UserError(`\`${target.username}\` does not have 2FA enabled, so there is nothing to recover. Nothing was opened.`);
    }
  }

  private refuseUnavailable(target: UserRow, available: Record<WardenCheck, CheckAvailability>) {
    const usable = WARDEN_CHECKS.filter((c) => available[c].ok).length;
    if (usable < this.minChecks) {
      const why = WARDEN_CHECKS.filter((c) => !available[c].ok)
        .map((c) => `${CHECK_LABELS[c]}: ${available[c].why}`)
        .join('; ');
      throw new UserError(
        `Warden cannot run enough identity checks for \`${target.username}\` (needs ${this.minChecks}, RECOVERY_MIN_WARDEN_CHECKS): ${why}. Nothing was opened.`,
      );
    }
  }

  /**
   * Opens a recovery: the recovery, its code hashes, its audit row and one pending send per
   * code are committed together; `send()` then sends the codes (after the commit, outside any
   * transaction: the form is answered first). A code that does not go out is revoked and its
   * check marked unsent, so the admin can send a new one or cancel.
   */
  async open(
    actor: Actor,
    input: { username: string; manualChecks: string[]; evidence: string; wardenChecks: string[]; totp?: string | null },
  ): Promise<OpenedRecovery> {
    requireAdmin(actor, 'recover 2FA');
    const errors: Record<string, string> = {};
    const manual = [...new Set(input.manualChecks)];
    if (!manual.length) errors[RECOVERY_FIELDS.manualChecks] = 'Tick at least one check you performed yourself.';
    else if (manual.some((m) => !(m in MANUAL_CHECKS))) errors[RECOVERY_FIELDS.manualChecks] = 'Unknown check.';
    const evidence = input.evidence.trim();
    if (evidence.length < 10) errors[RECOVERY_FIELDS.evidence] = 'Describe what you checked (at least 10 characters).';
    else if (evidence.length > 2000) errors[RECOVERY_FIELDS.evidence] = 'Keep the evidence under 2,000 characters.';
    const chosen = [...new Set(input.wardenChecks)] as WardenCheck[];
    if (chosen.some((c) => !WARDEN_CHECKS.includes(c))) errors[RECOVERY_FIELDS.wardenChecks] = 'Unknown check.';
    else if (chosen.length < this.minChecks) {
      errors[RECOVERY_FIELDS.wardenChecks] = `Choose at least ${this.minChecks} check${this.minChecks === 1 ? '' : 's'} Warden runs.`;
    }
    if (Object.keys(errors).length) throw new ValidationErrors(errors);

    const prep = await this.prepare(actor, input.username);
    if (prep.kind === 'resume') {
      throw new ConflictError(`You already have recovery #${prep.recovery.id} open for \`${input.username}\`. Run \`/2fa recover ${input.username}\` to go on with it.`);
    }
    const { target, available } = prep;
    for (const c of chosen) {
      if (!available[c].ok) throw new UserError(`${CHECK_LABELS[c]} cannot be used: ${available[c].why}.`, RECOVERY_FIELDS.wardenChecks);
    }
    await this.s.stepUp.verify(actor, input.totp, '2fa_recovery_open');
    await this.countSends(actor, target, chosen.length, RECOVERY_FIELDS.wardenChecks);

    const codes = new Map<WardenCheck, string>(chosen.map((c) => [c, generateCode()]));
    const hashed = new Map<WardenCheck, { salt: string; hash: string }>();
    for (const [c, code] of codes) {
      const salt = crypto.randomBytes(16).toString('hex');
      hashed.set(c, { salt, hash: await hashCode(code, salt) });
    }
    const now = new Date().toISOString();
    const checks: Record<string, CheckState> = {};
    for (const c of chosen) checks[c] = { result: 'sent', sends: 1, attempts: 0, sent_at: now };

    const opened = await this.s.db.tx(async (q) => {
      const locked = await q.query<{ two_fa_enabled: boolean | null }>('SELECT two_fa_enabled FROM "user" WHERE id = $1 FOR UPDATE', [target.id]);
      if (!locked.rows[0]) throw new NotFoundError(`\`${target.username}\` was deleted in the meantime. Nothing was opened.`);
      if (!locked.rows[0].two_fa_enabled) throw new UserError(`\`${target.username}\` no longer has 2FA enabled. Nothing was opened.`);
      await this.expireStale(q, target.id);
      let recoveryId: number;
      try {
        const ins = await q.query<{ id: number }>(
          `INSERT INTO warden_2fa_recovery
             (target_user_id, target_username, initiator_id, initiator_username, initiator_slack, status, manual_checks, evidence, checks, expires_at)
           VALUES ($1, $2, $3, $4, $5, 'verifying', $6, $7, $8, now() + make_interval(secs => $9))
           RETURNING id`,
          [
            target.id,
            target.username,
            actor.user.id,
            actor.user.username,
            actor.slack.userId,
            JSON.stringify(manual),
            evidence,
            JSON.stringify(checks),
            this.s.config.RECOVERY_TTL,
          ],
        );
        recoveryId = ins.rows[0].id;
      } catch (e) {
        if (isUniqueViolation(e)) throw new ConflictError(`A 2FA recovery for \`${target.username}\` was opened a moment ago by someone else. Nothing was opened.`);
        throw e;
      }
      const sends: { check: WardenCheck; id: number }[] = [];
      for (const [c, h] of hashed) {
        const codeId = await this.insertCode(q, recoveryId, c, h);
        sends.push({ check: c, id: await this.recordSend(q, actor, target, c, available[c], codeId) });
      }
      await writeAudit(q, actor, {
        action: '2fa_recovery_opened',
        entityType: '2fa_recovery',
        entityId: recoveryId,
        details: {
          recovery_id: recoveryId,
          target: target.username,
          target_id: target.id,
          manual_checks: manual,
          evidence: maskText(evidence),
          warden_checks: chosen,
          // Recorded for sending after this commit; one that does not go out gets 2fa_recovery_code_unsent.
          codes_sent: chosen,
        },
      });
      return { id: recoveryId, sends };
    });
    this.s.logger.info({ recovery: opened.id, target: target.username, actor: actor.user.username, checks: chosen }, '2fa recovery opened');
    return {
      recovery: await this.get(opened.id),
      send: () => this.sendCodes(opened.id, opened.sends.map((x) => ({ ...x, run: () => this.deliver(x.check, target, available[x.check], codes.get(x.check)!, actor, opened.id) }))),
    };
  }

  private async recordSend(q: Queryable, actor: Actor, target: UserRow, channel: WardenCheck, where: CheckAvailability, codeId: number) {
    return this.s.pendingSends.record(q, {
      kind: '2fa_code',
      channel,
      targetUserId: target.id,
      refId: codeId,
      destination: where.destination ?? (channel === 'email' ? maskEmail(target.email) : 'their Slack account'),
      actor,
    });
  }

  /** Sends recorded codes one after the other (outside any transaction), each marked as it goes. */
  private async sendCodes(recoveryId: number, sends: { check: WardenCheck; id: number; run: () => Promise<void> }[]): Promise<CodesSent> {
    const unsent: CodesSent['unsent'] = {};
    for (const x of sends) {
      const out: SendOutcome = await this.s.pendingSends.deliver(x.id, x.run);
      if (!out.ok) unsent[x.check] = { reason: out.reason, next: out.next };
    }
    return { recovery: await this.get(recoveryId), unsent };
  }

  /**
   * A code that did not go out (refused, timed out, or its process died): the code is revoked,
   * its check marked unsent unless a newer code replaced it, `2fa_recovery_code_unsent` audited.
   * Runs in the transaction that marks the send.
   */
  async revokeUnsent(q: Queryable, send: PendingSendRow, reason: string): Promise<string> {
    const { rows } = await q.query<{ recovery_id: number; channel: WardenCheck }>(
      `UPDATE warden_2fa_code SET revoked_at = now() WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL RETURNING recovery_id, channel`,
      [send.ref_id],
    );
    const code = rows[0];
    if (!code) return 'That code had already been replaced or used.';
    const r = recoveryRowSchema.parse(
      (await q.query(`SELECT ${RECOVERY_COLUMNS} FROM warden_2fa_recovery WHERE id = $1 FOR UPDATE`, [code.recovery_id])).rows[0],
    );
    const newer = await q.query('SELECT 1 FROM warden_2fa_code WHERE recovery_id = $1 AND channel = $2 AND id > $3', [r.id, code.channel, send.ref_id]);
    const prev = r.checks[code.channel];
    if (!newer.rowCount && prev && prev.result !== 'passed') await this.setCheck(q, r.id, code.channel, { ...prev, result: 'unsent', error: reason });
    await writeAudit(q, null, {
      action: '2fa_recovery_code_unsent',
      entityType: '2fa_recovery',
      entityId: r.id,
      details: { recovery_id: r.id, target: r.target_username, check: code.channel, reason, requested_by: send.requested_by_username, send_id: send.id },
    });
    const open = (r.status === 'verifying' || r.status === 'pending') && r.expires_at > new Date();
    return open
      ? `The code was revoked. Run \`/2fa recover ${r.target_username}\` to send a new ${CHECK_LABELS[code.channel].toLowerCase()} or to cancel recovery #${r.id}.`
      : `The code was revoked; recovery #${r.id} is ${r.status}.`;
  }

  private async countSends(actor: Actor, target: UserRow, n: number, field: string) {
    let count = 0;
    let byAdmin = 0;
    for (let i = 0; i < n; i++) {
      count = await this.s.store.incr(`twofa-recovery:sends:${target.id}`, 3600);
      byAdmin = await this.s.store.incr(`twofa-recovery:sends-by:${actor.user.id}`, 3600);
    }
    if (count > CODE_SENDS_PER_HOUR) {
      throw new UserError(
        `Too many verification codes were sent to \`${target.username}\` in the last hour (at most ${CODE_SENDS_PER_HOUR}). Try again later.`,
        field,
      );
    }
    if (byAdmin > CODE_SENDS_PER_ADMIN_HOUR) {
      throw new UserError(`You have had ${CODE_SENDS_PER_ADMIN_HOUR} verification codes sent in the last hour, the limit. Try again later.`, field);
    }
  }

  private async insertCode(q: Queryable, recoveryId: number, channel: WardenCheck, h: { salt: string; hash: string }): Promise<number> {
    const { rows } = await q.query<{ id: number }>(
      `INSERT INTO warden_2fa_code (recovery_id, channel, code_hash, salt, max_attempts, expires_at)
       VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING id`,
      [recoveryId, channel, h.hash, h.salt, CODE_MAX_ATTEMPTS, CODE_TTL_SECONDS],
    );
    return rows[0].id;
  }

  /** Sends one code (never inside a transaction). Failures become a UserError naming the channel. */
  private async deliver(channel: WardenCheck, target: UserRow, where: CheckAvailability, code: string, actor: Actor, recoveryId: number) {
    const intro =
      `An administrator (${actor.user.username}) is verifying your identity to reset the two-factor authentication ` +
      `of your account "${target.username}" (recovery #${recoveryId}).`;
    const warning = 'Read this code to that administrator only if you asked them for help. If you did not, tell your security team.';
    if (channel === 'email') {
      try {
        await this.s.mailer.send({
          to: target.email,
          subject: 'Your verification code for a 2FA reset',
          text: `${intro}\n\nYour verification code: ${fmtCode(code)}\nIt is valid for ${CODE_TTL_SECONDS / 60} minutes.\n\n${warning}\n`,
        });
      } catch (e) {
        const why = e instanceof UserError ? e.message : 'The mail service failed.';
        this.s.logger.warn({ recovery: recoveryId, channel, reason: why }, '2fa recovery code could not be e-mailed');
        throw new UserError(`Could not send the e-mail code: ${why}`, RECOVERY_FIELDS.wardenChecks);
      }
    } else {
      try {
        await this.s.chat.dm(where.slackUserId!, recoveryCodeDm({ intro, code: fmtCode(code), minutes: CODE_TTL_SECONDS / 60, warning }));
      } catch (e) {
        this.s.logger.warn({ recovery: recoveryId, channel, err: { message: (e as Error).message } }, '2fa recovery code could not be sent by Slack DM');
        throw new UserError('Could not send the Slack code (Slack did not accept the DM).', RECOVERY_FIELDS.wardenChecks);
      }
    }
  }

  /** Sends a fresh code for one check; the previous one stops working. The send runs after the commit. */
  async resend(actor: Actor, recoveryId: number, channel: WardenCheck): Promise<CodesSent> {
    requireAdmin(actor, 'recover 2FA');
    const r = await this.get(recoveryId);
    this.requireInitiator(actor, r, 'send codes for');
    this.requireVerifying(r);
    const state = r.checks[channel];
    if (!state) throw new UserError(`${CHECK_LABELS[channel]} was not chosen for recovery #${r.id}.`);
    if (state.result === 'passed') throw new UserError(`${CHECK_LABELS[channel]} already passed for recovery #${r.id}.`);
    const target = await this.loadTarget(r);
    const available = (await this.availability(target))[channel];
    if (!available.ok) throw new UserError(`${CHECK_LABELS[channel]} cannot be used: ${available.why}.`);
    await this.countSends(actor, target, 1, RECOVERY_FIELDS.wardenChecks);
    const code = generateCode();
    const salt = crypto.randomBytes(16).toString('hex');
    const hash = await hashCode(code, salt);
    const sendId = await this.s.db.tx(async (q) => {
      const cur = await this.get(r.id, q);
      this.requireVerifying(cur);
      await q.query(
        `UPDATE warden_2fa_code SET revoked_at = now() WHERE recovery_id = $1 AND channel = $2 AND used_at IS NULL AND revoked_at IS NULL`,
        [r.id, channel],
      );
      const codeId = await this.insertCode(q, r.id, channel, { salt, hash });
      const sends = (cur.checks[channel]?.sends ?? 0) + 1;
      await this.setCheck(q, r.id, channel, { result: 'sent', sends, attempts: 0, sent_at: new Date().toISOString() });
      await writeAudit(q, actor, {
        action: '2fa_recovery_code_sent',
        entityType: '2fa_recovery',
        entityId: r.id,
        details: { recovery_id: r.id, target: r.target_username, check: channel, sends },
      });
      return this.recordSend(q, actor, target, channel, available, codeId);
    });
    return this.sendCodes(r.id, [{ check: channel, id: sendId, run: () => this.deliver(channel, target, available, code, actor, r.id) }]);
  }

  // ---------------------------------------------------------------- verifying

  /**
   * Checks the codes the user read back. Each code is checked in its own transaction so a
   * wrong one is counted (and its audit row kept) whatever happens to the others. When
   * enough checks passed, the recovery goes to approval.
   */
  async verifyCodes(actor: Actor, recoveryId: number, entered: Partial<Record<WardenCheck, string>>): Promise<VerifyOutcome> {
    requireAdmin(actor, 'recover 2FA');
    let r = await this.get(recoveryId);
    this.requireInitiator(actor, r, 'enter codes for');
    this.requireVerifying(r);
    const errors: Partial<Record<WardenCheck, string>> = {};
    const passed: WardenCheck[] = [];
    const given = WARDEN_CHECKS.filter((c) => (entered[c] ?? '').trim() !== '');
    for (const c of given) {
      if (!r.checks[c]) {
        errors[c] = `${CHECK_LABELS[c]} was not chosen for this recovery.`;
        continue;
      }
      if (r.checks[c].result === 'passed') {
        errors[c] = `${CHECK_LABELS[c]} already passed; its code cannot be used again.`;
        continue;
      }
      const code = normalizeCode(entered[c]!);
      if (!new RegExp(`^\\d{${CODE_DIGITS}}$`).test(code)) {
        errors[c] = `Enter the ${CODE_DIGITS}-digit code the user reads to you.`;
        continue;
      }
      const result = await this.checkCode(actor, r, c, code);
      if (result === true) passed.push(c);
      else errors[c] = result;
    }
    r = await this.get(recoveryId);
    let submitted = false;
    if (this.passedCount(r) >= this.minChecks && r.status === 'verifying') {
      r = await this.submit(actor, r.id);
      submitted = true;
    }
    return { recovery: r, errors, passed, submitted };
  }

  passedCount(r: Recovery): number {
    return Object.values(r.checks).filter((c) => c.result === 'passed').length;
  }

  /** True when the code passed; otherwise the message for the admin. */
  private async checkCode(actor: Actor, r: Recovery, channel: WardenCheck, code: string): Promise<true | string> {
    const row = (
      await this.s.db.query<{ id: number; code_hash: string; salt: string; attempts: number; max_attempts: number; expired: boolean; used_at: Date | null }>(
        `SELECT id, code_hash, salt, attempts, max_attempts, expires_at <= now() AS expired, used_at
           FROM warden_2fa_code WHERE recovery_id = $1 AND channel = $2 AND revoked_at IS NULL
          ORDER BY created_at DESC, id DESC LIMIT 1`,
        [r.id, channel],
      )
    ).rows[0];
    if (!row) return `No ${CHECK_LABELS[channel].toLowerCase()} is active. Send a new one.`;
    if (row.used_at) return 'That code was already used.';
    if (row.attempts >= row.max_attempts) return `This code is locked after ${row.max_attempts} wrong attempts. Send a new code.`;
    if (row.expired) return `This code expired (codes are valid ${CODE_TTL_SECONDS / 60} minutes). Send a new code.`;
    const ok = await codeMatches(code, row.salt, row.code_hash);
    return this.s.db.tx(async (q) => {
      if (ok) {
        // Conditional: a replay or a parallel submission of the same code finds it used.
        const used = await q.query(
          `UPDATE warden_2fa_code SET used_at = now()
            WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL AND attempts < max_attempts AND expires_at > now()
            RETURNING id`,
          [row.id],
        );
        if (!used.rowCount) return 'That code is no longer valid (used, replaced or expired).';
        const prev = (await this.get(r.id, q)).checks[channel];
        await this.setCheck(q, r.id, channel, { ...(prev ?? { sends: 1 }), result: 'passed', attempts: row.attempts + 1, passed_at: new Date().toISOString() });
        await writeAudit(q, actor, {
          action: '2fa_recovery_check_passed',
          entityType: '2fa_recovery',
          entityId: r.id,
          details: { recovery_id: r.id, target: r.target_username, check: channel, attempts: row.attempts + 1 },
        });
        return true as const;
      }
      const upd = await q.query<{ attempts: number; max_attempts: number }>(
        `UPDATE warden_2fa_code SET attempts = attempts + 1
          WHERE id = $1 AND used_at IS NULL AND attempts < max_attempts RETURNING attempts, max_attempts`,
        [row.id],
      );
      if (!upd.rowCount) return `This code is locked after ${row.max_attempts} wrong attempts. Send a new code.`;
      const { attempts, max_attempts } = upd.rows[0];
      const locked = attempts >= max_attempts;
      const prev = (await this.get(r.id, q)).checks[channel];
      await this.setCheck(q, r.id, channel, { ...(prev ?? { sends: 1 }), result: locked ? 'locked' : 'failed', attempts });
      await writeAudit(q, actor, {
        action: '2fa_recovery_check_failed',
        entityType: '2fa_recovery',
        entityId: r.id,
        details: { recovery_id: r.id, target: r.target_username, check: channel, attempts, locked },
      });
      return locked
        ? `Wrong code. The code is now locked after ${max_attempts} wrong attempts; send a new code.`
        : `Wrong code (${attempts} of ${max_attempts} attempts used).`;
    });
  }

  private async setCheck(q: Queryable, id: number, channel: WardenCheck, state: CheckState) {
    await q.query(`UPDATE warden_2fa_recovery SET checks = jsonb_set(checks, $2::text[], $3::jsonb, true) WHERE id = $1`, [
      id,
      `{${channel}}`,
      JSON.stringify(state),
    ]);
  }

  /**
   * Sends a verified recovery to approval: marks it pending and queues its card for
   * APPROVALS_CHANNEL in one transaction; the outbox posts it after the commit (retrying while
   * Slack refuses), so no Slack call runs inside the transaction and a crash cannot lose it.
   */
  async submit(actor: Actor, recoveryId: number): Promise<Recovery> {
    requireAdmin(actor, 'recover 2FA');
    const channel = this.s.config.APPROVALS_CHANNEL;
    if (!channel) throw new UserError('APPROVALS_CHANNEL is not set: there is nowhere to ask for approval.');
    const r0 = await this.get(recoveryId);
    this.requireInitiator(actor, r0, 'submit');
    if (this.passedCount(r0) < this.minChecks) {
      throw new UserError(`Recovery #${r0.id} needs ${this.minChecks} passed Warden check${this.minChecks === 1 ? '' : 's'} before approval.`);
    }
    // The card is queued in the outbox in the same transaction (no Slack call inside it): a
    // crash after the commit still gets it posted, once (dedupe key), and Slack being down only
    // delays it. Its channel is known now; where it landed is the outbox row's (cardRef).
    await this.s.db.tx(async (q) => {
      const upd = await q.query(
        `UPDATE warden_2fa_recovery SET status = 'pending', submitted_at = now(), card_channel = $2
          WHERE id = $1 AND status = 'verifying' AND expires_at > now() RETURNING id`,
        [recoveryId, channel],
      );
      if (!upd.rowCount) throw new ConflictError(describeOpen(await this.get(recoveryId, q)));
      const r = await this.get(recoveryId, q);
      await writeAudit(q, actor, {
        action: '2fa_recovery_submitted',
        entityType: '2fa_recovery',
        entityId: r.id,
        details: { recovery_id: r.id, target: r.target_username, checks: checkSummary(r), manual_checks: r.manual_checks },
      });
      await this.s.outbox.post(q, channel, renderRecoveryCard(r, await this.identityChangesOf(r, q)), { dedupeKey: cardKey(r.id) });
    });
    return this.get(recoveryId);
  }

  // ---------------------------------------------------------------- deciding

  /**
   * Refuses before any code is asked for: the initiator and the target never decide, and
   * neither does anyone whose own identity changed within the cool-down or who changed the
   * identity of the initiator or the target (four eyes means two people).
   */
  async assertCanApprove(actor: Actor, r: Recovery): Promise<void> {
    requireAdmin(actor, 'approve a 2FA recovery');
    if (r.target_user_id === actor.user.id) {
      throw new ForbiddenError(`Recovery #${r.id} is for your own account: another admin must approve it.`);
    }
    if (r.initiator_id === actor.user.id) {
      throw new ForbiddenError(`You opened recovery #${r.id}: a second admin must approve it (four eyes).`);
    }
    await this.s.identityChanges.assertClear(actor, `approve recovery #${r.id}`, [
      { userId: r.initiator_id, label: 'the admin who opened it' },
      { userId: r.target_user_id, label: 'the account to recover' },
    ]);
  }

  /** Recent identity changes of the target and the initiator, for the card. */
  async identityChangesOf(r: Recovery, q?: Queryable): Promise<IdentityChange[]> {
    return this.s.identityChanges.recent([r.target_user_id, r.initiator_id], q);
  }

  /** The approval card with its identity changes. */
  async card(r: Recovery): Promise<Message> {
    return renderRecoveryCard(r, await this.identityChangesOf(r).catch(() => []));
  }

  async approve(actor: Actor, recoveryId: number, totp: string | undefined): Promise<Recovery> {
    const r = await this.get(recoveryId);
    await this.assertCanApprove(actor, r);
    if (r.status !== 'pending' || r.expires_at <= new Date()) throw new ConflictError(describeDecided(r));
    await this.s.stepUp.verify(actor, totp, '2fa_recovery_approve');
    const decided = await this.s.db.tx(async (q) => {
      const upd = await q.query(
        `UPDATE warden_2fa_recovery
            SET status = 'approved', decided_at = now(), decided_by = $2, decided_by_username = $3
          WHERE id = $1 AND status = 'pending' AND expires_at > now()
          RETURNING id`,
        [recoveryId, actor.user.id, actor.user.username],
      );
      if (!upd.rowCount) throw new ConflictError(describeDecided(await this.get(recoveryId, q)));
      const rec = await this.get(recoveryId, q);
      const before = await q.query(`SELECT ${USER_COLUMNS} FROM "user" WHERE id = $1 FOR UPDATE`, [rec.target_user_id]);
      if (!before.rows[0]) throw new NotFoundError(`The account of recovery #${rec.id} no longer exists.`);
      const after = await q.query(
        `UPDATE "user" SET two_fa_enabled = false, totp_secret = NULL WHERE id = $1 RETURNING ${USER_COLUMNS}`,
        [rec.target_user_id],
      );
      await writeAudit(q, actor, {
        action: '2fa_disabled',
        entityType: 'user',
        entityId: rec.target_user_id,
        before: before.rows[0],
        after: after.rows[0],
        details: {
          recovery_id: rec.id,
          username: rec.target_username,
          checks: checkSummary(rec),
          manual_checks: rec.manual_checks,
          evidence: maskText(rec.evidence),
          initiator: rec.initiator_username,
          initiator_id: rec.initiator_id,
          approver: actor.user.username,
          approver_id: actor.user.id,
        },
      });
      await q.query(
        `INSERT INTO notification (user_id, title, message, type) VALUES ($1, $2, $3, 'warning')`,
        [
          rec.target_user_id,
          'Two-factor authentication was reset',
          `An administrator reset your two-factor authentication (recovery #${rec.id}). Enable it again at your next login: Profile → Enable Two-Factor Authentication.`,
        ],
      );
      // Owed by the decision, queued with it: a crash after the commit cannot lose them.
      await this.queueCardUpdate(q, rec);
      for (const l of await q.query<{ slack_user_id: string }>('SELECT slack_user_id FROM warden_slack_link WHERE user_id = $1 ORDER BY created_at', [
        rec.target_user_id,
      ]).then((r) => r.rows)) {
        await this.s.outbox.dm(q, l.slack_user_id, recoveryDoneDm(rec), { dedupeKey: `2fa-recovery:${rec.id}:done-dm:${l.slack_user_id}` });
      }
      return rec;
    });
    // Committed: the account's next request must see 2FA off, not its cached row.
    this.s.identity.forgetAccount(decided.target_user_id);
    this.s.logger.info({ recovery: decided.id, target: decided.target_username, approver: actor.user.username }, '2fa recovery approved; 2fa disabled');
    return decided;
  }

  /** Rejects (any admin but the target) or cancels (the initiator withdrawing) an open recovery. */
  async reject(actor: Actor, recoveryId: number, reason: string): Promise<Recovery> {
    requireAdmin(actor, 'reject a 2FA recovery');
    const r = await this.get(recoveryId);
    if (r.target_user_id === actor.user.id) throw new ForbiddenError(`Recovery #${r.id} is for your own account: another admin decides.`);
    const why = reason.trim();
    if (why.length < 5) throw new ValidationErrors({ [RECOVERY_FIELDS.reason]: 'Give a reason (at least 5 characters).' });
    if (why.length > 500) throw new ValidationErrors({ [RECOVERY_FIELDS.reason]: 'Keep the reason under 500 characters.' });
    return this.close(actor, r, 'rejected', why);
  }

  async cancel(actor: Actor, recoveryId: number): Promise<Recovery> {
    requireAdmin(actor, 'cancel a 2FA recovery');
    const r = await this.get(recoveryId);
    this.requireInitiator(actor, r, 'cancel');
    return this.close(actor, r, 'cancelled', null);
  }

  private async close(actor: Actor, r: Recovery, status: 'rejected' | 'cancelled', reason: string | null): Promise<Recovery> {
    const rec = await this.s.db.tx(async (q) => {
      const upd = await q.query(
        `UPDATE warden_2fa_recovery
            SET status = $2, decided_at = now(), decided_by = $3, decided_by_username = $4, rejection_reason = $5
          WHERE id = $1 AND status IN ('verifying', 'pending') AND expires_at > now()
          RETURNING id`,
        [r.id, status, actor.user.id, actor.user.username, reason],
      );
      if (!upd.rowCount) throw new ConflictError(describeDecided(await this.get(r.id, q)));
      await q.query('UPDATE warden_2fa_code SET revoked_at = now() WHERE recovery_id = $1 AND used_at IS NULL AND revoked_at IS NULL', [r.id]);
      await writeAudit(q, actor, {
        action: status === 'rejected' ? '2fa_recovery_rejected' : '2fa_recovery_cancelled',
        entityType: '2fa_recovery',
        entityId: r.id,
        details: { recovery_id: r.id, target: r.target_username, initiator: r.initiator_username, ...(reason ? { reason } : {}) },
      });
      const closed = await this.get(r.id, q);
      await this.queueCardUpdate(q, closed);
      return closed;
    });
    return rec;
  }

  /** Marks every open recovery past its expiry as expired (the scheduled job). */
  async expireDue(): Promise<Recovery[]> {
    return this.s.db.tx(async (q) => {
      const expired = await this.expireStale(q);
      for (const r of expired) await this.queueCardUpdate(q, r);
      return expired;
    });
  }

  private async expireStale(q: Queryable, targetUserId?: number): Promise<Recovery[]> {
    const { rows } = await q.query<Record<string, unknown> & { was: string }>(
      `WITH due AS (
         SELECT id, status FROM warden_2fa_recovery
          WHERE status IN ('verifying', 'pending') AND expires_at <= now() ${targetUserId === undefined ? '' : 'AND target_user_id = $1'}
          FOR UPDATE
       )
       UPDATE warden_2fa_recovery w SET status = 'expired', decided_at = now()
         FROM due WHERE w.id = due.id AND w.status IN ('verifying', 'pending')
       RETURNING ${RECOVERY_COLUMNS.split(', ').map((c) => `w.${c}`).join(', ')}, due.status AS was`,
      targetUserId === undefined ? [] : [targetUserId],
    );
    const out = rows.map((row) => ({ ...recoveryRowSchema.parse(row), was: row.was }));
    for (const r of out) {
      await q.query('UPDATE warden_2fa_code SET revoked_at = now() WHERE recovery_id = $1 AND used_at IS NULL AND revoked_at IS NULL', [r.id]);
      await writeAudit(q, null, {
        action: '2fa_recovery_expired',
        entityType: '2fa_recovery',
        entityId: r.id,
        details: { recovery_id: r.id, target: r.target_username, initiator: r.initiator_username, was: r.was, checks: checkSummary(r) },
      });
    }
    return out;
  }

  // ---------------------------------------------------------------- helpers

  private requireInitiator(actor: Actor, r: Recovery, what: string) {
    if (r.initiator_id !== actor.user.id) {
      throw new ForbiddenError(`Only ${r.initiator_username}, who opened recovery #${r.id}, can ${what} it.`);
    }
  }

  private requireVerifying(r: Recovery) {
    if (r.status !== 'verifying' || r.expires_at <= new Date()) throw new ConflictError(describeOpen(r));
  }

  private async loadTarget(r: Recovery): Promise<UserRow> {
    const { rows } = await this.s.db.query(`SELECT ${USER_COLUMNS} FROM "user" WHERE id = $1`, [r.target_user_id]);
    if (!rows[0]) throw new NotFoundError(`The account of recovery #${r.id} no longer exists.`);
    return userRowSchema.parse(rows[0]);
  }

  /** Queues the approval card's update in the caller's transaction (delivered once, after the card, by the outbox). */
  private async queueCardUpdate(q: Queryable, r: Recovery): Promise<void> {
    // A card posted before the outbox posted it (card_ts recorded at once).
    if (r.card_channel && r.card_ts) {
      await this.s.outbox.updateRef(q, { channel: r.card_channel, ts: r.card_ts }, renderRecoveryCard(r));
      return;
    }
    const post = await q.query<{ id: number }>('SELECT id FROM warden_outbox WHERE dedupe_key = $1', [cardKey(r.id)]);
    if (post.rows[0]) await this.s.outbox.update(q, post.rows[0].id, renderRecoveryCard(r));
  }

  /** Where the approval card is in Slack, once posted (null before, or without a card). */
  async cardRef(r: Recovery): Promise<{ channel: string; ts: string } | null> {
    if (r.card_channel && r.card_ts) return { channel: r.card_channel, ts: r.card_ts };
    const { rows } = await this.s.db.query<{ posted_channel: string | null; posted_ts: string | null }>(
      'SELECT posted_channel, posted_ts FROM warden_outbox WHERE dedupe_key = $1',
      [cardKey(r.id)],
    );
    return rows[0]?.posted_channel && rows[0].posted_ts ? { channel: rows[0].posted_channel, ts: rows[0].posted_ts } : null;
  }

  /** Updates the approval card in place, when there is one. */
  async refreshCard(r: Recovery): Promise<void> {
    const ref = await this.cardRef(r);
    if (!ref) return;
    await this.s.chat
      .update(ref, await this.card(r))
      .catch((err) => this.s.logger.warn({ err: { message: (err as Error).message }, recovery: r.id }, 'could not update the 2fa recovery card'));
  }
}

// ------------------------------------------------------------------ audit details (cards: src/slack/cards/twofa-recovery.ts)

export function checkSummary(r: Recovery): Record<string, { result: string; attempts: number; sends: number }> {
  const out: Record<string, { result: string; attempts: number; sends: number }> = {};
  for (const [c, s] of Object.entries(r.checks)) out[c] = { result: s.result, attempts: s.attempts, sends: s.sends };
  return out;
}

export { OPEN_STATUSES };
