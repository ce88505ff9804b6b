import { describe, expect, it } from 'vitest';
import { messagePayload, modalView } from '../../src/slack/blocks.js';
import { UserError } from '../../src/errors.js';
import { md, mrkdwn, Mrkdwn, type Block, type Message, type Modal } from '../../src/ui.js';

/**
 * Issue 11, "one way to build text": a raw string cannot be put into a mrkdwn field. These
 * lines are checked by `npm run typecheck` (tsconfig includes test/): each `@ts-expect-error`
 * must meet an error, so if a mrkdwn field accepted a plain string again, the directive would
 * be unused and the typecheck would fail.
 */

const hostile = '<!channel> <https://evil.example|Re-login> <@U123> & more';

describe('mrkdwn fields take built text only (type level)', () => {
  // Never called: these lines are for the compiler.
  function refusals() {
    // @ts-expect-error a message's fallback text is mrkdwn
    const m1: Message = { text: hostile };
    // @ts-expect-error a text block is mrkdwn
    const b1: Block = { type: 'text', text: hostile };
    // @ts-expect-error a context block is mrkdwn
    const b2: Block = { type: 'context', text: hostile };
    // @ts-expect-error fields are mrkdwn
    const b3: Block = { type: 'fields', fields: [hostile] };
    // @ts-expect-error a button's confirmation text is mrkdwn
    const b4: Block = { type: 'buttons', buttons: [{ text: 'Go', actionId: 'a', value: 'v', confirm: { title: 'Sure?', text: hostile, confirm: 'Yes' } }] };
    // @ts-expect-error a modal's intro is mrkdwn
    const modal: Modal = { callbackId: 'x', title: 'X', intro: hostile, fields: [] };
    // @ts-expect-error there is no public way to make Mrkdwn from a string
    const forged = Mrkdwn.of(hostile);
    // @ts-expect-error nor a constructor
    const forged2 = new Mrkdwn(hostile);
    return [m1, b1, b2, b3, b4, modal, forged, forged2];
  }

  it('refuses raw strings in every mrkdwn field, accepts the templates', () => {
    expect(typeof refusals).toBe('function');

    // plain_text fields take strings (Slack does not parse them; blocks.ts cleans them).
    const ok: Message = {
      text: mrkdwn`Account ${hostile}`,
      blocks: [
        { type: 'header', text: hostile },
        { type: 'text', text: md.text(hostile) },
        { type: 'buttons', buttons: [{ text: hostile, actionId: 'a', value: 'v', confirm: { title: hostile, text: mrkdwn`Unlock ${hostile}?`, confirm: 'Yes' } }] },
      ],
    };
    // Slack parses mrkdwn objects and the fallback text; plain_text (the header, the button) is never parsed.
    const parsed = (v: unknown): string[] => {
      const out: string[] = [];
      const walk = (x: any) => {
        if (!x || typeof x !== 'object') return;
        if (Array.isArray(x)) return x.forEach(walk);
        if (x.type === 'mrkdwn') out.push(x.text);
        Object.values(x).forEach(walk);
      };
      walk(v);
      return out;
    };
    const payload = messagePayload(ok);
    for (const t of [payload.text, ...parsed(payload.blocks)]) expect(t).not.toMatch(/<!|<@|<#|<http/);
    for (const t of parsed(modalView({ callbackId: 'x', title: hostile, intro: md.text(hostile), fields: [] }, ''))) expect(t).not.toMatch(/<!|<@|<#|<http/);
  });

  it('a UserError is shown as data unless it was built as mrkdwn', () => {
    const plain = new UserError(`Unknown filter \`${hostile}\``);
    expect(plain.mrkdwn).toBeUndefined();
    expect(String(md.lines(plain.message))).not.toMatch(/<!|<@|<http/);
    const built = new UserError(mrkdwn`${md.user('U_BOB')} is already linked to ${md.code(hostile)}.`);
    expect(String(built.mrkdwn)).toMatch(/^<@U_BOB> is already linked to `&lt;!channel&gt;/);
    expect(built.message).toBe(String(built.mrkdwn));
  });
});
