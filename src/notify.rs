//! Delivering alerts: outbox rows → webhook POSTs, with retries.
//!
//! Each alert is a JSON POST of [`AlertPayload`] with an `Idempotency-Key` header (the same on
//! every attempt) and, when the target has a `secret`, an `X-Feedhound-Signature: sha256=<hex>`
//! HMAC of the body. Anything but a 2xx answer is a failure, retried after `retry_delay`
//! doubling per attempt up to [`MAX_RETRY_DELAY`]. Alerts are never dropped: the outbox row stays
//! until a delivery succeeds, across restarts and crashes.
//!
//! Targets are independent: each has a delivery loop of its own. A target found down (no answer,
//! or 429/502/503/504) rests, for `retry_delay` doubling with each round in a row that finds it
//! down (or as long as its Retry-After asks, up to [`MAX_RETRY_DELAY`]), so a dead webhook costs
//! one timeout per rest, not one per queued alert. Rests are recorded in the database, so a
//! restart, a config reload or the next `feedhound poll` does not knock on a dead target again
//! before its time. Any other answer proves the target is up; a refused alert only waits for its
//! own retry, so an alert the receiver chokes on never holds the others back for long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, NotifyConfig};
use crate::fetch::{parse_retry_after, redact};
use crate::store::writer::StoreWriter;
use crate::store::{PendingAlert, TargetRest};

/// Longest wait between two attempts: a target that was down for a day gets its alerts
/// within the hour after it comes back.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// A webhook that takes longer than this is treated as failed (and retried).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);
/// Alerts handled per round; bounds the memory of payloads in flight.
const BATCH: usize = 50;

/// Why one POST failed.
#[derive(Debug)]
struct DeliveryFailure {
    /// No answer (connection refused or reset, timeout), or 429/502/503/504: the target's other
    /// alerts would fail too. Any other answer (a 400, a 500) may be about this payload alone.
    target_down: bool,
    /// When a 429 or 503 said to come back (`Retry-After`).
    retry_after: Option<DateTime<Utc>>,
    message: String,
}

/// Totals of one delivery round.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub delivered: usize,
    pub failed: usize,
}

pub struct Notifier {
    client: reqwest::Client,
    targets: HashMap<String, NotifyConfig>,
    writer: StoreWriter,
    /// Targets found down, by name: the database's `alert_target_rests`, read once per
    /// [`Notifier::run`] or [`Notifier::deliver_due`] and written through on every change.
    rests: Mutex<HashMap<String, TargetRest>>,
}

impl Notifier {
    /// None when the config names no target: there is nothing to deliver, and an HTTP client
    /// costs milliseconds to build (it loads the system's root certificates).
    pub fn new(config: &Config, writer: StoreWriter) -> anyhow::Result<Option<Notifier>> {
        if config.notify.is_empty() {
            return Ok(None);
        }
        let client = reqwest::Client::builder()
            .user_agent(&config.polling.user_agent)
            .timeout(DELIVERY_TIMEOUT)
            // A webhook that redirects is misconfigured or hijacked; do not follow it.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot set up the HTTP client for alerts")?;
        Ok(Some(Notifier {
            client,
            targets: config
                .notify
                .iter()
                .map(|t| (t.name.clone(), t.clone()))
                .collect(),
            writer,
            rests: Mutex::new(HashMap::new()),
        }))
    }

