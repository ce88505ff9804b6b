import crypto from 'node:crypto';
import type { Db, Queryable } from '../db/index.js';
import { UserError } from '../errors.js';
import type { Logger } from '../logger.js';
import { md, mrkdwn, type Mrkdwn } from '../ui.js';
import type { Actor } from './identity.js';
import type { Outbox } from './outbox.js';

/**
 * Sends that carry a secret (2FA recovery codes, set-password and reset links), run after the
 * form was answered and after the transaction that wrote their rows committed (issue 12:
 * "ack first"; no e-mail or Slack call inside an open transaction). The state machine is the
 * `warden_pending_send` row (sql/017_pending_sends.sql):
 *
 *   record (in the caller's transaction) ─▶ pending ─▶ deliver: send ─▶ sent
 *                                              │                 └─ refused/timed out ─▶ failed
 *                                              └─ lease expired (process died) ─▶ interrupted (sweep)
 *
 * A send that did not happen (failed, interrupted) has its secret revoked by the owning
 * feature's revoker, in the very transaction that marks the row, with an audit entry; the
 * requester sees the outcome in the form (failed) or gets a DM (interrupted). The secret is
 * never stored, so an interrupted send is reported, not repeated: a mail that may have gone out
 * must not be followed by a second, different code.
 */

export type SendKind = '2fa_code' | 'set_password_link' | 'reset_link';
export type SendChannel = 'email' | 'slack';

export interface PendingSendRow {
  id: number;
  kind: SendKind;
  channel: SendChannel;
  target_user_id: number | null;
  ref_id: number | null;
  destination: string;
  secret_hash: string | null;
  requested_by: number | null;
  requested_by_username: string;
  requested_by_slack: string | null;
  status: 'pending' | 'sent' | 'failed' | 'interrupted';
  error: string | null;
}

/**
 * Makes the secret of a send that did not happen unusable and audits it, in the transaction
 * that marks the send. Returns what the requester can do next (shown to them).
 */
export type Revoker = (q: Queryable, row: PendingSendRow, reason: string) => Promise<string>;

export type SendOutcome = { ok: true } | { ok: false; reason: string; next: string };

export interface PendingSendsDeps {
  db: Db;
  logger: Logger;
  outbox: Outbox;
  /** How long a pending send may take before the sweep treats it as abandoned. */
  leaseMs: number;
  /** By kind; read at use, since the features that own them are built after this service. */
  revokers: () => Record<SendKind, Revoker>;
}

export function secretHash(secret: string): string {
  return crypto.createHash('sha256').update(secret).digest('hex');
}

const COLUMNS =
  'id, kind, channel, target_user_id, ref_id, destination, secret_hash, requested_by, requested_by_username, requested_by_slack, status, error';

export class PendingSends {
  constructor(private readonly deps: PendingSendsDeps) {}

  /** Writes the pending row in the caller's transaction (with the code or token it will carry). */
  async record(
    q: Queryable,
    input: { kind: SendKind; channel: SendChannel; targetUserId: number; refId: number; destination: string; secret?: string; actor: Actor },
  ): Promise<number> {
    const { rows } = await q.query<{ id: number }>(
      `INSERT INTO warden_pending_send
         (kind, channel, target_user_id, ref_id, destination, secret_hash, requested_by, requested_by_username, requested_by_slack, lease_until)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + make_interval(secs => $10))
       RETURNING id`,
      [
        input.kind,
        input.channel,
        input.targetUserId,
        input.refId,
        input.destination,
        input.secret ? secretHash(input.secret) : null,
        input.actor.user.id,
        input.actor.user.username,
        input.actor.slack.userId || null,
        this.deps.leaseMs / 1000,
      ],
    );
    return Number(rows[0].id);
  }

