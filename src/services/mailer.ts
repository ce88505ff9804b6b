import { request } from 'undici';
import { UserError } from '../errors.js';

/**
 * Sends e-mail through a SendGrid-v3-compatible API (POST {EMAIL_API_URL}/v3/mail/send
 * style: the URL is used as given). Configured by EMAIL_API_URL, EMAIL_API_KEY and
 * EMAIL_FROM; every call has a timeout, and a failure is a UserError the admin sees.
 */
export interface MailMessage {
  to: string;
  subject: string;
  text: string;
}

export interface Mailer {
  readonly configured: boolean;
  send(message: MailMessage): Promise<void>;
}

export class MailDeliveryError extends UserError {}

export class HttpMailer implements Mailer {
  constructor(
    private readonly opts: { url?: string; apiKey?: string; from?: string; timeoutMs: number },
  ) {}

  get configured(): boolean {
    return !!(this.opts.url && this.opts.apiKey && this.opts.from);
  }

  async send(message: MailMessage): Promise<void> {
    if (!this.configured) {
      throw new MailDeliveryError('E-mail is not configured (EMAIL_API_URL, EMAIL_API_KEY, EMAIL_FROM).');
    }
    const body = {
      personalizations: [{ to: [{ email: message.to }] }],
      from: { email: this.opts.from },
      subject: message.subject,
      content: [{ type: 'text/plain', value: message.text }],
    };
    let status: number;
    try {
      const res = await request(this.opts.url!, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.opts.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        headersTimeout: this.opts.timeoutMs,
        bodyTimeout: this.opts.timeoutMs,
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
      status = res.statusCode;
      await res.body.dump();
    } catch (e) {
      const timedOut = (e as Error).name === 'TimeoutError' || /timeout/i.test((e as Error).message);
      throw new MailDeliveryError(
        timedOut ? `The mail service did not answer within ${this.opts.timeoutMs} ms.` : 'The mail service could not be reached.',
      );
    }
    if (status < 200 || status >= 300) {
      throw new MailDeliveryError(`The mail service refused the message (HTTP ${status}).`);
    }
  }
}
