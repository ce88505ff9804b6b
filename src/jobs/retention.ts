import { retentionMessage } from '../slack/cards/audit-retention.js';
import type { Services } from '../services/index.js';
import { scheduleJob, type JobSpec } from './runner.js';

/**
 * Nightly audit retention (issue 6; DESIGN §4): the guide's policy — entries older than
 * AUDIT_RETENTION_DAYS deleted except critical actions, snapshots older than
 * AUDIT_SNAPSHOT_DAYS cleared — on RETENTION_CRON, once per tick across replicas.
 * What it did is posted to ALERTS_CHANNEL when set — queued in the alert outbox in the same
 * transaction as the run's `audit_retention` audit row.
 */
export const retentionJob: JobSpec = {
  name: 'audit-retention',
  cron: '30 3 * * *',
  run: async (services) => {
    const channel = services.config.ALERTS_CHANNEL;
    const report = await services.auditRetention.run(null, {
      // Queued in the alert outbox with the run's audit row: delivered even if Slack is down now.
      report: channel ? async (q, r) => void (await services.outbox.post(q, channel, retentionMessage(r, 'the nightly job'))) : undefined,
    });
    services.logger.info({ job: 'audit-retention', deleted: report.logs, snapshotsCleared: report.snapshots }, 'audit retention applied');
  },
};

/** Registered in src/jobs/index.ts. */
export function startRetentionJob(services: Services): () => Promise<void> {
  return scheduleJob(services, { ...retentionJob, cron: services.config.RETENTION_CRON });
}
