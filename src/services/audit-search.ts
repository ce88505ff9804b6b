import { z } from 'zod';
import { parseDuration } from '../config.js';
import type { Queryable } from '../db/index.js';
import { UserError } from '../errors.js';
import { scrubAuditRow } from './audit-scrub.js';

/**
 * The read side of the guide's "Audit Log Review": filtered search with keyset paging,
 * entity history, a user's timeline, the failed-logins and deletions investigations.
 *
 * Queries are written so that each shape is answered from an index on millions of rows:
 * - every page is `ORDER BY "timestamp" DESC, id DESC LIMIT n` with a keyset cursor
 *   (`("timestamp", id) < (…)`), never OFFSET;
 * - several actions, or a user who is either the actor or the username a row names, become
 *   one index-ordered branch each, merged with UNION (each branch reads at most n rows);
 * - `action:login*` is expanded to the actions that exist (a skip scan over
 *   idx_audit_action_timestamp), so it uses the same equality branches whatever the collation;
 * - the count line is the planner's estimate (labelled as such) when that says more than
 *   COUNT_CAP, else an exact count capped at COUNT_CAP (`LIMIT cap+1` inside each branch); it
 *   is worked out once per search — Next/Previous carry it instead of counting again.
 */

/** The seed's critical actions (kept by retention). It names the user deletion both ways. */
export const USER_DELETION_ACTIONS = ['user_deleted', 'delete_user'] as const;
export const CRITICAL_ACTIONS = ['delete_user', 'user_deleted', 'delete_bag', 'delete_bill', 'role_change'] as const;

/** Actions that mean the same thing (seed inconsistency: `user_deleted` vs `delete_user`). */
export function withAliases(actions: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const a of actions) {
    out.add(a);
    if ((USER_DELETION_ACTIONS as readonly string[]).includes(a)) for (const b of USER_DELETION_ACTIONS) out.add(b);
  }
  return [...out];
}

/** Is this action a deletion? (`delete_*` as in the guide's query, plus `*_deleted`.) */
export function isDeletionAction(action: string): boolean {
  return action.startsWith('delete_') || action.endsWith('_deleted');
}

export const PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;
export const COUNT_CAP = 1_000;
/** How far back Warden's narrow copy of failed logins reaches (sql/013_failed_login_rollup.sql). */
export const FAILED_LOGIN_COPY_DAYS = 31;

export const actionPatternSchema = z
  .string()
  .max(64, 'an action is at most 64 characters')
  .regex(/^[A-Za-z0-9_.-]+\*?$/, 'an action looks like `login_failed`, or `login*` for every action starting with login');
export const ipSchema = z
  .string()
  .max(45)
  .regex(/^[0-9A-Fa-f.:]{2,45}$/, 'ip must be an IPv4 or IPv6 address like 10.0.0.7');
export const entityTypeSchema = z.string().regex(/^[a-z][a-z0-9_]{0,31}$/, 'an entity type looks like `user`, `bag` or `bill`');
const isoTs = z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/);

/**
 * A search as typed, normalised and serialisable (paging buttons and export modals carry it).
 * Times are absolute, so the next page covers the same window as the first.
 */
export const auditQuerySchema = z
  .object({
    /** Action names or prefixes (`login*`); any of them. */
    a: z.array(actionPatternSchema).max(20).optional(),
    /** Username. */
    u: z.string().min(1).max(64).optional(),
    /** 'actor': rows done by the user; 'any' (default): done by them or naming them in details.username. */
    um: z.enum(['actor', 'any']).optional(),
    /** Entity type and id. */
    e: entityTypeSchema.optional(),
    ei: z.number().int().min(0).max(2_147_483_647).optional(),
    ip: ipSchema.optional(),
    /** since (inclusive), until (exclusive), ISO UTC. */
    s: isoTs.optional(),
    t: isoTs.optional(),
  })
  .strict();
export type AuditQuery = z.infer<typeof auditQuerySchema>;

