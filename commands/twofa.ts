import { z } from 'zod';
import { parseDuration } from '../src/config.js';
import { usernameSchema } from '../src/domain/user.js';
import { ConflictError, ForbiddenError, UserError } from '../src/errors.js';
import type { Services } from '../src/services/index.js';
import {
  CHECK_LABELS,
  CODE_DIGITS,
  CODE_MAX_ATTEMPTS,
  CODE_TTL_SECONDS,
  MANUAL_CHECKS,
  RECOVERY_FIELDS,
  WARDEN_CHECKS,
  type CheckAvailability,
  type CodesSent,
  type Recovery,
  type WardenCheck,
} from '../src/services/twofa-recovery.js';
import { describeCheck, describeDecided } from '../src/slack/cards/twofa-recovery.js';
import { MAX_FAILURE_WINDOW_SECONDS } from '../src/services/twofa-reports.js';
import { md, mrkdwn, type Block, type Button, type Message, type Modal, type ModalField, type Mrkdwn } from '../src/ui.js';
import { noArgs, parseArgs } from './grammar.js';
import { parseButtonValue, parseModalMetadata, progressModal, totpField } from './shared.js';
import type { ActionHandler, CommandModule, InteractionContext, Subcommand, ViewHandler, ViewReply } from './types.js';

/**
 * `/2fa`: the guide's "Two-Factor Authentication Management" section.
 * - `status [USERNAME]`: any linked user sees their own status (USERNAME omitted or their
 *   own); admins see anyone's, with the account's latest recovery.
 * - `adoption`, `admins-without` (+ Remind), `failures [window:1h]`: admins.
 * - `recover USERNAME`: the identity-checked recovery flow (src/services/twofa-recovery.ts).
 */

export const TWOFA_ACTIONS = {
  remind: '2fa:remind',
  codes: '2fa:codes',
  resend: '2fa:resend',
  submit: '2fa:submit',
  cancel: '2fa:cancel',
  approve: '2fa:approve',
  reject: '2fa:reject',
} as const;

export const TWOFA_VIEWS = {
  recover: '2fa:recover',
  verify: '2fa:verify',
  approve: '2fa:approve',
  reject: '2fa:reject',
} as const;

// ------------------------------------------------------------------ status

const STATUS_USAGE = '`/2fa status [USERNAME]`';
const statusSchema = z.object({ username: usernameSchema.optional() }).strict();

const status: Subcommand<z.infer<typeof statusSchema>> = {
  name: 'status',
  usage: 'status [USERNAME]',
  summary: 'whether 2FA is enabled and the latest 2FA failures (your own; admins: anyone)',
  role: 'linked',
  parse: (words) => parseArgs(words, { positional: ['username'], schema: statusSchema, usage: STATUS_USAGE }),
  run: async (ctx, { username }) => {
    const st = await ctx.services.twofaReports.status(ctx.actor, username);
    const u = st.user;
    const m = ctx.services.masker;
    const enabled = u.two_fa_enabled
      ? ':white_check_mark: enabled'
      : u.role === 'admin'
        ? ':warning: *not enabled* (admins must use 2FA)'
        : ':x: not enabled';
    const lines = [
      mrkdwn`${md.bold(u.username)} · ${u.role} · 2FA ${enabled}`,
      mrkdwn`2FA failures in the last 24 h: *${st.failures24h}* · last successful 2FA check: ${st.lastSuccess ? md.date(st.lastSuccess) : 'none recorded'}`,
    ];
    if (st.recentFailures.length) {
      lines.push(mrkdwn`*Latest 2FA failures*`);
      for (const f of st.recentFailures) lines.push(mrkdwn`• ${md.date(f.timestamp)} from ${f.ip_address ? m.ip(f.ip_address) : 'unknown IP'}`);
    }
    if (st.recovery) {
      const r = st.recovery;
      const open = (r.status === 'verifying' || r.status === 'pending') && r.expires_at > new Date();
      lines.push(
        open
          ? mrkdwn`*Open recovery* #${r.id} (${r.status === 'pending' ? 'waiting for approval' : 'collecting identity checks'}, opened by ${r.initiator_username} ${md.date(r.created_at)})`
          : mrkdwn`Last recovery: #${r.id}, ${r.status} ${md.date(r.decided_at ?? r.expires_at)}`,
      );
    }
    return { kind: 'message', message: { text: md.join(lines, '\n') } };
  },
};

