//! How the cost of matching one entry grows with the number of tracked companies.
//!
//! The goal from the issue: matching with 10,000 company names costs at most twice matching with
//! 10. Company names are synthetic but deterministic (a fixed linear congruential generator over
//! syllables), plus the real rules of the issue (Xiaomi, Samsung, Apple with exclusions and
//! `require_any`). The entries are 300 generated news-like texts of about 1,500 characters, the
//! same for every size, mentioning the real companies and some of the first synthetic ones.
//!
//! Run with `cargo bench --bench matcher`; it prints the median (and fastest) time per entry
//! over several passes, and the ratio of the medians.

use std::hint::black_box;
use std::time::{Duration, Instant};

use feedhound::matcher::{CompanyRule, EntryText, Matcher};

const SIZES: [usize; 3] = [10, 1_000, 10_000];
const ENTRIES: usize = 300;
const RUNS: usize = 31;

/// Numerical Recipes' LCG: deterministic across platforms and runs, good enough to pick words.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next() % items.len()]
    }
}

const SYLLABLES: [&str; 24] = [
    "ka", "tor", "mi", "ven", "lo", "dra", "qui", "sen", "bal", "ro", "ux", "tel", "nor", "zi",
    "pha", "gen", "cor", "vis", "ma", "tek", "lun", "dex", "sol", "ari",
];
const SUFFIXES: [&str; 6] = ["", "", " Systems", " Group", " Labs", " Holdings"];
const WORDS: [&str; 40] = [
    "the", "market", "shares", "rose", "after", "a", "report", "said", "on", "Tuesday", "that",
    "its", "new", "phone", "sales", "in", "Europe", "and", "India", "grew", "while", "analysts",
    "expect", "pressure", "from", "rivals", "to", "continue", "this", "quarter", "as", "the",
    "company", "invests", "in", "chips", "software", "and", "retail", "stores",
];
const REAL_MENTIONS: [&str; 8] = [
    "Xiaomi",
    "Samsung's",
    "小米",
    "Apple",
    "apple pie",
    "the iPhone",
    "Redmi",
    "metadata",
];

fn synthetic_company(rng: &mut Lcg) -> String {
    let syllables = 2 + rng.next() % 3;
    let mut name: String = (0..syllables).map(|_| rng.pick(&SYLLABLES)).collect();
    name[..1].make_ascii_uppercase();
    name.push_str(rng.pick(&SUFFIXES));
    name
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

fn rules(synthetic: &[String]) -> Vec<CompanyRule> {
    let mut rules = vec![
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
        company("Meta"),
    ];
    rules.extend(synthetic.iter().map(|name| company(name)));
    rules
}

/// Title, summary and content of one entry, with a mention every 25 words or so.
fn entry(rng: &mut Lcg, mentionable: &[String]) -> (String, String, String) {
    let mut sentence = |words: usize| {
        let mut text = String::new();
        for i in 0..words {
            if i > 0 {
                text.push(' ');
            }
            match rng.next() % 25 {
                0 => text.push_str(rng.pick(&REAL_MENTIONS)),
                1 => text.push_str(&mentionable[rng.next() % mentionable.len()]),
                _ => text.push_str(rng.pick(&WORDS)),
            }
        }
        text.push('.');
        text
    };
    (sentence(10), sentence(35), sentence(220))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let mut rng = Lcg(2024);
    // Unique names, case ignored, as `config` would insist on.
    let mut seen = std::collections::HashSet::new();
    let mut synthetic = Vec::new();
    while synthetic.len() < SIZES[SIZES.len() - 1] {
        let name = synthetic_company(&mut rng);
        if seen.insert(name.to_lowercase()) {
            synthetic.push(name);
        }
    }
    // Mentions use the first ten synthetic names, so every size sees the same hits.
    let entries: Vec<(String, String, String)> = (0..ENTRIES)
        .map(|_| entry(&mut rng, &synthetic[..SIZES[0]]))
        .collect();
    let bytes: usize = entries
        .iter()
        .map(|(t, s, c)| t.len() + s.len() + c.len())
        .sum();
    println!(
        "{ENTRIES} entries, {} bytes each on average; median of {RUNS} runs",
        bytes / ENTRIES
    );

    let matchers: Vec<Matcher> = SIZES
        .iter()
        .map(|&size| {
            let started = Instant::now();
            let matcher = Matcher::new(&rules(&synthetic[..size])).expect("valid rules");
            println!(
                "{size:>6} companies: automaton built in {:.2?}, {:.1} MiB",
                started.elapsed(),
                matcher.memory_usage() as f64 / (1 << 20) as f64
            );
            matcher
        })
        .collect();
    let pass = |matcher: &Matcher| {
        let mut mentions = 0;
        let started = Instant::now();
        for (title, summary, content) in &entries {
            let found = matcher.find(black_box(&EntryText {
                title,
                summary,
                content,
                article: "",
            }));
            mentions += found.len();
            black_box(found);
        }
        (started.elapsed() / ENTRIES as u32, mentions)
    };
    // Sizes take turns within each run, so a burst of load from elsewhere on the machine
    // hits all of them rather than skewing one; the first run only warms up.
    let mut samples = vec![Vec::with_capacity(RUNS); SIZES.len()];
    let mut mentions = vec![0; SIZES.len()];
    for run in 0..=RUNS {
        for (index, matcher) in matchers.iter().enumerate() {
            let (per_entry, found) = pass(matcher);
            mentions[index] = found;
            if run > 0 {
                samples[index].push(per_entry);
            }
        }
    }
    let mut per_entry = Vec::new();
    for (index, size) in SIZES.into_iter().enumerate() {
        let fastest = *samples[index].iter().min().expect("RUNS > 0");
        let median = median(samples[index].clone());
        per_entry.push(median);
        println!(
            "{size:>6} companies (+4 real): median {median:>8.2?} per entry, fastest {fastest:>8.2?}, \
             {} mentions per pass",
            mentions[index]
        );
    }
    let ratio = per_entry[per_entry.len() - 1].as_secs_f64() / per_entry[0].as_secs_f64();
    println!(
        "ratio {} vs {} companies: {ratio:.2}",
        SIZES[SIZES.len() - 1],
        SIZES[0]
    );
}
