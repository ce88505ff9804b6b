import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { AuditRetention } from '../../src/services/audit-retention.js';
import { ForbiddenError } from '../../src/errors.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser } from '../helpers/fixtures.js';

let db: Db;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
});

afterAll(async () => {
  await cleanup?.();
});

/** n rows `days` old of one action, with or without snapshots. */
async function rows(n: number, days: number, action: string, snapshots = false) {
  await db.query(
    `INSERT INTO audit_log ("timestamp", action, before_state, after_state)
     SELECT now() - make_interval(days => $2::int) - g * interval '1 minute', $3,
            CASE WHEN $4 THEN '{"role":"a"}'::jsonb END, CASE WHEN $4 THEN '{"role":"b"}'::jsonb END
       FROM generate_series(1, $1::int) g`,
    [n, days, action, snapshots],
  );
}

describe('AuditRetention', () => {
  it('works in batches, and the dry run predicts the real run exactly', async () => {
    await rows(23, 100, 'login_success', true); // deleted (snapshots go with them)
    await rows(7, 91, 'logout'); // deleted
    await rows(4, 365, 'delete_user', true); // kept, snapshots cleared
    await rows(3, 200, 'user_deleted'); // kept
    await rows(2, 120, 'delete_bag'); // kept
    await rows(2, 120, 'delete_bill'); // kept
    await rows(5, 95, 'role_change', true); // kept, snapshots cleared
    await rows(11, 45, 'user_updated', true); // kept, snapshots cleared
    await rows(6, 20, 'user_updated', true); // untouched
    const retention = new AuditRetention(db, { retentionDays: 90, snapshotDays: 30, batchSize: 4 });
    const now = new Date();
    const dry = await retention.dryRun(now);
    expect(dry).toMatchObject({ dryRun: true, logs: 30, snapshots: 20 });
    expect(await db.query('SELECT 1 FROM audit_log')).toMatchObject({ rowCount: 63 });

    const done = await retention.run(null, { now });
    expect(done).toMatchObject({ dryRun: false, logs: 30, snapshots: 20 });
    const { rows: left } = await db.query<{ action: string; n: number; snaps: number }>(
      `SELECT action, count(*)::int AS n, count(before_state)::int AS snaps FROM audit_log
        WHERE action <> 'audit_retention' GROUP BY action ORDER BY action`,
    );
    expect(left).toEqual([
      { action: 'delete_bag', n: 2, snaps: 0 },
      { action: 'delete_bill', n: 2, snaps: 0 },
      { action: 'delete_user', n: 4, snaps: 0 },
      { action: 'role_change', n: 5, snaps: 0 },
      { action: 'user_deleted', n: 3, snaps: 0 },
      { action: 'user_updated', n: 17, snaps: 6 },
    ]);
    const [audit] = await auditRows(db, 'audit_retention');
    expect(audit).toMatchObject({ user_id: null, details: { by: 'scheduled job', logs_deleted: 30, snapshots_cleared: 20 } });

    // Idempotent: nothing left to do.
    expect(await retention.dryRun()).toMatchObject({ logs: 0, snapshots: 0 });
  });

  it('queues its report in the same transaction as its audit row, and only admins may run it', async () => {
    const retention = new AuditRetention(db, { retentionDays: 90, snapshotDays: 30 });
    const seen: number[] = [];
    await retention.run(null, {
      report: async (q, r) => {
        // Inside the transaction: the audit row of this run is already visible here.
        const { rows: mine } = await q.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'audit_retention'`);
        seen.push(mine[0].n, r.logs);
      },
    });
    expect(seen).toEqual([2, 0]);

    const user = await createUser(db, { username: 'dora' });
    const actor = {
      user: { id: user.id, username: 'dora', email: user.email, role: 'dispatcher', dispatch_area: 'lucknow', two_fa_enabled: false, failed_login_attempts: 0, locked_until: null, last_failed_login: null, created_at: null, last_login: null },
      slack: { userId: 'U_DORA', teamId: 'T' },
    };
    await expect(retention.run(actor)).rejects.toThrow(ForbiddenError);
    expect(await auditRows(db, 'audit_retention')).toHaveLength(2);
  });
});
