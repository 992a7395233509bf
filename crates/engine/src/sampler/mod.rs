//! Per-sequence token selection, following vLLM's V1 sampler.
//!
//! Each step, in this order:
//! 1. logprobs, when asked, from the raw model logits (vLLM's default "raw_logprobs"), so they
//!    describe the model, not the request's knobs;
//! 2. `logit_bias`, then the `min_tokens` mask on EOS and stop ids, then the penalties;
//! 3. greedy argmax (temperature 0, ties to the lowest id), or temperature → top-k → top-p →
//!    min-p → one draw from the sequence's own RNG.
//!
//! One [`Sampler`] belongs to one sequence and draws only from its own seeded RNG, exactly once per
//! random step, so a seeded request reproduces whatever else is in the batch. Out of scope here:
//! batching across sequences, beam search, guided decoding, stop strings (the detokenizer's job).

mod logprobs;
mod params;
mod penalties;
#[cfg(test)]
mod tests;

use prom_models::cuda::filter::{self, Filters};
use prom_models::cuda::RowPick;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::{Error, Result};
pub use logprobs::{prompt_logprobs, TokenLogprob};
pub use params::{SamplingParams, MAX_LOGPROBS};
pub use penalties::{apply_logit_bias, apply_penalties, mask_tokens, Penalties, TokenCounts};
/// Greedy choice (the lowest id among the largest finite logits), shared with the model's
/// device path for [`Sampler::is_plain_greedy`] steps ([`prom_models::cuda::argmax_rows`]).
pub use prom_models::cuda::argmax;

/// Temperatures below this sample greedily, as vLLM's `_SAMPLING_EPS`: dividing by them would
/// only overflow on the way to the same argmax.
const GREEDY_BELOW: f32 = 1e-5;

/// One step's outcome: the token, and its logprob when the request asked for `logprobs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    pub logprob: Option<TokenLogprob>,
}

