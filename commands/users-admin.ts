import { z } from 'zod';
import { ROLES, roleSchema, usernameSchema, type UserRow } from '../src/domain/user.js';
import { UserError, ValidationErrors } from '../src/errors.js';
import type { Actor } from '../src/services/identity.js';
import type { Services } from '../src/services/index.js';
import {
  ACCOUNT_STATUSES,
  accountStatus,
  UserAdminService,
  type AccountStatus,
  type CreateResult,
  type NewUserInput,
  type UpdateResult,
} from '../src/services/user-admin.js';
import type { FailedAttempt } from '../src/services/users.js';
import type { SendOutcome } from '../src/services/pending-sends.js';
import { md, mrkdwn, type Message, type Modal, type ModalField, type ModalValues, type Mrkdwn } from '../src/ui.js';
import { parseArgs } from './grammar.js';
import { parseButtonValue, parseModalMetadata, progressModal, totpField } from './shared.js';
import type { ActionHandler, ActionReply, CommandContext, InteractionContext, Reply, Subcommand, ViewHandler, ViewReply } from './types.js';
import { renderUserCard, statusText } from './users-card.js';

/**
 * The mutating `/users` subcommands (issue 3): create, edit, role, unlock, reset-password,
 * delete, link, and the buttons and modals behind them. Every handler calls
 * services.userAdmin, which checks the actor, the rules and step-up again: a button or a
 * modal only names the account, never carries a decision.
 *
 * Step-up UX: an operation that needs the acting admin's 2FA code opens a modal that
 * says what will happen and has the `totp` field; its metadata names only the account.
 */

const CREATE_USAGE = '`/users create` (a form) or `/users create USERNAME EMAIL ROLE [area:AREA] [password:link|temp]`';
const EDIT_USAGE = '`/users edit USERNAME`';
const ROLE_USAGE = '`/users role USERNAME admin|biller|dispatcher [area:AREA]`';
const UNLOCK_USAGE = '`/users unlock USERNAME`';
const RESET_USAGE = '`/users reset-password USERNAME [link|temp]`';
const DELETE_USAGE = '`/users delete USERNAME`';
const LINK_USAGE = '`/users link USERNAME @slack-user`';

const loose = z.string().max(300, 'is too long');

// ------------------------------------------------------------------ small helpers

const str = (v: ModalValues[string]): string | undefined => (typeof v === 'string' ? v : undefined);

function targetLine(services: Services, u: UserRow): Mrkdwn {
  return mrkdwn`${md.bold(u.username)} (${u.role}${u.dispatch_area ? `, ${u.dispatch_area}` : ''}, ${services.masker.email(u.email)})`;
}

function optionalTotp(hint: string): ModalField {
  return { ...totpField, optional: true, hint };
}

const roleOptions = ROLES.map((r) => ({ value: r, label: r }));
const statusOptions = [
  { value: 'active', label: 'Active' },
  { value: 'locked', label: 'Locked (30 minutes, like the automatic lockout)' },
  { value: 'disabled', label: 'Disabled (locked until re-enabled)' },
];

/** A modal with no fields: shows a one-time secret to the admin who asked, nowhere else. */
function secretModal(title: string, intro: Mrkdwn): Modal {
  return { callbackId: 'users:shown', title, intro, fields: [] };
}

function tempPasswordModal(username: string, password: string, extra: Mrkdwn | '' = ''): Modal {
  return secretModal(
    'Temporary password',
    mrkdwn`Temporary password for ${md.bold(username)} — shown once, only to you:\n\n\`\`\`${password}\`\`\`\n\nGive it to them over a trusted channel (not a Slack channel). They should change it right after signing in; an in-app notification reminds them.${extra}\n\nClose this window when you have passed it on: Warden does not keep it.`,
  );
}

const twoFaWarning = (username: string) =>
  mrkdwn`:warning: ${md.bold(username)} has no two-factor authentication. The guide requires it for admins: a reminder was recorded for them (in-app notification).`;

