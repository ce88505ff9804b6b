import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchServerUrls, printTable, type BenchRow } from './lib.js';

/**
 * `npm run bench [suite…]`: runs every module in bench/suites (or the named ones) against the
 * benchmark's own PostgreSQL and Redis (scripts/bench-services.sh, or BENCH_DATABASE_URL),
 * prints one table, which targets hold and the machine's load, writes
 * bench/results/latest.json and exits 0 (2 if a suite crashed).
 * A suite exports `run(ctx): Promise<BenchRow[]>`.
 */
export interface SuiteContext {
  databaseUrl: string;
  redisUrl?: string;
  log: (s: string) => void;
}

const here = path.dirname(fileURLToPath(import.meta.url));

async function main() {
  const wanted = process.argv.slice(2);
  const files = fs
    .readdirSync(path.join(here, 'suites'))
    .filter((f) => f.endsWith('.ts'))
    .filter((f) => !wanted.length || wanted.includes(f.replace(/\.ts$/, '')))
    .sort();
  const urls = benchServerUrls();
  const ctx: SuiteContext = { ...urls, log: (s) => console.error(`[bench] ${s}`) };
  const rows: BenchRow[] = [];
  const loadAtStart = os.loadavg()[0];
  for (const f of files) {
    ctx.log(`suite ${f}`);
    const mod = await import(path.join(here, 'suites', f));
    try {
      rows.push(...(await mod.run(ctx)));
    } catch (e) {
      // One suite failing must not lose the others' figures: it becomes a row that fails.
      ctx.log(`suite ${f} failed: ${(e as Error).stack ?? e}`);
      rows.push({ suite: f.replace(/\.ts$/, ''), name: `suite crashed: ${String((e as Error).message ?? e).slice(0, 100)}`, n: 0, unit: '', target: 'runs', pass: false });
    }
  }
  const load = os.loadavg();
  printTable(rows);
  const gated = rows.filter((r) => r.pass !== undefined);
  const held = gated.filter((r) => r.pass);
  console.log(`\ntargets held: ${held.length} of ${gated.length}` + ` · machine load average ${load.map((l) => l.toFixed(2)).join(' / ')} (1/5/15 min) at the end, ${loadAtStart.toFixed(2)} at the start, ${os.cpus().length} cores`);
  for (const r of gated.filter((x) => !x.pass)) console.log(`  NOT held: ${r.suite} · ${r.name} · ${r.target}`);
  const outDir = path.join(here, 'results');
  fs.mkdirSync(outDir, { recursive: true });
  const result = { at: new Date().toISOString(), node: process.version, cpus: os.cpus().length, loadavg: { start: loadAtStart, end: load }, rows };
  fs.writeFileSync(path.join(outDir, 'latest.json'), JSON.stringify(result, null, 2));
  console.log(`\nwrote ${path.relative(process.cwd(), path.join(outDir, 'latest.json'))}`);
  // A benchmark measures; whether each target holds is in the table. Exit 2 only on a crash.
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
