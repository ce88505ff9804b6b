import { SingleFlight } from './single-flight.js';
import crypto from 'node:crypto';
import type { Db, Queryable } from '../db/index.js';
import type { Logger } from '../logger.js';
import type { Message } from '../ui.js';
import type { Chat, PostedRef } from './chat.js';

/**
 * The alert outbox (issue 7, DESIGN §3 "Nothing is lost").
 *
 * Every alert Warden decides to post is first written to `warden_outbox` — in the caller's
 * own transaction, so the decision and the message commit together — and then delivered:
 *
 * - Order: rows of one channel (their "lane") are delivered strictly in id order. An update
 *   goes in the lane of the message it updates, a thread reply in the lane of its parent,
 *   so both always follow it.
 * - Once: a row is claimed with a lease (`FOR UPDATE SKIP LOCKED` + `claimed_until`), so
 *   two replicas never post the same row; a `dedupeKey` makes the enqueue itself
 *   idempotent (the same event seen by two replicas or twice after a restart is queued once).
 * - Never dropped: 429 (honouring Retry-After), 5xx and network errors are retried with
 *   exponential backoff capped at `maxBackoffMs`, forever; the lane waits meanwhile.
 *   A permanent Slack error (e.g. `channel_not_found`) is also retried with the capped
 *   backoff, but the row is "parked": it stops holding back the rest of its lane.
 * - Updates coalesce: when several updates of one message are waiting, only the newest is
 *   sent (the final state is the same; Slack is spared the intermediate ones).
 *
 * Delivery is driven by start() (a short timer plus a NOTIFY on `warden_outbox` sent at
 * commit of every enqueue) and by a local kick after each enqueue.
 * The edge case it cannot close: a replica that dies after Slack accepted a post but before
 * the row was marked sent leaves the lease to expire and the post is sent again.
 */

export interface OutboxOptions {
  /** First retry delay; doubles per attempt (default 1 s). */
  baseBackoffMs?: number;
  /** Cap of the retry delay (default 5 min). */
  maxBackoffMs?: number;
  /** Poll period of the delivery loop started by start() (default 1 s). */
  pollMs?: number;
  /** How long a claimed row is reserved for the replica delivering it (default 60 s). */
  leaseMs?: number;
}

export interface OutboxStats {
  pending: number;
  parked: number;
  oldestPendingAt: Date | null;
  lastError: string | null;
}

interface OutboxRow {
  id: number;
  kind: 'post' | 'update';
  lane: string;
  channel: string;
  target_id: number | null;
  thread_of_id: number | null;
  message: Message;
  attempts: number;
  claim_token: string;
}

/** How a failed delivery should be retried. Duck-typed so this file needs no Slack types. */
export interface DeliveryFailure {
  transient: boolean;
  retryAfterMs?: number;
  reason: string;
}

export function classifyDeliveryError(e: unknown): DeliveryFailure {
  const err = e as { code?: string; retryAfter?: number; statusCode?: number; data?: { error?: string }; message?: string };
  switch (err?.code) {
    case 'slack_webapi_rate_limited_error':
      return { transient: true, retryAfterMs: Math.max(0, Number(err.retryAfter ?? 1)) * 1000, reason: 'rate limited (429)' };
    case 'slack_webapi_http_error':
      return { transient: true, reason: `HTTP ${err.statusCode}` };
    case 'slack_webapi_request_error':
      return { transient: true, reason: 'network error' };
    case 'slack_webapi_platform_error': {
      const code = err.data?.error ?? 'unknown_error';
      const transientCodes = ['ratelimited', 'rate_limited', 'internal_error', 'fatal_error', 'service_unavailable', 'request_timeout'];
      return { transient: transientCodes.includes(code), reason: `Slack error ${code}` };
    }
    default:
      return { transient: true, reason: String(err?.message ?? e).slice(0, 200) };
  }
}

const CLAIM_BATCH = 25;

