-- Article pages (src/articles.rs): for a feed with `fetch_articles`, each new entry's link is
-- fetched and the story's readable text kept here, so a story the feed only teases is matched
-- on its whole text. A row is queued in the transaction that stores its entry, so an article
-- waiting to be fetched survives a crash or a restart.
ALTER TABLE feeds ADD COLUMN fetch_articles INTEGER NOT NULL DEFAULT 0;

CREATE TABLE articles (
    entry_id        INTEGER PRIMARY KEY REFERENCES entries(id) ON DELETE CASCADE,
    url             TEXT    NOT NULL,   -- the entry's link, as fetched
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'fetched', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,   -- failed attempts since the last success
    next_attempt_at TEXT,               -- pending: when it is due
    fetched_at      TEXT,               -- the last time its text was read
    status          INTEGER,            -- HTTP status of the last attempt, when one came
    error           TEXT,               -- why the last attempt failed
    text            TEXT,               -- the story's plain text, from the last success
    from_backlog    INTEGER NOT NULL DEFAULT 0   -- its entry came in a backlog document
);
CREATE INDEX articles_due ON articles (next_attempt_at) WHERE state = 'pending';
