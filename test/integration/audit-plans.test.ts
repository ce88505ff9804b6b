import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertAuditRows } from '../../bench/dataset.js';
import type { Db } from '../../src/db/index.js';
import { AuditSearch, type AuditQuery } from '../../src/services/audit-search.js';
import { createTestDb } from '../helpers/db.js';
import { QueryRecorder as Recorder } from '../helpers/query-recorder.js';

/**
 * The plans of every search shape on a table large enough for the planner to care
 * (100,000 rows, analysed): each must be answered from an index, never a sequential scan
 * of audit_log. The SQL checked is the SQL the service really sends (recorded).
 */

const ROWS = 100_000;
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
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

function nodes(n: PlanNode): PlanNode[] {
  return [n, ...(n.Plans ?? []).flatMap(nodes)];
}

async function plansOf(run: (s: AuditSearch) => Promise<unknown>): Promise<{ sql: string; nodes: PlanNode[] }[]> {
  const rec = new Recorder(db);
  await run(new AuditSearch(rec));
  const out: { sql: string; nodes: PlanNode[] }[] = [];
  for (const c of rec.calls) {
    const { rows } = await db.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${c.sql}`, c.params);
    const raw = rows[0]['QUERY PLAN'];
    const plan = (typeof raw === 'string' ? JSON.parse(raw) : raw) as { Plan: PlanNode }[];
    out.push({ sql: c.sql, nodes: nodes(plan[0].Plan) });
  }
  return out;
}

/** No sequential scan of audit_log anywhere; the expected indexes appear. */
function expectIndexed(plans: { sql: string; nodes: PlanNode[] }[], indexes: string[]) {
  const used = new Set<string>();
  for (const p of plans) {
    const seq = p.nodes.filter((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name'] === 'audit_log');
    expect(seq, `sequential scan of audit_log in:\n${p.sql}`).toEqual([]);
    for (const n of p.nodes) if (n['Index Name']) used.add(n['Index Name']);
  }
  for (const i of indexes) expect([...used], `expected ${i}`).toContain(i);
}

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  await db.query(
    `INSERT INTO "user" (username, email, password_hash, role)
     SELECT 'user' || g, 'user' || g || '@plans.example.com', 'x', 'dispatcher' FROM generate_series(1, $1::int) g`,
    [USERS],
  );
  await insertAuditRows(db, USERS, ROWS, ACTIONS);
  await db.exec('ANALYZE "user"; ANALYZE audit_log;');
}, 180_000);

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

  it('failed-logins investigation and the distinct-action skip scan use idx_audit_action_timestamp', async () => {
    const plans = await plansOf(async (s) => {
      await s.failedLogins(3600, 6);
      await s.failedLogins(7 * 86400, 6);
      await s.distinctActions();
    });
    expectIndexed(plans, ['idx_audit_action_timestamp']);
  });

  it('deletions (all deletion actions, 30 days) use idx_audit_action_timestamp', async () => {
    const plans = await plansOf(async (s) => s.search({ a: await s.deletionActions(), s: since(30) }));
    expectIndexed(plans, ['idx_audit_action_timestamp']);
  });
});
