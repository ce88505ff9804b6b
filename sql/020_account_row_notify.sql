-- Each replica caches the account row of whoever acts through Slack for a few seconds (#15:
-- one SQL round trip less per request). sql/015 announces changes of the identity columns
-- (e-mail, role, lock, username) as 'user:ID'; any other change of the row (2FA, dispatch
-- area, login counters, …), whoever makes it (the application, another replica, psql), is
-- announced here as 'row:ID' when it commits, so every replica drops that row at once.
-- One notification per changed row; an UPDATE that changes nothing announces nothing.
CREATE OR REPLACE FUNCTION warden_notify_account_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('warden_identity', 'row:' || OLD.id);
    IF NEW.id IS DISTINCT FROM OLD.id THEN
        PERFORM pg_notify('warden_identity', 'row:' || NEW.id);
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS warden_account_row_update ON "user";
CREATE TRIGGER warden_account_row_update AFTER UPDATE ON "user"
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION warden_notify_account_row();
