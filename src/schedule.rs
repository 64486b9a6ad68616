//! When to poll a feed next: the polling policy, as pure functions.
//!
//! Kept apart from the scheduler's I/O so every rule can be tested with plain values:
//! - a feed's own `interval` from the config wins; otherwise the interval adapts to how often
//!   the feed actually publishes (half its average gap between recent entries, so a new entry
//!   waits at most about half a gap), and is never shorter than what the server asks for
//!   (`Cache-Control: max-age`, `Expires`, RSS `<ttl>`, `sy:updatePeriod`);
//! - everything is clamped to `[min_interval, max_interval]`; `min_interval` is a floor nothing
//!   lowers, so no publisher is polled more often than that;
//! - failures back off exponentially (interval × 2^failures, capped at `max_backoff`), and a
//!   `Retry-After` is honoured for that feed alone; a feed is never given up on;
//! - a small positive jitter spreads feeds that would otherwise fall due together (never
//!   negative, so the floor holds).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::ParsedFeed;

/// The limits the policy works within; from `[polling]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Interval for a feed without its own, before its publishing rate is known.
    pub default_interval: Duration,
    pub min_interval: Duration,
    pub max_interval: Duration,
    pub max_backoff: Duration,
}

/// Why a feed's next poll is when it is; shown by `feedhound feeds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Config,
    Adaptive,
    ServerHint,
    Default,
    Backoff,
    RetryAfter,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Config => "config",
            Reason::Adaptive => "adaptive",
            Reason::ServerHint => "server hint",
            Reason::Default => "default",
            Reason::Backoff => "backoff",
            Reason::RetryAfter => "retry-after",
        }
    }
}

/// What is known about a feed when planning its next poll.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts {
    /// The feed's `interval` in the config.
    pub configured: Option<Duration>,
    /// Derived from the feed's publishing rate (see [`publishing_interval`]).
    pub adaptive: Option<Duration>,
    /// The longest freshness the server or document declared.
    pub server_hint: Option<Duration>,
    /// Consecutive failures, counting the one just recorded (0 after a success).
    pub failures: u32,
    /// `Retry-After` from a 429/503.
    pub retry_after: Option<DateTime<Utc>>,
}

/// The next poll and the interval behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub next_poll_at: DateTime<Utc>,
    /// The interval before backoff and jitter (what the feed would get after a success).
    pub interval: Duration,
    pub reason: Reason,
}

/// The longest a `Retry-After` is honoured: beyond that it is more likely a misconfiguration
/// than a plan, and the feed falls back to its normal backoff.
pub const MAX_RETRY_AFTER: chrono::Duration = chrono::Duration::days(7);

impl Policy {
    fn clamp(&self, interval: Duration) -> Duration {
        interval.clamp(self.min_interval, self.max_interval.max(self.min_interval))
    }

    /// The interval after a success, and why.
    pub fn interval(&self, facts: &Facts) -> (Duration, Reason) {
        if let Some(configured) = facts.configured {
            return (self.clamp(configured), Reason::Config);
        }
        let (base, reason) = match facts.adaptive {
            Some(adaptive) => (adaptive, Reason::Adaptive),
            None => (self.default_interval, Reason::Default),
        };
        let (interval, reason) = match facts.server_hint {
            Some(hint) if hint > base => (hint, Reason::ServerHint),
            _ => (base, reason),
        };
        (self.clamp(interval), reason)
    }

    /// Plans the next poll. `jitter` in [0, 1) spreads polls by up to 10% of the wait
    /// (at most five minutes).
    pub fn plan(&self, facts: &Facts, now: DateTime<Utc>, jitter: f64) -> Plan {
        let (interval, mut reason) = self.interval(facts);
        let mut wait = interval;
        if facts.failures > 0 {
            let backoff = interval.saturating_mul(1u32 << facts.failures.min(20));
            wait = backoff.min(self.max_backoff.max(interval));
            reason = Reason::Backoff;
        }
        let spread = wait
            .mul_f64(0.1 * jitter.clamp(0.0, 1.0))
            .min(Duration::from_secs(300));
        let mut next = now + to_chrono(wait + spread);
        if let Some(retry_after) = facts.retry_after.filter(|at| *at <= now + MAX_RETRY_AFTER)
            && retry_after > next
        {
            next = retry_after;
            reason = Reason::RetryAfter;
        }
        Plan {
            next_poll_at: next,
            interval,
            reason,
        }
    }
}

fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::days(365))
}

/// How far back publishing is looked at: long enough for weekly feeds to show a rhythm.
const RATE_WINDOW: chrono::Duration = chrono::Duration::days(30);

