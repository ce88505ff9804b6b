import type { CapturedCall } from '../slack/sim/fake-slack.js';
import { QUEUED_METHOD, type QueuedRow } from './queued-alerts.js';

/**
 * Renders what Warden sent to Slack (Block Kit) as terminal text. Buttons get numbers
 * (`click 3`) that stay valid for the whole console session.
 */

export interface NumberedButton {
  n: number;
  text: string;
  actionId: string;
  value: string;
  url?: string;
  channel: string;
  message: { ts?: string; text?: string; blocks?: any[] };
}

const EMOJI: Record<string, string> = {
  lock: '🔒',
  unlock: '🔓',
  warning: '⚠️',
  x: '❌',
  white_check_mark: '✅',
  heavy_check_mark: '✔️',
  rotating_light: '🚨',
  red_circle: '🔴',
  large_yellow_circle: '🟡',
  large_green_circle: '🟢',
  white_circle: '⚪',
  hourglass: '⏳',
  bust_in_silhouette: '👤',
  key: '🔑',
  email: '📧',
  mag: '🔍',
  bell: '🔔',
  heavy_minus_sign: '➖',
  wastebasket: '🗑️',
  tada: '🎉',
  arrows_counterclockwise: '🔄',
  incoming_envelope: '📨',
  clock3: '🕒',
  no_entry: '⛔',
  arrow_up: '⬆️',
  arrow_down: '⬇️',
  arrow_right: '➡️',
  hourglass_flowing_sand: '⏳',
  closed_lock_with_key: '🔐',
  raising_hand: '🙋',
  link: '🔗',
  information_source: 'ℹ️',
  heavy_multiplication_x: '✖️',
  page_facing_up: '📄',
  large_orange_circle: '🟠',
  inbox_tray: '📥',
  grey_question: '❔',
  envelope: '✉️',
  broom: '🧹',
  arrow_upper_right: '↗️',
  arrow_lower_right: '↘️',
  alarm_clock: '⏰',
};

/** A shortcode the table lacks is shown as its words (`:raising_hand:` → "raising hand"), never raw. */
export function emoji(name: string): string {
  return EMOJI[name] ?? name.replace(/_/g, ' ');
}

export class ConsoleRenderer {
  readonly buttons: NumberedButton[] = [];
  constructor(
    private readonly names: Map<string, string>,
    private readonly color = process.stdout.isTTY,
  ) {}

  private bold = (s: string) => (this.color ? `\x1b[1m${s}\x1b[22m` : s);
  private dim = (s: string) => (this.color ? `\x1b[2m${s}\x1b[22m` : s);
  private italic = (s: string) => (this.color ? `\x1b[3m${s}\x1b[23m` : s);
  /** What each message looked like when last printed (by channel and ts), for one-line diffs. */
  private shown = new Map<string, string[]>();

