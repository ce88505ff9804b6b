import crypto from 'node:crypto';
import net from 'node:net';
import readline from 'node:readline/promises';
import { generate } from 'otplib';
import { startWarden, type Warden } from '../bootstrap.js';
import { ConfigError, loadConfig, loadDotEnv, normaliseEnv } from '../config.js';
import { openDb } from '../db/index.js';
import { migrate } from '../db/migrate.js';
import { createLogger } from '../logger.js';
import { SlackDriver, type Interaction } from '../slack/sim/driver.js';
import { FakeSlack, type CapturedCall } from '../slack/sim/fake-slack.js';
import { DEMO_SLACK_USERS, isEmpty, seedDemoData } from './demo-data.js';
import { ConsoleRenderer } from './render.js';

/**
 * `npm run console`: the same Warden app and handlers, driven from a terminal. It runs
 * the real HTTP app on loopback with a fake Slack Web API beside it, sends signed
 * requests to itself, and renders what Warden sends back as text.
 *
 *   npm run console                                   interactive
 *   npm run console -- --as U_ADMIN "/users show alice"   one command, print, exit
 */

const HELP = `Type a slash command (e.g. /users list role:admin), or:
  click N          press button N
  as USER          act as another Slack user (see \`people\`)
  people           the Slack users of this console and whom they are linked to
  whoami           who you are acting as
  totp             the current 2FA code of your account (for step-up prompts)
  help             this help
  quit             leave`;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function parseArgv(argv: string[]) {
  let as = 'U_ADMIN';
  const lines: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--as') as = argv[++i];
    else if (argv[i] === '--help' || argv[i] === '-h') lines.push('help');
    else lines.push(argv[i]);
  }
  return { as, lines };
}

