import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { startLockoutWatcher, startOutboxDelivery } from '../../src/jobs/alerts.js';
import type { Services } from '../../src/services/index.js';
import { buttonsOf, textOf } from '../../src/slack/sim/driver.js';
import { FakeSlack, type CapturedCall } from '../../src/slack/sim/fake-slack.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, linkSlack, snapshot, totpOf, withoutStepUpFailures, type TestUser } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';

/**
 * Issue 7, lockouts end to end: the application locks an account (audit row login_locked,
 * locked_until set) and Warden posts one card to SECURITY_CHANNEL — woken by NOTIFY, or on
 * start from the cursor when it was down — with Unlock (admin + step-up) and Show attempts.
 */

const SEC = 'C_SECURITY';
// These tests lock many accounts within a minute one by one to test single cards; storms
// (more than LOCKOUT_STORM_PER_MINUTE a minute) have their own tests (test/faults/storms.test.ts).
const ENV = { SECURITY_CHANNEL: SEC, OUTBOX_BACKOFF_MAX: '1s', OUTBOX_POLL_MS: '200', LOCKOUT_STORM_PER_MINUTE: '1000' };
let db: Db;
let store: Store;
let fake: FakeSlack;
let cleanup: () => Promise<void>;
let alice: TestUser;
let bob: TestUser;

/** A running Warden with the lockout watcher and the outbox loop (the alert job starters). */
interface Replica {
  t: TestApp;
  stop(): Promise<void>;
}

async function replica(opts: { allJobs?: boolean } = {}): Promise<Replica> {
  const t = await startTestApp({ db, store, fake, env: ENV, jobs: !!opts.allJobs });
  const stops = opts.allJobs ? [] : [await startLockoutWatcher(t.warden.services), await startOutboxDelivery(t.warden.services)];
  return {
    t,
    async stop() {
      for (const s of stops) await s();
      await t.stop();
    },
  };
}

let main: Replica;

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  fake = await new FakeSlack().start();
  alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  bob = await createUser(db, { username: 'bob', role: 'admin', twoFa: true, area: null });
  const dave = await createUser(db, { username: 'dave', role: 'dispatcher', area: 'indore' });
  await linkSlack(db, 'U_ALICE', alice.id);
  await linkSlack(db, 'U_BOB', bob.id);
  await linkSlack(db, 'U_DAVE', dave.id);
  main = await replica();
});

afterAll(async () => {
  await main?.stop();
  await fake?.stop();
  await store?.close();
  await cleanup?.();
});

/** What the web application does on the 5th wrong password: failed-login rows, then the lock. */
async function appLocksOut(username: string, ip = '203.0.113.77', opts: { auditRow?: boolean; lockRow?: boolean } = {}) {
  const { rows } = await db.query<{ id: number }>('SELECT id FROM "user" WHERE username = $1', [username]);
  const id = rows[0]?.id ?? null;
  for (let i = 0; i < 5; i++) {
    await db.query(
      `INSERT INTO audit_log (user_id, action, entity_type, details, ip_address, "timestamp")
       VALUES ($1, 'login_failed', 'user', $2, $3, now() - make_interval(secs => $4::int))`,
      [id, JSON.stringify({ username, reason: 'invalid_password' }), ip, 50 - i * 10],
    );
  }
  let auditId = 0;
  await db.tx(async (q) => {
    if (opts.lockRow !== false && id !== null) {
      await q.query(
        `UPDATE "user" SET failed_login_attempts = 5, locked_until = now() + interval '30 minutes', last_failed_login = now() WHERE id = $1`,
        [id],
      );
    }
    if (opts.auditRow !== false) {
      const r = await q.query<{ id: number }>(
        `INSERT INTO audit_log (user_id, action, entity_type, entity_id, details, ip_address)
         VALUES ($1, 'login_locked', 'user', $1, $2, $3) RETURNING id`,
        [id, JSON.stringify({ username, attempts: 5 }), ip],
      );
      auditId = r.rows[0].id;
    }
  });
  return auditId;
}

const cardsFor = (username: string): CapturedCall[] =>
  fake.calls.filter((c) => c.method === 'chat.postMessage' && c.args.channel === SEC && textOf(c.args).includes(`Account locked: ${username}`));

/** Makes sure nothing more is on its way: every replica scans and delivers what is due. */
async function settle(...services: Services[]) {
  for (let i = 0; i < 2; i++) {
    for (const s of services) await s.lockouts.scan();
    for (const s of services) await s.outbox.deliverDue();
  }
}

