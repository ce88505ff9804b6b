import { SingleFlight } from './single-flight.js';
import crypto from 'node:crypto';
import type { Db, Queryable } from '../db/index.js';
import type { Logger } from '../logger.js';
import type { Message } from '../ui.js';
import type { Chat, PostedRef, PostMark } from './chat.js';

/**
 * The alert outbox (issue 7; exactly once and paced: issues 12 and 15).
 *
 * Every alert Warden decides to post is first written to `warden_outbox` — in the caller's
 * own transaction, so the decision and the message commit together — and then delivered:
 *
 * - Order: rows of one channel (their "lane") are delivered strictly in id order. An update
 *   goes in the lane of the message it updates, a thread reply in the lane of its parent,
 *   so both always follow it. A DM has the lane of its user.
 * - Once, as seen in the channel: a row is claimed with a lease (`FOR UPDATE SKIP LOCKED` +
 *   `claimed_until`), so two replicas never work on the same row at once; a `dedupeKey`
 *   makes the enqueue idempotent. Each post carries the row's id in Slack message
 *   `metadata`, and `post_started_at` is committed before the request leaves. Whenever it is
 *   set — an earlier attempt timed out or the connection dropped after sending, or the
 *   replica holding the lease froze or died mid-post — the next attempt first looks for that
 *   id in the channel's recent history and adopts the message it finds instead of posting
 *   again. A replica whose late post lands after another one settled the row withdraws its
 *   own copy (chat.delete), so the channel ends with one message in every interleaving.
 * - Never dropped: 429s are retried exactly at Retry-After; 5xx and network errors with
 *   exponential backoff capped at `maxBackoffMs`, forever; the lane waits meanwhile. While
 *   Slack is failing, a cheap call probes it every `probeMs`; when Slack answers again (or
 *   any delivery succeeds) every row waiting out a backoff is due at once, so the backlog
 *   drains without waiting for the first row's long backoff. A permanent Slack error
 *   (e.g. `channel_not_found`) is also retried with the capped backoff, but the row is
 *   "parked": it stops holding back the rest of its lane.
 * - Paced: a lane gets at most one new message per `paceMs` (Slack allows about one message
 *   per second per channel) and one message at most one update per `paceMs`; replicas share
 *   the pace through `warden_outbox_lane`. Waiting updates coalesce: only the newest is sent.
 * - Prompt: an enqueue NOTIFYs `warden_outbox` (delivered to every replica at commit) and
 *   kicks the local loop; after each pass a timer is set for the moment the next row is
 *   due (Retry-After, backoff, pace, an expiring lease), so nothing waits for a poll. The
 *   poll (`pollMs`) is only a safety net for a lost notification.
 */

export interface OutboxOptions {
  /** First retry delay; doubles per attempt (default 1 s). */
  baseBackoffMs?: number;
  /** Cap of the retry delay (default 5 min). */
  maxBackoffMs?: number;
  /** Safety poll of the delivery loop started by start() (default 10 s); NOTIFY and timers do the real work. */
  pollMs?: number;
  /** How long a claimed row is reserved for the replica delivering it (default 60 s). */
  leaseMs?: number;
  /** Least time between two posts in one channel, and between two updates of one message (default 1 s). */
  paceMs?: number;
  /** While Slack fails, how often to check whether it answers again (default 5 s). */
  probeMs?: number;
}

export interface OutboxStats {
  pending: number;
  parked: number;
  oldestPendingAt: Date | null;
  lastError: string | null;
}

interface OutboxRow {
  id: number;
  kind: 'post' | 'update' | 'dm';
  lane: string;
  channel: string;
  target_id: number | null;
  target_channel: string | null;
  target_ts: string | null;
  thread_of_id: number | null;
  message: Message;
  attempts: number;
  claim_token: string;
  created_at: Date;
  post_started_at: Date | null;
}

/** How a failed delivery should be retried. Duck-typed so this file needs no Slack types. */
export interface DeliveryFailure {
  transient: boolean;
  retryAfterMs?: number;
  /** Slack may have done it although we heard no success (timeout, reset, 5xx). */
  ambiguous: boolean;
  reason: string;
}

