//! PII and secret recognition in Presidio's manner: each recognizer is a set of regex patterns
//! with base scores, a validator (checksum or format rules) and context words. A validator's
//! "valid" sets the score to 1.0 and "invalid" drops the match; a context word within the five
//! words before (or three after) raises the score to `min(max(score + 0.35, 0.4), 1.0)`.
//!
//! Deliberately out of scope: NER-based entities (PERSON, LOCATION): those need a model, and
//! regexes for them are the source of Presidio's best-known false positives.

mod recognizers;
pub mod validators;

use regex::Regex;

use crate::finding::{resolve_overlaps, Entity, Finding, Kind};
use recognizers::{RecognizerDef, RECOGNIZERS};
use validators::Validation;

/// Presidio's context boost.
const CONTEXT_BOOST: f32 = 0.35;
const CONTEXT_FLOOR: f32 = 0.4;
const WORDS_BEFORE: usize = 5;
const WORDS_AFTER: usize = 3;
/// How many bytes around a match are searched for context words.
const CONTEXT_BYTES: usize = 64;

struct Compiled {
    def: &'static RecognizerDef,
    patterns: Vec<(&'static str, Regex, f32)>,
}

/// Runs every recognizer over a text. Build once (regex compilation) and share.
pub struct Analyzer {
    recognizers: Vec<Compiled>,
}

impl Default for Analyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl Analyzer {
    pub fn new() -> Self {
        let recognizers = RECOGNIZERS
            .iter()
            .map(|def| Compiled {
                def,
                patterns: def
                    .patterns
                    .iter()
                    // The table is static and covered by tests: a bad regex is a bug, not input.
                    .map(|p| (p.name, Regex::new(p.regex).expect("built-in recognizer regex"), p.score))
                    .collect(),
            })
            .collect();
        Self { recognizers }
    }

    /// Findings of the `entities` (all when `None`) scoring at least `threshold`, without
    /// overlaps (the best-scoring, then longest, span wins), sorted by start.
    pub fn analyze(&self, text: &str, entities: Option<&[Entity]>, threshold: f32) -> Vec<Finding> {
        let mut found = vec![];
        for r in &self.recognizers {
            if entities.is_some_and(|es| !es.contains(&r.def.entity)) {
                continue;
            }
            for (name, re, base) in &r.patterns {
                for m in re.find_iter(text) {
                    if let Some(f) = self.judge(r.def, name, *base, text, m.start(), m.end()) {
                        if f.score >= threshold {
                            found.push(f);
                        }
                    }
                }
            }
        }
        resolve_overlaps(found)
    }

    fn judge(
        &self,
        def: &RecognizerDef,
        name: &'static str,
        base: f32,
        text: &str,
        start: usize,
        mut end: usize,
    ) -> Option<Finding> {
        if def.entity == Entity::IbanCode {
            end = start + iban_extent(&text[start..end])?;
        }
        let m = &text[start..end];
        if is_numeric(def.entity) && glued(text, start, end) {
            return None;
        }
        if def.entity == Entity::EmailAddress && text[..start].ends_with("://") {
            return None; // credentials in a URL (`https://token@host`), not an address
        }
        let before = words_before(text, start);
        if before.iter().rev().take(2).any(|w| def.negative.contains(&w.as_str())) {
            return None;
        }
        let mut score = match (def.validate)(m) {
            Validation::Valid => 1.0,
            Validation::Invalid => return None,
            Validation::Unknown => base,
        };
        if score < 1.0 {
            let after = words_after(text, end);
            let hit = |w: &String| def.context.iter().any(|c| w == c || (c.len() >= 4 && w.starts_with(c)));
            if before.iter().any(hit) || after.iter().any(hit) {
                score = (score + CONTEXT_BOOST).clamp(CONTEXT_FLOOR, 1.0);
            }
        }
        Some(Finding { kind: Kind::Pii(def.entity), start, end, score, recognizer: name })
    }
}

fn is_numeric(e: Entity) -> bool {
    matches!(e, Entity::CreditCard | Entity::UsSsn | Entity::PhoneNumber | Entity::IpAddress)
}

/// The number continues past the match through a separator ("1.2.3.4.5", "555-12-3456-7"): it is
/// part of something longer (a version, a serial), not the entity.
fn glued(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let sep = |c: u8| c == b'.' || c == b'-';
    let before = start >= 2 && sep(b[start - 1]) && b[start - 2].is_ascii_alphanumeric();
    let after = end + 1 < b.len() && sep(b[end]) && b[end + 1].is_ascii_digit();
    before || after
}

/// The IBAN within a pattern match: exactly as many alphanumerics as its country uses.
fn iban_extent(m: &str) -> Option<usize> {
    let want = validators::iban_length(m.get(..2)?)?;
    let mut seen = 0;
    for (i, c) in m.char_indices() {
        if c.is_ascii_alphanumeric() {
            seen += 1;
            if seen == want {
                return Some(i + 1);
            }
        }
    }
    None
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn words(s: &str) -> impl DoubleEndedIterator<Item = String> + '_ {
    s.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '#'))
        .map(|w| w.trim_matches(|c| c == '-' || c == '#').to_lowercase())
        .filter(|w| !w.is_empty())
}

