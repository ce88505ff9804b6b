import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { buttonsOf, textOf } from '../../src/slack/sim/driver.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, linkSlack, snapshot, withoutStepUpFailures, type TestUser } from '../helpers/fixtures.js';
import { MailServer } from '../helpers/mail-server.js';
import { createTestStore } from '../helpers/store.js';
import { StepUpCodes } from '../e2e/users-support.js';

/**
 * Issue 10, replayed end to end: one admin, alice, who also controls a second Slack account
 * (U_ALT, profile e-mail alice.alt@example.com), tries to take over other accounts with the
 * chains the review found (Path A: rewrite e-mails; Path B: re-link Slack accounts).
 * Every step is refused or neutralised, nothing changes, and the people affected are told.
 */

// Each step-up needs a fresh 30-second TOTP step of the acting admin; waiting for one takes time.
vi.setConfig({ testTimeout: 120_000 });

let db: Db;
let store: Store;
let t: TestApp;
let cleanup: () => Promise<void>;
const mail = new MailServer();
const codes = new StepUpCodes(() => store);
let alice: TestUser, bob: TestUser, carol: TestUser, erin: TestUser, victim: TestUser, dana: TestUser, frank: TestUser;

const CHANNEL = 'C_APPROVALS';
const SECURITY = 'C_SECURITY';

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  await mail.start();
  alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  bob = await createUser(db, { username: 'bob', role: 'admin', twoFa: true, area: null });
  carol = await createUser(db, { username: 'carol', role: 'admin', twoFa: true, area: null });
  erin = await createUser(db, { username: 'erin', role: 'admin', twoFa: true, area: null });
  victim = await createUser(db, { username: 'victim', role: 'biller', twoFa: true, area: null });
  dana = await createUser(db, { username: 'dana', role: 'biller', twoFa: true, area: null });
  frank = await createUser(db, { username: 'frank', role: 'biller', twoFa: true, area: null });
  t = await startTestApp({
    db,
    store,
    env: {
      ...mail.env(),
      APPROVALS_CHANNEL: CHANNEL,
      SECURITY_CHANNEL: SECURITY,
      PASSWORD_RESET_URL: 'https://app.example.com/reset?token=',
    },
  });
  for (const u of [alice, bob, carol, erin, victim, dana, frank]) await linkSlack(db, `U_${u.username.toUpperCase()}`, u.id);
  // Links older than a day, as in a workspace that has been running for a while.
  await db.query(`UPDATE warden_slack_link SET created_at = now() - interval '30 days'`);
  // alice's second Slack account: a full member of the workspace with her alias as profile e-mail.
  t.fake.addUser({ id: 'U_ALT', name: 'al', email: 'alice.alt@example.com' });
  for (const u of [alice, bob, carol, erin, victim, dana, frank]) t.fake.addUser({ id: `U_${u.username.toUpperCase()}`, name: u.username, email: u.email });
}, 60_000);

afterAll(async () => {
  await t?.stop();
  await mail.stop();
  await store?.close();
  await cleanup?.();
});

async function state() {
  return withoutStepUpFailures({
    ...(await snapshot(db)),
    links: (await db.query('SELECT * FROM warden_slack_link ORDER BY slack_team_id, slack_user_id')).rows,
    recoveries: (await db.query('SELECT * FROM warden_2fa_recovery ORDER BY id')).rows,
  });
}

async function run(user: string, line: string) {
  const i = await t.driver.command(user, line);
  const reply = await t.driver.reply(i);
  const view = reply.method === 'views.open' ? reply.args.view : undefined;
  return { i, reply, text: textOf(view ?? reply.args), view };
}