// ------------------------------------------------------------------ create

const createSchema = z
  .object({
    username: loose.optional(),
    email: loose.optional(),
    role: loose.optional(),
    area: loose.optional(),
    password: z.enum(['link', 'temp'], { error: () => 'password must be link or temp' }).optional(),
  })
  .strict();

function createModal(input: Partial<NewUserInput>, intro?: Mrkdwn): Modal {
  return {
    callbackId: 'users:create',
    title: 'Create user',
    submit: 'Create',
    intro: intro ?? mrkdwn`No admin types a password: the new user gets a set-password link by e-mail, or you get a one-time temporary password.`,
    fields: [
      { id: 'username', label: 'Username', kind: 'text', hint: 'Unique, 3–64 characters, no spaces.', initial: input.username, maxLength: 64 },
      { id: 'email', label: 'E-mail', kind: 'text', hint: 'Unique (compared regardless of case).', initial: input.email, maxLength: 255 },
      { id: 'role', label: 'Role', kind: 'select', options: roleOptions, initial: input.role },
      {
        id: 'area',
        label: 'Dispatch area',
        kind: 'text',
        optional: true,
        hint: 'Required for dispatchers, and only for them.',
        initial: input.area ?? undefined,
        maxLength: 64,
      },
      {
        id: 'password',
        label: 'Password',
        kind: 'radio',
        options: [
          { value: 'link', label: 'E-mail a set-password link (valid 1 hour)' },
          { value: 'temp', label: 'Show me a one-time temporary password' },
        ],
        initial: input.password ?? 'link',
      },
      optionalTotp('Needed for an admin account or a temporary password: the current code of your own account.'),
    ],
  };
}

function createdMessage(services: Services, r: CreateResult, mail?: SendOutcome): Message {
  const lines = [mrkdwn`:white_check_mark: Created ${targetLine(services, r.user)}.`];
  const to = r.mailedTo ? services.masker.email(r.mailedTo) : '';
  if (r.mailedTo && mail?.ok) lines.push(mrkdwn`A set-password link was e-mailed to ${to} (valid 1 hour).`);
  if (r.mailedTo && mail && !mail.ok) lines.push(mrkdwn`:warning: The set-password link to ${to} could not be sent: ${mail.reason} ${mail.next}`);
  if (r.twoFaReminder) lines.push(twoFaWarning(r.user.username));
  return { text: md.join(lines, '\n') };
}

const create: Subcommand<z.infer<typeof createSchema>> = {
  name: 'create',
  usage: 'create [USERNAME EMAIL ROLE [area:A] [password:link|temp]]',
  summary: 'a new account (a form without arguments); the user gets a set-password link, or you a one-time temporary password',
  role: 'admin',
  parse: (words) => parseArgs(words, { positional: ['username', 'email', 'role'], schema: createSchema, usage: CREATE_USAGE }),
  run: async (ctx, a) => {
    if (!a.username && !a.area && !a.password) return { kind: 'modal', modal: createModal({}) };
    if (!a.username || !a.email || !a.role) {
      throw new UserError(`Missing ${!a.email ? 'EMAIL' : 'ROLE'}.`, undefined, CREATE_USAGE);
    }
    const input: NewUserInput = { username: a.username, email: a.email, role: a.role, area: a.area ?? null, password: a.password ?? 'link' };
    // Every rule is checked now, so a mistake is answered here rather than in a form.
    await ctx.services.userAdmin.checkCreate(ctx.actor, input);
    if (UserAdminService.createNeedsStepUp(input)) {
      const why = input.role === 'admin' ? 'an admin account' : 'a temporary password';
      return {
        kind: 'modal',
        modal: createModal(input, mrkdwn`Creating ${md.bold(input.username)} as ${input.role} with ${why} needs your 2FA code. Check the details and confirm.`),
      };
    }
    // A slash command is acked before this runs; the link is mailed after the account's commit.
    const r = await ctx.services.userAdmin.create(ctx.actor, input);
    return { kind: 'message', message: createdMessage(ctx.services, r, await r.send?.()) };
  },
};

