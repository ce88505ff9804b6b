import { NotLinkedError } from '../errors.js';
import { md, type Block, type Message } from '../ui.js';
import { STATUS_EMOJI } from './health.js';
import type { SlackIdentity } from './identity.js';
import { componentLines } from './incidents.js';
import type { Services } from './index.js';

/**
 * The App Home tab, built fresh each time it is opened (no Slack types here; the Slack layer
 * publishes it with services.chat.publishHome).
 *
 * Everyone linked sees the current health and open incidents. The lists that name accounts
 * (pending promotion requests, 2FA recoveries, locked accounts) are shown to admins only,
 * the same people who may act on them. Unlinked Slack users see how to get linked.
 */

const LIST = 10;

export async function buildHome(services: Services, slack: SlackIdentity): Promise<Message> {
  let actor;
  try {
    actor = await services.identity.resolve(slack);
  } catch (e) {
    if (!(e instanceof NotLinkedError)) throw e;
    return {
      text: 'Warden: your Slack account is not linked',
      blocks: [
        { type: 'header', text: 'Warden' },
        { type: 'text', text: `:link: ${e.message}` },
      ],
    };
  }
  const admin = actor.user.role === 'admin';
  const [report, open] = await Promise.all([services.health.recent(), services.incidents.openIncidents()]);
  const blocks: Block[] = [
    { type: 'header', text: 'Warden' },
    { type: 'context', text: `Signed in as *${md.escape(actor.user.username)}* (${actor.user.role}) · refreshed ${md.date(new Date())}` },
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

  if (!admin) {
    blocks.push({ type: 'divider' });
    blocks.push({ type: 'context', text: 'Pending requests and locked accounts are shown to admins.' });
    return { text: `Warden — system health: ${report.status}`, blocks };
  }

  blocks.push({ type: 'divider' });
  blocks.push({ type: 'text', text: await promotionsSection(services) });
  blocks.push({ type: 'text', text: await recoveriesSection(services) });
  blocks.push({ type: 'text', text: await lockedSection(services) });
  return { text: `Warden — system health: ${report.status}`, blocks };
}

async function promotionsSection(services: Services): Promise<string> {
  const { rows } = await services.db.query<{ id: number; username: string | null; requested_at: Date; total: number }>(
    `SELECT p.id, u.username, p.requested_at, count(*) OVER ()::int AS total
       FROM promotion_request p LEFT JOIN "user" u ON u.id = p.user_id
      WHERE p.status = 'pending' ORDER BY p.requested_at, p.id LIMIT $1`,
    [LIST],
  );
  if (!rows.length) return '*Pending promotion requests*\nNone.';
  const lines = rows.map((r) => `• #${r.id} ${md.escape(r.username ?? '(deleted user)')} — requested ${md.date(r.requested_at)}`);
  return `*Pending promotion requests (${rows[0].total})*\n${lines.join('\n')}${more(rows[0].total)}\nReview: \`/promotions list\``;
}

async function recoveriesSection(services: Services): Promise<string> {
  const exists = await services.db.query<{ t: string | null }>(`SELECT to_regclass('warden_2fa_recovery')::text AS t`);
  if (!exists.rows[0]?.t) return '*Pending 2FA recoveries*\nNot available (2FA recovery is not set up in this database).';
  const { rows } = await services.db.query<{ id: number; target_username: string; initiator_username: string; status: string; created_at: Date; total: number }>(
    `SELECT id, target_username, initiator_username, status, created_at, count(*) OVER ()::int AS total
       FROM warden_2fa_recovery WHERE status IN ('verifying', 'pending') ORDER BY created_at, id LIMIT $1`,
    [LIST],
  );
  if (!rows.length) return '*Pending 2FA recoveries*\nNone.';
  const lines = rows.map(
    (r) =>
      `• #${r.id} ${md.escape(r.target_username)} — ${r.status === 'pending' ? 'waiting for a second admin' : 'identity checks running'}, ` +
      `opened by ${md.escape(r.initiator_username)} ${md.date(r.created_at)}`,
  );
  return `*Pending 2FA recoveries (${rows[0].total})*\n${lines.join('\n')}${more(rows[0].total)}`;
}

async function lockedSection(services: Services): Promise<string> {
  const { rows } = await services.db.query<{ username: string; role: string; locked_until: Date; failed_login_attempts: number | null; total: number }>(
    `SELECT username, role, locked_until, failed_login_attempts, count(*) OVER ()::int AS total
       FROM "user" WHERE locked_until > now() ORDER BY locked_until DESC, id LIMIT $1`,
    [LIST],
  );
  if (!rows.length) return '*Locked accounts*\nNone.';
  const lines = rows.map(
    (r) => `• :lock: ${md.escape(r.username)} (${r.role}) — until ${md.date(r.locked_until)}, ${r.failed_login_attempts ?? 0} failed attempts`,
  );
  return `*Locked accounts (${rows[0].total})*\n${lines.join('\n')}${more(rows[0].total)}\nUnlock: \`/users unlock USERNAME\``;
}

function more(total: number): string {
  return total > LIST ? `\n…and ${total - LIST} more` : '';
}