/** Keyset cursor: the exact timestamp (microseconds, ISO) and id of a row. */
export const cursorSchema = z.tuple([isoTs, z.number().int().min(0)]);
export type Cursor = z.infer<typeof cursorSchema>;

export interface AuditRow {
  id: number;
  timestamp: Date;
  /** Exact timestamp for keyset cursors (microsecond precision, unlike Date). */
  ts_key: string;
  user_id: number | null;
  /** Username of the acting account, when it still exists. */
  actor: string | null;
  action: string;
  entity_type: string | null;
  entity_id: number | null;
  details: Record<string, unknown> | null;
  ip_address: string | null;
  before_state: Record<string, unknown> | null;
  after_state: Record<string, unknown> | null;
}

export interface AuditPage {
  rows: AuditRow[];
  /** Matches of the whole query (not the page), capped at COUNT_CAP. */
  total: number;
  totalCapped: boolean;
  /** When capped: the planner's estimate of all matches (a guess, shown as one). */
  estimate?: number;
  first?: Cursor;
  last?: Cursor;
  hasNext: boolean;
  hasPrev: boolean;
}

export interface Count {
  total: number;
  capped: boolean;
  /** Planner's estimate when capped. */
  estimate?: number;
}

export interface FailedLoginGroup {
  ip_address: string | null;
  username: string | null;
  attempts: number;
  first_attempt: Date;
  last_attempt: Date;
}

/** Time bounds: `24h`, `7d`, `30m`, `2w`, `2025-11-01`, `2025-11-01T10:00`, full ISO. */
export function parseTimeBound(text: string, kind: 'since' | 'until', now = new Date()): Date {
  const bad = () =>
    new UserError(
      `\`${kind}:${text}\` is not a time. Use a duration back from now (\`30m\`, \`24h\`, \`7d\`, \`2w\`) or a date (\`2025-11-01\`, \`2025-11-01T10:00\`, UTC).`,
    );
  const secs = parseDuration(text);
  if (secs !== undefined) {
    if (secs > 20 * 365 * 86400) throw bad();
    return new Date(now.getTime() - secs * 1000);
  }
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?(Z|[+-]\d{2}:?\d{2})?)?$/.exec(text.trim());
  if (!m) throw bad();
  const [, y, mo, d, hh, mi, ss, frac, zone] = m;
  const iso = `${y}-${mo}-${d}T${hh ?? '00'}:${mi ?? '00'}:${ss ?? '00'}${frac ? `.${frac.padEnd(3, '0').slice(0, 3)}` : ''}${
    zone ? (zone === 'Z' ? 'Z' : zone.length === 5 ? `${zone.slice(0, 3)}:${zone.slice(3)}` : zone) : 'Z'
  }`;
  const date = new Date(iso);
  // Rejects 2025-02-30 and 25:00 (Date would roll them over silently).
  if (Number.isNaN(date.getTime()) || Number(mo) < 1 || Number(mo) > 12 || Number(d) > 31 || Number(hh ?? 0) > 23 || Number(mi ?? 0) > 59 || Number(ss ?? 0) > 59) {
    throw bad();
  }
  const check = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  if (check.getUTCDate() !== Number(d)) throw bad();
  // A bare date as `until` means "up to the end of that day".
  if (kind === 'until' && hh === undefined) return new Date(date.getTime() + 86400_000);
  return date;
}

/** ISO with the trailing Z, as the query schema stores it. */
export const isoOf = (d: Date) => d.toISOString();

const ROW_COLUMNS = `a.id, a."timestamp", a.user_id, u.username AS actor, a.action, a.entity_type, a.entity_id,
  a.details, a.ip_address, a.before_state, a.after_state,
  to_char(a."timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS ts_key`;

