import { STATUS_EMOJI } from '../../services/health.js';
import { HOME_LIST, type HomeData, type HomeLists } from '../../services/home.js';
import { md, type Block, type Message } from '../../ui.js';
import { componentLines } from './incidents.js';

/** The App Home tab. */
export function homeView(data: HomeData, now = new Date()): Message {
  if (!data.linked) {
    return {
      text: 'Warden: your Slack account is not linked',
      blocks: [
        { type: 'header', text: 'Warden' },
        { type: 'text', text: `:link: ${data.why}` },
      ],
    };
  }
  const { report, open } = data;
  const blocks: Block[] = [
    { type: 'header', text: 'Warden' },
    { type: 'context', text: `Signed in as *${md.escape(data.username)}* (${data.role}) · refreshed ${md.date(now)}` },
    { type: 'header', text: `${STATUS_EMOJI[report.status]} System health: ${report.status}` },
    { type: 'text', text: componentLines(report).join('\n') },
  ];
  const staleJobs = report.jobs.filter((j) => j.stale || j.failing);
  if (staleJobs.length) {
    blocks.push({ type: 'text', text: staleJobs.map((j) => `:warning: job \`${md.escape(j.job)}\` — ${md.escape(j.note)}`).join('\n') });
  }
  blocks.push({
    type: 'text',
    text: open.length
      ? `*Open incidents*\n${open
          .map(
            (i) =>
              `:rotating_light: #${i.id} — ${i.last_status} since ${md.date(i.opened_at)}` +
              (i.acknowledged_at
                ? ` · acknowledged by ${i.acknowledged_by_slack ? md.user(i.acknowledged_by_slack) : md.escape(i.acknowledged_by_name ?? 'someone')}`
                : ' · not acknowledged (use the button on the alert)'),
          )
          .join('\n')}`
      : '*Open incidents*\nNone.',
  });
  blocks.push({ type: 'context', text: 'Details: `/health` · `/health pool`' });

  if (!data.lists) {
    blocks.push({ type: 'divider' });
    blocks.push({ type: 'context', text: 'Pending requests and locked accounts are shown to admins.' });
    return { text: `Warden — system health: ${report.status}`, blocks };
  }

  blocks.push({ type: 'divider' });
  blocks.push({ type: 'text', text: promotionsSection(data.lists.promotions) });
  blocks.push({ type: 'text', text: recoveriesSection(data.lists.recoveries) });
  blocks.push({ type: 'text', text: lockedSection(data.lists.locked) });
  return { text: `Warden — system health: ${report.status}`, blocks };
}

function promotionsSection(rows: HomeLists['promotions']): string {
  if (!rows.length) return '*Pending promotion requests*\nNone.';
  const lines = rows.map((r) => `• #${r.id} ${md.escape(r.username ?? '(deleted user)')} — requested ${md.date(r.requested_at)}`);
  return `*Pending promotion requests (${rows[0].total})*\n${lines.join('\n')}${more(rows[0].total)}\nReview: \`/promotions list\``;
}

function recoveriesSection(rows: HomeLists['recoveries']): string {
  if (!rows) return '*Pending 2FA recoveries*\nNot available (2FA recovery is not set up in this database).';
  if (!rows.length) return '*Pending 2FA recoveries*\nNone.';
  const lines = rows.map(
    (r) =>
      `• #${r.id} ${md.escape(r.target_username)} — ${r.status === 'pending' ? 'waiting for a second admin' : 'identity checks running'}, ` +
      `opened by ${md.escape(r.initiator_username)} ${md.date(r.created_at)}`,
  );
  return `*Pending 2FA recoveries (${rows[0].total})*\n${lines.join('\n')}${more(rows[0].total)}`;
}

function lockedSection(rows: HomeLists['locked']): string {
  if (!rows.length) return '*Locked accounts*\nNone.';
  const lines = rows.map(
    (r) => `• :lock: ${md.escape(r.username)} (${r.role}) — until ${md.date(r.locked_until)}, ${r.failed_login_attempts ?? 0} failed attempts`,
  );
  return `*Locked accounts (${rows[0].total})*\n${lines.join('\n')}${more(rows[0].total)}\nUnlock: \`/users unlock USERNAME\``;
}

function more(total: number): string {
  return total > HOME_LIST ? `\n…and ${total - HOME_LIST} more` : '';
}
