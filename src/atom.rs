//! Flagged stories as an Atom feed (RFC 4287), for `feedhound mentions --format atom`: a feed
//! reader can then follow what feedhound flags, as Google Alerts and FreshRSS's shared queries
//! let their users do; the daemon serves one too (`server`, `/mentions.atom`).
//!
//! A story is one entry whatever number of feeds carried it: its id is the story's, so a
//! reader shows it once, and lists every source in its text. Written by hand rather than with
//! a feed-writing crate: the document is small and fixed, and every value goes through
//! [`text`], which keeps only what XML 1.0 may hold and escapes it.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::store::FlaggedStory;
use crate::store::parse_sql_time;

/// The stories a feed holds unless asked for another number: a reader polls it again and
/// again, and keeps what it has seen.
pub const STORIES: usize = 50;

/// The id and title of a feed of the flagged stories of `company` (its name as the config
/// writes it) from the feeds named `feeds` and those tagged `tags` (as given): the same
/// question gives the same id, whatever the case or order the feeds and tags were given in.
pub fn names(company: Option<&str>, feeds: &[String], tags: &[String]) -> (String, String) {
    let escape = |part: &str| utf8_percent_encode(part, NON_ALPHANUMERIC).to_string();
    let mut id = "urn:feedhound:mentions".to_owned();
    let mut title = match company {
        Some(company) => {
            id.push_str(&format!(":company={}", escape(company)));
            format!("feedhound: stories about {company}")
        }
        None => "feedhound: flagged stories".to_owned(),
    };
    for (kind, given) in [("feed", feeds), ("tag", tags)] {
        let mut given: Vec<String> = given.iter().map(|g| g.to_lowercase()).collect();
        given.sort();
        given.dedup();
        for one in given {
            id.push_str(&format!(":{kind}={}", escape(&one)));
        }
    }
    let tagged = (!tags.is_empty()).then(|| format!("the feeds tagged {}", tags.join(", ")));
    let sources: Vec<String> = feeds.iter().cloned().chain(tagged).collect();
    if !sources.is_empty() {
        title.push_str(&format!(" from {}", sources.join(", ")));
    }
    (id, title)
}

/// The id of a story's entry: the database's id of the story and when it was first seen, so
/// that a story a restored or new database gives the same number is still another entry.
fn entry_id(story: &FlaggedStory) -> String {
    let seen: String = story
        .first_seen_at
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("urn:feedhound:story:{}:{seen}", story.story_id)
}

/// A feed of `stories` (newest first, as `mentions` lists them) titled `title`, with the id
/// `id`, dated by its newest story. It depends on nothing else, not even the clock (an empty
/// one is dated 1970), so that the same stories give the same document and ETag.
pub fn feed(id: &str, title: &str, stories: &[FlaggedStory]) -> String {
    let dated: Vec<DateTime<Utc>> = stories.iter().map(date_of).collect();
    let updated = dated.iter().max().copied().unwrap_or(DateTime::UNIX_EPOCH);
    let mut out = String::with_capacity(1024 + 1024 * stories.len());
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    out.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    // Writing to a String cannot fail.
    let _ = writeln!(out, "  <id>{}</id>", text(id));
    let _ = writeln!(out, "  <title>{}</title>", text(title));
    let _ = writeln!(out, "  <updated>{}</updated>", rfc3339(updated));
    out.push_str("  <author><name>feedhound</name></author>\n");
    out.push_str("  <generator>feedhound</generator>\n");
    for (story, date) in stories.iter().zip(dated) {
        write_entry(&mut out, story, date);
    }
    out.push_str("</feed>\n");
    out
}

fn write_entry(out: &mut String, story: &FlaggedStory, date: DateTime<Utc>) {
    let title = story.title.as_deref().unwrap_or("(untitled)");
    out.push_str("  <entry>\n");
    let _ = writeln!(out, "    <id>{}</id>", text(&entry_id(story)));
    let _ = writeln!(out, "    <title>{}</title>", text(title));
    if let Some(link) = &story.link {
        let _ = writeln!(out, "    <link rel=\"alternate\" href=\"{}\"/>", text(link));
    }
    let date = rfc3339(date);
    let _ = writeln!(out, "    <published>{date}</published>");
    let _ = writeln!(out, "    <updated>{date}</updated>");
    let _ = writeln!(
        out,
        "    <author><name>{}</name></author>",
        text(&source_name(&story.feed))
    );
    for company in &story.companies {
        let _ = writeln!(out, "    <category term=\"{}\"/>", text(company));
    }
    let _ = writeln!(
        out,
        "    <summary type=\"text\">{}</summary>",
        text(&summary(story))
    );
    let _ = writeln!(
        out,
        "    <content type=\"html\">{}</content>",
        text(&content_html(story))
    );
    out.push_str("  </entry>\n");
}

/// The companies, then the snippet if there is one.
fn summary(story: &FlaggedStory) -> String {
    match story.snippet.as_str() {
        "" => story.companies.join(", "),
        snippet => format!("{}: {snippet}", story.companies.join(", ")),
    }
}

/// The entry's text as HTML: the companies and the snippet, then every source.
fn content_html(story: &FlaggedStory) -> String {
    let html = |s: &str| html_escape::encode_text(s).into_owned();
    let mut body = format!("<p>{}</p>\n<ul>\n", html(&summary(story)));
    for source in &story.sources {
        let title = html(source.title.as_deref().unwrap_or("(untitled)"));
        let title = match &source.link {
            Some(link) => format!(
                "<a href=\"{}\">{title}</a>",
                html_escape::encode_double_quoted_attribute(link)
            ),
            None => title,
        };
        let date = match &source.published_at {
            Some(date) => format!("{} UTC", html(date)),
            None => "no date".to_owned(),
        };
        let _ = writeln!(
            body,
            "<li>{title} ({}, {date})</li>",
            html(&source_name(&source.feed))
        );
    }
    body.push_str("</ul>");
    body
}

