import type { Masker } from '../../services/masking.js';
import { PROMOTION_ACTIONS, type HistorySummary, type PromotionView } from '../../services/promotions.js';
import { md, mrkdwn, type Mrkdwn, type SafeBlock, type SafeMessage } from '../../ui.js';
import { identityChangesBlock } from './identity.js';

/** Promotion request cards and messages (issue 4); the service gathers a PromotionView. */

/** `14:02 UTC (2025-11-25)`. */
export function clock(d: Date): string {
  const iso = d.toISOString();
  return `${iso.slice(11, 16)} UTC (${iso.slice(0, 10)})`;
}

function who(reviewer: PromotionView['reviewer']): Mrkdwn {
  if (!reviewer) return mrkdwn`a since-deleted admin`;
  return reviewer.slackUserId ? mrkdwn`${md.user(reviewer.slackUserId)} (${reviewer.username})` : md.text(reviewer.username);
}

/** "Approved by <@U…> (alice) at 14:02 UTC (…)". */
export function decisionLine(view: PromotionView): Mrkdwn {
  const r = view.request;
  const at = r.reviewed_at ? clock(r.reviewed_at) : '—';
  switch (r.status) {
    case 'approved':
      return mrkdwn`:white_check_mark: Approved by ${who(view.reviewer)} at ${at}${r.admin_notes ? mrkdwn` — ${r.admin_notes}` : ''}`;
    case 'rejected':
      return mrkdwn`:no_entry: Rejected by ${who(view.reviewer)} at ${at} — ${r.rejection_reason ?? ''}`;
    case 'expired':
      return mrkdwn`:hourglass: Expired at ${at} without a decision`;
    default:
      return mrkdwn`:hourglass_flowing_sand: Pending since ${md.date(r.requested_at)}`;
  }
}

/** What a loser of the race, or a stale click, is told (the text of a ConflictError). */
export function decidedText(view: PromotionView): Mrkdwn {
  const r = view.request;
  const at = r.reviewed_at ? clock(r.reviewed_at) : 'an unknown time';
  if (r.status === 'expired') return mrkdwn`Request #${r.id} already expired at ${at}; nothing to decide.`;
  if (r.status === 'pending') return mrkdwn`Request #${r.id} is still pending.`;
  return mrkdwn`Request #${r.id} was already ${r.status} by ${who(view.reviewer)} at ${at}. Nothing was changed.`;
}

function historyLine(h: HistorySummary): Mrkdwn {
  const bits = [
    `${h.failedLogins} failed login${h.failedLogins === 1 ? '' : 's'}${h.lastFailedLogin ? ` (last ${md.date(h.lastFailedLogin)})` : ''}`,
    `${h.lockouts} lockout${h.lockouts === 1 ? '' : 's'}`,
    `${h.roleChanges} role change${h.roleChanges === 1 ? '' : 's'}`,
  ];
  const prev = h.previousRequests ? ` · ${h.previousRequests} earlier request${h.previousRequests === 1 ? '' : 's'} (${h.previousRejected} rejected)` : '';
  const flag = h.lockouts > 0 || h.failedLogins >= 5 ? ':warning: ' : '';
  // Numbers and dates only: no data from users in this line.
  return mrkdwn`${flag}Last 30 days: ${bits.join(', ')}${prev}`;
}

/** The review card (APPROVALS_CHANNEL) and the body of `/promotions show`. */
export function renderCard(view: PromotionView, masker: Masker, ttlSeconds: number, now = new Date()): SafeMessage {
  const { request: r, requester: u } = view;
  const ageDays = u.created_at ? Math.floor((now.getTime() - u.created_at.getTime()) / 86_400_000) : null;
  const blocks: SafeBlock[] = [
    { type: 'header', text: `Promotion request #${r.id}: ${u.username} → admin` },
    {
      type: 'fields',
      fields: [
        mrkdwn`*Requester*\n${u.username} (${masker.email(u.email)})`,
        mrkdwn`*Role*\n${u.role}`,
        mrkdwn`*Dispatch area*\n${u.dispatch_area ? u.dispatch_area : '—'}`,
        mrkdwn`*Account age*\n${ageDays === null ? '—' : `${ageDays} day${ageDays === 1 ? '' : 's'}`}`,
        mrkdwn`*Last login*\n${u.last_login ? md.date(u.last_login) : 'never'}`,
        mrkdwn`*2FA*\n${u.two_fa_enabled ? 'enabled' : r.status === 'pending' || r.status === 'approved' ? ':warning: not enabled (must enable after promotion)' : 'not enabled'}`,
        mrkdwn`*Requested*\n${md.date(r.requested_at)}`,
        mrkdwn`*Status*\n${r.status}`,
      ],
    },
    { type: 'text', text: mrkdwn`*Reason*\n${md.quote(r.reason)}` },
    { type: 'context', text: mrkdwn`${historyLine(view.history)} · Full history: ${md.code(`/audit timeline ${u.username}`)}` },
    identityChangesBlock(view.identityChanges, 'the requester'),
  ];
  if (r.status === 'pending') {
    const value = JSON.stringify({ r: r.id });
    blocks.push({
      type: 'buttons',
      buttons: [
        { text: 'Approve', actionId: PROMOTION_ACTIONS.approve, value, style: 'primary' },
        { text: 'Reject', actionId: PROMOTION_ACTIONS.reject, value, style: 'danger' },
      ],
    });
    const expires = new Date(r.requested_at.getTime() + ttlSeconds * 1000);
    blocks.push({ type: 'context', text: mrkdwn`Expires ${md.date(expires)} unless decided. The requester cannot decide it.` });
  } else {
    blocks.push({ type: 'divider' });
    blocks.push({ type: 'text', text: decisionLine(view) });
    if (r.status === 'approved' && !view.requester.two_fa_enabled) {
      blocks.push({
        type: 'context',
        text: mrkdwn`:warning: ${u.username} has no 2FA yet: admin accounts must enable it. They stay in the admins-without-2FA digest until they do.`,
      });
    }
  }
  const fallback =
    r.status === 'pending'
      ? mrkdwn`Promotion request #${r.id}: ${u.username} (${u.role}) asks to become admin`
      : mrkdwn`Promotion request #${r.id} (${u.username}): ${r.status}`;
  return { text: fallback, blocks };
}

/** The DM the requester gets when their request is decided or expires. */
export function decisionDm(view: PromotionView): SafeMessage {
  const r = view.request;
  const lines: Mrkdwn[] = [];
  switch (r.status) {
    case 'approved':
      lines.push(mrkdwn`:tada: Your request to become an admin (#${r.id}) was *approved* by ${who(view.reviewer)}.`);
      if (r.admin_notes) lines.push(mrkdwn`Notes: ${r.admin_notes}`);
      if (!view.requester.two_fa_enabled) {
        lines.push(
          mrkdwn`:warning: Admin accounts must have two-factor authentication. Enable it now in the application (Profile → Enable Two-Factor Authentication); until you do you are listed in the admins-without-2FA digest.`,
        );
      }
      break;
    case 'rejected':
      lines.push(mrkdwn`Your request to become an admin (#${r.id}) was *rejected* by ${who(view.reviewer)}.`);
      lines.push(mrkdwn`Reason: ${r.rejection_reason ?? ''}`);
      break;
    case 'expired':
      lines.push(mrkdwn`Your request to become an admin (#${r.id}) expired without a decision. You can ask again with ${md.code('/promotions request REASON')}.`);
      break;
    default:
      lines.push(mrkdwn`Your request #${r.id} is pending.`);
  }
  return { text: md.join(lines, '\n') };
}
