import crypto from 'node:crypto';
import type { App } from '@slack/bolt';
import { ForbiddenError, NotLinkedError, StepUpError, UserError } from '../errors.js';
import { flatLineLogger, type Logger } from '../logger.js';
import type { Metrics, Outcome, RequestKind } from '../metrics.js';

/**
 * One structured info line per Slack request (slash command, click, form submission, event),
 * and the request metrics, from a single wrapper around Bolt's `processEvent` — the one
 * entry point both the HTTP and the Socket Mode receiver call. The router stays as it is
 * apart from asking `requestRef()` for the reference it shows users, so the "ref" in an
 * apology is the request id of this line.
 *
 * The line carries ids only: the Slack user and team, the application account id, the
 * command or action id, the outcome and the durations. Never the command text or form
 * values (they can hold e-mails, reasons, TOTP codes).
 */

interface RequestState {
  id: string;
  outcome: Outcome;
  account?: number;
  /** Set (true) only when a step-up code was refused: the line carries it then. */
  stepUp?: true;
}

/**
 * Each request's state, found by the body object Bolt hands to every listener (the very
 * object `processEvent` received). A WeakMap rather than AsyncLocalStorage: ALS turns on
 * promise hooks for every promise the process creates (~0.1 ms per request, #15).
 */
const states = new WeakMap<object, RequestState>();
const stateOf = (body: unknown) => (body !== null && typeof body === 'object' ? states.get(body) : undefined);

/** 8 hex characters; randomUUID draws from a cached pool, randomBytes asks the OS every time. */
const newRequestId = () => crypto.randomUUID().slice(0, 8);

/** How an error ends a request: a refusal (not allowed, not linked), the user's mistake, or our failure. */
export function outcomeOf(e: unknown): Outcome {
  if (e instanceof ForbiddenError || e instanceof NotLinkedError) return 'refused';
  if (e instanceof UserError) return 'user_error';
  return 'failed';
}

/**
 * Records how the request of `body` ended because of `e`, and returns the reference to show
 * the user: that request's id, else (no request) a fresh random one.
 */
export function requestRef(body: unknown, e?: unknown): string {
  const state = stateOf(body);
  if (state && e !== undefined) {
    state.outcome = outcomeOf(e);
    if (e instanceof StepUpError) state.stepUp = true;
  }
  return state?.id ?? newRequestId();
}

/** Marks the request of `body` as a repeated delivery that was ignored. */
export function markDuplicate(body: unknown): void {
  const state = stateOf(body);
  if (state) state.outcome = 'duplicate';
}

/** Records which application account the request of `body` acts as (its log line says so). */
export function noteAccount(body: unknown, accountId: number): void {
  const state = stateOf(body);
  if (state) state.account = accountId;
}

/** What kind of request a Slack body is, and its command / action / callback id. */
export function describeBody(body: any): { kind: RequestKind; id: string; user?: string; team?: string } {
  if (typeof body?.command === 'string') return { kind: 'command', id: body.command, user: body.user_id, team: body.team_id };
  if (body?.type === 'block_actions') {
    return { kind: 'action', id: String(body.actions?.[0]?.action_id ?? 'unknown'), user: body.user?.id, team: body.team?.id ?? body.user?.team_id };
  }
  if (body?.type === 'view_submission' || body?.type === 'view_closed') {
    return { kind: 'view', id: String(body.view?.callback_id ?? 'unknown'), user: body.user?.id, team: body.team?.id ?? body.user?.team_id };
  }
  if (body?.type === 'event_callback') return { kind: 'event', id: String(body.event?.type ?? 'unknown'), user: body.event?.user, team: body.team_id };
  return { kind: 'event', id: String(body?.type ?? 'unknown') };
}

/** A modal submission answered with field errors is the user's mistake, not success. */
function ackOutcome(response: unknown): Outcome | undefined {
  return (response as { response_action?: string } | undefined)?.response_action === 'errors' ? 'user_error' : undefined;
}

export function instrumentApp(app: App, deps: { logger: Logger; metrics?: Metrics }): void {
  const { logger, metrics } = deps;
  // One pino call per request with a flat object of ids, enums and numbers: no nested keys for
  // the wildcard redaction paths to walk (flatLineLogger), no spread objects, each value
  // computed once (#15: the line was about half of Warden's extra CPU per request).
  const log = flatLineLogger(logger, { component: 'request' });

  const processEvent = app.processEvent.bind(app);
  app.processEvent = async (event) => {
    const started = performance.now();
    const what = describeBody(event.body);
    const state: RequestState = { id: newRequestId(), outcome: 'ok' };
    let ackMs: number | undefined;
    const ack = event.ack;
    event.ack = async (response?: any) => {
      ackMs ??= performance.now() - started;
      if (state.outcome === 'ok') state.outcome = ackOutcome(response) ?? 'ok';
      return ack(response);
    };
    if (event.body !== null && typeof event.body === 'object') states.set(event.body, state);
    try {
      await processEvent(event);
    } catch (e) {
      state.outcome = outcomeOf(e);
      throw e;
    } finally {
      const totalMs = performance.now() - started;
      if (metrics) {
        metrics.requests.inc({ kind: what.kind, id: metrics.idLabel(what.id), outcome: state.outcome });
        metrics.handlerSeconds.observe({ kind: what.kind, outcome: state.outcome }, totalMs / 1000);
        if (ackMs !== undefined) metrics.ackSeconds.observe({ kind: what.kind }, ackMs / 1000);
      }
      // Fields left undefined are not written.
      log.info(
        {
          requestId: state.id,
          kind: what.kind,
          id: what.id,
          slackUser: what.user,
          team: what.team,
          account: state.account,
          outcome: state.outcome,
          stepUpFailed: state.stepUp,
          retryNum: event.retryNum || undefined,
          retryReason: event.retryNum ? event.retryReason : undefined,
          ackMs: ackMs === undefined ? undefined : Math.round(ackMs),
          durationMs: Math.round(totalMs),
        },
        'slack request',
      );
    }
  };
}
