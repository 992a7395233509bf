//! Scheduler scenarios on tiny pools with exact expectations, in the manner of vLLM's
//! `tests/v1/core/test_scheduler.py`. Each step samples token `100 * id + k` for the k-th sample of
//! sequence `id`, so recomputed generated tokens are recognisable.

use super::*;

fn cfg(block_size: usize, num_blocks: usize, budget: usize, max_num_seqs: usize) -> SchedulerConfig {
    SchedulerConfig {
        block_size,
        num_blocks,
        max_num_batched_tokens: budget,
        max_num_seqs,
        max_model_len: 1024,
        enable_prefix_caching: true,
        policy: Policy::Fcfs,
    }
}

fn sched(cfg: SchedulerConfig) -> Scheduler {
    Scheduler::new(cfg).unwrap()
}

fn add(s: &mut Scheduler, id: SeqId, prompt: &[u32], max_tokens: usize) {
    s.add(SeqRequest::new(id, prompt.to_vec(), max_tokens)).unwrap();
}

/// (id, start, number of tokens, sample) per scheduled sequence.
type View = Vec<(SeqId, usize, usize, bool)>;

fn view(out: &SchedulerOutput) -> View {
    out.seqs.iter().map(|s| (s.id, s.start, s.tokens.len(), s.sample)).collect()
}

/// schedule → "execute" → update, sampling for every sequence that is due.
fn step(s: &mut Scheduler) -> SchedulerOutput {
    let out = s.schedule();
    s.check_invariants().unwrap();
    let sampled: Vec<(SeqId, u32)> = out
        .seqs
        .iter()
        .filter(|q| q.sample)
        .map(|q| {
            let seq = &s.seqs[&q.id];
            (q.id, (100 * q.id) as u32 + (seq.tokens.len() - seq.prompt_len) as u32)
        })
        .collect();
    s.update(&out, &sampled);
    s.check_invariants().unwrap();
    out
}

#[test]
fn chunked_prefill_under_a_small_budget() {
    let mut s = sched(cfg(4, 16, 5, 4));
    add(&mut s, 1, &[1; 12], 3);
    let steps: Vec<View> = (0..5).map(|_| view(&step(&mut s))).collect();
    assert_eq!(
        steps,
        [
            vec![(1, 0, 5, false)],
            vec![(1, 5, 5, false)],
            vec![(1, 10, 2, true)],
            vec![(1, 12, 1, true)],
            vec![(1, 13, 1, true)],
        ]
    );
    assert_eq!(s.tokens(1).unwrap()[12..], [100, 101, 102]);
    // max_tokens sampled: never scheduled again, waiting for the engine's `finish`.
    assert!(step(&mut s).is_empty());
    assert!(s.finish(1));
    assert!(!s.has_work());
}

#[test]
fn decodes_and_prefill_chunks_share_one_step() {
    let mut s = sched(cfg(4, 16, 8, 4));
    add(&mut s, 1, &[1; 4], 8);
    add(&mut s, 2, &[2; 10], 8);
    let out = step(&mut s);
    assert_eq!(view(&out), [(1, 0, 4, true), (2, 0, 4, false)]);
    assert_eq!(out.num_batched_tokens, 8);
    assert_eq!(out.seqs[1].tokens, [2; 4]);
    let out = step(&mut s);
    assert_eq!(view(&out), [(1, 4, 1, true), (2, 4, 6, true)]);
    assert_eq!(out.num_batched_tokens, 7);
    assert_eq!(out.seqs[0].tokens, [100]);
    assert_eq!(view(&step(&mut s)), [(1, 5, 1, true), (2, 10, 1, true)]);
}

#[test]
fn max_num_seqs_caps_running_sequences() {
    let mut s = sched(cfg(4, 16, 64, 2));
    for id in 1..=3 {
        add(&mut s, id, &[id as u32; 3], 4);
    }
    assert_eq!(view(&step(&mut s)), [(1, 0, 3, true), (2, 0, 3, true)]);
    assert_eq!((s.num_running(), s.num_waiting()), (2, 1));
    assert_eq!(view(&step(&mut s)), [(1, 3, 1, true), (2, 3, 1, true)]);
    s.finish(1);
    assert_eq!(view(&step(&mut s)), [(2, 4, 1, true), (3, 0, 3, true)]);
}

