import fs from 'node:fs';
import type { webApi } from '@slack/bolt';
import type { Readable } from 'node:stream';
import { request } from 'undici';
import { fileTextChunks, type Chat, type PostedRef, type PostMark, type PostOptions } from '../services/chat.js';
import type { EmailSearch, SlackDirectory, SlackProfile } from '../services/identity.js';
import type { Message } from '../ui.js';
import { messageBlocks, messagePayload } from './blocks.js';

type WebClient = webApi.WebClient;

const HISTORY_PAGE = 200;
const HISTORY_PAGES = 5;

function sameMark(payload: Record<string, unknown> | undefined, want: Record<string, string | number>): boolean {
  if (!payload) return false;
  return Object.entries(want).every(([k, v]) => String(payload[k]) === String(v));
}

/** The Chat port over Slack's Web API. */
export class SlackChat implements Chat {
  constructor(private readonly client: WebClient) {}

  async post(channel: string, message: Message, opts: PostOptions = {}): Promise<PostedRef> {
    const r = await this.client.chat.postMessage({
      channel,
      ...messagePayload(message),
      ...(opts.threadTs ? { thread_ts: opts.threadTs } : {}),
      ...(opts.mark ? { metadata: { event_type: opts.mark.type, event_payload: opts.mark.payload } } : {}),
      unfurl_links: false,
    } as any);
    return { channel: r.channel as string, ts: r.ts as string };
  }

  /**
   * Looks through the conversation's messages since `since` (or the thread's replies) for
   * one whose metadata is exactly `mark`. Bounded: HISTORY_PAGES pages of HISTORY_PAGE.
   */
  async findMarked(channel: string, mark: PostMark, opts: { since: Date; threadTs?: string }): Promise<PostedRef | null> {
    const oldest = (Math.floor(opts.since.getTime() / 1000) - 1).toString();
    let cursor: string | undefined;
    for (let page = 0; page < HISTORY_PAGES; page++) {
      const args = { channel, oldest, include_all_metadata: true, limit: HISTORY_PAGE, ...(cursor ? { cursor } : {}) };
      const r = opts.threadTs
        ? await this.client.conversations.replies({ ...args, ts: opts.threadTs })
        : await this.client.conversations.history(args);
      for (const m of (r.messages ?? []) as { ts?: string; metadata?: { event_type?: string; event_payload?: Record<string, unknown> } }[]) {
        if (m.ts && m.metadata?.event_type === mark.type && sameMark(m.metadata.event_payload, mark.payload)) return { channel, ts: m.ts };
      }
      cursor = r.response_metadata?.next_cursor || undefined;
      if (!r.has_more || !cursor) return null;
    }
    throw new Error(`more than ${HISTORY_PAGES * HISTORY_PAGE} messages since the attempt: cannot tell whether it was posted`);
  }

  async openDm(slackUserId: string): Promise<string> {
    const open = await this.client.conversations.open({ users: slackUserId });
    return (open.channel as { id: string }).id;
  }

  async remove(ref: PostedRef): Promise<void> {
    await this.client.chat.delete({ channel: ref.channel, ts: ref.ts });
  }

  async ping(): Promise<void> {
    await this.client.auth.test();
  }

  async update(ref: PostedRef, message: Message): Promise<void> {
    await this.client.chat.update({ channel: ref.channel, ts: ref.ts, ...messagePayload(message) } as any);
  }

  async dm(slackUserId: string, message: Message): Promise<PostedRef> {
    const open = await this.client.conversations.open({ users: slackUserId });
    return this.post((open.channel as { id: string }).id, message);
  }

  async ephemeral(channel: string, slackUserId: string, message: Message): Promise<void> {
    await this.client.chat.postEphemeral({ channel, user: slackUserId, ...messagePayload(message) } as any);
  }

  async upload(channel: string, file: { filename: string; title: string; content?: Buffer | string; path?: string; comment?: string }) {
    if (file.path) {
      await this.uploadStream(channel, { ...file, path: file.path });
      return;
    }
    await this.client.files.uploadV2({
      channel_id: channel,
      filename: file.filename,
      title: file.title,
      file: Buffer.isBuffer(file.content) ? file.content : Buffer.from(file.content ?? ''),
      ...(file.comment ? { initial_comment: file.comment } : {}),
    } as any);
  }

  /**
   * The same upload v2 flow (getUploadURLExternal → POST the bytes → completeUploadExternal),
   * streaming a file from disk: WebClient.files.uploadV2 reads the whole file into memory first.
   */
  private async uploadStream(channel: string, file: { filename: string; title: string; path: string; comment?: string }) {
    const { size } = await fs.promises.stat(file.path);
    const url = (await this.client.files.getUploadURLExternal({ filename: file.filename, length: size })) as {
      upload_url?: string;
      file_id?: string;
    };
    if (!url.upload_url || !url.file_id) throw new Error('files.getUploadURLExternal returned no upload_url');
    const res = await request(url.upload_url, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      // Text chunks through one buffer: no Buffer per chunk left for the GC (#15). undici sends
      // any async iterable body (lib/core/request.js); its types name only Readable.
      body: fileTextChunks(file.path) as AsyncIterable<string> as unknown as Readable,
    });
    await res.body.dump();
    if (res.statusCode !== 200) throw new Error(`file upload answered HTTP ${res.statusCode}`);
    await this.client.files.completeUploadExternal({
      files: [{ id: url.file_id, title: file.title }],
      channel_id: channel,
      ...(file.comment ? { initial_comment: file.comment } : {}),
    } as any);
  }

  async publishHome(slackUserId: string, message: Message): Promise<void> {
    await this.client.views.publish({
      user_id: slackUserId,
      view: { type: 'home', blocks: messageBlocks(message, 100) },
    } as any);
  }
}

/** Slack profiles through users.info and users.lookupByEmail (scope users:read.email): the fields identity matching trusts. */
export class SlackProfileDirectory implements SlackDirectory {
  constructor(private readonly client: WebClient) {}

  async profileOf(slackUserId: string): Promise<SlackProfile | null> {
    try {
      const r = await this.client.users.info({ user: slackUserId });
      return r.user ? toProfile(r.user) : null;
    } catch {
      return null;
    }
  }

  async findByEmail(email: string): Promise<EmailSearch> {
    try {
      const r = await this.client.users.lookupByEmail({ email });
      return r.user ? { profile: toProfile(r.user) } : { error: 'users_not_found' };
    } catch (e) {
      const err = e as { code?: string; data?: { error?: string } };
      return { error: err.code === 'slack_webapi_platform_error' ? (err.data?.error ?? 'unknown_error') : 'unreachable' };
    }
  }
}

function toProfile(user: unknown): SlackProfile {
  const u = user as any;
  return {
    id: u.id,
    teamId: u.team_id ?? null,
    email: u.profile?.email ?? null,
    deleted: u.deleted === true,
    isBot: u.is_bot === true || u.id === 'USLACKBOT',
    isRestricted: u.is_restricted === true,
    isUltraRestricted: u.is_ultra_restricted === true,
    // Slack sends is_email_confirmed only when it knows; absent means not confirmed.
    isEmailConfirmed: u.is_email_confirmed === true,
  };
}
