import { z } from 'zod';
import { matchPhrase } from './shared.js';
import { roleSchema, usernameSchema, isLocked, type UserRow } from '../src/domain/user.js';
import { accountStatus } from '../src/services/user-admin.js';
import { UserError } from '../src/errors.js';
import type { Services } from '../src/services/index.js';
import type { UserFilter } from '../src/services/users.js';
import { md, mrkdwn, type Block, type Button, type Message, type Mrkdwn } from '../src/ui.js';
import { parseArgs } from './grammar.js';
import { adminActions, adminSubcommands, adminViews } from './users-admin.js';
import { renderUserCard } from './users-card.js';
import type { ActionHandler, CommandModule, Subcommand } from './types.js';

/** `/users`: the guide's "User Management" section. */

const listSchema = z
  .object({
    role: roleSchema.optional(),
    status: z.enum(['active', 'locked'], { error: () => 'status must be active or locked' }).optional(),
    area: z.string().max(64).optional(),
    q: z.string().max(64).optional(),
  })
  .strict();

const LIST_USAGE = '`/users list [role:admin|biller|dispatcher] [status:active|locked] [area:AREA] [q:TEXT]`';

const list: Subcommand<z.infer<typeof listSchema>> = {
  name: 'list',
  readOnly: true,
  usage: 'list [role:R] [status:active|locked] [area:A] [q:TEXT]',
  summary: 'accounts, 20 a page, filtered by role, lock state, dispatch area or text',
  role: 'admin',
  parse: (words) => parseArgs(words, { schema: listSchema, usage: LIST_USAGE }),
  run: async (ctx, filter) => ({ kind: 'message', message: await renderUserPage(ctx.services, filter, {}) }),
};

const SHOW_USAGE = '`/users show USERNAME`';
const showSchema = z.object({ username: usernameSchema }).strict();

const show: Subcommand<z.infer<typeof showSchema>> = {
  name: 'show',
  readOnly: true,
  usage: 'show USERNAME',
  summary: 'one account: role, area, lock state, failed attempts, 2FA, created, last login',
  role: 'admin',
  parse: (words) => parseArgs(words, { positional: ['username'], schema: showSchema, usage: SHOW_USAGE }),
  run: async (ctx, { username }) => {
    const user = await ctx.services.users.getByUsername(username);
    return { kind: 'message', message: await renderUserCard(ctx.services, user) };
  },
};

/** Paging state carried in the Next/Previous buttons. Re-validated on every click. */
const pageValueSchema = z.object({
  f: listSchema,
  a: usernameSchema.optional(),
  b: usernameSchema.optional(),
});

export async function renderUserPage(
  services: Services,
  filter: UserFilter,
  cursor: { after?: string; before?: string },
): Promise<Message> {
  const page = await services.users.list(filter, cursor);
  const described = describeFilter(filter);
  if (page.total === 0) {
    return { text: mrkdwn`No users match ${described}.` };
  }
  const lines = page.users.map((u) => userLine(services, u));
  const blocks: Block[] = [
    { type: 'text', text: matchPhrase(md.bold(`${page.total} user${page.total === 1 ? '' : 's'}`), page.total, described) },
    { type: 'text', text: md.join(lines, '\n') },
  ];
  const buttons: Button[] = [];
  if (page.hasPrev && page.first) {
    buttons.push({ text: '◀ Previous', actionId: 'users:page:prev', value: JSON.stringify({ f: filter, b: page.first }) });
  }
  if (page.hasNext && page.last) {
    buttons.push({ text: 'Next ▶', actionId: 'users:page', value: JSON.stringify({ f: filter, a: page.last }) });
  }
  if (buttons.length) blocks.push({ type: 'buttons', buttons });
  blocks.push({ type: 'context', text: mrkdwn`Details: \`/users show USERNAME\`` });
  return { text: matchPhrase(`${page.total} user${page.total === 1 ? '' : 's'}`, page.total, described), blocks };
}

function describeFilter(f: UserFilter): Mrkdwn {
  const parts = Object.entries(f)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => md.code(`${k}:${v}`));
  return parts.length ? md.join(parts, ' ') : md.text('no filter');
}

function userLine(services: Services, u: UserRow): Mrkdwn {
  const bits = [
    md.bold(u.username),
    u.role,
    u.dispatch_area ?? null,
    services.masker.email(u.email),
    isLocked(u) ? (accountStatus(u) === 'disabled' ? ':no_entry: disabled' : ':lock: locked') : null,
    u.two_fa_enabled ? '2FA' : u.role === 'admin' ? ':warning: no 2FA' : null,
    u.last_login ? mrkdwn`last login ${md.date(u.last_login)}` : 'last login never',
  ].filter((b): b is Mrkdwn | string => b !== null);
  return mrkdwn`• ${md.join(bits, ' · ')}`;
}

export { renderUserCard, userActionButtons } from './users-card.js';

const pageAction: ActionHandler = async (ctx, value) => {
  let parsed: z.infer<typeof pageValueSchema>;
  try {
    parsed = pageValueSchema.parse(JSON.parse(value));
  } catch {
    throw new UserError('That paging button is not valid any more. Run `/users list` again.');
  }
  return { kind: 'update', message: await renderUserPage(ctx.services, parsed.f, { after: parsed.a, before: parsed.b }) };
};

export const usersCommand: CommandModule = {
  command: '/users',
  summary: 'manage application accounts',
  subcommands: [list, show, ...adminSubcommands],
  views: adminViews,
  actions: {
    ...adminActions,
    // Next and Previous sit in one actions block, where Slack wants distinct action ids.
    'users:page': pageAction,
    'users:page:prev': pageAction,
  },
};
