//! Full-text search over stored entries, through the FTS5 index of migrations 0004 and 0020.
//!
//! The index (`entries_fts`) holds each entry's title, summary and content, and the text of its
//! article page when its feed has `fetch_articles` (migration 0020). Writing feed results does not
//! wait for it: indexing was a third of the writer's work, and a poll's job is to store and flag
//! stories. The index catches up afterwards, in slices of [`INDEX_SLICE`] entries, each its own
//! transaction: the daemon's writer thread does it whenever it has no feed results to write, and
//! [`Store::search`] (so `feedhound search`) and `feedhound reindex --pending` do it before they
//! answer. What it lacks is the entries above `search_state.indexed_through` (new ones) and those a
//! trigger queued in `search_queue` (edited ones, and those whose page was read; migrations 0006
//! and 0008 say why it is not indexed row by row, from the time when the catch-up still ran at the
//! end of each write of feed results). A query is FTS5 syntax as the user typed it (`xiaomi AND
//! "electric car"`, `acqui*`); one SQLite cannot read is a [`SearchError::Query`] the CLI can
//! explain, never a crash. Hits come newest first, not by rank: this is a news reader's search,
//! where "what was said lately" beats "what matches best".

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::Serialize;

use super::{FeedSet, Store, sql_time};

/// New entries one transaction of the catch-up indexes at most (besides every edited one), so
/// that feed results arriving meanwhile wait for one slice, not for the whole backlog (the
/// whole database after `reindex`: about 15 s per million entries on the benchmark machine).
const INDEX_SLICE: usize = 5_000;
/// How long a search waits for another connection's write lock to index the newest entries
/// before it answers from the index as it is (a running daemon indexes them once it is idle).
const SEARCH_CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Indexes every edited (queued) entry and at most `new` entries above the mark, oldest first,
/// with their current text; empties the queue, moves the mark past the last one indexed and
/// returns how many it indexed. Does nothing while the index is set aside as damaged
/// (migration 0008). One statement in rowid order (queued ids lie at or below the mark, new
/// ones above it): FTS5 starts a new segment at every statement that opens a statement journal
/// and whenever the rowid goes backwards, otherwise only when its 8 MiB of pending terms are
/// full (migration 0006).
fn index_pending_at_most(conn: &rusqlite::Connection, new: usize) -> rusqlite::Result<usize> {
    let set_aside: bool = conn
        .prepare_cached("SELECT damaged FROM search_state")?
        .query_row([], |r| r.get(0))?;
    if set_aside {
        return Ok(0);
    }
    // The slice's last id first, so that the insert reads a plain rowid range: a LIMIT in it
    // would sort the text of every new entry before FTS5 sees it.
    let new = i64::try_from(new).unwrap_or(i64::MAX);
    let (mark, through): (i64, i64) = conn
        .prepare_cached(
            "SELECT indexed_through,
                    coalesce((SELECT max(id) FROM (SELECT id FROM entries WHERE id > indexed_through
                                                   ORDER BY id LIMIT ?1)),
                             indexed_through)
             FROM search_state",
        )?
        .query_row([new], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let indexed = conn
        .prepare_cached(
            "INSERT INTO entries_fts (rowid, title, summary, content, article)
             SELECT t.id, t.title, t.summary, t.content, t.article
             FROM search_queue q CROSS JOIN entries_search_text t ON t.id = q.entry_id
             UNION ALL
             SELECT id, title, summary, content, article FROM entries_search_text
             WHERE id > ?1 AND id <= ?2
             ORDER BY 1",
        )?
        .execute([mark, through])?;
    if indexed == 0 {
        return Ok(0); // the index lacks nothing
    }
    conn.prepare_cached("DELETE FROM search_queue")?
        .execute([])?;
    conn.prepare_cached("UPDATE search_state SET indexed_through = ?1")?
        .execute([through])?;
    // FTS5 writes what it gathered at the latest when the transaction commits. Writing it here
    // makes a damaged index fail this call, which callers can tell apart, not the commit.
    conn.prepare_cached("INSERT INTO entries_fts (entries_fts) VALUES ('flush')")?
        .execute([])?;
    Ok(indexed)
}

impl Store {
    /// Called after a write failed. Unless it failed for the disk or a lock, and when the search
    /// index is what refuses writes, sets it aside (migration 0008), so that feed results are
    /// stored without it until `feedhound reindex`, and returns true: the write is worth trying
    /// again.
    pub(super) fn set_aside_search_index_if_damaged(
        &mut self,
        failure: &anyhow::Error,
    ) -> anyhow::Result<bool> {
        if super::storage_hint(failure).is_some() || !self.search_index_refuses_writes() {
            return Ok(false);
        }
        self.conn
            .execute("UPDATE search_state SET damaged = 1", [])?;
        tracing::error!(
            error = %format!("{failure:#}"),
            "the search index is damaged and set aside: feed results are still stored, and new entries become searchable once `feedhound reindex` rebuilds it"
        );
        Ok(true)
    }

    /// Whether the index fails a test row, written out and rolled back. False when the index is
    /// already set aside, or when the test cannot run for a reason of its own (a lock, the disk).
    fn search_index_refuses_writes(&mut self) -> bool {
        let probe = |conn: &mut rusqlite::Connection| -> anyhow::Result<()> {
            let tx = super::write_transaction(conn)?;
            let set_aside: bool =
                tx.query_row("SELECT damaged FROM search_state", [], |r| r.get(0))?;
            if !set_aside {
                tx.execute_batch(
                    "INSERT INTO entries_fts (rowid, title, summary, content, article)
                         SELECT coalesce(max(id), 0) + 1, 'probe', '', '', '' FROM entries;
                     INSERT INTO entries_fts (entries_fts) VALUES ('flush');",
                )?;
            }
            Ok(()) // dropping the transaction rolls the test row back
        };
        match probe(&mut self.conn) {
            Ok(()) => false,
            Err(err) => super::storage_hint(&err).is_none(),
        }
    }

    /// One slice of the catch-up (see the module docs) in its own transaction; returns how many
    /// entries it indexed, 0 once the index lacks nothing. An index that refuses the writes is
    /// set aside as damaged (logged; `feedhound reindex` rebuilds it), and then this returns 0
    /// as well: feed results and searches go on without it.
    pub fn index_search_slice(&mut self) -> anyhow::Result<usize> {
        self.index_slice_of(INDEX_SLICE)
    }

    fn index_slice_of(&mut self, slice: usize) -> anyhow::Result<usize> {
        // A read first: with nothing to index, no write lock is taken.
        if !self.search_index_is_behind()? {
            return Ok(0);
        }
        let attempt = |conn: &mut rusqlite::Connection| -> anyhow::Result<usize> {
            let tx = super::write_transaction(conn)?;
            let indexed = index_pending_at_most(&tx, slice)?;
            tx.commit()?;
            Ok(indexed)
        };
        match attempt(&mut self.conn) {
            Err(err) if self.set_aside_search_index_if_damaged(&err)? => Ok(0),
            done => done,
        }
    }

    /// Whether the index lacks a new or edited entry; false while it is set aside.
    fn search_index_is_behind(&self) -> rusqlite::Result<bool> {
        self.conn
            .prepare_cached(
                "SELECT NOT damaged
                        AND (EXISTS (SELECT 1 FROM entries WHERE id > indexed_through)
                             OR EXISTS (SELECT 1 FROM search_queue))
                 FROM search_state",
            )?
            .query_row([], |r| r.get(0))
    }

    /// Whether the index is set aside as damaged (until `feedhound reindex`).
    pub fn search_index_is_set_aside(&self) -> rusqlite::Result<bool> {
        self.conn
            .prepare_cached("SELECT damaged FROM search_state")?
            .query_row([], |r| r.get(0))
    }

    /// Brings the search index up to date, slice by slice; returns how many entries it indexed.
    pub fn catch_up_search_index(&mut self) -> anyhow::Result<usize> {
        let mut indexed = 0;
        loop {
            match self.index_search_slice()? {
                0 => return Ok(indexed),
                slice => indexed += slice,
            }
        }
    }

    /// Rebuilds the search index from the stored entries (after it was set aside as damaged);
    /// returns how many entries it holds. The index is emptied in one transaction and refilled
    /// in slices of [`INDEX_SLICE`] entries, each its own transaction, so a running daemon's
    /// writes go on in between (and its idle catch-up indexes slices of its own). Searches miss
    /// the entries not yet indexed meanwhile; a rebuild cut short is finished by the next
    /// catch-up.
    pub fn rebuild_search_index(&mut self) -> anyhow::Result<i64> {
        self.rebuild_search_index_in_slices(INDEX_SLICE, |_| Ok(()))
    }

    /// [`Store::rebuild_search_index`] with slices of `slice` entries, calling `between` after
    /// each committed slice (tests write there, as a daemon would).
    fn rebuild_search_index_in_slices(
        &mut self,
        slice: usize,
        mut between: impl FnMut(&mut Store) -> anyhow::Result<()>,
    ) -> anyhow::Result<i64> {
        let tx = super::write_transaction(&mut self.conn)?;
        tx.execute_batch(
            "INSERT INTO entries_fts (entries_fts) VALUES ('delete-all');
             DELETE FROM search_queue;
             UPDATE search_state SET damaged = 0, indexed_through = 0;",
        )?;
        tx.commit()?;
        while self.index_slice_of(slice)? > 0 {
            between(self)?;
        }
        // Nothing indexed also means "set aside": a daemon's write may have found the index
        // damaged again meanwhile.
        anyhow::ensure!(
            !self.search_index_is_set_aside()?,
            "the search index was set aside again while it was rebuilt: the database may be \
             failing; check the log and run `feedhound reindex` again"
        );
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))?)
    }
}

