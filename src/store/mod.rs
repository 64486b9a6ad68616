//! The SQLite database: the only module that speaks SQL.
//!
//! [`Store::open`] applies the numbered files of `migrations/` in order, in one transaction,
//! tracked by `PRAGMA user_version` (rusqlite_migration and refinery lag behind rusqlite 0.43,
//! and a dozen lines here do the same job). Tables are split by concern: `feeds` (configured
//! feeds and their fetch state) and `entries` (stories and their deduplication).
//! [`writer::StoreWriter`] runs a `Store` on its own thread so async code never blocks on SQLite.

mod articles;
mod backup;
mod entries;
mod feeds;
mod flags;
mod health;
mod outbox;
pub mod retention;
mod search;
#[cfg(test)]
pub(crate) mod testing;
mod titles;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use rusqlite::Connection;

pub use articles::{
    ArticleOutcome, ArticleRecorded, ArticleReport, DueArticle, GivenUpPage, PageTroubles,
};
pub use backup::{BackupReport, RestoreReport, backup, backup_keeping, restore};
pub use entries::{Applied, FeedResult, FetchState, RecentEntry};
pub use feeds::{DueFeed, FeedRef, FeedSet, FeedStatus, SyncReport};
pub use flags::{
    AlertRoute, CompanyActivity, FlaggedStory, REMATCH_PENDING, RULES_FINGERPRINT, Rematched,
    Source, Span, StoredText,
};
pub use health::ServiceGauges;
pub use outbox::{
    AlertCompany, AlertPayload, AlertStory, DigestWindow, OutboxStatus, PendingAlert,
    RefusedRecipient, Retried, TargetRest,
};
pub use retention::{PruneReport, PrunedFeed, VacuumReport};
pub use search::{SearchError, SearchHit, SearchQuery};

/// Schema files, applied in order; `user_version` counts how many have been applied.
/// Never edit one that has shipped: add the next number instead.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_feeds_and_entries",
        include_str!("../../migrations/0001_feeds_and_entries.sql"),
    ),
    (
        "0002_companies_mentions_stories",
        include_str!("../../migrations/0002_companies_mentions_stories.sql"),
    ),
    (
        "0003_polite_scheduling",
        include_str!("../../migrations/0003_polite_scheduling.sql"),
    ),
    (
        "0004_search_and_retention",
        include_str!("../../migrations/0004_search_and_retention.sql"),
    ),
    (
        "0005_fts_merge",
        include_str!("../../migrations/0005_fts_merge.sql"),
    ),
    (
        "0006_search_queue",
        include_str!("../../migrations/0006_search_queue.sql"),
    ),
    (
        "0007_story_companies",
        include_str!("../../migrations/0007_story_companies.sql"),
    ),
    (
        "0008_search_mark",
        include_str!("../../migrations/0008_search_mark.sql"),
    ),
    (
        "0009_tombstone_expiry",
        include_str!("../../migrations/0009_tombstone_expiry.sql"),
    ),
    (
        "0010_story_lookups",
        include_str!("../../migrations/0010_story_lookups.sql"),
    ),
    (
        "0011_alert_target_rests",
        include_str!("../../migrations/0011_alert_target_rests.sql"),
    ),
    (
        "0012_drop_published_index",
        include_str!("../../migrations/0012_drop_published_index.sql"),
    ),
    (
        "0013_titles_in_memory",
        include_str!("../../migrations/0013_titles_in_memory.sql"),
    ),
    (
        "0014_stories_by_first_seen",
        include_str!("../../migrations/0014_stories_by_first_seen.sql"),
    ),
    (
        "0015_edit_alerts",
        include_str!("../../migrations/0015_edit_alerts.sql"),
    ),
    (
        "0016_withdrawn_alerts",
        include_str!("../../migrations/0016_withdrawn_alerts.sql"),
    ),
    (
        "0017_articles",
        include_str!("../../migrations/0017_articles.sql"),
    ),
    (
        "0018_given_up_articles",
        include_str!("../../migrations/0018_given_up_articles.sql"),
    ),
    (
        "0019_story_entries_by_feed",
        include_str!("../../migrations/0019_story_entries_by_feed.sql"),
    ),
    (
        "0020_search_article_text",
        include_str!("../../migrations/0020_search_article_text.sql"),
    ),
    (
        "0021_outbox_last_failed_at",
        include_str!("../../migrations/0021_outbox_last_failed_at.sql"),
    ),
    (
        "0022_dated_story_and_age_indexes",
        include_str!("../../migrations/0022_dated_story_and_age_indexes.sql"),
    ),
    (
        "0023_outbox_not_delivered_to",
        include_str!("../../migrations/0023_outbox_not_delivered_to.sql"),
    ),
    (
        "0024_alert_target_deliveries",
        include_str!("../../migrations/0024_alert_target_deliveries.sql"),
    ),
];

