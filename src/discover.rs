//! `feedhound discover URL`: the feeds a web site offers, for the user to add to the config.
//!
//! Users know a publisher's site, rarely its feed's address. The site's page names its feeds in
//! `<link rel="alternate">` tags; a page that names none often still serves one at a usual path
//! (`/feed`, `/rss.xml`…). Each candidate is fetched and parsed as a poll would, so what is
//! listed polls, with its title and how many entries it holds now. Nothing is stored.
//!
//! The page's publisher chose its links, so candidates are fetched as article pages are: never
//! on this machine or its private network, unless the page itself is there (the user typed its
//! address) and they are on its origin, or the user lifted the guard
//! (`[polling] private_article_links`).

use anyhow::Context as _;
use futures_util::future::join_all;
use serde::Serialize;
use url::{Origin, Url};

use crate::config::{Config, fetched_document};
use crate::fetch::{FetchSettings, Fetcher, Validators, is_local, redact};
use crate::model::ParsedFeed;
use crate::parse::{ParseError, parse_feed};

/// Where sites often serve a feed without naming it in their pages (WordPress, Ghost, Hugo,
/// Jekyll and static-site defaults), tried on the page's origin when it names none.
const USUAL_PATHS: [&str; 7] = [
    "/feed",
    "/rss",
    "/feed.xml",
    "/rss.xml",
    "/atom.xml",
    "/index.xml",
    "/feed.json",
];

/// One feed found.
#[derive(Debug, Serialize)]
pub struct FoundFeed {
    /// As it goes in the config's `url`; shown through [`redact`].
    pub url: String,
    pub title: Option<String>,
    pub entries: usize,
    /// Whether the config already lists it.
    pub in_config: bool,
}

/// A feed the page names that could not be used, and why.
#[derive(Debug, Serialize)]
pub struct Unusable {
    pub url: String,
    pub reason: String,
}

/// What `discover` found at a URL.
#[derive(Debug, Serialize)]
pub struct Discovery {
    /// The URL the user gave is a feed itself: it is `found[0]`.
    pub is_feed: bool,
    /// Nothing was named by the page, so the usual paths were tried.
    pub tried_usual_paths: bool,
    pub found: Vec<FoundFeed>,
    /// Feeds the page names that failed; the usual paths' failures are expected and left out.
    pub unusable: Vec<Unusable>,
}

/// Finds the feeds at `url`: the URL itself when it is one, else the feeds its page names,
/// else those at the usual paths of its origin. An error when `url` cannot be fetched, or is
/// neither a page nor a feed.
pub async fn discover(config: &Config, url: &Url) -> anyhow::Result<Discovery> {
    let fetcher = Fetcher::new(FetchSettings::from(&config.polling))?;
    let in_config = |url: &Url| {
        let document = fetched_document(url);
        config
            .feeds
            .iter()
            .any(|feed| fetched_document(&feed.url) == document)
    };
    let fetched = fetcher
        .fetch(url, &Validators::default(), None)
        .await
        .with_context(|| format!("cannot fetch {}", redact(url)))?;
    let body = fetched.body.unwrap_or_default();
    let links = match parse_feed(&body, fetched.content_type.as_deref(), &fetched.final_url) {
        Ok(feed) => {
            return Ok(Discovery {
                is_feed: true,
                tried_usual_paths: false,
                found: vec![found(url, &feed, in_config(url))],
                unusable: Vec::new(),
            });
        }
        Err(ParseError::HtmlPage { feed_links }) => feed_links,
        Err(err) => anyhow::bail!("{} is neither a web page nor a feed: {err}", redact(url)),
    };
    let page = &fetched.final_url;
    let tried_usual_paths = links.is_empty();
    let candidates: Vec<Url> = if tried_usual_paths {
        USUAL_PATHS
            .iter()
            .filter_map(|path| page.join(path).ok())
            .collect()
    } else {
        links
            .iter()
            .filter_map(|link| Url::parse(link).ok())
            .collect()
    };
    // The page's own origin is open to its links when the page is local: the user chose it.
    let local_origin = is_local(page).then(|| page.origin());
    let tries = candidates
        .iter()
        .map(|candidate| try_feed(&fetcher, candidate, local_origin.as_ref()));
    let mut discovery = Discovery {
        is_feed: false,
        tried_usual_paths,
        found: Vec::new(),
        unusable: Vec::new(),
    };
    for (candidate, tried) in candidates.iter().zip(join_all(tries).await) {
        match tried {
            Ok(feed) => {
                let found = found(candidate, &feed, in_config(candidate));
                discovery.found.push(found);
            }
            Err(reason) if !tried_usual_paths => discovery.unusable.push(Unusable {
                url: redact(candidate),
                reason,
            }),
            Err(_) => {}
        }
    }
    Ok(discovery)
}

/// A candidate fetched and parsed, or why it is not a feed.
async fn try_feed(
    fetcher: &Fetcher,
    candidate: &Url,
    local_origin: Option<&Origin>,
) -> Result<ParsedFeed, String> {
    let fetched = fetcher
        .fetch_page(candidate, None, local_origin)
        .await
        .map_err(|err| err.to_string())?;
    let body = fetched.body.unwrap_or_default();
    parse_feed(&body, fetched.content_type.as_deref(), &fetched.final_url)
        .map_err(|err| err.to_string())
}

fn found(url: &Url, feed: &ParsedFeed, in_config: bool) -> FoundFeed {
    FoundFeed {
        url: redact(url),
        title: feed.title.clone().filter(|title| !title.trim().is_empty()),
        entries: feed.entries.len(),
        in_config,
    }
}

impl Discovery {
    /// The `[[feed]]` tables of the feeds not yet in the config, to paste into it.
    pub fn config_tables(&self) -> String {
        let mut tables = String::new();
        for feed in self.found.iter().filter(|feed| !feed.in_config) {
            tables.push_str(&format!("\n[[feed]]\nurl = {}\n", toml_string(&feed.url)));
            if let Some(title) = &feed.title {
                tables.push_str(&format!("name = {}\n", toml_string(title)));
            }
        }
        tables
    }
}

/// `text` as a TOML basic string: a feed's title is the publisher's and may hold quotes.
fn toml_string(text: &str) -> String {
    toml_edit::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_tables_quote_the_publishers_title_and_skip_feeds_already_listed() {
        let discovery = Discovery {
            is_feed: false,
            tried_usual_paths: false,
            found: vec![
                FoundFeed {
                    url: "https://news.example/rss.xml".into(),
                    title: Some("The \"Harbor\" Daily\n".into()),
                    entries: 3,
                    in_config: false,
                },
                FoundFeed {
                    url: "https://news.example/comments.xml".into(),
                    title: None,
                    entries: 9,
                    in_config: true,
                },
            ],
            unusable: Vec::new(),
        };
        let tables = discovery.config_tables();
        let parsed: toml::Table = toml::from_str(&tables).unwrap();
        let feeds = parsed["feed"].as_array().unwrap();
        assert_eq!(feeds.len(), 1, "{tables}");
        assert_eq!(
            feeds[0]["url"].as_str(),
            Some("https://news.example/rss.xml")
        );
        assert_eq!(feeds[0]["name"].as_str(), Some("The \"Harbor\" Daily\n"));
    }
}
