//! Backups and restores: a consistent copy of the live database, safe to take while the daemon
//! writes, and putting one back in its place.
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
//! the temporary file with it (a process killed mid-copy leaves it, named `.NAME.*.partial`).
//!
//! A restore is the same copy the other way, plus what people get wrong by hand: a file put
//! over `feedhound.db` while its old `-wal` is still beside it has that WAL replayed onto it.
//! So the database being replaced is moved aside whole (see [`restore`]), never deleted.

use std::ffi::OsStr;
use std::fs::File;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, MAIN_DB, OpenFlags};
use serde::Serialize;
use tempfile::NamedTempFile;

use crate::config::folder_of;

/// What a backup wrote, as `feedhound backup` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub entries: i64,
    pub stories: i64,
    /// `PRAGMA user_version` of the copy: the feedhound schema it holds.
    pub schema_version: i64,
    /// Older copies deleted from the folder (`backup --keep`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<PathBuf>,
}

/// Files SQLite keeps beside a database, named after it.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Copies the database at `database` to `destination`: a file that must not exist unless
/// `replace`, or an existing folder (written with a trailing `/`, it must exist), where the copy
/// is named `feedhound-<UTC time>.db`. Waits up to `busy_timeout` only while another connection
/// recovers the database after a crash; a reader in WAL mode waits for no writer. The database
/// is opened as it is, without migrating: a backup taken before an upgrade holds the old schema.
pub fn backup(
    database: &Path,
    destination: &Path,
    replace: bool,
    busy_timeout: Duration,
    now: DateTime<Utc>,
) -> anyhow::Result<BackupReport> {
    if !database.exists() {
        anyhow::bail!(
            "there is no database at {} yet (feedhound creates it when it first starts); check [storage] path",
            database.display()
        );
    }
    let destination = if destination.is_dir() {
        destination.join(backup_file_name(now))
    } else if destination.as_os_str().as_encoded_bytes().ends_with(b"/") {
        anyhow::bail!(
            "the folder {} does not exist; create it first",
            destination.display()
        );
    } else {
        destination.to_path_buf()
    };
    if !replace && destination.exists() {
        anyhow::bail!(
            "{} already exists; choose another name, or pass --replace to replace it once the new copy is complete",
            destination.display()
        );
    }
    let (folder, file_name) = folder_and_name(&destination)?;
    if is_a_file_of(database, folder, file_name) {
        anyhow::bail!(
            "{} is the database itself or one of its files; name a file elsewhere",
            destination.display()
        );
    }
    let (copy, report) = checked_copy(database, &destination, busy_timeout)
        .with_context(|| format!("cannot back up {}", database.display()))?;
    name_durably(copy, &destination, replace)?;
    Ok(report)
}

/// [`backup`] into `folder`, then deletes the copies `backup` named there
/// (`feedhound-<UTC time>.db`) but the newest `keep`, the new one among them. Other files are
/// left alone, whatever their names; a copy that cannot be deleted is logged and kept.
pub fn backup_keeping(
    database: &Path,
    folder: &Path,
    keep: NonZeroUsize,
    busy_timeout: Duration,
    now: DateTime<Utc>,
) -> anyhow::Result<BackupReport> {
    anyhow::ensure!(
        folder.is_dir(),
        "--keep deletes older copies from the folder they are put in, and {} is no folder; name an existing folder",
        folder.display()
    );
    let mut report = backup(database, folder, false, busy_timeout, now)?;
    let written = report.path.file_name().map(OsStr::to_owned);
    let mut older: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("cannot list {} to delete older copies", folder.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.file_name()))
        .filter(|name| Some(name) != written.as_ref() && is_backup_file_name(name))
        .map(|name| folder.join(name))
        .collect();
    // The names sort by time; newest first.
    older.sort_unstable_by(|a, b| b.cmp(a));
    for copy in older.into_iter().skip(keep.get() - 1) {
        match std::fs::remove_file(&copy) {
            Ok(()) => report.removed.push(copy),
            Err(err) => {
                tracing::warn!(copy = %copy.display(), error = %err, "cannot delete an older backup");
            }
        }
    }
    Ok(report)
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// The restored database (at the configured path) and what it holds.
    pub restored: BackupReport,
    /// Where the database it replaced was moved, if there was one.
    pub replaced_kept_as: Option<PathBuf>,
}

