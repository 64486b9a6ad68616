//! The `outbox` table: alerts waiting for delivery, and what happened to each attempt.
//!
//! Rows are queued by `flags` in the transaction that flags a story. Delivery is at least once:
//! a row is marked delivered only after the target answered 2xx, so a crash in between means
//! one more delivery with the same idempotency key, never a lost alert. An alert is withdrawn
//! (by `flags`, not deleted) while its story names no company its target wants, and is not
//! sent until it does again.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::flags::Source;
use super::{Store, sql_time, sql_time_precise};

/// An alert due for delivery, with what the webhook receives.
#[derive(Debug, Clone)]
pub struct PendingAlert {
    pub id: i64,
    pub target: String,
    pub attempts: u32,
    pub payload: AlertPayload,
}

/// The JSON body POSTed to a webhook.
#[derive(Debug, Clone, Serialize)]
pub struct AlertPayload {
    /// The same on every attempt: receivers drop repeats with it.
    pub idempotency_key: String,
    pub story: AlertStory,
    /// Set when the alert is about one company an edit or a later copy named in a story whose
    /// first alert to this target went out already.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newly_named: Option<String>,
    pub companies: Vec<AlertCompany>,
    /// Every entry of the story, in the order they arrived.
    pub sources: Vec<Source>,
    /// Set on the alerts `feedhound alerts --send-test` sends, which are about no story.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertStory {
    pub id: i64,
    pub title: Option<String>,
    pub link: Option<String>,
    pub published_at: Option<String>,
    pub first_seen_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertCompany {
    pub name: String,
    pub ticker: Option<String>,
    /// Text around the first mention in the story.
    pub snippet: String,
}

/// Delivery state of one target, for `feedhound alerts`.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxStatus {
    pub target: String,
    pub delivered: i64,
    pub pending: i64,
    /// Pending alerts that have failed at least once.
    pub retrying: i64,
    /// Undelivered alerts whose story names no company the target wants: not sent until it
    /// does again.
    pub withdrawn: i64,
    pub last_error: Option<String>,
    /// When the target last took an alert (to the millisecond).
    pub last_delivered_at: Option<String>,
    /// The recipients an email server refused when it last took an alert: set while the latest
    /// delivery missed some of them.
    pub not_delivered_to: Option<Vec<RefusedRecipient>>,
    pub next_attempt_at: Option<String>,
    /// Until when the target rests after a round found it down: no alert is sent before.
    pub resting_until: Option<String>,
}

impl OutboxStatus {
    /// When the target's next alert is tried: its own time, or the end of the target's rest if
    /// that is later.
    pub fn next_attempt(&self) -> Option<&str> {
        match (&self.next_attempt_at, &self.resting_until) {
            (Some(next), Some(rest)) => Some(next.max(rest)),
            (next, _) => next.as_deref(),
        }
    }
}

/// A recipient an email server refused while it took the email for others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedRecipient {
    pub address: String,
    /// The server's reply, on one line.
    pub reply: String,
}

/// What `Store::retry_now` did.
#[derive(Debug, PartialEq, Eq)]
pub struct Retried {
    /// The targets' undelivered alerts that are not withdrawn or held: all due now.
    pub due: usize,
    /// Alerts of digest targets that wait for their next digest time.
    pub held_for_digest: usize,
    /// Targets that were resting after being found down, and are not now.
    pub rests_ended: usize,
}

/// Where now falls among a digest target's times (`notify::digest`): alerts queued before
/// `last` are due (as their own retry times allow); those queued since wait for `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestWindow {
    pub last: DateTime<Utc>,
    pub next: DateTime<Utc>,
}

/// A target that delivery rounds found down, resting before it is tried again.
#[derive(Debug)]
pub struct TargetRest {
    /// Which URL was found down (a hash: webhook URLs hold secrets).
    pub url_key: String,
    /// Rounds in a row that found it down; each doubles the next rest.
    pub down_rounds: u32,
    pub until: DateTime<Utc>,
}

/// The company names of a payload, as `outbox.told` holds them.
fn told_json(told: &[AlertCompany]) -> serde_json::Result<String> {
    serde_json::to_string(&told.iter().map(|c| &c.name).collect::<Vec<_>>())
}

