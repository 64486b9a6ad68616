//! Deciding which feeds to poll and driving each through fetch → parse → store.
//!
//! [`poll_once`] refreshes every active feed once (the `poll` command); [`run`] is the daemon,
//! which sleeps until the earliest due feed, refreshes what is due and repeats until `shutdown`
//! is cancelled. Both bound the fetches in flight with a semaphore, parse on tokio's blocking
//! pool (parsing is CPU work and must not stall the fetches), and hand results to the single
//! [`StoreWriter`] thread.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use url::Url;

use crate::config::Config;
use crate::fetch::{FetchError, FetchSettings, Fetcher, Validators};
use crate::matcher::{EntryText, Matcher};
use crate::model::{Mention, ParsedFeed};
use crate::notify::{Delivered, Notifier};
use crate::parse;
use crate::store::writer::StoreWriter;
use crate::store::{Applied, DueFeed, FeedResult, FetchState, Store};

/// Totals of one pass over the feeds, printed by `feedhound poll`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollSummary {
    pub feeds_ok: usize,
    pub feeds_not_modified: usize,
    pub feeds_failed: usize,
    pub entries_new: usize,
    pub entries_updated: usize,
    /// Alerts delivered / failed after the pass (only when `[[notify]]` targets exist).
    pub alerts: Option<Delivered>,
}

impl PollSummary {
    fn add(&mut self, outcome: &Outcome) {
        match outcome.kind {
            OutcomeKind::Ok => self.feeds_ok += 1,
            OutcomeKind::NotModified => self.feeds_not_modified += 1,
            OutcomeKind::Failed => self.feeds_failed += 1,
        }
        self.entries_new += outcome.applied.new;
        self.entries_updated += outcome.applied.updated;
    }
}

