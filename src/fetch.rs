//! HTTP fetching of feed documents: one shared client, conditional GET, a whole-request deadline,
//! a cap on the decompressed body, and redirects followed by hand.
//!
//! Why redirects are followed here rather than by reqwest: the scheduler needs to know whether a
//! feed has *permanently* moved (every hop 301/308) so it can store the new URL, and each hop must
//! be checked for loops and for schemes other than http/https before anything is sent.
//!
//! Credentials in a feed URL (`https://user:pass@host/feed`) are sent as basic auth, to the
//! original origin only, and never printed: every message built here shows URLs through
//! [`redact`], and reqwest errors are stripped of their URL before they are described. A feed's
//! own headers ([`FeedHeaders`]: a token, a cookie) follow the same origin rule, and their values
//! are never printed either.
//!
//! Article pages (`articles`) are fetched the same way with an HTML `Accept`, and one more rule
//! ([`Fetcher::fetch_page`], [`network_guard`]): since the feed's publisher chose it, a link
//! never leads to this machine or its private network, by address or by host name, unless the
//! feed's own URL names that host there, or the user lifted the guard.
//!
//! Nothing here knows about SQL, parsing or the schedule; the caller gets a [`Fetched`] or a
//! [`FetchError`] it can branch on.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use percent_encoding::percent_decode_str;
use reqwest::StatusCode;
use reqwest::dns::Resolve;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use url::{Origin, Url};

use crate::config::PollingConfig;

mod certificate;
mod limits;
mod network_guard;

pub(crate) use certificate::refused_certificate;
pub use limits::{Limits, Slot, host_key};
pub use network_guard::is_local;

/// Redirects followed before giving up. Browsers follow 20 (the Fetch standard's limit); a feed
/// that needs more than a handful of hops is misconfigured, so half that is plenty.
pub const MAX_REDIRECTS: usize = 10;

/// What we ask for; servers that negotiate on `Accept` then send a feed rather than an HTML page.
const ACCEPT: &str = "application/rss+xml, application/atom+xml, application/feed+json, \
                      application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.8";

/// What an article page is asked for as: a browser's `Accept`.
const PAGE_ACCEPT: &str = "text/html, application/xhtml+xml, */*;q=0.8";

/// A feed document, or the page an entry links to.
#[derive(Debug, Clone, Copy)]
enum Wanted<'a> {
    Feed,
    /// `local_origin`: the feed's own origin (scheme, host and port), when the feed's URL names
    /// this machine or a private network address itself: the user chose that service, so its
    /// pages may be there too. Not the whole host: another port there is another service.
    Page {
        local_origin: Option<&'a Origin>,
    },
    /// A feed a web page links to: asked for as a feed, guarded as a page, as the page's
    /// publisher chose where it is.
    LinkedFeed,
}

/// Limits and identity for every request; built once from the validated config.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// Whole-request deadline: connect, headers and body, over all redirect hops.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Cap on the (decompressed) body, enforced while streaming.
    pub max_body_size: u64,
    pub user_agent: String,
    /// `[polling] private_article_links`: article pages are not held to the network guard.
    pub private_article_links: bool,
}

impl From<&PollingConfig> for FetchSettings {
    fn from(polling: &PollingConfig) -> FetchSettings {
        FetchSettings {
            timeout: polling.timeout,
            connect_timeout: polling.connect_timeout,
            max_body_size: polling.max_body_size,
            user_agent: polling.user_agent.clone(),
            private_article_links: polling.private_article_links,
        }
    }
}

/// A feed's own request headers (`[[feed]] headers`), sent to the origin (scheme, host, port) of
/// the feed's configured URL only: they are often credentials, and a redirect to another origin
/// must not carry them there, as it does not carry the URL's own credentials.
#[derive(Clone, PartialEq)]
pub struct FeedHeaders {
    origin: url::Origin,
    headers: HeaderMap,
}

impl FeedHeaders {
    /// `headers` come from [`parse_feed_header`]. Every value is marked sensitive here, so the
    /// HTTP layers never print or index it.
    pub fn new(feed_url: &Url, mut headers: HeaderMap) -> FeedHeaders {
        for value in headers.values_mut() {
            value.set_sensitive(true);
        }
        FeedHeaders {
            origin: feed_url.origin(),
            headers,
        }
    }

    /// Headers from `(name, value)` pairs that must be valid.
    #[cfg(test)]
    pub(crate) fn from_pairs(feed_url: &Url, pairs: &[(&str, &str)]) -> FeedHeaders {
        let headers = pairs
            .iter()
            .map(|(name, value)| parse_feed_header(name, value).unwrap())
            .collect();
        FeedHeaders::new(feed_url, headers)
    }

    fn for_url(&self, url: &Url) -> Option<&HeaderMap> {
        (url.origin() == self.origin).then_some(&self.headers)
    }
}

/// Names only: the values are often secrets.
impl fmt::Debug for FeedHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedHeaders")
            .field("origin", &self.origin.ascii_serialization())
            .field("names", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Checks one `[[feed]] headers` entry. The error says why it cannot be sent and never quotes
/// the value, which is often a secret.
pub fn parse_feed_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
        "is not an HTTP header name (letters, digits and `-`, e.g. \"Authorization\")".to_owned()
    })?;
    let refusal = match name.as_str() {
        "if-none-match" | "if-modified-since" => {
            Some("feedhound sets it itself, from the feed's last response, for conditional GET")
        }
        "accept-encoding" => {
            Some("feedhound sets it itself, to ask only for compression it can decode")
        }
        "host" | "content-length" | "transfer-encoding" | "connection" | "keep-alive"
        | "upgrade" | "te" | "trailer" | "proxy-connection" => {
            Some("the HTTP client sets the connection's own headers")
        }
        "if-match" | "if-unmodified-since" | "if-range" | "range" => {
            Some("it would turn the feed into a partial or conditional answer feedhound cannot use")
        }
        "proxy-authorization" => Some(
            "a proxy's login goes in the proxy's URL (http://user:password@proxy:3128), where \
             it reaches the proxy and no one else",
        ),
        _ => None,
    };
    if let Some(refusal) = refusal {
        return Err(format!("cannot be set here: {refusal}; remove it"));
    }
    let value = HeaderValue::from_str(value.trim()).map_err(|_| {
        "must be printable text on one line (it is sent as an HTTP header)".to_owned()
    })?;
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok((name, value))
}

/// The conditional-GET validators stored from the previous 200.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// A response we can use: a fresh body, or 304 Not Modified (`body` is `None`).
///
/// `Debug` shows the body's length rather than its bytes, and URLs through [`redact`].
#[derive(Clone)]
pub struct Fetched {
    pub status: u16,
    pub body: Option<Vec<u8>>,
    pub content_type: Option<String>,
    /// The validators to store for the next request. On a 304 that carries none, these are the
    /// ones that were sent (already merged here), so the caller can always store what it gets.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Where the document was finally fetched from, after redirects. Keeps the credentials of
    /// the original URL when the redirects stayed on its origin, so it can be stored as the new
    /// feed URL; log it with [`redact`].
    pub final_url: Url,
    /// Set when every redirect hop on the way was permanent (301/308): the feed has moved here.
    pub permanent_redirect: Option<Url>,
    /// How long the server says the response stays fresh: `Cache-Control: max-age` (minus `Age`),
    /// else `Expires` minus `Date`. `None` when the server says nothing, or says `no-store` /
    /// `no-cache`, which forbid reuse but say nothing about how often the feed changes.
    pub fresh_for: Option<Duration>,
}

impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetched")
            .field("status", &self.status)
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .field("content_type", &self.content_type)
            .field("etag", &self.etag)
            .field("last_modified", &self.last_modified)
            .field("final_url", &redact(&self.final_url))
            .field(
                "permanent_redirect",
                &self.permanent_redirect.as_ref().map(redact),
            )
            .field("fresh_for", &self.fresh_for)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The whole-request deadline, or the connect timeout, passed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection failed or broke; the message says how, without the URL.
    #[error("network error: {0}")]
    Network(String),
    /// The server's TLS certificate was refused; the message says why and what to do.
    #[error("{0}")]
    Certificate(String),
    /// Any non-2xx, non-304 final status. `retry_after` comes from a `Retry-After` header;
    /// `headers_withheld_from` names the origin of a 401 or 403 to which the feed's own headers
    /// were not sent (the likely reason for it): a redirect led there, or the feed moved there.
    #[error(
        "HTTP status {}{}{}",
        status_text(*.status),
        retry_text(.retry_after),
        withheld_text(.headers_withheld_from)
    )]
    Status {
        status: u16,
        retry_after: Option<DateTime<Utc>>,
        headers_withheld_from: Option<String>,
    },
    #[error("response body is larger than max_body_size ({limit} bytes)")]
    TooLarge { limit: u64 },
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    /// Holds the redacted URL that was reached a second time.
    #[error("redirect loop through {0}")]
    RedirectLoop(String),
    /// Holds the redacted URL.
    #[error("refusing to fetch {0}: only http and https URLs are fetched")]
    UnsupportedScheme(String),
    /// Holds the redacted URL: an article link (or a hop of its redirects) to this machine or
    /// its private network, by its address or by what its host name resolves to, at an origin
    /// other than its feed's.
    #[error(
        "refusing to fetch {0}: it is on this machine or a private network (by its address or \
         what its host name resolves to), and not at the origin (scheme, host and port) of a feed \
         whose own URL names such an address; only if every feed's publisher may reach that \
         network (an intranet, Tailscale, a fake-IP proxy), set [polling] \
         private_article_links = true"
    )]
    LocalAddress(String),
    /// A 3xx redirect status whose `Location` is missing or not a URL.
    #[error("HTTP status {status} redirect without a usable Location header")]
    BadRedirect { status: u16 },
    /// 304 to a request that sent no validators: there was nothing to be "not modified" from.
    #[error(
        "HTTP status 304 Not Modified to a request without If-None-Match or If-Modified-Since: \
         the server sent no document and had none to compare with (a misconfigured server or \
         cache)"
    )]
    NotModifiedUnasked,
}

/// The conditional-GET headers a request carries for `validators`. A stored validator that is
/// not a valid header value cannot have come from a server; skipping it costs one unconditional
/// GET instead of a failed poll.
fn conditional_headers(
    validators: &Validators,
) -> impl Iterator<Item = (header::HeaderName, HeaderValue)> + '_ {
    [
        (header::IF_NONE_MATCH, &validators.etag),
        (header::IF_MODIFIED_SINCE, &validators.last_modified),
    ]
    .into_iter()
    .filter_map(|(name, value)| {
        let value = HeaderValue::from_str(value.as_deref()?).ok()?;
        Some((name, value))
    })
}

