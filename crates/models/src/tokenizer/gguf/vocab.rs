//! The `tokenizer.ggml.*` keys of a GGUF file, read and checked into plain data: the token list,
//! scores, attributes, merges and the flags llama.cpp derives from the model and pre-tokenizer
//! type (`llama_vocab::impl::load`). Special-token ids and end-of-generation fix-ups live in
//! `special.rs`.

use std::collections::HashMap;

use super::attr::Attr;
use super::meta::Meta;
use super::pretok::{self, PreSpec};
use crate::Result;

pub(super) const KEY_MODEL: &str = "tokenizer.ggml.model";
pub(super) const KEY_PRE: &str = "tokenizer.ggml.pre";
pub(super) const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
pub(super) const KEY_SCORES: &str = "tokenizer.ggml.scores";
pub(super) const KEY_TYPES: &str = "tokenizer.ggml.token_type";
pub(super) const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";

/// Which tokenizer algorithm the vocab needs.
#[derive(Debug, Clone)]
pub(super) enum Model {
    /// `llama`: SentencePiece BPE, merges ranked by the score of the merged piece.
    Spm,
    /// `gpt2` (and `gemma4`): BPE with explicit merges and a regex pre-tokenizer.
    Bpe(PreSpec),
}

pub(super) struct Vocab {
    pub model: Model,
    pub tokens: Vec<String>,
    /// One per token; 0.0 when the file has no scores (llama.cpp's default).
    pub scores: Vec<f32>,
    pub attrs: Vec<Attr>,
    pub token_to_id: HashMap<String, u32>,
    /// BPE only, in rank order, each pair and its concatenation known to be in the vocab.
    /// Moved into the encoder when it is built.
    pub merges: Vec<(String, String)>,
    /// Encoding prepends a space to each run of text (SPM).
    pub add_space_prefix: bool,
    /// Detokenizing removes spaces before punctuation (llama.cpp `clean_spaces`).
    pub clean_spaces: bool,
    /// Spaces are `▁` in the vocab of a BPE model (gemma4).
    pub escape_whitespaces: bool,
}

impl Vocab {
    pub(super) fn n_tokens(&self) -> usize {
        self.tokens.len()
    }

    pub(super) fn id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }
}

pub(super) fn read(meta: &Meta) -> Result<Vocab> {
    let model_name =
        meta.string(KEY_MODEL)?.ok_or_else(|| meta.bad(KEY_MODEL, "missing (this GGUF has no tokenizer)"))?;
    let pre = meta.string(KEY_PRE)?;
    let model = match model_name {
        "llama" => Model::Spm,
        "gpt2" => Model::Bpe(pre_spec(meta, pre)?),
        // gemma4 ignores the pre key: llama.cpp forces the "gemma4" pre-tokenizer.
        "gemma4" => Model::Bpe(pre_spec(meta, Some("gemma4"))?),
        other => {
            let msg = format!("unsupported tokenizer model {other:?} (supported: llama, gpt2, gemma4)");
            return Err(meta.bad(KEY_MODEL, msg));
        }
    };

    let raw_tokens = meta
        .string_array(KEY_TOKENS)?
        .ok_or_else(|| meta.bad(KEY_TOKENS, "missing: the vocabulary list is required"))?;
    if raw_tokens.is_empty() {
        return Err(meta.bad(KEY_TOKENS, "the vocabulary is empty"));
    }
    if u32::try_from(raw_tokens.len()).is_err() {
        return Err(meta.bad(KEY_TOKENS, format!("{} tokens do not fit u32 ids", raw_tokens.len())));
    }
    let n = raw_tokens.len();

    let mut tokens = Vec::with_capacity(n);
    let mut token_to_id = HashMap::with_capacity(n);
    for (i, t) in raw_tokens.iter().enumerate() {
        // llama.cpp renames empty tokens so that every token has a unique, non-empty text.
        let text = if t.is_empty() { format!("[EMPTY_{i}]") } else { (*t).to_owned() };
        if let Some(prev) = token_to_id.insert(text.clone(), i as u32) {
            let msg = format!("tokens {prev} and {i} are both {text:?} (llama.cpp rejects this vocab too)");
            return Err(meta.bad(KEY_TOKENS, msg));
        }
        tokens.push(text);
    }

    let scores = match meta.score_array(KEY_SCORES)? {
        Some(s) if s.len() < n => {
            return Err(meta.bad(KEY_SCORES, format!("{} scores for {n} tokens", s.len())));
        }
        Some(mut s) => {
            s.truncate(n);
            s
        }
        None => vec![0.0; n],
    };
    let attrs = match meta.i32_array(KEY_TYPES)? {
        Some(t) if t.len() < n => {
            return Err(meta.bad(KEY_TYPES, format!("{} token types for {n} tokens", t.len())));
        }
        Some(t) => t.iter().take(n).map(|&t| Attr::from_gguf_type(t)).collect(),
        None => vec![Attr::NORMAL; n],
    };

    let merges = match &model {
        Model::Spm => Vec::new(),
        Model::Bpe(_) => read_merges(meta, &token_to_id)?,
    };

    let (default_prefix, clean_spaces, escape_whitespaces) = match &model {
        Model::Spm => (true, false, false),
        Model::Bpe(spec) => (false, spec.clean_spaces, !spec.byte_level),
    };
    let add_space_prefix = meta.bool(KEY_ADD_SPACE_PREFIX)?.unwrap_or(default_prefix);

    Ok(Vocab { model, tokens, scores, attrs, token_to_id, merges, add_space_prefix, clean_spaces, escape_whitespaces })
}

