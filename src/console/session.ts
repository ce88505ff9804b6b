import { generate } from 'otplib';
import type { Db } from '../db/index.js';
import type { Services } from '../services/index.js';
import { usedStepKey } from '../services/step-up.js';
import type { SlackDriver, Interaction } from '../slack/sim/driver.js';
import type { CapturedCall, FakeSlack } from '../slack/sim/fake-slack.js';
import type { ConsolePerson } from './demo-data.js';
import type { MailCatcher } from './mail-catcher.js';
import { ConsoleRenderer } from './render.js';
import { PROGRESS_VIEWS } from '../../commands/types.js';

/**
 * One conversation with the console: the interactive prompt, a scripted run, or scripted
 * commands another shell sent to this console (`attach`). Each has its own acting user,
 * its own numbered buttons and sees its own replies; messages posted to channels and DMs
 * are seen by all.
 */

/** What every session of one console process shares. */
export interface ConsoleHub {
  fake: FakeSlack;
  driver: SlackDriver;
  db: Db;
  services: Services;
  people: ConsolePerson[];
  /** Slash commands Warden registers (`/users`, …). */
  commandNames: string[];
  mail?: MailCatcher;
  /** Break-glass: which operator is signed in (the only person; no `as`). */
  breakGlass?: { operator: string };
  /** Response URLs that got an error answer (set by the router's error observer). */
  errorReplies: Set<string>;
}

export const HELP = `Type a slash command (e.g. /users list role:admin), or one of these console commands:
  click N          press button N (numbered in [brackets]); \`click unlock\`: the latest Unlock button;
                   \`click approve recovery\`: the latest Approve on a message mentioning "recovery"
  as USER          act as another Slack user of the console (an id like U_ADMIN2 or a name like carol)
  people           the Slack users of this console and whom they are linked to
  whoami           who you are acting as
  totp             the 2FA code to type at a step-up prompt (the next unused one)
  mail             e-mails Warden sent (the console's local mail catcher)
  home             your App Home tab
  show-file [N]    the content of a file Warden uploaded (e.g. an /audit export); N from \`files\`
  files            the files Warden uploaded
  help             this help
  quit             leave (also Ctrl-D)
In a form: answer each field; \`totp\` shows your code, \`help\` explains the form, \`cancel\` leaves it.
@name works wherever Slack takes a mention, e.g. /users link dave @dave.`;

export class EndOfInput extends Error {}

export interface SessionOptions {
  as: string;
  /** Where this session's output goes (stdout, or a socket of an attached shell). */
  out: (text: string) => void;
  /** Asks the user a question (interactive only); scripted sessions cannot fill forms. */
  ask?: (question: string) => Promise<string>;
  color?: boolean;
}

export class Session {
  actingAs: string;
  /** A command failed or was refused during this session (scripted runs exit non-zero). */
  failed = false;
  readonly renderer: ConsoleRenderer;
  /** Index in fake.calls up to which this session has printed. */
  cursor: number;
  private responseIds = new Set<string>();
  /** response_url id of a click → the message it replaces. */
  private replaces = new Map<string, { channel: string; ts: string }>();
  private mailSeen = 0;

  constructor(
    private readonly hub: ConsoleHub,
    private readonly opts: SessionOptions,
  ) {
    this.actingAs = opts.as;
    this.renderer = new ConsoleRenderer(new Map(hub.people.map((p) => [p.id, p.name])), opts.color ?? false);
    this.cursor = hub.fake.calls.length;
  }

  private out(text: string) {
    this.opts.out(text);
  }

  private fail(text: string) {
    this.failed = true;
    this.out(text);
  }

  /** Prints every Web API call made since the last print that this session should see. */
  flush(): void {
    const calls = this.hub.fake.calls;
    for (const c of calls.slice(this.cursor)) {
      // Another session's replies are its own business.
      if (c.method === 'response_url' && !this.responseIds.has(c.responseId!)) continue;
      const text = this.renderer.call(c, c.responseId ? this.replaces.get(c.responseId) : undefined);
      if (text) this.out(`\n${text}`);
    }
    this.cursor = calls.length;
  }

  /** True when there is something new for this session to print. */
  pending(): boolean {
    return this.hub.fake.calls.slice(this.cursor).some((c) => c.method !== 'response_url' || this.responseIds.has(c.responseId!));
  }

