//! The command line: clap definitions and what each command does and prints.
//!
//! What users read on stdout (summaries, tables, JSON) is written here; diagnostics go through
//! `tracing` to stderr, so `feedhound feeds --format json | jq` stays clean.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::{demo, scheduler};

#[derive(Debug, Parser)]
#[command(
    name = "feedhound",
    version,
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
    Poll,
    /// Show each feed's state: last fetch, status, error, entries.
    Feeds {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Validate the config file and print a one-line summary (exit 1 on errors).
    Check,
    /// Serve bundled sample feeds on loopback, poll them twice into a fresh database and show
    /// what was stored. Needs no config and no internet.
    Demo {
        /// Where to put the demo's config and database (default: a new temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Runs the chosen command. Errors are for the caller to print; the exit code says how it went.
pub async fn execute(cli: Cli, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check => match Config::load(&cli.config) {
            Ok(config) => {
                println!("{}", config.summary());
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => {
                eprintln!("{err}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Poll => {
            let config = Config::load(&cli.config)?;
            let summary = scheduler::poll_once(&config, shutdown).await?;
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run => {
            let config = Config::load(&cli.config)?;
            scheduler::run(&config, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Feeds { format } => {
            let config = Config::load(&cli.config)?;
            let store = scheduler::open_store(&config)?;
            print_feeds(&store.feed_statuses()?, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { dir } => {
            demo::run(dir, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_feeds(feeds: &[crate::store::FeedStatus], format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        serde_json::to_writer_pretty(&mut out, feeds)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>4}  {:<8}  {:>7}  {:<19}  {:>6}  {:<19}  URL / last error",
        "ID", "STATE", "ENTRIES", "LAST FETCH", "STATUS", "NEXT POLL"
    )?;
    for feed in feeds {
        let state = if !feed.active {
            "inactive"
        } else if feed.last_fetch_at.is_none() {
            "new"
        } else if feed.last_error.is_some() {
            "failing"
        } else {
            "ok"
        };
        writeln!(
            out,
            "{:>4}  {:<8}  {:>7}  {:<19}  {:>6}  {:<19}  {}",
            feed.id,
            state,
            feed.entries,
            feed.last_fetch_at.as_deref().unwrap_or("-"),
            feed.last_status.map_or("-".to_string(), |s| s.to_string()),
            if feed.active {
                feed.next_poll_at.as_deref().unwrap_or("now")
            } else {
                "-"
            },
            feed.name
                .as_deref()
                .map_or(feed.url.clone(), |name| format!("{name} <{}>", feed.url)),
        )?;
        if let Some(error) = &feed.last_error {
            writeln!(out, "{:>82}error: {error}", "")?;
        }
    }
    Ok(())
}
