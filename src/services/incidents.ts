import { ConflictError, NotFoundError } from '../errors.js';
import { md } from '../ui.js';
import { acknowledgedLine, changeLine, renderIncident, resolvedLine, whoAcked } from '../slack/cards/incidents.js';
import { writeAudit } from './audit-writer.js';
import type { HealthReport, Status } from './health.js';
import type { Actor } from './identity.js';
import type { Services } from './index.js';

/**
 * Health incidents (DESIGN §4 "Health"): one message per incident in ALERTS_CHANNEL,
 * posted when the overall status leaves healthy, updated on every health tick while it
 * lasts (a line threaded under it on each change of status), marked resolved with its
 * duration when the status is healthy again. An Acknowledge button records who took it.
 *
 * Every message goes through the alert outbox in the same transaction as the incident row,
 * so a decision and its message commit together and nothing is lost while Slack is away.
 * One open incident at most (a partial unique index), whatever the number of job runners.
 * It opens after HEALTH_OPEN_AFTER bad checks in a row and resolves after HEALTH_RESOLVE_AFTER
 * good ones, so a single slow check neither opens nor closes one.
 */

export interface IncidentRow {
  id: number;
  status: 'open' | 'resolved';
  opened_at: Date;
  resolved_at: Date | null;
  first_status: Status;
  last_status: Status;
  worst_status: Status;
  changes: number;
  last_checked_at: Date;
  last_report: HealthReport | null;
  acknowledged_by: number | null;
  acknowledged_by_name: string | null;
  acknowledged_by_slack: string | null;
  acknowledged_at: Date | null;
  post_id: number | null;
  channel: string | null;
  ts: string | null;
}

export type ObserveOutcome =
  | { action: 'none' }
  | { action: 'opened' | 'updated' | 'changed' | 'resolved'; incident: IncidentRow };

const SEVERITY: Record<Status, number> = { healthy: 0, unknown: 1, degraded: 2, unhealthy: 3 };

export const ACK_ACTION = 'health:ack';

export class IncidentService {
  constructor(private readonly services: () => Services) {}

  private get s() {
    return this.services();
  }

  /**
   * Takes one health report (a tick of the health job) and moves the incident lifecycle on.
   * Safe to call concurrently: the open incident is locked, and a second opener loses on the
   * unique index and does nothing.
   */
  async observe(report: HealthReport): Promise<ObserveOutcome> {
    const channel = this.s.config.ALERTS_CHANNEL;
    const { HEALTH_OPEN_AFTER: openAfter, HEALTH_RESOLVE_AFTER: resolveAfter } = this.s.config;
    const outcome = await this.s.db.tx(async (q): Promise<ObserveOutcome> => {
      // Consecutive bad / good checks (one row, locked: replicas' ticks count once each).
      const healthy = report.status === 'healthy';
      const { rows: streaks } = await q.query<{ bad: number; good: number }>(
        `INSERT INTO warden_health_streak AS s (id, bad, good) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET bad = CASE WHEN $1 = 1 THEN s.bad + 1 ELSE 0 END,
                                        good = CASE WHEN $2 = 1 THEN s.good + 1 ELSE 0 END,
                                        updated_at = now()
         RETURNING bad, good`,
        [healthy ? 0 : 1, healthy ? 1 : 0],
      );
      const streak = streaks[0];
      const open = await q.query<IncidentRow>(`SELECT * FROM warden_health_incident WHERE status = 'open' FOR UPDATE`);
      const current = open.rows[0];
      const reportJson = JSON.stringify(report);

      if (healthy) {
        if (!current) return { action: 'none' };
        // Not yet: it has to stay good for a few checks before the incident is called resolved.
        if (streak.good < resolveAfter) return { action: 'none' };
        const { rows } = await q.query<IncidentRow>(
          `UPDATE warden_health_incident
              SET status = 'resolved', resolved_at = $2, last_checked_at = $2, last_report = $3
            WHERE id = $1 RETURNING *`,
          [current.id, report.checkedAt, reportJson],
        );
        const inc = rows[0];
        if (inc.post_id) {
          await this.s.outbox.update(q, inc.post_id, renderIncident(inc));
          await this.s.outbox.post(q, inc.channel ?? channel ?? '', resolvedLine(inc), {
            dedupeKey: `health-incident:${inc.id}:resolved`,
            threadOfId: inc.post_id,
          });
        }
        return { action: 'resolved', incident: inc };
      }

      if (!current) {
        // One bad check is not an incident: a slow query or a blip must repeat first.
        if (streak.bad < openAfter) return { action: 'none' };
        const { rows } = await q.query<IncidentRow>(
          `INSERT INTO warden_health_incident (status, opened_at, first_status, last_status, worst_status, last_checked_at, last_report, channel)
           VALUES ('open', $1, $2, $2, $2, $1, $3, $4)
           ON CONFLICT DO NOTHING RETURNING *`,
          [report.checkedAt, report.status, reportJson, channel ?? null],
        );
        // Another runner opened it at the same moment: it posts, we do nothing.
        if (!rows[0]) return { action: 'none' };
        let inc = rows[0];
        if (channel) {
          const postId = await this.s.outbox.post(q, channel, renderIncident(inc), { dedupeKey: `health-incident:${inc.id}` });
          inc = (await q.query<IncidentRow>('UPDATE warden_health_incident SET post_id = $2 WHERE id = $1 RETURNING *', [inc.id, postId]))
            .rows[0];
        } else {
          this.s.logger.warn({ incident: inc.id }, 'health incident opened but ALERTS_CHANNEL is not set: not posted');
        }
        return { action: 'opened', incident: inc };
      }

      const changed = current.last_status !== report.status;
      const worstStatus = SEVERITY[report.status] > SEVERITY[current.worst_status] ? report.status : current.worst_status;
      const { rows } = await q.query<IncidentRow>(
        `UPDATE warden_health_incident
            SET last_status = $2, worst_status = $3, last_checked_at = $4, last_report = $5,
                changes = changes + $6
          WHERE id = $1 RETURNING *`,
        [current.id, report.status, worstStatus, report.checkedAt, reportJson, changed ? 1 : 0],
      );
      let inc = rows[0];
      if (!inc.post_id && channel) {
        // Opened while ALERTS_CHANNEL was not set: post it now that it is.
        const postId = await this.s.outbox.post(q, channel, renderIncident(inc), { dedupeKey: `health-incident:${inc.id}` });
        inc = (await q.query<IncidentRow>('UPDATE warden_health_incident SET post_id = $2, channel = $3 WHERE id = $1 RETURNING *', [inc.id, postId, channel]))
          .rows[0];
      } else if (inc.post_id) {
        await this.s.outbox.update(q, inc.post_id, renderIncident(inc));
        if (changed) {
          await this.s.outbox.post(q, inc.channel ?? channel ?? '', changeLine(current.last_status, inc), {
            dedupeKey: `health-incident:${inc.id}:change:${inc.changes}`,
            threadOfId: inc.post_id,
          });
        }
      }
      return { action: changed ? 'changed' : 'updated', incident: inc };
    });
    if (outcome.action !== 'none' && outcome.action !== 'updated') {
      this.s.logger.info({ incident: outcome.incident.id, action: outcome.action, status: report.status }, 'health incident');
    }
    return outcome;
  }