// ------------------------------------------------------------------ adoption


const adoption: Subcommand<z.infer<typeof noArgs>> = {
  name: 'adoption',
  usage: 'adoption',
  summary: '2FA adoption per role: users, with 2FA, rate',
  role: 'admin',
  parse: (words) => parseArgs(words, { schema: noArgs, usage: '`/2fa adoption`' }),
  run: async (ctx) => {
    const rows = await ctx.services.twofaReports.adoption();
    if (!rows.length) return { kind: 'message', message: { text: mrkdwn`There are no users yet.` } };
    const total = rows.reduce((a, r) => a + r.total_users, 0);
    const with2fa = rows.reduce((a, r) => a + r.with_2fa, 0);
    const line = (role: string, n: number, w: number, rate: number | null) =>
      mrkdwn`• ${md.bold(role)}: ${w} of ${n} with 2FA (${rate === null ? '—' : `${rate.toFixed(1)}%`})`;
    const lines = rows.map((r) => line(r.role, r.total_users, r.with_2fa, r.adoption_rate));
    const overall = total ? Math.round((1000 * with2fa) / total) / 10 : null;
    lines.push(line('all roles', total, with2fa, overall));
    const admins = rows.find((r) => r.role === 'admin');
    const blocks: Block[] = [{ type: 'text', text: mrkdwn`*2FA adoption*\n${md.join(lines, '\n')}` }];
    if (admins && admins.with_2fa < admins.total_users) {
      blocks.push({ type: 'context', text: mrkdwn`${admins.total_users - admins.with_2fa} admin(s) without 2FA: \`/2fa admins-without\`` });
    }
    return { kind: 'message', message: { text: mrkdwn`2FA adoption: ${with2fa} of ${total} users`, blocks } };
  },
};

// ------------------------------------------------------------------ admins-without

const adminsWithout: Subcommand<z.infer<typeof noArgs>> = {
  name: 'admins-without',
  usage: 'admins-without',
  summary: 'admins without 2FA, with a Remind button',
  role: 'admin',
  parse: (words) => parseArgs(words, { schema: noArgs, usage: '`/2fa admins-without`' }),
  run: async (ctx) => ({ kind: 'message', message: await renderAdminsWithout(ctx.services) }),
};

async function renderAdminsWithout(services: Services): Promise<Message> {
  const admins = await services.twofaReports.adminsWithout();
  if (!admins.length) return { text: mrkdwn`:white_check_mark: Every admin has 2FA enabled.` };
  const lines = admins.map(
    (a) =>
      mrkdwn`• ${md.bold(a.username)} · ${services.masker.email(a.email)} · created ${md.date(a.created_at)} · last login ${a.last_login ? md.date(a.last_login) : 'never'}`,
  );
  return {
    text: mrkdwn`${admins.length} admin(s) without 2FA`,
    blocks: [
      { type: 'text', text: mrkdwn`:warning: *${admins.length} admin${admins.length === 1 ? '' : 's'} without 2FA*\n${md.join(lines, '\n')}` },
      {
        type: 'buttons',
        buttons: [
          {
            text: 'Remind',
            actionId: TWOFA_ACTIONS.remind,
            value: '{}',
            style: 'primary',
            confirm: {
              title: 'Remind admins',
              text: mrkdwn`Each admin without 2FA gets an in-app notification and, when their Slack account is linked, a DM.`,
              confirm: 'Remind',
            },
          },
        ],
      },
    ],
  };
}

