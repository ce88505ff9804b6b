import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { buttonsOf, textOf } from '../../src/slack/sim/driver.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, linkSlack, snapshot } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';

let t: TestApp;
let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
let zedId: number;
let yanId: number;

async function failure(username: string, ip: string, minutesAgo: number, action = '2fa_verify_failed') {
  await db.query(
    `INSERT INTO audit_log ("timestamp", action, entity_type, details, ip_address)
     VALUES (now() - make_interval(mins => $1), $2, 'user', $3, $4)`,
    [minutesAgo, action, JSON.stringify({ username }), ip],
  );
}

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  const alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  zedId = (await createUser(db, { username: 'zed', role: 'admin', area: null })).id;
  yanId = (await createUser(db, { username: 'yan', role: 'admin', area: null })).id;
  await createUser(db, { username: 'eve', role: 'biller', twoFa: true, area: null });
  const dave = await createUser(db, { username: 'dave', role: 'dispatcher' });
  for (let i = 0; i < 7; i++) await failure('eve', '192.168.1.50', 5 + i);
  await failure('dave', '10.0.0.7', 10);
  await failure('dave', '10.0.0.7', 20);
  await failure('eve', '172.16.0.1', 600);
  await failure('eve', '192.168.1.50', 1, '2fa_verify_success');
  t = await startTestApp({ db, store });
  await linkSlack(db, 'U_ALICE', alice.id);
  await linkSlack(db, 'U_ZED', zedId);
  await linkSlack(db, 'U_DAVE', dave.id);
});

afterAll(async () => {
  await t?.stop();
  await store?.close();
  await cleanup?.();
});

const run = async (user: string, line: string) => t.driver.reply(await t.driver.command(user, line));

