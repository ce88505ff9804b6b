import crypto from 'node:crypto';
import type { App } from '@slack/bolt';
import { request } from 'undici';
import { helpText, tokenize } from '../../commands/grammar.js';
import {
  type ActionHandler,
  type ActionReply,
  type CommandModule,
  type InteractionContext,
  type InteractionModule,
  type Reply,
  PROGRESS_VIEWS,
  type ViewHandler,
} from '../../commands/types.js';
import { UserError, ValidationErrors } from '../errors.js';
import { describeDbError, isDatabaseConnectionError } from '../services/database-outage.js';
import { StoreUnavailableError } from '../store/index.js';
import type { Logger } from '../logger.js';
import { requireAdmin, type SlackIdentity } from '../services/identity.js';
import type { Services } from '../services/index.js';
import { cleanText, md, mrkdwn, type Message, type Modal, type Mrkdwn } from '../ui.js';
import { messagePayload, modalView, readModalValues } from './blocks.js';
import { markDuplicate, noteAccount, requestRef } from './request-log.js';
import { allowedResponseUrl, createEnvelopeSealer, type Envelope, type EnvelopeSealer } from './envelope.js';
import { DUPLICATE_KEY_TTL_SECONDS } from './receiver.js';

/**
 * Wires slash commands, buttons and modal submissions to Warden's Slack-free handlers.
 * Every request: ack first (Slack's 3-second rule), resolve the Slack user to an
 * application account, check the role, run, deliver. One error path turns domain errors
 * into ephemeral replies or modal field errors; anything unexpected becomes a short
 * apology with a reference that matches the log line.
 */


type Respond = (payload: Record<string, unknown>) => Promise<unknown>;

export interface RouterDeps {
  services: Services;
  commands: CommandModule[];
  interactionModules: InteractionModule[];
  logger: Logger;
  /** Told of every error answer (the console's scripted runs exit non-zero on one). */
  onErrorReply?: ErrorReplyObserver;
}

/** Who got an error answer, and through which response_url (absent for modal field errors). */
export type ErrorReplyObserver = (e: { userId: string; responseUrl?: string; kind: 'user' | 'failure' }) => void;

