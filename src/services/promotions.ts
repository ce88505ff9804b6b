import { z } from 'zod';
import type { Config } from '../config.js';
import type { Db, Queryable } from '../db/index.js';
import { USER_COLUMNS, userRowSchema, type UserRow } from '../domain/user.js';
import { ConflictError, ForbiddenError, NotFoundError, UserError, ValidationErrors } from '../errors.js';
import type { Logger } from '../logger.js';
import { md } from '../ui.js';
import { decidedText, decisionDm, renderCard } from '../slack/cards/promotions.js';
import { writeAudit } from './audit-writer.js';
import type { Chat, PostedRef } from './chat.js';
import type { Outbox } from './outbox.js';
import { normalizeEmail, requireAdmin, type Actor, type IdentityService, type SlackReach } from './identity.js';
import type { Masker } from './masking.js';
import type { StepUpService } from './step-up.js';
import type { IdentityChange, IdentityChanges } from './identity-changes.js';

/**
 * Promotion review (seed 001, "Manage Promotion Requests"; issue 4).
 *
 * A linked non-admin asks for admin rights; a review card goes to APPROVALS_CHANNEL; another
 * admin approves (notes + step-up TOTP) or rejects (reason). Every decision is one
 * conditional UPDATE on the pending row (`WHERE status = 'pending'`), so exactly one of two
 * concurrent approvers, a double click or a replay wins; the others are told who decided.
 * Requests the web application inserts itself are found by a cursor over promotion_request
 * (warden_cursor 'promotion_request') plus a short look-back window for ids that committed
 * out of order, and posted once: the card row in warden_promotion_card is the claim.
 */

export const PROMOTION_STATUSES = ['pending', 'approved', 'rejected', 'expired'] as const;
export type PromotionStatus = (typeof PROMOTION_STATUSES)[number];

export const REASON_MIN = 10;
export const REASON_MAX = 500;
export const REJECTION_MIN = 10;
export const REJECTION_MAX = 1000;
export const NOTES_MAX = 1000;

/** Action ids and view callback ids the card and the modals use (routed by commands/promotions.ts). */
export const PROMOTION_ACTIONS = { approve: 'promotions:approve', reject: 'promotions:reject' } as const;

/** The cursor row in warden_cursor. */
export const PROMOTION_CURSOR = 'promotion_request';
/** Requests newer than this are re-scanned even below the cursor: a serial id can commit after a higher one. */
const LOOKBACK_SECONDS = 15 * 60;
/** A claimed card that has not been posted for this long is retried (Slack was down, or a crash). */
const RETRY_AFTER_SECONDS = 60;
const POLL_BATCH = 200;

const requestRowSchema = z.object({
  id: z.number(),
  user_id: z.number(),
  reason: z.string(),
  status: z.string(),
  requested_at: z.date(),
  reviewed_at: z.date().nullable(),
  reviewed_by: z.number().nullable(),
  admin_notes: z.string().nullable(),
  rejection_reason: z.string().nullable(),
});
export type PromotionRow = z.infer<typeof requestRowSchema>;

const REQUEST_COLUMNS = 'id, user_id, reason, status, requested_at, reviewed_at, reviewed_by, admin_notes, rejection_reason';

export interface HistorySummary {
  failedLogins: number;
  lockouts: number;
  roleChanges: number;
  lastFailedLogin: Date | null;
  previousRequests: number;
  previousRejected: number;
}

export interface PromotionView {
  request: PromotionRow;
  requester: UserRow;
  reviewer: { id: number; username: string; slackUserId?: string } | null;
  card: (PostedRef & { postedAt: Date }) | null;
  history: HistorySummary;
  /** Pending but older than PROMOTION_TTL (the expiry job has not run yet). */
  overdue: boolean;
  /** The requester's identity changes within the cool-down (shown on the card). */
  identityChanges: IdentityChange[];
}

export interface PromotionDeps {
  config: Config;
  db: Db;
  chat: Chat;
  /** Announcements owed by decisions (card update, DM) are queued here in the deciding transaction. */
  outbox: Outbox;
  identity: IdentityService;
  identityChanges: IdentityChanges;
  stepUp: StepUpService;
  masker: Masker;
  logger: Logger;
}

