//! The matcher's overlapping Aho–Corasick search, walking four stretches of a field at once.
//!
//! A DFA search is one dependent table load per byte: the next state needs the previous one, so
//! a core spends most of each step waiting for that load. Stretches of a text are independent
//! chains of loads; walked in the same loop, their loads overlap. That holds whatever the number
//! of patterns, so it does not change how the cost grows with the number of companies.
//!
//! Each stretch after the first is started `max_pattern_len` bytes early. An Aho–Corasick state is
//! the longest suffix of the text read so far that is a prefix of some pattern, never longer than
//! the longest pattern, so after that many bytes a walk is in the state a single walk from the
//! start would be in. Occurrences ending in that warm-up belong to the stretch before.

use std::ops::Range;

use aho_corasick::automaton::{Automaton as _, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::{AhoCorasick, Anchored, MatchKind};

/// Below this many bytes a field is walked in one piece: titles, where four walks would save a
/// few nanoseconds at most. Not tuned; the fields that matter are the kilobytes of a summary.
const SPLIT_FROM: usize = 256;

/// Every pattern of every company, compiled for overlapping search.
pub(super) enum Patterns {
    /// A full DFA keeps the cost per byte flat as companies are added (one table lookup per byte,
    /// where the NFA for large sets chases pointers): measured by `benches/matcher.rs`, 10,000
    /// names cost 1.15× 10 names (1.8× with the NFA, session 15).
    Dfa(Box<DFA>),
    /// When the DFA cannot be built (too many states for its IDs), the automatic choice.
    Other(AhoCorasick),
}

impl Patterns {
    pub(super) fn new<P: AsRef<[u8]>>(
        patterns: &[P],
    ) -> Result<Patterns, aho_corasick::BuildError> {
        // Overlapping search needs standard semantics; the matcher's header says why every
        // occurrence is wanted rather than leftmost-longest. No prefilter: with it the start
        // state becomes special and the loop below would have to ask the prefilter to skip.
        let dfa = DFA::builder()
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(patterns);
        match dfa {
            Ok(dfa) => Ok(Patterns::Dfa(Box::new(dfa))),
            Err(error) => {
                tracing::warn!(
                    %error,
                    "the company names do not fit a DFA; matching uses a slower automaton"
                );
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(patterns)
                    .map(Patterns::Other)
            }
        }
    }

    pub(super) fn max_pattern_len(&self) -> usize {
        match self {
            Patterns::Dfa(dfa) => dfa.max_pattern_len(),
            Patterns::Other(automaton) => automaton.max_pattern_len(),
        }
    }

    pub(super) fn memory_usage(&self) -> usize {
        match self {
            Patterns::Dfa(dfa) => dfa.memory_usage(),
            Patterns::Other(automaton) => automaton.memory_usage(),
        }
    }

    /// Calls `report(pattern, range)` for every occurrence of every pattern in `haystack`,
    /// overlapping ones included, in no particular order.
    pub(super) fn for_each_occurrence(
        &self,
        haystack: &[u8],
        mut report: impl FnMut(usize, Range<usize>),
    ) {
        match self {
            Patterns::Dfa(dfa) => walk_in_stretches(dfa, haystack, &mut report),
            Patterns::Other(automaton) => {
                for found in automaton.find_overlapping_iter(haystack) {
                    report(found.pattern().as_usize(), found.range());
                }
            }
        }
    }
}

/// How many stretches of a field are walked at once. Measured on the harness corpus's
/// descriptions (2 KB on average), with 40 names and with 10,000 at the same speed: one walk
/// 0.66 GB/s, two 1.26, three 1.8, four 2.2 to 2.35, six no faster, eight slower (the states no
/// longer fit in registers).
const WALKS: usize = 4;

/// A field is split only when each stretch is at least this many warm-ups long. The warm-up
/// bytes at the end of each stretch are walked one chain at a time after the common loop, so a
/// stretch of twice the warm-up costs the time of 2.5 stretches, not 4. (A long exclusion phrase
/// raises the warm-up, and with it the length from which fields are split.)
const MIN_STRETCH_IN_WARM_UPS: usize = 2;

fn walk_in_stretches(dfa: &DFA, haystack: &[u8], report: &mut impl FnMut(usize, Range<usize>)) {
    let start = dfa
        .start_state(Anchored::No)
        .expect("the DFA is built for unanchored search");
    let mut emit = |state, end: usize| {
        for index in 0..dfa.match_len(state) {
            let pattern = dfa.match_pattern(state, index);
            report(pattern.as_usize(), end - dfa.pattern_len(pattern)..end);
        }
    };
    let warm_up = dfa.max_pattern_len();
    if haystack.len() < SPLIT_FROM.max(WALKS * MIN_STRETCH_IN_WARM_UPS * warm_up) {
        walk(dfa, start, haystack, 0..haystack.len(), &mut emit);
        return;
    }
    // Walk `k` reports the occurrences ending in `(k * stretch, (k + 1) * stretch]` (the last
    // one up to the end), and reads from `warm_up` bytes before that.
    let stretch = haystack.len() / WALKS;
    let from: [usize; WALKS] =
        std::array::from_fn(|k| if k == 0 { 0 } else { k * stretch - warm_up });
    let mut states = [start; WALKS];
    for step in 0..stretch {
        for (state, &from) in states.iter_mut().zip(&from) {
            *state = dfa.next_state(Anchored::No, *state, haystack[from + step]);
        }
        // One branch for all walks in the common case (none is in a match state).
        if states
            .iter()
            .fold(false, |any, &state| any | dfa.is_special(state))
        {
            for (k, &state) in states.iter().enumerate() {
                if dfa.is_match(state) && (k == 0 || step >= warm_up) {
                    emit(state, from[k] + step + 1);
                }
            }
        }
    }
    for k in 1..WALKS {
        let end = if k == WALKS - 1 {
            haystack.len()
        } else {
            (k + 1) * stretch
        };
        walk(dfa, states[k], haystack, from[k] + stretch..end, &mut emit);
    }
}

/// Walks `haystack[range]` from `state`, one byte after the other.
fn walk(
    dfa: &DFA,
    mut state: StateID,
    haystack: &[u8],
    range: Range<usize>,
    emit: &mut impl FnMut(StateID, usize),
) {
    for at in range {
        state = dfa.next_state(Anchored::No, state, haystack[at]);
        if dfa.is_match(state) {
            emit(state, at + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: the crate's own overlapping iterator, sorted.
    fn expected(patterns: &[&str], haystack: &str) -> Vec<(usize, Range<usize>)> {
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(patterns)
            .unwrap();
        let mut found: Vec<_> = automaton
            .find_overlapping_iter(haystack)
            .map(|m| (m.pattern().as_usize(), m.range()))
            .collect();
        found.sort_by_key(|(p, r)| (r.start, r.end, *p));
        found
    }

    fn walked(patterns: &[&str], haystack: &str) -> Vec<(usize, Range<usize>)> {
        let compiled = Patterns::new(patterns).unwrap();
        assert!(matches!(compiled, Patterns::Dfa(_)));
        let mut found = Vec::new();
        compiled.for_each_occurrence(haystack.as_bytes(), |p, r| found.push((p, r)));
        found.sort_by_key(|(p, r)| (r.start, r.end, *p));
        found
    }

    #[test]
    fn every_occurrence_is_reported_once_wherever_the_text_is_split() {
        // Overlapping, nested and repeated patterns over a three-letter alphabet, so occurrences
        // straddle every stretch boundary; every length from "too short to split" to past
        // several splits, so each boundary falls at every offset within a pattern.
        let patterns = [
            "ab",
            "abcab",
            "b",
            "bca",
            "cabcabcabca",
            "aaaaaaaaaaaaaaaaaaaa",
        ];
        let mut seed = 0x2545_f491_u32;
        let letters: String = (0..1_400)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                // Runs of 'a' now and then, to reach the 20-byte pattern.
                if seed.is_multiple_of(7) {
                    'a'
                } else {
                    ['a', 'b', 'c'][(seed % 3) as usize]
                }
            })
            .collect();
        let letters = letters.replace("bbbb", "aaaaaaaaaaaaaaaaaaaaaa");
        for len in (0..letters.len()).step_by(7).chain(1_300..letters.len()) {
            let haystack = &letters[..len];
            assert_eq!(
                walked(&patterns, haystack),
                expected(&patterns, haystack),
                "length {len}"
            );
        }
    }
}