/// Puts a copy of `backup` in place of the database at `database`, which is moved aside
/// (`<database>.before-restore-<UTC time>`), not deleted. The caller holds the database alone
/// ([`crate::daemon_lock::hold_alone`]); this also refuses when another connection (`sqlite3`,
/// Datasette) has it open, since that connection would go on using the WAL of the file moved
/// aside with the new one. The backup is copied with `VACUUM INTO` (so a backup with its own
/// WAL beside it is read whole), checked, given the replaced file's permissions and owner, and
/// its schema brought up to date.
pub fn restore(
    backup: &Path,
    database: &Path,
    busy_timeout: Duration,
    now: DateTime<Utc>,
) -> anyhow::Result<RestoreReport> {
    if !backup.is_file() {
        anyhow::bail!("there is no file at {}", backup.display());
    }
    // A symlinked database is replaced where it lives, beside the WAL SQLite keeps there.
    let database = database
        .canonicalize()
        .unwrap_or_else(|_| database.to_path_buf());
    let database = database.as_path();
    super::create_database_folder(database)?;
    let (backup_folder, backup_name) = folder_and_name(backup)?;
    if is_a_file_of(database, backup_folder, backup_name) {
        anyhow::bail!(
            "{} is the database itself or one of its files; name a backup",
            backup.display()
        );
    }
    let (copy, report) = checked_copy(backup, database, busy_timeout)
        .with_context(|| format!("cannot restore {}", backup.display()))?;
    let known = super::MIGRATIONS.len() as i64;
    if report.schema_version > known {
        anyhow::bail!(
            "{} was taken by a newer feedhound (schema version {}, this one knows {known}); upgrade feedhound to restore it",
            backup.display(),
            report.schema_version
        );
    }
    let replaced = std::fs::metadata(database).ok();
    take_over(copy.as_file(), replaced.as_ref(), folder_of(database)).with_context(|| {
        format!(
            "cannot give the restored database the permissions and owner of {}",
            database.display()
        )
    })?;
    let aside = set_aside(database, replaced.is_some(), now)?;
    if let Err(err) = name_durably(copy, database, false) {
        return Err(match aside.undo() {
            Ok(()) => err.context(format!("{} is as it was", database.display())),
            Err(undo) => err.context(format!(
                "and moving the database back failed too ({undo:#}): it is kept as {}",
                aside.kept.display()
            )),
        });
    }
    // The same upgrade the next start would make, while the caller still holds the database.
    drop(super::Store::open_with(database, busy_timeout)?);
    Ok(RestoreReport {
        restored: report,
        replaced_kept_as: replaced.map(|_| aside.kept),
    })
}

/// Gives the restored file the mode of the database it replaces and, when root restores, its
/// owner (or the folder's, for a first database), so the service's user can still open it.
fn take_over(
    file: &File,
    replaced: Option<&std::fs::Metadata>,
    folder: &Path,
) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if let Some(replaced) = replaced {
        file.set_permissions(std::fs::Permissions::from_mode(replaced.mode() & 0o7777))?;
    }
    if crate::config::running_as_root() {
        let owner = match replaced {
            Some(replaced) => replaced.clone(),
            None => std::fs::metadata(folder)?,
        };
        std::os::unix::fs::fchown(file, Some(owner.uid()), Some(owner.gid()))?;
    }
    Ok(())
}

/// The files a restore moved out of the way, and where to.
struct SetAside {
    kept: PathBuf,
    moves: Vec<(PathBuf, PathBuf)>,
}

impl SetAside {
    fn undo(&self) -> std::io::Result<()> {
        self.moves
            .iter()
            .rev()
            .try_for_each(|(from, to)| std::fs::rename(to, from))
    }
}

