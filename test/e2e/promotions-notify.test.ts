import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { buttonsOf, textOf } from '../../src/slack/sim/driver.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { createUser, linkSlack, totpOf, type TestUser } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';

/**
 * Issue 14: requests the web application inserted come from people Warden has never seen on
 * Slack (no link). The decision DM reaches them through the Slack user their e-mail designates
 * under the automatic-linking rules of issue 10 — and only then; the deciding admin is told
 * truthfully who got a DM, or why nobody did. Through signed requests and the fake Slack.
 */

const CHANNEL = 'C_APPROVALS';
let t: TestApp;
let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
let alice: TestUser; // admin with 2FA
let carol: TestUser; // admin with 2FA
let eve: TestUser; // admin with 2FA and a second Slack account: the insider

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  carol = await createUser(db, { username: 'carol', role: 'admin', twoFa: true, area: null });
  eve = await createUser(db, { username: 'eve', role: 'admin', twoFa: true, area: null });
  await linkSlack(db, 'U_ALICE', alice.id);
  await linkSlack(db, 'U_CAROL', carol.id);
  await linkSlack(db, 'U_EVE', eve.id);
  t = await startTestApp({ db, store, env: { APPROVALS_CHANNEL: CHANNEL, PROMOTION_TTL: '7d' } });
});

afterAll(async () => {
  await t?.warden.services.promotions.idle();
  await t?.stop();
  await store?.close();
  await cleanup?.();
});

/** A request as the web application inserts it, and its card as the poll job posts it. */
async function appRequest(username: string, email: string): Promise<{ id: number; userId: number }> {
  const u = await createUser(db, { username, email, role: 'biller', area: null });
  const { rows } = await db.query<{ id: number }>(
    `INSERT INTO promotion_request (user_id, reason, status) VALUES ($1, 'I handle the month-end billing runs', 'pending') RETURNING id`,
    [u.id],
  );
  await t.warden.services.promotions.pollNew();
  return { id: rows[0].id, userId: u.id };
}

async function cardButton(requestId: number, verb: 'Approve' | 'Reject') {
  const { rows } = await db.query<{ channel: string; ts: string }>('SELECT channel, ts FROM warden_promotion_card WHERE request_id = $1', [requestId]);
  const post = t.fake.callsTo('chat.postMessage').find((c) => c.args.channel === CHANNEL && textOf(c.args).includes(`#${requestId}:`))!;
  const b = buttonsOf(post.args.blocks).find((x) => x.text === verb)!;
  return { actionId: b.actionId, value: b.value, channel: rows[0].channel, message: { ts: rows[0].ts, blocks: post.args.blocks } };
}

