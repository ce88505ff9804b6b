import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { generate } from 'otplib';
import { usedStepKey } from '../../src/services/step-up.js';
import type { Store } from '../../src/store/index.js';
import type { TestUser } from '../helpers/fixtures.js';

/**
 * Test support for the /users end-to-end and integration tests (issue 3): a local HTTP
 * server standing in for the SendGrid-v3-compatible mail API, and fresh step-up codes.
 */

export interface CapturedMail {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: any;
}

export class MailApi {
  readonly requests: CapturedMail[] = [];
  /** ok → 202 like SendGrid; fail → HTTP 500; hang → never answers (timeout). */
  mode: 'ok' | 'fail' | 'hang' = 'ok';
  url = '';
  private server?: http.Server;

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          /* keep text */
        }
        this.requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body });
        if (this.mode === 'hang') return; // the socket stays open until stop()
        if (this.mode === 'fail') {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end('{"errors":[{"message":"internal error"}]}');
          return;
        }
        res.writeHead(202);
        res.end();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v3/mail/send`;
    return this;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }

  /** The reset link in the last mail's text. */
  lastLink(): string | undefined {
    const text = this.requests.at(-1)?.body?.content?.[0]?.value as string | undefined;
    return /(https?:\/\/\S+)/.exec(text ?? '')?.[1];
  }
}

/**
 * Fresh TOTP codes: each time step is accepted once per account, so every step-up of a test
 * gets a step that account has not used yet (the current one or the next, both within the
 * ±1 tolerance). When both are used, a real admin would wait for the next step; with the
 * app's store at hand this helper instead forgets the current step's "used" mark, as if that
 * wait had passed — otherwise one admin's third step-up within a minute waited up to 30 s,
 * the whole test timeout. A code already handed out is never forgotten before `of` is called
 * again, so a test that replays it is still refused (replay has its own tests, which rely on it).
 */
export class StepUpCodes {
  private used = new Map<number, Set<number>>();

  /** `store`: the running app's store (read when a code is needed; it may be created later). */
  constructor(private readonly store?: () => Store) {}

  async of(user: TestUser): Promise<string> {
    if (!user.totpSecret) throw new Error(`${user.username} has no 2FA`);
    for (;;) {
      const now = Math.floor(Date.now() / 1000);
      const seen = this.used.get(user.id) ?? new Set<number>();
      this.used.set(user.id, seen);
      for (const offset of [0, 30]) {
        const step = Math.floor((now + offset) / 30);
        if (!seen.has(step)) {
          seen.add(step);
          return this.code(user, step);
        }
      }
      if (this.store) {
        const step = Math.floor(now / 30);
        await this.store().del(usedStepKey(user.id, step));
        return this.code(user, step);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  private code(user: TestUser, step: number): Promise<string> {
    return generate({ secret: user.totpSecret!, epoch: step * 30 + 15 });
  }

  /** A code of a step that is no longer accepted (two minutes ago). */
  expired(user: TestUser): Promise<string> {
    return generate({ secret: user.totpSecret!, epoch: Math.floor(Date.now() / 1000) - 120 });
  }
}
