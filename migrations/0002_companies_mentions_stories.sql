-- Tracked companies, synced from the config's [[company]] tables.
CREATE TABLE companies (
    id       INTEGER PRIMARY KEY,
    name     TEXT    NOT NULL UNIQUE,
    aliases  TEXT    NOT NULL DEFAULT '[]',   -- JSON array
    ticker   TEXT,
    tags     TEXT    NOT NULL DEFAULT '[]',   -- JSON array
    active   INTEGER NOT NULL DEFAULT 1       -- 0 once removed from the config
);

-- One story however many feeds carry it: entries with the same canonical link, or the same
-- normalised title seen within two days, belong to one story.
CREATE TABLE stories (
    id             INTEGER PRIMARY KEY,
    canonical_link TEXT,
    title_key      TEXT,
    first_seen_at  TEXT NOT NULL
);
CREATE INDEX stories_by_link ON stories (canonical_link) WHERE canonical_link IS NOT NULL;
CREATE INDEX stories_by_title ON stories (title_key, first_seen_at) WHERE title_key IS NOT NULL;

ALTER TABLE entries ADD COLUMN story_id INTEGER REFERENCES stories(id);
-- Entries stored before stories existed become a story each.
INSERT INTO stories (id, canonical_link, first_seen_at)
    SELECT id, canonical_link, first_seen_at FROM entries;
UPDATE entries SET story_id = id;
CREATE INDEX entries_by_story ON entries (story_id);

-- A company mentioned by an entry: one row per (entry, company).
CREATE TABLE mentions (
    entry_id   INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    company_id INTEGER NOT NULL REFERENCES companies(id) ON DELETE CASCADE,
    fields     TEXT    NOT NULL,   -- comma-separated: title,summary,content
    count      INTEGER NOT NULL,   -- counted hits over those fields
    snippet    TEXT    NOT NULL,   -- text around the first hit
    PRIMARY KEY (entry_id, company_id)
) WITHOUT ROWID;
CREATE INDEX mentions_by_company ON mentions (company_id, entry_id);

-- Alerts to deliver, written in the same transaction as the mention that causes them, so none
-- is lost to a crash; one per (notify target, story).
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    target           TEXT    NOT NULL,          -- the [[notify]] name
    story_id         INTEGER NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
    idempotency_key  TEXT    NOT NULL UNIQUE,   -- the same on every attempt
    created_at       TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT    NOT NULL,
    delivered_at     TEXT,
    last_error       TEXT,
    UNIQUE (target, story_id)
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL;

-- Small key/value facts about the database itself (e.g. which company rules it was matched with).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per story that mentions an active tracked company: its first entry's title, link,
-- feed and publication time, the companies (comma-separated) and how many feeds carried it.
CREATE VIEW flagged_stories AS
SELECT s.id                                   AS story_id,
       first.title                            AS title,
       first.link                             AS link,
       coalesce(f.name, f.title, f.url)       AS feed,
       first.published_at                     AS published_at,
       s.first_seen_at                        AS first_seen_at,
       (SELECT group_concat(name, ', ') FROM (
            SELECT DISTINCT c.name FROM entries e2
            JOIN mentions m ON m.entry_id = e2.id
            JOIN companies c ON c.id = m.company_id AND c.active = 1
            WHERE e2.story_id = s.id ORDER BY c.name))  AS companies,
       (SELECT count(*) FROM entries e3 WHERE e3.story_id = s.id) AS sources
FROM stories s
JOIN entries first ON first.id = (SELECT min(e.id) FROM entries e WHERE e.story_id = s.id)
JOIN feeds f ON f.id = first.feed_id
WHERE EXISTS (SELECT 1 FROM entries e4
              JOIN mentions m ON m.entry_id = e4.id
              JOIN companies c ON c.id = m.company_id AND c.active = 1
              WHERE e4.story_id = s.id);
