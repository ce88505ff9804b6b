import { z } from 'zod';
import { ConflictError, UserError } from '../src/errors.js';
import type { Services } from '../src/services/index.js';
import {
  describeAge,
  NOTES_MAX,
  PROMOTION_ACTIONS,
  REJECTION_MAX,
  REJECTION_MIN,
  validateReason,
  type Decision,
  type PromotionView,
} from '../src/services/promotions.js';
import { md, mrkdwn, type Block, type Message, type Modal, type Mrkdwn } from '../src/ui.js';
import { renderCard } from '../src/slack/cards/promotions.js';
import { noArgs, parseArgs } from './grammar.js';
import { parseButtonValue, parseModalMetadata, totpField } from './shared.js';
import type { ActionHandler, CommandModule, InteractionContext, Subcommand, ViewHandler, ViewReply } from './types.js';

/** `/promotions`: the guide's "Manage Promotion Requests" workflow, decided in Slack (issue 4). */

const LIST_USAGE = '`/promotions list`';
const SHOW_USAGE = '`/promotions show ID`';
const REQUEST_USAGE = '`/promotions request REASON` (10–500 characters)';

const idSchema = z.coerce
  .number({ error: () => 'ID must be a request number, e.g. `/promotions show 12`' })
  .int('ID must be a whole number')
  .positive('ID must be a positive number')
  .max(2_147_483_647, 'ID is too large');

const list: Subcommand<Record<string, never>> = {
  name: 'list',
  usage: 'list',
  summary: 'pending promotion requests, oldest first, with their age',
  role: 'admin',
  parse: (words) => parseArgs(words, { schema: noArgs, usage: LIST_USAGE }) as Record<string, never>,
  run: async (ctx) => ({ kind: 'message', message: await renderList(ctx.services, ctx.actor) }),
};

const show: Subcommand<{ id: number }> = {
  name: 'show',
  usage: 'show ID',
  summary: 'one request in any state, with the requester’s history and the decision record',
  role: 'linked',
  parse: (words) => parseArgs(words, { positional: ['id'], schema: z.object({ id: idSchema }).strict(), usage: SHOW_USAGE }),
  run: async (ctx, { id }) => {
    const view = await ctx.services.promotions.show(ctx.actor, id);
    const message = renderCard(view, ctx.services.masker, ctx.services.config.PROMOTION_TTL);
    // Only admins get the decision buttons (the handlers would refuse anyone else anyway).
    if (ctx.actor.user.role !== 'admin') message.blocks = message.blocks?.filter((b) => b.type !== 'buttons');
    return { kind: 'message', message };
  },
};

const request: Subcommand<{ reason: string }> = {
  name: 'request',
  usage: 'request REASON',
  summary: 'ask the admins to make you an admin (linked non-admins; one pending request at a time)',
  role: 'linked',
  // The reason is free text: taken verbatim (no `key:value` options), so "note: x" is fine.
  parse: (words) => {
    try {
      return { reason: validateReason(words.join(' ')) };
    } catch (e) {
      throw new UserError((e as Error).message, undefined, REQUEST_USAGE);
    }
  },
  run: async (ctx, { reason }) => {
    const { request: r, card } = await ctx.services.promotions.request(ctx.actor, reason);
    const where = card
      ? mrkdwn`posted for review in ${ctx.services.config.APPROVALS_CHANNEL ?? 'the approvals channel'}`
      : mrkdwn`recorded; the admins see it in \`/promotions list\``;
    return {
      kind: 'message',
      message: {
        text: mrkdwn`:inbox_tray: Your request #${r.id} to become an admin was ${where}. You will get a DM when an admin decides; it expires after ${describeTtl(ctx.services)} without a decision. Check it any time with ${md.code(`/promotions show ${r.id}`)}.`,
      },
    };
  },
};

function describeTtl(services: Services): string {
  const s = services.config.PROMOTION_TTL;
  return s % 86400 === 0 ? `${s / 86400} days` : s % 3600 === 0 ? `${s / 3600} hours` : `${Math.round(s / 60)} minutes`;
}

