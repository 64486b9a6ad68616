//! The command line: clap definitions and what each command does and prints.
//!
//! What users read on stdout (summaries, tables, JSON) is written here; diagnostics go through
//! `tracing` to stderr, so `feedhound feeds --format json | jq` stays clean.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::LazyLock;

use clap::{Parser, Subcommand, ValueEnum};

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::matcher::{EntryText, Matcher};
use crate::report_clock::{ReportClock, TimeBound};
use crate::scheduler::Control;
use crate::store::{
    FeedRef, FeedSet, FlaggedStory, PruneReport, Retried, SearchHit, SearchQuery, Span, Store,
    VacuumReport,
};
use crate::{demo, discover, fetch, opml, scheduler, text};

/// `--version` also names the time zone rules built in (`[[notify]] time_zone`), which age
/// with the release rather than with the machine's tzdata.
static LONG_VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (time zones: IANA {})",
        env!("CARGO_PKG_VERSION"),
        chrono_tz::IANA_TZDB_VERSION
    )
});

#[derive(Debug, Parser)]
#[command(
    name = "feedhound",
    version,
    long_version = LONG_VERSION.as_str(),
    about = "Watches news feeds for the companies you track"
)]
pub struct Cli {
    /// The config file.
    #[arg(long, global = true, env = "FEEDHOUND_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=feedhound=debug).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: poll every feed when it is due until SIGINT or SIGTERM.
    Run,
    /// Poll every active feed once, print a summary and exit.
    Poll {
        /// Only the feeds whose next poll time has come (their interval, backoff and the
        /// server's Retry-After, as the daemon keeps them): for a cron job run every few minutes.
        #[arg(long)]
        due: bool,
    },
    /// Show each feed's state: last fetch, status, error, entries, next poll and why.
    Feeds {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Bring a gone, moved or failing feed back: forget its 410, redirect and errors, and
        /// poll it at the daemon's next wake-up. The feed is named by its ID (first column of
        /// `feeds`) or its URL.
        #[arg(long, value_name = "ID|URL")]
        reset: Option<String>,
        #[command(flatten)]
        clock: ClockArg,
    },
    /// Validate the config file and print a one-line summary (exit 1 on errors).
    Check,
    /// List flagged stories, newest first: each story once, with every feed that carried it.
    Mentions {
        /// Only stories mentioning this company (its name or an alias).
        #[arg(long)]
        company: Option<String>,
        #[command(flatten)]
        period: Period,
        #[command(flatten)]
        sources: FeedChoice,
        /// At most this many stories (default with --format atom: 50).
        #[arg(long)]
        limit: Option<usize>,
        /// `atom`: an Atom feed of the stories, for a feed reader to follow.
        #[arg(long, value_enum, default_value_t = StoriesFormat::Table)]
        format: StoriesFormat,
    },
    /// How much each tracked company was in the news: its stories in a period (the last 7 days
    /// unless told; --until open: up to now), against the period of the same length before,
    /// with the feeds they came from and the latest one's date.
    Companies {
        #[command(flatten)]
        period: Period,
        /// Count each company's stories per day, week (from Monday) or month of the period
        /// instead; default period: the last 14 days, 8 weeks or 12 months, the current one
        /// included.
        #[arg(long, value_enum)]
        by: Option<By>,
        #[command(flatten)]
        sources: FeedChoice,
        #[arg(long, value_enum, default_value_t = ExportFormat::Table)]
        format: ExportFormat,
    },
    /// Show which companies a text would be flagged for, and why (for tuning rules).
    TestMatch {
        /// Only explain this company (its name or an alias).
        #[arg(long)]
        company: Option<String>,
        /// Text to treat as the title (added to the file's field).
        #[arg(long)]
        title: Option<String>,
        /// The entry field the file's text stands for: a company limited to some `fields`
        /// is only looked for there.
        #[arg(long, value_enum, default_value_t = TextField::Content)]
        field: TextField,
        /// A text or HTML file, or - for standard input.
        file: PathBuf,
    },
    /// Re-match every stored entry against the current company rules.
    Rescan,
    /// Full-text search of stored entries (title, summary, content, article page), newest first.
    Search {
        /// FTS5 query: words (all must appear), "exact phrase", OR, NOT, prefix*, NEAR(a b).
        query: String,
        /// Only entries mentioning this tracked company (its name or an alias).
        #[arg(long)]
        company: Option<String>,
        #[command(flatten)]
        period: Period,
        #[command(flatten)]
        sources: FeedChoice,
        /// At most this many entries.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Rebuild the full-text search index from the stored entries (when feedhound reports it
    /// damaged).
    Reindex {
        /// Only add the entries the index lacks (new or edited since the daemon or a search last
        /// brought it up to date), as after one-shot polls.
        #[arg(long)]
        pending: bool,
    },
    /// Delete entries older than `[storage] retain` that mention no company (see README).
    Prune {
        /// Only show what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Use this retention instead of the config's, e.g. 90d (at least a day).
        #[arg(long, value_parser = crate::config::parse_retain)]
        retain: Option<std::time::Duration>,
        /// Then rewrite the whole database (VACUUM) to give the space back to the filesystem;
        /// needed once for databases created before retention existed.
        #[arg(long, conflicts_with = "dry_run")]
        vacuum: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        clock: ClockArg,
    },
    /// Copy the database to a new file, consistently, while the daemon keeps running.
    Backup {
        /// The file to write, or a folder to put `feedhound-<UTC time>.db` in.
        destination: PathBuf,
        /// Replace an existing file once the new copy is complete and checked.
        #[arg(long)]
        replace: bool,
        /// With a folder DEST: then delete the dated copies there but the newest N.
        #[arg(long, value_name = "N", conflicts_with = "replace")]
        keep: Option<std::num::NonZeroUsize>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Put a backup in place of the database (the daemon stopped); the database it replaces is
    /// kept beside it as `<database>.before-restore-<UTC time>`.
    Restore {
        /// A file written by `feedhound backup` (or any copy of a feedhound database).
        backup: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show the delivery state of alerts per notify target.
    Alerts {
        /// First make every waiting alert due now and end the targets' rests (after fixing a
        /// webhook): a running daemon sends them within seconds, otherwise the next poll does.
        /// A digest target's alerts queued since its last digest time still wait for the next.
        #[arg(long)]
        retry_now: bool,
        /// With --retry-now: only this [[notify]] target's alerts.
        #[arg(long, requires = "retry_now")]
        target: Option<String>,
        /// Only send a test alert (`"test": true`, about no story) to this [[notify]] target,
        /// a POST or an email, to check its URL and secret or login; nothing is stored.
        #[arg(long, value_name = "TARGET", conflicts_with_all = ["retry_now", "format", "time_zone"])]
        send_test: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[command(flatten)]
        clock: ClockArg,
    },
    /// Find the feeds a web site offers (its page's feed links, or the usual paths such as
    /// /feed and /rss.xml), check that each parses, and print them as [[feed]] tables to add
    /// (or, with --add, add them to the config file). Stores nothing in the database
    Discover {
        /// The site's page (`https://` is assumed when no scheme is given), or a feed's URL to
        /// check
        url: String,
        /// Add feeds found to the config file: alone, the one the config does not list yet;
        /// `all`; their numbers in the list, such as `1,3`; or one's URL. A running daemon
        /// reloads the file
        #[arg(long, value_name = "WHICH", num_args = 0..=1, default_missing_value = "")]
        add: Option<discover::Choice>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Move the feed list to and from other readers.
    #[command(subcommand)]
    Opml(OpmlCommand),
    /// Serve bundled sample feeds on loopback, poll them twice into a fresh database and show
    /// what was stored. Needs no config and no internet.
    Demo {
        /// Where to put the demo's config and database (default: a new temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OpmlCommand {
    /// Add the feeds of an OPML file to the config file (comments and layout are kept).
    Import {
        /// The OPML file, as exported by another reader.
        file: PathBuf,
    },
    /// Print the configured feeds as OPML 2.0.
    Export,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// An entry field, as `test-match --field` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TextField {
    Title,
    Summary,
    Content,
    Article,
}

/// `--since`, `--until` and the clock they are read on, for `mentions`, `companies` and
/// `search`.
#[derive(Debug, clap::Args)]
pub struct Period {
    /// Start of the period, by each entry's publication date (else when first seen): a span
    /// back from now (24h, 7d), a date or time (2026-11-01, 2026-11-01 09:00), or one with its
    /// offset (2026-11-01T09:00:00+01:00).
    #[arg(long, value_parser = TimeBound::parse)]
    since: Option<TimeBound>,
    /// End of the period (excluded), written as for --since.
    #[arg(long, value_parser = TimeBound::parse)]
    until: Option<TimeBound>,
    #[command(flatten)]
    clock: ClockArg,
}

/// `--time-zone`, for the commands that print times.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ClockArg {
    /// The clock of dates and times written without an offset, of the times a table prints
    /// (JSON and CSV stay UTC) and of the spans `companies --by` counts: an IANA time zone
    /// (Europe/Berlin, America/New_York); default: [reports] time_zone, else UTC.
    #[arg(long, value_parser = crate::config::parse_time_zone)]
    time_zone: Option<chrono_tz::Tz>,
}

impl ClockArg {
    /// `--time-zone`'s clock, else `[reports] time_zone`'s.
    fn on(self, config: &Config) -> ReportClock {
        self.time_zone
            .map_or(config.reports.clock, ReportClock::new)
    }
}

/// A [`Period`] on its clock.
struct Bounds {
    clock: ReportClock,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

impl Period {
    /// The bounds on `--time-zone`'s clock, else the config's; an error if they are swapped.
    fn on(&self, config: &Config) -> anyhow::Result<Bounds> {
        let clock = self.clock.on(config);
        let since = self.since.map(|bound| clock.instant(bound));
        let until = self.until.map(|bound| clock.instant(bound));
        ensure_a_period(since, until, clock)?;
        Ok(Bounds {
            clock,
            since,
            until,
        })
    }
}

/// `--feed` and `--tag`: the feeds whose entries `mentions`, `companies` and `search` read.
#[derive(Debug, clap::Args)]
pub struct FeedChoice {
    /// Only entries of this feed: its `name`, its URL, or its ID in `feedhound feeds`; repeat
    /// it for more feeds.
    #[arg(long = "feed", value_name = "NAME|URL|ID")]
    feeds: Vec<String>,
    /// Only entries of the feeds with this tag (`[[feed]] tags`, any case); repeat it for more
    /// tags. With --feed, the feeds of both.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
}

impl FeedChoice {
    /// The stored feeds chosen; None, for every feed, when neither option is given.
    fn resolve(&self, config: &Config, store: &Store) -> anyhow::Result<Option<FeedSet>> {
        if self.feeds.is_empty() && self.tags.is_empty() {
            return Ok(None);
        }
        let mut configured = Vec::new();
        for tag in &self.tags {
            configured.extend(config.feeds_tagged(tag)?);
        }
        let mut ids = Vec::new();
        for feed in &self.feeds {
            let named = config.feeds_named(feed);
            if !named.is_empty() {
                configured.extend(named);
                continue;
            }
            let target = feed_ref(feed).ok_or_else(|| {
                anyhow::anyhow!(
                    "no feed in {} is named {feed:?}: give a feed's `name`, its URL, or its ID \
                     (the first column of `feedhound feeds`, which masks secrets in URLs)",
                    config.source.display()
                )
            })?;
            let found = store.feed_ids(&target)?;
            anyhow::ensure!(!found.is_empty(), no_feed_with(&target, feed));
            ids.extend(found);
        }
        let mut unsynced = Vec::new();
        for feed in configured {
            let found = store.feed_ids(&FeedRef::Url(feed.url.clone()))?;
            if found.is_empty() {
                unsynced.push(fetch::redact(&feed.url));
            }
            ids.extend(found);
        }
        // The config's feeds reach the database when the daemon (re)loads it or `poll` runs.
        anyhow::ensure!(
            !ids.is_empty(),
            "the feeds chosen are not in the database yet ({}): start the daemon or run \
             `feedhound poll`",
            unsynced.join(", ")
        );
        Ok(Some(FeedSet::new(ids)))
    }
}

/// `companies --by`: the spans stories are counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum By {
    Day,
    Week,
    Month,
}

impl By {
    fn span(self) -> Span {
        match self {
            By::Day => Span::Day,
            By::Week => Span::Week,
            By::Month => Span::Month,
        }
    }

    /// How many spans the period has unless told: two weeks by day, two months by week, a
    /// year by month; as many columns as a terminal shows.
    fn default_spans(self) -> u32 {
        match self {
            By::Day => 14,
            By::Week => 8,
            By::Month => 12,
        }
    }

    /// A span's column heading in a table: its first day, or the month.
    fn heading(self, start: chrono::NaiveDate) -> String {
        match self {
            By::Day | By::Week => start.format("%m-%d").to_string(),
            By::Month => start.format("%Y-%m").to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Table,
    Json,
    Csv,
}

/// How `mentions` prints its stories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoriesFormat {
    Table,
    Json,
    Csv,
    Atom,
}

impl StoriesFormat {
    /// The format the other commands share; None for Atom, `mentions`' own.
    fn export(self) -> Option<ExportFormat> {
        match self {
            StoriesFormat::Table => Some(ExportFormat::Table),
            StoriesFormat::Json => Some(ExportFormat::Json),
            StoriesFormat::Csv => Some(ExportFormat::Csv),
            StoriesFormat::Atom => None,
        }
    }
}

/// Runs the chosen command. Errors are for the caller to print; the exit code says how it went.
pub async fn execute(cli: Cli, control: Control) -> anyhow::Result<ExitCode> {
    let shutdown = control.shutdown.clone();
    match cli.command {
        Command::Check => match Config::load(&cli.config) {
            Ok(config) => {
                println!("{}", config.summary());
                for warning in &config.warnings {
                    eprintln!("warning: {warning}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => {
                eprintln!("{err}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Poll { due } => {
            let config = Config::load(&cli.config)?;
            config.log_warnings();
            let summary = if due {
                scheduler::poll_due(&config, shutdown).await?
            } else {
                scheduler::poll_once(&config, shutdown).await?
            };
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run => {
            let config = Config::load(&cli.config)?;
            config.log_warnings();
            scheduler::run(config, control).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Feeds {
            format,
            reset,
            clock,
        } => {
            let config = Config::load_without_secrets(&cli.config)?;
            if let Some(feed) = reset {
                let Some(target) = feed_ref(&feed) else {
                    eprintln!(
                        "--reset takes a feed's ID (the first column of `feedhound feeds`) or its URL; {feed:?} is neither"
                    );
                    return Ok(ExitCode::FAILURE);
                };
                let store = open_unsynced(&config)?;
                if !store.reset_feed(&target)? {
                    eprintln!("{}", no_feed_with(&target, &feed));
                    return Ok(ExitCode::FAILURE);
                }
                println!("reset {feed}: it is polled at the next opportunity");
                return Ok(ExitCode::SUCCESS);
            }
            let mut feeds = open_unsynced(&config)?.feed_statuses()?;
            for feed in &mut feeds {
                // Feed URLs may carry credentials; this output gets pasted into tickets.
                feed.url = fetch::redact_str(&feed.url);
                feed.moved_to = feed.moved_to.as_deref().map(fetch::redact_str);
                let given_up = feed.article_pages.as_mut();
                if let Some(page) = given_up.and_then(|pages| pages.latest_given_up.as_mut()) {
                    page.url = fetch::redact_str(&page.url);
                }
            }
            print_feeds(&feeds, clock.on(&config), format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Mentions {
            company,
            period,
            sources,
            limit,
            format,
        } => {
            let config = Config::load_without_secrets(&cli.config)?;
            let Bounds {
                clock,
                since,
                until,
            } = period.on(&config)?;
            let company = company.map(|c| config.company_named(&c)).transpose()?;
            let store = open_unsynced(&config)?;
            let feeds = sources.resolve(&config, &store)?;
            let limit = limit.or((format == StoriesFormat::Atom).then_some(crate::atom::STORIES));
            let stories = store.flagged_stories(company, since, until, feeds.as_ref(), limit)?;
            match format.export() {
                Some(format) => print_stories(&stories, clock, format)?,
                None => {
                    let (id, title) = crate::atom::names(company, &sources.feeds, &sources.tags);
                    let feed = crate::atom::feed(&id, &title, &stories);
                    std::io::stdout().lock().write_all(feed.as_bytes())?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Companies {
            period,
            by: Some(by),
            sources,
            format,
        } => {
            let config = Config::load_without_secrets(&cli.config)?;
            let Bounds {
                clock,
                since,
                until,
            } = period.on(&config)?;
            let end = until.unwrap_or_else(Utc::now);
            let span = by.span();
            let since = since.unwrap_or_else(|| {
                // The span holding the period's last instant, and as many whole ones before it.
                let last = span.start(clock.date_of(end - chrono::Duration::nanoseconds(1)));
                clock.start_of(span.before(last, by.default_spans() - 1))
            });
            ensure_a_period(Some(since), Some(end), clock)?;
            let store = open_unsynced(&config)?;
            let feeds = sources.resolve(&config, &store)?;
            let counts =
                store.company_stories_by(span, clock.zone(), since, until, feeds.as_ref())?;
            let table = SpanTable::new(&config, span, clock, since, end, counts);
            if format == ExportFormat::Table && table.spans.len() > MOST_COLUMNS {
                let (spans, longer) = match by {
                    By::Day => ("days", ", --by week"),
                    By::Week => ("weeks", ", --by month"),
                    By::Month => ("months", ""),
                };
                anyhow::bail!(
                    "the period has {} {spans}, too many columns for a table (at most \
                     {MOST_COLUMNS}): use a shorter period{longer}, or --format csv",
                    table.spans.len()
                );
            }
            print_company_spans(&table, by, clock, since, until, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Companies {
            period,
            by: None,
            sources,
            format,
        } => {
            let config = Config::load_without_secrets(&cli.config)?;
            let Bounds {
                clock,
                since,
                until,
            } = period.on(&config)?;
            let end = until.unwrap_or_else(Utc::now);
            let since = since.unwrap_or(end - chrono::Duration::days(7));
            // A --since in the future would make the period before it run backwards.
            ensure_a_period(Some(since), Some(end), clock)?;
            let store = open_unsynced(&config)?;
            let feeds = sources.resolve(&config, &store)?;
            let mut current = store.company_activity(since, until, feeds.as_ref())?;
            let before = since - (end - since);
            let mut previous = store.company_activity(before, Some(since), feeds.as_ref())?;
            let mut rows: Vec<CompanyRow> = config
                .companies
                .iter()
                .map(|company| {
                    let name = &company.rule.name;
                    let activity = current.remove(name).unwrap_or_default();
                    CompanyRow {
                        company: name.clone(),
                        ticker: company.ticker.clone(),
                        stories: activity.stories,
                        previous_stories: previous.remove(name).unwrap_or_default().stories,
                        sources: activity.sources,
                        latest_at: activity.latest_at,
                    }
                })
                .collect();
            rows.sort_by(|a, b| {
                b.stories
                    .cmp(&a.stories)
                    .then_with(|| a.company.cmp(&b.company))
            });
            print_companies(&rows, clock, since, until, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::TestMatch {
            company,
            title,
            field,
            file,
        } => {
            let config = Config::load_without_secrets(&cli.config)?;
            let company = company.map(|c| config.company_named(&c)).transpose()?;
            let raw = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let matcher = Matcher::new(&config.company_rules())?;
            let text = text::html_to_text(&raw);
            let title = title.map(|t| text::html_to_text(&t)).unwrap_or_default();
            let mut entry = EntryText {
                title: &title,
                ..EntryText::default()
            };
            match field {
                TextField::Title if title.is_empty() => entry.title = &text,
                TextField::Title => {
                    anyhow::bail!("--title and --field title both give the title; use one of them")
                }
                TextField::Summary => entry.summary = &text,
                TextField::Content => entry.content = &text,
                TextField::Article => entry.article = &text,
            }
            let explanations = matcher.explain(&entry);
            let mut out = std::io::stdout().lock();
            let mut shown = 0;
            for explanation in &explanations {
                if company.is_some_and(|c| c != &*explanation.company) {
                    continue;
                }
                writeln!(out, "{explanation}")?;
                shown += 1;
            }
            if shown == 0 {
                writeln!(out, "no tracked company is named in this text")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rescan => {
            let config = Config::load(&cli.config)?;
            let (scanned, changed) = scheduler::rescan(&config).await?;
            println!("re-matched {scanned} entries; mentions changed for {changed}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Search {
            query,
            company,
            period,
            sources,
            limit,
            format,
        } => {
            let config = Config::load_without_secrets(&cli.config)?;
            let Bounds {
                clock,
                since,
                until,
            } = period.on(&config)?;
            let company = company
                .map(|c| config.company_named(&c).map(str::to_owned))
                .transpose()?;
            let mut store = open_unsynced(&config)?;
            let feeds = sources.resolve(&config, &store)?;
            let hits = store.search(&SearchQuery {
                text: query,
                company,
                since,
                until,
                feeds,
                limit,
            })?;
            print_hits(&hits, clock, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reindex { pending } => {
            let config = Config::load_without_secrets(&cli.config)?;
            let database = existing_database(&config)?;
            let mut store = Store::open_with(&database, config.storage.busy_timeout)?;
            if pending {
                let indexed = store.catch_up_search_index()?;
                anyhow::ensure!(
                    !store.search_index_is_set_aside()?,
                    "the search index is damaged and set aside: run `feedhound reindex` to rebuild it"
                );
                println!("search index up to date; entries added: {indexed}");
            } else {
                let indexed = store.rebuild_search_index()?;
                println!("search index rebuilt: {indexed} entries");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Prune {
            dry_run,
            retain,
            vacuum,
            format,
            clock,
        } => {
            // A dry run neither syncs the database's alert state nor deletes anything.
            let config = if dry_run {
                Config::load_without_secrets(&cli.config)?
            } else {
                Config::load(&cli.config)?
            };
            let Some(retain) = retain.or(config.storage.retain) else {
                anyhow::bail!(
                    "no retention is set: add `retain = \"180d\"` to [storage] in {}, or pass --retain",
                    cli.config.display()
                );
            };
            // An entry the changed company rules flag must not be deleted as unflagged.
            if dry_run {
                let store = open_unsynced(&config)?;
                if scheduler::rules_are_stale(&store, &config)? {
                    eprintln!(
                        "note: stored entries were matched with other company rules; entries the current rules flag may be listed (run `feedhound rescan` first)"
                    );
                }
            } else {
                let (scanned, _) = scheduler::rematch_if_rules_changed(&config, &shutdown).await?;
                if scheduler::rules_are_stale(&open_unsynced(&config)?, &config)? {
                    anyhow::bail!(
                        "stored entries are not yet matched with the current company rules (interrupted, or a daemon runs with other rules); nothing was pruned"
                    );
                }
                if scanned > 0 {
                    eprintln!("re-matched {scanned} entries with the changed company rules first");
                }
            }
            // A dry run writes nothing, not even the config's feeds (see `open_unsynced`).
            let mut store = if dry_run {
                open_unsynced(&config)?
            } else {
                scheduler::open_store(&config)?
            };
            let report = store.prune(retain, chrono::Utc::now(), dry_run)?;
            let vacuumed = if vacuum { Some(store.vacuum()?) } else { None };
            print_prune(&report, vacuumed, format, clock.on(&config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup {
            destination,
            replace,
            keep,
            format,
        } => {
            let config = Config::load_without_secrets(&cli.config)?;
            let database = config.database_path();
            let started = std::time::Instant::now();
            let (busy, now) = (config.storage.busy_timeout, chrono::Utc::now());
            let report = match keep {
                Some(keep) => {
                    crate::store::backup_keeping(&database, &destination, keep, busy, now)?
                }
                None => crate::store::backup(&database, &destination, replace, busy, now)?,
            };
            print_backup(&database, &report, started.elapsed(), format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { backup, format } => {
            let config = Config::load_without_secrets(&cli.config)?;
            let database = config.database_path();
            let _alone = crate::daemon_lock::hold_alone(&database)?;
            let report = crate::store::restore(
                &backup,
                &database,
                config.storage.busy_timeout,
                chrono::Utc::now(),
            )?;
            print_restore(&backup, &report, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Alerts {
            retry_now,
            target,
            send_test,
            format,
            clock,
        } => {
            let config = Config::load(&cli.config)?;
            if let Some(name) = send_test {
                config.log_warnings();
                let taken =
                    crate::notify::send_test_alert(&config, config.notify_named(&name)?).await?;
                if !taken.not_delivered_to.is_empty() {
                    eprintln!(
                        "{name}: its server took the test email, but not for {}; check the target's `to`",
                        crate::notify::refused_list(&taken.not_delivered_to)
                    );
                    return Ok(ExitCode::FAILURE);
                }
                println!("{name} accepted the test alert");
                return Ok(ExitCode::SUCCESS);
            }
            // The config's mistakes first: they hold whether or not there is a database.
            let targets = if retry_now {
                Some(retry_targets(&config, target.as_deref())?)
            } else {
                None
            };
            let mut store = open_unsynced(&config)?;
            let now = chrono::Utc::now();
            let digests = crate::notify::digest_windows(&config, now);
            if let Some(targets) = targets {
                let said = retried_message(&store.retry_now(&targets, &digests, now)?);
                match format {
                    // stdout holds the JSON document alone.
                    Format::Json => eprintln!("{said}"),
                    Format::Table => println!("{said}\n"),
                }
            }
            let mut status = store.outbox_status(&crate::notify::url_keys(&config), &digests)?;
            crate::notify::keep_unfixed_refusals(&config, &mut status);
            let mut out = std::io::stdout().lock();
            if format == Format::Json {
                write_json(&mut out, &status)?;
            } else {
                let clock = clock.on(&config);
                write_times_in(&mut out, clock)?;
                writeln!(
                    out,
                    "{:<20}  {:>9}  {:>7}  {:>8}  {:>9}  {:<19}  LAST ERROR",
                    "TARGET", "DELIVERED", "PENDING", "RETRYING", "WITHDRAWN", "NEXT ATTEMPT"
                )?;
                for t in &status {
                    writeln!(
                        out,
                        "{:<20}  {:>9}  {:>7}  {:>8}  {:>9}  {:<19}  {}",
                        t.target,
                        t.delivered,
                        t.pending,
                        t.retrying,
                        t.withdrawn,
                        t.next_attempt()
                            .map_or_else(|| "-".to_owned(), |at| clock.show_stored(at)),
                        t.last_error.as_deref().unwrap_or("")
                    )?;
                    if let (Some(refused), Some(at)) = (&t.not_delivered_to, &t.last_delivered_at) {
                        writeln!(
                            out,
                            "  its latest email ({}) did not reach {}; check the target's `to`",
                            clock.show_stored(at),
                            crate::notify::refused_list(refused)
                        )?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Discover { url, add, format } => {
            let url = site_url(&url)?;
            // A new user discovers before writing a config: the defaults serve then.
            let config = if cli.config.exists() {
                Config::load_without_secrets(&cli.config)?
            } else {
                Config::parse_with("", &cli.config, crate::config::Secrets::Unread)?
            };
            let discovery = discover::discover(&config, &url).await?;
            // The listing is printed whatever the adding gives: its numbers are how to choose.
            let adding = add.map(|choice| {
                let chosen = discovery.chosen(&choice)?;
                let added = discover::add_to_config(&cli.config, &chosen)?;
                anyhow::Ok(Adding { chosen, added })
            });
            let added = match &adding {
                Some(Ok(adding)) => Some(adding),
                _ => None,
            };
            print_discovery(&discovery, added, adding.is_some(), &url, &config, format)?;
            match adding {
                Some(Err(err)) => return Err(err),
                // A URL with a token now sits in the file: say so if everyone can read it.
                Some(Ok(adding)) if !adding.added.is_empty() => {
                    for warning in Config::load_without_secrets(&cli.config)?.warnings {
                        eprintln!("warning: {warning}");
                    }
                }
                _ => {}
            }
            Ok(if discovery.found.is_empty() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Opml(OpmlCommand::Import { file }) => {
            let report = opml::import(&cli.config, &opml::read_opml_file(&file)?)?;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Opml(OpmlCommand::Export) => {
            print!(
                "{}",
                opml::export(&Config::load_without_secrets(&cli.config)?)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { dir } => {
            demo::run(dir, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A feed's ID, or its http or https URL, as `feeds --reset` and `--feed` take them; a URL is
/// parsed as the config's are (the config's `HTTP://Example.com` is stored as
/// `http://example.com/`, and is found by either spelling).
fn feed_ref(arg: &str) -> Option<FeedRef> {
    let arg = arg.trim();
    match arg.parse::<i64>() {
        Ok(id) => Some(FeedRef::Id(id)),
        Err(_) => url::Url::parse(arg)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .map(FeedRef::Url),
    }
}

/// The error for a feed ID or URL no stored feed has.
fn no_feed_with(target: &FeedRef, arg: &str) -> String {
    let kind = match target {
        FeedRef::Id(_) => "ID",
        FeedRef::Url(_) => "URL",
    };
    format!("no feed has the {kind} {arg}; `feedhound feeds` lists them")
}

/// The targets `alerts --retry-now` is for, `target` or every configured one, each with the key
/// of its URL.
fn retry_targets(config: &Config, target: Option<&str>) -> anyhow::Result<HashMap<String, String>> {
    let mut url_keys = crate::notify::url_keys(config);
    if let Some(name) = target {
        let name = &config.notify_named(name)?.name;
        url_keys.retain(|target, _| target == name);
    }
    anyhow::ensure!(
        !url_keys.is_empty(),
        "{} has no [[notify]] target to retry",
        config.source.display()
    );
    Ok(url_keys)
}

fn retried_message(retried: &Retried) -> String {
    let alerts = match retried.due {
        0 if retried.held_for_digest > 0 => "No alert is due now".to_string(),
        0 => "No alert is waiting".to_string(),
        1 => "1 waiting alert is due now".to_string(),
        n => format!("{n} waiting alerts are due now"),
    };
    let held = match retried.held_for_digest {
        0 => String::new(),
        1 => ", 1 waits for its digest".to_string(),
        n => format!(", {n} wait for their digest"),
    };
    let rests = match retried.rests_ended {
        0 => String::new(),
        1 => ", and 1 target's rest is over".to_string(),
        n => format!(", and {n} targets' rests are over"),
    };
    let when = if retried.due == 0 {
        ""
    } else {
        ": a running daemon sends them within seconds; without one, the next `feedhound poll` does"
    };
    format!("{alerts}{held}{rests}{when}")
}

/// The database as it is, without syncing it to this config: a `feeds` or `mentions` run with
/// another (or a half-edited) config must not deactivate feeds under the running daemon. For
/// reading, and for writes that do not depend on the config's tables (`alerts --retry-now`).
fn open_unsynced(config: &Config) -> anyhow::Result<Store> {
    Store::open_with(&existing_database(config)?, config.storage.busy_timeout)
}

/// The config's database, which must be there already: made empty on the spot, after a wrong
/// `path` or `--config`, it would answer a report as a quiet week.
fn existing_database(config: &Config) -> anyhow::Result<PathBuf> {
    let database = config.database_path();
    // A path this user cannot look into is SQLite's to report.
    if let Ok(false) = database.try_exists() {
        anyhow::bail!(
            "there is no database at {} yet: the daemon (`feedhound run`) creates it when it \
             starts, as does `feedhound poll`; if it is elsewhere, check [storage] path in {} (a \
             relative path is from that file's folder), or --config",
            database.display(),
            config.source.display()
        );
    }
    Ok(database)
}

/// An empty period is a mistake (the bounds swapped), not a question with no answer.
fn ensure_a_period(
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    clock: ReportClock,
) -> anyhow::Result<()> {
    if let (Some(since), Some(until)) = (since, until)
        && until <= since
    {
        anyhow::bail!(
            "--until ({}) is not later than --since ({}); the period is empty",
            clock.show(until),
            clock.show(since)
        );
    }
    Ok(())
}

/// `search` output; JSON fields are only ever added.
fn print_hits(hits: &[SearchHit], clock: ReportClock, format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        return write_json(&mut out, hits);
    }
    if hits.is_empty() {
        writeln!(out, "no entry matches")?;
    } else {
        write_times_in(&mut out, clock)?;
    }
    for hit in hits {
        writeln!(
            out,
            "{}  {}  {}",
            clock.show_stored(hit.published_at.as_deref().unwrap_or(&hit.first_seen_at)),
            hit.feed,
            hit.title.as_deref().unwrap_or("(untitled)")
        )?;
        if let Some(link) = &hit.link {
            writeln!(out, "    {link}")?;
        }
        writeln!(out, "    {}", hit.snippet.replace('\n', " "))?;
    }
    Ok(())
}

/// `value` as pretty JSON and a line end: the whole of stdout for `--format json`.
fn write_json<T: serde::Serialize + ?Sized>(out: &mut impl Write, value: &T) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// `discover`'s argument: a URL, or a host and path typed without `https://`.
fn site_url(arg: &str) -> anyhow::Result<url::Url> {
    let arg = arg.trim();
    // `example.com:8443/blog` parses as a URL of scheme `example.com`: no `://`, no scheme.
    let parsed = if arg.contains("://") {
        url::Url::parse(arg)
    } else {
        url::Url::parse(&format!("https://{arg}"))
    };
    match parsed {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(url),
        _ => anyhow::bail!("{arg} is not an http or https URL of a site"),
    }
}

/// What `discover --add` picked and, of those, what the config did not list yet.
struct Adding<'a> {
    chosen: Vec<&'a discover::FoundFeed>,
    added: Vec<crate::config::FeedConfig>,
}

/// How many of the usual paths that failed alike `discover` names.
const SHOWN_PATHS: usize = 3;

/// `discover` output; JSON fields are only ever added.
fn print_discovery(
    discovery: &discover::Discovery,
    adding: Option<&Adding<'_>>,
    add_asked: bool,
    url: &url::Url,
    config: &Config,
    format: Format,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let added: Option<Vec<String>> = adding.map(|adding| {
        adding
            .added
            .iter()
            .map(|feed| fetch::redact(&feed.url))
            .collect()
    });
    if format == Format::Json {
        #[derive(serde::Serialize)]
        struct Output<'a> {
            #[serde(flatten)]
            discovery: &'a discover::Discovery,
            /// The feeds `--add` added to the config file; only with `--add`.
            #[serde(skip_serializing_if = "Option::is_none")]
            added: Option<&'a [String]>,
        }
        return write_json(
            &mut out,
            &Output {
                discovery,
                added: added.as_deref(),
            },
        );
    }
    let shown = fetch::redact(url);
    if discovery.found.is_empty() {
        // Found empty means the usual paths were tried too.
        let named = if discovery.unusable.is_empty() {
            "its page names no feed"
        } else {
            "none of the feeds its page names could be read"
        };
        let paths = discover::USUAL_PATHS.join(", ");
        match discovery.usual_paths_failed.len() {
            0 => eprintln!(
                "No feed found at {shown}: {named}, and none of {paths} serves one, at the site's \
                 root or in the page's folder."
            ),
            failed => eprintln!(
                "No feed found at {shown}: {named}, and of {paths}, at the site's root and in the \
                 page's folder, {failed} could not be checked (below) and the others serve none."
            ),
        }
    } else {
        if discovery.is_feed {
            writeln!(out, "{shown} is a feed.\n")?;
        }
        writeln!(out, "{:>2}  {:>7}  {:<50}  TITLE", "#", "ENTRIES", "FEED")?;
        for (index, feed) in discovery.found.iter().enumerate() {
            let listed = if feed.in_config {
                "  (in the config)"
            } else {
                ""
            };
            writeln!(
                out,
                "{:>2}  {:>7}  {:<50}  {}{listed}",
                index + 1,
                feed.entries,
                feed.url,
                feed.title.as_deref().unwrap_or("-")
            )?;
        }
    }
    if !discovery.unusable.is_empty() {
        writeln!(out, "\nNamed by the page, but not readable as feeds:")?;
        for unusable in &discovery.unusable {
            writeln!(out, "  {}: {}", unusable.url, unusable.reason)?;
        }
    }
    if !discovery.usual_paths_failed.is_empty() {
        writeln!(
            out,
            "\nUsual paths that could not be checked (a feed may be there all the same):"
        )?;
        // A site that turns clients away answers every path alike: one line per answer.
        let mut by_reason: Vec<(&str, Vec<&str>)> = Vec::new();
        for failed in &discovery.usual_paths_failed {
            match by_reason
                .iter_mut()
                .find(|(reason, _)| *reason == failed.reason)
            {
                Some((_, urls)) => urls.push(&failed.url),
                None => by_reason.push((&failed.reason, vec![&failed.url])),
            }
        }
        for (reason, urls) in by_reason {
            let more = match urls.len() {
                n if n > SHOWN_PATHS => format!(" and {} more", n - SHOWN_PATHS),
                _ => String::new(),
            };
            let shown = urls[..urls.len().min(SHOWN_PATHS)].join(", ");
            writeln!(out, "  {reason}: {shown}{more}")?;
        }
        if discovery.found.is_empty() {
            writeln!(
                out,
                "The site may turn away automated clients or be failing: look for a feed link on \
                 its pages and run `feedhound discover` with that URL."
            )?;
        }
    }
    if let Some(adding) = adding {
        if adding.added.is_empty() && !discovery.found.is_empty() {
            writeln!(out, "\nNothing to add: the config lists them already.")?;
        } else if !adding.added.is_empty() {
            writeln!(
                out,
                "\nAdded to {} (a running daemon reloads it):",
                config.source.display()
            )?;
            for feed in &adding.chosen {
                if adding.added.iter().any(|new| new.url == feed.config_url) {
                    writeln!(out, "  + {}", feed.url)?;
                } else {
                    writeln!(out, "  = {}  (in the config already)", feed.url)?;
                }
            }
        }
        return Ok(());
    }
    // A refused `--add` is followed by its error, which says how to choose.
    let tables = discovery.config_tables();
    if !tables.is_empty() && !add_asked {
        writeln!(
            out,
            "\nTo poll them, add to {} (then `feedhound check`), or run this again with `--add`:\n{tables}",
            config.source.display()
        )?;
    }
    Ok(())
}

/// `backup` output; JSON fields are only ever added.
fn print_backup(
    database: &std::path::Path,
    report: &crate::store::BackupReport,
    took: std::time::Duration,
    format: Format,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        return write_json(&mut out, report);
    }
    writeln!(
        out,
        "backed up {} to {} in {:.1} s: {} entries, {} stories, {}, checked",
        database.display(),
        report.path.display(),
        took.as_secs_f64(),
        report.entries,
        report.stories,
        bytesize::ByteSize::b(report.bytes).display().si(),
    )?;
    for removed in &report.removed {
        writeln!(out, "deleted the older copy {}", removed.display())?;
    }
    Ok(())
}

/// `restore` output; JSON fields are only ever added.
fn print_restore(
    backup: &std::path::Path,
    report: &crate::store::RestoreReport,
    format: Format,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        return write_json(&mut out, report);
    }
    let restored = &report.restored;
    writeln!(
        out,
        "restored {} from {}: {} entries, {} stories",
        restored.path.display(),
        backup.display(),
        restored.entries,
        restored.stories,
    )?;
    if let Some(kept) = &report.replaced_kept_as {
        writeln!(
            out,
            "the database it replaced is kept as {}; delete it when you no longer need it",
            kept.display()
        )?;
    }
    writeln!(
        out,
        "feeds resume from the backup's state: the next poll stores again what was published since the backup was taken, and alerts again on what it flags"
    )?;
    Ok(())
}

fn print_prune(
    report: &PruneReport,
    vacuumed: Option<VacuumReport>,
    format: Format,
    clock: ReportClock,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        let value = serde_json::json!({ "prune": report, "vacuum": vacuumed });
        return write_json(&mut out, &value);
    }
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    writeln!(
        out,
        "{verb} {} entries and {} stories older than {}{} (kept {} old entries that mention a company)",
        report.entries,
        report.stories,
        clock.show(report.cutoff),
        zone_named(clock),
        report.kept_flagged
    )?;
    for feed in &report.feeds {
        writeln!(out, "{:>8}  {}", feed.entries, feed.feed)?;
    }
    if report.tombstones_forgotten > 0 {
        let verb = if report.dry_run {
            "would forget"
        } else {
            "forgot"
        };
        writeln!(
            out,
            "{verb} the keys of {} deleted entries that their feeds no longer serve",
            report.tombstones_forgotten
        )?;
    }
    if !report.dry_run && (report.entries > 0 || report.tombstones_forgotten > 0) {
        if report.auto_vacuum {
            writeln!(out, "freed {} bytes", report.freed_bytes)?;
        } else if vacuumed.is_none() {
            writeln!(
                out,
                "the space is reused for new entries; run `feedhound prune --vacuum` once to shrink the file"
            )?;
        }
    }
    if let Some(v) = vacuumed {
        writeln!(
            out,
            "vacuumed: {} -> {} bytes",
            v.bytes_before, v.bytes_after
        )?;
    }
    Ok(())
}

fn print_feeds(
    feeds: &[crate::store::FeedStatus],
    clock: ReportClock,
    format: Format,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        return write_json(&mut out, feeds);
    }
    write_times_in(&mut out, clock)?;
    writeln!(
        out,
        "{:>4}  {:<11}  {:>7}  {:<19}  {:>6}  {:<23}  {:<22}  URL",
        "ID", "STATE", "ENTRIES", "LAST FETCH", "STATUS", "NEXT POLL", "INTERVAL (WHY)"
    )?;
    for feed in feeds {
        let interval = match (feed.interval_secs, &feed.interval_reason) {
            (Some(secs), Some(reason)) => {
                format!(
                    "{} ({reason})",
                    humantime::format_duration(std::time::Duration::from_secs(secs as u64))
                )
            }
            _ => "-".to_string(),
        };
        let next = if feed.state == "inactive" || feed.state == "gone" {
            "-".to_owned()
        } else {
            feed.next_poll_at
                .as_deref()
                .map_or_else(|| "now".to_owned(), |next| clock.show_stored(next))
        };
        writeln!(
            out,
            "{:>4}  {:<11}  {:>7}  {:<19}  {:>6}  {:<23}  {:<22}  {}",
            feed.id,
            feed.state,
            feed.entries,
            feed.last_fetch_at
                .as_deref()
                .map_or_else(|| "-".to_owned(), |at| clock.show_stored(at)),
            feed.last_status.map_or("-".to_string(), |s| s.to_string()),
            next,
            interval,
            feed.name
                .as_deref()
                .map_or(feed.url.clone(), |name| format!("{name} <{}>", feed.url)),
        )?;
        if let Some(moved_to) = &feed.moved_to {
            writeln!(
                out,
                "      moved permanently to {moved_to}: update the url in the config"
            )?;
        }
        if let Some(error) = &feed.last_error {
            writeln!(out, "      error: {error}")?;
        }
        if let Some(note) = retry_after_note(feed, chrono::Utc::now(), clock) {
            writeln!(out, "      {note}")?;
        }
        if let Some(note) = feed.article_pages.as_ref().and_then(page_troubles_note) {
            writeln!(out, "      {note}")?;
        }
    }
    Ok(())
}

/// The line under a feed whose article pages wait or were given up; None when all were read.
fn page_troubles_note(pages: &crate::store::PageTroubles) -> Option<String> {
    let mut parts = Vec::new();
    if pages.waiting > 0 {
        parts.push(match pages.retrying {
            0 => format!("{} waiting", pages.waiting),
            retrying => format!("{} waiting ({retrying} to retry)", pages.waiting),
        });
    }
    if pages.given_up > 0 {
        parts.push(format!("{} given up", pages.given_up));
    }
    if parts.is_empty() {
        return None;
    }
    let mut note = format!("article pages: {}", parts.join(", "));
    if let Some(page) = &pages.latest_given_up {
        let why = page.error.as_deref().unwrap_or("no reason recorded");
        note.push_str(&format!("; newest story given up: {} ({why})", page.url));
    }
    Some(note)
}

/// What a feed's last `Retry-After` means now: nothing once its time has passed; a wait, when
/// the schedule took it; a request not believed, when it was too far off to take.
fn retry_after_note(
    feed: &crate::store::FeedStatus,
    now: chrono::DateTime<chrono::Utc>,
    clock: ReportClock,
) -> Option<String> {
    let until = feed.retry_after.as_deref()?;
    let until_time = crate::store::parse_sql_time(until).filter(|at| *at > now)?;
    let next_poll = feed
        .next_poll_at
        .as_deref()
        .and_then(crate::store::parse_sql_time);
    let until = format!("{}{}", clock.show(until_time), zone_named(clock));
    Some(if next_poll.is_some_and(|next| next >= until_time) {
        format!("waiting: the server asked (Retry-After) not to be polled before {until}")
    } else {
        format!(
            "the server asked (Retry-After) not to be polled before {until}; not believed: \
             more than {} days away",
            crate::schedule::MAX_RETRY_AFTER.num_days()
        )
    })
}

/// One line of `feedhound companies`.
#[derive(serde::Serialize)]
struct CompanyRow {
    company: String,
    ticker: Option<String>,
    stories: i64,
    /// In the period of the same length just before.
    previous_stories: i64,
    sources: i64,
    latest_at: Option<String>,
}

/// `companies` output. JSON and CSV are a stable interface (see README): fields are only added.
fn print_companies(
    rows: &[CompanyRow],
    clock: ReportClock,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    format: ExportFormat,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        ExportFormat::Json => write_json(&mut out, rows)?,
        ExportFormat::Csv => {
            let mut csv = csv::Writer::from_writer(out);
            csv.write_record([
                "company",
                "ticker",
                "stories",
                "previous_stories",
                "sources",
                "latest_at",
            ])?;
            for row in rows {
                csv.write_record([
                    row.company.as_str(),
                    row.ticker.as_deref().unwrap_or(""),
                    &row.stories.to_string(),
                    &row.previous_stories.to_string(),
                    &row.sources.to_string(),
                    row.latest_at.as_deref().unwrap_or(""),
                ])?;
            }
            csv.flush()?;
        }
        ExportFormat::Table => {
            let end = until.map_or_else(|| "now".to_owned(), |until| clock.show(until));
            writeln!(
                out,
                "Stories from {} to {end}{}, against the period as long before it:\n",
                clock.show(since),
                zone_named(clock)
            )?;
            writeln!(
                out,
                "{:<24}  {:>7}  {:>8}  {:>6}  {:>7}  LATEST",
                "COMPANY", "STORIES", "PREVIOUS", "CHANGE", "SOURCES"
            )?;
            for row in rows {
                writeln!(
                    out,
                    "{:<24}  {:>7}  {:>8}  {:>6}  {:>7}  {}",
                    row.company,
                    row.stories,
                    row.previous_stories,
                    change(row.previous_stories, row.stories),
                    row.sources,
                    row.latest_at
                        .as_deref()
                        .map_or_else(|| "-".to_owned(), |latest| clock.show_stored(latest))
                )?;
            }
        }
    }
    Ok(())
}

/// The most spans `companies --by` shows as table columns: a month by day, some 240 characters
/// wide, is as wide as a table is of use; more is for `--format csv`.
const MOST_COLUMNS: usize = 31;

/// `companies --by`: each tracked company's stories in each span of the period, most
/// stories first.
struct SpanTable {
    /// The first day of each span, oldest first.
    spans: Vec<chrono::NaiveDate>,
    rows: Vec<SpanTableRow>,
}

struct SpanTableRow {
    company: String,
    ticker: Option<String>,
    /// In each span, in the order of [`SpanTable::spans`].
    stories: Vec<i64>,
}

impl SpanTable {
    /// The spans from the one holding `since` to the one before `end`, and on to the latest
    /// that `counts` holds: with no `--until`, an entry a publisher dated ahead of now counts,
    /// as it does in `companies` without `--by`.
    fn new(
        config: &Config,
        span: Span,
        clock: ReportClock,
        since: DateTime<Utc>,
        end: DateTime<Utc>,
        counts: Vec<(String, chrono::NaiveDate, i64)>,
    ) -> SpanTable {
        let latest = counts.iter().map(|(_, start, _)| *start).max();
        let first = span.start(clock.date_of(since));
        let spans: Vec<_> = std::iter::successors(Some(first), |&start| Some(span.next(start)))
            .take_while(|&start| {
                clock.start_of(start) < end || latest.is_some_and(|latest| start <= latest)
            })
            .collect();
        let mut by_company: HashMap<String, HashMap<chrono::NaiveDate, i64>> = HashMap::new();
        for (company, start, stories) in counts {
            by_company
                .entry(company)
                .or_default()
                .insert(start, stories);
        }
        let mut rows: Vec<_> = config
            .companies
            .iter()
            .map(|company| {
                let counts = by_company.get(&company.rule.name);
                SpanTableRow {
                    company: company.rule.name.clone(),
                    ticker: company.ticker.clone(),
                    stories: spans
                        .iter()
                        .map(|start| counts.and_then(|c| c.get(start)).copied().unwrap_or(0))
                        .collect(),
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            let total = |row: &SpanTableRow| row.stories.iter().sum::<i64>();
            total(b)
                .cmp(&total(a))
                .then_with(|| a.company.cmp(&b.company))
        });
        SpanTable { spans, rows }
    }
}

/// `companies --by` output: a table with a column per span; JSON and CSV with a row per company
/// and span (zeros included, so a chart has no gaps), a stable interface (see README).
fn print_company_spans(
    table: &SpanTable,
    by: By,
    clock: ReportClock,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    format: ExportFormat,
) -> anyhow::Result<()> {
    #[derive(serde::Serialize)]
    struct SpanRow<'a> {
        company: &'a str,
        ticker: Option<&'a str>,
        /// The span's first day.
        period: String,
        stories: i64,
    }
    let long_rows = table.rows.iter().flat_map(|row| {
        table
            .spans
            .iter()
            .zip(&row.stories)
            .map(|(start, &stories)| SpanRow {
                company: &row.company,
                ticker: row.ticker.as_deref(),
                period: start.to_string(),
                stories,
            })
    });
    let mut out = std::io::stdout().lock();
    match format {
        ExportFormat::Json => write_json(&mut out, &long_rows.collect::<Vec<_>>())?,
        ExportFormat::Csv => {
            let mut csv = csv::Writer::from_writer(out);
            csv.write_record(["company", "ticker", "period", "stories"])?;
            for row in long_rows {
                csv.write_record([
                    row.company,
                    row.ticker.unwrap_or(""),
                    &row.period,
                    &row.stories.to_string(),
                ])?;
            }
            csv.flush()?;
        }
        ExportFormat::Table => {
            let end = until.map_or_else(|| "now".to_owned(), |until| clock.show(until));
            let zone = clock.zone().name();
            let per = match by {
                By::Day => format!("day ({zone})"),
                By::Week => format!("week ({zone}, from Monday; each column its first day)"),
                By::Month => format!("month ({zone})"),
            };
            writeln!(
                out,
                "Stories per {per} from {} to {end}:\n",
                clock.show(since)
            )?;
            let headings: Vec<String> = table.spans.iter().map(|&s| by.heading(s)).collect();
            let width = headings.iter().map(String::len).max().unwrap_or(0).max(5);
            write!(out, "{:<24}", "COMPANY")?;
            for heading in &headings {
                write!(out, "  {heading:>width$}")?;
            }
            writeln!(out, "  {:>5}", "TOTAL")?;
            for row in &table.rows {
                write!(out, "{:<24}", row.company)?;
                for count in &row.stories {
                    write!(out, "  {count:>width$}")?;
                }
                writeln!(out, "  {:>5}", row.stories.iter().sum::<i64>())?;
            }
        }
    }
    Ok(())
}

/// A line above a table that says which clock its times are on, unless UTC (the database's).
fn write_times_in(out: &mut impl Write, clock: ReportClock) -> std::io::Result<()> {
    match clock.zone() {
        chrono_tz::Tz::UTC => Ok(()),
        zone => writeln!(out, "Times in {}:", zone.name()),
    }
}

/// ` (ZONE)` after a table's period when it is not UTC, the clock its times are on.
fn zone_named(clock: ReportClock) -> String {
    match clock.zone() {
        chrono_tz::Tz::UTC => String::new(),
        zone => format!(" ({})", zone.name()),
    }
}

/// From `before` to `now` in percent, or `new` from nothing.
fn change(before: i64, now: i64) -> String {
    match (before, now) {
        (0, 0) => "-".to_owned(),
        (0, _) => "new".to_owned(),
        _ => format!(
            "{:+}%",
            ((now - before) as f64 * 100.0 / before as f64).round()
        ),
    }
}

/// `mentions` output. JSON and CSV are a stable interface (see README): fields are only added.
fn print_stories(
    stories: &[FlaggedStory],
    clock: ReportClock,
    format: ExportFormat,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        ExportFormat::Json => {
            write_json(&mut out, stories)?;
        }
        ExportFormat::Csv => {
            let mut csv = csv::Writer::from_writer(out);
            csv.write_record([
                "published_at",
                "title",
                "link",
                "feed",
                "companies",
                "sources",
                "snippet",
            ])?;
            for story in stories {
                csv.write_record([
                    story.published_at.as_deref().unwrap_or(""),
                    story.title.as_deref().unwrap_or(""),
                    story.link.as_deref().unwrap_or(""),
                    &story.feed,
                    &story.companies.join(";"),
                    &story.sources.len().to_string(),
                    &story.snippet,
                ])?;
            }
            csv.flush()?;
        }
        ExportFormat::Table => {
            // The times are on the clock: the header names its zone, unless UTC (as JSON and
            // CSV always are).
            let published = format!("PUBLISHED{}", zone_named(clock));
            let width = published.len().max("YYYY-MM-DD HH:MM:SS".len());
            writeln!(
                out,
                "{published:<width$}  {:<24}  {:>7}  TITLE",
                "COMPANIES", "SOURCES"
            )?;
            for story in stories {
                writeln!(
                    out,
                    "{:<width$}  {:<24}  {:>7}  {}",
                    clock.show_stored(
                        story
                            .published_at
                            .as_deref()
                            .unwrap_or(&story.first_seen_at)
                    ),
                    story.companies.join(", "),
                    story.sources.len(),
                    story.title.as_deref().unwrap_or("(untitled)")
                )?;
                if let Some(link) = &story.link {
                    // Under the title: past the date, companies and sources and their gaps.
                    let indent = width + 2 + 24 + 2 + 7 + 2;
                    writeln!(out, "{:<indent$}{link}", "")?;
                }
            }
        }
    }
    Ok(())
}
