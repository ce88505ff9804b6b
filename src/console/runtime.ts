import crypto from 'node:crypto';
import net from 'node:net';
import readline from 'node:readline/promises';
import { commands } from '../../commands/index.js';
import { startWarden } from '../bootstrap.js';
import { loadConfig, normaliseEnv, type Config } from '../config.js';
import type { Db } from '../db/index.js';
import { osUser } from '../db/data-dir-lock.js';
import { USER_COLUMNS, userRowSchema } from '../domain/user.js';
import { NotLinkedError } from '../errors.js';
import { createLogger } from '../logger.js';
import type { SlackIdentity } from '../services/identity.js';
import { SlackDriver } from '../slack/sim/driver.js';
import { FakeSlack } from '../slack/sim/fake-slack.js';
import type { ConsolePerson } from './demo-data.js';
import type { MailCatcher } from './mail-catcher.js';
import { EndOfInput, Session, type ConsoleHub } from './session.js';

/** The Slack user id of the operator of a break-glass console. */
export const OPERATOR_SLACK_ID = 'U_OPERATOR';

/** What the demo console and the break-glass console share: the app on loopback, its fake Slack, the prompt. */

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface ConsoleApp {
  hub: ConsoleHub;
  stop(): Promise<void>;
}

export async function startConsoleApp(opts: {
  env: Record<string, string | undefined>;
  db: Db;
  people: ConsolePerson[];
  jobs: boolean;
  mail?: MailCatcher;
  breakGlass?: { operator: string; userId: number };
}): Promise<ConsoleApp> {
  const fake = await new FakeSlack().start();
  for (const u of opts.people) fake.addUser(u);
  const signingSecret = crypto.randomBytes(16).toString('hex');
  const config: Config = loadConfig({
    ALERTS_CHANNEL: 'C_ALERTS',
    SECURITY_CHANNEL: 'C_SECURITY',
    APPROVALS_CHANNEL: 'C_APPROVALS',
    // Empty values (a copied .env.example) mean unset here too, so the demo channels stay.
    ...normaliseEnv(opts.env),
    ...(opts.mail ? opts.mail.env() : {}),
    // The console always talks to its own fake Slack, never to a real workspace.
    SLACK_BOT_TOKEN: 'xoxb-console',
    SLACK_SIGNING_SECRET: signingSecret,
    SLACK_APP_TOKEN: '',
    SLACK_API_URL: fake.apiUrl,
    PORT: String(await freePort()),
    LOG_LEVEL: opts.env.LOG_LEVEL || 'warn',
  });
  const logger = createLogger({ level: config.LOG_LEVEL, format: 'pretty' });
  const errorReplies = new Set<string>();
  const warden = await startWarden({
    config,
    logger,
    db: opts.db,
    jobs: opts.jobs,
    onErrorReply: (e) => {
      if (e.responseUrl) errorReplies.add(e.responseUrl.split('/').pop()!);
    },
  });
  const services = warden.services;
  // Everything done from the console is audited as such, with the OS user at the keyboard
  // (break-glass runs against production: the audit must say who and how).
  const origin = { source: 'console' as const, os_user: osUser() };
  const resolve = services.identity.resolve.bind(services.identity);
  const breakGlass = opts.breakGlass;
  services.identity.resolve = breakGlass
    ? // Break-glass: the operator proved who they are at start; no Slack link is looked up or written.
      async (slack: SlackIdentity) => {
        const { rows } = await opts.db.query(`SELECT ${USER_COLUMNS} FROM "user" WHERE id = $1`, [breakGlass.userId]);
        if (slack.userId !== OPERATOR_SLACK_ID || !rows[0]) throw new NotLinkedError('Only the signed-in operator can act in a break-glass console.');
        return { user: userRowSchema.parse(rows[0]), slack: { ...slack, origin } };
      }
    : (slack: SlackIdentity) => resolve({ ...slack, origin });
  if (breakGlass) {
    // The console's Slack is a stand-in: asking it who has an address would answer "nobody" untruly.
    services.identity.slackUserByEmail = async () => ({
      why: 'a break-glass console cannot ask Slack who has their e-mail address',
    });
  }
  const driver = new SlackDriver({ appUrl: `http://127.0.0.1:${warden.port}`, signingSecret, fake });
  const hub: ConsoleHub = {
    fake,
    driver,
    db: opts.db,
    services,
    people: opts.people,
    commandNames: commands.map((c) => c.command),
    mail: opts.mail,
    breakGlass: opts.breakGlass ? { operator: opts.breakGlass.operator } : undefined,
    errorReplies,
  };
  return {
    hub,
    async stop() {
      await warden.stop();
      await fake.stop();
    },
  };
}

/** Runs lines one after the other; true when all succeeded. */
export async function runLines(session: Session, lines: string[]): Promise<boolean> {
  for (const line of lines) {
    if (!(await session.run(line))) break;
  }
  session.flush();
  return !session.failed;
}

/** The prompt: reads lines until quit or end of input. Jobs' posts are shown as they arrive. */
export async function interactive(
  hub: ConsoleHub,
  opts: {
    as: string;
    banner: string;
    onSession?: (s: Session, notify: (text: string) => void) => void;
    /** Lines already being read from stdin (break-glass asked its questions there first). */
    input?: AsyncIterator<string>;
    /** Runs after each line, before its output is printed (break-glass: the rows it queued for Slack). */
    afterLine?: () => Promise<void>;
  },
): Promise<void> {
  const rl = opts.input ? undefined : readline.createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
  const lines = opts.input ?? rl![Symbol.asyncIterator]();
  const ask = async (question: string): Promise<string> => {
    process.stdout.write(question);
    const next = await lines.next();
    if (next.done) throw new EndOfInput();
    if (!process.stdin.isTTY) process.stdout.write(`${next.value}\n`);
    return next.value;
  };
  const session = new Session(hub, { as: opts.as, out: (t) => console.log(t), ask, color: process.stdout.isTTY });
  console.log(opts.banner);
  await new Promise((r) => setTimeout(r, 500));
  session.flush();
  // What jobs (and scripted commands from other shells) post while you sit at the prompt is
  // shown as it arrives, a moment after the last call, followed by the prompt again.
  let busy = false;
  let idleTimer: NodeJS.Timeout | undefined;
  let done = false;
  const showLater = () => {
    if (busy || done) return;
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      if (busy || done || !session.pending()) return;
      session.flush();
      process.stdout.write(`\n${session.actingAs}> `);
    }, 300);
  };
  hub.fake.onCall(showLater);
  opts.onSession?.(session, (text) => {
    if (busy || done) return;
    console.log(`\n${text}`);
    if (session.pending()) return showLater();
    process.stdout.write(`\n${session.actingAs}> `);
  });
  for (;;) {
    try {
      const line = await ask(`\n${session.actingAs}> `);
      busy = true;
      clearTimeout(idleTimer);
      if (!(await session.run(line))) break;
      await opts.afterLine?.().catch((e) => console.log(`Console error: ${(e as Error).message}`));
      session.flush();
    } catch (e) {
      if (e instanceof EndOfInput) break;
      console.log(`Console error: ${(e as Error).message}`);
    } finally {
      busy = false;
    }
  }
  // Nothing is printed after quit (a job's post would otherwise show a prompt nobody answers).
  done = true;
  clearTimeout(idleTimer);
  rl?.close();
}
