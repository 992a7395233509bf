//! Token choice where the logits are: on a GPU only the chosen ids cross to the host (4 bytes a
//! row instead of a 0.5 MB row of a 128k vocabulary), on the CPU the engine's own loops. The
//! engine takes this path for the rows that are a plain argmax of the raw logits, and on a GPU
//! for the random-path rows that need nothing but their logits (no bias, penalty, mask or
//! logprobs); everything else stays on its host sampler.

use candle_core::{DType, Tensor};

use super::filter::{self, Filters};
use crate::{Result, TensorContext};

/// What to do with one logits row in [`pick_rows`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowPick {
    /// Nothing (the host samples it, or it has no token this step): its answer is `None`.
    Skip,
    /// [`argmax`].
    Argmax,
    /// [`filter::sample`] with these filters at the draw `u53` (the top 53 bits of a uniform u64).
    Sample { filters: Filters, u53: u64 },
}

/// Index of the largest finite value, the lowest index on ties (as `torch.argmax`); `None`
/// when no value is finite.
///
/// Sixteen independent lanes without branches (the compiler vectorizes them; a 49k-entry row
/// took ~16 µs as one branchy loop), then the lanes' winners: each lane keeps its earliest
/// maximum, and among equal lane maxima the lowest index wins, so the answer is the one pass's.
pub fn argmax(row: &[f32]) -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::math::avx512_available() {
        // SAFETY: the features were detected.
        return unsafe { argmax_avx512(row) };
    }
    argmax_portable(row)
}

/// [`argmax_portable`] compiled for AVX-512: the sixteen lanes are one register.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn argmax_avx512(row: &[f32]) -> Option<u32> {
    argmax_portable(row)
}

#[inline(always)]
fn argmax_portable(row: &[f32]) -> Option<u32> {
    const L: usize = 16;
    let mut best = [f32::NEG_INFINITY; L];
    let mut at = [u32::MAX; L];
    let chunks = row.chunks_exact(L);
    let tail = chunks.remainder();
    for (c, chunk) in chunks.enumerate() {
        for l in 0..L {
            let x = chunk[l];
            // Finite and larger: NaN and ±inf never win (best starts at -inf, below every finite).
            let take = x.abs() < f32::INFINITY && x > best[l];
            best[l] = if take { x } else { best[l] };
            at[l] = if take { (c * L + l) as u32 } else { at[l] };
        }
    }
    let mut win: Option<(u32, f32)> = None;
    for l in 0..L {
        if at[l] != u32::MAX && win.is_none_or(|(i, b)| best[l] > b || (best[l] == b && at[l] < i)) {
            win = Some((at[l], best[l]));
        }
    }
    let base = row.len() - tail.len();
    for (j, &x) in tail.iter().enumerate() {
        if x.is_finite() && win.is_none_or(|(_, b)| x > b) {
            win = Some(((base + j) as u32, x));
        }
    }
    win.map(|(i, _)| i)
}

/// [`argmax`] of every row of `logits` `(rows, vocab)`, computed on the logits' device.
pub fn argmax_rows(logits: &Tensor) -> Result<Vec<Option<u32>>> {
    let (rows, _) = logits.dims2().ctx("argmax logits")?;
    pick_rows(logits, &vec![RowPick::Argmax; rows])
}

/// The token of each row of `logits` `(rows, vocab)` as `picks` says, computed on the logits'
/// device: a GPU runs the same definitions as the host ([`argmax`], [`filter::sample`]) and picks
/// the same tokens. `None` for [`RowPick::Skip`] rows and rows without a finite logit.
pub fn pick_rows(logits: &Tensor, picks: &[RowPick]) -> Result<Vec<Option<u32>>> {
    pick_rows_async(logits, picks)?.wait()
}

