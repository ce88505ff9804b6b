import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { buttonsOf, textOf } from '../../src/slack/sim/driver.js';
import type { CapturedCall } from '../../src/slack/sim/fake-slack.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, linkSlack, snapshot, totpOf, type TestUser, withoutStepUpFailures } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';

/**
 * Issue 4 end to end, through signed Slack requests against the running app:
 * request → card in the approvals channel → Approve (notes + TOTP) / Reject (reason) →
 * role, audit, notification, DM, card updated in place; and every way to get it wrong.
 */

const CHANNEL = 'C_APPROVALS';
let t: TestApp;
let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
let alice: TestUser; // admin with 2FA
let carol: TestUser; // admin with 2FA
let eve: TestUser; // admin without 2FA
let bob: TestUser; // dispatcher without 2FA: the main requester
let dan: TestUser; // biller with 2FA, never an admin

/** Every table a decision touches, for "nothing changed" assertions. */
async function state() {
  return {
    ...(await snapshot(db)),
    cards: (await db.query('SELECT * FROM warden_promotion_card ORDER BY request_id')).rows,
  };
}

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  carol = await createUser(db, { username: 'carol', role: 'admin', twoFa: true, area: null });
  eve = await createUser(db, { username: 'eve', role: 'admin', area: null });
  bob = await createUser(db, { username: 'bob', role: 'dispatcher', area: 'indore' });
  dan = await createUser(db, { username: 'dan', role: 'biller', area: null, twoFa: true });
  for (const [slack, u] of [
    ['U_ALICE', alice],
    ['U_CAROL', carol],
    ['U_EVE', eve],
    ['U_BOB', bob],
    ['U_DAN', dan],
  ] as const) {
    await linkSlack(db, slack, u.id);
  }
  // bob's recent history, as the application wrote it: two failed logins, one lockout, and an old one outside 30 days.
  await db.query(
    `INSERT INTO audit_log (user_id, action, details, ip_address, "timestamp") VALUES
       (NULL, 'login_failed', '{"username":"bob"}', '10.1.2.3', now() - interval '2 days'),
       (NULL, 'login_failed', '{"username":"bob"}', '10.1.2.3', now() - interval '2 days'),
       ($1, 'login_locked', '{"username":"bob"}', '10.1.2.3', now() - interval '2 days'),
       (NULL, 'login_failed', '{"username":"bob"}', '10.1.2.3', now() - interval '45 days')`,
    [bob.id],
  );
  t = await startTestApp({ db, store, env: { APPROVALS_CHANNEL: CHANNEL, PROMOTION_TTL: '7d' } });
  t.fake.addUser({ id: 'U_NOBODY', name: 'nobody', email: 'nobody@elsewhere.org' });
});

afterAll(async () => {
  await t?.warden.services.promotions.idle();
  await t?.stop();
  await store?.close();
  await cleanup?.();
});

const cardPosts = (since = 0) => t.fake.calls.slice(since).filter((c) => c.method === 'chat.postMessage' && c.args.channel === CHANNEL);
const dmsTo = (slackUser: string, since = 0) =>
  t.fake.calls.slice(since).filter((c) => c.method === 'chat.postMessage' && c.args.channel === `D_${slackUser}`);

async function say(user: string, line: string) {
  return textOf((await t.driver.reply(await t.driver.command(user, line))).args);
}

async function cardOf(requestId: number): Promise<{ channel: string; ts: string }> {
  const { rows } = await db.query<{ channel: string; ts: string }>(
    'SELECT channel, ts FROM warden_promotion_card WHERE request_id = $1 AND posted_at IS NOT NULL',
    [requestId],
  );
  expect(rows, `card of #${requestId}`).toHaveLength(1);
  return rows[0];
}

/** The Approve/Reject button of the posted card, as Slack would send it back on a click. */
async function cardButton(requestId: number, verb: 'Approve' | 'Reject') {
  const ref = await cardOf(requestId);
  const post = cardPosts().find((c) => textOf(c.args).includes(`#${requestId}:`))!;
  const b = buttonsOf(post.args.blocks).find((x) => x.text === verb)!;
  return { actionId: b.actionId, value: b.value, channel: ref.channel, message: { ts: ref.ts, blocks: post.args.blocks } };
}

