//! Shared set-up for the store's unit tests: a fresh database with one feed, and a way to
//! record a parsed document for it.

use chrono::{DateTime, Utc};

use super::{Applied, FeedResult, FetchState, Store};
use crate::config::FeedConfig;
use crate::model::{ParsedEntry, ParsedFeed};

/// A store in a temp dir with one feed named "Wire"; returns the feed's id.
pub(crate) fn store_with_one_feed() -> (tempfile::TempDir, Store, i64) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("db")).unwrap();
    store
        .sync_feeds(&[FeedConfig {
            url: url::Url::parse("http://a.example/rss").unwrap(),
            name: Some("Wire".into()),
            interval: None,
            tags: vec![],
        }])
        .unwrap();
    let id = store.due_feeds(None).unwrap()[0].id;
    (dir, store, id)
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
