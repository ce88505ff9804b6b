-- The application's own tables (seed 001, the TraitorTrack admin guide).
-- Created only when missing, so Warden can be pointed at an existing application
-- database; every query of the guide that touches them runs unchanged.

CREATE TABLE IF NOT EXISTS "user" (
    id                            serial PRIMARY KEY,
    username                      varchar(64)  NOT NULL UNIQUE,
    email                         varchar(255) NOT NULL UNIQUE,
    password_hash                 varchar(256),
    role                          varchar(20)  NOT NULL DEFAULT 'dispatcher',
    dispatch_area                 varchar(64),
    two_fa_enabled                boolean      NOT NULL DEFAULT false,
    totp_secret                   varchar(64),
    failed_login_attempts         integer      NOT NULL DEFAULT 0,
    locked_until                  timestamptz,
    last_failed_login             timestamptz,
    password_reset_token          varchar(128),
    password_reset_token_expires  timestamptz,
    created_at                    timestamptz  NOT NULL DEFAULT now(),
    last_login                    timestamptz,
    CONSTRAINT user_username_length CHECK (char_length(username) BETWEEN 3 AND 64)
);

-- E-mail uniqueness is case-insensitive for accounts Warden creates; the index also
-- serves the identity lookup from a Slack profile e-mail.
CREATE INDEX IF NOT EXISTS idx_user_email_lower ON "user" (lower(email));
CREATE INDEX IF NOT EXISTS idx_user_role ON "user" (role);
CREATE INDEX IF NOT EXISTS idx_user_locked_until ON "user" (locked_until) WHERE locked_until IS NOT NULL;

CREATE TABLE IF NOT EXISTS audit_log (
    id            bigserial PRIMARY KEY,
    "timestamp"   timestamptz NOT NULL DEFAULT now(),
    user_id       integer REFERENCES "user"(id) ON DELETE SET NULL,
    action        varchar(64) NOT NULL,
    entity_type   varchar(32),
    entity_id     integer,
    details       jsonb,
    ip_address    varchar(45),
    before_state  jsonb,
    after_state   jsonb
);

-- Indexes that keep audit searches fast on millions of rows (DESIGN §2).
CREATE INDEX IF NOT EXISTS idx_audit_timestamp_id ON audit_log ("timestamp" DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_audit_action_timestamp ON audit_log (action, "timestamp" DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_audit_user_timestamp ON audit_log (user_id, "timestamp" DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_audit_entity ON audit_log (entity_type, entity_id, "timestamp" DESC);
CREATE INDEX IF NOT EXISTS idx_audit_ip_timestamp ON audit_log (ip_address, "timestamp" DESC);
CREATE INDEX IF NOT EXISTS idx_audit_details_username ON audit_log ((details->>'username'), "timestamp" DESC);

CREATE TABLE IF NOT EXISTS promotion_request (
    id                serial PRIMARY KEY,
    user_id           integer NOT NULL REFERENCES "user"(id) ON DELETE CASCADE,
    reason            text NOT NULL,
    status            varchar(20) NOT NULL DEFAULT 'pending',
    requested_at      timestamptz NOT NULL DEFAULT now(),
    reviewed_at       timestamptz,
    reviewed_by       integer REFERENCES "user"(id) ON DELETE SET NULL,
    admin_notes       text,
    rejection_reason  text
);
CREATE INDEX IF NOT EXISTS idx_promotion_status ON promotion_request (status, requested_at);
CREATE INDEX IF NOT EXISTS idx_promotion_user ON promotion_request (user_id);

CREATE TABLE IF NOT EXISTS notification (
    id          serial PRIMARY KEY,
    user_id     integer NOT NULL REFERENCES "user"(id) ON DELETE CASCADE,
    title       varchar(200) NOT NULL,
    message     text NOT NULL,
    type        varchar(32) NOT NULL DEFAULT 'info',
    is_read     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_notification_user ON notification (user_id, is_read, created_at DESC);
