import { isLocked, type UserRow } from '../src/domain/user.js';
import type { Services } from '../src/services/index.js';
import { accountStatus } from '../src/services/user-admin.js';
import { md, mrkdwn, type Block, type Button, type Message, type Mrkdwn } from '../src/ui.js';

/** The account card of `/users show` (and of every change that returns one), with its buttons. */

export function statusText(u: UserRow): Mrkdwn {
  switch (accountStatus(u)) {
    case 'disabled':
      return mrkdwn`:no_entry: disabled`;
    case 'locked':
      return mrkdwn`:lock: locked until ${md.date(u.locked_until)}`;
    default:
      return mrkdwn`active`;
  }
}

export async function renderUserCard(services: Services, u: UserRow): Promise<Message> {
  const locked = isLocked(u);
  const fields = [
    mrkdwn`*Role*\n${u.role}`,
    mrkdwn`*Dispatch area*\n${u.dispatch_area ?? '—'}`,
    mrkdwn`*E-mail*\n${services.masker.email(u.email)}`,
    mrkdwn`*Status*\n${statusText(u)}`,
    mrkdwn`*Failed attempts*\n${u.failed_login_attempts ?? 0}${u.last_failed_login ? mrkdwn` (last ${md.date(u.last_failed_login)})` : ''}`,
    mrkdwn`*2FA*\n${u.two_fa_enabled ? 'enabled' : 'not enabled'}`,
    mrkdwn`*Created*\n${md.date(u.created_at)}`,
    mrkdwn`*Last login*\n${u.last_login ? md.date(u.last_login) : 'never'}`,
  ];
  const blocks: Block[] = [
    { type: 'header', text: u.username },
    { type: 'fields', fields },
  ];
  const actions = userActionButtons(u);
  if (actions.length) blocks.push({ type: 'buttons', buttons: actions });
  const status = accountStatus(u);
  return { text: mrkdwn`${u.username}: ${u.role}${locked ? `, ${status}` : ''}`, blocks };
}

/**
 * Buttons offered on an account card: the next likely actions. Each handler re-checks who
 * clicked and re-reads the account; the button only names it (`c` marks "from a card", so the
 * card can be refreshed after the change).
 */
export function userActionButtons(u: UserRow): Button[] {
  const v = JSON.stringify({ u: u.username, c: 1 });
  const out: Button[] = [];
  if (accountStatus(u) === 'locked') out.push({ text: 'Unlock', actionId: 'users:unlock', value: v, style: 'primary' });
  out.push({ text: 'Reset password', actionId: 'users:reset', value: v });
  out.push({ text: 'Edit', actionId: 'users:edit', value: v });
  out.push({ text: 'Change role', actionId: 'users:role', value: v });
  out.push({ text: 'Delete', actionId: 'users:delete', value: v, style: 'danger' });
  return out;
}
