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
//! Commands that sync the config look at the lock and refuse to run beside a daemon that uses
//! another config file; beside one that uses the same file they go ahead, as a cron `poll`
//! always could.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Held by the daemon for as long as it runs; dropping it releases the lock.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
}

/// What the daemon writes into its lock file, for the error messages of the others.
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    config: String,
}

/// The lock file beside `database` (`feedhound.db` → `feedhound.db.lock`).
pub fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl DaemonLock {
    /// Takes the lock on `database` for this process, recording `config` as the file it runs
    /// with, or says which daemon already holds it.
    pub fn acquire(database: &Path, config: &Path) -> anyhow::Result<DaemonLock> {
        let path = lock_path(database);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => anyhow::bail!(
                "{}; stop it first, or give this daemon its own [storage] path",
                running(&path, database)
            ),
            Err(TryLockError::Error(err)) => {
                return Err(err).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        let holder = Holder {
            pid: std::process::id(),
            config: display_path(config),
        };
        file.set_len(0)
            .and_then(|()| file.write_all(&serde_json::to_vec(&holder)?))
            .with_context(|| format!("cannot write to the lock file {}", path.display()))?;
        Ok(DaemonLock { _file: file })
    }
}

/// Errs when a daemon runs on `database` with a config file other than `config`: a command
/// syncing `config` would replace that daemon's feeds and companies with this file's.
pub fn refuse_beside_other_daemon(database: &Path, config: &Path) -> anyhow::Result<()> {
    let path = lock_path(database);
    let file = match File::open(&path) {
        Ok(file) => file,
        // No daemon has ever run on this database.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => {
            return Err(err)
                .with_context(|| format!("cannot open the lock file {}", path.display()));
        }
    };
    match file.try_lock_shared() {
        // Nobody holds it: no daemon runs. Dropping the file lets go of the shared lock.
        Ok(()) => return Ok(()),
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(err)) => {
            return Err(err).with_context(|| format!("cannot read the lock {}", path.display()));
        }
    }
    let ours = display_path(config);
    match read_holder(&path) {
        Some(holder) if holder.config == ours => Ok(()),
        Some(holder) => anyhow::bail!(
            "{}: this command would replace its feeds and companies with those of {ours}; run it \
             with --config {}, or stop the daemon first",
            running(&path, database),
            holder.config
        ),
        None => anyhow::bail!(
            "{}: this command would replace its feeds and companies with those of {ours}; stop \
             the daemon first",
            running(&path, database)
        ),
    }
}

/// "a feedhound daemon (pid N, config C) is running on D", with what the lock file tells.
fn running(lock: &Path, database: &Path) -> String {
    match read_holder(lock) {
        Some(holder) => format!(
            "a feedhound daemon (pid {}, config {}) is running on the database {}",
            holder.pid,
            holder.config,
            display_path(database)
        ),
        // Between taking the lock and writing to it, or written by something else.
        None => format!(
            "a feedhound daemon is running on the database {} (its lock file {} does not say which)",
            display_path(database),
            lock.display()
        ),
    }
}

fn read_holder(lock: &Path) -> Option<Holder> {
    serde_json::from_slice(&std::fs::read(lock).ok()?).ok()
}

/// The absolute path, so that `feedhound.toml` and `/etc/feedhound/feedhound.toml` compare equal.
fn display_path(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .to_string_lossy()
        .into_owned()
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
    fn a_command_may_run_beside_a_daemon_with_the_same_config_file_only() {
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
            message.contains("this command would replace") && message.contains("--config"),
            "{message}"
        );
        assert!(message.contains(&display_path(&ours)), "{message}");
        drop(lock);
        refuse_beside_other_daemon(&database, &other).expect("the daemon is gone");
    }

    #[test]
    fn a_lock_without_a_readable_holder_still_keeps_commands_out() {
        let dir = tempfile::tempdir().unwrap();
        let (database, _, other) = paths(dir.path());
        let file = File::create(lock_path(&database)).unwrap();
        file.lock().unwrap();
        let message = format!(
            "{:#}",
            refuse_beside_other_daemon(&database, &other).unwrap_err()
        );
        assert!(message.contains("does not say which"), "{message}");
    }
}
