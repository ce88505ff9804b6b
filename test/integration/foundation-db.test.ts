import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { migrate, MigrationError, pendingMigrations, readMigrations } from '../../src/db/migrate.js';
import { createTestDb } from '../helpers/db.js';
import { createUser } from '../helpers/fixtures.js';

let db: Db;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
});
afterAll(async () => cleanup?.());

describe('migrations', () => {
  it('are applied once, recorded with checksums, and idempotent', async () => {
    expect(await pendingMigrations(db)).toEqual([]);
    expect(await migrate(db)).toEqual([]);
    const { rows } = await db.query<{ name: string; checksum: string }>('SELECT name, checksum FROM warden_migrations ORDER BY name');
    expect(rows.map((r) => r.name)).toEqual(readMigrations().map((m) => m.name));
  });

  it('refuse to run when an applied migration was edited', async () => {
    const edited = readMigrations().map((m, i) => (i === 0 ? { ...m, checksum: 'edited' } : m));
    await expect(migrate(db, edited)).rejects.toBeInstanceOf(MigrationError);
    await expect(migrate(db, edited)).rejects.toThrow(/was edited after it was applied/);
  });

  it('roll back a failing migration whole', async () => {
    const bad = [{ name: '999_broken.sql', sql: 'CREATE TABLE half_done (id int); SELECT * FROM no_such_table;', checksum: 'x' }];
    await expect(migrate(db, bad)).rejects.toThrow();
    const t = await db.query<{ t: string | null }>(`SELECT to_regclass('half_done')::text AS t`);
    expect(t.rows[0].t).toBeNull();
    expect((await db.query(`SELECT 1 FROM warden_migrations WHERE name = '999_broken.sql'`)).rowCount).toBe(0);
  });
});

