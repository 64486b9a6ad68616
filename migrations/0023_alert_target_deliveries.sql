-- Each [[notify]] target's latest delivery: when it last took an alert and, for an email, the
-- recipients its server refused while it took the email for the others (an address that no
-- longer exists). That refusal was only in the log, which a cron job's user may never read;
-- `feedhound alerts` now says it until an email reaches every recipient again. One row per
-- target, not a column per alert: the latest delivery is the target's, to the millisecond,
-- and deleting old alerts (their stories pruned) must not bring back an older refusal.
CREATE TABLE alert_target_deliveries (
    target           TEXT PRIMARY KEY,   -- the [[notify]] name
    delivered_at     TEXT NOT NULL,      -- when it last took an alert
    not_delivered_to TEXT                -- then: JSON array of {"address", "reply"} the server refused; NULL: none
) WITHOUT ROWID;
