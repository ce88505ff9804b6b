import type { Db } from '../db/index.js';
import type { FakeSlack } from '../slack/sim/fake-slack.js';
import { messagePayload } from '../slack/blocks.js';
import type { Message } from '../ui.js';

/** How a queued row is shown among the console's Slack traffic (see ConsoleRenderer.call). */
export const QUEUED_METHOD = 'console.queued';

export interface QueuedRow {
  id: number;
  kind: 'post' | 'update' | 'dm';
  channel: string;
  status: string;
  payload: { text: string; blocks?: object[] };
}

/**
 * Break-glass: what Warden would post to Slack, printed. The console's outbox is closed (a
 * delivery to its stand-in Slack would mark production alerts sent and the real Slack would
 * never get them), so this only READS warden_outbox: each row queued after the console
 * started is shown once, as it appears (LISTEN warden_outbox, and a check after every
 * command), and stays queued for the deployed Warden.
 */
export class QueuedAlerts {
  private lastId = 0;
  private unlisten?: () => Promise<void>;
  private running: Promise<void> | null = null;

  constructor(
    private readonly db: Db,
    private readonly fake: FakeSlack,
  ) {}

  /** Starts watching; returns what already waits in the outbox (not printed row by row). */
  async start(): Promise<{ waiting: number; oldest: Date | null }> {
    const { rows } = await this.db.query<{ max: string; waiting: number; oldest: Date | null }>(
      `SELECT coalesce(max(id), 0)::text AS max,
              count(*) FILTER (WHERE status = 'pending')::int AS waiting,
              min(created_at) FILTER (WHERE status = 'pending') AS oldest
         FROM warden_outbox`,
    );
    this.lastId = Number(rows[0].max);
    // Without LISTEN (it failed), rows are still shown after each command.
    this.unlisten = await this.db.listen('warden_outbox', () => void this.check().catch(() => {})).catch(() => undefined);
    return { waiting: rows[0].waiting, oldest: rows[0].oldest };
  }

  async stop(): Promise<void> {
    await this.unlisten?.().catch(() => {});
    this.unlisten = undefined;
    await this.running?.catch(() => {});
  }

  /** Shows the rows queued since the last check (one check at a time, so each row once). */
  async check(): Promise<void> {
    while (this.running) await this.running.catch(() => {});
    this.running = this.show().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async show(): Promise<void> {
    const { rows } = await this.db.query<{ id: string; kind: QueuedRow['kind']; channel: string; status: string; message: Message }>(
      `SELECT id::text AS id, kind, channel, status, message FROM warden_outbox WHERE id > $1 ORDER BY id LIMIT 200`,
      [this.lastId],
    );
    for (const r of rows) {
      const row: QueuedRow = { id: Number(r.id), kind: r.kind, channel: r.channel, status: r.status, payload: messagePayload(r.message) };
      this.fake.note(QUEUED_METHOD, row as unknown as Record<string, unknown>);
      this.lastId = row.id;
    }
  }
}
