import { generateSecret } from 'otplib';
import type { Db } from '../db/index.js';
import type { SlackProfile } from '../slack/sim/fake-slack.js';

/**
 * Realistic demo data for the console, written on first run into an empty database:
 * a few hundred users across roles and areas, admins with and without 2FA, a locked
 * account with the failed attempts that locked it, pending promotion requests and
 * thousands of audit rows of the seed's action types over the last 30 days.
 */

export const DEMO_DOMAIN = 'demo.traitortrack.example';

export type ConsolePerson = SlackProfile & { note: string };

/**
 * The Slack people of the console, and the account each one is linked to (by e-mail, a
 * month ago: old enough for the 2FA recovery's Slack-code check and for every cool-down).
 */
export const DEMO_SLACK_USERS: ConsolePerson[] = [
  { id: 'U_ADMIN', name: 'alice', email: `alice@${DEMO_DOMAIN}`, note: 'admin with 2FA (type `totp` for her code)' },
  { id: 'U_ADMIN2', name: 'carol', email: `carol@${DEMO_DOMAIN}`, note: 'second admin with 2FA (four eyes)' },
  { id: 'U_ADMIN3', name: 'dana', email: `dana@${DEMO_DOMAIN}`, note: 'third admin with 2FA' },
  { id: 'U_BOB', name: 'bob', email: `bob@${DEMO_DOMAIN}`, note: 'admin without 2FA' },
  { id: 'U_DISPATCH', name: 'dave', email: `dave@${DEMO_DOMAIN}`, note: 'dispatcher in lucknow, with 2FA (lost his phone? /2fa recover dave)' },
  { id: 'U_BILLER', name: 'erin', email: `erin@${DEMO_DOMAIN}`, note: 'biller' },
  { id: 'U_STRANGER', name: 'mallory', email: 'mallory@elsewhere.example', note: 'not linked to any account' },
];

const AREAS = ['lucknow', 'indore', 'bhopal', 'kanpur', 'nagpur'];
const FIRST = ['amit', 'priya', 'rahul', 'neha', 'vikram', 'anita', 'suresh', 'kavya', 'arjun', 'meera', 'rohan', 'divya', 'sanjay', 'pooja', 'karan'];
const LAST = ['sharma', 'verma', 'gupta', 'singh', 'patel', 'rao', 'iyer', 'khan', 'joshi', 'mehta'];

const AUDIT_ACTIONS = [
  'login_success', 'login_success', 'login_success', 'login_success', 'logout', 'logout', 'login_failed',
  'password_change', 'password_reset_request', '2fa_verify_success', '2fa_verify_failed', 'create_bag',
  'create_bag', 'update_bag', 'create_bill', 'update_bill', 'delete_bag', 'link_created', 'user_updated',
];

export async function isEmpty(db: Db): Promise<boolean> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM "user"');
  return rows[0].n === 0;
}

