import { describe, expect, it } from 'vitest';
import { deliveryKey } from '../../src/slack/router.js';

describe('deliveryKey (duplicate-delivery check)', () => {
  it("keys commands, clicks and submissions by Slack's trigger_id, which a retry re-sends", () => {
    const command = { command: '/users', text: 'list', trigger_id: 'trig.1' };
    expect(deliveryKey(command)).toBe('dedupe:command:trig.1');
    expect(deliveryKey({ ...command })).toBe(deliveryKey(command));
    expect(deliveryKey({ ...command, trigger_id: 'trig.2' })).not.toBe(deliveryKey(command));
    expect(deliveryKey({ type: 'block_actions', trigger_id: 'trig.1' })).toBe('dedupe:block_actions:trig.1');
    expect(deliveryKey({ type: 'view_submission', trigger_id: 'trig.1' })).not.toBe(deliveryKey(command));
  });

  it('keys events by event_id and hashes only a payload with neither id', () => {
    expect(deliveryKey({ type: 'event_callback', event_id: 'Ev1' })).toBe('dedupe:event:Ev1');
    const a = deliveryKey({ type: 'x', n: 1 });
    expect(a).toMatch(/^dedupe:x:#[0-9a-f]{64}$/);
    expect(deliveryKey({ type: 'x', n: 2 })).not.toBe(a);
  });
});
