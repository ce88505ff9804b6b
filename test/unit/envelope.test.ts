import { describe, expect, it } from 'vitest';
import { allowedResponseUrl, createEnvelopeSealer } from '../../src/slack/envelope.js';

describe('modal envelope (issue 11)', () => {
  const sealer = createEnvelopeSealer('signing-secret');
  const sealed = sealer.seal({ m: '{"r":1}', ch: 'C1', ts: '1.2', ru: 'https://hooks.slack.com/actions/T/1/x' });

  it('round-trips a sealed envelope', () => {
    expect(sealer.open(sealed)).toEqual({ m: '{"r":1}', ch: 'C1', ts: '1.2', ru: 'https://hooks.slack.com/actions/T/1/x' });
  });

  it('drops the routing fields of an altered, unsealed or foreign envelope', () => {
    const v = JSON.parse(sealed);
    expect(sealer.open(JSON.stringify({ ...v, ch: 'C_EVIL' }))).toEqual({ m: '{"r":1}' });
    expect(sealer.open(JSON.stringify({ ...v, ru: 'https://evil.example/x' }))).toEqual({ m: '{"r":1}' });
    expect(sealer.open(JSON.stringify({ m: 'x', ch: 'C1', ru: 'https://hooks.slack.com/x' }))).toEqual({ m: 'x' });
    expect(createEnvelopeSealer('other').open(sealed)).toEqual({ m: '{"r":1}' });
    expect(sealer.open('not json')).toEqual({ m: '' });
  });

  it('follows response URLs only on Slack hosts and the configured API host', () => {
    expect(allowedResponseUrl('https://hooks.slack.com/actions/T1/2/abc', undefined)).toBe(true);
    expect(allowedResponseUrl('http://hooks.slack.com/actions/T1/2/abc', undefined)).toBe(false);
    expect(allowedResponseUrl('https://hooks.slack.com.evil.example/x', undefined)).toBe(false);
    expect(allowedResponseUrl('https://user:pw@hooks.slack.com/x', undefined)).toBe(false);
    expect(allowedResponseUrl('http://169.254.169.254/latest', undefined)).toBe(false);
    expect(allowedResponseUrl('http://127.0.0.1:4000/response/1', 'http://127.0.0.1:4000/api/')).toBe(true);
    expect(allowedResponseUrl('http://127.0.0.1:4001/response/1', 'http://127.0.0.1:4000/api/')).toBe(false);
  });
});