export function registerRoutes(app: App, deps: RouterDeps): void {
  const { services, logger } = deps;
  // Modal envelopes are sealed (HMAC) so a forged submission cannot choose where answers go.
  const cfg = services.config;
  const sealer = createEnvelopeSealer(cfg.SLACK_SIGNING_SECRET ?? cfg.SLACK_APP_TOKEN ?? cfg.SLACK_BOT_TOKEN);
  const postToResponseUrl = (url: string, payload: Record<string, unknown>) => postToSlackResponseUrl(url, payload, cfg.SLACK_API_URL);
  // Replies to a command or click go to the response_url of its Slack-signed body through
  // undici's request(), not Bolt's respond(): that one goes through the WHATWG fetch, which took
  // ~0.6 ms per reply before the first byte left (#15), and has no timeout. Like respond(), an
  // HTTP error from Slack (an expired or over-used response_url) does not throw; it is logged.
  const replyVia = (url: string | undefined, boltRespond: unknown): Respond => {
    if (!url) return boltRespond as Respond;
    return async (payload) => {
      const status = await postJson(url, payload);
      if (status >= 300) logger.warn({ status }, 'Slack refused a reply to a response_url');
    };
  };
  const actions = new Map<string, ActionHandler>();
  const views = new Map<string, ViewHandler>();
  const memberInteractions = new Set<string>();
  for (const mod of [...deps.commands, ...deps.interactionModules]) {
    for (const [id, h] of Object.entries(mod.actions ?? {})) actions.set(id, h);
    for (const [id, h] of Object.entries(mod.views ?? {})) views.set(id, h);
    for (const id of mod.memberInteractions ?? []) memberInteractions.add(id);
  }

  // A Slack retry re-sends the very same body; a genuine second command, click or submission
  // always has a new trigger_id. One store call (SET NX) per request, started right after the
  // ack and awaited only before anything is done or answered, so its round trip overlaps the
  // account lookup instead of adding to it. Modal submissions check before their ack, which
  // carries the answer.
  const firstDelivery = async (body: unknown): Promise<boolean> => {
    // Redis first; the database when Redis is down (services/deliveries.ts). Kept for as long as
    // the same signed bytes could be accepted again (src/slack/receiver.ts).
    const first = await services.deliveries.first(deliveryKey(body), DUPLICATE_KEY_TTL_SECONDS);
    if (!first) {
      markDuplicate(body);
      logger.info({ type: (body as any).type ?? 'slash_command' }, 'duplicate Slack delivery ignored');
    }
    return first;
  };

  // The account the request acts as, also written on its request log line.
  const actorOf = async (body: unknown, slack: SlackIdentity) => {
    const actor = await services.identity.resolve(slack);
    noteAccount(body, actor.user.id);
    return actor;
  };

  // What a person reads when something goes wrong. A UserError's text is data unless it was
  // built as mrkdwn (a mention Warden makes): what a user typed and is echoed back stays inert.
  const fail = (e: unknown, where: string, body: unknown): { text: Mrkdwn; usage?: Mrkdwn } => {
    // The request's id (also in its request log line); records the outcome for that line.
    const ref = requestRef(body, e);
    if (e instanceof UserError) return { text: mrkdwn`:warning: ${e.mrkdwn ?? md.lines(e.message)}`, usage: e.usage ? md.lines(e.usage) : undefined };
    // Outages are not bugs: say what is down, that nothing changed, and where on-call should look.
    if (e instanceof StoreUnavailableError) {
      logger.error({ err: e, ref, where }, 'store (Redis) unavailable while handling a Slack request');
      return {
        text: mrkdwn`:red_circle: Warden cannot reach its store (Redis) right now, which step-up checks, one-time codes and rate limits need. Nothing was changed; try again in a moment. On-call: check Redis and REDIS_URL (ref ${md.code(ref)}).`,
      };
    }
    if (isDatabaseConnectionError(e)) {
      logger.error({ err: e, ref, where }, 'database unavailable while handling a Slack request');
      return {
        text: mrkdwn`:red_circle: Warden cannot reach the application database right now (${describeDbError(e)}). Nothing was changed; try again in a moment. On-call: check PostgreSQL and DATABASE_URL (ref ${md.code(ref)}).`,
      };
    }
    logger.error({ err: e, ref, where }, 'unexpected error while handling a Slack request');
    return { text: mrkdwn`:x: Sorry, something went wrong on our side (ref ${md.code(ref)}). The error has been logged.` };
  };

  const errorMessage = (e: unknown, where: string, body: unknown, to: { userId: string; responseUrl?: string }): Message => {
    deps.onErrorReply?.({ ...to, kind: e instanceof UserError ? 'user' : 'failure' });
    const f = fail(e, where, body);
    return { text: f.usage ? mrkdwn`${f.text}\nUsage: ${f.usage}` : f.text };
  };

  // One listener for every command, dispatched by name: Bolt runs each registered listener's
  // matching middleware on every request, so five app.command() calls cost five passes.
  const byCommand = new Map(deps.commands.map((mod) => [mod.command, { mod, help: helpText(mod.command, mod.summary, mod.subcommands) }]));
  const commandPattern = new RegExp(`^(?:${[...byCommand.keys()].map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})$`);
  app.command(commandPattern, async ({ command, ack, respond: boltRespond, client, body }) => {
    await ack();
    const respond = replyVia(command.response_url, boltRespond);
    const { mod, help } = byCommand.get(command.command)!;
    const first = firstDelivery(body);
    try {
      const words = tokenize(command.text ?? '');
      const name = (words[0] ?? mod.defaultSubcommand ?? 'help').toLowerCase();
      if (name === 'help' || name === '-h' || name === '--help') {
        if (!(await first)) return;
        await respond({ response_type: 'ephemeral', ...messagePayload({ text: md.lines(help) }) });
        return;
      }
      let sub = mod.subcommands.find((s) => s.name === name);
      let subWords = words[0] === undefined ? [] : words.slice(1);
      if (!sub && mod.fallbackSubcommand && words[0] !== undefined) {
        // e.g. `/audit action:login_failed since:24h`: every word goes to the fallback's grammar.
        sub = mod.subcommands.find((s) => s.name === mod.fallbackSubcommand);
        subWords = words;
      }
      if (!sub) throw new UserError(`Unknown subcommand \`${words[0]}\`.\n${help}`);
      const slack: SlackIdentity = { userId: command.user_id, teamId: command.team_id, channelId: command.channel_id };
      const actor = await actorOf(body, slack);
      if (sub.role === 'admin') requireAdmin(actor, `use \`${mod.command} ${sub.name}\``);
      const args = sub.parse(subWords);
      let reply: Reply;
      if (sub.readOnly) {
        // Reads overlap the duplicate check; a retry's answer is dropped.
        const [isFirst, read] = await Promise.all([first, sub.run({ actor, services }, args)]);
        if (!isFirst) return;
        reply = read;
      } else {
        if (!(await first)) return;
        reply = await sub.run({ actor, services }, args);
      }
      await deliver(reply, {
        respond: respond as Respond,
        openModal: (view) => client.views.open({ trigger_id: command.trigger_id, view } as any).then(() => undefined),
        envelope: { m: '', ch: command.channel_id, ru: command.response_url },
        sealer,
      });
    } catch (e) {
      if (!(await first)) return;
      await (respond as Respond)({ response_type: 'ephemeral', ...messagePayload(errorMessage(e, mod.command, body, { userId: command.user_id, responseUrl: command.response_url })) }).catch(
        (err) => logger.error({ err }, 'could not deliver an error reply'),
      );
    }
  });

  app.action(/.*/, async ({ ack, body, action, respond: boltRespond, client }) => {
    await ack();
    const actionId = (action as any).action_id as string;
    const b = body as any;
    const respond = replyVia(b.response_url, boltRespond);
    const handler = actions.get(actionId);
    if (!handler) {
      // Link buttons also send a click; they have nothing to run.
      if (!(action as any).url) logger.warn({ actionId }, 'click on an unknown action');
      return;
    }
    const first = firstDelivery(body);
    try {
      const slack: SlackIdentity = {
        userId: b.user.id,
        teamId: b.team?.id ?? b.user.team_id,
        channelId: b.channel?.id ?? b.container?.channel_id,
      };
      const actor = await actorOf(body, slack);
      if (!memberInteractions.has(actionId)) requireAdmin(actor, 'use this button');
      if (!(await first)) return;
      const ctx: InteractionContext = {
        actor,
        services,
        source: { channelId: slack.channelId, messageTs: b.message?.ts ?? b.container?.message_ts },
      };
      const reply = await handler(ctx, String((action as any).value ?? ''));
      await deliver(reply, {
        respond: respond as Respond,
        openModal: (view) => client.views.open({ trigger_id: b.trigger_id, view } as any).then(() => undefined),
        envelope: { m: '', ch: ctx.source?.channelId, ts: ctx.source?.messageTs, ru: b.response_url },
        sealer,
      });
    } catch (e) {
      if (!(await first)) return;
      await (respond as Respond)({
        response_type: 'ephemeral',
        replace_original: false,
        ...messagePayload(errorMessage(e, actionId, body, { userId: b.user.id, responseUrl: b.response_url })),
      }).catch((err) => logger.error({ err }, 'could not deliver an error reply'));
    }
  });

  app.view(/.*/, async ({ ack, body, view, client }) => {
    const callbackId = view.callback_id;
    const firstField = (view.blocks ?? []).find((bl: any) => bl.type === 'input')?.block_id as string | undefined;
    // Routing fields only when the seal verifies; a modal Warden did not open has none.
    // The channel (for the audit rows the handler writes, and the notice) comes from this
    // HMAC-authenticated envelope because Slack's view_submission payload carries no channel
    // (its `response_urls` exist only for conversation selects with response_url_enabled and
    // name the conversation picked in the form). If Slack ever sends the originating channel,
    // prefer it to the envelope's. See docs/SECURITY.md, "Output".
    const envelope: Envelope = sealer.open(view.private_metadata);
    // Field errors are plain text in Slack (never parsed): cleaned and cut to Slack's limit.
    const fieldErrors = (errors: Record<string, string>) =>
      (ack as any)({
        response_action: 'errors',
        errors: Object.fromEntries(Object.entries(errors).map(([k, v]) => [k, cleanText(v, true).slice(0, 2000)])),
      }) as Promise<void>;
    // Views that only report (a progress reply's): nothing to run. Slack shows them no submit button.
    if (callbackId === PROGRESS_VIEWS.working || callbackId === PROGRESS_VIEWS.done) return ack();
    const first = firstDelivery(body);
    try {
      const handler = views.get(callbackId);
      if (!handler) throw new UserError('This form is not handled by Warden any more. Close it and start again.');
      const b = body as any;
      const slack: SlackIdentity = { userId: b.user.id, teamId: b.team?.id ?? b.user.team_id, channelId: envelope.ch };
      const actor = await actorOf(body, slack);
      if (!memberInteractions.has(callbackId)) requireAdmin(actor, 'submit this form');
      if (!(await first)) return ack();
      const values = readModalValues(view.state?.values as any);
      const reply = await handler(
        { actor, services, source: { channelId: envelope.ch, messageTs: envelope.ts } },
        values,
        envelope.m ?? '',
      );
      switch (reply.kind) {
        case 'errors':
          await fieldErrors(reply.errors);
          return;
        case 'update':
        case 'push':
          await (ack as any)({
            response_action: reply.kind,
            view: modalView(reply.modal, sealer.seal({ ...envelope, m: reply.modal.metadata ?? '' })),
          });
          return;
        case 'progress': {
          // Ack first: Slack gets the "working on it" view now; the e-mail or DM runs after.
          await (ack as any)({ response_action: 'update', view: modalView(reply.modal, sealer.seal({ ...envelope, m: reply.modal.metadata ?? '' })) });
          const viewId = (body as any).view?.id as string | undefined;
          const done: { modal: Modal; notice: Message } = await reply.finish().catch((e) => {
            const text = errorMessage(e, callbackId, body, { userId: slack.userId }).text;
            return { modal: { callbackId: PROGRESS_VIEWS.done, title: reply.modal.title, close: 'Close', intro: text, fields: [] }, notice: { text } };
          });
          try {
            if (!viewId) throw new Error('the submission named no view');
            await client.views.update({ view_id: viewId, view: modalView(done.modal, sealer.seal({ ...envelope, m: done.modal.metadata ?? '' })) } as any);
          } catch (err) {
            // The user closed the form meanwhile (Slack: not_found): the outcome comes as a DM.
            logger.info({ err: { message: (err as Error).message }, callbackId }, 'the form is gone; its outcome is sent as a DM');
            await services.chat.dm(slack.userId, done.notice).catch((e2) => logger.error({ err: e2 }, 'could not DM the outcome of a form'));
          }
          return;
        }
        case 'close':
          await ack();
          if (reply.updateSource && envelope.ru) {
            await postToResponseUrl(envelope.ru, { replace_original: true, ...messagePayload(reply.updateSource) }).catch(
              (err) => logger.warn({ err }, 'could not update the source message'),
            );
          }
          if (reply.notice) await notify(reply.notice, slack, envelope, client);
          return;
      }
    } catch (e) {
      if (!(await first)) return ack();
      if (e instanceof ValidationErrors) return fieldErrors(e.fields);
      const message = fail(e, callbackId, body).text;
      const field = e instanceof UserError && e.field ? e.field : firstField;
      // A field error is plain text: the message as written (a UserError's own words), not escaped.
      if (field) return fieldErrors({ [field]: e instanceof UserError ? `:warning: ${e.message}` : message.text });
      await ack();
      await notify({ text: message }, { userId: (body as any).user.id, teamId: '' }, envelope, client).catch(() => {});
    }
  });

  /** Sends a notice after a modal closed: to the conversation it came from, else as a DM. */
  async function notify(message: Message, slack: SlackIdentity, envelope: Envelope, client: App['client']) {
    try {
      if (envelope.ru) {
        await postToResponseUrl(envelope.ru, { response_type: 'ephemeral', replace_original: false, ...messagePayload(message) });
        return;
      }
      if (envelope.ch) {
        await client.chat.postEphemeral({ channel: envelope.ch, user: slack.userId, ...messagePayload(message) } as any);
        return;
      }
    } catch (err) {
      logger.warn({ err }, 'could not post a notice where the modal came from; sending a DM');
    }
    await services.chat.dm(slack.userId, message).catch((err) => logger.error({ err }, 'could not DM a notice'));
  }
}

