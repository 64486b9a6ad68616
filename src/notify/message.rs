//! Alerts written as chat messages, for targets with `format = "slack"` or `"discord"`.
//!
//! A chat webhook posts what it is given to a channel, so these targets get a message built from
//! the payload a `json` target gets: the story's title as a link, the companies it names, where
//! and when it appeared, and the text around each mention. A feed's text is the publisher's, not
//! ours: it is escaped for the service's markup, so a headline can neither ping anyone nor hide a
//! link behind words of its own. Each piece is cut to a size that keeps the whole message within
//! the service's limit without cutting through markup.

use serde_json::json;

use crate::config::AlertFormat;
use crate::store::AlertPayload;

/// Longest headline, company list, name and snippet shown, in characters of the feed's text.
const TITLE_CHARS: usize = 200;
const COMPANIES_CHARS: usize = 200;
const NAME_CHARS: usize = 100;
const SNIPPET_CHARS: usize = 300;
/// A link longer than this (percent-encoded) is left out and the title shown plain.
const LINK_CHARS: usize = 500;

/// The body of a POST to a target that wants `format`.
pub fn body(format: AlertFormat, payload: &AlertPayload) -> serde_json::Result<Vec<u8>> {
    match format {
        AlertFormat::Json => serde_json::to_vec(payload),
        AlertFormat::Slack => serde_json::to_vec(&json!({ "text": Chat::Slack.message(payload) })),
        AlertFormat::Discord => serde_json::to_vec(&json!({
            "content": Chat::Discord.message(payload),
            // A headline saying "@everyone" is text, not a ping.
            "allowed_mentions": { "parse": [] },
        })),
    }
}

#[derive(Clone, Copy)]
enum Chat {
    Slack,
    Discord,
}

impl Chat {
    /// Longest message, in characters (Unicode code points, as Discord counts them): Discord
    /// refuses `content` over 2,000; Slack cuts `text` at 40,000 and advises under 4,000.
    fn limit(self) -> usize {
        match self {
            Chat::Slack => 4000,
            Chat::Discord => 2000,
        }
    }

    fn message(self, payload: &AlertPayload) -> String {
        let story = &payload.story;
        let mut head = Vec::new();
        if let Some(company) = &payload.newly_named {
            head.push(format!(
                "_Now also names {}_",
                self.text(company, NAME_CHARS)
            ));
        }
        let title = self.text(
            story.title.as_deref().unwrap_or("(untitled story)"),
            TITLE_CHARS,
        );
        let link = story.link.as_deref().map(|link| self.link_target(link));
        head.push(
            match link.filter(|link| link.chars().count() <= LINK_CHARS) {
                Some(link) => self.bold(&self.link(&title, &link)),
                None => self.bold(&title),
            },
        );
        let mut about = Vec::new();
        if !payload.companies.is_empty() {
            let names: Vec<&str> = payload.companies.iter().map(|c| c.name.as_str()).collect();
            about.push(self.text(&names.join(", "), COMPANIES_CHARS));
        }
        if let Some(first) = payload.sources.first() {
            let feed = self.text(&first.feed, NAME_CHARS);
            about.push(match payload.sources.len() {
                1 => feed,
                n => format!("{feed} and {} more", n - 1),
            });
        }
        let when = story
            .published_at
            .as_deref()
            .unwrap_or(&story.first_seen_at);
        about.push(format!("{when} UTC"));
        head.push(about.join(" · "));

        let mut text = head.join("\n");
        let left_out_line = |n: usize| match n {
            1 => "\n(+1 more company)".to_owned(),
            n => format!("\n(+{n} more companies)"),
        };
        let room = self.limit() - left_out_line(payload.companies.len()).chars().count();
        for (shown, company) in payload.companies.iter().enumerate() {
            let line = format!(
                "\n{}{}: {}",
                self.quote(),
                self.bold(&self.text(&company.name, NAME_CHARS)),
                self.text(&company.snippet, SNIPPET_CHARS)
            );
            if text.chars().count() + line.chars().count() > room {
                text.push_str(&left_out_line(payload.companies.len() - shown));
                break;
            }
            text.push_str(&line);
        }
        text
    }

    /// At most `most` characters of the feed's `text`, cut with "…", as plain text in the
    /// service's markup, on one line.
    fn text(self, text: &str, most: usize) -> String {
        let mut escaped = String::with_capacity(text.len());
        let cut_at = if text.chars().count() > most {
            most - 1
        } else {
            usize::MAX
        };
        for (at, c) in text.chars().enumerate() {
            if at == cut_at {
                escaped.push('…');
                break;
            }
            match (self, c) {
                (_, c) if c.is_control() => escaped.push(' '),
                // Slack's markup has no escape character; only these three are entities.
                (Chat::Slack, '&') => escaped.push_str("&amp;"),
                (Chat::Slack, '<') => escaped.push_str("&lt;"),
                (Chat::Slack, '>') => escaped.push_str("&gt;"),
                (
                    Chat::Discord,
                    '\\' | '*' | '_' | '~' | '`' | '|' | '<' | '>' | '[' | ']' | '(' | ')' | '#'
                    | '@',
                ) => {
                    escaped.push('\\');
                    escaped.push(c);
                }
                (_, c) => escaped.push(c),
            }
        }
        escaped
    }

