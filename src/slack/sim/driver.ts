import crypto from 'node:crypto';
import { request } from 'undici';
import type { CapturedCall, FakeSlack } from './fake-slack.js';
import type { SocketModeSide } from './socket-mode.js';

/**
 * Plays Slack's part towards a running Warden: builds slash-command, button and modal
 * payloads as Slack sends them, signs them with the signing secret (v0 HMAC-SHA256 over
 * `v0:timestamp:body`) and POSTs them to /slack/events — or, in Socket Mode, sends the same
 * payloads as envelopes over the fake's WebSocket and answers with the app's ack (status 200,
 * the ack's payload as the body), so that every flow runs unchanged on both transports.
 * Replies are read back from the FakeSlack that stands in for the Web API and response URLs.
 */

export interface HttpAnswer {
  status: number;
  body: string;
}

export interface Interaction {
  answer: HttpAnswer;
  responseId: string;
  triggerId: string;
  /** Index in fake.calls when the request was sent: replies come after it. */
  since: number;
}

export interface ButtonRef {
  actionId: string;
  value: string;
  /** The message the button sits on (blocks as Slack would send them back). */
  message?: { ts?: string; text?: string; blocks?: any[] };
  channel?: string;
}

export class SlackDriver {
  readonly teamId: string;
  private seq = 0;

  constructor(
    readonly opts: { appUrl: string; signingSecret: string; fake: FakeSlack; teamId?: string; socket?: SocketModeSide },
  ) {
    this.teamId = opts.teamId ?? 'T_WARDEN';
  }

  sign(body: string, timestamp = Math.floor(Date.now() / 1000)): Record<string, string> {
    const sig = crypto.createHmac('sha256', this.opts.signingSecret).update(`v0:${timestamp}:${body}`).digest('hex');
    return { 'x-slack-request-timestamp': String(timestamp), 'x-slack-signature': `v0=${sig}` };
  }