#[test]
fn preemption_recomputes_from_zero_and_samples_only_at_the_end() {
    // 4 blocks of 2 tokens; each sequence may grow to 8 tokens = the whole pool.
    let mut c = cfg(2, 4, 3, 4);
    c.enable_prefix_caching = false;
    let mut s = sched(c);
    add(&mut s, 1, &[1, 2], 6);
    add(&mut s, 2, &[3, 4], 6);

    assert_eq!(view(&step(&mut s)), [(1, 0, 2, true), (2, 0, 1, false)]);
    assert_eq!(view(&step(&mut s)), [(1, 2, 1, true), (2, 1, 1, true)]);
    assert_eq!(view(&step(&mut s)), [(1, 3, 1, true), (2, 2, 1, true)]);
    assert_eq!((s.block_table(1), s.block_table(2)), (&[0, 2][..], &[1, 3][..]));

    // Seq 1 needs a third block: seq 2, the most recently admitted, is preempted.
    let out = step(&mut s);
    assert_eq!((view(&out), out.preempted.as_slice()), (vec![(1, 4, 1, true)], &[2][..]));
    assert_eq!(s.block_table(1), [0, 2, 1]);
    assert_eq!((s.num_computed(2), s.block_table(2).len()), (Some(0), 0));
    assert_eq!(s.tokens(2).unwrap(), [3, 4, 200, 201], "keeps its generated tokens");

    // Resumed at 0 in a chunk that does not reach the end: no sample.
    let out = step(&mut s);
    assert_eq!(view(&out), [(1, 5, 1, true), (2, 0, 2, false)]);
    assert_eq!(out.seqs[1].tokens, [3, 4]);

    // Seq 1 needs its fourth block: seq 2 goes again.
    let out = step(&mut s);
    assert_eq!((view(&out), out.preempted.as_slice()), (vec![(1, 6, 1, true)], &[2][..]));
    assert_eq!(s.tokens(1).unwrap().len(), 8, "seq 1 has all its max_tokens");
    assert!(step(&mut s).is_empty(), "seq 2 does not fit until seq 1 finishes");
    s.finish(1);

    // The recomputation includes the generated tokens 200, 201; sample only at the end.
    let out = step(&mut s);
    assert_eq!(view(&out), [(2, 0, 3, false)]);
    assert_eq!(out.seqs[0].tokens, [3, 4, 200]);
    assert_eq!(out.seqs[0].block_table, [0, 2]);
    let out = step(&mut s);
    assert_eq!(view(&out), [(2, 3, 1, true)]);
    assert_eq!(out.seqs[0].tokens, [201]);
    assert_eq!(s.tokens(2).unwrap(), [3, 4, 200, 201, 202]);
}

#[test]
fn preempted_sequence_resumes_through_its_cached_blocks() {
    let mut s = sched(cfg(2, 4, 16, 4));
    add(&mut s, 1, &[1, 2, 3], 3);
    add(&mut s, 2, &[7, 8, 9], 3);
    assert_eq!(view(&step(&mut s)), [(1, 0, 3, true), (2, 0, 3, true)]);
    assert_eq!(view(&step(&mut s)), [(1, 3, 1, true), (2, 3, 1, true)]);
    let out = step(&mut s);
    assert_eq!(out.preempted, [2]);
    // Seq 2's blocks were freed tail first: its last block was reused, its first is still cached.
    assert_eq!(s.block_table(1), [0, 1, 3]);
    assert!(step(&mut s).is_empty());
    s.finish(1);

    let out = step(&mut s);
    assert_eq!(view(&out), [(2, 2, 3, true)]);
    assert_eq!(out.seqs[0].tokens, [9, 200, 201]);
    assert_eq!(out.seqs[0].block_table, [2, 3, 1]);
}

#[test]
fn prefix_hits_across_requests_and_prompt_logprobs_bypass_them() {
    let mut s = sched(cfg(4, 16, 64, 4));
    let prompt: Vec<u32> = (0..9).collect();
    add(&mut s, 1, &prompt, 4);
    step(&mut s);
    add(&mut s, 2, &prompt, 4);
    let mut scoring = SeqRequest::new(3, prompt.clone(), 1);
    scoring.needs_prompt_logprobs = true;
    s.add(scoring).unwrap();

    let out = step(&mut s);
    assert_eq!(view(&out), [(1, 9, 1, true), (2, 8, 1, true), (3, 0, 9, true)]);
    assert_eq!(out.seqs[1].block_table, [0, 1, 3]);
    assert_eq!(out.seqs[2].block_table, [4, 5, 6]);
    assert_eq!(out.seqs.iter().map(|q| q.prompt_logprobs).collect::<Vec<_>>(), [false, false, true]);
    let stats = s.prefix_cache_stats();
    assert_eq!((stats.queries, stats.queried_tokens, stats.hit_tokens), (2, 18, 8));
}

#[test]
fn priority_policy_admits_by_priority_then_arrival() {
    let mut c = cfg(4, 16, 64, 1);
    c.policy = Policy::Priority;
    let mut s = sched(c);
    for (id, priority) in [(1, 5), (2, 1), (3, 1), (4, -3)] {
        let mut r = SeqRequest::new(id, vec![1, 2], 2);
        r.priority = priority;
        s.add(r).unwrap();
    }
    let mut order = Vec::new();
    while s.has_work() {
        let out = step(&mut s);
        order.extend(out.seqs.iter().filter(|q| q.start == 0).map(|q| q.id));
        for q in &out.seqs {
            s.finish(q.id);
        }
    }
    assert_eq!(order, [4, 2, 3, 1]);
}

