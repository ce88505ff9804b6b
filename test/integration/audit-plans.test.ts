import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertAuditRows, rebuildDerived } from '../../bench/dataset.js';
import type { Db } from '../../src/db/index.js';
import { AuditSearch, type AuditQuery } from '../../src/services/audit-search.js';
import { createTestDb } from '../helpers/db.js';
import { QueryRecorder as Recorder } from '../helpers/query-recorder.js';

/**
 * The plans of every search shape on a table large enough for the planner to care
 * (200,000 rows on PostgreSQL, 100,000 on PGlite; analysed and vacuumed as autovacuum would), run with EXPLAIN (ANALYZE,
 * BUFFERS): each must be answered from an index, never a sequential scan of audit_log, and
 * read no more pages than its budget — the budgets are what keeps a shape flat from 200 k to
 * 10 M rows (a budget grows with the page size asked for, not with the table). The SQL
 * checked is the SQL the service really sends (recorded); AUDIT_PLANS_PRINT=1 prints each plan.
 */

// 200 k rows on a real server (CI); 100 k on the embedded PGlite, which loads far slower.
const ROWS = process.env.DATABASE_URL ? 200_000 : 100_000;
const USERS = 2_000;
const ACTIONS = [
  'login_success', 'login_success', 'login_success', 'login_failed', 'login_failed', 'logout', 'logout',
  'login_locked', 'password_change', 'password_reset_request', '2fa_verify_success', '2fa_verify_failed',
  'user_created', 'user_updated', 'role_change', 'unlock_account', 'create_bag', 'create_bag', 'update_bag',
  'create_bill', 'update_bill', 'delete_bag', 'delete_bill', 'link_created', 'delete_user', 'user_deleted',
];

let db: Db;
let cleanup: () => Promise<void>;

interface PlanNode {
  'Node Type': string;
  'Shared Hit Blocks'?: number;
  'Shared Read Blocks'?: number;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

function nodes(n: PlanNode): PlanNode[] {
  return [n, ...(n.Plans ?? []).flatMap(nodes)];
}

interface Plan {
  sql: string;
  nodes: PlanNode[];
  /** Shared buffers (pages) the statement touched, hit or read. */
  pages: number;
  text: string;
}

async function plansOf(run: (s: AuditSearch) => Promise<unknown>): Promise<Plan[]> {
  const rec = new Recorder(db);
  await run(new AuditSearch(rec));
  const out: Plan[] = [];
  for (const c of rec.calls) {
    if (/^EXPLAIN/.test(c.sql)) continue; // the count line's planner estimate reads no rows
    const { rows } = await db.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${c.sql}`, c.params);
    const raw = rows[0]['QUERY PLAN'];
    const plan = (typeof raw === 'string' ? JSON.parse(raw) : raw) as { Plan: PlanNode }[];
    const top = plan[0].Plan;
    const text = (await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${c.sql}`, c.params)).rows.map((r) => r['QUERY PLAN']).join('\n');
    const p = { sql: c.sql, nodes: nodes(top), pages: (top['Shared Hit Blocks'] ?? 0) + (top['Shared Read Blocks'] ?? 0), text };
    if (process.env.AUDIT_PLANS_PRINT) console.log(`${p.sql.replace(/\s+/g, ' ')}\n${p.text}\n`);
    out.push(p);
  }
  return out;
}

/** Every statement within its page budget. */
function expectPages(plans: Plan[], budget: number) {
  for (const p of plans) expect(p.pages, `${p.sql.replace(/\s+/g, ' ')}\n${p.text}`).toBeLessThanOrEqual(budget);
}

/** No sequential scan of audit_log anywhere; the expected indexes appear. */
function expectIndexed(plans: Plan[], indexes: string[]) {
  const used = new Set<string>();
  for (const p of plans) {
    const seq = p.nodes.filter((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name'] === 'audit_log');
    expect(seq, `sequential scan of audit_log in:\n${p.sql}`).toEqual([]);
    for (const n of p.nodes) if (n['Index Name']) used.add(n['Index Name']);
  }
  for (const i of indexes) expect([...used], `expected ${i}`).toContain(i);
  // A page reads about its rows' pages; a count at most COUNT_CAP rows' pages.
  expectPages(plans.filter((p) => !p.sql.includes('count(*)')), 400);
  expectPages(plans.filter((p) => p.sql.includes('count(*)')), 1500);
}

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  await db.query(
    `INSERT INTO "user" (username, email, password_hash, role)
     SELECT 'user' || g, 'user' || g || '@plans.example.com', 'x', 'dispatcher' FROM generate_series(1, $1::int) g`,
    [USERS],
  );
  // Loaded as a restore would be: without Warden's per-row triggers, whose tables are then rebuilt.
  await db.tx(async (q) => {
    await q.exec('SET LOCAL session_replication_role = replica');
    await insertAuditRows(q, USERS, ROWS, ACTIONS);
  });
  await rebuildDerived(db);
  // What autovacuum does on a live table: statistics, and the visibility map index-only scans need.
  for (const t of ['"user"', 'audit_log', 'warden_failed_login', 'warden_failed_login_pair']) await db.exec(`VACUUM ANALYZE ${t}`);
}, 240_000);

