import { z } from 'zod';
import { USER_COLUMNS, userRowSchema, type UserRow } from '../domain/user.js';
import { ForbiddenError } from '../errors.js';
import { writeAudit } from './audit-writer.js';
import { requireAdmin, type Actor } from './identity.js';
import type { Services } from './index.js';
import type { Recovery } from './twofa-recovery.js';
import { twofaReminderDm } from '../slack/cards/twofa-reports.js';

/**
 * The 2FA reports of the admin guide ("Monitor 2FA Usage", "Admin Enforcement") and the
 * reminder the guide asks for ("Notify admins to enable 2FA via in-app notifications").
 * Queries are the guide's, run unchanged where the guide gives one.
 */

export interface TwoFaFailure {
  timestamp: Date;
  ip_address: string | null;
  username: string | null;
}

export interface TwoFaStatus {
  user: UserRow;
  recentFailures: TwoFaFailure[];
  failures24h: number;
  lastSuccess: Date | null;
  /** Admin view only: the open or most recent recovery. */
  recovery?: Recovery;
}

export interface AdoptionRow {
  role: string;
  total_users: number;
  with_2fa: number;
  adoption_rate: number | null;
}

export interface AdminWithout2fa {
  id: number;
  username: string;
  email: string;
  created_at: Date | null;
  last_login: Date | null;
}

export interface FailureGroup {
  ip_address: string | null;
  attempts: number;
  users: number;
  usernames: string[];
  first_at: Date;
  last_at: Date;
}

export interface ReminderOutcome {
  reminded: string[];
  dmed: string[];
  /** Reminded less than REMIND_COOLDOWN ago: not reminded again. */
  skipped: string[];
}

/** An admin is reminded at most once in this many seconds, however often Remind is clicked. */
export const REMIND_COOLDOWN_SECONDS = 12 * 3600;
/** How long one click holds an admin's reminder while it is written (released at once on an error). */
const REMIND_CLAIM_SECONDS = 60;
export const MAX_FAILURE_WINDOW_SECONDS = 30 * 86400;

export class TwoFaReports {
  constructor(private readonly services: () => Services) {}

  private get s(): Services {
    return this.services();
  }

  /**
   * `/2fa status [USERNAME]`: any linked user may see their own; only admins see others'
   * (and the recovery state). Failures are the guide's `2fa_verify_failed` rows for the user.
   */
  async status(actor: Actor, username?: string): Promise<TwoFaStatus> {
    const self = !username || username === actor.user.username;
    if (!self && actor.user.role !== 'admin') {
      throw new ForbiddenError('Only admins can see the 2FA status of another account. Run `/2fa status` for your own.');
    }
    const user = self ? actor.user : await this.s.users.getByUsername(username!);
    const fresh = userRowSchema.parse(
      (await this.s.db.query(`SELECT ${USER_COLUMNS} FROM "user" WHERE id = $1`, [user.id])).rows[0] ?? user,
    );
    const failures = await this.s.db.query(
      `SELECT "timestamp", ip_address, details->>'username' AS username
         FROM audit_log
        WHERE action = '2fa_verify_failed' AND (details->>'username' = $1 OR user_id = $2)
        ORDER BY "timestamp" DESC LIMIT 5`,
      [fresh.username, fresh.id],
    );
    const counts = await this.s.db.query<{ n: number; last_success: Date | null }>(
      `SELECT count(*) FILTER (WHERE action = '2fa_verify_failed' AND "timestamp" > now() - interval '24 hours')::int AS n,
              max("timestamp") FILTER (WHERE action = '2fa_verify_success') AS last_success
         FROM audit_log
        WHERE action IN ('2fa_verify_failed', '2fa_verify_success') AND (details->>'username' = $1 OR user_id = $2)`,
      [fresh.username, fresh.id],
    );
    const recovery = actor.user.role === 'admin' ? await this.s.twofaRecovery.latestFor(fresh.id) : undefined;
    return {
      user: fresh,
      recentFailures: z
        .array(z.object({ timestamp: z.date(), ip_address: z.string().nullable(), username: z.string().nullable() }))
        .parse(failures.rows),
      failures24h: counts.rows[0]?.n ?? 0,
      lastSuccess: counts.rows[0]?.last_success ?? null,
      recovery,
    };
  }

