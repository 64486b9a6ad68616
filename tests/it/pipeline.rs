//! The core pipeline end to end: config → fetch → parse → dedup into SQLite.

use crate::helpers::{App, FeedServer, Route, rss};

fn item(guid: &str, title: &str) -> String {
    format!(
        "<guid isPermaLink=\"false\">{guid}</guid><title>{title}</title><link>https://news.example/{guid}</link><description>Body of {title}.</description>"
    )
}

#[tokio::test]
async fn first_poll_stores_exactly_the_entries_served() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&[&item("a1", "One"), &item("a2", "Two"), &item("a3", "Three")]),
    );
    let app = App::new(&[server.url("a.xml")], "");
    let summary = app.poll().await;
    assert_eq!(summary.feeds_ok, 1);
    assert_eq!(summary.entries_new, 3);
    let titles: Vec<String> = app
        .db()
        .prepare("SELECT title FROM entries ORDER BY title")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(titles, ["One", "Three", "Two"]);
    assert_eq!(
        app.count("SELECT count(*) FROM entries WHERE guid IS NULL"),
        0
    );
}

#[tokio::test]
async fn second_poll_sends_validators_gets_304_and_stores_nothing() {
    let server = FeedServer::start();
    server.feed("a.xml", rss(&[&item("a1", "One"), &item("a2", "Two")]));
    let app = App::new(&[server.url("a.xml")], "");
    app.poll().await;
    let second = app.poll().await;
    assert_eq!(second.feeds_not_modified, 1, "{second}");
    assert_eq!(second.entries_new + second.entries_updated, 0);
    let requests = server.requests("a.xml");
    assert_eq!(requests.len(), 2);
    assert!(!requests[0].headers.contains_key("if-none-match"));
    let conditional = &requests[1];
    assert!(
        conditional.headers.contains_key("if-none-match"),
        "{:?}",
        conditional.headers
    );
    assert_eq!(
        conditional
            .headers
            .get("if-modified-since")
            .map(String::as_str),
        Some("Mon, 23 Nov 2026 10:00:00 GMT")
    );
    assert_eq!(conditional.status, 304);
    assert_eq!(app.count("SELECT count(*) FROM entries"), 2);
    assert_eq!(app.count("SELECT last_status FROM feeds"), 304);
}

#[tokio::test]
async fn one_new_and_one_edited_item_yield_one_new_and_one_updated_row() {
    let server = FeedServer::start();
    server.feed("a.xml", rss(&[&item("a1", "One"), &item("a2", "Two")]));
    let app = App::new(&[server.url("a.xml")], "");
    app.poll().await;
    app.db()
        .execute(
            "UPDATE entries SET first_seen_at = '2000-01-01 00:00:00'",
            [],
        )
        .unwrap();
    server.feed(
        "a.xml",
        rss(&[
            &item("a1", "One"),
            &item("a2", "Two, corrected"),
            &item("a3", "Three"),
        ]),
    );
    let summary = app.poll().await;
    assert_eq!(
        (summary.entries_new, summary.entries_updated),
        (1, 1),
        "{summary}"
    );
    assert_eq!(app.count("SELECT count(*) FROM entries"), 3);
    assert_eq!(
        app.count("SELECT count(*) FROM entries WHERE guid = 'a2' AND title = 'Two, corrected' AND first_seen_at = '2000-01-01 00:00:00'"),
        1,
        "the edited entry is updated in place and keeps its first-seen time"
    );
}

/// Without validators and with a changing channel element, every poll is a full parse.
fn changing_body(items: &[&str], poll: usize) -> Route {
    let doc = rss(items).replace(
        "<description>d</description>",
        &format!("<description>build {poll}</description>"),
    );
    Route::feed(doc).without_validators()
}