/// How long a write waits for another process's lock before giving up (a user running a long
/// statement in `sqlite3`, a backup), unless `[storage] busy_timeout` says otherwise. Long
/// enough to ride out interactive use.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// WAL written between automatic checkpoints (SQLite counts them in pages). The last one runs
/// when the database is closed, at the end of a one-shot poll and after everything else: 32 MiB
/// rather than 64 halves that wait, and the ones before it no longer hold up the poll (see the
/// writer's budget of held text). Harness corpus, 6 runs each: 1.155 s against 1.200 s; 10,000
/// feeds in `bench poll`: 22.8 CPU s against 23.6 (2 runs each).
const WAL_CHECKPOINT_BYTES: i64 = 32 << 20;

/// Creates the folder the database at `path` goes in, if it is missing.
pub fn create_database_folder(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| {
            format!(
                "cannot create the folder for the database {}",
                parent.display()
            )
        })?;
    }
    Ok(())
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// As configured; the health probe shortens it for one statement and puts it back.
    busy_timeout: Duration,
    flagging: flags::Flagging,
    titles: titles::RecentTitles,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        Store::open_with(path, BUSY_TIMEOUT)
    }

    /// [`Store::open`], waiting up to `busy_timeout` for locks other processes hold.
    pub fn open_with(path: &Path, busy_timeout: Duration) -> anyhow::Result<Store> {
        create_database_folder(path)?;
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            busy_timeout,
            flagging: flags::Flagging::default(),
            titles: titles::RecentTitles::default(),
        };
        store
            .configure(busy_timeout)
            .and_then(|()| store.migrate())
            .map_err(|err| {
                storage_error(
                    err,
                    format!("cannot prepare the database {}", path.display()),
                )
            })?;
        Ok(store)
    }

    /// A read-only connection to the existing database at `path`, for readers beside the
    /// daemon (`/mentions.atom`): it creates, migrates and writes nothing, not even the pragmas
    /// [`Store::open`] sets, so it never waits for the writer's lock; `wait` bounds any other
    /// wait. The database must be at this feedhound's schema.
    pub fn open_reader(path: &Path, wait: Duration) -> anyhow::Result<Store> {
        use rusqlite::OpenFlags;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open the database {} to read", path.display()))?;
        conn.busy_timeout(wait)?;
        conn.set_prepared_statement_cache_capacity(64);
        flags::add_local_date(&conn)?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
            busy_timeout: wait,
            flagging: flags::Flagging::default(),
            titles: titles::RecentTitles::default(),
        };
        let version = store.schema_version()?;
        anyhow::ensure!(
            version == MIGRATIONS.len(),
            "the database {} is at schema version {version}, this feedhound's is {}",
            path.display(),
            MIGRATIONS.len()
        );
        Ok(store)
    }

    /// Interrupts what this connection is running, from another thread (a reader past its
    /// deadline).
    pub fn interrupt_handle(&self) -> rusqlite::InterruptHandle {
        self.conn.get_interrupt_handle()
    }

    /// Runs `read` in one read transaction, so that its statements see one state of the
    /// database however the writer changes it meanwhile.
    pub fn in_one_snapshot<T>(
        &self,
        read: impl FnOnce(&Store) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let snapshot = self.conn.unchecked_transaction()?;
        let result = read(self)?;
        snapshot.commit()?;
        Ok(result)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` waiting at most `wait` for another connection's lock, instead of the
    /// configured busy timeout, which is put back afterwards: for work that has something better
    /// to do than wait (a health check, a search that can answer from the index as it is).
    fn waiting_at_most<T>(
        &mut self,
        wait: Duration,
        work: impl FnOnce(&mut Store) -> T,
    ) -> rusqlite::Result<T> {
        self.conn.busy_timeout(wait)?;
        let done = work(self);
        self.conn.busy_timeout(self.busy_timeout)?;
        Ok(done)
    }

    fn configure(&self, busy_timeout: Duration) -> anyhow::Result<()> {
        self.conn.busy_timeout(busy_timeout)?;
        // Both only take effect on a new database (before its first page is written), and on an
        // existing one `auto_vacuum` would still write its header: every report run beside the
        // daemon would wait for the daemon's write lock and look to it like another writer.
        let page_count: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        if page_count == 0 {
            // At SQLite's default of 4 KiB, most pages of `entries` hold one row of about
            // 2.3 KB and a third of the file is empty space; at 16 KiB a page holds about seven.
            // An older database keeps its size, even through `prune --vacuum`, since VACUUM
            // cannot change it in WAL mode.
            self.conn.execute_batch("PRAGMA page_size = 16384;")?;
            // Lets retention hand freed pages back to the filesystem; an older database takes
            // it at its next VACUUM (see `retention`).
            self.conn
                .execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
        }
        // WAL lets readers (sqlite3, Datasette) work while we write; NORMAL sync is durable
        // across process crashes in WAL mode and loses at most the last commits on power loss.
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(journal_mode = %mode, "could not switch the database to WAL mode");
        }
        // Statement and savepoint journals in memory, not temp files; checkpoints every 32 MiB
        // of WAL rather than every 1,000 pages, so a cold poll of thousands of feeds is not
        // paced by checkpoint fsyncs (the WAL file is trimmed back afterwards); a 16 MiB page
        // cache rather than 2 MiB, so a batch of new entries is not spilled to the WAL and read
        // back before its commit (a cold poll of 50,000 entries: about 8% faster).
        self.conn.execute_batch(
            "PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -16384;
             PRAGMA journal_size_limit = 67108864;",
        )?;
        let page_size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        self.conn
            .pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_BYTES / page_size)?;
        // Keep each statement's plan: with STAT4 in the bundled SQLite, parameters would
        // otherwise trigger a re-plan of the hot lookups on every call.
        self.conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        self.conn.set_prepared_statement_cache_capacity(64);
        flags::add_local_date(&self.conn)?;
        Ok(())
    }

    fn migrate(&mut self) -> anyhow::Result<()> {
        // Up to date (the usual case): nothing to lock, nothing to write.
        if self.schema_version()? == MIGRATIONS.len() {
            return Ok(());
        }
        let tx = write_transaction(&mut self.conn)?;
        // Read again under the lock: another process may have migrated meanwhile.
        let applied: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let applied = usize::try_from(applied).unwrap_or(usize::MAX);
        if applied > MIGRATIONS.len() {
            anyhow::bail!(
                "the database was written by a newer feedhound (schema version {applied}, this one knows {}); upgrade feedhound",
                MIGRATIONS.len()
            );
        }
        for (name, sql) in &MIGRATIONS[applied..] {
            tx.execute_batch(sql)
                .with_context(|| format!("migration {name} failed"))?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
        tx.commit()?;
        Ok(())
    }

    fn schema_version(&self) -> anyhow::Result<usize> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        Ok(usize::try_from(version).unwrap_or(usize::MAX))
    }

    /// Result of `PRAGMA integrity_check`: "ok" for a healthy database.
    pub fn integrity_check(&self) -> anyhow::Result<String> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    /// `PRAGMA data_version`: two readings on this connection differ when another connection
    /// (another feedhound process, a user's `sqlite3`) committed in between; this connection's
    /// own commits leave it as it is. Reading it changes nothing, so several readers can each
    /// compare it with the value they last saw.
    pub fn data_version(&self) -> anyhow::Result<i64> {
        data_version(&self.conn).context("cannot read the database's data_version")
    }
}

/// See [`Store::data_version`].
pub(super) fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))
}

/// Begins a transaction that takes the write lock at once. A deferred transaction that reads
/// first and writes later cannot wait for a lock held by another process (SQLite skips the busy
/// handler on that upgrade, to avoid deadlock) and fails at once with "database is locked";
/// taking the lock up front lets `busy_timeout` ride out a user's `sqlite3` session.
pub(crate) fn write_transaction(
    conn: &mut Connection,
) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

/// `err` under `failed` (what could not be done, naming the database), with what to check when
/// it is a storage failure.
pub fn storage_error(err: anyhow::Error, failed: String) -> anyhow::Error {
    let hint = storage_hint(&err)
        .map(|h| format!(" ({h})"))
        .unwrap_or_default();
    err.context(format!("{failed}{hint}"))
}

/// A plain-words reading of storage failures SQLite reports tersely ("disk I/O error",
/// "unable to open database file"), to add to the error naming the database.
pub fn storage_hint(err: &anyhow::Error) -> Option<&'static str> {
    use rusqlite::ErrorCode;
    let code = err
        .chain()
        .find_map(|cause| match cause.downcast_ref::<rusqlite::Error>() {
            Some(rusqlite::Error::SqliteFailure(failure, _)) => Some(failure.code),
            _ => None,
        })?;
    match code {
        ErrorCode::DiskFull | ErrorCode::SystemIoFailure => Some(
            "the disk holding the database may be full or failing; feedhound retries once there is space",
        ),
        ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied => Some(
            "the database or its folder is not writable (read-only file system or permissions?)",
        ),
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
            Some("another process held the database lock longer than [storage] busy_timeout")
        }
        _ => None,
    }
}

/// Our one time format in the database (see migrations/0001): `YYYY-MM-DD HH:MM:SS`.
pub(crate) fn sql_time(time: DateTime<Utc>) -> String {
    sql_time_digits(time, false).unwrap_or_else(|| time.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// With milliseconds, for schedule times: a feed due in 1.5 s must not be polled after 1 s.
/// Still sorts and compares correctly against [`sql_time`] text.
pub(crate) fn sql_time_precise(time: DateTime<Utc>) -> String {
    sql_time_digits(time, true).unwrap_or_else(|| time.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
}

/// The two formats above written digit by digit, as chrono's `format` would write them. The
/// writer thread formats several times per entry, and `format` parses its pattern on every
/// call: 2% of a cold poll's instructions. None for what only chrono's general path writes
/// right: years outside 0–9999 (signed, five digits) and leap seconds.
fn sql_time_digits(time: DateTime<Utc>, millis: bool) -> Option<String> {
    let (date, clock) = (time.date_naive(), time.time());
    let year = u32::try_from(date.year()).ok().filter(|&y| y <= 9999)?;
    if clock.nanosecond() >= 1_000_000_000 {
        return None;
    }
    let mut text = *b"0000-00-00 00:00:00.000";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for digit in text[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, date.month());
    put(8, 2, date.day());
    put(11, 2, clock.hour());
    put(14, 2, clock.minute());
    put(17, 2, clock.second());
    put(20, 3, clock.nanosecond() / 1_000_000);
    let len = if millis { 23 } else { 19 };
    Some(String::from_utf8(text[..len].to_vec()).expect("ASCII digits"))
}

/// Reads either of our formats.
pub(crate) fn parse_sql_time(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_twice_applies_migrations_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/feedhound.db");
        drop(Store::open(&path).unwrap());
        let store = Store::open(&path).unwrap();
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        assert_eq!(store.integrity_check().unwrap(), "ok");
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_new_database_gets_16_kib_pages_an_older_one_keeps_its_own_and_both_checkpoint_every_32_mib()
     {
        let pragma = |store: &Store, name: &str| -> i64 {
            store
                .conn
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let new = Store::open(&dir.path().join("new.db")).unwrap();
        assert_eq!(pragma(&new, "page_size"), 16384);
        assert_eq!(pragma(&new, "wal_autocheckpoint"), 2048);

        let old_path = dir.path().join("old.db");
        drop(testing::database_before(
            &old_path,
            "0011_alert_target_rests",
        ));
        let old = Store::open(&old_path).unwrap();
        assert_eq!(pragma(&old, "page_size"), 4096, "SQLite's default then");
        assert_eq!(pragma(&old, "wal_autocheckpoint"), 8192);
        assert_eq!(old.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn filters_by_age_seek_entries_by_age_and_no_index_holds_publication_dates_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feedhound.db");
        drop(testing::database_before(&path, "0012_drop_published_index"));
        let store = Store::open(&path).unwrap();
        let indexes_naming_published: Vec<(String, String)> = store
            .conn
            .prepare(
                "SELECT name, sql FROM sqlite_master
                 WHERE type = 'index' AND sql LIKE '%published_at%' ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let names: Vec<&str> = indexes_naming_published
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(names, ["entries_by_age", "entries_by_story"]);
        // Each dates entries as every query does, the undated by when they were first seen.
        for (name, sql) in &indexes_naming_published {
            assert!(
                sql.contains("coalesce(published_at, first_seen_at)"),
                "{name}: {sql}"
            );
        }
        let plan = store
            .flagged_stories_plan(None, Some(Utc::now() - chrono::Duration::days(7)))
            .unwrap();
        assert!(
            plan.iter().any(|step| step.contains("entries_by_age")),
            "{plan:#?}"
        );
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feedhound.db");
        drop(Store::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 999)
            .unwrap();
        let err = Store::open(&path).err().expect("must refuse");
        assert!(format!("{err:#}").contains("newer feedhound"), "{err:#}");
    }

    #[test]
    fn times_round_trip() {
        let t = DateTime::parse_from_rfc3339("2026-11-24T12:30:05Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(sql_time(t), "2026-11-24 12:30:05");
        assert_eq!(parse_sql_time(&sql_time(t)), Some(t));
    }

    #[test]
    fn times_are_written_exactly_as_chrono_formats_them() {
        let check = |t: DateTime<Utc>| {
            assert_eq!(sql_time(t), t.format("%Y-%m-%d %H:%M:%S").to_string());
            assert_eq!(
                sql_time_precise(t),
                t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
            );
        };
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            // 1900 to 2200, any nanosecond.
            let secs = rng.i64(-2_208_988_800..7_258_118_400);
            check(DateTime::from_timestamp(secs, rng.u32(..1_000_000_000)).unwrap());
        }
        let edges = [
            "0000-01-01T00:00:00Z",
            "0999-12-31T23:59:59.999Z",
            "9999-12-31T23:59:59.999999999Z",
            "2026-06-30T23:59:60.500Z", // a leap second
        ];
        for edge in edges {
            check(
                DateTime::parse_from_rfc3339(edge)
                    .unwrap()
                    .with_timezone(&Utc),
            );
        }
        // Outside four-digit years, chrono's own (signed) rendering.
        check(DateTime::from_timestamp(253_402_300_800, 0).unwrap()); // 10000-01-01
        check(DateTime::from_timestamp(-62_167_219_201, 0).unwrap()); // -0001-12-31
    }
}
