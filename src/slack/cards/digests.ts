import type { DigestContent } from '../../services/digests.js';
import { md, mrkdwn, type Mrkdwn, type SafeBlock, type SafeMessage } from '../../ui.js';

/** The daily security digest. Null when there is nothing to say. */
export function digestMessage(c: DigestContent, now = new Date()): SafeMessage | null {
  const t = c.totals;
  if (!t.adminsWithout2fa && !t.locked && !t.promotions && !t.recoveries) return null;
  const more = (shown: number, total: number) => (total > shown ? mrkdwn`\n_…and ${total - shown} more_` : '');
  const list = (lines: Mrkdwn[]) => md.join(lines, '\n');
  const blocks: SafeBlock[] = [{ type: 'header', text: `Security digest, ${now.toISOString().slice(0, 10)}` }];
  const summary: string[] = [];
  if (t.adminsWithout2fa) {
    summary.push(`${t.adminsWithout2fa} admin${t.adminsWithout2fa === 1 ? '' : 's'} without 2FA`);
    const lines = c.adminsWithout2fa.map((a) => mrkdwn`• ${a.username} · last login ${a.last_login ? md.date(a.last_login) : 'never'}`);
    blocks.push({
      type: 'text',
      text: mrkdwn`*:warning: Admins without 2FA (${t.adminsWithout2fa})*\n${list(lines)}${more(c.adminsWithout2fa.length, t.adminsWithout2fa)}`,
    });
  }
  if (t.locked) {
    summary.push(`${t.locked} locked account${t.locked === 1 ? '' : 's'}`);
    const lines = c.locked.map((u) => mrkdwn`• ${u.username} · until ${md.date(u.locked_until)} · ${u.failed_login_attempts ?? 0} failed attempts`);
    blocks.push({ type: 'text', text: mrkdwn`*:lock: Locked accounts (${t.locked})*\n${list(lines)}${more(c.locked.length, t.locked)}` });
  }
  if (t.promotions) {
    summary.push(`${t.promotions} promotion request${t.promotions === 1 ? '' : 's'} waiting over a day`);
    const lines = c.promotions.map((p) => mrkdwn`• #${p.id} ${p.username} · since ${md.date(p.requested_at)}`);
    blocks.push({
      type: 'text',
      text: mrkdwn`*:hourglass: Promotion requests waiting over a day (${t.promotions})*\n${list(lines)}${more(c.promotions.length, t.promotions)}`,
    });
  }
  if (t.recoveries) {
    summary.push(`${t.recoveries} 2FA recover${t.recoveries === 1 ? 'y' : 'ies'} waiting over a day`);
    const lines = c.recoveries.map((r) => mrkdwn`• #${r.id} ${r.target_username} · ${r.status} since ${md.date(r.created_at)}`);
    blocks.push({
      type: 'text',
      text: mrkdwn`*:key: 2FA recoveries waiting over a day (${t.recoveries})*\n${list(lines)}${more(c.recoveries.length, t.recoveries)}`,
    });
  }
  blocks.push({
    type: 'context',
    text: mrkdwn`Details: ${md.code('/2fa admins-without')} · ${md.code('/users list status:locked')} · ${md.code('/promotions list')}`,
  });
  return { text: mrkdwn`Security digest: ${summary.join(', ')}`, blocks };
}
