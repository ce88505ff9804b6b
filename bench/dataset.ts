import { PgDb, type Queryable } from '../src/db/index.js';
import { migrate } from '../src/db/migrate.js';
import { databaseOn } from './lib.js';

/**
 * The benchmark data sets of DESIGN §5 / issue 15: 100,000 users and 1,000,000 or 10,000,000
 * audit rows of the seed's action types over 120 days, generated server-side with
 * generate_series (1 M: about a minute; 10 M: several minutes on a busy 2-core machine).
 * Each size has its own database (`warden_bench_1m`, `warden_bench_10m`) on the benchmark's
 * own cluster (scripts/bench-services.sh) and is kept between runs: a marker row records what
 * was generated, so a kept data set is reused without counting 10 M rows.
 * BENCH_SIZES picks the sizes (default `1m,10m`); the Slack and lockout suites use the largest.
 */
export const BENCH_USERS = Number(process.env.BENCH_USERS ?? 100_000);

/** `1m`, `10m`, `200k` or a plain number. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([km]?)$/i.exec(text.trim());
  if (!m) throw new Error(`BENCH_SIZES: \`${text}\` is not a size like 1m, 10m or 200k`);
  return Math.round(Number(m[1]) * (m[2].toLowerCase() === 'm' ? 1e6 : m[2].toLowerCase() === 'k' ? 1e3 : 1));
}
export const sizeLabel = (n: number) => (n % 1e6 === 0 ? `${n / 1e6}m` : n % 1e3 === 0 ? `${n / 1e3}k` : String(n));

export const BENCH_SIZES = (process.env.BENCH_SIZES ?? process.env.BENCH_AUDIT_ROWS ?? '1m,10m')
  .split(',')
  .filter(Boolean)
  .map(parseSize)
  .sort((a, b) => a - b);
/** The largest data set: what the Slack and lockout suites run on. */
export const BENCH_AUDIT_ROWS = BENCH_SIZES[BENCH_SIZES.length - 1];

export const ACTIONS = [
  'login_success', 'login_success', 'login_success', 'login_failed', 'login_failed', 'logout', 'logout',
  'login_locked', 'password_change', 'password_reset_request', '2fa_verify_success', '2fa_verify_failed',
  'user_created', 'user_updated', 'role_change', 'unlock_account', 'create_bag', 'create_bag', 'update_bag',
  'create_bill', 'update_bill', 'delete_bag', 'delete_bill', 'link_created',
];

const CHUNK = 1_000_000;
/** Bumped whenever the generator changes: a kept data set of another version is regenerated. */
const DATASET_VERSION = 2;

export async function benchDatabase(
  serverUrl: string,
  log: (s: string) => void = console.log,
  auditRows = BENCH_AUDIT_ROWS,
): Promise<{ url: string; db: PgDb; auditRows: number }> {
  const name = `warden_bench_${sizeLabel(auditRows)}`;
  const url = await databaseOn(serverUrl, name);
  const db = PgDb.connect(url, 60);
  await migrate(db);
  await db.exec(`CREATE TABLE IF NOT EXISTS bench_dataset (users int NOT NULL, audits bigint NOT NULL, version int NOT NULL, generated_at timestamptz NOT NULL DEFAULT now())`);
  const marker = (await db.query<{ users: number; audits: number; version: number }>('SELECT users, audits, version FROM bench_dataset')).rows[0];
  if (marker?.users === BENCH_USERS && marker.audits === auditRows && marker.version === DATASET_VERSION) return { url, db, auditRows };

  const started = Date.now();
  log(`generating ${BENCH_USERS} users and ${auditRows} audit rows in ${name} (kept for later runs)…`);
  await db.exec('TRUNCATE bench_dataset, audit_log, promotion_request, notification, warden_slack_link, "user" RESTART IDENTITY CASCADE');
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
  // Bulk load as a restore would: without the secondary indexes (built once afterwards, much
  // faster than row by row) and without Warden's triggers (wake-ups for 10 M historic rows are
  // noise); Warden's own derived tables are rebuilt afterwards from the rows.
  const indexes = (
    await db.query<{ name: string; def: string }>(
      `SELECT indexname AS name, indexdef AS def FROM pg_indexes
        WHERE schemaname = current_schema() AND tablename = 'audit_log' AND indexname <> 'audit_log_pkey'`,
    )
  ).rows;
  for (const ix of indexes) await db.exec(`DROP INDEX IF EXISTS "${ix.name}"`);
  for (let from = 1; from <= auditRows; from += CHUNK) {
    const to = Math.min(auditRows, from + CHUNK - 1);
    await db.tx(async (q) => {
      await q.exec(`SET LOCAL session_replication_role = replica`);
      await insertAuditRows(q, BENCH_USERS, auditRows, ACTIONS, [from, to]);
    });
    log(`  audit rows ${to.toLocaleString('en-US')} / ${auditRows.toLocaleString('en-US')} (${Math.round((Date.now() - started) / 1000)} s)`);
  }
  for (const ix of indexes) {
    await db.exec(ix.def);
    log(`  index ${ix.name} built (${Math.round((Date.now() - started) / 1000)} s)`);
  }
  await rebuildDerived(db);
  // One statement per call: a multi-statement string runs as one transaction, where VACUUM is refused.
  await db.exec('VACUUM ANALYZE "user"');
  await db.exec('VACUUM ANALYZE audit_log');
  await db.query('INSERT INTO bench_dataset (users, audits, version) VALUES ($1, $2, $3)', [BENCH_USERS, auditRows, DATASET_VERSION]);
  log(`benchmark data ready in ${Math.round((Date.now() - started) / 1000)} s`);
  return { url, db, auditRows };
}

