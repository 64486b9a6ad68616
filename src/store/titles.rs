//! Finding the story a new entry joins by its title: the stories first seen within
//! [`TITLE_WINDOW`], held in memory by title, and the titles that entries joining by link added
//! (`story_titles`).
//!
//! An SQL index on `stories.title_key` (dropped by migration 0013) was the writer's largest cost
//! at scale: title keys arrive in no order, so every commit rewrote most of its leaf pages. A cold
//! poll of 10,000 feeds (500,000 stories) wrote 24 MB of WAL for it per commit of 64 feeds and
//! read it back through a page cache too small to hold it. Without it that poll took 9.9 to
//! 11.4 s instead of 16.3 s, and wrote 3.5 GB instead of 9.1 GB (`cargo bench --bench poll`
//! with `FEEDHOUND_BENCH_SCALE_TO=10000`, medians of 3 runs, three series; see
//! `bench/RESULTS.md`).
//!
//! The map holds, per title key of a recent story, a hash of the key and the id of the newest
//! story under it (about 20 to 40 bytes a story, for at most two windows and a margin of
//! stories). It is filled from `stories` (through `stories_by_first_seen`, where new stories land
//! at or near the end) when a result first needs it, and filled again:
//! - when another connection has committed since this one last looked (`PRAGMA data_version`):
//!   a cron `poll` beside the daemon, an edit in `sqlite3`;
//! - a window after the last fill, which drops the stories that have left it;
//! - when a result's window starts before what the map holds. Results are written in the order
//!   they finish, not in the order of their fetch times, so a later one may look further back;
//!   each fill reaches [`FILL_MARGIN`] further back than its own result's window, so this is rare;
//! - after a result fails or a commit does: the rollback takes back the stories it recorded, and
//!   a recorded story may have replaced an older one under its title that a result fetched
//!   earlier still needs.
//!
//! Every hit is checked against the story's row, so a story since deleted (retention) or out of
//! the result's window is not found.
//!
//! One difference from the SQL it replaces, which took the oldest story: when two stories under
//! one title are both in a result's window, this finds the newer. That takes two processes
//! racing, or a title back just after its window while fetch times arrive out of order.
//!
//! `story_titles` keeps its SQL index, in title order too: only an entry that joins a story by
//! link under a title the story lacks adds a row, a small share of entries, so few of its pages
//! change per commit.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::sql_time;

/// Same-title entries are one story only when seen this close together: wire copy spreads
/// within hours, while a recurring title ("Morning briefing") comes back days later.
pub(super) const TITLE_WINDOW: chrono::Duration = chrono::Duration::hours(48);

/// How much further back than its result's window a fill reaches: results whose fetches
/// started up to this long before the fill's do not need another.
const FILL_MARGIN: chrono::Duration = chrono::Duration::hours(1);

/// The stories a fill reads, oldest first, so that the newest story under a title is the one
/// kept.
const FILL: &str = "SELECT id, title_key FROM stories
    WHERE first_seen_at >= ?1 AND title_key IS NOT NULL ORDER BY first_seen_at, id";

/// Recent stories by the hash of their title key.
#[derive(Debug, Default)]
pub(super) struct RecentTitles {
    hasher: RandomState,
    stories: HashMap<u64, i64>,
    /// The time of the result that last filled the map (`None` until the first fill, and after
    /// [`RecentTitles::forget`]): every story first seen since [`FILL_MARGIN`] before its
    /// window is in `stories`.
    filled_at: Option<DateTime<Utc>>,
    /// The connection's `PRAGMA data_version` at the last fill.
    data_version: i64,
}

impl RecentTitles {
    /// The lookups for a result fetched at `now`, to use inside the writer's transaction: from
    /// BEGIN IMMEDIATE to the commit no other connection can write, so the map, brought up to
    /// date at the first lookup, stays so for the whole result. A result without new entries
    /// (most of them) never looks up, and costs no fill.
    pub(super) fn for_result(&mut self, now: DateTime<Utc>) -> TitleLookup<'_> {
        TitleLookup {
            titles: self,
            now,
            window_start: sql_time(now - TITLE_WINDOW),
            caught_up: false,
        }
    }

    /// Brings the map up to date for a result fetched at `now`: its window must start within
    /// what the last fill read, and that fill be less than a window old.
    fn catch_up(&mut self, conn: &Connection, now: DateTime<Utc>) -> rusqlite::Result<()> {
        let data_version = super::data_version(conn)?;
        let up_to_date = data_version == self.data_version
            && self
                .filled_at
                .is_some_and(|at| now >= at - FILL_MARGIN && now - at < TITLE_WINDOW);
        if !up_to_date {
            self.fill(conn, now, data_version)?;
        }
        Ok(())
    }

    fn fill(
        &mut self,
        conn: &Connection,
        now: DateTime<Utc>,
        data_version: i64,
    ) -> rusqlite::Result<()> {
        let mut stories = HashMap::new();
        let mut stmt = conn.prepare_cached(FILL)?;
        let mut rows = stmt.query([sql_time(now - TITLE_WINDOW - FILL_MARGIN)])?;
        while let Some(row) = rows.next()? {
            let key: String = row.get(1)?;
            stories.insert(self.hasher.hash_one(key), row.get(0)?);
        }
        self.stories = stories;
        self.filled_at = Some(now);
        self.data_version = data_version;
        Ok(())
    }

    /// Drops what the map holds, so the next result fills it again: for after a rollback, which
    /// takes back stories the map has recorded, and with them what they replaced in it.
    pub(super) fn forget(&mut self) {
        self.filled_at = None;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.stories.len()
    }
}

