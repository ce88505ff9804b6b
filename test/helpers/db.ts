import crypto from 'node:crypto';
import pg from 'pg';
import { PGliteDb, PgDb, type Db } from '../../src/db/index.js';
import { migrate } from '../../src/db/migrate.js';

/**
 * A fresh, migrated database for one test file: a new database on the PostgreSQL server
 * of DATABASE_URL when it is set (CI), otherwise an in-memory PGlite.
 * Returns the Db and a cleanup that drops what it made.
 */
export async function createTestDb(): Promise<{ db: Db; url?: string; cleanup: () => Promise<void> }> {
  const base = process.env.DATABASE_URL;
  if (!base) {
    const db = await PGliteDb.open();
    await migrate(db);
    return { db, cleanup: () => db.close() };
  }
  const name = `warden_test_${crypto.randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  const db = PgDb.connect(url.toString(), 20);
  await migrate(db);
  return {
    db,
    url: url.toString(),
    cleanup: async () => {
      await db.close();
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}
