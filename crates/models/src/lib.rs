//! Prometheus model layer: everything needed to turn files on disk into a runnable decoder.
//!
//! - [`config`]: a family's HF `config.json` or GGUF metadata → one resolved [`ModelConfig`].
//! - [`nn`]: the one composable decoder (attention, MLP, norms, RoPE, KV cache).
//! - [`loader`]: safetensors (memory-mapped, sharded) and GGUF tensors behind one [`loader::Weights`].
//! - [`tokenizer`]: HF `tokenizer.json` and GGUF-embedded vocabularies behind one [`Tokenizer`].
//! - [`chat`]: HF-compatible chat templates (minijinja).
//! - [`source`]: resolving `org/name`, a directory or a `.gguf` file to [`source::ModelFiles`].

pub mod chat;
pub mod config;
mod error;
pub mod generation_config;
pub mod load;
pub mod loader;
pub mod nn;
pub mod source;
pub mod tokenizer;

pub use config::ModelConfig;
pub use error::{Error, Result, TensorContext};
pub use tokenizer::Tokenizer;
