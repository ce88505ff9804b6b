import type { z } from 'zod';
import type { Services } from '../src/services/index.js';
import type { Actor } from '../src/services/identity.js';
import type { Message, Modal, ModalValues, Visibility } from '../src/ui.js';

/**
 * The shape of a slash command, independent of Slack. The Slack layer (src/slack/router.ts)
 * resolves the actor, checks the role, parses the text with the subcommand's grammar and
 * delivers the Reply; the console drives the very same path.
 */

export interface CommandContext {
  actor: Actor;
  services: Services;
}

/** A click or a modal submission: also knows which message it came from. */
export interface InteractionContext extends CommandContext {
  source?: { channelId?: string; messageTs?: string };
}

export type Reply =
  | { kind: 'message'; message: Message; visibility?: Visibility }
  | { kind: 'modal'; modal: Modal }
  | { kind: 'none' };

/** What a button click answers. `update` replaces the message that holds the button. */
export type ActionReply =
  | Reply
  | { kind: 'update'; message: Message }
  | { kind: 'update_and_message'; update: Message; message: Message };

/** Views of a progress reply: "working on it", then its outcome. Neither has anything to submit. */
export const PROGRESS_VIEWS = { working: 'warden:progress', done: 'warden:done' } as const;

/** What a modal submission answers. */
export type ViewReply =
  | { kind: 'close'; notice?: Message; updateSource?: Message }
  | { kind: 'errors'; errors: Record<string, string> }
  | { kind: 'update'; modal: Modal }
  | { kind: 'push'; modal: Modal }
  | {
      /**
       * Ack first (issue 12), for work with external I/O (e-mail, DMs): the form is answered at
       * once with `modal` (saying what is happening), then `finish` runs; its modal replaces the
       * same view, or its notice is sent as a DM when the view is gone (closed by the user).
       */
      kind: 'progress';
      modal: Modal;
      finish: () => Promise<{ modal: Modal; notice: Message }>;
    };

export type RequiredRole = 'admin' | 'linked';

export interface Subcommand<A = any> {
  name: string;
  /** e.g. `list [role:R] [status:active|locked]` (without the command). */
  usage: string;
  summary: string;
  role: RequiredRole;
  /** Turns the words after the subcommand into typed arguments; throws UserError with usage. */
  parse(words: string[]): A;
  run(ctx: CommandContext, args: A): Promise<Reply>;
  /**
   * Only reads (no write, no message, no mail anywhere in run): it may run while the router
   * is still asking the store whether this delivery is a Slack retry, and a retry's answer is
   * then dropped unsent. Saves that round trip on the way to the answer (#15). Never set it on
   * anything that changes state.
   */
  readOnly?: true;
}

export type ActionHandler = (ctx: InteractionContext, value: string) => Promise<ActionReply>;
export type ViewHandler = (ctx: InteractionContext, values: ModalValues, metadata: string) => Promise<ViewReply>;

export interface CommandModule {
  /** The slash command, e.g. `/users`. */
  command: string;
  summary: string;
  /** Subcommand run when the text is empty (help when absent). */
  defaultSubcommand?: string;
  /**
   * Subcommand that receives ALL the words when the first word is not a subcommand name
   * (e.g. `/audit action:login_failed since:24h`). Absent → "Unknown subcommand".
   */
  fallbackSubcommand?: string;
  subcommands: Subcommand[];
  /** Button handlers by action id; ids are namespaced `<command>:<verb>`. */
  actions?: Record<string, ActionHandler>;
  /** Modal submission handlers by callback id. */
  views?: Record<string, ViewHandler>;
  /**
   * Action and view ids that linked non-admins may use. Everything else is refused to
   * non-admins by the router before the handler runs (secure by default); handlers
   * still check again inside the services they call.
   */
  memberInteractions?: string[];
}

/** Handlers that belong to no slash command (alert buttons, App Home). */
export interface InteractionModule {
  actions?: Record<string, ActionHandler>;
  views?: Record<string, ViewHandler>;
  memberInteractions?: string[];
}

export type ArgsOf<S extends z.ZodType> = z.infer<S>;
