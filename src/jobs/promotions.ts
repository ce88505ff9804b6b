import type { Services } from '../services/index.js';
import { scheduleJob, type JobSpec } from './runner.js';

/**
 * Promotion review jobs (issue 4), each a thin call into PromotionService, run once per
 * tick across replicas by the job runner:
 * - poll: posts a review card for requests the web application inserted into
 *   promotion_request itself (cursor in warden_cursor), retries cards whose post failed, and
 *   re-renders cards whose request was decided elsewhere (the web dashboard);
 * - expiry: expires pending requests older than PROMOTION_TTL (card updated, requester told).
 */
export const promotionPollJob: JobSpec = {
  name: 'promotions-poll',
  cron: '*/15 * * * * *',
  run: async (services) => {
    const r = await services.promotions.pollNew();
    if (r.posted || r.retried || r.synced) services.logger.info({ job: 'promotions-poll', ...r }, 'promotion cards posted');
  },
};

export const promotionExpiryJob: JobSpec = {
  name: 'promotions-expiry',
  cron: '0 * * * * *',
  run: async (services) => {
    const n = await services.promotions.expireDue();
    if (n) services.logger.info({ job: 'promotions-expiry', expired: n }, 'promotion requests expired');
  },
};

/** Registered in src/jobs/index.ts. Poll cadence: PROMOTION_POLL_CRON; expiry every minute. */
export function startPromotionJobs(services: Services): () => Promise<void> {
  const stops = [
    scheduleJob(services, { ...promotionPollJob, cron: services.config.PROMOTION_POLL_CRON }),
    scheduleJob(services, promotionExpiryJob),
  ];
  return async () => {
    for (const stop of stops) await stop();
  };
}
