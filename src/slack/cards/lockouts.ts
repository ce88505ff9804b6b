import type { Masker } from '../../services/masking.js';
import type { LockoutAttempts, LockoutCardData } from '../../services/lockouts.js';
import { md, mrkdwn, type SafeBlock, type SafeMessage } from '../../ui.js';

type SafeButton = Extract<SafeBlock, { type: 'buttons' }>['buttons'][number];

/** The lockout alert card: who, when, until when, recent failed attempts (IPs masked), buttons. */
export function lockoutCard(data: LockoutCardData, masker: Masker): SafeMessage {
  const { alert, account, attempts } = data;
  const unlocked = !!alert.unlocked_at;
  const fields = [
    account ? mrkdwn`*Account*\n${alert.username} (${account.role})` : mrkdwn`*Account*\n${alert.username} (no such account now)`,
    mrkdwn`*E-mail*\n${account ? masker.email(account.email) : '—'}`,
    mrkdwn`*Locked at*\n${md.date(alert.locked_at)}`,
    mrkdwn`*Locked until*\n${alert.locked_until ? md.date(alert.locked_until) : 'unknown'}`,
  ];
  const lines = attempts.length
    ? attempts.map((a) => mrkdwn`• ${md.date(a.timestamp)} from ${md.code(a.ip_address ? masker.ip(a.ip_address) : 'unknown IP')}`)
    : [mrkdwn`_No failed logins recorded in the day before the lockout._`];
  const blocks: SafeBlock[] = [
    { type: 'header', text: unlocked ? `Unlocked: ${alert.username}` : `Account locked: ${alert.username}` },
    { type: 'fields', fields },
    { type: 'text', text: mrkdwn`*Recent failed attempts*\n${md.join(lines, '\n')}` },
  ];
  const value = JSON.stringify({ a: alert.id });
  const buttons: SafeButton[] = [];
  if (!unlocked && account) {
    buttons.push({ text: 'Unlock', actionId: 'alerts:unlock', value, style: 'primary' });
  }
  buttons.push({ text: 'Show attempts', actionId: 'alerts:attempts', value });
  blocks.push({ type: 'buttons', buttons });
  blocks.push({
    type: 'context',
    text: unlocked
      ? mrkdwn`:unlock: Unlocked by ${alert.unlocked_by ?? 'an admin'} at ${md.date(alert.unlocked_at)}`
      : mrkdwn`Lockout #${alert.id}${alert.audit_id ? mrkdwn` · audit_log #${alert.audit_id}` : ''} · Unlock asks for your 2FA code`,
  });
  const text = unlocked
    ? mrkdwn`:unlock: ${alert.username} was unlocked by ${alert.unlocked_by ?? 'an admin'}`
    : mrkdwn`:lock: Account locked: ${alert.username} at ${md.date(alert.locked_at)}`;
  return { text, blocks };
}

/** The Show attempts reply: failed logins behind a lockout (IPs masked). */
export function lockoutAttemptsMessage(data: LockoutAttempts, masker: Masker): SafeMessage {
  const { alert, attempts } = data;
  const name = alert.username;
  if (!attempts.length) return { text: mrkdwn`No failed logins for ${name} in the day before its lockout at ${md.date(alert.locked_at)}.` };
  const lines = attempts.map((a) => {
    const reason = typeof a.details?.reason === 'string' ? mrkdwn` · ${masker.text(a.details.reason)}` : '';
    return mrkdwn`• ${md.date(a.timestamp)} from ${md.code(a.ip_address ? masker.ip(a.ip_address) : 'unknown IP')}${reason}`;
  });
  const ips = new Set(attempts.map((a) => a.ip_address ?? '?'));
  return {
    text: mrkdwn`Failed logins for ${name}`,
    blocks: [
      {
        type: 'text',
        text: mrkdwn`*${attempts.length} failed login${attempts.length === 1 ? '' : 's'} for ${name}* before the lockout at ${md.date(alert.locked_at)} (from ${ips.size} IP${ips.size === 1 ? '' : 's'})`,
      },
      { type: 'text', text: md.join(lines, '\n') },
      { type: 'context', text: mrkdwn`More: ${md.code(`/audit action:login_failed user:${alert.username}`)}` },
    ],
  };
}
