//! The configuration file: raw TOML → validated [`Config`].
//!
//! This is the only place user input from the config file is checked. Every error names the file,
//! the line and the key, so a user can fix a broken edit without guessing; everything downstream
//! takes the typed [`Config`] and trusts it.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{NaiveTime, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;
use url::Url;

use crate::fetch::{FeedHeaders, looks_secret, origin_only, parse_feed_header, redact};
use crate::matcher::{CompanyRule, comparable_name};
use crate::model::Field;
use crate::notify::digest::{self, DigestSchedule, DigestTime, DigestTimes};

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config was read from; relative paths inside it are resolved against its folder.
    pub source: PathBuf,
    pub storage: StorageConfig,
    pub polling: PollingConfig,
    pub daemon: DaemonConfig,
    pub feeds: Vec<FeedConfig>,
    pub companies: Vec<CompanyConfig>,
    pub notify: Vec<NotifyConfig>,
    pub server: ServerConfig,
    pub reports: ReportsConfig,
    /// The config file (when loaded from one) and the files its secrets were read from
    /// (`{ file = "PATH" }`), each stamped just before it was read: the daemon reloads when one
    /// changes, so a rotated token is read again.
    pub read_files: Vec<ReadFile>,
    /// Whether the secrets kept in files or variables were read.
    pub secrets: Secrets,
    /// What is not wrong enough to refuse the file but should be fixed (each a sentence):
    /// `check` prints them; the daemon, `poll` and `alerts --send-test` log them
    /// ([`Config::log_warnings`]).
    pub warnings: Vec<String>,
    /// The keys that have a credential written in the file itself, each with its line.
    credentials_written: Vec<(usize, String)>,
}

/// Whether loading a config reads the secrets it keeps in files or environment variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Read them; one that cannot be read is an error. For whatever fetches, sends alerts, or
    /// brings the database's alert state in line with the notify targets.
    Read,
    /// Leave them unread, for commands that only read the database or the feed list, so that
    /// they run where the daemon's secrets cannot be read (outside its systemd unit): a header
    /// kept out of the file is left out, and so is a notify target whose url or secret is.
    Unread,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// How long a write waits for a lock another process holds (a user's `sqlite3` session).
    pub busy_timeout: Duration,
    /// The SQLite database file, absolute or relative to the config file's folder.
    pub path: PathBuf,
    /// Entries older than this that mention no company are pruned; None keeps everything.
    pub retain: Option<Duration>,
}

/// The optional HTTP endpoint: `/metrics`, `/healthz` and `/mentions.atom`.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Where to listen; None (the default) serves nothing.
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct PollingConfig {
    /// Default interval between two polls of a feed.
    pub interval: Duration,
    /// Floor for every feed's interval: no feed is polled more often, whatever asks for it.
    pub min_interval: Duration,
    /// Ceiling for every feed's interval (backoff aside).
    pub max_interval: Duration,
    /// Longest wait between retries of a failing feed.
    pub max_backoff: Duration,
    /// Fetches in flight at once, over all feeds.
    pub concurrency: usize,
    /// Fetches in flight at once to one host.
    pub per_host_concurrency: usize,
    /// Least time between the starts of two requests to one host.
    pub per_host_delay: Duration,
    /// Whole-request deadline (connect, headers, body).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Largest accepted response body, counted after decompression.
    pub max_body_size: u64,
    pub user_agent: String,
    /// Article pages may be on this machine or a private network whatever feed links to them
    /// (an intranet, a VPN, a fake-IP proxy); off, only a feed there itself may link there.
    pub private_article_links: bool,
}

/// `[reports]`: how `mentions`, `companies` and `search` read and print times, and how `feeds`,
/// `alerts` and `prune` print them.
#[derive(Debug, Clone, Default)]
pub struct ReportsConfig {
    /// Their clock unless `--time-zone` says otherwise (see [`crate::report_clock`]).
    pub clock: crate::report_clock::ReportClock,
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// After SIGTERM/SIGINT, how long fetches in flight may take to finish before they are cancelled.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeedConfig {
    pub url: Url,
    pub name: Option<String>,
    /// Overrides `polling.interval` for this feed.
    pub interval: Option<Duration>,
    pub tags: Vec<String>,
    /// Request headers of this feed alone (`[[feed]] headers`), None when it has none.
    pub headers: Option<FeedHeaders>,
    /// Fetch each new entry's link and match the story's text there too (see `articles`).
    pub fetch_articles: bool,
}

#[derive(Debug, Clone)]
pub struct CompanyConfig {
    pub rule: CompanyRule,
    /// Free metadata kept in the `companies` table for the user's own queries.
    pub ticker: Option<String>,
    pub tags: Vec<String>,
}

/// Where an alert for each newly flagged story goes: a webhook, or email.
#[derive(Clone)]
pub struct NotifyConfig {
    /// Unique label; the outbox records deliveries per target name.
    pub name: String,
    /// The webhook, or the SMTP server (`smtp://` or `smtps://`); a rest belongs to it.
    pub url: Url,
    /// Only stories mentioning one of these companies; every flagged story when None.
    pub companies: Option<Vec<String>>,
    /// Wait before the first retry of a failed delivery; doubles per attempt.
    pub retry_delay: Duration,
    /// Also alert on what a feed serves the first time it is parsed (its backlog).
    pub backlog: bool,
    pub delivery: Delivery,
    /// When set, alerts are gathered and sent together at these times rather than as each
    /// story is flagged.
    pub digest: Option<DigestSchedule>,
}

/// How a target's alerts travel, and what each carries.
#[derive(Clone)]
pub enum Delivery {
    /// A POST to the target's `url`, in `format` (never [`AlertFormat::Email`]).
    Webhook {
        format: AlertFormat,
        /// Key for the `X-Feedhound-Signature` HMAC-SHA256 header; never logged.
        secret: Option<String>,
        /// Where the POSTs go, and what frames them there.
        endpoint: Endpoint,
    },
    /// An email through the SMTP server the target's `url` names.
    Email(EmailConfig),
}

impl Delivery {
    pub fn format(&self) -> AlertFormat {
        match self {
            Delivery::Webhook { format, .. } => *format,
            Delivery::Email(_) => AlertFormat::Email,
        }
    }
}

/// An SMTP server and the addresses of an email target, from `url`, `from` and `to`.
#[derive(Clone)]
pub struct EmailConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// User name and password, from the URL (percent-decoded); never logged.
    pub login: Option<(String, String)>,
    pub from: lettre::message::Mailbox,
    pub to: Vec<lettre::message::Mailbox>,
}

/// How the connection to an SMTP server is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtps://`: TLS from the first byte (port 465).
    Implicit,
    /// `smtp://`: STARTTLS, which the server must offer (port 587).
    StartTls,
    /// `smtp://…?tls=none`: not encrypted, for a relay on this machine or network (port 25);
    /// with a login only on a loopback address.
    Plain,
}

/// How a target's alerts are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFormat {
    /// feedhound's own JSON, for programs (`store::AlertPayload`).
    Json,
    /// A message for a Slack incoming webhook: `{"text": …}` in Slack's markup.
    Slack,
    /// A message for a Discord webhook: `{"content": …}` in Discord's Markdown, pinging nobody.
    Discord,
    /// A push notification through an ntfy server (`url` is the topic's): its JSON, posted to
    /// the server, with the story in plain text and its link opened on a tap.
    Ntfy,
    /// A message from a Telegram bot (`url` is the Bot API's, with the chat): `sendMessage`'s
    /// JSON, in Telegram's HTML, with a preview of the story's link.
    Telegram,
    /// An Adaptive Card for Microsoft Teams (`url` is a Workflows webhook's): the feed's text
    /// shown as written, and a button that opens the story.
    Teams,
    /// A plain-text email: a subject naming the companies and the story, and a body a reader
    /// takes in at a glance.
    Email,
}

/// Where a webhook target's POSTs go. Built with the format that needs it: [`Endpoint::Ntfy`]
/// for every `ntfy` target, [`Endpoint::Telegram`] for every `telegram` one, [`Endpoint::Teams`]
/// for every `teams` one. Not `Debug`, as [`Delivery`] is not: it holds the target's secrets.
#[derive(Clone)]
pub enum Endpoint {
    /// The target's `url`, which takes the body as it is.
    Url,
    Ntfy(NtfyTopic),
    Telegram(TelegramChat),
    /// The target's `url`, a Teams webhook: it takes the card as it is, and answers as
    /// Workflows does.
    Teams,
}

/// An ntfy topic, from its URL: the server's root (the URL without the topic, its user
/// information and query kept), which takes JSON, and the topic's name.
#[derive(Clone, Debug)]
pub struct NtfyTopic {
    pub root: Url,
    pub name: String,
}

impl NtfyTopic {
    /// The topic `url` names, or what is wrong with it (without the name: on a public server it
    /// is the password).
    fn of(url: &Url) -> Result<NtfyTopic, &'static str> {
        let mut segments: Vec<&str> = url.path_segments().map_or_else(Vec::new, Iterator::collect);
        if segments.last() == Some(&"") {
            segments.pop();
        }
        let Some((&name, before)) = segments.split_last() else {
            return Err("ntfy needs the topic's URL, such as https://ntfy.sh/acme-news");
        };
        if !before.is_empty()
            && matches!(
                name,
                "json" | "sse" | "raw" | "ws" | "publish" | "send" | "trigger" | "auth"
            )
        {
            return Err(
                "ends in one of ntfy's paths to subscribe or publish with; give the topic's own URL, such as https://ntfy.sh/acme-news",
            );
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if name.len() > 64 || !name.bytes().all(allowed) {
            return Err("its last part is not an ntfy topic: 1 to 64 letters, digits, `-` and `_`");
        }
        let mut root = url.clone();
        root.set_path(&format!("{}/", before.join("/")));
        Ok(NtfyTopic {
            root,
            name: name.to_owned(),
        })
    }
}

/// A Telegram chat and the bot that writes to it, from a Bot API URL:
/// `https://api.telegram.org/bot<TOKEN>/sendMessage?chat_id=<CHAT>`, or a Bot API server of
/// one's own in place of `api.telegram.org`.
#[derive(Clone)]
pub struct TelegramChat {
    /// The bot's `sendMessage` method: the URL without its query.
    pub send_message: Url,
    /// The bot's token, which an error must not quote.
    pub token: String,
    pub chat_id: TelegramChatId,
    /// A topic of a forum group (`message_thread_id`).
    pub thread: Option<u64>,
}

/// A chat as the Bot API takes it: its number, or a public channel's `@name`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum TelegramChatId {
    Number(i64),
    Name(String),
}

impl TelegramChat {
    /// The chat `url` names, or what is wrong with it (without quoting it: the path holds the
    /// bot's token).
    fn of(url: &Url) -> Result<TelegramChat, &'static str> {
        const SHAPE: &str = "Telegram needs the Bot API's URL with the bot's token and the chat, such as https://api.telegram.org/bot<TOKEN>/sendMessage?chat_id=<CHAT>";
        let mut segments: Vec<&str> = url.path_segments().map_or_else(Vec::new, Iterator::collect);
        if segments.last() == Some(&"") {
            segments.pop();
        }
        // The Bot API reads method names in any case.
        if segments
            .last()
            .is_some_and(|method| method.eq_ignore_ascii_case("sendMessage"))
        {
            segments.pop();
        }
        // A token is the bot's number, `:`, and its key (letters, digits, `-` and `_`).
        let is_token = |token: &str| {
            token.split_once(':').is_some_and(|(bot, key)| {
                !bot.is_empty()
                    && bot.bytes().all(|b| b.is_ascii_digit())
                    && !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
        };
        let token = match segments.last() {
            Some(last) if last.strip_prefix("bot").is_some_and(is_token) => last[3..].to_owned(),
            Some(last) if is_token(last) => {
                return Err(
                    "the bot's token goes after `bot` in the path, as in https://api.telegram.org/bot<TOKEN>/sendMessage?chat_id=<CHAT>",
                );
            }
            _ => return Err(SHAPE),
        };
        if url.scheme() == "http" && !is_loopback(url.host_str().unwrap_or_default()) {
            return Err(
                "would send the bot's token unencrypted: use https, or http only to a Bot API server on this machine",
            );
        }
        let (mut chat_id, mut thread) = (None, None);
        for (key, value) in url.query_pairs() {
            match &*key {
                "chat_id" if chat_id.is_none() => {
                    // A username: 5 to 32 letters, digits and `_`, starting with a letter.
                    let name = value.strip_prefix('@').filter(|name| {
                        (5..=32).contains(&name.len())
                            && name.starts_with(|c: char| c.is_ascii_alphabetic())
                            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    });
                    let number = value
                        .parse::<i64>()
                        .ok()
                        .filter(|&number| number != 0 && !value.starts_with('+'));
                    chat_id = Some(match (number, name) {
                        (Some(number), _) => TelegramChatId::Number(number),
                        (None, Some(_)) => TelegramChatId::Name(value.into_owned()),
                        (None, None) => {
                            return Err(
                                "its chat_id is neither a chat's number (negative for a group or channel) nor a public channel's @name",
                            );
                        }
                    });
                }
                "message_thread_id" if thread.is_none() => {
                    thread = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|&thread: &u64| thread > 0)
                            .ok_or("its message_thread_id is not the number of a topic in a forum group")?,
                    );
                }
                _ => {
                    return Err(
                        "its query may give one chat_id and one message_thread_id, and nothing else",
                    );
                }
            }
        }
        let chat_id = chat_id.ok_or(
            "names no chat: end it with ?chat_id= and the chat's number (negative for a group or channel) or a public channel's @name",
        )?;
        let mut send_message = url.clone();
        send_message.set_query(None);
        send_message.set_path(&format!("/{}/sendMessage", segments.join("/")));
        Ok(TelegramChat {
            send_message,
            token,
            chat_id,
            thread,
        })
    }
}

/// Whether `url` can be a Teams webhook, or what is wrong with it, without quoting it: a
/// workflow's signature, the `sig` in its query, is the password.
fn teams_webhook(url: &Url) -> Result<(), &'static str> {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    // An Office 365 connector answers 200 to a card Teams refused, which would pass for
    // delivered; Microsoft is retiring them.
    if host.ends_with(".webhook.office.com")
        || (matches!(
            host.as_str(),
            "outlook.office.com" | "outlook.office365.com"
        ) && url.path().starts_with("/webhook"))
    {
        return Err(
            "is an Office 365 connector's webhook, which answers 200 even when Teams refuses the card and is being retired; in the channel, add a workflow that starts \"When a Teams webhook request is received\" and give its URL",
        );
    }
    if url.scheme() == "http" && !is_loopback(&host) {
        return Err(
            "would send the webhook's signature unencrypted: use the https URL Teams gives",
        );
    }
    Ok(())
}

impl NotifyConfig {
    /// The target's URL as messages show it: a webhook's origin (its path is often the
    /// credential), or an SMTP server's scheme, host and port (its user information holds the
    /// password).
    pub fn shown_url(&self) -> String {
        match &self.delivery {
            Delivery::Webhook { .. } => origin_only(&self.url),
            Delivery::Email(email) if email.host.contains(':') => {
                format!("{}://[{}]:{}", self.url.scheme(), email.host, email.port)
            }
            Delivery::Email(email) => {
                format!("{}://{}:{}", self.url.scheme(), email.host, email.port)
            }
        }
    }
}

impl fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("NotifyConfig");
        debug
            .field("name", &self.name)
            .field("url", &self.shown_url())
            .field("companies", &self.companies)
            .field("retry_delay", &self.retry_delay)
            .field("backlog", &self.backlog)
            .field("format", &self.delivery.format())
            .field("digest", &self.digest);
        match &self.delivery {
            Delivery::Webhook { secret, .. } => {
                debug.field("secret", &secret.as_ref().map(|_| "***"));
            }
            Delivery::Email(email) => {
                let to: Vec<String> = email.to.iter().map(ToString::to_string).collect();
                debug
                    .field("tls", &email.tls)
                    .field("login", &email.login.as_ref().map(|(user, _)| user))
                    .field("from", &email.from.to_string())
                    .field("to", &to);
            }
        }
        debug.finish()
    }
}

pub const DEFAULT_CONFIG_PATH: &str = "feedhound.toml";

/// The `User-Agent` sent when the config does not set one: names us and our version so
/// publishers can tell who polls them.
pub fn default_user_agent() -> String {
    format!(
        "feedhound/{} (+https://github.com/feedhound/feedhound)",
        env!("CARGO_PKG_VERSION")
    )
}

/// A file the config was read from, and what it was like just before.
pub type ReadFile = (PathBuf, Option<FileStamp>);

/// What a file is like now; any write, rename over it or change of its permissions gives it
/// another stamp, even at the same length within the same second. None when it cannot be looked
/// at (missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl FileStamp {
    pub fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            device: meta.dev(),
            inode: meta.ino(),
            len: meta.len(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// One problem in the config file, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// Dotted path of the offending key (`feed[2].url`), when known.
    pub key: Option<String>,
    pub message: String,
}

