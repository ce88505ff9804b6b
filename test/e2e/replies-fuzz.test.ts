import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import type { CapturedCall } from '../../src/slack/sim/fake-slack.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { createUser, linkSlack, totpOf, type TestUser } from '../helpers/fixtures.js';
import { textOf } from '../../src/slack/sim/driver.js';
import { createTestStore } from '../helpers/store.js';
import { HOSTILE as ALL_HOSTILE } from '../helpers/hostile.js';
import { StepUpCodes } from './users-support.js';

/**
 * Command replies, modals and error replies with hostile values (issue 11), end to end: the
 * values sit in what the application wrote (audit details and snapshots) and in what a user
 * types, every reply goes through the running app to the strict fake Slack (which refuses a
 * payload Slack would refuse: `response_url!invalid`), and every mrkdwn text Slack would parse
 * is checked: no `<!`, `<@`, `<#`, `<http` from data (Warden's own mentions of known users
 * excepted), no control or bidi character, no secret value, within Slack's limits.
 */

const SECRET = 'JBSWY3DPEHPK3PXP-fuzz-secret';
// Every family but `markup` (formatting characters are shown as Slack formats them; not a mention risk).
const HOSTILE = Object.fromEntries(Object.entries(ALL_HOSTILE).filter(([k]) => k !== 'markup'));
// Admins who unlock (two step-up codes per admin per 30 s, so one admin per two unlocks).
const UNLOCKERS = ['U_UNA', 'U_UMA', 'U_UDO', 'U_UTE'];
const KNOWN = new Set(['U_ALICE', ...UNLOCKERS]);
const codes = new StepUpCodes(() => store);
const unlockers: TestUser[] = [];
const SECURITY = 'C_SECURITY';
// Admins whose usernames (as the application stored them) are hostile: the step-up alert names them.
const guessers: [string, TestUser][] = [];
const MENTION = /<[!@#]([A-Z0-9_]*)|<https?:|<mailto:/g;
// eslint-disable-next-line no-control-regex -- looking for control characters is the point
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069\u200E\u200F\u061C]/;

const withoutNul = (v: string) => v.split(String.fromCharCode(0)).join('');

let t: TestApp;
let db: Db;
let store: Store;
let cleanup: () => Promise<void>;

/** What Slack parses as mrkdwn in a reply, a post or a view, and the plain_text it shows. */
function texts(args: any): { mrkdwn: string[]; all: string[] } {
  const mrkdwn: string[] = typeof args.text === 'string' ? [args.text] : [];
  const all = [...mrkdwn];
  const walk = (v: any) => {
    if (!v || typeof v !== 'object') return;
    if (Array.isArray(v)) return v.forEach(walk);
    if (v.type === 'mrkdwn' && typeof v.text === 'string') {
      mrkdwn.push(v.text);
      all.push(v.text);
    }
    if (v.type === 'plain_text' && typeof v.text === 'string') all.push(v.text);
    Object.values(v).forEach(walk);
  };
  walk(args.blocks);
  walk(args.view);
  if (args.errors) all.push(...Object.values(args.errors as Record<string, string>));
  return { mrkdwn, all };
}

function assertInert(kind: string, calls: CapturedCall[]) {
  const replies = calls.filter((c) => /^(response_url|chat\.|views\.)/.test(c.method));
  expect(replies.length, `${kind}: no reply`).toBeGreaterThan(0);
  for (const c of replies) {
    expect(c.method, `${kind}: Slack refused ${JSON.stringify(c.result)}`).not.toMatch(/!invalid$/);
    if (c.result && (c.result as any).ok === false) throw new Error(`${kind}: ${c.method} refused: ${JSON.stringify(c.result)}`);
    const { mrkdwn, all } = texts(c.args);
    if (typeof c.args.text === 'string') expect(c.args.text.length, kind).toBeLessThanOrEqual(3000);
    for (const m of mrkdwn) {
      const made = [...m.matchAll(MENTION)].filter((x) => !(x[0].startsWith('<@') && KNOWN.has(x[1])));
      expect(made.map((x) => x[0]), `${kind}: ${m.slice(0, 300)}`).toEqual([]);
    }
    for (const s of all) {
      expect(s, kind).not.toMatch(CONTROL);
      expect(s, kind).not.toContain(SECRET);
    }
  }
}

