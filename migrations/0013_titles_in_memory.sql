-- `stories_by_title` goes: the writer finds recent stories by title through a map it holds in
-- memory (src/store/titles.rs), filled from `stories` when it starts. Title keys arrive in no
-- order, so each group of new stories rewrote most of this index's leaf pages, and with hundreds
-- of thousands of stories that was most of what a cold poll wrote. `title_key` stays in
-- `stories`, for the map and for anyone querying it.
DROP INDEX stories_by_title;
