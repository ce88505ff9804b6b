-- Issue 12 (process faults).
-- Scheduled jobs take a lease row instead of a session advisory lock, so a running job does
-- not hold a pooled connection for its whole run and a terminated backend cannot crash it.
ALTER TABLE warden_job_run ADD COLUMN IF NOT EXISTS lease_owner text;
ALTER TABLE warden_job_run ADD COLUMN IF NOT EXISTS lease_until timestamptz;

-- Duplicate-delivery detection for Slack retries when no Redis is configured or Redis is
-- down: one row per delivery digest, pruned when expired.
CREATE TABLE IF NOT EXISTS warden_delivery (
    digest      text PRIMARY KEY,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS warden_delivery_expires_idx ON warden_delivery (expires_at);

-- Health hysteresis: consecutive bad / good checks of the overall status, so that an incident
-- opens after HEALTH_OPEN_AFTER bad checks and resolves after HEALTH_RESOLVE_AFTER good ones.
CREATE TABLE IF NOT EXISTS warden_health_streak (
    id          int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    bad         int NOT NULL DEFAULT 0,
    good        int NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