/// [`pick_rows`] without waiting: on a GPU the picks are enqueued on the device's stream, with
/// their copy to page-locked host memory, and [`Picks::wait`] waits for that copy only. The
/// ids also stay on the device, where the next step can read them as its input
/// ([`Picks::next_ids`]; async scheduling). On the CPU the picks are made at once.
pub fn pick_rows_async(logits: &Tensor, picks: &[RowPick]) -> Result<Picks> {
    let (rows, vocab) = logits.dims2().ctx("pick logits")?;
    if picks.len() != rows {
        return Err(crate::Error::InvalidInput(format!("pick_rows: {} picks for {rows} rows", picks.len())));
    }
    if rows == 0 {
        return Ok(Picks::Ready(Vec::new()));
    }
    if vocab > filter::MAX_VOCAB && picks.iter().any(|p| matches!(p, RowPick::Sample { .. })) {
        return Err(crate::Error::InvalidInput(format!(
            "pick_rows: random sampling supports vocabularies up to {} tokens, not {vocab}",
            filter::MAX_VOCAB
        )));
    }
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(dev) = logits.device() {
        return gpu::pick_rows(dev, logits, picks, vocab).map(Picks::Device);
    }
    let logits = logits.to_dtype(DType::F32).and_then(|l| l.contiguous()).ctx("pick logits")?;
    let mut sc = filter::Scratch::default();
    let mut pick = |(row, p): (&[f32], &RowPick)| match *p {
        RowPick::Skip => None,
        RowPick::Argmax => argmax(row),
        RowPick::Sample { filters, u53 } => filter::sample(row, filters, u53, &mut sc),
    };
    let (storage, layout) = logits.storage_and_layout();
    // On the host the rows are read where they lie (a 16 × 49k step copied 3 MB before).
    if let candle_core::Storage::Cpu(cpu) = &*storage {
        let all = cpu.as_slice::<f32>().ctx("pick logits")?;
        let rows_f32 = all.get(layout.start_offset()..layout.start_offset() + rows * vocab);
        let rows_f32 =
            rows_f32.ok_or_else(|| crate::Error::InvalidInput("pick_rows: logits storage too short".into()))?;
        if rows >= ARGMAX_PARALLEL_ROWS && picks.iter().all(|p| matches!(p, RowPick::Skip | RowPick::Argmax)) {
            return Ok(Picks::Ready(argmax_host_rows(rows_f32, vocab, picks)));
        }
        return Ok(Picks::Ready(rows_f32.chunks_exact(vocab).zip(picks).map(&mut pick).collect()));
    }
    drop(storage);
    let host = logits.flatten_all().and_then(|l| l.to_vec1::<f32>());
    Ok(Picks::Ready(host.ctx("pick logits")?.chunks_exact(vocab).zip(picks).map(pick).collect()))
}

/// From this many host rows of plain argmax (a batched greedy decode step), the rows are split
/// over the CPU pool: 16 rows of a 49k vocabulary took ~0.26 ms on one thread.
const ARGMAX_PARALLEL_ROWS: usize = 4;

/// [`argmax`] of each `RowPick::Argmax` row of `logits` (rows of `vocab`), on the CPU pool's
/// threads; `None` for skipped rows.
fn argmax_host_rows(logits: &[f32], vocab: usize, picks: &[RowPick]) -> Vec<Option<u32>> {
    use std::sync::atomic::{AtomicU64, Ordering};
    // u64::MAX: no pick; otherwise the token id.
    let out: Vec<AtomicU64> = picks.iter().map(|_| AtomicU64::new(u64::MAX)).collect();
    crate::kernels::parallel_for(picks.len(), &|i| {
        if picks[i] == RowPick::Argmax {
            if let Some(t) = argmax(&logits[i * vocab..][..vocab]) {
                out[i].store(t as u64, Ordering::Relaxed);
            }
        }
    });
    out.into_iter().map(|a| u32::try_from(a.into_inner()).ok()).collect()
}

/// A step's picked tokens, from [`pick_rows_async`].
pub enum Picks {
    /// Picked on the host already.
    Ready(Vec<Option<u32>>),
    /// Enqueued on a GPU.
    #[cfg(feature = "cuda")]
    Device(gpu::Pending),
}

impl Picks {
    /// The ids, row by row (`None`: a skipped row, or one without a finite logit).
    pub fn wait(self) -> Result<Vec<Option<u32>>> {
        match self {
            Picks::Ready(ids) => Ok(ids),
            #[cfg(feature = "cuda")]
            Picks::Device(p) => p.wait(),
        }
    }

