-- New entries are found for the search index by their id, not queued one by one.
--
-- The insert trigger of 0006 made SQLite open a statement journal for every entry inserted
-- (a trigger's writes must roll back with the statement that fired it), and the queue row it
-- wrote was written, read and deleted again at the end of the transaction: together about 7% of
-- the instructions of a cold poll, all on the writer thread. SQLite gives a new row the largest
-- id in the table plus one, so every entry not yet indexed lies above one mark:
--
--     an entry is in entries_fts  <=>  id <= search_state.indexed_through
--                                      AND id is not in search_queue
--
-- Each transaction that records feed results ends by indexing the queued entries and every entry
-- above the mark, then moving the mark to the largest id (store::search::index_pending). An entry
-- that a user's sqlite3 session inserts also lands above the mark, so it is indexed by
-- feedhound's next write, as before. The queue now only holds indexed entries whose text was
-- edited (ids at or below the mark).
--
-- Deleting the entries with the largest ids would let SQLite hand their ids out again; the delete
-- trigger lowers the mark to the largest remaining id, so a reused id is above the mark too. An
-- entry inserted by hand with an id of its own at or below the mark is not indexed: let SQLite
-- choose the id, or rebuild the index afterwards.
--
-- When the index cannot take writes (damaged), feedhound sets `damaged`: from then on nothing
-- touches the index, so feed results are still stored, until `feedhound reindex` rebuilds it.
-- Rebuilding the index by hand must reset the state in the same transaction:
--     BEGIN;
--     INSERT INTO entries_fts (entries_fts) VALUES ('rebuild');
--     DELETE FROM search_queue;
--     UPDATE search_state SET damaged = 0,
--         indexed_through = (SELECT coalesce(max(id), 0) FROM entries);
--     COMMIT;

CREATE TABLE search_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),   -- one row
    indexed_through INTEGER NOT NULL,                     -- see above
    damaged         INTEGER NOT NULL DEFAULT 0            -- 1: the index is set aside, see above
);

-- Every entry is indexed or queued at this point (0006): the queued ones stay queued.
INSERT INTO search_state (id, indexed_through) VALUES (1, (SELECT coalesce(max(id), 0) FROM entries));

DROP TRIGGER entries_search_enqueue;
DROP TRIGGER entries_search_update;
DROP TRIGGER entries_search_delete;

-- An indexed entry has its old text removed and is queued; one above the mark or already queued
-- is indexed with its current text anyway.
CREATE TRIGGER entries_search_update AFTER UPDATE OF title, summary, content ON entries
WHEN old.id <= (SELECT indexed_through FROM search_state WHERE NOT damaged)
 AND NOT EXISTS (SELECT 1 FROM search_queue WHERE entry_id = old.id) BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, summary, content)
        VALUES ('delete', old.id, old.title, old.summary, old.content);
    INSERT INTO search_queue (entry_id) VALUES (old.id);
END;

CREATE TRIGGER entries_search_delete AFTER DELETE ON entries BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, summary, content)
        SELECT 'delete', old.id, old.title, old.summary, old.content
        WHERE old.id <= (SELECT indexed_through FROM search_state WHERE NOT damaged)
          AND NOT EXISTS (SELECT 1 FROM search_queue WHERE entry_id = old.id);
    DELETE FROM search_queue WHERE entry_id = old.id;
    UPDATE search_state SET indexed_through = (SELECT coalesce(max(id), 0) FROM entries)
        WHERE indexed_through > (SELECT coalesce(max(id), 0) FROM entries);
END;
