import { webApi } from '@slack/bolt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';

/** The fake Web API keeps Slack's rules for what the outbox relies on (issue 12). */
let fake: FakeSlack;
let client: webApi.WebClient;

beforeAll(async () => {
  fake = await new FakeSlack().start();
  client = new webApi.WebClient('xoxb-test', { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 }, logLevel: webApi.LogLevel.ERROR });
});
afterAll(() => fake.stop());

describe('FakeSlack conversations', () => {
  it('stores metadata and returns it from history only with include_all_metadata, newest first, paged', async () => {
    const posted: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await client.chat.postMessage({
        channel: 'C_HIST',
        text: `m${i}`,
        metadata: { event_type: 'warden_outbox', event_payload: { outbox_id: i } },
      } as any);
      posted.push(r.ts as string);
    }
    const plain = await client.conversations.history({ channel: 'C_HIST' });
    expect((plain.messages as any[]).map((m) => m.text)).toEqual(['m4', 'm3', 'm2', 'm1', 'm0']);
    expect((plain.messages as any[]).some((m) => m.metadata)).toBe(false);
    const page1 = await client.conversations.history({ channel: 'C_HIST', include_all_metadata: true, limit: 2, oldest: posted[0] });
    expect((page1.messages as any[]).map((m) => m.metadata.event_payload.outbox_id)).toEqual([4, 3]);
    expect(page1.has_more).toBe(true);
    const page2 = await client.conversations.history({
      channel: 'C_HIST',
      include_all_metadata: true,
      limit: 2,
      oldest: posted[0],
      cursor: page1.response_metadata?.next_cursor,
    });
    // oldest is exclusive: m0 itself is not returned.
    expect((page2.messages as any[]).map((m) => m.text)).toEqual(['m2', 'm1']);
    expect(page2.has_more).toBe(false);
  });

  it('refuses what Slack refuses: bad metadata, a limit over 999, updates and deletes of unknown messages', async () => {
    await expect(client.chat.postMessage({ channel: 'C_X', text: 'x', metadata: { event_type: 'x' } } as any)).rejects.toMatchObject({
      data: { error: 'invalid_metadata_format' },
    });
    await expect(client.conversations.history({ channel: 'C_X', limit: 1000 })).rejects.toMatchObject({ data: { error: 'invalid_limit' } });
    await expect(client.chat.update({ channel: 'C_X', ts: '1.000100', text: 'y' })).rejects.toMatchObject({ data: { error: 'message_not_found' } });
    await expect(client.chat.delete({ channel: 'C_X', ts: '1.000100' })).rejects.toMatchObject({ data: { error: 'message_not_found' } });
    fake.notInChannels.add('C_PRIVATE');
    await expect(client.conversations.history({ channel: 'C_PRIVATE' })).rejects.toMatchObject({ data: { error: 'not_in_channel' } });
  });

  it('can accept a post and answer it late: the message is in the channel before the caller hears back', async () => {
    const slow = new webApi.WebClient('xoxb-test', { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 }, timeout: 200, logLevel: webApi.LogLevel.ERROR });
    fake.holdNext('chat.postMessage', { answerAfterMs: 1000 });
    await expect(slow.chat.postMessage({ channel: 'C_LATE', text: 'late' })).rejects.toBeTruthy();
    expect(fake.channelMessages('C_LATE').map((m) => m.text)).toEqual(['late']);
    fake.holdNext('chat.postMessage', {});
    await expect(slow.chat.postMessage({ channel: 'C_HANG', text: 'never' })).rejects.toBeTruthy();
    expect(fake.channelMessages('C_HANG')).toEqual([]);
  });
});

describe('FakeSlack file uploads (issue 11)', () => {
  async function uploadUrl(name: string): Promise<string> {
    const r = (await client.files.getUploadURLExternal({ filename: name, length: 3 })) as { file_id: string; upload_url: string };
    await fetch(r.upload_url, { method: 'POST', body: 'a,b' });
    return r.file_id;
  }

  it('shares a file into a DM only once it was opened, never by user id, and only files it handed out', async () => {
    const id = await uploadUrl('x.csv');
    // A user id is not a conversation id: Slack refuses it (the v2 upload has no "send to user").
    await expect(client.files.completeUploadExternal({ files: [{ id }], channel_id: 'U_BOB' } as any)).rejects.toMatchObject({
      data: { error: 'invalid_arguments' },
    });
    await expect(client.files.completeUploadExternal({ files: [{ id }], channel_id: 'D_U_BOB' } as any)).rejects.toMatchObject({
      data: { error: 'channel_not_found' },
    });
    expect(fake.sharedFiles.filter((f) => f.fileId === id)).toEqual([]);
    const open = await client.conversations.open({ users: 'U_BOB' });
    expect((open.channel as { id: string }).id).toBe('D_U_BOB');
    await client.files.completeUploadExternal({ files: [{ id, title: 'x.csv' }], channel_id: 'D_U_BOB' } as any);
    expect(fake.sharedFiles.filter((f) => f.fileId === id)).toEqual([{ channel: 'D_U_BOB', fileId: id, title: 'x.csv', comment: undefined }]);
    await expect(client.files.completeUploadExternal({ files: [{ id: 'F_NEVER' }], channel_id: 'D_U_BOB' } as any)).rejects.toMatchObject({
      data: { error: 'file_not_found' },
    });
    fake.notInChannels.add('C_NOT_IN');
    await expect(client.files.completeUploadExternal({ files: [{ id }], channel_id: 'C_NOT_IN' } as any)).rejects.toMatchObject({
      data: { error: 'not_in_channel' },
    });
  });
});

describe('FakeSlack users.lookupByEmail (Slack’s rules, so Warden cannot rely on a friendlier fake)', () => {
  it('answers users_not_found, needs users:read.email, and returns flags Warden must check itself', async () => {
    fake.addUser({ id: 'U_LOOK', name: 'look', email: 'Look.Up@Example.com', isEmailConfirmed: false });
    const found = await client.users.lookupByEmail({ email: 'look.up@example.com' });
    expect(found.user).toMatchObject({ id: 'U_LOOK', is_email_confirmed: false, team_id: 'T_WARDEN', profile: { email: 'Look.Up@Example.com' } });
    await expect(client.users.lookupByEmail({ email: 'nobody@example.com' })).rejects.toMatchObject({ data: { error: 'users_not_found' } });
    fake.scopes.delete('users:read.email');
    try {
      await expect(client.users.lookupByEmail({ email: 'look.up@example.com' })).rejects.toMatchObject({
        data: { error: 'missing_scope', needed: 'users:read.email' },
      });
    } finally {
      fake.scopes.add('users:read.email');
    }
  });

  it('grants exactly the bot scopes manifest.yml asks for', async () => {
    const { BOT_SCOPES } = await import('../../src/slack/sim/fake-slack.js');
    const manifest = (await import('node:fs')).readFileSync('manifest.yml', 'utf8');
    const scopes: string[] = [];
    for (const line of manifest.slice(manifest.indexOf('    bot:')).split('\n').slice(1)) {
      if (/^\s+#/.test(line)) continue;
      const m = /^\s+- (\S+)$/.exec(line);
      if (!m) break;
      scopes.push(m[1]);
    }
    expect(scopes.sort()).toEqual([...BOT_SCOPES].sort());
  });
});