/** A resolved query: exact actions, user id. Built per request (cheap). */
interface Resolved {
  /** undefined = any action; [] = the patterns matched no action (nothing can match). */
  actions?: string[];
  user?: { id: number; username: string; mode: 'actor' | 'any' };
  entityType?: string;
  entityId?: number;
  ip?: string;
  since?: string;
  until?: string;
}

class Params {
  readonly values: unknown[] = [];
  add(v: unknown): string {
    this.values.push(v);
    return `$${this.values.length}`;
  }
}

export class AuditSearch {
  constructor(private readonly db: Queryable) {}

  /** Every distinct action in audit_log: a skip scan over idx_audit_action_timestamp (one probe per action). */
  async distinctActions(): Promise<string[]> {
    const { rows } = await this.db.query<{ action: string }>(
      `WITH RECURSIVE a AS (
         (SELECT action FROM audit_log ORDER BY action LIMIT 1)
         UNION ALL
         SELECT (SELECT action FROM audit_log WHERE action > a.action ORDER BY action LIMIT 1) FROM a WHERE a.action IS NOT NULL
       )
       SELECT action FROM a WHERE action IS NOT NULL`,
    );
    return rows.map((r) => r.action);
  }

  /** Exact actions for patterns: names as given (plus aliases), `prefix*` expanded against the actions present. */
  async expandActions(patterns: string[]): Promise<string[]> {
    const exact = patterns.filter((p) => !p.endsWith('*'));
    const prefixes = patterns.filter((p) => p.endsWith('*')).map((p) => p.slice(0, -1));
    const out = new Set(exact);
    if (prefixes.length) {
      for (const a of await this.distinctActions()) if (prefixes.some((p) => a.startsWith(p))) out.add(a);
    }
    return withAliases(out).sort();
  }

  /** Account id of a username, or a usage error naming it. */
  async userIdOf(username: string): Promise<number> {
    const { rows } = await this.db.query<{ id: number }>('SELECT id FROM "user" WHERE username = $1', [username]);
    if (!rows[0]) {
      throw new UserError(`No user named \`${username}\`. Check the spelling with \`/users list q:${username.slice(0, 3)}\`.`);
    }
    return rows[0].id;
  }

  async resolve(q: AuditQuery): Promise<Resolved> {
    if (q.s && q.t && q.t <= q.s) throw new UserError('`until` must be after `since`.');
    const r: Resolved = { entityType: q.e, entityId: q.ei, ip: q.ip, since: q.s, until: q.t };
    if (q.a?.length) r.actions = await this.expandActions(q.a);
    if (q.u) r.user = { id: await this.userIdOf(q.u), username: q.u, mode: q.um ?? 'any' };
    return r;
  }

  /** WHERE conditions shared by every branch. */
  private common(r: Resolved, p: Params): string[] {
    const w: string[] = [];
    if (r.entityType) w.push(`entity_type = ${p.add(r.entityType)}`);
    if (r.entityId !== undefined) w.push(`entity_id = ${p.add(r.entityId)}`);
    if (r.ip) w.push(`ip_address = ${p.add(r.ip)}`);
    if (r.since) w.push(`"timestamp" >= ${p.add(r.since)}::timestamptz`);
    if (r.until) w.push(`"timestamp" < ${p.add(r.until)}::timestamptz`);
    return w;
  }

  /** One condition per index-ordered branch (actions × ways of matching the user). */
  private branches(r: Resolved, p: Params): string[][] {
    const actionAlts = r.actions ? r.actions.map((a) => [`action = ${p.add(a)}`]) : [[]];
    const userAlts: string[][] = !r.user
      ? [[]]
      : r.user.mode === 'actor'
        ? [[`user_id = ${p.add(r.user.id)}`]]
        : [[`user_id = ${p.add(r.user.id)}`], [`(details->>'username') = ${p.add(r.user.username)}`]];
    const out: string[][] = [];
    for (const a of actionAlts) for (const u of userAlts) out.push([...a, ...u]);
    return out;
  }