/** Every message kind a command (or its error) answers with, and the line that produces it. */
const KINDS: [string, (h: string) => string][] = [
  ['/audit search rows', () => '/audit action:login_failed'],
  ['/audit history', () => '/audit history bob'],
  ['/audit timeline', () => '/audit timeline bob'],
  ['/audit failed-logins', () => '/audit failed-logins min:1 window:1h'],
  ['/audit deletions', () => '/audit deletions'],
  ['/audit export (nothing to export)', () => '/audit export action:nothing_here'],
  ['/audit unmasked export modal', () => '/audit export action:login_failed --unmasked'],
  ['/audit retention (dry run)', () => '/audit retention --dry-run'],
  ['/audit retention modal', () => '/audit retention'],
  ['/users list', () => '/users list'],
  ['/users show', () => '/users show bob'],
  ['/users edit modal', () => '/users edit bob'],
  ['/users role modal', () => '/users role bob admin'],
  ['/users unlock modal', () => '/users unlock bob'],
  ['/users reset-password modal', () => '/users reset-password bob'],
  ['/users delete modal', () => '/users delete bob'],
  ['/2fa status', () => '/2fa status bob'],
  ['/2fa adoption', () => '/2fa adoption'],
  ['/2fa admins-without', () => '/2fa admins-without'],
  ['/2fa failures', () => '/2fa failures window:1h'],
  ['/promotions list', () => '/promotions list'],
  ['/promotions show', () => '/promotions show 1'],
  ['/health', () => '/health'],
  ['/health pool', () => '/health pool'],
  ['help', () => '/audit help'],
  ['error: unknown filter echoed', (h) => `/audit ${h}`],
  ['error: unknown option echoed', (h) => `/users list ${h.includes(':') ? '' : 'x:'}${h}`],
  ['error: bad username', (h) => `/users show ${h}`],
  ['error: bad 2fa target', (h) => `/2fa status ${h}`],
  ['error: bad request id', (h) => `/promotions show ${h}`],
  ['error: bad export destination', (h) => `/audit export to:${h}`],
  ['error: unknown subcommand', (h) => `/health ${h}`],
  ['error: search text', (h) => `/users list q:"${h.slice(0, 60)}"`],
];

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  const alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  const bob = await createUser(db, { username: 'bob', role: 'biller', area: null });
  await createUser(db, { username: 'zed', role: 'admin', area: null });
  // What the application wrote: every hostile value in details and snapshots, with secrets.
  // jsonb cannot hold U+0000; every other control character goes in.
  const values = Object.values(HOSTILE).map(withoutNul);
  for (const [i, h] of values.entries()) {
    const details = JSON.stringify({ username: h, note: h, email: `${h}@example.com`, api_token: SECRET, nested: { totp_secret: SECRET, why: h } });
    for (const action of ['login_failed', 'user_updated', 'user_deleted']) {
      await db.query(
        `INSERT INTO audit_log ("timestamp", user_id, action, entity_type, entity_id, details, ip_address, before_state, after_state)
         VALUES (now() - make_interval(mins => $1::int), $2, $3, 'user', $2, $4, '203.0.113.9', $5, $6)`,
        [i + 1, bob.id, action, details, JSON.stringify({ role: h, password_reset_token: SECRET, username: h }), JSON.stringify({ role: 'biller', note: h })],
      );
    }
    await db.query(`INSERT INTO audit_log ("timestamp", action, entity_type, details, ip_address) VALUES (now(), '2fa_verification_failed', 'user', $1, '203.0.113.10')`, [
      JSON.stringify({ username: h, secret: SECRET }),
    ]);
  }
  await db.query(`INSERT INTO promotion_request (user_id, reason, status, requested_at) VALUES ($1, $2, 'pending', now())`, [
    bob.id,
    `Please ${HOSTILE.mentions} ${HOSTILE.link} ${HOSTILE.entities} ${HOSTILE.rtl} ${withoutNul(HOSTILE.control)}`.slice(0, 490),
  ]);
  // A locked account whose failed attempts (shown by the Unlock notice) carry every hostile value.
  await createUser(db, { username: 'lou', role: 'biller', area: null, lockedMinutes: 25, failed: 5 });
  for (const [i, h] of values.entries()) {
    await db.query(
      `INSERT INTO audit_log ("timestamp", action, details, ip_address) VALUES (now() - make_interval(mins => $1::int), 'login_failed', $2, $3)`,
      [i + 1, JSON.stringify({ username: 'lou', reason: h, note: h, password: SECRET }), h.slice(0, 45)], // ip_address is varchar(45)
    );
  }
  for (const i of UNLOCKERS.keys()) unlockers.push(await createUser(db, { username: `unlocker${i}`, role: 'admin', twoFa: true, area: null }));
  for (const [i, h] of values.entries()) {
    guessers.push([`U_GUESS${i}`, await createUser(db, { username: h.slice(0, 50), role: 'admin', twoFa: true, area: null })]);
  }
  t = await startTestApp({ db, store, env: { SECURITY_CHANNEL: SECURITY } });
  for (const [id, u] of guessers) await linkSlack(db, id, u.id);
  await linkSlack(db, 'U_ALICE', alice.id);
  for (const [i, id] of UNLOCKERS.entries()) await linkSlack(db, id, unlockers[i].id);
});

