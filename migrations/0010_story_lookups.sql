-- A story is found by the link of any of its entries, and by the title of an entry that joined
-- it by link, not only by its first entry's link and title.
--
-- A new entry was looked up by `stories.canonical_link` and `stories.title_key`, which are the
-- first entry's. Wire copy often arrives as A (link L1, title T), then B (link L2, title T),
-- which joins by title; then C (link L2, title "T | Outlet"), which found neither and became a
-- second story, flagged and alerted again.
--
-- Links: every entry already stores its canonical link, so the entries' own index answers
-- "which story has an entry with this link" once the link comes first in it; with the story
-- in the index too, without reading the entry. Lookups by (feed_id, canonical_link) use it as
-- before. A link that several items of one document share (a feed giving its home page for
-- every item) names no story: such entries are marked `link_shared`. Entries stored before this
-- migration are marked when another entry of their feed has the same link.
--
-- Upgrading rebuilds this index over every stored entry once, at the first start (seconds per
-- million entries; the daemon starts polling after it).
ALTER TABLE entries ADD COLUMN link_shared INTEGER;   -- 1: the link was not the item's own (above)
CREATE INDEX entries_by_link ON entries (canonical_link, feed_id, link_shared, story_id);
UPDATE entries SET link_shared = 1
WHERE canonical_link IS NOT NULL
  AND EXISTS (SELECT 1 FROM entries o
              WHERE o.canonical_link = entries.canonical_link AND o.feed_id = entries.feed_id
                AND o.id <> entries.id);
DROP INDEX entries_by_feed_link;

-- Titles: an entry that joins a story by link under a title key the story does not have yet
-- records it here (rare: most copies of a story keep its title). Not filled for entries stored
-- before this migration.
CREATE TABLE story_titles (
    title_key TEXT    NOT NULL,   -- as stories.title_key
    story_id  INTEGER NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
    seen_at   TEXT    NOT NULL,   -- the title groups entries only within 48 hours of this
    PRIMARY KEY (title_key, story_id)
) WITHOUT ROWID;
-- Deleting a story (retention) deletes its titles through this index.
CREATE INDEX story_titles_by_story ON story_titles (story_id);
