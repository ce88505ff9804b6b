import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/index.js';
import { runJobOnce } from '../../src/jobs/runner.js';
import { retentionJob } from '../../src/jobs/retention.js';
import { textOf } from '../../src/slack/sim/driver.js';
import type { Store } from '../../src/store/index.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDb } from '../helpers/db.js';
import { auditRows, createUser, linkSlack, snapshot, totpOf, withoutStepUpFailures, type TestUser } from '../helpers/fixtures.js';
import { createTestStore } from '../helpers/store.js';

let t: TestApp;
let db: Db;
let store: Store;
let cleanup: () => Promise<void>;
let alice: TestUser;
let erin: TestUser;
let bob: TestUser;

const ago = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();
const days = (n: number) => ago(n * 24 * 60);

async function ins(r: { ts: string; user?: number | null; action: string; details?: object | null; ip?: string | null; before?: object | null; after?: object | null }) {
  await db.query(
    `INSERT INTO audit_log ("timestamp", user_id, action, entity_type, entity_id, details, ip_address, before_state, after_state)
     VALUES ($1, $2, $3, 'user', $2, $4, $5, $6, $7)`,
    [r.ts, r.user ?? null, r.action, r.details ? JSON.stringify(r.details) : null, r.ip ?? null,
      r.before ? JSON.stringify(r.before) : null, r.after ? JSON.stringify(r.after) : null],
  );
}

async function run(line: string, user = 'U_ALICE') {
  const i = await t.driver.command(user, line);
  const reply = await t.driver.reply(i, 60_000);
  return { i, reply, text: textOf(reply.args) };
}

/** The CSV of the n-th upload, read back from the fake Slack. */
function uploadedCsv(fileId: string): string {
  return t.fake.uploads.get(fileId)!.content.toString('utf8');
}

function parseCsvLine(line: string): string[] {
  const out: string[] = [];
  const re = /("(?:[^"]|"")*"|[^,]*)(,|$)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(line)) && m[0] !== '') {
    out.push(m[1].startsWith('"') ? m[1].slice(1, -1).replace(/""/g, '"') : m[1]);
    if (m[2] === '') break;
  }
  return out;
}

beforeAll(async () => {
  ({ db, cleanup } = await createTestDb());
  store = createTestStore();
  alice = await createUser(db, { username: 'alice', role: 'admin', twoFa: true, area: null });
  erin = await createUser(db, { username: 'erin', role: 'admin', twoFa: true, area: null });
  bob = await createUser(db, { username: 'bob' });
  await createUser(db, { username: 'dave' });
  for (let i = 0; i < 5; i++) {
    await ins({ ts: ago(1 + i), action: 'login_failed', details: { username: 'bob', email: 'bob.builder@example.com' }, ip: '203.0.113.77' });
  }
  // A formula smuggled into a username must not run in a spreadsheet.
  await ins({ ts: ago(10), action: 'login_failed', details: { username: '=HYPERLINK("http://evil")' }, ip: '203.0.113.99' });
  // 12,000 logins: a long export with progress.
  await db.query(
    `INSERT INTO audit_log ("timestamp", user_id, action, entity_type, entity_id, ip_address, details)
     SELECT now() - g * interval '1 second', $1, 'login_success', 'user', $1, '10.20.30.' || (g % 250), jsonb_build_object('username', 'bob')
       FROM generate_series(1, 12000) g`,
    [bob.id],
  );
  t = await startTestApp({ db, store, env: { ALERTS_CHANNEL: 'C_ALERTS' } });
  await linkSlack(db, 'U_ALICE', alice.id);
  await linkSlack(db, 'U_ERIN', erin.id);
  t.fake.addUser({ id: 'U_DAVE', name: 'dave', email: 'dave@example.com' });
});

afterAll(async () => {
  await t?.stop();
  await store?.close();
  await cleanup?.();
});

