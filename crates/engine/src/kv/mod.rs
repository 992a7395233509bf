//! Paged KV-cache bookkeeping: which fixed-size block of the KV tensors holds which tokens of which
//! sequence, and which blocks can be reused across sequences that share a prefix.
//!
//! Pure data structures: ids and counts, no tensors. The executor allocates `num_blocks` slots of
//! `block_size` tokens per layer and reads a sequence's [`KvManager::block_table`] to find them.
//! Design follows vLLM V1 (`block_pool.py`, `kv_cache_utils.py`, `single_type_kv_cache_manager.py`).

mod block_pool;
mod free_queue;
mod hash;
mod manager;
#[cfg(test)]
mod tests;

pub use manager::{KvManager, PrefixCacheStats, PrefixHit};

/// Index of a KV block, `0..num_blocks`.
pub type BlockId = u32;

/// Identifies a sequence (one request, or one of its n samples) to the KV manager and scheduler.
pub type SeqId = u64;
