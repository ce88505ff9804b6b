import { SingleFlight } from './single-flight.js';
import { startWatcher } from './watcher.js';
import type { Config } from '../config.js';
import type { Db, Queryable } from '../db/index.js';
import { NotFoundError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Message } from '../ui.js';
import { lockoutCard } from '../slack/cards/lockouts.js';
import { requireAdmin, type Actor } from './identity.js';
import type { Masker } from './masking.js';
import { scrubAuditRow } from './audit-scrub.js';
import type { Outbox } from './outbox.js';
import type { AlertStorms, StormRow } from './storms.js';

/**
 * Lockout alerts (issue 7): an account reaching `login_locked` is posted to
 * SECURITY_CHANNEL within seconds, with the recent failed attempts and Unlock / Show
 * attempts buttons.
 *
 * Two sources, one alert per lockout episode:
 * - `audit_log` rows with action `login_locked` (cursor `lockout_audit` over audit_log.id);
 * - `"user".locked_until` set in the future by the application: a trigger records a
 *   `warden_lock_event` row (cursor `lockout_user_event`).
 * Both triggers NOTIFY `warden_lockout` at commit, which wakes scan() on every replica; the
 * cursor rows are locked FOR UPDATE for the scan, so replicas take turns and each event is
 * handled once. A scan at start catches up what happened while Warden was down. Every
 * handled event is remembered in `warden_lockout_source`, so the scan can also re-read the
 * last minutes (a transaction that committed late with a lower id is not skipped).
 *
 * An application that writes both an audit row and locked_until for one lockout gets one
 * alert: an event for an account whose alerted lock is still running is merged into that
 * alert (its card is updated if the lock end changed).
 */

export interface LockoutAlertRow {
  id: number;
  user_id: number | null;
  username: string;
  locked_at: Date;
  locked_until: Date | null;
  audit_id: number | null;
  post_id: number;
  unlocked_by: string | null;
  unlocked_at: Date | null;
  /** Set when the lockout is part of a storm (one summary message instead of a card). */
  storm_id?: number | null;
}

/** A lockout seen in audit_log (login_locked) or in warden_lock_event (locked_until set). */
interface LockoutEvent {
  source: string;
  /** Position in its source's cursor (audit_log.id or warden_lock_event.id). */
  cursorId: number;
  at: Date;
  userId: number | null;
  username: string | null;
  lockedUntil: Date | null;
  auditId: number | null;
  dedupe: string;
  deliberate?: boolean;
}

interface AccountInfo {
  id: number;
  username: string;
  email: string;
  role: string;
  locked_until: Date | null;
  failed_login_attempts: number | null;
}

/** A lockout card's content. */
export interface LockoutCardData {
  alert: LockoutAlertRow;
  /** The account as it is now; null when it no longer exists. */
  account: { role: string; email: string } | null;
  attempts: AttemptRow[];
}

export interface LockoutAttempts {
  alert: LockoutAlertRow;
  attempts: AttemptRow[];
}

export interface AttemptRow {
  timestamp: Date;
  ip_address: string | null;
  details: Record<string, unknown> | null;
}

/** How far back the re-read of already-passed ids goes (late commits). */
const RESCAN_MINUTES = 10;
/** A lock without a known end is treated as running this long for merging events. */
const UNKNOWN_LOCK_MINUTES = 30;
const BATCH = 200;
/** Events handled in one transaction (a wave's first lockouts reach the outbox after at most these). */
const CHUNK = 20;

/** What the events of one chunk share: the channel's open storm (read once), storms to touch at its end. */
interface ChunkScan {
  open?: StormRow | null;
  storms: Set<number>;
}
const SAFETY_SCAN_MS = 15_000;

export interface LockoutDeps {
  config: Config;
  db: Db;
  outbox: Outbox;
  masker: Masker;
  logger: Logger;
  storms: AlertStorms;
}

export class LockoutAlerts {
  private readonly flight = new SingleFlight(async () => {
    // Batch after batch until one comes back short: the cursor has caught up.
    let total = 0;
    let n: number;
    do {
      n = await this.scanBatch();
      total += n;
    } while (n >= BATCH);
    return total;
  });

