import type { OutageState } from '../../services/database-outage.js';
import { md, mrkdwn, type SafeMessage } from '../../ui.js';

/** The database-outage alert (posted without the database) and its resolution. */
export function databaseDownMessage(state: OutageState): SafeMessage {
  const text = mrkdwn`:red_circle: *Database unreachable* — Warden cannot reach PostgreSQL since ${md.date(new Date(state.since))}: ${state.error}.
Health checks, alerts, approvals and every command that reads accounts fail until it is back.
Check that the database service is running, the credentials and port in DATABASE_URL, and ${md.code('max_connections')}.`;
  return { text: mrkdwn`Database unreachable: ${state.error}`, blocks: [{ type: 'text', text }] };
}

export function databaseBackLine(minutes: number): SafeMessage {
  return { text: mrkdwn`:large_green_circle: Database reachable again after about ${minutes} min.` };
}

export function databaseResolvedMessage(minutes: number, error: string): SafeMessage {
  return {
    text: mrkdwn`Resolved: database was unreachable for about ${minutes} min`,
    blocks: [{ type: 'text', text: mrkdwn`:white_check_mark: *Resolved* — PostgreSQL was unreachable for about ${minutes} min (${error}).` }],
  };
}