/**
 * How the requester hears of a decision besides the in-app notification (always written):
 * a DM to each linked Slack account, or, without a link, to the Slack user their e-mail
 * designates under the automatic-linking rules, or no DM and why.
 */
export type RequesterDm = { via: 'link'; slackUserIds: string[] } | { via: 'email'; slackUserId: string } | { via: 'none'; why: string };

/** A decision as the deciding admin sees it: the request and how the requester was told. */
export type Decision = PromotionView & { told: RequesterDm };

export interface PollResult {
  scanned: number;
  posted: number;
  retried: number;
  /** Cards re-rendered because their request changed elsewhere. */
  synced: number;
  cursor: number;
}

export class PromotionService {
  constructor(private readonly deps: PromotionDeps) {}

  private get db() {
    return this.deps.db;
  }

  private get ttl(): number {
    return this.deps.config.PROMOTION_TTL;
  }

  // ── Asking ───────────────────────────────────────────────────────────────────────────

  /**
   * `/promotions request REASON`: a linked non-admin asks to become admin. The request, its
   * audit row and the card claim commit together; the card is posted right after.
   */
  async request(actor: Actor, rawReason: string): Promise<{ request: PromotionRow; card: PostedRef | null; cardError?: string }> {
    const reason = validateReason(rawReason);
    // A freshly re-pointed identity must not be able to ask for admin (issue 10).
    await this.deps.identityChanges.assertClear(actor, 'request a promotion', []);
    const request = await this.db.tx(async (q) => {
      // Serialises two requests of the same user (one pending per user).
      const { rows: users } = await q.query(`SELECT ${USER_COLUMNS} FROM "user" WHERE id = $1 FOR UPDATE`, [actor.user.id]);
      const me = users[0] ? userRowSchema.parse(users[0]) : undefined;
      if (!me) throw new NotFoundError('Your application account no longer exists.');
      if (me.role === 'admin') throw new UserError('You are already an admin: there is nothing to request.');
      const { rows: pending } = await q.query<{ id: number; requested_at: Date }>(
        `SELECT id, requested_at FROM promotion_request WHERE user_id = $1 AND status = 'pending' ORDER BY id LIMIT 1`,
        [me.id],
      );
      if (pending[0]) {
        throw new ConflictError(
          `You already have a pending request (#${pending[0].id}, sent ${md.date(pending[0].requested_at)}). ` +
            `Check it with \`/promotions show ${pending[0].id}\`; you will get a DM when it is decided.`,
        );
      }
      const { rows } = await q.query(
        `INSERT INTO promotion_request (user_id, reason, status) VALUES ($1, $2, 'pending') RETURNING ${REQUEST_COLUMNS}`,
        [me.id, reason],
      );
      const req = requestRowSchema.parse(rows[0]);
      if (this.deps.config.APPROVALS_CHANNEL) {
        await q.query('INSERT INTO warden_promotion_card (request_id) VALUES ($1) ON CONFLICT DO NOTHING', [req.id]);
      }
      await writeAudit(q, actor, {
        action: 'promotion_requested',
        entityType: 'promotion_request',
        entityId: req.id,
        details: { username: me.username, requester_id: me.id, role: me.role, reason },
      });
      return req;
    });
    if (!this.deps.config.APPROVALS_CHANNEL) return { request, card: null, cardError: 'APPROVALS_CHANNEL is not set' };
    try {
      const card = await this.postClaimedCard(request.id);
      return { request, card };
    } catch (e) {
      this.deps.logger.warn({ err: e, request: request.id }, 'could not post the promotion card; the poll job retries');
      return { request, card: null, cardError: 'Slack did not accept the message' };
    }
  }

  // ── Reading ──────────────────────────────────────────────────────────────────────────

