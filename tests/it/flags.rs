//! Flagging stories that mention tracked companies, grouping them, and alerting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use feedhound::notify::Delivered;
use feedhound::scheduler;
use tokio_util::sync::CancellationToken;

use crate::helpers::{App, FeedServer, Route, Seen, rss, wait_until};

const COMPANIES: &str = r#"
[[company]]
name = "Xiaomi"
aliases = ["Xiaomi Corp", "小米", "Redmi"]

[[company]]
name = "Samsung"

[[company]]
name = "Apple"
case_sensitive = true
exclude = ["apple pie", "Big Apple", "Apple Records"]
require_any = ["iPhone", "iPad", "Mac", "Tim Cook", "Cupertino", "App Store"]
"#;

fn flagged(app: &App) -> Vec<(String, String, i64)> {
    app.db()
        .prepare("SELECT title, companies, sources FROM flagged_stories ORDER BY title")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// What `feedhound alerts --send-test TARGET` says once the target answers `route` at `path`:
/// the test alert fails, and stderr says why.
fn test_alert_refused(
    app: &App,
    server: &FeedServer,
    path: &str,
    route: Route,
    target: &str,
) -> String {
    server.set(path, route);
    let refused = app.cli(&["alerts", "--send-test", target]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    String::from_utf8_lossy(&refused.stderr).into_owned()
}

/// Runs the daemon in this process until the returned token is cancelled.
fn run_daemon(
    app: &App,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let control = scheduler::Control::default();
    let daemon = tokio::spawn(scheduler::run(app.config(), control.clone()));
    (control.shutdown, daemon)
}

/// Two webhook targets, "broken" listed first (retry_delay 1h) and "working": the broken one
/// holds each request until the working one has two alerts (which sets the flag) or `at_most`
/// passes. Returns both servers, the flag, and their `[[notify]]` tables.
fn broken_and_working_targets(
    at_most: Duration,
) -> (Arc<FeedServer>, FeedServer, Arc<AtomicBool>, String) {
    let working = Arc::new(FeedServer::start());
    working.set("hook", Route::webhook(200));
    let broken = FeedServer::start();
    let seen = Arc::new(AtomicBool::new(false));
    broken.set(
        "hook",
        Route::raw({
            let (working, seen) = (Arc::clone(&working), Arc::clone(&seen));
            move |connection| {
                let held = Instant::now();
                while held.elapsed() < at_most {
                    if working.requests("hook").len() == 2 {
                        seen.store(true, Ordering::SeqCst);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                drop(connection); // closed without an answer
            }
        }),
    );
    let notify = format!(
        "\n[[notify]]\nbacklog = true\nname = \"broken\"\nurl = \"{}\"\nretry_delay = \"1h\"\n\
         \n[[notify]]\nbacklog = true\nname = \"working\"\nurl = \"{}\"\n",
        broken.url("hook"),
        working.url("hook")
    );
    (working, broken, seen, notify)
}

#[tokio::test]
async fn mentions_survive_html_entities_tags_and_line_breaks_and_traps_are_not_flagged() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&[
            "<guid>1</guid><title>Phones</title><description><![CDATA[<p>The <b>Xiaomi</b>&#8217;s tablet and <a href='#'>SAMSUNG</a>'s reply</p>]]></description>",
            "<guid>2</guid><title>Spun off</title><description>The Xiaomi\n   Corp unit and X&#105;aomi fans</description>",
            "<guid>3</guid><title>Dessert</title><description>A warm apple pie and the Big Apple skyline</description>",
            "<guid>4</guid><title>Metadata</title><description>Samsungite metadata and Redmine tickets</description>",
            "<guid>5</guid><title>小米发布新平板</title><description>中文报道</description>",
            "<guid>6</guid><title>Apple earnings</title><description>Apple sold more iPhone units</description>",
        ]),
    );
    let app = App::new(&[server.url("a.xml")], COMPANIES);
    app.poll().await;
    let rows: Vec<(String, String, String, i64)> = app
        .db()
        .prepare(
            "SELECT e.guid, c.name, m.fields, m.count FROM mentions m JOIN entries e ON e.id = m.entry_id
             JOIN companies c ON c.id = m.company_id ORDER BY e.guid, c.name",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|(g, c, _, _)| (g.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("1", "Samsung"),
            ("1", "Xiaomi"),
            ("2", "Xiaomi"),
            ("5", "Xiaomi"),
            ("6", "Apple")
        ],
        "{rows:?}"
    );
    let spun_off = rows.iter().find(|(g, ..)| g == "2").unwrap();
    assert_eq!(
        (spun_off.2.as_str(), spun_off.3),
        ("summary", 2),
        "Xiaomi Corp counts once, Xiaomi once"
    );
    let chinese = rows.iter().find(|(g, ..)| g == "5").unwrap();
    assert_eq!(chinese.2, "title");
}

#[tokio::test]
async fn a_story_syndicated_in_three_feeds_is_one_flagged_story_with_three_sources_and_one_alert() {
    let server = FeedServer::start();
    let story = |guid: &str, link: &str| {
        format!(
            "<guid>{guid}</guid><title>Xiaomi opens a store in Paris</title><link>{link}</link><description>Xiaomi said so.</description>"
        )
    };
    server.feed(
        "a.xml",
        rss(&[&story(
            "a-1",
            "https://www.news.example/xiaomi-paris/?utm_source=a",
        )]),
    );
    server.feed(
        "b.xml",
        rss(&[&story("b-1", "http://news.example/xiaomi-paris#top")]),
    );
    server.feed(
        "c.xml",
        rss(&[&story("c-1", "https://mirror.example/copy/xiaomi-paris")]),
    );
    server.set("hook", Route::webhook(200));
    let urls = ["a.xml", "b.xml", "c.xml"].map(|p| server.url(p));
    let notify = format!(
        "\n[[notify]]\nbacklog = true\nname = \"ops\"\nurl = \"{}\"\nsecret = \"k3y\"\n",
        server.url("hook")
    );
    let app = App::new(&urls, &format!("{COMPANIES}{notify}"));
    let summary = app.poll().await;
    assert_eq!(summary.entries_new, 3);
    assert_eq!(
        flagged(&app),
        [(
            "Xiaomi opens a store in Paris".to_string(),
            "Xiaomi".to_string(),
            3
        )]
    );
    let hooks = server.requests("hook");
    assert_eq!(hooks.len(), 1, "one story, one alert");
    let payload: serde_json::Value = serde_json::from_slice(&hooks[0].body).unwrap();
    assert_eq!(payload["sources"].as_array().unwrap().len(), 3);
    let links: Vec<&str> = payload["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|source| source["link"].as_str())
        .collect();
    assert!(
        links.contains(&"https://www.news.example/xiaomi-paris/"),
        "sent without its tracking parameter: {links:?}"
    );
    assert_eq!(payload["companies"][0]["name"], "Xiaomi");
    assert_eq!(
        hooks[0].headers["idempotency-key"],
        payload["idempotency_key"].as_str().unwrap()
    );
    let signature = feedhound::notify::signature("k3y", &hooks[0].body);
    assert_eq!(hooks[0].headers["x-feedhound-signature"], signature);
    // Polling again sends nothing more.
    app.poll().await;
    assert_eq!(server.requests("hook").len(), 1);
    let json = app.cli(&["mentions", "--format", "json", "--company", "xiaomi"]);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["sources"].as_array().unwrap().len(), 3);
    assert!(rows[0]["sources"][0]["link"].as_str().is_some());
    let by_alias = app.cli(&["mentions", "--format", "json", "--company", "小米"]);
    assert_eq!(by_alias.stdout, json.stdout, "an alias names its company");
}

#[test]
fn a_test_alert_is_signed_like_a_real_one_stores_nothing_and_reports_a_refusal() {
    let server = FeedServer::start();
    server.set("hook", Route::webhook(200));
    let notify = format!(
        "\n[[notify]]\nname = \"desk\"\nurl = \"{}\"\nsecret = \"k3y\"\n",
        server.url("hook")
    );
    let app = App::new(&[], &format!("{COMPANIES}{notify}"));
    let sent = app.cli(&["alerts", "--send-test", "desk"]);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&sent.stdout),
        "desk accepted the test alert\n"
    );
    let hooks = server.requests("hook");
    assert_eq!(hooks.len(), 1);
    let payload: serde_json::Value = serde_json::from_slice(&hooks[0].body).unwrap();
    assert_eq!(payload["test"], true);
    assert_eq!(payload["story"]["id"], 0);
    assert_eq!(
        hooks[0].headers["idempotency-key"],
        payload["idempotency_key"].as_str().unwrap()
    );
    let signature = feedhound::notify::signature("k3y", &hooks[0].body);
    assert_eq!(hooks[0].headers["x-feedhound-signature"], signature);
    assert!(
        !app.db_path().exists(),
        "a test alert needs no database, and makes none"
    );

    let misspelt = app.cli(&["alerts", "--send-test", "dsk"]);
    assert_eq!(misspelt.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&misspelt.stderr).contains("its notify targets are: desk"));

    let stderr = test_alert_refused(&app, &server, "hook", Route::webhook(500), "desk");
    assert!(
        stderr.contains("the test alert to desk failed") && stderr.contains("answered HTTP 500"),
        "{stderr}"
    );
}

