//! Delivering alerts: outbox rows → webhook POSTs or emails, with retries.
//!
//! Each alert is a JSON POST of [`AlertPayload`], or of a chat message made from it for a Slack or
//! Discord target (`message`), or of an ntfy push notification (to the ntfy server's root, naming
//! the topic), or of a Telegram bot's message (to its `sendMessage`, naming the chat), or of a
//! Teams card, with an `Idempotency-Key` header (the same on every attempt) and, when the
//! target has a `secret`, an `X-Feedhound-Signature: sha256=<hex>` HMAC of the body; or
//! for an email target, a plain-text email through its SMTP server (`smtp`), whose `Message-ID`
//! is made from the same key. A target with a `digest` gets its alerts together at set times
//! (`digest`): as few POSTs or emails as hold them, delivered or failed as a whole, and split
//! into one per alert when the receiver refuses one.
//! Anything but a 2xx answer (for email, the server taking the message) is a failure, retried
//! after `retry_delay` doubling per attempt up to [`MAX_RETRY_DELAY`]. Alerts are never
//! dropped: the outbox row stays until a delivery succeeds, across restarts and crashes. Each
//! payload is read just before its attempt, so it names what its story names then, and an
//! alert withdrawn meanwhile (see `store::flags`) is skipped.
//!
//! Targets are independent: each has a delivery loop of its own. A target found down (no answer,
//! or 429/502/503/504; for email, any refusal before the message, or a temporary one of it)
//! rests, for `retry_delay` doubling with each round in a row that finds it down, or as long as
//! a 429's or 503's Retry-After asks (either capped by [`longest_wait`]), so a dead webhook
//! costs one timeout per rest, not one per queued alert. Rests live in the
//! database, read at the start of every round, so a restart, a config reload or the next
//! `feedhound poll` keeps to them; a rest belongs to the URL found down, so fixing the URL ends
//! it. Any other answer proves the target is up; a refused alert only waits for its own retry,
//! so an alert the receiver chokes on never holds the others back for long.

pub mod digest;
mod message;
mod smtp;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Delivery, Endpoint, NotifyConfig};
use crate::fetch::{looks_secret, origin_only, parse_retry_after, why_unanswered};
use crate::store::writer::StoreWriter;
use crate::store::{
    AlertPayload, AlertStory, DigestWindow, OutboxStatus, PendingAlert, RefusedRecipient,
    TargetRest,
};
use message::Sending;

/// Longest wait between two attempts: a target that was down for a day gets its alerts
/// within the hour after it comes back.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// A webhook that takes longer than this is treated as failed (and retried); SMTP has deadlines
/// of its own (`smtp`).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);
/// Alerts whose ids one round reads; each payload is read just before its attempt.
pub(crate) const BATCH: usize = 50;

/// Why one POST or email failed.
#[derive(Debug)]
struct DeliveryFailure {
    /// No answer (connection refused or reset, timeout), or 429/502/503/504, or for email any
    /// refusal before the message was sent: the target's other alerts would fail too. Any other
    /// answer (a 400, a 500, an email's content refused) may be about this payload alone.
    target_down: bool,
    /// When a 429 or 503 said to come back (`Retry-After`).
    retry_after: Option<DateTime<Utc>>,
    message: String,
}

/// What a target that took a POST or email said beyond taking it.
#[derive(Debug, Default)]
pub struct Taken {
    /// The recipients an email server refused while it took the email for the others.
    pub not_delivered_to: Vec<RefusedRecipient>,
}

