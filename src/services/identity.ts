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

/** What users.lookupByEmail answered: the profile, or Slack's error code (`users_not_found`, `missing_scope`, …). */
export type EmailSearch = { profile: SlackProfile } | { error: string };

/** Looks up Slack profiles (users.info, users.lookupByEmail); implemented by the Slack layer. */
export interface SlackDirectory {
  profileOf(slackUserId: string): Promise<SlackProfile | null>;
  /** The Slack user whose profile has this e-mail (Slack's own comparison: Warden re-checks it). */
  findByEmail?(email: string): Promise<EmailSearch>;
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

type ProfileProblem = 'unreadable' | 'deactivated' | 'bot' | 'other_team' | 'guest' | 'unconfirmed' | 'no_email' | 'non_ascii';

/** Why a Slack profile may not be matched by its e-mail (the rules of automatic linking); null when it may. */
function profileProblem(p: SlackProfile | null, installingTeam: string): ProfileProblem | null {
  if (!p) return 'unreadable';
  if (p.deleted) return 'deactivated';
  if (p.isBot) return 'bot';
  if (p.teamId !== installingTeam) return 'other_team';
  if (p.isRestricted || p.isUltraRestricted) return 'guest';
  if (!p.isEmailConfirmed) return 'unconfirmed';
  if (!p.email) return 'no_email';
  if (!normalizeEmail(p.email)) return 'non_ascii';
  return null;
}

/** Each problem told to the Slack user it is about. */
const TO_THEM: Record<ProfileProblem, string> = {
  unreadable: 'Warden could not read your Slack profile',
  deactivated: 'your Slack account is deactivated',
  bot: 'bots are never matched to accounts',
  other_team: 'your Slack account belongs to another workspace (Slack Connect)',
  guest: 'guest accounts are never matched automatically',
  unconfirmed: 'the e-mail of your Slack profile is not confirmed',
  no_email: 'your Slack profile has no e-mail address',
  non_ascii: 'the e-mail of your Slack profile has characters other than plain ASCII, which Warden does not match automatically',
};

/** Each problem told to an admin, about the Slack user Slack found for someone's e-mail address. */
const ABOUT_IT: Record<ProfileProblem, string> = {
  unreadable: 'Warden could not read the profile of the Slack user Slack found for it',
  deactivated: 'the Slack user with that address is deactivated',
  bot: 'the Slack user with that address is a bot',
  other_team: 'the Slack user with that address belongs to another workspace (Slack Connect)',
  guest: 'the Slack user with that address is a guest, and guests are never matched automatically',
  unconfirmed: 'the Slack user with that address has not confirmed it',
  no_email: 'the Slack user found has no e-mail address',
  non_ascii: 'the Slack user found has an address with characters other than plain ASCII',
};

/** Why a Slack profile may not be matched by its e-mail, said to that Slack user; null when it may. */
export function profileRefusal(p: SlackProfile | null, installingTeam: string): string | null {
  const problem = profileProblem(p, installingTeam);
  return problem ? TO_THEM[problem] : null;
}

/** The account a Slack profile's e-mail designates, or why none (the one matcher: linking and look-ups). */
type EmailMatch = { userId: number; email: string } | { problem: ProfileProblem | 'no_account' | 'cooldown' };

/**
 * How an application account can be reached on Slack without a link: the Slack user its e-mail
 * designates under the automatic-linking rules, or why nobody can be (said to an admin).
 */
export type SlackReach = { slackUserId: string; email: string } | { why: string };

/** How long an automatic match waits after the account's e-mail changed: the identity cool-down. */
export interface IdentityPolicy {
  cooldownSeconds: number;
}

const HOW_TO_LINK = 'Ask an admin to link you explicitly with `/users link USERNAME @you`.';

/** The longest an account row is served from memory, even when no change was announced. */
export const ROW_TTL_MS = 5000;

interface CachedRow {
  user: UserRow;
  at: number;
}

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
 * Both the Slack → account mapping and the account row are cached, and dropped the moment
 * PostgreSQL announces a change (NOTIFY warden_identity: links and identity columns from
 * sql/015, any change of an account row from sql/020), whoever made it: another replica, the
 * application, psql. Warden's own writes drop the row on commit too (forgetAccount), so the
 * next request never waits for its own notification. The row is cached only while that
 * channel is listened to, and for at most ROW_TTL_MS (a bound for a connection that stalls
 * without dropping); while the channel is down, mappings live one second and rows are read
 * fresh on every request. (#15: the row read was one of two SQL round trips per request.)
 */
export class IdentityService {
  private cache = new Map<string, CachedLink>();
  private ttlMs = 1000;
  private rows = new Map<number, CachedRow>();
  /** True while warden_identity is listened to: only then are rows cached. */
  private listening = false;
  /** Bumped by every invalidation: a row read that started before one is not cached. */
  private generation = 0;
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
      this.unlisten = await this.db.listen('warden_identity', (payload) => this.invalidate(payload), { onLost: () => this.lost() });
      this.ttlMs = 60_000;
      this.listening = true;
    } catch (err) {
      this.logger?.warn({ err }, 'identity: LISTEN failed; cached Slack links live one second');
    }
  }

