//! The KV manager: one append-only block table per sequence over the shared [`BlockPool`], plus the
//! prefix cache's hash chains.
//!
//! Contract with the scheduler (vLLM V1's `KVCacheManager`):
//! 1. on admission, [`KvManager::computed_prefix`] finds cached blocks for the prompt (or
//!    [`KvManager::fork`] shares a sibling's), then [`KvManager::allocate`] grows the table to
//!    cover the tokens scheduled this step, all or nothing;
//! 2. after the step ran, [`KvManager::cache_full_blocks`] registers the blocks it filled;
//! 3. [`KvManager::free`] on finish, abort or preemption.
//!
//! Blocks are registered in step 2, after their KV is computed, not at allocation as vLLM does:
//! then no hit can reach a block whose KV another sequence in the same batch has yet to write, so
//! the executor may run a step's sequences in any order, and a sequence preempted before it ran
//! leaves no key behind on garbage. The price: two identical prompts admitted in the same step do
//! not share (the second hits from the next step on).

use std::collections::HashMap;

use super::block_pool::BlockPool;
use super::hash::{BlockHash, BlockHasher};
use super::{BlockId, SeqId};

/// Prefix-cache counters, in tokens. One query per admission (see [`KvManager::record_prefix_query`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixCacheStats {
    /// Admissions that looked the prompt up.
    pub queries: u64,
    /// Tokens those admissions looked up (their whole known sequence).
    pub queried_tokens: u64,
    /// Tokens served from the cache instead of computed.
    pub hit_tokens: u64,
}

impl PrefixCacheStats {
    /// `hit_tokens / queried_tokens`, 0 before the first query.
    pub fn hit_rate(&self) -> f64 {
        if self.queried_tokens == 0 {
            0.0
        } else {
            self.hit_tokens as f64 / self.queried_tokens as f64
        }
    }
}

/// Cached blocks covering a prefix of a sequence: `blocks[i]` holds tokens
/// `i * block_size .. (i + 1) * block_size`, so `num_tokens = blocks.len() * block_size`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixHit {
    pub blocks: Vec<BlockId>,
    pub num_tokens: usize,
}

#[derive(Debug, Clone, Default)]
struct SeqBlocks {
    /// Append-only while the sequence lives; `blocks[i]` holds positions `i*bs .. (i+1)*bs`.
    blocks: Vec<BlockId>,
    /// Keys of `blocks[..hashes.len()]`, all full and computed; extended by `cache_full_blocks`.
    hashes: Vec<BlockHash>,
}

#[derive(Debug, Clone)]
pub struct KvManager {
    pool: BlockPool,
    block_size: usize,
    hasher: BlockHasher,
    seqs: HashMap<SeqId, SeqBlocks>,
    stats: PrefixCacheStats,
}