  constructor(private readonly deps: LockoutDeps) {}

  /** Where lockout alerts go: SECURITY_CHANNEL, else ALERTS_CHANNEL, else nowhere. */
  get channel(): string | undefined {
    return this.deps.config.SECURITY_CHANNEL ?? this.deps.config.ALERTS_CHANNEL;
  }

  /** LISTEN warden_lockout + a catch-up scan now + a slow safety scan. Returns stop(). */
  start(): Promise<() => Promise<void>> {
    return startWatcher({
      db: this.deps.db,
      channel: 'warden_lockout',
      name: 'lockouts',
      logger: this.deps.logger,
      scan: () => this.scan(),
      idle: () => this.flight.idle(),
      safetyScanMs: SAFETY_SCAN_MS,
    });
  }

  /** Handles every lockout event not handled yet; returns how many alerts were queued. */
  scan(): Promise<number> {
    return this.flight.run();
  }

  /**
   * One batch: the candidates are read without locks, then handled in short transactions of
   * at most CHUNK events each (alert, merge or storm, outbox rows, source records and the
   * cursor commit together), so the outbox sees the first lockouts of a wave while the rest
   * are scanned — a wave of 200 lockouts is neither one long transaction (issue 15) nor 200
   * transactions paying the cursor lock, the source records and a storm update each.
   */
  private async scanBatch(): Promise<number> {
    const { config, logger } = this.deps;
    const { events, full } = await this.readBatch();
    const channel = this.channel;
    const catchUpFrom = Date.now() - config.LOCKOUT_CATCHUP_WINDOW * 1000;
    let queued = 0;
    let skippedOld = 0;
    for (let i = 0; i < events.length; i += CHUNK) {
      const outcomes = await this.handleChunk(events.slice(i, i + CHUNK), events.length - i, channel, catchUpFrom);
      queued += outcomes.filter((o) => o === 'queued').length;
      skippedOld += outcomes.filter((o) => o === 'old').length;
      // A storm's message follows off these transactions: at most one render in flight, a few a
      // second, each showing every lockout committed before it (the wave never waits for it).
      this.renderStorms();
    }
    if (skippedOld) logger.info({ skipped: skippedOld }, 'lockouts older than LOCKOUT_CATCHUP_WINDOW were not posted');
    if (!channel && events.length) logger.warn({ events: events.length }, 'lockouts seen but neither SECURITY_CHANNEL nor ALERTS_CHANNEL is set');
    // Caught up: the storm message shows this batch's last lockout before the scan returns.
    await this.deps.storms.renderOwed().catch((err: unknown) => logger.warn({ err }, 'rendering a storm message failed; the next scan retries'));
    if (!full) {
      // Housekeeping of the idempotency records well past the re-read horizon (once caught up).
      await this.deps.db.query(`DELETE FROM warden_lockout_source WHERE created_at < now() - interval '2 days'`);
      await this.deps.db.query(`DELETE FROM warden_lock_event WHERE created_at < now() - interval '2 days'`);
    }
    return full ? BATCH : queued;
  }

