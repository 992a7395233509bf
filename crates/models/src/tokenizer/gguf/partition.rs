//! Splitting special tokens out of text before BPE, as llama.cpp's `tokenizer_st_partition` does.
//!
//! The semantics are llama.cpp's, not `tokenizers`' added-vocabulary matching: special tokens are
//! tried one at a time, longest text first, each splitting every text fragment left by the
//! previous ones at all of its occurrences. Control and unknown tokens are only split out when
//! the caller parses special tokens; user-defined tokens always are. LSTRIP / RSTRIP tokens eat
//! the ASCII whitespace next to them.
//!
//! Only tokens that occur in the text matter, so a first pass over the text (indexed by first
//! byte) finds those; the result is the same as trying every special token.

use super::attr::Attr;
use super::vocab::Vocab;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

pub(super) struct Partitioner {
    /// Control, user-defined and unknown tokens, longest text first (ties by id).
    ordered: Vec<u32>,
    /// Indices into `ordered`, grouped by the first byte of the token text.
    by_first_byte: Vec<Vec<usize>>,
}

impl Partitioner {
    pub(super) fn new(vocab: &Vocab) -> Self {
        let special = Attr::CONTROL | Attr::USER_DEFINED | Attr::UNKNOWN;
        let mut ordered: Vec<u32> =
            (0..vocab.n_tokens() as u32).filter(|&id| vocab.attrs[id as usize].has(special)).collect();
        ordered.sort_by_key(|&id| std::cmp::Reverse(vocab.tokens[id as usize].len()));
        let mut by_first_byte = vec![Vec::new(); 256];
        for (rank, &id) in ordered.iter().enumerate() {
            if let Some(&b) = vocab.tokens[id as usize].as_bytes().first() {
                by_first_byte[b as usize].push(rank);
            }
        }
        Self { ordered, by_first_byte }
    }

    pub(super) fn split<'t>(&self, text: &'t str, vocab: &Vocab, parse_special: bool) -> Vec<Fragment<'t>> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut frags = vec![Fragment::Text(text)];
        for id in self.present(text, vocab, parse_special) {
            let tok = vocab.tokens[id as usize].as_str();
            let attr = vocab.attrs[id as usize];
            let mut out = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Fragment::Text(s) => split_text(s, tok, id, attr, &mut out),
                    token => out.push(token),
                }
            }
            frags = out;
        }
        frags
    }

    /// The special tokens occurring in `text` that this call may split out, in trial order.
    fn present(&self, text: &str, vocab: &Vocab, parse_special: bool) -> Vec<u32> {
        let bytes = text.as_bytes();
        let mut hit = vec![false; self.ordered.len()];
        for i in 0..bytes.len() {
            for &rank in &self.by_first_byte[bytes[i] as usize] {
                if !hit[rank] && bytes[i..].starts_with(vocab.tokens[self.ordered[rank] as usize].as_bytes()) {
                    hit[rank] = true;
                }
            }
        }
        let skipped = if parse_special { Attr::UNDEFINED } else { Attr::CONTROL | Attr::UNKNOWN };
        self.ordered
            .iter()
            .zip(hit)
            .filter(|&(&id, hit)| hit && !vocab.attrs[id as usize].has(skipped))
            .map(|(&id, _)| id)
            .collect()
    }
}

/// Splits every occurrence of `tok` out of `s`, appending the pieces to `out`.
fn split_text<'t>(mut s: &'t str, tok: &str, id: u32, attr: Attr, out: &mut Vec<Fragment<'t>>) {
    while let Some(pos) = s.find(tok) {
        let mut left = &s[..pos];
        if attr.has(Attr::LSTRIP) {
            left = left.trim_end_matches(is_c_space);
        }
        if !left.is_empty() {
            out.push(Fragment::Text(left));
        }
        out.push(Fragment::Token(id));
        s = &s[pos + tok.len()..];
        if attr.has(Attr::RSTRIP) {
            s = s.trim_start_matches(is_c_space);
        }
    }
    if !s.is_empty() {
        out.push(Fragment::Text(s));
    }
}

/// C `isspace` in the "C" locale, which llama.cpp uses for strip flags.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}