/// Moves the database out of the way whole. Checkpointed into its main file, it goes alone:
/// its WAL and shared-memory files go with the last connection, which must be ours. One too
/// damaged to checkpoint (the usual reason to restore) goes with the files SQLite keeps beside
/// it, renamed as SQLite expects, so the set still opens as it was; so do such files left
/// beside a database that is gone, which SQLite would otherwise replay onto the restored one.
fn set_aside(database: &Path, exists: bool, now: DateTime<Utc>) -> anyhow::Result<SetAside> {
    if exists && !checkpoint(database)? {
        anyhow::bail!(
            "another process has {} open (a sqlite3 session, Datasette?); close it, then restore",
            database.display()
        );
    }
    let stamp = file_stamp(now);
    let kept = (1..)
        .map(|n| match n {
            1 => with_suffix(database, &format!(".before-restore-{stamp}")),
            n => with_suffix(database, &format!(".before-restore-{stamp}-{n}")),
        })
        .find(|name| !name.exists())
        .expect("a free name");
    let mut aside = SetAside {
        kept,
        moves: Vec::new(),
    };
    for suffix in std::iter::once("").chain(COMPANIONS) {
        let from = with_suffix(database, suffix);
        if !from.exists() {
            continue;
        }
        let to = with_suffix(&aside.kept, suffix);
        if let Err(err) = std::fs::rename(&from, &to) {
            let _ = aside.undo();
            return Err(err).with_context(|| {
                format!("cannot move {} aside to {}", from.display(), to.display())
            });
        }
        aside.moves.push((from, to));
    }
    Ok(aside)
}

/// `PRAGMA wal_checkpoint(TRUNCATE)` on a connection of its own, closed before returning.
/// False when another connection keeps the database open: its read stopped the checkpoint, or
/// the WAL and shared-memory files outlived our connection, the last one would remove them.
/// True also for a database too damaged to checkpoint (and then to be open elsewhere).
fn checkpoint(database: &Path) -> anyhow::Result<bool> {
    let checkpointed = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|connection| {
        connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
    });
    match checkpointed {
        Ok(blocked) => Ok(blocked == 0
            && !["-wal", "-shm"]
                .iter()
                .any(|suffix| with_suffix(database, suffix).exists())),
        Err(err)
            if matches!(
                err.sqlite_error_code(),
                Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
            ) =>
        {
            tracing::warn!(
                database = %database.display(),
                error = %err,
                "the database being replaced is damaged; it is kept as it is, with its WAL"
            );
            Ok(true)
        }
        Err(err) => Err(err).with_context(|| format!("cannot checkpoint {}", database.display())),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The name `backup` gives a copy put in a folder: sortable, one per second, no `:` (which
/// some filesystems and `scp` treat specially).
fn backup_file_name(now: DateTime<Utc>) -> String {
    format!("feedhound-{}.db", file_stamp(now))
}

fn file_stamp(now: DateTime<Utc>) -> String {
    now.format("%Y-%m-%dT%H%M%SZ").to_string()
}

/// Whether `name` is one [`backup_file_name`] gives.
fn is_backup_file_name(name: &OsStr) -> bool {
    name.to_str()
        .and_then(|name| name.strip_prefix("feedhound-")?.strip_suffix(".db"))
        .is_some_and(|stamp| {
            chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H%M%SZ").is_ok()
        })
}

fn folder_and_name(path: &Path) -> anyhow::Result<(&Path, &OsStr)> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    Ok((folder_of(path), name))
}

/// `VACUUM INTO` a new file in the folder of `named` (hidden, marked partial), checked and
/// synced: what is left is to give it the name `named`, which the report already uses, or to
/// drop it, which deletes it.
fn checked_copy(
    source: &Path,
    named: &Path,
    busy_timeout: Duration,
) -> anyhow::Result<(NamedTempFile, BackupReport)> {
    let (folder, name) = folder_and_name(named)?;
    let connection = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", source.display()))?;
    connection.busy_timeout(busy_timeout)?;
    connection
        .query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .with_context(|| format!("cannot read {} as an SQLite database", source.display()))?;
    // SQLite opens the copy with the source's flags: a read-only source cannot be copied.
    if connection.is_readonly(MAIN_DB)? {
        anyhow::bail!(
            "{} is read-only here (read-only media, or another user's file); copy it to a writable folder first",
            source.display()
        );
    }
    if !folder.is_dir() {
        anyhow::bail!(
            "the folder {} does not exist; create it first",
            folder.display()
        );
    }
    let copy = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".partial")
        .tempfile_in(folder)
        .with_context(|| {
            format!(
                "cannot create a file in {} (is the folder writable?)",
                folder.display()
            )
        })?;
    let copy_name = copy.path().to_str().with_context(|| {
        format!(
            "{} is not valid UTF-8, which SQLite needs for a file name",
            copy.path().display()
        )
    })?;
    connection
        .execute("VACUUM INTO ?1", [copy_name])
        .map_err(|err| {
            let full = err.sqlite_error_code() == Some(ErrorCode::DiskFull);
            anyhow::Error::new(err).context(format!(
                "cannot write the copy into {}{}",
                folder.display(),
                if full { " (its disk is full)" } else { "" }
            ))
        })?;
    drop(connection);
    let report = check_copy(copy.path(), named).context("the copy is not sound")?;
    copy.as_file()
        .sync_all()
        .context("cannot sync the copy to disk")?;
    Ok((copy, report))
}