/// Refused recipients on one line, the addresses of one reply together: `a, b (reply); c
/// (other reply)`. A relay refusing twenty recipients says so once, not twenty times.
pub fn refused_list(refused: &[RefusedRecipient]) -> String {
    let mut by_reply: Vec<(&str, Vec<&str>)> = Vec::new();
    for recipient in refused {
        match by_reply
            .iter_mut()
            .find(|(reply, _)| *reply == recipient.reply)
        {
            Some((_, addresses)) => addresses.push(&recipient.address),
            None => by_reply.push((&recipient.reply, vec![&recipient.address])),
        }
    }
    by_reply
        .iter()
        .map(|(reply, addresses)| format!("{} ({reply})", addresses.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Totals of one delivery round.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub delivered: usize,
    pub failed: usize,
}

pub struct Notifier {
    senders: Senders,
    targets: HashMap<String, NotifyConfig>,
    writer: StoreWriter,
}

/// What alerts leave through: one HTTP client for the webhooks, and a mailer per email target.
struct Senders {
    http: reqwest::Client,
    smtp: HashMap<String, smtp::Mailer>,
}

impl Senders {
    fn new(config: &Config, targets: &[NotifyConfig]) -> anyhow::Result<Senders> {
        let mut smtp = HashMap::new();
        for target in targets {
            if let Delivery::Email(email) = &target.delivery {
                smtp.insert(
                    target.name.clone(),
                    smtp::Mailer::new(email).with_context(|| {
                        format!("cannot set up the SMTP client for {}", target.name)
                    })?,
                );
            }
        }
        Ok(Senders {
            http: http_client(config)?,
            smtp,
        })
    }

    /// One POST or email to `target`.
    async fn send(
        &self,
        target: &NotifyConfig,
        sending: &Sending,
    ) -> Result<Taken, DeliveryFailure> {
        match &target.delivery {
            Delivery::Webhook {
                secret, endpoint, ..
            } => {
                post(&self.http, target, endpoint, secret.as_deref(), sending).await?;
                Ok(Taken::default())
            }
            Delivery::Email(email) => {
                let mailer = self
                    .smtp
                    .get(&target.name)
                    .expect("Senders::new sets up every email target's mailer");
                mailer.send(target, email, sending).await
            }
        }
    }

    /// Ends what `target`'s sends of a round kept open (an email target's session).
    async fn end_round(&self, target: &NotifyConfig) {
        if let Some(mailer) = self.smtp.get(&target.name) {
            mailer.end_session().await;
        }
    }
}

impl Notifier {
    /// None when the config names no target: there is nothing to deliver, and an HTTP client
    /// costs milliseconds to build (it loads the system's root certificates).
    pub fn new(config: &Config, writer: StoreWriter) -> anyhow::Result<Option<Notifier>> {
        if config.notify.is_empty() {
            return Ok(None);
        }
        Ok(Some(Notifier {
            senders: Senders::new(config, &config.notify)?,
            targets: config
                .notify
                .iter()
                .map(|t| (t.name.clone(), t.clone()))
                .collect(),
            writer,
        }))
    }

    /// When `target` may be tried again, if it is resting now.
    async fn resting_until(&self, target: &NotifyConfig) -> anyhow::Result<Option<DateTime<Utc>>> {
        let name = target.name.clone();
        let rest = self
            .writer
            .call(move |store| store.target_rest(&name))
            .await?;
        let now = Utc::now();
        Ok(rest
            .filter(|rest| rest.url_key == url_key(target) && rest.until > now)
            .map(|rest| rest.until))
    }

    /// Rests `target`, found down once more, and records why.
    async fn rest(
        &self,
        target: &NotifyConfig,
        asked: Option<DateTime<Utc>>,
        reason: String,
    ) -> anyhow::Result<TargetRest> {
        let (name, url_key, first) = (target.name.clone(), url_key(target), target.retry_delay);
        self.writer
            .call(move |store| {
                store.rest_target(&name, &url_key, &reason, |down_rounds| {
                    rest_until(first, down_rounds, asked, Utc::now())
                })
            })
            .await
    }

    /// `target` answered: it is up. Once per round (`answered`).
    async fn target_answered(
        &self,
        target: &NotifyConfig,
        answered: &mut bool,
    ) -> anyhow::Result<()> {
        if *answered {
            return Ok(());
        }
        let (name, url_key) = (target.name.clone(), url_key(target));
        self.writer
            .call(move |store| store.target_answered(&name, &url_key, Utc::now()))
            .await?;
        *answered = true;
        Ok(())
    }

    /// Attempts the alerts that are due now, once each, except for targets resting after being
    /// found down. Targets are served side by side, so one that hangs until [`DELIVERY_TIMEOUT`]
    /// delays only its own alerts. Alerts of targets no longer configured stay queued until the
    /// target comes back. A target whose round fails on the database does not keep the others'
    /// rounds from finishing; the first such error is returned once they have, with the other
    /// targets' totals.
    pub async fn deliver_due(&self) -> anyhow::Result<Delivered> {
        let rounds = self.targets.values().map(|target| async move {
            let round = self.deliver_due_to(target).await;
            round.with_context(|| format!("cannot deliver the alerts for {}", target.name))
        });
        let mut totals = Delivered::default();
        let mut first_error: Option<anyhow::Error> = None;
        for round in join_all(rounds).await {
            match round {
                Ok(round) => {
                    totals.delivered += round.delivered;
                    totals.failed += round.failed;
                }
                Err(err) if first_error.is_none() => first_error = Some(err),
                Err(err) => {
                    tracing::error!(error = %format!("{err:#}"), "alert delivery round failed")
                }
            }
        }
        match first_error {
            None => Ok(totals),
            Some(err) => Err(err.context(format!(
                "alerts for the other targets: {} delivered, {} failed",
                totals.delivered, totals.failed
            ))),
        }
    }

    /// One target's delivery round ([`Notifier::deliver_round`]), then the end of what it kept
    /// open, whether the round succeeded or not.
    async fn deliver_due_to(&self, target: &NotifyConfig) -> anyhow::Result<Delivered> {
        let round = self.deliver_round(target).await;
        self.senders.end_round(target).await;
        round
    }

    /// One target's due alerts, oldest first, until it is found down: a POST or email each, or
    /// for a digest target, as few as hold them.
    async fn deliver_round(&self, target: &NotifyConfig) -> anyhow::Result<Delivered> {
        let mut totals = Delivered::default();
        if self.resting_until(target).await?.is_some() {
            return Ok(totals);
        }
        let digest = digest_window(target, Utc::now());
        let mut answered = false;
        let only_this = vec![target.name.clone()];
        loop {
            let names = only_this.clone();
            let due = self
                .writer
                .call(move |store| store.due_alert_ids(Utc::now(), &names, digest, BATCH))
                .await?;
            if due.is_empty() {
                return Ok(totals);
            }
            let before = totals;
            let mut due = due.into_iter();
            // Each payload is read just before it is sent: a digest's together, before its first.
            let take = if target.digest.is_some() { BATCH } else { 1 };
            loop {
                let ids: Vec<i64> = due.by_ref().take(take).collect();
                if ids.is_empty() {
                    break;
                }
                let alerts = self
                    .writer
                    .call(move |store| {
                        // None: withdrawn, or delivered by another process meanwhile.
                        ids.iter()
                            .filter_map(|&id| store.waiting_alert(id).transpose())
                            .collect::<anyhow::Result<Vec<_>>>()
                    })
                    .await?;
                let mut sendings: VecDeque<_> = posts(target, alerts, false).into();
                while let Some((alerts, sending)) = sendings.pop_front() {
                    let count = alerts.len();
                    let stories: Vec<i64> = alerts.iter().map(|a| a.payload.story.id).collect();
                    let sent = match sending {
                        Ok(sending) => self.senders.send(target, &sending).await,
                        Err(message) => Err(DeliveryFailure {
                            target_down: false,
                            retry_after: None,
                            message,
                        }),
                    };
                    let failure = match sent {
                        Ok(taken) => {
                            let refused = taken.not_delivered_to;
                            self.writer
                                .call(move |store| {
                                    store.alerts_delivered(&alerts, Utc::now(), &refused)
                                })
                                .await?;
                            tracing::info!(target = %target.name, ?stories, "alerts delivered");
                            totals.delivered += count;
                            self.target_answered(target, &mut answered).await?;
                            continue;
                        }
                        Err(failure) => failure,
                    };
                    let DeliveryFailure {
                        target_down,
                        retry_after,
                        message,
                    } = failure;
                    if !target_down && count > 1 {
                        // The receiver answered but refused the digest: an alert it chokes on (or
                        // a body too large) must not hold the others back, so each goes alone.
                        tracing::warn!(target = %target.name, ?stories, error = %message, "digest refused; its alerts are tried one by one");
                        self.target_answered(target, &mut answered).await?;
                        for alone in posts(target, alerts, true).into_iter().rev() {
                            sendings.push_front(alone);
                        }
                        continue;
                    }
                    totals.failed += count;
                    // A digest's alerts stay together: all are retried when the latest of them
                    // would be.
                    let delay = alerts
                        .iter()
                        .map(|alert| retry_delay(target.retry_delay, alert.attempts))
                        .max()
                        .unwrap_or(target.retry_delay);
                    let retry_at = Utc::now() + to_chrono(delay);
                    tracing::warn!(target = %target.name, ?stories, error = %message, retry_in = ?delay, "alert delivery failed");
                    let reason = message.clone();
                    self.writer
                        .call(move |store| {
                            store.alerts_failed(&alerts, &message, Utc::now(), retry_at)
                        })
                        .await?;
                    if !target_down {
                        self.target_answered(target, &mut answered).await?;
                        continue;
                    }
                    // Each of its other alerts would wait for the same answer in turn.
                    let rest = self.rest(target, retry_after, reason).await?;
                    tracing::info!(target = %target.name, until = %rest.until, "target is down; its alerts wait until it has rested");
                    return Ok(totals);
                }
            }
            // Failed alerts are not due again in this round; stop once a round made no progress.
            if totals.delivered == before.delivered {
                return Ok(totals);
            }
        }
    }

    /// Delivers due alerts until `shutdown`, waking when `wake` is notified (alerts were queued,
    /// put back or made due) or when the next retry is due. Each target has a loop of its own,
    /// so a POST that hangs holds back nothing but its target.
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
        let mut failed_rounds: u32 = 0;
        loop {
            let sleep = match self.round_then_next_wake(target).await {
                Ok(wake_at) => {
                    failed_rounds = 0;
                    wake_at
                        .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                        .unwrap_or(MAX_RETRY_DELAY)
                }
                Err(err) => {
                    tracing::error!(target = %target.name, error = %format!("{err:#}"), "alert delivery round failed");
                    // The database failed, not the target: wait without recording a rest (a new
                    // alert still wakes the loop early, as it would an idle one).
                    failed_rounds = u32::saturating_add(failed_rounds, 1);
                    retry_delay(target.retry_delay, failed_rounds - 1)
                }
            };
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(sleep.max(Duration::from_millis(20))) => {}
            }
        }
    }

    /// Delivers what is due to `target`; then when its next alert is due, or its rest ends if
    /// that is later (alerts queued meanwhile wait with the rest: a wake-up does not end it).
    async fn round_then_next_wake(
        &self,
        target: &NotifyConfig,
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        self.deliver_due_to(target).await?;
        let name = vec![target.name.clone()];
        let digest = digest_window(target, Utc::now());
        let next = self
            .writer
            .call(move |store| store.next_alert_time(&name, digest))
            .await?;
        Ok(match (next, self.resting_until(target).await?) {
            (Some(next), Some(until)) => Some(next.max(until)),
            (next, until) => next.or(until),
        })
    }
}

