import { databaseBackLine, databaseDownMessage, databaseResolvedMessage } from '../slack/cards/database-outage.js';
import type { Services } from './index.js';

/**
 * When PostgreSQL itself is unreachable, nothing that lives in it works: the job runner
 * cannot lock or record a run, incidents cannot be stored and the outbox cannot queue.
 * Seed 000's first troubleshooting entry is exactly this ("Database Connection Errors"),
 * so on-call must still hear about it: this posts straight to ALERTS_CHANNEL (not through
 * the outbox), once per outage across replicas (a store key), and answers in the thread
 * when the database is back. The store is the only shared state it needs.
 */
const KEY = 'health:database-outage';
const TTL_SECONDS = 7 * 24 * 3600;

export interface OutageState {
  since: number;
  channel?: string;
  ts?: string;
  error: string;
}

/** Connection error codes are safe to show; messages may carry host names or users. */
export function describeDbError(e: unknown): string {
  const err = e as { code?: string; errno?: string; message?: string };
  const code = err?.code ?? err?.errno;
  if (code === 'ECONNREFUSED') return 'connection refused (ECONNREFUSED)';
  if (code === 'ENOTFOUND') return 'host not found (ENOTFOUND)';
  if (code === 'ETIMEDOUT' || /timeout/i.test(err?.message ?? '')) return 'connection timed out';
  if (code === '53300') return 'too many connections (53300)';
  if (code === '28P01' || code === '28000') return `authentication failed (${code})`;
  if (code === '57P01' || code === '57P03') return `server shutting down or starting up (${code})`;
  return code ? `error ${code}` : 'unreachable';
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', '53300', '57P01', '57P02', '57P03']);

/** True for errors that mean "PostgreSQL cannot be reached", as opposed to a bad query. */
export function isDatabaseConnectionError(e: unknown): boolean {
  const err = e as { code?: string; message?: string };
  if (!err) return false;
  if (err.code && (CONNECTION_CODES.has(err.code) || err.code.startsWith('08'))) return true;
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(err.message ?? '');
}

export async function reportDatabaseDown(services: Services, error: unknown): Promise<boolean> {
  const channel = services.config.ALERTS_CHANNEL;
  if (!channel) return false;
  const state: OutageState = { since: Date.now(), error: describeDbError(error) };
  if (!(await services.store.setIfAbsent(KEY, JSON.stringify(state), TTL_SECONDS))) return false;
  try {
    const ref = await services.chat.post(channel, databaseDownMessage(state));
    await services.store.set(KEY, JSON.stringify({ ...state, channel: ref.channel, ts: ref.ts }), TTL_SECONDS);
    return true;
  } catch (e) {
    // Not posted: let the next tick try again.
    await services.store.del(KEY);
    throw e;
  }
}

/** Called on every tick that reached the database: closes a reported outage. */
export async function reportDatabaseBack(services: Services): Promise<boolean> {
  const raw = await services.store.get(KEY);
  if (!raw) return false;
  const state = JSON.parse(raw) as OutageState;
  if (!state.ts || !state.channel) {
    await services.store.del(KEY);
    return false;
  }
  const minutes = Math.max(1, Math.round((Date.now() - state.since) / 60000));
  const ref = { channel: state.channel, ts: state.ts };
  await services.chat.post(state.channel, databaseBackLine(minutes), { threadTs: state.ts });
  await services.chat.update(ref, databaseResolvedMessage(minutes, state.error));
  await services.store.del(KEY);
  return true;
}
