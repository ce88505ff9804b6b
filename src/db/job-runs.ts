import type { Queryable } from './index.js';

/**
 * warden_job_run: one row per scheduled job — its lease (which replica runs it now) and its
 * run history (for /health). Below both the job runner and the health service, so that
 * neither imports the other.
 */
export interface JobRunRow {
  job: string;
  last_started: Date | null;
  last_success: Date | null;
  last_error: string | null;
  last_error_at: Date | null;
  runs: number;
  failures: number;
}

/** Last runs of every job, for /health. */
export async function jobRuns(db: Queryable): Promise<JobRunRow[]> {
  const { rows } = await db.query<JobRunRow>(
    'SELECT job, last_started, last_success, last_error, last_error_at, runs, failures FROM warden_job_run ORDER BY job',
  );
  return rows;
}

/**
 * Takes the job's lease for ttlSeconds and records the start, in one statement. False when
 * another replica holds an unexpired lease. No connection is held while the job runs; a
 * replica that dies mid-run blocks the job at most until its lease expires.
 */
export async function takeJobLease(db: Queryable, job: string, owner: string, ttlSeconds: number): Promise<boolean> {
  const { rows } = await db.query(
    `INSERT INTO warden_job_run AS r (job, last_started, runs, lease_owner, lease_until)
     VALUES ($1, now(), 1, $2, now() + make_interval(secs => $3))
     ON CONFLICT (job) DO UPDATE
        SET last_started = now(), runs = r.runs + 1, lease_owner = $2, lease_until = now() + make_interval(secs => $3)
      WHERE r.lease_until IS NULL OR r.lease_until < now()
     RETURNING job`,
    [job, owner, ttlSeconds],
  );
  return rows.length > 0;
}

/** Extends a held lease; false when it was lost (expired and taken by another replica). */
export async function renewJobLease(db: Queryable, job: string, owner: string, ttlSeconds: number): Promise<boolean> {
  const r = await db.query(
    `UPDATE warden_job_run SET lease_until = now() + make_interval(secs => $3) WHERE job = $1 AND lease_owner = $2`,
    [job, owner, ttlSeconds],
  );
  return r.rowCount > 0;
}

/** Ends a run: records its outcome and releases the lease (if still ours). */
export async function finishJobRun(db: Queryable, job: string, owner: string, error?: string): Promise<void> {
  await db.query(
    error === undefined
      ? `UPDATE warden_job_run SET last_success = now(),
                lease_owner = CASE WHEN lease_owner = $2 THEN NULL ELSE lease_owner END,
                lease_until = CASE WHEN lease_owner = $2 THEN NULL ELSE lease_until END
          WHERE job = $1`
      : `UPDATE warden_job_run SET last_error = $3, last_error_at = now(), failures = failures + 1,
                lease_owner = CASE WHEN lease_owner = $2 THEN NULL ELSE lease_owner END,
                lease_until = CASE WHEN lease_owner = $2 THEN NULL ELSE lease_until END
          WHERE job = $1`,
    error === undefined ? [job, owner] : [job, owner, error.slice(0, 500)],
  );
}

/** Releases a lease without recording an outcome (the run was handed back at shutdown). */
export async function releaseJobLease(db: Queryable, job: string, owner: string): Promise<void> {
  await db.query(`UPDATE warden_job_run SET lease_owner = NULL, lease_until = NULL WHERE job = $1 AND lease_owner = $2`, [job, owner]);
}
