//! The `feeds` table: configured feeds, synced from the config, and their fetch state.

use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap, HashSet};

use rusqlite::params;
use serde::Serialize;

use super::{Store, parse_sql_time};
use crate::config::FeedConfig;
use crate::fetch::redact_str;

fn secs(secs: i64) -> std::time::Duration {
    std::time::Duration::from_secs(secs.max(0) as u64)
}

/// A `feeds` row as `sync_feeds` reads it, once, before changing anything.
struct StoredFeed {
    id: i64,
    url: String,
    fetch_url: Option<String>,
    active: bool,
}

/// A feed as the user names it on the command line: by the id `feeds` lists, or by its URL (the
/// one in the config, or the one a permanent redirect moved it to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedRef {
    Id(i64),
    Url(url::Url),
}

/// The feeds a report is limited to (`--feed`, `--tag`), by id. A query takes it as one JSON
/// array that `json_each` reads, so one prepared statement serves any number of feeds.
#[derive(Debug, Clone)]
pub struct FeedSet(BTreeSet<i64>);

impl FeedSet {
    pub fn new(ids: impl IntoIterator<Item = i64>) -> FeedSet {
        FeedSet(ids.into_iter().collect())
    }

    /// The ids as a JSON array: the value of [`FeedSet::condition`]'s parameter.
    pub(super) fn json_ids(&self) -> String {
        let ids: Vec<String> = self.0.iter().map(i64::to_string).collect();
        format!("[{}]", ids.join(","))
    }

    /// An SQL condition that `column`, a feed id, is one of `feeds`, bound to `param` as
    /// [`FeedSet::json_ids`]. The `+` keeps SQLite from reading every entry of the feeds through
    /// their index rather than the period's or the company's (20 times slower for a tenth of
    /// the feeds of a million entries, `benches/store.rs`). Without feeds it asks only that
    /// `param` is NULL, a test SQLite makes once per statement, not once per row.
    pub(super) fn condition(feeds: Option<&FeedSet>, column: &str, param: &str) -> String {
        match feeds {
            Some(_) => format!("+{column} IN (SELECT value FROM json_each({param}))"),
            None => format!("{param} IS NULL"),
        }
    }
}

/// What `sync_feeds` changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub added: usize,
    /// Feeds the config now names by the URL they moved to (see `follow_moved_feeds`).
    pub moved: usize,
    pub deactivated: usize,
    pub active: usize,
}

/// An active feed as the poller needs it.
#[derive(Debug, Clone)]
pub struct DueFeed {
    pub id: i64,
    /// The URL in the config: identifies the feed.
    pub url: String,
    /// Where to fetch it: `url`, or where a confirmed permanent redirect moved it.
    pub fetch_url: String,
    /// The publishing-rate interval learned so far.
    pub adaptive: Option<std::time::Duration>,
    /// The document's last `<ttl>`/`sy:updatePeriod`.
    pub doc_hint: Option<std::time::Duration>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub body_hash: Option<String>,
    pub error_count: u32,
}

/// A feed's state, as SQL over a `feeds` row: `inactive`, `gone`, `dead`, `backing off`,
/// `new`, `redirected` or `ok`. After 12 consecutive failures a feed shows as `dead` (it is
/// still retried, at `max_backoff`): with the default backoff that is more than a week of failing.
pub(super) const STATE_SQL: &str = "CASE WHEN active = 0 THEN 'inactive'
     WHEN gone_at IS NOT NULL THEN 'gone'
     WHEN error_count >= 12 THEN 'dead'
     WHEN error_count > 0 THEN 'backing off'
     WHEN last_success_at IS NULL THEN 'new'
     WHEN fetch_url IS NOT NULL THEN 'redirected'
     ELSE 'ok' END";

