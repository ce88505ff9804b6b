-- 2FA recovery (issue #5): the guide's "2FA Lockout Recovery" as a guarded workflow.
-- An admin opens a recovery for a user who lost their authenticator, records the identity
-- checks they performed and lets Warden run its own (one-time codes by e-mail and Slack DM);
-- a second admin approves with their step-up code. Every state change is also in audit_log.

CREATE TABLE IF NOT EXISTS warden_2fa_recovery (
    id                  serial PRIMARY KEY,
    target_user_id      integer NOT NULL REFERENCES "user"(id) ON DELETE CASCADE,
    target_username     text NOT NULL,
    initiator_id        integer REFERENCES "user"(id) ON DELETE SET NULL,
    initiator_username  text NOT NULL,
    initiator_slack     text,
    -- verifying: collecting Warden-run checks; pending: waiting for a second admin.
    status              text NOT NULL DEFAULT 'verifying'
                        CHECK (status IN ('verifying', 'pending', 'approved', 'rejected', 'expired', 'cancelled')),
    -- Checks the initiating admin says they performed, e.g. ["phone_callback", "manager"].
    manual_checks       jsonb NOT NULL DEFAULT '[]',
    evidence            text NOT NULL,
    -- Warden-run checks and their results: {"email": {"result": "passed", ...}, "slack": {...}}.
    checks              jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    submitted_at        timestamptz,
    decided_at          timestamptz,
    decided_by          integer REFERENCES "user"(id) ON DELETE SET NULL,
    decided_by_username text,
    rejection_reason    text,
    card_channel        text,
    card_ts             text
);

-- At most one open recovery per user: a second one at the same moment fails on this index.
CREATE UNIQUE INDEX IF NOT EXISTS uq_2fa_recovery_open
    ON warden_2fa_recovery (target_user_id) WHERE status IN ('verifying', 'pending');
CREATE INDEX IF NOT EXISTS idx_2fa_recovery_open_expiry
    ON warden_2fa_recovery (expires_at) WHERE status IN ('verifying', 'pending');
CREATE INDEX IF NOT EXISTS idx_2fa_recovery_target ON warden_2fa_recovery (target_user_id, created_at DESC);

-- One-time verification codes. Only a salted scrypt hash is stored; the code itself goes to
-- the user (e-mail or Slack DM) and nowhere else.
CREATE TABLE IF NOT EXISTS warden_2fa_code (
    id            serial PRIMARY KEY,
    recovery_id   integer NOT NULL REFERENCES warden_2fa_recovery(id) ON DELETE CASCADE,
    channel       text NOT NULL CHECK (channel IN ('email', 'slack')),
    code_hash     text NOT NULL,
    salt          text NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL DEFAULT 5,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX IF NOT EXISTS idx_2fa_code_recovery ON warden_2fa_code (recovery_id, channel, created_at DESC);

-- Admin 2FA reports: "recent 2FA failures" and per-user failures use the existing
-- (action, timestamp) and (details->>'username', timestamp) indexes of audit_log.
