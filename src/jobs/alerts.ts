import type { Services } from '../services/index.js';
import type { JobStarter } from './index.js';
import { scheduleJob } from './runner.js';

/**
 * Alert delivery and detection (issue 7, part A). On every replica:
 * - outbox: the delivery loop (timer + LISTEN warden_outbox); rows are claimed with a lease
 *   so replicas never post the same one;
 * - lockouts: LISTEN warden_lockout + a catch-up scan at start (cursor) + a safety scan;
 *   replicas take turns on the cursor rows, each lockout is posted once;
 * - bursts: LISTEN warden_security (debounced) + a periodic scan, serialised the same way;
 * - storms: LISTEN warden_storm; storm messages owing an update are re-rendered (one at a time);
 * - digest: DIGEST_CRON through the job runner (one run per tick across replicas); it also
 *   prunes delivered outbox rows older than 30 days.
 */
export const startOutboxDelivery: JobStarter = (services: Services) => services.outbox.start();

export const startLockoutWatcher: JobStarter = (services: Services) => services.lockouts.start();

export const startBurstWatcher: JobStarter = (services: Services) => services.bursts.start();

/** Storm messages: re-rendered off the lockouts' transactions (LISTEN warden_storm + a safety pass). */
export const startStormRenderer: JobStarter = (services: Services) => services.storms.start();

export const startDigestJob: JobStarter = (services: Services) =>
  scheduleJob(services, {
    name: 'digest',
    cron: services.config.DIGEST_CRON,
    run: async (s) => {
      await s.digests.run();
      await s.outbox.prune(30);
    },
  });

// The outbox last: jobs stop in this order, so the watchers stop queueing before delivery stops.
export const alertJobStarters: JobStarter[] = [startLockoutWatcher, startBurstWatcher, startStormRenderer, startDigestJob, startOutboxDelivery];
