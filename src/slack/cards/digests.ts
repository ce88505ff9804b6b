import type { DigestContent } from '../../services/digests.js';
import { md, type Block, type Message } from '../../ui.js';

/** The daily security digest. */

/** Null when there is nothing to say. */
export function digestMessage(c: DigestContent, now = new Date()): Message | null {
  const t = c.totals;
  if (!t.adminsWithout2fa && !t.locked && !t.promotions && !t.recoveries) return null;
  const more = (shown: number, total: number) => (total > shown ? `\n_…and ${total - shown} more_` : '');
  const blocks: Block[] = [{ type: 'header', text: `Security digest, ${now.toISOString().slice(0, 10)}` }];
  const summary: string[] = [];
  if (t.adminsWithout2fa) {
    summary.push(`${t.adminsWithout2fa} admin${t.adminsWithout2fa === 1 ? '' : 's'} without 2FA`);
    blocks.push({
      type: 'text',
      text:
        `*:warning: Admins without 2FA (${t.adminsWithout2fa})*\n` +
        c.adminsWithout2fa.map((a) => `• ${md.escape(a.username)} · last login ${a.last_login ? md.date(a.last_login) : 'never'}`).join('\n') +
        more(c.adminsWithout2fa.length, t.adminsWithout2fa),
    });
  }
  if (t.locked) {
    summary.push(`${t.locked} locked account${t.locked === 1 ? '' : 's'}`);
    blocks.push({
      type: 'text',
      text:
        `*:lock: Locked accounts (${t.locked})*\n` +
        c.locked
          .map((u) => `• ${md.escape(u.username)} · until ${md.date(u.locked_until)} · ${u.failed_login_attempts ?? 0} failed attempts`)
          .join('\n') +
        more(c.locked.length, t.locked),
    });
  }
  if (t.promotions) {
    summary.push(`${t.promotions} promotion request${t.promotions === 1 ? '' : 's'} waiting over a day`);
    blocks.push({
      type: 'text',
      text:
        `*:hourglass: Promotion requests waiting over a day (${t.promotions})*\n` +
        c.promotions.map((p) => `• #${p.id} ${md.escape(p.username)} · since ${md.date(p.requested_at)}`).join('\n') +
        more(c.promotions.length, t.promotions),
    });
  }
  if (t.recoveries) {
    summary.push(`${t.recoveries} 2FA recover${t.recoveries === 1 ? 'y' : 'ies'} waiting over a day`);
    blocks.push({
      type: 'text',
      text:
        `*:key: 2FA recoveries waiting over a day (${t.recoveries})*\n` +
        c.recoveries.map((r) => `• #${r.id} ${md.escape(r.target_username)} · ${r.status} since ${md.date(r.created_at)}`).join('\n') +
        more(c.recoveries.length, t.recoveries),
    });
  }
  blocks.push({ type: 'context', text: 'Details: `/2fa admins-without` · `/users list status:locked` · `/promotions list`' });
  return { text: `Security digest: ${summary.join(', ')}`, blocks };
}
