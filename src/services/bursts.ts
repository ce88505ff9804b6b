import { SingleFlight } from './single-flight.js';
import { startWatcher } from './watcher.js';
import type { Config } from '../config.js';
import type { Db, Queryable } from '../db/index.js';
import type { Logger } from '../logger.js';
import type { Message } from '../ui.js';
import { burstMessage } from '../slack/cards/bursts.js';
import type { Masker } from './masking.js';
import type { Outbox } from './outbox.js';
import type { AlertStorms } from './storms.js';

/**
 * Brute-force alerts (issue 7): more than FAILED_LOGIN_BURST_THRESHOLD `login_failed` rows
 * from one IP within FAILED_LOGIN_BURST_WINDOW (seed: more than 5 in an hour), and more than
 * TWOFA_FAILURE_SPIKE_THRESHOLD `2fa_verify_failed` rows from one IP in the same window.
 *
 * One alert per IP per window: the first time an IP crosses the threshold an alert opens
 * with window_start = its first failure in the window; while failures keep coming before
 * window_start + window, the same message is UPDATED with the new count. After the window,
 * a burst that is still going opens a new alert.
 *
 * Woken by NOTIFY `warden_security` (a trigger on those audit rows), debounced, plus a
 * periodic scan; replicas serialise on the `burst_audit` cursor row, and each alert's
 * (kind, ip, window_start) key and outbox dedupe key make a double post impossible.
 */

export type BurstKind = 'failed_login' | '2fa_failed';

/** A burst alert's content (rendered by src/slack/cards/bursts.ts). */
export interface BurstAlertData {
  kind: BurstKind;
  /** "failed logins" / "failed 2FA verifications". */
  label: string;
  alert: BurstRow;
  windowSec: number;
  threshold: number;
}

const KINDS: { kind: BurstKind; action: string; label: string; thresholdKey: 'FAILED_LOGIN_BURST_THRESHOLD' | 'TWOFA_FAILURE_SPIKE_THRESHOLD' }[] = [
  { kind: 'failed_login', action: 'login_failed', label: 'failed logins', thresholdKey: 'FAILED_LOGIN_BURST_THRESHOLD' },
  { kind: '2fa_failed', action: '2fa_verify_failed', label: 'failed 2FA verifications', thresholdKey: 'TWOFA_FAILURE_SPIKE_THRESHOLD' },
];

const DEBOUNCE_MS = 500;
const SAFETY_SCAN_MS = 30_000;

export interface BurstDeps {
  config: Config;
  db: Db;
  outbox: Outbox;
  masker: Masker;
  logger: Logger;
  storms: AlertStorms;
}

export interface BurstRow {
  kind: BurstKind;
  ip_address: string;
  window_start: Date;
  count: number;
  usernames: string[];
  post_id: number;
  first_seen: Date;
  last_seen: Date;
  /** Set when the burst is part of a storm (counted in its summary instead of its own message). */
  storm_id?: number | null;
}

export class BurstAlerts {
  private readonly flight = new SingleFlight(() => this.scanOnce());

  constructor(private readonly deps: BurstDeps) {}

  get channel(): string | undefined {
    return this.deps.config.SECURITY_CHANNEL ?? this.deps.config.ALERTS_CHANNEL;
  }

  /** LISTEN warden_security (debounced) + a scan now + a safety scan. Returns stop(). */
  start(): Promise<() => Promise<void>> {
    return startWatcher({
      db: this.deps.db,
      channel: 'warden_security',
      name: 'bursts',
      logger: this.deps.logger,
      scan: () => this.scan(),
      idle: () => this.flight.idle(),
      safetyScanMs: SAFETY_SCAN_MS,
      debounceMs: DEBOUNCE_MS,
    });
  }

  /** Opens or updates burst alerts; returns how many messages (posts + updates) were queued. */
  scan(): Promise<number> {
    return this.flight.run();
  }

  private async scanOnce(): Promise<number> {
    const channel = this.channel;
    if (!channel) return 0;
    const { db, config } = this.deps;
    const windowSec = config.FAILED_LOGIN_BURST_WINDOW;
    return db.tx(async (q) => {
      // The cursor row is the mutex between replicas (position: newest audit id looked at).
      await q.query(
        `INSERT INTO warden_cursor (name, position) VALUES ('burst_audit', 0) ON CONFLICT (name) DO NOTHING`,
      );
      await q.query(`SELECT position FROM warden_cursor WHERE name = 'burst_audit' FOR UPDATE`);
      let queued = 0;
      for (const k of KINDS) {
        const threshold = config[k.thresholdKey];
        const { rows } = await q.query<{ ip: string; n: number; first: Date; last: Date }>(
          `SELECT ip_address AS ip, count(*)::int AS n, min("timestamp") AS first, max("timestamp") AS last
             FROM audit_log
            WHERE action = $1 AND "timestamp" > now() - make_interval(secs => $2::int) AND ip_address IS NOT NULL
            GROUP BY ip_address
           HAVING count(*) > $3
            ORDER BY ip_address`,
          [k.action, windowSec, threshold],
        );
        // Failed-login bursts from more IPs than the storm rate at once (credential stuffing) join
        // one storm summary instead of a message per IP; so does any burst while a storm is open.
        const activeIps = rows.filter((r) => new Date(r.last).getTime() > Date.now() - 60_000).length;
        const stormy = k.kind === 'failed_login' && rows.length > 0 && (await this.deps.storms.stormyForBursts(q, channel, activeIps));
        for (const r of rows) queued += await this.upsert(q, channel, k, r, windowSec, threshold, stormy);
        // Alerts whose window is still open but whose IP dropped under the sliding threshold
        // still get their count brought up to date.
        const open = await q.query<BurstRow>(
          `SELECT * FROM warden_burst_alert
            WHERE kind = $1 AND window_start > now() - make_interval(secs => $2::int) AND NOT (ip_address = ANY($3::text[]))`,
          [k.kind, windowSec, rows.map((r) => r.ip)],
        );
        for (const a of open.rows) queued += await this.refresh(q, k, a, windowSec, threshold);
      }
      await q.query(
        `UPDATE warden_cursor SET position = (SELECT coalesce(max(id), 0) FROM audit_log), updated_at = now() WHERE name = 'burst_audit'`,
      );
      await q.query(`DELETE FROM warden_burst_alert WHERE window_start < now() - interval '7 days'`);
      return queued;
    }).finally(() =>
      // A storm these bursts joined shows them once this transaction is committed.
      this.deps.storms.renderOwed().catch((err: unknown) => this.deps.logger.warn({ err }, 'rendering a storm message failed; the next scan retries')),
    );
  }