async function openModal(user: string, requestId: number, verb: 'Approve' | 'Reject') {
  const click = await t.driver.click(user, await cardButton(requestId, verb));
  const reply = await t.driver.reply(click);
  return { click, reply, view: reply.method === 'views.open' ? reply.args.view : undefined };
}

async function requestIdOf(username: string): Promise<number> {
  const { rows } = await db.query<{ id: number }>(
    `SELECT r.id FROM promotion_request r JOIN "user" u ON u.id = r.user_id WHERE u.username = $1 ORDER BY r.id DESC LIMIT 1`,
    [username],
  );
  return rows[0].id;
}

describe('/promotions request', () => {
  it('refuses bad reasons, admins and unlinked users without changing anything', async () => {
    const before = await state();
    expect(await say('U_BOB', '/promotions request')).toMatch(/Say why you need admin rights/);
    expect(await say('U_BOB', '/promotions request need it')).toMatch(/at least 10 characters \(you typed 7\)[\s\S]*Usage: `\/promotions request REASON`/);
    expect(await say('U_BOB', `/promotions request ${'x'.repeat(501)}`)).toMatch(/at most 500 characters \(you typed 501\)/);
    expect(await say('U_ALICE', '/promotions request I would like even more power please')).toMatch(/already an admin/);
    expect(await say('U_NOBODY', '/promotions request let me in, I am a stranger')).toMatch(/not linked to an application account/);
    expect(await state()).toEqual(before);
    expect(cardPosts()).toEqual([]);
  });

  it('records the request, posts a review card with the requester’s facts and history, and allows one pending request', async () => {
    const text = await say('U_BOB', '/promotions request I lead the Indore night shift: note that I unlock accounts daily');
    const id = await requestIdOf('bob');
    expect(text).toContain(`Your request #${id} to become an admin was posted for review`);
    const [req] = (await db.query<any>('SELECT * FROM promotion_request WHERE id = $1', [id])).rows;
    expect(req).toMatchObject({ user_id: bob.id, status: 'pending', reason: 'I lead the Indore night shift: note that I unlock accounts daily' });

    const posts = cardPosts();
    expect(posts).toHaveLength(1);
    const card = textOf(posts[0].args);
    expect(card).toContain(`Promotion request #${id}: bob → admin`);
    expect(card).toContain('bob (bo***@***.com)'); // masked e-mail
    expect(card).toMatch(/\*Role\*\ndispatcher/);
    expect(card).toMatch(/\*Dispatch area\*\nindore/);
    expect(card).toMatch(/\*Account age\*\n90 days/);
    expect(card).toMatch(/\*Last login\*\nnever/);
    expect(card).toMatch(/\*2FA\*\n:warning: not enabled/);
    expect(card).toContain('I lead the Indore night shift');
    expect(card).toContain('Last 30 days: 2 failed logins'); // the 45-day-old one is not counted
    expect(card).toContain('1 lockout');
    expect(card).toContain('0 role changes');
    expect(card).toContain('`/audit timeline bob`');
    expect(buttonsOf(posts[0].args.blocks).map((b) => b.text)).toEqual(['Approve', 'Reject']);
    expect(await cardOf(id)).toMatchObject({ channel: CHANNEL });

    const [audit] = await auditRows(db, 'promotion_requested');
    expect(audit).toMatchObject({ user_id: bob.id, entity_type: 'promotion_request', entity_id: id });
    expect(audit.details).toMatchObject({ slack_user: 'U_BOB', reason: req.reason });

    const before = await state();
    expect(await say('U_BOB', '/promotions request Asking a second time, just in case')).toMatch(
      new RegExp(`already have a pending request \\(#${id}`),
    );
    expect(await state()).toEqual(before);
    expect(cardPosts()).toHaveLength(1);
  });
});

