/**
 * PII masking for what Warden shows (seed 001, "GDPR Compliance"):
 * e-mails → `user***@***.com`, IPv4 → `192.168.xxx.xxx`.
 */
export function maskEmail(email: string): string {
  const at = email.indexOf('@');
  if (at < 0) return '***';
  const local = email.slice(0, at);
  const domain = email.slice(at + 1);
  const tld = domain.includes('.') ? domain.slice(domain.lastIndexOf('.')) : '';
  return `${local.slice(0, Math.min(4, Math.max(1, local.length - 1)))}***@***${tld}`;
}

export function maskIp(ip: string): string {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.\d{1,3}\.\d{1,3}$/.exec(ip);
  if (v4) return `${v4[1]}.${v4[2]}.xxx.xxx`;
  if (ip.includes(':')) {
    const parts = ip.split(':').filter(Boolean);
    return `${parts.slice(0, 2).join(':')}:xxxx::`;
  }
  return 'xxx';
}

const EMAIL_RE = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g;
const IPV4_RE = /\b(\d{1,3})\.(\d{1,3})\.\d{1,3}\.\d{1,3}\b/g;

/** Masks every e-mail address and IPv4 address inside free text (details, diffs). */
export function maskText(text: string): string {
  return text.replace(EMAIL_RE, (m) => maskEmail(m)).replace(IPV4_RE, (_m, a, b) => `${a}.${b}.xxx.xxx`);
}

export class Masker {
  constructor(readonly enabled: boolean) {}
  email(v: string | null | undefined): string {
    if (!v) return '';
    return this.enabled ? maskEmail(v) : v;
  }
  ip(v: string | null | undefined): string {
    if (!v) return '';
    return this.enabled ? maskIp(v) : v;
  }
  text(v: string): string {
    return this.enabled ? maskText(v) : v;
  }
}
