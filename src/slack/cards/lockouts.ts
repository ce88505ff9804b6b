import type { Masker } from '../../services/masking.js';
import type { LockoutAttempts, LockoutCardData } from '../../services/lockouts.js';
import { md, type Block, type Button, type Message } from '../../ui.js';

/** The lockout alert card: who, when, until when, recent failed attempts (IPs masked), buttons. */
export function lockoutCard(data: LockoutCardData, masker: Masker): Message {
  const { alert, account, attempts } = data;
  const name = md.escape(alert.username);
  const unlocked = !!alert.unlocked_at;
  const fields = [
    `*Account*\n${name}${account ? ` (${account.role})` : ' (no such account now)'}`,
    `*E-mail*\n${account ? md.escape(masker.email(account.email)) : '—'}`,
    `*Locked at*\n${md.date(alert.locked_at)}`,
    `*Locked until*\n${alert.locked_until ? md.date(alert.locked_until) : 'unknown'}`,
  ];
  const lines = attempts.length
    ? attempts.map((a) => `• ${md.date(a.timestamp)} from ${md.code(a.ip_address ? masker.ip(a.ip_address) : 'unknown IP')}`)
    : ['_No failed logins recorded in the day before the lockout._'];
  const blocks: Block[] = [
    { type: 'header', text: unlocked ? `Unlocked: ${alert.username}` : `Account locked: ${alert.username}` },
    { type: 'fields', fields },
    { type: 'text', text: `*Recent failed attempts*\n${lines.join('\n')}` },
  ];
  const value = JSON.stringify({ a: alert.id });
  const buttons: Button[] = [];
  if (!unlocked && account) {
    buttons.push({ text: 'Unlock', actionId: 'alerts:unlock', value, style: 'primary' });
  }
  buttons.push({ text: 'Show attempts', actionId: 'alerts:attempts', value });
  blocks.push({ type: 'buttons', buttons });
  blocks.push({
    type: 'context',
    text: unlocked
      ? `:unlock: Unlocked by ${md.escape(alert.unlocked_by ?? 'an admin')} at ${md.date(alert.unlocked_at)}`
      : `Lockout #${alert.id}${alert.audit_id ? ` · audit_log #${alert.audit_id}` : ''} · Unlock asks for your 2FA code`,
  });
  const text = unlocked
    ? `:unlock: ${alert.username} was unlocked by ${alert.unlocked_by ?? 'an admin'}`
    : `:lock: Account locked: ${alert.username} at ${md.date(alert.locked_at)}`;
  return { text, blocks };
}

/** The Show attempts reply: failed logins behind a lockout (IPs masked). */
export function lockoutAttemptsMessage(data: LockoutAttempts, masker: Masker): Message {
  const { alert, attempts } = data;
  const name = md.escape(alert.username);
  if (!attempts.length) return { text: `No failed logins for ${name} in the day before its lockout at ${md.date(alert.locked_at)}.` };
  const lines = attempts.map((a) => {
    const reason = typeof a.details?.reason === 'string' ? ` · ${md.escape(masker.text(a.details.reason))}` : '';
    return `• ${md.date(a.timestamp)} from ${md.code(a.ip_address ? masker.ip(a.ip_address) : 'unknown IP')}${reason}`;
  });
  const ips = new Set(attempts.map((a) => a.ip_address ?? '?'));
  return {
    text: `Failed logins for ${alert.username}`,
    blocks: [
      { type: 'text', text: `*${attempts.length} failed login${attempts.length === 1 ? '' : 's'} for ${name}* before the lockout at ${md.date(alert.locked_at)} (from ${ips.size} IP${ips.size === 1 ? '' : 's'})` },
      { type: 'text', text: lines.join('\n') },
      { type: 'context', text: `More: \`/audit action:login_failed user:${alert.username}\`` },
    ],
  };
}