/// Marks around matched words in [`SearchHit::snippet`] (Markdown bold: readable in a terminal
/// and rendered by chat tools a result is pasted into).
pub const HIGHLIGHT: (&str, &str) = ("**", "**");
/// Words of context in a snippet; FTS5 allows up to 64.
const SNIPPET_WORDS: i64 = 16;

/// What to look for.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// FTS5 query syntax: words, "phrases", AND/OR/NOT, prefix*, NEAR(...).
    pub text: String,
    /// Only entries mentioning this tracked company (its configured name, any case).
    pub company: Option<String>,
    /// Only entries published (or first seen) at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only entries published (or first seen) before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only entries of these feeds.
    pub feeds: Option<FeedSet>,
    pub limit: usize,
}

/// One matching entry.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub entry_id: i64,
    /// The feed's configured name, else its declared title, else its URL.
    pub feed: String,
    pub title: Option<String>,
    pub link: Option<String>,
    pub published_at: Option<String>,
    pub first_seen_at: String,
    /// Text around the best match, matched words between [`HIGHLIGHT`] marks.
    pub snippet: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// SQLite could not read the query (unbalanced quote, unknown column filter, …).
    #[error(
        "cannot read the search query {query:?}: {reason}; put words in double quotes to search for them as written"
    )]
    Query { query: String, reason: String },
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

