import { NotLinkedError } from '../errors.js';
import type { HealthReport } from './health.js';
import type { SlackIdentity } from './identity.js';
import type { IncidentRow } from './incidents.js';
import type { Services } from './index.js';

/**
 * What the App Home tab shows, gathered fresh each time it is opened (no Slack types here;
 * src/slack/cards/home.ts renders it and the Slack layer publishes it).
 *
 * Everyone linked sees the current health and open incidents. The lists that name accounts
 * (pending promotion requests, 2FA recoveries, locked accounts) are shown to admins only,
 * the same people who may act on them. Unlinked Slack users see how to get linked.
 */

export const HOME_LIST = 10;

export interface HomeLists {
  promotions: { id: number; username: string | null; requested_at: Date; total: number }[];
  /** Null when the 2FA recovery table does not exist in this database. */
  recoveries: { id: number; target_username: string; initiator_username: string; status: string; created_at: Date; total: number }[] | null;
  locked: { username: string; role: string; locked_until: Date; failed_login_attempts: number | null; total: number }[];
}

export type HomeData =
  | { linked: false; why: string }
  | { linked: true; username: string; role: string; report: HealthReport; open: IncidentRow[]; lists: HomeLists | null };

export async function homeData(services: Services, slack: SlackIdentity): Promise<HomeData> {
  let actor;
  try {
    actor = await services.identity.resolve(slack);
  } catch (e) {
    if (!(e instanceof NotLinkedError)) throw e;
    return { linked: false, why: e.message };
  }
  const admin = actor.user.role === 'admin';
  const [report, open] = await Promise.all([services.health.recent(), services.incidents.openIncidents()]);
  const lists = admin
    ? { promotions: await promotions(services), recoveries: await recoveries(services), locked: await locked(services) }
    : null;
  return { linked: true, username: actor.user.username, role: actor.user.role, report, open, lists };
}

async function promotions(services: Services): Promise<HomeLists['promotions']> {
  const { rows } = await services.db.query<HomeLists['promotions'][number]>(
    `SELECT p.id, u.username, p.requested_at, count(*) OVER ()::int AS total
       FROM promotion_request p LEFT JOIN "user" u ON u.id = p.user_id
      WHERE p.status = 'pending' ORDER BY p.requested_at, p.id LIMIT $1`,
    [HOME_LIST],
  );
  return rows;
}

async function recoveries(services: Services): Promise<HomeLists['recoveries']> {
  const exists = await services.db.query<{ t: string | null }>(`SELECT to_regclass('warden_2fa_recovery')::text AS t`);
  if (!exists.rows[0]?.t) return null;
  const { rows } = await services.db.query<NonNullable<HomeLists['recoveries']>[number]>(
    `SELECT id, target_username, initiator_username, status, created_at, count(*) OVER ()::int AS total
       FROM warden_2fa_recovery WHERE status IN ('verifying', 'pending') ORDER BY created_at, id LIMIT $1`,
    [HOME_LIST],
  );
  return rows;
}

async function locked(services: Services): Promise<HomeLists['locked']> {
  const { rows } = await services.db.query<HomeLists['locked'][number]>(
    `SELECT username, role, locked_until, failed_login_attempts, count(*) OVER ()::int AS total
       FROM "user" WHERE locked_until > now() ORDER BY locked_until DESC, id LIMIT $1`,
    [HOME_LIST],
  );
  return rows;
}