  /** Up to CHUNK events in one transaction; `remaining` counts them and the rest of the batch. */
  private async handleChunk(
    chunk: LockoutEvent[],
    remaining: number,
    channel: string | undefined,
    catchUpFrom: number,
  ): Promise<('queued' | 'old' | 'other' | 'seen')[]> {
    return this.deps.db.tx(async (q) => {
      // The cursor rows are the mutex: a second replica waits here, then finds the events handled.
      await q.query(`SELECT name FROM warden_cursor WHERE name IN ('lockout_audit', 'lockout_user_event') ORDER BY name FOR UPDATE`);
      const seen = new Set(
        (await q.query<{ source: string }>('SELECT source FROM warden_lockout_source WHERE source = ANY($1::text[])', [chunk.map((e) => e.source)])).rows.map(
          (r) => r.source,
        ),
      );
      const accounts = await this.accounts(q, chunk);
      const scan: ChunkScan = { storms: new Set() };
      const outcomes: ('queued' | 'old' | 'other' | 'seen')[] = [];
      const sources: string[] = [];
      const alertIds: (number | null)[] = [];
      const cursors = { lockout_audit: 0, lockout_user_event: 0 };
      for (let j = 0; j < chunk.length; j++) {
        const ev = chunk[j];
        if (seen.has(ev.source)) {
          outcomes.push('seen');
          continue;
        }
        let alertId: number | null = null;
        let result: 'queued' | 'old' | 'other' = 'other';
        if (!channel || ev.deliberate) {
          // Nowhere to post, or not a lockout: remember it was seen so it is not posted later.
        } else if (ev.at.getTime() < catchUpFrom) {
          result = 'old';
        } else {
          // The rest of this batch counts towards the rate: a wave is recognised from its first lockout.
          const account = accounts.get(ev.userId !== null ? `id:${ev.userId}` : `name:${ev.username}`) ?? null;
          alertId = await this.handle(q, channel, ev, account, remaining - j - 1, scan);
          if (alertId !== null && alertId > 0) result = 'queued';
          if (alertId !== null) alertId = Math.abs(alertId);
        }
        sources.push(ev.source);
        alertIds.push(alertId);
        const cursor = ev.auditId !== null ? 'lockout_audit' : 'lockout_user_event';
        cursors[cursor] = Math.max(cursors[cursor], ev.cursorId);
        outcomes.push(result);
      }
      if (sources.length) {
        await q.query(
          `INSERT INTO warden_lockout_source (source, alert_id) SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING`,
          [sources, alertIds],
        );
      }
      for (const [name, position] of Object.entries(cursors)) {
        if (position > 0) await q.query(`UPDATE warden_cursor SET position = GREATEST(position, $2), updated_at = now() WHERE name = $1`, [name, position]);
      }
      // One storm update owed for the whole chunk (rendered after the commit).
      for (const stormId of scan.storms) await this.deps.storms.touch(q, stormId, true);
      return outcomes;
    });
  }

  /** The accounts of a chunk's events, by `id:N` and `name:USERNAME`, in one query. */
  private async accounts(q: Queryable, chunk: LockoutEvent[]): Promise<Map<string, AccountInfo>> {
    const ids = [...new Set(chunk.map((e) => e.userId).filter((id): id is number => id !== null))];
    const names = [...new Set(chunk.filter((e) => e.userId === null && e.username).map((e) => e.username!))];
    const found = new Map<string, AccountInfo>();
    if (!ids.length && !names.length) return found;
    const { rows } = await q.query<AccountInfo>(
      `SELECT id, username, email, role, locked_until, failed_login_attempts FROM "user" WHERE id = ANY($1::int[]) OR username = ANY($2::text[])`,
      [ids, names],
    );
    for (const r of rows) {
      if (ids.includes(r.id)) found.set(`id:${r.id}`, r);
      if (names.includes(r.username)) found.set(`name:${r.username}`, r);
    }
    return found;
  }

  private renderStorms(): void {
    this.deps.storms.renderSoon();
  }

