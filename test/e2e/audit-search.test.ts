import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { LIMITS } from '../../src/slack/blocks.js';
import { buttonsOf, textOf } from '../../src/slack/sim/driver.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { createUser, linkSlack, snapshot, type TestUser } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';

let t: TestApp;
let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
let alice: TestUser;
let bob: TestUser;

const ago = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();

async function ins(r: {
  ts: string;
  user?: number | null;
  action: string;
  type?: string | null;
  id?: number | null;
  details?: Record<string, unknown> | null;
  ip?: string | null;
  before?: Record<string, unknown> | null;
  after?: Record<string, unknown> | null;
}) {
  await db.query(
    `INSERT INTO audit_log ("timestamp", user_id, action, entity_type, entity_id, details, ip_address, before_state, after_state)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [r.ts, r.user ?? null, r.action, r.type ?? null, r.id ?? null, r.details ? JSON.stringify(r.details) : null, r.ip ?? null,
      r.before ? JSON.stringify(r.before) : null, r.after ? JSON.stringify(r.after) : null],
  );
}

async function run(line: string, user = 'U_ALICE') {
  const reply = await t.driver.reply(await t.driver.command(user, line));
  return { reply, text: textOf(reply.args), buttons: buttonsOf(reply.args.blocks) };
}

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  bob = await createUser(db, { username: 'bob', email: 'bob.builder@example.com' });
  await createUser(db, { username: 'dave', role: 'dispatcher', area: 'indore' });
  // 25 failed logins for bob from one IP in the last hour, 2 for someone else.
  for (let i = 0; i < 25; i++) {
    await ins({ ts: ago(1 + i), action: 'login_failed', details: { username: 'bob', reason: 'bad_password' }, ip: '203.0.113.77' });
  }
  await ins({ ts: ago(30), action: 'login_failed', details: { username: 'mallory' }, ip: '198.51.100.9' });
  await ins({ ts: ago(31), action: 'login_failed', details: { username: 'mallory' }, ip: '198.51.100.9' });
  await ins({ ts: ago(40), user: bob.id, action: 'login_success', type: 'user', id: bob.id, ip: '203.0.113.78' });
  await ins({ ts: ago(41), user: bob.id, action: 'logout', ip: '203.0.113.78' });
  await ins({
    ts: ago(60 * 24),
    user: alice.id,
    action: 'role_change',
    type: 'user',
    id: bob.id,
    details: { actor: 'alice', note: 'contact bob.builder@example.com' },
    before: { role: 'dispatcher', dispatch_area: 'indore', email: 'bob.builder@example.com' },
    after: { role: 'biller', dispatch_area: null, email: 'bob.builder@example.com' },
  });
  await ins({ ts: ago(60 * 48), user: alice.id, action: 'user_deleted', type: 'user', id: 901, before: { username: 'ghost', email: 'ghost@example.com', role: 'biller' } });
  await ins({ ts: ago(60 * 72), user: null, action: 'delete_user', type: 'user', id: 902, details: { actor: 'zed' }, before: { username: 'phantom' } });
  await ins({ ts: ago(60 * 96), user: alice.id, action: 'delete_bag', type: 'bag', id: 12 });
  // Hostile details: a huge value and Slack markup that must not ping anyone.
  await ins({ ts: ago(60 * 24 * 10), action: 'login_failed', details: { username: '<!channel> hi', blob: 'x'.repeat(20_000) }, ip: '10.0.0.1' });
  t = await startTestApp({ db, store });
  await linkSlack(db, 'U_ALICE', alice.id);
  t.fake.addUser({ id: 'U_DAVE', name: 'dave', email: 'dave@example.com' });
});

afterAll(async () => {
  await t?.stop();
  await store?.close();
  await cleanup?.();
});

describe('/audit search', () => {
  it('answers a filter-first command with a count line and compact, masked rows', async () => {
    const { reply, text, buttons } = await run('/audit action:login_failed since:24h');
    expect(reply.args.response_type).toBe('ephemeral');
    expect(text).toMatch(/Audit entries\* · 27 entries match `action:login_failed` `since:\d{4}-\d\d-\d\d \d\d:\d\d`/);
    expect(text).toContain('`login_failed`');
    expect(text).toContain('203.0.xxx.xxx');
    expect(text).not.toContain('203.0.113.77');
    expect(text).toContain('username=bob');
    expect(text).not.toContain('mallory'); // on page 2 (20 a page, newest first)
    expect(buttons.map((b) => b.text)).toEqual(['Next (older) ▶', 'Export CSV']);
  });

  it('pages Next and Previous with the filters kept, updating the message in place', async () => {
    const first = await run('/audit action:login_failed since:24h');
    const older = first.buttons.find((b) => b.text.includes('Next'))!;
    const page2 = await t.driver.reply(await t.driver.click('U_ALICE', older));
    expect(page2.args.replace_original).toBe(true);
    const text2 = textOf(page2.args);
    expect(text2).toContain('27 entries match `action:login_failed`');
    expect(text2).toContain('username=mallory');
    expect(text2).not.toContain('login_success');
    expect((text2.match(/^• /gm) ?? []).length).toBe(7);
    const newer = buttonsOf(page2.args.blocks).find((b) => b.text.includes('Previous'))!;
    const back = await t.driver.reply(await t.driver.click('U_ALICE', newer));
    expect(textOf(back.args)).toBe(first.text);
  });

  it('runs with no filter, several actions, prefixes, users, IPs and entities', async () => {
    expect((await run('/audit')).text).toContain('34 entries (no filter)');
    expect((await run('/audit action:login_success action:logout')).text).toContain('2 entries match');
    expect((await run('/audit action:login_success,logout')).text).toContain('2 entries match');
    expect((await run('/audit action:login* since:7d')).text).toContain('28 entries match `action:login*`');
    // user: what bob did plus the rows naming him (his failed logins).
    expect((await run('/audit user:bob limit:50')).text).toContain('27 entries match `user:bob`');
    expect((await run('/audit ip:198.51.100.9')).text).toContain('2 entries match `ip:198.51.100.9`');
    expect((await run('/audit entity:user:bob')).text).toContain('2 entries match `entity:user:bob`');
    expect((await run('/audit entity:bag:12')).text).toContain('1 entry match');
    expect((await run('/audit action:user_deleted')).text).toContain('2 entries match');
  });

  it('says clearly when nothing matches, and which actions exist when the action is unknown', async () => {
    const none = await run('/audit action:logout since:2h until:1h');
    expect(none.text).toMatch(/nothing matches/);
    const typo = await run('/audit action:login_faild');
    expect(typo.text).toContain('No entry has `action:login_faild` at all');
    expect(typo.text).toContain('`login_failed`');
  });

  it('keeps every message within Block Kit limits, escapes markup, and truncates with a marker', async () => {
    const { reply, text } = await run('/audit limit:100 since:30d');
    const blocks = reply.args.blocks as any[];
    expect(blocks.length).toBeLessThanOrEqual(LIMITS.messageBlocks);
    for (const b of blocks) if (b.text?.text) expect(b.text.text.length).toBeLessThanOrEqual(LIMITS.sectionText);
    expect(text).toContain('&lt;!channel&gt;');
    expect(text).not.toContain('<!channel>');
    expect(text).toMatch(/blob=x+…/);
    expect(text.length).toBeLessThan(20_000);
  });

  it('explains bad input with the usage, and changes nothing', async () => {
    const before = await snapshot(db);
    const cases: [string, RegExp][] = [
      ['/audit since:yesterday', /`since:yesterday` is not a time/],
      ['/audit since:2025-02-30', /is not a time/],
      ['/audit since:1h until:2h', /`until:2h` is before `since:1h`/],
      ['/audit user:ghost', /No user named `ghost`/],
      ['/audit limit:0', /limit must be a number from 1 to 100/],
      ['/audit limit:abc', /limit must be a number from 1 to 100/],
      ['/audit colour:blue', /Unknown option `colour:`/],
      ['/audit frobnicate', /Unknown subcommand or filter `frobnicate`/],
      ['/audit action:"drop table"', /an action looks like/],
      ['/audit action:a action:b action:c action:d action:e action:f action:g action:h action:i action:j action:k', /At most 10/],
      ['/audit ip:not-an-ip', /ip must be an IPv4 or IPv6 address/],
      ['/audit entity:user:1:2', /use `entity:TYPE` or `entity:TYPE:ID`/],
      ["/audit entity:bag:x'", /the ID must be a number/],
      ['/audit user:"robert; drop"', /username may contain/],
      ['/audit history', /Missing A/],
      ['/audit history nobody', /No user named `nobody`/],
      ['/audit history bag abc', /The ID must be a number/],
      ['/audit timeline', /Missing USERNAME/],
      ['/audit failed-logins window:forever', /`window:forever` must be a duration from 1m to 30d/],
      ['/audit failed-logins min:0', /min must be a whole number/],
      ['/audit deletions since:soon', /`since:soon` is not a time/],
      ['/audit retention --force', /Unknown flag `--force`/],
      ['/audit export --unmasked limit:5', /`limit:` does not apply here/],
    ];
    for (const [line, expected] of cases) {
      const { text } = await run(line);
      expect(text, line).toMatch(expected);
      expect(text, line).toContain('Usage:');
      expect(text, line).not.toMatch(/at .*\.ts:\d+/);
    }
    expect(await snapshot(db)).toEqual(before);
  });
});

describe('/audit history, timeline, failed-logins, deletions', () => {
  it('history shows who changed what with before → after of the changed fields only, masked', async () => {
    const { text } = await run('/audit history bob');
    expect(text).toContain('History of bob (user ');
    expect(text).toContain('`role_change` by *alice*');
    expect(text).toContain('role: dispatcher → biller');
    expect(text).toContain('dispatch_area: indore → —');
    expect(text).not.toMatch(/email: /); // unchanged fields are not shown
    expect(text).toContain('note=contact bob.***@***.com');
    expect(text).not.toContain('bob.builder@example.com');
    expect((await run('/audit history user 901')).text).toContain('`user_deleted` by *alice*');
  });

  it('timeline lists what the user did (not rows merely naming them)', async () => {
    const { text } = await run('/audit timeline bob');
    expect(text).toContain('*Timeline of bob*'); // bold once (was `Timeline of *bob**`)
    expect(text).toContain('2 entries');
    expect(text).toContain('`login_success`');
    expect(text).toContain('`logout`');
    expect(text).not.toContain('login_failed');
  });

  it('failed-logins groups by IP and username over the window, biggest first, IPs masked', async () => {
    const { text } = await run('/audit failed-logins');
    expect(text).toContain('Failed logins in the last 1h* grouped by IP and username, at least 6 attempts: 1 group');
    expect(text).toMatch(/\*25\* attempts · 203\.0\.xxx\.xxx ·[0-9a-f]{6} · user \*bob\*/);
    expect(text).not.toContain('203.0.113.77');
    const all = await run('/audit failed-logins window:24h min:2');
    expect(all.text).toContain('2 groups');
    expect(all.text.indexOf('bob')).toBeLessThan(all.text.indexOf('mallory'));
    expect((await run('/audit failed-logins min:100')).text).toContain(': none.');
  });

  it('deletions shows user_deleted and delete_user alike, with what was deleted', async () => {
    const { text } = await run('/audit deletions');
    expect(text).toContain('3 entries');
    expect(text).toMatch(/\*alice\* deleted user 901 \(username=ghost email=ghos\*\*\*@\*\*\*\.com role=biller\) · `user_deleted`/);
    expect(text).toMatch(/\*zed\* _\(deleted\)_ deleted user 902 \(username=phantom\) · `delete_user`/);
    expect(text).toContain('deleted bag 12');
    expect(text).not.toContain('ghost@example.com');
  });
});

describe('/audit authorization and forged buttons', () => {
  it('refuses non-admins for every subcommand and button, and changes nothing', async () => {
    const before = await snapshot(db);
    for (const line of ['/audit', '/audit action:login_failed', '/audit history bob', '/audit export', '/audit retention --dry-run']) {
      expect((await run(line, 'U_DAVE')).text, line).toMatch(/Only admins can use `\/audit/);
    }
    const forged = await t.driver.reply(await t.driver.click('U_DAVE', { actionId: 'audit:page', value: JSON.stringify({ m: 's', q: {} }) }));
    expect(textOf(forged.args)).toContain('Only admins can use this button');
    const forgedExport = await t.driver.reply(await t.driver.click('U_DAVE', { actionId: 'audit:export', value: JSON.stringify({ q: {} }) }));
    expect(textOf(forgedExport.args)).toContain('Only admins can use this button');
    expect(await snapshot(db)).toEqual(before);
    expect(t.fake.callsTo('files.getUploadURLExternal')).toEqual([]);
  });

  it('rejects tampered paging values', async () => {
    for (const value of [
      '{"m":"s","q":{"a":["x; drop table audit_log"]}}',
      '{"m":"s","q":{},"a":["yesterday",1]}',
      '{"m":"s","q":{"evil":1}}',
      'not json',
    ]) {
      const reply = await t.driver.reply(await t.driver.click('U_ALICE', { actionId: 'audit:page', value }));
      expect(textOf(reply.args), value).toContain('not valid any more');
    }
  });
});

