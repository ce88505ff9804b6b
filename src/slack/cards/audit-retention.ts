import type { RetentionReport } from '../../services/audit-retention.js';
import { md, mrkdwn, type Mrkdwn, type SafeMessage } from '../../ui.js';

const n = (x: number) => x.toLocaleString('en-US');
const day = (d: Date) => d.toISOString().slice(0, 10);

/** The report shown by `/audit retention` and posted by the nightly job (`applyHint`: dry runs end with how to apply). */
export function retentionMessage(r: RetentionReport, by?: string, applyHint = true): SafeMessage {
  const kept = md.join(r.critical.map((a) => md.code(a)), ', ');
  const lines: Mrkdwn[] = r.dryRun
    ? [
        mrkdwn`*Audit retention — dry run* (nothing was changed)`,
        mrkdwn`• Would delete *${n(r.logs)}* ${r.logs === 1 ? 'entry' : 'entries'} older than ${r.retentionDays} days (before ${day(r.deleteBefore)})`,
        mrkdwn`• Would clear before/after snapshots of *${n(r.snapshots)}* ${r.snapshots === 1 ? 'entry' : 'entries'} older than ${r.snapshotDays} days (before ${day(r.clearSnapshotsBefore)})`,
        mrkdwn`• Kept whatever their age: ${kept}`,
        ...(applyHint ? [mrkdwn`Run ${md.code('/audit retention')} to apply it.`] : []),
      ]
    : [
        mrkdwn`*Audit retention applied*${by ? mrkdwn` by ${by}` : ''}`,
        mrkdwn`• Deleted *${n(r.logs)}* ${r.logs === 1 ? 'entry' : 'entries'} older than ${r.retentionDays} days (before ${day(r.deleteBefore)})`,
        mrkdwn`• Cleared before/after snapshots of *${n(r.snapshots)}* ${r.snapshots === 1 ? 'entry' : 'entries'} older than ${r.snapshotDays} days (before ${day(r.clearSnapshotsBefore)})`,
        mrkdwn`• Kept whatever their age: ${kept}`,
      ];
  return {
    text: r.dryRun
      ? mrkdwn`Audit retention dry run: would delete ${n(r.logs)} entries and clear ${n(r.snapshots)} snapshots`
      : mrkdwn`Audit retention: deleted ${n(r.logs)} entries and cleared ${n(r.snapshots)} snapshots`,
    blocks: [{ type: 'text', text: md.join(lines, '\n') }],
  };
}

/** The report's lines alone (the retention modal shows them above the 2FA field). */
export function retentionSummary(r: RetentionReport): Mrkdwn {
  const block = retentionMessage(r, undefined, false).blocks![0];
  return block.type === 'text' ? block.text : md.text('');
}
