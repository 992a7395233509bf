//! Block pool and KV manager on tiny pools with exact block ids and eviction order, in the manner
//! of vLLM's `tests/v1/core/test_prefix_caching.py`.

use super::{BlockId, KvManager, PrefixHit, SeqId};

/// Allocates `tokens` for a new `seq` (with its prefix hit) and registers its full blocks as if
/// the step had run: the scheduler's admission + update in two lines.
fn admit(kv: &mut KvManager, seq: SeqId, tokens: &[u32]) -> PrefixHit {
    let hit = kv.computed_prefix(tokens);
    assert!(kv.allocate(seq, tokens.len(), &hit.blocks), "seq {seq} did not fit");
    kv.cache_full_blocks(seq, tokens, tokens.len());
    kv.check_invariants().unwrap();
    hit
}

fn free_order(kv: &KvManager) -> Vec<BlockId> {
    kv.pool().free_order()
}

fn refs(kv: &KvManager, ids: &[BlockId]) -> Vec<u32> {
    ids.iter().map(|&b| kv.pool().ref_count(b)).collect()
}

/// Three full blocks of 4 tokens: [0,0,0,0, 1,1,1,1, 2,2,2,2].
fn common() -> Vec<u32> {
    (0..3).flat_map(|i| [i; 4]).collect()
}

fn with_tail(tail: &[u32]) -> Vec<u32> {
    let mut t = common();
    t.extend_from_slice(tail);
    t
}

#[test]
fn prefill_hits_and_eviction_order() {
    let mut kv = KvManager::new(4, 10, true);

    // Miss: 3 full blocks + 3 tokens in a partial block.
    let req0 = with_tail(&[3, 3, 3]);
    assert_eq!(admit(&mut kv, 0, &req0), PrefixHit::default());
    assert_eq!(kv.block_table(0), [0, 1, 2, 3]);
    let cached: Vec<bool> = (0..4).map(|b| kv.pool().is_cached(b)).collect();
    assert_eq!(cached, [true, true, true, false], "the partial last block is not cached");

    // Hit while the blocks are in use: shared, ref count 2.
    let req1 = with_tail(&[3]);
    let hit = admit(&mut kv, 1, &req1);
    assert_eq!((hit.blocks.as_slice(), hit.num_tokens), (&[0, 1, 2][..], 12));
    assert_eq!(kv.block_table(1), [0, 1, 2, 4]);
    assert_eq!(refs(&kv, &[0, 1, 2, 3, 4]), [2, 2, 2, 1, 1]);
    assert_eq!(kv.num_free_blocks(), 5);

    // Uncached blocks go to the front, cached ones to the back tail-first.
    assert!(kv.free(0));
    assert!(kv.free(1));
    kv.check_invariants().unwrap();
    assert_eq!(free_order(&kv), [4, 3, 5, 6, 7, 8, 9, 2, 1, 0]);

    // Hit on free blocks: they leave the queue from the middle; the new block comes off the front.
    let hit = admit(&mut kv, 2, &with_tail(&[3, 3]));
    assert_eq!(hit.blocks, [0, 1, 2]);
    assert_eq!(kv.block_table(2), [0, 1, 2, 4]);
    assert_eq!(free_order(&kv), [3, 5, 6, 7, 8, 9]);
    assert!(kv.free(2));

    // A 10-block miss takes the whole pool in queue order, evicting the cached blocks last.
    admit(&mut kv, 3, &[99; 39]); // 39 tokens: the 10th block (id 0) is partial, so stays uncached
    assert_eq!(kv.block_table(3), [4, 3, 5, 6, 7, 8, 9, 2, 1, 0]);
    assert_eq!(kv.num_free_blocks(), 0);
    assert!(free_order(&kv).is_empty());
    assert!(!kv.pool().is_cached(0), "evicted on reuse");
    assert!(kv.free(3));
    assert_eq!(kv.computed_prefix(&with_tail(&[3])), PrefixHit::default());
    kv.check_invariants().unwrap();
}

#[test]
fn lru_across_requests_and_tail_first_within_one() {
    let mut kv = KvManager::new(2, 6, true);
    let a = [1, 1, 2, 2, 9];
    let b = [3, 3, 4, 4, 9];
    admit(&mut kv, 0, &a);
    admit(&mut kv, 1, &b);
    assert_eq!((kv.block_table(0), kv.block_table(1)), (&[0, 1, 2][..], &[3, 4, 5][..]));
    kv.free(0);
    kv.free(1);
    assert_eq!(free_order(&kv), [5, 2, 1, 0, 4, 3]);

    // Three blocks evict a's tail block (freed earliest, tail first) and keep a's head and all of b.
    assert!(kv.allocate(2, 6, &[]));
    assert_eq!(kv.block_table(2), [5, 2, 1]);
    assert_eq!(kv.computed_prefix(&a).blocks, [0]);
    assert_eq!(kv.computed_prefix(&b).blocks, [3, 4]);
    kv.check_invariants().unwrap();
}

#[test]
fn never_the_whole_sequence() {
    let mut kv = KvManager::new(4, 8, true);
    let full = common(); // exactly 3 blocks
    admit(&mut kv, 0, &full);
    let hit = kv.computed_prefix(&full);
    assert_eq!((hit.blocks, hit.num_tokens), (vec![0, 1], 8), "the last token must still run");
    assert_eq!(kv.computed_prefix(&with_tail(&[7])).blocks, [0, 1, 2]);
    assert_eq!(kv.computed_prefix(&[0]), PrefixHit::default());
    assert_eq!(kv.computed_prefix(&[]), PrefixHit::default());
}

