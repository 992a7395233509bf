//! A CPU step split by sequence over the cores: [`Model::cpu_split`] chooses the parts,
//! [`Model::forward_split`] runs each part's whole forward pass on its own core.

use candle_core::Tensor;

use super::Model;
use crate::nn::batch::{BatchMeta, LogitsFor, SeqChunk};
use crate::nn::kv_cache::PagedKvCache;
use crate::{Error, Result, TensorContext};

impl Model {
    /// How a CPU batch splits over the cores by sequence ([`Model::forward_split`]): contiguous
    /// chunk ranges with about equal token counts, one a pool thread. `None` keeps the batch
    /// whole (every matmul split by columns over the cores instead): a GPU or tensor-parallel
    /// model, a one-thread pool, a single sequence, fewer than [`Model::cpu_split_min_rows`]
    /// tokens, a split more than 30% off even, or a block that one part writes and another
    /// part's sequences also use.
    pub(super) fn cpu_split(
        &self,
        chunks: &[SeqChunk],
        batch: &BatchMeta,
        bs: usize,
    ) -> Option<Vec<std::ops::Range<usize>>> {
        if !self.device.is_cpu() || self.tp.is_some() || chunks.len() < 2 {
            return None;
        }
        let total: usize = chunks.iter().map(|c| c.tokens.len()).sum();
        let parts = crate::kernels::pool_threads().min(chunks.len());
        if parts < 2 || total < self.cpu_split_min_rows {
            return None;
        }
        let ranges = balanced_cuts(&chunks.iter().map(|c| c.tokens.len()).collect::<Vec<_>>(), parts);
        let tokens = |r: &std::ops::Range<usize>| chunks[r.clone()].iter().map(|c| c.tokens.len()).sum::<usize>();
        // (`balanced_cuts` gives `parts` ≥ 2 non-empty ranges.)
        if ranges.iter().any(|r| tokens(r) * parts * 10 > total * 13) {
            return None;
        }
        // Each part's view writes only blocks that no other part's sequences touch.
        let mut writer = std::collections::HashMap::new();
        let mut row = 0;
        for (p, r) in ranges.iter().enumerate() {
            for c in &chunks[r.clone()] {
                for &slot in &batch.slots[row..row + c.tokens.len()] {
                    writer.insert(slot / bs, p);
                }
                row += c.tokens.len();
            }
        }
        let shared = ranges.iter().enumerate().any(|(p, r)| {
            chunks[r.clone()].iter().any(|c| {
                let used = (c.start + c.tokens.len()).div_ceil(bs);
                c.block_table[..used.min(c.block_table.len())]
                    .iter()
                    .any(|&b| writer.get(&(b as usize)).is_some_and(|&w| w != p))
            })
        });
        (!shared).then_some(ranges)
    }