/// When a story is dated: its first entry's publication, else when it was first seen (1970
/// only for times the database cannot have written).
fn date_of(story: &FlaggedStory) -> DateTime<Utc> {
    story
        .published_at
        .as_deref()
        .and_then(parse_sql_time)
        .or_else(|| parse_sql_time(&story.first_seen_at))
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// A feed as the document names it: its name or title, or for a feed with neither (named by
/// its URL), its host alone. The document may be served to anyone, and a feed's URL may carry
/// a password, a token in its path or query, or a user's name.
fn source_name(feed: &str) -> Cow<'_, str> {
    match url::Url::parse(feed) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {
            Cow::Owned(url.host_str().unwrap_or("a feed").to_owned())
        }
        _ => Cow::Borrowed(feed),
    }
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `value` as XML character data or an attribute value: without the characters XML 1.0 cannot
/// hold (its `Char` production: C0 controls but tab and line breaks, U+FFFE and U+FFFF), which
/// would make the whole document unreadable, and escaped.
fn text(value: &str) -> String {
    let allowed = |c: &char| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
            || *c >= '\u{10000}'
    };
    let kept: String = value.chars().filter(allowed).collect();
    quick_xml::escape::escape(kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Source;

    fn story(id: i64, title: &str, published_at: Option<&str>) -> FlaggedStory {
        FlaggedStory {
            story_id: id,
            title: Some(title.to_owned()),
            link: Some(format!("https://news.example/{id}?a=1&b=2")),
            feed: "Wire <A>".to_owned(),
            published_at: published_at.map(str::to_owned),
            first_seen_at: "2026-11-20 08:00:00".to_owned(),
            companies: vec!["AT&T".to_owned(), "Xiaomi".to_owned()],
            snippet: "AT&T and Xiaomi <sign> a deal".to_owned(),
            sources: vec![Source {
                feed: "Wire <A>".to_owned(),
                title: Some(title.to_owned()),
                link: Some(format!("https://news.example/{id}?a=1&b=2")),
                published_at: published_at.map(str::to_owned),
            }],
        }
    }

    #[test]
    fn the_feed_reads_back_as_atom_with_its_stories_newest_first() {
        let mut older = story(3, "Older", None);
        // A feed with neither name nor title is named by its URL's host alone.
        older.feed = "https://me:hunter2@private.example/feed?token=abc123".to_owned();
        older.sources[0].feed = older.feed.clone();
        let stories = [
            story(7, "Xiaomi & AT&T \u{1}sign", Some("2026-11-25 09:30:00")),
            older,
        ];
        let xml = feed("urn:feedhound:mentions", "Flagged & \"quoted\"", &stories);
        assert!(!xml.contains("hunter2") && !xml.contains("abc123"), "{xml}");
        assert!(xml.contains("<name>private.example</name>"), "{xml}");
        let url = url::Url::parse("https://feedhound.invalid/mentions.atom").unwrap();
        let parsed = crate::parse::parse_feed(xml.as_bytes(), None, &url).unwrap();
        assert_eq!(parsed.title.as_deref(), Some("Flagged & \"quoted\""));
        let entries = &parsed.entries;
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0].guid.as_deref(),
            Some("urn:feedhound:story:7:20261120080000")
        );
        // What RFC 4287 requires of each entry, which a lenient reader would not miss.
        for element in ["<id>", "<title>", "<updated>", "<author>"] {
            assert_eq!(xml.matches(element).count(), 3, "{element} in {xml}");
        }
        assert_eq!(entries[0].title.as_deref(), Some("Xiaomi & AT&T sign"));
        assert_eq!(
            entries[0].link.as_deref(),
            Some("https://news.example/7?a=1&b=2")
        );
        assert_eq!(
            entries[0].published_at.map(|at| at.to_rfc3339()),
            Some("2026-11-25T09:30:00+00:00".to_owned())
        );
        // Without a publication date: when the story was first seen.
        assert_eq!(
            entries[1].published_at.map(|at| at.to_rfc3339()),
            Some("2026-11-20T08:00:00+00:00".to_owned())
        );
        // Text, escaped (feedhound's own parser reads summaries as HTML, so it is checked here).
        assert!(
            xml.contains(
                "<summary type=\"text\">AT&amp;T, Xiaomi: AT&amp;T and Xiaomi &lt;sign&gt; a deal</summary>"
            ),
            "{xml}"
        );
        let content = entries[0].content.as_deref().unwrap_or_default();
        assert!(
            content.contains("Xiaomi & AT&T sign (Wire <A>, 2026-11-25 09:30:00 UTC)"),
            "{content}"
        );
        assert!(xml.contains("<updated>2026-11-25T09:30:00Z</updated>\n  <author>"));
    }

    #[test]
    fn an_empty_feed_is_dated_1970_so_its_etag_holds() {
        let xml = feed("urn:feedhound:mentions", "Nothing yet", &[]);
        assert!(
            xml.contains("<updated>1970-01-01T00:00:00Z</updated>"),
            "{xml}"
        );
        let url = url::Url::parse("https://feedhound.invalid/mentions.atom").unwrap();
        let parsed = crate::parse::parse_feed(xml.as_bytes(), None, &url).unwrap();
        assert!(parsed.entries.is_empty());
    }
}