fn status_text(status: u16) -> String {
    match StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

fn withheld_text(origin: &Option<String>) -> String {
    match origin {
        Some(origin) => format!(
            " from {origin}, another origin than the feed's url, to which its headers are not \
             sent; if the feed has moved there, update its url"
        ),
        None => String::new(),
    }
}

fn retry_text(retry_after: &Option<DateTime<Utc>>) -> String {
    match retry_after {
        Some(at) => format!(" (retry after {})", at.format("%Y-%m-%d %H:%M:%S UTC")),
        None => String::new(),
    }
}

/// The URL as it may be logged or shown: a password (or a lone user name, which is usually a
/// token) becomes `***`, and so do the values of query parameters named like secrets
/// (`token`, `api_key`, `secret`, `password`, `sig`, …).
/// [`redact`] for a URL kept as text; text that is not a URL is shown as "(invalid URL)", since
/// it could hold anything.
pub fn redact_str(url: &str) -> String {
    Url::parse(url).map_or_else(|_| "(invalid URL)".to_string(), |url| redact(&url))
}

pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    // These setters fail only for URLs that cannot carry credentials, which have none to hide.
    if url.password().is_some() {
        let _ = shown.set_password(Some("***"));
    } else if !url.username().is_empty() {
        let _ = shown.set_username("***");
    }
    if url.query_pairs().any(|(key, _)| looks_secret(&key)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(key, value)| {
                let value = if looks_secret(&key) {
                    "***".to_owned()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

/// A URL as errors about a webhook show it: its origin alone, since a webhook's path is often
/// its credential (Slack's `/services/T…/B…/secret`, Discord's `/api/webhooks/id/token`).
pub fn origin_only(url: &Url) -> String {
    format!("{}/…", url.origin().ascii_serialization())
}

/// Whether a query parameter's or header's name says its value is a credential.
pub fn looks_secret(query_key: &str) -> bool {
    let key = query_key.to_ascii_lowercase();
    ["token", "secret", "password", "passwd"]
        .iter()
        .any(|word| key.contains(word))
        || key.ends_with("key")
        || ["auth", "sig", "signature"].contains(&key.as_str())
}

/// Fetches feed documents and article pages. Pages go through a client of their own, whose
/// resolver refuses private addresses ([`network_guard`]).
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    page_client: reqwest::Client,
    /// Host names of the proxies in the environment: the page client resolves them anywhere,
    /// so a page may not be on one.
    proxy_hosts: Arc<[String]>,
    settings: FetchSettings,
}

impl Fetcher {
    pub fn new(settings: FetchSettings) -> anyhow::Result<Self> {
        let proxy_hosts = network_guard::proxy_hosts_from_env().into();
        Self::resolving_pages_with(settings, Arc::new(network_guard::SystemLookup), proxy_hosts)
    }

    /// `lookup` resolves the host names of article pages, before the guard filters what it
    /// found.
    fn resolving_pages_with(
        settings: FetchSettings,
        lookup: Arc<dyn Resolve>,
        proxy_hosts: Arc<[String]>,
    ) -> anyhow::Result<Self> {
        let client = client_builder(&settings)
            .build()
            .context("building the HTTP client")?;
        let guard = network_guard::PublicOnly::new(lookup, Arc::clone(&proxy_hosts));
        let page_client = client_builder(&settings)
            .dns_resolver(Arc::new(guard))
            .build()
            .context("building the HTTP client for article pages")?;
        Ok(Fetcher {
            client,
            page_client,
            proxy_hosts,
            settings,
        })
    }

    /// GETs `url`, following redirects, sending `validators` as `If-None-Match` /
    /// `If-Modified-Since` and the feed's own `headers` where they belong. Returns the 2xx body
    /// or a 304 without one.
    pub async fn fetch(
        &self,
        url: &Url,
        validators: &Validators,
        headers: Option<&FeedHeaders>,
    ) -> Result<Fetched, FetchError> {
        self.fetch_within_deadline(url, validators, headers, Wanted::Feed)
            .await
    }

    /// GETs the page an entry of a feed links to, as [`Fetcher::fetch`] does a feed, with no
    /// validators. Unless `[polling] private_article_links` is on, each hop must be off this
    /// machine and its private network, by what its URL says and by what its host name
    /// resolves to, or at `local_origin` (the feed's own origin, when its URL names such an
    /// address itself): the feed's publisher must not make feedhound send requests into the
    /// network it runs in.
    pub async fn fetch_page(
        &self,
        url: &Url,
        headers: Option<&FeedHeaders>,
        local_origin: Option<&Origin>,
    ) -> Result<Fetched, FetchError> {
        let wanted = Wanted::Page { local_origin };
        self.fetch_within_deadline(url, &Validators::default(), headers, wanted)
            .await
    }

    /// GETs a feed that a web page links to, as [`Fetcher::fetch`] does with no validators,
    /// but through the guard of [`Fetcher::fetch_page`]: `discover` fetches the feeds a site's
    /// page names on other origins so.
    pub async fn fetch_linked_feed(&self, url: &Url) -> Result<Fetched, FetchError> {
        self.fetch_within_deadline(url, &Validators::default(), None, Wanted::LinkedFeed)
            .await
    }

    /// Whether a hop goes through the guarded client: a page's or a linked feed's, unless the
    /// user lifted the guard, or it is at a local feed's own origin.
    fn is_guarded(&self, url: &Url, wanted: Wanted<'_>) -> bool {
        match wanted {
            Wanted::Page { local_origin } => {
                !self.settings.private_article_links && local_origin != Some(&url.origin())
            }
            Wanted::LinkedFeed => !self.settings.private_article_links,
            Wanted::Feed => false,
        }
    }

    /// The URL half of the guard: hyper-util never asks the resolver about an address written
    /// in the URL, so this is the only check for those. A proxy's host is refused too: the
    /// guarded resolver lets its name resolve anywhere.
    fn refuse_local_url(&self, url: &Url) -> Result<(), FetchError> {
        let host = url.host_str().map(network_guard::comparable_host);
        let is_proxy = host.is_some_and(|host| self.proxy_hosts.contains(&host));
        if is_local(url) || is_proxy {
            return Err(FetchError::LocalAddress(redact(url)));
        }
        Ok(())
    }

    async fn fetch_within_deadline(
        &self,
        url: &Url,
        validators: &Validators,
        headers: Option<&FeedHeaders>,
        wanted: Wanted<'_>,
    ) -> Result<Fetched, FetchError> {
        let deadline = self.settings.timeout;
        let fetching = self.fetch_following_redirects(url, validators, headers, wanted);
        match tokio::time::timeout(deadline, fetching).await {
            Ok(result) => result,
            Err(_elapsed) => Err(FetchError::Timeout(deadline)),
        }
    }

    async fn fetch_following_redirects(
        &self,
        url: &Url,
        validators: &Validators,
        headers: Option<&FeedHeaders>,
        wanted: Wanted<'_>,
    ) -> Result<Fetched, FetchError> {
        ensure_http(url)?;
        let mut current = url.clone();
        let mut visited: Vec<Url> = Vec::new();
        let mut every_hop_permanent = true;
        loop {
            if self.is_guarded(&current, wanted) {
                self.refuse_local_url(&current)?;
            }
            let own_headers = headers.and_then(|h| h.for_url(&current));
            let response = self.send(&current, validators, own_headers, wanted).await?;
            let status = response.status();
            if !is_followed_redirect(status) {
                let permanent_redirect =
                    (!visited.is_empty() && every_hop_permanent).then(|| current.clone());
                let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
                let headers_withheld_from = (refused && headers.is_some() && own_headers.is_none())
                    .then(|| current.origin().ascii_serialization());
                return self
                    .finish(
                        response,
                        current,
                        permanent_redirect,
                        validators,
                        headers_withheld_from,
                    )
                    .await;
            }
            let next = redirect_target(&current, status, response.headers())?;
            ensure_http(&next)?;
            visited.push(without_fragment(&current));
            if visited.contains(&without_fragment(&next)) {
                return Err(FetchError::RedirectLoop(redact(&next)));
            }
            if visited.len() > MAX_REDIRECTS {
                return Err(FetchError::TooManyRedirects(MAX_REDIRECTS));
            }
            every_hop_permanent &= matches!(
                status,
                StatusCode::MOVED_PERMANENTLY | StatusCode::PERMANENT_REDIRECT
            );
            current = next;
        }
    }

    /// One GET, with the URL's credentials moved into an `Authorization` header. (reqwest would
    /// do that move itself, but doing it here keeps the whole credentials rule in this file.)
    /// `own_headers` replace the client's defaults of the same name (`User-Agent`, `Accept`).
    async fn send(
        &self,
        url: &Url,
        validators: &Validators,
        own_headers: Option<&HeaderMap>,
        wanted: Wanted<'_>,
    ) -> Result<reqwest::Response, FetchError> {
        let mut bare = url.clone();
        let credentials = take_credentials(&mut bare);
        let client = match self.is_guarded(url, wanted) {
            true => &self.page_client,
            false => &self.client,
        };
        let mut request = client.get(bare);
        if let Wanted::Page { .. } = wanted {
            request = request.header(header::ACCEPT, HeaderValue::from_static(PAGE_ACCEPT));
        }
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, password);
        }
        // After the basic auth: `headers` replaces what is there, where `basic_auth` would add
        // a second Authorization (a redirect's own `user@` beside a configured token).
        if let Some(own_headers) = own_headers {
            request = request.headers(own_headers.clone());
        }
        for (name, value) in conditional_headers(validators) {
            request = request.header(name, value);
        }
        request.send().await.map_err(|err| {
            if causes(&err).any(|cause| cause.is::<network_guard::ResolvesToLocal>()) {
                FetchError::LocalAddress(redact(url))
            } else {
                self.network_error(err)
            }
        })
    }

    async fn finish(
        &self,
        response: reqwest::Response,
        final_url: Url,
        permanent_redirect: Option<Url>,
        sent: &Validators,
        headers_withheld_from: Option<String>,
    ) -> Result<Fetched, FetchError> {
        let status = response.status();
        let headers = response.headers();
        if !(status.is_success() || status == StatusCode::NOT_MODIFIED) {
            let retry_after = header_str(headers, header::RETRY_AFTER)
                .and_then(|value| parse_retry_after(value, Utc::now()));
            return Err(FetchError::Status {
                status: status.as_u16(),
                retry_after,
                headers_withheld_from,
            });
        }
        let content_type = header_str(headers, header::CONTENT_TYPE).map(str::to_owned);
        let mut etag = header_str(headers, header::ETAG).map(str::to_owned);
        let mut last_modified = header_str(headers, header::LAST_MODIFIED).map(str::to_owned);
        let fresh_for = freshness(headers, SystemTime::now());
        let body = if status == StatusCode::NOT_MODIFIED {
            if conditional_headers(sent).next().is_none() {
                return Err(FetchError::NotModifiedUnasked);
            }
            // RFC 9110 §15.4.5 lets a 304 omit validators that did not change.
            etag = etag.or_else(|| sent.etag.clone());
            last_modified = last_modified.or_else(|| sent.last_modified.clone());
            None
        } else {
            Some(self.read_body(response).await?)
        };
        Ok(Fetched {
            status: status.as_u16(),
            body,
            content_type,
            etag,
            last_modified,
            final_url,
            permanent_redirect,
            fresh_for,
        })
    }

    /// Reads the (already decompressed) body chunk by chunk, stopping as soon as it passes the
    /// cap, so a compression bomb costs at most `max_body_size` of memory and inflation work.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, FetchError> {
        let limit = self.settings.max_body_size;
        // Known only for responses that are not being decompressed; then it is the real size.
        let announced = response.content_length();
        if announced.is_some_and(|length| length > limit) {
            return Err(FetchError::TooLarge { limit });
        }
        let reserve = announced.unwrap_or(0).min(limit);
        let mut body = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| self.network_error(err))?
        {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(FetchError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn network_error(&self, err: reqwest::Error) -> FetchError {
        // No total timeout is configured on the client, so a reqwest timeout is the connect one.
        if err.is_timeout() {
            return FetchError::Timeout(self.settings.connect_timeout);
        }
        if let Some(refusal) = refused_certificate(&err) {
            return FetchError::Certificate(refusal);
        }
        FetchError::Network(describe(&err.without_url()))
    }
}

/// The settings both clients share: identity, `Accept`, connect timeout, no redirects.
fn client_builder(settings: &FetchSettings) -> reqwest::ClientBuilder {
    let mut default_headers = HeaderMap::new();
    default_headers.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT));
    reqwest::Client::builder()
        .user_agent(&settings.user_agent)
        .default_headers(default_headers)
        .connect_timeout(settings.connect_timeout)
        // The whole-request deadline is a `tokio::time::timeout` around all hops in `fetch`,
        // so it also bounds the time spent across redirects.
        .redirect(reqwest::redirect::Policy::none())
}

fn ensure_http(url: &Url) -> Result<(), FetchError> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        _ => Err(FetchError::UnsupportedScheme(redact(url))),
    }
}

/// The statuses that carry a `Location` to follow; 300 and 305 are not followed.
fn is_followed_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

/// Resolves `Location` against the current URL. The current URL's credentials go along when
/// the target is on the same origin (relative `Location`s inherit them anyway), and never to
/// another origin, as curl does.
fn redirect_target(
    current: &Url,
    status: StatusCode,
    headers: &HeaderMap,
) -> Result<Url, FetchError> {
    let bad_redirect = || FetchError::BadRedirect {
        status: status.as_u16(),
    };
    let location = header_str(headers, header::LOCATION).ok_or_else(bad_redirect)?;
    let mut next = current.join(location.trim()).map_err(|_| bad_redirect())?;
    let has_credentials = !next.username().is_empty() || next.password().is_some();
    if !has_credentials && next.origin() == current.origin() {
        // Same origin means same scheme, host and port, so these setters cannot fail.
        let _ = next.set_username(current.username());
        let _ = next.set_password(current.password());
    }
    Ok(next)
}

fn without_fragment(url: &Url) -> Url {
    let mut url = url.clone();
    url.set_fragment(None);
    url
}

/// Removes `user:password@` from `url`, returning them percent-decoded for basic auth.
fn take_credentials(url: &mut Url) -> Option<(String, Option<String>)> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let user = decode(url.username());
    let password = url.password().map(decode);
    // Fails only for URLs without a host, which `ensure_http` has already refused.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some((user, password))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// `Retry-After` is either delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        let delta = TimeDelta::try_seconds(i64::try_from(seconds).ok()?)?;
        return now.checked_add_signed(delta);
    }
    httpdate::parse_http_date(value).ok().map(DateTime::from)
}