impl std::fmt::Display for PollSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "feeds: {} ok, {} not modified, {} failed; entries: {} new, {} updated",
            self.feeds_ok,
            self.feeds_not_modified,
            self.feeds_failed,
            self.entries_new,
            self.entries_updated
        )?;
        if let Some(alerts) = self.alerts {
            write!(
                f,
                "; alerts: {} delivered, {} failed",
                alerts.delivered, alerts.failed
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutcomeKind {
    Ok,
    NotModified,
    Failed,
}

#[derive(Debug, Clone, Copy)]
struct Outcome {
    kind: OutcomeKind,
    applied: Applied,
}

/// What every feed refresh shares.
struct Pipeline {
    fetcher: Fetcher,
    /// Woken when a refresh stored something, so queued alerts go out at once.
    new_flags: Arc<Notify>,
    matcher: Arc<Matcher>,
    writer: StoreWriter,
    default_interval: Duration,
    /// Per-feed intervals from the config, by feed URL.
    intervals: std::collections::HashMap<String, Duration>,
    fetch_slots: Semaphore,
}

impl Pipeline {
    fn new(
        config: &Config,
        matcher: Arc<Matcher>,
        writer: StoreWriter,
    ) -> anyhow::Result<Pipeline> {
        let fetcher = Fetcher::new(FetchSettings {
            timeout: config.polling.timeout,
            connect_timeout: config.polling.connect_timeout,
            max_body_size: config.polling.max_body_size,
            user_agent: config.polling.user_agent.clone(),
        })
        .context("cannot set up the HTTP client")?;
        Ok(Pipeline {
            fetcher,
            new_flags: Arc::new(Notify::new()),
            matcher,
            writer,
            default_interval: config.polling.interval,
            intervals: config
                .feeds
                .iter()
                .filter_map(|f| Some((f.url.as_str().to_string(), f.interval?)))
                .collect(),
            fetch_slots: Semaphore::new(config.polling.concurrency),
        })
    }

    fn interval_for(&self, feed: &DueFeed) -> Duration {
        self.intervals
            .get(&feed.url)
            .copied()
            .unwrap_or(self.default_interval)
    }

    /// Fetches, parses and stores one feed. Failures are recorded on the feed, never returned:
    /// one bad feed must not stop the others.
    async fn refresh(
        &self,
        feed: DueFeed,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<Outcome>> {
        let _slot = tokio::select! {
            slot = self.fetch_slots.acquire() => slot.context("fetch slots closed")?,
            () = shutdown.cancelled() => return Ok(None),
        };
        if shutdown.is_cancelled() {
            return Ok(None);
        }
        let fetched_at = Utc::now();
        let (status, result) = self.fetch_and_parse(&feed).await;
        let kind = match &result {
            FeedResult::NotModified { .. } | FeedResult::Unchanged { .. } => {
                OutcomeKind::NotModified
            }
            FeedResult::Parsed { .. } => OutcomeKind::Ok,
            FeedResult::Failed { error } => {
                tracing::warn!(%error, "feed refresh failed");
                OutcomeKind::Failed
            }
        };
        let errors = if kind == OutcomeKind::Failed {
            feed.error_count + 1
        } else {
            0
        };
        let state = FetchState {
            fetched_at,
            status,
            next_poll_at: next_poll_at(fetched_at, self.interval_for(&feed), errors),
        };
        let applied = self.writer.apply(feed.id, state, result).await?;
        if applied.new + applied.updated > 0 {
            self.new_flags.notify_one();
        }
        tracing::debug!(
            new = applied.new,
            updated = applied.updated,
            "feed refreshed"
        );
        Ok(Some(Outcome { kind, applied }))
    }

    async fn fetch_and_parse(&self, feed: &DueFeed) -> (Option<u16>, FeedResult) {
        let url = match Url::parse(&feed.url) {
            Ok(url) => url,
            Err(err) => return (None, failed(format!("invalid URL: {err}"))),
        };
        let validators = Validators {
            etag: feed.etag.clone(),
            last_modified: feed.last_modified.clone(),
        };
        let fetched = match self.fetcher.fetch(&url, &validators).await {
            Ok(fetched) => fetched,
            Err(err) => {
                let status = match &err {
                    FetchError::Status { status, .. } => Some(*status),
                    _ => None,
                };
                return (status, failed(err.to_string()));
            }
        };
        let status = Some(fetched.status);
        let Some(body) = fetched.body else {
            return (
                status,
                FeedResult::NotModified {
                    etag: fetched.etag,
                    last_modified: fetched.last_modified,
                },
            );
        };
        let body_hash = blake3::hash(&body).to_hex().to_string();
        if feed.body_hash.as_deref() == Some(body_hash.as_str()) {
            return (
                status,
                FeedResult::Unchanged {
                    etag: fetched.etag,
                    last_modified: fetched.last_modified,
                },
            );
        }
        let content_type = fetched.content_type;
        let base = fetched.final_url;
        let matcher = Arc::clone(&self.matcher);
        let parsed = tokio::task::spawn_blocking(move || {
            parse::parse_feed(&body, content_type.as_deref(), &base).map(|feed| {
                let mentions = match_entries(&matcher, &feed);
                (feed, mentions)
            })
        })
        .await;
        let result = match parsed {
            Ok(Ok((feed, mentions))) => FeedResult::Parsed {
                etag: fetched.etag,
                last_modified: fetched.last_modified,
                body_hash,
                feed,
                mentions,
            },
            Ok(Err(err)) => failed(err.to_string()),
            Err(join_error) => failed(format!("the parser crashed: {join_error}")),
        };
        (status, result)
    }
}

/// The companies each entry mentions, in entry order.
fn match_entries(matcher: &Matcher, feed: &ParsedFeed) -> Vec<Vec<Mention>> {
    feed.entries
        .iter()
        .map(|entry| {
            matcher.find(&EntryText {
                title: entry.title.as_deref().unwrap_or_default(),
                summary: entry.summary.as_deref().unwrap_or_default(),
                content: entry.content.as_deref().unwrap_or_default(),
            })
        })
        .collect()
}

fn failed(error: String) -> FeedResult {
    FeedResult::Failed { error }
}

/// When a feed is due again: its interval after a success; after `errors` consecutive failures,
/// the interval doubled per failure, capped at a day, so a broken feed is retried ever more
/// gently but never given up on.
fn next_poll_at(now: DateTime<Utc>, interval: Duration, errors: u32) -> DateTime<Utc> {
    const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);
    let wait = if errors == 0 {
        interval
    } else {
        interval
            .saturating_mul(1 << errors.min(16))
            .min(MAX_BACKOFF.max(interval))
    };
    now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::days(1))
}

/// Opens the database and brings its `feeds` and `companies` tables in line with the config.
pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    let mut store = Store::open(&config.database_path())?;
    store.sync_companies(&config.companies, config.alert_routes())?;
    let sync = store.sync_feeds(&config.feeds)?;
    if sync.added > 0 || sync.deactivated > 0 {
        tracing::debug!(
            added = sync.added,
            deactivated = sync.deactivated,
            active = sync.active,
            "feeds synced from the config"
        );
    }
    Ok(store)
}

