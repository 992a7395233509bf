//! Where requests run. A [`Backend`] scores token sequences and generates text; this module
//! turns lm-eval's three request types into those calls the way lm-eval's HF model does
//! (`lm_eval/models/huggingface.py`, `lm_eval/utils.py`): context/continuation split with
//! trailing context spaces moved to the continuation, left truncation, and disjoint rolling
//! windows for perplexity.

mod engine;
mod openai;

pub use engine::EngineBackend;
pub use openai::OpenAiBackend;

use crate::Result;

/// Score `tokens[ctx_len..]`, each given all tokens before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreRequest {
    pub tokens: Vec<u32>,
    pub ctx_len: usize,
}

/// lm-eval's loglikelihood result: the summed logprob (nats) and whether every continuation
/// token was the argmax.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub logprob: f64,
    pub is_greedy: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenRequest {
    pub context: String,
    /// Stop strings; the text is cut at the first one.
    pub until: Vec<String>,
    pub max_gen_toks: usize,
    /// 0 = greedy.
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u64>,
}

/// Called with the number of requests just finished.
pub type Progress<'a> = &'a (dyn Fn(usize) + Sync);

/// A model to evaluate: in-process ([`EngineBackend`]) or over HTTP ([`OpenAiBackend`]).
pub trait Backend: Send + Sync {
    /// For the results file (`config.model`).
    fn describe(&self) -> String;
    /// Tokenize without special tokens.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
    /// The token an empty context stands for (BOS, else EOS), as lm-eval's `prefix_token_id`.
    fn prefix_token(&self) -> Result<u32>;
    /// Longest token sequence one score request may hold.
    fn max_length(&self) -> usize;
    fn score(&self, reqs: &[ScoreRequest], progress: Progress) -> Result<Vec<Scored>>;
    fn generate(&self, reqs: &[GenRequest], progress: Progress) -> Result<Vec<String>>;
}

/// lm-eval `_encode_pair`: trailing whitespace of the context moves to the continuation; the
/// pair is encoded whole and the continuation is the tail past the context's own encoding.
pub fn encode_pair(b: &dyn Backend, context: &str, continuation: &str) -> Result<ScoreRequest> {
    if context.is_empty() {
        let mut tokens = vec![b.prefix_token()?];
        tokens.extend(b.encode(continuation)?);
        return Ok(ScoreRequest { tokens, ctx_len: 1 });
    }
    let trimmed = context.trim_end();
    let (ctx, cont) = (trimmed, format!("{}{continuation}", &context[trimmed.len()..]));
    let whole = b.encode(&format!("{ctx}{cont}"))?;
    let ctx_len = b.encode(ctx)?.len().min(whole.len());
    Ok(ScoreRequest { tokens: whole, ctx_len })
}

/// Keeps the last `max_len` tokens (lm-eval truncates from the left), at least one of context.
pub fn truncate_left(mut r: ScoreRequest, max_len: usize) -> ScoreRequest {
    if r.tokens.len() > max_len {
        let cut = r.tokens.len() - max_len;
        r.tokens.drain(..cut);
        r.ctx_len = r.ctx_len.saturating_sub(cut).max(1);
    }
    r
}

pub fn loglikelihood(b: &dyn Backend, pairs: &[(String, String)], progress: Progress) -> Result<Vec<Scored>> {
    let max = b.max_length();
    let reqs =
        pairs.iter().map(|(c, x)| encode_pair(b, c, x).map(|r| truncate_left(r, max))).collect::<Result<Vec<_>>>()?;
    b.score(&reqs, progress)
}

