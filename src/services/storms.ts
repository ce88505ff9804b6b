import type { Config } from '../config.js';
import type { Db, Queryable } from '../db/index.js';
import { ConflictError, NotFoundError } from '../errors.js';
import type { Logger } from '../logger.js';
import { stormMessage } from '../slack/cards/storms.js';
import type { Message } from '../ui.js';
import { requireAdmin, type Actor } from './identity.js';
import type { Masker } from './masking.js';
import type { Outbox } from './outbox.js';

/**
 * Alert storms (issue 12): credential stuffing locks dozens of accounts in a minute. Beyond
 * LOCKOUT_STORM_PER_MINUTE lockouts a minute, the security channel gets ONE summary message
 * per storm, updated in place as it grows — how many accounts, which, the top source IPs,
 * the failed-login bursts of the same minutes — instead of a card per lockout (Slack allows
 * about one message per second per channel; a hundred cards make the channel unreadable).
 *
 * - A storm opens when the lockouts of the last minute (those queued and those about to be)
 *   exceed the rate; it stays open while lockouts keep coming (QUIET_MINUTES without one
 *   closes it). Lockout cards still held back (LOCKOUT_STORM_HOLD_MS) when it opens are
 *   withdrawn and counted in it; cards already posted stay and are counted as such.
 * - The storm's lockouts are rows of warden_lockout_alert with storm_id set and no card
 *   (post_id 0) until an admin asks for the individual cards (posted in the storm's thread).
 * - "Unlock all listed" is an admin action with step-up (commands/storms.ts), audited per
 *   account through the same unlock as `/users unlock`.
 * Rendering lives in src/slack/cards/storms.ts; this module returns data.
 */

/** A storm with no new lockout for this long is over; the next lockouts are judged afresh. */
export const QUIET_MINUTES = 2;
/** The accounts a storm message lists by name (the rest are counted). */
const LISTED = 40;

export interface StormRow {
  id: number;
  channel: string;
  started_at: Date;
  last_at: Date;
  post_id: number;
  cards_requested_by: string | null;
  unlocked_by: string | null;
  unlocked_at: Date | null;
}

export interface StormData {
  storm: StormRow;
  threshold: number;
  total: number;
  stillLocked: number;
  /** Lockouts of the storm that had their own card posted before it was recognised. */
  carded: number;
  accounts: { username: string; unlocked: boolean }[];
  topIps: { ip: string; failures: number }[];
  bursts: { ip: string; count: number }[];
}

export interface StormDeps {
  config: Config;
  db: Db;
  outbox: Outbox;
  masker: Masker;
  logger: Logger;
}

export class AlertStorms {
  constructor(private readonly deps: StormDeps) {}

  get perMinute(): number {
    return this.deps.config.LOCKOUT_STORM_PER_MINUTE;
  }

  /** The channel's open storm, locked for the caller's transaction; null when none is open. */
  async open(q: Queryable, channel: string): Promise<StormRow | null> {
    const { rows } = await q.query<StormRow>(
      `SELECT * FROM warden_alert_storm
        WHERE channel = $1 AND last_at > now() - make_interval(mins => $2::int)
        ORDER BY id DESC LIMIT 1 FOR UPDATE`,
      [channel, QUIET_MINUTES],
    );
    return rows[0] ?? null;
  }

