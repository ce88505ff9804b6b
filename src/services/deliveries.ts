import type { Db } from '../db/index.js';
import type { Logger } from '../logger.js';
import type { Store } from '../store/index.js';

/**
 * "Is this the first time Slack delivered this request?" — Slack re-sends a request it got no
 * timely answer for, and a re-sent command or click must not run twice. The store (Redis)
 * answers first; when it cannot be reached, the database does (one row per key, expired rows
 * pruned now and then), so a Redis outage does not turn every Slack retry into a second run.
 * Only when both are down is a delivery taken as new: refusing it would refuse every request.
 */
export class DeliveryDedupe {
  private lastPrune = 0;

  constructor(
    private readonly deps: { store: Store; db: Db; logger: Logger },
    private readonly opts: { pruneEveryMs?: number } = {},
  ) {}

  /** True when this call is the first to see `key` within ttlSeconds. */
  async first(key: string, ttlSeconds: number): Promise<boolean> {
    try {
      return await this.deps.store.setIfAbsent(key, '1', ttlSeconds);
    } catch (storeError) {
      try {
        return await this.firstInDatabase(key, ttlSeconds);
      } catch (dbError) {
        this.deps.logger.warn({ err: dbError, storeError }, 'duplicate-delivery check unavailable (store and database); handling the request');
        return true;
      }
    }
  }

  private async firstInDatabase(key: string, ttlSeconds: number): Promise<boolean> {
    const { db } = this.deps;
    // An expired row is taken over; a live one means this delivery was seen.
    const r = await db.query(
      `INSERT INTO warden_delivery (digest, expires_at) VALUES ($1, now() + make_interval(secs => $2))
       ON CONFLICT (digest) DO UPDATE SET expires_at = EXCLUDED.expires_at
        WHERE warden_delivery.expires_at < now()
       RETURNING digest`,
      [key, ttlSeconds],
    );
    if (Date.now() - this.lastPrune > (this.opts.pruneEveryMs ?? 60_000)) {
      this.lastPrune = Date.now();
      void db.query('DELETE FROM warden_delivery WHERE expires_at < now()').catch(() => {});
    }
    return r.rows.length > 0;
  }
}
