import fs from 'node:fs';
import type { Db, Queryable } from '../../src/db/index.js';
import { QueryRecorder as Recorder } from '../../test/helpers/query-recorder.js';
import { silentLogger } from '../../src/logger.js';
import { AuditExporter } from '../../src/services/audit-export.js';
import { AuditSearch, type AuditQuery } from '../../src/services/audit-search.js';
import type { Chat } from '../../src/services/chat.js';
import type { Actor } from '../../src/services/identity.js';
import { Masker } from '../../src/services/masking.js';
import { benchDatabase, BENCH_AUDIT_ROWS, BENCH_USERS } from '../dataset.js';
import { latencyRow, round, timed, type BenchRow } from '../lib.js';
import type { SuiteContext } from '../run.js';

/**
 * DESIGN §5 / issue 6: audit search latency on 1,000,000 audit rows and 100,000 users.
 * For each search shape — action + since, by user, by IP, the failed-logins investigation,
 * entity history, and a keyset "Older" page — p50/p95 through the service (AuditSearch:
 * query resolution, user lookup, capped count and page, row parsing), next to the very
 * statements the service sent, replayed directly on the pool one after another.
 * Target: service p95 < 50 ms. Parameters vary per sample (different users, IPs, ids).
 * Also: a CSV export of ~100,000 rows (time, rows/s, RSS growth) — streamed, so memory
 * stays flat. Nothing is written to warden_bench (the export's audit row is rolled back).
 */

const SUITE = 'audit';
const SAMPLES = Number(process.env.BENCH_AUDIT_SAMPLES ?? 200);
const WARMUP = 20;
const TARGET = { p: 95 as const, ms: 50 };

interface Shape {
  name: string;
  call(s: AuditSearch, i: number): Promise<unknown>;
}

const userOf = (i: number) => 1 + ((i * 7919 + 13) % BENCH_USERS);
const ipOf = (i: number) => `10.${i % 7}.${i % 251}.${i % 13}`;

export async function run(ctx: SuiteContext): Promise<BenchRow[]> {
  const { db } = await benchDatabase(ctx.databaseUrl, ctx.log);
  const rows: BenchRow[] = [];
  try {
    // The newest row: the data set may have been generated a while ago; windows are relative to it.
    const newest = (await db.query<{ t: Date }>('SELECT max("timestamp") AS t FROM audit_log')).rows[0].t;
    const sinceHours = (h: number) => new Date(newest.getTime() - h * 3600_000).toISOString();
    const windowSeconds = Math.ceil((Date.now() - newest.getTime()) / 1000) + 3600;

    // A cursor half-way through the first action's rows for the "Older page" shape.
    const mid = (
      await db.query<{ ts: string; id: number }>(
        `SELECT to_char("timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS ts, id
           FROM audit_log ORDER BY "timestamp" DESC, id DESC OFFSET 500000 LIMIT 1`,
      )
    ).rows[0];

    const shapes: Shape[] = [
      { name: 'action + since 24h', call: (s, i) => s.search({ a: [i % 2 ? 'login_failed' : 'role_change'], s: sinceHours(24) }) },
      { name: 'action prefix login* + since 7d', call: (s) => s.search({ a: ['login*'], s: sinceHours(24 * 7) }) },
      { name: 'by user (actor or named)', call: (s, i) => s.search({ u: `user${userOf(i)}` }) },
      { name: 'by IP', call: (s, i) => s.search({ ip: ipOf(i) }) },
      { name: 'failed-logins 1h investigation', call: (s) => s.failedLogins(windowSeconds, 6) },
      { name: 'failed-logins 24h investigation', call: (s) => s.failedLogins(windowSeconds + 23 * 3600, 2) },
      { name: 'history (entity user:ID)', call: (s, i) => s.search({ e: 'user', ei: userOf(i * 3) }, {}, 10) },
      { name: 'unfiltered Older page (keyset)', call: (s) => s.search({}, { after: [mid.ts, mid.id] }) },
      { name: 'deletions 30d', call: async (s) => s.search({ a: await s.deletionActions(), s: sinceHours(24 * 30) }) },
    ];

    for (const shape of shapes) {
      const viaService: number[] = [];
      const direct: number[] = [];
      for (let i = 0; i < WARMUP + SAMPLES; i++) {
        const rec = new Recorder(db);
        const search = new AuditSearch(rec);
        const ms = await timed(() => shape.call(search, i));
        const replay = await timed(async () => {
          for (const c of rec.calls) await db.query(c.sql, c.params);
        });
        if (i >= WARMUP) {
          viaService.push(ms);
          direct.push(replay);
        }
      }
      rows.push(latencyRow(SUITE, `${shape.name} — service`, viaService, TARGET));
      rows.push(latencyRow(SUITE, `${shape.name} — same SQL direct`, direct));
      ctx.log(`audit: ${shape.name} done`);
    }

    rows.push(...(await exportBench(db, ctx, sinceHours)));
  } finally {
    await db.close();
  }
  return rows;
}

