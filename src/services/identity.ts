import type { Db } from '../db/index.js';
import { ForbiddenError, NotLinkedError } from '../errors.js';
import type { Logger } from '../logger.js';
import { USER_COLUMNS, userRowSchema, type UserRow } from '../domain/user.js';

/** The Slack side of a request: who clicked or typed, in which workspace and channel. */
export interface SlackIdentity {
  userId: string;
  teamId: string;
  channelId?: string;
  /** Set by the console (demo and break-glass): audited as `source: console` with the OS user. */
  origin?: { source: 'console'; os_user: string };
}

/** An application account acting through Slack. */
export interface Actor {
  user: UserRow;
  slack: SlackIdentity;
}

/** What Warden needs to know of a Slack user (users.info) to decide whether its e-mail can be trusted. */
export interface SlackProfile {
  id: string;
  /** The user's home workspace (differs from the installing team for Slack Connect users). */
  teamId: string | null;
  email: string | null;
  deleted: boolean;
  isBot: boolean;
  /** Multi-channel guest. */
  isRestricted: boolean;
  /** Single-channel guest. */
  isUltraRestricted: boolean;
  isEmailConfirmed: boolean;
}

/** Looks up Slack profiles (users.info); implemented by the Slack layer. */
export interface SlackDirectory {
  profileOf(slackUserId: string): Promise<SlackProfile | null>;
}

/**
 * The one comparison Warden makes between e-mail addresses for automatic linking: trimmed,
 * ASCII letters lower-cased, nothing else folded. An address with any non-ASCII character
 * gives null: lookalikes (Turkish İ, the Kelvin sign K) must never match an account.
 */