impl Store {
    /// The ids of the alerts for `targets` whose next attempt is due, oldest first; with a
    /// `digest` window, only those queued before its last digest time. Alerts of targets no
    /// longer configured wait (`outbox_status` lists them).
    pub fn due_alert_ids(
        &self,
        now: DateTime<Utc>,
        targets: &[String],
        digest: Option<DigestWindow>,
        limit: usize,
    ) -> anyhow::Result<Vec<i64>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id FROM outbox
                 WHERE delivered_at IS NULL AND withdrawn_at IS NULL AND next_attempt_at <= ?1
                   AND target IN (SELECT value FROM json_each(?3))
                   AND (?4 IS NULL OR created_at < ?4)
                 ORDER BY next_attempt_at, id LIMIT ?2",
            )?
            .query_map(
                params![
                    sql_time(now),
                    limit as i64,
                    serde_json::to_string(targets)?,
                    digest.map(|window| sql_time(window.last)),
                ],
                |r| r.get(0),
            )?
            .collect::<Result<_, _>>()?)
    }

    /// Alert `id` as it would be sent now: None once it is delivered or withdrawn. Read just
    /// before each attempt, so that the payload names what the story names then, and an alert
    /// withdrawn while others went out before it is not sent.
    pub fn waiting_alert(&self, id: i64) -> anyhow::Result<Option<PendingAlert>> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT o.target, o.attempts, o.idempotency_key, s.id, s.first_seen_at, c.name
                 FROM outbox o JOIN stories s ON s.id = o.story_id
                 LEFT JOIN companies c ON c.id = o.company_id
                 WHERE o.id = ?1 AND o.delivered_at IS NULL AND o.withdrawn_at IS NULL",
            )?
            .query_row([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .optional()?;
        let Some((target, attempts, key, story_id, first_seen_at, newly_named)) = row else {
            return Ok(None);
        };
        let sources = self.story_sources(story_id)?;
        let first = sources.first();
        Ok(Some(PendingAlert {
            id,
            target,
            attempts,
            payload: AlertPayload {
                idempotency_key: key,
                story: AlertStory {
                    id: story_id,
                    title: first.and_then(|s| s.title.clone()),
                    link: first.and_then(|s| s.link.clone()),
                    published_at: first.and_then(|s| s.published_at.clone()),
                    first_seen_at,
                },
                newly_named,
                companies: self.story_companies(story_id)?,
                sources,
                test: false,
            },
        }))
    }

    fn story_companies(&self, story_id: i64) -> anyhow::Result<Vec<AlertCompany>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.name, c.ticker, m.snippet FROM mentions m
             JOIN entries e ON e.id = m.entry_id
             JOIN companies c ON c.id = m.company_id AND c.active = 1
             WHERE e.story_id = ?1 ORDER BY c.id, e.id",
        )?;
        let mut companies: Vec<AlertCompany> = Vec::new();
        for row in stmt.query_map([story_id], |r| {
            Ok(AlertCompany {
                name: r.get(0)?,
                ticker: r.get(1)?,
                snippet: r.get(2)?,
            })
        })? {
            let company = row?;
            if !companies.iter().any(|c| c.name == company.name) {
                companies.push(company);
            }
        }
        Ok(companies)
    }

    /// Records that the target took `alerts` (one POST's or email's), each naming what its
    /// payload named, in one transaction: a POST is delivered whole or not at all. The target's
    /// latest delivery is this one, with the recipients an email server refused (`refused`)
    /// while it took the email for the others. A company a story names that its alert's first
    /// attempt did not (named while the alert waited for a retry, or was on its way) gets an
    /// alert of its own: a receiver that dropped the repeat by its key has not seen it.
    pub fn alerts_delivered(
        &mut self,
        alerts: &[PendingAlert],
        at: DateTime<Utc>,
        refused: &[RefusedRecipient],
    ) -> anyhow::Result<()> {
        let tx = super::write_transaction(&mut self.conn)?;
        for alert in alerts {
            let (target, story_id): (String, i64) = tx
                .prepare_cached(
                    "UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL,
                         last_failed_at = NULL, told = coalesce(told, ?3), withdrawn_at = NULL
                     WHERE id = ?1 RETURNING target, story_id",
                )?
                .query_row(
                    params![alert.id, sql_time(at), told_json(&alert.payload.companies)?],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
            if let Some(route) = self.flagging.route(&target) {
                super::flags::queue_untold(&tx, route, story_id, None, at)?;
            }
        }
        if let Some(alert) = alerts.first() {
            let refused = (!refused.is_empty())
                .then(|| serde_json::to_string(refused))
                .transpose()?;
            tx.prepare_cached(
                "INSERT INTO alert_target_deliveries (target, delivered_at, not_delivered_to)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (target) DO UPDATE SET
                     delivered_at = excluded.delivered_at, not_delivered_to = excluded.not_delivered_to",
            )?
            .execute(params![alert.target, sql_time_precise(at), refused])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records a failed attempt of `alerts` (one POST's), each naming what its payload named
    /// (the first attempt's list is kept, as a receiver may have stored it before failing to
    /// answer), all to be tried again at `retry_at`, together.
    pub fn alerts_failed(
        &mut self,
        alerts: &[PendingAlert],
        error: &str,
        failed_at: DateTime<Utc>,
        retry_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let tx = super::write_transaction(&mut self.conn)?;
        for alert in alerts {
            tx.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3,
                     told = coalesce(told, ?4), last_failed_at = ?5
                 WHERE id = ?1",
            )?
            .execute(params![
                alert.id,
                error,
                sql_time(retry_at),
                told_json(&alert.payload.companies)?,
                sql_time_precise(failed_at)
            ])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// When the next undelivered alert for `targets` is due, if any; with a `digest` window,
    /// one queued since its last digest time is not due before the next.
    pub fn next_alert_time(
        &self,
        targets: &[String],
        digest: Option<DigestWindow>,
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        let (last, next) = digest
            .map(|window| (sql_time(window.last), sql_time(window.next)))
            .unzip();
        let next: Option<String> = self.conn.query_row(
            "SELECT min(CASE WHEN ?2 IS NULL OR created_at < ?2 THEN next_attempt_at
                             ELSE max(next_attempt_at, ?3) END)
             FROM outbox
             WHERE delivered_at IS NULL AND withdrawn_at IS NULL
               AND target IN (SELECT value FROM json_each(?1))",
            params![serde_json::to_string(targets)?, last, next],
            |r| r.get(0),
        )?;
        Ok(next.as_deref().and_then(super::parse_sql_time))
    }

    /// `target`'s rest as last recorded, also when it is over (the count of rounds that found
    /// it down goes on until it answers).
    pub fn target_rest(&self, target: &str) -> anyhow::Result<Option<TargetRest>> {
        read_target_rest(&self.conn, target)
    }

    /// Records that a round found `target` (at the URL `url_key` names) down once more, in one
    /// transaction with reading how many rounds before it did: `until` gets that count and says
    /// when the rest ends.
    pub fn rest_target(
        &mut self,
        target: &str,
        url_key: &str,
        reason: &str,
        until: impl FnOnce(u32) -> DateTime<Utc>,
    ) -> anyhow::Result<TargetRest> {
        let tx = super::write_transaction(&mut self.conn)?;
        let rounds_before = read_target_rest(&tx, target)?
            .filter(|rest| rest.url_key == url_key)
            .map_or(0, |rest| rest.down_rounds);
        let down_rounds = rounds_before.saturating_add(1);
        let rest = TargetRest {
            url_key: url_key.to_owned(),
            down_rounds,
            until: until(down_rounds),
        };
        tx.prepare_cached(
            "INSERT INTO alert_target_rests (target, url_key, down_rounds, rest_until, reason)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (target) DO UPDATE SET url_key = excluded.url_key,
                 down_rounds = excluded.down_rounds, rest_until = excluded.rest_until,
                 reason = excluded.reason",
        )?
        .execute(params![
            target,
            url_key,
            down_rounds,
            sql_time_precise(rest.until),
            reason
        ])?;
        tx.commit()?;
        Ok(rest)
    }

    /// `target` answered at the URL `url_key` names: it is up. A rest still running for that URL
    /// was written by someone else after this round began (a round never starts while one
    /// runs), and stays.
    pub fn target_answered(
        &self,
        target: &str,
        url_key: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.conn
            .prepare_cached(
                "DELETE FROM alert_target_rests
                 WHERE target = ?1 AND (url_key <> ?2 OR rest_until <= ?3)",
            )?
            .execute(params![target, url_key, sql_time_precise(now)])?;
        Ok(())
    }

    /// Forgets the rests of targets no longer configured, or configured with another URL than
    /// the one found down (`url_keys`: target name → key of its configured URL), so that the
    /// table holds exactly the configured targets that were down on their last try.
    pub fn forget_rests_except(&self, url_keys: &HashMap<String, String>) -> anyhow::Result<()> {
        self.conn.execute(
            "DELETE FROM alert_target_rests
             WHERE url_key IS NOT (SELECT value FROM json_each(?1) WHERE key = target)",
            [serde_json::to_string(url_keys)?],
        )?;
        Ok(())
    }

    /// Makes the waiting alerts of `targets` due at `now` and ends the targets' rests, for a
    /// user who knows a target is back (`feedhound alerts --retry-now`). A rest's count of
    /// rounds found down starts over, so a target found down again, by this retry or by an
    /// attempt already under way, rests `retry_delay` and not an hour. Each alert keeps its
    /// attempts, which its own retries double from. A withdrawn alert goes as soon as it is put
    /// back.
    ///
    /// `url_keys` names the targets (target name → key of its configured URL): a rest counts as
    /// ended only if it was for that URL, as no other holds the target back.
    ///
    /// A digest target's alerts queued since its last digest time (`digests`) still wait for
    /// the next: they are counted apart.
    pub fn retry_now(
        &mut self,
        url_keys: &HashMap<String, String>,
        digests: &HashMap<String, DigestWindow>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Retried> {
        let targets = serde_json::to_string(&url_keys.keys().collect::<Vec<_>>())?;
        let tx = super::write_transaction(&mut self.conn)?;
        tx.execute(
            "UPDATE outbox SET next_attempt_at = ?1
             WHERE delivered_at IS NULL AND next_attempt_at > ?1
               AND target IN (SELECT value FROM json_each(?2))",
            params![sql_time(now), targets],
        )?;
        let due: i64 = tx.query_row(
            "SELECT count(*) FROM outbox
             WHERE delivered_at IS NULL AND withdrawn_at IS NULL
               AND target IN (SELECT value FROM json_each(?1))",
            [&targets],
            |r| r.get(0),
        )?;
        let mut held: i64 = 0;
        for (target, window) in digests.iter().filter(|(t, _)| url_keys.contains_key(*t)) {
            held += tx.query_row(
                "SELECT count(*) FROM outbox
                 WHERE delivered_at IS NULL AND withdrawn_at IS NULL
                   AND target = ?1 AND created_at >= ?2",
                params![target, sql_time(window.last)],
                |r| r.get::<_, i64>(0),
            )?;
        }
        // A rest that is over still holds the count its next one doubles from: it goes too.
        let ended: Vec<bool> = tx
            .prepare(
                "DELETE FROM alert_target_rests WHERE target IN (SELECT value FROM json_each(?2))
                 RETURNING rest_until > ?1
                     AND url_key IS (SELECT value FROM json_each(?3) WHERE key = target)",
            )?
            .query_map(
                params![
                    sql_time_precise(now),
                    targets,
                    serde_json::to_string(url_keys)?
                ],
                |r| r.get(0),
            )?
            .collect::<Result<_, _>>()?;
        tx.commit()?;
        Ok(Retried {
            due: usize::try_from(due - held)?,
            held_for_digest: usize::try_from(held)?,
            rests_ended: ended.into_iter().filter(|running| *running).count(),
        })
    }

    /// Delivery state per target: each configured one (the keys of `url_keys`, target name →
    /// key of its configured URL), even before its first alert, and each that has alerts in the
    /// outbox. A target's rest shows only if `url_keys` says it is for the URL configured now.
    pub fn outbox_status(
        &self,
        url_keys: &HashMap<String, String>,
        digests: &HashMap<String, DigestWindow>,
    ) -> anyhow::Result<Vec<OutboxStatus>> {
        let mut stmt = self.conn.prepare(
            "WITH counts AS (
                 SELECT target,
                        sum(delivered_at IS NOT NULL) AS delivered,
                        sum(delivered_at IS NULL AND withdrawn_at IS NULL) AS pending,
                        sum(delivered_at IS NULL AND withdrawn_at IS NULL AND attempts > 0)
                            AS retrying,
                        sum(withdrawn_at IS NOT NULL) AS withdrawn,
                        min(CASE WHEN delivered_at IS NULL AND withdrawn_at IS NULL
                            THEN next_attempt_at END) AS next_attempt_at
                 FROM outbox GROUP BY target),
             targets AS (SELECT target FROM counts UNION SELECT key FROM json_each(?2))
             SELECT t.target,
                    coalesce(c.delivered, 0), coalesce(c.pending, 0),
                    coalesce(c.retrying, 0), coalesce(c.withdrawn, 0),
                    (SELECT last_error FROM outbox o WHERE o.target = t.target
                        AND o.delivered_at IS NULL AND o.withdrawn_at IS NULL
                        AND o.last_error IS NOT NULL
                        ORDER BY o.last_failed_at DESC, o.id DESC LIMIT 1),
                    (SELECT delivered_at FROM alert_target_deliveries d WHERE d.target = t.target),
                    (SELECT not_delivered_to FROM alert_target_deliveries d WHERE d.target = t.target),
                    c.next_attempt_at,
                    (SELECT rest_until FROM alert_target_rests r
                        WHERE r.target = t.target AND r.rest_until > ?1
                          AND r.url_key = (SELECT value FROM json_each(?2) WHERE key = t.target))
             FROM targets t LEFT JOIN counts c USING (target) ORDER BY t.target",
        )?;
        let rows = stmt.query_map(
            params![
                sql_time_precise(Utc::now()),
                serde_json::to_string(url_keys)?
            ],
            |r| {
                Ok(OutboxStatus {
                    target: r.get(0)?,
                    delivered: r.get(1)?,
                    pending: r.get(2)?,
                    retrying: r.get(3)?,
                    withdrawn: r.get(4)?,
                    last_error: r.get(5)?,
                    last_delivered_at: r.get(6)?,
                    // A hand edit that is not such a list is no refusal to report.
                    not_delivered_to: r
                        .get::<_, Option<String>>(7)?
                        .and_then(|json| serde_json::from_str(&json).ok()),
                    next_attempt_at: r.get(8)?,
                    resting_until: r.get(9)?,
                })
            },
        )?;
        let mut status: Vec<OutboxStatus> = rows.collect::<Result<_, _>>()?;
        for target in &mut status {
            if let Some(&window) = digests.get(&target.target) {
                target.next_attempt_at = self
                    .next_alert_time(std::slice::from_ref(&target.target), Some(window))?
                    .map(sql_time);
            }
        }
        Ok(status)
    }
}

fn read_target_rest(
    conn: &rusqlite::Connection,
    target: &str,
) -> anyhow::Result<Option<TargetRest>> {
    use rusqlite::types::Value;
    let row = conn
        .prepare_cached(
            "SELECT url_key, down_rounds, rest_until FROM alert_target_rests WHERE target = ?1",
        )?
        .query_row([target], |r| {
            Ok((
                r.get::<_, Value>(0)?,
                r.get::<_, Value>(1)?,
                r.get::<_, Value>(2)?,
            ))
        })
        .optional()?;
    // Values this code did not write (a hand edit) are no reason to hold alerts back, nor to
    // fail every round: such a row is no rest, and the next one found down replaces it.
    Ok(match row {
        Some((Value::Text(url_key), Value::Integer(down_rounds), Value::Text(until))) => {
            super::parse_sql_time(&until).map(|until| TargetRest {
                url_key,
                down_rounds: u32::try_from(down_rounds).unwrap_or(0),
                until,
            })
        }
        _ => None,
    })
}

#[cfg(test)]
impl Store {
    /// The alerts for `targets` due at `now`, as each would be sent.
    pub(crate) fn due_alerts(
        &self,
        now: DateTime<Utc>,
        targets: &[String],
        limit: usize,
    ) -> anyhow::Result<Vec<PendingAlert>> {
        let mut due = Vec::new();
        for id in self.due_alert_ids(now, targets, None, limit)? {
            due.extend(self.waiting_alert(id)?);
        }
        Ok(due)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::store::testing::store_with_one_feed;

    #[test]
    fn the_edit_alerts_migration_keeps_queued_and_delivered_alerts_and_one_first_alert_per_story() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feedhound.db");
        let old = crate::store::testing::database_before(&path, "0015_edit_alerts");
        old.execute_batch(
            "INSERT INTO feeds (id, url) VALUES (1, 'http://127.0.0.1/a.xml');
             INSERT INTO stories (id, first_seen_at) VALUES (7, '2026-11-20T10:00:00Z');
             INSERT INTO entries (id, feed_id, dedup_key, story_id, content_hash, first_seen_at, last_seen_at)
                 VALUES (1, 1, 'a', 7, 'h', '2026-11-20T10:00:00Z', '2026-11-20T10:00:00Z');
             INSERT INTO companies (id, name, active) VALUES (1, 'Acme', 1), (2, 'Globex', 0);
             INSERT INTO mentions (entry_id, company_id, fields, count, snippet)
                 VALUES (1, 1, 'title', 1, 'Acme'), (1, 2, 'title', 1, 'Globex');
             INSERT INTO outbox (id, target, story_id, idempotency_key, created_at, attempts,
                                 next_attempt_at, delivered_at, last_error)
                 VALUES (3, 'desk', 7, 'k-desk', '2026-11-20T10:00:00Z', 2,
                         '2026-11-20T10:05:00Z', NULL, 'HTTP 500'),
                        (4, 'log', 7, 'k-log', '2026-11-20T10:00:00Z', 1,
                         '2026-11-20T10:00:00Z', '2026-11-20T10:00:01Z', NULL);",
        )
        .unwrap();
        drop(old);
        let store = Store::open(&path).unwrap();
        let due = store
            .due_alerts(Utc::now(), &["desk".into(), "log".into()], 10)
            .unwrap();
        assert_eq!(due.len(), 1, "the delivered alert stays delivered");
        assert_eq!((due[0].id, due[0].attempts), (3, 2));
        assert_eq!(due[0].payload.idempotency_key, "k-desk");
        assert_eq!(due[0].payload.newly_named, None);
        let second_first_alert = store.conn.execute(
            "INSERT INTO outbox (target, story_id, idempotency_key, created_at, next_attempt_at)
             VALUES ('desk', 7, 'k2', '2026-11-21T10:00:00Z', '2026-11-21T10:00:00Z')",
            [],
        );
        assert!(
            second_first_alert.is_err(),
            "one first alert per target and story"
        );
        let told: Vec<(i64, Option<String>)> = store
            .conn
            .prepare("SELECT id, told FROM outbox ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            told,
            [(3, None), (4, Some(r#"["Acme"]"#.to_string()))],
            "a delivered alert is taken to have named the tracked companies its story names"
        );
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn an_answer_clears_a_rest_for_another_url_or_one_that_is_over_but_not_one_still_running() {
        let (_dir, mut store, _) = store_with_one_feed();
        let now = Utc::now();
        let rest_for = |store: &mut Store, url_key: &str, ends: DateTime<Utc>| {
            store
                .rest_target("desk", url_key, "HTTP 503", |_| ends)
                .unwrap();
        };
        let resting = |store: &Store| store.target_rest("desk").unwrap().is_some();

        // Written by another process after this round began, for the URL that answered.
        rest_for(&mut store, "k1", now + Duration::minutes(5));
        store.target_answered("desk", "k1", now).unwrap();
        assert!(resting(&store), "a rest still running stays");

        store.target_answered("desk", "k2", now).unwrap();
        assert!(!resting(&store), "a rest for another URL goes");

        rest_for(&mut store, "k1", now - Duration::seconds(1));
        store.target_answered("desk", "k1", now).unwrap();
        assert!(!resting(&store), "a rest that is over goes");
    }

    #[test]
    fn retrying_now_makes_the_waiting_alerts_of_the_targets_named_due_and_starts_their_rests_over()
    {
        let (_dir, mut store, _) = store_with_one_feed();
        let now = Utc::now();
        let (earlier, later) = (
            sql_time(now - Duration::minutes(1)),
            sql_time(now + Duration::hours(1)),
        );
        store
            .conn
            .execute_batch(&format!(
                "INSERT INTO stories (id, first_seen_at)
                     VALUES (7, '{earlier}'), (8, '{earlier}'), (9, '{earlier}'), (10, '{earlier}');
                 INSERT INTO outbox (id, target, story_id, idempotency_key, created_at, attempts,
                                     next_attempt_at, delivered_at, withdrawn_at)
                     VALUES (1, 'desk', 7, 'k1', '{earlier}', 3, '{later}', NULL, NULL),
                            (2, 'desk', 8, 'k2', '{earlier}', 0, '{earlier}', NULL, NULL),
                            (3, 'log', 7, 'k3', '{earlier}', 1, '{later}', NULL, NULL),
                            (4, 'desk', 9, 'k4', '{earlier}', 1, '{later}', '{earlier}', NULL),
                            (5, 'desk', 10, 'k5', '{earlier}', 1, '{later}', NULL, '{earlier}');"
            ))
            .unwrap();
        for target in ["desk", "desk", "log"] {
            store
                .rest_target(target, "k", "HTTP 503", |_| now + Duration::hours(1))
                .unwrap();
        }
        // Its rest is over, but the next would double from it.
        store
            .rest_target("wire", "k", "timeout", |_| now - Duration::seconds(1))
            .unwrap();
        // Found down at a URL the config has since replaced: no rest of the target's now.
        store
            .rest_target("moved", "k-old", "timeout", |_| now + Duration::hours(1))
            .unwrap();
        let retry: HashMap<String, String> = ["desk", "wire", "moved"]
            .map(|target| (target.to_string(), "k".to_string()))
            .into();
        let all = ["desk", "log", "wire", "moved"].map(String::from);
        assert_eq!(store.due_alert_ids(now, &all, None, 10).unwrap(), [2]);

        let retried = store.retry_now(&retry, &HashMap::new(), now).unwrap();
        assert_eq!(
            retried,
            Retried {
                due: 2,
                held_for_digest: 0,
                rests_ended: 1
            }
        );
        assert_eq!(
            store.due_alert_ids(now, &all, None, 10).unwrap(),
            [2, 1],
            "the alert that was due keeps its earlier time; neither the delivered, the \
             withdrawn nor another target's alert is made due"
        );
        assert!(store.target_rest("desk").unwrap().is_none());
        assert!(store.target_rest("wire").unwrap().is_none());
        assert!(store.target_rest("moved").unwrap().is_none());
        let rounds = |store: &mut Store| {
            store
                .rest_target("desk", "k", "timeout", |_| now)
                .unwrap()
                .down_rounds
        };
        assert_eq!(
            rounds(&mut store),
            1,
            "found down again: the rests start over"
        );
        let log_rest = store.target_rest("log").unwrap().unwrap();
        assert!(log_rest.until > now, "another target's rest runs on");
        let row = |id: i64| -> (i64, String) {
            store
                .conn
                .query_row(
                    "SELECT attempts, next_attempt_at FROM outbox WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap()
        };
        assert_eq!(row(1), (3, sql_time(now)), "attempts are kept");
        assert_eq!(
            row(4).1,
            later,
            "a delivered alert's record stays as it was"
        );
        assert_eq!(
            row(5).1,
            sql_time(now),
            "a withdrawn alert goes once put back"
        );
    }

    #[test]
    fn a_digest_targets_alerts_wait_for_the_first_digest_time_after_they_were_queued() {
        let (_dir, mut store, _) = store_with_one_feed();
        let now = Utc::now();
        let at = |minutes: i64| sql_time(now + Duration::minutes(minutes));
        let window = DigestWindow {
            last: now - Duration::minutes(10),
            next: now + Duration::minutes(50),
        };
        store
            .conn
            .execute_batch(&format!(
                "INSERT INTO stories (id, first_seen_at) VALUES (7, '{a}'), (8, '{a}'), (9, '{a}');
                 INSERT INTO outbox (id, target, story_id, idempotency_key, created_at, attempts,
                                     next_attempt_at)
                     VALUES (1, 'desk', 7, 'k1', '{before}', 0, '{before}'),
                            (2, 'desk', 8, 'k2', '{since}', 0, '{since}'),
                            (3, 'desk', 9, 'k3', '{before}', 2, '{retry}');",
                a = at(-30),
                before = at(-11),
                since = at(-10),
                retry = at(5),
            ))
            .unwrap();
        let desk = ["desk".to_string()];
        assert_eq!(
            store.due_alert_ids(now, &desk, Some(window), 10).unwrap(),
            [1],
            "queued at the last digest time or since: the next digest's"
        );
        assert_eq!(store.due_alert_ids(now, &desk, None, 10).unwrap(), [1, 2]);
        let next =
            |store: &Store, window| store.next_alert_time(&desk, window).unwrap().map(sql_time);
        assert_eq!(next(&store, Some(window)), Some(at(-11)));
        store
            .conn
            .execute("DELETE FROM outbox WHERE id = 1", [])
            .unwrap();
        assert_eq!(
            next(&store, Some(window)),
            Some(at(5)),
            "a failed digest is retried on its own schedule"
        );
        store
            .conn
            .execute("DELETE FROM outbox WHERE id = 3", [])
            .unwrap();
        assert_eq!(next(&store, Some(window)), Some(sql_time(window.next)));
        assert_eq!(next(&store, None), Some(at(-10)));

        let keys: HashMap<String, String> = [("desk".to_string(), "k".to_string())].into();
        let digests: HashMap<String, DigestWindow> = [("desk".to_string(), window)].into();
        let retried = store.retry_now(&keys, &digests, now).unwrap();
        assert_eq!((retried.due, retried.held_for_digest), (0, 1));
        let status = store.outbox_status(&keys, &digests).unwrap();
        assert_eq!(
            status[0].next_attempt(),
            Some(sql_time(window.next).as_str()),
            "`feedhound alerts` shows when the digest goes"
        );
    }

    /// A target just configured is listed before its first alert (so `feedhound alerts` shows
    /// the config was read), and one taken out of the config keeps its history.
    #[test]
    fn every_configured_target_is_listed_beside_those_with_alerts() {
        let (_dir, store, _) = store_with_one_feed();
        let at = sql_time(Utc::now() - Duration::minutes(5));
        store
            .conn
            .execute_batch(&format!(
                "INSERT INTO stories (id, first_seen_at) VALUES (7, '{at}');
                 INSERT INTO outbox (id, target, story_id, idempotency_key, created_at,
                                     next_attempt_at, delivered_at)
                     VALUES (1, 'old desk', 7, 'k1', '{at}', '{at}', '{at}'),
                            (2, 'desk', 7, 'k2', '{at}', '{at}', NULL);
                 INSERT INTO alert_target_rests (target, url_key, down_rounds, rest_until, reason)
                     VALUES ('resting desk', 'r', 1, '{rest}', 'HTTP 503');",
                rest = sql_time(Utc::now() + Duration::minutes(5)),
            ))
            .unwrap();
        let keys: HashMap<String, String> =
            [("desk", "k"), ("new desk", "n"), ("resting desk", "r")]
                .map(|(name, key)| (name.to_string(), key.to_string()))
                .into();
        // A digest target with nothing queued has no next digest to show.
        let window = DigestWindow {
            last: Utc::now() - Duration::hours(1),
            next: Utc::now() + Duration::hours(23),
        };
        let digests: HashMap<String, DigestWindow> = [("new desk".to_string(), window)].into();
        let status = store.outbox_status(&keys, &digests).unwrap();
        let listed: Vec<(&str, i64, i64, Option<&str>)> = status
            .iter()
            .map(|t| {
                let next = t.next_attempt();
                (t.target.as_str(), t.delivered, t.pending, next)
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("desk", 0, 1, Some(at.as_str())),
                ("new desk", 0, 0, None),
                ("old desk", 1, 0, None),
                ("resting desk", 0, 0, None),
            ]
        );
        assert!(status[3].resting_until.is_some(), "{status:?}");
    }

    #[test]
    fn a_targets_last_error_is_the_latest_failure_not_its_newest_alerts() {
        let (_dir, mut store, _) = store_with_one_feed();
        let now = Utc::now();
        let at = sql_time(now - Duration::minutes(5));
        store
            .conn
            .execute_batch(&format!(
                "INSERT INTO stories (id, first_seen_at) VALUES (7, '{at}'), (8, '{at}'), (9, '{at}');
                 INSERT INTO outbox (id, target, story_id, idempotency_key, created_at,
                                     next_attempt_at, last_error)
                     VALUES (1, 'desk', 7, 'k1', '{at}', '{at}', NULL),
                            (2, 'desk', 8, 'k2', '{at}', '{at}', NULL),
                            (3, 'desk', 9, 'k3', '{at}', '{at}', 'failed before migration 0021');"
            ))
            .unwrap();
        let due = store.due_alerts(now, &["desk".into()], 10).unwrap();
        let alert = |id: i64| std::slice::from_ref(due.iter().find(|a| a.id == id).unwrap());
        let retry_at = now + Duration::minutes(1);
        // The newer alert failed first (a round before the target's password changed, say).
        store
            .alerts_failed(alert(2), "HTTP 503", now - Duration::seconds(30), retry_at)
            .unwrap();
        store
            .alerts_failed(alert(1), "HTTP 401", now, retry_at)
            .unwrap();
        let status = store
            .outbox_status(&HashMap::new(), &HashMap::new())
            .unwrap();
        assert_eq!(status[0].last_error.as_deref(), Some("HTTP 401"));

        store.alerts_delivered(alert(1), now, &[]).unwrap();
        let status = store
            .outbox_status(&HashMap::new(), &HashMap::new())
            .unwrap();
        assert_eq!(
            status[0].last_error.as_deref(),
            Some("HTTP 503"),
            "a delivered alert's error is over, and one of unknown time comes last"
        );
    }

    /// The refusals `alerts` shows are the target's latest delivery's: a digest's alerts share
    /// one, a later email in the same second replaces it whatever the alerts' ids, and deleting
    /// the alerts (their stories pruned) brings no older one back.
    #[test]
    fn a_targets_refused_recipients_are_those_of_its_latest_delivery() {
        let (_dir, mut store, _) = store_with_one_feed();
        let now = Utc::now();
        let at = sql_time(now - Duration::minutes(5));
        store
            .conn
            .execute_batch(&format!(
                "INSERT INTO stories (id, first_seen_at) VALUES (7, '{at}'), (8, '{at}'), (9, '{at}');
                 INSERT INTO outbox (id, target, story_id, idempotency_key, created_at, next_attempt_at)
                     VALUES (1, 'desk', 7, 'k1', '{at}', '{at}'), (2, 'desk', 8, 'k2', '{at}', '{at}'),
                            (3, 'desk', 9, 'k3', '{at}', '{at}');"
            ))
            .unwrap();
        let due = store.due_alerts(now, &["desk".into()], 10).unwrap();
        let refused = |address: &str| RefusedRecipient {
            address: address.to_owned(),
            reply: "550 no such user".to_owned(),
        };
        let latest = |store: &Store| {
            let status = store
                .outbox_status(&HashMap::new(), &HashMap::new())
                .unwrap();
            let refused = status[0].not_delivered_to.clone().unwrap_or_default();
            refused.into_iter().map(|r| r.address).collect::<Vec<_>>()
        };
        // A digest of the two newer alerts, with a refusal; then the oldest alone, in the same
        // second, taken by every recipient.
        let digest: Vec<PendingAlert> = due.iter().filter(|a| a.id > 1).cloned().collect();
        store
            .alerts_delivered(&digest, now, &[refused("bo@example.com")])
            .unwrap();
        assert_eq!(latest(&store), ["bo@example.com"]);
        let oldest: Vec<PendingAlert> = due.iter().filter(|a| a.id == 1).cloned().collect();
        store.alerts_delivered(&oldest, now, &[]).unwrap();
        assert!(latest(&store).is_empty());

        store
            .alerts_delivered(&oldest, now, &[refused("cy@example.com")])
            .unwrap();
        store
            .conn
            .execute("DELETE FROM outbox WHERE id = 1", [])
            .unwrap();
        assert_eq!(latest(&store), ["cy@example.com"]);
    }

    /// A database migration 0023 left (refusals in an outbox column) upgrades: each target's
    /// latest delivery time carries over, and the next delivery is recorded.
    #[test]
    fn a_database_with_refusals_kept_per_alert_upgrades_to_a_row_per_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let at = "2026-11-20 08:00:00";
        crate::store::testing::database_before(&path, "0024_alert_target_deliveries")
            .execute_batch(&format!(
                "INSERT INTO stories (id, first_seen_at) VALUES (7, '{at}'), (8, '{at}');
                 INSERT INTO outbox (id, target, story_id, idempotency_key, created_at,
                                     next_attempt_at, delivered_at, not_delivered_to)
                     VALUES (1, 'desk', 7, 'k1', '{at}', '{at}', '{at}', 'bo@example.com (550)'),
                            (2, 'desk', 8, 'k2', '{at}', '{at}', NULL, NULL);"
            ))
            .unwrap();
        let mut store = Store::open(&path).unwrap();
        let status = |store: &Store| {
            store
                .outbox_status(&HashMap::new(), &HashMap::new())
                .unwrap()
                .remove(0)
        };
        let upgraded = status(&store);
        assert_eq!(upgraded.last_delivered_at.as_deref(), Some(at));
        assert_eq!(upgraded.not_delivered_to, None);

        let now = Utc::now();
        let due = store.due_alerts(now, &["desk".into()], 10).unwrap();
        assert_eq!(due.len(), 1);
        store.alerts_delivered(&due, now, &[]).unwrap();
        assert_eq!(
            status(&store).last_delivered_at,
            Some(sql_time_precise(now))
        );
    }

    #[test]
    fn rounds_found_down_are_counted_per_url() {
        let (_dir, mut store, _) = store_with_one_feed();
        let ends = Utc::now();
        let mut rest = |url_key: &str| {
            store
                .rest_target("desk", url_key, "timeout", |_| ends)
                .unwrap()
                .down_rounds
        };
        assert_eq!([rest("k1"), rest("k1"), rest("k2")], [1, 2, 1]);
    }
}
