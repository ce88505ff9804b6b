-- Warden's own tables. Prefixed warden_ so they never collide with the application's.

-- Which Slack account acts as which application account (DESIGN §3 "Identity").
-- method = 'email' when matched from the Slack profile e-mail, 'explicit' for /users link.
CREATE TABLE IF NOT EXISTS warden_slack_link (
    slack_team_id   text NOT NULL,
    slack_user_id   text NOT NULL,
    user_id         integer NOT NULL REFERENCES "user"(id) ON DELETE CASCADE,
    method          text NOT NULL CHECK (method IN ('email', 'explicit')),
    linked_by       integer REFERENCES "user"(id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (slack_team_id, slack_user_id)
);
CREATE INDEX IF NOT EXISTS idx_slack_link_user ON warden_slack_link (user_id);

-- Scheduled jobs: last run and last success, so a job that silently stopped is visible.
CREATE TABLE IF NOT EXISTS warden_job_run (
    job             text PRIMARY KEY,
    last_started    timestamptz,
    last_success    timestamptz,
    last_error      text,
    last_error_at   timestamptz,
    runs            bigint NOT NULL DEFAULT 0,
    failures        bigint NOT NULL DEFAULT 0
);

-- Cursors over append-only tables (audit_log ids, promotion_request ids) so that events
-- that happened while Warden was down are caught up exactly once.
CREATE TABLE IF NOT EXISTS warden_cursor (
    name        text PRIMARY KEY,
    position    bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
