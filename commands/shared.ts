import type { z } from 'zod';
import { UserError } from '../src/errors.js';
import { mrkdwn, type Modal, type ModalField, type Mrkdwn, type Text } from '../src/ui.js';
import { PROGRESS_VIEWS } from './types.js';

/** The step-up field of every modal that confirms a destructive or privilege-granting action. */
export const totpField: ModalField = {
  id: 'totp',
  label: 'Your 2FA code',
  kind: 'text',
  placeholder: '6-digit code from your authenticator app',
  hint: 'Step-up check: the current code of your own application account.',
  maxLength: 8,
};

/**
 * Parses a button's value (short JSON) with a zod schema. Anyone in a channel can click,
 * and a forged payload can carry anything: never trust a value that was not re-validated.
 */
export function parseButtonValue<S extends z.ZodType>(schema: S, value: string, whatToRunAgain: string): z.infer<S> {
  try {
    return schema.parse(JSON.parse(value));
  } catch {
    throw new UserError(`That button is not valid any more. Run \`${whatToRunAgain}\` again.`);
  }
}

/** Same for a modal's metadata (set by Warden when it opened the modal). */
export function parseModalMetadata<S extends z.ZodType>(schema: S, metadata: string): z.infer<S> {
  try {
    return schema.parse(JSON.parse(metadata));
  } catch {
    throw new UserError('This form is out of date. Close it and start again.');
  }
}

/**
 * "1 user matches `role:admin`", "12 users match …", "306 users (no filter)": the verb agrees
 * with the count, and a list without filters does not pretend to match anything.
 */
export function matchPhrase(countText: Mrkdwn | string, count: number, described: Mrkdwn | string): Mrkdwn {
  if (String(described) === 'no filter') return mrkdwn`${countText} (no filter)`;
  return mrkdwn`${countText} ${count === 1 ? 'matches' : 'match'} ${described}`;
}

/** The view of a progress reply (ack first): what is happening now, or how it ended. Nothing to submit. */
export function progressModal(title: string, text: Text, stage: 'working' | 'done' = 'working'): Modal {
  return { callbackId: PROGRESS_VIEWS[stage], title, close: 'Close', intro: text, fields: [] };
}
