//! Messages from a Telegram bot: the words of an email in Telegram's HTML, the title a link to
//! the story, whose preview Telegram shows under it, and each company's snippet quoted.
//!
//! A feed's text is escaped, so a headline can neither break the markup (Telegram refuses a
//! message it cannot read), hide a link behind words of its own, nor mention anyone (an
//! `@name` in a group notifies that member). Telegram takes at most 4,096 characters once it
//! has read the markup, applies at most 100 pieces of markup (entities) and refuses a message
//! whose links are too long together, so each of these is kept as the message is written
//! rather than measured on the HTML, whose tags and link targets are not text.

use super::plain::{about, line, title, web_link};
use super::{
    NAME_CHARS, SNIPPET_CHARS, Sending, digest_count, fitting_parts, longest_digest_count,
    more_companies,
};
use crate::store::AlertPayload;

/// Most text in one message, in UTF-16 code units: Telegram counts the offsets of its markup
/// in them, and there are never fewer of them than characters, which its limit speaks of.
const MESSAGE_UNITS: usize = 4096;
/// Most pieces of markup (bold, a link, a quote) in one message: Telegram drops the rest.
const MESSAGE_ENTITIES: usize = 100;
/// Most bytes of link targets in one message. Telegram refuses a message whose entities are
/// too long together (`ENTITIES_TOO_LONG`) and does not say at what length; links are most of
/// it, and stay well under what its clients are known to send.
const MESSAGE_LINK_BYTES: usize = 6000;

/// What Telegram counts of a message, or of a piece of one.
#[derive(Default, Clone, Copy)]
struct Size {
    /// The text shown, in UTF-16 code units.
    units: usize,
    entities: usize,
    link_bytes: usize,
}

impl Size {
    fn plus(self, other: Size) -> Size {
        Size {
            units: self.units + other.units,
            entities: self.entities + other.entities,
            link_bytes: self.link_bytes + other.link_bytes,
        }
    }

    /// Whether Telegram takes a message this big.
    fn fits(self) -> bool {
        self.units <= MESSAGE_UNITS
            && self.entities <= MESSAGE_ENTITIES
            && self.link_bytes <= MESSAGE_LINK_BYTES
    }
}

/// One line break, as text.
const LINE_BREAK: Size = Size {
    units: 1,
    entities: 0,
    link_bytes: 0,
};

/// Telegram HTML, and its size.
#[derive(Default)]
struct Html {
    html: String,
    size: Size,
}

impl Html {
    /// `text` as shown: `&`, `<` and `>` written as entities, which Telegram reads as one
    /// character each, and a word joiner after each `@`, so that `@name` mentions nobody.
    fn text(&mut self, text: &str) -> &mut Html {
        for c in text.chars() {
            match c {
                '&' => self.html.push_str("&amp;"),
                '<' => self.html.push_str("&lt;"),
                '>' => self.html.push_str("&gt;"),
                '@' => self.html.push_str("@\u{2060}"),
                c => self.html.push(c),
            }
            self.size.units += c.len_utf16() + usize::from(c == '@');
        }
        self
    }

    /// What `write` writes, in the entity `tag` (`b`, `i`, `blockquote`).
    fn within(&mut self, tag: &str, write: impl FnOnce(&mut Html)) -> &mut Html {
        self.html.push_str(&format!("<{tag}>"));
        self.size.entities += 1;
        write(self);
        self.html.push_str(&format!("</{tag}>"));
        self
    }

    /// `text` linking to `link` (a URL as the `url` crate writes it: `"`, `<` and `>`
    /// percent-encoded, so only `&` needs its entity).
    fn link(&mut self, link: &str, text: &str) -> &mut Html {
        let target = link.replace('&', "&amp;");
        self.html.push_str(&format!("<a href=\"{target}\">"));
        self.size.entities += 1;
        self.size.link_bytes += link.len();
        self.text(text);
        self.html.push_str("</a>");
        self
    }

    fn append(&mut self, other: &Html) -> &mut Html {
        self.html.push_str(&other.html);
        self.size = self.size.plus(other.size);
        self
    }
}

