//! The matcher against real text: the Xiaomi story from the issue, and document-level precision
//! and recall against two human-annotated corpora (GUM news, WNUT 2017).
//!
//! How the corpora become a matcher test:
//! - A *document* is a GUM file (one news article) or a WNUT post (a tweet, comment…), its tokens
//!   joined back into plain text.
//! - The *company list* is every annotated organisation span (GUM `organization`, WNUT
//!   `corporation`) across the corpus, with a leading "the" dropped. For GUM, only proper names
//!   are kept: every word capitalised except the connectors "of", "for", "and", "at", "the", "&",
//!   and not a capitalised pronoun or a generic word ("We", "Police", "the Church"), because
//!   GUM also annotates "the organization" or "schools", which nobody would track. For WNUT,
//!   whose posts write brands in lowercase, every span of three or more characters but "The" is
//!   kept (shorter ones are mostly "RT" retweet markers and slips). Names written
//!   all in capitals ("WHO", "NASA", "CNN") are configured `case_sensitive`, as a user would
//!   do for acronyms that are also English words. Names equal but for case are configured once.
//! - *Gold*: a document mentions a company when one of its annotated spans, normalised the same
//!   way, equals the company name ignoring case. *Predicted*: [`Matcher::find`] flags it.
//! - Precision and recall are over (document, company) pairs.
//!
//! The misses that remain are mostly the annotation's, not the matcher's: a country annotated as
//! an organisation in one article ("North Korea" the state) is a place elsewhere, and a brand in a
//! tweet is often an ordinary word ("Apple", "United", "lush"). The floors asserted below sit a
//! few points under the measured figures (printed by the test) so that a regression in the rules
//! (boundaries, case, possessives) fails while the corpus noise does not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use feedhound::matcher::{CompanyRule, EntryText, Matcher};

fn shared(path: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/")).join(path)
}

fn company(name: &str) -> CompanyRule {
    CompanyRule {
        name: name.to_string(),
        aliases: Vec::new(),
        case_sensitive: false,
        exclude: Vec::new(),
        require_any: Vec::new(),
        fields: Vec::new(),
    }
}

#[test]
fn xiaomi_story_is_flagged_for_xiaomi_and_samsung_but_not_apple() {
    let path = shared("examples/story-xiaomi-global.txt");
    let Ok(story) = std::fs::read_to_string(&path) else {
        eprintln!("skipped: {} is absent", path.display());
        return;
    };
    let text: String = story.split_whitespace().collect::<Vec<_>>().join(" ");
    let rules = [
        CompanyRule {
            aliases: ["Xiaomi Corp", "小米", "Redmi", "POCO"]
                .map(String::from)
                .into(),
            ..company("Xiaomi")
        },
        company("Samsung"),
        CompanyRule {
            case_sensitive: true,
            exclude: ["apple pie", "Big Apple", "Apple Records"]
                .map(String::from)
                .into(),
            require_any: [
                "iPhone",
                "iPad",
                "Mac",
                "Tim Cook",
                "Cupertino",
                "App Store",
            ]
            .map(String::from)
            .into(),
            ..company("Apple")
        },
    ];
    let matcher = Matcher::new(&rules).unwrap();
    let entry = EntryText {
        content: &text,
        ..EntryText::default()
    };
    let mentions = matcher.find(&entry);
    let flagged: Vec<&str> = mentions.iter().map(|m| &*m.company).collect();
    assert_eq!(flagged, ["Xiaomi", "Samsung"]);
    assert_eq!(mentions[0].count, 9, "every \"Xiaomi\" in the story");
    assert_eq!(mentions[1].count, 2);
    assert!(mentions[1].snippet.contains("Samsung has long had"));
}

/// One annotated document: its plain text and the organisation spans marked in it.
struct Document {
    text: String,
    spans: Vec<String>,
}

