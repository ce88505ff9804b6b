import { Writable } from 'node:stream';
import { generate } from 'otplib';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { Db } from '../../src/db/index.js';
import { USER_COLUMNS, userRowSchema } from '../../src/domain/user.js';
import { ConflictError, ForbiddenError, StepUpError, ValidationErrors } from '../../src/errors.js';
import { redactPaths } from '../../src/logger.js';
import type { Chat, PostedRef } from '../../src/services/chat.js';
import type { Actor } from '../../src/services/identity.js';
import { runJobOnce } from '../../src/jobs/runner.js';
import { twofaExpiryJob } from '../../src/jobs/twofa.js';
import { createServices, type Services } from '../../src/services/index.js';
import { usedStepKey } from '../../src/services/step-up.js';
import type { Store } from '../../src/store/index.js';
import type { Message } from '../../src/ui.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, linkSlack, snapshot, totpOf, type TestUser } from '../helpers/fixtures.js';
import { MailServer } from '../helpers/mail-server.js';
import { createTestStore } from '../helpers/store.js';
import { noDirectory } from '../helpers/identity.js';

/** Records what Warden sends to chat; `failDm` makes DMs fail like an unreachable Slack. */
class RecordingChat implements Chat {
  posts: { channel: string; message: Message; ts: string }[] = [];
  updates: { ref: PostedRef; message: Message }[] = [];
  dms: { user: string; message: Message }[] = [];
  failDm = false;
  failPost = false;
  private n = 0;
  async post(channel: string, message: Message) {
    if (this.failPost) throw new Error('slack unreachable');
    const ts = `17000000${++this.n}.0001`;
    this.posts.push({ channel, message, ts });
    return { channel, ts };
  }
  async update(ref: PostedRef, message: Message) {
    this.updates.push({ ref, message });
  }
  async dm(user: string, message: Message) {
    if (this.failDm) throw new Error('slack unreachable');
    this.dms.push({ user, message });
    return { channel: `D_${user}`, ts: `1.${++this.n}` };
  }
  async ephemeral() {}
  async upload() {}
  async publishHome() {}
}

const allText = (m: Message) => [m.text, ...(m.blocks ?? []).map((b) => JSON.stringify(b))].join('\n');

let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
let mail: MailServer;
const logLines: string[] = [];
let chat: RecordingChat;
let services: Services;
let services2: Services; // RECOVERY_MIN_WARDEN_CHECKS=2
let alice: TestUser, carol: TestUser, dan: TestUser, eve: TestUser;
let bob: TestUser, nofa: TestUser, frank: TestUser, gina: TestUser, hank: TestUser;

function build(env: Record<string, string> = {}): Services {
  // Pacing (one post a second per channel) is tested with the outbox; here it would only delay cards.
  const config = loadConfig({ APPROVALS_CHANNEL: 'C_APPROVALS', LOG_LEVEL: 'debug', OUTBOX_PACE_MS: '0', ...mail.env(), ...env });
  const logger = pino(
    { level: 'debug', redact: { paths: redactPaths, censor: '[redacted]' } },
    new Writable({ write: (c, _e, cb) => (logLines.push(String(c)), cb()) }),
  );
  return createServices({ config, db, store, logger, chat, directory: noDirectory });
}

async function actor(u: TestUser, slackUserId = `U_${u.username.toUpperCase()}`): Promise<Actor> {
  const { rows } = await db.query(`SELECT ${USER_COLUMNS} FROM "user" WHERE id = $1`, [u.id]);
  return { user: userRowSchema.parse(rows[0]), slack: { userId: slackUserId, teamId: 'T_WARDEN', channelId: 'C_ADMIN' } };
}

const input = (username: string, warden: string[] = ['email']) => ({
  username,
  manualChecks: ['phone_callback', 'manager'],
  evidence: `Called back the number on file, manager confirmed; contact ${username}@example.com`,
  wardenChecks: warden,
});

async function userRow(u: TestUser) {
  return (await db.query<any>('SELECT two_fa_enabled, totp_secret FROM "user" WHERE id = $1', [u.id])).rows[0];
}