/// Key in the `meta` table: a fingerprint of the company rules the stored mentions were
/// computed with. When the config's rules differ, stored entries are re-matched.
const RULES_FINGERPRINT: &str = "company_rules";

fn rules_fingerprint(config: &Config) -> String {
    blake3::hash(format!("{:?}", config.company_rules()).as_bytes())
        .to_hex()
        .to_string()
}

fn build_matcher(config: &Config) -> anyhow::Result<Arc<Matcher>> {
    let matcher =
        Matcher::new(&config.company_rules()).context("cannot build the company matcher")?;
    Ok(Arc::new(matcher))
}

/// Re-matches every stored entry when the company rules changed since its mentions were
/// computed (or always, with `force`), in batches, each its own short transaction so that
/// polling goes on between them. Returns (entries scanned, entries whose mentions changed).
pub async fn rescan_if_stale(
    writer: &StoreWriter,
    matcher: Arc<Matcher>,
    fingerprint: String,
    force: bool,
) -> anyhow::Result<(usize, usize)> {
    let current = {
        let fingerprint = fingerprint.clone();
        writer
            .call(move |store| {
                Ok(store
                    .meta(RULES_FINGERPRINT)?
                    .is_some_and(|f| f == fingerprint))
            })
            .await?
    };
    if current && !force {
        return Ok((0, 0));
    }
    // Small enough that one batch's transaction is as brief as a feed's.
    const BATCH: usize = 500;
    let (mut scanned, mut changed, mut after) = (0, 0, 0);
    loop {
        let texts = writer
            .call(move |store| store.texts_after(after, BATCH))
            .await?;
        let Some(last) = texts.last() else { break };
        after = last.entry_id;
        scanned += texts.len();
        let matcher = Arc::clone(&matcher);
        let batch = tokio::task::spawn_blocking(move || {
            texts
                .into_iter()
                .map(|t| {
                    let text = EntryText {
                        title: &t.title,
                        summary: &t.summary,
                        content: &t.content,
                    };
                    (t.entry_id, matcher.find(&text))
                })
                .collect::<Vec<_>>()
        })
        .await
        .context("re-matching a batch of entries panicked")?;
        changed += writer
            .call(move |store| store.replace_mentions(&batch))
            .await?;
    }
    writer
        .call(move |store| store.set_meta(RULES_FINGERPRINT, &fingerprint))
        .await?;
    if scanned > 0 {
        tracing::info!(
            scanned,
            changed,
            "stored entries re-matched with the current company rules"
        );
    }
    Ok((scanned, changed))
}

/// `feedhound rescan`: re-matches every stored entry now.
pub async fn rescan(config: &Config) -> anyhow::Result<(usize, usize)> {
    let store = open_store(config)?;
    let (writer, thread) = StoreWriter::spawn(store)?;
    let matcher = build_matcher(config)?;
    let counts = rescan_if_stale(&writer, matcher, rules_fingerprint(config), true).await?;
    drop(writer);
    thread.join()?;
    Ok(counts)
}