const submitCreate: ViewHandler = async (ctx, values) => {
  const password = str(values.password) ?? 'link';
  if (password !== 'link' && password !== 'temp') throw new ValidationErrors({ password: 'Choose a link or a temporary password.' });
  const input: NewUserInput = {
    username: str(values.username) ?? '',
    email: str(values.email) ?? '',
    role: str(values.role) ?? '',
    area: str(values.area) ?? null,
    password,
  };
  const r = await ctx.services.userAdmin.create(ctx.actor, input, str(values.totp));
  if (r.tempPassword) {
    return {
      kind: 'update',
      modal: tempPasswordModal(r.user.username, r.tempPassword, r.twoFaReminder ? mrkdwn`\n\n${twoFaWarning(r.user.username)}` : ''),
    };
  }
  const send = r.send;
  if (!send) return { kind: 'close', notice: createdMessage(ctx.services, r) };
  // Ack first (issue 12): the account exists now; the link is mailed after the form was answered.
  return {
    kind: 'progress',
    modal: progressModal(
      'Create user',
      mrkdwn`:hourglass_flowing_sand: Created ${targetLine(ctx.services, r.user)}. Sending the set-password link to ${ctx.services.masker.email(r.mailedTo ?? '')}…`,
    ),
    finish: async () => {
      const notice = createdMessage(ctx.services, r, await send());
      return { modal: progressModal('Create user', notice.text, 'done'), notice };
    },
  };
};

// ------------------------------------------------------------------ edit

const userOnly = () => z.object({ username: usernameSchema }).strict();
const editSchema = userOnly();

/** Metadata of the account modals: the account, whether it came from a card, the status shown. */
const metaSchema = z.object({ u: usernameSchema, c: z.literal(1).optional(), s: z.enum(ACCOUNT_STATUSES).optional() });
type Meta = z.infer<typeof metaSchema>;

function editModal(services: Services, u: UserRow, meta: Meta): Modal {
  const status = accountStatus(u);
  return {
    callbackId: 'users:edit',
    title: 'Edit user',
    submit: 'Save changes',
    metadata: JSON.stringify({ ...meta, s: status }),
    intro: mrkdwn`Editing ${targetLine(services, u)}. Status: ${statusText(u)}.`,
    fields: [
      { id: 'email', label: 'E-mail', kind: 'text', initial: u.email, maxLength: 255 },
      { id: 'role', label: 'Role', kind: 'select', options: roleOptions, initial: u.role },
      {
        id: 'area',
        label: 'Dispatch area',
        kind: 'text',
        optional: true,
        hint: 'Dispatchers only; cleared when the role becomes biller or admin.',
        initial: u.dispatch_area ?? undefined,
        maxLength: 64,
      },
      { id: 'status', label: 'Account status', kind: 'radio', options: statusOptions, initial: status },
      optionalTotp('Needed to change the e-mail, to unlock or re-enable, when the role changes to or from admin, or for any status change of an admin.'),
    ],
  };
}

const edit: Subcommand<z.infer<typeof editSchema>> = {
  name: 'edit',
  usage: 'edit USERNAME',
  summary: 'a form with e-mail, role, dispatch area and account status (active / locked / disabled)',
  role: 'admin',
  parse: (words) => parseArgs(words, { positional: ['username'], schema: editSchema, usage: EDIT_USAGE }),
  run: async (ctx, { username }) => {
    const u = await ctx.services.users.getByUsername(username);
    return { kind: 'modal', modal: editModal(ctx.services, u, { u: username }) };
  },
};

/**
 * The area field of a form is pre-filled with the current area; when the role changes away
 * from dispatcher that pre-filled value is cleared rather than refused (any other area is
 * a mistake and refused).
 */