  /** POSTs a raw body with the given headers (tests use it for unsigned or forged requests). */
  async post(body: string, headers: Record<string, string>): Promise<HttpAnswer> {
    if (this.opts.socket) {
      // Socket Mode: no signature and no HTTP; a missing, late or refused ack rejects.
      const ack = await this.opts.socket.deliver(body, headers['content-type']);
      return { status: 200, body: Object.keys(ack.payload).length ? JSON.stringify(ack.payload) : '' };
    }
    const res = await request(`${this.opts.appUrl}/slack/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body,
    });
    return { status: res.statusCode, body: await res.body.text() };
  }

  async postSigned(body: string, extraHeaders: Record<string, string> = {}): Promise<HttpAnswer> {
    return this.post(body, { ...this.sign(body), ...extraHeaders });
  }

  private ids() {
    const n = ++this.seq;
    const responseUrl = this.opts.fake.responseUrl();
    return { responseUrl, responseId: responseUrl.split('/').pop()!, triggerId: `trig.${Date.now()}.${n}.${crypto.randomBytes(3).toString('hex')}` };
  }

  /** Builds the form body Slack sends for `/command text`. */
  commandBody(user: string, line: string, channel = 'C_ADMIN', ids = this.ids()): string {
    const [command] = line.trim().split(/\s+/);
    return new URLSearchParams({
      token: 'legacy-verification-token-unused',
      team_id: this.teamId,
      team_domain: 'warden-test',
      channel_id: channel,
      channel_name: channel.toLowerCase(),
      user_id: user,
      user_name: user.toLowerCase(),
      command,
      text: line.trim().slice(command.length).trim(),
      api_app_id: 'A_WARDEN',
      response_url: ids.responseUrl,
      trigger_id: ids.triggerId,
    }).toString();
  }

  async command(user: string, line: string, channel = 'C_ADMIN'): Promise<Interaction> {
    const ids = this.ids();
    const since = this.opts.fake.calls.length;
    const answer = await this.postSigned(this.commandBody(user, line, channel, ids));
    return { answer, responseId: ids.responseId, triggerId: ids.triggerId, since };
  }

  clickBody(user: string, button: ButtonRef, ids = this.ids()): string {
    const channel = button.channel ?? 'C_ADMIN';
    const payload = {
      type: 'block_actions',
      user: { id: user, username: user.toLowerCase(), team_id: this.teamId },
      team: { id: this.teamId, domain: 'warden-test' },
      api_app_id: 'A_WARDEN',
      channel: { id: channel, name: channel.toLowerCase() },
      container: { type: 'message', message_ts: button.message?.ts ?? '1700000000.000001', channel_id: channel, is_ephemeral: !button.message?.ts },
      message: { ts: button.message?.ts ?? '1700000000.000001', text: button.message?.text ?? '', blocks: button.message?.blocks ?? [] },
      response_url: ids.responseUrl,
      trigger_id: ids.triggerId,
      actions: [
        {
          type: 'button',
          action_id: button.actionId,
          block_id: 'actions_0',
          value: button.value,
          action_ts: `${Date.now() / 1000}`,
        },
      ],
    };
    return new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
  }

  async click(user: string, button: ButtonRef): Promise<Interaction> {
    const ids = this.ids();
    const since = this.opts.fake.calls.length;
    const answer = await this.postSigned(this.clickBody(user, button, ids));
    return { answer, responseId: ids.responseId, triggerId: ids.triggerId, since };
  }

  /**
   * Submits a modal that Warden opened (the `view` argument of its views.open call),
   * filling fields by block id. Returns Warden's HTTP answer: empty on success, or JSON
   * with `response_action: errors`.
   */
  async submit(
    user: string,
    view: any,
    values: Record<string, string | string[] | undefined>,
  ): Promise<{ answer: HttpAnswer; ack: any; since: number; viewId: string }> {
    const state: Record<string, Record<string, unknown>> = {};
    for (const block of view.blocks ?? []) {
      if (block.type !== 'input') continue;
      const el = block.element;
      const v = values[block.block_id];
      const findOption = (value: string) => (el.options ?? []).find((o: any) => o.value === value) ?? { value, text: { type: 'plain_text', text: value } };
      if (el.type === 'checkboxes') {
        state[block.block_id] = { [el.action_id]: { type: el.type, selected_options: (Array.isArray(v) ? v : v ? [v] : []).map(findOption) } };
      } else if (el.type === 'static_select' || el.type === 'radio_buttons') {
        state[block.block_id] = { [el.action_id]: { type: el.type, selected_option: v ? findOption(String(v)) : null } };
      } else {
        state[block.block_id] = { [el.action_id]: { type: el.type, value: v === undefined ? null : String(v) } };
      }
    }
    // The view stays on the user's screen while Warden answers (views.update may target it).
    const viewId = `V_${++this.seq}`;
    this.opts.fake.openViews.add(viewId);
    const payload = {
      type: 'view_submission',
      team: { id: this.teamId, domain: 'warden-test' },
      user: { id: user, username: user.toLowerCase(), team_id: this.teamId },
      api_app_id: 'A_WARDEN',
      trigger_id: this.ids().triggerId,
      view: {
        id: viewId,
        team_id: this.teamId,
        type: 'modal',
        callback_id: view.callback_id,
        private_metadata: view.private_metadata ?? '',
        blocks: view.blocks ?? [],
        state: { values: state },
        hash: `${Date.now()}.${this.seq}`,
      },
    };
    const since = this.opts.fake.calls.length;
    const answer = await this.postSigned(new URLSearchParams({ payload: JSON.stringify(payload) }).toString());
    const ack = answer.body ? safeJson(answer.body) : null;
    // Slack closes the modal on an empty ack (or response_action clear).
    if (!ack || (ack as any).response_action === 'clear') this.opts.fake.closeView(viewId);
    return { answer, ack, since, viewId };
  }

  /** Waits for the views.update Warden makes of a submitted view (a progress reply's outcome). */
  async viewUpdate(viewId: string, timeoutMs = 10_000): Promise<CapturedCall> {
    return this.opts.fake.waitFor((c) => c.method === 'views.update' && c.args.view_id === viewId, timeoutMs, 0);
  }

  /** Slack's Events API request for a user opening the App Home tab. */
  async homeOpened(user: string): Promise<HttpAnswer> {
    const body = JSON.stringify({
      token: 'unused',
      team_id: this.teamId,
      api_app_id: 'A_WARDEN',
      type: 'event_callback',
      event_id: `Ev${Date.now()}${crypto.randomBytes(3).toString('hex')}`,
      event_time: Math.floor(Date.now() / 1000),
      event: { type: 'app_home_opened', user, channel: `D_${user}`, tab: 'home', event_ts: `${Date.now() / 1000}` },
    });
    return this.postSigned(body, { 'content-type': 'application/json' });
  }

  /** Waits for what Warden sent back for an interaction: its response_url post or the modal it opened. */
  async reply(i: Interaction, timeoutMs = 10_000): Promise<CapturedCall> {
    return this.opts.fake.waitFor(
      (c) =>
        // A reply the fake refused (invalid_blocks) is returned too, so a test sees why at once.
        ((c.method === 'response_url' || c.method === 'response_url!invalid') && c.responseId === i.responseId) ||
        (c.method === 'views.open' && c.args.trigger_id === i.triggerId),
      timeoutMs,
      i.since,
    );
  }

  /** Every response_url post made for one interaction so far. */
  responses(i: Interaction): CapturedCall[] {
    return this.opts.fake.calls.filter((c) => c.method === 'response_url' && c.responseId === i.responseId);
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}

/** Collects the buttons of a message's blocks (as sent to Slack). */
export function buttonsOf(blocks: any[] | undefined): { text: string; actionId: string; value: string; url?: string }[] {
  const out: { text: string; actionId: string; value: string; url?: string }[] = [];
  for (const b of blocks ?? []) {
    if (b.type !== 'actions') continue;
    for (const el of b.elements ?? []) {
      if (el.type === 'button') out.push({ text: el.text?.text ?? '', actionId: el.action_id, value: el.value ?? '', url: el.url });
    }
  }
  return out;
}

/** All visible text of a message or modal's blocks, for assertions and the console. */
export function textOf(payload: { text?: string; blocks?: any[] } | undefined): string {
  if (!payload) return '';
  const parts: string[] = [];
  for (const b of payload.blocks ?? []) {
    if (b.text?.text) parts.push(b.text.text);
    for (const f of b.fields ?? []) parts.push(f.text);
    for (const el of b.elements ?? []) if (el.text) parts.push(typeof el.text === 'string' ? el.text : el.text.text);
    if (b.label?.text) parts.push(b.label.text);
  }
  return parts.length ? parts.join('\n') : payload.text ?? '';
}
