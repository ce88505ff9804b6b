import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyTextRows } from '../../src/db/copy-text.js';
import type { Db } from '../../src/db/index.js';
import { AuditSearch, COUNT_CAP } from '../../src/services/audit-search.js';
import { createTestDb } from '../helpers/db.js';
import { createUser } from '../helpers/fixtures.js';
import { QueryRecorder } from '../helpers/query-recorder.js';

/**
 * Issue 15: what keeps the audit log fast at 10 M rows must give the same answers as the
 * plain queries it replaces — the failed-logins copy and pair counters kept by triggers, the
 * count line (exact below the cap, the planner's estimate above it, carried by paging), and
 * the COPY statement of the export.
 */

let db: Db;
let cleanup: () => Promise<void>;
const NOW = Date.now();
const ago = (minutes: number) => new Date(NOW - minutes * 60_000).toISOString();

async function failed(minutesAgo: number, ip: string | null, username: string | null) {
  const { rows } = await db.query<{ id: number }>(
    `INSERT INTO audit_log ("timestamp", action, ip_address, details) VALUES ($1, 'login_failed', $2, $3) RETURNING id`,
    [ago(minutesAgo), ip, username === null ? null : JSON.stringify({ username })],
  );
  return rows[0].id;
}

/** The guide's grouping straight over audit_log: what the copy must agree with. */
async function rawGroups(windowSeconds: number, min: number) {
  const { rows } = await db.query<{ ip_address: string | null; username: string | null; attempts: number }>(
    `SELECT ip_address, details->>'username' AS username, count(*)::int AS attempts
       FROM audit_log WHERE action = 'login_failed' AND "timestamp" > now() - make_interval(secs => $1)
      GROUP BY 1, 2 HAVING count(*) >= $2 ORDER BY 3 DESC, 1, 2`,
    [windowSeconds, min],
  );
  return rows;
}

const shape = (groups: { ip_address: string | null; username: string | null; attempts: number }[]) =>
  groups.map((g) => ({ ip_address: g.ip_address, username: g.username, attempts: g.attempts })).sort((a, b) => b.attempts - a.attempts || String(a.ip_address).localeCompare(String(b.ip_address)) || String(a.username).localeCompare(String(b.username)));

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  // A brute force (7 in the last hour, 3 more yesterday), a slow one over weeks, scattered
  // single failures, NULL IP and NULL username, and one row too old for any window.
  for (let i = 0; i < 7; i++) await failed(5 + i, '203.0.113.5', 'alice');
  for (let i = 0; i < 3; i++) await failed(26 * 60 + i, '203.0.113.5', 'alice');
  for (let d = 1; d <= 20; d++) await failed(d * 24 * 60, '198.51.100.9', 'bob');
  for (let i = 0; i < 6; i++) await failed(30 + i, null, 'carol');
  for (let i = 0; i < 6; i++) await failed(40 + i, '192.0.2.1', null);
  for (let i = 0; i < 30; i++) await failed(10 + i * 37, `10.0.0.${i}`, `user${i}`);
  await failed(40 * 24 * 60, '203.0.113.5', 'alice');
}, 60_000);

afterAll(async () => {
  await cleanup?.();
});

