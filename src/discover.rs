//! `feedhound discover URL`: the feeds a web site offers, for the user to add to the config.
//!
//! Users know a publisher's site, rarely its feed's address. The site's page names its feeds in
//! `<link rel="alternate">` tags; a page that names none often still serves one at a usual path
//! (`/feed`, `/rss.xml`…). Each candidate is fetched and parsed as a poll would, so what is
//! listed polls, with its title and how many entries it holds now. Nothing is stored; with
//! `--add`, the feeds the user picks are added to the config file through [`config_edit`].
//!
//! The page's publisher chose its links, so a link off the origin of the URL the user typed is
//! fetched through the article pages' guard (asking for a feed all the same): never on this
//! machine or its private network, unless the user lifted the guard (`[polling]
//! private_article_links`). Links on that origin, and the usual paths there, are the user's
//! choice and are fetched as a configured feed is.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

use anyhow::Context as _;
use futures_util::{StreamExt as _, stream};
use serde::Serialize;
use url::Url;

use crate::config::{Config, FeedConfig, fetched_document};
use crate::config_edit::{self, ConfigFile};
use crate::fetch::{FetchError, FetchSettings, Fetcher, Limits, Validators, host_key, redact};
use crate::model::ParsedFeed;
use crate::parse::{ParseError, parse_feed};

/// Where sites often serve a feed without naming it in their pages (WordPress, Ghost, Hugo,
/// Jekyll and static-site defaults), tried at the page's site's root and in its folder when the
/// page names no feed that can be read.
pub const USUAL_PATHS: [&str; 7] = [
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
    /// The page names no feed that could be read, so the usual paths were tried.
    pub tried_usual_paths: bool,
    pub found: Vec<FoundFeed>,
    /// Feeds the page names that failed.
    pub unusable: Vec<Unusable>,
    /// Usual paths that could not be checked: the server refused or failed, or what it served
    /// did not read as a feed. A 404, a 410 or a web page there is what most sites answer, and
    /// is left out; a 403 at each of them is a site turning away clients like this one.
    pub usual_paths_failed: Vec<Unusable>,
}

/// Finds the feeds at `url`: the URL itself when it is one, else the feeds its page names,
/// else (none of them read) those at the usual paths. An error when `url` cannot be fetched,
/// or is neither a page nor a feed.
pub async fn discover(config: &Config, url: &Url) -> anyhow::Result<Discovery> {
    let fetcher = Fetcher::new(FetchSettings::from(&config.polling))?;
    // The candidates mostly share the page's host: asked for as politely as its feeds are.
    let limits = Limits::new(config);
    let in_config = |found: &Url| {
        let document = fetched_document(found);
        config
            .feeds
            .iter()
            .any(|feed| fetched_document(&feed.url) == document)
    };
    let slot = limits.acquire(&host_key(url)).await?;
    let fetched = fetcher
        .fetch(url, &Validators::default(), None)
        .await
        .with_context(|| format!("cannot fetch {}", redact(url)))?;
    drop(slot);
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
                usual_paths_failed: Vec::new(),
            });
        }
        Err(ParseError::HtmlPage { feed_links }) => feed_links,
        Err(err) => anyhow::bail!("{} is neither a web page nor a feed: {err}", redact(url)),
    };
    let named: Vec<Url> = links
        .iter()
        .filter_map(|link| Url::parse(link).ok())
        .collect();
    let mut discovery = Discovery {
        is_feed: false,
        tried_usual_paths: false,
        found: Vec::new(),
        unusable: Vec::new(),
        usual_paths_failed: Vec::new(),
    };
    // Each document once, and not the page itself (a page may link to itself).
    let mut tried = HashSet::from([fetched_document(url), fetched_document(&fetched.final_url)]);
    let mut found_at = HashSet::new();
    // The user chose the typed origin, and the page's own when it only moved to https or
    // another port of the same host.
    let mut trusted = vec![url.origin()];
    if fetched.final_url.host() == url.host() {
        trusted.push(fetched.final_url.origin());
    }
    let mut try_each = async |candidates: Vec<Url>, discovery: &mut Discovery| {
        let candidates: Vec<Url> = candidates
            .into_iter()
            .filter(|candidate| tried.insert(fetched_document(candidate)))
            .collect();
        let results: Vec<_> = stream::iter(&candidates)
            .map(|candidate| try_feed(&fetcher, &limits, candidate, &trusted))
            .buffered(config.polling.concurrency)
            .collect()
            .await;
        for (candidate, result) in candidates.iter().zip(results) {
            match result {
                // `/feed` and `/rss` often move to the same document.
                Ok(mut found) if found_at.insert(fetched_document(&found.config_url)) => {
                    found.in_config = in_config(&found.config_url);
                    discovery.found.push(found);
                }
                Ok(_) => {}
                Err(NotAFeed { absent: true, .. }) if discovery.tried_usual_paths => {}
                Err(NotAFeed { reason, .. }) => {
                    let failed = Unusable {
                        url: redact(candidate),
                        reason,
                    };
                    if discovery.tried_usual_paths {
                        discovery.usual_paths_failed.push(failed);
                    } else {
                        discovery.unusable.push(failed);
                    }
                }
            }
        }
    };
    try_each(named, &mut discovery).await;
    if discovery.found.is_empty() {
        discovery.tried_usual_paths = true;
        try_each(usual_candidates(&fetched.final_url), &mut discovery).await;
    }
    Ok(discovery)
}