/// Reads CoNLL-style `token<TAB>…<TAB>tag` lines. `is_org(tag)` says whether a token belongs to an
/// organisation span and whether it starts a new one (`Some(true)`); `split_docs_on_blank` makes
/// each blank-line-separated block a document (WNUT), otherwise the whole file is one (GUM).
fn read_conll(
    text: &str,
    split_docs_on_blank: bool,
    is_org: impl Fn(&str, bool) -> Option<bool>,
) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut tokens: Vec<&str> = Vec::new();
    let mut spans = Vec::new();
    let mut span: Vec<&str> = Vec::new();
    let flush_span = |span: &mut Vec<&str>, spans: &mut Vec<String>| {
        if !span.is_empty() {
            spans.push(span.join(" "));
            span.clear();
        }
    };
    for line in text.lines() {
        let mut parts = line.split('\t');
        let (Some(token), Some(tag)) = (parts.next(), parts.next_back()) else {
            flush_span(&mut span, &mut spans);
            if split_docs_on_blank && !tokens.is_empty() {
                docs.push(Document {
                    text: detokenize(&tokens),
                    spans: std::mem::take(&mut spans),
                });
                tokens.clear();
            }
            continue;
        };
        tokens.push(token);
        match is_org(tag, !span.is_empty()) {
            Some(true) => {
                flush_span(&mut span, &mut spans);
                span.push(token);
            }
            Some(false) => span.push(token),
            None => flush_span(&mut span, &mut spans),
        }
    }
    flush_span(&mut span, &mut spans);
    if !tokens.is_empty() {
        docs.push(Document {
            text: detokenize(&tokens),
            spans,
        });
    }
    docs
}

/// Joins tokens the way the text was written: no space before closing punctuation and clitics.
fn detokenize(tokens: &[&str]) -> String {
    let mut text = String::new();
    for token in tokens {
        let glued = matches!(
            *token,
            "," | "." | ";" | ":" | "!" | "?" | ")" | "%" | "'s" | "’s" | "n't" | "'"
        );
        if !text.is_empty() && !glued && !text.ends_with(['(', '$']) {
            text.push(' ');
        }
        text.push_str(token);
    }
    text
}

fn strip_the(span: &str) -> &str {
    span.strip_prefix("the ")
        .or_else(|| span.strip_prefix("The "))
        .unwrap_or(span)
}

fn is_proper_name(name: &str) -> bool {
    const CONNECTORS: [&str; 6] = ["of", "for", "and", "at", "the", "&"];
    const GENERIC: [&str; 12] = [
        "we",
        "they",
        "it",
        "police",
        "church",
        "government",
        "administration",
        "court",
        "crown",
        "north",
        "south",
        "organization",
    ];
    !GENERIC.contains(&name.to_lowercase().as_str())
        && name.split(' ').all(|word| {
            CONNECTORS.contains(&word) || word.chars().next().is_some_and(char::is_uppercase)
        })
}

fn is_acronym(name: &str) -> bool {
    name.chars().filter(|c| c.is_alphabetic()).count() >= 2 && !name.chars().any(char::is_lowercase)
}

struct Scores {
    precision: f64,
    recall: f64,
    f1: f64,
}

