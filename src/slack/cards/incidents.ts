import { ago, STATUS_EMOJI, type ComponentReport, type HealthReport, type Status } from '../../services/health.js';
import { ACK_ACTION, type IncidentRow } from '../../services/incidents.js';
import { md, type Block, type Message } from '../../ui.js';

/** Health incident messages (one per incident, updated; status changes threaded under it). */

/** The thread line saying who acknowledged. */
export function acknowledgedLine(inc: IncidentRow): Message {
  return { text: `:raising_hand: ${whoAcked(inc)} acknowledged this incident at ${md.date(inc.acknowledged_at)}.` };
}

export function whoAcked(inc: IncidentRow): string {
  const slack = inc.acknowledged_by_slack ? md.user(inc.acknowledged_by_slack) : '';
  const name = inc.acknowledged_by_name ? md.escape(inc.acknowledged_by_name) : 'someone';
  return slack ? `${slack} (${name})` : name;
}

const duration = (from: Date, to: Date) => ago(new Date(to).getTime() - new Date(from).getTime());

/** The component lines shown on incident messages and the App Home: worst first. */
export function componentLines(report: HealthReport | null, opts: { onlyProblems?: boolean } = {}): string[] {
  if (!report) return ['_No health report yet._'];
  const order: Record<string, number> = { unhealthy: 0, degraded: 1, unknown: 2, healthy: 3, not_configured: 4 };
  const comps = [...report.components]
    .filter((c) => !opts.onlyProblems || c.status === 'degraded' || c.status === 'unhealthy' || c.status === 'unknown')
    .sort((a, b) => order[a.status] - order[b.status]);
  return comps.map(componentLine);
}

export function componentLine(c: ComponentReport): string {
  if (c.status === 'not_configured') return `${STATUS_EMOJI[c.status]} *${c.name}* — ${md.escape(c.summary)}`;
  return `${STATUS_EMOJI[c.status]} *${c.name}* — ${c.status}: ${md.escape(c.summary)}`;
}

/** The one incident message, in its current state. */
export function renderIncident(inc: IncidentRow, now = new Date()): Message {
  const report = inc.last_report;
  const blocks: Block[] = [];
  if (inc.status === 'resolved') {
    const lasted = duration(inc.opened_at, inc.resolved_at ?? now);
    blocks.push({ type: 'header', text: `:white_check_mark: Health incident #${inc.id} resolved` });
    blocks.push({
      type: 'text',
      text:
        `*Resolved* at ${md.date(inc.resolved_at)} after *${lasted}* (opened ${md.date(inc.opened_at)}).\n` +
        `Started ${inc.first_status}, worst ${inc.worst_status}` +
        (inc.changes ? `, ${inc.changes} status change${inc.changes === 1 ? '' : 's'}` : '') +
        '. All components are healthy again.',
    });
    blocks.push({ type: 'context', text: inc.acknowledged_at ? `Acknowledged by ${whoAcked(inc)} at ${md.date(inc.acknowledged_at)}` : 'Never acknowledged.' });
    return { text: `Health incident #${inc.id} resolved after ${lasted}`, blocks };
  }
  const problems = componentLines(report, { onlyProblems: true });
  blocks.push({ type: 'header', text: `${STATUS_EMOJI[inc.last_status]} Health incident #${inc.id}: ${inc.last_status}` });
  blocks.push({
    type: 'text',
    text:
      `*Overall ${inc.last_status}* since ${md.date(inc.opened_at)} (${duration(inc.opened_at, inc.last_checked_at)} so far; ` +
      `worst ${inc.worst_status}) · last checked ${md.date(inc.last_checked_at)}`,
  });
  blocks.push({ type: 'text', text: problems.length ? problems.join('\n') : '_No component reported a problem in the last check._' });
  const healthy = (report?.components ?? []).filter((c) => c.status === 'healthy').map((c) => c.name);
  if (healthy.length) blocks.push({ type: 'context', text: `Healthy: ${healthy.join(', ')}` });
  if (inc.acknowledged_at) {
    blocks.push({ type: 'context', text: `:raising_hand: Acknowledged by ${whoAcked(inc)} at ${md.date(inc.acknowledged_at)}` });
  } else {
    blocks.push({ type: 'context', text: 'Not acknowledged yet.' });
    blocks.push({
      type: 'buttons',
      buttons: [{ text: 'Acknowledge', actionId: ACK_ACTION, value: JSON.stringify({ i: inc.id }), style: 'primary' }],
    });
  }
  blocks.push({ type: 'context', text: 'Details: `/health` · `/health pool`' });
  return { text: `Health incident #${inc.id}: overall ${inc.last_status} since ${md.date(inc.opened_at)}`, blocks };
}

export function changeLine(from: Status, inc: IncidentRow): Message {
  const problems = componentLines(inc.last_report, { onlyProblems: true });
  return {
    text:
      `${STATUS_EMOJI[inc.last_status]} ${md.date(inc.last_checked_at)} — status changed *${from} → ${inc.last_status}*` +
      (problems.length ? `\n${problems.join('\n')}` : ''),
  };
}

export function resolvedLine(inc: IncidentRow): Message {
  return {
    text: `:white_check_mark: ${md.date(inc.resolved_at)} — healthy again; resolved after ${duration(inc.opened_at, inc.resolved_at ?? new Date())}.`,
  };
}
