import { BENCH_SIZES, benchDatabase } from './dataset.js';
import { benchServerUrls } from './lib.js';

/**
 * `npx tsx bench/prepare.ts`: starts the benchmark cluster and generates (or checks) every
 * data set of BENCH_SIZES without measuring anything — the 10 M set takes minutes once and
 * is then kept. `npm run bench` does the same on its own when a set is missing.
 */
async function main() {
  const { databaseUrl } = benchServerUrls();
  for (const n of BENCH_SIZES) {
    const { db } = await benchDatabase(databaseUrl, (s) => console.log(`${new Date().toISOString()} ${s}`), n);
    await db.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
