-- A story is found by the link or title of any of its entries, not only by its first entry's.
--
-- A new entry was looked up by `stories.canonical_link` and `stories.title_key`, which are the
-- first entry's. Wire copy often arrives as A (link L1, title T), then B (link L2, title T),
-- which joins by title; then C (link L2, title "T | Outlet"), which found neither and became a
-- second story, flagged and alerted again. Now an entry that joins a story under a link or a
-- title key the story does not have yet adds it here, and lookups read both places.
CREATE TABLE story_aliases (
    kind      TEXT    NOT NULL CHECK (kind IN ('link', 'title')),
    key       TEXT    NOT NULL,   -- a canonical link, or a title key (as stories.title_key)
    story_id  INTEGER NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
    seen_at   TEXT    NOT NULL,   -- a title groups entries only within 48 hours of this
    PRIMARY KEY (kind, key, story_id)
) WITHOUT ROWID;
-- Deleting a story (retention) deletes its aliases through this index.
CREATE INDEX story_aliases_by_story ON story_aliases (story_id);