function formArea(submitted: string | undefined, role: string | undefined, current: UserRow): string {
  const area = (submitted ?? '').trim();
  if (role !== 'dispatcher' && current.dispatch_area && area === current.dispatch_area) return '';
  return area;
}

function changedMessage(services: Services, r: UpdateResult): Message {
  const what = r.changed
    .map((c) => {
      switch (c) {
        case 'role':
          return `role ${r.before.role} → ${r.user.role}`;
        case 'dispatch_area':
          return `dispatch area ${r.before.dispatch_area ?? '—'} → ${r.user.dispatch_area ?? '—'}`;
        case 'email':
          return `e-mail → ${services.masker.email(r.user.email)}`;
        case 'status':
          return `status ${accountStatus(r.before)} → ${accountStatus(r.user)}`;
        default:
          return c;
      }
    });
  const lines = [mrkdwn`:white_check_mark: Updated ${md.bold(r.user.username)}: ${what.join('; ')}.`];
  if (r.twoFaReminder) lines.push(twoFaWarning(r.user.username));
  return { text: md.join(lines, '\n') };
}

async function closeWithCard(ctx: InteractionContext, meta: Meta, notice: Message, username: string | null): Promise<ViewReply> {
  if (!meta.c) return { kind: 'close', notice };
  const u = username ? await ctx.services.users.findByUsername(username) : undefined;
  return {
    kind: 'close',
    notice,
    updateSource: u ? await renderUserCard(ctx.services, u) : { text: mrkdwn`${meta.u} no longer exists.` },
  };
}

const submitEdit: ViewHandler = async (ctx, values, metadata) => {
  const meta = parseModalMetadata(metaSchema, metadata);
  const current = await ctx.services.users.getByUsername(meta.u);
  const role = str(values.role);
  const status = str(values.status);
  if (status !== undefined && !(ACCOUNT_STATUSES as readonly string[]).includes(status)) {
    throw new ValidationErrors({ status: 'Choose active, locked or disabled.' });
  }
  const r = await ctx.services.userAdmin.update(
    ctx.actor,
    meta.u,
    {
      email: str(values.email) ?? '',
      role,
      area: formArea(str(values.area), role, current),
      // The status as shown when the form opened counts as "unchanged" (a lock may have run out since).
      status: status === meta.s ? undefined : (status as AccountStatus | undefined),
    },
    str(values.totp),
  );
  return closeWithCard(ctx, meta, changedMessage(ctx.services, r), r.user.username);
};

// ------------------------------------------------------------------ role

const roleSchemaArgs = z.object({ username: usernameSchema, role: roleSchema, area: loose.optional() }).strict();

function roleModal(services: Services, u: UserRow, meta: Meta, requested?: { role: string; area?: string | null }): Modal {
  const lines: Mrkdwn[] = [];
  if (requested) {
    const area = requested.role === 'dispatcher' ? ` (area ${requested.area || u.dispatch_area || '—'})` : '';
    lines.push(mrkdwn`Change ${targetLine(services, u)}: ${md.bold(`${u.role} → ${requested.role}`)}${area}.`);
  } else {
    lines.push(mrkdwn`Change the role of ${targetLine(services, u)}.`);
  }
  lines.push(mrkdwn`• To dispatcher: needs a dispatch area. To biller or admin: the area is cleared.`, mrkdwn`• To or from admin: needs your 2FA code.`);
  if (!u.two_fa_enabled && u.role !== 'admin') {
    lines.push(mrkdwn`:warning: ${u.username} has no 2FA. If you make them admin, a reminder to enable it is recorded.`);
  }
  return {
    callbackId: 'users:role',
    title: 'Change role',
    submit: 'Change role',
    metadata: JSON.stringify(meta),
    intro: md.join(lines, '\n'),
    fields: [
      { id: 'role', label: 'New role', kind: 'select', options: roleOptions, initial: requested?.role ?? u.role },
      {
        id: 'area',
        label: 'Dispatch area',
        kind: 'text',
        optional: true,
        hint: 'Dispatchers only.',
        initial: (requested ? requested.area : u.dispatch_area) ?? undefined,
        maxLength: 64,
      },
      optionalTotp('Needed when the role changes to or from admin.'),
    ],
  };
}

