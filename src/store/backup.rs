//! Backups: a consistent copy of the live database, safe to take while the daemon writes.
//!
//! Copying `feedhound.db` with `cp` while feedhound runs is not a backup: the latest commits sit
//! in `feedhound.db-wal`, and a copy of the main file taken mid-checkpoint can be torn.
//! `VACUUM INTO` reads one snapshot (a read transaction, so writers go on) and writes it as a
//! compact, self-contained database in rollback mode, which `sqlite3` or feedhound open as is.
//!
//! What SQLite leaves to us: it does not sync the copy, and a copy interrupted half-way is a
//! corrupt file under the name it was given. So the copy is written under a temporary name in
//! the destination's folder, checked (`PRAGMA quick_check`), synced, and only then renamed to
//! the name asked for (atomically, and without replacing an existing file unless asked to); the
//! folder is synced so the name survives a power cut too. Anything that fails on the way takes
//! the temporary file with it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

/// What a backup wrote, as `feedhound backup` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub entries: i64,
    pub stories: i64,
    /// `PRAGMA user_version` of the copy: the feedhound schema it holds.
    pub schema_version: i64,
}

/// Copies the database at `database` to `destination` (a file that must not exist unless
/// `replace`). Waits up to `busy_timeout` for another connection's exclusive lock (a `VACUUM`),
/// never for writers, which a reader in WAL mode does not wait for. The database is opened as
/// it is, without migrating: a backup taken before an upgrade must hold the old schema.
pub fn backup(
    database: &Path,
    destination: &Path,
    replace: bool,
    busy_timeout: Duration,
) -> anyhow::Result<BackupReport> {
    if !database.exists() {
        anyhow::bail!(
            "there is no database at {} yet (feedhound creates it when it first starts); check [storage] path",
            database.display()
        );
    }
    let source = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the database {}", database.display()))?;
    source.busy_timeout(busy_timeout)?;
    if !replace && destination.exists() {
        anyhow::bail!(
            "{} already exists; choose another name, or pass --replace to replace it once the new copy is complete",
            destination.display()
        );
    }
    let folder = match destination.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = destination
        .file_name()
        .with_context(|| format!("{} names no file", destination.display()))?;
    if overwrites_the_database(database, folder, file_name) {
        anyhow::bail!(
            "{} is the database itself or one of its files; name a file elsewhere",
            destination.display()
        );
    }
    if !folder.is_dir() {
        anyhow::bail!(
            "the folder {} does not exist; create it first",
            folder.display()
        );
    }
    let partial = tempfile::Builder::new()
        .prefix(&format!(".{}.", file_name.to_string_lossy()))
        .suffix(".partial")
        .tempfile_in(folder)
        .with_context(|| {
            format!(
                "cannot create the backup in {} (is the folder writable?)",
                folder.display()
            )
        })?;
    let partial_name = partial.path().to_str().with_context(|| {
        format!(
            "{} is not valid UTF-8, which SQLite needs for a file name",
            partial.path().display()
        )
    })?;
    source
        .execute("VACUUM INTO ?1", [partial_name])
        .map_err(anyhow::Error::from)
        .map_err(|err| {
            let hint = super::storage_hint(&err)
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            err.context(format!(
                "cannot copy {} to {}{hint}",
                database.display(),
                folder.display()
            ))
        })?;
    drop(source);

    let mut report = check_copy(partial.path())
        .with_context(|| format!("the copy of {} is not sound", database.display()))?;
    partial
        .as_file()
        .sync_all()
        .context("cannot sync the backup to disk")?;
    let persisted = if replace {
        partial.persist(destination)
    } else {
        partial.persist_noclobber(destination)
    };
    persisted.map_err(|err| {
        anyhow::Error::new(err.error)
            .context(format!("cannot name the backup {}", destination.display()))
    })?;
    // The rename is durable only once the folder's entry is on disk.
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot sync the folder {}", folder.display()))?;
    report.path = destination.to_path_buf();
    Ok(report)
}

/// Whether `folder/file_name` is the database or a file SQLite or feedhound keep beside it.
fn overwrites_the_database(database: &Path, folder: &Path, file_name: &std::ffi::OsStr) -> bool {
    let (Ok(database), Ok(folder)) = (database.canonicalize(), folder.canonicalize()) else {
        return false;
    };
    let destination = folder.join(file_name);
    ["", "-wal", "-shm", "-journal", ".lock"]
        .iter()
        .any(|suffix| {
            let mut name = database.clone().into_os_string();
            name.push(suffix);
            destination == Path::new(&name)
        })
}

