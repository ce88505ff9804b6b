import { ago, STATUS_EMOJI, type ComponentReport, type HealthReport, type Status } from '../../services/health.js';
import { ACK_ACTION, OVERALL, type IncidentRow } from '../../services/incidents.js';
import { md, mrkdwn, type Mrkdwn, type SafeBlock, type SafeMessage } from '../../ui.js';

/** Health incident messages (one per component incident, updated; status changes threaded under it). */

/** The component an incident is about, as last reported (absent for a pre-016 overall incident). */
export function incidentComponent(inc: IncidentRow): ComponentReport | undefined {
  return inc.last_report?.components.find((c) => c.key === inc.component);
}

/** "Database", "Application cache (Redis)"; "Overall" for an incident of before per-component incidents. */
export function incidentName(inc: IncidentRow): string {
  if (inc.component === OVERALL) return 'Overall';
  return incidentComponent(inc)?.name ?? inc.component;
}

/** The thread line saying who acknowledged. */
export function acknowledgedLine(inc: IncidentRow): SafeMessage {
  return { text: mrkdwn`:raising_hand: ${whoAcked(inc)} acknowledged this incident at ${md.date(inc.acknowledged_at)}.` };
}

export function whoAcked(inc: IncidentRow): Mrkdwn {
  const name = inc.acknowledged_by_name ?? 'someone';
  return inc.acknowledged_by_slack ? mrkdwn`${md.user(inc.acknowledged_by_slack)} (${name})` : md.text(name);
}

const duration = (from: Date, to: Date) => ago(new Date(to).getTime() - new Date(from).getTime());

/** The component lines shown on incident messages and the App Home: worst first. */
export function componentLines(report: HealthReport | null, opts: { onlyProblems?: boolean } = {}): Mrkdwn[] {
  if (!report) return [mrkdwn`_No health report yet._`];
  const order: Record<string, number> = { unhealthy: 0, degraded: 1, unknown: 2, healthy: 3, not_configured: 4 };
  const comps = [...report.components]
    .filter((c) => !opts.onlyProblems || c.status === 'degraded' || c.status === 'unhealthy' || c.status === 'unknown')
    .sort((a, b) => order[a.status] - order[b.status]);
  return comps.map(componentLine);
}

export function componentLine(c: ComponentReport): Mrkdwn {
  if (c.status === 'not_configured') return mrkdwn`${STATUS_EMOJI[c.status]} *${c.name}* — ${c.summary}`;
  return mrkdwn`${STATUS_EMOJI[c.status]} *${c.name}* — ${c.status}: ${c.summary}`;
}

/** The one message of a component's incident, in its current state. */
export function renderIncident(inc: IncidentRow, now = new Date()): SafeMessage {
  const report = inc.last_report;
  const name = incidentName(inc);
  const overall = inc.component === OVERALL;
  const blocks: SafeBlock[] = [];
  if (inc.status === 'resolved') {
    const lasted = duration(inc.opened_at, inc.resolved_at ?? now);
    blocks.push({ type: 'header', text: `:white_check_mark: Health incident #${inc.id} resolved — ${name}` });
    blocks.push({
      type: 'text',
      text: mrkdwn`*Resolved* at ${md.date(inc.resolved_at)} after *${lasted}* (opened ${md.date(inc.opened_at)}).\nStarted ${inc.first_status}, worst ${inc.worst_status}${
        inc.changes ? `, ${inc.changes} status change${inc.changes === 1 ? '' : 's'}` : ''
      }. ${overall ? 'All components are healthy again.' : mrkdwn`*${name}* is healthy again.`}`,
    });
    blocks.push({
      type: 'context',
      text: inc.acknowledged_at ? mrkdwn`Acknowledged by ${whoAcked(inc)} at ${md.date(inc.acknowledged_at)}` : mrkdwn`Never acknowledged.`,
    });
    return { text: mrkdwn`Health incident #${inc.id} resolved after ${lasted} — ${name}`, blocks };
  }
  blocks.push({ type: 'header', text: `${STATUS_EMOJI[inc.last_status]} Health incident #${inc.id}: ${inc.last_status} — ${name}` });
  blocks.push({
    type: 'text',
    text: mrkdwn`*${name} ${inc.last_status}* since ${md.date(inc.opened_at)} (${duration(inc.opened_at, inc.last_checked_at)} so far; worst ${inc.worst_status}) · last checked ${md.date(inc.last_checked_at)}`,
  });
  const own = incidentComponent(inc);
  if (overall) {
    const problems = componentLines(report, { onlyProblems: true });
    blocks.push({ type: 'text', text: problems.length ? md.join(problems, '\n') : mrkdwn`_No component reported a problem in the last check._` });
  } else if (own) {
    const details = (own.details ?? []).map((d) => mrkdwn`      ◦ ${d}`);
    blocks.push({ type: 'text', text: md.join([componentLine(own), ...details, mrkdwn`      _${own.thresholds}_`], '\n') });
  }
  // The other components, so that one message tells whether it is alone (each bad one has its own incident).
  const others = (report?.components ?? []).filter((c) => c.key !== inc.component);
  const otherProblems = others.filter((c) => c.status === 'degraded' || c.status === 'unhealthy' || c.status === 'unknown');
  if (!overall && otherProblems.length) {
    blocks.push({ type: 'context', text: mrkdwn`Also not healthy (own incidents): ${otherProblems.map((c) => `${c.name} ${c.status}`).join(', ')}` });
  }
  const healthy = others.filter((c) => c.status === 'healthy').map((c) => c.name);
  if (healthy.length) blocks.push({ type: 'context', text: mrkdwn`Healthy: ${healthy.join(', ')}` });
  if (inc.acknowledged_at) {
    blocks.push({ type: 'context', text: mrkdwn`:raising_hand: Acknowledged by ${whoAcked(inc)} at ${md.date(inc.acknowledged_at)}` });
  } else {
    blocks.push({ type: 'context', text: mrkdwn`Not acknowledged yet.` });
    blocks.push({
      type: 'buttons',
      buttons: [{ text: 'Acknowledge', actionId: ACK_ACTION, value: JSON.stringify({ i: inc.id }), style: 'primary' }],
    });
  }
  blocks.push({ type: 'context', text: mrkdwn`Details: ${md.code('/health')} · ${md.code('/health pool')}` });
  return { text: mrkdwn`Health incident #${inc.id}: ${name} ${inc.last_status} since ${md.date(inc.opened_at)}`, blocks };
}

export function changeLine(from: Status, inc: IncidentRow): SafeMessage {
  const own = incidentComponent(inc);
  const problems = inc.component === OVERALL ? componentLines(inc.last_report, { onlyProblems: true }) : own ? [componentLine(own)] : [];
  return {
    text: mrkdwn`${STATUS_EMOJI[inc.last_status]} ${md.date(inc.last_checked_at)} — ${incidentName(inc)}: status changed *${from} → ${inc.last_status}*${
      problems.length ? mrkdwn`\n${md.join(problems, '\n')}` : ''
    }`,
  };
}

export function resolvedLine(inc: IncidentRow): SafeMessage {
  return {
    text: mrkdwn`:white_check_mark: ${md.date(inc.resolved_at)} — ${incidentName(inc)} healthy again; resolved after ${duration(inc.opened_at, inc.resolved_at ?? new Date())}.`,
  };
}
