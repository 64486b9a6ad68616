//! `feedhound discover`: a site's feeds found, checked and written out as config tables.

use crate::helpers::{App, FeedServer, Route, binary, html, rss};

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_pages_feed_links_are_each_fetched_parsed_and_offered_as_config_tables() {
    let server = FeedServer::start();
    // Another service on this machine: the page's publisher may not send feedhound there.
    let elsewhere = FeedServer::start();
    elsewhere.feed(
        "internal.xml",
        rss(&["<guid>1</guid><title>Internal</title>"]),
    );
    server.set(
        "blog/",
        html(format!(
            "<html><head><title>Harbor blog</title>\
             <link rel=\"alternate\" type=\"application/rss+xml\" href=\"/rss.xml\">\
             <link rel=\"alternate\" type=\"application/atom+xml\" href=\"comments.atom\">\
             <link rel=\"alternate\" type=\"application/rss+xml\" href=\"{}\">\
             <link rel=\"alternate\" type=\"application/rss+xml\" href=\"/rss.xml#latest\">\
             <link rel=\"alternate\" type=\"application/atom+xml\" href=\"\">\
             </head><body>Posts</body></html>",
            elsewhere.url("internal.xml")
        )),
    );
    server.feed(
        "rss.xml",
        rss(&[
            "<guid>1</guid><title>One</title>",
            "<guid>2</guid><title>Two</title>",
        ]),
    );
    let app = App::new(&[], "");
    let output = app.cli(&["discover", &server.url("blog/")]);
    let stdout = stdout_of(&output);
    assert!(output.status.success(), "{stdout}");
    let feed_url = server.url("rss.xml");
    let row = stdout
        .lines()
        .find(|line| line.contains(&feed_url))
        .unwrap_or_else(|| panic!("no row for the feed in:\n{stdout}"));
    assert_eq!(
        row.split_whitespace().take(2).collect::<Vec<_>>(),
        ["1", "2"],
        "its number in the list, then its entries: {row}"
    );
    assert!(row.ends_with("Test feed"), "{row}");
    assert!(
        stdout.contains(&format!(
            "Named by the page, but not readable as feeds:\n  {}: HTTP status 404",
            server.url("blog/comments.atom")
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "  {}: refusing to fetch {0}: it is on this machine",
            elsewhere.url("internal.xml")
        )),
        "{stdout}"
    );
    assert!(elsewhere.requests("internal.xml").is_empty());
    let tables = stdout.split_once("again with `--add`:\n").unwrap().1;
    let parsed: toml::Table = toml::from_str(tables).unwrap();
    let feeds = parsed["feed"].as_array().unwrap();
    assert_eq!(feeds.len(), 1, "{tables}");
    assert_eq!(feeds[0]["url"].as_str(), Some(feed_url.as_str()));
    assert_eq!(feeds[0]["name"].as_str(), Some("Test feed"));

    // Once the config lists it, it is marked so and offered no more.
    app.write_config(std::slice::from_ref(&feed_url), "");
    let again = stdout_of(&app.cli(&["discover", &server.url("blog/")]));
    assert!(again.contains("Test feed  (in the config)"), "{again}");
    assert!(!again.contains("[[feed]]"), "{again}");

    let json = app.cli(&["discover", &server.url("blog/"), "--format", "json"]);
    let found: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(found["is_feed"], false);
    assert_eq!(found["found"][0]["entries"], 2);
    assert_eq!(found["found"][0]["in_config"], true);
    assert_eq!(
        (
            found["found"].as_array().unwrap().len(),
            found["unusable"].as_array().unwrap().len()
        ),
        (1, 2),
        "a fragment's copy and the page's link to itself are not tried: {found}"
    );
    assert_eq!(
        found["unusable"][0]["url"],
        server.url("blog/comments.atom").as_str()
    );
}

