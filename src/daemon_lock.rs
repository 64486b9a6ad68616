//! One daemon per database, and no one-shot command that undoes the daemon's config.
//!
//! Two daemons on one database would fetch every feed twice and race each other to deliver the
//! same alerts. A `feedhound --config other.toml poll` beside a running daemon would replace the
//! daemon's feeds and companies with the other file's: the daemon would stop polling the feeds
//! that file lacks, and the stored mentions would be re-matched with other rules, until the
//! daemon's next reload.
//!
//! So the daemon holds an exclusive advisory lock (`flock`) on `<database>.lock` while it runs,
//! and writes its pid and config path into the file. The kernel drops the lock when the process
//! ends, however it ends, so a crash never leaves a stale lock behind (a pid file alone would).
//! Commands that sync the config hold a shared lock on the same file while they sync, and refuse
//! to run beside a daemon that uses another config file; beside one that uses the same file they
//! go ahead, as a cron `poll` always could. A daemon that starts while such a command syncs waits
//! for it. Where the filesystem cannot lock (some network and FUSE mounts), both sides warn and go
//! on unguarded, as before this lock existed.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Held by the daemon for as long as it runs; dropping it releases the lock.
#[derive(Debug)]
pub struct DaemonLock {
    _file: Option<File>,
}

/// Held by a command while it syncs its config; dropping it lets a waiting daemon start.
#[derive(Debug)]
pub struct SyncGuard {
    _file: Option<File>,
}

/// What the daemon writes into its lock file, for the checks and messages of the others.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    config: String,
}

/// How long a command waits for a daemon that has just taken the lock to say who it is.
const SETTLE: Duration = Duration::from_secs(10);