/** Export of ~100,000 rows through AuditExporter, file streamed to a sink; RSS sampled. */
async function exportBench(db: Db, ctx: SuiteContext, sinceHours: (h: number) => string): Promise<BenchRow[]> {
  // login_success is 3/24 of the rows over 120 days: ~96 days of it ≈ 100,000 rows.
  const q: AuditQuery = { a: ['login_success'], s: sinceHours(24 * 96) };
  const expected = (await new AuditSearch(db).count(q, 10_000_000)).total;
  let uploadedBytes = 0;
  const chat: Chat = {
    post: async (channel) => ({ channel, ts: '1.0' }),
    update: async () => {},
    dm: async () => ({ channel: 'D_BENCH', ts: '1.0' }),
    ephemeral: async () => {},
    publishHome: async () => {},
    upload: async (_channel, file) => {
      // Streams the file like the Slack port does, without keeping it.
      for await (const chunk of fs.createReadStream(file.path!)) uploadedBytes += (chunk as Buffer).length;
    },
  };
  // The export's own audit row is rolled back: warden_bench keeps its exact row count.
  const rollback = new Error('bench rollback');
  const noWriteDb: Db = Object.create(db, {
    tx: {
      value: async <T>(fn: (q: Queryable) => Promise<T>) => {
        let out: T | undefined;
        await db.tx(async (tq) => {
          out = await fn(tq);
          throw rollback;
        }).catch((e) => {
          if (e !== rollback) throw e;
        });
        return out as T;
      },
    },
  });
  const exporter = new AuditExporter({ db: noWriteDb, chat, search: new AuditSearch(db), masker: new Masker(true), logger: silentLogger() });
  const actor: Actor = {
    user: { id: 100, username: 'user100', email: 'x', role: 'admin', dispatch_area: null, two_fa_enabled: true, failed_login_attempts: 0, locked_until: null, last_failed_login: null, created_at: null, last_login: null },
    slack: { userId: 'U_BENCH', teamId: 'T_BENCH', channelId: 'C_BENCH' },
  };
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  let rssMax = rssBefore;
  const sampler = setInterval(() => {
    rssMax = Math.max(rssMax, process.memoryUsage().rss);
  }, 20);
  let result: { rows: number } = { rows: 0 };
  const ms = await timed(async () => {
    result = await exporter.export(actor, q, { channel: 'C_BENCH', unmasked: false, describe: 'bench' });
  });
  clearInterval(sampler);
  ctx.log(`audit: export of ${result.rows} rows (${(uploadedBytes / 1e6).toFixed(1)} MB) in ${round(ms)} ms`);
  return [
    { suite: SUITE, name: `export CSV ${result.rows.toLocaleString('en-US')} rows (expected ${expected.toLocaleString('en-US')}) — time`, n: 1, value: round(ms / 1000), unit: 's' },
    { suite: SUITE, name: 'export CSV — throughput', n: 1, value: round(result.rows / (ms / 1000)), unit: 'rows/s' },
    { suite: SUITE, name: `export CSV — file size`, n: 1, value: round(uploadedBytes / 1e6), unit: 'MB' },
    { suite: SUITE, name: 'export CSV — RSS growth while exporting', n: 1, value: round((rssMax - rssBefore) / 1e6), unit: 'MB' },
  ];
}

export const DATASET = { users: BENCH_USERS, audits: BENCH_AUDIT_ROWS };
