import crypto from 'node:crypto';
import cron from 'node-cron';
import type { Services } from '../services/index.js';

/**
 * Runs scheduled jobs once per tick across replicas, and records every run in
 * warden_job_run so that a job that silently stopped (seed 000: "scheduler not
 * executing") shows up in /health.
 */
export interface JobSpec {
  /** Stable name: the lock key and the row in warden_job_run. */
  name: string;
  /** node-cron expression (seconds field optional). */
  cron: string;
  run(services: Services): Promise<void>;
  /** Called when the database cannot be reached to lock or record the run (the job does not run). */
  onDatabaseDown?(services: Services, error: unknown): Promise<void>;
}

export type JobOutcome = 'ran' | 'skipped' | 'failed';

function lockKey(name: string): number {
  // pg advisory locks take a bigint; 31 bits of a hash keep it a plain int.
  return crypto.createHash('sha256').update(`warden-job:${name}`).digest().readInt32BE(0);
}

/**
 * One tick of a job: takes the job's lock (PostgreSQL advisory lock when on pg, a store
 * lock otherwise), runs it, records success or failure. A failure is logged and recorded;
 * it never stops later ticks. Returns 'skipped' when another replica holds the lock.
 */
export async function runJobOnce(services: Services, job: JobSpec): Promise<JobOutcome> {
  const { db, store, logger } = services;
  let release: (() => Promise<void>) | null = null;
  try {
    release = await acquire(services, job.name);
    if (!release) return 'skipped';
    await db.query(
      `INSERT INTO warden_job_run (job, last_started, runs) VALUES ($1, now(), 1)
       ON CONFLICT (job) DO UPDATE SET last_started = now(), runs = warden_job_run.runs + 1`,
      [job.name],
    );
  } catch (e) {
    // The database is unreachable: nothing can be locked or recorded. Say so, and let the
    // job report it in its own way (the health job alerts on-call without the database).
    logger.error({ err: e, job: job.name }, 'scheduled job could not reach the database');
    await release?.().catch(() => {});
    await job.onDatabaseDown?.(services, e).catch((err) => logger.error({ err, job: job.name }, 'could not report the database outage'));
    return 'failed';
  }
  try {
    try {
      await job.run(services);
      await db.query('UPDATE warden_job_run SET last_success = now() WHERE job = $1', [job.name]);
      return 'ran';
    } catch (e) {
      logger.error({ err: e, job: job.name }, 'scheduled job failed');
      await db
        .query('UPDATE warden_job_run SET last_error = $2, last_error_at = now(), failures = failures + 1 WHERE job = $1', [
          job.name,
          String((e as Error).message ?? e).slice(0, 500),
        ])
        .catch(() => {});
      return 'failed';
    }
  } finally {
    await release!();
  }

  async function acquire(s: Services, name: string): Promise<(() => Promise<void>) | null> {
    if (s.db.kind === 'pg') {
      // A session-level advisory lock on a dedicated pooled connection, released after the run.
      const pool = (s.db as import('../db/index.js').PgDb).pool;
      const client = await pool.connect();
      let rows;
      try {
        ({ rows } = await client.query('SELECT pg_try_advisory_lock($1) AS ok', [lockKey(name)]));
      } catch (e) {
        client.release(e as Error);
        throw e;
      }
      if (!rows[0].ok) {
        client.release();
        return null;
      }
      return async () => {
        await client.query('SELECT pg_advisory_unlock($1)', [lockKey(name)]).catch(() => {});
        client.release();
      };
    }
    const token = crypto.randomBytes(8).toString('hex');
    const ok = await store.setIfAbsent(`job-lock:${name}`, token, 300);
    if (!ok) return null;
    return async () => {
      if ((await store.get(`job-lock:${name}`)) === token) await store.del(`job-lock:${name}`);
    };
  }
}

/** Schedules a job with node-cron; returns a stop function. */
export function scheduleJob(services: Services, job: JobSpec): () => Promise<void> {
  if (!cron.validate(job.cron)) throw new Error(`Job ${job.name}: "${job.cron}" is not a valid cron expression`);
  const task = cron.schedule(
    job.cron,
    () =>
      runJobOnce(services, job).catch((err) => {
        // runJobOnce handles its own failures; this only guards against a bug there.
        services.logger.error({ err, job: job.name }, 'scheduled job crashed');
      }),
    { name: job.name, noOverlap: true, timezone: services.config.WARDEN_TIMEZONE },
  );
  return async () => {
    await task.stop();
  };
}

/** Last runs of every job, for /health. */
export async function jobRuns(services: Services) {
  const { rows } = await services.db.query<{
    job: string;
    last_started: Date | null;
    last_success: Date | null;
    last_error: string | null;
    last_error_at: Date | null;
    runs: number;
    failures: number;
  }>('SELECT job, last_started, last_success, last_error, last_error_at, runs, failures FROM warden_job_run ORDER BY job');
  return rows;
}