afterAll(async () => {
  await t?.stop();
  await store?.close();
  await cleanup?.();
});

describe('command replies, modals and errors with hostile values (issue 11)', () => {
  for (const [name, h] of Object.entries(HOSTILE)) {
    it(`stay inert and accepted with ${name} in the data and in what is typed`, async () => {
      for (const [kind, line] of KINDS) {
        const i = await t.driver.command('U_ALICE', line(h).replace(/\s+/g, (s) => (s.includes('\n') ? ' ' : s)));
        await t.driver.reply(i, 30_000);
        // Let any follow-up (a modal after the ack, a DM) arrive.
        await new Promise((r) => setTimeout(r, 20));
        assertInert(`${kind} [${name}]`, t.fake.calls.slice(i.since));
      }
    });
  }

  it('the Unlock notice after the step-up form stays inert with hostile failed attempts in the data', async () => {
    for (const [n] of Object.keys(HOSTILE).entries()) {
      await db.query(`UPDATE "user" SET locked_until = now() + interval '25 minutes', failed_login_attempts = 5, last_failed_login = now() WHERE username = 'lou'`);
      const slackId = UNLOCKERS[Math.floor(n / 2) % UNLOCKERS.length];
      const i = await t.driver.command(slackId, '/users unlock lou');
      const form = await t.driver.reply(i, 30_000);
      expect(form.method).toBe('views.open');
      const since = t.fake.calls.length;
      const sub = await t.driver.submit(slackId, form.args.view, { totp: await codes.of(unlockers[Math.floor(n / 2) % UNLOCKERS.length]) });
      expect(sub.ack).toBeNull();
      const notice = await t.fake.waitFor((c) => c.method === 'response_url' && c.responseId === i.responseId, 30_000, since);
      expect(String(notice.args.text ?? '') + JSON.stringify(notice.args.blocks ?? [])).toContain('Unlocked');
      assertInert(`Unlock notice [${n}]`, t.fake.calls.slice(since));
    }
  });

  it('the step-up alert in the security channel stays inert with a hostile username', async () => {
    for (const [id, u] of guessers) {
      const actor = await t.warden.services.identity.resolve({ userId: id, teamId: 'T_WARDEN' });
      const valid = new Set([await totpOf(u, -30), await totpOf(u), await totpOf(u, 30)]);
      const wrong = ['000000', '000001', '000002', '000003'].find((c) => !valid.has(c))!;
      const since = t.fake.calls.length;
      for (let n = 0; n < 3; n++) await expect(t.warden.services.stepUp.verify(actor, wrong, 'user_delete')).rejects.toThrow();
      await t.warden.services.outbox.deliverDue();
      const alert = await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === SECURITY && textOf(c.args).includes(id), 10_000, since);
      expect(textOf(alert.args)).toContain('3 wrong 2FA codes');
      KNOWN.add(id); // the mention Warden makes on purpose: the Slack id it resolved
      assertInert(`step-up alert [${u.username.slice(0, 20)}]`, [alert]);
    }
  });
});

export const FUZZED_REPLY_KINDS = KINDS.map(([k]) => k);