/// The usual paths at the page's site's root, then in the page's folder (`/blog/feed` for
/// `/blog`, `/blog/` or `/blog/post.html`). The root first: a post's folder often serves that
/// post's comments feed (WordPress's `/my-post/feed`), which must not be the first listed.
fn usual_candidates(page: &Url) -> Vec<Url> {
    let mut folder = page.clone();
    folder.set_query(None);
    folder.set_fragment(None);
    let path = folder.path().to_owned();
    let last_segment = path.rsplit('/').next().unwrap_or_default();
    // A last segment without a dot names a folder (`/blog`), one with a dot a file in it.
    if !last_segment.is_empty() && !last_segment.contains('.') {
        folder.set_path(&format!("{path}/"));
    }
    let mut folders: Vec<Url> = page.join("/").into_iter().collect();
    if let Ok(folder) = folder.join("./")
        && !folders.contains(&folder)
    {
        folders.push(folder);
    }
    folders
        .iter()
        .flat_map(|folder| {
            USUAL_PATHS
                .iter()
                .filter_map(|usual| folder.join(usual.trim_start_matches('/')).ok())
        })
        .collect()
}

/// Why a candidate is not a feed.
struct NotAFeed {
    reason: String,
    /// Nothing is there: a 404 or 410, or a web page (a site's answer to any path).
    absent: bool,
}

impl NotAFeed {
    fn fetch(err: &FetchError) -> NotAFeed {
        NotAFeed {
            reason: err.to_string(),
            absent: matches!(
                err,
                FetchError::Status {
                    status: 404 | 410,
                    ..
                }
            ),
        }
    }

    fn parse(err: &ParseError) -> NotAFeed {
        NotAFeed {
            reason: err.to_string(),
            absent: matches!(err, ParseError::HtmlPage { .. }),
        }
    }
}

/// A candidate fetched and parsed, listed where it lives (after a permanent redirect), or why it
/// is not a feed. On a `trusted` origin it is fetched as a feed; elsewhere through the article
/// pages' network guard (see the module's header). Only the listing is
/// kept: the candidates' documents do not wait in memory for the slowest.
async fn try_feed(
    fetcher: &Fetcher,
    limits: &Limits,
    candidate: &Url,
    trusted: &[url::Origin],
) -> Result<FoundFeed, NotAFeed> {
    let slot = limits
        .acquire(&host_key(candidate))
        .await
        .map_err(|err| NotAFeed {
            reason: err.to_string(),
            absent: false,
        })?;
    let fetched = if trusted.contains(&candidate.origin()) {
        fetcher.fetch(candidate, &Validators::default(), None).await
    } else {
        fetcher.fetch_linked_feed(candidate).await
    }
    .map_err(|err| NotAFeed::fetch(&err))?;
    drop(slot);
    let body = fetched.body.unwrap_or_default();
    let feed = parse_feed(&body, fetched.content_type.as_deref(), &fetched.final_url)
        .map_err(|err| NotAFeed::parse(&err))?;
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
        // On one line: it is shown in a table and becomes the feed's `name`.
        title: feed
            .title
            .as_deref()
            .map(|title| title.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|title| !title.is_empty()),
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

/// Which of the feeds found `discover --add` adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The one feed found that the config does not list; refused when there are several, as
    /// a site's other feeds (comments, one category) are seldom wanted too.
    TheNewOne,
    /// Every feed found that the config does not list.
    All,
    /// By their numbers in the listing, from 1.
    Numbers(Vec<usize>),
    /// The feed at this URL, as the listing shows it: unlike a number, it does not depend on
    /// which feeds answered this time.
    Url(Url),
}