/// Sends a test alert to `target` (`feedhound alerts --send-test`), to check its URL, its
/// secret or login and the receiver's handling without waiting for a story: a story with id 0 and no
/// company or source, marked `"test": true`. Nothing is stored. Errs with what went wrong when
/// it was not taken; what a target that took it refused (an email's recipients) is for the
/// caller to judge.
pub async fn send_test_alert(config: &Config, target: &NotifyConfig) -> anyhow::Result<Taken> {
    let now = Utc::now();
    let payload = AlertPayload {
        // Its own each time, so a receiver that drops repeats takes every test.
        idempotency_key: format!(
            "test-{}-{}",
            std::process::id(),
            now.timestamp_nanos_opt().unwrap_or_default()
        ),
        story: AlertStory {
            id: 0,
            title: Some(format!("feedhound test alert for {}", target.name)),
            link: None,
            published_at: None,
            first_seen_at: crate::store::sql_time(now),
        },
        newly_named: None,
        companies: Vec::new(),
        sources: Vec::new(),
        test: true,
    };
    let sending = message::alone(target.delivery.format(), target.digest.is_some(), &payload)
        .context("cannot encode the test alert")?;
    let senders = Senders::new(config, std::slice::from_ref(target))?;
    let sent = senders.send(target, &sending).await;
    senders.end_round(target).await;
    sent.map_err(|failure| anyhow::anyhow!(failure.message))
        .with_context(|| format!("the test alert to {} failed", target.name))
}

