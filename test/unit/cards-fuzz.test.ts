import { describe, expect, it } from 'vitest';
import { Masker } from '../../src/services/masking.js';
import { describeSend } from '../../src/services/pending-sends.js';
import { messagePayload } from '../../src/slack/blocks.js';
import { burstMessage } from '../../src/slack/cards/bursts.js';
import { databaseBackLine, databaseDownMessage, databaseResolvedMessage } from '../../src/slack/cards/database-outage.js';
import { digestMessage } from '../../src/slack/cards/digests.js';
import { homeView } from '../../src/slack/cards/home.js';
import { acknowledgedLine, changeLine, renderIncident, resolvedLine } from '../../src/slack/cards/incidents.js';
import { lockoutAttemptsMessage, lockoutCard } from '../../src/slack/cards/lockouts.js';
import { decidedText, decisionDm, decisionLine, renderCard } from '../../src/slack/cards/promotions.js';
import { retentionMessage } from '../../src/slack/cards/audit-retention.js';
import { describeDecided, describeOpen, recoveryCodeDm, recoveryDoneDm, renderRecoveryCard } from '../../src/slack/cards/twofa-recovery.js';
import { twofaReminderDm } from '../../src/slack/cards/twofa-reports.js';
import { checkBlocks } from '../../src/slack/sim/block-kit-rules.js';
import type { Message } from '../../src/ui.js';
import { HOSTILE } from '../helpers/hostile.js';

/**
 * Every card and alert Warden posts, rendered with hostile values in every field that
 * carries text Warden did not write (issue 11). For each: the payload is one Slack accepts
 * (the fake's Block Kit rules), every mrkdwn text and the fallback are within Slack's
 * limits, no mention or link sequence (`<!`, `<@`, `<#`, `<http`) comes from the data, no
 * control or bidi character survives, and a secret planted in the data never appears.
 */

const SECRET = 'JBSWY3DPEHPK3PXP-secret-value';
// The only mention Warden makes on purpose: a Slack user id it stored itself.
const KNOWN_USER = 'U0KNOWN1';


const MENTION = /<[!@#]|<https?:|<mailto:/g;

/** The texts Slack parses as mrkdwn: fallback, section text and fields, context elements, confirm text. */
function mrkdwnTexts(payload: { text: string; blocks?: object[] }): string[] {
  const out = [payload.text];
  const walk = (v: any) => {
    if (!v || typeof v !== 'object') return;
    if (Array.isArray(v)) return v.forEach(walk);
    if (v.type === 'mrkdwn' && typeof v.text === 'string') out.push(v.text);
    for (const k of Object.keys(v)) walk(v[k]);
  };
  walk(payload.blocks);
  return out;
}

function allTexts(payload: { text: string; blocks?: object[] }): string[] {
  const out = [payload.text];
  const walk = (v: any) => {
    if (!v || typeof v !== 'object') return;
    if (Array.isArray(v)) return v.forEach(walk);
    if ((v.type === 'mrkdwn' || v.type === 'plain_text') && typeof v.text === 'string') out.push(v.text);
    for (const k of Object.keys(v)) walk(v[k]);
  };
  walk(payload.blocks);
  return out;
}

function assertSafe(kind: string, message: Message) {
  const payload = messagePayload(message);
  // Slack accepts it.
  expect(checkBlocks(payload.blocks, 'message'), kind).toEqual([]);
  expect(payload.text.length, kind).toBeLessThanOrEqual(3000);
  for (const t of mrkdwnTexts(payload)) {
    // Warden's own mention of a known user is the only one allowed.
    const mentions = (t.replace(`<@${KNOWN_USER}>`, '').match(MENTION) ?? []);
    expect(mentions, `${kind}: ${t.slice(0, 200)}`).toEqual([]);
  }
  for (const t of allTexts(payload)) {
    // eslint-disable-next-line no-control-regex -- looking for control characters is the point
    expect(t, kind).not.toMatch(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069\u200E\u200F\u061C]/);
    expect(t, kind).not.toContain(SECRET);
  }
}

const at = new Date('2026-11-30T12:00:00Z');
const later = new Date('2026-11-30T13:00:00Z');

