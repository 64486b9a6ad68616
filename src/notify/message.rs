//! What each POST or email carries: feedhound's JSON, a chat message for targets with `format =
//! "slack"` or `"discord"`, a push notification's words for `"ntfy"`, a Telegram bot's message
//! for `"telegram"` (`telegram`), a Teams card for `"teams"` (`teams`), or a plain-text email;
//! one alert, or for a target with a `digest`, several.
//!
//! A chat webhook posts what it is given to a channel, so these targets get a message built from
//! the payload a `json` target gets: the story's title as a link, the companies it names, where
//! and when it appeared, and the text around each mention. A feed's text is the publisher's, not
//! ours: it is escaped for the service's markup, so a headline can neither ping anyone nor hide a
//! link behind words of its own. Each piece is cut to a size that keeps the whole message within
//! the service's limit without cutting through markup. An email is plain text, which no mail
//! reader renders as markup: its subject names the companies and the story, its body the rest.

mod teams;
mod telegram;

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

/// Most alerts in one JSON digest or email: a receiver takes them in one request.
const DIGEST_ALERTS: usize = 50;
/// Longest email subject, in characters; mail readers show far less.
const SUBJECT_CHARS: usize = 250;

/// One POST or email: the key a receiver drops repeats by (`Idempotency-Key`, or the email's
/// `Message-ID`), the body, an email's subject or a push notification's title, and the link a
/// tap on a push notification opens, or a Telegram message previews.
#[derive(Debug, Default)]
pub struct Sending {
    pub idempotency_key: String,
    pub body: Vec<u8>,
    pub subject: Option<String>,
    pub click: Option<String>,
}

/// The POST or email of one alert to a target that wants `format`.
pub fn single(format: AlertFormat, payload: &AlertPayload) -> serde_json::Result<Sending> {
    let body = match format {
        AlertFormat::Json => serde_json::to_vec(payload)?,
        AlertFormat::Slack => chat_body(Chat::Slack, Chat::Slack.message(payload))?,
        AlertFormat::Discord => chat_body(Chat::Discord, Chat::Discord.message(payload))?,
        AlertFormat::Email => return Ok(email::single(payload)),
        AlertFormat::Ntfy => return Ok(push::single(payload)),
        AlertFormat::Telegram => return Ok(telegram::single(payload)),
        AlertFormat::Teams => return Ok(teams::single(payload)),
    };
    Ok(Sending {
        idempotency_key: payload.idempotency_key.clone(),
        body,
        ..Sending::default()
    })
}

/// The POST of one alert alone: for a target that takes digests, a digest of one, the shape
/// its receiver reads; but what a person reads (an email, a push notification, a Telegram
/// message, a Teams card) is best read as one alert.
pub fn alone(
    format: AlertFormat,
    digest_target: bool,
    payload: &AlertPayload,
) -> serde_json::Result<Sending> {
    // A person reads one alert best as one: an email, a push notification, a bot's message,
    // a card with the text around each mention.
    if !digest_target
        || matches!(
            format,
            AlertFormat::Email | AlertFormat::Ntfy | AlertFormat::Telegram | AlertFormat::Teams
        )
    {
        return single(format, payload);
    }
    let mut posts = digest(format, &[payload])?;
    Ok(posts.remove(0).1)
}

/// The POSTs of a digest of `payloads`, in order, each with how many of them it carries: one
/// JSON document of up to [`DIGEST_ALERTS`] alerts, or as many chat messages as keep each
/// within the service's limit. Each POST's key is made of its alerts' keys, so a retry of the
/// same alerts has the same key.
pub fn digest(
    format: AlertFormat,
    payloads: &[&AlertPayload],
) -> serde_json::Result<Vec<(usize, Sending)>> {
    let key_of = |part: &[&AlertPayload]| {
        let keys: Vec<&str> = part.iter().map(|p| p.idempotency_key.as_str()).collect();
        format!(
            "digest-{}",
            &blake3::hash(keys.join("\n").as_bytes()).to_hex()[..32]
        )
    };
    // The parts, in order, each with the key of the alerts it carries.
    let keyed = |parts: Vec<(usize, Sending)>| -> Vec<(usize, Sending)> {
        let mut at = 0;
        parts
            .into_iter()
            .map(|(count, mut sending)| {
                sending.idempotency_key = key_of(&payloads[at..at + count]);
                at += count;
                (count, sending)
            })
            .collect()
    };
    match format {
        AlertFormat::Json => payloads
            .chunks(DIGEST_ALERTS)
            .map(|part| {
                let idempotency_key = key_of(part);
                let body = serde_json::to_vec(&json!({
                    "idempotency_key": idempotency_key,
                    "alerts": part,
                }))?;
                Ok((
                    part.len(),
                    Sending {
                        idempotency_key,
                        body,
                        ..Sending::default()
                    },
                ))
            })
            .collect(),
        AlertFormat::Email => Ok(payloads
            .chunks(DIGEST_ALERTS)
            .map(|part| (part.len(), email::digest(part, key_of(part))))
            .collect()),
        AlertFormat::Ntfy => Ok(keyed(push::digest(payloads))),
        AlertFormat::Telegram => Ok(keyed(telegram::digest(payloads))),
        AlertFormat::Teams => Ok(keyed(teams::digest(payloads))),
        AlertFormat::Slack | AlertFormat::Discord => {
            let chat = if format == AlertFormat::Slack {
                Chat::Slack
            } else {
                Chat::Discord
            };
            let mut at = 0;
            chat.digest_messages(payloads)
                .into_iter()
                .map(|(count, text)| {
                    let part = &payloads[at..at + count];
                    at += count;
                    Ok((
                        count,
                        Sending {
                            idempotency_key: key_of(part),
                            body: chat_body(chat, text)?,
                            ..Sending::default()
                        },
                    ))
                })
                .collect()
        }
    }
}

