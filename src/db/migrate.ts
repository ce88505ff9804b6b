import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Db } from './index.js';

export const SQL_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../sql');

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

/** Files named NNN_description.sql, applied in order of NNN. */
export function readMigrations(dir = SQL_DIR): Migration[] {
  return fs
    .readdirSync(dir)
    .filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((name) => {
      const sql = fs.readFileSync(path.join(dir, name), 'utf8');
      return { name, sql, checksum: crypto.createHash('sha256').update(sql).digest('hex') };
    });
}

export class MigrationError extends Error {}

// Any constant works; it only has to be the same for every replica.
const MIGRATION_LOCK = 727_001;

/**
 * Applies pending migrations, one transaction each, recording name and checksum.
 * Refuses to go on when an applied migration's file was edited since: that is a
 * schema drift an operator must look at, not something to paper over.
 */
export async function migrate(db: Db, migrations = readMigrations()): Promise<string[]> {
  await db.exec(`CREATE TABLE IF NOT EXISTS warden_migrations (
    name text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`);
  const applied: string[] = [];
  for (const m of migrations) {
    const done = await db.tx(async (q) => {
      // Serialises replicas starting at the same moment.
      if (db.kind === 'pg') await q.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      const { rows } = await q.query<{ checksum: string }>('SELECT checksum FROM warden_migrations WHERE name = $1', [m.name]);
      if (rows[0]) {
        if (rows[0].checksum !== m.checksum) {
          throw new MigrationError(
            `Migration ${m.name} was edited after it was applied (checksum differs). ` +
              'Restore the original file and put the change in a new migration.',
          );
        }
        return false;
      }
      await q.exec(m.sql);
      await q.query('INSERT INTO warden_migrations (name, checksum) VALUES ($1, $2)', [m.name, m.checksum]);
      return true;
    });
    if (done) applied.push(m.name);
  }
  return applied;
}

/** Names of migrations in sql/ that the database has not applied yet. */
export async function pendingMigrations(db: Db, migrations = readMigrations()): Promise<string[]> {
  const exists = await db.query<{ t: string | null }>(`SELECT to_regclass('warden_migrations')::text AS t`);
  if (!exists.rows[0]?.t) return migrations.map((m) => m.name);
  const { rows } = await db.query<{ name: string }>('SELECT name FROM warden_migrations');
  const have = new Set(rows.map((r) => r.name));
  return migrations.filter((m) => !have.has(m.name)).map((m) => m.name);
}
