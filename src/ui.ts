/**
 * Warden's own small message and modal model. Commands, interactions and alerts build
 * these plain objects; `src/slack/blocks.ts` turns them into Block Kit (enforcing
 * Slack's limits in one place) and the console renders the resulting Block Kit as text.
 * Nothing here depends on Slack's types.
 */

export interface Button {
  /** plain_text: shown as it is. */
  text: string;
  /** Routed to the interaction handler registered under this id. */
  actionId: string;
  /** Opaque value handed back on click (keep it short: Slack allows 2,000 characters). */
  value: string;
  style?: 'primary' | 'danger';
  /** A confirmation dialog before the click is sent. */
  confirm?: { title: string; text: Text; confirm: string; deny?: string };
  url?: string;
}

export type Block =
  /** plain_text: shown as it is (control characters removed). */
  | { type: 'header'; text: string }
  | { type: 'text'; text: Text }
  | { type: 'fields'; fields: Text[] }
  | { type: 'context'; text: Text }
  | { type: 'divider' }
  | { type: 'buttons'; buttons: Button[] };

export interface Message {
  /** Fallback (notifications, screen readers) and the console's first line; Slack parses it as mrkdwn. */
  text: Text;
  blocks?: Block[];
}

/** Names kept for the cards: every block and message is safe now (mrkdwn fields take `Mrkdwn` only). */
export type SafeBlock = Block;
export type SafeMessage = Message;

/** Where a reply to a command or click goes. */
export type Visibility = 'ephemeral' | 'in_channel';

export type FieldKind = 'text' | 'multiline' | 'select' | 'checkboxes' | 'radio';

export interface ModalField {
  /** Block id and key of the submitted value; field errors are attached to it. */
  id: string;
  label: string;
  kind: FieldKind;
  optional?: boolean;
  hint?: string;
  placeholder?: string;
  initial?: string | string[];
  options?: { value: string; label: string }[];
  maxLength?: number;
}

export interface Modal {
  /** Routed to the view handler registered under this id. */
  callbackId: string;
  title: string;
  submit?: string;
  /** Label of the close button (default Cancel); e.g. Close on a view that only reports. */
  close?: string;
  /** Opaque reference handed back on submit. Never trust it alone: handlers re-check everything. */
  metadata?: string;
  /** Markdown shown above the fields. */
  intro?: Text;
  fields: ModalField[];
}

/** Values submitted from a modal: one string (or list, for checkboxes) per field id. */
export type ModalValues = Record<string, string | string[] | undefined>;

// ── Text: one way to build what Slack parses ────────────────────────────────────────
//
// Slack parses mrkdwn in section/context/field text and in a message's fallback `text`:
// `<!channel>`, `<@U…>`, `<#C…>` and `<https://…|label>` become mentions and links, and `&`,
// `<`, `>` must be escaped. Text Warden did not write (usernames typed into a login form,
// reasons, audit details) must never be parsed. So mrkdwn is its own type, `Mrkdwn`, that
// only the `mrkdwn` template tag and the `md.*` builders produce: every plain string put
// into them is escaped for its context; a value that is already `Mrkdwn` is kept. Every
// mrkdwn field of `Block`/`Message`/`Modal` takes `Mrkdwn` only, so a raw string cannot
// reach Slack's mrkdwn anywhere (cards, command replies, modals, errors, DMs).

/** Text in Slack's mrkdwn, safe by construction. */
export class Mrkdwn {
  private constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
  /** Stored messages (the outbox) keep the text. */
  toJSON(): string {
    return this.text;
  }
}

/** Only for this module: the builders below are the only way to make `Mrkdwn`. */
const MrkdwnOf = Mrkdwn as unknown as new (text: string) => Mrkdwn;
const Mrkdwn_of = (text: string): Mrkdwn => new MrkdwnOf(text);

/**
 * Text for a mrkdwn field (section, context, field, confirm text, modal intro, fallback
 * `text`): only built `Mrkdwn`. A raw string is refused by the compiler
 * (test/unit/mrkdwn-types.test.ts). plain_text fields (header, button, label, hint,
 * option, title) take strings: Slack never parses them, blocks.ts cleans them.
 */
export type Text = Mrkdwn;

