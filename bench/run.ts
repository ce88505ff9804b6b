import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchServerUrls, printTable, type BenchRow } from './lib.js';

/**
 * `npm run bench [suite…]`: runs every module in bench/suites (or the named ones) against a
 * real PostgreSQL (DATABASE_URL, or the throwaway server of scripts/test-services.sh),
 * prints one table and writes bench/results/latest.json.
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
  for (const f of files) {
    ctx.log(`suite ${f}`);
    const mod = await import(path.join(here, 'suites', f));
    rows.push(...(await mod.run(ctx)));
  }
  printTable(rows);
  const outDir = path.join(here, 'results');
  fs.mkdirSync(outDir, { recursive: true });
  const result = { at: new Date().toISOString(), node: process.version, cpus: (await import('node:os')).cpus().length, rows };
  fs.writeFileSync(path.join(outDir, 'latest.json'), JSON.stringify(result, null, 2));
  console.log(`\nwrote ${path.relative(process.cwd(), path.join(outDir, 'latest.json'))}`);
  process.exit(rows.some((r) => r.pass === false) ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