#[test]
fn same_block_under_a_different_parent_does_not_hit() {
    let mut kv = KvManager::new(4, 8, true);
    admit(&mut kv, 0, &[1, 1, 1, 1, 5, 5, 5, 5, 7]);
    assert_eq!(kv.computed_prefix(&[1, 1, 1, 1, 5, 5, 5, 5, 7]).blocks, [0, 1]);
    assert_eq!(kv.computed_prefix(&[2, 2, 2, 2, 5, 5, 5, 5, 7]), PrefixHit::default());
    assert_eq!(kv.computed_prefix(&[5, 5, 5, 5, 7]), PrefixHit::default());
    // A shared first block, then divergence: only the first block hits.
    assert_eq!(kv.computed_prefix(&[1, 1, 1, 1, 5, 5, 5, 6, 7]).blocks, [0]);
}

#[test]
fn only_computed_blocks_are_registered() {
    let mut kv = KvManager::new(4, 8, true);
    let t = with_tail(&[3]);
    assert!(kv.allocate(0, t.len(), &[]));
    assert_eq!(kv.computed_prefix(&t), PrefixHit::default(), "allocated is not computed");
    kv.cache_full_blocks(0, &t, 5); // one full block computed so far (chunked prefill)
    assert_eq!(kv.computed_prefix(&t).blocks, [0]);
    kv.cache_full_blocks(0, &t, t.len());
    assert_eq!(kv.computed_prefix(&t).blocks, [0, 1, 2]);
    kv.check_invariants().unwrap();
}

#[test]
fn failed_allocation_changes_nothing_and_counts_revived_hits() {
    let mut kv = KvManager::new(4, 4, true);
    let t = [1, 1, 1, 1, 2, 2, 2, 2, 3];
    admit(&mut kv, 0, &t);
    kv.free(0);
    assert_eq!(free_order(&kv), [2, 3, 1, 0]);

    // Hit on blocks 0 and 1 (both free) + 3 new blocks: 5 > 4 free, though 3 new alone would fit.
    let hit = kv.computed_prefix(&t);
    assert_eq!(hit.blocks, [0, 1]);
    assert!(!kv.allocate(1, 20, &hit.blocks));
    assert!(kv.block_table(1).is_empty());
    assert_eq!(free_order(&kv), [2, 3, 1, 0]);
    assert_eq!(refs(&kv, &[0, 1]), [0, 0]);
    kv.check_invariants().unwrap();

    // Growing an existing table: all or nothing too.
    assert!(kv.allocate(1, 12, &hit.blocks));
    assert_eq!(kv.block_table(1), [0, 1, 2]);
    assert!(!kv.allocate(1, 17, &[]));
    assert_eq!(kv.block_table(1), [0, 1, 2]);
    assert!(kv.allocate(1, 16, &[]));
    assert_eq!(kv.block_table(1), [0, 1, 2, 3]);
    assert_eq!(kv.num_free_blocks(), 0);
    assert_eq!(kv.usage(), 1.0);
    kv.check_invariants().unwrap();
}

#[test]
fn fork_shares_blocks_by_reference_without_caching() {
    let mut kv = KvManager::new(4, 6, false);
    assert!(kv.allocate(0, 9, &[]));
    assert_eq!(kv.block_table(0), [0, 1, 2]);
    assert!(kv.fork(0, 1, 2));
    assert!(!kv.fork(0, 1, 2), "dst already has blocks");
    assert!(!kv.fork(0, 2, 4), "src has only 3 blocks");
    assert!(!kv.fork(9, 2, 1), "unknown src");
    assert!(kv.allocate(1, 10, &[]));
    assert_eq!(kv.block_table(1), [0, 1, 3]);
    assert_eq!(refs(&kv, &[0, 1, 2, 3]), [2, 2, 1, 1]);
    kv.check_invariants().unwrap();

    kv.free(0);
    assert_eq!(refs(&kv, &[0, 1, 2]), [1, 1, 0]);
    kv.free(1);
    assert_eq!(kv.num_free_blocks(), 6);
    // Caching off: nothing is ever cached, freed blocks are reused first.
    assert_eq!(kv.computed_prefix(&[0; 12]), PrefixHit::default());
    assert_eq!(free_order(&kv)[..4], [0, 1, 3, 2]);
    kv.check_invariants().unwrap();
}

#[test]
fn stats_count_recorded_queries_only() {
    let mut kv = KvManager::new(4, 8, true);
    admit(&mut kv, 0, &with_tail(&[3]));
    let t = with_tail(&[4, 4]);
    for _ in 0..3 {
        kv.computed_prefix(&t); // a blocked request retrying: not counted
    }
    assert_eq!(kv.prefix_stats().queries, 0);
    let hit = kv.computed_prefix(&t);
    kv.record_prefix_query(t.len(), hit.num_tokens);
    let s = kv.prefix_stats();
    assert_eq!((s.queries, s.queried_tokens, s.hit_tokens), (1, 14, 12));
    assert!((s.hit_rate() - 12.0 / 14.0).abs() < 1e-12);
}

#[test]
fn usage_and_unknown_sequences() {
    let mut kv = KvManager::new(4, 4, true);
    assert_eq!(kv.usage(), 0.0);
    assert!(kv.allocate(7, 5, &[]));
    assert_eq!(kv.usage(), 0.5);
    assert!(!kv.free(8));
    assert!(kv.block_table(8).is_empty());
    assert!(kv.free(7));
    assert_eq!(kv.usage(), 0.0);
}
