import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A local stand-in for Slack's Web API and response URLs. It records every call so tests
 * can assert on what Warden sent, and answers like Slack does. Used by the end-to-end
 * tests and by the console (`npm run console`); never by production.
 */

export interface CapturedCall {
  /** Web API method (`chat.postMessage`), or `response_url` for respond() posts, or `upload`. */
  method: string;
  args: Record<string, any>;
  at: number;
  /** For response_url posts: which request's response_url (the id in the path). */
  responseId?: string;
  token?: string;
  /** What the fake answered (e.g. the ts of a posted message). */
  result?: Record<string, any>;
}

export interface SlackProfile {
  id: string;
  name: string;
  email?: string;
  teamId?: string;
}

type Failure = { status: number; retryAfter?: number; error?: string; times: number };

export class FakeSlack {
  readonly calls: CapturedCall[] = [];
  readonly users = new Map<string, SlackProfile>();
  readonly uploads = new Map<string, { filename?: string; content: Buffer }>();
  private server?: http.Server;
  private nextTs = 1_700_000_000;
  private failures = new Map<string, Failure[]>();
  private listeners: ((c: CapturedCall) => void)[] = [];
  private ids = 0;
  /** When set, every Web API call fails as if Slack were unreachable. */
  down = false;
  url = '';

  async start(port = 0): Promise<this> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    const { port: p } = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${p}`;
    return this;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }

  /** Web API base for SLACK_API_URL. */
  get apiUrl(): string {
    return `${this.url}/api/`;
  }

  /** A fresh response_url for a simulated command or click. */
  responseUrl(): string {
    return `${this.url}/response/${++this.ids}`;
  }

  addUser(profile: SlackProfile): void {
    this.users.set(profile.id, profile);
  }

  /** The next `times` calls of `method` fail with this HTTP status (429 → Retry-After). */
  failNext(method: string, failure: { status: number; retryAfter?: number; error?: string }, times = 1): void {
    const list = this.failures.get(method) ?? [];
    list.push({ ...failure, times });
    this.failures.set(method, list);
  }

  onCall(cb: (c: CapturedCall) => void): () => void {
    this.listeners.push(cb);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== cb);
    };
  }

  callsTo(method: string): CapturedCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  clear(): void {
    this.calls.length = 0;
  }

  /** Resolves with the first call (already made or upcoming) that matches. */
  waitFor(predicate: (c: CapturedCall) => boolean, timeoutMs = 5000, since = 0): Promise<CapturedCall> {
    const existing = this.calls.slice(since).find(predicate);
    if (existing) return Promise.resolve(existing);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`timed out waiting for a Slack call; saw: ${this.calls.map((c) => c.method).join(', ')}`));
      }, timeoutMs);
      const off = this.onCall((c) => {
        if (predicate(c)) {
          clearTimeout(timer);
          off();
          resolve(c);
        }
      });
    });
  }

  private record(call: CapturedCall) {
    this.calls.push(call);
    for (const l of this.listeners) l(call);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://x');
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };

    if (url.pathname.startsWith('/response/')) {
      const args = JSON.parse(raw.toString() || '{}');
      this.record({ method: 'response_url', args, at: Date.now(), responseId: url.pathname.split('/')[2] });
      return send(200, { ok: true });
    }
    if (url.pathname.startsWith('/upload/')) {
      const id = url.pathname.split('/')[2];
      const entry = this.uploads.get(id);
      if (entry) entry.content = raw;
      this.record({ method: 'upload', args: { file_id: id, bytes: raw.length }, at: Date.now() });
      return send(200, { ok: true });
    }
    if (!url.pathname.startsWith('/api/')) return send(404, { ok: false, error: 'unknown_path' });

    const method = url.pathname.slice('/api/'.length);
    const args = parseArgs(raw, req.headers['content-type'] ?? '', url);
    const token = (req.headers.authorization ?? '').replace(/^Bearer /, '') || args.token;

    if (this.down) {
      req.socket.destroy();
      return;
    }
    const pending = this.failures.get(method);
    if (pending?.length) {
      const f = pending[0];
      if (--f.times <= 0) pending.shift();
      this.record({ method: `${method}!failed`, args, at: Date.now(), token });
      return send(
        f.status,
        { ok: false, error: f.error ?? (f.status === 429 ? 'ratelimited' : 'internal_error') },
        f.retryAfter !== undefined ? { 'retry-after': String(f.retryAfter) } : {},
      );
    }
    const result = this.answer(method, args);
    this.record({ method, args, at: Date.now(), token, result });
    send(200, result);
  }

  private answer(method: string, args: Record<string, any>): Record<string, unknown> {
    const ts = () => `${++this.nextTs}.000100`;
    switch (method) {
      case 'auth.test':
        return { ok: true, url: 'https://warden-test.slack.com/', team: 'Warden Test', user: 'warden', team_id: 'T_WARDEN', user_id: 'U_WARDEN_BOT', bot_id: 'B_WARDEN' };
      case 'chat.postMessage':
        return { ok: true, channel: args.channel, ts: ts(), message: { text: args.text, blocks: args.blocks } };
      case 'chat.update':
        return { ok: true, channel: args.channel, ts: args.ts };
      case 'chat.postEphemeral':
        return { ok: true, message_ts: ts() };
      case 'conversations.open':
        return { ok: true, channel: { id: `D_${String(args.users).split(',')[0]}` } };
      case 'users.info': {
        const u = this.users.get(args.user);
        if (!u) return { ok: false, error: 'user_not_found' };
        return { ok: true, user: { id: u.id, name: u.name, team_id: u.teamId ?? 'T_WARDEN', profile: { email: u.email, real_name: u.name } } };
      }
      case 'views.open':
      case 'views.update':
      case 'views.push':
        return { ok: true, view: { id: `V${++this.ids}`, ...(typeof args.view === 'object' ? args.view : {}) } };
      case 'views.publish':
        return { ok: true };
      case 'files.getUploadURLExternal': {
        const id = `F${++this.ids}`;
        this.uploads.set(id, { filename: args.filename, content: Buffer.alloc(0) });
        return { ok: true, upload_url: `${this.url}/upload/${id}`, file_id: id };
      }
      case 'files.completeUploadExternal':
        return { ok: true, files: (args.files ?? []).map((f: any) => ({ id: f.id, title: f.title })) };
      default:
        return { ok: true };
    }
  }
}

/** Web API arguments arrive form-encoded (nested values as JSON strings) or as JSON. */
function parseArgs(raw: Buffer, contentType: string, url: URL): Record<string, any> {
  const out: Record<string, any> = Object.fromEntries(url.searchParams);
  const text = raw.toString();
  if (contentType.includes('application/json')) return { ...out, ...(text ? JSON.parse(text) : {}) };
  for (const [k, v] of new URLSearchParams(text)) {
    out[k] = /^[[{]/.test(v) ? safeJson(v) : v;
  }
  return out;
}

function safeJson(v: string): unknown {
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
}
