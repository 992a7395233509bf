//! Hugging Face `tokenizer.json` (+ `tokenizer_config.json`), loaded the way transformers 5's
//! `TokenizersBackend` does, so that ids and decoded text match `AutoTokenizer`:
//!
//! - `added_tokens_decoder` entries of the config are added to (or update) the tokenizer's added
//!   tokens; named special tokens missing from the vocab are added as special tokens.
//! - When the config sets `add_bos_token` / `add_eos_token` explicitly, or `tokenizer.json` has no
//!   post-processor, transformers replaces the post-processor with "[bos] $A [eos]" from those
//!   flags; we drop the post-processor and add the ids ourselves.
//! - `clean_up_tokenization_spaces` is applied on decode only for non-BPE models (transformers 5
//!   refuses to apply it to BPE).

use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;
use tokenizers::{AddedToken, ModelWrapper};

use super::Info;
use crate::{Error, Result};

pub(super) struct Hf {
    tok: tokenizers::Tokenizer,
    /// The same tokenizer with special tokens encoded as plain text (made on first use).
    literal: OnceLock<tokenizers::Tokenizer>,
    /// `Some((bos, eos))` when we, not the post-processor, add BOS / EOS.
    manual: Option<(Option<u32>, Option<u32>)>,
    cleanup: bool,
}

/// The parts of `tokenizer_config.json` we use.
#[derive(Default)]
struct Config {
    bos: Option<String>,
    eos: Option<String>,
    other_specials: Vec<String>,
    add_bos: Option<bool>,
    add_eos: Option<bool>,
    cleanup: bool,
    chat_template: Option<String>,
    added: Vec<(u32, AddedToken)>,
}

pub(super) fn load(json: &Path, config: Option<&Path>) -> Result<(Hf, Info)> {
    let mut tok = tokenizers::Tokenizer::from_file(json).map_err(|e| Error::bad_file(json, e.to_string()))?;
    let cfg = match config {
        Some(p) => read_config(p)?,
        None => Config::default(),
    };

    let mut to_add: Vec<AddedToken> = Vec::new();
    let existing = tok.get_added_tokens_decoder();
    for (id, t) in &cfg.added {
        if existing.get(id) != Some(t) {
            to_add.push(t.clone());
        }
    }
    let named = cfg.bos.iter().chain(&cfg.eos).chain(&cfg.other_specials);
    for s in named {
        if tok.token_to_id(s).is_none() && !to_add.iter().any(|t| &t.content == s) {
            to_add.push(AddedToken::from(s.clone(), true));
        }
    }
    if !to_add.is_empty() {
        tok.add_tokens(to_add).map_err(|e| Error::bad_file(json, format!("adding tokens from the config: {e}")))?;
    }

    let bos_id = cfg.bos.as_deref().and_then(|s| tok.token_to_id(s));
    let eos_id = cfg.eos.as_deref().and_then(|s| tok.token_to_id(s));
    let manual = if cfg.add_bos.is_some() || cfg.add_eos.is_some() || tok.get_post_processor().is_none() {
        tok.with_post_processor(None::<tokenizers::PostProcessorWrapper>);
        let bos = bos_id.filter(|_| cfg.add_bos == Some(true));
        let eos = eos_id.filter(|_| cfg.add_eos == Some(true));
        Some((bos, eos))
    } else {
        None
    };

    let added = tok.get_added_tokens_decoder();
    let mut special: Vec<u32> = added.iter().filter(|(_, t)| t.special).map(|(&id, _)| id).collect();
    special.sort_unstable();
    let mut eos_ids: Vec<u32> = eos_id.into_iter().collect();
    let mut eog: Vec<u32> = added
        .iter()
        .filter(|(_, t)| t.special && super::gguf::EOG_TEXTS.contains(&t.content.as_str()))
        .map(|(&id, _)| id)
        .filter(|&id| Some(id) != eos_id)
        .collect();
    eog.sort_unstable();
    eos_ids.extend(eog);

    let is_bpe = matches!(tok.get_model(), ModelWrapper::BPE(_));
    let hf = Hf { tok, literal: OnceLock::new(), manual, cleanup: cfg.cleanup && !is_bpe };
    // What "add special tokens" adds, whichever way it is configured.
    let probe = hf.encode("", true, true).map_err(|e| Error::bad_file(json, e.to_string()))?;
    let info = Info {
        // Ids run to the highest added token even if some in between are unused.
        vocab_size: hf.tok.get_vocab_size(true).max(added.keys().max().map_or(0, |&m| m as usize + 1)),
        bos_id,
        bos: cfg.bos.filter(|_| bos_id.is_some()),
        eos_ids,
        eos_id,
        eos: cfg.eos.filter(|_| eos_id.is_some()),
        add_bos: bos_id.is_some() && probe.first() == bos_id.as_ref(),
        add_eos: eos_id.is_some() && probe.last() == eos_id.as_ref(),
        special,
        chat_template: cfg.chat_template,
    };
    Ok((hf, info))
}

