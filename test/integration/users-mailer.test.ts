import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpMailer, MailDeliveryError } from '../../src/services/mailer.js';
import { freePort } from '../helpers/app.js';
import { MailApi } from '../e2e/users-support.js';

/** HttpMailer against a local HTTP server standing in for the SendGrid-v3-compatible mail API. */

const api = new MailApi();
beforeAll(async () => {
  await api.start();
});
afterAll(async () => {
  await api.stop();
});

const mailer = (over: Partial<{ url: string; apiKey: string; from: string; timeoutMs: number }> = {}) =>
  new HttpMailer({ url: api.url, apiKey: 'SG.key-123', from: 'warden@example.com', timeoutMs: 300, ...over });

const message = { to: 'Rose@Example.com', subject: 'Reset your password', text: 'Hello\nhttps://app.example.com/reset/abc' };

describe('HttpMailer', () => {
  it('POSTs SendGrid v3 JSON with a bearer key', async () => {
    api.mode = 'ok';
    await mailer().send(message);
    const req = api.requests.at(-1)!;
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/v3/mail/send');
    expect(req.headers.authorization).toBe('Bearer SG.key-123');
    expect(req.headers['content-type']).toBe('application/json');
    expect(req.body).toEqual({
      personalizations: [{ to: [{ email: 'Rose@Example.com' }] }],
      from: { email: 'warden@example.com' },
      subject: 'Reset your password',
      content: [{ type: 'text/plain', value: 'Hello\nhttps://app.example.com/reset/abc' }],
    });
  });

  it('an HTTP 500 is a MailDeliveryError naming the status, not the response body', async () => {
    api.mode = 'fail';
    const e = await mailer().send(message).then(() => null, (err) => err);
    api.mode = 'ok';
    expect(e).toBeInstanceOf(MailDeliveryError);
    expect(e.message).toBe('The mail service refused the message (HTTP 500).');
  });

  it('a server that never answers times out after the configured time', async () => {
    api.mode = 'hang';
    const started = Date.now();
    const e = await mailer({ timeoutMs: 250 }).send(message).then(() => null, (err) => err);
    const took = Date.now() - started;
    api.mode = 'ok';
    expect(e).toBeInstanceOf(MailDeliveryError);
    expect(e.message).toBe('The mail service did not answer within 250 ms.');
    expect(took).toBeGreaterThanOrEqual(200);
    expect(took).toBeLessThan(5000);
  });

  it('an unreachable server and missing settings are clear errors, and the key never appears in them', async () => {
    const port = await freePort();
    const down = await mailer({ url: `http://127.0.0.1:${port}/v3/mail/send` }).send(message).then(() => null, (err) => err);
    expect(down).toBeInstanceOf(MailDeliveryError);
    expect(down.message).toBe('The mail service could not be reached.');
    const unset = new HttpMailer({ url: api.url, from: 'warden@example.com', timeoutMs: 300 });
    expect(unset.configured).toBe(false);
    await expect(unset.send(message)).rejects.toThrow('E-mail is not configured');
    expect(`${down.message}`).not.toContain('SG.key-123');
  });
});
