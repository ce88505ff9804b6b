import readline from 'node:readline/promises';
import type { Config } from '../config.js';
import { osUser } from '../db/data-dir-lock.js';
import { openDb } from '../db/index.js';
import { migrate } from '../db/migrate.js';
import { USER_COLUMNS, userRowSchema } from '../domain/user.js';
import { StepUpError } from '../errors.js';
import type { ConsoleArgs } from './main.js';
import { QueuedAlerts } from './queued-alerts.js';
import { interactive, OPERATOR_SLACK_ID, startConsoleApp } from './runtime.js';
import { Session } from './session.js';

/**
 * Break-glass: the console against the application's real database, for when Slack is
 * down. No demo data and no scheduled jobs (the running Warden keeps doing those); the
 * operator signs in as an application admin and proves it with the current 2FA code of
 * that account; every change is audited with `source: console` and the OS user; what
 * Warden would post to Slack is printed instead.
 */
export async function runBreakGlass(opts: { config: Config; args: ConsoleArgs }): Promise<number> {
  const { config, args } = opts;
  if (args.resetDemo) {
    console.error('--reset-demo only applies to the demo database; it is refused with --database-url / DATABASE_URL.');
    return 2;
  }
  // Questions are read from stdin, also when piped (`printf 'alice\n123456\n' | npm run console -- --database-url …`).
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  const input = rl[Symbol.asyncIterator]();
  const ask = async (q: string): Promise<string> => {
    process.stderr.write(q);
    const next = await input.next();
    if (next.done) throw new Error('no answer on standard input');
    return next.value.trim();
  };
  const db = await openDb({ url: config.DATABASE_URL, poolMax: 3 });
  let app: Awaited<ReturnType<typeof startConsoleApp>> | undefined;
  let queued: QueuedAlerts | undefined;
  try {
    await db.query('SELECT 1').catch((e) => {
      throw new Error(`cannot reach the database: ${(e as Error).message}`);
    });
    if (config.MIGRATE === 'on') await migrate(db);
    console.error(`Break-glass console on ${redactUrl(config.DATABASE_URL!)} (OS user ${osUser()}). Sign in as an application admin.`);
    const username = args.as ?? (await ask('Application username: '));
    const { rows } = await db.query(`SELECT ${USER_COLUMNS} FROM "user" WHERE lower(username) = lower($1)`, [username]);
    const user = rows[0] ? userRowSchema.parse(rows[0]) : undefined;
    // One answer for "no such user" and "not an admin": the prompt does not confirm which accounts exist.
    if (!user || user.role !== 'admin') {
      console.error('Refused: break-glass is for application admins with 2FA.');
      return 2;
    }
    const operator = { id: OPERATOR_SLACK_ID, name: user.username, email: undefined, note: `break-glass operator (application admin ${user.username})` };
    app = await startConsoleApp({ env: { ...process.env }, db, people: [operator], jobs: false, breakGlass: { operator: user.username, userId: user.id } });
    const hub = app.hub;
    // Channel alerts wait in the production outbox for the deployed Warden: delivering them here
    // (to the console's stand-in Slack) would mark them sent and Slack would never see them.
    // They are printed instead (read only), as they are queued.
    await hub.services.outbox.close();
    queued = new QueuedAlerts(db, hub.fake);
    const waiting = await queued.start();
    const actor = await hub.services.identity.resolve({ userId: OPERATOR_SLACK_ID, teamId: 'T_WARDEN' });
    try {
      await hub.services.stepUp.verify(actor, await ask(`2FA code of ${user.username}: `), 'console_break_glass');
    } catch (e) {
      if (!(e instanceof StepUpError)) throw e;
      console.error(`Refused: ${e.message}`);
      return 2;
    }
    console.error(
      `Signed in as ${user.username}. Every change is audited as source "console", OS user ${osUser()}. ` +
        'Replies are printed here. What Warden queues for Slack (channel alerts, card updates, DMs) is printed as ' +
        '"queued for Slack, not sent from here" and stays in the outbox for the deployed Warden.',
    );
    if (waiting.waiting) {
      console.error(
        `${waiting.waiting} message${waiting.waiting === 1 ? '' : 's'} already wait${waiting.waiting === 1 ? 's' : ''} in the outbox for Slack ` +
          `(oldest queued ${waiting.oldest?.toISOString().slice(0, 16).replace('T', ' ')} UTC); they are not shown one by one.`,
      );
    }
    const afterLine = () => queued!.check();
    if (args.lines.length) {
      const s = new Session(hub, { as: OPERATOR_SLACK_ID, out: (t) => console.log(t) });
      for (const line of args.lines) {
        const go = await s.run(line);
        await afterLine();
        s.flush();
        if (!go) break;
      }
      return s.failed ? 1 : 0;
    }
    await interactive(hub, { as: OPERATOR_SLACK_ID, banner: 'Break-glass console. Type help for commands.', input, afterLine });
    return 0;
  } finally {
    rl.close();
    await queued?.stop();
    await app?.stop();
    await db.close();
  }
}

/** postgres://user:secret@host/db → postgres://user:***@host/db */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'the configured database';
  }
}
