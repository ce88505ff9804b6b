import crypto from 'node:crypto';

/**
 * A modal's envelope (issue 11): where the modal came from — channel, message, response
 * URL — travels in its private_metadata so the answer can go back there. A forged or
 * altered submission must not choose where Warden posts or which channel an audit row
 * names, so the envelope is sealed with an HMAC under a key derived from the signing
 * secret (the same on every replica); a submission whose seal does not verify keeps only
 * the handler's own metadata (which handlers re-check anyway). Response URLs are followed
 * only on Slack's hosts and the configured SLACK_API_URL host.
 */

export interface Envelope {
  m: string;
  ch?: string;
  ts?: string;
  ru?: string;
}

export interface EnvelopeSealer {
  seal(e: Envelope): string;
  /** The envelope of a submission: routing fields only when the seal verifies. */
  open(raw: string | undefined): Envelope;
}

export function createEnvelopeSealer(secretMaterial: string | undefined): EnvelopeSealer {
  // Without any Slack secret (the local console) a per-process key is enough: one process.
  const key = crypto.createHash('sha256').update(`warden-modal-envelope:${secretMaterial ?? crypto.randomBytes(32).toString('hex')}`).digest();
  const mac = (e: Envelope) =>
    crypto.createHmac('sha256', key).update(JSON.stringify([e.m ?? '', e.ch ?? '', e.ts ?? '', e.ru ?? ''])).digest('base64url').slice(0, 32);
  return {
    seal(e) {
      const clean: Envelope = { m: e.m ?? '', ...(e.ch ? { ch: e.ch } : {}), ...(e.ts ? { ts: e.ts } : {}), ...(e.ru ? { ru: e.ru } : {}) };
      return JSON.stringify({ ...clean, s: mac(clean) });
    },
    open(raw) {
      let v: Record<string, unknown>;
      try {
        v = JSON.parse(raw || '{}');
      } catch {
        return { m: '' };
      }
      const str = (x: unknown) => (typeof x === 'string' ? x : undefined);
      const e: Envelope = { m: str(v.m) ?? '', ch: str(v.ch), ts: str(v.ts), ru: str(v.ru) };
      const given = Buffer.from(str(v.s) ?? '');
      const want = Buffer.from(mac(e));
      if (given.length === want.length && crypto.timingSafeEqual(given, want)) return e;
      return { m: e.m };
    },
  };
}

/** Slack's own hosts for response URLs, plus the configured Web API host (tests, proxies). */
export function allowedResponseUrl(url: string, apiUrl: string | undefined): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  if (u.username || u.password) return false;
  if (u.protocol === 'https:' && (u.hostname === 'hooks.slack.com' || u.hostname === 'slack.com' || u.hostname.endsWith('.slack.com'))) return true;
  if (!apiUrl) return false;
  try {
    const api = new URL(apiUrl);
    return u.protocol === api.protocol && u.host === api.host;
  } catch {
    return false;
  }
}