  /**
   * Records who took the incident: any linked account may (on-call people need not be
   * admins; acknowledging changes no account). Once only; audited; shown on the message.
   */
  async acknowledge(actor: Actor, incidentId: number): Promise<IncidentRow> {
    return this.s.db.tx(async (q) => {
      const { rows } = await q.query<IncidentRow>(
        `UPDATE warden_health_incident
            SET acknowledged_by = $2, acknowledged_by_name = $3, acknowledged_by_slack = $4, acknowledged_at = now()
          WHERE id = $1 AND status = 'open' AND acknowledged_at IS NULL
          RETURNING *`,
        [incidentId, actor.user.id, actor.user.username, actor.slack.userId],
      );
      const inc = rows[0];
      if (!inc) {
        const existing = (await q.query<IncidentRow>('SELECT * FROM warden_health_incident WHERE id = $1', [incidentId])).rows[0];
        if (!existing) throw new NotFoundError(`There is no health incident #${incidentId}.`);
        if (existing.acknowledged_at) {
          throw new ConflictError(`Incident #${incidentId} was already acknowledged by ${whoAcked(existing)} at ${md.date(existing.acknowledged_at)}.`);
        }
        throw new ConflictError(`Incident #${incidentId} was resolved at ${md.date(existing.resolved_at)}; there is nothing to acknowledge.`);
      }
      await writeAudit(q, actor, {
        action: 'incident_acknowledged',
        entityType: 'health_incident',
        entityId: inc.id,
        details: { incident: inc.id, status: inc.last_status, opened_at: new Date(inc.opened_at).toISOString() },
      });
      if (inc.post_id) {
        await this.s.outbox.update(q, inc.post_id, renderIncident(inc));
        await this.s.outbox.post(q, inc.channel ?? this.s.config.ALERTS_CHANNEL ?? '', acknowledgedLine(inc), { dedupeKey: `health-incident:${inc.id}:ack`, threadOfId: inc.post_id });
      }
      return inc;
    });
  }

  async get(id: number): Promise<IncidentRow | null> {
    const { rows } = await this.s.db.query<IncidentRow>('SELECT * FROM warden_health_incident WHERE id = $1', [id]);
    return rows[0] ?? null;
  }

  async openIncidents(): Promise<IncidentRow[]> {
    const { rows } = await this.s.db.query<IncidentRow>(
      `SELECT * FROM warden_health_incident WHERE status = 'open' ORDER BY opened_at DESC`,
    );
    return rows;
  }

  /** Where the incident message landed, once the outbox delivered it. */
  async messageRef(inc: IncidentRow) {
    if (inc.post_id) return this.s.outbox.refOf(inc.post_id);
    return inc.channel && inc.ts ? { channel: inc.channel, ts: inc.ts } : null;
  }
}