/** Runs a command that opens a form and submits it with the given values; the answer (field errors or the notice). */
async function submitForm(user: string, line: string, values: Record<string, string | string[]>) {
  const form = await run(user, line);
  if (!form.view) return { text: form.text, errors: undefined as Record<string, string> | undefined };
  const since = t.fake.calls.length;
  const sub = await t.driver.submit(user, form.view, values);
  if (sub.ack?.response_action === 'errors') return { text: Object.values(sub.ack.errors).join(' '), errors: sub.ack.errors as Record<string, string> };
  // Ack first (issue 12): a form that e-mails answers "Sending…", then updates itself with the outcome.
  if (sub.ack?.view?.callback_id === 'warden:progress') return { text: textOf((await t.driver.viewUpdate(sub.viewId)).args.view), errors: undefined };
  const notice = await t.fake.waitFor((c) => c.method === 'response_url' && c.responseId === form.i.responseId, 10_000, since);
  return { text: textOf(notice.args), errors: undefined };
}

/** DMs are queued in the change's transaction and delivered by the outbox after it: wait for one. */
const dmArrives = (user: string, re: RegExp, since: number) =>
  t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === `D_${user}` && re.test(textOf(c.args)), 10_000, since);

/** The old address's mail is sent after the form was answered (not awaited by it): wait for it. */
async function mailArrives(pred: (m: (typeof mail.received)[number]) => boolean) {
  for (let i = 0; i < 100 && !mail.received.some(pred); i++) await new Promise((r) => setTimeout(r, 100));
  return mail.received.filter(pred);
}

describe('Path A: rewriting e-mails', () => {
  it('an admin’s e-mail cannot be changed from Slack, with or without a code; nothing changes, nobody is mailed', async () => {
    const before = await state();
    const mails = mail.received.length;
    const r = await submitForm('U_ALICE', '/users edit bob', {
      email: 'alice.alt@example.com',
      role: 'admin',
      area: '',
      status: 'active',
      totp: await codes.of(alice),
    });
    expect(r.errors?.email).toMatch(/Admin accounts are not changed this way from Slack.*admin dashboard/);
    expect(await state()).toEqual(before);
    expect(mail.received.length).toBe(mails);
    // alice's second account still acts as nobody.
    const alt = await run('U_ALT', '/users list');
    expect(alt.text).toMatch(/not linked to an application account/);
  });

  it('changing a non-admin’s e-mail needs a code, mails the old address, DMs their Slack user, and records who did it', async () => {
    const before = await state();
    const noCode = await submitForm('U_ALICE', '/users edit victim', { email: 'alice.alt@example.com', role: 'biller', area: '', status: 'active' });
    expect(noCode.errors?.totp).toMatch(/6-digit code/);
    expect(await state()).toEqual(before);

    const since = t.fake.calls.length;
    const ok = await submitForm('U_ALICE', '/users edit victim', {
      email: 'alice.alt@example.com',
      role: 'biller',
      area: '',
      status: 'active',
      totp: await codes.of(alice),
    });
    expect(ok.text).toContain('Updated *victim*');
    const old = await mailArrives((m) => m.to.includes('victim@example.com') && m.subject === 'Your account e-mail was changed');
    expect(old).toHaveLength(1);
    expect(old[0].text).toContain('changed by the administrator alice');
    expect(old[0].text).not.toContain('alice.alt@example.com');
    await dmArrives('U_VICTIM', /e-mail address of your account victim was changed by the administrator alice/, since);
    const [audit] = (await auditRows(db, 'user_updated')).filter((a: any) => a.entity_id === victim.id).slice(-1);
    expect(audit.before_state.email).toBe('victim@example.com');
    expect(audit.after_state.email).toBe('alice.alt@example.com');
    expect(audit.details).toMatchObject({ changed: ['email'], actor: 'alice', slack_user: 'U_ALICE' });
  });

  it('the second Slack account is not matched to the re-addressed account (the address changed within the cool-down)', async () => {
    const before = await state();
    const alt = await run('U_ALT', '/users show victim');
    expect(alt.text).toMatch(/had its e-mail changed recently.*cool-down/);
    expect(await state()).toEqual(before);
  });

  it('no recovery can be opened for the re-addressed account, by alice or by an honest admin', async () => {
    const before = await state();
    const byAlice = await run('U_ALICE', '/2fa recover victim');
    expect(byAlice.text).toMatch(/identity of the account to recover \(victim\) changed within the last 72 h.*by you.*four eyes/s);
    const byBob = await run('U_BOB', '/2fa recover victim');
    expect(byBob.text).toMatch(/changed within the last 72 h.*by alice.*IDENTITY_COOLDOWN/s);
    expect(await state()).toEqual(before);
    expect(mail.received.filter((m) => m.to.includes('alice.alt@example.com'))).toEqual([]);
  });

  it('no reset link goes to the address changed within the cool-down, and an admin never gets one from Slack', async () => {
    const before = await state();
    expect((await run('U_ALICE', '/users reset-password victim')).text).toMatch(/reset links are not sent to an address changed within the last 72 h/);
    expect((await run('U_ALICE', '/users reset-password bob')).text).toMatch(/Admin accounts are not changed this way from Slack/);
    expect((await run('U_ALICE', '/users reset-password bob temp')).text).toMatch(/Admin accounts are not changed this way from Slack/);
    expect(await state()).toEqual(before);
    expect(mail.received.filter((m) => m.to.includes('alice.alt@example.com'))).toEqual([]);
  });
});