    /// The ids when they are on the host already (the CPU picks at once).
    pub fn ready(&self) -> Option<&[Option<u32>]> {
        match self {
            Picks::Ready(ids) => Some(ids),
            #[cfg(feature = "cuda")]
            Picks::Device(_) => None,
        }
    }

    /// Where the next step's input ids come from, for a step scheduled before these picks are
    /// back: token row `i` of the next batch takes row `map[i]` of these picks, or keeps its
    /// host id where `map[i]` is [`NextIds::HOST`]. `None` when the picks are on the host (the
    /// caller writes the ids itself).
    pub fn next_ids(&self, map: Vec<u32>) -> Option<NextIds<'_>> {
        match self {
            Picks::Ready(_) => {
                drop(map);
                None
            }
            #[cfg(feature = "cuda")]
            Picks::Device(p) => Some(NextIds { picks: p, map }),
        }
    }
}

/// A step's input ids taken from the previous step's picks on the device ([`Picks::next_ids`]).
pub struct NextIds<'a> {
    #[cfg(feature = "cuda")]
    pub(crate) picks: &'a gpu::Pending,
    #[cfg(not(feature = "cuda"))]
    pub(crate) picks: std::marker::PhantomData<&'a ()>,
    /// Per token row of the batch: the picks' row, or [`NextIds::HOST`].
    pub map: Vec<u32>,
}

