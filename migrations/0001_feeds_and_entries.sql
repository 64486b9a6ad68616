-- Feeds as configured, plus what we learned fetching them.
-- Times are UTC text 'YYYY-MM-DD HH:MM:SS', the format of SQLite's datetime(), so that
-- `WHERE published_at > datetime('now', '-7 days')` works as written.
CREATE TABLE feeds (
    id               INTEGER PRIMARY KEY,
    url              TEXT    NOT NULL UNIQUE,          -- as written in the config
    name             TEXT,                             -- config `name`
    tags             TEXT    NOT NULL DEFAULT '[]',    -- config `tags`, a JSON array
    active           INTEGER NOT NULL DEFAULT 1,       -- 0 once removed from the config
    interval_secs    INTEGER,                          -- config `interval`, NULL = default
    title            TEXT,                             -- the title the feed declares
    site_link        TEXT,                             -- the site link the feed declares
    etag             TEXT,                             -- validators for conditional GET
    last_modified    TEXT,
    body_hash        TEXT,                             -- hash of the last 200 body
    last_fetch_at    TEXT,
    last_success_at  TEXT,
    last_status      INTEGER,                          -- HTTP status of the last fetch
    last_error       TEXT,                             -- NULL after a success
    error_count      INTEGER NOT NULL DEFAULT 0,       -- consecutive failures
    next_poll_at     TEXT,                             -- NULL = due now
    created_at       TEXT    NOT NULL DEFAULT (datetime('now'))
);

-- Every story exactly once per feed: (feed_id, dedup_key) is the identity.
CREATE TABLE entries (
    id              INTEGER PRIMARY KEY,
    feed_id         INTEGER NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
    dedup_key       TEXT    NOT NULL,   -- g:guid, gl:guid+link, l:link or h:hash (see README)
    guid            TEXT,               -- the publisher's guid/id, NULL when it gave none
    link            TEXT,
    canonical_link  TEXT,               -- link without scheme, www., tracking parameters
    title           TEXT,
    author          TEXT,
    published_at    TEXT,
    updated_at      TEXT,
    summary         TEXT,               -- plain text
    content         TEXT,               -- plain text
    content_hash    TEXT    NOT NULL,   -- changes when the publisher edits the entry
    first_seen_at   TEXT    NOT NULL,
    last_seen_at    TEXT    NOT NULL,
    UNIQUE (feed_id, dedup_key)
);
CREATE INDEX entries_by_feed_link ON entries (feed_id, canonical_link);
CREATE INDEX entries_by_published ON entries (published_at);
