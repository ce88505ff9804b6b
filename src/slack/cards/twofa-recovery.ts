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
import { md, mrkdwn, type Mrkdwn, type SafeBlock, type SafeMessage } from '../../ui.js';
import type { IdentityChange } from '../../services/identity-changes.js';
import { identityChangesBlock } from './identity.js';

/** 2FA recovery cards and messages (issue 5). */

/** The DM that carries a Slack verification code (to the target's linked Slack account only). */
export function recoveryCodeDm(m: { intro: string; code: string; minutes: number; warning: string }): SafeMessage {
  return {
    text: mrkdwn`Your Warden verification code: ${m.code} (valid ${m.minutes} minutes)`,
    blocks: [
      { type: 'text', text: mrkdwn`:closed_lock_with_key: ${m.intro}` },
      { type: 'text', text: mrkdwn`Your verification code: *${m.code}* (valid ${m.minutes} minutes)` },
      { type: 'context', text: md.text(m.warning) },
    ],
  };
}

/** The DM the user gets once their 2FA was reset. */
export function recoveryDoneDm(r: Recovery): SafeMessage {
  return {
    text: mrkdwn`Your two-factor authentication was reset. Enable it again at your next login.`,
    blocks: [
      {
        type: 'text',
        text: mrkdwn`:closed_lock_with_key: Your two-factor authentication was reset after an identity-checked recovery (#${r.id}).
At your next login, sign in with your password and enable 2FA again: *Profile → Enable Two-Factor Authentication*.`,
      },
      { type: 'context', text: mrkdwn`If you did not ask for this, tell your security team at once.` },
    ],
  };
}

export function describeCheck(c: WardenCheck, s: CheckState | undefined): Mrkdwn {
  if (!s) return mrkdwn`${CHECK_LABELS[c]}: not used`;
  const tries = `${s.attempts} attempt${s.attempts === 1 ? '' : 's'}`;
  switch (s.result) {
    case 'passed':
      return mrkdwn`:white_check_mark: ${CHECK_LABELS[c]}: passed${s.passed_at ? mrkdwn` ${md.date(new Date(s.passed_at))}` : ''} (${tries})`;
    case 'failed':
      return mrkdwn`:x: ${CHECK_LABELS[c]}: not passed yet (${tries} wrong)`;
    case 'locked':
      return mrkdwn`:lock: ${CHECK_LABELS[c]}: locked after ${tries}`;
    case 'unsent':
      return mrkdwn`:warning: ${CHECK_LABELS[c]}: the code could not be sent${s.error ? mrkdwn` (${s.error})` : ''}; send a new one`;
    default:
      return mrkdwn`:hourglass_flowing_sand: ${CHECK_LABELS[c]}: code sent${s.sends > 1 ? ` (${s.sends} times)` : ''}, not entered yet`;
  }
}

function statusLine(r: Recovery): Mrkdwn {
  const by = r.decided_by_username ?? '?';
  switch (r.status) {
    case 'verifying':
      return mrkdwn`:hourglass_flowing_sand: Collecting identity checks`;
    case 'pending':
      return mrkdwn`:hourglass: Waiting for a second admin`;
    case 'approved':
      return mrkdwn`:white_check_mark: Approved by ${by} ${md.date(r.decided_at)}: 2FA disabled, the user re-enrols at next login`;
    case 'rejected':
      return mrkdwn`:no_entry: Rejected by ${by} ${md.date(r.decided_at)}: ${r.rejection_reason ?? ''}`;
    case 'cancelled':
      return mrkdwn`:heavy_multiplication_x: Cancelled by ${by} ${md.date(r.decided_at)}`;
    case 'expired':
      return mrkdwn`:alarm_clock: Expired ${md.date(r.decided_at ?? r.expires_at)} without a decision`;
  }
}

/**
 * The card in APPROVALS_CHANNEL. Shows who asked, for whom, the checks and their results and
 * the evidence (with any e-mail or IP address masked: the channel is shared). Never a code.
 */
