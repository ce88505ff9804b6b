import { ConflictError, NotFoundError } from '../errors.js';
import { md, mrkdwn } from '../ui.js';
import { acknowledgedLine, changeLine, renderIncident, resolvedLine, whoAcked } from '../slack/cards/incidents.js';
import { writeAudit } from './audit-writer.js';
import type { HealthReport, Status } from './health.js';
import type { Actor } from './identity.js';
import type { Queryable } from '../db/index.js';
import type { Services } from './index.js';

/**
 * Health incidents (DESIGN §4 "Health"): one incident — and one message in ALERTS_CHANNEL —
 * per unhealthy COMPONENT (database, cache, audit, application, e-mail, jobs), so that several
 * can be open at once and a real outage never hides as a status change of another one. Each
 * message is updated on every health tick while it lasts (a line threaded under it on each
 * change of that component's status) and marked resolved with its duration when the
 * component is healthy again. An Acknowledge button records who took it.
 *
 * Every message goes through the alert outbox in the same transaction as the incident row,
 * so a decision and its message commit together and nothing is lost while Slack is away.
 * One open incident per component at most (a partial unique index), whatever the number of
 * job runners. Each opens after HEALTH_OPEN_AFTER bad checks of its component in a row and
 * resolves after HEALTH_RESOLVE_AFTER good ones, so a single slow check neither opens nor
 * closes one. Incidents opened before migration 016 were about the overall status
 * (component 'overall'): they follow the overall status until they resolve.
 */

export interface IncidentRow {
  id: number;
  /** The component's key (ComponentReport.key), or 'overall' for an incident of before 016. */
  component: string;
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

export type IncidentAction = 'opened' | 'updated' | 'changed' | 'resolved';

export interface ComponentOutcome {
  component: string;
  action: IncidentAction;
  incident: IncidentRow;
}

/**
 * What one health report did: `incidents` has one entry per component whose incident moved;
 * `action`/`incident` name the most notable of them (opened, then changed, resolved, updated).
 */
export type ObserveOutcome = ({ action: 'none' } | { action: IncidentAction; incident: IncidentRow }) & { incidents: ComponentOutcome[] };

const SEVERITY: Record<Status, number> = { healthy: 0, unknown: 1, degraded: 2, unhealthy: 3 };
const NOTABLE: Record<IncidentAction, number> = { opened: 0, changed: 1, resolved: 2, updated: 3 };

export const ACK_ACTION = 'health:ack';

/** The incident component of the incidents opened before per-component incidents (migration 016). */
export const OVERALL = 'overall';

export class IncidentService {
  constructor(private readonly services: () => Services) {}

  private get s() {
    return this.services();
  }

  /**
   * Takes one health report (a tick of the health job) and moves each component's incident
   * lifecycle on, in one transaction. Safe to call concurrently: the components are taken in
   * one order, each streak row and open incident is locked, and a second opener loses on the
   * unique index and does nothing.
   */
  async observe(report: HealthReport): Promise<ObserveOutcome> {
    const incidents = await this.s.db.tx(async (q): Promise<ComponentOutcome[]> => {
      const open = await q.query<IncidentRow>(`SELECT * FROM warden_health_incident WHERE status = 'open'`);
      // Rated components, plus any component with an incident still open (it may have become
      // "not configured", or be a pre-016 overall incident): that one is judged good or bad too.
      const statusOf = new Map<string, Status>();
      for (const c of report.components) statusOf.set(c.key, c.status === 'not_configured' ? 'healthy' : c.status);
      for (const inc of open.rows) if (!statusOf.has(inc.component)) statusOf.set(inc.component, inc.component === OVERALL ? report.status : 'healthy');
      const out: ComponentOutcome[] = [];
      // One order for every runner: no deadlock between two ticks locking the same rows.
      for (const component of [...statusOf.keys()].sort()) {
        const r = await this.observeComponent(q, report, component, statusOf.get(component)!);
        if (r) out.push(r);
      }
      return out;
    });
    for (const o of incidents) {
      if (o.action !== 'updated') this.s.logger.info({ incident: o.incident.id, component: o.component, action: o.action, status: o.incident.last_status }, 'health incident');
    }
    const notable = [...incidents].sort((a, b) => NOTABLE[a.action] - NOTABLE[b.action])[0];
    return notable ? { action: notable.action, incident: notable.incident, incidents } : { action: 'none', incidents };
  }