const remind: ActionHandler = async (ctx) => {
  const out = await ctx.services.twofaReports.remindAdminsWithout(ctx.actor);
  const parts: Mrkdwn[] = [];
  if (out.reminded.length) {
    parts.push(
      mrkdwn`:bell: Reminded ${out.reminded.length} admin${out.reminded.length === 1 ? '' : 's'} (${out.reminded.join(', ')}): in-app notification${
        out.dmed.length ? `, Slack DM to ${out.dmed.join(', ')}` : ', no linked Slack account to DM'
      }`,
    );
  }
  if (out.skipped.length) parts.push(mrkdwn`Already reminded in the last 12 hours: ${out.skipped.join(', ')}.`);
  if (!parts.length) parts.push(mrkdwn`:white_check_mark: Every admin has 2FA enabled now; nobody to remind.`);
  return { kind: 'message', message: { text: md.join(parts, '\n') } };
};

// ------------------------------------------------------------------ failures

const FAILURES_USAGE = '`/2fa failures [window:1h]` (window like 15m, 1h, 24h, 7d; at most 30d)';
const failuresSchema = z
  .object({
    window: z
      .string()
      .default('1h')
      .transform((v, c) => {
        const s = parseDuration(v);
        if (s === undefined || s < 60 || s > MAX_FAILURE_WINDOW_SECONDS) {
          c.addIssue({ code: 'custom', message: `window must be a duration from 1m to 30d, like 15m, 1h or 7d (got \`${v}\`)` });
          return z.NEVER;
        }
        return { text: v, seconds: s };
      }),
  })
  .strict();

const failures: Subcommand<z.infer<typeof failuresSchema>> = {
  name: 'failures',
  usage: 'failures [window:1h]',
  summary: 'recent 2FA verification failures by IP, with counts',
  role: 'admin',
  parse: (words) => parseArgs(words, { schema: failuresSchema, usage: FAILURES_USAGE }),
  run: async (ctx, { window }) => {
    const { total, groups } = await ctx.services.twofaReports.failures(window.seconds);
    if (!total) return { kind: 'message', message: { text: mrkdwn`:white_check_mark: No 2FA verification failures in the last ${window.text}.` } };
    const m = ctx.services.masker;
    const threshold = ctx.services.config.TWOFA_FAILURE_SPIKE_THRESHOLD;
    const lines = groups.map((g) => {
      const who = g.usernames.length ? ` (${g.usernames.map((u) => m.text(u)).join(', ')}${g.users > g.usernames.length ? ', …' : ''})` : '';
      const spike = g.attempts > threshold ? ' :rotating_light:' : '';
      // Masked IPs of one /16 look alike: the short keyed tag keeps the groups apart.
      return mrkdwn`• ${md.code(g.ip_address ? m.ipTagged(g.ip_address) : 'unknown IP')}: *${g.attempts}* failure${g.attempts === 1 ? '' : 's'}, ${g.users} user${g.users === 1 ? '' : 's'}${who}, ${md.date(g.first_at)} – ${md.date(g.last_at)}${spike}`;
    });
    const blocks: Block[] = [
      { type: 'text', text: mrkdwn`${md.bold(`${total} 2FA verification failure${total === 1 ? '' : 's'} in the last ${window.text}`)} from ${groups.length}${groups.length === 25 ? '+' : ''} IP${groups.length === 1 ? '' : 's'}\n${md.join(lines, '\n')}` },
      { type: 'context', text: mrkdwn`:rotating_light: more than ${threshold} failures from one IP${m.enabled ? ' · IPs masked (ANONYMIZE_AUDIT_LOGS)' : ''}` },
    ];
    return { kind: 'message', message: { text: mrkdwn`${total} 2FA failures in the last ${window.text}`, blocks } };
  },
};

// ------------------------------------------------------------------ recover

const RECOVER_USAGE = '`/2fa recover USERNAME`';
const recoverSchema = z.object({ username: usernameSchema }).strict();

