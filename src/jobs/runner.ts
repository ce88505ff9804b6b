import crypto from 'node:crypto';
import cron from 'node-cron';
import { finishJobRun, releaseJobLease, renewJobLease, takeJobLease } from '../db/job-runs.js';
import type { Services } from '../services/index.js';
import { InterruptedError } from '../services/lifecycle.js';

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

export type JobOutcome = 'ran' | 'skipped' | 'failed' | 'interrupted';

/** A lease outlives a dead replica by at most this long; a live one renews it every third of it. */
export const JOB_LEASE_SECONDS = 60;

/**
 * One tick of a job: takes the job's lease (a row in warden_job_run, so no connection is held
 * while the job runs and a terminated backend cannot take the process down), runs it,
 * records success or failure. A failure is logged and recorded; it never stops later ticks.
 * Returns 'skipped' when another replica holds the lease, 'interrupted' when Warden began
 * shutting down during the run (the lease is handed back, nothing recorded as failed).
 */
export async function runJobOnce(services: Services, job: JobSpec): Promise<JobOutcome> {
  const { db, logger } = services;
  const owner = crypto.randomBytes(8).toString('hex');
  try {
    if (!(await takeJobLease(db, job.name, owner, JOB_LEASE_SECONDS))) return 'skipped';
  } catch (e) {
    // The database is unreachable: nothing can be locked or recorded. Say so, and let the
    // job report it in its own way (the health job alerts on-call without the database).
    logger.error({ err: e, job: job.name }, 'scheduled job could not reach the database');
    await job.onDatabaseDown?.(services, e).catch((err) => logger.error({ err, job: job.name }, 'could not report the database outage'));
    return 'failed';
  }
  const renew = setInterval(() => {
    renewJobLease(db, job.name, owner, JOB_LEASE_SECONDS).then(
      (held) => held || logger.warn({ job: job.name }, 'scheduled job lost its lease (it ran longer than the lease and another replica took it)'),
      (err) => logger.warn({ err, job: job.name }, 'could not renew a scheduled job lease'),
    );
  }, (JOB_LEASE_SECONDS * 1000) / 3);
  renew.unref();
  try {
    await job.run(services);
    await finishJobRun(db, job.name, owner).catch((err) => logger.warn({ err, job: job.name }, 'could not record a job success'));
    return 'ran';
  } catch (e) {
    if (e instanceof InterruptedError || services.lifecycle?.stopping) {
      logger.info({ job: job.name }, 'scheduled job interrupted by shutdown; its lease is handed back');
      await releaseJobLease(db, job.name, owner).catch(() => {});
      return 'interrupted';
    }
    logger.error({ err: e, job: job.name }, 'scheduled job failed');
    await finishJobRun(db, job.name, owner, String((e as Error).message ?? e)).catch(() => {});
    return 'failed';
  } finally {
    clearInterval(renew);
  }
}

/** Schedules a job with node-cron; returns a stop function. */
export function scheduleJob(services: Services, job: JobSpec): () => Promise<void> {
  if (!cron.validate(job.cron)) throw new Error(`Job ${job.name}: "${job.cron}" is not a valid cron expression`);
  const task = cron.schedule(
    job.cron,
    () => {
      if (services.lifecycle?.stopping) return;
      return services.lifecycle.track(
        runJobOnce(services, job).catch((err) => {
          // runJobOnce handles its own failures; this only guards against a bug there.
          services.logger.error({ err, job: job.name }, 'scheduled job crashed');
        }),
      );
    },
    { name: job.name, noOverlap: true, timezone: services.config.WARDEN_TIMEZONE },
  );
  return async () => {
    await task.stop();
  };
}
