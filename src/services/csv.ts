/**
 * CSV cells that a spreadsheet opens as text, never as a formula (issue 11).
 *
 * Excel, LibreOffice and Google Sheets treat a cell starting with `=`, `+`, `-`, `@`, a tab
 * or a carriage return as a formula — also after leading spaces, after invisible
 * characters (zero-width space/joiner, BOM, bidi marks), and with the full-width forms
 * `＝ ＋ － ＠` that some of them fold to ASCII. Such a cell gets a leading `'` (OWASP's
 * advice), and every cell is quoted per RFC 4180 when it needs to be.
 */

// Whitespace and invisible characters a spreadsheet skips before reading a formula.
const INVISIBLE_PREFIX = /^[\s\u00A0\u1680\u2000-\u200F\u2028-\u202F\u205F-\u206F\u3000\uFEFF]*/;
const FORMULA_START = /^[=+\-@\t\r\uFF1D\uFF0B\uFF0D\uFF20\uFE62\uFE63\uFE66\u2212]/;

/** Would a spreadsheet read this text as a formula? */
export function looksLikeFormula(s: string): boolean {
  return FORMULA_START.test(s.replace(INVISIBLE_PREFIX, '')) || /^[\t\r]/.test(s);
}

/** One CSV cell (RFC 4180) with formulas neutralised. Objects are written as JSON. */
// Starts with a letter, digit or underscore and holds nothing to quote: no formula, as is.
const PLAIN = /^[A-Za-z0-9_][A-Za-z0-9_.]*$/;

export function csvCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string' && PLAIN.test(v)) return v;
  let s = typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v);
  // Numbers Warden writes (ids, counts) are left alone; negative numbers are not formulas.
  if (typeof v !== 'number' && looksLikeFormula(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function csvLine(cells: unknown[]): string {
  return `${cells.map(csvCell).join(',')}\r\n`;
}