const recover: Subcommand<z.infer<typeof recoverSchema>> = {
  name: 'recover',
  usage: 'recover USERNAME',
  summary: 'reset the 2FA of a user who lost their authenticator: identity checks, then a second admin approves',
  role: 'admin',
  parse: (words) => parseArgs(words, { positional: ['username'], schema: recoverSchema, usage: RECOVER_USAGE }),
  run: async (ctx, { username }) => {
    const prep = await ctx.services.twofaRecovery.prepare(ctx.actor, username);
    if (prep.kind === 'resume') return { kind: 'message', message: renderProgress(ctx.services, prep.recovery) };
    return { kind: 'modal', modal: recoverModal(prep.target.username, prep.target.role, prep.available, prep.minChecks) };
  },
};

function recoverModal(username: string, role: string, available: Record<WardenCheck, CheckAvailability>, minChecks: number): Modal {
  const usable = WARDEN_CHECKS.filter((c) => available[c].ok);
  const notes = WARDEN_CHECKS.filter((c) => !available[c].ok).map((c) => `• ${CHECK_LABELS[c]} is not available: ${available[c].why}.`);
  const fields: ModalField[] = [
    {
      id: RECOVERY_FIELDS.manualChecks,
      label: 'Checks you performed yourself',
      kind: 'checkboxes',
      options: Object.entries(MANUAL_CHECKS).map(([value, label]) => ({ value, label })),
    },
    {
      id: RECOVERY_FIELDS.evidence,
      label: 'Evidence',
      kind: 'multiline',
      maxLength: 2000,
      placeholder: 'What you checked, when, and what matched',
      hint: 'Shown on the approval card and kept in the audit log.',
    },
    {
      id: RECOVERY_FIELDS.wardenChecks,
      label: `Checks Warden runs (at least ${minChecks})`,
      kind: 'checkboxes',
      options: usable.map((c) => ({
        value: c,
        label: c === 'email' ? `E-mail code to ${available.email.destination}` : 'Slack DM code to their linked Slack account',
      })),
      initial: usable,
      hint: `Warden sends a one-time ${CODE_DIGITS}-digit code; ${username} reads it back to you.`,
    },
    { ...totpField, hint: 'Step-up check: you vouch for this user, so prove it is you with the current code of your own account.' },
  ];
  return {
    callbackId: TWOFA_VIEWS.recover,
    title: 'Recover 2FA',
    submit: 'Send codes',
    metadata: JSON.stringify({ u: username }),
    intro: mrkdwn`Reset the two-factor authentication of ${md.bold(username)} (${role}) after they lost their authenticator. A second admin must approve; then their 2FA is disabled and they enrol again at next login.${
      notes.length ? mrkdwn`\n${md.lines(notes.join('\n'))}` : ''
    }`,
    fields,
  };
}

const recoverMetaSchema = z.object({ u: usernameSchema });

const submitRecover: ViewHandler = async (ctx, values, metadata) => {
  const { u } = parseModalMetadata(recoverMetaSchema, metadata);
  const list = (v: unknown) => (Array.isArray(v) ? v.map(String) : typeof v === 'string' && v ? [v] : []);
  const svc = ctx.services.twofaRecovery;
  const opened = await svc.open(ctx.actor, {
    username: u,
    manualChecks: list(values[RECOVERY_FIELDS.manualChecks]),
    evidence: typeof values[RECOVERY_FIELDS.evidence] === 'string' ? (values[RECOVERY_FIELDS.evidence] as string) : '',
    wardenChecks: list(values[RECOVERY_FIELDS.wardenChecks]),
    totp: typeof values.totp === 'string' ? values.totp : null,
  });
  const r = opened.recovery;
  const what = WARDEN_CHECKS.filter((c) => r.checks[c]).map((c) => (c === 'email' ? 'the e-mail code' : 'the Slack DM code'));
  // Ack first (issue 12): the form says what is happening; the codes go out after it was answered.
  return {
    kind: 'progress',
    modal: progressModal('Recover 2FA', mrkdwn`:hourglass_flowing_sand: Recovery #${r.id} for ${md.bold(r.target_username)} is open. Sending ${what.join(' and ')}…`),
    finish: async () => codesOutcome(await opened.send(), svc.minChecks),
  };
};