impl Store {
    /// Entries matching `query`, newest first, once the index has caught up with every entry
    /// stored so far. When another connection holds the write lock for longer than
    /// [`SEARCH_CATCH_UP_WAIT`] (a daemon in the middle of a poll), or the index is set aside as
    /// damaged, it answers from the index as it is and logs a warning saying what is missing.
    pub fn search(&mut self, query: &SearchQuery) -> Result<Vec<SearchHit>, SearchError> {
        if query.text.trim().is_empty() {
            return Err(SearchError::Query {
                query: query.text.clone(),
                reason: "it is empty".into(),
            });
        }
        let caught_up = self
            .waiting_at_most(SEARCH_CATCH_UP_WAIT, Store::catch_up_search_index)
            .map_err(anyhow::Error::from)?;
        match caught_up {
            Ok(_) => {}
            Err(err) if super::storage_hint(&err).is_some() => tracing::warn!(
                error = %format!("{err:#}"),
                "could not add the newest entries to the search index: these results miss them (a running daemon adds them once it is idle)"
            ),
            Err(err) => {
                return Err(err
                    .context("cannot bring the search index up to date")
                    .into());
            }
        }
        if self
            .search_index_is_set_aside()
            .map_err(anyhow::Error::from)?
        {
            tracing::warn!(
                "the search index is set aside as damaged: these results miss the entries stored since; run `feedhound reindex`"
            );
        }
        self.search_indexed(query)
    }