describe('Path B: re-linking Slack accounts', () => {
  it('no Slack user can be linked to an admin account, nor taken from one', async () => {
    const before = await state();
    const toErin = await run('U_ALICE', '/users link erin <@U_ALT>');
    expect(toErin.text).toMatch(/Admin accounts are not changed this way from Slack/);
    const fromBob = await run('U_ALICE', '/users link dana <@U_BOB>');
    expect(fromBob.text).toMatch(/acts as the admin \*bob\* now/);
    expect(await state()).toEqual(before);
  });

  it('linking a non-admin needs a code and tells both Slack users; the re-linked account cannot ask for admin', async () => {
    const since = t.fake.calls.length;
    const ok = await submitForm('U_ALICE', '/users link dana <@U_ALT>', { totp: await codes.of(alice) });
    expect(ok.text).toContain('now acts as *dana*');
    await dmArrives('U_ALT', /alice linked your Slack account to the application account \*dana\*/, since);
    await dmArrives('U_DANA', /alice linked another Slack account, <@U_ALT>, to your application account \*dana\*/, since);
    const [audit] = (await auditRows(db, 'user_updated')).filter((a: any) => a.entity_id === dana.id).slice(-1);
    expect(audit.details).toMatchObject({ changed: ['slack_link'], linked_slack_user: 'U_ALT', actor: 'alice' });
    expect(audit.after_state.slack_links).toContain('T_WARDEN:U_ALT (explicit)');

    const before = await state();
    const ask = await run('U_ALT', '/promotions request I need admin to help with the billing backlog');
    expect(ask.text).toMatch(/cannot request a promotion: the identity of your own account \(dana\) changed within the last 72 h/);
    expect(await state()).toEqual(before);
  });
});

