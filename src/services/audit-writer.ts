import type { Queryable } from '../db/index.js';
import { userSnapshot } from '../domain/user.js';
import type { Actor } from './identity.js';

/**
 * The one way Warden writes audit_log rows. Call it with the transaction's Queryable
 * so that the change and its audit row commit or roll back together (DESIGN §3).
 */
export interface AuditEntry {
  action: string;
  entityType?: string;
  entityId?: number | null;
  details?: Record<string, unknown>;
  before?: Record<string, unknown> | null;
  after?: Record<string, unknown> | null;
  ipAddress?: string | null;
}

/** Where a change came from: names the Slack user, team and channel in `details`. */
export function actorDetails(actor: Actor): Record<string, unknown> {
  return {
    via: 'warden',
    actor: actor.user.username,
    slack_user: actor.slack.userId,
    slack_team: actor.slack.teamId,
    ...(actor.slack.channelId ? { slack_channel: actor.slack.channelId } : {}),
    ...(actor.slack.origin ?? {}),
  };
}

export async function writeAudit(q: Queryable, actor: Actor | null, entry: AuditEntry): Promise<number> {
  const details = { ...(actor ? actorDetails(actor) : { via: 'warden' }), ...(entry.details ?? {}) };
  const { rows } = await q.query<{ id: number }>(
    `INSERT INTO audit_log (user_id, action, entity_type, entity_id, details, ip_address, before_state, after_state)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
    [
      actor?.user.id ?? null,
      entry.action,
      entry.entityType ?? null,
      entry.entityId ?? null,
      JSON.stringify(details),
      entry.ipAddress ?? null,
      entry.before ? JSON.stringify(userSnapshot(entry.before)) : null,
      entry.after ? JSON.stringify(userSnapshot(entry.after)) : null,
    ],
  );
  return rows[0].id;
}
