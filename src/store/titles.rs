//! Stories first seen recently, by title key, held in memory: the lookup that groups copies of
//! a story by title (see `flags::story_for`).
//!
//! Titles group entries only within [`TITLE_WINDOW`], so only recent stories need finding by
//! title. An SQL index on `stories.title_key` (dropped by migration 0013) was the writer's
//! largest cost at scale: title keys arrive in no order, so every commit rewrote most of its leaf
//! pages. With 500,000 stories, a cold poll of 10,000 feeds wrote 24 MB of that index per commit
//! of 64 feeds, and read most of it back through a page cache too small to hold it; without it
//! the poll took 10.2 s instead of 16.3 s and wrote 3.0 GB instead of 9.1 GB.
//!
//! The map holds a hash of each title key and the story's id, two windows' worth: stories go into
//! the current generation, which becomes the previous one after a window, when the one before is
//! dropped. It is a hint, checked against the story's row on every hit, so a story since deleted
//! (retention), rolled back, or out of the window is simply not found. What it must not do is miss
//! a recent story, so it is filled from the database at its first use, and again whenever
//! another connection has committed since this one last looked (`PRAGMA data_version`): a cron
//! `poll` beside the daemon, or an edit in `sqlite3`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::sql_time;

/// Same-title entries are one story only when seen this close together: wire copy spreads
/// within hours, while a recurring title ("Morning briefing") comes back days later.
pub(super) const TITLE_WINDOW: chrono::Duration = chrono::Duration::hours(48);

/// Recent stories by the hash of their title key.
#[derive(Debug, Default)]
pub(super) struct RecentTitles {
    hasher: RandomState,
    current: HashMap<u64, i64>,
    previous: HashMap<u64, i64>,
    /// When `current` started taking stories; `None` until the map is filled from the database.
    current_since: Option<DateTime<Utc>>,
    /// The connection's `PRAGMA data_version` when the map was last brought up to date.
    data_version: i64,
}

impl RecentTitles {
    /// Brings the map up to date for a write at `now`, inside the writer's transaction (so no
    /// other connection can commit until it ends). Cheap unless another connection has written.
    pub(super) fn catch_up(
        &mut self,
        conn: &Connection,
        now: DateTime<Utc>,
    ) -> rusqlite::Result<()> {
        let data_version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        match self.current_since {
            Some(since) if data_version == self.data_version => {
                if now - since >= TITLE_WINDOW {
                    self.previous = std::mem::take(&mut self.current);
                    self.current_since = Some(now);
                }
            }
            _ => {
                self.fill(conn, now)?;
                self.data_version = data_version;
            }
        }
        Ok(())
    }

