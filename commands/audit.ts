import { z } from 'zod';
import { parseDuration } from '../src/config.js';
import { usernameSchema } from '../src/domain/user.js';
import { UserError } from '../src/errors.js';
import {
  actionPatternSchema,
  auditQuerySchema,
  cursorSchema,
  diffSnapshots,
  entityTypeSchema,
  ipSchema,
  isoOf,
  MAX_PAGE_SIZE,
  PAGE_SIZE,
  parseTimeBound,
  type AuditPage,
  type AuditQuery,
  type AuditRow,
} from '../src/services/audit-search.js';
import { retentionMessage, retentionSummary } from '../src/slack/cards/audit-retention.js';
import type { Actor } from '../src/services/identity.js';
import type { Services } from '../src/services/index.js';
import type { Masker } from '../src/services/masking.js';
import { md, mrkdwn, type Block, type Button, type Message, type Modal, type Mrkdwn } from '../src/ui.js';
import { parseArgs } from './grammar.js';
import { matchPhrase, parseButtonValue, parseModalMetadata, totpField } from './shared.js';
import type { ActionReply, CommandModule, InteractionContext, Reply, Subcommand } from './types.js';

/**
 * `/audit`: the guide's "Audit Log Review" (issue 6). Search with filters is the default
 * subcommand — `/audit action:login_failed since:24h` — and `history`, `timeline`,
 * `failed-logins`, `deletions`, `export`, `retention` cover the guide's other queries.
 * Pages move with keyset Next/Previous buttons that carry the (absolute) filters.
 */

const FILTERS = '[action:A] [user:U] [entity:TYPE[:ID]] [ip:IP] [since:24h|7d|DATE] [until:DATE] [limit:N]';
const SEARCH_USAGE = `\`/audit ${FILTERS}\` — e.g. \`/audit action:login_failed since:24h\`, \`/audit action:login* user:bob\`. Also: \`history\`, \`timeline\`, \`failed-logins\`, \`deletions\`, \`export\`, \`retention\` (\`/audit help\`)`;
const HISTORY_USAGE = '`/audit history USERNAME` or `/audit history TYPE ID` (e.g. `/audit history bag 12`)';
const TIMELINE_USAGE = '`/audit timeline USERNAME [since:7d] [until:DATE]`';
const FAILED_USAGE = '`/audit failed-logins [window:1h] [min:6]` (window up to 30d; min = at least that many attempts)';
const DELETIONS_USAGE = '`/audit deletions [since:30d] [until:DATE]`';
const EXPORT_USAGE = `\`/audit export ${FILTERS.replace(' [limit:N]', '')} [to:dm|channel] [--unmasked]\` (the file comes to your DM; \`to:channel\` puts a masked file in this conversation)`;
const RETENTION_USAGE = '`/audit retention --dry-run` (what would be removed), then `/audit retention` (asks for your 2FA code)';

const HISTORY_PAGE = 10;

/** Re-throws a UserError from a service with the usage attached. */
async function withUsage<T>(p: Promise<T>, usage: string): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof UserError && !e.usage && e.constructor === UserError) throw new UserError(e.message, e.field, usage);
    throw e;
  }
}

// ---------------------------------------------------------------- filter grammar

const filterSchema = z
  .object({
    action: z.array(z.string()).optional(),
    user: usernameSchema.optional(),
    entity: z.string().max(100).optional(),
    ip: ipSchema.optional(),
    since: z.string().max(40).optional(),
    until: z.string().max(40).optional(),
    limit: z.coerce
      .number({ error: () => `limit must be a number from 1 to ${MAX_PAGE_SIZE}` })
      .int(`limit must be a number from 1 to ${MAX_PAGE_SIZE}`)
      .min(1, `limit must be a number from 1 to ${MAX_PAGE_SIZE}`)
      .max(MAX_PAGE_SIZE, `limit must be a number from 1 to ${MAX_PAGE_SIZE}`)
      .optional(),
    unmasked: z.literal(true).optional(),
    /** Where an export goes: the requester's DM (default) or, when asked, this conversation. */
    to: z.enum(['dm', 'channel']).optional(),
  })
  .strict();

export interface SearchArgs {
  q: AuditQuery;
  /** Entity given by username (`entity:user:bob`), resolved in run(). */
  entityUser?: string;
  limit: number;
  unmasked?: boolean;
  to?: 'dm' | 'channel';
}