/// The title lookups for one result (see [`RecentTitles::for_result`]).
pub(super) struct TitleLookup<'a> {
    titles: &'a mut RecentTitles,
    now: DateTime<Utc>,
    window_start: String,
    caught_up: bool,
}

impl TitleLookup<'_> {
    /// The story first seen under title key `key` within the window, else the first story that
    /// an entry joined by link under that title within it.
    pub(super) fn story(&mut self, conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
        if !self.caught_up {
            self.titles.catch_up(conn, self.now)?;
            self.caught_up = true;
        }
        let recent = self.titles.stories.get(&self.titles.hasher.hash_one(key));
        if let Some(&id) = recent
            && is_story_in_window(conn, id, key, &self.window_start)?
        {
            return Ok(Some(id));
        }
        conn.prepare_cached(
            "SELECT min(story_id) FROM story_titles WHERE title_key = ?1 AND seen_at >= ?2",
        )?
        .query_row(params![key, self.window_start], |r| r.get(0))
    }

    /// Records a story just created under title key `key`. Before the first lookup there is
    /// nothing to do: the map is filled at that lookup, from `stories`, which hold it by then.
    pub(super) fn record(&mut self, key: &str, story: i64) {
        if self.caught_up {
            let hash = self.titles.hasher.hash_one(key);
            self.titles.stories.insert(hash, story);
        }
    }
}

