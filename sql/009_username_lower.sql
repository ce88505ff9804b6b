-- Usernames are looked up case-insensitively (`/users show BOB` finds bob; an exact match
-- wins when the application has names that differ only in case).
CREATE INDEX IF NOT EXISTS idx_user_username_lower ON "user" (lower(username));