/** Warden's tables derived from audit_log rows (filled by triggers in normal operation). */
export async function rebuildDerived(db: Queryable): Promise<void> {
  const fn = await db.query<{ f: string | null }>(`SELECT to_regproc('warden_failed_login_rebuild')::text AS f`);
  if (fn.rows[0]?.f) await db.query('SELECT warden_failed_login_rebuild()');
  // The history predates "installing" Warden: its scan cursors start at the present, as
  // sql/007 sets them on a real install (else the lockout watcher first walks 10 M rows).
  const cursors = await db.query<{ t: string | null }>(`SELECT to_regclass('warden_cursor')::text AS t`);
  if (cursors.rows[0]?.t) {
    await db.query(
      `UPDATE warden_cursor SET position = (SELECT coalesce(max(id), 0) FROM audit_log) WHERE name IN ('lockout_audit', 'burst_audit')`,
    );
  }
}

/**
 * Generates audit rows `range` (default all) of a set of `rows` server-side over the last 120 days, spread over users
 * 1..`users` and the given actions, with role snapshots on role_change / user_updated.
 * Shared by the benchmark data set and the EXPLAIN-plan test.
 */
export async function insertAuditRows(
  db: Queryable,
  users: number,
  rows: number,
  actions: string[] = ACTIONS,
  range: [number, number] = [1, rows],
): Promise<void> {
  // Shapes that make the searches work: one heavy account (user1, an integration doing 2 % of
  // all rows, 200,000 at 10 M), and 1 in 5 failed logins from 64 attacking IPs against 400
  // usernames (1,600 pairs that come back again and again), the rest scattered.
  await db.query(
    `INSERT INTO audit_log ("timestamp", user_id, action, entity_type, entity_id, details, ip_address, before_state, after_state)
     SELECT now() - (g::float8 / $2::float8) * interval '120 days',
            u.id,
            a.action,
            CASE WHEN a.action LIKE '%bag%' THEN 'bag' WHEN a.action LIKE '%bill%' THEN 'bill' ELSE 'user' END,
            1 + (g::bigint * 104729) % $1::int,
            jsonb_build_object('username', CASE WHEN atk THEN 'user' || (1 + (g / 5) % 400) ELSE 'user' || u.id END),
            CASE WHEN atk THEN '203.0.113.' || ((g / 5) % 64) ELSE '10.' || (g % 7) || '.' || (g % 251) || '.' || (g % 13) END,
            CASE WHEN a.action IN ('role_change','user_updated') THEN jsonb_build_object('role','dispatcher','dispatch_area','indore') END,
            CASE WHEN a.action IN ('role_change','user_updated') THEN jsonb_build_object('role','biller','dispatch_area',NULL) END
       FROM generate_series($4::int, $5::int) g
       CROSS JOIN LATERAL (SELECT ($3::text[])[1 + (g::bigint * 31) % array_length($3::text[], 1)] AS action) a
       CROSS JOIN LATERAL (SELECT CASE WHEN g % 50 = 0 THEN 1 ELSE 1 + (g::bigint * 7919) % $1::int END AS id) u
       CROSS JOIN LATERAL (SELECT a.action = 'login_failed' AND g % 5 = 0 AS atk) k`,
    [users, rows, actions, range[0], range[1]],
  );
}