/// The client alerts go out with.
fn http_client(config: &Config) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(&config.polling.user_agent)
        .timeout(DELIVERY_TIMEOUT)
        // A webhook that redirects is misconfigured or hijacked; do not follow it.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot set up the HTTP client for alerts")
}

/// The POSTs that carry `alerts` to `target`, each with the alerts it carries: one each, or
/// for a digest target, as few as hold them unless `each_alone`. A body that cannot be written
/// is an error for its alerts, recorded as a failed attempt.
fn posts(
    target: &NotifyConfig,
    mut alerts: Vec<PendingAlert>,
    each_alone: bool,
) -> Vec<(Vec<PendingAlert>, Result<Sending, String>)> {
    let cannot_encode = |err: serde_json::Error| format!("cannot encode the alert: {err}");
    if each_alone || target.digest.is_none() {
        return alerts
            .into_iter()
            .map(|alert| {
                let sending = message::alone(
                    target.delivery.format(),
                    target.digest.is_some(),
                    &alert.payload,
                );
                (vec![alert], sending.map_err(cannot_encode))
            })
            .collect();
    }
    let payloads: Vec<&AlertPayload> = alerts.iter().map(|alert| &alert.payload).collect();
    match message::digest(target.delivery.format(), &payloads) {
        Err(err) => vec![(alerts, Err(cannot_encode(err)))],
        Ok(parts) => parts
            .into_iter()
            .map(|(count, sending)| {
                let after = alerts.split_off(count);
                (std::mem::replace(&mut alerts, after), Ok(sending))
            })
            .collect(),
    }
}

