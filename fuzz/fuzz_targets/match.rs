//! The matcher on arbitrary text against a fixed rule set with CJK names, a case-sensitive
//! company, exclusions, context words and field restrictions. Never a panic, snippets are
//! short, and `find` and `explain` (two code paths over the same hits) always agree.
#![no_main]

use std::sync::OnceLock;

use feedhound::matcher::{CompanyRule, EntryText, Matcher, Verdict};
use feedhound::model::Field;
use libfuzzer_sys::fuzz_target;

fn rule(name: &str, aliases: &[&str]) -> CompanyRule {
    CompanyRule {
        name: name.to_owned(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        case_sensitive: false,
        exclude: Vec::new(),
        require_any: Vec::new(),
        fields: Field::ALL.to_vec(),
    }
}

fn matcher() -> &'static Matcher {
    static MATCHER: OnceLock<Matcher> = OnceLock::new();
    MATCHER.get_or_init(|| {
        let rules = vec![
            rule("Xiaomi", &["Xiaomi Corp", "小米", "Redmi", "ΣΑΜΣΩΝ"]),
            CompanyRule {
                case_sensitive: true,
                exclude: vec!["apple pie".into(), "Big Apple".into()],
                require_any: vec!["iPhone".into(), "Tim Cook".into()],
                ..rule("Apple", &["AAPL"])
            },
            rule("Samsung", &["삼성", "Samsung Electronics"]),
            rule("Tata", &[]),
            rule("Tata Motors", &["タタ"]),
            CompanyRule {
                exclude: vec!["metadata".into(), "Meta-analysis".into()],
                fields: vec![Field::Title],
                ..rule("Meta", &["Meta Platforms"])
            },
            rule("İstanbul Air", &["straße AG"]),
        ];
        Matcher::new(&rules).expect("the fixed rules compile")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Two 0x1F separators split the input into title, summary and content.
    let mut parts = text.splitn(3, '\u{1f}');
    let entry = EntryText {
        title: parts.next().unwrap_or(""),
        summary: parts.next().unwrap_or(""),
        content: parts.next().unwrap_or(""),
    };
    let matcher = matcher();
    let mentions = matcher.find(&entry);
    let explanations = matcher.explain(&entry);
    let flagged: Vec<_> = explanations.iter().filter(|e| e.flagged).collect();
    assert_eq!(
        mentions.len(),
        flagged.len(),
        "{mentions:?} vs {explanations:?}"
    );
    for (mention, explanation) in mentions.iter().zip(flagged) {
        assert_eq!(mention.company, explanation.company);
        let kept: Vec<_> = explanation
            .hits
            .iter()
            .filter(|h| h.verdict == Verdict::Kept)
            .collect();
        assert_eq!(mention.count as usize, kept.len());
        let mut fields: Vec<Field> = kept.iter().map(|h| h.field).collect();
        fields.dedup();
        assert_eq!(mention.fields, fields);
        // 120 characters around the hit plus two ellipses; a hit longer than that is kept whole.
        let longest_hit = kept
            .iter()
            .map(|h| h.matched.chars().count())
            .max()
            .unwrap_or(0);
        assert!(
            mention.snippet.chars().count() <= 122 + longest_hit,
            "{:?}",
            mention.snippet
        );
        for hit in kept {
            let field_text = match hit.field {
                Field::Title => entry.title,
                Field::Summary => entry.summary,
                Field::Content => entry.content,
            };
            assert_eq!(
                &field_text[hit.offset..hit.offset + hit.matched.len()],
                hit.matched
            );
        }
    }
});
