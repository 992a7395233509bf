//! What goes into the scheduler: its configuration, requests, and the errors that reject them.

use crate::kv::SeqId;

/// Which waiting request is admitted first, and which running one is preempted first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Policy {
    /// Arrival order; preempt the most recently admitted.
    #[default]
    Fcfs,
    /// Lowest `priority` first, then arrival; preempt the worst `(priority, arrival)`.
    Priority,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Tokens per KV block.
    pub block_size: usize,
    /// KV blocks in the pool (the executor sizes its tensors to match).
    pub num_blocks: usize,
    /// Token budget of one step, prefill chunks and decodes together.
    pub max_num_batched_tokens: usize,
    /// Most sequences running (holding KV blocks, possibly mid-prefill) at once.
    pub max_num_seqs: usize,
    /// Longest sequence, prompt + generated.
    pub max_model_len: usize,
    pub enable_prefix_caching: bool,
    pub policy: Policy,
}

impl SchedulerConfig {
    pub(crate) fn validate(&self) -> Result<(), SchedError> {
        let checks: [(&'static str, usize, usize, &'static str); 5] = [
            ("block_size", self.block_size, 1, ">= 1"),
            ("num_blocks", self.num_blocks, 1, ">= 1"),
            ("max_num_batched_tokens", self.max_num_batched_tokens, 1, ">= 1"),
            ("max_num_seqs", self.max_num_seqs, 1, ">= 1"),
            ("max_model_len", self.max_model_len, 2, ">= 2 (one prompt token and one generated token)"),
        ];
        for (field, value, min, requirement) in checks {
            if value < min {
                return Err(SchedError::InvalidConfig { field, requirement, value });
            }
        }
        if u32::try_from(self.num_blocks).is_err() {
            return Err(SchedError::InvalidConfig {
                field: "num_blocks",
                requirement: "<= u32::MAX (block ids are u32)",
                value: self.num_blocks,
            });
        }
        Ok(())
    }
}

/// One sequence to generate: a request, or one of its `n` samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqRequest {
    pub id: SeqId,
    pub prompt: Vec<u32>,
    /// Tokens to generate at most; the engine calls `finish` once this many are sampled.
    pub max_tokens: usize,
    /// Lower runs sooner (vLLM's convention); only read under [`Policy::Priority`].
    pub priority: i32,
    /// Every prompt position must be computed to score it, so no prefix-cache or sibling blocks.
    pub needs_prompt_logprobs: bool,
    /// n > 1 sampling: wait until that sequence has computed its whole prompt, then share its
    /// full prompt blocks instead of recomputing them. Ignored if no such sequence is queued or
    /// running when this one is added.
    pub share_prompt_with: Option<SeqId>,
}

impl SeqRequest {
    /// A plain request: priority 0, no prompt logprobs, no sharing.
    pub fn new(id: SeqId, prompt: Vec<u32>, max_tokens: usize) -> Self {
        Self { id, prompt, max_tokens, priority: 0, needs_prompt_logprobs: false, share_prompt_with: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    #[error("invalid scheduler config: `{field}` must be {requirement}. Given: {value}")]
    InvalidConfig { field: &'static str, requirement: &'static str, value: usize },

    #[error("request {id}: the prompt is empty")]
    EmptyPrompt { id: SeqId },

    #[error("request {id}: `max_tokens` must be >= 1. Given: 0")]
    ZeroMaxTokens { id: SeqId },

    #[error(
        "request {id}: prompt length {prompt_len} + `max_tokens` {max_tokens} exceeds the maximum model length \
         {max_model_len}"
    )]
    TooLong { id: SeqId, prompt_len: usize, max_tokens: usize, max_model_len: usize },

    #[error(
        "request {id}: prompt length {prompt_len} + `max_tokens` {max_tokens} needs {needed} KV blocks of \
         {block_size} tokens, but the whole pool has {num_blocks}"
    )]
    NeverFits { id: SeqId, prompt_len: usize, max_tokens: usize, needed: usize, block_size: usize, num_blocks: usize },

    #[error("request {id}: a sequence with this id is already queued or running")]
    DuplicateId { id: SeqId },
}
