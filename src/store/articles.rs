//! The `articles` table: the linked pages of entries of feeds with `fetch_articles`.
//!
//! `entries` queues a row in the transaction that stores or edits its entry, so an article
//! waiting to be fetched survives a crash. `crate::articles` fetches the due ones and reports
//! each back here, where its text is kept and the entry's mentions are rewritten from the
//! entry's own text and the page's together, as an edit's are: a company only the page names
//! flags the story, and alerts the targets that want it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::flags::{release_alerts_waiting_for_pages, rewrite_edited_mentions};
use super::{Store, parse_sql_time, sql_time};
use crate::model::Mention;

/// A feed's article pages that are not read (yet): what `feedhound feeds` shows under it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PageTroubles {
    /// Pages waiting to be fetched: new ones, and ones to be tried again.
    pub waiting: i64,
    /// Of those, the pages that failed before and wait for a retry.
    pub retrying: i64,
    /// Pages given up: their entries are matched on their own text only.
    pub given_up: i64,
    /// The page of the newest entry among those given up (not the page given up last).
    pub latest_given_up: Option<GivenUpPage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GivenUpPage {
    pub url: String,
    /// Why, as the log said it.
    pub error: Option<String>,
}

/// What [`Store::record_article`] did with a report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArticleRecorded {
    /// The report changed the article: false when its entry is gone, or when the entry was
    /// edited since and the report brings no fresh text (a re-match or a failure, which the
    /// round the edit queued does again).
    pub applied: bool,
    /// The entry's mentions were rewritten, or its story's first alerts stopped waiting for the
    /// page: an alert may be due.
    pub alerts_may_be_due: bool,
}

/// An article due to be fetched, or re-matched, with the entry's text as stored.
#[derive(Debug, Clone)]
pub struct DueArticle {
    pub entry_id: i64,
    pub url: String,
    /// The config URL of the entry's feed: its `headers` go with the request where they belong.
    pub feed_url: String,
    /// The entry's `content_hash` as read: its edit since then makes the report stale.
    pub content_hash: String,
    pub title: String,
    pub summary: String,
    pub content: String,
    /// The text of the last successful fetch, and when that was.
    pub text: Option<String>,
    pub fetched_at: Option<DateTime<Utc>>,
    /// Failed attempts since the last success.
    pub attempts: u32,
}

/// What became of one due article.
#[derive(Debug)]
pub struct ArticleReport {
    pub entry_id: i64,
    /// [`DueArticle::content_hash`].
    pub content_hash: String,
    /// The final HTTP status, when a response came.
    pub status: Option<u16>,
    pub outcome: ArticleOutcome,
    /// The entry's mentions over its own text and the page's, when there is page text to
    /// match (fetched now, or kept from before); None leaves its mentions as they are.
    pub mentions: Option<Vec<Mention>>,
}

#[derive(Debug)]
pub enum ArticleOutcome {
    /// The page was read: its text.
    Fetched(String),
    /// Not fetched again: the entry was re-matched with the text kept from the last fetch.
    Kept,
    /// The page could not be read. Retried at `retry_at`; given up when None.
    Failed {
        error: String,
        retry_at: Option<DateTime<Utc>>,
    },
}

/// Queues the fetch of a stored entry's linked page, due at once. An edited entry's article is
/// queued again, so that its mentions are matched with its new text and the page's; under the
/// same link it keeps its failures (one given up stays so, one waiting for a retry waits on)
/// and its text, which the worker reuses for an hour (see `articles`). A new link starts over.
pub(super) fn queue_article(
    tx: &Connection,
    entry_id: i64,
    url: &str,
    now: DateTime<Utc>,
    from_backlog: bool,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO articles (entry_id, url, state, next_attempt_at, from_backlog)
         VALUES (?1, ?2, 'pending', ?3, ?4)
         ON CONFLICT (entry_id) DO UPDATE SET
             state = CASE WHEN articles.url = excluded.url AND articles.state = 'failed'
                          THEN 'failed' ELSE 'pending' END,
             next_attempt_at = CASE
                 WHEN articles.url IS NOT excluded.url THEN excluded.next_attempt_at
                 WHEN articles.state = 'failed' THEN NULL
                 WHEN articles.state = 'pending'
                     THEN max(articles.next_attempt_at, excluded.next_attempt_at)
                 ELSE excluded.next_attempt_at END,
             attempts = CASE WHEN articles.url = excluded.url THEN articles.attempts ELSE 0 END,
             text = CASE WHEN articles.url = excluded.url THEN articles.text END,
             fetched_at = CASE WHEN articles.url = excluded.url THEN articles.fetched_at END,
             url = excluded.url, from_backlog = excluded.from_backlog",
    )?
    .execute(params![entry_id, url, sql_time(now), from_backlog])?;
    Ok(())
}