describe('/2fa reports', () => {
  it('shows adoption per role with the guide\'s query', async () => {
    const text = textOf((await run('U_ALICE', '/2fa adoption')).args);
    expect(text).toContain('*admin*: 1 of 3 with 2FA (33.3%)');
    expect(text).toContain('*biller*: 1 of 1 with 2FA (100.0%)');
    expect(text).toContain('*dispatcher*: 0 of 1 with 2FA (0.0%)');
    expect(text).toContain('*all roles*: 2 of 5 with 2FA (40.0%)');
    expect(text).toContain('2 admin(s) without 2FA');
  });

  it('lists admins without 2FA and reminds them once: notification, DM when linked, audited', async () => {
    const reply = await run('U_ALICE', '/2fa admins-without');
    const text = textOf(reply.args);
    expect(text).toContain('2 admins without 2FA');
    expect(text).toMatch(/\*yan\* · ya\*\*\*@\*\*\*\.com/);
    expect(text).toContain('*zed*');
    expect(text).not.toContain('alice');
    const remind = buttonsOf(reply.args.blocks).find((b) => b.text === 'Remind')!;

    const before = await snapshot(db);
    const denied = await t.driver.reply(await t.driver.click('U_DAVE', remind));
    expect(textOf(denied.args)).toContain('Only admins can use this button');
    expect(await snapshot(db)).toEqual(before);

    const click = await t.driver.click('U_ALICE', remind);
    const answer = await t.driver.reply(click);
    expect(textOf(answer.args)).toContain('Reminded 2 admins (yan, zed): in-app notification, Slack DM to zed');
    const dm = await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === 'D_U_ZED', 5000, click.since);
    expect(textOf(dm.args)).toContain('Profile → Enable Two-Factor Authentication');
    const notes = (await db.query<any>('SELECT user_id, title FROM notification ORDER BY id')).rows;
    expect(notes).toEqual([
      { user_id: yanId, title: 'Enable two-factor authentication' },
      { user_id: zedId, title: 'Enable two-factor authentication' },
    ]);
    const audits = await auditRows(db, '2fa_reminder_sent');
    expect(audits.map((a: any) => [a.entity_id, a.details.slack_dm, a.details.actor])).toEqual([
      [yanId, false, 'alice'],
      [zedId, true, 'alice'],
    ]);

    // A double click does not spam them.
    const after = await snapshot(db);
    const again = await t.driver.reply(await t.driver.click('U_ALICE', remind));
    expect(textOf(again.args)).toContain('Already reminded in the last 12 hours: yan, zed.');
    expect(await snapshot(db)).toEqual(after);
  });

  it('Remind queues the DM with the notification and audit row: a failed write sends nothing and sets no cool-down', async () => {
    // Issue 12: the DM used to be sent before the transaction and the 12 h cool-down set before
    // both, so a failure in between left a DM without notification/audit and no retry for 12 h.
    const wesId = (await createUser(db, { username: 'wes', role: 'admin', area: null })).id;
    await linkSlack(db, 'U_WES', wesId);
    const remind = buttonsOf((await run('U_ALICE', '/2fa admins-without')).args.blocks).find((b) => b.text === 'Remind')!;
    await db.query(`CREATE FUNCTION fail_reminder() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.action = '2fa_reminder_sent' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$`);
    await db.query('CREATE TRIGGER fail_reminder BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION fail_reminder()');
    const before = await snapshot(db);
    const failed = await t.driver.click('U_ALICE', remind);
    expect(textOf((await t.driver.reply(failed)).args)).not.toContain('Reminded');
    expect(await snapshot(db)).toEqual(before);
    expect((await db.query(`SELECT id FROM warden_outbox WHERE channel = 'U_WES'`)).rows).toEqual([]);
    expect(t.fake.calls.slice(failed.since).filter((c) => c.method === 'chat.postMessage' && c.args.channel === 'D_U_WES')).toEqual([]);

    await db.query('DROP TRIGGER fail_reminder ON audit_log');
    const retry = await t.driver.click('U_ALICE', remind);
    const answer = textOf((await t.driver.reply(retry)).args);
    expect(answer).toContain('Reminded 1 admin (wes): in-app notification, Slack DM to wes');
    expect(answer).toContain('Already reminded in the last 12 hours: yan, zed.');
    const dm = await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === 'D_U_WES', 5000, retry.since);
    expect(textOf(dm.args)).toContain('Profile → Enable Two-Factor Authentication');
    expect((await auditRows(db, '2fa_reminder_sent')).filter((a: any) => a.entity_id === wesId).map((a: any) => a.details.slack_dm)).toEqual([true]);
    expect((await db.query(`SELECT id FROM warden_outbox WHERE channel = 'U_WES'`)).rows).toHaveLength(1);
    expect(t.fake.calls.filter((c) => c.method === 'chat.postMessage' && c.args.channel === 'D_U_WES')).toHaveLength(1);

    // And now the cool-down holds.
    const again = textOf((await t.driver.reply(await t.driver.click('U_ALICE', remind))).args);
    expect(again).toContain('Already reminded in the last 12 hours: wes, yan, zed.');
  });

  it('groups recent 2FA failures by IP, masked, with counts and a spike marker', async () => {
    const text = textOf((await run('U_ALICE', '/2fa failures')).args);
    expect(text).toContain('9 2FA verification failures in the last 1h* from 2 IPs');
    // A short keyed tag keeps masked IPs of one /16 apart (issue 11).
    expect(text).toMatch(/`192\.168\.xxx\.xxx ·[0-9a-f]{6}`: \*7\* failures, 1 user \(eve\).*:rotating_light:/);
    expect(text).toMatch(/`10\.0\.xxx\.xxx ·[0-9a-f]{6}`: \*2\* failures, 1 user \(dave\)/);
    expect(text).not.toContain('192.168.1.50');
    expect(text).not.toContain('172.16');
    const week = textOf((await run('U_ALICE', '/2fa failures window:7d')).args);
    expect(week).toContain('10 2FA verification failures in the last 7d');
    expect(week).toContain('172.16.xxx.xxx');
    const none = textOf((await run('U_ALICE', '/2fa failures window:2m')).args);
    expect(none).toContain('No 2FA verification failures in the last 2m');
  });

  it('explains bad report input with the usage', async () => {
    const cases: [string, RegExp][] = [
      ['/2fa failures window:soon', /window must be a duration from 1m to 30d/],
      ['/2fa failures window:90d', /window must be a duration from 1m to 30d/],
      ['/2fa failures min:3', /Unknown option `min:`/],
      ['/2fa adoption now', /Unexpected `now`/],
      ['/2fa status a b', /Unexpected `b`/],
      ['/2fa frobnicate', /Unknown subcommand `frobnicate`/],
    ];
    for (const [line, expected] of cases) {
      expect(textOf((await run('U_ALICE', line)).args), line).toMatch(expected);
    }
    expect(textOf((await run('U_DAVE', '/2fa adoption')).args)).toContain('Only admins can use `/2fa adoption`');
    expect(textOf((await run('U_DAVE', '/2fa failures')).args)).toContain('Only admins can use `/2fa failures`');
    expect(textOf((await run('U_ALICE', '/2fa help')).args)).toContain('/2fa recover USERNAME');
  });

  it('shows 2FA status: your own for anyone linked, anyone\'s for admins', async () => {
    const own = textOf((await run('U_DAVE', '/2fa status')).args);
    expect(own).toContain('*dave* · dispatcher · 2FA :x: not enabled');
    expect(own).toContain('2FA failures in the last 24 h: *2*');
    expect(own).toContain('10.0.xxx.xxx');
    expect(textOf((await run('U_DAVE', '/2fa status dave')).args)).toContain('*dave*');
    expect(textOf((await run('U_DAVE', '/2fa status eve')).args)).toContain('Only admins can see the 2FA status of another account');
    const eve = textOf((await run('U_ALICE', '/2fa status eve')).args);
    expect(eve).toContain('*eve* · biller · 2FA :white_check_mark: enabled');
    expect(eve).toContain('2FA failures in the last 24 h: *8*');
    expect(eve).toMatch(/last successful 2FA check: \d{4}-/);
    expect(eve).not.toContain('192.168.1.50');
    expect(textOf((await run('U_ALICE', '/2fa status zed')).args)).toContain('*not enabled* (admins must use 2FA)');
    expect(textOf((await run('U_ALICE', '/2fa status ghost')).args)).toContain('No user named `ghost`');
  });
});
