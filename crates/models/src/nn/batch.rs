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
    /// The sequence's prompt length: its tokens at positions below it are prompt tokens, the
    /// rest generated ones (`usize::MAX`: all prompt, as in scoring). A CPU matmul may compute
    /// prompt rows through faster prefill tiles that round differently (bfloat16 AMX, see
    /// `kernels::with_prompt_rows`); choosing by the token, not by the batch, keeps a token's
    /// numbers the same in any batch, chunking or recomputation.
    pub prompt_len: usize,
}

/// The slot of a token whose K/V are not stored (a padding row of a CUDA graph's batch).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) const NO_SLOT: usize = u32::MAX as usize;

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
    /// Rows of prompt tokens ([`SeqChunk::prompt_len`]): sorted, disjoint, adjacent runs merged.
    pub prompt_rows: Vec<std::ops::Range<usize>>,
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
            prompt_rows: Vec::new(),
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
            let prompt = c.prompt_len.saturating_sub(start).min(t);
            if prompt > 0 {
                match m.prompt_rows.last_mut() {
                    Some(r) if r.end == row => r.end = row + prompt,
                    _ => m.prompt_rows.push(row..row + prompt),
                }
            }
            m.seqs.push(AttnSeq { row, len: t, start, block_table: c.block_table });
            m.spans.push((start, t, start + t));
        }
        Ok(m)
    }

    pub fn num_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Whether every sequence brings one token and gets its logits: a decode step.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub fn is_decode(&self) -> bool {
        self.seqs.iter().all(|s| s.len == 1) && self.logit_rows.len() == self.tokens.len()
    }

    /// A decode batch grown to `to` sequences, for a CUDA graph captured at that size: each
    /// padding row is token 0 at position 0 without a cache slot ([`NO_SLOT`]: its K/V go
    /// nowhere), attending to the first key of the first sequence's first block. Its logits are
    /// computed and dropped.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub fn pad_decode(&mut self, to: usize) {
        let Some(table) = self.seqs.first().map(|s| &s.block_table[..s.block_table.len().min(1)]) else { return };
        for row in self.tokens.len()..to {
            self.tokens.push(0);
            self.positions.push(0);
            self.slots.push(NO_SLOT);
            self.seqs.push(AttnSeq { row, len: 1, start: 0, block_table: table });
            self.spans.push((0, 1, 1));
            self.logit_rows.push(row as u32);
        }
    }

    /// Undoes [`BatchMeta::pad_decode`]: the first `n` rows again, no device layout.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub fn unpad(&mut self, n: usize) {
        self.tokens.truncate(n);
        self.positions.truncate(n);
        self.slots.truncate(n);
        self.seqs.truncate(n);
        self.spans.truncate(n);
        self.logit_rows.truncate(n);
        self.prompt_rows.iter_mut().for_each(|r| r.end = r.end.min(n));
        self.prompt_rows.retain(|r| !r.is_empty());
        self.gpu = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_batches_pad_with_rows_that_store_nothing() {
        let (t0, t1) = ([7u32, 3], [9u32]);
        let chunks = [
            SeqChunk { tokens: &[5], start: 20, block_table: &t0, logits: LogitsFor::Last, prompt_len: 8 },
            SeqChunk { tokens: &[6], start: 3, block_table: &t1, logits: LogitsFor::Last, prompt_len: 3 },
        ];
        let mut m = BatchMeta::new(&chunks, 16, 100).unwrap();
        assert!(m.is_decode());
        assert_eq!(m.slots, [3 * 16 + 4, 9 * 16 + 3]);
        m.pad_decode(4);
        assert_eq!(m.tokens, [5, 6, 0, 0]);
        assert_eq!(m.positions, [20, 3, 0, 0]);
        assert_eq!(m.slots[2..], [NO_SLOT, NO_SLOT]);
        assert_eq!(m.logit_rows, [0, 1, 2, 3]);
        let pad = &m.seqs[3];
        assert_eq!((pad.row, pad.len, pad.start, pad.block_table), (3, 1, 0, &t0[..1]));
        assert!(m.is_decode());
        m.unpad(2);
        assert_eq!((m.tokens.len(), m.slots.len(), m.seqs.len(), m.logit_rows.len()), (2, 2, 2, 2));

        let prefill =
            [SeqChunk { tokens: &[1, 2], start: 0, block_table: &t1, logits: LogitsFor::Last, prompt_len: 2 }];
        assert!(!BatchMeta::new(&prefill, 16, 100).unwrap().is_decode());
        let scoring =
            [SeqChunk { tokens: &[1], start: 0, block_table: &t1, logits: LogitsFor::None, prompt_len: usize::MAX }];
        assert!(!BatchMeta::new(&scoring, 16, 100).unwrap().is_decode());
    }
}