    /// `url` as the target of a link in the service's markup: the characters that would end
    /// the link early percent-encoded (they mean the same to the site), and for Slack, whose
    /// whole message is decoded for `&amp;`, `&lt;` and `&gt;`, an `&` written as `&amp;`.
    fn link_target(self, url: &str) -> String {
        let mut target = String::with_capacity(url.len());
        for c in url.chars() {
            match (self, c) {
                (_, '|' | '<' | '>' | '(' | ')' | ' ' | '"' | '`') => {
                    target.push_str(&format!("%{:02X}", u32::from(c)))
                }
                (_, c) if c.is_control() => {}
                (Chat::Slack, '&') => target.push_str("&amp;"),
                (_, c) => target.push(c),
            }
        }
        target
    }

    /// `text` (escaped) linking to `target` (from [`Chat::link_target`]).
    fn link(self, text: &str, target: &str) -> String {
        match self {
            Chat::Slack => format!("<{target}|{text}>"),
            Chat::Discord => format!("[{text}]({target})"),
        }
    }

    fn bold(self, text: &str) -> String {
        match self {
            Chat::Slack => format!("*{text}*"),
            Chat::Discord => format!("**{text}**"),
        }
    }

    fn quote(self) -> &'static str {
        match self {
            Chat::Slack => ">",
            Chat::Discord => "> ",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AlertCompany, AlertStory, Source};

    fn payload(title: &str, link: &str, companies: &[(&str, &str)]) -> AlertPayload {
        AlertPayload {
            idempotency_key: "k".into(),
            story: AlertStory {
                id: 7,
                title: Some(title.into()),
                link: Some(link.into()),
                published_at: Some("2026-11-23 08:15:00".into()),
                first_seen_at: "2026-11-24 13:00:08".into(),
            },
            newly_named: None,
            companies: companies
                .iter()
                .map(|&(name, snippet)| AlertCompany {
                    name: name.into(),
                    ticker: None,
                    snippet: snippet.into(),
                })
                .collect(),
            sources: ["Harbor Tech Daily", "Lantern Markets"]
                .map(|feed| Source {
                    feed: feed.into(),
                    title: None,
                    link: None,
                    published_at: None,
                })
                .into(),
            test: false,
        }
    }

    fn chars(text: &str) -> usize {
        text.chars().count()
    }

    fn text_of(format: AlertFormat, payload: &AlertPayload) -> String {
        let body: serde_json::Value =
            serde_json::from_slice(&body(format, payload).unwrap()).unwrap();
        let key = if format == AlertFormat::Slack {
            "text"
        } else {
            "content"
        };
        body[key].as_str().unwrap().to_owned()
    }

    #[test]
    fn a_slack_message_links_the_title_and_quotes_each_companys_mention() {
        let story = payload(
            "Xiaomi's tablet undercuts rivals",
            "https://news.example/xiaomi-tablet",
            &[
                ("Xiaomi", "The Xiaomi Pad arrives…"),
                ("Samsung", "…than Samsung's."),
            ],
        );
        assert_eq!(
            text_of(AlertFormat::Slack, &story),
            "*<https://news.example/xiaomi-tablet|Xiaomi's tablet undercuts rivals>*\n\
             Xiaomi, Samsung · Harbor Tech Daily and 1 more · 2026-11-23 08:15:00 UTC\n\
             >*Xiaomi*: The Xiaomi Pad arrives…\n\
             >*Samsung*: …than Samsung's."
        );
    }

    #[test]
    fn a_discord_message_pings_nobody_and_says_what_was_newly_named() {
        let mut story = payload(
            "Globex buys Acme",
            "https://news.example/deal",
            &[("Acme", "Globex buys Acme")],
        );
        story.newly_named = Some("Globex".into());
        let body: serde_json::Value =
            serde_json::from_slice(&body(AlertFormat::Discord, &story).unwrap()).unwrap();
        assert_eq!(body["allowed_mentions"], json!({ "parse": [] }));
        assert_eq!(
            body["content"],
            "_Now also names Globex_\n\
             **[Globex buys Acme](https://news.example/deal)**\n\
             Acme · Harbor Tech Daily and 1 more · 2026-11-23 08:15:00 UTC\n\
             > **Acme**: Globex buys Acme"
        );
    }

