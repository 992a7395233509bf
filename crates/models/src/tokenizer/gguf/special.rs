//! Special-token ids, BOS/EOS flags and the end-of-generation set of a GGUF vocab, with the
//! text-based fix-ups llama.cpp applies after reading the keys (`llama_vocab::impl::load`):
//! end-of-turn / FIM tokens found by their text are promoted to control tokens, and the set of
//! tokens that end generation is assembled from eos, eot, eom, FIM pad/repo/sep and a list of
//! well-known texts. These promotions change tokenization (control tokens are not split out of
//! text unless special parsing is on), so they are not cosmetic.
//!
//! Deliberate difference: llama.cpp defaults BOS and EOS of `gpt2` vocabs to id 11 (a Falcon
//! relic); we leave them unset when the file does not name them.

use std::collections::BTreeSet;

use super::attr::Attr;
use super::meta::Meta;
use super::pretok::PreSpec;
use super::vocab::{Model, Vocab};
use crate::Result;

pub(super) struct Specials {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    /// End-of-generation tokens: eos first, then the rest by id.
    pub eog: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
}

const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
pub(crate) const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// An optional id key; present ids must name a token of this vocab.
fn id_key(meta: &Meta, key: &str, n_tokens: usize) -> Result<Option<u32>> {
    match meta.token_id(key)? {
        Some(id) if id as usize >= n_tokens => {
            Err(meta.bad(key, format!("token id {id} is out of range (the vocab has {n_tokens} tokens)")))
        }
        other => Ok(other),
    }
}

/// The first token (by id) whose text is in `texts`, promoted to a control token.
fn detect(vocab: &mut Vocab, texts: &[&str]) -> Option<u32> {
    let id = (0..vocab.n_tokens()).find(|&i| texts.contains(&vocab.tokens[i].as_str()))?;
    vocab.attrs[id] = vocab.attrs[id] | Attr::CONTROL;
    Some(id as u32)
}

