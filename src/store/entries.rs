//! The `entries` table: storing each story once per feed, however the publisher misbehaves.
//!
//! An incoming entry is the stored entry with the same `dedup_key` (derived by `parse`). When
//! there is none, it may still be a stored entry whose guid the publisher changed: an entry with
//! the same canonical link is taken to be it, unless that link is shared by several items of the
//! document (feeds that point every item at their home page) or the stored entry is itself still
//! present in the document under its own key. An entry known only by its text (no guid or
//! link of its own) may be a stored one edited, when its title and publication date tell it
//! (see [`edited_text_item`]). Only then is the entry new.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use rusqlite::{CachedStatement, Connection, OptionalExtension, params};

use super::articles::queue_article;
use super::flags::{
    Flagging, Reassess, StoryFor, StoryStatements, insert_mentions, newly_named, queue_alerts,
    reassess_alerts, rewrite_edited_mentions, story_company_ids,
};
use super::titles::RecentTitles;
use super::{Store, sql_time, sql_time_precise};
use crate::model::{Mention, ParsedEntry, ParsedFeed};
use crate::parse::identity_fragment;

/// What happened to one feed in one poll, ready to be recorded.
#[derive(Debug)]
pub enum FeedResult {
    /// 304 Not Modified. The server may send fresh validators; missing ones keep the stored.
    NotModified {
        etag: Option<String>,
        last_modified: Option<String>,
    },
    /// 200 with the same body as last time: nothing to parse.
    Unchanged {
        etag: Option<String>,
        last_modified: Option<String>,
    },
    /// 200 with a new body, parsed; `mentions[i]` are the companies `feed.entries[i]` mentions.
    Parsed {
        etag: Option<String>,
        last_modified: Option<String>,
        body_hash: String,
        feed: ParsedFeed,
        mentions: Vec<Vec<Mention>>,
    },
    /// Network, HTTP or parse failure; `error` is the message shown to the user.
    Failed { error: String },
    /// Fetched, but not processed for a reason of feedhound's own (every parsing thread held by
    /// stuck documents). Not the feed's failure: its error count, and so its backoff, and its
    /// validators stay; `error` becomes its last error, and its next poll tries again.
    Deferred { error: String },
}

/// When the fetch happened and what the scheduler planned next, for every kind of result.
#[derive(Debug, Clone)]
pub struct FetchState {
    pub fetched_at: DateTime<Utc>,
    /// HTTP status of the final response, when there was one.
    pub status: Option<u16>,
    /// None for a feed that is gone (410): it is not polled again until reset.
    pub next_poll_at: Option<DateTime<Utc>>,
    /// The interval the next poll was planned with, and why (see `schedule::Reason`).
    pub interval: Duration,
    pub reason: &'static str,
    /// The interval the feed's publishing rate suggests, when this fetch parsed a document.
    pub adaptive: Option<Duration>,
    /// The `<ttl>`/`sy:updatePeriod` of the parsed document.
    pub doc_hint: Option<Duration>,
    /// The URL every hop of a 301/308 chain led to.
    pub permanent_redirect: Option<String>,
    /// `Retry-After` of a 429/503.
    pub retry_after: Option<DateTime<Utc>>,
}

impl FetchState {
    /// A fetch at `fetched_at` with nothing planned or learned (for tests and tools).
    pub fn at(fetched_at: DateTime<Utc>, status: Option<u16>) -> FetchState {
        FetchState {
            fetched_at,
            status,
            next_poll_at: Some(fetched_at),
            interval: Duration::ZERO,
            reason: "default",
            adaptive: None,
            doc_hint: None,
            permanent_redirect: None,
            retry_after: None,
        }
    }
}

/// What recording one feed result changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub new: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Mentions recorded for new and edited entries.
    pub mentions: usize,
    /// Set when this fetch confirmed a permanent redirect: the feed is now fetched from here.
    pub moved_to: Option<String>,
}

impl Store {
    /// Records one feed's result in a single transaction (setting a damaged search index aside,
    /// as the writer thread does).
    pub fn apply(
        &mut self,
        feed_id: i64,
        state: &FetchState,
        result: &FeedResult,
    ) -> anyhow::Result<Applied> {
        match self.apply_once(feed_id, state, result) {
            Err(err) if self.set_aside_search_index_if_damaged(&err)? => {
                self.apply_once(feed_id, state, result)
            }
            done => done,
        }
    }

    fn apply_once(
        &mut self,
        feed_id: i64,
        state: &FetchState,
        result: &FeedResult,
    ) -> anyhow::Result<Applied> {
        let tx = super::write_transaction(&mut self.conn)?;
        let applied = apply_in(
            &tx,
            &self.flagging,
            &mut self.titles,
            feed_id,
            state,
            result,
        )?;
        tx.commit().inspect_err(|_| self.titles.forget())?;
        Ok(applied)
    }
}

/// An entry in brief, for quick looks at what was stored.
#[derive(Debug, Clone)]
pub struct RecentEntry {
    /// The feed's configured name, else its declared title, else its URL.
    pub feed: String,
    pub title: Option<String>,
    pub published_at: Option<String>,
}