/// A feed's state for `feedhound feeds`.
#[derive(Debug, Clone, Serialize)]
pub struct FeedStatus {
    pub id: i64,
    pub url: String,
    /// ok, new, backing off, dead, gone, redirected or inactive.
    pub state: String,
    /// Where the feed is fetched from when a permanent redirect moved it.
    pub moved_to: Option<String>,
    pub interval_secs: Option<i64>,
    /// config, adaptive, server hint, default, backoff or retry-after.
    pub interval_reason: Option<String>,
    pub retry_after: Option<String>,
    pub gone_at: Option<String>,
    pub name: Option<String>,
    pub title: Option<String>,
    pub active: bool,
    pub last_fetch_at: Option<String>,
    pub last_success_at: Option<String>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub error_count: u32,
    pub next_poll_at: Option<String>,
    pub entries: i64,
    /// `fetch_articles` is on for the feed.
    pub fetch_articles: bool,
    /// Its article pages waiting or given up; present while `fetch_articles` is on, or while
    /// any are left from when it was.
    pub article_pages: Option<super::PageTroubles>,
}

impl Store {
    /// Makes the `feeds` table match the config: new feeds are added, removed ones marked
    /// inactive (their entries stay, their tombstones start to age), and name, tags and
    /// interval follow the config.
    pub fn sync_feeds(&mut self, feeds: &[FeedConfig]) -> anyhow::Result<SyncReport> {
        let tx = super::write_transaction(&mut self.conn)?;
        let configured: HashSet<&str> = feeds.iter().map(|f| f.url.as_str()).collect();
        let stored: Vec<StoredFeed> = tx
            .prepare("SELECT id, url, fetch_url, active FROM feeds")?
            .query_map([], |r| {
                Ok(StoredFeed {
                    id: r.get(0)?,
                    url: r.get(1)?,
                    fetch_url: r.get(2)?,
                    active: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let was_active: HashSet<&str> = stored
            .iter()
            .filter(|f| f.active)
            .map(|f| f.url.as_str())
            .collect();
        let moved = follow_moved_feeds(&tx, feeds, &configured, &stored)?;
        tx.execute("UPDATE feeds SET active = 0 WHERE active = 1", [])?;
        {
            let mut upsert = tx.prepare(
                "INSERT INTO feeds (url, name, tags, interval_secs, fetch_articles, active)
                 VALUES (?1, ?2, ?3, ?4, ?6, 1)
                 ON CONFLICT (url) DO UPDATE SET
                     -- Editing a gone feed's entry (or re-adding it) is how a user says: try again.
                     gone_at = CASE WHEN feeds.name IS excluded.name AND feeds.tags = excluded.tags
                                         AND feeds.interval_secs IS excluded.interval_secs
                                         AND ?5 THEN feeds.gone_at ELSE NULL END,
                     -- Put back after a time out of the config, its next document holds what it
                     -- published meanwhile: a backlog, as a new feed's first one (no alerts).
                     -- Fetched whole, not conditionally: a 304 would leave the mark on until
                     -- the feed's next new document, and hold that one back as backlog.
                     body_hash = CASE WHEN ?5 THEN feeds.body_hash ELSE NULL END,
                     etag = CASE WHEN ?5 THEN feeds.etag ELSE NULL END,
                     last_modified = CASE WHEN ?5 THEN feeds.last_modified ELSE NULL END,
                     name = excluded.name, tags = excluded.tags,
                     interval_secs = excluded.interval_secs,
                     fetch_articles = excluded.fetch_articles, active = 1",
            )?;
            let mut unmark = tx.prepare(
                "UPDATE tombstones SET absent_since = NULL
                 WHERE feed_id = (SELECT id FROM feeds WHERE url = ?1) AND absent_since IS NOT NULL",
            )?;
            for feed in feeds {
                let tags = serde_json::to_string(&feed.tags)?;
                let url = feed.url.as_str();
                let active_before = was_active.contains(url)
                    || moved
                        .get(url)
                        .is_some_and(|old| was_active.contains(old.as_str()));
                upsert.execute(params![
                    url,
                    feed.name,
                    tags,
                    feed.interval.map(|i| i.as_secs() as i64),
                    active_before,
                    feed.fetch_articles,
                ])?;
                if !active_before {
                    unmark.execute([url])?;
                }
            }
        }
        // A feed removed from the config serves nothing: its tombstones are absent from now on,
        // and a prune forgets them after the retention period (one it writes later is marked
        // as it is written). A feed added back starts again from unmarked tombstones, as if no
        // document had been parsed since they were written: only a parsed document can tell
        // which keys it still serves.
        tx.execute(
            "UPDATE tombstones SET absent_since = datetime('now')
             WHERE absent_since IS NULL AND feed_id IN (SELECT id FROM feeds WHERE active = 0)",
            [],
        )?;
        let total: i64 = tx.query_row("SELECT count(*) FROM feeds", [], |r| r.get(0))?;
        tx.commit()?;
        Ok(SyncReport {
            added: (total as usize).saturating_sub(stored.len()),
            moved: moved.len(),
            deactivated: was_active
                .iter()
                .filter(|url| !configured.contains(*url) && !moved.values().any(|old| old == *url))
                .count(),
            active: feeds.len(),
        })
    }

    /// The feeds of `urls`, whose request headers the config changed (a renewed login), are due
    /// now and tried again if they were gone, as after any other edit of a feed's entry; a
    /// server's `Retry-After` still holds. The headers are not stored, so only a running daemon,
    /// which holds the old ones, can tell.
    pub fn poll_again_soon(&self, urls: &[String], now: DateTime<Utc>) -> anyhow::Result<()> {
        let mut stmt = self.conn.prepare(
            "UPDATE feeds SET gone_at = NULL,
                 next_poll_at = CASE WHEN retry_after > ?2 THEN next_poll_at ELSE NULL END
             WHERE url = ?1 AND active = 1",
        )?;
        let now = super::sql_time_precise(now);
        for url in urls {
            stmt.execute(params![url, now])?;
        }
        Ok(())
    }

    /// Brings a feed back to a clean state: not gone, no redirect, no failures, due now.
    /// Returns false when no feed is `feed`.
    pub fn reset_feed(&self, feed: &FeedRef) -> anyhow::Result<bool> {
        let reset = "UPDATE feeds SET gone_at = NULL, fetch_url = NULL, redirect_candidate = NULL, redirect_seen = 0,
                 error_count = 0, last_error = NULL, retry_after = NULL, next_poll_at = NULL";
        let changed = match feed {
            FeedRef::Id(id) => self.conn.execute(&format!("{reset} WHERE id = ?1"), [id])?,
            FeedRef::Url(url) => self.conn.execute(
                &format!("{reset} WHERE url = ?1 OR fetch_url = ?1"),
                [url.as_str()],
            )?,
        };
        Ok(changed > 0)
    }

    /// The ids of the stored feeds `feed` names, as [`Store::reset_feed`] finds them: by id, or
    /// by URL (the config's, or the one a feed moved to; two feeds may have moved to one).
    pub fn feed_ids(&self, feed: &FeedRef) -> anyhow::Result<Vec<i64>> {
        let (sql, key): (_, &dyn rusqlite::ToSql) = match feed {
            FeedRef::Id(id) => ("SELECT id FROM feeds WHERE id = ?1", id),
            FeedRef::Url(url) => (
                "SELECT id FROM feeds WHERE url = ?1 OR fetch_url = ?1",
                &url.as_str(),
            ),
        };
        let mut stmt = self.conn.prepare(sql)?;
        let ids = stmt.query_map([key], |r| r.get(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    /// Active feeds whose next poll is at or before `now` (all active feeds when `now` is None),
    /// earliest first.
    pub fn due_feeds(&self, now: Option<DateTime<Utc>>) -> anyhow::Result<Vec<DueFeed>> {
        let cutoff = now.map(super::sql_time_precise);
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, url, etag, last_modified, body_hash, error_count,
                    coalesce(fetch_url, url), adaptive_secs, doc_hint_secs
             FROM feeds
             WHERE active = 1 AND gone_at IS NULL
               AND (?1 IS NULL OR next_poll_at IS NULL OR next_poll_at <= ?1)
             ORDER BY next_poll_at IS NOT NULL, next_poll_at, id",
        )?;
        let rows = stmt.query_map(params![cutoff], |r| {
            Ok(DueFeed {
                id: r.get(0)?,
                url: r.get(1)?,
                etag: r.get(2)?,
                last_modified: r.get(3)?,
                body_hash: r.get(4)?,
                error_count: r.get(5)?,
                fetch_url: r.get(6)?,
                adaptive: r.get::<_, Option<i64>>(7)?.map(secs),
                doc_hint: r.get::<_, Option<i64>>(8)?.map(secs),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Active feeds whose server asked (`Retry-After`) not to be polled before a time after `now`,
    /// and when, where the schedule took the request (it ignores absurd ones): a pass over every
    /// feed (`feedhound poll`) leaves them out.
    pub fn feeds_asked_to_wait(
        &self,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<(i64, DateTime<Utc>)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, retry_after FROM feeds
             WHERE active = 1 AND gone_at IS NULL
               AND retry_after > ?1 AND next_poll_at >= retry_after",
        )?;
        let rows = stmt.query_map([super::sql_time_precise(now)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut waiting = Vec::new();
        for row in rows {
            let (id, until) = row?;
            if let Some(until) = parse_sql_time(&until) {
                waiting.push((id, until));
            }
        }
        Ok(waiting)
    }

    /// The earliest `next_poll_at` among active feeds not in `skip` (feeds being refreshed right
    /// now); None when there is no such feed.
    pub fn next_due_time(&self, skip: &HashSet<i64>) -> anyhow::Result<Option<DateTime<Utc>>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, next_poll_at FROM feeds WHERE active = 1 AND gone_at IS NULL
             ORDER BY next_poll_at IS NOT NULL, next_poll_at",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            if skip.contains(&row.get::<_, i64>(0)?) {
                continue;
            }
            let next: Option<String> = row.get(1)?;
            return Ok(Some(
                next.as_deref()
                    .and_then(parse_sql_time)
                    .unwrap_or_else(Utc::now),
            ));
        }
        Ok(None)
    }

    /// Every feed (active first), with its entry count and its article pages' troubles.
    pub fn feed_statuses(&self) -> anyhow::Result<Vec<FeedStatus>> {
        let mut page_troubles = self.page_troubles_by_feed()?;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT f.id, f.url, f.name, f.title, f.active, f.last_fetch_at, f.last_success_at,
                    f.last_status, f.last_error, f.error_count, f.next_poll_at,
                    (SELECT count(*) FROM entries e WHERE e.feed_id = f.id),
                    f.fetch_url, f.interval_secs_current, f.interval_reason, f.retry_after, f.gone_at,
                    {STATE_SQL}, f.fetch_articles
             FROM feeds f ORDER BY f.active DESC, f.id"
        ))?;
        let rows = stmt.query_map([], |r| {
            let id = r.get(0)?;
            let fetch_articles = r.get(18)?;
            let troubles = page_troubles.remove(&id);
            Ok(FeedStatus {
                id,
                url: r.get(1)?,
                name: r.get(2)?,
                title: r.get(3)?,
                active: r.get(4)?,
                last_fetch_at: r.get(5)?,
                last_success_at: r.get(6)?,
                last_status: r.get(7)?,
                last_error: r.get(8)?,
                error_count: r.get(9)?,
                next_poll_at: r.get(10)?,
                entries: r.get(11)?,
                moved_to: r.get(12)?,
                interval_secs: r.get(13)?,
                interval_reason: r.get(14)?,
                retry_after: r.get(15)?,
                gone_at: r.get(16)?,
                state: r.get(17)?,
                fetch_articles,
                article_pages: troubles.or_else(|| fetch_articles.then(Default::default)),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// A config URL that no feed has yet, where a feed that left the config moved: the URL its
/// permanent redirect was confirmed to (the config was updated as `feeds` advises), or its own
/// with the other of http and https. That feed takes the new URL, keeping its entries, validators
/// and schedule; otherwise the same stories would be stored a second time under a new feed.
/// Only a single such feed is taken: two candidates leave the choice to nobody. Returns the old
/// URL of each feed that moved, by its new one.
///
/// Matched in memory against the rows `sync_feeds` read once: a query per configured URL would
/// scan the table each time on a first sync of 10,000 feeds (`fetch_url` has no index).
fn follow_moved_feeds(
    tx: &rusqlite::Transaction<'_>,
    feeds: &[FeedConfig],
    configured: &HashSet<&str>,
    stored: &[StoredFeed],
) -> anyhow::Result<HashMap<String, String>> {
    let departed: Vec<&StoredFeed> = stored
        .iter()
        .filter(|f| !configured.contains(f.url.as_str()))
        .collect();
    let mut moved: HashMap<String, String> = HashMap::new();
    if departed.is_empty() {
        return Ok(moved);
    }
    // A redirect confirmed to somewhere else stays (an http → https edit of a feed that moved).
    let mut take = tx.prepare(
        "UPDATE feeds SET url = ?2,
             fetch_url = CASE WHEN fetch_url = ?2 THEN NULL ELSE fetch_url END,
             redirect_candidate = CASE WHEN fetch_url = ?2 THEN NULL ELSE redirect_candidate END,
             redirect_seen = CASE WHEN fetch_url = ?2 THEN 0 ELSE redirect_seen END
         WHERE id = ?1",
    )?;
    let known: HashSet<&str> = stored.iter().map(|f| f.url.as_str()).collect();
    let unknown = feeds
        .iter()
        .map(|f| f.url.as_str())
        .filter(|url| !known.contains(url));
    for url in unknown {
        let other_scheme =
            |from: &str, to: &str| url.strip_prefix(from).map(|rest| format!("{to}{rest}"));
        let swapped =
            other_scheme("http://", "https://").or_else(|| other_scheme("https://", "http://"));
        let mut candidates = departed.iter().filter(|f| {
            !moved.values().any(|taken| *taken == f.url)
                && (f.fetch_url.as_deref() == Some(url) || swapped.as_deref() == Some(&f.url))
        });
        if let (Some(StoredFeed { id, url: old, .. }), None) =
            (candidates.next(), candidates.next())
        {
            take.execute(params![id, url])?;
            tracing::info!(
                feed_id = id,
                from = %redact_str(old),
                to = %redact_str(url),
                "the config names this feed by its new URL: it keeps its entries and schedule"
            );
            moved.insert(url.to_owned(), old.clone());
        }
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::OptionalExtension;
    use url::Url;

    fn feed(url: &str) -> FeedConfig {
        FeedConfig {
            url: Url::parse(url).unwrap(),
            name: None,
            interval: None,
            tags: vec![],
            headers: None,
            fetch_articles: false,
        }
    }

    #[test]
    fn sync_adds_new_feeds_and_deactivates_removed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db")).unwrap();
        let report = store
            .sync_feeds(&[feed("http://a.example/rss"), feed("http://b.example/rss")])
            .unwrap();
        assert_eq!(
            report,
            SyncReport {
                added: 2,
                moved: 0,
                deactivated: 0,
                active: 2
            }
        );
        let report = store
            .sync_feeds(&[feed("http://b.example/rss"), feed("http://c.example/rss")])
            .unwrap();
        assert_eq!(
            report,
            SyncReport {
                added: 1,
                moved: 0,
                deactivated: 1,
                active: 2
            }
        );
        let statuses = store.feed_statuses().unwrap();
        let a = statuses
            .iter()
            .find(|s| s.url == "http://a.example/rss")
            .unwrap();
        assert!(!a.active);
        assert_eq!(store.due_feeds(None).unwrap().len(), 2);
        // Bringing a feed back reactivates the same row.
        let report = store.sync_feeds(&[feed("http://a.example/rss")]).unwrap();
        assert_eq!(
            report,
            SyncReport {
                added: 0,
                moved: 0,
                deactivated: 2,
                active: 1
            }
        );
        assert_eq!(store.due_feeds(None).unwrap()[0].id, a.id);
    }

    #[test]
    fn a_feed_named_by_the_url_it_moved_to_stays_the_same_feed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db")).unwrap();
        let id = |store: &Store, url: &str| -> Option<i64> {
            store
                .conn
                .query_row("SELECT id FROM feeds WHERE url = ?1", [url], |r| r.get(0))
                .optional()
                .unwrap()
        };
        store
            .sync_feeds(&[feed("http://a.example/rss"), feed("http://b.example/rss")])
            .unwrap();
        let (a, b) = (
            id(&store, "http://a.example/rss").unwrap(),
            id(&store, "http://b.example/rss").unwrap(),
        );
        store
            .conn
            .execute_batch(&format!(
                "UPDATE feeds SET body_hash = 'parsed before';
                 UPDATE feeds SET fetch_url = 'https://b.example/feed' WHERE id = {b};
                 UPDATE feeds SET fetch_url = 'https://c.example/rss' WHERE id = {a};"
            ))
            .unwrap();

        // http → https, and the URL a confirmed redirect led to.
        let report = store
            .sync_feeds(&[
                feed("https://a.example/rss"),
                feed("https://b.example/feed"),
            ])
            .unwrap();
        assert_eq!(
            report,
            SyncReport {
                added: 0,
                moved: 2,
                deactivated: 0,
                active: 2
            }
        );
        assert_eq!(id(&store, "https://a.example/rss"), Some(a));
        assert_eq!(id(&store, "https://b.example/feed"), Some(b));
        let column = |store: &Store, column: &str, id: i64| -> Option<String> {
            store
                .conn
                .query_row(
                    &format!("SELECT {column} FROM feeds WHERE id = ?1"),
                    [id],
                    |r| r.get(0),
                )
                .unwrap()
        };
        // Fetched where it moved to, now its own URL; a's move elsewhere stays confirmed.
        assert_eq!(column(&store, "fetch_url", b), None);
        assert_eq!(
            column(&store, "fetch_url", a).as_deref(),
            Some("https://c.example/rss")
        );
        // Still the same feed, not a new one with a backlog to come.
        assert_eq!(
            column(&store, "body_hash", b).as_deref(),
            Some("parsed before")
        );

        // A feed still in the config is not taken, whatever its scheme.
        let report = store
            .sync_feeds(&[feed("https://a.example/rss"), feed("http://a.example/rss")])
            .unwrap();
        assert_eq!((report.added, report.moved), (1, 0));
        assert_eq!(id(&store, "https://a.example/rss"), Some(a));

        // Out of the config and back: what it serves next is a backlog again, fetched whole.
        store
            .conn
            .execute(
                "UPDATE feeds SET etag = '\"v1\"', last_modified = 'Mon, 23 Nov 2026 08:00:00 GMT'",
                [],
            )
            .unwrap();
        store.sync_feeds(&[feed("https://a.example/rss")]).unwrap();
        assert!(column(&store, "body_hash", b).is_some());
        store
            .sync_feeds(&[
                feed("https://a.example/rss"),
                feed("https://b.example/feed"),
            ])
            .unwrap();
        for column_name in ["body_hash", "etag", "last_modified"] {
            assert_eq!(column(&store, column_name, b), None, "{column_name}");
            assert!(column(&store, column_name, a).is_some(), "{column_name}");
        }
    }
}
