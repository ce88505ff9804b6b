import { PgDb, type Queryable } from '../src/db/index.js';
import { migrate } from '../src/db/migrate.js';
import { databaseOn } from './lib.js';

/**
 * The benchmark data set of DESIGN §5: 100,000 users and 1,000,000 audit rows of the seed's
 * action types over 120 days, generated server-side with generate_series (a minute or two).
 * Kept in the database `warden_bench` between runs; regenerated when the counts differ.
 */
export const BENCH_USERS = Number(process.env.BENCH_USERS ?? 100_000);
export const BENCH_AUDIT_ROWS = Number(process.env.BENCH_AUDIT_ROWS ?? 1_000_000);

export const ACTIONS = [
  'login_success', 'login_success', 'login_success', 'login_failed', 'login_failed', 'logout', 'logout',
  'login_locked', 'password_change', 'password_reset_request', '2fa_verify_success', '2fa_verify_failed',
  'user_created', 'user_updated', 'role_change', 'unlock_account', 'create_bag', 'create_bag', 'update_bag',
  'create_bill', 'update_bill', 'delete_bag', 'delete_bill', 'link_created',
];

export async function benchDatabase(serverUrl: string, log: (s: string) => void = console.log): Promise<{ url: string; db: PgDb }> {
  const url = await databaseOn(serverUrl, 'warden_bench');
  const db = PgDb.connect(url, 60);
  await migrate(db);
  const counts = (
    await db.query<{ users: number; audits: number }>(
      `SELECT (SELECT count(*) FROM "user")::int AS users, (SELECT count(*) FROM audit_log)::int AS audits`,
    )
  ).rows[0];
  if (counts.users === BENCH_USERS && counts.audits === BENCH_AUDIT_ROWS) return { url, db };

  log(`generating ${BENCH_USERS} users and ${BENCH_AUDIT_ROWS} audit rows in warden_bench…`);
  await db.exec('TRUNCATE audit_log, promotion_request, notification, warden_slack_link, "user" RESTART IDENTITY CASCADE');
  await db.query(
    `INSERT INTO "user" (username, email, password_hash, role, dispatch_area, two_fa_enabled, totp_secret,
                         failed_login_attempts, locked_until, created_at, last_login)
     SELECT 'user' || g, 'user' || g || '@bench.example.com', 'pbkdf2:sha256:600000$bench$x',
            CASE WHEN g % 100 = 0 THEN 'admin' WHEN g % 3 = 0 THEN 'biller' ELSE 'dispatcher' END,
            CASE WHEN g % 100 <> 0 AND g % 3 <> 0 THEN (ARRAY['lucknow','indore','bhopal','kanpur','nagpur'])[1 + g % 5] END,
            g % 4 = 0, CASE WHEN g % 4 = 0 THEN 'JBSWY3DPEHPK3PXP' END,
            CASE WHEN g % 500 = 0 THEN 5 ELSE 0 END,
            CASE WHEN g % 500 = 0 THEN now() + interval '30 minutes' END,
            now() - (g % 700) * interval '1 day', now() - (g % 90) * interval '1 hour'
       FROM generate_series(1, $1::int) g`,
    [BENCH_USERS],
  );
  await insertAuditRows(db, BENCH_USERS, BENCH_AUDIT_ROWS);
  // One statement per call: a multi-statement string runs as one transaction, where VACUUM is refused.
  await db.exec('VACUUM ANALYZE "user"');
  await db.exec('VACUUM ANALYZE audit_log');
  log('benchmark data ready');
  return { url, db };
}

/**
 * Generates `rows` audit rows server-side over the last 120 days, spread over users
 * 1..`users` and the given actions, with role snapshots on role_change / user_updated.
 * Shared by the benchmark data set and the EXPLAIN-plan test.
 */
export async function insertAuditRows(db: Queryable, users: number, rows: number, actions: string[] = ACTIONS): Promise<void> {
  await db.query(
    `INSERT INTO audit_log ("timestamp", user_id, action, entity_type, entity_id, details, ip_address, before_state, after_state)
     SELECT now() - (g::float8 / $2::float8) * interval '120 days',
            1 + (g::bigint * 7919) % $1::int,
            a.action,
            CASE WHEN a.action LIKE '%bag%' THEN 'bag' WHEN a.action LIKE '%bill%' THEN 'bill' ELSE 'user' END,
            1 + (g::bigint * 104729) % $1::int,
            jsonb_build_object('username', 'user' || (1 + (g::bigint * 7919) % $1::int)),
            '10.' || (g % 7) || '.' || (g % 251) || '.' || (g % 13),
            CASE WHEN a.action IN ('role_change','user_updated') THEN jsonb_build_object('role','dispatcher','dispatch_area','indore') END,
            CASE WHEN a.action IN ('role_change','user_updated') THEN jsonb_build_object('role','biller','dispatch_area',NULL) END
       FROM generate_series(1, $2::int) g
       CROSS JOIN LATERAL (SELECT ($3::text[])[1 + (g::bigint * 31) % array_length($3::text[], 1)] AS action) a`,
    [users, rows, actions],
  );
}
