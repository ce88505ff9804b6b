import type { Db, Queryable } from '../db/index.js';
import { ForbiddenError } from '../errors.js';
import type { Actor } from './identity.js';

/**
 * The record of identity changes (who changed an account's e-mail or Slack link, or
 * re-enabled it, and when) and the rules built on it (issue 10):
 * - cool-down: for IDENTITY_COOLDOWN after such a change the account can neither open nor
 *   approve a 2FA recovery or a promotion, and its e-mail does not serve as a recovery check;
 * - four eyes: nobody approves a recovery or promotion when they changed the identity of
 *   the initiator, the target or their own account within the cool-down.
 */

export type IdentityChangeKind = 'email' | 'slack_link' | 'slack_unlink' | 'reenabled';

export interface IdentityChange {
  userId: number;
  username: string;
  kind: IdentityChangeKind;
  changedBy: number | null;
  changedByUsername: string | null;
  summary: string;
  at: Date;
}

/** How each kind of change reads in messages and on cards. */
export const IDENTITY_CHANGE_TEXT: Record<IdentityChangeKind, string> = {
  email: 'e-mail changed',
  slack_link: 'Slack link changed',
  slack_unlink: 'Slack link removed',
  reenabled: 'account re-enabled',
};

/** Records a change in the caller's transaction (with its audit row). */
export async function recordIdentityChange(
  q: Queryable,
  actor: Actor | null,
  userId: number,
  kind: IdentityChangeKind,
  summary: string,
): Promise<void> {
  await q.query(
    `INSERT INTO warden_identity_change (user_id, kind, changed_by, changed_by_username, summary) VALUES ($1, $2, $3, $4, $5)`,
    [userId, kind, actor?.user.id ?? null, actor?.user.username ?? null, summary],
  );
}

export class IdentityChanges {
  constructor(
    private readonly db: Db,
    readonly cooldownSeconds: number,
  ) {}

  /** Changes of these accounts within the cool-down, newest first. */
  async recent(userIds: (number | null | undefined)[], q: Queryable = this.db): Promise<IdentityChange[]> {
    const ids = [...new Set(userIds.filter((x): x is number => typeof x === 'number'))];
    if (!ids.length) return [];
    const { rows } = await q.query<{
      user_id: number;
      username: string;
      kind: IdentityChangeKind;
      changed_by: number | null;
      changed_by_username: string | null;
      summary: string;
      created_at: Date;
    }>(
      `SELECT c.user_id, u.username, c.kind, c.changed_by, c.changed_by_username, c.summary, c.created_at
         FROM warden_identity_change c JOIN "user" u ON u.id = c.user_id
        WHERE c.user_id = ANY($1::int[]) AND c.created_at > now() - make_interval(secs => $2)
        ORDER BY c.created_at DESC, c.id DESC LIMIT 20`,
      [ids, this.cooldownSeconds],
    );
    return rows.map((r) => ({
      userId: r.user_id,
      username: r.username,
      kind: r.kind,
      changedBy: r.changed_by,
      changedByUsername: r.changed_by_username,
      summary: r.summary,
      at: r.created_at,
    }));
  }

  get cooldownText(): string {
    const h = this.cooldownSeconds / 3600;
    return Number.isInteger(h) ? `${h} h` : `${Math.round(this.cooldownSeconds / 60)} min`;
  }

  /**
   * Refuses when `role` (e.g. "approve") is not allowed to `actor` on a decision about
   * these accounts: the actor's own identity changed within the cool-down, the subject
   * accounts' identity changed within it, or the actor changed a subject's identity.
   */
  async assertClear(
    actor: Actor,
    what: string,
    subjects: { userId: number | null | undefined; label: string }[],
    q: Queryable = this.db,
  ): Promise<void> {
    const all = [{ userId: actor.user.id, label: 'your own account' }, ...subjects];
    const changes = await this.recent(all.map((s) => s.userId), q);
    for (const s of all) {
      const c = changes.find((x) => x.userId === s.userId);
      if (!c) continue;
      const byYou = c.changedBy === actor.user.id && s.userId !== actor.user.id;
      throw new ForbiddenError(
        `You cannot ${what}: the identity of ${s.label} (${c.username}) changed within the last ${this.cooldownText} ` +
          `(${IDENTITY_CHANGE_TEXT[c.kind]} by ${byYou ? 'you' : (c.changedByUsername ?? 'the application')} at ${c.at.toISOString().replace('T', ' ').slice(0, 16)} UTC). ` +
          (byYou
            ? 'Whoever changes an account’s identity cannot also vouch for it (four eyes). Another admin has to do this.'
            : 'Identity changes are held for a cool-down before they can take part in recoveries and promotions (IDENTITY_COOLDOWN).'),
      );
    }
  }
}
