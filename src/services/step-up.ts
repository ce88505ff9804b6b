import { verify } from 'otplib';
import type { Db } from '../db/index.js';
import { StepUpError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Store } from '../store/index.js';
import { md, mrkdwn } from '../ui.js';
import { writeAudit } from './audit-writer.js';
import type { Actor } from './identity.js';
import type { Outbox } from './outbox.js';

/** Window in which wrong codes are counted (and in which three of them alert security). */
export const STEPUP_WINDOW_SECONDS = 15 * 60;
/** Wrong codes in one window after which security is told. */
export const STEPUP_ALERT_AT = 3;
/** Block lengths after the limit is reached the 1st, 2nd, 3rd… time within a day. */
export const STEPUP_BLOCKS_SECONDS = [15 * 60, 60 * 60, 24 * 3600] as const;
const LEVEL_TTL_SECONDS = 24 * 3600;

/**
 * The rule every step-up input follows, on every path (Slack modals, the console):
 * a 6-digit code, spaces allowed. Anything else is a typing mistake, answered as a field
 * error and never counted as a wrong code, so a confused admin does not lock themselves out.
 */
export function parseStepUpCode(input: string | null | undefined): string | null {
  const trimmed = (input ?? '').replace(/\s+/g, '');
  return /^\d{6}$/.test(trimmed) ? trimmed : null;
}

export interface StepUpDeps {
  db: Db;
  store: Store;
  logger: Logger;
  outbox: Outbox;
  securityChannel?: string;
  /** Wrong codes in a window before step-up is blocked (STEPUP_MAX_FAILURES). */
  maxFailures?: number;
}

/** The store key that marks one account's TOTP time step as used (a code is accepted once). */
export function usedStepKey(userId: number, step: number | string): string {
  return `stepup:used:${userId}:${step}`;
}

/**
 * Step-up verification (DESIGN §3): destructive or privilege-granting actions ask the
 * acting admin for the current TOTP code of their own application account.
 * ±1 time step is accepted; each time step's code is accepted once.
 *
 * It notices attacks: every wrong code is audited (`stepup_failed`, naming the action it
 * guarded) and logged; the third in a window is posted to SECURITY_CHANNEL; reaching the
 * limit blocks step-up for 15 min, then 1 h, then 24 h. The attempt is counted before
 * the code is checked, so parallel guesses cannot run more checks than the limit.
 */
export class StepUpService {
  private readonly maxFailures: number;

  constructor(private readonly deps: StepUpDeps) {
    this.maxFailures = deps.maxFailures ?? 5;
  }

  /** True when the actor can step up at all (2FA enrolled). */
  async canStepUp(actor: Actor): Promise<boolean> {
    return (await this.secretOf(actor.user.id)) !== null;
  }

  /**
   * Checks the actor's code for `action` (a short name like `user_delete`, recorded with
   * failures). Throws StepUpError (field `totp`) when the code is missing, wrong, reused or
   * step-up is blocked.
   */
  async verify(actor: Actor, code: string | undefined | null, action: string): Promise<void> {
    const userId = actor.user.id;
    const secret = await this.secretOf(userId);
    if (!secret) {
      throw new StepUpError(
        'This action needs your 2FA code, but your account has no two-factor authentication. Enrol in the application first (Profile → Enable Two-Factor Authentication).',
        'totp',
      );
    }
    const token = parseStepUpCode(code);
    if (!token) throw new StepUpError('Enter the 6-digit code from your authenticator app.', 'totp');

    const { store } = this.deps;
    const blockedUntil = Number((await store.get(`stepup:block:${userId}`)) ?? 0);
    if (blockedUntil > Date.now()) throw this.blockedError(blockedUntil);

    // Counted first: of N parallel tries only maxFailures get as far as a check.
    const failKey = `stepup:fail:${userId}`;
    const attempt = await store.incr(failKey, STEPUP_WINDOW_SECONDS);
    if (attempt > this.maxFailures) {
      throw new StepUpError('Too many wrong 2FA codes. Wait a while and try again.', 'totp');
    }
    const result = await verify({ secret, token, epochTolerance: 30 });
    let reason: 'wrong' | 'reused' | null = result.valid ? null : 'wrong';
    if (result.valid) {
      // A code is accepted once: remember the time step it belongs to for longer than it can be valid.
      const step = (result as { timeStep?: number }).timeStep ?? token;
      const fresh = await store.setIfAbsent(usedStepKey(userId, step), '1', 120);
      if (!fresh) reason = 'reused';
    }
    if (!reason) {
      await store.del(failKey);
      return;
    }
    const blocked = await this.recordFailure(actor, action, attempt, reason);
    if (blocked) throw this.blockedError(blocked);
    throw new StepUpError(
      reason === 'reused'
        ? 'That 2FA code was already used. Wait for the next code and try again.'
        : 'That 2FA code is not valid. Check your authenticator app and try again.',
      'totp',
    );
  }

