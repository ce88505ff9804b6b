-- Promotion review (issue 4): which promotion_request has a review card in Slack, and where.
--
-- A row is the claim "this request is (being) posted": inserted in the same transaction as a
-- request made with /promotions request, or by the poll job for requests the application
-- inserted itself (INSERT ... ON CONFLICT DO NOTHING, so only one claimant ever posts).
-- channel/ts are filled once chat.postMessage answered; posted_at NULL means the post has
-- not succeeded yet and the poll job retries it.
CREATE TABLE IF NOT EXISTS warden_promotion_card (
    request_id        integer PRIMARY KEY REFERENCES promotion_request(id) ON DELETE CASCADE,
    channel           text,
    ts                text,
    claimed_at        timestamptz NOT NULL DEFAULT now(),
    posted_at         timestamptz,
    -- The Slack user who decided, so the card and stale clicks can name them (<@U…>).
    decided_by_slack  text,
    attempts          integer NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS idx_promotion_card_unposted ON warden_promotion_card (claimed_at) WHERE posted_at IS NULL;
