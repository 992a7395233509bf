//! The prefix-cache key of a full block: `hash_i = H(hash_{i-1}, tokens of block i)`.
//!
//! Chaining makes a block's key depend on every token before it, so equal keys mean equal
//! prefixes, which is what makes reusing another sequence's KV sound.
//!
//! Choice of `H`: two SipHash-1-3 instances (std's `RandomState`) with keys drawn once per
//! [`KvManager`](super::KvManager), concatenated to 128 bits.
//! - 128 bits: a chain collision in a *parent* cannot be caught by checking one block's tokens, so
//!   the chain itself must practically never collide; at 64 bits that is ~n²/2⁶⁵, at 128 it is nil.
//! - Secret keys: prompts come from users; with fixed keys one user could craft a prompt that
//!   collides with another's and poison the cache. Keys drawn per process prevent precomputation.
//! - Not stable across processes, on purpose: keys are never persisted or shared. A cache shared
//!   between processes (offloading, disaggregated prefill) would need a fixed cryptographic hash.
//!
//! The pool still stores each cached block's tokens and parent key and compares them on every
//! hit, so a collision on the block itself can never serve wrong KV.

use std::hash::{BuildHasher, Hash, Hasher};

use std::collections::hash_map::RandomState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockHash(u128);

#[derive(Debug, Clone)]
pub(crate) struct BlockHasher {
    lo: RandomState,
    hi: RandomState,
}

impl BlockHasher {
    pub(crate) fn new() -> Self {
        Self { lo: RandomState::new(), hi: RandomState::new() }
    }

    /// Key of a full block given its parent's key (`None` for the first block) and its tokens.
    pub(crate) fn hash(&self, parent: Option<BlockHash>, tokens: &[u32]) -> BlockHash {
        let half = |keys: &RandomState| {
            let mut h = keys.build_hasher();
            parent.map(|p| p.0).hash(&mut h);
            tokens.hash(&mut h);
            h.finish()
        };
        BlockHash((u128::from(half(&self.hi)) << 64) | u128::from(half(&self.lo)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_parent_and_tokens() {
        let h = BlockHasher::new();
        let a = h.hash(None, &[1, 2]);
        assert_eq!(a, h.hash(None, &[1, 2]));
        assert_ne!(a, h.hash(None, &[2, 1]));
        assert_ne!(h.hash(Some(a), &[3, 4]), h.hash(None, &[3, 4]));
        assert_ne!(h.hash(Some(a), &[3, 4]), h.hash(Some(h.hash(None, &[9, 9])), &[3, 4]));
    }
}
