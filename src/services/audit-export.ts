import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { copyTextFields, copyTextLines } from '../db/copy-text.js';
import type { Db } from '../db/index.js';
import { UserError } from '../errors.js';
import type { Logger } from '../logger.js';
import { md, mrkdwn, type Message } from '../ui.js';
import type { Config } from '../config.js';
import { AuditRetention } from './audit-retention.js';
import { AuditSearch, type AuditQuery, type AuditRow } from './audit-search.js';
import { writeAudit } from './audit-writer.js';
import type { Chat, PostedRef } from './chat.js';
import { requireAdmin, type Actor } from './identity.js';
import { InterruptedError } from './lifecycle.js';
import { Masker } from './masking.js';
import { SECRET_WORDS, scrubAuditRow } from './audit-scrub.js';
import { csvCell, csvLine } from './csv.js';

/**
 * `/audit export`: the rows of a search as a CSV file sent to the requester's DM (or, when
 * asked for explicitly, uploaded to the conversation).
 * Rows stream from PostgreSQL with one `COPY … TO STDOUT` (PGlite: keyset batches), are
 * masked and written batch by batch to a private temporary file, which is then streamed to
 * Slack: memory holds one batch, never the whole export. (Slack's upload needs the file's
 * length before the upload starts, so the file is complete before it goes.)
 * E-mails and IPs are masked unless the admin passed step-up (then the file goes to their
 * DM only). Long exports post a progress message that is updated as batches arrive and
 * finish with the row count. Every export is audited (`audit_export`: who, which filters).
 */

export const CSV_COLUMNS = [
  'id',
  'timestamp',
  'actor',
  'user_id',
  'action',
  'entity_type',
  'entity_id',
  'ip_address',
  'details',
  'before_state',
  'after_state',
] as const;

export const MAX_EXPORT_ROWS = 1_000_000;

// The CSV cell rules (formula neutralisation) live in ./csv.ts; re-exported for existing callers.
export { csvCell, csvLine };

/** A row as CSV, masked by `masker` (a disabled Masker for unmasked exports). */
export function auditCsvLine(raw: AuditRow, masker: Masker): string {
  // Secrets the application wrote are hidden in masked and unmasked exports alike.
  const row = scrubAuditRow(raw);
  const json = (v: Record<string, unknown> | null) => (v ? masker.text(JSON.stringify(v)) : '');
  return csvLine([
    row.id,
    row.timestamp.toISOString(),
    row.actor ?? '',
    row.user_id ?? '',
    row.action,
    row.entity_type ?? '',
    row.entity_id ?? '',
    masker.ip(row.ip_address),
    json(row.details),
    json(row.before_state),
    json(row.after_state),
  ]);
}

/**
 * The export's fast path (#15): one COPY text line straight to its CSV line, for the common
 * row whose JSON columns are flat objects that neither the scrubbing reader nor the masker
 * could change — then JSON.parse, the scrubbing copy, JSON.stringify and the masking regexes
 * are skipped and the jsonb text is only made compact. Any other row (escapes, nesting, a
 * word a secret key or `key=value` needs, an `@`, a colon or a dotted number in a masked
 * export, a key JavaScript would reorder, odd numbers or timestamps) takes the slow path,
 * `auditCsvLine`: the output is the same either way (test/unit/export-fast-path.test.ts).
 */
export function copyLineToCsv(line: string, masker: Masker): string {
  return fastCsvLine(line, masker) ?? auditCsvLine(auditRowOf(copyTextFields(line)), masker);
}

// COPY text: `\N` is NULL; a field holding a backslash (an escape) never matches below, so
// every row with an escaped character takes the slow path.
const NULL_FIELD = '\\\\N';
// Integers that print the same after Number(): no sign on 0, no leading zero, within 2^53.
const ID = '[1-9]\\d{0,14}';
const INT_OR_NULL = `(0|-?${ID}|${NULL_FIELD})`;
const TEXT_OR_NULL = `([^\\t\\\\]*|${NULL_FIELD})`;
// jsonb's text of a flat object: `{"k": v, "k": v}`; strings without quote, backslash (so no
// escapes or control characters), colon, @, braces or brackets; integers, true, false, null.
const FLAT_STR = '"[^"\\\\:@{}\\[\\]]*"';
const FLAT_VAL = `(?:${FLAT_STR}|0|-?${ID}|true|false|null)`;
const FLAT_OBJECT = `\\{(?:${FLAT_STR}: ${FLAT_VAL}(?:, ${FLAT_STR}: ${FLAT_VAL})*)?\\}`;
const JSON_OR_NULL = `(${FLAT_OBJECT}|${NULL_FIELD})`;
/**
 * The whole line in one match (exportStatement's columns): id, timestamp with microseconds
 * (captured to the millisecond, as Date keeps it), actor, user_id, action, entity_type,
 * entity_id, ip_address (a plain IPv4 address captured as its two halves, else any text),
 * details, before_state, after_state.
 */
