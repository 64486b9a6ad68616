-- Search reads the text of article pages too (feeds with `fetch_articles`, migration 0017): a
-- story the feed only teases is found by the words of its page, as it is matched on them.
--
-- The index gets a fourth column, `article`, and reads its text back (for snippet()) from the
-- view `entries_search_text`: each entry's title, summary and content with its page's text,
-- NULL when it has no page. A query without a column filter searches all four, so
-- `xiaomi AND "electric car"` finds a story whose title names Xiaomi and whose page the car;
-- `article: battery` searches the pages alone.
--
-- The rules of migration 0008 hold, with one more way for an indexed entry to change: its page's
-- text. Each change removes the entry's old text from the index and queues it, and the catch-up
-- indexes it again with its current text. An external-content index must be told exactly the
-- values it indexed to remove them, so every removal passes the page's text as it was:
--   * an edit of the entry passes the page's text as it is (its own statement does not change it);
--   * a change of the page's text passes the old text;
--   * a page row inserted over another (INSERT OR REPLACE, an upsert) passes the text of the row
--     it meets, before the insert;
--   * a deleted entry is removed BEFORE the delete, while its page's row, which the delete
--     cascades to, can still be read. Without foreign keys (a sqlite3 session's default) the
--     delete takes the page's row with it here, so that an entry given the same id later does
--     not inherit the page.
-- Moving a page's row to another entry (UPDATE articles SET entry_id) is not followed: rebuild
-- the index afterwards (below).
--
-- The index is built again from the view here, at the first start of a version with this
-- migration: about as long as `feedhound reindex` (seconds per million entries), so that no
-- search misses entries afterwards. Rebuilding the index by hand must reset the state in the same
-- transaction:
--     BEGIN;
--     INSERT INTO entries_fts (entries_fts) VALUES ('rebuild');
--     DELETE FROM search_queue;
--     UPDATE search_state SET damaged = 0,
--         indexed_through = (SELECT coalesce(max(id), 0) FROM entries);
--     COMMIT;

DROP TRIGGER entries_search_update;
DROP TRIGGER entries_search_delete;
DROP TABLE entries_fts;

CREATE VIEW entries_search_text AS
    SELECT e.id AS id, e.title AS title, e.summary AS summary, e.content AS content,
           a.text AS article
    FROM entries e LEFT JOIN articles a ON a.entry_id = e.id;

CREATE VIRTUAL TABLE entries_fts USING fts5(
    title, summary, content, article,
    content = 'entries_search_text', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);
-- As migrations 0005 and 0006 set them for the index this replaces.
INSERT INTO entries_fts (entries_fts, rank) VALUES ('automerge', 16);
INSERT INTO entries_fts (entries_fts, rank) VALUES ('hashsize', 8388608);

INSERT INTO entries_fts (entries_fts) VALUES ('rebuild');
DELETE FROM search_queue;
UPDATE search_state SET damaged = 0,
    indexed_through = (SELECT coalesce(max(id), 0) FROM entries);

CREATE TRIGGER entries_search_update AFTER UPDATE OF title, summary, content ON entries
WHEN old.id <= (SELECT indexed_through FROM search_state WHERE NOT damaged)
 AND NOT EXISTS (SELECT 1 FROM search_queue WHERE entry_id = old.id) BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, summary, content, article)
        VALUES ('delete', old.id, old.title, old.summary, old.content,
                (SELECT text FROM articles WHERE entry_id = old.id));
    INSERT INTO search_queue (entry_id) VALUES (old.id);
END;

CREATE TRIGGER entries_search_delete BEFORE DELETE ON entries BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, summary, content, article)
        SELECT 'delete', old.id, old.title, old.summary, old.content,
               (SELECT text FROM articles WHERE entry_id = old.id)
        WHERE old.id <= (SELECT indexed_through FROM search_state WHERE NOT damaged)
          AND NOT EXISTS (SELECT 1 FROM search_queue WHERE entry_id = old.id);
    DELETE FROM search_queue WHERE entry_id = old.id;
END;

-- As in 0008, a reused id must land above the mark.
CREATE TRIGGER entries_search_deleted AFTER DELETE ON entries BEGIN
    DELETE FROM articles WHERE entry_id = old.id;
    UPDATE search_state SET indexed_through = (SELECT coalesce(max(id), 0) FROM entries)
        WHERE indexed_through > (SELECT coalesce(max(id), 0) FROM entries);
END;

-- A page's text changes when it is read, and goes when its entry's link changes. feedhound
-- neither replaces a page's row nor deletes one by itself (an entry's delete cascades to it,
-- when the entry is gone and out of the index already); the triggers for those keep the index
-- right when it is done by hand.
CREATE TRIGGER articles_search_update AFTER UPDATE OF text ON articles
WHEN old.text IS NOT new.text
 AND old.entry_id <= (SELECT indexed_through FROM search_state WHERE NOT damaged)
 AND NOT EXISTS (SELECT 1 FROM search_queue WHERE entry_id = old.entry_id) BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, summary, content, article)
        SELECT 'delete', e.id, e.title, e.summary, e.content, old.text
        FROM entries e WHERE e.id = old.entry_id;
    INSERT INTO search_queue (entry_id)
        SELECT id FROM entries WHERE id = old.entry_id;
END;

-- BEFORE: a REPLACE deletes the row it meets without firing delete triggers.
CREATE TRIGGER articles_search_insert BEFORE INSERT ON articles
WHEN new.text IS NOT (SELECT text FROM articles WHERE entry_id = new.entry_id)
 AND new.entry_id <= (SELECT indexed_through FROM search_state WHERE NOT damaged)
 AND NOT EXISTS (SELECT 1 FROM search_queue WHERE entry_id = new.entry_id) BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, summary, content, article)
        SELECT 'delete', e.id, e.title, e.summary, e.content,
               (SELECT text FROM articles WHERE entry_id = new.entry_id)
        FROM entries e WHERE e.id = new.entry_id;
    INSERT INTO search_queue (entry_id)
        SELECT id FROM entries WHERE id = new.entry_id;
END;

CREATE TRIGGER articles_search_delete AFTER DELETE ON articles
WHEN old.text IS NOT NULL
 AND old.entry_id <= (SELECT indexed_through FROM search_state WHERE NOT damaged)
 AND NOT EXISTS (SELECT 1 FROM search_queue WHERE entry_id = old.entry_id) BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, summary, content, article)
        SELECT 'delete', e.id, e.title, e.summary, e.content, old.text
        FROM entries e WHERE e.id = old.entry_id;
    INSERT INTO search_queue (entry_id)
        SELECT id FROM entries WHERE id = old.entry_id;
END;
