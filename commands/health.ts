import { z } from 'zod';
import {
  BAND_EMOJI,
  intervalText,
  sparkline,
  STATUS_EMOJI,
  type HealthReport,
  type JobHealth,
  type PoolReport,
} from '../src/services/health.js';
import { ACK_ACTION, type IncidentRow } from '../src/services/incidents.js';
import { componentLine, incidentName, renderIncident } from '../src/slack/cards/incidents.js';
import type { OutboxStats } from '../src/services/outbox.js';
import { md, type Block, type Message } from '../src/ui.js';
import { noArgs, parseArgs } from './grammar.js';
import { parseButtonValue } from './shared.js';
import type { CommandModule, Subcommand } from './types.js';

/**
 * `/health`: the guide's "System Health" table and "Connection Pool Dashboard" in Slack.
 *
 * Role: any linked account. On-call people read alerts and take incidents without being
 * application admins; what /health shows (figures, thresholds, job names, incident state)
 * names no account and changes nothing. Unlinked Slack users are refused by the router.
 * The Acknowledge button is open to linked accounts for the same reason (it only records
 * who took the incident, audited as `incident_acknowledged`).
 */


const status: Subcommand<z.infer<typeof noArgs>> = {
  name: 'status',
  usage: 'status',
  summary: 'overall status and each component with its figure and thresholds, job staleness, open incidents (same as `/health`)',
  role: 'linked',
  parse: (words) => parseArgs(words, { schema: noArgs, usage: '`/health` or `/health status`' }),
  run: async ({ services }) => {
    const [report, open, outbox] = await Promise.all([
      services.health.evaluate(),
      services.incidents.openIncidents(),
      services.outbox.stats().catch(() => null),
    ]);
    return { kind: 'message', message: renderHealth(report, open, outbox) };
  },
};

const pool: Subcommand<z.infer<typeof noArgs>> = {
  name: 'pool',
  usage: 'pool',
  summary: 'connection usage vs max_connections, the band, the 10-minute trend and the recommendation',
  role: 'linked',
  parse: (words) => parseArgs(words, { schema: noArgs, usage: '`/health pool`' }),
  run: async ({ services }) => ({ kind: 'message', message: renderPool(await services.health.pool()) }),
};

export function renderHealth(report: HealthReport, open: IncidentRow[] = [], outbox: OutboxStats | null = null): Message {
  const blocks: Block[] = [
    { type: 'header', text: `${STATUS_EMOJI[report.status]} System health: ${report.status}` },
    { type: 'context', text: `Checked ${md.date(new Date(report.checkedAt))} · overall = the worst component (not configured ones excepted)` },
  ];
  const lines: string[] = [];
  for (const c of report.components) {
    if (c.key === 'scheduler') continue;
    lines.push(String(componentLine(c)));
    for (const d of c.details ?? []) lines.push(`      ◦ ${md.escape(d)}`);
    lines.push(`      _${md.escape(c.thresholds)}_`);
  }
  blocks.push({ type: 'text', text: lines.join('\n') });
  const sched = report.components.find((c) => c.key === 'scheduler');
  if (sched) {
    const jobLines = report.jobs.map(jobLine);
    blocks.push({
      type: 'text',
      text: `${componentLine(sched)}\n${jobLines.length ? jobLines.join('\n') : '_No job runs recorded yet._'}\n      _${md.escape(sched.thresholds)}_`,
    });
  }
  if (open.length) {
    blocks.push({
      type: 'text',
      text: open
        .map(
          (i) =>
            `:rotating_light: *Open incident #${i.id}* — ${i.last_status} since ${md.date(i.opened_at)} · ${md.escape(incidentName(i))}` +
            (i.acknowledged_at ? ` · acknowledged by ${i.acknowledged_by_slack ? md.user(i.acknowledged_by_slack) : md.escape(i.acknowledged_by_name ?? 'someone')}` : ' · not acknowledged'),
        )
        .join('\n'),
    });
  }
  if (outbox) blocks.push({ type: 'text', text: outboxLine(outbox) });
  blocks.push({ type: 'context', text: 'Connection usage and trend: `/health pool`' });
  return { text: `System health: ${report.status}`, blocks };
}

