//! CUDA graphs for decode steps, as vLLM's CUDA graph runner does it: a decode step's forward
//! pass (~10 launches a layer) is recorded once per batch size and then replayed with one
//! launch, so the GPU no longer waits on the host between kernels.
//!
//! A graph replays fixed device addresses, so a step's inputs live in fixed buffers (token ids,
//! positions, the rotary tables, the batch layout of [`GpuBatch`]) that the host overwrites
//! before each replay, and its logits land in a fixed output buffer. A decode batch of `n`
//! sequences runs in the graph of the smallest captured size `≥ n` ([`SIZES`]); the padding rows
//! write no K/V (`NO_SLOT`) and their logits are dropped. Split-K attention sizes its partitions
//! on the device (the grid is fixed at capture). The first step at a size runs eagerly with
//! candle's host-upload cache on (it loads every kernel and records the layout uploads that
//! candle's strided kernels make), and is then captured for the next steps. Anything that
//! cannot be captured (a host round trip in a MoE router, say) makes the capture fail: graphs
//! are then switched off for the model, with a warning, and every step runs eagerly.
//!
//! Graphs are bound to the KV pool's addresses: a different pool (or a grown one) drops them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::cuda::cudarc::driver::sys::{CUevent_flags, CUgraphInstantiate_flags, CUstreamCaptureMode};
use candle_core::cuda::cudarc::driver::{result, CudaEvent, CudaGraph, CudaSlice, DeviceRepr};
use candle_core::{CudaDevice, DType, Device, Tensor};

use super::attention::{dptr, GpuBatch};
use super::NextIds;
use crate::nn::{BatchMeta, Model, PagedKvCache, RopeTables, StepInputs};
use crate::{Error, Result, TensorContext};

/// The batch sizes graphs are captured at (vLLM's list, to 256).
pub const SIZES: [usize; 19] = [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256];

/// At most this many block-table entries fit the fixed layout buffer (16 MiB); a step with
/// more runs eagerly.
const MAX_TABLE_ENTRIES: usize = 1 << 22;

pub(crate) struct DecodeGraphs {
    state: Mutex<State>,
}

struct State {
    enabled: bool,
    inputs: Option<Inputs>,
    graphs: BTreeMap<usize, Graph>,
    /// The KV pool's addresses the graphs were captured against.
    pool: Vec<u64>,
    /// `PROM_GRAPH_TIMING=1`: events around each replay, summed into a log line.
    timing: Option<Timing>,
}

/// Where a replayed decode step's device time goes (`PROM_GRAPH_TIMING=1`): from events
/// recorded on the stream when the step's inputs start being written, when its graph is
/// launched and after it, summed over the steps whose events have completed and logged every
/// 64 steps (info level). `between` is the stream's time from one graph's end to the next
/// step's first input write: the logits' conversion and sampling, plus any time the device
/// sat idle waiting for the host.
struct Timing {
    pending: std::collections::VecDeque<[CudaEvent; 3]>,
    last_end: Option<CudaEvent>,
    sums: [f64; 3],
    steps: usize,
}

impl Timing {
    fn from_env() -> Option<Self> {
        (std::env::var("PROM_GRAPH_TIMING").as_deref() == Ok("1")).then(Self::fresh)
    }

    fn record(dev: &CudaDevice) -> Option<CudaEvent> {
        dev.cuda_stream().record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).ok()
    }

    /// Takes the three events of a step (input writes begin, graph launched, graph done) and
    /// sums the steps that have completed.
    fn push(&mut self, step: [CudaEvent; 3]) {
        self.pending.push_back(step);
        while self.pending.front().is_some_and(|s| s[2].is_complete()) {
            let Some([start, launch, end]) = self.pending.pop_front() else { break };
            let ms = |a: &CudaEvent, b: &CudaEvent| a.elapsed_ms(b).map(f64::from).unwrap_or(0.0);
            if let Some(prev) = &self.last_end {
                self.sums[2] += ms(prev, &start);
            }
            self.sums[0] += ms(&start, &launch);
            self.sums[1] += ms(&launch, &end);
            self.last_end = Some(end);
            self.steps += 1;
            if self.steps == 64 {
                let [inputs, graph, between] = self.sums.map(|v| v * 1e3 / 64.0);
                tracing::info!(
                    "decode graph timing over 64 steps, µs a step: inputs {inputs:.0}, graph {graph:.0}, \
                     between steps {between:.0}"
                );
                self.sums = [0.0; 3];
                self.steps = 0;
            }
        }
    }

    fn fresh() -> Self {
        Self { pending: Default::default(), last_end: None, sums: [0.0; 3], steps: 0 }
    }
}

/// A captured graph.
struct Graph(CudaGraph);

