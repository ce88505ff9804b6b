-- Promotion review (issue 4), second step: the request status each card last showed, so
-- the poll job re-renders cards whose request changed without Warden updating them
-- (decided in the web dashboard, or an update lost to a crash). A separate file because
-- 004_promotions.sql was already applied in places (migrations are never edited).
ALTER TABLE warden_promotion_card ADD COLUMN IF NOT EXISTS rendered_status text;
