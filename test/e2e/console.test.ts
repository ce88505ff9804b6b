import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsoleProcess, runConsole } from '../helpers/console-process.js';

/**
 * The console as a person uses it: real processes on one demo database. Seeding the demo
 * takes a while, so the tests share one directory and run in order (each leaves the demo
 * as it found it, or says what it changed).
 */
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-console-'));
const env = { WARDEN_DATA_DIR: dataDir };
const open: ConsoleProcess[] = [];
const PROMPT = /\n[A-Z_0-9]+> $/;
const CODE_PROMPT = /Your 2FA code( \(optional\))?: $/;

function start(args: string[] = []): ConsoleProcess {
  const c = new ConsoleProcess(args, env);
  open.push(c);
  return c;
}

/** Opens a step-up form and keeps the defaults of the fields before the code. */
async function toCodePrompt(c: ConsoleProcess, command: string): Promise<string> {
  let out = await c.line(command, /(: |\] ?: )$/);
  while (!CODE_PROMPT.test(out)) out += await c.line('', /(: |\] ?: )$/);
  return out;
}

/** Runs a test body with an open console; a failing test does not leave the database held. */
async function withConsole(body: (c: ConsoleProcess) => Promise<void>): Promise<void> {
  const c = start();
  try {
    await c.waitFor(PROMPT, 120_000);
    await body(c);
  } finally {
    c.kill();
    await c.exited;
    await released();
  }
}

/** A killed console's node process may outlive its tsx wrapper for a moment: wait until its lock is free. */
async function released(): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      const { pid } = JSON.parse(fs.readFileSync(path.join(dataDir, 'warden.lock'), 'utf8')) as { pid: number };
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  // First run: creates the demo data.
  const r = await runConsole(['whoami'], env);
  expect(r.code).toBe(0);
}, 180_000);

