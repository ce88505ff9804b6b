import type { Services } from '../services/index.js';
import type { JobStarter } from './index.js';
import { scheduleJob, type JobSpec } from './runner.js';

/**
 * Expires 2FA recoveries still open after RECOVERY_TTL (default 24 h): marks them expired,
 * revokes their codes, audits `2fa_recovery_expired` and updates their approval cards.
 * Runs every five minutes, once across replicas; a recovery past its expiry is refused by
 * every action even before the job has run, so the job only tidies state and cards.
 */
export const TWOFA_EXPIRY_CRON = '*/5 * * * *';

export const twofaExpiryJob: JobSpec = {
  name: 'twofa-recovery-expiry',
  cron: TWOFA_EXPIRY_CRON,
  async run(services: Services) {
    const expired = await services.twofaRecovery.expireDue();
    if (expired.length) services.logger.info({ expired: expired.map((r) => r.id) }, '2fa recoveries expired');
  },
};

export const startTwofaJobs: JobStarter = (services) => scheduleJob(services, twofaExpiryJob);
