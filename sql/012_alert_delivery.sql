-- Alert delivery, exactly once as seen in the channel (issue 12) and at Slack's pace (issue 15).
--
-- warden_outbox gains:
--   post_started_at  set (and committed) before a post is sent to Slack; while it is set the
--                    post may have landed even if no answer came (timeout, reset, a replica
--                    frozen past its lease), so the next attempt first looks for the outbox id
--                    in the channel's history (message metadata) and adopts what it finds.
--   rate_limited     the last attempt got a 429: its next_attempt_at is Slack's Retry-After,
--                    which "Slack answers again" must not cut short.
--   kind 'dm'        a direct message: channel holds the Slack user id, the conversation is
--                    opened at delivery (decision DMs queued in the decision's transaction).
--   target_channel/target_ts  an update of a message posted outside the outbox (approval
--                    cards), queued in the decision's transaction like any other update.
ALTER TABLE warden_outbox ADD COLUMN IF NOT EXISTS post_started_at timestamptz;
ALTER TABLE warden_outbox ADD COLUMN IF NOT EXISTS rate_limited boolean NOT NULL DEFAULT false;
ALTER TABLE warden_outbox ADD COLUMN IF NOT EXISTS target_channel text;
ALTER TABLE warden_outbox ADD COLUMN IF NOT EXISTS target_ts text;
ALTER TABLE warden_outbox DROP CONSTRAINT IF EXISTS warden_outbox_kind_check;
ALTER TABLE warden_outbox DROP CONSTRAINT IF EXISTS warden_outbox_check;
ALTER TABLE warden_outbox ADD CONSTRAINT warden_outbox_kind_check CHECK (kind IN ('post', 'update', 'dm'));
ALTER TABLE warden_outbox ADD CONSTRAINT warden_outbox_target_check CHECK (
    (kind = 'update') = (target_id IS NOT NULL OR (target_channel IS NOT NULL AND target_ts IS NOT NULL)));
CREATE INDEX IF NOT EXISTS idx_outbox_target_ref ON warden_outbox (target_channel, target_ts) WHERE target_channel IS NOT NULL;

-- Pacing: when each lane (channel) last had a message posted, so that replicas together keep
-- to Slack's one message per second per channel.
CREATE TABLE IF NOT EXISTS warden_outbox_lane (
    lane          text PRIMARY KEY,
    last_post_at  timestamptz NOT NULL
);

-- Storms (issue 12): beyond LOCKOUT_STORM_PER_MINUTE lockouts (and failed-login bursts) in a
-- minute, one summary message per storm, updated in place, instead of a card each.
CREATE TABLE IF NOT EXISTS warden_alert_storm (
    id           bigserial PRIMARY KEY,
    channel      text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    last_at      timestamptz NOT NULL DEFAULT now(),
    post_id      bigint NOT NULL,
    -- Set when an admin asked for the individual cards (posted in the storm's thread).
    cards_requested_by text,
    unlocked_by  text,
    unlocked_at  timestamptz
);
CREATE INDEX IF NOT EXISTS idx_alert_storm_open ON warden_alert_storm (channel, last_at DESC);
ALTER TABLE warden_lockout_alert ADD COLUMN IF NOT EXISTS storm_id bigint REFERENCES warden_alert_storm(id);
ALTER TABLE warden_burst_alert ADD COLUMN IF NOT EXISTS storm_id bigint REFERENCES warden_alert_storm(id);
CREATE INDEX IF NOT EXISTS idx_lockout_alert_storm ON warden_lockout_alert (storm_id) WHERE storm_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_lockout_alert_created ON warden_lockout_alert (created_at);