/** `since:`/`until:` to absolute ISO bounds; `until` must come after `since`. */
function timeBounds(since: string | undefined, until: string | undefined, usage: string, now: Date): { s?: string; t?: string } {
  const bound = (v: string | undefined, kind: 'since' | 'until') => {
    if (v === undefined) return undefined;
    try {
      return isoOf(parseTimeBound(v, kind, now));
    } catch (e) {
      throw new UserError((e as Error).message, undefined, usage);
    }
  };
  const s = bound(since, 'since');
  const t = bound(until, 'until');
  if (s && t && t <= s) throw new UserError(`\`until:${until}\` is before \`since:${since}\`: nothing can match.`, undefined, usage);
  return { s, t };
}

/** Parses the filter words of a search or an export. Exported for unit tests. */
export function parseFilters(words: string[], opts: { usage: string; allowUnmasked?: boolean; allowLimit?: boolean }, now = new Date()): SearchArgs {
  for (const w of words) {
    if (!w.includes(':') && !/^--[a-z]/.test(w)) {
      throw new UserError(`Unknown subcommand or filter \`${w}\`. Filters look like \`action:login_failed\` or \`since:24h\`.`, undefined, opts.usage);
    }
  }
  // `--unmasked` and `to:` exist for exports only: elsewhere they are not even offered in the list of options.
  const schema = opts.allowUnmasked ? filterSchema : filterSchema.omit({ unmasked: true, to: true });
  const raw: z.infer<typeof filterSchema> = parseArgs(words, { schema, repeatable: ['action'], flags: opts.allowUnmasked ? ['unmasked'] : [], usage: opts.usage });
  if (raw.limit !== undefined && opts.allowLimit === false) throw new UserError('`limit:` does not apply here.', undefined, opts.usage);
  if (raw.unmasked && raw.to === 'channel') {
    throw new UserError('Unmasked exports go to your direct messages only: leave out `to:channel`, or `--unmasked` for a masked file here.', undefined, opts.usage);
  }

  const actions = (raw.action ?? []).flatMap((a) => a.split(',')).filter((a) => a !== '');
  if (actions.length > 10) throw new UserError('At most 10 `action:` values at once.', undefined, opts.usage);
  for (const a of actions) {
    const r = actionPatternSchema.safeParse(a);
    if (!r.success) throw new UserError(`\`action:${a}\`: ${r.error.issues[0].message}.`, undefined, opts.usage);
  }

  const q: AuditQuery = {};
  if (actions.length) q.a = [...new Set(actions)];
  if (raw.user) q.u = raw.user;
  if (raw.ip) q.ip = raw.ip;
  let entityUser: string | undefined;
  if (raw.entity !== undefined) {
    const [type, id, extra] = raw.entity.split(':');
    const t = entityTypeSchema.safeParse(type);
    if (!t.success || extra !== undefined) {
      throw new UserError(`\`entity:${raw.entity}\`: use \`entity:TYPE\` or \`entity:TYPE:ID\`, e.g. \`entity:user:5\`, \`entity:bag\`.`, undefined, opts.usage);
    }
    q.e = t.data;
    if (id !== undefined && id !== '') {
      if (/^\d{1,10}$/.test(id) && Number(id) <= 2_147_483_647) q.ei = Number(id);
      else if (type === 'user' && usernameSchema.safeParse(id).success) entityUser = id;
      else throw new UserError(`\`entity:${raw.entity}\`: the ID must be a number${type === 'user' ? ' or a username' : ''}.`, undefined, opts.usage);
    }
  }
  Object.assign(q, clean(timeBounds(raw.since, raw.until, opts.usage, now)));
  return { q, entityUser, limit: raw.limit ?? PAGE_SIZE, unmasked: raw.unmasked, ...(raw.to ? { to: raw.to } : {}) };
}

function clean<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Resolves `entity:user:bob` to the account id. */
async function finishQuery(services: Services, args: SearchArgs, usage: string): Promise<AuditQuery> {
  if (!args.entityUser) return args.q;
  const id = await withUsage(services.auditSearch.userIdOf(args.entityUser), usage);
  return { ...args.q, ei: id };
}

// ---------------------------------------------------------------- rendering

const when = (d: Date) => d.toISOString().replace('T', ' ').slice(0, 19);
const num = (n: number) => n.toLocaleString('en-US');