afterAll(() => {
  for (const c of open) c.kill();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('one writer per demo database', () => {
  it('sends a scripted command to the open console: the console sees it, and it outlives both processes', async () => {
    const live = start();
    try {
      await oneWriter(live);
    } finally {
      // A failure must not leave the database held for the next tests.
      live.kill();
      await live.exited;
      await released();
    }
  }, 240_000);

  async function oneWriter(live: ConsoleProcess) {
    await live.waitFor(PROMPT, 120_000);
    expect(fs.existsSync(path.join(dataDir, 'warden.lock'))).toBe(true);

    const scripted = await runConsole(['--as', 'U_ADMIN', '/users role amit.gupta biller'], env);
    expect(scripted.out).toContain('Updated amit.gupta: role dispatcher → biller');
    expect(scripted.code).toBe(0);
    // The open console was told, and reads the new role from the one database.
    await live.waitFor('another shell, as U_ADMIN: /users role amit.gupta biller (done)', 10_000);
    // The card's own header, not a promotion card the jobs post meanwhile (those have a Role too).
    expect(await live.line('/users show amit.gupta', /== amit\.gupta ==[\s\S]*?Role: \w+/)).toMatch(/== amit\.gupta ==[\s\S]*?Role: biller/);

    // A second interactive console is refused, naming the holder.
    const second = await runConsole([], env, 'quit\n');
    expect(second.code).toBe(2);
    expect(second.out).toMatch(/in use by npm run console \(pid \d+, user .+, since/);

    expect(await live.quit()).toBe(0);
    expect(fs.existsSync(path.join(dataDir, 'warden.lock'))).toBe(false);
    // After both are gone the change and its audit row are still there.
    const after = await runConsole(['/users show amit.gupta', '/audit history amit.gupta'], env);
    expect(after.code).toBe(0);
    expect(after.out).toMatch(/Role: biller/);
    expect(after.out).toMatch(/role_change[\s\S]*dispatcher[\s\S]*biller/);
    await runConsole(['/users role amit.gupta dispatcher area:lucknow'], env);
  }

  it('npm start refuses a directory a console holds, naming it', async () => withConsole(async () => {
    const { spawn } = await import('node:child_process');
    const child = spawn(path.resolve('node_modules/.bin/tsx'), ['src/main.ts'], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, WARDEN_DATA_DIR: dataDir, SLACK_BOT_TOKEN: 'xoxb-x', SLACK_SIGNING_SECRET: 's', PORT: '0' },
    });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise((r) => child.on('exit', r));
    expect(code).toBe(2);
    expect(err).toMatch(/in use by npm run console \(pid \d+/);
  }), 180_000);
});

describe('scripted use', () => {
  it('exits 0 on success, 1 on a refused or failed command, 2 on a usage error (sent to an open console)', async () => withConsole(async () => {
    const ok = await runConsole(['--as', 'U_ADMIN', '/users show ravi.k'], env);
    expect(ok.code).toBe(0);

    const userError = await runConsole(['/users show no.such.person'], env);
    expect(userError.code).toBe(1);

    const forbidden = await runConsole(['--as', 'U_BILLER', '/users role dave admin'], env);
    expect(forbidden.code).toBe(1);
    expect(forbidden.out).toContain('Only admins');

    const typo = await runConsole(['/user list'], env);
    expect(typo.code).toBe(1);
    expect(typo.out).toContain('There is no /user command. Did you mean /users list?');
    expect(typo.out).not.toMatch(/HTTP 404|Bolt|unhandled/i);

    const slash = await runConsole(['/'], env);
    expect(slash.code).toBe(1);
    expect(slash.out).toContain('Type a command after the slash: /users, /promotions');

    const nobody = await runConsole(['as U_NOBODY'], env);
    expect(nobody.code).toBe(1);
    expect(nobody.out).toContain('There is no console user "U_NOBODY". Choose one of: U_ADMIN (@alice)');

    const usage = await runConsole(['--bogus'], env);
    expect(usage.code).toBe(2);
    expect(usage.out).toContain('Unknown option --bogus');

    const help = await runConsole(['--help'], env);
    expect(help.code).toBe(0);
    expect(help.out).toContain('--as USER');
    expect(help.out).toContain('Exit status');
    expect(help.out).toContain('--database-url');
  }), 240_000);

  it('whoami prints only you; a run on its own exits 1 when a command fails', async () => {
    const r = await runConsole(['--as', 'U_ADMIN2', 'whoami'], env);
    expect(r.out.split('\n').filter((l) => /^\s*U_[A-Z0-9]+ @/.test(l))).toEqual(['U_ADMIN2 @carol: second admin with 2FA (four eyes)']);
    expect(r.code).toBe(0);
    const failed = await runConsole(['/users show no.such.person'], env);
    expect(failed.code).toBe(1);
  }, 120_000);
});

describe('step-up at a console prompt', () => {
  it('takes totp, help and non-codes at the code prompt without counting a wrong code', async () => withConsole(async (c) => {
    await toCodePrompt(c, '/users role amit.gupta admin');
    // Seven non-codes in a row: more than the five wrong codes that block step-up for 15 minutes.
    for (const word of ['abc', '12345', 'help', 'TOTP?', 'x1', '1234567', 'code']) await c.line(word, CODE_PROMPT);
    // A blank optional code field is sent (not every change needs step-up); Warden answers that this
    // change needs it, which is no wrong code. From then on the field is asked as needed, and a blank
    // is answered by the console itself.
    const blank = await c.line('', CODE_PROMPT);
    expect(blank).toContain('✗ Your 2FA code: ⚠️ Enter the 6-digit code from your authenticator app.');
    expect(blank).toMatch(/Your 2FA code: $/);
    expect(await c.line('', CODE_PROMPT)).toContain('✗ Enter the 6-digit code of your authenticator app: this change needs it');
    // (Many blanks sent to Warden never block step-up: test/security/stepup.test.ts › "typing mistakes…".)
    const shown = await c.line('totp', CODE_PROMPT);
    const code = /2FA code of alice: (\d{6})/.exec(shown)![1];
    const done = await c.line(code);
    expect(done).toContain('Updated amit.gupta: role dispatcher → admin');
    expect(done).not.toContain('Too many wrong 2FA codes');
    // The code is spent: `totp` now shows the next one, and says so.
    const again = await c.line('totp');
    expect(again).toMatch(/2FA code of alice: \d{6} \(the current one was already used; this is the next, accepted now\)/);
    expect(again).not.toContain(`alice: ${code}`);
    // That next code is accepted at once: the change is undone with it.
    await toCodePrompt(c, '/users role amit.gupta dispatcher area:lucknow');
    const next = /alice: (\d{6})/.exec(again)![1];
    expect(await c.line(next)).toContain('Updated amit.gupta: role admin → dispatcher');
    // @name is a mention of a console person, as Slack would send it.
    expect(await toCodePrompt(c, '/users link erin @erin')).toContain('Link @erin to');
    await c.line('cancel');
    expect(c.out).toContain('└─ cancelled');
  }), 240_000);
});

describe('2FA recovery in the demo', () => {
  it('runs end to end: codes by e-mail (mail catcher) and Slack DM, a second admin approves with their 2FA code', async () => withConsole(async (c) => {
    const ANY = /(: |\] ?: )$/;
    await c.line('/2fa recover dave', /comma-separated\): $/);
    await c.line('1', ANY);
    await c.line('Called him back on the number on file; he confirmed his date of birth', ANY);
    // Opening a recovery is itself step-up protected (the initiator vouches for the user).
    await c.line('1,2', CODE_PROMPT);
    const own = /2FA code of alice: (\d{6})/.exec(await c.line('totp', CODE_PROMPT))![1];
    const opened = await c.line(own, /e-mail \(optional\): $/);
    // The Slack DM went to dave's linked account (linked a month ago in the demo, so it is allowed).
    const dm = /DM to @dave[\s\S]*?verification code: (\d{4} \d{4})/.exec(opened);
    expect(dm).not.toBeNull();
    // The e-mail went to the console's mail catcher; `mail` at the prompt shows it without leaving the form.
    const mail = await c.line('mail', /e-mail \(optional\): $/);
    const emailed = /to dave@demo\.traitortrack\.example — [^\n]*\n[\s\S]*?verification code: (\d{4} \d{4})/.exec(mail);
    expect(emailed).not.toBeNull();
    await c.line(emailed![1], ANY);
    c.send(dm![1]);
    // The card reaches #C_APPROVALS a moment after the form closes.
    const card = await c.waitFor(/posted to #C_APPROVALS\n[^\n]*2FA recovery #\d+: dave[\s\S]*?\[(\d+)\] Approve/);
    const approve = /\[(\d+)\] Approve/.exec(card);
    await c.waitFor(PROMPT);

    // Four eyes: alice opened it, so carol approves.
    expect(await c.line('click ' + approve![1])).toMatch(/cannot approve|opened it|second admin/i);
    await c.line('as carol');
    await c.line('click ' + approve![1], CODE_PROMPT);
    const code = /2FA code of carol: (\d{6})/.exec(await c.line('totp', CODE_PROMPT))![1];
    const approved = await c.line(code, PROMPT);
    expect(approved).toMatch(/approved/i);
    expect(await c.line('/2fa status dave', /2FA[^\n]*\n/)).toMatch(/not enabled/i);
  }), 300_000);
});
