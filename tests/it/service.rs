//! Running it like a service: full-text search, retention, and the metrics/health endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use feedhound::metrics::{FetchOutcome, Metrics};
use feedhound::server::{self, Service};
use feedhound::store::writer::{StoreWriter, WhenIdle};
use feedhound::store::{SearchQuery, Store};
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    App, FeedServer, Route, article_page, fetch_articles_of, html, rss, wait_until,
};

fn item(guid: &str, title: &str, body: &str, published: &str) -> String {
    format!(
        "<guid isPermaLink=\"false\">{guid}</guid><title>{title}</title><link>https://news.example/{guid}</link><description>{body}</description><pubDate>{published}</pubDate>"
    )
}

/// A publication date `days` before now: recent for `retain` and ordered as search expects,
/// whenever the tests run.
fn days_ago(days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc2822()
}

const OLD: &str = "Wed, 01 Jan 2020 10:00:00 GMT";

fn search(app: &App, text: &str) -> Vec<String> {
    let mut store = Store::open(&app.db_path()).unwrap();
    store
        .search(&SearchQuery {
            text: text.into(),
            company: None,
            since: None,
            until: None,
            feeds: None,
            limit: 10,
        })
        .unwrap()
        .into_iter()
        .map(|hit| hit.title.unwrap_or_default())
        .collect()
}

/// FTS5's own check that the index, once caught up, matches the `entries` table it indexes
/// (rank 1: compare with the external content table, not only the index's own structure).
fn assert_index_in_sync(app: &App) {
    Store::open(&app.db_path())
        .unwrap()
        .catch_up_search_index()
        .unwrap();
    app.db()
        .execute(
            "INSERT INTO entries_fts (entries_fts, rank) VALUES ('integrity-check', 1)",
            [],
        )
        .expect("the search index matches the entries table");
}

#[tokio::test]
async fn search_finds_a_word_of_an_entry_body_and_follows_edits_and_deletions() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&[
            &item(
                "a1",
                "Airships",
                "A zeppelin landed in the harbour.",
                &days_ago(1),
            ),
            &item("a2", "Weather", "Sunny all week.", &days_ago(1)),
        ]),
    );
    let app = App::new(&[server.url("a.xml")], "");
    assert_eq!(app.poll().await.entries_new, 2);
    assert_eq!(search(&app, "zeppelin"), ["Airships"]);
    assert_index_in_sync(&app);

    server.feed(
        "a.xml",
        rss(&[
            &item(
                "a1",
                "Airships",
                "A dirigible landed in the harbour.",
                &days_ago(1),
            ),
            &item("a2", "Weather", "Sunny all week.", &days_ago(1)),
        ]),
    );
    assert_eq!(app.poll().await.entries_updated, 1);
    assert!(search(&app, "zeppelin").is_empty());
    assert_eq!(search(&app, "dirigible"), ["Airships"]);
    assert_index_in_sync(&app);

    app.db()
        .execute("DELETE FROM entries WHERE guid = 'a1'", [])
        .unwrap();
    assert!(search(&app, "dirigible").is_empty());
    assert_eq!(search(&app, "sunny"), ["Weather"]);
    assert_index_in_sync(&app);
}

#[tokio::test]
async fn search_command_prints_json_hits_and_explains_a_malformed_query() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&[
            &item("a1", "Older", "Harbour cranes idle.", &days_ago(2)),
            &item("a2", "Newer", "Harbour cranes busy again.", &days_ago(1)),
        ]),
    );
    let app = App::new(&[server.url("a.xml")], "");
    app.poll().await;
    let output = app.cli(&["search", "cranes", "--format", "json"]);
    assert!(output.status.success(), "{output:?}");
    let hits: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let titles: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Newer", "Older"], "newest first");
    assert!(
        hits[0]["snippet"].as_str().unwrap().contains("**cranes**"),
        "{hits}"
    );
    assert_eq!(hits[0]["link"], "https://news.example/a2");

    let output = app.cli(&["search", "\"unbalanced"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot read the search query"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn a_company_taken_out_of_the_config_keeps_its_old_entries_through_a_prune_and_flags_them_again_when_back()
 {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&[
            &item("acme", "Acme history", "Acme was founded.", OLD),
            &item("globex", "Globex history", "Globex was founded.", OLD),
        ]),
    );
    let companies = |names: &[&str]| -> String {
        names
            .iter()
            .map(|name| format!("\n[[company]]\nname = \"{name}\"\n"))
            .collect()
    };
    let with_retention = |app: &App, feeds: &[String], names: &[&str]| {
        app.write_config(feeds, &companies(names));
        let text = std::fs::read_to_string(&app.config_path)
            .unwrap()
            .replace("[storage]\n", "[storage]\nretain = \"180d\"\n");
        std::fs::write(&app.config_path, text).unwrap();
    };
    let feeds = [server.url("a.xml")];
    let app = App::new(&feeds, "");
    with_retention(&app, &feeds, &["Acme", "Globex"]);
    assert_eq!(app.poll().await.entries_new, 2);

    // Globex is taken out for a while; a prune by hand re-matches with the new rules first.
    with_retention(&app, &feeds, &["Acme"]);
    let prune = app.cli(&["prune", "--format", "json"]);
    assert!(prune.status.success(), "{prune:?}");
    let report: serde_json::Value = serde_json::from_slice(&prune.stdout).unwrap();
    assert_eq!(report["prune"]["entries"], 0, "{report}");
    assert_eq!(app.count("SELECT count(*) FROM entries"), 2);
    assert_eq!(app.count("SELECT count(*) FROM story_companies"), 1);

    // Back in the config: the next poll syncs the companies and re-matches.
    with_retention(&app, &feeds, &["Acme", "Globex"]);
    app.poll().await;
    let mentions = app.cli(&["mentions", "--company", "Globex", "--format", "json"]);
    assert!(mentions.status.success(), "{mentions:?}");
    let flagged: serde_json::Value = serde_json::from_slice(&mentions.stdout).unwrap();
    assert_eq!(flagged[0]["title"], "Globex history", "{flagged}");
}