  /** Pending requests, oldest first. */
  async listPending(actor: Actor, limit = 50): Promise<{ rows: (PromotionRow & { username: string; role: string })[]; total: number }> {
    requireAdmin(actor, 'list promotion requests');
    const total = (
      await this.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM promotion_request WHERE status = 'pending'`)
    ).rows[0].n;
    const { rows } = await this.db.query(
      `SELECT ${REQUEST_COLUMNS.split(', ').map((c) => `r.${c}`).join(', ')}, u.username, u.role
         FROM promotion_request r JOIN "user" u ON u.id = r.user_id
        WHERE r.status = 'pending'
        ORDER BY r.requested_at, r.id
        LIMIT $1`,
      [limit],
    );
    return {
      total,
      rows: rows.map((r) => ({ ...requestRowSchema.parse(r), username: String(r.username), role: String(r.role) })),
    };
  }

  /** One request in any state. Admins see every request; a member sees their own. */
  async show(actor: Actor, id: number): Promise<PromotionView> {
    const view = await this.load(id);
    if (actor.user.role !== 'admin' && view.request.user_id !== actor.user.id) {
      throw new ForbiddenError('You can only look at your own promotion requests. Admins can see all of them.');
    }
    return view;
  }

  /** Loads a request with its requester, reviewer, card and the requester's 30-day history. */
  async load(id: number, q: Queryable = this.db): Promise<PromotionView> {
    const { rows } = await q.query(`SELECT ${REQUEST_COLUMNS} FROM promotion_request WHERE id = $1`, [id]);
    if (!rows[0]) throw new NotFoundError(`No promotion request #${id}. Pending ones: \`/promotions list\`.`);
    const request = requestRowSchema.parse(rows[0]);
    const { rows: users } = await q.query(`SELECT ${USER_COLUMNS} FROM "user" WHERE id = $1`, [request.user_id]);
    const requester = userRowSchema.parse(users[0]);
    const { rows: cards } = await q.query<{ channel: string | null; ts: string | null; posted_at: Date | null; decided_by_slack: string | null }>(
      'SELECT channel, ts, posted_at, decided_by_slack FROM warden_promotion_card WHERE request_id = $1',
      [id],
    );
    const c = cards[0];
    let reviewer: PromotionView['reviewer'] = null;
    if (request.reviewed_by !== null) {
      const { rows: rv } = await q.query<{ id: number; username: string }>('SELECT id, username FROM "user" WHERE id = $1', [
        request.reviewed_by,
      ]);
      if (rv[0]) {
        const slackUserId = c?.decided_by_slack ?? (await this.deps.identity.slackAccountsOf(rv[0].id))[0]?.slackUserId;
        reviewer = { id: rv[0].id, username: rv[0].username, ...(slackUserId ? { slackUserId } : {}) };
      }
    }
    const overdue =
      request.status === 'pending' && Date.now() - request.requested_at.getTime() > this.ttl * 1000;
    return {
      request,
      requester,
      reviewer,
      card: c?.channel && c.ts && c.posted_at ? { channel: c.channel, ts: c.ts, postedAt: c.posted_at } : null,
      history: await this.history(requester, request.id, q),
      overdue,
      identityChanges: await this.deps.identityChanges.recent([requester.id], q),
    };
  }

  /** The guide's "review user history" step: what the audit log says about the last 30 days. */
  async history(user: Pick<UserRow, 'id' | 'username'>, excludeRequestId?: number, q: Queryable = this.db): Promise<HistorySummary> {
    const { rows } = await q.query<{ failed: number; locks: number; roles: number; last_failed: Date | null }>(
      `SELECT count(*) FILTER (WHERE action = 'login_failed')::int AS failed,
              count(*) FILTER (WHERE action = 'login_locked')::int AS locks,
              count(*) FILTER (WHERE action = 'role_change')::int AS roles,
              max("timestamp") FILTER (WHERE action = 'login_failed') AS last_failed
         FROM audit_log
        WHERE "timestamp" > now() - interval '30 days'
          AND ( (action IN ('login_failed', 'login_locked') AND (user_id = $1 OR details->>'username' = $2))
             OR (action = 'role_change' AND entity_type = 'user' AND entity_id = $1) )`,
      [user.id, user.username],
    );
    const { rows: prev } = await q.query<{ n: number; rejected: number }>(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE status = 'rejected')::int AS rejected
         FROM promotion_request WHERE user_id = $1 AND id <> $2`,
      [user.id, excludeRequestId ?? -1],
    );
    return {
      failedLogins: rows[0].failed,
      lockouts: rows[0].locks,
      roleChanges: rows[0].roles,
      lastFailedLogin: rows[0].last_failed,
      previousRequests: prev[0].n,
      previousRejected: prev[0].rejected,
    };
  }

  // ── Deciding ─────────────────────────────────────────────────────────────────────────

  /**
   * Everything that must hold before an admin may decide, checked on the click that opens
   * the modal AND again on its submission: admin, not their own request, still pending,
   * not past its TTL. A decided request answers with who decided and when.
   */
  async assertDecidable(actor: Actor, id: number, q: Queryable = this.db): Promise<PromotionView> {
    requireAdmin(actor, 'decide promotion requests');
    const view = await this.load(id, q);
    if (view.request.user_id === actor.user.id) {
      throw new ForbiddenError('You cannot decide your own promotion request: another admin has to (four eyes).');
    }
    if (view.request.status !== 'pending') throw new ConflictError(decidedText(view));
    if (view.overdue) {
      await this.expireDue().catch((err) => this.deps.logger.warn({ err }, 'expiring overdue promotion requests failed'));
      throw new ConflictError(
        `Request #${id} expired: it was sent ${md.date(view.request.requested_at)}, longer ago than the ${describeSeconds(this.ttl)} a request stays open. ` +
          'The requester can ask again.',
      );
    }
    return view;
  }

  /** Cool-down and four eyes on identity: neither a freshly changed requester nor approver, nor whoever changed the requester. */
  private async assertIdentityClear(actor: Actor, view: PromotionView): Promise<void> {
    await this.deps.identityChanges.assertClear(actor, `approve request #${view.request.id}`, [
      { userId: view.requester.id, label: 'the requester' },
    ]);
  }

  /** The Approve click: checks, and whether the approver can step up at all. */
  async prepareApprove(actor: Actor, id: number): Promise<PromotionView> {
    const view = await this.assertDecidable(actor, id);
    if (view.requester.role === 'admin') {
      throw new ConflictError(`${view.requester.username} is already an admin. Reject this request instead.`);
    }
    await this.assertIdentityClear(actor, view);
    if (!(await this.deps.stepUp.canStepUp(actor))) {
      throw new ForbiddenError(
        'Approving a promotion needs your 2FA code, but your account has no two-factor authentication. ' +
          'Enrol in the application first (Profile → Enable Two-Factor Authentication).',
      );
    }
    return view;
  }

  /**
   * Approve: step-up, then ONE transaction: the conditional update that decides, role → admin
   * (dispatch area cleared), an in-app notification, `role_change` with before/after and a
   * `promotion_approved` row. Afterwards: DM to the requester and the card updated in place.
   */
  async approve(actor: Actor, id: number, input: { notes?: string | null; totp?: string | null }): Promise<Decision> {
    const notes = (input.notes ?? '').trim() || null;
    if (notes && notes.length > NOTES_MAX) throw new ValidationErrors({ notes: `Notes can be at most ${NOTES_MAX} characters.` });
    const pre = await this.assertDecidable(actor, id);
    if (pre.requester.role === 'admin') {
      throw new ConflictError(`${pre.requester.username} is already an admin. Reject this request instead.`);
    }
    await this.assertIdentityClear(actor, pre);
    await this.deps.stepUp.verify(actor, input.totp, 'promotion_approve');
    const byEmail = await this.findByEmail(actor, pre.requester);

    let promoted: number | undefined;
    const decided = await this.db.tx(async (q) => {
      const win = await q.query(
        `UPDATE promotion_request
            SET status = 'approved', reviewed_at = now(), reviewed_by = $2, admin_notes = $3
          WHERE id = $1 AND status = 'pending' AND requested_at > now() - make_interval(secs => $4::int)
          RETURNING ${REQUEST_COLUMNS}`,
        [id, actor.user.id, notes, this.ttl],
      );
      if (win.rowCount !== 1) return null; // somebody else decided first (or it just expired)
      const request = requestRowSchema.parse(win.rows[0]);
      const { rows: before } = await q.query(`SELECT ${USER_COLUMNS} FROM "user" WHERE id = $1 FOR UPDATE`, [request.user_id]);
      const beforeUser = userRowSchema.parse(before[0]);
      if (beforeUser.role === 'admin') {
        throw new ConflictError(`${beforeUser.username} is already an admin. Reject this request instead.`);
      }
      const { rows: after } = await q.query(
        `UPDATE "user" SET role = 'admin', dispatch_area = NULL WHERE id = $1 RETURNING ${USER_COLUMNS}`,
        [request.user_id],
      );
      const afterUser = userRowSchema.parse(after[0]);
      promoted = afterUser.id;
      const needs2fa = !afterUser.two_fa_enabled;
      await q.query(`INSERT INTO notification (user_id, title, message, type) VALUES ($1, $2, $3, 'success')`, [
        request.user_id,
        'Admin promotion approved',
        `Your request to become an admin was approved by ${actor.user.username}.` +
          (notes ? ` Notes: ${notes}` : '') +
          (needs2fa ? ' Admin accounts require two-factor authentication: enable it now (Profile → Enable Two-Factor Authentication).' : ''),
      ]);
      const source = { promotion_request_id: request.id, username: beforeUser.username };
      await writeAudit(q, actor, {
        action: 'role_change',
        entityType: 'user',
        entityId: request.user_id,
        details: { ...source, reason: 'promotion approved', old_role: beforeUser.role, new_role: 'admin', ...(notes ? { admin_notes: notes } : {}) },
        before: beforeUser,
        after: afterUser,
      });
      await writeAudit(q, actor, {
        action: 'promotion_approved',
        entityType: 'promotion_request',
        entityId: request.id,
        details: { ...source, requester_id: request.user_id, ...(notes ? { admin_notes: notes } : {}), requires_2fa_enrolment: needs2fa },
      });
      await recordDecider(q, request.id, actor.slack.userId);
      return this.queueAnnouncements(q, request.id, byEmail);
    });
    // Committed: the new admin's next request must not be served their cached old role.
    if (promoted !== undefined) this.deps.identity.forgetAccount(promoted);
    return this.finishDecision(id, decided);
  }

  /**
   * After the deciding transaction: the loser is told who won. The winner's card update and
   * the requester's DM were queued in the outbox by that transaction, so they are delivered
   * (once) even if this process dies right after the commit.
   */
  private async finishDecision(id: number, told: RequesterDm | null): Promise<Decision> {
    if (!told) return this.lostRace(id);
    return { ...(await this.load(id)), told };
  }

  /**
   * A requester without a Slack link (requests the web application inserted) is looked up by
   * e-mail with the automatic-linking rules, before the deciding transaction (no external call
   * inside it); the DM itself is queued in that transaction like any other. No link is recorded.
   */
  private async findByEmail(actor: Actor, requester: UserRow): Promise<SlackReach | null> {
    if ((await this.deps.identity.slackAccountsOf(requester.id)).length) return null;
    return this.deps.identity.slackUserByEmail(requester, actor.slack.teamId);
  }

  /** The Reject click: same checks as Approve (no step-up: rejecting grants nothing). */
  async prepareReject(actor: Actor, id: number): Promise<PromotionView> {
    return this.assertDecidable(actor, id);
  }

  /** Reject with a required reason (min 10 characters): one conditional update, notification, audit. */
  async reject(actor: Actor, id: number, input: { reason?: string | null }): Promise<Decision> {
    const reason = (input.reason ?? '').trim();
    if (reason.length < REJECTION_MIN) {
      throw new ValidationErrors({
        reason: reason
          ? `The reason must be at least ${REJECTION_MIN} characters (you typed ${reason.length}); the requester will read it.`
          : 'A reason is required: the requester will read it.',
      });
    }
    if (reason.length > REJECTION_MAX) throw new ValidationErrors({ reason: `The reason can be at most ${REJECTION_MAX} characters.` });
    const pre = await this.assertDecidable(actor, id);
    const byEmail = await this.findByEmail(actor, pre.requester);
    const decided = await this.db.tx(async (q) => {
      const win = await q.query(
        `UPDATE promotion_request
            SET status = 'rejected', reviewed_at = now(), reviewed_by = $2, rejection_reason = $3
          WHERE id = $1 AND status = 'pending'
          RETURNING ${REQUEST_COLUMNS}`,
        [id, actor.user.id, reason],
      );
      if (win.rowCount !== 1) return null;
      const request = requestRowSchema.parse(win.rows[0]);
      const { rows: u } = await q.query<{ username: string }>('SELECT username FROM "user" WHERE id = $1', [request.user_id]);
      await q.query(`INSERT INTO notification (user_id, title, message, type) VALUES ($1, $2, $3, 'warning')`, [
        request.user_id,
        'Admin promotion rejected',
        `Your request to become an admin was rejected by ${actor.user.username}. Reason: ${reason}`,
      ]);
      await writeAudit(q, actor, {
        action: 'promotion_rejected',
        entityType: 'promotion_request',
        entityId: request.id,
        details: { promotion_request_id: request.id, requester_id: request.user_id, username: u[0]?.username, rejection_reason: reason },
      });
      await recordDecider(q, request.id, actor.slack.userId);
      return this.queueAnnouncements(q, request.id, byEmail);
    });
    return this.finishDecision(id, decided);
  }

  /** The conditional update matched nothing: say who decided first (or that it just expired). */
  private async lostRace(id: number): Promise<never> {
    let view = await this.load(id);
    if (view.request.status === 'pending') {
      await this.expireDue();
      view = await this.load(id);
    }
    throw new ConflictError(decidedText(view));
  }

  /** Resolves when the announcements of decisions made so far have been handed to the outbox (they are, at commit). */
  async idle(): Promise<void> {
    await this.deps.outbox.deliverDue();
  }

  // ── Expiry ───────────────────────────────────────────────────────────────────────────

  /** Expires pending requests older than PROMOTION_TTL: notification + audit in one transaction, then card and DM. */
  async expireDue(): Promise<number> {
    const expired = await this.db.tx(async (q) => {
      const { rows } = await q.query(
        `UPDATE promotion_request SET status = 'expired', reviewed_at = now()
          WHERE status = 'pending' AND requested_at <= now() - make_interval(secs => $1::int)
          RETURNING ${REQUEST_COLUMNS}`,
        [this.ttl],
      );
      const list = rows.map((r) => requestRowSchema.parse(r));
      for (const r of list) {
        await q.query(`INSERT INTO notification (user_id, title, message, type) VALUES ($1, $2, $3, 'info')`, [
          r.user_id,
          'Admin promotion request expired',
          `Your request to become an admin (sent ${md.date(r.requested_at)}) expired without a decision after ${describeSeconds(this.ttl)}. You can ask again.`,
        ]);
        await writeAudit(q, null, {
          action: 'promotion_expired',
          entityType: 'promotion_request',
          entityId: r.id,
          details: { promotion_request_id: r.id, requester_id: r.user_id, ttl_seconds: this.ttl, requested_at: r.requested_at.toISOString() },
        });
        await this.queueAnnouncements(q, r.id);
      }
      return list;
    });
    return expired.length;
  }

  // ── Cards ────────────────────────────────────────────────────────────────────────────

  /**
   * The poll job: posts a card for every pending request that has none yet — requests the
   * application inserted itself, and claims whose post failed earlier. Safe to run twice at
   * once and after a restart: the INSERT ... ON CONFLICT DO NOTHING claim lets one caller post.
   */
  async pollNew(): Promise<PollResult> {
    const channel = this.deps.config.APPROVALS_CHANNEL;
    const cursor = await this.cursor();
    if (!channel) return { scanned: 0, posted: 0, retried: 0, synced: 0, cursor };
    const { rows } = await this.db.query<{ id: number; status: string; has_card: boolean }>(
      `SELECT r.id, r.status, (c.request_id IS NOT NULL) AS has_card
         FROM promotion_request r LEFT JOIN warden_promotion_card c ON c.request_id = r.id
        WHERE r.id > $1 OR (r.status = 'pending' AND r.requested_at > now() - make_interval(secs => $2::int))
        ORDER BY r.id
        LIMIT $3`,
      [cursor, LOOKBACK_SECONDS, POLL_BATCH],
    );
    let posted = 0;
    let maxId = cursor;
    for (const r of rows) {
      if (r.status === 'pending' && !r.has_card) {
        const claimed = await this.db.query(
          'INSERT INTO warden_promotion_card (request_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING request_id',
          [r.id],
        );
        if (claimed.rowCount === 1) {
          try {
            await this.postClaimedCard(r.id);
            posted++;
          } catch (err) {
            this.deps.logger.warn({ err, request: r.id }, 'could not post a promotion card; will retry');
          }
        }
      }
      maxId = Math.max(maxId, r.id);
    }
    if (maxId > cursor) {
      await this.db.query(
        `INSERT INTO warden_cursor (name, position, updated_at) VALUES ($1, $2, now())
         ON CONFLICT (name) DO UPDATE SET position = GREATEST(warden_cursor.position, EXCLUDED.position), updated_at = now()`,
        [PROMOTION_CURSOR, maxId],
      );
    }
    const retried = await this.retryUnposted();
    const synced = await this.syncCards();
    return { scanned: rows.length, posted, retried, synced, cursor: maxId };
  }

  async cursor(): Promise<number> {
    const { rows } = await this.db.query<{ position: number }>('SELECT position FROM warden_cursor WHERE name = $1', [PROMOTION_CURSOR]);
    return rows[0]?.position ?? 0;
  }

  /** Claims whose post did not succeed (Slack down, crash) and that are old enough not to be in flight. */
  private async retryUnposted(): Promise<number> {
    const { rows } = await this.db.query<{ request_id: number }>(
      `UPDATE warden_promotion_card c SET claimed_at = now(), attempts = c.attempts + 1
         FROM promotion_request r
        WHERE r.id = c.request_id AND r.status = 'pending' AND c.posted_at IS NULL
          AND c.claimed_at < now() - make_interval(secs => $1::int)
        RETURNING c.request_id`,
      [RETRY_AFTER_SECONDS],
    );
    let n = 0;
    for (const r of rows) {
      try {
        await this.postClaimedCard(r.request_id);
        n++;
      } catch (err) {
        this.deps.logger.warn({ err, request: r.request_id }, 'retrying a promotion card failed; will retry');
      }
    }
    return n;
  }

  /** Posts the card of a request whose claim the caller holds, and records where it went. */
  private async postClaimedCard(id: number): Promise<PostedRef> {
    const channel = this.deps.config.APPROVALS_CHANNEL!;
    const view = await this.load(id);
    const ref = await this.deps.chat.post(channel, renderCard(view, this.deps.masker, this.ttl));
    await this.db.query(
      'UPDATE warden_promotion_card SET channel = $2, ts = $3, posted_at = now(), rendered_status = $4 WHERE request_id = $1',
      [id, ref.channel, ref.ts, view.request.status],
    );
    return ref;
  }

  /** Re-renders the posted card from the database (after a decision, or on a stale click). */
  async refreshCard(view: PromotionView): Promise<void> {
    if (!view.card) return;
    await this.deps.chat.update(view.card, renderCard(view, this.deps.masker, this.ttl));
    await this.db.query('UPDATE warden_promotion_card SET rendered_status = $2 WHERE request_id = $1', [view.request.id, view.request.status]);
  }

  /**
   * Cards whose request changed without Warden updating them (decided in the web dashboard,
   * or the update after a decision was lost): re-rendered so the card agrees with the database.
   */
  async syncCards(): Promise<number> {
    const { rows } = await this.db.query<{ request_id: number }>(
      `SELECT c.request_id FROM warden_promotion_card c JOIN promotion_request r ON r.id = c.request_id
        WHERE c.posted_at IS NOT NULL AND c.rendered_status IS DISTINCT FROM r.status
        ORDER BY c.request_id LIMIT $1`,
      [POLL_BATCH],
    );
    let n = 0;
    for (const r of rows) {
      try {
        await this.refreshCard(await this.load(r.request_id));
        n++;
      } catch (err) {
        this.deps.logger.warn({ err, request: r.request_id }, 'could not re-render a promotion card; will retry');
      }
    }
    return n;
  }

  /**
   * What a decision (or expiry) owes, queued in the outbox inside the deciding transaction:
   * the card updated in place (when it is posted; a card posted later is rendered with the
   * outcome anyway) and the requester told by DM on each linked Slack account. A crash after
   * the commit cannot lose them, and the outbox delivers each once.
   */
  private async queueAnnouncements(q: Queryable, id: number, byEmail: SlackReach | null = null): Promise<RequesterDm> {
    const view = await this.load(id, q);
    if (view.card) {
      await this.deps.outbox.updateRef(q, view.card, renderCard(view, this.deps.masker, this.ttl));
      await q.query('UPDATE warden_promotion_card SET rendered_status = $2 WHERE request_id = $1', [id, view.request.status]);
    }
    const links = await q.query<{ slack_user_id: string }>('SELECT slack_user_id FROM warden_slack_link WHERE user_id = $1 ORDER BY created_at', [
      view.request.user_id,
    ]);
    let targets = links.rows.map((l) => l.slack_user_id);
    let told: RequesterDm = { via: 'link', slackUserIds: targets };
    if (!targets.length) {
      if (!byEmail) told = { via: 'none', why: 'they have no linked Slack account' };
      else if ('why' in byEmail) told = { via: 'none', why: `they have no linked Slack account, and ${byEmail.why}` };
      // The address looked up must still be the account's: an e-mail changed meanwhile is not trusted.
      else if (normalizeEmail(view.requester.email) !== byEmail.email) told = { via: 'none', why: 'their e-mail address changed while the decision was being made' };
      else {
        targets = [byEmail.slackUserId];
        told = { via: 'email', slackUserId: byEmail.slackUserId };
      }
    }
    for (const slackUserId of targets) {
      await this.deps.outbox.dm(q, slackUserId, decisionDm(view), { dedupeKey: `promotion:${id}:${view.request.status}:dm:${slackUserId}` });
    }
    return told;
  }
}