/** After the codes were sent: the form to enter them, or why none can be entered. */
function codesOutcome(sent: CodesSent, minChecks: number): { modal: Modal; notice: Message } {
  const r = sent.recovery;
  const failed = WARDEN_CHECKS.filter((c) => sent.unsent[c]).map((c) => mrkdwn`:warning: ${CHECK_LABELS[c]} not sent: ${sent.unsent[c]!.reason} ${sent.unsent[c]!.next}`);
  const enterable = WARDEN_CHECKS.filter((c) => r.checks[c] && r.checks[c].result !== 'passed' && r.checks[c].result !== 'unsent');
  if (!enterable.length) {
    const text = mrkdwn`Recovery #${r.id} for ${md.bold(r.target_username)}: no code could be sent.\n${md.join(failed, '\n')}`;
    return { modal: progressModal('Recover 2FA', text, 'done'), notice: { text } };
  }
  return {
    modal: verifyModal(r, minChecks, failed.length ? md.join(failed, '\n') : undefined),
    notice: {
      text: mrkdwn`:envelope: Codes sent for recovery #${r.id} for ${md.bold(r.target_username)}. Run ${md.code(`/2fa recover ${r.target_username}`)} to enter them.${
        failed.length ? mrkdwn`\n${md.join(failed, '\n')}` : ''
      }`,
    },
  };
}

/** The form where the initiator types the codes the user reads back. */
function verifyModal(r: Recovery, minChecks: number, note?: Mrkdwn): Modal {
  // A check whose code did not go out has nothing to enter (Resend, from `/2fa recover`).
  const open = WARDEN_CHECKS.filter((c) => r.checks[c] && r.checks[c].result !== 'passed' && r.checks[c].result !== 'unsent');
  const lines = WARDEN_CHECKS.filter((c) => r.checks[c]).map((c) => mrkdwn`• ${describeCheck(c, r.checks[c])}`);
  return {
    callbackId: TWOFA_VIEWS.verify,
    title: 'Verify identity',
    submit: 'Verify',
    metadata: JSON.stringify({ r: r.id }),
    intro: mrkdwn`${note ? mrkdwn`${note}\n` : ''}Recovery #${r.id} for ${md.bold(r.target_username)}. Ask them to read back the code${open.length === 1 ? '' : 's'} Warden sent (valid ${CODE_TTL_SECONDS / 60} minutes, ${CODE_MAX_ATTEMPTS} attempts each). ${
      minChecks === 1 ? 'One passed check sends' : `${minChecks} passed checks send`
    } it to approval.\n${md.join(lines, '\n')}\nClosed this by mistake? Run ${md.code(`/2fa recover ${r.target_username}`)} to go on.`,
    fields: open.map((c) => ({
      id: RECOVERY_FIELDS.code(c),
      label: c === 'email' ? 'Code from their e-mail' : 'Code from their Slack DM',
      kind: 'text' as const,
      optional: open.length > 1,
      placeholder: `${CODE_DIGITS} digits`,
      maxLength: 16,
    })),
  };
}

const refSchema = z.object({ r: z.number().int().positive() });
const resendSchema = z.object({ r: z.number().int().positive(), c: z.enum(WARDEN_CHECKS) });

