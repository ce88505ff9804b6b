import { describe, expect, it } from 'vitest';
import { HIDDEN, scrubAuditRow, scrubSecrets } from '../../src/services/audit-scrub.js';
import { csvCell, looksLikeFormula } from '../../src/services/csv.js';
import { Masker, maskIp, maskText } from '../../src/services/masking.js';

/**
 * Issue 11: masking that holds. Each case is a hostile form of an address inside a column
 * or free text; after masking, the hidden part (the last two IPv4 octets, everything after
 * the first two IPv6 groups, an e-mail's local part beyond 4 characters and its domain)
 * must not be there.
 */

// [input, a fragment that must not survive masking]
const CORPUS: [string, string][] = [
  // IPv4
  ['192.168.1.20', '1.20'],
  ['from 10.20.30.40 today', '30.40'],
  ['ip=10.20.30.40,next', '30.40'],
  ['(10.20.30.40)', '30.40'],
  ['10.20.30.40:8080', '30.40'],
  ['"10.20.30.40"', '30.40'],
  ['x10.20.30.40y', '30.40'],
  ['10.20.30.40/24', '30.40'],
  ['<10.20.30.40>', '30.40'],
  ['10.20.030.040', '030.040'],
  // IPv6 compressed and full
  ['2401:4900:1c5a:2b3::17', '1c5a'],
  ['client_ip=2401:4900:1c5a:2b3::17', '1c5a'],
  ['2001:0db8:85a3:0000:0000:8a2e:0370:7334', '8a2e'],
  ['2001:DB8:85A3::8A2E:370:7334', '8A2E'],
  ['2001:db8::ff00:42:8329', 'ff00'],
  ['fe80::1ff:fe23:4567:890a', '4567'],
  ['2001:db8:0:0:1:0:0:1', ':1:0:0:1'],
  ['2001:db8::1', '::1'],
  ['::1', '::1'],
  ['2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff', 'cccc'],
  ['2001:db8:aaaa:bbbb:cccc:dddd:eeee::', 'cccc'],
  ['from 2001:db8:aaaa:bbbb::cccc.', 'cccc'],
  ['ips: 2001:db8:a:b::c, 2001:db8:d:e::f', 'd:e::f'],
  // IPv4-mapped / compatible
  ['::ffff:192.168.1.1', '1.1'],
  ['::FFFF:192.168.1.1', '1.1'],
  ['0:0:0:0:0:ffff:192.168.1.1', '1.1'],
  ['::ffff:c0a8:0101', 'c0a8:0101'],
  ['64:ff9b::192.0.2.33', '2.33'],
  ['addr ::ffff:10.9.8.7 end', '8.7'],
  // zones
  ['fe80::1234:5678%eth0', '5678'],
  ['fe80::1234:5678%25en0', '5678'],
  ['fe80::abcd:1%wlan0 dropped', 'abcd'],
  // brackets and ports
  ['[2001:db8::dead:beef]:8080', 'beef'],
  ['[2001:db8::dead:beef]', 'beef'],
  ['http://[2001:db8::dead:beef]:443/login', 'beef'],
  ['[::ffff:192.168.7.9]:80', '7.9'],
  ['[fe80::dead:1%eth0]:22', 'dead'],
  // e-mails
  ['username@company.com', 'company'],
  ['Bob.Builder+tag@Example.CO.UK', 'Example'],
  ['x@y.io', 'y.io'],
  ['first.last@sub.domain.example.org', 'domain'],
  ['"quoted" bob@corp.io,', 'corp'],
  ['<bob@corp.io>', 'corp'],
  ['mailto:bob@corp.io', 'corp'],
  ['BOB@CORP.IO', 'CORP'],
  ["o'neil@corp.io", 'corp'],
  ['user%relay@corp.io', 'corp'],
  ['jürgen@bücher.de', 'bücher'],
  ['a.b-c_d@e-f.example.com', 'e-f'],
  ['two: a@x.com b@y.org', 'y.org'],
  ['json {"email":"carol.secret@corp.io"}', 'carol.secret'],
  ['longlocalpart@corp.io', 'longlocal'],
];