fn pre_spec(meta: &Meta, pre: Option<&str>) -> Result<PreSpec> {
    pretok::lookup(pre).ok_or_else(|| {
        let msg = format!("unsupported pre-tokenizer {:?} (supported: {})", pre.unwrap_or_default(), pretok::SUPPORTED);
        meta.bad(KEY_PRE, msg)
    })
}

/// Merges are "left right" strings split at the first space after the first byte (llama.cpp),
/// so a left part may itself start with a space. Both parts and their concatenation must be
/// tokens: `tokenizers` would otherwise reject (or index past) the merge table. Repeated pairs
/// keep their first rank, as llama.cpp's `bpe_ranks.emplace` does.
fn read_merges(meta: &Meta, vocab: &HashMap<String, u32>) -> Result<Vec<(String, String)>> {
    let raw = meta
        .string_array(KEY_MERGES)?
        .ok_or_else(|| meta.bad(KEY_MERGES, "missing: BPE vocabularies need their merges"))?;
    let mut seen = std::collections::HashSet::with_capacity(raw.len());
    let mut merges = Vec::with_capacity(raw.len());
    let mut merged = String::new();
    for (i, m) in raw.iter().enumerate() {
        let split = m.char_indices().skip(1).find(|&(_, c)| c == ' ').map(|(p, _)| p);
        let Some(pos) = split else {
            return Err(meta.bad(KEY_MERGES, format!("merge {i} {m:?} has no space separating its two parts")));
        };
        let (left, right) = (&m[..pos], &m[pos + 1..]);
        let id = |part: &str| {
            vocab.get(part).copied().ok_or_else(|| {
                let msg = format!("merge {i} {m:?} refers to {part:?}, which is not in the vocabulary");
                meta.bad(KEY_MERGES, msg)
            })
        };
        let pair = (id(left)?, id(right)?);
        merged.clear();
        merged.push_str(left);
        merged.push_str(right);
        if !vocab.contains_key(merged.as_str()) {
            let msg = format!("merge {i} {m:?} produces {merged:?}, which is not in the vocabulary");
            return Err(meta.bad(KEY_MERGES, msg));
        }
        if seen.insert(pair) {
            merges.push((left.to_owned(), right.to_owned()));
        }
    }
    Ok(merges)
}