async function renderList(services: Services, actor: InteractionContext['actor']): Promise<Message> {
  const { rows, total } = await services.promotions.listPending(actor);
  if (total === 0) return { text: mrkdwn`No pending promotion requests.` };
  const lines = rows.map((r) => {
    const reason = r.reason.length > 80 ? `${r.reason.slice(0, 79)}…` : r.reason;
    return mrkdwn`• *#${r.id}* ${r.username} (${r.role}) · waiting ${describeAge(r.requested_at)} · _${reason}_`;
  });
  const blocks: Block[] = [
    { type: 'text', text: mrkdwn`*${total} pending promotion request${total === 1 ? '' : 's'}*, oldest first` },
    { type: 'text', text: md.join(lines, '\n') },
  ];
  if (total > rows.length) blocks.push({ type: 'context', text: mrkdwn`${total - rows.length} more not shown.` });
  blocks.push({ type: 'context', text: mrkdwn`Review one: \`/promotions show ID\`` });
  return { text: mrkdwn`${total} pending promotion requests`, blocks };
}

// ── Buttons and modals ────────────────────────────────────────────────────────────────

const refSchema = z.object({ r: z.number().int().positive().max(2_147_483_647) }).strict();

/** A stale or raced click: make sure the channel card shows the outcome, then say who decided. */
async function refreshOnConflict<T>(services: Services, id: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ConflictError) {
      await services.promotions
        .load(id)
        .then((v) => services.promotions.refreshCard(v))
        .catch((err) => services.logger.warn({ err, request: id }, 'could not refresh a stale promotion card'));
    }
    throw e;
  }
}

function summary(view: PromotionView): Mrkdwn {
  const u = view.requester;
  const lines = [
    mrkdwn`${md.bold(u.username)} (${u.role}${u.dispatch_area ? `, ${u.dispatch_area}` : ''}) asks to become *admin* (request #${view.request.id}).`,
    // Every line of the reason quoted: a line break in it cannot step out of the quote.
    md.quote(view.request.reason),
    mrkdwn`Last 30 days: ${plural(view.history.failedLogins, 'failed login')}, ${plural(view.history.lockouts, 'lockout')}, ${plural(view.history.roleChanges, 'role change')}.`,
  ];
  if (!u.two_fa_enabled) lines.push(mrkdwn`:warning: They have no 2FA: admins must enable it, and they will be told so.`);
  return md.join(lines, '\n');
}

const openApprove: ActionHandler = async (ctx, value) => {
  const { r } = parseButtonValue(refSchema, value, '/promotions list');
  const view = await refreshOnConflict(ctx.services, r, () => ctx.services.promotions.prepareApprove(ctx.actor, r));
  const modal: Modal = {
    callbackId: PROMOTION_ACTIONS.approve,
    title: 'Approve promotion',
    submit: 'Approve',
    metadata: JSON.stringify({ r }),
    intro: mrkdwn`${summary(view)}\n\nApproving grants *full system access*.`,
    fields: [
      { id: 'notes', label: 'Admin notes (optional)', kind: 'multiline', optional: true, maxLength: NOTES_MAX, hint: 'Shown to the requester and on the card.' },
      totpField,
    ],
  };
  return { kind: 'modal', modal };
};

const openReject: ActionHandler = async (ctx, value) => {
  const { r } = parseButtonValue(refSchema, value, '/promotions list');
  const view = await refreshOnConflict(ctx.services, r, () => ctx.services.promotions.prepareReject(ctx.actor, r));
  const modal: Modal = {
    callbackId: PROMOTION_ACTIONS.reject,
    title: 'Reject promotion',
    submit: 'Reject',
    metadata: JSON.stringify({ r }),
    intro: summary(view),
    fields: [
      {
        id: 'reason',
        label: 'Reason for rejection',
        kind: 'multiline',
        maxLength: REJECTION_MAX,
        hint: `Required, at least ${REJECTION_MIN} characters. The requester reads it.`,
      },
    ],
  };
  return { kind: 'modal', modal };
};

