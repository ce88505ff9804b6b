import { describe, expect, it } from 'vitest';
import { copyTextFields } from '../../src/db/copy-text.js';
import { auditCsvLine, auditRowOf, copyLineToCsv, fastCsvLine } from '../../src/services/audit-export.js';
import { isSecretKey, mayHoldSecret } from '../../src/services/audit-scrub.js';
import { Masker } from '../../src/services/masking.js';

/**
 * Issue 15: the export's fast path (a COPY line straight to CSV, no JSON.parse, no scrubbing
 * copy, no masking regexes) must give exactly the slow path's line — #11's scrubbing reader
 * and masker — for every row it takes, and leave every row it cannot vouch for to the slow path.
 */

const masked = new Masker(true, 'k');
const clear = new Masker(false, 'k');

/** One value in COPY's text format. */
function copyField(v: string | null): string {
  if (v === null) return '\\N';
  return v.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}

/** jsonb's text output of a flat object: keys ordered by length then bytes, `": "` and `", "` between. */
function jsonbText(obj: Record<string, unknown>): string {
  const keys = Object.keys(obj).sort((a, b) => Buffer.byteLength(a) - Buffer.byteLength(b) || Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return `{${keys.map((k) => `${JSON.stringify(k)}: ${typeof obj[k] === 'string' ? JSON.stringify(obj[k]) : String(obj[k])}`).join(', ')}}`;
}

interface Row {
  id?: string;
  ts?: string;
  actor?: string | null;
  userId?: string | null;
  action?: string;
  entityType?: string | null;
  entityId?: string | null;
  ip?: string | null;
  details?: string | null;
  before?: string | null;
  after?: string | null;
}

function copyLine(r: Row): string {
  return [
    r.id ?? '42',
    r.ts ?? '2026-11-30T16:59:52.194391Z',
    r.actor === undefined ? 'user55434' : r.actor,
    r.userId === undefined ? '55434' : r.userId,
    r.action ?? 'login_success',
    r.entityType === undefined ? 'user' : r.entityType,
    r.entityId === undefined ? '33104' : r.entityId,
    r.ip === undefined ? '10.0.7.7' : r.ip,
    r.details === undefined ? '{"username": "user55434"}' : r.details,
    r.before ?? null,
    r.after ?? null,
  ]
    .map(copyField)
    .join('\t');
}

const slow = (line: string, m: Masker) => auditCsvLine(auditRowOf(copyTextFields(line)), m);

/** Checks one line both ways; returns whether the fast path took it (masked, clear). */
function same(line: string): [boolean, boolean] {
  const taken: boolean[] = [];
  for (const m of [masked, clear]) {
    const fast = fastCsvLine(line, m);
    if (fast !== undefined) expect(fast, line).toBe(slow(line, m));
    expect(copyLineToCsv(line, m), line).toBe(slow(line, m));
    taken.push(fast !== undefined);
  }
  return taken as [boolean, boolean];
}

const HOSTILE_JSON = [
  '{}',
  '{"username": "user55434"}',
  '{"a": 1, "b": "x, ", "c": "y"}',
  '{"note": "a, \\"quoted\\" word"}',
  '{"password": "hunter2"}',
  '{"Password_Hash": "$2b$10$abc"}',
  '{"otp": "123456"}',
  '{"api-key": "k"}',
  '{"x": "password=hunter2"}',
  '{"x": "Authorization: Bearer abc"}',
  '{"x": "token=abc"}',
  '{"x": "see {\\"secret\\": \\"s\\"}"}',
  '{"x": "{\\"secret\\": \\"s\\"}"}',
  '{"x": "[1, 2]"}',
  '{"x": " {\\"a\\": 1} "}',
  '{"email": "jane.doe@example.com"}',
  '{"x": "mail jane@example.org now"}',
  '{"ip": "10.20.30.40"}',
  '{"x": "v1.2"}',
  '{"x": "2001:db8::1"}',
  '{"x": "fe80::1%eth0"}',
  '{"x": "12:34:56"}',
  '{"10": 1, "b": 2}',
  '{"b": 1, "10": 2}',
  '{"__proto__": {"a": 1}}',
  '{"__proto__": "x"}',
  '{"n": 1.0}',
  '{"n": 1.50}',
  '{"n": -0}',
  '{"n": 12345678901234567890}',
  '{"n": 100000}',
  '{"n": -5}',
  '{"t": true, "f": false, "z": null}',
  '{"nested": {"a": 1}}',
  '{"list": [1, 2, 3]}',
  '{"x": "=cmd|\' /C calc\'!A0"}',
  '{"x": "+1"}',
  '{"x": "line\\nbreak"}',
  '{"x": "tab\\there"}',
  '{"x": "\\u0000"}',
  '{"x": "é ü ß 中文 😀"}',
  '{"x": "\u2028\u2029"}',
  '{"x": "\u200b=1"}',
  '{"x": "a\\\\b"}',
  '{"k k": "v v", "a": "b"}',
  '"just a string"',
  '"{\\"password\\": \\"x\\"}"',
  '[1, 2]',
  '[{"password": "x"}]',
  '5',
  '0',
  'true',
  'false',
  'null',
  '""',
];

describe('export fast path (#15) = the slow path (#11 scrubbing and masking)', () => {
  it('the secret-word pre-scan is a superset of the secret keys and key=value pairs it stands for', () => {
    const words = ['pass', 'password', 'passwd', 'passphrase', 'pwd', 'secret', 'token', 'api_key', 'apikey', 'access-key', 'private_key',
      'signing_key', 'client-key', 'authorization', 'cookie', 'credential', 'salt', 'hash', 'otp', 'totp', 'mfa_code', 'recovery_codes', 'reset-code', 'authcode'];
    for (const w of words) {
      for (const k of [w, w.toUpperCase(), `x_${w}`, `${w}_y`, `My${w[0].toUpperCase()}${w.slice(1)}`]) {
        if (isSecretKey(k)) expect(mayHoldSecret(k), k).toBe(true);
        expect(mayHoldSecret(`{"x": "${k}=v"}`), k).toBe(true);
      }
    }
    // Random keys: whenever the scrubber would hide one, the pre-scan saw it.
    const alphabet = 'abcdefghijklmnopqrstuvwxyz_-PASWORDTKENH0123';
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let i = 0; i < 20000; i++) {
      let k = '';
      for (let j = 0, n = 1 + rnd(12); j < n; j++) k += alphabet[rnd(alphabet.length)];
      if (isSecretKey(k)) expect(mayHoldSecret(k), k).toBe(true);
    }
  });

  it('hostile JSON columns: identical lines, and only harmless flat objects take the fast path', () => {
    const fastOk = new Set(['{}', '{"username": "user55434"}', '{"a": 1, "b": "x, ", "c": "y"}', '{"n": 100000}', '{"n": -5}', '{"t": true, "f": false, "z": null}',
      '{"x": "+1"}', '{"x": "é ü ß 中文 😀"}', '{"k k": "v v", "a": "b"}', '{"x": "\u2028\u2029"}', '{"x": "\u200b=1"}', '{"x": "=cmd|\' /C calc\'!A0"}']);
    for (const json of HOSTILE_JSON) {
      for (const col of ['details', 'before', 'after'] as const) {
        const [m, c] = same(copyLine({ [col]: json }));
        if (!fastOk.has(json)) expect(m, `${col} ${json}`).toBe(false);
        if (fastOk.has(json)) expect(c, `${col} ${json}`).toBe(true);
      }
    }
    // Masked: a dotted number may be an address and goes the slow way; unmasked it is plain text.
    expect(same(copyLine({ details: '{"x": "v1.2"}' }))).toEqual([false, true]);
  });

  it('hostile plain columns: actors, actions, IPs, ids and timestamps give identical lines', () => {
    const texts = ['', '=1+1', '-2', '@SUM(A1)', '\t=x', ' =x', '\u200b=x', '＝1', 'a,b', 'a"b', 'line\nbreak', 'cr\rx', 'user.name', '_x', 'é', 'ok'];
    for (const t of texts) {
      same(copyLine({ actor: t }));
      same(copyLine({ action: t }));
      same(copyLine({ entityType: t }));
      same(copyLine({ ip: t }));
    }
    for (const ip of [null, '', '10.1.2.3', '2001:db8::1', '[2001:db8::1]:443', '::ffff:10.1.2.3', '10.1.2.3/32', 'not an ip', '=1']) same(copyLine({ ip }));
    for (const n of [null, '0', '-1', '7', '007', '-0', '9007199254740993', '12345678901234567890', '1.5']) {
      same(copyLine({ userId: n }));
      same(copyLine({ entityId: n }));
    }
    for (const id of ['1', '9007199254740993', '0', '00012']) same(copyLine({ id }));
    for (const ts of ['2026-11-30T16:59:52.999999Z', '2026-11-30T16:59:52.000000Z', '2026-11-30T16:59:52.000999Z', '1970-01-01T00:00:00.000001Z', '2026-11-30T16:59:52.5Z']) {
      same(copyLine({ ts }));
    }
    // Wrong field counts and escapes take the slow path.
    expect(fastCsvLine('1\t2', masked)).toBeUndefined();
  });

  it('one match per line: IPv4 addresses in every form, secret words only looked for in the JSON columns', () => {
    // A plain IPv4 address is masked inside the line's one match; anything near it goes through maskIp.
    const ips = ['0.0.0.0', '255.255.255.255', '999.999.999.999', '01.002.3.4', '1.2.3.4:80', '1.2.3.4.5', '1.2.3', ' 1.2.3.4', '1.2.3.4 ', '1.2.3.4/24', '1.2.3.４', '1.2.3.4\n'];
    for (const ip of ips) same(copyLine({ ip }));
    expect(same(copyLine({ ip: '192.168.200.1' }))).toEqual([true, true]);
    expect(fastCsvLine(copyLine({ ip: '192.168.200.1' }), clear)).toContain(',192.168.200.1,');
    expect(fastCsvLine(copyLine({ ip: '192.168.200.1' }), masked)).toContain(',192.168.xxx.xxx,');
    // Secret words, array-index keys and __proto__ (any case) in any JSON column send the row the slow way.
    for (const json of ['{"PassWord": "x"}', '{"x": "API_KEY"}', '{"1": "a"}', '{"__PROTO__": "x"}', '{"note": "OTP sent"}']) {
      for (const col of ['details', 'before', 'after'] as const) expect(same(copyLine({ [col]: json, details: col === 'details' ? json : '{"username": "u"}' }))).toEqual([false, false]);
    }
    // The same words in a plain column change nothing the scrubber reads: the line stays fast.
    expect(same(copyLine({ action: 'password_reset', actor: 'token_bot', entityType: 'api_key' }))).toEqual([true, true]);
  });

  it('random rows: every line the fast path takes equals the slow one, and most harmless rows take it', () => {
    let seed = 15;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    const pick = <T>(a: readonly T[]) => a[rnd(a.length)];
    const pieces = ['a', 'user', 'name', ' ', ', ', '.', '1', '42', '-', '=', '+', '@', ':', '::', 'x.y', '10.0.0.1', 'é', '😀', '\u200b', '"', '\\', '\n', '{', '}', '[', ']', 'pass', 'token', 'otp', 'code', 'jane@example.com'];
    const str = () => Array.from({ length: rnd(4) }, () => pick(pieces)).join('');
    const value = () => {
      switch (rnd(6)) {
        case 0:
          return rnd(1000) - 500;
        case 1:
          return pick([true, false, null]);
        default:
          return str();
      }
    };
    let fastCount = 0;
    const N = 5000;
    for (let i = 0; i < N; i++) {
      const obj: Record<string, unknown> = {};
      for (let k = 0, n = rnd(4); k < n; k++) obj[rnd(5) === 0 ? String(rnd(20)) : pick(['username', 'reason', 'old', 'new', 'field', 'role', 'x y', str() || 'k'])] = value();
      const micro = String(rnd(1_000_000)).padStart(6, '0');
      const ts = new Date(Date.UTC(2000 + rnd(100), rnd(12), 1 + rnd(28), rnd(24), rnd(60), rnd(60))).toISOString().slice(0, 20) + micro + 'Z';
      const line = copyLine({
        id: String(1 + rnd(1e9)),
        ts,
        actor: rnd(3) ? `user${rnd(1000)}` : str(),
        ip: pick([null, '10.0.7.7', '192.168.1.20', '2001:db8::1', str()]),
        details: rnd(4) ? jsonbText(obj) : null,
        after: rnd(3) ? null : jsonbText({ role: pick(['admin', 'biller', 'x@y.io']) }),
      });
      const [m] = same(line);
      if (m) fastCount++;
    }
    // The generator is hostile on purpose; still a good share of its rows are harmless.
    expect(fastCount).toBeGreaterThan(N / 10);
  });

  it('the rows of the benchmark (and of a busy deployment: logins) take the fast path', () => {
    const line = copyLine({});
    expect(fastCsvLine(line, masked)).toBe('42,2026-11-30T16:59:52.194Z,user55434,55434,login_success,user,33104,10.0.xxx.xxx,"{""username"":""user55434""}",,\r\n');
  });
});
