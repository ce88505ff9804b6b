import { describe, expect, it } from 'vitest';
import { commands } from '../../commands/index.js';

/**
 * #15: a `readOnly` subcommand runs while the router still asks the store whether the delivery
 * is a Slack retry (a retry's answer is dropped, but its work has been done). Marking anything
 * that writes, posts or mails would run it twice on a retry, so the list is kept here on purpose:
 * adding to it is a decision for review, not a side effect.
 */
describe('read-only subcommands', () => {
  it('are exactly the searches and look-ups that only read', () => {
    const marked = commands.flatMap((c) => c.subcommands.filter((s) => s.readOnly).map((s) => `${c.command} ${s.name}`));
    expect(marked.sort()).toEqual(
      ['/audit deletions', '/audit failed-logins', '/audit history', '/audit search', '/audit timeline', '/users list', '/users show'].sort(),
    );
  });
});
