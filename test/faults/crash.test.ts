import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeSlack } from '../../src/slack/sim/fake-slack.js';
import { createTestDb } from '../helpers/db.js';
import { createUser } from '../helpers/fixtures.js';
import { realServers } from './support.js';

/**
 * Issue 12: "kill -9 during /audit retention deleted 30,000 rows with no audit_retention row
 * (batches commit, the audit row comes last); an export reached Slack with no audit_export row
 * (upload before audit)." The work runs in a child process that is killed with SIGKILL; the
 * property: the audit log covers every change made and every file delivered.
 */
const CHILD = path.resolve('test/faults/children/audit-work.ts');

function child(args: string[]): { proc: ChildProcess; exited: Promise<number | null>; output: () => string } {
  // node itself with tsx as a loader: the tsx CLI runs the script in a grandchild that a
  // SIGKILL to the CLI would leave running.
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, exited, output: () => out };
}

describe.runIf(realServers)('kill -9 mid-way: the audit log covers every change', () => {
  let fake: FakeSlack;
  beforeAll(async () => {
    fake = await new FakeSlack().start();
  });
  afterAll(async () => {
    await fake?.stop();
  });

  it('during retention: every deleted row is counted by the run\'s audit_retention row', { timeout: 120_000 }, async () => {
    const { db, url, cleanup } = await createTestDb();
    try {
      const OLD = 60_000;
      await db.query(
        `INSERT INTO audit_log ("timestamp", action, details)
         SELECT now() - interval '200 days' - g * interval '1 second', 'login_success', '{}'::jsonb FROM generate_series(1, $1) g`,
        [OLD],
      );
      const c = child(['retention', url!]);
      // Kill once a few batches have committed.
      await expect
        .poll(
          async () =>
            (await db.query<{ n: number }>(`SELECT COALESCE(max((details->>'logs_deleted')::int), 0) AS n FROM audit_log WHERE action = 'audit_retention'`))
              .rows[0].n,
          { timeout: 60_000, interval: 20 },
        )
        .toBeGreaterThan(500);
      c.proc.kill('SIGKILL');
      await c.exited;
      const left = (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'login_success'`)).rows[0].n;
      expect(left, 'the kill must land mid-run for this test to mean anything').toBeGreaterThan(0);
      const runs = (await db.query<any>(`SELECT details FROM audit_log WHERE action = 'audit_retention'`)).rows;
      expect(runs).toHaveLength(1);
      expect(runs[0].details.status).toBe('running');
      expect(runs[0].details.logs_deleted).toBe(OLD - left);
    } finally {
      await cleanup();
    }
  });

  it('during an export: a file that reached Slack always has its audit_export row', { timeout: 120_000 }, async () => {
    const { db, url, cleanup } = await createTestDb();
    try {
      await db.query(
        `INSERT INTO audit_log ("timestamp", action, details)
         SELECT now() - g * interval '1 second', 'login_success', '{}'::jsonb FROM generate_series(1, 3000) g`,
      );
      // The file's bytes reach Slack; Slack hangs on completing the upload; the process dies.
      fake.holdNext('files.completeUploadExternal', {});
      const since = fake.calls.length;
      const admin = await createUser(db, { username: 'kill.admin', role: 'admin', twoFa: true, area: null });
      const c = child(['export', url!, fake.apiUrl, String(admin.id)]);
      await fake.waitFor((call) => call.method === 'files.completeUploadExternal!hung', 60_000, since).catch((e) => {
        throw new Error(`${(e as Error).message}\nchild: ${c.output()}`);
      });
      const uploaded = fake.calls.slice(since).filter((call) => call.method === 'upload');
      expect(uploaded.length).toBe(1);
      c.proc.kill('SIGKILL');
      await c.exited;
      const rows = (await db.query<any>(`SELECT details FROM audit_log WHERE action = 'audit_export'`)).rows;
      expect(rows).toHaveLength(1);
      expect(rows[0].details).toMatchObject({ rows: 3000, masked: true, delivered_to: 'channel' });
    } finally {
      await cleanup();
    }
  });
});
