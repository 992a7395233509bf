//! Streaming text out of a token stream: UTF-8 safe incremental decoding, and stop strings
//! that may straddle token boundaries.

use std::sync::Arc;

use prom_models::Tokenizer;

use crate::Result;

/// Incremental detokenizer (the prefix-offset scheme of TGI and vLLM): a token's text is only
/// released once decoding no longer ends in a replacement character, so multi-byte characters
/// split across byte-fallback tokens come out whole, and tokenizers that change a piece's
/// rendering depending on its left context (SentencePiece's leading space) stay correct.
pub struct StreamDecoder {
    tokenizer: Arc<Tokenizer>,
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    skip_special_tokens: bool,
}

impl StreamDecoder {
    pub fn new(tokenizer: Arc<Tokenizer>, skip_special_tokens: bool) -> Self {
        Self { tokenizer, ids: vec![], prefix_offset: 0, read_offset: 0, skip_special_tokens }
    }

    /// Adds a token; returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let prefix =
            self.tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset], self.skip_special_tokens)?;
        let full = self.tokenizer.decode(&self.ids[self.prefix_offset..], self.skip_special_tokens)?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') && full.is_char_boundary(prefix.len()) {
            let delta = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            return Ok(Some(delta));
        }
        Ok(None)
    }

    /// Text still held back at the end of the stream (an incomplete character decodes lossily).
    pub fn flush(&mut self) -> Result<Option<String>> {
        let prefix =
            self.tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset], self.skip_special_tokens)?;
        let full = self.tokenizer.decode(&self.ids[self.prefix_offset..], self.skip_special_tokens)?;
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        Ok((full.len() > prefix.len() && full.is_char_boundary(prefix.len())).then(|| full[prefix.len()..].to_string()))
    }
}

/// Finds stop strings in streamed text. Text that could still turn into a stop string is held
/// back until the next piece decides it.
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// What [`StopMatcher::push`] lets through.
#[derive(Debug, PartialEq, Eq)]
pub struct StopOutcome {
    /// Text safe to emit now.
    pub text: String,
    /// A stop string was found; `text` ends right before it.
    pub stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        Self { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), held: String::new() }
    }

    pub fn push(&mut self, piece: &str) -> StopOutcome {
        self.held.push_str(piece);
        if self.stops.is_empty() {
            return StopOutcome { text: std::mem::take(&mut self.held), stopped: false };
        }
        if let Some(pos) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let text = self.held[..pos].to_string();
            self.held.clear();
            return StopOutcome { text, stopped: true };
        }
        // Hold back the longest suffix that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| (1..s.len()).rev().filter(|&n| s.is_char_boundary(n)).map(move |n| &s[..n]))
            .filter(|p| self.held.ends_with(p))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let text = self.held[..cut].to_string();
        self.held.drain(..cut);
        StopOutcome { text, stopped: false }
    }

    /// The held-back text, when the stream ends without a stop.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_string_split_across_pieces() {
        let mut m = StopMatcher::new(&["</end>".to_string()]);
        assert_eq!(m.push("hello </"), StopOutcome { text: "hello ".into(), stopped: false });
        assert_eq!(m.push("en"), StopOutcome { text: "".into(), stopped: false });
        assert_eq!(m.push("d> more"), StopOutcome { text: "".into(), stopped: true });
    }

    #[test]
    fn false_start_is_released() {
        let mut m = StopMatcher::new(&["STOP".to_string()]);
        assert_eq!(m.push("ST").text, "");
        assert_eq!(m.push("ART").text, "START");
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn earliest_stop_wins_and_tail_flushes() {
        let mut m = StopMatcher::new(&["b".to_string(), "abc".to_string()]);
        assert_eq!(m.push("xxab"), StopOutcome { text: "xxa".into(), stopped: true });
        let mut m = StopMatcher::new(&["zz".to_string()]);
        assert_eq!(m.push("az").text, "a");
        assert_eq!(m.finish(), "z");
    }

    #[test]
    fn multibyte_stop_prefixes_are_char_aligned() {
        let mut m = StopMatcher::new(&["é!".to_string()]);
        assert_eq!(m.push("café").text, "caf");
        assert_eq!(m.push("!").stopped, true);
    }
}
