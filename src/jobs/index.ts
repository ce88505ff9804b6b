import type { Services } from '../services/index.js';
import { startRetentionJob } from './retention.js';
import { alertJobStarters } from './alerts.js';
import { startHealthJob } from './health.js';
import { startPromotionJobs } from './promotions.js';
import { startTwofaJobs } from './twofa.js';
import { startPendingSendsJob } from './pending-sends.js';

/**
 * Scheduled jobs (node-cron), each a thin call into a service, run once per tick across
 * replicas. Returns a function that stops them. Jobs are added by the features that own them.
 */
export type JobStarter = (services: Services) => Promise<() => Promise<void>> | (() => Promise<void>);

export const jobStarters: JobStarter[] = [...alertJobStarters, startPromotionJobs, startTwofaJobs, startPendingSendsJob, startHealthJob, startRetentionJob];

export async function startJobs(services: Services): Promise<() => Promise<void>> {
  const stops: (() => Promise<void>)[] = [];
  for (const start of jobStarters) stops.push(await start(services));
  return async () => {
    for (const stop of stops) await stop();
  };
}
