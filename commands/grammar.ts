import { z } from 'zod';
import { UserError } from '../src/errors.js';

/**
 * The grammar every slash command shares: words separated by spaces, "quoted text"
 * kept together, `key:value` options, `--flags`. Slack's own markup for mentions,
 * channels and links (`<@U123|bob>`, `<mailto:a@b.co|a@b.co>`) is unwrapped first.
 */

/**
 * Splits command text into words. A quote at the start of a word or right after `key:`
 * opens a quoted part (`"two words"`, `q:'two words'`); apostrophes inside words (I'm)
 * are kept as they are.
 */
export function tokenize(text: string): string[] {
  const clean = unwrapSlackMarkup(text.replace(/[\u201C\u201D]/g, '"').replace(/[\u2018\u2019]/g, "'"));
  const words: string[] = [];
  let word: string | null = null;
  for (let i = 0; i < clean.length; i++) {
    const ch = clean[i];
    if (/\s/.test(ch)) {
      if (word !== null) words.push(word);
      word = null;
      continue;
    }
    const opensQuote = (ch === '"' || ch === "'") && (word === null || word.endsWith(':'));
    if (opensQuote) {
      const end = clean.indexOf(ch, i + 1);
      if (end > i) {
        word = (word ?? '') + clean.slice(i + 1, end);
        i = end;
        continue;
      }
    }
    word = (word ?? '') + ch;
  }
  if (word !== null) words.push(word);
  return words;
}

/** `<@U123|bob>` → `<@U123>`, `<mailto:x@y.z|x@y.z>` → `x@y.z`, `<http://a|a>` → `http://a`. */
export function unwrapSlackMarkup(text: string): string {
  return text
    .replace(/<@([UW][A-Z0-9]+)(\|[^>]*)?>/g, '<@$1>')
    .replace(/<mailto:([^|>]+)(\|[^>]*)?>/g, '$1')
    .replace(/<#([CG][A-Z0-9]+)(\|[^>]*)?>/g, '<#$1>')
    .replace(/<(https?:\/\/[^|>]+)(\|[^>]*)?>/g, '$1')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** The schema of a subcommand that takes no words at all. */
export const noArgs = z.object({}).strict();

export interface ArgSpec<S extends z.ZodObject<any>> {
  /** Names given to positional words, in order. */
  positional?: string[];
  /** Name that collects every remaining positional word, joined by spaces (e.g. a reason). */
  rest?: string;
  /** Option keys that may be given several times (collected into an array). */
  repeatable?: string[];
  /** Keys written as `--flag` only (never offered as `key:` options). */
  flags?: string[];
  schema: S;
  usage: string;
}

/**
 * Parses words against a spec and validates them with zod. Any mistake becomes one
 * UserError whose text says what was wrong, with the usage attached.
 */
export function parseArgs<S extends z.ZodObject<any>>(words: string[], spec: ArgSpec<S>): z.infer<S> {
  const fail = (msg: string): never => {
    throw new UserError(msg, undefined, spec.usage);
  };
  const known = Object.keys(spec.schema.shape);
  const positionalNames = spec.positional ?? [];
  const record: Record<string, unknown> = {};
  const restWords: string[] = [];
  let index = 0;

  for (const word of words) {
    const flag = /^--([a-z][a-z0-9-]*)$/.exec(word);
    const option = /^([a-z][a-z0-9_-]*):(.*)$/s.exec(word);
    if (flag) {
      const key = flag[1];
      if (!known.includes(key)) fail(`Unknown flag \`--${key}\`.`);
      record[key] = true;
    } else if (option && !option[1].startsWith('http') && !option[1].startsWith('mailto')) {
      const [, key, value] = option;
      if (spec.flags?.includes(key)) fail(`\`${key}\` is a flag: write \`--${key}\`.`);
      if (!known.includes(key) || positionalNames.includes(key) || key === spec.rest) {
        const allowed = known.filter((k) => !positionalNames.includes(k) && k !== spec.rest && !spec.flags?.includes(k));
        fail(`Unknown option \`${key}:\`.${allowed.length ? ` Allowed: ${allowed.map((k) => `\`${k}:\``).join(', ')}.` : ''}`);
      }
      if (value === '') fail(`\`${key}:\` needs a value, e.g. \`${key}:something\`.`);
      if (spec.repeatable?.includes(key)) {
        record[key] = [...((record[key] as string[]) ?? []), value];
      } else if (key in record) {
        fail(`\`${key}:\` is given twice.`);
      } else {
        record[key] = value;
      }
    } else if (index < positionalNames.length) {
      record[positionalNames[index++]] = word;
    } else if (spec.rest) {
      restWords.push(word);
    } else {
      fail(`Unexpected \`${word}\`.`);
    }
  }
  if (spec.rest && restWords.length) record[spec.rest] = restWords.join(' ');

  const result = spec.schema.safeParse(record);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = String(issue.path[0] ?? '');
    const missing = issue.code === 'invalid_type' && record[field] === undefined;
    fail(missing ? `Missing ${field.toUpperCase()}.` : friendlyIssue(issue, field));
  }
  return result.data as z.infer<S>;
}

/**
 * A zod issue in words a person reads ("`q:` is too long: at most 64 characters") instead of
 * zod's own ("Too big: expected string to have <=64 characters"). Messages the schemas set
 * themselves are kept.
 */
export function friendlyIssue(issue: z.core.$ZodIssue, field: string): string {
  const name = `\`${field}\``;
  const i = issue as any;
  const custom = !/^(Too (big|small)|Invalid (input|option|string|type)|Expected)/.test(issue.message);
  if (custom) return issue.message.includes(field) ? issue.message : `${field}: ${issue.message}`;
  switch (issue.code) {
    case 'too_big':
      return i.origin === 'string' ? `${name} is too long: at most ${i.maximum} characters.` : `${name} must be at most ${i.maximum}.`;
    case 'too_small':
      return i.origin === 'string' ? `${name} is too short: at least ${i.minimum} characters.` : `${name} must be at least ${i.minimum}.`;
    case 'invalid_value':
      return `${name} must be one of ${(i.values ?? []).map((v: unknown) => `\`${String(v)}\``).join(', ')}.`;
    case 'invalid_type':
      return i.expected === 'number' ? `${name} must be a number.` : `${name} is not valid here.`;
    case 'unrecognized_keys':
      return `Unknown option ${(i.keys ?? []).map((k: string) => `\`${k}:\``).join(', ')}.`;
    default:
      return `${name} is not valid.`;
  }
}

/** Builds the `help` text of a command from its subcommands. */
export function helpText(command: string, summary: string, subs: { usage: string; summary: string; role: string }[]): string {
  const lines = subs.map((s) => `• \`${command} ${s.usage}\` — ${s.summary}${s.role === 'admin' ? ' _(admins)_' : ''}`);
  return `*${command}* — ${summary}\n${lines.join('\n')}\n• \`${command} help\` — this help`;
}