async function recoveryTables() {
  return {
    rec: (await db.query('SELECT * FROM warden_2fa_recovery ORDER BY id')).rows,
    codes: (await db.query('SELECT * FROM warden_2fa_code ORDER BY id')).rows,
  };
}

/**
 * The initiator's current step-up code. Recovery opens need one each; so that this file
 * does not wait for a new 30-second step per open, the code's "already used" mark is
 * cleared first (replay refusal has its own tests in test/security/).
 */
async function freshCode(u: TestUser): Promise<string> {
  if (!u.totpSecret) return '000000';
  await forgetUsedCodes(u);
  return generate({ secret: u.totpSecret!, epoch: Math.floor(Date.now() / 30_000) * 30 + 15 });
}

async function forgetUsedCodes(u: TestUser): Promise<void> {
  const step = Math.floor(Date.now() / 30_000);
  for (const st of [step - 1, step, step + 1]) await store.del(usedStepKey(u.id, st));
}

/**
 * Delivers what is queued, by both Services' outboxes. They share the database like two
 * replicas, and one's kick (0 and 150 ms after it queued something) may claim a row queued by
 * the other: waiting on one outbox alone then returned before the other had posted it.
 */
async function deliverQueued(): Promise<void> {
  await Promise.all([services.outbox.deliverDue(), services2.outbox.deliverDue()]);
}

/** Opens a recovery and sends its codes (after its transaction, as the form does after its ack). */
async function openSent(svc: Services, a: Actor, i: Parameters<Services['twofaRecovery']['open']>[1]) {
  return (await (await svc.twofaRecovery.open(a, i)).send()).recovery;
}

/** Opens a recovery for `who` by alice via e-mail and returns it with the mailed code. */
async function openWithEmail(svc: Services, who: TestUser, by: TestUser = alice) {
  const r = await openSent(svc, await actor(by), { ...input(who.username), totp: await freshCode(by) });
  const code = mail.lastCodeTo(who.email)!;
  expect(code).toMatch(/^\d{8}$/);
  return { r, code };
}

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  mail = await new MailServer().start();
  chat = new RecordingChat();
  alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  carol = await createUser(db, { username: 'carol', role: 'admin', twoFa: true, area: null });
  dan = await createUser(db, { username: 'dan', role: 'admin', twoFa: true, area: null });
  eve = await createUser(db, { username: 'eve', role: 'biller', area: null });
  bob = await createUser(db, { username: 'bob', twoFa: true });
  nofa = await createUser(db, { username: 'nofa' });
  frank = await createUser(db, { username: 'frank', twoFa: true });
  gina = await createUser(db, { username: 'gina', twoFa: true });
  hank = await createUser(db, { username: 'hank', role: 'admin', twoFa: true, area: null });
  for (const u of [alice, carol, dan, eve]) await linkSlack(db, `U_${u.username.toUpperCase()}`, u.id);
  await linkSlack(db, 'U_BOB', bob.id);
  await linkSlack(db, 'U_HANK', hank.id);
  await db.query(`UPDATE warden_slack_link SET created_at = now() - interval '2 days' WHERE slack_user_id IN ('U_BOB', 'U_HANK')`);
  await linkSlack(db, 'U_FRANK', frank.id); // linked just now: too fresh for a Slack code
  services = build();
  services2 = build({ RECOVERY_MIN_WARDEN_CHECKS: '2' });
});

afterAll(async () => {
  await store?.close();
  await mail?.stop();
  await cleanup?.();
});

beforeEach(async () => {
  mail.mode = 'ok';
  chat.failDm = false;
  chat.failPost = false;
  // Each test starts with no open recovery and a fresh send budget.
  await db.query(`UPDATE warden_2fa_recovery SET status = 'cancelled' WHERE status IN ('verifying', 'pending')`);
  for (const u of [bob, frank, gina, hank, nofa]) await store.del(`twofa-recovery:sends:${u.id}`);
  for (const u of [alice, carol, dan, hank]) {
    await store.del(`twofa-recovery:sends-by:${u.id}`);
    await forgetUsedCodes(u);
  }
});