/// The plain-text words of an alert, which emails, push notifications and Telegram messages
/// are made of: a feed's text cut to a length and kept on one line, without characters that
/// would break or reorder it.
mod plain {
    use super::{COMPANIES_CHARS, LINK_CHARS, NAME_CHARS, SUBJECT_CHARS, TITLE_CHARS, story_title};
    use crate::store::AlertPayload;

    /// One alert's subject: what was newly named, or the companies, then the title (a test
    /// alert names no company: its title alone).
    pub(super) fn subject(payload: &AlertPayload) -> String {
        let about = match &payload.newly_named {
            Some(company) => format!("Now also names {}", line(company, NAME_CHARS)),
            None => companies(payload),
        };
        subject_of(&about, &title(payload))
    }

    /// A digest's subject: how many stories, and their companies, most named first.
    pub(super) fn digest_subject(payloads: &[&AlertPayload]) -> String {
        let mut named: Vec<(&str, usize)> = Vec::new();
        for company in payloads.iter().flat_map(|p| &p.companies) {
            match named.iter_mut().find(|(name, _)| *name == company.name) {
                Some((_, count)) => *count += 1,
                None => named.push((&company.name, 1)),
            }
        }
        // Stable: companies named as often keep the order they first appear in.
        named.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
        let names: Vec<&str> = named.iter().map(|(name, _)| *name).collect();
        let count = match payloads.len() {
            1 => "1 story".to_owned(),
            n => format!("{n} stories"),
        };
        subject_of(&count, &line(&names.join(", "), COMPANIES_CHARS))
    }

    fn subject_of(about: &str, what: &str) -> String {
        let subject = if what.is_empty() {
            about.to_owned()
        } else if about.is_empty() {
            what.to_owned()
        } else {
            format!("{about}: {what}")
        };
        line(&subject, SUBJECT_CHARS)
    }

    pub(super) fn title(payload: &AlertPayload) -> String {
        line(story_title(payload), TITLE_CHARS)
    }

    pub(super) fn companies(payload: &AlertPayload) -> String {
        let names: Vec<&str> = payload.companies.iter().map(|c| c.name.as_str()).collect();
        line(&names.join(", "), COMPANIES_CHARS)
    }

    /// The line under the title: the companies, where, and when (in UTC, to the minute).
    pub(super) fn about(payload: &AlertPayload) -> String {
        super::about(
            payload,
            line,
            |when| match chrono::NaiveDateTime::parse_from_str(when, "%Y-%m-%d %H:%M:%S") {
                Ok(at) => at.format("%Y-%m-%d %H:%M UTC").to_string(),
                Err(_) => format!("{} UTC", line(when, NAME_CHARS)),
            },
        )
    }

    /// The story's link; a longer one is left out rather than cut, which would break it.
    pub(super) fn shown_link(payload: &AlertPayload) -> Option<&str> {
        (payload.story.link.as_deref()).filter(|link| link.len() <= LINK_CHARS)
    }

    /// The story's link as a button or a preview opens it: a web address with a host, written
    /// as the URL standard writes it; none for any other link.
    pub(super) fn web_link(payload: &AlertPayload) -> Option<String> {
        let link = shown_link(payload)?;
        let url = url::Url::parse(link).ok()?;
        (matches!(url.scheme(), "http" | "https") && url.host().is_some()).then(|| url.into())
    }