#[test]
fn priority_preemption_takes_the_worst_even_if_already_scheduled() {
    let mut c = cfg(2, 4, 16, 4);
    c.policy = Policy::Priority;
    c.enable_prefix_caching = false;
    let mut s = sched(c);
    let mut low = SeqRequest::new(1, vec![1, 2], 3);
    low.priority = 10;
    s.add(low).unwrap();
    assert_eq!(view(&step(&mut s)), [(1, 0, 2, true)]);
    s.add(SeqRequest::new(2, vec![4, 5, 6, 7], 2)).unwrap();
    assert_eq!(view(&step(&mut s)), [(1, 2, 1, true), (2, 0, 4, true)]);

    // Seq 1 (scheduled first, needs no block) is unscheduled when seq 2 needs one.
    let out = step(&mut s);
    assert_eq!((view(&out), out.preempted.as_slice()), (vec![(2, 4, 1, true)], &[1][..]));
    assert_eq!(out.num_batched_tokens, 1);
    assert_eq!(out.seqs[0].block_table, [2, 3, 0]);
}

#[test]
fn requests_that_can_never_run_are_rejected() {
    let mut c = cfg(4, 2, 64, 4);
    c.max_model_len = 10;
    let mut s = sched(c);
    let err = s.add(SeqRequest::new(1, vec![1; 6], 3)).unwrap_err();
    assert_eq!(
        err,
        SchedError::NeverFits { id: 1, prompt_len: 6, max_tokens: 3, needed: 3, block_size: 4, num_blocks: 2 }
    );
    assert!(err.to_string().contains("needs 3 KV blocks of 4 tokens, but the whole pool has 2"), "{err}");
    let err = s.add(SeqRequest::new(1, vec![1; 6], 5)).unwrap_err();
    assert_eq!(err, SchedError::TooLong { id: 1, prompt_len: 6, max_tokens: 5, max_model_len: 10 });
    assert_eq!(s.add(SeqRequest::new(1, vec![], 1)), Err(SchedError::EmptyPrompt { id: 1 }));
    assert_eq!(s.add(SeqRequest::new(1, vec![1], 0)), Err(SchedError::ZeroMaxTokens { id: 1 }));
    assert!(s.add(SeqRequest::new(1, vec![1], usize::MAX)).unwrap_err().to_string().contains("exceeds"));
    s.add(SeqRequest::new(1, vec![1; 6], 2)).unwrap();
    assert_eq!(s.add(SeqRequest::new(1, vec![1], 1)), Err(SchedError::DuplicateId { id: 1 }));
    assert_eq!(step(&mut s).num_batched_tokens, 6);
    assert_eq!(s.num_waiting(), 0);
}

#[test]
fn invalid_configs_are_rejected() {
    let mut c = cfg(4, 16, 64, 4);
    c.block_size = 0;
    let err = Scheduler::new(c).unwrap_err();
    assert_eq!(err.to_string(), "invalid scheduler config: `block_size` must be >= 1. Given: 0");
    let mut c = cfg(4, 16, 64, 4);
    c.max_model_len = 1;
    assert!(matches!(Scheduler::new(c), Err(SchedError::InvalidConfig { field: "max_model_len", value: 1, .. })));
    let mut c = cfg(4, 16, 64, 4);
    c.num_blocks = usize::MAX;
    assert!(matches!(Scheduler::new(c), Err(SchedError::InvalidConfig { field: "num_blocks", .. })));
}

#[test]
fn n_siblings_fork_the_prompt_blocks_without_prefix_caching() {
    let mut c = cfg(4, 16, 8, 4);
    c.enable_prefix_caching = false;
    let mut s = sched(c);
    let prompt: Vec<u32> = (10..20).collect();
    add(&mut s, 1, &prompt, 4);
    for id in [2, 3] {
        let mut r = SeqRequest::new(id, prompt.clone(), 4);
        r.share_prompt_with = Some(1);
        s.add(r).unwrap();
    }
    // The siblings wait, though budget is left, until seq 1 has computed its whole prompt.
    assert_eq!(view(&step(&mut s)), [(1, 0, 8, false)]);
    assert_eq!(view(&step(&mut s)), [(1, 8, 2, true)]);
    let out = step(&mut s);
    assert_eq!(view(&out), [(1, 10, 1, true), (2, 8, 2, true), (3, 8, 2, true)]);
    assert_eq!(out.seqs[1].block_table, [0, 1, 3]);
    assert_eq!(out.seqs[2].block_table, [0, 1, 4]);
    assert_eq!(s.kv.pool().ref_count(0), 3);

    // The first sequence finishing leaves the shared blocks to the siblings.
    s.finish(1);
    assert_eq!(s.kv.pool().ref_count(0), 2);
    assert_eq!(view(&step(&mut s)), [(2, 10, 1, true), (3, 10, 1, true)]);
    s.finish(2);
    s.finish(3);
    assert_eq!(s.num_free_blocks(), 16);
}

