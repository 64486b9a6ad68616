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
//! for it. `feedhound restore` holds the lock exclusively and says so in the file: commands are
//! refused and a starting daemon waits, each told why. Where the filesystem cannot lock (some
//! network and FUSE mounts), both sides warn and go on unguarded, as before this lock existed.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

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

/// What the daemon (or a `feedhound restore`) writes into its lock file, for the checks and
/// messages of the others.
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    config: String,
    /// Written by a restore, which holds the lock to replace the database, not to run on it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    restore: bool,
}

impl Holder {
    fn write_to(&self, file: &mut File, path: &Path) -> anyhow::Result<()> {
        file.set_len(0)
            .and_then(|()| file.write_all(&serde_json::to_vec(self)?))
            .with_context(|| format!("cannot write to the lock file {}", path.display()))
    }
}

/// How long a command waits for a daemon that has just taken the lock to say who it is.
const SETTLE: Duration = Duration::from_secs(10);

/// The lock file beside `database` (`feedhound.db` → `feedhound.db.lock`), by its real path, so
/// that every spelling of the database (a relative path, a symlink) meets at one lock.
pub fn lock_path(database: &Path) -> PathBuf {
    let real = match database.file_name() {
        _ if database.exists() => canonical(database),
        Some(name) => canonical(crate::config::folder_of(database)).join(name),
        None => canonical(database),
    };
    let mut name = real.into_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// How long a starting daemon waits for commands that sync their config (a migration of a large
/// database included) before it gives up, so that a service manager can retry it.
const COMMANDS_WAIT: Duration = Duration::from_secs(60);

impl DaemonLock {
    /// Takes the lock on `database` for this process, recording `config` as the file it runs
    /// with, or says which daemon already holds it. Waits (up to a minute, or until `stop`) while
    /// commands hold it to sync their config.
    pub fn acquire(
        database: &Path,
        config: &Path,
        stop: &CancellationToken,
    ) -> anyhow::Result<DaemonLock> {
        let (path, mut file, writable) = open_for_locking(database)?;
        let deadline = Instant::now() + COMMANDS_WAIT;
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
            // the database and sync their config: wait for them. An exclusive holder is a daemon,
            // or a restore putting the database in place, which is worth waiting for too.
            let only_commands =
                File::open(&path).is_ok_and(|probe| probe.try_lock_shared().is_ok());
            let restoring = restore_running(read_holder(&path).as_ref(), database);
            if !only_commands && restoring.is_none() {
                anyhow::bail!(
                    "{}; stop it first, or give this daemon its own [storage] path",
                    running(read_holder(&path).as_ref(), &path, database)
                );
            }
            anyhow::ensure!(
                !stop.is_cancelled(),
                "stopped while waiting for feedhound commands to finish writing to the database {}",
                database.display()
            );
            if let Some(restoring) = restoring.filter(|_| Instant::now() >= deadline) {
                anyhow::bail!(restoring);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "feedhound commands (poll, rescan or prune) have been writing their config to the database {} for {} s; start the daemon when they are done",
                database.display(),
                COMMANDS_WAIT.as_secs()
            );
            if !waiting {
                tracing::info!(database = %database.display(), "waiting for a feedhound command to finish writing to the database");
                waiting = true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if writable {
            let holder = Holder {
                pid: std::process::id(),
                config: canonical(config).to_string_lossy().into_owned(),
                restore: false,
            };
            holder.write_to(&mut file, &path)?;
        } else {
            // Locked all the same (flock needs no write access); commands beside it cannot tell
            // which config it runs with, so they refuse, and say so.
            tracing::warn!(lock = %path.display(), "the lock file belongs to another user, so it cannot say which daemon holds it: chown it to this daemon's user");
        }
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
    let (path, file, _) = open_for_locking(database)?;
    loop {
        match try_shared(&path, &file)? {
            SharedTry::Taken => return Ok(SyncGuard { _file: Some(file) }),
            SharedTry::Unsupported => return Ok(SyncGuard { _file: None }),
            SharedTry::HeldByDaemon => {}
        }
        // A daemon that has just taken the lock writes who it is right after; until then the
        // file is empty or names its predecessor, which is no longer running.
        let holder = read_holder(&path).filter(|h| is_alive(h.pid));
        if let Some(restoring) = restore_running(holder.as_ref(), database) {
            anyhow::bail!(restoring);
        }
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
    let (path, file, _) = open_for_locking(database)?;
    match try_shared(&path, &file)? {
        SharedTry::Taken => Ok(SyncGuard { _file: Some(file) }),
        SharedTry::Unsupported => Ok(SyncGuard { _file: None }),
        SharedTry::HeldByDaemon => anyhow::bail!(held_alone_by(
            &path,
            database,
            "stop it first, or choose another folder"
        )),
    }
}

/// Takes the lock on `database` exclusively, for `feedhound restore`, which replaces the database
/// file itself: no daemon may run on it, and no command may be syncing its config into it, since
/// either would keep writing to the file being replaced. A command that starts meanwhile is
/// refused, and a daemon waits, each told that a restore is running.
pub fn hold_alone(database: &Path) -> anyhow::Result<SyncGuard> {
    let (path, mut file, writable) = open_for_locking(database)?;
    match file.try_lock() {
        Ok(()) => {
            let note = Holder {
                pid: std::process::id(),
                config: String::new(),
                restore: true,
            };
            if writable && let Err(err) = note.write_to(&mut file, &path) {
                // The lock holds without it; only the others' messages are vaguer.
                tracing::warn!(error = %format!("{err:#}"), "cannot say in the lock file that a restore holds it");
            }
            Ok(SyncGuard { _file: Some(file) })
        }
        Err(TryLockError::Error(err)) if cannot_lock_here(&err) => {
            tracing::warn!(lock = %path.display(), error = %err, "this filesystem cannot lock files: a running daemon would not be noticed");
            Ok(SyncGuard { _file: None })
        }
        Err(TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("cannot lock {}", path.display()))
        }
        Err(TryLockError::WouldBlock) => {
            let only_commands =
                File::open(&path).is_ok_and(|probe| probe.try_lock_shared().is_ok());
            if only_commands {
                anyhow::bail!(
                    "a feedhound command (poll, rescan or prune) is writing to the database {}; try again when it is done",
                    database.display()
                )
            }
            anyhow::bail!(held_alone_by(
                &path,
                database,
                "stop it first (`systemctl stop feedhound`)"
            ))
        }
    }
}

/// The lock file of `database`, created if missing (so that a daemon starting for the first time
/// meets a command's lock too), and whether it could be opened for writing: `flock` works on a
/// file opened read-only, which is all a process of another user gets.
fn open_for_locking(database: &Path) -> anyhow::Result<(PathBuf, File, bool)> {
    crate::store::create_database_folder(database)?;
    let path = lock_path(database);
    let cannot_open = || format!("cannot open the lock file {}", path.display());
    let created = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path);
    match created {
        Ok(file) => {
            give_to_folder_owner(&path, &file)?;
            return Ok((path, file, true));
        }
        Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err).with_context(cannot_open),
    }
    match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(file) => Ok((path, file, true)),
        Err(err) if err.kind() == ErrorKind::PermissionDenied => {
            let file = File::open(&path).with_context(cannot_open)?;
            Ok((path, file, false))
        }
        Err(err) => Err(err).with_context(cannot_open),
    }
}

