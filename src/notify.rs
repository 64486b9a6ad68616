//! Delivering alerts: outbox rows → webhook POSTs, with retries.
//!
//! Each alert is a JSON POST of [`AlertPayload`] with an `Idempotency-Key` header (the same on
//! every attempt) and, when the target has a `secret`, an `X-Feedhound-Signature: sha256=<hex>`
//! HMAC of the body. Anything but a 2xx answer is a failure, retried after `retry_delay`
//! doubling per attempt up to [`MAX_RETRY_DELAY`]. Alerts are never dropped: the outbox row stays
//! until a delivery succeeds, across restarts and crashes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
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

    /// Alerts of targets no longer configured stay queued until the target comes back.
    fn target_names(&self) -> Vec<String> {
        self.targets.keys().cloned().collect()
    }

    /// Attempts every alert that is due now, once.
    pub async fn deliver_due(&self) -> anyhow::Result<Delivered> {
        let mut totals = Delivered::default();
        loop {
            let targets = self.target_names();
            let due: Vec<PendingAlert> = self
                .writer
                .call(move |store| store.due_alerts(Utc::now(), &targets, BATCH))
                .await?;
            if due.is_empty() {
                return Ok(totals);
            }
            let before = totals;
            for alert in due {
                let target = &self.targets[&alert.target];
                match self.post(target, &alert).await {
                    Ok(()) => {
                        let id = alert.id;
                        self.writer
                            .call(move |store| store.alert_delivered(id, Utc::now()))
                            .await?;
                        tracing::info!(target = %target.name, story = alert.payload.story.id, "alert delivered");
                        totals.delivered += 1;
                    }
                    Err(error) => {
                        let delay = retry_delay(target.retry_delay, alert.attempts);
                        let retry_at = Utc::now()
                            + chrono::Duration::from_std(delay)
                                .unwrap_or(chrono::Duration::hours(1));
                        tracing::warn!(target = %target.name, story = alert.payload.story.id, %error, retry_in = ?delay, "alert delivery failed");
                        let id = alert.id;
                        self.writer
                            .call(move |store| store.alert_failed(id, &error, retry_at))
                            .await?;
                        totals.failed += 1;
                    }
                }
            }
            // Failed alerts are not due again in this round; stop once a round made no progress.
            if totals.delivered == before.delivered {
                return Ok(totals);
            }
        }
    }

    async fn post(&self, target: &NotifyConfig, alert: &PendingAlert) -> Result<(), String> {
        let body = serde_json::to_vec(&alert.payload)
            .map_err(|e| format!("cannot encode the alert: {e}"))?;
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
            format!("cannot reach {}: {}", redact(&target.url), e.without_url())
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{} answered HTTP {status}", redact(&target.url)))
        }
    }

    /// Delivers due alerts until `shutdown`, waking when `wake` is notified (new alerts were
    /// queued) or when the next retry is due.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        loop {
            // Cancelling a POST in flight is safe: the alert stays queued and is sent again.
            let round = tokio::select! {
                round = self.deliver_due() => round,
                () = shutdown.cancelled() => return,
            };
            if let Err(err) = round {
                tracing::error!(error = %format!("{err:#}"), "alert delivery round failed");
            }
            let targets = self.target_names();
            let next = self
                .writer
                .call(move |store| store.next_alert_time(&targets))
                .await
                .ok()
                .flatten();
            let sleep = next
                .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(MAX_RETRY_DELAY)
                .max(Duration::from_millis(20));
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }
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
