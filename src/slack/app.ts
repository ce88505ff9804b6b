import crypto from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { App, HTTPReceiver, LogLevel, type Logger as BoltLogger } from '@slack/bolt';
import type { CommandModule, InteractionModule } from '../../commands/types.js';
import type { Config } from '../config.js';
import { pendingMigrations } from '../db/migrate.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Services } from '../services/index.js';
import type { SlackAuthProbe } from './auth-probe.js';
import { registerHome } from './home.js';
import { WardenHTTPReceiver } from './receiver.js';
import { instrumentApp } from './request-log.js';
import { registerRoutes, type ErrorReplyObserver } from './router.js';
import { WardenSocketModeReceiver } from './socket-mode.js';

/** Bolt's Logger interface over pino, so Bolt's own lines get the same redaction. */
export function boltLogger(logger: Logger): BoltLogger {
  const child = logger.child({ component: 'bolt' });
  let level = LogLevel.INFO;
  return {
    // Bolt's and the Web API client's debug lines carry whole request and response bodies
    // (modal values with e-mails, response URLs, codes): only their first words are kept (issue 11).
    // Bolt calls debug several times per request: the line is only built when it is written.
    debug: (...m: unknown[]) => {
      if (child.isLevelEnabled('debug')) child.debug(withoutBody(m.map(String).join(' ')));
    },
    info: (...m: unknown[]) => child.info(m.map(String).join(' ')),
    warn: (...m: unknown[]) => child.warn(m.map(String).join(' ')),
    error: (...m: unknown[]) => child.error(m.map(String).join(' ')),
    setLevel: (l: LogLevel) => {
      level = l;
    },
    getLevel: () => level,
    setName: () => {},
  };
}

/** The text of a debug line up to where a payload (JSON, form body, headers) starts. */
export function withoutBody(line: string): string {
  const at = line.search(/[{[]|\bbody\b|payload|headers?:|=/i);
  return at < 0 ? line.slice(0, 200) : `${line.slice(0, at).trimEnd().slice(0, 200)} [body omitted]`;
}

export interface Readiness {
  ok: boolean;
  checks: Record<string, { ok: boolean; reason?: string }>;
}

/** Whether the Socket Mode connection is up (Socket Mode only). */
export interface SocketState {
  connected: boolean;
  lastError?: string;
}

/**
 * /readyz: not shutting down, database and store reachable, migrations applied, Slack
 * has accepted the bot token since start (when a probe is given), and in Socket Mode the
 * socket is connected (no request can reach this replica otherwise). Each check names what is missing.
 */
export async function readiness(services: Services, slack?: SlackAuthProbe, socket?: SocketState): Promise<Readiness> {
  const checks: Readiness['checks'] = {};
  if (services.lifecycle.draining) checks.shutdown = { ok: false, reason: 'Warden is shutting down' };
  if (slack) checks.slack = slack.ok ? { ok: true } : { ok: false, reason: slack.lastError ?? 'auth.test has not succeeded yet' };
  if (socket) {
    checks.slackSocket = socket.connected
      ? { ok: true }
      : { ok: false, reason: `slack socket is not connected (Socket Mode): ${socket.lastError ?? 'connecting'}` };
  }
  const timed = <T>(p: Promise<T>) =>
    Promise.race([p, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('timed out after 2 s')), 2000))]);
  try {
    await timed(services.db.query('SELECT 1'));
    const pending = await timed(pendingMigrations(services.db));
    checks.database = { ok: true };
    checks.migrations = pending.length ? { ok: false, reason: `pending: ${pending.join(', ')}` } : { ok: true };
  } catch (e) {
    checks.database = { ok: false, reason: (e as Error).message };
  }
  try {
    await timed(services.store.ping());
    checks.store = { ok: true };
  } catch (e) {
    checks.store = { ok: false, reason: (e as Error).message };
  }
  return { ok: Object.values(checks).every((c) => c.ok), checks };
}

