//! Feeds and webhooks over HTTPS: a real TLS server on loopback with a certificate from a
//! throwaway CA (`helpers::TestCa`), which the binary trusts only through `SSL_CERT_FILE`.

use crate::helpers::{
    App, FeedServer, Route, TestCa, Validity, article_page, fetch_articles_of, html, rss,
};

const COMPANIES: &str = "\n[[company]]\nname = \"Xiaomi\"\n";

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `feeds --format json`: each feed's URL and last error.
fn feed_errors(app: &App) -> Vec<(String, Option<String>)> {
    let listed = app.cli(&["feeds", "--format", "json"]);
    let feeds: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    feeds
        .as_array()
        .unwrap()
        .iter()
        .map(|feed| {
            (
                feed["url"].as_str().unwrap().to_owned(),
                feed["last_error"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[test]
fn an_https_feed_and_its_pages_are_stored_flagged_and_revalidated_when_the_machine_trusts_its_ca() {
    let ca = TestCa::new();
    let server = FeedServer::start_tls(ca.server_config(&["127.0.0.1"], Validity::Current));
    let page = server.url("story");
    server.set(
        "story",
        html(article_page(
            "Results",
            "Xiaomi reported a record quarter on Tuesday.",
        )),
    );
    server.feed(
        "a.xml",
        rss(&[
            &format!("<guid>1</guid><title>Quarterly results</title><link>{page}</link>"),
            "<guid>2</guid><title>Rain all week</title>",
        ]),
    );
    let app = App::new(&[server.url("a.xml")], COMPANIES);
    fetch_articles_of(&app, &server.url("a.xml"));
    assert!(page.starts_with("https://127.0.0.1:"));

    for _ in 0..2 {
        let polled = app.cli_with_env(&[ca.trust()], &["poll"]);
        assert!(polled.status.success(), "{}", stderr(&polled));
    }
    assert_eq!(app.count("SELECT count(*) FROM entries"), 2);
    assert_eq!(
        app.count("SELECT count(*) FROM mentions WHERE fields = 'article'"),
        1,
        "flagged from the page, fetched over TLS"
    );
    assert_eq!(server.requests("story").len(), 1);
    let requests = server.requests("a.xml");
    assert_eq!(
        requests.iter().map(|seen| seen.status).collect::<Vec<_>>(),
        [200, 304],
        "the second poll asks with the first one's validators, over TLS too"
    );
    assert!(requests[1].headers.contains_key("if-none-match"));
    assert_eq!(feed_errors(&app), [(server.url("a.xml"), None)]);
}

#[test]
fn a_refused_certificate_is_a_feed_error_that_says_why_and_what_to_do_while_other_feeds_go_on() {
    let ca = TestCa::new();
    let stranger = TestCa::new();
    let unknown_ca =
        FeedServer::start_tls(stranger.server_config(&["127.0.0.1"], Validity::Current));
    let unknown_ca_url = unknown_ca.url("a.xml");
    let expired = FeedServer::start_tls(ca.server_config(&["127.0.0.1"], Validity::Expired));
    let misnamed = FeedServer::start_tls(
        ca.server_config(&["feeds.example", "www.feeds.example"], Validity::Current),
    );
    let plain = FeedServer::start();
    for server in [&unknown_ca, &expired, &misnamed, &plain] {
        server.feed("a.xml", rss(&["<guid>1</guid><title>Xiaomi ships</title>"]));
    }
    let app = App::new(
        &[
            unknown_ca.url("a.xml"),
            expired.url("a.xml"),
            misnamed.url("a.xml"),
            plain.url("a.xml"),
        ],
        COMPANIES,
    );
    let polled = app.cli_with_env(&[ca.trust()], &["poll"]);
    assert!(polled.status.success(), "{}", stderr(&polled));
    assert_eq!(
        app.count("SELECT count(*) FROM entries"),
        1,
        "the http feed is stored"
    );
    for server in [&unknown_ca, &expired, &misnamed] {
        assert!(
            server.all_requests().is_empty(),
            "no request crosses a refused handshake"
        );
    }

    let errors = feed_errors(&app);
    let error_of = |server: &FeedServer| {
        let url = server.url("a.xml");
        let (_, error) = errors.iter().find(|(listed, _)| *listed == url).unwrap();
        error.clone().unwrap_or_default()
    };
    let unknown_ca = error_of(&unknown_ca);
    assert!(
        unknown_ca
            .starts_with("TLS certificate refused: it is not signed by a CA this machine trusts")
            && unknown_ca.contains("name it in SSL_CERT_FILE")
            && unknown_ca.contains("README, \"TLS certificates\""),
        "{unknown_ca}"
    );
    let expired = error_of(&expired);
    assert!(
        expired.starts_with("TLS certificate refused: it expired on 2020-01-01 00:00 UTC")
            && expired.contains("renew"),
        "{expired}"
    );
    let misnamed = error_of(&misnamed);
    assert!(
        misnamed.starts_with(
            "TLS certificate refused: it is for feeds.example, www.feeds.example, not 127.0.0.1"
        ),
        "{misnamed}"
    );
    assert_eq!(error_of(&plain), "");
    assert!(
        stderr(&polled).contains("it expired on 2020-01-01"),
        "the log says it too: {}",
        stderr(&polled)
    );

    // Roots named in the environment replace the system's, so a wrong path is the likeliest
    // slip; the error names it.
    let missing = app.dir.path().join("no-such-roots.pem");
    let missing = missing.to_str().unwrap();
    let polled = app.cli_with_env(&[("SSL_CERT_FILE", missing)], &["poll"]);
    assert!(polled.status.success(), "{}", stderr(&polled));
    let errors = feed_errors(&app);
    let (_, unknown_ca) = errors
        .iter()
        .find(|(url, _)| *url == unknown_ca_url)
        .unwrap();
    let told = format!(
        "SSL_CERT_FILE is set to {missing}, which does not exist, so only the CAs there are trusted"
    );
    assert!(
        unknown_ca
            .as_deref()
            .is_some_and(|error| error.contains(&told)),
        "{unknown_ca:?}"
    );
}

#[test]
fn a_webhook_over_https_is_delivered_to_a_trusted_ca_and_says_why_it_refuses_another() {
    let ca = TestCa::new();
    let stranger = TestCa::new();
    let server = FeedServer::start_tls(ca.server_config(&["127.0.0.1"], Validity::Current));
    server.set("hook", Route::webhook(200));
    let notify = format!(
        "\n[[notify]]\nname = \"desk\"\nurl = \"{}\"\n",
        server.url("hook")
    );
    let app = App::new(&[], &format!("{COMPANIES}{notify}"));

    let refused = app.cli_with_env(&[stranger.trust()], &["alerts", "--send-test", "desk"]);
    assert_eq!(refused.status.code(), Some(1));
    let origin = server.url("");
    let origin = origin.trim_end_matches('/');
    assert!(
        stderr(&refused).contains(&format!(
            "cannot reach {origin}/…: TLS certificate refused: it is not signed by a CA this \
             machine trusts"
        )),
        "{}",
        stderr(&refused)
    );
    assert!(server.requests("hook").is_empty());

    let sent = app.cli_with_env(&[ca.trust()], &["alerts", "--send-test", "desk"]);
    assert!(sent.status.success(), "{}", stderr(&sent));
    assert_eq!(server.requests("hook").len(), 1);
}