#[tokio::test]
async fn items_without_guid_are_not_duplicated_across_polls_or_restarts() {
    let server = FeedServer::start();
    let items = [
        "<title>Linked</title><link>https://news.example/linked</link>",
        "<title>Only a title</title><description>No link, no guid.</description>",
    ];
    server.set("a.xml", changing_body(&items, 0));
    let app = App::new(&[server.url("a.xml")], "");
    assert_eq!(app.poll().await.entries_new, 2);
    server.set("a.xml", changing_body(&items, 1));
    let second = app.poll().await;
    assert_eq!((second.feeds_ok, second.entries_new), (1, 0), "{second}");
    // A restart: a new process, through the real binary.
    server.set("a.xml", changing_body(&items, 2));
    let output = app.cli(&["poll"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("0 new"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(app.count("SELECT count(*) FROM entries"), 2);
    assert_eq!(
        app.count("SELECT count(*) FROM entries WHERE guid IS NOT NULL"),
        0,
        "invented ids are not guids"
    );
}

#[tokio::test]
async fn an_item_whose_shared_link_becomes_its_own_does_not_overwrite_another() {
    // No guids; A and B both point at the home page, so the link identifies neither. When A
    // leaves the document, B's link is its own and B's key changes: it must find its own row,
    // not A's (found first by link), and A must stay as it was.
    let server = FeedServer::start();
    let home = |title: &str| {
        format!(
            "<title>{title}</title><link>https://news.example/</link><description>Body of {title}.</description>"
        )
    };
    let own = "<title>C</title><link>https://news.example/c</link>";
    server.set("a.xml", changing_body(&[&home("A"), &home("B"), own], 0));
    let app = App::new(&[server.url("a.xml")], "");
    assert_eq!(app.poll().await.entries_new, 3);
    server.set("a.xml", changing_body(&[&home("B"), own], 1));
    let second = app.poll().await;
    assert_eq!(
        (second.feeds_ok, second.entries_new, second.entries_updated),
        (1, 0, 0),
        "{second}"
    );
    let titles: Vec<String> = app
        .db()
        .prepare("SELECT title FROM entries ORDER BY title")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(titles, ["A", "B", "C"]);
}

#[tokio::test]
async fn an_item_whose_own_link_becomes_shared_is_not_stored_again() {
    // No guids. A live blog's first update is alone with its link, so the link identifies it;
    // once a second update points at the same page (or at another #fragment of it, which the
    // canonical link drops), neither link identifies its item any more and both are keyed by
    // their text. The first update must find its row, not be stored a second time.
    let server = FeedServer::start();
    let update = |link: &str, title: &str| {
        format!(
            "<title>{title}</title><link>https://news.example/{link}</link><description>{title}, as it happened.</description>"
        )
    };
    for (first, second) in [("live", "live"), ("changelog#v1", "changelog#v2")] {
        let path = format!("{}.xml", first.replace('#', "-"));
        server.set(&path, changing_body(&[&update(first, "Update 1")], 0));
        let app = App::new(&[server.url(&path)], "");
        assert_eq!(app.poll().await.entries_new, 1);
        server.set(
            &path,
            changing_body(
                &[&update(second, "Update 2"), &update(first, "Update 1")],
                1,
            ),
        );
        let later = app.poll().await;
        assert_eq!(
            (later.entries_new, later.entries_updated),
            (1, 0),
            "{first}: {later}"
        );
        assert_eq!(
            app.count("SELECT count(*) FROM entries WHERE title = 'Update 1'"),
            1,
            "{first}"
        );
        // And it stays one row when the link is its own again.
        server.set(&path, changing_body(&[&update(first, "Update 1")], 2));
        let again = app.poll().await;
        assert_eq!(
            (again.entries_new, again.entries_updated),
            (0, 0),
            "{first}: {again}"
        );
        assert_eq!(app.count("SELECT count(*) FROM entries"), 2, "{first}");
    }
}

#[tokio::test]
async fn a_feed_serving_only_its_latest_update_keeps_each_fragment_as_its_own_item() {
    // No guids, one item per document, each update a #fragment of the same page: the link is
    // always the item's own, and the fragment is all that tells one update from the next.
    let server = FeedServer::start();
    let update = |fragment: &str, text: &str| {
        format!(
            "<title>{text}</title><link>https://status.example/incidents{fragment}</link><description>{text}.</description>"
        )
    };
    let serve = |fragment: &str, text: &str, poll: usize| {
        server.set("live.xml", changing_body(&[&update(fragment, text)], poll));
    };
    serve("#update-1", "Investigating", 0);
    let app = App::new(&[server.url("live.xml")], "");
    assert_eq!(app.poll().await.entries_new, 1);

    serve("#update-2", "Identified", 1);
    let second = app.poll().await;
    assert_eq!(
        (second.entries_new, second.entries_updated),
        (1, 0),
        "{second}"
    );
    // The same update edited is still an edit, and a tracking fragment names no update.
    serve("#update-2", "Identified: a faulty switch", 2);
    let edited = app.poll().await;
    assert_eq!(
        (edited.entries_new, edited.entries_updated),
        (0, 1),
        "{edited}"
    );
    serve("#xtor=RSS-3", "Resolved", 3);
    assert_eq!(app.poll().await.entries_new, 1);
    // Were the tracking fragment an identity, this would be a new item, not an edit.
    serve("#xtor=RSS-4", "Resolved: all clear", 4);
    let rotated = app.poll().await;
    assert_eq!(
        (rotated.entries_new, rotated.entries_updated),
        (0, 1),
        "{rotated}"
    );

    let titles: Vec<String> = app
        .db()
        .prepare("SELECT title FROM entries ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        titles,
        [
            "Investigating",
            "Identified: a faulty switch",
            "Resolved: all clear"
        ]
    );
}

#[tokio::test]
async fn a_link_becoming_shared_neither_merges_items_with_guids_of_their_own_nor_repeats_one_without()
 {
    let server = FeedServer::start();
    let item = |guid: &str, link: &str, text: &str| {
        format!(
            "<guid isPermaLink=\"false\">{guid}</guid><title>{text}</title><link>https://status.example/{link}</link><description>{text}</description>"
        )
    };
    // Own guids, one status page, the same text: each guid is an item, whatever the link does.
    let all_clear = "All systems operational";
    server.set("own.xml", changing_body(&[&item("s1", "", all_clear)], 0));
    // One guid repeated (a CMS bug): the link told the items apart, until it was shared too.
    let dup = |link: &str, text: &str| item("dup", link, text);
    server.set(
        "dup.xml",
        changing_body(
            &[
                &dup("a", "Outage in Frankfurt"),
                &dup("b", "Outage in Lyon"),
            ],
            0,
        ),
    );
    let app = App::new(&[server.url("own.xml"), server.url("dup.xml")], "");
    assert_eq!(app.poll().await.entries_new, 3);

    server.set(
        "own.xml",
        changing_body(&[&item("s2", "", all_clear), &item("s3", "", all_clear)], 1),
    );
    server.set(
        "dup.xml",
        changing_body(
            &[
                &dup("a", "Frankfurt recovered"),
                &dup("a", "Outage in Frankfurt"),
                &dup("b", "Outage in Lyon"),
            ],
            1,
        ),
    );
    let later = app.poll().await;
    assert_eq!(
        (later.entries_new, later.entries_updated),
        (3, 0),
        "{later}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM entries WHERE title = 'All systems operational'"),
        3
    );
    assert_eq!(
        app.count("SELECT count(*) FROM entries WHERE title = 'Outage in Frankfurt'"),
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM entries"), 6);
}

#[tokio::test]
async fn repeated_guids_within_a_document_keep_distinct_items() {
    let server = FeedServer::start();
    let same_guid = |link: &str, title: &str| {
        format!(
            "<guid>shared-guid</guid><title>{title}</title><link>https://news.example/{link}</link>"
        )
    };
    server.feed(
        "a.xml",
        rss(&[
            &same_guid("x", "First"),
            &same_guid("y", "Second"),
            &same_guid("z", "Third"),
        ]),
    );
    let app = App::new(&[server.url("a.xml")], "");
    assert_eq!(app.poll().await.entries_new, 3);
    assert_eq!(
        app.count("SELECT count(DISTINCT dedup_key) FROM entries"),
        3
    );
}

#[tokio::test]
async fn a_changed_guid_or_an_https_link_with_tracking_parameters_is_the_same_story() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&["<guid>old-id</guid><title>Story</title><link>http://news.example/story</link>"]),
    );
    let app = App::new(&[server.url("a.xml")], "");
    app.poll().await;
    server.feed(
        "a.xml",
        rss(&["<guid>new-id</guid><title>Story</title><link>https://www.news.example/story/?utm_source=rss</link>"]),
    );
    let summary = app.poll().await;
    assert_eq!(summary.entries_new, 0, "{summary}");
    assert_eq!(app.count("SELECT count(*) FROM entries"), 1);
    assert_eq!(
        app.count("SELECT count(*) FROM entries WHERE guid = 'new-id'"),
        1
    );
}