export function classifyDeliveryError(e: unknown): DeliveryFailure {
  const err = e as { code?: string; retryAfter?: number; statusCode?: number; data?: { error?: string }; message?: string };
  switch (err?.code) {
    case 'slack_webapi_rate_limited_error':
      return { transient: true, ambiguous: false, retryAfterMs: Math.max(0, Number(err.retryAfter ?? 1)) * 1000, reason: 'rate limited (429)' };
    case 'slack_webapi_http_error': {
      const status = Number(err.statusCode);
      return { transient: true, ambiguous: !(status >= 400 && status < 500), reason: `HTTP ${err.statusCode}` };
    }
    case 'slack_webapi_request_error':
      return { transient: true, ambiguous: true, reason: 'network error' };
    case 'slack_webapi_platform_error': {
      // Slack answered ok:false: it did not do it.
      const code = err.data?.error ?? 'unknown_error';
      const transientCodes = ['ratelimited', 'rate_limited', 'internal_error', 'fatal_error', 'service_unavailable', 'request_timeout'];
      return { transient: transientCodes.includes(code), ambiguous: false, reason: `Slack error ${code}` };
    }
    default:
      return { transient: true, ambiguous: true, reason: String(err?.message ?? e).slice(0, 200) };
  }
}

/** Slack's errors that mean "you may not read this conversation": the history check cannot be made. */
const UNCHECKABLE = ['not_in_channel', 'missing_scope', 'channel_not_found', 'not_allowed_token_type', 'access_denied'];

const CLAIM_BATCH = 25;
/** The metadata event type of outbox posts. */
export const OUTBOX_MARK_TYPE = 'warden_outbox';

/** SQL: the key a row is paced by — its lane for posts and DMs, its target message for updates. */
const paceKey = (o: string) =>
  `CASE WHEN ${o}.kind = 'update' THEN 'update:' || coalesce(${o}.target_id::text, ${o}.target_channel || ':' || ${o}.target_ts) ELSE ${o}.lane END`;
/** SQL: the row is the head of its lane (nothing older, not parked, still pending). */
const isHead = (o: string) =>
  `NOT EXISTS (SELECT 1 FROM warden_outbox e WHERE e.lane = ${o}.lane AND e.status = 'pending' AND e.id < ${o}.id AND NOT e.parked)`;
/** SQL: when the row's pace key allows the next message ($1 = pace in ms). */
const pacedFrom = (o: string) =>
  `coalesce((SELECT l.last_post_at FROM warden_outbox_lane l WHERE l.lane = ${paceKey(o)}) + make_interval(secs => $PACE::float8 / 1000), '-infinity'::timestamptz)`;

export class Outbox {
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly pollMs: number;
  private readonly leaseMs: number;
  private readonly paceMs: number;
  private readonly probeMs: number;
  private closed = false;
  private started = false;
  private lastProbeAt = 0;
  private readonly flight = new SingleFlight(
    () => this.deliverRounds(),
    () => !this.closed,
  );
  private timers = new Set<NodeJS.Timeout>();
  private wake?: NodeJS.Timeout;

  constructor(
    private readonly db: Db,
    private readonly chat: Chat,
    private readonly logger: Logger,
    opts: OutboxOptions = {},
  ) {
    this.baseBackoffMs = opts.baseBackoffMs ?? 1000;
    this.maxBackoffMs = opts.maxBackoffMs ?? 5 * 60_000;
    this.pollMs = opts.pollMs ?? 10_000;
    this.leaseMs = opts.leaseMs ?? 60_000;
    this.paceMs = opts.paceMs ?? 1000;
    this.probeMs = opts.probeMs ?? 5000;
  }

