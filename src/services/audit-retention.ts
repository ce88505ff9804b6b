import type { Db, Queryable } from '../db/index.js';
import { CRITICAL_ACTIONS } from './audit-search.js';
import { writeAudit } from './audit-writer.js';
import type { Actor } from './identity.js';
import { requireAdmin } from './identity.js';
import { InterruptedError } from './lifecycle.js';

/**
 * The guide's "Audit Log Retention": delete entries older than AUDIT_RETENTION_DAYS (90)
 * except critical actions (kept indefinitely; `user_deleted` and `delete_user` both count),
 * then clear before/after snapshots older than AUDIT_SNAPSHOT_DAYS (30).
 *
 * The dry run counts exactly what the real run will do (same cut-offs, same order: the
 * deleted rows are not counted again as cleared snapshots). The real run works in batches,
 * each its own short transaction, so millions of rows never sit in one long lock or one
 * embedded-database transaction; its one `audit_retention` audit row is written before the first
 * batch and counts every batch in that batch's transaction.
 */

export interface RetentionPlan {
  retentionDays: number;
  snapshotDays: number;
  deleteBefore: Date;
  clearSnapshotsBefore: Date;
  critical: string[];
}

export interface RetentionCounts {
  logs: number;
  snapshots: number;
}

export interface RetentionReport extends RetentionPlan {
  dryRun: boolean;
  /** dry run: what would be deleted / cleared; real run: what was. */
  logs: number;
  snapshots: number;
}

const BATCH = 5000;

export class AuditRetention {
  constructor(
    private readonly db: Db,
    private readonly opts: {
      retentionDays: number;
      snapshotDays: number;
      batchSize?: number;
      /** Shutdown: the run stops between batches (see Lifecycle). */
      signal?: AbortSignal;
    },
  ) {}

  plan(now = new Date()): RetentionPlan {
    return {
      retentionDays: this.opts.retentionDays,
      snapshotDays: this.opts.snapshotDays,
      deleteBefore: new Date(now.getTime() - this.opts.retentionDays * 86400_000),
      clearSnapshotsBefore: new Date(now.getTime() - this.opts.snapshotDays * 86400_000),
      critical: [...CRITICAL_ACTIONS],
    };
  }

  /** What a run would do now. */
  async dryRun(now = new Date()): Promise<RetentionReport> {
    const plan = this.plan(now);
    const { rows } = await this.db.query<{ logs: number; snapshots: number }>(
      `SELECT
         (SELECT count(*)::int FROM audit_log WHERE "timestamp" < $1 AND action <> ALL($3::text[])) AS logs,
         (SELECT count(*)::int FROM audit_log
           WHERE "timestamp" < $2
             AND (before_state IS NOT NULL OR after_state IS NOT NULL)
             AND NOT ("timestamp" < $1 AND action <> ALL($3::text[]))) AS snapshots`,
      [plan.deleteBefore.toISOString(), plan.clearSnapshotsBefore.toISOString(), plan.critical],
    );
    return { ...plan, dryRun: true, logs: rows[0].logs, snapshots: rows[0].snapshots };
  }

  /**
   * Deletes and clears; `actor` null for the nightly job. The run's `audit_retention` row is
   * written first and its counts updated in the same transaction as every batch, so that
   * whenever the process dies the audit log covers every row deleted or cleared. `report`
   * runs inside the transaction that completes the row (e.g. to queue the report in the
   * alert outbox), so the record of the run and its announcement commit together.
   * Between batches a shutdown stops the run (InterruptedError; the row says "interrupted").
   */
  async run(
    actor: Actor | null,
    opts: { now?: Date; report?: (q: Queryable, report: RetentionReport) => Promise<void> } = {},
  ): Promise<RetentionReport> {
    if (actor) requireAdmin(actor, 'apply the audit retention policy');
    const plan = this.plan(opts.now ?? new Date());
    const batch = this.opts.batchSize ?? BATCH;
    const deleteBefore = plan.deleteBefore.toISOString();
    const clearBefore = plan.clearSnapshotsBefore.toISOString();
    const runId = await this.db.tx((q) =>
      writeAudit(q, actor, {
        action: 'audit_retention',
        entityType: 'audit_log',
        details: {
          ...(actor ? {} : { by: 'scheduled job' }),
          status: 'running',
          logs_deleted: 0,
          snapshots_cleared: 0,
          retention_days: plan.retentionDays,
          snapshot_days: plan.snapshotDays,
          deleted_before: deleteBefore,
          snapshots_cleared_before: clearBefore,
        },
      }),
    );
    // Adds a batch's count to the run's row, in the batch's own transaction.
    const count = (q: Queryable, field: 'logs_deleted' | 'snapshots_cleared', n: number) =>
      q.query(
        `UPDATE audit_log SET details = jsonb_set(details, ARRAY[$2::text], to_jsonb(COALESCE((details->>$2)::bigint, 0) + $3::bigint))
          WHERE id = $1`,
        [runId, field, n],
      );
    let logs = 0;
    let snapshots = 0;
    let failure: unknown;
    try {
      for (;;) {
        this.opts.signal?.throwIfAborted();
        const r = await this.db.tx(async (q) => {
          const d = await q.query(
            `DELETE FROM audit_log WHERE id IN (
               SELECT id FROM audit_log WHERE "timestamp" < $1 AND action <> ALL($2::text[]) AND id <> $4 LIMIT $3)`,
            [deleteBefore, plan.critical, batch, runId],
          );
          if (d.rowCount) await count(q, 'logs_deleted', d.rowCount);
          return d;
        });
        logs += r.rowCount;
        if (r.rowCount < batch) break;
      }
      for (;;) {
        this.opts.signal?.throwIfAborted();
        const r = await this.db.tx(async (q) => {
          const u = await q.query(
            `UPDATE audit_log SET before_state = NULL, after_state = NULL WHERE id IN (
               SELECT id FROM audit_log
                WHERE "timestamp" < $1 AND (before_state IS NOT NULL OR after_state IS NOT NULL) LIMIT $2)`,
            [clearBefore, batch],
          );
          if (u.rowCount) await count(q, 'snapshots_cleared', u.rowCount);
          return u;
        });
        snapshots += r.rowCount;
        if (r.rowCount < batch) break;
      }
      // Warden's narrow copy of failed logins (sql/013) keeps only what a window can reach.
      await this.db.query('SELECT warden_failed_login_prune()');
    } catch (e) {
      failure = e;
    }
    const report: RetentionReport = { ...plan, dryRun: false, logs, snapshots };
    const interrupted = !!failure && !!this.opts.signal?.aborted;
    // Completes the row even when a batch failed part-way (its counts are already right).
    const status = failure ? (interrupted ? 'interrupted' : 'failed') : 'completed';
    const extra = failure && !interrupted ? { failed: String((failure as Error).message ?? failure).slice(0, 200) } : {};
    await this.db
      .tx(async (q) => {
        await q.query(`UPDATE audit_log SET details = details || $2::jsonb WHERE id = $1`, [runId, JSON.stringify({ status, ...extra })]);
        if (!failure && opts.report) await opts.report(q, report);
      })
      .catch((e) => {
        // The counts are right whatever happens here; only the status word is missing.
        if (!failure) throw e;
      });
    if (failure) throw interrupted ? new InterruptedError() : failure;
    return report;
  }
}
