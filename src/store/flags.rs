//! Companies, mentions and stories: what turns stored entries into flagged stories.
//!
//! Mentions are computed by `matcher` before the write and recorded here in the same
//! transaction as the entry they belong to. Entries are grouped into stories as they arrive:
//! the same canonical link anywhere, or the same normalised title within
//! [`TITLE_WINDOW`](super::titles::TITLE_WINDOW), as any entry of the story already had
//! (`story_titles` holds the titles of entries that joined by link; `titles` finds them). An
//! alert is queued in `outbox` the first time a story is flagged for a notify target, and when an
//! edit or a new copy names a company the story did not, in that same transaction, so a crash
//! can never keep a flag and lose its alert. An alert that has not gone out is withdrawn while
//! its story names no company its target wants, and put back when it does again.

use std::collections::{HashMap, HashSet, hash_map};
use std::sync::Arc;

use chrono::{DateTime, Datelike as _, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use rusqlite::functions::FunctionFlags;
use rusqlite::{CachedStatement, Connection, OptionalExtension, params};
use serde::Serialize;

use super::titles::TitleLookup;
use super::{FeedSet, Store, parse_sql_time, sql_time};
use crate::config::CompanyConfig;
use crate::matcher::comparable_name;
use crate::model::{Mention, ParsedEntry};

/// Which notify targets want alerts for which companies (`None`: every company).
#[derive(Debug, Clone)]
pub struct AlertRoute {
    pub target: String,
    pub companies: Option<Vec<String>>,
    /// Alerts for backlog documents too: a feed's first parsed document, or its first after a
    /// time out of the config (see `queue_alerts`).
    pub backlog: bool,
    /// The target sends at digest times. Its first alerts do not wait for article pages (see
    /// [`PAGE_WAIT`]): a digest reads its stories when it goes, mostly long after their pages,
    /// and a wait could make an alert queued just before a digest time miss that digest.
    pub digest: bool,
}

/// How long a story's first alert waits for the article page of the new entry that flagged it,
/// when its feed has `fetch_articles`. The page may name more companies, and one alert naming
/// them all is better than an alert now and another for each company the page adds. A report
/// on the last page of the story not tried yet ends the wait (read, failed for now, given up);
/// this bounds it for a slow site.
const PAGE_WAIT: chrono::Duration = chrono::Duration::minutes(2);

/// What the writer needs to record flags: company ids by name, and alert routes.
#[derive(Debug, Default)]
pub(super) struct Flagging {
    company_ids: HashMap<Arc<str>, i64>,
    routes: Vec<AlertRoute>,
}

impl Flagging {
    /// The configured target named `target`; None for one no longer in the config.
    pub(super) fn route(&self, target: &str) -> Option<&AlertRoute> {
        self.routes.iter().find(|r| r.target == target)
    }

    /// Whether any alert can be queued: without notify targets, what a story named before an
    /// entry need not be read.
    pub(super) fn alerts_anyone(&self) -> bool {
        !self.routes.is_empty()
    }

    /// A hash of what decides whether an alert is borne out, beside what its story names: the
    /// companies tracked and what each target wants.
    fn wants_fingerprint(&self) -> String {
        let mut companies: Vec<(&str, i64)> = self
            .company_ids
            .iter()
            .map(|(name, id)| (&**name, *id))
            .collect();
        companies.sort_unstable();
        let routes: Vec<(&str, Option<&Vec<String>>)> = self
            .routes
            .iter()
            .map(|r| (r.target.as_str(), r.companies.as_ref()))
            .collect();
        short_hash(&format!("{companies:?} {routes:?}"))
    }
}

/// Key in the `meta` table: [`Flagging::wants_fingerprint`] of the config the undelivered
/// alerts were last reassessed with.
const ALERT_WANTS_FINGERPRINT: &str = "alert_wants";

/// Key in the `meta` table: a fingerprint of the company rules the stored mentions were
/// computed with, or [`REMATCH_PENDING`]. When the config's rules differ, stored entries are
/// re-matched.
pub const RULES_FINGERPRINT: &str = "company_rules";
/// The value of [`RULES_FINGERPRINT`] from the moment a re-match is due until one finishes: a
/// re-match stopped midway leaves mentions of two sets of rules, which no fingerprint names.
pub const REMATCH_PENDING: &str = "";

/// [`Store::rematch_pending`], inside a transaction.
pub(super) fn rematch_pending_in(conn: &Connection) -> rusqlite::Result<bool> {
    Ok(read_meta(conn, RULES_FINGERPRINT)?.is_some_and(|f| f == REMATCH_PENDING))
}

/// A value from the `meta` table.
fn read_meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

fn write_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

/// An entry's mentions computed anew, for the text `content_hash` stands for.
pub struct Rematched {
    pub entry_id: i64,
    pub content_hash: String,
    pub mentions: Vec<Mention>,
}

/// An entry's text, for re-matching.
#[derive(Debug, Clone)]
pub struct StoredText {
    pub entry_id: i64,
    /// As read: the re-matched mentions are written only if the text is still this one. The
    /// entry's hash, and the fetch time of its article when it has one.
    pub content_hash: String,
    pub title: String,
    pub summary: String,
    pub content: String,
    /// The article's text (see `articles`), empty when none was fetched.
    pub article: String,
}

/// What [`StoredText::content_hash`] is read as, from `entries e LEFT JOIN articles a`.
const TEXT_VERSION: &str = "e.content_hash || coalesce(' ' || a.fetched_at, '')";

/// A flagged story as `feedhound mentions` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct FlaggedStory {
    pub story_id: i64,
    pub title: Option<String>,
    pub link: Option<String>,
    pub feed: String,
    pub published_at: Option<String>,
    pub first_seen_at: String,
    pub companies: Vec<String>,
    pub snippet: String,
    pub sources: Vec<Source>,
}

/// How much one company was in the news in a period, as `feedhound companies` lists it.
#[derive(Debug, Clone, Default)]
pub struct CompanyActivity {
    /// Stories whose first entry that mentions the company is dated in the period.
    pub stories: i64,
    /// Feeds of the entries in the period that mention the company.
    pub sources: i64,
    /// The newest of those entries' date (published, else first seen).
    pub latest_at: Option<String>,
}

/// The spans `feedhound companies --by` counts stories in: days, weeks from Monday, or
/// calendar months, on a report's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Day,
    Week,
    Month,
}

impl Span {
    /// The first day of the span `day` is in.
    pub fn start(self, day: NaiveDate) -> NaiveDate {
        match self {
            Span::Day => day,
            Span::Week => day - Days::new(u64::from(day.weekday().num_days_from_monday())),
            Span::Month => day - Days::new(u64::from(day.day0())),
        }
    }

    /// The first day of the span after the one that starts on `start`.
    pub fn next(self, start: NaiveDate) -> NaiveDate {
        match self {
            Span::Day => start + Days::new(1),
            Span::Week => start + Days::new(7),
            Span::Month => start + chrono::Months::new(1),
        }
    }

    /// The first day of the span `count` spans before the one that starts on `start`.
    pub fn before(self, start: NaiveDate, count: u32) -> NaiveDate {
        match self {
            Span::Day => start - Days::new(count.into()),
            Span::Week => start - Days::new(7 * u64::from(count)),
            Span::Month => start - chrono::Months::new(count),
        }
    }

    /// [`Span::start`] in SQL, of the date stored time `first_at` has on `zone`'s clock:
    /// through SQLite's own `date` in UTC, through `local_date` in any other zone.
    fn start_sql(self, zone: Tz) -> String {
        let date = match zone {
            Tz::UTC => "first_at".to_owned(),
            // An IANA name is letters, digits and `/_+-`: nothing to quote.
            zone => format!("local_date(first_at, '{}')", zone.name()),
        };
        match self {
            Span::Day => format!("date({date})"),
            // 'weekday 0' moves on to the Sunday ending the week (or stays on it).
            Span::Week => format!("date({date}, 'weekday 0', '-6 days')"),
            Span::Month => format!("date({date}, 'start of month')"),
        }
    }
}

/// Adds `local_date(time, zone)` to `conn`: the date a stored time has on the clock of `zone`
/// (an IANA name). SQLite's own `'localtime'` knows only the machine's zone, through its
/// tzdata, which containers often lack; chrono-tz has the rules built in.
pub(super) fn add_local_date(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "local_date",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            // Parsed once per statement, not once per row.
            let zone = ctx.get_or_create_aux(
                1,
                |name| -> Result<Tz, Box<dyn std::error::Error + Send + Sync>> {
                    Ok(name.as_str()?.parse::<Tz>()?)
                },
            )?;
            let Some(text) = ctx.get::<Option<String>>(0)? else {
                return Ok(None);
            };
            let time = super::parse_sql_time(&text).ok_or_else(|| {
                rusqlite::Error::UserFunctionError(format!("{text:?} is not a stored time").into())
            })?;
            Ok(Some(time.with_timezone(&*zone).date_naive().to_string()))
        },
    )
}

/// One entry of a story.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    pub feed: String,
    pub title: Option<String>,
    pub link: Option<String>,
    pub published_at: Option<String>,
}

