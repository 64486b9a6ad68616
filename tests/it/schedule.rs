//! Polite polling against loopback servers that log every request: the interval floor,
//! Retry-After, backoff, redirects, 410, per-host limits, restarts, shutdown and config reload.

use std::time::{Duration, Instant};

use feedhound::scheduler::{self, Control};

use crate::helpers::{App, Daemon, FeedServer, Route, rss, wait_until};

fn feed() -> String {
    rss(&["<guid>1</guid><title>Hello</title><link>https://news.example/1</link>"])
}

/// Runs the daemon in this process for `for_how_long`, then stops it.
async fn run_for(app: &App, for_how_long: Duration) {
    let control = Control::default();
    let daemon = tokio::spawn(scheduler::run(app.config(), control.clone()));
    tokio::time::sleep(for_how_long).await;
    control.shutdown.cancel();
    daemon.await.unwrap().expect("daemon runs cleanly");
}

/// A feed its server says is gone for good (410).
fn gone() -> Route {
    let mut gone = Route::feed("gone");
    gone.status = 410;
    gone.validators = false;
    gone
}

fn gaps(requests: &[crate::helpers::Seen]) -> Vec<Duration> {
    requests.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_asking_for_max_age_1_is_not_polled_more_often_than_min_interval() {
    let server = FeedServer::start();
    let mut route = Route::feed(feed()).without_validators();
    route
        .headers
        .push(("Cache-Control".into(), "max-age=1".into()));
    server.set("a.xml", route);
    // Everything asks for faster than the floor: the default interval and the feed's own.
    let app = App::with_polling(
        &[server.url("a.xml")],
        "interval = \"100ms\"\nmin_interval = \"1500ms\"",
        "",
    );
    run_for(&app, Duration::from_millis(3400)).await;
    let requests = server.requests("a.xml");
    let count = requests.len();
    assert!((2..=3).contains(&count), "{count} requests in 3.4 s");
    for gap in gaps(&requests) {
        assert!(
            gap >= Duration::from_millis(1450),
            "polled again after {gap:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_429_and_503_holds_back_that_feed_only() {
    let server = FeedServer::start();
    let mut limited = Route::feed("slow down");
    limited.status = 429;
    limited.validators = false;
    limited.headers.push(("Retry-After".into(), "4".into()));
    server.set("limited.xml", limited);
    let mut unavailable = Route::feed("maintenance");
    unavailable.status = 503;
    unavailable.validators = false;
    let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(5));
    unavailable.headers.push(("Retry-After".into(), later));
    server.set("down.xml", unavailable);
    server.set("fine.xml", Route::feed(feed()));
    let urls = ["limited.xml", "down.xml", "fine.xml"].map(|p| server.url(p));
    let app = App::with_polling(&urls, "interval = \"500ms\"\nmin_interval = \"500ms\"", "");
    run_for(&app, Duration::from_millis(2600)).await;
    assert_eq!(
        server.requests("limited.xml").len(),
        1,
        "429 + Retry-After: 4 must hold the feed back"
    );
    assert_eq!(
        server.requests("down.xml").len(),
        1,
        "503 + Retry-After date must hold the feed back"
    );
    let fine = server.requests("fine.xml").len();
    assert!(
        fine >= 4,
        "the other feed on the same host keeps its 500 ms schedule: {fine} requests"
    );
    let reasons: Vec<(String, String)> = app
        .db()
        .prepare(
            "SELECT url, interval_reason FROM feeds WHERE retry_after IS NOT NULL ORDER BY url",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().all(|(_, why)| why == "retry-after"),
        "{reasons:?}"
    );
}

#[test]
fn feedhound_poll_leaves_out_a_feed_whose_server_asked_to_wait_but_not_for_a_year() {
    let server = FeedServer::start();
    let mut limited = Route::feed("slow down");
    limited.status = 429;
    limited.validators = false;
    limited.headers.push(("Retry-After".into(), "3600".into()));
    server.set("limited.xml", limited);
    // Longer than the schedule believes (7 days): treated as a plain failure.
    let mut absurd = Route::feed("come back next year");
    absurd.status = 503;
    absurd.validators = false;
    absurd
        .headers
        .push(("Retry-After".into(), (400 * 86_400).to_string()));
    server.set("absurd.xml", absurd);
    server.set("fine.xml", Route::feed(feed()));
    let urls = ["limited.xml", "absurd.xml", "fine.xml"].map(|p| server.url(p));
    let app = App::new(&urls, "");

    let first = app.cli(&["poll"]);
    assert!(first.status.success());
    let first = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.contains("feeds: 1 ok, 0 not modified, 2 failed; entries: 1 new"),
        "{first}"
    );
    let second = app.cli(&["poll"]);
    assert!(second.status.success());
    let second = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.contains(
            "feeds: 0 ok, 1 not modified, 1 failed, 1 waiting (Retry-After); entries: 0 new"
        ),
        "{second}"
    );
    assert_eq!(
        server.requests("limited.xml").len(),
        1,
        "asked to wait an hour"
    );
    assert_eq!(server.requests("absurd.xml").len(), 2);
    assert_eq!(server.requests("fine.xml").len(), 2);

    // `feeds` tells the wait that holds from the one that was not believed.
    let feeds = app.cli(&["feeds"]);
    let feeds = String::from_utf8_lossy(&feeds.stdout);
    let note_after = |path: &str| {
        let mut lines = feeds
            .lines()
            .skip_while(|l| l.starts_with("      ") || !l.contains(&format!("/{path}")));
        lines.next();
        lines
            .take_while(|l| l.starts_with("      "))
            .find(|l| l.contains("Retry-After"))
            .map(str::trim)
            .map(String::from)
    };
    let limited = note_after("limited.xml").unwrap_or_default();
    assert!(
        limited.starts_with("waiting: the server asked (Retry-After) not to be polled before "),
        "{feeds}"
    );
    let absurd = note_after("absurd.xml").unwrap_or_default();
    assert!(
        absurd.contains("not believed: more than 7 days away"),
        "{feeds}"
    );
    assert_eq!(note_after("fine.xml"), None, "{feeds}");
}