/** Clicks the card's button, submits the modal, returns the notice the admin reads and what Slack got meanwhile. */
async function decide(admin: string, requestId: number, verb: 'Approve' | 'Reject', values: Record<string, string>) {
  const click = await t.driver.click(admin, await cardButton(requestId, verb));
  const reply = await t.driver.reply(click);
  expect(reply.method, textOf(reply.args)).toBe('views.open');
  const since = t.fake.calls.length;
  const sub = await t.driver.submit(admin, reply.args.view, values);
  expect(sub.ack).toBeNull();
  const notice = await t.fake.waitFor((c) => c.method === 'response_url' && /(Approved|Rejected) request #/.test(textOf(c.args)), 5000, since);
  await t.warden.services.promotions.idle();
  return { notice: textOf(notice.args), since };
}

const dmsSince = (since: number) => t.fake.calls.slice(since).filter((c) => c.method === 'chat.postMessage' && String(c.args.channel).startsWith('D_'));
const linksOf = async (slackUserId: string) =>
  (await db.query('SELECT * FROM warden_slack_link WHERE slack_user_id = $1', [slackUserId])).rows;

describe('decision DM to a requester the application created (no Slack link)', () => {
  it('finds the Slack user with exactly their confirmed address, DMs them, tells the admin so, and records no link', async () => {
    t.fake.addUser({ id: 'U_RAVI', name: 'ravi', email: '  Ravi.K@Example.com ' });
    const { id } = await appRequest('ravi.k', 'ravi.k@example.com');
    const { notice, since } = await decide('U_ALICE', id, 'Reject', { reason: 'Billers get audit exports from their lead' });
    expect(notice).toContain(
      'They were told the reason in the application (notification) and by Slack DM to <@U_RAVI> (found by their e-mail address; no Slack link was recorded).',
    );
    const dms = dmsSince(since);
    expect(dms.map((c) => c.args.channel)).toEqual(['D_U_RAVI']);
    expect(textOf(dms[0].args)).toContain('Reason: Billers get audit exports from their lead');
    // A link is made when ravi acts through Slack himself, not as a side effect of being told.
    expect(await linksOf('U_RAVI')).toEqual([]);
  });

  it('approvals are told the same way (the DM is queued with the decision)', async () => {
    t.fake.addUser({ id: 'U_ASHA', name: 'asha', email: 'asha@example.com' });
    const { id } = await appRequest('asha', 'asha@example.com');
    const { notice, since } = await decide('U_CAROL', id, 'Approve', { notes: 'Welcome', totp: await totpOf(carol) });
    expect(notice).toContain('*asha* is now an admin. They were told in the application (notification) and by Slack DM to <@U_ASHA> (found by their e-mail address');
    const dms = dmsSince(since);
    expect(dms.map((c) => c.args.channel)).toEqual(['D_U_ASHA']);
    expect(textOf(dms[0].args)).toContain('*approved* by <@U_CAROL> (carol)');
    const outbox = (await db.query<any>(`SELECT status, dedupe_key FROM warden_outbox WHERE kind = 'dm' AND channel = 'U_ASHA'`)).rows;
    expect(outbox).toEqual([{ status: 'sent', dedupe_key: `promotion:${id}:approved:dm:U_ASHA` }]);
  });

  it.each([
    ['an unconfirmed address', 'uma', 'uma@example.com', { email: 'uma@example.com', isEmailConfirmed: false }, 'the Slack user with that address has not confirmed it'],
    ['a member of another workspace', 'otto', 'otto@example.com', { email: 'otto@example.com', teamId: 'T_OTHER' }, 'belongs to another workspace (Slack Connect)'],
    ['a bot', 'botty', 'botty@example.com', { email: 'botty@example.com', isBot: true }, 'the Slack user with that address is a bot'],
    ['a deactivated member', 'dora', 'dora@example.com', { email: 'dora@example.com', deleted: true }, 'the Slack user with that address is deactivated'],
    ['a guest', 'gus', 'gus@example.com', { email: 'gus@example.com', isRestricted: true }, 'is a guest, and guests are never matched automatically'],
    // Kelvin sign: Slack's lookup may fold it to "k"; Warden's exact ASCII comparison does not.
    ['a lookalike address (Kelvin sign)', 'kim', 'kim@example.com', { email: '\u212Aim@example.com' }, 'an address with characters other than plain ASCII'],
    ['nobody with the address', 'nina', 'nina@example.com', null, 'no member of this Slack workspace has their e-mail address'],
    ['an account whose own address is not ASCII', 'kiran', 'k\u0131ran@example.com', { email: 'k\u0131ran@example.com' }, 'their e-mail address has characters other than plain ASCII'],
  ] as const)('sends no DM for %s, and says why', async (_what, username, email, slack, why) => {
    const slackId = `U_${username.toUpperCase()}`;
    if (slack) t.fake.addUser({ id: slackId, name: username, ...slack });
    const { id } = await appRequest(username, email);
    const { notice, since } = await decide('U_ALICE', id, 'Reject', { reason: 'Not this quarter, ask again in March' });
    expect(notice).toContain('They were told the reason in the application (notification) only. No Slack DM was sent: they have no linked Slack account, and ');
    expect(notice).toContain(why);
    expect(dmsSince(since)).toEqual([]);
    expect(await linksOf(slackId)).toEqual([]);
  });

  it('says so when the Slack app lacks the users:read.email scope', async () => {
    t.fake.addUser({ id: 'U_SAM', name: 'sam', email: 'sam@example.com' });
    const { id } = await appRequest('sam', 'sam@example.com');
    t.fake.scopes.delete('users:read.email');
    try {
      const { notice, since } = await decide('U_ALICE', id, 'Reject', { reason: 'Not this quarter, ask again in March' });
      expect(notice).toContain('No Slack DM was sent: they have no linked Slack account, and Warden’s Slack app lacks the users:read.email scope');
      expect(dmsSince(since)).toEqual([]);
    } finally {
      t.fake.scopes.add('users:read.email');
    }
  });
});

describe('the insider: an admin with a second Slack account that imitates the requester', () => {
  it('gets no decision DM when the second account shows the requester’s address unconfirmed', async () => {
    // eve cannot confirm paul's address (she does not read his mail), but she can type it into a second account.
    t.fake.addUser({ id: 'U_EVE_ALT', name: 'paul-k', email: 'paul@example.com', isEmailConfirmed: false });
    const { id } = await appRequest('paul', 'paul@example.com');
    const { notice, since } = await decide('U_EVE', id, 'Approve', { notes: '', totp: await totpOf(eve) });
    expect(notice).toContain('No Slack DM was sent: they have no linked Slack account, and the Slack user with that address has not confirmed it');
    expect(dmsSince(since)).toEqual([]);
    expect(await linksOf('U_EVE_ALT')).toEqual([]);
  });

  it('gets no decision DM after re-addressing the requester to her own alias (identity cool-down)', async () => {
    t.fake.addUser({ id: 'U_EVE_ALIAS', name: 'eve-alias', email: 'eve.alias@example.com' });
    const { id, userId } = await appRequest('priya', 'priya@example.com');
    // eve changes priya's e-mail through Warden (step-up, audited, recorded as an identity change) to an address she controls.
    const actor = await t.warden.services.identity.resolve({ userId: 'U_EVE', teamId: 'T_WARDEN' });
    await t.warden.services.userAdmin.update(actor, 'priya', { email: 'eve.alias@example.com' }, await totpOf(eve, 30));
    const changes = (await db.query('SELECT kind, changed_by FROM warden_identity_change WHERE user_id = $1', [userId])).rows;
    expect(changes).toEqual([{ kind: 'email', changed_by: eve.id }]);
    const { notice, since } = await decide('U_CAROL', id, 'Reject', { reason: 'Your e-mail just changed, ask again later' });
    expect(notice).toContain('No Slack DM was sent: they have no linked Slack account, and their e-mail address was changed recently (identity cool-down)');
    expect(dmsSince(since).filter((c) => c.args.channel === 'D_U_EVE_ALIAS')).toEqual([]);
    expect(await linksOf('U_EVE_ALIAS')).toEqual([]);
  });
});
