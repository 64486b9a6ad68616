//! HTTP fetching of feed documents. (interface draft — to be implemented)

use std::time::Duration;

use chrono::{DateTime, Utc};
use url::Url;

/// Limits and identity for every request; built once from the validated config.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// Whole-request deadline: connect, headers and body.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Cap on the (decompressed) body, enforced while streaming.
    pub max_body_size: u64,
    pub user_agent: String,
}

/// The conditional-GET validators stored from the previous 200.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// A response we can use: a fresh body, or 304 Not Modified (`body` is `None`).
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub body: Option<Vec<u8>>,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Where the document was finally fetched from, after redirects.
    pub final_url: Url,
    /// Set when every redirect hop on the way was permanent (301/308): the feed has moved here.
    pub permanent_redirect: Option<Url>,
    /// How long the server says the response stays fresh (`Cache-Control: max-age`, `Expires`).
    pub fresh_for: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("network error: {0}")]
    Network(String),
    /// Any non-2xx, non-304 final status. `retry_after` comes from a `Retry-After` header.
    #[error("HTTP status {status}")]
    Status {
        status: u16,
        retry_after: Option<DateTime<Utc>>,
    },
    #[error("response body is larger than max_body_size ({limit} bytes)")]
    TooLarge { limit: u64 },
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    #[error("redirect loop through {0}")]
    RedirectLoop(String),
    #[error("refusing to fetch {0}: only http and https URLs are fetched")]
    UnsupportedScheme(String),
}

pub struct Fetcher {
    _settings: FetchSettings,
}

impl Fetcher {
    pub fn new(settings: FetchSettings) -> anyhow::Result<Self> {
        Ok(Fetcher {
            _settings: settings,
        })
    }

    pub async fn fetch(&self, _url: &Url, _validators: &Validators) -> Result<Fetched, FetchError> {
        unimplemented!()
    }
}

/// `url` with any password replaced, for logs and messages.
pub fn redact(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    url.to_string()
}
