-- Failed logins (issue 15), follow-up of 013/014: a pair's last_at becomes exactly the newest
-- attempt the narrow copy holds for it. Until now a row leaving the copy (a deleted audit row,
-- an anonymised IP, a timestamp moved back) could leave last_at too new. Exact, "last_at inside
-- the window" means "at least one attempt in the window", so `/audit failed-logins min:1` counts
-- its groups and finds its single-attempt groups from the pair table (index below) instead of
-- grouping every copy row in the window (7 days at 10 M rows: ~48 k rows, ~95 ms).

CREATE OR REPLACE FUNCTION warden_failed_login_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_ip text;
    old_user text;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.action = 'login_failed' THEN
        DELETE FROM warden_failed_login WHERE audit_id = OLD.id;
        -- A row moved to another pair (anonymisation masks the IP) leaves the old one.
        IF FOUND THEN
            old_ip := coalesce(OLD.ip_address, '');
            old_user := coalesce(OLD.details->>'username', '');
            -- Only when the row leaving was the newest is last_at read again from the copy
            -- (one index probe); otherwise it stays, including a newer attempt a concurrent
            -- insert has just set.
            UPDATE warden_failed_login_pair p
               SET attempts = p.attempts - 1,
                   last_at = CASE WHEN OLD."timestamp" < p.last_at THEN p.last_at
                                  ELSE coalesce((SELECT max(f."timestamp") FROM warden_failed_login f
                                                  WHERE f.ip_address = old_ip AND f.username = old_user), p.last_at) END
             WHERE p.ip_address = old_ip AND p.username = old_user;
            DELETE FROM warden_failed_login_pair
             WHERE ip_address = old_ip AND username = old_user AND attempts <= 0;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.action = 'login_failed' THEN
        PERFORM warden_failed_login_add(NEW.id, NEW."timestamp", NEW.ip_address, NEW.details->>'username');
    END IF;
    RETURN NULL;
END;
$$;

-- Made exact once from the copy (Warden's own tables; audit_log is not read).
UPDATE warden_failed_login_pair p
   SET last_at = m.last_at
  FROM (SELECT ip_address, username, max("timestamp") AS last_at FROM warden_failed_login GROUP BY ip_address, username) m
 WHERE m.ip_address = p.ip_address AND m.username = p.username AND m.last_at IS DISTINCT FROM p.last_at;

-- Every pair by its newest attempt (the existing index covers repeated pairs only).
CREATE INDEX IF NOT EXISTS idx_failed_login_pair_last ON warden_failed_login_pair (last_at);
ANALYZE warden_failed_login_pair;