  private async upsert(
    q: Queryable,
    channel: string,
    k: (typeof KINDS)[number],
    r: { ip: string; n: number; first: Date; last: Date },
    windowSec: number,
    threshold: number,
    stormy: boolean,
  ): Promise<number> {
    const current = await q.query<BurstRow>(
      `SELECT * FROM warden_burst_alert
        WHERE kind = $1 AND ip_address = $2 AND window_start > now() - make_interval(secs => $3::int)
        ORDER BY window_start DESC LIMIT 1`,
      [k.kind, r.ip, windowSec],
    );
    if (current.rows[0]) return this.refresh(q, k, current.rows[0], windowSec, threshold);

    const stats = await this.stats(q, k.action, r.ip, r.first, windowSec);
    const inserted = await q.query<BurstRow>(
      `INSERT INTO warden_burst_alert (kind, ip_address, window_start, count, usernames, post_id, first_seen, last_seen)
       VALUES ($1, $2, $3, $4, $5, 0, $6, $7)
       ON CONFLICT DO NOTHING RETURNING *`,
      [k.kind, r.ip, r.first, stats.n, JSON.stringify(stats.usernames), stats.first, stats.last],
    );
    if (!inserted.rows[0]) return 0;
    const row = inserted.rows[0];
    if (stormy) {
      await this.deps.storms.addBurst(q, channel, { kind: k.kind, ip: r.ip, windowStart: row.window_start });
      return 1;
    }
    // (If a storm opens while this post still waits for the channel's pace, it is withdrawn into it.)
    const postId = await this.deps.outbox.post(q, channel, this.message(k, row, windowSec, threshold), {
      dedupeKey: `burst:${k.kind}:${r.ip}:${r.first.getTime()}`,
    });
    await q.query('UPDATE warden_burst_alert SET post_id = $4 WHERE kind = $1 AND ip_address = $2 AND window_start = $3', [
      k.kind,
      r.ip,
      row.window_start,
      postId,
    ]);
    return 1;
  }

  /** Brings an open alert's count up to date; queues an update only when it changed. */
  private async refresh(q: Queryable, k: (typeof KINDS)[number], a: BurstRow, windowSec: number, threshold: number): Promise<number> {
    const stats = await this.stats(q, k.action, a.ip_address, a.window_start, windowSec);
    if (stats.n === a.count) return 0;
    const { rows } = await q.query<BurstRow>(
      `UPDATE warden_burst_alert SET count = $4, usernames = $5, last_seen = $6, updated_at = now()
        WHERE kind = $1 AND ip_address = $2 AND window_start = $3 RETURNING *`,
      [k.kind, a.ip_address, a.window_start, stats.n, JSON.stringify(stats.usernames), stats.last],
    );
    if (rows[0].storm_id) {
      // Part of a storm: its summary shows the new count.
      await this.deps.storms.touch(q, rows[0].storm_id);
      if (!a.post_id) return 1;
    }
    // Its own message (also when a storm opened after it was posted).
    if (a.post_id) await this.deps.outbox.update(q, a.post_id, this.message(k, rows[0], windowSec, threshold));
    return 1;
  }

  /** Failures from one IP in [from, from + window). */
  private async stats(q: Queryable, action: string, ip: string, from: Date, windowSec: number) {
    const { rows } = await q.query<{ n: number; first: Date; last: Date; usernames: string[] | null }>(
      `SELECT count(*)::int AS n, min("timestamp") AS first, max("timestamp") AS last,
              array_agg(DISTINCT details->>'username') FILTER (WHERE details->>'username' IS NOT NULL) AS usernames
         FROM audit_log
        WHERE action = $1 AND ip_address = $2 AND "timestamp" >= $3
          AND "timestamp" < $3::timestamptz + make_interval(secs => $4::int)`,
      [action, ip, from, windowSec],
    );
    return { n: rows[0].n, first: rows[0].first, last: rows[0].last, usernames: (rows[0].usernames ?? []).sort() };
  }

  message(k: (typeof KINDS)[number], a: BurstRow, windowSec: number, threshold: number): Message {
    return burstMessage({ kind: k.kind, label: k.label, alert: a, windowSec, threshold }, this.deps.masker);
  }
}