/// Where `now` falls among each digest target's times, by name, for `feedhound alerts`.
pub fn digest_windows(config: &Config, now: DateTime<Utc>) -> HashMap<String, DigestWindow> {
    config
        .notify
        .iter()
        .filter_map(|target| Some((target.name.clone(), digest_window(target, now)?)))
        .collect()
}

/// Where now falls among `target`'s digest times; None when it takes each alert as it comes.
fn digest_window(target: &NotifyConfig, now: DateTime<Utc>) -> Option<DigestWindow> {
    target.digest.as_ref().map(|digest| digest.window(now))
}

/// One POST to `target`, through `endpoint`.
async fn post(
    client: &reqwest::Client,
    target: &NotifyConfig,
    endpoint: &Endpoint,
    secret: Option<&str>,
    sending: &Sending,
) -> Result<(), DeliveryFailure> {
    let failure = |target_down, message| DeliveryFailure {
        target_down,
        retry_after: None,
        message,
    };
    let (url, body) = framed_post(target, endpoint, sending);
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", &sending.idempotency_key);
    if let Some(secret) = secret {
        request = request.header("X-Feedhound-Signature", signature(secret, &body));
    }
    let response = request.body(body).send().await.map_err(|err| {
        let message = format!(
            "cannot reach {}: {}",
            origin_only(&target.url),
            why_unanswered(err)
        );
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
    let (reason, asked_seconds) = refusal(target, endpoint, &refusal_body(response).await);
    let retry_after = retry_after.or_else(|| {
        let seconds = chrono::TimeDelta::try_seconds(i64::try_from(asked_seconds?).ok()?)?;
        Utc::now().checked_add_signed(seconds)
    });
    let reason = reason
        .map(|reason| format!(": {reason}"))
        .unwrap_or_default();
    Err(DeliveryFailure {
        // The statuses that carry it (RFC 9110 for 503, RFC 6585 for 429); behind a 502 or
        // 504 it is a proxy's, not the receiver's.
        retry_after: retry_after.filter(|_| matches!(status.as_u16(), 429 | 503)),
        ..failure(
            target_down,
            format!(
                "{} answered HTTP {status}{reason}",
                origin_only(&target.url)
            ),
        )
    })
}

/// Where a POST of `sending` to `target` goes, and its body: the body to the target's own URL,
/// or framed as the API `endpoint` names takes it.
fn framed_post(
    target: &NotifyConfig,
    endpoint: &Endpoint,
    sending: &Sending,
) -> (reqwest::Url, Vec<u8>) {
    match endpoint {
        Endpoint::Url | Endpoint::Teams => (target.url.clone(), sending.body.clone()),
        // ntfy takes JSON at its root, naming the topic; the topic's own URL would take the
        // whole body as the message's text.
        Endpoint::Ntfy(topic) => {
            let framed = serde_json::json!({
                "topic": topic.name,
                "title": sending.subject,
                "message": String::from_utf8_lossy(&sending.body),
                "click": sending.click,
                "tags": ["newspaper"],
            });
            (topic.root.clone(), framed.to_string().into_bytes())
        }
        Endpoint::Telegram(chat) => {
            let preview = match &sending.click {
                Some(link) => serde_json::json!({ "url": link }),
                None => serde_json::json!({ "is_disabled": true }),
            };
            let mut framed = serde_json::json!({
                "chat_id": chat.chat_id,
                "text": String::from_utf8_lossy(&sending.body),
                "parse_mode": "HTML",
                "link_preview_options": preview,
            });
            if let Some(thread) = chat.thread {
                framed["message_thread_id"] = thread.into();
            }
            (chat.send_message.clone(), framed.to_string().into_bytes())
        }
    }
}

/// Why a target refused a POST, from the start of its answer's `body`, with what would give
/// the target's secret away taken out; and how many seconds it asked to wait, when it says
/// so in the body, as the Bot API does.
fn refusal(
    target: &NotifyConfig,
    endpoint: &Endpoint,
    body: &str,
) -> (Option<String>, Option<u64>) {
    match endpoint {
        Endpoint::Url => (refusal_reason(body, &target.url), None),
        // On a public ntfy server the topic is the password; an error may quote it.
        Endpoint::Ntfy(topic) => {
            let reason = refusal_reason(body, &target.url);
            (reason.map(|reason| reason.replace(&topic.name, "…")), None)
        }
        // `{"ok": false, "description": "Bad Request: chat not found", "parameters":
        // {"retry_after": 30}}`; a proxy's page in front of it is read as any other.
        Endpoint::Telegram(chat) => {
            let answer: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            let description = answer["description"]
                .as_str()
                .map(|description| one_line(description, REASON_CHARS))
                .filter(|description| !description.is_empty());
            let reason = description
                .or_else(|| refusal_reason(body, &chat.send_message))
                .map(|reason| reason.replace(&chat.token, "…"));
            (reason, answer["parameters"]["retry_after"].as_u64())
        }
        // A workflow's trigger answers `{"error": {"code": "…", "message": "…"}}`; a
        // proxy's page, or an answer cut where it is read, is read as any other.
        Endpoint::Teams => {
            let answer: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            let error = &answer["error"];
            let said = [&error["code"], &error["message"]]
                .iter()
                .filter_map(|part| part.as_str())
                .collect::<Vec<_>>()
                .join(": ");
            let reason = match one_line(&said, REASON_BYTES) {
                said if said.is_empty() => refusal_reason(body, &target.url),
                said => Some(without_url_secrets(said, &target.url)),
            };
            (reason, None)
        }
    }
}

/// Longest reason for a refusal shown, in characters, and what is read of its body for it.
const REASON_CHARS: usize = 200;
const REASON_BYTES: usize = REASON_CHARS * 4;

/// The start of a refusal's body: enough for its reason.
async fn refusal_body(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    // A receiver that stalls its body has said all it will: the status.
    let read = async {
        while bytes.len() < REASON_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
    bytes.truncate(REASON_BYTES);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The start of a refusal's body, on one line, unless it is a web page: chat services and most
/// webhook receivers say there what they refused (Slack's `invalid_token`, `no_service`). The
/// target's path is taken out, as an error page may echo it and it is often the credential.
fn refusal_reason(text: &str, url: &reqwest::Url) -> Option<String> {
    // Judged by the body, not its type: Slack sends its plain-word reasons as text/html.
    let start = text
        .trim_start()
        .get(..9)
        .unwrap_or_default()
        .to_ascii_lowercase();
    if start.starts_with("<!doctype") || start.starts_with("<html") {
        return None;
    }
    let reason = without_url_secrets(one_line(text, REASON_BYTES), url);
    (!reason.is_empty()).then_some(reason)
}

/// A receiver's `reason`, at most [`REASON_CHARS`] long, with the path and query of the
/// target's `url` taken out, and each value of its query that names a secret (a workflow's
/// `sig`), as written or decoded, as an error may quote it alone.
fn without_url_secrets(mut reason: String, url: &reqwest::Url) -> String {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    let query = url.query().unwrap_or_default();
    let mut secrets = vec![(url.path().to_owned(), 2), (query.to_owned(), 2)];
    for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
        if looks_secret(&decode(key)) {
            // A short value (`?auth=on`) would take letters out of words.
            secrets.extend([(value.to_owned(), 8), (decode(value), 8)]);
        }
    }
    for (secret, least) in secrets {
        if secret.len() >= least {
            reason = reason.replace(&secret, "…");
        }
    }
    reason.chars().take(REASON_CHARS).collect()
}

/// A receiver's words on one line, as `alerts` and the log show them: runs of spaces, line
/// breaks and characters that hide or reorder text made one space; at most `most_chars` long.
fn one_line(text: &str, most_chars: usize) -> String {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c.is_control() || hides_or_reorders_text(c))
        .filter(|word| !word.is_empty())
        .collect();
    words.join(" ").chars().take(most_chars).collect()
}

/// Characters that reorder or hide text (bidirectional overrides, zero-width marks): in a
/// receiver's words they could make the `alerts` table or a log line read as something else.
pub(crate) fn hides_or_reorders_text(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// Which URL a rest belongs to, without writing the URL (and the secret it may hold) down. An
/// SMTP server's is its address and user, not its password: a person's password, unlike a
/// webhook's random token, could be guessed from a hash of it.
fn url_key(target: &NotifyConfig) -> String {
    let identity = match &target.delivery {
        Delivery::Webhook { .. } => target.url.to_string(),
        Delivery::Email(email) => format!(
            "{} {:?} {}",
            target.shown_url(),
            email.tls,
            email.login.as_ref().map_or("", |(user, _)| user.as_str())
        ),
    };
    blake3::hash(identity.as_bytes()).to_hex()[..32].to_owned()
}

/// Leaves in `status` only the refused recipients that their target's `to` still lists: once
/// the user has fixed an address (or removed the target), `feedhound alerts` no longer asks
/// for it to be fixed, though no email has gone out since.
pub fn keep_unfixed_refusals(config: &Config, status: &mut [OutboxStatus]) {
    for target in status {
        let listed: Vec<String> = config
            .notify
            .iter()
            .filter(|configured| configured.name == target.target)
            .filter_map(|configured| match &configured.delivery {
                Delivery::Email(email) => Some(&email.to),
                Delivery::Webhook { .. } => None,
            })
            .flatten()
            .map(|recipient| recipient.email.to_string())
            .collect();
        if let Some(refused) = &mut target.not_delivered_to {
            refused.retain(|r| listed.iter().any(|a| a.eq_ignore_ascii_case(&r.address)));
            if refused.is_empty() {
                target.not_delivered_to = None;
            }
        }
    }
}

/// Each configured target's name and the key of its URL, as the store's rests are matched by.
pub fn url_keys(config: &Config) -> HashMap<String, String> {
    config
        .notify
        .iter()
        .map(|target| (target.name.clone(), url_key(target)))
        .collect()
}

/// The end of a rest for a target found down `down_rounds` times in a row: `retry_delay`
/// (`first`) doubled per earlier round, or `asked` by its Retry-After if later; at most
/// [`longest_wait`] from `now`.
fn rest_until(
    first: Duration,
    down_rounds: u32,
    asked: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let doubled = now + to_chrono(retry_delay(first, down_rounds.saturating_sub(1)));
    let longest = now + to_chrono(longest_wait(first));
    asked.map_or(doubled, |asked| asked.max(doubled).min(longest))
}

fn to_chrono(delay: Duration) -> chrono::Duration {
    chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1))
}

/// The wait before attempt number `attempts + 1`: doubling from `first`, capped.
fn retry_delay(first: Duration, attempts: u32) -> Duration {
    first
        .saturating_mul(1 << attempts.min(20))
        .min(longest_wait(first))
}

/// The cap on any wait: [`MAX_RETRY_DELAY`], unless the target's own `retry_delay` is longer.
fn longest_wait(first: Duration) -> Duration {
    MAX_RETRY_DELAY.max(first)
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
    fn refused_recipients_of_one_reply_are_listed_together() {
        let refused = |address: &str, reply: &str| RefusedRecipient {
            address: address.to_owned(),
            reply: reply.to_owned(),
        };
        let list = [
            refused("a@example.com", "550 relaying denied"),
            refused("c@example.com", "552 mailbox full"),
            refused("b@example.com", "550 relaying denied"),
        ];
        assert_eq!(
            refused_list(&list),
            "a@example.com, b@example.com (550 relaying denied); c@example.com (552 mailbox full)"
        );
    }

    #[test]
    fn retry_delay_doubles_and_caps() {
        let first = Duration::from_secs(30);
        assert_eq!(retry_delay(first, 0), Duration::from_secs(30));
        assert_eq!(retry_delay(first, 2), Duration::from_secs(120));
        assert_eq!(retry_delay(first, 30), MAX_RETRY_DELAY);
    }

    #[test]
    fn a_rest_doubles_per_round_and_takes_a_longer_retry_after_up_to_the_cap() {
        let now = Utc::now();
        let first = Duration::from_secs(30);
        let at = |secs| now + chrono::Duration::seconds(secs);
        assert_eq!(rest_until(first, 1, None, now), at(30));
        assert_eq!(rest_until(first, 3, None, now), at(120));
        assert_eq!(rest_until(first, 1, Some(at(600)), now), at(600));
        assert_eq!(
            rest_until(first, 3, Some(at(60)), now),
            at(120),
            "shorter: ignored"
        );
        assert_eq!(
            rest_until(first, 1, Some(at(86_400)), now),
            at(3600),
            "capped"
        );
    }

    async fn reason_for(body: String) -> Option<String> {
        let hook = reqwest::Url::parse("https://hooks.example/services/T1/s3cr3t?key=k3y").unwrap();
        let response = reqwest::Response::from(hyper::Response::new(body));
        refusal_reason(&refusal_body(response).await, &hook)
    }

    #[tokio::test]
    async fn a_refusals_reason_is_its_first_words_on_one_line_without_the_hooks_secrets() {
        assert_eq!(
            reason_for("invalid_token\n".into()).await.as_deref(),
            Some("invalid_token")
        );
        assert_eq!(
            reason_for(
                "{\"error\": \"Not Found\",\n \"path\": \"/services/T1/s3cr3t?key=k3y\"}".into()
            )
            .await
            .as_deref(),
            Some("{\"error\": \"Not Found\", \"path\": \"…?…\"}")
        );
        assert_eq!(
            reason_for("  <!DOCTYPE html><html><body>Bad Gateway</body></html>".into()).await,
            None,
            "a web page is no reason"
        );
        assert_eq!(
            reason_for("no\u{202E}ecivres_on\u{200B}".into())
                .await
                .as_deref(),
            Some("no ecivres_on"),
            "nothing that reorders or hides text"
        );
        let long = reason_for("word ".repeat(10_000)).await.unwrap();
        assert_eq!(long.chars().count(), 200);
        assert_eq!(reason_for(String::new()).await, None);
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