export class Outbox {
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly pollMs: number;
  private readonly leaseMs: number;
  private closed = false;
  private readonly flight = new SingleFlight(
    () => this.deliverRounds(),
    () => !this.closed,
  );
  private timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly db: Db,
    private readonly chat: Chat,
    private readonly logger: Logger,
    opts: OutboxOptions = {},
  ) {
    this.baseBackoffMs = opts.baseBackoffMs ?? 1000;
    this.maxBackoffMs = opts.maxBackoffMs ?? 5 * 60_000;
    this.pollMs = opts.pollMs ?? 1000;
    this.leaseMs = opts.leaseMs ?? 60_000;
  }

  /** Queue a new channel message. Same dedupeKey → never queued/posted twice (returns the existing id). */
  async post(q: Queryable, channel: string, message: Message, opts: { dedupeKey?: string; threadOfId?: number } = {}): Promise<number> {
    let lane = channel;
    if (opts.threadOfId !== undefined) {
      const parent = await q.query<{ lane: string; kind: string }>('SELECT lane, kind FROM warden_outbox WHERE id = $1', [opts.threadOfId]);
      if (!parent.rows[0] || parent.rows[0].kind !== 'post') throw new Error(`outbox: no post ${opts.threadOfId} to reply to`);
      lane = parent.rows[0].lane;
    }
    const inserted = await q.query<{ id: number }>(
      `INSERT INTO warden_outbox (kind, lane, channel, thread_of_id, message, dedupe_key)
       VALUES ('post', $1, $2, $3, $4, $5)
       ON CONFLICT (dedupe_key) DO NOTHING
       RETURNING id`,
      [lane, channel, opts.threadOfId ?? null, JSON.stringify(message), opts.dedupeKey ?? null],
    );
    if (inserted.rows[0]) {
      await this.notify(q);
      return inserted.rows[0].id;
    }
    const existing = await q.query<{ id: number }>('SELECT id FROM warden_outbox WHERE dedupe_key = $1', [opts.dedupeKey]);
    return existing.rows[0].id;
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

  /** Starts the delivery loop: a poll timer plus LISTEN warden_outbox. Returns stop(). */
  async start(): Promise<() => Promise<void>> {
    this.closed = false;
    let unlisten: (() => Promise<void>) | undefined;
    try {
      unlisten = await this.db.listen('warden_outbox', () => {
        this.deliverDue().catch((err) => this.logger.warn({ err }, 'outbox delivery failed'));
      });
    } catch (err) {
      this.logger.warn({ err }, 'outbox: LISTEN failed; delivering on the timer only');
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
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
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
    return rowCount;
  }

  private async notify(q: Queryable): Promise<void> {
    // Delivered to every listening replica when the caller's transaction commits.
    await q.query(`SELECT pg_notify('warden_outbox', '')`);
    this.kick();
  }

  private async deliverRounds(): Promise<number> {
    let delivered = 0;
    for (let round = 0; round < 200 && !this.closed; round++) {
      const claimed = await this.claim();
      if (!claimed.length) break;
      for (const row of claimed) {
        if (await this.deliverOne(row)) delivered++;
      }
    }
    return delivered;
  }

  /**
   * Claims the head of every lane that is due: the oldest pending row of the lane, not
   * leased by anyone, whose post/parent has already been delivered (updates, replies).
   */
  private async claim(): Promise<OutboxRow[]> {
    const token = crypto.randomBytes(8).toString('hex');
    const { rows } = await this.db.query<OutboxRow>(
      `UPDATE warden_outbox SET claimed_until = now() + make_interval(secs => $2::float8 / 1000), claim_token = $1,
                                attempts = attempts + 1
        WHERE id IN (
          SELECT o.id FROM warden_outbox o
           WHERE o.status = 'pending'
             AND o.next_attempt_at <= now()
             AND (o.claimed_until IS NULL OR o.claimed_until < now())
             AND NOT EXISTS (SELECT 1 FROM warden_outbox e
                              WHERE e.lane = o.lane AND e.status = 'pending' AND e.id < o.id AND NOT e.parked)
             AND (o.target_id IS NULL OR EXISTS (SELECT 1 FROM warden_outbox t WHERE t.id = o.target_id AND t.status = 'sent'))
             AND (o.thread_of_id IS NULL OR EXISTS (SELECT 1 FROM warden_outbox t WHERE t.id = o.thread_of_id AND t.status = 'sent'))
           ORDER BY o.id
           LIMIT ${CLAIM_BATCH}
           FOR UPDATE SKIP LOCKED)
        RETURNING id, kind, lane, channel, target_id, thread_of_id, message, attempts, claim_token`,
      [token, this.leaseMs],
    );
    return rows.sort((a, b) => a.id - b.id);
  }

  private async deliverOne(row: OutboxRow): Promise<boolean> {
    try {
      if (row.kind === 'update') {
        const newer = await this.db.query(
          `SELECT 1 FROM warden_outbox WHERE target_id = $1 AND status = 'pending' AND id > $2 LIMIT 1`,
          [row.target_id, row.id],
        );
        if (newer.rows.length) {
          await this.db.query(
            `UPDATE warden_outbox SET status = 'superseded', sent_at = now(), claimed_until = NULL WHERE id = $1 AND claim_token = $2`,
            [row.id, row.claim_token],
          );
          return false;
        }
        const ref = await this.refOf(row.target_id!);
        if (!ref) throw new Error('target not delivered');
        await this.chat.update(ref, row.message);
        await this.markSent(row, ref);
      } else {
        let threadTs: string | undefined;
        if (row.thread_of_id) {
          const parent = await this.refOf(row.thread_of_id);
          if (!parent) throw new Error('parent not delivered');
          threadTs = parent.ts;
        }
        const ref = await this.chat.post(row.channel, row.message, threadTs ? { threadTs } : {});
        await this.markSent(row, ref);
        // Its updates and replies may go now even if it had been parked.
        await this.db.query(
          `UPDATE warden_outbox SET parked = false WHERE (target_id = $1 OR thread_of_id = $1) AND status = 'pending' AND parked`,
          [row.id],
        );
      }
      return true;
    } catch (e) {
      const f = classifyDeliveryError(e);
      const backoff = Math.min(this.maxBackoffMs, this.baseBackoffMs * 2 ** Math.min(20, Math.max(0, row.attempts - 1)));
      const jittered = Math.round(backoff * (0.8 + Math.random() * 0.4));
      const delay = Math.min(this.maxBackoffMs, Math.max(f.retryAfterMs ?? 0, f.retryAfterMs !== undefined ? 0 : jittered));
      const log = f.transient ? this.logger.warn.bind(this.logger) : this.logger.error.bind(this.logger);
      log({ outboxId: row.id, kind: row.kind, attempts: row.attempts, reason: f.reason, retryInMs: delay }, 'alert delivery failed; will retry');
      await this.db.query(
        `UPDATE warden_outbox SET claimed_until = NULL, claim_token = NULL, last_error = $3, parked = $4,
                                  next_attempt_at = now() + make_interval(secs => $5::float8 / 1000)
          WHERE id = $1 AND claim_token = $2`,
        [row.id, row.claim_token, f.reason, !f.transient, delay],
      );
      if (!f.transient) {
        // Its updates and replies cannot go before it; they stop holding back the lane too.
        await this.db.query(
          `UPDATE warden_outbox SET parked = true WHERE (target_id = $1 OR thread_of_id = $1) AND status = 'pending'`,
          [row.id],
        );
      }
      // Rows of other lanes claimed in this round are still delivered.
      return false;
    }
  }

  private async markSent(row: OutboxRow, ref: PostedRef): Promise<void> {
    await this.db.query(
      `UPDATE warden_outbox SET status = 'sent', sent_at = now(), posted_channel = $3, posted_ts = $4,
                                claimed_until = NULL, last_error = NULL, parked = false
        WHERE id = $1 AND claim_token = $2`,
      [row.id, row.claim_token, ref.channel, ref.ts],
    );
  }
}
