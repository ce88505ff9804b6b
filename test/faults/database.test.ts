import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgDb } from '../../src/db/index.js';
import { migrate } from '../../src/db/migrate.js';
import { healthJob } from '../../src/jobs/health.js';
import { runJobOnce, type JobSpec } from '../../src/jobs/runner.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import { MemoryStore } from '../../src/store/index.js';
import { createTestDb } from '../helpers/db.js';
import { PrivatePostgres } from '../helpers/private-pg.js';
import { realServers, servicesOn, watchProcessDeaths } from './support.js';

/**
 * Issue 12: "Terminating the PostgreSQL backend that holds a scheduled job's advisory lock kills
 * the process every time; pg_ctl restart -m fast during a health check crashed it."
 */
describe.runIf(realServers)('database faults never kill the process', () => {
  let fake: FakeSlack;
  beforeAll(async () => {
    fake = await new FakeSlack().start();
  });
  afterAll(async () => {
    await fake?.stop();
  });

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it("terminating Warden's backends during a job fails that run cleanly; the next run reconnects", async () => {
    const { db, url, cleanup } = await createTestDb();
    const deaths = watchProcessDeaths();
    try {
      const services = servicesOn(db, new MemoryStore(), fake);
      const dbName = new URL(url!).pathname.slice(1);
      let inside!: () => void;
      const reached = new Promise<void>((r) => (inside = r));
      const job: JobSpec = {
        name: 'fault-terminate',
        cron: '* * * * *',
        run: async (s) => {
          // A transaction that is idle between two statements when its backend is terminated.
          await s.db.tx(async (q) => {
            await q.query('SELECT 1');
            inside();
            await sleep(700);
            await q.query('SELECT 2');
          });
        },
      };
      const run = runJobOnce(services, job);
      await reached;
      const killer = new pg.Client({ connectionString: process.env.DATABASE_URL });
      await killer.connect();
      // Only this test's own database: the shared cluster's other databases are other tests'.
      const killed = await killer.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
        [dbName],
      );
      await killer.end();
      expect(killed.rowCount).toBeGreaterThan(0);
      expect(await run).toBe('failed');
      await sleep(200);
      expect(deaths.errors).toEqual([]);

      // The next tick gets a fresh connection, runs, and the failure was recorded.
      const ok: JobSpec = { ...job, run: async (s) => void (await s.db.tx((q) => q.query('SELECT 1'))) };
      expect(await runJobOnce(services, ok)).toBe('ran');
      const row = (await db.query<any>(`SELECT runs, failures, last_error, lease_owner FROM warden_job_run WHERE job = 'fault-terminate'`)).rows[0];
      expect(row).toMatchObject({ runs: 2, failures: 1, lease_owner: null });
      expect(row.last_error).toMatch(/terminat/i);
    } finally {
      deaths.stop();
      await cleanup();
    }
  });

  it('a running job holds no database connection (its lease is a row)', async () => {
    const { db, cleanup } = await createTestDb();
    try {
      const services = servicesOn(db, new MemoryStore(), fake);
      let during = -1;
      const job: JobSpec = {
        name: 'fault-lease',
        cron: '* * * * *',
        run: async () => {
          during = (db as PgDb).pool.totalCount - (db as PgDb).pool.idleCount;
          // A second replica's tick while this one runs is skipped.
          expect(await runJobOnce(services, job)).toBe('skipped');
        },
      };
      expect(await runJobOnce(services, job)).toBe('ran');
      expect(during).toBe(0);
    } finally {
      await cleanup();
    }
  });

  it('a PostgreSQL restart during health checks and a LISTEN: process alive, checks resume, LISTEN reconnects', async () => {
    const server = await PrivatePostgres.start();
    const deaths = watchProcessDeaths();
    const db = PgDb.connect(server.url, 5);
    try {
      await migrate(db);
      const services = servicesOn(db, new MemoryStore(), fake);
      const heard: string[] = [];
      // onLost is told when the connection drops, before the reconnect's '' (caches stop trusting at once).
      await db.listen('warden_fault_test', (p) => heard.push(p), { onLost: () => heard.push('<lost>') });
      const job = healthJob('* * * * *');
      expect(await runJobOnce(services, job)).toBe('ran');

      // A transaction open across the restart, and health checks running through it.
      const open = db.tx(async (q) => {
        await q.query('SELECT 1');
        await sleep(1500);
        await q.query('SELECT 2');
      });
      const during = (async () => {
        const outcomes: string[] = [];
        for (let i = 0; i < 4; i++) {
          outcomes.push(await runJobOnce(services, job));
          await sleep(200);
        }
        return outcomes;
      })();
      await sleep(300);
      server.restart();
      await expect(open).rejects.toThrow();
      await during;

      // Back: the next check runs, and LISTEN delivers again.
      await expect.poll(() => runJobOnce(services, job), { timeout: 15_000, interval: 500 }).toBe('ran');
      await expect.poll(() => heard.includes(''), { timeout: 15_000 }).toBe(true);
      expect(heard.indexOf('<lost>')).toBeGreaterThanOrEqual(0);
      expect(heard.indexOf('<lost>')).toBeLessThan(heard.indexOf(''));
      await db.query(`SELECT pg_notify('warden_fault_test', 'after')`);
      await expect.poll(() => heard, { timeout: 5000 }).toContain('after');
      expect(deaths.errors).toEqual([]);
    } finally {
      deaths.stop();
      await db.close().catch(() => {});
      await server.destroy();
    }
  });
});
