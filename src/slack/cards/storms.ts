import type { Masker } from '../../services/masking.js';
import type { StormData } from '../../services/storms.js';
import { md, mrkdwn, type Mrkdwn, type SafeBlock, type SafeMessage } from '../../ui.js';

type SafeButton = Extract<SafeBlock, { type: 'buttons' }>['buttons'][number];

/** Action ids of the storm message's buttons (routed by commands/storms.ts). */
export const STORM_ACTIONS = { unlockAll: 'storms:unlock-all', cards: 'storms:cards' } as const;

/**
 * The one message of a lockout storm, updated in place: how many accounts, which (the first
 * 40; usernames are whatever was typed into the login form, so escaped like all data), the top
 * source IPs (masked), the failed-login bursts grouped into it, and the two admin buttons.
 */
export function stormMessage(data: StormData, masker: Masker): SafeMessage {
  const { storm, total, stillLocked, carded, accounts, topIps, bursts, burstTotal, threshold } = data;
  const s = total === 1 ? '' : 's';
  const names = md.join(
    accounts.map((a) => (a.unlocked ? mrkdwn`~${md.code(a.username)}~` : md.code(a.username))),
    ', ',
  );
  const more = total > accounts.length ? mrkdwn` and ${total - accounts.length} more` : '';
  const ipLines = topIps.length
    ? md.join(
        topIps.map((r) => mrkdwn`• ${md.code(masker.ip(r.ip))} — ${r.failures} failed login${r.failures === 1 ? '' : 's'}`),
        '\n',
      )
    : mrkdwn`_No failed logins recorded for these accounts._`;
  const ipS = burstTotal.ips === 1 ? '' : 's';
  // A storm of bursts alone (password spraying locks nobody yet) says so in its title.
  const title = total || !burstTotal.ips ? `Lockout storm: ${total} account${s} locked` : `Failed-login storm: ${burstTotal.ips} IP${ipS} bursting`;
  const fields: Mrkdwn[] = [
    mrkdwn`*Accounts locked*\n${total} (${stillLocked} still locked)`,
    mrkdwn`*Since*\n${md.date(storm.started_at)}`,
    mrkdwn`*Latest*\n${md.date(storm.last_at)}`,
    mrkdwn`*Grouped because*\nmore than ${threshold} lockouts or bursting IPs a minute`,
  ];
  if (burstTotal.ips) fields.push(mrkdwn`*Failed-login bursts*\n${burstTotal.ips} IP${ipS}, ${burstTotal.failures} failed logins`);
  const blocks: SafeBlock[] = [
    { type: 'header', text: title },
    { type: 'fields', fields },
    { type: 'text', text: mrkdwn`*Accounts*\n${accounts.length ? names : '—'}${more}` },
    { type: 'text', text: mrkdwn`*Top source IPs*\n${ipLines}` },
  ];
  if (bursts.length) {
    const lines = md.join(
      bursts.map((b) => mrkdwn`• ${md.code(masker.ip(b.ip))} — ${b.count} failed logins`),
      '\n',
    );
    const rest = burstTotal.ips > bursts.length ? mrkdwn`\n… and ${burstTotal.ips - bursts.length} more IP${burstTotal.ips - bursts.length === 1 ? '' : 's'}` : '';
    blocks.push({ type: 'text', text: mrkdwn`*Failed-login bursts in this storm* (top ${bursts.length} of ${burstTotal.ips} IP${ipS})\n${lines}${rest}` });
  }
  const value = JSON.stringify({ s: storm.id });
  const buttons: SafeButton[] = [];
  if (stillLocked > 0) {
    buttons.push({
      text: 'Unlock all listed',
      actionId: STORM_ACTIONS.unlockAll,
      value,
      style: 'danger',
      confirm: {
        title: 'Unlock every account?',
        text: mrkdwn`This unlocks the ${stillLocked} account${stillLocked === 1 ? '' : 's'} of this storm that are still locked. You will be asked for your 2FA code.`,
        confirm: 'Continue',
      },
    });
  }
  if (!storm.cards_requested_by) buttons.push({ text: 'Post individual cards', actionId: STORM_ACTIONS.cards, value });
  if (buttons.length) blocks.push({ type: 'buttons', buttons });
  const notes: Mrkdwn[] = [mrkdwn`Storm #${storm.id} · one message, updated as it grows`];
  if (carded) notes.push(mrkdwn`${carded} of these had their own card before the storm was recognised`);
  notes.push(
    storm.cards_requested_by
      ? mrkdwn`individual cards in the thread (asked by ${storm.cards_requested_by})`
      : mrkdwn`individual cards on demand`,
  );
  notes.push(
    storm.unlocked_by
      ? mrkdwn`:unlock: unlocked by ${storm.unlocked_by} at ${md.date(storm.unlocked_at)}`
      : mrkdwn`Unlock all asks for your 2FA code`,
  );
  blocks.push({ type: 'context', text: md.join(notes, ' · ') });
  const bursting = burstTotal.ips ? mrkdwn`; ${burstTotal.ips} IP${ipS} bursting` : '';
  return {
    text: mrkdwn`:rotating_light: ${title} since ${md.date(storm.started_at)} (${stillLocked} still locked${bursting})`,
    blocks,
  };
}
