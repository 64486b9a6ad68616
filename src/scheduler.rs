//! Deciding when to poll which feed, and driving each through fetch → parse → match → store.
//!
//! [`poll_once`] refreshes every active feed once (the `poll` command). [`run`] is the daemon:
//! it sleeps until the earliest due feed (no ticking through idle time), refreshes what is due,
//! reloads the config when the file changes or on SIGHUP, and on shutdown lets fetches in flight
//! finish within the grace period before cancelling them. When each feed is due again is
//! decided by [`crate::schedule`]; this module only does the I/O around it.
//!
//! Fetches are bounded globally (`concurrency`) and per host (`per_host_concurrency`, with an
//! optional `per_host_delay` between request starts). Parsing and matching run on the
//! [`ParsePool`]'s low-priority threads so CPU work never stalls the fetches or the writer, and
//! results go to the single [`StoreWriter`] thread.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use url::Url;

use crate::articles::{ArticleTally, ArticleWorker};
use crate::config::{Config, FileStamp, ReadFile, Secrets};
use crate::daemon_lock::{self, DaemonLock};
use crate::fetch::{
    FeedHeaders, FetchError, FetchSettings, Fetched, Fetcher, Limits, Slot, Validators, host_key,
    redact_str,
};
use crate::matcher::{EntryText, Matcher};
use crate::metrics::{FetchOutcome, Metrics};
use crate::model::{Mention, ParsedFeed};
use crate::notify::{Delivered, Notifier};
use crate::parse;
use crate::parse_pool::{ParsePool, PoolError};
use crate::schedule::{self, Facts, Policy};
use crate::store::writer::{Announcement, ResultRefused, StoreWriter, WhenIdle};
use crate::store::{
    Applied, DueFeed, FeedResult, FetchState, REMATCH_PENDING, RULES_FINGERPRINT, Rematched, Store,
};
use crate::{server, store};

/// Totals of one pass over the feeds, printed by `feedhound poll`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollSummary {
    pub feeds_ok: usize,
    pub feeds_not_modified: usize,
    pub feeds_failed: usize,
    /// Left out because their server asked not to be polled yet (`Retry-After`).
    pub feeds_waiting: usize,
    /// Fetched, but no parsing thread was free (not counted as the feeds' failures).
    pub feeds_deferred: usize,
    /// Left out by `poll --due`: their next poll time has not come.
    pub feeds_not_due: usize,
    pub entries_new: usize,
    pub entries_updated: usize,
    /// Article pages read / failed after the pass (only when a feed has `fetch_articles`).
    pub articles: Option<ArticleTally>,
    /// Alerts delivered / failed after the pass (only when `[[notify]]` targets exist).
    pub alerts: Option<Delivered>,
}

impl PollSummary {
    fn add(&mut self, outcome: &Outcome) {
        match outcome.kind {
            FetchOutcome::Ok => self.feeds_ok += 1,
            FetchOutcome::NotModified => self.feeds_not_modified += 1,
            FetchOutcome::Failed => self.feeds_failed += 1,
            FetchOutcome::Deferred => self.feeds_deferred += 1,
        }
        self.entries_new += outcome.new;
        self.entries_updated += outcome.updated;
    }
}

impl std::fmt::Display for PollSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "feeds: {} ok, {} not modified, {} failed",
            self.feeds_ok, self.feeds_not_modified, self.feeds_failed,
        )?;
        if self.feeds_deferred > 0 {
            write!(
                f,
                ", {} deferred (no parsing thread free)",
                self.feeds_deferred
            )?;
        }
        if self.feeds_waiting > 0 {
            write!(f, ", {} waiting (Retry-After)", self.feeds_waiting)?;
        }
        if self.feeds_not_due > 0 {
            write!(f, ", {} not due yet", self.feeds_not_due)?;
        }
        write!(
            f,
            "; entries: {} new, {} updated",
            self.entries_new, self.entries_updated
        )?;
        if let Some(articles) = self.articles {
            write!(
                f,
                "; articles: {} read, {} failed",
                articles.read, articles.failed
            )?;
        }
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

#[derive(Debug, Clone, Copy)]
struct Outcome {
    kind: FetchOutcome,
    new: usize,
    updated: usize,
}

/// How the daemon is told to stop or to reload; the binary wires these to signals.
#[derive(Clone, Default)]
pub struct Control {
    /// Cancelled on SIGINT/SIGTERM.
    pub shutdown: CancellationToken,
    /// Notified on SIGHUP: reload the config now.
    pub reload: Arc<Notify>,
}

/// The parts of a pipeline that do not depend on the config: a daemon builds them once and
/// every pipeline it builds on reload shares them.
#[derive(Clone)]
struct Shared {
    /// A reload keeps its threads, and the documents it gave up on stay refused.
    parsers: Arc<ParsePool>,
    writer: StoreWriter,
    /// Woken when a refresh stored something, or another process wrote to the database, so
    /// queued alerts go out at once.
    new_flags: Arc<Notify>,
    /// Woken when a refresh stored something: it may have queued article pages.
    new_articles: Arc<Notify>,
    /// Cancelled when the shutdown grace period is over: fetches in flight are abandoned.
    hard_stop: CancellationToken,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn new(writer: StoreWriter) -> anyhow::Result<Shared> {
        Ok(Shared {
            parsers: Arc::new(ParsePool::new()?),
            writer,
            new_flags: Arc::new(Notify::new()),
            new_articles: Arc::new(Notify::new()),
            hard_stop: CancellationToken::new(),
            metrics: Arc::new(Metrics::new()),
        })
    }
}

