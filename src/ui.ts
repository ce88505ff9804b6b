/**
 * Warden's own small message and modal model. Commands, interactions and alerts build
 * these plain objects; `src/slack/blocks.ts` turns them into Block Kit (enforcing
 * Slack's limits in one place) and the console renders the resulting Block Kit as text.
 * Nothing here depends on Slack's types.
 */

export interface Button {
  text: string;
  /** Routed to the interaction handler registered under this id. */
  actionId: string;
  /** Opaque value handed back on click (keep it short: Slack allows 2,000 characters). */
  value: string;
  style?: 'primary' | 'danger';
  /** A confirmation dialog before the click is sent. */
  confirm?: { title: string; text: string; confirm: string; deny?: string };
  url?: string;
}

export type Block =
  | { type: 'header'; text: string }
  | { type: 'text'; text: string }
  | { type: 'fields'; fields: string[] }
  | { type: 'context'; text: string }
  | { type: 'divider' }
  | { type: 'buttons'; buttons: Button[] };

export interface Message {
  /** Plain-text fallback (notifications, screen readers) and the console's first line. */
  text: string;
  blocks?: Block[];
}

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
  /** Opaque reference handed back on submit. Never trust it alone: handlers re-check everything. */
  metadata?: string;
  /** Markdown shown above the fields. */
  intro?: string;
  fields: ModalField[];
}

/** Values submitted from a modal: one string (or list, for checkboxes) per field id. */
export type ModalValues = Record<string, string | string[] | undefined>;

export const md = {
  bold: (s: string) => `*${s.replace(/\*/g, '')}*`,
  code: (s: string) => `\`${s.replace(/`/g, "'")}\``,
  /** Escapes the three characters Slack's mrkdwn treats specially. */
  escape: (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;'),
  user: (slackUserId: string) => `<@${slackUserId}>`,
  date: (d: Date | null | undefined) => (d ? d.toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : '—'),
};
