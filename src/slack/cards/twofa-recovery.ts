import { maskText } from '../../services/masking.js';
import {
  CHECK_LABELS,
  MANUAL_CHECKS,
  WARDEN_CHECKS,
  type CheckState,
  type ManualCheck,
  type Recovery,
  type WardenCheck,
} from '../../services/twofa-recovery.js';
import { md, type Block, type Button, type Message } from '../../ui.js';

/** 2FA recovery cards and messages (issue 5). */

/** The DM that carries a Slack verification code (to the target's linked Slack account only). */
export function recoveryCodeDm(m: { intro: string; code: string; minutes: number; warning: string }): Message {
  return {
    text: `Your Warden verification code: ${m.code} (valid ${m.minutes} minutes)`,
    blocks: [
      { type: 'text', text: `:closed_lock_with_key: ${md.escape(m.intro)}` },
      { type: 'text', text: `Your verification code: *${m.code}* (valid ${m.minutes} minutes)` },
      { type: 'context', text: md.escape(m.warning) },
    ],
  };
}

/** The DM the user gets once their 2FA was reset. */
export function recoveryDoneDm(r: Recovery): Message {
  return {
    text: 'Your two-factor authentication was reset. Enable it again at your next login.',
    blocks: [
      {
        type: 'text',
        text:
          `:closed_lock_with_key: Your two-factor authentication was reset after an identity-checked recovery (#${r.id}).\n` +
          'At your next login, sign in with your password and enable 2FA again: *Profile → Enable Two-Factor Authentication*.',
      },
      { type: 'context', text: 'If you did not ask for this, tell your security team at once.' },
    ],
  };
}

export function describeCheck(c: WardenCheck, s: CheckState | undefined): string {
  if (!s) return `${CHECK_LABELS[c]}: not used`;
  const tries = `${s.attempts} attempt${s.attempts === 1 ? '' : 's'}`;
  switch (s.result) {
    case 'passed':
      return `:white_check_mark: ${CHECK_LABELS[c]}: passed${s.passed_at ? ` ${md.date(new Date(s.passed_at))}` : ''} (${tries})`;
    case 'failed':
      return `:x: ${CHECK_LABELS[c]}: not passed yet (${tries} wrong)`;
    case 'locked':
      return `:lock: ${CHECK_LABELS[c]}: locked after ${tries}`;
    default:
      return `:hourglass_flowing_sand: ${CHECK_LABELS[c]}: code sent${s.sends > 1 ? ` (${s.sends} times)` : ''}, not entered yet`;
  }
}

function statusLine(r: Recovery): string {
  switch (r.status) {
    case 'verifying':
      return ':hourglass_flowing_sand: Collecting identity checks';
    case 'pending':
      return ':hourglass: Waiting for a second admin';
    case 'approved':
      return `:white_check_mark: Approved by ${md.escape(r.decided_by_username ?? '?')} ${md.date(r.decided_at)}: 2FA disabled, the user re-enrols at next login`;
    case 'rejected':
      return `:no_entry: Rejected by ${md.escape(r.decided_by_username ?? '?')} ${md.date(r.decided_at)}: ${md.escape(r.rejection_reason ?? '')}`;
    case 'cancelled':
      return `:heavy_multiplication_x: Cancelled by ${md.escape(r.decided_by_username ?? '?')} ${md.date(r.decided_at)}`;
    case 'expired':
      return `:alarm_clock: Expired ${md.date(r.decided_at ?? r.expires_at)} without a decision`;
  }
}

/**
 * The card in APPROVALS_CHANNEL. Shows who asked, for whom, the checks and their results and
 * the evidence (with any e-mail or IP address masked: the channel is shared). Never a code.
 */
export function renderRecoveryCard(r: Recovery): Message {
  const by = r.initiator_slack ? `${md.user(r.initiator_slack)} (${md.escape(r.initiator_username)})` : md.escape(r.initiator_username);
  const manual = r.manual_checks.map((m) => `• ${MANUAL_CHECKS[m as ManualCheck] ?? md.escape(m)}`).join('\n') || '• none';
  const warden = WARDEN_CHECKS.filter((c) => r.checks[c]).map((c) => `• ${describeCheck(c, r.checks[c])}`).join('\n');
  const evidence = md.escape(maskText(r.evidence)).split('\n').map((l) => `> ${l}`).join('\n');
  const blocks: Block[] = [
    { type: 'header', text: `2FA recovery #${r.id}: ${r.target_username}` },
    {
      type: 'fields',
      fields: [
        `*Requested by*\n${by}`,
        `*For*\n${md.escape(r.target_username)}`,
        `*Opened*\n${md.date(r.created_at)}`,
        `*Expires*\n${md.date(r.expires_at)}`,
      ],
    },
    { type: 'text', text: `*Checks ${md.escape(r.initiator_username)} performed*\n${manual}` },
    { type: 'text', text: `*Evidence*\n${evidence}` },
    { type: 'text', text: `*Checks Warden ran*\n${warden || '• none'}` },
    { type: 'text', text: `*Status*: ${statusLine(r)}` },
  ];
  if (r.status === 'pending') {
    const v = JSON.stringify({ r: r.id });
    const buttons: Button[] = [
      { text: 'Approve', actionId: '2fa:approve', value: v, style: 'primary' },
      { text: 'Reject', actionId: '2fa:reject', value: v, style: 'danger' },
    ];
    blocks.push({ type: 'buttons', buttons });
    blocks.push({
      type: 'context',
      text: 'A second admin approves with their own 2FA code. The admin who opened it and the user themselves cannot approve.',
    });
  }
  const text =
    r.status === 'pending'
      ? `2FA recovery #${r.id} for ${r.target_username}, requested by ${r.initiator_username}: waiting for a second admin`
      : `2FA recovery #${r.id} for ${r.target_username}: ${r.status}`;
  return { text, blocks };
}

export function describeOpen(r: Recovery): string {
  if (r.status === 'verifying' && r.expires_at > new Date()) {
    return `A 2FA recovery for \`${r.target_username}\` is already open (#${r.id}, opened by ${r.initiator_username}, collecting identity checks). Only one can be open at a time.`;
  }
  if (r.status === 'pending' && r.expires_at > new Date()) {
    return `A 2FA recovery for \`${r.target_username}\` is already waiting for approval (#${r.id}, opened by ${r.initiator_username}). Only one can be open at a time.`;
  }
  return describeDecided(r);
}

export function describeDecided(r: Recovery): string {
  if ((r.status === 'pending' || r.status === 'verifying') && r.expires_at <= new Date()) {
    return `Recovery #${r.id} expired ${md.date(r.expires_at)}. Open a new one with \`/2fa recover ${r.target_username}\`.`;
  }
  switch (r.status) {
    case 'approved':
      return `Recovery #${r.id} was already approved by ${r.decided_by_username} ${md.date(r.decided_at)}.`;
    case 'rejected':
      return `Recovery #${r.id} was already rejected by ${r.decided_by_username} ${md.date(r.decided_at)}.`;
    case 'cancelled':
      return `Recovery #${r.id} was cancelled by ${r.decided_by_username} ${md.date(r.decided_at)}.`;
    case 'expired':
      return `Recovery #${r.id} expired ${md.date(r.decided_at ?? r.expires_at)}. Open a new one with \`/2fa recover ${r.target_username}\`.`;
    case 'verifying':
      return `Recovery #${r.id} is still collecting identity checks; it is not waiting for approval yet.`;
    case 'pending':
      return `Recovery #${r.id} is waiting for approval.`;
  }
}

