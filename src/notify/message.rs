//! Alerts written as chat messages, for targets with `format = "slack"` or `"discord"`.
//!
//! A chat webhook posts what it is given to a channel, so these targets get a message built from
//! the payload a `json` target gets: the story's title as a link, the companies it names, where
//! and when it appeared, and the text around each mention. A feed's text is the publisher's, not
//! ours: it is escaped for the service's markup, so a headline can neither format, link nor ping
//! anyone, and each message is kept within the size the service accepts.

use serde_json::json;

use crate::config::AlertFormat;
use crate::store::AlertPayload;

/// A headline longer than this is cut, so the companies and snippets still fit.
const TITLE_CHARS: usize = 300;
/// A link longer than this is left out: the title goes plain rather than the message too long.
const LINK_CHARS: usize = 1000;

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
    /// Longest message, in characters: Discord refuses `content` over 2,000; Slack cuts `text`
    /// at 40,000 and advises staying under 4,000.
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
            head.push(format!("_Now also names {}_", self.escape(company)));
        }
        let title = story
            .title
            .as_deref()
            .or(story.link.as_deref())
            .unwrap_or("(untitled story)");
        let title = self.escape(&cut(title, TITLE_CHARS));
        head.push(
            match story.link.as_deref().filter(|l| l.len() <= LINK_CHARS) {
                Some(link) => self.bold(&self.link(&title, link)),
                None => self.bold(&title),
            },
        );
        let mut about = Vec::new();
        if !payload.companies.is_empty() {
            let names: Vec<&str> = payload.companies.iter().map(|c| c.name.as_str()).collect();
            about.push(self.escape(&names.join(", ")));
        }
        if let Some(first) = payload.sources.first() {
            let feed = self.escape(&first.feed);
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
        let mut left_out = 0;
        for company in &payload.companies {
            let line = format!(
                "\n{}{}: {}",
                self.quote(),
                self.bold(&self.escape(&company.name)),
                self.escape(&company.snippet)
            );
            // Room is kept for the line saying how many were left out.
            if left_out == 0 && chars(&text) + chars(&line) + 40 <= self.limit() {
                text.push_str(&line);
            } else {
                left_out += 1;
            }
        }
        if left_out > 0 {
            text.push_str(&format!(
                "\n(and what {left_out} more companies' mentions say)"
            ));
        }
        cut(&text, self.limit())
    }

    /// `text` as plain text in the service's markup, on one line.
    fn escape(self, text: &str) -> String {
        let mut escaped = String::with_capacity(text.len());
        for c in text.chars() {
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

    /// `text` (escaped) linking to `url`.
    fn link(self, text: &str, url: &str) -> String {
        // The characters that would end the link early in either markup; percent-encoded they
        // mean the same to the site.
        let mut target = String::with_capacity(url.len());
        for c in url.chars() {
            match c {
                '|' | '<' | '>' | '(' | ')' | ' ' | '"' | '`' => {
                    target.push_str(&format!("%{:02X}", u32::from(c)))
                }
                c if c.is_control() => {}
                c => target.push(c),
            }
        }
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

fn chars(text: &str) -> usize {
    text.chars().count()
}

/// `text`, cut to at most `most` characters with "…" where it was cut.
fn cut(text: &str, most: usize) -> String {
    if chars(text) <= most {
        return text.to_owned();
    }
    let mut kept: String = text.chars().take(most - 1).collect();
    kept.push('…');
    kept
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
                text.ends_with(&format!(
                    "(and what {} more companies' mentions say)",
                    40 - quoted
                )),
                "{text}"
            );
            let title_line = text.lines().next().unwrap();
            assert!(
                title_line.contains("Headline He…") && chars(title_line) < TITLE_CHARS + 40,
                "{title_line}"
            );
        }
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
