import { StringDecoder } from 'node:string_decoder';

/**
 * Rows of PostgreSQL's COPY text format (tab-separated, `\N` for NULL, backslash escapes),
 * in batches as the chunks of a `COPY … TO STDOUT` arrive. Chunks may split a row or a
 * multi-byte character anywhere.
 */
export async function* copyTextRows(chunks: AsyncIterable<Buffer>, batchSize = 1000): AsyncGenerator<(string | null)[][]> {
  for await (const lines of copyTextLines(chunks, batchSize)) yield lines.map(copyTextFields);
}

/** The lines of a `COPY … TO STDOUT` (text format, no newline), in batches of about `batchSize`. */
export async function* copyTextLines(chunks: AsyncIterable<Buffer>, batchSize = 1000): AsyncGenerator<string[]> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  let batch: string[] = [];
  for await (const chunk of chunks) {
    const text = rest + decoder.write(chunk);
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      batch.push(text.slice(start, nl));
      start = nl + 1;
    }
    rest = text.slice(start);
    if (batch.length >= batchSize) {
      yield batch;
      batch = [];
    }
  }
  rest += decoder.end();
  if (rest) batch.push(rest);
  if (batch.length) yield batch;
}

const ESCAPES: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };

/** One line of COPY text output as its fields. */
export function copyTextFields(line: string): (string | null)[] {
  return line.split('\t').map((f) => {
    if (f === '\\N') return null;
    if (!f.includes('\\')) return f;
    return f.replace(/\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))/g, (_m, oct, hex, ch) =>
      oct ? String.fromCharCode(parseInt(oct, 8)) : hex ? String.fromCharCode(parseInt(hex, 16)) : (ESCAPES[ch] ?? ch),
    );
  });
}
