import { describe, expect, it } from 'vitest';
import { compactRow, describeQuery, detailsLine, historyEntry, parseFilters } from '../../commands/audit.js';
import { UserError } from '../../src/errors.js';
import { auditCsvLine, csvCell } from '../../src/services/audit-export.js';
import { diffSnapshots, isDeletionAction, parseTimeBound, withAliases, type AuditRow } from '../../src/services/audit-search.js';
import { Masker } from '../../src/services/masking.js';

const NOW = new Date('2025-11-25T10:30:00.000Z');
const USAGE = 'usage';
const masked = new Masker(true);
const clear = new Masker(false);

function row(over: Partial<AuditRow> = {}): AuditRow {
  return {
    id: 1,
    timestamp: new Date('2025-11-25T10:00:00.123Z'),
    ts_key: '2025-11-25T10:00:00.123456Z',
    user_id: 5,
    actor: 'alice',
    action: 'role_change',
    entity_type: 'user',
    entity_id: 7,
    details: null,
    ip_address: '192.168.1.20',
    before_state: null,
    after_state: null,
    ...over,
  };
}

describe('parseTimeBound', () => {
  it('reads durations back from now', () => {
    expect(parseTimeBound('24h', 'since', NOW).toISOString()).toBe('2025-11-24T10:30:00.000Z');
    expect(parseTimeBound('7d', 'since', NOW).toISOString()).toBe('2025-11-18T10:30:00.000Z');
    expect(parseTimeBound('30m', 'until', NOW).toISOString()).toBe('2025-11-25T10:00:00.000Z');
    expect(parseTimeBound('2w', 'since', NOW).toISOString()).toBe('2025-11-11T10:30:00.000Z');
  });

  it('reads dates and times in UTC; a bare until date covers that whole day', () => {
    expect(parseTimeBound('2025-11-01', 'since', NOW).toISOString()).toBe('2025-11-01T00:00:00.000Z');
    expect(parseTimeBound('2025-11-01', 'until', NOW).toISOString()).toBe('2025-11-02T00:00:00.000Z');
    expect(parseTimeBound('2025-11-01T10:15', 'until', NOW).toISOString()).toBe('2025-11-01T10:15:00.000Z');
    expect(parseTimeBound('2025-11-01T10:15:30Z', 'since', NOW).toISOString()).toBe('2025-11-01T10:15:30.000Z');
    expect(parseTimeBound('2025-11-01T10:15:30+05:30', 'since', NOW).toISOString()).toBe('2025-11-01T04:45:30.000Z');
  });

  it('refuses what is not a time', () => {
    for (const bad of ['yesterday', '2025-02-30', '2025-13-01', '2025-11-01T25:00', '24', 'h', '-1d', '99999d', '2025/11/01']) {
      expect(() => parseTimeBound(bad, 'since', NOW), bad).toThrow(UserError);
    }
  });
});

describe('parseFilters', () => {
  it('combines filters into an absolute, serialisable query', () => {
    const r = parseFilters(['action:login_failed,logout', 'action:login*', 'user:bob', 'entity:bag:12', 'ip:10.0.0.7', 'since:24h', 'limit:50'], { usage: USAGE }, NOW);
    expect(r).toEqual({
      q: { a: ['login_failed', 'logout', 'login*'], u: 'bob', e: 'bag', ei: 12, ip: '10.0.0.7', s: '2025-11-24T10:30:00.000Z' },
      entityUser: undefined,
      limit: 50,
      unmasked: undefined,
    });
    expect(parseFilters([], { usage: USAGE }, NOW)).toMatchObject({ q: {}, limit: 20 });
    expect(parseFilters(['entity:user:bob'], { usage: USAGE }, NOW)).toMatchObject({ q: { e: 'user' }, entityUser: 'bob' });
    expect(parseFilters(['--unmasked'], { usage: USAGE, allowUnmasked: true }, NOW).unmasked).toBe(true);
  });

  it('refuses bad filters with the usage attached', () => {
    const cases: [string[], RegExp][] = [
      [['since:1h', 'until:2h'], /`until:2h` is before `since:1h`/],
      [['since:never'], /is not a time/],
      [['frobnicate'], /Unknown subcommand or filter/],
      [['action:DROP', 'TABLE'], /Unknown subcommand or filter `TABLE`/],
      [['action:a;b'], /an action looks like/],
      [['action:lo*gin'], /an action looks like/],
      [['ip:1.2.3.4;', '--'], /Unknown subcommand or filter `--`/],
      [['ip:localhost'], /ip must be/],
      [['entity:Bag'], /entity:TYPE/],
      [['entity:bag:-1'], /the ID must be a number/],
      [['entity:bag:99999999999'], /the ID must be a number/],
      [['limit:101'], /limit must be a number from 1 to 100/],
      [['--unmasked'], /Unknown flag `--unmasked`/],
      [['user:a'], /username must be 3–64/],
    ];
    for (const [words, expected] of cases) {
      try {
        parseFilters(words, { usage: USAGE }, NOW);
        expect.unreachable(words.join(' '));
      } catch (e) {
        expect(e, words.join(' ')).toBeInstanceOf(UserError);
        expect((e as UserError).message, words.join(' ')).toMatch(expected);
        expect((e as UserError).usage, words.join(' ')).toBe(USAGE);
      }
    }
  });

  it('describes queries with absolute times', () => {
    expect(String(describeQuery({ a: ['login*'], u: 'bob', s: '2025-11-24T10:30:00.000Z' }))).toBe('`action:login*` `user:bob` `since:2025-11-24 10:30`');
    expect(String(describeQuery({}))).toBe('no filter');
  });
});