describe('/audit export', () => {
  it('sends a masked CSV to the requester by DM, leaves only a note in the channel, and audits where it went', async () => {
    const { i, reply, text } = await run('/audit export action:login_failed');
    // The note in the channel (ephemeral: the reply to the command), with the count and the masking.
    expect(reply.args.response_type).toBe('ephemeral');
    expect(text).toContain('Sent to you by direct message: 6 audit entries');
    expect(text).toContain('(e-mails and IPs masked)');
    const complete = await t.fake.waitFor((c) => c.method === 'files.completeUploadExternal', 5000, i.since);
    expect(complete.args.channel_id).toBe('D_U_ALICE');
    // The DM was opened before the upload (Slack's upload takes conversation ids only).
    const calls = t.fake.calls.slice(i.since);
    expect(calls.findIndex((c) => c.method === 'conversations.open' && c.args.users === 'U_ALICE')).toBeLessThan(calls.indexOf(complete));
    // Nothing of the export went into the channel: no file, no post.
    expect(t.fake.sharedFiles.filter((f) => f.channel === 'C_ADMIN')).toEqual([]);
    expect(calls.filter((c) => c.method.startsWith('chat.') && c.args.channel === 'C_ADMIN')).toEqual([]);
    expect(complete.args.initial_comment).toContain('6 audit entries (action:login_failed), e-mails and IPs masked');
    const csv = uploadedCsv(complete.args.files[0].id);
    const lines = csv.trimEnd().split('\r\n');
    expect(lines[0]).toBe('id,timestamp,actor,user_id,action,entity_type,entity_id,ip_address,details,before_state,after_state');
    expect(lines).toHaveLength(7);
    const first = parseCsvLine(lines[1]);
    expect(first[4]).toBe('login_failed');
    expect(first[7]).toBe('203.0.xxx.xxx');
    expect(JSON.parse(first[8])).toEqual({ username: 'bob', email: 'bob.***@***.com' });
    expect(csv).not.toContain('203.0.113.77');
    expect(csv).not.toContain('bob.builder@example.com');
    // The formula is in a JSON cell starting with `{`, so inert; a bare cell would be prefixed with '.
    expect(csv).toContain('=HYPERLINK');
    expect(lines.every((l) => !/^[=+@-]/.test(l) && !/,[=+@-]/.test(l))).toBe(true);

    const [row] = await auditRows(db, 'audit_export');
    expect(row.user_id).toBe(alice.id);
    expect(row.details).toMatchObject({ actor: 'alice', slack_user: 'U_ALICE', filters: 'action:login_failed', rows: 6, masked: true, delivered_to: 'dm', delivered_channel: 'D_U_ALICE' });
  });

  it('to:channel uploads into the channel where it was asked, and the audit row says so', async () => {
    const { i, text } = await run('/audit export action:login_failed to:channel');
    expect(text).toContain('Exported 6 audit entries to `audit-export-');
    expect(text).toContain('(e-mails and IPs masked)');
    const complete = await t.fake.waitFor((c) => c.method === 'files.completeUploadExternal', 5000, i.since);
    expect(complete.args.channel_id).toBe('C_ADMIN');
    expect(uploadedCsv(complete.args.files[0].id)).not.toContain('203.0.113.77');
    const [row] = (await auditRows(db, 'audit_export')).slice(-1);
    expect(row.details).toMatchObject({ rows: 6, masked: true, delivered_to: 'channel', delivered_channel: 'C_ADMIN', slack_channel: 'C_ADMIN' });
  });

  it('refuses a careless or hostile destination with a clear error, uploads nothing and audits nothing', async () => {
    const exportsBefore = (await auditRows(db, 'audit_export')).length;
    const uploadsBefore = t.fake.callsTo('files.getUploadURLExternal').length;
    const cases: [string, string][] = [
      ['to:C_OTHER', '`to` must be one of `dm`, `channel`'],
      ['to:<#C0EVIL123|general>', '`to` must be one of `dm`, `channel`'],
      ['to:<@U_ERIN>', '`to` must be one of `dm`, `channel`'],
      ['to:https://evil.example/x', '`to` must be one of `dm`, `channel`'],
      ['to:dm to:channel', '`to:` is given twice'],
      ['to:', '`to:` needs a value'],
      ['to:channel --unmasked', 'Unmasked exports go to your direct messages only'],
    ];
    for (const [words, error] of cases) {
      const { text, reply } = await run(`/audit export action:login_failed ${words}`);
      expect(reply.method, words).toBe('response_url');
      expect(text, words).toContain(error);
      expect(text, words).toContain('Usage:');
      expect(text, words).not.toMatch(/<[#@!]|<http/);
    }
    expect(t.fake.callsTo('files.getUploadURLExternal')).toHaveLength(uploadsBefore);
    expect(await auditRows(db, 'audit_export')).toHaveLength(exportsBefore);
  });

  it('shows progress for a long export, streamed in batches, and ends with the row count', async () => {
    const { i, text } = await run('/audit export action:login_success');
    expect(text).toContain('Sent to you by direct message: 12,000 audit entries');
    const calls = t.fake.calls.slice(i.since);
    const progress = calls.filter((c) => c.method === 'chat.postMessage' && String(c.args.text).includes('Exporting audit entries'));
    expect(progress).toHaveLength(1);
    // Progress goes where the file goes: the DM.
    expect(progress[0].args.channel).toBe('D_U_ALICE');
    const updates = calls.filter((c) => c.method === 'chat.update').map((c) => String(c.args.text));
    expect(updates.some((u) => u.includes('rows so far'))).toBe(true);
    expect(updates.at(-1)).toContain('Exported 12,000 audit entries');
    const complete = calls.find((c) => c.method === 'files.completeUploadExternal')!;
    const csv = uploadedCsv(complete.args.files[0].id);
    const lines = csv.trimEnd().split('\r\n');
    expect(lines).toHaveLength(12_001);
    expect(new Set(lines.slice(1).map((l) => l.split(',')[0])).size).toBe(12_000);
    expect(csv).not.toMatch(/10\.20\.30\.\d/);
  });

  it('says so when nothing matches and uploads nothing', async () => {
    const before = t.fake.callsTo('files.getUploadURLExternal').length;
    const { text } = await run('/audit export action:logout');
    expect(text).toContain('nothing to export');
    expect(t.fake.callsTo('files.getUploadURLExternal')).toHaveLength(before);
  });

  it('explains a refused upload (Warden not in the channel); the audit row, written before the upload, says it was not delivered', async () => {
    const exportsBefore = (await auditRows(db, 'audit_export')).length;
    t.fake.failNext('files.completeUploadExternal', { status: 200, error: 'not_in_channel' });
    const { text } = await run('/audit export action:login_failed to:channel');
    expect(text).toContain('Slack refused the file (`not_in_channel`)');
    const rows = await auditRows(db, 'audit_export');
    expect(rows).toHaveLength(exportsBefore + 1);
    expect(rows.at(-1).details).toMatchObject({ rows: 6, delivery_failed: 'not_in_channel' });
  });

  it('--unmasked asks for step-up, refuses a wrong code, then sends the clear file to the DM only', async () => {
    const { reply } = await run('/audit export action:login_failed --unmasked');
    expect(reply.method).toBe('views.open');
    const view = reply.args.view;
    expect(textOf(view)).toContain('with e-mails and IP addresses in clear');

    const before = await snapshot(db);
    const uploadsBefore = t.fake.callsTo('files.getUploadURLExternal').length;
    const wrong = await t.driver.submit('U_ALICE', view, { totp: '000000' });
    expect(wrong.ack).toMatchObject({ response_action: 'errors', errors: { totp: expect.stringContaining('not valid') } });
    expect(withoutStepUpFailures(await snapshot(db))).toEqual(withoutStepUpFailures(before));
    expect((await auditRows(db, 'stepup_failed')).at(-1).details).toMatchObject({ guarded_action: 'audit_export_unmasked', reason: 'wrong' });
    expect(t.fake.callsTo('files.getUploadURLExternal')).toHaveLength(uploadsBefore);

    const ok = await t.driver.submit('U_ALICE', view, { totp: await totpOf(alice) });
    expect(ok.answer.status).toBe(200);
    expect(ok.ack).toBeNull();
    const complete = await t.fake.waitFor((c) => c.method === 'files.completeUploadExternal', 10_000, ok.since);
    expect(complete.args.channel_id).toBe('D_U_ALICE');
    expect(complete.args.initial_comment).toContain('UNMASKED');
    const csv = uploadedCsv(complete.args.files[0].id);
    expect(csv).toContain('203.0.113.77');
    expect(csv).toContain('bob.builder@example.com');
    await t.fake.waitFor((c) => c.method === 'chat.update' && String(c.args.text).includes('Exported'), 10_000, ok.since);
    const rows = await auditRows(db, 'audit_export');
    expect(rows.at(-1).details).toMatchObject({ masked: false, delivered_to: 'dm', rows: 6 });
  });

  it('a non-admin cannot submit the unmasked export form', async () => {
    const { reply } = await run('/audit export --unmasked');
    const before = await snapshot(db);
    await linkSlack(db, 'U_DAVE2', bob.id);
    const forged = await t.driver.submit('U_DAVE2', reply.args.view, { totp: '123456' });
    expect(JSON.stringify(forged.ack)).toContain('Only admins can submit this form');
    expect((await snapshot(db)).audit_log).toEqual(before.audit_log);
  });
});

describe('/audit retention and the nightly job', () => {
  beforeAll(async () => {
    await ins({ ts: days(100), user: bob.id, action: 'login_success', ip: '10.0.0.1' });
    await ins({ ts: days(120), user: bob.id, action: 'logout' });
    await ins({ ts: days(95), user: alice.id, action: 'user_updated', before: { role: 'biller' }, after: { role: 'dispatcher' } });
    await ins({ ts: days(200), user: alice.id, action: 'delete_user', before: { username: 'old1' } });
    await ins({ ts: days(150), user: alice.id, action: 'user_deleted', before: { username: 'old2' } });
    await ins({ ts: days(130), user: alice.id, action: 'role_change', before: { role: 'biller' }, after: { role: 'admin' } });
    await ins({ ts: days(40), user: alice.id, action: 'user_updated', before: { role: 'biller' }, after: { role: 'dispatcher' } });
    await ins({ ts: days(10), user: alice.id, action: 'user_updated', before: { role: 'dispatcher' }, after: { role: 'biller' } });
  });

  it('--dry-run reports what would go and changes nothing', async () => {
    const before = await snapshot(db);
    const { text } = await run('/audit retention --dry-run');
    expect(text).toContain('Audit retention — dry run');
    expect(text).toContain('Would delete *3* entries older than 90 days');
    // 200-day delete_user, 150-day user_deleted, 130-day role_change, 40-day user_updated
    expect(text).toContain('Would clear before/after snapshots of *4* entries older than 30 days');
    expect(text).toContain('`delete_user`, `user_deleted`');
    expect(await snapshot(db)).toEqual(before);
  });

  it('the real run asks for step-up, then deletes, clears, keeps critical actions and reports the counts', async () => {
    const { reply } = await run('/audit retention', 'U_ERIN');
    const view = reply.args.view;
    expect(view.callback_id).toBe('audit:retention');
    expect(textOf(view)).toContain('Would delete *3* entries');

    const before = await snapshot(db);
    const wrong = await t.driver.submit('U_ERIN', view, { totp: '12345' });
    expect(wrong.ack.errors.totp).toContain('6-digit');
    expect(await snapshot(db)).toEqual(before);

    const ok = await t.driver.submit('U_ERIN', view, { totp: await totpOf(erin) });
    const posted = await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === 'C_ALERTS', 10_000, ok.since);
    const report = textOf(posted.args);
    expect(report).toContain('Audit retention applied* by erin');
    expect(report).toContain('Deleted *3* entries');
    expect(report).toContain('Cleared before/after snapshots of *4* entries');
    await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === 'C_ADMIN' && textOf(c.args).includes('Audit retention applied'), 10_000, ok.since);

    const { rows: old } = await db.query<any>(
      `SELECT action, before_state, after_state FROM audit_log WHERE "timestamp" < now() - interval '30 days' ORDER BY "timestamp"`,
    );
    expect(old.map((r) => r.action)).toEqual(['delete_user', 'user_deleted', 'role_change', 'user_updated']);
    expect(old.every((r) => r.before_state === null && r.after_state === null)).toBe(true);
    const { rows: recent } = await db.query<any>(
      `SELECT before_state FROM audit_log WHERE action = 'user_updated' AND "timestamp" > now() - interval '30 days'`,
    );
    expect(recent[0].before_state).toEqual({ role: 'dispatcher' });
    const [audit] = await auditRows(db, 'audit_retention');
    expect(audit.user_id).toBe(erin.id);
    expect(audit.details).toMatchObject({ logs_deleted: 3, snapshots_cleared: 4, retention_days: 90, snapshot_days: 30 });
  });

  it('the nightly job applies the policy and posts what it did to ALERTS_CHANNEL', async () => {
    await ins({ ts: days(91), user: bob.id, action: 'logout' });
    await ins({ ts: days(35), user: bob.id, action: 'user_updated', before: { role: 'a' }, after: { role: 'b' } });
    const since = t.fake.calls.length;
    expect(await runJobOnce(t.warden.services, retentionJob)).toBe('ran');
    const posted = await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === 'C_ALERTS', 5000, since);
    expect(textOf(posted.args)).toContain('Audit retention applied* by the nightly job');
    expect(textOf(posted.args)).toContain('Deleted *1* entry');
    expect(textOf(posted.args)).toContain('snapshots of *1* entry');
    const rows = await auditRows(db, 'audit_retention');
    expect(rows.at(-1)).toMatchObject({ user_id: null, details: { by: 'scheduled job', logs_deleted: 1, snapshots_cleared: 1 } });
    // Nothing left to do: a second run reports zeros.
    expect(await runJobOnce(t.warden.services, retentionJob)).toBe('ran');
    const again = await t.fake.waitFor((c) => c.method === 'chat.postMessage' && c.args.channel === 'C_ALERTS' && textOf(c.args).includes('Deleted *0*'), 5000, since);
    expect(textOf(again.args)).toContain('snapshots of *0* entries');
  });
});

