//! What the daemon counts while it runs, and its rendering in the Prometheus text format.
//!
//! [`Metrics`] is a handful of atomics the scheduler bumps through a few methods (no locks on
//! the fetch path). Gauges that describe the database (feeds by state, outbox backlog, last
//! successful poll) are not tracked here but read at scrape time ([`ServiceGauges`]), so they
//! are right even across restarts. The text format is simple and stable enough to write by
//! hand (<https://prometheus.io/docs/instrumenting/exposition_formats/>); a client library
//! would add a registry and label maps for a dozen series.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::store::ServiceGauges;

/// How a fetch ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// A body was fetched and parsed.
    Ok,
    /// 304, or 200 with the same body as last time.
    NotModified,
    /// Network, HTTP or parse failure.
    Failed,
    /// Fetched but not parsed for a reason of feedhound's own (no parsing thread was free).
    Deferred,
}

impl FetchOutcome {
    const ALL: [FetchOutcome; 4] = [
        FetchOutcome::Ok,
        FetchOutcome::NotModified,
        FetchOutcome::Failed,
        FetchOutcome::Deferred,
    ];

    fn label(self) -> &'static str {
        match self {
            FetchOutcome::Ok => "ok",
            FetchOutcome::NotModified => "not_modified",
            FetchOutcome::Failed => "failed",
            FetchOutcome::Deferred => "deferred",
        }
    }
}

/// What became of an article page, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageOutcome {
    /// Fetched and its story text read.
    Read,
    /// Its entry was edited and matched again with the text read within the hour.
    Rematched,
    /// Failed in a way that may pass; tried again later.
    Retrying,
    /// Failed for good, or for the last time.
    GivenUp,
}

impl PageOutcome {
    const ALL: [PageOutcome; 4] = [
        PageOutcome::Read,
        PageOutcome::Rematched,
        PageOutcome::Retrying,
        PageOutcome::GivenUp,
    ];

    fn label(self) -> &'static str {
        match self {
            PageOutcome::Read => "read",
            PageOutcome::Rematched => "rematched",
            PageOutcome::Retrying => "retrying",
            PageOutcome::GivenUp => "given_up",
        }
    }
}

/// `status` label values: the HTTP status class, or `none` when no response arrived.
const STATUS_CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "none"];

fn status_class(status: Option<u16>) -> usize {
    match status {
        Some(200..=299) => 0,
        Some(300..=399) => 1,
        Some(400..=499) => 2,
        Some(500..=599) => 3,
        _ => 4,
    }
}

/// Upper bounds (seconds) of the fetch duration histogram: most feeds answer in well under a
/// second; the top buckets bracket the default 30 s request timeout.
const DURATION_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Feed states always exported, even when no feed is in them, so dashboards see zeros rather
/// than gaps. Other states the store reports are exported as they come.
const FEED_STATES: [&str; 2] = ["ok", "backing_off"];

