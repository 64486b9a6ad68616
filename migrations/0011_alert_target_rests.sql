-- A [[notify]] target found down (no answer, or 429/502/503/504) rests before it is tried again:
-- for `retry_delay` doubling with each delivery round in a row that found it down, or as long as
-- a 429's or 503's Retry-After asked (capped at an hour, or at `retry_delay` if that is longer).
-- The rest is kept here, not in a process's memory, so that a restart, a config reload or a
-- `feedhound poll` from cron does not knock on a dead webhook before its time, paying a timeout
-- and spending an attempt of the alert it sends.
-- A rest belongs to the URL found down: a target whose URL is then fixed in the config is tried
-- at once. The row goes when the target answers.
CREATE TABLE alert_target_rests (
    target      TEXT    PRIMARY KEY,   -- the [[notify]] name
    url_key     TEXT    NOT NULL,      -- blake3 of the URL found down (webhook URLs hold secrets)
    down_rounds INTEGER NOT NULL,      -- delivery rounds in a row that found it down
    rest_until  TEXT    NOT NULL,      -- no alert is sent to it before this time
    reason      TEXT    NOT NULL       -- what the last round saw
) WITHOUT ROWID;