/// Half the average gap between the document's entries published within the last 30 days;
/// `max_interval` for a dated feed that published nothing in that window; None when the
/// entries carry no dates (nothing to learn from).
pub fn publishing_interval(
    feed: &ParsedFeed,
    now: DateTime<Utc>,
    max_interval: Duration,
) -> Option<Duration> {
    let dates: Vec<DateTime<Utc>> = feed.entries.iter().filter_map(|e| e.published_at).collect();
    if dates.is_empty() {
        return None;
    }
    let recent: Vec<DateTime<Utc>> = dates
        .into_iter()
        .filter(|d| *d > now - RATE_WINDOW && *d <= now)
        .collect();
    if recent.len() < 2 {
        return Some(max_interval);
    }
    let oldest = recent.iter().min().copied().unwrap_or(now);
    let span = (now - oldest).to_std().unwrap_or_default();
    Some(span / (2 * recent.len() as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ParsedEntry;

    const MIN: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    fn policy() -> Policy {
        Policy {
            default_interval: Duration::from_secs(30 * 60),
            min_interval: Duration::from_secs(5 * 60),
            max_interval: 24 * HOUR,
            max_backoff: 24 * HOUR,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_floor_holds_against_config_server_hints_and_publishing_rate() {
        let p = policy();
        let tiny = Facts {
            configured: Some(Duration::from_secs(10)),
            ..Facts::default()
        };
        assert_eq!(p.interval(&tiny), (5 * MIN, Reason::Config));
        let eager_server = Facts {
            adaptive: Some(Duration::from_secs(30)),
            server_hint: Some(Duration::from_secs(1)),
            ..Facts::default()
        };
        assert_eq!(p.interval(&eager_server), (5 * MIN, Reason::Adaptive));
        let plan = p.plan(&eager_server, now(), 0.99);
        assert!(plan.next_poll_at - now() >= chrono::Duration::minutes(5));
    }

    #[test]
    fn a_server_hint_longer_than_the_adaptive_interval_wins_but_not_over_the_ceiling() {
        let p = policy();
        let facts = Facts {
            adaptive: Some(10 * MIN),
            server_hint: Some(2 * HOUR),
            ..Facts::default()
        };
        assert_eq!(p.interval(&facts), (2 * HOUR, Reason::ServerHint));
        let week = Facts {
            server_hint: Some(7 * 24 * HOUR),
            ..Facts::default()
        };
        assert_eq!(p.interval(&week).0, 24 * HOUR);
    }

    #[test]
    fn backoff_doubles_per_failure_caps_and_resets() {
        let p = Policy {
            max_backoff: 8 * HOUR,
            ..policy()
        };
        let wait = |failures| {
            let facts = Facts {
                configured: Some(HOUR),
                failures,
                ..Facts::default()
            };
            (p.plan(&facts, now(), 0.0).next_poll_at - now()).num_hours()
        };
        assert_eq!(
            [wait(0), wait(1), wait(2), wait(3), wait(4), wait(40)],
            [1, 2, 4, 8, 8, 8]
        );
        let facts = Facts {
            configured: Some(HOUR),
            failures: 2,
            ..Facts::default()
        };
        assert_eq!(p.plan(&facts, now(), 0.0).reason, Reason::Backoff);
    }

    #[test]
    fn retry_after_delays_the_next_poll_but_an_absurd_one_is_ignored() {
        let p = policy();
        let later = now() + chrono::Duration::hours(6);
        let facts = Facts {
            failures: 1,
            retry_after: Some(later),
            ..Facts::default()
        };
        let plan = p.plan(&facts, now(), 0.5);
        assert_eq!(
            (plan.next_poll_at, plan.reason),
            (later, Reason::RetryAfter)
        );
        let absurd = Facts {
            failures: 1,
            retry_after: Some(now() + chrono::Duration::days(400)),
            ..Facts::default()
        };
        assert_eq!(p.plan(&absurd, now(), 0.0).reason, Reason::Backoff);
    }

    #[test]
    fn jitter_only_ever_delays() {
        let p = policy();
        let facts = Facts::default();
        let earliest = p.plan(&facts, now(), 0.0).next_poll_at;
        let latest = p.plan(&facts, now(), 0.999).next_poll_at;
        assert_eq!(earliest - now(), chrono::Duration::minutes(30));
        assert!(latest > earliest && latest - earliest <= chrono::Duration::minutes(3));
    }

    fn feed_published_every(gap: chrono::Duration, count: i32) -> ParsedFeed {
        ParsedFeed {
            entries: (1..=count)
                .map(|i| ParsedEntry {
                    published_at: Some(now() - gap * i),
                    ..ParsedEntry::default()
                })
                .collect(),
            ..ParsedFeed::default()
        }
    }

    #[test]
    fn an_hourly_feed_is_polled_more_often_than_a_weekly_one() {
        let hourly = publishing_interval(
            &feed_published_every(chrono::Duration::hours(1), 20),
            now(),
            24 * HOUR,
        )
        .unwrap();
        let weekly = publishing_interval(
            &feed_published_every(chrono::Duration::days(7), 4),
            now(),
            24 * HOUR,
        )
        .unwrap();
        assert_eq!(hourly, 30 * MIN);
        assert!(weekly > 2 * 24 * HOUR, "{weekly:?}");
        assert_eq!(
            policy()
                .interval(&Facts {
                    adaptive: Some(weekly),
                    ..Facts::default()
                })
                .0,
            24 * HOUR
        );
        let stale = feed_published_every(chrono::Duration::days(100), 3);
        assert_eq!(
            publishing_interval(&stale, now(), 24 * HOUR),
            Some(24 * HOUR)
        );
        assert_eq!(
            publishing_interval(&ParsedFeed::default(), now(), 24 * HOUR),
            None
        );
    }
}