/**
 * The store key that identifies one delivery: Slack's trigger_id, which a retry re-sends and
 * every new command, click or submission replaces; an event's event_id. Only a payload with
 * neither is hashed (no body hash for commands, clicks or submissions).
 */
export function deliveryKey(body: unknown): string {
  const b = body as { type?: string; trigger_id?: unknown; event_id?: unknown };
  const kind = b.type ?? 'command';
  if (typeof b.trigger_id === 'string' && b.trigger_id) return `dedupe:${kind}:${b.trigger_id}`;
  if (typeof b.event_id === 'string' && b.event_id) return `dedupe:event:${b.event_id}`;
  return `dedupe:${kind}:#${crypto.createHash('sha256').update(JSON.stringify(body)).digest('hex')}`;
}

/** POSTs JSON to a response_url and returns Slack's HTTP status (5 s to answer). */
async function postJson(url: string, payload: Record<string, unknown>): Promise<number> {
  const res = await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(payload),
    headersTimeout: 5000,
    bodyTimeout: 5000,
  });
  await res.body.dump();
  return res.statusCode;
}

/** A response_url that came through a modal's envelope: followed only to Slack's hosts; an HTTP error throws. */
async function postToSlackResponseUrl(url: string, payload: Record<string, unknown>, apiUrl: string | undefined): Promise<void> {
  // Only Slack's hosts (and the configured Web API host): never a URL someone wrote into a payload.
  if (!allowedResponseUrl(url, apiUrl)) throw new Error('response_url is not on a Slack host; not followed');
  const status = await postJson(url, payload);
  if (status >= 300) throw new Error(`response_url answered HTTP ${status}`);
}

async function deliver(
  reply: ActionReply,
  io: { respond: Respond; openModal: (view: object) => Promise<void>; envelope: Envelope; sealer: EnvelopeSealer },
): Promise<void> {
  switch (reply.kind) {
    case 'none':
      return;
    case 'message':
      await io.respond({
        response_type: reply.visibility ?? 'ephemeral',
        replace_original: false,
        ...messagePayload(reply.message),
      });
      return;
    case 'update':
      await io.respond({ replace_original: true, ...messagePayload(reply.message) });
      return;
    case 'update_and_message':
      await io.respond({ replace_original: true, ...messagePayload(reply.update) });
      await io.respond({ response_type: 'ephemeral', replace_original: false, ...messagePayload(reply.message) });
      return;
    case 'modal':
      await io.openModal(modalView(reply.modal, io.sealer.seal({ ...io.envelope, m: reply.modal.metadata ?? '' })));
      return;
  }
}

export type { Reply };