/// Everything wrong with a config file; `Display` gives one `file:line: key: message` line each.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub path: PathBuf,
    pub issues: Vec<ConfigIssue>,
    /// As [`Config::read_files`]: a fix to any of them is worth another try.
    pub read_files: Vec<ReadFile>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.path.display())?;
            if let Some(line) = issue.line {
                write!(f, ":{line}")?;
            }
            write!(f, ": ")?;
            // One line per issue: quoted keys, and values quoted in messages, may hold newlines
            // (or any control character, which a terminal would act on).
            let one_line = |text: &str| -> String {
                text.chars()
                    .map(|c| {
                        if c.is_control() {
                            c.escape_default().to_string()
                        } else {
                            c.to_string()
                        }
                    })
                    .collect()
            };
            if let Some(key) = &issue.key {
                write!(f, "{}: ", one_line(key))?;
            }
            write!(f, "{}", one_line(&issue.message))?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates the config file at `path`, and the secrets it keeps elsewhere.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, Secrets::Read)
    }

    /// [`Config::load`] with the secrets kept in files or variables left unread; see
    /// [`Secrets::Unread`] for what that leaves out.
    pub fn load_without_secrets(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, Secrets::Unread)
    }

    fn load_with(path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
        let config_file = (path.to_path_buf(), FileStamp::of(path));
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            path: path.to_path_buf(),
            issues: vec![ConfigIssue {
                line: None,
                key: None,
                message: format!(
                    "cannot read the config file: {err} (pass --config PATH or set FEEDHOUND_CONFIG)"
                ),
            }],
            read_files: Vec::new(),
        });
        match text.and_then(|text| Config::parse_with(&text, path, secrets)) {
            Ok(mut config) => {
                config.read_files.insert(0, config_file);
                config
                    .warnings
                    .extend(world_readable_warning(path, &config.credentials_written));
                Ok(config)
            }
            Err(mut err) => {
                err.read_files.insert(0, config_file);
                Err(err)
            }
        }
    }

    /// Validates config text and reads its secrets; `path` is used for messages and to resolve
    /// relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::parse_with(text, path, Secrets::Read)
    }

    /// Validates config text; `path` is used for messages and to resolve relative paths.
    pub fn parse_with(text: &str, path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
        let fail = |issues| ConfigError {
            path: path.to_path_buf(),
            issues,
            read_files: Vec::new(),
        };
        let toml_issue = |err: toml::de::Error| ConfigIssue {
            line: err.span().map(|span| line_of(text, span.start)),
            key: err.span().and_then(|span| key_at(text, span.start)),
            message: without_the_value(err.message().trim()),
        };
        let deserializer =
            toml::Deserializer::parse(text).map_err(|err| fail(vec![toml_issue(err)]))?;
        // Unknown keys are collected, not fatal at the first: each typo gets its own message,
        // next to every other problem of the file.
        let mut unknown_keys = Vec::new();
        let raw: Result<RawConfig, _> =
            serde_ignored::deserialize(deserializer, |path| unknown_keys.push(KeyPath::of(&path)));
        let mut checker = Checker {
            lines: LineIndex::new(text),
            issues: Vec::new(),
            folder: folder_of(path).to_path_buf(),
            secrets,
            read_files: Vec::new(),
            credentials_written: Vec::new(),
        };
        checker.unknown_keys(text, &unknown_keys);
        let config = match raw {
            Ok(raw) => Some(checker.validate(raw, path)),
            // A wrong type or a missing key stops serde there; the typos met before it (a
            // misspelled required key is both) are still worth reporting with it.
            Err(err) => {
                checker.issues.push(toml_issue(err));
                None
            }
        };
        // In the file's order, as a compiler lists errors; issues without a line last.
        checker
            .issues
            .sort_by_key(|issue| issue.line.unwrap_or(usize::MAX));
        match config {
            Some(config) if checker.issues.is_empty() => Ok(config),
            config => Err(ConfigError {
                read_files: config.map_or(checker.read_files, |c| c.read_files),
                ..fail(checker.issues)
            }),
        }
    }

    /// The database path, resolved against the config file's folder.
    pub fn database_path(&self) -> PathBuf {
        let folder = self.source.parent().unwrap_or(Path::new("."));
        folder.join(&self.storage.path)
    }

    /// Where alerts go, for the store to queue them.
    pub fn alert_routes(&self) -> Vec<crate::store::AlertRoute> {
        self.notify
            .iter()
            .map(|n| crate::store::AlertRoute {
                target: n.name.clone(),
                companies: n.companies.clone(),
                backlog: n.backlog,
                digest: n.digest.is_some(),
            })
            .collect()
    }

    /// The configured name of the company that `name` names (its name or one of its aliases,
    /// compared as the matcher compares names), for the command line's `--company`; an error
    /// listing the names when none does.
    pub fn company_named(&self, name: &str) -> anyhow::Result<&str> {
        company_called(&self.companies, name)
            .map(|c| c.rule.name.as_str())
            .ok_or_else(|| {
                self.none_named(
                    "company",
                    "companies",
                    name,
                    self.companies.iter().map(|c| c.rule.name.as_str()),
                )
            })
    }

    /// The configured feeds `name` names on the command line's `--feed`: those with that
    /// `name` (compared as `--company` compares names: any case or spacing; names need not be
    /// unique), else the one with that URL.
    pub fn feeds_named(&self, name: &str) -> Vec<&FeedConfig> {
        let wanted = comparable_name(name);
        let by_name: Vec<&FeedConfig> = self
            .feeds
            .iter()
            .filter(|feed| {
                feed.name
                    .as_deref()
                    .is_some_and(|n| comparable_name(n) == wanted)
            })
            .collect();
        if !by_name.is_empty() {
            return by_name;
        }
        let url = Url::parse(name.trim()).ok();
        self.feeds
            .iter()
            .filter(|feed| Some(&feed.url) == url.as_ref())
            .collect()
    }

    /// The configured feeds tagged `tag` (compared as names are), for the command line's
    /// `--tag`; an error listing the tags when none is.
    pub fn feeds_tagged(&self, tag: &str) -> anyhow::Result<Vec<&FeedConfig>> {
        let wanted = comparable_name(tag);
        let tagged: Vec<&FeedConfig> = self
            .feeds
            .iter()
            .filter(|feed| feed.tags.iter().any(|t| comparable_name(t) == wanted))
            .collect();
        if tagged.is_empty() {
            let tags: BTreeSet<&str> = self
                .feeds
                .iter()
                .flat_map(|feed| feed.tags.iter().map(String::as_str))
                .collect();
            return Err(self.none_named("feed tag", "feeds' tags", tag, tags.into_iter()));
        }
        Ok(tagged)
    }

    /// The `[[notify]]` target called `name`, for the command line's `--target` and
    /// `--send-test`; an error listing the targets when there is none.
    pub fn notify_named(&self, name: &str) -> anyhow::Result<&NotifyConfig> {
        let target = self.notify.iter().find(|t| t.name == name);
        target.ok_or_else(|| {
            self.none_named(
                "notify target",
                "notify targets",
                name,
                self.notify.iter().map(|t| t.name.as_str()),
            )
        })
    }

    /// The error for a command-line `name` that no `what` in the config has: it lists the
    /// `names` there are, so a typo is easy to see.
    fn none_named<'a>(
        &self,
        what: &str,
        plural: &str,
        name: &str,
        names: impl Iterator<Item = &'a str>,
    ) -> anyhow::Error {
        let names: Vec<&str> = names.collect();
        anyhow::anyhow!(
            "no {what} in {} is named {name:?}; its {plural} are: {}",
            self.source.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )
    }

    pub fn company_rules(&self) -> Vec<CompanyRule> {
        self.companies.iter().map(|c| c.rule.clone()).collect()
    }

    /// Logs each of [`Config::warnings`], for the daemon (at start and on each reload), `poll`
    /// and `alerts --send-test`.
    pub fn log_warnings(&self) {
        for warning in &self.warnings {
            tracing::warn!(config = %self.source.display(), "{warning}");
        }
    }

    /// One line for `feedhound check`.
    pub fn summary(&self) -> String {
        format!(
            "{}: ok — {} feeds, {} companies, database {}, default interval {}, concurrency {}",
            self.source.display(),
            self.feeds.len(),
            self.companies.len(),
            self.database_path().display(),
            humantime::format_duration(self.polling.interval),
            self.polling.concurrency,
        )
    }
}

fn read_secret_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let described = |err: std::io::Error| match err.kind() {
        std::io::ErrorKind::PermissionDenied => {
            format!("{err} (run feedhound as the daemon's user, or as root)")
        }
        _ => err.to_string(),
    };
    // A FIFO or a device would block the daemon's reload, or never end.
    if !std::fs::metadata(path).map_err(described)?.is_file() {
        return Err("it is not a regular file".to_owned());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_SECRET_FILE + 1).read_to_end(&mut bytes))
        .map_err(described)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(format!(
            "it is larger than {} KiB; it should hold the secret alone",
            MAX_SECRET_FILE / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_owned())
}

/// A POSIX shell's variable name: what `env` must hold, so a pasted `NAME=value` is refused.
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn read_secret_variable(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|err| match err {
        std::env::VarError::NotPresent => "it is not set here (run, poll, check, rescan, prune \
                                           and alerts read it: run them with the daemon's \
                                           environment, or keep the secret in a file instead)"
            .to_owned(),
        std::env::VarError::NotUnicode(_) => "it is not UTF-8 text".to_owned(),
    })
}

/// The folder holding the file at `path`: `.` for a bare file name, whose parent is the empty
/// path.
pub fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|folder| !folder.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The warning for a config file with credentials written in it that every user of the machine
/// can read, as a new file is under the usual umask. A file its group can read is left alone
/// (root-owned, group `feedhound`, mode 0640 lets the service's user read it), and so is one in
/// a folder others cannot pass through. `chmod o-r` is offered second only: a service under
/// systemd's `DynamicUser=` reads the file as "other" and would lose it.
fn world_readable_warning(path: &Path, credentials_written: &[(usize, String)]) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    if credentials_written.is_empty() {
        return None;
    }
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    let real = std::fs::canonicalize(path).ok()?;
    let folders_open = real.ancestors().skip(1).all(|folder| {
        std::fs::metadata(folder).is_ok_and(|meta| meta.permissions().mode() & 0o001 != 0)
    });
    if mode & 0o004 == 0 || !folders_open {
        return None;
    }
    let mut in_file_order = credentials_written.to_vec();
    in_file_order.sort();
    let keys: Vec<String> = in_file_order
        .iter()
        .map(|(line, key)| format!("{key} (line {line})"))
        .collect();
    Some(format!(
        "{shown} can be read by every user of this machine (mode {mode:04o}) and has \
         credentials written in it: {keys}. Keep them in files of their own (`{{ file = \
         \"PATH\" }}`; under systemd, `LoadCredential=`; see README, \"Configuration\"), or, \
         if the service reads this file as its owner or group, run `chmod o-r '{shown}'`",
        shown = path.display(),
        keys = keys.join(", "),
    ))
}

/// Whether a `[[feed]] headers` value is a credential, by its header's name.
fn is_credential_header(name: &str) -> bool {
    ["authorization", "cookie"].contains(&name.to_ascii_lowercase().as_str()) || looks_secret(name)
}

/// Whether a URL written in the file carries a credential: a user name or password, or a query
/// parameter named like one (`?token=`); for a `webhook`, also a Slack or Discord webhook's
/// path, or a path segment that looks like a token (see [`is_token_like`]).
fn url_has_credential(url: &Url, webhook: bool) -> bool {
    let is_chat_webhook = match url.host_str() {
        Some("hooks.slack.com") => true,
        Some("discord.com" | "discordapp.com") => url.path().starts_with("/api/webhooks/"),
        _ => false,
    };
    !url.username().is_empty()
        || url.password().is_some()
        || url.query_pairs().any(|(key, _)| looks_secret(&key))
        || (webhook
            && (is_chat_webhook
                || url
                    .path_segments()
                    .is_some_and(|mut path| path.any(is_token_like))))
}

/// An SMTP server as a target's URL names it.
struct SmtpServer {
    host: String,
    port: u16,
    tls: SmtpTls,
    login: Option<(String, String)>,
}

/// The server an `smtp://` or `smtps://` URL names, or what is wrong with it, in words that do
/// not quote it (its user information is the password).
fn smtp_server(url: &Url) -> Result<SmtpServer, String> {
    const ENCODE: &str = "; in a user name or password, write `@` as %40, `:` %3A, `/` %2F, `?` %3F, `#` %23, `%` %25";
    // smtp is not a scheme the URL standard knows, so its host is kept as written: read it as
    // an http host is (IDNA, case), as the connection needs a name DNS takes.
    let host = url
        .host_str()
        .map(|host| host.trim_start_matches('[').trim_end_matches(']'))
        .filter(|host| !host.is_empty())
        .ok_or("names no server: write smtps://USER:PASSWORD@HOST[:PORT]")?;
    let host = percent_encoding::percent_decode_str(host)
        .decode_utf8()
        .ok()
        .and_then(|host| match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Some(ip.to_string()),
            Err(_) => url::Host::parse(&host).ok().map(|host| host.to_string()),
        })
        .ok_or_else(|| format!("names a server that is not a host name{ENCODE}"))?;
    if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
        return Err(format!(
            "must name only the server: smtps://USER:PASSWORD@HOST[:PORT]{ENCODE}"
        ));
    }
    let mut plain = false;
    for (name, value) in url.query_pairs() {
        match (name.as_ref(), value.as_ref()) {
            ("tls", "none") if url.scheme() == "smtp" => plain = true,
            ("tls", _) => {
                return Err(
                    "takes `?tls=none` only, after smtp://, for a relay that does not encrypt; smtp:// alone uses STARTTLS and smtps:// TLS"
                        .to_owned(),
                );
            }
            _ => {
                // Not quoted: a `?` left unencoded in a password puts the rest of it here.
                return Err(format!("has a parameter other than `tls=none`{ENCODE}"));
            }
        }
    }
    let tls = match (url.scheme(), plain) {
        ("smtps", _) => SmtpTls::Implicit,
        (_, false) => SmtpTls::StartTls,
        (_, true) => SmtpTls::Plain,
    };
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map(|text| text.into_owned())
            .map_err(|_| "has a user name or password that is not UTF-8 once decoded".to_owned())
    };
    let login = match (url.username(), url.password()) {
        ("", None) => None,
        ("", Some(_)) => return Err("has a password but no user name".to_owned()),
        (_, None) => {
            return Err("has a user name but no password: smtps://USER:PASSWORD@HOST".to_owned());
        }
        (user, Some(password)) => Some((decode(user)?, decode(password)?)),
    };
    if tls == SmtpTls::Plain && login.is_some() && !is_loopback(&host) {
        return Err(format!(
            "would send its password unencrypted to {host}; leave `tls=none` out (STARTTLS), or use smtps://"
        ));
    }
    let port = url.port().unwrap_or(match tls {
        SmtpTls::Implicit => 465,
        SmtpTls::StartTls => 587,
        SmtpTls::Plain => 25,
    });
    Ok(SmtpServer {
        host,
        port,
        tls,
        login,
    })
}

/// `addresses` as mailboxes (`ana@example.com`, `Ana <ana@example.com>`), or what is wrong.
fn mailboxes(addresses: &[String]) -> Result<Vec<lettre::message::Mailbox>, String> {
    if addresses.is_empty() {
        return Err("is empty; give at least one address to send to".to_owned());
    }
    addresses
        .iter()
        .map(|address| {
            address
                .trim()
                .parse()
                .map_err(|err| format!("{address:?} is not an email address ({err})"))
        })
        .collect()
}

/// Whether `host` (a name, or an IP address in brackets or not) is this machine.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A path segment that reads as a generated token rather than a name: 20 characters or more
/// (Mattermost's are 26, Discord's 68), only letters, digits, `-` and `_`, with both letters and
/// digits among them. `alerts-2026` and `feedhound` are names.
fn is_token_like(segment: &str) -> bool {
    segment.len() >= 20
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && segment.bytes().any(|b| b.is_ascii_digit())
        && segment.bytes().any(|b| b.is_ascii_alphabetic())
}

/// Whether feedhound runs as root: then a file it writes for the service's user (the lock file,
/// an imported config) must be given to that user, or the service could not use it.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// What fetching `url` asks the server for: the URL without its fragment, which is never sent
/// over HTTP. Two feed URLs that differ only there are one feed.
pub fn fetched_document(url: &Url) -> Url {
    let mut document = url.clone();
    document.set_fragment(None);
    document
}

/// The company that `name` names: its name or one of its aliases, compared as the matcher
/// compares names.
fn company_called<'a>(companies: &'a [CompanyConfig], name: &str) -> Option<&'a CompanyConfig> {
    let wanted = comparable_name(name);
    companies.iter().find(|c| {
        std::iter::once(&c.rule.name)
            .chain(&c.rule.aliases)
            .any(|n| comparable_name(n) == wanted)
    })
}

/// serde's "invalid type: string \"…\", expected …" without the value it quotes: the key may hold
/// a secret (a header, a webhook secret), and the message ends up in logs and tickets. The line
/// and key still say where it is.
fn without_the_value(message: &str) -> String {
    for lead in ["invalid type: ", "invalid value: "] {
        let Some(rest) = message.strip_prefix(lead) else {
            continue;
        };
        let Some(expected_at) = rest.rfind(", expected ") else {
            continue;
        };
        let found = &rest[..expected_at];
        let kind = found
            .find(['`', '"'])
            .map_or(found, |quote_at| &found[..quote_at]);
        return format!("{lead}{}{}", kind.trim_end(), &rest[expected_at..]);
    }
    message.to_owned()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key written on the line holding `offset` (`polling.concurrency`), so that serde's
/// type errors, which only say what was expected, still name the key.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('#') {
        return None;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|header| {
            header
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string()
        });
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_string(),
    })
}

