-- Both indexes over entries that reports read end to end now carry what those reports need,
-- so that they never read an entry's row, kilobytes of text each and mostly not in the page
-- cache:
--
-- - entries_by_age, walked for a period (`companies`, `mentions --since`, the windows of the
--   newest flagged stories), gains the entry's story and feed;
-- - entries_by_story, sought for a story's other entries ("did a feed name the company in this
--   story before the period?", "when did the company first appear in it?"), gains the entry's
--   date.
--
-- On 1,000,000 entries `companies --since 182d` read 140,000 rows for the stories of the
-- period and as many again for their earlier entries: about a second for each of its two
-- periods, 0.3–0.5 s with these indexes (bench/RESULTS.md, session 58). A new entry writes no
-- more index entries than before, only wider ones: the file grows 0.9% more per entry and a cold
-- poll writes 4–8% more. An edited entry now rewrites its entries_by_story entry too, as its
-- date is set again (to itself when the edit gives none).
--
-- Upgrading rebuilds both indexes over every stored entry once, at the first start (seconds
-- per million entries; the daemon starts polling after it). IF EXISTS: a user may have dropped
-- one of them by hand.
DROP INDEX IF EXISTS entries_by_age;
CREATE INDEX entries_by_age ON entries (coalesce(published_at, first_seen_at), story_id, feed_id);
DROP INDEX IF EXISTS entries_by_story;
CREATE INDEX entries_by_story ON entries (story_id, feed_id, coalesce(published_at, first_seen_at));
