import { Mrkdwn } from './ui.js';

/**
 * Domain errors carry text that is safe to show to the Slack user who caused them.
 * The Slack layer's one error handler turns them into ephemeral replies (or modal
 * field errors when `field` is set); anything else becomes an apology with a
 * correlation id that matches the log line.
 */
export class UserError extends Error {
  readonly kind: string = 'user';
  /**
   * The message as built mrkdwn, when it carries markup Warden means (a mention, a link). A
   * plain-string message is shown as data: escaped, its backticks and asterisks kept.
   */
  readonly mrkdwn?: Mrkdwn;
  constructor(
    message: string | Mrkdwn,
    /** Modal field (block id) the message belongs to, when it came from a form. */
    readonly field?: string,
    /** Usage text shown under the message, for command grammar mistakes. */
    readonly usage?: string,
  ) {
    super(message instanceof Mrkdwn ? message.text : message);
    if (message instanceof Mrkdwn) this.mrkdwn = message;
    this.name = new.target.name;
  }
}

export class ForbiddenError extends UserError {
  override readonly kind = 'forbidden';
}

export class NotFoundError extends UserError {
  override readonly kind = 'not_found';
}

export class ConflictError extends UserError {
  override readonly kind = 'conflict';
}

/** The acting Slack user has no application account linked. */
export class NotLinkedError extends UserError {
  override readonly kind = 'not_linked';
}

/** Step-up verification failed (wrong, replayed or missing TOTP code). */
export class StepUpError extends UserError {
  override readonly kind = 'step_up';
}

/** Several field errors at once, for modal submissions. */
export class ValidationErrors extends UserError {
  override readonly kind = 'validation';
  constructor(readonly fields: Record<string, string>) {
    super(Object.values(fields).join(' '));
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError;
}