const role: Subcommand<z.infer<typeof roleSchemaArgs>> = {
  name: 'role',
  usage: 'role USERNAME ROLE [area:A]',
  summary: 'change a role with the guide’s rules (to/from admin asks for your 2FA code; never the last admin; not your own)',
  role: 'admin',
  parse: (words) => parseArgs(words, { positional: ['username', 'role'], schema: roleSchemaArgs, usage: ROLE_USAGE }),
  run: async (ctx, a) => {
    const admin = ctx.services.userAdmin;
    const plan = await admin.planUpdate(ctx.services.db, ctx.actor, a.username, { role: a.role, area: a.area }, false);
    if (UserAdminService.changeNeedsStepUp(plan.before, plan.next)) {
      return {
        kind: 'modal',
        modal: roleModal(ctx.services, plan.before, { u: a.username }, { role: a.role, area: plan.next.area }),
      };
    }
    const r = await admin.changeRole(ctx.actor, a.username, a.role, a.area);
    return { kind: 'message', message: changedMessage(ctx.services, r) };
  },
};

const submitRole: ViewHandler = async (ctx, values, metadata) => {
  const meta = parseModalMetadata(metaSchema, metadata);
  const current = await ctx.services.users.getByUsername(meta.u);
  const newRole = str(values.role);
  if (!newRole) throw new ValidationErrors({ role: 'Choose a role.' });
  const r = await ctx.services.userAdmin.changeRole(ctx.actor, meta.u, newRole, formArea(str(values.area), newRole, current), str(values.totp));
  return closeWithCard(ctx, meta, changedMessage(ctx.services, r), r.user.username);
};

// ------------------------------------------------------------------ unlock

const unlockSchema = userOnly();

function unlockedMessage(services: Services, before: UserRow, attempts: FailedAttempt[]): Message {
  const was = accountStatus(before) === 'locked' ? mrkdwn`was locked until ${md.date(before.locked_until)}` : 'was not locked';
  const lines = [mrkdwn`:unlock: Unlocked ${md.bold(before.username)} (${was}; ${before.failed_login_attempts ?? 0} failed attempts cleared).`];
  if (attempts.length) {
    lines.push(mrkdwn`*The failed login${attempts.length === 1 ? '' : 's'} since the last sign-in that led here* (${attempts.length}):`);
    for (const a of attempts) lines.push(mrkdwn`• ${md.date(a.timestamp)} · ${services.masker.ip(a.ip_address) || 'no IP'}`);
  } else {
    lines.push(mrkdwn`No failed-login entries for this username since the last sign-in in the audit log.`);
  }
  return { text: md.join(lines, '\n') };
}

/** Unlock asks for the acting admin's 2FA code on every path (command, user card, lockout alert). */
async function unlockModal(ctx: CommandContext, username: string, meta: Meta): Promise<Modal> {
  const { before } = await ctx.services.userAdmin.checkUnlock(ctx.services.db, username, false);
  return {
    callbackId: 'users:unlock',
    title: 'Unlock account',
    submit: 'Unlock',
    metadata: JSON.stringify(meta),
    intro: mrkdwn`Unlock ${targetLine(ctx.services, before)}? ${before.failed_login_attempts ?? 0} failed attempts are cleared and it can sign in again at once.\nLifting a lockout also lifts its protection against password guessing, so it needs your 2FA code.`,
    fields: [{ ...totpField }],
  };
}