/** The alert outbox's backlog: alerts decided but not yet in Slack (Slack down, rate limited). */
function outboxLine(o: OutboxStats): string {
  if (!o.pending) return ':incoming_envelope: *Alert delivery* — nothing waiting in the outbox';
  const oldest = o.oldestPendingAt ? ` (oldest queued ${md.date(new Date(o.oldestPendingAt))})` : '';
  const parked = o.parked ? `, ${o.parked} refused by Slack and retried slowly` : '';
  const last = o.lastError ? ` — last error: ${md.escape(o.lastError.slice(0, 200))}` : '';
  return `:incoming_envelope: *Alert delivery* — ${o.pending} alert${o.pending === 1 ? '' : 's'} waiting${oldest}${parked}${last}`;
}

function jobLine(j: JobHealth): string {
  const flag = j.stale || j.failing ? ':warning:' : ':white_check_mark:';
  const bits = [
    intervalText(j.intervalMs),
    j.lastSuccess ? `last success ${md.date(new Date(j.lastSuccess))}` : 'never succeeded',
    `${j.runs} run${j.runs === 1 ? '' : 's'}, ${j.failures} failed`,
  ];
  const tag = j.stale ? ' *STALE*' : j.failing ? ' *FAILING*' : '';
  return `      ${flag} \`${md.escape(j.job)}\`${tag} — ${bits.join(' · ')} — ${md.escape(j.note)}`;
}

const ARROWS = { increasing: ':arrow_upper_right:', decreasing: ':arrow_lower_right:', stable: ':arrow_right:', 'not enough samples': ':grey_question:' };

export function renderPool(p: PoolReport): Message {
  const legend = `Bands: <${p.bands.warning}% healthy · ${p.bands.warning}–${p.bands.critical}% warning · ${p.bands.critical}–${p.bands.danger}% critical · >${p.bands.danger}% danger`;
  const blocks: Block[] = [];
  if (!p.reading || !p.band) {
    blocks.push({ type: 'header', text: `${STATUS_EMOJI.unknown} Connection pool: unknown` });
    blocks.push({ type: 'text', text: `Could not measure: ${md.escape(p.error ?? 'no answer')}\n*Recommendation:* ${p.recommendation}` });
  } else {
    const r = p.reading;
    blocks.push({ type: 'header', text: `${BAND_EMOJI[p.band]} Connection pool: ${r.percent}% — ${p.band}` });
    blocks.push({
      type: 'fields',
      fields: [
        `*In use*\n${r.inUse} of ${r.max} connections (\`SHOW max_connections\`)`,
        `*Available*\n${Math.max(0, r.max - r.inUse)}`,
        `*Band*\n${BAND_EMOJI[p.band]} ${p.band}`,
        `*Warden's own pool*\n${r.own.total} open, ${r.own.idle} idle, ${r.own.waiting} waiting (max ${r.own.max})`,
      ],
    });
  }
  const t = p.trend;
  const trendText =
    t.samples.length >= 2
      ? `${ARROWS[t.direction]} *${t.direction}* (${t.change! >= 0 ? '+' : ''}${t.change} points) \`${sparkline(t.samples.map((s) => s.percent))}\`\n` +
        `min ${t.min}% · avg ${t.avg}% · max ${t.max}% over ${t.samples.length} samples since ${md.date(new Date(t.samples[0].at))}`
      : `${ARROWS['not enough samples']} not enough samples yet (${t.samples.length}); the health job stores one each run.`;
  blocks.push({ type: 'text', text: `*Trend (last 10 minutes)*\n${trendText}` });
  if (p.reading) blocks.push({ type: 'text', text: `*Recommendation:* ${p.recommendation}` });
  blocks.push({ type: 'context', text: md.escape(legend) });
  return { text: p.reading ? `Connection pool ${p.reading.percent}% (${p.band})` : 'Connection pool: unknown', blocks };
}

const ackValue = z.object({ i: z.number().int().positive() }).strict();

export const healthCommand: CommandModule = {
  command: '/health',
  summary: 'system health: components, thresholds, jobs, connection pool (any linked account)',
  defaultSubcommand: 'status',
  subcommands: [status, pool],
  actions: {
    [ACK_ACTION]: async (ctx, value) => {
      const { i } = parseButtonValue(ackValue, value, '/health');
      const inc = await ctx.services.incidents.acknowledge(ctx.actor, i);
      return { kind: 'update', message: renderIncident(inc) };
    },
  },
  memberInteractions: [ACK_ACTION],
};