/// `prune` prints its cutoff on the reports' clock, naming the zone unless UTC.
#[test]
fn prune_prints_its_cutoff_on_the_reports_clock() {
    let app = App::new(&[], "");
    assert!(app.cli(&["poll"]).status.success(), "creates the database");
    let cutoff = |args: &[&str], zone: &str| {
        let pruned = app.cli(&[&["prune", "--dry-run", "--retain", "180d"][..], args].concat());
        let printed = String::from_utf8_lossy(&pruned.stdout).into_owned();
        let (_, after) = printed
            .split_once(" older than ")
            .unwrap_or_else(|| panic!("{pruned:?}"));
        let (time, rest) = after.split_at(19);
        assert!(rest.starts_with(zone), "{printed}");
        chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S").unwrap()
    };
    let on_utc = cutoff(&[], " (kept");
    let in_tokyo = cutoff(&["--time-zone", "Asia/Tokyo"], " (Asia/Tokyo) (kept");
    // Two runs a moment apart: their cutoffs differ by that moment, plus Tokyo's 9 hours.
    let ahead = in_tokyo - on_utc - chrono::Duration::hours(9);
    assert!(
        ahead.num_seconds().abs() < 60,
        "{on_utc} against {in_tokyo}"
    );
}

#[tokio::test]
async fn prune_deletes_old_unflagged_entries_skips_them_while_served_and_then_forgets_their_keys() {
    let server = FeedServer::start();
    let old_plain = item("old", "Old news", "Nothing to see.", OLD);
    let old_flagged = item("flagged", "Acme history", "Acme was founded.", OLD);
    let recent = item("recent", "Today", "Fresh.", &days_ago(1));
    server.feed("a.xml", rss(&[&old_plain, &old_flagged, &recent]));
    let app = App::new(&[server.url("a.xml")], "\n[[company]]\nname = \"Acme\"\n");
    // `[storage]` is written by the helper; retention goes into it.
    let text = std::fs::read_to_string(&app.config_path)
        .unwrap()
        .replace("[storage]\n", "[storage]\nretain = \"180d\"\n");
    std::fs::write(&app.config_path, text).unwrap();
    assert_eq!(app.poll().await.entries_new, 3);

    let dry = app.cli(&["prune", "--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    let printed = String::from_utf8_lossy(&dry.stdout);
    assert!(
        printed.starts_with("would delete 1 entries and 1 stories"),
        "{printed}"
    );
    assert!(
        printed.contains("kept 1 old entries that mention a company"),
        "{printed}"
    );
    assert_eq!(app.count("SELECT count(*) FROM entries"), 3);

    let real = app.cli(&["prune", "--format", "json"]);
    assert!(real.status.success(), "{real:?}");
    let report: serde_json::Value = serde_json::from_slice(&real.stdout).unwrap();
    assert_eq!(report["prune"]["entries"], 1);
    assert_eq!(report["prune"]["feeds"][0]["entries"], 1);
    let guids = |app: &App| -> Vec<String> {
        app.db()
            .prepare("SELECT guid FROM entries ORDER BY guid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(guids(&app), ["flagged", "recent"]);

    // The publisher still serves the old item, next to a new one: only the new one is stored.
    let newest = item("newest", "Tomorrow", "Fresher.", &days_ago(0));
    server.feed("a.xml", rss(&[&old_plain, &old_flagged, &recent, &newest]));
    let summary = app.poll().await;
    assert_eq!(
        (summary.entries_new, summary.entries_updated),
        (1, 0),
        "{summary}"
    );
    assert_eq!(guids(&app), ["flagged", "newest", "recent"]);
    assert_index_in_sync(&app);

    // Its key is forgotten only when the feed's documents have lacked it for `retain`. The
    // marks a poll sets are aged by hand (200 days back) before each prune.
    let age_and_prune = |app: &App| -> String {
        app.db()
            .execute(
                "UPDATE tombstones SET absent_since = datetime('now', '-200 days')
                 WHERE absent_since IS NOT NULL",
                [],
            )
            .unwrap();
        let prune = app.cli(&["prune"]);
        assert!(prune.status.success(), "{prune:?}");
        String::from_utf8_lossy(&prune.stdout).into_owned()
    };
    let without_old = rss(&[&old_flagged, &recent, &newest]);
    // A document lacking it once, then the full one again: nothing is forgotten.
    server.feed("a.xml", without_old.clone());
    app.poll().await;
    server.feed("a.xml", rss(&[&old_plain, &old_flagged, &recent, &newest]));
    app.poll().await;
    let printed = age_and_prune(&app);
    assert!(!printed.contains("forgot"), "{printed}");
    assert_eq!(app.count("SELECT count(*) FROM tombstones"), 1);
    // Dropped for good.
    server.feed("a.xml", without_old);
    app.poll().await;
    let printed = age_and_prune(&app);
    assert!(
        printed.contains("forgot the keys of 1 deleted entries that their feeds no longer serve"),
        "{printed}"
    );
    assert_eq!(app.count("SELECT count(*) FROM tombstones"), 0);
}

#[tokio::test]
async fn the_tombstones_of_a_feed_removed_from_the_config_are_forgotten_unless_it_comes_back() {
    let server = FeedServer::start();
    let url = |name: &str| server.url(&format!("{name}.xml"));
    for name in ["kept", "removed", "readded"] {
        server.feed(
            &format!("{name}.xml"),
            rss(&[&item(name, name, "Old.", OLD)]),
        );
    }
    // Two years old: outlives a first prune that keeps 1000 days, not the second.
    server.feed(
        "late.xml",
        rss(&[&item("late", "late", "Old.", &days_ago(730))]),
    );
    let app = App::new(&[], "");
    let configure = |feeds: &[&str]| {
        let urls: Vec<String> = feeds.iter().map(|name| url(name)).collect();
        app.write_config(&urls, "");
        let text = std::fs::read_to_string(&app.config_path).unwrap();
        let text = text.replace("[storage]\n", "[storage]\nretain = \"180d\"\n");
        std::fs::write(&app.config_path, text).unwrap();
    };
    let prune = |args: &[&str]| {
        let pruned = app.cli(&[&["prune"], args].concat());
        assert!(pruned.status.success(), "{pruned:?}");
        String::from_utf8_lossy(&pruned.stdout).into_owned()
    };
    configure(&["kept", "removed", "readded", "late"]);
    app.poll().await;
    prune(&["--retain", "1000d"]);
    assert_eq!(app.count("SELECT count(*) FROM tombstones"), 3);

    // Removed with a tombstone, or removed and then pruned: both are absent from now on.
    configure(&["kept"]);
    app.poll().await;
    prune(&[]);
    assert_eq!(
        app.count("SELECT count(*) FROM tombstones WHERE absent_since IS NOT NULL"),
        3,
        "removed, readded and late are marked; kept still serves its key"
    );
    // Added back, and its document unchanged: nothing tells which keys it still serves.
    configure(&["kept", "readded"]);
    app.poll().await;

    // Every mark a year past the retention period.
    app.db()
        .execute(
            "UPDATE tombstones SET absent_since = datetime('now', '-365 days')
             WHERE absent_since IS NOT NULL",
            [],
        )
        .unwrap();
    let printed = prune(&[]);
    assert!(
        printed.contains("forgot the keys of 2 deleted entries"),
        "{printed}"
    );
    let mut left: Vec<String> = app
        .db()
        .prepare("SELECT f.url FROM tombstones t JOIN feeds f ON f.id = t.feed_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    left.sort();
    assert_eq!(left, [url("kept"), url("readded")]);
}

#[tokio::test]
async fn a_dry_run_prune_writes_nothing_even_with_a_config_that_lacks_feeds() {
    let server = FeedServer::start();
    let feeds = [server.url("a.xml"), server.url("b.xml")];
    for name in ["a.xml", "b.xml"] {
        server.feed(name, rss(&[&item(name, name, "Old.", OLD)]));
    }
    let app = App::new(&feeds, "");
    app.poll().await;
    app.write_config(&feeds[..1], "");
    let dry = app.cli(&["prune", "--dry-run", "--retain", "180d"]);
    assert!(dry.status.success(), "{dry:?}");
    assert!(
        String::from_utf8_lossy(&dry.stdout).starts_with("would delete 2 entries"),
        "{dry:?}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM feeds WHERE active = 1"),
        2,
        "the config's feed list is not applied by a dry run"
    );
}

/// A running endpoint over a fresh database; stopped by `stop`.
struct Endpoint {
    base: String,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    writer_thread: feedhound::store::writer::WriterThread,
}

impl Endpoint {
    async fn start(app: &App, heartbeat_stale_after: Duration) -> Endpoint {
        let store = feedhound::scheduler::open_store(&app.config()).unwrap();
        let (writer, writer_thread) = StoreWriter::spawn(store, WhenIdle::Wait).unwrap();
        let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let metrics = Arc::new(Metrics::new());
        let shutdown = CancellationToken::new();
        let service = Service {
            metrics: Arc::clone(&metrics),
            writer,
            database: app.db_path(),
            heartbeat_stale_after,
            database_timeout: Duration::from_secs(2),
        };
        let task = tokio::spawn(server::run(listener, service, shutdown.clone()));
        Endpoint {
            base,
            metrics,
            shutdown,
            task,
            writer_thread,
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the server stops on shutdown")
            .unwrap();
        self.writer_thread.join().unwrap();
    }
}

#[tokio::test]
async fn prune_by_hand_rematches_changed_company_rules_before_deleting() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&[&item("old", "Globex history", "Globex was founded.", OLD)]),
    );
    let urls = [server.url("a.xml")];
    let configure = |app: &App, companies: &str| {
        app.write_config(&urls, companies);
        let text = std::fs::read_to_string(&app.config_path)
            .unwrap()
            .replace("[storage]\n", "[storage]\nretain = \"180d\"\n");
        std::fs::write(&app.config_path, text).unwrap();
    };
    let acme = "\n[[company]]\nname = \"Acme\"\n";
    let app = App::new(&urls, "");
    configure(&app, acme);
    assert_eq!(app.poll().await.entries_new, 1);
    // Globex becomes tracked: the old entry is now flagged, though no mention is stored yet.
    configure(&app, &format!("{acme}\n[[company]]\nname = \"Globex\"\n"));

    let dry = app.cli(&["prune", "--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    let warning = String::from_utf8_lossy(&dry.stderr);
    assert!(
        warning.contains("matched with other company rules"),
        "{warning}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM mentions"),
        0,
        "a dry run writes nothing"
    );

    let real = app.cli(&["prune", "--format", "json"]);
    assert!(real.status.success(), "{real:?}");
    let said = String::from_utf8_lossy(&real.stderr);
    assert!(said.contains("re-matched 1 entries"), "{said}");
    let report: serde_json::Value = serde_json::from_slice(&real.stdout).unwrap();
    assert_eq!(report["prune"]["entries"], 0, "{report}");
    assert_eq!(
        app.count(
            "SELECT count(*) FROM entries e JOIN mentions m ON m.entry_id = e.id
             JOIN companies c ON c.id = m.company_id WHERE c.name = 'Globex'"
        ),
        1
    );
}

/// Parses the Prometheus text format strictly: every sample belongs to a family declared by
/// a `# TYPE` line before it, and parses as `name{label="value",...} number`.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "{name} declared twice"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "unexpected line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        let labels = &series[name.len()..];
        if !labels.is_empty() {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("bad labels in {line:?}"));
            for pair in inner.split(',') {
                let (key, quoted) = pair.split_once('=').expect("label=value");
                assert!(
                    key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                assert!(
                    quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'),
                    "{line}"
                );
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "{name} has no TYPE before it");
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{series} twice"
        );
    }
    samples
}

/// `/mentions.atom` serves `mentions --format atom` to a feed reader: every company's stories or
/// one's (by any of its names), a 304 while nothing changed and a new ETag once a story is
/// flagged, and a clear error for a wrong question.
#[tokio::test]
async fn the_endpoint_serves_the_flagged_stories_as_a_feed_a_reader_can_poll_politely() {
    let server = FeedServer::start();
    let xiaomi = item(
        "x1",
        "Xiaomi opens a store",
        "Xiaomi said so.",
        &days_ago(2),
    );
    let samsung = item(
        "s1",
        "Samsung ships a phone",
        "Samsung said so.",
        &days_ago(1),
    );
    let weather = item("w1", "Weather", "Sunny.", &days_ago(1));
    server.feed("a.xml", rss(&[&xiaomi, &samsung, &weather]));
    let companies = "[[company]]\nname = \"Xiaomi\"\naliases = [\"小米\"]\n\n[[company]]\nname = \"Samsung\"\n\
                     \n[[company]]\nname = \"Société Générale\"\n";
    let app = App::new(&[server.url("a.xml")], companies);
    app.poll().await;
    let endpoint = Endpoint::start(&app, Duration::from_secs(60)).await;
    let url = format!("{}/mentions.atom", endpoint.base);
    let titles = |body: &str| -> Vec<String> {
        let at = url::Url::parse(&url).unwrap();
        let feed = feedhound::parse::parse_feed(body.as_bytes(), None, &at).unwrap();
        feed.entries
            .iter()
            .filter_map(|e| e.title.clone())
            .collect()
    };
    let asking = |tag: &str| {
        reqwest::Client::new()
            .get(&url)
            .header("If-None-Match", tag)
            .send()
    };

    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/atom+xml; charset=utf-8"
    );
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let body = response.text().await.unwrap();
    assert_eq!(
        titles(&body),
        ["Samsung ships a phone", "Xiaomi opens a store"]
    );
    let command = app.cli(&["mentions", "--format", "atom"]);
    assert!(command.status.success(), "{command:?}");
    assert_eq!(body.as_bytes(), command.stdout, "what the command writes");

    for (tag, status) in [
        (etag.clone(), 304),
        (format!("W/{etag}"), 304),
        (format!("\"other\", {etag}"), 304),
        ("\"other\"".to_owned(), 200),
    ] {
        let again = asking(&tag).await.unwrap();
        assert_eq!(again.status(), status, "If-None-Match: {tag}");
        assert_eq!(again.headers()["etag"], etag.as_str());
    }
    // A new flagged story: the document and its ETag change.
    let car = item("x2", "Xiaomi ships a car", "Xiaomi again.", &days_ago(0));
    server.feed("a.xml", rss(&[&xiaomi, &samsung, &weather, &car]));
    app.poll().await;
    let changed = asking(&etag).await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"], etag.as_str());
    let (status, body) = endpoint.get("/mentions.atom?limit=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(titles(&body), ["Xiaomi ships a car"]);
    // A write under way (the daemon's, or a user's in sqlite3) holds no reader up.
    let writing = app.db();
    writing.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (status, body) = endpoint.get("/mentions.atom?limit=1").await;
    assert_eq!(status, 200, "{body}");
    writing.execute_batch("ROLLBACK").unwrap();

    let (status, body) = endpoint
        .get("/mentions.atom?company=%E5%B0%8F%E7%B1%B3")
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<title>feedhound: stories about Xiaomi</title>"),
        "{body}"
    );
    assert_eq!(
        titles(&body),
        ["Xiaomi ships a car", "Xiaomi opens a store"]
    );
    let (status, body) = endpoint.get("/mentions.atom?company=samsung").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<id>urn:feedhound:mentions:company=Samsung</id>"),
        "{body}"
    );

    // As `--company` reads it: any case or spacing, and é written as e and U+0301.
    let (status, body) = endpoint
        .get("/mentions.atom?company=SOCI%C3%89T%C3%89%20%20ge%CC%81ne%CC%81rale")
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<title>feedhound: stories about Société Générale</title>"),
        "{body}"
    );

    for (query, status, said) in [
        (
            "?company=Nokia",
            404,
            "no tracked company is named \"Nokia\"",
        ),
        ("?company=", 400, "company takes a tracked company's name"),
        ("?limit=0", 400, "limit takes a number from 1 to 500"),
        ("?limit=2&limit=3", 400, "limit is given twice"),
        ("?since=7d", 400, "unknown parameter \"since\""),
    ] {
        let (got, body) = endpoint.get(&format!("/mentions.atom{query}")).await;
        assert_eq!(
            (got, body.contains(said)),
            (status, true),
            "{query}: {body}"
        );
    }
    endpoint.stop().await;
}