impl KvManager {
    /// `block_size` must be at least 1; the scheduler validates its config before calling this.
    pub fn new(block_size: usize, num_blocks: u32, enable_caching: bool) -> Self {
        Self {
            pool: BlockPool::new(num_blocks, enable_caching),
            block_size: block_size.max(1),
            hasher: BlockHasher::new(),
            seqs: HashMap::new(),
            stats: PrefixCacheStats::default(),
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.pool.num_blocks()
    }

    /// Blocks an allocation could take now, evictable cached blocks included.
    pub fn num_free_blocks(&self) -> usize {
        self.pool.num_free()
    }

    /// Fraction of blocks referenced by some sequence, in [0, 1].
    pub fn usage(&self) -> f64 {
        match self.pool.num_blocks() {
            0 => 0.0,
            n => 1.0 - self.pool.num_free() as f64 / n as f64,
        }
    }

    pub fn prefix_stats(&self) -> PrefixCacheStats {
        self.stats
    }

    /// The sequence's block table; empty for an unknown sequence.
    pub fn block_table(&self, seq: SeqId) -> &[BlockId] {
        self.seqs.get(&seq).map_or(&[], |s| &s.blocks)
    }

    /// Blocks needed to hold `num_tokens` tokens.
    pub fn blocks_for(&self, num_tokens: usize) -> usize {
        num_tokens.div_ceil(self.block_size)
    }

    /// The longest chain of cached full blocks that matches `tokens` from the start. Never the
    /// whole sequence: at most `(len - 1) / block_size` blocks, so the last token is always run
    /// and yields the logits to sample from. Empty when caching is off. Changes no state, so a
    /// blocked request may retry every step; count the query with `record_prefix_query` once it
    /// is admitted.
    pub fn computed_prefix(&self, tokens: &[u32]) -> PrefixHit {
        let mut hit = PrefixHit::default();
        if !self.pool.caching() {
            return hit;
        }
        let max_blocks = tokens.len().saturating_sub(1) / self.block_size;
        let mut parent = None;
        for chunk in tokens.chunks_exact(self.block_size).take(max_blocks) {
            let hash = self.hasher.hash(parent, chunk);
            let Some(id) = self.pool.lookup(hash, parent, chunk) else { break };
            hit.blocks.push(id);
            parent = Some(hash);
        }
        hit.num_tokens = hit.blocks.len() * self.block_size;
        hit
    }

    /// Counts one admission's lookup: `queried` tokens looked up, `hit` of them served.
    pub fn record_prefix_query(&mut self, queried: usize, hit: usize) {
        self.stats.queries += 1;
        self.stats.queried_tokens += queried as u64;
        self.stats.hit_tokens += hit as u64;
    }

    /// Grows `seq`'s table to cover `num_tokens` tokens: first `prefix_hit` (references taken;
    /// only for a sequence without blocks yet), then fresh blocks from the free queue. Returns
    /// false and changes nothing if the free blocks do not suffice; hit blocks that sit in the
    /// free queue count as taken, since touching them removes them from it.
    pub fn allocate(&mut self, seq: SeqId, num_tokens: usize, prefix_hit: &[BlockId]) -> bool {
        let have = self.block_table(seq).len();
        let misuse = have > 0 && !prefix_hit.is_empty();
        debug_assert!(!misuse, "prefix hit for seq {seq}, which already holds {have} blocks");
        if misuse {
            return false;
        }
        let num_new = self.blocks_for(num_tokens).saturating_sub(have + prefix_hit.len());
        let revived = prefix_hit.iter().filter(|&&b| self.pool.ref_count(b) == 0).count();
        if num_new + revived > self.pool.num_free() {
            return false;
        }
        self.pool.touch(prefix_hit);
        let fresh = self.pool.allocate(num_new).unwrap_or_default();
        let entry = self.seqs.entry(seq).or_default();
        entry.blocks.extend_from_slice(prefix_hit);
        entry.blocks.extend(fresh);
        true
    }

    /// Registers in the prefix cache every full block of `seq` within its first `num_computed`
    /// tokens (whose KV is now written) that is not yet registered. `tokens` are the sequence's
    /// known tokens. A no-op when caching is off.
    pub fn cache_full_blocks(&mut self, seq: SeqId, tokens: &[u32], num_computed: usize) {
        if !self.pool.caching() {
            return;
        }
        let Some(entry) = self.seqs.get_mut(&seq) else { return };
        let num_full = (num_computed.min(tokens.len()) / self.block_size).min(entry.blocks.len());
        for i in entry.hashes.len()..num_full {
            let parent = entry.hashes.last().copied();
            let chunk = &tokens[i * self.block_size..(i + 1) * self.block_size];
            let hash = self.hasher.hash(parent, chunk);
            self.pool.cache(entry.blocks[i], hash, parent, chunk);
            entry.hashes.push(hash);
        }
    }

    /// Starts `dst`'s table with `src`'s first `num_full_blocks` blocks, shared by reference
    /// (n > 1 sampling: siblings share the prompt's KV even with prefix caching off). The caller
    /// guarantees those blocks are full and computed, as nobody writes a shared block again.
    /// False, changing nothing, if `src` holds fewer blocks or `dst` already has some.
    pub fn fork(&mut self, src: SeqId, dst: SeqId, num_full_blocks: usize) -> bool {
        if !self.block_table(dst).is_empty() || src == dst {
            return false;
        }
        let Some(s) = self.seqs.get(&src) else { return false };
        let Some(blocks) = s.blocks.get(..num_full_blocks).map(<[BlockId]>::to_vec) else { return false };
        let hashes = s.hashes.iter().take(num_full_blocks).copied().collect();
        self.pool.touch(&blocks);
        self.seqs.insert(dst, SeqBlocks { blocks, hashes });
        true
    }

    /// Releases `seq`'s blocks at once, tail first (see `BlockPool::release`). False if unknown.
    pub fn free(&mut self, seq: SeqId) -> bool {
        let Some(s) = self.seqs.remove(&seq) else { return false };
        self.pool.release(s.blocks.into_iter().rev());
        true
    }

    /// Every structural invariant of the pool and tables: ref counts equal the number of table
    /// slots holding each block, a block is free iff unreferenced, cache map and block keys agree,
    /// the free queue is well linked. For tests and debugging; O(blocks + table entries).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut refs = vec![0u32; self.pool.num_blocks()];
        for (seq, s) in &self.seqs {
            for &b in &s.blocks {
                let Some(r) = refs.get_mut(b as usize) else {
                    return Err(format!("seq {seq} holds block {b}, outside the pool"));
                };
                *r += 1;
            }
            if s.hashes.len() > s.blocks.len() {
                return Err(format!("seq {seq} has {} keys for {} blocks", s.hashes.len(), s.blocks.len()));
            }
        }
        self.pool.check(&refs)
    }

    #[cfg(test)]
    pub(crate) fn pool(&self) -> &BlockPool {
        &self.pool
    }
}
