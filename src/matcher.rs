//! Company mention matching: plain entry text in, [`Mention`]s out.
//!
//! Built once from the validated company rules; pure afterwards (no I/O, no SQL, no knowledge of
//! feeds). The design decisions, and why:
//!
//! - **One automaton for everything.** Every name, alias, exclusion phrase and `require_any` word
//!   of every company is compiled into a single Aho–Corasick automaton, so scanning an entry costs
//!   one pass over its text whatever the number of companies. Patterns that fold to the same
//!   string are stored once and carry a list of *meanings* (which company, which role).
//! - **Case-folded haystack, exact-case check afterwards.** The automaton holds the patterns
//!   lowercased with Unicode rules and runs over the entry text lowercased the same way (with a
//!   map from folded offsets back to the original text, so snippets and offsets stay right).
//!   For `case_sensitive` companies a hit is then compared with the configured spelling on the
//!   original text. One automaton over one folded text is cheaper than two automata over two texts,
//!   and it keeps all hits in one coordinate system.
//! - **Overlapping search, resolved afterwards.** Leftmost-longest semantics would let the longer
//!   pattern hide the shorter one at the same start ("apple pie" hides "apple"), which is what an
//!   exclusion wants, but it would also let a longer pattern that is later rejected (wrong case,
//!   no word boundary, another company's exclusion, a context word) hide a real mention. So the
//!   automaton reports every occurrence and the rules below decide, per hit:
//!   1. the company must search that field;
//!   2. `case_sensitive` companies need the exact configured spelling;
//!   3. whole words: the characters around the hit must not be letters, digits, `_` or combining
//!      marks. Names that begin/end in a script written without spaces (Han, Kana, Thai …) are not
//!      checked on that side, and such a neighbour counts as a boundary ("在Apple发布");
//!   4. a hit inside one of the company's own exclusion phrases is discarded;
//!   5. a hit inside a longer accepted hit of another name (another company's, or a longer alias
//!      of the same company) is discarded: with "Tata" and "Tata Motors" both tracked, the text
//!      "Tata Motors" is about Tata Motors, and "Xiaomi Corp" counts once for Xiaomi, not twice.
//!
//!   Finally a company with `require_any` words counts only if one of them occurs, as a whole word,
//!   in any field of the entry.
//!
//! Case folding is `char::to_lowercase` plus final sigma → sigma, on text and patterns composed
//! to NFC (an accent typed as a combining mark matches the precomposed letter); full case folding
//! ("ß" = "ss") is not attempted.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use anyhow::Context as _;
use icu_normalizer::ComposingNormalizerBorrowed;
use icu_normalizer::properties::{
    CanonicalCombiningClassMapBorrowed, CanonicalCompositionBorrowed,
    CanonicalDecompositionBorrowed, Decomposed,
};
use unicode_script::{Script, UnicodeScript};

use crate::model::{Field, Mention};

mod scan;
use scan::Patterns;

/// One tracked company's rule, already validated by `config`
/// (non-empty unique names, no alias shared by two companies).
#[derive(Debug, Clone)]
pub struct CompanyRule {
    pub name: String,
    pub aliases: Vec<String>,
    pub case_sensitive: bool,
    /// Phrases that contain a name but do not mean the company ("apple pie").
    pub exclude: Vec<String>,
    /// When non-empty, the entry must also contain one of these for the company to count.
    pub require_any: Vec<String>,
    /// Fields searched; all of them when the config says nothing.
    pub fields: Vec<Field>,
}

/// Plain text of an entry's fields (empty string for a missing field).
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryText<'a> {
    pub title: &'a str,
    pub summary: &'a str,
    pub content: &'a str,
    /// The linked page's text (see `articles`); empty until it is fetched.
    pub article: &'a str,
}

impl<'a> EntryText<'a> {
    fn get(&self, field: Field) -> &'a str {
        match field {
            Field::Title => self.title,
            Field::Summary => self.summary,
            Field::Content => self.content,
            Field::Article => self.article,
        }
    }
}

/// Which way of matching stored mentions were found by. A change that can find other mentions
/// in the same text bumps it, and the daemon then re-matches stored entries as it does when the
/// rules change. 2: text and patterns composed to NFC.
pub const REVISION: u32 = 2;

/// Target length of [`Mention::snippet`] in characters, "…" excluded: about two lines of a
/// notification, enough to judge whether the hit is the company.
const SNIPPET_CHARS: usize = 120;

/// The compiled rules of all companies.
pub struct Matcher {
    automaton: Patterns,
    /// No hit spans more original-text bytes than this, so only hits starting this close
    /// before another can contain it (keeps resolving linear in the number of hits).
    max_hit_len: usize,
    /// Meanings of pattern `p` are `meanings[meaning_starts[p]..meaning_starts[p + 1]]`.
    meaning_starts: Vec<usize>,
    meanings: Vec<Meaning>,
    companies: Vec<Company>,
}

struct Company {
    name: Arc<str>,
    /// Indexed by `field_index`.
    searches: [bool; Field::ALL.len()],
    /// `require_any`, whitespace-normalised, for [`Explanation`].
    require_any: Vec<String>,
}

/// What one pattern means for one company.
struct Meaning {
    company: usize,
    role: Role,
    /// The configured text, whitespace-normalised (shown by `explain`, compared for exact case).
    phrase: Box<str>,
    /// The hit must have exactly this spelling (a `case_sensitive` company's name or context word).
    exact_case: bool,
    /// Whether the character before / after the hit must not continue a word.
    check_start: bool,
    check_end: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Name,
    Exclusion,
    Context,
}