    /// [`Model::forward_rank`] with the batch split by sequence over the CPU pool's threads:
    /// each runs its part's whole forward pass alone (its matmuls, attention and norms on that
    /// core, nothing handed between cores) against a view of the one KV pool, and the threads
    /// meet only when every part is done. Logits come back in chunk order. A row's arithmetic
    /// is the same whichever part it is in, so the results are those of the unsplit step, bit
    /// for bit. `None` when the pool could not run the parts side by side (it was busy): the
    /// caller runs the step unsplit.
    pub(super) fn forward_split(
        &self,
        chunks: &[SeqChunk],
        parts: &[std::ops::Range<usize>],
        kv: &mut PagedKvCache,
    ) -> Option<Result<Tensor>> {
        use std::sync::Mutex;
        // Each part copies its logits into its rows of one buffer as soon as it has them (in
        // its own cache, on its own core): joining them afterwards on one thread
        // (`Tensor::cat`) took ~0.35 ms of a 16-way SmolLM2 step.
        let vocab = self.cfg.vocab_size;
        let rows_of = |c: &SeqChunk| match c.logits {
            LogitsFor::All => c.tokens.len(),
            LogitsFor::Last => 1,
            LogitsFor::None => 0,
        };
        let mut starts = Vec::with_capacity(parts.len() + 1);
        starts.push(0);
        for r in parts {
            starts.push(starts[starts.len() - 1] + chunks[r.clone()].iter().map(rows_of).sum::<usize>());
        }
        let total = starts[parts.len()];
        let mut buf = Vec::<f32>::with_capacity(total * vocab);
        let dst = buf.as_mut_ptr() as usize;
        let run = |views: Vec<PagedKvCache>| {
            let views: Vec<Mutex<PagedKvCache>> = views.into_iter().map(Mutex::new).collect();
            let out: Vec<Mutex<Option<Result<()>>>> = parts.iter().map(|_| Mutex::new(None)).collect();
            let ran = crate::kernels::run_side_by_side(&|u| {
                let (Some(range), Some(view)) = (parts.get(u), views.get(u)) else { return };
                let mut view = view.lock().unwrap_or_else(|e| e.into_inner());
                let rows = starts[u]..starts[u + 1];
                let r = self.forward_rank(&chunks[range.clone()], &mut view, None).and_then(|l| {
                    // SAFETY: rows `rows` of the buffer are this part's alone, inside its capacity.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut((dst as *mut f32).add(rows.start * vocab), rows.len() * vocab)
                    };
                    copy_f32(&l, dst)
                });
                *out[u].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
            if !ran {
                return None;
            }
            self.split_steps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // The first part's error if any failed (a part that panicked left no result).
            let done = out
                .into_iter()
                .map(|m| {
                    m.into_inner()
                        .unwrap_or_else(|e| e.into_inner())
                        .unwrap_or_else(|| Err(Error::InvalidInput("a split step's part did not finish".into())))
                })
                .collect::<Result<Vec<()>>>();
            Some(done)
        };
        // SAFETY: `parts` comes from `cpu_split`, which keeps a step whole when a block that
        // one part writes is used by another part's sequences.
        let done = unsafe { kv.with_views(parts.len(), run) }.flatten()?;
        Some(done.and_then(|_| {
            // SAFETY: every part wrote all of its rows (`copy_f32` checks the count), and the
            // parts' rows tile 0..total.
            unsafe { buf.set_len(total * vocab) };
            Tensor::from_vec(buf, (total, vocab), &self.device).ctx("split step logits")
        }))
    }
}

/// Copies a CPU f32 tensor's values, in row-major order, into `dst`, which must hold exactly as
/// many.
fn copy_f32(t: &Tensor, dst: &mut [f32]) -> Result<()> {
    let t = t.contiguous().ctx("logits")?;
    let (storage, layout) = t.storage_and_layout();
    let (candle_core::Storage::Cpu(cpu), Some((a, b))) = (&*storage, layout.contiguous_offsets()) else {
        return Err(Error::InvalidInput("split step logits are not on the CPU".into()));
    };
    let src = cpu.as_slice::<f32>().ctx("logits")?;
    if b - a != dst.len() {
        return Err(Error::InvalidInput(format!("a split step's part gave {} logits, expected {}", b - a, dst.len())));
    }
    dst.copy_from_slice(&src[a..b]);
    Ok(())
}

/// `parts` contiguous, non-empty ranges of `sizes` (`1 ≤ parts ≤ sizes.len()`), each cut at the
/// prefix sum nearest its share of the total. Cutting where the running sum first passes the
/// share instead gave the first part the whole crossing sequence: a 16-prompt prefill split
/// 739 / 599 tokens, and its parts took 574 / 517 ms.
fn balanced_cuts(sizes: &[usize], parts: usize) -> Vec<std::ops::Range<usize>> {
    let total: usize = sizes.iter().sum();
    let mut prefix = Vec::with_capacity(sizes.len() + 1);
    prefix.push(0usize);
    for s in sizes {
        prefix.push(prefix.last().copied().unwrap_or(0) + s);
    }
    let mut ranges = Vec::with_capacity(parts);
    let mut start = 0;
    for j in 1..parts {
        // Part j - 1 ends at `end`: at least one chunk, and one left for each later part.
        let (lo, hi) = (start + 1, sizes.len() - (parts - j));
        let target = total * j;
        let end = (lo..=hi).min_by_key(|&e| (prefix[e] * parts).abs_diff(target)).unwrap_or(lo);
        ranges.push(start..end);
        start = end;
    }
    ranges.push(start..sizes.len());
    ranges
}

#[cfg(test)]
mod tests {
    use super::balanced_cuts;

    #[test]
    fn balanced_cuts_take_the_nearest_prefix() {
        // Passing half (50) at the second chunk would give 60 / 40; the nearest cut is 45 / 55.
        assert_eq!(balanced_cuts(&[45, 15, 40], 2), vec![0..1, 1..3]);
        assert_eq!(balanced_cuts(&[10, 10, 10, 10], 2), vec![0..2, 2..4]);
        // Every part keeps at least one chunk, however skewed the sizes.
        assert_eq!(balanced_cuts(&[1, 1, 100], 3), vec![0..1, 1..2, 2..3]);
        assert_eq!(balanced_cuts(&[100, 1, 1], 2), vec![0..1, 1..3]);
        assert_eq!(balanced_cuts(&[5, 5, 5, 5, 5, 5], 3), vec![0..2, 2..4, 4..6]);
        assert_eq!(balanced_cuts(&[7], 1), vec![0..1]);
    }
}
