-- New entries queue for the search index instead of being indexed one row at a time.
--
-- Inside a transaction, every statement that needs a statement journal (an INSERT with a
-- trigger, for one) opens a savepoint, and FTS5 writes its pending terms to disk as a new
-- segment at every savepoint. Indexing from the insert trigger therefore made a segment per
-- entry, and merging those segments cost more than everything else a cold poll does. Now the
-- insert trigger only records the entry's id; the writer indexes all queued entries with one
-- statement at the end of each transaction (store::search::index_queued), so the index is in
-- step with `entries` at every such commit, and an entry that arrives from elsewhere (a user's
-- sqlite3 session) is indexed by feedhound's next write of feed results.
--
-- The queue holds exactly the entries the index lacks. Rebuilding the index by hand must
-- therefore empty it in the same transaction:
--     BEGIN; INSERT INTO entries_fts (entries_fts) VALUES ('rebuild'); DELETE FROM search_queue; COMMIT;

CREATE TABLE search_queue (
    entry_id INTEGER PRIMARY KEY   -- an entry not yet in entries_fts
);

DROP TRIGGER entries_fts_insert;
DROP TRIGGER entries_fts_update;
DROP TRIGGER entries_fts_delete;

CREATE TRIGGER entries_search_enqueue AFTER INSERT ON entries BEGIN
    INSERT OR IGNORE INTO search_queue (entry_id) VALUES (new.id);
END;

-- A queued entry is not in the index yet: nothing to remove, and it is indexed with its new
-- text when the queue is worked off. An indexed one has its old text removed and is queued.
CREATE TRIGGER entries_search_update AFTER UPDATE OF title, summary, content ON entries
WHEN NOT EXISTS (SELECT 1 FROM search_queue WHERE entry_id = old.id) BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, summary, content)
        VALUES ('delete', old.id, old.title, old.summary, old.content);
    INSERT OR IGNORE INTO search_queue (entry_id) VALUES (new.id);
END;

CREATE TRIGGER entries_search_delete AFTER DELETE ON entries BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, summary, content)
        SELECT 'delete', old.id, old.title, old.summary, old.content
        WHERE NOT EXISTS (SELECT 1 FROM search_queue WHERE entry_id = old.id);
    DELETE FROM search_queue WHERE entry_id = old.id;
END;

-- Let FTS5 gather up to 8 MiB of terms in memory before writing a segment (the default is
-- 1 MiB): a write of a few thousand entries then becomes one segment, not several to merge
-- (a cold poll of 50,000 entries: about 3% faster, for about 8 MiB more memory while it runs).
INSERT INTO entries_fts (entries_fts, rank) VALUES ('hashsize', 8388608);
