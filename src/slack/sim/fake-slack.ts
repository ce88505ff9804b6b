import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { checkBlocks, checkView, invalidBlocks } from './block-kit-rules.js';
import type { SocketModeSide } from './socket-mode.js';

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
  /** For response_url posts: performance.now() when the whole body had arrived, before the fake checked it (benchmarks). */
  arrivedAt?: number;
  token?: string;
  /** What the fake answered (e.g. the ts of a posted message). */
  result?: Record<string, any>;
}

export interface SlackProfile {
  id: string;
  name: string;
  email?: string;
  /** Home workspace; another one than T_WARDEN is a Slack Connect user. */
  teamId?: string;
  /** users.info flags as Slack sends them (defaults: a full, active member with a confirmed e-mail). */
  deleted?: boolean;
  isBot?: boolean;
  isRestricted?: boolean;
  isUltraRestricted?: boolean;
  isEmailConfirmed?: boolean;
}

type Failure = { status: number; retryAfter?: number; error?: string; times: number };

/**
 * How the fake holds a call back (faults Slack really has):
 * - `answerAfterMs`: Slack does the work at once (the message is in the channel) but the
 *   HTTP answer comes this much later — the "accepted, answered after your timeout" case;
 * - `arriveAfterMs`: the request reaches Slack this much later (a replica frozen before its
 *   request left), then it is done and answered;
 * - both undefined: Slack hangs — the work is never done and no answer ever comes.
 */
export interface Hold {
  answerAfterMs?: number;
  arriveAfterMs?: number;
}

/** A message as the fake keeps it in a conversation. */
export interface StoredMessage {
  ts: string;
  text?: string;
  blocks?: unknown[];
  metadata?: { event_type: string; event_payload: Record<string, unknown> };
  thread_ts?: string;
  user: string;
  bot_id: string;
}

/** conversations.history: Slack's own bounds. */
const HISTORY_MAX_LIMIT = 999;
const HISTORY_DEFAULT_LIMIT = 100;

export class FakeSlack {
  readonly calls: CapturedCall[] = [];
  readonly users = new Map<string, SlackProfile>();
  readonly uploads = new Map<string, { filename?: string; content: Buffer }>();
  private server?: http.Server;
  /** Last ts handed out, in microseconds: Slack's ts is the posting time (seconds.micro), unique per channel. */
  private lastTsMicros = 0;
  private failures = new Map<string, Failure[]>();
  private holds = new Map<string, (Hold & { times: number })[]>();
  private heldTimers = new Set<NodeJS.Timeout>();
  /** Top-level messages per conversation, oldest first (thread replies kept apart). */
  readonly messages = new Map<string, StoredMessage[]>();
  readonly replies = new Map<string, StoredMessage[]>();
  /** Conversations Slack answers `channel_not_found` / `not_in_channel` for (opt-in, for tests). */
  readonly unknownChannels = new Set<string>();
  readonly notInChannels = new Set<string>();
  /**
   * DM conversations opened with conversations.open. A DM's `D…` id exists for the bot only
   * once opened, and files.completeUploadExternal takes conversation ids only (never a user id),
   * so an upload to a user's DM must open it first.
   */
  readonly openedIms = new Set<string>();
  /** Files shared into conversations (files.completeUploadExternal with a channel_id). */
  readonly sharedFiles: { channel: string; fileId: string; title?: string; comment?: string }[] = [];
  private listeners: ((c: CapturedCall) => void)[] = [];
  private ids = 0;
  /**
   * Views open on a user's screen, by id: opened by views.open or submitted through the driver.
   * As in Slack, views.update of any other view (or one the user closed) answers `not_found`.
   */
  readonly openViews = new Set<string>();
  /** The bot token's scopes (manifest.yml); a method whose scope is missing answers `missing_scope`. */
  readonly scopes = new Set(BOT_SCOPES);
  /** When set, every Web API call fails as if Slack were unreachable. */
  down = false;
  /** When set, every Web API call is accepted and never answered (Slack hanging). */
  hang = false;
  url = '';
  /** Slack's Socket Mode side, once enabled (`enableSocketMode`). */
  socket?: SocketModeSide;

