import type { OutageState } from '../../services/database-outage.js';
import { md, type Message } from '../../ui.js';

/** The database-outage alert (posted without the database) and its resolution. */
export function databaseDownMessage(state: OutageState): Message {
  const text =
    `:red_circle: *Database unreachable* — Warden cannot reach PostgreSQL since ${md.date(new Date(state.since))}: ${state.error}.\n` +
    'Health checks, alerts, approvals and every command that reads accounts fail until it is back.\n' +
    'Check that the database service is running, the credentials and port in DATABASE_URL, and `max_connections`.';
  return { text: `Database unreachable: ${state.error}`, blocks: [{ type: 'text', text }] };
}

export function databaseBackLine(minutes: number): Message {
  return { text: `:large_green_circle: Database reachable again after about ${minutes} min.` };
}

export function databaseResolvedMessage(minutes: number, error: string): Message {
  return {
    text: `Resolved: database was unreachable for about ${minutes} min`,
    blocks: [{ type: 'text', text: `:white_check_mark: *Resolved* — PostgreSQL was unreachable for about ${minutes} min (${error}).` }],
  };
}