// SAFETY: CUDA allows a graph to be launched from any thread as long as calls on it are
// serialized; it is only reached through `DecodeGraphs::state`'s mutex.
unsafe impl Send for Graph {}

/// The fixed buffers of the largest size; a smaller graph uses their leading rows.
struct Inputs {
    rows: usize,
    ids: Tensor,
    positions: Option<Tensor>,
    /// (cos, sin) `(rows, rot / 2)` f32 of the main and the local rotary.
    ropes: [Option<(Tensor, Tensor)>; 2],
    layout: Arc<CudaSlice<u32>>,
    /// `(rows, vocab)` in the activation dtype.
    out: Tensor,
}

fn graph_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tensor { op: "cuda graph".into(), source: candle_core::Error::Msg(format!("{what}: {e}")) }
}

impl DecodeGraphs {
    pub fn new(device: &Device) -> Self {
        let state = State {
            enabled: device.is_cuda(),
            inputs: None,
            graphs: BTreeMap::new(),
            pool: Vec::new(),
            timing: Timing::from_env(),
        };
        Self { state: Mutex::new(state) }
    }

    pub fn set_enabled(&self, on: bool) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.enabled = on;
        if !on {
            st.graphs.clear();
            st.inputs = None;
        }
    }

    pub fn sizes(&self) -> Vec<usize> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).graphs.keys().copied().collect()
    }

    /// Runs `batch` through a graph if it is a decode step that fits one → f32 logits of its
    /// rows; `Ok(None)`: run it eagerly (not a decode step, graphs off, too large).
    /// The sizes a decode batch of up to `max_seqs` sequences runs at, while graphs are on.
    pub fn wanted(&self, max_seqs: usize) -> Vec<usize> {
        if !self.state.lock().unwrap_or_else(|e| e.into_inner()).enabled {
            return Vec::new();
        }
        let top = SIZES.iter().position(|&s| s >= max_seqs).unwrap_or(SIZES.len() - 1);
        SIZES[..=top].to_vec()
    }

    /// `next`: rows whose ids are still on the device ([`NextIds`]), written into the ids buffer
    /// after the host's.
    pub fn decode(
        &self,
        model: &Model,
        batch: &mut BatchMeta,
        kv: &mut PagedKvCache,
        next: Option<&NextIds>,
    ) -> Result<Option<Tensor>> {
        let Device::Cuda(dev) = model.device() else { return Ok(None) };
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *guard;
        let n = batch.num_tokens();
        let Some(&size) = SIZES.iter().find(|&&s| s >= n) else { return Ok(None) };
        let table_entries: usize = batch.seqs.iter().map(|s| s.block_table.len()).sum::<usize>() + size - n;
        if !st.enabled || !batch.is_decode() || table_entries > MAX_TABLE_ENTRIES {
            return Ok(None);
        }
        let Some(pool) = kv.device_addresses() else { return Ok(None) };
        if st.pool != pool {
            st.graphs.clear();
            st.pool = pool;
        }
        if st.inputs.is_none() {
            match Inputs::new(model, dev) {
                Ok(i) => st.inputs = Some(i),
                Err(e) => {
                    tracing::warn!("CUDA graphs off: cannot allocate their input buffers: {e}");
                    st.enabled = false;
                    return Ok(None);
                }
            }
        }
        let Some(inputs) = &st.inputs else { return Ok(None) };
        let t_start = st.timing.as_ref().and_then(|_| Timing::record(dev));
        batch.pad_decode(size);
        let (host, mut layout) = GpuBatch::layout(&batch.seqs, &batch.slots)?;
        // The graph's split-K grid must not depend on this step's contexts.
        layout.max_ctx = usize::MAX / 2;
        inputs.write(model, dev, batch, &host)?;
        if let Some(next) = next {
            next.write(&inputs.ids.narrow(0, 0, n).ctx("graph ids")?, model.config().vocab_size)?;
        }
        batch.gpu = Some(GpuBatch::fixed(Arc::clone(&inputs.layout), layout));
        let step = inputs.step(size)?;
        match st.graphs.get(&size) {
            Some(g) => {
                let t_launch = st.timing.as_ref().and_then(|_| Timing::record(dev));
                let launched = g.0.launch();
                if let (Some(t), Some(a), Some(b), Some(c)) =
                    (st.timing.as_mut(), t_start, t_launch, launched.is_ok().then(|| Timing::record(dev)).flatten())
                {
                    t.push([a, b, c]);
                }
                if let Err(e) = launched {
                    // Nothing ran (graph memory, say): this step and the next run eagerly.
                    tracing::warn!("CUDA graphs off: replaying a decode step of {size} sequences failed: {e}");
                    st.enabled = false;
                    st.graphs.clear();
                    batch.unpad(n);
                    return Ok(None);
                }
            }
            None => {
                // The first step at this size runs eagerly (loading kernels, filling candle's
                // upload cache), then the same step is recorded, not run, for the next ones.
                {
                    let _cache = dev.enable_cuda_graph_htod_cache();
                    let logits = model.forward_inputs(&step, batch, kv)?;
                    copy_into(dev, &logits, &inputs.out)?;
                }
                let recorded = capture(dev, || {
                    let logits = model.forward_inputs(&step, batch, kv)?;
                    copy_into(dev, &logits, &inputs.out)
                });
                match recorded {
                    Ok(g) => {
                        if tracing::enabled!(tracing::Level::DEBUG) {
                            let (kernels, memory, edges, programmatic) = shape(&g);
                            tracing::debug!(
                                "decode graph of {size} sequences: {kernels} kernels, {memory} memory nodes, \
                                 {edges} edges ({programmatic} programmatic)"
                            );
                        }
                        st.graphs.insert(size, Graph(g));
                    }
                    Err(e) => {
                        tracing::warn!("CUDA graphs off: capturing a decode step of {size} sequences failed: {e}");
                        st.enabled = false;
                    }
                }
            }
        }
        let out = inputs.out.narrow(0, 0, n).ctx("graph logits")?;
        // A fresh tensor: the buffer is overwritten by the next replay.
        if out.dtype() == DType::F32 {
            return out.copy().ctx("graph logits").map(Some);
        }
        crate::nn::logits_f32(&out).map(Some)
    }
}

