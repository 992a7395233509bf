//! The continuous-batching scheduler: which sequences run which tokens in the next step.
//!
//! vLLM V1's loop: `schedule()` → the executor runs the [`SchedulerOutput`] → `update()`. "There is
//! no prefill phase or decode phase": each sequence has `num_computed` tokens out of its known
//! tokens (prompt + generated), and each step shares one token budget. Running sequences go first
//! (a decode costs 1 token, an unfinished prompt takes what is left of the budget: chunked
//! prefill), then waiting ones are admitted while budget, sequence slots and KV blocks allow.
//!
//! When a running sequence cannot get a block, another is preempted by recompute: its blocks are
//! freed, it keeps its tokens and rejoins the front of the waiting queue, later recomputing its
//! prompt and generated tokens (through prefix-cache hits where possible).
//!
//! Stop conditions are the engine's business: it calls [`Scheduler::finish`]. A sequence that has
//! sampled `max_tokens` is never scheduled again, so it cannot outgrow the limits `add` checked.
//!
//! Async scheduling ([`Scheduler::advance`] / [`Scheduler::fill`], vLLM V1's): while a step
//! runs on a GPU the engine may schedule the next one before the sampled tokens are back. The
//! step is then recorded as run and each sampling sequence gets a [`PLACEHOLDER`] token, which
//! the next step runs (its id comes from the device) and `fill` later replaces with the real one.
//! Only computed positions are ever hashed, and a placeholder is filled before it is computed.
//!
//! Why admission can never hang: `add` rejects a sequence needing more blocks than the pool has,
//! and the preemption order never evicts the best (oldest, or best-priority) running sequence for
//! another, so it always ends up with the blocks it needs.

mod config;
mod output;
#[cfg(test)]
mod random_tests;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};

pub use config::{Policy, SchedError, SchedulerConfig, SeqRequest};
pub use output::{ScheduledSeq, SchedulerOutput};

use crate::kv::{BlockId, KvManager, PrefixCacheStats, SeqId};

/// A sampled token not back from the device yet (async scheduling): never a real id, and never
/// hashed or computed before [`Scheduler::fill`] replaces it.
pub const PLACEHOLDER: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Seq {
    /// Prompt followed by the generated tokens.
    tokens: Vec<u32>,
    prompt_len: usize,
    max_tokens: usize,
    priority: i32,
    /// Admission order key, unique and increasing: FCFS order and the priority tie-break.
    arrival: u64,
    needs_prompt_logprobs: bool,
    /// The sibling to share the prompt with, with its `arrival`: an id can be reused after
    /// `finish`, the arrival tells whether it is still the same sequence. Sharing only points to
    /// earlier arrivals, so waits cannot form a cycle.
    share_with: Option<(SeqId, u64)>,
    /// Tokens whose KV is written; the next one to run is `tokens[num_computed]`.
    num_computed: usize,
    running: bool,
    /// The last token is a [`PLACEHOLDER`] waiting for [`Scheduler::fill`].
    placeholder: bool,
}

impl Seq {
    fn done(&self) -> bool {
        self.tokens.len() - self.prompt_len >= self.max_tokens
    }

    /// Tokens left to run before the next sample; 0 once `max_tokens` are sampled.
    fn remaining(&self) -> usize {
        if self.done() {
            0
        } else {
            self.tokens.len().saturating_sub(self.num_computed)
        }
    }

    fn key(&self) -> (i32, u64) {
        (self.priority, self.arrival)
    }
}

