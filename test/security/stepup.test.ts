import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { StepUpError } from '../../src/errors.js';
import type { Actor } from '../../src/services/identity.js';
import { STEPUP_BLOCKS_SECONDS } from '../../src/services/step-up.js';
import { textOf } from '../../src/slack/sim/driver.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, linkSlack, snapshot, totpOf, withoutStepUpFailures, type TestUser } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';

/**
 * Issue 10, "step-up brute force is silent": wrong codes are audited and logged, the third in a
 * window reaches the security channel, the limit holds against parallel guesses and escalates,
 * and a typing mistake is a field error that costs nothing.
 */

let db: Db;
let store: Store;
let t: TestApp;
let cleanup: () => Promise<void>;
let mallory: TestUser, typo: TestUser, esc: TestUser;
const SECURITY = 'C_SECURITY';

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  mallory = await createUser(db, { username: 'mallory', role: 'admin', twoFa: true, area: null });
  typo = await createUser(db, { username: 'typo', role: 'admin', twoFa: true, area: null });
  esc = await createUser(db, { username: 'esc', role: 'admin', twoFa: true, area: null });
  await createUser(db, { username: 'target', role: 'biller', area: null });
  t = await startTestApp({ db, store, env: { SECURITY_CHANNEL: SECURITY, STEPUP_MAX_FAILURES: '5' } });
  for (const u of [mallory, typo, esc]) await linkSlack(db, `U_${u.username.toUpperCase()}`, u.id);
}, 60_000);

afterAll(async () => {
  await t?.stop();
  await store?.close();
  await cleanup?.();
});

const actorOf = (u: TestUser): Promise<Actor> => t.warden.services.identity.resolve({ userId: `U_${u.username.toUpperCase()}`, teamId: 'T_WARDEN' });
const failuresOf = async (u: TestUser) => (await auditRows(db, 'stepup_failed')).filter((r: any) => r.user_id === u.id);

/** A 6-digit code that is not the user's current one (nor the neighbouring steps'). */
async function wrongCode(u: TestUser): Promise<string> {
  const valid = new Set([await totpOf(u, -30), await totpOf(u), await totpOf(u, 30)]);
  for (let n = 0; ; n++) {
    const c = String(n).padStart(6, '0');
    if (!valid.has(c)) return c;
  }
}

describe('step-up brute force', () => {
  it('60 parallel guesses run at most STEPUP_MAX_FAILURES checks; each is audited; the rest are refused; the right code is refused too', async () => {
    const actor = await actorOf(mallory);
    const guesses = Array.from({ length: 60 }, (_, i) => String(100000 + i * 7919));
    const results = await Promise.allSettled(guesses.map((g) => t.warden.services.stepUp.verify(actor, g, 'user_delete')));
    expect(results.every((r) => r.status === 'rejected' && r.reason instanceof StepUpError)).toBe(true);
    const audited = await failuresOf(mallory);
    expect(audited.length).toBeLessThanOrEqual(5);
    expect(audited.length).toBeGreaterThanOrEqual(4); // a guess can be right by chance only once in 200 000
    expect(audited.every((r: any) => r.details.guarded_action === 'user_delete')).toBe(true);
    // Blocked now, also for the right code.
    await expect(t.warden.services.stepUp.verify(actor, await totpOf(mallory), 'user_delete')).rejects.toThrow(/blocked for your account until/);
  });

  it('wrong codes through Slack are audited with the action they guarded, and the third alerts the security channel', async () => {
    const since = t.fake.calls.length;
    const form = await t.driver.reply(await t.driver.command('U_ESC', '/users delete target'));
    const before = await snapshot(db);
    for (let i = 0; i < 3; i++) {
      const sub = await t.driver.submit('U_ESC', form.args.view, { confirm: 'target', totp: await wrongCode(esc) });
      expect(sub.ack.errors.totp).toMatch(/not valid/);
    }
    expect(withoutStepUpFailures(await snapshot(db))).toEqual(withoutStepUpFailures(before));
    const audited = await failuresOf(esc);
    expect(audited.map((r: any) => [r.details.guarded_action, r.details.failures_in_window, r.details.slack_user])).toEqual([
      ['user_delete', 1, 'U_ESC'],
      ['user_delete', 2, 'U_ESC'],
      ['user_delete', 3, 'U_ESC'],
    ]);
    await t.warden.services.outbox.deliverDue();
    const alert = await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === SECURITY && textOf(c.args).includes('U_ESC'), 10_000, since);
    expect(textOf(alert.args)).toMatch(/3 wrong 2FA codes in 15 minutes from <@U_ESC> \(esc\).*user_delete/s);
    expect(textOf(alert.args)).not.toMatch(/\b\d{6}\b/); // no code in the channel
  });

  it('blocks escalate: 15 minutes, then 1 hour, then 24 hours', async () => {
    const actor = await actorOf(esc);
    const blocks: number[] = [];
    for (let round = 0; round < 3; round++) {
      // Continue where the window stands until the limit blocks; then let the block "run out".
      let blocked: StepUpError | undefined;
      for (let i = 0; i < 5 && !blocked; i++) {
        const e = await t.warden.services.stepUp.verify(actor, await wrongCode(esc), 'user_delete').then(
          () => new StepUpError('accepted?'),
          (x: StepUpError) => x,
        );
        if (/blocked for your account/.test(e.message)) blocked = e;
      }
      expect(blocked, `round ${round}`).toBeDefined();
      const last = (await failuresOf(esc)).at(-1);
      blocks.push(Math.round((Date.parse(last.details.blocked_until) - Date.parse(last.timestamp)) / 1000));
      await store.del(`stepup:block:${esc.id}`);
    }
    expect(blocks.map((s) => Math.round(s / 60))).toEqual(STEPUP_BLOCKS_SECONDS.map((s) => s / 60));
  });

  it('typing mistakes are field errors and are not counted', async () => {
    const actor = await actorOf(typo);
    for (const input of ['', '   ', null, undefined, 'abc', '12345', '1234567', '12 34 5x']) {
      await expect(t.warden.services.stepUp.verify(actor, input, 'user_delete')).rejects.toThrow(/Enter the 6-digit code/);
    }
    expect(await failuresOf(typo)).toEqual([]);
    // Four real wrong codes later the admin is still not blocked, and the right code (with spaces) works.
    for (let i = 0; i < 4; i++) await t.warden.services.stepUp.verify(actor, await wrongCode(typo), 'user_delete').catch(() => {});
    const code = await totpOf(typo);
    await expect(t.warden.services.stepUp.verify(actor, `${code.slice(0, 3)} ${code.slice(3)}`, 'user_delete')).resolves.toBeUndefined();
  });
});