/// The Retry-After note of `feeds` is on the reports' clock, and names it.
#[test]
fn the_retry_after_note_of_feeds_is_on_the_reports_clock() {
    let server = FeedServer::start();
    let mut limited = Route::feed("slow down");
    limited.status = 429;
    limited.validators = false;
    limited.headers.push(("Retry-After".into(), "3600".into()));
    server.set("limited.xml", limited);
    let app = App::new(&[server.url("limited.xml")], "");
    assert!(app.cli(&["poll"]).status.success());
    let json = app.cli(&["feeds", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let asked = json[0]["retry_after"]
        .as_str()
        .unwrap_or_else(|| panic!("no Retry-After kept: {json}"));
    let asked = chrono::NaiveDateTime::parse_from_str(asked, "%Y-%m-%d %H:%M:%S%.f").unwrap();
    let note = |args: &[&str]| {
        let feeds = app.cli(&[&["feeds"][..], args].concat());
        let feeds = String::from_utf8_lossy(&feeds.stdout).into_owned();
        feeds
            .lines()
            .find(|line| line.contains("(Retry-After)"))
            .map(|line| line.trim().to_owned())
            .unwrap_or_else(|| panic!("no Retry-After note: {feeds}"))
    };
    let said = |at: chrono::NaiveDateTime, zone: &str| {
        format!(
            "waiting: the server asked (Retry-After) not to be polled before {}{zone}",
            at.format("%Y-%m-%d %H:%M:%S")
        )
    };
    assert_eq!(note(&[]), said(asked, ""));
    assert_eq!(
        note(&["--time-zone", "Asia/Tokyo"]),
        said(asked + chrono::Duration::hours(9), " (Asia/Tokyo)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_grows_caps_and_one_success_resets_it() {
    let server = FeedServer::start();
    let mut broken = Route::feed("oops");
    broken.status = 500;
    broken.validators = false;
    server.set("a.xml", broken);
    let app = App::with_polling(
        &[server.url("a.xml")],
        "interval = \"250ms\"\nmin_interval = \"250ms\"\nmax_backoff = \"1s\"",
        "",
    );
    let control = Control::default();
    let daemon = tokio::spawn(scheduler::run(app.config(), control.clone()));
    let requests = {
        let server = &server;
        let started = Instant::now();
        while server.requests("a.xml").len() < 5 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "too few retries"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.requests("a.xml")
    };
    // 250 ms × 2^n: 0.5 s, 1 s (the cap), 1 s, …
    let backoff = gaps(&requests);
    let within = |gap: Duration, low: u64, high: u64| {
        gap >= Duration::from_millis(low) && gap < Duration::from_millis(high)
    };
    assert!(within(backoff[0], 480, 800), "{backoff:?}");
    assert!(within(backoff[1], 950, 1400), "{backoff:?}");
    assert!(within(backoff[2], 950, 1400), "capped: {backoff:?}");
    server.set("a.xml", Route::feed(feed()));
    let recovered_from = server.requests("a.xml").len();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    control.shutdown.cancel();
    daemon.await.unwrap().unwrap();
    let after = server.requests("a.xml");
    assert!(
        after.len() >= recovered_from + 3,
        "back to 250 ms polls after a success: {:?}",
        gaps(&after)
    );
    assert_eq!(app.count("SELECT error_count FROM feeds"), 0);
}

#[tokio::test]
async fn a_feed_failing_for_long_is_dead_but_still_retried_at_the_cap() {
    let server = FeedServer::start();
    let mut broken = Route::feed("oops");
    broken.status = 502;
    broken.validators = false;
    server.set("a.xml", broken);
    let app = App::new(&[server.url("a.xml")], "");
    app.poll().await;
    app.db()
        .execute("UPDATE feeds SET error_count = 30", [])
        .unwrap();
    app.poll().await;
    let feeds: serde_json::Value =
        serde_json::from_slice(&app.cli(&["feeds", "--format", "json"]).stdout).unwrap();
    assert_eq!(feeds[0]["state"], "dead");
    assert_eq!(feeds[0]["interval_reason"], "backoff");
    let wait_hours: f64 = app
        .db()
        .query_row(
            "SELECT (julianday(next_poll_at) - julianday(last_fetch_at)) * 24 FROM feeds",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        (24.0..=24.0 * 1.1).contains(&wait_hours),
        "retried at the 24 h cap, not given up: {wait_hours}"
    );
    server.set("a.xml", Route::feed(feed()));
    app.poll().await;
    let feeds: serde_json::Value =
        serde_json::from_slice(&app.cli(&["feeds", "--format", "json"]).stdout).unwrap();
    assert_eq!(
        (feeds[0]["state"].as_str(), feeds[0]["error_count"].as_i64()),
        (Some("ok"), Some(0))
    );
    assert_eq!(server.requests("a.xml").len(), 3);
}

fn redirect(status: u16, to: &str) -> Route {
    let mut route = Route::feed("moved");
    route.status = status;
    route.validators = false;
    route.headers.push(("Location".into(), to.into()));
    route
}

#[tokio::test]
async fn a_301_is_persisted_after_three_consistent_polls_and_a_302_never() {
    let server = FeedServer::start();
    server.set("old.xml", redirect(301, "/new.xml"));
    server.set("temp.xml", redirect(302, "/new.xml"));
    server.feed("new.xml", feed());
    let app = App::new(&[server.url("old.xml"), server.url("temp.xml")], "");
    let moved = |app: &App| -> Vec<Option<String>> {
        app.db()
            .prepare("SELECT fetch_url FROM feeds ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    app.poll().await;
    assert_eq!(moved(&app), [None, None], "one 301 is not enough");
    app.poll().await;
    assert_eq!(moved(&app), [None, None]);
    app.poll().await;
    assert_eq!(moved(&app), [Some(server.url("new.xml")), None]);
    app.poll().await;
    assert_eq!(
        server.requests("old.xml").len(),
        3,
        "once moved, the old URL is no longer asked"
    );
    assert_eq!(
        server.requests("temp.xml").len(),
        4,
        "302 is followed every time, never persisted"
    );
    assert_eq!(moved(&app), [Some(server.url("new.xml")), None]);
    let table = String::from_utf8_lossy(&app.cli(&["feeds"]).stdout).to_string();
    assert!(
        table.contains("redirected") && table.contains("update the url in the config"),
        "{table}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM entries"),
        2,
        "both feeds stored the entry once each"
    );
}

#[tokio::test]
async fn a_410_stops_polling_until_the_feed_is_reset() {
    let server = FeedServer::start();
    server.set("gone.xml", gone());
    let app = App::new(&[server.url("gone.xml")], "");
    app.poll().await;
    app.poll().await;
    assert_eq!(server.requests("gone.xml").len(), 1);
    let feeds: serde_json::Value =
        serde_json::from_slice(&app.cli(&["feeds", "--format", "json"]).stdout).unwrap();
    assert_eq!(feeds[0]["state"], "gone");
    let reset = app.cli(&["feeds", "--reset", &server.url("gone.xml")]);
    assert!(reset.status.success());
    server.feed("gone.xml", feed());
    app.poll().await;
    assert_eq!(server.requests("gone.xml").len(), 2);
    assert_eq!(app.count("SELECT count(*) FROM entries"), 1);
}

#[test]
fn a_feed_reset_beside_the_running_daemon_is_polled_within_seconds() {
    let server = FeedServer::start();
    server.set("gone.xml", gone());
    let app = App::new(&[server.url("gone.xml")], "");
    let daemon = app.spawn_daemon();
    wait_until(Duration::from_secs(20), "the feed is found gone", || {
        app.try_count("SELECT count(*) FROM feeds WHERE gone_at IS NOT NULL") == Some(1)
    });
    server.feed("gone.xml", feed());
    // No feed is due now: the daemon finds the reset one at its next turn, which comes every
    // 2 s at most (it looks at the config file that often), not at its 60 s heartbeat.
    let reset = app.cli(&["feeds", "--reset", &server.url("gone.xml")]);
    assert!(reset.status.success());
    wait_until(Duration::from_secs(20), "the daemon polls it again", || {
        app.try_count("SELECT count(*) FROM entries") == Some(1)
    });
    let (status, stderr) = daemon.stop(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    assert_eq!(server.requests("gone.xml").len(), 2);
}

#[tokio::test]
async fn a_config_updated_to_a_moved_feeds_new_url_keeps_the_feed_and_stores_nothing_twice() {
    let server = FeedServer::start();
    server.set("old.xml", redirect(301, "/new.xml"));
    server.feed("new.xml", feed());
    let app = App::new(&[server.url("old.xml")], "");
    for _ in 0..3 {
        app.poll().await;
    }
    assert_eq!(
        app.count("SELECT count(*) FROM feeds WHERE fetch_url IS NOT NULL"),
        1
    );

    // As `feeds` advises: the config now names the new URL.
    app.write_config(&[server.url("new.xml")], "");
    let summary = app.poll().await;
    assert_eq!(summary.entries_new, 0, "{summary}");
    assert_eq!(app.count("SELECT count(*) FROM feeds"), 1);
    assert_eq!(app.count("SELECT count(*) FROM entries"), 1);
    let table = String::from_utf8_lossy(&app.cli(&["feeds"]).stdout).to_string();
    assert!(!table.contains("redirected"), "{table}");
}

#[tokio::test]
async fn poll_due_keeps_the_schedule_and_the_backoff_that_a_plain_poll_ignores() {
    let server = FeedServer::start();
    server.feed("ok.xml", feed());
    let mut failing = Route::feed("down");
    failing.status = 500;
    server.set("down.xml", failing);
    let app = App::new(&[server.url("ok.xml"), server.url("down.xml")], "");
    app.poll().await;
    let requests = |path: &str| server.requests(path).len();
    assert_eq!((requests("ok.xml"), requests("down.xml")), (1, 1));

    // Right after: one feed waits for its interval, the other backs off. Neither is due.
    let due = app.cli(&["poll", "--due"]);
    assert!(due.status.success(), "{due:?}");
    let printed = String::from_utf8_lossy(&due.stdout);
    assert!(printed.contains("2 not due yet"), "{printed}");
    assert_eq!((requests("ok.xml"), requests("down.xml")), (1, 1));

    // The working feed's time comes; the failing one is still backing off.
    app.db()
        .execute(
            "UPDATE feeds SET next_poll_at = '2000-01-01 00:00:00' WHERE url LIKE '%ok.xml'",
            [],
        )
        .unwrap();
    let due = app.cli(&["poll", "--due"]);
    assert!(due.status.success(), "{due:?}");
    assert_eq!((requests("ok.xml"), requests("down.xml")), (2, 1));

    // A plain poll polls everything.
    assert!(app.cli(&["poll"]).status.success());
    assert_eq!((requests("ok.xml"), requests("down.xml")), (3, 2));
}

#[tokio::test]
async fn feeds_reset_finds_a_feed_by_its_id_or_by_its_url_spelled_another_way() {
    let server = FeedServer::start();
    let mut failing = Route::feed("down");
    failing.status = 500;
    server.set("down.xml", failing);
    let app = App::new(&[server.url("down.xml")], "");
    let errors = || app.count("SELECT error_count FROM feeds");
    app.poll().await;
    assert_eq!(errors(), 1);

    // Written as the user might type it; the config loader stored `http://127.0.0.1:…/down.xml`.
    let shouted = server.url("down.xml").replacen("http://", "HTTP://", 1);
    let reset = app.cli(&["feeds", "--reset", &format!(" {shouted} ")]);
    assert!(reset.status.success(), "{reset:?}");
    assert_eq!(errors(), 0);

    app.poll().await;
    let id = app.count("SELECT id FROM feeds").to_string();
    let reset = app.cli(&["feeds", "--reset", &id]);
    assert!(reset.status.success(), "{reset:?}");
    assert_eq!(errors(), 0);

    let unknown = app.cli(&["feeds", "--reset", "4242"]);
    assert!(!unknown.status.success());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(said.contains("no feed has the ID 4242"), "{said}");
    let neither = app.cli(&["feeds", "--reset", "down.xml"]);
    assert!(!neither.status.success());
    assert!(
        String::from_utf8_lossy(&neither.stderr).contains("is neither"),
        "{neither:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_concurrency_is_never_exceeded_while_other_hosts_proceed() {
    let busy = FeedServer::start_on("127.0.0.1");
    let other = FeedServer::start_on("127.0.0.2");
    let slow = |server: &FeedServer, path: &str| {
        let mut route = Route::feed(feed());
        route.delay = Some(Duration::from_millis(300));
        server.set(path, route);
    };
    let mut urls = Vec::new();
    for i in 0..6 {
        slow(&busy, &format!("b{i}.xml"));
        urls.push(busy.url(&format!("b{i}.xml")));
    }
    for i in 0..2 {
        slow(&other, &format!("o{i}.xml"));
        urls.push(other.url(&format!("o{i}.xml")));
    }
    let app = App::with_polling(&urls, "concurrency = 8\nper_host_concurrency = 2", "");
    let started = Instant::now();
    let summary = app.poll().await;
    let elapsed = started.elapsed();
    assert_eq!(summary.feeds_ok, 8);
    assert_eq!(
        busy.max_concurrent(),
        2,
        "at most 2 requests at once to one host, and 2 were used"
    );
    assert_eq!(other.max_concurrent(), 2);
    let first_other = (0..2)
        .map(|i| other.requests(&format!("o{i}.xml"))[0].at)
        .min()
        .unwrap();
    let last_busy = (0..6)
        .map(|i| busy.requests(&format!("b{i}.xml"))[0].at)
        .max()
        .unwrap();
    assert!(
        first_other < last_busy,
        "the other host did not wait for the busy one"
    );
    // Three rounds of 300 ms on the busy host; the other host overlaps with them.
    assert!(elapsed >= Duration::from_millis(850), "{elapsed:?}");
}

#[test]
fn a_restart_does_not_repoll_feeds_that_are_not_due() {
    let server = FeedServer::start();
    server.feed("a.xml", feed());
    let app = App::new(&[server.url("a.xml")], "");
    let daemon = app.spawn_daemon();
    wait_until(Duration::from_secs(10), "the first poll is stored", || {
        app.try_count("SELECT count(*) FROM feeds WHERE last_fetch_at IS NOT NULL") == Some(1)
    });
    let (status, stderr) = daemon.stop(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    let daemon = app.spawn_daemon();
    std::thread::sleep(Duration::from_millis(1500));
    let (status, stderr) = daemon.stop(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    assert_eq!(
        server.requests("a.xml").len(),
        1,
        "the feed is due in 30 minutes, not at restart"
    );
}

#[test]
fn sigterm_during_a_slow_fetch_exits_within_the_grace_period_with_a_sound_database() {
    let server = FeedServer::start();
    let mut slow = Route::feed(feed());
    slow.delay = Some(Duration::from_secs(30));
    server.set("slow.xml", slow);
    server.feed(
        "fast.xml",
        rss(&[
            "<guid>f1</guid><title>Fast one</title>",
            "<guid>f2</guid><title>Fast two</title>",
        ]),
    );
    let app = App::new(
        &[server.url("slow.xml"), server.url("fast.xml")],
        "\n[daemon]\nshutdown_grace = \"1s\"\n",
    );
    let daemon = app.spawn_daemon();
    wait_until(
        Duration::from_secs(10),
        "the slow fetch is in flight and the fast one stored",
        || {
            !server.requests("slow.xml").is_empty()
                && app.try_count("SELECT count(*) FROM entries") == Some(2)
        },
    );
    let asked = Instant::now();
    let (status, stderr) = daemon.stop(Duration::from_secs(8));
    let took = asked.elapsed();
    assert!(status.success(), "exit 0 after SIGTERM: {stderr}");
    assert!(
        took < Duration::from_secs(4),
        "took {took:?} with a 1 s grace"
    );
    assert!(stderr.contains("grace period over"), "{stderr}");
    let db = app.db();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    assert_eq!(
        app.count("SELECT count(*) FROM entries"),
        2,
        "nothing half-written from the slow feed"
    );
}

#[test]
fn a_config_edit_is_picked_up_without_a_restart_and_a_broken_edit_keeps_the_old_config() {
    let server = FeedServer::start();
    server.feed("a.xml", feed());
    server.feed("b.xml", feed());
    server.feed("c.xml", feed());
    let app = App::new(&[server.url("a.xml")], "");
    let daemon = app.spawn_daemon();
    wait_until(Duration::from_secs(10), "a is polled", || {
        !server.requests("a.xml").is_empty()
    });
    app.write_config(&[server.url("a.xml"), server.url("b.xml")], "");
    wait_until(
        Duration::from_secs(10),
        "b is polled after the edit",
        || !server.requests("b.xml").is_empty(),
    );
    // A broken edit: the daemon says where, and keeps a and b.
    app.write_config(
        &[server.url("a.xml")],
        &format!(
            "\n[[feed]]\nurl = \"{}\"\nintervall = \"5m\"\n",
            server.url("b.xml")
        ),
    );
    let broken_line = std::fs::read_to_string(&app.config_path)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("intervall"))
        .unwrap()
        + 1;
    std::thread::sleep(Duration::from_millis(2600));
    assert_eq!(
        app.count("SELECT count(*) FROM feeds WHERE active = 1"),
        2,
        "the last good config stays in force"
    );
    // Fixed, and announced with SIGHUP: c is polled at once.
    app.write_config(&[server.url("a.xml"), server.url("c.xml")], "");
    daemon.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(5), "c is polled after SIGHUP", || {
        !server.requests("c.xml").is_empty()
    });
    let (status, stderr) = daemon.stop(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("feedhound.toml:{broken_line}: feed[2].intervall")),
        "{stderr}"
    );
    assert_eq!(app.count("SELECT count(*) FROM feeds WHERE active = 1"), 2);
    assert_eq!(
        server.requests("a.xml").len(),
        1,
        "a was not polled again: it is not due"
    );
}

#[cfg(target_os = "linux")] // thread ids come from /proc
#[test]
fn a_reload_keeps_the_parsing_threads() {
    // The same threads mean the same pool, which remembers the documents whose parse it gave up
    // on (too slow); a new pool per reload would forget them, and start threads on every edit.
    let server = FeedServer::start();
    server.feed("a.xml", feed());
    server.feed("b.xml", feed());
    let app = App::new(&[server.url("a.xml")], "");
    let daemon = app.spawn_daemon();
    wait_until(Duration::from_secs(10), "a is polled", || {
        !server.requests("a.xml").is_empty()
    });
    let before = daemon.thread_ids("feedhound-parse");
    assert!(!before.is_empty(), "no parsing threads found");
    app.write_config(&[server.url("a.xml"), server.url("b.xml")], "");
    daemon.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(5), "b is polled after SIGHUP", || {
        !server.requests("b.xml").is_empty()
    });
    assert_eq!(daemon.thread_ids("feedhound-parse"), before);
    let (status, stderr) = daemon.stop(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
}

/// A server whose `private.xml` answers its first request 401, as for an expired token, and
/// serves the feed after that.
fn refusing_once_then_serving() -> FeedServer {
    let server = FeedServer::start();
    server.set(
        "private.xml",
        Route {
            first_statuses: vec![401],
            ..Route::feed(feed())
        },
    );
    server
}

/// The app's daemon, once it has recorded the server's refusal.
fn spawn_and_wait_for_the_refusal(app: &App) -> Daemon {
    let daemon = app.spawn_daemon();
    wait_until(Duration::from_secs(10), "the refusal is recorded", || {
        app.try_count("SELECT count(*) FROM feeds WHERE error_count = 1") == Some(1)
    });
    daemon
}

/// A feed refused for an expired token backs off for up to a day; the renewed token in the
/// config is tried as soon as the daemon reloads, without waiting for the backoff.
#[test]
fn a_feed_whose_headers_change_is_polled_at_once_after_a_reload() {
    let server = refusing_once_then_serving();
    let with_token = |token: &str| {
        format!(
            "[[feed]]\nurl = \"{}\"\nheaders = {{ Authorization = \"Bearer {token}\" }}\n",
            server.url("private.xml")
        )
    };
    let app = App::new(&[], &with_token("expired"));
    let daemon = spawn_and_wait_for_the_refusal(&app);
    app.write_config(&[], &with_token("renewed"));
    daemon.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(5), "the renewed token is tried", || {
        server.requests("private.xml").len() == 2
    });
    let requests = server.requests("private.xml");
    assert_eq!(requests[0].headers["authorization"], "Bearer expired");
    assert_eq!(requests[1].headers["authorization"], "Bearer renewed");
    wait_until(Duration::from_secs(5), "the entry is stored", || {
        app.try_count("SELECT count(*) FROM entries") == Some(1)
    });
    let (status, stderr) = daemon.stop(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_rewritten_token_file_is_read_again_without_a_signal() {
    let server = refusing_once_then_serving();
    let config_naming = |token_file: &str| {
        format!(
            "[[feed]]\nurl = \"{}\"\nheaders = {{ Authorization = {{ file = \"{token_file}\" }} }}\n",
            server.url("private.xml")
        )
    };
    let app = App::new(&[], &config_naming("token"));
    let token = app.dir.path().join("token");
    std::fs::write(&token, "Bearer expired\n").unwrap();
    let daemon = spawn_and_wait_for_the_refusal(&app);
    // The config itself is unchanged, and no signal is sent: the daemon sees the file change,
    // though it keeps its length.
    std::fs::write(&token, "Bearer renewed\n").unwrap();
    wait_until(
        Duration::from_secs(10),
        "the renewed token is tried",
        || server.requests("private.xml").len() == 2,
    );
    // A config naming a file that is not there yet is refused; once the file is written, the
    // daemon tries again by itself.
    app.write_config(&[], &config_naming("next-token"));
    // Two looks at the files (every 2 s), so that the refusal comes first (checked below).
    std::thread::sleep(Duration::from_secs(4));
    std::fs::write(app.dir.path().join("next-token"), "Bearer third\n").unwrap();
    wait_until(Duration::from_secs(10), "the next token is tried", || {
        server.requests("private.xml").len() == 3
    });
    let tokens: Vec<String> = server
        .requests("private.xml")
        .iter()
        .map(|request| request.headers["authorization"].clone())
        .collect();
    assert_eq!(tokens, ["Bearer expired", "Bearer renewed", "Bearer third"]);
    let (status, stderr) = daemon.stop(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("next-token: No such file").count(),
        1,
        "the config was refused once, before the file was written, not again until it was: \
         {stderr}"
    );
}

#[tokio::test]
async fn per_host_delay_spaces_request_starts_to_one_host() {
    let server = FeedServer::start();
    for i in 0..3 {
        server.feed(&format!("f{i}.xml"), feed());
    }
    let urls: Vec<String> = (0..3).map(|i| server.url(&format!("f{i}.xml"))).collect();
    let app = App::with_polling(
        &urls,
        "per_host_delay = \"300ms\"\nper_host_concurrency = 3",
        "",
    );
    app.poll().await;
    let mut starts: Vec<Instant> = (0..3)
        .map(|i| server.requests(&format!("f{i}.xml"))[0].at)
        .collect();
    starts.sort();
    for gap in starts.windows(2).map(|w| w[1] - w[0]) {
        assert!(
            gap >= Duration::from_millis(280),
            "requests to one host {gap:?} apart"
        );
    }
}
