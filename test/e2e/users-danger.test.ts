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
 * /users reset-password (link through the mail API, temp with step-up) and /users delete
 * (typed confirmation, anonymisation, step-up) over signed HTTP (issue 3).
 */

let t: TestApp;
let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
const mail = new MailApi();
const codes = new StepUpCodes(() => store);
let alice: TestUser;
let amir: TestUser;
let ada: TestUser;
// More admins: every reset and delete needs a fresh 2FA step, and each account has two per 30 s.
let aria: TestUser;
let axel: TestUser;
let ayla: TestUser;

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  await mail.start();
  alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  amir = await createUser(db, { username: 'amir', role: 'admin', twoFa: true, area: null });
  ada = await createUser(db, { username: 'ada', role: 'admin', twoFa: true, area: null });
  aria = await createUser(db, { username: 'aria', role: 'admin', twoFa: true, area: null });
  axel = await createUser(db, { username: 'axel', role: 'admin', twoFa: true, area: null });
  ayla = await createUser(db, { username: 'ayla', role: 'admin', twoFa: true, area: null });
  await createUser(db, { username: 'rose', role: 'biller', area: null });
  await createUser(db, { username: 'tom', role: 'dispatcher', area: 'indore' });
  await createUser(db, { username: 'gina', role: 'dispatcher', area: 'indore', email: 'gina.private@mail.example' });
  await createUser(db, { username: 'kim', role: 'biller', area: null });
  t = await startTestApp({
    db,
    store,
    env: {
      EMAIL_API_URL: mail.url,
      EMAIL_API_KEY: 'SG.test-key',
      EMAIL_FROM: 'warden@example.com',
      EMAIL_TIMEOUT_MS: '400',
      PASSWORD_RESET_URL: 'https://app.example.com/reset?token=',
    },
  });
  await linkSlack(db, 'U_ALICE', alice.id);
  await linkSlack(db, 'U_AMIR', amir.id);
  await linkSlack(db, 'U_ADA', ada.id);
  for (const u of [aria, axel, ayla]) await linkSlack(db, `U_${u.username.toUpperCase()}`, u.id);
});

afterAll(async () => {
  await t?.stop();
  await mail.stop();
  await store?.close();
  await cleanup?.();
});

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

/** `/users reset-password USERNAME link`: the form (every reset needs step-up), submitted with a fresh code; the notice text. */
async function resetLink(user: string, admin: TestUser, username: string, code?: string): Promise<string> {
  const totp = code ?? (await codes.of(admin));
  const form = await run(user, `/users reset-password ${username} link`);
  expect(form.view.callback_id).toBe('users:reset');
  const sub = await t.driver.submit(user, form.view, { method: 'link', totp });
  // Ack first (issue 12): "Sending…" at once, then the same view says how the mail went.
  if (sub.ack?.response_action !== 'update' || sub.ack.view?.callback_id !== 'warden:progress') return JSON.stringify(sub.ack);
  return textOf((await t.driver.viewUpdate(sub.viewId)).args.view);
}

/** What a failed link send leaves: the request and the revocation audited, no usable token. */
async function expectLinkRevoked(username: string, auditsBefore: number) {
  const row = await userRow(username);
  expect(row.password_reset_token).toBeNull();
  const audits = (await auditRows(db)).slice(auditsBefore).filter((r: any) => r.entity_id === row.id).map((r: any) => r.action);
  expect(audits).toEqual(['password_reset_request', 'password_reset_link_unsent']);
}

async function userRow(username: string) {
  return (await db.query<any>('SELECT * FROM "user" WHERE username = $1', [username])).rows[0];
}

