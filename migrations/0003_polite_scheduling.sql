-- What the scheduler learns about each feed, and why it polls when it does.
ALTER TABLE feeds ADD COLUMN fetch_url TEXT;            -- where a permanent redirect moved the feed (NULL: url)
ALTER TABLE feeds ADD COLUMN redirect_candidate TEXT;   -- a 301/308 target seen but not yet trusted
ALTER TABLE feeds ADD COLUMN redirect_seen INTEGER NOT NULL DEFAULT 0;  -- consecutive polls it was seen
ALTER TABLE feeds ADD COLUMN gone_at TEXT;              -- set by 410 Gone: no longer polled
ALTER TABLE feeds ADD COLUMN retry_after TEXT;          -- the server's Retry-After, when one was sent
ALTER TABLE feeds ADD COLUMN interval_secs_current INTEGER;  -- the interval the next poll was planned with
ALTER TABLE feeds ADD COLUMN interval_reason TEXT;      -- config, adaptive, server hint, default, backoff, retry-after
ALTER TABLE feeds ADD COLUMN adaptive_secs INTEGER;     -- interval derived from the feed's own publishing rate
ALTER TABLE feeds ADD COLUMN doc_hint_secs INTEGER;     -- <ttl> / sy:updatePeriod of the last parsed document
CREATE INDEX feeds_due ON feeds (next_poll_at) WHERE active = 1 AND gone_at IS NULL;