fn words_before(text: &str, start: usize) -> Vec<String> {
    let from = floor_boundary(text, start.saturating_sub(CONTEXT_BYTES));
    let mut w: Vec<String> = words(&text[from..start]).rev().take(WORDS_BEFORE).collect();
    w.reverse();
    w
}

fn words_after(text: &str, end: usize) -> Vec<String> {
    let to = floor_boundary(text, (end + CONTEXT_BYTES).min(text.len()));
    words(&text[end..to]).take(WORDS_AFTER).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(text: &str) -> Vec<(&'static str, String)> {
        Analyzer::new()
            .analyze(text, None, 0.5)
            .into_iter()
            .map(|f| (f.kind.name(), text[f.start..f.end].to_owned()))
            .collect()
    }

    #[test]
    fn validated_entities_score_one() {
        let a = Analyzer::new();
        let f = a.analyze("card 4111 1111 1111 1111 ok", None, 0.0);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].kind, f[0].score), (Kind::Pii(Entity::CreditCard), 1.0));
        assert!(a.analyze("4111111111111112", None, 0.0).is_empty());
        assert_eq!(types("IBAN GB82WEST12345698765432 THEN"), [("IBAN_CODE", "GB82WEST12345698765432".into())]);
    }

    #[test]
    fn context_words_raise_weak_patterns() {
        let a = Analyzer::new();
        let bare = a.analyze("ref 0 20 7946 0958", None, 0.0);
        assert!(bare.is_empty() || bare[0].score < 0.5, "{bare:?}");
        let f = a.analyze("call me on 020 7946 0958 tonight", None, 0.5);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!((f[0].score - 0.75).abs() < 1e-6);
    }

    #[test]
    fn hard_negatives_are_not_entities() {
        for t in [
            "version 10.0.19045.2965",
            "upgrade to v1.2.3.4 today",
            "release 1.2.3.4",
            "order 1029384756 shipped",
            "uuid 123e4567-e89b-12d3-a456-426614174000",
            "sha d41d8cd98f00b204e9800998ecf8427e",
            "on 2023-11-05 at 12:30:45",
            "std::vec::Vec and a::b",
        ] {
            assert!(types(t).is_empty(), "{t}: {:?}", types(t));
        }
    }

    #[test]
    fn spans_do_not_overlap() {
        let t = "mail jane@example.com or see https://example.com/a?b=1 from 10.0.0.1";
        let got = types(t);
        assert_eq!(
            got,
            [
                ("EMAIL_ADDRESS", "jane@example.com".into()),
                ("URL", "https://example.com/a?b=1".into()),
                ("IP_ADDRESS", "10.0.0.1".into())
            ]
        );
    }
}