describe('masking corpus (issue 11)', () => {
  it('has at least 50 hostile forms', () => {
    expect(CORPUS.length).toBeGreaterThanOrEqual(50);
  });

  for (const [input, hidden] of CORPUS) {
    it(`masks ${JSON.stringify(input)}`, () => {
      const out = maskText(input);
      expect(out, out).not.toContain(hidden);
      // The masked form is there: the tool kept a trace of the address, it did not just drop text.
      expect(out).toMatch(/xxx|\*\*\*/);
    });
  }

  it('masks the column forms of every notation', () => {
    expect(maskIp('::ffff:192.168.1.1')).toBe('::ffff:192.168.xxx.xxx');
    expect(maskIp('2401:4900:1c5a:2b3::17')).toBe('2401:4900:xxxx::');
    expect(maskIp('fe80::1%eth0')).toBe('fe80:0:xxxx::');
    expect(maskIp('[2001:db8::1]:8080')).toBe('[2001:db8:xxxx::]:8080');
    expect(maskIp('::1')).toBe('0:0:xxxx::');
    expect(maskIp('10.1.2.3/32')).toBe('10.1.xxx.xxx/32');
    expect(maskIp('not an address <!channel>')).toBe('xxx');
  });

  it('leaves what is not an address (times, versions, ratios)', () => {
    expect(maskText('at 12:34:56, v1.2.3, ratio 3:2, std::vector')).toBe('at 12:34:56, v1.2.3, ratio 3:2, std::vector');
  });

  it('keeps masked groups apart with a stable keyed tag of the full value', () => {
    const m = new Masker(true, 'signing-secret');
    const a = m.ipTagged('203.0.113.7');
    const b = m.ipTagged('203.0.200.9');
    expect(a).toMatch(/^203\.0\.xxx\.xxx ·[0-9a-f]{6}$/);
    expect(a).not.toBe(b);
    expect(m.ipTagged('203.0.113.7')).toBe(a);
    expect(new Masker(true, 'signing-secret').ipTagged('203.0.113.7')).toBe(a);
    // Keyed: another key gives another tag (a plain hash of 65,536 candidates would reveal the address).
    expect(new Masker(true, 'other').ipTagged('203.0.113.7')).not.toBe(a);
    expect(new Masker(false).ipTagged('203.0.113.7')).toBe('203.0.113.7');
  });
});

describe('secret scrubbing (issue 11)', () => {
  const SECRET = 'JBSWY3DPEHPK3PXP';
  it('hides secret keys at any depth, any case, in arrays and JSON strings, and says so', () => {
    const details = {
      password_hash: 'pbkdf2:sha256:600000$x$y',
      TOTP_SECRET: SECRET,
      Password_Reset_Token: SECRET,
      password_reset_token_expires: '2026-01-01',
      api_key: SECRET,
      user: { profile: { accessToken: SECRET, name: 'bob' } },
      list: [{ client_secret: SECRET }, [{ refresh_token: SECRET }]],
      raw: JSON.stringify({ totp_secret: SECRET, nested: { password: SECRET } }),
      note: `reset with token=${SECRET} and Authorization: Bearer ${SECRET}`,
      username: 'bob',
      passed_at: '2026-01-01',
    };
    const out = scrubSecrets(details);
    expect(JSON.stringify(out)).not.toContain(SECRET);
    expect(JSON.stringify(out)).not.toContain('pbkdf2');
    expect(out.password_hash).toBe(HIDDEN);
    expect(out.TOTP_SECRET).toBe(HIDDEN);
    expect(out.user.profile).toEqual({ accessToken: HIDDEN, name: 'bob' });
    expect(JSON.parse(out.raw)).toEqual({ totp_secret: HIDDEN, nested: { password: HIDDEN } });
    expect(out.username).toBe('bob');
    expect(out.passed_at).toBe('2026-01-01');
    expect(details.TOTP_SECRET).toBe(SECRET); // a copy: the row itself is not changed
  });

  it('scrubs details and both snapshots of a row', () => {
    const row = scrubAuditRow({ id: 1, details: { api_key: 'k' }, before_state: { totp_secret: 'a' }, after_state: { password_hash: 'b' } });
    expect(row).toEqual({ id: 1, details: { api_key: HIDDEN }, before_state: { totp_secret: HIDDEN }, after_state: { password_hash: HIDDEN } });
  });
});

describe('CSV cells (issue 11)', () => {
  const FORMULAS = [
    '=1+1', '+1', '-1', '@SUM(A1)', '\t=1', '\r=1', ' =1', '   +cmd', '\u00A0=1', '\u200B=1', '\u200D\u200B=HYPERLINK("x")',
    '\uFEFF=1', '\u202E=1', '＝1+1', '＋1', '－1', '＠A1', '\u3000=1',
  ];
  for (const f of FORMULAS) {
    it(`neutralises ${JSON.stringify(f)}`, () => {
      expect(looksLikeFormula(f)).toBe(true);
      expect(csvCell(f).replace(/^"/, '').startsWith("'")).toBe(true);
    });
  }
  it('leaves plain text and numbers alone, and quotes per RFC 4180', () => {
    expect(csvCell('bob')).toBe('bob');
    expect(csvCell(-5)).toBe('-5');
    expect(csvCell('a,"b"\nc')).toBe('"a,""b""\nc"');
    expect(csvCell({ a: 1 })).toBe('"{""a"":1}"');
  });
});