/// Renames a finished copy to `destination` (atomically; never over an existing file unless
/// `replace`) and syncs the folder, without which the rename may not survive a power cut.
fn name_durably(copy: NamedTempFile, destination: &Path, replace: bool) -> anyhow::Result<()> {
    let named = if replace {
        copy.persist(destination)
    } else {
        copy.persist_noclobber(destination).or_else(|err| {
            // Filesystems without an atomic no-replace rename or hard links (vfat, exFAT, some
            // network shares) refuse both; a plain rename after a last look is what is left.
            let unsupported = matches!(
                err.error.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::Unsupported
            ) || err.error.raw_os_error() == Some(libc::EPERM);
            if unsupported && !destination.exists() {
                err.file.persist(destination)
            } else {
                Err(err)
            }
        })
    };
    named.map_err(|err| {
        anyhow::Error::new(err.error)
            .context(format!("cannot name the copy {}", destination.display()))
    })?;
    let folder = folder_of(destination);
    File::open(folder)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot sync the folder {}", folder.display()))
}

/// Whether `folder/file_name` is the database or a file SQLite or feedhound keep beside it.
fn is_a_file_of(database: &Path, folder: &Path, file_name: &OsStr) -> bool {
    let (Ok(database), Ok(folder)) = (database.canonicalize(), folder.canonicalize()) else {
        return false;
    };
    let destination = folder.join(file_name);
    std::iter::once("")
        .chain(COMPANIONS)
        .chain([".lock"])
        .any(|suffix| destination == with_suffix(&database, suffix))
}