#[test]
fn finish_frees_blocks_at_once_and_update_ignores_it() {
    let mut s = sched(cfg(4, 8, 64, 4));
    add(&mut s, 1, &[1; 10], 4);
    add(&mut s, 2, &[2; 3], 4);
    let out = s.schedule();
    assert_eq!(s.num_free_blocks(), 4);
    assert!(s.finish(1), "aborted between schedule and update");
    assert_eq!(s.num_free_blocks(), 7);
    assert!(!s.finish(1));
    s.update(&out, &[(1, 7), (2, 8), (2, 9)]);
    s.check_invariants().unwrap();
    assert_eq!(s.tokens(1), None);
    assert_eq!(s.tokens(2).unwrap(), [2, 2, 2, 8], "one sample per due sequence");
    add(&mut s, 3, &[3; 2], 2);
    assert!(s.finish(3), "a waiting sequence can be aborted too");
    assert_eq!((s.num_waiting(), s.num_running()), (0, 1));
    s.finish(2);
    assert_eq!((s.num_free_blocks(), s.kv_usage()), (8, 0.0));
}

#[test]
fn advancing_ahead_schedules_placeholders_that_fill_replaces() {
    // Block size 4: sequence 1 (prompt 3) fills its first block with its first sample, and
    // its next decode needs a second block.
    let mut s = sched(cfg(4, 8, 16, 4));
    add(&mut s, 1, &[1, 2, 3], 4);
    add(&mut s, 2, &[5; 6], 2);
    let first = s.schedule();
    assert_eq!(view(&first), [(1, 0, 3, true), (2, 0, 6, true)]);
    assert!(s.can_advance(&first));
    s.advance(&first);
    s.check_invariants().unwrap();
    assert_eq!(s.tokens(1).unwrap(), [1, 2, 3, PLACEHOLDER]);
    // The next step runs the placeholders before their tokens are known.
    let second = s.schedule();
    assert_eq!(view(&second), [(1, 3, 1, true), (2, 6, 1, true)]);
    assert!(second.seqs.iter().all(|q| q.tokens == [PLACEHOLDER]));
    assert_eq!(s.block_table(1).len(), 1, "position 3 still fits the first block");
    s.fill(&[(1, 100), (2, 200)]);
    s.check_invariants().unwrap();
    assert_eq!(s.tokens(1).unwrap(), [1, 2, 3, 100]);
    // Ahead again: sequence 2 reaches max_tokens with this sample and is not scheduled.
    assert!(s.can_advance(&second));
    s.advance(&second);
    let third = s.schedule();
    assert_eq!(view(&third), [(1, 4, 1, true)]);
    assert_eq!(s.block_table(1).len(), 2);
    s.fill(&[(1, 101), (2, 201)]);
    assert_eq!(s.tokens(2).unwrap()[6..], [200, 201]);
    // The first block of sequence 1 ([1, 2, 3, 100]) is cached once computed, never with a
    // placeholder in it: a new sequence with that prompt hits it.
    s.update(&third, &[(1, 102)]);
    s.check_invariants().unwrap();
    assert!(s.finish(1) && s.finish(2));
    add(&mut s, 3, &[1, 2, 3, 100, 7], 1);
    let out = s.schedule();
    assert_eq!(view(&out), [(3, 4, 1, true)], "the cached block [1, 2, 3, 100] is a hit");
}

#[test]
fn advancing_ahead_waits_for_admissions_and_free_blocks() {
    // Two sequences of one full block each; their next positions need a block each.
    let mut s = sched(cfg(2, 4, 16, 4));
    add(&mut s, 1, &[1, 1], 4);
    add(&mut s, 2, &[2, 2], 4);
    let out = s.schedule();
    assert_eq!(s.num_free_blocks(), 2);
    assert!(s.can_advance(&out), "two blocks needed, two free");
    add(&mut s, 3, &[3], 4);
    assert!(!s.can_advance(&out), "a sequence waits for admission");
    let mut s = sched(cfg(2, 3, 16, 4));
    add(&mut s, 1, &[1, 1], 4);
    add(&mut s, 2, &[2, 2], 4);
    let out = s.schedule();
    assert_eq!(s.num_free_blocks(), 1);
    assert!(!s.can_advance(&out), "two blocks needed, one free: the next step would preempt");
}
