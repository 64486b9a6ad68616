//! Article pages: for a feed with `fetch_articles`, the page each new entry links to is fetched,
//! its story text taken out (Readability: no menus, related links or footers, which name other
//! companies) and matched together with the entry's own text. A feed that only teases its
//! stories ("Read more…") then flags a story for what its article says.
//!
//! The queue is the `articles` table (`store::articles`): a row is written with its entry, so
//! what waits survives a restart, and a `poll` from cron fetches what the last one left. Pages
//! are fetched under the same limits as feeds (global, per host, spacing), with the feed's own
//! headers where they belong and never from this machine's network for a feed elsewhere (see
//! [`Fetcher::fetch_page`]). A page that cannot be read leaves the entry flagged by its own
//! text; a failure that may pass (a timeout, a 5xx, a 429) is tried again later, up to
//! [`RETRY_DELAYS`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use url::Url;

use crate::fetch::{FeedHeaders, FetchError, Fetcher, Limits, host_key, is_local, redact_str};
use crate::matcher::{EntryText, Matcher};
use crate::metrics::{Metrics, PageOutcome};
use crate::parse;
use crate::parse_pool::{ParsePool, PoolError};
use crate::store::writer::StoreWriter;
use crate::store::{ArticleOutcome, ArticleReport, DueArticle};
use crate::text;

/// Waits before the retries of a page that failed in a way that may pass; after the last, the
/// article is given up (its entry keeps the mentions of its own text).
pub const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(10 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(6 * 60 * 60),
];

/// An edited entry is matched again with its page's text from the last hour without fetching
/// the page again: a feed that edits an item on every poll must not make us fetch its page as
/// often.
const REFETCH_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// The story text kept of a page, in bytes: a long feature is about 50 KB.
const MAX_TEXT_BYTES: usize = 256 * 1024;

/// Pages fetched at once, at most: they share the fetch slots with the feeds (and the parsing
/// threads with their documents), and a backlog of pages must not hold up the feeds' polls.
const IN_FLIGHT: usize = 4;

/// How long an article whose report could not be written waits before it is tried again: its
/// row still says it is due, and the page must not be fetched again every second meanwhile.
const HOLD_AFTER_WRITE_FAILURE: Duration = Duration::from_secs(5 * 60);

/// How a round of article fetches went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ArticleTally {
    /// Pages read (or entries matched again with the text read before).
    pub read: usize,
    /// Pages that could not be read this time.
    pub failed: usize,
}

/// Fetches due articles and reports them to the store.
pub struct ArticleWorker {
    pub fetcher: Fetcher,
    pub limits: Arc<Limits>,
    pub matcher: Arc<Matcher>,
    pub parsers: Arc<ParsePool>,
    pub writer: StoreWriter,
    /// Each feed's own headers, by its config URL.
    pub headers: HashMap<String, FeedHeaders>,
    /// Woken when an article changed what an entry mentions, or ended its story's first alerts'
    /// wait for pages: an alert may be due.
    pub new_flags: Arc<Notify>,
    /// Counts what became of each page (`feedhound_article_pages_total`).
    pub metrics: Arc<Metrics>,
    /// Articles whose report could not be written, and until when they are left alone.
    pub held: std::sync::Mutex<HashMap<i64, std::time::Instant>>,
}