    /// At most `most` characters of the feed's `text`, cut with "…", on one line: no control
    /// characters, nor any that would hide or reorder what follows.
    pub(super) fn line(text: &str, most: usize) -> String {
        let cut_at = if text.chars().count() > most {
            most - 1
        } else {
            usize::MAX
        };
        let mut line = String::with_capacity(text.len());
        for (at, c) in text.chars().enumerate() {
            if at == cut_at {
                line.push('…');
                break;
            }
            // U+2028 and U+2029 are line breaks that `is_control` does not cover.
            if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}')
                || crate::notify::hides_or_reorders_text(c)
            {
                line.push(' ');
            } else {
                line.push(c);
            }
        }
        line
    }
}

/// Emails: plain text, so a feed's words are shown as written and need no escaping; only
/// characters that would break a line or reorder it are taken out.
mod email {
    use super::plain::{about, digest_subject, line, shown_link, subject, title};
    use super::{LINK_CHARS, NAME_CHARS, SNIPPET_CHARS, Sending};
    use crate::store::AlertPayload;

    pub fn single(payload: &AlertPayload) -> Sending {
        let mut body = head(payload);
        if !payload.companies.is_empty() {
            body.push('\n');
        }
        for company in &payload.companies {
            body.push_str(&format!(
                "\n{}: \"{}\"",
                line(&company.name, NAME_CHARS),
                line(&company.snippet, SNIPPET_CHARS)
            ));
        }
        body.push('\n');
        Sending {
            idempotency_key: payload.idempotency_key.clone(),
            subject: Some(subject(payload)),
            body: body.into_bytes(),
            click: None,
        }
    }

    /// One email of `payloads`, each story's head numbered, under a subject that counts them
    /// and names their companies, most named first.
    pub fn digest(payloads: &[&AlertPayload], idempotency_key: String) -> Sending {
        let mut body = String::new();
        for (number, payload) in payloads.iter().enumerate() {
            let head = head(payload).replace('\n', "\n   ");
            body.push_str(&format!("{}. {head}\n\n", number + 1));
        }
        Sending {
            idempotency_key,
            subject: Some(digest_subject(payloads)),
            body: format!("{}\n", body.trim_end()).into_bytes(),
            click: None,
        }
    }

    /// What says which story an alert is about: the title, its link on a line of its own (mail
    /// readers make it clickable), then what was newly named, the companies, where and when.
    fn head(payload: &AlertPayload) -> String {
        let mut head = vec![title(payload)];
        if let Some(link) = shown_link(payload) {
            head.push(line(link, LINK_CHARS));
        }
        if let Some(company) = &payload.newly_named {
            head.push(format!("Now also names {}", line(company, NAME_CHARS)));
        }
        head.push(about(payload));
        head.join("\n")
    }
}

/// Push notifications through ntfy: the words of an email (plain text, which ntfy shows as
/// written), in the size ntfy keeps as a message; a tap opens the story.
mod push {
    use super::plain::{about, companies, digest_subject, line, shown_link, subject, title};
    use super::{NAME_CHARS, SNIPPET_CHARS, Sending, fitting_parts, more_companies};
    use crate::store::AlertPayload;

    /// ntfy keeps a message shorter than 4,096 bytes (its default `message-size-limit`): one
    /// that long or longer arrives as an attachment, or is refused. Measured as JSON writes the
    /// text, so that quotes and backslashes cannot push the whole request past the 8 KB ntfy
    /// reads of it either.
    pub const MESSAGE_BYTES: usize = 4095;

    /// The length of `text` in a JSON string (line breaks, quotes and backslashes escaped),
    /// without the quotes.
    fn json_len(text: &str) -> usize {
        text.len()
            + text
                .chars()
                .filter(|c| matches!(c, '"' | '\\' | '\n'))
                .count()
    }

    /// One alert: its subject (the companies and the headline) as the notification's title;
    /// where and when, then the text around each company's mention, as its message.
    pub fn single(payload: &AlertPayload) -> Sending {
        let mut message = about(payload);
        let mut length = json_len(&message);
        let room = MESSAGE_BYTES - json_len(&more_companies(payload.companies.len()));
        for (shown, company) in payload.companies.iter().enumerate() {
            let line = format!(
                "\n{}: \"{}\"",
                line(&company.name, NAME_CHARS),
                line(&company.snippet, SNIPPET_CHARS)
            );
            length += json_len(&line);
            if length > room {
                message.push_str(&more_companies(payload.companies.len() - shown));
                break;
            }
            message.push_str(&line);
        }
        Sending {
            idempotency_key: payload.idempotency_key.clone(),
            body: message.into_bytes(),
            subject: Some(subject(payload)),
            click: shown_link(payload).map(str::to_owned),
        }
    }

