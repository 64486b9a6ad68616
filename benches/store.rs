//! Cost of the store: upserting entries, and answering `mentions` on a large database.
//!
//! `cargo bench --bench store` prints:
//!
//! 1. the dedup key and content hash of an entry (the blake3 work `parse` does per entry);
//! 2. per-entry cost of recording N feeds × M entries that are **new**, then the same entries
//!    **unchanged**, then all **changed** (edited text), through `Store::apply` (a transaction
//!    per feed) and through the `StoreWriter` thread (results batched as in a real poll); the
//!    search index catches up after such writes and is not in these figures;
//! 3. `Store::flagged_stories` (one company, since 7 days, at most 50) on a database of
//!    `FEEDHOUND_BENCH_DB_ENTRIES` entries (default 1,000,000), filled with direct SQL in one
//!    transaction; its query plan (`EXPLAIN QUERY PLAN`), and the database size per entry, by
//!    table and index (SQLite's `dbstat`); what `feedhound companies` reads, with and without
//!    `--by`; `mentions` and `companies` kept to a tenth of the feeds (`--feed`, `--tag`); then
//!    README's one-company SQL query (`story_companies`) on the same database,
//!    with its plan.
//!
//! Environment: `FEEDHOUND_BENCH_FEEDS` (1000), `FEEDHOUND_BENCH_ENTRIES` (50),
//! `FEEDHOUND_BENCH_DB_ENTRIES` (1000000; 0 skips part 3), `FEEDHOUND_BENCH_TEXT_BYTES` (1200:
//! plain text per stored entry, about what the shared 1000 × 50 corpus yields).

#[path = "common/mod.rs"]
mod common;
use common::{COMPANIES, env_or};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use chrono_tz::Tz;
use feedhound::config::{CompanyConfig, FeedConfig};
use feedhound::matcher::CompanyRule;
use feedhound::model::{Field, Mention, ParsedEntry, ParsedFeed};
use feedhound::store::writer::{StoreWriter, WhenIdle};
use feedhound::store::{FeedResult, FeedSet, FetchState, Span, Store};
use rusqlite::{Connection, params};

/// Entries naming a company, in percent (as in the shared corpus).
const MENTION_PERCENT: usize = 28;
/// The `mentions --since` window of the goal.
const SINCE_DAYS: i64 = 7;
/// How far back the large database's entries reach.
const HISTORY_DAYS: i64 = 365;

/// Deterministic filler text of about `bytes` bytes, different per `seed`.
fn text(seed: usize, bytes: usize) -> String {
    const WORDS: &[&str] = &[
        "market",
        "shares",
        "analysts",
        "quarter",
        "revenue",
        "growth",
        "chip",
        "supply",
        "investors",
        "forecast",
        "regulators",
        "launch",
        "device",
        "cloud",
        "software",
    ];
    let mut out = String::with_capacity(bytes + 16);
    let mut state = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
        out.push(' ');
    }
    out
}

/// The blake3 work `parse` does per entry (see `Draft::content_hash` and `dedup_key`).
fn content_hash(title: &str, link: &str, summary: &str, content: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    for field in [title, link, summary, content] {
        hasher.update(field.as_bytes());
        hasher.update(b"\x1f");
    }
    hasher.finalize().to_hex().to_string()
}

fn entry(feed: usize, seq: usize, text_bytes: usize, edition: usize) -> ParsedEntry {
    let link = format!("https://site{feed}.example.com/2026/story-{seq}.html");
    let title = format!(
        "Story {seq} of site {feed}: {}",
        text(seq * 7 + edition, 40).trim()
    );
    let summary = text(feed * 100_003 + seq + edition, text_bytes / 4);
    let content = text(feed * 7_919 + seq * 31 + edition, text_bytes * 3 / 4);
    ParsedEntry {
        dedup_key: format!("g:bench-{feed}-{seq}"),
        guid: Some(format!("bench-{feed}-{seq}")),
        canonical_link: Some(link.trim_start_matches("https://").to_string()),
        link_unique_in_doc: true,
        key_with_own_link: None,
        content_hash: content_hash(&title, &link, &summary, &content),
        link: Some(link),
        title: Some(title),
        author: None,
        published_at: Some(Utc::now() - chrono::Duration::minutes(seq as i64)),
        updated_at: None,
        summary: Some(summary),
        content: Some(content),
    }
}