const unlock: Subcommand<z.infer<typeof unlockSchema>> = {
  name: 'unlock',
  usage: 'unlock USERNAME',
  summary: 'clear a lockout (2FA code), then list the failed attempts (time, IP) since the last sign-in that caused it',
  role: 'admin',
  parse: (words) => parseArgs(words, { positional: ['username'], schema: unlockSchema, usage: UNLOCK_USAGE }),
  run: async (ctx, { username }) => ({ kind: 'modal', modal: await unlockModal(ctx, username, { u: username }) }),
};

const submitUnlock: ViewHandler = async (ctx, values, metadata) => {
  const meta = parseModalMetadata(metaSchema, metadata);
  // The lockout cards of the account say "unlocked" in the unlock's own transaction (issue 12):
  // a crash between two transactions would leave a card "locked" that no Unlock can fix.
  const r = await ctx.services.userAdmin.unlock(ctx.actor, meta.u, str(values.totp), {
    alsoInTx: async (q, user) => void (await ctx.services.lockouts.markUserUnlocked(ctx.actor, user.id, q)),
  });
  return closeWithCard(ctx, meta, unlockedMessage(ctx.services, r.before, r.attempts), r.user.username);
};

// ------------------------------------------------------------------ reset-password

const resetSchema = z
  .object({
    username: usernameSchema,
    method: z.enum(['link', 'temp'], { error: () => 'the method must be link or temp' }).optional(),
  })
  .strict();

function resetModal(services: Services, u: UserRow, meta: Meta, method: 'link' | 'temp'): Modal {
  return {
    callbackId: 'users:reset',
    title: 'Reset password',
    submit: 'Reset',
    metadata: JSON.stringify(meta),
    intro: mrkdwn`Reset the password of ${targetLine(services, u)}. Either way needs your 2FA code.\n• *Link*: a fresh reset link, valid 1 hour, is e-mailed to the user; it is never shown in Slack.\n• *Temporary password*: replaces the password now and is shown once, only to you.`,
    fields: [
      {
        id: 'method',
        label: 'Method',
        kind: 'radio',
        options: [
          { value: 'link', label: 'E-mail a reset link (preferred)' },
          { value: 'temp', label: 'Set a temporary password' },
        ],
        initial: method,
      },
      { ...totpField },
    ],
  };
}

function linkSentMessage(services: Services, username: string, mailedTo: string, expiresAt: Date): Message {
  return {
    text: mrkdwn`:email: A password reset link for ${md.bold(username)} was e-mailed to ${services.masker.email(mailedTo)}. It is valid until ${md.date(expiresAt)}. The link itself is never shown in Slack.`,
  };
}

const resetPassword: Subcommand<z.infer<typeof resetSchema>> = {
  name: 'reset-password',
  usage: 'reset-password USERNAME [link|temp]',
  summary: 'e-mail a reset link valid 1 hour (default), or set a temporary password shown once to you; 2FA code; not for admins',
  role: 'admin',
  parse: (words) => parseArgs(words, { positional: ['username', 'method'], schema: resetSchema, usage: RESET_USAGE }),
  run: async (ctx, { username, method }) => {
    // Refusals (admin account, own account, recently changed e-mail) come before the form.
    const u = await ctx.services.userAdmin.checkReset(ctx.actor, username, method ?? 'link');
    return { kind: 'modal', modal: resetModal(ctx.services, u, { u: username }, method ?? 'link') };
  },
};

const submitReset: ViewHandler = async (ctx, values, metadata) => {
  const meta = parseModalMetadata(metaSchema, metadata);
  const method = str(values.method) ?? 'link';
  if (method === 'link') {
    const r = await ctx.services.userAdmin.sendResetLink(ctx.actor, meta.u, str(values.totp));
    const to = ctx.services.masker.email(r.mailedTo);
    // Ack first (issue 12): the token is saved; the link is mailed after the form was answered.
    return {
      kind: 'progress',
      modal: progressModal('Reset password', mrkdwn`:hourglass_flowing_sand: Sending a password reset link for ${md.bold(meta.u)} to ${to}…`),
      finish: async () => {
        const out = await r.send();
        const notice = out.ok
          ? linkSentMessage(ctx.services, meta.u, r.mailedTo, r.expiresAt)
          : { text: mrkdwn`:warning: The reset link for ${md.bold(meta.u)} to ${to} could not be sent: ${out.reason} ${out.next}` };
        return { modal: progressModal('Reset password', notice.text, 'done'), notice };
      },
    };
  }
  if (method !== 'temp') throw new ValidationErrors({ method: 'Choose a link or a temporary password.' });
  const r = await ctx.services.userAdmin.setTempPassword(ctx.actor, meta.u, str(values.totp));
  return { kind: 'update', modal: tempPasswordModal(r.user.username, r.password) };
};

