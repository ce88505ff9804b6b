import { execFileSync } from 'node:child_process';
import pg from 'pg';

/** Shared pieces of the benchmark harness (`npm run bench`). */

export interface BenchRow {
  suite: string;
  name: string;
  /** Number of measured samples. */
  n: number;
  p50?: number;
  p95?: number;
  p99?: number;
  /** Free-form figure (e.g. RSS MB, ratio) when the row is not a latency. */
  value?: number;
  unit: string;
  /** Target as text, e.g. "p95 < 50 ms", and whether it was met. */
  target?: string;
  pass?: boolean;
}

export function percentile(samples: number[], p: number): number {
  if (!samples.length) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

export function latencyRow(suite: string, name: string, samples: number[], target?: { p: 50 | 95 | 99; ms: number }): BenchRow {
  const row: BenchRow = {
    suite,
    name,
    n: samples.length,
    p50: round(percentile(samples, 50)),
    p95: round(percentile(samples, 95)),
    p99: round(percentile(samples, 99)),
    unit: 'ms',
  };
  if (target) {
    const actual = row[`p${target.p}` as 'p50' | 'p95' | 'p99']!;
    row.target = `p${target.p} < ${target.ms} ms`;
    row.pass = actual < target.ms;
  }
  return row;
}

export const round = (n: number) => Math.round(n * 100) / 100;

/** Times an async function once, in milliseconds. */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** Runs `count` calls with at most `concurrency` in flight; returns each call's latency. */
export async function loadTest(count: number, concurrency: number, fn: (i: number) => Promise<unknown>): Promise<number[]> {
  const samples: number[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      samples.push(await timed(() => fn(i)));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return samples;
}

/**
 * The servers to benchmark on: the benchmark's own PostgreSQL cluster and Redis
 * (scripts/bench-services.sh, port 55442 / 56389; started if needed), so that benchmarks and the
 * shared test cluster never slow each other down. BENCH_DATABASE_URL / BENCH_REDIS_URL point it
 * elsewhere (e.g. a production-like server). Benchmarks never run on PGlite.
 */
export function benchServerUrls(): { databaseUrl: string; redisUrl?: string } {
  if (process.env.BENCH_DATABASE_URL) return { databaseUrl: process.env.BENCH_DATABASE_URL, redisUrl: process.env.BENCH_REDIS_URL };
  const out = execFileSync('bash', ['scripts/bench-services.sh'], { encoding: 'utf8' });
  const db = /DATABASE_URL=(\S+)/.exec(out)?.[1];
  const redis = /REDIS_URL=(\S+)/.exec(out)?.[1];
  if (!db) throw new Error('could not start the benchmark PostgreSQL cluster (scripts/bench-services.sh)');
  return { databaseUrl: db, redisUrl: redis };
}

/** URL of a named database on the same server, created if missing. */
export async function databaseOn(serverUrl: string, name: string, opts: { fresh?: boolean } = {}): Promise<string> {
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    if (opts.fresh) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!exists.rowCount) await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export function printTable(rows: BenchRow[]): void {
  const header = ['suite', 'measure', 'n', 'p50', 'p95', 'p99', 'value', 'unit', 'target', 'ok'];
  const body = rows.map((r) => [
    r.suite,
    r.name,
    String(r.n),
    r.p50?.toFixed(2) ?? '',
    r.p95?.toFixed(2) ?? '',
    r.p99?.toFixed(2) ?? '',
    r.value?.toFixed(2) ?? '',
    r.unit,
    r.target ?? '',
    r.pass === undefined ? '' : r.pass ? 'yes' : 'NO',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) console.log(line(b));
}
