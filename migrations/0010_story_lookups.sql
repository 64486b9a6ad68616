-- A story is found by the link or title of any of its entries, not only by its first entry's.
--
-- A new entry was looked up by `stories.canonical_link` and `stories.title_key`, which are the
-- first entry's. Wire copy often arrives as A (link L1, title T), then B (link L2, title T),
-- which joins by title; then C (link L2, title "T | Outlet"), which found neither and became a
-- second story, flagged and alerted again.
--
-- Links: every entry already stores its canonical link, so the entries' own index answers
-- "which story has an entry with this link" once the link comes first in it. Lookups by
-- (feed_id, canonical_link) use it as before.
DROP INDEX entries_by_feed_link;
CREATE INDEX entries_by_link ON entries (canonical_link, feed_id);

-- Titles: an entry that joins a story by link under a title key the story does not have yet
-- records it here (rare: most copies of a story keep its title).
CREATE TABLE story_titles (
    title_key TEXT    NOT NULL,   -- as stories.title_key
    story_id  INTEGER NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
    seen_at   TEXT    NOT NULL,   -- the title groups entries only within 48 hours of this
    PRIMARY KEY (title_key, story_id)
) WITHOUT ROWID;
-- Deleting a story (retention) deletes its titles through this index.
CREATE INDEX story_titles_by_story ON story_titles (story_id);
