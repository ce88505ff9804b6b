import type { IncomingMessage, ServerResponse } from 'node:http';
import { HTTPReceiver, type HTTPReceiverOptions } from '@slack/bolt';
import type { Logger } from '../logger.js';

/**
 * Replay protection at the edge (issue 10). Slack signs `v0:timestamp:body`; Bolt refuses
 * a timestamp more than 5 minutes in the past but accepts any in the future, so a request
 * signed with a future timestamp could be replayed for as long as that lies ahead. Warden
 * refuses one more than 5 minutes ahead too, which bounds the life of any signed request to
 * the 10 minutes around its timestamp; the duplicate-delivery keys outlive that.
 */
export const MAX_CLOCK_SKEW_SECONDS = 5 * 60;
/** A signed request is accepted at most 2 × MAX_CLOCK_SKEW_SECONDS; its duplicate key lives longer (margin for replica clocks). */
export const DUPLICATE_KEY_TTL_SECONDS = 2 * MAX_CLOCK_SKEW_SECONDS + 5 * 60;

/** True when the request claims a signature time too far in the future. */
export function isFutureDated(req: IncomingMessage, nowMs = Date.now()): boolean {
  const raw = req.headers['x-slack-request-timestamp'];
  const ts = Number(Array.isArray(raw) ? raw[0] : raw);
  return Number.isFinite(ts) && ts > Math.floor(nowMs / 1000) + MAX_CLOCK_SKEW_SECONDS;
}

/** Bolt's HTTP receiver with the future-timestamp refusal in front of its signature check. */
export class WardenHTTPReceiver extends HTTPReceiver {
  constructor(opts: HTTPReceiverOptions & { wardenLogger: Logger }) {
    const { wardenLogger, ...rest } = opts;
    super(rest);
    const inner = this.requestListener;
    this.requestListener = (req: IncomingMessage, res: ServerResponse) => {
      if (req.method === 'POST' && isFutureDated(req)) {
        wardenLogger.warn(
          { timestamp: req.headers['x-slack-request-timestamp'], url: req.url },
          'refused a Slack request signed with a timestamp more than 5 minutes in the future (possible replay)',
        );
        // Drain the body so the connection can be reused, then answer like a bad signature.
        req.resume();
        res.writeHead(401);
        res.end();
        return;
      }
      inner(req, res);
    };
  }
}