  /**
   * Runs the send (outside any transaction: the caller's has committed), then marks the row in
   * a short transaction: sent, or failed with the secret revoked. A row the sweep already
   * marked interrupted (this process stalled past its lease) stays so: its secret is revoked.
   */
  async deliver(id: number, send: () => Promise<void>): Promise<SendOutcome> {
    let failure: string | undefined;
    try {
      await send();
    } catch (e) {
      failure = e instanceof UserError ? e.message : 'The send failed.';
      this.deps.logger.warn({ send: id, err: { message: (e as Error).message } }, 'a pending send failed');
    }
    return this.deps.db.tx(async (q) => {
      const { rows } = await q.query<PendingSendRow>(
        `UPDATE warden_pending_send SET status = $2, error = $3, finished_at = now()
          WHERE id = $1 AND status = 'pending' RETURNING ${COLUMNS}`,
        [id, failure ? 'failed' : 'sent', failure ?? null],
      );
      if (rows[0] && !failure) return { ok: true } as const;
      if (rows[0]) return { ok: false, reason: failure!, next: await this.revoker(rows[0].kind)(q, rows[0], failure!) } as const;
      const { rows: now } = await q.query<PendingSendRow>(`SELECT ${COLUMNS} FROM warden_pending_send WHERE id = $1`, [id]);
      return {
        ok: false,
        reason: 'Warden took too long and gave up on this send (it may still arrive, but it no longer works).',
        next: now[0]?.error ?? 'Start again.',
      } as const;
    });
  }

  /**
   * Reports sends whose process died (or hung past the lease) before marking them: each is
   * marked interrupted, its secret revoked and audited, and the admin who asked gets a DM (queued
   * in the same transaction). Run by the `pending-sends` job.
   */
  async sweep(limit = 100): Promise<number> {
    const { rows: due } = await this.deps.db.query<{ id: number }>(
      `SELECT id FROM warden_pending_send WHERE status = 'pending' AND lease_until < now() ORDER BY id LIMIT $1`,
      [limit],
    );
    let n = 0;
    for (const { id } of due) {
      const done = await this.deps.db.tx(async (q) => {
        const reason = 'Warden stopped before it could confirm this send (it may or may not have arrived).';
        const { rows } = await q.query<PendingSendRow>(
          `UPDATE warden_pending_send SET status = 'interrupted', error = $2, finished_at = now()
            WHERE id = $1 AND status = 'pending' AND lease_until < now() RETURNING ${COLUMNS}`,
          [id, reason],
        );
        const row = rows[0];
        if (!row) return false;
        const next = await this.revoker(row.kind)(q, row, reason);
        // Kept on the row, so that a late answer of the stalled process can say it too.
        await q.query('UPDATE warden_pending_send SET error = $2 WHERE id = $1', [id, `${reason} ${next}`]);
        if (row.requested_by_slack) {
          await this.deps.outbox.dm(
            q,
            row.requested_by_slack,
            { text: mrkdwn`:warning: ${describeSend(row)}: ${reason} It was revoked. ${next}` },
            { dedupeKey: `pending-send:${row.id}:interrupted` },
          );
        }
        return true;
      });
      if (done) n++;
    }
    if (n) this.deps.logger.warn({ interrupted: n }, 'pending sends abandoned by a stopped process were revoked and reported');
    return n;
  }

  private revoker(kind: SendKind): Revoker {
    const r = this.deps.revokers()[kind];
    if (!r) throw new Error(`no revoker for pending sends of kind ${kind}`);
    return r;
  }
}

/** "The e-mail code for recovery #… to bob***@***.com", in words an admin recognises. */
export function describeSend(row: Pick<PendingSendRow, 'kind' | 'channel' | 'destination'>): Mrkdwn {
  const what =
    row.kind === '2fa_code'
      ? `The 2FA recovery ${row.channel === 'email' ? 'e-mail' : 'Slack DM'} code`
      : row.kind === 'set_password_link'
        ? 'The set-password link of a new account'
        : 'The password reset link';
  // A Slack destination is stored as the mention Warden made (`<@U…>`): made again from the id, anything else is text.
  const mention = row.channel === 'slack' ? /^<@([UW][A-Z0-9_]+)>$/.exec(row.destination) : null;
  return mrkdwn`${what} to ${mention ? md.user(mention[1]) : row.destination}`;
}
