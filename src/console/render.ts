import type { CapturedCall } from '../slack/sim/fake-slack.js';

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
};

export class ConsoleRenderer {
  readonly buttons: NumberedButton[] = [];
  constructor(
    private readonly names: Map<string, string>,
    private readonly color = process.stdout.isTTY,
  ) {}

  private bold = (s: string) => (this.color ? `\x1b[1m${s}\x1b[22m` : s);
  private dim = (s: string) => (this.color ? `\x1b[2m${s}\x1b[22m` : s);

  mrkdwn(text: string): string {
    return text
      .replace(/<@([A-Z0-9_]+)>/g, (_m, id) => `@${this.names.get(id) ?? id}`)
      .replace(/<#([A-Z0-9_]+)(\|[^>]*)?>/g, (_m, id) => `#${id}`)
      .replace(/<(https?:[^|>]+)\|([^>]+)>/g, '$2 ($1)')
      .replace(/<(https?:[^>]+)>/g, '$1')
      .replace(/:([a-z_]+):/g, (m, name) => EMOJI[name] ?? m)
      .replace(/(^|[\s(])\*([^*\n]+)\*/g, (_m, pre, s) => `${pre}${this.bold(s)}`)
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
            const n = this.buttons.length + 1;
            this.buttons.push({
              n,
              text: el.text?.text ?? '',
              actionId: el.action_id,
              value: el.value ?? '',
              url: el.url,
              channel,
              message: { ts, text: payload.text, blocks },
            });
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

  /** One captured Web API call as a titled block of text (or undefined when not shown). */
  call(c: CapturedCall, _actingUser: string): string | undefined {
    const a = c.args;
    const channelName = (id: string) => (id?.startsWith('D_') ? `DM to @${this.names.get(id.slice(2)) ?? id.slice(2)}` : `#${id}`);
    switch (c.method) {
      case 'response_url': {
        const where = a.replace_original ? '(updated in place)' : a.response_type === 'in_channel' ? '(in channel)' : '(only you can see this)';
        return `${this.dim(where)}\n${this.message(a, 'C_CONSOLE', `resp.${c.responseId}`)}`;
      }
      case 'chat.postMessage':
        return `${this.dim(`posted to ${channelName(a.channel)}${a.thread_ts ? ' (in thread)' : ''}`)}\n${this.message(a, a.channel, c.result?.ts)}`;
      case 'chat.update':
        return `${this.dim(`message in ${channelName(a.channel)} updated`)}\n${this.message(a, a.channel, a.ts)}`;
      case 'chat.postEphemeral':
        return `${this.dim(`only @${this.names.get(a.user) ?? a.user} can see this, in ${channelName(a.channel)}`)}\n${this.message(a, a.channel)}`;
      case 'views.publish':
        return `${this.dim(`App Home of @${this.names.get(a.user_id) ?? a.user_id} refreshed`)}\n${this.message(a.view ?? {}, 'HOME')}`;
      case 'files.completeUploadExternal':
        return this.dim(`file uploaded to ${channelName(a.channel_id)}: ${(a.files ?? []).map((f: any) => f.title).join(', ')}`);
      default:
        return undefined;
    }
  }
}