/// An ntfy server takes JSON at its root, naming the topic: what a phone shows is the title,
/// the message, and the story a tap opens. The topic works as a password, so an error names
/// the server alone.
#[tokio::test]
async fn an_ntfy_target_gets_a_push_notification_that_opens_the_story() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&[
            "<guid>1</guid><title>Xiaomi and Samsung sign a patent deal</title>\
               <link>https://news.example/deal?id=1</link>\
               <description>Xiaomi and Samsung agreed to share patents.</description>",
        ]),
    );
    server.set("/", Route::webhook(200));
    let notify = format!(
        "\n[[notify]]\nname = \"phone\"\nbacklog = true\nformat = \"ntfy\"\nurl = \"{}\"\n",
        server
            .url("acme-n3ws")
            .replace("http://", "http://:tk_s3cret@")
    );
    let app = App::new(&[server.url("a.xml")], &format!("{COMPANIES}{notify}"));
    let summary = app.poll().await;
    assert_eq!(
        summary.alerts,
        Some(Delivered {
            delivered: 1,
            failed: 0
        })
    );
    assert!(
        server.requests("acme-n3ws").is_empty(),
        "the root takes JSON"
    );
    let pushed = &server.requests("/")[0];
    assert_eq!(pushed.headers["content-type"], "application/json");
    // An access token as the password, with no user (":tk_s3cret"), as ntfy takes one.
    assert_eq!(pushed.headers["authorization"], "Basic OnRrX3MzY3JldA==");
    let push: serde_json::Value = serde_json::from_slice(&pushed.body).unwrap();
    assert_eq!(push["topic"], "acme-n3ws");
    assert_eq!(
        push["title"],
        "Xiaomi, Samsung: Xiaomi and Samsung sign a patent deal"
    );
    assert_eq!(push["click"], "https://news.example/deal?id=1");
    let message = push["message"].as_str().unwrap();
    assert!(
        message.starts_with("Xiaomi, Samsung · Test feed · ")
            && message.ends_with(
                " UTC\nXiaomi: \"Xiaomi and Samsung sign a patent deal\"\n\
                 Samsung: \"Xiaomi and Samsung sign a patent deal\""
            ),
        "{message}"
    );

    let tested = app.cli(&["alerts", "--send-test", "phone"]);
    assert!(tested.status.success(), "{tested:?}");
    let test: serde_json::Value =
        serde_json::from_slice(&server.requests("/").last().unwrap().body).unwrap();
    assert_eq!(
        (&test["topic"], &test["title"]),
        (
            &serde_json::json!("acme-n3ws"),
            &serde_json::json!("feedhound test alert for phone")
        )
    );
    let stderr = test_alert_refused(
        &app,
        &server,
        "/",
        Route {
            body: br#"{"code":40301,"http":403,"error":"forbidden: acme-n3ws"}"#.to_vec(),
            ..Route::webhook(403)
        },
        "phone",
    );
    assert!(
        stderr.contains("answered HTTP 403 Forbidden: {\"code\":40301")
            && stderr.contains("forbidden: …")
            && !stderr.contains("acme-n3ws")
            && !stderr.contains("s3cret"),
        "{stderr}"
    );
}

/// A Telegram bot's message: the chat the URL's query names goes in the JSON posted to the
/// bot's `sendMessage`, the feed's words escaped in Telegram's HTML. A refusal shows the Bot
/// API's reason, or a proxy's, without the bot's token; a 429 rests the target as long as its
/// body asks.
#[tokio::test]
async fn a_telegram_target_gets_a_bots_message_and_keeps_to_what_the_bot_api_says() {
    const SEND: &str = "bot123456:AAH-s3cret_tok3n/sendMessage";
    const DEAL: &str = "<guid>1</guid><title>Xiaomi &amp; Samsung sign a deal &lt;3</title>\
                        <link>https://news.example/deal?id=1</link>";
    let server = FeedServer::start();
    server.feed("a.xml", rss(&[DEAL]));
    let bot_api = |status: u16, answer: &str| Route {
        body: answer.as_bytes().to_vec(),
        content_type: "application/json".into(),
        ..Route::webhook(status)
    };
    server.set(
        SEND,
        bot_api(200, r#"{"ok":true,"result":{"message_id":7}}"#),
    );
    // The URL may end at the token; the POST goes to its sendMessage.
    let bot = SEND.trim_end_matches("/sendMessage");
    let notify = format!(
        "\n[[notify]]\nname = \"chat\"\nbacklog = true\nformat = \"telegram\"\nretry_delay = \"1s\"\nurl = \"{}\"\n\
         [[notify]]\nname = \"channel\"\nformat = \"telegram\"\nurl = \"{}\"\n",
        server.url(&format!("{bot}?chat_id=-1001234567890&message_thread_id=9")),
        server.url(&format!("{SEND}?chat_id=%40acme_news"))
    );
    let app = App::new(&[server.url("a.xml")], &format!("{COMPANIES}{notify}"));
    let summary = app.poll().await;
    assert_eq!(
        summary.alerts,
        Some(Delivered {
            delivered: 1,
            failed: 0
        })
    );
    let sent = &server.requests(SEND)[0];
    assert_eq!(sent.headers["content-type"], "application/json");
    let message: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(
        (
            &message["chat_id"],
            &message["message_thread_id"],
            &message["parse_mode"],
            &message["link_preview_options"],
        ),
        (
            &serde_json::json!(-1001234567890_i64),
            &serde_json::json!(9),
            &serde_json::json!("HTML"),
            &serde_json::json!({ "url": "https://news.example/deal?id=1" }),
        )
    );
    let text = message["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "<b><a href=\"https://news.example/deal?id=1\">\
             Xiaomi &amp; Samsung sign a deal &lt;3</a></b>\n\
             Xiaomi, Samsung · Test feed · "
        ) && text
            .contains(" UTC\n<blockquote><b>Xiaomi</b>: Xiaomi &amp; Samsung sign a deal &lt;3\n"),
        "{text}"
    );

    // A test alert has no link to preview; this channel has no topic.
    let tested = app.cli(&["alerts", "--send-test", "channel"]);
    assert!(tested.status.success(), "{tested:?}");
    let test: serde_json::Value =
        serde_json::from_slice(&server.requests(SEND).last().unwrap().body).unwrap();
    assert!(
        test["text"]
            .as_str()
            .unwrap()
            .contains("feedhound test alert for channel")
            && test["chat_id"] == "@acme_news"
            && test.get("message_thread_id").is_none()
            && test["link_preview_options"] == serde_json::json!({ "is_disabled": true }),
        "{test}"
    );

    let stderr = test_alert_refused(
        &app,
        &server,
        SEND,
        bot_api(
            400,
            r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found (bot 123456:AAH-s3cret_tok3n)"}"#,
        ),
        "chat",
    );
    assert!(
        stderr.contains("answered HTTP 400 Bad Request: Bad Request: chat not found (bot …)")
            && !stderr.contains("error_code")
            && !stderr.contains("s3cret"),
        "{stderr}"
    );
    // A proxy in front of the Bot API may quote the path it could not forward.
    let stderr = test_alert_refused(
        &app,
        &server,
        SEND,
        Route {
            body: format!("cannot forward POST /{SEND}").into_bytes(),
            ..Route::webhook(502)
        },
        "chat",
    );
    assert!(
        stderr.contains("answered HTTP 502 Bad Gateway: cannot forward POST …")
            && !stderr.contains("s3cret"),
        "{stderr}"
    );

    // Telegram says how long to wait in its answer's body.
    server.set(
        SEND,
        bot_api(
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 120","parameters":{"retry_after":120}}"#,
        ),
    );
    server.feed(
        "a.xml",
        rss(&[DEAL, "<guid>2</guid><title>Samsung ships a phone</title>"]),
    );
    let throttled = app.poll().await;
    assert_eq!(
        throttled.alerts,
        Some(Delivered {
            delivered: 0,
            failed: 2
        }),
        "a new story, for both chats"
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM alert_target_rests
             WHERE rest_until > datetime('now', '+100 seconds')"
        ),
        2,
        "the rest lasts as long as retry_after asked, not the 1 s of retry_delay"
    );
}

/// A Teams card: posted as it is to the workflow's webhook, which answers 202; the feed's
/// words in runs of text Teams shows as written, a button to the story. A refusal shows the
/// workflow's code and message, without the signature that is the URL's password.
#[tokio::test]
async fn a_teams_target_gets_a_card_and_a_refusal_says_why_without_the_signature() {
    // The query, signature and all, is the workflow's to read.
    const INVOKE: &str = "workflows/4f2a/triggers/manual/paths/invoke\
                          ?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=Zk9s3cr3t";
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Xiaomi &amp; [Samsung](https://evil.example) sign a **deal**</title>\
               <link>https://news.example/deal?id=1</link>"]),
    );
    server.set(INVOKE, Route::webhook(202));
    let notify = format!(
        "\n[[notify]]\nname = \"channel\"\nbacklog = true\nformat = \"teams\"\nurl = \"{}\"\n",
        server.url(INVOKE)
    );
    let app = App::new(&[server.url("a.xml")], &format!("{COMPANIES}{notify}"));
    let summary = app.poll().await;
    assert_eq!(
        summary.alerts,
        Some(Delivered {
            delivered: 1,
            failed: 0
        })
    );
    let posted = &server.requests(INVOKE)[0];
    assert_eq!(posted.headers["content-type"], "application/json");
    let message: serde_json::Value = serde_json::from_slice(&posted.body).unwrap();
    let card = &message["attachments"][0]["content"];
    assert_eq!(
        (&message["type"], &card["type"], &card["version"]),
        (
            &serde_json::json!("message"),
            &serde_json::json!("AdaptiveCard"),
            &serde_json::json!("1.4")
        )
    );
    let title = &card["body"][0];
    assert_eq!(
        (&title["type"], &title["inlines"][0]["text"]),
        (
            &serde_json::json!("RichTextBlock"),
            &serde_json::json!("Xiaomi & [Samsung](https://evil.example) sign a **deal**")
        ),
        "{card}"
    );
    assert_eq!(
        card["actions"][0]["url"], "https://news.example/deal?id=1",
        "{card}"
    );

    let stderr = test_alert_refused(
        &app,
        &server,
        INVOKE,
        Route {
            body: br#"{"error":{"code":"TriggerInputSchemaMismatch","message":"The input body for trigger 'manual' did not match its schema (sig Zk9s3cr3t)."}}"#.to_vec(),
            content_type: "application/json".into(),
            ..Route::webhook(400)
        },
        "channel",
    );
    assert!(
        stderr.contains(
            "answered HTTP 400 Bad Request: TriggerInputSchemaMismatch: \
             The input body for trigger 'manual' did not match its schema (sig …)."
        ) && !stderr.contains("Zk9s3cr3t"),
        "{stderr}"
    );
    // A proxy in front of it may quote the path and query it could not forward.
    let stderr = test_alert_refused(
        &app,
        &server,
        INVOKE,
        Route {
            body: format!("cannot forward POST /{INVOKE}").into_bytes(),
            ..Route::webhook(502)
        },
        "channel",
    );
    assert!(
        stderr.contains("answered HTTP 502 Bad Gateway: cannot forward POST …?…")
            && !stderr.contains("Zk9s3cr3t")
            && !stderr.contains("4f2a"),
        "{stderr}"
    );
}

