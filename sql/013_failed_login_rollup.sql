-- Failed logins at 10 M audit rows (issue 15). `/audit failed-logins window:30d` grouped every
-- login_failed row of the window by IP and username: at 10 M rows that read ~200 k heap rows
-- (a gigabyte of pages) per click. Warden now keeps, in its own tables, filled by triggers in
-- the same transaction as the audit row:
--  - warden_failed_login: a narrow copy (ip, username, time) of the last 31 days of
--    login_failed rows, so a group is counted from one index-only range scan;
--  - warden_failed_login_pair: per (ip, username) the number of rows folded in and the newest
--    time. A group with at least N attempts in a window has at least N here, so the pairs with
--    attempts >= N and a recent last_at are a superset of the answer, and each is then counted
--    exactly in warden_failed_login. Deleted audit rows are not subtracted (the count stays a
--    superset); pairs and copies older than 31 days are pruned by the retention job
--    (warden_failed_login_prune()).
-- NULL ip/username are stored as '' so that equality (and the indexes) work; reads turn them back.
-- The triggers add one small insert and one upsert to each failed login the application writes.
-- Rows of the same (ip, username) pair update the same counter row: a brute force against one
-- account from one IP serialises those inserts on it for the length of each inserting transaction.

CREATE TABLE IF NOT EXISTS warden_failed_login (
    audit_id bigint PRIMARY KEY,
    "timestamp" timestamptz NOT NULL,
    ip_address text NOT NULL,
    username text NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_failed_login_pair_ts ON warden_failed_login (ip_address, username, "timestamp");
CREATE INDEX IF NOT EXISTS idx_failed_login_ts ON warden_failed_login ("timestamp") INCLUDE (ip_address, username);

CREATE TABLE IF NOT EXISTS warden_failed_login_pair (
    ip_address text NOT NULL,
    username text NOT NULL,
    attempts integer NOT NULL,
    last_at timestamptz NOT NULL,
    PRIMARY KEY (ip_address, username)
);
CREATE INDEX IF NOT EXISTS idx_failed_login_pair_repeat ON warden_failed_login_pair (last_at) WHERE attempts >= 2;

CREATE OR REPLACE FUNCTION warden_failed_login_add(p_id bigint, p_ts timestamptz, p_ip text, p_user text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_ts < now() - interval '31 days' THEN
        RETURN;
    END IF;
    INSERT INTO warden_failed_login (audit_id, "timestamp", ip_address, username)
    VALUES (p_id, p_ts, coalesce(p_ip, ''), coalesce(p_user, ''))
    ON CONFLICT (audit_id) DO NOTHING;
    INSERT INTO warden_failed_login_pair AS p (ip_address, username, attempts, last_at)
    VALUES (coalesce(p_ip, ''), coalesce(p_user, ''), 1, p_ts)
    ON CONFLICT (ip_address, username)
    DO UPDATE SET attempts = p.attempts + 1, last_at = greatest(p.last_at, EXCLUDED.last_at);
END;
$$;

CREATE OR REPLACE FUNCTION warden_failed_login_trigger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.action = 'login_failed' THEN
        DELETE FROM warden_failed_login WHERE audit_id = OLD.id;
        -- A row moved to another pair (anonymisation masks the IP) leaves the old one.
        IF FOUND THEN
            UPDATE warden_failed_login_pair SET attempts = attempts - 1
             WHERE ip_address = coalesce(OLD.ip_address, '') AND username = coalesce(OLD.details->>'username', '');
            DELETE FROM warden_failed_login_pair
             WHERE ip_address = coalesce(OLD.ip_address, '') AND username = coalesce(OLD.details->>'username', '') AND attempts <= 0;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.action = 'login_failed' THEN
        PERFORM warden_failed_login_add(NEW.id, NEW."timestamp", NEW.ip_address, NEW.details->>'username');
    END IF;
    RETURN NULL;
END;
$$;

-- Created before the backfill: from here on concurrent inserts wait for this migration, and
-- the backfill's snapshot sees every row committed before it.
DROP TRIGGER IF EXISTS warden_failed_login_insert ON audit_log;
CREATE TRIGGER warden_failed_login_insert AFTER INSERT ON audit_log
    FOR EACH ROW WHEN (NEW.action = 'login_failed')
    EXECUTE FUNCTION warden_failed_login_trigger();
DROP TRIGGER IF EXISTS warden_failed_login_change ON audit_log;
CREATE TRIGGER warden_failed_login_change AFTER UPDATE OF action, ip_address, details, "timestamp" ON audit_log
    FOR EACH ROW WHEN (OLD.action = 'login_failed' OR NEW.action = 'login_failed')
    EXECUTE FUNCTION warden_failed_login_trigger();
DROP TRIGGER IF EXISTS warden_failed_login_delete ON audit_log;
CREATE TRIGGER warden_failed_login_delete AFTER DELETE ON audit_log
    FOR EACH ROW WHEN (OLD.action = 'login_failed')
    EXECUTE FUNCTION warden_failed_login_trigger();

-- Refills both tables from audit_log (this migration; a bulk load that bypassed the triggers).
CREATE OR REPLACE FUNCTION warden_failed_login_rebuild() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM warden_failed_login;
    DELETE FROM warden_failed_login_pair;
    INSERT INTO warden_failed_login (audit_id, "timestamp", ip_address, username)
    SELECT id, "timestamp", coalesce(ip_address, ''), coalesce(details->>'username', '')
      FROM audit_log
     WHERE action = 'login_failed' AND "timestamp" >= now() - interval '31 days';
    INSERT INTO warden_failed_login_pair (ip_address, username, attempts, last_at)
    SELECT ip_address, username, count(*), max("timestamp")
      FROM warden_failed_login
     GROUP BY ip_address, username;
END;
$$;

-- Drops what no window (at most 30 days) can reach any more; returns the copies removed.
CREATE OR REPLACE FUNCTION warden_failed_login_prune() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    removed bigint;
BEGIN
    DELETE FROM warden_failed_login WHERE "timestamp" < now() - interval '31 days';
    GET DIAGNOSTICS removed = ROW_COUNT;
    DELETE FROM warden_failed_login_pair WHERE last_at < now() - interval '31 days';
    RETURN removed;
END;
$$;

SELECT warden_failed_login_rebuild();

ANALYZE warden_failed_login;
ANALYZE warden_failed_login_pair;