  async start(port = 0): Promise<this> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.on('upgrade', (req, socket, head) => {
      if (this.socket) this.socket.upgrade(req, socket, head);
      else socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    const { port: p } = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${p}`;
    return this;
  }

  /**
   * Serves Socket Mode for the app-level token: `apps.connections.open` and its WebSocket.
   * Loaded on demand so that the console does not need `ws` (a development dependency).
   */
  async enableSocketMode(appToken = 'xapp-1-A_WARDEN-1-fake'): Promise<SocketModeSide> {
    const { SocketModeSide } = await import('./socket-mode.js');
    this.socket ??= new SocketModeSide(() => this.url, appToken);
    return this.socket;
  }

  async stop(): Promise<void> {
    for (const t of this.heldTimers) clearTimeout(t);
    this.heldTimers.clear();
    await this.socket?.close();
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

  /** The user closed the view (the X or Cancel): Slack forgets it. */
  closeView(id: string): void {
    this.openViews.delete(id);
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

  /** The next `times` calls of `method` are held back (see Hold); `{}` makes Slack hang. */
  holdNext(method: string, hold: Hold, times = 1): void {
    const list = this.holds.get(method) ?? [];
    list.push({ ...hold, times });
    this.holds.set(method, list);
  }

  /** Top-level messages of a conversation as a member would see them, oldest first. */
  channelMessages(channel: string): StoredMessage[] {
    return [...(this.messages.get(channel) ?? [])];
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

  /**
   * Something the console shows among Slack's calls that is no Web API call (a break-glass
   * console's outbox rows, queued for the real Slack). Listeners see it like a call.
   */
  note(method: string, args: Record<string, unknown>): void {
    this.record({ method, args, at: Date.now() });
  }

  private record(call: CapturedCall) {
    this.calls.push(call);
    for (const l of this.listeners) l(call);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const arrivedAt = performance.now();
    const url = new URL(req.url ?? '/', 'http://x');
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };

    if (url.pathname.startsWith('/response/')) {
      const args = JSON.parse(raw.toString() || '{}');
      const errors = checkBlocks(args.blocks, 'message');
      if (errors.length) {
        this.record({ method: 'response_url!invalid', args, at: Date.now(), responseId: url.pathname.split('/')[2], result: invalidBlocks(errors) });
        return send(200, invalidBlocks(errors));
      }
      this.record({ method: 'response_url', args, at: Date.now(), responseId: url.pathname.split('/')[2], arrivedAt });
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
    if (this.hang) {
      this.record({ method: `${method}!hung`, args, at: Date.now(), token });
      return; // the connection stays open until the caller gives up or the fake stops
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
    const held = this.holds.get(method);
    const hold = held?.length ? held[0] : undefined;
    if (hold && --hold.times <= 0) held!.shift();
    const later = (ms: number, fn: () => void) => {
      const t = setTimeout(() => {
        this.heldTimers.delete(t);
        if (!res.destroyed) fn();
      }, ms);
      this.heldTimers.add(t);
    };
    const apply = () => {
      const result = this.answer(method, args, token);
      this.record({ method, args, at: Date.now(), token, result });
      return result;
    };
    if (!hold) return send(200, apply());
    if (hold.arriveAfterMs !== undefined) {
      // The request "arrives" late: done and answered then (if the caller still waits, or not).
      const t = setTimeout(() => {
        this.heldTimers.delete(t);
        const result = apply();
        if (!res.destroyed && !res.writableEnded) send(200, result);
      }, hold.arriveAfterMs);
      this.heldTimers.add(t);
      return;
    }
    if (hold.answerAfterMs !== undefined) {
      const result = apply();
      this.record({ method: `${method}!held`, args, at: Date.now(), token, result });
      later(hold.answerAfterMs, () => send(200, result));
      return;
    }
    // Hangs: nothing is done and no answer comes (the connection is closed by stop()).
    this.record({ method: `${method}!hung`, args, at: Date.now(), token });
  }

  private answer(method: string, args: Record<string, any>, token?: string): Record<string, unknown> {
    // apps.connections.open takes only the app-level token; every other method refuses it.
    if (method === 'apps.connections.open') return this.socket ? this.socket.open(token) : { ok: false, error: 'not_allowed_token_type' };
    if (token?.startsWith('xapp-')) return { ok: false, error: 'not_allowed_token_type' };
    const ts = () => {
      this.lastTsMicros = Math.max(this.lastTsMicros + 1, Date.now() * 1000);
      return `${Math.floor(this.lastTsMicros / 1e6)}.${String(this.lastTsMicros % 1e6).padStart(6, '0')}`;
    };
    const refused = this.checkPayload(method, args);
    if (refused) return refused;
    const conversation = this.checkConversation(method, args);
    if (conversation) return conversation;
    switch (method) {
      case 'auth.test':
        return { ok: true, url: 'https://warden-test.slack.com/', team: 'Warden Test', user: 'warden', team_id: 'T_WARDEN', user_id: 'U_WARDEN_BOT', bot_id: 'B_WARDEN' };
      case 'chat.postMessage': {
        const metadata = parseMetadata(args.metadata);
        if (metadata === 'invalid') return { ok: false, error: 'invalid_metadata_format' };
        const m: StoredMessage = {
          ts: ts(),
          text: args.text,
          blocks: args.blocks,
          ...(metadata ? { metadata } : {}),
          ...(args.thread_ts ? { thread_ts: String(args.thread_ts) } : {}),
          user: 'U_WARDEN_BOT',
          bot_id: 'B_WARDEN',
        };
        if (m.thread_ts) {
          const parent = this.find(args.channel, m.thread_ts);
          if (!parent) return { ok: false, error: 'thread_not_found' };
          this.listOf(this.replies, args.channel).push(m);
        } else {
          this.listOf(this.messages, args.channel).push(m);
        }
        return { ok: true, channel: args.channel, ts: m.ts, message: { text: args.text, blocks: args.blocks, ...(metadata ? { metadata } : {}) } };
      }
      case 'chat.update': {
        const m = this.find(args.channel, String(args.ts ?? ''));
        if (!m) return { ok: false, error: 'message_not_found' };
        if (args.text !== undefined) m.text = args.text;
        if (args.blocks !== undefined) m.blocks = args.blocks;
        const metadata = parseMetadata(args.metadata);
        if (metadata === 'invalid') return { ok: false, error: 'invalid_metadata_format' };
        if (metadata) m.metadata = metadata;
        return { ok: true, channel: args.channel, ts: args.ts, text: m.text };
      }
      case 'chat.delete': {
        const ts0 = String(args.ts ?? '');
        for (const map of [this.messages, this.replies]) {
          const list = map.get(args.channel) ?? [];
          const i = list.findIndex((x) => x.ts === ts0);
          if (i >= 0) {
            list.splice(i, 1);
            return { ok: true, channel: args.channel, ts: ts0 };
          }
        }
        return { ok: false, error: 'message_not_found' };
      }
      case 'conversations.history':
        return this.history(args);
      case 'conversations.replies': {
        const parent = (this.messages.get(args.channel) ?? []).find((m) => m.ts === String(args.ts ?? ''));
        if (!parent) return { ok: false, error: 'thread_not_found' };
        const thread = [parent, ...(this.replies.get(args.channel) ?? []).filter((m) => m.thread_ts === parent.ts)];
        // Slack answers a thread oldest first (the parent first); the same bounds and pages as history.
        return this.history(args, thread.reverse());
      }
      case 'chat.postEphemeral':
        return { ok: true, message_ts: ts() };
      case 'conversations.open': {
        const id = `D_${String(args.users).split(',')[0]}`;
        this.openedIms.add(id);
        return { ok: true, channel: { id } };
      }
      case 'users.info': {
        const u = this.users.get(args.user);
        if (!u) return { ok: false, error: 'user_not_found' };
        return { ok: true, user: userObject(u) };
      }
      case 'users.lookupByEmail': {
        // Slack: needs users:read.email; `users_not_found` when no member has the address. It
        // answers deactivated members, guests and Slack Connect users too, with their flags:
        // the caller must check them. How Slack compares addresses is not documented; the
        // fake folds case the Unicode way, so Warden's own exact comparison is what decides.
        if (!this.scopes.has('users:read.email')) {
          return { ok: false, error: 'missing_scope', needed: 'users:read.email', provided: [...this.scopes].join(',') };
        }
        const want = String(args.email ?? '').trim().toLowerCase();
        if (!want) return { ok: false, error: 'invalid_arguments' };
        const u = [...this.users.values()].find((x) => x.email && x.email.trim().toLowerCase() === want);
        if (!u) return { ok: false, error: 'users_not_found' };
        return { ok: true, user: userObject(u) };
      }
      case 'views.update': {
        const id = args.view_id as string | undefined;
        if (!id || !this.openViews.has(id)) return { ok: false, error: 'not_found' };
        return { ok: true, view: { id, ...(typeof args.view === 'object' ? args.view : safeJson(args.view) ?? {}) } };
      }
      case 'views.open':
      case 'views.push': {
        const id = `V${++this.ids}`;
        this.openViews.add(id);
        return { ok: true, view: { id, ...(typeof args.view === 'object' ? args.view : {}) } };
      }
      case 'views.publish':
        return { ok: true };
      case 'files.getUploadURLExternal': {
        const id = `F${++this.ids}`;
        this.uploads.set(id, { filename: args.filename, content: Buffer.alloc(0) });
        return { ok: true, upload_url: `${this.url}/upload/${id}`, file_id: id };
      }
      case 'files.completeUploadExternal':
        return this.completeUpload(args);
      default:
        return { ok: true };
    }
  }

  /** What Slack refuses in a payload's blocks or view (`invalid_blocks` with its errors). */
  private checkPayload(method: string, args: Record<string, any>): Record<string, unknown> | undefined {
    if (['chat.postMessage', 'chat.update', 'chat.postEphemeral'].includes(method)) {
      const blocks = typeof args.blocks === 'string' ? safeJson(args.blocks) : args.blocks;
      const errors = checkBlocks(blocks, 'message');
      if (errors.length) return invalidBlocks(errors);
    }
    if (['views.open', 'views.update', 'views.push', 'views.publish'].includes(method)) {
      const view = typeof args.view === 'string' ? safeJson(args.view) : args.view;
      const errors = checkView(view);
      if (errors.length) return { ok: false, error: 'invalid_arguments', response_metadata: { messages: errors.map((e) => `[ERROR] ${e}`) } };
    }
    return undefined;
  }

  /**
   * files.completeUploadExternal as Slack checks it: `channel_id` must be a conversation id
   * (C/G/D/Z…; a user id is refused with invalid_arguments), a DM must have been opened
   * (conversations.open), the bot must be in the channel, and every file must have been
   * requested with files.getUploadURLExternal.
   */
  private completeUpload(args: Record<string, any>): Record<string, unknown> {
    const files = (Array.isArray(args.files) ? args.files : []) as { id?: string; title?: string }[];
    if (!files.length) return { ok: false, error: 'invalid_arguments', response_metadata: { messages: ['[ERROR] missing required field: files'] } };
    if (files.some((f) => !f.id || !this.uploads.has(f.id))) return { ok: false, error: 'file_not_found' };
    const channel = args.channel_id === undefined ? undefined : String(args.channel_id);
    if (channel !== undefined) {
      if (!/^[CGDZ][A-Z0-9_]{2,}$/.test(channel)) {
        return { ok: false, error: 'invalid_arguments', response_metadata: { messages: ['[ERROR] input must match regex pattern: ^[CGDZ][A-Z0-9]{8,}$ [json-pointer:/channel_id]'] } };
      }
      if (channel.startsWith('D') && !this.openedIms.has(channel)) return { ok: false, error: 'channel_not_found' };
      if (this.unknownChannels.has(channel)) return { ok: false, error: 'channel_not_found' };
      if (this.notInChannels.has(channel)) return { ok: false, error: 'not_in_channel' };
      for (const f of files) this.sharedFiles.push({ channel, fileId: f.id!, title: f.title, comment: args.initial_comment });
    }
    return { ok: true, files: files.map((f) => ({ id: f.id, title: f.title })) };
  }

  /** Slack's answers for conversations the bot cannot see (opt-in per test). */
  private checkConversation(method: string, args: Record<string, any>): Record<string, unknown> | undefined {
    if (!['chat.postMessage', 'chat.update', 'chat.delete', 'conversations.history', 'conversations.replies'].includes(method)) return undefined;
    if (!args.channel) return { ok: false, error: 'channel_not_found' };
    if (this.unknownChannels.has(args.channel)) return { ok: false, error: 'channel_not_found' };
    if (method.startsWith('conversations.') && this.notInChannels.has(args.channel)) return { ok: false, error: 'not_in_channel' };
    return undefined;
  }

  /**
   * conversations.history as Slack serves it: newest first, top-level messages only,
   * `oldest`/`latest` exclusive unless `inclusive`, `limit` 1..999 (default 100), cursor
   * pages with `has_more`, and message `metadata` only with `include_all_metadata`.
   */
  private history(args: Record<string, any>, thread?: StoredMessage[]): Record<string, unknown> {
    const limit = args.limit === undefined ? HISTORY_DEFAULT_LIMIT : Number(args.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > HISTORY_MAX_LIMIT) return { ok: false, error: 'invalid_limit' };
    const inclusive = truthy(args.inclusive);
    const oldest = args.oldest !== undefined ? Number(args.oldest) : -Infinity;
    const latest = args.latest !== undefined ? Number(args.latest) : Infinity;
    if (Number.isNaN(oldest) || Number.isNaN(latest)) return { ok: false, error: 'invalid_ts_oldest' };
    const inRange = (m: StoredMessage) => {
      const t = Number(m.ts);
      return inclusive ? t >= oldest && t <= latest : t > oldest && t < latest;
    };
    const newestFirst = thread ?? [...(this.messages.get(args.channel) ?? [])].reverse();
    const all = newestFirst.filter(inRange);
    if (thread) all.reverse();
    let start = 0;
    if (args.cursor) {
      const decoded = Number(Buffer.from(String(args.cursor), 'base64').toString().replace(/^offset:/, ''));
      if (!Number.isInteger(decoded) || decoded < 0) return { ok: false, error: 'invalid_cursor' };
      start = decoded;
    }
    const page = all.slice(start, start + limit);
    const withMeta = truthy(args.include_all_metadata);
    const hasMore = start + limit < all.length;
    return {
      ok: true,
      messages: page.map((m) => {
        const { metadata, ...rest } = m;
        return { type: 'message', ...rest, ...(withMeta && metadata ? { metadata } : {}) };
      }),
      has_more: hasMore,
      response_metadata: { next_cursor: hasMore ? Buffer.from(`offset:${start + limit}`).toString('base64') : '' },
    };
  }

  private listOf(map: Map<string, StoredMessage[]>, channel: string): StoredMessage[] {
    let list = map.get(channel);
    if (!list) {
      list = [];
      map.set(channel, list);
    }
    return list;
  }

  private find(channel: string, ts: string): StoredMessage | undefined {
    return (this.messages.get(channel) ?? []).find((m) => m.ts === ts) ?? (this.replies.get(channel) ?? []).find((m) => m.ts === ts);
  }
}

/** The bot scopes manifest.yml asks for (test/unit/fake-slack.test.ts keeps the two in step). */
export const BOT_SCOPES = [
  'commands',
  'chat:write',
  'chat:write.public',
  'channels:history',
  'groups:history',
  'im:history',
  'im:write',
  'users:read',
  'users:read.email',
  'files:write',
];

/** A user object as users.info and users.lookupByEmail send it. */
function userObject(u: SlackProfile): Record<string, unknown> {
  return {
    id: u.id,
    name: u.name,
    team_id: u.teamId ?? 'T_WARDEN',
    deleted: u.deleted ?? false,
    is_bot: u.isBot ?? false,
    is_restricted: u.isRestricted ?? u.isUltraRestricted ?? false,
    is_ultra_restricted: u.isUltraRestricted ?? false,
    // Slack leaves is_email_confirmed out for users without an e-mail (bots).
    ...(u.email ? { is_email_confirmed: u.isEmailConfirmed ?? true } : {}),
    profile: { email: u.email, real_name: u.name },
  };
}

function truthy(v: unknown): boolean {
  return v === true || v === 'true' || v === '1' || v === 1;
}

/**
 * Message metadata as chat.postMessage takes it (a JSON string or object): an `event_type`
 * name and an `event_payload` object. Anything else Slack refuses (`invalid_metadata_format`).
 */
function parseMetadata(raw: unknown): StoredMessage['metadata'] | 'invalid' | undefined {
  if (raw === undefined || raw === null || raw === '') return undefined;
  let v: any = raw;
  if (typeof raw === 'string') {
    try {
      v = JSON.parse(raw);
    } catch {
      return 'invalid';
    }
  }
  if (!v || typeof v !== 'object' || typeof v.event_type !== 'string' || !/^[A-Za-z0-9_.-]{1,255}$/.test(v.event_type)) return 'invalid';
  if (!v.event_payload || typeof v.event_payload !== 'object' || Array.isArray(v.event_payload)) return 'invalid';
  return { event_type: v.event_type, event_payload: v.event_payload };
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