impl FromStr for Choice {
    type Err = String;

    /// `""` (`--add` alone), `all`, numbers such as `1,3`, or a feed's URL.
    fn from_str(text: &str) -> Result<Choice, String> {
        match text.trim() {
            "" => Ok(Choice::TheNewOne),
            "all" => Ok(Choice::All),
            url if url.contains("://") => Url::parse(url)
                .map(Choice::Url)
                .map_err(|err| format!("the feed to add is not a URL: {err}")),
            numbers => numbers
                .split(',')
                .map(|number| match number.trim().parse::<usize>() {
                    Ok(number) if number > 0 => Ok(number),
                    _ => Err(format!(
                        "`{}` is not a feed's number in the list; give `all` or numbers such as \
                         `1,3`, or a feed's URL from the list (the site's URL goes before `--add`)",
                        number.trim()
                    )),
                })
                .collect::<Result<_, _>>()
                .map(Choice::Numbers),
        }
    }
}

impl Discovery {
    /// The feeds `choice` picks, in the listing's order; an error that says how to choose when
    /// it picks none that exists or is ambiguous.
    pub fn chosen(&self, choice: &Choice) -> anyhow::Result<Vec<&FoundFeed>> {
        let not_listed = || self.found.iter().filter(|feed| !feed.in_config);
        match choice {
            Choice::All => Ok(not_listed().collect()),
            Choice::TheNewOne => {
                let new: Vec<_> = not_listed().collect();
                if new.len() > 1 {
                    let numbers: Vec<String> = (self.found.iter().enumerate())
                        .filter(|(_, feed)| !feed.in_config)
                        .map(|(index, _)| (index + 1).to_string())
                        .collect();
                    anyhow::bail!(
                        "{} of the feeds found are not in the config: name the ones to add by their \
                         numbers in the list (`--add {}`), or add them all (`--add all`)",
                        new.len(),
                        numbers.join(",")
                    );
                }
                Ok(new)
            }
            Choice::Numbers(numbers) => {
                if let Some(missing) = numbers.iter().find(|&&n| n > self.found.len()) {
                    anyhow::bail!(
                        "there is no feed {missing}: the list has {} (`--add` takes their numbers)",
                        self.found.len()
                    );
                }
                Ok(self
                    .found
                    .iter()
                    .enumerate()
                    .filter(|(index, _)| numbers.contains(&(index + 1)))
                    .map(|(_, feed)| feed)
                    .collect())
            }
            Choice::Url(url) => {
                let wanted = fetched_document(url);
                match (self.found.iter()).find(|feed| fetched_document(&feed.config_url) == wanted)
                {
                    Some(feed) => Ok(vec![feed]),
                    None => anyhow::bail!(
                        "no feed found is at {}: give a URL or a number from the list",
                        redact(url)
                    ),
                }
            }
        }
    }
}

/// Adds `chosen` to the config file at `config_path` (created when missing), each under its
/// title as `name`, leaving out those the file lists by then. Returns what was added.
pub fn add_to_config(config_path: &Path, chosen: &[&FoundFeed]) -> anyhow::Result<Vec<FeedConfig>> {
    let file = ConfigFile::read(config_path)?;
    let config = config_edit::parse_for_adding(&file.text, config_path)?;
    let mut listed: HashSet<Url> = config
        .feeds
        .iter()
        .map(|feed| fetched_document(&feed.url))
        .collect();
    let added: Vec<FeedConfig> = chosen
        .iter()
        .filter(|feed| listed.insert(fetched_document(&feed.config_url)))
        .map(|feed| FeedConfig {
            url: feed.config_url.clone(),
            name: feed.title.clone(),
            interval: None,
            tags: Vec::new(),
            headers: None,
            fetch_articles: false,
        })
        .collect();
    if !added.is_empty() {
        let updated = config_edit::append_feeds(
            &file.text,
            config_path,
            &config,
            &added,
            "feedhound discover",
        )?;
        file.save(&updated)?;
    }
    Ok(added)
}

