import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { redactPaths } from '../../src/logger.js';
import { buttonsOf, textOf } from '../../src/slack/sim/driver.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, linkSlack, snapshot, type TestUser } from '../helpers/fixtures.js';
import { StepUpCodes } from './users-support.js';
import { MailServer } from '../helpers/mail-server.js';
import { createTestStore } from '../helpers/store.js';

let t: TestApp;
let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
let mail: MailServer;
const logLines: string[] = [];
let alice: TestUser, carol: TestUser, bob: TestUser;

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  mail = await new MailServer().start();
  alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  carol = await createUser(db, { username: 'carol', role: 'admin', twoFa: true, area: null });
  const eve = await createUser(db, { username: 'eve', role: 'biller', area: null });
  bob = await createUser(db, { username: 'bob', twoFa: true });
  await createUser(db, { username: 'nofa' });
  const dan = await createUser(db, { username: 'dan', role: 'admin', area: null });
  const logger = pino(
    { level: 'debug', redact: { paths: redactPaths, censor: '[redacted]' } },
    new Writable({ write: (c, _e, cb) => (logLines.push(String(c)), cb()) }),
  );
  t = await startTestApp({ db, store, logger, env: { APPROVALS_CHANNEL: 'C_APPROVALS', LOG_LEVEL: 'debug', ...mail.env() } });
  await linkSlack(db, 'U_ALICE', alice.id);
  await linkSlack(db, 'U_CAROL', carol.id);
  await linkSlack(db, 'U_EVE', eve.id);
  await linkSlack(db, 'U_BOB', bob.id);
  await linkSlack(db, 'U_DAN', dan.id);
  await db.query(`UPDATE warden_slack_link SET created_at = now() - interval '3 days' WHERE slack_user_id = 'U_BOB'`);
});

afterAll(async () => {
  await t?.stop();
  await store?.close();
  await mail?.stop();
  await cleanup?.();
});

const stepUp = new StepUpCodes(() => store);

const FORM = {
  manual_checks: ['phone_callback', 'in_person_id'],
  evidence: 'Called bob back on the number on file at 10:05; saw his badge in person.',
  warden_checks: ['email'],
};

async function openForm(user = 'U_ALICE', username = 'bob') {
  const reply = await t.driver.reply(await t.driver.command(user, `/2fa recover ${username}`));
  return reply;
}

