//! Single-sequence generation: prefill, then sample → decode until EOS, a stop string,
//! `max_tokens` or the context limit.

use std::time::{Duration, Instant};

use prom_models::nn::{LogitsFor, Model};
use prom_models::Tokenizer;

use crate::detokenizer::{StopMatcher, StreamDecoder};
use crate::error::tensor_err;
use crate::sampler::{Sampler, SamplingParams};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// EOS, a stop token id or a stop string.
    Stop,
    /// `max_tokens` or the model's context length.
    Length,
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub prefill_time: Duration,
    pub decode_time: Duration,
}

pub struct Generator<'a> {
    model: &'a Model,
    tokenizer: &'a Tokenizer,
}

impl<'a> Generator<'a> {
    pub fn new(model: &'a Model, tokenizer: &'a Tokenizer) -> Self {
        Self { model, tokenizer }
    }

    /// Generates from `prompt` token ids, calling `on_text` with each piece of text as soon as
    /// it is final (UTF-8 complete and not part of a possible stop string).
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &SamplingParams,
        mut on_text: impl FnMut(&str),
    ) -> Result<Generation> {
        params.validate()?;
        let ctx = self.model.config().max_position_embeddings;
        if prompt.is_empty() {
            return Err(Error::InvalidRequest("the prompt is empty".into()));
        }
        if prompt.len() >= ctx {
            return Err(Error::InvalidRequest(format!(
                "the prompt has {} tokens; the model's context length is {ctx}",
                prompt.len()
            )));
        }
        let budget = params.max_tokens.min(ctx - prompt.len());
        let mut stop_ids: Vec<u32> = params.stop_token_ids.clone();
        if !params.ignore_eos {
            stop_ids.extend_from_slice(self.tokenizer.eos_token_ids());
            stop_ids.extend_from_slice(&self.model.config().eos_token_ids);
        }

        let mut eos_ids = self.tokenizer.eos_token_ids().to_vec();
        eos_ids.extend_from_slice(&self.model.config().eos_token_ids);
        let mut sampler = Sampler::new(params, &eos_ids, self.model.config().vocab_size, prompt)?;
        let mut decoder = StreamDecoder::new(self.tokenizer, true);
        let mut stops = StopMatcher::new(&params.stop);
        let mut cache = self.model.new_cache();
        let mut text = String::new();
        let mut ids = Vec::new();
        let mut emit = |piece: &str, text: &mut String| {
            if !piece.is_empty() {
                on_text(piece);
                text.push_str(piece);
            }
        };

        let t0 = Instant::now();
        let mut logits = self.model.forward(prompt, &mut cache, LogitsFor::Last)?;
        let prefill_time = t0.elapsed();
        let t1 = Instant::now();
        let mut finish = FinishReason::Length;
        let mut hit_stop_string = false;
        while ids.len() < budget {
            let row: Vec<f32> = logits.get(0).and_then(|r| r.to_vec1()).map_err(tensor_err("read logits"))?;
            let next = sampler.sample(&row, &ids)?.token;
            if stop_ids.contains(&next) {
                finish = FinishReason::Stop;
                break;
            }
            ids.push(next);
            if let Some(piece) = decoder.push(next)? {
                let out = stops.push(&piece);
                emit(&out.text, &mut text);
                if out.stopped {
                    finish = FinishReason::Stop;
                    hit_stop_string = true;
                    break;
                }
            }
            if ids.len() < budget {
                logits = self.model.forward(&[next], &mut cache, LogitsFor::Last)?;
            }
        }
        if !hit_stop_string {
            // The stream ended on EOS or length: release what the decoder and the stop matcher
            // held back, unless it completes a stop string.
            let held = decoder.flush()?.unwrap_or_default();
            let out = stops.push(&held);
            emit(&out.text, &mut text);
            if out.stopped {
                finish = FinishReason::Stop;
            } else {
                let tail = stops.finish();
                emit(&tail, &mut text);
            }
        }
        Ok(Generation {
            text,
            token_ids: ids,
            finish_reason: finish,
            prompt_tokens: prompt.len(),
            prefill_time,
            decode_time: t1.elapsed(),
        })
    }
}