/// What every feed refresh shares; rebuilt on config reload (fetches in flight keep the old),
/// except the `Shared` parts, which the daemon keeps.
struct Pipeline {
    fetcher: Fetcher,
    matcher: Arc<Matcher>,
    limits: Arc<Limits>,
    policy: Policy,
    /// Per-feed intervals from the config, by feed URL.
    intervals: HashMap<String, Duration>,
    /// Per-feed request headers from the config, by feed URL.
    headers: HashMap<String, FeedHeaders>,
    /// Whether any feed has `fetch_articles`.
    fetches_articles: bool,
    shared: Shared,
}

impl Pipeline {
    fn new(
        config: &Config,
        matcher: Arc<Matcher>,
        limits: Arc<Limits>,
        shared: Shared,
    ) -> anyhow::Result<Pipeline> {
        let fetcher = Fetcher::new(FetchSettings::from(&config.polling))
            .context("cannot set up the HTTP client")?;
        Ok(Pipeline {
            fetcher,
            matcher,
            limits,
            policy: Policy {
                default_interval: config.polling.interval,
                min_interval: config.polling.min_interval,
                max_interval: config.polling.max_interval,
                max_backoff: config.polling.max_backoff,
            },
            intervals: config
                .feeds
                .iter()
                .filter_map(|f| Some((f.url.as_str().to_string(), f.interval?)))
                .collect(),
            headers: config
                .feeds
                .iter()
                .filter_map(|f| Some((f.url.as_str().to_string(), f.headers.clone()?)))
                .collect(),
            fetches_articles: config.feeds.iter().any(|f| f.fetch_articles),
            shared,
        })
    }

    /// What fetches the article pages of feeds with `fetch_articles`; None when no feed has it.
    fn article_worker(&self) -> Option<Arc<ArticleWorker>> {
        self.fetches_articles.then(|| {
            Arc::new(ArticleWorker {
                fetcher: self.fetcher.clone(),
                limits: Arc::clone(&self.limits),
                matcher: Arc::clone(&self.matcher),
                parsers: Arc::clone(&self.shared.parsers),
                writer: self.shared.writer.clone(),
                headers: self.headers.clone(),
                new_flags: Arc::clone(&self.shared.new_flags),
                metrics: Arc::clone(&self.shared.metrics),
                held: Default::default(),
            })
        })
    }