impl ArticleWorker {
    /// Works through the articles due now (and those that fall due meanwhile) until none is
    /// left or `stop` is cancelled. An article whose report cannot be written is left for the
    /// next call.
    pub async fn work_due(self: &Arc<Self>, stop: &CancellationToken) -> ArticleTally {
        let mut tally = ArticleTally::default();
        let mut tasks = JoinSet::new();
        let mut busy: HashSet<i64> = {
            let mut held = self.held.lock().expect("held lock");
            held.retain(|_, until| *until > std::time::Instant::now());
            held.keys().copied().collect()
        };
        loop {
            if tasks.len() < IN_FLIGHT && !stop.is_cancelled() {
                let room = IN_FLIGHT - tasks.len();
                let skip: Vec<i64> = busy.iter().copied().collect();
                let due = self
                    .writer
                    .call(move |store| store.due_articles(Utc::now(), room, &skip))
                    .await;
                match due {
                    Ok(due) => {
                        for article in due {
                            busy.insert(article.entry_id);
                            let worker = Arc::clone(self);
                            let span = tracing::info_span!(
                                "article",
                                feed_url = %redact_str(&article.feed_url),
                                url = %redact_str(&article.url)
                            );
                            tasks.spawn(
                                async move {
                                    let id = article.entry_id;
                                    (id, worker.handle(article).await)
                                }
                                .instrument(span),
                            );
                        }
                    }
                    Err(err) => {
                        tracing::error!(error = %format!("{err:#}"), "cannot read the articles due");
                    }
                }
            }
            let joined = tokio::select! {
                joined = tasks.join_next() => joined,
                () = stop.cancelled() => None,
            };
            let Some(joined) = joined else {
                return tally;
            };
            match joined {
                Ok((id, Ok(read))) => {
                    busy.remove(&id);
                    if read {
                        tally.read += 1;
                    } else {
                        tally.failed += 1;
                    }
                }
                // Left in `busy`, and held for the next calls.
                Ok((id, Err(err))) => {
                    tracing::error!(error = %format!("{err:#}"), "cannot record an article");
                    let until = std::time::Instant::now() + HOLD_AFTER_WRITE_FAILURE;
                    self.held.lock().expect("held lock").insert(id, until);
                }
                Err(err) => tracing::error!(error = %err, "an article task panicked"),
            }
        }
    }

