//! Fetch slots shared by every request feedhound makes to the feeds' servers (feed documents
//! and article pages alike): a global limit, a limit per host, and spacing between the starts
//! of two requests to one host (`[polling] concurrency`, `per_host_concurrency`,
//! `per_host_delay`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use url::Url;

use crate::config::Config;

/// Fetch slots: global and per host, plus per-host spacing of request starts. Shared across
/// config reloads that keep the same limits; when a reload changes them, fetches in flight
/// finish under the old ones.
pub struct Limits {
    concurrency: usize,
    global: Arc<Semaphore>,
    per_host: usize,
    per_host_delay: Duration,
    hosts: Mutex<HashMap<String, (Arc<Semaphore>, Instant)>>,
}

/// Held while a fetch is in flight.
pub struct Slot {
    _host: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        Limits {
            concurrency: config.polling.concurrency,
            global: Arc::new(Semaphore::new(config.polling.concurrency)),
            per_host: config.polling.per_host_concurrency,
            per_host_delay: config.polling.per_host_delay,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    pub fn matches(&self, config: &Config) -> bool {
        self.concurrency == config.polling.concurrency
            && self.per_host == config.polling.per_host_concurrency
            && self.per_host_delay == config.polling.per_host_delay
    }

    /// Waits for a slot for `host`. The host's slot is taken first: waiting on a busy host must
    /// not hold a global slot that another host could use.
    pub async fn acquire(&self, host: &str) -> anyhow::Result<Slot> {
        let host_slots = {
            let mut hosts = self.hosts.lock().expect("limits lock");
            let (slots, _) = hosts
                .entry(host.to_string())
                .or_insert_with(|| (Arc::new(Semaphore::new(self.per_host)), Instant::now()));
            Arc::clone(slots)
        };
        let host_permit = host_slots
            .acquire_owned()
            .await
            .context("host slots closed")?;
        let global_permit = Arc::clone(&self.global)
            .acquire_owned()
            .await
            .context("fetch slots closed")?;
        // Spacing is reserved only now, right before the request: reserved earlier, two
        // requests queued for a global slot could start back to back.
        if !self.per_host_delay.is_zero() {
            let start = {
                let mut hosts = self.hosts.lock().expect("limits lock");
                let next_start = &mut hosts.get_mut(host).expect("host entry exists").1;
                let start = (*next_start).max(Instant::now());
                *next_start = start + self.per_host_delay;
                start
            };
            tokio::time::sleep_until(start).await;
        }
        Ok(Slot {
            _host: host_permit,
            _global: global_permit,
        })
    }
}

/// The key [`Limits::acquire`] counts a URL's requests under: its host and port.
pub fn host_key(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}
