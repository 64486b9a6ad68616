-- Tombstones are forgotten once their feed has stopped serving them.
--
-- Retention leaves a tombstone for each entry it deletes, so a feed that keeps serving the
-- entry does not bring it back. Kept forever they grow with every prune (about 100 bytes per
-- deleted entry). A tombstone is only needed while the publisher still serves its key, so it
-- now records when a parsed document last carried the key, and a prune forgets it when
--
--     last_served_at < the retention cutoff          (not served for the whole period)
--     AND last_served_at < feeds.document_at          (and a newer document came without it)
--
-- The second condition keeps the tombstones of a feed that answered 304 or an identical body
-- all that time: its document may still carry them.
ALTER TABLE tombstones ADD COLUMN last_served_at TEXT NOT NULL DEFAULT '';
-- Existing tombstones: their entry was last served no later than it was pruned.
UPDATE tombstones SET last_served_at = pruned_at;

ALTER TABLE feeds ADD COLUMN document_at TEXT;  -- when the last new document was parsed (NULL: not since 0009)
