import { IDENTITY_CHANGE_TEXT, type IdentityChange } from '../../services/identity-changes.js';
import { md, mrkdwn, type SafeBlock } from '../../ui.js';

/**
 * "Recent identity changes" on approval cards (issue 10): who changed whose e-mail or Slack
 * link, and when, so an approver sees a freshly re-pointed identity before deciding.
 * `whom` names the accounts looked at, for the "none" line.
 */
export function identityChangesBlock(changes: IdentityChange[], whom: string): SafeBlock {
  if (!changes.length) return { type: 'context', text: mrkdwn`Recent identity changes: none for ${whom}` };
  const lines = changes.map(
    (c) =>
      mrkdwn`• ${c.username}: ${IDENTITY_CHANGE_TEXT[c.kind]} by ${c.changedByUsername ?? 'the application'} ${md.date(c.at)}${
        c.summary ? mrkdwn` (${c.summary})` : ''
      }`,
  );
  return { type: 'text', text: mrkdwn`:warning: *Recent identity changes*\n${md.join(lines, '\n')}` };
}