/// Builds the company list from the annotated spans and scores the matcher over the documents.
fn evaluate(corpus: &str, docs: &[Document], keep_name: impl Fn(&str) -> bool) -> Scores {
    // Lowercased name → the spelling seen first, so names equal but for case are one company.
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for span in docs.iter().flat_map(|d| &d.spans) {
        let name = strip_the(span);
        if name.chars().count() >= 2 && keep_name(name) {
            names
                .entry(name.to_lowercase())
                .or_insert_with(|| name.to_string());
        }
    }
    let rules: Vec<CompanyRule> = names
        .values()
        .map(|name| CompanyRule {
            case_sensitive: is_acronym(name),
            ..company(name)
        })
        .collect();
    let matcher = Matcher::new(&rules).unwrap();

    let (mut true_pos, mut false_pos, mut false_neg) = (0u32, 0u32, 0u32);
    // Error kind and company → number of documents, to print the worst offenders.
    let mut errors: BTreeMap<(&str, String), u32> = BTreeMap::new();
    for doc in docs {
        let gold: BTreeSet<String> = doc
            .spans
            .iter()
            .map(|s| strip_the(s).to_lowercase())
            .filter(|s| names.contains_key(s))
            .collect();
        let entry = EntryText {
            content: &doc.text,
            ..EntryText::default()
        };
        let predicted: BTreeSet<String> = matcher
            .find(&entry)
            .iter()
            .map(|m| m.company.to_lowercase())
            .collect();
        true_pos += gold.intersection(&predicted).count() as u32;
        for name in predicted.difference(&gold) {
            false_pos += 1;
            *errors.entry(("false positive", name.clone())).or_default() += 1;
        }
        for name in gold.difference(&predicted) {
            false_neg += 1;
            *errors.entry(("missed", name.clone())).or_default() += 1;
        }
    }
    let precision = f64::from(true_pos) / f64::from(true_pos + false_pos);
    let recall = f64::from(true_pos) / f64::from(true_pos + false_neg);
    let f1 = 2.0 * precision * recall / (precision + recall);
    println!(
        "{corpus}: {} documents, {} companies, tp {true_pos} fp {false_pos} fn {false_neg}: \
         precision {precision:.3} recall {recall:.3} F1 {f1:.3}",
        docs.len(),
        rules.len(),
    );
    let mut errors: Vec<_> = errors.into_iter().collect();
    errors.sort_by_key(|&(_, documents)| std::cmp::Reverse(documents));
    for ((kind, name), documents) in errors.iter().take(15) {
        println!("  {kind} {name:?} in {documents} documents");
    }
    Scores {
        precision,
        recall,
        f1,
    }
}

#[test]
fn gum_news_organisations_are_found_with_high_precision_and_recall() {
    let dir = shared("corpus/mentions/gum-news");
    let Ok(listing) = std::fs::read_dir(&dir) else {
        eprintln!("skipped: {} is absent", dir.display());
        return;
    };
    let mut paths: Vec<PathBuf> = listing
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tsv"))
        .collect();
    paths.sort();
    // GUM marks entity types without B-/I- prefixes: a run of `organization` tokens is one span.
    let docs: Vec<Document> = paths
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            read_conll(&text, false, |tag, _| {
                (tag == "organization").then_some(false)
            })
        })
        .collect();
    assert_eq!(docs.len(), 21);
    let scores = evaluate("gum-news", &docs, is_proper_name);
    assert!(
        scores.precision >= 0.85,
        "precision {:.3}",
        scores.precision
    );
    assert!(scores.recall >= 0.9, "recall {:.3}", scores.recall);
    assert!(scores.f1 >= 0.88, "F1 {:.3}", scores.f1);
}

#[test]
fn wnut17_corporations_are_found_in_noisy_posts() {
    let dir = shared("corpus/mentions/wnut17");
    let files = [
        "wnut17train.conll",
        "emerging.dev.conll",
        "emerging.test.annotated",
    ];
    let mut docs = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
            eprintln!("skipped: {} is absent", dir.join(file).display());
            return;
        };
        docs.extend(read_conll(&text, true, |tag, _| match tag {
            "B-corporation" => Some(true),
            "I-corporation" => Some(false),
            _ => None,
        }));
    }
    // Lowercase brands are real in posts ("twitter"), so no capitalisation rule here; but spans
    // of one or two letters ("RT", "fb") and a bare "The" are annotation slips or retweet markers.
    let scores = evaluate("wnut17", &docs, |name| {
        name.chars().count() >= 3 && !name.eq_ignore_ascii_case("the")
    });
    assert!(scores.precision >= 0.5, "precision {:.3}", scores.precision);
    assert!(scores.recall >= 0.9, "recall {:.3}", scores.recall);
}
