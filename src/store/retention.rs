//! Retention: deleting old entries nobody flagged, and handing the space back.
//!
//! With `[storage] retain = "180d"`, an entry older than that (by publication time, else the
//! time we first saw it) that mentions no company is deleted. Flagged entries are the point of
//! the database and are kept whatever their age. A publisher often keeps serving old items, so
//! a deleted entry's dedup key stays in `tombstones` and `entries` skips it when it comes back
//! (otherwise every prune would be undone by the next poll). Stories left without entries go
//! too; their outbox rows follow by `ON DELETE CASCADE`.
//!
//! Tombstones do not pile up forever: each new document of a feed marks the tombstones whose
//! keys it lacks as absent (and clears the mark of those it carries again, see `entries`), and
//! a prune forgets those absent since before the cutoff (migration 0009). A feed that answered
//! 304 all that time parsed nothing, so its tombstones keep their state.
//!
//! Space: deleted rows free pages that SQLite reuses for new rows, so the file stops growing
//! either way. Returning them to the filesystem needs `auto_vacuum = INCREMENTAL`, which
//! `Store::open` sets on a new database, and which an older one takes at a full `VACUUM`
//! ([`Store::vacuum`], `feedhound prune --vacuum`, once). After a prune,
//! `PRAGMA incremental_vacuum` then truncates the file by the pages freed.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::writer::StoreWriter;
use super::{Store, sql_time};

/// Entries deleted per transaction: each commit stays short (the FTS triggers re-tokenise every
/// deleted entry) and the WAL small, so a first prune of a years-old database does not build a
/// transaction of its whole size.
const BATCH: usize = 500;

/// Tombstones forgotten per transaction: small rows with no triggers, so more per commit.
const TOMBSTONE_BATCH: usize = 5000;

/// How often the daemon prunes; entries age by days, so more often gains nothing.
pub const PRUNE_EVERY: Duration = Duration::from_secs(24 * 3600);

/// An entry retention deletes: older than `?1` and mentioning no company. `e` is `entries`.
const DOOMED: &str = "coalesce(e.published_at, e.first_seen_at) < ?1
     AND NOT EXISTS (SELECT 1 FROM mentions m WHERE m.entry_id = e.id)";

/// A tombstone whose key every document of its feed since the cutoff `?1` has lacked.
const FORGOTTEN: &str = "absent_since < ?1";

/// What a prune deleted (or, in a dry run, would delete).
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// Entries older than this were considered.
    pub cutoff: DateTime<Utc>,
    pub dry_run: bool,
    /// Per feed, most entries first; feeds losing nothing are left out.
    pub feeds: Vec<PrunedFeed>,
    pub entries: usize,
    /// Stories left without entries.
    pub stories: usize,
    /// Entries older than the cutoff kept because they mention a company.
    pub kept_flagged: usize,
    /// Tombstones of entries their feeds have not served since the cutoff.
    pub tombstones_forgotten: usize,
    /// Bytes handed back to the filesystem by the incremental vacuum (0 in a dry run, or when
    /// the database is not in incremental auto-vacuum mode: see [`PruneReport::auto_vacuum`]).
    pub freed_bytes: u64,
    /// Whether the database is in `auto_vacuum = INCREMENTAL` mode.
    pub auto_vacuum: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrunedFeed {
    pub feed_id: i64,
    /// The feed's configured name, else its declared title, else its URL.
    pub feed: String,
    pub entries: usize,
}

/// Database file size around a full [`Store::vacuum`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VacuumReport {
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// A prune in progress. [`Store::prune`] runs one to the end; the daemon runs it a batch per
/// writer call, so feed results are written between batches (a first prune of a large
/// database takes tens of seconds, see README).
struct Pruning {
    cutoff: String,
    now: DateTime<Utc>,
    per_feed: BTreeMap<i64, usize>,
    report: PruneReport,
    stage: Stage,
}

enum Stage {
    Entries,
    Tombstones,
    Done,
}

impl Pruning {
    fn done(&self) -> bool {
        matches!(self.stage, Stage::Done)
    }
}

