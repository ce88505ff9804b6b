import crypto from 'node:crypto';
import net from 'node:net';

/**
 * PII masking for what Warden shows (seed 001, "GDPR Compliance"):
 * e-mails → `user***@***.com`, IPv4 → `192.168.xxx.xxx`, IPv6 (every notation: compressed,
 * IPv4-mapped, with a zone, in brackets with a port) → its first two groups `2401:4900:xxxx::`.
 * The same rules apply in columns and inside free text (details, diffs, reasons).
 */
export function maskEmail(email: string): string {
  const at = email.lastIndexOf('@');
  if (at < 0) return '***';
  const local = email.slice(0, at);
  const domain = email.slice(at + 1);
  const tld = domain.includes('.') ? domain.slice(domain.lastIndexOf('.')) : '';
  return `${local.slice(0, Math.min(4, Math.max(1, local.length - 1)))}***@***${tld}`;
}

const maskV4 = (a: string, b: string) => `${a}.${b}.xxx.xxx`;

/** Masks an IPv6 address (no brackets, no zone); an IPv4-mapped one is masked as its IPv4. */
function maskV6(addr: string): string {
  const mapped = /^(.*:)(\d{1,3})\.(\d{1,3})\.\d{1,3}\.\d{1,3}$/.exec(addr);
  if (mapped) return `${mapped[1].toLowerCase()}${maskV4(mapped[2], mapped[3])}`;
  // Expand "::" so the first two groups are the real ones (e.g. "::1" → "0:0").
  const [head, tail] = addr.toLowerCase().split('::');
  const groups = head ? head.split(':') : [];
  const tailGroups = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const full = tail !== undefined ? [...groups, ...Array(Math.max(0, 8 - groups.length - tailGroups.length)).fill('0'), ...tailGroups] : groups;
  return `${full[0] ?? '0'}:${full[1] ?? '0'}:xxxx::`;
}

/**
 * Masks one IP address as stored in a column (`ip_address`) in any notation; something
 * that is not an address is hidden whole (`xxx`), never shown.
 */
export function maskIp(ip: string): string {
  const s = ip.trim();
  const v4 = /^(\d{1,3})\.(\d{1,3})\.\d{1,3}\.\d{1,3}(?::\d+)?$/.exec(s);
  if (v4) return maskV4(v4[1], v4[2]);
  const v6 = /^\[?([0-9A-Fa-f:.]+)(%[^\]\s]*)?\]?(?::(\d+))?$/.exec(s);
  if (v6 && net.isIPv6(v6[1])) {
    const masked = maskV6(v6[1]);
    return s.startsWith('[') && v6[3] ? `[${masked}]:${v6[3]}` : masked;
  }
  // A CIDR (inet columns print "10.1.2.3/32"): mask the address part.
  const cidr = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (cidr && net.isIP(cidr[1].replace(/^\[|\]$/g, ''))) return `${maskIp(cidr[1])}/${cidr[2]}`;
  return 'xxx';
}

const EMAIL_RE = /[\p{L}\p{N}._%+'-]+@[\p{L}\p{N}-]+(?:\.[\p{L}\p{N}-]+)*\.\p{L}{2,}/gu;
// IPv6 candidates: hex groups with two colons or more, an optional embedded IPv4, zone,
// brackets and port; each candidate is checked with net.isIPv6 (so times like 12:34:56 stay).
const IPV6_RE = /(?<![0-9A-Za-z:.])\[?((?:[0-9A-Fa-f]{0,4}:){2,8}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?)(%[\w.-]+)?\]?(?::\d{1,5})?/g;
const IPV4_RE = /(?<![\d.])(\d{1,3})\.(\d{1,3})\.\d{1,3}\.\d{1,3}(?![\d])/g;

/** Masks every e-mail, IPv6 and IPv4 address inside free text. */
export function maskText(text: string): string {
  return text
    .replace(EMAIL_RE, (m) => maskEmail(m))
    .replace(IPV6_RE, (m, addr: string) => {
      if (!net.isIPv6(addr)) return m;
      const masked = maskV6(addr);
      const port = /\]:(\d{1,5})$/.exec(m);
      return m.startsWith('[') ? `[${masked}]${port ? `:${port[1]}` : ''}` : masked;
    })
    .replace(IPV4_RE, (_m, a, b) => maskV4(a, b));
}

export class Masker {
  private readonly key: Buffer;
  /** `key`: keeps `tag()` stable across replicas and restarts (derived from the signing secret); random otherwise. */
  constructor(
    readonly enabled: boolean,
    key?: string,
  ) {
    this.key = key ? crypto.createHash('sha256').update(`warden-mask-tag:${key}`).digest() : crypto.randomBytes(32);
  }
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
  /**
   * A masked IP that stays distinguishable from others masked the same (`203.0.xxx.xxx ·a1b2c3`):
   * a short keyed hash of the full value. Keyed, so the hidden part cannot be found by hashing
   * the 65,536 candidates. Without masking, the address itself.
   */
  ipTagged(v: string | null | undefined): string {
    if (!v) return '';
    if (!this.enabled) return v;
    return `${maskIp(v)} ·${this.tag(v)}`;
  }
  tag(v: string): string {
    return crypto.createHmac('sha256', this.key).update(v.trim().toLowerCase()).digest('hex').slice(0, 6);
  }
}