  /** Queue a new channel message. Same dedupeKey → never queued/posted twice (returns the existing id). */
  /**
   * Queue a new channel message. Same dedupeKey → never queued/posted twice (returns the existing id).
   * `holdMs` keeps it back that long (it can still be withdrawn meanwhile, see withdrawHeld).
   */
  async post(q: Queryable, channel: string, message: Message, opts: { dedupeKey?: string; threadOfId?: number; holdMs?: number } = {}): Promise<number> {
    let lane = channel;
    if (opts.threadOfId !== undefined) {
      const parent = await q.query<{ lane: string; kind: string }>('SELECT lane, kind FROM warden_outbox WHERE id = $1', [opts.threadOfId]);
      if (!parent.rows[0] || parent.rows[0].kind !== 'post') throw new Error(`outbox: no post ${opts.threadOfId} to reply to`);
      lane = parent.rows[0].lane;
    }
    return this.insert(q, { kind: 'post', lane, channel, threadOfId: opts.threadOfId, message, dedupeKey: opts.dedupeKey, holdMs: opts.holdMs });
  }

  /**
   * Withdraws queued posts that have not started to go out (held, or waiting), with their
   * pending updates. Returns the ids withdrawn; a post already on its way is not touched.
   */
  async withdrawHeld(q: Queryable, postIds: number[]): Promise<number[]> {
    if (!postIds.length) return [];
    const { rows } = await q.query<{ id: number }>(
      `UPDATE warden_outbox SET status = 'superseded', sent_at = now()
        WHERE id = ANY($1::bigint[]) AND kind = 'post' AND status = 'pending' AND post_started_at IS NULL
          AND (claimed_until IS NULL OR claimed_until < now())
        RETURNING id`,
      [postIds],
    );
    const ids = rows.map((r) => r.id);
    if (ids.length) {
      await q.query(`UPDATE warden_outbox SET status = 'superseded', sent_at = now() WHERE target_id = ANY($1::bigint[]) AND status = 'pending'`, [ids]);
    }
    return ids;
  }

  /**
   * Queue a direct message to a Slack user (the conversation is opened at delivery). Used
   * for what a committed decision owes someone, so that a crash after the commit cannot lose it.
   */
  async dm(q: Queryable, slackUserId: string, message: Message, opts: { dedupeKey?: string } = {}): Promise<number> {
    return this.insert(q, { kind: 'dm', lane: `dm:${slackUserId}`, channel: slackUserId, message, dedupeKey: opts.dedupeKey });
  }

  /** Queue an update of a message queued earlier with post() (delivered after it, in order). */
  async update(q: Queryable, postId: number, message: Message): Promise<number> {
    const target = await q.query<{ lane: string; channel: string; kind: string }>(
      'SELECT lane, channel, kind FROM warden_outbox WHERE id = $1',
      [postId],
    );
    if (!target.rows[0] || target.rows[0].kind !== 'post') throw new Error(`outbox: no post ${postId} to update`);
    const { rows } = await q.query<{ id: number }>(
      `INSERT INTO warden_outbox (kind, lane, channel, target_id, message) VALUES ('update', $1, $2, $3, $4) RETURNING id`,
      [target.rows[0].lane, target.rows[0].channel, postId, JSON.stringify(message)],
    );
    await this.notify(q);
    return rows[0].id;
  }

  /** Queue an update of a message posted outside the outbox (e.g. an approval card), in its channel's lane. */
  async updateRef(q: Queryable, ref: PostedRef, message: Message): Promise<number> {
    const { rows } = await q.query<{ id: number }>(
      `INSERT INTO warden_outbox (kind, lane, channel, target_channel, target_ts, message) VALUES ('update', $1, $1, $1, $2, $3) RETURNING id`,
      [ref.channel, ref.ts, JSON.stringify(message)],
    );
    await this.notify(q);
    return rows[0].id;
  }

