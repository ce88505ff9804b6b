import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { MemoryStore } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, linkSlack, snapshot, type TestUser } from '../helpers/fixtures.js';

/**
 * Issue 10, "replay window": signed request bytes captured once must not run again. A signature
 * dated more than 5 minutes ahead is refused; within the 10 minutes a signature can be valid, the
 * same delivery runs once. The in-process store is used so that moving the clock also moves the
 * expiry of the duplicate-delivery keys (Redis keeps its own clock).
 */

let db: Db;
let t: TestApp;
let cleanup: () => Promise<void>;
let kim: TestUser;
const store = new MemoryStore();

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  const alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  kim = await createUser(db, { username: 'kim', role: 'biller', area: null });
  t = await startTestApp({ db, store });
  await linkSlack(db, 'U_ALICE', alice.id);
}, 60_000);

afterEach(() => {
  vi.useRealTimers();
});

afterAll(async () => {
  await t?.stop();
  await cleanup?.();
});

const roleOf = async () => (await db.query<{ role: string }>('SELECT role FROM "user" WHERE id = $1', [kim.id])).rows[0].role;
const roleChanges = async () => (await auditRows(db, 'role_change')).filter((r: any) => r.entity_id === kim.id).length;

async function waitFor(cond: () => Promise<boolean>) {
  const end = Date.now() + 10_000;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('replay', () => {
  it('a request signed more than 5 minutes ahead is refused before anything runs', async () => {
    const before = await snapshot(db);
    const body = t.driver.commandBody('U_ALICE', '/users role kim dispatcher area:lucknow');
    const now = Math.floor(Date.now() / 1000);
    for (const ahead of [301 + 5, 3600, 86_400]) {
      const answer = await t.driver.post(body, t.driver.sign(body, now + ahead));
      expect(answer.status, `${ahead} s ahead`).toBe(401);
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(await snapshot(db)).toEqual(before);
    expect(t.fake.callsTo('response_url')).toEqual([]);
  });

  it('the same signed bytes replayed up to 10 minutes later run once; later still they are stale', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const start = Date.now();
    const now = Math.floor(start / 1000);
    const body = t.driver.commandBody('U_ALICE', '/users role kim dispatcher area:lucknow');
    const headers = t.driver.sign(body, now + 295); // as far ahead as is accepted
    expect((await t.driver.post(body, headers)).status).toBe(200);
    await waitFor(async () => (await roleOf()) === 'dispatcher');
    expect(await roleChanges()).toBe(1);
    // Another admin puts kim back; a replay of the captured request must not undo that.
    await db.query(`UPDATE "user" SET role = 'biller', dispatch_area = NULL WHERE id = $1`, [kim.id]);

    vi.setSystemTime(start + 590_000); // the signature (now + 295 s) is still within 5 minutes
    expect((await t.driver.post(body, headers)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 500));
    expect(await roleOf()).toBe('biller');
    expect(await roleChanges()).toBe(1);

    vi.setSystemTime(start + 610_000); // now more than 5 minutes old: Bolt refuses it as stale
    expect((await t.driver.post(body, headers)).status).toBe(401);
    await new Promise((r) => setTimeout(r, 300));
    expect(await roleOf()).toBe('biller');
    expect(await roleChanges()).toBe(1);
  });
});
