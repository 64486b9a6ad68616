//! The optional HTTP endpoint (`[server] listen`): `/metrics` for Prometheus, `/healthz` for
//! whatever restarts the daemon, and `/mentions.atom`, the flagged stories as a feed (see
//! [`crate::atom`]) for a reader to follow.
//!
//! Built on hyper 1 (already compiled for reqwest's client) with only its HTTP/1 server added:
//! three read-only routes need no framework. Metrics and health reach the database through the
//! [`StoreWriter`], with a deadline: a writer stuck behind a lock is exactly what `/healthz`
//! must report, and it must never make a scrape hang. `/mentions.atom` reads on a read-only
//! connection of its own instead, so that readers never wait for or hold up the writer.
//!
//! `/healthz` answers 200 `ok` while both hold: the scheduler's heartbeat is fresh (see
//! [`Metrics::heartbeat`]) and a write to the database succeeds; otherwise 503 with the reason.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    ALLOW, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH, RETRY_AFTER,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::atom;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::writer::StoreWriter;

/// A client that has not sent its request headers by then is dropped (slow or idle clients
/// must not pile up connections).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The most stories `/mentions.atom?limit=` serves: a feed is read again and again, and a
/// larger one costs the database and the reader for little.
const MOST_STORIES: usize = 500;

/// `/mentions.atom` reads that run at once; more wait their turn within the deadline. Each
/// reads on a connection of its own, beside the daemon's writer, and one with a company reads
/// that company's whole history: readers asking together must not take the cores the poll
/// needs (two, on the machines measured).
const FEED_READS: usize = 1;

/// Seconds a reader turned away (another read under way, or the database slow) is asked to
/// wait before asking again.
const RETRY_FEED_AFTER: &str = "10";

/// When the endpoints give up on the database. Scrapers time out after 10 s by default
/// (Prometheus `scrape_timeout`), so stay well under it.
pub const DEFAULT_DATABASE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the endpoints read and how long they wait.
#[derive(Clone)]
pub struct Service {
    pub metrics: Arc<Metrics>,
    pub writer: StoreWriter,
    /// The database `/mentions.atom` reads, on a read-only connection of its own (not the
    /// writer's: a reader's question must not hold up the poll's writes).
    pub database: PathBuf,
    /// `/healthz` fails once the scheduler's last heartbeat is older than this; about twice
    /// the longest the scheduler sleeps between turns.
    pub heartbeat_stale_after: Duration,
    /// Longest wait for the database per request; the write probe waits half of it for locks.
    pub database_timeout: Duration,
}

/// Binds `addr`. Any address the user wrote is accepted, but one reachable from other
/// machines is worth a warning: the endpoints have no authentication.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the HTTP endpoint (metrics, health, flagged stories) listens beyond this machine, without authentication");
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (server.listen)"))?;
    tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "serving /metrics, /healthz and /mentions.atom");
    Ok(listener)
}

