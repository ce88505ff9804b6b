import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A local mail catcher: a stand-in for a SendGrid-v3-compatible mail API (`POST …/v3/mail/send`).
 * Records every message it accepts: the console points Warden's real mailer at it and prints
 * what a user would receive (`mail`); tests read it and switch it to answer HTTP 500, drop the
 * connection, or hang (the mailer's timeout must fire).
 */
export type MailMode = 'ok' | '500' | 'drop' | 'hang';

export interface ReceivedMail {
  to: string[];
  from?: string;
  subject: string;
  text: string;
  authorization?: string;
  at: Date;
}

export class MailCatcher {
  mode: MailMode = 'ok';
  readonly received: ReceivedMail[] = [];
  requests = 0;
  /** Requests answered so far (any answer; a hang or a drop is not one). */
  answered = 0;
  /** A slow mail API: every request is answered this long after it arrived. */
  delayMs = 0;
  private gate?: { promise: Promise<void>; open: () => void };
  url = '';
  private server?: http.Server;

  async start(): Promise<this> {
    // A malformed body must answer 500 and not become an unhandled rejection.
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch(() => {
        res.writeHead(500);
        res.end();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v3/mail/send`;
    return this;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.requests++;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (this.gate) await this.gate.promise;
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.mode === 'hang') return;
    res.on('finish', () => this.answered++);
    if (this.mode === 'drop') {
      req.socket.destroy();
      return;
    }
    if (this.mode === '500') {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"errors":[{"message":"internal"}]}');
      return;
    }
    const body = JSON.parse(Buffer.concat(chunks).toString() || '{}');
    this.received.push({
      to: (body.personalizations ?? []).flatMap((p: any) => (p.to ?? []).map((t: any) => t.email)),
      from: body.from?.email,
      subject: body.subject ?? '',
      text: (body.content ?? []).map((c: any) => c.value).join('\n'),
      authorization: req.headers.authorization,
      at: new Date(),
    });
    res.writeHead(202);
    res.end();
  }

  /** Holds every request (arrived or to come) unanswered until release(): a mail API slower than anything. */
  hold(): void {
    if (this.gate) return;
    let open!: () => void;
    const promise = new Promise<void>((r) => (open = r));
    this.gate = { promise, open };
  }

  release(): void {
    this.gate?.open();
    this.gate = undefined;
  }

  /** Settings that point Warden's mailer at this server. */
  env(): Record<string, string> {
    return { EMAIL_API_URL: this.url, EMAIL_API_KEY: 'SG.test-key', EMAIL_FROM: 'warden@example.com', EMAIL_TIMEOUT_MS: '1000' };
  }

  /** The last code-looking number (e.g. "1234 5678") in the last mail to an address. */
  lastCodeTo(address: string, digits = 8): string | undefined {
    const mail = [...this.received].reverse().find((m) => m.to.includes(address));
    const m = mail && new RegExp(`(\\d{${digits / 2}}) ?(\\d{${digits / 2}})`).exec(mail.text);
    return m ? `${m[1]}${m[2]}` : undefined;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }
}
