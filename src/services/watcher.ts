import type { Db } from '../db/index.js';
import type { Logger } from '../logger.js';

/**
 * How the alert watchers follow the database: LISTEN on a channel that a trigger
 * NOTIFYs, a catch-up scan right away, and a slow safety scan on a timer for whatever a
 * lost notification missed. `scan` should be single-flight (SingleFlight) — notifications
 * arrive in bursts. Returns stop(), which waits for a scan in progress.
 */
export async function startWatcher(opts: {
  db: Db;
  /** The NOTIFY channel. */
  channel: string;
  /** For log lines: 'lockouts', 'bursts'. */
  name: string;
  logger: Logger;
  scan: () => Promise<unknown>;
  /** Resolves when no scan is running (stop waits for it). */
  idle: () => Promise<void>;
  safetyScanMs: number;
  /** Coalesce notifications arriving within this many ms into one scan. */
  debounceMs?: number;
}): Promise<() => Promise<void>> {
  const { logger, name } = opts;
  let stopped = false;
  let pending: NodeJS.Timeout | null = null;
  const kick = () => {
    if (!stopped) opts.scan().catch((err) => logger.error({ err }, `${name} scan failed`));
  };
  const onNotify = opts.debounceMs
    ? () => {
        if (pending || stopped) return;
        pending = setTimeout(() => {
          pending = null;
          kick();
        }, opts.debounceMs);
        pending.unref();
      }
    : kick;
  let unlisten: (() => Promise<void>) | undefined;
  try {
    unlisten = await opts.db.listen(opts.channel, onNotify);
  } catch (err) {
    logger.warn({ err }, `${name}: LISTEN failed; scanning on the timer only`);
  }
  kick();
  const timer = setInterval(kick, opts.safetyScanMs);
  timer.unref();
  return async () => {
    stopped = true;
    clearInterval(timer);
    if (pending) clearTimeout(pending);
    await unlisten?.().catch(() => {});
    await opts.idle();
  };
}
