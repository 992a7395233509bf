//! Tokenizers embedded in GGUF files (`tokenizer.ggml.*`), matching llama.cpp's ids.
//!
//! Loading mirrors `llama_vocab::impl::load` (`vocab.rs`, `special.rs`); encoding splits special
//! tokens out first (`partition.rs`) and hands each stretch of text to a `tokenizers` BPE built
//! from the vocab (`build.rs`); decoding follows llama.cpp's per-token rules (`decode.rs`).

mod attr;
mod build;
mod decode;
mod meta;
mod partition;
mod pretok;
mod special;
mod vocab;

use std::path::Path;

use candle_core::quantized::gguf_file::Content;

use self::attr::Attr;
use self::decode::Pieces;
use self::meta::Meta;
use self::partition::{Fragment, Partitioner};
use self::vocab::Vocab;
use super::Info;
use crate::{Error, Result};

pub(super) use self::special::EOG_TEXTS;

pub(super) struct Gguf {
    vocab: Vocab,
    encoder: tokenizers::Tokenizer,
    partitioner: Partitioner,
    pieces: Pieces,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
}

pub(super) fn load(content: &Content, path: &Path) -> Result<(Gguf, Info)> {
    let meta = Meta::new(&content.metadata, path);
    let mut vocab = vocab::read(&meta)?;
    // Model-name-based fix-ups need these; both are optional.
    let name = meta.string("general.name")?.unwrap_or_default();
    let arch = meta.string("general.architecture")?.unwrap_or_default();
    let sp = special::resolve(&meta, &mut vocab, name, arch)?;
    let chat_template = meta.string("tokenizer.chat_template")?.map(str::to_owned);

    let encoder = build::encoder(&mut vocab, sp.unk, path)?;
    let partitioner = Partitioner::new(&vocab);
    let pieces = Pieces::new(&vocab);
    let text = |id: Option<u32>| id.map(|i| vocab.tokens[i as usize].clone());
    let special: Vec<u32> =
        (0..vocab.n_tokens() as u32).filter(|&i| vocab.attrs[i as usize].has(Attr::CONTROL | Attr::UNKNOWN)).collect();
    let info = Info {
        vocab_size: vocab.n_tokens(),
        bos_id: sp.bos,
        bos: text(sp.bos),
        eos_id: sp.eos,
        eos: text(sp.eos),
        eos_ids: sp.eog.clone(),
        add_bos: sp.add_bos && sp.bos.is_some(),
        add_eos: sp.add_eos && sp.eos.is_some(),
        special,
        chat_template,
    };
    let gguf = Gguf {
        encoder,
        partitioner,
        pieces,
        bos: sp.bos,
        eos: sp.eos,
        add_bos: info.add_bos,
        add_eos: info.add_eos,
        vocab,
    };
    Ok((gguf, info))
}

impl Gguf {
    /// llama.cpp `tokenize(text, add_special, parse_special)`.
    pub(super) fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        for frag in self.partitioner.split(text, &self.vocab, parse_special) {
            match frag {
                Fragment::Token(id) => out.push(id),
                Fragment::Text(s) => {
                    let enc =
                        self.encoder.encode_fast(s, false).map_err(|e| Error::Tokenizer(format!("encoding: {e}")))?;
                    out.extend_from_slice(enc.get_ids());
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        Ok(out)
    }

    /// llama.cpp `detokenize(ids, remove_special = skip, unparse_special = !skip)`: skipping
    /// drops a leading BOS / trailing EOS the model adds and renders control tokens as nothing.
    pub(super) fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let n = self.vocab.n_tokens();
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= n) {
            return Err(Error::Tokenizer(format!("token id {bad} is out of range (vocab size {n})")));
        }
        let mut ids = ids;
        let mut strip_space = true;
        if skip_special && self.add_bos && self.bos.is_some() && ids.first() == self.bos.as_ref() {
            ids = &ids[1..];
            strip_space = false;
        }
        if skip_special && self.add_eos && self.eos.is_some() && ids.last() == self.eos.as_ref() {
            ids = &ids[..ids.len() - 1];
        }
        let bytes = self.pieces.detokenize(ids, skip_special, strip_space);
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub(super) fn token_bytes(&self, id: u32, show_special: bool) -> Option<&[u8]> {
        self.pieces.token_bytes(id, show_special)
    }

    pub(super) fn id_to_token(&self, id: u32) -> Option<String> {
        self.vocab.tokens.get(id as usize).cloned()
    }

    pub(super) fn token_to_id(&self, tok: &str) -> Option<u32> {
        self.vocab.id(tok)
    }
}