/// The daemon's counters; share it as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    fetches: [[AtomicU64; STATUS_CLASSES.len()]; FetchOutcome::ALL.len()],
    /// Per bucket, not cumulative; the last slot is above every bound (+Inf).
    duration_buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    duration_micros: AtomicU64,
    entries_new: AtomicU64,
    entries_updated: AtomicU64,
    mentions: AtomicU64,
    article_pages: [AtomicU64; PageOutcome::ALL.len()],
    /// Monotonic origin of [`Metrics::heartbeat`] times.
    created: Instant,
    /// Milliseconds after `created` of the last heartbeat, plus one; 0 = never.
    heartbeat: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            fetches: Default::default(),
            duration_buckets: Default::default(),
            duration_micros: AtomicU64::new(0),
            entries_new: AtomicU64::new(0),
            entries_updated: AtomicU64::new(0),
            mentions: AtomicU64::new(0),
            article_pages: Default::default(),
            created: Instant::now(),
            heartbeat: AtomicU64::new(0),
        }
    }

    /// One feed fetch: how it ended, the final HTTP status if any, and how long it took.
    pub fn record_fetch(&self, outcome: FetchOutcome, status: Option<u16>, duration: Duration) {
        self.fetches[outcome as usize][status_class(status)].fetch_add(1, Ordering::Relaxed);
        let seconds = duration.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.duration_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.duration_micros.fetch_add(
            u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Entries stored by one feed result.
    pub fn record_entries(&self, new: usize, updated: usize) {
        self.entries_new.fetch_add(new as u64, Ordering::Relaxed);
        self.entries_updated
            .fetch_add(updated as u64, Ordering::Relaxed);
    }

    /// Company mentions recorded.
    pub fn record_mentions(&self, count: usize) {
        self.mentions.fetch_add(count as u64, Ordering::Relaxed);
    }

    /// One article page recorded.
    pub fn record_page(&self, outcome: PageOutcome) {
        self.article_pages[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The scheduler is alive; call it on every turn of its loop.
    pub fn heartbeat(&self) {
        let since = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.heartbeat.store(since + 1, Ordering::Relaxed);
    }

    /// Time since the last heartbeat; None before the first.
    pub fn heartbeat_age(&self) -> Option<Duration> {
        match self.heartbeat.load(Ordering::Relaxed) {
            0 => None,
            at => Some(
                self.created
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at - 1)),
            ),
        }
    }

    /// The Prometheus text exposition. `gauges` is None when the database did not answer in
    /// time: the counters are still worth having, and `feedhound_database_gauges_ok` says so.
    pub fn render(&self, gauges: Option<&ServiceGauges>) -> String {
        let mut out = String::with_capacity(4096);
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);

        header(
            &mut out,
            "feedhound_fetches_total",
            "counter",
            "Feed fetches by outcome and HTTP status class.",
        );
        for outcome in FetchOutcome::ALL {
            for (class, name) in STATUS_CLASSES.iter().enumerate() {
                let value = load(&self.fetches[outcome as usize][class]);
                let _ = writeln!(
                    out,
                    "feedhound_fetches_total{{outcome=\"{}\",status=\"{name}\"}} {value}",
                    outcome.label()
                );
            }
        }

        header(
            &mut out,
            "feedhound_fetch_duration_seconds",
            "histogram",
            "Time to fetch a feed, from request to recorded result.",
        );
        let mut cumulative = 0;
        for (bound, count) in DURATION_BUCKETS.iter().zip(&self.duration_buckets) {
            cumulative += load(count);
            let _ = writeln!(
                out,
                "feedhound_fetch_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += load(&self.duration_buckets[DURATION_BUCKETS.len()]);
        let _ = writeln!(
            out,
            "feedhound_fetch_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let sum = load(&self.duration_micros) as f64 / 1e6;
        let _ = writeln!(out, "feedhound_fetch_duration_seconds_sum {sum}");
        let _ = writeln!(out, "feedhound_fetch_duration_seconds_count {cumulative}");

        header(
            &mut out,
            "feedhound_entries_total",
            "counter",
            "Entries stored, by change.",
        );
        let _ = writeln!(
            out,
            "feedhound_entries_total{{change=\"new\"}} {}",
            load(&self.entries_new)
        );
        let _ = writeln!(
            out,
            "feedhound_entries_total{{change=\"updated\"}} {}",
            load(&self.entries_updated)
        );

        header(
            &mut out,
            "feedhound_mentions_total",
            "counter",
            "Company mentions recorded.",
        );
        let _ = writeln!(out, "feedhound_mentions_total {}", load(&self.mentions));

        header(
            &mut out,
            "feedhound_article_pages_total",
            "counter",
            "Article pages of fetch_articles feeds, by what became of them.",
        );
        for outcome in PageOutcome::ALL {
            let _ = writeln!(
                out,
                "feedhound_article_pages_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                load(&self.article_pages[outcome as usize])
            );
        }

        if let Some(age) = self.heartbeat_age() {
            header(
                &mut out,
                "feedhound_scheduler_heartbeat_age_seconds",
                "gauge",
                "Seconds since the scheduler last reported alive.",
            );
            let _ = writeln!(
                out,
                "feedhound_scheduler_heartbeat_age_seconds {}",
                age.as_secs_f64()
            );
        }

        header(
            &mut out,
            "feedhound_database_gauges_ok",
            "gauge",
            "1 when the database answered this scrape in time (the gauges below are present).",
        );
        let _ = writeln!(
            out,
            "feedhound_database_gauges_ok {}",
            u8::from(gauges.is_some())
        );
        let Some(gauges) = gauges else { return out };

        header(
            &mut out,
            "feedhound_feeds",
            "gauge",
            "Active feeds by state.",
        );
        let count_of = |state: &str| {
            gauges
                .feeds_by_state
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n)
        };
        for state in FEED_STATES {
            let _ = writeln!(
                out,
                "feedhound_feeds{{state=\"{state}\"}} {}",
                count_of(state)
            );
        }
        for (state, count) in &gauges.feeds_by_state {
            if !FEED_STATES.contains(&state.as_str()) {
                let _ = writeln!(
                    out,
                    "feedhound_feeds{{state=\"{}\"}} {count}",
                    escape_label(state)
                );
            }
        }

        header(
            &mut out,
            "feedhound_outbox_pending",
            "gauge",
            "Alerts waiting for delivery.",
        );
        let _ = writeln!(out, "feedhound_outbox_pending {}", gauges.outbox_pending);
        header(
            &mut out,
            "feedhound_alert_targets_down",
            "gauge",
            "Notify targets that were down on their last try and have not answered since.",
        );
        let _ = writeln!(
            out,
            "feedhound_alert_targets_down {}",
            gauges.alert_targets_down
        );

        header(
            &mut out,
            "feedhound_search_backlog",
            "gauge",
            "New and edited entries (and those whose article page was read) not indexed for search yet.",
        );
        let _ = writeln!(out, "feedhound_search_backlog {}", gauges.search_backlog);
        header(
            &mut out,
            "feedhound_search_index_damaged",
            "gauge",
            "1 while the search index is set aside as damaged (run feedhound reindex).",
        );
        let _ = writeln!(
            out,
            "feedhound_search_index_damaged {}",
            u8::from(gauges.search_index_damaged)
        );

        header(
            &mut out,
            "feedhound_article_pages",
            "gauge",
            "Article pages of active fetch_articles feeds waiting to be fetched, or given up.",
        );
        let _ = writeln!(
            out,
            "feedhound_article_pages{{state=\"waiting\"}} {}",
            gauges.article_pages_waiting
        );
        let _ = writeln!(
            out,
            "feedhound_article_pages{{state=\"given_up\"}} {}",
            gauges.article_pages_given_up
        );

        if let Some(at) = gauges.last_success_at {
            header(
                &mut out,
                "feedhound_last_success_timestamp_seconds",
                "gauge",
                "Unix time of the most recent successful feed fetch.",
            );
            let _ = writeln!(
                out,
                "feedhound_last_success_timestamp_seconds {}",
                at.timestamp()
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Label values escape backslash, quote and newline.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn fetches_are_counted_by_outcome_and_status_class() {
        let metrics = Metrics::new();
        metrics.record_fetch(FetchOutcome::Ok, Some(200), Duration::from_millis(20));
        metrics.record_fetch(
            FetchOutcome::NotModified,
            Some(304),
            Duration::from_millis(20),
        );
        metrics.record_fetch(FetchOutcome::Failed, Some(503), Duration::from_millis(20));
        metrics.record_fetch(FetchOutcome::Failed, None, Duration::from_secs(31));
        let text = metrics.render(None);
        let get = |s: &str| line(&text, s).unwrap_or_else(|| panic!("{s} missing in\n{text}"));
        assert_eq!(
            get(r#"feedhound_fetches_total{outcome="ok",status="2xx"}"#),
            "1"
        );
        assert_eq!(
            get(r#"feedhound_fetches_total{outcome="not_modified",status="3xx"}"#),
            "1"
        );
        assert_eq!(
            get(r#"feedhound_fetches_total{outcome="failed",status="5xx"}"#),
            "1"
        );
        assert_eq!(
            get(r#"feedhound_fetches_total{outcome="failed",status="none"}"#),
            "1"
        );
        assert_eq!(
            get(r#"feedhound_fetches_total{outcome="ok",status="5xx"}"#),
            "0"
        );
        // Cumulative buckets: three fetches under 50 ms, the timed-out one only in 60 and +Inf.
        assert_eq!(
            get(r#"feedhound_fetch_duration_seconds_bucket{le="0.05"}"#),
            "3"
        );
        assert_eq!(
            get(r#"feedhound_fetch_duration_seconds_bucket{le="30"}"#),
            "3"
        );
        assert_eq!(
            get(r#"feedhound_fetch_duration_seconds_bucket{le="60"}"#),
            "4"
        );
        assert_eq!(
            get(r#"feedhound_fetch_duration_seconds_bucket{le="+Inf"}"#),
            "4"
        );
        assert_eq!(get("feedhound_fetch_duration_seconds_count"), "4");
        assert_eq!(get("feedhound_fetch_duration_seconds_sum"), "31.06");
        assert_eq!(get("feedhound_database_gauges_ok"), "0");
        assert!(line(&text, "feedhound_outbox_pending").is_none());
    }

    #[test]
    fn the_heartbeat_age_starts_unknown_and_resets_on_each_beat() {
        let metrics = Metrics::new();
        assert_eq!(metrics.heartbeat_age(), None);
        metrics.heartbeat();
        assert!(metrics.heartbeat_age().unwrap() < Duration::from_secs(1));
    }

    #[test]
    fn every_feed_state_is_exported_even_when_empty() {
        let metrics = Metrics::new();
        let gauges = ServiceGauges {
            feeds_by_state: vec![("dead".into(), 2)],
            outbox_pending: 3,
            alert_targets_down: 1,
            search_backlog: 4,
            search_index_damaged: true,
            last_success_at: None,
            article_pages_waiting: 5,
            article_pages_given_up: 6,
        };
        let text = metrics.render(Some(&gauges));
        assert_eq!(line(&text, r#"feedhound_feeds{state="ok"}"#), Some("0"));
        assert_eq!(
            line(&text, r#"feedhound_feeds{state="backing_off"}"#),
            Some("0")
        );
        assert_eq!(line(&text, r#"feedhound_feeds{state="dead"}"#), Some("2"));
        assert_eq!(line(&text, "feedhound_outbox_pending"), Some("3"));
        assert_eq!(
            line(&text, r#"feedhound_article_pages{state="waiting"}"#),
            Some("5")
        );
        assert_eq!(
            line(&text, r#"feedhound_article_pages{state="given_up"}"#),
            Some("6")
        );
        assert_eq!(line(&text, "feedhound_alert_targets_down"), Some("1"));
        assert_eq!(line(&text, "feedhound_search_backlog"), Some("4"));
        assert_eq!(line(&text, "feedhound_search_index_damaged"), Some("1"));
    }
}
