//! Randomized invariant test (TGI's radix-allocator style): a seeded PRNG drives thousands of
//! adds (prompts sharing random prefixes, siblings, scoring requests), steps, samples, stops and
//! aborts against random tiny configurations, checking after every operation:
//! - the scheduler's and KV manager's structural invariants;
//! - through a fake KV store, that every position a sequence attends to holds KV computed from
//!   exactly its own prefix (prefix hits, forks, preemption and eviction never serve wrong or
//!   unwritten KV), and that nobody writes a shared or cached block. The store runs each step's
//!   sequences in reverse order, so correctness cannot depend on the executor's order;
//! - that rejections are exactly the requests that could never fit.
//!
//! At the end no request is added; everything must finish (no hang), after which every block is
//! unreferenced and free.

use std::collections::HashMap;

use super::*;

/// SplitMix64: tiny, seedable, and stable, unlike `rand`'s `StdRng` across versions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

/// Stands in for the KV tensors: slot `block * block_size + offset` holds the prefix its KV was
/// computed from (`tokens[..=p]`), or `None` if never written.
struct FakeKv {
    slots: Vec<Option<Vec<u32>>>,
    block_size: usize,
}

impl FakeKv {
    fn execute(&mut self, s: &Scheduler, out: &SchedulerOutput) {
        let bs = self.block_size;
        for q in out.seqs.iter().rev() {
            let tokens = s.tokens(q.id).expect("scheduled seq is known");
            let end = q.start + q.tokens.len();
            assert_eq!(q.tokens, tokens[q.start..end], "seq {}: scheduled tokens", q.id);
            assert_eq!(q.sample, end == tokens.len(), "seq {}: sample flag", q.id);
            assert!(q.block_table.len() * bs >= end, "seq {}: table too short", q.id);
            for p in 0..q.start {
                let slot = q.block_table[p / bs] as usize * bs + p % bs;
                assert_eq!(self.slots[slot].as_deref(), Some(&tokens[..=p]), "seq {} reads bad KV at {p}", q.id);
            }
            for p in q.start..end {
                let block = q.block_table[p / bs];
                assert_eq!(s.kv.pool().ref_count(block), 1, "seq {} writes shared block {block}", q.id);
                assert!(!s.kv.pool().is_cached(block), "seq {} writes cached block {block}", q.id);
                self.slots[block as usize * bs + p % bs] = Some(tokens[..=p].to_vec());
            }
        }
    }
}

struct Harness {
    rng: Rng,
    s: Scheduler,
    kv: FakeKv,
    /// What each live sequence's tokens must be.
    shadow: HashMap<SeqId, Vec<u32>>,
    families: Vec<Vec<u32>>,
    next_id: SeqId,
}

