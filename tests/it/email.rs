//! Email alerts, sent through a real SMTP server on loopback (`helpers::SmtpServer`).

use std::time::Duration;

use crate::helpers::{App, FeedServer, SmtpServer, TlsMode, rss};

const COMPANIES: &str = r#"
[[company]]
name = "Xiaomi"

[[company]]
name = "Samsung"
"#;

fn email_target(smtp: &SmtpServer, extra: &str) -> String {
    // A password with what a URL must percent-encode: it reaches the server decoded.
    format!(
        "\n[[notify]]\nname = \"analysts\"\nurl = \"{}\"\nto = [\"ana@example.com\", \"Bo Li <bo@example.com>\"]\nbacklog = true\n{extra}",
        smtp.url("alerts%40example.com", "p%40ss%20w0rd")
    )
}

/// A feed of `items` and an email target (`email_target`) on a test SMTP server, in an app
/// tracking [`COMPANIES`].
fn app_with_email_target(items: &[&str], extra: &str) -> (FeedServer, SmtpServer, App) {
    let feeds = FeedServer::start();
    feeds.feed("a.xml", rss(items));
    let smtp = SmtpServer::start();
    let app = App::new(
        &[feeds.url("a.xml")],
        &format!("{COMPANIES}{}", email_target(&smtp, extra)),
    );
    (feeds, smtp, app)
}

/// The first target's row of `feedhound alerts --format json`.
fn status_of(app: &App) -> serde_json::Value {
    let status = app.cli(&["alerts", "--format", "json"]);
    serde_json::from_slice::<serde_json::Value>(&status.stdout).unwrap()[0].clone()
}

