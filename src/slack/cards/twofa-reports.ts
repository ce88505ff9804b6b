import { mrkdwn, type SafeMessage } from '../../ui.js';

/** The DM `/2fa admins-without remind` sends to an admin without 2FA. */
export function twofaReminderDm(username: string, sentBy: string): SafeMessage {
  return {
    text: mrkdwn`Please enable two-factor authentication on your admin account.`,
    blocks: [
      {
        type: 'text',
        text: mrkdwn`:closed_lock_with_key: Hi ${username}, your admin account has no two-factor authentication. Admin accounts must use 2FA: log in and go to *Profile → Enable Two-Factor Authentication*.`,
      },
      { type: 'context', text: mrkdwn`Reminder sent by ${sentBy} through Warden.` },
    ],
  };
}
