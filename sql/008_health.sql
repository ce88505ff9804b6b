-- System health (issue 7, part B): pool samples for the 10-minute trend of `/health pool`,
-- and health incidents: one row (and one Slack message) per incident.

-- One sample per health-job tick: server connections in use vs `SHOW max_connections`.
CREATE TABLE IF NOT EXISTS warden_pool_sample (
    id               bigserial PRIMARY KEY,
    taken_at         timestamptz NOT NULL DEFAULT now(),
    in_use           integer NOT NULL,
    max_connections  integer NOT NULL,
    usage_percent    double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_pool_sample_taken ON warden_pool_sample (taken_at DESC);

-- An incident lasts from the first tick whose overall status is not healthy to the first tick
-- that is healthy again. status: open | resolved. last_status / worst_status: the overall health
-- status (degraded, unhealthy, unknown). The message is posted through the alert outbox
-- (post_id = warden outbox row); channel/ts are kept for messages posted directly.
CREATE TABLE IF NOT EXISTS warden_health_incident (
    id                       serial PRIMARY KEY,
    status                   text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    opened_at                timestamptz NOT NULL DEFAULT now(),
    resolved_at              timestamptz,
    first_status             text NOT NULL,
    last_status              text NOT NULL,
    worst_status             text NOT NULL,
    -- How many times the status changed while open (names the threaded lines).
    changes                  integer NOT NULL DEFAULT 0,
    last_checked_at          timestamptz NOT NULL DEFAULT now(),
    -- The last health report seen (components and figures), to re-render the message.
    last_report              jsonb,
    acknowledged_by          integer REFERENCES "user"(id) ON DELETE SET NULL,
    acknowledged_by_name     text,
    acknowledged_by_slack    text,
    acknowledged_at          timestamptz,
    post_id                  bigint,
    channel                  text,
    ts                       text
);
-- At most one open incident, whatever the number of replicas or job runners.
CREATE UNIQUE INDEX IF NOT EXISTS uq_health_incident_open ON warden_health_incident (status) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS idx_health_incident_opened ON warden_health_incident (opened_at DESC);