const submitVerify: ViewHandler = async (ctx, values, metadata) => {
  const { r } = parseModalMetadata(refSchema, metadata);
  const svc = ctx.services.twofaRecovery;
  const entered: Partial<Record<WardenCheck, string>> = {};
  for (const c of WARDEN_CHECKS) {
    const v = values[RECOVERY_FIELDS.code(c)];
    if (typeof v === 'string' && v.trim()) entered[c] = v;
  }
  if (!Object.keys(entered).length) {
    const rec = await svc.get(r);
    const first = WARDEN_CHECKS.find((c) => rec.checks[c] && rec.checks[c].result !== 'passed') ?? 'email';
    return { kind: 'errors', errors: { [RECOVERY_FIELDS.code(first)]: `Enter the ${CODE_DIGITS}-digit code the user reads to you.` } };
  }
  const out = await svc.verifyCodes(ctx.actor, r, entered);
  if (out.submitted) {
    const ch = ctx.services.config.APPROVALS_CHANNEL!;
    return {
      kind: 'close',
      notice: {
        text: mrkdwn`:white_check_mark: Identity checks passed (${out.passed.map((c) => CHECK_LABELS[c]).join(', ')}). Recovery #${out.recovery.id} for ${md.bold(out.recovery.target_username)} now waits for a second admin in ${md.channel(ch)}.`,
      },
    };
  }
  const errors: Record<string, string> = {};
  for (const [c, msg] of Object.entries(out.errors)) errors[RECOVERY_FIELDS.code(c as WardenCheck)] = msg;
  if (Object.keys(errors).length) return { kind: 'errors', errors };
  const passed = out.passed.map((c) => CHECK_LABELS[c]).join(', ');
  return { kind: 'update', modal: verifyModal(out.recovery, svc.minChecks, mrkdwn`:white_check_mark: ${passed} passed. More checks are needed before approval.`) };
};

/** Where the initiator stands with their verifying recovery, with the buttons to go on. */
function renderProgress(services: Services, r: Recovery): Message {
  const v = (extra: Record<string, unknown> = {}) => JSON.stringify({ r: r.id, ...extra });
  const buttons: Button[] = [];
  const open = WARDEN_CHECKS.filter((c) => r.checks[c] && r.checks[c].result !== 'passed');
  if (open.some((c) => r.checks[c].result !== 'unsent')) buttons.push({ text: 'Enter codes', actionId: TWOFA_ACTIONS.codes, value: v(), style: 'primary' });
  for (const c of open) buttons.push({ text: `Resend ${c === 'email' ? 'e-mail' : 'Slack'} code`, actionId: TWOFA_ACTIONS.resend, value: v({ c }) });
  if (services.twofaRecovery.passedCount(r) >= services.twofaRecovery.minChecks) {
    buttons.push({ text: 'Submit for approval', actionId: TWOFA_ACTIONS.submit, value: v(), style: 'primary' });
  }
  buttons.push({
    text: 'Cancel recovery',
    actionId: TWOFA_ACTIONS.cancel,
    value: v(),
    style: 'danger',
    confirm: { title: 'Cancel recovery', text: mrkdwn`Cancel recovery #${r.id} for ${r.target_username}? Its codes stop working.`, confirm: 'Cancel recovery', deny: 'Keep it' },
  });
  const lines = WARDEN_CHECKS.filter((c) => r.checks[c]).map((c) => mrkdwn`• ${describeCheck(c, r.checks[c])}`);
  return {
    text: mrkdwn`Your 2FA recovery #${r.id} for ${r.target_username} is collecting identity checks`,
    blocks: [
      {
        type: 'text',
        text: mrkdwn`Your 2FA recovery #${r.id} for ${md.bold(r.target_username)} is collecting identity checks (expires ${md.date(r.expires_at)}).\n${md.join(lines, '\n')}`,
      },
      { type: 'buttons', buttons },
    ],
  };
}

const enterCodes: ActionHandler = async (ctx, value) => {
  const { r } = parseButtonValue(refSchema, value, '/2fa recover USERNAME');
  const rec = await ctx.services.twofaRecovery.get(r);
  if (rec.initiator_id !== ctx.actor.user.id) throw new UserError(`Only ${rec.initiator_username}, who opened recovery #${rec.id}, can enter its codes.`);
  if (rec.status !== 'verifying' || rec.expires_at <= new Date()) throw new ConflictError(describeDecided(rec));
  return { kind: 'modal', modal: verifyModal(rec, ctx.services.twofaRecovery.minChecks) };
};