/// A lock file that root creates (a cron `poll` before the service's first start) belongs to
/// whoever owns the database's folder, as SQLite does with its `-wal` and `-shm` files: else the
/// service's own user could not write it.
fn give_to_folder_owner(path: &Path, file: &File) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !crate::config::running_as_root() {
        return Ok(());
    }
    let folder = crate::config::folder_of(path);
    let owner = std::fs::metadata(folder)
        .with_context(|| format!("cannot read the owner of {}", folder.display()))?;
    std::os::unix::fs::fchown(file, Some(owner.uid()), Some(owner.gid()))
        .with_context(|| format!("cannot give {} to the owner of its folder", path.display()))
}

/// What a command's try for a shared lock found.
enum SharedTry {
    Taken,
    HeldByDaemon,
    /// This filesystem cannot lock (warned).
    Unsupported,
}

fn try_shared(path: &Path, file: &File) -> anyhow::Result<SharedTry> {
    match file.try_lock_shared() {
        Ok(()) => Ok(SharedTry::Taken),
        Err(TryLockError::WouldBlock) => Ok(SharedTry::HeldByDaemon),
        Err(TryLockError::Error(err)) if cannot_lock_here(&err) => {
            tracing::warn!(lock = %path.display(), error = %err, "this filesystem cannot lock files: a running daemon would not be noticed");
            Ok(SharedTry::Unsupported)
        }
        Err(TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("cannot test the lock {}", path.display()))
        }
    }
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

/// Who holds the lock at `lock` exclusively, for a refusal: a restore, or a daemon, which
/// `daemon_advice` says what to do about.
fn held_alone_by(lock: &Path, database: &Path, daemon_advice: &str) -> String {
    let holder = read_holder(lock);
    restore_running(holder.as_ref(), database).unwrap_or_else(|| {
        format!(
            "{}: {daemon_advice}",
            running(holder.as_ref(), lock, database)
        )
    })
}

