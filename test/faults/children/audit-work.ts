/**
 * A child process for the kill -9 fault tests: runs audit retention or an audit export against
 * the database and fake Slack named on the command line, as Warden would, until it is killed.
 * Usage: node --import tsx audit-work.ts retention|export DATABASE_URL [SLACK_API_URL ADMIN_USER_ID]
 */
import { webApi } from '@slack/bolt';
import { PgDb } from '../../../src/db/index.js';
import { silentLogger } from '../../../src/logger.js';
import { AuditExporter } from '../../../src/services/audit-export.js';
import { AuditRetention } from '../../../src/services/audit-retention.js';
import { AuditSearch } from '../../../src/services/audit-search.js';
import type { Actor } from '../../../src/services/identity.js';
import { Masker } from '../../../src/services/masking.js';
import { SlackChat } from '../../../src/slack/chat-port.js';

const [what, url, slackUrl, adminId] = process.argv.slice(2);
const db = PgDb.connect(url, 2);
const admin: Actor = {
  user: {
    id: Number(adminId ?? 0),
    username: 'kill.admin',
    email: 'kill.admin@example.com',
    role: 'admin',
    dispatch_area: null,
    two_fa_enabled: true,
    failed_login_attempts: 0,
    locked_until: null,
    last_failed_login: null,
    created_at: null,
    last_login: null,
  } as Actor['user'],
  slack: { userId: 'U_KILL', teamId: 'T_WARDEN', channelId: 'C_KILL' },
};

if (what === 'retention') {
  // Small batches: many commits, so the kill lands between and inside them.
  await new AuditRetention(db, { retentionDays: 90, snapshotDays: 30, batchSize: 100 }).run(null);
} else {
  const client = new webApi.WebClient('xoxb-kill', { slackApiUrl: slackUrl, retryConfig: { retries: 0 }, timeout: 60_000 });
  const exporter = new AuditExporter({
    db,
    chat: new SlackChat(client),
    search: new AuditSearch(db),
    masker: new Masker(true),
    logger: silentLogger(),
  });
  await exporter.export(admin, {}, { channel: 'C_KILL', unmasked: false, describe: 'everything' });
}
process.stdout.write('done\n');
await db.close();
