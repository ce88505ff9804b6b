import { STATUS_EMOJI } from '../../services/health.js';
import { HOME_LIST, type HomeData, type HomeLists } from '../../services/home.js';
import { md, mrkdwn, type Mrkdwn, type SafeBlock, type SafeMessage } from '../../ui.js';
import { componentLines, incidentName } from './incidents.js';

/** The App Home tab. */
export function homeView(data: HomeData, now = new Date()): SafeMessage {
  if (!data.linked) {
    return {
      text: mrkdwn`Warden: your Slack account is not linked`,
      blocks: [
        { type: 'header', text: 'Warden' },
        { type: 'text', text: mrkdwn`:link: ${data.why}` },
      ],
    };
  }
  const { report, open } = data;
  const blocks: SafeBlock[] = [
    { type: 'header', text: 'Warden' },
    { type: 'context', text: mrkdwn`Signed in as *${data.username}* (${data.role}) · refreshed ${md.date(now)}` },
    { type: 'header', text: `${STATUS_EMOJI[report.status]} System health: ${report.status}` },
    { type: 'text', text: md.join(componentLines(report), '\n') },
  ];
  const staleJobs = report.jobs.filter((j) => j.stale || j.failing);
  if (staleJobs.length) {
    blocks.push({ type: 'text', text: md.join(staleJobs.map((j) => mrkdwn`:warning: job ${md.code(j.job)} — ${j.note}`), '\n') });
  }
  const incidents = open.map(
    (i) =>
      mrkdwn`:rotating_light: #${i.id} — ${i.last_status} since ${md.date(i.opened_at)} · ${incidentName(i)}${
        i.acknowledged_at
          ? mrkdwn` · acknowledged by ${i.acknowledged_by_slack ? md.user(i.acknowledged_by_slack) : (i.acknowledged_by_name ?? 'someone')}`
          : ' · not acknowledged (use the button on the alert)'
      }`,
  );
  blocks.push({ type: 'text', text: incidents.length ? mrkdwn`*Open incidents*\n${md.join(incidents, '\n')}` : mrkdwn`*Open incidents*\nNone.` });
  blocks.push({ type: 'context', text: mrkdwn`Details: ${md.code('/health')} · ${md.code('/health pool')}` });

  if (!data.lists) {
    blocks.push({ type: 'divider' });
    blocks.push({ type: 'context', text: mrkdwn`Pending requests and locked accounts are shown to admins.` });
    return { text: mrkdwn`Warden — system health: ${report.status}`, blocks };
  }

  blocks.push({ type: 'divider' });
  blocks.push({ type: 'text', text: promotionsSection(data.lists.promotions) });
  blocks.push({ type: 'text', text: recoveriesSection(data.lists.recoveries) });
  blocks.push({ type: 'text', text: lockedSection(data.lists.locked) });
  return { text: mrkdwn`Warden — system health: ${report.status}`, blocks };
}

function promotionsSection(rows: HomeLists['promotions']): Mrkdwn {
  if (!rows.length) return mrkdwn`*Pending promotion requests*\nNone.`;
  const lines = rows.map((r) => mrkdwn`• #${r.id} ${r.username ?? '(deleted user)'} — requested ${md.date(r.requested_at)}`);
  return mrkdwn`*Pending promotion requests (${rows[0].total})*\n${md.join(lines, '\n')}${more(rows[0].total)}\nReview: ${md.code('/promotions list')}`;
}

function recoveriesSection(rows: HomeLists['recoveries']): Mrkdwn {
  if (!rows) return mrkdwn`*Pending 2FA recoveries*\nNot available (2FA recovery is not set up in this database).`;
  if (!rows.length) return mrkdwn`*Pending 2FA recoveries*\nNone.`;
  const lines = rows.map(
    (r) =>
      mrkdwn`• #${r.id} ${r.target_username} — ${r.status === 'pending' ? 'waiting for a second admin' : 'identity checks running'}, opened by ${r.initiator_username} ${md.date(r.created_at)}`,
  );
  return mrkdwn`*Pending 2FA recoveries (${rows[0].total})*\n${md.join(lines, '\n')}${more(rows[0].total)}`;
}

function lockedSection(rows: HomeLists['locked']): Mrkdwn {
  if (!rows.length) return mrkdwn`*Locked accounts*\nNone.`;
  const lines = rows.map(
    (r) => mrkdwn`• :lock: ${r.username} (${r.role}) — until ${md.date(r.locked_until)}, ${r.failed_login_attempts ?? 0} failed attempts`,
  );
  return mrkdwn`*Locked accounts (${rows[0].total})*\n${md.join(lines, '\n')}${more(rows[0].total)}\nUnlock: ${md.code('/users unlock USERNAME')}`;
}

function more(total: number): Mrkdwn | string {
  return total > HOME_LIST ? mrkdwn`\n…and ${total - HOME_LIST} more` : '';
}
