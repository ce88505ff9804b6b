import { describe, expect, it } from 'vitest';
import { Masker } from '../../src/services/masking.js';
import type { StormData } from '../../src/services/storms.js';
import { messagePayload } from '../../src/slack/blocks.js';
import { stormMessage } from '../../src/slack/cards/storms.js';

/** The storm message (issue 12) shows data it did not write: usernames typed into a login form. */
const hostile = ['<!channel> <https://evil.example/login|Re-login>', '<@U0BADBAD> & co', '`tick`*bold*', 'x'.repeat(3000), 'ok_user'];

function data(over: Partial<StormData> = {}): StormData {
  const at = new Date('2026-11-30T17:00:00Z');
  return {
    storm: { id: 7, channel: 'C_SEC', started_at: at, last_at: at, post_id: 1, cards_requested_by: null, unlocked_by: null, unlocked_at: null, changes: 3, rendered: 3 },
    threshold: 5,
    total: 120,
    stillLocked: 118,
    carded: 1,
    accounts: hostile.map((username, i) => ({ username, unlocked: i === 4 })),
    topIps: [{ ip: '203.0.113.77', failures: 40 }],
    bursts: [{ ip: '2001:db8::17', count: 12 }],
    burstTotal: { ips: 1, failures: 12 },
    ...over,
  };
}

describe('storm message', () => {
  it('escapes every username, masks IPs, keeps Slack limits, and offers the admin buttons', () => {
    const payload = messagePayload(stormMessage(data(), new Masker(true)));
    const all = JSON.stringify(payload);
    expect(all).not.toMatch(/<!|<@|<#|<http/);
    expect(all).toContain('&lt;!channel&gt;');
    expect(all).not.toContain('203.0.113.77');
    expect(all).not.toContain('2001:db8::17');
    expect(payload.text).toContain('Lockout storm: 120 accounts locked');
    const actions = (payload.blocks as any[]).find((b) => b.type === 'actions');
    expect(actions.elements.map((e: any) => e.action_id)).toEqual(['storms:unlock-all', 'storms:cards']);
    for (const b of payload.blocks as any[]) {
      if (b.type === 'section' && b.text) expect(b.text.text.length).toBeLessThanOrEqual(3000);
    }
  });

  it('after "Unlock all" and cards asked for: no buttons left, who did it is named (escaped)', () => {
    const payload = messagePayload(
      stormMessage(data({ stillLocked: 0, storm: { ...data().storm, unlocked_by: '<!here>', unlocked_at: new Date(), cards_requested_by: 'bob' } }), new Masker(true)),
    );
    const all = JSON.stringify(payload);
    expect((payload.blocks as any[]).some((b) => b.type === 'actions')).toBe(false);
    expect(all).toContain('unlocked by &lt;!here&gt;');
    expect(all).toContain('individual cards in the thread (asked by bob)');
  });
});
