//! `feedhound discover URL`: the feeds a web site offers, for the user to add to the config.
//!
//! Users know a publisher's site, rarely its feed's address. The site's page names its feeds in
//! `<link rel="alternate">` tags; a page that names none often still serves one at a usual path
//! (`/feed`, `/rss.xml`…). Each candidate is fetched and parsed as a poll would, so what is
//! listed polls, with its title and how many entries it holds now. Nothing is stored.
//!
//! The page's publisher chose its links, so a link off the origin of the URL the user typed is
//! fetched as article pages are: never on this machine or its private network, unless the user
//! lifted the guard (`[polling] private_article_links`). Links on that origin, and the usual
//! paths there, are the user's choice and are fetched as a configured feed is.

use std::collections::HashSet;

use anyhow::Context as _;
use futures_util::{StreamExt as _, stream};
use serde::Serialize;
use url::Url;

use crate::config::{Config, fetched_document};
use crate::fetch::{FetchSettings, Fetcher, Validators, redact};
use crate::model::ParsedFeed;
use crate::parse::{ParseError, parse_feed};

/// Where sites often serve a feed without naming it in their pages (WordPress, Ghost, Hugo,
/// Jekyll and static-site defaults), tried on the page's origin when it names none.
pub const USUAL_PATHS: [&str; 7] = [
    "/feed",
    "/rss",
    "/feed.xml",
    "/rss.xml",
    "/atom.xml",
    "/index.xml",
    "/feed.json",
];

/// Candidates fetched at once: the default `per_host_concurrency`, as they mostly share a host.
const AT_ONCE: usize = 2;

/// One feed found.
#[derive(Debug, Serialize)]
pub struct FoundFeed {
    /// Where it is, after any permanent redirect, shown through [`redact`].
    pub url: String,
    /// The same, as it goes in the config: with what `redact` masks, which the user typed or
    /// the page published.
    #[serde(skip)]
    pub config_url: Url,
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
    let in_config = |found: &Url| {
        let document = fetched_document(found);
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
            let mut found = found(fetched.permanent_redirect.as_ref().unwrap_or(url), &feed);
            found.in_config = in_config(&found.config_url);
            return Ok(Discovery {
                is_feed: true,
                tried_usual_paths: false,
                found: vec![found],
                unusable: Vec::new(),
            });
        }
        Err(ParseError::HtmlPage { feed_links }) => feed_links,
        Err(err) => anyhow::bail!("{} is neither a web page nor a feed: {err}", redact(url)),
    };
    let tried_usual_paths = links.is_empty();
    let joined: Vec<Url> = if tried_usual_paths {
        USUAL_PATHS
            .iter()
            .filter_map(|path| url.join(path).ok())
            .collect()
    } else {
        links
            .iter()
            .filter_map(|link| Url::parse(link).ok())
            .collect()
    };
    // Each document once, and not the page itself (a page may link to itself).
    let mut seen = HashSet::from([fetched_document(url), fetched_document(&fetched.final_url)]);
    let candidates: Vec<Url> = joined
        .into_iter()
        .filter(|candidate| seen.insert(fetched_document(candidate)))
        .collect();
    let tried: Vec<_> = stream::iter(&candidates)
        .map(|candidate| try_feed(&fetcher, candidate, url))
        .buffered(AT_ONCE)
        .collect()
        .await;
    let mut discovery = Discovery {
        is_feed: false,
        tried_usual_paths,
        found: Vec::new(),
        unusable: Vec::new(),
    };
    let mut found_at = HashSet::new();
    for (candidate, tried) in candidates.iter().zip(tried) {
        match tried {
            // `/feed` and `/rss` often move to the same document.
            Ok(mut found) if found_at.insert(fetched_document(&found.config_url)) => {
                found.in_config = in_config(&found.config_url);
                discovery.found.push(found);
            }
            Ok(_) => {}
            Err(reason) if !tried_usual_paths => discovery.unusable.push(Unusable {
                url: redact(candidate),
                reason,
            }),
            Err(_) => {}
        }
    }
    Ok(discovery)
}

/// A candidate fetched and parsed, listed where it lives (after a permanent redirect), or why it
/// is not a feed. On the origin of the URL the user typed it is fetched as a feed; elsewhere
/// through the article pages' network guard (see the module's header). Only the listing is
/// kept: the candidates' documents do not wait in memory for the slowest.
async fn try_feed(fetcher: &Fetcher, candidate: &Url, typed: &Url) -> Result<FoundFeed, String> {
    let fetched = if candidate.origin() == typed.origin() {
        fetcher.fetch(candidate, &Validators::default(), None).await
    } else {
        fetcher.fetch_page(candidate, None, None).await
    }
    .map_err(|err| err.to_string())?;
    let body = fetched.body.unwrap_or_default();
    let feed = parse_feed(&body, fetched.content_type.as_deref(), &fetched.final_url)
        .map_err(|err| err.to_string())?;
    Ok(found(
        fetched.permanent_redirect.as_ref().unwrap_or(candidate),
        &feed,
    ))
}

/// `feed`'s listing at `url`; whether the config lists it is for the caller to say.
fn found(url: &Url, feed: &ParsedFeed) -> FoundFeed {
    FoundFeed {
        url: redact(url),
        config_url: url.clone(),
        title: feed.title.clone().filter(|title| !title.trim().is_empty()),
        entries: feed.entries.len(),
        in_config: false,
    }
}

impl Discovery {
    /// The `[[feed]]` tables of the feeds not yet in the config, to paste into it.
    pub fn config_tables(&self) -> String {
        let mut tables = String::new();
        for feed in self.found.iter().filter(|feed| !feed.in_config) {
            let url = toml_string(feed.config_url.as_str());
            tables.push_str(&format!("\n[[feed]]\nurl = {url}\n"));
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
    fn the_config_tables_hold_the_url_that_polls_quote_the_title_and_skip_feeds_listed() {
        let discovery = Discovery {
            is_feed: false,
            tried_usual_paths: false,
            found: vec![
                FoundFeed {
                    url: "https://news.example/rss.xml?token=***".into(),
                    config_url: Url::parse("https://news.example/rss.xml?token=abc").unwrap(),
                    title: Some("The \"Harbor\" Daily\n".into()),
                    entries: 3,
                    in_config: false,
                },
                FoundFeed {
                    url: "https://news.example/comments.xml".into(),
                    config_url: Url::parse("https://news.example/comments.xml").unwrap(),
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
            Some("https://news.example/rss.xml?token=abc"),
            "the URL that polls, not the one shown"
        );
        assert_eq!(feeds[0]["name"].as_str(), Some("The \"Harbor\" Daily\n"));
    }
}