impl Matcher {
    /// Compiles every company's patterns into one automaton. Patterns that are empty after
    /// whitespace normalisation are ignored: they would match everywhere.
    pub fn new(rules: &[CompanyRule]) -> anyhow::Result<Matcher> {
        let mut pattern_ids: HashMap<String, usize> = HashMap::new();
        let mut grouped: Vec<Vec<Meaning>> = Vec::new();
        let mut companies = Vec::with_capacity(rules.len());
        let mut add = |phrase: &str, meaning: Meaning| {
            let folded = fold(phrase);
            let id = *pattern_ids.entry(folded).or_insert_with(|| {
                grouped.push(Vec::new());
                grouped.len() - 1
            });
            grouped[id].push(meaning);
        };

        for (company, rule) in rules.iter().enumerate() {
            let names = std::iter::once(&rule.name).chain(&rule.aliases);
            let roles = names
                .map(|p| (p, Role::Name))
                .chain(rule.exclude.iter().map(|p| (p, Role::Exclusion)))
                .chain(rule.require_any.iter().map(|p| (p, Role::Context)));
            for (raw, role) in roles {
                let phrase = NFC.normalize(&normalize_whitespace(raw)).into_owned();
                let (Some(first), Some(last)) = (phrase.chars().next(), phrase.chars().last())
                else {
                    continue;
                };
                let meaning = Meaning {
                    company,
                    role,
                    exact_case: rule.case_sensitive && role != Role::Exclusion,
                    check_start: !is_spaceless_script(first),
                    // An exclusion may run into a longer word: "apple pie" also covers
                    // "apple pies", "Amazon rainforest" also "Amazon rainforests".
                    check_end: role != Role::Exclusion && !is_spaceless_script(last),
                    phrase: phrase.clone().into_boxed_str(),
                };
                add(&phrase, meaning);
            }
            let mut searches = [false; Field::ALL.len()];
            for &field in &rule.fields {
                searches[field_index(field)] = true;
            }
            if rule.fields.is_empty() {
                searches = [true; Field::ALL.len()];
            }
            companies.push(Company {
                name: Arc::from(rule.name.as_str()),
                searches,
                require_any: rule
                    .require_any
                    .iter()
                    .map(|w| normalize_whitespace(w))
                    .filter(|w| !w.is_empty())
                    .collect(),
            });
        }

        let mut patterns: Vec<(String, usize)> = pattern_ids.into_iter().collect();
        patterns.sort_unstable_by_key(|&(_, id)| id);
        let patterns: Vec<String> = patterns.into_iter().map(|(p, _)| p).collect();
        let automaton = Patterns::new(&patterns).context("building the company name automaton")?;

        let mut meaning_starts = Vec::with_capacity(grouped.len() + 1);
        let mut meanings = Vec::new();
        for group in grouped {
            meaning_starts.push(meanings.len());
            meanings.extend(group);
        }
        meaning_starts.push(meanings.len());

        // Lowercasing changes a character's length by at most a factor of 3 in UTF-8 (e.g. 'ı'
        // ↔ 'I'); 4 leaves room.
        let max_hit_len = automaton.max_pattern_len() * 4;
        Ok(Matcher {
            automaton,
            max_hit_len,
            meaning_starts,
            meanings,
            companies,
        })
    }

    /// Heap bytes held by the compiled automaton (worth logging at start-up with many companies).
    pub fn memory_usage(&self) -> usize {
        self.automaton.memory_usage()
    }

    /// Every company the entry mentions, in configuration order.
    pub fn find(&self, text: &EntryText<'_>) -> Vec<Mention> {
        SCRATCH.with_borrow_mut(|scratch| {
            self.collect_hits(text, false, scratch);
            let hits = &scratch.hits;
            let mut mentions = Vec::new();
            for group in hits.chunk_by(|a, b| a.company == b.company) {
                let counted = || group.iter().filter(|h| h.counts(&self.meanings));
                let company = &self.companies[group[0].company];
                let context_ok = company.require_any.is_empty()
                    || group
                        .iter()
                        .any(|h| self.meanings[h.meaning].role == Role::Context);
                let Some(first) = counted().next() else {
                    continue;
                };
                if !context_ok {
                    continue;
                }
                let mut fields = Vec::new();
                let mut count = 0;
                for hit in counted() {
                    count += 1;
                    if fields.last() != Some(&hit.field) {
                        fields.push(hit.field);
                    }
                }
                mentions.push(Mention {
                    company: company.name.clone(),
                    fields,
                    count,
                    snippet: snippet(text.get(first.field), first.start, first.end),
                });
            }
            mentions
        })
    }

    /// Why each company with at least one candidate name hit was or was not flagged, for
    /// `feedhound test-match`. Companies in configuration order. Slower than [`Matcher::find`]
    /// (it keeps and describes rejected hits); not for the polling path.
    pub fn explain(&self, text: &EntryText<'_>) -> Vec<Explanation> {
        SCRATCH.with_borrow_mut(|scratch| {
            self.collect_hits(text, true, scratch);
            let mut explanations = Vec::new();
            for group in scratch.hits.chunk_by(|a, b| a.company == b.company) {
                let company = &self.companies[group[0].company];
                let mut hits = Vec::new();
                let mut context_found = None;
                for hit in group {
                    let meaning = &self.meanings[hit.meaning];
                    match meaning.role {
                        Role::Name => hits.push(HitExplanation {
                            field: hit.field,
                            alias: meaning.phrase.to_string(),
                            matched: text.get(hit.field)[hit.start..hit.end].to_string(),
                            offset: hit.start,
                            verdict: self.verdict(hit.status),
                        }),
                        Role::Context if hit.status == Status::Kept && context_found.is_none() => {
                            context_found = Some((meaning.phrase.to_string(), hit.field));
                        }
                        Role::Context | Role::Exclusion => {}
                    }
                }
                if hits.is_empty() {
                    continue;
                }
                let require_any = match context_found {
                    _ if company.require_any.is_empty() => RequireAny::NotConfigured,
                    Some((word, field)) => RequireAny::Found { word, field },
                    None => RequireAny::Missing {
                        words: company.require_any.clone(),
                    },
                };
                let flagged = hits.iter().any(|h| h.verdict == Verdict::Kept)
                    && !matches!(require_any, RequireAny::Missing { .. });
                explanations.push(Explanation {
                    company: company.name.clone(),
                    flagged,
                    hits,
                    require_any,
                });
            }
            explanations
        })
    }

    fn verdict(&self, status: Status) -> Verdict {
        match status {
            Status::Kept => Verdict::Kept,
            Status::FieldNotSearched => Verdict::FieldNotSearched,
            Status::CaseDiffers => Verdict::CaseDiffers,
            Status::NoWordBoundary => Verdict::NoWordBoundary,
            Status::Excluded { by } => Verdict::Excluded {
                phrase: self.meanings[by].phrase.to_string(),
            },
            Status::InsideLonger { by } => {
                let meaning = &self.meanings[by];
                Verdict::InsideLongerMatch {
                    company: self.companies[meaning.company].name.clone(),
                    alias: meaning.phrase.to_string(),
                }
            }
        }
    }

    /// Fills `scratch.hits` with every candidate hit of every field, each with its status,
    /// sorted by company, then field, then position. Rejected hits are kept only when
    /// `keep_rejected`; exclusion and context hits that failed their own checks never are.
    fn collect_hits(&self, text: &EntryText<'_>, keep_rejected: bool, scratch: &mut Scratch) {
        let Scratch {
            folded,
            shifts,
            hits,
        } = scratch;
        hits.clear();
        for field in Field::ALL {
            let original = text.get(field);
            if original.is_empty() {
                continue;
            }
            fold_into(original, folded, shifts);
            self.automaton
                .for_each_occurrence(folded, |pattern, folded_range| {
                    let Some((start, end)) = to_original(shifts, folded_range) else {
                        return; // starts or ends inside one character's lowercase expansion
                    };
                    let range = self.meaning_starts[pattern]..self.meaning_starts[pattern + 1];
                    for (offset, meaning) in self.meanings[range.clone()].iter().enumerate() {
                        let company = &self.companies[meaning.company];
                        let status = if meaning.role != Role::Context
                            && !company.searches[field_index(field)]
                        {
                            Status::FieldNotSearched
                        } else if meaning.exact_case
                            && !same_spelling(&original[start..end], &meaning.phrase)
                        {
                            Status::CaseDiffers
                        } else if !on_word_boundaries(original, start, end, meaning) {
                            Status::NoWordBoundary
                        } else {
                            Status::Kept
                        };
                        let keep =
                            status == Status::Kept || keep_rejected && meaning.role == Role::Name;
                        if keep {
                            hits.push(Hit {
                                company: meaning.company,
                                meaning: range.start + offset,
                                field,
                                start,
                                end,
                                status,
                            });
                        }
                    }
                });
        }
        self.resolve(hits);
        hits.sort_unstable_by_key(|h| (h.company, h.field, h.start, h.end, h.meaning));
    }