export async function seedDemoData(db: Db): Promise<void> {
  await db.tx(async (q) => {
    const insertUser = async (u: {
      username: string;
      role: string;
      area?: string | null;
      twoFa?: boolean;
      email?: string;
      daysOld?: number;
    }) => {
      const { rows } = await q.query<{ id: number }>(
        `INSERT INTO "user" (username, email, password_hash, role, dispatch_area, two_fa_enabled, totp_secret, created_at, last_login)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now() - make_interval(days => $8::int), now() - make_interval(hours => $9::int))
         RETURNING id`,
        [
          u.username,
          u.email ?? `${u.username}@${DEMO_DOMAIN}`,
          'pbkdf2:sha256:600000$demo$0000',
          u.role,
          u.area ?? null,
          !!u.twoFa,
          u.twoFa ? generateSecret() : null,
          u.daysOld ?? 200,
          (u.daysOld ?? 200) % 72,
        ],
      );
      return rows[0].id;
    };

    await insertUser({ username: 'alice', role: 'admin', twoFa: true, daysOld: 700 });
    await insertUser({ username: 'carol', role: 'admin', twoFa: true, daysOld: 500 });
    await insertUser({ username: 'dana', role: 'admin', twoFa: true, daysOld: 400 });
    await insertUser({ username: 'bob', role: 'admin', twoFa: false, daysOld: 40 });
    const dave = await insertUser({ username: 'dave', role: 'dispatcher', area: 'lucknow', twoFa: true, daysOld: 300 });
    const erin = await insertUser({ username: 'erin', role: 'biller', daysOld: 250 });
    const ravi = await insertUser({ username: 'ravi.k', role: 'dispatcher', area: 'indore', daysOld: 120 });

    // A few hundred more across roles and areas.
    let n = 0;
    for (const first of FIRST) {
      for (const last of LAST) {
        for (const suffix of ['', '2']) {
          n++;
          const role = n % 37 === 0 ? 'admin' : n % 3 === 0 ? 'biller' : 'dispatcher';
          await insertUser({
            username: `${first}.${last}${suffix}`,
            role,
            area: role === 'dispatcher' ? AREAS[n % AREAS.length] : null,
            twoFa: n % 4 === 0 || (role === 'admin' && n % 2 === 0),
            daysOld: 5 + ((n * 17) % 600),
          });
        }
      }
    }

    // The console's Slack users were linked by e-mail a month ago, as if they had used Warden since.
    for (const p of DEMO_SLACK_USERS) {
      await q.query(
        `INSERT INTO warden_slack_link (slack_team_id, slack_user_id, user_id, method, created_at)
         SELECT 'T_WARDEN', $1, id, 'email', now() - interval '30 days' FROM "user" WHERE lower(email) = lower($2)`,
        [p.id, p.email ?? ''],
      );
    }

    // ravi.k locked himself out a few minutes ago: the guide's 5 failures → 30-minute lock.
    await q.query(
      `UPDATE "user" SET failed_login_attempts = 5, last_failed_login = now() - interval '4 minutes',
              locked_until = now() + interval '26 minutes' WHERE id = $1`,
      [ravi],
    );
    for (let i = 0; i < 5; i++) {
      await q.query(
        `INSERT INTO audit_log (timestamp, user_id, action, entity_type, entity_id, details, ip_address)
         VALUES (now() - make_interval(mins => $1::int), NULL, 'login_failed', 'user', $2, $3, $4)`,
        [12 - 2 * i, ravi, JSON.stringify({ username: 'ravi.k', reason: 'invalid_password' }), i < 3 ? '203.0.113.45' : '198.51.100.7'],
      );
    }
    await q.query(
      `INSERT INTO audit_log (timestamp, user_id, action, entity_type, entity_id, details, ip_address)
       VALUES (now() - interval '4 minutes', $1, 'login_locked', 'user', $1, $2, '198.51.100.7')`,
      [ravi, JSON.stringify({ username: 'ravi.k', failed_attempts: 5 })],
    );

    // Pending promotion requests, one of them waiting for more than a day.
    await q.query(
      `INSERT INTO promotion_request (user_id, reason, status, requested_at) VALUES
         ($1, 'I cover the Lucknow night shift alone and need to unlock dispatchers when admins are offline.', 'pending', now() - interval '2 days'),
         ($2, 'Taking over month-end billing reconciliation from the finance lead.', 'pending', now() - interval '3 hours')`,
      [dave, erin],
    );

    // Thousands of audit rows of the seed's action types over the last 30 days.
    await q.query(
      `INSERT INTO audit_log (timestamp, user_id, action, entity_type, entity_id, details, ip_address)
       SELECT now() - (g::float8 / 5000) * interval '30 days',
              u.id,
              a.action,
              CASE WHEN a.action LIKE '%bag%' THEN 'bag' WHEN a.action LIKE '%bill%' THEN 'bill' ELSE 'user' END,
              CASE WHEN a.action LIKE '%bag%' OR a.action LIKE '%bill%' THEN 1000 + g % 900 ELSE u.id END,
              jsonb_build_object('username', u.username),
              '10.20.' || (g % 8) || '.' || (1 + g % 200)
         FROM generate_series(1, 5000) g
         CROSS JOIN LATERAL (SELECT ($1::text[])[1 + (g * 7) % array_length($1::text[], 1)] AS action) a
         CROSS JOIN LATERAL (SELECT id, username FROM "user" ORDER BY id OFFSET (g * 13) % 300 LIMIT 1) u`,
      [AUDIT_ACTIONS],
    );
    // A role change with before/after snapshots, as the guide's history query shows them.
    await q.query(
      `INSERT INTO audit_log (timestamp, user_id, action, entity_type, entity_id, details, before_state, after_state)
       SELECT now() - interval '6 days', a.id, 'role_change', 'user', e.id,
              jsonb_build_object('username', e.username, 'changed_by', a.username),
              '{"role": "dispatcher", "dispatch_area": "kanpur"}', '{"role": "biller", "dispatch_area": null}'
         FROM "user" a, "user" e WHERE a.username = 'alice' AND e.username = 'erin'`,
    );
  });
}
