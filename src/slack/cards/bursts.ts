import type { BurstAlertData } from '../../services/bursts.js';
import type { Masker } from '../../services/masking.js';
import { md, mrkdwn, type SafeMessage } from '../../ui.js';

/** The failed-login burst / 2FA failure spike alert, updated in place while its window lasts. */
export function burstMessage(data: BurstAlertData, masker: Masker): SafeMessage {
  const { alert: a, windowSec, threshold, label } = data;
  const ip = masker.ip(a.ip_address);
  const window = humanWindow(windowSec);
  const ends = new Date(a.window_start.getTime() + windowSec * 1000);
  // What anyone typed into the login form: data, each in its own code span.
  const names = md.join(a.usernames.slice(0, 10).map((u) => md.code(masker.text(u))), ', ');
  const extra = a.usernames.length > 10 ? mrkdwn` and ${a.usernames.length - 10} more` : '';
  const title = data.kind === 'failed_login' ? 'Failed-login burst' : '2FA failure spike';
  const investigate = md.code(data.kind === 'failed_login' ? `/audit failed-logins window:${window}` : `/2fa failures window:${window}`);
  return {
    text: mrkdwn`:rotating_light: ${title} from ${ip}: ${a.count} ${label} since ${md.date(a.window_start)}`,
    blocks: [
      { type: 'header', text: `${title} from ${ip}` },
      {
        type: 'fields',
        fields: [
          mrkdwn`*${label[0].toUpperCase()}${label.slice(1)}*\n${a.count} (threshold: more than ${threshold} in ${window})`,
          mrkdwn`*IP address*\n${md.code(ip)}`,
          mrkdwn`*First*\n${md.date(a.first_seen)}`,
          mrkdwn`*Latest*\n${md.date(a.last_seen)}`,
        ],
      },
      { type: 'text', text: a.usernames.length ? mrkdwn`*Accounts tried*\n${names}${extra}` : mrkdwn`*Accounts tried*\n—` },
      {
        type: 'context',
        text: mrkdwn`One alert per IP per ${window}; this message is updated with the count until ${md.date(ends)}. Investigate: ${investigate}`,
      },
    ],
  };
}

function humanWindow(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}
