-- Identity is privileged (issue 10): who is who must not change silently.

-- The (normalised) e-mail an automatic link was made with. When the account e-mail or the
-- Slack profile e-mail later differs from it, the link stops working until re-confirmed.
ALTER TABLE warden_slack_link ADD COLUMN IF NOT EXISTS email text;

-- Every change of an account's identity (e-mail, Slack link, re-enabling), who made it and
-- when: the cool-down rules and the approval cards read it. Kept apart from audit_log so
-- those reads stay an index lookup, and so audit retention cannot shorten a cool-down.
--   kind  'email' | 'slack_link' | 'slack_unlink' | 'reenabled'
CREATE TABLE IF NOT EXISTS warden_identity_change (
    id                   bigserial PRIMARY KEY,
    user_id              integer NOT NULL REFERENCES "user"(id) ON DELETE CASCADE,
    kind                 text NOT NULL CHECK (kind IN ('email', 'slack_link', 'slack_unlink', 'reenabled')),
    changed_by           integer REFERENCES "user"(id) ON DELETE SET NULL,
    changed_by_username  text,
    summary              text NOT NULL DEFAULT '',
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_identity_change_user ON warden_identity_change (user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_identity_change_by ON warden_identity_change (changed_by, created_at DESC);

-- Every replica caches which Slack user is which account. A change of a link, or of an
-- account's e-mail, role or lock (including by the application itself, or by hand in psql)
-- is announced on warden_identity when it commits, so each replica drops what it cached.
CREATE OR REPLACE FUNCTION warden_notify_identity_link() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('warden_identity', 'link:' || OLD.slack_team_id || ':' || OLD.slack_user_id);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        PERFORM pg_notify('warden_identity', 'link:' || NEW.slack_team_id || ':' || NEW.slack_user_id);
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION warden_notify_identity_user() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('warden_identity', 'user:' || OLD.id);
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS warden_identity_link ON warden_slack_link;
CREATE TRIGGER warden_identity_link AFTER INSERT OR UPDATE OR DELETE ON warden_slack_link
    FOR EACH ROW EXECUTE FUNCTION warden_notify_identity_link();

DROP TRIGGER IF EXISTS warden_identity_user_update ON "user";
CREATE TRIGGER warden_identity_user_update AFTER UPDATE ON "user"
    FOR EACH ROW WHEN (OLD.email IS DISTINCT FROM NEW.email OR OLD.role IS DISTINCT FROM NEW.role
                       OR OLD.locked_until IS DISTINCT FROM NEW.locked_until OR OLD.username IS DISTINCT FROM NEW.username)
    EXECUTE FUNCTION warden_notify_identity_user();

DROP TRIGGER IF EXISTS warden_identity_user_delete ON "user";
CREATE TRIGGER warden_identity_user_delete AFTER DELETE ON "user"
    FOR EACH ROW EXECUTE FUNCTION warden_notify_identity_user();