/**
 * The characters of built text. A message read back from the outbox (stored as JSON) carries
 * its text as the string Warden built before storing it, hence the fallback.
 */
export const textOf = (t: Text): string => (t instanceof Mrkdwn ? t.text : String(t));

// C0/C1 controls (line breaks handled apart), and the bidirectional controls that let a
// value reorder the text around it on screen (RTL override / isolate, marks).
// eslint-disable-next-line no-control-regex -- removing control characters is the point
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/g;
const BIDI = /[\u200E\u200F\u202A-\u202E\u2066-\u2069\u061C]/g;
const LINE_BREAKS = /\r\n|[\r\n\u2028\u2029\u0085]/g;

/** Removes control and bidi characters; line breaks become spaces unless `keepLines`. */
export function cleanText(s: string, keepLines = false): string {
  const t = s.replace(LINE_BREAKS, keepLines ? '\n' : ' ').replace(/\t/g, ' ');
  return t.replace(CONTROL, '').replace(BIDI, '');
}

/** Escapes the three characters Slack's mrkdwn treats specially. */
const escapeMrkdwn = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export type MrkdwnValue = Mrkdwn | string | number;

function piece(v: MrkdwnValue): string {
  if (v instanceof Mrkdwn) return v.text;
  if (typeof v === 'number') return String(v);
  return escapeMrkdwn(cleanText(String(v)));
}

/**
 * The template tag: `mrkdwn\`*Account*\n${username}\`` — the literal parts are Warden's
 * markup, every interpolated string is data (cleaned, on one line, escaped).
 */
export function mrkdwn(strings: TemplateStringsArray, ...values: MrkdwnValue[]): Mrkdwn {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += piece(values[i]) + strings[i + 1];
  return Mrkdwn_of(out);
}

const SLACK_USER = /^[UW][A-Z0-9_]{2,30}$/;
const SLACK_CHANNEL = /^[CGD][A-Z0-9_]{2,30}$/;

export const md = {
  /** A value as data (escaped, one line). */
  text: (s: string | number): Mrkdwn => Mrkdwn_of(piece(s)),
  /** Multi-line data: line breaks kept, everything else as `text`. */
  lines: (s: string): Mrkdwn => Mrkdwn_of(escapeMrkdwn(cleanText(s, true))),
  /** Data as a block quote, every line quoted. */
  quote: (s: string): Mrkdwn => Mrkdwn_of(cleanText(s, true).split('\n').map((l) => `>${escapeMrkdwn(l)}`).join('\n')),
  bold: (s: MrkdwnValue): Mrkdwn => Mrkdwn_of(`*${piece(typeof s === 'string' ? s.replace(/\*/g, '') : s)}*`),
  /** A code span: escaped (Slack decodes entities in code too), backticks replaced. */
  code: (s: string | number): Mrkdwn => Mrkdwn_of(`\`${piece(String(s).replace(/`/g, "'")) || ' '}\``),
  /** A mention of a Slack user Warden knows (an id it stored); anything else is shown as text. */
  user: (slackUserId: string): Mrkdwn => (SLACK_USER.test(slackUserId) ? Mrkdwn_of(`<@${slackUserId}>`) : md.text(slackUserId)),
  channel: (channelId: string): Mrkdwn => (SLACK_CHANNEL.test(channelId) ? Mrkdwn_of(`<#${channelId}>`) : md.text(channelId)),
  /** A link Warden makes: http(s) only, the label escaped. */
  link: (url: string, label: string): Mrkdwn => {
    if (!/^https?:\/\/[^\s<>|]+$/.test(url)) return md.text(label);
    return Mrkdwn_of(`<${url}|${piece(label).replace(/\|/g, '¦')}>`);
  },
  date: (d: Date | null | undefined): Mrkdwn => Mrkdwn_of(d ? d.toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : '—'),
  /** The same text without bold, italics and code marks (a fallback `text` built from a block). */
  unstyled: (m: Mrkdwn): Mrkdwn => Mrkdwn_of(m.text.replace(/[*`_]/g, '')),
  /** Joins built pieces. */
  join: (parts: MrkdwnValue[], sep: string | Mrkdwn = ''): Mrkdwn => Mrkdwn_of(parts.map(piece).join(sep instanceof Mrkdwn ? sep.text : sep)),
};