/// Freshness lifetime as RFC 9111 §4.2.1 computes it for a private cache (so `s-maxage` is
/// ignored), minus the `Age` the response already has. See [`Fetched::fresh_for`].
fn freshness(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let mut max_age = None;
    for directive in headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
    {
        let (name, argument) = match directive.split_once('=') {
            Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return None;
        }
        if name.eq_ignore_ascii_case("max-age") {
            max_age = argument.and_then(|seconds| seconds.parse::<u64>().ok());
        }
    }
    if let Some(max_age) = max_age {
        let age = header_str(headers, header::AGE)
            .and_then(|age| age.trim().parse::<u64>().ok())
            .unwrap_or(0);
        return Some(Duration::from_secs(max_age.saturating_sub(age)));
    }
    let expires = header_str(headers, header::EXPIRES)?;
    // RFC 9111 §5.3: an invalid Expires (typically "0") means "already expired".
    let Ok(expires) = httpdate::parse_http_date(expires.trim()) else {
        return Some(Duration::ZERO);
    };
    let date = header_str(headers, header::DATE)
        .and_then(|date| httpdate::parse_http_date(date.trim()).ok())
        .unwrap_or(now);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// Why a request got no response, for a caller with no [`FetchError`] to branch on (webhooks):
/// a refused certificate in plain words, or [`describe`], without the URL, which may hold a
/// token.
pub(crate) fn why_unanswered(err: reqwest::Error) -> String {
    refused_certificate(&err).unwrap_or_else(|| describe(&err.without_url()))
}

/// A short account of what went wrong on the wire. The common failures get plain words; anything
/// else is the error's cause chain, which reqwest and hyper word well.
fn describe(err: &reqwest::Error) -> String {
    let described = describe_chain(err);
    // hyper-util's tunnel and SOCKS errors (private types, so known by their words) name no
    // proxy, and a proxy set in the environment is easy to forget.
    for text in causes(err).map(|cause| cause.to_string()) {
        if text.starts_with("tunnel error") {
            return format!(
                "through the proxy set in the environment (HTTPS_PROXY or ALL_PROXY, in either \
                 case): {described}"
            );
        }
        if text.starts_with("SOCKS error") || text.contains("connecting to socks proxy") {
            return format!(
                "through the SOCKS proxy set in the environment (ALL_PROXY, HTTPS_PROXY or \
                 HTTP_PROXY, in either case): {described}"
            );
        }
    }
    described
}

fn describe_chain(err: &reqwest::Error) -> String {
    let plain = causes(err).find_map(|cause| match cause.downcast_ref::<io::Error>()?.kind() {
        io::ErrorKind::ConnectionRefused => Some("connection refused"),
        io::ErrorKind::ConnectionReset => Some("connection reset by the server"),
        io::ErrorKind::ConnectionAborted => Some("connection aborted"),
        io::ErrorKind::UnexpectedEof => Some("connection closed before the whole response arrived"),
        _ => None,
    });
    if let Some(plain) = plain {
        return plain.to_owned();
    }
    let mut parts: Vec<String> = Vec::new();
    for text in causes(err).map(|cause| cause.to_string()) {
        // Wrappers often repeat their source's text; keep each piece once.
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// `err` and each error it was caused by, outermost first. An I/O error's `source` is its
/// inner error's source, skipping the inner error itself (rustls's, or another I/O error's
/// kind, in hyper's and lettre's chains), so it is looked inside instead.
fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |&cause| {
        match cause
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => cause.source(),
        }
    })
}

#[cfg(test)]
mod tests {
    //! Every test talks to a real server on 127.0.0.1: raw `TcpListener` threads, so a test can
    //! lie, stall, trickle or reset exactly where it wants to.

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    use std::thread;
    use std::time::Instant;

    use super::*;

    /// The request head as the server saw it; header names lower-cased.
    #[derive(Debug, Clone)]
    struct Request {
        path: String,
        headers: Vec<(String, String)>,
    }