impl NextIds<'_> {
    /// A row that keeps the id the host gave it.
    pub const HOST: u32 = u32::MAX;

    /// Overwrites the mapped rows of `ids` (u32, one per token row, on the picks' device) with
    /// their picks, stream-ordered after the picking; a pick outside `vocab` (a row without a
    /// finite logit) becomes 0, so the forward pass never reads past the embedding table.
    pub(crate) fn write(&self, ids: &Tensor, vocab: usize) -> Result<()> {
        #[cfg(feature = "cuda")]
        {
            gpu::write_next_ids(self.picks, &self.map, ids, vocab)
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (ids, vocab, &self.picks);
            Err(crate::Error::InvalidInput("next-step ids on a device need CUDA".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass definition.
    fn reference(row: &[f32]) -> Option<u32> {
        let mut best: Option<(usize, f32)> = None;
        for (i, &x) in row.iter().enumerate() {
            if x.is_finite() && best.is_none_or(|(_, b)| x > b) {
                best = Some((i, x));
            }
        }
        best.map(|(i, _)| i as u32)
    }

    #[test]
    fn lanes_give_the_one_pass_answer() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for len in [0, 1, 5, 15, 16, 17, 31, 32, 33, 100, 1000, 49152] {
            for _ in 0..20 {
                // Few distinct values, so ties across lanes and with the tail are common.
                let row: Vec<f32> = (0..len)
                    .map(|_| match next() % 16 {
                        0 => f32::NAN,
                        1 => f32::INFINITY,
                        2 => f32::NEG_INFINITY,
                        k => (k % 5) as f32 - 2.0,
                    })
                    .collect();
                assert_eq!(argmax(&row), reference(&row), "{row:?}");
            }
        }
        assert_eq!(argmax(&[f32::NAN; 40]), None);
        let mut row = vec![0.0; 40];
        row[37] = 1.0;
        row[21] = 1.0;
        assert_eq!(argmax(&row), Some(21));
    }

    #[test]
    fn pick_rows_refuses_random_sampling_past_the_mass_bound() {
        let vocab = super::filter::MAX_VOCAB + 1;
        let t = Tensor::zeros((1, vocab), DType::F32, &candle_core::Device::Cpu).unwrap();
        let f = Filters { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0 };
        let e = pick_rows(&t, &[RowPick::Sample { filters: f, u53: 0 }]).unwrap_err().to_string();
        assert!(e.contains("vocabularies up to"), "{e}");
        assert_eq!(pick_rows(&t, &[RowPick::Argmax]).unwrap(), vec![Some(0)]);
    }

    #[test]
    fn argmax_rows_on_the_host_reads_views_right() {
        let t = Tensor::arange(0f32, 24., &candle_core::Device::Cpu).unwrap().reshape((4, 6)).unwrap();
        let t = (t.narrow(0, 1, 2).unwrap() * -1.0).unwrap();
        assert_eq!(argmax_rows(&t).unwrap(), vec![Some(0), Some(0)]);
        let t = Tensor::new(&[[1f32, 3., 2.], [0., 4., 1.]], &candle_core::Device::Cpu).unwrap();
        assert_eq!(argmax_rows(&t.t().unwrap()).unwrap(), vec![Some(0), Some(1), Some(0)]);
    }
}

#[cfg(feature = "cuda")]
pub(crate) mod gpu {
    use std::sync::{Arc, Mutex};

    use candle_core::cuda::cudarc::driver::{
        result, CudaEvent, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PinnedHostSlice,
    };
    use candle_core::cuda::WrapErr;
    use candle_core::{CudaDevice, DType, Tensor};

    use super::super::attention::dptr;
    use super::super::launch::Launch;
    use super::super::module::func;
    use super::RowPick;
    use crate::{Result, TensorContext};

    /// `ARGMAX_THREADS` of sample.cuh.
    const THREADS: u32 = 1024;
    /// `SAMPLE_THREADS` and `SAMPLE_CLUSTER` of sample.cuh.
    const SAMPLE_THREADS: u32 = 1024;
    const SAMPLE_CLUSTER: usize = 8;
    /// Up to this many sampled rows, each row gets a cluster of `SAMPLE_CLUSTER` CTAs (8 × 16
    /// CTAs still fit in one wave of an H100/H200's 132 SMs); above it, one CTA a row.
    const CLUSTER_ROWS: usize = 16;

    /// CTAs a sampled row: `PROM_SAMPLE_CLUSTER=1` or `=8` forces one (for comparison),
    /// otherwise by the number of rows.
    fn ctas_per_row(rows: usize) -> usize {
        static FORCED: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
        let forced = *FORCED.get_or_init(|| match std::env::var("PROM_SAMPLE_CLUSTER").as_deref() {
            Ok("1") => Some(1),
            Ok("8") => Some(SAMPLE_CLUSTER),
            _ => None,
        });
        forced.unwrap_or(if rows <= CLUSTER_ROWS { SAMPLE_CLUSTER } else { 1 })
    }
    /// CTAs a launch aims for (about two per SM of an H100/H200) when rows are few ...
    const TARGET_CTAS: usize = 256;
    /// ... but no CTA scans fewer logits than this.
    const MIN_CHUNK: usize = 8192;

    pub(super) fn pick_rows(dev: &CudaDevice, logits: &Tensor, picks: &[RowPick], vocab: usize) -> Result<Pending> {
        let rows = picks.len();
        let vocab_i = i32::try_from(vocab).map_err(|_| crate::Error::InvalidInput(format!("vocab {vocab} > i32")))?;
        let logits = logits.to_dtype(DType::F32).and_then(|l| l.contiguous()).ctx("pick logits")?;
        let stream = dev.cuda_stream();
        let src = dptr(&logits, &stream)?;
        let out = dev.alloc_zeros::<u32>(rows)?;
        let out_p = out.device_ptr(&stream).0;
        let mut partial = None;
        if picks.contains(&RowPick::Argmax) {
            // A few rows get several CTAs each (one CTA scanning a 128k row alone takes ~50 µs).
            let parts = TARGET_CTAS.div_ceil(rows).min(vocab.div_ceil(MIN_CHUNK)).max(1);
            let chunk_i = vocab.div_ceil(parts) as i32;
            if parts > 1 {
                // SAFETY: argmax_f32 writes every partial before argmax_merge reads them.
                partial = Some(unsafe { (dev.alloc::<f32>(rows * parts)?, dev.alloc::<u32>(rows * parts)?) });
            }
            let (val, idx) = match &partial {
                Some((v, i)) => (v.device_ptr(&stream).0, i.device_ptr(&stream).0),
                None => (0, out_p),
            };
            let f = func(dev, "argmax_f32")?;
            let mut l = Launch::new(&f);
            l.arg(&src).arg(&val).arg(&idx).arg(&vocab_i).arg(&chunk_i);
            let cfg = LaunchConfig {
                grid_dim: (rows as u32, parts as u32, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: argument types match argmax_f32's signature; `src` holds rows × vocab f32s
            // (contiguous, checked by dims2); `val`/`idx` rows × parts entries (or `out`, rows).
            unsafe { l.launch(&stream, cfg) }.w()?;
            if parts > 1 {
                let f = func(dev, "argmax_merge")?;
                let mut l = Launch::new(&f);
                let parts_i = parts as i32;
                l.arg(&val).arg(&idx).arg(&out_p).arg(&parts_i);
                let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (32, 1, 1), shared_mem_bytes: 0 };
                // SAFETY: argument types match argmax_merge's signature; the partials hold rows × parts.
                unsafe { l.launch(&stream, cfg) }.w()?;
            }
        }
        // The sampled rows, as sample.cuh's `SampleRow` (32 bytes: four u64s, little-endian).
        let mut params: Vec<u64> = Vec::new();
        for (r, p) in picks.iter().enumerate() {
            if let RowPick::Sample { filters: f, u53 } = *p {
                let top_k = u32::try_from(f.top_k).unwrap_or(u32::MAX);
                params.push(u64::from(f.temperature.to_bits()) | u64::from(f.top_p.to_bits()) << 32);
                params.push(u64::from(f.min_p.to_bits()) | u64::from(top_k) << 32);
                params.push(u53 & ((1 << 53) - 1));
                params.push(r as u64);
            }
        }
        let mut sampled = None;
        if !params.is_empty() {
            let n = params.len() / 4;
            let params = dev.clone_htod(&params).ctx("upload sampling parameters")?;
            // SAFETY: sample_rows_f32 writes each CTA's weights before it reads them.
            let scratch = unsafe { dev.alloc::<f32>(n * vocab) }?;
            let (pp, sp) = (params.device_ptr(&stream).0, scratch.device_ptr(&stream).0);
            let ctas = ctas_per_row(n);
            let f = func(dev, if ctas > 1 { "sample_rows_f32_x8" } else { "sample_rows_f32" })?;
            let mut l = Launch::new(&f);
            l.arg(&src).arg(&pp).arg(&sp).arg(&out_p).arg(&vocab_i);
            // The x8 kernel declares its cluster shape (`__cluster_dims__`): the grid is a
            // multiple of it.
            let grid = (n * ctas) as u32;
            let cfg = LaunchConfig { grid_dim: (grid, 1, 1), block_dim: (SAMPLE_THREADS, 1, 1), shared_mem_bytes: 0 };
            // SAFETY: argument types match sample_rows_f32(_x8)'s signature; `params` holds n
            // rows of 32 bytes whose `row` < rows; `scratch` n × vocab floats; `out` rows entries.
            unsafe { l.launch(&stream, cfg) }.w()?;
            sampled = Some((params, scratch));
        }
        let mut host = take_host_buffer(&stream, rows)?;
        let dst = &mut host.as_mut_slice().w()?[..rows];
        // SAFETY: `dst` holds `rows` u32 of page-locked memory, `out` `rows` u32 on this stream's
        // device; `Pending::wait` synchronizes on the event recorded after the copy before
        // reading `dst`, and keeps both alive until then.
        unsafe { result::memcpy_dtoh_async(dst, out_p, stream.cu_stream()) }.w()?;
        let copied = stream.record_event(None).w()?;
        // `logits`, the partials and the parameters must outlive the launches: `Pending` keeps
        // them until the copy back is done.
        let keep: Box<dyn std::any::Any + Send> = Box::new((logits, partial, sampled));
        Ok(Pending { out, host: Some(host), copied, picks: picks.to_vec(), _keep: keep })
    }

    /// Page-locked buffers for the picked ids, reused: at most two steps are in flight.
    static HOST_BUFFERS: Mutex<Vec<PinnedHostSlice<u32>>> = Mutex::new(Vec::new());

    fn take_host_buffer(stream: &Arc<CudaStream>, rows: usize) -> Result<PinnedHostSlice<u32>> {
        let mut free = HOST_BUFFERS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = free.iter().position(|b| b.len() >= rows && Arc::ptr_eq(b.context(), stream.context())) {
            return Ok(free.swap_remove(i));
        }
        drop(free);
        // Plain page-locked memory (cudarc's default asks for write-combined pages, which the CPU
        // reads uncached). SAFETY: the copy writes every entry that is read.
        unsafe { stream.context().alloc_pinned_with_flags::<u32>(rows.next_power_of_two().max(256), 0) }
            .w()
            .ctx("page-locked buffer for the picked ids")
    }

    /// Picks enqueued on the stream ([`super::Picks::Device`]).
    pub struct Pending {
        /// The ids on the device, one per row (`u32::MAX`: none).
        pub(super) out: CudaSlice<u32>,
        host: Option<PinnedHostSlice<u32>>,
        /// Recorded after the copy to `host`.
        copied: CudaEvent,
        picks: Vec<RowPick>,
        _keep: Box<dyn std::any::Any + Send>,
    }

    impl Pending {
        pub fn wait(mut self) -> Result<Vec<Option<u32>>> {
            self.copied.synchronize().w()?;
            let host = self.host.take();
            let ids = match &host {
                Some(h) => h.as_slice().w()?[..self.picks.len()].to_vec(),
                None => Vec::new(),
            };
            if let Some(h) = host {
                HOST_BUFFERS.lock().unwrap_or_else(|e| e.into_inner()).push(h);
            }
            let picked = ids.into_iter().zip(&self.picks);
            Ok(picked.map(|(i, p)| (*p != RowPick::Skip && i != u32::MAX).then_some(i)).collect())
        }
    }

    impl Drop for Pending {
        fn drop(&mut self) {
            // Unwaited (a step abandoned on an error): the copy may still be landing in the buffer.
            if let Some(h) = self.host.take() {
                if self.copied.synchronize().is_ok() {
                    HOST_BUFFERS.lock().unwrap_or_else(|e| e.into_inner()).push(h);
                }
            }
        }
    }

    /// [`super::NextIds::write`]: `ids[i] = picks[map[i]]` (0 outside `vocab`) where `map[i]` is
    /// not `NextIds::HOST`, one kernel on the stream.
    pub(super) fn write_next_ids(picks: &Pending, map: &[u32], ids: &Tensor, vocab: usize) -> Result<()> {
        let candle_core::Device::Cuda(dev) = ids.device() else {
            return Err(crate::Error::InvalidInput("next-step ids: the ids are not on a GPU".into()));
        };
        if ids.dtype() != DType::U32 || !ids.is_contiguous() || ids.elem_count() < map.len() {
            return Err(crate::Error::InvalidInput(format!(
                "next-step ids: {} rows into {:?} {:?}",
                map.len(),
                ids.dims(),
                ids.dtype()
            )));
        }
        if let Some(&bad) = map.iter().find(|&&m| m != u32::MAX && m as usize >= picks.picks.len()) {
            return Err(crate::Error::InvalidInput(format!("next-step ids: row {bad} of {} picks", picks.picks.len())));
        }
        if map.is_empty() {
            return Ok(());
        }
        let stream = dev.cuda_stream();
        let map_d = dev.clone_htod(map).ctx("upload next-step id map")?;
        let (src, map_p, dst) = (picks.out.device_ptr(&stream).0, map_d.device_ptr(&stream).0, dptr(ids, &stream)?);
        let (n, vocab_u) = (map.len() as i32, u32::try_from(vocab).unwrap_or(u32::MAX));
        let f = func(dev, "next_ids")?;
        let mut l = Launch::new(&f);
        l.arg(&src).arg(&map_p).arg(&dst).arg(&n).arg(&vocab_u);
        let cfg = LaunchConfig {
            grid_dim: (map.len().div_ceil(256) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: argument types match next_ids's signature; `src` holds the picks' rows, every
        // mapped row is below their count (checked), `map_d` and `ids` hold n entries (checked).
        unsafe { l.launch(&stream, cfg) }.w()?;
        drop(map_d); // a stream-ordered free, after the kernel
        Ok(())
    }
}