describe('transactions', () => {
  it('commit together or roll back together', async () => {
    await expect(
      db.tx(async (q) => {
        await q.query(`INSERT INTO "user" (username, email) VALUES ('txuser', 'tx@example.com')`);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect((await db.query(`SELECT 1 FROM "user" WHERE username = 'txuser'`)).rowCount).toBe(0);
  });
});

describe('the admin guide SQL runs unchanged against the migrated schema', () => {
  beforeAll(async () => {
    const u = await createUser(db, { username: 'locked_user', role: 'dispatcher', lockedMinutes: 30, failed: 5 });
    await createUser(db, { username: 'seedadmin', role: 'admin', area: null });
    await db.query(
      `INSERT INTO audit_log (user_id, action, entity_type, entity_id, details, ip_address, before_state, after_state)
       VALUES ($1, 'login_failed', 'user', $1, '{"username":"locked_user"}', '192.168.1.20', NULL, NULL),
              ($1, 'role_change', 'user', $1, '{}', '192.168.1.20', '{"role":"biller"}', '{"role":"dispatcher","dispatch_area":"lucknow"}'),
              (NULL, 'delete_user', 'user', 99, '{}', NULL, '{"username":"gone"}', NULL),
              ($1, '2fa_verify_failed', 'user', $1, '{"username":"locked_user"}', '10.0.0.1', NULL, NULL)`,
      [u.id],
    );
  });

  // Each statement copied verbatim from seeds/001 (user management, audit review, 2FA, security).
  const seedQueries = [
    `UPDATE "user" 
SET password_reset_token = NULL, 
    password_reset_token_expires = NULL 
WHERE username = 'locked_user';`,
    `UPDATE "user" 
SET failed_login_attempts = 0, 
    locked_until = NULL, 
    last_failed_login = NULL 
WHERE username = 'locked_user';`,
    `SELECT timestamp, details, ip_address
FROM audit_log
WHERE action = 'login_failed'
  AND details->>'username' = 'locked_user'
ORDER BY timestamp DESC
LIMIT 10;`,
    `SELECT action, entity_type, entity_id, before_state
FROM audit_log
WHERE user_id IS NULL
  AND action = 'delete_user'
ORDER BY timestamp DESC;`,
    `SELECT 
    timestamp,
    u.username as changed_user,
    before_state->>'role' as old_role,
    after_state->>'role' as new_role,
    before_state->>'dispatch_area' as old_area,
    after_state->>'dispatch_area' as new_area,
    details
FROM audit_log
LEFT JOIN "user" u ON audit_log.entity_id = u.id
WHERE action = 'role_change'
  AND entity_type = 'user'
ORDER BY timestamp DESC
LIMIT 10;`,
    `SELECT 
    timestamp,
    action,
    before_state,
    after_state,
    details
FROM audit_log
WHERE entity_type = 'user'
  AND entity_id = 5  -- User ID
ORDER BY timestamp DESC;`,
    `SELECT 
    timestamp,
    u.username as deleted_by,
    entity_type,
    entity_id,
    before_state,
    details
FROM audit_log
LEFT JOIN "user" u ON audit_log.user_id = u.id
WHERE action LIKE 'delete_%'
ORDER BY timestamp DESC
LIMIT 50;`,
    `SELECT 
    timestamp,
    action,
    entity_type,
    ip_address,
    details
FROM audit_log
WHERE user_id = 5  -- User ID
ORDER BY timestamp DESC
LIMIT 100;`,
    `DELETE FROM audit_log
WHERE timestamp < NOW() - INTERVAL '90 days'
  AND action NOT IN ('delete_user', 'delete_bag', 'delete_bill', 'role_change');`,
    `UPDATE audit_log
SET before_state = NULL, after_state = NULL
WHERE timestamp < NOW() - INTERVAL '30 days';`,
    `SELECT username, email, two_fa_enabled
FROM "user"
WHERE role = 'admin'
  AND (two_fa_enabled = false OR two_fa_enabled IS NULL);`,
    `UPDATE "user"
SET two_fa_enabled = false,
    totp_secret = NULL
WHERE username = 'locked_user';`,
    `SELECT 
    role,
    count(*) as total_users,
    count(*) FILTER (WHERE two_fa_enabled = true) as with_2fa,
    round(100.0 * count(*) FILTER (WHERE two_fa_enabled = true) / count(*), 1) as adoption_rate
FROM "user"
GROUP BY role
ORDER BY role;`,
    `SELECT 
    timestamp,
    details->>'username' as username,
    ip_address,
    count(*) OVER (PARTITION BY ip_address) as attempts_from_ip
FROM audit_log
WHERE action = '2fa_verify_failed'
  AND timestamp > NOW() - INTERVAL '1 hour'
ORDER BY timestamp DESC;`,
    `SELECT username, email, created_at
FROM "user"
WHERE role = 'admin'
  AND two_fa_enabled = false;`,
    `SELECT username, failed_login_attempts, last_failed_login
FROM "user"
WHERE failed_login_attempts > 0
ORDER BY failed_login_attempts DESC;`,
    `SELECT username, locked_until
FROM "user"
WHERE locked_until > NOW();`,
    `SELECT * FROM "user" WHERE id = 5;`,
    `SELECT * FROM audit_log WHERE user_id = 5;`,
  ];

  it.each(seedQueries.map((q) => [q.split('\n')[0].trim() + ' …', q]))('%s', async (_name, sql) => {
    await expect(db.query(sql)).resolves.toBeDefined();
  });

  it('the guide\'s failed-login query ends in ORDER BY count DESC, which PostgreSQL itself rejects', async () => {
    const seed = `SELECT 
    ip_address,
    details->>'username' as username,
    count(*) as attempts,
    min(timestamp) as first_attempt,
    max(timestamp) as last_attempt
FROM audit_log
WHERE action = 'login_failed'
  AND timestamp > NOW() - INTERVAL '1 hour'
GROUP BY ip_address, details->>'username'
HAVING count(*) > 5
ORDER BY count DESC;`;
    await expect(db.query(seed)).rejects.toThrow(/column "count" does not exist/);
    // The same query ordered by its own alias is what Warden runs.
    await expect(db.query(seed.replace('ORDER BY count DESC', 'ORDER BY attempts DESC'))).resolves.toBeDefined();
  });
});
