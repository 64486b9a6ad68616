//! The database under abuse: the real daemon SIGKILLed at random moments while it writes,
//! backups taken while it writes, other processes holding read and write locks, and a full or
//! read-only disk.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use feedhound::scheduler;
use tokio_util::sync::CancellationToken;

use crate::helpers::{App, FeedServer, Route, rss, wait_until};

// ---------------------------------------------------------------------------------------------
// Crash test
// ---------------------------------------------------------------------------------------------

const FEEDS: usize = 30;
const FIRST_ENTRIES: usize = 20;

/// Feed `feed` at `generation`: `FIRST_ENTRIES + generation` entries (one more per generation,
/// none ever dropped, so every entry served is still served at the end), entry 0 re-edited
/// every generation, every seventh entry mentioning a tracked company.
fn corpus_feed(feed: usize, generation: usize) -> String {
    let items: Vec<String> = (0..FIRST_ENTRIES + generation)
        .map(|entry| {
            let title = if entry == 0 {
                format!("Feed {feed} headline, edition {generation}")
            } else {
                format!("Feed {feed} story {entry}")
            };
            let body = if entry % 7 == 0 {
                "Xiaomi reports record sales."
            } else {
                "Nothing to see."
            };
            format!(
                "<guid>f{feed}-e{entry}</guid><title>{title}</title>\
                 <link>https://news.example/{feed}/{entry}</link><description>{body}</description>"
            )
        })
        .collect();
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    rss(&items)
}

/// Serves the `FEEDS` corpus feeds at generation 0 and an app polling them every 200 ms, with
/// `extra` TOML appended to its config.
fn corpus_app(server: &FeedServer, extra: &str) -> App {
    for feed in 0..FEEDS {
        server.feed(&format!("f{feed}.xml"), corpus_feed(feed, 0));
    }
    let urls: Vec<String> = (0..FEEDS)
        .map(|feed| server.url(&format!("f{feed}.xml")))
        .collect();
    App::with_polling(
        &urls,
        "interval = \"200ms\"\nmin_interval = \"200ms\"",
        extra,
    )
}

