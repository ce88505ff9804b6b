import { QueryRecorder } from '../test/helpers/query-recorder.js';
import { AuditSearch } from '../src/services/audit-search.js';
import { BENCH_AUDIT_ROWS, benchDatabase, parseSize } from './dataset.js';
import { benchServerUrls } from './lib.js';
import { buildShapes } from './suites/audit.js';

/**
 * `npx tsx bench/explain.ts [10m] [shape substring]`: every statement each audit search shape
 * sends, with EXPLAIN (ANALYZE, BUFFERS) on the kept benchmark data set, slowest last.
 */
async function main() {
  const size = process.argv[2] ? parseSize(process.argv[2]) : BENCH_AUDIT_ROWS;
  const only = process.argv[3];
  const { databaseUrl } = benchServerUrls();
  const { db } = await benchDatabase(databaseUrl, console.error, size);
  const out: { name: string; ms: number; plan: string; sql: string }[] = [];
  try {
    for (const shape of await buildShapes(db, size)) {
      if (only && !shape.name.includes(only)) continue;
      const rec = new QueryRecorder(db);
      await shape.call(new AuditSearch(rec), 1);
      for (const c of rec.calls) {
        if (/^EXPLAIN/.test(c.sql)) continue; // the planner-estimate statement itself
        const { rows } = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${c.sql}`, c.params);
        const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
        const ms = Number(/Execution Time: ([\d.]+) ms/.exec(plan)?.[1] ?? 0);
        out.push({ name: shape.name, ms, plan, sql: c.sql.replace(/\s+/g, ' ').trim() });
      }
    }
  } finally {
    await db.close();
  }
  out.sort((a, b) => a.ms - b.ms);
  for (const o of out) console.log(`\n=== ${o.name}: ${o.ms} ms\n${o.sql}\n${o.plan}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