describe('actions', () => {
  it('treats user_deleted and delete_user as one action', () => {
    expect(withAliases(['user_deleted']).sort()).toEqual(['delete_user', 'user_deleted']);
    expect(withAliases(['delete_user', 'logout']).sort()).toEqual(['delete_user', 'logout', 'user_deleted']);
    expect(withAliases(['logout'])).toEqual(['logout']);
  });

  it('knows deletions', () => {
    expect(['delete_bag', 'delete_user', 'user_deleted', 'link_deleted'].every(isDeletionAction)).toBe(true);
    expect(['login_failed', 'deleted', 'undelete'].some(isDeletionAction)).toBe(false);
  });
});

describe('rendering', () => {
  it('diffs only the fields that changed', () => {
    expect(
      diffSnapshots({ role: 'dispatcher', dispatch_area: 'indore', email: 'a@b.co' }, { role: 'biller', dispatch_area: null, email: 'a@b.co' }),
    ).toEqual([
      { field: 'dispatch_area', before: 'indore', after: null },
      { field: 'role', before: 'dispatcher', after: 'biller' },
    ]);
    expect(diffSnapshots(null, { role: 'admin' })).toEqual([{ field: 'role', before: null, after: 'admin' }]);
  });

  it('renders a history entry with masked values and escaped markup', () => {
    const text = String(historyEntry(
      row({
        before_state: { role: 'dispatcher', email: 'old.person@example.com' },
        after_state: { role: 'admin', email: 'new.person@example.com' },
        details: { note: '<!here> see 10.1.2.3' },
      }),
      masked,
    ));
    expect(text).toContain('`role_change` by *alice* from 192.168.xxx.xxx');
    expect(text).toContain('email: old.***@***.com → new.***@***.com');
    expect(text).toContain('role: dispatcher → admin');
    expect(text).toContain('note=&lt;!here&gt; see 10.1.xxx.xxx');
    expect(String(historyEntry(row({ before_state: { role: 'x' }, after_state: { role: 'x' } }), masked))).toContain('_no field changed_');
  });

  it('keeps compact rows short whatever the details', () => {
    const line = String(compactRow(row({ details: { username: 'bob', blob: 'y'.repeat(10_000), via: 'warden', slack_team: 'T1' } }), masked));
    expect(line.length).toBeLessThan(400);
    expect(line).toContain('username=bob');
    expect(line).not.toContain('via=');
    expect(line).toMatch(/…$/);
    expect(String(detailsLine({ email: 'carol@example.com' }, masked))).toBe('email=caro***@***.com');
    expect(String(detailsLine({ email: 'carol@example.com' }, clear))).toBe('email=carol@example.com');
    expect(String(compactRow(row({ actor: null, user_id: null, details: { actor: 'zed' } }), masked))).toContain('*zed* _(deleted)_');
  });

  it('writes RFC 4180 CSV and neutralises formulas', () => {
    expect(csvCell('plain')).toBe('plain');
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('say "hi"\nbye')).toBe('"say ""hi""\nbye"');
    expect(csvCell('=1+1')).toBe("'=1+1");
    expect(csvCell('@SUM(A1)')).toBe("'@SUM(A1)");
    expect(csvCell(-5)).toBe('-5');
    expect(csvCell(null)).toBe('');
    const line = auditCsvLine(row({ details: { email: 'dan@example.com', ip: '10.9.8.7' } }), masked);
    expect(line).toBe(
      '1,2025-11-25T10:00:00.123Z,alice,5,role_change,user,7,192.168.xxx.xxx,"{""email"":""da***@***.com"",""ip"":""10.9.xxx.xxx""}",,\r\n',
    );
    expect(auditCsvLine(row({ details: { email: 'dan@example.com' } }), clear)).toContain('dan@example.com');
  });
});
