//! One [`Tokenizer`] over two sources: Hugging Face `tokenizer.json` files and vocabularies
//! embedded in GGUF files.
//!
//! Both are built on the `tokenizers` crate. HF files load as transformers loads them, so ids and
//! decoded text match `AutoTokenizer` (`hf.rs`). GGUF vocabularies reproduce llama.cpp: its
//! special-token splitting, pre-tokenizer regexes per `tokenizer.ggml.pre`, SentencePiece score
//! merges and detokenizer (`gguf/`).
//!
//! ```no_run
//! # fn main() -> prom_models::Result<()> {
//! use std::path::Path;
//! let tok = prom_models::Tokenizer::from_hf_files(
//!     Path::new("tokenizer.json"),
//!     Some(Path::new("tokenizer_config.json")),
//! )?;
//! let ids = tok.encode("Hello world", true)?;
//! assert_eq!(tok.decode(&ids, true)?, "Hello world");
//! # Ok(()) }
//! ```

mod gguf;
mod hf;

use std::path::Path;

use candle_core::quantized::gguf_file::Content;

use crate::{Error, Result};

/// How [`Tokenizer::encode_with`] treats special tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Add BOS / EOS as the model's settings ask.
    pub add_special_tokens: bool,
    /// Turn special-token text such as `<|im_start|>` in the input into its id. When false,
    /// only user-defined (non-special) added tokens are matched and control tokens are
    /// tokenized as ordinary text (llama.cpp `parse_special = false`, transformers
    /// `split_special_tokens = True`).
    pub parse_special: bool,
}

/// A tokenizer loaded from HF files or a GGUF file. Cheap to share (`&self` everywhere).
pub struct Tokenizer {
    backend: Backend,
    info: Info,
}

enum Backend {
    Hf(Box<hf::Hf>),
    Gguf(Box<gguf::Gguf>),
}

/// What both sources resolve to.
struct Info {
    vocab_size: usize,
    bos_id: Option<u32>,
    bos: Option<String>,
    eos_id: Option<u32>,
    eos: Option<String>,
    /// The EOS id first (when there is one), then other end-of-generation ids by id.
    eos_ids: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    /// Sorted ids of special (control) tokens.
    special: Vec<u32>,
    chat_template: Option<String>,
}

impl Tokenizer {
    /// HF: `tokenizer.json`, with the sibling `tokenizer_config.json` (if present) for bos/eos
    /// tokens, `add_bos_token` / `add_eos_token`, added-token flags and the chat template.
    pub fn from_hf_files(tokenizer_json: &Path, tokenizer_config: Option<&Path>) -> Result<Self> {
        let (hf, info) = hf::load(tokenizer_json, tokenizer_config)?;
        Ok(Self { backend: Backend::Hf(Box::new(hf)), info })
    }

    /// The vocabulary embedded in a GGUF file (`tokenizer.ggml.*` keys). `path` is only used in
    /// error messages.
    pub fn from_gguf(content: &Content, path: &Path) -> Result<Self> {
        let (g, info) = gguf::load(content, path)?;
        Ok(Self { backend: Backend::Gguf(Box::new(g)), info })
    }

    /// Encodes `text`, turning special-token text in it into ids; `add_special_tokens` adds
    /// BOS / EOS as the model's settings ask.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.encode_with(text, EncodeOptions { add_special_tokens, parse_special: true })
    }

    pub fn encode_with(&self, text: &str, opts: EncodeOptions) -> Result<Vec<u32>> {
        match &self.backend {
            Backend::Hf(t) => t.encode(text, opts.add_special_tokens, opts.parse_special),
            Backend::Gguf(t) => t.encode(text, opts.add_special_tokens, opts.parse_special),
        }
    }

    /// Decodes `ids`; with `skip_special_tokens`, control tokens produce no text. Invalid UTF-8
    /// (a character cut between tokens) becomes U+FFFD; ids out of range are an error.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.info.vocab_size) {
            let n = self.info.vocab_size;
            return Err(Error::Tokenizer(format!("token id {bad} is out of range (vocab size {n})")));
        }
        match &self.backend {
            Backend::Hf(t) => t.decode(ids, skip_special_tokens),
            Backend::Gguf(t) => t.decode(ids, skip_special_tokens),
        }
    }

    /// The raw bytes one token contributes to decoded text (GGUF vocabularies only; `None`
    /// for HF ones or an id out of range). Meant for incremental detokenization, where a
    /// character may span tokens.
    pub fn token_bytes(&self, id: u32, show_special: bool) -> Option<&[u8]> {
        match &self.backend {
            Backend::Hf(_) => None,
            Backend::Gguf(t) => t.token_bytes(id, show_special),
        }
    }

    /// The raw vocabulary piece, e.g. `ĠHello` or `▁Hello`.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        match &self.backend {
            Backend::Hf(t) => t.id_to_token(id),
            Backend::Gguf(t) => t.id_to_token(id),
        }
    }

    pub fn token_to_id(&self, tok: &str) -> Option<u32> {
        match &self.backend {
            Backend::Hf(t) => t.token_to_id(tok),
            Backend::Gguf(t) => t.token_to_id(tok),
        }
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.info.vocab_size
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.info.bos_id
    }

    pub fn eos_token_id(&self) -> Option<u32> {
        self.info.eos_id
    }

    /// Ids that end generation: EOS first, then end-of-turn / end-of-message style tokens the
    /// vocabulary declares (for GGUF exactly llama.cpp's end-of-generation set).
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.info.eos_ids
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.info.bos.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.info.eos.as_deref()
    }

    /// Whether `encode(.., true)` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.info.add_bos
    }

    /// Whether `encode(.., true)` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.info.add_eos
    }

    /// Special (control) tokens: those `decode(.., true)` leaves out.
    pub fn is_special(&self, id: u32) -> bool {
        self.info.special.binary_search(&id).is_ok()
    }

    /// GGUF `tokenizer.chat_template`, or `chat_template` of `tokenizer_config.json` (a string,
    /// or the "default" entry of a list of `{name, template}`).
    pub fn chat_template(&self) -> Option<&str> {
        self.info.chat_template.as_deref()
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match self.backend {
            Backend::Hf(_) => "hf",
            Backend::Gguf(_) => "gguf",
        };
        f.debug_struct("Tokenizer")
            .field("source", &source)
            .field("vocab_size", &self.info.vocab_size)
            .field("bos", &self.info.bos)
            .field("eos", &self.info.eos)
            .finish_non_exhaustive()
    }
}

// The engine shares one tokenizer across threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
};