const FAST_LINE = new RegExp(
  `^(${ID})\\t(\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3})\\d{3}Z\\t${TEXT_OR_NULL}\\t${INT_OR_NULL}\\t${TEXT_OR_NULL}\\t${TEXT_OR_NULL}\\t${INT_OR_NULL}\\t` +
    `(?:(\\d{1,3}\\.\\d{1,3})(\\.\\d{1,3}\\.\\d{1,3})|${TEXT_OR_NULL})\\t${JSON_OR_NULL}\\t${JSON_OR_NULL}\\t${JSON_OR_NULL}$`,
);
// Searched in the JSON columns only (from lastIndex): a word a secret needs (SECRET_WORDS,
// the superset scrubSecrets is tested against), a key JavaScript would order first (an array
// index), or the one key JSON.parse keeps but an assignment does not.
const JSON_NEEDS_SLOW = new RegExp(`"\\d+": |__proto__|${SECRET_WORDS}`, 'gi');
// The masker could only change an IPv4 address in a flat object (no @, no colon in any string).
const DOTTED_NUMBER = /\d\.\d/g;

/** The fast path alone: the CSV line, or undefined when the row needs the slow path. */
export function fastCsvLine(line: string, masker: Masker): string | undefined {
  const m = FAST_LINE.exec(line);
  if (m === null) return undefined;
  const details = m[11];
  const before = m[12];
  const after = m[13];
  const jsonAt = line.length - details.length - before.length - after.length - 2;
  JSON_NEEDS_SLOW.lastIndex = jsonAt;
  if (JSON_NEEDS_SLOW.test(line)) return undefined;
  if (masker.enabled) {
    DOTTED_NUMBER.lastIndex = jsonAt;
    if (DOTTED_NUMBER.test(line)) return undefined;
  }
  // maskIp of a plain IPv4 address keeps its first two numbers; either way a cell as is.
  const ip = m[8] !== undefined ? (masker.enabled ? `${m[8]}.xxx.xxx` : m[8] + m[9]) : csvCell(masker.ip(m[10] === NULL ? null : m[10]));
  return `${m[1]},${m[2]}Z,${textCell(m[3])},${intCell(m[4])},${textCell(m[5])},${textCell(m[6])},${intCell(m[7])},${ip},${jsonCell(details)},${jsonCell(before)},${jsonCell(after)}\r\n`;
}

const NULL = '\\N';
const textCell = (v: string) => (v === NULL ? '' : csvCell(v));
const intCell = (v: string) => (v === NULL ? '' : v);

/** The CSV cell of a flat jsonb object (or NULL) that FAST_LINE matched. */
function jsonCell(text: string): string {
  if (text === NULL) return '';
  if (text === '{}') return text;
  // Outside the strings (even parts) jsonb's only spaces follow ':' and ','; the cell's quotes
  // are doubled (RFC 4180) by joining with "".
  const parts = text.split('"');
  for (let i = 0; i < parts.length; i += 2) if (parts[i].includes(' ')) parts[i] = parts[i].replaceAll(' ', '');
  return `"${parts.join('""')}"`;
}

export interface ExportOptions {
  /** Conversation the command came from (where `to: 'channel'` uploads). */
  channel?: string;
  /**
   * Where the file goes: the requester's DM, or the conversation it was asked in (an explicit
   * choice in `/audit export to:channel`). Omitted: the conversation when one is given, else
   * the DM. Unmasked exports always go to the DM.
   */
  to?: 'dm' | 'channel';
  /** Step-up passed: unmasked, delivered to the admin's DM only. */
  unmasked: boolean;
  /** The filters as the admin typed them, for messages and the audit row. */
  describe: string;
}

export interface ExportResult {
  rows: number;
  filename: string;
  channel: string;
  masked: boolean;
  truncated: boolean;
  /** Where the file went, for the admin's answer (and the audit row). */
  where: 'channel' | 'dm';
}

export class AuditExporter {
  constructor(
    private readonly deps: {
      db: Db;
      chat: Chat;
      search: AuditSearch;
      masker: Masker;
      logger: Logger;
      /** Rows between progress updates; exports bigger than this show progress. */
      progressEvery?: number;
      batchSize?: number;
      maxRows?: number;
      /** Shutdown: the export stops between batches (see Lifecycle). */
      signal?: AbortSignal;
    },
  ) {}

