//! What comes out of one `schedule()`: plain data for the executor, then back into `update()`.

use crate::kv::{BlockId, SeqId};

/// One step's work. `seqs` is in scheduling order: running sequences first (decodes and
/// continued prefills, in admission order), then newly admitted ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerOutput {
    pub seqs: Vec<ScheduledSeq>,
    /// Sequences preempted this step: their blocks are already freed and their KV is gone; they
    /// wait to be recomputed from position 0. The executor drops any per-sequence state it keeps.
    pub preempted: Vec<SeqId>,
    /// Sum of `tokens.len()` over `seqs`; at most `max_num_batched_tokens`.
    pub num_batched_tokens: usize,
}

impl SchedulerOutput {
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }
}

/// Run `tokens` at positions `start..start + tokens.len()` of sequence `id`, writing their KV into
/// `block_table` (position `p` lives in block `block_table[p / block_size]`, slot
/// `p % block_size`) and attending to positions `0..start` already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledSeq {
    pub id: SeqId,
    /// Tokens already computed: the position of the first token in `tokens`.
    pub start: usize,
    /// The tokens to run this step: a prefill chunk, a whole prompt, or one decode token.
    pub tokens: Vec<u32>,
    /// Covers at least `start + tokens.len()` positions. Blocks below `start / block_size` may be
    /// shared with other sequences (prefix cache, fork) and are never written by this one.
    pub block_table: Vec<BlockId>,
    /// This chunk ends at the last known token: sample the next token from its last position and
    /// pass it to `update`. False for all but the last chunk of a chunked (re)computation.
    pub sample: bool,
    /// Return prompt logprobs for the prompt positions in this chunk. Positions are absolute, so
    /// a recomputation after preemption reproduces values the engine may already hold.
    pub prompt_logprobs: bool,
    /// The request's prompt length: positions at or past it hold generated tokens (also when a
    /// preempted sequence recomputes them).
    pub prompt_len: usize,
}
