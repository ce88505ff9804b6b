import { describe, expect, it } from 'vitest';
import { copyTextFields, copyTextRows } from '../../src/db/copy-text.js';

async function* chunks(parts: Buffer[]) {
  for (const p of parts) yield p;
}

async function all(parts: Buffer[], batch = 2) {
  const out: (string | null)[][] = [];
  for await (const b of copyTextRows(chunks(parts), batch)) out.push(...b);
  return out;
}

describe('COPY text format reader', () => {
  it('reads NULLs and every backslash escape PostgreSQL writes', () => {
    expect(copyTextFields('1\t\\N\ta\\tb\\nc\\\\d\\re')).toEqual(['1', null, 'a\tb\nc\\d\re']);
    expect(copyTextFields('\\b\\f\\v\\101\\x42')).toEqual(['\b\f\vAB']);
    expect(copyTextFields('')).toEqual(['']);
  });

  it('reassembles rows and multi-byte characters split across chunks', async () => {
    const text = Buffer.from('1\tzoë\t{"k": "√"}\n2\t\\N\tx\n3\tlast\t\\\\\n', 'utf8');
    // Split inside "ë" (2 bytes) and inside "√" (3 bytes), and between rows.
    const cuts = [5, 15, 22, 23, text.length];
    const parts: Buffer[] = [];
    let at = 0;
    for (const c of cuts) {
      parts.push(text.subarray(at, c));
      at = c;
    }
    expect(await all(parts)).toEqual([
      ['1', 'zoë', '{"k": "√"}'],
      ['2', null, 'x'],
      ['3', 'last', '\\'],
    ]);
  });

  it('keeps a last row without a newline', async () => {
    expect(await all([Buffer.from('a\tb\nc\td')])).toEqual([
      ['a', 'b'],
      ['c', 'd'],
    ]);
  });
});