  private async insert(
    q: Queryable,
    r: { kind: 'post' | 'dm'; lane: string; channel: string; threadOfId?: number; message: Message; dedupeKey?: string; holdMs?: number },
  ): Promise<number> {
    const inserted = await q.query<{ id: number }>(
      `INSERT INTO warden_outbox (kind, lane, channel, thread_of_id, message, dedupe_key, next_attempt_at)
       VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7::float8 / 1000))
       ON CONFLICT (dedupe_key) DO NOTHING
       RETURNING id`,
      [r.kind, r.lane, r.channel, r.threadOfId ?? null, JSON.stringify(r.message), r.dedupeKey ?? null, r.holdMs ?? 0],
    );
    if (inserted.rows[0]) {
      await this.notify(q);
      return inserted.rows[0].id;
    }
    const existing = await q.query<{ id: number }>('SELECT id FROM warden_outbox WHERE dedupe_key = $1', [r.dedupeKey]);
    return existing.rows[0].id;
  }

  /** Where a queued post landed, once delivered (null before). */
  async refOf(postId: number): Promise<PostedRef | null> {
    const { rows } = await this.db.query<{ posted_channel: string | null; posted_ts: string | null }>(
      'SELECT posted_channel, posted_ts FROM warden_outbox WHERE id = $1',
      [postId],
    );
    const r = rows[0];
    return r?.posted_channel && r.posted_ts ? { channel: r.posted_channel, ts: r.posted_ts } : null;
  }

  /** The newest message content queued for a post (its last update, else the post itself). */
  async latestMessage(postId: number): Promise<Message | null> {
    const { rows } = await this.db.query<{ message: Message }>(
      `SELECT message FROM warden_outbox WHERE id = $1 OR target_id = $1 ORDER BY id DESC LIMIT 1`,
      [postId],
    );
    return rows[0]?.message ?? null;
  }

  /** Backlog figures for /health. */
  async stats(): Promise<OutboxStats> {
    const { rows } = await this.db.query<{ pending: number; parked: number; oldest: Date | null; last_error: string | null }>(
      `SELECT count(*)::int AS pending,
              count(*) FILTER (WHERE parked)::int AS parked,
              min(created_at) AS oldest,
              (SELECT last_error FROM warden_outbox WHERE status = 'pending' AND last_error IS NOT NULL ORDER BY id LIMIT 1) AS last_error
         FROM warden_outbox WHERE status = 'pending'`,
    );
    return { pending: rows[0].pending, parked: rows[0].parked, oldestPendingAt: rows[0].oldest, lastError: rows[0].last_error };
  }

  /** Deliver what is due, oldest first; retries with backoff on 429 (Retry-After) / 5xx / network errors. Returns delivered count. */
  deliverDue(): Promise<number> {
    return this.flight.run();
  }

  /** Deliver soon (after the enqueuing transaction has had time to commit). */
  kick(): void {
    if (this.closed) return;
    for (const delay of [0, 150]) {
      const t = setTimeout(() => {
        this.timers.delete(t);
        this.deliverDue().catch((err) => this.logger.debug({ err }, 'outbox kick failed'));
      }, delay);
      t.unref();
      this.timers.add(t);
    }
  }

  /** Starts the delivery loop: LISTEN warden_outbox, a timer for the next due row, a safety poll. Returns stop(). */
  async start(): Promise<() => Promise<void>> {
    this.closed = false;
    this.started = true;
    let unlisten: (() => Promise<void>) | undefined;
    try {
      unlisten = await this.db.listen('warden_outbox', () => {
        this.deliverDue().catch((err) => this.logger.warn({ err }, 'outbox delivery failed'));
      });
    } catch (err) {
      this.logger.warn({ err }, 'outbox: LISTEN failed; delivering on timers only');
    }
    const timer = setInterval(() => {
      this.deliverDue().catch((err) => this.logger.warn({ err }, 'outbox delivery failed'));
    }, this.pollMs);
    timer.unref();
    this.kick();
    return async () => {
      clearInterval(timer);
      await unlisten?.().catch(() => {});
      await this.close();
    };
  }