  mrkdwn(text: string): string {
    return text
      .replace(/<@([A-Z0-9_]+)>/g, (_m, id) => `@${this.names.get(id) ?? id}`)
      .replace(/<#([A-Z0-9_]+)(\|[^>]*)?>/g, (_m, id) => `#${id}`)
      .replace(/<(https?:[^|>]+)\|([^>]+)>/g, '$2 ($1)')
      .replace(/<(https?:[^>]+)>/g, '$1')
      .replace(/(^|[^\w:/]):([a-z0-9_+-]+):(?=$|[^\w:])/g, (_m, pre, name) => `${pre}${emoji(name)}`)
      .replace(/(^|[\s(])\*([^*\n]+)\*/g, (_m, pre, s) => `${pre}${this.bold(s)}`)
      .replace(/(^|[\s(])_([^_\n]+)_(?=$|[\s).,:;!?])/g, (_m, pre, s) => `${pre}${this.italic(s)}`)
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&amp;/g, '&');
  }

  /** A message (text + blocks) as lines; registers its buttons. */
  message(payload: { text?: string; blocks?: any[] }, channel: string, ts?: string): string {
    const blocks: any[] = payload.blocks ?? [];
    if (!blocks.length) return this.mrkdwn(payload.text ?? '');
    const lines: string[] = [];
    for (const b of blocks) {
      switch (b.type) {
        case 'header':
          lines.push(this.bold(`== ${this.mrkdwn(b.text?.text ?? '')} ==`));
          break;
        case 'section':
          if (b.text) lines.push(this.mrkdwn(b.text.text));
          if (b.fields) {
            for (const f of b.fields) lines.push(`  ${this.mrkdwn(f.text).replace(/\n/g, ': ')}`);
          }
          break;
        case 'context':
          lines.push(this.dim(b.elements.map((e: any) => this.mrkdwn(e.text ?? '')).join(' ')));
          break;
        case 'divider':
          lines.push(this.dim('────────────────────────'));
          break;
        case 'actions': {
          const parts: string[] = [];
          for (const el of b.elements ?? []) {
            if (el.type !== 'button') continue;
            // The same button on an updated message keeps its number (and points at the new message).
            const same = ts ? this.buttons.find((x) => x.channel === channel && x.message.ts === ts && x.actionId === el.action_id && x.value === (el.value ?? '')) : undefined;
            const n = same?.n ?? this.buttons.length + 1;
            const entry = { n, text: el.text?.text ?? '', actionId: el.action_id, value: el.value ?? '', url: el.url, channel, message: { ts, text: payload.text, blocks } };
            if (same) this.buttons[n - 1] = entry;
            else this.buttons.push(entry);
            parts.push(`[${n}] ${el.text?.text ?? ''}${el.url ? ` → ${el.url}` : ''}`);
          }
          lines.push(this.bold(parts.join('   ')));
          break;
        }
        default:
          if (b.text?.text) lines.push(this.mrkdwn(b.text.text));
      }
    }
    return lines.join('\n');
  }

  private first(title: string, payload: { text?: string; blocks?: any[] }, channel: string, ts?: string): string {
    const body = this.message(payload, channel, ts);
    if (ts) this.shown.set(`${channel}:${ts}`, body.split('\n'));
    return `${title}\n${body}`;
  }

  /**
   * An updated message: printed whole the first time, then only what changed on one line
   * (`old → new`), and not at all when nothing visible changed (a card refreshed each minute).
   */
  private update(title: string, payload: { text?: string; blocks?: any[] }, channel: string, ts: string): string | undefined {
    const key = `${channel}:${ts}`;
    const lines = this.message(payload, channel, ts).split('\n');
    const before = this.shown.get(key);
    this.shown.set(key, lines);
    if (!before) return `${this.dim(title)}\n${lines.join('\n')}`;
    const removed = before.filter((l) => l.trim() && !lines.includes(l));
    const added = lines.filter((l) => l.trim() && !before.includes(l));
    if (!removed.length && !added.length) return undefined;
    if (removed.length + added.length > 6) return `${this.dim(title)}\n${lines.join('\n')}`;
    const one = (xs: string[]) => xs.map((l) => l.trim()).join(' · ');
    const change = removed.length && added.length ? `${one(removed)} → ${one(added)}` : added.length ? `+ ${one(added)}` : `− ${one(removed)}`;
    return `${this.dim(`${title}:`)} ${change}`;
  }

  /** One captured Web API call as a titled block of text (or undefined when not shown). */
  call(c: CapturedCall, replaces?: { channel: string; ts: string }): string | undefined {
    const a = c.args;
    const channelName = (id: string) => (id?.startsWith('D_') ? `DM to @${this.names.get(id.slice(2)) ?? id.slice(2)}` : `#${id}`);
    switch (c.method) {
      case 'response_url': {
        if (a.replace_original && replaces) return this.update(`message updated in place`, a, replaces.channel, replaces.ts);
        const where = a.replace_original ? '(updated in place)' : a.response_type === 'in_channel' ? '(in channel)' : '(only you can see this)';
        return this.first(this.dim(where), a, 'C_CONSOLE', `resp.${c.responseId}`);
      }
      case 'chat.postMessage':
        return this.first(this.dim(`posted to ${channelName(a.channel)}${a.thread_ts ? ' (in thread)' : ''}`), a, a.channel, c.result?.ts);
      case 'chat.update':
        return this.update(`message in ${channelName(a.channel)} updated`, a, a.channel, a.ts);
      case 'chat.postEphemeral':
        return `${this.dim(`only @${this.names.get(a.user) ?? a.user} can see this, in ${channelName(a.channel)}`)}\n${this.message(a, a.channel)}`;
      case 'views.publish':
        return `${this.dim(`App Home of @${this.names.get(a.user_id) ?? a.user_id} refreshed`)}\n${this.message(a.view ?? {}, 'HOME')}`;
      case QUEUED_METHOD: {
        // Break-glass: shown, never sent, and its buttons are not clickable here (the message is not in any Slack yet).
        const row = a as QueuedRow;
        const where = row.kind === 'dm' ? `DM to @${this.names.get(row.channel) ?? row.channel}` : row.kind === 'update' ? `update of a message in #${row.channel}` : `#${row.channel}`;
        const blocks = (row.payload.blocks ?? []) as any[];
        const buttons = blocks.flatMap((b) => (b.type === 'actions' ? (b.elements ?? []).map((e: any) => e.text?.text).filter(Boolean) : []));
        const body = this.message({ text: row.payload.text, blocks: blocks.filter((b) => b.type !== 'actions') }, row.channel);
        return (
          `${this.bold(`📮 queued for Slack, not sent from here — ${where}`)} ${this.dim(`(outbox #${row.id}; the deployed Warden delivers it)`)}\n` +
          `${body.replace(/^/gm, '   ')}${buttons.length ? `\n   ${this.dim(`buttons in Slack: ${buttons.join(' · ')}`)}` : ''}`
        );
      }
      case 'files.completeUploadExternal':
        return this.dim(`file uploaded to ${channelName(a.channel_id)}: ${(a.files ?? []).map((f: any) => f.title).join(', ')}`);
      default:
        return undefined;
    }
  }
}