    /// A digest: a line for each story (its title and companies) and one for its link,
    /// numbered, in as few notifications as [`MESSAGE_BYTES`] allows (a phone buzzes for each),
    /// each with how many stories it holds. Their keys are the caller's to set.
    pub fn digest(payloads: &[&AlertPayload]) -> Vec<(usize, Sending)> {
        let entries: Vec<String> = payloads
            .iter()
            .enumerate()
            .map(|(number, payload)| {
                let mut entry = format!(
                    "{}. {} ({})",
                    number + 1,
                    title(payload),
                    companies(payload)
                );
                if let Some(link) = shown_link(payload) {
                    entry.push_str(&format!("\n{link}"));
                }
                entry
            })
            .collect();
        // A blank line apart: two escaped line breaks.
        const BETWEEN: usize = 4;
        let lengths: Vec<usize> = entries.iter().map(|entry| json_len(entry)).collect();
        let parts = fitting_parts(&lengths, |part| {
            part.iter().sum::<usize>() + BETWEEN * (part.len() - 1) <= MESSAGE_BYTES
        });
        let total = parts.len();
        parts
            .into_iter()
            .enumerate()
            .map(|(index, part)| {
                let stories = &payloads[part.clone()];
                // In front: a phone cuts a long title at its end.
                let title = match total {
                    1 => digest_subject(stories),
                    _ => format!("{}/{total} · {}", index + 1, digest_subject(stories)),
                };
                let sending = Sending {
                    body: entries[part].join("\n\n").into_bytes(),
                    subject: Some(title),
                    click: match stories {
                        [one] => shown_link(one).map(str::to_owned),
                        _ => None,
                    },
                    ..Sending::default()
                };
                (stories.len(), sending)
            })
            .collect()
    }
}

/// A story's title; an empty one (`<title/>`) would leave a link with nothing to click.
fn story_title(payload: &AlertPayload) -> &str {
    (payload.story.title.as_deref())
        .filter(|title| !title.trim().is_empty())
        .unwrap_or("(untitled story)")
}

/// The line over a chat digest's stories: how many, and which part of how many it is.
fn digest_count(stories: usize, part: usize, parts: usize) -> String {
    let mut count = match stories {
        1 => "Digest: 1 story".to_owned(),
        n => format!("Digest: {n} stories"),
    };
    if parts > 1 {
        count.push_str(&format!(" · part {part} of {parts}"));
    }
    count
}

/// The longest line over a digest's stories, which a part must keep room for before it is
/// known how many parts there are: a round reads at most [`crate::notify::BATCH`] alerts.
fn longest_digest_count() -> String {
    let most = crate::notify::BATCH;
    digest_count(most, most, most)
}

/// `items` in consecutive parts, in order, each as long as `fits` lets it grow, and at least
/// one item long (one that fits nowhere goes alone).
fn fitting_parts<T>(items: &[T], fits: impl Fn(&[T]) -> bool) -> Vec<std::ops::Range<usize>> {
    let mut parts = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let mut end = start + 1;
        while end < items.len() && fits(&items[start..=end]) {
            end += 1;
        }
        parts.push(start..end);
        start = end;
    }
    parts
}

/// The line that says how many companies a message left out.
fn more_companies(left_out: usize) -> String {
    match left_out {
        1 => "\n(+1 more company)".to_owned(),
        n => format!("\n(+{n} more companies)"),
    }
}

/// The line under a story's title in every format: its companies, the first feed and how many
/// more carried it, and when it was published (or first seen), each written by the format's
/// `text` (a feed's words, cut to a length) and `time`.
fn about(
    payload: &AlertPayload,
    text: impl Fn(&str, usize) -> String,
    time: impl Fn(&str) -> String,
) -> String {
    let mut about = Vec::new();
    if !payload.companies.is_empty() {
        let names: Vec<&str> = payload.companies.iter().map(|c| c.name.as_str()).collect();
        about.push(text(&names.join(", "), COMPANIES_CHARS));
    }
    if let Some(first) = payload.sources.first() {
        let feed = text(&first.feed, NAME_CHARS);
        about.push(match payload.sources.len() {
            1 => feed,
            n => format!("{feed} and {} more", n - 1),
        });
    }
    let story = &payload.story;
    about.push(time(
        story
            .published_at
            .as_deref()
            .unwrap_or(&story.first_seen_at),
    ));
    about.join(" · ")
}

