import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { verifyPassword } from '../../src/services/passwords.js';
import { buttonsOf, textOf } from '../../src/slack/sim/driver.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, linkSlack, snapshot, type TestUser, withoutStepUpFailures } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';
import { MailApi, StepUpCodes } from './users-support.js';

/**
 * /users create, edit, role, unlock, link over signed HTTP (issue 3), with every bad and
 * hostile input of the issue: each answered clearly, each leaving the database unchanged.
 */

let t: TestApp;
let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
const mail = new MailApi();
const codes = new StepUpCodes(() => store);
let alice: TestUser; // admin with 2FA
let amir: TestUser; // admin with 2FA
let ada: TestUser; // admin with 2FA, used for wrong codes
let dave: TestUser; // dispatcher, linked: the non-admin
let ari: TestUser; // admin with 2FA

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  await mail.start();
  alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  amir = await createUser(db, { username: 'amir', role: 'admin', twoFa: true, area: null });
  ada = await createUser(db, { username: 'ada', role: 'admin', twoFa: true, area: null });
  ari = await createUser(db, { username: 'ari', role: 'admin', twoFa: true, area: null });
  const abe = await createUser(db, { username: 'abe', role: 'admin', area: null }); // admin without 2FA
  dave = await createUser(db, { username: 'dave', role: 'dispatcher', area: 'Lucknow' });
  await createUser(db, { username: 'bill', role: 'biller', area: null, email: 'Bill.Payer@Example.com' });
  await createUser(db, { username: 'nina', role: 'biller', area: null });
  await createUser(db, { username: 'otto', role: 'biller', area: null });
  await createUser(db, { username: 'carl', role: 'biller', area: null });
  await createUser(db, { username: 'larry', role: 'biller', area: null, lockedMinutes: 25, failed: 5 });
  await createUser(db, { username: 'lena', role: 'biller', area: null, lockedMinutes: 25, failed: 5 });
  for (const [i, ip] of ['203.0.113.7', '203.0.113.8', '198.51.100.23'].entries()) {
    await db.query(
      `INSERT INTO audit_log (timestamp, action, details, ip_address)
       VALUES (now() - make_interval(mins => $1::int), 'login_failed', $2, $3)`,
      [5 + i, JSON.stringify({ username: 'larry', reason: 'bad password' }), ip],
    );
  }
  t = await startTestApp({
    db,
    store,
    env: {
      EMAIL_API_URL: mail.url,
      EMAIL_API_KEY: 'SG.test-key',
      EMAIL_FROM: 'warden@example.com',
      EMAIL_TIMEOUT_MS: '500',
      PASSWORD_RESET_URL: 'https://app.example.com/reset/',
    },
  });
  await linkSlack(db, 'U_ALICE', alice.id);
  await linkSlack(db, 'U_AMIR', amir.id);
  await linkSlack(db, 'U_ADA', ada.id);
  await linkSlack(db, 'U_DAVE', dave.id);
  await linkSlack(db, 'U_ABE', abe.id);
  await linkSlack(db, 'U_ARI', ari.id);
  t.fake.addUser({ id: 'U_CARL', name: 'carl', email: 'carl.personal@elsewhere.org' });
});

afterAll(async () => {
  await t?.stop();
  await mail.stop();
  await store?.close();
  await cleanup?.();
});

/** Everything a /users operation could touch. */
async function state() {
  return {
    ...(await snapshot(db)),
    links: (await db.query('SELECT * FROM warden_slack_link ORDER BY slack_team_id, slack_user_id')).rows,
  };
}

async function run(user: string, line: string) {
  const i = await t.driver.command(user, line);
  const reply = await t.driver.reply(i);
  const view = reply.method === 'views.open' ? reply.args.view : undefined;
  return { i, reply, text: textOf(view ?? reply.args), view };
}

async function userRow(username: string) {
  return (await db.query<any>('SELECT * FROM "user" WHERE username = $1', [username])).rows[0];
}

/** The ephemeral notice posted to the command's response_url after a modal closed. */
function notice(i: { responseId: string }, since: number) {
  return t.fake.waitFor((c) => c.method === 'response_url' && c.responseId === i.responseId, 10_000, since);
}