fn is_story_in_window(
    conn: &Connection,
    id: i64,
    key: &str,
    window_start: &str,
) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM stories WHERE id = ?1 AND title_key = ?2 AND first_seen_at >= ?3",
        )?
        .query_row(params![id, key, window_start], |_| Ok(()))
        .optional()?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    const SCHEMA: &str = "PRAGMA journal_mode = WAL;
        CREATE TABLE stories (id INTEGER PRIMARY KEY, canonical_link TEXT, title_key TEXT,
                              first_seen_at TEXT NOT NULL);
        CREATE TABLE story_titles (title_key TEXT, story_id INTEGER, seen_at TEXT);";

    fn database() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("stories.db")).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        (dir, conn)
    }

    fn insert(conn: &Connection, key: &str, at: DateTime<Utc>) -> i64 {
        conn.execute(
            "INSERT INTO stories (title_key, first_seen_at) VALUES (?1, ?2)",
            params![key, sql_time(at)],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    /// What a result fetched at `now` finds under `key`, caught up as the writer does.
    fn found(
        titles: &mut RecentTitles,
        conn: &Connection,
        key: &str,
        now: DateTime<Utc>,
    ) -> Option<i64> {
        titles.for_result(now).story(conn, key).unwrap()
    }

    #[test]
    fn a_fill_reads_through_the_first_seen_index_in_its_order() {
        let (_dir, store, _) = crate::store::testing::store_with_feeds(&[]);
        let plan: Vec<String> = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {FILL}"))
            .unwrap()
            .query_map(["2026-01-01 00:00:00"], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.contains("INDEX stories_by_first_seen (first_seen_at>?)"))
                && !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "{plan:?}"
        );
    }

    #[test]
    fn a_fill_takes_the_stories_of_the_window_and_its_margin_only() {
        let (_dir, conn) = database();
        let now = Utc::now();
        insert(&conn, "old headline", now - Duration::hours(60));
        let first = insert(&conn, "wire headline", now - Duration::hours(30));
        let mut titles = RecentTitles::default();
        assert_eq!(found(&mut titles, &conn, "wire headline", now), Some(first));
        assert_eq!(found(&mut titles, &conn, "old headline", now), None);
        assert_eq!(titles.len(), 1, "only the window's stories are held");
    }

    #[test]
    fn a_title_that_came_back_after_its_window_finds_the_newer_story() {
        let (_dir, conn) = database();
        let now = Utc::now();
        // Past the window of a result fetched at `now`, inside that of one fetched 45 minutes
        // earlier (the newer story is in both).
        let older = insert(
            &conn,
            "morning briefing",
            now - TITLE_WINDOW - Duration::minutes(30),
        );
        let newer = insert(&conn, "morning briefing", now - Duration::hours(1));
        let mut titles = RecentTitles::default();
        assert_eq!(
            found(&mut titles, &conn, "morning briefing", now),
            Some(newer)
        );
        let earlier = now - Duration::minutes(45);
        assert_eq!(
            found(&mut titles, &conn, "morning briefing", earlier),
            Some(newer),
            "not {older}"
        );
    }

    #[test]
    fn a_result_fetched_within_the_margin_before_the_fill_finds_a_story_from_the_margin() {
        let (_dir, conn) = database();
        let now = Utc::now();
        let story = insert(
            &conn,
            "wire headline",
            now - TITLE_WINDOW - Duration::minutes(30),
        );
        let mut titles = RecentTitles::default();
        assert_eq!(found(&mut titles, &conn, "wire headline", now), None);
        let earlier = now - Duration::minutes(45);
        assert_eq!(
            found(&mut titles, &conn, "wire headline", earlier),
            Some(story)
        );
    }

    #[test]
    fn a_result_that_looks_nothing_up_fills_nothing() {
        let (_dir, conn) = database();
        let now = Utc::now();
        let story = insert(&conn, "wire headline", now);
        let mut titles = RecentTitles::default();
        titles.for_result(now).record("wire headline", story);
        assert_eq!(titles.len(), 0);
        assert!(titles.filled_at.is_none());
    }

    #[test]
    fn a_hit_is_checked_against_the_row() {
        let (_dir, conn) = database();
        let now = Utc::now();
        let mut titles = RecentTitles::default();
        let mut lookup = titles.for_result(now);
        assert_eq!(lookup.story(&conn, "rolled back headline").unwrap(), None);
        // Recorded, then rolled back or deleted: the id is gone, or reused for another title.
        lookup.record("rolled back headline", 1);
        assert_eq!(lookup.story(&conn, "rolled back headline").unwrap(), None);
        let other = insert(&conn, "another headline", now);
        assert_eq!(other, 1);
        assert_eq!(lookup.story(&conn, "rolled back headline").unwrap(), None);
        lookup.record("another headline", other);
        assert_eq!(
            lookup.story(&conn, "another headline").unwrap(),
            Some(other)
        );
        // And a story past a later result's window is not found, though the map holds it.
        let later = now + TITLE_WINDOW + Duration::minutes(1);
        let mut lookup = titles.for_result(later);
        assert_eq!(lookup.story(&conn, "another headline").unwrap(), None);
        assert!(titles.stories.values().any(|&id| id == other));
    }

    #[test]
    fn stories_another_connection_commits_are_found_at_the_next_result() {
        let (dir, mut ours) = database();
        let now = Utc::now();
        let mut titles = RecentTitles::default();
        let write = |conn: &mut Connection, titles: &mut RecentTitles, key: &str| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .unwrap();
            let story = titles.for_result(now).story(&tx, key).unwrap();
            tx.commit().unwrap();
            story
        };
        assert_eq!(write(&mut ours, &mut titles, "cron poll headline"), None);
        let theirs = Connection::open(dir.path().join("stories.db")).unwrap();
        let story = insert(&theirs, "cron poll headline", now);
        assert_eq!(
            write(&mut ours, &mut titles, "cron poll headline"),
            Some(story)
        );
    }

    #[test]
    fn a_result_fetched_before_the_fill_still_sees_its_whole_window() {
        let (_dir, conn) = database();
        let now = Utc::now();
        let fetched_earlier = now - FILL_MARGIN - Duration::hours(2);
        // In the earlier result's window, before the window and margin of the fill at `now`.
        let story = insert(
            &conn,
            "wire headline",
            fetched_earlier - TITLE_WINDOW + Duration::minutes(10),
        );
        let mut titles = RecentTitles::default();
        assert_eq!(found(&mut titles, &conn, "wire headline", now), None);
        assert_eq!(
            found(&mut titles, &conn, "wire headline", fetched_earlier),
            Some(story)
        );
    }

    #[test]
    fn a_result_fetched_shortly_before_the_fill_needs_no_other() {
        let (_dir, conn) = database();
        let now = Utc::now();
        let mut titles = RecentTitles::default();
        titles.catch_up(&conn, now).unwrap();
        // Written by this connection without going through the map: only a fill would read it.
        insert(&conn, "unrecorded headline", now);
        titles
            .catch_up(&conn, now - FILL_MARGIN + Duration::minutes(1))
            .unwrap();
        assert_eq!(titles.len(), 0);
    }

    #[test]
    fn stories_that_left_the_window_are_dropped_a_window_after_the_fill() {
        let (_dir, conn) = database();
        let start = Utc::now();
        let mut titles = RecentTitles::default();
        let story = insert(&conn, "monday headline", start);
        let mut lookup = titles.for_result(start);
        assert_eq!(lookup.story(&conn, "monday headline").unwrap(), Some(story));
        titles
            .catch_up(&conn, start + TITLE_WINDOW - Duration::minutes(1))
            .unwrap();
        assert_eq!(titles.len(), 1);
        titles
            .catch_up(
                &conn,
                start + TITLE_WINDOW + FILL_MARGIN + Duration::minutes(1),
            )
            .unwrap();
        assert_eq!(titles.len(), 0);
    }
}
