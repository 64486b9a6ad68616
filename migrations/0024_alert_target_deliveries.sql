-- Each [[notify]] target's latest delivery: when it last took an alert and, for an email, the
-- recipients its server refused while it took the email for the others (an address that no
-- longer exists), so that `feedhound alerts` says so until an email reaches every recipient
-- again. One row per target rather than 0023's column per alert: the latest delivery is the
-- target's, to the millisecond, where alerts delivered in the same second were told apart by
-- their ids, not by the order they went out in, and deleting old alerts (their stories pruned)
-- brought an older refusal back.
CREATE TABLE alert_target_deliveries (
    target           TEXT PRIMARY KEY,   -- the [[notify]] name
    delivered_at     TEXT NOT NULL,      -- when it last took an alert
    not_delivered_to TEXT                -- then: JSON array of {"address", "reply"} the server refused; NULL: none
) WITHOUT ROWID;
-- Targets that took alerts before: when, as far as the outbox knows (to the second); the
-- refusals 0023 kept had no stable form, and the next email records its own.
INSERT INTO alert_target_deliveries (target, delivered_at)
SELECT target, max(delivered_at) FROM outbox WHERE delivered_at IS NOT NULL GROUP BY target;
ALTER TABLE outbox DROP COLUMN not_delivered_to;