// ------------------------------------------------------------------ delete

const deleteSchema = userOnly();

async function deleteModal(services: Services, actor: Actor, u: UserRow, meta: Meta): Promise<Modal> {
  if (u.id === actor.user.id) throw new UserError('You cannot delete your own account. Ask another admin.');
  const { rows } = await services.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM audit_log WHERE user_id = $1 OR (entity_type = 'user' AND entity_id = $1)`,
    [u.id],
  );
  return {
    callbackId: 'users:delete',
    title: 'Delete user',
    submit: 'Delete',
    metadata: JSON.stringify(meta),
    intro: mrkdwn`:warning: This permanently deletes ${targetLine(services, u)}.\n• ${rows[0].n} audit entries by or about them stay; their user reference becomes empty.\n• Their promotion requests, in-app notifications and Slack links are deleted.\n• "Anonymise" also masks their e-mail and IP addresses in those audit entries (GDPR).`,
    fields: [
      { id: 'confirm', label: `Type ${u.username} to confirm`, kind: 'text', placeholder: u.username, maxLength: 64 },
      {
        id: 'anonymise',
        label: 'Audit entries',
        kind: 'checkboxes',
        optional: true,
        options: [{ value: 'yes', label: 'Anonymise their e-mail and IPs in audit entries' }],
      },
      { ...totpField },
    ],
  };
}

const deleteUser: Subcommand<z.infer<typeof deleteSchema>> = {
  name: 'delete',
  usage: 'delete USERNAME',
  summary: 'delete an account: type the username to confirm, optional audit anonymisation, 2FA code',
  role: 'admin',
  parse: (words) => parseArgs(words, { positional: ['username'], schema: deleteSchema, usage: DELETE_USAGE }),
  run: async (ctx, { username }) => {
    const u = await ctx.services.users.getByUsername(username);
    return { kind: 'modal', modal: await deleteModal(ctx.services, ctx.actor, u, { u: username }) };
  },
};

const submitDelete: ViewHandler = async (ctx, values, metadata) => {
  const meta = parseModalMetadata(metaSchema, metadata);
  const anonymise = Array.isArray(values.anonymise) && values.anonymise.includes('yes');
  const r = await ctx.services.userAdmin.delete(ctx.actor, meta.u, { confirm: str(values.confirm) ?? '', anonymise }, str(values.totp));
  const notice: Message = {
    text: mrkdwn`:wastebasket: Deleted ${md.bold(r.before.username)} (${r.before.role}).${
      anonymise ? ` ${r.anonymisedRows} audit entries anonymised.` : ' Audit entries kept as they were.'
    }`,
  };
  return closeWithCard(ctx, meta, notice, null);
};

// ------------------------------------------------------------------ link

const linkSchema = z
  .object({
    username: usernameSchema,
    slack: z
      .string()
      // `<@U123>` or `<@U123|name>` as Slack sends a mention (the grammar unwraps most of them), or a bare id.
      .transform((s) => /^<@([UW][A-Z0-9_]+)(?:\|[^>]*)?>$/.exec(s)?.[1] ?? s)
      .pipe(z.string().regex(/^[UW][A-Z0-9_]{2,20}$/, 'mention the Slack user, e.g. @bob')),
  })
  .strict();

const linkMetaSchema = z.object({ u: usernameSchema, s: z.string().regex(/^[UW][A-Z0-9_]{2,20}$/) });

const link: Subcommand<z.infer<typeof linkSchema>> = {
  name: 'link',
  usage: 'link USERNAME @slack-user',
  summary: 'make that Slack user act as this account (replaces an e-mail match; 2FA code)',
  role: 'admin',
  parse: (words) => parseArgs(words, { positional: ['username', 'slack'], schema: linkSchema, usage: LINK_USAGE }),
  run: async (ctx, { username, slack }) => {
    const plan = await ctx.services.userAdmin.planLink(ctx.services.db, ctx.actor, username, slack, false);
    const u = await ctx.services.users.getByUsername(username);
    const replaces = plan.previous
      ? mrkdwn`\n• ${md.user(slack)} acts as ${md.bold(plan.previous.username)} now (${plan.previous.method === 'email' ? 'matched by e-mail' : 'linked explicitly'}); that link is replaced.`
      : '';
    return {
      kind: 'modal',
      modal: {
        callbackId: 'users:link',
        title: 'Link Slack account',
        submit: 'Link',
        metadata: JSON.stringify({ u: username, s: slack }),
        intro: mrkdwn`Link ${md.user(slack)} to ${targetLine(ctx.services, u)}: from now on that Slack user acts as this account, with its role (${u.role}).${replaces}`,
        fields: [{ ...totpField }],
      },
    };
  },
};

const submitLink: ViewHandler = async (ctx, values, metadata) => {
  const meta = parseModalMetadata(linkMetaSchema, metadata);
  const r = await ctx.services.userAdmin.link(ctx.actor, meta.u, meta.s, str(values.totp));
  return {
    kind: 'close',
    notice: {
      text: mrkdwn`:link: ${md.user(meta.s)} now acts as ${md.bold(r.user.username)} (${r.user.role}).${
        r.previous ? mrkdwn` It was linked to ${md.bold(r.previous.username)} before.` : ''
      }`,
    },
  };
};

// ------------------------------------------------------------------ buttons

const buttonSchema = z.object({ u: usernameSchema, c: z.literal(1).optional() });

function clicked(value: string) {
  return parseButtonValue(buttonSchema, value, '/users show USERNAME');
}


const openFor =
  (build: (ctx: InteractionContext, u: UserRow, meta: Meta) => Promise<Modal> | Modal): ActionHandler =>
  async (ctx, value): Promise<ActionReply> => {
    const b = clicked(value);
    const u = await ctx.services.users.getByUsername(b.u);
    return { kind: 'modal', modal: await build(ctx, u, { u: b.u, ...(b.c ? { c: 1 as const } : {}) }) };
  };

// ------------------------------------------------------------------ exports

export const adminSubcommands: Subcommand[] = [create, edit, role, unlock, resetPassword, deleteUser, link];

export const adminActions: Record<string, ActionHandler> = {
  'users:unlock': openFor((ctx, u, meta) => unlockModal(ctx, u.username, meta)),
  'users:reset': openFor((ctx, u, meta) => resetModal(ctx.services, u, meta, 'link')),
  'users:edit': openFor((ctx, u, meta) => editModal(ctx.services, u, meta)),
  'users:role': openFor((ctx, u, meta) => roleModal(ctx.services, u, meta)),
  'users:delete': openFor((ctx, u, meta) => deleteModal(ctx.services, ctx.actor, u, meta)),
};

export const adminViews: Record<string, ViewHandler> = {
  'users:create': submitCreate,
  'users:edit': submitEdit,
  'users:role': submitRole,
  'users:reset': submitReset,
  'users:unlock': submitUnlock,
  'users:delete': submitDelete,
  'users:link': submitLink,
  // The one-time secret view has no submit button in Slack; the console may still "submit" it.
  'users:shown': async () => ({ kind: 'close' }),
};

export type { Reply };
