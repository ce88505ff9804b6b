import type { Config } from '../config.js';
import type { Db, Queryable } from '../db/index.js';
import { ConflictError, NotFoundError } from '../errors.js';
import type { Logger } from '../logger.js';
import { stormMessage } from '../slack/cards/storms.js';
import type { Message } from '../ui.js';
import { requireAdmin, type Actor } from './identity.js';
import type { Masker } from './masking.js';
import type { Outbox } from './outbox.js';
import { SingleFlight } from './single-flight.js';
import { startWatcher } from './watcher.js';

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
 * - Failed-login bursts join the channel's open storm, and more than LOCKOUT_STORM_PER_MINUTE
 *   IPs bursting in the same minute open one: one summary instead of a message per IP.
 * - "Unlock all listed" is an admin action with step-up (commands/storms.ts), audited per
 *   account through the same unlock as `/users unlock`; each account is marked in the storm in
 *   its unlock's transaction, so a stop half-way leaves nothing marked wrong and a second click
 *   finishes the rest.
 * - The message is posted once in the transaction that opens the storm (first message fast);
 *   after that, a change only bumps `changes` (and NOTIFYs warden_storm): the message is
 *   re-rendered off the lockout's transaction, one render in flight per process, each render
 *   showing everything committed before it (the latest state wins; the outbox sends only the
 *   newest waiting update, at the channel's pace). `rendered < changes` marks a storm that owes
 *   an update: whoever renders next catches up, after a crash too.
 * Rendering lives in src/slack/cards/storms.ts; this module returns data.
 */

/** A storm with no new lockout for this long is over; the next lockouts are judged afresh. */
export const QUIET_MINUTES = 2;
/** The accounts a storm message lists by name (the rest are counted). */
const LISTED = 40;
/** The storm renderer's safety pass (a lost NOTIFY; a replica that died between a change and its render). */
const SAFETY_SCAN_MS = 30_000;
/** Storm renders started by changes are at least this far apart (the last change is always rendered). */
const RENDER_EVERY_MS = 250;

export interface StormRow {
  id: number;
  channel: string;
  started_at: Date;
  last_at: Date;
  post_id: number;
  cards_requested_by: string | null;
  unlocked_by: string | null;
  unlocked_at: Date | null;
  changes: number;
  rendered: number;
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
  /** Every failed-login burst of the storm: how many IPs, how many failed logins. */
  burstTotal: { ips: number; failures: number };
}

export interface StormDeps {
  config: Config;
  db: Db;
  outbox: Outbox;
  masker: Masker;
  logger: Logger;
}

export class AlertStorms {
  private readonly flight = new SingleFlight(() => this.renderPass());
  private lastPassAt = 0;
  private trailing: NodeJS.Timeout | null = null;

  constructor(private readonly deps: StormDeps) {}

  /** LISTEN warden_storm + a render now + a safety pass (a lost NOTIFY, a crash). Returns stop(). */
  async start(): Promise<() => Promise<void>> {
    const stop = await startWatcher({
      db: this.deps.db,
      channel: 'warden_storm',
      name: 'storms',
      logger: this.deps.logger,
      scan: async () => this.renderSoon(),
      idle: () => this.flight.idle(),
      safetyScanMs: SAFETY_SCAN_MS,
    });
    return async () => {
      if (this.trailing) clearTimeout(this.trailing);
      this.trailing = null;
      await stop();
    };
  }

  /**
   * Re-renders every storm message that owes an update, now (single-flight: a call during a
   * pass gets one more pass after it). Returns how many updates were queued.
   */
  renderOwed(): Promise<number> {
    return this.flight.run();
  }

  /**
   * A render pass soon: now if none started in the last RENDER_EVERY_MS, else one when that time
   * is up (one waiting at most). During a wave each lockout asks for one; rendering for every
   * lockout would cost the scan as much again as the lockouts themselves, and the outbox sends
   * at most one update a second per message anyway (OUTBOX_PACE_MS), the newest waiting one.
   */
  renderSoon(): void {
    const wait = this.lastPassAt + RENDER_EVERY_MS - Date.now();
    const run = () => {
      this.renderOwed().catch((err: unknown) => this.deps.logger.warn({ err }, 'rendering a storm message failed; the next pass retries'));
    };
    if (wait <= 0) return run();
    if (this.trailing) return;
    this.trailing = setTimeout(() => {
      this.trailing = null;
      run();
    }, wait);
    this.trailing.unref();
  }

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
   * The channel's open storm, opened now if there is none: with the lockouts of the last
   * minute and the bursts active in it, their held messages withdrawn (they are counted in the
   * storm instead). Locked for the caller's transaction. `opened` says whether it is new.
   */
  private async openOrJoin(q: Queryable, channel: string, known?: StormRow | null): Promise<{ storm: StormRow; opened: boolean }> {
    const current = known ?? (await this.open(q, channel));
    if (current) return { storm: current, opened: false };
    const { rows } = await q.query<StormRow>(`INSERT INTO warden_alert_storm (channel, post_id) VALUES ($1, 0) RETURNING *`, [channel]);
    const storm = rows[0];
    const recent = await q.query<{ id: number; post_id: number }>(
      `UPDATE warden_lockout_alert SET storm_id = $1
        WHERE storm_id IS NULL AND created_at > now() - interval '1 minute' RETURNING id, post_id`,
      [storm.id],
    );
    const bursts = await q.query<{ post_id: number }>(
      `UPDATE warden_burst_alert SET storm_id = $1
        WHERE storm_id IS NULL AND kind = 'failed_login' AND last_seen > now() - interval '1 minute' RETURNING post_id`,
      [storm.id],
    );
    const held = [...recent.rows, ...bursts.rows].map((r) => r.post_id).filter((id) => id > 0);
    const withdrawn = await this.deps.outbox.withdrawHeld(q, held);
    if (withdrawn.length) {
      await q.query(`UPDATE warden_lockout_alert SET post_id = 0 WHERE storm_id = $1 AND post_id = ANY($2::bigint[])`, [storm.id, withdrawn]);
      await q.query(`UPDATE warden_burst_alert SET post_id = 0 WHERE storm_id = $1 AND post_id = ANY($2::bigint[])`, [storm.id, withdrawn]);
    }
    this.deps.logger.warn(
      { storm: storm.id, lockouts: recent.rows.length, bursts: bursts.rows.length, withdrawn: withdrawn.length },
      'alert storm: grouping alerts into one message',
    );
    return { storm, opened: true };
  }

  /**
   * Puts a new lockout alert into the channel's storm (`open`: the caller's open() of this
   * transaction, if it has one), opening it if needed. A new storm's
   * message is queued in this transaction (the first message is not delayed); later lockouts
   * only mark the storm changed (its message is re-rendered after the commit, see renderOwed).
   */
  async addLockout(
    q: Queryable,
    channel: string,
    alertId: number,
    open?: StormRow | null,
    opts: { deferTouch?: boolean } = {},
  ): Promise<{ storm: StormRow; opened: boolean }> {
    const { storm, opened } = await this.openOrJoin(q, channel, open);
    await q.query(`UPDATE warden_lockout_alert SET storm_id = $1, post_id = 0 WHERE id = $2`, [storm.id, alertId]);
    if (opened) return { storm: await this.queueMessage(q, storm.id), opened };
    // `deferTouch`: the caller touches the storm once for several lockouts, in this transaction.
    return { storm: opts.deferTouch ? storm : await this.touch(q, storm.id, true), opened };
  }

  /**
   * Should a new failed-login burst join a storm? When one is open in the channel, or when more
   * than the storm rate of IPs are bursting now (`activeIps`: IPs over the threshold whose last
   * failure is in the last minute, this scan's included).
   */
  async stormyForBursts(q: Queryable, channel: string, activeIps: number): Promise<boolean> {
    return !!(await this.open(q, channel)) || activeIps > this.perMinute;
  }

  /**
   * A new failed-login burst joins the channel's storm (opened if needed) instead of posting its
   * own message; its count is shown in the storm's summary.
   */
  async addBurst(q: Queryable, channel: string, key: { kind: string; ip: string; windowStart: Date }): Promise<StormRow> {
    const { storm, opened } = await this.openOrJoin(q, channel);
    await q.query(`UPDATE warden_burst_alert SET storm_id = $1, post_id = 0 WHERE kind = $2 AND ip_address = $3 AND window_start = $4`, [
      storm.id,
      key.kind,
      key.ip,
      key.windowStart,
    ]);
    return opened ? this.queueMessage(q, storm.id) : this.touch(q, storm.id, true);
  }

  /**
   * Marks the storm changed (a lockout or burst joined or grew, an account was unlocked): its
   * message owes an update, rendered after this transaction commits (NOTIFY warden_storm wakes
   * the renderers of every replica; the scans also render at their end).
   */
  async touch(q: Queryable, stormId: number, joined = false): Promise<StormRow> {
    // (The NOTIFY rides on the UPDATE: one round trip; it is delivered at COMMIT.)
    const { rows } = await q.query<StormRow & { n: unknown }>(
      `UPDATE warden_alert_storm SET changes = changes + 1${joined ? ', last_at = now()' : ''} WHERE id = $1
       RETURNING *, pg_notify('warden_storm', '') AS n`,
      [stormId],
    );
    const { n: _n, ...storm } = rows[0];
    return storm;
  }

  /** Re-renders the storm message in the caller's transaction (posted once, then updated in place). */
  async queueMessage(q: Queryable, stormId: number): Promise<StormRow> {
    await q.query(`UPDATE warden_alert_storm SET changes = changes + 1, rendered = changes + 1 WHERE id = $1`, [stormId]);
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

  /** One pass: each storm that owes an update gets one, showing everything committed so far. */
  private async renderPass(): Promise<number> {
    this.lastPassAt = Date.now();
    const { rows } = await this.deps.db.query<{ id: number }>(`SELECT id FROM warden_alert_storm WHERE rendered < changes ORDER BY id`);
    let queued = 0;
    for (const r of rows) queued += await this.renderOne(r.id);
    return queued;
  }

  private async renderOne(stormId: number): Promise<number> {
    return this.deps.db.tx(async (q) => {
      // Read without a lock (lockouts keep joining meanwhile); the data read after it covers at
      // least these changes.
      const seen = (await q.query<{ changes: number; post_id: number }>('SELECT changes, post_id FROM warden_alert_storm WHERE id = $1', [stormId])).rows[0];
      if (!seen || !seen.post_id) return 0;
      const data = await this.data(q, stormId);
      // Claim the render: a renderer (this or another replica) that saw more changes wins, so
      // an older render never queues its update after a newer one.
      const won = await q.query(`UPDATE warden_alert_storm SET rendered = $2 WHERE id = $1 AND rendered < $2 RETURNING id`, [stormId, seen.changes]);
      if (!won.rows.length) return 0;
      await this.deps.outbox.update(q, seen.post_id, this.render(data));
      return 1;
    });
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
    const burstTotal = await q.query<{ ips: number; failures: number }>(
      `SELECT count(DISTINCT ip_address)::int AS ips, coalesce(sum(count), 0)::int AS failures FROM warden_burst_alert WHERE storm_id = $1`,
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
      burstTotal: burstTotal.rows[0],
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
   * Marks one lockout of the storm unlocked, in the transaction that unlocked the account (the
   * unlock service's `alsoInTx`), and its individual card if it has one (`card` renders it):
   * a stop half-way through "Unlock all listed" leaves every unlocked account marked, and the
   * next click lists only the rest. The storm message follows (touch).
   */
  async markOneUnlocked(q: Queryable, actor: Actor, stormId: number, alertId: number, card: (q: Queryable, alertId: number) => Promise<Message>): Promise<void> {
    const { rows } = await q.query<{ id: number; post_id: number }>(
      `UPDATE warden_lockout_alert SET unlocked_by = $3, unlocked_at = now()
        WHERE storm_id = $1 AND id = $2 AND unlocked_at IS NULL RETURNING id, post_id`,
      [stormId, alertId, actor.user.username],
    );
    const r = rows[0];
    if (!r) return;
    const live = r.post_id ? await q.query(`SELECT 1 FROM warden_outbox WHERE id = $1 AND status <> 'superseded'`, [r.post_id]) : { rows: [] };
    if (live.rows.length) await this.deps.outbox.update(q, r.post_id, await card(q, r.id));
    await this.touch(q, stormId);
  }

  /** "Unlock all listed" went through: the storm says who did it (each account is marked already). */
  async markAllUnlocked(actor: Actor, stormId: number): Promise<void> {
    await this.deps.db.tx(async (q) => {
      await q.query(`UPDATE warden_alert_storm SET unlocked_by = $2, unlocked_at = now() WHERE id = $1`, [stormId, actor.user.username]);
      await this.touch(q, stormId);
    });
    await this.renderOwed();
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
