//! What the metrics and health endpoints read from the database: gauges computed at scrape
//! time, and a write probe.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Store, parse_sql_time, sql_time};

/// Database-derived gauges for `/metrics`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceGauges {
    /// Active feeds per state name (only states that have feeds are listed).
    pub feeds_by_state: Vec<(String, i64)>,
    /// Alerts waiting for delivery (not withdrawn).
    pub outbox_pending: i64,
    /// Notify targets that were down on their last try (no answer, or 429/502/503/504): the
    /// count stays up through their rests until they answer.
    pub alert_targets_down: i64,
    /// New and edited entries (and those whose article page was read) not indexed yet: the
    /// daemon's writer brings it to zero whenever it is idle, while the search index is in use.
    pub search_backlog: i64,
    /// The search index was found damaged and is set aside until `feedhound reindex`.
    pub search_index_damaged: bool,
    /// The most recent successful fetch of any feed.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Article pages of active feeds with `fetch_articles` waiting to be fetched (new ones and
    /// retries).
    pub article_pages_waiting: i64,
    /// Article pages of those feeds given up: their entries are matched on their own text.
    pub article_pages_given_up: i64,
}

impl Store {
    pub fn service_gauges(&self) -> anyhow::Result<ServiceGauges> {
        // Until feeds carry an explicit schedule state, a feed failing right now is backing
        // off (the scheduler doubles its interval) and any other active feed is ok.
        let feeds_by_state = self
            .conn
            .prepare_cached(&format!(
                "SELECT replace({}, ' ', '_') AS state, count(*)
                 FROM feeds WHERE active = 1 GROUP BY state ORDER BY state",
                super::feeds::STATE_SQL
            ))?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let outbox_pending = self.conn.query_row(
            "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND withdrawn_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        // Rows of targets no longer configured go at each config sync.
        let alert_targets_down =
            self.conn
                .query_row("SELECT count(*) FROM alert_target_rests", [], |r| r.get(0))?;
        let (search_backlog, search_index_damaged) = self.conn.query_row(
            "SELECT (SELECT count(*) FROM entries WHERE id > indexed_through)
                  + (SELECT count(*) FROM search_queue), damaged
             FROM search_state",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let last_success_at = self
            .conn
            .query_row("SELECT max(last_success_at) FROM feeds", [], |r| {
                r.get::<_, Option<String>>(0)
            })?
            .as_deref()
            .and_then(parse_sql_time);
        let (article_pages_waiting, article_pages_given_up) = self.article_page_counts()?;
        Ok(ServiceGauges {
            feeds_by_state,
            outbox_pending,
            alert_targets_down,
            search_backlog,
            search_index_damaged,
            last_success_at,
            article_pages_waiting,
            article_pages_given_up,
        })
    }

    /// Proves the database takes writes: records the probe time in `meta`, waiting at most
    /// `wait` for another connection's lock (instead of the usual 30 s), so a health check
    /// answers promptly. A real write, not just a lock: it also catches a read-only file system
    /// or a full disk.
    pub fn probe_write(&mut self, wait: Duration, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.waiting_at_most(wait, |store| {
            store.conn.execute(
                "INSERT INTO meta (key, value) VALUES ('health_probe_at', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [sql_time(now)],
            )
        })??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_targets_count_as_down_until_they_answer_or_leave_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db")).unwrap();
        let now = Utc::now();
        let down = |store: &Store| store.service_gauges().unwrap().alert_targets_down;
        for target in ["desk", "pager", "old"] {
            // Rests already over: the targets have not answered since.
            store
                .rest_target(target, "key", "timeout", |_| {
                    now - chrono::Duration::seconds(1)
                })
                .unwrap();
        }
        assert_eq!(down(&store), 3);
        store.target_answered("desk", "key", now).unwrap();
        assert_eq!(down(&store), 2);
        let configured = [("pager", "new key"), ("desk", "key")]
            .map(|(name, key)| (name.to_owned(), key.to_owned()))
            .into();
        store.forget_rests_except(&configured).unwrap();
        assert_eq!(down(&store), 0, "pager's URL was fixed and old was removed");
    }

    #[test]
    fn the_write_probe_fails_fast_while_another_connection_holds_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut store = Store::open(&path).unwrap();
        store
            .probe_write(Duration::from_millis(50), Utc::now())
            .unwrap();
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let started = std::time::Instant::now();
        let err = store
            .probe_write(Duration::from_millis(50), Utc::now())
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(format!("{err:#}").contains("locked"), "{err:#}");
        other.execute_batch("ROLLBACK").unwrap();
        store
            .probe_write(Duration::from_millis(50), Utc::now())
            .unwrap();
    }
}
