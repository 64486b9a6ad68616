//! Cards for a Microsoft Teams channel or chat, posted to a webhook of Teams' Workflows ("When a
//! Teams webhook request is received"): a message whose attachment is an Adaptive Card
//! (version 1.4), the story's title over the companies, where and when, each company's snippet
//! below, and a button that opens the story.
//!
//! A feed's text goes in `TextRun`s, which Teams shows as written: a `TextBlock` would read it
//! as Markdown, whose escapes Teams' clients do not read alike (AdaptiveCards issues #4677 and
//! #5590), so a headline could hide a link behind words of its own. A mention needs an entity
//! the card declares, so `<at>` in a headline pings nobody. Links are buttons
//! (`Action.OpenUrl`): a link on a run of text is reported to open in some clients only
//! (AdaptiveCards issues #5804 and #9100). Teams refuses a message of more than 28 KB, so a
//! card is kept within [`MESSAGE_BYTES`] of JSON as it is written.

use serde_json::{Value, json};

use super::plain::{about, line, title, web_link};
use super::{
    NAME_CHARS, SNIPPET_CHARS, Sending, digest_count, fitting_parts, longest_digest_count,
    more_companies,
};
use crate::store::AlertPayload;

/// Most bytes of one POST's JSON. Teams refuses a message over 28 KB ("Limits and
/// specifications for Microsoft Teams"), counted as Teams holds it, with framing of its own
/// around the card: 8 KB is left for that.
const MESSAGE_BYTES: usize = 20_000;

/// One alert: the story's head, the text around each company's mention (as many as fit), and
/// a button to the story.
pub fn single(payload: &AlertPayload) -> Sending {
    let link = web_link(payload);
    let actions: Vec<Value> = link.iter().map(|link| open_button(link)).collect();
    let head = head(payload);
    let total = payload.companies.len();
    let mut mentions = Vec::new();
    for (shown, company) in payload.companies.iter().enumerate() {
        mentions.push(text(vec![
            json!({
                "type": "TextRun",
                "text": line(&company.name, NAME_CHARS),
                "weight": "Bolder",
            }),
            json!({
                "type": "TextRun",
                "text": format!(": {}", line(&company.snippet, SNIPPET_CHARS)),
            }),
        ]));
        // Unless this is the last company, one after it may not fit: room is kept for the line
        // that would count the rest.
        let count_line = (shown + 1 < total).then(|| more_line(total - shown - 1));
        let card = message(alert_body(&head, &mentions, count_line), &actions);
        if card.to_string().len() > MESSAGE_BYTES {
            mentions.pop();
            let card = message(
                alert_body(&head, &mentions, Some(more_line(total - shown))),
                &actions,
            );
            return sending(payload, &card);
        }
    }
    sending(
        payload,
        &message(alert_body(&head, &mentions, None), &actions),
    )
}

fn sending(payload: &AlertPayload, message: &Value) -> Sending {
    Sending {
        idempotency_key: payload.idempotency_key.clone(),
        body: message.to_string().into_bytes(),
        ..Sending::default()
    }
}

/// A digest: a line that counts the stories, then each story's head with a button to it, in
/// as few cards as hold them, each with how many stories it carries. Their keys are the
/// caller's to set.
pub fn digest(payloads: &[&AlertPayload]) -> Vec<(usize, Sending)> {
    let stories: Vec<Value> = payloads
        .iter()
        .map(|payload| {
            let mut items = head(payload);
            if let Some(link) = web_link(payload) {
                items.push(json!({ "type": "ActionSet", "actions": [open_button(&link)] }));
            }
            json!({ "type": "Container", "separator": true, "spacing": "Medium", "items": items })
        })
        .collect();
    let digest_card = |count: String, stories: &[Value]| {
        let mut body = vec![text(vec![
            json!({ "type": "TextRun", "text": count, "weight": "Bolder" }),
        ])];
        body.extend_from_slice(stories);
        message(body, &[])
    };
    let parts = fitting_parts(&stories, |part| {
        digest_card(longest_digest_count(), part).to_string().len() <= MESSAGE_BYTES
    });
    let total = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(index, part)| {
            let count = digest_count(part.len(), index + 1, total);
            let sending = Sending {
                body: digest_card(count, &stories[part.clone()])
                    .to_string()
                    .into_bytes(),
                ..Sending::default()
            };
            (part.len(), sending)
        })
        .collect()
}