impl Store {
    /// Deletes entries older than `retain` before `now` that mention no company, remembering
    /// their keys as tombstones, and the stories they leave empty; then optimises and
    /// incrementally vacuums. With `dry_run`, only counts.
    pub fn prune(
        &mut self,
        retain: Duration,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> anyhow::Result<PruneReport> {
        let mut run = self.prune_begin(retain, now, dry_run)?;
        while !run.done() {
            self.prune_step(&mut run)?;
        }
        self.prune_finish(run)
    }

    /// Counts what stays (and, for a dry run, everything), deleting nothing yet.
    fn prune_begin(
        &mut self,
        retain: Duration,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> anyhow::Result<Pruning> {
        let cutoff = chrono::Duration::from_std(retain)
            .ok()
            .and_then(|retain| now.checked_sub_signed(retain))
            .ok_or_else(|| anyhow::anyhow!("the retention period is too long"))?;
        let cutoff_text = sql_time(cutoff);
        let kept_flagged = self.conn.query_row(
            "SELECT count(*) FROM entries e WHERE coalesce(e.published_at, e.first_seen_at) < ?1
                 AND EXISTS (SELECT 1 FROM mentions m WHERE m.entry_id = e.id)",
            [&cutoff_text],
            |r| r.get::<_, i64>(0),
        )? as usize;
        let mut run = Pruning {
            cutoff: cutoff_text,
            now,
            per_feed: BTreeMap::new(),
            report: PruneReport {
                cutoff,
                dry_run,
                feeds: Vec::new(),
                entries: 0,
                stories: 0,
                kept_flagged,
                tombstones_forgotten: 0,
                freed_bytes: 0,
                auto_vacuum: self.auto_vacuum_incremental()?,
            },
            stage: if dry_run { Stage::Done } else { Stage::Entries },
        };
        if dry_run {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT e.feed_id, count(*) FROM entries e WHERE {DOOMED} GROUP BY e.feed_id"
            ))?;
            for row in stmt.query_map([&run.cutoff], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as usize))
            })? {
                let (feed, count) = row?;
                run.per_feed.insert(feed, count);
            }
            // A story goes when every one of its entries goes.
            run.report.stories = self.conn.query_row(
                &format!(
                    "SELECT count(DISTINCT e.story_id) FROM entries e
                     WHERE {DOOMED} AND e.story_id IS NOT NULL
                       AND NOT EXISTS (SELECT 1 FROM entries o WHERE o.story_id = e.story_id
                           AND (coalesce(o.published_at, o.first_seen_at) >= ?1
                                OR EXISTS (SELECT 1 FROM mentions m WHERE m.entry_id = o.id)))"
                ),
                [&run.cutoff],
                |r| r.get::<_, i64>(0),
            )? as usize;
            // Tombstones this prune writes are not marked absent yet, and one it writes again
            // (its key held by an entry it deletes) loses its mark: only the rest go.
            run.report.tombstones_forgotten = self.conn.query_row(
                &format!(
                    "SELECT count(*) FROM tombstones t WHERE t.{FORGOTTEN}
                       AND NOT EXISTS (SELECT 1 FROM entries e
                                       WHERE e.feed_id = t.feed_id AND e.dedup_key = t.dedup_key
                                         AND {DOOMED})"
                ),
                [&run.cutoff],
                |r| r.get::<_, i64>(0),
            )? as usize;
        }
        Ok(run)
    }

    /// Runs one batch, in its own transaction: entries first, then tombstones.
    fn prune_step(&mut self, run: &mut Pruning) -> anyhow::Result<()> {
        match &run.stage {
            Stage::Entries => self.delete_entries(run),
            Stage::Tombstones => self.forget_tombstones(run),
            Stage::Done => Ok(()),
        }
    }

    /// Deletes at most [`BATCH`] entries.
    fn delete_entries(&mut self, run: &mut Pruning) -> anyhow::Result<()> {
        let tx = super::write_transaction(&mut self.conn)?;
        let doomed: Vec<(i64, i64, Option<i64>)> = tx
            .prepare(&format!(
                "SELECT e.id, e.feed_id, e.story_id FROM entries e WHERE {DOOMED} LIMIT ?2"
            ))?
            .query_map(params![run.cutoff, BATCH as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        let mut stories = Vec::new();
        {
            let now = sql_time(run.now);
            // Not marked absent: whether the feed still serves the key, its next document tells;
            // unless the feed was removed from the config, which serves nothing (`sync_feeds`).
            // A tombstone already there for the key (the entry took the key back over, as when a
            // publisher reverts a changed guid) starts again.
            let mut tombstone = tx.prepare(
                "INSERT INTO tombstones (feed_id, dedup_key, pruned_at, absent_since)
                 SELECT e.feed_id, e.dedup_key, ?2, CASE WHEN f.active = 0 THEN ?2 END
                 FROM entries e JOIN feeds f ON f.id = e.feed_id WHERE e.id = ?1
                 ON CONFLICT (feed_id, dedup_key)
                     DO UPDATE SET pruned_at = excluded.pruned_at, absent_since = excluded.absent_since",
            )?;
            let mut delete = tx.prepare("DELETE FROM entries WHERE id = ?1")?;
            for &(id, feed_id, story) in &doomed {
                tombstone.execute(params![id, now])?;
                delete.execute([id])?;
                *run.per_feed.entry(feed_id).or_default() += 1;
                stories.extend(story);
            }
        }
        stories.sort_unstable();
        stories.dedup();
        {
            let mut delete_story = tx.prepare(
                "DELETE FROM stories WHERE id = ?1
                   AND NOT EXISTS (SELECT 1 FROM entries WHERE story_id = ?1)",
            )?;
            for story in stories {
                run.report.stories += delete_story.execute([story])?;
            }
        }
        tx.commit()?;
        if doomed.len() < BATCH {
            run.stage = Stage::Tombstones;
        }
        Ok(())
    }

    /// Forgets at most [`TOMBSTONE_BATCH`] tombstones of keys their feeds no longer serve.
    fn forget_tombstones(&mut self, run: &mut Pruning) -> anyhow::Result<()> {
        let tx = super::write_transaction(&mut self.conn)?;
        // `tombstones_by_absence` finds them without reading the tombstones still served.
        let forgotten = tx
            .prepare(&format!(
                "DELETE FROM tombstones WHERE (feed_id, dedup_key) IN
                     (SELECT feed_id, dedup_key FROM tombstones WHERE {FORGOTTEN} LIMIT ?2)"
            ))?
            .execute(params![run.cutoff, TOMBSTONE_BATCH as i64])?;
        tx.commit()?;
        run.report.tombstones_forgotten += forgotten;
        if forgotten < TOMBSTONE_BATCH {
            run.stage = Stage::Done;
        }
        Ok(())
    }

    /// Names the feeds, then optimises and vacuums after a real run.
    fn prune_finish(&mut self, run: Pruning) -> anyhow::Result<PruneReport> {
        let mut report = run.report;
        report.entries = run.per_feed.values().sum();
        for (feed_id, entries) in run.per_feed {
            let feed = self
                .conn
                .query_row(
                    "SELECT coalesce(name, title, url) FROM feeds WHERE id = ?1",
                    [feed_id],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or_else(|| format!("feed {feed_id}"));
            report.feeds.push(PrunedFeed {
                feed_id,
                feed,
                entries,
            });
        }
        report
            .feeds
            .sort_by(|a, b| b.entries.cmp(&a.entries).then(a.feed_id.cmp(&b.feed_id)));
        if !report.dry_run {
            // Refreshes the planner's statistics after a large change, as SQLite recommends.
            self.conn.execute_batch("PRAGMA optimize;")?;
            if report.auto_vacuum && (report.entries > 0 || report.tombstones_forgotten > 0) {
                report.freed_bytes = self.incremental_vacuum()?;
            }
        }
        Ok(report)
    }

    fn auto_vacuum_incremental(&self) -> anyhow::Result<bool> {
        // 0 = none, 1 = full, 2 = incremental.
        let mode: i64 = self
            .conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
        Ok(mode == 2)
    }

    /// Hands every free page back to the filesystem; returns the bytes freed.
    fn incremental_vacuum(&mut self) -> anyhow::Result<u64> {
        let free_pages = |store: &Store| -> anyhow::Result<u64> {
            Ok(store
                .conn
                .query_row("PRAGMA freelist_count", [], |r| r.get::<_, i64>(0))?
                as u64)
        };
        let before = free_pages(self)?;
        // It frees one page per step: run it to the end, not just once as execute() would.
        let mut stmt = self.conn.prepare("PRAGMA incremental_vacuum")?;
        let mut steps = stmt.query([])?;
        while steps.next()?.is_some() {}
        drop(steps);
        drop(stmt);
        let after = free_pages(self)?;
        // In WAL mode the file shrinks when the WAL is checkpointed; do it now rather than at
        // the next automatic checkpoint. PASSIVE: TRUNCATE would wait up to busy_timeout for
        // any reader (a Datasette session) and hold every feed's write meanwhile; a busy reader
        // only makes a passive one partial, and the next checkpoint finishes the job.
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(before.saturating_sub(after) * self.page_size()?)
    }

    fn page_size(&self) -> anyhow::Result<u64> {
        Ok(self
            .conn
            .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))? as u64)
    }

    fn file_bytes(&self) -> anyhow::Result<u64> {
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        Ok(pages as u64 * self.page_size()?)
    }

    /// Rewrites the whole database (`VACUUM`), which also switches an older database to
    /// incremental auto-vacuum so later prunes return space by themselves. Needs free disk
    /// space about the size of the database, and blocks every writer while it runs.
    pub fn vacuum(&mut self) -> anyhow::Result<VacuumReport> {
        let bytes_before = self.file_bytes()?;
        self.conn
            .execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(VacuumReport {
            bytes_before,
            bytes_after: self.file_bytes()?,
        })
    }
}