    #[test]
    fn a_publishers_markup_and_line_breaks_stay_text_and_cannot_end_the_link() {
        let story = payload(
            "<!channel> *Deal* [x](https://evil.example) @everyone\nline two",
            "https://news.example/a|b>(c) d",
            &[("Acme", "a <b>&amp; `code` ~~gone~~")],
        );
        let slack = text_of(AlertFormat::Slack, &story);
        assert!(
            slack.starts_with(
                "*<https://news.example/a%7Cb%3E%28c%29%20d|&lt;!channel&gt; *Deal* [x](https://evil.example) @everyone line two>*\n"
            ),
            "{slack}"
        );
        assert!(
            slack.ends_with(">*Acme*: a &lt;b&gt;&amp;amp; `code` ~~gone~~"),
            "{slack}"
        );
        let discord = text_of(AlertFormat::Discord, &story);
        assert!(
            discord.starts_with(
                r"**[\<!channel\> \*Deal\* \[x\]\(https://evil.example\) \@everyone line two](https://news.example/a%7Cb%3E%28c%29%20d)**"
            ),
            "{discord}"
        );
        assert!(
            discord.ends_with(r"> **Acme**: a \<b\>&amp; \`code\` \~\~gone\~\~"),
            "{discord}"
        );
    }

    #[test]
    fn a_message_stays_within_the_services_limit_and_says_what_it_left_out() {
        let snippet = "word ".repeat(24);
        let names: Vec<String> = (0..40).map(|i| format!("Company {i}")).collect();
        let companies: Vec<(&str, &str)> = names
            .iter()
            .map(|n| (n.as_str(), snippet.as_str()))
            .collect();
        let story = payload(
            &"Headline ".repeat(100),
            "https://news.example/long",
            &companies,
        );
        for (format, limit) in [(AlertFormat::Discord, 2000), (AlertFormat::Slack, 4000)] {
            let text = text_of(format, &story);
            assert!(chars(&text) <= limit, "{} chars", chars(&text));
            let quoted = text.lines().filter(|l| l.starts_with('>')).count();
            assert!(quoted > 0 && quoted < 40, "{quoted} snippets");
            assert!(
                text.ends_with(&format!("\n(+{} more companies)", 40 - quoted)),
                "{text}"
            );
            let title_line = text.lines().next().unwrap();
            assert!(
                title_line.contains("Headline H…]") || title_line.contains("Headline H…>"),
                "{title_line}"
            );
        }
    }

    #[test]
    fn the_longest_hostile_pieces_still_fit_without_a_cut_through_markup() {
        let name = "*".repeat(150);
        let companies: Vec<(&str, &str)> = (0..40).map(|_| (name.as_str(), "[x](y)")).collect();
        let mut story = payload(&"*".repeat(1000), &"(".repeat(1000), &companies);
        story.newly_named = Some("_".repeat(500));
        story.sources[0].feed = "|".repeat(500);
        for (format, limit) in [(AlertFormat::Discord, 2000), (AlertFormat::Slack, 4000)] {
            let text = text_of(format, &story);
            assert!(chars(&text) <= limit, "{} chars", chars(&text));
            let lines: Vec<&str> = text.lines().collect();
            assert!(lines[0].starts_with("_Now also names ") && lines[0].ends_with("…_"));
            let bold = if format == AlertFormat::Slack {
                "*"
            } else {
                "**"
            };
            assert!(
                lines[1].starts_with(bold) && lines[1].ends_with(&format!("…{bold}")),
                "the title, cut, and not a link too long to fit: {}",
                lines[1]
            );
            assert!(
                text.ends_with(" more companies)"),
                "{}",
                lines.last().unwrap()
            );
        }
    }

    #[test]
    fn a_slack_link_keeps_its_query_whole() {
        let story = payload("t", "https://news.example/?a=1&b=2&lt=3", &[]);
        assert!(
            text_of(AlertFormat::Slack, &story)
                .starts_with("*<https://news.example/?a=1&amp;b=2&amp;lt=3|t>*"),
            "Slack decodes &amp;, &lt; and &gt; in the whole message, links included"
        );
    }

    #[test]
    fn a_story_without_a_link_or_title_still_reads() {
        let mut story = payload("", "", &[]);
        story.story.title = None;
        story.story.link = None;
        story.story.published_at = None;
        story.sources.clear();
        assert_eq!(
            text_of(AlertFormat::Slack, &story),
            "*(untitled story)*\n2026-11-24 13:00:08 UTC"
        );
    }

    #[test]
    fn a_json_target_gets_feedhounds_payload() {
        let story = payload("t", "https://news.example/t", &[("Acme", "s")]);
        assert_eq!(
            body(AlertFormat::Json, &story).unwrap(),
            serde_json::to_vec(&story).unwrap()
        );
    }
}
