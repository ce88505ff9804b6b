import { z } from 'zod';
import type { ViewHandler, ActionHandler, InteractionModule } from './types.js';
import { parseButtonValue, parseModalMetadata, totpField } from './shared.js';
import { md, mrkdwn } from '../src/ui.js';
import { lockoutAttemptsMessage } from '../src/slack/cards/lockouts.js';

/**
 * Buttons of the security alerts (issue 7): the lockout card's Unlock and Show attempts.
 * The router already refuses non-admins (none of these is a member interaction); the
 * services check again.
 */

const alertValue = z.object({ a: z.number().int().positive() }).strict();
const AGAIN = 'the lockout card in the security channel';

/** Unlock: asks for the acting admin's 2FA code first (the card sits in a channel anyone can click in). */
const clickUnlock: ActionHandler = async (ctx, value) => {
  const { a } = parseButtonValue(alertValue, value, AGAIN);
  const alert = await ctx.services.lockouts.get(a);
  if (alert.unlocked_at) {
    return {
      kind: 'message',
      message: { text: mrkdwn`${alert.username} was already unlocked by ${alert.unlocked_by ?? 'an admin'} at ${md.date(alert.unlocked_at)}.` },
    };
  }
  return {
    kind: 'modal',
    modal: {
      callbackId: 'alerts:unlock',
      title: 'Unlock account',
      submit: 'Unlock',
      metadata: JSON.stringify({ a }),
      intro: mrkdwn`Unlock ${md.bold(alert.username)}, locked at ${md.date(alert.locked_at)}? Its failed login counter is reset and it can sign in again at once.`,
      fields: [totpField],
    },
  };
};

const submitUnlock: ViewHandler = async (ctx, values, metadata) => {
  const { a } = parseModalMetadata(alertValue, metadata);
  const { services, actor } = ctx;
  const alert = await services.lockouts.get(a);
  // The same unlock as `/users unlock`, with the same step-up rule (admin check, guide's SQL,
  // unlock_account audit row), with the card marked unlocked in the same transaction: a crash
  // between the two would leave the card "locked" forever and a second Unlock answering
  // "nothing to unlock".
  const r = await services.userAdmin.unlock(actor, alert.username, typeof values.totp === 'string' ? values.totp : null, {
    alsoInTx: async (q) => void (await services.lockouts.markUnlocked(actor, a, q)),
  });
  return {
    kind: 'close',
    notice: {
      text: mrkdwn`:unlock: Unlocked ${md.bold(alert.username)} (${r.before.failed_login_attempts ?? 0} failed attempts cleared). The alert shows who unlocked it.`,
    },
  };
};

const clickAttempts: ActionHandler = async (ctx, value) => {
  const { a } = parseButtonValue(alertValue, value, AGAIN);
  return { kind: 'message', message: lockoutAttemptsMessage(await ctx.services.lockouts.showAttempts(ctx.actor, a), ctx.services.masker) };
};

export const alertsInteractions: InteractionModule = {
  actions: {
    'alerts:unlock': clickUnlock,
    'alerts:attempts': clickAttempts,
  },
  views: {
    'alerts:unlock': submitUnlock,
  },
};
