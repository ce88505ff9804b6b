import fs from 'node:fs';
import type { Message } from '../ui.js';

/**
 * What services need from the chat platform, without knowing it is Slack.
 * Implemented in src/slack/chat-port.ts over the Web API.
 */
export interface PostedRef {
  channel: string;
  ts: string;
}

/**
 * A machine-readable mark carried by a posted message (Slack message `metadata`), so that
 * Warden can later recognise its own message in a channel's history: the outbox marks each
 * post with its row id and looks for it before posting again after an ambiguous failure.
 */
export interface PostMark {
  type: string;
  payload: Record<string, string | number>;
}

export interface PostOptions {
  threadTs?: string;
  mark?: PostMark;
}

export interface Chat {
  post(channel: string, message: Message, opts?: PostOptions): Promise<PostedRef>;
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

  // What the outbox needs for exactly-once delivery (optional: ports without them post plainly).
  /** The message carrying exactly this mark posted at or after `since` (in a thread: `threadTs`), or null. */
  findMarked?(channel: string, mark: PostMark, opts: { since: Date; threadTs?: string }): Promise<PostedRef | null>;
  /** The id of the DM conversation with a user (opened if needed). */
  openDm?(slackUserId: string): Promise<string>;
  /** Deletes a message Warden posted (a duplicate it withdraws). */
  remove?(ref: PostedRef): Promise<void>;
  /** A cheap authenticated call: resolves when Slack answers (is it back after an outage?). */
  ping?(): Promise<void>;
}

/**
 * The text of a UTF-8 file in chunks, for streaming it as an upload body (`Chat.upload` with
 * `path`), read through one reused buffer. Text rather than Buffers (#15): every Buffer a file
 * stream hands out is memory outside V8's heap that only a garbage collection returns, and V8
 * lets ~64 MB of it pile up first — a 120 MB export read that way grew the process by ~55 MB
 * while it uploaded. Strings live in the young generation and go at the next scavenge. The
 * decoder is fatal: a file that is not valid UTF-8 fails the upload rather than being changed
 * (the CSV export writes nothing else). The bytes sent are exactly the file's.
 */
export async function* fileTextChunks(path: string, chunkBytes = 64 * 1024): AsyncGenerator<string> {
  const file = await fs.promises.open(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(chunkBytes);
    const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, chunkBytes, null);
      if (bytesRead === 0) break;
      const text = decoder.decode(buffer.subarray(0, bytesRead), { stream: true });
      if (text) yield text;
    }
    const rest = decoder.decode();
    if (rest) yield rest;
  } finally {
    await file.close();
  }
}
