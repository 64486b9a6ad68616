-- When each alert last failed, set with `last_error`, so a target's latest error can be told
-- from an older one still held by another of its alerts (`feedhound alerts` showed the newest
-- alert's error, which may be from an earlier round).
ALTER TABLE outbox ADD COLUMN last_failed_at TEXT;   -- NULL: never failed, delivered since, or failed before this migration
