//! Adding `[[feed]]` tables to the user's config file, for `opml import` and `discover --add`.
//!
//! The config file belongs to the user, so it is edited with `toml_edit`, never regenerated:
//! comments, blank lines and key order outside the added tables stay byte for byte. The result
//! is checked with [`Config::parse_with`] (its secrets left unread: adding feeds needs none)
//! before anything is written, then written to a temporary file beside the original and renamed
//! over it, so a crash leaves either the old file or the new one, never half of one. Just before
//! the rename the file is read again: if an editor or another command saved it since this one
//! read it, nothing is written, rather than their change being lost. A running daemon sees the
//! file change and reloads it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::Utc;
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

use crate::config::{Config, FeedConfig, Secrets, folder_of};

/// A config file read for editing.
pub struct ConfigFile {
    /// The path the user gave, for messages.
    path: PathBuf,
    /// The file to replace: a symlinked config's target, so the rename replaces the file and
    /// not the link.
    target: PathBuf,
    /// Its text; empty for a config file that does not exist yet (saving creates it).
    pub text: String,
    existed: bool,
}

impl ConfigFile {
    /// Reads the config at `config_path`, which may not exist yet.
    pub fn read(config_path: &Path) -> anyhow::Result<ConfigFile> {
        let target = match std::fs::canonicalize(config_path) {
            Ok(real) => real,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => config_path.to_path_buf(),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot open {}", config_path.display()));
            }
        };
        let text = read_if_present(&target)
            .with_context(|| format!("cannot read {}", config_path.display()))?;
        Ok(ConfigFile {
            path: config_path.to_path_buf(),
            target,
            existed: text.is_some(),
            text: text.unwrap_or_default(),
        })
    }

    /// Replaces the file with `contents`, unless it changed since it was read (see the
    /// module's header).
    pub fn save(&self, contents: &str) -> anyhow::Result<()> {
        let unchanged = || {
            read_if_present(&self.target).map(|now| match now {
                Some(now) => self.existed && now == self.text,
                None => !self.existed,
            })
        };
        replace_file(&self.target, contents, unchanged)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

fn read_if_present(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// The config as it is now, which feeds can be added to only when it is valid.
pub fn parse_for_adding(config_text: &str, config_path: &Path) -> anyhow::Result<Config> {
    Config::parse_with(config_text, config_path, Secrets::Unread)
        .context("the config file must be valid before feeds can be added to it")
}

/// `config_text` with `added` appended as `[[feed]]` tables, the first under a comment saying
/// that `added_by` (a command) added them and when. `config` is `config_text` parsed; each of
/// `added` must be a URL it does not list yet. `config_path` is used in messages only.
pub fn append_feeds(
    config_text: &str,
    config_path: &Path,
    config: &Config,
    added: &[FeedConfig],
    added_by: &str,
) -> anyhow::Result<String> {
    let mut document: DocumentMut = config_text
        .parse()
        .context("the config file is not valid TOML")?;
    let feeds = match document
        .entry("feed")
        .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()))
    {
        Item::ArrayOfTables(tables) => tables,
        _ => bail!(
            "{}: `feed` is not written as [[feed]] tables; feeds can only be added as [[feed]] tables",
            config_path.display()
        ),
    };
    let note = format!(
        "\n# Added by `{added_by}` on {}.\n",
        Utc::now().format("%Y-%m-%d")
    );
    for (index, feed) in added.iter().enumerate() {
        let mut table = feed_table(feed);
        table
            .decor_mut()
            .set_prefix(if index == 0 { note.as_str() } else { "\n" });
        feeds.push(table);
    }
    let updated = document.to_string();

    // toml_edit guarantees the text, this guards the meaning: never save a config that would not load.
    let reloaded = Config::parse_with(&updated, config_path, Secrets::Unread)
        .context("internal error: the edited config does not validate; nothing was written")?;
    if reloaded.feeds != [config.feeds.as_slice(), added].concat() {
        bail!(
            "internal error: the edited config does not list the expected feeds; nothing was written"
        );
    }
    Ok(updated)
}

fn feed_table(feed: &FeedConfig) -> Table {
    let mut table = Table::new();
    table.insert("url", value(feed.url.as_str()));
    if let Some(name) = &feed.name {
        table.insert("name", value(name.as_str()));
    }
    if !feed.tags.is_empty() {
        table.insert("tags", value(feed.tags.iter().collect::<Array>()));
    }
    table
}

/// Writes `contents` to a temporary file in `path`'s folder, flushes it to disk, then renames it
/// over `path` if `unchanged` still says so: the rename is atomic, so readers (and crashes) see
/// the old file or the new one.
fn replace_file(
    path: &Path,
    contents: &str,
    unchanged: impl Fn() -> std::io::Result<bool>,
) -> std::io::Result<()> {
    let folder = folder_of(path);
    let mut temp = tempfile::Builder::new()
        .prefix(".feedhound-edit-")
        .tempfile_in(folder)?;
    temp.write_all(contents.as_bytes())?;
    // The temporary file is created private (0600) and owned by whoever runs this; keep the
    // original's permissions instead, and as root its owner too: a config that root edits for
    // the service's user must stay readable by that user.
    if let Ok(metadata) = std::fs::metadata(path) {
        temp.as_file().set_permissions(metadata.permissions())?;
        #[cfg(unix)]
        keep_owner(temp.as_file(), &metadata)?;
    }
    temp.as_file().sync_all()?;
    // Checked as late as can be: the window left is this check and the rename.
    if !unchanged()? {
        return Err(std::io::Error::other(
            "it changed since this command read it (an editor or another command saved it meanwhile); nothing was written: run the command again",
        ));
    }
    temp.persist(path).map_err(|err| err.error)?;
    // Make the rename itself durable; folders cannot be opened for syncing on Windows.
    #[cfg(unix)]
    std::fs::File::open(folder)?.sync_all()?;
    Ok(())
}

#[cfg(unix)]
fn keep_owner(file: &std::fs::File, original: &std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !crate::config::running_as_root() {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(original.uid()), Some(original.gid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_saved_by_someone_else_meanwhile_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feedhound.toml");
        std::fs::write(&path, "# mine\n").unwrap();
        let file = ConfigFile::read(&path).unwrap();
        std::fs::write(&path, "# mine\n# theirs\n").unwrap();
        let err = file.save("# mine\n# added\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("feedhound.toml: it changed since this command read it"),
            "{err:#}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# mine\n# theirs\n"
        );
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "the temporary file is removed");

        let file = ConfigFile::read(&path).unwrap();
        file.save("# mine\n# theirs\n# added\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# mine\n# theirs\n# added\n"
        );
    }

    #[test]
    fn a_config_created_by_someone_else_meanwhile_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feedhound.toml");
        let file = ConfigFile::read(&path).unwrap();
        assert_eq!(file.text, "");
        std::fs::write(&path, "# theirs\n").unwrap();
        assert!(file.save("# added\n").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# theirs\n");

        std::fs::remove_file(&path).unwrap();
        ConfigFile::read(&path).unwrap().save("# added\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "# added\n");
    }
}