#[test]
fn an_email_target_gets_each_flagged_story_once_from_its_login_to_each_recipient() {
    let (_feeds, smtp, app) = app_with_email_target(
        &[
            "<guid>1</guid><title>Xiaomi overtakes Samsung in shipments</title><link>https://news.example/xiaomi-samsung</link>",
            "<guid>2</guid><title>Weather: rain all week</title>",
        ],
        "",
    );
    let polled = app.cli(&["poll"]);
    assert!(
        polled.status.success(),
        "{}",
        String::from_utf8_lossy(&polled.stderr)
    );
    let mails = smtp.accepted();
    assert_eq!(mails.len(), 1, "one flagged story, one email: {mails:#?}");
    let mail = &mails[0];
    assert_eq!(mail.login.as_deref(), Some("alerts@example.com:p@ss w0rd"));
    assert_eq!(
        mail.mail_from, "<alerts@example.com>",
        "the login is the sender"
    );
    assert_eq!(mail.rcpt_to, ["<ana@example.com>", "<bo@example.com>"]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Xiaomi, Samsung: Xiaomi overtakes Samsung in shipments")
    );
    let to = mail.header("To").unwrap();
    assert!(
        to.contains("ana@example.com") && to.contains("\"Bo Li\" <bo@example.com>"),
        "{to}"
    );
    assert_eq!(
        mail.header("Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert_eq!(mail.header("MIME-Version").as_deref(), Some("1.0"));
    assert!(
        mail.header("Content-Type")
            .is_some_and(|t| t.starts_with("text/plain; charset=utf-8")),
        "{:?}",
        mail.header("Content-Type")
    );
    let message_id = mail.header("Message-ID").unwrap();
    assert!(
        message_id.ends_with(".feedhound@example.com>"),
        "{message_id}"
    );
    let text = mail.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Xiaomi overtakes Samsung in shipments");
    assert_eq!(lines[1], "https://news.example/xiaomi-samsung");
    assert!(lines[2].starts_with("Xiaomi, Samsung · "), "{text}");
    assert!(
        text.contains("\n\nXiaomi: \"Xiaomi overtakes Samsung in shipments\"\nSamsung: \""),
        "each company's snippet: {text}"
    );
    assert!(
        text.trim_end()
            .ends_with("\n\n-- \nSent by feedhound for its notify target \"analysts\"."),
        "{text}"
    );

    let again = app.cli(&["poll"]);
    assert!(again.status.success());
    assert_eq!(smtp.mails().len(), 1, "delivered once, not again");
    assert_eq!(
        app.count(
            "SELECT count(*) FROM outbox WHERE target = 'analysts' AND delivered_at IS NOT NULL"
        ),
        1
    );

    let tested = app.cli(&["alerts", "--send-test", "analysts"]);
    assert!(
        tested.status.success(),
        "{}",
        String::from_utf8_lossy(&tested.stderr)
    );
    let mails = smtp.accepted();
    assert_eq!(mails.len(), 2);
    assert_eq!(
        mails[1].header("Subject").as_deref(),
        Some("feedhound test alert for analysts")
    );
    assert_ne!(mails[1].header("Message-ID"), Some(message_id));
}

#[test]
fn a_rounds_emails_share_one_login_and_a_session_the_server_ends_is_replaced() {
    let (feeds, smtp, app) = app_with_email_target(
        &[
            "<guid>1</guid><title>Xiaomi posts results</title>",
            "<guid>2</guid><title>Samsung opens a plant</title>",
        ],
        "",
    );
    assert!(app.cli(&["poll"]).status.success());
    assert_eq!(smtp.accepted().len(), 2);
    assert_eq!(
        (smtp.times("EHLO"), smtp.times("AUTH"), smtp.times("MAIL")),
        (1, 1, 2),
        "two emails, one session: {:?}",
        smtp.verbs()
    );
    assert_eq!(
        smtp.verbs().last().map(String::as_str),
        Some("QUIT"),
        "the round ends its session"
    );

    // A server that takes one email per session refuses the next sender with a 421 and closes:
    // each email after the first in a session goes out in a new one, and the target is not down.
    smtp.emails_per_session(1);
    feeds.feed(
        "a.xml",
        rss(&[
            "<guid>1</guid><title>Xiaomi posts results</title>",
            "<guid>2</guid><title>Samsung opens a plant</title>",
            "<guid>3</guid><title>Xiaomi ouvre une usine à Pékin — 小米工厂</title>",
            "<guid>4</guid><title>Samsung sells</title>",
            "<guid>5</guid><title>Xiaomi buys</title>",
        ]),
    );
    assert!(app.cli(&["poll"]).status.success());
    let mails = smtp.accepted();
    assert_eq!(mails.len(), 5, "{mails:#?}");
    // Headers are 7-bit: a title in any script reaches the reader through RFC 2047 words.
    let french = mails
        .iter()
        .find(|mail| {
            mail.text()
                .starts_with("Xiaomi ouvre une usine à Pékin — 小米工厂\n")
        })
        .expect("the body carries the title as written");
    let subject = french.header("Subject").unwrap();
    assert!(
        subject.is_ascii() && subject.contains("=?utf-8?"),
        "{subject}"
    );
    assert_eq!(
        french.decoded_header("Subject").as_deref(),
        Some("Xiaomi: Xiaomi ouvre une usine à Pékin — 小米工厂")
    );
    assert_eq!(
        (smtp.times("EHLO"), smtp.times("AUTH")),
        (4, 4),
        "{:?}",
        smtp.verbs()
    );
    assert_eq!(
        app.count("SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL"),
        5
    );
    assert!(status_of(&app)["resting_until"].is_null());

    // One that hangs up after each email without a word: the same.
    smtp.hang_up_after_each_email();
    feeds.feed(
        "a.xml",
        rss(&[
            "<guid>6</guid><title>Samsung results</title>",
            "<guid>7</guid><title>Xiaomi results</title>",
        ]),
    );
    assert!(app.cli(&["poll"]).status.success());
    assert_eq!(smtp.accepted().len(), 7, "{:#?}", smtp.mails());
    assert_eq!(smtp.times("EHLO"), 6, "{:?}", smtp.verbs());
    let status = status_of(&app);
    assert!(
        status["resting_until"].is_null() && status["pending"] == 0,
        "{status}"
    );
}

#[test]
fn an_email_the_server_puts_off_waits_then_goes_out_with_the_same_message_id() {
    let (_feeds, smtp, app) = app_with_email_target(
        &[
            "<guid>1</guid><title>Xiaomi posts results</title>",
            "<guid>2</guid><title>Samsung opens a plant</title>",
        ],
        "from = \"feedhound <news@example.org>\"\n",
    );
    smtp.refuse("Xiaomi posts results", 451);
    assert!(app.cli(&["poll"]).status.success());
    let mails = smtp.mails();
    assert_eq!(
        mails.len(),
        1,
        "the first email put off, the target rests: {mails:#?}"
    );
    assert!(!mails[0].accepted);
    assert_eq!(
        mails[0].mail_from, "<news@example.org>",
        "`from` wins over the login"
    );
    let status = status_of(&app);
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("smtp://127.0.0.1:{} refused the email", smtp.port))
            && error.contains("451")
            && !error.contains("p@ss"),
        "{error}"
    );
    assert!(status["resting_until"].is_string(), "{status}");

    // Down at the next try: the greeting is a 421.
    smtp.set_down(true);
    assert!(app.cli(&["alerts", "--retry-now"]).status.success());
    assert!(app.cli(&["poll"]).status.success());
    let status = status_of(&app);
    assert!(
        status["last_error"].as_str().unwrap().contains("421")
            && status["resting_until"].is_string(),
        "{status}"
    );
    assert_eq!(
        smtp.mails().len(),
        1,
        "no email was taken while it was down"
    );

    // Refusals before the message are the server's or the config's, whatever their code: a
    // refused login (535) or sender (553) rests the target after one try, not one per alert.
    smtp.set_down(false);
    for (verb, command, reply) in [
        (
            "AUTH",
            "AUTH",
            "535 5.7.8 authentication credentials invalid",
        ),
        (
            "MAIL",
            "MAIL FROM",
            "553 5.7.1 sender not allowed for this login",
        ),
    ] {
        smtp.accept_all();
        smtp.refuse_command(command, reply);
        let before = smtp.times(verb);
        assert!(app.cli(&["alerts", "--retry-now"]).status.success());
        assert!(app.cli(&["poll"]).status.success());
        let status = status_of(&app);
        assert!(
            status["last_error"].as_str().unwrap().contains(&reply[..3])
                && status["resting_until"].is_string()
                && status["pending"] == 2,
            "{status}"
        );
        assert_eq!(
            smtp.times(verb) - before,
            1,
            "{command}: one try for both alerts"
        );
    }
    assert_eq!(smtp.mails().len(), 1);

    smtp.accept_all();
    assert!(app.cli(&["alerts", "--retry-now"]).status.success());
    assert!(app.cli(&["poll"]).status.success());
    let mails = smtp.accepted();
    assert_eq!(mails.len(), 2);
    let first_try = &smtp.mails()[0];
    let repeat = mails
        .iter()
        .find(|mail| mail.header("Subject") == first_try.header("Subject"))
        .expect("the email put off goes out");
    assert_eq!(
        first_try.header("Message-ID"),
        repeat.header("Message-ID"),
        "a repeat has the Message-ID of the first try"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL"),
        2
    );
}