/// `text` as a TOML basic string: a feed's title is the publisher's and may hold quotes.
fn toml_string(text: &str) -> String {
    toml_edit::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(path: &str, in_config: bool) -> FoundFeed {
        let url = Url::parse("https://news.example/")
            .unwrap()
            .join(path)
            .unwrap();
        FoundFeed {
            url: url.to_string(),
            config_url: url,
            title: None,
            entries: 1,
            in_config,
        }
    }

    #[test]
    fn add_takes_the_one_new_feed_all_of_them_or_the_numbers_given() {
        let parse = |text: &str| text.parse::<Choice>();
        assert_eq!(parse(""), Ok(Choice::TheNewOne));
        assert_eq!(parse("all"), Ok(Choice::All));
        assert_eq!(parse("1, 3"), Ok(Choice::Numbers(vec![1, 3])));
        for wrong in ["0", "first", "1,,2", "-1"] {
            assert!(parse(wrong).is_err(), "{wrong}");
        }

        let mut discovery = Discovery {
            is_feed: false,
            tried_usual_paths: false,
            found: vec![listed("/rss", true), listed("/atom", false)],
            unusable: Vec::new(),
            usual_paths_failed: Vec::new(),
        };
        let paths = |chosen: Vec<&FoundFeed>| -> Vec<String> {
            chosen
                .iter()
                .map(|feed| feed.config_url.path().to_owned())
                .collect()
        };
        assert_eq!(
            paths(discovery.chosen(&Choice::TheNewOne).unwrap()),
            ["/atom"]
        );
        discovery.found.push(listed("/comments", false));
        let ambiguous = discovery.chosen(&Choice::TheNewOne).unwrap_err();
        assert!(
            ambiguous
                .to_string()
                .starts_with("2 of the feeds found are not in the config"),
            "{ambiguous}"
        );
        assert_eq!(
            paths(discovery.chosen(&Choice::All).unwrap()),
            ["/atom", "/comments"]
        );
        assert_eq!(
            paths(discovery.chosen(&Choice::Numbers(vec![3, 1])).unwrap()),
            ["/rss", "/comments"],
            "in the list's order; one the config lists is left for the file to say"
        );
        assert!(discovery.chosen(&Choice::Numbers(vec![4])).is_err());

        let by_url = parse("HTTPS://News.Example/comments#latest").unwrap();
        assert_eq!(
            paths(discovery.chosen(&by_url).unwrap()),
            ["/comments"],
            "as the config compares URLs: case of scheme and host, fragment"
        );
        let elsewhere = parse("https://news.example/other").unwrap();
        assert!(discovery.chosen(&elsewhere).is_err());
        assert!(parse("https://").is_err());
    }

    #[test]
    fn the_usual_paths_are_tried_at_the_root_then_in_the_pages_folder() {
        let first_of_each_folder = |page: &str| -> Vec<String> {
            let candidates = usual_candidates(&Url::parse(page).unwrap());
            assert_eq!(candidates.len() % USUAL_PATHS.len(), 0);
            candidates
                .iter()
                .step_by(USUAL_PATHS.len())
                .map(Url::to_string)
                .collect()
        };
        let both = [
            "https://news.example/feed",
            "https://news.example/blog/feed",
        ];
        assert_eq!(first_of_each_folder("https://news.example/blog"), both);
        assert_eq!(first_of_each_folder("https://news.example/blog/"), both);
        assert_eq!(
            first_of_each_folder("https://news.example/blog/index.html?page=2#top"),
            both
        );
        assert_eq!(
            first_of_each_folder("https://news.example/"),
            ["https://news.example/feed"]
        );
        assert_eq!(
            first_of_each_folder("https://news.example/index.php"),
            ["https://news.example/feed"]
        );
    }

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
            usual_paths_failed: Vec::new(),
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
