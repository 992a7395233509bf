//! Builds the `tokenizers::Tokenizer` that encodes the text between special tokens of a GGUF
//! vocab. It holds no added tokens: special tokens are split out beforehand by `partition.rs`
//! with llama.cpp's rules.
//!
//! - `gpt2`: byte-level BPE with the file's merges, behind the regex `Split`s of `pretok.rs`.
//! - `gemma4`: the same BPE on raw UTF-8, spaces as `▁`, `<0xXX>` byte fallback.
//! - `llama` (SentencePiece): llama.cpp merges adjacent symbols whose concatenation is a token,
//!   highest score of the merged token first, leftmost on ties, and falls back to `<0xXX>` bytes.
//!   As HF's `LlamaConverter` does, we express that as BPE merges: every split of every token
//!   into two tokens, ranked by the merged token's score. Equal scores get distinct ranks here
//!   (HF's order: longer left part first), where llama.cpp would take the leftmost pair; the two
//!   agree unless equal-score merges compete for the same symbols, which the vocab test vectors
//!   and the reference test in `tokenizer_llamacpp_vocab.rs` check.

use std::path::Path;

use tokenizers::models::bpe::{Vocab as BpeVocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::vocab::{Model, Vocab};
use crate::{Error, Result};

pub(super) fn encoder(vocab: &mut Vocab, unk: Option<u32>, path: &Path) -> Result<tokenizers::Tokenizer> {
    let err = |what: &str, e: tokenizers::Error| Error::bad_file(path, format!("building the tokenizer ({what}): {e}"));
    let bpe_vocab: BpeVocab = vocab.tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let space_to_meta = || Replace::new(" ", "\u{2581}").map_err(|e| err("normalizer", e));

    match &vocab.model {
        Model::Spm => {
            let mut builder =
                BPE::builder().vocab_and_merges(bpe_vocab, spm_merges(vocab)).byte_fallback(true).fuse_unk(true);
            if let Some(unk) = unk {
                builder = builder.unk_token(vocab.tokens[unk as usize].clone());
            }
            let model = builder.build().map_err(|e| err("SentencePiece merges", e))?;
            let mut tok = tokenizers::Tokenizer::new(model);
            let escape: NormalizerWrapper = space_to_meta()?.into();
            let norm: NormalizerWrapper = if vocab.add_space_prefix {
                NormSequence::new(vec![Prepend::new("\u{2581}".into()).into(), escape]).into()
            } else {
                escape
            };
            tok.with_normalizer(Some(norm)).map_err(|e| err("normalizer", e))?;
            Ok(tok)
        }
        Model::Bpe(spec) => {
            let model = BPE::builder()
                .vocab_and_merges(bpe_vocab, std::mem::take(&mut vocab.merges))
                .ignore_merges(spec.ignore_merges)
                .byte_fallback(!spec.byte_level)
                .build()
                .map_err(|e| err("BPE merges", e))?;
            let mut pre: Vec<PreTokenizerWrapper> = Vec::with_capacity(spec.regexes.len() + 1);
            for r in spec.regexes {
                let split = Split::new(SplitPattern::Regex((*r).to_owned()), SplitDelimiterBehavior::Isolated, false)
                    .map_err(|e| err("pre-tokenizer regex", e))?;
                pre.push(split.into());
            }
            if spec.byte_level {
                pre.push(ByteLevel::new(false, false, false).into());
            }
            let mut tok = tokenizers::Tokenizer::new(model);
            tok.with_pre_tokenizer(Some(PreSequence::new(pre)));
            if vocab.escape_whitespaces {
                tok.with_normalizer(Some(space_to_meta()?)).map_err(|e| err("normalizer", e))?;
            }
            Ok(tok)
        }
    }
}

/// SentencePiece scores as BPE merges: each way of writing a token as two tokens, in the order
/// of HF's `generate_merges` (score descending, then longer left part, then longer right part,
/// then token id).
fn spm_merges(vocab: &Vocab) -> Vec<(String, String)> {
    struct Cand {
        score: f32,
        left_chars: usize,
        right_chars: usize,
        ids: (u32, u32, u32),
        split: usize,
    }
    let mut cands = Vec::new();
    for (id, text) in vocab.tokens.iter().enumerate() {
        let n_chars = text.chars().count();
        for (k, (pos, _)) in text.char_indices().enumerate().skip(1) {
            let (l, r) = text.split_at(pos);
            if let (Some(li), Some(ri)) = (vocab.id(l), vocab.id(r)) {
                cands.push(Cand {
                    score: vocab.scores[id],
                    left_chars: k,
                    right_chars: n_chars - k,
                    ids: (id as u32, li, ri),
                    split: pos,
                });
            }
        }
    }
    cands.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.left_chars.cmp(&a.left_chars))
            .then(b.right_chars.cmp(&a.right_chars))
            .then(a.ids.cmp(&b.ids))
    });
    cands
        .into_iter()
        .map(|c| {
            let (l, r) = vocab.tokens[c.ids.0 as usize].split_at(c.split);
            (l.to_owned(), r.to_owned())
        })
        .collect()
}
