//! Prometheus model layer: everything needed to turn files on disk into a runnable decoder.
//!
//! - [`config`]: a family's HF `config.json` or GGUF metadata → one resolved [`ModelConfig`].
//! - [`nn`]: the one composable decoder (attention, MLP, norms, RoPE, KV cache).
//! - [`cuda`]: the CUDA backend's device selection, KV pool and paged-attention kernels.
//! - [`parallel`]: tensor parallelism (sharded loading, collectives, lockstep ranks).
//! - [`kernels`]: our CPU matmul for GGUF Q4_0/Q4_1/Q8_0 weights (AVX-512 VNNI, AVX2, scalar).
//! - [`loader`]: safetensors (memory-mapped, sharded) and GGUF tensors behind one [`loader::Weights`].
//! - [`tokenizer`]: HF `tokenizer.json` and GGUF-embedded vocabularies behind one [`Tokenizer`].
//! - [`chat`]: HF-compatible chat templates (minijinja).
//! - [`source`]: resolving `org/name`, a directory or a `.gguf` file to [`source::ModelFiles`].

pub mod chat;
pub mod config;
pub mod cuda;
mod error;
pub mod generation_config;
pub mod kernels;
pub mod load;
pub mod loader;
pub mod nn;
pub mod parallel;
pub mod quant;
pub mod source;
pub mod tokenizer;

pub use config::ModelConfig;
pub use error::{Error, Result, TensorContext};
pub use tokenizer::Tokenizer;
