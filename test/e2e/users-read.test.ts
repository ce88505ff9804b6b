import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { buttonsOf, textOf } from '../../src/slack/sim/driver.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { createUser, linkSlack, snapshot } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';

let t: TestApp;
let db: Db;
let store: Store;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  const admin = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  await createUser(db, { username: 'dave', role: 'dispatcher', area: 'indore' });
  await createUser(db, { username: 'lockedlarry', role: 'biller', area: null, lockedMinutes: 30, failed: 5 });
  for (let i = 0; i < 25; i++) await createUser(db, { username: `billy${String(i).padStart(2, '0')}`, role: 'biller', area: null });
  t = await startTestApp({ db, store });
  await linkSlack(db, 'U_ALICE', admin.id);
  // dave is linked by his Slack profile e-mail, not explicitly.
  t.fake.addUser({ id: 'U_DAVE', name: 'dave', email: 'DAVE@example.com' });
  t.fake.addUser({ id: 'U_NOBODY', name: 'nobody', email: 'nobody@elsewhere.org' });
});

afterAll(async () => {
  await t?.stop();
  await store?.close();
  await cleanup?.();
});

describe('/users list and show over signed HTTP', () => {
  it('lists admins for an admin', async () => {
    const i = await t.driver.command('U_ALICE', '/users list role:admin');
    expect(i.answer.status).toBe(200);
    const reply = await t.driver.reply(i);
    expect(reply.args.response_type).toBe('ephemeral');
    const text = textOf(reply.args);
    expect(text).toContain('1 user* matches `role:admin`');
    expect(text).toContain('*alice*');
    expect(text).not.toContain('dave');
  });

  it('pages with Next and Previous buttons that keep the filter', async () => {
    const i = await t.driver.command('U_ALICE', '/users list role:biller');
    const first = await t.driver.reply(i);
    expect(textOf(first.args)).toContain('26 users* match `role:biller`');
    expect(textOf(first.args)).toContain('billy00');
    const [next] = buttonsOf(first.args.blocks);
    expect(next.text).toContain('Next');
    const click = await t.driver.click('U_ALICE', { actionId: next.actionId, value: next.value });
    const second = await t.driver.reply(click);
    expect(second.args.replace_original).toBe(true);
    const text2 = textOf(second.args);
    expect(text2).toContain('lockedlarry');
    expect(text2).not.toContain('billy00');
    const prev = buttonsOf(second.args.blocks).find((b) => b.text.includes('Previous'))!;
    const back = await t.driver.reply(await t.driver.click('U_ALICE', { actionId: prev.actionId, value: prev.value }));
    expect(textOf(back.args)).toContain('billy00');
  });

  it('shows one account with lock state, failed attempts and an Unlock button', async () => {
    const reply = await t.driver.reply(await t.driver.command('U_ALICE', '/users show lockedlarry'));
    const text = textOf(reply.args);
    expect(text).toContain('lockedlarry');
    expect(text).toContain(':lock: locked until');
    expect(text).toMatch(/Failed attempts\*\n5/);
    expect(text).toContain('lock***@***.com'); // e-mail masked by default
    expect(buttonsOf(reply.args.blocks).map((b) => b.text)).toContain('Unlock');
  });

  it('answers help without needing an account', async () => {
    const reply = await t.driver.reply(await t.driver.command('U_NOBODY', '/users help'));
    expect(textOf(reply.args)).toContain('/users list');
  });

  it('explains bad input with the usage and never a stack trace', async () => {
    const cases: [string, RegExp][] = [
      ['/users list role:superuser', /role must be one of admin, biller, dispatcher/],
      ['/users list colour:blue', /Unknown option `colour:`/],
      ['/users list status:sleeping', /status must be active or locked/],
      ['/users show', /Missing USERNAME/],
      ['/users show ghost', /No user named `ghost`/],
      ['/users show "two words"', /no spaces/],
      ['/users frobnicate', /Unknown subcommand `frobnicate`/],
    ];
    for (const [line, expected] of cases) {
      const reply = await t.driver.reply(await t.driver.command('U_ALICE', line));
      const text = textOf(reply.args);
      expect(text, line).toMatch(expected);
      expect(text, line).not.toMatch(/at .*\.ts:\d+/);
    }
  });

  it('refuses non-admins and unlinked Slack users', async () => {
    const before = await snapshot(db);
    const dave = await t.driver.reply(await t.driver.command('U_DAVE', '/users list'));
    expect(textOf(dave.args)).toContain('Only admins can use `/users list`');
    const nobody = await t.driver.reply(await t.driver.command('U_NOBODY', '/users list'));
    expect(textOf(nobody.args)).toContain('not linked to an application account');
    // A non-admin forging a paging click gets refused too.
    const forged = await t.driver.reply(
      await t.driver.click('U_DAVE', { actionId: 'users:page', value: JSON.stringify({ f: { role: 'admin' } }) }),
    );
    expect(textOf(forged.args)).toContain('Only admins can use this button');
    expect(await snapshot(db, ['"user"', 'audit_log'])).toEqual({ '"user"': before['"user"'], audit_log: before.audit_log });
  });

  it('rejects a tampered paging button', async () => {
    const reply = await t.driver.reply(
      await t.driver.click('U_ALICE', { actionId: 'users:page', value: '{"f":{"role":"root"}}' }),
    );
    expect(textOf(reply.args)).toContain('not valid any more');
  });
});