/// What says which story an alert is about: what was newly named, the title, then the
/// companies, where and when.
fn head(payload: &AlertPayload) -> Vec<Value> {
    let mut head = Vec::new();
    if let Some(company) = &payload.newly_named {
        head.push(text(vec![json!({
            "type": "TextRun",
            "text": format!("Now also names {}", line(company, NAME_CHARS)),
            "italic": true,
        })]));
    }
    head.push(text(vec![json!({
        "type": "TextRun",
        "text": title(payload),
        "weight": "Bolder",
        "size": "Medium",
    })]));
    let mut where_and_when = text(vec![json!({
        "type": "TextRun",
        "text": about(payload),
        "isSubtle": true,
    })]);
    where_and_when["spacing"] = "None".into();
    head.push(where_and_when);
    head
}

/// One alert's card body: its head, then the mentions set apart, then the count of the
/// companies left out, if any.
fn alert_body(head: &[Value], mentions: &[Value], count_line: Option<Value>) -> Vec<Value> {
    let mut body = head.to_vec();
    if !mentions.is_empty() {
        body.push(json!({ "type": "Container", "style": "emphasis", "items": mentions }));
    }
    body.extend(count_line);
    body
}

/// The line that says how many companies a card left out.
fn more_line(left_out: usize) -> Value {
    text(vec![json!({
        "type": "TextRun",
        "text": more_companies(left_out).trim_start(),
        "isSubtle": true,
    })])
}

/// Runs of text, as a block: shown as written, never as Markdown.
fn text(runs: Vec<Value>) -> Value {
    json!({ "type": "RichTextBlock", "inlines": runs })
}

fn open_button(link: &str) -> Value {
    json!({ "type": "Action.OpenUrl", "title": "Open the story", "url": link })
}

