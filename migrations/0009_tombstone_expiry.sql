-- Tombstones are forgotten once their feed has stopped serving them.
--
-- Retention leaves a tombstone for each entry it deletes, so a feed that keeps serving the
-- entry does not bring it back. Kept forever they grow with every prune (about 100 bytes per
-- deleted entry), yet one is only needed while the publisher still serves its key. Each new
-- document of the feed now sets `absent_since` on the tombstones whose keys it lacks, and
-- clears it on those it carries again; a prune forgets tombstones absent since before the
-- retention cutoff. One short or truncated document therefore forgets nothing: the next full
-- one clears the mark. A feed that answers 304 (nothing parsed) changes no mark.
--
-- NULL: the key was in the feed's latest document, or no document has been parsed since the
-- tombstone was written (existing tombstones start so: a full retention period of grace).
ALTER TABLE tombstones ADD COLUMN absent_since TEXT;
-- The prune's lookup, and each new document's: it marks only the feed's unmarked tombstones.
CREATE INDEX tombstones_by_absence ON tombstones (absent_since) WHERE absent_since IS NOT NULL;
CREATE INDEX tombstones_served ON tombstones (feed_id, dedup_key) WHERE absent_since IS NULL;