async function main() {
  const { as, lines } = parseArgv(process.argv.slice(2));
  const scripted = lines.length > 0;
  const fake = await new FakeSlack().start();
  for (const u of DEMO_SLACK_USERS) fake.addUser(u);
  const signingSecret = crypto.randomBytes(16).toString('hex');
  const port = await freePort();

  let config;
  loadDotEnv();
  try {
    config = loadConfig({
      ALERTS_CHANNEL: 'C_ALERTS',
      SECURITY_CHANNEL: 'C_SECURITY',
      APPROVALS_CHANNEL: 'C_APPROVALS',
      // Empty values (a copied .env.example) mean unset here too, so the demo channels stay.
      ...normaliseEnv(process.env),
      // The console always talks to its own fake Slack, never to a real workspace.
      SLACK_BOT_TOKEN: 'xoxb-console',
      SLACK_SIGNING_SECRET: signingSecret,
      SLACK_APP_TOKEN: '',
      SLACK_API_URL: fake.apiUrl,
      PORT: String(port),
      LOG_LEVEL: process.env.LOG_LEVEL || 'warn',
    });
  } catch (e) {
    console.error(e instanceof ConfigError ? e.message : e);
    process.exit(2);
  }
  const logger = createLogger({ level: config.LOG_LEVEL, format: 'pretty' });

  const db = await openDb({ url: config.DATABASE_URL, dataDir: config.WARDEN_DATA_DIR });
  await migrate(db);
  if (await isEmpty(db)) {
    if (!scripted) console.log('First run: creating demo data (a few hundred users, audit history)…');
    await seedDemoData(db);
  }

  const warden: Warden = await startWarden({ config, logger, db, jobs: !scripted });
  const driver = new SlackDriver({ appUrl: `http://127.0.0.1:${warden.port}`, signingSecret, fake });
  const names = new Map(DEMO_SLACK_USERS.map((u) => [u.id, u.name]));
  const renderer = new ConsoleRenderer(names);
  let actingAs = as;
  let printedUpTo = 0;

  const shutdown = async (code = 0) => {
    await warden.stop();
    await db.close();
    await fake.stop();
    process.exit(code);
  };

  /** Prints every Web API call made since the last print. */
  const flush = () => {
    for (const c of fake.calls.slice(printedUpTo)) {
      const text = renderer.call(c, actingAs);
      if (text) console.log(`\n${text}`);
    }
    printedUpTo = fake.calls.length;
  };

  /** Waits for the reply of an interaction, then for the app to go quiet. */
  const settle = async (i?: Interaction): Promise<CapturedCall | undefined> => {
    let reply: CapturedCall | undefined;
    if (i) {
      if (i.answer.status !== 200) {
        console.log(`Warden answered HTTP ${i.answer.status}: ${i.answer.body}`);
        return undefined;
      }
      reply = await driver.reply(i, 15_000).catch(() => undefined);
    }
    let seen = fake.calls.length;
    for (;;) {
      await new Promise((r) => setTimeout(r, 250));
      if (fake.calls.length === seen) break;
      seen = fake.calls.length;
    }
    return reply;
  };

  // One line iterator serves the prompt and the modal questions, so piped input works too.
  const rl = scripted ? undefined : readline.createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
  const lineIterator = rl?.[Symbol.asyncIterator]();
  const ask = async (question: string): Promise<string> => {
    process.stdout.write(question);
    const next = await lineIterator!.next();
    if (next.done) throw new EndOfInput();
    if (!process.stdin.isTTY) process.stdout.write(`${next.value}\n`);
    return next.value;
  };

  /** Shows a modal Warden opened and asks its fields at prompts, until it is accepted or cancelled. */
  const fillModal = async (view: any): Promise<void> => {
    printedUpTo = fake.calls.length;
    console.log(`\n┌─ ${view.title?.text ?? 'Form'} ─`);
    for (const b of view.blocks ?? []) if (b.type === 'section' && b.text) console.log(`│ ${renderer.mrkdwn(b.text.text).replace(/\n/g, '\n│ ')}`);
    if (!rl) {
      console.log('└─ (this step opens a form: run `npm run console` interactively to fill it in)');
      return;
    }
    const inputs = (view.blocks ?? []).filter((b: any) => b.type === 'input');
    const values: Record<string, string | string[] | undefined> = {};
    let pending = inputs;
    for (;;) {
      for (const b of pending) {
        const el = b.element;
        const labelText = b.label?.text ?? b.block_id;
        const label = `${labelText}${b.optional && !/optional/i.test(labelText) ? ' (optional)' : ''}`;
        if (b.hint?.text) console.log(`│ ${renderer.mrkdwn(b.hint.text)}`);
        if (el.type === 'plain_text_input') {
          const initial = el.initial_value ? ` [${el.initial_value}]` : '';
          const answer = (await ask(`│ ${label}${initial}: `)).trim();
          if (answer === 'cancel') return void console.log('└─ cancelled');
          values[b.block_id] = answer || el.initial_value || undefined;
        } else {
          const opts = el.options ?? [];
          opts.forEach((o: any, idx: number) => console.log(`│   ${idx + 1}. ${o.text.text}`));
          const multi = el.type === 'checkboxes';
          const answer = (await ask(`│ ${label}${multi ? ' (numbers, comma-separated)' : ' (number)'}: `)).trim();
          if (answer === 'cancel') return void console.log('└─ cancelled');
          const picked = answer
            .split(/[,\s]+/)
            .filter(Boolean)
            .map((x: string) => opts[Number(x) - 1]?.value)
            .filter(Boolean);
          values[b.block_id] = multi ? picked : picked[0] ?? el.initial_option?.value;
        }
      }
      const { answer, ack } = await driver.submit(actingAs, view, values);
      if (answer.status !== 200) return void console.log(`└─ Warden answered HTTP ${answer.status}`);
      if (ack?.response_action === 'errors') {
        for (const [field, msg] of Object.entries(ack.errors as Record<string, string>)) console.log(`│ ✗ ${field}: ${renderer.mrkdwn(msg)}`);
        pending = inputs.filter((b: any) => b.block_id in ack.errors);
        continue;
      }
      if (ack?.response_action === 'update' || ack?.response_action === 'push') {
        console.log('└─');
        return fillModal(ack.view);
      }
      console.log('└─ submitted');
      await settle();
      return;
    }
  };

  const handleReply = async (reply: CapturedCall | undefined) => {
    if (reply?.method === 'views.open') {
      await fillModal(reply.args.view);
    }
    flush();
  };

  const run = async (line: string): Promise<boolean> => {
    const [word, ...rest] = line.trim().split(/\s+/);
    if (!word) return true;
    if (word.startsWith('/')) {
      if (scripted) console.log(`\n${actingAs}> ${line.trim()}`);
      await handleReply(await settle(await driver.command(actingAs, line)));
      return true;
    }
    switch (word) {
      case 'quit':
      case 'exit':
        return false;
      case 'help':
        console.log(HELP);
        return true;
      case 'as': {
        const target = rest[0] ?? '';
        const found = DEMO_SLACK_USERS.find((u) => u.id === target || u.name === target.replace(/^@/, ''));
        actingAs = found?.id ?? target;
        console.log(`Now acting as ${actingAs}${found ? ` (@${found.name}: ${found.note})` : ''}.`);
        return true;
      }
      case 'whoami':
      case 'people':
        for (const u of DEMO_SLACK_USERS) console.log(`${u.id === actingAs ? '→' : ' '} ${u.id.padEnd(11)} @${u.name.padEnd(8)} ${u.note}`);
        return true;
      case 'totp': {
        const who = DEMO_SLACK_USERS.find((u) => u.id === actingAs);
        const { rows } = await db.query<{ totp_secret: string | null; username: string }>(
          `SELECT u.totp_secret, u.username FROM "user" u
             LEFT JOIN warden_slack_link l ON l.user_id = u.id AND l.slack_user_id = $1
            WHERE l.slack_user_id IS NOT NULL OR lower(u.email) = lower($2) LIMIT 1`,
          [actingAs, who?.email ?? ''],
        );
        if (!rows[0]?.totp_secret) console.log('Your account has no 2FA enrolled.');
        else console.log(`Current 2FA code of ${rows[0].username}: ${await generate({ secret: rows[0].totp_secret })}`);
        return true;
      }
      case 'click': {
        const b = renderer.buttons[Number(rest[0]) - 1];
        if (!b) {
          console.log(`No button ${rest[0] ?? ''}. Buttons are numbered in [brackets] above.`);
          return true;
        }
        if (b.url) {
          console.log(`(link button: ${b.url})`);
          return true;
        }
        console.log(`\n${actingAs} clicked [${b.n}] ${b.text}`);
        await handleReply(await settle(await driver.click(actingAs, { actionId: b.actionId, value: b.value, message: b.message, channel: b.channel })));
        return true;
      }
      default:
        console.log(`Unknown console command "${word}". Type help.`);
        return true;
    }
  };

  if (scripted) {
    for (const line of lines) await run(line);
    await shutdown(0);
    return;
  }

  console.log(`Warden console — acting as ${actingAs}. Type help for commands, /users list role:admin to start.`);
  await settle();
  flush();
  // What jobs post while you sit at the prompt (lockouts, promotion cards, incidents) is
  // shown as it arrives, a moment after the last call, followed by the prompt again.
  let busy = false;
  let idleTimer: NodeJS.Timeout | undefined;
  fake.onCall(() => {
    if (busy) return;
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      if (busy || printedUpTo >= fake.calls.length) return;
      flush();
      process.stdout.write(`\n${actingAs}> `);
    }, 300);
  });
  for (;;) {
    try {
      const line = await ask(`\n${actingAs}> `);
      busy = true;
      clearTimeout(idleTimer);
      if (!(await run(line))) break;
    } catch (e) {
      if (e instanceof EndOfInput) break;
      console.log(`Console error: ${(e as Error).message}`);
    } finally {
      busy = false;
    }
  }
  rl!.close();
  await shutdown(0);
}

class EndOfInput extends Error {}

main().catch((e) => {
  console.error(`Console failed: ${(e as Error).message}`);
  process.exit(1);
});