/// Slack's hooks carry their credential in the path.
const SLACK_HOOK: &str = "services/T1/B2/s3cr3t";

#[tokio::test]
async fn slack_and_discord_targets_get_a_message_their_channel_shows_and_a_refusal_says_why() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Xiaomi &amp; Samsung sign a *patent* deal, @everyone &lt;3</title>\
               <link>https://news.example/deal?id=1&amp;ref=rss</link>\
               <description>Xiaomi and Samsung agreed to share patents.</description>"]),
    );
    server.set(SLACK_HOOK, Route::webhook(200));
    server.set("discord", Route::webhook(204));
    let notify = format!(
        "\n[[notify]]\nname = \"desk\"\nbacklog = true\nformat = \"slack\"\nsecret = \"k3y\"\nurl = \"{}\"\n\
         [[notify]]\nname = \"team\"\nbacklog = true\nformat = \"discord\"\nurl = \"{}\"\n",
        server.url(SLACK_HOOK),
        server.url("discord")
    );
    let app = App::new(&[server.url("a.xml")], &format!("{COMPANIES}{notify}"));
    let summary = app.poll().await;
    assert_eq!(
        summary.alerts,
        Some(Delivered {
            delivered: 2,
            failed: 0
        })
    );
    let slack = &server.requests(SLACK_HOOK)[0];
    let message: serde_json::Value = serde_json::from_slice(&slack.body).unwrap();
    let text = message["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "*<https://news.example/deal?id=1&amp;ref=rss|Xiaomi &amp; Samsung sign a *patent* deal, @everyone &lt;3>*\n\
             Xiaomi, Samsung · Test feed · "
        ),
        "{text}"
    );
    assert!(
        text.contains("\n>*Xiaomi*: Xiaomi &amp; Samsung sign"),
        "{text}"
    );
    assert_eq!(
        slack.headers["x-feedhound-signature"],
        feedhound::notify::signature("k3y", &slack.body),
        "signed as a JSON alert is"
    );
    assert!(slack.headers.contains_key("idempotency-key"));
    let discord = &server.requests("discord")[0];
    let message: serde_json::Value = serde_json::from_slice(&discord.body).unwrap();
    assert_eq!(message["allowed_mentions"]["parse"], serde_json::json!([]));
    let content = message["content"].as_str().unwrap();
    assert!(
        content.starts_with(
            r"**[Xiaomi & Samsung sign a \*patent\* deal, \@everyone \<3](https://news.example/deal?id=1&ref=rss)**"
        ),
        "{content}"
    );

    // Slack says why in plain words, labelled text/html.
    let stderr = test_alert_refused(
        &app,
        &server,
        SLACK_HOOK,
        Route {
            body: b"invalid_token\n".to_vec(),
            content_type: "text/html".into(),
            ..Route::webhook(403)
        },
        "desk",
    );
    assert!(
        stderr.contains(&format!(
            "{}/… answered HTTP 403 Forbidden: invalid_token",
            server.url("").trim_end_matches('/')
        )) && !stderr.contains("s3cr3t"),
        "the reason, and not the path that is the hook's credential: {stderr}"
    );
    server.feed(
        "a.xml",
        rss(&["<guid>2</guid><title>Samsung opens a plant</title>"]),
    );
    let summary = app.poll().await;
    assert_eq!(summary.alerts.map(|a| a.failed), Some(1));
    let alerts = app.cli(&["alerts"]);
    let table = String::from_utf8_lossy(&alerts.stdout);
    assert!(
        table.contains("answered HTTP 403 Forbidden: invalid_token") && !table.contains("s3cr3t"),
        "{table}"
    );
    let test: serde_json::Value =
        serde_json::from_slice(&server.requests(SLACK_HOOK)[1].body).unwrap();
    assert!(
        test["text"]
            .as_str()
            .unwrap()
            .starts_with("*feedhound test alert for desk*\n"),
        "{test}"
    );
}

