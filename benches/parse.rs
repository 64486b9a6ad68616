//! Cost of `parse_feed` (decode + reading, by the direct reader for a feed like this one +
//! text extraction + keys + hashes) per entry, over a generated RSS feed of 1,000 entries with
//! 1–3 KB of HTML each, against feed-rs's reading alone, and of `html_to_text` per KB
//! of English and of Chinese and Russian HTML (where most bytes belong to multi-byte characters).
//!
//! `cargo bench --bench parse` prints medians of several runs; no external harness.

use std::hint::black_box;
use std::time::{Duration, Instant};

use feedhound::parse::parse_feed;
use feedhound::text::html_to_text;
use url::Url;

const ENTRIES: usize = 1_000;
const RUNS: usize = 15;

/// One paragraph of news-like HTML (~250 bytes) with the markup real feeds carry.
const PARAGRAPH: &str = "<p>Xiaomi&#8217;s CEO <a href=\"https://example.com/lei-jun?utm_source=rss\">Lei Jun</a> \
said on <b>Tuesday</b> that the company&nbsp;would expand in the US market, competing with \
<i>Samsung</i> &amp; Apple.<br/>Shares rose 3% in Hong Kong.</p>\n";

/// The same kind of paragraph in Chinese and Russian.
const NON_LATIN_PARAGRAPH: &str = "<p>小米集团首席执行官<a href=\"https://example.com/lei-jun\">雷军</a>周二表示，\
公司将扩大在美国市场的业务，与<b>三星</b>和苹果竞争。Генеральный директор Xiaomi Лэй Цзюнь \
заявил во&nbsp;вторник, что компания расширит присутствие на рынке США.</p>\n";

fn generated_feed() -> String {
    let mut feed = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><rss version=\"2.0\" \
         xmlns:content=\"http://purl.org/rss/1.0/modules/content/\"><channel><title>Bench</title>\
         <link>https://news.example.com/</link>",
    );
    for i in 0..ENTRIES {
        // 4–12 paragraphs: 1–3 KB of HTML per entry.
        let body = PARAGRAPH.repeat(4 + i % 9);
        feed.push_str(&format!(
            "<item><title>Story {i}: Xiaomi &amp; Samsung</title><link>https://news.example.com/{i}?utm_medium=feed</link>\
             <guid>https://news.example.com/{i}</guid><pubDate>Tue, 10 Jun 2025 04:00:00 GMT</pubDate>\
             <description><![CDATA[{}]]></description><content:encoded><![CDATA[{body}]]></content:encoded></item>",
            PARAGRAPH
        ));
    }
    feed.push_str("</channel></rss>");
    feed
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let feed = generated_feed();
    let url = Url::parse("https://news.example.com/feed.xml").unwrap();

    let per_entry = median(
        (0..RUNS)
            .map(|_| {
                let started = Instant::now();
                let parsed = parse_feed(black_box(feed.as_bytes()), None, &url).unwrap();
                assert_eq!(parsed.entries.len(), ENTRIES);
                started.elapsed() / ENTRIES as u32
            })
            .collect(),
    );
    println!(
        "parse_feed: {} entries, {:.1} MB document: median {:.1} µs per entry",
        ENTRIES,
        feed.len() as f64 / 1e6,
        per_entry.as_secs_f64() * 1e6
    );

    // feed-rs's reading alone, the peer the direct reader replaces for this feed.
    let feed_rs_per_entry = median(
        (0..RUNS)
            .map(|_| {
                let started = Instant::now();
                let parsed = feed_rs::parser::parse(black_box(feed.as_bytes())).unwrap();
                assert_eq!(parsed.entries.len(), ENTRIES);
                started.elapsed() / ENTRIES as u32
            })
            .collect(),
    );
    println!(
        "feed-rs reading the same document (no text extraction, keys or hashes): median {:.1} µs per entry",
        feed_rs_per_entry.as_secs_f64() * 1e6
    );

    for (text, paragraph) in [
        ("English", PARAGRAPH),
        ("Chinese and Russian", NON_LATIN_PARAGRAPH),
    ] {
        let html = paragraph.repeat(40);
        let per_kb = median(
            (0..RUNS * 20)
                .map(|_| {
                    let started = Instant::now();
                    black_box(html_to_text(black_box(&html)));
                    started.elapsed().div_f64(html.len() as f64 / 1024.0)
                })
                .collect(),
        );
        println!(
            "html_to_text, {text}: median {:.2} µs per KB of HTML",
            per_kb.as_secs_f64() * 1e6
        );
    }
}
