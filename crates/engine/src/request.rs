//! What goes into the engine (a [`Request`]) and what comes back on its stream ([`Event`]s).

use std::time::Duration;

use crate::sampler::{SamplingParams, TokenLogprob};

pub type RequestId = u64;

/// One generation request: a tokenized prompt and how to sample from it.
#[derive(Debug, Clone)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    /// Lower runs sooner under the priority policy (vLLM's convention); ignored under FCFS.
    pub priority: i32,
}

impl Request {
    pub fn new(prompt: Vec<u32>, params: SamplingParams) -> Self {
        Self { prompt, params, priority: 0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// EOS, a stop token id or a stop string.
    Stop,
    /// `max_tokens` or the model's context length.
    Length,
}

impl FinishReason {
    /// The OpenAI name.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// New output of one of the request's `n` sequences.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    /// Which of the `n` sequences (0-based).
    pub index: usize,
    /// Text made final by these tokens (UTF-8 complete, past any possible stop string).
    pub text: String,
    pub token_ids: Vec<u32>,
    /// One per token in `token_ids` when the request asked for logprobs.
    pub logprobs: Vec<TokenLogprob>,
    /// Set on the sequence's last delta.
    pub finish_reason: Option<FinishReason>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Generated tokens over all `n` sequences (an EOS or stop token counts, as in vLLM).
    pub completion_tokens: usize,
    /// Prompt tokens whose K/V came from the prefix cache.
    pub cached_prompt_tokens: usize,
}

/// Where a request's time went, for metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Submission to the first step that ran any of its tokens.
    pub queued: Duration,
    /// Submission to the first generated token.
    pub first_token: Duration,
    /// Submission to the end.
    pub total: Duration,
}

/// What a request's stream carries, in order: `PromptLogprobs` (if asked for), `Delta`s, then
/// exactly one `Finished` or `Error`.
#[derive(Debug)]
pub enum Event {
    /// Logprob of each prompt token given the ones before it; the first is `None`.
    PromptLogprobs(Vec<Option<TokenLogprob>>),
    Delta(Delta),
    Finished {
        usage: Usage,
        timings: Timings,
    },
    Error(crate::Error),
}
