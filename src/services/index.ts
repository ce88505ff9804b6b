import type { Config } from '../config.js';
import type { Db } from '../db/index.js';
import type { Logger } from '../logger.js';
import type { Store } from '../store/index.js';
import { createAuditServices, type AuditExporter } from './audit-export.js';
import type { AuditRetention } from './audit-retention.js';
import type { AuditSearch } from './audit-search.js';
import type { Chat } from './chat.js';
import { IdentityService, type SlackDirectory } from './identity.js';
import { IdentityChanges } from './identity-changes.js';
import { HealthService } from './health.js';
import { HttpMailer, type Mailer } from './mailer.js';
import { PendingSends } from './pending-sends.js';
import { IncidentService } from './incidents.js';
import { Lifecycle } from './lifecycle.js';
import { Masker } from './masking.js';
import { Outbox } from './outbox.js';
import { BurstAlerts } from './bursts.js';
import { DeliveryDedupe } from './deliveries.js';
import { Digests } from './digests.js';
import { LockoutAlerts } from './lockouts.js';
import { AlertStorms } from './storms.js';
import { PromotionService } from './promotions.js';
import { StepUpService } from './step-up.js';
import { TwoFaRecoveryService } from './twofa-recovery.js';
import { TwoFaReports } from './twofa-reports.js';
import { UserDirectory } from './users.js';
import { UserAdminService } from './user-admin.js';

/**
 * Everything a command or job may call. Built once by the composition root
 * (src/main.ts, the console, tests) and handed to handlers.
 */
export interface Services {
  config: Config;
  db: Db;
  store: Store;
  logger: Logger;
  chat: Chat;
  /** Shutdown signal and in-flight work tracking (issue 12). */
  lifecycle: Lifecycle;
  /** First delivery of a Slack request? Redis, or the database when Redis is down (issue 12). */
  deliveries: DeliveryDedupe;
  identity: IdentityService;
  /** Who changed whose e-mail / Slack link and when; the cool-down and four-eyes rules on it (issue 10). */
  identityChanges: IdentityChanges;
  stepUp: StepUpService;
  users: UserDirectory;
  mailer: Mailer;
  masker: Masker;
  /** Audit search, history, timeline, investigations (issue 6). */
  auditSearch: AuditSearch;
  /** CSV export of audit searches, streamed, masked unless stepped up (issue 6). */
  auditExport: AuditExporter;
  /** The guide's audit retention policy, dry run and real run (issue 6). */
  auditRetention: AuditRetention;
  /** Every alert goes through it: queued in the caller's transaction, delivered with retries (issue 7). */
  outbox: Outbox;
  /** Lockout alerts to SECURITY_CHANNEL within seconds: NOTIFY + cursor catch-up (issue 7). */
  lockouts: LockoutAlerts;
  /** Lockout storms: one summary message per storm instead of a card per lockout (issue 12). */
  storms: AlertStorms;
  /** Failed-login bursts and 2FA failure spikes, one alert per IP per window, updated (issue 7). */
  bursts: BurstAlerts;
  /** The daily security digest (issue 7). */
  digests: Digests;
  /** Promotion requests: ask, review card, approve/reject, expiry, app-inserted requests (issue 4). */
  promotions: PromotionService;
  /** System health: components vs the seed's thresholds, pool samples, job staleness (issue 7). */
  health: HealthService;
  /** Health incidents: one alert message per incident, updated, threaded, acknowledged, resolved (issue 7). */
  incidents: IncidentService;
  /** 2FA recovery: identity checks, one-time codes, second-admin approval, expiry (issue 5). */
  twofaRecovery: TwoFaRecoveryService;
  /** 2FA reports of the guide: status, adoption, admins without 2FA (+ reminders), failures (issue 5). */
  twofaReports: TwoFaReports;
  /** Write side of /users: create, edit, role, unlock, password resets, delete, link (issue 3). */
  userAdmin: UserAdminService;
  /** Codes and links sent after the form was answered, outside any transaction; a state row each (issue 12). */
  pendingSends: PendingSends;
}