  /** Stops kicks and waits for a delivery in progress (the app is shutting down). */
  async close(): Promise<void> {
    this.closed = true;
    this.started = false;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.wake) clearTimeout(this.wake);
    this.wake = undefined;
    await this.flight.idle();
  }

  /** Removes delivered rows older than `days` that nothing pending still refers to. */
  async prune(days = 30): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM warden_outbox o
        WHERE o.status <> 'pending' AND o.sent_at < now() - make_interval(days => $1::int)
          AND NOT EXISTS (SELECT 1 FROM warden_outbox d WHERE (d.target_id = o.id OR d.thread_of_id = o.id)
                                                     AND (d.status = 'pending' OR d.sent_at >= now() - make_interval(days => $1::int)))`,
      [days],
    );
    await this.db.query(`DELETE FROM warden_outbox_lane WHERE last_post_at < now() - interval '1 day'`);
    return rowCount;
  }

  private async notify(q: Queryable): Promise<void> {
    // Delivered to every listening replica when the caller's transaction commits.
    await q.query(`SELECT pg_notify('warden_outbox', '')`);
    this.kick();
  }

  private sql(text: string): string {
    return text.replaceAll('$PACE', String(Math.max(0, Math.floor(this.paceMs))));
  }

  private async deliverRounds(): Promise<number> {
    let delivered = 0;
    try {
      await this.probeIfFailing();
      for (let round = 0; round < 200 && !this.closed; round++) {
        const claimed = await this.claim();
        if (!claimed.length) break;
        let ok = 0;
        for (const row of claimed) {
          if (await this.deliverOne(row)) ok++;
        }
        delivered += ok;
        // Slack answered: everything waiting out a backoff may go now (the backlog drains at once).
        if (ok) await this.releaseBackoffs();
      }
    } finally {
      await this.schedule().catch((err) => this.logger.debug({ err }, 'outbox: could not schedule the next delivery'));
    }
    return delivered;
  }

  /** While lane heads wait out network/5xx backoffs, asks Slack every probeMs whether it answers again. */
  private async probeIfFailing(): Promise<void> {
    if (!this.chat.ping || Date.now() - this.lastProbeAt < this.probeMs) return;
    const { rows } = await this.db.query(
      `SELECT 1 FROM warden_outbox o
        WHERE o.status = 'pending' AND NOT o.parked AND NOT o.rate_limited AND o.last_error IS NOT NULL
          AND o.next_attempt_at > now() LIMIT 1`,
    );
    if (!rows.length) return;
    this.lastProbeAt = Date.now();
    try {
      await this.chat.ping();
    } catch {
      return; // still down: the rows keep their backoff
    }
    this.logger.info('outbox: Slack answers again; delivering the backlog now');
    await this.releaseBackoffs();
  }

  private async releaseBackoffs(): Promise<void> {
    await this.db.query(
      `UPDATE warden_outbox SET next_attempt_at = now()
        WHERE status = 'pending' AND NOT parked AND NOT rate_limited AND last_error IS NOT NULL AND next_attempt_at > now()`,
    );
  }

  /** Sets one timer for the moment the next lane head is due (backoff, Retry-After, pace, lease, probe). */
  private async schedule(): Promise<void> {
    if (!this.started || this.closed) return;
    const { rows } = await this.db.query<{ due_ms: number | null; failing: boolean | null }>(
      this.sql(`SELECT extract(epoch FROM (min(greatest(o.next_attempt_at, coalesce(o.claimed_until, '-infinity'::timestamptz), ${pacedFrom('o')})) - clock_timestamp())) * 1000 AS due_ms,
              bool_or(NOT o.parked AND NOT o.rate_limited AND o.last_error IS NOT NULL) AS failing
         FROM warden_outbox o
        WHERE o.status = 'pending' AND ${isHead('o')}`),
    );
    const due = rows[0]?.due_ms;
    if (due === null || due === undefined) return;
    let delay = Math.max(0, Math.ceil(due));
    if (rows[0].failing && this.chat.ping) delay = Math.min(delay, Math.max(0, this.lastProbeAt + this.probeMs - Date.now()));
    if (delay > this.pollMs) return; // the safety poll comes first anyway
    if (this.wake) clearTimeout(this.wake);
    this.wake = setTimeout(() => {
      this.wake = undefined;
      this.deliverDue().catch((err) => this.logger.warn({ err }, 'outbox delivery failed'));
    }, delay);
    this.wake.unref();
  }

  /**
   * Claims the head of every lane that is due: the oldest pending row of the lane, not
   * leased by anyone, paced, whose post/parent has already been delivered (updates, replies).
   */
  private async claim(): Promise<OutboxRow[]> {
    const token = crypto.randomBytes(8).toString('hex');
    const { rows } = await this.db.query<OutboxRow>(
      this.sql(`UPDATE warden_outbox SET claimed_until = now() + make_interval(secs => $2::float8 / 1000), claim_token = $1,
                                attempts = attempts + 1
        WHERE id IN (
          SELECT o.id FROM warden_outbox o
           WHERE o.status = 'pending'
             AND o.next_attempt_at <= now()
             AND (o.claimed_until IS NULL OR o.claimed_until < now())
             AND ${isHead('o')}
             AND ${pacedFrom('o')} <= now()
             AND (o.target_id IS NULL OR EXISTS (SELECT 1 FROM warden_outbox t WHERE t.id = o.target_id AND t.status = 'sent'))
             AND (o.thread_of_id IS NULL OR EXISTS (SELECT 1 FROM warden_outbox t WHERE t.id = o.thread_of_id AND t.status = 'sent'))
           ORDER BY o.id
           LIMIT ${CLAIM_BATCH}
           FOR UPDATE SKIP LOCKED)
        RETURNING id, kind, lane, channel, target_id, target_channel, target_ts, thread_of_id, message, attempts, claim_token,
                  created_at, post_started_at`),
      [token, this.leaseMs],
    );
    return rows.sort((a, b) => a.id - b.id);
  }

  private markOf(row: Pick<OutboxRow, 'id' | 'created_at'>): PostMark {
    return { type: OUTBOX_MARK_TYPE, payload: { outbox_id: row.id, queued_at: new Date(row.created_at).getTime() } };
  }

  private async deliverOne(row: OutboxRow): Promise<boolean> {
    try {
      if (row.kind === 'update') return await this.deliverUpdate(row);
      return await this.deliverPost(row);
    } catch (e) {
      await this.failed(row, e);
      // Rows of other lanes claimed in this round are still delivered.
      return false;
    }
  }

  private async deliverUpdate(row: OutboxRow): Promise<boolean> {
    const sameTarget = `(target_id = $1 OR (target_channel = $2 AND target_ts = $3))`;
    const target = [row.target_id ?? -1, row.target_channel ?? '', row.target_ts ?? ''];
    const newer = await this.db.query(
      `SELECT 1 FROM warden_outbox WHERE ${sameTarget} AND status = 'pending' AND id > $4 LIMIT 1`,
      [...target, row.id],
    );
    if (newer.rows.length) {
      await this.db.query(
        `UPDATE warden_outbox SET status = 'superseded', sent_at = now(), claimed_until = NULL WHERE id = $1 AND claim_token = $2`,
        [row.id, row.claim_token],
      );
      return false;
    }
    const ref = row.target_id ? await this.refOf(row.target_id) : { channel: row.target_channel!, ts: row.target_ts! };
    if (!ref) throw new Error('target not delivered');
    await this.chat.update(ref, row.message);
    const settled = await this.db.tx(async (q) => {
      const { rowCount } = await q.query(
        `UPDATE warden_outbox SET status = 'sent', sent_at = now(), posted_channel = $3, posted_ts = $4,
                                  claimed_until = NULL, last_error = NULL, parked = false, rate_limited = false
          WHERE id = $1 AND claim_token = $2 RETURNING id`,
        [row.id, row.claim_token, ref.channel, ref.ts],
      );
      await this.touchPace(q, `update:${row.target_id ?? `${ref.channel}:${ref.ts}`}`);
      return rowCount > 0;
    });
    if (!settled) {
      // Our lease ran out while the update was in flight and a later update may already have
      // been applied: put the newest delivered content back so the message does not go stale.
      const newest = await this.db.query<{ id: number; message: Message }>(
        `SELECT id, message FROM warden_outbox WHERE ${sameTarget} AND status = 'sent' ORDER BY id DESC LIMIT 1`,
        target,
      );
      if (newest.rows[0] && newest.rows[0].id > row.id) await this.chat.update(ref, newest.rows[0].message);
      return false;
    }
    return true;
  }

  private async deliverPost(row: OutboxRow): Promise<boolean> {
    let threadTs: string | undefined;
    if (row.thread_of_id) {
      const parent = await this.refOf(row.thread_of_id);
      if (!parent) throw new Error('parent not delivered');
      threadTs = parent.ts;
    }
    if (row.kind === 'dm' && !this.chat.openDm) {
      // A chat port that cannot open the conversation itself: its plain DM (no check for an earlier copy).
      await this.markStarted(row);
      return this.settlePost(row, await this.chat.dm(row.channel, row.message));
    }
    const channel = row.kind === 'dm' ? await this.chat.openDm!(row.channel) : row.channel;
    const mark = this.markOf(row);
    if (row.post_started_at) {
      // An earlier attempt may have landed (no answer, or its replica froze past the lease).
      const found = await this.findEarlier(row, channel, mark, threadTs);
      if (found) {
        this.logger.info({ outboxId: row.id, ts: found.ts }, 'alert was already in the channel; not posting it again');
        return this.settlePost(row, found);
      }
    }
    if (!(await this.markStarted(row))) return false; // the lease was lost before sending: someone else has the row
    const ref = await this.chat.post(channel, row.message, { ...(threadTs ? { threadTs } : {}), mark });
    return this.settlePost(row, ref);
  }

  /** Committed before the request leaves: whoever holds this row next knows to check first. */
  private async markStarted(row: OutboxRow): Promise<boolean> {
    const started = await this.db.query(
      `UPDATE warden_outbox SET post_started_at = coalesce(post_started_at, now()) WHERE id = $1 AND claim_token = $2 RETURNING id`,
      [row.id, row.claim_token],
    );
    return started.rowCount > 0;
  }

  /** The message an earlier attempt posted, if any; null when there is none or it cannot be checked. */
  private async findEarlier(row: OutboxRow, channel: string, mark: PostMark, threadTs?: string): Promise<PostedRef | null> {
    if (!this.chat.findMarked) return null;
    try {
      // A minute of slack for clocks that disagree.
      return await this.chat.findMarked(channel, mark, { since: new Date(new Date(row.post_started_at!).getTime() - 60_000), threadTs });
    } catch (e) {
      const code = (e as { data?: { error?: string } }).data?.error;
      if (code && UNCHECKABLE.includes(code)) {
        // Without history access (scopes, bot not in the channel) we cannot tell: post rather than lose the alert.
        this.logger.error({ outboxId: row.id, slackError: code }, 'cannot read the channel history to check for an earlier copy; posting again (it may appear twice)');
        return null;
      }
      throw e; // Slack is failing: retry later rather than post blind
    }
  }

  /**
   * Records where the post landed. If another replica settled the row meanwhile (its lease
   * had passed to it), a different message of ours is a duplicate and is withdrawn.
   */
  private async settlePost(row: OutboxRow, ref: PostedRef): Promise<boolean> {
    const settled = await this.db.tx(async (q) => {
      const { rows } = await q.query<{ id: number }>(
        `UPDATE warden_outbox SET status = 'sent', sent_at = now(), posted_channel = $2, posted_ts = $3,
                                  claimed_until = NULL, claim_token = NULL, last_error = NULL, parked = false, rate_limited = false
          WHERE id = $1 AND status = 'pending' RETURNING id`,
        [row.id, ref.channel, ref.ts],
      );
      if (rows.length) await this.touchPace(q, row.lane);
      return rows.length > 0;
    });
    if (!settled) {
      const now = await this.refOf(row.id);
      if (now && now.ts !== ref.ts) await this.withdraw(row, ref);
      return false;
    }
    // Its updates and replies may go now even if it had been parked.
    await this.db.query(
      `UPDATE warden_outbox SET parked = false WHERE (target_id = $1 OR thread_of_id = $1) AND status = 'pending' AND parked`,
      [row.id],
    );
    return true;
  }

  private async withdraw(row: OutboxRow, ref: PostedRef): Promise<void> {
    this.logger.warn({ outboxId: row.id, ts: ref.ts }, 'another replica delivered this alert meanwhile; withdrawing our copy');
    if (!this.chat.remove) return;
    await this.chat.remove(ref).catch((err) => this.logger.error({ err, outboxId: row.id, ts: ref.ts }, 'could not withdraw a duplicate alert'));
  }

  /**
   * After an ambiguous failure of a post whose row another replica has settled meanwhile,
   * our request may still have landed: any other message carrying the row's mark is withdrawn.
   */
  private async sweep(row: OutboxRow): Promise<void> {
    const settled = await this.refOf(row.id);
    if (!settled || !this.chat.findMarked || !row.post_started_at) return;
    const found = await this.chat
      .findMarked(settled.channel, this.markOf(row), { since: new Date(Date.now() - 10 * 60_000) })
      .catch(() => null);
    if (found && found.ts !== settled.ts) await this.withdraw(row, found);
  }

  /**
   * Records that `key` (a lane, or an updated message) was just served. Always in the same
   * transaction that marks the row sent: committed apart, another replica claiming in between
   * sees the lane's next row as its head with the old pace and posts it at once — two messages
   * milliseconds apart in one channel.
   */
  private async touchPace(q: Queryable, key: string): Promise<void> {
    if (this.paceMs <= 0) return;
    await q.query(
      `INSERT INTO warden_outbox_lane (lane, last_post_at) VALUES ($1, now())
       ON CONFLICT (lane) DO UPDATE SET last_post_at = GREATEST(warden_outbox_lane.last_post_at, EXCLUDED.last_post_at)`,
      [key],
    );
  }

  private async failed(row: OutboxRow, e: unknown): Promise<void> {
    const f = classifyDeliveryError(e);
    const backoff = Math.min(this.maxBackoffMs, this.baseBackoffMs * 2 ** Math.min(20, Math.max(0, row.attempts - 1)));
    const jittered = Math.round(backoff * (0.8 + Math.random() * 0.4));
    // Retry-After is Slack's word: exactly then, not later (the timer is set for it).
    const delay = f.retryAfterMs !== undefined ? Math.min(this.maxBackoffMs, f.retryAfterMs) : Math.min(this.maxBackoffMs, jittered);
    const log = f.transient ? this.logger.warn.bind(this.logger) : this.logger.error.bind(this.logger);
    log({ outboxId: row.id, kind: row.kind, attempts: row.attempts, reason: f.reason, ambiguous: f.ambiguous, retryInMs: delay }, 'alert delivery failed; will retry');
    const { rowCount } = await this.db.query(
      `UPDATE warden_outbox SET claimed_until = NULL, claim_token = NULL, last_error = $3, parked = $4,
                                next_attempt_at = now() + make_interval(secs => $5::float8 / 1000),
                                rate_limited = $6,
                                -- Slack refused for sure: nothing of this attempt can be in the channel.
                                post_started_at = CASE WHEN $7 THEN post_started_at ELSE $8::timestamptz END
          WHERE id = $1 AND claim_token = $2`,
      [row.id, row.claim_token, f.reason, !f.transient, delay, f.retryAfterMs !== undefined, f.ambiguous, row.post_started_at],
    );
    if (!rowCount && f.ambiguous && row.kind !== 'update') {
      await this.sweep(row).catch((err) => this.logger.warn({ err, outboxId: row.id }, 'outbox: duplicate sweep failed'));
    }
    if (!f.transient) {
      // Its updates and replies cannot go before it; they stop holding back the lane too.
      await this.db.query(
        `UPDATE warden_outbox SET parked = true WHERE (target_id = $1 OR thread_of_id = $1) AND status = 'pending'`,
        [row.id],
      );
    }
  }
}