/// One prune, a batch per writer call; None when `shutdown` came first (batches already
/// committed stay done; the rest waits for the next run).
async fn prune_through(
    writer: &StoreWriter,
    retain: Duration,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<PruneReport>> {
    let now = Utc::now();
    let mut run = writer
        .call(move |store| store.prune_begin(retain, now, false))
        .await?;
    while !run.done() {
        if shutdown.is_cancelled() {
            return Ok(None);
        }
        run = writer
            .call(move |store| store.prune_step(&mut run).map(|()| run))
            .await?;
    }
    Ok(Some(
        writer.call(move |store| store.prune_finish(run)).await?,
    ))
}

/// How often retention looks again while stored entries wait to be re-matched.
const REMATCH_WAIT: Duration = Duration::from_secs(1);

/// The daemon's retention task: prunes now, then every [`PRUNE_EVERY`], until `shutdown`.
/// A failed prune is logged and retried at the next round; it never stops the daemon.
pub async fn prune_periodically(
    writer: StoreWriter,
    retain: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let round = match writer.call(|store| store.rematch_pending()).await {
            // An entry without mentions now may be flagged by the new company rules.
            Ok(true) => {
                tracing::debug!("retention waits for the re-match of stored entries");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(REMATCH_WAIT) => continue,
                }
            }
            Ok(false) => prune_through(&writer, retain, &shutdown).await,
            Err(err) => Err(err),
        };
        match round {
            Ok(Some(report)) if report.entries > 0 || report.tombstones_forgotten > 0 => {
                tracing::info!(
                    entries = report.entries,
                    stories = report.stories,
                    kept_flagged = report.kept_flagged,
                    tombstones_forgotten = report.tombstones_forgotten,
                    freed_bytes = report.freed_bytes,
                    cutoff = %sql_time(report.cutoff),
                    "pruned"
                )
            }
            Ok(Some(_)) => tracing::debug!("nothing to prune"),
            Ok(None) => return,
            Err(err) => tracing::error!(error = %format!("{err:#}"), "pruning old entries failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ParsedEntry;
    use crate::store::Applied;
    use crate::store::testing::{store_document, store_document_at, store_with_one_feed};
    use crate::store::{FeedResult, FetchState};

    const DAY: Duration = Duration::from_secs(86400);

    fn entry(key: &str, published: Option<&str>) -> ParsedEntry {
        ParsedEntry {
            dedup_key: key.into(),
            title: Some(format!("title {key}")),
            canonical_link: Some(format!("news.example/{key}")),
            link_unique_in_doc: true,
            published_at: published
                .map(|p| DateTime::parse_from_rfc3339(p).unwrap().with_timezone(&Utc)),
            content_hash: key.into(),
            ..Default::default()
        }
    }

    fn setup() -> (tempfile::TempDir, Store, i64) {
        store_with_one_feed()
    }

    fn poll(store: &mut Store, feed_id: i64, entries: Vec<ParsedEntry>, body: &str) -> Applied {
        store_document(store, feed_id, entries, body)
    }

    fn count(store: &Store, sql: &str) -> i64 {
        store.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Three entries: two published in 2020 (one of them flagged), one today.
    fn populated() -> (tempfile::TempDir, Store, i64) {
        let (dir, mut store, feed) = setup();
        let today = Utc::now().to_rfc3339();
        poll(
            &mut store,
            feed,
            vec![
                entry("g:old", Some("2020-01-01T00:00:00Z")),
                entry("g:old-flagged", Some("2020-01-02T00:00:00Z")),
                entry("g:new", Some(&today)),
            ],
            "b1",
        );
        store
            .conn
            .execute_batch(
                "INSERT INTO companies (name) VALUES ('Acme');
                 INSERT INTO mentions (entry_id, company_id, fields, count, snippet)
                 SELECT e.id, c.id, 'title', 1, 'Acme' FROM entries e, companies c
                 WHERE e.dedup_key = 'g:old-flagged';",
            )
            .unwrap();
        (dir, store, feed)
    }

    #[test]
    fn a_new_database_is_in_incremental_auto_vacuum_mode() {
        let (_dir, store, _) = setup();
        assert!(store.auto_vacuum_incremental().unwrap());
    }

    #[tokio::test]
    async fn the_daemon_task_prunes_at_once_in_batches_and_stops_on_shutdown() {
        let (_dir, mut store, feed) = setup();
        let old: Vec<ParsedEntry> = (0..BATCH + 5)
            .map(|i| entry(&format!("g:{i}"), Some("2020-01-01T00:00:00Z")))
            .collect();
        poll(&mut store, feed, old, "b");
        let (writer, thread) =
            StoreWriter::spawn(store, crate::store::writer::WhenIdle::Wait).unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(prune_periodically(
            writer.clone(),
            180 * DAY,
            shutdown.clone(),
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = writer
                .call(|store| Ok(count(store, "SELECT count(*) FROM entries")))
                .await
                .unwrap();
            if left == 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{left} entries left");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops on shutdown")
            .unwrap();
        drop(writer);
        let store = thread.join().unwrap();
        assert_eq!(
            count(&store, "SELECT count(*) FROM tombstones"),
            (BATCH + 5) as i64
        );
    }

    #[tokio::test]
    async fn the_daemon_task_waits_while_a_rematch_is_pending() {
        let (_dir, mut store, feed) = setup();
        let old = vec![entry("g:old", Some("2020-01-01T00:00:00Z"))];
        poll(&mut store, feed, old, "b");
        store
            .set_meta(
                crate::store::RULES_FINGERPRINT,
                crate::store::REMATCH_PENDING,
            )
            .unwrap();
        let (writer, thread) =
            StoreWriter::spawn(store, crate::store::writer::WhenIdle::Wait).unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(prune_periodically(
            writer.clone(),
            180 * DAY,
            shutdown.clone(),
        ));
        let entries = || writer.call(|store| Ok(count(store, "SELECT count(*) FROM entries")));
        // Two of its looks at the mark (a second apart): the unflagged old entry stays.
        tokio::time::sleep(REMATCH_WAIT * 2 + Duration::from_millis(200)).await;
        assert_eq!(entries().await.unwrap(), 1);
        writer
            .call(|store| store.set_meta(crate::store::RULES_FINGERPRINT, "rules"))
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while entries().await.unwrap() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "not pruned after the re-match"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        task.await.unwrap();
        drop(writer);
        thread.join().unwrap();
    }

    #[test]
    fn vacuum_switches_an_older_database_to_incremental_auto_vacuum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        // A database whose first table predates the auto_vacuum request.
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE older (x)")
            .unwrap();
        let mut store = Store::open(&path).unwrap();
        assert!(!store.auto_vacuum_incremental().unwrap());
        store.vacuum().unwrap();
        assert!(store.auto_vacuum_incremental().unwrap());
    }

    #[test]
    fn old_unflagged_entries_and_their_stories_go_and_flagged_ones_stay() {
        let (_dir, mut store, feed) = populated();
        let stories_before = count(&store, "SELECT count(*) FROM stories");
        let report = store.prune(180 * DAY, Utc::now(), false).unwrap();
        assert_eq!(report.entries, 1);
        assert_eq!(report.stories, 1);
        assert_eq!(report.kept_flagged, 1);
        assert_eq!(
            report.feeds,
            vec![PrunedFeed {
                feed_id: feed,
                feed: "Wire".into(),
                entries: 1
            }]
        );
        let mut keys: Vec<String> = store
            .conn
            .prepare("SELECT dedup_key FROM entries ORDER BY dedup_key")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        keys.sort();
        assert_eq!(keys, ["g:new", "g:old-flagged"]);
        assert_eq!(
            count(&store, "SELECT count(*) FROM stories"),
            stories_before - 1
        );
        // No story is left pointing at nothing, and no entry at a missing story.
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM stories s WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.story_id = s.id)"
            ),
            0
        );
        assert_eq!(
            count(&store, "SELECT count(*) FROM pragma_foreign_key_check"),
            0
        );
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM tombstones WHERE dedup_key = 'g:old'"
            ),
            1
        );
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn a_pruned_entry_served_again_is_not_stored_again() {
        let (_dir, mut store, feed) = populated();
        store.prune(180 * DAY, Utc::now(), false).unwrap();
        let applied = poll(
            &mut store,
            feed,
            vec![
                entry("g:old", Some("2020-01-01T00:00:00Z")),
                entry("g:new", Some(&Utc::now().to_rfc3339())),
                entry("g:newer", None),
            ],
            "b2",
        );
        assert_eq!(
            applied,
            Applied {
                new: 1,
                updated: 0,
                unchanged: 2,
                mentions: 0,
                moved_to: None
            }
        );
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM entries WHERE dedup_key = 'g:old'"
            ),
            0
        );
    }

    #[test]
    fn a_feed_pruned_down_to_nothing_does_not_store_its_old_entries_again() {
        let (_dir, mut store, feed) = setup();
        let old = || vec![entry("g:old", Some("2020-01-01T00:00:00Z"))];
        poll(&mut store, feed, old(), "b1");
        store.prune(180 * DAY, Utc::now(), false).unwrap();
        assert_eq!(count(&store, "SELECT count(*) FROM entries"), 0);
        // No entry left for the feed: only its tombstones tell this is not a first document.
        let applied = poll(&mut store, feed, old(), "b2");
        assert_eq!((applied.new, applied.unchanged), (0, 1));
        assert_eq!(count(&store, "SELECT count(*) FROM entries"), 0);
    }

    #[test]
    fn a_dry_run_counts_what_a_real_run_deletes_and_deletes_nothing() {
        let (_dir, mut store, _) = populated();
        let entries_before = count(&store, "SELECT count(*) FROM entries");
        let dry = store.prune(180 * DAY, Utc::now(), true).unwrap();
        assert_eq!(
            count(&store, "SELECT count(*) FROM entries"),
            entries_before
        );
        assert_eq!(count(&store, "SELECT count(*) FROM tombstones"), 0);
        let real = store.prune(180 * DAY, Utc::now(), false).unwrap();
        assert_eq!(
            (dry.entries, dry.stories, dry.kept_flagged, dry.feeds),
            (real.entries, real.stories, real.kept_flagged, real.feeds)
        );
        assert!(dry.dry_run && !real.dry_run);
    }

    #[test]
    fn a_story_keeps_its_row_while_another_feed_still_carries_it() {
        let (_dir, mut store, _) = populated();
        // Put the new entry into the old entry's story: the story must survive the prune.
        store
            .conn
            .execute_batch(
                "UPDATE entries SET story_id = (SELECT story_id FROM entries WHERE dedup_key = 'g:old')
                 WHERE dedup_key = 'g:new'",
            )
            .unwrap();
        let report = store.prune(180 * DAY, Utc::now(), false).unwrap();
        assert_eq!((report.entries, report.stories), (1, 0));
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM stories s JOIN entries e ON e.story_id = s.id WHERE e.dedup_key = 'g:new'"
            ),
            1
        );
    }

    #[test]
    fn many_batches_prune_everything_old_and_free_space() {
        let (_dir, mut store, feed) = setup();
        let entries: Vec<ParsedEntry> = (0..BATCH * 2 + 10)
            .map(|i| {
                let mut e = entry(&format!("g:{i}"), Some("2020-01-01T00:00:00Z"));
                e.content = Some("lorem ipsum dolor sit amet ".repeat(40));
                e
            })
            .collect();
        poll(&mut store, feed, entries, "big");
        let report = store.prune(180 * DAY, Utc::now(), false).unwrap();
        assert_eq!(report.entries, BATCH * 2 + 10);
        assert_eq!(count(&store, "SELECT count(*) FROM entries"), 0);
        assert_eq!(count(&store, "SELECT count(*) FROM stories"), 0);
        assert!(report.auto_vacuum);
        assert!(report.freed_bytes > 1_000_000, "{report:?}");
        assert_eq!(count(&store, "PRAGMA freelist_count"), 0);
    }

    /// `n` days before `now`.
    fn days_before(now: DateTime<Utc>, n: i64) -> DateTime<Utc> {
        now - chrono::Duration::days(n)
    }

    fn absent_since(store: &Store, key: &str) -> Option<String> {
        store
            .conn
            .query_row(
                "SELECT absent_since FROM tombstones WHERE dedup_key = ?1",
                [key],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// A feed served `g:old` (published 2020) and `g:current` 300 days before `now`, and a prune
    /// with a 30-day retention 250 days before `now` deleted `g:old`, leaving its tombstone.
    fn pruned_300_days_ago() -> (tempfile::TempDir, Store, i64, DateTime<Utc>) {
        let (dir, mut store, feed) = setup();
        let now = Utc::now();
        store_document_at(&mut store, feed, both(now), "b1", days_before(now, 300));
        let report = store.prune(30 * DAY, days_before(now, 250), false).unwrap();
        assert_eq!((report.entries, report.tombstones_forgotten), (1, 0));
        assert_eq!(absent_since(&store, "g:old"), None);
        (dir, store, feed, now)
    }

    fn both(now: DateTime<Utc>) -> Vec<ParsedEntry> {
        vec![entry("g:old", Some("2020-01-01T00:00:00Z")), current(now)]
    }

    fn current(now: DateTime<Utc>) -> ParsedEntry {
        entry("g:current", Some(&now.to_rfc3339()))
    }

    #[test]
    fn a_tombstone_is_forgotten_once_every_document_for_the_retention_period_lacked_it() {
        let (_dir, mut store, feed, now) = pruned_300_days_ago();
        // 200 days ago the publisher dropped the old item from its document.
        store_document_at(
            &mut store,
            feed,
            vec![current(now)],
            "b2",
            days_before(now, 200),
        );
        assert_eq!(
            absent_since(&store, "g:old"),
            Some(sql_time(days_before(now, 200)))
        );
        let dry = store.prune(180 * DAY, now, true).unwrap();
        assert_eq!(dry.tombstones_forgotten, 1);
        assert_eq!(count(&store, "SELECT count(*) FROM tombstones"), 1);
        let real = store.prune(180 * DAY, now, false).unwrap();
        assert_eq!((real.entries, real.tombstones_forgotten), (0, 1));
        assert_eq!(count(&store, "SELECT count(*) FROM tombstones"), 0);
        // The price of forgetting: should the publisher serve it again, it is new again.
        let applied = store_document(&mut store, feed, both(now), "b3");
        assert_eq!((applied.new, applied.unchanged), (1, 1));
    }

    #[test]
    fn one_short_document_forgets_nothing_once_a_full_one_carries_the_key_again() {
        let (_dir, mut store, feed, now) = pruned_300_days_ago();
        // A truncated document 200 days ago, then the full one again.
        store_document_at(
            &mut store,
            feed,
            vec![current(now)],
            "short",
            days_before(now, 200),
        );
        let applied = store_document_at(&mut store, feed, both(now), "full", days_before(now, 5));
        assert_eq!((applied.new, applied.unchanged), (0, 2));
        assert_eq!(absent_since(&store, "g:old"), None);
        let report = store.prune(180 * DAY, now, false).unwrap();
        assert_eq!(report.tombstones_forgotten, 0);
        assert_eq!(count(&store, "SELECT count(*) FROM tombstones"), 1);
    }

    #[test]
    fn a_feed_that_sent_no_new_document_keeps_its_tombstones() {
        let (_dir, mut store, feed, now) = pruned_300_days_ago();
        // 304s ever since: the document, which still carries the old item, was never re-read.
        let not_modified = FeedResult::NotModified {
            etag: None,
            last_modified: None,
        };
        store
            .apply(
                feed,
                &FetchState::at(days_before(now, 1), Some(304)),
                &not_modified,
            )
            .unwrap();
        assert_eq!(absent_since(&store, "g:old"), None);
        let report = store.prune(180 * DAY, now, false).unwrap();
        assert_eq!(report.tombstones_forgotten, 0);
        let applied = store_document(&mut store, feed, both(now), "b2");
        assert_eq!((applied.new, applied.unchanged), (0, 2));
    }

    #[test]
    fn pruning_an_entry_again_clears_its_old_tombstone_s_absence() {
        let (_dir, mut store, feed) = setup();
        let now = Utc::now();
        store_document(&mut store, feed, both(now), "b1");
        // A tombstone for the key from long ago, marked absent then; the entry has since taken
        // the key back over (as a stored entry adopts a publisher's changed guid).
        store
            .conn
            .execute(
                "INSERT INTO tombstones (feed_id, dedup_key, pruned_at, absent_since)
                 VALUES (?1, 'g:old', ?2, ?2)",
                params![feed, sql_time(days_before(now, 300))],
            )
            .unwrap();
        let report = store.prune(180 * DAY, now, false).unwrap();
        assert_eq!((report.entries, report.tombstones_forgotten), (1, 0));
        assert_eq!(absent_since(&store, "g:old"), None);
    }

    #[test]
    fn many_absent_tombstones_are_forgotten_and_the_ones_still_served_stay() {
        let (_dir, mut store, feed) = setup();
        let now = Utc::now();
        // 12,001 tombstones; every third one still served, the rest absent for 300 days.
        store
            .conn
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 12000)
                 INSERT INTO tombstones (feed_id, dedup_key, pruned_at, absent_since)
                 SELECT ?1, printf('g:%05d', i), ?2, CASE WHEN i % 3 = 0 THEN NULL ELSE ?2 END
                 FROM n",
                params![feed, sql_time(days_before(now, 300))],
            )
            .unwrap();
        let report = store.prune(180 * DAY, now, false).unwrap();
        const { assert!(8000 > TOMBSTONE_BATCH, "the test needs more than one batch") };
        assert_eq!(report.tombstones_forgotten, 8000);
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM tombstones WHERE CAST(substr(dedup_key, 3) AS INTEGER) % 3 = 0"
            ),
            4001
        );
        assert_eq!(count(&store, "SELECT count(*) FROM tombstones"), 4001);
    }

    #[test]
    fn tombstones_from_before_the_upgrade_count_as_still_served() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let now = Utc::now();
        {
            let conn = crate::store::testing::database_before(&path, "0009_tombstone_expiry");
            conn.execute(
                "INSERT INTO feeds (url) VALUES ('http://127.0.0.1/old.xml')",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO tombstones (feed_id, dedup_key, pruned_at) VALUES (1, 'g:old', ?1)",
                [sql_time(days_before(now, 300))],
            )
            .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        assert_eq!(absent_since(&store, "g:old"), None);
        let report = store.prune(180 * DAY, now, false).unwrap();
        assert_eq!(report.tombstones_forgotten, 0);
        // A document without the key starts the count.
        store_document_at(&mut store, 1, Vec::new(), "new", days_before(now, 200));
        let report = store.prune(180 * DAY, now, false).unwrap();
        assert_eq!(report.tombstones_forgotten, 1);
    }
}