describe('opening a recovery', () => {
  it('refuses a user without 2FA, oneself, non-admins and a missing approvals channel, and opens nothing', async () => {
    const before = await snapshot(db);
    const tables = await recoveryTables();
    await expect(services.twofaRecovery.open(await actor(alice), { ...input('nofa'), totp: await freshCode(alice) })).rejects.toThrow(/does not have 2FA enabled.*Nothing was opened/);
    await expect(services.twofaRecovery.prepare(await actor(alice), 'alice')).rejects.toBeInstanceOf(ForbiddenError);
    await expect(services.twofaRecovery.open(await actor(eve), { ...input('bob'), totp: await freshCode(eve) })).rejects.toThrow(/Only admins/);
    const noChannel = build({ APPROVALS_CHANNEL: '' });
    await expect(noChannel.twofaRecovery.prepare(await actor(alice), 'bob')).rejects.toThrow(/APPROVALS_CHANNEL is not set/);
    await expect(services.twofaRecovery.prepare(await actor(alice), 'ghost')).rejects.toThrow(/No user named `ghost`/);
    expect(await snapshot(db)).toEqual(before);
    expect(await recoveryTables()).toEqual(tables);
    expect(mail.received.length).toBe(0);
  });

  it('validates the form: checks performed, evidence, enough Warden checks', async () => {
    const a = await actor(alice);
    const err = await services.twofaRecovery
      .open(a, { username: 'bob', manualChecks: [], evidence: 'short', wardenChecks: [] })
      .catch((e) => e);
    expect(err).toBeInstanceOf(ValidationErrors);
    expect(Object.keys(err.fields).sort()).toEqual(['evidence', 'manual_checks', 'warden_checks']);
    const two = await services2.twofaRecovery.open(a, { ...input('bob', ['email']), totp: await freshCode(alice) }).catch((e) => e);
    expect(two.fields.warden_checks).toMatch(/at least 2/);
    expect((await recoveryTables()).rec.filter((r: any) => r.status === 'verifying')).toEqual([]);
  });

  it('offers the Slack code only for a link older than 24 hours', async () => {
    const prepBob = await services.twofaRecovery.prepare(await actor(alice), 'bob');
    expect(prepBob.kind === 'new' && prepBob.available.slack).toMatchObject({ ok: true, slackUserId: 'U_BOB' });
    const prepFrank = await services.twofaRecovery.prepare(await actor(alice), 'frank');
    expect(prepFrank.kind === 'new' && prepFrank.available.slack.ok).toBe(false);
    expect(prepFrank.kind === 'new' && prepFrank.available.slack.why).toMatch(/less than 24 hours/);
    await expect(services.twofaRecovery.open(await actor(alice), { ...input('frank', ['slack']), totp: await freshCode(alice) })).rejects.toThrow(/Slack DM code cannot be used/);
    // With no e-mail configured and no usable Slack link, nothing can verify frank.
    const noMail = build({ EMAIL_API_URL: '', EMAIL_API_KEY: '', EMAIL_FROM: '' });
    await expect(noMail.twofaRecovery.prepare(await actor(alice), 'frank')).rejects.toThrow(/cannot run enough identity checks.*Nothing was opened/);
  });

  it('stores only a salted hash of an 8-digit code, e-mailed to the address on record', async () => {
    const { r, code } = await openWithEmail(services, bob);
    expect(r.status).toBe('verifying');
    expect(r.checks.email).toMatchObject({ result: 'sent', sends: 1, attempts: 0 });
    const { rows } = await db.query<any>('SELECT * FROM warden_2fa_code WHERE recovery_id = $1', [r.id]);
    expect(rows).toHaveLength(1);
    expect(rows[0].code_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(rows)).not.toContain(code);
    expect(rows[0].attempts).toBe(0);
    expect(rows[0].expires_at.getTime() - rows[0].created_at.getTime()).toBe(10 * 60 * 1000);
    const last = mail.received.at(-1)!;
    expect(last.to).toEqual(['bob@example.com']);
    expect(last.authorization).toBe('Bearer SG.test-key');
    const [opened] = (await auditRows(db, '2fa_recovery_opened')).slice(-1);
    expect(opened).toMatchObject({ user_id: alice.id, entity_type: '2fa_recovery', entity_id: r.id });
    expect(opened.details).toMatchObject({ target: 'bob', manual_checks: ['phone_callback', 'manager'], warden_checks: ['email'] });
    expect(JSON.stringify(opened.details)).not.toContain('bob@example.com');
  });

  it('sends the Slack code by DM to the linked account only', async () => {
    const dmsBefore = chat.dms.length;
    const r = await openSent(services, await actor(alice), { ...input('bob', ['slack']), totp: await freshCode(alice) });
    const dm = chat.dms.slice(dmsBefore);
    expect(dm.map((d) => d.user)).toEqual(['U_BOB']);
    const code = /(\d{4}) (\d{4})/.exec(String(dm[0].message.text))!;
    const out = await services.twofaRecovery.verifyCodes(await actor(alice), r.id, { slack: `${code[1]}-${code[2]}` });
    expect(out.passed).toEqual(['slack']);
    expect(out.submitted).toBe(true);
  });

  it('refuses a second open recovery for the same user, also when two admins open at once', async () => {
    await openWithEmail(services, bob);
    const before = await recoveryTables();
    await expect(services.twofaRecovery.open(await actor(carol), { ...input('bob'), totp: await freshCode(carol) })).rejects.toBeInstanceOf(ConflictError);
    // alice herself is sent back to the recovery she has open
    const resume = await services.twofaRecovery.prepare(await actor(alice), 'bob');
    expect(resume.kind).toBe('resume');
    expect(await recoveryTables()).toEqual(before);

    const results = await Promise.allSettled([
      services.twofaRecovery.open(await actor(alice), { ...input('gina'), totp: await freshCode(alice) }),
      services.twofaRecovery.open(await actor(carol), { ...input('gina'), totp: await freshCode(carol) }),
    ]);
    expect(results.filter((x) => x.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((x) => x.status === 'rejected') as PromiseRejectedResult;
    expect(rejected.reason).toBeInstanceOf(ConflictError);
    const { rows } = await db.query(`SELECT count(*)::int AS n FROM warden_2fa_recovery WHERE target_user_id = $1 AND status = 'verifying'`, [gina.id]);
    expect(rows[0].n).toBe(1);
  });

  it('a code the mail API (down, timing out) or Slack does not take is revoked and marked unsent, with an audit row', async () => {
    const a = await actor(alice);
    for (const mode of ['500', 'drop', 'hang'] as const) {
      mail.mode = mode;
      const opened = await services.twofaRecovery.open(a, { ...input('bob'), totp: await freshCode(alice) });
      // The recovery and its code are committed before any send (the form is answered first).
      expect(opened.recovery.status, mode).toBe('verifying');
      const sent = await opened.send();
      expect(sent.unsent.email?.reason, mode).toMatch(/^Could not send the e-mail code: /);
      expect(sent.unsent.email?.next, mode).toMatch(/Run `\/2fa recover bob` to send a new e-mail code or to cancel recovery/);
      expect(sent.recovery.checks.email.result, mode).toBe('unsent');
      const codes = (await db.query<any>('SELECT revoked_at FROM warden_2fa_code WHERE recovery_id = $1', [sent.recovery.id])).rows;
      expect(codes.every((c: any) => c.revoked_at), mode).toBeTruthy();
      expect((await auditRows(db, '2fa_recovery_code_unsent')).filter((x: any) => x.entity_id === sent.recovery.id), mode).toHaveLength(1);
      await services.twofaRecovery.cancel(a, sent.recovery.id);
      await store.del(`twofa-recovery:sends:${bob.id}`);
    }
    mail.mode = 'ok';
    chat.failDm = true;
    const sent = await (await services.twofaRecovery.open(a, { ...input('bob', ['email', 'slack']), totp: await freshCode(alice) })).send();
    expect(Object.keys(sent.unsent)).toEqual(['slack']);
    expect(sent.unsent.slack?.reason).toMatch(/Could not send the Slack code/);
    expect(sent.recovery.checks).toMatchObject({ email: { result: 'sent' }, slack: { result: 'unsent' } });
    chat.failDm = false;
    await services.twofaRecovery.cancel(a, sent.recovery.id);
    await store.del(`twofa-recovery:sends:${bob.id}`);
    await openWithEmail(services, bob);
  });

  it('rate-limits code sends per user', async () => {
    const { r } = await openWithEmail(services, bob);
    const a = await actor(alice);
    for (let i = 0; i < 5; i++) await services.twofaRecovery.resend(a, r.id, 'email');
    const before = await recoveryTables();
    await expect(services.twofaRecovery.resend(a, r.id, 'email')).rejects.toThrow(/Too many verification codes/);
    expect(await recoveryTables()).toEqual(before);
  });
});

describe('verifying codes', () => {
  it('counts wrong codes and locks the code after 5 attempts, even against the right code', async () => {
    const { r, code } = await openWithEmail(services, bob);
    const a = await actor(alice);
    const wrong = code === '00000000' ? '11111111' : '00000000';
    for (let i = 1; i <= 4; i++) {
      const out = await services.twofaRecovery.verifyCodes(a, r.id, { email: wrong });
      expect(out.errors.email).toBe(`Wrong code (${i} of 5 attempts used).`);
    }
    const fifth = await services.twofaRecovery.verifyCodes(a, r.id, { email: wrong });
    expect(fifth.errors.email).toMatch(/locked after 5 wrong attempts/);
    const userBefore = await userRow(bob);
    const sixth = await services.twofaRecovery.verifyCodes(a, r.id, { email: code });
    expect(sixth.errors.email).toMatch(/locked after 5 wrong attempts/);
    expect(sixth.submitted).toBe(false);
    const rec = await services.twofaRecovery.get(r.id);
    expect(rec.status).toBe('verifying');
    expect(rec.checks.email).toMatchObject({ result: 'locked', attempts: 5 });
    expect(await userRow(bob)).toEqual(userBefore);
    const failed = (await auditRows(db, '2fa_recovery_check_failed')).filter((x: any) => x.entity_id === r.id);
    expect(failed.map((x: any) => x.details.attempts)).toEqual([1, 2, 3, 4, 5]);
    expect(failed.at(-1).details.locked).toBe(true);
    // A new code works again.
    await services.twofaRecovery.resend(a, r.id, 'email');
    const fresh = mail.lastCodeTo('bob@example.com')!;
    expect((await services.twofaRecovery.verifyCodes(a, r.id, { email: code })).errors.email).toBeDefined(); // old code is dead
    expect((await services.twofaRecovery.verifyCodes(a, r.id, { email: fresh })).submitted).toBe(true);
  });

  it('refuses an expired code and malformed input without counting it', async () => {
    const { r, code } = await openWithEmail(services, bob);
    const a = await actor(alice);
    const bad = await services.twofaRecovery.verifyCodes(a, r.id, { email: '12ab' });
    expect(bad.errors.email).toMatch(/8-digit code/);
    await db.query(`UPDATE warden_2fa_code SET expires_at = now() - interval '1 second' WHERE recovery_id = $1`, [r.id]);
    const out = await services.twofaRecovery.verifyCodes(a, r.id, { email: code });
    expect(out.errors.email).toMatch(/expired/);
    const { rows } = await db.query<any>('SELECT attempts, used_at FROM warden_2fa_code WHERE recovery_id = $1', [r.id]);
    expect(rows[0]).toEqual({ attempts: 0, used_at: null });
    expect((await services.twofaRecovery.get(r.id)).status).toBe('verifying');
  });

  it('refuses a code replayed after success, and codes from anyone but the initiator', async () => {
    // Two checks needed: the e-mail code passes, the recovery keeps collecting.
    const r = await openSent(services2, await actor(alice), { ...input('bob', ['email', 'slack']), totp: await freshCode(alice) });
    const code = mail.lastCodeTo('bob@example.com')!;
    await expect(services2.twofaRecovery.verifyCodes(await actor(carol), r.id, { email: code })).rejects.toThrow(/Only alice/);
    const first = await services2.twofaRecovery.verifyCodes(await actor(alice), r.id, { email: code });
    expect(first.passed).toEqual(['email']);
    expect(first.submitted).toBe(false);
    const tables = await recoveryTables();
    const replay = await services2.twofaRecovery.verifyCodes(await actor(alice), r.id, { email: code });
    expect(replay.errors.email).toMatch(/already passed/);
    expect(await recoveryTables()).toEqual(tables);
    // Once submitted, no code is taken any more.
    const slack = /(\d{4}) (\d{4})/.exec(String(chat.dms.at(-1)!.message.text))!;
    const done = await services2.twofaRecovery.verifyCodes(await actor(alice), r.id, { slack: slack[1] + slack[2] });
    expect(done.submitted).toBe(true);
    expect(done.recovery.checks).toMatchObject({ email: { result: 'passed' }, slack: { result: 'passed' } });
    await expect(services2.twofaRecovery.verifyCodes(await actor(alice), r.id, { email: code })).rejects.toThrow(/already waiting for approval/);
  });

  it('posts the card to APPROVALS_CHANNEL with checks and evidence, never a code or an e-mail address', async () => {
    const postsBefore = chat.posts.length;
    const { r, code } = await openWithEmail(services, bob);
    const out = await services.twofaRecovery.verifyCodes(await actor(alice), r.id, { email: code });
    expect(out.submitted).toBe(true);
    // Queued with the submission, posted by the outbox after the commit — here by the other
    // instance, whose delivery pass starts first and claims the card (as a late kick did in CI).
    void services2.outbox.deliverDue();
    await deliverQueued();
    const card = chat.posts.slice(postsBefore).find((p) => allText(p.message).includes(`2FA recovery #${r.id}:`))!;
    expect(card.channel).toBe('C_APPROVALS');
    const text = allText(card.message);
    expect(text).toContain('2FA recovery #' + r.id);
    expect(text).toContain('<@U_ALICE> (alice)');
    expect(text).toContain('Phone call-back to the number on file');
    expect(text).toContain('E-mail code: passed');
    expect(text).toContain('bo***@***.com'); // the e-mail in the evidence is masked
    expect(text).not.toContain('bob@example.com');
    expect(text).not.toContain(code);
    expect(text).toContain('2fa:approve');
    const rec = await services.twofaRecovery.get(r.id);
    expect(rec).toMatchObject({ status: 'pending', card_channel: 'C_APPROVALS' });
    expect(await services.twofaRecovery.cardRef(rec)).toEqual({ channel: 'C_APPROVALS', ts: card.ts });
    expect((await auditRows(db, '2fa_recovery_submitted')).some((x: any) => x.entity_id === r.id)).toBe(true);
  });

  it('the card is queued with the submission: Slack refusing it delays the card, never the submission; posted once', async () => {
    const { r, code } = await openWithEmail(services, bob);
    const postsBefore = chat.posts.length;
    chat.failPost = true;
    try {
      const out = await services.twofaRecovery.verifyCodes(await actor(alice), r.id, { email: code });
      expect(out.submitted).toBe(true);
      expect((await services.twofaRecovery.get(r.id)).status).toBe('pending');
      await deliverQueued();
      expect(chat.posts.length).toBe(postsBefore);
    } finally {
      chat.failPost = false;
    }
    // Slack takes posts again; the retry (due now instead of after its backoff) posts it once.
    await db.query(`UPDATE warden_outbox SET next_attempt_at = now() WHERE dedupe_key = $1`, [`2fa-recovery:${r.id}:card`]);
    await deliverQueued();
    await deliverQueued();
    const cards = chat.posts.slice(postsBefore).filter((p) => allText(p.message).includes(`2FA recovery #${r.id}`));
    expect(cards).toHaveLength(1);
    expect(await services.twofaRecovery.cardRef(await services.twofaRecovery.get(r.id))).toEqual({ channel: 'C_APPROVALS', ts: cards[0].ts });
  });
});

async function pendingFor(who: TestUser, by: TestUser = alice) {
  const { r, code } = await openWithEmail(services, who, by);
  const out = await services.twofaRecovery.verifyCodes(await actor(by), r.id, { email: code });
  expect(out.submitted).toBe(true);
  return out.recovery;
}

describe('deciding', () => {
  it('never lets the initiator, the target or a non-admin approve; nothing changes', async () => {
    const r = await pendingFor(hank); // hank is an admin, so he could try to approve his own
    const before = await snapshot(db);
    await expect(services.twofaRecovery.approve(await actor(alice), r.id, await totpOf(alice))).rejects.toThrow(/second admin must approve/);
    await expect(services.twofaRecovery.approve(await actor(hank), r.id, await totpOf(hank))).rejects.toThrow(/your own account/);
    await expect(services.twofaRecovery.approve(await actor(eve), r.id, '123456')).rejects.toThrow(/Only admins/);
    await expect(services.twofaRecovery.approve(await actor(carol), r.id, '000000')).rejects.toBeInstanceOf(StepUpError);
    // Only the wrong code left a trace: a stepup_failed audit row naming what it guarded.
    const after = await snapshot(db);
    const added = after.audit_log.slice(before.audit_log.length) as any[];
    expect(added.map((a) => [a.action, a.user_id, a.details.guarded_action])).toEqual([['stepup_failed', carol.id, '2fa_recovery_approve']]);
    expect({ ...after, audit_log: before.audit_log }).toEqual(before);
    expect((await services.twofaRecovery.get(r.id)).status).toBe('pending');
  });

  it('approves in one transaction: 2FA off, secret cleared, 2fa_disabled audited, user told, card updated', async () => {
    const r = await pendingFor(bob);
    const dmsBefore = chat.dms.length;
    const rec = await services.twofaRecovery.approve(await actor(carol), r.id, await totpOf(carol));
    // The DM and the card update were queued in the deciding transaction; the outbox delivers them.
    await deliverQueued();
    expect(rec).toMatchObject({ status: 'approved', decided_by: carol.id, decided_by_username: 'carol' });
    expect(await userRow(bob)).toEqual({ two_fa_enabled: false, totp_secret: null });
    const [audit] = (await auditRows(db, '2fa_disabled')).slice(-1);
    expect(audit).toMatchObject({ user_id: carol.id, entity_type: 'user', entity_id: bob.id });
    expect(audit.details).toMatchObject({
      recovery_id: r.id,
      initiator: 'alice',
      approver: 'carol',
      checks: { email: { result: 'passed', attempts: 1 } },
      manual_checks: ['phone_callback', 'manager'],
    });
    expect(audit.before_state.two_fa_enabled).toBe(true);
    expect(audit.after_state.two_fa_enabled).toBe(false);
    expect(JSON.stringify(audit)).not.toMatch(/totp_secret/);
    const { rows: notes } = await db.query<any>('SELECT * FROM notification WHERE user_id = $1', [bob.id]);
    expect(notes.at(-1).message).toMatch(/Enable it again at your next login/);
    expect(chat.dms.slice(dmsBefore).map((d) => d.user)).toEqual(['U_BOB']);
    const upd = chat.updates.at(-1)!;
    expect(upd.ref).toEqual(await services.twofaRecovery.cardRef(r));
    expect(upd.ref.ts).toBeTruthy();
    expect(allText(upd.message)).toContain('Approved by carol');
    expect(allText(upd.message)).not.toContain('2fa:approve');
    // restore bob's 2FA for the next tests
    await db.query(`UPDATE "user" SET two_fa_enabled = true, totp_secret = $2 WHERE id = $1`, [bob.id, bob.totpSecret]);
  });

  it('lets exactly one of two simultaneous approvals win', async () => {
    const r = await pendingFor(gina);
    const results = await Promise.allSettled([
      services.twofaRecovery.approve(await actor(carol), r.id, await totpOf(carol, 30)),
      services.twofaRecovery.approve(await actor(dan), r.id, await totpOf(dan)),
    ]);
    expect(results.filter((x) => x.status === 'fulfilled')).toHaveLength(1);
    const lost = results.find((x) => x.status === 'rejected') as PromiseRejectedResult;
    expect(lost.reason).toBeInstanceOf(ConflictError);
    expect(lost.reason.message).toMatch(/already approved by (carol|dan)/);
    const audits = (await auditRows(db, '2fa_disabled')).filter((x: any) => x.details.recovery_id === r.id);
    expect(audits).toHaveLength(1);
  });

  it('needs a reason to reject; a rejection closes the recovery and updates the card', async () => {
    const r = await pendingFor(frank);
    const before = await recoveryTables();
    await expect(services.twofaRecovery.reject(await actor(carol), r.id, '  ')).rejects.toBeInstanceOf(ValidationErrors);
    expect(await recoveryTables()).toEqual(before);
    const rec = await services.twofaRecovery.reject(await actor(carol), r.id, 'Caller could not confirm the employee ID');
    await deliverQueued();
    expect(rec).toMatchObject({ status: 'rejected', rejection_reason: 'Caller could not confirm the employee ID' });
    expect(allText(chat.updates.at(-1)!.message)).toContain('Rejected by carol');
    await expect(services.twofaRecovery.approve(await actor(dan), r.id, await totpOf(dan, 30))).rejects.toThrow(/already rejected by carol/);
    expect((await userRow(frank)).two_fa_enabled).toBe(true);
  });

  it('expires open recoveries after RECOVERY_TTL: audited, card updated, no approval afterwards', async () => {
    const r = await pendingFor(frank);
    await db.query(`UPDATE warden_2fa_recovery SET expires_at = now() - interval '1 minute' WHERE id = $1`, [r.id]);
    await expect(services.twofaRecovery.approve(await actor(carol), r.id, await totpOf(carol, -30))).rejects.toThrow(/expired/);
    // The scheduled job (run once, as one replica's tick would) does the expiring.
    expect(await runJobOnce(services, twofaExpiryJob)).toBe('ran');
    expect((await services.twofaRecovery.get(r.id)).status).toBe('expired');
    const [audit] = (await auditRows(db, '2fa_recovery_expired')).slice(-1);
    expect(audit).toMatchObject({ user_id: null, entity_id: r.id });
    expect(audit.details.was).toBe('pending');
    await deliverQueued();
    expect(allText(chat.updates.at(-1)!.message)).toContain('Expired');
    expect(await services.twofaRecovery.expireDue()).toEqual([]);
    const { rows } = await db.query<any>('SELECT revoked_at FROM warden_2fa_code WHERE recovery_id = $1 AND used_at IS NULL', [r.id]);
    expect(rows.every((x: any) => x.revoked_at)).toBe(true);
  });

  it('wrote no code, secret or e-mail address to any log line', async () => {
    expect(logLines.length).toBeGreaterThan(0);
    const all = logLines.join('\n');
    expect(all).toContain('2fa recovery opened');
    expect(all).not.toMatch(/@example\.com/);
    for (const u of [alice, carol, dan, bob, frank, gina, hank]) expect(all).not.toContain(u.totpSecret!);
    for (const m of mail.received) {
      const code = /(\d{4}) (\d{4})/.exec(m.text)!;
      expect(all).not.toContain(code[1] + code[2]);
      expect(all).not.toContain(`${code[1]} ${code[2]}`);
    }
    for (const d of chat.dms) {
      const code = /(\d{4}) (\d{4})/.exec(String(d.message.text));
      if (code) expect(all).not.toContain(code[1] + code[2]);
    }
  });
});