describe('/promotions list and show', () => {
  it('lists pending requests oldest first for admins, and shows one with its history', async () => {
    const id = await requestIdOf('bob');
    const list = await say('U_ALICE', '/promotions list');
    expect(list).toContain('1 pending promotion request*, oldest first');
    expect(list).toMatch(new RegExp(`#${id}\\* bob \\(dispatcher\\) · waiting \\d+ min`));
    const show = await t.driver.reply(await t.driver.command('U_ALICE', `/promotions show ${id}`));
    expect(textOf(show.args)).toContain('Last 30 days: 2 failed logins');
    expect(buttonsOf(show.args.blocks).map((b) => b.text)).toEqual(['Approve', 'Reject']);
    // The requester may look at their own request, without buttons; others' requests are not theirs to see.
    const own = await t.driver.reply(await t.driver.command('U_BOB', `/promotions show ${id}`));
    expect(textOf(own.args)).toContain(`Promotion request #${id}`);
    expect(buttonsOf(own.args.blocks)).toEqual([]);
    expect(await say('U_DAN', `/promotions show ${id}`)).toMatch(/only look at your own promotion requests/);
    expect(await say('U_DAN', '/promotions list')).toMatch(/Only admins can use `\/promotions list`/);
    expect(await say('U_ALICE', '/promotions show 99999')).toMatch(/No promotion request #99999/);
    expect(await say('U_ALICE', '/promotions show abc')).toMatch(/ID must be a request number/);
    expect(await say('U_ALICE', '/promotions show -3')).toMatch(/ID must be a positive number/);
  });
});

describe('deciding: refusals', () => {
  it('refuses a non-admin click and a forged non-admin submission, changing nothing', async () => {
    const id = await requestIdOf('bob');
    const before = await state();
    const click = await t.driver.reply(await t.driver.click('U_DAN', await cardButton(id, 'Approve')));
    expect(textOf(click.args)).toContain('Only admins can use this button');
    // dan forges the submission of a modal an admin opened.
    const { view } = await openModal('U_CAROL', id, 'Approve');
    const forged = await t.driver.submit('U_DAN', view, { notes: 'sure', totp: await totpOf(dan) });
    expect(forged.ack.response_action).toBe('errors');
    expect(Object.values(forged.ack.errors).join()).toContain('Only admins can submit this form');
    expect(await state()).toEqual(before);
  });

  it('refuses tampered buttons and modal metadata', async () => {
    const bad = await t.driver.reply(await t.driver.click('U_ALICE', { actionId: 'promotions:approve', value: '{"r":"1; DROP TABLE"}' }));
    expect(textOf(bad.args)).toContain('not valid any more');
    const id = await requestIdOf('bob');
    const { view } = await openModal('U_ALICE', id, 'Approve');
    const meta = JSON.parse(view.private_metadata);
    const tampered = await t.driver.submit('U_ALICE', { ...view, private_metadata: JSON.stringify({ ...meta, m: '{"r":-1}' }) }, {});
    expect(Object.values(tampered.ack.errors).join()).toContain('This form is out of date');
  });

  it('asks an admin without 2FA to enrol before approving', async () => {
    const id = await requestIdOf('bob');
    const { reply } = await openModal('U_EVE', id, 'Approve');
    expect(reply.method).toBe('response_url');
    expect(textOf(reply.args)).toMatch(/no two-factor authentication\. Enrol in the application first/);
  });

  it('rejects a Reject without a reason, or with one under 10 characters, as a field error', async () => {
    const id = await requestIdOf('bob');
    const before = await state();
    const { view } = await openModal('U_ALICE', id, 'Reject');
    expect(view.callback_id).toBe('promotions:reject');
    const empty = await t.driver.submit('U_ALICE', view, { reason: '' });
    expect(empty.ack).toEqual({ response_action: 'errors', errors: { reason: expect.stringContaining('A reason is required') } });
    const short = await t.driver.submit('U_ALICE', view, { reason: '  too short  ' });
    expect(short.ack.errors.reason).toMatch(/at least 10 characters \(you typed 9\)/);
    expect(await state()).toEqual(before);
  });

  it('refuses a wrong or missing TOTP code as a field error', async () => {
    const id = await requestIdOf('bob');
    const before = await state();
    const { view } = await openModal('U_CAROL', id, 'Approve');
    const wrong = await t.driver.submit('U_CAROL', view, { notes: 'ok', totp: '000000' });
    expect(wrong.ack.errors.totp).toMatch(/not valid/);
    const missing = await t.driver.submit('U_CAROL', view, { notes: 'ok', totp: '' });
    expect(missing.ack.errors.totp).toMatch(/6-digit code/);
    // The wrong code is audited (the missing one is a typing mistake, not counted).
    const after = await state();
    expect((after as any).audit_log.filter((r: any) => r.action === 'stepup_failed').map((r: any) => r.details.guarded_action)).toEqual(['promotion_approve']);
    expect(withoutStepUpFailures(after)).toEqual(withoutStepUpFailures(before));
  });

  it('refuses self-approval on the click and on the submission', async () => {
    // frank asks, then becomes admin by other means (the dashboard) while his request is still pending.
    const frank = await createUser(db, { username: 'frank', role: 'biller', area: null, twoFa: true });
    await linkSlack(db, 'U_FRANK', frank.id);
    await say('U_FRANK', '/promotions request I need to manage biller accounts myself');
    const id = await requestIdOf('frank');
    await db.query(`UPDATE "user" SET role = 'admin' WHERE id = $1`, [frank.id]);
    const before = await state();
    const click = await t.driver.reply(await t.driver.click('U_FRANK', await cardButton(id, 'Approve')));
    expect(textOf(click.args)).toContain('You cannot decide your own promotion request');
    const reject = await t.driver.reply(await t.driver.click('U_FRANK', await cardButton(id, 'Reject')));
    expect(textOf(reject.args)).toContain('You cannot decide your own promotion request');
    // A modal opened by another admin, submitted by frank himself.
    const { view } = await openModal('U_ALICE', id, 'Reject');
    const sub = await t.driver.submit('U_FRANK', view, { reason: 'I reject my own request' });
    expect(Object.values(sub.ack.errors).join()).toContain('You cannot decide your own promotion request');
    expect(await state()).toEqual(before);
    // frank's request, approved by someone else, is refused because he is already admin.
    const { reply } = await openModal('U_ALICE', id, 'Approve');
    expect(textOf(reply.args)).toContain('frank is already an admin. Reject this request instead.');
  });
});

describe('deciding: approve and reject', () => {
  it('approves with notes and TOTP: one transaction, DM with the 2FA warning, card updated in place', async () => {
    const id = await requestIdOf('bob');
    const { ts } = await cardOf(id);
    const { view } = await openModal('U_ALICE', id, 'Approve');
    expect(view.callback_id).toBe('promotions:approve');
    expect(view.blocks.map((b: any) => b.block_id).filter(Boolean)).toEqual(['notes', 'totp']);
    expect(textOf(view)).toContain('They have no 2FA');
    const since = t.fake.calls.length;
    const sub = await t.driver.submit('U_ALICE', view, { notes: 'Welcome aboard, enable 2FA today', totp: await totpOf(alice) });
    expect(sub.answer.status).toBe(200);
    expect(sub.ack).toBeNull();

    const [req] = (await db.query<any>('SELECT * FROM promotion_request WHERE id = $1', [id])).rows;
    expect(req).toMatchObject({ status: 'approved', reviewed_by: alice.id, admin_notes: 'Welcome aboard, enable 2FA today', rejection_reason: null });
    expect(req.reviewed_at).toBeInstanceOf(Date);
    const [user] = (await db.query<any>('SELECT role, dispatch_area FROM "user" WHERE id = $1', [bob.id])).rows;
    expect(user).toEqual({ role: 'admin', dispatch_area: null });

    const roleChanges = (await auditRows(db, 'role_change')).filter((r) => r.entity_id === bob.id);
    expect(roleChanges).toHaveLength(1);
    expect(roleChanges[0]).toMatchObject({ user_id: alice.id, entity_type: 'user' });
    expect(roleChanges[0].before_state).toMatchObject({ role: 'dispatcher', dispatch_area: 'indore' });
    expect(roleChanges[0].after_state).toMatchObject({ role: 'admin', dispatch_area: null });
    expect(roleChanges[0].before_state).not.toHaveProperty('password_hash');
    expect(roleChanges[0].after_state).not.toHaveProperty('totp_secret');
    expect(roleChanges[0].details).toMatchObject({ slack_user: 'U_ALICE', promotion_request_id: id, admin_notes: 'Welcome aboard, enable 2FA today' });
    const approved = (await auditRows(db, 'promotion_approved')).filter((r) => r.entity_id === id);
    expect(approved).toHaveLength(1);
    expect(approved[0].details).toMatchObject({ requires_2fa_enrolment: true });

    const notes = (await db.query<any>('SELECT * FROM notification WHERE user_id = $1', [bob.id])).rows;
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatchObject({ title: 'Admin promotion approved', type: 'success', is_read: false });
    expect(notes[0].message).toContain('two-factor authentication');

    const dm = await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === 'D_U_BOB', 5000, since);
    expect(textOf(dm.args)).toContain('*approved* by <@U_ALICE> (alice)');
    expect(textOf(dm.args)).toContain('Notes: Welcome aboard');
    expect(textOf(dm.args)).toContain('Admin accounts must have two-factor authentication');

    const update = await t.fake.waitFor((c) => c.method === 'chat.update' && c.args.ts === ts, 5000, since);
    const updated = textOf(update.args);
    expect(update.args.channel).toBe(CHANNEL);
    expect(updated).toMatch(/Approved by <@U_ALICE> \(alice\) at \d\d:\d\d UTC \(\d{4}-\d\d-\d\d\) — Welcome aboard, enable 2FA today/);
    expect(updated).toContain('bob has no 2FA yet');
    expect(buttonsOf(update.args.blocks)).toEqual([]);
    // The approver is told in the conversation the click came from.
    const notice = await t.fake.waitFor((c) => c.method === 'response_url' && /Approved request #/.test(textOf(c.args)), 5000, since);
    expect(textOf(notice.args)).toContain('*bob* is now an admin');
    // The modal's own copy of the card was the channel card: not replaced twice.
    expect(t.fake.calls.slice(since).filter((c) => c.method === 'response_url' && c.args.replace_original === true)).toEqual([]);
  });

  it('tells a stale click who decided and when, and changes nothing', async () => {
    const id = await requestIdOf('bob');
    const before = await state();
    for (const verb of ['Approve', 'Reject'] as const) {
      const { reply } = await openModal('U_CAROL', id, verb);
      expect(reply.method).toBe('response_url');
      expect(textOf(reply.args)).toMatch(
        new RegExp(`Request #${id} was already approved by <@U_ALICE> \\(alice\\) at \\d\\d:\\d\\d UTC`),
      );
    }
    // A stale modal (opened before the decision) submitted now: closed with the same answer.
    expect(await state()).toEqual(before);
    expect(await say('U_BOB', '/promotions request I am asking again even though I am admin')).toMatch(/already an admin/);
  });

  it('rejects with a reason: request rejected, notification, DM with the reason, audit, card updated', async () => {
    await say('U_DAN', '/promotions request I want to see the audit log for billing');
    const id = await requestIdOf('dan');
    const { ts } = await cardOf(id);
    const { view } = await openModal('U_CAROL', id, 'Reject');
    const since = t.fake.calls.length;
    const sub = await t.driver.submit('U_CAROL', view, { reason: 'Billers get audit exports from their lead' });
    expect(sub.ack).toBeNull();
    // The admin is told truthfully how the requester hears of it (dan has a linked Slack account).
    const notice = await t.fake.waitFor((c) => c.method === 'response_url' && /Rejected request #/.test(textOf(c.args)), 5000, since);
    expect(textOf(notice.args)).toContain('They were told the reason in the application (notification) and by Slack DM to <@U_DAN>.');
    const [req] = (await db.query<any>('SELECT * FROM promotion_request WHERE id = $1', [id])).rows;
    expect(req).toMatchObject({ status: 'rejected', reviewed_by: carol.id, rejection_reason: 'Billers get audit exports from their lead' });
    expect((await db.query<any>('SELECT role FROM "user" WHERE id = $1', [dan.id])).rows[0].role).toBe('biller');
    const [n] = (await db.query<any>('SELECT * FROM notification WHERE user_id = $1', [dan.id])).rows;
    expect(n).toMatchObject({ title: 'Admin promotion rejected', type: 'warning' });
    expect(n.message).toContain('Reason: Billers get audit exports from their lead');
    const audit = (await auditRows(db, 'promotion_rejected')).filter((r) => r.entity_id === id);
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ user_id: carol.id, entity_type: 'promotion_request' });
    expect(audit[0].details).toMatchObject({ rejection_reason: 'Billers get audit exports from their lead', slack_user: 'U_CAROL' });
    expect((await auditRows(db, 'role_change')).filter((r) => r.entity_id === dan.id)).toEqual([]);
    const dm = await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === 'D_U_DAN', 5000, since);
    expect(textOf(dm.args)).toContain('*rejected* by <@U_CAROL> (carol)');
    expect(textOf(dm.args)).toContain('Reason: Billers get audit exports from their lead');
    const update = await t.fake.waitFor((c) => c.method === 'chat.update' && c.args.ts === ts, 5000, since);
    expect(textOf(update.args)).toMatch(/Rejected by <@U_CAROL> \(carol\) at \d\d:\d\d UTC .* — Billers get audit exports/);
    expect(buttonsOf(update.args.blocks)).toEqual([]);
    // Nobody is promoted: the card no longer asks for 2FA "after promotion".
    expect(textOf(update.args)).not.toContain('must enable after promotion');
  });

  it('two admins approving at the same moment: exactly one decision, the other told who decided', async () => {
    const gina = await createUser(db, { username: 'gina', role: 'biller', area: null });
    await linkSlack(db, 'U_GINA', gina.id);
    await say('U_GINA', '/promotions request I cover for the admins during holidays');
    const id = await requestIdOf('gina');
    const a = await openModal('U_ALICE', id, 'Approve');
    const c = await openModal('U_CAROL', id, 'Approve');
    const since = t.fake.calls.length;
    // alice already used this time step's code above: her authenticator's next code (±1 step is accepted).
    const [ra, rc] = await Promise.all([
      t.driver.submit('U_ALICE', a.view, { notes: 'from alice', totp: await totpOf(alice, 30) }),
      t.driver.submit('U_CAROL', c.view, { notes: 'from carol', totp: await totpOf(carol) }),
    ]);
    expect(ra.ack).toBeNull();
    expect(rc.ack).toBeNull();

    const [req] = (await db.query<any>('SELECT * FROM promotion_request WHERE id = $1', [id])).rows;
    expect(req.status).toBe('approved');
    const winner = req.reviewed_by === alice.id ? { slack: 'U_ALICE', name: 'alice', click: a.click, loser: c.click } : { slack: 'U_CAROL', name: 'carol', click: c.click, loser: a.click };
    expect([alice.id, carol.id]).toContain(req.reviewed_by);
    expect(req.admin_notes).toBe(`from ${winner.name}`);
    expect((await auditRows(db, 'role_change')).filter((r) => r.entity_id === gina.id)).toHaveLength(1);
    expect((await auditRows(db, 'promotion_approved')).filter((r) => r.entity_id === id)).toHaveLength(1);
    expect((await db.query<any>('SELECT count(*)::int AS n FROM notification WHERE user_id = $1', [gina.id])).rows[0].n).toBe(1);

    const loserNotice = await t.fake.waitFor(
      (x: CapturedCall) => x.method === 'response_url' && x.responseId === winner.loser.responseId,
      5000,
      since,
    );
    expect(textOf(loserNotice.args)).toMatch(new RegExp(`already approved by <@${winner.slack}> \\(${winner.name}\\) at \\d\\d:\\d\\d UTC`));
    const winnerNotice = await t.fake.waitFor((x) => x.method === 'response_url' && x.responseId === winner.click.responseId, 5000, since);
    expect(textOf(winnerNotice.args)).toContain('*gina* is now an admin');
    await t.fake.waitFor((x) => x.method === 'chat.postMessage' && x.args.channel === 'D_U_GINA', 5000, since);
    expect(dmsTo('U_GINA', since)).toHaveLength(1);
  });

  it('a Slack retry of the very same submission records one decision', async () => {
    const zed = await createUser(db, { username: 'zed', role: 'admin', area: null, twoFa: true });
    await linkSlack(db, 'U_ZED', zed.id);
    const ria = await createUser(db, { username: 'ria', role: 'biller', area: null });
    await linkSlack(db, 'U_RIA', ria.id);
    await say('U_RIA', '/promotions request I am the backup admin for the billing team');
    const id = await requestIdOf('ria');
    const { view } = await openModal('U_ZED', id, 'Approve');
    // Capture the signed body the driver sends, to deliver it a second time as Slack's retry would.
    let body = '';
    const original = t.driver.postSigned.bind(t.driver);
    t.driver.postSigned = async (b: string, h?: Record<string, string>) => {
      body = b;
      return original(b, h);
    };
    const since = t.fake.calls.length;
    try {
      expect((await t.driver.submit('U_ZED', view, { notes: 'retry test', totp: await totpOf(zed) })).ack).toBeNull();
    } finally {
      t.driver.postSigned = original;
    }
    const retry = await t.driver.postSigned(body, { 'x-slack-retry-num': '1', 'x-slack-retry-reason': 'http_timeout' });
    expect(retry.status).toBe(200);
    await t.warden.services.promotions.idle();
    expect((await auditRows(db, 'role_change')).filter((r) => r.entity_id === ria.id)).toHaveLength(1);
    expect((await db.query<any>('SELECT count(*)::int AS n FROM notification WHERE user_id = $1', [ria.id])).rows[0].n).toBe(1);
    expect(dmsTo('U_RIA', since)).toHaveLength(1);
  });

  it('a double submission of the same approval (e.g. a double click) records one decision', async () => {
    const hal = await createUser(db, { username: 'hal', role: 'dispatcher', area: 'lucknow' });
    await say('U_ALICE', '/promotions list'); // unrelated traffic between requests is fine
    await db.query(`INSERT INTO warden_slack_link (slack_team_id, slack_user_id, user_id, method) VALUES ('T_WARDEN', 'U_HAL', $1, 'explicit')`, [hal.id]);
    await say('U_HAL', '/promotions request I run the Lucknow depot and need admin');
    const id = await requestIdOf('hal');
    const m = await openModal('U_CAROL', id, 'Approve');
    const code = await totpOf(carol, 30);
    const [first, second] = await Promise.all([
      t.driver.submit('U_CAROL', m.view, { notes: '', totp: code }),
      t.driver.submit('U_CAROL', m.view, { notes: '', totp: code }),
    ]);
    // One wins; the other is either told it was decided or that the code was already used.
    const answers = [first.ack, second.ack];
    expect(answers.filter((x) => x === null).length).toBeGreaterThanOrEqual(1);
    for (const x of answers) if (x !== null) expect(x.errors.totp).toMatch(/already used/);
    const [req] = (await db.query<any>('SELECT * FROM promotion_request WHERE id = $1', [id])).rows;
    expect(req).toMatchObject({ status: 'approved', reviewed_by: carol.id, admin_notes: null });
    expect((await auditRows(db, 'role_change')).filter((r) => r.entity_id === hal.id)).toHaveLength(1);
  });
});