function cards(h: string): [string, Message][] {
  const masker = new Masker(true);
  const plainMasker = new Masker(false);
  const alert = {
    id: 7, user_id: 3, username: h, locked_at: at, locked_until: later, audit_id: 9, post_id: 1, unlocked_by: null, unlocked_at: null,
  };
  const attempts = [
    { timestamp: at, ip_address: h, details: { reason: h, username: h, totp_secret: SECRET } },
    { timestamp: at, ip_address: '2401:4900:1c5a:2b3::17', details: { reason: `${h} client_ip=::ffff:192.168.1.1` } },
  ];
  const burstRow = { kind: 'failed_login' as const, ip_address: h, window_start: at, count: 12, usernames: [h, `${h}2`, ...Array.from({ length: 12 }, (_, i) => `${h}${i}`)], post_id: 1, first_seen: at, last_seen: later };
  const user = {
    id: 3, username: h, email: `${h}@evil.example`, role: h, dispatch_area: h, two_fa_enabled: false, failed_login_attempts: 3,
    locked_until: null, last_failed_login: null, created_at: at, last_login: at,
  };
  const history = { failedLogins: 6, lockouts: 1, roleChanges: 0, lastFailedLogin: at, previousRequests: 1, previousRejected: 1 };
  const identityChanges = [
    { userId: 3, username: h, kind: 'email' as const, changedBy: 1, changedByUsername: h, summary: h, at },
    { userId: 1, username: h, kind: 'slack_link' as const, changedBy: null, changedByUsername: null, summary: '', at },
  ];
  const promo = (status: 'pending' | 'approved' | 'rejected' | 'expired', reviewer: { id: number; username: string; slackUserId?: string } | null) => ({
    request: { id: 4, user_id: 3, reason: h, status, requested_at: at, reviewed_at: status === 'pending' ? null : later, reviewed_by: 1, admin_notes: h, rejection_reason: h },
    requester: user, reviewer, card: null, history, overdue: false, identityChanges,
  });
  const recovery = (status: 'verifying' | 'pending' | 'approved' | 'rejected' | 'expired' | 'cancelled') => ({
    id: 5, target_user_id: 3, target_username: h, initiator_id: 1, initiator_username: h, initiator_slack: KNOWN_USER, status,
    manual_checks: ['callback', h], evidence: `${h}\nsecond line ${h} mail ${h}@x.example`,
    checks: { email: { result: 'passed' as const, sends: 1, attempts: 1, passed_at: at.toISOString() }, slack: { result: 'failed' as const, sends: 2, attempts: 3 } },
    created_at: at, expires_at: later, submitted_at: at, decided_at: later, decided_by: 2, decided_by_username: h, rejection_reason: h, card_channel: null, card_ts: null,
  });
  const report = {
    status: 'unhealthy' as const, checkedAt: at.toISOString(),
    components: [
      { key: 'app' as any, name: 'Application', status: 'unhealthy' as const, summary: h, thresholds: h, details: [h], figures: {} },
      { key: 'database' as any, name: 'Database', status: 'healthy' as const, summary: 'ok', thresholds: '', figures: {} },
      { key: 'email' as any, name: 'E-mail', status: 'not_configured' as const, summary: h, thresholds: '', figures: {} },
    ],
    jobs: [{ job: h, lastStarted: null, lastSuccess: null, lastError: h, lastErrorAt: null, runs: 1, failures: 1, intervalMs: 1, nextRun: null, stale: true, failing: true, note: h }],
  };
  const incident = (status: 'open' | 'resolved', acked: boolean, component = 'app') => ({
    id: 2, component, status, opened_at: at, resolved_at: status === 'resolved' ? later : null, first_status: 'degraded' as const, last_status: 'unhealthy' as const,
    worst_status: 'unhealthy' as const, changes: 2, last_checked_at: later, last_report: report, acknowledged_by: acked ? 1 : null,
    acknowledged_by_name: acked ? h : null, acknowledged_by_slack: acked ? KNOWN_USER : null, acknowledged_at: acked ? later : null, post_id: 1, channel: 'C1', ts: '1.1',
  });
  const many = <T,>(f: (i: number) => T) => Array.from({ length: 15 }, (_, i) => f(i));
  const lists = {
    promotions: many((i) => ({ id: i, username: h, requested_at: at, total: 40 })),
    recoveries: many((i) => ({ id: i, target_username: h, initiator_username: h, status: 'pending', created_at: at, total: 40 })),
    locked: many(() => ({ username: h, role: h, locked_until: later, failed_login_attempts: 5, total: 40 })),
  };
  return [
    ['lockout card', lockoutCard({ alert, account: { role: h, email: `${h}@x.example` }, attempts }, masker)],
    ['lockout card (unlocked, masking off)', lockoutCard({ alert: { ...alert, unlocked_by: h, unlocked_at: later }, account: null, attempts }, plainMasker)],
    ['lockout attempts', lockoutAttemptsMessage({ alert, attempts }, masker)],
    ['lockout attempts (masking off)', lockoutAttemptsMessage({ alert, attempts }, plainMasker)],
    ['failed-login burst', burstMessage({ kind: 'failed_login', label: 'failed logins', alert: burstRow, windowSec: 3600, threshold: 5 }, masker)],
    ['2FA failure spike (masking off)', burstMessage({ kind: '2fa_failed', label: 'failed 2FA verifications', alert: burstRow, windowSec: 3600, threshold: 5 }, plainMasker)],
    ['promotion card (pending)', renderCard(promo('pending', null), masker, 86400)],
    ['promotion card (approved)', renderCard(promo('approved', { id: 1, username: h, slackUserId: KNOWN_USER }), masker, 86400)],
    ['promotion card (rejected)', renderCard(promo('rejected', { id: 1, username: h, slackUserId: h }), masker, 86400)],
    ['promotion card (expired)', renderCard(promo('expired', null), plainMasker, 86400)],
    ['promotion decision DM (approved)', decisionDm(promo('approved', { id: 1, username: h, slackUserId: KNOWN_USER }))],
    ['promotion decision DM (rejected)', decisionDm(promo('rejected', { id: 1, username: h }))],
    ['promotion decision DM (expired)', decisionDm(promo('expired', null))],
    ...(['verifying', 'pending', 'approved', 'rejected', 'expired', 'cancelled'] as const).map(
      (s) => [`2FA recovery card (${s})`, renderRecoveryCard(recovery(s))] as [string, Message],
    ),
    ['2FA recovery card with identity changes', renderRecoveryCard(recovery('pending'), identityChanges)],
    ['2FA recovery code DM', recoveryCodeDm({ intro: h, code: '1234 5678', minutes: 10, warning: h })],
    ['2FA recovery done DM', recoveryDoneDm(recovery('approved'))],
    ['2FA reminder DM', twofaReminderDm(h, h)],
    ['health incident (open)', renderIncident(incident('open', false))],
    ['health incident (acknowledged)', renderIncident(incident('open', true))],
    ['health incident (resolved)', renderIncident(incident('resolved', true))],
    ['health incident (overall, before 016)', renderIncident(incident('open', false, 'overall'))],
    ['incident acknowledged line', acknowledgedLine(incident('open', true))],
    ['incident status change line', changeLine('degraded', incident('open', false))],
    ['incident resolved line', resolvedLine(incident('resolved', false))],
    ['security digest', digestMessage({
      adminsWithout2fa: many(() => ({ username: h, last_login: at })),
      locked: many(() => ({ username: h, locked_until: later, failed_login_attempts: 9 })),
      promotions: many((i) => ({ id: i, username: h, requested_at: at })),
      recoveries: many((i) => ({ id: i, target_username: h, status: h, created_at: at })),
      totals: { adminsWithout2fa: 40, locked: 40, promotions: 40, recoveries: 40 },
    })!],
    ['App Home (unlinked)', homeView({ linked: false, why: h })],
    ['App Home (member)', homeView({ linked: true, username: h, role: h, report, open: [incident('open', true)], lists: null })],
    ['App Home (admin)', homeView({ linked: true, username: h, role: 'admin', report, open: [incident('open', false), incident('open', true)], lists })],
    ['database down', databaseDownMessage({ since: at.getTime(), error: h })],
    ['database back (thread)', databaseBackLine(5)],
    ['database resolved', databaseResolvedMessage(5, h)],
    ['retention report (dry run)', retentionMessage({ dryRun: true, logs: 1, snapshots: 2, retentionDays: 90, snapshotDays: 30, deleteBefore: at, clearSnapshotsBefore: at, critical: ['user_deleted'] } as any)],
    ['retention report (applied)', retentionMessage({ dryRun: false, logs: 1, snapshots: 2, retentionDays: 90, snapshotDays: 30, deleteBefore: at, clearSnapshotsBefore: at, critical: ['user_deleted'] } as any, h)],
    // What a button click or a form submission is answered with (session 3): the notices
    // built by a function Warden calls, rendered as the reply text they become.
    ...(['approved', 'rejected', 'expired'] as const).map(
      (st) => [`promotion decision line (${st})`, { text: decisionLine(promo(st, { id: 1, username: h, slackUserId: h })) }] as [string, Message],
    ),
    ...(['approved', 'rejected', 'expired', 'pending'] as const).map(
      (st) => [`promotion already-decided notice (${st})`, { text: decidedText(promo(st, { id: 1, username: h, slackUserId: KNOWN_USER })) }] as [string, Message],
    ),
    ...(['verifying', 'pending', 'approved', 'rejected', 'expired', 'cancelled'] as const).map(
      (st) => [`2FA recovery already-decided notice (${st})`, { text: describeDecided(recovery(st)) }] as [string, Message],
    ),
    ...(['verifying', 'pending'] as const).map(
      (st) => [`2FA recovery already-open notice (${st})`, { text: describeOpen({ ...recovery(st), expires_at: new Date(Date.now() + 3600_000) }) }] as [string, Message],
    ),
    ['interrupted send (e-mail code)', { text: describeSend({ kind: '2fa_code', channel: 'email', destination: `${h}@x.example` }) }],
    ['interrupted send (Slack code, hostile destination)', { text: describeSend({ kind: '2fa_code', channel: 'slack', destination: h }) }],
    ['interrupted send (Slack code, stored mention)', { text: describeSend({ kind: '2fa_code', channel: 'slack', destination: `<@${KNOWN_USER}>` }) }],
    ['interrupted send (reset link)', { text: describeSend({ kind: 'reset_link', channel: 'email', destination: h }) }],
  ];
}

