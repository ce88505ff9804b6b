import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { AuditSearch, type AuditQuery, type AuditRow, type Cursor } from '../../src/services/audit-search.js';
import { UserError } from '../../src/errors.js';
import { createTestDb } from '../helpers/db.js';
import { createUser, type TestUser } from '../helpers/fixtures.js';

let db: Db;
let cleanup: () => Promise<void>;
let search: AuditSearch;
let alice: TestUser;
let bob: TestUser;
let carol: TestUser;

const NOW = Date.now();
const ago = (minutes: number) => new Date(NOW - minutes * 60_000).toISOString();

async function ins(r: {
  ts: string;
  user?: number | null;
  action: string;
  type?: string | null;
  id?: number | null;
  details?: Record<string, unknown> | null;
  ip?: string | null;
  before?: Record<string, unknown> | null;
  after?: Record<string, unknown> | null;
}) {
  await db.query(
    `INSERT INTO audit_log ("timestamp", user_id, action, entity_type, entity_id, details, ip_address, before_state, after_state)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [
      r.ts,
      r.user ?? null,
      r.action,
      r.type ?? null,
      r.id ?? null,
      r.details ? JSON.stringify(r.details) : null,
      r.ip ?? null,
      r.before ? JSON.stringify(r.before) : null,
      r.after ? JSON.stringify(r.after) : null,
    ],
  );
}

/** Every row of a query, walking Older pages to the end. */
async function walk(q: AuditQuery, limit: number): Promise<AuditRow[]> {
  const out: AuditRow[] = [];
  let after: Cursor | undefined;
  for (let guard = 0; guard < 1000; guard++) {
    const page = await search.search(q, after ? { after } : {}, limit);
    out.push(...page.rows);
    if (!page.hasNext) return out;
    after = page.last;
  }
  throw new Error('paging did not end');
}

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  search = new AuditSearch(db);
  alice = await createUser(db, { username: 'alice', role: 'admin', area: null });
  bob = await createUser(db, { username: 'bob' });
  carol = await createUser(db, { username: 'carol', role: 'biller', area: null });

  // 30 failed logins for bob from one IP in the last hour (user_id NULL: not signed in), 3 for carol from another.
  for (let i = 0; i < 30; i++) await ins({ ts: ago(1 + i), action: 'login_failed', type: 'user', details: { username: 'bob' }, ip: '10.1.2.3' });
  for (let i = 0; i < 3; i++) await ins({ ts: ago(2 + i), action: 'login_failed', details: { username: 'carol' }, ip: '10.9.9.9' });
  // Old failed logins outside the 1h window.
  for (let i = 0; i < 8; i++) await ins({ ts: ago(180 + i), action: 'login_failed', details: { username: 'bob' }, ip: '10.1.2.3' });
  await ins({ ts: ago(5), user: bob.id, action: 'login_success', type: 'user', id: bob.id, ip: '10.1.2.3' });
  await ins({ ts: ago(6), user: alice.id, action: 'login_success', type: 'user', id: alice.id, ip: '192.168.1.20' });
  await ins({ ts: ago(7), user: alice.id, action: 'logout', ip: '192.168.1.20' });
  await ins({
    ts: ago(60 * 24 * 2),
    user: alice.id,
    action: 'role_change',
    type: 'user',
    id: bob.id,
    before: { role: 'dispatcher', dispatch_area: 'indore', email: 'bob@example.com' },
    after: { role: 'biller', dispatch_area: null, email: 'bob@example.com' },
  });
  await ins({ ts: ago(60 * 24 * 3), user: alice.id, action: 'user_deleted', type: 'user', id: 999, before: { username: 'ghost' } });
  await ins({ ts: ago(60 * 24 * 4), user: alice.id, action: 'delete_user', type: 'user', id: 998, before: { username: 'phantom' } });
  await ins({ ts: ago(60 * 24 * 5), user: carol.id, action: 'delete_bag', type: 'bag', id: 12 });
  // Ten rows sharing one timestamp: keyset paging must break the tie by id.
  const tie = ago(60 * 24 * 6);
  for (let i = 0; i < 10; i++) await ins({ ts: tie, user: carol.id, action: 'create_bag', type: 'bag', id: 100 + i });
  // Sub-millisecond timestamps: a JS Date cursor would skip or repeat these.
  for (let i = 0; i < 5; i++) {
    await db.query(
      `INSERT INTO audit_log ("timestamp", user_id, action, entity_type, entity_id) VALUES ($1::timestamptz + make_interval(secs => $2::float8 / 1000000), $3, 'update_bag', 'bag', 7)`,
      [ago(60 * 24 * 7), i * 100, carol.id],
    );
  }
});

afterAll(async () => {
  await cleanup?.();
});

describe('AuditSearch.search', () => {
  it('returns newest first with the actor name and a count', async () => {
    const page = await search.search({}, {}, 5);
    expect(page.rows).toHaveLength(5);
    const times = page.rows.map((r) => r.timestamp.getTime());
    expect([...times].sort((a, b) => b - a)).toEqual(times);
    expect(page.total).toBe(63);
    expect(page.totalCapped).toBe(false);
    expect(page.hasNext).toBe(true);
    expect(page.hasPrev).toBe(false);
  });

  it('pages through every row exactly once, ties and microseconds included, and back again', async () => {
    const { rows: expected } = await db.query<{ id: number }>('SELECT id FROM audit_log ORDER BY "timestamp" DESC, id DESC');
    const seen = await walk({}, 7);
    expect(seen.map((r) => r.id)).toEqual(expected.map((r) => r.id));

    // Previous from page 3 gives page 2 again.
    const p1 = await search.search({}, {}, 7);
    const p2 = await search.search({}, { after: p1.last }, 7);
    const p3 = await search.search({}, { after: p2.last }, 7);
    const back = await search.search({}, { before: p3.first }, 7);
    expect(back.rows.map((r) => r.id)).toEqual(p2.rows.map((r) => r.id));
    expect(back.hasPrev).toBe(true);
    expect(back.hasNext).toBe(true);
    const first = await search.search({}, { before: p2.first }, 7);
    expect(first.rows.map((r) => r.id)).toEqual(p1.rows.map((r) => r.id));
    expect(first.hasPrev).toBe(false);
  });

  it('filters by action, several actions (any), and prefixes', async () => {
    expect((await search.search({ a: ['logout'] })).total).toBe(1);
    expect((await search.search({ a: ['logout', 'login_success'] })).total).toBe(3);
    const prefixed = await walk({ a: ['login*'] }, 10);
    expect(prefixed).toHaveLength(43);
    expect(new Set(prefixed.map((r) => r.action))).toEqual(new Set(['login_failed', 'login_success']));
    expect((await search.search({ a: ['nothing_like_this*'] })).total).toBe(0);
  });

  it('treats user_deleted and delete_user as the same action', async () => {
    const a = await search.search({ a: ['user_deleted'] });
    const b = await search.search({ a: ['delete_user'] });
    expect(a.total).toBe(2);
    expect(b.rows.map((r) => r.id)).toEqual(a.rows.map((r) => r.id));
    expect((await search.deletionActions()).sort()).toEqual(['delete_bag', 'delete_user', 'user_deleted']);
  });

  it('user: matches what the user did and rows naming them; actor mode only what they did', async () => {
    const any = await walk({ u: 'bob' }, 8);
    expect(any).toHaveLength(39); // 38 failed logins naming bob + his login
    const actor = await walk({ u: 'bob', um: 'actor' }, 8);
    expect(actor.map((r) => r.action)).toEqual(['login_success']);
    const combined = await search.search({ u: 'bob', a: ['login_failed'], s: ago(60) });
    expect(combined.total).toBe(30);
    expect(combined.rows.every((r) => r.action === 'login_failed' && r.details?.username === 'bob')).toBe(true);
  });

  it('refuses an unknown user with a clear message', async () => {
    await expect(search.search({ u: 'nobody' })).rejects.toThrow(UserError);
    await expect(search.search({ u: 'nobody' })).rejects.toThrow(/No user named `nobody`/);
  });

  it('filters by entity, IP and time window; until before since is refused', async () => {
    expect((await search.search({ e: 'bag' })).total).toBe(16);
    expect((await search.search({ e: 'bag', ei: 12 })).rows.map((r) => r.action)).toEqual(['delete_bag']);
    expect((await search.search({ ip: '192.168.1.20' })).total).toBe(2);
    expect((await search.search({ s: ago(60), t: ago(3) })).total).toBe(31); // since inclusive, until exclusive
    await expect(search.search({ s: ago(3), t: ago(60) })).rejects.toThrow(/until/);
  });

  it('caps the count of big matches', async () => {
    const c = await search.count({}, 10);
    expect(c).toEqual({ total: 10, capped: true });
    expect(await search.count({ a: ['logout'] }, 10)).toEqual({ total: 1, capped: false });
  });

  it('streams every row in batches for export', async () => {
    const sizes: number[] = [];
    const ids: number[] = [];
    for await (const b of search.batches({ e: 'bag' }, 4)) {
      sizes.push(b.length);
      ids.push(...b.map((r) => r.id));
    }
    expect(sizes).toEqual([4, 4, 4, 4]);
    expect(new Set(ids).size).toBe(16);
  });
});

describe('investigations', () => {
  it('groups failed logins by IP and username within the window, biggest first', async () => {
    const { groups, totalGroups } = await search.failedLogins(3600, 6);
    expect(totalGroups).toBe(1);
    expect(groups[0]).toMatchObject({ ip_address: '10.1.2.3', username: 'bob', attempts: 30 });
    expect(groups[0].first_attempt.getTime()).toBeLessThan(groups[0].last_attempt.getTime());
    const all = await search.failedLogins(24 * 3600, 1);
    expect(all.groups.map((g) => [g.username, g.attempts])).toEqual([
      ['bob', 38],
      ['carol', 3],
    ]);
  });

  it("the guide's failed-login query ends in ORDER BY count DESC, which PostgreSQL rejects", async () => {
    await expect(
      db.query(`SELECT ip_address, details->>'username' as username, count(*) as attempts
                  FROM audit_log WHERE action = 'login_failed' AND timestamp > NOW() - INTERVAL '1 hour'
                 GROUP BY ip_address, details->>'username' HAVING count(*) > 5 ORDER BY count DESC`),
    ).rejects.toThrow(/count/);
  });

  it('lists the distinct actions present', async () => {
    expect(await search.distinctActions()).toEqual([
      'create_bag',
      'delete_bag',
      'delete_user',
      'login_failed',
      'login_success',
      'logout',
      'role_change',
      'update_bag',
      'user_deleted',
    ]);
  });
});