describe('secrets the application wrote never reach Slack (issue 11)', () => {
  const SECRET = 'JBSWY3DPEHPK3PXP';
  it('history, timeline, search and the masked and unmasked exports show [hidden], never the value', async () => {
    await ins({
      ts: ago(0), // the newest row: first on the history page
      user: bob.id,
      action: 'user_updated',
      details: { username: 'bob', Session: { API_KEY: SECRET }, extra: JSON.stringify({ totp_secret: SECRET }), client_ip: '2401:4900:1c5a:2b3::17' },
      ip: '::ffff:192.168.1.1',
      before: { role: 'biller', totp_secret: SECRET, password_hash: `pbkdf2$${SECRET}` },
      after: { role: 'dispatcher', totp_secret: null, password_reset_token: SECRET },
    });
    for (const line of ['/audit history bob', '/audit timeline bob', '/audit action:user_updated']) {
      const { text } = await run(line);
      expect(text, line).not.toContain(SECRET);
      expect(text, line).not.toContain('192.168.1.1');
      expect(text, line).not.toContain('1c5a');
    }
    expect((await run('/audit history bob')).text).toContain('[hidden]');

    const { i } = await run('/audit export action:user_updated');
    const complete = await t.fake.waitFor((c) => c.method === 'files.completeUploadExternal', 5000, i.since);
    const masked = uploadedCsv(complete.args.files[0].id);
    expect(masked).not.toContain(SECRET);
    expect(masked).toContain('[hidden]');
    expect(masked).not.toContain('1c5a');
    expect(masked).toContain('::ffff:192.168.xxx.xxx');

    const form = await t.driver.reply(await t.driver.command('U_ALICE', '/audit export action:user_updated --unmasked'));
    // The next time step: alice's current code was spent by an earlier test (a code is accepted once).
    const ok = await t.driver.submit('U_ALICE', form.args.view, { totp: await totpOf(alice, 30) });
    expect(ok.answer.status).toBe(200);
    const done = await t.fake.waitFor((c) => c.method === 'files.completeUploadExternal' && String(c.args.initial_comment).includes('UNMASKED'), 10_000, i.since);
    const clear = uploadedCsv(done.args.files[0].id);
    expect(clear).toContain('2401:4900:1c5a:2b3::17');
    expect(clear).not.toContain(SECRET);
    expect(clear).toContain('[hidden]');
  });

  it('the timeline heading is bold once', async () => {
    const { reply } = await run('/audit timeline bob');
    expect(JSON.stringify(reply.args.blocks)).toContain('*Timeline of bob*');
    expect(JSON.stringify(reply.args.blocks)).not.toContain('bob**');
  });
});