/// Where serde_ignored found an unknown key: the keys and array indexes leading to it.
struct KeyPath(Vec<Step>);

enum Step {
    Key(String),
    Index(usize),
}

impl KeyPath {
    fn of(path: &serde_ignored::Path<'_>) -> KeyPath {
        fn walk(path: &serde_ignored::Path<'_>, steps: &mut Vec<Step>) {
            use serde_ignored::Path;
            match path {
                Path::Root => {}
                Path::Seq { parent, index } => {
                    walk(parent, steps);
                    steps.push(Step::Index(*index));
                }
                Path::Map { parent, key } => {
                    walk(parent, steps);
                    // The field through which toml hands a `Spanned` value over: not in the file.
                    if !key.starts_with("$__serde_spanned_private") {
                        steps.push(Step::Key(key.clone()));
                    }
                }
                Path::Some { parent }
                | Path::NewtypeStruct { parent }
                | Path::NewtypeVariant { parent } => walk(parent, steps),
            }
        }
        let mut steps = Vec::new();
        walk(path, &mut steps);
        KeyPath(steps)
    }
}

/// As the other messages name keys: `feed[2].url` for the second [[feed]]; a key that is not
/// bare TOML is quoted.
impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Index(index) => write!(f, "[{}]", index + 1)?,
                Step::Key(key) => {
                    if i > 0 {
                        write!(f, ".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        write!(f, "{key}")?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Where the key at `path` is written in `table`; inline tables and arrays of them included.
fn key_span(table: &dyn toml_edit::TableLike, path: &[Step]) -> Option<Range<usize>> {
    match path {
        [Step::Key(key)] => table.key(key)?.span(),
        [Step::Key(key), Step::Index(index), rest @ ..] => {
            let item = table.get(key)?;
            let element: &dyn toml_edit::TableLike = match item.as_array_of_tables() {
                Some(tables) => tables.get(*index)?,
                None => item.as_array()?.get(*index)?.as_inline_table()?,
            };
            key_span(element, rest)
        }
        [Step::Key(key), rest @ ..] => key_span(table.get(key)?.as_table_like()?, rest),
        _ => None,
    }
}

/// The keys serde reads for struct `T` (what `deny_unknown_fields` would have listed): serde
/// hands them to `deserialize_struct`, where this deserializer stops with them.
fn keys_of<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    #[derive(Debug)]
    struct Keys(&'static [&'static str]);
    impl fmt::Display for Keys {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl std::error::Error for Keys {}
    impl serde::de::Error for Keys {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Keys(&[])
        }
    }
    struct Probe;
    impl<'de> serde::Deserializer<'de> for Probe {
        type Error = Keys;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Keys> {
            Err(Keys(&[]))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Keys> {
            Err(Keys(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Keys(keys)) => keys,
        Ok(_) => &[],
    }
}

// ---- raw shapes, exactly as written in the file ----

#[derive(Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    polling: RawPolling,
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    feed: Vec<RawFeed>,
    #[serde(default)]
    company: Vec<RawCompany>,
    #[serde(default)]
    notify: Vec<RawNotify>,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    reports: RawReports,
}

#[derive(Deserialize, Default)]
struct RawReports {
    time_zone: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
struct RawServer {
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
struct RawNotify {
    name: Option<Spanned<String>>,
    url: Spanned<RawSecret>,
    secret: Option<Spanned<RawSecret>>,
    companies: Option<Vec<Spanned<String>>>,
    retry_delay: Option<Spanned<String>>,
    #[serde(default)]
    backlog: bool,
    format: Option<Spanned<String>>,
    digest: Option<Spanned<toml::Value>>,
    time_zone: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    /// An address, or a list of them.
    to: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize, Default)]
struct RawStorage {
    busy_timeout: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    retain: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
struct RawPolling {
    interval: Option<Spanned<String>>,
    min_interval: Option<Spanned<String>>,
    max_interval: Option<Spanned<String>>,
    max_backoff: Option<Spanned<String>>,
    concurrency: Option<Spanned<i64>>,
    per_host_concurrency: Option<Spanned<i64>>,
    per_host_delay: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    max_body_size: Option<Spanned<RawSize>>,
    user_agent: Option<Spanned<String>>,
    private_article_links: Option<bool>,
}

#[derive(Deserialize, Default)]
struct RawDaemon {
    shutdown_grace: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(i64),
    Text(String),
}

#[derive(Deserialize)]
struct RawFeed {
    url: Spanned<String>,
    name: Option<String>,
    interval: Option<Spanned<String>>,
    #[serde(default)]
    tags: Vec<String>,
    /// `Spanned<String>` keys fail here ("non-string key"), so a header's line is its value's: a
    /// TOML key and its value start on the same line.
    #[serde(default)]
    headers: BTreeMap<String, Spanned<RawSecret>>,
    #[serde(default)]
    fetch_articles: bool,
}

/// A value that may be a secret (`[[notify]] url` and `secret`, a `[[feed]]` header): written
/// in the file, or read at load from another file or an environment variable, so that the
/// config can be shared, versioned or shown without it.
enum RawSecret {
    Written(String),
    /// `{ file = "PATH" }`, relative to the config file's folder.
    File(String),
    /// `{ env = "NAME" }`.
    Env(String),
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawSecret;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a string, or { file = "PATH" } or { env = "NAME" }"#)
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawSecret, E> {
                Ok(RawSecret::Written(text.to_owned()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawSecret, A::Error> {
                use serde::de::{Error, IgnoredAny, Unexpected};
                let mut source = None;
                while let Some(key) = map.next_key::<String>()? {
                    let read = match key.as_str() {
                        "file" => RawSecret::File(map.next_value()?),
                        "env" => RawSecret::Env(map.next_value()?),
                        // How toml hands over a date or time.
                        _ if key.starts_with("$__toml_private") => {
                            return Err(A::Error::invalid_type(
                                Unexpected::Other("date or time"),
                                &self,
                            ));
                        }
                        // Ignored, so that serde_ignored reports it with the other unknown keys.
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    if source.replace(read).is_some() {
                        return Err(A::Error::custom("give `file` or `env`, not both"));
                    }
                }
                source.ok_or_else(|| A::Error::invalid_type(Unexpected::Map, &self))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A secret as the config gave it, once read: its text, and where it was read from for messages
/// about it (which must not quote it).
struct SecretText {
    text: String,
    /// `"; it was read from the file /run/secrets/hook"`, or empty when it was written in the
    /// config.
    read_from: String,
}

// A token, a key or a URL is far smaller: a larger file is the wrong file.
const MAX_SECRET_FILE: u64 = 64 * 1024;

#[derive(Deserialize)]
struct RawCompany {
    name: Spanned<String>,
    #[serde(default)]
    aliases: Vec<Spanned<String>>,
    #[serde(default)]
    case_sensitive: bool,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    #[serde(default)]
    require_any: Vec<Spanned<String>>,
    fields: Option<Spanned<Vec<RawField>>>,
    ticker: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawField {
    Title,
    Summary,
    Content,
    Article,
}

// ---- validation ----

struct Checker {
    lines: LineIndex,
    issues: Vec<ConfigIssue>,
    /// The config file's folder, against which a secret's relative `file` is read.
    folder: PathBuf,
    secrets: Secrets,
    read_files: Vec<ReadFile>,
    credentials_written: Vec<(usize, String)>,
}

/// Where each line of the config starts, so that naming the line of a value is a binary search,
/// not a count of the newlines before it (which made validating 10,000 feeds take 2 s).
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        LineIndex(
            std::iter::once(0)
                .chain(memchr::memchr_iter(b'\n', text.as_bytes()).map(|newline| newline + 1))
                .collect(),
        )
    }

    /// The 1-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset)
    }
}

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30 * 60);
// Polling a publisher more often than every five minutes gains a reader nothing and is what
// gets pollers' addresses blocked.
const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(5 * 60);
const DEFAULT_MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);
// Two connections per host is what browsers and polite crawlers keep to.
const DEFAULT_PER_HOST_CONCURRENCY: usize = 2;
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
// Enough parallelism to hide network latency, few enough not to look like a crawler swarm.
const DEFAULT_CONCURRENCY: usize = 16;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
// The largest real feeds (podcasts with years of items) are a few MB; 16 MiB leaves room.
const DEFAULT_MAX_BODY_SIZE: u64 = 16 * 1024 * 1024;
const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(30);
// Entries age by days; a shorter retention is almost surely "6m" written for six months (it
// means six minutes) and would delete nearly everything.
const MIN_RETAIN: Duration = Duration::from_secs(24 * 3600);
const SHORT_RETAIN: &str =
    "must be at least one day; write e.g. \"180d\" (\"m\" is minutes, months are \"M\")";
// No setting means more than a century; longer ones would overflow the dates computed from them.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
const LONG_DURATION: &str = "must be at most 100 years";
// SQLite takes its busy timeout in milliseconds, as a C int.
const MAX_BUSY_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// Reads `prune --retain`, held to the same floor as `[storage] retain`.
pub fn parse_retain(text: &str) -> Result<Duration, String> {
    let retain = humantime::parse_duration(text.trim()).map_err(|err| err.to_string())?;
    if retain < MIN_RETAIN {
        return Err(SHORT_RETAIN.to_string());
    }
    if retain > MAX_DURATION {
        return Err(LONG_DURATION.to_string());
    }
    Ok(retain)
}

/// A `time_zone` or `--time-zone`: a name of the IANA database (`"Europe/Berlin"`), as it is
/// spelt there.
pub fn parse_time_zone(name: &str) -> Result<Tz, String> {
    let name = name.trim();
    if let Ok(zone) = name.parse::<Tz>() {
        return Ok(zone);
    }
    Err(
        match chrono_tz::TZ_VARIANTS
            .iter()
            .find(|zone| zone.name().eq_ignore_ascii_case(name))
        {
            Some(zone) => format!("{name:?} is spelt {:?} in the IANA database", zone.name()),
            None => format!(
                "{name:?} is not a time zone of the IANA database; write one such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\""
            ),
        },
    )
}

impl Checker {
    fn issue(
        &mut self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.issues.push(ConfigIssue {
            line: span.map(|s| self.lines.line_of(s.start)),
            key: Some(key.into()),
            message: message.into(),
        });
    }

    /// One issue per key serde ignored, at the key's line, with the keys its table takes.
    fn unknown_keys(&mut self, text: &str, paths: &[KeyPath]) {
        if paths.is_empty() {
            return;
        }
        let document = toml_edit::Document::parse(text).ok();
        for path in paths {
            let Some((Step::Key(key), parents)) = path.0.split_last() else {
                continue;
            };
            let span = document
                .as_ref()
                .and_then(|doc| key_span(doc.as_table(), &path.0));
            let table = parents.iter().rev().find_map(|step| match step {
                Step::Key(name) => Some(name.as_str()),
                Step::Index(_) => None,
            });
            let under_headers =
                matches!(parents.iter().rev().nth(1), Some(Step::Key(k)) if k == "headers");
            let known = match table {
                // A secret's `{ file = … }` or `{ env = … }`.
                Some("secret" | "url") => &["file", "env"],
                Some(_) if under_headers => &["file", "env"],
                None => keys_of::<RawConfig>(),
                Some("storage") => keys_of::<RawStorage>(),
                Some("polling") => keys_of::<RawPolling>(),
                Some("daemon") => keys_of::<RawDaemon>(),
                Some("server") => keys_of::<RawServer>(),
                Some("reports") => keys_of::<RawReports>(),
                Some("feed") => keys_of::<RawFeed>(),
                Some("company") => keys_of::<RawCompany>(),
                Some("notify") => keys_of::<RawNotify>(),
                Some(_) => &[],
            };
            let mut message = format!("unknown key `{key}`");
            if !known.is_empty() {
                let expected: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
                message.push_str(&format!(", expected one of {}", expected.join(", ")));
            }
            self.issue(span, path.to_string(), message);
        }
    }

    fn duration(&mut self, raw: Option<Spanned<String>>, key: &str, default: Duration) -> Duration {
        let Some(raw) = raw else { return default };
        match humantime::parse_duration(raw.get_ref().trim()) {
            Ok(d) if d.is_zero() => {
                self.issue(Some(raw.span()), key, "must be longer than zero");
                default
            }
            Ok(d) if d > MAX_DURATION => {
                self.issue(Some(raw.span()), key, LONG_DURATION);
                default
            }
            Ok(d) => d,
            Err(err) => {
                self.issue(
                    Some(raw.span()),
                    key,
                    format!(
                        "cannot read {:?} as a duration ({err}); write e.g. \"90s\", \"15m\", \"2h\"",
                        raw.get_ref()
                    ),
                );
                default
            }
        }
    }

    /// A `time_zone` (see [`parse_time_zone`]).
    fn time_zone(&mut self, raw: Spanned<String>, key: &str) -> Option<Tz> {
        parse_time_zone(raw.get_ref())
            .map_err(|message| self.issue(Some(raw.span()), key, message))
            .ok()
    }

    /// A `digest`: a time of day (`"08:00"`, or TOML's `08:00:00`), one on a day or a range of
    /// days of the week (`"Mon 08:00"`, `"Mon-Fri 08:00"`), a list of them, or a period that
    /// divides a day (`"1h"`: on the hour) or is a week.
    fn digest(&mut self, raw: Spanned<toml::Value>, key: &str) -> Option<DigestTimes> {
        const FORMS: &str = "write a time of day (\"08:00\"), one on a day or days of the week (\"Mon 08:00\", \"Mon-Fri 08:00\"), a list of them ([\"08:00\", \"17:30\"]) or a period that divides a day (\"1h\") or is a week (\"1w\")";
        let span = raw.span();
        let time_of = |value: &toml::Value| -> Result<Vec<DigestTime>, String> {
            match value {
                toml::Value::String(text) => {
                    let text = text.trim();
                    let (days, clock) = match text.rsplit_once(char::is_whitespace) {
                        Some((days, clock)) => {
                            let days = days.trim_end();
                            let days = digest_days(days).ok_or_else(|| {
                                format!("cannot read {days:?} in {text:?} as a day of the week (\"Mon\" or \"Monday\") or a range of two (\"Mon-Fri\"); {FORMS}")
                            })?;
                            (days.into_iter().map(Some).collect(), clock)
                        }
                        None => (vec![None], text),
                    };
                    let time = NaiveTime::parse_from_str(clock, "%H:%M")
                        .or_else(|_| NaiveTime::parse_from_str(clock, "%H:%M:%S"))
                        .map_err(|_| format!("cannot read {text:?} as a time of day; {FORMS}"))?;
                    Ok(days
                        .into_iter()
                        .map(|weekday| DigestTime { weekday, time })
                        .collect())
                }
                toml::Value::Datetime(toml::value::Datetime {
                    date: None,
                    time: Some(time),
                    offset: None,
                }) => NaiveTime::from_hms_opt(
                    u32::from(time.hour),
                    u32::from(time.minute),
                    u32::from(time.second.unwrap_or(0)),
                )
                .map(|time| {
                    vec![DigestTime {
                        weekday: None,
                        time,
                    }]
                })
                .ok_or_else(|| format!("{time} is not a time of day")),
                other => {
                    let kind = other.type_str();
                    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
                        "an"
                    } else {
                        "a"
                    };
                    Err(format!("{article} {kind} is not a digest time; {FORMS}"))
                }
            }
        };
        let times = match raw.into_inner() {
            toml::Value::String(text) if !text.contains(':') => {
                match humantime::parse_duration(text.trim()) {
                    Ok(period) => DigestTimes::every(period)
                        .ok_or_else(|| format!("{text:?}: {}; or {FORMS}", digest::PERIOD_RULE)),
                    Err(_) => Err(format!(
                        "cannot read {text:?} as a time or a period; {FORMS}"
                    )),
                }
            }
            value => {
                let values = match value {
                    toml::Value::Array(values) => values,
                    value => vec![value],
                };
                values
                    .iter()
                    .map(time_of)
                    .collect::<Result<Vec<_>, _>>()
                    .and_then(|times| {
                        DigestTimes::at(times.concat())
                            .ok_or_else(|| format!("must name at least one time; {FORMS}"))
                    })
            }
        };
        match times {
            Ok(times) => Some(times),
            Err(message) => {
                self.issue(Some(span), key, message);
                None
            }
        }
    }

    fn count(&mut self, raw: Option<Spanned<i64>>, key: &str, default: usize) -> usize {
        match raw {
            None => default,
            Some(c) if (1..=1024).contains(c.get_ref()) => *c.get_ref() as usize,
            Some(c) => {
                self.issue(Some(c.span()), key, "must be between 1 and 1024");
                default
            }
        }
    }

    fn validate(&mut self, raw: RawConfig, path: &Path) -> Config {
        let storage = StorageConfig {
            path: match raw.storage.path {
                Some(p) if p.get_ref().trim().is_empty() => {
                    self.issue(Some(p.span()), "storage.path", "must not be empty");
                    PathBuf::from("feedhound.db")
                }
                Some(p) => PathBuf::from(p.into_inner()),
                None => PathBuf::from("feedhound.db"),
            },
            retain: self.retain(raw.storage.retain),
            busy_timeout: self.busy_timeout(raw.storage.busy_timeout),
        };
        let server = self.server(raw.server);
        let polling = self.polling(raw.polling);
        let daemon = DaemonConfig {
            shutdown_grace: match raw.daemon.shutdown_grace {
                // Zero is a valid choice here: cancel fetches at once.
                Some(grace) if grace.get_ref().trim() == "0s" => Duration::ZERO,
                grace => self.duration(grace, "daemon.shutdown_grace", DEFAULT_SHUTDOWN_GRACE),
            },
        };
        let feeds = self.feeds(raw.feed);
        let companies = self.companies(raw.company);
        let notify = self.notify(raw.notify, &companies);
        let reports = ReportsConfig {
            clock: raw
                .reports
                .time_zone
                .and_then(|zone| self.time_zone(zone, "reports.time_zone"))
                .map(crate::report_clock::ReportClock::new)
                .unwrap_or_default(),
        };
        Config {
            source: path.to_path_buf(),
            storage,
            polling,
            daemon,
            feeds,
            companies,
            notify,
            server,
            reports,
            read_files: std::mem::take(&mut self.read_files),
            secrets: self.secrets,
            warnings: Vec::new(),
            credentials_written: std::mem::take(&mut self.credentials_written),
        }
    }

    fn retain(&mut self, raw: Option<Spanned<String>>) -> Option<Duration> {
        let span = raw.as_ref()?.span();
        let retain = self.duration(raw, "storage.retain", MIN_RETAIN);
        if retain < MIN_RETAIN {
            self.issue(Some(span), "storage.retain", SHORT_RETAIN);
        }
        Some(retain)
    }

    fn busy_timeout(&mut self, raw: Option<Spanned<String>>) -> Duration {
        let span = raw.as_ref().map(|r| r.span());
        let timeout = self.duration(raw, "storage.busy_timeout", crate::store::BUSY_TIMEOUT);
        if timeout > MAX_BUSY_TIMEOUT {
            self.issue(
                span,
                "storage.busy_timeout",
                "must be at most 24 days (SQLite counts it in milliseconds); a few seconds is usual",
            );
            return crate::store::BUSY_TIMEOUT;
        }
        timeout
    }

    fn server(&mut self, raw: RawServer) -> ServerConfig {
        let Some(listen) = raw.listen else {
            return ServerConfig::default();
        };
        match listen.get_ref().trim().parse() {
            Ok(addr) => ServerConfig { listen: Some(addr) },
            Err(_) => {
                self.issue(
                    Some(listen.span()),
                    "server.listen",
                    format!(
                        "cannot read {:?} as an address and port; write e.g. \"127.0.0.1:9187\"",
                        listen.get_ref()
                    ),
                );
                ServerConfig::default()
            }
        }
    }

    fn polling(&mut self, raw: RawPolling) -> PollingConfig {
        let interval = self.duration(raw.interval, "polling.interval", DEFAULT_INTERVAL);
        let timeout = self.duration(raw.timeout, "polling.timeout", DEFAULT_TIMEOUT);
        let connect_timeout = self.duration(
            raw.connect_timeout,
            "polling.connect_timeout",
            DEFAULT_CONNECT_TIMEOUT,
        );
        let min_interval = self.duration(
            raw.min_interval,
            "polling.min_interval",
            DEFAULT_MIN_INTERVAL,
        );
        let max_span = raw.max_interval.as_ref().map(|m| m.span());
        let max_interval = self.duration(
            raw.max_interval,
            "polling.max_interval",
            DEFAULT_MAX_INTERVAL,
        );
        if max_interval < min_interval {
            self.issue(
                max_span,
                "polling.max_interval",
                "must not be shorter than polling.min_interval",
            );
        }
        let max_backoff =
            self.duration(raw.max_backoff, "polling.max_backoff", DEFAULT_MAX_BACKOFF);
        let per_host_delay = match raw.per_host_delay {
            Some(delay) if delay.get_ref().trim() == "0s" => Duration::ZERO,
            delay => self.duration(delay, "polling.per_host_delay", Duration::ZERO),
        };
        let concurrency = self.count(raw.concurrency, "polling.concurrency", DEFAULT_CONCURRENCY);
        let per_host_concurrency = self.count(
            raw.per_host_concurrency,
            "polling.per_host_concurrency",
            DEFAULT_PER_HOST_CONCURRENCY,
        );
        let max_body_size = match raw.max_body_size {
            None => DEFAULT_MAX_BODY_SIZE,
            Some(size) => {
                let span = size.span();
                let parsed = match size.into_inner() {
                    RawSize::Bytes(n) => {
                        u64::try_from(n).map_err(|_| "must not be negative".to_string())
                    }
                    RawSize::Text(t) => t
                        .trim()
                        .parse::<bytesize::ByteSize>()
                        .map(|b| b.as_u64())
                        .map_err(|err| {
                            format!("cannot read {t:?} as a size ({err}); write e.g. \"16 MiB\"")
                        }),
                };
                match parsed {
                    Ok(n) if n >= 1024 => n,
                    Ok(_) => {
                        self.issue(
                            Some(span),
                            "polling.max_body_size",
                            "must be at least 1 KiB",
                        );
                        DEFAULT_MAX_BODY_SIZE
                    }
                    Err(message) => {
                        self.issue(Some(span), "polling.max_body_size", message);
                        DEFAULT_MAX_BODY_SIZE
                    }
                }
            }
        };
        let user_agent = match raw.user_agent {
            Some(ua) if ua.get_ref().trim().is_empty() => {
                self.issue(Some(ua.span()), "polling.user_agent", "must not be empty");
                default_user_agent()
            }
            Some(ua) if reqwest::header::HeaderValue::from_str(ua.get_ref()).is_err() => {
                self.issue(
                    Some(ua.span()),
                    "polling.user_agent",
                    "must be printable text on one line (it is sent as an HTTP header)",
                );
                default_user_agent()
            }
            Some(ua) => ua.into_inner(),
            None => default_user_agent(),
        };
        PollingConfig {
            interval,
            min_interval,
            max_interval,
            max_backoff,
            concurrency,
            per_host_concurrency,
            per_host_delay,
            timeout,
            connect_timeout,
            max_body_size,
            user_agent,
            private_article_links: raw.private_article_links.unwrap_or(false),
        }
    }

    fn feeds(&mut self, raw: Vec<RawFeed>) -> Vec<FeedConfig> {
        // The URL without its fragment → the line and URL of the first [[feed]] naming it. Only
        // the first is recorded, so every later copy cites it.
        let mut seen: HashMap<Url, (usize, Url)> = HashMap::new();
        let mut feeds = Vec::with_capacity(raw.len());
        for (index, feed) in raw.into_iter().enumerate() {
            let key = format!("feed[{}]", index + 1);
            let span = feed.url.span();
            let interval = feed
                .interval
                .map(|i| self.duration(Some(i), &format!("{key}.interval"), DEFAULT_INTERVAL));
            let headers = self.feed_headers(feed.headers, &key);
            let url = match Url::parse(feed.url.get_ref().trim()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => url,
                Ok(url) => {
                    self.issue(
                        Some(span),
                        format!("{key}.url"),
                        format!(
                            "only http and https feeds can be polled, not {}:",
                            url.scheme()
                        ),
                    );
                    continue;
                }
                Err(err) => {
                    // Text that is not a URL cannot be masked and may hold a password: the line
                    // and key say which one it is.
                    self.issue(
                        Some(span),
                        format!("{key}.url"),
                        format!("is not a valid URL ({err})"),
                    );
                    continue;
                }
            };
            match seen.entry(fetched_document(&url)) {
                Entry::Vacant(slot) => {
                    slot.insert((self.line(&span), url.clone()));
                }
                Entry::Occupied(first) => {
                    let (line, first_url) = first.get();
                    let message = if *first_url == url {
                        format!(
                            "{} is already listed on line {line}; remove one of them",
                            redact(&url)
                        )
                    } else {
                        format!(
                            "{} is the same feed as {} on line {line} (the #fragment is not sent \
                             to the server); remove one of them",
                            redact(&url),
                            redact(first_url)
                        )
                    };
                    self.issue(Some(span), format!("{key}.url"), message);
                    continue;
                }
            }
            if url_has_credential(&url, false) {
                self.note_credential_written(&format!("{key}.url"), &span);
            }
            let has_credentials = !url.username().is_empty() || url.password().is_some();
            if has_credentials && headers.contains_key(reqwest::header::AUTHORIZATION) {
                self.issue(
                    Some(span),
                    format!("{key}.url"),
                    "carries a user name or password, which is sent as the Authorization header, \
                     and headers has an Authorization too; keep one of them",
                );
                continue;
            }
            feeds.push(FeedConfig {
                name: feed.name.filter(|n| !n.trim().is_empty()),
                interval,
                tags: feed.tags,
                headers: (!headers.is_empty()).then(|| FeedHeaders::new(&url, headers)),
                fetch_articles: feed.fetch_articles,
                url,
            });
        }
        feeds
    }

    /// The feed's valid headers; each invalid one, and each name given twice (names are compared
    /// ignoring case), is an issue at its line.
    fn feed_headers(
        &mut self,
        raw: BTreeMap<String, Spanned<RawSecret>>,
        key: &str,
    ) -> reqwest::header::HeaderMap {
        let mut in_file_order: Vec<_> = raw.into_iter().collect();
        in_file_order.sort_by_key(|(_, value)| value.span().start);
        let mut headers = reqwest::header::HeaderMap::new();
        let mut first_lines = HashMap::new();
        for (name, value) in in_file_order {
            let path = format!("{key}.headers.{name}");
            let span = value.span();
            let Some(value) = self.secret(value, &path) else {
                continue;
            };
            if value.read_from.is_empty() && is_credential_header(&name) {
                self.note_credential_written(&path, &span);
            }
            match parse_feed_header(&name, &value.text) {
                Ok((header, value)) => match first_lines.entry(header.clone()) {
                    Entry::Vacant(first) => {
                        first.insert(self.line(&span));
                        headers.insert(header, value);
                    }
                    Entry::Occupied(first) => self.issue(
                        Some(span),
                        path,
                        format!(
                            "is the same header as the one on line {} (names are compared \
                             ignoring case); keep one of them",
                            first.get()
                        ),
                    ),
                },
                Err(message) => {
                    self.issue(Some(span), path, format!("{message}{}", value.read_from))
                }
            }
        }
        headers
    }

    /// Every key of every target is checked, whatever else is wrong with it, so that one `check`
    /// lists every problem; only a target with no problem is kept.
    fn notify(&mut self, raw: Vec<RawNotify>, companies: &[CompanyConfig]) -> Vec<NotifyConfig> {
        // Name → where the first target with it says so: its `name` key, or its `url` for a
        // default name.
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut targets = Vec::with_capacity(raw.len());
        for (index, target) in raw.into_iter().enumerate() {
            let key = format!("notify[{}]", index + 1);
            let url_span = target.url.span();
            let url =
                self.secret(target.url, &format!("{key}.url"))
                    .and_then(|url| match Url::parse(url.text.trim()) {
                        Ok(parsed)
                            if matches!(parsed.scheme(), "http" | "https" | "smtp" | "smtps")
                                && parsed.host().is_some() =>
                        {
                            let webhook = matches!(parsed.scheme(), "http" | "https");
                            if url.read_from.is_empty() && url_has_credential(&parsed, webhook) {
                                self.note_credential_written(&format!("{key}.url"), &url_span);
                            }
                            Some((parsed, url.read_from))
                        }
                        _ => {
                            // The URL may carry a token: say what is wrong without echoing it.
                            self.issue(
                                Some(url_span.clone()),
                                format!("{key}.url"),
                                format!(
                                    "must be an http or https URL (a webhook), or smtp or smtps (email){}",
                                    url.read_from
                                ),
                            );
                            None
                        }
                    });
            let is_email = url
                .as_ref()
                .is_some_and(|(url, _)| matches!(url.scheme(), "smtp" | "smtps"));
            // A secret left unread leaves the target out (see `Secrets::Unread`): alerts must
            // not go out unsigned.
            let secret_span = target.secret.as_ref().map(|secret| secret.span());
            let secret = match target.secret {
                None => Some(None),
                Some(raw) => {
                    let span = raw.span();
                    self.secret(raw, &format!("{key}.secret")).map(|secret| {
                        if secret.read_from.is_empty() && !secret.text.is_empty() {
                            self.note_credential_written(&format!("{key}.secret"), &span);
                        }
                        Some(secret.text).filter(|text| !text.is_empty())
                    })
                }
            };
            let name_span = target
                .name
                .as_ref()
                .map_or_else(|| url_span.clone(), |name| name.span());
            let name = match target.name {
                Some(name) if name.get_ref().trim().is_empty() => {
                    self.issue(
                        Some(name_span.clone()),
                        format!("{key}.name"),
                        "must not be empty",
                    );
                    None
                }
                Some(name) => Some(name.into_inner().trim().to_string()),
                None if is_email => Some(format!("email-{}", index + 1)),
                None => Some(format!("webhook-{}", index + 1)),
            };
            let name = name.and_then(|name| match names.entry(name.clone()) {
                Entry::Vacant(slot) => {
                    slot.insert(self.line(&name_span));
                    Some(name)
                }
                Entry::Occupied(first) => {
                    self.issue(
                        Some(name_span.clone()),
                        format!("{key}.name"),
                        format!(
                            "notify target {name:?} is already defined on line {}; give each a unique name",
                            first.get()
                        ),
                    );
                    None
                }
            });
            let retry_delay = self.duration(
                target.retry_delay,
                &format!("{key}.retry_delay"),
                DEFAULT_RETRY_DELAY,
            );
            let filter = target.companies.map(|wanted| {
                wanted
                    .into_iter()
                    .filter_map(|company| {
                        // Kept as the company's own name, which mentions carry.
                        let known = company_called(companies, company.get_ref())
                            .map(|c| c.rule.name.clone());
                        if known.is_none() {
                            self.issue(
                                Some(company.span()),
                                format!("{key}.companies"),
                                format!(
                                    "{:?} is not the name or an alias of a [[company]]",
                                    company.get_ref()
                                ),
                            );
                        }
                        known
                    })
                    .collect()
            });
            let format = match target.format {
                None if is_email => Some(AlertFormat::Email),
                None => Some(AlertFormat::Json),
                Some(format) => {
                    let known = match format.get_ref().trim() {
                        "json" if !is_email => Some(AlertFormat::Json),
                        "slack" if !is_email => Some(AlertFormat::Slack),
                        "discord" if !is_email => Some(AlertFormat::Discord),
                        "ntfy" if !is_email => Some(AlertFormat::Ntfy),
                        "telegram" if !is_email => Some(AlertFormat::Telegram),
                        "teams" if !is_email => Some(AlertFormat::Teams),
                        "email" if is_email || url.is_none() => Some(AlertFormat::Email),
                        _ => None,
                    };
                    if known.is_none() {
                        let message = match format.get_ref().trim() {
                            "json" | "slack" | "discord" | "ntfy" | "telegram" | "teams" => format!(
                                "{:?} is a webhook's format, and this target's url is an SMTP server; leave `format` out for email",
                                format.get_ref()
                            ),
                            "email" => "\"email\" needs an smtp:// or smtps:// url, the server that sends it".to_owned(),
                            _ => format!(
                                "{:?} is not a format; use \"json\" (feedhound's payload), \"slack\", \"discord\", \"ntfy\", \"telegram\" or \"teams\" for a webhook, \"email\" with an smtp:// or smtps:// url",
                                format.get_ref()
                            ),
                        };
                        self.issue(Some(format.span()), format!("{key}.format"), message);
                    }
                    known
                }
            };
            let digest = match (target.digest, target.time_zone) {
                (None, None) => Some(None),
                (None, Some(zone)) => {
                    self.issue(
                        Some(zone.span()),
                        format!("{key}.time_zone"),
                        "sets the clock of this target's digest times, and it has no `digest`; add one or remove this key",
                    );
                    None
                }
                (Some(times), zone) => {
                    let times = self.digest(times, &format!("{key}.digest"));
                    let zone = match zone {
                        None => Some(None),
                        Some(zone) => self.time_zone(zone, &format!("{key}.time_zone")).map(Some),
                    };
                    times
                        .zip(zone)
                        .map(|(times, zone)| Some(DigestSchedule { times, zone }))
                }
            };
            let delivery = match url {
                None => None,
                Some((url, read_from)) if is_email => {
                    if let Some(secret) = &secret_span {
                        self.issue(
                            Some(secret.clone()),
                            format!("{key}.secret"),
                            "signs webhook POSTs, and this target sends email; remove it",
                        );
                    }
                    self.email(&url, &read_from, &url_span, target.from, target.to, &key)
                        .map(|email| (url, Delivery::Email(email)))
                }
                Some((url, read_from)) => {
                    let addresses = [
                        ("from", target.from.map(|from| from.span())),
                        ("to", target.to.map(|to| to.span())),
                    ];
                    for (address_key, span) in addresses {
                        let Some(span) = span else { continue };
                        self.issue(
                            Some(span),
                            format!("{key}.{address_key}"),
                            "is an email address, and this target's url is a webhook; email needs an smtp:// or smtps:// url",
                        );
                    }
                    // The API a format posts to, from the url, and why a secret is no use there.
                    let api = match format {
                        Some(AlertFormat::Ntfy) => Some((
                            NtfyTopic::of(&url).map(Endpoint::Ntfy),
                            "signs webhook POSTs, which ntfy does not check; remove it, and log in to a protected topic with the url's user and password",
                        )),
                        Some(AlertFormat::Telegram) => Some((
                            TelegramChat::of(&url).map(Endpoint::Telegram),
                            "signs webhook POSTs, which Telegram does not check; remove it",
                        )),
                        Some(AlertFormat::Teams) => Some((
                            teams_webhook(&url).map(|()| Endpoint::Teams),
                            "signs webhook POSTs, which a Teams workflow does not check; remove it (the url's signature is the password)",
                        )),
                        _ => None,
                    };
                    let endpoint = match api {
                        None => Some(Endpoint::Url),
                        Some((Ok(endpoint), unchecked)) => {
                            // A public ntfy server's topic, like a bot's token, is the key to
                            // what it sends.
                            if read_from.is_empty() && !url_has_credential(&url, true) {
                                self.note_credential_written(&format!("{key}.url"), &url_span);
                            }
                            if let Some(secret) = &secret_span {
                                self.issue(
                                    Some(secret.clone()),
                                    format!("{key}.secret"),
                                    unchecked,
                                );
                            }
                            Some(endpoint)
                        }
                        Some((Err(problem), _)) => {
                            self.issue(Some(url_span.clone()), format!("{key}.url"), problem);
                            None
                        }
                    };
                    secret
                        .zip(format)
                        .zip(endpoint)
                        .map(|((secret, format), endpoint)| {
                            (
                                url,
                                Delivery::Webhook {
                                    format,
                                    secret,
                                    endpoint,
                                },
                            )
                        })
                }
            };
            let (Some((url, delivery)), Some(name), Some(_), Some(digest)) =
                (delivery, name, format, digest)
            else {
                continue;
            };
            targets.push(NotifyConfig {
                name,
                url,
                companies: filter,
                retry_delay,
                backlog: target.backlog,
                delivery,
                digest,
            });
        }
        targets
    }

    /// The SMTP server `url` names and the addresses of an email target, or None after noting
    /// each problem. `read_from` says where the URL was read from, as it is not quoted.
    fn email(
        &mut self,
        url: &Url,
        read_from: &str,
        url_span: &Range<usize>,
        from: Option<Spanned<String>>,
        to: Option<Spanned<toml::Value>>,
        key: &str,
    ) -> Option<EmailConfig> {
        let server = smtp_server(url).map_err(|problem| {
            self.issue(
                Some(url_span.clone()),
                format!("{key}.url"),
                format!("{problem}{read_from}"),
            );
        });
        let to_span = to.as_ref().map(|to| to.span());
        let to = match to.map(Spanned::into_inner) {
            None => Err(
                "an email target needs the addresses to send to: to = [\"ana@example.com\"]"
                    .to_owned(),
            ),
            Some(toml::Value::String(one)) => mailboxes(&[one]),
            Some(toml::Value::Array(many)) => many
                .into_iter()
                .map(|address| match address {
                    toml::Value::String(address) => Ok(address),
                    other => Err(format!("{other} is not an address; write each as a string")),
                })
                .collect::<Result<Vec<_>, _>>()
                .and_then(|addresses| mailboxes(&addresses)),
            Some(other) => Err(format!(
                "{other} is not an address; give one as a string, or several as a list"
            )),
        }
        .map_err(|problem| {
            self.issue(
                to_span.or_else(|| Some(url_span.clone())),
                format!("{key}.to"),
                problem,
            );
        });
        let login_address = server
            .as_ref()
            .ok()
            .and_then(|server| server.login.as_ref())
            .and_then(|(user, _)| user.parse::<lettre::message::Mailbox>().ok());
        let from = match from {
            Some(from) => from.get_ref().trim().parse().map_err(|err| {
                self.issue(
                    Some(from.span()),
                    format!("{key}.from"),
                    format!(
                        "{:?} is not an email address ({err}); write \"alerts@example.com\" or \"feedhound <alerts@example.com>\"",
                        from.get_ref()
                    ),
                );
            }),
            None => login_address.ok_or_else(|| {
                self.issue(
                    Some(url_span.clone()),
                    format!("{key}.from"),
                    "an email target needs the address it sends from: from = \"feedhound <alerts@example.com>\" (the login is used when it is an address)",
                );
            }),
        };
        let (server, to, from) = (server.ok()?, to.ok()?, from.ok()?);
        Some(EmailConfig {
            host: server.host,
            port: server.port,
            tls: server.tls,
            login: server.login,
            from,
            to,
        })
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.lines.line_of(span.start)
    }

    /// Notes a credential written in the file itself, for [`world_readable_warning`].
    fn note_credential_written(&mut self, key: &str, span: &Range<usize>) {
        let line = self.line(span);
        self.credentials_written.push((line, key.to_owned()));
    }

    /// The text of a key that may hold a secret: as written, or read from its file or
    /// environment variable (unless secrets are left unread: then None, and no issue). Line
    /// breaks at the end of what is read, and a byte-order mark before it, are not part of it.
    /// Each failure is an issue at the key's line that names the file or variable, never the
    /// value.
    fn secret(&mut self, raw: Spanned<RawSecret>, key: &str) -> Option<SecretText> {
        let span = raw.span();
        let (read, source) = match raw.into_inner() {
            RawSecret::Written(text) => {
                return Some(SecretText {
                    text,
                    read_from: String::new(),
                });
            }
            RawSecret::Env(name) if !is_variable_name(name.trim()) => {
                // Not quoted: a pasted `NAME=value` line would put the value in the message.
                self.issue(
                    Some(span),
                    key,
                    "env takes the name of an environment variable (letters, digits and `_`), \
                     not NAME=VALUE",
                );
                return None;
            }
            _ if self.secrets == Secrets::Unread => return None,
            RawSecret::File(path) => {
                let path = self.folder.join(path.trim());
                let source = format!("the file {}", path.display());
                let stamp = FileStamp::of(&path);
                let read = read_secret_file(&path);
                self.read_files.push((path, stamp));
                (read, source)
            }
            RawSecret::Env(name) => {
                let name = name.trim();
                (
                    read_secret_variable(name),
                    format!("the environment variable {name}"),
                )
            }
        };
        let failure = match read {
            Ok(text) => {
                let text = text
                    .strip_prefix('\u{feff}')
                    .unwrap_or(&text)
                    .trim_end_matches(['\n', '\r']);
                if !text.is_empty() {
                    return Some(SecretText {
                        text: text.to_owned(),
                        read_from: format!("; it was read from {source}"),
                    });
                }
                format!("{source} is empty")
            }
            Err(why) => format!("cannot read {source}: {why}"),
        };
        self.issue(Some(span), key, failure);
        None
    }

    /// Every key of every company is checked, whatever else is wrong with it, so that one `check`
    /// lists every problem; only a company with a name of its own is kept.
    fn companies(&mut self, raw: Vec<RawCompany>) -> Vec<CompanyConfig> {
        // Name (as the matcher compares it) → the line of the first company with it.
        let mut names: HashMap<String, usize> = HashMap::new();
        // Alias (as the matcher compares it) → company that owns it; a shared alias would make a
        // hit ambiguous.
        let mut owners: HashMap<String, String> = HashMap::new();
        let mut companies = Vec::with_capacity(raw.len());
        for (index, company) in raw.into_iter().enumerate() {
            let key = format!("company[{}]", index + 1);
            let name = company.name.get_ref().trim().to_string();
            let folded_name = comparable_name(&name);
            let own_name = if name.is_empty() {
                self.issue(
                    Some(company.name.span()),
                    format!("{key}.name"),
                    "must not be empty",
                );
                false
            } else {
                match names.entry(folded_name.clone()) {
                    Entry::Vacant(slot) => {
                        slot.insert(self.line(&company.name.span()));
                        true
                    }
                    Entry::Occupied(first) => {
                        self.issue(
                            Some(company.name.span()),
                            format!("{key}.name"),
                            format!(
                                "company {name:?} is already defined on line {}",
                                first.get()
                            ),
                        );
                        false
                    }
                }
            };
            let mut aliases = Vec::new();
            // A name that is empty or repeated has been reported already; its aliases are still
            // checked against the other companies'.
            let mut terms = Vec::new();
            if own_name {
                terms.push((name.clone(), company.name.span()));
            }
            for alias in company.aliases {
                let text = alias.get_ref().trim().to_string();
                if text.is_empty() {
                    self.issue(
                        Some(alias.span()),
                        format!("{key}.aliases"),
                        "an alias must not be empty",
                    );
                    continue;
                }
                aliases.push(text.clone());
                terms.push((text, alias.span()));
            }
            for (term, span) in terms {
                let folded = comparable_name(&term);
                match owners.get(&folded) {
                    // A repeated company sharing an alias with its first definition is not two
                    // companies claiming one name; the repeat is reported already.
                    Some(owner) if comparable_name(owner) != folded_name => self.issue(
                        Some(span),
                        format!("{key}.aliases"),
                        format!("{term:?} is already a name or alias of {owner:?}; a name can belong to one company only"),
                    ),
                    Some(_) => {}
                    None if own_name => {
                        owners.insert(folded, name.clone());
                    }
                    None => {}
                }
            }
            let fields = match company.fields {
                None => Field::ALL.to_vec(),
                Some(fields) if fields.get_ref().is_empty() => {
                    self.issue(
                        Some(fields.span()),
                        format!("{key}.fields"),
                        "must list at least one of \"title\", \"summary\", \"content\", \"article\" (or be left out for all)",
                    );
                    Field::ALL.to_vec()
                }
                Some(fields) => {
                    let mut set: Vec<Field> = fields
                        .into_inner()
                        .into_iter()
                        .map(|f| match f {
                            RawField::Title => Field::Title,
                            RawField::Summary => Field::Summary,
                            RawField::Content => Field::Content,
                            RawField::Article => Field::Article,
                        })
                        .collect::<HashSet<_>>()
                        .into_iter()
                        .collect();
                    set.sort();
                    set
                }
            };
            let exclude = self.phrases(
                company.exclude,
                &format!("{key}.exclude"),
                "an excluded phrase must not be empty",
            );
            let require_any = self.phrases(
                company.require_any,
                &format!("{key}.require_any"),
                "a context word must not be empty (leave require_any out to require none)",
            );
            if !own_name {
                continue;
            }
            companies.push(CompanyConfig {
                rule: CompanyRule {
                    name,
                    aliases,
                    case_sensitive: company.case_sensitive,
                    exclude,
                    require_any,
                    fields,
                },
                ticker: company.ticker.filter(|t| !t.trim().is_empty()),
                tags: company.tags,
            });
        }
        companies
    }

    /// `exclude` phrases or `require_any` words, trimmed. A blank one is refused rather than
    /// dropped: dropping a company's only `require_any` word would make it match without the
    /// context the user asked for.
    fn phrases(&mut self, raw: Vec<Spanned<String>>, key: &str, blank: &str) -> Vec<String> {
        let mut phrases = Vec::with_capacity(raw.len());
        for phrase in raw {
            let text = phrase.get_ref().trim();
            if text.is_empty() {
                self.issue(Some(phrase.span()), key, blank);
            } else {
                phrases.push(text.to_string());
            }
        }
        phrases
    }
}

/// The days a digest time's day part names: one (`"Mon"`, `"monday"`) or a range of two
/// different days, in the week's order and on past its end (`"Mon-Fri"`, `"Fri - Mon"`).
fn digest_days(text: &str) -> Option<Vec<Weekday>> {
    let Some((first, last)) = text.split_once('-') else {
        return Some(vec![text.parse().ok()?]);
    };
    let (mut day, last) = (
        first.trim().parse::<Weekday>().ok()?,
        last.trim().parse::<Weekday>().ok()?,
    );
    if day == last {
        return None;
    }
    let mut days = vec![day];
    while day != last {
        day = day.succ();
        days.push(day);
    }
    Some(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook_secret(target: &NotifyConfig) -> Option<&str> {
        match &target.delivery {
            Delivery::Webhook { secret, .. } => secret.as_deref(),
            Delivery::Email(_) => panic!("{} is an email target", target.name),
        }
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/feedhound/feedhound.toml"))
    }

    fn error_text(text: &str) -> String {
        parse(text)
            .expect_err("config should be rejected")
            .to_string()
    }

    /// One line of `message` per `expected` fragment, each containing its fragment.
    fn assert_lines_contain(message: &str, expected: &[&str]) {
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(lines.len(), expected.len(), "{message}");
        for (line, expected) in lines.iter().zip(expected) {
            assert!(line.contains(expected), "{line:?} lacks {expected:?}");
        }
    }

    #[test]
    fn unknown_keys_in_dotted_inline_and_sub_tables_and_quoted_keys_are_located() {
        let text = "polling.concurency = 4\n\
                    storage = { retian = \"1d\" }\n\
                    \"a.b\" = 1\n\
                    [daemon.sub]\nx = 1\n";
        let message = error_text(text);
        let expected = [
            "feedhound.toml:1: polling.concurency: unknown key `concurency`",
            "feedhound.toml:2: storage.retian: unknown key `retian`, expected one of `busy_timeout`, `path`, `retain`",
            "feedhound.toml:3: \"a.b\": unknown key `a.b`, expected one of `storage`, ",
            "feedhound.toml:4: daemon.sub: unknown key `sub`, expected one of `shutdown_grace`",
        ];
        assert_lines_contain(&message, &expected);
    }

    #[test]
    fn a_misspelled_required_key_is_named_next_to_the_missing_one() {
        // serde stops at the missing key; the typo it met on the way is reported with it.
        let message = error_text("[[feed]]\nurll = \"https://news.example/rss\"\n");
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(lines.len(), 2, "{message}");
        assert!(
            lines[0].ends_with("feedhound.toml:1: missing field `url`"),
            "{message}"
        );
        assert!(
            lines[1].ends_with(
                "feedhound.toml:2: feed[1].urll: unknown key `urll`, expected one of `url`, `name`, `interval`, `tags`, `headers`, `fetch_articles`"
            ),
            "{message}"
        );
    }

    #[test]
    fn every_unknown_key_is_reported_in_one_pass_wherever_it_is_written() {
        let text = "feed = [{ url = \"https://news.example/rss\", intervall = \"1h\" }]\n\
                    retry = 3\n\
                    [polling]\nconcurency = 4\n\
                    [[company]]\nname = \"Acme\"\nalias = [\"ACME\"]\n\
                    [[notify]]\nurl = \"http://127.0.0.1:9/hook\"\nsecrett = \"k\"\n";
        let message = error_text(text);
        let expected = [
            "feedhound.toml:1: feed[1].intervall: unknown key `intervall`, expected one of `url`, `name`, `interval`, `tags`, `headers`, `fetch_articles`",
            "feedhound.toml:2: retry: unknown key `retry`, expected one of `storage`, `polling`, `daemon`, `feed`, `company`, `notify`, `server`",
            "feedhound.toml:4: polling.concurency: unknown key `concurency`, expected one of `interval`, ",
            "feedhound.toml:7: company[1].alias: unknown key `alias`, expected one of `name`, `aliases`, ",
            "feedhound.toml:10: notify[1].secrett: unknown key `secrett`, expected one of `name`, `url`, `secret`, `companies`, `retry_delay`, `backlog`, `format`",
        ];
        assert_lines_contain(&message, &expected);
    }

    #[test]
    fn the_example_config_is_valid_and_documents_the_defaults() {
        let example = include_str!("../config.example.toml");
        let config = parse(example).unwrap();
        let defaults = parse("").unwrap();
        assert_eq!(config.polling.interval, defaults.polling.interval);
        assert_eq!(config.polling.concurrency, defaults.polling.concurrency);
        assert_eq!(config.polling.min_interval, defaults.polling.min_interval);
        assert_eq!(config.polling.max_interval, defaults.polling.max_interval);
        assert_eq!(config.polling.max_backoff, defaults.polling.max_backoff);
        assert_eq!(
            config.polling.per_host_concurrency,
            defaults.polling.per_host_concurrency
        );
        assert_eq!(
            config.polling.per_host_delay,
            defaults.polling.per_host_delay
        );
        assert_eq!(config.daemon.shutdown_grace, defaults.daemon.shutdown_grace);
        assert_eq!(config.notify[0].retry_delay, Duration::from_secs(30));
        assert_eq!(config.polling.timeout, defaults.polling.timeout);
        assert_eq!(
            config.polling.connect_timeout,
            defaults.polling.connect_timeout
        );
        assert_eq!(config.polling.max_body_size, defaults.polling.max_body_size);
        assert_eq!(config.storage.path, defaults.storage.path);
        assert_eq!(config.storage.busy_timeout, defaults.storage.busy_timeout);
        assert!(
            example.contains(
                &defaults
                    .polling
                    .user_agent
                    .replace(env!("CARGO_PKG_VERSION"), "0.1.0")
            )
        );
        assert_eq!(config.feeds.len(), 1);
        assert_eq!(config.companies.len(), 2);
    }

    #[test]
    fn defaults_apply_to_an_empty_file() {
        let config = parse("").unwrap();
        assert_eq!(config.polling.interval, Duration::from_secs(1800));
        assert_eq!(config.polling.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(
            config.database_path(),
            Path::new("/etc/feedhound/feedhound.db")
        );
        assert!(config.polling.user_agent.starts_with("feedhound/"));
    }

    #[test]
    fn the_line_index_names_the_same_line_as_counting_newlines() {
        let text = "a = 1\n\n[polling]\ninterval = \"5m\"\r\n# end\n";
        let lines = LineIndex::new(text);
        for offset in 0..=text.len() + 3 {
            assert_eq!(
                lines.line_of(offset),
                line_of(text, offset),
                "offset {offset}"
            );
        }
        assert_eq!(LineIndex::new("").line_of(0), 1);
    }

    #[test]
    fn feeds_and_human_durations_are_read() {
        let config = parse(
            "[polling]\ninterval = \"15m\"\nmax_body_size = \"2 MiB\"\n\n[[feed]]\nurl = \"https://example.com/rss\"\nname = \"Example\"\ninterval = \"1h 30m\"\ntags = [\"tech\"]\n",
        )
        .unwrap();
        assert_eq!(config.polling.interval, Duration::from_secs(900));
        assert_eq!(config.polling.max_body_size, 2 * 1024 * 1024);
        assert_eq!(config.feeds.len(), 1);
        assert_eq!(config.feeds[0].interval, Some(Duration::from_secs(5400)));
        assert_eq!(config.feeds[0].tags, vec!["tech"]);
    }

    #[test]
    fn a_typo_in_a_key_names_the_file_line_and_key() {
        let message = error_text("[polling]\ninterval = \"15m\"\nintervall = \"20m\"\n");
        assert!(
            message.starts_with("/etc/feedhound/feedhound.toml:3: "),
            "{message}"
        );
        assert!(message.contains("intervall"), "{message}");
    }

    #[test]
    fn a_wrong_type_names_the_line() {
        let message = error_text("[polling]\n\nconcurrency = \"lots\"\n");
        assert!(
            message.contains(":3: polling.concurrency: invalid type"),
            "{message}"
        );
    }

    #[test]
    fn non_http_urls_duplicates_and_bad_durations_are_all_reported() {
        let message = error_text(
            "[[feed]]\nurl = \"ftp://example.com/feed\"\n[[feed]]\nurl = \"https://a.example/rss\"\n[[feed]]\nurl = \"https://a.example/rss\"\ninterval = \"soon\"\n",
        );
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(lines.len(), 3, "{message}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains(":2: feed[1].url: only http and https")),
            "{message}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains(":6: feed[3].url:") && l.contains("line 4")),
            "{message}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains(":7: feed[3].interval: cannot read \"soon\"")),
            "{message}"
        );
    }

    #[test]
    fn company_rules_reject_empty_duplicate_and_shared_names() {
        let message = error_text(
            "[[company]]\nname = \"\"\n[[company]]\nname = \"Xiaomi\"\naliases = [\"小米\"]\n[[company]]\nname = \"xiaomi\"\n[[company]]\nname = \"Other\"\naliases = [\"小米\"]\n",
        );
        assert!(
            message.contains(":2: company[1].name: must not be empty"),
            "{message}"
        );
        assert!(
            message
                .contains(":7: company[3].name: company \"xiaomi\" is already defined on line 4"),
            "{message}"
        );
        assert!(
            message.contains(
                ":10: company[4].aliases: \"小米\" is already a name or alias of \"Xiaomi\""
            ),
            "{message}"
        );
    }

    #[test]
    fn names_the_matcher_cannot_tell_apart_belong_to_one_company_only() {
        let message = error_text(
            "[[company]]\nname = \"Nestl\u{e9}\"\n\
             [[company]]\nname = \"Nestl\u{e9} Health\"\naliases = [\"Nestle\u{301}\"]\n\
             [[company]]\nname = \"Tim  Cook Fans\"\n[[company]]\nname = \"tim cook fans\"\n",
        );
        assert!(
            message.contains(
                ":5: company[2].aliases: \"Nestle\\u{301}\" is already a name or alias of \"Nestlé\""
            ),
            "{message}"
        );
        assert!(
            message.contains(
                ":9: company[4].name: company \"tim cook fans\" is already defined on line 7"
            ),
            "{message}"
        );
        let config = Config::parse(
            "[[company]]\nname = \"Nestl\u{e9}\"\naliases = [\"Socie\u{301}te\u{301} des  Produits Nestle\u{301}\"]\n",
            Path::new("feedhound.toml"),
        )
        .unwrap();
        assert_eq!(
            config.company_named("nestle\u{301}").unwrap(),
            "Nestl\u{e9}"
        );
        assert_eq!(
            config
                .company_named("SOCI\u{c9}T\u{c9} des produits NESTL\u{c9}")
                .unwrap(),
            "Nestl\u{e9}"
        );
        assert!(config.company_named("Nestle").is_err());
        let config = Config::parse(
            "[[company]]\nname = \"Nestl\u{e9}\"\n\
             aliases = [\"Soci\u{e9}t\u{e9} des Produits Nestl\u{e9}\"]\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/hook\"\ncompanies = [\"NESTLE\u{301}\"]\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/other\"\ncompanies = [\"socie\u{301}te\u{301} des  produits nestl\u{e9}\"]\n",
            Path::new("feedhound.toml"),
        )
        .unwrap();
        for route in config.alert_routes() {
            assert_eq!(
                route.companies,
                Some(vec!["Nestl\u{e9}".to_string()]),
                "a notify filter holds the company's own name, which mentions carry, whether \
                 it was given by name or by alias"
            );
        }
        assert_eq!(config.alert_routes().len(), 2);
    }

    #[test]
    fn a_digest_is_times_of_the_day_or_week_or_a_period_of_a_day_or_a_week() {
        let config = parse(
            "[[notify]]\nurl = \"http://127.0.0.1:9/a\"\ndigest = \"08:00\"\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/b\"\ndigest = [\"17:30\", \" 08:00 \", 12:15:30]\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/c\"\ndigest = \"6h\"\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/d\"\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/e\"\ndigest = [\"monday  08:00\", \"Fri 17:30:15\", \"Sat-Sun 10:00\"]\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/f\"\ndigest = \"1w\"\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/g\"\ndigest = [\"Mon-Fri 08:00\", \"fri - mon 17:00\"]\n",
        )
        .unwrap();
        let times: Vec<Option<Vec<String>>> = config
            .notify
            .iter()
            .map(|target| Some(target.digest.as_ref()?.times.describe()))
            .collect();
        let list = |times: &[&str]| Some(times.iter().map(|t| t.to_string()).collect());
        assert_eq!(
            times,
            [
                list(&["08:00:00"]),
                list(&["08:00:00", "12:15:30", "17:30:00"]),
                list(&["00:00:00", "06:00:00", "12:00:00", "18:00:00"]),
                None,
                list(&[
                    "Mon 08:00:00",
                    "Fri 17:30:15",
                    "Sat 10:00:00",
                    "Sun 10:00:00"
                ]),
                list(&["Mon 00:00:00"]),
                list(&[
                    "Mon 08:00:00",
                    "Mon 17:00:00",
                    "Tue 08:00:00",
                    "Wed 08:00:00",
                    "Thu 08:00:00",
                    "Fri 08:00:00",
                    "Fri 17:00:00",
                    "Sat 17:00:00",
                    "Sun 17:00:00"
                ]),
            ]
        );

        let message = error_text(
            "[[notify]]\nurl = \"http://127.0.0.1:9/a\"\ndigest = \"7h\"\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/b\"\ndigest = \"25:00\"\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/c\"\ndigest = []\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/d\"\ndigest = 8\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/e\"\ndigest = \"daily\"\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/f\"\ndigest = 2026-11-26T08:00:00Z\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/g\"\ndigest = \"Mnday 08:00\"\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/h\"\ndigest = \"2d\"\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/i\"\ndigest = \"Mon-Fry 08:00\"\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/j\"\ndigest = [\"Mon-Mon 08:00\", \"-Fri 08:00\"]\n",
        );
        assert_lines_contain(
            &message,
            &[
                ":3: notify[1].digest: \"7h\": a period must be at least a minute and divide a day evenly",
                ":6: notify[2].digest: cannot read \"25:00\" as a time of day",
                ":9: notify[3].digest: must name at least one time",
                ":12: notify[4].digest: an integer is not a digest time",
                ":15: notify[5].digest: cannot read \"daily\" as a time or a period",
                ":18: notify[6].digest: a datetime is not a digest time",
                ":21: notify[7].digest: cannot read \"Mnday\" in \"Mnday 08:00\" as a day of the week",
                ":24: notify[8].digest: \"2d\": a period must be at least a minute and divide a day evenly, or be a week",
                ":27: notify[9].digest: cannot read \"Mon-Fry\" in \"Mon-Fry 08:00\" as a day of the week (\"Mon\" or \"Monday\") or a range of two (\"Mon-Fri\")",
                ":30: notify[10].digest: cannot read \"Mon-Mon\" in \"Mon-Mon 08:00\" as a day",
            ],
        );
        assert!(
            message.contains("(\"08:00\")"),
            "each says what to write: {message}"
        );
    }

    #[test]
    fn a_time_zone_is_an_iana_name_for_a_target_with_a_digest() {
        let config = parse(
            "[[notify]]\nurl = \"http://127.0.0.1:9/a\"\ndigest = \"08:00\"\ntime_zone = \" Asia/Tokyo \"\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/b\"\ndigest = \"08:00\"\n",
        )
        .unwrap();
        let zones: Vec<_> = config
            .notify
            .iter()
            .map(|target| target.digest.as_ref().unwrap().zone)
            .collect();
        assert_eq!(zones, [Some(chrono_tz::Asia::Tokyo), None]);

        let message = error_text(
            "[[notify]]\nurl = \"http://127.0.0.1:9/a\"\ndigest = \"08:00\"\ntime_zone = \"Europe/Berln\"\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/b\"\ntime_zone = \"UTC\"\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/c\"\ndigest = \"08:00\"\ntime_zone = \"europe/berlin\"\n",
        );
        assert_lines_contain(
            &message,
            &[
                ":4: notify[1].time_zone: \"Europe/Berln\" is not a time zone of the IANA database; write one such as \"Europe/Berlin\"",
                ":7: notify[2].time_zone: sets the clock of this target's digest times, and it has no `digest`",
                ":11: notify[3].time_zone: \"europe/berlin\" is spelt \"Europe/Berlin\" in the IANA database",
            ],
        );
    }

    #[test]
    fn the_reports_clock_is_utc_unless_reports_time_zone_names_another() {
        let zone = |text: &str| parse(text).unwrap().reports.clock.zone();
        assert_eq!(zone(""), chrono_tz::UTC);
        assert_eq!(
            zone("[reports]\ntime_zone = \"America/New_York\"\n"),
            chrono_tz::America::New_York
        );
        let message =
            error_text("[reports]\ntime_zone = \"Americas/New_York\"\ntimezone = \"UTC\"\n");
        assert_lines_contain(
            &message,
            &[
                ":2: reports.time_zone: \"Americas/New_York\" is not a time zone of the IANA database",
                ":3: reports.timezone: unknown key `timezone`, expected one of `time_zone`",
            ],
        );
    }

    #[test]
    fn an_email_target_takes_its_server_login_and_addresses_from_url_from_and_to() {
        let config = parse(
            "[[notify]]\nname = \"a\"\nurl = \"smtps://alerts%40example.com:p%40ss@mail.example.com\"\nto = \"ana@example.com\"\n\
             [[notify]]\nname = \"b\"\nurl = \"smtp://mail.example.com\"\nformat = \"email\"\nfrom = \"feedhound <news@example.org>\"\nto = [\"ana@example.com\", \"Bo Li <bo@example.com>\"]\n\
             [[notify]]\nname = \"c\"\nurl = \"smtp://[::1]:2525?tls=none\"\nfrom = \"x@example.org\"\nto = \"ana@example.com\"\n",
        )
        .unwrap();
        let emails: Vec<&EmailConfig> = config
            .notify
            .iter()
            .map(|target| match &target.delivery {
                Delivery::Email(email) => email,
                Delivery::Webhook { .. } => panic!("{} is a webhook", target.name),
            })
            .collect();
        let servers: Vec<(&str, u16, SmtpTls)> = emails
            .iter()
            .map(|e| (e.host.as_str(), e.port, e.tls))
            .collect();
        assert_eq!(
            servers,
            [
                ("mail.example.com", 465, SmtpTls::Implicit),
                ("mail.example.com", 587, SmtpTls::StartTls),
                ("::1", 2525, SmtpTls::Plain),
            ]
        );
        assert_eq!(
            emails[0].login,
            Some(("alerts@example.com".to_owned(), "p@ss".to_owned()))
        );
        assert_eq!(
            emails[0].from.to_string(),
            "alerts@example.com",
            "a login that is an address is the sender"
        );
        assert_eq!(emails[1].from.email.to_string(), "news@example.org");
        assert_eq!(emails[1].to.len(), 2);
        assert_eq!(emails[1].to[1].name.as_deref(), Some("Bo Li"));
        let shown: Vec<String> = config.notify.iter().map(|t| t.shown_url()).collect();
        assert_eq!(
            shown,
            [
                "smtps://mail.example.com:465",
                "smtp://mail.example.com:587",
                "smtp://[::1]:2525"
            ]
        );
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("p@ss") && !debug.contains("p%40ss"),
            "{debug}"
        );
    }

    #[test]
    fn an_smtp_url_is_read_as_a_host_name_and_a_login_and_never_quoted() {
        let config = parse(
            "[[notify]]\nurl = \"smtps://u:p@B\u{fc}cher.Example\"\nfrom = \"x@example.org\"\nto = \"a@example.org\"\n",
        )
        .unwrap();
        let Delivery::Email(email) = &config.notify[0].delivery else {
            panic!("an email target")
        };
        assert_eq!(email.host, "xn--bcher-kva.example", "as DNS takes it");
        assert_eq!(config.notify[0].name, "email-1");
        let message = error_text(
            "[[notify]]\nurl = \"smtps://user@mail.example.com\"\nfrom = \"x@example.org\"\nto = \"a@example.org\"\n\
             [[notify]]\nurl = \"smtps://user:123?45@mail.example.com\"\nfrom = \"x@example.org\"\nto = \"a@example.org\"\n",
        );
        assert_lines_contain(
            &message,
            &[
                ":2: notify[1].url: has a user name but no password",
                ":6: notify[2].url: has a parameter other than `tls=none`; in a user name or password, write `@` as %40",
            ],
        );
        assert!(!message.contains("45"), "{message}");
    }

    #[test]
    fn an_email_target_is_refused_with_what_to_write_and_without_its_password() {
        let message = error_text(
            "[[notify]]\nurl = \"smtp://mail.example.com\"\n\
             [[notify]]\nurl = \"smtp://u:pw0rd@mail.example.com?tls=none\"\nfrom = \"x@example.org\"\nto = [\"ana at example\"]\n\
             [[notify]]\nurl = \"smtps://u:pw0rd@mail.example.com?tls=none\"\nfrom = \"x@example.org\"\nto = []\nsecret = \"k\"\n\
             [[notify]]\nurl = \"https://hooks.example/x\"\nfrom = \"x@example.org\"\nto = \"ana@example.com\"\nformat = \"email\"\n\
             [[notify]]\nurl = \"smtp://x@mail.example.com/inbox\"\nformat = \"slack\"\nfrom = \"x@example.org\"\nto = \"ana@example.com\"\n\
             [[notify]]\nurl = \"smtp://u:pw0rd@localhost:25?tls=none\"\nfrom = \"x@example.org\"\nto = \"ana@example.com\"\n",
        );
        assert_lines_contain(
            &message,
            &[
                ":2: notify[1].to: an email target needs the addresses to send to",
                ":2: notify[1].from: an email target needs the address it sends from",
                ":4: notify[2].url: would send its password unencrypted to mail.example.com; leave `tls=none` out (STARTTLS), or use smtps://",
                ":6: notify[2].to: \"ana at example\" is not an email address",
                ":8: notify[3].url: takes `?tls=none` only, after smtp://",
                ":10: notify[3].to: is empty; give at least one address to send to",
                ":11: notify[3].secret: signs webhook POSTs, and this target sends email; remove it",
                ":14: notify[4].from: is an email address, and this target's url is a webhook",
                ":15: notify[4].to: is an email address, and this target's url is a webhook",
                ":16: notify[4].format: \"email\" needs an smtp:// or smtps:// url",
                ":18: notify[5].url: must name only the server: smtps://USER:PASSWORD@HOST[:PORT]",
                ":19: notify[5].format: \"slack\" is a webhook's format, and this target's url is an SMTP server",
            ],
        );
        assert!(!message.contains("pw0rd"), "{message}");
        assert!(
            !message.contains("notify[6]"),
            "a login without TLS is fine on this machine: {message}"
        );
    }

    #[test]
    fn notify_targets_are_checked_and_secrets_stay_out_of_debug_output() {
        let message = error_text(
            "[[company]]\nname = \"Xiaomi\"\n[[notify]]\nurl = \"ftp://hooks.example/x\"\n[[notify]]\nurl = \"https://hooks.example/x\"\ncompanies = [\"Xiaomi\", \"Nokia\"]\n",
        );
        assert!(
            message.contains(":4: notify[1].url: must be an http or https URL"),
            "{message}"
        );
        assert!(
            message.contains(":7: notify[2].companies: \"Nokia\" is not the name"),
            "{message}"
        );
        let config = parse(
            "[[notify]]\nname = \"ops\"\nurl = \"https://user:pw@hooks.example/services/p4th\"\nsecret = \"s3cret\"\n",
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("pw") && !debug.contains("p4th"),
            "{debug}"
        );
        assert!(debug.contains("https://hooks.example/…"), "{debug}");
        assert_eq!(config.alert_routes()[0].target, "ops");
    }

    #[test]
    fn a_targets_format_defaults_to_feedhounds_json_and_a_misspelt_one_is_named() {
        let config = parse(
            "[[notify]]\nurl = \"https://hooks.example/a\"\n\
             [[notify]]\nurl = \"https://hooks.slack.example/b\"\nformat = \"slack\"\n\
             [[notify]]\nurl = \"https://discord.example/c\"\nformat = \"discord\"\n",
        )
        .unwrap();
        let formats: Vec<AlertFormat> = config.notify.iter().map(|t| t.delivery.format()).collect();
        assert_eq!(
            formats,
            [AlertFormat::Json, AlertFormat::Slack, AlertFormat::Discord]
        );
        let message = error_text(
            "[[notify]]\nurl = \"https://hooks.example/a\"\nformat = \"Slak\"\n\
             [[notify]]\nurl = \"ftp://hooks.example/b\"\n\
             [[notify]]\nurl = \"https://ntfy.example/\"\nformat = \"ntfy\"\n",
        );
        assert!(
            message.contains(
                ":3: notify[1].format: \"Slak\" is not a format; use \"json\" (feedhound's payload), \"slack\", \"discord\", \"ntfy\", \"telegram\" or \"teams\" for a webhook"
            ) && message.contains(":5: notify[2].url")
                && message.contains(
                    ":7: notify[3].url: ntfy needs the topic's URL, such as https://ntfy.sh/acme-news"
                ),
            "every problem at once: {message}"
        );
    }

    /// ntfy takes JSON at its root: the topic URL without the topic, whatever else it holds.
    #[test]
    fn an_ntfy_targets_url_names_its_topic_and_the_root_its_json_goes_to() {
        let topic = |url: &str| {
            let config = parse(&format!("[[notify]]\nurl = \"{url}\"\nformat = \"ntfy\"\n"))
                .unwrap_or_else(|err| panic!("{url}: {err}"));
            let Delivery::Webhook {
                endpoint: Endpoint::Ntfy(topic),
                ..
            } = &config.notify[0].delivery
            else {
                panic!("{url}: no topic")
            };
            (topic.root.to_string(), topic.name.clone())
        };
        assert_eq!(
            topic("https://ntfy.sh/acme-news_7"),
            ("https://ntfy.sh/".into(), "acme-news_7".into())
        );
        assert_eq!(
            topic("https://ana:pw@push.example:8443/ntfy/acme/?auth=QmFzaWM"),
            (
                "https://ana:pw@push.example:8443/ntfy/?auth=QmFzaWM".into(),
                "acme".into()
            ),
            "a server under a path, a login, a trailing slash and an auth parameter"
        );
        for (url, said) in [
            ("https://ntfy.sh/", "ntfy needs the topic's URL"),
            ("https://ntfy.sh/acme/json", "ends in one of ntfy's paths"),
            ("https://ntfy.sh/acme.news", "is not an ntfy topic"),
            ("https://ntfy.sh/acme%20news", "is not an ntfy topic"),
        ] {
            let message = error_text(&format!("[[notify]]\nurl = \"{url}\"\nformat = \"ntfy\"\n"));
            assert!(
                message.contains(":2: notify[1].url: ") && message.contains(said),
                "{url}: {message}"
            );
        }
        let message = error_text(
            "[[notify]]\nurl = \"https://ntfy.sh/acme\"\nformat = \"ntfy\"\nsecret = \"k\"\n",
        );
        assert!(
            message
                .contains(":4: notify[1].secret: signs webhook POSTs, which ntfy does not check"),
            "{message}"
        );
        let config =
            parse("[[notify]]\nurl = \"https://ntfy.sh/acme\"\nformat = \"ntfy\"\n").unwrap();
        assert_eq!(
            config.credentials_written,
            [(2, "notify[1].url".to_owned())],
            "on a public server the topic is the password"
        );
    }

    /// A bot's `sendMessage` URL names the chat in its query, as one would call it by hand;
    /// the POST goes to the method without it, with the chat in its JSON.
    #[test]
    fn a_telegram_targets_url_names_its_bot_and_chat() {
        const TOKEN: &str = "123456789:AAH-x_9kQ";
        let chat = |url: &str| {
            let config = parse(&format!(
                "[[notify]]\nurl = \"{url}\"\nformat = \"telegram\"\n"
            ))
            .unwrap_or_else(|err| panic!("{url}: {err}"));
            let Delivery::Webhook {
                endpoint: Endpoint::Telegram(chat),
                ..
            } = &config.notify[0].delivery
            else {
                panic!("{url}: no chat")
            };
            (
                chat.send_message.to_string(),
                chat.token.clone(),
                chat.chat_id.clone(),
                chat.thread,
            )
        };
        assert_eq!(
            chat(&format!(
                "https://api.telegram.org/bot{TOKEN}/sendMessage?chat_id=-1001234567890"
            )),
            (
                format!("https://api.telegram.org/bot{TOKEN}/sendMessage"),
                TOKEN.to_owned(),
                TelegramChatId::Number(-1001234567890),
                None
            )
        );
        assert_eq!(
            chat(&format!(
                "http://127.0.0.1:8081/tg/bot{TOKEN}/?chat_id=%40acme_news&message_thread_id=42"
            )),
            (
                format!("http://127.0.0.1:8081/tg/bot{TOKEN}/sendMessage"),
                TOKEN.to_owned(),
                TelegramChatId::Name("@acme_news".into()),
                Some(42)
            ),
            "a Bot API server of one's own, under a path, a channel by name, a forum's topic"
        );
        assert_eq!(
            chat(&format!(
                "https://api.telegram.org/bot{TOKEN}/sendmessage?chat_id=-4242"
            ))
            .0,
            format!("https://api.telegram.org/bot{TOKEN}/sendMessage"),
            "the Bot API reads a method's name in any case"
        );
        for (url, said) in [
            (
                "https://api.telegram.org/sendMessage?chat_id=1".to_owned(),
                "Telegram needs the Bot API's URL with the bot's token",
            ),
            (
                format!("https://api.telegram.org/{TOKEN}/sendMessage?chat_id=1"),
                "the bot's token goes after `bot` in the path",
            ),
            (
                format!("https://api.telegram.org/bot{TOKEN}/sendPhoto?chat_id=1"),
                "Telegram needs the Bot API's URL",
            ),
            (
                format!("https://api.telegram.org/bot{TOKEN}/sendMessage"),
                "names no chat: end it with ?chat_id=",
            ),
            (
                format!("https://api.telegram.org/bot{TOKEN}?chat_id=acme"),
                "its chat_id is neither a chat's number",
            ),
            (
                format!("https://api.telegram.org/bot{TOKEN}?chat_id=%40acme"),
                "its chat_id is neither a chat's number",
            ),
            (
                format!("https://api.telegram.org/bot{TOKEN}?chat_id=%401acme_news"),
                "its chat_id is neither a chat's number",
            ),
            (
                format!("https://api.telegram.org/bot{TOKEN}?chat_id=%2B42"),
                "its chat_id is neither a chat's number",
            ),
            (
                format!("https://api.telegram.org/bot{TOKEN}?chat_id=0"),
                "its chat_id is neither a chat's number",
            ),
            (
                format!("http://api.telegram.org/bot{TOKEN}?chat_id=1"),
                "would send the bot's token unencrypted",
            ),
            (
                format!("https://api.telegram.org/bot{TOKEN}?chat_id=1&message_thread_id=0"),
                "its message_thread_id is not the number of a topic",
            ),
            (
                format!("https://api.telegram.org/bot{TOKEN}?chat_id=1&parse_mode=HTML"),
                "its query may give one chat_id and one message_thread_id, and nothing else",
            ),
            (
                format!("https://api.telegram.org/bot{TOKEN}?chat_id=1&chat_id=2"),
                "and nothing else",
            ),
        ] {
            let message = error_text(&format!(
                "[[notify]]\nurl = \"{url}\"\nformat = \"telegram\"\n"
            ));
            assert!(
                message.contains(":2: notify[1].url: ")
                    && message.contains(said)
                    && !message.contains("AAH-x_9kQ"),
                "{url}: {message}"
            );
        }
        let url = format!("https://api.telegram.org/bot{TOKEN}?chat_id=1");
        let message = error_text(&format!(
            "[[notify]]\nurl = \"{url}\"\nformat = \"telegram\"\nsecret = \"k\"\n"
        ));
        assert!(
            message.contains(
                ":4: notify[1].secret: signs webhook POSTs, which Telegram does not check"
            ),
            "{message}"
        );
        let config = parse(&format!(
            "[[notify]]\nurl = \"{url}\"\nformat = \"telegram\"\n"
        ))
        .unwrap();
        assert_eq!(
            config.credentials_written,
            [(2, "notify[1].url".to_owned())],
            "the path holds the bot's token"
        );
    }

    /// A Teams webhook takes the card as it is posted; its signature is the password, so it
    /// travels only encrypted, and a `secret` (which Teams does not check) is a mistake.
    #[test]
    fn a_teams_targets_url_is_its_webhook_and_carries_its_signature() {
        const WORKFLOW: &str = "default4f2a.07.environment.api.powerplatform.com:443/powerautomate/automations/direct/workflows/9c1e/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=Zk9s3cr3t";
        let config = parse(&format!(
            "[[notify]]\nurl = \"https://{WORKFLOW}\"\nformat = \"teams\"\n"
        ))
        .unwrap();
        let target = &config.notify[0];
        assert!(matches!(
            target.delivery,
            Delivery::Webhook {
                format: AlertFormat::Teams,
                endpoint: Endpoint::Teams,
                ..
            }
        ));
        assert_eq!(
            target.url.as_str(),
            format!("https://{}", WORKFLOW.replace(":443", ""))
        );
        assert_eq!(
            config.credentials_written,
            [(2, "notify[1].url".to_owned())],
            "the query's sig is the password"
        );
        for local in ["http://127.0.0.1:8080/hook", "http://localhost:8080/hook"] {
            let config = parse(&format!(
                "[[notify]]\nurl = \"{local}\"\nformat = \"teams\"\n"
            ));
            assert!(
                config.is_ok(),
                "{local}: a relay on this machine may be plain http"
            );
        }
        for connector in [
            "https://acme.webhook.office.com/webhookb2/1f0e@9a7b/IncomingWebhook/5d3c/77aa",
            "https://outlook.office.com/webhook/1f0e@9a7b/IncomingWebhook/5d3c/77aa",
        ] {
            let message = error_text(&format!(
                "[[notify]]\nurl = \"{connector}\"\nformat = \"teams\"\n"
            ));
            assert!(
                message.contains(":2: notify[1].url: is an Office 365 connector's webhook, which answers 200 even when Teams refuses the card")
                    && message.contains("\"When a Teams webhook request is received\"")
                    && !message.contains("77aa"),
                "{message}"
            );
        }

        let message = error_text(&format!(
            "[[notify]]\nurl = \"http://{WORKFLOW}\"\nformat = \"teams\"\n"
        ));
        assert!(
            message.contains(":2: notify[1].url: would send the webhook's signature unencrypted")
                && !message.contains("s3cr3t"),
            "{message}"
        );
        let message = error_text(&format!(
            "[[notify]]\nurl = \"https://{WORKFLOW}\"\nformat = \"teams\"\nsecret = \"k\"\n"
        ));
        assert!(
            message.contains(
                ":4: notify[1].secret: signs webhook POSTs, which a Teams workflow does not check"
            ),
            "{message}"
        );
    }

    #[test]
    fn the_credentials_written_in_the_file_are_known_by_key_and_line() {
        let hook = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(hook.path(), "https://hooks.example/x").unwrap();
        let kept = format!("{{ file = {:?} }}", hook.path().display().to_string());
        let config = parse(&format!(
            "[[feed]]\nurl = \"https://a.example/rss?lang=en\"\n\
             headers = {{ Authorization = \"Bearer t\", \"User-Agent\" = \"Desk\", X-Api-Key = \"k\" }}\n\
             [[feed]]\nurl = \"https://user:pass@b.example/rss\"\n\
             [[feed]]\nurl = \"https://c.example/rss?access_token=t\"\n\
             [[feed]]\nurl = \"https://d.example/rss\"\nheaders = {{ Cookie = {kept} }}\n\
             [[feed]]\nurl = \"https://e.example/posts/a1b2c3d4e5f6g7h8i9j0k1/rss\"\n\
             [[feed]]\nurl = \"https://ghp0123456789@f.example/rss\"\n\
             [[notify]]\nurl = \"https://hooks.slack.com/services/T0/B0/abcdefghijklmnopqrstuvwx\"\n\
             secret = \"s\"\n\
             [[notify]]\nname = \"bare\"\nurl = \"https://relay.example/feedhound/alerts-2026\"\n\
             secret = \"\"\n\
             [[notify]]\nname = \"kept\"\nurl = {kept}\nsecret = {kept}\n\
             [[notify]]\nname = \"named\"\nurl = \"https://relay.example/notifications-inbox-alerts\"\n\
             [[notify]]\nname = \"mattermost\"\nurl = \"https://chat.example/hooks/abc123def456ghi789jkl012mn\"\n",
        ))
        .unwrap();
        let mut written = config.credentials_written.clone();
        written.sort();
        assert_eq!(
            written,
            [
                (3, "feed[1].headers.Authorization".to_owned()),
                (3, "feed[1].headers.X-Api-Key".to_owned()),
                (5, "feed[2].url".to_owned()),
                (7, "feed[3].url".to_owned()),
                (14, "feed[6].url".to_owned()),
                (16, "notify[1].url".to_owned()),
                (17, "notify[1].secret".to_owned()),
                (31, "notify[5].url".to_owned()),
            ],
            "not a feed's token-like path, a header or secret kept in a file, an empty secret, \
             a receiver's named path or the User-Agent"
        );
        assert!(config.warnings.is_empty(), "parsed text has no file mode");
    }

    #[test]
    fn a_feeds_headers_are_read_inline_or_as_a_table_and_never_shown() {
        let config = parse(
            "[[feed]]\nurl = \"https://a.example/rss\"\n\
             headers = { Authorization = \"Bearer t0k3n\", \"User-Agent\" = \"NewsDesk/2\" }\n\
             [[feed]]\nurl = \"https://b.example/rss\"\n\
             [feed.headers]\nCookie = \"session=s3cr3t\"\n\
             [[feed]]\nurl = \"https://c.example/rss\"\nheaders = {}\n",
        )
        .unwrap();
        let expected = |url: &str, pairs: &[(&str, &str)]| {
            Some(FeedHeaders::from_pairs(&Url::parse(url).unwrap(), pairs))
        };
        assert_eq!(
            config.feeds[0].headers,
            expected(
                "https://a.example/rss",
                &[
                    ("authorization", "Bearer t0k3n"),
                    ("user-agent", "NewsDesk/2")
                ]
            )
        );
        assert_eq!(
            config.feeds[1].headers,
            expected("https://b.example/rss", &[("cookie", "session=s3cr3t")])
        );
        assert_eq!(config.feeds[2].headers, None);
        let debug = format!("{config:?}");
        assert!(
            debug.contains("authorization")
                && !debug.contains("t0k3n")
                && !debug.contains("s3cr3t"),
            "{debug}"
        );
    }

    #[test]
    fn every_bad_feed_header_is_reported_at_its_line_without_its_value() {
        let message = error_text(
            "[[feed]]\nurl = \"https://a.example/rss\"\n\
             [feed.headers]\n\
             \"If-None-Match\" = \"s3cr3t\"\n\
             \"Bad Name\" = \"s3cr3t\"\n\
             X-Key = \"s3cr3t\\nX-Injected: 1\"\n\
             Cookie = \"a=1\"\n\
             cookie = \"s3cr3t\"\n\
             [[feed]]\nurl = \"https://reader:pw@b.example/rss\"\n\
             headers = { authorization = \"Bearer s3cr3t\" }\n",
        );
        assert_lines_contain(
            &message,
            &[
                ":4: feed[1].headers.If-None-Match: cannot be set here: feedhound sets it itself, from the feed's last response",
                ":5: feed[1].headers.Bad Name: is not an HTTP header name",
                ":6: feed[1].headers.X-Key: must be printable text on one line",
                ":8: feed[1].headers.cookie: is the same header as the one on line 7",
                ":10: feed[2].url: carries a user name or password, which is sent as the Authorization header, and headers has an Authorization too",
            ],
        );
        assert!(!message.contains("s3cr3t"), "{message}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named_by_its_type_not_quoted() {
        for (text, expected) in [
            (
                "[[feed]]\nurl = \"https://a.example/rss\"\nheaders = \"Authorization: s3cr3t\"\n",
                ":3: feed.headers: invalid type: string, expected a map",
            ),
            (
                "[[feed]]\nurl = \"https://a.example/rss\"\n[feed.headers]\nX-Api-Key = 123456\n",
                ":4: feed.headers.X-Api-Key: invalid type: integer, expected a string",
            ),
            (
                "[[notify]]\nurl = \"https://hooks.example/a\"\nsecret = 3.25\n",
                ":3: notify.secret: invalid type: floating point, expected a string",
            ),
        ] {
            let message = error_text(text);
            assert!(message.contains(expected), "{message}");
            for value in ["s3cr3t", "123456", "3.25"] {
                assert!(!message.contains(value), "{message}");
            }
        }
    }

    /// `text` as `feedhound.toml` in a fresh folder that also holds each of `files`.
    fn parse_beside(
        text: &str,
        files: &[(&str, &[u8])],
    ) -> (tempfile::TempDir, Result<Config, ConfigError>) {
        let folder = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            let path = folder.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let config = Config::parse(text, &folder.path().join("feedhound.toml"));
        (folder, config)
    }

    #[test]
    fn secrets_are_read_from_files_beside_the_config_without_their_final_line_break() {
        let (folder, config) = parse_beside(
            "[[feed]]\nurl = \"https://a.example/rss\"\n\
             headers = { Authorization = { file = \"secrets/feed-token\" }, Accept = \"text/xml\" }\n\
             [[notify]]\nurl = { file = \"secrets/hook-url\" }\nsecret = { file = \"hook.key\" }\n",
            &[
                ("secrets/feed-token", b"Bearer t0k3n\n"),
                (
                    "secrets/hook-url",
                    b"https://hooks.example/services/p4th\r\n",
                ),
                ("hook.key", b"k3y with spaces \n"),
            ],
        );
        let config = config.unwrap();
        assert_eq!(
            config.feeds[0].headers,
            Some(FeedHeaders::from_pairs(
                &Url::parse("https://a.example/rss").unwrap(),
                &[("authorization", "Bearer t0k3n"), ("accept", "text/xml")]
            ))
        );
        assert_eq!(
            config.notify[0].url.as_str(),
            "https://hooks.example/services/p4th"
        );
        assert_eq!(webhook_secret(&config.notify[0]), Some("k3y with spaces "));
        let stamped = |name: &str| {
            let path = folder.path().join(name);
            let stamp = FileStamp::of(&path);
            assert!(stamp.is_some());
            (path, stamp)
        };
        assert_eq!(
            config.read_files,
            [
                stamped("secrets/feed-token"),
                stamped("secrets/hook-url"),
                stamped("hook.key")
            ],
            "the daemon watches them"
        );
    }

    #[test]
    fn a_secret_that_cannot_be_read_is_reported_at_its_key_without_its_value() {
        let (folder, config) = parse_beside(
            "[[feed]]\nurl = \"https://a.example/rss\"\n[feed.headers]\n\
             A = { file = \"missing\" }\n\
             B = { file = \"empty\" }\n\
             C = { file = \"two-lines\" }\n\
             D = { file = \"huge\" }\n\
             E = { file = \"latin1\" }\n\
             F = { env = \"FEEDHOUND_TEST_NEVER_SET_7F3A\" }\n\
             G = { env = \"TOKEN=s3cr3t\" }\n\
             H = { file = \".\" }\n\
             [[notify]]\nurl = { file = \"not-a-url\" }\nsecret = { file = \"missing\" }\n",
            &[
                ("empty", b"\n"),
                ("two-lines", b"s3cr3t\nX-Injected: 1\n"),
                ("huge", &[b's'; 64 * 1024 + 1]),
                ("latin1", b"s3cr\xe9t"),
                ("not-a-url", b"s3cr3t\n"),
            ],
        );
        let message = config.expect_err("unreadable secrets").to_string();
        let at = |name: &str| folder.path().join(name).display().to_string();
        assert_lines_contain(
            &message,
            &[
                &format!(
                    ":4: feed[1].headers.A: cannot read the file {}: No such file",
                    at("missing")
                ),
                &format!(":5: feed[1].headers.B: the file {} is empty", at("empty")),
                &format!(
                    ":6: feed[1].headers.C: must be printable text on one line (it is sent as an HTTP header); it was read from the file {}",
                    at("two-lines")
                ),
                &format!(
                    ":7: feed[1].headers.D: cannot read the file {}: it is larger than 64 KiB",
                    at("huge")
                ),
                &format!(
                    ":8: feed[1].headers.E: cannot read the file {}: it is not UTF-8 text",
                    at("latin1")
                ),
                ":9: feed[1].headers.F: cannot read the environment variable FEEDHOUND_TEST_NEVER_SET_7F3A: it is not set here",
                ":10: feed[1].headers.G: env takes the name of an environment variable (letters, digits and `_`), not NAME=VALUE",
                &format!(
                    ":11: feed[1].headers.H: cannot read the file {}: it is not a regular file",
                    at(".")
                ),
                &format!(
                    ":13: notify[1].url: must be an http or https URL (a webhook), or smtp or smtps (email); it was read from the file {}",
                    at("not-a-url")
                ),
                &format!(
                    ":14: notify[1].secret: cannot read the file {}: No such file",
                    at("missing")
                ),
            ],
        );
        assert!(!message.contains("s3cr"), "{message}");
    }

    #[test]
    fn a_secret_table_takes_file_or_env_and_nothing_else() {
        for (value, expected) in [
            (
                "{ fil = \"hook.key\" }",
                "unknown key `fil`, expected one of `file`, `env`",
            ),
            (
                "{ file = \"a\", env = \"B\" }",
                "give `file` or `env`, not both",
            ),
            (
                "{}",
                "invalid type: map, expected a string, or { file = \"PATH\" } or { env = \"NAME\" }",
            ),
            (
                "1979-05-27",
                "invalid type: date or time, expected a string, or { file = \"PATH\" }",
            ),
            (
                "{ file = 123456 }",
                "invalid type: integer, expected a string",
            ),
            (
                "123456",
                "invalid type: integer, expected a string, or { file = \"PATH\" } or { env = \"NAME\" }",
            ),
        ] {
            let message = error_text(&format!(
                "[[notify]]\nurl = \"https://hooks.example/a\"\nsecret = {value}\n"
            ));
            assert!(
                message.contains(&format!(":3: notify.secret: {expected}"))
                    || message.contains(&format!(":3: notify[1].secret.fil: {expected}")),
                "{message}"
            );
            assert!(!message.contains("123456"), "{message}");
        }
        let message = error_text(
            "[[feed]]\nurl = \"https://a.example/rss\"\n[feed.headers]\nX-Key = { fil = \"k\" }\n",
        );
        assert!(
            message.contains(
                ":4: feed[1].headers.X-Key.fil: unknown key `fil`, expected one of `file`, `env`"
            ),
            "{message}"
        );
    }

    #[test]
    fn a_secret_file_may_hold_64_kib_and_a_byte_order_mark_is_not_part_of_it() {
        let most = "k".repeat(64 * 1024);
        let (_folder, config) = parse_beside(
            "[[notify]]\nurl = \"https://hooks.example/a\"\nsecret = { file = \"most\" }\n\
             [[notify]]\nurl = \"https://hooks.example/b\"\nsecret = { file = \"bom\" }\n",
            &[
                ("most", most.as_bytes()),
                ("bom", "\u{feff}k3y\n".as_bytes()),
            ],
        );
        let config = config.unwrap();
        assert_eq!(webhook_secret(&config.notify[0]), Some(most.as_str()));
        assert_eq!(webhook_secret(&config.notify[1]), Some("k3y"));
    }

    #[test]
    fn secrets_left_unread_leave_out_what_needs_them_and_nothing_else() {
        let text = "[[feed]]\nurl = \"https://a.example/rss\"\n\
                    headers = { Authorization = { file = \"missing\" }, Accept = \"text/xml\" }\n\
                    [[notify]]\nname = \"kept\"\nurl = \"https://hooks.example/a\"\n\
                    [[notify]]\nname = \"by-url\"\nurl = { env = \"FEEDHOUND_TEST_NEVER_SET_7F3A\" }\n\
                    [[notify]]\nname = \"by-secret\"\nurl = \"https://hooks.example/c\"\nsecret = { file = \"missing\" }\n";
        let path = Path::new("/nonexistent/feedhound.toml");
        assert!(Config::parse(text, path).is_err(), "read, they are missing");
        let config = Config::parse_with(text, path, Secrets::Unread).unwrap();
        assert_eq!(config.secrets, Secrets::Unread);
        assert_eq!(
            config.feeds[0].headers,
            Some(FeedHeaders::from_pairs(
                &Url::parse("https://a.example/rss").unwrap(),
                &[("accept", "text/xml")]
            ))
        );
        let targets: Vec<&str> = config.notify.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(targets, ["kept"]);
        assert!(config.read_files.is_empty());
    }

    #[test]
    fn retention_and_the_server_are_off_unless_configured() {
        let config = parse("").unwrap();
        assert_eq!(config.storage.retain, None);
        assert_eq!(config.server.listen, None);
        let config =
            parse("[storage]\nretain = \"180d\"\n[server]\nlisten = \"0.0.0.0:9187\"\n").unwrap();
        assert_eq!(
            config.storage.retain,
            Some(Duration::from_secs(180 * 86400))
        );
        assert_eq!(config.server.listen, Some("0.0.0.0:9187".parse().unwrap()));
    }

    #[test]
    fn a_retention_in_minutes_and_a_listen_without_port_are_rejected() {
        let message = error_text("[storage]\nretain = \"6m\"\n[server]\nlisten = \"localhost\"\n");
        assert!(
            message.contains(":2: storage.retain: must be at least one day"),
            "{message}"
        );
        assert!(
            message.contains(":4: server.listen: cannot read \"localhost\""),
            "{message}"
        );
    }

    #[test]
    fn durations_beyond_what_sqlite_or_dates_can_hold_are_rejected_not_panicked_on_later() {
        let message = error_text(
            "[storage]\nbusy_timeout = \"25d\"\n[polling]\nmax_interval = \"300000y\"\n",
        );
        assert_lines_contain(
            &message,
            &[
                ":2: storage.busy_timeout: must be at most 24 days",
                ":4: polling.max_interval: must be at most 100 years",
            ],
        );
        let config = parse("[storage]\nbusy_timeout = \"24d\"\n").unwrap();
        assert_eq!(config.storage.busy_timeout, Duration::from_secs(24 * 86400));
    }

    #[test]
    fn prune_retain_on_the_command_line_has_the_config_floor() {
        assert!(parse_retain("6m").unwrap_err().contains("at least one day"));
        assert!(
            parse_retain("300000y")
                .unwrap_err()
                .contains("at most 100 years")
        );
        assert_eq!(parse_retain("90d"), Ok(Duration::from_secs(90 * 86400)));
    }

    #[test]
    fn company_fields_default_to_all() {
        let config = parse(
            "[[company]]\nname = \"Apple\"\ncase_sensitive = true\nfields = [\"title\"]\n[[company]]\nname = \"Samsung\"\nticker = \"005930.KS\"\n",
        )
        .unwrap();
        assert_eq!(config.companies[0].rule.fields, vec![Field::Title]);
        assert!(config.companies[0].rule.case_sensitive);
        assert_eq!(config.companies[1].rule.fields, Field::ALL.to_vec());
        assert_eq!(config.companies[1].ticker.as_deref(), Some("005930.KS"));
    }

    #[test]
    fn feed_urls_quoted_in_messages_have_their_credentials_and_secret_parameters_masked() {
        let message = error_text(
            "[[feed]]\nurl = \"http://bob:s3cr3t@127.0.0.1/a?api_key=XYZ\"\n\
             [[feed]]\nurl = \"http://bob:s3cr3t@127.0.0.1/a?api_key=XYZ\"\n\
             [[feed]]\nurl = \"http://bob:s3cr3t@127.0.0.1:99999/b?token=XYZ\"\n",
        );
        assert_lines_contain(
            &message,
            &[
                ":4: feed[2].url: http://bob:***@127.0.0.1/a?api_key=*** is already listed on line 2",
                ":6: feed[3].url: is not a valid URL (invalid port number)",
            ],
        );
        assert!(
            !message.contains("s3cr3t") && !message.contains("XYZ"),
            "{message}"
        );
    }

    #[test]
    fn a_repeated_name_or_url_is_reported_at_its_own_key_citing_the_first_occurrence() {
        let message = error_text(
            "[[feed]]\nurl = \"https://a.example/rss\"\n\
             [[feed]]\nurl = \"https://a.example/rss\"\n\
             [[feed]]\nurl = \"https://a.example/rss\"\n\
             [[company]]\nname = \"Acme\"\n[[company]]\nname = \"ACME\"\n[[company]]\nname = \"acme\"\n\
             [[notify]]\nname = \"x\"\nurl = \"http://127.0.0.1:9/h\"\n\
             [[notify]]\nname = \"x\"\nurl = \"http://127.0.0.1:9/h2\"\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/h3\"\nname = \"x\"\n\
             [[notify]]\nname = \"webhook-5\"\nurl = \"http://127.0.0.1:9/h4\"\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/h5\"\n",
        );
        assert_lines_contain(
            &message,
            &[
                ":4: feed[2].url: https://a.example/rss is already listed on line 2",
                ":6: feed[3].url: https://a.example/rss is already listed on line 2",
                ":10: company[2].name: company \"ACME\" is already defined on line 8",
                ":12: company[3].name: company \"acme\" is already defined on line 8",
                ":17: notify[2].name: notify target \"x\" is already defined on line 14",
                ":21: notify[3].name: notify target \"x\" is already defined on line 14",
                ":26: notify[5].name: notify target \"webhook-5\" is already defined on line 23",
            ],
        );
    }

    #[test]
    fn every_key_of_every_table_is_checked_whatever_else_is_wrong_with_the_table() {
        let message = error_text(
            "[[company]]\nname = \"Acme\"\n\
             [[company]]\nname = \"\"\naliases = [\"\"]\nfields = []\n\
             [[company]]\nname = \"acme\"\naliases = [\" \"]\nfields = []\n\
             [[notify]]\nname = \"x\"\nurl = \"http://127.0.0.1:9/h\"\n\
             [[notify]]\nname = \"x\"\nurl = \"http://127.0.0.1:9/h2\"\nretry_delay = \"forever\"\n\
             [[notify]]\nurl = \"file:///etc/passwd\"\ncompanies = [\"Nope\"]\nretry_delay = \"0s\"\n\
             [[notify]]\nname = \" \"\nurl = \"http://127.0.0.1:9/h3\"\nretry_delay = \"soon\"\n",
        );
        assert_lines_contain(
            &message,
            &[
                ":4: company[2].name: must not be empty",
                ":5: company[2].aliases: an alias must not be empty",
                ":6: company[2].fields: must list at least one",
                ":8: company[3].name: company \"acme\" is already defined on line 2",
                ":9: company[3].aliases: an alias must not be empty",
                ":10: company[3].fields: must list at least one",
                ":15: notify[2].name: notify target \"x\" is already defined on line 12",
                ":17: notify[2].retry_delay: cannot read \"forever\" as a duration",
                ":19: notify[3].url: must be an http or https URL",
                ":20: notify[3].companies: \"Nope\" is not the name or an alias",
                ":21: notify[3].retry_delay: must be longer than zero",
                ":23: notify[4].name: must not be empty",
                ":25: notify[4].retry_delay: cannot read \"soon\" as a duration",
            ],
        );
    }

    #[test]
    fn blank_aliases_exclusions_and_context_words_are_refused_not_silently_dropped() {
        let message = error_text(
            "[[company]]\nname = \"Apple\"\n\
             aliases = [\"AAPL\", \"\"]\n\
             exclude = [\"apple pie\", \" \"]\n\
             require_any = [\"\"]\n\
             [[company]]\nname = \"Shell\"\n\
             require_any = [\"oil\",\n  \"\\t\"]\n",
        );
        assert_lines_contain(
            &message,
            &[
                ":3: company[1].aliases: an alias must not be empty",
                ":4: company[1].exclude: an excluded phrase must not be empty",
                ":5: company[1].require_any: a context word must not be empty",
                ":9: company[2].require_any: a context word must not be empty",
            ],
        );
        let config = parse(
            "[[company]]\nname = \"Shell\"\nexclude = [\" shell suit \"]\nrequire_any = [\" oil \"]\n",
        )
        .unwrap();
        assert_eq!(config.companies[0].rule.exclude, ["shell suit"]);
        assert_eq!(config.companies[0].rule.require_any, ["oil"]);
    }

    #[test]
    fn feed_urls_that_differ_only_in_their_fragment_are_one_feed() {
        // The fragment is never sent to the server: both would fetch the same document.
        let message = error_text(
            "[[feed]]\nurl = \"https://a.example/feed.xml\"\n\
             [[feed]]\nurl = \"https://a.example/feed.xml#latest\"\n\
             [[feed]]\nurl = \"https://a.example/feed.xml#\"\n",
        );
        assert_lines_contain(
            &message,
            &[
                ":4: feed[2].url: https://a.example/feed.xml#latest is the same feed as https://a.example/feed.xml on line 2",
                ":6: feed[3].url: https://a.example/feed.xml# is the same feed as https://a.example/feed.xml on line 2",
            ],
        );
    }
}