impl Store {
    /// Makes `companies` match the config (removed ones become inactive; their mentions stay
    /// but no longer show as flags) and remembers where alerts go.
    pub fn sync_companies(
        &mut self,
        companies: &[CompanyConfig],
        routes: Vec<AlertRoute>,
    ) -> anyhow::Result<()> {
        let tx = super::write_transaction(&mut self.conn)?;
        tx.execute("UPDATE companies SET active = 0", [])?;
        {
            let mut upsert = tx.prepare(
                "INSERT INTO companies (name, aliases, ticker, tags, active) VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT (name) DO UPDATE SET aliases = excluded.aliases, ticker = excluded.ticker,
                     tags = excluded.tags, active = 1",
            )?;
            for company in companies {
                upsert.execute(params![
                    company.rule.name,
                    serde_json::to_string(&company.rule.aliases)?,
                    company.ticker,
                    serde_json::to_string(&company.tags)?,
                ])?;
            }
        }
        let ids = tx
            .prepare("SELECT name, id FROM companies WHERE active = 1")?
            .query_map([], |r| {
                Ok((Arc::<str>::from(r.get::<_, String>(0)?), r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        let flagging = Flagging {
            company_ids: ids,
            routes,
        };
        // Unchanged, the config bears out every alert it did: edits, copies and re-matches
        // reassess the alerts of the stories they change. A CLI command syncs too, so this
        // spares each one a read of every waiting alert.
        let wants = flagging.wants_fingerprint();
        if read_meta(&tx, ALERT_WANTS_FINGERPRINT)?.as_deref() != Some(wants.as_str()) {
            reassess_alerts(&tx, &flagging, Reassess::All, Utc::now())?;
            write_meta(&tx, ALERT_WANTS_FINGERPRINT, &wants)?;
        }
        tx.commit()?;
        self.flagging = flagging;
        Ok(())
    }

    /// A value from the `meta` table.
    pub fn meta(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(read_meta(&self.conn, key)?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> anyhow::Result<()> {
        Ok(write_meta(&self.conn, key, value)?)
    }

    /// Up to `limit` entries after `after` (by id), for re-matching.
    pub fn texts_after(&self, after: i64, limit: usize) -> anyhow::Result<Vec<StoredText>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT e.id, {TEXT_VERSION}, coalesce(e.title, ''), coalesce(e.summary, ''),
                 coalesce(e.content, ''), coalesce(a.text, '')
             FROM entries e LEFT JOIN articles a ON a.entry_id = e.id
             WHERE e.id > ?1 ORDER BY e.id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![after, limit as i64], |r| {
            Ok(StoredText {
                entry_id: r.get(0)?,
                content_hash: r.get(1)?,
                title: r.get(2)?,
                summary: r.get(3)?,
                content: r.get(4)?,
                article: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Replaces the mentions of each entry with freshly computed ones, in one transaction.
    /// A rescan records flags but queues no alerts: a new company must not page the user about
    /// every old story that names it. It reassesses the undelivered alerts of the stories it
    /// changed, as an edit does. Entries edited (a poll re-matched them already) or deleted
    /// (retention) since their text was read are left alone.
    pub fn replace_mentions(&mut self, batch: &[Rematched]) -> anyhow::Result<usize> {
        let tx = super::write_transaction(&mut self.conn)?;
        let mut changed_stories = HashSet::new();
        let mut changed = 0;
        {
            let mut now_stored = tx.prepare_cached(&format!(
                "SELECT {TEXT_VERSION}, e.story_id
                 FROM entries e LEFT JOIN articles a ON a.entry_id = e.id WHERE e.id = ?1"
            ))?;
            for entry in batch {
                let current: Option<(String, Option<i64>)> = now_stored
                    .query_row([entry.entry_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let Some((hash, story)) = current else {
                    continue;
                };
                if hash == entry.content_hash
                    && write_mentions(&tx, &self.flagging, entry.entry_id, &entry.mentions)?
                {
                    changed += 1;
                    changed_stories.extend(story);
                }
            }
        }
        let now = Utc::now();
        for story in changed_stories {
            reassess_alerts(&tx, &self.flagging, Reassess::Story(story), now)?;
        }
        tx.commit()?;
        Ok(changed)
    }

    /// Whether stored mentions may be from other company rules than the config's: set when a
    /// re-match is due, cleared when one finishes. Retention waits meanwhile, since an entry
    /// without mentions now may be flagged by the new rules.
    pub fn rematch_pending(&self) -> anyhow::Result<bool> {
        Ok(rematch_pending_in(&self.conn)?)
    }

    /// Flagged stories, newest first, optionally for one company, in a period, from some feeds;
    /// at most `limit` (None: all).
    pub fn flagged_stories(
        &self,
        company: Option<&str>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        feeds: Option<&FeedSet>,
        limit: Option<usize>,
    ) -> anyhow::Result<Vec<FlaggedStory>> {
        let query = FlaggedQuery {
            company_id: self.company_id(company)?,
            since,
            until,
            feeds,
            limit,
        };
        let rows = match self.newest_in_windows(&query)? {
            Some(rows) => rows,
            None => query.rows(&self.conn, &query.sql(), None)?,
        };
        rows.into_iter()
            .map(|mut story| {
                story.sources = self.story_sources(story.story_id)?;
                story.snippet = self.story_snippet(story.story_id)?;
                // Read apart, not split from the view's list: a name may contain ", ".
                story.companies = self.story_company_names(story.story_id)?;
                Ok(story)
            })
            .collect()
    }

    /// The answer to `query` when it asks for every company and a limit, read from a window of
    /// the latest days, widened fourfold until it holds `limit` stories; None when no window
    /// does before [`WIDEST_WINDOW`], half the stored history, or `since`, where reading the
    /// whole period once costs less than another window. A window holds every story dated in
    /// it (see [`newest_flagged_sql`]), so once it holds `limit`, no story outside it is newer.
    /// (With a company, its index leads: a window would read every other company's stories.)
    fn newest_in_windows(&self, query: &FlaggedQuery) -> anyhow::Result<Option<Vec<FlaggedStory>>> {
        let Some(limit) = query.limit.filter(|_| query.company_id.is_none()) else {
            return Ok(None);
        };
        // From the latest entry dated at or before `until` (or now), not the latest of all:
        // entries a publisher dated years ahead would leave each window short of today.
        let latest: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT coalesce(published_at, first_seen_at) FROM entries
                 WHERE coalesce(published_at, first_seen_at) <= ?1
                 ORDER BY coalesce(published_at, first_seen_at) DESC LIMIT 1",
            )?
            .query_row([sql_time(query.until.unwrap_or_else(Utc::now))], |r| {
                r.get(0)
            })
            .optional()?;
        // The database's own history, by when stories were seen: one archived item dated 2001
        // would otherwise put half the history a decade back.
        let first_seen: Option<String> = self
            .conn
            .prepare_cached("SELECT min(first_seen_at) FROM stories")?
            .query_row([], |r| r.get(0))?;
        let (Some(latest), Some(first_seen)) = (
            latest.as_deref().and_then(parse_sql_time),
            first_seen.as_deref().and_then(parse_sql_time),
        ) else {
            return Ok(None);
        };
        let halfway = latest - (latest - first_seen) / 2;
        let floor = query.since.map_or(halfway, |since| since.max(halfway));
        let window = newest_flagged_sql(query.feeds);
        let mut width = chrono::Duration::days(1);
        while width <= WIDEST_WINDOW && latest - width > floor {
            let newest = query.rows(&self.conn, &window, Some(latest - width))?;
            if newest.len() >= limit {
                return Ok(Some(newest));
            }
            width = width * 4;
        }
        Ok(None)
    }

    /// Each tracked company's [`CompanyActivity`] from `since` to `until` (open when None), by
    /// the company's name; a company without a story then has no entry. With `feeds`, counted
    /// as if they were the only feeds: a story is new in the period when none of them named the
    /// company in it before. Entries are dated as `mentions` dates them, and a story belongs to
    /// the period of its first entry naming the company, so that a story two feeds dated a week
    /// apart counts in one period, not two.
    /// The period's entries are read first, from the date index, seeking both bounds (CROSS JOIN
    /// keeps that order: without statistics SQLite would read every mention of every company,
    /// whose cost grows with the whole history, not with the period).
    pub fn company_activity(
        &self,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        feeds: Option<&FeedSet>,
    ) -> anyhow::Result<HashMap<String, CompanyActivity>> {
        let mut stmt = self.conn.prepare_cached(&company_activity_sql(feeds))?;
        let params = params![
            sql_time(since),
            until.map(sql_time),
            feeds.map(FeedSet::json_ids)
        ];
        let rows = stmt.query_map(params, |r| {
            Ok((
                r.get(0)?,
                CompanyActivity {
                    stories: r.get(1)?,
                    sources: r.get(2)?,
                    latest_at: r.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Each company's stories per span (on `zone`'s clock) of the period from `since` to
    /// `until` (open: now), as [`Store::company_activity`] counts them: a story in the span of
    /// its first entry that mentions the company, if that entry is in the period (of `feeds`'
    /// entries alone, when given). Spans without a story are left out.
    pub fn company_stories_by(
        &self,
        span: Span,
        zone: Tz,
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        feeds: Option<&FeedSet>,
    ) -> anyhow::Result<Vec<(String, NaiveDate, i64)>> {
        let mut stmt = self
            .conn
            .prepare_cached(&company_stories_by_sql(span, zone, feeds))?;
        let params = params![
            sql_time(since),
            until.map(sql_time),
            feeds.map(FeedSet::json_ids)
        ];
        let rows = stmt.query_map(params, |r| {
            Ok((r.get(0)?, r.get::<_, String>(1)?, r.get(2)?))
        })?;
        rows.map(|row| {
            let (company, start, stories) = row?;
            let start = NaiveDate::parse_from_str(&start, "%Y-%m-%d")?;
            Ok((company, start, stories))
        })
        .collect()
    }

    /// `EXPLAIN QUERY PLAN` of what [`Store::flagged_stories`] runs, one line per step: to
    /// check that it seeks an index (the benchmark prints it).
    pub fn flagged_stories_plan(
        &self,
        company: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> anyhow::Result<Vec<String>> {
        let since = since.map(sql_time);
        let company_id = self.company_id(company)?;
        let sql = format!(
            "EXPLAIN QUERY PLAN {}",
            flagged_stories_sql(company_id.is_some(), since.is_some(), None)
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let (no_until, all_feeds): (Option<String>, Option<String>) = (None, None);
        let rows = stmt.query_map(params![company_id, since, 50, no_until, all_feeds], |r| {
            r.get::<_, String>(3)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The name (as the config writes it) of the tracked company whose name or alias is
    /// `name`, compared as `--company` compares them (any case or spacing, either accent
    /// encoding, see [`comparable_name`]); None when no tracked company has it. For callers
    /// without the config, such as the server.
    pub fn tracked_company(&self, name: &str) -> anyhow::Result<Option<String>> {
        let wanted = comparable_name(name);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, aliases FROM companies WHERE active = 1 ORDER BY id")?;
        let mut rows = stmt.query([])?;
        let mut by_alias = None;
        while let Some(row) = rows.next()? {
            let name: String = row.get(0)?;
            if comparable_name(&name) == wanted {
                return Ok(Some(name));
            }
            // A hand edit may have left something other than a list of names: its names count.
            let aliases: Vec<serde_json::Value> =
                serde_json::from_str(&row.get::<_, String>(1)?).unwrap_or_default();
            let is_alias = || {
                aliases
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .any(|alias| comparable_name(alias) == wanted)
            };
            if by_alias.is_none() && is_alias() {
                by_alias = Some(name);
            }
        }
        // A name before an alias, should a hand edit have given another company the same one.
        Ok(by_alias)
    }

    fn company_id(&self, company: Option<&str>) -> anyhow::Result<Option<i64>> {
        let Some(name) = company else { return Ok(None) };
        let id = self
            .conn
            .query_row(
                "SELECT id FROM companies WHERE name = ?1 COLLATE NOCASE AND active = 1",
                [name],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no tracked company is named {name:?} (see [[company]] in the config)"
                )
            })?;
        Ok(Some(id))
    }

    pub(super) fn story_sources(&self, story_id: i64) -> anyhow::Result<Vec<Source>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT coalesce(f.name, f.title, f.url), e.title, e.link, e.published_at
             FROM entries e JOIN feeds f ON f.id = e.feed_id WHERE e.story_id = ?1 ORDER BY e.id",
        )?;
        let rows = stmt.query_map([story_id], |r| {
            Ok(Source {
                feed: r.get(0)?,
                title: r.get(1)?,
                link: r.get(2)?,
                published_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn story_company_names(&self, story_id: i64) -> anyhow::Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT company FROM story_companies WHERE story_id = ?1 ORDER BY company",
        )?;
        let names = stmt.query_map([story_id], |r| r.get(0))?;
        Ok(names.collect::<Result<_, _>>()?)
    }

    pub(super) fn story_snippet(&self, story_id: i64) -> anyhow::Result<String> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT m.snippet FROM mentions m JOIN entries e ON e.id = m.entry_id
                 JOIN companies c ON c.id = m.company_id AND c.active = 1
                 WHERE e.story_id = ?1 ORDER BY e.id, c.id LIMIT 1",
            )?
            .query_row([story_id], |r| r.get(0))
            .optional()?
            .unwrap_or_default())
    }
}

/// What [`Store::company_activity`] runs. Parameters: ?1 since, ?2 until (NULL: open), ?3
/// `feeds` (NULL: every feed).
fn company_activity_sql(feeds: Option<&FeedSet>) -> String {
    format!(
        "SELECT c.name,
                count(DISTINCT CASE WHEN NOT EXISTS (
                    SELECT 1 FROM entries earlier
                    CROSS JOIN mentions em ON em.entry_id = earlier.id AND em.company_id = m.company_id
                    WHERE earlier.story_id = e.story_id
                      AND coalesce(earlier.published_at, earlier.first_seen_at) < ?1
                      AND {earlier_in_feeds}
                ) THEN e.story_id END),
                count(DISTINCT e.feed_id),
                max(coalesce(e.published_at, e.first_seen_at))
         FROM entries e
         CROSS JOIN mentions m ON m.entry_id = e.id
         JOIN companies c ON c.id = m.company_id AND c.active = 1
         WHERE coalesce(e.published_at, e.first_seen_at) >= ?1
           AND coalesce(e.published_at, e.first_seen_at) < coalesce(?2, '9999-12-31 23:59:59')
           AND {in_feeds}
         GROUP BY c.id",
        earlier_in_feeds = FeedSet::condition(feeds, "earlier.feed_id", "?3"),
        in_feeds = FeedSet::condition(feeds, "e.feed_id", "?3"),
    )
}

/// What [`Store::company_stories_by`] runs, with [`company_activity_sql`]'s parameters.
fn company_stories_by_sql(span: Span, zone: Tz, feeds: Option<&FeedSet>) -> String {
    // The period's entries, through the date index; then, once per story and company, the
    // story's first entry that mentions the company, through the story index. MATERIALIZED:
    // flattened, the first entry's subquery ran for each use of `first_at` (13% of the time
    // in alternating runs of `cargo bench --bench store`).
    format!(
        "WITH named AS (
             SELECT DISTINCT m.company_id, e.story_id
             FROM entries e
             CROSS JOIN mentions m ON m.entry_id = e.id
             WHERE coalesce(e.published_at, e.first_seen_at) >= ?1
               AND coalesce(e.published_at, e.first_seen_at) < coalesce(?2, '9999-12-31 23:59:59')
               AND {in_feeds}
         ),
         firsts AS MATERIALIZED (
             SELECT named.company_id, (
                 SELECT min(coalesce(s.published_at, s.first_seen_at))
                 FROM entries s
                 CROSS JOIN mentions sm ON sm.entry_id = s.id AND sm.company_id = named.company_id
                 WHERE s.story_id = named.story_id
                   AND {first_in_feeds}
             ) AS first_at
             FROM named
         )
         SELECT c.name, {start}, count(*)
         FROM firsts
         JOIN companies c ON c.id = firsts.company_id AND c.active = 1
         WHERE first_at >= ?1
         GROUP BY c.id, 2",
        start = span.start_sql(zone),
        in_feeds = FeedSet::condition(feeds, "e.feed_id", "?3"),
        first_in_feeds = FeedSet::condition(feeds, "s.feed_id", "?3"),
    )
}

/// The query behind [`Store::flagged_stories`]. Parameters: ?1 the company's id, ?2 since, ?3 the
/// limit (-1: none), ?4 until, ?5 `feeds` (each may be NULL but the limit). A story is in the
/// period when one of its flagged entries (of those feeds) is. Candidate stories come from an
/// index that can seek (a company's mentions, or the entries of the period); the view then
/// presents only those stories.
fn flagged_stories_sql(by_company: bool, since: bool, feeds: Option<&FeedSet>) -> String {
    let in_feeds = FeedSet::condition(feeds, "e.feed_id", "?5");
    let candidates = match (by_company, since) {
        (true, _) => {
            format!(
                "SELECT e.story_id FROM mentions m JOIN entries e ON e.id = m.entry_id
             WHERE m.company_id = ?1 AND (?2 IS NULL OR coalesce(e.published_at, e.first_seen_at) >= ?2)
               AND (?4 IS NULL OR coalesce(e.published_at, e.first_seen_at) < ?4)
               AND {in_feeds}"
            )
        }
        (false, true) => {
            format!(
                "SELECT e.story_id FROM entries e
             WHERE ?1 IS NULL AND coalesce(e.published_at, e.first_seen_at) >= ?2
               AND (?4 IS NULL OR coalesce(e.published_at, e.first_seen_at) < ?4)
               AND {in_feeds}
               AND EXISTS (SELECT 1 FROM mentions m JOIN companies c ON c.id = m.company_id AND c.active = 1
                           WHERE m.entry_id = e.id)"
            )
        }
        (false, false) => {
            format!(
                "SELECT e.story_id FROM mentions m
             JOIN companies c ON c.id = m.company_id AND c.active = 1
             JOIN entries e ON e.id = m.entry_id
             WHERE ?1 IS NULL AND ?2 IS NULL
               AND (?4 IS NULL OR coalesce(e.published_at, e.first_seen_at) < ?4)
               AND {in_feeds}"
            )
        }
    };
    format!(
        "SELECT v.story_id, v.title, v.link, v.feed, v.published_at, v.first_seen_at
         FROM flagged_stories v
         WHERE v.story_id IN ({candidates})
         ORDER BY coalesce(v.published_at, v.first_seen_at) DESC, v.story_id DESC
         LIMIT ?3"
    )
}

/// The widest window [`Store::newest_in_windows`] reads. A window reads every story dated in
/// it, of any feed, flagged or not; when what is asked for is rarer, the windows cost at most
/// 85 days' reading before the whole period is read.
const WIDEST_WINDOW: chrono::Duration = chrono::Duration::days(64);

/// What [`Store::flagged_stories`] is asked.
struct FlaggedQuery<'a> {
    company_id: Option<i64>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    feeds: Option<&'a FeedSet>,
    limit: Option<usize>,
}

impl FlaggedQuery<'_> {
    /// The whole period's [`flagged_stories_sql`].
    fn sql(&self) -> String {
        flagged_stories_sql(self.company_id.is_some(), self.since.is_some(), self.feeds)
    }

    /// Runs `sql`, this or [`newest_flagged_sql`] (`window` is the latter's ?6).
    fn rows(
        &self,
        conn: &Connection,
        sql: &str,
        window: Option<DateTime<Utc>>,
    ) -> anyhow::Result<Vec<FlaggedStory>> {
        let mut stmt = conn.prepare_cached(sql)?;
        let to_story = |r: &rusqlite::Row<'_>| {
            Ok(FlaggedStory {
                story_id: r.get(0)?,
                title: r.get(1)?,
                link: r.get(2)?,
                feed: r.get(3)?,
                published_at: r.get(4)?,
                first_seen_at: r.get(5)?,
                companies: Vec::new(),
                snippet: String::new(),
                sources: Vec::new(),
            })
        };
        let limit = self.limit.map_or(-1, |n| i64::try_from(n).unwrap_or(-1));
        let (since, until) = (self.since.map(sql_time), self.until.map(sql_time));
        let feeds = self.feeds.map(FeedSet::json_ids);
        let company = self.company_id;
        let rows = match window {
            None => stmt.query_map(params![company, since, limit, until, feeds], to_story),
            Some(start) => stmt.query_map(
                params![company, since, limit, until, feeds, sql_time(start)],
                to_story,
            ),
        }?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The flagged stories of [`flagged_stories_sql`] without a company, of those dated from ?6
/// on: a story's date is its first entry's `published_at`, else the story's `first_seen_at`,
/// so each such story has an entry dated from ?6 on (the first) or was first seen then, and
/// both are read from an index. UNION ALL, since SQLite merges a UNION in story order, reading
/// both tables whole.
fn newest_flagged_sql(feeds: Option<&FeedSet>) -> String {
    let in_feeds = FeedSet::condition(feeds, "e.feed_id", "?5");
    format!(
        "SELECT v.story_id, v.title, v.link, v.feed, v.published_at, v.first_seen_at
         FROM flagged_stories v
         WHERE v.story_id IN (
                   SELECT e.story_id FROM entries e WHERE coalesce(e.published_at, e.first_seen_at) >= ?6
                   UNION ALL SELECT s.id FROM stories s WHERE s.first_seen_at >= ?6)
           AND coalesce(v.published_at, v.first_seen_at) >= ?6
           AND EXISTS (SELECT 1 FROM entries e JOIN mentions m ON m.entry_id = e.id
                       JOIN companies c ON c.id = m.company_id AND c.active = 1
                       WHERE e.story_id = v.story_id
                         AND (?2 IS NULL OR coalesce(e.published_at, e.first_seen_at) >= ?2)
                         AND (?4 IS NULL OR coalesce(e.published_at, e.first_seen_at) < ?4)
                         AND {in_feeds})
         ORDER BY coalesce(v.published_at, v.first_seen_at) DESC, v.story_id DESC
         LIMIT ?3"
    )
}

/// The statements that find or make the story of each new entry of a result, prepared once for
/// the result: looking each up in the connection's statement cache for every entry hashed its
/// SQL text every time (with the entry insert's, 1.4% of a cold poll's instructions).
pub(super) struct StoryStatements<'conn> {
    conn: &'conn Connection,
    by_link: CachedStatement<'conn>,
    insert: CachedStatement<'conn>,
}

impl<'conn> StoryStatements<'conn> {
    pub(super) fn new(conn: &'conn Connection) -> rusqlite::Result<StoryStatements<'conn>> {
        // The link lookup is one statement: COALESCE runs its second query only when the first
        // finds nothing, where two statements cost more, and a UNION ALL sorts in a temporary
        // b-tree.
        let by_link = conn.prepare_cached(
            "SELECT id, title_key FROM stories WHERE id = coalesce(
                 (SELECT id FROM stories WHERE canonical_link = ?1 ORDER BY id LIMIT 1),
                 (SELECT min(story_id) FROM entries WHERE canonical_link = ?1 AND link_shared IS NULL))",
        )?;
        let insert = conn.prepare_cached(
            "INSERT INTO stories (canonical_link, title_key, first_seen_at) VALUES (?1, ?2, ?3)",
        )?;
        Ok(StoryStatements {
            conn,
            by_link,
            insert,
        })
    }

    /// The story a new entry of feed `feed_id` belongs to: the story with an entry of the same
    /// canonical link, else with an entry of the same title seen within
    /// [`TITLE_WINDOW`](super::titles::TITLE_WINDOW) and none from this feed, else a new one.
    /// Found before the entry is inserted, so the entry's row (kilobytes of text) is written
    /// once, not written and then rewritten.
    ///
    /// A title joins copies from other feeds only: within one feed, an item with its own key and
    /// link under a title the feed used the day before is that feed's next "Morning briefing",
    /// not a copy, and joining it would hide it and its alert.
    pub(super) fn story_for(
        &mut self,
        titles: &mut TitleLookup<'_>,
        feed_id: i64,
        entry: &ParsedEntry,
        now: DateTime<Utc>,
    ) -> anyhow::Result<StoryFor> {
        let link = entry
            .canonical_link
            .as_deref()
            .filter(|_| entry.link_unique_in_doc);
        let title_key = entry.title.as_deref().and_then(title_key);
        if let Some(story) = link
            .map(|link| self.story_by_link(link))
            .transpose()?
            .flatten()
        {
            // Joined by link under another title: later copies with this title belong here too.
            // (An entry that joins by title needs no such record: its row holds its link.)
            if let Some(key) = &title_key
                && Some(key) != story.title_key.as_ref()
            {
                self.conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO story_titles (title_key, story_id, seen_at) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![key, story.id, sql_time(now)])?;
            }
            return Ok(StoryFor::Joined(story.id));
        }
        if let Some(key) = &title_key
            && let Some(story) = titles.story(self.conn, key)?
            && !self.has_entry_of_feed(story, feed_id)?
        {
            return Ok(StoryFor::Joined(story));
        }
        let story = self
            .insert
            .insert(params![link, title_key, sql_time(now)])?;
        if let Some(key) = &title_key {
            titles.record(key, story);
        }
        Ok(StoryFor::New(story))
    }

    fn has_entry_of_feed(&self, story: i64, feed_id: i64) -> rusqlite::Result<bool> {
        self.conn
            .prepare_cached(STORY_HAS_ENTRY_OF_FEED)?
            .query_row(params![story, feed_id], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
    }

    /// The first story whose first entry had `link`, else the first story with an entry of that
    /// link. Entries whose document gave the same link to other items too (`link_shared`: a
    /// feed's home page for every item) are left out, as such a link never makes a story's own
    /// link.
    fn story_by_link(&mut self, link: &str) -> rusqlite::Result<Option<FoundStory>> {
        self.by_link
            .query_row([link], |r| {
                Ok(FoundStory {
                    id: r.get(0)?,
                    title_key: r.get(1)?,
                })
            })
            .optional()
    }
}

/// The story a new entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StoryFor {
    /// Created for this entry.
    New(i64),
    /// An earlier entry's story, which may have named companies and alerted targets already.
    Joined(i64),
}

impl StoryFor {
    pub(super) fn id(self) -> i64 {
        match self {
            StoryFor::New(id) | StoryFor::Joined(id) => id,
        }
    }
}

/// A stored story, with the title key of its first entry.
struct FoundStory {
    id: i64,
    title_key: Option<String>,
}

/// A title reduced to lowercase words, or None when it is too short to identify a story
/// ("Update", "Podcast #12" recur across unrelated items).
fn title_key(title: &str) -> Option<String> {
    let key = title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ");
    let words = key.split(' ').count();
    (words >= 4 || key.chars().count() >= 16).then_some(key)
}

/// Replaces the mentions of an entry whose text is unchanged (a re-match with new rules) for the
/// companies the config tracks; true when they changed. Mentions of removed (inactive)
/// companies stay, hidden from flags: retention keeps the entries they flagged, and putting the
/// company back in the config shows them again (its re-match then brings them up to date).
/// Mentions the new rules find as they were are not written again: most of a re-match's
/// entries, whose stories then have no alert to reassess.
pub(super) fn write_mentions(
    conn: &Connection,
    flagging: &Flagging,
    entry_id: i64,
    mentions: &[Mention],
) -> anyhow::Result<bool> {
    let found: Vec<i64> = mentions
        .iter()
        .filter_map(|m| flagging.company_ids.get(&m.company).copied())
        .collect();
    let removed = conn
        .prepare_cached(
            // Whether the company is tracked is looked up per mention row, not by a
            // `company_id IN (SELECT … FROM companies)`, which would list every company per call.
            "DELETE FROM mentions WHERE entry_id = ?1
                 AND company_id NOT IN (SELECT value FROM json_each(?2))
                 AND (SELECT active FROM companies c WHERE c.id = mentions.company_id) = 1",
        )?
        .execute(params![entry_id, serde_json::to_string(&found)?])?;
    let written = insert_mentions(conn, flagging, entry_id, mentions)?;
    Ok(removed > 0 || written > 0)
}

/// Replaces every mention of an entry the publisher edited (a removed company's too: nothing can
/// tell whether the new text still names it), reassesses the story's undelivered alerts, and
/// queues alerts for the companies the story names now and did not before. A company the story
/// named already was alerted then, or held back as backlog (see [`queue_alerts`]): an edit of an
/// old story must not page about it now.
///
/// `page_text_matched`: whether `mentions` were found with the text of the entry's article page
/// (see `articles`). When not (an edit, matched on the feed's text alone), the mentions found on
/// the page stay: a company the page names stays flagged until the page is matched again.
// Each argument is one fact about the edit, from one of the two callers (a poll, a page).
#[allow(clippy::too_many_arguments)]
pub(super) fn rewrite_edited_mentions(
    conn: &Connection,
    flagging: &Flagging,
    entry_id: i64,
    story_id: Option<i64>,
    mentions: &[Mention],
    now: DateTime<Utc>,
    from_backlog: bool,
    page_text_matched: bool,
) -> anyhow::Result<()> {
    let story_id = story_id.filter(|_| flagging.alerts_anyone());
    let named_before = match story_id {
        Some(story) => story_company_ids(conn, story)?,
        None => HashSet::new(),
    };
    conn.prepare_cached(
        "DELETE FROM mentions WHERE entry_id = ?1
             AND (?2 OR instr(',' || fields || ',', ',article,') = 0)",
    )?
    .execute(params![entry_id, page_text_matched])?;
    insert_mentions(conn, flagging, entry_id, mentions)?;
    let Some(story) = story_id else {
        return Ok(());
    };
    reassess_alerts(conn, flagging, Reassess::Story(story), now)?;
    let newly_named = newly_named(flagging, mentions, &named_before);
    if !newly_named.is_empty() {
        let first: Vec<Mention> = newly_named.iter().map(|(_, m)| (*m).clone()).collect();
        queue_alerts(
            conn,
            flagging,
            story,
            &first,
            &newly_named,
            now,
            from_backlog,
            false,
        )?;
    }
    Ok(())
}

/// Which undelivered alerts [`reassess_alerts`] reads.
#[derive(Debug, Clone, Copy)]
pub(super) enum Reassess {
    /// Those of one story: after an edit or a re-match changed what it names.
    Story(i64),
    /// The withdrawn ones of one story: a new copy only adds companies, so it can bear out a
    /// withdrawn alert but make none untrue. Most stories have none, and then nothing is read
    /// beyond the index.
    WithdrawnOfStory(i64),
    /// All of them: after the config changed what targets want or which companies it tracks.
    All,
}

/// Read for a good part of the copies that arrive, so it must not read entry rows (migration
/// 0019).
const STORY_HAS_ENTRY_OF_FEED: &str =
    "SELECT 1 FROM entries WHERE story_id = ?1 AND feed_id = ?2 LIMIT 1";

// What `reassess_alerts` reads of an alert. A story's are found through
// `outbox_undelivered_by_story`, which holds only undelivered rows.
const UNDELIVERED_ALERTS_OF_STORY: &str =
    "SELECT id, target, story_id, company_id, withdrawn_at IS NOT NULL FROM outbox
     WHERE story_id = ?1 AND delivered_at IS NULL";
const WITHDRAWN_ALERTS_OF_STORY: &str =
    "SELECT id, target, story_id, company_id, withdrawn_at IS NOT NULL FROM outbox
     WHERE story_id = ?1 AND delivered_at IS NULL AND withdrawn_at IS NOT NULL";
const UNDELIVERED_ALERTS: &str =
    "SELECT id, target, story_id, company_id, withdrawn_at IS NOT NULL FROM outbox
     WHERE delivered_at IS NULL";

/// Withdraws each undelivered alert that its story and the config no longer bear out, and puts
/// back each withdrawn one they bear out again. A first alert is borne out while the story
/// names a company its target wants; an alert about a company named after it (`company_id`),
/// while the story names that company and the target wants it. Sent otherwise, an alert would
/// name companies its target does not want, or none, with nothing to say why.
///
/// Run in the transaction of whatever changes what a story names or what a target wants: an
/// edit, a new copy, a re-match, a config sync. A withdrawal thus lasts only as long as its
/// cause: the alert put back goes out with its key, attempts, retry schedule and `told` as they
/// were (a receiver may have kept an earlier attempt). Alerts of targets no longer in the
/// config are left as they are: they wait for it.
pub(super) fn reassess_alerts(
    conn: &Connection,
    flagging: &Flagging,
    which: Reassess,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    if !flagging.alerts_anyone() {
        return Ok(());
    }
    let (sql, story) = match which {
        Reassess::Story(story) => (UNDELIVERED_ALERTS_OF_STORY, Some(story)),
        Reassess::WithdrawnOfStory(story) => (WITHDRAWN_ALERTS_OF_STORY, Some(story)),
        Reassess::All => (UNDELIVERED_ALERTS, None),
    };
    let mut undelivered = conn.prepare_cached(sql)?;
    let alerts: Vec<(i64, String, i64, Option<i64>, bool)> = undelivered
        .query_map(rusqlite::params_from_iter(story), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut named_by_story: HashMap<i64, Vec<(i64, String)>> = HashMap::new();
    for (alert, target, story_id, company, withdrawn) in alerts {
        let Some(route) = flagging.route(&target) else {
            continue;
        };
        let named = match named_by_story.entry(story_id) {
            hash_map::Entry::Occupied(known) => known.into_mut(),
            hash_map::Entry::Vacant(slot) => slot.insert(story_companies(conn, story_id)?),
        };
        let borne_out = named
            .iter()
            .any(|(id, name)| company.is_none_or(|c| c == *id) && route.wants(name));
        let state_is_wrong = borne_out == withdrawn;
        if state_is_wrong {
            // One put back counts as queued now: a digest target gets it in its next digest,
            // not in one of its own at once.
            conn.prepare_cached(
                "UPDATE outbox SET withdrawn_at = CASE WHEN ?2 THEN NULL ELSE ?3 END,
                     created_at = CASE WHEN ?2 THEN max(created_at, ?3) ELSE created_at END
                 WHERE id = ?1",
            )?
            .execute(params![alert, borne_out, sql_time(now)])?;
        }
    }
    Ok(())
}

/// The tracked companies of `mentions` that are not in `named_before`, with their ids.
pub(super) fn newly_named<'m>(
    flagging: &Flagging,
    mentions: &'m [Mention],
    named_before: &HashSet<i64>,
) -> Vec<(i64, &'m Mention)> {
    mentions
        .iter()
        .filter_map(|m| Some((*flagging.company_ids.get(&m.company)?, m)))
        .filter(|(id, _)| !named_before.contains(id))
        .collect()
}

/// The tracked companies any entry of the story mentions.
fn story_companies(conn: &Connection, story_id: i64) -> anyhow::Result<Vec<(i64, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT DISTINCT c.id, c.name FROM entries e JOIN mentions m ON m.entry_id = e.id
             JOIN companies c ON c.id = m.company_id AND c.active = 1
             WHERE e.story_id = ?1",
        )?
        .query_map([story_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?)
}

/// The ids of [`story_companies`].
pub(super) fn story_company_ids(conn: &Connection, story_id: i64) -> anyhow::Result<HashSet<i64>> {
    Ok(story_companies(conn, story_id)?
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

/// Records the mentions of an entry that has none yet (a new one: skipping the DELETE of
/// [`write_mentions`] saves SQLite a temporary table per flagged entry); returns how many rows
/// it wrote, which leaves out a row already stored with the same values.
/// An upsert, because a row deleted by hand with foreign keys off can leave mentions behind
/// under an id SQLite hands out again. Not `INSERT OR REPLACE`: a replace may delete a row, and
/// with foreign keys on SQLite then keeps a statement journal for every insert (1% of a cold
/// poll's CPU, on the writer).
pub(super) fn insert_mentions(
    conn: &Connection,
    flagging: &Flagging,
    entry_id: i64,
    mentions: &[Mention],
) -> anyhow::Result<usize> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO mentions (entry_id, company_id, fields, count, snippet)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (entry_id, company_id)
         DO UPDATE SET fields = excluded.fields, count = excluded.count, snippet = excluded.snippet
             WHERE (fields, count, snippet) IS NOT (excluded.fields, excluded.count, excluded.snippet)",
    )?;
    let mut written = 0;
    for mention in mentions {
        // A company removed by a config reload while this entry was in flight.
        let Some(company_id) = flagging.company_ids.get(&mention.company) else {
            continue;
        };
        let fields = mention
            .fields
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(",");
        written += upsert.execute(params![
            entry_id,
            company_id,
            fields,
            mention.count,
            mention.snippet
        ])?;
    }
    Ok(written)
}

/// Queues the alerts an entry's mentions call for. A target that wants one of the companies in
/// `first` gets the story's first alert, unless it has one. A target whose first alert for the
/// story went out already gets an alert for each company of `newly_named` (companies the story
/// did not name before this entry, or this edit) that it wants and no alert of the story named
/// (see [`queue_untold`]); an undelivered first alert will name them itself, as its payload is
/// read when it is sent.
///
/// Entries and edits from a backlog document (`from_backlog`: a feed's first parsed document,
/// or its first after a time out of the config) alert only targets that ask for them: that
/// document is what the feed published while feedhound did not watch it (days or weeks of
/// items), and a newly added feed, like a newly added company, must not page the user about
/// every old story it names.
///
/// `page_pending`: the entry's article page is queued to be read, so a first alert waits for it
/// (see [`PAGE_WAIT`]).
// Each argument is one fact about the flag; its two callers (a new entry; an edit or a page
// read, through `rewrite_edited_mentions`) differ in each.
#[allow(clippy::too_many_arguments)]
pub(super) fn queue_alerts(
    conn: &Connection,
    flagging: &Flagging,
    story_id: i64,
    first: &[Mention],
    newly_named: &[(i64, &Mention)],
    now: DateTime<Utc>,
    from_backlog: bool,
    page_pending: bool,
) -> anyhow::Result<()> {
    for route in flagging
        .routes
        .iter()
        .filter(|r| r.backlog || !from_backlog)
    {
        // A company removed by a reload while this entry was in flight has no id: no alert.
        if first
            .iter()
            .any(|m| flagging.company_ids.contains_key(&m.company) && route.wants(&m.company))
        {
            queue_first_alert(conn, route, story_id, now, page_pending)?;
        }
        if newly_named.iter().any(|(_, m)| route.wants(&m.company)) {
            let candidates = newly_named.iter().map(|&(id, _)| id).collect();
            queue_untold(conn, route, story_id, Some(&candidates), now)?;
        }
    }
    Ok(())
}

/// Queues an alert to `route`'s target for each company the story names (among `candidates`,
/// when given) that the target wants and has not been told of: the first attempt of no alert of
/// the story named it (`outbox.told`), and none is queued for it. Nothing while the story's
/// first alert to the target has not gone out: that alert is read when it is sent, so it will
/// name them, and its delivery calls this again for what its first attempt did not.
pub(super) fn queue_untold(
    conn: &Connection,
    route: &AlertRoute,
    story_id: i64,
    candidates: Option<&HashSet<i64>>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let first_alert_sent: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM outbox
                            WHERE target = ?1 AND story_id = ?2 AND company_id IS NULL
                              AND delivered_at IS NOT NULL)",
        )?
        .query_row(params![route.target, story_id], |r| r.get(0))?;
    if !first_alert_sent {
        return Ok(());
    }
    for (company_id, name) in story_companies(conn, story_id)? {
        if candidates.is_some_and(|c| !c.contains(&company_id)) || !route.wants(&name) {
            continue;
        }
        let told: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM outbox o, json_each(o.told) t
                                WHERE o.target = ?1 AND o.story_id = ?2 AND t.value = ?3)",
            )?
            .query_row(params![route.target, story_id, name], |r| r.get(0))?;
        if told {
            continue;
        }
        let created = sql_time(now);
        let key = short_hash(&format!(
            "{}\u{1f}{story_id}\u{1f}{created}\u{1f}{company_id}",
            route.target
        ));
        conn.prepare_cached(
            "INSERT INTO outbox (target, story_id, idempotency_key, created_at, next_attempt_at,
                                 company_id)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)
             ON CONFLICT (target, story_id, company_id) WHERE company_id IS NOT NULL DO NOTHING",
        )?
        .execute(params![route.target, story_id, key, created, company_id])?;
    }
    Ok(())
}

/// Queues the story's first alert to `route`'s target, unless it has one; due at once, or
/// after [`PAGE_WAIT`] while a page is pending.
fn queue_first_alert(
    conn: &Connection,
    route: &AlertRoute,
    story_id: i64,
    now: DateTime<Utc>,
    page_pending: bool,
) -> anyhow::Result<()> {
    let target = &route.target;
    let created = sql_time(now);
    let due = match page_pending && !route.digest {
        true => sql_time(now + PAGE_WAIT),
        false => created.clone(),
    };
    let key = short_hash(&format!("{target}\u{1f}{story_id}\u{1f}{created}"));
    conn.prepare_cached(
        "INSERT INTO outbox (target, story_id, idempotency_key, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (target, story_id) WHERE company_id IS NULL DO NOTHING",
    )?
    .execute(params![target, story_id, key, created, due])?;
    Ok(())
}

/// Makes the first alerts of `story_id` that wait for article pages (see [`PAGE_WAIT`]) due at
/// `now`, unless a page of the story's entries is still to be tried (an edit queued it again,
/// or another new entry's); returns whether any was. Only [`PAGE_WAIT`] puts an untried
/// alert's next attempt in the future.
pub(super) fn release_alerts_waiting_for_pages(
    conn: &Connection,
    story_id: i64,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let released = conn
        .prepare_cached(
            "UPDATE outbox SET next_attempt_at = ?2
             WHERE story_id = ?1 AND delivered_at IS NULL AND withdrawn_at IS NULL
               AND company_id IS NULL AND attempts = 0 AND next_attempt_at > ?2
               AND NOT EXISTS (
                   SELECT 1 FROM entries e JOIN articles a ON a.entry_id = e.id
                   JOIN feeds f ON f.id = e.feed_id
                   WHERE e.story_id = ?1 AND a.state = 'pending' AND a.attempts = 0
                     AND f.active = 1 AND f.fetch_articles = 1)",
        )?
        .execute(params![story_id, sql_time(now)])?;
    Ok(released > 0)
}

/// 128 bits of blake3, in hex: alert idempotency keys (one per alert, the same on every
/// attempt) and the fingerprint of what targets want.
fn short_hash(parts: &str) -> String {
    blake3::hash(parts.as_bytes()).to_hex()[..32].to_string()
}

impl AlertRoute {
    /// `company` is a configured name, as mentions carry it and `config` spells the filter.
    fn wants(&self, company: &str) -> bool {
        self.companies
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == company))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FeedResult;
    use crate::store::testing::{store_document_at, store_with_feeds};
    use crate::store::titles::TITLE_WINDOW;

    fn arriving(key: &str, link: &str, title: &str) -> ParsedEntry {
        ParsedEntry {
            dedup_key: key.into(),
            canonical_link: Some(link.into()),
            link_unique_in_doc: true,
            title: Some(title.into()),
            content_hash: key.into(),
            ..Default::default()
        }
    }

    /// The server's `?company=` reads the companies table, which hand edits may have left in
    /// any state: a name wins over another company's alias, a company no longer tracked is no
    /// answer, and aliases that are not all names still answer by those that are.
    #[test]
    fn a_tracked_company_is_found_by_name_before_alias_among_the_active_ones() {
        let (_dir, store, _) = store_with_feeds(&["Wire"]);
        store
            .conn
            .execute_batch(
                r#"INSERT INTO companies (id, name, aliases, active) VALUES
                       (1, 'Alphabet', '["Google"]', 1),
                       (2, 'Google', '[]', 1),
                       (3, 'Nokia', '["HMD"]', 0),
                       (4, 'Société Générale', '["SocGen", 7, null]', 1),
                       (5, 'Acme', 'not json', 1);"#,
            )
            .unwrap();
        let found = |name: &str| store.tracked_company(name).unwrap();
        assert_eq!(found("google").as_deref(), Some("Google"));
        assert_eq!(found("Nokia"), None);
        assert_eq!(found("hmd"), None);
        assert_eq!(found(" SOCGEN ").as_deref(), Some("Société Générale"));
        assert_eq!(found("ACME").as_deref(), Some("Acme"));
    }

    const HEADLINE: &str = "Xiaomi opens a flagship store in Paris";

    #[test]
    fn a_span_starts_on_the_same_day_in_sql_as_in_rust() {
        let conn = Connection::open_in_memory().unwrap();
        add_local_date(&conn).unwrap();
        // Two weeks from a Wednesday, across a month's end; a second before midnight UTC,
        // already the next day in Tokyo, and a second after, still the day before in New York.
        let first = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        for (zone, time_of_day, local_day) in [
            (Tz::UTC, "23:59:59", 0),
            (chrono_tz::Asia::Tokyo, "23:59:59", 1),
            (chrono_tz::America::New_York, "00:00:01", -1),
        ] {
            for span in [Span::Day, Span::Week, Span::Month] {
                for offset in 0..14 {
                    let day = first + Days::new(offset);
                    let sql = format!(
                        "SELECT {} FROM (SELECT ?1 AS first_at)",
                        span.start_sql(zone)
                    );
                    let time = format!("{day} {time_of_day}");
                    let in_sql: String = conn.query_row(&sql, [time], |r| r.get(0)).unwrap();
                    let local = day + chrono::Duration::days(local_day);
                    assert_eq!(
                        in_sql,
                        span.start(local).to_string(),
                        "{span:?} of {day} {time_of_day} in {zone}"
                    );
                }
            }
        }
        let sunday = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        assert_eq!(Span::Week.start(sunday).to_string(), "2026-11-23");
    }

    /// Stores `entry` as `feed`'s document at `at` and returns the story it joined.
    fn story_of(store: &mut Store, feed: i64, entry: ParsedEntry, at: DateTime<Utc>) -> i64 {
        let key = entry.dedup_key.clone();
        store_document_at(store, feed, vec![entry], &key, at);
        store
            .conn
            .query_row(
                "SELECT story_id FROM entries WHERE dedup_key = ?1",
                [&key],
                |r| r.get(0),
            )
            .unwrap()
    }

    fn track_xiaomi(store: &mut Store) {
        store.sync_companies(&[company("Xiaomi")], vec![]).unwrap();
    }

    fn xiaomi_in_title(snippet: &str) -> Mention {
        Mention {
            company: "Xiaomi".into(),
            fields: vec![crate::model::Field::Title],
            count: 1,
            snippet: snippet.into(),
        }
    }

    /// The newest flagged stories of every company, as `mentions` without `--company` lists
    /// them, worked out from the rows in Rust: each story dated by its first entry's
    /// `published_at`, else by when it was first seen; in when an entry of `feeds` dated from
    /// `since` to `until` names an active company.
    fn newest_flagged_by_hand(
        store: &Store,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        feeds: Option<&[i64]>,
        limit: usize,
    ) -> Vec<i64> {
        let (since, until) = (since.map(sql_time), until.map(sql_time));
        let stories: HashMap<i64, String> = store
            .conn
            .prepare("SELECT id, first_seen_at FROM stories")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut first_published: HashMap<i64, (i64, Option<String>)> = HashMap::new();
        let mut flagged = HashSet::new();
        let mut entries = store
            .conn
            .prepare(
                "SELECT e.id, e.story_id, e.feed_id, e.published_at,
                        coalesce(e.published_at, e.first_seen_at),
                        EXISTS (SELECT 1 FROM mentions m JOIN companies c ON c.id = m.company_id
                                WHERE m.entry_id = e.id AND c.active = 1)
                 FROM entries e",
            )
            .unwrap();
        let rows = entries
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, bool>(5)?,
                ))
            })
            .unwrap();
        for row in rows {
            let (id, story, feed, published, dated, names_a_company) = row.unwrap();
            let first = first_published
                .entry(story)
                .or_insert((id, published.clone()));
            if id < first.0 {
                *first = (id, published);
            }
            if names_a_company
                && since.as_ref().is_none_or(|since| &dated >= since)
                && until.as_ref().is_none_or(|until| &dated < until)
                && feeds.is_none_or(|feeds| feeds.contains(&feed))
            {
                flagged.insert(story);
            }
        }
        let mut dated: Vec<(String, i64)> = flagged
            .into_iter()
            .map(|story| {
                let published = first_published[&story].1.clone();
                (published.unwrap_or_else(|| stories[&story].clone()), story)
            })
            .collect();
        dated.sort_unstable_by(|a, b| b.cmp(a));
        dated
            .into_iter()
            .take(limit)
            .map(|(_, story)| story)
            .collect()
    }

    #[test]
    fn the_newest_flagged_stories_are_the_same_read_from_recent_days_as_from_all() {
        let (_dir, mut store, feeds) = store_with_feeds(&["Wire", "Daily", "Blog"]);
        store
            .sync_companies(&[company("Xiaomi"), company("Nokia")], vec![])
            .unwrap();
        let now = Utc::now();
        // Three years of stories, most of them recent (as a long-running database holds them):
        // some published long before they were seen, some undated, some dated a year ahead,
        // some copied by another feed, and some naming a company only in a copy.
        let mut seed: u64 = 0x5eed;
        let mut next = |below: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % below
        };
        let mut arrivals = Vec::new();
        for story in 0..400 {
            let fraction = next(1000) as f64 / 1000.0;
            let seen = now - chrono::Duration::minutes((fraction.powi(4) * 1_576_800.0) as i64);
            let link = format!("news.example/{story}");
            let title = format!("Story number {story} on the handset market this season");
            let mut copies = vec![(seen, next(3) as usize)];
            if next(10) < 3 {
                let later = seen + chrono::Duration::minutes(next(3000) as i64);
                copies.push((later.min(now), (copies[0].1 + 1) % 3));
            }
            for (copy, (at, feed)) in copies.into_iter().enumerate() {
                let published = match next(10) {
                    0 => None,
                    1 => Some(at - chrono::Duration::days(400 + next(1000) as i64)),
                    2 => Some(at + chrono::Duration::days(next(400) as i64)),
                    _ => Some(at - chrono::Duration::minutes(next(4000) as i64)),
                };
                let mention = match next(10) {
                    0..4 => vec![xiaomi_in_title("Xiaomi")],
                    4 => vec![Mention {
                        company: "Nokia".into(),
                        ..xiaomi_in_title("Nokia")
                    }],
                    _ => vec![],
                };
                let entry = ParsedEntry {
                    published_at: published,
                    ..arriving(&format!("{story}-{copy}"), &link, &title)
                };
                arrivals.push((at, feeds[feed], entry, mention));
            }
        }
        arrivals.sort_by_key(|arrival| arrival.0);
        for (at, feed, entry, mention) in arrivals {
            let result = FeedResult::Parsed {
                etag: None,
                last_modified: None,
                body_hash: entry.dedup_key.clone(),
                feed: crate::model::ParsedFeed {
                    entries: vec![entry],
                    ..Default::default()
                },
                mentions: vec![mention],
            };
            store
                .apply(feed, &super::super::FetchState::at(at, Some(200)), &result)
                .unwrap();
        }
        // Nokia is no longer tracked; and a story first seen after its only entry was (a clock
        // set back), whose entry was undated: dated now, by its story, from an old entry.
        store.sync_companies(&[company("Xiaomi")], vec![]).unwrap();
        let set_back = store
            .conn
            .execute(
                "UPDATE stories SET first_seen_at = ?1 WHERE id = (
                     SELECT e.story_id FROM entries e JOIN mentions m ON m.entry_id = e.id
                     JOIN companies c ON c.id = m.company_id AND c.active = 1
                     WHERE e.published_at IS NULL
                       AND e.first_seen_at < datetime(?1, '-10 days')
                       AND (SELECT count(*) FROM entries c WHERE c.story_id = e.story_id) = 1
                     ORDER BY e.id LIMIT 1)",
                [sql_time(now)],
            )
            .unwrap();
        assert_eq!(set_back, 1);