#[test]
fn company_filters_take_an_alias_and_refuse_a_name_the_config_lacks() {
    let app = App::new(&[], COMPANIES);
    let file = app.dir.path().join("story.txt");
    std::fs::write(&file, "小米 and Samsung sign a patent deal").unwrap();
    let file = file.to_str().unwrap();
    let output = app.cli(&["test-match", "--company", "xiaomi corp", file]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("Xiaomi: flagged"), "{stdout}");
    assert!(
        !stdout.contains("Samsung"),
        "only the company asked for: {stdout}"
    );
    for args in [
        &["test-match", "--company", "Samsong", file][..],
        &["mentions", "--company", "Samsong"],
        &["search", "deal", "--company", "Samsong"],
    ] {
        let output = app.cli(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        assert!(
            stderr.contains("is named \"Samsong\"; its companies are: Xiaomi, Samsung, Apple"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn test_match_reads_its_text_as_the_field_asked_for() {
    let companies = format!("{COMPANIES}\n[[company]]\nname = \"Nokia\"\nfields = [\"summary\"]\n");
    let app = App::new(&[], &companies);
    let file = app.dir.path().join("story.txt");
    std::fs::write(&file, "Nokia and Samsung sign a patent deal").unwrap();
    let file = file.to_str().unwrap();
    let explain = |field: &str| {
        let output = app.cli(&["test-match", "--field", field, file]);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let as_content = explain("content");
    assert!(as_content.contains("Nokia: not flagged"), "{as_content}");
    assert!(as_content.contains("field not searched"), "{as_content}");
    let as_summary = explain("summary");
    assert!(as_summary.contains("Nokia: flagged"), "{as_summary}");
    assert!(as_summary.contains("Samsung: flagged"), "{as_summary}");
    let as_title = explain("title");
    assert!(as_title.contains("Nokia: not flagged"), "{as_title}");
    assert!(as_title.contains("title @10: \"Samsung\""), "{as_title}");
}

#[tokio::test]
async fn a_new_feeds_backlog_is_flagged_but_alerts_only_the_targets_that_ask_for_it() {
    let server = FeedServer::start();
    let story = |guid: &str, title: &str| {
        format!(
            "<guid>{guid}</guid><title>{title}</title><description>Xiaomi said so.</description>"
        )
    };
    let old = story("old", "Xiaomi opened a store last month");
    server.feed("a.xml", rss(&[&old]));
    server.set("quiet", Route::webhook(200));
    server.set("digest", Route::webhook(200));
    let notify = format!(
        "\n[[notify]]\nname = \"quiet\"\nurl = \"{}\"\n\n[[notify]]\nname = \"digest\"\nurl = \"{}\"\nbacklog = true\n",
        server.url("quiet"),
        server.url("digest")
    );
    let app = App::new(&[server.url("a.xml")], &format!("{COMPANIES}{notify}"));
    let sent = || {
        (
            server.requests("quiet").len(),
            server.requests("digest").len(),
        )
    };

    // The first document is what the feed published before it was watched: flagged, and sent
    // only where the backlog was asked for.
    assert_eq!(app.poll().await.entries_new, 1);
    assert_eq!(flagged(&app).len(), 1);
    assert_eq!(sent(), (0, 1));
    // An edit of that old story does not page about it either.
    let edited = story("old", "Xiaomi opened a store last month, in Paris");
    server.feed("a.xml", rss(&[&edited]));
    assert_eq!(app.poll().await.entries_updated, 1);
    assert_eq!(sent(), (0, 1));

    // From then on, new stories go everywhere.
    let new = story("new", "Xiaomi opens a store today");
    server.feed("a.xml", rss(&[&new, &edited]));
    assert_eq!(app.poll().await.entries_new, 1);
    assert_eq!(sent(), (1, 2));
    let alerted: serde_json::Value =
        serde_json::from_slice(&server.requests("quiet")[0].body).unwrap();
    assert_eq!(alerted["story"]["title"], "Xiaomi opens a store today");
}

#[tokio::test]
async fn a_feed_put_back_in_the_config_alerts_its_next_new_story() {
    let server = FeedServer::start();
    let story = |guid: &str, title: &str| format!("<guid>{guid}</guid><title>{title}</title>");
    let old = story("old", "Xiaomi opened a store last month");
    server.feed("a.xml", rss(&[&old]));
    server.feed("b.xml", rss(&[&story("w", "Weather")]));
    server.set("quiet", Route::webhook(200));
    let notify = format!(
        "\n[[notify]]\nname = \"quiet\"\nurl = \"{}\"\n",
        server.url("quiet")
    );
    let extra = format!("{COMPANIES}{notify}");
    let both = [server.url("a.xml"), server.url("b.xml")];
    let app = App::new(&both, &extra);
    app.poll().await;
    app.write_config(&both[1..], &extra);
    app.poll().await;

    // Back in the config and unchanged (the server has its ETag): the document it serves is
    // what it published while it was out, a backlog, and is fetched whole to be read as one.
    app.write_config(&both, &extra);
    app.poll().await;
    let back = server.requests("a.xml").pop().unwrap();
    assert_eq!(back.status, 200, "{:?}", back.headers);
    assert!(server.requests("quiet").is_empty());

    let new = story("new", "Xiaomi opens a store today");
    server.feed("a.xml", rss(&[&new, &old]));
    assert_eq!(app.poll().await.entries_new, 1);
    assert_eq!(
        server.requests("quiet").len(),
        1,
        "the first story after the feed came back is news"
    );
}

#[tokio::test]
async fn an_edit_naming_a_new_company_alerts_the_targets_that_want_it_once() {
    let server = FeedServer::start();
    let story = |title: &str| format!("<guid>lab</guid><title>{title}</title>");
    server.feed("a.xml", rss(&["<guid>w</guid><title>Weather</title>"]));
    let mut notify = String::new();
    for (name, companies) in [("all", ""), ("samsung", "Samsung"), ("xiaomi", "Xiaomi")] {
        server.set(name, Route::webhook(200));
        notify += &format!(
            "\n[[notify]]\nname = \"{name}\"\nurl = \"{}\"\n",
            server.url(name)
        );
        if !companies.is_empty() {
            notify += &format!("companies = [\"{companies}\"]\n");
        }
    }
    let app = App::new(&[server.url("a.xml")], &format!("{COMPANIES}{notify}"));
    let alerts = |target: &str| -> Vec<serde_json::Value> {
        server
            .requests(target)
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    };
    let sent = || ["all", "samsung", "xiaomi"].map(|t| alerts(t).len());
    app.poll().await;

    server.feed("a.xml", rss(&[&story("Samsung opens a lab")]));
    app.poll().await;
    assert_eq!(sent(), [1, 1, 0]);
    let first = &alerts("all")[0];
    assert!(first.get("newly_named").is_none(), "{first}");

    // The edit names Xiaomi: the target that wants every company hears of it, and so does the
    // one that wants Xiaomi, for which it is the story's first alert.
    server.feed("a.xml", rss(&[&story("Samsung opens a lab with Xiaomi")]));
    assert_eq!(app.poll().await.entries_updated, 1);
    assert_eq!(sent(), [2, 1, 1]);
    let edit = &alerts("all")[1];
    assert_eq!(edit["newly_named"], "Xiaomi", "{edit}");
    assert_eq!(edit["story"]["id"], first["story"]["id"]);
    assert_ne!(edit["idempotency_key"], first["idempotency_key"]);
    let names: Vec<&str> = edit["companies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Xiaomi", "Samsung"], "{edit}");
    assert!(alerts("xiaomi")[0].get("newly_named").is_none());

    // An edit of other words sends nothing; nor do edits that drop Xiaomi and name it again:
    // every target was told of Xiaomi, by an edit's alert or by its first alert.
    for title in [
        "Samsung opens a big lab with Xiaomi",
        "Samsung opens a lab",
        "Samsung and Xiaomi open a lab",
        "Samsung opens a lab",
        "Xiaomi and Samsung open a lab",
    ] {
        server.feed("a.xml", rss(&[&story(title)]));
        assert_eq!(app.poll().await.entries_updated, 1, "{title}");
        assert_eq!(sent(), [2, 1, 1], "{title}");
    }
}

#[tokio::test]
async fn an_edit_while_the_first_alert_waits_is_in_it_and_in_an_alert_of_its_own() {
    let server = FeedServer::start();
    let story = |title: &str| format!("<guid>lab</guid><title>{title}</title>");
    server.feed("a.xml", rss(&["<guid>w</guid><title>Weather</title>"]));
    server.set("hook", Route::webhook(500));
    let notify = format!(
        "\n[[notify]]\nurl = \"{}\"\nretry_delay = \"1s\"\n",
        server.url("hook")
    );
    let app = App::new(&[server.url("a.xml")], &format!("{COMPANIES}{notify}"));
    app.poll().await;
    server.feed("a.xml", rss(&[&story("Samsung opens a lab")]));
    app.poll().await;
    assert_eq!(server.requests("hook").len(), 1, "tried once, refused");
    server.feed("a.xml", rss(&[&story("Samsung opens a lab with Xiaomi")]));
    assert_eq!(app.poll().await.entries_updated, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM outbox"),
        1,
        "the waiting alert is read when it is sent: no second alert yet"
    );
    server.set("hook", Route::webhook(200));
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    app.poll().await;
    let bodies: Vec<serde_json::Value> = server
        .requests("hook")
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let [.., retried, follow_up] = &bodies[..] else {
        panic!("{bodies:?}")
    };
    // The retry names Xiaomi, but under the key of the attempt a receiver may have kept and
    // drop it by: Xiaomi gets an alert of its own.
    assert_eq!(retried["idempotency_key"], bodies[0]["idempotency_key"]);
    assert_eq!(
        retried["companies"].as_array().unwrap().len(),
        2,
        "{retried}"
    );
    assert_eq!(follow_up["newly_named"], "Xiaomi", "{follow_up}");
    assert_eq!(
        app.count("SELECT count(*) FROM outbox WHERE delivered_at IS NULL"),
        0
    );
}

#[tokio::test]
async fn a_waiting_alert_an_edit_makes_untrue_is_withdrawn_and_goes_out_if_the_company_comes_back()
{
    let server = FeedServer::start();
    let story = |title: &str| format!("<guid>lab</guid><title>{title}</title>");
    server.feed("a.xml", rss(&["<guid>w</guid><title>Weather</title>"]));
    server.set("hook", Route::webhook(500));
    let notify = format!(
        "\n[[notify]]\nname = \"desk\"\nurl = \"{}\"\nretry_delay = \"1s\"\ncompanies = [\"Xiaomi\"]\n",
        server.url("hook")
    );
    let app = App::new(&[server.url("a.xml")], &format!("{COMPANIES}{notify}"));
    app.poll().await;
    server.feed("a.xml", rss(&[&story("Xiaomi opens a lab in Seoul")]));
    app.poll().await;
    assert_eq!(server.requests("hook").len(), 1, "tried once, refused");

    // The publisher corrects the story while the alert waits for its retry.
    server.feed("a.xml", rss(&[&story("Samsung opens a lab in Seoul")]));
    assert_eq!(app.poll().await.entries_updated, 1);
    server.set("hook", Route::webhook(200));
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    app.poll().await;
    assert_eq!(
        server.requests("hook").len(),
        1,
        "no alert about a story that no longer names Xiaomi"
    );
    let listed = app.cli(&["alerts", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        (&listed[0]["withdrawn"], &listed[0]["pending"]),
        (&1.into(), &0.into()),
        "{listed}"
    );

    // Named again: the alert goes out after all, under its first attempt's key.
    server.feed(
        "a.xml",
        rss(&[&story("Samsung and Xiaomi open a lab in Seoul")]),
    );
    assert_eq!(app.poll().await.entries_updated, 1);
    let bodies: Vec<serde_json::Value> = server
        .requests("hook")
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let [refused, sent] = &bodies[..] else {
        panic!("{bodies:?}")
    };
    assert_eq!(sent["idempotency_key"], refused["idempotency_key"]);
    assert!(sent.get("newly_named").is_none(), "{sent}");
    assert!(
        sent["companies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "Xiaomi"),
        "{sent}"
    );
}

#[tokio::test]
async fn an_edit_in_a_feeds_backlog_document_alerts_only_the_targets_that_ask_for_it() {
    let server = FeedServer::start();
    let story = |title: &str| format!("<guid>lab</guid><title>{title}</title>");
    server.feed("a.xml", rss(&["<guid>w</guid><title>Weather</title>"]));
    server.set("hook", Route::webhook(200));
    server.set("digest", Route::webhook(200));
    let notify = format!(
        "\n[[notify]]\nurl = \"{}\"\n\n[[notify]]\nname = \"digest\"\nurl = \"{}\"\nbacklog = true\n",
        server.url("hook"),
        server.url("digest")
    );
    let companies = format!("{COMPANIES}{notify}");
    let app = App::new(&[server.url("a.xml")], &companies);
    app.poll().await;
    server.feed("a.xml", rss(&[&story("Samsung opens a lab")]));
    app.poll().await;
    assert_eq!(server.requests("hook").len(), 1);
    assert_eq!(server.requests("digest").len(), 1);
    // Out of the config for a while: its next document is what it published meanwhile.
    app.write_config(&[], &companies);
    app.poll().await;
    server.feed("a.xml", rss(&[&story("Samsung opens a lab with Xiaomi")]));
    app.write_config(&[server.url("a.xml")], &companies);
    assert_eq!(app.poll().await.entries_updated, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM mentions"),
        2,
        "the edit is matched"
    );
    assert_eq!(
        server.requests("hook").len(),
        1,
        "but pages no target that left the backlog out"
    );
    let digest = server.requests("digest");
    assert_eq!(
        digest.len(),
        2,
        "the target that asked for it hears of Xiaomi"
    );
    let payload: serde_json::Value = serde_json::from_slice(&digest[1].body).unwrap();
    assert_eq!(payload["newly_named"], "Xiaomi", "{payload}");
}

#[tokio::test]
async fn a_copy_naming_a_company_new_to_the_story_alerts_once_and_an_edit_saying_so_again_does_not()
{
    let server = FeedServer::start();
    let copy = |title: &str| {
        format!("<guid>lab</guid><link>https://news.example/lab</link><title>{title}</title>")
    };
    server.feed("a.xml", rss(&["<guid>w</guid><title>Weather</title>"]));
    server.feed("b.xml", rss(&["<guid>w</guid><title>Traffic</title>"]));
    server.set("hook", Route::webhook(200));
    let notify = format!("\n[[notify]]\nurl = \"{}\"\n", server.url("hook"));
    let app = App::new(
        &[server.url("a.xml"), server.url("b.xml")],
        &format!("{COMPANIES}{notify}"),
    );
    app.poll().await;
    server.feed("a.xml", rss(&[&copy("Samsung opens a lab")]));
    app.poll().await;
    assert_eq!(server.requests("hook").len(), 1);
    server.feed("b.xml", rss(&[&copy("Samsung and Xiaomi open a lab")]));
    assert_eq!(app.poll().await.entries_new, 1);
    assert_eq!(
        app.count("SELECT count(DISTINCT story_id) FROM entries WHERE guid = 'lab'"),
        1
    );
    let hooks = server.requests("hook");
    assert_eq!(hooks.len(), 2, "the copy named Xiaomi");
    let payload: serde_json::Value = serde_json::from_slice(&hooks[1].body).unwrap();
    assert_eq!(payload["newly_named"], "Xiaomi", "{payload}");
    assert_eq!(payload["sources"].as_array().unwrap().len(), 2, "{payload}");
    server.feed("a.xml", rss(&[&copy("Samsung opens a lab with Xiaomi")]));
    assert_eq!(app.poll().await.entries_updated, 1);
    assert_eq!(
        server.requests("hook").len(),
        2,
        "the story named Xiaomi already, through the other copy"
    );
}

#[tokio::test]
async fn a_copy_linked_like_one_source_and_titled_like_none_still_joins_the_story() {
    let server = FeedServer::start();
    let item = |guid: &str, link: &str, title: &str| {
        format!(
            "<guid>{guid}</guid><title>{title}</title><link>{link}</link><description>Xiaomi said so.</description>"
        )
    };
    let wire = item(
        "a-1",
        "https://wire.example/xiaomi-paris",
        "Xiaomi opens a store in Paris",
    );
    let paper = item(
        "b-1",
        "https://paper.example/b7",
        "Xiaomi opens a store in Paris",
    );
    let aggregator = item(
        "c-1",
        "https://paper.example/b7?utm_source=agg",
        "Xiaomi opens Paris store | The Paper",
    );
    for path in ["a.xml", "b.xml", "c.xml"] {
        server.feed(path, rss(&[]));
    }
    server.set("hook", Route::webhook(200));
    let urls = ["a.xml", "b.xml", "c.xml"].map(|p| server.url(p));
    let notify = format!("\n[[notify]]\nurl = \"{}\"\n", server.url("hook"));
    let app = App::new(&urls, &format!("{COMPANIES}{notify}"));
    // Past each feed's backlog document.
    app.poll().await;
    // One copy per poll, so they reach the store in this order: the paper's copy joins the
    // wire's story by title; the aggregator's, by the paper's link alone.
    for (path, copy) in [("a.xml", &wire), ("b.xml", &paper), ("c.xml", &aggregator)] {
        server.feed(path, rss(&[copy]));
        assert_eq!(app.poll().await.entries_new, 1);
    }
    assert_eq!(
        flagged(&app),
        [(
            "Xiaomi opens a store in Paris".to_string(),
            "Xiaomi".to_string(),
            3
        )]
    );
    assert_eq!(server.requests("hook").len(), 1, "one story, one alert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_fails_twice_then_succeeds_gets_the_alert_with_the_same_key_each_time() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Samsung ships a phone</title>"]),
    );
    server.set(
        "hook",
        Route {
            first_statuses: vec![500, 503],
            ..Route::webhook(200)
        },
    );
    let notify = format!(
        "\n[[notify]]\nbacklog = true\nurl = \"{}\"\nretry_delay = \"50ms\"\n",
        server.url("hook")
    );
    let app = App::new(&[server.url("a.xml")], &format!("{COMPANIES}{notify}"));
    let (shutdown, daemon) = run_daemon(&app);
    let hooks = tokio::task::spawn_blocking({
        let server_requests = move || server.requests("hook");
        move || {
            wait_until(Duration::from_secs(20), "the webhook succeeds", || {
                server_requests().iter().any(|r| r.status == 200)
            });
            server_requests()
        }
    })
    .await
    .unwrap();
    // The server has answered 200; the daemon records it once it has read the answer. A
    // shutdown before that would leave the alert queued, to be sent again after a restart.
    let delivered = "SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL AND attempts = 3";
    let db_path = app.db_path();
    tokio::task::spawn_blocking(move || {
        let db = rusqlite::Connection::open(db_path).unwrap();
        wait_until(Duration::from_secs(20), "the delivery is recorded", || {
            db.query_row(delivered, [], |r| r.get::<_, i64>(0)).ok() == Some(1)
        });
    })
    .await
    .unwrap();
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
    assert_eq!(
        hooks.iter().map(|h| h.status).collect::<Vec<_>>(),
        [500, 503, 200]
    );
    let keys: Vec<&String> = hooks
        .iter()
        .map(|h| &h.headers["idempotency-key"])
        .collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    assert_eq!(app.count(delivered), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_hangs_holds_back_neither_other_targets_nor_queues_its_own_alerts_behind_it()
{
    let feeds = FeedServer::start();
    feeds.feed(
        "a.xml",
        rss(&[
            "<guid>1</guid><title>Samsung ships a phone</title>",
            "<guid>2</guid><title>Xiaomi posts results</title>",
        ]),
    );
    // The broken target comes first: serial delivery would send it the oldest alert first.
    let (_working, broken, others_arrived_meanwhile, notify) =
        broken_and_working_targets(Duration::from_secs(10));
    let app = App::new(&[feeds.url("a.xml")], &format!("{COMPANIES}{notify}"));

    let summary = app.poll().await;
    assert!(
        others_arrived_meanwhile.load(Ordering::SeqCst),
        "the working target got its alerts only after the broken one gave up"
    );
    assert_eq!(
        summary.alerts,
        Some(Delivered {
            delivered: 2,
            failed: 1
        })
    );
    assert_eq!(
        broken.requests("hook").len(),
        1,
        "the second alert was sent to a target that had just failed to answer"
    );
    // The one sent waits for its retry; the other was not tried.
    let attempts: Vec<(i64, bool)> = app
        .db()
        .prepare(
            "SELECT attempts, next_attempt_at > datetime('now', '+50 minutes') FROM outbox
             WHERE target = 'broken' AND delivered_at IS NULL ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(attempts, [(1, true), (0, false)]);
    let error: String = app
        .db()
        .query_row(
            "SELECT last_error FROM outbox WHERE target = 'broken' AND attempts = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // Closed without an answer: the cause is said, and the URL's path (a webhook's secret) not.
    assert!(
        error.starts_with("cannot reach http://127.0.0.1:")
            && error.contains("/…: ")
            && error.ends_with("connection closed before message completed"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_delivers_a_new_alert_to_one_target_while_another_target_hangs() {
    let feeds = FeedServer::start();
    feeds.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Samsung ships a phone</title>"]),
    );
    // Holds the first story's alert until the working target has the second story's too.
    let (working, broken, second_arrived_meanwhile, notify) =
        broken_and_working_targets(Duration::from_secs(12));
    let app = App::with_polling(
        &[feeds.url("a.xml")],
        "interval = \"300ms\"\nmin_interval = \"300ms\"",
        &format!("{COMPANIES}{notify}"),
    );
    let (shutdown, daemon) = run_daemon(&app);
    let second_story = rss(&[
        "<guid>1</guid><title>Samsung ships a phone</title>",
        "<guid>2</guid><title>Xiaomi posts results</title>",
    ]);
    let third_story = rss(&[
        "<guid>1</guid><title>Samsung ships a phone</title>",
        "<guid>2</guid><title>Xiaomi posts results</title>",
        "<guid>3</guid><title>Samsung opens a plant</title>",
    ]);
    let db_path = app.db_path();
    let broken_requests = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(20), "the first alerts are sent", || {
            working.requests("hook").len() == 1 && broken.requests("hook").len() == 1
        });
        feeds.feed("a.xml", second_story);
        wait_until(Duration::from_secs(20), "the second story's alert", || {
            working.requests("hook").len() == 2
        });
        let db = rusqlite::Connection::open(&db_path).unwrap();
        wait_until(
            Duration::from_secs(20),
            "the broken target's failure is recorded",
            || {
                db.query_row(
                    "SELECT count(*) FROM outbox WHERE target = 'broken' AND attempts = 1",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .is_ok_and(|n| n == 1)
            },
        );
        // While it is down, a new alert waits for its retry too, rather than being tried at once.
        feeds.feed("a.xml", third_story);
        wait_until(Duration::from_secs(20), "the third story's alert", || {
            working.requests("hook").len() == 3
        });
        std::thread::sleep(Duration::from_millis(500));
        broken.requests("hook").len()
    })
    .await
    .unwrap();
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
    assert!(
        second_arrived_meanwhile.load(Ordering::SeqCst),
        "the new alert waited for the hanging target's POST to end"
    );
    assert_eq!(
        broken_requests, 1,
        "a target found down was tried again before its retry"
    );
    assert_eq!(
        app.count("SELECT sum(attempts) FROM outbox WHERE target = 'broken'"),
        1,
        "only the first story's alert was tried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_the_target_chokes_on_does_not_block_the_others() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Samsung ships a phone</title>"]),
    );
    // A receiver whose proxy answers 502 to this one payload, every time: it looks down.
    server.set(
        "hook",
        Route {
            status_for_body: Some(("Samsung ships".into(), 502)),
            ..Route::webhook(200)
        },
    );
    let notify = format!(
        "\n[[notify]]\nbacklog = true\nurl = \"{}\"\nretry_delay = \"200ms\"\n",
        server.url("hook")
    );
    let app = App::with_polling(
        &[server.url("a.xml")],
        "interval = \"300ms\"\nmin_interval = \"300ms\"",
        &format!("{COMPANIES}{notify}"),
    );
    let (shutdown, daemon) = run_daemon(&app);
    let second_story = rss(&[
        "<guid>1</guid><title>Samsung ships a phone</title>",
        "<guid>2</guid><title>Xiaomi posts results</title>",
    ]);
    let delivered = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(20), "the first attempt", || {
            !server.requests("hook").is_empty()
        });
        server.feed("a.xml", second_story);
        wait_until(
            Duration::from_secs(20),
            "the other alert is delivered",
            || server.requests("hook").iter().any(|h| h.status == 200),
        );
        server.requests("hook")
    })
    .await
    .unwrap();
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
    let ok: Vec<&Seen> = delivered.iter().filter(|h| h.status == 200).collect();
    assert_eq!(ok.len(), 1);
    assert!(String::from_utf8_lossy(&ok[0].body).contains("Xiaomi posts results"));
    assert_eq!(
        app.count("SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND attempts > 0"),
        1,
        "the alert the receiver chokes on keeps being retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_the_target_refuses_does_not_hold_back_the_next_one() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&[
            "<guid>1</guid><title>Samsung ships a phone</title>",
            "<guid>2</guid><title>Xiaomi posts results</title>",
        ]),
    );
    server.set(
        "hook",
        Route {
            first_statuses: vec![422],
            ..Route::webhook(200)
        },
    );
    let notify = format!(
        "\n[[notify]]\nbacklog = true\nurl = \"{}\"\nretry_delay = \"1h\"\n",
        server.url("hook")
    );
    let app = App::new(&[server.url("a.xml")], &format!("{COMPANIES}{notify}"));
    let summary = app.poll().await;
    assert_eq!(
        server
            .requests("hook")
            .iter()
            .map(|h| h.status)
            .collect::<Vec<_>>(),
        [422, 200]
    );
    assert_eq!(
        summary.alerts,
        Some(Delivered {
            delivered: 1,
            failed: 1
        })
    );
}

/// A server with one flagged story at `a.xml` and a webhook at `hook` that answers `status`
/// with `Retry-After: <retry_after>`.
fn story_and_hook_answering(status: u16, retry_after: &str) -> FeedServer {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Samsung ships a phone</title>"]),
    );
    server.set(
        "hook",
        Route {
            headers: vec![("Retry-After".into(), retry_after.into())],
            ..Route::webhook(status)
        },
    );
    server
}

#[tokio::test]
async fn a_target_found_down_rests_across_polls_as_long_as_its_retry_after_asks_until_its_url_changes()
 {
    let server = story_and_hook_answering(503, "60");
    server.set("fixed-hook", Route::webhook(200));
    let notify = |path: &str| {
        format!(
            "{COMPANIES}\n[[notify]]\nbacklog = true\nname = \"desk\"\nurl = \"{}\"\nretry_delay = \"1s\"\n",
            server.url(path)
        )
    };
    let app = App::new(&[server.url("a.xml")], &notify("hook"));

    app.poll().await;
    assert_eq!(server.requests("hook").len(), 1);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM alert_target_rests
             WHERE rest_until > datetime('now', '+50 seconds')"
        ),
        1,
        "the rest lasts as long as Retry-After asked, not the 1 s of retry_delay"
    );

    // Each poll delivers with a Notifier of its own: the rest must come from the database.
    server.feed(
        "a.xml",
        rss(&[
            "<guid>1</guid><title>Samsung ships a phone</title>",
            "<guid>2</guid><title>Xiaomi posts results</title>",
        ]),
    );
    let resting = app.poll().await;
    assert_eq!(
        server.requests("hook").len(),
        1,
        "a new alert does not wake a resting target"
    );
    assert_eq!(resting.alerts, Some(Delivered::default()));
    let listed = app.cli(&["alerts", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(
        listed[0]["resting_until"].is_string(),
        "`feedhound alerts` shows the rest: {listed}"
    );

    // The first alert's own retry (1 s) is made due now; the rest is not over.
    app.db()
        .execute(
            "UPDATE outbox SET next_attempt_at = datetime('now', '-1 second')",
            [],
        )
        .unwrap();
    app.write_config(&[server.url("a.xml")], &notify("fixed-hook"));
    let listed = app.cli(&["alerts", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(
        listed[0]["resting_until"].is_null(),
        "the rest was for the old URL: {listed}"
    );
    let fixed = app.poll().await;
    assert_eq!(server.requests("hook").len(), 1);
    assert_eq!(
        server.requests("fixed-hook").len(),
        2,
        "a fixed URL is tried at once"
    );
    assert_eq!(
        fixed.alerts,
        Some(Delivered {
            delivered: 2,
            failed: 0
        })
    );
    assert_eq!(app.count("SELECT count(*) FROM alert_target_rests"), 0);
}

#[tokio::test]
async fn a_rest_ends_by_time_and_the_next_round_found_down_doubles_it_whatever_a_proxy_says() {
    // A 502's Retry-After is the proxy's: the receiver behind it said nothing.
    let server = story_and_hook_answering(502, "3000");
    let notify = format!(
        "\n[[notify]]\nbacklog = true\nurl = \"{}\"\nretry_delay = \"60s\"\n",
        server.url("hook")
    );
    let app = App::new(&[server.url("a.xml")], &format!("{COMPANIES}{notify}"));
    let rest_is = |rounds: i64, from_secs: i64, to_secs: i64| {
        let sql = format!(
            "SELECT count(*) FROM alert_target_rests WHERE down_rounds = {rounds}
               AND rest_until > datetime('now', '+{from_secs} seconds')
               AND rest_until < datetime('now', '+{to_secs} seconds')"
        );
        app.count(&sql) == 1
    };

    app.poll().await;
    assert_eq!(server.requests("hook").len(), 1);
    assert!(rest_is(1, 50, 70), "retry_delay, not the proxy's 3000 s");

    // The rest is over and the alert due again: one more request, and the rest doubles.
    app.db()
        .execute_batch(
            "UPDATE alert_target_rests SET rest_until = datetime('now', '-1 second');
             UPDATE outbox SET next_attempt_at = datetime('now', '-1 second');",
        )
        .unwrap();
    app.poll().await;
    assert_eq!(server.requests("hook").len(), 2);
    assert!(
        rest_is(2, 110, 130),
        "a second round found down doubles the rest"
    );
}

#[test]
fn an_alert_queued_before_a_sigkill_is_delivered_after_the_restart() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Xiaomi posts results</title>"]),
    );
    // The receiver hangs: the daemon is killed while the delivery is in flight.
    server.set(
        "hook",
        Route {
            delay: Some(Duration::from_secs(30)),
            ..Route::webhook(200)
        },
    );
    let notify = format!(
        "\n[[notify]]\nbacklog = true\nurl = \"{}\"\nretry_delay = \"50ms\"\n",
        server.url("hook")
    );
    let app = App::new(&[server.url("a.xml")], &format!("{COMPANIES}{notify}"));
    let daemon = app.spawn_daemon();
    wait_until(Duration::from_secs(20), "the delivery starts", || {
        !server.requests("hook").is_empty()
    });
    daemon.kill_hard();
    assert_eq!(
        app.count("SELECT count(*) FROM outbox WHERE delivered_at IS NULL"),
        1
    );
    server.set("hook", Route::webhook(200));
    let daemon = app.spawn_daemon();
    wait_until(Duration::from_secs(20), "the alert is delivered", || {
        server
            .requests("hook")
            .iter()
            .any(|r| r.status == 200 && r.at.elapsed() < Duration::from_secs(25))
            && app.try_count("SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL")
                == Some(1)
    });
    let (status, stderr) = daemon.stop(Duration::from_secs(15));
    assert!(status.success(), "{stderr}");
    let hooks = server.requests("hook");
    let keys: Vec<&String> = hooks
        .iter()
        .map(|h| &h.headers["idempotency-key"])
        .collect();
    assert!(
        keys.len() >= 2 && keys.iter().all(|k| *k == keys[0]),
        "{keys:?}"
    );
}

#[test]
fn a_digest_target_gets_the_stories_queued_before_its_time_in_one_post_then_waits_for_the_next() {
    use chrono::{DurationRound, Utc};
    let server = FeedServer::start();
    let mut items = vec![
        "<guid>1</guid><title>Xiaomi posts results</title>",
        "<guid>2</guid><title>Samsung opens a plant</title>",
        "<guid>3</guid><title>Xiaomi and Samsung cut prices</title>",
    ];
    server.feed("a.xml", rss(&items));
    for hook in ["desk", "chat", "each"] {
        server.set(hook, Route::webhook(200));
    }
    // A digest time a few seconds ahead on the binary's clock (TZ=UTC), and on Tokyo's (UTC+9
    // all year) for the target that names that time zone: the poll below queues the stories
    // before it, and the daemon started after it sends them at that time.
    let digest_at = (Utc::now() + chrono::Duration::seconds(8))
        .duration_trunc(chrono::Duration::seconds(1))
        .unwrap();
    let digest = digest_at.format("%H:%M:%S");
    let in_tokyo = (digest_at + chrono::Duration::hours(9)).format("%H:%M:%S");
    let notify = format!(
        "\n[[notify]]\nname = \"desk\"\nurl = \"{}\"\nsecret = \"k3y\"\nbacklog = true\ndigest = \"{digest}\"\n\
         [[notify]]\nname = \"chat\"\nurl = \"{}\"\nformat = \"slack\"\nbacklog = true\ndigest = [\"{in_tokyo}\"]\ntime_zone = \"Asia/Tokyo\"\n\
         [[notify]]\nname = \"each\"\nurl = \"{}\"\nbacklog = true\n",
        server.url("desk"),
        server.url("chat"),
        server.url("each"),
    );
    let app = App::new(&[server.url("a.xml")], &format!("{COMPANIES}{notify}"));
    let utc = [("TZ", "UTC")];
    let polled = app.cli_with_env(&utc, &["poll"]);
    assert!(
        polled.status.success(),
        "{}",
        String::from_utf8_lossy(&polled.stderr)
    );
    assert_eq!(
        server.requests("each").len(),
        3,
        "a target without a digest: at once"
    );
    assert!(server.requests("desk").is_empty() && server.requests("chat").is_empty());
    assert!(
        Utc::now() < digest_at,
        "this machine took too long to poll for the test's digest time"
    );
    let next_attempts = || -> Vec<(String, i64, String)> {
        let output = app.cli_with_env(&utc, &["alerts", "--format", "json"]);
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        status
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["target"] != "each")
            .map(|t| {
                (
                    t["target"].as_str().unwrap().to_owned(),
                    t["pending"].as_i64().unwrap(),
                    t["next_attempt_at"].as_str().unwrap_or("-").to_owned(),
                )
            })
            .collect()
    };
    let today = digest_at.format("%Y-%m-%d %H:%M:%S").to_string();
    assert_eq!(
        next_attempts(),
        [("chat".into(), 3, today.clone()), ("desk".into(), 3, today)]
    );

    let daemon = app.spawn_daemon_with_env(&utc);
    while Utc::now() < digest_at - chrono::Duration::milliseconds(300) {
        assert!(
            server.requests("desk").is_empty() && server.requests("chat").is_empty(),
            "nothing goes before the digest time"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_until(Duration::from_secs(20), "both digests go out", || {
        server.requests("desk").len() == 1 && server.requests("chat").len() == 1
    });
    let sent = &server.requests("desk")[0];
    let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(
        body["idempotency_key"],
        sent.headers["idempotency-key"].as_str()
    );
    assert_eq!(
        sent.headers["x-feedhound-signature"],
        feedhound::notify::signature("k3y", &sent.body)
    );
    let mut titles: Vec<&str> = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|alert| alert["story"]["title"].as_str().unwrap())
        .collect();
    titles.sort();
    assert_eq!(
        titles,
        [
            "Samsung opens a plant",
            "Xiaomi and Samsung cut prices",
            "Xiaomi posts results"
        ]
    );
    let chat: serde_json::Value = serde_json::from_slice(&server.requests("chat")[0].body).unwrap();
    let text = chat["text"].as_str().unwrap();
    assert!(text.starts_with("*Digest: 3 stories*\n\n"), "{text}");
    assert_eq!(text.matches("Xiaomi posts results").count(), 1, "{text}");
    wait_until(
        Duration::from_secs(10),
        "the deliveries are recorded",
        || app.try_count("SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL") == Some(9),
    );
    let (status, stderr) = daemon.stop(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");

    // A story queued after the digest time waits for the next one, tomorrow; retrying by hand
    // does not send it early.
    items.push("<guid>4</guid><title>Xiaomi hires a new chief</title>");
    server.feed("a.xml", rss(&items));
    assert!(app.cli_with_env(&utc, &["poll"]).status.success());
    assert_eq!(server.requests("each").len(), 4);
    let tomorrow = (digest_at + chrono::Duration::days(1))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    assert_eq!(
        next_attempts(),
        [
            ("chat".into(), 1, tomorrow.clone()),
            ("desk".into(), 1, tomorrow)
        ]
    );
    let retried = app.cli_with_env(&utc, &["alerts", "--retry-now"]);
    let stdout = String::from_utf8_lossy(&retried.stdout);
    assert!(
        stdout.starts_with("No alert is due now, 2 wait for their digest"),
        "{stdout}"
    );
    assert!(app.cli_with_env(&utc, &["poll"]).status.success());
    assert_eq!(
        server.requests("desk").len(),
        1,
        "held after --retry-now too"
    );
    assert_eq!(server.requests("chat").len(), 1);
}

#[test]
fn a_digest_the_receiver_refuses_is_split_so_that_one_bad_alert_holds_back_no_other() {
    use chrono::{DurationRound, Utc};
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&[
            "<guid>1</guid><title>Xiaomi posts results</title>",
            "<guid>2</guid><title>Samsung poison pill</title>",
            "<guid>3</guid><title>Samsung opens a plant</title>",
        ]),
    );
    server.set(
        "hook",
        Route {
            status_for_body: Some(("poison pill".into(), 400)),
            ..Route::webhook(200)
        },
    );
    let digest_at = (Utc::now() + chrono::Duration::seconds(4))
        .duration_trunc(chrono::Duration::seconds(1))
        .unwrap();
    let notify = format!(
        "\n[[notify]]\nname = \"desk\"\nurl = \"{}\"\nbacklog = true\ndigest = \"{}\"\n",
        server.url("hook"),
        digest_at.format("%H:%M:%S")
    );
    let app = App::new(&[server.url("a.xml")], &format!("{COMPANIES}{notify}"));
    let utc = [("TZ", "UTC")];
    assert!(app.cli_with_env(&utc, &["poll"]).status.success());
    assert!(
        server.requests("hook").is_empty() && Utc::now() < digest_at,
        "queued before the digest time, and held"
    );
    while Utc::now() < digest_at {
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = app.cli_with_env(&utc, &["poll"]);
    assert!(sent.status.success());
    let hooks = server.requests("hook");
    let alerts_in = |seen: &Seen| {
        let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        body["alerts"].as_array().unwrap().len()
    };
    assert_eq!(
        hooks
            .iter()
            .map(|h| (h.status, alerts_in(h)))
            .collect::<Vec<_>>(),
        [(400, 3), (200, 1), (400, 1), (200, 1)],
        "the refused digest, then each of its alerts alone"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL"),
        2
    );
    assert_eq!(
        app.count(
            "SELECT attempts FROM outbox WHERE delivered_at IS NULL AND last_error LIKE '%HTTP 400%'"
        ),
        1,
        "the alert the receiver chokes on waits for its own retry"
    );
}

#[test]
fn alerts_retried_by_hand_go_out_from_the_running_daemon_despite_an_hour_of_backoff() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Xiaomi posts results</title>"]),
    );
    server.set("hook", Route::webhook(503));
    let notify = format!(
        "\n[[notify]]\nname = \"desk\"\nbacklog = true\nurl = \"{}\"\nretry_delay = \"1h\"\n",
        server.url("hook")
    );
    let app = App::new(&[server.url("a.xml")], &format!("{COMPANIES}{notify}"));
    let daemon = app.spawn_daemon();
    wait_until(Duration::from_secs(20), "the first attempt fails", || {
        app.try_count("SELECT count(*) FROM outbox WHERE attempts = 1 AND delivered_at IS NULL")
            == Some(1)
            && app.try_count("SELECT count(*) FROM alert_target_rests") == Some(1)
    });
    // The webhook is fixed: the alert and its target would otherwise wait for an hour.
    server.set("hook", Route::webhook(200));

    let misspelt = app.cli(&["alerts", "--retry-now", "--target", "dsk"]);
    assert!(!misspelt.status.success());
    let stderr = String::from_utf8_lossy(&misspelt.stderr);
    assert!(
        stderr.contains("is named \"dsk\"; its notify targets are: desk"),
        "{stderr}"
    );

    let retried = app.cli(&["alerts", "--retry-now", "--target", "desk"]);
    let stdout = String::from_utf8_lossy(&retried.stdout);
    assert!(
        retried.status.success(),
        "{}",
        String::from_utf8_lossy(&retried.stderr)
    );
    assert!(
        stdout.contains("1 waiting alert is due now, and 1 target's rest is over"),
        "{stdout}"
    );
    wait_until(Duration::from_secs(20), "the daemon delivers it", || {
        app.try_count("SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL") == Some(1)
    });
    let (status, stderr) = daemon.stop(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");

    // Every target, with JSON on stdout and the message on stderr.
    let again = app.cli(&["alerts", "--retry-now", "--format", "json"]);
    assert!(again.status.success());
    let status: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(status[0]["target"], "desk");
    assert_eq!(status[0]["delivered"], 1);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr, "No alert is waiting\n");
    let hooks = server.requests("hook");
    assert_eq!(
        hooks.iter().map(|h| h.status).collect::<Vec<_>>(),
        [503, 200]
    );
    assert_eq!(
        hooks[0].headers["idempotency-key"],
        hooks[1].headers["idempotency-key"]
    );
}

