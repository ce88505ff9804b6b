-- Issue 12 ("honest health"): several components can be unhealthy at once, and each is its own
-- incident with its own message, hysteresis and resolution — a real application outage never
-- hides as a status change of an unrelated open incident.
--
-- component: the health component's key (database, cache, audit, application, email, scheduler).
-- Incidents opened before this migration were about the overall status: they keep 'overall' and
-- are followed (and resolved) on the overall status.
ALTER TABLE warden_health_incident ADD COLUMN IF NOT EXISTS component text NOT NULL DEFAULT 'overall';
DROP INDEX IF EXISTS uq_health_incident_open;
-- At most one open incident per component, whatever the number of replicas or job runners.
CREATE UNIQUE INDEX IF NOT EXISTS uq_health_incident_open_component ON warden_health_incident (component) WHERE status = 'open';

-- Consecutive bad / good checks per component (HEALTH_OPEN_AFTER / HEALTH_RESOLVE_AFTER).
-- warden_health_streak (011) counted the overall status; it is no longer used.
CREATE TABLE IF NOT EXISTS warden_health_component_streak (
    component   text PRIMARY KEY,
    bad         int NOT NULL DEFAULT 0,
    good        int NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Storms (issue 12/15): the summary message is re-rendered off the lockout's transaction.
-- changes: bumped by every change to the storm (a lockout or burst joins, an account is
-- unlocked); rendered: the value of changes the last queued message was rendered from. A storm
-- with rendered < changes owes an update (a crash between the two is caught up by the scan).
ALTER TABLE warden_alert_storm ADD COLUMN IF NOT EXISTS changes bigint NOT NULL DEFAULT 0;
ALTER TABLE warden_alert_storm ADD COLUMN IF NOT EXISTS rendered bigint NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS idx_alert_storm_owed ON warden_alert_storm (id) WHERE rendered < changes;
