//! Messages from a Telegram bot: the words of an email in Telegram's HTML, the title a link to
//! the story, whose preview Telegram shows under it, and each company's snippet quoted.
//!
//! A feed's text is escaped, so a headline can neither break the markup (Telegram refuses a
//! message it cannot read) nor hide a link behind words of its own. Telegram takes at most
//! 4,096 characters once it has read the markup, so the length is kept as the message is
//! written rather than measured on the HTML, whose tags and link targets do not count.

use super::email::{about, line, shown_link, title};
use super::{NAME_CHARS, SNIPPET_CHARS, Sending, more_companies};
use crate::store::AlertPayload;

/// Most text in one message, counted in UTF-16 code units, as Telegram counts the offsets of
/// its markup: never fewer than the characters, which the Bot API's 4,096 speaks of.
pub const MESSAGE_UNITS: usize = 4096;

/// Telegram HTML, and the length of the text it shows.
#[derive(Default)]
pub(super) struct Html {
    pub html: String,
    pub shown: usize,
}

impl Html {
    /// `text` as shown: `&`, `<` and `>` written as entities, which Telegram reads as one
    /// character each.
    fn text(&mut self, text: &str) -> &mut Html {
        for c in text.chars() {
            match c {
                '&' => self.html.push_str("&amp;"),
                '<' => self.html.push_str("&lt;"),
                '>' => self.html.push_str("&gt;"),
                c => self.html.push(c),
            }
        }
        self.shown += text.encode_utf16().count();
        self
    }

    /// A tag, which shows nothing.
    fn tag(&mut self, tag: &str) -> &mut Html {
        self.html.push_str(tag);
        self
    }

    fn append(&mut self, other: &Html) -> &mut Html {
        self.html.push_str(&other.html);
        self.shown += other.shown;
        self
    }
}

/// One alert: the story's head, then the text around each company's mention, quoted, as many
/// as fit; the story's link is the one previewed.
pub fn single(payload: &AlertPayload) -> Sending {
    let mut message = head(payload);
    let room = MESSAGE_UNITS - units(&more_companies(payload.companies.len()));
    let mut quoted = Html::default();
    let mut left_out = 0;
    for (shown, company) in payload.companies.iter().enumerate() {
        let mut mention = Html::default();
        if shown > 0 {
            mention.text("\n");
        }
        mention
            .tag("<b>")
            .text(&line(&company.name, NAME_CHARS))
            .tag("</b>")
            .text(": ")
            .text(&line(&company.snippet, SNIPPET_CHARS));
        // The line break before the quote.
        if message.shown + 1 + quoted.shown + mention.shown > room {
            left_out = payload.companies.len() - shown;
            break;
        }
        quoted.append(&mention);
    }
    if quoted.shown > 0 {
        message
            .text("\n")
            .tag("<blockquote>")
            .append(&quoted)
            .tag("</blockquote>");
    }
    if left_out > 0 {
        message.text(&more_companies(left_out));
    }
    Sending {
        idempotency_key: payload.idempotency_key.clone(),
        body: message.html.into_bytes(),
        click: web_link(payload).map(str::to_owned),
        ..Sending::default()
    }
}

/// A digest: each story's head, a blank line apart, under a line that counts them, in as few
/// messages as hold them, each with how many stories it carries. Nothing is previewed: which
/// of the links would be is Telegram's guess. Their keys are the caller's to set.
pub fn digest(payloads: &[&AlertPayload]) -> Vec<(usize, Sending)> {
    // At most "Digest: 50 stories · part 50 of 50" and the blank line under it (a round reads
    // at most 50 alerts): 38 units, with room to spare.
    const COUNT_LINE: usize = 48;
    let heads: Vec<Html> = payloads.iter().map(|payload| head(payload)).collect();
    let mut parts: Vec<&[Html]> = Vec::new();
    let mut rest = heads.as_slice();
    while !rest.is_empty() {
        let mut length = COUNT_LINE;
        let fits = rest
            .iter()
            .take_while(|head| {
                length += 2 + head.shown;
                length <= MESSAGE_UNITS
            })
            .count()
            .max(1);
        let (part, after) = rest.split_at(fits);
        parts.push(part);
        rest = after;
    }
    let total = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(index, part)| {
            let mut count = match part.len() {
                1 => "Digest: 1 story".to_owned(),
                n => format!("Digest: {n} stories"),
            };
            if total > 1 {
                count.push_str(&format!(" · part {} of {total}", index + 1));
            }
            let mut message = Html::default();
            message.tag("<b>").text(&count).tag("</b>");
            for head in part {
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
/// the companies, where and when.
pub(super) fn head(payload: &AlertPayload) -> Html {
    let mut head = Html::default();
    if let Some(company) = &payload.newly_named {
        head.tag("<i>")
            .text(&format!("Now also names {}", line(company, NAME_CHARS)))
            .tag("</i>")
            .text("\n");
    }
    head.tag("<b>");
    match web_link(payload) {
        Some(link) => head
            .tag(&format!("<a href=\"{}\">", href(link)))
            .text(&title(payload))
            .tag("</a>"),
        None => head.text(&title(payload)),
    };
    head.tag("</b>").text("\n").text(&about(payload));
    head
}

/// The story's link, if Telegram opens it: a web address, not too long to be cut.
fn web_link(payload: &AlertPayload) -> Option<&str> {
    shown_link(payload).filter(|link| {
        let scheme = link.split_once(':').map(|(scheme, _)| scheme);
        scheme.is_some_and(|scheme| {
            scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")
        })
    })
}

/// `url` in a quoted `href`: characters that would end it or that a URL may not hold
/// percent-encoded (they mean the same to the site), and `&` as the entity.
fn href(url: &str) -> String {
    let mut target = String::with_capacity(url.len());
    for c in url.chars() {
        match c {
            '"' | '<' | '>' | ' ' | '`' => target.push_str(&format!("%{:02X}", u32::from(c))),
            '&' => target.push_str("&amp;"),
            c if c.is_control() => {}
            c => target.push(c),
        }
    }
    target
}

fn units(text: &str) -> usize {
    text.encode_utf16().count()
}