    /// [`Store::search`] over what the index holds now.
    fn search_indexed(&self, query: &SearchQuery) -> Result<Vec<SearchHit>, SearchError> {
        let sql = format!(
            "SELECT e.id, coalesce(f.name, f.title, f.url), e.title, e.link, e.published_at,
                    e.first_seen_at, snippet(entries_fts, -1, ?5, ?6, '…', ?7)
             FROM entries_fts
             JOIN entries e ON e.id = entries_fts.rowid
             JOIN feeds f ON f.id = e.feed_id
             WHERE entries_fts MATCH ?1
               AND (?2 IS NULL OR coalesce(e.published_at, e.first_seen_at) >= ?2)
               AND (?8 IS NULL OR coalesce(e.published_at, e.first_seen_at) < ?8)
               AND (?3 IS NULL OR EXISTS (
                    SELECT 1 FROM mentions m JOIN companies c ON c.id = m.company_id
                    WHERE m.entry_id = e.id AND c.name = ?3 COLLATE NOCASE))
               AND {in_feeds}
             ORDER BY coalesce(e.published_at, e.first_seen_at) DESC, e.id DESC
             LIMIT ?4",
            in_feeds = FeedSet::condition(query.feeds.as_ref(), "e.feed_id", "?9"),
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(anyhow::Error::from)?;
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(
                params![
                    query.text,
                    query.since.map(sql_time),
                    query.company,
                    limit,
                    HIGHLIGHT.0,
                    HIGHLIGHT.1,
                    SNIPPET_WORDS,
                    query.until.map(sql_time),
                    query.feeds.as_ref().map(FeedSet::json_ids)
                ],
                |r| {
                    Ok(SearchHit {
                        entry_id: r.get(0)?,
                        feed: r.get(1)?,
                        title: r.get(2)?,
                        link: r.get(3)?,
                        published_at: r.get(4)?,
                        first_seen_at: r.get(5)?,
                        snippet: r.get(6)?,
                    })
                },
            )
            .map_err(|err| classify(err, &query.text))?;
        rows.collect::<Result<_, _>>()
            .map_err(|err| classify(err, &query.text))
    }
}

/// The statement itself was prepared, so an SQLITE_ERROR while running it comes from FTS5
/// reading the MATCH expression: the user's query, not the database.
fn classify(err: rusqlite::Error, query: &str) -> SearchError {
    match &err {
        rusqlite::Error::SqliteFailure(e, message)
            if e.extended_code == rusqlite::ffi::SQLITE_ERROR && message.is_some() =>
        {
            let reason = message.as_deref().unwrap_or_default();
            SearchError::Query {
                query: query.to_string(),
                reason: reason.trim_start_matches("fts5: ").to_string(),
            }
        }
        _ => SearchError::Database(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ParsedEntry;
    use crate::store::testing::{store_document, store_with_one_feed};

    /// A store holding `entries` (key, title, content), its index up to date.
    fn store_with(entries: &[(&str, &str, &str)]) -> (tempfile::TempDir, Store) {
        let (dir, mut store, feed_id) = store_with_one_feed();
        let entries = entries
            .iter()
            .map(|(key, title, content)| ParsedEntry {
                dedup_key: (*key).into(),
                title: Some((*title).into()),
                content: Some((*content).into()),
                content_hash: format!("{title}{content}"),
                link_unique_in_doc: true,
                ..Default::default()
            })
            .collect();
        store_document(&mut store, feed_id, entries, "b");
        store.catch_up_search_index().unwrap();
        (dir, store)
    }

    fn query(text: &str) -> SearchQuery {
        SearchQuery {
            text: text.into(),
            company: None,
            since: None,
            until: None,
            feeds: None,
            limit: 10,
        }
    }

    #[test]
    fn a_word_of_the_content_is_found_with_a_highlighted_snippet() {
        let (_dir, mut store) = store_with(&[
            (
                "g:1",
                "Port news",
                "The harbour crane operators went on strike.",
            ),
            ("g:2", "Weather", "Sunny all week."),
        ]);
        let hits = store.search(&query("crane")).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].title.as_deref(), Some("Port news"));
        assert_eq!(hits[0].feed, "Wire");
        assert!(hits[0].snippet.contains("**crane**"), "{}", hits[0].snippet);
    }

    #[test]
    fn accents_and_case_are_folded() {
        let (_dir, mut store) = store_with(&[("g:1", "Nestlé results", "Numbers.")]);
        assert_eq!(store.search(&query("NESTLE")).unwrap().len(), 1);
    }

    #[test]
    fn a_malformed_query_is_a_query_error_not_a_database_error() {
        let (_dir, mut store) = store_with(&[("g:1", "t", "c")]);
        for bad in ["\"unbalanced", "nosuchcolumn: word", "AND", "   "] {
            match store.search(&query(bad)) {
                Err(SearchError::Query { query, reason }) => {
                    assert_eq!(query, bad);
                    assert!(!reason.is_empty());
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    fn the_feed(store: &Store) -> i64 {
        store
            .conn
            .query_row("SELECT id FROM feeds", [], |r| r.get(0))
            .unwrap()
    }

    /// As a user's sqlite3 session would, letting SQLite choose the id.
    fn insert_by_hand(store: &Store, feed_id: i64, key: &str, title: &str) {
        store
            .conn
            .execute(
                "INSERT INTO entries (feed_id, dedup_key, title, content_hash, first_seen_at, last_seen_at)
                 VALUES (?1, ?2, ?3, 'x', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
                params![feed_id, key, title],
            )
            .unwrap();
    }

    fn index_is_in_step(store: &Store) {
        store
            .conn
            .execute(
                "INSERT INTO entries_fts (entries_fts, rank) VALUES ('integrity-check', 1)",
                [],
            )
            .expect("the search index matches the entries table");
        let queued: i64 = store
            .conn
            .query_row("SELECT count(*) FROM search_queue", [], |r| r.get(0))
            .unwrap();
        assert_eq!(queued, 0, "nothing is left queued after a catch-up");
        let (above_the_mark, damaged): (i64, bool) = store
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM entries WHERE id > indexed_through), damaged
                 FROM search_state",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (above_the_mark, damaged),
            (0, false),
            "every entry is indexed"
        );
    }

    #[test]
    fn an_entry_written_by_another_program_is_found_by_the_next_search() {
        let (_dir, mut store) = store_with(&[("g:1", "Port news", "Cranes.")]);
        let feed_id = the_feed(&store);
        insert_by_hand(&store, feed_id, "manual", "Ferries added by hand");
        assert!(store.search_indexed(&query("ferries")).unwrap().is_empty());
        assert_eq!(store.search(&query("ferries")).unwrap().len(), 1);
        index_is_in_step(&store);
    }

    #[test]
    fn an_id_handed_out_again_after_the_newest_entries_were_deleted_is_indexed() {
        let (_dir, mut store) = store_with(&[
            ("g:1", "Port news", "Cranes."),
            ("g:2", "Ferries", "Boats."),
        ]);
        let feed_id = the_feed(&store);
        let newest: i64 = store
            .conn
            .query_row("SELECT max(id) FROM entries", [], |r| r.get(0))
            .unwrap();
        store
            .conn
            .execute("DELETE FROM entries WHERE id = ?1", [newest])
            .unwrap();
        insert_by_hand(&store, feed_id, "manual", "Hovercraft");
        let reused: i64 = store
            .conn
            .query_row(
                "SELECT id FROM entries WHERE dedup_key = 'manual'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(reused, newest, "SQLite hands the deleted id out again");
        assert_eq!(store.search(&query("hovercraft")).unwrap().len(), 1);
        assert!(store.search(&query("ferries")).unwrap().is_empty());
        index_is_in_step(&store);
    }

    #[test]
    fn entries_still_queued_by_an_older_schema_are_indexed_after_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = crate::store::testing::database_before(&path, "0008_search_mark");
            // Written by hand with the old triggers: one indexed, one left queued.
            conn.execute_batch(
                "INSERT INTO feeds (url) VALUES ('http://127.0.0.1/old.xml');
                 INSERT INTO entries (feed_id, dedup_key, title, content_hash, first_seen_at, last_seen_at)
                     VALUES (1, 'a', 'Tugboats', 'x', '2026-01-01 00:00:00', '2026-01-01 00:00:00');
                 INSERT INTO entries_fts (rowid, title, summary, content)
                     SELECT id, title, summary, content FROM entries;
                 DELETE FROM search_queue;
                 INSERT INTO entries (feed_id, dedup_key, title, content_hash, first_seen_at, last_seen_at)
                     VALUES (1, 'b', 'Barges', 'x', '2026-01-01 00:00:00', '2026-01-01 00:00:00');",
            )
            .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.search(&query("tugboats")).unwrap().len(), 1);
        assert_eq!(store.search(&query("barges")).unwrap().len(), 1);
        index_is_in_step(&store);
    }

    #[test]
    fn a_damaged_index_is_set_aside_and_edits_and_new_entries_are_stored_until_rebuilt() {
        let (_dir, mut store) = store_with(&[("g:1", "Port news", "Cranes.")]);
        let feed_id = the_feed(&store);
        store
            .conn
            .execute(
                "UPDATE entries_fts_data SET block = x'ffffffff' WHERE id = 10",
                [],
            )
            .unwrap();
        let entry = |key: &str, title: &str| ParsedEntry {
            dedup_key: key.into(),
            title: Some(title.into()),
            content_hash: title.into(),
            link_unique_in_doc: true,
            ..Default::default()
        };
        let applied = store_document(
            &mut store,
            feed_id,
            vec![entry("g:1", "Port strike"), entry("g:2", "Barges")],
            "c",
        );
        assert_eq!((applied.new, applied.updated), (1, 1));
        let gauges = store.service_gauges().unwrap();
        assert!(gauges.search_index_damaged, "the edit found it damaged");
        assert_eq!(
            store.index_search_slice().unwrap(),
            0,
            "set aside: left alone"
        );
        assert_eq!(gauges.search_backlog, 1, "the new entry waits");
        // Set aside, the index is left alone: the next write goes through without it.
        store_document(
            &mut store,
            feed_id,
            vec![entry("g:1", "Port strike ends"), entry("g:2", "Barges")],
            "d",
        );

        assert_eq!(store.rebuild_search_index().unwrap(), 2);
        let gauges = store.service_gauges().unwrap();
        assert_eq!(
            (gauges.search_backlog, gauges.search_index_damaged),
            (0, false)
        );
        assert_eq!(store.search(&query("barges")).unwrap().len(), 1);
        assert_eq!(store.search(&query("ends")).unwrap().len(), 1);
        assert!(store.search(&query("news")).unwrap().is_empty());
        index_is_in_step(&store);
    }

    #[test]
    fn the_catch_up_finds_a_damaged_index_and_sets_it_aside_when_only_new_entries_arrive() {
        let (_dir, store) = store_with(&[("g:1", "Port news", "Cranes.")]);
        let feed_id = the_feed(&store);
        let path = store.path().to_owned();
        drop(store);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE entries_fts_data SET block = x'ffffffff' WHERE id = 10",
                [],
            )
            .unwrap();
        let mut store = Store::open(&path).unwrap();
        let barges = ParsedEntry {
            dedup_key: "g:2".into(),
            title: Some("Barges".into()),
            content_hash: "Barges".into(),
            link_unique_in_doc: true,
            ..Default::default()
        };
        assert_eq!(
            store_document(&mut store, feed_id, vec![barges], "c").new,
            1
        );
        assert!(
            !store.search_index_is_set_aside().unwrap(),
            "a new entry alone does not touch it"
        );

        assert_eq!(store.index_search_slice().unwrap(), 0);
        assert!(store.search_index_is_set_aside().unwrap());
        assert!(
            store.search(&query("barges")).unwrap().is_empty(),
            "answered from the set-aside index, without an error"
        );
        assert_eq!(store.rebuild_search_index().unwrap(), 2);
        assert_eq!(store.search(&query("barges")).unwrap().len(), 1);
    }

    #[test]
    fn a_search_while_another_program_holds_the_write_lock_answers_from_the_index_as_it_is() {
        let (_dir, mut store) = store_with(&[("g:1", "Port news", "Cranes.")]);
        let feed_id = the_feed(&store);
        insert_by_hand(&store, feed_id, "manual", "Port ferries");
        let other = rusqlite::Connection::open(store.path()).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();

        let hits = store.search(&query("port")).unwrap();
        assert_eq!(hits.len(), 1, "the indexed entry only");
        assert!(
            !store.search_index_is_set_aside().unwrap(),
            "a lock is not damage"
        );

        other.execute_batch("ROLLBACK").unwrap();
        assert_eq!(store.search(&query("port")).unwrap().len(), 2);
        index_is_in_step(&store);
    }

    #[test]
    fn a_rebuild_refills_the_index_in_slices_and_other_writers_go_on_between_them() {
        let words = ["anchor", "buoy", "cargo", "dock", "ensign"];
        let keys: Vec<String> = (0..words.len()).map(|i| format!("g:{i}")).collect();
        let entries: Vec<(&str, &str, &str)> = keys
            .iter()
            .zip(words)
            .map(|(key, word)| (key.as_str(), word, "at sea"))
            .collect();
        let (_dir, mut store) = store_with(&entries);
        let feed_id = the_feed(&store);
        // Another process, giving up at once on a lock: it only gets in between slices.
        let other = rusqlite::Connection::open(store.path()).unwrap();
        other.busy_timeout(std::time::Duration::ZERO).unwrap();
        let mut slices = 0;
        let indexed = store
            .rebuild_search_index_in_slices(2, |store| {
                slices += 1;
                let searchable = store.search_indexed(&query("sea")).unwrap().len();
                assert_eq!(searchable, 2 * slices, "slice {slices}");
                if slices == 1 {
                    // Ids 1 and 2 are indexed: an edit of one below the mark, a delete of one
                    // above it, a new entry by hand.
                    other.execute_batch(
                        "UPDATE entries SET title = 'Anchorage' WHERE dedup_key = 'g:0';
                         DELETE FROM entries WHERE dedup_key = 'g:4';
                         INSERT INTO entries (feed_id, dedup_key, title, content_hash, first_seen_at, last_seen_at)
                         SELECT id, 'g:late', 'Foghorn at sea', 'x', '2026-01-01 00:00:00', '2026-01-01 00:00:00' FROM feeds;",
                    )?;
                } else if slices == 2 {
                    // A daemon storing feed results: the rebuild's next slice indexes them.
                    let lighthouse = ParsedEntry {
                        dedup_key: "g:new".into(),
                        title: Some("Lighthouse at sea".into()),
                        content_hash: "Lighthouse".into(),
                        link_unique_in_doc: true,
                        ..Default::default()
                    };
                    store_document(store, feed_id, vec![lighthouse], "c");
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(indexed, 6);
        assert_eq!(
            slices, 3,
            "the entries written in between took one more slice"
        );
        for (word, hits) in [
            ("anchorage", 1),
            ("anchor", 0),
            ("buoy", 1),
            ("dock", 1),
            ("ensign", 0),
            ("foghorn", 1),
            ("lighthouse", 1),
        ] {
            assert_eq!(store.search(&query(word)).unwrap().len(), hits, "{word}");
        }
        index_is_in_step(&store);
    }

    #[test]
    fn entries_edited_or_deleted_before_they_were_indexed_leave_the_index_whole() {
        let (_dir, mut store) = store_with(&[("g:1", "Port news", "Cranes.")]);
        let tx = crate::store::write_transaction(&mut store.conn).unwrap();
        tx.execute_batch(
            "INSERT INTO entries (feed_id, dedup_key, title, content_hash, first_seen_at, last_seen_at)
                 SELECT id, 'a', 'Tugboats', 'x', '2026-01-01 00:00:00', '2026-01-01 00:00:00' FROM feeds;
             INSERT INTO entries (feed_id, dedup_key, title, content_hash, first_seen_at, last_seen_at)
                 SELECT id, 'b', 'Barges', 'x', '2026-01-01 00:00:00', '2026-01-01 00:00:00' FROM feeds;
             UPDATE entries SET title = 'Lighthouses' WHERE dedup_key = 'a';
             DELETE FROM entries WHERE dedup_key = 'b';
             UPDATE entries SET content = 'Dredgers.' WHERE dedup_key = 'g:1';",
        )
        .unwrap();
        index_pending_at_most(&tx, INDEX_SLICE).unwrap();
        tx.commit().unwrap();
        for (word, hits) in [
            ("tugboats", 0),
            ("lighthouses", 1),
            ("barges", 0),
            ("cranes", 0),
            ("dredgers", 1),
        ] {
            assert_eq!(store.search(&query(word)).unwrap().len(), hits, "{word}");
        }
        index_is_in_step(&store);
    }

    /// A store whose one feed has `fetch_articles`, holding one teaser entry whose page is
    /// queued, the index up to date; returns the entry's id.
    fn store_with_a_teaser() -> (tempfile::TempDir, Store, i64) {
        let (dir, mut store, feed_id) = store_with_one_feed();
        store
            .conn
            .execute("UPDATE feeds SET fetch_articles = 1", [])
            .unwrap();
        let teaser = ParsedEntry {
            dedup_key: "g:teaser".into(),
            link: Some("https://quay.example/story".into()),
            link_unique_in_doc: true,
            title: Some("Harbour notes".into()),
            summary: Some("Read the whole story on our site.".into()),
            content_hash: "teaser".into(),
            ..Default::default()
        };
        store_document(&mut store, feed_id, vec![teaser], "b");
        store.catch_up_search_index().unwrap();
        let entry_id = store
            .conn
            .query_row("SELECT entry_id FROM articles", [], |r| r.get(0))
            .unwrap();
        (dir, store, entry_id)
    }

    fn page_read(store: &mut Store, entry_id: i64, text: &str) {
        let report = crate::store::ArticleReport {
            entry_id,
            content_hash: "teaser".into(),
            status: Some(200),
            outcome: crate::store::ArticleOutcome::Fetched(text.into()),
            mentions: None,
        };
        assert!(store.record_article(&report).unwrap().applied);
    }

    fn titles_found(store: &mut Store, text: &str) -> Vec<String> {
        store
            .search(&query(text))
            .unwrap()
            .into_iter()
            .map(|hit| hit.title.unwrap_or_default())
            .collect()
    }

    #[test]
    fn a_story_is_found_by_the_words_of_its_article_page_as_the_page_changes() {
        let (_dir, mut store, entry_id) = store_with_a_teaser();
        assert!(titles_found(&mut store, "dredger").is_empty());

        page_read(&mut store, entry_id, "The new dredger arrives in March.");
        assert_eq!(titles_found(&mut store, "dredger"), ["Harbour notes"]);
        let hit = store.search(&query("dredger")).unwrap().remove(0);
        assert!(hit.snippet.contains("**dredger**"), "{}", hit.snippet);
        // Words of the title and of the page together, and the page alone by its column.
        assert_eq!(
            titles_found(&mut store, "harbour AND dredger"),
            ["Harbour notes"]
        );
        assert_eq!(
            titles_found(&mut store, "article: dredger"),
            ["Harbour notes"]
        );
        assert!(titles_found(&mut store, "article: harbour").is_empty());
        index_is_in_step(&store);

        // Read again with other text: the old words go from the index.
        page_read(&mut store, entry_id, "The crane is delayed.");
        assert!(titles_found(&mut store, "dredger").is_empty());
        assert_eq!(titles_found(&mut store, "crane"), ["Harbour notes"]);
        index_is_in_step(&store);

        // An edit of the entry keeps its page's words; deleting it takes them out too.
        store
            .conn
            .execute("UPDATE entries SET title = 'Port notes'", [])
            .unwrap();
        assert_eq!(titles_found(&mut store, "crane"), ["Port notes"]);
        index_is_in_step(&store);
        store.conn.execute("DELETE FROM entries", []).unwrap();
        assert!(titles_found(&mut store, "crane").is_empty());
        index_is_in_step(&store);
    }

    #[test]
    fn page_text_written_or_removed_by_hand_leaves_the_index_whole() {
        let (_dir, mut store, entry_id) = store_with_a_teaser();
        page_read(&mut store, entry_id, "The new dredger arrives in March.");
        store.catch_up_search_index().unwrap();
        store.conn.execute("DELETE FROM articles", []).unwrap();
        assert!(titles_found(&mut store, "dredger").is_empty());
        index_is_in_step(&store);
        store
            .conn
            .execute(
                "INSERT INTO articles (entry_id, url, state, text)
                 VALUES (?1, 'https://quay.example/story', 'fetched', 'Ferries resume.')",
                [entry_id],
            )
            .unwrap();
        assert_eq!(titles_found(&mut store, "ferries"), ["Harbour notes"]);
        index_is_in_step(&store);
    }

    #[test]
    fn a_database_from_before_page_text_was_searched_finds_its_pages_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let conn = crate::store::testing::database_before(&path, "0020_search_article_text");
        conn.execute_batch(
            "INSERT INTO feeds (url) VALUES ('http://0.example/rss');
             INSERT INTO entries (feed_id, dedup_key, title, content_hash, first_seen_at, last_seen_at)
                 VALUES (1, 'a', 'Tugboats', 'x', '2026-01-01 00:00:00', '2026-01-01 00:00:00');
             INSERT INTO articles (entry_id, url, state, text)
                 VALUES (1, 'https://quay.example/a', 'fetched', 'The new dredger arrives.');
             INSERT INTO entries_fts (rowid, title, summary, content) VALUES (1, 'Tugboats', NULL, NULL);
             UPDATE search_state SET indexed_through = 1;",
        )
        .unwrap();
        drop(conn);
        let store = Store::open(&path).unwrap();
        // No catch-up: the upgrade built the index with the pages.
        index_is_in_step(&store);
        for word in ["tugboats", "dredger"] {
            assert_eq!(
                store.search_indexed(&query(word)).unwrap().len(),
                1,
                "{word}"
            );
        }
    }

    #[test]
    fn an_edit_that_gives_a_teaser_a_new_link_takes_its_old_pages_words_out() {
        let (_dir, mut store, entry_id) = store_with_a_teaser();
        page_read(&mut store, entry_id, "The new dredger arrives in March.");
        store.catch_up_search_index().unwrap();
        let feed_id = the_feed(&store);
        let moved = ParsedEntry {
            dedup_key: "g:teaser".into(),
            link: Some("https://quay.example/story-updated".into()),
            link_unique_in_doc: true,
            title: Some("Harbour notes, updated".into()),
            summary: Some("Read the whole story on our site.".into()),
            content_hash: "teaser v2".into(),
            ..Default::default()
        };
        let applied = store_document(&mut store, feed_id, vec![moved], "c");
        assert_eq!(applied.updated, 1);
        let pending: Option<String> = store
            .conn
            .query_row("SELECT text FROM articles", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pending, None, "a new link starts over");
        assert!(titles_found(&mut store, "dredger").is_empty());
        assert_eq!(
            titles_found(&mut store, "updated"),
            ["Harbour notes, updated"]
        );
        index_is_in_step(&store);
    }

    #[test]
    fn page_rows_replaced_or_left_behind_by_hand_leave_the_index_whole() {
        let (_dir, mut store, entry_id) = store_with_a_teaser();
        page_read(&mut store, entry_id, "The new dredger arrives in March.");
        store.catch_up_search_index().unwrap();
        store
            .conn
            .execute(
                "INSERT OR REPLACE INTO articles (entry_id, url, state, text)
                 VALUES (?1, 'https://quay.example/story', 'fetched', 'Ferries resume.')",
                [entry_id],
            )
            .unwrap();
        assert!(titles_found(&mut store, "dredger").is_empty());
        assert_eq!(titles_found(&mut store, "ferries"), ["Harbour notes"]);
        index_is_in_step(&store);

        // A sqlite3 session deletes with foreign keys off: the page goes with its entry, and
        // an entry given the same id later does not inherit it.
        store
            .conn
            .pragma_update(None, "foreign_keys", false)
            .unwrap();
        store.conn.execute("DELETE FROM entries", []).unwrap();
        store
            .conn
            .pragma_update(None, "foreign_keys", true)
            .unwrap();
        insert_by_hand(&store, the_feed(&store), "manual", "Tugboats");
        let reused: i64 = store
            .conn
            .query_row("SELECT id FROM entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(reused, entry_id);
        assert!(titles_found(&mut store, "ferries").is_empty());
        assert_eq!(titles_found(&mut store, "tugboats"), ["Tugboats"]);
        index_is_in_step(&store);
    }

    #[test]
    fn a_page_read_meeting_a_damaged_index_sets_it_aside_and_is_kept() {
        let (_dir, mut store, entry_id) = store_with_a_teaser();
        store
            .conn
            .execute(
                "UPDATE entries_fts_data SET block = x'ffffffff' WHERE id = 10",
                [],
            )
            .unwrap();
        page_read(&mut store, entry_id, "The new dredger arrives in March.");
        assert!(store.search_index_is_set_aside().unwrap());
        let text: Option<String> = store
            .conn
            .query_row("SELECT text FROM articles", [], |r| r.get(0))
            .unwrap();
        assert_eq!(text.as_deref(), Some("The new dredger arrives in March."));
        store.rebuild_search_index().unwrap();
        assert_eq!(titles_found(&mut store, "dredger"), ["Harbour notes"]);
        index_is_in_step(&store);
    }
}
