import type { HealthReport } from '../services/health.js';
import type { Services } from '../services/index.js';
import type { ObserveOutcome } from '../services/incidents.js';
import { reportDatabaseBack, reportDatabaseDown } from '../services/database-outage.js';
import { runJobOnce, scheduleJob, type JobSpec } from './runner.js';

/**
 * The health job (HEALTH_CRON, every minute by default), once per tick across replicas:
 * measure every component, store a pool sample for the `/health pool` trend, and move the
 * incident lifecycle on (open → update/thread → resolve), posting through the outbox.
 */
export async function healthTick(services: Services): Promise<{ report: HealthReport; outcome: ObserveOutcome }> {
  // Reaching this point means the database answered the job runner: close a reported outage.
  await reportDatabaseBack(services).catch((err) => services.logger.warn({ err }, 'could not report the database back'));
  const report = await services.health.evaluate();
  const db = report.components.find((c) => c.key === 'database');
  const f = db?.figures;
  if (f && typeof f.pool_percent === 'number' && typeof f.pool_in_use === 'number' && typeof f.max_connections === 'number') {
    await services.health
      .recordPoolSample({ inUse: f.pool_in_use, max: f.max_connections, percent: f.pool_percent, own: services.db.poolStats() })
      .catch((err) => services.logger.warn({ err }, 'could not store a pool sample'));
  }
  const outcome = await services.incidents.observe(report);
  return { report, outcome };
}

export const HEALTH_JOB_NAME = 'health';

export function healthJob(cron: string): JobSpec {
  return {
    name: HEALTH_JOB_NAME,
    cron,
    run: async (services) => {
      await healthTick(services);
    },
    onDatabaseDown: async (services, error) => {
      await reportDatabaseDown(services, error);
    },
  };
}

/** Registered in src/jobs/index.ts. */
export function startHealthJob(services: Services, opts: { checkNow?: boolean } = {}): () => Promise<void> {
  const job = healthJob(services.config.HEALTH_CRON);
  const stop = scheduleJob(services, job);
  // The first check runs at start, not at the next cron minute (up to a minute blind).
  const first =
    opts.checkNow === false
      ? Promise.resolve()
      : services.lifecycle.track(runJobOnce(services, job).then(
          () => undefined,
          (err: unknown) => services.logger.error({ err }, 'first health check failed'),
        ));
  return async () => {
    await stop();
    await first;
    await services.health.close();
  };
}