/// Opens a finished copy read-only, checks its structure and counts what it holds; the report
/// names it `named`.
fn check_copy(path: &Path, named: &Path) -> anyhow::Result<BackupReport> {
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
        "it holds no feedhound schema (is it a feedhound database?)"
    );
    Ok(BackupReport {
        path: named.to_path_buf(),
        bytes: std::fs::metadata(path)?.len(),
        entries: count("SELECT count(*) FROM entries")?,
        stories: count("SELECT count(*) FROM stories")?,
        schema_version,
        removed: Vec::new(),
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

    fn entry_keys(database: &Path) -> Vec<String> {
        Connection::open(database)
            .unwrap()
            .prepare("SELECT dedup_key FROM entries ORDER BY dedup_key")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A store whose feed holds entry "a", and a backup of it, `copy.db` beside it.
    fn backed_up_store() -> (tempfile::TempDir, Store, i64, PathBuf) {
        let (dir, mut store, feed) = store_with_one_feed();
        store_document(&mut store, feed, vec![entry("a")], "b1");
        let copy = dir.path().join("copy.db");
        backup(store.path(), &copy, false, Duration::ZERO, Utc::now()).unwrap();
        (dir, store, feed, copy)
    }

    fn schema_version(database: &Path) -> i64 {
        Connection::open(database)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
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

        let report = backup(store.path(), &copy, false, Duration::ZERO, Utc::now()).unwrap();
        open.commit().unwrap();

        assert_eq!(report.path, copy);
        assert_eq!((report.entries, report.stories), (2, 2));
        assert_eq!(report.schema_version, super::super::MIGRATIONS.len() as i64);
        assert_eq!(report.bytes, std::fs::metadata(&copy).unwrap().len());
        // The copy stands alone: one file in rollback mode (header bytes 18 and 19 are 1; 2 is
        // WAL), with no WAL of its own, and feedhound opens it.
        let header = std::fs::read(&copy).unwrap();
        assert_eq!(header[18..20], [1, 1]);
        assert_eq!(files_in(dir.path()), ["copy.db", "db", "db-shm", "db-wal"]);
        drop(store);
        Store::open(&copy).unwrap();
        assert_eq!(entry_keys(&copy), ["a", "b"]);
    }

    #[test]
    fn a_backup_replaces_a_file_only_when_asked_and_leaves_no_partial_file() {
        let (dir, mut store, feed) = store_with_one_feed();
        let folder = tempfile::tempdir().unwrap();
        let copy = folder.path().join("nightly.db");
        std::fs::write(&copy, b"last night's backup").unwrap();

        let refused = backup(store.path(), &copy, false, Duration::ZERO, Utc::now()).unwrap_err();
        assert!(
            format!("{refused:#}")
                .contains("already exists; choose another name, or pass --replace"),
            "{refused:#}"
        );
        assert_eq!(std::fs::read(&copy).unwrap(), b"last night's backup");

        store_document(&mut store, feed, vec![entry("a")], "b1");
        let report = backup(store.path(), &copy, true, Duration::ZERO, Utc::now()).unwrap();
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
            let err = backup(
                store.path(),
                &dir.path().join(name),
                true,
                Duration::ZERO,
                Utc::now(),
            )
            .unwrap_err();
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

        let report = backup(&database, &copy, false, Duration::ZERO, Utc::now()).unwrap();

        assert_eq!(report.schema_version, 15);
        assert_eq!((schema_version(&database), schema_version(&copy)), (15, 15));
    }

    #[test]
    fn a_backup_of_a_missing_database_or_into_a_missing_folder_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let missing = backup(
            &dir.path().join("nothing.db"),
            &dir.path().join("copy.db"),
            false,
            Duration::ZERO,
            Utc::now(),
        )
        .unwrap_err();
        assert!(
            missing.to_string().contains("there is no database at"),
            "{missing:#}"
        );
        assert!(!dir.path().join("nothing.db").exists());

        let (_dir, store, _) = store_with_one_feed();
        let folder = dir.path().join("no-such-folder/");
        let err = backup(store.path(), &folder, false, Duration::ZERO, Utc::now()).unwrap_err();
        assert!(
            format!("{err:#}").contains("no-such-folder/ does not exist"),
            "{err:#}"
        );
        let nowhere = dir.path().join("no-such-folder").join("copy.db");
        let err = backup(store.path(), &nowhere, false, Duration::ZERO, Utc::now()).unwrap_err();
        assert!(
            format!("{err:#}").contains("no-such-folder does not exist"),
            "{err:#}"
        );
    }

    #[test]
    fn a_restore_puts_the_backup_in_place_and_keeps_the_database_it_replaced() {
        let (dir, mut store, feed, copy) = backed_up_store();
        store_document(&mut store, feed, vec![entry("a"), entry("b")], "b2");
        let database = store.path().to_path_buf();
        drop(store);
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o640)).unwrap();
        let now = Utc::now();

        let first = restore(&copy, &database, Duration::ZERO, now).unwrap();
        let second = restore(&copy, &database, Duration::ZERO, now).unwrap();

        assert_eq!(first.restored.path, database);
        assert_eq!(first.restored.entries, 1);
        assert_eq!(entry_keys(&database), ["a"]);
        assert_eq!(mode(&database), 0o640, "the replaced file's permissions");
        let kept = first.replaced_kept_as.unwrap();
        assert_eq!(
            entry_keys(&kept),
            ["a", "b"],
            "the replaced database, whole"
        );
        // A second restore in the same second keeps the first one's database too.
        let kept_again = second.replaced_kept_as.unwrap();
        assert_ne!(kept, kept_again);
        assert_eq!(entry_keys(&kept), ["a", "b"]);
        assert_eq!(entry_keys(&kept_again), ["a"]);
        let mut names = files_in(dir.path());
        names.retain(|name| !name.starts_with("db.before-restore-"));
        assert_eq!(
            names,
            ["copy.db", "db"],
            "no WAL of the replaced file is left"
        );
        Store::open(&database).unwrap();
    }

    #[test]
    fn a_restore_refuses_while_another_connection_has_the_database_open() {
        let (dir, mut store, feed) = store_with_one_feed();
        let copy = dir.path().join("copy.db");
        backup(store.path(), &copy, false, Duration::ZERO, Utc::now()).unwrap();
        store_document(&mut store, feed, vec![entry("a")], "b1");
        let database = store.path().to_path_buf();
        // A `sqlite3` session left open: it would go on using the WAL beside the new file.
        let session = Connection::open(&database).unwrap();
        session
            .query_row("SELECT count(*) FROM entries", [], |r| r.get::<_, i64>(0))
            .unwrap();
        drop(store);

        let err = restore(&copy, &database, Duration::ZERO, Utc::now()).unwrap_err();

        assert!(err.to_string().contains("another process has"), "{err:#}");
        drop(session);
        assert_eq!(entry_keys(&database), ["a"]);
        assert!(
            files_in(dir.path())
                .iter()
                .all(|name| !name.contains("before-restore") && !name.ends_with(".partial")),
            "{:?}",
            files_in(dir.path())
        );
    }

    #[test]
    fn a_restored_older_backup_is_upgraded_and_a_newer_one_is_refused() {
        let (dir, store, _) = store_with_one_feed();
        let database = store.path().to_path_buf();
        drop(store);
        let older = dir.path().join("older.db");
        drop(database_before(&older, "0016_withdrawn_alerts"));

        restore(&older, &database, Duration::ZERO, Utc::now()).unwrap();
        assert_eq!(
            schema_version(&database),
            super::super::MIGRATIONS.len() as i64
        );

        let newer = dir.path().join("newer.db");
        std::fs::copy(&older, &newer).unwrap();
        Connection::open(&newer)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = restore(&newer, &database, Duration::ZERO, Utc::now()).unwrap_err();
        assert!(
            err.to_string().contains("taken by a newer feedhound"),
            "{err:#}"
        );
        assert_eq!(
            schema_version(&database),
            super::super::MIGRATIONS.len() as i64
        );
    }

    #[test]
    fn a_restore_of_a_file_that_is_no_database_leaves_the_database_alone() {
        let (dir, mut store, feed) = store_with_one_feed();
        store_document(&mut store, feed, vec![entry("a")], "b1");
        let database = store.path().to_path_buf();
        drop(store);
        let junk = dir.path().join("junk.db");
        std::fs::write(
            &junk,
            "not a database, but long enough to look like a header ".repeat(4),
        )
        .unwrap();

        let err = restore(&junk, &database, Duration::ZERO, Utc::now()).unwrap_err();

        assert!(
            format!("{err:#}").contains("as an SQLite database"),
            "{err:#}"
        );
        assert_eq!(entry_keys(&database), ["a"]);
        assert_eq!(files_in(dir.path()), ["db", "junk.db"]);
    }

    #[test]
    fn a_database_too_damaged_to_open_is_replaced_and_kept_as_it_was() {
        let (_dir, store, _, copy) = backed_up_store();
        let database = store.path().to_path_buf();
        drop(store);
        let mut damaged = std::fs::read(&database).unwrap();
        damaged[..16].copy_from_slice(b"not SQLite now!\0");
        std::fs::write(&database, &damaged).unwrap();

        let report = restore(&copy, &database, Duration::ZERO, Utc::now()).unwrap();

        assert_eq!(entry_keys(&database), ["a"]);
        let kept = report.replaced_kept_as.unwrap();
        assert_eq!(std::fs::read(&kept).unwrap(), damaged);
    }

    #[test]
    fn a_backup_into_a_folder_is_named_after_its_time() {
        let (dir, store, _) = store_with_one_feed();
        let folder = dir.path().join("backups");
        std::fs::create_dir(&folder).unwrap();
        let at = DateTime::parse_from_rfc3339("2026-11-26T05:09:30Z")
            .unwrap()
            .with_timezone(&Utc);

        let report = backup(store.path(), &folder, false, Duration::ZERO, at).unwrap();

        assert_eq!(report.path, folder.join("feedhound-2026-11-26T050930Z.db"));
        assert_eq!(files_in(&folder), ["feedhound-2026-11-26T050930Z.db"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&report.path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "feed URLs may carry credentials");
    }

    #[test]
    fn a_backup_keeping_n_deletes_the_oldest_dated_copies_and_nothing_else() {
        let (dir, store, _) = store_with_one_feed();
        let folder = dir.path().join("backups");
        std::fs::create_dir(&folder).unwrap();
        let older = [
            "feedhound-2026-11-21T030000Z.db",
            "feedhound-2026-11-22T030000Z.db",
            "feedhound-2026-11-23T030000Z.db",
            "feedhound-2026-11-24T030000Z.db",
        ];
        let others = [
            "feedhound-before-upgrade.db",
            "feedhound-2026-11-20T030000Z.db.gz",
            "notes.txt",
        ];
        for name in older.iter().chain(&others) {
            std::fs::write(folder.join(name), "").unwrap();
        }
        let at = DateTime::parse_from_rfc3339("2026-11-26T03:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let keep = NonZeroUsize::new(3).unwrap();

        let report = backup_keeping(store.path(), &folder, keep, Duration::ZERO, at).unwrap();

        assert_eq!(
            report.removed,
            [older[1], older[0]].map(|name| folder.join(name))
        );
        assert_eq!(
            files_in(&folder),
            [
                "feedhound-2026-11-20T030000Z.db.gz",
                "feedhound-2026-11-23T030000Z.db",
                "feedhound-2026-11-24T030000Z.db",
                "feedhound-2026-11-26T030000Z.db",
                "feedhound-before-upgrade.db",
                "notes.txt",
            ]
        );
        // Keeping one keeps the new copy, even when the clock had gone back.
        let earlier = at - chrono::Duration::days(30);
        let one = NonZeroUsize::new(1).unwrap();
        let report = backup_keeping(store.path(), &folder, one, Duration::ZERO, earlier).unwrap();
        assert!(report.path.exists());
        assert_eq!(report.removed.len(), 3);

        let file = folder.join("nightly.db");
        let err = backup_keeping(store.path(), &file, keep, Duration::ZERO, at).unwrap_err();
        assert!(err.to_string().contains("is no folder"), "{err:#}");
        assert!(!file.exists());
    }

    #[test]
    fn a_copy_that_fails_its_check_is_not_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE notes (text)")
            .unwrap();
        let folder = tempfile::tempdir().unwrap();

        let err = backup(
            &other,
            &folder.path().join("copy.db"),
            false,
            Duration::ZERO,
            Utc::now(),
        )
        .unwrap_err();

        assert!(
            format!("{err:#}").contains("holds no feedhound schema"),
            "{err:#}"
        );
        assert!(
            files_in(folder.path()).is_empty(),
            "{:?}",
            files_in(folder.path())
        );
    }

    #[test]
    fn a_first_restore_moves_the_leftovers_of_a_deleted_database_aside() {
        let (_dir, store, _, copy) = backed_up_store();
        drop(store);
        // The database deleted by hand, its WAL left behind: SQLite would replay it.
        let target = tempfile::tempdir().unwrap();
        let database = target.path().join("feedhound.db");
        std::fs::write(with_suffix(&database, "-wal"), b"a stale WAL").unwrap();

        let report = restore(&copy, &database, Duration::ZERO, Utc::now()).unwrap();

        assert_eq!(report.replaced_kept_as, None);
        assert_eq!(entry_keys(&database), ["a"]);
        let names = files_in(target.path());
        assert!(
            names
                .iter()
                .any(|name| name.starts_with("feedhound.db.before-restore-")
                    && name.ends_with("-wal")),
            "{names:?}"
        );
        assert!(!names.contains(&"feedhound.db-wal".to_owned()), "{names:?}");
    }

    #[test]
    fn a_symlinked_database_is_restored_where_the_link_points() {
        let (_dir, mut store, feed, copy) = backed_up_store();
        store_document(&mut store, feed, vec![entry("a"), entry("b")], "b2");
        let real = store.path().to_path_buf();
        drop(store);
        let links = tempfile::tempdir().unwrap();
        let link = links.path().join("feedhound.db");
        std::os::unix::fs::symlink(&real, &link).unwrap();

        restore(&copy, &link, Duration::ZERO, Utc::now()).unwrap();

        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(entry_keys(&real), ["a"]);
        assert_eq!(files_in(links.path()), ["feedhound.db"]);
    }
}