export const FUZZED_KINDS = cards('x').map(([k]) => k);

describe('every card and alert with hostile values (issue 11)', () => {
  for (const [name, value] of Object.entries(HOSTILE)) {
    it(`stays inert and valid with ${name} in every field`, () => {
      for (const [kind, message] of cards(value)) assertSafe(kind, message);
    });
  }

  it('a hostile username is shown as text, escaped, in the lockout card', () => {
    const p = messagePayload(cards(HOSTILE.mentions)[0][1]);
    expect(p.text).toContain('&lt;!channel&gt;');
    expect(JSON.stringify(p.blocks)).toContain('&lt;@U0EVIL&gt;');
  });

  it('the mention Warden makes on purpose is kept', () => {
    const [, approved] = cards('alice').find(([k]) => k === 'promotion card (approved)')!;
    expect(JSON.stringify(messagePayload(approved).blocks)).toContain(`<@${KNOWN_USER}> (alice)`);
    // A stored "Slack id" that is not one is shown as text.
    const [, rejected] = cards('<!channel>').find(([k]) => k === 'promotion card (rejected)')!;
    for (const t of mrkdwnTexts(messagePayload(rejected))) expect(t).not.toContain('<!channel>');
    // The interrupted-send notice names a Slack destination only if it is the mention Warden stored.
    expect(String(describeSend({ kind: '2fa_code', channel: 'slack', destination: `<@${KNOWN_USER}>` }))).toContain(`<@${KNOWN_USER}>`);
    expect(String(describeSend({ kind: '2fa_code', channel: 'slack', destination: '<@U0EVIL> <!here>' }))).not.toMatch(MENTION);
  });

  it('covers every kind', () => {
    expect(FUZZED_KINDS.length).toBeGreaterThanOrEqual(30);
  });
});
