-- A title joins a story only when none of the story's entries came from the new entry's own
-- feed (store::flags, story_for). With entries_by_story on story_id alone, that check read the
-- row of every entry in the story, kilobytes of text each and mostly not in the page cache: a
-- wire story carried by 50 feeds cost 50 row reads for every copy that arrived, so a cold poll
-- of the benchmark corpus read 170,000 pages more and took half as long again. With the feed in
-- the index the check is one index lookup. Queries by story alone still seek the index by story,
-- but no longer read a story's entries in id order: min(id) and an ORDER BY id within a story
-- read (or sort) the story's few index entries.
DROP INDEX entries_by_story;
CREATE INDEX entries_by_story ON entries (story_id, feed_id);