/**
 * How the requester heard of the decision, truthfully: the in-app notification is always
 * written (with the decision); a Slack DM went to their linked Slack account(s), or, without a
 * link, to the Slack user their e-mail designates under the linking rules — or to nobody, and why.
 */
function howTold(v: Decision): Mrkdwn {
  const told = v.told;
  if (told.via === 'link') return mrkdwn`in the application (notification) and by Slack DM to ${md.join(told.slackUserIds.map((u) => md.user(u)), ', ')}`;
  if (told.via === 'email') {
    return mrkdwn`in the application (notification) and by Slack DM to ${md.user(told.slackUserId)} (found by their e-mail address; no Slack link was recorded)`;
  }
  return mrkdwn`in the application (notification) only. No Slack DM was sent: ${told.why}`;
}

/** Closes the modal; a lost race or stale form is answered where the click came from. */
async function decide(
  ctx: InteractionContext,
  id: number,
  fn: () => Promise<Decision>,
  done: (v: Decision, told: Mrkdwn) => Mrkdwn,
): Promise<ViewReply> {
  try {
    const view = await fn();
    const told = howTold(view);
    const updated = renderCard(view, ctx.services.masker, ctx.services.config.PROMOTION_TTL);
    // The channel card is updated by the service; a copy shown elsewhere (e.g. /promotions show) is replaced here.
    const fromElsewhere = ctx.source?.messageTs && ctx.source.messageTs !== view.card?.ts;
    return { kind: 'close', notice: { text: done(view, told) }, ...(fromElsewhere ? { updateSource: updated } : {}) };
  } catch (e) {
    if (e instanceof ConflictError) {
      // Make sure the channel card shows the outcome; not awaited (the submission must be answered fast).
      void ctx.services.promotions
        .load(id)
        .then((v) => ctx.services.promotions.refreshCard(v))
        .catch((err) => ctx.services.logger.warn({ err, request: id }, 'could not refresh a stale promotion card'));
      return { kind: 'close', notice: { text: mrkdwn`:information_source: ${e.mrkdwn ?? md.lines(e.message)}` } };
    }
    throw e;
  }
}

const submitApprove: ViewHandler = async (ctx, values, metadata) => {
  const { r } = parseModalMetadata(refSchema, metadata);
  const notes = typeof values.notes === 'string' ? values.notes : undefined;
  const totp = typeof values.totp === 'string' ? values.totp : undefined;
  return decide(
    ctx,
    r,
    () => ctx.services.promotions.approve(ctx.actor, r, { notes, totp }),
    (v, told) =>
      mrkdwn`:white_check_mark: Approved request #${v.request.id}: ${md.bold(v.requester.username)} is now an admin. They were told ${told}.${
        v.requester.two_fa_enabled ? '' : ' They have no 2FA yet: the message asks them to enable it.'
      }`,
  );
};

const submitReject: ViewHandler = async (ctx, values, metadata) => {
  const { r } = parseModalMetadata(refSchema, metadata);
  const reason = typeof values.reason === 'string' ? values.reason : undefined;
  return decide(
    ctx,
    r,
    () => ctx.services.promotions.reject(ctx.actor, r, { reason }),
    (v, told) => mrkdwn`:no_entry: Rejected request #${v.request.id} of ${md.bold(v.requester.username)}. They were told the reason ${told}.`,
  );
};

export const promotionsCommand: CommandModule = {
  command: '/promotions',
  summary: 'requests to become admin: ask, review, approve or reject',
  subcommands: [list, show, request],
  actions: {
    [PROMOTION_ACTIONS.approve]: openApprove,
    [PROMOTION_ACTIONS.reject]: openReject,
  },
  views: {
    [PROMOTION_ACTIONS.approve]: submitApprove,
    [PROMOTION_ACTIONS.reject]: submitReject,
  },
  // No member interactions: every button and form here is for admins (the router refuses others first).
};

const plural = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : 's'}`;