  async stop(): Promise<void> {
    this.lost();
    await this.unlisten?.().catch(() => {});
    this.unlisten = undefined;
  }

  /** The notification channel dropped: changes may go unannounced until it is back. */
  private lost() {
    this.listening = false;
    this.ttlMs = 1000;
    this.generation++;
    this.rows.clear();
  }

  /**
   * A payload from the triggers: `link:TEAM:USER`, `user:ID` (identity columns or deletion),
   * `row:ID` (any change of the row); empty after a reconnect (anything may have changed).
   */
  private invalidate(payload: string) {
    this.generation++;
    if (payload.startsWith('link:')) {
      this.cache.delete(payload.slice(5));
    } else if (payload.startsWith('row:')) {
      this.rows.delete(Number(payload.slice(4)));
    } else if (payload.startsWith('user:')) {
      const id = Number(payload.slice(5));
      this.rows.delete(id);
      for (const [k, v] of this.cache) if (v.userId === id) this.cache.delete(k);
    } else {
      this.cache.clear();
      this.rows.clear();
      if (this.unlisten) {
        // Listened to again after a drop.
        this.listening = true;
        this.ttlMs = 60_000;
      }
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
    const user = await this.account(link.userId);
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

  /** Forgets cached mappings (all of them: also every cached row) on this replica (the trigger tells the others). */
  forget(slack?: SlackIdentity) {
    this.generation++;
    if (slack) this.cache.delete(`${slack.teamId}:${slack.userId}`);
    else {
      this.cache.clear();
      this.rows.clear();
    }
  }

  /**
   * Drops the cached row of an account Warden has just changed, after the commit: the
   * notification would do it too, but a moment later than the next request may come.
   */
  forgetAccount(userId: number) {
    this.generation++;
    this.rows.delete(userId);
  }

  /** The account row: from memory while changes are announced (at most ROW_TTL_MS old), else read. */
  private async account(id: number): Promise<UserRow | undefined> {
    const hit = this.rows.get(id);
    if (hit && this.listening && Date.now() - hit.at < ROW_TTL_MS) return hit.user;
    const generation = this.generation;
    const user = await this.loadUser(id);
    // Not cached when a change was announced while it was being read: it may be the old row.
    // Frozen: one object serves many requests, so nothing may change it in place.
    if (user && this.listening && generation === this.generation) this.rows.set(id, { user: Object.freeze(user), at: Date.now() });
    else this.rows.delete(id);
    return user;
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
    const match = await this.matchByEmail(profile, slack.teamId);
    if ('problem' in match) {
      if (match.problem === 'no_account') {
        throw new NotLinkedError(
          'Your Slack account is not linked to an application account, and no account has exactly the e-mail address of your Slack profile. ' + HOW_TO_LINK,
        );
      }
      if (match.problem === 'cooldown') {
        throw new NotLinkedError(
          'The application account with your Slack e-mail address had its e-mail changed recently, so Warden does not match it automatically during the identity cool-down. ' +
            HOW_TO_LINK,
        );
      }
      throw new NotLinkedError(
        `Your Slack account is not linked to an application account, and Warden cannot match it by e-mail: ${TO_THEM[match.problem]}. ${HOW_TO_LINK}`,
      );
    }
    await this.db.query(
      `INSERT INTO warden_slack_link (slack_team_id, slack_user_id, user_id, method, email)
       VALUES ($1, $2, $3, 'email', $4) ON CONFLICT DO NOTHING`,
      [slack.teamId, slack.userId, match.userId, match.email],
    );
    return { userId: match.userId, method: 'email', email: match.email, at: Date.now() };
  }

  /**
   * The rules of automatic linking, in one place: the profile must pass the users.info checks,
   * exactly one account must have its address (trimmed, ASCII lower-case, nothing folded), and
   * that account's e-mail must not have changed within the identity cool-down.
   */
  private async matchByEmail(profile: SlackProfile | null, installingTeam: string): Promise<EmailMatch> {
    const problem = profileProblem(profile, installingTeam);
    if (problem) return { problem };
    const email = normalizeEmail(profile!.email)!;
    // Exact comparison in code; the SQL only narrows the candidates (PostgreSQL's lower() knows Unicode).
    const match = await this.db.query<{ id: number; email: string; changed: boolean }>(
      `SELECT u.id, u.email,
              EXISTS (SELECT 1 FROM warden_identity_change c
                       WHERE c.user_id = u.id AND c.kind = 'email' AND c.created_at > now() - make_interval(secs => $2)) AS changed
         FROM "user" u WHERE lower(u.email) = $1`,
      [email, this.policy.cooldownSeconds],
    );
    const candidates = match.rows.filter((r) => normalizeEmail(r.email) === email);
    if (candidates.length !== 1) return { problem: 'no_account' };
    if (candidates[0].changed) return { problem: 'cooldown' };
    return { userId: candidates[0].id, email };
  }

  /**
   * The Slack user an account without a link can be told things on (a decision DM): Slack's
   * users.lookupByEmail finds a candidate for the account's address, and only when the very
   * rules of automatic linking match that candidate back to this account is it used. Records
   * no link: a link is made when the person acts through Slack themselves (resolve), never on
   * someone else's request. `installingTeam` is the team of the request that asks.
   */
  async slackUserByEmail(account: Pick<UserRow, 'id' | 'email'>, installingTeam: string, timeoutMs = 2000): Promise<SlackReach> {
    const email = normalizeEmail(account.email);
    if (!email) return { why: 'their e-mail address has characters other than plain ASCII (or none), and such addresses are never matched' };
    if (!this.directory.findByEmail) return { why: 'Warden cannot look Slack users up by e-mail here' };
    let timer: NodeJS.Timeout | undefined;
    const found = await Promise.race([
      this.directory.findByEmail(email).catch((err: unknown) => ({ error: String((err as Error)?.message ?? err) })),
      new Promise<{ error: string }>((resolve) => {
        timer = setTimeout(() => resolve({ error: 'timeout' }), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    if ('error' in found) {
      if (found.error === 'users_not_found') return { why: 'no member of this Slack workspace has their e-mail address' };
      if (found.error === 'missing_scope') return { why: 'Warden’s Slack app lacks the users:read.email scope needed to look people up by e-mail' };
      if (found.error === 'timeout') return { why: 'Slack did not answer the look-up by e-mail in time' };
      return { why: `Slack refused the look-up by e-mail (${found.error})` };
    }
    const match = await this.matchByEmail(found.profile, installingTeam);
    if ('problem' in match) {
      if (match.problem === 'cooldown') return { why: 'their e-mail address was changed recently (identity cool-down), so it is not trusted to find them' };
      if (match.problem === 'no_account') return { why: 'the Slack user with that address does not match exactly one account' };
      return { why: ABOUT_IT[match.problem] };
    }
    if (match.userId !== account.id) return { why: 'the Slack user with that address matches another account' };
    return { slackUserId: found.profile.id, email };
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
