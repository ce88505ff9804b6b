import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { parseArgs, tokenize, unwrapSlackMarkup } from '../../commands/grammar.js';
import { UserError } from '../../src/errors.js';

describe('tokenize', () => {
  it('keeps quoted text together and unwraps Slack markup', () => {
    expect(tokenize('request "I need admin" q:\'two words\'')).toEqual(['request', 'I need admin', 'q:two words']);
    expect(tokenize('link bob <@U123ABC|bob>')).toEqual(['link', 'bob', '<@U123ABC>']);
    expect(tokenize('create bob <mailto:bob@x.io|bob@x.io> biller')).toEqual(['create', 'bob', 'bob@x.io', 'biller']);
    expect(tokenize('  ')).toEqual([]);
    expect(unwrapSlackMarkup('a &lt;b&gt; &amp; c')).toBe('a <b> & c');
  });
});

describe('parseArgs', () => {
  const schema = z.object({ username: z.string().min(3), role: z.enum(['admin', 'biller']).optional(), action: z.array(z.string()).optional(), 'dry-run': z.boolean().optional(), reason: z.string().optional() }).strict();
  const spec = { positional: ['username'], rest: 'reason', repeatable: ['action'], schema, usage: '`/x USERNAME`' };

  it('maps positionals, options, repeatable options, flags and the rest', () => {
    expect(parseArgs(['bob', 'role:admin', 'action:a', 'action:b', '--dry-run', 'because', 'yes'], spec)).toEqual({
      username: 'bob', role: 'admin', action: ['a', 'b'], 'dry-run': true, reason: 'because yes',
    });
  });

  const bad: [string[], RegExp][] = [
    [[], /Missing USERNAME/],
    [['bo'], /username/],
    [['bob', 'colour:red'], /Unknown option `colour:`/],
    [['bob', 'role:'], /needs a value/],
    [['bob', 'role:admin', 'role:biller'], /given twice/],
    [['bob', '--force'], /Unknown flag/],
    [['bob', 'role:root'], /role/],
  ];
  it.each(bad)('explains %j', (words, expected) => {
    try {
      parseArgs(words, spec);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(UserError);
      expect((e as UserError).message).toMatch(expected);
      expect((e as UserError).usage).toBe('`/x USERNAME`');
    }
  });
});
