-- The writer fills its map of recent titles (src/store/titles.rs) with the stories first seen in
-- the last two days and an hour, found through this index. `first_seen_at` is the fetch time of
-- the story's first entry, so new stories land at or near the end of it.
CREATE INDEX stories_by_first_seen ON stories (first_seen_at);
