import type { webApi } from '@slack/bolt';
import type { Logger } from '../logger.js';

/**
 * Whether Slack has accepted Warden's bot token since start (`auth.test`), for /readyz and
 * for Bolt's authorize. Retried with backoff until it succeeds, so a Warden that started while
 * Slack was down or hanging says so (503 naming slack) and recovers by itself, instead of
 * answering every request with Bolt's cached auth.test failure.
 */
export class SlackAuthProbe {
  ok = false;
  lastError: string | undefined = 'auth.test has not answered yet';
  identity: { botUserId?: string; botId?: string; teamId?: string } = {};
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private delayMs: number;

  constructor(
    private readonly client: webApi.WebClient,
    private readonly logger: Logger,
    private readonly opts: { firstDelayMs?: number; maxDelayMs?: number } = {},
  ) {
    this.delayMs = opts.firstDelayMs ?? 500;
  }

  /** Starts probing in the background; resolves after the first attempt (success or not). */
  async start(): Promise<void> {
    await this.attempt();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    try {
      const r = await this.client.auth.test();
      this.identity = { botUserId: r.user_id as string, botId: r.bot_id as string, teamId: r.team_id as string };
      this.ok = true;
      this.lastError = undefined;
      this.logger.info({ team: r.team_id }, 'Slack accepted the bot token');
    } catch (e) {
      const data = (e as { data?: { error?: string } }).data;
      this.lastError = `auth.test failed: ${data?.error ?? (e as Error).message}`;
      const delay = this.delayMs;
      this.delayMs = Math.min(this.delayMs * 2, this.opts.maxDelayMs ?? 30_000);
      this.logger.warn({ err: e, retryInMs: delay }, 'Slack did not accept auth.test; Warden is not ready');
      if (!this.stopped) {
        this.timer = setTimeout(() => void this.attempt(), delay);
        this.timer.unref();
      }
    }
  }
}
