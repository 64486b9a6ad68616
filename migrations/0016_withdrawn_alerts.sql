-- An alert that has not gone out is withdrawn while its story names no company its target wants
-- (an edit took them out, or the config no longer tracks them or sends them to that target), and
-- put back when it does again (src/store/flags.rs). The row stays as it was, with its
-- idempotency key and `told`, so an alert put back goes out as the one a receiver may already
-- have seen an attempt of.
ALTER TABLE outbox ADD COLUMN withdrawn_at TEXT;   -- NULL: not withdrawn
DROP INDEX outbox_pending;
CREATE INDEX outbox_pending ON outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND withdrawn_at IS NULL;
-- Each edit and copy of a story reassesses its undelivered alerts: found here, not by reading
-- every alert ever queued.
CREATE INDEX outbox_undelivered_by_story ON outbox (story_id) WHERE delivered_at IS NULL;
