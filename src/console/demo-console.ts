import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.js';
import type { DataDirLock } from '../db/data-dir-lock.js';
import { openDb } from '../db/index.js';
import { migrate } from '../db/migrate.js';
import { serveAttach } from './attach.js';
import { DEMO_SLACK_USERS, isEmpty, seedDemoData } from './demo-data.js';
import { MailCatcher } from './mail-catcher.js';
import type { ConsoleArgs } from './main.js';
import { interactive, runLines, startConsoleApp } from './runtime.js';
import { Session } from './session.js';

/**
 * The demo console: the embedded database with demo data, a local mail catcher standing in
 * for the mail service (`mail` prints what was sent), the scheduled jobs, and a socket that
 * takes scripted commands from other shells while it holds the database.
 */
export async function runDemoConsole(opts: { config: Config; args: ConsoleArgs; socket: string; lock: DataDirLock }): Promise<number> {
  const { config, args } = opts;
  const scripted = args.lines.length > 0;
  const dataDir = path.resolve(config.WARDEN_DATA_DIR);
  if (args.resetDemo) {
    // Everything but our own lock: the next open creates a fresh database and new demo data.
    for (const f of fs.readdirSync(dataDir)) {
      if (path.join(dataDir, f) !== opts.lock.file) fs.rmSync(path.join(dataDir, f), { recursive: true, force: true });
    }
    console.log(`Demo database in ${config.WARDEN_DATA_DIR} deleted; creating it again.`);
  }
  const db = await openDb({ dataDir });
  let mail: MailCatcher | undefined;
  let app: Awaited<ReturnType<typeof startConsoleApp>> | undefined;
  let attach: Awaited<ReturnType<typeof serveAttach>> | undefined;
  try {
    await migrate(db);
    const fresh = await isEmpty(db);
    if (fresh) {
      console.error('First run: creating demo data (a few hundred users, audit history)…');
      await seedDemoData(db);
    }
    // A local mail catcher unless a real mail service is configured.
    if (!config.EMAIL_API_URL) mail = await new MailCatcher().start();
    app = await startConsoleApp({
      env: { ...process.env, PASSWORD_RESET_URL: process.env.PASSWORD_RESET_URL || 'https://traitortrack.example/reset' },
      db,
      people: DEMO_SLACK_USERS,
      jobs: !scripted,
      mail,
    });
    const hub = app.hub;
    let notifyInteractive: ((text: string) => void) | undefined;
    attach = await serveAttach(opts.socket, async (req, out) => {
      const s = new Session(hub, { as: req.as, out });
      const ok = await runLines(s, req.lines);
      const cmds = req.lines.filter((l) => l.trim()).join(' ; ');
      notifyInteractive?.(`↪ another shell, as ${req.as}: ${cmds} (${ok ? 'done' : 'failed'})`);
      return { failed: !ok };
    });

    if (scripted) {
      const s = new Session(hub, { as: args.as ?? 'U_ADMIN', out: (t) => console.log(t) });
      return (await runLines(s, args.lines)) ? 0 : 1;
    }
    const since = fresh ? '' : await demoAge(db);
    await interactive(hub, {
      as: args.as ?? 'U_ADMIN',
      banner:
        `Warden console — acting as ${args.as ?? 'U_ADMIN'} (@alice). Type help for the console's commands, /users list role:admin to start.` +
        (since ? `\nDemo data created ${since}; what you changed is still there. \`npm run console -- --reset-demo\` restores the demo.` : ''),
      onSession: (_s, notify) => {
        notifyInteractive = notify;
      },
    });
    return 0;
  } finally {
    await attach?.close();
    await app?.stop();
    await mail?.stop();
    await db.close();
  }
}

async function demoAge(db: Awaited<ReturnType<typeof openDb>>): Promise<string> {
  const { rows } = await db.query<{ at: Date }>(`SELECT min(created_at) AS at FROM warden_slack_link`);
  const at = rows[0]?.at;
  if (!at) return 'earlier';
  // Links are seeded 30 days back: the demo was created 30 days after the oldest one.
  const created = new Date(at.getTime() + 30 * 86400_000);
  const mins = Math.round((Date.now() - created.getTime()) / 60_000);
  return mins < 90 ? `${mins} minute${mins === 1 ? '' : 's'} ago` : mins < 48 * 60 ? `${Math.round(mins / 60)} hours ago` : `${Math.round(mins / 1440)} days ago`;
}