/// lm-eval `get_rolling_token_windows` + `make_disjoint_window`: every token scored exactly
/// once; the first window is conditioned on the prefix token, later ones on up to
/// `max_seq_len` preceding tokens.
pub fn rolling_windows(tokens: &[u32], prefix: u32, max_seq_len: usize) -> Vec<ScoreRequest> {
    let mut out = Vec::new();
    if tokens.is_empty() || max_seq_len == 0 {
        return out;
    }
    let first = max_seq_len.min(tokens.len());
    let mut t = vec![prefix];
    t.extend_from_slice(&tokens[..first]);
    out.push(ScoreRequest { tokens: t, ctx_len: 1 });
    let mut predicted = first;
    while predicted < tokens.len() {
        let pred_len = (tokens.len() - predicted).min(max_seq_len);
        let end = predicted + pred_len;
        // Context: the tokens before the window, so that context + window is max_seq_len + 1.
        let start = end.saturating_sub(max_seq_len + 1);
        out.push(ScoreRequest { tokens: tokens[start..end].to_vec(), ctx_len: predicted - start });
        predicted = end;
    }
    out
}

/// Summed loglikelihood of each text over rolling windows (for perplexity).
pub fn loglikelihood_rolling(b: &dyn Backend, texts: &[String], progress: Progress) -> Result<Vec<f64>> {
    let prefix = b.prefix_token()?;
    // One token of room: a window plus its context must fit `max_length`.
    let max_seq_len = b.max_length().saturating_sub(1).max(1);
    let mut reqs = Vec::new();
    let mut owner = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        for w in rolling_windows(&b.encode(t)?, prefix, max_seq_len) {
            reqs.push(w);
            owner.push(i);
        }
    }
    let scored = b.score(&reqs, progress)?;
    let mut sums = vec![0.0; texts.len()];
    for (s, &i) in scored.iter().zip(&owner) {
        sums[i] += s.logprob;
    }
    Ok(sums)
}

/// Cuts `text` at the first occurrence of any stop string (lm-eval's post-processing).
pub fn cut_at_stop(text: &str, until: &[String]) -> String {
    let cut = until.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min();
    cut.map_or_else(|| text.to_string(), |i| text[..i].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every token appears as a continuation token exactly once, in order, and each window's
    /// context is the tokens right before it.
    #[test]
    fn rolling_windows_score_each_token_once() {
        let tokens: Vec<u32> = (10..37).collect();
        for max in [1, 4, 8, 26, 27, 100] {
            let w = rolling_windows(&tokens, 0, max);
            let scored: Vec<u32> = w.iter().flat_map(|r| r.tokens[r.ctx_len..].to_vec()).collect();
            assert_eq!(scored, tokens, "max_seq_len {max}");
            assert_eq!(w[0].tokens[0], 0);
            for r in &w {
                assert!(r.tokens.len() <= max + 1, "window too long: {}", r.tokens.len());
                assert!(r.ctx_len >= 1);
            }
            for r in &w[1..] {
                let first_pred = r.tokens[r.ctx_len];
                assert_eq!(r.tokens[r.ctx_len - 1] + 1, first_pred, "context is contiguous");
            }
        }
    }

    /// lm-eval's worked example (`test_utils.py::test_get_rolling_token_windows_v1` shape):
    /// max_seq_len 4, 10 tokens.
    #[test]
    fn rolling_windows_match_lm_eval_layout() {
        let tokens: Vec<u32> = (0..10).collect();
        let w = rolling_windows(&tokens, 99, 4);
        let got: Vec<(Vec<u32>, usize)> = w.into_iter().map(|r| (r.tokens, r.ctx_len)).collect();
        assert_eq!(got, vec![(vec![99, 0, 1, 2, 3], 1), (vec![3, 4, 5, 6, 7], 1), (vec![5, 6, 7, 8, 9], 3)]);
    }

    #[test]
    fn stop_strings_cut_at_the_earliest() {
        let until = vec!["Question:".to_string(), "\n\n".to_string()];
        assert_eq!(cut_at_stop("42\n\nQuestion: x", &until), "42");
        assert_eq!(cut_at_stop("no stop", &until), "no stop");
    }

    #[test]
    fn truncation_keeps_the_tail_and_one_context_token() {
        let r = ScoreRequest { tokens: (0..10).collect(), ctx_len: 8 };
        let t = truncate_left(r, 5);
        assert_eq!((t.tokens, t.ctx_len), ((5..10).collect::<Vec<u32>>(), 3));
        let r = ScoreRequest { tokens: (0..10).collect(), ctx_len: 2 };
        assert_eq!(truncate_left(r, 5).ctx_len, 1);
    }
}