/// The lock file beside `database` (`feedhound.db` → `feedhound.db.lock`), by its real path, so
/// that every spelling of the database (a relative path, a symlink) meets at one lock.
pub fn lock_path(database: &Path) -> PathBuf {
    let real = match (database.parent(), database.file_name()) {
        _ if database.exists() => canonical(database),
        (Some(parent), Some(name)) => canonical(parent).join(name),
        _ => canonical(database),
    };
    let mut name = real.into_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

impl DaemonLock {
    /// Takes the lock on `database` for this process, recording `config` as the file it runs
    /// with, or says which daemon already holds it. Waits while commands hold it to sync their
    /// config.
    pub fn acquire(database: &Path, config: &Path) -> anyhow::Result<DaemonLock> {
        crate::store::create_database_folder(database)?;
        let path = lock_path(database);
        let mut file = open_lock_file(&path).map_err(|err| {
            let hint = if err.kind() == ErrorKind::PermissionDenied {
                " (it belongs to another user: chown it to the daemon's user)"
            } else {
                ""
            };
            anyhow::Error::new(err).context(format!(
                "cannot open the lock file {}{hint}",
                path.display()
            ))
        })?;
        let mut waiting = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(err)) if cannot_lock_here(&err) => {
                    tracing::warn!(lock = %path.display(), error = %err, "this filesystem cannot lock files: nothing stops a second daemon on this database");
                    return Ok(DaemonLock { _file: None });
                }
                Err(TryLockError::Error(err)) => {
                    return Err(err).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
            // A shared lock alongside the holders means they are only commands, which migrate
            // the database and sync their config: wait for them, however long that takes. An
            // exclusive holder is a daemon.
            let only_commands =
                File::open(&path).is_ok_and(|probe| probe.try_lock_shared().is_ok());
            if !only_commands {
                anyhow::bail!(
                    "{}; stop it first, or give this daemon its own [storage] path",
                    running(read_holder(&path).as_ref(), &path, database)
                );
            }
            if !waiting {
                tracing::info!(database = %database.display(), "waiting for a feedhound command to finish writing its config to the database");
                waiting = true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let holder = Holder {
            pid: std::process::id(),
            config: canonical(config).to_string_lossy().into_owned(),
        };
        file.set_len(0)
            .and_then(|()| file.write_all(&serde_json::to_vec(&holder)?))
            .with_context(|| format!("cannot write to the lock file {}", path.display()))?;
        Ok(DaemonLock { _file: Some(file) })
    }
}

/// Errs when a daemon runs on `database` with a config file other than `config`: a command
/// syncing `config` would replace that daemon's feeds and companies with this file's. Hold the
/// guard until the sync is committed, so that no daemon starts in between.
pub fn refuse_beside_other_daemon(database: &Path, config: &Path) -> anyhow::Result<SyncGuard> {
    refuse_beside_other_daemon_within(database, config, SETTLE)
}

fn refuse_beside_other_daemon_within(
    database: &Path,
    config: &Path,
    settle: Duration,
) -> anyhow::Result<SyncGuard> {
    let ours = canonical(config).to_string_lossy().into_owned();
    let deadline = Instant::now() + settle;
    let (path, file) = open_for_command(database)?;
    loop {
        match try_shared(&path, &file)? {
            Some(true) => return Ok(SyncGuard { _file: Some(file) }),
            None => return Ok(SyncGuard { _file: None }),
            Some(false) => {}
        }
        // A daemon that has just taken the lock writes who it is right after; until then the
        // file is empty or names its predecessor, which is no longer running.
        let holder = read_holder(&path).filter(|h| is_alive(h.pid));
        if holder.as_ref().is_some_and(|h| h.config == ours) {
            return Ok(SyncGuard { _file: None });
        }
        if holder.is_some() || Instant::now() > deadline {
            let running = running(holder.as_ref(), &path, database);
            anyhow::bail!(match holder {
                Some(holder) => format!(
                    "{running}: this command would replace its feeds and companies with those of \
                     {ours}; run it with --config {}, or stop the daemon first",
                    holder.config
                ),
                None => format!(
                    "{running}: this command would replace its feeds and companies with those of \
                     {ours}; stop the daemon first"
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Errs when any daemon holds the lock on `database`; the guard keeps one from starting (for
/// commands that replace the database).
pub fn refuse_beside_any_daemon(database: &Path) -> anyhow::Result<SyncGuard> {
    let (path, file) = open_for_command(database)?;
    match try_shared(&path, &file)? {
        Some(true) => Ok(SyncGuard { _file: Some(file) }),
        None => Ok(SyncGuard { _file: None }),
        Some(false) => anyhow::bail!(
            "{}: stop it first, or choose another folder",
            running(read_holder(&path).as_ref(), &path, database)
        ),
    }
}

/// The lock file of `database` for a command, created if missing (so that a daemon starting for
/// the first time meets the command's lock too); read-only when it belongs to another user,
/// since a shared lock needs no more.
fn open_for_command(database: &Path) -> anyhow::Result<(PathBuf, File)> {
    crate::store::create_database_folder(database)?;
    let path = lock_path(database);
    let file = match open_lock_file(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == ErrorKind::PermissionDenied => File::open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?,
        Err(err) => {
            return Err(err)
                .with_context(|| format!("cannot open the lock file {}", path.display()));
        }
    };
    Ok((path, file))
}

/// Some(true): shared lock taken; Some(false): a daemon holds it; None: this filesystem cannot
/// lock (warned).
fn try_shared(path: &Path, file: &File) -> anyhow::Result<Option<bool>> {
    match file.try_lock_shared() {
        Ok(()) => Ok(Some(true)),
        Err(TryLockError::WouldBlock) => Ok(Some(false)),
        Err(TryLockError::Error(err)) if cannot_lock_here(&err) => {
            tracing::warn!(lock = %path.display(), error = %err, "this filesystem cannot lock files: a running daemon would not be noticed");
            Ok(None)
        }
        Err(TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("cannot test the lock {}", path.display()))
        }
    }
}

fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// `flock` refused for the filesystem's sake (NFS without lockd, some FUSE mounts).
fn cannot_lock_here(err: &std::io::Error) -> bool {
    err.kind() == ErrorKind::Unsupported
        || matches!(err.raw_os_error(), Some(libc::ENOLCK | libc::EOPNOTSUPP))
}

fn is_alive(pid: u32) -> bool {
    // Signal 0 checks for the process without touching it; EPERM means it exists as another
    // user. 0 would name our own process group.
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 sends nothing and involves no memory.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// "a feedhound daemon (pid N, config C) is running on the database D".
fn running(holder: Option<&Holder>, lock: &Path, database: &Path) -> String {
    match holder {
        Some(holder) => format!(
            "a feedhound daemon (pid {}, config {}) is running on the database {}",
            holder.pid,
            holder.config,
            database.display()
        ),
        None => format!(
            "a feedhound daemon is running on the database {} (its lock file {} does not say which)",
            database.display(),
            lock.display()
        ),
    }
}

fn read_holder(lock: &Path) -> Option<Holder> {
    serde_json::from_slice(&std::fs::read(lock).ok()?).ok()
}

/// The absolute path with symlinks resolved, so that `feedhound.toml` and
/// `/etc/feedhound/feedhound.toml` are one file; the absolute path if it cannot be resolved.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let database = dir.join("feedhound.db");
        let (ours, other) = (dir.join("feedhound.toml"), dir.join("other.toml"));
        std::fs::write(&ours, "").unwrap();
        std::fs::write(&other, "").unwrap();
        (database, ours, other)
    }

    #[test]
    fn the_lock_is_held_once_and_free_again_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (database, config, _) = paths(dir.path());
        let lock = DaemonLock::acquire(&database, &config).unwrap();
        let err = DaemonLock::acquire(&database, &config).unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains(&format!("pid {}", std::process::id()))
                && message.contains("feedhound.toml")
                && message.contains("stop it first"),
            "{message}"
        );
        drop(lock);
        DaemonLock::acquire(&database, &config).expect("free once the holder let go");
    }

    #[test]
    fn a_command_may_sync_beside_a_daemon_with_the_same_config_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let (database, ours, other) = paths(dir.path());
        refuse_beside_other_daemon(&database, &other).expect("no daemon ever ran");
        let lock = DaemonLock::acquire(&database, &ours).unwrap();
        // Another spelling of the same file is the same file.
        let relative = dir.path().join(".").join("feedhound.toml");
        refuse_beside_other_daemon(&database, &relative).expect("same config");
        let message = format!(
            "{:#}",
            refuse_beside_other_daemon(&database, &other).unwrap_err()
        );
        assert!(
            message.contains("this command would replace")
                && message.contains(&format!("--config {}", canonical(&ours).display())),
            "{message}"
        );
        drop(lock);
        refuse_beside_other_daemon(&database, &other).expect("the daemon is gone");
    }

    #[test]
    fn a_daemon_starting_while_a_command_syncs_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let (database, ours, other) = paths(dir.path());
        std::fs::write(lock_path(&database), "").unwrap();
        let syncing = refuse_beside_other_daemon(&database, &other).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(syncing);
        });
        let started = Instant::now();
        let lock = DaemonLock::acquire(&database, &ours).expect("the daemon waits, then starts");
        assert!(started.elapsed() >= Duration::from_millis(250));
        release.join().unwrap();
        let holder = read_holder(&lock_path(&database)).unwrap();
        assert_eq!(holder.pid, std::process::id());
        drop(lock);
    }

    #[test]
    fn a_command_waits_for_a_starting_daemon_to_say_who_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let (database, ours, _) = paths(dir.path());
        let lock = lock_path(&database);
        // A daemon between taking the lock and writing to it: the file still names its
        // predecessor, with another config, long gone (no pid reaches 2^31 - 1 on Linux).
        std::fs::write(&lock, r#"{"pid":2147483647,"config":"/gone.toml"}"#).unwrap();
        let mut file = OpenOptions::new().write(true).open(&lock).unwrap();
        file.lock().unwrap();
        let config = canonical(&ours).to_string_lossy().into_owned();
        let daemon = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let holder = Holder {
                pid: std::process::id(),
                config,
            };
            file.set_len(0).unwrap();
            file.write_all(&serde_json::to_vec(&holder).unwrap())
                .unwrap();
            file
        });
        let started = Instant::now();
        refuse_beside_other_daemon(&database, &ours).expect("the same config, once it is said");
        assert!(started.elapsed() >= Duration::from_millis(250));
        drop(daemon.join().unwrap());
    }

    #[test]
    fn a_record_naming_the_same_config_is_not_trusted_once_its_daemon_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (database, ours, _) = paths(dir.path());
        let lock = lock_path(&database);
        // Locked by a daemon that has not written its name yet, over a record of a predecessor
        // that ran with this command's config: the new one may run with any other.
        let config = canonical(&ours).to_string_lossy().into_owned();
        let record = serde_json::to_vec(&Holder {
            pid: 2_147_483_647,
            config,
        })
        .unwrap();
        std::fs::write(&lock, record).unwrap();
        let file = File::open(&lock).unwrap();
        file.lock().unwrap();
        let err = refuse_beside_other_daemon_within(&database, &ours, Duration::from_millis(200))
            .unwrap_err();
        assert!(format!("{err:#}").contains("does not say which"), "{err:#}");
    }

    #[test]
    fn the_lock_path_is_the_same_for_every_spelling_of_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let (database, _, _) = paths(dir.path());
        let spelled = dir.path().join(".").join("feedhound.db");
        assert_eq!(lock_path(&database), lock_path(&spelled));
        std::fs::write(&database, "").unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&database, &link).unwrap();
        assert_eq!(lock_path(&link), lock_path(&database));
    }
}