/** The filters of a query, one `key:value` each (times absolute, UTC). */
function queryParts(q: AuditQuery, entityLabel?: string): string[] {
  const parts: string[] = [];
  for (const a of q.a ?? []) parts.push(`action:${a}`);
  if (q.u) parts.push(`user:${q.u}`);
  if (q.e) parts.push(`entity:${q.e}${q.ei !== undefined ? `:${entityLabel ?? q.ei}` : ''}`);
  if (q.ip) parts.push(`ip:${q.ip}`);
  if (q.s) parts.push(`since:${q.s.slice(0, 16).replace('T', ' ')}`);
  if (q.t) parts.push(`until:${q.t.slice(0, 16).replace('T', ' ')}`);
  return parts;
}

/** The filters of a query as the admin reads them, each a code span. */
export function describeQuery(q: AuditQuery, entityLabel?: string): Mrkdwn {
  const parts = queryParts(q, entityLabel);
  return parts.length ? md.join(parts.map((p) => md.code(p)), ' ') : md.text('no filter');
}

/** Plain version for the CSV comment and the audit row. */
function describePlain(q: AuditQuery): string {
  const parts = queryParts(q);
  return parts.length ? parts.join(' ') : 'no filter';
}

const NOISY_DETAIL_KEYS = new Set(['via', 'slack_team', 'slack_channel']);