impl Harness {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let cfg = SchedulerConfig {
            block_size: rng.pick(&[1, 2, 4]),
            num_blocks: rng.pick(&[6, 12, 32]),
            max_num_batched_tokens: rng.pick(&[1, 3, 8, 64]),
            max_num_seqs: rng.pick(&[1, 3, 8]),
            max_model_len: 40,
            enable_prefix_caching: rng.percent(75),
            policy: if rng.percent(50) { Policy::Fcfs } else { Policy::Priority },
        };
        let kv = FakeKv { slots: vec![None; cfg.num_blocks * cfg.block_size], block_size: cfg.block_size };
        let families = (0..3).map(|_| (0..24).map(|_| rng.below(50) as u32).collect()).collect();
        Self { rng, s: Scheduler::new(cfg).unwrap(), kv, shadow: HashMap::new(), families, next_id: 0 }
    }

    fn add(&mut self) {
        let cfg = self.s.config().clone();
        let id = self.next_id;
        self.next_id += 1;
        let mut req = SeqRequest::new(id, Vec::new(), 1 + self.rng.below(8));
        let live = self.live();
        if !live.is_empty() && self.rng.percent(20) {
            let src = self.rng.pick(&live);
            let src_tokens = self.s.tokens(src).unwrap_or_default();
            req.prompt = src_tokens[..self.s.seqs[&src].prompt_len].to_vec();
            req.share_prompt_with = Some(src);
            if self.rng.percent(30) {
                req.prompt.push(self.rng.below(4) as u32); // siblings need not match exactly
            }
        } else {
            let family = self.rng.below(self.families.len());
            let cap = (cfg.num_blocks * cfg.block_size).min(24);
            let prefix = self.rng.below(cap + 1);
            req.prompt = self.families[family][..prefix].to_vec();
            let tail = self.rng.below(6);
            req.prompt.extend((0..tail).map(|_| self.rng.below(4) as u32));
        }
        req.priority = self.rng.below(5) as i32 - 2;
        req.needs_prompt_logprobs = self.rng.percent(10);
        let total = req.prompt.len() + req.max_tokens;
        let fits =
            !req.prompt.is_empty() && total <= cfg.max_model_len && total.div_ceil(cfg.block_size) <= cfg.num_blocks;
        let prompt = req.prompt.clone();
        let res = self.s.add(req);
        assert_eq!(res.is_ok(), fits, "add of a {}-token prompt: {res:?}", prompt.len());
        if fits {
            self.shadow.insert(id, prompt);
        }
    }

    /// One engine iteration; `abort_mid_step` aborts a scheduled sequence before `update`.
    fn step(&mut self, abort_mid_step: bool) {
        let cfg = self.s.config().clone();
        let out = self.s.schedule();
        self.s.check_invariants().unwrap();
        assert_eq!(out.num_batched_tokens, out.seqs.iter().map(|q| q.tokens.len()).sum::<usize>());
        assert!(out.num_batched_tokens <= cfg.max_num_batched_tokens);
        let mut ids: Vec<SeqId> = out.seqs.iter().map(|q| q.id).chain(out.preempted.iter().copied()).collect();
        ids.sort_unstable();
        assert!(ids.windows(2).all(|w| w[0] != w[1]), "a seq scheduled twice or both scheduled and preempted");
        self.kv.execute(&self.s, &out);

        let mut sampled: Vec<(SeqId, u32)> =
            out.seqs.iter().filter(|q| q.sample).map(|q| (q.id, self.rng.below(4) as u32)).collect();
        let due = sampled.len();
        // Junk the scheduler must ignore: a token for a sequence that was not due to sample.
        if self.rng.percent(10) {
            if let Some(q) = out.seqs.iter().find(|q| !q.sample) {
                sampled.push((q.id, 7));
            }
        }
        if abort_mid_step && !out.seqs.is_empty() {
            let victim = out.seqs[self.rng.below(out.seqs.len())].id;
            self.finish(victim);
        }
        self.s.update(&out, &sampled);
        for &(id, token) in &sampled[..due] {
            if let Some(t) = self.shadow.get_mut(&id) {
                t.push(token);
            }
        }
        self.s.check_invariants().unwrap();

        // The engine's side: stop at max_tokens at once, sometimes on a random EOS.
        for id in self.live() {
            let seq = &self.s.seqs[&id];
            assert_eq!(seq.tokens, self.shadow[&id], "seq {id}: tokens");
            let sampled_now = out.seqs.iter().any(|q| q.id == id && q.sample);
            if seq.done() || (sampled_now && self.rng.percent(3)) {
                self.finish(id);
            }
        }
    }

    /// Live sequence ids in a fixed order, so a seed replays exactly (HashMap order does not).
    fn live(&self) -> Vec<SeqId> {
        let mut ids: Vec<SeqId> = self.shadow.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    fn finish(&mut self, id: SeqId) {
        assert_eq!(self.s.finish(id), self.shadow.remove(&id).is_some());
    }
}

fn run(seed: u64, ops: usize) {
    let mut h = Harness::new(seed);
    for _ in 0..ops {
        match h.rng.below(100) {
            0..30 => h.add(),
            30..88 => {
                let abort = h.rng.percent(5);
                h.step(abort);
            }
            _ => {
                let id = h.rng.below(h.next_id as usize + 1) as SeqId; // sometimes unknown
                h.finish(id);
            }
        }
        h.s.check_invariants().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }

    // Drain: no new work, no aborts; everything must complete. Each step runs at least one token
    // while anything is runnable, so the steps needed are bounded by the tokens left to compute,
    // with room for recomputing after preemptions (a budget of 1 token per step and hundreds of
    // queued requests legitimately take tens of thousands of steps).
    let left: usize = h.s.seqs.values().map(|q| q.prompt_len + q.max_tokens).sum();
    let limit = 1_000 + 4 * left;
    let mut steps = 0;
    while h.s.has_work() {
        h.step(false);
        steps += 1;
        assert!(
            steps < limit,
            "seed {seed}: no progress after {steps} steps with {} waiting, {} running",
            h.s.num_waiting(),
            h.s.num_running()
        );
    }
    let n = h.s.config().num_blocks;
    assert_eq!(h.s.num_free_blocks(), n, "seed {seed}");
    assert!((0..n as BlockId).all(|b| h.s.kv.pool().ref_count(b) == 0));
    h.s.check_invariants().unwrap();
}

#[test]
fn random_operations_keep_invariants_and_serve_only_correct_kv() {
    // PROM_RANDOM_SEEDS=N runs seeds 0..N (a longer soak than CI's 24).
    let seeds: u64 = std::env::var("PROM_RANDOM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(24);
    for seed in 0..seeds {
        run(seed, 3_000);
    }
}