  /** The lockout events not handled yet (both sources, oldest first), read without locks. */
  private async readBatch(): Promise<{ events: LockoutEvent[]; full: boolean }> {
    const { db, logger } = this.deps;
    const cursors = await db.query<{ name: string; position: number }>(
      `SELECT name, position FROM warden_cursor WHERE name IN ('lockout_audit', 'lockout_user_event')`,
    );
    const pos = Object.fromEntries(cursors.rows.map((r) => [r.name, r.position]));
    let auditPos = pos.lockout_audit ?? 0;
    const userPos = pos.lockout_user_event ?? 0;
    // audit_log restarted its ids (restored, truncated): follow it rather than wait forever.
    const maxAudit = (await db.query<{ m: number }>('SELECT coalesce(max(id), 0) AS m FROM audit_log')).rows[0].m;
    if (auditPos > maxAudit) {
      logger.warn({ cursor: auditPos, maxAudit }, 'audit_log ids went backwards; lockout cursor follows');
      auditPos = maxAudit;
      await db.query(`UPDATE warden_cursor SET position = $1, updated_at = now() WHERE name = 'lockout_audit'`, [maxAudit]);
    }

    const audits = await db.query<{ id: number; at: Date; user_id: number | null; username: string | null }>(
      `SELECT a.id, a."timestamp" AS at, a.user_id, a.details->>'username' AS username
         FROM audit_log a
        WHERE a.id IN (
                -- Two index range scans (primary key past the cursor; action + recent time)
                -- rather than one OR that walks every login_locked entry of the index.
                SELECT id FROM audit_log WHERE id > $1 AND action = 'login_locked'
                UNION ALL
                SELECT id FROM audit_log WHERE action = 'login_locked' AND "timestamp" > now() - make_interval(mins => $2::int))
          AND NOT EXISTS (SELECT 1 FROM warden_lockout_source s WHERE s.source = 'audit:' || a.id)
        ORDER BY a.id
        LIMIT ${BATCH}`,
      [auditPos, RESCAN_MINUTES],
    );
    // Not lockouts: an admin locking or disabling an account on purpose (the same
    // transaction wrote a user_updated/role_change audit row — Warden's /users edit or the
    // dashboard), or "disabled" (locked until the year 9999).
    const users = await db.query<{ id: number; at: Date; user_id: number; locked_until: Date; deliberate: boolean }>(
      `SELECT e.id, e.created_at AS at, e.user_id, e.locked_until,
              (e.locked_until >= '9000-01-01'::timestamptz
               OR EXISTS (SELECT 1 FROM audit_log a
                           WHERE a.entity_type = 'user' AND a.entity_id = e.user_id
                             AND a.action IN ('user_updated', 'role_change') AND a."timestamp" = e.created_at)) AS deliberate
         FROM warden_lock_event e
        WHERE (e.id > $1 OR e.created_at > now() - make_interval(mins => $2::int))
          AND NOT EXISTS (SELECT 1 FROM warden_lockout_source s WHERE s.source = 'user:' || e.id)
        ORDER BY e.id
        LIMIT ${BATCH}`,
      [userPos, RESCAN_MINUTES],
    );
    const events: LockoutEvent[] = [
      ...audits.rows.map((r) => ({
        source: `audit:${r.id}`,
        cursorId: r.id,
        at: r.at,
        userId: r.user_id,
        username: r.username,
        lockedUntil: null,
        auditId: r.id,
        dedupe: `lockout:audit:${r.id}`,
      })),
      ...users.rows.map((r) => ({
        source: `user:${r.id}`,
        cursorId: r.id,
        at: r.at,
        userId: r.user_id,
        username: null,
        lockedUntil: r.locked_until,
        auditId: null,
        dedupe: `lockout:user:${r.user_id}:${r.locked_until.getTime()}`,
        deliberate: r.deliberate,
      })),
    ].sort((x, y) => x.at.getTime() - y.at.getTime());
    return { events, full: audits.rows.length >= BATCH || users.rows.length >= BATCH };
  }