function shortValue(v: unknown, max: number): string {
  const s = v === null || v === undefined ? '—' : typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** The key details of a row, masked, escaped, at most `max` characters. */
export function detailsLine(details: Record<string, unknown> | null, masker: Masker, max = 160): Mrkdwn | null {
  if (!details) return null;
  const pairs = Object.entries(details)
    .filter(([k]) => !NOISY_DETAIL_KEYS.has(k))
    .map(([k, v]) => `${k}=${shortValue(k === 'email' && typeof v === 'string' ? masker.email(v) : v, 60)}`);
  const text = masker.text(pairs.join(' '));
  if (!text) return null;
  return md.text(text.length > max ? `${text.slice(0, max - 1)}…` : text);
}

function who(row: AuditRow): Mrkdwn {
  if (row.actor) return md.bold(row.actor);
  const named = row.details && typeof row.details.actor === 'string' ? row.details.actor : undefined;
  return named ? mrkdwn`${md.bold(named)} _(deleted)_` : row.user_id ? mrkdwn`user #${row.user_id} _(deleted)_` : mrkdwn`_no account_`;
}

function entity(row: AuditRow): Mrkdwn | null {
  if (!row.entity_type) return null;
  return mrkdwn`${row.entity_type}${row.entity_id !== null ? ` ${row.entity_id}` : ''}`;
}

/** One compact row: time · who · action · entity · IP · key details. */
export function compactRow(row: AuditRow, masker: Masker): Mrkdwn {
  const bits = [
    md.code(when(row.timestamp)),
    who(row),
    md.code(row.action),
    entity(row),
    row.ip_address ? md.text(masker.ip(row.ip_address)) : null,
    detailsLine(row.details, masker),
  ].filter((b): b is Mrkdwn => b !== null);
  return mrkdwn`• ${md.join(bits, ' · ')}`;
}

function diffValue(field: string, v: unknown, masker: Masker): Mrkdwn {
  if (v === null || v === undefined || v === '') return md.text('—');
  if (field === 'email' && typeof v === 'string') return md.text(masker.email(v));
  return md.text(masker.text(shortValue(v, 80)));
}

/** A history entry: who did what, and the fields that changed (before → after). */
export function historyEntry(row: AuditRow, masker: Masker, snapshotDays = 30, now = new Date()): Mrkdwn {
  const head = mrkdwn`• ${md.code(when(row.timestamp))} ${md.code(row.action)} by ${who(row)}${row.ip_address ? mrkdwn` from ${masker.ip(row.ip_address)}` : ''}`;
  const lines: Mrkdwn[] = [head];
  if (row.before_state || row.after_state) {
    const changes = diffSnapshots(row.before_state, row.after_state);
    const shown = changes.slice(0, 12).map((c) => mrkdwn`${c.field}: ${diffValue(c.field, c.before, masker)} → ${diffValue(c.field, c.after, masker)}`);
    if (changes.length > 12) shown.push(mrkdwn`… ${changes.length - 12} more fields`);
    lines.push(mrkdwn`    ${shown.length ? md.join(shown, ' · ') : mrkdwn`_no field changed_`}`);
  } else if (
    row.before_state === null &&
    row.after_state === null &&
    (row.action === 'role_change' || row.action === 'user_updated') &&
    // Only rows old enough for retention to have cleared them; newer ones never had snapshots.
    now.getTime() - row.timestamp.getTime() > snapshotDays * 86_400_000
  ) {
    lines.push(mrkdwn`    _snapshots cleared by retention_`);
  }
  const d = detailsLine(row.details, masker, 200);
  if (d) lines.push(mrkdwn`    ${d}`);
  return md.join(lines, '\n');
}

/** A deletion: who deleted what, with what the deleted thing was. */
export function deletionEntry(row: AuditRow, masker: Masker): Mrkdwn {
  const before = row.before_state ?? {};
  const keys = ['username', 'name', 'email', 'role', 'dispatch_area'];
  const summary = keys.filter((k) => before[k] !== undefined && before[k] !== null).map((k) => mrkdwn`${k}=${diffValue(k, before[k], masker)}`);
  return mrkdwn`• ${md.code(when(row.timestamp))} ${who(row)} deleted ${entity(row) ?? 'something'}${summary.length ? mrkdwn` (${md.join(summary, ' ')})` : ''} · ${md.code(row.action)}${
    row.ip_address ? mrkdwn` · ${masker.ip(row.ip_address)}` : ''
  }`;
}

const pageValueSchema = z
  .object({
    m: z.enum(['s', 'h', 't', 'd']),
    q: auditQuerySchema,
    l: z.number().int().min(1).max(MAX_PAGE_SIZE).optional(),
    /** Label of the entity (a username) for the heading. */
    n: z.string().max(64).optional(),
    a: cursorSchema.optional(),
    b: cursorSchema.optional(),
    /** The first page's count line (total, capped, estimate), so paging never counts again. */
    c: z
      .object({ n: z.number().int().min(0), x: z.boolean().optional(), e: z.number().int().min(0).optional() })
      .strict()
      .optional(),
  })
  .strict();
type PageValue = z.infer<typeof pageValueSchema>;

/** Renders one page of any of the row-listing subcommands. */
export async function renderPage(services: Services, v: PageValue): Promise<Message> {
  const search = services.auditSearch;
  let q = v.q;
  if (v.m === 'd') q = { ...q, a: await search.deletionActions() };
  const limit = v.l ?? (v.m === 'h' ? HISTORY_PAGE : PAGE_SIZE);
  const page: AuditPage =
    v.m === 'd' && !q.a?.length
      ? { rows: [], total: 0, totalCapped: false, hasNext: false, hasPrev: false }
      : await search.search(q, { after: v.a, before: v.b }, limit, v.c && (v.a || v.b) ? { total: v.c.n, capped: !!v.c.x, ...(v.c.e ? { estimate: v.c.e } : {}) } : undefined);
  const masker = services.masker;
  const described = v.m === 'd' ? describeQuery({ s: q.s, t: q.t }) : describeQuery(q, v.n);
  const heading: Mrkdwn =
    v.m === 'h'
      ? mrkdwn`History of ${v.n ? `${v.n} (${q.e} ${q.ei})` : `${q.e} ${q.ei}`}`
      : v.m === 't'
        ? mrkdwn`Timeline of ${q.u ?? ''}`
        : v.m === 'd'
          ? mrkdwn`Deletions`
          : mrkdwn`Audit entries`;
  const totalText =
    page.totalCapped && page.estimate
      ? `about ${num(page.estimate)} entries (the database's estimate)`
      : `${page.totalCapped ? 'more than ' : ''}${num(page.total)} ${page.total === 1 ? 'entry' : 'entries'}`;
  if (page.total === 0 && !page.rows.length) {
    let hint = mrkdwn``;
    if (v.m === 's' && q.a?.length) {
      const known = await search.distinctActions();
      const unknown = q.a.filter((a) => (a.endsWith('*') ? !known.some((k) => k.startsWith(a.slice(0, -1))) : !known.includes(a)));
      if (unknown.length) {
        const inLog = known.slice(0, 40).map((k) => md.code(k));
        hint = mrkdwn` No entry has ${md.join(unknown.map((a) => md.code(`action:${a}`)), ', ')} at all. Actions in the log: ${inLog.length ? md.join(inLog, ', ') : 'none'}.`;
      }
    }
    const text = mrkdwn`${heading}: nothing matches ${described}.${hint}`;
    return { text: md.unstyled(text), blocks: [{ type: 'text', text }] };
  }
  const snapshotDays = services.config.AUDIT_SNAPSHOT_DAYS;
  const render = v.m === 'h' ? (r: AuditRow, m: Masker) => historyEntry(r, m, snapshotDays) : v.m === 'd' ? deletionEntry : compactRow;
  const lines = page.rows.map((r) => render(r, masker));
  const blocks: Block[] = [
    { type: 'text', text: mrkdwn`${md.bold(heading)} · ${matchPhrase(totalText, page.totalCapped ? 2 : page.total, described)} · newest first` },
    { type: 'text', text: md.join(lines, '\n') },
  ];
  const buttons: Button[] = [];
  const count = { n: page.total, ...(page.totalCapped ? { x: true } : {}), ...(page.estimate ? { e: page.estimate } : {}) };
  const base: PageValue = { m: v.m, q: v.m === 'd' ? clean({ s: q.s, t: q.t }) : q, ...(v.l ? { l: v.l } : {}), ...(v.n ? { n: v.n } : {}), c: count };
  if (page.hasPrev && page.first) buttons.push({ text: '◀ Previous (newer)', actionId: 'audit:page:prev', value: JSON.stringify({ ...base, b: page.first }) });
  if (page.hasNext && page.last) buttons.push({ text: 'Next (older) ▶', actionId: 'audit:page', value: JSON.stringify({ ...base, a: page.last }) });
  if (v.m !== 'd') buttons.push({ text: 'Export CSV', actionId: 'audit:export', value: JSON.stringify({ q }) });
  blocks.push({ type: 'buttons', buttons });
  if (v.m === 's') blocks.push({ type: 'context', text: mrkdwn`Change of a user: \`/audit history USERNAME\` · failed logins: \`/audit failed-logins\`` });
  return { text: mrkdwn`${heading}: ${matchPhrase(totalText, page.totalCapped ? 2 : page.total, describePlain(q))}`, blocks };
}

// ---------------------------------------------------------------- subcommands

const search: Subcommand<SearchArgs> = {
  name: 'search',
  readOnly: true,
  usage: FILTERS,
  summary: 'audit entries newest first; filters combine, several `action:` mean any, `action:login*` is a prefix, `user:` = done by or naming the user',
  role: 'admin',
  parse: (words) => parseFilters(words, { usage: SEARCH_USAGE }),
  run: async (ctx, args) => {
    const q = await finishQuery(ctx.services, args, SEARCH_USAGE);
    const message = await withUsage(
      renderPage(ctx.services, { m: 's', q, ...(args.limit !== PAGE_SIZE ? { l: args.limit } : {}), ...(args.entityUser ? { n: args.entityUser } : {}) }),
      SEARCH_USAGE,
    );
    return { kind: 'message', message };
  },
};

const historySchema = z.object({ a: z.string(), b: z.string().optional() }).strict();

const history: Subcommand<{ type: string; id?: number; username?: string }> = {
  name: 'history',
  readOnly: true,
  usage: 'history USERNAME | history TYPE ID',
  summary: 'changes to an account (or any entity) with before → after of the fields that changed',
  role: 'admin',
  parse: (words) => {
    const { a, b } = parseArgs(words, { positional: ['a', 'b'], schema: historySchema, usage: HISTORY_USAGE });
    if (b === undefined) {
      const u = usernameSchema.safeParse(a);
      if (!u.success) throw new UserError(u.error.issues[0].message, undefined, HISTORY_USAGE);
      return { type: 'user', username: a };
    }
    const t = entityTypeSchema.safeParse(a);
    if (!t.success) throw new UserError(t.error.issues[0].message, undefined, HISTORY_USAGE);
    if (/^\d{1,10}$/.test(b) && Number(b) <= 2_147_483_647) return { type: a, id: Number(b) };
    if (a === 'user' && usernameSchema.safeParse(b).success) return { type: 'user', username: b };
    throw new UserError(`The ID must be a number, e.g. \`/audit history ${a} 12\`.`, undefined, HISTORY_USAGE);
  },
  run: async (ctx, args) => {
    const id = args.id ?? (await withUsage(ctx.services.auditSearch.userIdOf(args.username!), HISTORY_USAGE));
    return { kind: 'message', message: await renderPage(ctx.services, { m: 'h', q: { e: args.type, ei: id }, ...(args.username ? { n: args.username } : {}) }) };
  },
};

const timelineSchema = z.object({ username: usernameSchema, since: z.string().max(40).optional(), until: z.string().max(40).optional() }).strict();

const timeline: Subcommand<{ username: string; s?: string; t?: string }> = {
  name: 'timeline',
  readOnly: true,
  usage: 'timeline USERNAME [since:7d] [until:DATE]',
  summary: 'everything an account did, newest first (the guide’s activity timeline)',
  role: 'admin',
  parse: (words) => {
    const r = parseArgs(words, { positional: ['username'], schema: timelineSchema, usage: TIMELINE_USAGE });
    return { username: r.username, ...clean(timeBounds(r.since, r.until, TIMELINE_USAGE, new Date())) };
  },
  run: async (ctx, args) => {
    const q: AuditQuery = clean({ u: args.username, um: 'actor' as const, s: args.s, t: args.t });
    return { kind: 'message', message: await withUsage(renderPage(ctx.services, { m: 't', q }), TIMELINE_USAGE) };
  },
};

const failedSchema = z
  .object({
    window: z.string().max(10).optional(),
    min: z.coerce
      .number({ error: () => 'min must be a whole number from 1 to 10000' })
      .int('min must be a whole number from 1 to 10000')
      .min(1, 'min must be a whole number from 1 to 10000')
      .max(10000, 'min must be a whole number from 1 to 10000')
      .optional(),
  })
  .strict();

const MAX_WINDOW = 30 * 86400;

const failedLogins: Subcommand<{ window: string; seconds: number; min?: number }> = {
  name: 'failed-logins',
  readOnly: true,
  usage: 'failed-logins [window:1h] [min:N]',
  summary: 'failed logins grouped by IP and username over a window; default: more than the burst threshold (guide: >5 in 1h)',
  role: 'admin',
  parse: (words) => {
    const r = parseArgs(words, { schema: failedSchema, usage: FAILED_USAGE });
    const window = r.window ?? '1h';
    const seconds = parseDuration(window);
    if (seconds === undefined || seconds < 60 || seconds > MAX_WINDOW) {
      throw new UserError(`\`window:${window}\` must be a duration from 1m to 30d, e.g. \`window:1h\` or \`window:24h\`.`, undefined, FAILED_USAGE);
    }
    return { window, seconds, min: r.min };
  },
  run: async (ctx, args) => {
    const min = args.min ?? ctx.services.config.FAILED_LOGIN_BURST_THRESHOLD + 1;
    const { groups, totalGroups } = await ctx.services.auditSearch.failedLogins(args.seconds, min);
    const masker = ctx.services.masker;
    const heading = mrkdwn`${md.bold(`Failed logins in the last ${args.window}`)} grouped by IP and username, at least ${min} attempts`;
    if (!groups.length) {
      const text = mrkdwn`${heading}: none.`;
      return { kind: 'message', message: { text: md.unstyled(text), blocks: [{ type: 'text', text }] } };
    }
    const lines = groups.map(
      (g) =>
        mrkdwn`• ${md.bold(g.attempts)} ${g.attempts === 1 ? 'attempt' : 'attempts'} · ${g.ip_address ? md.text(masker.ipTagged(g.ip_address)) : mrkdwn`_no IP_`} · ${
          g.username ? mrkdwn`user ${md.bold(masker.text(g.username))}` : mrkdwn`_no username_`
        } · first ${md.code(when(g.first_attempt))} · last ${md.code(when(g.last_attempt))}`,
    );
    const blocks: Block[] = [
      { type: 'text', text: mrkdwn`${heading}: ${num(totalGroups)} ${totalGroups === 1 ? 'group' : 'groups'}` },
      { type: 'text', text: md.join(lines, '\n') },
    ];
    if (totalGroups > groups.length) blocks.push({ type: 'context', text: mrkdwn`Showing the ${groups.length} biggest groups.` });
    blocks.push({ type: 'context', text: mrkdwn`Attempts for one account: ${md.code(`/audit action:login_failed user:USERNAME since:${args.window}`)}` });
    return { kind: 'message', message: { text: mrkdwn`Failed logins in the last ${args.window}: ${totalGroups} groups`, blocks } };
  },
};

const deletionsSchema = z.object({ since: z.string().max(40).optional(), until: z.string().max(40).optional() }).strict();

const deletions: Subcommand<{ s?: string; t?: string }> = {
  name: 'deletions',
  readOnly: true,
  usage: 'deletions [since:30d] [until:DATE]',
  summary: 'who deleted what and when (`delete_*`, `*_deleted`; `user_deleted` and `delete_user` alike)',
  role: 'admin',
  parse: (words) => {
    const r = parseArgs(words, { schema: deletionsSchema, usage: DELETIONS_USAGE });
    return clean(timeBounds(r.since ?? '30d', r.until, DELETIONS_USAGE, new Date()));
  },
  run: async (ctx, args) => ({ kind: 'message', message: await renderPage(ctx.services, { m: 'd', q: clean({ s: args.s, t: args.t }) }) }),
};

/**
 * Runs a masked export: the file goes to the requester's DM, and the conversation it was asked
 * in gets only this answer; `to:channel` uploads it into the conversation instead.
 */
async function maskedExport(services: Services, actor: Actor, q: AuditQuery, channel: string | undefined, to: 'dm' | 'channel' = 'dm'): Promise<Message> {
  if (to === 'channel' && !channel) throw new UserError('Run the export from a conversation: `to:channel` uploads the file there.');
  const r = await services.auditExport.export(actor, q, { channel, to, unmasked: false, describe: describePlain(q) });
  const entries = `${num(r.rows)} audit ${r.rows === 1 ? 'entry' : 'entries'}`;
  const tail = `${r.masked ? ' (e-mails and IPs masked)' : ' (not masked: ANONYMIZE_AUDIT_LOGS is off)'}${
    r.truncated ? ' — stopped at the row limit; narrow the filters for the rest' : ''
  }.`;
  return {
    text:
      r.where === 'dm'
        ? mrkdwn`:page_facing_up: Sent to you by direct message: ${entries} in ${md.code(r.filename)}${tail}`
        : mrkdwn`:page_facing_up: Exported ${entries} to ${md.code(r.filename)}${tail}`,
  };
}

const exportSub: Subcommand<SearchArgs> = {
  name: 'export',
  usage: 'export [filters] [to:dm|channel] [--unmasked]',
  summary:
    'the matching entries as a CSV file, masked, sent to your direct messages (`to:channel` uploads it into this conversation instead); `--unmasked` asks for your 2FA code and sends it to your DM only',
  role: 'admin',
  parse: (words) => parseFilters(words, { usage: EXPORT_USAGE, allowUnmasked: true, allowLimit: false }),
  run: async (ctx, args): Promise<Reply> => {
    const q = await finishQuery(ctx.services, args, EXPORT_USAGE);
    // Checks the filters (unknown user…) before anything else happens.
    const { total } = await withUsage(ctx.services.auditSearch.count(q, 1), EXPORT_USAGE);
    if (total === 0) return { kind: 'message', message: { text: mrkdwn`No audit entries match ${describeQuery(q)}: nothing to export.` } };
    if (args.unmasked && ctx.services.masker.enabled) {
      const modal: Modal = {
        callbackId: 'audit:export-unmasked',
        title: 'Unmasked export',
        submit: 'Export',
        metadata: JSON.stringify({ q }),
        intro: mrkdwn`Export the audit entries matching ${describeQuery(q)} *with e-mails and IP addresses in clear*.\nThe file goes to your direct messages with Warden only, and the export is audited.`,
        fields: [totpField],
      };
      return { kind: 'modal', modal };
    }
    return { kind: 'message', message: await maskedExport(ctx.services, ctx.actor, q, ctx.actor.slack.channelId, args.to) };
  },
};

const retentionSchema = z.object({ 'dry-run': z.literal(true).optional() }).strict();

const retention: Subcommand<{ dryRun: boolean }> = {
  name: 'retention',
  usage: 'retention [--dry-run]',
  summary: `the guide's retention policy: entries older than the retention period deleted (critical actions kept), old snapshots cleared; dry run first`,
  role: 'admin',
  parse: (words) => ({ dryRun: !!parseArgs(words, { schema: retentionSchema, usage: RETENTION_USAGE })['dry-run'] }),
  run: async (ctx, { dryRun }): Promise<Reply> => {
    const report = await ctx.services.auditRetention.dryRun();
    if (dryRun) return { kind: 'message', message: retentionMessage(report) };
    return {
      kind: 'modal',
      modal: {
        callbackId: 'audit:retention',
        title: 'Apply audit retention',
        submit: 'Apply',
        intro: mrkdwn`${retentionSummary(report)}\n\nThis deletes audit entries for good. Enter your 2FA code to apply it now.`,
        fields: [totpField],
      },
    };
  },
};

// ---------------------------------------------------------------- interactions

const exportValueSchema = z.object({ q: auditQuerySchema }).strict();

function notifyFailure(services: Services, actor: Actor, what: string) {
  return (err: unknown) => {
    const text = err instanceof UserError ? mrkdwn`:warning: ${what} failed: ${err.mrkdwn ?? md.lines(err.message)}` : mrkdwn`:x: ${what} failed. The error has been logged.`;
    if (!(err instanceof UserError)) services.logger.error({ err }, `${what} failed`);
    void services.chat.dm(actor.slack.userId, { text }).catch((e) => services.logger.error({ err: e }, 'could not DM a failure'));
  };
}

async function pageAction(ctx: InteractionContext, value: string): Promise<ActionReply> {
  const v = parseButtonValue(pageValueSchema, value, '/audit');
  if (v.a && v.b) throw new UserError('That paging button is not valid any more. Run `/audit` again.');
  return { kind: 'update', message: await renderPage(ctx.services, v) };
}

export const auditCommand: CommandModule = {
  command: '/audit',
  summary: 'search, history, investigations, CSV export and retention of the audit log',
  defaultSubcommand: 'search',
  fallbackSubcommand: 'search',
  subcommands: [search, history, timeline, failedLogins, deletions, exportSub, retention],
  actions: {
    // Next and Previous sit in one actions block, where Slack wants distinct action ids.
    'audit:page': pageAction,
    'audit:page:prev': pageAction,
    'audit:export': async (ctx, value): Promise<ActionReply> => {
      const { q } = parseButtonValue(exportValueSchema, value, '/audit export');
      return { kind: 'message', message: await maskedExport(ctx.services, ctx.actor, q, ctx.source?.channelId) };
    },
  },
  views: {
    'audit:export-unmasked': async (ctx, values, metadata) => {
      const { q } = parseModalMetadata(exportValueSchema, metadata);
      await ctx.services.stepUp.verify(ctx.actor, typeof values.totp === 'string' ? values.totp : undefined, 'audit_export_unmasked');
      // Slack wants the modal answered within 3 seconds: the export runs after, its file and
      // any failure arrive by DM.
      void ctx.services.lifecycle.track(ctx.services.auditExport
        .export(ctx.actor, q, { unmasked: true, describe: describePlain(q) })
        .catch(notifyFailure(ctx.services, ctx.actor, 'The unmasked audit export')));
      return { kind: 'close', notice: { text: mrkdwn`:lock: Verified. The unmasked export is being prepared; the file will arrive in your direct messages with Warden.` } };
    },
    'audit:retention': async (ctx, values) => {
      await ctx.services.stepUp.verify(ctx.actor, typeof values.totp === 'string' ? values.totp : undefined, 'audit_retention');
      const { services, actor } = ctx;
      const channel = ctx.source?.channelId;
      const alerts = services.config.ALERTS_CHANNEL;
      void services.lifecycle.track(services.auditRetention
        .run(actor, {
          // ALERTS_CHANNEL gets it through the outbox, queued with the run's audit row.
          report: alerts ? async (q, r) => void (await services.outbox.post(q, alerts, retentionMessage(r, actor.user.username))) : undefined,
        })
        .then(async (report) => {
          if (channel && channel === alerts) return;
          // The conversation it was run from; a DM when Warden cannot post there.
          const message = retentionMessage(report, actor.user.username);
          const posted = channel
            ? await services.chat.post(channel, message).then(
                () => true,
                (err) => (services.logger.warn({ err }, 'could not post the retention report'), false),
              )
            : false;
          if (!posted) await services.chat.dm(actor.slack.userId, message);
        })
        .catch(notifyFailure(services, actor, 'Audit retention')));
      return { kind: 'close', notice: { text: mrkdwn`:broom: Verified. Applying the retention policy now; the report with the counts follows here.` } };
    },
  },
};