fn mentions_for(feed: usize, entries: &[ParsedEntry]) -> Vec<Vec<Mention>> {
    (0..entries.len())
        .map(|i| {
            let n = feed * 7_919 + i * 104_729;
            if n % 100 < MENTION_PERCENT {
                vec![Mention {
                    company: Arc::from(COMPANIES[n % COMPANIES.len()]),
                    fields: vec![Field::Content],
                    count: 1,
                    snippet: "… a spokesperson for the company said …".into(),
                }]
            } else {
                Vec::new()
            }
        })
        .collect()
}

fn companies() -> Vec<CompanyConfig> {
    COMPANIES
        .iter()
        .map(|name| CompanyConfig {
            rule: CompanyRule {
                name: name.to_string(),
                aliases: Vec::new(),
                case_sensitive: true,
                exclude: Vec::new(),
                require_any: Vec::new(),
                fields: Field::ALL.to_vec(),
            },
            ticker: None,
            tags: Vec::new(),
        })
        .collect()
}

/// A store with `feeds` feeds and the companies; returns it and the feed ids.
fn prepared_store(path: &Path, feeds: usize) -> (Store, Vec<i64>) {
    let mut store = Store::open(path).unwrap();
    store.sync_companies(&companies(), Vec::new()).unwrap();
    let configs: Vec<FeedConfig> = (0..feeds)
        .map(|i| FeedConfig {
            url: url::Url::parse(&format!("http://127.0.0.1:9/f/{i}")).unwrap(),
            name: None,
            interval: None,
            tags: Vec::new(),
            headers: None,
            fetch_articles: false,
        })
        .collect();
    store.sync_feeds(&configs).unwrap();
    let ids = store
        .due_feeds(None)
        .unwrap()
        .iter()
        .map(|f| f.id)
        .collect();
    (store, ids)
}

fn parsed(feed: ParsedFeed, mentions: Vec<Vec<Mention>>) -> FeedResult {
    FeedResult::Parsed {
        etag: Some("\"e\"".into()),
        last_modified: None,
        body_hash: blake3::hash(feed.entries.len().to_le_bytes().as_slice())
            .to_hex()
            .to_string(),
        feed,
        mentions,
    }
}

fn state() -> FetchState {
    FetchState {
        next_poll_at: Some(Utc::now() + chrono::Duration::minutes(30)),
        ..FetchState::at(Utc::now(), Some(200))
    }
}

/// The three passes (new, unchanged, changed) over `docs`, each through `record`; prints µs per
/// entry and checks the counts the store reports.
fn upsert_passes(
    label: &str,
    docs: &[(Vec<ParsedEntry>, Vec<ParsedEntry>)],
    mut record: impl FnMut(Vec<FeedResult>) -> (usize, usize, usize),
) {
    let total: usize = docs.iter().map(|(first, _)| first.len()).sum();
    let results = |edited: bool| -> Vec<FeedResult> {
        docs.iter()
            .enumerate()
            .map(|(feed, (first, second))| {
                let entries = if edited {
                    second.clone()
                } else {
                    first.clone()
                };
                let mentions = mentions_for(feed, &entries);
                parsed(
                    ParsedFeed {
                        entries,
                        ..Default::default()
                    },
                    mentions,
                )
            })
            .collect()
    };
    for (pass, edited, expected) in [
        ("new", false, (total, 0, 0)),
        ("unchanged", false, (0, 0, total)),
        ("changed", true, (0, total, 0)),
    ] {
        let batch = results(edited);
        let started = Instant::now();
        let counts = record(batch);
        let elapsed = started.elapsed();
        assert_eq!(
            counts, expected,
            "{label} {pass}: the store reported the wrong counts"
        );
        println!(
            "  {label:<28} {pass:<10} {:7.2} µs per entry  ({total} entries in {:.2} s)",
            elapsed.as_secs_f64() * 1e6 / total as f64,
            elapsed.as_secs_f64()
        );
    }
}