  /**
   * The matching rows as CSV text in batches, newest first, at most `limit` rows. On
   * PostgreSQL one `COPY (select) TO STDOUT` streams them at the server's pace (no per-batch
   * query, no row objects built by the driver) and each line goes through `copyLineToCsv`;
   * elsewhere (PGlite) keyset batches through `auditCsvLine`.
   */
  private async *csvBatches(query: AuditQuery, maxRows: number, masker: Masker, state: { truncated: boolean }): AsyncGenerator<string[]> {
    const { db, search } = this.deps;
    const batchSize = this.deps.batchSize ?? 1000;
    let left = maxRows;
    // A row past maxRows only says that the export is truncated.
    const take = (n: number) => {
      if (n > left) state.truncated = true;
      const k = Math.min(n, left);
      left -= k;
      return k;
    };
    if (!db.copyOut) {
      for await (const batch of search.batches(query, batchSize)) {
        const n = take(batch.length);
        if (n) yield batch.slice(0, n).map((row) => auditCsvLine(row, masker));
        if (state.truncated) return;
      }
      return;
    }
    const statement = await search.exportStatement(query, maxRows + 1);
    if (!statement) return;
    for await (const lines of copyTextLines(db.copyOut(statement.select, statement.settings), batchSize)) {
      const n = take(lines.length);
      const csv = new Array<string>(n);
      for (let i = 0; i < n; i++) csv[i] = copyLineToCsv(lines[i], masker);
      if (n) yield csv;
      if (state.truncated) return;
    }
  }

  async export(actor: Actor, query: AuditQuery, opts: ExportOptions): Promise<ExportResult> {
    requireAdmin(actor, 'export the audit log');
    const { db, chat, search, logger } = this.deps;
    const progressEvery = this.deps.progressEvery ?? 5000;
    const maxRows = this.deps.maxRows ?? MAX_EXPORT_ROWS;
    const masker = opts.unmasked ? new Masker(false) : this.deps.masker;
    const masked = masker.enabled;

    // Validates the filters (unknown user, bad window) before anything is posted.
    const { total, capped } = await search.count(query, progressEvery);

    let channel: string;
    // Unmasked personal data never goes to a shared conversation.
    const where: ExportResult['where'] = opts.unmasked || (opts.to ?? (opts.channel ? 'channel' : 'dm')) === 'dm' ? 'dm' : 'channel';
    const long = capped || total > progressEvery;
    let progress: PostedRef | undefined;
    const started: Message = {
      text: mrkdwn`:hourglass_flowing_sand: Exporting audit entries (${opts.describe})${masked ? '' : ', unmasked'}…`,
    };
    if (where === 'dm') {
      // Slack's upload takes a conversation id, never a user id: the DM is opened first (and
      // progress, when there is any, is posted there too; the channel only gets the answer).
      if (opts.unmasked || long || !chat.openDm) {
        progress = await chat.dm(actor.slack.userId, started);
        channel = progress.channel;
      } else {
        channel = await chat.openDm(actor.slack.userId);
      }
    } else if (!opts.channel) {
      throw new Error('export needs a conversation to upload to');
    } else {
      channel = opts.channel;
      if (long) {
        progress = await chat.post(channel, started).catch((err) => {
          logger.warn({ err }, 'could not post export progress');
          return undefined;
        });
      }
    }

    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
    const filename = `audit-export-${stamp}.csv`;
    const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'warden-export-'));
    const file = path.join(dir, `${crypto.randomBytes(6).toString('hex')}.csv`);
    let rows = 0;
    let truncated = false;
    try {
      const out = await fs.promises.open(file, 'w', 0o600);
      // Lines are encoded one by one into one reused buffer, written out when it is full: no
      // batch-sized string (V8 keeps those past 128 KB in large-object pages until a full GC)
      // and no new memory outside the heap per batch (#15: RSS flat over a 1 M-row export).
      let buffer = Buffer.allocUnsafe(1 << 20);
      let used = 0;
      const flush = async () => {
        for (let at = 0; at < used; ) at += (await out.write(buffer, at, used - at)).bytesWritten;
        used = 0;
      };
      const append = (line: string) => {
        used += buffer.write(line, used);
      };
      // A UTF-16 code unit is at most 3 bytes of UTF-8. A promise only when the buffer is full.
      const write = (line: string): Promise<void> | undefined => {
        if (used + line.length * 3 <= buffer.length) return void append(line);
        return flush().then(() => {
          if (line.length * 3 > buffer.length) buffer = Buffer.allocUnsafe(line.length * 3);
          append(line);
        });
      };
      try {
        await write(csvLine([...CSV_COLUMNS]));
        let nextProgress = progressEvery;
        const state = { truncated: false };
        for await (const lines of this.csvBatches(query, maxRows, masker, state)) {
          // Shutdown: stop here, remove the temp file (finally) and say "interrupted, run again".
          this.deps.signal?.throwIfAborted();
          for (const line of lines) {
            const full = write(line);
            if (full) await full;
          }
          rows += lines.length;
          if (state.truncated) break;
          if (progress && rows >= nextProgress) {
            nextProgress = rows + progressEvery;
            await chat
              .update(progress, { text: mrkdwn`:hourglass_flowing_sand: Exporting audit entries (${opts.describe})… ${rows.toLocaleString('en-US')} rows so far` })
              .catch((err) => logger.warn({ err }, 'could not update export progress'));
          }
        }
        await flush();
        // Known only once the row past the limit was seen (it may start a batch of its own).
        truncated = state.truncated;
      } finally {
        await out.close();
      }

      const summary = `${rows.toLocaleString('en-US')} audit ${rows === 1 ? 'entry' : 'entries'} (${opts.describe})${masked ? ', e-mails and IPs masked' : ', UNMASKED'}${
        truncated ? `, stopped at the ${maxRows.toLocaleString('en-US')}-row limit` : ''
      }`;
      // Audited before the file leaves: a crash during or after the upload cannot deliver an
      // export the audit log does not show. A delivery that fails is noted on the same row.
      const auditId = await db.tx((q) =>
        writeAudit(q, actor, {
          action: 'audit_export',
          entityType: 'audit_log',
          details: { filters: opts.describe, query, rows, masked, truncated, delivered_to: where, delivered_channel: channel },
        }),
      );
      const undelivered = (reason: string) =>
        db
          .query(`UPDATE audit_log SET details = details || $2::jsonb WHERE id = $1`, [auditId, JSON.stringify({ delivery_failed: reason.slice(0, 200) })])
          .catch((err) => logger.warn({ err }, 'could not note an undelivered export on its audit row'));
      try {
        this.deps.signal?.throwIfAborted();
        await chat.upload(channel, { filename, title: filename, path: file, comment: `Audit export: ${summary}` });
      } catch (e) {
        const code = (e as { data?: { error?: string } }).data?.error;
        await undelivered(code ?? String((e as Error).message ?? e));
        if (!code) throw e;
        throw new UserError(
          where === 'dm'
            ? `Slack refused the file (\`${code}\`) in your direct messages with Warden.`
            : `Slack refused the file (\`${code}\`). Invite Warden to this conversation, or leave out \`to:channel\` to get the file by direct message.`,
        );
      }
      if (progress) {
        await chat
          .update(progress, { text: mrkdwn`:white_check_mark: Exported ${summary} as ${md.code(filename)}.` })
          .catch((err) => logger.warn({ err }, 'could not update export progress'));
      }
      return { rows, filename, channel, masked, truncated, where };
    } catch (e) {
      const interrupted = !!this.deps.signal?.aborted;
      if (progress) {
        const text = interrupted
          ? mrkdwn`:double_vertical_bar: The audit export (${opts.describe}) was interrupted after ${rows.toLocaleString('en-US')} rows because Warden is restarting. Nothing was delivered; run the export again.`
          : mrkdwn`:x: The audit export (${opts.describe}) failed after ${rows.toLocaleString('en-US')} rows.`;
        await chat.update(progress, { text }).catch(() => {});
      }
      throw interrupted ? new InterruptedError() : e;
    } finally {
      await fs.promises.rm(dir, { recursive: true, force: true });
    }
  }
}