  /**
   * Keys (id, timestamp) of up to `limit` rows after/before a cursor, newest first when
   * direction is 'older'. Each branch is index-ordered and limited; UNION merges them.
   */
  private keysSql(r: Resolved, p: Params, cursor: Cursor | undefined, direction: 'older' | 'newer', limit: number): string {
    const common = this.common(r, p);
    if (cursor) {
      const ts = p.add(cursor[0]);
      const id = p.add(cursor[1]);
      common.push(direction === 'older' ? `("timestamp", id) < (${ts}::timestamptz, ${id}::bigint)` : `("timestamp", id) > (${ts}::timestamptz, ${id}::bigint)`);
    }
    const order = direction === 'older' ? '"timestamp" DESC, id DESC' : '"timestamp" ASC, id ASC';
    const lim = p.add(limit);
    const parts = this.branches(r, p).map((b) => {
      const where = [...b, ...common];
      return `SELECT id, "timestamp" FROM audit_log${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ${order} LIMIT ${lim}`;
    });
    if (parts.length === 1) return parts[0];
    return `SELECT id, "timestamp" FROM (${parts.map((s) => `(${s})`).join(' UNION ')}) b ORDER BY ${order} LIMIT ${lim}`;
  }

  private async fetchResolved(r: Resolved, cursor: Cursor | undefined, direction: 'older' | 'newer', limit: number): Promise<AuditRow[]> {
    if (r.actions && r.actions.length === 0) return [];
    const p = new Params();
    const keys = this.keysSql(r, p, cursor, direction, limit);
    const order = direction === 'older' ? 'k."timestamp" DESC, k.id DESC' : 'k."timestamp" ASC, k.id ASC';
    const { rows } = await this.db.query<AuditRow>(
      `WITH k AS (${keys})
       SELECT ${ROW_COLUMNS}
         FROM k JOIN audit_log a ON a.id = k.id
         LEFT JOIN "user" u ON u.id = a.user_id
        ORDER BY ${order}`,
      p.values,
    );
    // The one reader of audit rows for every view and export: secrets the application
    // wrote into details or snapshots are hidden here (issue 11).
    return rows.map(scrubAuditRow);
  }

  /** How many rows match, exactly up to `cap`; `estimate` allows the count line's planner estimate. */
  async count(q: AuditQuery, cap = COUNT_CAP, opts: { estimate?: boolean } = {}): Promise<Count> {
    return this.countResolved(await this.resolve(q), cap, opts.estimate ?? false);
  }