function json(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

export interface SlackAppOptions {
  config: Config;
  logger: Logger;
  services: Services;
  commands: CommandModule[];
  interactionModules: InteractionModule[];
  /** Socket Mode instead of HTTP (SLACK_APP_TOKEN set). */
  socketMode?: boolean;
  onErrorReply?: ErrorReplyObserver;
  /** Request metrics and GET /metrics (served only when METRICS_TOKEN is set). */
  metrics?: Metrics;
  /** Slack's answer to auth.test since start: readiness, and the bot's ids for Bolt. */
  slackProbe?: SlackAuthProbe;
}

/** Constant-time comparison of the presented bearer token with METRICS_TOKEN. */
function bearerMatches(header: string | undefined, token: string): boolean {
  const presented = /^Bearer (.+)$/i.exec(header ?? '')?.[1] ?? '';
  const a = crypto.createHash('sha256').update(presented).digest();
  const b = crypto.createHash('sha256').update(token).digest();
  return crypto.timingSafeEqual(a, b);
}

/** GET /metrics in the Prometheus text format, behind a bearer token; 404 when no token is configured. */
function metricsRoute(metrics: Metrics | undefined, token: string | undefined) {
  return {
    path: '/metrics',
    method: 'GET',
    handler: (req: IncomingMessage, res: ServerResponse) => {
      if (!metrics || !token) return json(res, 404, { error: 'metrics are off; set METRICS_TOKEN to serve them' });
      if (!bearerMatches(req.headers.authorization, token)) {
        res.writeHead(401, { 'www-authenticate': 'Bearer realm="warden-metrics"', 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'a valid bearer token is required' }));
        return;
      }
      metrics.render().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.contentType });
          res.end(text);
        },
        (e) => json(res, 500, { error: (e as Error).message }),
      );
    },
  };
}

/**
 * The Bolt app: HTTP receiver on POST /slack/events with signature verification,
 * GET /healthz and GET /readyz; or Socket Mode. The Web API base comes from SLACK_API_URL.
 */
export function createSlackApp(opts: SlackAppOptions): { app: App; receiver: HTTPReceiver | WardenSocketModeReceiver } {
  const { config, logger, services } = opts;
  const bLogger = boltLogger(logger);
  let socket: WardenSocketModeReceiver | undefined;
  const healthRoutes = [
    {
      path: '/healthz',
      method: 'GET',
      handler: (_req: IncomingMessage, res: ServerResponse) => json(res, 200, { status: 'ok' }),
    },
    {
      path: '/readyz',
      method: 'GET',
      handler: (_req: IncomingMessage, res: ServerResponse) => {
        readiness(services, opts.slackProbe, socket).then(
          (r) => json(res, r.ok ? 200 : 503, { status: r.ok ? 'ready' : 'unready', checks: r.checks }),
          (e) => json(res, 503, { status: 'unready', reason: (e as Error).message }),
        );
      },
    },
    metricsRoute(opts.metrics, config.METRICS_TOKEN),
  ];
  const receiver = opts.socketMode
    ? (socket = new WardenSocketModeReceiver({
        appToken: config.SLACK_APP_TOKEN!,
        slackApiUrl: config.SLACK_API_URL,
        apiTimeoutMs: config.SLACK_TIMEOUT_MS,
        port: config.PORT,
        routes: healthRoutes,
        boltLogger: bLogger,
        logger,
      }))
    : new WardenHTTPReceiver({
        wardenLogger: logger,
        signingSecret: config.SLACK_SIGNING_SECRET!,
        endpoints: '/slack/events',
        customRoutes: healthRoutes,
        logger: bLogger,
        processBeforeResponse: false,
        unhandledRequestTimeoutMillis: 3001,
      });
  const probe = opts.slackProbe;
  const app = new App({
    // With a probe, Bolt does not run (and cache the failure of) its own auth.test: a Warden
    // started while Slack was down would answer every request with an error forever.
    ...(probe
      ? {
          authorize: async () => ({ botToken: config.SLACK_BOT_TOKEN, botUserId: probe.identity.botUserId, botId: probe.identity.botId }),
        }
      : { token: config.SLACK_BOT_TOKEN }),
    receiver,
    logger: bLogger,
    // The client handlers get (views.open, postEphemeral) answers a user waiting on a 3-second
    // trigger: fail fast, never retry (a trigger_id is dead after 3 s), never wait out a 429.
    clientOptions: {
      slackApiUrl: config.SLACK_API_URL,
      timeout: 2500,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
    },
  });
  // Every request's handler is tracked, so that shutdown waits for (or interrupts) work that
  // runs after the ack instead of cutting it off.
  app.use(async ({ next }) => {
    await services.lifecycle.track(next());
  });
  instrumentApp(app, { logger, metrics: opts.metrics });
  registerRoutes(app, { services, commands: opts.commands, interactionModules: opts.interactionModules, logger, onErrorReply: opts.onErrorReply });
  registerHome(app, services, logger);
  app.error(async (error) => {
    logger.error({ err: error }, 'unhandled Bolt error');
  });
  return { app, receiver };
}