const resend: ActionHandler = async (ctx, value) => {
  const { r, c } = parseButtonValue(resendSchema, value, '/2fa recover USERNAME');
  // The click is acked before this runs; the send itself runs after its transaction committed.
  const out = await ctx.services.twofaRecovery.resend(ctx.actor, r, c);
  const rec = out.recovery;
  const unsent = out.unsent[c];
  return {
    kind: 'update_and_message',
    update: renderProgress(ctx.services, rec),
    message: unsent
      ? { text: mrkdwn`:warning: The new ${CHECK_LABELS[c].toLowerCase()} could not be sent: ${unsent.reason} ${unsent.next}` }
      : { text: mrkdwn`:envelope: A new ${CHECK_LABELS[c].toLowerCase()} was sent to ${rec.target_username}; the previous one no longer works.` },
  };
};

const submitForApproval: ActionHandler = async (ctx, value) => {
  const { r } = parseButtonValue(refSchema, value, '/2fa recover USERNAME');
  const rec = await ctx.services.twofaRecovery.submit(ctx.actor, r);
  return { kind: 'update', message: { text: mrkdwn`:white_check_mark: Recovery #${rec.id} for ${md.bold(rec.target_username)} now waits for a second admin.` } };
};

const cancel: ActionHandler = async (ctx, value) => {
  const { r } = parseButtonValue(refSchema, value, '/2fa recover USERNAME');
  const rec = await ctx.services.twofaRecovery.cancel(ctx.actor, r);
  return { kind: 'update', message: { text: mrkdwn`:heavy_multiplication_x: Recovery #${rec.id} for ${md.bold(rec.target_username)} was cancelled. Its codes no longer work.` } };
};

// ------------------------------------------------------------------ approve / reject

function cardSummary(r: Recovery): Mrkdwn {
  const checks = WARDEN_CHECKS.filter((c) => r.checks[c]).map((c) => mrkdwn`• ${describeCheck(c, r.checks[c])}`);
  const manual = r.manual_checks.map((m) => mrkdwn`• ${MANUAL_CHECKS[m as keyof typeof MANUAL_CHECKS] ?? m}`);
  return mrkdwn`${md.bold(r.initiator_username)} asks to reset the 2FA of ${md.bold(r.target_username)} (recovery #${r.id}).\n${md.join(manual, '\n')}\n${md.join(checks, '\n')}`;
}

const openApprove: ActionHandler = async (ctx, value) => {
  const { r } = parseButtonValue(refSchema, value, '/2fa status USERNAME');
  const svc = ctx.services.twofaRecovery;
  const rec = await svc.get(r);
  await svc.assertCanApprove(ctx.actor, rec);
  if (rec.status !== 'pending' || rec.expires_at <= new Date()) {
    await svc.refreshCard(rec);
    throw new ConflictError(describeDecided(rec));
  }
  // Refused at the click, as for promotions: no form whose code cannot be given.
  if (!(await ctx.services.stepUp.canStepUp(ctx.actor))) {
    throw new ForbiddenError(
      'Approving a 2FA recovery needs your 2FA code, but your account has no two-factor authentication. ' +
        'Enrol in the application first (Profile → Enable Two-Factor Authentication).',
    );
  }
  return {
    kind: 'modal',
    modal: {
      callbackId: TWOFA_VIEWS.approve,
      title: 'Approve 2FA reset',
      submit: 'Approve',
      metadata: JSON.stringify({ r }),
      intro: mrkdwn`${cardSummary(rec)}\n\nApproving *disables their 2FA* now; they enrol again at next login.`,
      fields: [totpField],
    },
  };
};