fn rounds() -> usize {
    std::env::var("FEEDHOUND_CRASH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50)
}

/// Run with `FEEDHOUND_CRASH_ROUNDS=500 cargo test --test it crash::` for the long tier.
#[test]
fn sigkill_at_random_moments_loses_nothing_and_stores_nothing_twice() {
    let rounds = rounds();
    let seed = std::env::var("FEEDHOUND_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_F00D_u64);
    let mut rng = fastrand::Rng::with_seed(seed);
    let server = Arc::new(FeedServer::start());
    server.set("hook", Route::webhook(200));
    let generations = Arc::new(Mutex::new(vec![0usize; FEEDS]));
    let app = corpus_app(
        &server,
        &format!(
            "\n[[company]]\nname = \"Xiaomi\"\n\n[[notify]]\nbacklog = true\nname = \"hook\"\nurl = \"{}\"\nretry_delay = \"100ms\"\n",
            server.url("hook")
        ),
    );
    // The server changes one feed every 50 ms while the daemon is killed and restarted, then
    // stops changing for the last fifth of the rounds: the final content must be stored even
    // if a crash ever committed a feed's validators without its entries (a 304 would hide it).
    let mutating = Arc::new(AtomicBool::new(true));
    let mutator = {
        let (server, generations, mutating) = (
            Arc::clone(&server),
            Arc::clone(&generations),
            Arc::clone(&mutating),
        );
        std::thread::spawn(move || {
            let mut tick = 0usize;
            while mutating.load(Ordering::SeqCst) {
                let feed = tick % FEEDS;
                let generation = {
                    let mut generations = generations.lock().unwrap();
                    generations[feed] += 1;
                    generations[feed]
                };
                server.feed(&format!("f{feed}.xml"), corpus_feed(feed, generation));
                tick += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let started = Instant::now();
    let mut kills = 0;
    for round in 0..rounds {
        if round == rounds * 4 / 5 {
            mutating.store(false, Ordering::SeqCst);
        }
        let daemon = app.spawn_daemon();
        std::thread::sleep(Duration::from_millis(rng.u64(50..=400)));
        daemon.kill_hard();
        kills += 1;
    }
    mutating.store(false, Ordering::SeqCst);
    mutator.join().unwrap();
    let crashing = started.elapsed();
    // Settle: one clean pass through the real binary, which also delivers due alerts.
    let output = app.cli(&["poll"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let db = app.db();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let stored: Vec<(String, String, i64)> = db
        .prepare(
            "SELECT e.guid, e.title, f.id FROM entries e JOIN feeds f ON f.id = e.feed_id ORDER BY e.id",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut seen = HashSet::new();
    for (guid, _, feed_id) in &stored {
        assert!(
            seen.insert((guid.clone(), *feed_id)),
            "{guid} stored twice for feed {feed_id}"
        );
    }
    let titles: HashMap<&str, &str> = stored
        .iter()
        .map(|(guid, title, _)| (guid.as_str(), title.as_str()))
        .collect();
    let generations = generations.lock().unwrap().clone();
    let mut served = 0;
    let mut flaggable = 0;
    for (feed, &generation) in generations.iter().enumerate() {
        for entry in 0..FIRST_ENTRIES + generation {
            served += 1;
            flaggable += usize::from(entry % 7 == 0);
            let guid = format!("f{feed}-e{entry}");
            let title = titles
                .get(guid.as_str())
                .unwrap_or_else(|| panic!("{guid} was served but is not stored"));
            if entry == 0 {
                assert_eq!(
                    *title,
                    format!("Feed {feed} headline, edition {generation}"),
                    "the last edit is stored"
                );
            }
        }
    }
    assert_eq!(
        stored.len(),
        served,
        "nothing but what was served is stored"
    );
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM flagged_stories") as usize,
        flaggable
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM flagged_stories s JOIN outbox o ON o.story_id = s.story_id AND o.target = 'hook'"
        ) as usize,
        flaggable,
        "every flagged story has its alert queued"
    );
    assert_eq!(
        count("SELECT count(*) FROM outbox WHERE delivered_at IS NULL"),
        0,
        "and delivered after the settle run"
    );
    let posts = server.requests("hook").len();
    assert!(
        posts >= flaggable,
        "{posts} webhook posts for {flaggable} alerts"
    );
    println!(
        "crash test: seed {seed:#x}, {rounds} rounds, {kills} SIGKILLs in {crashing:?}; \
         {served} entries served and stored once each, {flaggable} alerts ({posts} posts, \
         duplicates from kills between POST and commit are allowed: at least once); \
         generations per feed {generations:?}; total {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Backups
// ---------------------------------------------------------------------------------------------

#[test]
fn backups_taken_while_the_daemon_writes_are_whole_snapshots_feedhound_runs_on() {
    let server = Arc::new(FeedServer::start());
    let app = corpus_app(&server, "\n[[company]]\nname = \"Xiaomi\"\n");
    let daemon = app.spawn_daemon();
    let first = (FEEDS * FIRST_ENTRIES) as i64;
    wait_until(Duration::from_secs(30), "every feed is stored", || {
        app.try_count("SELECT count(*) FROM entries") >= Some(first)
    });
    // A new entry somewhere every 20 ms, so the daemon commits while the copies are made.
    let mutating = Arc::new(AtomicBool::new(true));
    let mutator = {
        let (server, mutating) = (Arc::clone(&server), Arc::clone(&mutating));
        std::thread::spawn(move || {
            let mut tick = 0usize;
            while mutating.load(Ordering::SeqCst) {
                let feed = tick % FEEDS;
                server.feed(&format!("f{feed}.xml"), corpus_feed(feed, tick / FEEDS + 1));
                tick += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let folder = tempfile::tempdir().unwrap();
    let mut copies = Vec::new();
    for n in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        let copy = folder.path().join(format!("copy-{n}.db"));
        let output = app.cli(&["backup", copy.to_str().unwrap()]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let said = String::from_utf8_lossy(&output.stdout);
        assert!(said.contains(", checked"), "{said}");
        copies.push(copy);
    }
    let mut names: Vec<String> = std::fs::read_dir(folder.path())
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["copy-0.db", "copy-1.db", "copy-2.db"]);
    let largest_copy = copies
        .iter()
        .map(|copy| count_in(copy, "SELECT count(*) FROM entries"))
        .max()
        .unwrap();
    wait_until(
        Duration::from_secs(30),
        "the daemon stores entries newer than every copy",
        || app.try_count("SELECT count(*) FROM entries") > Some(largest_copy),
    );
    mutating.store(false, Ordering::SeqCst);
    mutator.join().unwrap();
    let (status, stderr) = daemon.stop(Duration::from_secs(15));
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");

    for copy in &copies {
        assert_eq!(integrity(copy), "ok", "{}", copy.display());
        assert_eq!(
            count_in(copy, "SELECT count(*) FROM pragma_foreign_key_check"),
            0
        );
        assert!(count_in(copy, "SELECT count(*) FROM entries") >= first);
        // One snapshot: each feed's entries are 0..n without a hole (a document is committed
        // whole), and every entry naming Xiaomi has its mention (written in the same commit).
        assert_eq!(
            count_in(
                copy,
                "SELECT count(*) FROM (SELECT feed_id, count(*) AS n,
                        max(CAST(substr(guid, instr(guid, '-e') + 2) AS INTEGER)) AS last
                 FROM entries GROUP BY feed_id) WHERE n != last + 1"
            ),
            0,
            "{}",
            copy.display()
        );
        assert_eq!(
            count_in(
                copy,
                "SELECT count(*) FROM entries
                 WHERE CAST(substr(guid, instr(guid, '-e') + 2) AS INTEGER) % 7 = 0"
            ),
            count_in(copy, "SELECT count(*) FROM mentions"),
            "{}",
            copy.display()
        );
    }
    // feedhound itself reads a copy as it reads its own database.
    let restored = app_with_database(&[], &copies[0]);
    let text = std::fs::read_to_string(&restored.config_path).unwrap();
    std::fs::write(
        &restored.config_path,
        format!("{text}\n[[company]]\nname = \"Xiaomi\"\n"),
    )
    .unwrap();
    let output = restored.cli(&["mentions", "--company", "xiaomi", "--format", "json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stories: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        stories.len() as i64,
        count_in(
            &copies[0],
            "SELECT count(DISTINCT e.story_id) FROM mentions m JOIN entries e ON e.id = m.entry_id"
        )
    );
    assert!(!stories.is_empty());
}

#[test]
fn a_restore_refuses_a_running_daemon_and_the_next_poll_stores_what_came_after_the_backup_once() {
    let server = FeedServer::start();
    let first = "<guid>1</guid><title>Xiaomi opens a store</title>";
    let second = "<guid>2</guid><title>Xiaomi cuts prices</title>";
    server.feed("a.xml", rss(&[first]));
    let app = App::new(&[server.url("a.xml")], "\n[[company]]\nname = \"Xiaomi\"\n");
    let run = |args: &[&str]| {
        let output = app.cli(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    run(&["poll"]);
    let folder = tempfile::tempdir().unwrap();
    let copy = folder.path().join("copy.db");
    run(&["backup", copy.to_str().unwrap()]);
    server.feed("a.xml", rss(&[first, second]));
    run(&["poll"]);
    assert_eq!(app.count("SELECT count(*) FROM entries"), 2);

    let daemon = app.spawn_daemon();
    let lock = app.dir.path().join("feedhound.db.lock");
    let pid = daemon.child.id().to_string();
    wait_until(Duration::from_secs(20), "the daemon holds its lock", || {
        std::fs::read_to_string(&lock).is_ok_and(|holder| holder.contains(&pid))
    });
    let refused = app.cli(&["restore", copy.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stop it first"), "{stderr}");
    let (status, stderr) = daemon.stop(Duration::from_secs(15));
    assert!(status.success(), "{stderr}");
    assert_eq!(app.count("SELECT count(*) FROM entries"), 2);

    let said = run(&["restore", copy.to_str().unwrap()]);
    assert!(said.contains("is kept as"), "{said}");
    assert_eq!(app.count("SELECT count(*) FROM entries"), 1);
    run(&["poll"]);
    assert_eq!(integrity(&app.db_path()), "ok");
    assert_eq!(app.count("SELECT count(*) FROM entries"), 2);
    assert_eq!(app.count("SELECT count(DISTINCT guid) FROM entries"), 2);
    assert_eq!(app.count("SELECT count(*) FROM flagged_stories"), 2);
}

fn count_in(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Locks held by other processes
// ---------------------------------------------------------------------------------------------

fn numbered_feed(count: usize) -> String {
    let items: Vec<String> = (0..count)
        .map(|i| format!("<guid>n{i}</guid><title>Story {i}</title>"))
        .collect();
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    rss(&items)
}

#[tokio::test]
async fn a_long_read_transaction_elsewhere_never_stops_polling() {
    let server = FeedServer::start();
    server.feed("a.xml", numbered_feed(3));
    let app = App::new(&[server.url("a.xml")], "");
    app.poll().await;
    let reader = app.db();
    reader.execute_batch("BEGIN").unwrap();
    let at_start: i64 = reader
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .unwrap();
    for round in 1..=3 {
        server.feed("a.xml", numbered_feed(3 + round));
        let summary = app.poll().await;
        assert_eq!((summary.feeds_ok, summary.entries_new), (1, 1), "{summary}");
    }
    assert_eq!(app.count("SELECT count(*) FROM entries"), 6);
    let still: i64 = reader
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        (at_start, still),
        (3, 3),
        "the reader kept its snapshot all along"
    );
    reader.execute_batch("COMMIT").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_elsewhere_for_two_seconds_makes_the_poll_wait_not_fail() {
    let server = FeedServer::start();
    server.feed("a.xml", numbered_feed(3));
    let app = App::new(&[server.url("a.xml")], "");
    app.poll().await;
    server.feed("a.xml", numbered_feed(5));
    let locker = app.db();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        locker.execute_batch("COMMIT").unwrap();
    });
    let started = Instant::now();
    let summary = app.poll().await;
    let waited = started.elapsed();
    holder.join().unwrap();
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    assert_eq!(
        (summary.feeds_ok, summary.feeds_failed, summary.entries_new),
        (1, 0, 2),
        "{summary}"
    );
    assert_eq!(app.count("SELECT count(*) FROM entries"), 5);
    assert_eq!(
        app.count("SELECT count(*) FROM feeds WHERE last_error IS NOT NULL"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_past_the_busy_timeout_fails_with_the_database_path() {
    let server = FeedServer::start();
    server.feed("a.xml", numbered_feed(3));
    let app = App::new(&[server.url("a.xml")], "");
    app.set_busy_timeout("1s");
    app.poll().await;
    let locker = app.db();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let err = scheduler::poll_once(&app.config(), CancellationToken::new())
        .await
        .expect_err("the poll cannot write");
    let message = format!("{err:#}");
    println!("after {:?}: {message}", started.elapsed());
    assert!(
        message.contains(&app.db_path().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("locked") && message.contains("longer than [storage] busy_timeout"),
        "{message}"
    );
    locker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(app.poll().await.feeds_failed, 0);
}

/// A daemon that starts while another process holds the write lock past the busy timeout (a
/// long `sqlite3` session) exits at once, saying which database and why, for its service
/// manager to start it again; once the lock is gone it starts and polls.
#[test]
fn a_daemon_started_under_a_held_write_lock_says_why_it_cannot_start() {
    let server = FeedServer::start();
    server.feed("a.xml", numbered_feed(3));
    let app = App::new(&[server.url("a.xml")], "");
    app.set_busy_timeout("1s");
    assert!(app.cli(&["poll"]).status.success());
    let locker = app.db();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let mut daemon = app.spawn_daemon();
    let status = daemon.child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(daemon.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let said = format!(
        "cannot write the config's feeds and companies to the database {} (another process held \
         the database lock longer than [storage] busy_timeout)",
        app.db_path().display()
    );
    assert!(stderr.contains(&said), "{stderr}");

    locker.execute_batch("ROLLBACK").unwrap();
    server.feed("a.xml", numbered_feed(4));
    assert!(app.cli(&["feeds", "--reset", "1"]).status.success());
    let started = app.spawn_daemon();
    wait_until(Duration::from_secs(30), "the daemon polls", || {
        app.count("SELECT count(*) FROM entries") == 4
    });
    drop(started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_database_refuses_fails_its_feed_alone_and_the_poll_still_sends_alerts() {
    let server = FeedServer::start();
    server.set("hook", Route::webhook(200));
    let item = |feed: &str, n: usize, title: &str| {
        format!(
            "<title>{title}</title><link>https://news.example/{feed}/{n}</link><guid>{feed}-{n}</guid>"
        )
    };
    server.feed("good.xml", rss(&[&item("good", 1, "A quiet day")]));
    server.feed(
        "refused.xml",
        rss(&[&item("refused", 1, "Another quiet day")]),
    );
    let app = App::new(
        &[server.url("good.xml"), server.url("refused.xml")],
        &format!(
            "\n[[company]]\nname = \"Xiaomi\"\n\n[[notify]]\nname = \"hook\"\nurl = \"{}\"\n",
            server.url("hook")
        ),
    );
    assert_eq!(app.poll().await.feeds_ok, 2);
    // A constraint the schema does not have stands in for any result SQLite turns down alone.
    app.db()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON entries WHEN NEW.title = 'Refused story'
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
        )
        .unwrap();
    server.feed(
        "good.xml",
        rss(&[
            &item("good", 2, "Xiaomi opens a store"),
            &item("good", 1, "A quiet day"),
        ]),
    );
    server.feed(
        "refused.xml",
        rss(&[
            &item("refused", 2, "Refused story"),
            &item("refused", 1, "Another quiet day"),
        ]),
    );

    let summary = scheduler::poll_once(&app.config(), CancellationToken::new())
        .await
        .expect("one refused result does not fail the poll");
    assert_eq!(
        (summary.feeds_ok, summary.feeds_failed),
        (1, 1),
        "{summary}"
    );
    assert_eq!(summary.entries_new, 1, "{summary}");
    assert_eq!(
        app.count("SELECT count(*) FROM entries WHERE title = 'Xiaomi opens a store'"),
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM entries"), 3);
    let alerts = server.requests("hook");
    assert_eq!(alerts.len(), 1, "the poll went on to deliver the new flag");
    assert!(
        String::from_utf8_lossy(&alerts[0].body).contains("Xiaomi opens a store"),
        "{:?}",
        String::from_utf8_lossy(&alerts[0].body)
    );
    // Rolled back with its entries, the refused feed's fetch is not recorded: the next poll
    // fetches it again in full and stores it once the database takes it.
    app.db().execute_batch("DROP TRIGGER refuse").unwrap();
    let summary = app.poll().await;
    assert_eq!(summary.entries_new, 1, "{summary}");
    assert_eq!(
        app.count("SELECT count(*) FROM entries WHERE title = 'Refused story'"),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// Full and read-only disks
// ---------------------------------------------------------------------------------------------

/// A small tmpfs mounted for one test, unmounted on drop. None (with a message) when this
/// process may not mount.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(output) if output.status.success() => Some(SmallDisk { dir }),
            other => {
                eprintln!("SKIPPED: cannot mount a tmpfs here (needs root): {other:?}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount {mode}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// An app whose database lives at `db`.
fn app_with_database(urls: &[String], db: &Path) -> App {
    let app = App::new(urls, "");
    let text = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(
        &app.config_path,
        text.replacen(
            "path = \"feedhound.db\"",
            &format!("path = \"{}\"", db.display()),
            1,
        ),
    )
    .unwrap();
    app
}

async fn try_poll(app: &App) -> Result<scheduler::PollSummary, String> {
    scheduler::poll_once(&app.config(), CancellationToken::new())
        .await
        .map_err(|err| format!("{err:#}"))
}

fn integrity(db: &Path) -> String {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

fn bulky_feed(count: usize) -> String {
    let padding = "lorem ipsum dolor sit amet ".repeat(150);
    let items: Vec<String> = (0..count)
        .map(|i| {
            format!(
                "<guid>b{i}</guid><title>Bulky {i}</title><description>{i} {padding}</description>"
            )
        })
        .collect();
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    rss(&items)
}

/// Fills the file system holding `dir` to the last byte.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    let _ = file.write_all(&[0]);
    path
}

#[tokio::test]
async fn a_full_disk_is_a_clear_error_naming_the_database_and_recovers_when_space_returns() {
    let Some(disk) = SmallDisk::mount("4m") else {
        return;
    };
    let db = disk.path().join("feedhound.db");
    let server = FeedServer::start();
    server.feed("a.xml", bulky_feed(5));
    let app = app_with_database(&[server.url("a.xml")], &db);
    assert_eq!(try_poll(&app).await.unwrap().entries_new, 5);
    let filler = fill(disk.path());
    server.feed("a.xml", bulky_feed(400));
    let failed = try_poll(&app).await;
    println!("full disk: {failed:?}");
    let message = failed.expect_err("nothing can be written to a full disk");
    assert!(message.contains(&db.display().to_string()), "{message}");
    // SQLite says "database or disk is full" when a page cannot be written, and "disk I/O
    // error" (SQLITE_IOERR_SHMSIZE) when the WAL index cannot grow, which comes first here.
    assert!(
        message.contains("full") || message.contains("disk I/O error"),
        "{message}"
    );
    std::fs::remove_file(filler).unwrap();
    assert_eq!(integrity(&db), "ok");
    let recovered = try_poll(&app).await.expect("space is back");
    assert_eq!(recovered.entries_new, 395, "{recovered}");
    assert_eq!(integrity(&db), "ok");
    assert_eq!(app_count(&db, "SELECT count(*) FROM entries"), 400);
}

#[tokio::test]
async fn a_read_only_disk_is_a_clear_error_naming_the_database_and_recovers_when_writable() {
    let Some(disk) = SmallDisk::mount("16m") else {
        return;
    };
    let db = disk.path().join("feedhound.db");
    let server = FeedServer::start();
    server.feed("a.xml", numbered_feed(2));
    let app = app_with_database(&[server.url("a.xml")], &db);
    try_poll(&app).await.unwrap();
    server.feed("a.xml", numbered_feed(4));
    disk.remount("ro");
    let failed = try_poll(&app).await;
    println!("read-only disk: {failed:?}");
    disk.remount("rw");
    let message = failed.expect_err("nothing can be written to a read-only disk");
    assert!(message.contains(&db.display().to_string()), "{message}");
    assert_eq!(integrity(&db), "ok");
    assert_eq!(try_poll(&app).await.unwrap().entries_new, 2);
    assert_eq!(app_count(&db, "SELECT count(*) FROM entries"), 4);
}

fn app_count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}
