//! `[[feed]] fetch_articles`: the pages entries link to, fetched from a real server and matched
//! with the entries' own text, through the real binary.

use std::time::Duration;

use crate::helpers::{
    App, FeedServer, Route, article_page, fetch_articles_of, html, rss, wait_until,
};

const COMPANIES: &str = r#"
[[company]]
name = "Xiaomi"

[[company]]
name = "Samsung"
"#;

fn article_row(app: &App, link: &str) -> (String, i64, Option<i64>, Option<String>) {
    app.db()
        .query_row(
            "SELECT state, attempts, status, error FROM articles WHERE url = ?1",
            [link],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
}

fn mentions_of(app: &App, link: &str) -> Vec<(String, String)> {
    let db = app.db();
    let mut stmt = db
        .prepare(
            "SELECT c.name, m.fields FROM mentions m JOIN companies c ON c.id = m.company_id
             JOIN entries e ON e.id = m.entry_id WHERE e.link = ?1 ORDER BY c.name",
        )
        .unwrap();
    stmt.query_map([link], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn poll(app: &App) -> String {
    let polled = app.cli(&["poll"]);
    assert!(
        polled.status.success(),
        "{}",
        String::from_utf8_lossy(&polled.stderr)
    );
    String::from_utf8_lossy(&polled.stdout).into_owned()
}

#[test]
fn a_teaser_feed_is_flagged_for_what_its_article_page_says_and_not_for_the_page_around_it() {
    let server = FeedServer::start();
    let (told, busy, gone) = (
        server.url("story/results"),
        server.url("story/busy"),
        server.url("story/gone"),
    );
    let teaser = |link: &str, n: u32, title: &str| {
        format!(
            "<guid>{n}</guid><title>{title}</title><link>{link}</link>\
             <description>Our reporter has the details. Read more…</description>"
        )
    };
    let items = [
        teaser(&told, 1, "Quarterly results are in"),
        teaser(&busy, 2, "A plant opens"),
        teaser(&gone, 3, "A deal is called off"),
    ];
    server.feed(
        "teasers.xml",
        rss(&items.iter().map(String::as_str).collect::<Vec<_>>()),
    );
    server.set(
        "story/results",
        html(article_page(
            "Quarterly results are in",
            "Xiaomi reported a record quarter on Tuesday, led by phone sales abroad.",
        )),
    );
    server.set(
        "story/busy",
        Route {
            status: 503,
            ..html(String::new())
        },
    );
    server.set(
        "story/gone",
        Route {
            status: 404,
            ..html(String::new())
        },
    );
    // Another feed linking to a page, without `fetch_articles`: its page is never asked for.
    let untouched = server.url("story/untouched");
    server.feed("plain.xml", rss(&[&teaser(&untouched, 9, "Another story")]));
    server.set(
        "story/untouched",
        html(article_page("Another", "Xiaomi again.")),
    );
    server.set("hook", Route::webhook(200));
    let notify = format!(
        "\n[[notify]]\nurl = \"{}\"\nbacklog = true\n",
        server.url("hook")
    );
    let feed = server.url("teasers.xml");
    let app = App::new(
        &[feed.clone(), server.url("plain.xml")],
        &format!("{COMPANIES}{notify}"),
    );
    fetch_articles_of(&app, &feed);

    let summary = poll(&app);
    assert!(
        summary.contains("articles: 1 read, 2 failed"),
        "the poll's summary counts the pages: {summary}"
    );
    // Flagged for the story on the page; the menus, the related box and the footer name
    // Samsung, and are not the story.
    assert_eq!(
        mentions_of(&app, &told),
        vec![("Xiaomi".to_string(), "article".to_string())]
    );
    let page_request = &server.requests("story/results")[0];
    assert!(page_request.headers["accept"].starts_with("text/html"));
    assert_eq!(
        article_row(&app, &told),
        ("fetched".to_string(), 0, Some(200), None)
    );
    let text: String = app
        .db()
        .query_row("SELECT text FROM articles WHERE url = ?1", [&told], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(text.starts_with("Xiaomi reported a record quarter") && !text.contains("Samsung"));
    // `search` finds the story by words only its page has, and not by the chrome around it.
    let search = |query: &str| -> serde_json::Value {
        let found = app.cli(&["search", query, "--format", "json"]);
        assert!(found.status.success(), "{found:?}");
        serde_json::from_slice(&found.stdout).unwrap()
    };
    let hits = search("\"record quarter\" AND results");
    assert_eq!(hits.as_array().unwrap().len(), 1, "{hits}");
    assert_eq!(hits[0]["link"], told.as_str());
    assert!(
        hits[0]["snippet"]
            .as_str()
            .unwrap()
            .contains("**record quarter**"),
        "{hits}"
    );
    assert_eq!(search("samsung"), serde_json::json!([]));
    // A 503 may pass: tried again later. A 404 will not: given up, with the reason kept.
    let (state, attempts, status, error) = article_row(&app, &busy);
    assert_eq!(
        (state.as_str(), attempts, status),
        ("pending", 1, Some(503))
    );
    assert!(error.unwrap().contains("503"));
    assert_eq!(
        app.count(
            "SELECT count(*) FROM articles
             WHERE state = 'pending' AND next_attempt_at > datetime('now', '+9 minutes')"
        ),
        1,
        "the retry waits ten minutes"
    );
    let (state, _, status, error) = article_row(&app, &gone);
    assert_eq!((state.as_str(), status), ("failed", Some(404)));
    assert!(error.unwrap().contains("404"));
    assert!(server.requests("story/untouched").is_empty());
    assert!(mentions_of(&app, &untouched).is_empty());
    // `feeds` says what is left of the pages, under the feed that has them.
    let listed = app.cli(&["feeds"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    let note = format!(
        "article pages: 1 waiting (1 to retry), 1 given up; newest story given up: {gone} (HTTP \
         status 404 Not Found)"
    );
    assert!(listed.contains(&note), "{listed}");
    assert_eq!(listed.matches("article pages:").count(), 1, "{listed}");
    let listed = app.cli(&["feeds", "--format", "json"]);
    let feeds: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let pages = &feeds[0]["article_pages"];
    assert_eq!(
        (&pages["waiting"], &pages["given_up"]),
        (&1.into(), &1.into())
    );
    assert_eq!(feeds[1]["article_pages"], serde_json::Value::Null);
    // The story the page flagged is alerted, as one the feed itself flagged would be.
    let alerts = server.requests("hook");
    assert_eq!(alerts.len(), 1);
    let alert: serde_json::Value = serde_json::from_slice(&alerts[0].body).unwrap();
    assert_eq!(alert["story"]["link"], told.as_str());
    assert_eq!(alert["companies"][0]["name"], "Xiaomi");

    // An edit of the entry is matched again with the page's text, without fetching it again
    // within the hour: its mentions stay those of the page.
    let edited = items[0].replace("Read more…", "Read the full story.");
    server.feed(
        "teasers.xml",
        rss(&[&edited, items[1].as_str(), items[2].as_str()]),
    );
    let summary = poll(&app);
    assert!(summary.contains("1 updated"), "{summary}");
    assert_eq!(server.requests("story/results").len(), 1);
    assert_eq!(
        mentions_of(&app, &told),
        vec![("Xiaomi".to_string(), "article".to_string())]
    );
    assert_eq!(server.requests("story/busy").len(), 1, "not due again yet");

    // A company added later is found in the kept page text by a rescan.
    let mut config = std::fs::read_to_string(&app.config_path).unwrap();
    config.push_str("\n[[company]]\nname = \"Memory\"\naliases = [\"memory chips\"]\n");
    std::fs::write(&app.config_path, config).unwrap();
    let rescanned = app.cli(&["rescan"]);
    assert!(rescanned.status.success());
    assert_eq!(
        mentions_of(&app, &told),
        vec![
            ("Memory".to_string(), "article".to_string()),
            ("Xiaomi".to_string(), "article".to_string())
        ]
    );

    // With `fetch_articles` off, an edit still leaves the page's mentions standing: only
    // matching the page's text again may take them away.
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(
        &app.config_path,
        config.replace("fetch_articles = true\n", ""),
    )
    .unwrap();
    let edited_again = items[0].replace("Read more…", "Updated with figures.");
    server.feed(
        "teasers.xml",
        rss(&[&edited_again, items[1].as_str(), items[2].as_str()]),
    );
    let summary = poll(&app);
    assert!(
        summary.contains("1 updated") && !summary.contains("articles:"),
        "{summary}"
    );
    assert_eq!(
        mentions_of(&app, &told),
        vec![
            ("Memory".to_string(), "article".to_string()),
            ("Xiaomi".to_string(), "article".to_string())
        ]
    );
}

#[test]
fn an_article_waiting_when_the_daemon_dies_is_fetched_by_the_next_run() {
    let server = FeedServer::start();
    let (quick, stalled) = (server.url("story/quick"), server.url("story/stalled"));
    server.feed(
        "teasers.xml",
        rss(&[
            &format!("<guid>1</guid><title>First</title><link>{quick}</link>"),
            &format!("<guid>2</guid><title>Second</title><link>{stalled}</link>"),
        ]),
    );
    server.set(
        "story/quick",
        html(article_page("First", "Samsung opened a plant.")),
    );
    let page = article_page("Second", "Xiaomi cut its prices.");
    server.set(
        "story/stalled",
        Route {
            delay: Some(Duration::from_secs(60)),
            ..html(page.clone())
        },
    );
    let feed = server.url("teasers.xml");
    let app = App::new(std::slice::from_ref(&feed), COMPANIES);
    fetch_articles_of(&app, &feed);

    let daemon = app.spawn_daemon();
    // The daemon fetches pages in the background, and flags what they say.
    wait_until(Duration::from_secs(20), "the quick page flagged", || {
        app.try_count("SELECT count(*) FROM mentions WHERE fields = 'article'") == Some(1)
    });
    daemon.kill_hard();
    assert_eq!(
        article_row(&app, &stalled).0,
        "pending",
        "queued with its entry, so the crash loses it not"
    );

    server.set("story/stalled", html(page));
    let summary = poll(&app);
    assert!(summary.contains("articles: 1 read, 0 failed"), "{summary}");
    assert_eq!(
        mentions_of(&app, &stalled),
        vec![("Xiaomi".to_string(), "article".to_string())]
    );
    assert_eq!(
        mentions_of(&app, &quick),
        vec![("Samsung".to_string(), "article".to_string())]
    );
}

#[test]
fn the_daemon_sends_one_alert_for_a_teaser_and_its_page_naming_what_both_name() {
    let server = FeedServer::start();
    let story = server.url("story/price-cut");
    server.feed(
        "teasers.xml",
        rss(&[&format!(
            "<guid>1</guid><title>Phone prices fall again</title><link>{story}</link>\
             <description>Xiaomi cut its prices. Read more on our site.</description>"
        )]),
    );
    // Slow enough that an alert sent without waiting for the page would go first.
    let page_delay = Duration::from_secs(2);
    server.set(
        "story/price-cut",
        Route {
            delay: Some(page_delay),
            ..html(article_page(
                "Phone prices fall again",
                "Samsung answered Xiaomi's price cut within the day.",
            ))
        },
    );
    server.set("hook", Route::webhook(200));
    let notify = format!(
        "\n[[notify]]\nurl = \"{}\"\nbacklog = true\n",
        server.url("hook")
    );
    let feed = server.url("teasers.xml");
    let app = App::new(std::slice::from_ref(&feed), &format!("{COMPANIES}{notify}"));
    fetch_articles_of(&app, &feed);

    let daemon = app.spawn_daemon();
    wait_until(Duration::from_secs(20), "an alert delivered", || {
        !server.requests("hook").is_empty()
    });
    // Time for a second alert, had the page's company been left to one of its own.
    std::thread::sleep(Duration::from_secs(1));
    daemon.stop(Duration::from_secs(10));

    let alerts = server.requests("hook");
    assert_eq!(alerts.len(), 1, "one alert for the story");
    let alert: serde_json::Value = serde_json::from_slice(&alerts[0].body).unwrap();
    let mut named: Vec<&str> = (alert["companies"].as_array().unwrap().iter())
        .map(|company| company["name"].as_str().unwrap())
        .collect();
    named.sort();
    assert_eq!(named, ["Samsung", "Xiaomi"], "{alert}");
    let page_asked = server.requests("story/price-cut")[0].at;
    assert!(
        alerts[0].at >= page_asked + page_delay,
        "sent after the page was read"
    );
}
