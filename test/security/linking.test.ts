import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { normalizeEmail } from '../../src/services/identity.js';
import { textOf } from '../../src/slack/sim/driver.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { createUser } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';

/**
 * Issue 10, "e-mail matching is looser than it looks": Slack users whose profile e-mail looks
 * like an account's, or who are not full confirmed members of the workspace, are never matched,
 * are told why, and no link is written. A link made by e-mail stops when either address changes.
 */

let db: Db;
let store: Store;
let t: TestApp;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  await createUser(db, { username: 'alice', role: 'biller', area: null, email: 'alice@example.com' });
  await createUser(db, { username: 'kim', role: 'biller', area: null, email: 'kim@example.com' });
  await createUser(db, { username: 'gus', role: 'biller', area: null, email: 'gus@example.com' });
  t = await startTestApp({ db, store });
}, 60_000);

afterAll(async () => {
  await t?.stop();
  await store?.close();
  await cleanup?.();
});

async function as(user: string) {
  return textOf((await t.driver.reply(await t.driver.command(user, '/users list'))).args);
}

const links = async () => (await db.query<any>('SELECT slack_user_id, user_id, method, email FROM warden_slack_link ORDER BY slack_user_id')).rows;

describe('strict e-mail matching', () => {
  it('compares exactly: trimmed, ASCII lower-cased, nothing else', () => {
    expect(normalizeEmail('  Alice@Example.COM ')).toBe('alice@example.com');
    expect(normalizeEmail('al\u0130ce@example.com')).toBeNull(); // Turkish dotted capital I
    expect(normalizeEmail('\u212Aim@example.com')).toBeNull(); // Kelvin sign
    expect(normalizeEmail('alice@exa\u200Bmple.com')).toBeNull(); // zero-width space
    expect(normalizeEmail('')).toBeNull();
  });

  it('lookalike addresses are never matched, and the person is told why', async () => {
    t.fake.addUser({ id: 'U_TURK', name: 'turk', email: 'al\u0130ce@example.com' });
    t.fake.addUser({ id: 'U_KELVIN', name: 'kelvin', email: '\u212Aim@example.com' });
    for (const u of ['U_TURK', 'U_KELVIN']) {
      expect(await as(u)).toMatch(/cannot match it by e-mail: the e-mail of your Slack profile has characters other than plain ASCII/);
    }
    expect(await links()).toEqual([]);
  });

  it('guests, bots, deactivated, foreign-team and unconfirmed profiles are not matched, each told why', async () => {
    const cases: [Parameters<typeof t.fake.addUser>[0], RegExp][] = [
      [{ id: 'U_GUEST', name: 'g', email: 'kim@example.com', isRestricted: true }, /guest accounts are never matched automatically/],
      [{ id: 'U_SCGUEST', name: 's', email: 'kim@example.com', isUltraRestricted: true }, /guest accounts are never matched automatically/],
      [{ id: 'U_BOTTY', name: 'b', email: 'kim@example.com', isBot: true }, /bots are never matched/],
      [{ id: 'U_GONE', name: 'd', email: 'kim@example.com', deleted: true }, /deactivated/],
      [{ id: 'U_FOREIGN', name: 'f', email: 'kim@example.com', teamId: 'T_OTHER' }, /belongs to another workspace \(Slack Connect\)/],
      [{ id: 'U_UNCONF', name: 'u', email: 'kim@example.com', isEmailConfirmed: false }, /e-mail of your Slack profile is not confirmed/],
    ];
    for (const [profile, why] of cases) {
      t.fake.addUser(profile);
      expect(await as(profile.id), profile.id).toMatch(why);
    }
    expect(await links()).toEqual([]);
  });

  it('a full, confirmed member is matched exactly and the link records the address', async () => {
    t.fake.addUser({ id: 'U_ALICE', name: 'alice', email: '  ALICE@Example.com ' });
    expect(await as('U_ALICE')).toMatch(/signed in as alice \(biller\)/);
    expect(await links()).toEqual([{ slack_user_id: 'U_ALICE', user_id: expect.any(Number), method: 'email', email: 'alice@example.com' }]);
  });

  it('an automatic link pauses when either address changes, and the person is told why', async () => {
    t.fake.addUser({ id: 'U_GUS', name: 'gus', email: 'gus@example.com' });
    expect(await as('U_GUS')).toMatch(/signed in as gus/);

    // The Slack profile e-mail changes: once the cached link is looked up again (60 s), it pauses.
    t.fake.addUser({ id: 'U_GUS', name: 'gus', email: 'gus.private@elsewhere.example' });
    t.warden.services.identity.forget({ teamId: 'T_WARDEN', userId: 'U_GUS' });
    expect(await as('U_GUS')).toMatch(/your Slack profile e-mail has changed since.*paused.*\/users link/s);

    // Back to the recorded address: it works again.
    t.fake.addUser({ id: 'U_GUS', name: 'gus', email: 'gus@example.com' });
    t.warden.services.identity.forget({ teamId: 'T_WARDEN', userId: 'U_GUS' });
    expect(await as('U_GUS')).toMatch(/signed in as gus/);

    // The account's e-mail changes (here by the application itself): the link pauses at once.
    await db.query(`UPDATE "user" SET email = 'gus.new@example.com' WHERE username = 'gus'`);
    expect(await as('U_GUS')).toMatch(/the account’s e-mail has changed since.*paused/s);
    // The link row is kept (so the Slack user can be told and re-confirmed), unchanged.
    expect((await links()).find((l: any) => l.slack_user_id === 'U_GUS').email).toBe('gus@example.com');
  });
});