#[tokio::test]
async fn an_edited_entry_is_rematched_and_loses_stale_mentions() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Samsung and Xiaomi</title>"]),
    );
    let app = App::new(&[server.url("a.xml")], COMPANIES);
    app.poll().await;
    assert_eq!(app.count("SELECT count(*) FROM mentions"), 2);
    server.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Samsung alone</title>"]),
    );
    assert_eq!(app.poll().await.entries_updated, 1);
    assert_eq!(
        flagged(&app),
        [("Samsung alone".to_string(), "Samsung".to_string(), 1)]
    );
    assert_eq!(app.count("SELECT count(*) FROM mentions"), 1);
}

#[tokio::test]
async fn a_company_added_to_the_config_is_matched_against_stored_entries() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&[
            "<guid>1</guid><title>Nokia returns</title>",
            "<guid>2</guid><title>Samsung news</title>",
        ]),
    );
    let app = App::new(&[server.url("a.xml")], COMPANIES);
    app.poll().await;
    assert_eq!(app.count("SELECT count(*) FROM mentions"), 1);
    app.write_config(
        &[server.url("a.xml")],
        &format!("{COMPANIES}\n[[company]]\nname = \"Nokia\"\n"),
    );
    let summary = app.poll().await;
    assert_eq!(
        summary.feeds_not_modified, 1,
        "the feed itself did not change: {summary}"
    );
    assert_eq!(app.count("SELECT count(*) FROM mentions m JOIN companies c ON c.id = m.company_id WHERE c.name = 'Nokia'"), 1);
    // Removing a company hides its flags.
    app.write_config(&[server.url("a.xml")], "");
    app.poll().await;
    assert_eq!(app.count("SELECT count(*) FROM flagged_stories"), 0);
    let output = app.cli(&["rescan"]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("re-matched 2 entries"),
        "{output:?}"
    );
}