/// The message a Workflows webhook takes: a card with `body` and `actions`, as wide as the
/// channel lets it be.
fn message(body: Vec<Value>, actions: &[Value]) -> Value {
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": { "width": "Full" },
        "body": body,
    });
    if !actions.is_empty() {
        card["actions"] = actions.into();
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AlertFormat::Teams;
    use crate::notify::message::tests::{digest_stories, payload};
    use crate::notify::message::{alone, digest as digest_of, single as single_of};

    /// The card a POST carries, after checking the message around it.
    fn card_in(body: &[u8]) -> Value {
        let message: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(message["type"], "message");
        let attachment = &message["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(attachment["content"]["version"], "1.4");
        attachment["content"].clone()
    }

    /// The types of every element and action in `value`, however deep.
    fn types(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                if let Some(Value::String(kind)) = object.get("type") {
                    found.push(kind.clone());
                }
                object.values().for_each(|inner| types(inner, found));
            }
            Value::Array(items) => items.iter().for_each(|inner| types(inner, found)),
            _ => {}
        }
    }

    /// What the card shows, a line per block of text, in order, however deep.
    fn lines(value: &Value, shown: &mut Vec<String>) {
        match value {
            Value::Object(object) if object.get("type") == Some(&json!("RichTextBlock")) => {
                let runs = object["inlines"].as_array().unwrap();
                shown.push(
                    runs.iter()
                        .map(|run| run["text"].as_str().unwrap())
                        .collect(),
                );
            }
            Value::Object(object) => object.values().for_each(|inner| lines(inner, shown)),
            Value::Array(items) => items.iter().for_each(|inner| lines(inner, shown)),
            _ => {}
        }
    }

    fn shown(card: &Value) -> Vec<String> {
        let mut shown = Vec::new();
        lines(&card["body"], &mut shown);
        shown
    }

    #[test]
    fn a_card_shows_the_feeds_words_as_written_and_a_button_opens_the_story() {
        let story = payload(
            "**Xiaomi** & [Samsung](https://evil.example) sign <at>everyone</at>",
            "https://news.example/deal?id=1&ref=\"rss\" x",
            &[
                ("Samsung", "a price _well_ below\nsays \\jack"),
                ("Xiaomi", "The Xiaomi Pad"),
            ],
        );
        let card = card_in(&single_of(Teams, &story).unwrap().body);
        assert_eq!(
            shown(&card),
            [
                "**Xiaomi** & [Samsung](https://evil.example) sign <at>everyone</at>",
                "Samsung, Xiaomi · Harbor Tech Daily and 1 more · 2026-11-23 08:15 UTC",
                "Samsung: a price _well_ below says \\jack",
                "Xiaomi: The Xiaomi Pad",
            ]
        );
        let mut found = Vec::new();
        types(&card, &mut found);
        assert!(
            !found.iter().any(|kind| kind == "TextBlock"),
            "no text is read as Markdown: {found:?}"
        );
        assert_eq!(
            card["actions"],
            json!([{
                "type": "Action.OpenUrl",
                "title": "Open the story",
                "url": "https://news.example/deal?id=1&ref=%22rss%22%20x",
            }])
        );
        assert!(
            card.get("msteams")
                .is_some_and(|teams| teams["width"] == "Full")
        );
        assert_eq!(
            alone(Teams, true, &story).unwrap().body,
            single_of(Teams, &story).unwrap().body,
            "a digest target's alert alone (a retry, a test) is a card of its own"
        );

        let mut renamed = payload("", "javascript:alert(1)", &[("Globex", "Globex too")]);
        renamed.newly_named = Some("Globex".into());
        let card = card_in(&single_of(Teams, &renamed).unwrap().body);
        assert_eq!(
            card.get("actions"),
            None,
            "a button opens only a web address"
        );
        assert_eq!(
            shown(&card)[..2],
            ["Now also names Globex", "(untitled story)"]
        );
    }

    /// The message a card would be with one more of its (identical) mentions shown, and the
    /// line that counts the rest changed to match: its length in bytes.
    fn with_one_more(body: &[u8]) -> usize {
        let mut message: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            message.to_string().as_bytes(),
            body,
            "written as serde_json writes"
        );
        let blocks = message["attachments"][0]["content"]["body"]
            .as_array_mut()
            .unwrap();
        let count_line = blocks.pop().unwrap();
        let counted = count_line["inlines"][0]["text"].as_str().unwrap();
        let left_out: usize = counted[2..].split(' ').next().unwrap().parse().unwrap();
        if left_out > 1 {
            blocks.push(more_line(left_out - 1));
        }
        let mentions = blocks
            .iter_mut()
            .find(|block| block["type"] == "Container")
            .unwrap()["items"]
            .as_array_mut()
            .unwrap();
        mentions.push(mentions[0].clone());
        message.to_string().len()
    }

    /// Teams refuses a message over 28 KB. Snippets of many lengths, of text JSON escapes and
    /// of characters of 3 and 4 bytes, put the last company's line at many distances from
    /// [`MESSAGE_BYTES`]; each card is as full as it lets it be, and counts the rest. A story
    /// with one company more than fit shows them all when they fit without that count.
    #[test]
    fn a_card_keeps_within_what_teams_takes_and_fills_it() {
        let name = "小\"".repeat(50);
        let mention = format!("{name}: ");
        let (mut all_shown, mut one_left_out) = (0, 0);
        for length in (1..=300).step_by(7) {
            let snippet: String = "米\\𝕏a\"".chars().cycle().take(length).collect();
            let story = |companies: usize| {
                let companies = vec![(name.as_str(), snippet.as_str()); companies];
                payload(&"标".repeat(1000), "https://news.example/a", &companies)
            };
            let mentions_in = |body: &[u8]| {
                let shown = shown(&card_in(body));
                let mentions = shown
                    .iter()
                    .filter(|line| line.starts_with(&mention))
                    .count();
                (mentions, shown.last().unwrap().clone())
            };
            let crowded = single_of(Teams, &story(100)).unwrap().body;
            let (fitted, last_line) = mentions_in(&crowded);
            assert_eq!(last_line, format!("(+{} more companies)", 100 - fitted));
            assert!(
                crowded.len() <= MESSAGE_BYTES && with_one_more(&crowded) > MESSAGE_BYTES,
                "{length}: {fitted} companies in {} bytes",
                crowded.len()
            );

            let edge = single_of(Teams, &story(fitted + 1)).unwrap().body;
            assert!(edge.len() <= MESSAGE_BYTES, "{length}");
            match mentions_in(&edge) {
                (shown, _) if shown == fitted + 1 => all_shown += 1,
                (shown, last_line) => {
                    assert_eq!((shown, last_line.as_str()), (fitted, "(+1 more company)"));
                    assert!(with_one_more(&edge) > MESSAGE_BYTES, "{length}");
                    one_left_out += 1;
                }
            }
        }
        assert!(
            all_shown > 0 && one_left_out > 0,
            "{all_shown}, {one_left_out}"
        );
    }

    /// A digest fills each card and loses no story: each comes once, in order, across the
    /// parts. Titles and links of lengths in many patterns put the parts' ends at many
    /// distances from [`MESSAGE_BYTES`].
    #[test]
    fn a_digest_carries_every_story_once_in_as_few_cards_as_fit() {
        for step in 1..=40 {
            let stories = digest_stories(|n| {
                (
                    format!("Story {n} {}", "\"𝕏".repeat(n * step % 95)),
                    format!("https://news.example/{n}?{}", "q".repeat(n * step % 400)),
                )
            });
            let all: Vec<&AlertPayload> = stories.iter().collect();
            let parts = digest_of(Teams, &all).unwrap();
            assert!(parts.len() > 1, "{step}: {} parts", parts.len());
            let mut carried = Vec::new();
            for (index, (count, sending)) in parts.iter().enumerate() {
                assert!(sending.body.len() <= MESSAGE_BYTES, "{step}, part {index}");
                let card = card_in(&sending.body);
                let shown = shown(&card);
                assert_eq!(shown[0], digest_count(*count, index + 1, parts.len()));
                let titles: Vec<&String> = shown
                    .iter()
                    .filter(|line| line.starts_with("Story "))
                    .collect();
                assert_eq!(titles.len(), *count);
                let stories_in_card = card["body"].as_array().unwrap()[1..].to_vec();
                for (title, story) in titles.iter().zip(&stories_in_card) {
                    let number: usize = title[6..].split(' ').next().unwrap().parse().unwrap();
                    let link = &story["items"].as_array().unwrap().last().unwrap()["actions"][0];
                    assert_eq!(link["url"], stories[number].story.link.as_deref().unwrap());
                    carried.push(number);
                }
                if let Some((_, next)) = parts.get(index + 1) {
                    let next_story = &card_in(&next.body)["body"][1];
                    // The count line is given room as if it were the longest.
                    let count_room = longest_digest_count().len()
                        - digest_count(*count, index + 1, parts.len()).len();
                    let with_next =
                        sending.body.len() + count_room + 1 + next_story.to_string().len();
                    assert!(with_next > MESSAGE_BYTES, "{step}, part {index} had room");
                }
            }
            assert_eq!(carried, (0..50).collect::<Vec<_>>(), "{step}");
        }
    }
}