describe('paging against a fake that refuses what Slack refuses (issue 11)', () => {
  it('clicks Next through three pages and Previous back, every reply accepted', async () => {
    for (let i = 0; i < 45; i++) await ins({ ts: ago(5 + i), action: 'paging_probe', details: { n: i } });
    const seen: string[] = [];
    const first = await run('/audit action:paging_probe');
    expect(first.text).toContain('45 entries match');
    seen.push(first.text);
    let page = first.reply;
    for (const n of [2, 3]) {
      const next = buttonsOf(page.args.blocks).find((b) => b.text.includes('Next'))!;
      page = await t.driver.reply(await t.driver.click('U_ALICE', next));
      expect(page.method, `page ${n}`).toBe('response_url');
      expect(page.args.replace_original).toBe(true);
      const ids = buttonsOf(page.args.blocks).map((b) => b.actionId);
      seen.push(textOf(page.args));
      if (n === 2) expect(ids).toEqual(expect.arrayContaining(['audit:page', 'audit:page:prev']));
    }
    expect(seen[2]).toContain('n=4');
    expect(new Set(seen).size).toBe(3);
    // No Slack call was refused on the way.
    expect(t.fake.calls.filter((c) => c.method.endsWith('!invalid') || (c.result as any)?.error === 'invalid_blocks')).toEqual([]);
    const prev = buttonsOf(page.args.blocks).find((b) => b.text.includes('Previous'))!;
    const back = await t.driver.reply(await t.driver.click('U_ALICE', prev));
    expect(textOf(back.args)).toBe(seen[1]);
  });
});