describe('/users reset-password link', () => {
  it('stores a fresh token valid 1 hour and e-mails the link through the mail API; Slack never sees it', async () => {
    const before = mail.requests.length;
    const text = await resetLink('U_ALICE', alice, 'rose');
    expect(text).toContain('A password reset link for *rose* was e-mailed to ros***@***.com');
    expect(text).toContain('never shown in Slack');
    const row = await userRow('rose');
    expect(row.password_reset_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const ttl = new Date(row.password_reset_token_expires).getTime() - Date.now();
    expect(ttl).toBeGreaterThan(58 * 60_000);
    expect(ttl).toBeLessThanOrEqual(60 * 60_000);

    // The request the mail API received: SendGrid v3 shape, bearer key, JSON.
    expect(mail.requests.length).toBe(before + 1);
    const req = mail.requests.at(-1)!;
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/v3/mail/send');
    expect(req.headers.authorization).toBe('Bearer SG.test-key');
    expect(req.headers['content-type']).toBe('application/json');
    expect(req.body).toEqual({
      personalizations: [{ to: [{ email: 'rose@example.com' }] }],
      from: { email: 'warden@example.com' },
      subject: 'Reset your password',
      content: [{ type: 'text/plain', value: expect.stringContaining('valid for 1 hour') }],
    });
    expect(mail.lastLink()).toBe(`https://app.example.com/reset?token=${row.password_reset_token}`);
    expect(JSON.stringify(t.fake.calls)).not.toContain(row.password_reset_token);

    const [audit] = (await auditRows(db, 'password_reset_request')).filter((r: any) => r.entity_id === row.id);
    expect(audit.details).toMatchObject({ username: 'rose', method: 'link', mailed_to: 'ros***@***.com', slack_user: 'U_ALICE' });
    expect(JSON.stringify(audit)).not.toContain(row.password_reset_token);
    expect(JSON.stringify(audit.after_state)).not.toContain('password_reset_token');

    // A second request replaces the token: the first link stops working.
    await resetLink('U_AMIR', amir, 'rose');
    expect((await userRow('rose')).password_reset_token).not.toBe(row.password_reset_token);
  });

  it('an HTTP 500 from the mail API is reported and the token is revoked (audited)', async () => {
    const audits = (await auditRows(db)).length;
    mail.mode = 'fail';
    try {
      const text = await resetLink('U_ARIA', aria, 'tom');
      expect(text).toContain('could not be sent: The mail service refused the message (HTTP 500).');
      expect(text).toContain('The link was revoked and nothing else changed');
    } finally {
      mail.mode = 'ok';
    }
    await expectLinkRevoked('tom', audits);
  });

  it('a mail API that does not answer times out, is reported, and the token is revoked (audited)', async () => {
    const audits = (await auditRows(db)).length;
    const code = await codes.of(ada); // fetched first: waiting for a fresh 2FA step is not the mail timeout
    mail.mode = 'hang';
    const started = Date.now();
    try {
      const text = await resetLink('U_ADA', ada, 'tom', code);
      expect(text).toContain('The mail service did not answer within 400 ms');
    } finally {
      mail.mode = 'ok';
    }
    expect(Date.now() - started).toBeLessThan(8000);
    await expectLinkRevoked('tom', audits);
  });

  it('creating a user whose link cannot be mailed: the account exists without a usable link, and the admin is told how to go on', async () => {
    mail.mode = 'fail';
    try {
      const { text } = await run('U_ALICE', '/users create nora nora@example.com biller');
      expect(text).toContain('Created *nora*');
      expect(text).toContain('could not be sent: The mail service refused the message (HTTP 500).');
      expect(text).toContain('send a new link with `/users reset-password nora link`');
    } finally {
      mail.mode = 'ok';
    }
    const row = await userRow('nora');
    expect(row.password_reset_token).toBeNull();
    expect((await auditRows(db)).filter((r: any) => r.entity_id === row.id).map((r: any) => r.action)).toEqual(['user_created', 'password_reset_link_unsent']);
  });
});

describe('/users reset-password temp', () => {
  it('asks for step-up, then shows the password once in the modal; the hash is werkzeug-compatible', async () => {
    await resetLink('U_AXEL', axel, 'kim'); // an outstanding link, to be invalidated
    const { view, text, i } = await run('U_ALICE', '/users reset-password kim temp');
    expect(view.callback_id).toBe('users:reset');
    expect(text).toContain('shown once, only to you');
    const snap = await state();
    const wrong = await t.driver.submit('U_ADA', view, { method: 'temp', totp: '000000' });
    expect(wrong.ack.errors.totp).toMatch(/not valid|already used/);
    const expired = await t.driver.submit('U_ADA', view, { method: 'temp', totp: await codes.expired(ada) });
    expect(expired.ack.errors.totp).toContain('not valid');
    expect(withoutStepUpFailures(await state())).toEqual(withoutStepUpFailures(snap));

    const sub = await t.driver.submit('U_ALICE', view, { method: 'temp', totp: await codes.of(alice) });
    expect(sub.ack.response_action).toBe('update');
    const password = /```(.+?)```/s.exec(textOf(sub.ack.view))![1];
    const row = await userRow('kim');
    expect(row.password_hash).toMatch(/^pbkdf2:sha256:600000\$/);
    expect(await verifyPassword(password, row.password_hash)).toBe(true);
    expect(row.password_reset_token).toBeNull();
    const notes = (await db.query<any>('SELECT title FROM notification WHERE user_id = $1', [row.id])).rows;
    expect(notes).toEqual([{ title: 'Change your password' }]);
    const [audit] = (await auditRows(db, 'password_change')).filter((r: any) => r.entity_id === row.id);
    expect(audit.details).toMatchObject({ method: 'temporary_password', slack_user: 'U_ALICE' });
    await new Promise((r) => setTimeout(r, 100));
    expect(JSON.stringify(t.fake.calls.slice(i.since))).not.toContain(password);
    expect(JSON.stringify(await auditRows(db))).not.toContain(password);
  });

  it('the Reset password button opens the same form; a link from it needs the 2FA code too', async () => {
    const card = await run('U_AYLA', '/users show tom');
    const b = buttonsOf(card.reply.args.blocks).find((x) => x.text === 'Reset password')!;
    const click = await t.driver.click('U_AYLA', { actionId: b.actionId, value: b.value });
    const opened = await t.driver.reply(click);
    expect(opened.method).toBe('views.open');
    const noCode = await t.driver.submit('U_AYLA', opened.args.view, { method: 'link' });
    expect(noCode.ack.errors.totp).toContain('6-digit code');
    const sub = await t.driver.submit('U_AYLA', opened.args.view, { method: 'link', totp: await codes.of(ayla) });
    // Ack first (issue 12): the form says "Sending…", then how it went.
    expect(sub.ack.response_action).toBe('update');
    expect(textOf((await t.driver.viewUpdate(sub.viewId)).args.view)).toContain('e-mailed to to***@***.com');
    expect((await userRow('tom')).password_reset_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('refuses a temporary password for yourself and for unknown users', async () => {
    const snap = await state();
    expect((await run('U_ALICE', '/users reset-password alice temp')).text).toContain('Change your own password in the application');
    expect((await run('U_ALICE', '/users reset-password ghost')).text).toContain('No user named `ghost`');
    expect((await run('U_ALICE', '/users reset-password rose sms')).text).toContain('the method must be link or temp');
    expect(await state()).toEqual(snap);
  });
});

describe('/users delete', () => {
  it('needs the exact username and a valid code; wrong input changes nothing', async () => {
    const { view, text } = await run('U_ALICE', '/users delete tom');
    expect(view.callback_id).toBe('users:delete');
    expect(text).toContain('permanently deletes *tom*');
    expect(view.blocks.filter((b: any) => b.type === 'input').map((b: any) => b.block_id)).toEqual(['confirm', 'anonymise', 'totp']);
    const snap = await state();
    const cases: [Record<string, string | string[]>, string, RegExp][] = [
      [{ confirm: 'Tom', totp: '123456' }, 'confirm', /Type the username exactly — tom —/],
      [{ confirm: 'tim', totp: '123456' }, 'confirm', /Type the username exactly/],
      [{ confirm: '', totp: '123456' }, 'confirm', /Type the username exactly/],
      [{ confirm: 'tom', totp: '' }, 'totp', /6-digit code/],
      [{ confirm: 'tom', totp: await codes.expired(ada) }, 'totp', /not valid/],
    ];
    for (const [values, field, expected] of cases) {
      const sub = await t.driver.submit('U_ADA', view, values);
      expect(sub.ack.response_action, JSON.stringify(values)).toBe('errors');
      expect(sub.ack.errors[field], JSON.stringify(values)).toMatch(expected);
    }
    expect(withoutStepUpFailures(await state())).toEqual(withoutStepUpFailures(snap));
  });

  it('deletes with anonymisation: audit entries stay, user_id becomes NULL, e-mail and IPs are masked', async () => {
    const gina = await userRow('gina');
    await linkSlack(db, 'U_GINA', gina.id);
    await db.query(
      `INSERT INTO audit_log (user_id, action, entity_type, entity_id, details, ip_address) VALUES
        ($1, 'login_success', NULL, NULL, '{"username":"gina"}', '10.1.2.3'),
        ($1, 'update_bag', 'bag', 77, '{"note":"moved by gina.private@mail.example from 10.1.2.3"}', '10.1.2.3'),
        (NULL, 'login_failed', NULL, NULL, '{"username":"gina"}', '172.16.5.9'),
        ($2, 'user_updated', 'user', $1, '{"username":"gina"}', '192.168.7.7')`,
      [gina.id, amir.id],
    );
    const { view, i } = await run('U_AMIR', '/users delete gina');
    const since = t.fake.calls.length;
    const sub = await t.driver.submit('U_AMIR', view, { confirm: 'gina', anonymise: ['yes'], totp: await codes.of(amir) });
    expect(sub.ack).toBeNull();
    const done = await t.fake.waitFor((c) => c.method === 'response_url' && c.responseId === i.responseId, 10_000, since);
    expect(textOf(done.args)).toMatch(/Deleted \*gina\* \(dispatcher\)\. \d+ audit entries anonymised/);

    expect(await userRow('gina')).toBeUndefined();
    expect((await db.query('SELECT * FROM warden_slack_link WHERE user_id = $1', [gina.id])).rows).toEqual([]);
    const rows = (await db.query<any>(`SELECT * FROM audit_log WHERE action IN ('login_success','update_bag','login_failed') OR (entity_type = 'user' AND entity_id = $1) ORDER BY id`, [gina.id])).rows;
    const all = JSON.stringify(rows);
    expect(all).not.toContain('gina.private@mail.example');
    expect(all).not.toContain('10.1.2.3');
    expect(all).not.toContain('172.16.5.9');
    expect(all).toContain('gina***@***.example');
    expect(all).toContain('10.1.xxx.xxx');
    // Rows the user made stay, without the user reference (ON DELETE SET NULL).
    const own = rows.filter((r: any) => ['login_success', 'update_bag'].includes(r.action));
    expect(own).toHaveLength(2);
    expect(own.every((r: any) => r.user_id === null)).toBe(true);
    // Another admin's IP in a row about gina is theirs, not gina's: kept.
    expect(rows.find((r: any) => r.action === 'user_updated' && r.user_id === amir.id).ip_address).toBe('192.168.7.7');

    const deletions = (await auditRows(db, 'user_deleted')).filter((r: any) => r.entity_id === gina.id);
    expect(deletions).toHaveLength(1);
    expect(deletions[0].user_id).toBe(amir.id);
    expect(deletions[0].before_state).toMatchObject({ username: 'gina', role: 'dispatcher', dispatch_area: 'indore', email: 'gina***@***.example' });
    expect(JSON.stringify(deletions[0].before_state)).not.toMatch(/password_hash|totp_secret|password_reset_token/);
    expect(deletions[0].details).toMatchObject({ anonymised: true, slack_user: 'U_AMIR', slack_team: 'T_WARDEN', slack_channel: 'C_ADMIN' });

    // The deleted user's Slack account acts as nobody any more.
    expect(textOf((await t.driver.reply(await t.driver.command('U_GINA', '/users list'))).args)).toContain('not linked');
  });

  it('deletes without anonymisation from the card button, refreshing the card; a second submission finds nobody', async () => {
    const card = await run('U_ALICE', '/users show rose');
    const b = buttonsOf(card.reply.args.blocks).find((x) => x.text === 'Delete')!;
    const click = await t.driver.click('U_ALICE', { actionId: b.actionId, value: b.value });
    const opened = await t.driver.reply(click);
    const since = t.fake.calls.length;
    const rose = await userRow('rose');
    const sub = await t.driver.submit('U_ARIA', opened.args.view, { confirm: 'rose', totp: await codes.of(aria) });
    expect(sub.ack).toBeNull();
    const replaced = await t.fake.waitFor((c) => c.method === 'response_url' && c.responseId === click.responseId && c.args.replace_original === true, 10_000, since);
    expect(textOf(replaced.args)).toContain('rose no longer exists');
    const [deletion] = (await auditRows(db, 'user_deleted')).filter((r: any) => r.entity_id === rose.id);
    expect(deletion.before_state.email).toBe('rose@example.com');
    expect(deletion.details.anonymised).toBe(false);
    // Submitting the same form again (a double click after the first went through): nobody to delete.
    const snap = await state();
    const again = await t.driver.submit('U_AXEL', opened.args.view, { confirm: 'rose', totp: await codes.of(axel) });
    expect(Object.values(again.ack.errors).join(' ')).toContain('No user named `rose`');
    expect(await state()).toEqual(snap);
  });

  it('a code used once is refused the second time (replay)', async () => {
    const code = await codes.of(ada);
    const first = await run('U_ADA', '/users reset-password kim temp');
    const ok = await t.driver.submit('U_ADA', first.view, { method: 'temp', totp: code });
    expect(ok.ack.response_action).toBe('update');
    const { view } = await run('U_ADA', '/users delete kim');
    const snap = await state();
    const replay = await t.driver.submit('U_ADA', view, { confirm: 'kim', totp: code });
    expect(replay.ack.errors.totp).toContain('already used');
    expect(withoutStepUpFailures(await state())).toEqual(withoutStepUpFailures(snap));
  });
});
