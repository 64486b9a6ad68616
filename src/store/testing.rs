//! Shared set-up for the store's unit tests: a fresh database with one feed, and a way to
//! record a parsed document for it.

use chrono::{DateTime, Utc};

use super::{Applied, FeedResult, FetchState, Store};
use crate::config::FeedConfig;
use crate::model::{ParsedEntry, ParsedFeed};

/// A store in a temp dir with one feed named "Wire"; returns the feed's id.
pub(crate) fn store_with_one_feed() -> (tempfile::TempDir, Store, i64) {
    let (dir, store, ids) = store_with_feeds(&["Wire"]);
    (dir, store, ids[0])
}

/// A store in a temp dir with a feed per name; returns their ids in that order.
pub(crate) fn store_with_feeds(names: &[&str]) -> (tempfile::TempDir, Store, Vec<i64>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("db")).unwrap();
    let feeds: Vec<FeedConfig> = names
        .iter()
        .enumerate()
        .map(|(i, name)| FeedConfig {
            url: url::Url::parse(&format!("http://{i}.example/rss")).unwrap(),
            name: Some((*name).into()),
            interval: None,
            tags: vec![],
            headers: None,
            fetch_articles: false,
        })
        .collect();
    store.sync_feeds(&feeds).unwrap();
    let due = store.due_feeds(None).unwrap();
    let ids = feeds
        .iter()
        .map(|feed| due.iter().find(|f| f.url == feed.url.as_str()).unwrap().id)
        .collect();
    (dir, store, ids)
}

/// A database at `path` with the migrations before `migration` applied, as an older feedhound
/// left it; `Store::open` then upgrades it.
pub(crate) fn database_before(path: &std::path::Path, migration: &str) -> rusqlite::Connection {
    let applied = super::MIGRATIONS
        .iter()
        .position(|(name, _)| *name == migration)
        .unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    for (_, sql) in &super::MIGRATIONS[..applied] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", applied as i64)
        .unwrap();
    conn
}

/// Records a 200 whose document holds `entries` (no mentions).
pub(crate) fn store_document(
    store: &mut Store,
    feed_id: i64,
    entries: Vec<ParsedEntry>,
    body_hash: &str,
) -> Applied {
    store_document_at(store, feed_id, entries, body_hash, Utc::now())
}

/// [`store_document`], fetched at `fetched_at`.
pub(crate) fn store_document_at(
    store: &mut Store,
    feed_id: i64,
    entries: Vec<ParsedEntry>,
    body_hash: &str,
    fetched_at: DateTime<Utc>,
) -> Applied {
    let state = FetchState::at(fetched_at, Some(200));
    let result = FeedResult::Parsed {
        etag: None,
        last_modified: None,
        body_hash: body_hash.into(),
        feed: ParsedFeed {
            entries,
            ..Default::default()
        },
        mentions: Vec::new(),
    };
    store.apply(feed_id, &state, &result).unwrap()
}