/// Records what `f` enqueues on the device's stream (nothing runs) → the instantiated graph.
fn capture(dev: &CudaDevice, f: impl FnOnce() -> Result<()>) -> Result<CudaGraph> {
    let stream = dev.cuda_stream();
    let _cache = dev.enable_cuda_graph_htod_cache();
    stream.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED).map_err(|e| graph_err("begin", e))?;
    let ran = f();
    let graph = stream.end_capture(CUgraphInstantiate_flags(0));
    ran?;
    let graph = graph.map_err(|e| graph_err("instantiate", e))?.ok_or_else(|| graph_err("capture", "empty graph"))?;
    graph.upload().map_err(|e| graph_err("upload", e))?;
    Ok(graph)
}

/// A captured graph's (kernel nodes, memory alloc/free nodes, edges, programmatic edges): how
/// many kernel boundaries PDL can overlap. Zeros where the driver does not say.
fn shape(g: &CudaGraph) -> (usize, usize, usize, usize) {
    use candle_core::cuda::cudarc::driver::sys::{self, CUgraphEdgeData, CUgraphNode, CUgraphNodeType};
    let graph = g.cu_graph();
    let (mut n, mut e) = (0usize, 0usize);
    // SAFETY: the graph is alive (owned by `g`); each call is given buffers of the sizes the
    // driver reported in the counting call before it.
    unsafe {
        if sys::cuGraphGetNodes(graph, std::ptr::null_mut(), &mut n) != sys::CUresult::CUDA_SUCCESS {
            return (0, 0, 0, 0);
        }
        let mut nodes: Vec<CUgraphNode> = vec![std::ptr::null_mut(); n];
        let _ = sys::cuGraphGetNodes(graph, nodes.as_mut_ptr(), &mut n);
        let (mut kernels, mut memory) = (0, 0);
        for &node in &nodes[..n] {
            let mut ty = CUgraphNodeType::CU_GRAPH_NODE_TYPE_EMPTY;
            let _ = sys::cuGraphNodeGetType(node, &mut ty);
            match ty {
                CUgraphNodeType::CU_GRAPH_NODE_TYPE_KERNEL => kernels += 1,
                CUgraphNodeType::CU_GRAPH_NODE_TYPE_MEM_ALLOC | CUgraphNodeType::CU_GRAPH_NODE_TYPE_MEM_FREE => {
                    memory += 1
                }
                _ => {}
            }
        }
        if sys::cuGraphGetEdges_v2(graph, std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut(), &mut e)
            != sys::CUresult::CUDA_SUCCESS
        {
            return (kernels, memory, 0, 0);
        }
        let mut from: Vec<CUgraphNode> = vec![std::ptr::null_mut(); e];
        let mut to: Vec<CUgraphNode> = vec![std::ptr::null_mut(); e];
        let mut data: Vec<CUgraphEdgeData> = vec![std::mem::zeroed(); e];
        let _ = sys::cuGraphGetEdges_v2(graph, from.as_mut_ptr(), to.as_mut_ptr(), data.as_mut_ptr(), &mut e);
        // CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC is 1.
        let programmatic = data[..e].iter().filter(|d| d.type_ == 1).count();
        (kernels, memory, e, programmatic)
    }
}

