-- An edit that names a company the story did not name alerts the targets that want that company,
-- also those that already had an alert for the story. `outbox` held one alert per (target,
-- story); it now holds the story's first alert to a target (`company_id` NULL) and at most one
-- alert per company an edit named later (`company_id` that company), and records which
-- companies each alert's first attempt named (`told`), so a target hears of each company once. SQLite
-- cannot drop a table constraint, so the table is rebuilt; ids, keys and delivery state are
-- kept, and delivered alerts are taken to have named what their stories name now.
CREATE TABLE outbox_edit_alerts (
    id               INTEGER PRIMARY KEY,
    target           TEXT    NOT NULL,          -- the [[notify]] name
    story_id         INTEGER NOT NULL REFERENCES stories(id) ON DELETE CASCADE,
    idempotency_key  TEXT    NOT NULL UNIQUE,   -- the same on every attempt
    created_at       TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT    NOT NULL,
    delivered_at     TEXT,
    last_error       TEXT,
    company_id       INTEGER REFERENCES companies(id),  -- NULL: the story's first alert
    told             TEXT     -- once tried: JSON array of the companies its first attempt named
);
INSERT INTO outbox_edit_alerts (id, target, story_id, idempotency_key, created_at, attempts,
                                next_attempt_at, delivered_at, last_error, told)
SELECT o.id, o.target, o.story_id, o.idempotency_key, o.created_at, o.attempts,
       o.next_attempt_at, o.delivered_at, o.last_error,
       CASE WHEN o.delivered_at IS NOT NULL THEN
           (SELECT json_group_array(DISTINCT c.name)
            FROM entries e JOIN mentions m ON m.entry_id = e.id
            JOIN companies c ON c.id = m.company_id AND c.active = 1
            WHERE e.story_id = o.story_id)
       END
FROM outbox o;
DROP TABLE outbox;
ALTER TABLE outbox_edit_alerts RENAME TO outbox;
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
CREATE UNIQUE INDEX outbox_first_alert ON outbox (target, story_id) WHERE company_id IS NULL;
CREATE UNIQUE INDEX outbox_edit_alert ON outbox (target, story_id, company_id)
    WHERE company_id IS NOT NULL;