/// A database from before links lost their tracking parameters: its stored link keeps them, and
/// the same item served again is neither an edit nor a new entry, and is not rewritten.
#[tokio::test]
async fn an_entry_stored_with_tracking_parameters_is_unchanged_when_served_again() {
    let server = FeedServer::start();
    let document = rss(&[
        "<guid>1</guid><title>Story</title><link>https://news.example/story?id=7&amp;utm_source=rss</link>",
    ]);
    server.feed("a.xml", document.clone());
    let app = App::new(&[server.url("a.xml")], "");
    app.poll().await;
    let link = || -> String {
        app.db()
            .query_row("SELECT link FROM entries", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(link(), "https://news.example/story?id=7");
    let before = "https://news.example/story?id=7&utm_source=rss";
    app.db()
        .execute("UPDATE entries SET link = ?1", [before])
        .unwrap();
    // Another document, so that it is read again, with the same item.
    server.feed("a.xml", format!("{document}<!-- served again -->"));
    let summary = app.poll().await;
    assert_eq!(
        (
            summary.feeds_ok,
            summary.entries_new,
            summary.entries_updated
        ),
        (1, 0, 0),
        "{summary}"
    );
    assert_eq!(link(), before);
}

#[tokio::test]
async fn a_feed_removed_from_the_config_is_inactive_and_keeps_its_entries() {
    let server = FeedServer::start();
    server.feed("a.xml", rss(&[&item("a1", "One")]));
    server.feed("b.xml", rss(&[&item("b1", "Bee")]));
    let app = App::new(&[server.url("a.xml"), server.url("b.xml")], "");
    app.poll().await;
    app.write_config(&[server.url("a.xml")], "");
    let summary = app.poll().await;
    assert_eq!(
        summary.feeds_not_modified, 1,
        "only the remaining feed is polled: {summary}"
    );
    assert_eq!(server.requests("b.xml").len(), 1);
    let url_b = server.url("b.xml");
    let active: i64 = app
        .db()
        .query_row("SELECT active FROM feeds WHERE url = ?1", [&url_b], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(active, 0);
    assert_eq!(app.count("SELECT count(*) FROM entries"), 2);
}

#[tokio::test]
async fn broken_feeds_are_recorded_as_failed_while_the_others_are_stored() {
    let server = FeedServer::start();
    server.feed("good.xml", rss(&[&item("g1", "Good")]));
    server.feed("garbage.xml", b"\x00\x01 this is not a feed <<<".to_vec());
    // UTF-16 makes feed-rs 3.0 panic; it must be decoded, or at worst recorded as a failure.
    let utf16: Vec<u8> = std::iter::once(0xFEFFu16)
        .chain(
            rss(&[&item("u1", "Sixteen")])
                .replace("UTF-8", "UTF-16")
                .encode_utf16(),
        )
        .flat_map(u16::to_le_bytes)
        .collect();
    server.feed("utf16.xml", utf16);
    server.set(
        "missing.xml",
        Route {
            status: 500,
            ..Route::feed("oops")
        },
    );
    let urls = ["good.xml", "garbage.xml", "utf16.xml", "missing.xml"].map(|p| server.url(p));
    let app = App::new(&urls, "");
    let summary = app.poll().await;
    assert_eq!(summary.feeds_ok + summary.feeds_failed, 4, "{summary}");
    assert!(summary.feeds_failed >= 2, "{summary}");
    assert_eq!(
        app.count("SELECT count(*) FROM entries WHERE title = 'Good'"),
        1
    );
    let errors: Vec<(String, String)> = app
        .db()
        .prepare("SELECT url, last_error FROM feeds WHERE last_error IS NOT NULL")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        errors
            .iter()
            .any(|(url, e)| url.ends_with("garbage.xml") && !e.is_empty()),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|(url, e)| url.ends_with("missing.xml") && e.contains("500")),
        "{errors:?}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM feeds WHERE url LIKE '%missing.xml' AND error_count = 1"),
        1
    );
}