describe('failed logins from the trigger-kept copy', () => {
  it('gives the same groups as grouping audit_log, for every window and minimum', async () => {
    const search = new AuditSearch(db);
    for (const windowSeconds of [3600, 86400, 2 * 86400, 7 * 86400, 30 * 86400]) {
      for (const min of [1, 2, 3, 6, 8]) {
        const got = await search.failedLogins(windowSeconds, min, 1000);
        const want = await rawGroups(windowSeconds, min);
        expect(shape(got.groups), `window ${windowSeconds}s, min ${min}`).toEqual(shape(want));
        expect(got.totalGroups).toBe(want.length);
      }
    }
  });

  it('reads the copy, not audit_log, for windows up to 31 days', async () => {
    const rec = new QueryRecorder(db);
    const s = new AuditSearch(rec);
    await s.failedLogins(7 * 86400, 6);
    await s.failedLogins(3600, 1);
    for (const c of rec.calls) expect(c.sql).not.toMatch(/FROM audit_log/);
    const { groups } = await s.failedLogins(3600, 6);
    expect(groups.map((g) => [g.ip_address, g.username, g.attempts])).toEqual([
      ['203.0.113.5', 'alice', 7],
      [null, 'carol', 6], // ties: the most recent attempt first
      ['192.0.2.1', null, 6],
    ]);
  });

  it('follows rows that change: an anonymised IP moves the attempts, a deleted row leaves', async () => {
    const search = new AuditSearch(db);
    const ids = (await db.query<{ id: number }>(`SELECT id FROM audit_log WHERE action = 'login_failed' AND ip_address = '192.0.2.1'`)).rows.map((r) => r.id);
    await db.query(`UPDATE audit_log SET ip_address = '192.0.xxx.xxx' WHERE id = ANY($1::bigint[])`, [ids]);
    await db.query(`DELETE FROM audit_log WHERE id = $1`, [ids[0]]);
    const { rows: left } = await db.query(`SELECT * FROM warden_failed_login WHERE ip_address = '192.0.2.1'`);
    expect(left).toEqual([]); // the clear IP is gone from Warden's copy too
    expect(shape((await search.failedLogins(3600, 5, 1000)).groups)).toEqual(shape(await rawGroups(3600, 5)));
    expect((await search.failedLogins(3600, 5)).groups.find((g) => g.ip_address === '192.0.xxx.xxx')?.attempts).toBe(5);
  });

  it('min 1: every group and the total from the pair table, also after the newest attempt of a pair left or moved back (sql/019)', async () => {
    const search = new AuditSearch(db);
    const moved = await failed(1, '203.0.113.77', 'dave');
    await failed(3 * 24 * 60, '203.0.113.77', 'dave');
    await failed(3, '203.0.113.78', 'erin');
    const gone = await failed(2, '203.0.113.78', 'erin');
    await db.query(`UPDATE audit_log SET "timestamp" = now() - interval '2 days' WHERE id = $1`, [moved]);
    await db.query('DELETE FROM audit_log WHERE id = $1', [gone]);
    const raw = async (windowSeconds: number) =>
      (await db.query<{ ip_address: string | null; username: string | null; attempts: number; first_attempt: Date; last_attempt: Date }>(
        `SELECT ip_address, details->>'username' AS username, count(*)::int AS attempts, min("timestamp") AS first_attempt, max("timestamp") AS last_attempt
           FROM audit_log WHERE action = 'login_failed' AND "timestamp" > now() - make_interval(secs => $1)
          GROUP BY 1, 2 ORDER BY 3 DESC, 5 DESC`,
        [windowSeconds],
      )).rows;
    for (const windowSeconds of [3600, 86400, 7 * 86400, 30 * 86400]) {
      const want = await raw(windowSeconds);
      for (const limit of [1, 2, 5, 1000]) {
        const got = await search.failedLogins(windowSeconds, 1, limit);
        expect(got.totalGroups, `window ${windowSeconds}s, limit ${limit}`).toBe(want.length);
        expect(got.groups.map((g) => g.attempts), `window ${windowSeconds}s, limit ${limit}`).toEqual(want.slice(0, limit).map((w) => w.attempts));
      }
      const all = (await search.failedLogins(windowSeconds, 1, 1000)).groups;
      const key = (g: { ip_address: string | null; username: string | null }) => `${g.ip_address}|${g.username}`;
      const byKey = new Map(want.map((w) => [key(w), w]));
      expect(all.length).toBe(want.length);
      for (const g of all) {
        const w = byKey.get(key(g));
        expect(w, key(g)).toBeDefined();
        expect([g.attempts, new Date(g.first_attempt).getTime(), new Date(g.last_attempt).getTime()], key(g)).toEqual([
          w!.attempts,
          new Date(w!.first_attempt).getTime(),
          new Date(w!.last_attempt).getTime(),
        ]);
      }
    }
  });

  it('keeps each pair counter equal to the copy, through prune and rebuild', async () => {
    const counters = async () =>
      (await db.query<{ ip_address: string; username: string; attempts: number }>(`SELECT ip_address, username, attempts FROM warden_failed_login_pair ORDER BY 1, 2`)).rows;
    const fromCopy = async () =>
      (await db.query<{ ip_address: string; username: string; attempts: number }>(
        `SELECT ip_address, username, count(*)::int AS attempts FROM warden_failed_login GROUP BY 1, 2 ORDER BY 1, 2`,
      )).rows;
    expect(await counters()).toEqual(await fromCopy());
    await db.query('SELECT warden_failed_login_rebuild()');
    expect(await counters()).toEqual(await fromCopy());
    // Half of bob's slow attempts age out of the copy: the prune removes them and subtracts them.
    await db.query(`UPDATE warden_failed_login SET "timestamp" = now() - interval '40 days' WHERE username = 'bob' AND "timestamp" < now() - interval '10 days 12 hours'`);
    const { rows } = await db.query<{ n: number }>('SELECT warden_failed_login_prune()::int AS n');
    expect(rows[0].n).toBe(10);
    expect(await counters()).toEqual(await fromCopy());
    expect((await counters()).find((p) => p.username === 'bob')?.attempts).toBe(10);
    // Everything of a pair gone: the counter goes too.
    await db.query(`UPDATE warden_failed_login SET "timestamp" = now() - interval '40 days' WHERE username = 'bob'`);
    await db.query('SELECT warden_failed_login_prune()');
    expect((await counters()).find((p) => p.username === 'bob')).toBeUndefined();
    expect(await counters()).toEqual(await fromCopy());
  });
});

