//! What one forward pass computes: chunks of several sequences, each at its own position with
//! its own block table, flattened into one row per token.

use crate::kernels::attention::AttnSeq;
use crate::{Error, Result};

/// Which positions of a chunk get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    /// Every position (scoring, prompt logprobs).
    All,
    /// The last position (the chunk that reaches the end of the known tokens).
    Last,
    /// None (a prefill chunk in the middle of a prompt).
    None,
}

/// One sequence's part of a batch: `tokens` are positions `start..start + tokens.len()`; the
/// K/V of positions `0..start` are already in the blocks of `block_table`, which must cover
/// `start + tokens.len()` tokens.
#[derive(Debug, Clone, Copy)]
pub struct SeqChunk<'a> {
    pub tokens: &'a [u32],
    pub start: usize,
    pub block_table: &'a [u32],
    pub logits: LogitsFor,
}

/// The flattened batch: per token its id, position and cache slot; per sequence its rows.
pub(crate) struct BatchMeta<'a> {
    pub tokens: Vec<u32>,
    pub positions: Vec<u32>,
    /// `block · block_size + offset` for each token.
    pub slots: Vec<usize>,
    pub seqs: Vec<AttnSeq<'a>>,
    /// `(start, len, start + len)` per sequence, for the rotary tables.
    pub spans: Vec<(usize, usize, usize)>,
    /// Rows that get logits, in order.
    pub logit_rows: Vec<u32>,
    /// The same layout in device memory, for a model on a GPU (set by the model, read by the
    /// attention kernels of every layer).
    pub gpu: Option<crate::cuda::GpuBatch>,
}

impl<'a> BatchMeta<'a> {
    pub fn new(chunks: &[SeqChunk<'a>], block_size: usize, vocab: usize) -> Result<Self> {
        if chunks.is_empty() {
            return Err(Error::InvalidInput("a forward pass needs at least one sequence".into()));
        }
        let total: usize = chunks.iter().map(|c| c.tokens.len()).sum();
        let mut m = BatchMeta {
            tokens: Vec::with_capacity(total),
            positions: Vec::with_capacity(total),
            slots: Vec::with_capacity(total),
            seqs: Vec::with_capacity(chunks.len()),
            spans: Vec::with_capacity(chunks.len()),
            logit_rows: Vec::new(),
            gpu: None,
        };
        for (i, c) in chunks.iter().enumerate() {
            let (t, start) = (c.tokens.len(), c.start);
            if t == 0 {
                return Err(Error::InvalidInput(format!("sequence {i} of the batch has no tokens")));
            }
            if let Some(&bad) = c.tokens.iter().find(|&&id| id as usize >= vocab) {
                return Err(Error::InvalidInput(format!("token id {bad} >= vocab_size {vocab}")));
            }
            if c.block_table.len() * block_size < start + t {
                return Err(Error::InvalidInput(format!(
                    "sequence {i}: a block table of {} blocks of {block_size} cannot hold {} tokens",
                    c.block_table.len(),
                    start + t
                )));
            }
            let row = m.tokens.len();
            m.tokens.extend_from_slice(c.tokens);
            for p in start..start + t {
                m.positions.push(p as u32);
                m.slots.push(c.block_table[p / block_size] as usize * block_size + p % block_size);
            }
            match c.logits {
                LogitsFor::All => m.logit_rows.extend(row as u32..(row + t) as u32),
                LogitsFor::Last => m.logit_rows.push((row + t - 1) as u32),
                LogitsFor::None => {}
            }
            m.seqs.push(AttnSeq { row, len: t, start, block_table: c.block_table });
            m.spans.push((start, t, start + t));
        }
        Ok(m)
    }

    pub fn num_tokens(&self) -> usize {
        self.tokens.len()
    }
}