pub(super) fn resolve(meta: &Meta, vocab: &mut Vocab, general_name: &str, arch: &str) -> Result<Specials> {
    let n = vocab.n_tokens();
    let pre: Option<PreSpec> = match &vocab.model {
        Model::Spm => None,
        Model::Bpe(spec) => Some(spec.clone()),
    };
    let in_range = |id: u32| (id as usize) < n;

    // Defaults, then keys.
    let (mut bos, mut eos, mut unk) = match &pre {
        None => (Some(1), Some(2), Some(0)),
        Some(_) => (None, None, None),
    };
    bos = bos.filter(|&i| in_range(i));
    eos = eos.filter(|&i| in_range(i));
    unk = unk.filter(|&i| in_range(i));
    if pre.as_ref().is_some_and(|p| p.no_bos) {
        bos = None;
    }
    let key = |k: &str| id_key(meta, &format!("tokenizer.ggml.{k}"), n);
    bos = key("bos_token_id")?.or(bos);
    eos = key("eos_token_id")?.or(eos);
    unk = key("unknown_token_id")?.or(unk);
    let mut eot = key("eot_token_id")?;
    let mut eom = key("eom_token_id")?;
    let mut fim_pre = key("fim_pre_token_id")?.or(key("prefix_token_id")?);
    let mut fim_suf = key("fim_suf_token_id")?.or(key("suffix_token_id")?);
    let mut fim_mid = key("fim_mid_token_id")?.or(key("middle_token_id")?);
    let mut fim_pad = key("fim_pad_token_id")?;
    let mut fim_rep = key("fim_rep_token_id")?;
    let mut fim_sep = key("fim_sep_token_id")?;

    let (default_bos, default_eos) = match &pre {
        None => (true, false),
        Some(p) => (p.add_bos, false),
    };
    let mut add_bos = meta.bool("tokenizer.ggml.add_bos_token")?.unwrap_or(default_bos);
    let add_eos = meta.bool("tokenizer.ggml.add_eos_token")?.unwrap_or(default_eos);
    // llama.cpp forces BOS for gemma4-style vocabs whatever the key says.
    if pre.as_ref().is_some_and(|p| !p.byte_level && p.add_bos) {
        add_bos = true;
    }

    // Tokens found by their text when no key named them.
    for (slot, texts) in [
        (&mut eot, EOT_TEXTS),
        (&mut eom, EOM_TEXTS),
        (&mut fim_pre, FIM_PRE_TEXTS),
        (&mut fim_suf, FIM_SUF_TEXTS),
        (&mut fim_mid, FIM_MID_TEXTS),
        (&mut fim_pad, FIM_PAD_TEXTS),
        (&mut fim_rep, FIM_REP_TEXTS),
        (&mut fim_sep, FIM_SEP_TEXTS),
    ] {
        if slot.is_none() {
            *slot = detect(vocab, texts);
        }
    }

    let mut eog: BTreeSet<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
    for i in 0..n {
        let text = vocab.tokens[i].as_str();
        if EOG_TEXTS.contains(&text) {
            eog.insert(i as u32);
            vocab.attrs[i] = vocab.attrs[i] | Attr::CONTROL;
        }
        // gpt-oss: these structure tokens are always rendered.
        if matches!(text, "<|channel|>" | "<|message|>" | "<|start|>" | "<|constrain|>") {
            vocab.attrs[i] = Attr::USER_DEFINED;
        }
    }
    eog.extend([eos, eot, eom].into_iter().flatten());

    // o200k-harmony / solar-open: "<|end|>" ends a message, not the generation.
    let end_id = eog.iter().copied().find(|&i| vocab.tokens[i as usize] == "<|end|>");
    if let Some(end_id) = end_id {
        let returns = has_text(vocab, &eog, &["<|return|>"]);
        let calls = has_text(vocab, &eog, &["<|call|>", "<|calls|>"]);
        let flush = has_text(vocab, &eog, &["<|flush|>"]);
        if calls && (returns || flush) {
            eog.remove(&end_id);
            vocab.attrs[end_id as usize] = Attr::USER_DEFINED;
        }
    }
    // gemma4 / plamo: "</s>" is an ordinary token there.
    let s_id = eog.iter().copied().find(|&i| vocab.tokens[i as usize] == "</s>");
    if let Some(s_id) = s_id {
        if has_text(vocab, &eog, &["<|tool_response>", "<|plamo:eos|>"]) {
            eog.remove(&s_id);
            vocab.attrs[s_id as usize] = Attr::NORMAL;
        }
    }

    apply_model_attrs(vocab, general_name, arch, meta.string("tokenizer.ggml.pre")?.unwrap_or(""));

    let mut eog_list: Vec<u32> = eos.into_iter().collect();
    eog_list.extend(eog.iter().copied().filter(|&i| Some(i) != eos));
    Ok(Specials { bos, eos, unk, eog: eog_list, add_bos, add_eos })
}

fn has_text(vocab: &Vocab, ids: &BTreeSet<u32>, texts: &[&str]) -> bool {
    ids.iter().any(|&i| texts.contains(&vocab.tokens[i as usize].as_str()))
}

fn set_attr(vocab: &mut Vocab, text: &str, attr: Attr, on: bool) {
    if let Some(id) = vocab.id(text) {
        let a = vocab.attrs[id as usize];
        vocab.attrs[id as usize] = if on { a.with(attr) } else { a.without(attr) };
    }
}

/// Per-model strip flags llama.cpp sets by model name ("Handle per token attributes").
fn apply_model_attrs(vocab: &mut Vocab, general_name: &str, arch: &str, pre: &str) {
    let name = general_name.to_lowercase();
    if ["jina-v2-de", "jina-v2-es", "jina-v2-code"].iter().any(|p| pre.contains(p))
        || ["nomic-bert-moe", "jina-bert-v3"].iter().any(|a| arch.contains(a))
    {
        set_attr(vocab, "<mask>", Attr::LSTRIP, true);
    } else if name.contains("phi-3") || name.contains("phi3") {
        let special = Attr::CONTROL | Attr::USER_DEFINED | Attr::UNKNOWN;
        for a in vocab.attrs.iter_mut().filter(|a| a.has(special)) {
            *a = a.with(Attr::RSTRIP);
        }
        set_attr(vocab, "</s>", Attr::RSTRIP, true);
        for t in ["<unk>", "<s>", "<|endoftext|>"] {
            set_attr(vocab, t, Attr::RSTRIP, false);
        }
    } else if name.contains("modern-bert") {
        set_attr(vocab, "[MASK]", Attr::LSTRIP, true);
    }
}