// ── Rules and rendering (no Slack types: Warden's ui model) ───────────────────────────

export function validateReason(raw: string | undefined): string {
  const reason = (raw ?? '').replace(/\s+/g, ' ').trim();
  if (!reason) throw new UserError('Say why you need admin rights, e.g. `/promotions request I run the Indore night shift and need to unlock accounts`.');
  if (reason.length < REASON_MIN) throw new UserError(`The reason must be at least ${REASON_MIN} characters (you typed ${reason.length}).`);
  if (reason.length > REASON_MAX) throw new UserError(`The reason can be at most ${REASON_MAX} characters (you typed ${reason.length}).`);
  return reason;
}

export function describeSeconds(s: number): string {
  if (s % 86400 === 0) return `${s / 86400} day${s === 86400 ? '' : 's'}`;
  if (s % 3600 === 0) return `${s / 3600} hour${s === 3600 ? '' : 's'}`;
  if (s % 60 === 0) return `${s / 60} minute${s === 60 ? '' : 's'}`;
  return `${s} seconds`;
}

export function describeAge(from: Date, now = new Date()): string {
  const s = Math.max(0, Math.floor((now.getTime() - from.getTime()) / 1000));
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}


/** Remembers which Slack user decided, for the card ("Approved by <@U…>"). */
async function recordDecider(q: Queryable, requestId: number, slackUserId: string): Promise<void> {
  await q.query(
    `INSERT INTO warden_promotion_card (request_id, decided_by_slack) VALUES ($1, $2)
     ON CONFLICT (request_id) DO UPDATE SET decided_by_slack = EXCLUDED.decided_by_slack`,
    [requestId, slackUserId],
  );
}