describe('/2fa recover over signed HTTP', () => {
  let recoveryId: number;
  let card: any;
  let code: string;

  it('refuses bad and hostile input with a clear message and changes nothing', async () => {
    const before = await snapshot(db);
    const cases: [string, string, RegExp][] = [
      ['U_ALICE', '/2fa recover', /Missing USERNAME/],
      ['U_ALICE', '/2fa recover nofa', /`nofa` does not have 2FA enabled, so there is nothing to recover\. Nothing was opened\./],
      ['U_ALICE', '/2fa recover ghost', /No user named `ghost`/],
      ['U_ALICE', '/2fa recover alice', /cannot open a 2FA recovery for your own account/],
      ['U_EVE', '/2fa recover bob', /Only admins can use `\/2fa recover`/],
      ['U_ALICE', '/2fa recover "bob; DROP TABLE user"', /no spaces/],
    ];
    for (const [user, line, expected] of cases) {
      const reply = await t.driver.reply(await t.driver.command(user, line));
      expect(reply.method, line).toBe('response_url');
      expect(textOf(reply.args), line).toMatch(expected);
    }
    expect(await snapshot(db)).toEqual(before);
    expect((await db.query('SELECT count(*)::int AS n FROM warden_2fa_recovery')).rows[0].n).toBe(0);
  });

  it('tells the admin when the mail API is down: the code is revoked, the form says how to go on, Cancel closes it', async () => {
    const form = await openForm();
    expect(form.method).toBe('views.open');
    mail.mode = '500';
    let sub;
    try {
      sub = await t.driver.submit('U_ALICE', form.args.view, { ...FORM, totp: await stepUp.of(alice) });
      // Ack first (issue 12): "Sending…" at once; the outcome replaces the same view.
      expect(sub.ack.response_action).toBe('update');
      const outcome = textOf((await t.driver.viewUpdate(sub.viewId)).args.view);
      expect(outcome).toMatch(/E-mail code not sent: Could not send the e-mail code: The mail service refused the message \(HTTP 500\)\./);
      expect(outcome).toMatch(/Run `\/2fa recover bob` to send a new e-mail code or to cancel recovery #\d+/);
    } finally {
      mail.mode = 'ok';
    }
    const [rec] = (await db.query<any>(`SELECT id, status, checks FROM warden_2fa_recovery WHERE target_user_id = $1`, [bob.id])).rows;
    expect(rec.checks.email.result).toBe('unsent');
    expect((await auditRows(db, '2fa_recovery_code_unsent')).map((a: any) => a.entity_id)).toEqual([rec.id]);
    // The admin cancels it from `/2fa recover bob`.
    const progress = await t.driver.reply(await t.driver.command('U_ALICE', '/2fa recover bob'));
    expect(textOf(progress.args)).toContain('the code could not be sent');
    const cancel = buttonsOf(progress.args.blocks).find((b) => b.actionId === '2fa:cancel')!;
    await t.driver.reply(await t.driver.click('U_ALICE', { actionId: cancel.actionId, value: cancel.value }));
    expect((await db.query<any>(`SELECT status FROM warden_2fa_recovery WHERE id = $1`, [rec.id])).rows[0].status).toBe('cancelled');
    await db.query(`DELETE FROM warden_2fa_recovery WHERE id = $1`, [rec.id]);
  });

  it('opens a recovery from the form, e-mails a code and asks for it', async () => {
    const form = await openForm();
    const view = form.args.view;
    expect(view.callback_id).toBe('2fa:recover');
    expect(textOf(view)).toContain('Checks you performed yourself');
    const wardenBlock = view.blocks.find((b: any) => b.block_id === 'warden_checks');
    expect(wardenBlock.element.options.map((o: any) => o.value)).toEqual(['email', 'slack']);
    expect(JSON.stringify(view)).toContain('bo***@***.com');
    expect(JSON.stringify(view)).not.toContain('bob@example.com');

    // A missing evidence is a field error, nothing opened.
    const bad = await t.driver.submit('U_ALICE', view, { ...FORM, evidence: 'ok' });
    expect(bad.ack.errors.evidence).toMatch(/at least 10 characters/);

    // The initiator vouches for bob: without their own 2FA code nothing is opened or sent.
    const noCode = await t.driver.submit('U_ALICE', view, FORM);
    expect(noCode.ack.errors.totp).toMatch(/6-digit code/);
    expect(mail.lastCodeTo('bob@example.com')).toBeUndefined();

    const sent = await t.driver.submit('U_ALICE', view, { ...FORM, totp: await stepUp.of(alice) });
    expect(sent.ack.response_action).toBe('update');
    expect(textOf(sent.ack.view)).toMatch(/Sending the e-mail code…/);
    const ack = { view: (await t.driver.viewUpdate(sent.viewId)).args.view };
    expect(ack.view.callback_id).toBe('2fa:verify');
    expect(ack.view.blocks.map((b: any) => b.block_id)).toContain('email_code');
    code = mail.lastCodeTo('bob@example.com')!;
    expect(code).toMatch(/^\d{8}$/);
    const { rows } = await db.query<any>(`SELECT id, status FROM warden_2fa_recovery WHERE target_user_id = $1`, [bob.id]);
    expect(rows).toEqual([{ id: expect.any(Number), status: 'verifying' }]);
    recoveryId = rows[0].id;

    // Wrong code: counted, shown on the field.
    const wrong = await t.driver.submit('U_ALICE', ack.view, { email_code: code === '12345678' ? '87654321' : '12345678' });
    expect(wrong.ack.errors.email_code).toBe('Wrong code (1 of 5 attempts used).');
    // Another admin cannot enter the codes of alice's recovery.
    const intruder = await t.driver.submit('U_CAROL', ack.view, { email_code: code });
    expect(intruder.ack.errors.email_code).toMatch(/Only alice, who opened recovery/);

    // A second recovery for bob is refused for carol; alice gets her open one back.
    expect(textOf((await openForm('U_CAROL')).args)).toMatch(/already open \(#\d+, opened by alice/);
    const resume = await openForm('U_ALICE');
    expect(textOf(resume.args)).toContain(`Your 2FA recovery #${recoveryId} for *bob* is collecting identity checks`);
    const enter = buttonsOf(resume.args.blocks).find((b) => b.text === 'Enter codes')!;
    const reopened = await t.driver.reply(await t.driver.click('U_ALICE', enter));
    expect(reopened.method).toBe('views.open');

    const cardWait = t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === 'C_APPROVALS');
    const ok = await t.driver.submit('U_ALICE', reopened.args.view, { email_code: `${code.slice(0, 4)} ${code.slice(4)}` });
    expect(ok.answer.body).toBe('');
    card = await cardWait;
    const notice = await t.fake.waitFor((c) => c.method === 'response_url' && /waits for a second admin/.test(textOf(c.args)), 5000, ok.since);
    expect(textOf(notice.args)).toContain(`Recovery #${recoveryId} for *bob* now waits for a second admin`);
  });

  it('posts a card with who asked, for whom, the checks and the evidence, and no code', async () => {
    const text = textOf(card.args);
    expect(text).toContain(`2FA recovery #${recoveryId}: bob`);
    expect(text).toContain('<@U_ALICE> (alice)');
    expect(text).toContain('In person, photo ID checked');
    expect(text).toContain('Called bob back on the number on file');
    expect(text).toMatch(/E-mail code: passed .* \(2 attempts\)/);
    expect(buttonsOf(card.args.blocks).map((b) => b.text)).toEqual(['Approve', 'Reject']);
    expect(JSON.stringify(card.args)).not.toContain(code);
  });

  it('refuses the initiator, the target and non-admins on Approve; nothing changes', async () => {
    const before = await snapshot(db);
    const approve = buttonsOf(card.args.blocks).find((b) => b.text === 'Approve')!;
    const ref = { ...approve, channel: 'C_APPROVALS', message: { ts: card.args.ts ?? undefined } };
    const self = await t.driver.reply(await t.driver.click('U_ALICE', ref));
    expect(textOf(self.args)).toMatch(/You opened recovery #\d+: a second admin must approve it/);
    const target = await t.driver.reply(await t.driver.click('U_BOB', ref));
    expect(textOf(target.args)).toMatch(/Only admins can use this button/);
    const member = await t.driver.reply(await t.driver.click('U_EVE', ref));
    expect(textOf(member.args)).toMatch(/Only admins can use this button/);
    // An admin without 2FA is refused at the click, not after typing into a form they cannot complete.
    const since = t.fake.calls.length;
    const noTwoFa = await t.driver.reply(await t.driver.click('U_DAN', ref));
    expect(noTwoFa.method).toBe('response_url');
    expect(textOf(noTwoFa.args)).toMatch(/Approving a 2FA recovery needs your 2FA code, but your account has no two-factor authentication/);
    expect(t.fake.calls.slice(since).some((c) => c.method === 'views.open')).toBe(false);
    const forged = await t.driver.reply(await t.driver.click('U_CAROL', { ...ref, value: '{"r":"1 OR 1=1"}' }));
    expect(textOf(forged.args)).toMatch(/not valid any more/);
    const missing = await t.driver.reply(await t.driver.click('U_CAROL', { ...ref, value: '{"r":99999}' }));
    expect(textOf(missing.args)).toMatch(/There is no 2FA recovery #99999/);
    expect(await snapshot(db)).toEqual(before);
  });

  it('a second admin approves with their 2FA code: 2FA off, audited, user told, card updated', async () => {
    const approve = buttonsOf(card.args.blocks).find((b) => b.text === 'Approve')!;
    const modal = await t.driver.reply(await t.driver.click('U_CAROL', { ...approve, channel: 'C_APPROVALS' }));
    expect(modal.method).toBe('views.open');
    expect(modal.args.view.blocks.map((b: any) => b.block_id)).toContain('totp');

    const wrong = await t.driver.submit('U_CAROL', modal.args.view, { totp: '000000' });
    expect(wrong.ack.errors.totp).toMatch(/not valid/);
    expect((await db.query<any>('SELECT two_fa_enabled FROM "user" WHERE id = $1', [bob.id])).rows[0].two_fa_enabled).toBe(true);

    const { since } = await t.driver.submit('U_CAROL', modal.args.view, { totp: await stepUp.of(carol) });
    const update = await t.fake.waitFor((c) => c.method === 'chat.update' && c.args.channel === 'C_APPROVALS', 5000, since);
    expect(textOf(update.args)).toContain('Approved by carol');
    expect(buttonsOf(update.args.blocks)).toEqual([]);
    const dm = await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === 'D_U_BOB', 5000, since);
    expect(textOf(dm.args)).toMatch(/enable 2FA again/);

    const user = (await db.query<any>('SELECT two_fa_enabled, totp_secret FROM "user" WHERE id = $1', [bob.id])).rows[0];
    expect(user).toEqual({ two_fa_enabled: false, totp_secret: null });
    const [audit] = await auditRows(db, '2fa_disabled');
    expect(audit).toMatchObject({ user_id: carol.id, entity_type: 'user', entity_id: bob.id });
    expect(audit.details).toMatchObject({ recovery_id: recoveryId, initiator: 'alice', approver: 'carol', slack_user: 'U_CAROL' });
    expect(audit.details.checks.email.result).toBe('passed');
    const notes = (await db.query<any>('SELECT title FROM notification WHERE user_id = $1', [bob.id])).rows;
    expect(notes.map((n) => n.title)).toEqual(['Two-factor authentication was reset']);

    // A late second click is told who decided; nothing changes.
    const before = await snapshot(db);
    const late = await t.driver.reply(await t.driver.click('U_CAROL', { ...approve, channel: 'C_APPROVALS' }));
    expect(textOf(late.args)).toMatch(/already approved by carol/);
    expect(await snapshot(db)).toEqual(before);
  });

  it('audited every state change of the recovery', async () => {
    const rows = (await auditRows(db)).filter((r: any) => r.details?.recovery_id === recoveryId).map((r: any) => r.action);
    expect(rows).toEqual([
      '2fa_recovery_opened',
      '2fa_recovery_check_failed',
      '2fa_recovery_check_passed',
      '2fa_recovery_submitted',
      '2fa_disabled',
    ]);
  });

  it('never put a code, TOTP secret or e-mail address in a log line or a channel message', async () => {
    const logs = logLines.join('\n');
    expect(logs).toContain('2fa recovery approved');
    const codes = mail.received.map((m) => /(\d{4}) (\d{4})/.exec(m.text)!).map((m) => m[1] + m[2]);
    expect(codes.length).toBeGreaterThan(0);
    const channelPosts = t.fake.calls.filter((c) => ['chat.postMessage', 'chat.update', 'response_url', 'chat.postEphemeral'].includes(c.method));
    const posted = JSON.stringify(channelPosts.map((c) => c.args));
    for (const c of codes) {
      expect(logs).not.toContain(c);
      expect(posted).not.toContain(c);
    }
    for (const secret of [alice.totpSecret!, carol.totpSecret!, bob.totpSecret!]) {
      expect(logs).not.toContain(secret);
      expect(posted).not.toContain(secret);
    }
    expect(logs).not.toMatch(/@example\.com/);
    expect(posted).not.toMatch(/@example\.com/);
  });
});

describe('rejecting', () => {
  it('needs a reason, then closes the recovery and updates the card', async () => {
    await db.query(`UPDATE "user" SET two_fa_enabled = true, totp_secret = $2 WHERE id = $1`, [bob.id, bob.totpSecret]);
    const form = await openForm();
    const sent = await t.driver.submit('U_ALICE', form.args.view, { ...FORM, totp: await stepUp.of(alice) });
    const ack = { view: (await t.driver.viewUpdate(sent.viewId)).args.view };
    const code = mail.lastCodeTo('bob@example.com')!;
    const cardWait = t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === 'C_APPROVALS', 5000, t.fake.calls.length);
    await t.driver.submit('U_ALICE', ack.view, { email_code: code });
    const card2 = await cardWait;
    const reject = buttonsOf(card2.args.blocks).find((b) => b.text === 'Reject')!;
    const bobClick = await t.driver.reply(await t.driver.click('U_BOB', { ...reject, channel: 'C_APPROVALS' }));
    expect(textOf(bobClick.args)).toMatch(/Only admins/);
    const modal = await t.driver.reply(await t.driver.click('U_CAROL', { ...reject, channel: 'C_APPROVALS' }));
    const before = await snapshot(db);
    const empty = await t.driver.submit('U_CAROL', modal.args.view, { reason: '  ' });
    expect(empty.ack.errors.reason).toMatch(/Give a reason/);
    expect(await snapshot(db)).toEqual(before);
    const { since } = await t.driver.submit('U_CAROL', modal.args.view, { reason: 'Badge photo did not match' });
    const update = await t.fake.waitFor((c) => c.method === 'chat.update' && c.args.channel === 'C_APPROVALS', 5000, since);
    expect(textOf(update.args)).toContain('Rejected by carol');
    expect(textOf(update.args)).toContain('Badge photo did not match');
    const [audit] = (await auditRows(db, '2fa_recovery_rejected')).slice(-1);
    expect(audit.details).toMatchObject({ reason: 'Badge photo did not match', initiator: 'alice' });
    expect((await db.query<any>('SELECT two_fa_enabled FROM "user" WHERE id = $1', [bob.id])).rows[0].two_fa_enabled).toBe(true);
  });
});