impl Store {
    /// Up to `limit` articles due at `now`, the longest waiting first, leaving out `busy` ones.
    /// Those of a feed out of the config, or without `fetch_articles` now, wait for it.
    pub fn due_articles(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        busy: &[i64],
    ) -> anyhow::Result<Vec<DueArticle>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT a.entry_id, a.url, f.url, e.content_hash, coalesce(e.title, ''),
                 coalesce(e.summary, ''), coalesce(e.content, ''), a.text, a.fetched_at, a.attempts
             FROM articles a JOIN entries e ON e.id = a.entry_id JOIN feeds f ON f.id = e.feed_id
             WHERE a.state = 'pending' AND a.next_attempt_at <= ?1
               AND f.active = 1 AND f.fetch_articles = 1
               AND a.entry_id NOT IN (SELECT value FROM json_each(?2))
             ORDER BY a.next_attempt_at LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![sql_time(now), serde_json::to_string(busy)?, limit as i64],
            |r| {
                Ok(DueArticle {
                    entry_id: r.get(0)?,
                    url: r.get(1)?,
                    feed_url: r.get(2)?,
                    content_hash: r.get(3)?,
                    title: r.get(4)?,
                    summary: r.get(5)?,
                    content: r.get(6)?,
                    text: r.get(7)?,
                    fetched_at: r
                        .get::<_, Option<String>>(8)?
                        .as_deref()
                        .and_then(parse_sql_time),
                    attempts: r.get(9)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the next pending article [`Store::due_articles`] would return is due.
    pub fn next_article_time(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        let next: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT min(a.next_attempt_at)
                 FROM articles a JOIN entries e ON e.id = a.entry_id JOIN feeds f ON f.id = e.feed_id
                 WHERE a.state = 'pending' AND f.active = 1 AND f.fetch_articles = 1",
            )?
            .query_row([], |r| r.get(0))?;
        Ok(next.as_deref().and_then(parse_sql_time))
    }

    /// [`PageTroubles`] of every feed that has pages waiting or given up, by feed id. Pages wait
    /// only while their feed has `fetch_articles` (pending rows of a feed that turned it off are
    /// not due). Reads the pending and failed rows through their partial indexes, never the
    /// pages' text.
    pub(super) fn page_troubles_by_feed(&self) -> rusqlite::Result<HashMap<i64, PageTroubles>> {
        let mut troubles: HashMap<i64, PageTroubles> = HashMap::new();
        let mut waiting = self.conn.prepare_cached(
            "SELECT e.feed_id, count(*), sum(a.attempts > 0)
             FROM articles a JOIN entries e ON e.id = a.entry_id JOIN feeds f ON f.id = e.feed_id
             WHERE a.state = 'pending' AND f.fetch_articles = 1 GROUP BY e.feed_id",
        )?;
        let mut rows = waiting.query([])?;
        while let Some(row) = rows.next()? {
            let feed = troubles.entry(row.get(0)?).or_default();
            feed.waiting = row.get(1)?;
            feed.retrying = row.get(2)?;
        }
        // With max() the only aggregate beside count(), SQLite takes the bare columns from the
        // row that gives it.
        let mut given_up = self.conn.prepare_cached(
            "SELECT e.feed_id, count(*), a.url, a.error, max(a.entry_id)
             FROM articles a JOIN entries e ON e.id = a.entry_id
             WHERE a.state = 'failed' GROUP BY e.feed_id",
        )?;
        let mut rows = given_up.query([])?;
        while let Some(row) = rows.next()? {
            let feed = troubles.entry(row.get(0)?).or_default();
            feed.given_up = row.get(1)?;
            feed.latest_given_up = Some(GivenUpPage {
                url: row.get(2)?,
                error: row.get(3)?,
            });
        }
        Ok(troubles)
    }

    /// Article pages of active feeds with `fetch_articles`: (waiting, given up).
    pub(super) fn article_page_counts(&self) -> rusqlite::Result<(i64, i64)> {
        self.conn
            .prepare_cached(
                "SELECT coalesce(sum(a.waiting), 0), coalesce(sum(NOT a.waiting), 0)
                 FROM (SELECT entry_id, 1 AS waiting FROM articles WHERE state = 'pending'
                       UNION ALL
                       SELECT entry_id, 0 FROM articles WHERE state = 'failed') a
                 JOIN entries e ON e.id = a.entry_id JOIN feeds f ON f.id = e.feed_id
                 WHERE f.active = 1 AND f.fetch_articles = 1",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
    }

    /// Records what became of an article and, when it brings mentions, rewrites the entry's
    /// (see the module docs). An entry deleted meanwhile is left gone; one edited since it was
    /// read keeps the page's text but not these mentions, since its edit queued the article
    /// again and that round matches the new text. A page's new text takes its entry's old text
    /// out of the search index: a damaged index is set aside for it, as for feed results.
    pub fn record_article(&mut self, report: &ArticleReport) -> anyhow::Result<ArticleRecorded> {
        match self.record_article_once(report) {
            Err(err) if self.set_aside_search_index_if_damaged(&err)? => {
                self.record_article_once(report)
            }
            done => done,
        }
    }

    fn record_article_once(&mut self, report: &ArticleReport) -> anyhow::Result<ArticleRecorded> {
        let tx = super::write_transaction(&mut self.conn)?;
        let now = Utc::now();
        let stored: Option<(String, Option<i64>, bool)> = tx
            .prepare_cached(
                "SELECT e.content_hash, e.story_id, a.from_backlog
                 FROM entries e JOIN articles a ON a.entry_id = e.id WHERE e.id = ?1",
            )?
            .query_row([report.entry_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((content_hash, story, from_backlog)) = stored else {
            return Ok(ArticleRecorded::default());
        };
        let current = content_hash == report.content_hash;
        match &report.outcome {
            ArticleOutcome::Fetched(text) => {
                tx.prepare_cached(
                    "UPDATE articles SET text = ?2, fetched_at = ?3, status = ?4, error = NULL,
                         attempts = 0,
                         state = CASE WHEN ?5 THEN 'fetched' ELSE state END,
                         next_attempt_at = CASE WHEN ?5 THEN NULL ELSE next_attempt_at END
                     WHERE entry_id = ?1",
                )?
                .execute(params![
                    report.entry_id,
                    text,
                    sql_time(now),
                    report.status,
                    current
                ])?;
            }
            ArticleOutcome::Kept if current => {
                tx.prepare_cached(
                    "UPDATE articles SET state = 'fetched', next_attempt_at = NULL
                     WHERE entry_id = ?1",
                )?
                .execute([report.entry_id])?;
            }
            ArticleOutcome::Kept => {}
            ArticleOutcome::Failed { error, retry_at } if current => {
                tx.prepare_cached(
                    "UPDATE articles SET attempts = attempts + 1, status = ?2, error = ?3,
                         state = CASE WHEN ?4 IS NULL THEN 'failed' ELSE 'pending' END,
                         next_attempt_at = ?4
                     WHERE entry_id = ?1",
                )?
                .execute(params![
                    report.entry_id,
                    report.status,
                    error,
                    retry_at.map(sql_time)
                ])?;
            }
            ArticleOutcome::Failed { .. } => {}
        }
        let applied = current || matches!(report.outcome, ArticleOutcome::Fetched(_));
        let mentions_rewritten = match &report.mentions {
            Some(mentions) if current => {
                rewrite_edited_mentions(
                    &tx,
                    &self.flagging,
                    report.entry_id,
                    story,
                    mentions,
                    now,
                    from_backlog,
                    true,
                )?;
                true
            }
            _ => false,
        };
        let alerts_released = match story {
            Some(story) => release_alerts_waiting_for_pages(&tx, story, now)?,
            None => false,
        };
        tx.commit()?;
        Ok(ArticleRecorded {
            applied,
            alerts_may_be_due: mentions_rewritten || alerts_released,
        })
    }
}