describe('request signing', () => {
  // Signatures are HTTP's; over Socket Mode (WARDEN_TEST_TRANSPORT=socket) there are none to forge.
  it.skipIf(process.env.WARDEN_TEST_TRANSPORT === 'socket')('refuses unsigned, badly signed and stale requests with 401 and runs nothing', async () => {
    const body = t.driver.commandBody('U_ALICE', '/users list');
    const before = t.fake.calls.length;
    expect((await t.driver.post(body, {})).status).toBe(401);
    const bad = t.driver.sign(body);
    bad['x-slack-signature'] = bad['x-slack-signature'].replace(/.$/, (c) => (c === '0' ? '1' : '0'));
    expect((await t.driver.post(body, bad)).status).toBe(401);
    const stale = t.driver.sign(body, Math.floor(Date.now() / 1000) - 6 * 60);
    expect((await t.driver.post(body, stale)).status).toBe(401);
    await new Promise((r) => setTimeout(r, 200));
    expect(t.fake.calls.slice(before).filter((c) => c.method === 'response_url')).toEqual([]);
  });

  it('serves /healthz and /readyz', async () => {
    const h = await fetch(`${t.url}/healthz`);
    expect(h.status).toBe(200);
    const r = await fetch(`${t.url}/readyz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ status: 'ready', checks: { database: { ok: true }, migrations: { ok: true }, store: { ok: true } } });
  });
});

describe('usernames typed in another case', () => {
  it('find the account, with an exact match winning over a case variant', async () => {
    const reply = await t.driver.reply(await t.driver.command('U_ALICE', '/users show LockedLarry'));
    expect(textOf(reply.args)).toContain('lockedlarry');
    expect(textOf(reply.args)).toContain(':lock: locked until');
    await createUser(db, { username: 'Casey', role: 'biller', area: null, email: 'casey1@example.com' });
    await createUser(db, { username: 'casey', role: 'dispatcher', area: 'indore', email: 'casey2@example.com' });
    const exact = await t.driver.reply(await t.driver.command('U_ALICE', '/users show Casey'));
    expect(textOf(exact.args)).toMatch(/Role\*\nbiller/);
    const ambiguous = await t.driver.reply(await t.driver.command('U_ALICE', '/users show CASEY'));
    expect(textOf(ambiguous.args)).toContain('matches several accounts that differ only in upper/lower case');
  });
});

describe('paging against a fake that refuses what Slack refuses (issue 11)', () => {
  it('clicks Next through three pages and Previous back, every reply accepted', async () => {
    for (let i = 0; i < 45; i++) await createUser(db, { username: `pager${String(i).padStart(2, '0')}`, role: 'dispatcher', area: 'paging' });
    const first = await t.driver.reply(await t.driver.command('U_ALICE', '/users list area:paging'));
    const pages = [textOf(first.args)];
    expect(pages[0]).toContain('45 users* match');
    let page = first;
    for (const n of [2, 3]) {
      const next = buttonsOf(page.args.blocks).find((b) => b.text.includes('Next'))!;
      page = await t.driver.reply(await t.driver.click('U_ALICE', { actionId: next.actionId, value: next.value }));
      expect(page.method, `page ${n}`).toBe('response_url');
      pages.push(textOf(page.args));
    }
    expect(pages[1]).toContain('pager20');
    expect(pages[2]).toContain('pager44');
    expect(pages[2]).not.toContain('pager39');
    expect(t.fake.calls.filter((c) => c.method.endsWith('!invalid'))).toEqual([]);
    const prev = buttonsOf(page.args.blocks).find((b) => b.text.includes('Previous'))!;
    const back = await t.driver.reply(await t.driver.click('U_ALICE', { actionId: prev.actionId, value: prev.value }));
    expect(textOf(back.args)).toBe(pages[1]);
  });
});