#[test]
fn the_usual_paths_are_tried_in_the_pages_folder_and_at_the_root_when_no_named_feed_reads() {
    let server = FeedServer::start();
    server.set(
        "home",
        html("<html><body>No links</body></html>".to_string()),
    );
    server.set(
        "blog",
        html(
            "<html><head><link rel=\"alternate\" type=\"application/rss+xml\" \
              href=\"/gone.xml\"></head></html>"
                .to_string(),
        ),
    );
    let app = App::new(&[], "");
    let stderr_of = |output: &std::process::Output| {
        assert_eq!(output.status.code(), Some(1));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let no_links = stderr_of(&app.cli(&["discover", &server.url("home")]));
    assert!(
        no_links.contains("its page names no feed, and none of /feed, /rss"),
        "{no_links}"
    );
    let broken_link = stderr_of(&app.cli(&["discover", &server.url("blog")]));
    assert!(
        broken_link
            .contains("none of the feeds its page names could be read, and none of /feed, /rss"),
        "{broken_link}"
    );

    server.feed("blog/feed.xml", rss(&["<guid>1</guid><title>One</title>"]));
    server.feed("index.xml", rss(&["<guid>2</guid><title>Two</title>"]));
    let json = app.cli(&["discover", &server.url("blog"), "--format", "json"]);
    assert!(json.status.success());
    let found: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(found["tried_usual_paths"], true);
    let urls: Vec<_> = found["found"]
        .as_array()
        .unwrap()
        .iter()
        .map(|feed| feed["url"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        urls,
        [server.url("index.xml"), server.url("blog/feed.xml")],
        "the root first, then the blog's folder"
    );
    assert_eq!(
        found["unusable"],
        serde_json::json!([{"url": server.url("gone.xml"), "reason": "HTTP status 404 Not Found"}]),
        "the named feed that failed is reported; the usual paths' 404s are expected, not news"
    );
}

#[test]
fn usual_paths_that_refuse_or_fail_are_reported_apart_from_those_with_nothing_there() {
    let server = FeedServer::start();
    server.set(
        "news",
        html("<html><body>No links</body></html>".to_string()),
    );
    let status = |status| Route {
        status,
        ..Route::feed("")
    };
    // A site that turns this client away at nearly every path, a 404 and a 500 among them.
    for folder in ["", "news/"] {
        for path in discover_paths() {
            server.set(&format!("{folder}{path}"), status(403));
        }
    }
    server.set("rss", status(404));
    server.set("feed.xml", status(500));
    server.set(
        "news/feed.json",
        Route {
            content_type: "application/feed+json".into(),
            ..Route::feed("{\"version\": \"https://jsonfeed.org/version/1.1\", \"items\": [")
        },
    );
    let app = App::new(&[], "");

    let output = app.cli(&["discover", &server.url("news")]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("13 could not be checked (below) and the others serve none"),
        "{stderr}"
    );
    let stdout = stdout_of(&output);
    let lines: Vec<&str> = stdout.lines().filter(|line| !line.is_empty()).collect();
    assert_eq!(
        lines[..2],
        [
            "Usual paths that could not be checked (a feed may be there all the same):",
            &format!(
                "  HTTP status 403 Forbidden: {}, {}, {} and 8 more",
                server.url("feed"),
                server.url("rss.xml"),
                server.url("atom.xml")
            ),
        ],
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("  HTTP status 500") && lines[2].ends_with(&server.url("feed.xml")),
        "{stdout}"
    );
    assert!(
        lines[3].ends_with(&server.url("news/feed.json")) && !lines[3].contains("HTTP status"),
        "a feed there that does not parse: {stdout}"
    );
    assert!(lines[4].starts_with("The site may turn away automated clients"));

    let json = app.cli(&["discover", &server.url("news"), "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let failed: Vec<&str> = json["usual_paths_failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|failed| failed["url"].as_str().unwrap())
        .collect();
    assert_eq!(failed.len(), 13, "{failed:?}");
    assert!(
        !failed.contains(&server.url("rss").as_str()),
        "a 404 is what most sites answer: {failed:?}"
    );
    assert_eq!(json["unusable"], serde_json::json!([]));

    // A feed found elsewhere: the failures are still listed, without the advice.
    server.feed("news/rss", rss(&["<guid>1</guid><title>One</title>"]));
    let output = app.cli(&["discover", &server.url("news")]);
    assert!(output.status.success());
    let stdout = stdout_of(&output);
    assert!(
        stdout.contains(&server.url("news/rss"))
            && stdout.contains("Usual paths that could not be checked")
            && !stdout.contains("The site may turn away"),
        "{stdout}"
    );
}

/// The usual paths, as server routes.
fn discover_paths() -> Vec<String> {
    feedhound::discover::USUAL_PATHS
        .iter()
        .map(|path| path.trim_start_matches('/').to_owned())
        .collect()
}

#[test]
fn a_feed_linked_on_another_origin_is_asked_for_as_a_feed() {
    let server = FeedServer::start();
    let elsewhere = FeedServer::start();
    elsewhere.feed("news.xml", rss(&["<guid>1</guid><title>One</title>"]));
    server.set(
        "",
        html(format!(
            "<html><head><link rel=\"alternate\" type=\"application/rss+xml\" href=\"{}\">\
             </head></html>",
            elsewhere.url("news.xml")
        )),
    );
    // Both servers are on loopback, which the guard refuses unless the user lifts it.
    let app = App::with_polling(&[], "private_article_links = true", "");
    let output = app.cli(&["discover", &server.url("")]);
    assert!(output.status.success(), "{}", stdout_of(&output));
    let asked = elsewhere.requests("news.xml");
    let accept = asked[0].headers.get("accept").cloned().unwrap_or_default();
    assert!(accept.starts_with("application/rss+xml"), "{accept}");
}

#[test]
fn a_feeds_own_url_is_checked_without_a_config_file() {
    let server = FeedServer::start();
    server.set(
        "feed",
        Route::feed(rss(&["<guid>1</guid><title>One</title>"])),
    );
    let dir = tempfile::tempdir().unwrap();
    let output = binary()
        .current_dir(dir.path())
        .args(["discover", &server.url("feed")])
        .output()
        .unwrap();
    let stdout = stdout_of(&output);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with(&format!("{} is a feed.\n", server.url("feed"))),
        "{stdout}"
    );
    assert!(
        stdout.contains("To poll them, add to feedhound.toml"),
        "{stdout}"
    );
    assert!(
        !dir.path().join("feedhound.toml").exists(),
        "nothing is written"
    );
}

#[test]
fn add_appends_the_feeds_chosen_to_the_config_which_then_polls_them() {
    let server = FeedServer::start();
    server.set(
        "",
        html(
            "<html><head>\
              <link rel=\"alternate\" type=\"application/rss+xml\" href=\"/rss.xml\">\
              <link rel=\"alternate\" type=\"application/atom+xml\" href=\"/comments.atom\">\
              </head></html>"
                .to_string(),
        ),
    );
    server.feed("rss.xml", rss(&["<guid>1</guid><title>One</title>"]));
    server.feed(
        "comments.atom",
        "<?xml version=\"1.0\"?><feed xmlns=\"http://www.w3.org/2005/Atom\">\
         <title>Comments on\n  the blog</title><id>urn:c</id><updated>2026-11-20T10:00:00Z</updated>\
         <entry><id>urn:c:1</id><title>Re: One</title><updated>2026-11-20T10:00:00Z</updated></entry>\
         </feed>",
    );
    let app = App::new(
        &[],
        "\n# Watched since the spring.\n[[company]]\nname = \"Harbor\"\n",
    );
    let original = std::fs::read_to_string(&app.config_path).unwrap();
    let site = server.url("");

    let ambiguous = app.cli(&["discover", &site, "--add"]);
    assert_eq!(ambiguous.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&ambiguous.stderr);
    assert!(
        stderr.contains("2 of the feeds found are not in the config")
            && stderr.contains("(`--add 1,2`)"),
        "{stderr}"
    );
    assert!(
        stdout_of(&ambiguous).contains(" 2        1  "),
        "the list, with the numbers to choose by, is still printed: {}",
        stdout_of(&ambiguous)
    );
    assert!(
        !stdout_of(&ambiguous).contains("[[feed]]"),
        "no tables after a refused --add: {}",
        stdout_of(&ambiguous)
    );
    let no_such = app.cli(&["discover", &site, "--add", "3"]);
    assert_eq!(no_such.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&no_such.stderr).contains("there is no feed 3: the list has 2"),
        "{}",
        String::from_utf8_lossy(&no_such.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&app.config_path).unwrap(),
        original,
        "a refused choice writes nothing"
    );

    // By its URL, as the list shows it, which does not depend on the rows' order.
    let comments = server.url("comments.atom");
    let second = app.cli(&["discover", &site, "--add", &comments]);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(
        stdout_of(&second).contains(&format!("  + {}\n", server.url("comments.atom"))),
        "{}",
        stdout_of(&second)
    );
    let edited = std::fs::read_to_string(&app.config_path).unwrap();
    assert!(
        edited.starts_with(&original),
        "the user's text is kept: {edited}"
    );
    assert!(
        edited.contains("# Added by `feedhound discover` on "),
        "{edited}"
    );
    let config = app.config();
    assert_eq!(config.feeds.len(), 1, "{edited}");
    assert_eq!(config.feeds[0].url.as_str(), server.url("comments.atom"));
    assert_eq!(
        config.feeds[0].name.as_deref(),
        Some("Comments on the blog"),
        "the title, on one line, names it"
    );

    // Now one feed is new: `--add` alone takes it, and the JSON says what was added.
    let rest = app.cli(&["discover", &site, "--add", "--format", "json"]);
    assert!(
        rest.status.success(),
        "{}",
        String::from_utf8_lossy(&rest.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&rest.stdout).unwrap();
    assert_eq!(json["added"], serde_json::json!([server.url("rss.xml")]));
    let listed = app.cli(&["discover", &site, "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(listed.get("added").is_none(), "only with --add: {listed}");
    assert_eq!(json["found"].as_array().unwrap().len(), 2, "{json}");

    let nothing = app.cli(&["discover", &site, "--add", "1,2"]);
    assert!(nothing.status.success());
    assert!(
        stdout_of(&nothing).contains("Nothing to add: the config lists them already."),
        "{}",
        stdout_of(&nothing)
    );
    let edited_twice = std::fs::read_to_string(&app.config_path).unwrap();
    assert_eq!(
        edited_twice.matches("[[feed]]").count(),
        2,
        "{edited_twice}"
    );

    let poll = app.cli(&["poll"]);
    assert!(
        stdout_of(&poll).contains("feeds: 2 ok"),
        "{}{}",
        stdout_of(&poll),
        String::from_utf8_lossy(&poll.stderr)
    );
}

#[test]
fn the_candidates_are_fetched_as_politely_as_the_feeds_of_the_config() {
    let server = FeedServer::start();
    server.set(
        "",
        html(
            "<html><head>\
              <link rel=\"alternate\" type=\"application/rss+xml\" href=\"/one.xml\">\
              <link rel=\"alternate\" type=\"application/rss+xml\" href=\"/two.xml\">\
              </head></html>"
                .to_string(),
        ),
    );
    server.feed("one.xml", rss(&["<guid>1</guid><title>One</title>"]));
    server.feed("two.xml", rss(&["<guid>2</guid><title>Two</title>"]));
    let app = App::with_polling(&[], "per_host_delay = \"400ms\"", "");
    let output = app.cli(&["discover", &server.url("")]);
    assert!(output.status.success(), "{}", stdout_of(&output));
    let mut starts: Vec<_> = server.all_requests().iter().map(|seen| seen.at).collect();
    starts.sort();
    assert_eq!(starts.len(), 3, "the page and its two feeds");
    for pair in starts.windows(2) {
        // Below the 400 ms asked, for the time a request takes to arrive; without the spacing
        // the requests come within milliseconds of each other.
        assert!(
            pair[1] - pair[0] >= std::time::Duration::from_millis(300),
            "{:?}",
            pair[1] - pair[0]
        );
    }
}
