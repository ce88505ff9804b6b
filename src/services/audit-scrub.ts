/**
 * Secret scrubbing for audit rows the application wrote (issue 11). Warden strips secrets
 * from the snapshots it writes itself, but the web application writes `details`,
 * `before_state` and `after_state` too, and may put a password hash, a TOTP secret, a reset
 * token or an API key there. Every audit view and export reads rows through
 * `scrubAuditRow` (AuditSearch's one row reader, the lockout investigation, the CSV export),
 * so such a value is never shown: the key stays, its value becomes `[hidden]`.
 *
 * Keys are matched case-insensitively at any depth, inside arrays, and inside strings that
 * hold JSON; `key=value` / `key: value` pairs in free text are hidden too.
 */

export const HIDDEN = '[hidden]';

const SECRET_KEY =
  /(pass(word|wd|phrase)|^pass$|pwd|secret|token|api[_-]?key|apikey|(access|private|signing|encryption|client)[_-]?key|authorization|cookie|credential|(^|[_-])salt($|[_-])|(^|[_-])hash($|[_-])|(^|[_-])t?otp($|[_-])|mfa[_-]?code|(verification|recovery|backup|reset|auth)[_-]?codes?$)/i;

/** Is this key's value a secret? */
export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key);
}

// key=value, key: value, "key": "value" inside free text.
const PAIR =
  /((?:^|[\s{,;&?"'(])["']?)([\w.-]*(?:pass(?:word|wd|phrase)|pwd|secret|token|api[_-]?key|apikey|private[_-]?key|authorization|cookie|credential|totp)[\w.-]*)(["']?\s*[=:]\s*)("[^"]*"|'[^']*'|(?:Bearer\s+)?[^\s,;&"'}]+)/gi;

/**
 * A cheap superset of SECRET_KEY and PAIR: every key they hide, and every `key=value` they
 * hide in text, contains one of these words. A text without any cannot be changed by
 * scrubSecrets (the export's fast path relies on this, searching for SECRET_WORDS itself; a test
 * checks the superset).
 */
export const SECRET_WORDS = 'pass|pwd|secret|token|key|authorization|cookie|credential|salt|hash|otp|mfa|code';
const SECRET_WORD = new RegExp(SECRET_WORDS, 'i');

/** False only when no key or value inside `text` can be a secret scrubSecrets would hide. */
export function mayHoldSecret(text: string): boolean {
  return SECRET_WORD.test(text);
}

function scrubString(s: string, depth: number): string {
  const t = s.trim();
  if ((t.startsWith('{') && t.endsWith('}')) || (t.startsWith('[') && t.endsWith(']'))) {
    try {
      const parsed: unknown = JSON.parse(t);
      const cleaned = scrubSecrets(parsed, depth + 1);
      return JSON.stringify(cleaned);
    } catch {
      // Not JSON after all: treated as text below.
    }
  }
  return s.replace(PAIR, (_m, pre: string, key: string, sep: string) => `${pre}${key}${sep}${HIDDEN}`);
}

/** A copy of `value` with every secret key's value replaced by `[hidden]`. */
export function scrubSecrets<T>(value: T, depth = 0): T {
  if (depth > 32) return HIDDEN as T;
  if (typeof value === 'string') return scrubString(value, depth) as T;
  if (Array.isArray(value)) return value.map((v) => scrubSecrets(v, depth + 1)) as T;
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      out[k] = isSecretKey(k) && v !== null && v !== '' ? HIDDEN : scrubSecrets(v, depth + 1);
    }
    return out as T;
  }
  return value;
}

/** The fields of an audit row that carry what the application wrote. */
export function scrubAuditRow<R extends { details?: unknown; before_state?: unknown; after_state?: unknown }>(row: R): R {
  const out = { ...row };
  if (row.details !== undefined) out.details = scrubSecrets(row.details);
  if (row.before_state !== undefined) out.before_state = scrubSecrets(row.before_state);
  if (row.after_state !== undefined) out.after_state = scrubSecrets(row.after_state);
  return out;
}