#[test]
fn test_match_explains_exclusions_and_missing_context() {
    let app = App::new(&[], COMPANIES);
    let file = app.dir.path().join("story.html");
    std::fs::write(
        &file,
        "<p>Apple pie recipes, and Apple's new store.</p><p>Samsung too.</p>",
    )
    .unwrap();
    let output = app.cli(&["test-match", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("Samsung: flagged"), "{stdout}");
    assert!(stdout.contains("Apple: not flagged"), "{stdout}");
    assert!(stdout.contains("require_any"), "{stdout}");
}

#[test]
fn a_notify_target_added_by_a_config_edit_receives_alerts_without_a_restart() {
    let server = FeedServer::start();
    server.feed("a.xml", rss(&["<guid>1</guid><title>Weather</title>"]));
    server.feed(
        "b.xml",
        rss(&["<guid>2</guid><title>Samsung opens a lab</title>"]),
    );
    server.set("hook", Route::webhook(200));
    let app = App::new(&[server.url("a.xml")], COMPANIES);
    let daemon = app.spawn_daemon();
    wait_until(Duration::from_secs(10), "a is polled", || {
        !server.requests("a.xml").is_empty()
    });
    let notify = format!(
        "\n[[notify]]\nbacklog = true\nurl = \"{}\"\n",
        server.url("hook")
    );
    app.write_config(
        &[server.url("a.xml"), server.url("b.xml")],
        &format!("{COMPANIES}{notify}"),
    );
    wait_until(
        Duration::from_secs(15),
        "the new target gets the alert",
        || !server.requests("hook").is_empty(),
    );
    let (status, stderr) = daemon.stop(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    let payload: serde_json::Value =
        serde_json::from_slice(&server.requests("hook")[0].body).unwrap();
    assert_eq!(payload["companies"][0]["name"], "Samsung");
}

#[tokio::test]
async fn a_company_name_with_a_comma_stays_one_company_in_mentions_output() {
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Acme, Inc. and Samsung sign a deal</title>"]),
    );
    let app = App::new(
        &[server.url("a.xml")],
        "\n[[company]]\nname = \"Acme, Inc.\"\n\n[[company]]\nname = \"Samsung\"\n",
    );
    app.poll().await;
    let output = app.cli(&["mentions", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        rows[0]["companies"],
        serde_json::json!(["Acme, Inc.", "Samsung"])
    );
}

/// README's "What mentioned Xiaomi this week" query, as printed there.
fn readme_query_for_one_company() -> String {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("-- What mentioned Xiaomi this week")
        .expect("README keeps the query");
    let end = start + readme[start..].find(';').expect("the query ends with ;");
    readme[start..end].to_string()
}

#[tokio::test]
async fn the_readme_query_filters_stories_by_an_exact_company_name() {
    let now = chrono::Utc::now().to_rfc2822();
    let item = |guid: &str, title: &str, published: &str| {
        format!(
            "<guid>{guid}</guid><title>{title}</title><link>https://news.example/{guid}</link><pubDate>{published}</pubDate>"
        )
    };
    let server = FeedServer::start();
    server.feed(
        "a.xml",
        rss(&[
            &item("1", "Meta opens a research lab in Paris", &now),
            &item("2", "Metaplanet buys more bitcoin", &now),
            &item("3", "Meta and Xiaomi sign a headset deal", &now),
            // Outside the query's week.
            &item(
                "4",
                "Meta results for the year",
                "Wed, 01 Jan 2020 10:00:00 GMT",
            ),
        ]),
    );
    // A second source of story 3 that also names Meta: still one row for the story.
    server.feed(
        "b.xml",
        rss(&[&item("3", "Meta and Xiaomi sign a headset deal", &now)]),
    );
    let companies = r#"
[[company]]
name = "Meta"

[[company]]
name = "Metaplanet"

[[company]]
name = "Xiaomi"
"#;
    let app = App::new(&[server.url("a.xml"), server.url("b.xml")], companies);
    app.poll().await;
    assert_eq!(
        app.count("SELECT sources FROM flagged_stories WHERE link = 'https://news.example/3'"),
        2
    );
    let titles = |company: &str| -> Vec<String> {
        let mut titles: Vec<String> = app
            .db()
            .prepare(&readme_query_for_one_company().replace("'Xiaomi'", &format!("'{company}'")))
            .unwrap()
            .query_map([], |r| r.get(1))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        titles.sort();
        titles
    };
    // "Metaplanet" contains "Meta", which a LIKE over the companies list would also pick.
    let meta = [
        "Meta and Xiaomi sign a headset deal",
        "Meta opens a research lab in Paris",
    ];
    assert_eq!(titles("Meta"), meta);
    assert_eq!(titles("meta"), meta, "the name is compared without case");
    assert_eq!(titles("Metaplanet"), ["Metaplanet buys more bitcoin"]);
    assert_eq!(titles("Xiaomi"), ["Meta and Xiaomi sign a headset deal"]);
}

#[tokio::test]
async fn an_edited_item_with_no_guid_or_link_is_neither_stored_nor_alerted_again() {
    let server = FeedServer::start();
    let recall_at = |text: &str, date: &str| {
        format!(
            "<title>Charger recall</title><description>{text}</description>\
             <pubDate>{date}</pubDate>"
        )
    };
    let recall = |text: &str| recall_at(text, "Tue, 24 Nov 2026 09:14:27 GMT");
    let weather = "<title>Weather</title><description>Rain.</description>\
                   <pubDate>Mon, 23 Nov 2026 08:00:00 GMT</pubDate>";
    server.feed("a.xml", rss(&[weather]));
    server.set("hook", Route::webhook(200));
    let notify = format!(
        "\n[[notify]]\nname = \"ops\"\nurl = \"{}\"\n",
        server.url("hook")
    );
    let app = App::new(&[server.url("a.xml")], &format!("{COMPANIES}{notify}"));
    app.poll().await;
    server.feed(
        "a.xml",
        rss(&[&recall("Samsung recalls 10,000 chargers."), weather]),
    );
    assert_eq!(app.poll().await.entries_new, 1);
    assert_eq!(server.requests("hook").len(), 1);

    server.feed(
        "a.xml",
        rss(&[
            &recall("Samsung recalls 12,000 chargers, not 10,000."),
            weather,
        ]),
    );
    let corrected = app.poll().await;
    assert_eq!(
        (corrected.entries_new, corrected.entries_updated),
        (0, 1),
        "{corrected}"
    );
    assert_eq!(app.count("SELECT count(*) FROM entries"), 2);
    assert_eq!(
        app.count("SELECT count(*) FROM entries WHERE summary LIKE '%12,000%'"),
        1
    );
    assert_eq!(
        server.requests("hook").len(),
        1,
        "the same story, no new company"
    );

    server.feed(
        "a.xml",
        rss(&[
            &recall("Samsung recalls 12,000 chargers it made for Xiaomi."),
            weather,
        ]),
    );
    app.poll().await;
    assert_eq!(app.count("SELECT count(*) FROM entries"), 2);
    assert_eq!(
        flagged(&app),
        [(
            "Charger recall".to_string(),
            "Samsung, Xiaomi".to_string(),
            1
        )]
    );
    let hooks = server.requests("hook");
    assert_eq!(
        hooks.len(),
        2,
        "one more alert, for the company the edit named"
    );
    let payload: serde_json::Value = serde_json::from_slice(&hooks[1].body).unwrap();
    assert_eq!(payload["newly_named"], "Xiaomi");

    // The next recall under the same title, with a date of its own, is news.
    let next = recall_at(
        "Samsung recalls 3,000 tablets.",
        "Wed, 25 Nov 2026 16:41:05 GMT",
    );
    server.feed("a.xml", rss(&[&next, weather]));
    assert_eq!(app.poll().await.entries_new, 1);
    assert_eq!(app.count("SELECT count(*) FROM entries"), 3);
    assert_eq!(server.requests("hook").len(), 3);
}
