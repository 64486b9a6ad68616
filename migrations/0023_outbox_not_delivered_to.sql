-- An email the SMTP server took for some of a target's recipients and refused for others went
-- out, and its alerts count as delivered; which recipients did not get it, and why, is kept
-- here so `feedhound alerts` can say so (it was only in the log, which a cron job's user may
-- never read).
ALTER TABLE outbox ADD COLUMN not_delivered_to TEXT;   -- "address (the server's reply)", comma-separated; NULL: every recipient, or a webhook
