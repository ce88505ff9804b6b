import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { commands } from '../../commands/index.js';
import { helpText, parseArgs, tokenize } from '../../commands/grammar.js';
import { parseFilters } from '../../commands/audit.js';
import { UserError } from '../../src/errors.js';
import { z } from 'zod';

/**
 * Every example Warden shows (help, usage lines, error hints, card footers) must be accepted
 * by the grammar it points to: a newcomer copies them. Examples are taken from the source
 * texts, so a new hint is checked without anyone adding it here.
 */

const SOURCES = ['commands', 'src/services', 'src/slack', 'src/console'];

/** Every text a user may see, with where it comes from (a source file, or a command's generated help). */
function sources(): { file: string; text: string }[] {
  const out: { file: string; text: string }[] = [];
  const walk = (dir: string) => {
    for (const f of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, f.name);
      if (f.isDirectory()) walk(p);
      else if (p.endsWith('.ts')) out.push({ file: p, text: fs.readFileSync(p, 'utf8') });
    }
  };
  for (const d of SOURCES) walk(d);
  for (const c of commands) {
    out.push({ file: `help of ${c.command}`, text: [helpText(c.command, c.summary, c.subcommands), ...c.subcommands.map((s) => `\`${c.command} ${s.usage}\``)].join('\n') });
  }
  return out;
}

function sourceTexts(): string[] {
  return sources().map((s) => s.text);
}

/** Comments are for developers; only what users see counts. */
const shownPart = (t: string) => t.replace(/^\s*(\/\*\*|\*|\/\/).*$/gm, '');

