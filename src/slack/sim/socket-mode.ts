import crypto from 'node:crypto';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { checkBlocks, checkView } from './block-kit-rules.js';

/**
 * Slack's side of Socket Mode, for tests (never production): `apps.connections.open` hands out
 * a single-use WebSocket URL for the app-level token; the socket says `hello`, carries
 * envelopes (slash_commands, interactive, events_api) and expects each to be acknowledged with
 * its `envelope_id` within 3 seconds; `disconnect` asks the app to reconnect. As strict as
 * Slack: a missing, late or unknown ack is a violation, and so is an ack payload Slack would
 * refuse (or one sent where Slack accepts none). Tests call `assertClean()`.
 */

/** Slack's limit: an envelope not acknowledged within 3 s counts as failed (and is retried). */
export const ACK_DEADLINE_MS = 3000;

export interface Ack {
  envelopeId: string;
  payload: Record<string, any>;
  /** Milliseconds from sending the envelope to its ack. */
  ms: number;
}

interface Pending {
  type: string;
  accepts: boolean;
  /** The view a view_submission carried: errors must name its input blocks. */
  view?: any;
  sentAt: number;
  timer: NodeJS.Timeout;
  resolve: (a: Ack) => void;
  reject: (e: Error) => void;
}

export class SocketModeSide {
  private readonly wss = new WebSocketServer({ noServer: true });
  private readonly tickets = new Set<string>();
  private readonly pending = new Map<string, Pending>();
  /** Open connections, oldest first; envelopes go to the newest (Slack picks any one). */
  readonly sockets: WebSocket[] = [];
  /** Everything Slack would hold against the app (missing, late, unknown or invalid acks). */
  readonly violations: string[] = [];
  /** Connections opened so far (each `hello` sent). */
  connectionsOpened = 0;
  private listeners: (() => void)[] = [];

  constructor(
    private readonly baseUrl: () => string,
    /** The app-level token `apps.connections.open` accepts. */
    readonly appToken: string,
  ) {}

  /** `apps.connections.open`: only with the app-level token, as Slack answers it. */
  open(token: string | undefined): Record<string, unknown> {
    if (!token) return { ok: false, error: 'not_authed' };
    if (!token.startsWith('xapp-')) return { ok: false, error: 'not_allowed_token_type' };
    if (token !== this.appToken) return { ok: false, error: 'invalid_auth' };
    const ticket = crypto.randomUUID();
    this.tickets.add(ticket);
    return { ok: true, url: `${this.baseUrl().replace(/^http/, 'ws')}/link/?ticket=${ticket}&app_id=A_WARDEN` };
  }