/// Refreshes every active feed once, `concurrency` at a time, and returns the totals.
pub async fn poll_once(
    config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<PollSummary> {
    let store = open_store(config)?;
    let feeds = store.due_feeds(None)?;
    let (writer, thread) = StoreWriter::spawn(store)?;
    let matcher = build_matcher(config)?;
    rescan_if_stale(
        &writer,
        Arc::clone(&matcher),
        rules_fingerprint(config),
        false,
    )
    .await?;
    let pipeline = Arc::new(Pipeline::new(config, matcher, writer)?);
    let mut tasks = tokio::task::JoinSet::new();
    for feed in feeds {
        let pipeline = Arc::clone(&pipeline);
        let shutdown = shutdown.clone();
        let span = feed_span(&feed);
        tasks.spawn(async move { pipeline.refresh(feed, &shutdown).await }.instrument(span));
    }
    let mut summary = PollSummary::default();
    while let Some(joined) = tasks.join_next().await {
        if let Some(outcome) = joined.context("a feed task panicked")?? {
            summary.add(&outcome);
        }
    }
    let notifier = Notifier::new(config, pipeline.writer.clone())?;
    if notifier.has_targets() {
        summary.alerts = Some(notifier.deliver_due().await?);
    }
    drop(notifier);
    drop(pipeline);
    thread.join()?;
    Ok(summary)
}

/// The daemon: polls each feed when it is due until `shutdown` is cancelled, then lets the
/// fetches in flight finish (each is bounded by the fetch timeout) and returns.
pub async fn run(config: &Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let (writer, thread) = StoreWriter::spawn(store)?;
    let matcher = build_matcher(config)?;
    let pipeline = Arc::new(Pipeline::new(config, Arc::clone(&matcher), writer.clone())?);
    let tracker = TaskTracker::new();
    {
        let writer = writer.clone();
        let fingerprint = rules_fingerprint(config);
        tracker.spawn(async move {
            if let Err(err) = rescan_if_stale(&writer, matcher, fingerprint, false).await {
                tracing::error!(error = %format!("{err:#}"), "re-matching stored entries failed");
            }
        });
    }
    let notifier = Notifier::new(config, writer.clone())?;
    if notifier.has_targets() {
        tracker.spawn(notifier.run(Arc::clone(&pipeline.new_flags), shutdown.clone()));
    }
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<i64>();
    let mut in_flight: HashSet<i64> = HashSet::new();
    tracing::info!(feeds = config.feeds.len(), database = %config.database_path().display(), "feedhound is running");
    loop {
        let now = Utc::now();
        let due = writer.call(move |store| store.due_feeds(Some(now))).await?;
        for feed in due {
            if !in_flight.insert(feed.id) {
                continue;
            }
            let pipeline = Arc::clone(&pipeline);
            let shutdown = shutdown.clone();
            let done = done_tx.clone();
            let span = feed_span(&feed);
            let feed_id = feed.id;
            tracker.spawn(
                async move {
                    if let Err(err) = pipeline.refresh(feed, &shutdown).await {
                        tracing::error!(error = %format!("{err:#}"), "cannot record the feed's result");
                    }
                    let _ = done.send(feed_id);
                }
                .instrument(span),
            );
        }
        // In-flight feeds are still "due" until recorded; their completion wakes us instead.
        let busy = in_flight.clone();
        let next = writer.call(move |store| store.next_due_time(&busy)).await?;
        let sleep = match next {
            Some(at) => (at - Utc::now()).to_std().unwrap_or(Duration::ZERO),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(sleep) => {}
            Some(feed_id) = done_rx.recv() => {
                in_flight.remove(&feed_id);
                while let Ok(feed_id) = done_rx.try_recv() {
                    in_flight.remove(&feed_id);
                }
            }
        }
    }
    tracing::info!(
        in_flight = in_flight.len(),
        "shutting down: waiting for fetches in flight"
    );
    tracker.close();
    tracker.wait().await;
    drop(pipeline);
    drop(writer);
    thread.join()?;
    tracing::info!("stopped");
    Ok(())
}

fn feed_span(feed: &DueFeed) -> tracing::Span {
    let url = Url::parse(&feed.url)
        .map(|url| crate::fetch::redact(&url))
        .unwrap_or_default();
    tracing::info_span!("feed", feed_id = feed.id, feed_url = %url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_failure_and_caps_at_a_day() {
        let now = Utc::now();
        let hour = Duration::from_secs(3600);
        assert_eq!(next_poll_at(now, hour, 0) - now, chrono::Duration::hours(1));
        assert_eq!(next_poll_at(now, hour, 1) - now, chrono::Duration::hours(2));
        assert_eq!(next_poll_at(now, hour, 3) - now, chrono::Duration::hours(8));
        assert_eq!(
            next_poll_at(now, hour, 30) - now,
            chrono::Duration::hours(24)
        );
    }
}
