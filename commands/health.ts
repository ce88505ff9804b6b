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
import { md, mrkdwn, type Block, type Message, type Mrkdwn } from '../src/ui.js';
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
    { type: 'context', text: mrkdwn`Checked ${md.date(new Date(report.checkedAt))} · overall = the worst component (not configured ones excepted)` },
  ];
  const lines: Mrkdwn[] = [];
  for (const c of report.components) {
    if (c.key === 'scheduler') continue;
    lines.push(componentLine(c));
    for (const d of c.details ?? []) lines.push(mrkdwn`      ◦ ${d}`);
    lines.push(mrkdwn`      _${c.thresholds}_`);
  }
  blocks.push({ type: 'text', text: md.join(lines, '\n') });
  const sched = report.components.find((c) => c.key === 'scheduler');
  if (sched) {
    const jobLines = report.jobs.map(jobLine);
    blocks.push({
      type: 'text',
      text: mrkdwn`${componentLine(sched)}\n${jobLines.length ? md.join(jobLines, '\n') : mrkdwn`_No job runs recorded yet._`}\n      _${sched.thresholds}_`,
    });
  }
  if (open.length) {
    blocks.push({
      type: 'text',
      text: md.join(
        open.map(
          (i) =>
            mrkdwn`:rotating_light: *Open incident #${i.id}* — ${i.last_status} since ${md.date(i.opened_at)} · ${incidentName(i)}${
              i.acknowledged_at
                ? mrkdwn` · acknowledged by ${i.acknowledged_by_slack ? md.user(i.acknowledged_by_slack) : md.text(i.acknowledged_by_name ?? 'someone')}`
                : ' · not acknowledged'
            }`,
        ),
        '\n',
      ),
    });
  }
  if (outbox) blocks.push({ type: 'text', text: outboxLine(outbox) });
  blocks.push({ type: 'context', text: mrkdwn`Connection usage and trend: \`/health pool\`` });
  return { text: mrkdwn`System health: ${report.status}`, blocks };
}

/** The alert outbox's backlog: alerts decided but not yet in Slack (Slack down, rate limited). */
function outboxLine(o: OutboxStats): Mrkdwn {
  if (!o.pending) return mrkdwn`:incoming_envelope: *Alert delivery* — nothing waiting in the outbox`;
  const oldest = o.oldestPendingAt ? mrkdwn` (oldest queued ${md.date(new Date(o.oldestPendingAt))})` : '';
  const parked = o.parked ? `, ${o.parked} refused by Slack and retried slowly` : '';
  const last = o.lastError ? mrkdwn` — last error: ${o.lastError.slice(0, 200)}` : '';
  return mrkdwn`:incoming_envelope: *Alert delivery* — ${o.pending} alert${o.pending === 1 ? '' : 's'} waiting${oldest}${parked}${last}`;
}

function jobLine(j: JobHealth): Mrkdwn {
  const flag = j.stale || j.failing ? ':warning:' : ':white_check_mark:';
  const bits = [
    intervalText(j.intervalMs),
    j.lastSuccess ? mrkdwn`last success ${md.date(new Date(j.lastSuccess))}` : 'never succeeded',
    `${j.runs} run${j.runs === 1 ? '' : 's'}, ${j.failures} failed`,
  ];
  const tag = j.stale ? ' *STALE*' : j.failing ? ' *FAILING*' : '';
  return mrkdwn`      ${flag} ${md.code(j.job)}${tag} — ${md.join(bits, ' · ')} — ${j.note}`;
}

const ARROWS = { increasing: ':arrow_upper_right:', decreasing: ':arrow_lower_right:', stable: ':arrow_right:', 'not enough samples': ':grey_question:' };

export function renderPool(p: PoolReport): Message {
  const legend = `Bands: <${p.bands.warning}% healthy · ${p.bands.warning}–${p.bands.critical}% warning · ${p.bands.critical}–${p.bands.danger}% critical · >${p.bands.danger}% danger`;
  const blocks: Block[] = [];
  if (!p.reading || !p.band) {
    blocks.push({ type: 'header', text: `${STATUS_EMOJI.unknown} Connection pool: unknown` });
    blocks.push({ type: 'text', text: mrkdwn`Could not measure: ${p.error ?? 'no answer'}\n*Recommendation:* ${p.recommendation}` });
  } else {
    const r = p.reading;
    blocks.push({ type: 'header', text: `${BAND_EMOJI[p.band]} Connection pool: ${r.percent}% — ${p.band}` });
    blocks.push({
      type: 'fields',
      fields: [
        mrkdwn`*In use*\n${r.inUse} of ${r.max} connections (\`SHOW max_connections\`)`,
        mrkdwn`*Available*\n${Math.max(0, r.max - r.inUse)}`,
        mrkdwn`*Band*\n${BAND_EMOJI[p.band]} ${p.band}`,
        mrkdwn`*Warden's own pool*\n${r.own.total} open, ${r.own.idle} idle, ${r.own.waiting} waiting (max ${r.own.max})`,
      ],
    });
  }
  const t = p.trend;
  const trendText =
    t.samples.length >= 2
      ? mrkdwn`${ARROWS[t.direction]} ${md.bold(t.direction)} (${t.change! >= 0 ? '+' : ''}${t.change ?? 0} points) ${md.code(sparkline(t.samples.map((s) => s.percent)))}\nmin ${t.min ?? 0}% · avg ${t.avg ?? 0}% · max ${t.max ?? 0}% over ${t.samples.length} samples since ${md.date(new Date(t.samples[0].at))}`
      : mrkdwn`${ARROWS['not enough samples']} not enough samples yet (${t.samples.length}); the health job stores one each run.`;
  blocks.push({ type: 'text', text: mrkdwn`*Trend (last 10 minutes)*\n${trendText}` });
  if (p.reading) blocks.push({ type: 'text', text: mrkdwn`*Recommendation:* ${p.recommendation}` });
  blocks.push({ type: 'context', text: md.text(legend) });
  return { text: p.reading ? mrkdwn`Connection pool ${p.reading.percent}% (${p.band ?? 'unknown'})` : mrkdwn`Connection pool: unknown`, blocks };
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
