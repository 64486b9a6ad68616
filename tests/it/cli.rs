//! The binary's commands, run as a user would run them.

use crate::helpers::{App, FeedServer, Route, SocksProxy, binary, rss};

#[test]
fn check_reports_every_typo_in_a_key_with_its_line_and_exits_1() {
    let app = App::new(
        &[],
        "\n[[feed]]\nurl = \"https://news.example/rss\"\nintervall = \"5m\"\n\
         \n[[feed]]\nurl = \"https://other.example/rss\"\ninterval = \"soon\"\ntag = [\"x\"]\n\
         \n[daemon]\nshutdown_grace = \"5s\"\ngrace = \"1s\"\n",
    );
    let output = app.cli(&["check"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("feedhound.toml:"))
        .collect();
    let expected = [
        "feedhound.toml:9: feed[1].intervall: unknown key `intervall`, expected one of `url`, `name`, `interval`, `tags`, `headers`",
        "feedhound.toml:13: feed[2].interval:",
        "feedhound.toml:14: feed[2].tag: unknown key `tag`",
        "feedhound.toml:18: daemon.grace: unknown key `grace`, expected one of `shutdown_grace`",
    ];
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, expected) in lines.iter().zip(expected) {
        assert!(
            line.contains(expected),
            "{line:?} lacks {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn check_prints_a_one_line_summary_of_a_valid_config() {
    let app = App::new(&["https://news.example/rss".to_string()], "");
    let output = app.cli(&["check"]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("1 feeds"), "{stdout}");
}

/// The first folder above one of `paths` that other users cannot pass through: a private
/// TMPDIR (macOS, libpam-tmpdir), or a target folder under /root, keeps them from what a test
/// sets out for them to read.
fn folder_closed_to_others<'a>(paths: &[&'a std::path::Path]) -> Option<&'a std::path::Path> {
    use std::os::unix::fs::PermissionsExt;
    paths
        .iter()
        .flat_map(|path| path.ancestors().skip(1))
        .find(|folder| {
            std::fs::metadata(folder).is_ok_and(|meta| meta.permissions().mode() & 0o001 == 0)
        })
}

#[test]
fn credentials_written_in_a_config_everyone_can_read_are_warned_about_by_key_and_line() {
    use std::os::unix::fs::PermissionsExt;
    let server = FeedServer::start();
    server.feed("news.xml", rss(&["<guid>1</guid><title>One</title>"]));
    let app = App::new(
        &[],
        &format!(
            "\n[[feed]]\nurl = \"{}?api_token=s3cr3t\"\n\
             headers = {{ Authorization = \"Bearer t0k3n\", User-Agent = \"desk\" }}\n\
             \n[[notify]]\nurl = \"{}\"\n",
            server.url("news.xml"),
            server.url("services/T0/B0/x7Kq2mPz9Lw4Rt8Yb3Nc5Vd1")
        ),
    );
    let set_mode = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    set_mode(app.dir.path(), 0o755);
    set_mode(&app.config_path, 0o644);
    if let Some(folder) = folder_closed_to_others(&[app.dir.path()]) {
        eprintln!(
            "skipped: {} is closed to other users, so no config under it is readable by all",
            folder.display()
        );
        return;
    }
    let check = app.cli(&["check"]);
    assert!(check.status.success(), "a warning is not an error");
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains(&format!(
            "warning: {} can be read by every user of this machine (mode 0644) and has \
             credentials written in it: feed[1].url (line 8), feed[1].headers.Authorization \
             (line 9), notify[1].url (line 12). Keep them in files of their own",
            app.config_path.display()
        )),
        "{stderr}"
    );
    let poll = app.cli(&["poll"]);
    assert!(poll.status.success());
    let logs = String::from_utf8_lossy(&poll.stderr);
    assert!(
        logs.contains("WARN") && logs.contains("can be read by every user"),
        "{logs}"
    );
    for said in [&stderr, &logs] {
        for kept in ["User-Agent", "s3cr3t", "t0k3n", "x7Kq2"] {
            assert!(!said.contains(kept), "{kept} in {said}");
        }
    }

    // Readable by its group alone, or in a folder others cannot pass through: no warning.
    set_mode(&app.config_path, 0o640);
    assert_eq!(String::from_utf8_lossy(&app.cli(&["check"]).stderr), "");
    set_mode(&app.config_path, 0o644);
    set_mode(app.dir.path(), 0o700);
    assert_eq!(String::from_utf8_lossy(&app.cli(&["check"]).stderr), "");
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = binary()
        .current_dir(dir.path())
        .arg("poll")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("feedhound.toml") && stderr.contains("--config"),
        "{stderr}"
    );
}