impl Store {
    /// The newest entries, by publication (or first-seen) time.
    pub fn recent_entries(&self, limit: usize) -> anyhow::Result<Vec<RecentEntry>> {
        let mut stmt = self.conn.prepare(
            "SELECT coalesce(f.name, f.title, f.url), e.title, e.published_at
             FROM entries e JOIN feeds f ON f.id = e.feed_id
             ORDER BY coalesce(e.published_at, e.first_seen_at) DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(RecentEntry {
                feed: r.get(0)?,
                title: r.get(1)?,
                published_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Records one feed's result inside the caller's transaction (the writer batches many). When
/// it fails, the caller rolls its writes back, stories included, so `titles` forgets them too.
pub(super) fn apply_in(
    tx: &Connection,
    flagging: &Flagging,
    titles: &mut RecentTitles,
    feed_id: i64,
    state: &FetchState,
    result: &FeedResult,
) -> anyhow::Result<Applied> {
    let applied = apply_result(tx, flagging, titles, feed_id, state, result);
    if applied.is_err() {
        titles.forget();
    }
    applied
}

fn apply_result(
    tx: &Connection,
    flagging: &Flagging,
    titles: &mut RecentTitles,
    feed_id: i64,
    state: &FetchState,
    result: &FeedResult,
) -> anyhow::Result<Applied> {
    record_fetch(
        tx,
        feed_id,
        state,
        matches!(result, FeedResult::Failed { .. }),
    )?;
    let fetched_at = sql_time(state.fetched_at);
    let mut applied = match result {
        FeedResult::NotModified {
            etag,
            last_modified,
        }
        | FeedResult::Unchanged {
            etag,
            last_modified,
        } => {
            tx.prepare_cached(
                "UPDATE feeds SET etag = coalesce(?2, etag), last_modified = coalesce(?3, last_modified),
                     last_success_at = ?4, last_error = NULL, error_count = 0
                 WHERE id = ?1",
            )?
            .execute(params![feed_id, etag, last_modified, fetched_at])?;
            Applied::default()
        }
        FeedResult::Failed { error } => {
            tx.prepare_cached(
                "UPDATE feeds SET last_error = ?2, error_count = error_count + 1,
                     gone_at = CASE WHEN ?3 = 410 THEN ?4 ELSE gone_at END
                 WHERE id = ?1",
            )?
            .execute(params![feed_id, error, state.status, fetched_at])?;
            return Ok(Applied::default());
        }
        FeedResult::Deferred { error } => {
            tx.prepare_cached("UPDATE feeds SET last_error = ?2 WHERE id = ?1")?
                .execute(params![feed_id, error])?;
            return Ok(Applied::default());
        }
        FeedResult::Parsed {
            etag,
            last_modified,
            body_hash,
            feed,
            mentions,
        } => {
            let applied = upsert_entries(
                tx,
                flagging,
                titles,
                feed_id,
                state.fetched_at,
                feed,
                mentions,
            )?;
            // Validators are replaced, not merged: they describe this new body.
            tx.prepare_cached(
                "UPDATE feeds SET etag = ?2, last_modified = ?3, body_hash = ?4, title = ?5, site_link = ?6,
                     last_success_at = ?7, last_error = NULL, error_count = 0
                 WHERE id = ?1",
            )?
            .execute(params![feed_id, etag, last_modified, body_hash, feed.title, feed.site_link, fetched_at])?;
            applied
        }
    };
    applied.moved_to = record_redirect(tx, feed_id, state.permanent_redirect.as_deref())?;
    Ok(applied)
}

/// The schedule and status columns every fetch updates, whatever its outcome.
fn record_fetch(
    tx: &Connection,
    feed_id: i64,
    state: &FetchState,
    failed: bool,
) -> anyhow::Result<()> {
    tx.prepare_cached(
        "UPDATE feeds SET last_fetch_at = ?2, last_status = ?3, next_poll_at = ?4,
             interval_secs_current = ?5, interval_reason = ?6, retry_after = ?7,
             adaptive_secs = coalesce(?8, adaptive_secs), doc_hint_secs = coalesce(?9, doc_hint_secs)
         WHERE id = ?1",
    )?
    .execute(params![
        feed_id,
        sql_time(state.fetched_at),
        state.status,
        state.next_poll_at.map(sql_time_precise),
        state.interval.as_secs() as i64,
        state.reason,
        if failed { state.retry_after.map(sql_time) } else { None },
        state.adaptive.map(|d| d.as_secs() as i64),
        state.doc_hint.map(|d| d.as_secs() as i64),
    ])?;
    Ok(())
}

/// How many consecutive polls must see the same 301/308 target before the feed's URL follows
/// it: one redirect may be a hijack or an accident; three in a row are a move.
const REDIRECT_CONFIRMATIONS: i64 = 3;

/// Counts a successful fetch's permanent redirect (or its absence); returns the new URL when
/// this observation confirmed the move.
fn record_redirect(
    tx: &Connection,
    feed_id: i64,
    target: Option<&str>,
) -> anyhow::Result<Option<String>> {
    tx.prepare_cached(
        "UPDATE feeds SET
             redirect_seen = CASE WHEN ?2 IS NULL THEN 0
                                  WHEN redirect_candidate = ?2 THEN redirect_seen + 1 ELSE 1 END,
             redirect_candidate = ?2
         WHERE id = ?1",
    )?
    .execute(params![feed_id, target])?;
    Ok(tx
        .prepare_cached(
            "UPDATE feeds SET fetch_url = redirect_candidate, redirect_candidate = NULL, redirect_seen = 0
             WHERE id = ?1 AND redirect_seen >= ?2 RETURNING fetch_url",
        )?
        .query_row(params![feed_id, REDIRECT_CONFIRMATIONS], |r| r.get(0))
        .optional()?)
}

fn upsert_entries(
    tx: &Connection,
    flagging: &Flagging,
    titles: &mut RecentTitles,
    feed_id: i64,
    fetched_at: DateTime<Utc>,
    feed: &ParsedFeed,
    mentions: &[Vec<Mention>],
) -> anyhow::Result<Applied> {
    let mut titles = titles.for_result(fetched_at);
    let now = &sql_time(fetched_at);
    // Alerts are stamped by the writer's clock, not the fetch's: a digest takes the alerts
    // queued before its time (`notify::digest`), and a fetch begun before a digest went may be
    // written after it.
    let queued_at = Utc::now();
    let keys_in_document: HashSet<&str> =
        feed.entries.iter().map(|e| e.dedup_key.as_str()).collect();
    let mut done: HashSet<&str> = HashSet::with_capacity(feed.entries.len());
    let mut applied = Applied::default();
    let mut by_key = tx.prepare_cached(
        "SELECT id, dedup_key, content_hash, story_id FROM entries WHERE feed_id = ?1 AND dedup_key = ?2",
    )?;
    let mut by_link = tx.prepare_cached(
        "SELECT id, dedup_key, content_hash, story_id, link_shared, link FROM entries
         WHERE feed_id = ?1 AND canonical_link = ?2",
    )?;
    // A feed's first document has nothing stored to match against: each entry is then one
    // insert, not three lookups and an insert (a cold poll of 100 harness feeds under
    // callgrind: 1.7% fewer instructions for the whole process).
    // A feed that never had a document parsed is serving its backlog (see `queue_alerts`).
    let (has_entries, has_tombstones, backlog, fetch_articles): (bool, bool, bool, bool) = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM entries WHERE feed_id = ?1),
                    EXISTS (SELECT 1 FROM tombstones WHERE feed_id = ?1),
                    body_hash IS NULL, fetch_articles
             FROM feeds WHERE id = ?1",
        )?
        .query_row([feed_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
    // Whether a page was queued: a new entry's first alert waits for it.
    let queue_article_of = |id: i64, entry: &ParsedEntry| -> rusqlite::Result<bool> {
        match fetch_articles.then(|| article_link(entry)).flatten() {
            Some(link) => queue_article(tx, id, link, queued_at, backlog).map(|()| true),
            None => Ok(false),
        }
    };
    let first_document = !has_entries && !has_tombstones;
    let mut dates = DocumentDates::of(&feed.entries);
    let mut find = |entry: &ParsedEntry| -> anyhow::Result<Found> {
        if first_document {
            return Ok(Found::Nothing);
        }
        if let Some(stored) = by_key
            .query_row(params![feed_id, entry.dedup_key], Stored::read)
            .optional()?
        {
            return Ok(Found::Stored(stored));
        }
        if entry.link_unique_in_doc
            && let Some(link) = &entry.canonical_link
        {
            // Stored entries with this link under an identity the document no longer uses. One
            // with the same text is this entry under a new key; else one whose link was its own
            // and pointed at the same #fragment is this entry edited. A link that several items
            // shared (a home page) does not say which of them this is, nor does another
            // fragment of the page (a live blog's previous update): taking it would overwrite
            // another item with this one.
            let fragment = entry.link.as_deref().and_then(identity_fragment);
            let mut edited = None;
            let candidates = by_link.query_map(params![feed_id, link], |r| {
                let own_link = r.get::<_, Option<i64>>(4)?.is_none();
                let same_fragment =
                    r.get_ref(5)?.as_str_or_null()?.and_then(identity_fragment) == fragment;
                Ok((Stored::read(r)?, own_link && same_fragment))
            })?;
            for candidate in candidates {
                let (candidate, may_be_this_edited) = candidate?;
                if keys_in_document.contains(candidate.key.as_str()) {
                    continue;
                }
                if entry.has_content_hash(&candidate.hash) {
                    return Ok(Found::Stored(candidate));
                }
                if may_be_this_edited && edited.is_none() {
                    edited = Some(candidate);
                }
            }
            if let Some(stored) = edited {
                return Ok(Found::Stored(stored));
            }
        } else if let Some(own_key) = &entry.key_with_own_link {
            // The reverse: a link other items of the document share now (a live blog's second
            // update, another #fragment of one page) was this entry's own when it was stored
            // under the key that link gave it. That row with this very text is this entry.
            if !keys_in_document.contains(own_key.as_str())
                && let Some(stored) = by_key
                    .query_row(params![feed_id, own_key], Stored::read)
                    .optional()?
                && entry.has_content_hash(&stored.hash)
            {
                return Ok(Found::Stored(stored));
            }
            // Stored before `l:` keys carried the fragment: under the key without it, by a row
            // that pointed at the same fragment.
            let fragment = entry.link.as_deref().and_then(identity_fragment);
            if let Some(fragment) = fragment
                && let Some(old_key) = own_key
                    .strip_suffix(fragment)
                    .and_then(|key| key.strip_suffix('#'))
                    .filter(|key| key.starts_with("l:") && !keys_in_document.contains(key))
                && let Some((stored, link)) = tx
                    .prepare_cached(
                        "SELECT id, dedup_key, content_hash, story_id, link FROM entries
                         WHERE feed_id = ?1 AND dedup_key = ?2",
                    )?
                    .query_row(params![feed_id, old_key], |r| {
                        Ok((Stored::read(r)?, r.get::<_, Option<String>>(4)?))
                    })
                    .optional()?
                && entry.has_content_hash(&stored.hash)
                && link.as_deref().and_then(identity_fragment) == Some(fragment)
            {
                return Ok(Found::Stored(stored));
            }
        }
        if is_tombstoned(tx, feed_id, &entry.dedup_key)? {
            return Ok(Found::Tombstoned);
        }
        // After the tombstone: an item retention deleted, still served, must not take the row
        // of another item that shared its title and date.
        Ok(
            match edited_text_item(tx, feed_id, entry, &keys_in_document, &mut dates)? {
                Some(stored) => Found::Stored(stored),
                None => Found::Nothing,
            },
        )
    };
    // Prepared at the first new entry: most results of a running daemon have none.
    let mut new_entry_statements = None;
    for (index, entry) in feed.entries.iter().enumerate() {
        // The same item twice in one document (same guid and link): the first one wins. In a
        // first document this is the only guard against storing it twice.
        if !done.insert(entry.dedup_key.as_str()) {
            continue;
        }
        let entry_mentions = mentions.get(index).map(Vec::as_slice).unwrap_or_default();
        match find(entry)? {
            // Deleted by retention and still served: not stored again (see `retention`).
            Found::Tombstoned => applied.unchanged += 1,
            Found::Nothing => {
                let statements = match &mut new_entry_statements {
                    Some(statements) => statements,
                    None => new_entry_statements.insert(NewEntryStatements::new(tx)?),
                };
                let story = statements
                    .story
                    .story_for(&mut titles, feed_id, entry, fetched_at)?;
                let id = statements.insert_entry(feed_id, now, entry, story.id())?;
                let page_pending = queue_article_of(id, entry)?;
                if !entry_mentions.is_empty() {
                    // A copy joining a story may name a company the story did not.
                    let named_before = match story {
                        StoryFor::Joined(story) if flagging.alerts_anyone() => {
                            Some(story_company_ids(tx, story)?)
                        }
                        _ => None,
                    };
                    insert_mentions(tx, flagging, id, entry_mentions)?;
                    let newly_named = match named_before {
                        Some(before) => {
                            let story = Reassess::WithdrawnOfStory(story.id());
                            reassess_alerts(tx, flagging, story, queued_at)?;
                            newly_named(flagging, entry_mentions, &before)
                        }
                        None => Vec::new(),
                    };
                    queue_alerts(
                        tx,
                        flagging,
                        story.id(),
                        entry_mentions,
                        &newly_named,
                        queued_at,
                        backlog,
                        page_pending,
                    )?;
                }
                applied.new += 1;
                applied.mentions += entry_mentions.len();
            }
            Found::Stored(stored) if !entry.has_content_hash(&stored.hash) => {
                update_entry(tx, stored.id, now, entry)?;
                queue_article_of(stored.id, entry)?;
                rewrite_edited_mentions(
                    tx,
                    flagging,
                    stored.id,
                    stored.story,
                    entry_mentions,
                    queued_at,
                    backlog,
                    false,
                )?;
                applied.updated += 1;
                applied.mentions += entry_mentions.len();
            }
            Found::Stored(stored) if stored.key != entry.dedup_key => {
                // Same content under a new guid or link: adopt the new identity, and leave the
                // text (and its search index) alone.
                tx.prepare_cached(
                    "UPDATE entries SET dedup_key = ?2, guid = ?3, link = ?4, canonical_link = ?5, link_shared = ?6,
                         last_seen_at = ?7
                     WHERE id = ?1",
                )?
                .execute(params![stored.id, entry.dedup_key, entry.guid, entry.link, entry.canonical_link, link_shared(entry), now])?;
                applied.unchanged += 1;
            }
            // Same text, stored under an earlier version's blake3 hash maybe: that one is
            // replaced, so that later polls compare one hash. Not while a re-match runs: it
            // leaves alone entries whose hash changed since it read them, taking them for edited.
            Found::Stored(stored)
                if stored.hash != entry.content_hash && !super::flags::rematch_pending_in(tx)? =>
            {
                tx.prepare_cached(
                    "UPDATE entries SET last_seen_at = ?2, content_hash = ?3 WHERE id = ?1",
                )?
                .execute(params![stored.id, now, entry.content_hash])?;
                applied.unchanged += 1;
            }
            Found::Stored(stored) => {
                tx.prepare_cached("UPDATE entries SET last_seen_at = ?2 WHERE id = ?1")?
                    .execute(params![stored.id, now])?;
                applied.unchanged += 1;
            }
        }
    }
    if has_tombstones {
        mark_tombstone_absence(tx, feed_id, &keys_in_document, now)?;
    }
    Ok(applied)
}

/// The stored row an entry known only by its text was before an edit changed that text, and with
/// it the entry's key (`h:<text hash>`, or `gh:<guid> <text hash>` under a guid the document
/// repeats). Its title and publication date tell it: the row is this feed's one under the same
/// kind of key (and guid), with the same title and date, that the document no longer carries.
/// Only when there is exactly one such row, no other item of the document has that date, and the
/// date is not on a quarter hour: a feed that stamps every item with one date (its build time),
/// or gives only the day, cannot tell a new item under a recurring title ("Trading halt") from
/// the one it replaced.
fn edited_text_item(
    tx: &Connection,
    feed_id: i64,
    entry: &ParsedEntry,
    keys_in_document: &HashSet<&str>,
    dates: &mut DocumentDates<'_>,
) -> anyhow::Result<Option<Stored>> {
    let (Some(prefix), Some(title), Some(published)) = (
        crate::parse::text_key_prefix(&entry.dedup_key),
        &entry.title,
        entry.published_at,
    ) else {
        return Ok(None);
    };
    // Every time zone is a whole number of quarter hours off UTC, so a date that gives only the
    // day (or the hour) lands on one in UTC too.
    if published.minute() % 15 == 0 && published.second() == 0 {
        return Ok(None);
    }
    if !dates.alone(published) {
        return Ok(None);
    }
    let mut stmt = tx.prepare_cached(TEXT_ITEM_BY_DATE)?;
    let mut gone_from_document = Vec::new();
    let rows = stmt.query_map(
        params![feed_id, sql_time(published), title, prefix],
        Stored::read,
    )?;
    for row in rows {
        let stored = row?;
        // `gh:x ` is also how the keys under the guid `x y` start.
        if crate::parse::text_key_prefix(&stored.key) == Some(prefix)
            && !keys_in_document.contains(stored.key.as_str())
        {
            gone_from_document.push(stored);
        }
    }
    Ok(if gone_from_document.len() == 1 {
        gone_from_document.pop()
    } else {
        None
    })
}

/// Rows of feed ?1 published at ?2 with the title ?3 and a key starting with ?4, sought through
/// `entries_by_age` (`+feed_id` so that the planner never prefers the feed's whole range of keys).
const TEXT_ITEM_BY_DATE: &str = "SELECT id, dedup_key, content_hash, story_id FROM entries
    WHERE coalesce(published_at, first_seen_at) = ?2 AND published_at = ?2
      AND +feed_id = ?1 AND title = ?3 AND substr(dedup_key, 1, length(?4)) = ?4";

/// How many items of a document carry each publication date, to the second as stored (an item
/// the document repeats counts once); counted when first asked, since most documents never are.
struct DocumentDates<'a> {
    document: &'a [ParsedEntry],
    counts: Option<HashMap<i64, usize>>,
}

impl<'a> DocumentDates<'a> {
    fn of(document: &'a [ParsedEntry]) -> DocumentDates<'a> {
        DocumentDates {
            document,
            counts: None,
        }
    }

    /// Whether exactly one item of the document has `date`.
    fn alone(&mut self, date: DateTime<Utc>) -> bool {
        let document = self.document;
        let counts = self.counts.get_or_insert_with(|| {
            let mut items = HashSet::new();
            let mut counts = HashMap::new();
            for entry in document {
                if let Some(date) = entry.published_at
                    && items.insert(entry.dedup_key.as_str())
                {
                    *counts.entry(date.timestamp()).or_insert(0) += 1;
                }
            }
            counts
        });
        counts.get(&date.timestamp()) == Some(&1)
    }
}

fn is_tombstoned(tx: &Connection, feed_id: i64, key: &str) -> rusqlite::Result<bool> {
    tx.prepare_cached("SELECT 1 FROM tombstones WHERE feed_id = ?1 AND dedup_key = ?2")?
        .exists(params![feed_id, key])
}

/// Marks the feed's tombstones whose keys `document` lacks as absent from `now`, and clears the
/// mark of those it carries again: a prune forgets tombstones absent for the whole retention
/// period (see `retention`). Only rows whose state changes are written.
fn mark_tombstone_absence(
    tx: &Connection,
    feed_id: i64,
    keys_in_document: &HashSet<&str>,
    now: &str,
) -> anyhow::Result<()> {
    // A document fetched before its feed was removed from the config, and stored after, says
    // nothing: a removed feed's tombstones age from its removal (`sync_feeds`).
    let active: bool = tx
        .prepare_cached("SELECT active FROM feeds WHERE id = ?1")?
        .query_row([feed_id], |r| r.get(0))?;
    if !active {
        return Ok(());
    }
    let keys = serde_json::to_string(keys_in_document)?;
    tx.prepare_cached(
        "UPDATE tombstones SET absent_since = NULL
         WHERE feed_id = ?1 AND absent_since IS NOT NULL
           AND dedup_key IN (SELECT value FROM json_each(?2))",
    )?
    .execute(params![feed_id, keys])?;
    tx.prepare_cached(
        "UPDATE tombstones SET absent_since = ?3
         WHERE feed_id = ?1 AND absent_since IS NULL
           AND dedup_key NOT IN (SELECT value FROM json_each(?2))",
    )?
    .execute(params![feed_id, keys, now])?;
    Ok(())
}

/// What an incoming entry corresponds to in the database.
enum Found {
    Stored(Stored),
    /// Pruned by retention: not to be stored again.
    Tombstoned,
    Nothing,
}

/// The stored entry an incoming one was matched to.
struct Stored {
    id: i64,
    key: String,
    hash: String,
    story: Option<i64>,
}

impl Stored {
    /// From a row whose first columns are `id, dedup_key, content_hash, story_id`.
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
        Ok(Stored {
            id: r.get(0)?,
            key: r.get(1)?,
            hash: r.get(2)?,
            story: r.get(3)?,
        })
    }
}

/// The page an entry of a feed with `fetch_articles` links to, when it is the entry's own: a
/// link that other items of the document share (a home page) is not this story's page.
fn article_link(e: &ParsedEntry) -> Option<&str> {
    let link = e.link.as_deref()?;
    let http = link.starts_with("http://") || link.starts_with("https://");
    (http && e.link_unique_in_doc).then_some(link)
}

/// `entries.link_shared`: 1 when other items of the document had the same link, which then
/// names no story (migration 0010).
fn link_shared(e: &ParsedEntry) -> Option<i64> {
    (e.canonical_link.is_some() && !e.link_unique_in_doc).then_some(1)
}

/// What each new entry of a result runs, prepared once for the result (see [`StoryStatements`]).
struct NewEntryStatements<'tx> {
    story: StoryStatements<'tx>,
    insert_entry: CachedStatement<'tx>,
}

impl<'tx> NewEntryStatements<'tx> {
    fn new(tx: &'tx Connection) -> rusqlite::Result<NewEntryStatements<'tx>> {
        Ok(NewEntryStatements {
            story: StoryStatements::new(tx)?,
            insert_entry: tx.prepare_cached(
                "INSERT INTO entries (feed_id, dedup_key, guid, link, canonical_link, link_shared, title, author,
                     published_at, updated_at, summary, content, content_hash, first_seen_at, last_seen_at, story_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15)",
            )?,
        })
    }

    fn insert_entry(
        &mut self,
        feed_id: i64,
        now: &str,
        e: &ParsedEntry,
        story: i64,
    ) -> anyhow::Result<i64> {
        Ok(self.insert_entry.insert(params![
            feed_id,
            e.dedup_key,
            e.guid,
            e.link,
            e.canonical_link,
            link_shared(e),
            e.title,
            e.author,
            e.published_at.map(sql_time),
            e.updated_at.map(sql_time),
            e.summary,
            e.content,
            e.content_hash,
            now,
            story,
        ])?)
    }
}

/// Stores an edited entry. An UPDATE that assigns a column of an index deletes and re-inserts the
/// row's entry in that index even when the value is the same (SQLite skips only unchanged
/// entries of expression indexes), and an edit usually changes the text alone: the indexed
/// columns (dedup key, canonical link, `link_shared`, date) go in a second statement, which
/// writes only when one of them differs.
fn update_entry(tx: &Connection, id: i64, now: &str, e: &ParsedEntry) -> anyhow::Result<()> {
    tx.prepare_cached(
        "UPDATE entries SET guid = ?2, link = ?3, title = ?4, author = ?5, updated_at = ?6,
             summary = ?7, content = ?8, content_hash = ?9, last_seen_at = ?10
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        e.guid,
        e.link,
        e.title,
        e.author,
        e.updated_at.map(sql_time),
        e.summary,
        e.content,
        e.content_hash,
        now,
    ])?;
    tx.prepare_cached(
        "UPDATE entries SET dedup_key = ?2, canonical_link = ?3, link_shared = ?4,
             published_at = coalesce(?5, published_at)
         WHERE id = ?1
           AND (dedup_key IS NOT ?2 OR canonical_link IS NOT ?3 OR link_shared IS NOT ?4
                OR published_at IS NOT coalesce(?5, published_at))",
    )?
    .execute(params![
        id,
        e.dedup_key,
        e.canonical_link,
        link_shared(e),
        e.published_at.map(sql_time),
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{store_document, store_with_one_feed};
    use chrono::TimeZone;

    fn entry(key: &str, link: &str, hash: &str) -> ParsedEntry {
        ParsedEntry {
            dedup_key: key.into(),
            guid: key.strip_prefix("g:").map(String::from),
            link: Some(format!("https://{link}")),
            canonical_link: Some(link.into()),
            link_unique_in_doc: true,
            title: Some(format!("title {key}")),
            content_hash: hash.into(),
            ..Default::default()
        }
    }

    fn setup() -> (tempfile::TempDir, Store, i64) {
        store_with_one_feed()
    }

    fn poll(store: &mut Store, feed_id: i64, entries: Vec<ParsedEntry>) -> Applied {
        store_document(store, feed_id, entries, "b")
    }

    fn count(store: &Store) -> i64 {
        store
            .conn
            .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_document_stored_after_its_feed_was_removed_leaves_the_tombstone_marks_alone() {
        let (_dir, mut store, feed_id) = setup();
        store
            .conn
            .execute(
                "INSERT INTO tombstones (feed_id, dedup_key, pruned_at) VALUES (?1, 'g:old', '2026-01-01 00:00:00')",
                [feed_id],
            )
            .unwrap();
        store.sync_feeds(&[]).unwrap();
        let marked = |store: &Store| -> bool {
            store
                .conn
                .query_row("SELECT absent_since IS NOT NULL FROM tombstones", [], |r| {
                    r.get(0)
                })
                .unwrap()
        };
        assert!(
            marked(&store),
            "removed from the config: absent from now on"
        );
        // Fetched before the removal, it still carries the key.
        poll(&mut store, feed_id, vec![entry("g:old", "a/1", "h1")]);
        assert!(marked(&store));
    }

    /// An entry as parse makes it, with the hash of its text.
    fn hashed(key: &str, link: &str, title: &str) -> ParsedEntry {
        let mut e = entry(key, link, "");
        e.title = Some(title.into());
        e.content_hash = crate::model::content_hash(e.hashed_fields());
        e
    }

    /// The hash feedhound stored before xxh3: blake3 over the same fields.
    fn blake3_hash_of(e: &ParsedEntry) -> String {
        let mut hasher = blake3::Hasher::new();
        for field in e.hashed_fields() {
            hasher.update(field.unwrap_or_default().as_bytes());
            hasher.update(b"\x1f");
        }
        hasher.finalize().to_hex().to_string()
    }

    #[test]
    fn entries_stored_under_the_older_blake3_hash_are_not_taken_for_edited_and_get_the_new_one() {
        let (_dir, mut store, feed) = setup();
        let served = hashed("g:1", "news.example/a", "Nvidia ships");
        let mut stored_then = served.clone();
        stored_then.content_hash = blake3_hash_of(&served);
        poll(&mut store, feed, vec![stored_then.clone()]);
        let stored_hash = |store: &Store| -> String {
            store
                .conn
                .query_row("SELECT content_hash FROM entries", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(stored_hash(&store), stored_then.content_hash);

        // Same text under a new guid: found by its link and its older hash, not a new entry.
        let moved = hashed("g:2", "news.example/a", "Nvidia ships");
        let applied = poll(&mut store, feed, vec![moved.clone()]);
        assert_eq!((applied.unchanged, applied.updated, applied.new), (1, 0, 0));
        assert_eq!(count(&store), 1);

        // A re-match skips entries whose hash changed since it read them: kept meanwhile.
        store
            .set_meta(
                crate::store::flags::RULES_FINGERPRINT,
                crate::store::flags::REMATCH_PENDING,
            )
            .unwrap();
        let applied = poll(&mut store, feed, vec![moved.clone()]);
        assert_eq!((applied.unchanged, applied.updated, applied.new), (1, 0, 0));
        assert_eq!(stored_hash(&store), stored_then.content_hash);

        store
            .set_meta(crate::store::flags::RULES_FINGERPRINT, "rules of now")
            .unwrap();
        let applied = poll(&mut store, feed, vec![moved.clone()]);
        assert_eq!((applied.unchanged, applied.updated, applied.new), (1, 0, 0));
        assert_eq!(stored_hash(&store), moved.content_hash);
        assert_eq!(moved.content_hash.len(), 32);

        let edited = hashed("g:2", "news.example/a", "Nvidia ships late");
        let applied = poll(&mut store, feed, vec![edited.clone()]);
        assert_eq!(applied.updated, 1);
        assert_eq!(stored_hash(&store), edited.content_hash);
    }

    #[test]
    fn a_changed_guid_with_the_same_link_updates_the_stored_entry() {
        let (_dir, mut store, feed) = setup();
        poll(&mut store, feed, vec![entry("g:1", "news.example/a", "h1")]);
        let applied = poll(
            &mut store,
            feed,
            vec![entry("g:new-1", "news.example/a", "h2")],
        );
        assert_eq!(
            applied,
            Applied {
                new: 0,
                updated: 1,
                unchanged: 0,
                mentions: 0,
                moved_to: None
            }
        );
        assert_eq!(count(&store), 1);
        let key: String = store
            .conn
            .query_row("SELECT dedup_key FROM entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(key, "g:new-1");
    }

    #[test]
    fn a_first_document_repeating_an_item_stores_it_once() {
        let (_dir, mut store, feed) = setup();
        let applied = poll(
            &mut store,
            feed,
            vec![
                entry("g:1", "news.example/a", "h1"),
                entry("g:1", "news.example/a", "h1"),
            ],
        );
        assert_eq!((applied.new, applied.unchanged), (1, 0));
        assert_eq!(count(&store), 1);
    }

    #[test]
    fn a_first_document_with_two_items_sharing_a_link_stores_both() {
        let (_dir, mut store, feed) = setup();
        let mut first = entry("g:1", "news.example", "h1");
        let mut second = entry("g:2", "news.example", "h2");
        first.link_unique_in_doc = false;
        second.link_unique_in_doc = false;
        let applied = poll(&mut store, feed, vec![first, second]);
        assert_eq!(applied.new, 2);
        assert_eq!(count(&store), 2);
    }

    #[test]
    fn a_link_shared_by_several_items_does_not_merge_them() {
        let (_dir, mut store, feed) = setup();
        poll(&mut store, feed, vec![entry("g:1", "news.example", "h1")]);
        let mut second = entry("g:2", "news.example", "h2");
        let mut third = entry("g:3", "news.example", "h3");
        second.link_unique_in_doc = false;
        third.link_unique_in_doc = false;
        let applied = poll(&mut store, feed, vec![second, third]);
        assert_eq!(applied.new, 2);
        assert_eq!(count(&store), 3);
    }

    #[test]
    fn an_entry_still_present_under_its_own_key_is_not_taken_by_a_newcomer() {
        let (_dir, mut store, feed) = setup();
        poll(&mut store, feed, vec![entry("g:1", "news.example/a", "h1")]);
        let applied = poll(
            &mut store,
            feed,
            vec![
                entry("g:1", "news.example/a", "h1"),
                entry("g:2", "news.example/a", "h2"),
            ],
        );
        assert_eq!(
            applied,
            Applied {
                new: 1,
                updated: 0,
                unchanged: 1,
                mentions: 0,
                moved_to: None
            }
        );
    }

    #[test]
    fn a_deferred_fetch_is_shown_but_not_counted_against_the_feed() {
        let (_dir, mut store, feed) = setup();
        poll(&mut store, feed, vec![entry("g:1", "news.example/a", "h1")]);
        let row = |store: &Store| -> (i64, Option<String>, Option<String>) {
            store
                .conn
                .query_row(
                    "SELECT error_count, last_error, body_hash FROM feeds WHERE id = ?1",
                    [feed],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap()
        };
        let state = FetchState::at(Utc::now(), Some(200));
        let failed = FeedResult::Failed {
            error: "not a feed".into(),
        };
        store.apply(feed, &state, &failed).unwrap();
        assert_eq!(row(&store).0, 1);

        let deferred = FeedResult::Deferred {
            error: "no parsing thread was free".into(),
        };
        store.apply(feed, &state, &deferred).unwrap();
        assert_eq!(
            row(&store),
            (
                1,
                Some("no parsing thread was free".into()),
                Some("b".into())
            )
        );
    }

    #[test]
    fn an_entry_keyed_before_fragments_counted_is_found_edited_only_at_its_own_fragment() {
        // Stored by a version whose `l:` keys left the #fragment out.
        let (_dir, mut store, feed) = setup();
        let update = |key: &str, fragment: &str, hash: &str| ParsedEntry {
            link: Some(format!("https://status.example/incidents#{fragment}")),
            ..entry(key, "status.example/incidents", hash)
        };
        poll(
            &mut store,
            feed,
            vec![update("l:status.example/incidents", "u1", "h1")],
        );
        let key = |store: &Store| -> String {
            store
                .conn
                .query_row("SELECT dedup_key FROM entries WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .unwrap()
        };

        let served_again = poll(
            &mut store,
            feed,
            vec![update("l:status.example/incidents#u1", "u1", "h1")],
        );
        assert_eq!((served_again.new, served_again.unchanged), (0, 1));
        assert_eq!(key(&store), "l:status.example/incidents#u1");

        // Stored under the old key again, then served edited: the same fragment, an edit.
        store
            .conn
            .execute(
                "UPDATE entries SET dedup_key = 'l:status.example/incidents'",
                [],
            )
            .unwrap();
        let edited = poll(
            &mut store,
            feed,
            vec![update("l:status.example/incidents#u1", "u1", "h2")],
        );
        assert_eq!((edited.new, edited.updated), (0, 1));

        // The next update alone in the feed, at another fragment: another item.
        let next = poll(
            &mut store,
            feed,
            vec![update("l:status.example/incidents#u2", "u2", "h3")],
        );
        assert_eq!((next.new, next.updated), (1, 0));
        assert_eq!(count(&store), 2);
    }

    #[test]
    fn an_entry_keyed_before_fragments_counted_is_found_when_its_link_becomes_shared() {
        let (_dir, mut store, feed) = setup();
        let update = |fragment: &str, hash: &str| ParsedEntry {
            link: Some(format!("https://status.example/incidents#{fragment}")),
            link_unique_in_doc: false,
            key_with_own_link: Some(format!("l:status.example/incidents#{fragment}")),
            ..entry(&format!("h:{hash}"), "status.example/incidents", hash)
        };
        // Stored by a version whose `l:` keys left the #fragment out, alone with its link.
        let old = ParsedEntry {
            dedup_key: "l:status.example/incidents".into(),
            link_unique_in_doc: true,
            key_with_own_link: None,
            ..update("u1", "h1")
        };
        poll(&mut store, feed, vec![old]);

        let applied = poll(
            &mut store,
            feed,
            vec![update("u2", "h2"), update("u1", "h1")],
        );
        assert_eq!((applied.new, applied.unchanged), (1, 1));
        assert_eq!(count(&store), 2);
    }

    /// An item with no guid and no link, whose key is a hash of its text (`text` here).
    fn text_item(text: &str, title: &str, published: Option<&str>) -> ParsedEntry {
        ParsedEntry {
            dedup_key: format!("h:{text}"),
            title: Some(title.into()),
            content: Some(text.into()),
            published_at: published.map(|p| p.parse().unwrap()),
            content_hash: text.into(),
            ..Default::default()
        }
    }

    const MONDAY: &str = "2026-11-23T10:17:42Z";
    const TUESDAY: &str = "2026-11-24T10:17:42Z";

    fn keys_and_first_seen(store: &Store) -> Vec<(String, String)> {
        let mut stmt = store
            .conn
            .prepare("SELECT dedup_key, first_seen_at FROM entries ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn an_edit_of_an_item_known_by_its_text_updates_its_row_when_its_title_and_date_stay() {
        let (_dir, mut store, feed) = setup();
        let other = text_item("other", "Outage", Some(MONDAY));
        poll(
            &mut store,
            feed,
            vec![text_item("v1", "Outage", Some(TUESDAY)), other.clone()],
        );
        store
            .conn
            .execute(
                "UPDATE entries SET first_seen_at = '2001-01-01 00:00:00'",
                [],
            )
            .unwrap();
        let applied = poll(
            &mut store,
            feed,
            vec![text_item("v2", "Outage", Some(TUESDAY)), other],
        );
        assert_eq!((applied.new, applied.updated, applied.unchanged), (0, 1, 1));
        assert_eq!(
            keys_and_first_seen(&store)[0],
            ("h:v2".to_string(), "2001-01-01 00:00:00".to_string()),
            "the row keeps its first-seen time and takes the new key"
        );
        assert_eq!(count(&store), 2);
    }

    #[test]
    fn a_new_item_under_a_recurring_title_is_not_taken_for_the_one_it_replaced() {
        let (_dir, mut store, feed) = setup();
        poll(
            &mut store,
            feed,
            vec![text_item("v1", "Outage", Some(MONDAY))],
        );
        let next_day = poll(
            &mut store,
            feed,
            vec![text_item("v2", "Outage", Some(TUESDAY))],
        );
        assert_eq!(next_day.new, 1, "another date: another item");
        let undated = poll(&mut store, feed, vec![text_item("v3", "Outage", None)]);
        assert_eq!(undated.new, 1, "no date: nothing tells an edit");
        let retitled = poll(
            &mut store,
            feed,
            vec![text_item("v4", "Resolved", Some(TUESDAY))],
        );
        assert_eq!(retitled.new, 1, "another title: another item");
        assert_eq!(count(&store), 4);
    }

    #[test]
    fn a_date_other_items_share_does_not_tell_an_edited_item() {
        let (_dir, mut store, feed) = setup();
        // A feed stamping every item with its build time.
        poll(
            &mut store,
            feed,
            vec![
                text_item("a1", "Update", Some(MONDAY)),
                text_item("b1", "Update", Some(MONDAY)),
            ],
        );
        let with_b = poll(
            &mut store,
            feed,
            vec![
                text_item("a2", "Update", Some(MONDAY)),
                text_item("b1", "Update", Some(MONDAY)),
            ],
        );
        assert_eq!(with_b.new, 1, "another item of the document has the date");
        let alone = poll(
            &mut store,
            feed,
            vec![text_item("c1", "Update", Some(MONDAY))],
        );
        assert_eq!(
            alone.new, 1,
            "several stored items gone from the document fit"
        );
        assert_eq!(count(&store), 4);
    }

    #[test]
    fn a_coarse_date_or_a_missing_title_does_not_tell_an_edited_item() {
        let (_dir, mut store, feed) = setup();
        // Only the day, or the hour: a new item under a recurring title would fit.
        // Midnight in India is 18:30 UTC.
        for (n, date) in [
            "2026-11-24T00:00:00Z",
            "2026-11-24T15:00:00Z",
            "2026-11-24T18:30:00Z",
        ]
        .into_iter()
        .enumerate()
        {
            poll(
                &mut store,
                feed,
                vec![text_item(&format!("a{n}"), "Halt", Some(date))],
            );
            let next = poll(
                &mut store,
                feed,
                vec![text_item(&format!("b{n}"), "Halt", Some(date))],
            );
            assert_eq!(next.new, 1, "{date}");
        }
        let untitled = |text: &str| ParsedEntry {
            title: None,
            ..text_item(text, "", Some(MONDAY))
        };
        poll(&mut store, feed, vec![untitled("c1")]);
        assert_eq!(poll(&mut store, feed, vec![untitled("c2")]).new, 1);
        assert_eq!(count(&store), 8);
    }

    #[test]
    fn dates_within_one_second_are_one_date() {
        let (_dir, mut store, feed) = setup();
        poll(
            &mut store,
            feed,
            vec![text_item("a1", "Update", Some(MONDAY))],
        );
        let applied = poll(
            &mut store,
            feed,
            vec![
                text_item("a2", "Update", Some("2026-11-23T10:17:42.2Z")),
                text_item("b1", "Other", Some("2026-11-23T10:17:42.7Z")),
            ],
        );
        assert_eq!(
            applied.new, 2,
            "stored to the second, the date is not this item's alone"
        );
    }

    #[test]
    fn a_row_without_a_date_is_not_found_by_its_first_seen_time() {
        let (_dir, mut store, feed) = setup();
        poll(&mut store, feed, vec![text_item("a1", "Update", None)]);
        store
            .conn
            .execute(
                "UPDATE entries SET first_seen_at = '2026-11-23 10:17:42'",
                [],
            )
            .unwrap();
        let applied = poll(
            &mut store,
            feed,
            vec![text_item("a2", "Update", Some(MONDAY))],
        );
        assert_eq!(applied.new, 1);
    }

    #[test]
    fn an_item_pruned_and_still_served_does_not_take_the_row_of_one_that_shared_its_date() {
        let (_dir, mut store, feed) = setup();
        poll(
            &mut store,
            feed,
            vec![
                text_item("pruned", "Update", Some(MONDAY)),
                text_item("kept", "Update", Some(MONDAY)),
            ],
        );
        // What retention leaves after deleting one of them.
        store
            .conn
            .execute_batch(
                "DELETE FROM entries WHERE dedup_key = 'h:pruned';
                 INSERT INTO tombstones (feed_id, dedup_key, pruned_at)
                     SELECT id, 'h:pruned', '2026-11-25 00:00:00' FROM feeds;",
            )
            .unwrap();
        let applied = poll(
            &mut store,
            feed,
            vec![text_item("pruned", "Update", Some(MONDAY))],
        );
        assert_eq!((applied.new, applied.updated, applied.unchanged), (0, 0, 1));
        assert_eq!(keys_and_first_seen(&store)[0].0, "h:kept");
    }

    #[test]
    fn an_item_the_document_repeats_is_one_item_with_its_date() {
        let (_dir, mut store, feed) = setup();
        poll(
            &mut store,
            feed,
            vec![text_item("a1", "Update", Some(MONDAY))],
        );
        let edited = text_item("a2", "Update", Some(MONDAY));
        let applied = poll(&mut store, feed, vec![edited.clone(), edited]);
        assert_eq!((applied.new, applied.updated), (0, 1));
        assert_eq!(count(&store), 1);
    }

    #[test]
    fn two_items_edited_in_one_document_each_keep_their_row() {
        let (_dir, mut store, feed) = setup();
        poll(
            &mut store,
            feed,
            vec![
                text_item("a1", "Update", Some(MONDAY)),
                text_item("b1", "Update", Some(TUESDAY)),
            ],
        );
        let applied = poll(
            &mut store,
            feed,
            vec![
                text_item("b2", "Update", Some(TUESDAY)),
                text_item("a2", "Update", Some(MONDAY)),
            ],
        );
        assert_eq!((applied.new, applied.updated), (0, 2));
        let keys: Vec<String> = keys_and_first_seen(&store)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["h:a2", "h:b2"]);
    }

    #[test]
    fn an_item_still_in_the_document_is_not_taken_by_another_with_its_old_date() {
        let (_dir, mut store, feed) = setup();
        poll(
            &mut store,
            feed,
            vec![text_item("a1", "Update", Some(MONDAY))],
        );
        // The same text, dated anew (dates are not part of the key), beside a new item under
        // the old date.
        let applied = poll(
            &mut store,
            feed,
            vec![
                text_item("a1", "Update", Some(TUESDAY)),
                text_item("b1", "Update", Some(MONDAY)),
            ],
        );
        assert_eq!((applied.new, applied.unchanged), (1, 1));
        assert_eq!(count(&store), 2);
    }

    #[test]
    fn an_item_under_a_repeated_guid_is_matched_only_to_rows_under_that_guid() {
        let (_dir, mut store, feed) = setup();
        let under = |guid: &str, text: &str| ParsedEntry {
            dedup_key: format!("gh:{guid} {text}"),
            guid: Some(guid.into()),
            ..text_item(text, "Notice", Some(MONDAY))
        };
        poll(&mut store, feed, vec![under("x y", "v0")]);
        // Keys under the guid `x y` start as those under `x` do.
        let x_first = poll(&mut store, feed, vec![under("x", "v1")]);
        assert_eq!(x_first.new, 1);
        let other_guid = poll(&mut store, feed, vec![under("y", "v2")]);
        assert_eq!(other_guid.new, 1);
        let plain = poll(
            &mut store,
            feed,
            vec![text_item("v3", "Notice", Some(MONDAY))],
        );
        assert_eq!(plain.new, 1, "a key of another kind is another item");
        let edited = poll(&mut store, feed, vec![under("x", "v4")]);
        assert_eq!((edited.new, edited.updated), (0, 1));
        assert_eq!(count(&store), 4);
        let keys: Vec<String> = keys_and_first_seen(&store)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert!(keys.contains(&"gh:x y v0".to_string()), "{keys:?}");
        assert!(keys.contains(&"gh:x v4".to_string()), "{keys:?}");
    }

    #[test]
    fn the_edited_item_lookup_seeks_the_date_index() {
        let (_dir, store, _feed) = setup();
        let plan: Vec<String> = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {TEXT_ITEM_BY_DATE}"))
            .unwrap()
            .query_map(params![1, "2026-11-23 10:00:00", "t", "h:"], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|step| step.contains("entries_by_age")),
            "{plan:?}"
        );
    }

    /// The names of the indexes of `entries` whose pages the WAL holds. Each index of a database
    /// this small is its root page alone; a WAL frame's header starts with its page's number.
    fn entry_indexes_in_wal(store: &Store) -> Vec<String> {
        let mut wal = store.path().as_os_str().to_owned();
        wal.push("-wal");
        let wal = std::fs::read(wal).unwrap();
        let page_size = u32::from_be_bytes(wal[8..12].try_into().unwrap()) as usize;
        let pages: HashSet<u32> = wal[32..]
            .chunks(24 + page_size)
            .map(|frame| u32::from_be_bytes(frame[..4].try_into().unwrap()))
            .collect();
        let mut statement = store
            .conn
            .prepare("SELECT name, rootpage FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'entries' ORDER BY name")
            .unwrap();
        statement
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .filter(|(_, root)| pages.contains(root))
            .map(|(name, _)| name)
            .collect()
    }

    #[test]
    fn an_edit_rewrites_the_entry_indexes_only_when_its_key_link_or_date_changes() {
        let (_dir, mut store, feed) = setup();
        let published = |day: u32| Some(Utc.with_ymd_and_hms(2026, 11, day, 10, 0, 0).unwrap());
        let mut edit = entry("g:1", "news.example/a", "h1");
        edit.published_at = published(20);
        poll(&mut store, feed, vec![edit.clone()]);
        let indexes_written = |store: &mut Store, edit: &ParsedEntry| {
            let busy: i64 = store
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .unwrap();
            assert_eq!(busy, 0, "the WAL was not emptied");
            assert_eq!(poll(store, feed, vec![edit.clone()]).updated, 1);
            entry_indexes_in_wal(store)
        };
        let stored = |store: &Store, column: &str| -> String {
            let sql = format!("SELECT {column} FROM entries");
            store.conn.query_row(&sql, [], |r| r.get(0)).unwrap()
        };

        edit.title = Some("A new headline".into());
        edit.content_hash = "h2".into();
        assert_eq!(
            indexes_written(&mut store, &edit),
            Vec::<String>::new(),
            "new text"
        );
        edit.published_at = None;
        edit.content_hash = "h3".into();
        assert_eq!(
            indexes_written(&mut store, &edit),
            Vec::<String>::new(),
            "no date"
        );
        assert_eq!(stored(&store, "published_at"), "2026-11-20 10:00:00");

        edit.published_at = published(21);
        edit.content_hash = "h4".into();
        let written = indexes_written(&mut store, &edit);
        let dated = ["entries_by_age", "entries_by_story"];
        assert!(
            dated.iter().all(|i| written.contains(&i.to_string())),
            "new date: {written:?}"
        );

        let mut moved = entry("g:1", "news.example/b", "h5");
        moved.published_at = published(21);
        let written = indexes_written(&mut store, &moved);
        assert!(
            written.contains(&"entries_by_link".into()),
            "new link: {written:?}"
        );
        // Found by its link under a new guid.
        let mut rekeyed = entry("g:2", "news.example/b", "h6");
        rekeyed.published_at = published(21);
        let written = indexes_written(&mut store, &rekeyed);
        assert!(
            written.contains(&"sqlite_autoindex_entries_1".into()),
            "new key: {written:?}"
        );

        assert_eq!(
            ["title", "published_at", "canonical_link", "dedup_key"].map(|c| stored(&store, c)),
            ["title g:2", "2026-11-21 10:00:00", "news.example/b", "g:2"]
        );
    }

    #[test]
    fn first_seen_is_kept_when_content_changes() {
        let (_dir, mut store, feed) = setup();
        poll(&mut store, feed, vec![entry("g:1", "news.example/a", "h1")]);
        store
            .conn
            .execute(
                "UPDATE entries SET first_seen_at = '2001-01-01 00:00:00'",
                [],
            )
            .unwrap();
        let applied = poll(&mut store, feed, vec![entry("g:1", "news.example/a", "h2")]);
        assert_eq!(applied.updated, 1);
        let (first, hash): (String, String) = store
            .conn
            .query_row("SELECT first_seen_at, content_hash FROM entries", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(first, "2001-01-01 00:00:00");
        assert_eq!(hash, "h2");
    }
}