  /**
   * One event: merged into the running alert of the same account, or a new alert.
   * Returns the alert id (positive when a new alert was queued, negative when merged),
   * or null when the account is unknown.
   */
  private async handle(q: Queryable, channel: string, ev: LockoutEvent, account: AccountInfo | null, comingInBatch: number, scan: ChunkScan): Promise<number | null> {
    const username = account?.username ?? ev.username;
    if (!username) return null;
    const lockedUntil = ev.lockedUntil ?? (account?.locked_until && account.locked_until > ev.at ? account.locked_until : null);

    const running = await q.query<LockoutAlertRow>(
      `SELECT * FROM warden_lockout_alert
        WHERE ${account ? 'user_id = $1' : 'user_id IS NULL AND username = $1'}
          AND unlocked_at IS NULL
          AND coalesce(locked_until, locked_at + make_interval(mins => $3::int)) >= $2
        ORDER BY id DESC LIMIT 1`,
      [account ? account.id : username, ev.at, UNKNOWN_LOCK_MINUTES],
    );
    const existing = running.rows[0];
    if (existing) {
      const changes: string[] = [];
      const params: unknown[] = [existing.id];
      if (lockedUntil && (!existing.locked_until || existing.locked_until.getTime() !== lockedUntil.getTime())) {
        params.push(lockedUntil);
        changes.push(`locked_until = $${params.length}`);
      }
      if (ev.auditId && !existing.audit_id) {
        params.push(ev.auditId);
        changes.push(`audit_id = $${params.length}`);
      }
      if (changes.length) {
        const { rows } = await q.query<LockoutAlertRow>(`UPDATE warden_lockout_alert SET ${changes.join(', ')} WHERE id = $1 RETURNING *`, params);
        if (lockedUntil && changes.some((c) => c.startsWith('locked_until'))) await this.queueCardUpdate(q, rows[0]);
      }
      return -existing.id;
    }

    const { rows } = await q.query<{ id: number }>(
      `INSERT INTO warden_lockout_alert (user_id, username, locked_at, locked_until, audit_id, post_id)
       VALUES ($1, $2, $3, $4, $5, 0) RETURNING id`,
      [account?.id ?? null, username, ev.at, lockedUntil, ev.auditId],
    );
    const alert: LockoutAlertRow = {
      id: rows[0].id,
      user_id: account?.id ?? null,
      username,
      locked_at: ev.at,
      locked_until: lockedUntil,
      audit_id: ev.auditId,
      post_id: 0,
      unlocked_by: null,
      unlocked_at: null,
    };
    const { storms, config } = this.deps;
    // A storm: one summary message for all of them instead of a card each.
    // The open storm is read (and locked) once per chunk.
    if (scan.open === undefined) scan.open = await storms.open(q, channel);
    const stormy = scan.open || (await storms.lockoutsLastMinute(q)) + comingInBatch > storms.perMinute;
    if (stormy) {
      const joined = await storms.addLockout(q, channel, alert.id, scan.open, { deferTouch: true });
      scan.open = joined.storm;
      // A storm joined (not opened) owes an update, done once for the chunk at its end.
      if (!joined.opened) scan.storms.add(joined.storm.id);
      return alert.id;
    }
    // A single lockout's card waits a moment for the rest of a possible wave (then it is withdrawn into the storm).
    const postId = await this.deps.outbox.post(q, channel, await this.card(q, alert), { dedupeKey: ev.dedupe, holdMs: config.LOCKOUT_STORM_HOLD_MS });
    await q.query('UPDATE warden_lockout_alert SET post_id = $2 WHERE id = $1', [alert.id, postId]);
    return alert.id;
  }

  private async account(q: Queryable, userId: number | null, username: string | null): Promise<AccountInfo | null> {
    if (userId === null && !username) return null;
    const { rows } = await q.query<AccountInfo>(
      `SELECT id, username, email, role, locked_until, failed_login_attempts FROM "user"
        WHERE ${userId !== null ? 'id = $1' : 'username = $1'}`,
      [userId ?? username],
    );
    return rows[0] ?? null;
  }

  /** The guide's "investigate lockout" query, limited to the day before the lockout. */
  async attempts(q: Queryable, username: string, before: Date | null, limit: number): Promise<AttemptRow[]> {
    const { rows } = await q.query<AttemptRow>(
      `SELECT "timestamp", ip_address, details
         FROM audit_log
        WHERE action = 'login_failed' AND details->>'username' = $1
          AND ($2::timestamptz IS NULL OR ("timestamp" <= $2::timestamptz + interval '1 minute'
                                            AND "timestamp" > $2::timestamptz - interval '1 day'))
        ORDER BY "timestamp" DESC
        LIMIT $3`,
      [username, before, limit],
    );
    return rows.map(scrubAuditRow);
  }

  /** What the alert card shows (rendered by src/slack/cards/lockouts.ts). */
  async cardData(q: Queryable, alert: LockoutAlertRow): Promise<LockoutCardData> {
    const account = await this.account(q, alert.user_id, alert.user_id === null ? alert.username : null);
    const attempts = await this.attempts(q, alert.username, alert.locked_at, 5);
    return { alert, account: account ? { role: account.role, email: account.email } : null, attempts };
  }