    impl Request {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        }
    }

    struct TestServer {
        base: Url,
        requests: Arc<Mutex<Vec<Request>>>,
    }

    impl TestServer {
        fn url(&self, path: &str) -> Url {
            self.base.join(path).unwrap()
        }

        fn requests(&self) -> Vec<Request> {
            self.requests.lock().unwrap().clone()
        }
    }

    /// Starts a server that reads each request head, records it and hands it with the stream
    /// to `handler`, one thread per connection.
    fn serve(handler: impl Fn(&Request, TcpStream) + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let recorded = Arc::clone(&requests);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let handler = Arc::clone(&handler);
                let recorded = Arc::clone(&recorded);
                thread::spawn(move || {
                    let Some(request) = read_head(&stream) else {
                        return;
                    };
                    recorded.lock().unwrap().push(request.clone());
                    handler(&request, stream);
                });
            }
        });
        TestServer { base, requests }
    }

    fn read_head(stream: &TcpStream) -> Option<Request> {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let path = line.split_whitespace().nth(1)?.to_owned();
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':')?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        Some(Request { path, headers })
    }

    /// Writes a complete response with a true Content-Length; `Connection: close` keeps the
    /// client from reusing a connection these one-shot handlers are about to drop.
    fn respond(mut stream: TcpStream, status: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
    }

    fn settings(timeout: Duration, max_body_size: u64) -> FetchSettings {
        FetchSettings {
            timeout,
            connect_timeout: Duration::from_secs(1),
            max_body_size,
            user_agent: "feedhound-test/0".to_owned(),
            private_article_links: false,
        }
    }

    fn fetcher() -> Fetcher {
        Fetcher::new(settings(Duration::from_secs(5), 1 << 20)).unwrap()
    }

    const FEED: &[u8] = b"<rss version=\"2.0\"><channel><title>t</title></channel></rss>";

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[tokio::test]
    async fn a_page_on_this_machine_is_fetched_only_for_a_feed_at_its_origin() {
        let other_service = serve(|_, stream| respond(stream, "200 OK", &[], FEED));
        let elsewhere_on_the_host = other_service.url("/admin").to_string();
        let server = serve(move |request, stream| match request.path.as_str() {
            "/to-another-port" => {
                let location = [("Location", elsewhere_on_the_host.as_str())];
                respond(stream, "302 Found", &location, b"");
            }
            _ => respond(stream, "200 OK", &[], b"<p>story</p>"),
        });
        let url = server.url("/story");
        let refused = fetcher().fetch_page(&url, None, None).await.unwrap_err();
        assert!(
            matches!(&refused, FetchError::LocalAddress(shown) if shown.contains("127.0.0.1")),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("private_article_links"),
            "the error says how to allow it: {refused}"
        );
        // Another service on this machine, even on the feed's own host, is not the feed's: a
        // local feed relaying other publishers' links must not reach it.
        let port = url.port().unwrap();
        let elsewhere = [
            format!("http://127.0.0.2:{port}/feed"),
            format!("https://127.0.0.1:{port}/feed"),
            other_service.url("/feed").to_string(),
        ];
        for feed in elsewhere {
            let feed_origin = Url::parse(&feed).unwrap().origin();
            let refused = fetcher()
                .fetch_page(&url, None, Some(&feed_origin))
                .await
                .unwrap_err();
            assert!(
                matches!(refused, FetchError::LocalAddress(_)),
                "{feed}: {refused}"
            );
        }
        assert!(server.requests().is_empty(), "nothing was sent");
        let own_origin = server.url("/feed").origin();
        let fetched = fetcher()
            .fetch_page(&url, None, Some(&own_origin))
            .await
            .unwrap();
        assert_eq!(fetched.body.as_deref(), Some(&b"<p>story</p>"[..]));
        let sent = &server.requests()[0];
        assert!(sent.header("accept").unwrap().starts_with("text/html"));
        // Nor may a page at the feed's origin redirect there.
        let refused = fetcher()
            .fetch_page(&server.url("/to-another-port"), None, Some(&own_origin))
            .await
            .unwrap_err();
        assert!(matches!(refused, FetchError::LocalAddress(_)), "{refused}");
        assert!(
            other_service.requests().is_empty(),
            "nothing was sent there"
        );
    }

    /// Stands in for DNS: each name resolves to the addresses listed for it.
    struct HostsTable(Vec<(&'static str, IpAddr)>);

    impl Resolve for HostsTable {
        fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
            let found: Vec<SocketAddr> = (self.0.iter())
                .filter(|(host, _)| *host == name.as_str())
                .map(|(_, ip)| SocketAddr::new(*ip, 0))
                .collect();
            Box::pin(async move {
                if found.is_empty() {
                    return Err("no such host".into());
                }
                Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
            })
        }
    }

    #[tokio::test]
    async fn a_page_whose_host_name_resolves_into_this_network_is_refused_as_is_a_hop_there() {
        let server = serve(|request, stream| {
            let port = request.header("host").unwrap().rsplit(':').next().unwrap();
            let to_name = format!("http://intranet.test:{port}/admin");
            match request.path.as_str() {
                "/to-name" => respond(stream, "302 Found", &[("Location", &to_name)], b""),
                "/to-address" => {
                    let to_address = "http://10.0.0.1/admin";
                    respond(stream, "302 Found", &[("Location", to_address)], b"");
                }
                _ => respond(stream, "200 OK", &[], b"<p>story</p>"),
            }
        });
        let guarded = |settings, proxy_hosts: &[&str]| {
            let loopback = IpAddr::from([127, 0, 0, 1]);
            let lookup = HostsTable(vec![("intranet.test", loopback)]);
            let proxy_hosts = proxy_hosts.iter().map(|host| host.to_string()).collect();
            Fetcher::resolving_pages_with(settings, Arc::new(lookup), proxy_hosts).unwrap()
        };
        let fetcher = guarded(settings(Duration::from_secs(5), 1 << 20), &[]);
        let port = server.url("/").port().unwrap();
        let by_name = Url::parse(&format!("http://intranet.test:{port}/story")).unwrap();

        // A feed at intranet.test is no exception: its URL names no local address, and its
        // publisher may point that name anywhere (`articles` passes no origin for it). The
        // origin of a feed at 127.0.0.1 does not cover the name either.
        let own_origin = server.url("/feed").origin();
        for local_origin in [None, Some(&own_origin)] {
            let refused = fetcher
                .fetch_page(&by_name, None, local_origin)
                .await
                .unwrap_err();
            assert!(
                matches!(&refused, FetchError::LocalAddress(shown) if shown.contains("intranet.test")),
                "{refused}"
            );
        }
        assert!(server.requests().is_empty(), "nothing was sent");

        // A feed on this machine may link to its own origin, but not be a step into the network.
        for (hop, refused_url) in [("/to-name", "intranet.test"), ("/to-address", "10.0.0.1")] {
            let refused = fetcher
                .fetch_page(&server.url(hop), None, Some(&own_origin))
                .await
                .unwrap_err();
            assert!(
                matches!(&refused, FetchError::LocalAddress(shown) if shown.contains(refused_url)),
                "{hop}: {refused}"
            );
        }
        let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/to-name", "/to-address"], "no hop was followed");

        // A proxy's name resolves anywhere for the proxy's sake, so a page may not be on it.
        let beside_a_proxy = guarded(
            settings(Duration::from_secs(5), 1 << 20),
            &["intranet.test"],
        );
        let refused = beside_a_proxy
            .fetch_page(&by_name, None, None)
            .await
            .unwrap_err();
        assert!(matches!(refused, FetchError::LocalAddress(_)), "{refused}");
        assert_eq!(server.requests().len(), 2, "nothing more was sent");

        // `private_article_links` lifts the guard.
        let lifted = guarded(
            FetchSettings {
                private_article_links: true,
                ..settings(Duration::from_secs(5), 1 << 20)
            },
            &[],
        );
        let fetched = lifted.fetch_page(&server.url("/story"), None, None).await;
        assert_eq!(fetched.unwrap().body.as_deref(), Some(&b"<p>story</p>"[..]));
    }

    #[tokio::test]
    async fn plain_200_returns_body_headers_and_identity() {
        let server = serve(|_, stream| {
            respond(
                stream,
                "200 OK",
                &[
                    ("Content-Type", "application/rss+xml; charset=utf-8"),
                    ("ETag", "\"v1\""),
                    ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ],
                FEED,
            )
        });
        let url = server.url("/feed.xml");
        let fetched = fetcher()
            .fetch(&url, &Validators::default(), None)
            .await
            .unwrap();
        assert_eq!(fetched.status, 200);
        assert_eq!(fetched.body.as_deref(), Some(FEED));
        assert_eq!(
            fetched.content_type.as_deref(),
            Some("application/rss+xml; charset=utf-8")
        );
        assert_eq!(fetched.etag.as_deref(), Some("\"v1\""));
        assert_eq!(
            fetched.last_modified.as_deref(),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
        assert_eq!(fetched.final_url, url);
        assert_eq!(fetched.permanent_redirect, None);
        assert_eq!(fetched.fresh_for, None);
        let request = &server.requests()[0];
        assert_eq!(request.header("user-agent"), Some("feedhound-test/0"));
        assert!(
            request
                .header("accept")
                .unwrap()
                .contains("application/rss+xml")
        );
        assert_eq!(request.header("if-none-match"), None);
        assert_eq!(request.header("if-modified-since"), None);
    }

    #[tokio::test]
    async fn connections_are_reused_across_fetches() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let accepted = Arc::new(Mutex::new(0));
        let counter = Arc::clone(&accepted);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                *counter.lock().unwrap() += 1;
                // Keep-alive: answer every request that arrives on this connection.
                thread::spawn(move || {
                    // One write per response: two small writes would meet Nagle's algorithm
                    // and delayed ACKs and cost 40 ms each.
                    let mut response =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", FEED.len())
                            .into_bytes();
                    response.extend_from_slice(FEED);
                    while read_head(&stream).is_some() {
                        if stream.write_all(&response).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let fetcher = fetcher();
        let started = Instant::now();
        for _ in 0..100 {
            let fetched = fetcher
                .fetch(&url, &Validators::default(), None)
                .await
                .unwrap();
            assert_eq!(fetched.body.as_deref(), Some(FEED));
        }
        println!(
            "100 sequential fetches over loopback: {:?}",
            started.elapsed()
        );
        assert_eq!(*accepted.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn validators_are_sent_and_304_has_no_body() {
        let server = serve(|_, stream| respond(stream, "304 Not Modified", &[], b""));
        let validators = Validators {
            etag: Some("\"abc\"".to_owned()),
            last_modified: Some("Sun, 06 Nov 1994 08:49:37 GMT".to_owned()),
        };
        let fetched = fetcher()
            .fetch(&server.url("/feed"), &validators, None)
            .await
            .unwrap();
        assert_eq!(fetched.status, 304);
        assert_eq!(fetched.body, None);
        // The 304 carried no validators: the ones sent are handed back for storing.
        assert_eq!(fetched.etag, validators.etag);
        assert_eq!(fetched.last_modified, validators.last_modified);
        let request = &server.requests()[0];
        assert_eq!(request.header("if-none-match"), Some("\"abc\""));
        assert_eq!(
            request.header("if-modified-since"),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
    }

    #[tokio::test]
    async fn a_304_to_a_request_without_validators_is_an_error() {
        let server = serve(|_, stream| respond(stream, "304 Not Modified", &[], b""));
        // A stored validator that is not a header value is not sent either.
        for etag in [None, Some("bad\nvalue".to_owned())] {
            let validators = Validators {
                etag,
                last_modified: None,
            };
            let err = fetcher()
                .fetch(&server.url("/feed"), &validators, None)
                .await
                .unwrap_err();
            assert!(matches!(err, FetchError::NotModifiedUnasked), "{err:?}");
            assert!(err.to_string().contains("without If-None-Match"), "{err}");
        }
        assert!(
            server
                .requests()
                .iter()
                .all(|r| r.header("if-none-match").is_none())
        );
    }

    #[tokio::test]
    async fn validators_of_a_304_replace_the_ones_sent() {
        let server =
            serve(|_, stream| respond(stream, "304 Not Modified", &[("ETag", "\"new\"")], b""));
        let validators = Validators {
            etag: Some("\"old\"".to_owned()),
            last_modified: None,
        };
        let fetched = fetcher()
            .fetch(&server.url("/feed"), &validators, None)
            .await
            .unwrap();
        assert_eq!(fetched.etag.as_deref(), Some("\"new\""));
        assert_eq!(fetched.last_modified, None);
    }

    #[tokio::test]
    async fn gzip_body_is_decoded() {
        let server = serve(|_, stream| {
            respond(
                stream,
                "200 OK",
                &[("Content-Encoding", "gzip")],
                &gzip(FEED),
            )
        });
        let fetched = fetcher()
            .fetch(&server.url("/feed"), &Validators::default(), None)
            .await
            .unwrap();
        assert_eq!(fetched.body.as_deref(), Some(FEED));
        let accept_encoding = server.requests()[0]
            .header("accept-encoding")
            .unwrap()
            .to_owned();
        assert!(accept_encoding.contains("gzip"), "{accept_encoding}");
    }

    #[tokio::test]
    async fn brotli_body_is_decoded() {
        let mut compressed = Vec::new();
        brotli::BrotliCompress(&mut &FEED[..], &mut compressed, &Default::default()).unwrap();
        let server = serve(move |_, stream| {
            respond(stream, "200 OK", &[("Content-Encoding", "br")], &compressed)
        });
        let fetched = fetcher()
            .fetch(&server.url("/feed"), &Validators::default(), None)
            .await
            .unwrap();
        assert_eq!(fetched.body.as_deref(), Some(FEED));
    }

    #[tokio::test]
    async fn body_of_exactly_the_cap_is_accepted() {
        let server = serve(|_, stream| respond(stream, "200 OK", &[], &[b'x'; 1000]));
        let fetcher = Fetcher::new(settings(Duration::from_secs(5), 1000)).unwrap();
        let fetched = fetcher
            .fetch(&server.url("/"), &Validators::default(), None)
            .await
            .unwrap();
        assert_eq!(fetched.body.unwrap().len(), 1000);
    }

    #[tokio::test]
    async fn content_length_over_the_cap_is_refused_before_reading_the_body() {
        // The body never comes: only refusing on the header can answer before the deadline.
        let server = serve(|_, mut stream| {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\nxx");
            thread::sleep(Duration::from_secs(10));
        });
        let fetcher = Fetcher::new(settings(Duration::from_secs(2), 1000)).unwrap();
        let err = fetcher
            .fetch(&server.url("/"), &Validators::default(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FetchError::TooLarge { limit: 1000 }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "response body is larger than max_body_size (1000 bytes)"
        );
    }

    #[tokio::test]
    async fn body_without_content_length_is_cut_at_the_cap() {
        // Close-delimited body one byte over the cap, and the same as a chunked body.
        let server = serve(|request, mut stream| {
            let head = if request.path == "/chunked" {
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n"
            } else {
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
            };
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&[b'x'; 1001]);
            if request.path == "/chunked" {
                let _ = stream.write_all(b"\r\n0\r\n\r\n");
            }
        });
        let fetcher = Fetcher::new(settings(Duration::from_secs(5), 1000)).unwrap();
        for path in ["/close-delimited", "/chunked"] {
            let err = fetcher
                .fetch(&server.url(path), &Validators::default(), None)
                .await
                .unwrap_err();
            assert!(
                matches!(err, FetchError::TooLarge { .. }),
                "{path}: {err:?}"
            );
        }
    }

    /// A gzip stream inflating to `mib` MiB of zeros, built without compressing them all: a
    /// sync-flushed deflate block of one MiB of zeros refers only to itself, so it can be
    /// repeated, then closed with an empty final block (`03 00`).
    fn gzip_bomb(mib: u32) -> Vec<u8> {
        let zeros = vec![0u8; 1 << 20];
        let mut deflate = flate2::Compress::new(flate2::Compression::best(), false);
        let mut block = Vec::with_capacity(1 << 20);
        deflate
            .compress_vec(&zeros, &mut block, flate2::FlushCompress::Sync)
            .unwrap();
        assert_eq!(deflate.total_in(), 1 << 20);
        let mut crc_of_block = flate2::Crc::new();
        crc_of_block.update(&zeros);
        let mut crc = flate2::Crc::new();
        let mut bomb = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 0xff];
        for _ in 0..mib {
            bomb.extend_from_slice(&block);
            crc.combine(&crc_of_block);
        }
        bomb.extend_from_slice(&[0x03, 0x00]);
        bomb.extend_from_slice(&crc.sum().to_le_bytes());
        bomb.extend_from_slice(&crc.amount().to_le_bytes());
        bomb
    }

    #[test]
    fn gzip_bomb_helper_makes_a_valid_stream() {
        let bomb = gzip_bomb(3);
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(&bomb[..])
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(inflated.len(), 3 << 20);
        assert!(inflated.iter().all(|&b| b == 0));
    }

    #[tokio::test]
    async fn gzip_bomb_stops_at_the_cap_quickly() {
        let bomb = Arc::new(gzip_bomb(1024)); // 1 GiB inflated
        println!("gzip bomb: {} bytes inflating to 1 GiB", bomb.len());
        let served = Arc::clone(&bomb);
        let server = serve(move |_, stream| {
            respond(stream, "200 OK", &[("Content-Encoding", "gzip")], &served)
        });
        let fetcher = Fetcher::new(settings(Duration::from_secs(10), 1 << 20)).unwrap();
        let started = Instant::now();
        let err = fetcher
            .fetch(&server.url("/bomb"), &Validators::default(), None)
            .await
            .unwrap_err();
        let elapsed = started.elapsed();
        println!("gzip bomb refused after {elapsed:?}");
        assert!(matches!(err, FetchError::TooLarge { .. }), "{err:?}");
        assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    }

    #[tokio::test]
    async fn content_length_that_lies_is_a_network_error() {
        let server = serve(|_, mut stream| {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this");
            // Dropping the stream closes the connection 991 bytes short.
        });
        let err = fetcher()
            .fetch(&server.url("/"), &Validators::default(), None)
            .await
            .unwrap_err();
        println!("{err}");
        assert!(matches!(err, FetchError::Network(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "network error: connection closed before the whole response arrived"
        );
    }

    #[tokio::test]
    async fn connection_reset_mid_body_is_a_network_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // Leave the request unread: closing a socket with unread data sends a RST instead
            // of a FIN (RFC 2525 §2.17), the way a crashing server or middlebox does.
            let mut peek = [0u8; 1];
            stream.peek(&mut peek).unwrap();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial");
            thread::sleep(Duration::from_millis(200));
        });
        let err = fetcher()
            .fetch(&url, &Validators::default(), None)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "network error: connection reset by the server"
        );
    }

    #[tokio::test]
    async fn connection_refused_is_a_network_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let err = fetcher()
            .fetch(&url, &Validators::default(), None)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "network error: connection refused");
    }

    #[tokio::test]
    async fn headers_that_never_finish_time_out_at_the_deadline() {
        let server = serve(|_, mut stream| {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n");
            thread::sleep(Duration::from_secs(10));
        });
        let fetcher = Fetcher::new(settings(Duration::from_secs(1), 1 << 20)).unwrap();
        let started = Instant::now();
        let err = fetcher
            .fetch(&server.url("/"), &Validators::default(), None)
            .await
            .unwrap_err();
        let elapsed = started.elapsed();
        assert!(matches!(err, FetchError::Timeout(_)), "{err:?}");
        assert_eq!(err.to_string(), "timed out after 1s");
        assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    }

    #[tokio::test]
    async fn body_trickled_a_byte_a_second_times_out_at_the_deadline() {
        let server = serve(|_, mut stream| {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
            for _ in 0..100 {
                if stream.write_all(b"x").is_err() {
                    return;
                }
                thread::sleep(Duration::from_secs(1));
            }
        });
        let fetcher = Fetcher::new(settings(Duration::from_millis(1500), 1 << 20)).unwrap();
        let started = Instant::now();
        let err = fetcher
            .fetch(&server.url("/"), &Validators::default(), None)
            .await
            .unwrap_err();
        let elapsed = started.elapsed();
        assert!(matches!(err, FetchError::Timeout(_)), "{err:?}");
        assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    }

    /// A server whose `/r/…` paths answer with the redirect status and Location given in the
    /// path table; anything else is the feed.
    fn redirect_server(
        routes: &'static [(&'static str, &'static str, &'static str)],
    ) -> TestServer {
        serve(move |request, stream| {
            match routes.iter().find(|(path, _, _)| *path == request.path) {
                Some((_, status, location)) => {
                    respond(stream, status, &[("Location", location)], b"moved")
                }
                None => respond(stream, "200 OK", &[], FEED),
            }
        })
    }

    /// A server whose `/a` redirects to its own `/b` (301), and `/b` to `elsewhere`'s `/feed`
    /// (302): another origin, since another port.
    fn hop_then_elsewhere(elsewhere: &TestServer) -> TestServer {
        let elsewhere_url: &'static str =
            Box::leak(elsewhere.url("/feed").to_string().into_boxed_str());
        redirect_server(Box::leak(Box::new([
            ("/a", "301 Moved Permanently", "/b"),
            ("/b", "302 Found", elsewhere_url),
        ])))
    }

    #[tokio::test]
    async fn permanent_redirects_all_the_way_report_the_new_url() {
        let server = redirect_server(&[
            ("/a", "301 Moved Permanently", "/b"),
            // Relative to /b: resolves to /dir/feed.
            ("/b", "308 Permanent Redirect", "dir/feed"),
        ]);
        let fetched = fetcher()
            .fetch(&server.url("/a"), &Validators::default(), None)
            .await
            .unwrap();
        assert_eq!(fetched.body.as_deref(), Some(FEED));
        assert_eq!(fetched.final_url, server.url("/dir/feed"));
        assert_eq!(fetched.permanent_redirect, Some(server.url("/dir/feed")));
    }

    #[tokio::test]
    async fn one_temporary_hop_means_no_permanent_redirect() {
        for temporary in ["302 Found", "303 See Other", "307 Temporary Redirect"] {
            let routes: &'static [(&str, &str, &str)] = Box::leak(Box::new([
                ("/a", "301 Moved Permanently", "/b"),
                ("/b", temporary, "/c"),
            ]));
            let server = redirect_server(routes);
            let fetched = fetcher()
                .fetch(&server.url("/a"), &Validators::default(), None)
                .await
                .unwrap();
            assert_eq!(fetched.final_url, server.url("/c"), "{temporary}");
            assert_eq!(fetched.permanent_redirect, None, "{temporary}");
        }
    }

    #[tokio::test]
    async fn absolute_location_to_another_server_is_followed() {
        let target = serve(|_, stream| respond(stream, "200 OK", &[], FEED));
        let target_url: &'static str = Box::leak(target.url("/feed").to_string().into_boxed_str());
        let routes: &'static [(&str, &str, &str)] =
            Box::leak(Box::new([("/old", "301 Moved Permanently", target_url)]));
        let server = redirect_server(routes);
        let fetched = fetcher()
            .fetch(&server.url("/old"), &Validators::default(), None)
            .await
            .unwrap();
        assert_eq!(fetched.final_url, target.url("/feed"));
        assert_eq!(fetched.permanent_redirect, Some(target.url("/feed")));
    }

    #[tokio::test]
    async fn redirect_loop_is_detected() {
        let server = redirect_server(&[
            ("/a", "301 Moved Permanently", "/b"),
            ("/b", "302 Found", "/a#again"),
        ]);
        let err = fetcher()
            .fetch(&server.url("/a"), &Validators::default(), None)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::RedirectLoop(_)), "{err:?}");
        assert_eq!(server.requests().len(), 2);
    }

    /// `/r/0` → `/r/1` → … → `/r/11` → the feed: eleven redirects from `/r/0`, ten from `/r/1`.
    fn chain_server() -> TestServer {
        serve(|request, stream| {
            let hop: u32 = request.path.trim_start_matches("/r/").parse().unwrap();
            if hop < 11 {
                let next = format!("/r/{}", hop + 1);
                respond(stream, "302 Found", &[("Location", &next)], b"")
            } else {
                respond(stream, "200 OK", &[], FEED)
            }
        })
    }

    #[tokio::test]
    async fn ten_redirects_are_followed() {
        let server = chain_server();
        let fetched = fetcher()
            .fetch(&server.url("/r/1"), &Validators::default(), None)
            .await
            .unwrap();
        assert_eq!(fetched.final_url, server.url("/r/11"));
    }

    #[tokio::test]
    async fn eleven_redirects_are_too_many() {
        let server = chain_server();
        let err = fetcher()
            .fetch(&server.url("/r/0"), &Validators::default(), None)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::TooManyRedirects(10)), "{err:?}");
        assert_eq!(server.requests().len(), 11);
    }

    #[tokio::test]
    async fn redirect_to_ftp_or_file_is_refused() {
        let server = redirect_server(&[
            (
                "/ftp",
                "301 Moved Permanently",
                "ftp://example.com/feed.xml",
            ),
            ("/file", "302 Found", "file:///etc/passwd"),
            ("/data", "302 Found", "data:text/plain,hello"),
        ]);
        for path in ["/ftp", "/file", "/data"] {
            let err = fetcher()
                .fetch(&server.url(path), &Validators::default(), None)
                .await
                .unwrap_err();
            assert!(
                matches!(err, FetchError::UnsupportedScheme(_)),
                "{path}: {err:?}"
            );
        }
        assert_eq!(
            server.requests().len(),
            3,
            "only the redirecting URLs were requested"
        );
    }

    #[tokio::test]
    async fn initial_url_must_be_http() {
        let err = fetcher()
            .fetch(
                &Url::parse("ftp://example.com/feed").unwrap(),
                &Validators::default(),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "refusing to fetch ftp://example.com/feed: only http and https URLs are fetched"
        );
    }

    #[tokio::test]
    async fn redirect_without_location_is_a_bad_redirect() {
        let server = serve(|_, stream| respond(stream, "302 Found", &[], b""));
        let err = fetcher()
            .fetch(&server.url("/"), &Validators::default(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FetchError::BadRedirect { status: 302 }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn retry_after_in_seconds_becomes_an_absolute_time() {
        let server = serve(|_, stream| {
            respond(
                stream,
                "503 Service Unavailable",
                &[("Retry-After", "120")],
                b"",
            )
        });
        let before = Utc::now();
        let err = fetcher()
            .fetch(&server.url("/"), &Validators::default(), None)
            .await
            .unwrap_err();
        let after = Utc::now();
        let FetchError::Status {
            status,
            retry_after: Some(retry_after),
            ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(status, 503);
        assert!(retry_after >= before + TimeDelta::seconds(120));
        assert!(retry_after <= after + TimeDelta::seconds(120));
    }

    #[tokio::test]
    async fn retry_after_as_http_date_is_parsed() {
        let server = serve(|_, stream| {
            respond(
                stream,
                "429 Too Many Requests",
                &[("Retry-After", "Wed, 21 Oct 2037 07:28:00 GMT")],
                b"",
            )
        });
        let err = fetcher()
            .fetch(&server.url("/"), &Validators::default(), None)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "HTTP status 429 Too Many Requests (retry after 2037-10-21 07:28:00 UTC)"
        );
    }

    #[tokio::test]
    async fn gone_is_just_a_status() {
        let server = serve(|_, stream| respond(stream, "410 Gone", &[], b""));
        let err = fetcher()
            .fetch(&server.url("/"), &Validators::default(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                FetchError::Status {
                    status: 410,
                    retry_after: None,
                    headers_withheld_from: None,
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "HTTP status 410 Gone");
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        assert_eq!(parse_retry_after("soon", Utc::now()), None);
        assert_eq!(parse_retry_after("-5", Utc::now()), None);
        assert_eq!(parse_retry_after(&u64::MAX.to_string(), Utc::now()), None);
    }

    #[tokio::test]
    async fn max_age_gives_fresh_for() {
        let server = serve(|_, stream| {
            respond(
                stream,
                "200 OK",
                &[("Cache-Control", "public, max-age=600")],
                FEED,
            )
        });
        let fetched = fetcher()
            .fetch(&server.url("/"), &Validators::default(), None)
            .await
            .unwrap();
        assert_eq!(fetched.fresh_for, Some(Duration::from_secs(600)));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    header::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn freshness_follows_cache_control_then_expires() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:00:00 GMT").unwrap();
        let fresh = |pairs| freshness(&headers(pairs), now);
        assert_eq!(
            fresh(&[("cache-control", "max-age=\"300\""), ("age", "100")]),
            Some(Duration::from_secs(200))
        );
        assert_eq!(
            fresh(&[("cache-control", "Max-Age=60"), ("expires", "0")]),
            Some(Duration::from_secs(60)),
            "max-age wins over Expires"
        );
        assert_eq!(fresh(&[("cache-control", "no-store, max-age=60")]), None);
        assert_eq!(fresh(&[("cache-control", "max-age=60, no-cache")]), None);
        assert_eq!(
            fresh(&[
                ("expires", "Sun, 06 Nov 1994 09:00:00 GMT"),
                ("date", "Sun, 06 Nov 1994 08:30:00 GMT"),
            ]),
            Some(Duration::from_secs(1800)),
            "Expires counts from the server's Date"
        );
        assert_eq!(
            fresh(&[("expires", "Sun, 06 Nov 1994 09:00:00 GMT")]),
            Some(Duration::from_secs(3600)),
            "and from now without one"
        );
        assert_eq!(fresh(&[("expires", "0")]), Some(Duration::ZERO));
        assert_eq!(fresh(&[]), None);
    }

    const USER: &str = "alice";
    const PASSWORD: &str = "p%40ss%20w"; // "p@ss w", percent-encoded as a URL carries it
    const BASIC: &str = "Basic YWxpY2U6cEBzcyB3"; // base64("alice:p@ss w")

    fn with_credentials(url: &Url) -> Url {
        let mut url = url.clone();
        url.set_username(USER).unwrap();
        url.set_password(Some(PASSWORD)).unwrap();
        url
    }

    fn assert_no_password(text: &str) {
        assert!(!text.contains("p%40ss"), "password leaked: {text}");
        assert!(!text.contains("p@ss"), "password leaked: {text}");
    }

    #[tokio::test]
    async fn credentials_are_sent_as_basic_auth_and_follow_same_origin_redirects() {
        let elsewhere = serve(|_, stream| respond(stream, "200 OK", &[], FEED));
        let server = hop_then_elsewhere(&elsewhere);
        let fetched = fetcher()
            .fetch(
                &with_credentials(&server.url("/a")),
                &Validators::default(),
                None,
            )
            .await
            .unwrap();
        let requests = server.requests();
        assert_eq!(requests[0].header("authorization"), Some(BASIC));
        assert_eq!(requests[1].path, "/b");
        assert_eq!(requests[1].header("authorization"), Some(BASIC));
        // Another origin (here another port) never gets them.
        assert_eq!(elsewhere.requests()[0].header("authorization"), None);
        assert_eq!(fetched.final_url, elsewhere.url("/feed"));
    }

    #[tokio::test]
    async fn a_feeds_own_headers_replace_the_defaults_and_stay_on_its_origin() {
        let elsewhere = serve(|_, stream| respond(stream, "200 OK", &[], FEED));
        let server = hop_then_elsewhere(&elsewhere);
        let feed_url = server.url("/a");
        let headers = FeedHeaders::from_pairs(
            &feed_url,
            &[
                ("Authorization", "Bearer t0k3n"),
                ("User-Agent", "NewsDesk/2"),
                ("X-Api-Key", "k"),
            ],
        );
        let fetched = fetcher()
            .fetch(&feed_url, &Validators::default(), Some(&headers))
            .await
            .unwrap();
        assert_eq!(fetched.body.as_deref(), Some(FEED));
        let requests = server.requests();
        for request in &requests {
            assert_eq!(request.header("authorization"), Some("Bearer t0k3n"));
            assert_eq!(request.header("x-api-key"), Some("k"));
            let agents: Vec<_> = request
                .headers
                .iter()
                .filter(|(name, _)| name == "user-agent")
                .collect();
            assert_eq!(agents.len(), 1, "{agents:?}");
            assert_eq!(agents[0].1, "NewsDesk/2");
            assert!(
                request.header("accept").is_some(),
                "the default Accept stays"
            );
        }
        assert_eq!(requests.len(), 2);
        let other = &elsewhere.requests()[0];
        assert_eq!(other.header("authorization"), None);
        assert_eq!(other.header("x-api-key"), None);
        assert_eq!(other.header("user-agent"), Some("feedhound-test/0"));
        let debug = format!("{headers:?}");
        assert!(
            debug.contains("x-api-key") && !debug.contains("t0k3n"),
            "{debug}"
        );
    }

    #[tokio::test]
    async fn a_refusal_where_the_feeds_headers_were_withheld_says_so() {
        let elsewhere = serve(|_, stream| respond(stream, "401 Unauthorized", &[], b""));
        let server = hop_then_elsewhere(&elsewhere);
        let feed_url = server.url("/a");
        let headers = FeedHeaders::from_pairs(&feed_url, &[("Authorization", "Bearer t0k3n")]);
        let err = fetcher()
            .fetch(&feed_url, &Validators::default(), Some(&headers))
            .await
            .unwrap_err();
        let origin = elsewhere.url("/").origin().ascii_serialization();
        assert_eq!(
            err.to_string(),
            format!(
                "HTTP status 401 Unauthorized from {origin}, another origin than the feed's url, \
                 to which its headers are not sent; if the feed has moved there, update its url"
            )
        );
        // Without headers of its own, a refusal is just its status.
        let err = fetcher()
            .fetch(&feed_url, &Validators::default(), None)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "HTTP status 401 Unauthorized");
        // Nor is a status that has nothing to do with a login.
        let missing = serve(|_, stream| respond(stream, "404 Not Found", &[], b""));
        let server = hop_then_elsewhere(&missing);
        let err = fetcher()
            .fetch(&server.url("/a"), &Validators::default(), Some(&headers))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "HTTP status 404 Not Found");
    }

    #[tokio::test]
    async fn a_redirects_own_credentials_do_not_add_a_second_authorization() {
        let routes: &'static [(&str, &str, &str)] =
            Box::leak(Box::new([("/a", "302 Found", "/b")]));
        let server = redirect_server(routes);
        let feed_url = server.url("/a");
        let headers = FeedHeaders::from_pairs(&feed_url, &[("Authorization", "Bearer t0k3n")]);
        fetcher()
            .fetch(
                &with_credentials(&feed_url),
                &Validators::default(),
                Some(&headers),
            )
            .await
            .unwrap();
        for request in server.requests() {
            let sent: Vec<_> = request
                .headers
                .iter()
                .filter(|(name, _)| name == "authorization")
                .map(|(_, value)| value.as_str())
                .collect();
            assert_eq!(sent, ["Bearer t0k3n"], "{}", request.path);
        }
    }

    #[test]
    fn a_header_feedhound_cannot_send_as_given_is_refused_without_quoting_its_value() {
        for name in [
            "If-None-Match",
            "if-modified-since",
            "Range",
            "Accept-Encoding",
            "Host",
        ] {
            let err = parse_feed_header(name, "x").unwrap_err();
            assert!(err.starts_with("cannot be set here: "), "{name}: {err}");
        }
        let err = parse_feed_header("Proxy-Authorization", "x").unwrap_err();
        assert!(err.contains("goes in the proxy's URL"), "{err}");
        assert!(
            parse_feed_header("Bad Name", "x")
                .unwrap_err()
                .contains("header name")
        );
        for value in ["secret\nX-Injected: 1", "secret\u{7f}", "  "] {
            let err = parse_feed_header("Authorization", value).unwrap_err();
            assert!(!err.contains("secret"), "{err}");
        }
        let (name, value) = parse_feed_header(" Cookie ", " session=1 ").unwrap();
        assert_eq!(name, header::COOKIE);
        assert_eq!(value, "session=1");
        let headers = FeedHeaders::new(
            &Url::parse("https://a.example/").unwrap(),
            HeaderMap::from_iter([(name, value)]),
        );
        assert!(headers.headers.values().all(HeaderValue::is_sensitive));
    }

    #[tokio::test]
    async fn credentials_never_appear_in_error_messages() {
        let loop_server = redirect_server(&[
            ("/a", "302 Found", "/b"),
            ("/b", "302 Found", "/a"),
            ("/ftp", "302 Found", "ftp://alice:p%40ss%20w@example.com/"),
        ]);
        let refused_port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let refused = Url::parse(&format!("http://127.0.0.1:{refused_port}/")).unwrap();
        let urls = [
            loop_server.url("/a"),
            loop_server.url("/ftp"),
            refused,
            Url::parse("ftp://example.com/feed").unwrap(),
        ];
        for url in urls {
            let url = with_credentials(&url);
            let err = fetcher()
                .fetch(&url, &Validators::default(), None)
                .await
                .unwrap_err();
            println!("{err}");
            assert_no_password(&err.to_string());
            assert_no_password(&format!("{err:?}"));
        }
    }

    #[tokio::test]
    async fn fetched_debug_shows_the_body_length_and_no_password() {
        let server = redirect_server(&[("/old", "301 Moved Permanently", "/new")]);
        let fetched = fetcher()
            .fetch(
                &with_credentials(&server.url("/old")),
                &Validators::default(),
                None,
            )
            .await
            .unwrap();
        // Same-origin redirect: the credentials stay on the URL the caller may store.
        assert_eq!(fetched.final_url.password(), Some(PASSWORD));
        let debug = format!("{fetched:?}");
        assert_no_password(&debug);
        assert!(
            debug.contains(&format!("body_len: Some({})", FEED.len())),
            "{debug}"
        );
    }

    #[test]
    fn redact_hides_passwords_lone_user_names_and_secret_parameters() {
        let redacted = |url: &str| redact(&Url::parse(url).unwrap());
        assert_eq!(
            redacted("https://alice:s3cret@example.com/feed"),
            "https://alice:***@example.com/feed"
        );
        assert_eq!(
            redacted("https://ghp_abc123@example.com/feed"),
            "https://***@example.com/feed"
        );
        assert_eq!(
            redacted("https://example.com/feed?page=2&api_key=abc&Token=xyz&sig=s"),
            "https://example.com/feed?page=2&api_key=***&Token=***&sig=***"
        );
        assert_eq!(
            redacted("https://example.com/feed?page=2&author=bob"),
            "https://example.com/feed?page=2&author=bob"
        );
    }
}
