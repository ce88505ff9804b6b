import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Db } from './index.js';

/**
 * The migrations: the nearest `sql/` folder above this module — `sql/` from the sources
 * (src/db/migrate.ts), `dist/sql` from the build, whether this code is dist/src/db/migrate.js
 * or part of the bundled dist/src/main.js (scripts/build.mjs).
 */
export const SQL_DIR = nearestSqlDir(path.dirname(fileURLToPath(import.meta.url)));

function nearestSqlDir(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'sql');
    if (fs.existsSync(candidate)) return candidate;
    // None: the old fixed place, so that reading the migrations fails naming it.
    if (path.dirname(dir) === dir) return path.resolve(from, '../../sql');
  }
}

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

const MIGRATION_NAME = /^(\d{3})_[a-z0-9_]+\.sql$/;

/**
 * Two early migrations share the number 004. Both are applied in existing deployments under
 * these names (the name is the key in warden_migrations), so they stay as they are; every
 * new file takes the next unused number.
 */
const ACCEPTED_SHARED_NUMBERS = new Set(['004_promotions.sql', '004_promotions_card_sync.sql']);

/**
 * Files named NNN_description.sql (lower case), applied in name order. Anything else in the
 * folder is refused rather than skipped: a misnamed migration silently never applied is how
 * a schema drifts, and so is a second file taking a number already used.
 */
export function readMigrations(dir = SQL_DIR): Migration[] {
  const files = fs.readdirSync(dir).sort();
  const problems: string[] = [];
  const byNumber = new Map<string, string[]>();
  for (const f of files) {
    const m = MIGRATION_NAME.exec(f);
    if (!m) {
      problems.push(`${f}: not a migration name (NNN_lower_case_words.sql)`);
      continue;
    }
    byNumber.set(m[1], [...(byNumber.get(m[1]) ?? []), f]);
  }
  for (const [n, names] of byNumber) {
    if (names.length > 1 && !names.every((f) => ACCEPTED_SHARED_NUMBERS.has(f))) {
      problems.push(`${names.join(', ')}: share the number ${n}; give the new file the next unused number`);
    }
  }
  if (problems.length) throw new MigrationError(`sql/ holds files that are not migrations:\n  - ${problems.join('\n  - ')}`);
  return files
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
