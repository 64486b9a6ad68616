//! Delivering alerts: outbox rows → webhook POSTs, with retries.
//!
//! Each alert is a JSON POST of [`AlertPayload`] with an `Idempotency-Key` header (the same on
//! every attempt) and, when the target has a `secret`, an `X-Feedhound-Signature: sha256=<hex>`
//! HMAC of the body. Anything but a 2xx answer is a failure, retried after `retry_delay`
//! doubling per attempt up to [`MAX_RETRY_DELAY`]. Alerts are never dropped: the outbox row stays
//! until a delivery succeeds, across restarts and crashes.
//!
//! Targets are independent: each round serves them concurrently, and a target found down (no
//! answer, or 429/502/503/504) has its other due alerts moved to the failed one's retry time, so a
//! dead webhook costs one timeout per retry, not one per queued alert.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, NotifyConfig};
use crate::fetch::redact;
use crate::store::PendingAlert;
use crate::store::writer::StoreWriter;

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
        }))
    }

    /// Attempts the alerts that are due now, once each; a target found down has its remaining
    /// ones deferred. Targets are served side by side, so one that hangs until
    /// [`DELIVERY_TIMEOUT`] delays only its own alerts. Alerts of targets no longer configured
    /// stay queued until the target comes back.
    pub async fn deliver_due(&self) -> anyhow::Result<Delivered> {
        let rounds = self
            .targets
            .values()
            .map(|target| self.deliver_due_to(target));
        let mut totals = Delivered::default();
        for round in join_all(rounds).await {
            let (round, _) = round?;
            totals.delivered += round.delivered;
            totals.failed += round.failed;
        }
        Ok(totals)
    }

    /// One target's due alerts, oldest first. When the target is found down, stops and returns
    /// when to try it again.
    async fn deliver_due_to(
        &self,
        target: &NotifyConfig,
    ) -> anyhow::Result<(Delivered, Option<DateTime<Utc>>)> {
        let mut totals = Delivered::default();
        let only_this = vec![target.name.clone()];
        loop {
            let names = only_this.clone();
            let due: Vec<PendingAlert> = self
                .writer
                .call(move |store| store.due_alerts(Utc::now(), &names, BATCH))
                .await?;
            if due.is_empty() {
                return Ok((totals, None));
            }
            let before = totals;
            for alert in due {
                let id = alert.id;
                let Err(failure) = self.post(target, &alert).await else {
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
                    message,
                } = failure;
                tracing::warn!(target = %target.name, story = alert.payload.story.id, error = %message, retry_in = ?delay, "alert delivery failed");
                let name = target.name.clone();
                let deferred = self
                    .writer
                    .call(move |store| {
                        store.alert_failed(id, &message, retry_at)?;
                        if target_down {
                            store.defer_alerts(&name, retry_at)
                        } else {
                            Ok(0)
                        }
                    })
                    .await?;
                if target_down {
                    // Each of its other alerts would wait for the same answer in turn.
                    if deferred > 0 {
                        tracing::info!(target = %target.name, deferred, retry_in = ?delay, "target is down; its other due alerts wait for the retry");
                    }
                    return Ok((totals, Some(retry_at)));
                }
            }
            // Failed alerts are not due again in this round; stop once a round made no progress.
            if totals.delivered == before.delivered {
                return Ok((totals, None));
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
        Err(failure(
            target_down,
            format!("{} answered HTTP {status}", redact(&target.url)),
        ))
    }

    /// Delivers due alerts until `shutdown`, waking when `wake` is notified (new alerts were
    /// queued) or when the next retry is due. Each target has a loop of its own, so a POST that
    /// hangs holds back nothing but its target.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
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
        // Set while the target is down (or the database failed): new alerts wait too, so the
        // backoff of a dead webhook keeps growing however many alerts arrive.
        let mut paused_until: Option<DateTime<Utc>> = None;
        loop {
            if paused_until.is_none_or(|until| until <= Utc::now()) {
                paused_until = match self.deliver_due_to(target).await {
                    Ok((_, down_until)) => down_until,
                    Err(err) => {
                        tracing::error!(target = %target.name, error = %format!("{err:#}"), "alert delivery round failed");
                        Some(Utc::now() + to_chrono(target.retry_delay))
                    }
                };
            }
            let name = vec![target.name.clone()];
            let next = self
                .writer
                .call(move |store| store.next_alert_time(&name))
                .await
                .ok()
                .flatten();
            let wake_at = match (next, paused_until) {
                (Some(next), Some(until)) => Some(next.max(until)),
                (next, _) => next,
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
