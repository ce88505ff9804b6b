-- Ack first (issue 12): a form whose submission sends an e-mail or a Slack DM carrying a
-- secret (a 2FA recovery code, a set-password or reset link) is answered at once; the send
-- happens after the transaction that wrote its rows has committed, never inside one.
-- One row per send is the state machine:
--   pending ──(the mail API / Slack accepted it)──▶ sent
--      │──(refused, timed out)──▶ failed       the code or link is revoked, audited, the admin told
--      └──(lease ran out: the process died or hung)──▶ interrupted   same, found by a job
-- The secret itself is never stored here (only a hash of a link's token, to revoke exactly it).
CREATE TABLE IF NOT EXISTS warden_pending_send (
    id                     bigserial PRIMARY KEY,
    kind                   text NOT NULL CHECK (kind IN ('2fa_code', 'set_password_link', 'reset_link')),
    channel                text NOT NULL CHECK (channel IN ('email', 'slack')),
    target_user_id         integer REFERENCES "user"(id) ON DELETE CASCADE,
    -- 2fa_code: warden_2fa_code.id; links: the user's id.
    ref_id                 integer,
    -- Masked destination, for the messages about it (bob***@***.com, a Slack mention).
    destination            text NOT NULL,
    secret_hash            text,
    requested_by           integer REFERENCES "user"(id) ON DELETE SET NULL,
    requested_by_username  text NOT NULL,
    requested_by_slack     text,
    status                 text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'interrupted')),
    -- A pending send past this time was abandoned (its process died); the sweep job reports it.
    lease_until            timestamptz NOT NULL,
    error                  text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    finished_at            timestamptz
);
CREATE INDEX IF NOT EXISTS idx_pending_send_due ON warden_pending_send (lease_until) WHERE status = 'pending';