        let (wire, others) = (&feeds[..1], &feeds[1..]);
        let mut from_windows = Vec::new();
        let days = |n| Some(now - chrono::Duration::days(n));
        let until_3_days = days(3);
        for (since, until) in [
            (None, None),
            (None, until_3_days),
            (None, days(300)),
            (days(5), None),
            (days(100), None),
            (days(100), days(3)),
        ] {
            for feeds in [None, Some(wire), Some(others)] {
                let feed_set = feeds.map(|ids| FeedSet::new(ids.iter().copied()));
                for limit in [Some(1), Some(5), Some(30), Some(1000), None] {
                    let ids = |stories: &[FlaggedStory]| -> Vec<i64> {
                        stories.iter().map(|story| story.story_id).collect()
                    };
                    let found = store
                        .flagged_stories(None, since, until, feed_set.as_ref(), limit)
                        .unwrap();
                    let expected = newest_flagged_by_hand(
                        &store,
                        since,
                        until,
                        feeds,
                        limit.unwrap_or(usize::MAX),
                    );
                    assert!(!expected.is_empty());
                    let asked = format!(
                        "since {since:?}, until {until:?}, feeds {feeds:?}, limit {limit:?}"
                    );
                    assert_eq!(ids(&found), expected, "{asked}");
                    let query = FlaggedQuery {
                        company_id: None,
                        since,
                        until,
                        feeds: feed_set.as_ref(),
                        limit,
                    };
                    if let Some(windowed) = store.newest_in_windows(&query).unwrap() {
                        assert_eq!(ids(&windowed), expected, "{asked}");
                        from_windows.push((since, until, feeds, limit));
                    }
                }
            }
        }
        // Windows answered where the latest days hold enough, also before `until`, past the
        // stories a publisher dated ahead.
        assert!(
            from_windows.contains(&(None, until_3_days, None, Some(5))),
            "{from_windows:?}"
        );
    }

    #[test]
    fn a_window_of_the_newest_flagged_stories_is_read_from_the_date_indexes() {
        let (_dir, store, feeds) = store_with_feeds(&["Wire"]);
        let wire = FeedSet::new(feeds);
        for feeds in [None, Some(&wire)] {
            let sql = format!("EXPLAIN QUERY PLAN {}", newest_flagged_sql(feeds));
            let plan: Vec<String> = store
                .conn
                .prepare(&sql)
                .unwrap()
                .query_map(
                    params![
                        None::<i64>,
                        None::<String>,
                        50,
                        None::<String>,
                        feeds.map(FeedSet::json_ids),
                        "2026-11-25 00:00:00"
                    ],
                    |r| r.get(3),
                )
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("\n");
            assert!(
                plan.contains("SEARCH e USING COVERING INDEX entries_by_age (<expr>>?)"),
                "{plan}"
            );
            assert!(
                plan.contains("stories_by_first_seen (first_seen_at>?)"),
                "{plan}"
            );
            // Nothing read whole but the list of feeds.
            let whole = |step: &str| step.starts_with("SCAN") && !step.contains("json_each");
            assert!(!plan.lines().any(whole), "{plan}");
        }
    }

    #[test]
    fn mentions_left_behind_under_a_reused_entry_id_are_overwritten_not_an_error() {
        let (_dir, mut store, feeds) = store_with_feeds(&["Wire"]);
        track_xiaomi(&mut store);
        let store_flagged = |store: &mut Store, key: &str, mention: Mention| {
            let result = super::super::FeedResult::Parsed {
                etag: None,
                last_modified: None,
                body_hash: key.into(),
                feed: crate::model::ParsedFeed {
                    entries: vec![arriving(key, &format!("news.example/{key}"), HEADLINE)],
                    ..Default::default()
                },
                mentions: vec![vec![mention]],
            };
            let state = super::super::FetchState::at(Utc::now(), Some(200));
            store.apply(feeds[0], &state, &result).unwrap();
            store
                .conn
                .query_row("SELECT id FROM entries WHERE dedup_key = ?1", [key], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap()
        };
        let mentions = |store: &Store| -> Vec<(i64, String, i64, String)> {
            store
                .conn
                .prepare("SELECT entry_id, fields, count, snippet FROM mentions")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let first = store_flagged(&mut store, "a", xiaomi_in_title("first"));
        // Deleted by hand with foreign keys off: its mention stays, and SQLite gives the next
        // entry the same id.
        store
            .conn
            .execute_batch(
                "PRAGMA foreign_keys = OFF;
                 DELETE FROM entries;
                 PRAGMA foreign_keys = ON;",
            )
            .unwrap();
        assert_eq!(mentions(&store).len(), 1, "the mention outlived its entry");
        let in_both = Mention {
            fields: vec![crate::model::Field::Title, crate::model::Field::Summary],
            count: 3,
            ..xiaomi_in_title("second")
        };
        let second = store_flagged(&mut store, "b", in_both);
        assert_eq!(
            second, first,
            "the id is reused, so the old mention is in the way"
        );
        assert_eq!(
            mentions(&store),
            [(second, "title,summary".to_string(), 3, "second".to_string())]
        );
    }

    #[test]
    fn a_rematch_counts_only_the_entries_whose_mentions_it_changed() {
        let (_dir, mut store, feeds) = store_with_feeds(&["Wire"]);
        let companies = [company("Xiaomi"), company("Samsung"), company("Apple")];
        store.sync_companies(&companies, vec![]).unwrap();
        let entry = arriving("a", "news.example/a", HEADLINE);
        store_document_at(&mut store, feeds[0], vec![entry], "doc", Utc::now());
        let text = store.texts_after(0, 10).unwrap().remove(0);
        let rematch = |store: &mut Store, mentions: Vec<Mention>| {
            let batch = [Rematched {
                entry_id: text.entry_id,
                content_hash: text.content_hash.clone(),
                mentions,
            }];
            store.replace_mentions(&batch).unwrap()
        };
        let all_three = vec![mention("Samsung"), mention("Xiaomi"), mention("Apple")];
        assert_eq!(rematch(&mut store, all_three), 1);
        // Apple leaves the config: its mention stays, hidden, and is no change to look for.
        store.sync_companies(&companies[..2], vec![]).unwrap();
        let found = mention("Xiaomi");
        let both = |xiaomi: &Mention| vec![xiaomi.clone(), mention("Samsung")];
        assert_eq!(
            rematch(&mut store, both(&found)),
            0,
            "the same mentions, found in another order"
        );
        let elsewhere = Mention {
            snippet: "another snippet".into(),
            ..found
        };
        assert_eq!(rematch(&mut store, both(&elsewhere)), 1, "a new snippet");
        let more = Mention {
            count: 2,
            ..elsewhere
        };
        assert_eq!(rematch(&mut store, both(&more)), 1, "a new count");
        let in_the_body = Mention {
            fields: vec![crate::model::Field::Title, crate::model::Field::Content],
            ..more
        };
        assert_eq!(rematch(&mut store, both(&in_the_body)), 1, "new fields");
        assert_eq!(rematch(&mut store, vec![in_the_body]), 1, "Samsung no more");
        assert_eq!(rematch(&mut store, vec![]), 1);
        assert_eq!(rematch(&mut store, vec![]), 0, "still no mention");
        let apple: i64 = store
            .conn
            .query_row(
                "SELECT count(*) FROM mentions m JOIN companies c ON c.id = m.company_id
                 WHERE c.name = 'Apple'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(apple, 1, "the mention of a company out of the config stays");
    }

    #[test]
    fn a_rematch_leaves_entries_edited_or_deleted_since_it_read_them() {
        let (_dir, mut store, feeds) = store_with_feeds(&["Wire"]);
        track_xiaomi(&mut store);
        let entries =
            ["a", "b", "c"].map(|key| arriving(key, &format!("news.example/{key}"), HEADLINE));
        store_document_at(&mut store, feeds[0], entries.to_vec(), "doc", Utc::now());
        let texts = store.texts_after(0, 10).unwrap();
        // While the re-match works: a poll edits "b", retention deletes "c".
        store
            .conn
            .execute_batch(
                "UPDATE entries SET content_hash = 'edited' WHERE dedup_key = 'b';
                 DELETE FROM entries WHERE dedup_key = 'c';",
            )
            .unwrap();
        let batch: Vec<Rematched> = texts
            .into_iter()
            .map(|t| Rematched {
                entry_id: t.entry_id,
                content_hash: t.content_hash,
                mentions: vec![xiaomi_in_title(HEADLINE)],
            })
            .collect();
        assert_eq!(store.replace_mentions(&batch).unwrap(), 1);
        let flagged: Vec<String> = store
            .conn
            .prepare("SELECT e.dedup_key FROM mentions m JOIN entries e ON e.id = m.entry_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(flagged, ["a"]);
    }

    #[test]
    fn a_later_entry_finds_the_story_by_the_link_of_an_entry_that_joined_by_title() {
        let (_dir, mut store, feeds) = store_with_feeds(&["wire", "paper", "aggregator"]);
        let now = Utc::now();
        let first = story_of(
            &mut store,
            feeds[0],
            arriving("a", "wire.example/a1", HEADLINE),
            now,
        );
        let by_title = story_of(
            &mut store,
            feeds[1],
            arriving("b", "paper.example/b7", HEADLINE),
            now,
        );
        let by_its_link = story_of(
            &mut store,
            feeds[2],
            arriving(
                "c",
                "paper.example/b7",
                "Xiaomi opens Paris store | The Paper",
            ),
            now,
        );
        assert_eq!((by_title, by_its_link), (first, first));
        let unrelated = story_of(
            &mut store,
            feeds[2],
            arriving("d", "paper.example/b8", "Samsung cuts prices across Europe"),
            now,
        );
        assert_ne!(unrelated, first);
    }

    fn company(name: &str) -> CompanyConfig {
        CompanyConfig {
            rule: crate::matcher::CompanyRule {
                name: name.into(),
                aliases: vec![],
                case_sensitive: false,
                exclude: vec![],
                require_any: vec![],
                fields: vec![],
            },
            ticker: None,
            tags: vec![],
        }
    }

    /// A notify target of new stories; `companies` empty: it wants every company.
    fn route(target: &str, companies: &[&str]) -> AlertRoute {
        AlertRoute {
            target: target.into(),
            companies: (!companies.is_empty())
                .then(|| companies.iter().map(|c| (*c).to_owned()).collect()),
            backlog: false,
            digest: false,
        }
    }

    fn mention(name: &str) -> Mention {
        Mention {
            company: name.into(),
            ..xiaomi_in_title(name)
        }
    }

    /// Stores the story "lab" as `feed`'s document: text `version`, naming `mentions`.
    fn store_lab(
        store: &mut Store,
        feed: i64,
        version: &str,
        mentions: Vec<Mention>,
        now: DateTime<Utc>,
    ) {
        store_lab_as(store, feed, version, None, mentions, now);
    }

    /// [`store_lab`], the entry linking to `link` (its article page, for `fetch_articles`).
    fn store_lab_as(
        store: &mut Store,
        feed: i64,
        version: &str,
        link: Option<&str>,
        mentions: Vec<Mention>,
        now: DateTime<Utc>,
    ) {
        let result = FeedResult::Parsed {
            etag: None,
            last_modified: None,
            body_hash: version.into(),
            feed: crate::model::ParsedFeed {
                entries: vec![ParsedEntry {
                    content_hash: version.into(),
                    link: link.map(str::to_owned),
                    ..arriving("lab", "news.example/lab", HEADLINE)
                }],
                ..Default::default()
            },
            mentions: vec![mentions],
        };
        let state = crate::store::FetchState::at(now, Some(200));
        store.apply(feed, &state, &result).unwrap();
    }

    /// `target`'s alerts due at `now`.
    /// The alerts for `target` due now: alerts are queued at the writer's clock, which is later
    /// than a time the test took before writing.
    fn due(store: &Store, target: &str) -> Vec<crate::store::PendingAlert> {
        store.due_alerts(Utc::now(), &[target.into()], 10).unwrap()
    }

    fn ids_of(alerts: Vec<crate::store::PendingAlert>) -> Vec<i64> {
        alerts.iter().map(|a| a.id).collect()
    }

    /// (pending, withdrawn, delivered) alerts of `target`.
    fn alert_counts(store: &Store, target: &str) -> (i64, i64, i64) {
        let status = store
            .outbox_status(&HashMap::new(), &HashMap::new())
            .unwrap();
        let t = status.iter().find(|t| t.target == target).unwrap();
        (t.pending, t.withdrawn, t.delivered)
    }

    #[test]
    fn a_first_alert_waits_for_the_page_of_the_entry_that_flagged_it_until_the_page_is_reported() {
        let (_dir, mut store, feeds) = store_with_feeds(&["Teasers"]);
        store
            .conn
            .execute("UPDATE feeds SET fetch_articles = 1", [])
            .unwrap();
        let digest = AlertRoute {
            digest: true,
            ..route("morning", &[])
        };
        store
            .sync_companies(&[company("Xiaomi")], vec![route("desk", &[]), digest])
            .unwrap();
        let now = Utc::now();
        store_document_at(&mut store, feeds[0], vec![], "empty", now);
        let store_teaser = |store: &mut Store, version: &str| {
            let link = Some("https://news.example/lab");
            store_lab_as(store, feeds[0], version, link, vec![mention("Xiaomi")], now);
        };
        let page_failed = |store: &mut Store, version: &str| {
            let entry_id = store
                .conn
                .query_row("SELECT entry_id FROM articles", [], |r| r.get(0))
                .unwrap();
            let report = crate::store::ArticleReport {
                entry_id,
                content_hash: version.into(),
                status: Some(503),
                outcome: crate::store::ArticleOutcome::Failed {
                    error: "HTTP status 503".into(),
                    retry_at: Some(now + chrono::Duration::minutes(10)),
                },
                mentions: None,
            };
            store.record_article(&report).unwrap().alerts_may_be_due
        };
        store_teaser(&mut store, "v1");

        assert!(
            due(&store, "desk").is_empty(),
            "the alert waits for the page"
        );
        let after_the_wait = Utc::now() + PAGE_WAIT;
        let due_then = store
            .due_alerts(after_the_wait, &["desk".into()], 10)
            .unwrap();
        assert_eq!(due_then.len(), 1, "for PAGE_WAIT at most");
        assert_eq!(
            due(&store, "morning").len(),
            1,
            "a digest target's alert does not wait"
        );

        // Edited while its page was being read: that report is stale, the page queued again.
        store_teaser(&mut store, "v2");
        assert!(!page_failed(&mut store, "v1"));
        assert!(due(&store, "desk").is_empty(), "the edit's page is to come");

        // The page failed and is to be tried again later: the alert waits no longer.
        assert!(page_failed(&mut store, "v2"));
        assert_eq!(due(&store, "desk").len(), 1);
        assert!(!page_failed(&mut store, "v2"), "nothing left waiting");
    }

    /// A store tracking Xiaomi for the target "desk", whose feed "Wire" (returned) has carried
    /// the story "lab" naming Xiaomi past its backlog document: one alert waits.
    fn xiaomi_alert_waiting() -> (tempfile::TempDir, Store, i64, DateTime<Utc>) {
        let (dir, mut store, feeds) = store_with_feeds(&["Wire"]);
        store
            .sync_companies(&[company("Xiaomi")], vec![route("desk", &[])])
            .unwrap();
        let now = Utc::now();
        store_document_at(&mut store, feeds[0], vec![], "empty", now);
        store_lab(&mut store, feeds[0], "v1", vec![mention("Xiaomi")], now);
        (dir, store, feeds[0], now)
    }

    #[test]
    fn a_company_named_while_the_first_alert_is_on_its_way_gets_an_alert_of_its_own() {
        let (_dir, mut store, feeds) = store_with_feeds(&["Wire"]);
        store
            .sync_companies(
                &[company("Samsung"), company("Xiaomi")],
                vec![route("desk", &[])],
            )
            .unwrap();
        let now = Utc::now();
        let store_lab = |store: &mut Store, version: &str, mentions: Vec<Mention>| {
            store_lab(store, feeds[0], version, mentions, now)
        };
        // Past the backlog document, the story arrives naming Samsung.
        store_document_at(&mut store, feeds[0], vec![], "empty", now);
        store_lab(&mut store, "v1", vec![mention("Samsung")]);
        let due_now = due(&store, "desk");
        assert_eq!(due_now.len(), 1);
        // Read for sending; an edit naming Xiaomi lands while it is on its way.
        store_lab(
            &mut store,
            "v2",
            vec![mention("Samsung"), mention("Xiaomi")],
        );
        assert_eq!(
            due(&store, "desk").len(),
            1,
            "the waiting alert stands for the edit"
        );
        store.alerts_delivered(&due_now[..1], now, &[]).unwrap();
        let follow_up = due(&store, "desk");
        assert_eq!(follow_up.len(), 1, "Xiaomi was not in what went out");
        assert_eq!(follow_up[0].payload.newly_named.as_deref(), Some("Xiaomi"));
        store.alerts_delivered(&follow_up[..1], now, &[]).unwrap();
        // Dropped and named again: the target was told of both already.
        store_lab(&mut store, "v3", vec![mention("Xiaomi")]);
        store_lab(
            &mut store,
            "v4",
            vec![mention("Xiaomi"), mention("Samsung")],
        );
        store_lab(&mut store, "v5", vec![mention("Samsung")]);
        store_lab(
            &mut store,
            "v6",
            vec![mention("Samsung"), mention("Xiaomi")],
        );
        assert!(due(&store, "desk").is_empty());
    }

    #[test]
    fn an_edit_taking_out_every_company_a_waiting_alert_is_for_withdraws_it_until_one_is_named_again()
     {
        let (_dir, mut store, feeds) = store_with_feeds(&["Wire"]);
        store
            .sync_companies(
                &[company("Samsung"), company("Xiaomi")],
                vec![route("xiaomi", &["Xiaomi"]), route("all", &[])],
            )
            .unwrap();
        let now = Utc::now();
        let store_lab = |store: &mut Store, version: &str, mentions: Vec<Mention>| {
            store_lab(store, feeds[0], version, mentions, now)
        };
        store_document_at(&mut store, feeds[0], vec![], "empty", now);
        store_lab(
            &mut store,
            "v1",
            vec![mention("Xiaomi"), mention("Samsung")],
        );
        let first = due(&store, "xiaomi");
        assert_eq!(first.len(), 1);
        // The target is down; a receiver may have kept the attempt all the same.
        let retry_at = now - chrono::Duration::minutes(1);
        store
            .alerts_failed(&first[..1], "HTTP 503", now, retry_at)
            .unwrap();

        store_lab(&mut store, "v2", vec![mention("Samsung")]);
        assert!(
            due(&store, "xiaomi").is_empty(),
            "the story no longer names the one company this target wants"
        );
        assert_eq!(alert_counts(&store, "xiaomi"), (0, 1, 0));
        assert_eq!(
            store.next_alert_time(&["xiaomi".into()], None).unwrap(),
            None,
            "no delivery round waits for it"
        );
        assert!(
            store
                .due_alert_ids(Utc::now(), &["xiaomi".into()], None, 10)
                .unwrap()
                .is_empty(),
            "nor reads it"
        );
        assert_eq!(
            due(&store, "all").len(),
            1,
            "this target wants Samsung, which the story still names"
        );
        store_lab(&mut store, "v3", vec![]);
        assert!(due(&store, "all").is_empty(), "it names no company");
        assert_eq!(alert_counts(&store, "all"), (0, 1, 0));
        assert_eq!(
            store.service_gauges().unwrap().outbox_pending,
            0,
            "withdrawn alerts are not a backlog"
        );

        store_lab(&mut store, "v4", vec![mention("Xiaomi")]);
        let again = due(&store, "xiaomi");
        assert_eq!(again.len(), 1, "named again: the alert goes out after all");
        assert_eq!(
            (
                again[0].id,
                again[0].attempts,
                &again[0].payload.idempotency_key
            ),
            (first[0].id, 1, &first[0].payload.idempotency_key),
            "as the alert the receiver may have kept"
        );
        assert_eq!(
            store
                .next_alert_time(&["xiaomi".into()], None)
                .unwrap()
                .map(sql_time),
            Some(sql_time(retry_at)),
            "on its own schedule of retries"
        );
        assert_eq!(alert_counts(&store, "xiaomi"), (1, 0, 0));
        assert_eq!(due(&store, "all").len(), 1);
    }

    #[test]
    fn an_alert_about_a_company_an_edit_named_is_withdrawn_while_the_story_does_not_name_it() {
        let (_dir, mut store, feeds) = store_with_feeds(&["Wire"]);
        store
            .sync_companies(
                &[company("Samsung"), company("Xiaomi"), company("Apple")],
                vec![route("desk", &[])],
            )
            .unwrap();
        let now = Utc::now();
        let store_lab = |store: &mut Store, version: &str, names: &[&str]| {
            let mentions = names.iter().map(|name| mention(name)).collect();
            store_lab(store, feeds[0], version, mentions, now)
        };
        store_document_at(&mut store, feeds[0], vec![], "empty", now);
        store_lab(&mut store, "v1", &["Samsung"]);
        let first = due(&store, "desk");
        store.alerts_delivered(&first[..1], now, &[]).unwrap();
        store_lab(&mut store, "v2", &["Samsung", "Xiaomi", "Apple"]);
        let edits = due(&store, "desk");
        let about = |name: &str| {
            edits
                .iter()
                .find(|a| a.payload.newly_named.as_deref() == Some(name))
                .unwrap()
        };
        let (xiaomi, apple) = (about("Xiaomi"), about("Apple"));
        // Both first attempts fail; each named all three companies.
        for alert in [xiaomi, apple] {
            store
                .alerts_failed(std::slice::from_ref(alert), "HTTP 500", now, now)
                .unwrap();
        }

        store_lab(&mut store, "v3", &["Samsung", "Apple"]);
        assert_eq!(
            ids_of(due(&store, "desk")),
            [apple.id],
            "the alert about Xiaomi is withdrawn"
        );
        store
            .alerts_delivered(std::slice::from_ref(apple), now, &[])
            .unwrap();
        store
            .conn
            .execute(
                "UPDATE outbox SET created_at = '2026-01-01 00:00:00' WHERE id = ?1",
                [xiaomi.id],
            )
            .unwrap();
        store_lab(&mut store, "v4", &["Samsung", "Xiaomi", "Apple"]);
        assert_eq!(
            ids_of(due(&store, "desk")),
            [xiaomi.id],
            "named again, it goes out after all, whatever the attempts of other alerts named"
        );
        let queued: String = store
            .conn
            .query_row(
                "SELECT created_at FROM outbox WHERE id = ?1",
                [xiaomi.id],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            queued >= sql_time(now),
            "put back, it counts as queued now, for a digest: {queued}"
        );
    }

    #[test]
    fn a_copy_naming_the_company_again_puts_a_withdrawn_alert_back_even_from_a_backlog() {
        let (_dir, mut store, feeds) = store_with_feeds(&["Wire", "Paper"]);
        store
            .sync_companies(
                &[company("Samsung"), company("Xiaomi")],
                vec![route("desk", &["Xiaomi"])],
            )
            .unwrap();
        let now = Utc::now();
        store_document_at(&mut store, feeds[0], vec![], "empty", now);
        store_lab(&mut store, feeds[0], "v1", vec![mention("Xiaomi")], now);
        store_lab(&mut store, feeds[0], "v2", vec![mention("Samsung")], now);
        assert_eq!(alert_counts(&store, "desk"), (0, 1, 0));
        // Paper's first document (its backlog) carries the story, naming Xiaomi.
        store_lab(&mut store, feeds[1], "v1", vec![mention("Xiaomi")], now);
        assert_eq!(
            store
                .conn
                .query_row("SELECT count(DISTINCT story_id) FROM entries", [], |r| r
                    .get::<_, i64>(0))
                .unwrap(),
            1,
            "the copy joins the story"
        );
        assert_eq!(alert_counts(&store, "desk"), (1, 0, 0));
    }

    #[test]
    fn a_rematch_withdraws_and_puts_back_alerts_as_it_changes_what_a_story_names() {
        let (_dir, mut store, _, _) = xiaomi_alert_waiting();
        let text = store.texts_after(0, 10).unwrap().remove(0);
        // Rules that exclude the phrase, say, and then those rules undone.
        let mut rematch = |mentions: Vec<Mention>| {
            let batch = [Rematched {
                entry_id: text.entry_id,
                content_hash: text.content_hash.clone(),
                mentions,
            }];
            assert_eq!(store.replace_mentions(&batch).unwrap(), 1);
            alert_counts(&store, "desk")
        };
        assert_eq!(rematch(vec![]), (0, 1, 0));
        assert_eq!(rematch(vec![mention("Xiaomi")]), (1, 0, 0));
    }

    #[test]
    fn the_companies_reports_read_entries_from_the_date_and_story_indexes_alone() {
        let (_dir, store, _) = store_with_feeds(&["Wire", "Blog"]);
        let one_feed = FeedSet::new([1]);
        for feeds in [None, Some(&one_feed)] {
            let queries = [
                (company_activity_sql(feeds), "earlier"),
                (
                    company_stories_by_sql(Span::Week, Tz::America__New_York, feeds),
                    "s",
                ),
            ];
            for (sql, earlier) in queries {
                let plan: Vec<String> = store
                    .conn
                    .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .unwrap()
                    .query_map(
                        params![
                            "2026-11-01 00:00:00",
                            None::<String>,
                            feeds.map(FeedSet::json_ids)
                        ],
                        |r| r.get(3),
                    )
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                // Neither the period's entries nor a story's others are read row by row: each
                // step but those over mentions, companies, the feed list and the CTEs reads an
                // index of entries alone.
                let not_entries = ["m", "em", "sm", "c", "json_each", "named", "firsts"];
                for step in &plan {
                    let mut words = step.split(' ');
                    if let (Some("SEARCH" | "SCAN"), Some(alias)) = (words.next(), words.next()) {
                        assert!(
                            not_entries.contains(&alias) || step.contains("USING COVERING INDEX"),
                            "{step} in {plan:#?}"
                        );
                    }
                }
                let plan = plan.join("\n");
                assert!(
                    plan.contains(
                        "SEARCH e USING COVERING INDEX entries_by_age (<expr>>? AND <expr><?)"
                    ),
                    "{plan}"
                );
                assert!(
                    plan.contains(&format!(
                        "SEARCH {earlier} USING COVERING INDEX entries_by_story (story_id=?)"
                    )),
                    "{plan}"
                );
            }
        }
    }

    #[test]
    fn a_title_join_checks_the_storys_feeds_from_the_index_alone() {
        let (_dir, store, _) = store_with_feeds(&["Wire"]);
        let plan: Vec<String> = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {STORY_HAS_ENTRY_OF_FEED}"))
            .unwrap()
            .query_map([1, 1], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.len() == 1 && plan[0].contains("USING COVERING INDEX entries_by_story"),
            "{plan:?}"
        );
    }

    #[test]
    fn edits_and_copies_find_a_storys_undelivered_alerts_through_an_index() {
        let (_dir, store, _) = store_with_feeds(&["Wire"]);
        for sql in [UNDELIVERED_ALERTS_OF_STORY, WITHDRAWN_ALERTS_OF_STORY] {
            let plan: Vec<String> = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([1], |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter()
                    .any(|step| step.contains("SEARCH")
                        && step.contains("outbox_undelivered_by_story")),
                "{sql}: {plan:?}"
            );
        }
    }

    #[test]
    fn a_config_change_withdraws_the_alerts_it_makes_unwanted_and_undoing_it_puts_them_back() {
        let (_dir, mut store, feeds) = store_with_feeds(&["Wire"]);
        let companies = [company("Samsung"), company("Xiaomi")];
        store
            .sync_companies(&companies, vec![route("desk", &["Xiaomi"])])
            .unwrap();
        let now = Utc::now();
        store_document_at(&mut store, feeds[0], vec![], "empty", now);
        let lab = vec![mention("Xiaomi"), mention("Samsung")];
        store_lab(&mut store, feeds[0], "v1", lab, now);
        let first = due(&store, "desk");
        assert_eq!(first.len(), 1);

        store
            .sync_companies(&companies, vec![route("desk", &["Samsung"])])
            .unwrap();
        assert_eq!(
            alert_counts(&store, "desk"),
            (1, 0, 0),
            "the story names Samsung"
        );
        store_lab(&mut store, feeds[0], "v2", vec![mention("Xiaomi")], now);
        assert_eq!(alert_counts(&store, "desk"), (0, 1, 0));
        store
            .sync_companies(&companies, vec![route("desk", &["Xiaomi"])])
            .unwrap();
        assert_eq!(
            ids_of(due(&store, "desk")),
            [first[0].id],
            "the reload undone"
        );
        // Without an edit: the story names Xiaomi alone.
        store
            .sync_companies(&companies, vec![route("desk", &["Samsung"])])
            .unwrap();
        assert_eq!(alert_counts(&store, "desk"), (0, 1, 0));
        store
            .sync_companies(&companies, vec![route("desk", &["Xiaomi"])])
            .unwrap();
        assert_eq!(alert_counts(&store, "desk"), (1, 0, 0));

        // Xiaomi out of the config for a while, for a target that wants every company.
        store
            .sync_companies(&companies[..1], vec![route("desk", &[])])
            .unwrap();
        assert_eq!(alert_counts(&store, "desk"), (0, 1, 0));
        store
            .sync_companies(&companies, vec![route("desk", &[])])
            .unwrap();
        assert_eq!(ids_of(due(&store, "desk")), [first[0].id]);

        // Out of the config, a target's alerts wait as they are: Xiaomi is gone too, and the
        // alert is not withdrawn.
        store
            .sync_companies(&companies[..1], vec![route("other", &[])])
            .unwrap();
        assert_eq!(alert_counts(&store, "desk"), (1, 0, 0));
    }

    #[test]
    fn a_config_sync_that_changes_nothing_an_alert_depends_on_reads_no_alert() {
        let (_dir, mut store, _, _) = xiaomi_alert_waiting();
        let companies = [company("Xiaomi")];
        // Marked by hand, so that a reassessment shows: it would put the alert back.
        store
            .conn
            .execute("UPDATE outbox SET withdrawn_at = '2026-11-20 10:00:00'", [])
            .unwrap();
        store
            .sync_companies(&companies, vec![route("desk", &[])])
            .unwrap();
        assert_eq!(alert_counts(&store, "desk"), (0, 1, 0));
        store
            .sync_companies(&companies, vec![route("desk", &[]), route("log", &[])])
            .unwrap();
        assert_eq!(alert_counts(&store, "desk"), (1, 0, 0), "a target added");
    }

    #[test]
    fn an_alert_delivered_after_it_was_withdrawn_counts_as_delivered() {
        let (_dir, mut store, wire, now) = xiaomi_alert_waiting();
        let on_its_way = due(&store, "desk");
        store_lab(&mut store, wire, "v2", vec![], now);
        assert_eq!(alert_counts(&store, "desk"), (0, 1, 0));
        assert!(
            store.waiting_alert(on_its_way[0].id).unwrap().is_none(),
            "not read for an attempt that has not begun"
        );
        store.alerts_delivered(&on_its_way[..1], now, &[]).unwrap();
        assert_eq!(alert_counts(&store, "desk"), (0, 0, 1));
        store_lab(&mut store, wire, "v3", vec![mention("Xiaomi")], now);
        assert!(
            due(&store, "desk").is_empty(),
            "the target was told of Xiaomi"
        );
    }

    #[test]
    fn a_feeds_next_item_under_a_title_it_used_yesterday_is_a_story_of_its_own() {
        let (_dir, mut store, feeds) = store_with_feeds(&["desk", "wire"]);
        let now = Utc::now();
        let briefing = "Morning market briefing for investors";
        let monday = story_of(
            &mut store,
            feeds[0],
            arriving("d1", "desk.example/11/25/briefing", briefing),
            now,
        );
        let tuesday = story_of(
            &mut store,
            feeds[0],
            arriving("d2", "desk.example/11/26/briefing", briefing),
            now + chrono::Duration::hours(24),
        );
        assert_ne!(tuesday, monday);
        // Another feed's copy still joins by title: the newest story under it.
        let copy = story_of(
            &mut store,
            feeds[1],
            arriving("w1", "wire.example/w1", briefing),
            now + chrono::Duration::hours(25),
        );
        assert_eq!(copy, tuesday);
    }

    #[test]
    fn a_story_stored_before_a_restart_is_found_by_its_title() {
        let (_dir, mut store, feeds) = store_with_feeds(&["wire", "paper"]);
        let now = Utc::now();
        let first = story_of(
            &mut store,
            feeds[0],
            arriving("a", "wire.example/a1", HEADLINE),
            now,
        );
        let mut reopened = Store::open(store.path()).unwrap();
        drop(store);
        let copy = story_of(
            &mut reopened,
            feeds[1],
            arriving("b", "paper.example/b7", HEADLINE),
            now + chrono::Duration::hours(1),
        );
        assert_eq!(copy, first);
    }

    #[test]
    fn a_story_another_process_stored_is_found_by_its_title_at_the_next_write() {
        let (_dir, mut daemon, feeds) = store_with_feeds(&["wire", "paper", "blog"]);
        let now = Utc::now();
        // The daemon's map is filled by its first write.
        story_of(
            &mut daemon,
            feeds[2],
            arriving("z", "blog.example/z", "Samsung cuts prices across Europe"),
            now,
        );
        let mut cron_poll = Store::open(daemon.path()).unwrap();
        let first = story_of(
            &mut cron_poll,
            feeds[0],
            arriving("a", "wire.example/a1", HEADLINE),
            now,
        );
        let copy = story_of(
            &mut daemon,
            feeds[1],
            arriving("b", "paper.example/b7", HEADLINE),
            now,
        );
        assert_eq!(copy, first);
    }

    #[test]
    fn a_story_recorded_by_a_result_that_rolled_back_hides_no_other() {
        let (_dir, mut store, feeds) = store_with_feeds(&["wire", "paper"]);
        let now = Utc::now();
        let edge = now - TITLE_WINDOW - chrono::Duration::minutes(2);
        let first = story_of(
            &mut store,
            feeds[0],
            arriving("a", "wire.example/a1", HEADLINE),
            edge,
        );
        // Past `first`'s window, so it makes a story of its own; then its entry is refused and
        // the result rolls back, story and all.
        store
            .conn
            .execute_batch(
                "CREATE TEMP TRIGGER refuse_b BEFORE INSERT ON main.entries WHEN NEW.dedup_key = 'b'
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            )
            .unwrap();
        let failing = FeedResult::Parsed {
            etag: None,
            last_modified: None,
            body_hash: "orphan".into(),
            feed: crate::model::ParsedFeed {
                entries: vec![arriving("b", "orphan.example/b1", HEADLINE)],
                ..Default::default()
            },
            mentions: Vec::new(),
        };
        let at_now = crate::store::FetchState::at(now, Some(200));
        let refused = store.apply(feeds[1], &at_now, &failing).unwrap_err();
        assert!(
            format!("{refused:#}").contains("refused by the test"),
            "{refused:#}"
        );
        // A copy fetched a little earlier, written after: `first` is in its window.
        let copy = story_of(
            &mut store,
            feeds[1],
            arriving("c", "paper.example/c7", HEADLINE),
            now - chrono::Duration::minutes(5),
        );
        assert_eq!(copy, first);
    }

    #[test]
    fn a_link_every_item_of_a_feed_shares_does_not_group_stories() {
        let (_dir, mut store, feeds) = store_with_feeds(&["home-page linker", "other"]);
        let now = Utc::now();
        let home = "lazy.example/";
        // A document whose items all point at the feed's home page.
        let shared = |key: &str, title: &str| ParsedEntry {
            link_unique_in_doc: false,
            ..arriving(key, home, title)
        };
        store_document_at(
            &mut store,
            feeds[0],
            vec![
                shared("a", "Samsung cuts prices across Europe"),
                shared("b", HEADLINE),
            ],
            "doc",
            now,
        );
        // Even with one of them gone (retention keeps only entries that mention a company),
        // another feed's only item linking there is a story of its own.
        store
            .conn
            .execute("DELETE FROM entries WHERE dedup_key = 'a'", [])
            .unwrap();
        let elsewhere = story_of(
            &mut store,
            feeds[1],
            arriving("c", home, "Apple ships a new iPad in Cupertino"),
            now,
        );
        let stories: i64 = store
            .conn
            .query_row("SELECT count(DISTINCT story_id) FROM entries", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(
            stories, 2,
            "story {elsewhere} joined a home-page-linked one"
        );
    }

    #[test]
    fn a_later_entry_finds_the_story_by_the_title_of_an_entry_that_joined_by_link_within_the_window()
     {
        let (_dir, mut store, feeds) = store_with_feeds(&["wire", "paper", "blog"]);
        let now = Utc::now();
        let rewritten = "Xiaomi picks Paris for its first European flagship";
        let first = story_of(
            &mut store,
            feeds[0],
            arriving("a", "wire.example/a1", HEADLINE),
            now,
        );
        let by_link = story_of(
            &mut store,
            feeds[1],
            arriving("b", "wire.example/a1", rewritten),
            now,
        );
        let by_its_title = story_of(
            &mut store,
            feeds[2],
            arriving("c", "blog.example/c3", rewritten),
            now,
        );
        assert_eq!((by_link, by_its_title), (first, first));
        // That title groups only within the window, as a story's own title does.
        let days_later = story_of(
            &mut store,
            feeds[2],
            arriving("d", "blog.example/c4", rewritten),
            now + TITLE_WINDOW + chrono::Duration::hours(1),
        );
        assert_ne!(days_later, first);
        // Recorded once, and gone with its story when retention deletes it.
        let titles = |store: &Store| -> i64 {
            store
                .conn
                .query_row("SELECT count(*) FROM story_titles", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(titles(&store), 1);
        let year = std::time::Duration::from_secs(365 * 86400);
        let report = store
            .prune(year, now + chrono::Duration::days(800), false)
            .unwrap();
        assert_eq!(report.entries, 4);
        assert_eq!(titles(&store), 0);
    }

    #[test]
    fn the_upgrade_marks_links_that_entries_of_one_feed_share() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = crate::store::testing::database_before(&path, "0010_story_lookups");
            conn.execute_batch(
                "INSERT INTO feeds (id, url) VALUES (1, 'http://127.0.0.1/a.xml'), (2, 'http://127.0.0.1/b.xml');
                 INSERT INTO entries (feed_id, dedup_key, canonical_link, content_hash, first_seen_at, last_seen_at)
                 VALUES (1, 'a1', 'lazy.example/', 'x', '2026-01-01 00:00:00', '2026-01-01 00:00:00'),
                        (1, 'a2', 'lazy.example/', 'x', '2026-01-01 00:00:00', '2026-01-01 00:00:00'),
                        (1, 'a3', 'lazy.example/own', 'x', '2026-01-01 00:00:00', '2026-01-01 00:00:00'),
                        (2, 'b1', 'lazy.example/own', 'x', '2026-01-01 00:00:00', '2026-01-01 00:00:00');",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let shared: Vec<String> = store
            .conn
            .prepare("SELECT dedup_key FROM entries WHERE link_shared = 1 ORDER BY dedup_key")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(shared, ["a1", "a2"]);
    }

    #[test]
    fn short_titles_do_not_group_stories() {
        assert_eq!(title_key("Update"), None);
        assert_eq!(title_key("Podcast #12"), None);
        assert_eq!(
            title_key("Xiaomi's new tablet undercuts rivals in Europe").as_deref(),
            Some("xiaomi s new tablet undercuts rivals in europe")
        );
        assert_eq!(
            title_key("  XIAOMI’S new tablet — undercuts rivals in Europe!"),
            title_key("Xiaomi's new tablet undercuts rivals in Europe")
        );
    }
}