describe('modal envelope integrity (issue 11)', () => {
  it('a forged private_metadata chooses neither where Warden posts nor the channel an audit row names', async () => {
    let hits = 0;
    const evil = http.createServer((_req, res) => {
      hits++;
      res.end('ok');
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
    const port = (evil.address() as AddressInfo).port;
    try {
      const { reply } = await run('/audit export action:login_failed --unmasked', 'U_ERIN');
      const view = reply.args.view;
      const meta = JSON.parse(view.private_metadata);
      expect(meta.s).toBeTruthy(); // sealed
      const forged = { ...view, private_metadata: JSON.stringify({ ...meta, ch: 'C_EVIL', ru: `http://127.0.0.1:${port}/hook` }) };
      const ok = await t.driver.submit('U_ERIN', forged, { totp: await totpOf(erin, 30) });
      expect(ok.answer.status).toBe(200);
      const complete = await t.fake.waitFor((c) => c.method === 'files.completeUploadExternal', 10_000, ok.since);
      expect(complete.args.channel_id).toBe('D_U_ERIN');
      await t.fake.waitFor((c) => c.method === 'chat.update' && String(c.args.text).includes('Exported'), 10_000, ok.since);
      await new Promise((r) => setTimeout(r, 300));
      expect(hits).toBe(0);
      expect(t.fake.calls.slice(ok.since).filter((c) => JSON.stringify(c.args).includes('C_EVIL'))).toEqual([]);
      const rows = await auditRows(db, 'audit_export');
      expect(rows.at(-1).details.actor).toBe('erin');
      expect(rows.at(-1).details.slack_channel).not.toBe('C_EVIL');
    } finally {
      evil.close();
    }
  });
});
