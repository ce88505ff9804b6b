import type { Config } from '../config.js';
import type { Db } from '../db/index.js';
import type { Logger } from '../logger.js';
import { digestMessage } from '../slack/cards/digests.js';
import type { Masker } from './masking.js';
import type { Outbox } from './outbox.js';

/**
 * The daily security digest (issue 7, DIGEST_CRON): admins without 2FA, locked accounts,
 * promotion requests and 2FA recoveries waiting more than a day. Posted only when there is
 * something to say, to ALERTS_CHANNEL (falling back to SECURITY_CHANNEL). It is a scheduled
 * summary of standing work, not an event: it goes with the other scheduled reports (health,
 * retention — as .env.example documents ALERTS_CHANNEL), keeping SECURITY_CHANNEL for events
 * that need an answer now (lockouts, bursts, spikes).
 *
 * Accounts "disabled" by /users edit (locked until the year 9999) are not lockouts and are
 * left out of the locked list.
 */

const LIST_LIMIT = 15;
const DISABLED_FROM = '9000-01-01T00:00:00Z';

export interface DigestContent {
  adminsWithout2fa: { username: string; last_login: Date | null }[];
  locked: { username: string; locked_until: Date; failed_login_attempts: number | null }[];
  promotions: { id: number; username: string; requested_at: Date }[];
  recoveries: { id: number; target_username: string; status: string; created_at: Date }[];
  /** Totals (the lists are cut at LIST_LIMIT). */
  totals: { adminsWithout2fa: number; locked: number; promotions: number; recoveries: number };
}

export interface DigestDeps {
  config: Config;
  db: Db;
  outbox: Outbox;
  masker: Masker;
  logger: Logger;
}

export class Digests {
  constructor(private readonly deps: DigestDeps) {}

  get channel(): string | undefined {
    return this.deps.config.ALERTS_CHANNEL ?? this.deps.config.SECURITY_CHANNEL;
  }

  async collect(): Promise<DigestContent> {
    const { db } = this.deps;
    const admins = await db.query<{ username: string; last_login: Date | null; total: number }>(
      `SELECT username, last_login, count(*) OVER ()::int AS total FROM "user"
        WHERE role = 'admin' AND two_fa_enabled IS NOT TRUE
          AND (locked_until IS NULL OR locked_until < $1::timestamptz)
        ORDER BY username LIMIT ${LIST_LIMIT}`,
      [DISABLED_FROM],
    );
    const locked = await db.query<{ username: string; locked_until: Date; failed_login_attempts: number | null; total: number }>(
      `SELECT username, locked_until, failed_login_attempts, count(*) OVER ()::int AS total FROM "user"
        WHERE locked_until > now() AND locked_until < $1::timestamptz
        ORDER BY locked_until DESC LIMIT ${LIST_LIMIT}`,
      [DISABLED_FROM],
    );
    const promotions = await db.query<{ id: number; username: string; requested_at: Date; total: number }>(
      `SELECT p.id, coalesce(u.username, '?') AS username, p.requested_at, count(*) OVER ()::int AS total
         FROM promotion_request p LEFT JOIN "user" u ON u.id = p.user_id
        WHERE p.status = 'pending' AND p.requested_at < now() - interval '1 day'
        ORDER BY p.requested_at LIMIT ${LIST_LIMIT}`,
    );
    let recoveries: { id: number; target_username: string; status: string; created_at: Date; total: number }[] = [];
    const exists = await db.query<{ t: string | null }>(`SELECT to_regclass('warden_2fa_recovery')::text AS t`);
    if (exists.rows[0]?.t) {
      recoveries = (
        await db.query<{ id: number; target_username: string; status: string; created_at: Date; total: number }>(
          `SELECT id, target_username, status, created_at, count(*) OVER ()::int AS total FROM warden_2fa_recovery
            WHERE status IN ('verifying', 'pending') AND created_at < now() - interval '1 day'
            ORDER BY created_at LIMIT ${LIST_LIMIT}`,
        )
      ).rows;
    }
    return {
      adminsWithout2fa: admins.rows,
      locked: locked.rows,
      promotions: promotions.rows,
      recoveries,
      totals: {
        adminsWithout2fa: admins.rows[0]?.total ?? 0,
        locked: locked.rows[0]?.total ?? 0,
        promotions: promotions.rows[0]?.total ?? 0,
        recoveries: recoveries[0]?.total ?? 0,
      },
    };
  }

  /**
   * Collects and, when there is something to say, queues the digest. `tick` names the
   * scheduled run (its dedupe key), so a tick that runs twice still posts once.
   * Returns the outbox id, or null when nothing was posted.
   */
  async run(tick: Date = new Date()): Promise<number | null> {
    const channel = this.channel;
    if (!channel) {
      this.deps.logger.warn('digest skipped: neither ALERTS_CHANNEL nor SECURITY_CHANNEL is set');
      return null;
    }
    const message = digestMessage(await this.collect(), tick);
    if (!message) {
      this.deps.logger.info('digest: nothing to report');
      return null;
    }
    const key = `digest:${tick.toISOString().slice(0, 16)}`;
    return this.deps.db.tx((q) => this.deps.outbox.post(q, channel, message, { dedupeKey: key }));
  }
}