export interface ServiceDeps {
  config: Config;
  db: Db;
  store: Store;
  logger: Logger;
  chat: Chat;
  directory: SlackDirectory;
  mailer?: Mailer;
  lifecycle?: Lifecycle;
  /** Chat used by the outbox (a client that surfaces 429s instead of waiting); defaults to `chat`. */
  alertChat?: Chat;
}

export function createServices(deps: ServiceDeps): Services {
  const { config, db, store } = deps;
  const lifecycle = deps.lifecycle ?? new Lifecycle();
  const outbox = new Outbox(db, deps.alertChat ?? deps.chat, deps.logger, {
    pollMs: config.OUTBOX_POLL_MS,
    paceMs: config.OUTBOX_PACE_MS,
    maxBackoffMs: config.OUTBOX_BACKOFF_MAX * 1000,
  });
  // Built as a whole first so that services which need the others (promotions) can be added below.
  const services = {
    config,
    db,
    store,
    logger: deps.logger,
    chat: deps.chat,
    lifecycle,
    deliveries: new DeliveryDedupe({ store, db, logger: deps.logger }),
    identity: new IdentityService(db, deps.directory, { cooldownSeconds: config.IDENTITY_COOLDOWN }, deps.logger),
    identityChanges: new IdentityChanges(db, config.IDENTITY_COOLDOWN),
    stepUp: new StepUpService({
      db,
      store,
      logger: deps.logger,
      outbox,
      securityChannel: config.SECURITY_CHANNEL,
      maxFailures: config.STEPUP_MAX_FAILURES,
    }),
    users: new UserDirectory(db),
    mailer:
      deps.mailer ??
      new HttpMailer({
        url: config.EMAIL_API_URL,
        apiKey: config.EMAIL_API_KEY,
        from: config.EMAIL_FROM,
        timeoutMs: config.EMAIL_TIMEOUT_MS,
      }),
    masker: new Masker(config.ANONYMIZE_AUDIT_LOGS, config.SLACK_SIGNING_SECRET),
    ...createAuditServices({ config, db, chat: deps.chat, logger: deps.logger, signal: lifecycle.signal }),
    outbox,
  } satisfies Omit<Services, 'pendingSends' | 'promotions' | 'health' | 'incidents' | 'twofaRecovery' | 'twofaReports' | 'userAdmin' | 'lockouts' | 'bursts' | 'digests' | 'storms'>;
  const pendingSends = new PendingSends({
    db,
    logger: deps.logger,
    outbox,
    // A send takes at most the mail timeout (or Slack's); past this margin its process is gone.
    leaseMs: config.EMAIL_TIMEOUT_MS + 60_000,
    revokers: () => ({
      '2fa_code': (q, row, reason) => all.twofaRecovery.revokeUnsent(q, row, reason),
      set_password_link: (q, row, reason) => all.userAdmin.revokeUnsentLink(q, row, reason),
      reset_link: (q, row, reason) => all.userAdmin.revokeUnsentLink(q, row, reason),
    }),
  });
  const baseAlertDeps = { config, db, outbox: services.outbox, masker: services.masker, logger: deps.logger };
  const alertDeps = { ...baseAlertDeps, storms: new AlertStorms(baseAlertDeps) };
  const all: Services = {
    ...services,
    storms: alertDeps.storms,
    pendingSends,
    lockouts: new LockoutAlerts(alertDeps),
    bursts: new BurstAlerts(alertDeps),
    digests: new Digests(alertDeps),
    health: new HealthService(() => all),
    incidents: new IncidentService(() => all),
    twofaRecovery: new TwoFaRecoveryService(() => all),
    twofaReports: new TwoFaReports(() => all),
    userAdmin: new UserAdminService({
      db,
      mailer: services.mailer,
      stepUp: services.stepUp,
      identity: services.identity,
      identityChanges: services.identityChanges,
      users: services.users,
      store,
      logger: deps.logger,
      resetUrl: config.PASSWORD_RESET_URL,
      pendingSends,
      outbox,
    }),
    promotions: new PromotionService({
      config,
      db,
      chat: services.chat,
      outbox: services.outbox,
      identity: services.identity,
      identityChanges: services.identityChanges,
      stepUp: services.stepUp,
      masker: services.masker,
      logger: services.logger,
    }),
  };
  return all;
}
