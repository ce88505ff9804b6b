import type { RetentionReport } from '../../services/audit-retention.js';
import type { Message } from '../../ui.js';

const n = (x: number) => x.toLocaleString('en-US');
const day = (d: Date) => d.toISOString().slice(0, 10);

/** The report shown by `/audit retention` and posted by the nightly job. */
export function retentionMessage(r: RetentionReport, by?: string): Message {
  const lines = r.dryRun
    ? [
        `*Audit retention — dry run* (nothing was changed)`,
        `• Would delete *${n(r.logs)}* ${r.logs === 1 ? 'entry' : 'entries'} older than ${r.retentionDays} days (before ${day(r.deleteBefore)})`,
        `• Would clear before/after snapshots of *${n(r.snapshots)}* ${r.snapshots === 1 ? 'entry' : 'entries'} older than ${r.snapshotDays} days (before ${day(r.clearSnapshotsBefore)})`,
        `• Kept whatever their age: ${r.critical.map((a) => `\`${a}\``).join(', ')}`,
        'Run `/audit retention` to apply it.',
      ]
    : [
        `*Audit retention applied*${by ? ` by ${by}` : ''}`,
        `• Deleted *${n(r.logs)}* ${r.logs === 1 ? 'entry' : 'entries'} older than ${r.retentionDays} days (before ${day(r.deleteBefore)})`,
        `• Cleared before/after snapshots of *${n(r.snapshots)}* ${r.snapshots === 1 ? 'entry' : 'entries'} older than ${r.snapshotDays} days (before ${day(r.clearSnapshotsBefore)})`,
        `• Kept whatever their age: ${r.critical.map((a) => `\`${a}\``).join(', ')}`,
      ];
  const text = lines.join('\n');
  return {
    text: r.dryRun
      ? `Audit retention dry run: would delete ${n(r.logs)} entries and clear ${n(r.snapshots)} snapshots`
      : `Audit retention: deleted ${n(r.logs)} entries and cleared ${n(r.snapshots)} snapshots`,
    blocks: [{ type: 'text', text }],
  };
}
