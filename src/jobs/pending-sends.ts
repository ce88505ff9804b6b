import type { Services } from '../services/index.js';
import type { JobStarter } from './index.js';
import { scheduleJob, type JobSpec } from './runner.js';

/**
 * Reports codes and links whose send was abandoned (the process died or hung between writing
 * the row and marking it): each is marked interrupted, its secret revoked and audited, and the
 * admin who asked gets a DM (src/services/pending-sends.ts). Every minute, once across replicas.
 */
export const pendingSendsJob: JobSpec = {
  name: 'pending-sends',
  cron: '* * * * *',
  async run(services: Services) {
    await services.pendingSends.sweep();
  },
};

export const startPendingSendsJob: JobStarter = (services) => scheduleJob(services, pendingSendsJob);