  private own(i: Interaction): Interaction {
    this.responseIds.add(i.responseId);
    return i;
  }

  /** Waits for the reply of an interaction, then for the app to go quiet. */
  private async settle(i?: Interaction): Promise<CapturedCall | undefined> {
    let reply: CapturedCall | undefined;
    if (i) {
      if (i.answer.status !== 200) {
        this.fail(`Warden did not accept the request (HTTP ${i.answer.status}).`);
        return undefined;
      }
      reply = await this.hub.driver.reply(i, 15_000).catch(() => undefined);
    }
    let seen = this.hub.fake.calls.length;
    for (;;) {
      await new Promise((r) => setTimeout(r, 250));
      if (this.hub.fake.calls.length === seen) break;
      seen = this.hub.fake.calls.length;
    }
    if (i && this.hub.errorReplies.has(i.responseId)) this.failed = true;
    return reply;
  }

  private async handleReply(reply: CapturedCall | undefined): Promise<void> {
    if (reply?.method === 'views.open') await this.fillModal(reply.args.view);
    this.flush();
  }

  /** Runs one line; false when the user asked to leave. */
  async run(line: string): Promise<boolean> {
    const trimmed = line.trim();
    const [word, ...rest] = trimmed.split(/\s+/);
    if (!word) return true;
    if (word.startsWith('/')) {
      await this.slash(trimmed);
      return true;
    }
    switch (word.toLowerCase()) {
      case 'quit':
      case 'exit':
        return false;
      case 'help':
      case '?':
        this.out(HELP);
        return true;
      case 'as':
        this.switchUser(rest[0] ?? '');
        return true;
      case 'whoami': {
        const me = this.hub.people.find((p) => p.id === this.actingAs);
        this.out(me ? `${me.id} @${me.name}: ${me.note}` : this.actingAs);
        return true;
      }
      case 'people':
        for (const u of this.hub.people) this.out(`${u.id === this.actingAs ? '→' : ' '} ${u.id.padEnd(11)} @${u.name.padEnd(8)} ${u.note}`);
        return true;
      case 'totp':
        this.out(await this.totp());
        return true;
      case 'mail':
        this.showMail(rest[0] === 'all');
        return true;
      case 'files':
        this.listFiles();
        return true;
      case 'show-file':
        this.showFile(rest[0]);
        return true;
      case 'home':
        await this.home();
        return true;
      case 'click':
        await this.click(rest.join(' ') || undefined);
        return true;
      default: {
        const hint = suggest(word.toLowerCase(), CONSOLE_WORDS);
        this.fail(`Unknown console command "${word}".${hint ? ` Did you mean \`${hint}\`?` : ''} Type help for the list; slash commands start with /.`);
        return true;
      }
    }
  }

  private switchUser(target: string): void {
    if (this.hub.breakGlass) return this.fail(`Break-glass: you act as ${this.hub.breakGlass.operator} only.`);
    const name = target.replace(/^@/, '').toLowerCase();
    const found = this.hub.people.find((u) => u.id.toLowerCase() === name || u.name === name);
    if (!found) {
      return this.fail(
        `There is no console user "${target}". Choose one of: ${this.hub.people.map((p) => `${p.id} (@${p.name})`).join(', ')}.`,
      );
    }
    this.actingAs = found.id;
    this.out(`Now acting as ${found.id} (@${found.name}: ${found.note}).`);
  }

  private async slash(line: string): Promise<void> {
    const command = line.split(/\s+/)[0].toLowerCase();
    if (!this.hub.commandNames.includes(command)) {
      const hint = command.length > 1 ? suggest(command, this.hub.commandNames) : undefined;
      return this.fail(
        command === '/'
          ? `Type a command after the slash: ${this.hub.commandNames.join(', ')} (each answers \`help\`).`
          : `There is no ${command} command.${hint ? ` Did you mean ${hint}${line.slice(command.length)}?` : ''} Commands: ${this.hub.commandNames.join(', ')}.`,
      );
    }
    // At the prompt the line is already on screen; scripted output says who typed what.
    if (!this.opts.ask) this.out(`\n${this.actingAs}> ${line}`);
    const text = this.mentions(line);
    await this.handleReply(await this.settle(this.own(await this.hub.driver.command(this.actingAs, text))));
  }

  /** `@carol` → `<@U_ADMIN2>`, as Slack sends a mention of a workspace member. */
  private mentions(line: string): string {
    return line.replace(/(^|\s)@([a-z][a-z0-9._-]*)/gi, (m, pre, name) => {
      const p = this.hub.people.find((x) => x.name === name.toLowerCase());
      return p ? `${pre}<@${p.id}>` : m;
    });
  }

  /**
   * `click 3`, or `click unlock`: the latest button whose label starts with the words;
   * `click approve recovery`: the latest Approve on a message that mentions "recovery" (jobs
   * may post other cards with the same buttons meanwhile).
   */
  private async click(which: string | undefined): Promise<void> {
    const label = (which ?? '').toLowerCase();
    const latest = (start: string, words: string[]) =>
      [...this.renderer.buttons].reverse().find((x) => {
        if (!x.text.toLowerCase().startsWith(start)) return false;
        const shown = `${x.message.text ?? ''} ${JSON.stringify(x.message.blocks ?? [])}`.toLowerCase();
        return words.every((w) => shown.includes(w));
      });
    const words = label.split(/\s+/).filter(Boolean);
    let b = /^\d+$/.test(label) ? this.renderer.buttons[Number(label) - 1] : undefined;
    for (let k = words.length; !b && k >= 1 && !/^\d+$/.test(label); k--) b = latest(words.slice(0, k).join(' '), words.slice(k));
    if (!b) return this.fail(`No button ${which ?? ''}. Buttons are numbered in [brackets] above (\`click 3\`, or \`click unlock\` for the latest Unlock).`);
    if (b.url) return this.out(`(link button: ${b.url})`);
    this.out(`\n${this.actingAs} clicked [${b.n}] ${b.text}`);
    const i = this.own(await this.hub.driver.click(this.actingAs, { actionId: b.actionId, value: b.value, message: b.message, channel: b.channel }));
    if (b.message.ts) this.replaces.set(i.responseId, { channel: b.channel, ts: b.message.ts });
    await this.handleReply(await this.settle(i));
  }

  /** The account the acting Slack user is linked to (by link, else by e-mail as Warden would). */
  private async account(): Promise<{ id: number; username: string; totp_secret: string | null } | undefined> {
    const who = this.hub.people.find((u) => u.id === this.actingAs);
    const { rows } = await this.hub.db.query<{ id: number; username: string; totp_secret: string | null }>(
      `SELECT u.id, u.username, CASE WHEN u.two_fa_enabled THEN u.totp_secret END AS totp_secret
         FROM "user" u
        WHERE u.id = (SELECT user_id FROM warden_slack_link WHERE slack_user_id = $1 LIMIT 1)
           OR (NOT EXISTS (SELECT 1 FROM warden_slack_link WHERE slack_user_id = $1) AND lower(u.email) = lower($2))
        LIMIT 1`,
      [this.actingAs, who?.email ?? ''],
    );
    return rows[0];
  }

  /**
   * The code to type now. Warden accepts each time step's code once and the next step's
   * code already (±30 s), so when the current one was used, the next one is shown.
   */
  async totp(): Promise<string> {
    const acct = await this.account();
    if (!acct) return 'You are not linked to an application account, so there is no 2FA code to show.';
    if (!acct.totp_secret) return `${acct.username} has no 2FA enrolled: Warden refuses step-up actions for them (try \`as alice\`).`;
    const step = Math.floor(Date.now() / 30_000);
    for (const s of [step, step + 1]) {
      const used = await this.hub.services.store.get(usedStepKey(acct.id, s)).catch(() => null);
      if (used) continue;
      const code = await generate({ secret: acct.totp_secret, epoch: s * 30 });
      return s === step
        ? `2FA code of ${acct.username}: ${code}`
        : `2FA code of ${acct.username}: ${code} (the current one was already used; this is the next, accepted now)`;
    }
    return `Both of ${acct.username}'s current codes were used; the next one is shown in under 30 s.`;
  }

  private showMail(all: boolean): void {
    const mail = this.hub.mail;
    if (!mail) return this.out('E-mail goes to the configured mail service (EMAIL_API_URL), not to the console.');
    const list = mail.received.slice(all ? 0 : this.mailSeen);
    this.mailSeen = mail.received.length;
    if (!list.length) return this.out(all ? 'No e-mail was sent yet.' : 'No new e-mail (`mail all` shows every message).');
    for (const m of list) {
      this.out(`\n✉️  ${m.at.toISOString().slice(11, 19)} to ${m.to.join(', ')} — ${m.subject}\n${m.text.replace(/^/gm, '   ')}`);
    }
  }

  private files(): { id: string; name: string; bytes: number }[] {
    return [...this.hub.fake.uploads.entries()].map(([id, f]) => ({ id, name: f.filename ?? id, bytes: f.content.length }));
  }

  private listFiles(): void {
    const files = this.files();
    if (!files.length) return this.out('No file was uploaded yet (try /audit export since:24h).');
    files.forEach((f, i) => this.out(`${i + 1}. ${f.name} (${f.bytes} bytes)`));
  }

  private showFile(which?: string): void {
    const files = this.files();
    if (!files.length) return this.fail('No file was uploaded yet (try /audit export since:24h).');
    const n = which === undefined ? files.length : Number(which);
    const f = files[n - 1];
    if (!f) return this.fail(`No file ${which}: there ${files.length === 1 ? 'is 1 file' : `are ${files.length} files`} (\`files\` lists them).`);
    const content = this.hub.fake.uploads.get(f.id)!.content.toString('utf8');
    const lines = content.split('\n');
    const shown = lines.slice(0, 40);
    this.out(`── ${f.name} (${lines.filter(Boolean).length} lines) ──\n${shown.join('\n')}${lines.length > 40 ? `\n… ${lines.length - 40} more lines` : ''}`);
  }

  private async home(): Promise<void> {
    const since = this.hub.fake.calls.length;
    const answer = await this.hub.driver.homeOpened(this.actingAs);
    if (answer.status !== 200) return this.fail(`Warden did not accept the request (HTTP ${answer.status}).`);
    const call = await this.hub.fake
      .waitFor((c) => c.method === 'views.publish' && c.args.user_id === this.actingAs, 10_000, since)
      .catch(() => undefined);
    if (!call) return this.fail('The App Home was not published (see the log).');
    this.flush();
  }

  /** Shows a modal Warden opened and asks its fields at prompts, until it is accepted or cancelled. */
  private async fillModal(view: any): Promise<void> {
    const r = this.renderer;
    // What Warden sent meanwhile (e.g. a code by Slack DM the form asks for) comes first.
    await new Promise((res) => setTimeout(res, 300));
    this.flush();
    this.out(`\n┌─ ${view.title?.text ?? 'Form'} ─`);
    for (const b of view.blocks ?? []) if (b.type === 'section' && b.text) this.out(`│ ${r.mrkdwn(b.text.text).replace(/\n/g, '\n│ ')}`);
    // A view that only reports (the outcome of a progress reply) has nothing to fill in.
    if (view.callback_id === PROGRESS_VIEWS.done) return void this.out('└─');
    const ask = this.opts.ask;
    if (!ask) {
      this.failed = true;
      this.out('└─ (this step opens a form: run `npm run console` and type the command at its prompt to fill it in)');
      return;
    }
    const inputs = (view.blocks ?? []).filter((b: any) => b.type === 'input');
    const values: Record<string, string | string[] | undefined> = {};
    let pending = inputs;
    // An optional field Warden answered with an error is needed after all (e.g. the code for this change).
    const needed = new Set<string>();
    const formHelp = () =>
      this.out(
        '│ Answer each field and press Enter (Enter alone keeps the [default] or leaves an optional field empty).\n' +
          '│ `totp` shows your 2FA code · `mail` the e-mails Warden sent · `cancel` leaves the form · `help` this text',
      );
    for (;;) {
      for (const b of pending) {
        const el = b.element;
        const labelText = b.label?.text ?? b.block_id;
        const optional = b.optional && !needed.has(b.block_id);
        const label = `${labelText.replace(/ \(optional\)$/i, optional ? ' (optional)' : '')}${optional && !/optional/i.test(labelText) ? ' (optional)' : ''}`;
        const isCode = b.block_id === 'totp';
        if (b.hint?.text) this.out(`│ ${r.mrkdwn(b.hint.text)}${isCode ? ' Type `totp` to see it.' : ''}`);
        for (;;) {
          let answer: string;
          let chosen: string | string[] | undefined;
          if (el.type === 'plain_text_input') {
            const initial = el.initial_value ? ` [${el.initial_value}]` : '';
            answer = (await ask(`│ ${label}${initial}: `)).trim();
          } else {
            const opts = el.options ?? [];
            opts.forEach((o: any, idx: number) => this.out(`│   ${idx + 1}. ${o.text.text}`));
            const initial = el.initial_option ? ` [${el.initial_option.text?.text ?? el.initial_option.value}]` : '';
            answer = (await ask(`│ ${label}${el.type === 'checkboxes' ? ' (numbers, comma-separated)' : ' (number)'}${initial}: `)).trim();
          }
          // Console words are never taken as the answer (a code field would count them as a wrong code).
          const cmd = answer.toLowerCase();
          if (cmd === 'cancel') return void this.out('└─ cancelled');
          if (cmd === 'help' || cmd === '?') {
            formHelp();
            continue;
          }
          if (cmd === 'totp') {
            this.out(`│ ${await this.totp()}`);
            continue;
          }
          if (cmd === 'mail') {
            this.showMail(false);
            continue;
          }
          if (el.type === 'plain_text_input') {
            // An optional code field may stay empty (not every change needs step-up); anything else must be 6 digits.
            // Blank input is never sent where it cannot count (nor is it counted by Warden: src/services/step-up.ts).
            if (isCode && (answer || !optional) && !/^\d{6}$/.test(answer.replace(/\s+/g, ''))) {
              this.out(`│ ✗ Enter the 6-digit code of your authenticator app${optional || !b.optional ? '' : ': this change needs it'} (type \`totp\` to see it, \`cancel\` to leave).`);
              continue;
            }
            chosen = answer || el.initial_value || undefined;
          } else {
            const opts = el.options ?? [];
            const words = answer.split(/[,\s]+/).filter(Boolean);
            const picked = words.map((x: string) => opts[Number(x) - 1]?.value);
            if (picked.some((v: unknown) => v === undefined)) {
              this.out(`│ ✗ Answer with ${el.type === 'checkboxes' ? 'numbers' : 'a number'} from 1 to ${opts.length}.`);
              continue;
            }
            chosen = el.type === 'checkboxes' ? picked : picked[0] ?? el.initial_option?.value;
          }
          values[b.block_id] = chosen;
          break;
        }
      }
      const { answer, ack, viewId } = await this.hub.driver.submit(this.actingAs, view, values);
      if (answer.status !== 200) return void this.fail(`└─ Warden did not accept the form (HTTP ${answer.status})`);
      if (ack?.response_action === 'errors') {
        const byId = new Map(inputs.map((b: any) => [b.block_id, b.label?.text ?? b.block_id]));
        for (const [field, msg] of Object.entries(ack.errors as Record<string, string>)) this.out(`│ ✗ ${byId.get(field) ?? field}: ${r.mrkdwn(msg)}`);
        pending = inputs.filter((b: any) => b.block_id in ack.errors);
        for (const b of pending) needed.add(b.block_id);
        continue;
      }
      if (ack?.response_action === 'update' && ack.view?.callback_id === PROGRESS_VIEWS.working) {
        // Ack first: Warden answered with "Sending…"; the same view is updated with the outcome.
        for (const b of ack.view.blocks ?? []) if (b.type === 'section' && b.text) this.out(`│ ${r.mrkdwn(b.text.text).replace(/\n/g, '\n│ ')}`);
        const update = await this.hub.driver.viewUpdate(viewId, 60_000).catch(() => undefined);
        if (!update) return void this.fail('└─ Warden did not report how it ended (no update of the form within 60 s)');
        this.out('└─');
        return this.fillModal(update.args.view);
      }
      if (ack?.response_action === 'update' || ack?.response_action === 'push') {
        this.out('└─');
        return this.fillModal(ack.view);
      }
      this.out('└─ submitted');
      await this.settle();
      return;
    }
  }
}

const CONSOLE_WORDS = ['click', 'as', 'people', 'whoami', 'totp', 'mail', 'home', 'show-file', 'files', 'help', 'quit', 'exit'];

/** The closest candidate within two edits (Levenshtein), for "did you mean". */
export function suggest(word: string, candidates: string[]): string | undefined {
  let best: { c: string; d: number } | undefined;
  for (const c of candidates) {
    const d = distance(word, c);
    if (d <= 2 && (!best || d < best.d)) best = { c, d };
  }
  return best?.c;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length];
}