  private async card(q: Queryable, alert: LockoutAlertRow): Promise<Message> {
    return lockoutCard(await this.cardData(q, alert), this.deps.masker);
  }

  async get(alertId: number): Promise<LockoutAlertRow> {
    const { rows } = await this.deps.db.query<LockoutAlertRow>('SELECT * FROM warden_lockout_alert WHERE id = $1', [alertId]);
    if (!rows[0]) throw new NotFoundError('That lockout alert no longer exists.');
    return rows[0];
  }

  /** Failed logins behind a lockout, for the Show attempts button (admins). */
  async showAttempts(actor: Actor, alertId: number): Promise<LockoutAttempts> {
    requireAdmin(actor, 'see failed login attempts');
    const alert = await this.get(alertId);
    const attempts = await this.attempts(this.deps.db, alert.username, alert.locked_at, 20);
    return { alert, attempts };
  }

  /**
   * Records on the alert that the account was unlocked and queues the card update.
   * The unlock itself (with its audit row) is done by the caller's unlock service.
   */
  /** Marks the card unlocked; in `inTx` when given (the unlock's own transaction), else in its own. */
  async markUnlocked(actor: Actor, alertId: number, inTx?: Queryable): Promise<LockoutAlertRow> {
    const run = (fn: (q: Queryable) => Promise<LockoutAlertRow>) => (inTx ? fn(inTx) : this.deps.db.tx(fn));
    return run(async (q) => {
      const { rows } = await q.query<LockoutAlertRow>(
        `UPDATE warden_lockout_alert SET unlocked_by = $2, unlocked_at = now()
          WHERE id = $1 AND unlocked_at IS NULL RETURNING *`,
        [alertId, actor.user.username],
      );
      if (rows[0]) await this.queueCardUpdate(q, rows[0]);
      return rows[0] ?? (await this.get(alertId));
    });
  }

  /**
   * An account was unlocked some other way (`/users unlock`, the account card's button):
   * every open lockout card of that account says so too, so the channel never shows a
   * lock that is gone. Returns how many cards were updated. With `inTx`, in the unlock's own
   * transaction, so that the account and its cards can never disagree after a crash.
   */
  async markUserUnlocked(actor: Actor, userId: number, inTx?: Queryable): Promise<number> {
    const run = (fn: (q: Queryable) => Promise<number>) => (inTx ? fn(inTx) : this.deps.db.tx(fn));
    return run(async (q) => {
      const { rows } = await q.query<LockoutAlertRow>(
        `UPDATE warden_lockout_alert SET unlocked_by = $2, unlocked_at = now()
          WHERE user_id = $1 AND unlocked_at IS NULL RETURNING *`,
        [userId, actor.user.username],
      );
      for (const alert of rows) await this.queueCardUpdate(q, alert);
      return rows.length;
    });
  }

  private async queueCardUpdate(q: Queryable, alert: LockoutAlertRow): Promise<void> {
    // In a storm: its summary message says it too.
    if (alert.storm_id) await this.deps.storms.touch(q, alert.storm_id);
    // No card (a storm's lockout), a card withdrawn into a storm, or one pruned from the outbox
    // long after (30 days): then there is no card to update.
    if (!alert.post_id) return;
    const card = await q.query(`SELECT 1 FROM warden_outbox WHERE id = $1 AND status <> 'superseded'`, [alert.post_id]);
    if (card.rows.length) await this.deps.outbox.update(q, alert.post_id, await this.card(q, alert));
  }

  /** A lockout alert's card, for the storm's "individual cards on demand". */
  async cardOf(q: Queryable, alertId: number): Promise<Message> {
    const { rows } = await q.query<LockoutAlertRow>('SELECT * FROM warden_lockout_alert WHERE id = $1', [alertId]);
    if (!rows[0]) throw new NotFoundError('That lockout alert no longer exists.');
    return this.card(q, rows[0]);
  }
}