/// "a feedhound restore (pid N) is replacing the database D; …", when one is.
fn restore_running(holder: Option<&Holder>, database: &Path) -> Option<String> {
    let holder = holder.filter(|h| h.restore && is_alive(h.pid))?;
    Some(format!(
        "a feedhound restore (pid {}) is replacing the database {}; try again when it is done",
        holder.pid,
        database.display()
    ))
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let database = dir.join("feedhound.db");
        let (ours, other) = (dir.join("feedhound.toml"), dir.join("other.toml"));
        std::fs::write(&ours, "").unwrap();
        std::fs::write(&other, "").unwrap();
        (database, ours, other)
    }

    #[test]
    fn a_command_that_replaces_the_database_holds_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (database, config, _) = paths(dir.path());
        let alone = hold_alone(&database).unwrap();
        let restoring = format!(
            "a feedhound restore (pid {}) is replacing the database {}; try again when it is done",
            std::process::id(),
            database.display()
        );
        for refused in [
            refuse_beside_other_daemon_within(&database, &config, Duration::ZERO).map(drop),
            refuse_beside_any_daemon(&database).map(drop),
            hold_alone(&database).map(drop),
        ] {
            assert_eq!(refused.unwrap_err().to_string(), restoring);
        }
        let daemon = std::thread::spawn(move || {
            DaemonLock::acquire(&database, &config, &CancellationToken::new())
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !daemon.is_finished(),
            "a starting daemon waits for the restore"
        );
        drop(alone);
        drop(daemon.join().unwrap().expect("and starts once it is done"));
        let (database, config, _) = paths(dir.path());
        let syncing = refuse_beside_other_daemon(&database, &config).unwrap();
        let err = hold_alone(&database).unwrap_err();
        assert!(
            err.to_string()
                .contains("a feedhound command (poll, rescan or prune)"),
            "{err:#}"
        );
        drop(syncing);
        let _daemon = DaemonLock::acquire(&database, &config, &CancellationToken::new()).unwrap();
        let err = hold_alone(&database).unwrap_err();
        assert!(err.to_string().contains("stop it first"), "{err:#}");
    }

    #[test]
    fn the_lock_is_held_once_and_free_again_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (database, config, _) = paths(dir.path());
        let lock = DaemonLock::acquire(&database, &config, &CancellationToken::new()).unwrap();
        let err = DaemonLock::acquire(&database, &config, &CancellationToken::new()).unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains(&format!("pid {}", std::process::id()))
                && message.contains("feedhound.toml")
                && message.contains("stop it first"),
            "{message}"
        );
        drop(lock);
        DaemonLock::acquire(&database, &config, &CancellationToken::new())
            .expect("free once the holder let go");
    }

    #[test]
    fn a_command_may_sync_beside_a_daemon_with_the_same_config_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let (database, ours, other) = paths(dir.path());
        refuse_beside_other_daemon(&database, &other).expect("no daemon ever ran");
        let lock = DaemonLock::acquire(&database, &ours, &CancellationToken::new()).unwrap();
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
        let released = Arc::new(AtomicBool::new(false));
        let release = std::thread::spawn({
            let released = Arc::clone(&released);
            move || {
                std::thread::sleep(Duration::from_millis(300));
                released.store(true, Ordering::SeqCst);
                drop(syncing);
            }
        });
        let lock = DaemonLock::acquire(&database, &ours, &CancellationToken::new())
            .expect("the daemon waits, then starts");
        assert!(released.load(Ordering::SeqCst), "it waited for the command");
        release.join().unwrap();
        let holder = read_holder(&lock_path(&database)).unwrap();
        assert_eq!(holder.pid, std::process::id());
        drop(lock);
    }

    #[test]
    fn a_daemon_waiting_for_a_command_stops_when_told_to() {
        let dir = tempfile::tempdir().unwrap();
        let (database, ours, other) = paths(dir.path());
        let _syncing = refuse_beside_other_daemon(&database, &other).unwrap();
        let stop = CancellationToken::new();
        stop.cancel();
        let err = DaemonLock::acquire(&database, &ours, &stop).unwrap_err();
        assert!(
            format!("{err:#}").contains("stopped while waiting"),
            "{err:#}"
        );
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
                restore: false,
            };
            holder.write_to(&mut file, &lock).unwrap();
            file
        });
        // Before the record is written, the command can only refuse or wait: it waits.
        refuse_beside_other_daemon(&database, &ours).expect("the same config, once it is said");
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
            restore: false,
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