    /// Applies rules 4 and 5 of the module header: exclusions, then containment in a longer hit.
    fn resolve(&self, hits: &mut [Hit]) {
        // By field and start, longest first: every hit that can contain hit `i` comes before the
        // first hit that starts after it.
        hits.sort_unstable_by_key(|h| (h.field, h.start, std::cmp::Reverse(h.end), h.meaning));
        let role = |h: &Hit| self.meanings[h.meaning].role;
        for i in 0..hits.len() {
            let hit = hits[i];
            if role(&hit) != Role::Name || hit.status != Status::Kept {
                continue;
            }
            let exclusion = self
                .earlier_within_reach(hits, i)
                .chain(same_start_tail(hits, i))
                .find(|x| {
                    x.company == hit.company
                        && role(x) == Role::Exclusion
                        && x.status == Status::Kept
                        && x.contains(&hit)
                });
            if let Some(x) = exclusion {
                hits[i].status = Status::Excluded { by: x.meaning };
            }
        }
        for i in 0..hits.len() {
            let hit = hits[i];
            if role(&hit) != Role::Name || hit.status != Status::Kept {
                continue;
            }
            // `Excluded` hits never shadow; a hit that is itself inside a longer one still does,
            // since the longer one then also contains `hit`.
            let passed = |x: &Hit| {
                matches!(x.status, Status::Kept | Status::InsideLonger { .. })
                    && role(x) == Role::Name
            };
            // Every earlier hit comes before `i` in the sort, so "same company, spelled alike"
            // counts once: the first of them.
            let longer = self.earlier_within_reach(hits, i).find(|x| {
                passed(x)
                    && x.contains(&hit)
                    && ((x.start, x.end) != (hit.start, hit.end) || x.company == hit.company)
            });
            if let Some(x) = longer {
                hits[i].status = Status::InsideLonger { by: x.meaning };
            }
        }
    }
}

impl Matcher {
    /// Hits sorted before `i` (same field) that start close enough to contain it, nearest first.
    fn earlier_within_reach<'h>(&self, hits: &'h [Hit], i: usize) -> impl Iterator<Item = &'h Hit> {
        let hit = hits[i];
        let reach = hit.end.saturating_sub(self.max_hit_len);
        hits[..i]
            .iter()
            .rev()
            .take_while(move |x| x.field == hit.field && x.start >= reach)
    }
}

/// Hits after `i` that start where hit `i` starts (shorter or equal length, by the sort order).
fn same_start_tail(hits: &[Hit], i: usize) -> impl Iterator<Item = &Hit> {
    let hit = hits[i];
    hits[i + 1..]
        .iter()
        .take_while(move |x| x.field == hit.field && x.start == hit.start)
}

/// One occurrence of one pattern meaning, in original-text byte offsets.
#[derive(Debug, Clone, Copy)]
struct Hit {
    company: usize,
    meaning: usize,
    field: Field,
    start: usize,
    end: usize,
    status: Status,
}

impl Hit {
    fn contains(&self, other: &Hit) -> bool {
        self.field == other.field && self.start <= other.start && other.end <= self.end
    }