    /// Refills the map with the stories first seen within the window before `now`. Story ids
    /// grow with time, so the newest are read first, and the scan stops a whole window past the
    /// window's start, which leaves room for clocks that stepped back.
    fn fill(&mut self, conn: &Connection, now: DateTime<Utc>) -> rusqlite::Result<()> {
        self.current.clear();
        self.previous.clear();
        self.current_since = Some(now);
        let window_start = sql_time(now - TITLE_WINDOW);
        let stop_before = sql_time(now - TITLE_WINDOW - TITLE_WINDOW);
        let mut stmt =
            conn.prepare("SELECT id, title_key, first_seen_at FROM stories ORDER BY id DESC")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let first_seen_at: String = row.get(2)?;
            if first_seen_at < stop_before {
                break;
            }
            let title_key: Option<String> = row.get(1)?;
            if let Some(key) = title_key.filter(|_| first_seen_at >= window_start) {
                // Newest first, so the oldest story under a key is the one kept.
                self.current.insert(self.hasher.hash_one(key), row.get(0)?);
            }
        }
        Ok(())
    }

    /// The story under `key` first seen since `window_start`, if the map knows one and its row
    /// agrees.
    pub(super) fn story(
        &self,
        conn: &Connection,
        key: &str,
        window_start: &str,
    ) -> rusqlite::Result<Option<i64>> {
        let hash = self.hasher.hash_one(key);
        for generation in [&self.current, &self.previous] {
            if let Some(&id) = generation.get(&hash)
                && is_recent_story(conn, id, key, window_start)?
            {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Records a story just created under `key`.
    pub(super) fn record(&mut self, key: &str, story: i64) {
        self.current.insert(self.hasher.hash_one(key), story);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

fn is_recent_story(
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

    fn stories() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE stories (id INTEGER PRIMARY KEY, canonical_link TEXT, title_key TEXT,
                                   first_seen_at TEXT NOT NULL);",
        )
        .unwrap();
        conn
    }

    fn insert(conn: &Connection, key: &str, at: DateTime<Utc>) -> i64 {
        conn.execute(
            "INSERT INTO stories (title_key, first_seen_at) VALUES (?1, ?2)",
            params![key, sql_time(at)],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    fn found(
        titles: &RecentTitles,
        conn: &Connection,
        key: &str,
        now: DateTime<Utc>,
    ) -> Option<i64> {
        titles
            .story(conn, key, &sql_time(now - TITLE_WINDOW))
            .unwrap()
    }

    #[test]
    fn the_first_use_finds_the_stories_of_the_window_and_not_older_ones() {
        let conn = stories();
        let now = Utc::now();
        insert(&conn, "ancient headline", now - TITLE_WINDOW * 3);
        insert(&conn, "old headline", now - chrono::Duration::hours(60));
        let first = insert(&conn, "wire headline", now - chrono::Duration::hours(30));
        insert(&conn, "wire headline", now - chrono::Duration::hours(2)); // a second, by hand
        let mut titles = RecentTitles::default();
        titles.catch_up(&conn, now).unwrap();
        assert_eq!(found(&titles, &conn, "wire headline", now), Some(first));
        assert_eq!(found(&titles, &conn, "old headline", now), None);
        assert_eq!(titles.len(), 1, "only the window's stories are held");
    }

    #[test]
    fn a_hit_is_checked_against_the_row() {
        let conn = stories();
        let now = Utc::now();
        let mut titles = RecentTitles::default();
        titles.catch_up(&conn, now).unwrap();
        // Recorded, then rolled back or deleted: the id is gone, or reused for another title.
        titles.record("rolled back headline", 1);
        assert_eq!(found(&titles, &conn, "rolled back headline", now), None);
        let other = insert(&conn, "another headline", now);
        assert_eq!(other, 1);
        assert_eq!(found(&titles, &conn, "rolled back headline", now), None);
        titles.record("another headline", other);
        assert_eq!(found(&titles, &conn, "another headline", now), Some(other));
        // And a story past the window is not found, though the map still holds it.
        let later = now + TITLE_WINDOW + chrono::Duration::hours(1);
        assert_eq!(found(&titles, &conn, "another headline", later), None);
    }

    #[test]
    fn stories_written_by_another_connection_are_found_at_the_next_catch_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stories.db");
        let ours = Connection::open(&path).unwrap();
        ours.execute_batch(
            "CREATE TABLE stories (id INTEGER PRIMARY KEY, canonical_link TEXT, title_key TEXT,
                                   first_seen_at TEXT NOT NULL);",
        )
        .unwrap();
        let now = Utc::now();
        let mut titles = RecentTitles::default();
        titles.catch_up(&ours, now).unwrap();
        let theirs = Connection::open(&path).unwrap();
        let story = insert(&theirs, "cron poll headline", now);
        assert_eq!(found(&titles, &ours, "cron poll headline", now), None);
        titles.catch_up(&ours, now).unwrap();
        assert_eq!(
            found(&titles, &ours, "cron poll headline", now),
            Some(story)
        );
        // Our own writes do not make it read the stories again.
        insert(&ours, "our own headline", now);
        titles.catch_up(&ours, now).unwrap();
        assert_eq!(found(&titles, &ours, "our own headline", now), None);
    }

    #[test]
    fn a_generation_is_dropped_two_windows_after_it_started() {
        let conn = stories();
        let start = Utc::now();
        let mut titles = RecentTitles::default();
        titles.catch_up(&conn, start).unwrap();
        let story = insert(&conn, "monday headline", start);
        titles.record("monday headline", story);
        let next_day = start + chrono::Duration::hours(24);
        titles.catch_up(&conn, next_day).unwrap();
        assert_eq!(
            found(&titles, &conn, "monday headline", next_day),
            Some(story)
        );
        // Rotated into the previous generation: still found while in the window.
        let rotated = start + TITLE_WINDOW;
        titles.catch_up(&conn, rotated).unwrap();
        assert_eq!(titles.len(), 1);
        assert_eq!(
            titles
                .story(&conn, "monday headline", &sql_time(start))
                .unwrap(),
            Some(story)
        );
        titles.catch_up(&conn, rotated + TITLE_WINDOW).unwrap();
        assert_eq!(titles.len(), 0);
    }
}
