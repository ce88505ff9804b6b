import type { Masker } from '../../services/masking.js';
import type { StormData } from '../../services/storms.js';
import { md, type Block, type Button, type Message } from '../../ui.js';

/** Action ids of the storm message's buttons (routed by commands/storms.ts). */
export const STORM_ACTIONS = { unlockAll: 'storms:unlock-all', cards: 'storms:cards' } as const;

/**
 * The one message of a lockout storm, updated in place: how many accounts, which (escaped,
 * the first 40), the top source IPs (masked), the failed-login bursts grouped into it, and the
 * two admin buttons. The fallback text says the same in one line.
 */
export function stormMessage(data: StormData, masker: Masker): Message {
  const { storm, total, stillLocked, carded, accounts, topIps, bursts, threshold } = data;
  const s = total === 1 ? '' : 's';
  // Usernames are whatever was typed into the login form: escaped before they go in a code span.
  const name = (u: string) => md.code(md.escape(u));
  const names = accounts.map((a) => (a.unlocked ? `~${name(a.username)}~` : name(a.username))).join(', ');
  const more = total > accounts.length ? ` and ${total - accounts.length} more` : '';
  const ipLines = topIps.length
    ? topIps.map((r) => `• ${md.code(masker.ip(r.ip))} — ${r.failures} failed login${r.failures === 1 ? '' : 's'}`).join('\n')
    : '_No failed logins recorded for these accounts._';
  const blocks: Block[] = [
    { type: 'header', text: `Lockout storm: ${total} account${s} locked` },
    {
      type: 'fields',
      fields: [
        `*Accounts locked*\n${total} (${stillLocked} still locked)`,
        `*Since*\n${md.date(storm.started_at)}`,
        `*Latest*\n${md.date(storm.last_at)}`,
        `*Grouped because*\nmore than ${threshold} lockouts a minute`,
      ],
    },
    { type: 'text', text: `*Accounts*\n${names || '—'}${more}` },
    { type: 'text', text: `*Top source IPs*\n${ipLines}` },
  ];
  if (bursts.length) {
    blocks.push({
      type: 'text',
      text: `*Failed-login bursts in this storm*\n${bursts.map((b) => `• ${md.code(masker.ip(b.ip))} — ${b.count} failed logins`).join('\n')}`,
    });
  }
  const value = JSON.stringify({ s: storm.id });
  const buttons: Button[] = [];
  if (stillLocked > 0) {
    buttons.push({
      text: 'Unlock all listed',
      actionId: STORM_ACTIONS.unlockAll,
      value,
      style: 'danger',
      confirm: {
        title: 'Unlock every account?',
        text: `This unlocks the ${stillLocked} account${stillLocked === 1 ? '' : 's'} of this storm that are still locked. You will be asked for your 2FA code.`,
        confirm: 'Continue',
      },
    });
  }
  if (!storm.cards_requested_by) buttons.push({ text: 'Post individual cards', actionId: STORM_ACTIONS.cards, value });
  if (buttons.length) blocks.push({ type: 'buttons', buttons });
  const notes = [
    `Storm #${storm.id} · one message, updated as it grows`,
    carded ? `${carded} of these had their own card before the storm was recognised` : '',
    storm.cards_requested_by ? `individual cards in the thread (asked by ${md.escape(storm.cards_requested_by)})` : 'individual cards on demand',
    storm.unlocked_by ? `:unlock: unlocked by ${md.escape(storm.unlocked_by)} at ${md.date(storm.unlocked_at)}` : 'Unlock all asks for your 2FA code',
  ].filter(Boolean);
  blocks.push({ type: 'context', text: notes.join(' · ') });
  return {
    text: md.escape(`:rotating_light: Lockout storm: ${total} account${s} locked since ${md.date(storm.started_at)} (${stillLocked} still locked)`),
    blocks,
  };
}