  private async observeComponent(q: Queryable, report: HealthReport, component: string, status: Status): Promise<ComponentOutcome | null> {
    const channel = this.s.config.ALERTS_CHANNEL;
    const { HEALTH_OPEN_AFTER: openAfter, HEALTH_RESOLVE_AFTER: resolveAfter } = this.s.config;
    // Consecutive bad / good checks of this component (its row locked: replicas' ticks count once each).
    const healthy = status === 'healthy';
    const { rows: streaks } = await q.query<{ bad: number; good: number }>(
      `INSERT INTO warden_health_component_streak AS s (component, bad, good) VALUES ($1, $2, $3)
       ON CONFLICT (component) DO UPDATE SET bad = CASE WHEN $2 = 1 THEN s.bad + 1 ELSE 0 END,
                                             good = CASE WHEN $3 = 1 THEN s.good + 1 ELSE 0 END,
                                             updated_at = now()
       RETURNING bad, good`,
      [component, healthy ? 0 : 1, healthy ? 1 : 0],
    );
    const streak = streaks[0];
    const open = await q.query<IncidentRow>(`SELECT * FROM warden_health_incident WHERE status = 'open' AND component = $1 FOR UPDATE`, [component]);
    const current = open.rows[0];
    const reportJson = JSON.stringify(report);
    const done = (action: IncidentAction, incident: IncidentRow): ComponentOutcome => ({ component, action, incident });

    if (healthy) {
      if (!current) return null;
      // Not yet: it has to stay good for a few checks before the incident is called resolved.
      if (streak.good < resolveAfter) return null;
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
      return done('resolved', inc);
    }

    if (!current) {
      // One bad check is not an incident: a slow query or a blip must repeat first.
      if (streak.bad < openAfter) return null;
      const { rows } = await q.query<IncidentRow>(
        `INSERT INTO warden_health_incident (component, status, opened_at, first_status, last_status, worst_status, last_checked_at, last_report, channel)
         VALUES ($5, 'open', $1, $2, $2, $2, $1, $3, $4)
         ON CONFLICT DO NOTHING RETURNING *`,
        [report.checkedAt, status, reportJson, channel ?? null, component],
      );
      // Another runner opened it at the same moment: it posts, we do nothing.
      if (!rows[0]) return null;
      let inc = rows[0];
      if (channel) {
        const postId = await this.s.outbox.post(q, channel, renderIncident(inc), { dedupeKey: `health-incident:${inc.id}` });
        inc = (await q.query<IncidentRow>('UPDATE warden_health_incident SET post_id = $2 WHERE id = $1 RETURNING *', [inc.id, postId])).rows[0];
      } else {
        this.s.logger.warn({ incident: inc.id, component }, 'health incident opened but ALERTS_CHANNEL is not set: not posted');
      }
      return done('opened', inc);
    }

    const changed = current.last_status !== status;
    const worstStatus = SEVERITY[status] > SEVERITY[current.worst_status] ? status : current.worst_status;
    const { rows } = await q.query<IncidentRow>(
      `UPDATE warden_health_incident
          SET last_status = $2, worst_status = $3, last_checked_at = $4, last_report = $5,
              changes = changes + $6
        WHERE id = $1 RETURNING *`,
      [current.id, status, worstStatus, report.checkedAt, reportJson, changed ? 1 : 0],
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
    return done(changed ? 'changed' : 'updated', inc);
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
          throw new ConflictError(mrkdwn`Incident #${incidentId} was already acknowledged by ${whoAcked(existing)} at ${md.date(existing.acknowledged_at)}.`);
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
      `SELECT * FROM warden_health_incident WHERE status = 'open' ORDER BY opened_at DESC, id DESC`,
    );
    return rows;
  }

  /** Where the incident message landed, once the outbox delivered it. */
  async messageRef(inc: IncidentRow) {
    if (inc.post_id) return this.s.outbox.refOf(inc.post_id);
    return inc.channel && inc.ts ? { channel: inc.channel, ts: inc.ts } : null;
  }
}