    /// Fetches, parses and stores one feed. What goes wrong with the feed is recorded on it,
    /// not returned: one bad feed must not stop the others. An error is the database's: a
    /// [`ResultRefused`] for this result alone, or the writer failing as a whole. None when
    /// shutdown came first.
    async fn refresh(
        &self,
        feed: DueFeed,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<Outcome>> {
        let url = match Url::parse(&feed.fetch_url) {
            Ok(url) => url,
            Err(err) => {
                tracing::error!(error = %err, "stored feed URL is invalid");
                return Ok(None);
            }
        };
        let host = host_key(&url);
        let slot = tokio::select! {
            slot = self.limits.acquire(&host) => slot?,
            () = shutdown.cancelled() => return Ok(None),
        };
        if shutdown.is_cancelled() {
            return Ok(None);
        }
        // Boxed: every due feed's task exists from the start, and one waiting for its slot then
        // holds a pointer rather than room for the fetch's whole state (a task's future: 2.9 KB
        // before, 1.0 KB now; 10,000 feeds due at once).
        Box::pin(self.refresh_in_slot(feed, url, slot)).await
    }

    /// [`Pipeline::refresh`] once its fetch slot is held.
    async fn refresh_in_slot(
        &self,
        feed: DueFeed,
        url: Url,
        slot: Slot,
    ) -> anyhow::Result<Option<Outcome>> {
        let fetched_at = Utc::now();
        let started = std::time::Instant::now();
        let fetch = tokio::select! {
            fetch = self.fetch_and_parse(&feed, &url) => fetch,
            () = self.shared.hard_stop.cancelled() => return Ok(None),
        };
        let kind = match &fetch.result {
            FeedResult::NotModified { .. } | FeedResult::Unchanged { .. } => {
                FetchOutcome::NotModified
            }
            FeedResult::Parsed { .. } => FetchOutcome::Ok,
            FeedResult::Failed { error } => {
                tracing::warn!(%error, "feed refresh failed");
                FetchOutcome::Failed
            }
            FeedResult::Deferred { error } => {
                tracing::warn!(%error, "feed refresh deferred to its next poll");
                FetchOutcome::Deferred
            }
        };
        let facts = Facts {
            configured: self.intervals.get(&feed.url).copied(),
            adaptive: fetch.adaptive.or(feed.adaptive),
            server_hint: fetch.fresh_for.max(fetch.doc_hint.or(feed.doc_hint)),
            failures: failures_after(&fetch.result, feed.error_count),
            retry_after: fetch.retry_after,
        };
        let plan = self.policy.plan(&facts, fetched_at, fastrand::f64());
        let gone = fetch.status == Some(410);
        if gone {
            tracing::warn!(
                "the server says this feed is gone for good (410): it is no longer polled; \
                 remove it from the config, or run `feedhound feeds --reset URL` to try again"
            );
        }
        let state = FetchState {
            fetched_at,
            status: fetch.status,
            next_poll_at: (!gone).then_some(plan.next_poll_at),
            interval: plan.interval,
            reason: plan.reason.as_str(),
            adaptive: fetch.adaptive,
            doc_hint: fetch.doc_hint,
            permanent_redirect: fetch.permanent_redirect,
            retry_after: fetch.retry_after,
        };
        let took = started.elapsed();
        let receipt = match fetch.announced {
            Some(announcement) => announcement.submit(feed.id, state, fetch.result).await?,
            None => {
                self.shared
                    .writer
                    .submit(feed.id, state, fetch.result)
                    .await?
            }
        };
        // The next fetch need not wait for this commit: the writer's budget of held text, not
        // the fetch slots, limits how many results wait for the database.
        drop(slot);
        let applied: Applied = receipt.committed().await?;
        let metrics = &self.shared.metrics;
        metrics.record_fetch(kind, fetch.status, took);
        metrics.record_entries(applied.new, applied.updated);
        metrics.record_mentions(applied.mentions);
        if let Some(moved_to) = &applied.moved_to {
            tracing::warn!(
                moved_to = %redact_str(moved_to),
                "the feed has moved permanently (seen on several polls); it is fetched from the new URL now: \
                 update its url in the config"
            );
        }
        if applied.new + applied.updated > 0 {
            self.shared.new_flags.notify_one();
            self.shared.new_articles.notify_one();
        }
        tracing::debug!(new = applied.new, updated = applied.updated, next_poll_at = %plan.next_poll_at, "feed refreshed");
        Ok(Some(Outcome {
            kind,
            new: applied.new,
            updated: applied.updated,
        }))
    }

    async fn fetch_and_parse(&self, feed: &DueFeed, url: &Url) -> Fetch {
        let validators = Validators {
            etag: feed.etag.clone(),
            last_modified: feed.last_modified.clone(),
        };
        let headers = self.headers.get(&feed.url);
        let fetched = match self.fetcher.fetch(url, &validators, headers).await {
            Ok(fetched) => fetched,
            Err(err) => {
                let (status, retry_after) = match &err {
                    FetchError::Status {
                        status,
                        retry_after,
                        ..
                    } => (Some(*status), *retry_after),
                    FetchError::NotModifiedUnasked => (Some(304), None),
                    _ => (None, None),
                };
                return Fetch {
                    status,
                    retry_after,
                    ..Fetch::failed(err.to_string())
                };
            }
        };
        // Downloaded: the result is a parse away, and the writer may keep its transaction open
        // for it (see `store::writer`).
        let announced = self.shared.writer.announce();
        let status = Some(fetched.status);
        let fresh_for = fetched.fresh_for;
        let moved_to = fetched.permanent_redirect.as_ref().map(Url::to_string);
        let (result, adaptive, doc_hint) = self.read_body(feed, fetched).await;
        // A body we cannot read is no evidence of a move.
        let permanent_redirect = moved_to.filter(|_| {
            !matches!(
                result,
                FeedResult::Failed { .. } | FeedResult::Deferred { .. }
            )
        });
        Fetch {
            status,
            result,
            fresh_for,
            adaptive,
            doc_hint,
            permanent_redirect,
            retry_after: None,
            announced: Some(announced),
        }
    }

    /// What a response's body means for the feed: not modified, unchanged, or parsed and
    /// matched (on the parse pool), with the publishing-rate interval and the document's
    /// update hint when it was parsed.
    async fn read_body(
        &self,
        feed: &DueFeed,
        fetched: Fetched,
    ) -> (FeedResult, Option<Duration>, Option<Duration>) {
        let Some(body) = fetched.body else {
            let result = FeedResult::NotModified {
                etag: fetched.etag,
                last_modified: fetched.last_modified,
            };
            return (result, None, None);
        };
        let body_hash = blake3::hash(&body).to_hex().to_string();
        if feed.body_hash.as_deref() == Some(body_hash.as_str()) {
            let result = FeedResult::Unchanged {
                etag: fetched.etag,
                last_modified: fetched.last_modified,
            };
            return (result, None, None);
        }
        let content_type = fetched.content_type;
        let base = fetched.final_url;
        let matcher = Arc::clone(&self.matcher);
        let max_interval = self.policy.max_interval;
        let parsed = self
            .shared
            .parsers
            .run(&body_hash, move || {
                parse::parse_feed(&body, content_type.as_deref(), &base).map(|feed| {
                    let mentions = match_entries(&matcher, &feed);
                    let adaptive = schedule::publishing_interval(&feed, Utc::now(), max_interval);
                    (feed, mentions, adaptive)
                })
            })
            .await;
        match parsed {
            Ok(Ok((feed, mentions, adaptive))) => {
                let doc_hint = feed.update_hint;
                let result = FeedResult::Parsed {
                    etag: fetched.etag,
                    last_modified: fetched.last_modified,
                    body_hash,
                    feed,
                    mentions,
                };
                (result, adaptive, doc_hint)
            }
            Ok(Err(err)) => (
                FeedResult::Failed {
                    error: err.to_string(),
                },
                None,
                None,
            ),
            Err(PoolError::Crashed(why)) => {
                let error = format!("the parser crashed: {why}");
                (FeedResult::Failed { error }, None, None)
            }
            Err(slow @ (PoolError::TooSlow(_) | PoolError::GaveUpBefore(_))) => {
                let error = slow.to_string();
                (FeedResult::Failed { error }, None, None)
            }
            // Other documents hold every thread: nothing this feed did.
            Err(busy @ PoolError::NoThread(_)) => {
                let error = busy.to_string();
                (FeedResult::Deferred { error }, None, None)
            }
        }
    }
}

/// The consecutive failures a feed's next poll is planned with: a failure adds one, a deferral
/// (feedhound's doing, not the feed's) leaves the count as it was, anything else clears it.
fn failures_after(result: &FeedResult, before: u32) -> u32 {
    match result {
        FeedResult::Failed { .. } => before + 1,
        FeedResult::Deferred { .. } => before,
        FeedResult::NotModified { .. }
        | FeedResult::Unchanged { .. }
        | FeedResult::Parsed { .. } => 0,
    }
}

/// One fetch's result with what the schedule needs from it.
struct Fetch {
    status: Option<u16>,
    result: FeedResult,
    fresh_for: Option<Duration>,
    adaptive: Option<Duration>,
    doc_hint: Option<Duration>,
    permanent_redirect: Option<String>,
    retry_after: Option<chrono::DateTime<Utc>>,
    /// Held from the download until the result is submitted.
    announced: Option<Announcement>,
}

impl Fetch {
    fn failed(error: String) -> Fetch {
        Fetch {
            status: None,
            result: FeedResult::Failed { error },
            fresh_for: None,
            adaptive: None,
            doc_hint: None,
            permanent_redirect: None,
            retry_after: None,
            announced: None,
        }
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
                // Fetched after the entry is stored (see `articles`), which re-matches it then.
                article: "",
            })
        })
        .collect()
}