#[test]
fn a_recipient_the_server_refuses_holds_back_neither_the_others_nor_the_alert() {
    let (_feeds, smtp, app) =
        app_with_email_target(&["<guid>1</guid><title>Xiaomi posts results</title>"], "");
    smtp.refuse_command("RCPT TO:<bo@", "550 5.1.1 no such user");
    let polled = app.cli(&["poll"]);
    assert!(polled.status.success());
    let mails = smtp.accepted();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].rcpt_to, ["<ana@example.com>"]);
    assert_eq!(
        app.count("SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL"),
        1
    );
    let stderr = String::from_utf8_lossy(&polled.stderr);
    assert!(
        stderr.contains("email sent, but not to these recipients")
            && stderr.contains("bo@example.com"),
        "{stderr}"
    );
}

/// `feedhound alerts` names the recipients the server refused, each address in full however
/// long the replies, until the config no longer lists it or an email reaches every recipient
/// again; `--send-test` exits 1.
#[test]
fn alerts_and_send_test_name_each_refused_recipient_until_it_is_fixed_or_reached() {
    let feeds = FeedServer::start();
    feeds.feed(
        "a.xml",
        rss(&["<guid>1</guid><title>Xiaomi posts results</title>"]),
    );
    let smtp = SmtpServer::start();
    let app = App::new(
        &[feeds.url("a.xml")],
        &format!(
            "{COMPANIES}\n[[notify]]\nname = \"analysts\"\nurl = \"{}\"\nto = [\"ana@example.com\", \"bo@example.com\", \"cy@example.com\"]\nbacklog = true\n",
            smtp.url("alerts%40example.com", "secret")
        ),
    );
    // As long as Gmail's 5.1.1 reply: longer than one reply is kept.
    let long = format!(
        "550 5.1.1 no such user, {}",
        "see the help page ".repeat(20)
    );
    smtp.refuse_command("RCPT TO:<bo@", &long);
    smtp.refuse_command("RCPT TO:<cy@", "550 5.2.1 mailbox disabled, over quota");
    assert!(app.cli(&["poll"]).status.success());
    assert_eq!(smtp.accepted()[0].rcpt_to, ["<ana@example.com>"]);

    let status = status_of(&app);
    let refused = status["not_delivered_to"]
        .as_array()
        .unwrap_or_else(|| panic!("{status}"));
    let addresses: Vec<&str> = refused
        .iter()
        .filter_map(|r| r["address"].as_str())
        .collect();
    assert_eq!(addresses, ["bo@example.com", "cy@example.com"], "{status}");
    assert!(
        refused[1]["reply"]
            .as_str()
            .unwrap()
            .contains("mailbox disabled, over quota"),
        "{status}"
    );
    let delivered_at = status["last_delivered_at"].as_str().unwrap();
    let table = app.cli(&["alerts"]);
    let table = String::from_utf8_lossy(&table.stdout);
    let line = table
        .lines()
        .find(|line| line.starts_with("  its latest email ("))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.starts_with(&format!(
            "  its latest email ({}) did not reach bo@example.com (",
            &delivered_at[..19]
        )) && line.contains("5.1.1 no such user, see the help page")
            && line.ends_with("5.2.1 mailbox disabled, over quota); check the target's `to`")
            && line.contains("; cy@example.com ("),
        "{table}"
    );

    let tested = app.cli(&["alerts", "--send-test", "analysts"]);
    let said = String::from_utf8_lossy(&tested.stderr);
    assert_eq!(tested.status.code(), Some(1), "{said}");
    assert!(
        said.contains("analysts: its server took the test email, but not for bo@example.com (")
            && said.contains("; cy@example.com ("),
        "{said}"
    );

    // The user fixes cy's address: only bo is still to fix.
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(&app.config_path, config.replace("cy@", "cyrus@")).unwrap();
    let status = status_of(&app);
    let refused = status["not_delivered_to"]
        .as_array()
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(refused.len(), 1, "{status}");
    assert_eq!(refused[0]["address"], "bo@example.com");

    smtp.accept_all();
    feeds.feed(
        "a.xml",
        rss(&[
            "<guid>1</guid><title>Xiaomi posts results</title>",
            "<guid>2</guid><title>Samsung opens a plant</title>",
        ]),
    );
    assert!(app.cli(&["poll"]).status.success());
    let mails = smtp.accepted();
    assert_eq!(mails.len(), 3, "the story, the test, the next story");
    assert_eq!(mails[2].rcpt_to.len(), 3);
    let status = status_of(&app);
    assert!(status["not_delivered_to"].is_null(), "{status}");
    assert!(status["last_delivered_at"].as_str().unwrap() > delivered_at);
    let table = app.cli(&["alerts"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(!table.contains("did not reach"), "{table}");
}

#[test]
fn an_email_digest_names_its_stories_and_one_the_server_refuses_holds_back_no_other() {
    use chrono::{DurationRound, Utc};
    let feeds = FeedServer::start();
    feeds.feed(
        "a.xml",
        rss(&[
            "<guid>1</guid><title>Xiaomi posts results</title>",
            "<guid>2</guid><title>Samsung poison pill</title>",
            "<guid>3</guid><title>Samsung opens a plant</title>",
        ]),
    );
    let smtp = SmtpServer::start();
    smtp.refuse("poison pill", 554);
    let digest_at = (Utc::now() + chrono::Duration::seconds(4))
        .duration_trunc(chrono::Duration::seconds(1))
        .unwrap();
    let app = App::new(
        &[feeds.url("a.xml")],
        &format!(
            "{COMPANIES}{}",
            email_target(
                &smtp,
                &format!("digest = \"{}\"\n", digest_at.format("%H:%M:%S"))
            )
        ),
    );
    let utc = [("TZ", "UTC")];
    assert!(app.cli_with_env(&utc, &["poll"]).status.success());
    assert!(
        smtp.mails().is_empty() && Utc::now() < digest_at,
        "queued before the digest time, and held"
    );
    while Utc::now() < digest_at {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(app.cli_with_env(&utc, &["poll"]).status.success());
    assert_eq!(
        smtp.times("EHLO"),
        1,
        "a refused email ends its transaction, not the session: {:?}",
        smtp.verbs()
    );
    let mails = smtp.mails();
    let seen: Vec<(bool, String)> = mails
        .iter()
        .map(|m| (m.accepted, m.header("Subject").unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            (false, "3 stories: Samsung, Xiaomi".to_owned()),
            (true, "Xiaomi: Xiaomi posts results".to_owned()),
            (false, "Samsung: Samsung poison pill".to_owned()),
            (true, "Samsung: Samsung opens a plant".to_owned()),
        ],
        "the refused digest, then each of its stories alone, as an email of its own"
    );
    let text = mails[0].text();
    assert!(
        text.starts_with("1. Xiaomi posts results\n   Xiaomi · ")
            && text.contains("\n\n2. Samsung poison pill\n   Samsung · ")
            && text.contains("\n\n3. Samsung opens a plant\n"),
        "{text}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL"),
        2
    );
    assert_eq!(
        app.count(
            "SELECT attempts FROM outbox WHERE delivered_at IS NULL AND last_error LIKE '%554%'"
        ),
        1,
        "the email the server refuses waits for its own retry"
    );
}

#[test]
fn a_server_that_offers_no_starttls_gets_no_login_and_no_email() {
    let smtp = SmtpServer::start();
    let notify = format!(
        "\n[[notify]]\nname = \"analysts\"\nurl = \"smtp://alerts%40example.com:pw0rd@127.0.0.1:{}\"\nto = \"ana@example.com\"\n",
        smtp.port
    );
    let app = App::new(&[], &format!("{COMPANIES}{notify}"));
    let tested = app.cli(&["alerts", "--send-test", "analysts"]);
    assert_eq!(tested.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&tested.stderr);
    assert!(
        stderr.contains("the test alert to analysts failed")
            && stderr.contains(&format!("smtp://127.0.0.1:{}", smtp.port))
            && !stderr.contains("pw0rd"),
        "{stderr}"
    );
    let verbs = smtp.verbs();
    assert!(
        verbs.first().is_some_and(|v| v == "EHLO")
            && !verbs.iter().any(|v| v == "AUTH" || v == "MAIL"),
        "smtp:// without `tls=none` stops when STARTTLS is not offered: {verbs:?}"
    );
}

#[test]
fn smtps_and_starttls_send_the_login_and_email_over_tls_only_to_a_certificate_the_machine_trusts() {
    let implicit = SmtpServer::start_tls(TlsMode::Implicit);
    let starttls = SmtpServer::start_tls(TlsMode::StartTls);
    let target = |name: &str, scheme: &str, server: &SmtpServer| {
        format!(
            "\n[[notify]]\nname = \"{name}\"\nurl = \"{scheme}://alerts%40example.com:pw0rd@127.0.0.1:{}\"\nto = \"ana@example.com\"\n",
            server.port
        )
    };
    let app = App::new(
        &[],
        &format!(
            "{COMPANIES}{}{}",
            target("implicit", "smtps", &implicit),
            target("starttls", "smtp", &starttls)
        ),
    );
    for (name, server, other) in [
        ("implicit", &implicit, &starttls),
        ("starttls", &starttls, &implicit),
    ] {
        // A certificate from a CA the machine does not trust: nothing is sent, and the error says
        // why.
        let refused = app.cli_with_env(&[other.trust()], &["alerts", "--send-test", name]);
        assert_eq!(refused.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains(
                "): TLS certificate refused: it is not signed by a CA this machine trusts"
            ) && stderr.contains("SSL_CERT_FILE")
                && !stderr.contains("pw0rd"),
            "{name}: {stderr}"
        );
        assert!(
            !server.verbs().iter().any(|v| v == "AUTH" || v == "MAIL"),
            "{name}: {:?}",
            server.verbs()
        );

        let tried = server.verbs().len();
        let sent = app.cli_with_env(&[server.trust()], &["alerts", "--send-test", name]);
        assert!(
            sent.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&sent.stderr)
        );
        let mails = server.accepted();
        assert_eq!(mails.len(), 1, "{name}");
        assert!(mails[0].tls, "{name}: the login and email went over TLS");
        assert_eq!(
            mails[0].login.as_deref(),
            Some("alerts@example.com:pw0rd"),
            "{name}"
        );
        let verbs = server.verbs()[tried..].to_vec();
        let expected: &[&str] = match name {
            "starttls" => &["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL"],
            _ => &["EHLO", "AUTH", "MAIL"],
        };
        assert_eq!(&verbs[..expected.len()], expected, "{name}");
    }
}