export function normalizeEmail(email: string | null | undefined): string | null {
  const t = (email ?? '').trim();
  if (!t || /[^\x21-\x7e]/.test(t)) return null;
  return t.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** Why a Slack profile may not be matched by its e-mail; null when it may. */
export function profileRefusal(p: SlackProfile | null, installingTeam: string): string | null {
  if (!p) return 'Warden could not read your Slack profile';
  if (p.deleted) return 'your Slack account is deactivated';
  if (p.isBot) return 'bots are never matched to accounts';
  if (p.teamId !== installingTeam) return 'your Slack account belongs to another workspace (Slack Connect)';
  if (p.isRestricted || p.isUltraRestricted) return 'guest accounts are never matched automatically';
  if (!p.isEmailConfirmed) return 'the e-mail of your Slack profile is not confirmed';
  if (!p.email) return 'your Slack profile has no e-mail address';
  if (!normalizeEmail(p.email)) return 'the e-mail of your Slack profile has characters other than plain ASCII, which Warden does not match automatically';
  return null;
}

/** How long an automatic match waits after the account's e-mail changed: the identity cool-down. */
export interface IdentityPolicy {
  cooldownSeconds: number;
}

const HOW_TO_LINK = 'Ask an admin to link you explicitly with `/users link USERNAME @you`.';

interface CachedLink {
  userId: number;
  method: 'email' | 'explicit';
  /** The e-mail an automatic link was made with. */
  email: string | null;
  at: number;
}

/**
 * Resolves a Slack user to the application account linked to it: an explicit link made
 * with `/users link`, or else the account whose e-mail matches the Slack profile e-mail
 * exactly (only for full, confirmed members of the installing team), remembered with
 * that e-mail. An automatic link stops working as soon as the account's or the Slack
 * profile's e-mail differs from the one it was made with, and the person is told why.
 *
 * The Slack → account mapping is cached; the account row itself is read fresh on every
 * request so a role change takes effect at once. Replicas drop cached mappings when
 * PostgreSQL announces a link or account change (NOTIFY warden_identity, sql/015); while
 * that channel is not listened to, entries live only a second.
 */
export class IdentityService {
  private cache = new Map<string, CachedLink>();
  private ttlMs = 1000;
  private unlisten?: () => Promise<void>;

  constructor(
    private readonly db: Db,
    private readonly directory: SlackDirectory,
    private readonly policy: IdentityPolicy = { cooldownSeconds: 72 * 3600 },
    private readonly logger?: Logger,
  ) {}

  /** Listens for identity changes made anywhere (other replicas, the application, psql). */
  async start(): Promise<void> {
    try {
      this.unlisten = await this.db.listen('warden_identity', (payload) => this.invalidate(payload));
      this.ttlMs = 60_000;
    } catch (err) {
      this.logger?.warn({ err }, 'identity: LISTEN failed; cached Slack links live one second');
    }
  }

  async stop(): Promise<void> {
    this.ttlMs = 1000;
    await this.unlisten?.().catch(() => {});
    this.unlisten = undefined;
  }

  /** A payload from the trigger: `link:TEAM:USER`, `user:ID`; empty after a reconnect (anything may have changed). */
  private invalidate(payload: string) {
    if (payload.startsWith('link:')) {
      this.cache.delete(payload.slice(5));
    } else if (payload.startsWith('user:')) {
      const id = Number(payload.slice(5));
      for (const [k, v] of this.cache) if (v.userId === id) this.cache.delete(k);
    } else {
      this.cache.clear();
    }
  }

  async resolve(slack: SlackIdentity): Promise<Actor> {
    const key = `${slack.teamId}:${slack.userId}`;
    const cached = this.cache.get(key);
    let link = cached && Date.now() - cached.at < this.ttlMs ? cached : undefined;
    if (!link) {
      this.cache.delete(key);
      link = await this.lookup(slack);
      this.cache.set(key, link);
    }
    const user = await this.loadUser(link.userId);
    if (!user) {
      this.cache.delete(key);
      throw new NotLinkedError(
        'Your Slack account is not linked to an application account (the account it was linked to no longer exists). ' + HOW_TO_LINK,
      );
    }
    if (link.method === 'email' && normalizeEmail(user.email) !== link.email) {
      this.cache.delete(key);
      throw new NotLinkedError(
        'Your Slack account was linked to your application account because the e-mail addresses matched, but the account’s e-mail has changed since. ' +
          `For safety that link is paused until it is confirmed. ${HOW_TO_LINK}`,
      );
    }
    return { user, slack };
  }

  /** Forgets cached mappings on this replica (the trigger tells the others). */
  forget(slack?: SlackIdentity) {
    if (slack) this.cache.delete(`${slack.teamId}:${slack.userId}`);
    else this.cache.clear();
  }

  /** Slack accounts linked to an application account, for DMs. */
  async slackAccountsOf(userId: number): Promise<{ teamId: string; slackUserId: string; method: string; createdAt: Date }[]> {
    const { rows } = await this.db.query<{ slack_team_id: string; slack_user_id: string; method: string; created_at: Date }>(
      'SELECT slack_team_id, slack_user_id, method, created_at FROM warden_slack_link WHERE user_id = $1 ORDER BY created_at',
      [userId],
    );
    return rows.map((r) => ({ teamId: r.slack_team_id, slackUserId: r.slack_user_id, method: r.method, createdAt: r.created_at }));
  }

  /** The Slack profile, for checks outside resolve (explicit links). */
  profileOf(slackUserId: string): Promise<SlackProfile | null> {
    return this.directory.profileOf(slackUserId);
  }

  private async lookup(slack: SlackIdentity): Promise<CachedLink> {
    const { rows } = await this.db.query<{ user_id: number; method: 'email' | 'explicit'; email: string | null }>(
      'SELECT user_id, method, email FROM warden_slack_link WHERE slack_team_id = $1 AND slack_user_id = $2',
      [slack.teamId, slack.userId],
    );
    const existing = rows[0];
    if (existing?.method === 'explicit') return { userId: existing.user_id, method: 'explicit', email: null, at: Date.now() };

    const profile = await this.directory.profileOf(slack.userId);
    const refusal = profileRefusal(profile, slack.teamId);
    const email = refusal ? null : normalizeEmail(profile!.email);
    if (existing) {
      // An automatic link holds only while the Slack profile still shows the address it was made with.
      if (!refusal && existing.email === null) {
        // Made before links recorded their e-mail: record it now if it still matches strictly.
        const user = await this.loadUser(existing.user_id);
        if (user && normalizeEmail(user.email) === email) {
          await this.db.query(
            `UPDATE warden_slack_link SET email = $3 WHERE slack_team_id = $1 AND slack_user_id = $2 AND email IS NULL`,
            [slack.teamId, slack.userId, email],
          );
          return { userId: existing.user_id, method: 'email', email, at: Date.now() };
        }
      } else if (!refusal && existing.email === email) {
        return { userId: existing.user_id, method: 'email', email, at: Date.now() };
      }
      throw new NotLinkedError(
        refusal
          ? `Your Slack account was linked by its e-mail address, but that no longer counts: ${refusal}. ${HOW_TO_LINK}`
          : 'Your Slack account was linked to your application account because the e-mail addresses matched, but your Slack profile e-mail has changed since. ' +
            `For safety that link is paused until it is confirmed. ${HOW_TO_LINK}`,
      );
    }
    if (refusal) {
      throw new NotLinkedError(`Your Slack account is not linked to an application account, and Warden cannot match it by e-mail: ${refusal}. ${HOW_TO_LINK}`);
    }
    // Exact comparison in code; the SQL only narrows the candidates (PostgreSQL's lower() knows Unicode).
    const match = await this.db.query<{ id: number; email: string; changed: boolean }>(
      `SELECT u.id, u.email,
              EXISTS (SELECT 1 FROM warden_identity_change c
                       WHERE c.user_id = u.id AND c.kind = 'email' AND c.created_at > now() - make_interval(secs => $2)) AS changed
         FROM "user" u WHERE lower(u.email) = $1`,
      [email, this.policy.cooldownSeconds],
    );
    const candidates = match.rows.filter((r) => normalizeEmail(r.email) === email);
    if (candidates.length !== 1) {
      throw new NotLinkedError(
        'Your Slack account is not linked to an application account, and no account has exactly the e-mail address of your Slack profile. ' + HOW_TO_LINK,
      );
    }
    if (candidates[0].changed) {
      throw new NotLinkedError(
        'The application account with your Slack e-mail address had its e-mail changed recently, so Warden does not match it automatically during the identity cool-down. ' +
          HOW_TO_LINK,
      );
    }
    const userId = candidates[0].id;
    await this.db.query(
      `INSERT INTO warden_slack_link (slack_team_id, slack_user_id, user_id, method, email)
       VALUES ($1, $2, $3, 'email', $4) ON CONFLICT DO NOTHING`,
      [slack.teamId, slack.userId, userId, email],
    );
    return { userId, method: 'email', email, at: Date.now() };
  }

  private async loadUser(id: number): Promise<UserRow | undefined> {
    const { rows } = await this.db.query(`SELECT ${USER_COLUMNS} FROM "user" WHERE id = $1`, [id]);
    return rows[0] ? userRowSchema.parse(rows[0]) : undefined;
  }
}

/** Role check used by the command router and again inside every mutating service call. */
export function requireAdmin(actor: Actor, what = 'do this'): void {
  if (actor.user.role !== 'admin') {
    throw new ForbiddenError(`Only admins can ${what}. You are signed in as ${actor.user.username} (${actor.user.role}).`);
  }
}