describe('lockout alerts', () => {
  it('posts a lockout to SECURITY_CHANNEL within seconds, woken by NOTIFY, once', async () => {
    await createUser(db, { username: 'larry', role: 'biller', area: null });
    await appLocksOut('larry');
    // No scan or delivery is called by hand: NOTIFY wakes the watcher and the outbox.
    const card = await fake.waitFor((c) => c.method === 'chat.postMessage' && textOf(c.args).includes('Account locked: larry'), 5000);
    expect(card.args.channel).toBe(SEC);
    const text = textOf(card.args);
    expect(text).toContain('larry (biller)');
    expect(text).toContain('larr***@***.com');
    expect(text).toContain('Recent failed attempts');
    expect(text).toContain('203.0.xxx.xxx');
    expect(text).not.toContain('203.0.113.77');
    expect(text).toMatch(/Locked until\*\n\d{4}-\d\d-\d\d/);
    expect(buttonsOf(card.args.blocks).map((b) => b.text)).toEqual(['Unlock', 'Show attempts']);
    // The application wrote both the audit row and locked_until: still one card.
    await settle(main.t.warden.services);
    expect(cardsFor('larry')).toHaveLength(1);
    const alerts = (await db.query<any>(`SELECT username, audit_id, locked_until FROM warden_lockout_alert WHERE username = 'larry'`)).rows;
    expect(alerts).toHaveLength(1);
    expect(alerts[0].audit_id).toBeGreaterThan(0);
    expect(alerts[0].locked_until).toBeInstanceOf(Date);
  });

  it('posts a lockout set only through "user".locked_until', async () => {
    await createUser(db, { username: 'lena', role: 'dispatcher', area: 'bhopal' });
    await appLocksOut('lena', '198.51.100.9', { auditRow: false });
    await fake.waitFor((c) => c.method === 'chat.postMessage' && textOf(c.args).includes('Account locked: lena'), 5000);
    await settle(main.t.warden.services);
    expect(cardsFor('lena')).toHaveLength(1);
  });

  it('does not post an account an admin locked or disabled on purpose', async () => {
    const ann = await createUser(db, { username: 'ann', role: 'biller', area: null });
    const dis = await createUser(db, { username: 'dis', role: 'biller', area: null });
    // What an admin edit does (/users edit status:locked, or the dashboard): the lock and its
    // user_updated audit row in one transaction.
    await db.tx(async (q) => {
      await q.query(`UPDATE "user" SET locked_until = now() + interval '30 minutes' WHERE id = $1`, [ann.id]);
      await q.query(
        `INSERT INTO audit_log (user_id, action, entity_type, entity_id, details) VALUES ($1, 'user_updated', 'user', $2, '{"via":"warden"}')`,
        [alice.id, ann.id],
      );
    });
    // "Disabled" is a lock until 9999-12-31.
    await db.query(`UPDATE "user" SET locked_until = '9999-12-31T00:00:00Z' WHERE id = $1`, [dis.id]);
    await settle(main.t.warden.services);
    expect(cardsFor('ann')).toHaveLength(0);
    expect(cardsFor('dis')).toHaveLength(0);
    const seen = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM warden_lockout_source WHERE source LIKE 'user:%' AND alert_id IS NULL`);
    expect(seen.rows[0].n).toBe(2);
  });

  it('posts lockouts that happened while Warden was down when it starts, once', async () => {
    await main.stop();
    await createUser(db, { username: 'carol', role: 'dispatcher', area: 'kanpur' });
    await createUser(db, { username: 'cyril', role: 'biller', area: null });
    await appLocksOut('carol', '192.0.2.10');
    await appLocksOut('cyril', '192.0.2.11', { auditRow: false });
    expect(cardsFor('carol')).toHaveLength(0);
    // The real start-up path: every job starter.
    main = await replica({ allJobs: true });
    await fake.waitFor((c) => c.method === 'chat.postMessage' && textOf(c.args).includes('Account locked: carol'), 5000);
    await fake.waitFor((c) => c.method === 'chat.postMessage' && textOf(c.args).includes('Account locked: cyril'), 5000);
    await settle(main.t.warden.services);
    // A second restart posts nothing again.
    await main.stop();
    main = await replica();
    await settle(main.t.warden.services);
    for (const u of ['larry', 'lena', 'carol', 'cyril']) expect(cardsFor(u), u).toHaveLength(1);
  });

  it('two replicas watching the same database post one alert', async () => {
    const second = await replica();
    try {
      await createUser(db, { username: 'twin', role: 'biller', area: null });
      await appLocksOut('twin');
      await fake.waitFor((c) => c.method === 'chat.postMessage' && textOf(c.args).includes('Account locked: twin'), 5000);
      // Both replicas scan and deliver again, at the same time.
      await Promise.all([settle(main.t.warden.services), settle(second.t.warden.services)]);
      expect(cardsFor('twin')).toHaveLength(1);
      expect((await db.query(`SELECT count(*)::int AS n FROM warden_outbox WHERE message->>'text' LIKE '%Account locked: twin%'`)).rows[0].n).toBe(1);
    } finally {
      await second.stop();
    }
  });

  it('Slack answering 429 twice, then 200, delivers the alert once', async () => {
    await createUser(db, { username: 'rate', role: 'biller', area: null });
    const failedBefore = fake.callsTo('chat.postMessage!failed').length;
    fake.failNext('chat.postMessage', { status: 429, retryAfter: 0 }, 2);
    await appLocksOut('rate');
    await fake.waitFor((c) => c.method === 'chat.postMessage' && textOf(c.args).includes('Account locked: rate'), 5000);
    await settle(main.t.warden.services);
    expect(fake.callsTo('chat.postMessage!failed').length - failedBefore).toBe(2);
    expect(cardsFor('rate')).toHaveLength(1);
  });

  it('Slack down for a while, then back: every alert is delivered, in order', async () => {
    fake.down = true;
    const names = ['down1', 'down2', 'down3'];
    try {
      for (const n of names) {
        await createUser(db, { username: n, role: 'dispatcher', area: 'nagpur' });
        await appLocksOut(n);
      }
      // Wait until Warden has queued all three and tried (and failed) to deliver the first
      // (the others wait behind it: order is kept within a channel).
      await waitUntil(async () => {
        const { rows } = await db.query<{ n: number; tried: number }>(
          `SELECT count(*)::int AS n, coalesce(max(attempts), 0)::int AS tried FROM warden_outbox
            WHERE status = 'pending' AND message->>'text' LIKE '%Account locked: down%'`,
        );
        return rows[0].n === 3 && rows[0].tried >= 2;
      });
      expect(names.flatMap(cardsFor)).toHaveLength(0);
    } finally {
      fake.down = false;
    }
    for (const n of names) await fake.waitFor((c) => c.method === 'chat.postMessage' && textOf(c.args).includes(`Account locked: ${n}`), 10_000);
    await settle(main.t.warden.services);
    const order = fake.calls
      .filter((c) => c.method === 'chat.postMessage' && /Account locked: down\d/.test(textOf(c.args)))
      .map((c) => /Account locked: (down\d)/.exec(textOf(c.args))![1]);
    expect(order).toEqual(names);
  });
});

describe('lockout card buttons', () => {
  async function cardOf(username: string) {
    const card = cardsFor(username)[0];
    const buttons = buttonsOf(card.args.blocks);
    return { card, unlock: buttons.find((b) => b.text === 'Unlock')!, attempts: buttons.find((b) => b.text === 'Show attempts')! };
  }

  it('Show attempts lists the failed logins with masked IPs, for admins only', async () => {
    const { attempts } = await cardOf('larry');
    const reply = await main.t.driver.reply(await main.t.driver.click('U_ALICE', attempts));
    expect(reply.args.response_type).toBe('ephemeral');
    const text = textOf(reply.args);
    expect(text).toContain('5 failed logins for larry');
    expect(text).toContain('203.0.xxx.xxx');
    expect(text).not.toContain('203.0.113.77');
    expect(text).toContain('invalid_password');
    const dave = await main.t.driver.reply(await main.t.driver.click('U_DAVE', attempts));
    expect(textOf(dave.args)).toContain('Only admins can use this button');
  });

  it('Unlock refuses non-admins, wrong codes and forged buttons without changing anything', async () => {
    const { unlock } = await cardOf('larry');
    const before = await snapshot(db, ['"user"', 'audit_log']);
    const dave = await main.t.driver.reply(await main.t.driver.click('U_DAVE', unlock));
    expect(textOf(dave.args)).toContain('Only admins can use this button');

    const forged = await main.t.driver.reply(await main.t.driver.click('U_ALICE', { actionId: 'alerts:unlock', value: '{"a":"1 OR 1=1"}' }));
    expect(textOf(forged.args)).toContain('not valid any more');
    const ghost = await main.t.driver.reply(await main.t.driver.click('U_ALICE', { actionId: 'alerts:unlock', value: '{"a":999999}' }));
    expect(textOf(ghost.args)).toContain('no longer exists');

    const modal = await main.t.driver.reply(await main.t.driver.click('U_ALICE', unlock));
    expect(modal.method).toBe('views.open');
    expect(textOf(modal.args.view)).toContain('Unlock *larry*');
    const wrong = await main.t.driver.submit('U_ALICE', modal.args.view, { totp: '000000' });
    expect(wrong.ack).toMatchObject({ response_action: 'errors', errors: { totp: expect.stringContaining('not valid') } });
    const empty = await main.t.driver.submit('U_ALICE', modal.args.view, { totp: '' });
    expect(empty.ack).toMatchObject({ response_action: 'errors', errors: { totp: expect.stringContaining('6-digit code') } });
    const tampered = await main.t.driver.submit('U_ALICE', { ...modal.args.view, private_metadata: JSON.stringify({ m: '{"a":"x"}' }) }, {
      totp: await totpOf(alice),
    });
    expect(JSON.stringify(tampered.ack)).toContain('out of date');
    expect(withoutStepUpFailures(await snapshot(db, ['"user"', 'audit_log']))).toEqual(withoutStepUpFailures(before));
    expect((await auditRows(db, 'stepup_failed')).at(-1).details).toMatchObject({ guarded_action: 'unlock_account' });
  });

  it('Unlock with the admin\'s 2FA code unlocks, audits and updates the card in place', async () => {
    const { card, unlock } = await cardOf('larry');
    const modal = await main.t.driver.reply(await main.t.driver.click('U_BOB', unlock));
    const since = fake.calls.length;
    const sub = await main.t.driver.submit('U_BOB', modal.args.view, { totp: await totpOf(bob) });
    expect(sub.answer.status).toBe(200);
    expect(sub.ack).toBeNull();
    const { rows } = await db.query<any>(`SELECT failed_login_attempts, locked_until FROM "user" WHERE username = 'larry'`);
    expect(rows[0]).toEqual({ failed_login_attempts: 0, locked_until: null });
    const audit = (await auditRows(db, 'unlock_account')).filter((r) => r.details.username === 'larry');
    expect(audit).toHaveLength(1);
    expect(audit[0].details).toMatchObject({ actor: 'bob', slack_user: 'U_BOB', via: 'warden' });
    const update = await fake.waitFor((c) => c.method === 'chat.update' && c.args.ts === card.result?.ts, 5000, since);
    const text = textOf(update.args);
    expect(text).toContain('Unlocked: larry');
    expect(text).toContain('Unlocked by bob');
    expect(buttonsOf(update.args.blocks).map((b) => b.text)).toEqual(['Show attempts']);
    const notice = await fake.waitFor((c) => c.method === 'chat.postEphemeral' || (c.method === 'response_url' && textOf(c.args).includes('Unlocked *larry*')), 5000, since);
    expect(textOf(notice.args)).toContain('Unlocked *larry*');

    // A second click on the old card: already unlocked, said so, nothing changes.
    const again = await main.t.driver.reply(await main.t.driver.click('U_ALICE', unlock));
    expect(textOf(again.args)).toContain('larry was already unlocked by bob');
  });

  it('an unlock done with /users unlock updates the lockout card too', async () => {
    await createUser(db, { username: 'ulla', role: 'biller', area: null });
    await appLocksOut('ulla');
    const card = await fake.waitFor((c) => c.method === 'chat.postMessage' && textOf(c.args).includes('Account locked: ulla'), 5000);
    await settle(main.t.warden.services);
    const since = fake.calls.length;
    // The same step-up rule as the card's Unlock: a form asking for the 2FA code.
    const cmd = await main.t.driver.command('U_ALICE', '/users unlock ulla');
    const modal = await main.t.driver.reply(cmd);
    expect(modal.method).toBe('views.open');
    await main.t.driver.submit('U_ALICE', modal.args.view, { totp: await totpOf(alice) });
    const reply = await fake.waitFor((c) => c.method === 'response_url' && c.responseId === cmd.responseId, 5000, cmd.since);
    expect(textOf(reply.args)).toContain('Unlocked *ulla*');
    const update = await fake.waitFor((c) => c.method === 'chat.update' && c.args.ts === card.result?.ts, 5000, since);
    expect(textOf(update.args)).toContain('Unlocked by alice');
    expect(buttonsOf(update.args.blocks).map((b) => b.text)).toEqual(['Show attempts']);
    const alert = (await db.query<any>(`SELECT unlocked_by FROM warden_lockout_alert WHERE username = 'ulla'`)).rows;
    expect(alert).toEqual([{ unlocked_by: 'alice' }]);
  });
});

async function waitUntil(cond: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