  /** The guide's "2FA adoption rate" query, unchanged. */
  async adoption(): Promise<AdoptionRow[]> {
    const { rows } = await this.s.db.query<AdoptionRow>(
      `SELECT 
    role,
    count(*) as total_users,
    count(*) FILTER (WHERE two_fa_enabled = true) as with_2fa,
    round(100.0 * count(*) FILTER (WHERE two_fa_enabled = true) / count(*), 1) as adoption_rate
FROM "user"
GROUP BY role
ORDER BY role`,
    );
    return rows.map((r) => ({
      role: r.role,
      total_users: Number(r.total_users),
      with_2fa: Number(r.with_2fa),
      adoption_rate: r.adoption_rate === null ? null : Number(r.adoption_rate),
    }));
  }

  /** The guide's "Check admins without 2FA" query (plus the columns a reminder needs). */
  async adminsWithout(): Promise<AdminWithout2fa[]> {
    const { rows } = await this.s.db.query<AdminWithout2fa>(
      `SELECT id, username, email, created_at, last_login
         FROM "user"
        WHERE role = 'admin'
          AND (two_fa_enabled = false OR two_fa_enabled IS NULL)
        ORDER BY username`,
    );
    return rows;
  }

  /**
   * Reminds every admin without 2FA: an in-app notification row and, when their Slack
   * account is linked, a DM; each reminder audited (`2fa_reminder_sent`). The list is
   * computed at click time, never taken from the button.
   */
  async remindAdminsWithout(actor: Actor): Promise<ReminderOutcome> {
    requireAdmin(actor, 'remind admins about 2FA');
    const out: ReminderOutcome = { reminded: [], dmed: [], skipped: [] };
    for (const admin of await this.adminsWithout()) {
      // A short claim keeps two concurrent clicks from both reminding; the 12 h cool-down is
      // set only after the reminder committed, so a failure or crash in between does not
      // suppress it (the claim expires within a minute, or is released at once on an error).
      const key = `twofa:remind:${admin.id}`;
      if (!(await this.s.store.setIfAbsent(key, 'claim', REMIND_CLAIM_SECONDS))) {
        out.skipped.push(admin.username);
        continue;
      }
      let dmed: boolean;
      try {
        const links = await this.s.identity.slackAccountsOf(admin.id);
        dmed = await this.s.db.tx(async (q) => {
          // The DM is queued in the same transaction as the notification and the audit row:
          // the outbox delivers it after the commit, once, or not at all if this rolls back.
          for (const link of links) {
            await this.s.outbox.dm(q, link.slackUserId, twofaReminderDm(admin.username, actor.user.username));
          }
          await q.query(
            `INSERT INTO notification (user_id, title, message, type) VALUES ($1, $2, $3, 'warning')`,
            [
              admin.id,
              'Enable two-factor authentication',
              'Your admin account has no two-factor authentication. Enable it now: Profile → Enable Two-Factor Authentication.',
            ],
          );
          await writeAudit(q, actor, {
            action: '2fa_reminder_sent',
            entityType: 'user',
            entityId: admin.id,
            details: { username: admin.username, in_app: true, slack_dm: links.length > 0 },
          });
          return links.length > 0;
        });
      } catch (err) {
        await this.s.store.del(key).catch(() => undefined);
        throw err;
      }
      await this.s.store.set(key, '1', REMIND_COOLDOWN_SECONDS);
      out.reminded.push(admin.username);
      if (dmed) out.dmed.push(admin.username);
    }
    return out;
  }

  /** Recent `2fa_verify_failed` grouped by IP (the guide's "Recent 2FA failures", aggregated). */
  async failures(windowSeconds: number): Promise<{ total: number; groups: FailureGroup[] }> {
    const secs = Math.min(Math.max(1, windowSeconds), MAX_FAILURE_WINDOW_SECONDS);
    const { rows } = await this.s.db.query<FailureGroup>(
      `SELECT ip_address,
              count(*)::int AS attempts,
              count(DISTINCT details->>'username')::int AS users,
              (array_agg(DISTINCT details->>'username') FILTER (WHERE details->>'username' IS NOT NULL))[1:5] AS usernames,
              min("timestamp") AS first_at,
              max("timestamp") AS last_at
         FROM audit_log
        WHERE action = '2fa_verify_failed'
          AND "timestamp" > now() - make_interval(secs => $1)
        GROUP BY ip_address
        ORDER BY attempts DESC, last_at DESC
        LIMIT 25`,
      [secs],
    );
    const total = (
      await this.s.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM audit_log WHERE action = '2fa_verify_failed' AND "timestamp" > now() - make_interval(secs => $1)`,
        [secs],
      )
    ).rows[0].n;
    return { total, groups: rows.map((r) => ({ ...r, usernames: r.usernames ?? [] })) };
  }
}
