import type { Message } from '../ui.js';

/**
 * What services need from the chat platform, without knowing it is Slack.
 * Implemented in src/slack/chat-port.ts over the Web API.
 */
export interface PostedRef {
  channel: string;
  ts: string;
}

export interface Chat {
  post(channel: string, message: Message, opts?: { threadTs?: string }): Promise<PostedRef>;
  update(ref: PostedRef, message: Message): Promise<void>;
  /** Direct message to a Slack user (opens the DM conversation). */
  dm(slackUserId: string, message: Message): Promise<PostedRef>;
  /** Visible only to one user in a channel. */
  ephemeral(channel: string, slackUserId: string, message: Message): Promise<void>;
  /**
   * Uploads a file into a conversation (files upload v2 flow). Either `content`, or `path`
   * of a file on disk that is streamed to Slack without being read into memory.
   */
  upload(channel: string, file: { filename: string; title: string; content?: Buffer | string; path?: string; comment?: string }): Promise<void>;
  /** Publishes a user's App Home tab. */
  publishHome(slackUserId: string, message: Message): Promise<void>;
}