    fn counts(&self, meanings: &[Meaning]) -> bool {
        self.status == Status::Kept && meanings[self.meaning].role == Role::Name
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Kept,
    FieldNotSearched,
    CaseDiffers,
    NoWordBoundary,
    Excluded { by: usize },
    InsideLonger { by: usize },
}

/// Per-thread buffers reused across entries, so that `find` allocates only its result.
#[derive(Default)]
struct Scratch {
    /// Valid UTF-8, kept as bytes: the automaton reads bytes, and checking it again would cost
    /// a pass over every field.
    folded: Vec<u8>,
    /// Where folding changed offsets (see [`Shift`]); empty when it kept every offset.
    shifts: Vec<Shift>,
    hits: Vec<Hit>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

fn field_index(field: Field) -> usize {
    match field {
        Field::Title => 0,
        Field::Summary => 1,
        Field::Content => 2,
        Field::Article => 3,
    }
}

/// The form in which the matcher compares a configured name with text: whitespace collapsed,
/// composed to NFC, lowercased, apostrophes straightened. Names of the same form are one
/// pattern, so `config` lets a form belong to one company only.
pub fn comparable_name(name: &str) -> String {
    fold(&normalize_whitespace(name))
}

/// Collapses whitespace runs to one space and trims: a configured "Tim  Cook" is "Tim Cook".
fn normalize_whitespace(phrase: &str) -> String {
    phrase.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn fold(phrase: &str) -> String {
    let (mut folded, mut shifts) = (Vec::new(), Vec::new());
    fold_into(phrase, &mut folded, &mut shifts);
    String::from_utf8(folded).expect("folding keeps UTF-8 valid")
}

/// Where folded offsets stop matching original ones. From `folded` on (up to the next shift),
/// folded text is the original text from `original` on, byte for byte in length; or, when
/// `indivisible`, the folded form of one unit of the original at `original`: a character whose
/// lowercase has another length ('İ' is "i" and a combining dot), or a character with the
/// combining marks that NFC composes with it ("e" and U+0301 are "é"). No hit may start or end
/// inside such a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shift {
    folded: usize,
    original: usize,
    indivisible: bool,
}

/// Composes text to NFC as it is folded, so a name matches whether a publisher's tools wrote
/// "é" as one character or as "e" and a combining accent (macOS file names, some CMSs).
const NFC: ComposingNormalizerBorrowed<'static> = ComposingNormalizerBorrowed::new_nfc();
const COMBINING_CLASS: CanonicalCombiningClassMapBorrowed<'static> =
    CanonicalCombiningClassMapBorrowed::new();
const COMPOSITION: CanonicalCompositionBorrowed<'static> = CanonicalCompositionBorrowed::new();
const DECOMPOSITION: CanonicalDecompositionBorrowed<'static> =
    CanonicalDecompositionBorrowed::new();

/// Lowercases `text` into `folded` with Unicode rules, in NFC, every whitespace character
/// becoming a space, and records in `shifts` where offsets change. Most text needs no shift at
/// all: ASCII and most accented letters keep their length when lowercased, and NFC changes
/// nothing in text already written composed.
fn fold_into(text: &str, out: &mut Vec<u8>, shifts: &mut Vec<Shift>) {
    shifts.clear();
    // Built as bytes: ASCII runs are copied and folded in place, a loop the compiler
    // vectorises. Pushing `char`s into a String one at a time was a tenth of a cold poll's CPU;
    // a map entry per byte, rather than per shift, 0.9% of its instructions.
    out.clear();
    let bytes = text.as_bytes();
    let mut at = 0;
    // Where the last character (or composed unit) starts, in `text` and in `out`: a combining
    // mark after it composes with it.
    let mut last_unit = (0, 0);
    loop {
        let run = ascii_prefix_len(&bytes[at..]);
        let from = out.len();
        out.extend_from_slice(&bytes[at..at + run]);
        fold_ascii(&mut out[from..]);
        at += run;
        if run > 0 {
            last_unit = (at - 1, out.len() - 1);
        }
        let Some(c) = text[at..].chars().next() else {
            break;
        };
        let width = c.len_utf8();
        let unit_start = match nfc_joins(text[..at].chars().next_back(), c) {
            NfcJoin::No => None,
            NfcJoin::WithPrevious => Some(last_unit),
            NfcJoin::FromHere => Some((at, out.len())),
        };
        if let Some(unit_start) = unit_start {
            let end = fold_composed(text, unit_start, at + width, out, shifts);
            last_unit = unit_start;
            at = end;
            continue;
        }
        let start = out.len();
        let chars = fold_char(c, out);
        if chars != 1 || out.len() - start != width {
            // A shift that would be followed at once by this one is not needed.
            if shifts.last().is_some_and(|s| s.folded == start) {
                shifts.pop();
            }
            shifts.push(Shift {
                folded: start,
                original: at,
                indivisible: true,
            });
            shifts.push(Shift {
                folded: out.len(),
                original: at + width,
                indivisible: false,
            });
        }
        last_unit = (at, start);
        at += width;
    }
}

/// Appends the folded form of `c` to `out`; returns how many characters that is.
fn fold_char(c: char, out: &mut Vec<u8>) -> usize {
    if c.is_whitespace() {
        out.push(b' ');
        return 1;
    }
    if is_apostrophe(c) {
        // Publishing tools curl apostrophes ("McDonald’s"); a name is written either way.
        out.push(b'\'');
        return 1;
    }
    let lowercase = c.to_lowercase();
    let chars = lowercase.len();
    for lower in lowercase {
        // Final sigma folds like sigma, so "ΣΑΜΣΩΝ" and "σαμσων" meet.
        let lower = if lower == 'ς' { 'σ' } else { lower };
        out.extend_from_slice(lower.encode_utf8(&mut [0; 4]).as_bytes());
    }
    chars
}

enum NfcJoin {
    /// NFC keeps `c` as it is.
    No,
    /// `c` is a combining mark, or composes with the character before it.
    WithPrevious,
    /// NFC replaces `c` itself (the ohm sign by omega).
    FromHere,
}

/// Characters NFC keeps and never joins to the one before: curly quotes, dashes and the other
/// general punctuation, CJK ideographs, Hangul syllables. The common ones above U+0300 in news
/// text, taken without a table lookup (a test checks the ranges against the tables).
const NFC_INERT: [std::ops::RangeInclusive<char>; 3] = [
    '\u{2002}'..='\u{206F}',
    '\u{4E00}'..='\u{9FFF}',
    '\u{AC00}'..='\u{D7A3}',
];

fn nfc_joins(previous: Option<char>, c: char) -> NfcJoin {
    // Below U+0300 every character is a starter that NFC keeps and that composes with nothing
    // before it; that is all of Latin-1 and the Latin extensions.
    if c < '\u{300}' || NFC_INERT.iter().any(|range| range.contains(&c)) {
        return NfcJoin::No;
    }
    if COMBINING_CLASS.get_u8(c) != 0
        || previous.is_some_and(|p| COMPOSITION.compose(p, c).is_some())
    {
        return NfcJoin::WithPrevious;
    }
    if nfc_keeps(c) {
        NfcJoin::No
    } else {
        NfcJoin::FromHere
    }
}

/// Whether NFC leaves `c`, standing alone, as it is.
fn nfc_keeps(c: char) -> bool {
    match DECOMPOSITION.decompose(c) {
        Decomposed::Default => true,
        Decomposed::Singleton(_) => false,
        // Composition exclusions decompose but never come back (U+0958 stays two characters).
        Decomposed::Expansion(first, second) => COMPOSITION.compose(first, second) == Some(c),
    }
}

/// Folds the unit of `text` that NFC changes, starting at `start` (in `text`, and in `out`
/// where that start was folded already when it is the character before a combining mark) and
/// running at least to `end`: on through every further combining mark or character that
/// composes with it. The unit becomes one indivisible shift; returns where it ends.
fn fold_composed(
    text: &str,
    (start, out_start): (usize, usize),
    mut end: usize,
    out: &mut Vec<u8>,
    shifts: &mut Vec<Shift>,
) -> usize {
    while let Some(next) = text[end..].chars().next() {
        let joins = next >= '\u{300}'
            && (COMBINING_CLASS.get_u8(next) != 0
                || NFC
                    .normalize(&text[start..end])
                    .chars()
                    .next_back()
                    .is_some_and(|last| COMPOSITION.compose(last, next).is_some()));
        if !joins {
            break;
        }
        end += next.len_utf8();
    }
    out.truncate(out_start);
    while shifts.last().is_some_and(|s| s.folded >= out_start) {
        shifts.pop();
    }
    shifts.push(Shift {
        folded: out_start,
        original: start,
        indivisible: true,
    });
    for c in NFC.normalize(&text[start..end]).chars() {
        fold_char(c, out);
    }
    shifts.push(Shift {
        folded: out.len(),
        original: end,
        indivisible: false,
    });
    end
}

/// How many bytes at the start of `bytes` are ASCII. Checked 32 bytes at a time first (std's
/// `is_ascii` reads whole words): a byte-at-a-time scan was half of folding's cost in mostly
/// English text with the odd "€" or curly quote.
fn ascii_prefix_len(bytes: &[u8]) -> usize {
    const CHUNK: usize = 32;
    let clean_chunks = bytes
        .chunks(CHUNK)
        .position(|chunk| !chunk.is_ascii())
        .unwrap_or(bytes.len() / CHUNK + 1);
    let from = (clean_chunks * CHUNK).min(bytes.len());
    from + bytes[from..]
        .iter()
        .position(|b| !b.is_ascii())
        .unwrap_or(bytes.len() - from)
}

/// ASCII lowercase, with every ASCII whitespace character (vertical tab included) a space.
fn fold_ascii(bytes: &mut [u8]) {
    for b in bytes {
        *b = match *b {
            b'\t' | b'\n' | b'\x0B' | b'\x0C' | b'\r' => b' ',
            other => other.to_ascii_lowercase(),
        };
    }
}

/// Maps a folded byte range back to the original text; `None` when it starts or ends inside
/// the lowercase expansion of a single original character. The automaton's hits start and end
/// on character boundaries of the folded text, which is all this needs to be right.
fn to_original(shifts: &[Shift], range: std::ops::Range<usize>) -> Option<(usize, usize)> {
    Some((
        original_offset(shifts, range.start)?,
        original_offset(shifts, range.end)?,
    ))
}

fn original_offset(shifts: &[Shift], folded: usize) -> Option<usize> {
    let Some(shift) = shifts[..shifts.partition_point(|s| s.folded <= folded)].last() else {
        return Some(folded);
    };
    if shift.indivisible {
        (folded == shift.folded).then_some(shift.original)
    } else {
        Some(shift.original + (folded - shift.folded))
    }
}

/// Exact-case comparison that treats any whitespace as equal to any other, and any apostrophe;
/// `found` is composed to NFC, as `configured` is already.
fn same_spelling(found: &str, configured: &str) -> bool {
    // ASCII is NFC already; the normaliser costs more than the comparison.
    let found = if found.is_ascii() {
        Cow::Borrowed(found)
    } else {
        NFC.normalize(found)
    };
    let mut a = found.chars();
    let mut b = configured.chars();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y))
                if x == y
                    || x.is_whitespace() && y.is_whitespace()
                    || is_apostrophe(x) && is_apostrophe(y) => {}
            _ => return false,
        }
    }
}