/// Copies `src`'s elements to the start of `dst` (same dtype, both contiguous).
fn copy_into(dev: &CudaDevice, src: &Tensor, dst: &Tensor) -> Result<()> {
    if src.dtype() != dst.dtype() || src.elem_count() > dst.elem_count() || !src.is_contiguous() {
        return Err(graph_err(
            "logits",
            format!("{:?} {:?} into {:?} {:?}", src.dims(), src.dtype(), dst.dims(), dst.dtype()),
        ));
    }
    let stream = dev.cuda_stream();
    let bytes = src.elem_count() * src.dtype().size_in_bytes();
    // SAFETY: both ranges are inside live device allocations (checked sizes, contiguous).
    unsafe { result::memcpy_dtod_async(dptr(dst, &stream)?, dptr(src, &stream)?, bytes, stream.cu_stream()) }
        .map_err(|e| graph_err("copy logits", e))
}

/// Host → a fixed device buffer, ordered on the stream.
fn upload<T: DeviceRepr>(dev: &CudaDevice, dst: &Tensor, src: &[T]) -> Result<()> {
    if src.len() > dst.elem_count() || std::mem::size_of::<T>() != dst.dtype().size_in_bytes() {
        return Err(graph_err("inputs", format!("{} values into {:?}", src.len(), dst.dims())));
    }
    let stream = dev.cuda_stream();
    // SAFETY: `dst` holds at least `src.len()` elements of T's size; a pageable source is staged
    // by the driver before the call returns.
    unsafe { result::memcpy_htod_async(dptr(dst, &stream)?, src, stream.cu_stream()) }
        .map_err(|e| graph_err("upload inputs", e))
}

impl Inputs {
    fn new(model: &Model, dev: &CudaDevice) -> Result<Self> {
        let rows = SIZES[SIZES.len() - 1];
        let device = Device::Cuda(dev.clone());
        let zeros = |shape: (usize, usize), dtype| Tensor::zeros(shape, dtype, &device).ctx("graph inputs");
        let ids = zeros((rows, 1), DType::U32)?.flatten_all().ctx("graph ids")?;
        let positions = if model.has_position_embed() {
            Some(zeros((rows, 1), DType::U32)?.flatten_all().ctx("graph positions")?)
        } else {
            None
        };
        let rope = |r: Option<&crate::nn::Rope>| -> Result<Option<(Tensor, Tensor)>> {
            r.map(|r| Ok((zeros((rows, r.half()), DType::F32)?, zeros((rows, r.half()), DType::F32)?))).transpose()
        };
        let [main, local] = model.ropes();
        let ropes = [rope(main)?, rope(local)?];
        let layout = dev.alloc_zeros::<u32>(7 * rows + MAX_TABLE_ENTRIES).ctx("graph batch layout")?;
        let out = zeros((rows, model.config().vocab_size), model.dtype())?;
        Ok(Self { rows, ids, positions, ropes, layout: Arc::new(layout), out })
    }

    /// Overwrites the buffers with `batch` (already padded to a captured size).
    fn write(&self, model: &Model, dev: &CudaDevice, batch: &BatchMeta, layout: &[u32]) -> Result<()> {
        if batch.num_tokens() > self.rows || layout.len() > self.layout.len() {
            return Err(graph_err("inputs", format!("{} rows, {} layout words", batch.num_tokens(), layout.len())));
        }
        upload(dev, &self.ids, &batch.tokens)?;
        if let Some(p) = &self.positions {
            upload(dev, p, &batch.positions)?;
        }
        for (rope, bufs) in model.ropes().into_iter().zip(&self.ropes) {
            if let (Some(r), Some((cos, sin))) = (rope, bufs) {
                let (c, s) = r.host_tables(&batch.spans);
                upload(dev, cos, &c)?;
                upload(dev, sin, &s)?;
            }
        }
        let stream = dev.cuda_stream();
        let at = super::attention::slice_ptr(&self.layout, 0, &stream);
        // SAFETY: the buffer holds at least `layout.len()` words (checked above).
        unsafe { result::memcpy_htod_async(at, layout, stream.cu_stream()) }.map_err(|e| graph_err("upload layout", e))
    }

    /// The leading `rows` of every buffer, as a forward pass's inputs.
    fn step(&self, rows: usize) -> Result<StepInputs> {
        let head = |t: &Tensor| t.narrow(0, 0, rows).ctx("graph inputs");
        let tables = |r: &Option<(Tensor, Tensor)>| -> Result<Option<RopeTables>> {
            r.as_ref().map(|(c, s)| Ok(RopeTables { cos: head(c)?, sin: head(s)? })).transpose()
        };
        Ok(StepInputs {
            ids: head(&self.ids)?,
            positions: self.positions.as_ref().map(head).transpose()?,
            main: tables(&self.ropes[0])?,
            local: tables(&self.ropes[1])?,
        })
    }
}