  /** Lockout alerts queued in the last minute (any channel: lockouts have one). */
  async lockoutsLastMinute(q: Queryable): Promise<number> {
    const { rows } = await q.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM warden_lockout_alert WHERE created_at > now() - interval '1 minute'`,
    );
    return rows[0].n;
  }

  /**
   * Puts a new lockout alert into the channel's storm, opening it if needed (with the
   * lockouts of the last minute, withdrawing their held cards), and queues the storm
   * message: posted the first time, updated after.
   */
  async addLockout(q: Queryable, channel: string, alertId: number): Promise<StormRow> {
    let storm = await this.open(q, channel);
    if (!storm) {
      const { rows } = await q.query<StormRow>(`INSERT INTO warden_alert_storm (channel, post_id) VALUES ($1, 0) RETURNING *`, [channel]);
      storm = rows[0];
      const recent = await q.query<{ id: number; post_id: number }>(
        `UPDATE warden_lockout_alert SET storm_id = $1
          WHERE storm_id IS NULL AND id <> $2 AND created_at > now() - interval '1 minute' RETURNING id, post_id`,
        [storm.id, alertId],
      );
      const withdrawn = await this.deps.outbox.withdrawHeld(q, recent.rows.map((r) => r.post_id).filter((id) => id > 0));
      if (withdrawn.length) {
        await q.query(`UPDATE warden_lockout_alert SET post_id = 0 WHERE storm_id = $1 AND post_id = ANY($2::bigint[])`, [storm.id, withdrawn]);
      }
      this.deps.logger.warn({ storm: storm.id, joined: recent.rows.length + 1, withdrawnCards: withdrawn.length }, 'lockout storm: grouping alerts into one message');
    }
    await q.query(`UPDATE warden_lockout_alert SET storm_id = $1, post_id = 0 WHERE id = $2`, [storm.id, alertId]);
    await q.query(`UPDATE warden_alert_storm SET last_at = now() WHERE id = $1`, [storm.id]);
    return this.queueMessage(q, storm.id);
  }

  /** A burst alert that opens during a storm joins it instead of posting its own message. */
  async addBurst(q: Queryable, channel: string): Promise<StormRow | null> {
    const storm = await this.open(q, channel);
    if (!storm) return null;
    await q.query(`UPDATE warden_alert_storm SET last_at = now() WHERE id = $1`, [storm.id]);
    return storm;
  }

  /** Re-renders the storm message (posted once, then updated in place). */
  async queueMessage(q: Queryable, stormId: number): Promise<StormRow> {
    const data = await this.data(q, stormId);
    const message = this.render(data);
    if (data.storm.post_id === 0) {
      const postId = await this.deps.outbox.post(q, data.storm.channel, message, { dedupeKey: `storm:${stormId}` });
      await q.query(`UPDATE warden_alert_storm SET post_id = $2 WHERE id = $1`, [stormId, postId]);
      return { ...data.storm, post_id: postId };
    }
    await this.deps.outbox.update(q, data.storm.post_id, message);
    return data.storm;
  }

  render(data: StormData): Message {
    return stormMessage(data, this.deps.masker);
  }

  async get(stormId: number, q: Queryable = this.deps.db): Promise<StormRow> {
    const { rows } = await q.query<StormRow>('SELECT * FROM warden_alert_storm WHERE id = $1', [stormId]);
    if (!rows[0]) throw new NotFoundError('That storm summary no longer exists.');
    return rows[0];
  }

  async data(q: Queryable, stormId: number): Promise<StormData> {
    const storm = await this.get(stormId, q);
    const counts = await q.query<{ total: number; locked: number; carded: number }>(
      `SELECT count(*)::int AS total,
              count(*) FILTER (WHERE a.unlocked_at IS NULL)::int AS locked,
              count(*) FILTER (WHERE a.post_id <> 0 AND o.thread_of_id IS NULL)::int AS carded
         FROM warden_lockout_alert a LEFT JOIN warden_outbox o ON o.id = a.post_id
        WHERE a.storm_id = $1`,
      [stormId],
    );
    const accounts = await q.query<{ username: string; unlocked: boolean }>(
      `SELECT username, unlocked_at IS NOT NULL AS unlocked FROM warden_lockout_alert WHERE storm_id = $1 ORDER BY id LIMIT ${LISTED}`,
      [stormId],
    );
    // Where the failed logins behind the storm's lockouts came from (the hour before it began on).
    const ips = await q.query<{ ip: string; failures: number }>(
      `SELECT a.ip_address AS ip, count(*)::int AS failures
         FROM audit_log a
        WHERE a.action = 'login_failed' AND a."timestamp" > $2::timestamptz - interval '1 hour' AND a.ip_address IS NOT NULL
          AND a.details->>'username' IN (SELECT username FROM warden_lockout_alert WHERE storm_id = $1)
        GROUP BY a.ip_address ORDER BY failures DESC, ip LIMIT 5`,
      [stormId, storm.started_at],
    );
    const bursts = await q.query<{ ip: string; count: number }>(
      `SELECT ip_address AS ip, count FROM warden_burst_alert WHERE storm_id = $1 ORDER BY count DESC, ip_address LIMIT 5`,
      [stormId],
    );
    return {
      storm,
      threshold: this.perMinute,
      total: counts.rows[0].total,
      stillLocked: counts.rows[0].locked,
      carded: counts.rows[0].carded,
      accounts: accounts.rows,
      topIps: ips.rows,
      bursts: bursts.rows,
    };
  }

  /** The storm's lockouts still locked (for "Unlock all listed"). */
  async lockedAlerts(stormId: number): Promise<{ id: number; username: string }[]> {
    const { rows } = await this.deps.db.query<{ id: number; username: string }>(
      `SELECT id, username FROM warden_lockout_alert WHERE storm_id = $1 AND unlocked_at IS NULL AND user_id IS NOT NULL ORDER BY id`,
      [stormId],
    );
    return rows;
  }

  /**
   * Records who unlocked the storm's accounts (the unlocks themselves are done and audited
   * by the unlock service) and queues the storm message update, plus the update of any
   * individual card of those lockouts (`card` renders it).
   */
  async markUnlocked(actor: Actor, stormId: number, alertIds: number[], card: (q: Queryable, alertId: number) => Promise<Message>): Promise<void> {
    await this.deps.db.tx(async (q) => {
      const { rows } = await q.query<{ id: number; post_id: number }>(
        `UPDATE warden_lockout_alert SET unlocked_by = $3, unlocked_at = now()
          WHERE storm_id = $1 AND id = ANY($2::bigint[]) AND unlocked_at IS NULL RETURNING id, post_id`,
        [stormId, alertIds, actor.user.username],
      );
      for (const r of rows) {
        const live = r.post_id ? await q.query(`SELECT 1 FROM warden_outbox WHERE id = $1 AND status <> 'superseded'`, [r.post_id]) : { rows: [] };
        if (live.rows.length) await this.deps.outbox.update(q, r.post_id, await card(q, r.id));
      }
      await q.query(`UPDATE warden_alert_storm SET unlocked_by = $2, unlocked_at = now() WHERE id = $1`, [stormId, actor.user.username]);
      await this.queueMessage(q, stormId);
    });
  }

  /**
   * Individual cards on demand: each lockout of the storm without a card gets one, posted
   * in the storm message's thread (paced like every post), so the channel stays readable.
   * `card` renders a lockout alert's card (LockoutAlerts owns it).
   */
  async postCards(actor: Actor, stormId: number, card: (q: Queryable, alertId: number) => Promise<Message>): Promise<number> {
    requireAdmin(actor, 'post the individual lockout cards');
    return this.deps.db.tx(async (q) => {
      const storm = (await q.query<StormRow>('SELECT * FROM warden_alert_storm WHERE id = $1 FOR UPDATE', [stormId])).rows[0];
      if (!storm) throw new NotFoundError('That storm summary no longer exists.');
      if (!storm.post_id) throw new ConflictError('The storm summary has not been posted yet; try again in a moment.');
      // The summary says so first: in the channel's lane it goes before the (paced) cards.
      await q.query(`UPDATE warden_alert_storm SET cards_requested_by = coalesce(cards_requested_by, $2) WHERE id = $1`, [stormId, actor.user.username]);
      await this.queueMessage(q, stormId);
      const { rows } = await q.query<{ id: number }>(
        `SELECT id FROM warden_lockout_alert WHERE storm_id = $1 AND post_id = 0 ORDER BY id`,
        [stormId],
      );
      for (const r of rows) {
        const postId = await this.deps.outbox.post(q, storm.channel, await card(q, r.id), {
          threadOfId: storm.post_id,
          dedupeKey: `storm:${stormId}:card:${r.id}`,
        });
        await q.query('UPDATE warden_lockout_alert SET post_id = $2 WHERE id = $1', [r.id, postId]);
      }
      return rows.length;
    });
  }
}