#[tokio::test]
async fn metrics_report_recorded_activity_and_database_gauges() {
    let server = FeedServer::start();
    server.feed("ok.xml", rss(&[&item("a1", "One", "Body.", &days_ago(1))]));
    let app = App::new(&[server.url("ok.xml"), server.url("missing.xml")], "");
    let summary = app.poll().await;
    assert_eq!((summary.feeds_ok, summary.feeds_failed), (1, 1));
    let endpoint = Endpoint::start(&app, Duration::from_secs(60)).await;
    let metrics = &endpoint.metrics;
    metrics.record_fetch(FetchOutcome::Ok, Some(200), Duration::from_millis(30));
    metrics.record_fetch(FetchOutcome::Ok, Some(200), Duration::from_millis(700));
    metrics.record_fetch(
        FetchOutcome::NotModified,
        Some(304),
        Duration::from_millis(10),
    );
    metrics.record_fetch(FetchOutcome::Failed, Some(404), Duration::from_millis(10));
    metrics.record_fetch(FetchOutcome::Failed, None, Duration::from_secs(45));
    metrics.record_entries(5, 2);
    metrics.record_entries(1, 0);
    metrics.record_mentions(3);

    let (status, text) = endpoint.get("/metrics").await;
    assert_eq!(status, 200);
    let samples = parse_exposition(&text);
    let get = |series: &str| {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
    };
    assert_eq!(
        get(r#"feedhound_fetches_total{outcome="ok",status="2xx"}"#),
        2.0
    );
    assert_eq!(
        get(r#"feedhound_fetches_total{outcome="not_modified",status="3xx"}"#),
        1.0
    );
    assert_eq!(
        get(r#"feedhound_fetches_total{outcome="failed",status="4xx"}"#),
        1.0
    );
    assert_eq!(
        get(r#"feedhound_fetches_total{outcome="failed",status="none"}"#),
        1.0
    );
    assert_eq!(
        get(r#"feedhound_fetches_total{outcome="failed",status="5xx"}"#),
        0.0
    );
    assert_eq!(
        get(r#"feedhound_fetch_duration_seconds_bucket{le="0.05"}"#),
        3.0
    );
    assert_eq!(
        get(r#"feedhound_fetch_duration_seconds_bucket{le="1"}"#),
        4.0
    );
    assert_eq!(
        get(r#"feedhound_fetch_duration_seconds_bucket{le="30"}"#),
        4.0
    );
    assert_eq!(
        get(r#"feedhound_fetch_duration_seconds_bucket{le="+Inf"}"#),
        5.0
    );
    assert_eq!(get("feedhound_fetch_duration_seconds_count"), 5.0);
    assert!((get("feedhound_fetch_duration_seconds_sum") - 45.75).abs() < 1e-9);
    assert_eq!(get(r#"feedhound_entries_total{change="new"}"#), 6.0);
    assert_eq!(get(r#"feedhound_entries_total{change="updated"}"#), 2.0);
    assert_eq!(get("feedhound_mentions_total"), 3.0);
    // From the database: the poll above left one feed ok and the 404 one backing off.
    assert_eq!(get("feedhound_database_gauges_ok"), 1.0);
    assert_eq!(get(r#"feedhound_feeds{state="ok"}"#), 1.0);
    assert_eq!(get(r#"feedhound_feeds{state="backing_off"}"#), 1.0);
    assert_eq!(get("feedhound_outbox_pending"), 0.0);
    assert_eq!(get("feedhound_alert_targets_down"), 0.0);
    // The one-shot poll above left its new entry for the search index to take in later.
    assert_eq!(get("feedhound_search_backlog"), 1.0);
    assert_eq!(get("feedhound_search_index_damaged"), 0.0);
    let last_success = get("feedhound_last_success_timestamp_seconds");
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        (now - 120.0..=now + 1.0).contains(&last_success),
        "{last_success} vs {now}"
    );

    let (status, _) = endpoint.get("/nope").await;
    assert_eq!(status, 404);
    endpoint.stop().await;
}

#[tokio::test]
async fn healthz_needs_a_fresh_heartbeat_and_a_writable_database() {
    let app = App::new(&[], "");
    let endpoint = Endpoint::start(&app, Duration::from_millis(500)).await;
    let (status, body) = endpoint.get("/healthz").await;
    assert_eq!(status, 503);
    assert!(body.contains("has not started"), "{body}");

    endpoint.metrics.heartbeat();
    assert_eq!(endpoint.get("/healthz").await, (200, "ok\n".to_string()));

    // Another process holds the write lock: chmod would not stop root, a lock stops anyone.
    let other = app.db();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    endpoint.metrics.heartbeat();
    let (status, body) = endpoint.get("/healthz").await;
    assert_eq!(status, 503);
    assert!(body.contains("database is not writable"), "{body}");
    assert!(body.contains("locked"), "{body}");
    other.execute_batch("ROLLBACK").unwrap();
    endpoint.metrics.heartbeat();
    assert_eq!(endpoint.get("/healthz").await.0, 200);

    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, body) = endpoint.get("/healthz").await;
    assert_eq!(status, 503);
    assert!(body.contains("scheduler last reported"), "{body}");
    endpoint.stop().await;
}

#[test]
fn a_one_shot_poll_leaves_the_search_index_behind_and_the_daemon_brings_it_up_to_date() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Tugboat strike</title>"]),
    );
    let app = App::new(&[server.url("a.xml")], "");
    let not_indexed =
        "SELECT count(*) FROM entries e, search_state s WHERE e.id > s.indexed_through";
    let indexed = |word: &str| {
        app.count(&format!(
            "SELECT count(*) FROM entries_fts WHERE entries_fts MATCH '{word}'"
        ))
    };
    assert!(app.cli(&["poll"]).status.success());
    assert_eq!(
        app.count(not_indexed),
        1,
        "the poll stored without indexing"
    );
    assert_eq!(indexed("tugboat"), 0);

    // A feed new to the config: the daemon fetches it at once (the first is not due again yet).
    server.feed("b.xml", rss(&["<guid>1</guid><title>Ferry delays</title>"]));
    app.write_config(&[server.url("a.xml"), server.url("b.xml")], "");
    let daemon = app.spawn_daemon();
    wait_until(
        Duration::from_secs(10),
        "the daemon stored the new feed's entry",
        || app.try_count("SELECT count(*) FROM entries") == Some(2),
    );
    wait_until(
        Duration::from_secs(10),
        "the daemon indexed both entries, with no search asking",
        || app.try_count(not_indexed) == Some(0),
    );
    let (status, stderr) = daemon.stop(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    assert_eq!((indexed("tugboat"), indexed("ferry")), (1, 1));
    assert_index_in_sync(&app);
}

#[test]
fn the_daemons_metrics_count_a_real_poll() {
    let server = FeedServer::start();
    let (story, gone) = (server.url("story/ok"), server.url("story/gone"));
    server.feed(
        "a.xml",
        rss(&[
            &format!("<guid>1</guid><title>Samsung ships</title><link>{story}</link>"),
            &format!("<guid>2</guid><title>Weather</title><link>{gone}</link>"),
        ]),
    );
    server.set(
        "story/ok",
        html(article_page(
            "Samsung ships",
            "The phones left the plant on Monday.",
        )),
    );
    server.set(
        "story/gone",
        Route {
            status: 404,
            ..html(String::new())
        },
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = App::new(
        &[server.url("a.xml"), server.url("missing.xml")],
        &format!("\n[server]\nlisten = \"127.0.0.1:{port}\"\n\n[[company]]\nname = \"Samsung\"\n"),
    );
    fetch_articles_of(&app, &server.url("a.xml"));
    let daemon = app.spawn_daemon();
    wait_until(Duration::from_secs(10), "both feeds were fetched", || {
        app.try_count("SELECT count(*) FROM feeds WHERE last_fetch_at IS NOT NULL") == Some(2)
    });
    let scrape = || -> Option<String> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        std::io::Write::write_all(
            &mut stream,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .ok()?;
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response).ok()?;
        Some(response.split_once("\r\n\r\n")?.1.to_string())
    };
    let mut samples = HashMap::new();
    wait_until(
        Duration::from_secs(10),
        "the metrics show both fetches and both article pages",
        || {
            samples = scrape()
                .map(|body| parse_exposition(&body))
                .unwrap_or_default();
            samples.get(r#"feedhound_fetches_total{outcome="failed",status="4xx"}"#) == Some(&1.0)
                && samples.get(r#"feedhound_article_pages_total{outcome="given_up"}"#) == Some(&1.0)
                && samples.get(r#"feedhound_article_pages_total{outcome="read"}"#) == Some(&1.0)
                // Gauges are read before the counters: a scrape can fall between the two.
                && samples.get(r#"feedhound_article_pages{state="waiting"}"#) == Some(&0.0)
        },
    );
    let (status, stderr) = daemon.stop(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    assert_eq!(
        samples[r#"feedhound_fetches_total{outcome="ok",status="2xx"}"#],
        1.0
    );
    assert_eq!(samples[r#"feedhound_entries_total{change="new"}"#], 2.0);
    assert_eq!(samples["feedhound_mentions_total"], 1.0);
    assert_eq!(samples["feedhound_fetch_duration_seconds_count"], 2.0);
    assert_eq!(samples[r#"feedhound_feeds{state="ok"}"#], 1.0);
    assert_eq!(samples[r#"feedhound_feeds{state="backing_off"}"#], 1.0);
    for outcome in ["retrying", "rematched"] {
        let series = format!(r#"feedhound_article_pages_total{{outcome="{outcome}"}}"#);
        assert_eq!(samples[&series], 0.0);
    }
    assert_eq!(samples[r#"feedhound_article_pages{state="given_up"}"#], 1.0);
}

#[test]
fn the_daemon_tells_systemd_it_is_ready_and_pings_the_watchdog() {
    use std::os::unix::net::UnixDatagram;
    let server = FeedServer::start();
    server.feed("a.xml", rss(&["<guid>1</guid><title>One</title>"]));
    let app = App::new(&[server.url("a.xml")], "");
    let socket_path = app.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let child = crate::helpers::binary()
        .arg("--config")
        .arg(&app.config_path)
        .arg("run")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let daemon = crate::helpers::Daemon { child };
    let mut messages = Vec::new();
    let mut buffer = [0u8; 512];
    while !(messages.iter().any(|m: &String| m.contains("READY=1"))
        && messages.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2)
    {
        let n = socket
            .recv(&mut buffer)
            .expect("a notification within 10 s");
        messages.push(String::from_utf8_lossy(&buffer[..n]).to_string());
    }
    let (status, _) = daemon.stop(Duration::from_secs(10));
    assert!(status.success());
    assert!(
        messages[0].contains("READY=1"),
        "READY comes first: {messages:?}"
    );
}

/// The pid written into the database's daemon lock file, once one is.
fn lock_holder_pid(app: &App) -> Option<u32> {
    let lock = feedhound::daemon_lock::lock_path(&app.db_path());
    let holder: serde_json::Value = serde_json::from_slice(&std::fs::read(lock).ok()?).ok()?;
    holder["pid"].as_u64().map(|pid| pid as u32)
}

/// Until `daemon` holds the lock and has synced its config (it locks first).
fn wait_for_lock(app: &App, daemon: &crate::helpers::Daemon) {
    let pid = daemon.child.id();
    wait_until(Duration::from_secs(10), "the daemon holds the lock", || {
        lock_holder_pid(app) == Some(pid)
            && app.try_count("SELECT count(*) FROM feeds WHERE active = 1") == Some(1)
    });
}

/// An app serving a.xml (in its config) and b.xml, and `other.toml` in its folder: the same
/// database, b.xml only.
fn app_and_other_config(server: &FeedServer) -> (App, std::path::PathBuf) {
    server.feed("a.xml", rss(&["<guid>1</guid><title>One</title>"]));
    server.feed("b.xml", rss(&["<guid>2</guid><title>Two</title>"]));
    let app = App::new(&[server.url("a.xml")], "");
    let other = app.dir.path().join("other.toml");
    std::fs::write(
        &other,
        format!(
            "[storage]\npath = \"feedhound.db\"\n\n[[feed]]\nurl = \"{}\"\n",
            server.url("b.xml")
        ),
    )
    .unwrap();
    (app, other)
}

fn run_with(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    crate::helpers::binary()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

/// The daemon's feed a.xml is active and b.xml (from `other.toml`) unknown.
fn assert_only_the_daemons_feed(app: &App) {
    assert_eq!(
        app.count("SELECT count(*) FROM feeds WHERE active = 1 AND url LIKE '%/a.xml'"),
        1,
        "the daemon's feed stays active"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM feeds WHERE url LIKE '%/b.xml'"),
        0
    );
}

#[test]
fn a_second_daemon_on_the_same_database_refuses_to_start_and_a_killed_one_leaves_no_lock() {
    let server = FeedServer::start();
    let (app, other) = app_and_other_config(&server);
    let first = app.spawn_daemon();
    wait_for_lock(&app, &first);

    // `output()` would wait forever for a second daemon that started anyway: the timeout of
    // `wait_until` is the test's bound.
    let mut second = crate::helpers::binary()
        .arg("--config")
        .arg(&other)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_until(Duration::from_secs(10), "the second daemon exits", || {
        status = second.try_wait().unwrap();
        status.is_some()
    });
    let stderr = std::io::read_to_string(second.stderr.take().unwrap()).unwrap();
    assert!(!status.unwrap().success(), "{stderr}");
    assert!(
        stderr.contains(&format!("a feedhound daemon (pid {}", first.child.id()))
            && stderr.contains("stop it first"),
        "{stderr}"
    );
    assert_eq!(lock_holder_pid(&app), Some(first.child.id()));
    assert_only_the_daemons_feed(&app);
    assert!(server.requests("b.xml").is_empty());

    // The demo writes its own config and database into the folder it is given.
    let config_before = std::fs::read_to_string(&app.config_path).unwrap();
    let demo = crate::helpers::binary()
        .arg("demo")
        .arg("--dir")
        .arg(app.dir.path())
        .output()
        .unwrap();
    assert!(!demo.status.success());
    assert!(String::from_utf8_lossy(&demo.stderr).contains("choose another folder"));
    assert_eq!(
        std::fs::read_to_string(&app.config_path).unwrap(),
        config_before
    );

    // SIGKILL gives no chance to clean up; the kernel still lets go of the lock.
    first.kill_hard();
    let third = app.spawn_daemon();
    wait_for_lock(&app, &third);
    let (status, stderr) = third.stop(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_command_syncing_another_config_is_refused_beside_the_daemon_and_its_own_config_is_not() {
    let server = FeedServer::start();
    let (app, other) = app_and_other_config(&server);
    let daemon = app.spawn_daemon();
    wait_for_lock(&app, &daemon);
    let daemons_config = std::fs::canonicalize(&app.config_path).unwrap();

    for command in [
        ["poll"].as_slice(),
        &["rescan"],
        &["prune", "--retain", "1d"],
    ] {
        let refused = run_with(&other, command);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{command:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "run it with --config {}",
                daemons_config.display()
            )),
            "{command:?}: {stderr}"
        );
    }
    assert!(server.requests("b.xml").is_empty());
    assert_only_the_daemons_feed(&app);

    let beside = run_with(&app.config_path, &["poll"]);
    assert!(
        beside.status.success(),
        "{}",
        String::from_utf8_lossy(&beside.stderr)
    );

    let (status, stderr) = daemon.stop(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    let after = run_with(&other, &["poll"]);
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    assert_eq!(server.requests("b.xml").len(), 1);
}