/// Opens a finished copy read-only, checks its structure and counts what it holds.
fn check_copy(path: &Path) -> anyhow::Result<BackupReport> {
    let copy = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let verdict: String = copy.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    anyhow::ensure!(verdict == "ok", "PRAGMA quick_check says: {verdict}");
    let count = |sql: &str| copy.query_row(sql, [], |r| r.get::<_, i64>(0));
    let schema_version = count("PRAGMA user_version")?;
    anyhow::ensure!(
        schema_version > 0,
        "it holds no feedhound schema (is [storage] path a feedhound database?)"
    );
    Ok(BackupReport {
        path: path.to_path_buf(),
        bytes: std::fs::metadata(path)?.len(),
        entries: count("SELECT count(*) FROM entries")?,
        stories: count("SELECT count(*) FROM stories")?,
        schema_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ParsedEntry;
    use crate::store::Store;
    use crate::store::testing::{database_before, store_document, store_with_one_feed};

    fn entry(key: &str) -> ParsedEntry {
        ParsedEntry {
            dedup_key: key.into(),
            title: Some(format!("title {key}")),
            canonical_link: Some(format!("news.example/{key}")),
            link_unique_in_doc: true,
            content_hash: key.into(),
            ..Default::default()
        }
    }

    fn files_in(folder: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(folder)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_backup_holds_what_was_committed_and_not_what_another_connection_is_still_writing() {
        let (dir, mut store, feed) = store_with_one_feed();
        store_document(&mut store, feed, vec![entry("a"), entry("b")], "b1");
        // The daemon's writer, in the middle of a group of results: its write lock must not
        // make the backup wait, and its entry must not be in the copy.
        let mut writer = Connection::open(store.path()).unwrap();
        let open = writer.transaction().unwrap();
        open.execute(
            "INSERT INTO entries (feed_id, dedup_key, title, content_hash, first_seen_at, last_seen_at)
             SELECT feed_id, 'c', 'title c', 'c', first_seen_at, last_seen_at FROM entries LIMIT 1",
            [],
        )
        .unwrap();
        let copy = dir.path().join("copy.db");

        let report = backup(store.path(), &copy, false, Duration::ZERO).unwrap();
        open.commit().unwrap();

        assert_eq!(report.path, copy);
        assert_eq!((report.entries, report.stories), (2, 2));
        assert_eq!(report.schema_version, super::super::MIGRATIONS.len() as i64);
        assert_eq!(report.bytes, std::fs::metadata(&copy).unwrap().len());
        // The copy stands alone: feedhound opens it, and it holds the two committed entries.
        drop(store);
        std::fs::remove_file(dir.path().join("db")).unwrap();
        let restored = Store::open(&copy).unwrap();
        let keys: Vec<String> = restored
            .conn
            .prepare("SELECT dedup_key FROM entries ORDER BY dedup_key")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(keys, ["a", "b"]);
    }

    #[test]
    fn a_backup_replaces_a_file_only_when_asked_and_leaves_no_partial_file() {
        let (dir, mut store, feed) = store_with_one_feed();
        let folder = tempfile::tempdir().unwrap();
        let copy = folder.path().join("nightly.db");
        std::fs::write(&copy, b"last night's backup").unwrap();

        let refused = backup(store.path(), &copy, false, Duration::ZERO).unwrap_err();
        assert!(
            format!("{refused:#}")
                .contains("already exists; choose another name, or pass --replace"),
            "{refused:#}"
        );
        assert_eq!(std::fs::read(&copy).unwrap(), b"last night's backup");

        store_document(&mut store, feed, vec![entry("a")], "b1");
        let report = backup(store.path(), &copy, true, Duration::ZERO).unwrap();
        assert_eq!(report.entries, 1);
        assert_eq!(files_in(folder.path()), ["nightly.db"]);
        let copied = Connection::open(&copy).unwrap();
        let entries: i64 = copied
            .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(entries, 1);
        drop(dir);
    }

    #[test]
    fn a_backup_never_writes_over_the_database_or_its_companion_files() {
        let (dir, store, _) = store_with_one_feed();
        for name in ["db", "db-wal", "db-shm"] {
            let err =
                backup(store.path(), &dir.path().join(name), true, Duration::ZERO).unwrap_err();
            assert!(
                err.to_string()
                    .contains("is the database itself or one of its files"),
                "{name}: {err:#}"
            );
        }
        let feeds: i64 = store
            .conn
            .query_row("SELECT count(*) FROM feeds", [], |r| r.get(0))
            .unwrap();
        assert_eq!(feeds, 1);
    }

    #[test]
    fn a_backup_keeps_the_schema_it_found_so_it_can_be_taken_before_an_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("old.db");
        drop(database_before(&database, "0016_withdrawn_alerts"));
        let copy = dir.path().join("copy.db");

        let report = backup(&database, &copy, false, Duration::ZERO).unwrap();

        assert_eq!(report.schema_version, 15);
        let version = |path: &Path| -> i64 {
            Connection::open(path)
                .unwrap()
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!((version(&database), version(&copy)), (15, 15));
    }

    #[test]
    fn a_backup_of_a_missing_database_or_into_a_missing_folder_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let missing = backup(
            &dir.path().join("nothing.db"),
            &dir.path().join("copy.db"),
            false,
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(
            missing.to_string().contains("there is no database at"),
            "{missing:#}"
        );
        assert!(!dir.path().join("nothing.db").exists());

        let (_dir, store, _) = store_with_one_feed();
        let nowhere = dir.path().join("no-such-folder").join("copy.db");
        let err = backup(store.path(), &nowhere, false, Duration::ZERO).unwrap_err();
        assert!(
            format!("{err:#}").contains("no-such-folder does not exist"),
            "{err:#}"
        );
    }
}