/** `/users list role:admin` style examples; templates with placeholders (USERNAME, [x], a|b, ${…}) are usage, not examples. */
function examples(): string[] {
  const names = commands.map((c) => c.command.slice(1)).join('|');
  const re = new RegExp('`(/(?:' + names + ')(?: [^`\\n\\\\]*)?)\\\\?`', 'g');
  // #11's templates: md.code('/users list status:locked') shows the same backticks.
  const code = new RegExp(`md\\.code\\((?:'|")(/(?:${names})(?: [^'"\\n]*)?)(?:'|")\\)`, 'g');
  const out = new Set<string>();
  for (const t of sourceTexts()) {
    const shown = shownPart(t);
    for (const m of [...shown.matchAll(re), ...shown.matchAll(code)]) {
      const ex = m[1].trim();
      if (/\$\{|\[|\||…|\.\.\.|\b[A-Z][A-Z_]{1,}\b|\bN\b/.test(ex)) continue;
      out.add(ex);
    }
  }
  return [...out].sort();
}

/** What the router does with a command's text, up to and including the grammar. */
function parse(line: string): void {
  const [name, ...rest] = line.split(' ');
  const mod = commands.find((c) => c.command === name)!;
  const words = tokenize(rest.join(' '));
  const subName = (words[0] ?? mod.defaultSubcommand ?? 'help').toLowerCase();
  if (['help', '-h', '--help'].includes(subName)) return;
  let sub = mod.subcommands.find((s) => s.name === subName);
  let subWords = words[0] === undefined ? [] : words.slice(1);
  if (!sub && mod.fallbackSubcommand && words[0] !== undefined) {
    sub = mod.subcommands.find((s) => s.name === mod.fallbackSubcommand);
    subWords = words;
  }
  if (!sub) throw new Error(`no subcommand ${subName}`);
  sub.parse(subWords);
}

describe('hint examples', () => {
  const all = examples();

  it('finds the examples (the extraction itself works)', () => {
    expect(all).toContain('/audit action:login_failed since:24h');
    expect(all).toContain('/users list status:locked'); // md.code('…') in a digest card
    expect(all.length).toBeGreaterThan(15);
  });

  it.each(all)('%s is accepted by its grammar', (ex) => {
    try {
      parse(ex);
    } catch (e) {
      // `/users show` alone names a subcommand (its usage is shown next to it); it is not an example,
      // but the subcommand must exist (parse() throws a plain Error otherwise).
      const bare = ex.split(' ').length === 2;
      if (!(bare && e instanceof UserError)) throw e;
    }
  });
});

// ── Option-only examples: `area:lucknow`, `since:24h`, `password:temp`, `--dry-run` ─────────────

const OPTION = String.raw`(?:--[a-z][a-z-]*|[a-z][a-z_]*:[^\s\x60\\'"]+)`;
/** In backticks (also escaped ones inside template literals) or as the text of md.code('…'). */
const OPTION_RES = [
  new RegExp(String.raw`\x60(${OPTION}(?: ${OPTION})*)\\?\x60`, 'g'),
  new RegExp(String.raw`md\.code\((?:'|")(${OPTION}(?: ${OPTION})*)(?:'|")\)`, 'g'),
];

function optionsIn(text: string): string[] {
  const out: string[] = [];
  for (const re of OPTION_RES) {
    for (const m of text.matchAll(re)) {
      const ex = m[1];
      // Templates and usage placeholders (`entity:TYPE`, `window:${w}`) are not examples; URLs neither.
      if (/\$\{|\[|\||…|\.\.\.|\b[A-Z][A-Z_]{1,}\b|\bN\b|^(https?|mailto):/.test(ex)) continue;
      out.push(ex);
    }
  }
  return out;
}

/** The command a source file speaks for; a shared file's examples may point to any command. */
function commandsFor(file: string): string[] {
  const name = path.basename(file);
  const all = commands.map((c) => c.command);
  const help = /^help of (\/\S+)$/.exec(file);
  if (help) return [help[1]];
  for (const [word, cmd] of [['audit', '/audit'], ['twofa', '/2fa'], ['promotion', '/promotions'], ['health', '/health'], ['user', '/users']] as const) {
    if (name.includes(word)) return [cmd];
  }
  return all;
}

const SAMPLES: Record<string, string> = {
  USERNAME: 'amit.gupta',
  EMAIL: 'new.user@example.com',
  ROLE: 'dispatcher',
  ID: '12',
  TYPE: 'bag',
  REASON: 'I run the night shift and unlock accounts',
  '@slack-user': '<@U0123ABCD>',
};

/**
 * The smallest invocation a subcommand's usage allows, with sample values: optional groups
 * holding options are dropped, other optional groups kept, `a|b` takes `a`.
 */
function baseWords(usage: string): string[] {
  let u = usage.split(' | ')[0];
  for (let prev = ''; prev !== u; ) {
    prev = u;
    u = u.replace(/\[([^[\]]*)\]/, (_m, inner: string) => (/:|--/.test(inner) ? '' : inner));
  }
  return u
    .split(/\s+/)
    .filter(Boolean)
    .slice(1)
    .filter((w) => w !== 'filters') // `export [filters]`: none is the smallest
    .map((w) => SAMPLES[w] ?? (w.includes('|') ? w.split('|')[0] : /^[A-Z_]+$/.test(w) ? 'x' : w));
}

const keyOf = (opt: string) => (opt.startsWith('--') ? opt : `${opt.split(':')[0]}:`);

/** Where an option example is accepted: a subcommand of its command whose usage names each of its options. */
function acceptedBy(example: string, targets: string[]): string | Error {
  const keys = example.split(' ').map(keyOf);
  const candidates = commands
    .filter((c) => targets.includes(c.command))
    .flatMap((c) => c.subcommands.map((sub) => ({ c, sub })))
    .filter(({ sub }) => keys.every((k) => sub.usage.includes(k)));
  if (!candidates.length) return new Error(`no subcommand of ${targets.join(', ')} takes ${keys.join(' ')} (a hint suggests an option that does not exist)`);
  const errors: string[] = [];
  for (const { c, sub } of candidates) {
    try {
      sub.parse([...baseWords(sub.usage), ...tokenize(example)]);
      return `${c.command} ${sub.name}`;
    } catch (e) {
      errors.push(`${c.command} ${sub.name}: ${(e as Error).message}`);
    }
  }
  return new Error(`refused by every subcommand that takes it:\n${errors.join('\n')}`);
}

function optionExamples(): [string, string][] {
  const out = new Map<string, string>();
  for (const { file, text } of sources()) for (const ex of optionsIn(shownPart(text))) out.set(`${ex} (${file})`, file);
  return [...out.entries()].sort();
}

/** Form field hints: a field takes a bare value, never `key:value`. */
function fieldHints(): string[] {
  const out: string[] = [];
  const re = /(?:hint|placeholder):\s*(['"\x60])((?:(?!\1).)*)\1|optionalTotp\((['"\x60])((?:(?!\3).)*)\3\)/g;
  for (const { text } of sources()) for (const m of shownPart(text).matchAll(re)) out.push(m[2] ?? m[4]);
  return out;
}

describe('option examples in hints', () => {
  const all = optionExamples();

  it('finds them (the extraction itself works)', () => {
    const shown = all.map(([k]) => k.split(' (')[0]);
    expect(shown).toEqual(expect.arrayContaining(['area:lucknow', 'password:temp', 'window:1h', 'action:login_failed', 'since:24h', 'to:channel']));
    expect(optionsIn("x '`role:biller`' md.code('status:locked') `window:${w}` `entity:TYPE` `https://x`")).toEqual(['role:biller', 'status:locked']);
  });

  it.each(all)('%s is accepted by the command it points to', (key, file) => {
    const example = key.split(' (')[0];
    const r = acceptedBy(example, commandsFor(file));
    if (r instanceof Error) throw new Error(`\`${example}\` in ${file}: ${r.message}`);
  });

  it('form field hints give bare values, not options (a form field refuses `area:lucknow`)', () => {
    const hints = fieldHints();
    expect(hints.length).toBeGreaterThan(5);
    expect(hints.filter((h) => optionsIn(h).length)).toEqual([]);
    expect(optionsIn('e.g. `area:lucknow`')).toEqual(['area:lucknow']);
  });
});

describe('grammar messages', () => {
  const spec = { schema: z.object({ q: z.string().max(64).optional(), n: z.coerce.number().int().max(5).optional() }).strict(), usage: 'u' };
  const message = (words: string[], s = spec) => {
    try {
      parseArgs(words, s);
    } catch (e) {
      return (e as UserError).message;
    }
    return 'accepted';
  };

  it('words zod issues for people, never raw zod text', () => {
    expect(message([`q:${'x'.repeat(65)}`])).toBe('`q` is too long: at most 64 characters.');
    expect(message(['n:9'])).toBe('`n` must be at most 5.');
    expect(message(['n:abc'])).toBe('`n` must be a number.');
  });

  it('offers /audit --unmasked only where it exists, as a flag', () => {
    const search = () => parseFilters(['unmasked:true'], { usage: 'u' });
    expect(search).toThrow('Unknown option `unmasked:`');
    expect(search).not.toThrow(/Allowed:.*unmasked/);
    expect(() => parseFilters(['foo:bar'], { usage: 'u' })).not.toThrow(/unmasked/);
    expect(() => parseFilters(['unmasked:true'], { usage: 'u', allowUnmasked: true })).toThrow('`unmasked` is a flag: write `--unmasked`.');
    expect(parseFilters(['--unmasked'], { usage: 'u', allowUnmasked: true }).unmasked).toBe(true);
  });

  it('takes role names in any case, as areas', () => {
    const list = commands.find((c) => c.command === '/users')!.subcommands.find((s) => s.name === 'list')!;
    expect(list.parse(['role:Admin'])).toMatchObject({ role: 'admin' });
  });
});