describe('four eyes means two people', () => {
  it('whoever changed a requester’s identity cannot approve their promotion; nobody can during the cool-down; the card shows the change', async () => {
    // frank asked before alice touched his account; the card was posted.
    const ask = await run('U_FRANK', '/promotions request I run the month-end billing and need admin for it');
    expect(ask.text).toMatch(/request #\d+/i);
    const id = Number(/#(\d+)/.exec(ask.text)![1]);
    const card = await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === CHANNEL && textOf(c.args).includes(`#${id}`));
    const approveButton = buttonsOf(card.args.blocks).find((b) => b.text === 'Approve')!;
    const approve = { actionId: approveButton.actionId, value: approveButton.value, channel: CHANNEL, message: { ts: card.result?.ts, blocks: card.args.blocks } };

    await submitForm('U_ALICE', '/users edit frank', { email: 'frank.new@example.com', role: 'biller', area: '', status: 'active', totp: await codes.of(alice) });
    const before = await state();
    const byAlice = textOf((await t.driver.reply(await t.driver.click('U_ALICE', approve))).args);
    expect(byAlice).toMatch(/identity of the requester \(frank\) changed.*by you.*Whoever changes an account’s identity cannot also vouch for it/s);
    const byCarol = textOf((await t.driver.reply(await t.driver.click('U_CAROL', approve))).args);
    expect(byCarol).toMatch(/identity of the requester \(frank\) changed within the last 72 h.*by alice/s);
    expect(await state()).toEqual(before);
    const shown = await run('U_CAROL', `/promotions show ${id}`);
    expect(shown.text).toMatch(/Recent identity changes[\s\S]*frank: e-mail changed by alice/);
  });

  it('a recovery’s initiator proves their own 2FA; the approver who changed an identity involved is refused; the card lists identity changes', async () => {
    // bob (honest) opens a recovery for hank, an account nobody has touched.
    const hank = await createUser(db, { username: 'hank', role: 'biller', twoFa: true, area: null });
    await linkSlack(db, 'U_HANK', hank.id);
    const form = await run('U_BOB', '/2fa recover hank');
    expect(form.view.blocks.map((b: any) => b.block_id)).toContain('totp');
    const values = { manual_checks: ['phone_callback'], evidence: 'Called hank back on the number on file.', warden_checks: ['email'] };
    const noCode = await t.driver.submit('U_BOB', form.view, values);
    expect(noCode.ack.errors.totp).toMatch(/6-digit code/);
    const opened = await t.driver.submit('U_BOB', form.view, { ...values, totp: await codes.of(bob) });
    expect(opened.ack.response_action).toBe('update');
    const verify = (await t.driver.viewUpdate(opened.viewId)).args.view;
    const code = mail.lastCodeTo('hank@example.com')!;
    const cardWait = t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === CHANNEL && textOf(c.args).includes('2FA recovery #'), 10_000, t.fake.calls.length);
    await t.driver.submit('U_BOB', verify, { email_code: code });
    const card = await cardWait;
    expect(textOf(card.args)).toContain('Recent identity changes: none');

    // alice now re-links hank's Slack account to… her second account, then tries to approve.
    await submitForm('U_ALICE', '/users link hank <@U_ALT>', { totp: await codes.of(alice) });
    const rid = Number(/#(\d+)/.exec(textOf(card.args))![1]);
    const before = await state();
    const click = textOf((await t.driver.reply(await t.driver.click('U_ALICE', { actionId: '2fa:approve', value: JSON.stringify({ r: rid }), channel: CHANNEL }))).args);
    expect(click).toMatch(/cannot approve recovery #\d+: the identity of the account to recover \(hank\) changed.*by you/s);
    expect(await state()).toEqual(before);
    expect((await db.query<any>('SELECT two_fa_enabled FROM "user" WHERE id = $1', [hank.id])).rows[0].two_fa_enabled).toBe(true);
    const card2 = await t.driver.reply(await t.driver.click('U_CAROL', { actionId: '2fa:approve', value: JSON.stringify({ r: rid }), channel: CHANNEL }));
    expect(textOf(card2.args)).toMatch(/changed within the last 72 h/);
  });
});

describe('rate limits', () => {
  it('reset links: at most 3 per account per hour', async () => {
    const kim = await createUser(db, { username: 'kim', role: 'biller', area: null });
    const sent = () => mail.received.filter((m) => m.to.includes(kim.email) && m.subject === 'Reset your password').length;
    for (const admin of [carol, erin, bob]) {
      const r = await submitForm(`U_${admin.username.toUpperCase()}`, '/users reset-password kim', { method: 'link', totp: await codes.of(admin) });
      expect(r.text).toContain('A password reset link for *kim*');
    }
    const fourth = await submitForm('U_CAROL', '/users reset-password kim', { method: 'link', totp: await codes.of(carol) });
    expect(fourth.text).toMatch(/already had 3 password resets in the last hour/);
    expect(sent()).toBe(3);
  });
});