/// One alert: the story's head, then the text around each company's mention, quoted, as many
/// as fit; the story's link is the one previewed.
pub fn single(payload: &AlertPayload) -> Sending {
    let link = web_link(payload);
    let mut message = head(payload, link.as_deref());
    // Kept for the line that counts the companies left out, and the quote's entity.
    let mut kept = Html::default();
    kept.text(&more_companies(payload.companies.len()))
        .size
        .entities += 1;
    let mut quoted = Html::default();
    let mut left_out = 0;
    for (shown, company) in payload.companies.iter().enumerate() {
        let mut mention = Html::default();
        if shown > 0 {
            mention.text("\n");
        }
        mention
            .within("b", |name| {
                name.text(&line(&company.name, NAME_CHARS));
            })
            .text(": ")
            .text(&line(&company.snippet, SNIPPET_CHARS));
        // The quote comes after a line break.
        let with_it = (message.size.plus(LINE_BREAK))
            .plus(quoted.size)
            .plus(mention.size)
            .plus(kept.size);
        if !with_it.fits() {
            left_out = payload.companies.len() - shown;
            break;
        }
        quoted.append(&mention);
    }
    if !quoted.html.is_empty() {
        message.text("\n").within("blockquote", |quote| {
            quote.append(&quoted);
        });
    }
    if left_out > 0 {
        message.text(&more_companies(left_out));
    }
    Sending {
        idempotency_key: payload.idempotency_key.clone(),
        body: message.html.into_bytes(),
        click: link,
        ..Sending::default()
    }
}

/// A digest: each story's head, a blank line apart, under a line that counts them, in as few
/// messages as hold them, each with how many stories it carries. Nothing is previewed: which
/// of the links would be is Telegram's guess. Their keys are the caller's to set.
pub fn digest(payloads: &[&AlertPayload]) -> Vec<(usize, Sending)> {
    // The longest count line, in bold.
    let mut count_line = Html::default();
    count_line.within("b", |count| {
        count.text(&longest_digest_count());
    });
    let blank_line = LINE_BREAK.plus(LINE_BREAK);
    let heads: Vec<Html> = payloads
        .iter()
        .map(|payload| head(payload, web_link(payload).as_deref()))
        .collect();
    let sizes: Vec<Size> = heads.iter().map(|head| head.size).collect();
    let parts = fitting_parts(&sizes, |part| {
        let stories = part.iter().fold(Size::default(), |sum, size| {
            sum.plus(blank_line).plus(*size)
        });
        count_line.size.plus(stories).fits()
    });
    let total = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(index, part)| {
            let mut message = Html::default();
            message.within("b", |count| {
                count.text(&digest_count(part.len(), index + 1, total));
            });
            for head in &heads[part.clone()] {
                message.text("\n\n").append(head);
            }
            let sending = Sending {
                body: message.html.into_bytes(),
                ..Sending::default()
            };
            (part.len(), sending)
        })
        .collect()
}