/// Opens the database for a command and brings its `feeds`, `companies` and
/// `alert_target_rests` tables in line with the config, unless a daemon runs on the database with
/// another config file (see [`daemon_lock`]).
pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    // Without its secrets a config lacks the targets kept out of the file: their rests would be
    // forgotten, and the alerts a re-match queues for them lost.
    anyhow::ensure!(
        config.secrets == Secrets::Read,
        "the config was loaded without its secrets, which this command needs"
    );
    // Before the database is created or migrated, and held until the sync is committed.
    let _syncing =
        daemon_lock::refuse_beside_other_daemon(&config.database_path(), &config.source)?;
    let mut store = Store::open_with(&config.database_path(), config.storage.busy_timeout)?;
    sync_config(&mut store, config)?;
    Ok(store)
}

fn sync_config(store: &mut Store, config: &Config) -> anyhow::Result<()> {
    let database = store.path().display().to_string();
    let failed = |err| {
        let failed =
            format!("cannot write the config's feeds and companies to the database {database}");
        store::storage_error(err, failed)
    };
    store
        .sync_companies(&config.companies, config.alert_routes())
        .map_err(failed)?;
    store
        .forget_rests_except(&crate::notify::url_keys(config))
        .map_err(failed)?;
    let sync = store.sync_feeds(&config.feeds).map_err(failed)?;
    if sync.added > 0 || sync.moved > 0 || sync.deactivated > 0 {
        tracing::info!(
            added = sync.added,
            moved = sync.moved,
            deactivated = sync.deactivated,
            active = sync.active,
            "feeds synced from the config"
        );
    }
    Ok(())
}

fn rules_fingerprint(config: &Config) -> String {
    let rules = format!(
        "matcher revision {}: {:?}",
        crate::matcher::REVISION,
        config.company_rules()
    );
    blake3::hash(rules.as_bytes()).to_hex().to_string()
}

fn build_matcher(config: &Config) -> anyhow::Result<Arc<Matcher>> {
    let matcher =
        Matcher::new(&config.company_rules()).context("cannot build the company matcher")?;
    Ok(Arc::new(matcher))
}

/// Records that the stored mentions are not those of the rules with `fingerprint`, unless they
/// are; true when a re-match is due. The mark stays until a re-match finishes, so one stopped
/// midway is redone even if the rules change back, and retention waits for it.
async fn mark_if_rules_changed(writer: &StoreWriter, fingerprint: &str) -> anyhow::Result<bool> {
    let fingerprint = fingerprint.to_owned();
    writer
        .call(move |store| {
            let current = store
                .meta(RULES_FINGERPRINT)?
                .is_some_and(|f| f == fingerprint);
            if !current {
                store.set_meta(RULES_FINGERPRINT, REMATCH_PENDING)?;
            }
            Ok(!current)
        })
        .await
}