describe('the count line', () => {
  it('is exact below the cap, an estimate (labelled by the caller) above it, and paging does not count again', async () => {
    const owner = await createUser(db, { username: 'busy', role: 'admin' });
    await db.query(
      `INSERT INTO audit_log ("timestamp", user_id, action, details)
       SELECT now() - g * interval '1 second', $1, 'login_success', jsonb_build_object('username', 'busy') FROM generate_series(1, $2::int) g`,
      [owner.id, COUNT_CAP + 500],
    );
    await db.exec('ANALYZE audit_log');
    const rec = new QueryRecorder(db);
    const s = new AuditSearch(rec);
    const first = await s.search({ u: 'busy' });
    expect(first.totalCapped).toBe(true);
    expect(first.estimate).toBeGreaterThan(COUNT_CAP);
    // The estimate came from EXPLAIN: no statement read the matching rows to count them.
    expect(rec.calls.some((c) => /^EXPLAIN/.test(c.sql))).toBe(true);
    expect(rec.calls.some((c) => /count\(\*\)/.test(c.sql))).toBe(false);

    rec.calls = [];
    const next = await s.search({ u: 'busy' }, { after: first.last }, 20, { total: first.total, capped: true, estimate: first.estimate });
    expect(rec.calls).toHaveLength(2); // user lookup and the page itself
    expect(next.estimate).toBe(first.estimate);

    const small = await new AuditSearch(db).search({ a: ['login_failed'], ip: '203.0.113.5' });
    expect(small).toMatchObject({ total: 11, totalCapped: false }); // 7 + 3 + the 40-day-old one
    expect(await new AuditSearch(db).count({ u: 'busy' }, 100_000)).toEqual({ total: COUNT_CAP + 500, capped: false });
  });
});

describe('the export statement (COPY … TO STDOUT)', () => {
  it.runIf(!!process.env.DATABASE_URL)('streams the same rows, in the same order, as the keyset batches', async () => {
    const search = new AuditSearch(db);
    for (const q of [{ a: ['login_failed'] }, { u: 'busy', s: ago(60) }, { ip: '203.0.113.5' }, {}, { a: ['nothing_like_this'] }]) {
      const batches: string[] = [];
      for await (const b of search.batches(q, 100)) batches.push(...b.map((r) => `${r.id}|${r.ts_key}|${r.actor}|${JSON.stringify(r.details)}|${r.ip_address}`));
      const statement = await search.exportStatement(q, 100_000);
      const copied: string[] = [];
      if (statement) {
        for await (const b of copyTextRows(db.copyOut!(statement.select, statement.settings))) {
          copied.push(...b.map((f) => `${f[0]}|${f[1]}|${f[2]}|${f[8] === null ? 'null' : JSON.stringify(JSON.parse(f[8]))}|${f[7]}`));
        }
      }
      expect(copied, JSON.stringify(q)).toEqual(batches);
    }
  });

  it('never puts a value into the statement text', async () => {
    const statement = await new AuditSearch(db).exportStatement({ u: 'busy', ip: "1.2.3.4'; DROP TABLE x; --", a: ['login*'] }, 10);
    expect(statement!.select).not.toContain('busy');
    expect(statement!.select).not.toContain('DROP');
    expect(Object.values(statement!.settings)).toContain("1.2.3.4'; DROP TABLE x; --");
  });
});

describe('the export at its row limit (both paths: COPY on PostgreSQL, keyset batches on PGlite)', () => {
  it('writes exactly maxRows rows and says truncated only when more matched', async () => {
    const { AuditExporter } = await import('../../src/services/audit-export.js');
    const { Masker } = await import('../../src/services/masking.js');
    const { silentLogger } = await import('../../src/logger.js');
    const fs = await import('node:fs');
    const admin = await createUser(db, { username: 'exportadmin', role: 'admin' });
    const actor = { user: { id: admin.id, username: admin.username, email: 'r@example.com', role: 'admin' }, slack: { userId: 'U1', teamId: 'T1', channelId: 'C1' } } as any;
    const q = { a: ['login_failed'], ip: '203.0.113.5' }; // 11 rows
    const total = (await new AuditSearch(db).count(q, 1000)).total;
    for (const [maxRows, batchSize] of [[total - 4, 3], [total - 4, 1000], [total, 4], [total + 1, 1000], [1, 1]]) {
      let csv = '';
      const chat = {
        post: async () => ({ channel: 'C1', ts: '1' }),
        update: async () => {},
        dm: async () => ({ channel: 'D1', ts: '1' }),
        ephemeral: async () => {},
        publishHome: async () => {},
        upload: async (_c: string, file: { path?: string }) => {
          csv = fs.readFileSync(file.path!, 'utf8');
        },
      };
      const exporter = new AuditExporter({ db, chat, search: new AuditSearch(db), masker: new Masker(true), logger: silentLogger(), maxRows, batchSize });
      const r = await exporter.export(actor, q, { channel: 'C1', to: 'channel', unmasked: false, describe: 'test' });
      const lines = csv.split('\r\n').filter(Boolean);
      const want = Math.min(total, maxRows);
      expect([r.rows, lines.length - 1, r.truncated], `maxRows ${maxRows}, batch ${batchSize}`).toEqual([want, want, total > maxRows]);
      expect(csv).not.toContain('203.0.113.5'); // masked
    }
  });
});