    /// Takes up the rests recorded by earlier runs. If the database cannot say, every target
    /// is tried once more, as after a fresh start.
    async fn recall_rests(&self) {
        match self.writer.call(|store| store.target_rests()).await {
            Ok(rests) => *self.lock_rests() = rests,
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "cannot read which alert targets are resting")
            }
        }
    }

    fn lock_rests(&self) -> std::sync::MutexGuard<'_, HashMap<String, TargetRest>> {
        self.rests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When `target` may be tried again, if it is resting now.
    fn resting_until(&self, target: &str) -> Option<DateTime<Utc>> {
        self.lock_rests()
            .get(target)
            .map(|rest| rest.until)
            .filter(|until| *until > Utc::now())
    }

    /// Rests `target` for `retry_delay` doubled per round in a row that found it down, or until
    /// `asked` (its Retry-After) if that is later; neither beyond [`MAX_RETRY_DELAY`].
    fn rest(&self, target: &NotifyConfig, asked: Option<DateTime<Utc>>) -> TargetRest {
        let mut rests = self.lock_rests();
        let down_rounds = rests.get(&target.name).map_or(0, |r| r.down_rounds) + 1;
        let now = Utc::now();
        let doubled = now + to_chrono(retry_delay(target.retry_delay, down_rounds - 1));
        let longest = now + to_chrono(MAX_RETRY_DELAY.max(target.retry_delay));
        let until = asked.map_or(doubled, |asked| asked.max(doubled).min(longest));
        let rest = TargetRest { down_rounds, until };
        rests.insert(target.name.clone(), rest);
        rest
    }

    /// Rests `target` (see [`Notifier::rest`]) and records it, so that the next run keeps to it.
    async fn rest_and_record(
        &self,
        target: &NotifyConfig,
        asked: Option<DateTime<Utc>>,
        reason: String,
    ) -> TargetRest {
        let rest = self.rest(target, asked);
        let name = target.name.clone();
        if let Err(err) = self
            .writer
            .call(move |store| store.rest_target(&name, rest, &reason))
            .await
        {
            tracing::warn!(target = %target.name, error = %format!("{err:#}"), "cannot record that the alert target rests; a restart will try it at once");
        }
        rest
    }

    async fn target_is_up(&self, target: &str) -> anyhow::Result<()> {
        if self.lock_rests().remove(target).is_none() {
            return Ok(());
        }
        let name = target.to_owned();
        self.writer
            .call(move |store| store.target_answered(&name))
            .await
    }

    /// Attempts the alerts that are due now, once each, except for targets resting after being
    /// found down. Targets are served side by side, so one that hangs until [`DELIVERY_TIMEOUT`]
    /// delays only its own alerts. Alerts of targets no longer configured stay queued until the
    /// target comes back. A target whose round fails on the database does not keep the others'
    /// rounds from finishing; the first such error is returned once they have.
    pub async fn deliver_due(&self) -> anyhow::Result<Delivered> {
        self.recall_rests().await;
        let rounds = self.targets.values().map(|target| async move {
            let round = self.deliver_due_to(target).await;
            round.with_context(|| format!("cannot deliver the alerts for {}", target.name))
        });
        let mut totals = Delivered::default();
        let mut first_error = None;
        for round in join_all(rounds).await {
            match round {
                Ok(round) => {
                    totals.delivered += round.delivered;
                    totals.failed += round.failed;
                }
                Err(err) => {
                    tracing::error!(error = %format!("{err:#}"), "alert delivery round failed");
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            None => Ok(totals),
            Some(err) => Err(err.context(format!(
                "{} alerts were delivered, {} failed, before this error",
                totals.delivered, totals.failed
            ))),
        }
    }

    /// One target's due alerts, oldest first, until it is found down.
    async fn deliver_due_to(&self, target: &NotifyConfig) -> anyhow::Result<Delivered> {
        let mut totals = Delivered::default();
        if self.resting_until(&target.name).is_some() {
            return Ok(totals);
        }
        let only_this = vec![target.name.clone()];
        loop {
            let names = only_this.clone();
            let due: Vec<PendingAlert> = self
                .writer
                .call(move |store| store.due_alerts(Utc::now(), &names, BATCH))
                .await?;
            if due.is_empty() {
                return Ok(totals);
            }
            let before = totals;
            for alert in due {
                let id = alert.id;
                let Err(failure) = self.post(target, &alert).await else {
                    self.target_is_up(&target.name).await?;
                    self.writer
                        .call(move |store| store.alert_delivered(id, Utc::now()))
                        .await?;
                    tracing::info!(target = %target.name, story = alert.payload.story.id, "alert delivered");
                    totals.delivered += 1;
                    continue;
                };
                totals.failed += 1;
                let delay = retry_delay(target.retry_delay, alert.attempts);
                let retry_at = Utc::now() + to_chrono(delay);
                let DeliveryFailure {
                    target_down,
                    retry_after,
                    message,
                } = failure;
                tracing::warn!(target = %target.name, story = alert.payload.story.id, error = %message, retry_in = ?delay, "alert delivery failed");
                let reason = message.clone();
                self.writer
                    .call(move |store| store.alert_failed(id, &message, retry_at))
                    .await?;
                if !target_down {
                    self.target_is_up(&target.name).await?;
                    continue;
                }
                // Each of its other alerts would wait for the same answer in turn.
                let rest = self.rest_and_record(target, retry_after, reason).await;
                tracing::info!(target = %target.name, until = %rest.until, "target is down; its alerts wait until it has rested");
                return Ok(totals);
            }
            // Failed alerts are not due again in this round; stop once a round made no progress.
            if totals.delivered == before.delivered {
                return Ok(totals);
            }
        }
    }

    async fn post(
        &self,
        target: &NotifyConfig,
        alert: &PendingAlert,
    ) -> Result<(), DeliveryFailure> {
        let failure = |target_down, message| DeliveryFailure {
            target_down,
            retry_after: None,
            message,
        };
        let body = serde_json::to_vec(&alert.payload)
            .map_err(|e| failure(false, format!("cannot encode the alert: {e}")))?;
        let mut request = self
            .client
            .post(target.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &alert.payload.idempotency_key);
        if let Some(secret) = &target.secret {
            request = request.header("X-Feedhound-Signature", signature(secret, &body));
        }
        let response = request.body(body).send().await.map_err(|e| {
            // reqwest's message names the URL, which may carry a token.
            let message = format!("cannot reach {}: {}", redact(&target.url), e.without_url());
            failure(true, message)
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let target_down = matches!(status.as_u16(), 429 | 502..=504);
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, Utc::now()));
        Err(DeliveryFailure {
            retry_after: retry_after.filter(|_| target_down),
            ..failure(
                target_down,
                format!("{} answered HTTP {status}", redact(&target.url)),
            )
        })
    }

    /// Delivers due alerts until `shutdown`, waking when `wake` is notified (new alerts were
    /// queued) or when the next retry is due. Each target has a loop of its own, so a POST that
    /// hangs holds back nothing but its target.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        self.recall_rests().await;
        let target_wakes: Vec<Notify> = self.targets.values().map(|_| Notify::new()).collect();
        let fan_out = async {
            loop {
                wake.notified().await;
                for target_wake in &target_wakes {
                    target_wake.notify_one();
                }
            }
        };
        let loops = join_all(
            self.targets
                .values()
                .zip(&target_wakes)
                .map(|(target, target_wake)| self.run_target(target, target_wake)),
        );
        // Cancelling a POST in flight is safe: the alert stays queued and is sent again.
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = fan_out => {}
            _ = loops => {}
        }
    }

    async fn run_target(&self, target: &NotifyConfig, wake: &Notify) {
        loop {
            if let Err(err) = self.deliver_due_to(target).await {
                tracing::error!(target = %target.name, error = %format!("{err:#}"), "alert delivery round failed");
                // Not recorded: the database just failed, and the next round must not spin.
                self.rest(target, None);
            }
            let name = vec![target.name.clone()];
            let next = self
                .writer
                .call(move |store| store.next_alert_time(&name))
                .await
                .ok()
                .flatten();
            // Alerts queued while the target rests wait with the rest: a wake-up does not end it.
            let wake_at = match (next, self.resting_until(&target.name)) {
                (Some(next), Some(until)) => Some(next.max(until)),
                (next, until) => next.or(until),
            };
            let sleep = wake_at
                .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(MAX_RETRY_DELAY)
                .max(Duration::from_millis(20));
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }
}

fn to_chrono(delay: Duration) -> chrono::Duration {
    chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1))
}

/// The wait before attempt number `attempts + 1`: doubling from `first`, capped.
fn retry_delay(first: Duration, attempts: u32) -> Duration {
    first
        .saturating_mul(1 << attempts.min(20))
        .min(MAX_RETRY_DELAY.max(first))
}

/// `sha256=<hex HMAC-SHA256 of body>`, as GitHub-style webhook receivers expect.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_caps() {
        let first = Duration::from_secs(30);
        assert_eq!(retry_delay(first, 0), Duration::from_secs(30));
        assert_eq!(retry_delay(first, 2), Duration::from_secs(120));
        assert_eq!(retry_delay(first, 30), MAX_RETRY_DELAY);
    }

    #[test]
    fn signature_matches_a_known_hmac() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
