import fs from 'node:fs';
import type { webApi } from '@slack/bolt';
import { request } from 'undici';
import type { Chat, PostedRef } from '../services/chat.js';
import type { SlackDirectory } from '../services/identity.js';
import type { Message } from '../ui.js';
import { messageBlocks, messagePayload } from './blocks.js';

type WebClient = webApi.WebClient;

/** The Chat port over Slack's Web API. */
export class SlackChat implements Chat {
  constructor(private readonly client: WebClient) {}

  async post(channel: string, message: Message, opts: { threadTs?: string } = {}): Promise<PostedRef> {
    const r = await this.client.chat.postMessage({
      channel,
      ...messagePayload(message),
      ...(opts.threadTs ? { thread_ts: opts.threadTs } : {}),
      unfurl_links: false,
    } as any);
    return { channel: r.channel as string, ts: r.ts as string };
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
      body: fs.createReadStream(file.path),
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

/** Slack profile e-mails through users.info (scope users:read.email). */
export class SlackProfileDirectory implements SlackDirectory {
  constructor(private readonly client: WebClient) {}

  async emailOf(slackUserId: string): Promise<string | null> {
    try {
      const r = await this.client.users.info({ user: slackUserId });
      return (r.user as any)?.profile?.email ?? null;
    } catch {
      return null;
    }
  }
}