export function renderRecoveryCard(r: Recovery, identityChanges: IdentityChange[] = []): SafeMessage {
  const by = r.initiator_slack ? mrkdwn`${md.user(r.initiator_slack)} (${r.initiator_username})` : md.text(r.initiator_username);
  const manual = r.manual_checks.length
    ? md.join(r.manual_checks.map((m) => mrkdwn`• ${MANUAL_CHECKS[m as ManualCheck] ?? m}`), '\n')
    : mrkdwn`• none`;
  const wardenChecks = WARDEN_CHECKS.filter((c) => r.checks[c]).map((c) => mrkdwn`• ${describeCheck(c, r.checks[c])}`);
  const warden = wardenChecks.length ? md.join(wardenChecks, '\n') : mrkdwn`• none`;
  const blocks: SafeBlock[] = [
    { type: 'header', text: `2FA recovery #${r.id}: ${r.target_username}` },
    {
      type: 'fields',
      fields: [
        mrkdwn`*Requested by*\n${by}`,
        mrkdwn`*For*\n${r.target_username}`,
        mrkdwn`*Opened*\n${md.date(r.created_at)}`,
        mrkdwn`*Expires*\n${md.date(r.expires_at)}`,
      ],
    },
    { type: 'text', text: mrkdwn`*Checks ${r.initiator_username} performed*\n${manual}` },
    { type: 'text', text: mrkdwn`*Evidence*\n${md.quote(maskText(r.evidence))}` },
    { type: 'text', text: mrkdwn`*Checks Warden ran*\n${warden}` },
    identityChangesBlock(identityChanges, 'the user or the admin who opened it'),
    { type: 'text', text: mrkdwn`*Status*: ${statusLine(r)}` },
  ];
  if (r.status === 'pending') {
    const v = JSON.stringify({ r: r.id });
    blocks.push({
      type: 'buttons',
      buttons: [
        { text: 'Approve', actionId: '2fa:approve', value: v, style: 'primary' },
        { text: 'Reject', actionId: '2fa:reject', value: v, style: 'danger' },
      ],
    });
    blocks.push({
      type: 'context',
      text: mrkdwn`A second admin approves with their own 2FA code. The admin who opened it and the user themselves cannot approve.`,
    });
  }
  const text =
    r.status === 'pending'
      ? mrkdwn`2FA recovery #${r.id} for ${r.target_username}, requested by ${r.initiator_username}: waiting for a second admin`
      : mrkdwn`2FA recovery #${r.id} for ${r.target_username}: ${r.status}`;
  return { text, blocks };
}

/** The text of the ConflictError when a recovery is already open. */
export function describeOpen(r: Recovery): Mrkdwn {
  if (r.status === 'verifying' && r.expires_at > new Date()) {
    return mrkdwn`A 2FA recovery for ${md.code(r.target_username)} is already open (#${r.id}, opened by ${r.initiator_username}, collecting identity checks). Only one can be open at a time.`;
  }
  if (r.status === 'pending' && r.expires_at > new Date()) {
    return mrkdwn`A 2FA recovery for ${md.code(r.target_username)} is already waiting for approval (#${r.id}, opened by ${r.initiator_username}). Only one can be open at a time.`;
  }
  return describeDecided(r);
}

/** The text of the ConflictError when a recovery was already decided. */
export function describeDecided(r: Recovery): Mrkdwn {
  const again = md.code(`/2fa recover ${r.target_username}`);
  const by = r.decided_by_username ?? '?';
  if ((r.status === 'pending' || r.status === 'verifying') && r.expires_at <= new Date()) {
    return mrkdwn`Recovery #${r.id} expired ${md.date(r.expires_at)}. Open a new one with ${again}.`;
  }
  switch (r.status) {
    case 'approved':
      return mrkdwn`Recovery #${r.id} was already approved by ${by} ${md.date(r.decided_at)}.`;
    case 'rejected':
      return mrkdwn`Recovery #${r.id} was already rejected by ${by} ${md.date(r.decided_at)}.`;
    case 'cancelled':
      return mrkdwn`Recovery #${r.id} was cancelled by ${by} ${md.date(r.decided_at)}.`;
    case 'expired':
      return mrkdwn`Recovery #${r.id} expired ${md.date(r.decided_at ?? r.expires_at)}. Open a new one with ${again}.`;
    case 'verifying':
      return mrkdwn`Recovery #${r.id} is still collecting identity checks; it is not waiting for approval yet.`;
    case 'pending':
      return mrkdwn`Recovery #${r.id} is waiting for approval.`;
  }
}