/// The straight apostrophe, the typographic one (U+2019) and the modifier letter (U+02BC).
fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{02BC}')
}

fn on_word_boundaries(text: &str, start: usize, end: usize, meaning: &Meaning) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let free = |c: Option<char>| c.is_none_or(|c| !continues_word(c) || is_spaceless_script(c));
    (!meaning.check_start || free(before)) && (!meaning.check_end || free(after))
}

/// Letters, digits, `_` and combining marks glue onto a word ("metadata", "Meta_x", "Metá");
/// apostrophes, hyphens and punctuation do not ("Samsung's", "Xiaomi-backed", "(Xiaomi)").
fn continues_word(c: char) -> bool {
    // Most neighbours are ASCII; looking up their script was an eighth of `benches/matcher.rs`.
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    // U+02BC is a letter to Unicode, but an apostrophe to whoever typed it.
    (c.is_alphanumeric() && !is_apostrophe(c)) || c == '_' || c.script() == Script::Inherited
}

/// Scripts written without spaces between words, where a name is found inside longer runs of
/// text (小米 in 小米集团). Hangul is spaced by words, but particles attach to the noun
/// (삼성이, 삼성은), so a whole-word rule would miss most Korean mentions.
fn is_spaceless_script(c: char) -> bool {
    !c.is_ascii()
        && matches!(
            c.script(),
            Script::Han
                | Script::Hiragana
                | Script::Katakana
                | Script::Hangul
                | Script::Thai
                | Script::Lao
                | Script::Khmer
                | Script::Myanmar
                | Script::Tibetan
        )
}

/// About [`SNIPPET_CHARS`] characters of `text` around `start..end`, cut at spaces where it
/// can be, with "…" where the text was cut.
fn snippet(text: &str, start: usize, end: usize) -> String {
    let hit_chars = text[start..end].chars().count();
    let room = SNIPPET_CHARS.saturating_sub(hit_chars);
    let after_available = text[end..].chars().take(room).count();
    // A third of the room before the hit, unless the text ends sooner.
    let before_wanted = (room / 3).max(room - after_available);
    let mut begin = text[..start]
        .char_indices()
        .rev()
        .take(before_wanted)
        .last()
        .map_or(start, |(i, _)| i);
    let before_taken = text[begin..start].chars().count();
    let mut finish = text[end..]
        .char_indices()
        .nth(room - before_taken)
        .map_or(text.len(), |(i, _)| end + i);
    // Prefer whole words at the cuts.
    if begin > 0
        && let Some(space) = text[begin..start].find(' ')
    {
        begin += space + 1;
    }
    if finish < text.len()
        && let Some(space) = text[end..finish].rfind(' ')
    {
        finish = end + space;
    }
    let mut snippet = String::with_capacity(finish - begin + 2 * '…'.len_utf8());
    if begin > 0 {
        snippet.push('…');
    }
    snippet.push_str(text[begin..finish].trim());
    if finish < text.len() {
        snippet.push('…');
    }
    snippet
}

/// Why one company was or was not flagged for one entry; see [`Matcher::explain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub company: Arc<str>,
    /// What [`Matcher::find`] decides: some hit is kept and `require_any` is satisfied.
    pub flagged: bool,
    /// Every candidate hit of the company's names and aliases, by field and position.
    pub hits: Vec<HitExplanation>,
    pub require_any: RequireAny,
}