afterAll(async () => {
  await cleanup?.();
});

const since = (days: number) => new Date(Date.now() - days * 86400_000).toISOString();

describe(`search plans on ${ROWS.toLocaleString('en-US')} audit rows`, () => {
  it('action + since (page, next page, count) uses idx_audit_action_timestamp', async () => {
    const q: AuditQuery = { a: ['login_failed'], s: since(1) };
    const plans = await plansOf(async (s) => {
      const p = await s.search(q);
      await s.search(q, { after: p.last });
    });
    expectIndexed(plans, ['idx_audit_action_timestamp']);
  });

  it('several actions and a prefix use one index-ordered branch per action', async () => {
    const plans = await plansOf((s) => s.search({ a: ['login*', 'role_change'], s: since(7) }));
    expectIndexed(plans, ['idx_audit_action_timestamp']);
  });

  it('by user uses idx_audit_user_timestamp and idx_audit_details_username', async () => {
    const plans = await plansOf((s) => s.search({ u: 'user42' }));
    expectIndexed(plans, ['idx_audit_user_timestamp', 'idx_audit_details_username']);
    const timeline = await plansOf((s) => s.search({ u: 'user42', um: 'actor' }));
    expectIndexed(timeline, ['idx_audit_user_timestamp']);
  });

  it('by IP uses idx_audit_ip_timestamp', async () => {
    const plans = await plansOf((s) => s.search({ ip: '10.3.77.5' }));
    expectIndexed(plans, ['idx_audit_ip_timestamp']);
  });

  it('entity history uses idx_audit_entity', async () => {
    const plans = await plansOf((s) => s.search({ e: 'user', ei: 42 }));
    expectIndexed(plans, ['idx_audit_entity']);
  });

  it('an unfiltered page after a cursor uses idx_audit_timestamp_id', async () => {
    const plans = await plansOf(async (s) => {
      const p = await s.search({}, {}, 20);
      await s.search({}, { after: p.last }, 20);
      await s.search({}, { before: p.last }, 20);
    });
    // The capped count of an unfiltered search may read the table itself (it stops at the cap).
    expectIndexed(
      plans.filter((p) => !p.sql.includes('count(*)')),
      ['idx_audit_timestamp_id'],
    );
  });

  it('failed-logins over 1 h … 30 d, and min:1 (single attempts from idx_failed_login_pair_last), read the pair counters and the narrow copy index-only, never audit_log', async () => {
    const plans = await plansOf(async (s) => {
      for (const h of [1, 24, 24 * 7, 24 * 30]) await s.failedLogins(h * 3600, 6);
      await s.failedLogins(24 * 3600, 2);
      await s.failedLogins(7 * 24 * 3600, 1);
    });
    for (const p of plans) expect(p.nodes.filter((n) => n['Relation Name'] === 'audit_log'), p.text).toEqual([]);
    expectIndexed(plans, ['idx_failed_login_pair_repeat', 'idx_failed_login_pair_ts', 'idx_failed_login_pair_last']);
    for (const p of plans) {
      const scans = p.nodes.filter((n) => n['Relation Name'] === 'warden_failed_login');
      for (const n of scans) expect(n['Node Type'], p.text).toBe('Index Only Scan');
    }
    // 200 k rows hold ~1,600 pair counters; a 30-day answer reads the repeating ones only.
    expectPages(plans, 1500);
  });

  it('the distinct-action skip scan uses idx_audit_action_timestamp', async () => {
    const plans = await plansOf((s) => s.distinctActions());
    expectIndexed(plans, ['idx_audit_action_timestamp']);
    expectPages(plans, 400);
  });

  it('the count line of a heavy account reads no rows (estimate), and its Next page no count at all', async () => {
    const rec = new Recorder(db);
    const s = new AuditSearch(rec);
    const first = await s.search({ u: 'user1' });
    expect(first.totalCapped).toBe(true);
    expect(first.estimate).toBeGreaterThan(1000);
    expect(rec.calls.filter((c) => c.sql.includes('count(*)'))).toEqual([]);
    const plans = await plansOf((x) => x.search({ u: 'user1' }, { after: first.last }, 20, { total: first.total, capped: true, estimate: first.estimate }));
    expect(plans.filter((p) => p.sql.includes('count(*)'))).toEqual([]);
    expectPages(plans, 400);
  });

  it('deletions (all deletion actions, 30 days) use idx_audit_action_timestamp', async () => {
    const plans = await plansOf(async (s) => s.search({ a: await s.deletionActions(), s: since(30) }));
    expectIndexed(plans, ['idx_audit_action_timestamp']);
  });
});