/// What says which story an alert is about: what was newly named, the title as a link, then
/// the companies, where and when. `link` is the story's [`web_link`].
fn head(payload: &AlertPayload, link: Option<&str>) -> Html {
    let mut head = Html::default();
    if let Some(company) = &payload.newly_named {
        head.within("i", |newly| {
            newly.text(&format!("Now also names {}", line(company, NAME_CHARS)));
        })
        .text("\n");
    }
    head.within("b", |bold| match link {
        Some(link) => {
            bold.link(link, &title(payload));
        }
        None => {
            bold.text(&title(payload));
        }
    });
    head.text("\n").text(&about(payload));
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::tests::{digest_stories, payload};
    use crate::notify::message::{digest as digest_of, single as single_of};

    use crate::config::AlertFormat::Telegram;

    /// What Telegram shows of a message in its HTML: the text without tags, entities read;
    /// and how many pieces of markup it holds.
    fn shown(html: &[u8]) -> (String, usize) {
        let html = std::str::from_utf8(html).unwrap();
        let (mut shown, mut entities) = (String::new(), 0);
        let mut rest = html;
        while let Some(at) = rest.find('<') {
            shown.push_str(&rest[..at]);
            let end = at + rest[at..].find('>').unwrap();
            entities += usize::from(!rest[at..].starts_with("</"));
            rest = &rest[end + 1..];
        }
        shown.push_str(rest);
        let shown = shown
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        (shown, entities)
    }

    fn units(text: &str) -> usize {
        text.encode_utf16().count()
    }

    #[test]
    fn a_message_shows_the_feeds_words_as_written_mentions_nobody_and_links_the_title() {
        let story = payload(
            "Xiaomi & Samsung <b>sign</b> a \"deal\", @everyone",
            "https://news.example/deal?id=1&ref=\"rss\" x",
            &[
                ("Samsung", "a price <i>well</i> below, says @jack"),
                ("Xiaomi", "The Xiaomi Pad & co"),
            ],
        );
        let sending = single_of(Telegram, &story).unwrap();
        assert_eq!(
            String::from_utf8(sending.body).unwrap(),
            "<b><a href=\"https://news.example/deal?id=1&amp;ref=%22rss%22%20x\">\
             Xiaomi &amp; Samsung &lt;b&gt;sign&lt;/b&gt; a \"deal\", @\u{2060}everyone</a></b>\n\
             Samsung, Xiaomi · Harbor Tech Daily and 1 more · 2026-11-23 08:15 UTC\n\
             <blockquote><b>Samsung</b>: a price &lt;i&gt;well&lt;/i&gt; below, says @\u{2060}jack\n\
             <b>Xiaomi</b>: The Xiaomi Pad &amp; co</blockquote>"
        );
        assert_eq!(
            sending.click.as_deref(),
            Some("https://news.example/deal?id=1&ref=%22rss%22%20x"),
            "the link previewed is the one the title opens"
        );

        let mut renamed = payload("", "javascript:alert(1)", &[("Globex", "Globex too")]);
        renamed.newly_named = Some("Globex".into());
        let sending = single_of(Telegram, &renamed).unwrap();
        assert_eq!(sending.click, None, "only a web address is previewed");
        let body = String::from_utf8(sending.body).unwrap();
        assert!(
            body.starts_with("<i>Now also names Globex</i>\n<b>(untitled story)</b>\n"),
            "no link but a web address, and an empty title shown as one: {body}"
        );
        for not_a_page in ["https://", "mailto:desk@news.example", "/relative/path"] {
            let story = payload("Deal", not_a_page, &[("Globex", "g")]);
            assert_eq!(
                single_of(Telegram, &story).unwrap().click,
                None,
                "{not_a_page}"
            );
        }
    }

    /// Telegram refuses a message of more than 4,096 characters once its markup is read.
    /// Snippets of every length from 1 to 300 characters, of text that HTML escapes, of `@`
    /// (which gains a joiner) and of characters outside the BMP (two UTF-16 units each), put
    /// the last company's line at every distance from the limit; each message is as full as
    /// the limit lets it be.
    #[test]
    fn a_message_keeps_within_what_telegram_takes_and_fills_it() {
        let name = "小<".repeat(50);
        for length in 1..=300 {
            let snippet: String = "米&𝕏a@".chars().cycle().take(length).collect();
            let companies: Vec<(&str, &str)> =
                (0..40).map(|_| (name.as_str(), snippet.as_str())).collect();
            let story = payload(&"标".repeat(1000), "https://news.example/a", &companies);
            let (text, entities) = shown(&single_of(Telegram, &story).unwrap().body);
            let next_line = units(&format!("\n{name}: {snippet}")) + snippet.matches('@').count();
            assert!(
                units(&text) <= MESSAGE_UNITS && units(&text) + next_line > MESSAGE_UNITS,
                "{length}: {} units, and the next company's line is {next_line}",
                units(&text)
            );
            assert!(entities <= MESSAGE_ENTITIES);
            assert!(text.ends_with(" more companies)"), "{length}");
        }
    }

    /// Forty companies with short snippets fit in the text, not in Telegram's 100 entities:
    /// each name is bold, so the message stops where the markup would be dropped.
    #[test]
    fn a_message_keeps_within_the_markup_telegram_applies() {
        let names: Vec<String> = (0..120).map(|n| format!("Co{n}")).collect();
        let companies: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "x")).collect();
        let story = payload("Deal", "https://news.example/a", &companies);
        let (text, entities) = shown(&single_of(Telegram, &story).unwrap().body);
        // Bold and link for the title, the quote, a bold name per company.
        assert_eq!(entities, MESSAGE_ENTITIES, "{text}");
        assert!(text.ends_with("\n(+23 more companies)"), "{text}");
    }

    /// A digest fills each message and loses no story: each comes once, in order, across the
    /// parts. Titles and links of lengths in many patterns put the parts' ends at every
    /// distance from each limit: the text (long titles), the links' targets (long links), the
    /// entities (short both).
    #[test]
    fn a_digest_carries_every_story_once_in_as_few_messages_as_fit() {
        let kinds: [fn(usize) -> (usize, usize); 3] =
            [|n| (n % 95, n % 400), |n| (0, 300 + n % 150), |_| (0, 0)];
        for (kind, step) in kinds
            .iter()
            .flat_map(|kind| (1..=40).map(move |step| (kind, step)))
        {
            let stories = digest_stories(|n| {
                let (title, link) = kind(n * step);
                (
                    format!("Story {n} {}", "&𝕏".repeat(title)),
                    format!("https://news.example/{n}?{}", "q".repeat(link)),
                )
            });
            let all: Vec<&AlertPayload> = stories.iter().collect();
            let parts = digest_of(Telegram, &all).unwrap();
            assert!(parts.len() > 1, "{step}: {} parts", parts.len());
            let heads_of = |body: &[u8]| -> Vec<String> {
                let (text, _) = shown(body);
                text.split("\n\n").skip(1).map(str::to_owned).collect()
            };
            let link_bytes = |body: &[u8]| {
                let html = std::str::from_utf8(body).unwrap();
                html.split("<a href=\"")
                    .skip(1)
                    .map(|rest| rest.split_once('"').unwrap().0.replace("&amp;", "&").len())
                    .sum::<usize>()
            };
            let mut carried = Vec::new();
            for (index, (count, sending)) in parts.iter().enumerate() {
                let (text, entities) = shown(&sending.body);
                let count_line = digest_count(*count, index + 1, parts.len());
                assert!(text.starts_with(&format!("{count_line}\n\n")), "{text}");
                assert!(
                    units(&text) <= MESSAGE_UNITS
                        && entities <= MESSAGE_ENTITIES
                        && link_bytes(&sending.body) <= MESSAGE_LINK_BYTES,
                    "{step}, part {index}"
                );
                assert_eq!(sending.click, None, "nothing previewed");
                let heads = heads_of(&sending.body);
                assert_eq!(heads.len(), *count);
                carried.extend(heads.iter().map(|head| {
                    let number = head
                        .strip_prefix("Story ")
                        .unwrap()
                        .split_once(' ')
                        .unwrap()
                        .0;
                    number.parse::<usize>().unwrap()
                }));
                if let Some((_, next)) = parts.get(index + 1) {
                    // The count line is given room as if it were the longest.
                    let count_room = units(&longest_digest_count());
                    let first_next = units(&heads_of(&next.body)[0]);
                    let next_link = stories[carried.len()].story.link.as_ref().unwrap().len();
                    let full = units(&text) - units(&count_line) + count_room + 2 + first_next
                        > MESSAGE_UNITS
                        || entities + 2 > MESSAGE_ENTITIES
                        || link_bytes(&sending.body) + next_link > MESSAGE_LINK_BYTES;
                    assert!(full, "{step}, part {index} had room for the next story");
                }
            }
            assert_eq!(carried, (0..50).collect::<Vec<_>>(), "{step}");
        }
    }
}