/// Serves until `shutdown`, then lets requests in progress finish.
pub async fn run(listener: TcpListener, service: Service, shutdown: CancellationToken) {
    let service = Arc::new(service);
    let feed_reads = Arc::new(Semaphore::new(FEED_READS));
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Usually out of file descriptors: wait rather than spin.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = Arc::clone(&service);
        let feed_reads = Arc::clone(&feed_reads);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let handler = hyper::service::service_fn(move |request| {
                let service = Arc::clone(&service);
                let feed_reads = Arc::clone(&feed_reads);
                async move { Ok::<_, Infallible>(service.handle(request, feed_reads).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), handler);
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                tracing::debug!(error = %err, "HTTP connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

impl Service {
    async fn handle(
        &self,
        request: Request<Incoming>,
        feed_reads: Arc<Semaphore>,
    ) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        match request.uri().path() {
            "/metrics" => {
                let mut response = text(StatusCode::OK, self.metrics_text().await);
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            "/healthz" => match self.health().await {
                Ok(()) => text(StatusCode::OK, "ok\n".into()),
                Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
            },
            "/mentions.atom" => self.mentions_feed(&request, feed_reads).await,
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /healthz or /mentions.atom\n".into(),
            ),
        }
    }

    /// `/mentions.atom`, as `feedhound mentions --format atom` writes it: `company` (a tracked
    /// company's name or alias, see [`Store::tracked_company`]) and `limit` (1 to
    /// [`MOST_STORIES`]; default [`atom::STORIES`]). Its ETag is its content's, so a reader
    /// asking again with it gets a 304 until a story changes. Read on a read-only connection
    /// of its own, one read at a time, and interrupted at the deadline (waiting for the turn
    /// included), so that no reader holds the database or the next reader past it.
    async fn mentions_feed(
        &self,
        request: &Request<Incoming>,
        feed_reads: Arc<Semaphore>,
    ) -> Response<Full<Bytes>> {
        let (company, limit) = match feed_question(request.uri().query().unwrap_or_default()) {
            Ok(question) => question,
            Err(why) => return text(StatusCode::BAD_REQUEST, format!("{why}\n")),
        };
        let deadline = tokio::time::Instant::now() + self.database_timeout;
        let Ok(Ok(permit)) = tokio::time::timeout_at(deadline, feed_reads.acquire_owned()).await
        else {
            return come_back("other reads of the flagged stories are under way");
        };
        let store = match Store::open_reader(&self.database, self.database_timeout) {
            Ok(store) => store,
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "cannot open the database for /mentions.atom");
                return come_back("cannot read the flagged stories; see the daemon's log");
            }
        };
        let interrupt = store.interrupt_handle();
        let asked = company.clone();
        let read = tokio::task::spawn_blocking(move || {
            // Released when the read ends, interrupted or not.
            let _permit = permit;
            store.in_one_snapshot(|store| {
                let company = match asked {
                    Some(name) => match store.tracked_company(&name)? {
                        Some(company) => Some(company),
                        None => return Ok(None),
                    },
                    None => None,
                };
                let stories =
                    store.flagged_stories(company.as_deref(), None, None, None, Some(limit))?;
                let (id, title) = atom::names(company.as_deref(), &[], &[]);
                Ok(Some(atom::feed(&id, &title, &stories)))
            })
        });
        let feed = match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(Ok(Some(feed)))) => feed,
            Ok(Ok(Ok(None))) => {
                let name = company.unwrap_or_default();
                return text(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no tracked company is named {name:?} (see [[company]] in the config)\n"
                    ),
                );
            }
            Ok(Ok(Err(err))) => {
                tracing::warn!(error = %format!("{err:#}"), "cannot read the flagged stories for /mentions.atom");
                return come_back("cannot read the flagged stories; see the daemon's log");
            }
            Ok(Err(panicked)) => {
                tracing::error!(error = %panicked, "the read for /mentions.atom panicked");
                return come_back("cannot read the flagged stories; see the daemon's log");
            }
            Err(_) => {
                interrupt.interrupt();
                return come_back("the database did not answer in time");
            }
        };
        let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(feed.as_bytes()));
        let mut response = if names_etag(request.headers(), &etag) {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else {
            let mut response = Response::new(Full::new(Bytes::from(feed)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/atom+xml; charset=utf-8"),
            );
            response
        };
        if let Ok(etag) = HeaderValue::from_str(&etag) {
            response.headers_mut().insert(ETAG, etag);
        }
        response
    }

    async fn metrics_text(&self) -> String {
        let gauges = tokio::time::timeout(
            self.database_timeout,
            self.writer.call(|store| store.service_gauges()),
        )
        .await;
        match gauges {
            Ok(Ok(gauges)) => self.metrics.render(Some(&gauges)),
            Ok(Err(err)) => {
                tracing::warn!(error = %format!("{err:#}"), "cannot read gauges for /metrics");
                self.metrics.render(None)
            }
            Err(_) => self.metrics.render(None),
        }
    }

    /// Why the daemon is unhealthy, if it is.
    async fn health(&self) -> Result<(), String> {
        match self.metrics.heartbeat_age() {
            None => return Err("unhealthy: the scheduler has not started".into()),
            Some(age) if age > self.heartbeat_stale_after => {
                return Err(format!(
                    "unhealthy: the scheduler last reported {:.0}s ago (stale after {:.0}s)",
                    age.as_secs_f64(),
                    self.heartbeat_stale_after.as_secs_f64()
                ));
            }
            Some(_) => {}
        }
        let wait = self.database_timeout / 2;
        let now = chrono::Utc::now();
        let probe = tokio::time::timeout(
            self.database_timeout,
            self.writer.call(move |store| store.probe_write(wait, now)),
        )
        .await;
        match probe {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(format!("unhealthy: the database is not writable: {err:#}")),
            Err(_) => Err(format!(
                "unhealthy: the database writer did not answer within {:.0}s",
                self.database_timeout.as_secs_f64()
            )),
        }
    }
}

/// The `company` and `limit` of a `/mentions.atom` query, or why it cannot be answered. Each
/// at most once; a company's name is trimmed (a `+` in a query is a space: write `%2B`).
fn feed_question(query: &str) -> Result<(Option<String>, usize), String> {
    let (mut company, mut limit) = (None, None);
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let repeated = || format!("{key} is given twice");
        match key.as_ref() {
            "company" => {
                let name = value.trim();
                if name.is_empty() {
                    return Err("company takes a tracked company's name".into());
                }
                if company.replace(name.to_owned()).is_some() {
                    return Err(repeated());
                }
            }
            "limit" => {
                let n = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MOST_STORIES).contains(n))
                    .ok_or_else(|| format!("limit takes a number from 1 to {MOST_STORIES}"))?;
                if limit.replace(n).is_some() {
                    return Err(repeated());
                }
            }
            other => return Err(format!("unknown parameter {other:?}: use company or limit")),
        }
    }
    Ok((company, limit.unwrap_or(atom::STORIES)))
}

/// Whether an `If-None-Match` of `headers` names `etag`: RFC 9110's weak comparison (a proxy
/// that compresses marks it `W/`), over every tag listed, or `*`.
fn names_etag(headers: &HeaderMap, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim() == "*" || opaque(tag) == opaque(etag))
}

/// 503 with `Retry-After`, for a question that can be answered later.
fn come_back(why: &str) -> Response<Full<Bytes>> {
    let mut response = text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{why}; try again later\n"),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_FEED_AFTER));
    response
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