  /**
   * The count line. The planner's estimate first (one EXPLAIN: no row is read); when it says
   * more than `cap`, that estimate is the answer, shown as one ("about N"). Otherwise an
   * exact count of at most cap+1 rows per way of matching the user (actor, or named in
   * details), merged by id: each branch one index range, where an OR of both would
   * bitmap-scan every row of a heavy account before any limit applies. So no count reads
   * more than about `cap` rows, and big matches read none.
   */
  private async countResolved(r: Resolved, cap: number, allowEstimate: boolean): Promise<Count> {
    if (r.actions && r.actions.length === 0) return { total: 0, capped: false };
    const p = new Params();
    const where = this.common(r, p);
    if (r.actions) where.push(r.actions.length === 1 ? `action = ${p.add(r.actions[0])}` : `action = ANY(${p.add(r.actions)}::text[])`);
    const userAlts = !r.user
      ? [undefined]
      : r.user.mode === 'actor'
        ? [`user_id = ${p.add(r.user.id)}`]
        : [`user_id = ${p.add(r.user.id)}`, `(details->>'username') = ${p.add(r.user.username)}`];
    const all = [...where];
    if (userAlts.length > 1) all.push(`(${userAlts.join(' OR ')})`);
    else if (userAlts[0]) all.push(userAlts[0]);
    if (allowEstimate) {
      const estimate = await this.estimate(`SELECT 1 FROM audit_log${all.length ? ` WHERE ${all.join(' AND ')}` : ''}`, [...p.values]);
      if (estimate > cap) return { total: cap, capped: true, estimate };
    }
    const lim = p.add(cap + 1);
    const parts = userAlts.map((u) => {
      const w = u ? [...where, u] : where;
      return `SELECT id FROM audit_log${w.length ? ` WHERE ${w.join(' AND ')}` : ''} LIMIT ${lim}`;
    });
    const inner = parts.length === 1 ? parts[0] : parts.map((x) => `(${x})`).join(' UNION ');
    const { rows } = await this.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM (${inner}) s`, p.values);
    const n = rows[0].n;
    return n > cap ? { total: cap, capped: true } : { total: n, capped: false };
  }

  /** The planner's row estimate for a statement (no rows read). */
  private async estimate(sql: string, params: unknown[]): Promise<number> {
    const { rows } = await this.db.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${sql}`, params);
    const raw = rows[0]?.['QUERY PLAN'];
    const plan = (typeof raw === 'string' ? JSON.parse(raw) : raw) as { Plan?: { 'Plan Rows'?: number } }[];
    return Math.round(plan?.[0]?.Plan?.['Plan Rows'] ?? 0);
  }

  /**
   * One page, newest first. `after` = the last row of the page before (older rows next),
   * `before` = the first row of the page after (newer rows, for Previous).
   */
  async search(
    q: AuditQuery,
    page: { after?: Cursor; before?: Cursor } = {},
    limit = PAGE_SIZE,
    /** The count of the first page, carried by Next/Previous: not counted again. */
    known?: Count,
  ): Promise<AuditPage> {
    const r = await this.resolve(q);
    const size = Math.min(Math.max(1, limit), MAX_PAGE_SIZE);
    const backwards = !!page.before && !page.after;
    const [fetched, count] = await Promise.all([
      this.fetchResolved(r, backwards ? page.before : page.after, backwards ? 'newer' : 'older', size + 1),
      known ?? this.countResolved(r, COUNT_CAP, true),
    ]);
    const more = fetched.length > size;
    let rows = fetched.slice(0, size);
    if (backwards) rows = rows.reverse();
    const key = (row: AuditRow | undefined): Cursor | undefined => (row ? [row.ts_key, row.id] : undefined);
    return {
      rows,
      total: count.total,
      totalCapped: count.capped,
      ...(count.estimate ? { estimate: count.estimate } : {}),
      first: key(rows[0]),
      last: key(rows.at(-1)),
      hasNext: backwards ? true : more,
      hasPrev: page.after ? true : backwards ? more : false,
    };
  }

  /**
   * Every matching row, newest first, in keyset batches: the caller holds one batch at a
   * time (CSV export of 100,000 rows never has them all in memory).
   */
  async *batches(q: AuditQuery, batchSize = 1000): AsyncGenerator<AuditRow[]> {
    const r = await this.resolve(q);
    let cursor: Cursor | undefined;
    for (;;) {
      const rows = await this.fetchResolved(r, cursor, 'older', batchSize);
      if (rows.length) yield rows;
      if (rows.length < batchSize) return;
      const last = rows[rows.length - 1];
      cursor = [last.ts_key, last.id];
    }
  }

  /**
   * One statement for every matching row, newest first, at most `limit`, for `COPY … TO
   * STDOUT` (which takes no bind parameters): each value is a transaction-local setting read
   * back with current_setting() and cast, so the SQL text never contains a value. Columns are
   * text, in EXPORT_COLUMNS order. Undefined when nothing can match.
   */
  async exportStatement(q: AuditQuery, limit: number): Promise<{ select: string; settings: Record<string, string> } | undefined> {
    const r = await this.resolve(q);
    if (r.actions && r.actions.length === 0) return undefined;
    const settings: Record<string, string> = {};
    const v = (name: string, value: string | number, cast: string) => {
      settings[`warden_export.${name}`] = String(value);
      return `current_setting('warden_export.${name}')::${cast}`;
    };
    const w: string[] = [];
    if (r.entityType) w.push(`a.entity_type = ${v('e', r.entityType, 'text')}`);
    if (r.entityId !== undefined) w.push(`a.entity_id = ${v('ei', r.entityId, 'integer')}`);
    if (r.ip) w.push(`a.ip_address = ${v('ip', r.ip, 'text')}`);
    if (r.since) w.push(`a."timestamp" >= ${v('s', r.since, 'timestamptz')}`);
    if (r.until) w.push(`a."timestamp" < ${v('t', r.until, 'timestamptz')}`);
    if (r.actions) {
      w.push(`a.action = ANY (ARRAY(SELECT jsonb_array_elements_text(${v('a', JSON.stringify(r.actions), 'jsonb')})))`);
    }
    if (r.user) {
      const byActor = `a.user_id = ${v('u', r.user.id, 'integer')}`;
      w.push(r.user.mode === 'actor' ? byActor : `(${byActor} OR (a.details->>'username') = ${v('un', r.user.username, 'text')})`);
    }
    const select = `SELECT a.id, to_char(a."timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), u.username, a.user_id,
              a.action, a.entity_type, a.entity_id, a.ip_address, a.details, a.before_state, a.after_state
         FROM audit_log a LEFT JOIN "user" u ON u.id = a.user_id
        ${w.length ? `WHERE ${w.join(' AND ')}` : ''}
        ORDER BY a."timestamp" DESC, a.id DESC
        LIMIT ${v('limit', limit, 'bigint')}`;
    return { select, settings };
  }

  /**
   * The guide's "failed logins from same IP", grouped by IP and username, over a window,
   * groups with at least `min` attempts. Ordered by the aggregate itself (the guide's
   * `ORDER BY count DESC` is rejected by PostgreSQL: `count` is not a column).
   *
   * Answered from Warden's own tables (sql/013_failed_login_rollup.sql), not by grouping every
   * login_failed row of the window: the (ip, username) pairs that have at least `min` attempts
   * in total and one inside the window are the only possible groups, and each is counted
   * exactly from an index-only range scan of the narrow copy — of the window itself, or for a
   * window longer than half the copy, of what lies before it (subtracted from the exact
   * per-pair counter). `min: 1` adds the single attempts from the pair table (below); windows
   * beyond what the copy keeps read audit_log itself.
   */
  async failedLogins(windowSeconds: number, min: number, limit = 50): Promise<{ groups: FailedLoginGroup[]; totalGroups: number }> {
    const params = [windowSeconds, min, limit];
    let sql: string;
    if (windowSeconds > FAILED_LOGIN_COPY_DAYS * 86400) {
      sql = `SELECT ip_address, details->>'username' AS username, count(*)::int AS attempts,
                    min("timestamp") AS first_attempt, max("timestamp") AS last_attempt,
                    (count(*) OVER ())::int AS total_groups
               FROM audit_log
              WHERE action = 'login_failed'
                AND "timestamp" > now() - make_interval(secs => $1)
              GROUP BY ip_address, details->>'username'
             HAVING count(*) >= $2
              ORDER BY count(*) DESC, max("timestamp") DESC
              LIMIT $3`;
    } else {
      // The pair's counter is exact for the copy: a long window is counted from its short end.
      const long = windowSeconds > (FAILED_LOGIN_COPY_DAYS * 86400) / 2;
      const since = `now() - make_interval(secs => $1)`;
      const pair = `f.ip_address = c.ip_address AND f.username = c.username`;
      // Short window: one index-only range scan per pair gives count, first and last.
      // Long window: the rows before it are counted and subtracted; first and last are
      // one index probe each. OFFSET 0 keeps the planner from inlining the subquery, which
      // evaluated the count twice (in the filter and in the output).
      const lateral = long
        ? `SELECT (c.attempts - (SELECT count(*) FROM warden_failed_login f WHERE ${pair} AND f."timestamp" <= ${since}))::int AS attempts,
                  (SELECT min(f."timestamp") FROM warden_failed_login f WHERE ${pair} AND f."timestamp" > ${since}) AS first_attempt,
                  (SELECT max(f."timestamp") FROM warden_failed_login f WHERE ${pair}) AS last_attempt
           OFFSET 0`
        : `SELECT count(*)::int AS attempts, min(f."timestamp") AS first_attempt, max(f."timestamp") AS last_attempt
             FROM warden_failed_login f WHERE ${pair} AND f."timestamp" > ${since}`;
      const repeated = `FROM warden_failed_login_pair c
              CROSS JOIN LATERAL (${lateral}) x
              WHERE c.attempts >= 2 AND c.attempts >= $2
                AND c.last_at > ${since}
                AND x.attempts >= $2
              ORDER BY x.attempts DESC, x.last_attempt DESC
              LIMIT $3`;
      if (min >= 2) {
        sql = `SELECT nullif(c.ip_address, '') AS ip_address, nullif(c.username, '') AS username, x.attempts,
                      x.first_attempt, x.last_attempt, (count(*) OVER ())::int AS total_groups
                 ${repeated}`;
      } else {
        // min 1, without grouping every attempt of the window: a pair's last_at is its newest
        // attempt (sql/019), so "last_at in the window" is exactly "a group of the window" and
        // the total is a count of the pair table's index. The groups of two or more attempts
        // (above, with min 2) come first; when they do not fill the page, all of them are on
        // it, so every other pair in the window has exactly one attempt, at last_at: those
        // follow, newest first (a LIMIT of 0 reads nothing). One statement, one now().
        params[1] = 2;
        sql = `WITH rep AS MATERIALIZED (
                 SELECT c.ip_address AS raw_ip, c.username AS raw_username, x.attempts, x.first_attempt, x.last_attempt
                 ${repeated})
               SELECT nullif(u.raw_ip, '') AS ip_address, nullif(u.raw_username, '') AS username, u.attempts,
                      u.first_attempt, u.last_attempt,
                      (SELECT count(*) FROM warden_failed_login_pair p WHERE p.last_at > ${since})::int AS total_groups
                 FROM (SELECT 0 AS part, rep.* FROM rep
                       UNION ALL
                       (SELECT 1, c.ip_address, c.username, 1, c.last_at, c.last_at
                          FROM warden_failed_login_pair c
                         WHERE c.last_at > ${since}
                           AND NOT EXISTS (SELECT 1 FROM rep r WHERE r.raw_ip = c.ip_address AND r.raw_username = c.username)
                         ORDER BY c.last_at DESC
                         LIMIT $3 - (SELECT count(*) FROM rep))) u
                ORDER BY u.part, u.attempts DESC, u.last_attempt DESC`;
      }
    }
    const { rows } = await this.db.query<FailedLoginGroup & { total_groups: number }>(sql, params);
    return {
      groups: rows.map(({ total_groups: _t, ...g }) => g),
      totalGroups: rows[0]?.total_groups ?? 0,
    };
  }

  /** Deletion actions present in the log (`delete_*`, `*_deleted`, both user-deletion names). */
  async deletionActions(): Promise<string[]> {
    return withAliases((await this.distinctActions()).filter(isDeletionAction)).sort();
  }
}

/** Fields whose values differ between two snapshots (the history diff). */
export function diffSnapshots(
  before: Record<string, unknown> | null,
  after: Record<string, unknown> | null,
): { field: string; before: unknown; after: unknown }[] {
  const b = before ?? {};
  const a = after ?? {};
  const keys = [...new Set([...Object.keys(b), ...Object.keys(a)])].sort();
  return keys
    .filter((k) => JSON.stringify(b[k] ?? null) !== JSON.stringify(a[k] ?? null))
    .map((k) => ({ field: k, before: b[k] ?? null, after: a[k] ?? null }));
}
