-- Alerts (issue 7, part A): the outbox every alert goes through, lockout alert state,
-- burst/spike state, and the triggers that wake Warden up when an account is locked.

-- The outbox: an alert is first written here (in the same transaction as the decision to
-- send it), then delivered by Outbox.deliverDue(). Rows are never deleted before they are
-- delivered; delivered rows keep where they landed (posted_channel/posted_ts) so later
-- updates and thread replies can find them.
--   kind       'post' (chat.postMessage) or 'update' (chat.update of target_id)
--   lane       delivery order is preserved within a lane (the channel)
--   parked     the last attempt failed with a permanent Slack error: still retried with
--              capped backoff, but no longer holds back later rows of its lane
CREATE TABLE IF NOT EXISTS warden_outbox (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('post', 'update')),
    lane             text NOT NULL,
    channel          text NOT NULL,
    target_id        bigint REFERENCES warden_outbox(id) ON DELETE CASCADE,
    thread_of_id     bigint REFERENCES warden_outbox(id) ON DELETE CASCADE,
    message          jsonb NOT NULL,
    dedupe_key       text UNIQUE,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'superseded')),
    parked           boolean NOT NULL DEFAULT false,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    claimed_until    timestamptz,
    claim_token      text,
    last_error       text,
    posted_channel   text,
    posted_ts        text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    CHECK ((kind = 'update') = (target_id IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS idx_outbox_pending ON warden_outbox (lane, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS idx_outbox_target ON warden_outbox (target_id) WHERE target_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_outbox_sent_at ON warden_outbox (sent_at) WHERE status <> 'pending';

-- One row per lockout episode that was alerted (an account locked until a given time).
-- The audit path (login_locked rows) and the "user".locked_until path meet here, so an
-- application that writes both for one lockout still gets one alert.
CREATE TABLE IF NOT EXISTS warden_lockout_alert (
    id            bigserial PRIMARY KEY,
    user_id       integer,
    username      text NOT NULL,
    locked_at     timestamptz NOT NULL,
    locked_until  timestamptz,
    audit_id      bigint UNIQUE,
    post_id       bigint NOT NULL,
    unlocked_by   text,
    unlocked_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_lockout_alert_user ON warden_lockout_alert (user_id, created_at DESC);

-- Every lockout event already handled (posted, or merged into the alert of the same
-- episode): 'audit:<audit_log.id>' or 'user:<warden_lock_event.id>'. Makes the scans
-- idempotent, so recent rows can be re-read safely (late commits with lower ids).
CREATE TABLE IF NOT EXISTS warden_lockout_source (
    source      text PRIMARY KEY,
    alert_id    bigint,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_lockout_source_created ON warden_lockout_source (created_at);

-- Lockouts set directly on "user".locked_until (without an audit row) are recorded here by
-- the trigger below, so that a cursor can catch them up after Warden was down.
CREATE TABLE IF NOT EXISTS warden_lock_event (
    id            bigserial PRIMARY KEY,
    user_id       integer NOT NULL,
    locked_until  timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Burst / spike alerts: one row per (kind, ip, window start); the alert message is updated
-- with the new count rather than repeated.
CREATE TABLE IF NOT EXISTS warden_burst_alert (
    kind          text NOT NULL CHECK (kind IN ('failed_login', '2fa_failed')),
    ip_address    text NOT NULL,
    window_start  timestamptz NOT NULL,
    count         integer NOT NULL,
    usernames     jsonb NOT NULL DEFAULT '[]'::jsonb,
    post_id       bigint NOT NULL,
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, ip_address, window_start)
);

-- Lockout cursors start at the present: pointing Warden at an application database with
-- years of history must not post every lockout it ever had.
INSERT INTO warden_cursor (name, position)
SELECT 'lockout_audit', coalesce(max(id), 0) FROM audit_log
ON CONFLICT (name) DO NOTHING;
INSERT INTO warden_cursor (name, position) VALUES ('lockout_user_event', 0)
ON CONFLICT (name) DO NOTHING;
INSERT INTO warden_cursor (name, position)
SELECT 'burst_audit', coalesce(max(id), 0) FROM audit_log
ON CONFLICT (name) DO NOTHING;

-- Wake-ups. NOTIFY is delivered at commit, so a listener never sees an uncommitted row.
CREATE OR REPLACE FUNCTION warden_notify_lockout_audit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('warden_lockout', 'audit:' || NEW.id);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION warden_notify_lockout_user() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    event_id bigint;
BEGIN
    INSERT INTO warden_lock_event (user_id, locked_until) VALUES (NEW.id, NEW.locked_until)
    RETURNING id INTO event_id;
    PERFORM pg_notify('warden_lockout', 'user:' || event_id);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION warden_notify_security_audit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('warden_security', NEW.action);
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS warden_lockout_audit ON audit_log;
CREATE TRIGGER warden_lockout_audit AFTER INSERT ON audit_log
    FOR EACH ROW WHEN (NEW.action = 'login_locked')
    EXECUTE FUNCTION warden_notify_lockout_audit();

DROP TRIGGER IF EXISTS warden_lockout_user ON "user";
CREATE TRIGGER warden_lockout_user AFTER UPDATE OF locked_until ON "user"
    FOR EACH ROW WHEN (NEW.locked_until IS NOT NULL AND NEW.locked_until > now()
                       AND NEW.locked_until IS DISTINCT FROM OLD.locked_until)
    EXECUTE FUNCTION warden_notify_lockout_user();

DROP TRIGGER IF EXISTS warden_security_audit ON audit_log;
CREATE TRIGGER warden_security_audit AFTER INSERT ON audit_log
    FOR EACH ROW WHEN (NEW.action IN ('login_failed', '2fa_verify_failed'))
    EXECUTE FUNCTION warden_notify_security_audit();

CREATE INDEX IF NOT EXISTS idx_lock_event_created ON warden_lock_event (created_at);
