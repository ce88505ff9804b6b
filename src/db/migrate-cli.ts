import { ConfigError, loadConfig, loadDotEnv } from '../config.js';
import { openDb } from './index.js';
import { migrate } from './migrate.js';

/** `npm run migrate`: applies sql/ to DATABASE_URL, or to the embedded database. */
async function main() {
  loadDotEnv();
  const config = loadConfig();
  const db = await openDb({ url: config.DATABASE_URL, dataDir: config.WARDEN_DATA_DIR });
  try {
    const applied = await migrate(db);
    console.log(applied.length ? `Applied: ${applied.join(', ')}` : 'Database is up to date.');
  } finally {
    await db.close();
  }
}

main().catch((e) => {
  console.error(e instanceof ConfigError ? e.message : `Migration failed: ${(e as Error).message}`);
  process.exit(1);
});
