import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MigrationError, readMigrations } from '../../src/db/migrate.js';

const dirs: string[] = [];
function sqlDir(files: string[]): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-sql-'));
  dirs.push(dir);
  for (const f of files) fs.writeFileSync(path.join(dir, f), 'SELECT 1;');
  return dir;
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('migration file names (issue 13)', () => {
  it("reads the project's own sql/ folder, both 004 files included", () => {
    const names = readMigrations().map((m) => m.name);
    expect(names).toContain('004_promotions.sql');
    expect(names).toContain('004_promotions_card_sync.sql');
    expect(names).toEqual([...names].sort());
  });

  for (const bad of ['10_short_number.sql', '010-dashes.sql', '010_Upper_Case.sql', '010_notes.SQL', 'README.md', '010_x.sql.bak']) {
    it(`refuses ${bad} instead of skipping it`, () => {
      const dir = sqlDir(['001_a.sql', bad]);
      expect(() => readMigrations(dir)).toThrow(MigrationError);
      expect(() => readMigrations(dir)).toThrow(bad);
    });
  }

  it('refuses a new file that takes a number already used', () => {
    const dir = sqlDir(['001_a.sql', '010_first.sql', '010_second.sql']);
    expect(() => readMigrations(dir)).toThrow(/010_first\.sql, 010_second\.sql: share the number 010/);
    // The two historic 004 files are accepted by name only.
    expect(() => readMigrations(sqlDir(['004_promotions.sql', '004_other.sql']))).toThrow(/share the number 004/);
    expect(readMigrations(sqlDir(['004_promotions.sql', '004_promotions_card_sync.sql'])).map((m) => m.name)).toHaveLength(2);
  });
});