function expectSlackDetails(row: any, slackUser: string) {
  expect(row.details).toMatchObject({ via: 'warden', slack_user: slackUser, slack_team: 'T_WARDEN', slack_channel: 'C_ADMIN' });
}

function expectNoSecrets(snap: unknown) {
  const text = JSON.stringify(snap ?? {});
  for (const k of ['password_hash', 'totp_secret', 'password_reset_token']) expect(text).not.toContain(k);
}

describe('/users create', () => {
  it('creates a dispatcher inline and e-mails a set-password link, never shown in Slack', async () => {
    const before = mail.requests.length;
    const { text, reply } = await run('U_ALICE', '/users create dora Dora@Example.org dispatcher area:lucknow');
    expect(text).toContain('Created *dora* (dispatcher, Lucknow');
    expect(text).toContain('Dor***@***.org');
    expect(text).toContain('valid 1 hour');
    expect(reply.args.response_type).toBe('ephemeral');
    const row = await userRow('dora');
    expect(row).toMatchObject({ role: 'dispatcher', dispatch_area: 'Lucknow', email: 'Dora@Example.org', two_fa_enabled: false });
    expect(row.password_hash).toMatch(/^pbkdf2:sha256:600000\$[A-Za-z0-9]{16}\$[0-9a-f]{64}$/);
    expect(row.password_reset_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const ttl = new Date(row.password_reset_token_expires).getTime() - Date.now();
    expect(ttl).toBeGreaterThan(58 * 60_000);
    expect(ttl).toBeLessThanOrEqual(60 * 60_000);
    // The mail went out with the link; Slack never saw it.
    expect(mail.requests.length).toBe(before + 1);
    expect(mail.requests.at(-1)!.body.personalizations[0].to[0].email).toBe('Dora@Example.org');
    expect(mail.lastLink()).toBe(`https://app.example.com/reset/${row.password_reset_token}`);
    expect(JSON.stringify(t.fake.calls)).not.toContain(row.password_reset_token);
    const [audit] = (await auditRows(db, 'user_created')).filter((r: any) => r.entity_id === row.id);
    expect(audit).toMatchObject({ user_id: alice.id, entity_type: 'user', before_state: null });
    expect(audit.after_state).toMatchObject({ username: 'dora', role: 'dispatcher', dispatch_area: 'Lucknow' });
    expectNoSecrets(audit.after_state);
    expectSlackDetails(audit, 'U_ALICE');
  });

  it('opens a form without arguments; a temporary password is shown once, in the modal, to the admin only', async () => {
    const { view, i } = await run('U_ALICE', '/users create');
    expect(view.callback_id).toBe('users:create');
    expect(view.blocks.filter((b: any) => b.type === 'input').map((b: any) => b.block_id)).toEqual([
      'username',
      'email',
      'role',
      'area',
      'password',
      'totp',
    ]);
    const snap = await state();
    // A temporary password needs step-up: no code → the totp field says so, nothing is created.
    const noCode = await t.driver.submit('U_ALICE', view, { username: 'tess', email: 'tess@example.com', role: 'biller', password: 'temp' });
    expect(noCode.ack.response_action).toBe('errors');
    expect(noCode.ack.errors.totp).toContain('6-digit code');
    expect(await state()).toEqual(snap);

    const sub = await t.driver.submit('U_ALICE', view, {
      username: 'tess',
      email: 'tess@example.com',
      role: 'biller',
      password: 'temp',
      totp: await codes.of(alice),
    });
    expect(sub.ack.response_action).toBe('update');
    const shown = textOf(sub.ack.view);
    const password = /```(.+?)```/s.exec(shown)![1];
    expect(password).toHaveLength(16);
    expect(shown).toContain('shown once, only to you');
    const row = await userRow('tess');
    expect(await verifyPassword(password, row.password_hash)).toBe(true);
    expect(row.password_reset_token).toBeNull();
    // Nowhere else: not in any Slack call, not in the audit log.
    await new Promise((r) => setTimeout(r, 100));
    expect(JSON.stringify(t.fake.calls.slice(i.since))).not.toContain(password);
    const audit = (await auditRows(db, 'user_created')).find((r: any) => r.entity_id === row.id);
    expect(audit.details.password_setup).toBe('temp');
    expect(JSON.stringify(audit)).not.toContain(password);
  });

  it('an admin account asks for step-up first, and records a 2FA reminder for the new admin', async () => {
    const { view, text } = await run('U_ALICE', '/users create adminna adminna@example.com admin');
    expect(text).toContain('needs your 2FA code');
    const initial = Object.fromEntries(
      view.blocks.filter((b: any) => b.type === 'input').map((b: any) => [b.block_id, b.element.initial_value ?? b.element.initial_option?.value]),
    );
    expect(initial).toMatchObject({ username: 'adminna', email: 'adminna@example.com', role: 'admin', password: 'link' });
    const snap = await state();
    const wrong = await t.driver.submit('U_ADA', view, { ...initial, totp: '12345' });
    expect(wrong.ack.errors.totp).toContain('6-digit code');
    expect(await state()).toEqual(snap);
    const ok = await t.driver.submit('U_AMIR', view, { ...initial, totp: await codes.of(amir) });
    // Ack first: the account exists; the set-password link is mailed after the answer (issue 12).
    expect(ok.ack.response_action).toBe('update');
    expect(textOf((await t.driver.viewUpdate(ok.viewId)).args.view)).toMatch(/A set-password link was e-mailed/);
    const row = await userRow('adminna');
    expect(row.role).toBe('admin');
    const reminders = (await db.query<any>('SELECT * FROM notification WHERE user_id = $1', [row.id])).rows;
    expect(reminders).toHaveLength(1);
    expect(reminders[0].title).toBe('Enable two-factor authentication');
  });

  it('answers every bad input with a clear message and leaves the database unchanged', async () => {
    const cases: [string, RegExp][] = [
      ['/users create dave dave2@example.com biller', /username `dave` is taken/],
      ['/users create DAVE dave2@example.com biller', /username is taken: `dave` exists/],
      ['/users create billy bill.payer@example.COM biller', /already uses this e-mail address/],
      ['/users create bo bo@example.com biller', /3–64 characters/],
      [`/users create ${'x'.repeat(65)} long@example.com biller`, /3–64 characters/],
      ['/users create "two words" tw@example.com biller', /no spaces/],
      ['/users create eve not-an-email biller', /not a valid e-mail address/],
      ['/users create eve eve@example.com superuser', /role must be admin, biller or dispatcher/],
      ['/users create eve eve@example.com biller area:indore', /Only dispatchers have a dispatch area/],
      ['/users create eve eve@example.com dispatcher', /A dispatcher needs a dispatch area/],
      ['/users create eve eve@example.com', /Missing ROLE/],
      ['/users create eve eve@example.com biller password:pigeon', /password must be link or temp/],
      ['/users create eve eve@example.com biller colour:red', /Unknown option `colour:`/],
    ];
    const snap = await state();
    const mails = mail.requests.length;
    for (const [line, expected] of cases) {
      const { text } = await run('U_ALICE', line);
      expect(text, line).toMatch(expected);
      expect(text, line).not.toMatch(/at .*\.ts:\d+/);
    }
    expect(await state()).toEqual(snap);
    expect(mail.requests.length).toBe(mails);
  });

  it('puts form errors on the right fields', async () => {
    const { view } = await run('U_ALICE', '/users create');
    const snap = await state();
    const sub = await t.driver.submit('U_ALICE', view, {
      username: 'Dave',
      email: 'BILL.PAYER@example.com',
      role: 'biller',
      area: 'indore',
      password: 'link',
    });
    expect(sub.ack.response_action).toBe('errors');
    expect(sub.ack.errors).toEqual({
      username: expect.stringContaining('taken'),
      email: expect.stringContaining('already uses this e-mail'),
      area: expect.stringContaining('Only dispatchers'),
    });
    const sub2 = await t.driver.submit('U_ALICE', view, { username: 'ok-name', email: 'x@', role: 'dispatcher', password: 'link' });
    expect(sub2.ack.errors).toEqual({ email: expect.stringContaining('not a valid'), area: expect.stringContaining('needs a dispatch area') });
    expect(await state()).toEqual(snap);
  });

  it('a Slack retry of the same submission creates the account once', async () => {
    const { view } = await run('U_ALICE', '/users create');
    const bodies: string[] = [];
    const original = t.driver.postSigned.bind(t.driver);
    t.driver.postSigned = async (body, headers) => {
      bodies.push(body);
      return original(body, headers);
    };
    try {
      const first = await t.driver.submit('U_ALICE', view, { username: 'rita', email: 'rita@example.com', role: 'biller', password: 'link' });
      expect(first.ack.response_action).toBe('update');
      await t.driver.viewUpdate(first.viewId);
    } finally {
      t.driver.postSigned = original;
    }
    const snap = await state();
    const retry = await t.driver.postSigned(bodies[0], { 'x-slack-retry-num': '1', 'x-slack-retry-reason': 'http_timeout' });
    expect(retry.status).toBe(200);
    await new Promise((r) => setTimeout(r, 200));
    expect(await state()).toEqual(snap);
    const rita = await userRow('rita');
    expect((await auditRows(db, 'user_created')).filter((r: any) => r.entity_id === rita.id)).toHaveLength(1);
  });
});

describe('/users edit and role', () => {
  it('edit opens a pre-filled form; saving writes one user_updated row; disabled is a lock that never runs out', async () => {
    const { view, i } = await run('U_ALICE', '/users edit otto');
    expect(view.callback_id).toBe('users:edit');
    const input = (id: string) => view.blocks.find((b: any) => b.block_id === id).element;
    expect(input('email').initial_value).toBe('otto@example.com');
    expect(input('role').initial_option.value).toBe('biller');
    expect(input('status').initial_option.value).toBe('active');
    const since = t.fake.calls.length;
    // An e-mail change is an identity change: it needs the admin's 2FA code.
    const noCode = await t.driver.submit('U_ALICE', view, { email: 'Otto.New@example.com', role: 'biller', area: '', status: 'disabled' });
    expect(noCode.ack.errors.totp).toContain('6-digit code');
    expect((await userRow('otto')).email).toBe('otto@example.com');
    const sub = await t.driver.submit('U_ALICE', view, {
      email: 'Otto.New@example.com',
      role: 'biller',
      area: '',
      status: 'disabled',
      totp: await codes.of(alice),
    });
    expect(sub.ack).toBeNull();
    expect(textOf((await notice(i, since)).args)).toMatch(/Updated \*otto\*: e-mail → Otto\*\*\*@\*\*\*\.com; status active → disabled/);
    const row = await userRow('otto');
    expect(row.email).toBe('Otto.New@example.com');
    expect(new Date(row.locked_until).getUTCFullYear()).toBe(9999);
    const audits = (await auditRows(db)).filter((r: any) => r.entity_id === row.id);
    expect(audits.map((a: any) => a.action)).toEqual(['user_updated']);
    expect(audits[0].before_state.email).toBe('otto@example.com');
    expect(audits[0].after_state.email).toBe('Otto.New@example.com');
    expect(audits[0].details.changed).toEqual(['email', 'status']);
    expectNoSecrets(audits[0].before_state);
    // The old address was told, with both addresses masked.
    const told = mail.requests.map((r) => JSON.stringify(r.body)).find((b) => b.includes('Your account e-mail was changed'))!;
    expect(told).toContain('"email":"otto@example.com"');
    expect(told).toContain('changed by the administrator alice');
    expect(told).not.toContain('Otto.New@example.com');
    const shown = await run('U_ALICE', '/users show otto');
    expect(shown.text).toContain(':no_entry: disabled');
  });

  it('dispatcher → biller clears the area; biller → dispatcher needs one; one role_change row each', async () => {
    const toBiller = await run('U_ALICE', '/users role dave biller');
    expect(toBiller.text).toContain('role dispatcher → biller; dispatch area Lucknow → —');
    let row = await userRow('dave');
    expect(row).toMatchObject({ role: 'biller', dispatch_area: null });
    const snap = await state();
    expect((await run('U_ALICE', '/users role dave dispatcher')).text).toContain('A dispatcher needs a dispatch area');
    expect((await run('U_ALICE', '/users role dave biller area:indore')).text).toContain('Only dispatchers have a dispatch area');
    expect((await run('U_ALICE', '/users role dave biller')).text).toContain('Nothing to change');
    expect((await run('U_ALICE', '/users role dave overlord')).text).toContain('role must be one of admin, biller, dispatcher');
    expect((await run('U_ALICE', '/users role ghost biller')).text).toContain('No user named `ghost`');
    expect(await state()).toEqual(snap);
    const back = await run('U_ALICE', '/users role dave dispatcher area:LUCKNOW');
    expect(back.text).toContain('role biller → dispatcher');
    row = await userRow('dave');
    expect(row).toMatchObject({ role: 'dispatcher', dispatch_area: 'Lucknow' }); // the existing spelling
    const changes = (await auditRows(db, 'role_change')).filter((r: any) => r.entity_id === dave.id);
    expect(changes).toHaveLength(2);
    expect(changes[0].before_state).toMatchObject({ role: 'dispatcher', dispatch_area: 'Lucknow' });
    expect(changes[0].after_state).toMatchObject({ role: 'biller', dispatch_area: null });
    expectSlackDetails(changes[0], 'U_ALICE');
  });

  it('to admin needs step-up, warns about missing 2FA and records a reminder; wrong, expired and replayed codes change nothing', async () => {
    const { view, text } = await run('U_ALICE', '/users role nina admin');
    expect(view.callback_id).toBe('users:role');
    expect(text).toContain('biller → admin');
    expect(text).toContain('nina has no 2FA');
    const snap = await state();
    const values = { role: 'admin', area: '' };
    const wrongCode = String((Number(await codes.of(ada)) + 1) % 1_000_000).padStart(6, '0');
    const wrong = await t.driver.submit('U_ADA', view, { ...values, totp: wrongCode });
    expect(wrong.ack.errors.totp).toContain('not valid');
    const expired = await t.driver.submit('U_ADA', view, { ...values, totp: await codes.expired(ada) });
    expect(expired.ack.errors.totp).toContain('not valid');
    const noTwoFa = await t.driver.submit('U_ABE', view, { ...values, totp: '123456' });
    expect(noTwoFa.ack.errors.totp).toContain('Enrol in the application first');
    expect(withoutStepUpFailures(await state())).toEqual(withoutStepUpFailures(snap));

    const code = await codes.of(alice);
    const ok = await t.driver.submit('U_ALICE', view, { ...values, totp: code });
    expect(ok.ack).toBeNull();
    expect((await userRow('nina')).role).toBe('admin');
    const nina = await userRow('nina');
    const reminders = (await db.query<any>('SELECT title FROM notification WHERE user_id = $1', [nina.id])).rows;
    expect(reminders).toEqual([{ title: 'Enable two-factor authentication' }]);
    const [change] = (await auditRows(db, 'role_change')).filter((r: any) => r.entity_id === nina.id);
    expect(change.before_state.role).toBe('biller');
    expect(change.after_state.role).toBe('admin');

    // The same code again (replay), for another privileged change: refused, nothing changes.
    const demote = await run('U_ALICE', '/users role nina biller');
    expect(demote.view.callback_id).toBe('users:role');
    const snap2 = await state();
    const replay = await t.driver.submit('U_ALICE', demote.view, { role: 'biller', area: '', totp: code });
    expect(replay.ack.errors.totp).toContain('already used');
    expect(withoutStepUpFailures(await state())).toEqual(withoutStepUpFailures(snap2));
    const ok2 = await t.driver.submit('U_AMIR', demote.view, { role: 'biller', area: '', totp: await codes.of(amir) });
    expect(ok2.ack).toBeNull();
    expect((await userRow('nina')).role).toBe('biller');
  });

  it('no admin changes their own role, and the last admin is never demoted or deleted', async () => {
    const snap = await state();
    expect((await run('U_ALICE', '/users role alice biller')).text).toContain('You cannot change your own role');
    expect((await run('U_ALICE', '/users delete alice')).text).toContain('You cannot delete your own account');
    expect((await run('U_ALICE', '/users edit alice')).view.callback_id).toBe('users:edit');
    expect(await state()).toEqual(snap);
  });
});

describe('/users unlock', () => {
  it('shows the failed attempts (time, masked IP) that caused the lock, then unlocks with one audit row', async () => {
    const form = await run('U_ADA', '/users unlock larry');
    expect(form.view.callback_id).toBe('users:unlock');
    expect(form.text).toContain('needs your 2FA code');
    const since = t.fake.calls.length;
    expect((await t.driver.submit('U_ADA', form.view, { totp: await codes.of(ada) })).ack).toBeNull();
    const text = textOf((await notice(form.i, since)).args);
    expect(text).toContain('Unlocked *larry*');
    expect(text).toContain('5 failed attempts cleared');
    expect(text).toContain('203.0.xxx.xxx');
    expect(text).toContain('198.51.xxx.xxx');
    expect(text).not.toContain('203.0.113.7');
    expect(text.match(/^• /gm)).toHaveLength(3);
    const row = await userRow('larry');
    expect(row).toMatchObject({ failed_login_attempts: 0, locked_until: null, last_failed_login: null });
    const audits = (await auditRows(db, 'unlock_account')).filter((r: any) => r.entity_id === row.id);
    expect(audits).toHaveLength(1);
    expect(audits[0].before_state.failed_login_attempts).toBe(5);
    expect(audits[0].after_state.failed_login_attempts).toBe(0);
    // Again: nothing to unlock, nothing written.
    const snap = await state();
    expect((await run('U_ADA', '/users unlock larry')).text).toContain('not locked and has no failed attempts');
    expect(await state()).toEqual(snap);
  });

  it('the Unlock button on a card unlocks, refreshes the card and refuses a second click', async () => {
    const card = await run('U_AMIR', '/users show lena');
    const buttons = buttonsOf(card.reply.args.blocks);
    expect(buttons.map((b) => b.text)).toEqual(['Unlock', 'Reset password', 'Edit', 'Change role', 'Delete']);
    const unlockButton = buttons[0];
    const click = await t.driver.click('U_AMIR', { actionId: unlockButton.actionId, value: unlockButton.value });
    const form = await t.driver.reply(click);
    expect(form.args.view.callback_id).toBe('users:unlock');
    await t.driver.submit('U_AMIR', form.args.view, { totp: await codes.of(amir) });
    await t.fake.waitFor((c) => c.responseId === click.responseId && c.args.response_type === 'ephemeral', 10_000, click.since);
    const [update, message] = t.driver.responses(click);
    expect(update.args.replace_original).toBe(true);
    expect(buttonsOf(update.args.blocks).map((b) => b.text)).not.toContain('Unlock');
    expect(textOf(message.args)).toContain('Unlocked *lena*');
    const snap = await state();
    const again = await t.driver.reply(await t.driver.click('U_AMIR', { actionId: unlockButton.actionId, value: unlockButton.value }));
    expect(textOf(again.args)).toContain('not locked');
    expect(await state()).toEqual(snap);
  });
});

describe('/users link', () => {
  it('links a Slack user explicitly after step-up, replacing nothing silently, with one audit row', async () => {
    // Before: U_CARL's profile e-mail matches no account.
    expect((await run('U_CARL', '/users list')).text).toContain('not linked');
    const { view, text } = await run('U_ALICE', '/users link carl <@U_CARL|carl>');
    expect(view.callback_id).toBe('users:link');
    expect(text).toContain('Link <@U_CARL> to *carl*');
    const snap = await state();
    const none = await t.driver.submit('U_ALICE', view, { totp: '' });
    expect(none.ack.errors.totp).toContain('6-digit code');
    expect(await state()).toEqual(snap);
    const ok = await t.driver.submit('U_ARI', view, { totp: await codes.of(ari) });
    expect(ok.ack).toBeNull();
    const carl = await userRow('carl');
    const links = (await db.query<any>(`SELECT * FROM warden_slack_link WHERE slack_user_id = 'U_CARL'`)).rows;
    expect(links).toEqual([expect.objectContaining({ user_id: carl.id, method: 'explicit', linked_by: ari.id })]);
    const [audit] = (await auditRows(db, 'user_updated')).filter((r: any) => r.details.linked_slack_user === 'U_CARL');
    expect(audit.after_state.slack_links).toEqual(['T_WARDEN:U_CARL (explicit)']);
    expect(audit.before_state.slack_links).toEqual([]);
    // The Slack user now acts as carl (a biller): refused as a non-admin, no longer "not linked".
    expect((await run('U_CARL', '/users list')).text).toContain('Only admins can use `/users list`');
  });

  it('refuses linking your own Slack account, unknown users and malformed mentions', async () => {
    const snap = await state();
    expect((await run('U_ALICE', '/users link dave <@U_ALICE>')).text).toContain('cannot link your own Slack account');
    expect((await run('U_ALICE', '/users link ghost <@U_CARL>')).text).toContain('No user named `ghost`');
    expect((await run('U_ALICE', '/users link carl @carl')).text).toContain('mention the Slack user');
    expect((await run('U_ALICE', '/users link carl <@U_CARL>')).text).toContain('already linked to `carl`');
    expect(await state()).toEqual(snap);
  });
});

describe('non-admins and forged interactions', () => {
  it('a non-admin is refused every mutating subcommand, button and form', async () => {
    const snap = await state();
    for (const line of [
      '/users create eve eve@example.com biller',
      '/users create',
      '/users edit otto',
      '/users role otto admin',
      '/users unlock larry',
      '/users reset-password otto',
      '/users reset-password otto temp',
      '/users delete otto',
      '/users link otto <@U_DAVE>',
    ]) {
      const sub = line.split(' ')[1];
      expect((await run('U_DAVE', line)).text, line).toContain(`Only admins can use \`/users ${sub}\``);
    }
    // Buttons from an admin's card, clicked by dave.
    const card = await run('U_ALICE', '/users show otto');
    for (const b of buttonsOf(card.reply.args.blocks)) {
      const reply = await t.driver.reply(await t.driver.click('U_DAVE', { actionId: b.actionId, value: b.value }));
      expect(textOf(reply.args), b.actionId).toContain('Only admins can use this button');
    }
    // A form an admin opened, submitted by dave (forged view_submission).
    const { view } = await run('U_ALICE', '/users delete otto');
    const forged = await t.driver.submit('U_DAVE', view, { confirm: 'otto', anonymise: ['yes'], totp: '123456' });
    expect(forged.ack.response_action).toBe('errors');
    expect(Object.values(forged.ack.errors).join(' ')).toContain('Only admins can submit this form');
    expect(await state()).toEqual(snap);
  });

  it('forged button values naming another account are re-checked: self, unknown, malformed', async () => {
    const snap = await state();
    const click = async (actionId: string, value: string) =>
      textOf((await t.driver.reply(await t.driver.click('U_ALICE', { actionId, value }))).args);
    expect(await click('users:delete', JSON.stringify({ u: 'alice', c: 1 }))).toContain('You cannot delete your own account');
    expect(await click('users:unlock', JSON.stringify({ u: 'ghost' }))).toContain('No user named `ghost`');
    expect(await click('users:edit', JSON.stringify({ u: 'x y' }))).toContain('not valid any more');
    expect(await click('users:role', '{"u":')).toContain('not valid any more');
    expect(await click('users:unlock', JSON.stringify({ u: 'otto' }))).toContain('disabled, not locked out');
    expect(await state()).toEqual(snap);
  });

  it('tampered form metadata is refused', async () => {
    const snap = await state();
    const { view: del } = await run('U_ALICE', '/users delete otto');
    const meta = JSON.parse(del.private_metadata);
    const tampered = await t.driver.submit('U_ALICE', { ...del, private_metadata: JSON.stringify({ ...meta, m: '{"u":"x y z"}' }) }, { confirm: 'x y z' });
    expect(Object.values(tampered.ack.errors).join(' ')).toContain('out of date');
    expect(await state()).toEqual(snap);
  });
});