  private blockedError(until: number): StepUpError {
    return new StepUpError(
      `Too many wrong 2FA codes: step-up is blocked for your account until ${md.date(new Date(until))}. ` +
        'The security channel was told. If it was not you, tell your security team.',
      'totp',
    );
  }

  /** Audit + log every failure; alert at the third; block at the limit. Returns the block end, if blocked now. */
  private async recordFailure(actor: Actor, action: string, attempt: number, reason: string): Promise<number | null> {
    const { store, logger, db, outbox, securityChannel } = this.deps;
    const userId = actor.user.id;
    let blockedUntil: number | null = null;
    let level = 0;
    if (attempt >= this.maxFailures) {
      level = await store.incr(`stepup:level:${userId}`, LEVEL_TTL_SECONDS);
      const seconds = STEPUP_BLOCKS_SECONDS[Math.min(level, STEPUP_BLOCKS_SECONDS.length) - 1];
      blockedUntil = Date.now() + seconds * 1000;
      await store.set(`stepup:block:${userId}`, String(blockedUntil), seconds);
      await store.del(`stepup:fail:${userId}`);
    }
    const details = {
      guarded_action: action,
      reason,
      failures_in_window: attempt,
      ...(blockedUntil ? { blocked_until: new Date(blockedUntil).toISOString(), block_level: level } : {}),
    };
    logger.warn({ stepup: { user: actor.user.username, slackUser: actor.slack.userId, ...details } }, 'step-up code refused');
    const alert = securityChannel && (attempt === STEPUP_ALERT_AT || blockedUntil !== null);
    await db.tx(async (q) => {
      await writeAudit(q, actor, { action: 'stepup_failed', entityType: 'user', entityId: userId, details });
      if (alert) {
        const who = mrkdwn`${md.user(actor.slack.userId)} (${actor.user.username})`;
        const text = blockedUntil
          ? mrkdwn`:rotating_light: Step-up blocked for ${who} until ${md.date(new Date(blockedUntil))} after ${attempt} wrong 2FA codes (last one guarding ${md.code(action)}).`
          : mrkdwn`:warning: ${attempt} wrong 2FA codes in ${STEPUP_WINDOW_SECONDS / 60} minutes from ${who} (last one guarding ${md.code(action)}). Someone may be guessing codes.`;
        await outbox.post(q, securityChannel, { text }, { dedupeKey: `stepup:${userId}:${blockedUntil ?? `w${Math.floor(Date.now() / (STEPUP_WINDOW_SECONDS * 1000))}`}` });
      }
    });
    return blockedUntil;
  }

  private async secretOf(userId: number): Promise<string | null> {
    const { rows } = await this.deps.db.query<{ totp_secret: string | null; two_fa_enabled: boolean | null }>(
      'SELECT totp_secret, two_fa_enabled FROM "user" WHERE id = $1',
      [userId],
    );
    const r = rows[0];
    return r && r.two_fa_enabled && r.totp_secret ? r.totp_secret : null;
  }
}