/// `[[notify]] time_zone` uses the rules built into the binary; `--version` says which.
#[test]
fn the_long_version_names_the_time_zone_rules_built_in() {
    let long = binary().arg("--version").output().unwrap();
    let short = binary().arg("-V").output().unwrap();
    let (long, short) = (
        String::from_utf8_lossy(&long.stdout),
        String::from_utf8_lossy(&short.stdout),
    );
    let version = format!("feedhound {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(short.trim(), version);
    assert_eq!(
        long.trim(),
        format!(
            "{version} (time zones: IANA {})",
            chrono_tz::IANA_TZDB_VERSION
        )
    );
}

/// Getting Started's flow: the config and the database named without a folder, in the current
/// one. As root (a container), the lock file is given to the folder's owner, whose folder was the
/// empty path here and could not be read before.
#[test]
fn a_config_and_database_named_without_a_folder_poll_from_the_current_folder() {
    let server = FeedServer::start();
    server.feed("a.xml", rss(&["<guid>1</guid><title>One</title>"]));
    let app = App::new(&[server.url("a.xml")], "");
    let output = binary()
        .current_dir(app.dir.path())
        .args(["--config", "feedhound.toml", "poll"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(app.count("SELECT count(*) FROM entries"), 1);
    assert!(app.dir.path().join("feedhound.db.lock").exists());
}

/// Too long a `--since` or `--retain` is an error that says which, not a panic (exit 101), and
/// `--retain 6m` (six minutes, not months) deletes nothing.
#[test]
fn out_of_range_durations_on_the_command_line_are_errors() {
    let server = FeedServer::start();
    server.feed("a.xml", rss(&["<guid>1</guid><title>One</title>"]));
    let app = App::new(&[server.url("a.xml")], "");
    assert!(app.cli(&["poll"]).status.success());
    let cases: [(&[&str], i32, &str); 3] = [
        (
            &["mentions", "--since", "300000y"],
            2,
            "too long a span back from now",
        ),
        (&["prune", "--retain", "300000y"], 2, "at most 100 years"),
        (&["prune", "--retain", "6m"], 2, "at least one day"),
    ];
    for (args, code, message) in cases {
        let output = app.cli(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert_eq!(app.count("SELECT count(*) FROM entries"), 1);
}

/// A report for a given week: `--since` and `--until` take dates, the period includes its start
/// and excludes its end, and a story counts by its date, not by when it was polled.
#[test]
fn mentions_and_search_report_a_period_given_by_dates() {
    let server = FeedServer::start();
    let item = |id: &str, date: &str| {
        format!(
            "<guid>{id}</guid><title>Xiaomi story {id}</title><pubDate>{date}</pubDate>\
             <description>Xiaomi tablets</description>"
        )
    };
    server.feed(
        "a.xml",
        rss(&[
            &item("before", "Sat, 31 Oct 2026 23:59:59 GMT"),
            &item("first", "Sun, 01 Nov 2026 00:00:00 GMT"),
            &item("last", "Sat, 07 Nov 2026 23:59:59 +0000"),
            &item("after", "Sun, 08 Nov 2026 00:00:00 GMT"),
        ]),
    );
    let app = App::new(&[server.url("a.xml")], "[[company]]\nname = \"Xiaomi\"\n");
    assert!(app.cli(&["poll"]).status.success());
    let titles = |args: &[&str]| -> Vec<String> {
        let output = app.cli(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .map(|row| row["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let week = [
        "--since",
        "2026-11-01",
        "--until",
        "2026-11-08",
        "--format",
        "json",
    ];
    let expected = ["Xiaomi story last", "Xiaomi story first"];
    assert_eq!(titles(&[&["mentions"][..], &week].concat()), expected);
    assert_eq!(
        titles(&[&["mentions", "--company", "xiaomi"][..], &week].concat()),
        expected
    );
    assert_eq!(
        titles(&[&["search", "tablets"][..], &week].concat()),
        expected
    );
    assert_eq!(
        titles(&[
            "mentions",
            "--until",
            "2026-11-01T01:00:00+01:00",
            "--format",
            "json"
        ]),
        ["Xiaomi story before"],
        "an offset is honoured, and --until alone is a period"
    );
    assert_eq!(
        titles(&[
            "mentions",
            "--since",
            "2026-11-07 23:59:59",
            "--format",
            "json"
        ]),
        ["Xiaomi story after", "Xiaomi story last"],
        "a time as feedhound prints it is UTC"
    );
    let swapped = app.cli(&["mentions", "--since", "2026-11-08", "--until", "2026-11-01"]);
    assert_eq!(swapped.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&swapped.stderr).contains(
            "--until (2026-11-01 00:00:00) is not later than --since (2026-11-08 00:00:00)"
        ),
        "{swapped:?}"
    );
    let unreadable = app.cli(&["mentions", "--since", "last week"]);
    assert_eq!(unreadable.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unreadable.stderr).contains("write a span back from now"),
        "{unreadable:?}"
    );
}

#[test]
fn feeds_lists_each_feed_with_its_status_as_json() {
    let server = FeedServer::start();
    server.feed("a.xml", rss(&["<guid>1</guid><title>One</title>"]));
    let app = App::new(&[server.url("a.xml"), server.url("gone.xml")], "");
    assert!(app.cli(&["poll"]).status.success());
    let output = app.cli(&["feeds", "--format", "json"]);
    assert!(output.status.success());
    let feeds: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let feeds = feeds.as_array().unwrap();
    assert_eq!(feeds.len(), 2);
    let ok = feeds
        .iter()
        .find(|f| f["url"].as_str().unwrap().ends_with("a.xml"))
        .unwrap();
    assert_eq!(
        (ok["entries"].as_i64(), ok["last_status"].as_i64()),
        (Some(1), Some(200))
    );
    let failing = feeds
        .iter()
        .find(|f| f["url"].as_str().unwrap().ends_with("gone.xml"))
        .unwrap();
    assert_eq!(failing["last_status"].as_i64(), Some(404));
    assert!(failing["last_error"].as_str().unwrap().contains("404"));
    let table = String::from_utf8_lossy(&app.cli(&["feeds"]).stdout).to_string();
    assert!(
        table.contains("backing off") && table.contains(" ok "),
        "{table}"
    );
    assert_eq!(failing["state"], "backing off");
    assert_eq!(ok["state"], "ok");
}

/// Getting Started names the user's own files `feedhound.toml` and `feedhound.db`: `demo --dir .`
/// there must not replace them. Its own folder it runs in again.
#[test]
fn demo_leaves_a_folder_with_the_users_config_or_database_alone() {
    let server = FeedServer::start();
    server.feed("a.xml", rss(&["<guid>1</guid><title>One</title>"]));
    let app = App::new(&[server.url("a.xml")], "");
    assert!(app.cli(&["poll"]).status.success());
    let config_before = std::fs::read_to_string(&app.config_path).unwrap();
    let demo = |dir: &std::path::Path| binary().args(["demo", "--dir"]).arg(dir).output().unwrap();
    let refused = demo(app.dir.path());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("choose another folder"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&app.config_path).unwrap(),
        config_before
    );
    assert_eq!(app.count("SELECT count(*) FROM entries"), 1);

    // A database without a config is the user's too.
    std::fs::remove_file(&app.config_path).unwrap();
    assert_eq!(demo(app.dir.path()).status.code(), Some(1));
    assert_eq!(app.count("SELECT count(*) FROM entries"), 1);

    let demo_dir = tempfile::tempdir().unwrap();
    assert!(demo(demo_dir.path()).status.success());
    assert!(
        demo(demo_dir.path()).status.success(),
        "the demo's own folder"
    );
}

#[test]
fn demo_polls_the_bundled_feeds_twice_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let output = binary()
        .args(["demo", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(
            "First poll:  feeds: 4 ok, 0 not modified, 0 failed; entries: 14 new, 0 updated; \
             articles: 2 read, 0 failed"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "Second poll: feeds: 0 ok, 4 not modified, 0 failed; entries: 0 new, 0 updated"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("4 × 304 Not Modified"), "{stdout}");
    assert!(
        stdout.contains("Samsung, Xiaomi    3 source(s)  Xiaomi's new tablet"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("source(s)  Weekend baking"),
        "apple pie is not Apple: {stdout}"
    );
    assert!(!stdout.contains("source(s)  Amazon rainforest"), "{stdout}");
    // The teaser feed's story is flagged for what its page says, not for its menus and footer.
    assert!(
        stdout.contains("Xiaomi             1 source(s)  Handset makers line up"),
        "{stdout}"
    );
    assert!(!stdout.contains("source(s)  Port authority"), "{stdout}");
    let db = rusqlite::Connection::open(dir.path().join("feedhound.db")).unwrap();
    let entries: i64 = db
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(entries, 14);
    let article_mentions: i64 = db
        .query_row(
            "SELECT count(*) FROM mentions WHERE fields = 'article'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(article_mentions, 1);
}

#[test]
fn opml_export_then_import_round_trips_every_feed_through_the_binary() {
    let urls = [
        "https://a.example/rss".to_string(),
        "https://b.example/atom?x=1&y=2".to_string(),
    ];
    let source = App::new(&urls, "");
    let exported = source.cli(&["opml", "export"]);
    assert!(exported.status.success());
    let target = App::new(&[], "# my feeds\n");
    let file = target.dir.path().join("feeds.opml");
    std::fs::write(&file, &exported.stdout).unwrap();
    let imported = target.cli(&["opml", "import", file.to_str().unwrap()]);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(String::from_utf8_lossy(&imported.stdout).contains("added 2 feeds"));
    let config = target.config();
    let got: Vec<&str> = config.feeds.iter().map(|f| f.url.as_str()).collect();
    assert_eq!(got, urls);
    assert!(
        std::fs::read_to_string(&target.config_path)
            .unwrap()
            .contains("# my feeds")
    );
}

/// Runs `poll` with every log line on (each refresh included) and returns the log; the poll
/// must succeed.
fn poll_logging_everything(app: &App) -> String {
    let output = binary()
        .env("RUST_LOG", "feedhound=debug")
        .arg("--config")
        .arg(&app.config_path)
        .arg("poll")
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn credentials_in_feed_urls_stay_out_of_logs_errors_and_feeds_output() {
    let server = FeedServer::start();
    server.feed("a.xml", rss(&["<guid>1</guid><title>One</title>"]));
    let secret_url = server
        .url("a.xml")
        .replace("http://", "http://reader:hunter2@");
    let missing_url = server
        .url("missing.xml")
        .replace("http://", "http://reader:hunter2@");
    let app = App::new(&[secret_url, missing_url], "");
    let logs = poll_logging_everything(&app);
    assert!(
        logs.contains("missing.xml"),
        "the failure is logged: {logs}"
    );
    assert!(!logs.contains("hunter2"), "{logs}");
    let seen = server.requests("a.xml");
    assert!(
        seen[0].headers["authorization"].starts_with("Basic "),
        "credentials are still sent"
    );
    for format in ["table", "json"] {
        let feeds = app.cli(&["feeds", "--format", format]);
        let text = String::from_utf8_lossy(&feeds.stdout);
        assert!(
            text.contains("missing.xml") && !text.contains("hunter2"),
            "{text}"
        );
    }
    let errors = app.count("SELECT count(*) FROM feeds WHERE last_error LIKE '%hunter2%'");
    assert_eq!(errors, 0);
}

#[test]
fn a_feeds_own_headers_reach_its_server_only_and_stay_out_of_logs_and_output() {
    let server = FeedServer::start();
    server.feed("private.xml", rss(&["<guid>1</guid><title>One</title>"]));
    server.feed("public.xml", rss(&["<guid>2</guid><title>Two</title>"]));
    let elsewhere = FeedServer::start();
    elsewhere.set(
        "moved.xml",
        Route {
            status: 401,
            ..Route::feed("").without_validators()
        },
    );
    server.set(
        "moving.xml",
        Route {
            status: 302,
            headers: vec![("Location".into(), elsewhere.url("moved.xml"))],
            ..Route::feed("").without_validators()
        },
    );
    let app = App::new(
        &[],
        &format!(
            "[[feed]]\nurl = \"{private}\"\n\
             headers = {{ Authorization = \"Bearer t0k3n\", \"User-Agent\" = \"NewsDesk/2\" }}\n\
             [[feed]]\nurl = \"{public}\"\n\
             [[feed]]\nurl = \"{moving}\"\n\
             headers = {{ Authorization = \"Bearer t0k3n\" }}\n",
            private = server.url("private.xml"),
            public = server.url("public.xml"),
            moving = server.url("moving.xml"),
        ),
    );
    let logs = poll_logging_everything(&app);
    let private = &server.requests("private.xml")[0];
    assert_eq!(private.headers["authorization"], "Bearer t0k3n");
    assert_eq!(private.headers["user-agent"], "NewsDesk/2");
    let public = &server.requests("public.xml")[0];
    assert!(!public.headers.contains_key("authorization"));
    assert!(public.headers["user-agent"].starts_with("feedhound/"));
    assert_eq!(
        server.requests("moving.xml")[0].headers["authorization"],
        "Bearer t0k3n"
    );
    assert!(
        !elsewhere.requests("moved.xml")[0]
            .headers
            .contains_key("authorization"),
        "a redirect to another origin does not carry them"
    );
    assert_eq!(app.count("SELECT count(*) FROM entries"), 2);
    let feeds = app.cli(&["feeds", "--format", "json"]);
    let feeds = String::from_utf8_lossy(&feeds.stdout);
    assert!(
        feeds.contains("HTTP status 401 Unauthorized from http://127.0.0.1:")
            && feeds.contains("to which its headers are not sent"),
        "{feeds}"
    );
    // Headers belong to the feed in the config, wherever it is fetched from: a confirmed move
    // on the same origin keeps them.
    server.feed(
        "private-moved.xml",
        rss(&["<guid>3</guid><title>Three</title>"]),
    );
    app.db()
        .execute(
            "UPDATE feeds SET fetch_url = ?1, next_poll_at = NULL WHERE url = ?2",
            [server.url("private-moved.xml"), server.url("private.xml")],
        )
        .unwrap();
    assert!(app.cli(&["poll"]).status.success());
    let moved = &server.requests("private-moved.xml")[0];
    assert_eq!(moved.headers["authorization"], "Bearer t0k3n");
    for file in ["feedhound.db", "feedhound.db-wal"] {
        let bytes = std::fs::read(app.dir.path().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(5).any(|window| window == b"t0k3n"),
            "the token is not stored in {file}"
        );
    }
    let check = app.cli(&["check"]);
    for text in [
        logs.as_ref(),
        feeds.as_ref(),
        &String::from_utf8_lossy(&check.stdout),
    ] {
        assert!(!text.contains("t0k3n"), "{text}");
    }
}

#[test]
fn secrets_kept_out_of_the_config_are_read_from_the_environment_and_files() {
    let server = FeedServer::start();
    server.feed(
        "private.xml",
        rss(&["<guid>1</guid><title>Xiaomi opens a store</title>"]),
    );
    server.set("hook", Route::webhook(200));
    let app = App::new(
        &[],
        &format!(
            "[[feed]]\nurl = \"{}\"\n\
             headers = {{ Authorization = {{ env = \"NEWS_TOKEN\" }} }}\n\
             [[company]]\nname = \"Xiaomi\"\n\
             [[notify]]\nurl = {{ env = \"HOOK_URL\" }}\nsecret = {{ file = \"hook.key\" }}\n\
             backlog = true\n",
            server.url("private.xml")
        ),
    );
    std::fs::write(app.dir.path().join("hook.key"), "k3y\n").unwrap();
    let hook_url = server.url("hook");
    let output = app.cli_with_env(
        &[("NEWS_TOKEN", "Bearer t0k3n"), ("HOOK_URL", &hook_url)],
        &["poll"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        server.requests("private.xml")[0].headers["authorization"],
        "Bearer t0k3n"
    );
    let alert = &server.requests("hook")[0];
    assert_eq!(
        alert.headers["x-feedhound-signature"],
        feedhound::notify::signature("k3y", &alert.body),
        "signed with the file's key, without its line break"
    );
    // Without the variables, the commands that fetch or send say which one is missing, and
    // where; those that only read the database do not need them.
    let unset = app.cli(&["check"]);
    assert_eq!(unset.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unset.stderr);
    for expected in [
        "feedhound.toml:8: feed[1].headers.Authorization: cannot read the environment variable NEWS_TOKEN: it is not set here",
        "feedhound.toml:12: notify[1].url: cannot read the environment variable HOOK_URL: it is not set here",
    ] {
        assert!(stderr.contains(expected), "{stderr}");
    }
    let mentions = app.cli(&["mentions", "--format", "json"]);
    assert!(mentions.status.success());
    assert!(String::from_utf8_lossy(&mentions.stdout).contains("Xiaomi opens a store"));
    let empty = app.cli_with_env(&[("NEWS_TOKEN", ""), ("HOOK_URL", &hook_url)], &["poll"]);
    assert!(
        String::from_utf8_lossy(&empty.stderr)
            .contains("headers.Authorization: the environment variable NEWS_TOKEN is empty"),
        "{}",
        String::from_utf8_lossy(&empty.stderr)
    );
    let stored = [app.db_path(), app.db_path().with_extension("db-wal")]
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .flatten()
        .collect::<Vec<u8>>();
    let stored = String::from_utf8_lossy(&stored);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    for secret in ["t0k3n", "k3y", "/hook"] {
        assert!(!stored.contains(secret), "{secret} is not stored");
        assert!(!said.contains(secret), "{secret} is not logged: {said}");
    }
}

#[test]
fn proxies_named_in_the_environment_carry_feeds_and_alerts_except_where_no_proxy_says() {
    let proxy = FeedServer::start();
    proxy.feed(
        "proxied.xml",
        rss(&["<guid>1</guid><title>Xiaomi opens a store</title>"]),
    );
    proxy.set("hook", Route::webhook(200));
    let direct = FeedServer::start();
    direct.feed("direct.xml", rss(&["<guid>2</guid><title>Two</title>"]));
    let app = App::new(
        &[
            "http://news.example.invalid/proxied.xml".to_owned(),
            "https://secure.example.invalid/tls.xml".to_owned(),
            direct.url("direct.xml"),
        ],
        "[[company]]\nname = \"Xiaomi\"\n\
         [[notify]]\nurl = \"http://hooks.example.invalid/hook\"\nbacklog = true\n",
    );
    let proxy_url = proxy.url("");
    // ALL_PROXY, in lower case, stands in for HTTPS_PROXY.
    let output = app.cli_with_env(
        &[
            ("HTTP_PROXY", &proxy_url),
            ("all_proxy", &proxy_url),
            ("NO_PROXY", "127.0.0.1"),
        ],
        &["poll"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let feed = &proxy.requests("proxied.xml")[0];
    assert_eq!(feed.headers["host"], "news.example.invalid");
    let alert = &proxy.requests("hook")[0];
    assert_eq!(alert.headers["host"], "hooks.example.invalid");
    assert!(String::from_utf8_lossy(&alert.body).contains("Xiaomi opens a store"));
    // An https feed goes through the proxy as a tunnel, which this proxy refuses.
    let tunnels: Vec<_> = proxy
        .all_requests()
        .into_iter()
        .filter(|seen| seen.path == "secure.example.invalid:443")
        .collect();
    assert_eq!(tunnels.len(), 1, "{:?}", proxy.all_requests());
    assert_eq!(
        direct.requests("direct.xml").len(),
        1,
        "NO_PROXY is honoured"
    );
    assert!(
        stdout.contains("feeds: 2 ok, 0 not modified, 1 failed"),
        "{stdout}"
    );
    let tunnel_error: String = app
        .db()
        .query_row(
            "SELECT last_error FROM feeds WHERE url LIKE 'https://secure.%'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(
        tunnel_error.starts_with(
            "network error: through the proxy set in the environment (HTTPS_PROXY or ALL_PROXY, \
             in either case): "
        ),
        "{tunnel_error}"
    );
}

#[test]
fn a_socks_proxy_named_in_the_environment_resolves_names_for_feeds_and_alerts() {
    let server = FeedServer::start();
    server.feed(
        "socks.xml",
        rss(&["<guid>1</guid><title>Xiaomi opens a store</title>"]),
    );
    server.set("hook", Route::webhook(200));
    let socks = SocksProxy::start(server.addr());
    let app = App::new(
        &["http://news.example.invalid/socks.xml".to_owned()],
        "[[company]]\nname = \"Xiaomi\"\n\
         [[notify]]\nurl = \"http://hooks.example.invalid/hook\"\nbacklog = true\n",
    );
    let poll_through = |proxy: &str| app.cli_with_env(&[("ALL_PROXY", proxy)], &["poll"]);
    // socks5h: the proxy, not feedhound, resolves the names (these could not be resolved here).
    let output = poll_through(&format!("socks5h://{}", socks.url_authority));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("feeds: 1 ok"),
        "{stdout}"
    );
    assert_eq!(
        socks.asked(),
        ["news.example.invalid:80", "hooks.example.invalid:80"]
    );
    assert_eq!(
        server.requests("socks.xml")[0].headers["host"],
        "news.example.invalid"
    );
    assert!(
        String::from_utf8_lossy(&server.requests("hook")[0].body).contains("Xiaomi opens a store")
    );

    // socks5: feedhound resolves the name and asks for the address.
    let direct = App::new(&[server.url("socks.xml")], "");
    let proxy = format!("socks5://{}", socks.url_authority);
    let output = direct.cli_with_env(&[("ALL_PROXY", &proxy)], &["poll"]);
    assert!(output.status.success());
    assert_eq!(socks.asked()[2], server.addr().to_string());
    assert_eq!(direct.count("SELECT count(*) FROM entries"), 1);

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = poll_through(&format!("socks5h://{closed}"));
    assert!(output.status.success());
    let error: String = app
        .db()
        .query_row("SELECT last_error FROM feeds", [], |row| row.get(0))
        .unwrap();
    assert!(
        error.starts_with(
            "network error: through the SOCKS proxy set in the environment (ALL_PROXY, \
             HTTPS_PROXY or HTTP_PROXY, in either case): "
        ),
        "{error}"
    );
}

#[test]
fn a_damaged_search_index_does_not_stop_polling_and_reindex_repairs_it() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Tugboat strike</title>"]),
    );
    let app = App::new(&[server.url("a.xml")], "");
    assert!(app.cli(&["poll"]).status.success());
    let indexed = app.cli(&["reindex", "--pending"]);
    assert_eq!(
        String::from_utf8_lossy(&indexed.stdout).trim(),
        "search index up to date; entries added: 1"
    );
    // Garble the index's structure record (FTS5 keeps it as row 10 of its data table).
    app.db()
        .execute(
            "UPDATE entries_fts_data SET block = x'ffffffff' WHERE id = 10",
            [],
        )
        .unwrap();
    // One entry edited (its old text must leave the index), one new.
    server.feed(
        "a.xml",
        rss(&[
            "<guid>1</guid><title>Tugboat strike ends</title>",
            "<guid>2</guid><title>Ferry delays</title>",
        ]),
    );

    let poll = app.cli(&["poll"]);
    let stderr = String::from_utf8_lossy(&poll.stderr);
    assert!(poll.status.success(), "{stderr}");
    assert!(
        stderr.contains("search index is damaged") && stderr.contains("feedhound reindex"),
        "{stderr}"
    );
    assert!(
        poll_line(&poll).contains("1 new, 1 updated"),
        "{}",
        poll_line(&poll)
    );
    // Set aside, the index no longer stands in the way, nor fills the log.
    server.feed(
        "a.xml",
        rss(&[
            "<guid>1</guid><title>Tugboat strike ends</title>",
            "<guid>2</guid><title>Ferry delays</title>",
            "<guid>3</guid><title>Dredger ordered</title>",
        ]),
    );
    let poll = app.cli(&["poll"]);
    assert!(poll.status.success());
    assert!(poll_line(&poll).contains("1 new"), "{}", poll_line(&poll));
    assert!(!String::from_utf8_lossy(&poll.stderr).contains("damaged"));

    let reindex = app.cli(&["reindex"]);
    assert!(reindex.status.success());
    assert_eq!(
        String::from_utf8_lossy(&reindex.stdout).trim(),
        "search index rebuilt: 3 entries"
    );
    for (word, title) in [
        ("ferry", "Ferry delays"),
        ("ends", "Tugboat strike ends"),
        ("dredger", "Dredger ordered"),
    ] {
        let found = app.cli(&["search", word, "--format", "json"]);
        let hits: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
        assert_eq!(hits.as_array().unwrap().len(), 1, "{word}: {hits}");
        assert_eq!(hits[0]["title"], title);
    }
    app.db()
        .execute(
            "INSERT INTO entries_fts (entries_fts, rank) VALUES ('integrity-check', 1)",
            [],
        )
        .expect("the rebuilt index matches the entries");
}

fn poll_line(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn retrying_alerts_without_a_notify_target_says_the_config_has_none() {
    let app = App::new(&[], "");
    let output = app.cli(&["alerts", "--retry-now"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("feedhound.toml has no [[notify]] target to retry"),
        "{stderr}"
    );
}

/// Two feeds of stories about four companies, most from March 2020, one (Apple's) from
/// yesterday and one (Nokia's) dated tomorrow, in an app that has polled them; and the time
/// those two are a day from.
fn companies_in_the_news() -> (FeedServer, App, chrono::DateTime<chrono::Utc>) {
    let server = FeedServer::start();
    let item = |id: &str, title: &str, date: &str| {
        format!(
            "<guid>{id}</guid><link>https://news.example/{id}</link><title>{title}</title>\
             <pubDate>{date}</pubDate>"
        )
    };
    let now = chrono::Utc::now();
    let yesterday = (now - chrono::Duration::days(1)).to_rfc2822();
    // A publisher's clock ahead of ours, within what parsing lets through.
    let tomorrow = (now + chrono::Duration::days(1)).to_rfc2822();
    server.feed(
        "a.xml",
        rss(&[
            &item(
                "launch",
                "Xiaomi launches a phone",
                "Tue, 10 Mar 2020 09:00:00 GMT",
            ),
            &item(
                "rivals",
                "Xiaomi and Samsung cut prices",
                "Mon, 09 Mar 2020 09:00:00 GMT",
            ),
            &item("results", "Xiaomi results", "Tue, 03 Mar 2020 09:00:00 GMT"),
            &item("older", "Xiaomi in 2019", "Tue, 03 Dec 2019 09:00:00 GMT"),
            &item(
                "carried",
                "Xiaomi opens a lab",
                "Fri, 06 Mar 2020 09:00:00 GMT",
            ),
            &item(
                "midnight",
                "Nokia at midnight",
                "Sun, 08 Mar 2020 00:00:00 GMT",
            ),
            &item("end", "Apple at the end", "Wed, 11 Mar 2020 00:00:00 GMT"),
            &item("today", "Apple opens a store", &yesterday),
            &item("ahead", "Nokia tomorrow", &tomorrow),
        ]),
    );
    server.feed(
        "b.xml",
        rss(&[
            // The same story as a.xml's: counted once, from two sources.
            &item(
                "launch",
                "Xiaomi launches a phone",
                "Tue, 10 Mar 2020 10:00:00 GMT",
            ),
            &item(
                "fab",
                "Samsung builds a fab",
                "Wed, 04 Mar 2020 09:00:00 GMT",
            ),
            &item(
                "memory",
                "Samsung memory prices",
                "Thu, 05 Mar 2020 09:00:00 GMT",
            ),
            &item("chips", "Samsung chips", "Fri, 06 Mar 2020 09:00:00 GMT"),
            // Carried on in this period: the story stays in the period before, where a.xml
            // named Xiaomi first.
            &item(
                "carried",
                "Xiaomi opens a lab",
                "Mon, 09 Mar 2020 09:00:00 GMT",
            ),
        ]),
    );
    // Before every period the other tests count in: a source of its own for `--feed`.
    server.feed(
        "c.xml",
        rss(&[&item(
            "gadget",
            "Nokia gadget",
            "Sun, 01 Mar 2020 09:00:00 GMT",
        )]),
    );
    let app = App::new(
        &[],
        &format!(
            "[[feed]]\nurl = \"{}\"\nname = \"Wire A\"\ntags = [\"Wires\", \"daily\"]\n\n\
             [[feed]]\nurl = \"{}\"\ntags = [\"blogs\"]\n\n\
             [[feed]]\nurl = \"{}\"\nname = \"Wire C\"\n\n\
             [[company]]\nname = \"Samsung\"\nticker = \"005930.KS\"\n\n\
             [[company]]\nname = \"Xiaomi\"\n\n[[company]]\nname = \"Apple\"\n\n\
             [[company]]\nname = \"Nokia\"\n",
            server.url("a.xml"),
            server.url("b.xml"),
            server.url("c.xml")
        ),
    );
    assert!(app.cli(&["poll"]).status.success());
    (server, app, now)
}

/// A row of [`company_summary`].
fn activity(name: &str, stories: i64, previous: i64, sources: i64) -> (String, i64, i64, i64) {
    (name.to_owned(), stories, previous, sources)
}

/// `companies --format json` rows as (company, stories, previous_stories, sources).
fn company_summary(rows: &serde_json::Value) -> Vec<(String, i64, i64, i64)> {
    let row = |row: &serde_json::Value| {
        (
            row["company"].as_str().unwrap().to_owned(),
            row["stories"].as_i64().unwrap(),
            row["previous_stories"].as_i64().unwrap(),
            row["sources"].as_i64().unwrap(),
        )
    };
    rows.as_array().unwrap().iter().map(row).collect()
}

#[test]
fn companies_counts_each_companys_stories_in_a_period_against_the_one_before() {
    let (_server, app, _) = companies_in_the_news();
    let period = ["--since", "2020-03-08", "--until", "2020-03-11"];
    let json = app.cli(&[&["companies", "--format", "json"][..], &period].concat());
    assert!(json.status.success(), "{json:?}");
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let summary = company_summary(&rows);
    assert_eq!(
        summary,
        [
            activity("Xiaomi", 2, 1, 2),
            activity("Nokia", 1, 0, 1),
            activity("Samsung", 1, 2, 1),
            activity("Apple", 0, 0, 0),
        ],
        "most stories first; the period before is as long: 2020-03-05 to 03-08; --since is in \
         the period, --until is not"
    );
    assert_eq!(rows[0]["latest_at"], "2020-03-10 10:00:00");
    assert_eq!(rows[2]["ticker"], "005930.KS");

    let table = app.cli(&[&["companies"][..], &period].concat());
    let table = String::from_utf8_lossy(&table.stdout);
    let changes: Vec<_> = table
        .lines()
        .skip(3)
        .map(|line| {
            line.split_whitespace()
                .nth(3)
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(changes, ["+100%", "new", "-50%", "-"], "{table}");

    let csv = app.cli(&[&["companies", "--format", "csv"][..], &period].concat());
    assert!(
        String::from_utf8_lossy(&csv.stdout).starts_with(
            "company,ticker,stories,previous_stories,sources,latest_at\n\
             Xiaomi,,2,1,2,2020-03-10 10:00:00\n"
        ),
        "{csv:?}"
    );

    // Unless told, the period is the last 7 days, and runs on past now.
    let recent = app.cli(&["companies", "--format", "json"]);
    let recent: serde_json::Value = serde_json::from_slice(&recent.stdout).unwrap();
    let recent: Vec<_> = (0..3)
        .map(|n| (recent[n]["company"].as_str(), recent[n]["stories"].as_i64()))
        .collect();
    assert_eq!(
        recent,
        [
            (Some("Apple"), Some(1)),
            (Some("Nokia"), Some(1)),
            (Some("Samsung"), Some(0))
        ]
    );
}

/// `companies --by SPAN --format json` over `period`: each company's stories per span, in the
/// order listed, and the spans' first days.
fn stories_by(app: &App, by: &str, period: &[&str]) -> (Vec<(String, Vec<i64>)>, Vec<String>) {
    let args = [&["companies", "--format", "json", "--by", by][..], period].concat();
    let output = app.cli(&args);
    assert!(output.status.success(), "{output:?}");
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut companies: Vec<(String, Vec<i64>)> = Vec::new();
    let mut spans = Vec::new();
    for row in rows.as_array().unwrap() {
        let company = row["company"].as_str().unwrap();
        if companies.last().is_none_or(|(last, _)| last != company) {
            companies.push((company.to_owned(), Vec::new()));
        }
        companies
            .last_mut()
            .unwrap()
            .1
            .push(row["stories"].as_i64().unwrap());
        if companies.len() == 1 {
            spans.push(row["period"].as_str().unwrap().to_owned());
        }
    }
    (companies, spans)
}

#[test]
fn companies_by_day_week_or_month_counts_each_story_once_in_the_span_it_was_first_in() {
    let (_server, app, now) = companies_in_the_news();
    let owned = |name: &str, stories: &[i64]| (name.to_owned(), stories.to_vec());

    let (by_day, days) = stories_by(
        &app,
        "day",
        &["--since", "2020-03-02", "--until", "2020-03-12"],
    );
    assert_eq!(days.first().map(String::as_str), Some("2020-03-02"));
    assert_eq!(days.last().map(String::as_str), Some("2020-03-11"));
    assert_eq!(days.len(), 10);
    assert_eq!(
        by_day,
        [
            // fab, memory, chips, then rivals (with Xiaomi).
            owned("Samsung", &[0, 0, 1, 1, 1, 0, 0, 1, 0, 0]),
            // results, the lab (not again on the 9th, when b.xml carried it on), rivals, launch
            // (once, though two feeds ran it).
            owned("Xiaomi", &[0, 1, 0, 0, 1, 0, 0, 1, 1, 0]),
            owned("Apple", &[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            owned("Nokia", &[0, 0, 0, 0, 0, 0, 1, 0, 0, 0]),
        ],
        "most stories first, then by name; days without a story are zeros"
    );

    // Weeks run from Monday: Nokia's story at midnight on Sunday the 8th is the first week's.
    let (by_week, weeks) = stories_by(
        &app,
        "week",
        &["--since", "2020-03-02", "--until", "2020-03-16"],
    );
    assert_eq!(weeks, ["2020-03-02", "2020-03-09"]);
    assert_eq!(
        by_week,
        [
            owned("Samsung", &[3, 1]),
            owned("Xiaomi", &[2, 2]),
            owned("Apple", &[0, 1]),
            owned("Nokia", &[1, 0]),
        ]
    );

    // Over any period, the spans add up to what `companies` counts: a story first named before
    // the period is in neither, even when the first span starts before the period does (the
    // lab, first on the 6th, on again on the 9th).
    let period = ["--since", "2020-03-07", "--until", "2020-03-11"];
    let plain = app.cli(&[&["companies", "--format", "json"][..], &period].concat());
    let plain: serde_json::Value = serde_json::from_slice(&plain.stdout).unwrap();
    let (by_week, weeks) = stories_by(&app, "week", &period);
    assert_eq!(weeks, ["2020-03-02", "2020-03-09"]);
    assert_eq!(by_week[0], owned("Xiaomi", &[0, 2]));
    for (company, stories) in &by_week {
        let counted = plain
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["company"] == company.as_str())
            .unwrap()["stories"]
            .as_i64()
            .unwrap();
        assert_eq!(stories.iter().sum::<i64>(), counted, "{company}");
    }

    let table = app.cli(&[
        "companies",
        "--by",
        "week",
        "--since",
        "2020-03-02",
        "--until",
        "2020-03-16",
    ]);
    let table = String::from_utf8_lossy(&table.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("Stories per week (UTC, from Monday")
            && lines[2]
                .split_whitespace()
                .eq(["COMPANY", "03-02", "03-09", "TOTAL"])
            && lines[3].split_whitespace().eq(["Samsung", "3", "1", "4"]),
        "{table}"
    );
    let csv = app.cli(&[
        "companies",
        "--by",
        "day",
        "--format",
        "csv",
        "--since",
        "2020-03-02",
        "--until",
        "2020-03-12",
    ]);
    assert!(
        String::from_utf8_lossy(&csv.stdout).starts_with(
            "company,ticker,period,stories\n\
             Samsung,005930.KS,2020-03-02,0\n\
             Samsung,005930.KS,2020-03-03,0\n\
             Samsung,005930.KS,2020-03-04,1\n"
        ),
        "{csv:?}"
    );

    // Calendar months: Xiaomi's story of December 2019 in the first.
    let (by_month, months) = stories_by(
        &app,
        "month",
        &["--since", "2019-12-01", "--until", "2020-04-01"],
    );
    assert_eq!(
        months,
        ["2019-12-01", "2020-01-01", "2020-02-01", "2020-03-01"]
    );
    assert_eq!(
        by_month,
        [
            owned("Xiaomi", &[1, 0, 0, 4]),
            owned("Samsung", &[0, 0, 0, 4]),
            // At midnight on the 8th, and c.xml's gadget on the 1st.
            owned("Nokia", &[0, 0, 0, 2]),
            owned("Apple", &[0, 0, 0, 1]),
        ]
    );
    let table = app.cli(&[
        "companies",
        "--by",
        "month",
        "--since",
        "2019-12-01",
        "--until",
        "2020-04-01",
    ]);
    let table = String::from_utf8_lossy(&table.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("Stories per month (UTC) from 2019-12-01 00:00:00")
            && lines[2]
                == format!(
                    "{:<24}  2019-12  2020-01  2020-02  2020-03  TOTAL",
                    "COMPANY"
                )
            && lines[3]
                == format!(
                    "{:<24}        1        0        0        4      5",
                    "Xiaomi"
                ),
        "{table}"
    );

    // Unless told, 14 whole days, 8 weeks or 12 months, the last holding the period's end.
    let until = ["--until", "2020-03-11T12:00:00Z"];
    let (_, days) = stories_by(&app, "day", &until);
    assert_eq!(
        (days.len(), days[0].as_str(), days[13].as_str()),
        (14, "2020-02-27", "2020-03-11")
    );
    let (_, weeks) = stories_by(&app, "week", &until);
    assert_eq!(
        (weeks.len(), weeks[0].as_str(), weeks[7].as_str()),
        (8, "2020-01-20", "2020-03-09")
    );
    let (_, months) = stories_by(&app, "month", &until);
    assert_eq!(
        (months.len(), months[0].as_str(), months[11].as_str()),
        (12, "2019-04-01", "2020-03-01")
    );

    // With no --until, the spans run on to a story dated ahead of now, as `companies` counts it.
    let since = (now - chrono::Duration::days(1)).date_naive();
    let (recent, days) = stories_by(&app, "day", &["--since", &since.to_string()]);
    let tomorrow = (now + chrono::Duration::days(1)).date_naive().to_string();
    assert_eq!(days.last(), Some(&tomorrow), "{days:?}");
    let stories_of = |company: &str| {
        recent
            .iter()
            .find(|(name, _)| name == company)
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(stories_of("Apple").first(), Some(&1), "{recent:?}");
    assert_eq!(stories_of("Nokia").last(), Some(&1), "{recent:?}");

    // A table wider than a month of days is refused, with what to do instead.
    let wide = app.cli(&[
        "companies",
        "--by",
        "day",
        "--since",
        "2020-01-01",
        "--until",
        "2020-03-01",
    ]);
    assert_eq!(wide.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&wide.stderr)
            .contains("the period has 60 days, too many columns for a table (at most 31)"),
        "{wide:?}"
    );
    let (_, days) = stories_by(
        &app,
        "day",
        &["--since", "2020-01-01", "--until", "2020-03-01"],
    );
    assert_eq!(days.len(), 60, "JSON has no such limit");
}

#[test]
fn reports_count_read_and_print_times_on_the_time_zone_given() {
    let (_server, app, _) = companies_in_the_news();
    let owned = |name: &str, stories: &[i64]| (name.to_owned(), stories.to_vec());
    let days = ["--since", "2020-03-02", "--until", "2020-03-12"];
    let new_york = [&days[..], &["--time-zone", "America/New_York"]].concat();

    // Nokia's story at 00:00 UTC on Sunday the 8th is Saturday evening in New York (the
    // clocks went forward there that night), and Apple's at 00:00 on the 11th the 10th's.
    let (utc, _) = stories_by(&app, "day", &days);
    let (local, spans) = stories_by(&app, "day", &new_york);
    assert_eq!(spans.first().map(String::as_str), Some("2020-03-02"));
    assert_eq!(spans.len(), 10, "{spans:?}");
    assert_eq!(utc[2], owned("Apple", &[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]));
    assert_eq!(utc[3], owned("Nokia", &[0, 0, 0, 0, 0, 0, 1, 0, 0, 0]));
    assert_eq!(
        local,
        [
            owned("Samsung", &[0, 0, 1, 1, 1, 0, 0, 1, 0, 0]),
            owned("Xiaomi", &[0, 1, 0, 0, 1, 0, 0, 1, 1, 0]),
            owned("Apple", &[0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            owned("Nokia", &[0, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
        ]
    );
    // 22:00 in New York is 03:00 UTC the next day: the first span is the day it is in there.
    let (_, spans) = stories_by(
        &app,
        "day",
        &[
            "--since",
            "2020-03-02 22:00",
            "--until",
            "2020-03-04",
            "--time-zone",
            "America/New_York",
        ],
    );
    assert_eq!(spans, ["2020-03-02", "2020-03-03"]);
    // Unless told, the weeks run to the one holding the period's end on that clock: 02:00 UTC
    // on Monday the 9th is still Sunday in New York.
    let until = ["--until", "2020-03-09T02:00:00Z"];
    let (_, weeks) = stories_by(&app, "week", &until);
    assert_eq!(weeks.last().map(String::as_str), Some("2020-03-09"));
    let (_, weeks) = stories_by(
        &app,
        "week",
        &[&until[..], &["--time-zone", "America/New_York"]].concat(),
    );
    assert_eq!(
        (weeks.len(), weeks[0].as_str(), weeks[7].as_str()),
        (8, "2020-01-13", "2020-03-02")
    );
    let table = app.cli(&[&["companies", "--by", "day"][..], &new_york].concat());
    assert!(
        String::from_utf8_lossy(&table.stdout).starts_with(
            "Stories per day (America/New_York) from 2020-03-02 00:00:00 to 2020-03-12 00:00:00:"
        ),
        "{table:?}"
    );

    // A date without an offset is midnight on that clock; one with an offset is as written.
    let titles = |args: &[&str]| -> Vec<String> {
        let output = app.cli(&[args, &["--format", "json"]].concat());
        assert!(output.status.success(), "{args:?}: {output:?}");
        let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let rows = rows.as_array().unwrap().iter();
        rows.map(|row| row["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let the_11th = ["mentions", "--since", "2020-03-11", "--until", "2020-03-12"];
    assert_eq!(titles(&the_11th), ["Apple at the end"]);
    let in_new_york = [&the_11th[..], &["--time-zone", "America/New_York"]].concat();
    assert!(titles(&in_new_york).is_empty());
    assert_eq!(
        titles(&[
            "search",
            "Apple",
            "--since",
            "2020-03-10T20:00:00-04:00",
            "--until",
            "2020-03-10 20:00:01",
            "--time-zone",
            "America/New_York"
        ]),
        ["Apple at the end"]
    );

    // Tables print times on the clock; JSON keeps them in UTC, as the database does.
    let apple = [
        "mentions",
        "--company",
        "Apple",
        "--since",
        "2020-03-10",
        "--until",
        "2020-03-11",
        "--time-zone",
        "America/New_York",
    ];
    let table = app.cli(&apple);
    let table = String::from_utf8_lossy(&table.stdout);
    let lines: Vec<&str> = table.lines().collect();
    let header = lines[0].split_whitespace().collect::<Vec<_>>();
    assert_eq!(header[..2], ["PUBLISHED", "(America/New_York)"], "{table}");
    let row = lines[1].split_whitespace().collect::<Vec<_>>();
    assert_eq!(row[..3], ["2020-03-10", "20:00:00", "Apple"], "{table}");
    // The columns line up under the header, and the link under the title.
    let title_at = lines[0].find("TITLE").unwrap();
    assert_eq!(lines[1].find("Apple at the end"), Some(title_at), "{table}");
    assert_eq!(
        lines[2].find(|c: char| !c.is_whitespace()),
        Some(title_at),
        "{table}"
    );
    let json = app.cli(&[&apple[..], &["--format", "json"]].concat());
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json[0]["published_at"], "2020-03-11 00:00:00");
    let csv = app.cli(&[&apple[..], &["--format", "csv"]].concat());
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(
        csv.lines()
            .nth(1)
            .is_some_and(|row| row.starts_with("2020-03-11 00:00:00,")),
        "{csv}"
    );
    // Calendar months on the clock: c.xml's gadget, at 09:00 UTC on 1 March, is February's in
    // Honolulu.
    let (months, _) = stories_by(
        &app,
        "month",
        &[
            "--since",
            "2020-02-01",
            "--until",
            "2020-04-01",
            "--time-zone",
            "Pacific/Honolulu",
        ],
    );
    let nokia = months.iter().find(|(name, _)| name == "Nokia");
    assert_eq!(nokia, Some(&owned("Nokia", &[1, 1])), "{months:?}");
    // A swapped period's error shows the bounds as they were written, on the clock.
    let swapped = app.cli(&[
        "mentions",
        "--since",
        "2020-03-02",
        "--until",
        "2020-03-01 12:00",
        "--time-zone",
        "Asia/Tokyo",
    ]);
    assert!(
        String::from_utf8_lossy(&swapped.stderr).contains(
            "--until (2020-03-01 12:00:00) is not later than --since (2020-03-02 00:00:00)"
        ),
        "{swapped:?}"
    );
    let search = app.cli(&["search", "Apple", "--time-zone", "Asia/Tokyo"]);
    let search = String::from_utf8_lossy(&search.stdout);
    assert!(
        search.starts_with("Times in Asia/Tokyo:\n") && search.contains("\n2020-03-11 09:00:00  "),
        "{search}"
    );
    let companies = app.cli(&[
        "companies",
        "--since",
        "2020-03-10",
        "--until",
        "2020-03-11",
        "--time-zone",
        "America/New_York",
    ]);
    let companies = String::from_utf8_lossy(&companies.stdout);
    assert!(
        companies.starts_with(
            "Stories from 2020-03-10 00:00:00 to 2020-03-11 00:00:00 (America/New_York),"
        ) && companies
            .lines()
            .any(|line| line.starts_with("Apple") && line.ends_with("2020-03-10 20:00:00")),
        "{companies}"
    );

    // `[reports] time_zone` is the clock unless --time-zone says otherwise.
    let mut config = std::fs::read_to_string(&app.config_path).unwrap();
    config.push_str("\n[reports]\ntime_zone = \"America/New_York\"\n");
    std::fs::write(&app.config_path, config).unwrap();
    assert_eq!(stories_by(&app, "day", &days).0, local);
    assert_eq!(
        titles(&[&the_11th[..], &["--time-zone", "UTC"]].concat()),
        ["Apple at the end"]
    );
    // On UTC, the clock the database keeps, the header names no zone.
    let utc = app.cli(&[&the_11th[..], &["--time-zone", "UTC"]].concat());
    let utc = String::from_utf8_lossy(&utc.stdout);
    assert!(
        utc.starts_with(&format!("PUBLISHED{:12}COMPANIES", ""))
            && utc
                .lines()
                .nth(1)
                .is_some_and(|row| row.starts_with("2020-03-11 00:00:00  Apple ")),
        "{utc}"
    );

    // A zone misspelt is an error that says how the IANA database spells it.
    let misspelt = app.cli(&["mentions", "--time-zone", "america/new_york"]);
    assert_eq!(misspelt.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&misspelt.stderr)
            .contains("\"america/new_york\" is spelt \"America/New_York\" in the IANA database"),
        "{misspelt:?}"
    );
}

#[test]
fn mentions_companies_and_search_read_only_the_feeds_named_or_tagged() {
    let (server, app, _) = companies_in_the_news();
    let run_json = |args: &[&str]| -> serde_json::Value {
        let output = app.cli(&[args, &["--format", "json"]].concat());
        assert!(output.status.success(), "{args:?}: {output:?}");
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let titles = |args: &[&str]| -> Vec<String> {
        let mut titles: Vec<String> = run_json(args)
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["title"].as_str().unwrap().to_owned())
            .collect();
        titles.sort();
        titles
    };
    let march = ["--since", "2020-03-01", "--until", "2020-03-12"];
    let wires = titles(&[&["mentions", "--tag", "wires"][..], &march].concat());
    assert_eq!(
        wires,
        [
            "Apple at the end",
            "Nokia at midnight",
            "Xiaomi and Samsung cut prices",
            "Xiaomi launches a phone",
            "Xiaomi opens a lab",
            "Xiaomi results",
        ],
        "a tag in any case"
    );
    assert_eq!(
        titles(&[&["mentions", "--feed", "wire a"][..], &march].concat()),
        wires,
        "a feed by its name, in any case"
    );
    let b_url = server.url("b.xml");
    assert_eq!(
        titles(
            &[
                &["mentions", "--feed", &b_url, "--company", "Xiaomi"][..],
                &march
            ]
            .concat()
        ),
        ["Xiaomi launches a phone", "Xiaomi opens a lab"],
        "a feed by its URL; a story two feeds carried is in either's"
    );
    let mut both = titles(&[&["mentions", "--tag", "blogs"][..], &march].concat());
    both.extend(wires);
    both.sort();
    both.dedup();
    assert_eq!(
        titles(&["mentions", "--feed", "Wire C"]),
        ["Nokia gadget"],
        "without a period or a company"
    );
    assert_eq!(
        titles(
            &[
                &["mentions", "--tag", "blogs", "--feed", "Wire A"][..],
                &march
            ]
            .concat()
        ),
        both,
        "--feed and --tag add up, and leave Wire C out"
    );

    // Counted as if the feeds chosen were the only ones: b.xml named Xiaomi in the lab story on
    // the 9th, the first time that feed did, though a.xml had on the 6th.
    let period = ["--since", "2020-03-08", "--until", "2020-03-11"];
    let companies = run_json(&[&["companies", "--tag", "blogs"][..], &period].concat());
    let summary = company_summary(&companies);
    assert_eq!(
        summary,
        [
            activity("Xiaomi", 2, 0, 1),
            activity("Apple", 0, 0, 0),
            activity("Nokia", 0, 0, 0),
            activity("Samsung", 0, 2, 0),
        ]
    );
    let (by_day, _) = stories_by(
        &app,
        "day",
        &[
            "--since",
            "2020-03-02",
            "--until",
            "2020-03-12",
            "--tag",
            "blogs",
        ],
    );
    assert_eq!(
        by_day,
        [
            ("Samsung".to_owned(), vec![0, 0, 1, 1, 1, 0, 0, 0, 0, 0]),
            ("Xiaomi".to_owned(), vec![0, 0, 0, 0, 0, 0, 0, 1, 1, 0]),
            ("Apple".to_owned(), vec![0; 10]),
            ("Nokia".to_owned(), vec![0; 10]),
        ]
    );

    let feeds = run_json(&["feeds"]);
    let a_id = feeds
        .as_array()
        .unwrap()
        .iter()
        .find(|feed| feed["url"] == server.url("a.xml").as_str())
        .unwrap()["id"]
        .to_string();
    assert_eq!(
        titles(&["search", "Samsung", "--feed", &a_id]),
        ["Xiaomi and Samsung cut prices"],
        "a feed by its ID"
    );
    assert_eq!(
        titles(&["search", "Samsung", "--tag", "blogs"]),
        [
            "Samsung builds a fab",
            "Samsung chips",
            "Samsung memory prices"
        ]
    );

    // Added to the config, not yet read by a daemon or a poll.
    let mut config = std::fs::read_to_string(&app.config_path).unwrap();
    config.push_str(&format!(
        "\n[[feed]]\nurl = \"{}\"\nname = \"Wire D\"\n",
        server.url("d.xml")
    ));
    std::fs::write(&app.config_path, config).unwrap();
    for (args, message) in [
        (
            &["mentions", "--tag", "radio"][..],
            "is named \"radio\"; its feeds' tags are: Wires, blogs, daily",
        ),
        (
            &["companies", "--feed", "Wire B"],
            "is named \"Wire B\": give a feed's `name`, its URL, or its ID",
        ),
        (&["search", "x", "--feed", "999"], "no feed has the ID 999"),
        (
            &["mentions", "--feed", "Wire D"],
            "the feeds chosen are not in the database yet",
        ),
    ] {
        let output = app.cli(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

/// `feeds` and `alerts` print their times on the reports' clock, as `mentions` does; their JSON
/// stays in UTC, the database's.
#[test]
fn feeds_and_alerts_print_their_times_on_the_reports_clock() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Xiaomi opens a store</title>"]),
    );
    server.set("hook", Route::webhook(500));
    let app = App::new(
        &[server.url("a.xml")],
        &format!(
            "[[company]]\nname = \"Xiaomi\"\n\n[[notify]]\nname = \"desk\"\nurl = \"{}\"\nbacklog = true\n",
            server.url("hook")
        ),
    );
    assert!(app.cli(&["poll"]).status.success());
    let json = |args: &[&str]| -> serde_json::Value {
        serde_json::from_slice(&app.cli(args).stdout).unwrap()
    };
    let feeds = json(&["feeds", "--format", "json"]);
    let fetched = feeds[0]["last_fetch_at"].as_str().unwrap().to_owned();
    // Kept to the millisecond, printed to the second.
    let next_poll = feeds[0]["next_poll_at"].as_str().unwrap().to_owned();
    // The delivery failed: the table shows when it is tried next (the later of its retry and,
    // were the target found down, the end of its rest).
    let alerts = json(&["alerts", "--format", "json"]);
    let next_attempt = [&alerts[0]["next_attempt_at"], &alerts[0]["resting_until"]]
        .into_iter()
        .filter_map(serde_json::Value::as_str)
        .max()
        .unwrap_or_else(|| panic!("no next attempt: {alerts}"))
        .to_owned();
    let shifted = |utc: &str, hours: i64| {
        let at = chrono::NaiveDateTime::parse_from_str(utc, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        (at + chrono::Duration::hours(hours))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let table = |args: &[&str]| String::from_utf8_lossy(&app.cli(args).stdout).into_owned();

    let in_tokyo = table(&["feeds", "--time-zone", "Asia/Tokyo"]);
    assert!(
        in_tokyo.starts_with("Times in Asia/Tokyo:\n")
            && in_tokyo.contains(&format!("  {}  ", shifted(&fetched, 9)))
            && in_tokyo.contains(&format!("  {}  ", shifted(&next_poll, 9))),
        "last fetch {fetched}, next poll {next_poll} UTC:\n{in_tokyo}"
    );
    let alerts_in_tokyo = table(&["alerts", "--time-zone", "Asia/Tokyo"]);
    assert!(
        alerts_in_tokyo.starts_with("Times in Asia/Tokyo:\n")
            && alerts_in_tokyo.contains(&shifted(&next_attempt, 9)),
        "next attempt {next_attempt} UTC:\n{alerts_in_tokyo}"
    );

    // `[reports] time_zone` is the clock unless --time-zone says otherwise; JSON stays UTC.
    let mut config = std::fs::read_to_string(&app.config_path).unwrap();
    config.push_str("\n[reports]\ntime_zone = \"Asia/Tokyo\"\n");
    std::fs::write(&app.config_path, config).unwrap();
    assert_eq!(table(&["feeds"]), in_tokyo);
    assert_eq!(table(&["alerts"]), alerts_in_tokyo);
    assert_eq!(json(&["feeds", "--format", "json"]), feeds);
    let on_utc = table(&["feeds", "--time-zone", "UTC"]);
    assert!(
        on_utc.starts_with("  ID  STATE") && on_utc.contains(&shifted(&fetched, 0)),
        "last fetch {fetched} UTC:\n{on_utc}"
    );
}

/// `mentions --format atom` is a feed any reader can follow: each flagged story once, newest
/// first, the newest 50 unless `--limit` says otherwise, and the same id for the same question.
#[test]
fn mentions_as_an_atom_feed_reads_back_with_each_story_once() {
    let server = FeedServer::start();
    let items: Vec<String> = (1..=55)
        .map(|n| {
            format!(
                "<guid>{n}</guid><title>Xiaomi story {n}</title><link>https://news.example/{n}?utm_source=rss</link>\
                 <pubDate>{}</pubDate><description>Xiaomi &amp; partners</description>",
                httpdate::fmt_http_date(
                    std::time::SystemTime::now() - std::time::Duration::from_secs((60 - n) * 3600)
                )
            )
        })
        .collect();
    server.feed(
        "a.xml",
        rss(&items.iter().map(String::as_str).collect::<Vec<_>>()),
    );
    // The same story from a second feed: one entry, with both sources.
    server.feed(
        "b.xml",
        rss(&[&items[54].replace("<guid>55</guid>", "<guid>b</guid>")]),
    );
    let app = App::new(
        &[server.url("a.xml"), server.url("b.xml")],
        "[[company]]\nname = \"Xiaomi\"\naliases = [\"小米\"]\n",
    );
    assert!(app.cli(&["poll"]).status.success());
    let read = |args: &[&str]| {
        let output = app.cli(&[&["mentions", "--format", "atom"][..], args].concat());
        assert!(output.status.success(), "{args:?}: {output:?}");
        let url = url::Url::parse("http://127.0.0.1/mentions.atom").unwrap();
        let parsed = feedhound::parse::parse_feed(&output.stdout, None, &url).unwrap();
        (String::from_utf8(output.stdout).unwrap(), parsed)
    };

    let (xml, feed) = read(&[]);
    assert_eq!(feed.title.as_deref(), Some("feedhound: flagged stories"));
    assert_eq!(feed.entries.len(), 50, "the newest 50 by default");
    let titles: Vec<&str> = feed
        .entries
        .iter()
        .filter_map(|e| e.title.as_deref())
        .collect();
    assert_eq!(titles[..2], ["Xiaomi story 55", "Xiaomi story 54"]);
    let newest = &feed.entries[0];
    assert_eq!(newest.link.as_deref(), Some("https://news.example/55"));
    let (story_id, seen): (i64, String) = app
        .db()
        .query_row(
            "SELECT s.id, replace(replace(replace(s.first_seen_at, '-', ''), ':', ''), ' ', '')
             FROM entries e JOIN stories s ON s.id = e.story_id WHERE e.guid = '55'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        newest.guid.as_deref(),
        Some(format!("urn:feedhound:story:{story_id}:{seen}").as_str())
    );
    let (first_entry, _) = xml.split_once("</entry>").unwrap();
    assert_eq!(
        first_entry.matches("&lt;li&gt;").count(),
        2,
        "both sources listed: {first_entry}"
    );
    assert!(xml.contains("<category term=\"Xiaomi\"/>"), "{xml}");

    let (_, feed) = read(&["--limit", "100"]);
    assert_eq!(feed.entries.len(), 55);
    let (by_alias, feed) = read(&["--company", "小米", "--limit", "3"]);
    assert_eq!(
        feed.title.as_deref(),
        Some("feedhound: stories about Xiaomi")
    );
    assert_eq!(feed.entries.len(), 3);
    let (by_name, _) = read(&["--company", "xiaomi", "--limit", "3"]);
    assert!(
        by_alias.contains("<id>urn:feedhound:mentions:company=Xiaomi</id>"),
        "{by_alias}"
    );
    assert_eq!(by_alias, by_name, "an alias asks the same question");
}

/// A report run beside the daemon must not queue behind its writes, nor look to it like another
/// writer: each commit by another process makes the daemon reload its recent titles and wake
/// every alert target.
#[test]
fn reading_commands_neither_wait_for_the_write_lock_nor_write() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Xiaomi opens a store</title>"]),
    );
    let app = App::new(
        &[server.url("a.xml")],
        "[[company]]\nname = \"Xiaomi\"\n\n[[notify]]\nname = \"team\"\nurl = \"http://127.0.0.1:9/hook\"\nbacklog = true\n",
    );
    // Long enough that a command waiting for the lock stands out from one that does not.
    let busy_timeout = std::time::Duration::from_secs(60);
    app.set_busy_timeout("60s");
    assert!(app.cli(&["poll"]).status.success());
    // A search first adds what the poll stored to its index: that one writes.
    assert!(app.cli(&["search", "store"]).status.success());
    let commands = [
        (&["mentions"][..], "Xiaomi opens a store"),
        (&["companies"], "Xiaomi"),
        (&["companies", "--by", "day"], "Xiaomi"),
        (&["feeds"], "a.xml"),
        (&["search", "store"], "Xiaomi opens a store"),
        (&["alerts"], "team"),
        (&["prune", "--dry-run", "--retain", "1d"], "entries"),
    ];
    let run = |command: &[&str], shows: &str, beside: &str| {
        let started = std::time::Instant::now();
        let output = app.cli(command);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert!(
            output.status.success() && stdout.contains(shows) && !stderr.contains("WARN"),
            "{command:?} {beside}: {output:?}"
        );
        assert!(
            started.elapsed() < busy_timeout / 2,
            "{command:?} {beside} waited for the lock"
        );
    };

    let watcher = app.db();
    let version = |db: &rusqlite::Connection| -> i64 {
        db.query_row("PRAGMA data_version", [], |r| r.get(0))
            .unwrap()
    };
    let before = version(&watcher);
    for (command, shows) in commands {
        run(command, shows, "alone");
    }
    assert_eq!(
        version(&watcher),
        before,
        "a reading command committed to the database"
    );

    let writer = app.db();
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    for (command, shows) in commands {
        run(command, shows, "while another process holds the write lock");
    }
    writer.execute_batch("ROLLBACK").unwrap();
}

/// A wrong `path` or `--config` must not read as a quiet week: a report on a database that is
/// not there says so, and leaves no empty one behind.
#[test]
fn a_report_before_the_database_exists_says_where_it_looked() {
    let app = App::new(&[], "[[company]]\nname = \"Xiaomi\"\n");
    let said = format!(
        "feedhound: there is no database at {} yet: the daemon (`feedhound run`) creates it when \
         it starts, as does `feedhound poll`; if it is elsewhere, check [storage] path in {} (a \
         relative path is from that file's folder), or --config\n",
        app.db_path().display(),
        app.config_path.display()
    );
    for command in [
        &["mentions"][..],
        &["companies"],
        &["feeds"],
        &["feeds", "--reset", "1"],
        &["search", "store"],
        &["alerts"],
        &["prune", "--dry-run", "--retain", "1d"],
        &["reindex"],
    ] {
        let output = app.cli(command);
        assert_eq!(
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            ),
            (Some(1), said.as_str().into()),
            "{command:?}"
        );
        assert!(!app.db_path().exists(), "{command:?} created the database");
    }
}

/// A service runs the daemon as a user of its own; an analyst with read access to its database
/// alone runs the reports beside it (SQLite's shared-memory index, which a reader cannot create
/// in a folder it may not write, is the daemon's while it runs).
#[test]
fn a_user_who_may_only_read_the_daemons_database_gets_its_reports() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can run the reports as another user");
        return;
    }
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Xiaomi opens a store</title>"]),
    );
    let app = App::new(&[server.url("a.xml")], "[[company]]\nname = \"Xiaomi\"\n");
    let binary_path = std::path::Path::new(env!("CARGO_BIN_EXE_feedhound"));
    if let Some(folder) = folder_closed_to_others(&[app.dir.path(), binary_path]) {
        eprintln!(
            "skipped: {} is closed to other users, who cannot reach the database or the binary",
            folder.display()
        );
        return;
    }
    let daemon = app.spawn_daemon();
    crate::helpers::wait_until(
        std::time::Duration::from_secs(30),
        "the daemon flagged the story",
        || app.try_count("SELECT count(*) FROM mentions") == Some(1),
    );
    // Everyone may read the folder and its files; only their owner, root, may write them.
    let readable = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(app.dir.path(), readable).unwrap();
    for file in std::fs::read_dir(app.dir.path()).unwrap() {
        let path = file.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let nobody = |args: &[&str]| {
        binary()
            .uid(65534)
            .gid(65534)
            .arg("--config")
            .arg(&app.config_path)
            .args(args)
            .output()
            .unwrap()
    };
    for (command, shows) in [
        (&["mentions"][..], "Xiaomi opens a store"),
        (&["companies"], "Xiaomi"),
        (&["feeds"], "a.xml"),
    ] {
        let output = nobody(command);
        assert!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).contains(shows),
            "{command:?} as a user who may only read: {output:?}"
        );
    }
    // Its index may lack the story yet, which a reader cannot add: it answers without it.
    let search = nobody(&["search", "store"]);
    assert!(search.status.success(), "{search:?}");
    drop(daemon);
}
