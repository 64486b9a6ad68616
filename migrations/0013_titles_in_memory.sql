-- `stories_by_title` goes: the writer finds recent stories by title through a map it holds in
-- memory (src/store/titles.rs). Title keys arrive in no order, so each group of new stories
-- rewrote most of this index's leaf pages, and with hundreds of thousands of stories that was
-- most of what a cold poll wrote. `title_key` stays in `stories`, for the map and for anyone
-- querying it.
DROP INDEX stories_by_title;
-- The map is filled with the stories first seen in the last two days, found through this index;
-- new stories only ever add to its end.
CREATE INDEX stories_by_first_seen ON stories (first_seen_at);
