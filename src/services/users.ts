import { z } from 'zod';
import type { Db } from '../db/index.js';
import { NotFoundError, UserError } from '../errors.js';
import { USER_COLUMNS, userRowSchema, type Role, type UserRow } from '../domain/user.js';

export const PAGE_SIZE = 20;

export interface UserFilter {
  role?: Role;
  status?: 'active' | 'locked';
  area?: string;
  /** Part of a username or e-mail. */
  q?: string;
}

export interface UserPage {
  users: UserRow[];
  total: number;
  /** Usernames bounding this page, for keyset paging in either direction. */
  first?: string;
  last?: string;
  hasNext: boolean;
  hasPrev: boolean;
}

export interface FailedAttempt {
  timestamp: Date;
  ip_address: string | null;
  details: Record<string, unknown> | null;
}

/**
 * Usernames are matched case-insensitively: an exact match wins; otherwise a single match
 * that differs only in case. Use with pickUsernameMatch.
 */
export function usernameLookupSql(columns: string, forUpdate = false): string {
  return `SELECT ${columns} FROM "user" WHERE lower(username) = lower($1) ORDER BY (username = $1) DESC, id LIMIT 2${forUpdate ? ' FOR UPDATE' : ''}`;
}

export function pickUsernameMatch<T extends { username?: unknown }>(rows: T[], username: string): T | undefined {
  if (!rows.length) return undefined;
  if (rows[0].username === username || rows.length === 1) return rows[0];
  throw new UserError(
    `\`${username}\` matches several accounts that differ only in upper/lower case (${rows.map((r) => `\`${String(r.username)}\``).join(', ')}). Type the exact name.`,
  );
}

/** Read side of user management: the guide's "View All Users" and a single account. */
export class UserDirectory {
  constructor(private readonly db: Db) {}

  async list(filter: UserFilter, page: { after?: string; before?: string } = {}): Promise<UserPage> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, value: unknown) => {
      params.push(value);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (filter.role) add('role = ?', filter.role);
    if (filter.area) add('lower(dispatch_area) = lower(?)', filter.area);
    if (filter.status === 'locked') where.push('locked_until > now()');
    if (filter.status === 'active') where.push('(locked_until IS NULL OR locked_until <= now())');
    if (filter.q) {
      params.push(`%${filter.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
      where.push(`(username ILIKE $${params.length} OR email ILIKE $${params.length})`);
    }
    const base = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const total = (await this.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "user" ${base}`, params)).rows[0].n;

    const pageParams = [...params];
    let cursorSql = '';
    let order = 'ASC';
    if (page.after) {
      pageParams.push(page.after);
      cursorSql = `${base ? ' AND' : 'WHERE'} username > $${pageParams.length}`;
    } else if (page.before) {
      pageParams.push(page.before);
      cursorSql = `${base ? ' AND' : 'WHERE'} username < $${pageParams.length}`;
      order = 'DESC';
    }
    pageParams.push(PAGE_SIZE + 1);
    const { rows } = await this.db.query(
      `SELECT ${USER_COLUMNS} FROM "user" ${base}${cursorSql} ORDER BY username ${order} LIMIT $${pageParams.length}`,
      pageParams,
    );
    const more = rows.length > PAGE_SIZE;
    let users = rows.slice(0, PAGE_SIZE).map((r) => userRowSchema.parse(r));
    if (order === 'DESC') users = users.reverse();
    return {
      users,
      total,
      first: users[0]?.username,
      last: users.at(-1)?.username,
      hasNext: page.before ? true : more,
      hasPrev: page.after ? true : page.before ? more : false,
    };
  }

  async findByUsername(username: string): Promise<UserRow | undefined> {
    const { rows } = await this.db.query(usernameLookupSql(USER_COLUMNS), [username]);
    const row = pickUsernameMatch(rows, username);
    return row ? userRowSchema.parse(row) : undefined;
  }

  async getByUsername(username: string): Promise<UserRow> {
    const user = await this.findByUsername(username);
    if (!user) throw new NotFoundError(`No user named \`${username}\`. Try \`/users list q:${username.slice(0, 3)}\`.`);
    return user;
  }

  /** The guide's "investigate lockout" query: recent failed logins for a username (after `since`, when given). */
  async recentFailedLogins(username: string, limit = 10, since?: Date | null): Promise<FailedAttempt[]> {
    const { rows } = await this.db.query(
      `SELECT timestamp, details, ip_address
         FROM audit_log
        WHERE action = 'login_failed' AND details->>'username' = $1
          AND ($3::timestamptz IS NULL OR timestamp > $3)
        ORDER BY timestamp DESC
        LIMIT $2`,
      [username, limit, since ?? null],
    );
    return z
      .array(z.object({ timestamp: z.date(), ip_address: z.string().nullable(), details: z.record(z.string(), z.unknown()).nullable() }))
      .parse(rows);
  }
}