/// The sampling state of one sequence: its RNG, its penalty counts and reusable scratch buffers.
pub struct Sampler {
    /// `None` when the step is an argmax.
    filters: Option<Filters>,
    logprobs: Option<usize>,
    logit_bias: Vec<(u32, f32)>,
    min_tokens: usize,
    /// EOS ids (unless `ignore_eos`) and `stop_token_ids` inside the vocabulary, masked while
    /// fewer than `min_tokens` tokens were generated.
    min_tokens_mask: Vec<u32>,
    penalties: Penalties,
    /// `Some` exactly when a penalty is on.
    counts: Option<TokenCounts>,
    vocab_size: usize,
    seed: u64,
    rng: StdRng,
    /// The processed logits of the current step; reused so a step allocates nothing.
    work: Vec<f32>,
    /// The random path's buffers (the surviving tokens' weights); reused likewise.
    scratch: filter::Scratch,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("filters", &self.filters)
            .field("penalties", &self.penalties)
            .field("vocab_size", &self.vocab_size)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl Sampler {
    /// The sampler of a request's only (or first) sequence. `eos_ids` are the model's end ids,
    /// `vocab_size` the width of a logits row, `prompt` the prompt ids (for the repetition penalty).
    pub fn new(params: &SamplingParams, eos_ids: &[u32], vocab_size: usize, prompt: &[u32]) -> Result<Self> {
        Self::new_for_child(params, eos_ids, vocab_size, prompt, 0)
    }

    /// The sampler of sequence `index` of an `n > 1` request. With a seed, sequence i draws from
    /// [`child_seed`]`(seed, i)`: distinct per sequence, reproducible per request, and sequence 0
    /// matches [`Sampler::new`]. Without one, each sequence gets its own random seed.
    pub fn new_for_child(
        params: &SamplingParams,
        eos_ids: &[u32],
        vocab_size: usize,
        prompt: &[u32],
        index: usize,
    ) -> Result<Self> {
        params.validate()?;
        if vocab_size == 0 {
            return Err(Error::InvalidRequest("the sampler's `vocab_size` must be >= 1. Given: 0".into()));
        }
        if let Some(&(id, _)) = params.logit_bias.iter().find(|&&(id, _)| id as usize >= vocab_size) {
            return Err(Error::InvalidRequest(format!(
                "`logit_bias` token ids must be < the vocabulary size ({vocab_size}). Given: {id}"
            )));
        }
        let mut min_tokens_mask = Vec::new();
        if params.min_tokens > 0 {
            min_tokens_mask.extend_from_slice(&params.stop_token_ids);
            if !params.ignore_eos {
                min_tokens_mask.extend_from_slice(eos_ids);
            }
            min_tokens_mask.retain(|&t| (t as usize) < vocab_size);
            min_tokens_mask.sort_unstable();
            min_tokens_mask.dedup();
        }
        let penalties = Penalties {
            repetition: params.repetition_penalty,
            presence: params.presence_penalty,
            frequency: params.frequency_penalty,
        };
        // The prompt only matters to the repetition penalty; don't keep a set of it otherwise.
        let counts =
            (!penalties.is_off()).then(|| TokenCounts::new(if penalties.repetition != 1.0 { prompt } else { &[] }));
        let greedy = params.temperature < GREEDY_BELOW || params.top_k == 1;
        if !greedy && vocab_size > filter::MAX_VOCAB {
            return Err(Error::InvalidRequest(format!(
                "random sampling supports vocabularies up to {} tokens; this model has {vocab_size} (use temperature 0)",
                filter::MAX_VOCAB
            )));
        }
        let filters = (!greedy).then_some(Filters {
            temperature: params.temperature,
            top_k: params.top_k,
            top_p: params.top_p,
            min_p: params.min_p,
        });
        let seed = match params.seed {
            Some(s) => child_seed(s, index),
            // ThreadRng is a CSPRNG seeded from the OS; keeping the seed lets a run be replayed.
            None => rand::random(),
        };
        Ok(Self {
            filters,
            logprobs: params.logprobs,
            logit_bias: params.logit_bias.clone(),
            min_tokens: params.min_tokens,
            min_tokens_mask,
            penalties,
            counts,
            vocab_size,
            seed,
            rng: StdRng::seed_from_u64(seed),
            work: Vec::new(),
            scratch: filter::Scratch::default(),
        })
    }

    /// The seed this sequence draws from (the random one when the request gave none). Note that
    /// `StdRng` streams are reproducible within one build of `rand`, not promised across versions.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether this step is a plain argmax of the raw logits: greedy, with no `logit_bias`,
    /// penalty, active `min_tokens` mask or logprobs. Then the model's device can pick the token
    /// ([`prom_models::cuda::argmax_rows`]) and only its id need reach the host; [`Sampler::sample`]
    /// would pick the same one. `generated` is the number of tokens generated so far.
    pub fn is_plain_greedy(&self, generated: usize) -> bool {
        self.filters.is_none() && self.needs_only_raw_logits(generated)
    }

    /// Whether this step uses the raw logits as they are: no `logit_bias`, penalty, active
    /// `min_tokens` mask or logprobs.
    fn needs_only_raw_logits(&self, generated: usize) -> bool {
        self.logprobs.is_none()
            && self.logit_bias.is_empty()
            && self.counts.is_none()
            && (generated >= self.min_tokens || self.min_tokens_mask.is_empty())
    }

    /// What the model's device can do for this step without the host seeing the logits: a plain
    /// argmax ([`Sampler::is_plain_greedy`]), or the random path when the step needs nothing but
    /// the raw logits (no `logit_bias`, penalty, active `min_tokens` mask or logprobs). For the
    /// latter this draws the step's random number, as [`Sampler::sample`] would have: the device
    /// picks the token [`Sampler::sample`] would pick. `None`: the host must sample the row.
    pub fn device_pick(&mut self, generated: usize) -> Option<RowPick> {
        if self.is_plain_greedy(generated) {
            return Some(RowPick::Argmax);
        }
        let filters = self.filters.filter(|_| self.needs_only_raw_logits(generated))?;
        Some(RowPick::Sample { filters, u53: self.draw() })
    }

    /// Whether [`Sampler::device_pick`] would give the device this step (on a GPU), without
    /// drawing.
    pub fn device_can(&self, generated: usize) -> bool {
        self.is_plain_greedy(generated) || (self.filters.is_some() && self.needs_only_raw_logits(generated))
    }

    /// The step's uniform draw: the top 53 bits of the RNG's next u64.
    fn draw(&mut self) -> u64 {
        self.rng.next_u64() >> 11
    }

    /// The outcome of a step whose token was picked elsewhere ([`Sampler::device_pick`]):
    /// `token` is `None` when the row had no finite logit (the error [`Sampler::sample`] gives).
    pub fn picked(&self, token: Option<u32>) -> Result<Sampled> {
        match token {
            Some(token) if (token as usize) < self.vocab_size => Ok(Sampled { token, logprob: None }),
            Some(token) => Err(Error::Engine(format!(
                "the device picked token {token}, outside the vocabulary ({})",
                self.vocab_size
            ))),
            None => Err(nothing_to_sample()),
        }
    }

    /// Picks the next token from one row of raw model logits. `generated` is everything this
    /// sequence has generated so far; it only ever grows between calls (the penalty counts are
    /// updated from its new tail, and recounted if it shrinks).
    pub fn sample(&mut self, logits: &[f32], generated: &[u32]) -> Result<Sampled> {
        if logits.len() != self.vocab_size {
            return Err(Error::InvalidRequest(format!(
                "a logits row must have vocab_size ({}) entries. Given: {}",
                self.vocab_size,
                logits.len()
            )));
        }
        if let Some(c) = &mut self.counts {
            c.sync(generated);
        }
        let masking = generated.len() < self.min_tokens && !self.min_tokens_mask.is_empty();
        let processed: &[f32] = if self.logit_bias.is_empty() && !masking && self.counts.is_none() {
            logits
        } else {
            self.work.clear();
            self.work.extend_from_slice(logits);
            apply_logit_bias(&mut self.work, &self.logit_bias);
            if masking {
                mask_tokens(&mut self.work, &self.min_tokens_mask);
            }
            if let Some(c) = &self.counts {
                apply_penalties(&mut self.work, c, self.penalties);
            }
            &self.work
        };
        let token = match self.filters {
            None => argmax(processed),
            Some(f) => {
                // Draw before filtering so every random step consumes exactly one number.
                let u53 = self.rng.next_u64() >> 11; // as `draw`
                filter::sample(processed, f, u53, &mut self.scratch)
            }
        };
        let Some(token) = token else { return Err(nothing_to_sample()) };
        let logprob = self.logprobs.and_then(|n| logprobs::token_logprob(logits, token, n));
        Ok(Sampled { token, logprob })
    }
}

fn nothing_to_sample() -> Error {
    Error::InvalidRequest("no token can be sampled: every logit is -inf or NaN after bias, masks and penalties".into())
}

/// The seed of sequence `index` of a request seeded with `seed`: the seed itself for index 0,
/// else the index-th output of SplitMix64 started at `seed` (a bijective mix of
/// `seed + index * 0x9E37_79B9_7F4A_7C15`), so neighbouring seeds and indices share no stream.
pub fn child_seed(seed: u64, index: usize) -> u64 {
    if index == 0 {
        return seed;
    }
    let mut z = seed.wrapping_add((index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