/** A COPY text row (exportStatement's columns) as an AuditRow. */
export function auditRowOf(f: (string | null)[]): AuditRow {
  const json = (v: string | null) => (v === null ? null : (JSON.parse(v) as Record<string, unknown>));
  return {
    id: Number(f[0]),
    ts_key: f[1]!,
    timestamp: new Date(f[1]!),
    actor: f[2],
    user_id: f[3] === null ? null : Number(f[3]),
    action: f[4]!,
    entity_type: f[5],
    entity_id: f[6] === null ? null : Number(f[6]),
    ip_address: f[7],
    details: json(f[8]),
    before_state: json(f[9]),
    after_state: json(f[10]),
  };
}

/** The audit services of issue 6, for createServices (src/services/index.ts). */
export function createAuditServices(deps: { config: Config; db: Db; chat: Chat; logger: Logger; signal?: AbortSignal }) {
  const auditSearch = new AuditSearch(deps.db);
  return {
    auditSearch,
    auditExport: new AuditExporter({
      db: deps.db,
      chat: deps.chat,
      search: auditSearch,
      masker: new Masker(deps.config.ANONYMIZE_AUDIT_LOGS, deps.config.SLACK_SIGNING_SECRET),
      logger: deps.logger,
      signal: deps.signal,
    }),
    auditRetention: new AuditRetention(deps.db, {
      retentionDays: deps.config.AUDIT_RETENTION_DAYS,
      snapshotDays: deps.config.AUDIT_SNAPSHOT_DAYS,
      signal: deps.signal,
    }),
  };
}
