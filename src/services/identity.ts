import type { Db } from '../db/index.js';
import { ForbiddenError, NotLinkedError } from '../errors.js';
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

/** Looks up a Slack user's profile e-mail (users.info); implemented by the Slack layer. */
export interface SlackDirectory {
  emailOf(slackUserId: string): Promise<string | null>;
}

const CACHE_MS = 60_000;

/**
 * Resolves a Slack user to the application account linked to it: an explicit link made
 * with `/users link`, or else the account whose e-mail matches the Slack profile e-mail
 * (remembered as a link with method 'email'). The mapping is cached briefly; the account
 * row itself is read fresh on every request so a role change takes effect at once.
 */
export class IdentityService {
  private cache = new Map<string, { userId: number; at: number }>();

  constructor(
    private readonly db: Db,
    private readonly directory: SlackDirectory,
  ) {}

  async resolve(slack: SlackIdentity): Promise<Actor> {
    const key = `${slack.teamId}:${slack.userId}`;
    const cached = this.cache.get(key);
    let userId = cached && Date.now() - cached.at < CACHE_MS ? cached.userId : undefined;
    if (userId === undefined) {
      userId = await this.lookup(slack);
      if (userId !== undefined) this.cache.set(key, { userId, at: Date.now() });
    }
    const user = userId === undefined ? undefined : await this.loadUser(userId);
    if (!user) {
      this.cache.delete(key);
      throw new NotLinkedError(
        'Your Slack account is not linked to an application account. ' +
          'Ask an admin to run `/users link USERNAME @you`, or make sure your Slack profile e-mail matches your account e-mail.',
      );
    }
    return { user, slack };
  }

  /** Forgets cached mappings, e.g. after a link changed or an account was deleted. */
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

  private async lookup(slack: SlackIdentity): Promise<number | undefined> {
    const link = await this.db.query<{ user_id: number }>(
      'SELECT user_id FROM warden_slack_link WHERE slack_team_id = $1 AND slack_user_id = $2',
      [slack.teamId, slack.userId],
    );
    if (link.rows[0]) return link.rows[0].user_id;

    const email = await this.directory.emailOf(slack.userId);
    if (!email) return undefined;
    const match = await this.db.query<{ id: number }>('SELECT id FROM "user" WHERE lower(email) = lower($1)', [email]);
    if (match.rows.length !== 1) return undefined;
    const userId = match.rows[0].id;
    await this.db.query(
      `INSERT INTO warden_slack_link (slack_team_id, slack_user_id, user_id, method)
       VALUES ($1, $2, $3, 'email') ON CONFLICT DO NOTHING`,
      [slack.teamId, slack.userId, userId],
    );
    return userId;
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