const openReject: ActionHandler = async (ctx, value) => {
  const { r } = parseButtonValue(refSchema, value, '/2fa status USERNAME');
  const rec = await ctx.services.twofaRecovery.get(r);
  if (rec.target_user_id === ctx.actor.user.id) throw new UserError(`Recovery #${rec.id} is for your own account: another admin decides.`);
  if (!['verifying', 'pending'].includes(rec.status) || rec.expires_at <= new Date()) throw new ConflictError(describeDecided(rec));
  return {
    kind: 'modal',
    modal: {
      callbackId: TWOFA_VIEWS.reject,
      title: 'Reject 2FA reset',
      submit: 'Reject',
      metadata: JSON.stringify({ r }),
      intro: cardSummary(rec),
      fields: [{ id: RECOVERY_FIELDS.reason, label: 'Reason for rejection', kind: 'multiline', maxLength: 500, hint: 'Required. Shown on the card.' }],
    },
  };
};

async function decide(ctx: InteractionContext, id: number, fn: () => Promise<Recovery>, done: (r: Recovery) => Mrkdwn): Promise<ViewReply> {
  try {
    const rec = await fn();
    const fromElsewhere = ctx.source?.messageTs && ctx.source.messageTs !== (await ctx.services.twofaRecovery.cardRef(rec))?.ts;
    return { kind: 'close', notice: { text: done(rec) }, ...(fromElsewhere ? { updateSource: await ctx.services.twofaRecovery.card(rec) } : {}) };
  } catch (e) {
    if (e instanceof ConflictError) {
      await ctx.services.twofaRecovery
        .get(id)
        .then((r) => ctx.services.twofaRecovery.refreshCard(r))
        .catch(() => {});
      return { kind: 'close', notice: { text: mrkdwn`:information_source: ${e.mrkdwn ?? md.lines(e.message)}` } };
    }
    throw e;
  }
}

const submitApprove: ViewHandler = async (ctx, values, metadata) => {
  const { r } = parseModalMetadata(refSchema, metadata);
  const totp = typeof values.totp === 'string' ? values.totp : undefined;
  return decide(
    ctx,
    r,
    () => ctx.services.twofaRecovery.approve(ctx.actor, r, totp),
    (rec) => mrkdwn`:white_check_mark: Approved recovery #${rec.id}: 2FA of ${md.bold(rec.target_username)} is disabled; they were told to enrol again at next login.`,
  );
};

const submitReject: ViewHandler = async (ctx, values, metadata) => {
  const { r } = parseModalMetadata(refSchema, metadata);
  const reason = typeof values[RECOVERY_FIELDS.reason] === 'string' ? (values[RECOVERY_FIELDS.reason] as string) : '';
  return decide(
    ctx,
    r,
    () => ctx.services.twofaRecovery.reject(ctx.actor, r, reason),
    (rec) => mrkdwn`:no_entry: Rejected recovery #${rec.id} for ${md.bold(rec.target_username)}.`,
  );
};

export const twofaCommand: CommandModule = {
  command: '/2fa',
  summary: 'two-factor authentication: status, adoption, admins without 2FA, failures, identity-checked recovery',
  subcommands: [status, adoption, adminsWithout, failures, recover],
  actions: {
    [TWOFA_ACTIONS.remind]: remind,
    [TWOFA_ACTIONS.codes]: enterCodes,
    [TWOFA_ACTIONS.resend]: resend,
    [TWOFA_ACTIONS.submit]: submitForApproval,
    [TWOFA_ACTIONS.cancel]: cancel,
    [TWOFA_ACTIONS.approve]: openApprove,
    [TWOFA_ACTIONS.reject]: openReject,
  },
  views: {
    [TWOFA_VIEWS.recover]: submitRecover,
    [TWOFA_VIEWS.verify]: submitVerify,
    [TWOFA_VIEWS.approve]: submitApprove,
    [TWOFA_VIEWS.reject]: submitReject,
  },
  // No member interactions: every button and form here is for admins (the router refuses others first).
};
