-- A [[notify]] target found down (no answer, or 429/502/503/504) rests before it is tried again,
-- for `retry_delay` doubling with each delivery round in a row that found it down, or as long
-- as its Retry-After asked (up to an hour). The rest was kept in memory, so a restart, a config
-- reload, and every cron `feedhound poll` tried a dead webhook again at once, each paying a
-- timeout and spending an attempt of the alert it sent. The row goes when the target answers.
CREATE TABLE alert_target_rests (
    target      TEXT    PRIMARY KEY,   -- the [[notify]] name
    down_rounds INTEGER NOT NULL,      -- delivery rounds in a row that found it down
    rest_until  TEXT    NOT NULL,      -- no alert is sent to it before this time
    reason      TEXT    NOT NULL       -- what the last round saw, for `feedhound alerts`
) WITHOUT ROWID;