fn bench_upserts(feeds: usize, per_feed: usize, text_bytes: usize) {
    println!(
        "upserts: {feeds} feeds × {per_feed} entries, {text_bytes} bytes of text per entry, {MENTION_PERCENT}% with a mention"
    );
    let docs: Vec<(Vec<ParsedEntry>, Vec<ParsedEntry>)> = (0..feeds)
        .map(|feed| {
            let first = (0..per_feed)
                .map(|seq| entry(feed, seq, text_bytes, 0))
                .collect();
            let second = (0..per_feed)
                .map(|seq| entry(feed, seq, text_bytes, 1))
                .collect();
            (first, second)
        })
        .collect();

    // Part 1: the hashing inside parse, on the entries just built.
    let sample: Vec<&ParsedEntry> = docs
        .iter()
        .flat_map(|(first, _)| first)
        .take(10_000)
        .collect();
    let started = Instant::now();
    for e in &sample {
        black_box(content_hash(
            e.title.as_deref().unwrap(),
            e.link.as_deref().unwrap(),
            e.summary.as_deref().unwrap(),
            e.content.as_deref().unwrap(),
        ));
        black_box(format!("g:{}", e.guid.as_deref().unwrap()));
    }
    println!(
        "  dedup key + content hash (blake3 over title, link, summary, content): {:.2} µs per entry",
        started.elapsed().as_secs_f64() * 1e6 / sample.len() as f64
    );

    let sum = |applied: &[feedhound::store::Applied]| {
        applied.iter().fold((0, 0, 0), |(n, u, s), a| {
            (n + a.new, u + a.updated, s + a.unchanged)
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let (mut store, ids) = prepared_store(&dir.path().join("apply.db"), feeds);
    upsert_passes("Store::apply (tx per feed)", &docs, |batch| {
        let applied: Vec<_> = ids
            .iter()
            .zip(&batch)
            .map(|(&id, result)| store.apply(id, &state(), result).unwrap())
            .collect();
        sum(&applied)
    });
    drop(store);

    let (store, ids) = prepared_store(&dir.path().join("writer.db"), feeds);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (writer, thread) = StoreWriter::spawn(store, WhenIdle::Wait).unwrap();
    upsert_passes("StoreWriter (batched)", &docs, |batch| {
        runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for (&id, result) in ids.iter().zip(batch) {
                let writer = writer.clone();
                tasks.spawn(async move { writer.apply(id, state(), result).await.unwrap() });
            }
            let applied = tasks.join_all().await;
            sum(&applied)
        })
    });
    drop(writer);
    thread.join().unwrap();
}

/// Fills a fresh database with `total` entries over `feeds` feeds, published over the last year,
/// one story each, `MENTION_PERCENT`% mentioning one company, in one transaction.
fn fill_large_db(path: &Path, feeds: usize, total: usize, text_bytes: usize) {
    let (store, ids) = prepared_store(path, feeds);
    drop(store);
    let mut conn = Connection::open(path).unwrap();
    let company_ids: Vec<i64> = conn
        .prepare("SELECT id FROM companies ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let now = Utc::now();
    let tx = conn.transaction().unwrap();
    {
        let mut story = tx
            .prepare("INSERT INTO stories (id, canonical_link, title_key, first_seen_at) VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        let mut insert = tx
            .prepare(
                "INSERT INTO entries (id, feed_id, dedup_key, guid, link, canonical_link, title, published_at,
                     summary, content, content_hash, first_seen_at, last_seen_at, story_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?1)",
            )
            .unwrap();
        let mut mention = tx
            .prepare("INSERT INTO mentions (entry_id, company_id, fields, count, snippet) VALUES (?1, ?2, 'content', 1, ?3)")
            .unwrap();
        let summary = text(1, text_bytes / 4);
        let content = text(2, text_bytes * 3 / 4);
        for i in 0..total {
            let id = i as i64 + 1;
            let feed = ids[i % ids.len()];
            // Spread evenly over the history, oldest first (ids grow with time, as in real use).
            let at = now
                - chrono::Duration::seconds(
                    HISTORY_DAYS * 86_400 * (total - i) as i64 / total as i64,
                );
            let at = at.format("%Y-%m-%d %H:%M:%S").to_string();
            let link = format!("https://site{feed}.example.com/2026/story-{i}.html");
            let title = format!("Story {i} of site {feed} about the market");
            story
                .execute(params![id, &link[8..], title.to_lowercase(), at])
                .unwrap();
            insert
                .execute(params![
                    id,
                    feed,
                    format!("g:bench-{i}"),
                    format!("bench-{i}"),
                    link,
                    &link[8..],
                    title,
                    at,
                    summary,
                    content,
                    blake3::hash(link.as_bytes()).to_hex().as_str(),
                    at
                ])
                .unwrap();
            let n = i.wrapping_mul(2_654_435_761) % 1000;
            if n < MENTION_PERCENT * 10 {
                mention
                    .execute(params![
                        id,
                        company_ids[n % company_ids.len()],
                        "… the company said …"
                    ])
                    .unwrap();
            }
        }
    }
    tx.commit().unwrap();
    // Index every entry in one go, as `feedhound reindex` does.
    Store::open(path).unwrap().rebuild_search_index().unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
}

fn bench_mentions_query(entries: usize, feeds: usize, text_bytes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.db");
    let started = Instant::now();
    fill_large_db(&path, feeds, entries, text_bytes);
    println!(
        "large database: {entries} entries over {HISTORY_DAYS} days, {feeds} feeds, filled in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let conn = Connection::open(&path).unwrap();
    let file_bytes = std::fs::metadata(&path).unwrap().len() as f64;
    println!(
        "  database file: {:.1} MB, {:.0} bytes per entry ({text_bytes} bytes of text per entry)",
        file_bytes / 1e6,
        file_bytes / entries as f64
    );
    let mut by_object = conn
        .prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 8")
        .unwrap();
    for row in by_object
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap()
    {
        let (name, bytes) = row.unwrap();
        println!(
            "    {name:<40} {:8.1} MB  {:6.0} bytes per entry",
            bytes as f64 / 1e6,
            bytes as f64 / entries as f64
        );
    }

    drop(by_object);
    // What `--tag` or `--feed` picks: every tenth feed, from one that names Nvidia (the fill
    // gives each feed a tenth of the companies, the same for feeds ten apart).
    let tenth = FeedSet::new(
        conn.prepare(
            "SELECT id FROM feeds WHERE (id - (
                 SELECT min(e.feed_id) FROM mentions m JOIN entries e ON e.id = m.entry_id
                 WHERE m.company_id = (SELECT id FROM companies WHERE name = 'Nvidia'))) % 10 = 0",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap),
    );
    drop(conn);

    let store = Store::open(&path).unwrap();
    let company = "Nvidia";
    let since = Utc::now() - chrono::Duration::days(SINCE_DAYS);
    println!("  EXPLAIN QUERY PLAN of flagged_stories(Some(\"Nvidia\"), since {SINCE_DAYS} days):");
    for step in store
        .flagged_stories_plan(Some("Nvidia"), Some(since))
        .unwrap()
    {
        println!("    {step}");
    }
    for (label, company, since, feeds, limit) in [
        (
            "--company Nvidia --since 7d (limit 50)",
            Some(company),
            Some(since),
            None,
            50,
        ),
        (
            "--company Nvidia --since 7d (limit 1000)",
            Some(company),
            Some(since),
            None,
            1000,
        ),
        (
            "--company Nvidia --since 7d, 1/10 of feeds",
            Some(company),
            Some(since),
            Some(&tenth),
            50,
        ),
        (
            "--since 7d, every company (limit 50)",
            None,
            Some(since),
            None,
            50,
        ),
        (
            "--since 7d, every company, 1/10 of feeds",
            None,
            Some(since),
            Some(&tenth),
            50,
        ),
        (
            "--company Nvidia, no --since (limit 50)",
            Some(company),
            None,
            None,
            50,
        ),
        ("every company, no --since (limit 50)", None, None, None, 50),
        (
            "every company, no --since, 1/10 of feeds",
            None,
            None,
            Some(&tenth),
            50,
        ),
    ] {
        let (found, times) = first_and_median(|| {
            let stories = store.flagged_stories(company, since, None, feeds, Some(limit));
            stories.unwrap().len()
        });
        println!("  flagged_stories {label:<42} {found:>5} stories: {times}");
    }
    // What `feedhound companies` reads: the period, then the one as long before it.
    for (label, days, feeds) in [
        ("--since 7d", SINCE_DAYS, None),
        ("--since 7d, 1/10 of feeds", SINCE_DAYS, Some(&tenth)),
        ("--since 182d", HISTORY_DAYS / 2, None),
    ] {
        let span = chrono::Duration::days(days);
        let since = Utc::now() - span;
        let (companies, times) = first_and_median(|| {
            let companies = store.company_activity(since, None, feeds).unwrap().len();
            store
                .company_activity(since - span, Some(since), feeds)
                .unwrap();
            companies
        });
        println!("  companies {label:<50} {companies:>5} companies: {times}");
    }
    // What `feedhound companies --by` reads: the period's stories per company and span.
    // In a zone other than UTC, each story's day is worked out in Rust (`local_date`).
    let new_york = Tz::America__New_York;
    for (label, span, zone, days) in [
        ("--by day (14 days)", Span::Day, Tz::UTC, 14),
        (
            "--by week --since 182d",
            Span::Week,
            Tz::UTC,
            HISTORY_DAYS / 2,
        ),
        (
            "--by week --since 182d, America/New_York",
            Span::Week,
            new_york,
            HISTORY_DAYS / 2,
        ),
    ] {
        let since = Utc::now() - chrono::Duration::days(days);
        let (counts, times) = first_and_median(|| {
            store
                .company_stories_by(span, zone, since, None, None)
                .unwrap()
                .len()
        });
        println!("  companies {label:<50} {counts:>5} counts: {times}");
    }
    drop(store);
    readme_query(&path, company);
}

/// README's "What mentioned Xiaomi this week" query, as a user runs it in `sqlite3`, for
/// `company`: its plan and time.
fn readme_query(path: &Path, company: &str) {
    let readme = include_str!("../README.md");
    let start = readme
        .find("-- What mentioned Xiaomi this week")
        .expect("README keeps the query");
    let end = start + readme[start..].find(';').expect("the query ends with ;");
    let sql = readme[start..end].replace("'Xiaomi'", &format!("'{company}'"));
    let conn = Connection::open(path).unwrap();
    println!(
        "  EXPLAIN QUERY PLAN of README's one-company query (story_companies), for {company}:"
    );
    let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    for detail in plan.query_map([], |r| r.get::<_, String>(3)).unwrap() {
        println!("    {}", detail.unwrap());
    }
    let (rows, times) = first_and_median(|| {
        let mut query = conn.prepare(&sql).unwrap();
        query.query_map([], |_| Ok(())).unwrap().count()
    });
    println!("  README query, {company}, this week {rows:>5} stories: {times}");
}

/// Runs `query` once, then 9 more times: how many rows the first run found, and its time and
/// the median of the others, as "first … ms, median of 9 … ms".
fn first_and_median(mut query: impl FnMut() -> usize) -> (usize, String) {
    let mut timed = || {
        let started = Instant::now();
        let found = query();
        (started.elapsed(), found)
    };
    let (first, found) = timed();
    let mut times: Vec<Duration> = (0..9).map(|_| timed().0).collect();
    times.sort();
    let ms = |time: Duration| time.as_secs_f64() * 1e3;
    (
        found,
        format!(
            "first {:7.2} ms, median of 9 {:7.2} ms",
            ms(first),
            ms(times[4])
        ),
    )
}

fn main() {
    let feeds = env_or("FEEDHOUND_BENCH_FEEDS", 1000);
    let per_feed = env_or("FEEDHOUND_BENCH_ENTRIES", 50);
    let text_bytes = env_or("FEEDHOUND_BENCH_TEXT_BYTES", 1200);
    let large = env_or("FEEDHOUND_BENCH_DB_ENTRIES", 1_000_000);
    bench_upserts(feeds, per_feed, text_bytes);
    if large > 0 {
        bench_mentions_query(large, feeds, text_bytes);
    }
}
