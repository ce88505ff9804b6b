import { z } from 'zod';
import type { ActionHandler, InteractionModule, ViewHandler } from './types.js';
import { parseButtonValue, parseModalMetadata, totpField } from './shared.js';
import { ConflictError } from '../src/errors.js';
import { STORM_ACTIONS } from '../src/slack/cards/storms.js';
import { md, mrkdwn } from '../src/ui.js';
import type { Queryable } from '../src/db/index.js';

/**
 * Buttons of a lockout storm's summary message (issue 12). Admins only: the router refuses
 * everyone else before these run (none is a member interaction) and the services check again.
 * "Unlock all listed" asks for the acting admin's 2FA code (step-up) and unlocks each account
 * with the same audited unlock as `/users unlock`.
 */

const stormValue = z.object({ s: z.number().int().positive() }).strict();
const AGAIN = 'the storm message in the security channel';

const clickUnlockAll: ActionHandler = async (ctx, value) => {
  const { s } = parseButtonValue(stormValue, value, AGAIN);
  const locked = await ctx.services.storms.lockedAlerts(s);
  if (!locked.length) return { kind: 'message', message: { text: mrkdwn`Every account of this storm is already unlocked.` } };
  const names = md.join(locked.slice(0, 30).map((a) => md.code(a.username)), ', ');
  return {
    kind: 'modal',
    modal: {
      callbackId: STORM_ACTIONS.unlockAll,
      title: 'Unlock all listed',
      submit: 'Unlock all',
      metadata: JSON.stringify({ s }),
      intro: mrkdwn`Unlock the *${locked.length}* account${locked.length === 1 ? '' : 's'} of storm #${s} that are still locked: ${names}${
        locked.length > 30 ? ` and ${locked.length - 30} more` : ''
      }? Their failed login counters are reset. In a credential-stuffing attack, make sure the attack has stopped (or the passwords were reset) first.`,
      fields: [totpField],
    },
  };
};

const submitUnlockAll: ViewHandler = async (ctx, values, metadata) => {
  const { s } = parseModalMetadata(stormValue, metadata);
  const { services, actor } = ctx;
  await services.stepUp.verify(actor, typeof values.totp === 'string' ? values.totp : null, 'unlock_all');
  const locked = await services.storms.lockedAlerts(s);
  // A hundred audited unlocks can take longer than Slack's 3 seconds: the form closes at once
  // and the storm message shows the result. Each unlock commits on its own with its audit row
  // AND the storm's mark of that account, so a stop half-way leaves nothing listed wrong, and
  // clicking again unlocks exactly the rest.
  const mark = (alertId: number) => (q: Queryable) =>
    services.storms.markOneUnlocked(q, actor, s, alertId, (tq, id) => services.lockouts.cardOf(tq, id));
  const work = (async () => {
    for (const a of locked) {
      try {
        // The same unlock as `/users unlock` (admin check, guide's SQL, unlock_account audit row);
        // the one step-up above covers the whole batch.
        await services.userAdmin.unlockAfterStepUp(actor, a.username, { alsoInTx: mark(a.id) });
      } catch (e) {
        // Unlocked elsewhere meanwhile (or disabled): nothing to do; the record says it is not locked.
        if (!(e instanceof ConflictError)) throw e;
        await services.db.tx(mark(a.id));
      }
    }
    await services.storms.markAllUnlocked(actor, s);
  })();
  work.catch((err: unknown) => services.logger.error({ err, storm: s }, 'unlocking the accounts of a storm stopped; click again to finish the rest'));
  return {
    kind: 'close',
    notice: {
      text: mrkdwn`:unlock: Unlocking ${locked.length} account${locked.length === 1 ? '' : 's'} of storm #${s} (one audit row each). The storm message shows when it is done and who did it.`,
    },
  };
};

const clickCards: ActionHandler = async (ctx, value) => {
  const { s } = parseButtonValue(stormValue, value, AGAIN);
  const n = await ctx.services.storms.postCards(ctx.actor, s, (q, alertId) => ctx.services.lockouts.cardOf(q, alertId));
  return {
    kind: 'message',
    message: { text: n ? mrkdwn`Posting ${n} individual card${n === 1 ? '' : 's'} in the storm's thread (about one a second).` : mrkdwn`Every lockout of this storm already has its card.` },
  };
};

export const stormInteractions: InteractionModule = {
  actions: {
    [STORM_ACTIONS.unlockAll]: clickUnlockAll,
    [STORM_ACTIONS.cards]: clickCards,
  },
  views: {
    [STORM_ACTIONS.unlockAll]: submitUnlockAll,
  },
};
