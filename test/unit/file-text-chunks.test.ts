import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { webApi } from '@slack/bolt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileTextChunks } from '../../src/services/chat.js';
import { SlackChat } from '../../src/slack/chat-port.js';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';

/**
 * #15: an export file is uploaded as text chunks read through one buffer (no Buffer per chunk
 * for the GC). The bytes Slack receives must be exactly the file's, also when a chunk ends in
 * the middle of a multi-byte character; a file that is not UTF-8 fails instead of being changed.
 */

let dir: string;
let fake: FakeSlack;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-chunks-'));
  fake = await new FakeSlack().start();
});
afterAll(async () => {
  fs.rmSync(dir, { recursive: true, force: true });
  await fake.stop();
});

function file(name: string, bytes: Buffer): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, bytes);
  return p;
}

async function read(p: string, chunkBytes?: number): Promise<string[]> {
  const out: string[] = [];
  for await (const t of fileTextChunks(p, chunkBytes)) out.push(t);
  return out;
}

// 1-, 2-, 3- and 4-byte characters, CSV quoting, a BOM-like character not at the start.
const TEXT = 'id,actor\r\n1,"é ü ß"\r\n2,中文\r\n3,😀 \u2028 \uFEFF =1\r\n';

describe('fileTextChunks (#15 upload body)', () => {
  it('gives back exactly the file, whatever the chunk size splits', async () => {
    const bytes = Buffer.from(TEXT.repeat(50), 'utf8');
    const p = file('multi.csv', bytes);
    for (const size of [1, 2, 3, 5, 7, 64, 65536]) {
      const chunks = await read(p, size);
      expect(Buffer.from(chunks.join(''), 'utf8').equals(bytes), `chunk ${size}`).toBe(true);
      expect(chunks.reduce((n, c) => n + Buffer.byteLength(c), 0)).toBe(bytes.length);
    }
    // A leading BOM is content too: kept, not swallowed.
    const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('a,b\r\n')]);
    expect(Buffer.from((await read(file('bom.csv', bom), 2)).join(''), 'utf8').equals(bom)).toBe(true);
    expect(await read(file('empty.csv', Buffer.alloc(0)))).toEqual([]);
  });

  it('refuses a file that is not valid UTF-8 rather than changing its bytes', async () => {
    for (const [name, bytes] of [
      ['latin1', Buffer.from('caf\xe9\r\n', 'latin1')],
      ['truncated', Buffer.from([0x61, 0xe4, 0xb8])],
      ['surrogate', Buffer.from([0xed, 0xa0, 0x80])],
      ['ff', Buffer.from([0xff, 0x61])],
    ] as const) {
      await expect(read(file(`${name}.csv`, bytes), 2), name).rejects.toThrow(TypeError);
    }
  });

  it('the Slack port uploads the file byte for byte (multi-byte characters across the 64 KB chunks)', async () => {
    // The 4-byte emoji straddles every 64 KB boundary at some offset.
    const bytes = Buffer.from(`x${TEXT}`.repeat(6000), 'utf8');
    expect(bytes.length).toBeGreaterThan(3 * 65536);
    const p = file('export.csv', bytes);
    const chat = new SlackChat(new webApi.WebClient('xoxb-test', { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 }, logLevel: webApi.LogLevel.ERROR }));
    await chat.upload('C_EXPORT', { filename: 'export.csv', title: 'export.csv', path: p });
    const id = fake.callsTo('files.completeUploadExternal').at(-1)!.args.files[0].id as string;
    expect(fake.uploads.get(id)!.content.equals(bytes)).toBe(true);
  });
});