    /// The daemon's loop: works through due articles whenever `wake` is notified (a poll
    /// stored entries), one falls due, or a minute passes, until `stop`.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>, stop: CancellationToken) {
        loop {
            self.work_due(&stop).await;
            let next = self.writer.call(|store| store.next_article_time()).await;
            // At least a second: an article held after a failed write is due still.
            let sleep = match next {
                Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or_default(),
                Ok(None) => MAX_SLEEP,
                Err(err) => {
                    tracing::error!(error = %format!("{err:#}"), "cannot read when the next article is due");
                    MAX_SLEEP
                }
            }
            .clamp(Duration::from_secs(1), MAX_SLEEP);
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Fetches (or re-matches) one article and records what became of it; Ok(true) when its
    /// text was read.
    async fn handle(&self, due: DueArticle) -> anyhow::Result<bool> {
        let text_is_recent = due.text.is_some()
            && due
                .fetched_at
                .is_some_and(|at| Utc::now() - at < REFETCH_AFTER);
        let (status, outcome) = if text_is_recent {
            (None, ArticleOutcome::Kept)
        } else {
            match self.read_page(&due).await {
                Ok((status, text)) => (Some(status), ArticleOutcome::Fetched(text)),
                Err(failure) => {
                    let retry_at = failure.retry_at(due.attempts, Utc::now());
                    let error = failure.error;
                    match retry_at {
                        Some(at) => {
                            tracing::warn!(%error, retry_at = %at, "cannot read the article page")
                        }
                        None => {
                            tracing::warn!(%error, "cannot read the article page; giving it up")
                        }
                    }
                    (failure.status, ArticleOutcome::Failed { error, retry_at })
                }
            }
        };
        let page_outcome = match &outcome {
            ArticleOutcome::Fetched(_) => PageOutcome::Read,
            ArticleOutcome::Kept => PageOutcome::Rematched,
            ArticleOutcome::Failed {
                retry_at: Some(_), ..
            } => PageOutcome::Retrying,
            ArticleOutcome::Failed { retry_at: None, .. } => PageOutcome::GivenUp,
        };
        let read = !matches!(outcome, ArticleOutcome::Failed { .. });
        // Kept, or failed after an edit queued it again: the text kept is the page's still.
        let text = match &outcome {
            ArticleOutcome::Fetched(text) => Some(text.as_str()),
            ArticleOutcome::Kept | ArticleOutcome::Failed { .. } => due.text.as_deref(),
        };
        let mentions = text.map(|text| {
            self.matcher.find(&EntryText {
                title: &due.title,
                summary: &due.summary,
                content: &due.content,
                article: text,
            })
        });
        let report = ArticleReport {
            entry_id: due.entry_id,
            content_hash: due.content_hash,
            status,
            outcome,
            mentions,
        };
        let recorded = self
            .writer
            .call(move |store| store.record_article(&report))
            .await
            .context("recording the article")?;
        if recorded.applied {
            self.metrics.record_page(page_outcome);
        }
        if recorded.alerts_may_be_due {
            self.new_flags.notify_one();
        }
        Ok(read)
    }

    /// The page's story text, with the final HTTP status.
    async fn read_page(&self, due: &DueArticle) -> Result<(u16, String), PageFailure> {
        let url = Url::parse(&due.url).map_err(|err| PageFailure::final_(format!("{err}")))?;
        let local_origin = Url::parse(&due.feed_url)
            .ok()
            .filter(is_local)
            .map(|feed| feed.origin());
        let slot = self
            .limits
            .acquire(&host_key(&url))
            .await
            .map_err(|err| PageFailure::final_(format!("{err:#}")))?;
        let fetched = self
            .fetcher
            .fetch_page(&url, self.headers.get(&due.feed_url), local_origin.as_ref())
            .await;
        drop(slot);
        let fetched = fetched.map_err(PageFailure::from)?;
        let status = fetched.status;
        let content_type = fetched.content_type.unwrap_or_default();
        if !is_html(&content_type) {
            return Err(PageFailure {
                status: Some(status),
                error: format!("the link leads to {content_type}, not to a web page"),
                may_pass: false,
                retry_after: None,
            });
        }
        let body = fetched.body.unwrap_or_default();
        let page_url = fetched.final_url.to_string();
        let extracted = self
            .parsers
            .run(&due.url, move || {
                let html = parse::decode_html(&body, Some(&content_type));
                story_text(&html, &page_url)
            })
            .await;
        match extracted {
            Ok(Some(text)) => Ok((status, text)),
            Ok(None) => Err(PageFailure {
                status: Some(status),
                error: "found no story text on the page".into(),
                may_pass: false,
                retry_after: None,
            }),
            Err(err) => Err(PageFailure {
                status: Some(status),
                error: err.to_string(),
                // Every thread busy with feeds' documents: nothing the page did.
                may_pass: matches!(err, PoolError::NoThread(_)),
                retry_after: None,
            }),
        }
    }
}

/// The longest the daemon's article loop sleeps without looking at the queue.
const MAX_SLEEP: Duration = Duration::from_secs(60);

fn is_html(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    // No Content-Type at all: servers that omit it mostly serve HTML, and Readability says
    // whether there is a story in it.
    essence.is_empty() || essence == "text/html" || essence == "application/xhtml+xml"
}

/// The story text of an HTML page as one line of plain text (as feed fields are stored), at
/// most [`MAX_TEXT_BYTES`]; None when Readability finds no story in it.
pub fn story_text(html: &str, page_url: &str) -> Option<String> {
    let config = dom_smoothie::Config {
        // A page this large is not one story; Readability's work grows with it.
        max_elements_to_parse: 50_000,
        ..Default::default()
    };
    let mut readability =
        dom_smoothie::Readability::new(html, Some(page_url), Some(config)).ok()?;
    let article = readability.parse().ok()?;
    let mut text = text::html_to_text(&article.content);
    if text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    (!text.is_empty()).then_some(text)
}

/// Why a page could not be read, and whether trying again later may help.
#[derive(Debug)]
struct PageFailure {
    status: Option<u16>,
    error: String,
    may_pass: bool,
    retry_after: Option<DateTime<Utc>>,
}

impl PageFailure {
    fn final_(error: String) -> PageFailure {
        PageFailure {
            status: None,
            error,
            may_pass: false,
            retry_after: None,
        }
    }

