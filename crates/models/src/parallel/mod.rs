//! Tensor parallelism: one model split over several ranks (GPUs, or threads on the CPU), each
//! holding a slice of every layer, all running the same step in lockstep (docs/parallel.md).
//!
//! - [`Communicator`]: the collectives (sum, gather), with a single-rank, an in-process
//!   ([`LocalWorld`]) and an NCCL implementation.
//! - [`shard`]: which slice of each weight a rank loads (column/row-parallel linears, heads,
//!   experts, vocabulary rows), cut at load time.
//! - [`TensorParallel`]: what a rank's [`Model`](crate::nn::Model) holds besides its slices;
//!   the decoder calls it at the three places the ranks meet (embedding, after each row-parallel
//!   block, the logits).
//! - [`load_tensor_parallel`]: loads every rank on its own thread and hands back rank 0's model,
//!   which drives the others: each forward pass it runs is sent to them first (`group`), so the
//!   engine and every caller of [`Model::forward_batch`](crate::nn::Model::forward_batch) use a
//!   split model exactly like a whole one.

mod comm;
mod group;
mod load;
#[cfg(feature = "cuda")]
mod nccl;
pub mod shard;

use std::ops::Range;
use std::sync::Arc;

use candle_core::Tensor;

pub use comm::{Communicator, LocalWorld, SingleRank};
pub(crate) use group::Followers;
pub use load::{load_tensor_parallel, load_tensor_parallel_in_process};
pub use shard::{Heads, Shard};

use crate::config::{ModelConfig, WeightNames};
use crate::{Result, TensorContext};

/// A rank's part in a tensor-parallel model.
pub struct TensorParallel {
    comm: Arc<dyn Communicator>,
    shard: Shard,
    /// This rank's rows of the vocabulary (embedding and head) and the padded rows every rank
    /// holds, `ceil(vocab / world)`.
    vocab: Range<usize>,
    vocab_per_rank: usize,
    vocab_size: usize,
    /// KV heads this rank caches.
    kv_heads: usize,
    /// Rank 0 of a multi-rank world: the other ranks, sent every step.
    pub(crate) followers: Option<Followers>,
}

impl TensorParallel {
    /// A rank of `comm`'s world for a model of `cfg`; an error names what cannot be split.
    pub(crate) fn new(comm: Arc<dyn Communicator>, cfg: &ModelConfig, names: &WeightNames) -> Result<Self> {
        let shard = Shard { rank: comm.rank(), world: comm.world_size() };
        shard::check_supported(cfg, names)?;
        let a = &cfg.attention;
        let kv_heads = Heads::of(shard, a.num_heads, a.num_kv_heads)?.kv.len();
        let vocab_size = cfg.vocab_size;
        Ok(Self {
            vocab: shard.ceil_part(vocab_size),
            vocab_per_rank: vocab_size.div_ceil(shard.world),
            vocab_size,
            kv_heads,
            comm,
            shard,
            followers: None,
        })
    }

    pub fn shard(&self) -> Shard {
        self.shard
    }

    pub(crate) fn comm(&self) -> &Arc<dyn Communicator> {
        &self.comm
    }

    pub(crate) fn kv_heads(&self) -> usize {
        self.kv_heads
    }

    /// This rank's vocabulary rows and the padded count (for loading the embedding and head).
    pub(crate) fn vocab_rows(&self) -> (Range<usize>, usize) {
        (self.vocab.clone(), self.vocab_per_rank)
    }

    /// Vocabulary-parallel embedding: each rank looks up the ids in its rows, zero elsewhere, and
    /// the sum over ranks is the full lookup (exact: every row is one rank's value plus zeros).
    /// `table`: this rank's `(vocab_per_rank, hidden)` rows → `(T, hidden)`.
    pub(crate) fn embed(&self, table: &Tensor, ids: &[u32]) -> Result<Tensor> {
        let (lo, hi) = (self.vocab.start as u32, self.vocab.end as u32);
        let local: Vec<u32> = ids.iter().map(|&id| if (lo..hi).contains(&id) { id - lo } else { 0 }).collect();
        let mask: Vec<f32> = ids.iter().map(|id| f32::from((lo..hi).contains(id) as u8)).collect();
        let dev = table.device();
        let local = Tensor::new(local.as_slice(), dev).ctx("local token ids")?;
        let mask = Tensor::from_vec(mask, (ids.len(), 1), dev).and_then(|m| m.to_dtype(table.dtype())).ctx("mask")?;
        let rows = table.index_select(&local, 0).and_then(|r| r.broadcast_mul(&mask)).ctx("embedding shard")?;
        self.comm.all_reduce_sum(&rows)
    }

    /// Vocabulary-parallel logits `(rows, vocab_per_rank)` of every rank → `(rows, vocab)`.
    pub(crate) fn gather_logits(&self, local: &Tensor) -> Result<Tensor> {
        let rows = local.dim(0).ctx("logits")?;
        let w = self.shard.world;
        // (world · rows, per) → (world, rows, per) → (rows, world, per) → (rows, world · per)
        let all = self.comm.all_gather(&local.contiguous().ctx("logits")?)?;
        let all = all
            .reshape((w, rows, self.vocab_per_rank))
            .and_then(|t| t.transpose(0, 1))
            .and_then(|t| t.reshape((rows, w * self.vocab_per_rank)))
            .ctx("gathered logits")?;
        all.narrow(1, 0, self.vocab_size).ctx("unpadded logits")
    }
}