/// One occurrence of a name or alias in the text, and what the rules made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitExplanation {
    pub field: Field,
    /// The configured name or alias that matched (whitespace-normalised).
    pub alias: String,
    /// The text as it appears in the entry.
    pub matched: String,
    /// Byte offset of the hit in the field's text.
    pub offset: usize,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The hit counts (provided `require_any` is satisfied).
    Kept,
    /// The company's `fields` do not include this field.
    FieldNotSearched,
    /// The company is `case_sensitive` and the spelling differs.
    CaseDiffers,
    /// A letter or digit touches the hit ("Meta" in "metadata").
    NoWordBoundary,
    /// The hit is inside this exclusion phrase of the company.
    Excluded { phrase: String },
    /// The hit is inside a longer hit: another company's alias, or a longer alias of the same
    /// company (which is counted instead).
    InsideLongerMatch { company: Arc<str>, alias: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequireAny {
    NotConfigured,
    /// The first context word found.
    Found {
        word: String,
        field: Field,
    },
    /// None of these words occurs in the entry, so the company is not flagged.
    Missing {
        words: Vec<String>,
    },
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = if self.flagged {
            "flagged"
        } else {
            "not flagged"
        };
        writeln!(f, "{}: {outcome}", self.company)?;
        for hit in &self.hits {
            write!(
                f,
                "  {} @{}: {:?} (alias {:?}) ",
                hit.field.as_str(),
                hit.offset,
                hit.matched,
                hit.alias
            )?;
            match &hit.verdict {
                Verdict::Kept => writeln!(f, "kept")?,
                Verdict::FieldNotSearched => writeln!(f, "ignored: field not searched")?,
                Verdict::CaseDiffers => writeln!(f, "discarded: case differs (case_sensitive)")?,
                Verdict::NoWordBoundary => writeln!(f, "discarded: not a whole word")?,
                Verdict::Excluded { phrase } => {
                    writeln!(f, "discarded: inside exclusion {phrase:?}")?
                }
                Verdict::InsideLongerMatch { company, alias } => {
                    writeln!(f, "discarded: inside {alias:?} ({company})")?
                }
            }
        }
        match &self.require_any {
            RequireAny::NotConfigured => Ok(()),
            RequireAny::Found { word, field } => {
                writeln!(f, "  require_any: found {word:?} in {}", field.as_str())
            }
            RequireAny::Missing { words } => {
                writeln!(f, "  require_any: none of {words:?} found, so not flagged")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_mixed_text_lowercases_and_maps_offsets_back() {
        let (mut folded, mut shifts) = (Vec::new(), Vec::new());
        fold_into("Zü\tİΣ\x0BAB", &mut folded, &mut shifts);
        assert_eq!(folded, "zü i\u{307}σ ab".as_bytes());
        // 'İ' (2 bytes) lowercases to two characters (3 bytes): a hit may start at it or after
        // it, not inside it. 'ü' and 'Σ' keep their length and need no shift.
        assert_eq!(
            shifts,
            [
                Shift {
                    folded: 4,
                    original: 4,
                    indivisible: true
                },
                Shift {
                    folded: 7,
                    original: 6,
                    indivisible: false
                },
            ]
        );
        let offsets: Vec<_> = [0, 3, 4, 5, 7, 9, 12]
            .iter()
            .map(|&at| original_offset(&shifts, at))
            .collect();
        assert_eq!(
            offsets,
            [Some(0), Some(3), Some(4), None, Some(6), Some(8), Some(11)]
        );
        fold_into("Plain\tASCII", &mut folded, &mut shifts);
        assert_eq!(folded, b"plain ascii");
        assert!(shifts.is_empty(), "ASCII text keeps its offsets");
    }

    #[test]
    fn the_characters_taken_as_nfc_inert_are_so_by_the_tables() {
        let inert = |c: &char| NFC_INERT.iter().any(|range| range.contains(c));
        let all_chars = || (0..=0x10FFFF).filter_map(char::from_u32);
        for c in all_chars().filter(inert) {
            assert_eq!(COMBINING_CLASS.get_u8(c), 0, "{c:?}");
            assert!(nfc_keeps(c), "NFC changes {c:?}");
        }
        // What composes with a character before it is the second half of some decomposition.
        for c in all_chars() {
            if let Decomposed::Expansion(_, second) = DECOMPOSITION.decompose(c) {
                assert!(!inert(&second), "{second:?} composes into {c:?}");
            }
        }
    }

    #[test]
    fn decomposed_hangul_folds_to_its_syllable() {
        // The trailing consonant composes with the syllable its two jamo make, not with a jamo.
        assert_eq!(
            fold("\u{1109}\u{1161}\u{11B7}\u{1109}\u{1165}\u{11BC}"),
            "삼성"
        );
        assert_eq!(
            hit_count(
                &[rule("삼성")],
                "\u{1109}\u{1161}\u{11B7}\u{1109}\u{1165}\u{11BC} said"
            ),
            1
        );
    }

    /// The reference for folding: NFC of the whole text, folded character by character, and for
    /// every folded byte the original offset of the stretch it came from, which no hit may split.
    /// A stretch ends before a starter (combining class 0) where cutting the text does not change
    /// its NFC: a combining mark, or a Hangul vowel after its consonant, stays with what precedes.
    fn origin_of_each_byte(text: &str) -> (String, Vec<usize>) {
        let fold_one = |c: char, folded: &mut String| {
            if c.is_whitespace() {
                folded.push(' ');
            } else if is_apostrophe(c) {
                folded.push('\'');
            } else {
                for lower in c.to_lowercase() {
                    folded.push(if lower == 'ς' { 'σ' } else { lower });
                }
            }
        };
        let whole = NFC.normalize(text);
        let mut starts: Vec<usize> = text
            .char_indices()
            .filter(|&(at, c)| {
                let (before, after) = text.split_at(at);
                at == 0
                    || COMBINING_CLASS.get_u8(c) == 0
                        && NFC.normalize(before) + NFC.normalize(after) == whole
            })
            .map(|(at, _)| at)
            .collect();
        starts.push(text.len());
        let (mut folded, mut origin, mut composed) = (String::new(), Vec::new(), String::new());
        for stretch in starts.windows(2).map(|w| &text[w[0]..w[1]]) {
            let at = stretch.as_ptr() as usize - text.as_ptr() as usize;
            let normal = NFC.normalize(stretch);
            composed.push_str(&normal);
            let from = folded.len();
            normal.chars().for_each(|c| fold_one(c, &mut folded));
            origin.resize(origin.len() + folded.len() - from, at);
        }
        assert_eq!(
            composed, whole,
            "NFC stretch by stretch is NFC of the whole"
        );
        (folded, origin)
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn shifts_map_every_character_boundary_like_a_map_of_each_byte(
                text in "[a-zA-Z' \t\u{0B}\u{A0}\u{3000}İıΣσςßẞÅÉéŉǅΐ\u{212A}\u{212B}\u{300}\u{301}\u{307}\u{323}\u{2019}\u{2BC}小米삼성가\u{1100}\u{1161}\u{11A8}]{0,40}"
            ) {
                let (mut folded, mut shifts) = (Vec::new(), Vec::new());
                fold_into(&text, &mut folded, &mut shifts);
                let folded = String::from_utf8(folded).expect("folding keeps UTF-8 valid");
                let (expected_folded, origin) = origin_of_each_byte(&text);
                prop_assert_eq!(&folded, &expected_folded);
                let at = |i: usize| origin.get(i).copied().unwrap_or(text.len());
                for boundary in (0..=folded.len()).filter(|&b| folded.is_char_boundary(b)) {
                    // A boundary inside one character's expansion maps to nothing.
                    let expected = (boundary == 0 || at(boundary - 1) != at(boundary)).then(|| at(boundary));
                    prop_assert_eq!(original_offset(&shifts, boundary), expected, "folded offset {}", boundary);
                }
            }

            #[test]
            fn the_ascii_prefix_is_measured_like_a_byte_by_byte_scan(
                bytes in proptest::collection::vec(any::<u8>().prop_map(|b| if b < 250 { b & 0x7F } else { b }), 0..200)
            ) {
                let expected = bytes.iter().position(|b| !b.is_ascii()).unwrap_or(bytes.len());
                prop_assert_eq!(ascii_prefix_len(&bytes), expected);
            }
        }
    }

    fn rule(name: &str) -> CompanyRule {
        CompanyRule {
            name: name.to_string(),
            aliases: Vec::new(),
            case_sensitive: false,
            exclude: Vec::new(),
            require_any: Vec::new(),
            fields: Vec::new(),
        }
    }

    fn with_aliases(name: &str, aliases: &[&str]) -> CompanyRule {
        CompanyRule {
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ..rule(name)
        }
    }

    fn apple() -> CompanyRule {
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
            ..rule("Apple")
        }
    }

    fn content(text: &str) -> EntryText<'_> {
        EntryText {
            content: text,
            ..EntryText::default()
        }
    }

    /// (company, count) of every mention of `text` as content.
    fn counts(rules: &[CompanyRule], text: &str) -> Vec<(String, u32)> {
        let matcher = Matcher::new(rules).unwrap();
        matcher
            .find(&content(text))
            .into_iter()
            .map(|m| (m.company.to_string(), m.count))
            .collect()
    }

    fn hit_count(rules: &[CompanyRule], text: &str) -> u32 {
        counts(rules, text).first().map_or(0, |(_, n)| *n)
    }

    #[test]
    fn a_name_inside_a_longer_word_does_not_match() {
        let meta = [rule("Meta")];
        assert_eq!(hit_count(&meta, "The metadata of the Metaverse"), 0);
        assert_eq!(hit_count(&meta, "Meta_platforms and Metá"), 0);
        assert_eq!(hit_count(&meta, "Ameta"), 0);
        assert_eq!(hit_count(&meta, "Meta3 and 3Meta"), 0);
        assert_eq!(hit_count(&meta, "Meta said"), 1);
        assert_eq!(hit_count(&meta, "said Meta"), 1);
    }

    #[test]
    fn ascii_neighbours_are_judged_as_the_unicode_rules_would() {
        for c in (0..=0x7f_u8).map(char::from) {
            let by_unicode = (c.is_alphanumeric() && !is_apostrophe(c))
                || c == '_'
                || c.script() == Script::Inherited;
            assert_eq!(continues_word(c), by_unicode, "{c:?}");
            assert!(!is_spaceless_script(c), "{c:?}");
        }
    }

    #[test]
    fn possessives_with_either_apostrophe_match() {
        let samsung = [rule("Samsung")];
        assert_eq!(hit_count(&samsung, "Samsung's phone"), 1);
        assert_eq!(hit_count(&samsung, "Samsung’s phone"), 1);
        assert_eq!(hit_count(&samsung, "Samsungʼs phone"), 1);
    }

    #[test]
    fn a_name_with_an_apostrophe_matches_any_apostrophe() {
        for name in ["McDonald's", "McDonald’s"] {
            let rules = [rule(name)];
            for text in ["McDonald's menu", "McDonald’s menu", "MCDONALDʼS MENU"] {
                assert_eq!(hit_count(&rules, text), 1, "{name} in {text}");
            }
            assert_eq!(hit_count(&rules, "McDonald s menu"), 0, "{name}");
        }
    }

    #[test]
    fn hyphens_parentheses_and_punctuation_are_boundaries() {
        let xiaomi = [rule("Xiaomi")];
        assert_eq!(hit_count(&xiaomi, "a Xiaomi-backed firm"), 1);
        assert_eq!(hit_count(&xiaomi, "the maker (Xiaomi) said"), 1);
        assert_eq!(hit_count(&xiaomi, "made by Xiaomi."), 1);
        assert_eq!(hit_count(&xiaomi, "\"Xiaomi\", @Xiaomi, #Xiaomi"), 3);
        assert_eq!(hit_count(&xiaomi, "Xiaomi12 and XiaomiFans"), 0);
    }

    #[test]
    fn matching_ignores_case_by_default_with_unicode_rules() {
        assert_eq!(hit_count(&[rule("Samsung")], "SAMSUNG samsung SamSung"), 3);
        assert_eq!(hit_count(&[rule("Škoda")], "ŠKODA recalls cars"), 1);
        assert_eq!(hit_count(&[rule("Σαμσων")], "ΣΑΜΣΩΝ"), 1);
        // Lowercasing "Σ" alone gives "σ", never the final form "ς" configured here.
        assert_eq!(hit_count(&[rule("Όμιλος")], "ΌΜΙΛΟΣ ΑΕ"), 1);
    }

    #[test]
    fn case_sensitive_companies_need_the_configured_spelling() {
        let arm = [CompanyRule {
            case_sensitive: true,
            ..rule("Arm")
        }];
        assert_eq!(hit_count(&arm, "an arm and ARM"), 0);
        assert_eq!(hit_count(&arm, "Arm Holdings and an arm"), 1);
    }

    #[test]
    fn accents_match_whether_written_composed_or_decomposed() {
        let composed = "Nestl\u{e9}";
        let decomposed = "Nestle\u{301}";
        for name in [composed, decomposed] {
            for case_sensitive in [false, true] {
                let rules = [CompanyRule {
                    case_sensitive,
                    ..rule(name)
                }];
                for text in [composed, decomposed] {
                    let story = format!("Shares of {text}\u{2019}s rivals fell");
                    let mentions = Matcher::new(&rules).unwrap().find(&content(&story));
                    assert_eq!(mentions.len(), 1, "{name:?} in {story:?}");
                    assert_eq!(
                        mentions[0].snippet, story,
                        "the snippet keeps the text as written"
                    );
                }
            }
        }
        // The accent is part of the word: a name without it does not match.
        assert_eq!(hit_count(&[rule("Nestle")], "Nestle\u{301} said"), 0);
        // The ohm sign is omega in NFC.
        assert_eq!(
            hit_count(&[rule("\u{3a9}mega Labs")], "\u{2126}MEGA LABS said"),
            1
        );
    }

    #[test]
    fn offsets_stay_right_when_lowercasing_changes_byte_lengths() {
        // "İ" (2 bytes) lowercases to "i̇" (3 bytes); "ẞ" (3 bytes) to "ß" (2 bytes).
        let text = "İİẞ Samsung said";
        let matcher = Matcher::new(&[rule("Samsung")]).unwrap();
        let explanation = matcher.explain(&content(text));
        assert_eq!(explanation[0].hits[0].matched, "Samsung");
        assert_eq!(explanation[0].hits[0].offset, text.find("Samsung").unwrap());
    }

    #[test]
    fn han_names_match_inside_longer_runs_of_text() {
        let xiaomi = [with_aliases("Xiaomi", &["小米"])];
        assert_eq!(hit_count(&xiaomi, "小米集团发布新手机"), 1);
        assert_eq!(hit_count(&xiaomi, "据小米公司称"), 1);
        // A Latin name next to Han characters is still a whole word.
        assert_eq!(hit_count(&[rule("Apple")], "苹果Apple发布"), 1);
        assert_eq!(hit_count(&[rule("ソニー")], "ソニーグループは"), 1);
    }

    #[test]
    fn whitespace_inside_configured_patterns_is_normalised() {
        let cook = [rule("Tim  Cook")];
        assert_eq!(hit_count(&cook, "Tim Cook said"), 1);
        assert_eq!(hit_count(&cook, "Tim\u{a0}Cook said"), 1);
        let exact = [CompanyRule {
            case_sensitive: true,
            ..rule(" Tim\tCook ")
        }];
        assert_eq!(hit_count(&exact, "Tim Cook said"), 1);
    }

    #[test]
    fn a_hit_inside_an_exclusion_does_not_count() {
        let amazon = [CompanyRule {
            exclude: vec!["the Amazon rainforest".into()],
            ..rule("Amazon")
        }];
        assert_eq!(hit_count(&amazon, "fires in the Amazon rainforest"), 0);
        assert_eq!(hit_count(&amazon, "fires in the Amazon rainforests"), 0);
        assert_eq!(hit_count(&amazon, "the Amazon warehouse"), 1);
    }

    #[test]
    fn apple_counts_once_beside_an_apple_pie() {
        let rules = [apple()];
        assert_eq!(hit_count(&rules, "apple pie at Cupertino"), 0);
        assert_eq!(
            hit_count(&rules, "Apple pie in the Big Apple at Cupertino"),
            0
        );
        assert_eq!(hit_count(&rules, "Apple Records, Cupertino"), 0);
        assert_eq!(
            hit_count(
                &rules,
                "Apple sells the iPhone; we had apple pie and Apple pie."
            ),
            1
        );
    }

    #[test]
    fn require_any_needs_a_context_word_somewhere_in_the_entry() {
        let matcher = Matcher::new(&[apple()]).unwrap();
        assert!(matcher.find(&content("Apple shares rose")).is_empty());
        assert!(
            matcher
                .find(&content("Apple shares rose, iPhones"))
                .is_empty()
        );
        assert!(
            matcher
                .find(&content("Apple shares rose, iphone"))
                .is_empty()
        );
        let entry = EntryText {
            title: "Apple shares rose",
            summary: "",
            content: "New iPhone sales",
            article: "",
        };
        let found = matcher.find(&entry);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].fields, vec![Field::Title]);
    }

    #[test]
    fn only_the_configured_fields_are_searched() {
        let matcher = Matcher::new(&[CompanyRule {
            fields: vec![Field::Title, Field::Summary],
            ..rule("Samsung")
        }])
        .unwrap();
        let in_content = EntryText {
            title: "Phones",
            summary: "News",
            content: "Samsung",
            article: "Samsung",
        };
        assert!(matcher.find(&in_content).is_empty());
        let in_summary = EntryText {
            summary: "Samsung and Samsung",
            ..in_content
        };
        let found = matcher.find(&in_summary);
        assert_eq!(found[0].fields, vec![Field::Summary]);
        assert_eq!(found[0].count, 2);
    }

    #[test]
    fn mentions_carry_fields_count_and_a_snippet_around_the_first_hit() {
        let matcher = Matcher::new(&[rule("Samsung")]).unwrap();
        let filler = "word ".repeat(60);
        let body = format!("{filler}Samsung sold more phones. {filler}Samsung again.");
        let entry = EntryText {
            title: "Samsung results",
            summary: "nothing",
            content: &body,
            article: "",
        };
        let mention = &matcher.find(&entry)[0];
        assert_eq!(mention.fields, vec![Field::Title, Field::Content]);
        assert_eq!(mention.count, 3);
        assert_eq!(mention.snippet, "Samsung results");

        let content_only = Matcher::new(&[CompanyRule {
            fields: vec![Field::Content],
            ..rule("Samsung")
        }])
        .unwrap();
        let snippet = &content_only.find(&entry)[0].snippet;
        assert!(snippet.starts_with("…word"), "{snippet}");
        assert!(snippet.ends_with("word…"), "{snippet}");
        assert!(snippet.contains("word Samsung sold more phones. word"));
        let chars = snippet.chars().count();
        assert!((100..=122).contains(&chars), "{chars} chars: {snippet}");
    }

    #[test]
    fn snippets_cut_on_character_boundaries() {
        let text = format!("{}小米{}", "日本語".repeat(50), "の話".repeat(50));
        let matcher = Matcher::new(&[rule("小米")]).unwrap();
        let snippet = &matcher.find(&content(&text))[0].snippet;
        assert!(snippet.starts_with('…') && snippet.ends_with('…'));
        assert!(snippet.contains("小米"));
        assert_eq!(snippet.chars().count(), SNIPPET_CHARS + 2);
    }

    #[test]
    fn several_companies_come_back_in_configuration_order() {
        let rules = [
            rule("Samsung"),
            with_aliases("Xiaomi", &["Redmi"]),
            rule("Nokia"),
        ];
        assert_eq!(
            counts(&rules, "Redmi and Xiaomi beat Samsung; Xiaomi again"),
            vec![("Samsung".into(), 1), ("Xiaomi".into(), 3)]
        );
    }

    #[test]
    fn a_longer_alias_of_another_company_takes_its_text() {
        let rules = [rule("Tata"), rule("Tata Motors")];
        assert_eq!(
            counts(&rules, "Tata Motors shares rose"),
            vec![("Tata Motors".into(), 1)]
        );
        assert_eq!(
            counts(&rules, "Tata Motors and Tata Steel"),
            vec![("Tata".into(), 1), ("Tata Motors".into(), 1)]
        );
        // The longer alias fails its boundary check, so it does not hide the shorter one.
        assert_eq!(counts(&rules, "Tata Motorsport"), vec![("Tata".into(), 1)]);
    }

    #[test]
    fn overlapping_aliases_of_one_company_count_once() {
        let xiaomi = [with_aliases("Xiaomi", &["Xiaomi Corp", "XIAOMI"])];
        assert_eq!(hit_count(&xiaomi, "Xiaomi Corp said"), 1);
    }

    #[test]
    fn a_context_word_does_not_hide_a_name() {
        // "App Store" is Apple context; "Store" being a name of another company must still match.
        let rules = [apple(), rule("Store")];
        assert_eq!(
            counts(&rules, "Apple opened the App Store"),
            vec![("Apple".into(), 1), ("Store".into(), 1)]
        );
    }

    #[test]
    fn no_companies_match_nothing() {
        let matcher = Matcher::new(&[]).unwrap();
        assert!(matcher.find(&content("Samsung")).is_empty());
    }

    #[test]
    fn explain_reports_each_rejected_hit_and_the_missing_context() {
        let matcher = Matcher::new(&[apple(), rule("Meta")]).unwrap();
        let text = "Apple and APPLE bake apple pie; Meta reads metadata";
        let explanations = matcher.explain(&content(text));
        assert_eq!(explanations.len(), 2);
        let apple = &explanations[0];
        assert!(!apple.flagged);
        let verdicts: Vec<_> = apple.hits.iter().map(|h| h.verdict.clone()).collect();
        assert_eq!(
            verdicts,
            vec![Verdict::Kept, Verdict::CaseDiffers, Verdict::CaseDiffers,]
        );
        assert!(matches!(apple.require_any, RequireAny::Missing { .. }));
        let meta = &explanations[1];
        assert!(meta.flagged);
        assert_eq!(meta.hits[1].verdict, Verdict::NoWordBoundary);
        let shown = apple.to_string();
        assert!(shown.starts_with("Apple: not flagged\n"), "{shown}");
        assert!(shown.contains("case differs"), "{shown}");
        assert!(shown.contains("require_any: none of"), "{shown}");
    }

    #[test]
    fn explain_names_the_exclusion_and_the_longer_match() {
        let rules = [
            CompanyRule {
                exclude: vec!["Big Apple".into()],
                require_any: vec!["iPhone".into()],
                ..rule("Apple")
            },
            rule("Apple Records"),
        ];
        let matcher = Matcher::new(&rules).unwrap();
        let explanations = matcher.explain(&content(
            "The Big Apple hosts Apple Records; Apple sells iPhones",
        ));
        let verdicts: Vec<_> = explanations[0].hits.iter().map(|h| &h.verdict).collect();
        assert_eq!(
            verdicts,
            [
                &Verdict::Excluded {
                    phrase: "Big Apple".into()
                },
                &Verdict::InsideLongerMatch {
                    company: "Apple Records".into(),
                    alias: "Apple Records".into()
                },
                &Verdict::Kept,
            ]
        );
        assert!(!explanations[0].flagged, "iPhones is not the word iPhone");
        assert!(explanations[1].flagged);
    }

    #[test]
    fn explain_agrees_with_find() {
        let rules = [
            apple(),
            with_aliases("Xiaomi", &["小米", "Redmi"]),
            rule("Meta"),
            CompanyRule {
                fields: vec![Field::Title],
                ..rule("Samsung")
            },
        ];
        let matcher = Matcher::new(&rules).unwrap();
        let texts = [
            "Apple pie, Apple's iPhone, 小米集团 and Redmi; Samsung; metadata",
            "Meta and Samsung in the Big Apple",
            "nothing here",
        ];
        for text in texts {
            let entry = EntryText {
                title: text,
                summary: "",
                content: text,
                article: "",
            };
            let found: Vec<_> = matcher
                .find(&entry)
                .into_iter()
                .map(|m| m.company)
                .collect();
            let flagged: Vec<_> = matcher
                .explain(&entry)
                .into_iter()
                .filter(|e| e.flagged)
                .map(|e| e.company)
                .collect();
            assert_eq!(found, flagged, "{text}");
        }
    }
}