  /** The HTTP server's `upgrade`: a ticket is good for one connection. */
  upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const ticket = url.searchParams.get('ticket') ?? '';
    if (url.pathname !== '/link/' || !this.tickets.delete(ticket)) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\r\n');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws));
  }

  private accept(ws: WebSocket) {
    this.sockets.push(ws);
    this.connectionsOpened++;
    ws.on('message', (data) => this.onAck(String(data)));
    ws.on('error', () => {});
    ws.on('close', () => {
      const i = this.sockets.indexOf(ws);
      if (i >= 0) this.sockets.splice(i, 1);
      this.changed();
    });
    ws.send(
      JSON.stringify({
        type: 'hello',
        num_connections: this.sockets.length,
        debug_info: { host: 'applink-fake', build_number: 1, approximate_connection_time: 18060 },
        connection_info: { app_id: 'A_WARDEN' },
      }),
    );
    this.changed();
  }

  get connected(): boolean {
    return this.sockets.some((s) => s.readyState === s.OPEN);
  }

  /** Resolves once `n` connections have been opened in all (e.g. after a refresh). */
  async waitForConnections(n: number, timeoutMs = 15_000): Promise<void> {
    await this.until(() => this.connectionsOpened >= n && this.connected, timeoutMs, `${n} Socket Mode connection(s)`);
  }

  /** Resolves when no connection is open any more. */
  async waitForNoConnection(timeoutMs = 15_000): Promise<void> {
    await this.until(() => !this.connected, timeoutMs, 'the Socket Mode connection to close');
  }

  private until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      const check = () => {
        if (!cond()) return;
        clearTimeout(timer);
        off();
        resolve();
      };
      this.listeners.push(check);
      const off = () => (this.listeners = this.listeners.filter((l) => l !== check));
    });
  }

  private changed() {
    for (const l of [...this.listeners]) l();
  }

  /**
   * Delivers what Slack would POST over HTTP (a form body with `command` or `payload`, or an
   * Events API JSON body) as an envelope, and resolves with the app's ack. Rejects (and records
   * a violation) when no connection is open or no ack comes within 3 s.
   */
  deliver(httpBody: string, contentType = 'application/x-www-form-urlencoded'): Promise<Ack> {
    const { type, payload, accepts } = toEnvelope(httpBody, contentType);
    const ws = [...this.sockets].reverse().find((s) => s.readyState === s.OPEN);
    if (!ws) return Promise.reject(new Error('no Socket Mode connection is open: Slack cannot deliver'));
    const envelopeId = crypto.randomUUID();
    return new Promise<Ack>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(envelopeId);
        const msg = `${type} envelope ${envelopeId} was not acknowledged within ${ACK_DEADLINE_MS} ms`;
        this.violations.push(msg);
        reject(new Error(msg));
      }, ACK_DEADLINE_MS);
      this.pending.set(envelopeId, { type, accepts, view: payload.view, sentAt: Date.now(), timer, resolve, reject });
      ws.send(
        JSON.stringify({
          envelope_id: envelopeId,
          payload,
          type,
          accepts_response_payload: accepts,
          ...(type === 'events_api' ? { retry_attempt: 0, retry_reason: '' } : {}),
        }),
      );
    });
  }

  private onAck(text: string) {
    let msg: any;
    try {
      msg = JSON.parse(text);
    } catch {
      this.violations.push(`the app sent something that is not JSON: ${text.slice(0, 100)}`);
      return;
    }
    const id = msg?.envelope_id;
    const p = typeof id === 'string' ? this.pending.get(id) : undefined;
    if (!p) {
      // Late (after 3 s), doubled, or never sent: Slack drops it; the user already saw an error.
      this.violations.push(`ack for an unknown or expired envelope_id ${JSON.stringify(id)}`);
      return;
    }
    this.pending.delete(id);
    clearTimeout(p.timer);
    const payload = msg.payload ?? {};
    const problems = checkAckPayload(p, payload);
    if (problems.length) {
      const m = `${p.type} ack refused by Slack: ${problems.join('; ')}`;
      this.violations.push(m);
      p.reject(new Error(m));
      return;
    }
    p.resolve({ envelopeId: id, payload, ms: Date.now() - p.sentAt });
  }

  /** Slack's refresh: `disconnect` on every open connection; the app is expected to reconnect. */
  requestRefresh(reason: 'refresh_requested' | 'link_disabled' | 'warning' = 'refresh_requested'): void {
    for (const ws of this.sockets) ws.send(JSON.stringify({ type: 'disconnect', reason, debug_info: { host: 'applink-fake' } }));
  }

  /** Throws if Slack would have held anything against the app so far. */
  assertClean(): void {
    if (this.violations.length) throw new Error(`Socket Mode violations:\n- ${this.violations.join('\n- ')}`);
  }

  async close(): Promise<void> {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
    for (const ws of this.sockets) ws.terminate();
    await new Promise<void>((r) => this.wss.close(() => r()));
  }
}

/** The envelope Slack sends for what it would otherwise POST to the request URL. */
function toEnvelope(body: string, contentType: string): { type: string; payload: any; accepts: boolean } {
  if (contentType.includes('application/json')) return { type: 'events_api', payload: JSON.parse(body), accepts: false };
  const form = new URLSearchParams(body);
  const interactive = form.get('payload');
  if (interactive !== null) {
    const payload = JSON.parse(interactive);
    // Only a view submission's ack can carry a response (response_action); a click's cannot.
    return { type: 'interactive', payload, accepts: payload.type === 'view_submission' };
  }
  return { type: 'slash_commands', payload: { ...Object.fromEntries(form), is_enterprise_install: 'false' }, accepts: true };
}

/** What Slack refuses in an ack's payload. */
function checkAckPayload(p: Pending, payload: Record<string, any>): string[] {
  const empty = Object.keys(payload).length === 0;
  if (empty) return [];
  if (!p.accepts) return [`a ${p.type} envelope accepts no response payload (got ${Object.keys(payload).join(', ')})`];
  if (p.type === 'slash_commands') return checkBlocks(payload.blocks, 'message');
  const action = payload.response_action;
  switch (action) {
    case 'clear':
      return [];
    case 'errors': {
      const errors = payload.errors;
      if (!errors || typeof errors !== 'object' || !Object.keys(errors).length) return ['response_action errors needs a non-empty errors object'];
      const inputs = new Set((p.view?.blocks ?? []).filter((b: any) => b.type === 'input').map((b: any) => b.block_id));
      return Object.entries(errors).flatMap(([blockId, text]) => [
        ...(inputs.has(blockId) ? [] : [`errors names ${blockId}, which is not an input block of the submitted view`]),
        ...(typeof text === 'string' && text.length ? [] : [`the error for ${blockId} must be non-empty text`]),
      ]);
    }
    case 'update':
    case 'push':
      return checkView(payload.view);
    default:
      return [`unknown response_action ${JSON.stringify(action)}`];
  }
}