    /// When to try again after `attempts` earlier failures (this one not counted); None to
    /// give up. A server's `Retry-After` later than our own wait is honoured.
    fn retry_at(&self, attempts: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.may_pass {
            return None;
        }
        let delay = RETRY_DELAYS.get(attempts as usize)?;
        let ours = now + chrono::TimeDelta::from_std(*delay).ok()?;
        Some(self.retry_after.map_or(ours, |theirs| theirs.max(ours)))
    }
}

impl From<FetchError> for PageFailure {
    fn from(err: FetchError) -> PageFailure {
        let (status, may_pass, retry_after) = match &err {
            // A certificate is renewed, or its CA trusted, without the link changing.
            FetchError::Timeout(_) | FetchError::Network(_) | FetchError::Certificate(_) => {
                (None, true, None)
            }
            FetchError::Status {
                status,
                retry_after,
                ..
            } => {
                // Too many requests, a timeout, or the server's own trouble: it may pass. Any
                // other refusal (gone, forbidden, not found) will not.
                let may_pass = matches!(status, 408 | 425 | 429) || *status >= 500;
                (Some(*status), may_pass, *retry_after)
            }
            FetchError::NotModifiedUnasked => (Some(304), false, None),
            FetchError::TooLarge { .. }
            | FetchError::TooManyRedirects(_)
            | FetchError::RedirectLoop(_)
            | FetchError::UnsupportedScheme(_)
            | FetchError::LocalAddress(_)
            | FetchError::BadRedirect { .. } => (None, false, None),
        };
        PageFailure {
            status,
            error: err.to_string(),
            may_pass,
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_story_text_leaves_out_the_menus_related_links_and_footer() {
        let filler = "<p>The company said demand held up in every region it sells in, and that \
                      it expects the second half of the year to be stronger than the first.</p>";
        let page = format!(
            "<html><head><title>Results</title></head><body>\
             <nav><a href=\"/a\">Samsung news</a> <a href=\"/b\">Markets</a></nav>\
             <article><h1>Results</h1><p>Xiaomi &amp; partners reported record sales.</p>\
             {filler}{filler}{filler}</article>\
             <aside class=\"related\"><a href=\"/c\">Samsung shares slip</a></aside>\
             <footer>Samsung sponsors this site.</footer></body></html>"
        );
        let text = story_text(&page, "https://news.example/results").unwrap();
        assert!(
            text.starts_with("Xiaomi & partners reported record sales."),
            "{text}"
        );
        assert!(!text.contains("Samsung"), "{text}");
        assert!(!text.contains("  ") && !text.contains('<'));
        assert_eq!(
            story_text("<html><body></body></html>", "https://news.example/"),
            None
        );
    }

    #[test]
    fn only_failures_that_may_pass_are_retried_and_never_sooner_than_the_server_asks() {
        let now = Utc::now();
        let status = |status: u16, retry_after| {
            PageFailure::from(FetchError::Status {
                status,
                retry_after,
                headers_withheld_from: None,
            })
        };
        let in_ = |secs: i64| now + chrono::TimeDelta::seconds(secs);
        assert_eq!(status(503, None).retry_at(0, now), Some(in_(600)));
        assert_eq!(status(429, None).retry_at(1, now), Some(in_(3600)));
        let later = in_(7200);
        assert_eq!(status(429, Some(later)).retry_at(0, now), Some(later));
        assert_eq!(
            status(503, None).retry_at(3, now),
            None,
            "given up after 3 retries"
        );
        for refused in [400, 401, 403, 404, 410, 451] {
            assert_eq!(status(refused, None).retry_at(0, now), None, "{refused}");
        }
        let timeout = PageFailure::from(FetchError::Timeout(Duration::from_secs(30)));
        assert_eq!(timeout.retry_at(2, now), Some(in_(6 * 3600)));
        let refused_certificate = PageFailure::from(FetchError::Certificate("expired".into()));
        assert!(refused_certificate.retry_at(0, now).is_some());
        let local = PageFailure::from(FetchError::LocalAddress("http://10.0.0.1/".into()));
        assert_eq!(local.retry_at(0, now), None);
    }
}
