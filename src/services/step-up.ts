import { verify } from 'otplib';
import type { Db } from '../db/index.js';
import { StepUpError } from '../errors.js';
import type { Store } from '../store/index.js';
import type { Actor } from './identity.js';

const FAILURE_WINDOW_SECONDS = 15 * 60;

/**
 * Step-up verification (DESIGN §3): destructive or privilege-granting actions ask the
 * acting admin for the current TOTP code of their own application account.
 * ±1 time step is accepted; each time step's code is accepted once; wrong codes are
 * counted and, past the limit, refused for a while.
 */
export class StepUpService {
  constructor(
    private readonly db: Db,
    private readonly store: Store,
    private readonly maxFailures = 5,
  ) {}

  /** True when the actor can step up at all (2FA enrolled). */
  async canStepUp(actor: Actor): Promise<boolean> {
    return (await this.secretOf(actor.user.id)) !== null;
  }

  async verify(actor: Actor, code: string | undefined | null): Promise<void> {
    const userId = actor.user.id;
    const secret = await this.secretOf(userId);
    if (!secret) {
      throw new StepUpError(
        'This action needs your 2FA code, but your account has no two-factor authentication. Enrol in the application first (Profile → Enable Two-Factor Authentication).',
        'totp',
      );
    }
    const failKey = `stepup:fail:${userId}`;
    const failures = Number((await this.store.get(failKey)) ?? 0);
    if (failures >= this.maxFailures) {
      throw new StepUpError('Too many wrong 2FA codes. Wait 15 minutes and try again.', 'totp');
    }
    const trimmed = (code ?? '').replace(/\s+/g, '');
    if (!/^\d{6}$/.test(trimmed)) {
      await this.store.incr(failKey, FAILURE_WINDOW_SECONDS);
      throw new StepUpError('Enter the 6-digit code from your authenticator app.', 'totp');
    }
    const result = await verify({ secret, token: trimmed, epochTolerance: 30 });
    if (!result.valid) {
      await this.store.incr(failKey, FAILURE_WINDOW_SECONDS);
      throw new StepUpError('That 2FA code is not valid. Check your authenticator app and try again.', 'totp');
    }
    // A code is accepted once: remember the time step it belongs to for longer than it can be valid.
    const fresh = await this.store.setIfAbsent(`stepup:used:${userId}:${(result as { timeStep?: number }).timeStep ?? trimmed}`, '1', 120);
    if (!fresh) {
      throw new StepUpError('That 2FA code was already used. Wait for the next code and try again.', 'totp');
    }
  }

  private async secretOf(userId: number): Promise<string | null> {
    const { rows } = await this.db.query<{ totp_secret: string | null; two_fa_enabled: boolean | null }>(
      'SELECT totp_secret, two_fa_enabled FROM "user" WHERE id = $1',
      [userId],
    );
    const r = rows[0];
    return r && r.two_fa_enabled && r.totp_secret ? r.totp_secret : null;
  }
}
