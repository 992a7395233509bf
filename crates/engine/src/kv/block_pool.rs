//! The block pool: reference counts, the prefix-cache map and the free queue over a fixed set of
//! KV block ids.
//!
//! Only ids live here; the executor owns the tensors (one slot per id, shared by all layers).
//!
//! Invariants (checked by [`BlockPool::check`]):
//! - a block is in the free queue iff its ref count is 0;
//! - a block carries a cached key iff the map sends that key to it (one block per key);
//! - a free block may keep its key: it is then "evictable", still a prefix-cache hit until the
//!   allocator pops it from the front of the queue and drops the key.

use std::collections::HashMap;

use super::free_queue::FreeQueue;
use super::hash::BlockHash;
use super::BlockId;

/// What a cached block holds, kept so that a hit is verified, not trusted (see `hash.rs`).
#[derive(Debug, Clone)]
struct CachedBlock {
    hash: BlockHash,
    parent: Option<BlockHash>,
    tokens: Box<[u32]>,
}

#[derive(Debug, Clone)]
pub(crate) struct BlockPool {
    ref_cnt: Vec<u32>,
    cached: Vec<Option<CachedBlock>>,
    free: FreeQueue,
    by_hash: HashMap<BlockHash, BlockId>,
    caching: bool,
}

impl BlockPool {
    pub(crate) fn new(num_blocks: u32, enable_caching: bool) -> Self {
        let n = num_blocks as usize;
        Self {
            ref_cnt: vec![0; n],
            cached: vec![None; n],
            free: FreeQueue::new(num_blocks),
            by_hash: HashMap::new(),
            caching: enable_caching,
        }
    }

    pub(crate) fn num_blocks(&self) -> usize {
        self.ref_cnt.len()
    }

    /// Blocks that an allocation can take: never-used, freed, and evictable cached ones.
    pub(crate) fn num_free(&self) -> usize {
        self.free.len()
    }

    pub(crate) fn caching(&self) -> bool {
        self.caching
    }

    pub(crate) fn ref_count(&self, id: BlockId) -> u32 {
        self.ref_cnt.get(id as usize).copied().unwrap_or(0)
    }

    /// The block holding exactly this block of tokens after exactly this parent, if cached.
    pub(crate) fn lookup(&self, hash: BlockHash, parent: Option<BlockHash>, tokens: &[u32]) -> Option<BlockId> {
        let id = *self.by_hash.get(&hash)?;
        let c = self.cached.get(id as usize)?.as_ref()?;
        (c.hash == hash && c.parent == parent && *c.tokens == *tokens).then_some(id)
    }

    /// Takes one more reference on each block; a free (evictable) block leaves the free queue.
    pub(crate) fn touch(&mut self, ids: &[BlockId]) {
        for &id in ids {
            let Some(rc) = self.ref_cnt.get_mut(id as usize) else { continue };
            if *rc == 0 {
                self.free.remove(id);
            }
            *rc += 1;
        }
    }

    /// Pops `n` blocks from the front of the free queue with ref count 1, evicting any cached key
    /// they hold (LRU: the front is the least recently freed). `None`, changing nothing, if fewer
    /// than `n` are free.
    pub(crate) fn allocate(&mut self, n: usize) -> Option<Vec<BlockId>> {
        if n > self.free.len() {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let id = self.free.pop_front()?;
            if let Some(c) = self.cached[id as usize].take() {
                self.by_hash.remove(&c.hash);
            }
            self.ref_cnt[id as usize] = 1;
            out.push(id);
        }
        Some(out)
    }

    /// Drops one reference from each block, in the order given. Blocks reaching 0 become free:
    /// cached ones at the back of the queue (kept as long as possible, still hittable), uncached
    /// ones at the front (worthless, so reused first; current vLLM does the same). Callers pass a
    /// sequence's table tail-first so its tail blocks are evicted before its head blocks: the
    /// head is the part other requests share.
    pub(crate) fn release(&mut self, ids: impl IntoIterator<Item = BlockId>) {
        for id in ids {
            let Some(rc) = self.ref_cnt.get_mut(id as usize) else { continue };
            debug_assert!(*rc > 0, "block {id} released more often than taken");
            if *rc == 0 {
                continue;
            }
            *rc -= 1;
            if *rc == 0 {
                if self.cached[id as usize].is_some() {
                    self.free.push_back(id);
                } else {
                    self.free.push_front(id);
                }
            }
        }
    }

    /// Registers a full, computed block under `hash`. Skipped when caching is off, when the block
    /// is already cached (a hit or a forked block: same content, same key), or when another block
    /// already holds the key (two sequences computed the same block at once; one entry suffices).
    pub(crate) fn cache(&mut self, id: BlockId, hash: BlockHash, parent: Option<BlockHash>, tokens: &[u32]) {
        let i = id as usize;
        if !self.caching || i >= self.cached.len() || self.cached[i].is_some() || self.by_hash.contains_key(&hash) {
            return;
        }
        self.cached[i] = Some(CachedBlock { hash, parent, tokens: tokens.into() });
        self.by_hash.insert(hash, id);
    }

    #[cfg(test)]
    pub(crate) fn is_cached(&self, id: BlockId) -> bool {
        self.cached.get(id as usize).is_some_and(Option::is_some)
    }

    /// Free blocks, next to be allocated first.
    #[cfg(test)]
    pub(crate) fn free_order(&self) -> Vec<BlockId> {
        self.free.iter().collect()
    }

    /// Checks the invariants in the module doc plus `expected_refs[i]` == ref count of block `i`.
    pub(crate) fn check(&self, expected_refs: &[u32]) -> Result<(), String> {
        self.free.check()?;
        if expected_refs.len() != self.ref_cnt.len() {
            return Err(format!("{} expected ref counts for {} blocks", expected_refs.len(), self.ref_cnt.len()));
        }
        for (i, (&rc, &want)) in self.ref_cnt.iter().zip(expected_refs).enumerate() {
            if rc != want {
                return Err(format!("block {i}: ref count {rc}, but {want} block tables hold it"));
            }
            if (rc == 0) != self.free.contains(i as BlockId) {
                return Err(format!("block {i}: ref count {rc} but in free queue = {}", self.free.contains(i as u32)));
            }
            if let Some(c) = &self.cached[i] {
                if self.by_hash.get(&c.hash) != Some(&(i as BlockId)) {
                    return Err(format!("block {i} carries a key that the cache map does not send to it"));
                }
            }
        }
        for (hash, &id) in &self.by_hash {
            match self.cached.get(id as usize) {
                Some(Some(c)) if c.hash == *hash => {}
                _ => return Err(format!("cache map sends a key to block {id}, which does not carry it")),
            }
        }
        if !self.caching && !self.by_hash.is_empty() {
            return Err("prefix caching is off but the cache map is not empty".into());
        }
        Ok(())
    }
}
