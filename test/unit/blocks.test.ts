import { describe, expect, it } from 'vitest';
import { md } from '../../src/ui.js';
import { LIMITS, messageBlocks, messagePayload, modalView, readModalValues, TRUNCATION_MARK } from '../../src/slack/blocks.js';

describe('Block Kit limits', () => {
  it('splits long text into sections of at most 3,000 characters', () => {
    const long = Array.from({ length: 400 }, (_, i) => `line ${i} ${'x'.repeat(40)}`).join('\n');
    const blocks = messageBlocks({ text: md.text('t'), blocks: [{ type: 'text', text: md.lines(long) }] }) as any[];
    expect(blocks.length).toBeGreaterThan(1);
    for (const b of blocks) expect(b.text.text.length).toBeLessThanOrEqual(LIMITS.sectionText);
  });

  it('caps a message at 50 blocks, keeps the buttons and says what was cut', () => {
    const many = Array.from({ length: 80 }, (_, i) => ({ type: 'text' as const, text: md.text(`row ${i}`) }));
    const blocks = messageBlocks({ text: md.text('t'), blocks: [...many, { type: 'buttons', buttons: [{ text: 'Next', actionId: 'a', value: 'v' }] }] }) as any[];
    expect(blocks).toHaveLength(50);
    expect(blocks.at(-1).type).toBe('actions');
    expect(JSON.stringify(blocks.at(-2))).toContain(TRUNCATION_MARK);
  });

  it('truncates field, header, button and fallback text', () => {
    const p = messagePayload({
      text: md.text('y'.repeat(5000)),
      blocks: [
        { type: 'header', text: 'h'.repeat(500) },
        { type: 'fields', fields: Array.from({ length: 12 }, () => md.text('f'.repeat(2500))) },
        { type: 'buttons', buttons: [{ text: 'b'.repeat(100), actionId: 'x', value: 'v'.repeat(3000) }] },
      ],
    }) as any;
    expect(p.text.length).toBeLessThanOrEqual(LIMITS.fallbackText);
    expect(p.blocks[0].text.text.length).toBeLessThanOrEqual(150);
    expect(p.blocks[1].fields).toHaveLength(10);
    expect(p.blocks[2].fields).toHaveLength(2);
    expect(p.blocks[1].fields[0].text.length).toBeLessThanOrEqual(2000);
    expect(p.blocks[3].elements[0].text.text.length).toBeLessThanOrEqual(75);
    expect(p.blocks[3].elements[0].value.length).toBeLessThanOrEqual(2000);
  });

  it('builds modals and reads their values back', () => {
    const view = modalView(
      {
        callbackId: 'cb',
        title: 'A title that is far too long for Slack',
        fields: [
          { id: 'name', label: 'Name', kind: 'text', initial: 'bob' },
          { id: 'role', label: 'Role', kind: 'select', options: [{ value: 'admin', label: 'Admin' }], initial: 'admin' },
          { id: 'opts', label: 'Opts', kind: 'checkboxes', options: [{ value: 'a', label: 'A' }], optional: true },
        ],
      },
      '{"m":"x"}',
    ) as any;
    expect(view.title.text.length).toBeLessThanOrEqual(24);
    expect(view.blocks.map((b: any) => b.block_id)).toEqual(['name', 'role', 'opts']);
    expect(view.blocks[1].element.initial_option.value).toBe('admin');
    expect(
      readModalValues({
        name: { value: { type: 'plain_text_input', value: 'alice' } },
        role: { value: { type: 'static_select', selected_option: { value: 'admin' } } },
        opts: { value: { type: 'checkboxes', selected_options: [{ value: 'a' }] } },
      }),
    ).toEqual({ name: 'alice', role: 'admin', opts: ['a'] });
  });
});
