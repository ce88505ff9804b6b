import { ConfigError, loadConfig, loadDotEnv } from '../config.js';
import { acquireDataDirLock, describeHolder, socketPathFor } from '../db/data-dir-lock.js';
import { sendToConsole } from './attach.js';

/**
 * `npm run console`: the same Warden app and handlers, driven from a terminal. It runs
 * the real HTTP app on loopback with a fake Slack Web API beside it, sends signed
 * requests to itself, and renders what Warden sends back as text.
 *
 * This entry point stays light: when another console already holds the demo database,
 * scripted commands are handed to it without loading the app (see attach.ts).
 */

export const USAGE = `Usage:
  npm run console                                   interactive console on the demo database (./.warden)
  npm run console -- [--as USER] "COMMAND" …        run commands, print what Warden answers, exit
  npm run console -- --reset-demo                   delete the demo database and create it again
  npm run console -- --database-url postgres://…    break-glass: the same commands against a real database

Options:
  --as USER           act as this console user (default U_ADMIN = @alice; \`people\` lists them).
                      Break-glass: your application username (you are asked for it otherwise).
  --reset-demo        restore the demo data (refused while another process holds the database)
  --database-url URL  break-glass mode (DATABASE_URL does the same): no demo data; you sign in as an
                      application admin with your 2FA code; every action is audited as source
                      "console" with your OS user; what Warden would post to Slack is printed here
  -h, --help          this help

Scripted use: each argument is one line, as typed at the prompt (slash commands and console
commands like \`click 1\`, \`totp\`, \`mail\`). While an interactive console is open on the same
database, scripted commands are sent to it and run there (one writer, and fast).
Forms (step-up codes, confirmations) need the interactive prompt.
Exit status: 0 when every line succeeded; 1 when Warden refused or failed one (a user error,
a missing permission, a form that cannot be filled); 2 for a usage error or a database held by
a process that cannot take commands.`;

export interface ConsoleArgs {
  as?: string;
  lines: string[];
  help: boolean;
  resetDemo: boolean;
  databaseUrl?: string;
}

export function parseArgv(argv: string[]): ConsoleArgs | { error: string } {
  const out: ConsoleArgs = { lines: [], help: false, resetDemo: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new Error(`${a} needs a value.`);
      return v;
    };
    try {
      if (a === '--as') out.as = value();
      else if (a.startsWith('--as=')) out.as = a.slice(5);
      else if (a === '--database-url') out.databaseUrl = value();
      else if (a.startsWith('--database-url=')) out.databaseUrl = a.slice(15);
      else if (a === '--reset-demo') out.resetDemo = true;
      else if (a === '--help' || a === '-h') out.help = true;
      else if (a.startsWith('-') && !a.startsWith('/')) return { error: `Unknown option ${a}.` };
      else out.lines.push(a);
    } catch (e) {
      return { error: (e as Error).message };
    }
  }
  return out;
}

async function main(): Promise<number> {
  const args = parseArgv(process.argv.slice(2));
  if ('error' in args) {
    console.error(`${args.error}\n\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  // .env in the working directory, when present; real environment variables win.
  loadDotEnv();
  let config;
  try {
    config = loadConfig({ ...process.env, ...(args.databaseUrl ? { DATABASE_URL: args.databaseUrl } : {}) });
  } catch (e) {
    console.error(e instanceof ConfigError ? e.message : e);
    return 2;
  }
  const scripted = args.lines.length > 0;
  if (config.DATABASE_URL) {
    const { runBreakGlass } = await import('./break-glass.js');
    return runBreakGlass({ config, args });
  }

  // One writer per embedded database (PGlite has no lock of its own).
  const socket = socketPathFor(config.WARDEN_DATA_DIR);
  const taken = acquireDataDirLock(config.WARDEN_DATA_DIR, 'npm run console', socket);
  if (!taken.ok) {
    const h = taken.holder;
    if (h.socket && scripted && !args.resetDemo) {
      return sendToConsole(h.socket, { as: args.as ?? 'U_ADMIN', lines: args.lines }, (t) => console.log(t)).catch((e) => {
        console.error(`The console holding ${config.WARDEN_DATA_DIR} (${describeHolder(h)}) did not take the command: ${(e as Error).message}`);
        return 2;
      });
    }
    console.error(
      `The demo database ${config.WARDEN_DATA_DIR} is in use by ${describeHolder(h)}.\n` +
        'Only one process may open it at a time (a second one would lose its changes).\n' +
        (h.socket
          ? `Use that console, or send it commands from here: npm run console -- --as U_ADMIN "/users list"${args.resetDemo ? '\nTo reset the demo, quit it first.' : ''}`
          : 'Stop it first, or give this process another directory: WARDEN_DATA_DIR=./.warden-2 npm run console') +
        `\n(If no such process is running, delete ${taken.file}.)`,
    );
    return 2;
  }
  const { runDemoConsole } = await import('./demo-console.js');
  try {
    return await runDemoConsole({ config, args, socket, lock: taken.lock });
  } finally {
    taken.lock.release();
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`Console failed: ${(e as Error).message}`);
    process.exit(1);
  },
);
