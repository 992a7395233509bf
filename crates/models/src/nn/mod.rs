//! The one composable decoder. Every family is this code with different [`crate::config`]
//! options: one [`Attention`](attention::Attention) (MHA/MQA/GQA, qkv bias, QK-norm, sliding
//! window, softcap), one [`Mlp`](mlp::Mlp) (gated or not, activation as a parameter), one
//! [`DecoderLayer`](layer::DecoderLayer) (pre or sandwich norms), one [`KvCache`].

mod attention;
mod batch;
pub(crate) mod build;
mod kv_cache;
mod layer;
mod linear;
mod mla;
mod mlp;
mod model;
pub mod moe;
mod norm;
mod rope;

pub(crate) use batch::BatchMeta;
#[cfg_attr(not(feature = "cuda"), allow(unused_imports))]
pub(crate) use batch::NO_SLOT;
pub use batch::{LogitsFor, SeqChunk};
pub use kv_cache::{KvCache, KvDtype, KvSpec, PagedKvCache};
pub use linear::Linear;
pub use model::Model;
#[cfg_attr(not(feature = "cuda"), allow(unused_imports))]
pub(crate) use model::{logits_f32, StepInputs};
pub use norm::Norm;
pub use rope::Rope;
#[cfg_attr(not(feature = "cuda"), allow(unused_imports))]
pub(crate) use rope::RopeTables;