#[derive(Debug, Clone)]
pub struct Scheduler {
    cfg: SchedulerConfig,
    kv: KvManager,
    seqs: HashMap<SeqId, Seq>,
    /// Not running and holding no blocks. FCFS admits front first; preempted seqs re-enter at the
    /// front. Under `Policy::Priority` the order is irrelevant: `(priority, arrival)` decides.
    waiting: VecDeque<SeqId>,
    /// Holding blocks, in admission order: served in this order, FCFS preempts from the back.
    running: Vec<SeqId>,
    next_arrival: u64,
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig) -> Result<Self, SchedError> {
        cfg.validate()?;
        let num_blocks = u32::try_from(cfg.num_blocks).unwrap_or(u32::MAX); // validated
        let kv = KvManager::new(cfg.block_size, num_blocks, cfg.enable_prefix_caching);
        Ok(Self { cfg, kv, seqs: HashMap::new(), waiting: VecDeque::new(), running: Vec::new(), next_arrival: 0 })
    }

    /// Queues a sequence, or rejects it at once if it could never run to `max_tokens`.
    pub fn add(&mut self, req: SeqRequest) -> Result<(), SchedError> {
        let (id, prompt_len, max_tokens) = (req.id, req.prompt.len(), req.max_tokens);
        if self.seqs.contains_key(&id) {
            return Err(SchedError::DuplicateId { id });
        }
        if prompt_len == 0 {
            return Err(SchedError::EmptyPrompt { id });
        }
        if max_tokens == 0 {
            return Err(SchedError::ZeroMaxTokens { id });
        }
        let total = prompt_len.saturating_add(max_tokens);
        let max_model_len = self.cfg.max_model_len;
        if total > max_model_len {
            return Err(SchedError::TooLong { id, prompt_len, max_tokens, max_model_len });
        }
        let (needed, block_size, num_blocks) =
            (total.div_ceil(self.cfg.block_size), self.cfg.block_size, self.cfg.num_blocks);
        if needed > num_blocks {
            return Err(SchedError::NeverFits { id, prompt_len, max_tokens, needed, block_size, num_blocks });
        }
        let share_with = req.share_prompt_with.and_then(|src| Some((src, self.seqs.get(&src)?.arrival)));
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        let seq = Seq {
            tokens: req.prompt,
            prompt_len,
            max_tokens,
            priority: req.priority,
            arrival,
            needs_prompt_logprobs: req.needs_prompt_logprobs,
            share_with,
            num_computed: 0,
            running: false,
            placeholder: false,
        };
        self.seqs.insert(id, seq);
        self.waiting.push_back(id);
        Ok(())
    }

    /// Picks the next step's work. Never fails: with nothing runnable the output is empty.
    pub fn schedule(&mut self) -> SchedulerOutput {
        let mut budget = self.cfg.max_num_batched_tokens;
        let mut out = SchedulerOutput::default();
        self.schedule_running(&mut budget, &mut out);
        // As vLLM: a step that had to preempt admits nobody, or the admitted would take the
        // blocks just freed for the running sequences.
        if out.preempted.is_empty() {
            self.schedule_waiting(&mut budget, &mut out);
        }
        out.num_batched_tokens = out.seqs.iter().map(|s| s.tokens.len()).sum();
        out
    }

    fn schedule_running(&mut self, budget: &mut usize, out: &mut SchedulerOutput) {
        let mut i = 0;
        while i < self.running.len() && *budget > 0 {
            let id = self.running[i];
            let Some(seq) = self.seqs.get(&id) else { break };
            let (start, n) = (seq.num_computed, seq.remaining().min(*budget));
            if n == 0 {
                i += 1;
                continue;
            }
            while !self.kv.allocate(id, start + n, &[]) {
                let Some(v) = self.victim() else { return };
                let victim = self.running.remove(v);
                if v < i {
                    // Priority policy only: a sequence already scheduled this step gives its slot
                    // and tokens back.
                    i -= 1;
                    if let Some(pos) = out.seqs.iter().position(|s| s.id == victim) {
                        *budget += out.seqs.remove(pos).tokens.len();
                    }
                }
                self.preempt(victim);
                out.preempted.push(victim);
                if victim == id {
                    return;
                }
            }
            if let Some(s) = self.scheduled(id, n) {
                *budget -= n;
                out.seqs.push(s);
            }
            i += 1;
        }
    }

    fn schedule_waiting(&mut self, budget: &mut usize, out: &mut SchedulerOutput) {
        while *budget > 0 && self.running.len() < self.cfg.max_num_seqs {
            let Some(pos) = self.next_admissible() else { break };
            let id = self.waiting[pos];
            // Blocks short: stop rather than let later (smaller) requests overtake this one.
            let Some(s) = self.try_admit(id, *budget) else { break };
            self.waiting.remove(pos);
            self.running.push(id);
            *budget -= s.tokens.len();
            out.seqs.push(s);
        }
    }

    /// Index into `waiting` of the next sequence to admit, skipping those waiting for a sibling
    /// and those already at `max_tokens` (the engine is about to finish them).
    fn next_admissible(&self) -> Option<usize> {
        let mut ready = self.waiting.iter().enumerate().filter_map(|(i, id)| {
            let seq = self.seqs.get(id)?;
            (!seq.done() && !self.waits_for_sibling(seq)).then_some((i, seq.key()))
        });
        match self.cfg.policy {
            Policy::Fcfs => ready.next(),
            Policy::Priority => ready.min_by_key(|&(_, key)| key),
        }
        .map(|(i, _)| i)
    }

    fn sibling<'a>(&'a self, seq: &Seq) -> Option<(SeqId, &'a Seq)> {
        if seq.needs_prompt_logprobs {
            return None;
        }
        let (src_id, arrival) = seq.share_with?;
        let src = self.seqs.get(&src_id).filter(|s| s.arrival == arrival)?;
        Some((src_id, src))
    }

    fn waits_for_sibling(&self, seq: &Seq) -> bool {
        self.sibling(seq).is_some_and(|(_, src)| !src.done() && src.num_computed < src.prompt_len)
    }

    /// Full blocks `seq` can take over from its sibling: computed there and equal to its own
    /// tokens, leaving at least one token of its own to run.
    fn sibling_blocks(&self, seq: &Seq) -> Option<(SeqId, usize)> {
        let (src_id, src) = self.sibling(seq)?;
        if !src.running {
            return None;
        }
        let common = seq.tokens.iter().zip(&src.tokens).take_while(|(a, b)| a == b).count();
        let shareable = common.min(src.num_computed).min(seq.tokens.len() - 1);
        let n = (shareable / self.cfg.block_size).min(self.kv.block_table(src_id).len());
        (n > 0).then_some((src_id, n))
    }

    /// Gives waiting `id` its cached or shared prefix and blocks for what fits in `budget`; `None`,
    /// changing nothing, if the blocks are not there.
    fn try_admit(&mut self, id: SeqId, budget: usize) -> Option<ScheduledSeq> {
        let seq = self.seqs.get(&id)?;
        let known = seq.tokens.len();
        let lookup = self.cfg.enable_prefix_caching && !seq.needs_prompt_logprobs;
        let (hit, forked) = match self.sibling_blocks(seq) {
            Some((src, n)) => (Default::default(), self.kv.fork(src, id, n).then_some(n)),
            None if lookup => (self.kv.computed_prefix(&seq.tokens), None),
            None => (Default::default(), None),
        };
        let computed = forked.map_or(hit.num_tokens, |n| n * self.cfg.block_size);
        let n = (known - computed).min(budget);
        if !self.kv.allocate(id, computed + n, &hit.blocks) {
            self.kv.free(id); // undoes the fork, if any; the shared blocks stay referenced by src
            return None;
        }
        if lookup && forked.is_none() {
            self.kv.record_prefix_query(known, computed);
        }
        let seq = self.seqs.get_mut(&id)?;
        seq.num_computed = computed;
        seq.running = true;
        self.scheduled(id, n)
    }

    /// The running sequence to preempt: FCFS the last admitted, Priority the worst key.
    fn victim(&self) -> Option<usize> {
        match self.cfg.policy {
            Policy::Fcfs => self.running.len().checked_sub(1),
            Policy::Priority => (0..self.running.len()).max_by_key(|&i| self.seqs.get(&self.running[i]).map(Seq::key)),
        }
    }

    /// Frees the blocks of `id` (already removed from `running`) and queues it to recompute.
    fn preempt(&mut self, id: SeqId) {
        self.kv.free(id);
        if let Some(seq) = self.seqs.get_mut(&id) {
            seq.num_computed = 0;
            seq.running = false;
        }
        self.waiting.push_front(id);
    }

    fn scheduled(&self, id: SeqId, n: usize) -> Option<ScheduledSeq> {
        let seq = self.seqs.get(&id)?;
        let start = seq.num_computed;
        Some(ScheduledSeq {
            id,
            start,
            tokens: seq.tokens.get(start..start + n)?.to_vec(),
            block_table: self.kv.block_table(id).to_vec(),
            sample: start + n == seq.tokens.len(),
            prompt_logprobs: seq.needs_prompt_logprobs && start < seq.prompt_len,
            prompt_len: seq.prompt_len,
        })
    }

    /// Records that `out` ran: advances `num_computed`, registers newly full blocks in the prefix
    /// cache, and appends each `(id, token)` of `sampled` to a sequence whose chunk had `sample`.
    /// Entries for sequences finished since `schedule` are ignored, as are tokens for sequences
    /// that were not to sample.
    pub fn update(&mut self, out: &SchedulerOutput, sampled: &[(SeqId, u32)]) {
        let mut to_sample = self.record(out);
        for &(id, token) in sampled {
            match self.seqs.get_mut(&id) {
                Some(seq) if to_sample.remove(&id) && !seq.done() => seq.tokens.push(token),
                Some(_) => tracing::warn!(seq = id, "sampled token for a sequence not due to sample; ignored"),
                None => {}
            }
        }
    }

    /// [`Scheduler::update`] before the step's tokens are known (async scheduling): each sequence
    /// that samples and is not at `max_tokens` gets a [`PLACEHOLDER`], so the next `schedule`
    /// runs it. [`Scheduler::fill`] then gives the tokens.
    pub fn advance(&mut self, out: &SchedulerOutput) {
        for id in self.record(out) {
            if let Some(seq) = self.seqs.get_mut(&id).filter(|s| !s.done()) {
                seq.tokens.push(PLACEHOLDER);
                seq.placeholder = true;
            }
        }
    }

    /// The tokens of a step recorded by [`Scheduler::advance`]: each replaces its sequence's
    /// placeholder. Tokens for sequences finished since, or without a placeholder, are ignored.
    /// A sequence whose token never comes (its sampling failed) must be finished by the caller.
    pub fn fill(&mut self, sampled: &[(SeqId, u32)]) {
        for &(id, token) in sampled {
            let Some(seq) = self.seqs.get_mut(&id) else { continue };
            match seq.tokens.last_mut() {
                Some(last) if seq.placeholder => {
                    *last = token;
                    seq.placeholder = false;
                }
                _ => tracing::warn!(seq = id, "token for a sequence with no placeholder; ignored"),
            }
        }
    }

    /// Whether the next step can be scheduled ahead of `out`'s tokens without preempting anyone:
    /// nothing is waiting, and the free blocks cover every sampling sequence's next position.
    pub fn can_advance(&self, out: &SchedulerOutput) -> bool {
        if !self.waiting.is_empty() {
            return false;
        }
        let bs = self.cfg.block_size;
        let mut need = 0;
        for s in out.seqs.iter().filter(|s| s.sample) {
            let Some(seq) = self.seqs.get(&s.id) else { continue };
            let next = s.start + s.tokens.len() + 1; // positions once the placeholder runs
            if seq.running && !seq.done() && next.div_ceil(bs) > self.kv.block_table(s.id).len() {
                need += 1;
            }
        }
        need <= self.kv.num_free_blocks()
    }

    /// Advances `num_computed` past `out`'s chunks and caches newly full blocks → the sequences
    /// due to sample (each still running that step's chunk).
    fn record(&mut self, out: &SchedulerOutput) -> HashSet<SeqId> {
        let mut to_sample = HashSet::new();
        for s in &out.seqs {
            let Some(seq) = self.seqs.get_mut(&s.id) else { continue };
            if !seq.running || seq.num_computed != s.start {
                continue; // not this sequence's current step (finished, then its id reused)
            }
            seq.num_computed += s.tokens.len();
            self.kv.cache_full_blocks(s.id, &seq.tokens, seq.num_computed);
            if s.sample {
                to_sample.insert(s.id);
            }
        }
        to_sample
    }

    /// Removes a finished or aborted sequence and frees its blocks at once. False if unknown.
    pub fn finish(&mut self, id: SeqId) -> bool {
        let Some(seq) = self.seqs.remove(&id) else { return false };
        if seq.running {
            self.running.retain(|&r| r != id);
        } else {
            self.waiting.retain(|&w| w != id);
        }
        self.kv.free(id);
        true
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    /// Some sequence is queued or running; the engine keeps stepping (and finishing) until not.
    pub fn has_work(&self) -> bool {
        !self.seqs.is_empty()
    }

    /// Fraction of KV blocks in use.
    pub fn kv_usage(&self) -> f64 {
        self.kv.usage()
    }

    pub fn num_free_blocks(&self) -> usize {
        self.kv.num_free_blocks()
    }

    pub fn prefix_cache_stats(&self) -> PrefixCacheStats {
        self.kv.prefix_stats()
    }

    /// Prompt followed by the tokens generated so far.
    pub fn tokens(&self, id: SeqId) -> Option<&[u32]> {
        self.seqs.get(&id).map(|s| s.tokens.as_slice())
    }

    pub fn num_computed(&self, id: SeqId) -> Option<usize> {
        self.seqs.get(&id).map(|s| s.num_computed)
    }

    pub fn block_table(&self, id: SeqId) -> &[BlockId] {
        self.kv.block_table(id)
    }

    /// The KV manager's invariants plus the scheduler's: every sequence is in exactly one of
    /// waiting / running, waiting ones hold no blocks, running ones hold blocks for what they
    /// computed and no more than their known tokens need. For tests and debugging.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.kv.check_invariants()?;
        let mut seen = HashSet::new();
        for (&id, running) in self.waiting.iter().map(|id| (id, false)).chain(self.running.iter().map(|id| (id, true)))
        {
            let seq = self.seqs.get(&id).ok_or(format!("seq {id} queued but unknown"))?;
            if !seen.insert(id) || seq.running != running {
                return Err(format!("seq {id} listed twice or in the wrong list (running = {})", seq.running));
            }
            let table = self.kv.block_table(id).len();
            let (lo, hi) = (self.kv.blocks_for(seq.num_computed), self.kv.blocks_for(seq.tokens.len()));
            if !running && (table > 0 || seq.num_computed > 0) {
                return Err(format!("waiting seq {id} holds {table} blocks, {} computed", seq.num_computed));
            }
            if running && !(lo..=hi).contains(&table) {
                return Err(format!("running seq {id} holds {table} blocks, needs {lo}..={hi}"));
            }
            if seq.tokens[..seq.num_computed.min(seq.tokens.len())].contains(&PLACEHOLDER) {
                return Err(format!("seq {id} computed a placeholder token"));
            }
            if seq.placeholder != (seq.tokens.last() == Some(&PLACEHOLDER)) {
                return Err(format!("seq {id}: placeholder flag out of step with its tokens"));
            }
            if seq.tokens.len() > seq.prompt_len + seq.max_tokens {
                return Err(format!("seq {id} has {} tokens, over its limit", seq.tokens.len()));
            }
        }
        if seen.len() != self.seqs.len() || self.running.len() > self.cfg.max_num_seqs {
            return Err(format!("{} seqs, {} listed, {} running", self.seqs.len(), seen.len(), self.running.len()));
        }
        Ok(())
    }
}
