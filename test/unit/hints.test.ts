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

function sourceTexts(): string[] {
  const texts: string[] = [];
  const walk = (dir: string) => {
    for (const f of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, f.name);
      if (f.isDirectory()) walk(p);
      else if (p.endsWith('.ts')) texts.push(fs.readFileSync(p, 'utf8'));
    }
  };
  for (const d of SOURCES) walk(d);
  for (const c of commands) texts.push(helpText(c.command, c.summary, c.subcommands), ...c.subcommands.map((s) => `\`${c.command} ${s.usage}\``));
  return texts;
}

/** `/users list role:admin` style examples; templates with placeholders (USERNAME, [x], a|b, ${…}) are usage, not examples. */
function examples(): string[] {
  const names = commands.map((c) => c.command.slice(1)).join('|');
  const re = new RegExp('`(/(?:' + names + ')(?: [^`\\n\\\\]*)?)\\\\?`', 'g');
  const out = new Set<string>();
  for (const t of sourceTexts()) {
    // Comments are for developers; only what users see counts.
    const shown = t.replace(/^\s*(\/\*\*|\*|\/\/).*$/gm, '');
    for (const m of shown.matchAll(re)) {
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
