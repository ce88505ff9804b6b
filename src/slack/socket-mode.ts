import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SocketModeReceiver, type App, type Logger as BoltLogger, type Receiver } from '@slack/bolt';
import type { Logger } from '../logger.js';

/** A route of the small HTTP server Socket Mode keeps for probes and metrics. */
export interface PlainRoute {
  path: string;
  method: string;
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void;
}

export interface SocketModeOptions {
  appToken: string;
  /** SLACK_API_URL: where `apps.connections.open` goes (Bolt's default is always slack.com). */
  slackApiUrl: string;
  /** Timeout of one `apps.connections.open` call. */
  apiTimeoutMs: number;
  port: number;
  routes: PlainRoute[];
  boltLogger: BoltLogger;
  logger: Logger;
  /** One connection attempt (open + WebSocket + Slack's hello) gives up after this long. */
  attemptTimeoutMs?: number;
  /** Backoff between failed attempts: first delay, doubled up to the cap. */
  firstDelayMs?: number;
  maxDelayMs?: number;
}

/**
 * Socket Mode that a production process can live with. Bolt's receiver, as configured by
 * default, calls `apps.connections.open` on slack.com whatever SLACK_API_URL says, retries it up
 * to 100 times inside `start()` (so the caller never gets to install jobs or the SIGTERM handler),
 * and once the socket has dropped, a failed reconnect ends in an unhandled rejection and no
 * further attempts. Here:
 * - `apps.connections.open` goes to SLACK_API_URL, with a timeout and no hidden retries;
 * - `start()` listens on PORT (health, readiness, metrics) and returns after the first attempt,
 *   connected or not; a failed attempt is logged with its reason and retried in the background
 *   with capped exponential backoff, a dropped connection (Slack's `disconnect` refresh, a
 *   network fault) is reopened at once;
 * - `connected` / `lastError` feed /readyz, which is 503 naming the Slack socket while it is down;
 * - `stop()` closes the socket (bounded wait for the close handshake) and the HTTP server.
 */
export class WardenSocketModeReceiver implements Receiver {
  connected = false;
  /** Bolt's receiver: turns envelopes into app.processEvent calls with an ack over the socket. */
  private readonly inner: SocketModeReceiver;
  lastError: string | undefined = 'not connected yet';
  private readonly server: http.Server;
  private readonly opts: Required<Omit<SocketModeOptions, 'appToken' | 'slackApiUrl' | 'apiTimeoutMs' | 'routes' | 'boltLogger'>>;
  private stopped = false;
  private attempting = false;
  private timer?: NodeJS.Timeout;
  private delayMs: number;

  constructor(o: SocketModeOptions) {
    this.inner = new SocketModeReceiver({
      appToken: o.appToken,
      logger: o.boltLogger,
      // Reconnecting is done here (see above), not by the client.
      autoReconnectEnabled: false,
      installerOptions: {
        clientOptions: { slackApiUrl: o.slackApiUrl, timeout: o.apiTimeoutMs, retryConfig: { retries: 0 }, rejectRateLimitedCalls: true },
      },
    });
    this.opts = {
      port: o.port,
      logger: o.logger,
      attemptTimeoutMs: o.attemptTimeoutMs ?? o.apiTimeoutMs + 10_000,
      firstDelayMs: o.firstDelayMs ?? 1000,
      maxDelayMs: o.maxDelayMs ?? 30_000,
    };
    this.delayMs = this.opts.firstDelayMs;
    this.server = http.createServer((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const route = o.routes.find((r) => r.path === path && r.method === req.method);
      if (route) return route.handler(req, res);
      res.writeHead(404);
      res.end();
    });
    this.client.on('connected', () => {
      this.connected = true;
      this.lastError = undefined;
      this.delayMs = this.opts.firstDelayMs;
      this.opts.logger.info('Slack socket connected (Socket Mode)');
    });
    this.client.on('disconnected', () => {
      const was = this.connected;
      this.connected = false;
      if (this.stopped || this.attempting) return;
      this.lastError = 'the connection closed';
      this.opts.logger.warn('Slack socket closed; reconnecting');
      // A refresh (Slack's `disconnect`) or a dropped link: reopen at once, back off if that fails.
      this.schedule(was ? 0 : this.nextDelay());
    });
  }

  init(app: App): void {
    this.inner.init(app);
  }

  private get client() {
    return this.inner.client;
  }

  /** Listens for probes, then makes the first connection attempt; resolves either way. */
  async start(): Promise<http.Server> {
    this.stopped = false;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    await this.attempt();
    return this.server;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    this.server.closeIdleConnections();
    // The close handshake: Slack answers at once; a peer that does not is cut off after 2 s.
    const disconnected = this.client.disconnect();
    if (!(await settlesWithin(disconnected, 2000))) await settlesWithin(this.client.disconnect(), 500);
    this.connected = false;
    this.lastError = 'stopped';
    await settlesWithin(closed, 1000);
  }

  get port(): number | undefined {
    return (this.server.address() as AddressInfo | null)?.port;
  }

  private nextDelay(): number {
    const d = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.opts.maxDelayMs);
    return d;
  }

  private schedule(ms: number) {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.attempt();
    }, ms);
    this.timer.unref();
  }

  private async attempt(): Promise<void> {
    if (this.stopped || this.attempting) return;
    this.attempting = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.client.start(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no hello from Slack within ${this.opts.attemptTimeoutMs} ms`)), this.opts.attemptTimeoutMs);
        }),
      ]);
    } catch (e) {
      this.connected = false;
      this.lastError = describe(e);
      // A half-open attempt (socket open, no hello) is cut before the next one.
      if (!this.stopped) void this.client.disconnect().catch(() => {});
      const retryInMs = this.nextDelay();
      this.opts.logger.warn(
        { reason: this.lastError, retryInMs },
        'Slack socket could not be opened (Socket Mode); Warden is not ready and keeps trying. Check SLACK_APP_TOKEN (xapp-…, scope connections:write) and SLACK_API_URL',
      );
      this.attempting = false;
      this.schedule(retryInMs);
      return;
    } finally {
      clearTimeout(timer);
      this.attempting = false;
    }
  }
}

/** The Web API's error code when there is one (`invalid_auth`), else the message. */
function describe(e: unknown): string {
  const data = (e as { data?: { error?: string } } | undefined)?.data;
  if (data?.error) return `apps.connections.open failed: ${data.error}`;
  if (e instanceof Error) {
    // A request error wraps the network cause (ECONNREFUSED, a timeout): that is what on-call needs.
    const original = (e as { original?: { cause?: { code?: string; message?: string } } }).original;
    const cause = original?.cause?.code ?? original?.cause?.message;
    return cause ? `${e.message} (${cause})` : e.message;
  }
  return 'the WebSocket closed before Slack said hello';
}

async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const done = await Promise.race([
    p.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms))),
  ]);
  clearTimeout(timer);
  return done;
}