impl Hf {
    pub(super) fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let tok = if parse_special {
            &self.tok
        } else {
            self.literal.get_or_init(|| {
                let mut t = self.tok.clone();
                t.set_encode_special_tokens(true);
                t
            })
        };
        let enc = tok.encode_fast(text, add_special).map_err(|e| Error::Tokenizer(format!("encoding: {e}")))?;
        let ids = enc.get_ids();
        match self.manual {
            Some((bos, eos)) if add_special => {
                let mut out = Vec::with_capacity(ids.len() + 2);
                out.extend(bos);
                out.extend_from_slice(ids);
                out.extend(eos);
                Ok(out)
            }
            _ => Ok(ids.to_vec()),
        }
    }

    pub(super) fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let text = self.tok.decode(ids, skip_special).map_err(|e| Error::Tokenizer(format!("decoding: {e}")))?;
        Ok(if self.cleanup { clean_up_tokenization(&text) } else { text })
    }

    pub(super) fn id_to_token(&self, id: u32) -> Option<String> {
        self.tok.id_to_token(id)
    }

    pub(super) fn token_to_id(&self, tok: &str) -> Option<u32> {
        self.tok.token_to_id(tok)
    }
}

/// transformers' `clean_up_tokenization`.
fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

fn read_config(path: &Path) -> Result<Config> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| Error::bad_file(path, format!("not JSON: {e}")))?;
    let bad = |field: &str, msg: &str| Error::bad_file(path, format!("`{field}`: {msg}"));
    let Value::Object(m) = &v else { return Err(bad("(top level)", "expected a JSON object")) };

    let token = |field: &str| -> Result<Option<String>> {
        match m.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => token_content(v).map(Some).ok_or_else(|| bad(field, "expected a string or {\"content\": ...}")),
        }
    };
    let flag = |field: &str| -> Result<Option<bool>> {
        match m.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(bad(field, "expected a bool")),
        }
    };

    let mut other_specials = Vec::new();
    for field in ["unk_token", "pad_token", "sep_token", "cls_token", "mask_token"] {
        other_specials.extend(token(field)?);
    }
    for field in ["additional_special_tokens", "extra_special_tokens"] {
        match m.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let s = token_content(item).ok_or_else(|| bad(field, &format!("element {i} is not a token")))?;
                    other_specials.push(s);
                }
            }
            // transformers 5 also allows a {name: token} map here.
            Some(Value::Object(named)) => other_specials.extend(named.values().filter_map(token_content)),
            Some(_) => return Err(bad(field, "expected a list of tokens")),
        }
    }

    let mut added = Vec::new();
    match m.get("added_tokens_decoder") {
        None | Some(Value::Null) => {}
        Some(Value::Object(entries)) => {
            for (id, t) in entries {
                let field = format!("added_tokens_decoder.{id}");
                let id: u32 = id.parse().map_err(|_| bad(&field, "the key is not a token id"))?;
                added.push((
                    id,
                    added_token(t).ok_or_else(|| bad(&field, "expected {\"content\": ..., \"special\": ...}"))?,
                ));
            }
            added.sort_by_key(|(id, _)| *id);
        }
        Some(_) => return Err(bad("added_tokens_decoder", "expected an object")),
    }

    let chat_template = match m.get("chat_template") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(list)) => {
            let named = |name: &str| list.iter().find(|e| e.get("name").and_then(Value::as_str) == Some(name));
            let entry = named("default")
                .ok_or_else(|| bad("chat_template", "a list of templates without a \"default\" entry"))?;
            let t = entry.get("template").and_then(Value::as_str);
            Some(t.ok_or_else(|| bad("chat_template", "the \"default\" entry has no \"template\" string"))?.to_owned())
        }
        Some(_) => return Err(bad("chat_template", "expected a string or a list of {name, template}")),
    };

    Ok(Config {
        bos: token("bos_token")?,
        eos: token("eos_token")?,
        other_specials,
        add_bos: flag("add_bos_token")?,
        add_eos: flag("add_eos_token")?,
        cleanup: flag("clean_up_tokenization_spaces")?.unwrap_or(false),
        chat_template,
        added,
    })
}

/// A token given as a string or as an `AddedToken` dict.
fn token_content(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn added_token(v: &Value) -> Option<AddedToken> {
    let content = v.get("content")?.as_str()?;
    let flag = |k: &str, default: bool| v.get(k).and_then(Value::as_bool).unwrap_or(default);
    let special = flag("special", false);
    Some(
        AddedToken::from(content.to_owned(), special)
            .single_word(flag("single_word", false))
            .lstrip(flag("lstrip", false))
            .rstrip(flag("rstrip", false))
            .normalized(flag("normalized", !special)),
    )
}