fn chat_body(chat: Chat, text: String) -> serde_json::Result<Vec<u8>> {
    match chat {
        Chat::Slack => serde_json::to_vec(&json!({ "text": text })),
        Chat::Discord => serde_json::to_vec(&json!({
            "content": text,
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

    /// One alert: the story's head, then the text around each company's mention.
    fn message(self, payload: &AlertPayload) -> String {
        let mut text = self.head(payload);
        let room = self.limit() - more_companies(payload.companies.len()).chars().count();
        for (shown, company) in payload.companies.iter().enumerate() {
            let line = format!(
                "\n{}{}: {}",
                self.quote(),
                self.bold(&self.text(&company.name, NAME_CHARS)),
                self.text(&company.snippet, SNIPPET_CHARS)
            );
            if text.chars().count() + line.chars().count() > room {
                text.push_str(&more_companies(payload.companies.len() - shown));
                break;
            }
            text.push_str(&line);
        }
        text
    }

    /// A digest: each story's head, a blank line apart, under a line that counts them, in as
    /// many messages as the service's limit asks for; each with how many stories it holds.
    fn digest_messages(self, payloads: &[&AlertPayload]) -> Vec<(usize, String)> {
        // The count line, at most "Digest: 50 stories · part 50 of 50" (a round reads at most
        // 50 alerts) and bold: 38 characters, with room to spare.
        const COUNT_LINE: usize = 48;
        let heads: Vec<String> = payloads.iter().map(|p| self.head(p)).collect();
        let lengths: Vec<usize> = heads.iter().map(|head| head.chars().count()).collect();
        let parts = fitting_parts(&lengths, |part| {
            COUNT_LINE + part.iter().map(|length| 2 + length).sum::<usize>() <= self.limit()
        });
        let total = parts.len();
        parts
            .into_iter()
            .enumerate()
            .map(|(index, part)| {
                let count = self.bold(&digest_count(part.len(), index + 1, total));
                (
                    part.len(),
                    format!("{count}\n\n{}", heads[part].join("\n\n")),
                )
            })
            .collect()
    }

    /// What says which story an alert is about: what was newly named, the title as a link,
    /// then the companies, where and when.
    fn head(self, payload: &AlertPayload) -> String {
        let story = &payload.story;
        let mut head = Vec::new();
        if let Some(company) = &payload.newly_named {
            head.push(format!(
                "_Now also names {}_",
                self.text(company, NAME_CHARS)
            ));
        }
        let title = self.text(story_title(payload), TITLE_CHARS);
        let link = story.link.as_deref().map(|link| self.link_target(link));
        head.push(
            match link.filter(|link| link.chars().count() <= LINK_CHARS) {
                Some(link) => self.bold(&self.link(&title, &link)),
                None => self.bold(&title),
            },
        );
        head.push(about(
            payload,
            |text, most| self.text(text, most),
            |when| self.time_mark(when),
        ));
        head.join("\n")
    }

    /// `utc` (a time as the database holds it) as the service's time mark, which each reader's
    /// app shows in their own time zone and format: a channel's readers seldom share one zone,
    /// and the daemon's is often a container's UTC. Slack's mark carries the UTC time as text
    /// for where it is not drawn (notifications, older clients). A value that is not our time
    /// format (written into the database by hand) is shown as text.
    fn time_mark(self, utc: &str) -> String {
        let Ok(at) = chrono::NaiveDateTime::parse_from_str(utc, "%Y-%m-%d %H:%M:%S") else {
            return format!("{} UTC", self.text(utc, NAME_CHARS));
        };
        let seconds = at.and_utc().timestamp();
        match self {
            Chat::Slack => format!("<!date^{seconds}^{{date_short_pretty}} {{time}}|{utc} UTC>"),
            Chat::Discord => format!("<t:{seconds}:f>"),
        }
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

    pub(super) fn payload(title: &str, link: &str, companies: &[(&str, &str)]) -> AlertPayload {
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

    /// The 50 stories of a round's digest, each with a key of its own, naming Xiaomi and
    /// Samsung: story `n`'s title (which starts "Story n ") and link are `story(n)`.
    pub(super) fn digest_stories(story: impl Fn(usize) -> (String, String)) -> Vec<AlertPayload> {
        (0..50)
            .map(|n| {
                let (title, link) = story(n);
                AlertPayload {
                    idempotency_key: format!("k{n}"),
                    ..payload(&title, &link, &[("Xiaomi", "x"), ("Samsung", "s")])
                }
            })
            .collect()
    }

    /// A story made of what chat Markdown escapes and cuts worst: long runs of `*`, `(`, `_`
    /// and `|`, and 40 companies whose names are 150 `*` each.
    fn hostile_story(link_chars: usize) -> AlertPayload {
        let name = "*".repeat(150);
        let companies: Vec<(&str, &str)> = (0..40).map(|_| (name.as_str(), "[x](y)")).collect();
        let mut story = payload(&"*".repeat(1000), &"(".repeat(link_chars), &companies);
        story.newly_named = Some("_".repeat(500));
        story.sources[0].feed = "|".repeat(500);
        story
    }

    fn chars(text: &str) -> usize {
        text.chars().count()
    }

    fn text_of(format: AlertFormat, payload: &AlertPayload) -> String {
        let body: serde_json::Value =
            serde_json::from_slice(&single(format, payload).unwrap().body).unwrap();
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
             Xiaomi, Samsung · Harbor Tech Daily and 1 more · \
             <!date^1795421700^{date_short_pretty} {time}|2026-11-23 08:15:00 UTC>\n\
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
            serde_json::from_slice(&single(AlertFormat::Discord, &story).unwrap().body).unwrap();
        assert_eq!(body["allowed_mentions"], json!({ "parse": [] }));
        assert_eq!(
            body["content"],
            "_Now also names Globex_\n\
             **[Globex buys Acme](https://news.example/deal)**\n\
             Acme · Harbor Tech Daily and 1 more · <t:1795421700:f>\n\
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
        let story = hostile_story(1000);
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
            "*(untitled story)*\n\
             <!date^1795525208^{date_short_pretty} {time}|2026-11-24 13:00:08 UTC>"
        );
    }

    #[test]
    fn a_time_not_in_our_format_is_shown_as_escaped_text() {
        let mut story = payload("Archive", "https://news.example/a", &[]);
        story.story.published_at = Some("<!channel> at noon".into());
        assert!(
            text_of(AlertFormat::Slack, &story).ends_with(" · &lt;!channel&gt; at noon UTC"),
            "{}",
            text_of(AlertFormat::Slack, &story)
        );
        assert!(
            text_of(AlertFormat::Discord, &story).ends_with(" · \\<!channel\\> at noon UTC"),
            "{}",
            text_of(AlertFormat::Discord, &story)
        );
    }

    #[test]
    fn a_json_digest_carries_the_alerts_under_a_key_made_of_theirs() {
        let mut first = payload("One", "https://news.example/1", &[("Acme", "s")]);
        first.idempotency_key = "k1".into();
        let mut second = payload("Two", "https://news.example/2", &[("Acme", "s")]);
        second.idempotency_key = "k2".into();
        let posts = digest(AlertFormat::Json, &[&first, &second]).unwrap();
        assert_eq!(posts.len(), 1);
        let (count, sending) = &posts[0];
        assert_eq!(*count, 2);
        let body: serde_json::Value = serde_json::from_slice(&sending.body).unwrap();
        assert_eq!(body["idempotency_key"], sending.idempotency_key.as_str());
        assert_eq!(
            body["alerts"],
            json!([
                serde_json::to_value(&first).unwrap(),
                serde_json::to_value(&second).unwrap()
            ])
        );
        let again = digest(AlertFormat::Json, &[&first, &second]).unwrap();
        assert_eq!(again[0].1.idempotency_key, sending.idempotency_key);
        let alone = digest(AlertFormat::Json, &[&first]).unwrap();
        assert_ne!(alone[0].1.idempotency_key, sending.idempotency_key);
        assert!(sending.idempotency_key.starts_with("digest-"));

        let many: Vec<AlertPayload> = (0..120)
            .map(|i| {
                let mut alert = payload("t", "https://news.example/t", &[]);
                alert.idempotency_key = format!("k{i}");
                alert
            })
            .collect();
        let refs: Vec<&AlertPayload> = many.iter().collect();
        let counts: Vec<usize> = digest(AlertFormat::Json, &refs)
            .unwrap()
            .iter()
            .map(|(count, _)| *count)
            .collect();
        assert_eq!(counts, [50, 50, 20]);
    }

    #[test]
    fn a_chat_digest_lists_each_story_once_in_order_within_the_services_limit() {
        let stories: Vec<AlertPayload> = (0..30)
            .map(|i| {
                payload(
                    &format!("Story {i:02} {}", "headline ".repeat(15)),
                    &format!("https://news.example/{i}"),
                    &[("Acme", "a snippet the digest leaves out")],
                )
            })
            .collect();
        let refs: Vec<&AlertPayload> = stories.iter().collect();
        for (format, limit) in [(AlertFormat::Discord, 2000), (AlertFormat::Slack, 4000)] {
            let posts = digest(format, &refs).unwrap();
            assert!(posts.len() > 1, "30 long heads need more than one message");
            let texts: Vec<String> = posts
                .iter()
                .map(|(_, sending)| {
                    let body: serde_json::Value = serde_json::from_slice(&sending.body).unwrap();
                    let key = if format == AlertFormat::Slack {
                        "text"
                    } else {
                        "content"
                    };
                    body[key].as_str().unwrap().to_owned()
                })
                .collect();
            let mut listed = Vec::new();
            for (index, ((count, _), text)) in posts.iter().zip(&texts).enumerate() {
                assert!(chars(text) <= limit, "{} chars", chars(text));
                let first_line = text.lines().next().unwrap();
                assert!(
                    first_line.contains(&format!(
                        "Digest: {count} stories · part {} of {}",
                        index + 1,
                        posts.len()
                    )),
                    "{first_line}"
                );
                assert!(!text.contains("a snippet"), "heads only");
                listed.extend(
                    text.lines()
                        .filter_map(|line| line.split("Story ").nth(1))
                        .map(|rest| rest[..2].to_owned()),
                );
            }
            let expected: Vec<String> = (0..30).map(|i| format!("{i:02}")).collect();
            assert_eq!(listed, expected, "every story once, in order");
            assert_eq!(posts.iter().map(|(count, _)| count).sum::<usize>(), 30);
        }
    }

    #[test]
    fn a_digest_of_the_longest_hostile_story_still_fits_one_message() {
        let story = hostile_story(490);
        for (format, limit) in [(AlertFormat::Discord, 2000), (AlertFormat::Slack, 4000)] {
            let posts = digest(format, &[&story, &story]).unwrap();
            for (count, sending) in &posts {
                let body: serde_json::Value = serde_json::from_slice(&sending.body).unwrap();
                let text = body
                    .get("content")
                    .or_else(|| body.get("text"))
                    .and_then(|text| text.as_str())
                    .unwrap();
                assert!(
                    chars(text) <= limit,
                    "{} chars in a part of {count}",
                    chars(text)
                );
            }
        }
    }

    #[test]
    fn a_json_target_gets_feedhounds_payload() {
        let story = payload("t", "https://news.example/t", &[("Acme", "s")]);
        let sending = single(AlertFormat::Json, &story).unwrap();
        assert_eq!(sending.body, serde_json::to_vec(&story).unwrap());
        assert_eq!(sending.idempotency_key, "k");
    }

    #[test]
    fn an_email_shows_a_feeds_text_as_written_on_the_lines_it_belongs_to() {
        let mut story = payload(
            "Acme <b>beats</b>\r\nBcc: everyone@example.com \u{202E}gnp.exe",
            "https://news.example/a?b=1&c=<2>",
            &[("Acme", "a *loud* line\nwith [a](link)")],
        );
        story.story.published_at = None;
        let sending = single(AlertFormat::Email, &story).unwrap();
        let subject = sending.subject.unwrap();
        assert_eq!(
            subject, "Acme: Acme <b>beats</b>  Bcc: everyone@example.com  gnp.exe",
            "no line break in a header, no reordering mark; markup is only text"
        );
        let text = String::from_utf8(sending.body).unwrap();
        assert_eq!(
            text,
            "Acme <b>beats</b>  Bcc: everyone@example.com  gnp.exe\n\
             https://news.example/a?b=1&c=<2>\n\
             Acme · Harbor Tech Daily and 1 more · 2026-11-24 13:00 UTC\n\
             \n\
             Acme: \"a *loud* line with [a](link)\"\n"
        );

        story.newly_named = Some("Bolt".into());
        story.story.title = None;
        let subject = single(AlertFormat::Email, &story).unwrap().subject.unwrap();
        assert_eq!(subject, "Now also names Bolt: (untitled story)");
    }

    #[test]
    fn an_email_digest_counts_its_stories_and_names_the_most_named_companies_first() {
        let one = payload("One", "https://news.example/1", &[("Bolt", "s")]);
        let two = payload(
            "Two",
            "https://news.example/2",
            &[("Acme", "s"), ("Bolt", "s")],
        );
        let three = payload(
            "Three",
            "https://news.example/3",
            &[("Acme", "s"), ("Core", "s")],
        );
        let posts = digest(AlertFormat::Email, &[&one, &two, &three]).unwrap();
        assert_eq!(posts.len(), 1);
        let (count, sending) = &posts[0];
        assert_eq!(*count, 3);
        assert_eq!(
            sending.subject.as_deref(),
            Some("3 stories: Bolt, Acme, Core"),
            "as often named: in the order they first appear"
        );
        let text = String::from_utf8(sending.body.clone()).unwrap();
        assert!(
            text.starts_with("1. One\n   https://news.example/1\n   Bolt · ")
                && text.contains("\n\n2. Two\n   https://news.example/2\n   Acme, Bolt · ")
                && text.ends_with("2026-11-23 08:15 UTC\n"),
            "{text}"
        );
        let again = digest(AlertFormat::Email, &[&one, &two, &three]).unwrap();
        assert_eq!(again[0].1.idempotency_key, sending.idempotency_key);
    }

    #[test]
    fn a_push_notification_titles_the_story_by_its_companies_and_opens_its_link() {
        let story = payload(
            "Xiaomi's new tablet undercuts rivals",
            "https://news.example/tablet",
            &[
                ("Samsung", "a price well below Samsung's flagship"),
                ("Xiaomi", "The Xiaomi Pad arrives in twelve markets"),
            ],
        );
        let sending = single(AlertFormat::Ntfy, &story).unwrap();
        assert_eq!(
            sending.subject.as_deref(),
            Some("Samsung, Xiaomi: Xiaomi's new tablet undercuts rivals")
        );
        assert_eq!(
            sending.click.as_deref(),
            Some("https://news.example/tablet")
        );
        assert_eq!(
            String::from_utf8(sending.body).unwrap(),
            "Samsung, Xiaomi · Harbor Tech Daily and 1 more · 2026-11-23 08:15 UTC\n\
             Samsung: \"a price well below Samsung's flagship\"\n\
             Xiaomi: \"The Xiaomi Pad arrives in twelve markets\""
        );
        assert_eq!(
            alone(AlertFormat::Ntfy, true, &story).unwrap().subject,
            single(AlertFormat::Ntfy, &story).unwrap().subject,
            "a digest target's alert alone is a notification of its own"
        );
    }

    /// The length ntfy reads a message at, in its JSON.
    fn in_json(body: &[u8]) -> usize {
        serde_json::to_string(std::str::from_utf8(body).unwrap())
            .unwrap()
            .len()
            - 2
    }

    /// ntfy keeps a message under 4,096 bytes; one that long arrives as a file, or not at all.
    /// Snippets of every length from 1 to 300 characters, of text JSON escapes, put the last
    /// company's line at every distance from the limit.
    #[test]
    fn push_notifications_keep_within_what_ntfy_takes_as_a_message() {
        let name = "小\"".repeat(50);
        for length in 1..=300 {
            let snippet: String = "米\\\"ab".chars().cycle().take(length).collect();
            let companies: Vec<(&str, &str)> =
                (0..40).map(|_| (name.as_str(), snippet.as_str())).collect();
            let story = payload(&"标".repeat(1000), "https://news.example/a", &companies);
            let body = single(AlertFormat::Ntfy, &story).unwrap().body;
            assert!(
                in_json(&body) <= push::MESSAGE_BYTES,
                "{length}: {} bytes",
                in_json(&body)
            );
            assert!(
                String::from_utf8(body)
                    .unwrap()
                    .ends_with(" more companies)")
            );
        }
    }

    /// A digest fills each notification (a phone buzzes for each) and loses no story: each is
    /// numbered once, in order, across the parts. Titles of lengths in many patterns put the
    /// parts' ends at every distance from the limit.
    #[test]
    fn a_push_digest_numbers_every_story_once_in_as_few_notifications_as_fit() {
        for step in 1..=40 {
            let stories = digest_stories(|n| {
                (
                    format!("Story {n} {}", "\"标".repeat(n * step % 190)),
                    format!("https://news.example/{n}"),
                )
            });
            check_push_digest(&stories.iter().collect::<Vec<_>>());
        }
    }

    fn check_push_digest(all: &[&AlertPayload]) {
        let parts = digest(AlertFormat::Ntfy, all).unwrap();
        assert!(parts.len() > 1, "{} parts", parts.len());
        let mut numbered = Vec::new();
        for (index, (count, sending)) in parts.iter().enumerate() {
            assert!(
                in_json(&sending.body) <= push::MESSAGE_BYTES,
                "part {index}"
            );
            let stories = match count {
                1 => "1 story".to_owned(),
                n => format!("{n} stories"),
            };
            assert_eq!(
                sending.subject.as_deref().unwrap(),
                format!("{}/{} · {stories}: Xiaomi, Samsung", index + 1, parts.len())
            );
            assert_eq!(
                sending.click.is_some(),
                *count == 1,
                "only a story alone has a link to open"
            );
            let body = String::from_utf8(sending.body.clone()).unwrap();
            let numbers: Vec<usize> = body
                .split("\n\n")
                .map(|entry| entry.split_once(". ").unwrap().0.parse().unwrap())
                .collect();
            assert_eq!(numbers.len(), *count);
            numbered.extend(numbers);
            if let Some((_, next)) = parts.get(index + 1) {
                let next = String::from_utf8(next.body.clone()).unwrap();
                let first_next = in_json(next.split("\n\n").next().unwrap().as_bytes());
                assert!(
                    in_json(body.as_bytes()) + 4 + first_next > push::MESSAGE_BYTES,
                    "part {index} had room for the next story"
                );
            }
        }
        assert_eq!(numbered, (1..=50).collect::<Vec<_>>());
        let keys: std::collections::HashSet<&str> = parts
            .iter()
            .map(|(_, sending)| sending.idempotency_key.as_str())
            .collect();
        assert_eq!(keys.len(), parts.len(), "each part has a key of its own");
    }

    #[test]
    fn a_push_digest_of_one_story_opens_it() {
        let story = payload(
            "Story",
            "https://news.example/0",
            &[("Xiaomi", "x"), ("Samsung", "s")],
        );
        let one = digest(AlertFormat::Ntfy, &[&story]).unwrap();
        assert_eq!(
            (one[0].1.subject.as_deref(), one[0].1.click.as_deref()),
            (
                Some("1 story: Xiaomi, Samsung"),
                Some("https://news.example/0")
            )
        );
    }
}
