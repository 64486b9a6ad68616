-- Full-text search over entries, and the tombstones that retention leaves behind.

-- An FTS5 index of each entry's title, summary and content. It is an external-content index
-- (content='entries'): the text is not stored twice, snippet() reads it back from `entries`.
-- unicode61 with remove_diacritics 2 folds case and accents ("Nestle" finds "Nestlé"); no
-- stemming, so a company name is matched as written (use `acqui*` for prefixes).
CREATE VIRTUAL TABLE entries_fts USING fts5(
    title, summary, content,
    content = 'entries', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

-- The triggers keep the index in step with `entries`. An external-content index must be told
-- the old values to remove them, hence the 'delete' command rows.
CREATE TRIGGER entries_fts_insert AFTER INSERT ON entries BEGIN
    INSERT INTO entries_fts (rowid, title, summary, content)
        VALUES (new.id, new.title, new.summary, new.content);
END;
CREATE TRIGGER entries_fts_delete AFTER DELETE ON entries BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, summary, content)
        VALUES ('delete', old.id, old.title, old.summary, old.content);
END;
-- Only when the text changes: every poll touches `last_seen_at`, which must not re-index.
CREATE TRIGGER entries_fts_update AFTER UPDATE OF title, summary, content ON entries BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, title, summary, content)
        VALUES ('delete', old.id, old.title, old.summary, old.content);
    INSERT INTO entries_fts (rowid, title, summary, content)
        VALUES (new.id, new.title, new.summary, new.content);
END;

-- Entries stored before this migration.
INSERT INTO entries_fts (entries_fts) VALUES ('rebuild');

-- Retention (`[storage] retain`) deletes old entries without mentions; the publisher may keep
-- serving them, so their dedup keys stay here and such an entry is not stored again.
CREATE TABLE tombstones (
    feed_id    INTEGER NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
    dedup_key  TEXT    NOT NULL,
    pruned_at  TEXT    NOT NULL,
    PRIMARY KEY (feed_id, dedup_key)
) WITHOUT ROWID;

-- Age as retention and "newest first" listings define it.
CREATE INDEX entries_by_age ON entries (coalesce(published_at, first_seen_at));