/// Re-matches every stored entry when the company rules changed since its mentions were
/// computed (or always, with `force`), in batches, each its own short transaction so that
/// polling goes on between them. Returns (entries scanned, entries whose mentions changed).
pub async fn rescan_if_stale(
    writer: &StoreWriter,
    matcher: Arc<Matcher>,
    fingerprint: String,
    force: bool,
    stop: &CancellationToken,
) -> anyhow::Result<(usize, usize)> {
    if !mark_if_rules_changed(writer, &fingerprint).await? && !force {
        return Ok((0, 0));
    }
    // Small enough that one batch's transaction is as brief as a feed's.
    const BATCH: usize = 500;
    let (mut scanned, mut changed, mut after) = (0, 0, 0);
    loop {
        if stop.is_cancelled() {
            // Stopped midway: the rules stay marked stale, so the next start rescans.
            return Ok((scanned, changed));
        }
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
                        article: &t.article,
                    };
                    Rematched {
                        mentions: matcher.find(&text),
                        entry_id: t.entry_id,
                        content_hash: t.content_hash,
                    }
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

/// Whether stored mentions were computed with other company rules than `config`'s, or a
/// re-match with them has not finished.
pub fn rules_are_stale(store: &Store, config: &Config) -> anyhow::Result<bool> {
    Ok(store.meta(RULES_FINGERPRINT)? != Some(rules_fingerprint(config)))
}

/// `feedhound rescan`: re-matches every stored entry now.
pub async fn rescan(config: &Config) -> anyhow::Result<(usize, usize)> {
    rescan_with(config, true, &CancellationToken::new()).await
}

/// Re-matches every stored entry if the company rules changed since the stored mentions were
/// computed (or a re-match was cut short), until `stop`. Afterwards, [`rules_are_stale`] says
/// whether it finished.
pub async fn rematch_if_rules_changed(
    config: &Config,
    stop: &CancellationToken,
) -> anyhow::Result<(usize, usize)> {
    rescan_with(config, false, stop).await
}

async fn rescan_with(
    config: &Config,
    force: bool,
    stop: &CancellationToken,
) -> anyhow::Result<(usize, usize)> {
    let store = open_store(config)?;
    let (writer, thread) = StoreWriter::spawn(store, WhenIdle::Wait)?;
    let matcher = build_matcher(config)?;
    let counts = rescan_if_stale(&writer, matcher, rules_fingerprint(config), force, stop).await?;
    drop(writer);
    thread.join()?;
    Ok(counts)
}

/// Refreshes every active feed once (due or not), `concurrency` at a time, and returns the totals.
pub async fn poll_once(
    config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<PollSummary> {
    poll_feeds(config, shutdown, false).await
}

/// [`poll_once`] for the feeds whose next poll time has come: the schedule the daemon keeps
/// (intervals, backoff, `Retry-After`), for a cron job that runs `poll --due` every few minutes.
pub async fn poll_due(config: &Config, shutdown: CancellationToken) -> anyhow::Result<PollSummary> {
    poll_feeds(config, shutdown, true).await
}

async fn poll_feeds(
    config: &Config,
    shutdown: CancellationToken,
    only_due: bool,
) -> anyhow::Result<PollSummary> {
    let store = open_store(config)?;
    let mut summary = PollSummary::default();
    let mut feeds = store.due_feeds(None)?;
    if only_due {
        let active = feeds.len();
        feeds = store.due_feeds(Some(Utc::now()))?;
        summary.feeds_not_due = active.saturating_sub(feeds.len());
    }
    // A cron job running `poll` every few minutes must not hammer a server that asked for a
    // pause; the daemon honours the same request through the feed's next poll time.
    let waiting: HashMap<i64, _> = store.feeds_asked_to_wait(Utc::now())?.into_iter().collect();
    feeds.retain(|feed| match waiting.get(&feed.id) {
        Some(until) => {
            tracing::info!(feed_id = feed.id, feed_url = %redact_str(&feed.url), until = %until, "skipped: the server asked not to be polled before then (Retry-After)");
            summary.feeds_waiting += 1;
            false
        }
        None => true,
    });
    let (writer, thread) = StoreWriter::spawn(store, WhenIdle::Wait)?;
    let matcher = build_matcher(config)?;
    rescan_if_stale(
        &writer,
        Arc::clone(&matcher),
        rules_fingerprint(config),
        false,
        &shutdown,
    )
    .await?;
    let pipeline = Arc::new(Pipeline::new(
        config,
        matcher,
        Arc::new(Limits::new(config)),
        Shared::new(writer.clone())?,
    )?);
    let mut tasks = tokio::task::JoinSet::new();
    for feed in feeds {
        let pipeline = Arc::clone(&pipeline);
        let shutdown = shutdown.clone();
        let span = feed_span(&feed);
        tasks.spawn(
            async move {
                match pipeline.refresh(feed, &shutdown).await {
                    // The other feeds' results are stored; the poll goes on, as the daemon does.
                    Err(err) if err.downcast_ref::<ResultRefused>().is_some() => {
                        tracing::error!(error = %format!("{err:#}"), "cannot record the feed's result");
                        Ok(Some(Outcome {
                            kind: FetchOutcome::Failed,
                            new: 0,
                            updated: 0,
                        }))
                    }
                    other => other,
                }
            }
            .instrument(span),
        );
    }
    while let Some(joined) = tasks.join_next().await {
        if let Some(outcome) = joined.context("a feed task panicked")?? {
            summary.add(&outcome);
        }
    }
    if let Some(worker) = pipeline.article_worker() {
        summary.articles = Some(worker.work_due(&shutdown).await);
    }
    drop(pipeline);
    if let Some(notifier) = Notifier::new(config, writer.clone())?
        && !shutdown.is_cancelled()
    {
        summary.alerts = Some(notifier.deliver_due().await?);
    }
    drop(writer);
    thread.join()?;
    Ok(summary)
}

/// How often the daemon looks at the config file and its secrets' files. Polling a stat() is
/// cheap and, unlike inotify, survives editors that replace the file and network filesystems.
const CONFIG_CHECK: Duration = Duration::from_secs(2);

/// The daemon: polls each feed when it is due until `control.shutdown` is cancelled, then lets
/// fetches in flight finish for up to `shutdown_grace`, cancels the rest, and returns once every
/// result is committed or dropped whole.
pub async fn run(config: Config, control: Control) -> anyhow::Result<()> {
    let mut config = config;
    // Before the database is migrated or synced: a second daemon must not touch the first's.
    let _lock = DaemonLock::acquire(&config.database_path(), &config.source, &control.shutdown)?;
    let mut store = Store::open_with(&config.database_path(), config.storage.busy_timeout)?;
    sync_config(&mut store, &config)?;
    let (writer, thread) = StoreWriter::spawn(store, WhenIdle::Maintain)?;
    let tracker = TaskTracker::new();
    let limits = Arc::new(Limits::new(&config));
    let shared = Shared::new(writer)?;
    let (writer, metrics) = (&shared.writer, &shared.metrics);
    let services = Services {
        shared: &shared,
        tracker: &tracker,
        limits: &limits,
        shutdown: &control.shutdown,
    };
    let mut pipeline = services.pipeline(&config)?;
    // Before retention starts: it must see that new rules are waiting to be applied.
    mark_if_rules_changed(writer, &rules_fingerprint(&config)).await?;
    let mut background = services.start_background(&config, &pipeline)?;
    if let Some(retain) = config.storage.retain {
        tracker.spawn(store::retention::prune_periodically(
            writer.clone(),
            retain,
            control.shutdown.clone(),
        ));
    }
    if let Some(addr) = config.server.listen {
        let listener = server::bind(addr).await?;
        let service = server::Service {
            metrics: Arc::clone(metrics),
            writer: writer.clone(),
            database: config.database_path(),
            heartbeat_stale_after: 2 * MAX_SLEEP,
            database_timeout: server::DEFAULT_DATABASE_TIMEOUT,
        };
        tracker.spawn(server::run(listener, service, control.shutdown.clone()));
    }
    let watchdog = sd_notify::watchdog_enabled();
    let mut ready = false;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(i64, bool)>();
    let mut in_flight: HashSet<i64> = HashSet::new();
    // Feeds whose last refresh could not record its schedule (the database refused the write):
    // not retried before this, so a full disk does not turn into a fetch loop.
    let mut held: HashMap<i64, Instant> = HashMap::new();
    // Stamped as they were read, so a change made since is seen at the first look.
    let mut watched = config.read_files.clone();
    let mut config_check = tokio::time::interval(CONFIG_CHECK);
    config_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(feeds = config.feeds.len(), database = %config.database_path().display(), "feedhound is running");
    loop {
        let now = Utc::now();
        held.retain(|_, until| *until > Instant::now());
        let due = writer.call(move |store| store.due_feeds(Some(now))).await?;
        for feed in due {
            if held.contains_key(&feed.id) || !in_flight.insert(feed.id) {
                continue;
            }
            let pipeline = Arc::clone(&pipeline);
            let shutdown = control.shutdown.clone();
            let done = done_tx.clone();
            let span = feed_span(&feed);
            let feed_id = feed.id;
            tracker.spawn(
                async move {
                    let recorded = match pipeline.refresh(feed, &shutdown).await {
                        Ok(outcome) => outcome.is_some() || shutdown.is_cancelled(),
                        Err(err) => {
                            tracing::error!(error = %format!("{err:#}"), "cannot record the feed's result");
                            false
                        }
                    };
                    let _ = done.send((feed_id, recorded));
                }
                .instrument(span),
            );
        }
        // In-flight feeds are still "due" until recorded; their completion wakes us instead.
        let skip: HashSet<i64> = in_flight.iter().chain(held.keys()).copied().collect();
        let next = writer.call(move |store| store.next_due_time(&skip)).await?;
        let until_release = held
            .values()
            .min()
            .map(|until| until.saturating_duration_since(Instant::now()));
        let sleep = next
            .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(MAX_SLEEP)
            .min(until_release.unwrap_or(MAX_SLEEP))
            .min(MAX_SLEEP)
            .min(watchdog.map_or(MAX_SLEEP, |period| period / 2));
        metrics.heartbeat();
        if !ready {
            // systemd Type=notify: the schedule is loaded and the first fetches are on their way.
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            ready = true;
        }
        if watchdog.is_some() {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        }
        let mut reload = false;
        tokio::select! {
            () = control.shutdown.cancelled() => break,
            () = tokio::time::sleep(sleep) => {}
            Some(first) = done_rx.recv() => {
                let mut finished = vec![first];
                while let Ok(more) = done_rx.try_recv() {
                    finished.push(more);
                }
                for (feed_id, recorded) in finished {
                    in_flight.remove(&feed_id);
                    if !recorded {
                        held.insert(feed_id, Instant::now() + config.polling.min_interval);
                    }
                }
            }
            () = control.reload.notified() => reload = true,
            _ = config_check.tick() => {
                reload = watched.iter().any(|(path, stamp)| FileStamp::of(path) != *stamp);
            }
        }
        let mut valid = None;
        if reload {
            // What this attempt read, valid or not: a fix to any of it is worth another try.
            match reload_config(&config) {
                Ok(new) => {
                    watched = new.read_files.clone();
                    valid = Some(new);
                }
                Err(read_files) => watched = read_files,
            }
        }
        if let Some(new) = valid {
            // Build everything before syncing: a config that cannot run must not be half applied.
            match services.pipeline(&new) {
                Ok(rebuilt) => match sync_reloaded(&config, &new, writer).await {
                    Ok(()) => {
                        pipeline = rebuilt;
                        background.cancel();
                        background = services.start_background(&new, &pipeline)?;
                        tracing::info!(
                            feeds = new.feeds.len(),
                            companies = new.companies.len(),
                            "config reloaded"
                        );
                        new.log_warnings();
                        config = new;
                    }
                    Err(err) => {
                        tracing::error!(error = %format!("{err:#}"), "cannot apply the reloaded config; keeping the last good one")
                    }
                },
                Err(err) => {
                    tracing::error!(error = %format!("{err:#}"), "cannot use the reloaded config; keeping the last good one")
                }
            }
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let grace = config.daemon.shutdown_grace;
    tracing::info!(
        in_flight = in_flight.len(),
        ?grace,
        "shutting down: letting fetches in flight finish"
    );
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("grace period over: cancelling the fetches still in flight");
        shared.hard_stop.cancel();
        tracker.wait().await;
    }
    drop(pipeline);
    drop(shared);
    thread.join()?;
    tracing::info!("stopped");
    Ok(())
}

/// The longest the daemon sleeps between turns of its loop even when nothing is due: its
/// heartbeat (for `/healthz`) must stay fresh.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// How often the daemon looks for commits of other processes.
const OTHER_WRITERS_CHECK: Duration = Duration::from_secs(5);

/// Wakes the alert deliveries (`new_flags`) within [`OTHER_WRITERS_CHECK`] of a commit by
/// another process (a `feedhound rescan` or `alerts --retry-now`, a user's SQL), which may
/// have queued alerts, put some back or made them due without telling this one. It reads the
/// first `data_version` before it returns: started before the first delivery round, it misses
/// no commit that round did not see. Any commit wakes every target's loop, for a few indexed
/// reads each: cheap beside a commit. (The main loop needs no such wake: it reads what is due
/// at least every [`CONFIG_CHECK`].)
async fn watch_other_writers(
    writer: StoreWriter,
    new_flags: Arc<Notify>,
) -> anyhow::Result<impl Future<Output = ()>> {
    let mut seen = writer.call(|store| store.data_version()).await?;
    Ok(async move {
        let mut check = tokio::time::interval(OTHER_WRITERS_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            check.tick().await;
            match writer.call(|store| store.data_version()).await {
                Ok(version) => {
                    if version != seen {
                        new_flags.notify_one();
                    }
                    (seen, failing) = (version, false);
                }
                Err(err) if !failing => {
                    failing = true;
                    tracing::warn!(error = %format!("{err:#}"), "cannot tell whether another process wrote to the database; what it queues waits for the daemon's own rounds");
                }
                Err(_) => {}
            }
        }
    })
}

/// What the daemon's pipelines share across config reloads.
struct Services<'a> {
    shared: &'a Shared,
    tracker: &'a TaskTracker,
    limits: &'a Arc<Limits>,
    shutdown: &'a CancellationToken,
}

impl Services<'_> {
    /// A pipeline for `config`.
    fn pipeline(&self, config: &Config) -> anyhow::Result<Arc<Pipeline>> {
        let limits = if self.limits.matches(config) {
            Arc::clone(self.limits)
        } else {
            // Fetches in flight keep their permits on the old limits until they finish.
            Arc::new(Limits::new(config))
        };
        let pipeline = Pipeline::new(config, build_matcher(config)?, limits, self.shared.clone())?;
        Ok(Arc::new(pipeline))
    }

    /// The work that follows the config in the background: alert delivery to its targets, and
    /// a rescan when its company rules are new to the database, with `pipeline`'s matcher (built
    /// once: with 10,000 names that takes about 50 ms). Cancel the token to stop both (a rescan
    /// stops between batches, leaving the rules marked stale).
    fn start_background(
        &self,
        config: &Config,
        pipeline: &Pipeline,
    ) -> anyhow::Result<CancellationToken> {
        let stop = self.shutdown.child_token();
        if let Some(notifier) = Notifier::new(config, self.shared.writer.clone())? {
            let (writer, new_flags, stop) = (
                self.shared.writer.clone(),
                Arc::clone(&self.shared.new_flags),
                stop.clone(),
            );
            self.tracker.spawn(async move {
                // Before the first delivery round, so no commit after it goes unnoticed.
                let watch = watch_other_writers(writer, Arc::clone(&new_flags)).await;
                let deliveries = notifier.run(new_flags, stop);
                match watch {
                    Ok(watch) => tokio::select! {
                        () = deliveries => {}
                        () = watch => {}
                    },
                    Err(err) => {
                        tracing::warn!(error = %format!("{err:#}"), "cannot watch for other processes' writes; alerts they queue wait for the daemon's own rounds");
                        deliveries.await;
                    }
                }
            });
        }
        if let Some(worker) = pipeline.article_worker() {
            let wake = Arc::clone(&self.shared.new_articles);
            self.tracker.spawn(worker.run(wake, stop.clone()));
        }
        let writer = self.shared.writer.clone();
        let matcher = Arc::clone(&pipeline.matcher);
        let fingerprint = rules_fingerprint(config);
        let rescan_stop = stop.clone();
        let new_flags = Arc::clone(&self.shared.new_flags);
        self.tracker.spawn(async move {
            match rescan_if_stale(&writer, matcher, fingerprint, false, &rescan_stop).await {
                // What it changed may bear out an alert that was withdrawn.
                Ok((_, changed)) if changed > 0 => new_flags.notify_one(),
                Ok(_) => {}
                Err(err) => {
                    tracing::error!(error = %format!("{err:#}"), "re-matching stored entries failed");
                }
            }
        });
        Ok(stop)
    }
}

/// Loads the edited config; when it is invalid, logs why and returns the files it read.
fn reload_config(current: &Config) -> Result<Config, Vec<ReadFile>> {
    let new = match Config::load(&current.source) {
        Ok(new) => new,
        Err(err) => {
            tracing::error!(
                "the edited config is invalid; still running on the last good one:\n{err}"
            );
            return Err(err.read_files);
        }
    };
    if new.database_path() != current.database_path()
        || new.storage.retain != current.storage.retain
        || new.server.listen != current.server.listen
    {
        tracing::warn!("storage and server settings changed: they take effect after a restart");
    }
    Ok(new)
}

async fn sync_reloaded(current: &Config, new: &Config, writer: &StoreWriter) -> anyhow::Result<()> {
    let old_headers: HashMap<&str, &Option<FeedHeaders>> = current
        .feeds
        .iter()
        .map(|feed| (feed.url.as_str(), &feed.headers))
        .collect();
    let new_headers: Vec<String> = new
        .feeds
        .iter()
        .filter(|feed| {
            old_headers
                .get(feed.url.as_str())
                .is_some_and(|old| **old != feed.headers)
        })
        .map(|feed| feed.url.to_string())
        .collect();
    let new = new.clone();
    writer
        .call(move |store| {
            sync_config(store, &new)?;
            store.poll_again_soon(&new_headers, Utc::now())
        })
        .await
}

fn feed_span(feed: &DueFeed) -> tracing::Span {
    tracing::info_span!("feed", feed_id = feed.id, feed_url = %redact_str(&feed.url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ParsedEntry;
    use crate::store::testing::{store_document, store_with_one_feed};

    #[test]
    fn a_deferred_fetch_neither_adds_to_the_feeds_failures_nor_clears_them() {
        let deferred = FeedResult::Deferred {
            error: "no parsing thread was free".into(),
        };
        let failed = FeedResult::Failed {
            error: "HTTP 500".into(),
        };
        let not_modified = FeedResult::NotModified {
            etag: None,
            last_modified: None,
        };
        assert_eq!(failures_after(&deferred, 0), 0);
        assert_eq!(failures_after(&deferred, 3), 3);
        assert_eq!(failures_after(&failed, 3), 4);
        assert_eq!(failures_after(&not_modified, 3), 0);
    }

    #[test]
    fn stored_mentions_of_an_older_matcher_are_stale_under_the_same_rules() {
        let config = Config::parse(
            "[[company]]\nname = \"Nestlé\"\n",
            std::path::Path::new("feedhound.toml"),
        )
        .unwrap();
        // What databases matched before matcher revision 2 (NFC) hold.
        let before_nfc = blake3::hash(format!("{:?}", config.company_rules()).as_bytes())
            .to_hex()
            .to_string();
        assert_ne!(rules_fingerprint(&config), before_nfc);
        assert_eq!(rules_fingerprint(&config), rules_fingerprint(&config));
    }

    #[tokio::test]
    async fn a_rescan_stopped_midway_is_redone_even_when_the_rules_change_back() {
        let (_dir, mut store, feed) = store_with_one_feed();
        let entry = ParsedEntry {
            dedup_key: "g:1".into(),
            title: Some("Xiaomi opens a store".into()),
            content_hash: "h".into(),
            ..Default::default()
        };
        store_document(&mut store, feed, vec![entry], "doc");
        store.set_meta(RULES_FINGERPRINT, "first rules").unwrap();
        let (writer, thread) = StoreWriter::spawn(store, WhenIdle::Wait).unwrap();
        let matcher = Arc::new(Matcher::new(&[]).unwrap());
        let (go, stopped) = (CancellationToken::new(), CancellationToken::new());
        stopped.cancel();
        let rescan = |fingerprint: &str, stop| {
            rescan_if_stale(
                &writer,
                Arc::clone(&matcher),
                fingerprint.into(),
                false,
                stop,
            )
        };
        // New rules, and a shutdown before the first batch is written.
        assert_eq!(rescan("second rules", &stopped).await.unwrap(), (0, 0));
        // Back to the first rules: what was stored may be partly the second rules' work.
        assert_eq!(rescan("first rules", &go).await.unwrap().0, 1);
        assert_eq!(
            rescan("first rules", &go).await.unwrap().0,
            0,
            "done once the re-match finished"
        );
        drop(writer);
        thread.join().unwrap();
    }
}
