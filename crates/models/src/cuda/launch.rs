//! Launching our kernels with programmatic dependent launch (PDL, sm_90), and linking them the
//! same way inside a captured CUDA graph.
//!
//! A decode step at small batch is ~10 short kernels a layer, and each pays its ramp-up (CTAs
//! scheduled, first loads in flight) and drain after the one before it has completely finished.
//! With PDL a kernel may start while its predecessor is still running: every kernel in
//! `kernels.cu` lets its successor start at once (`griddepcontrol.launch_dependents`) and waits
//! for its predecessor's completion and memory (`griddepcontrol.wait`) before touching any
//! activation. The GEMV asks its first weight chunks into L2 before that wait, so a step's
//! weight stream no longer stops at every small kernel.
//!
//! In a stream the launch attribute is all it takes. A captured graph, though, records
//! candle's stream-ordered allocations and frees as nodes between the kernels, and only a
//! kernel → kernel edge can be programmatic; [`link_programmatic`] rewires the captured chain
//! so that each of our kernels hangs off the kernel before it by a programmatic edge.
//!
//! `PROM_PDL=0` turns it all off (plain launches, plain graphs), for comparison.

use std::collections::{HashMap, HashSet};
use std::ffi::c_void;
use std::marker::PhantomData;
use std::sync::{Mutex, OnceLock};

use candle_core::cuda::cudarc::driver::sys::{
    self, CUgraph, CUgraphDependencyType, CUgraphEdgeData, CUgraphNode, CUgraphNodeType, CUlaunchAttribute,
    CUlaunchAttributeID, CUlaunchConfig, CUDA_KERNEL_NODE_PARAMS_v2,
};
use candle_core::cuda::cudarc::driver::{CudaFunction, CudaStream, DriverError, LaunchConfig};

/// Whether launches use PDL: on unless `PROM_PDL=0`.
pub(crate) fn pdl_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("PROM_PDL").map_or(true, |v| v != "0"))
}

/// The kernels launched with PDL (their `CUfunction` handles): a graph links only these.
fn pdl_functions() -> &'static Mutex<HashSet<usize>> {
    static F: OnceLock<Mutex<HashSet<usize>>> = OnceLock::new();
    F.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A kernel parameter passed by value: device pointers travel as `u64` addresses, never as the
/// host-side buffer objects (whose address would be passed instead of the device's).
pub(super) trait Param: Copy {}
impl Param for u64 {}
impl Param for u32 {}
impl Param for i32 {}
impl Param for f32 {}

/// A kernel launch: `arg` pushes each parameter (by reference, as `cuLaunchKernel` wants),
/// `launch` submits it with the PDL attribute.
pub(super) struct Launch<'a> {
    func: &'a CudaFunction,
    args: Vec<*mut c_void>,
    _args: PhantomData<&'a ()>,
}

impl<'a> Launch<'a> {
    pub fn new(func: &'a CudaFunction) -> Self {
        Self { func, args: Vec::with_capacity(16), _args: PhantomData }
    }

    pub fn arg<T: Param>(&mut self, v: &'a T) -> &mut Self {
        self.args.push(v as *const T as *mut c_void);
        self
    }

    /// Safety: the arguments match the kernel's parameters in number, order and type, and the
    /// kernel stays inside the buffers they point to.
    pub unsafe fn launch(&mut self, stream: &CudaStream, cfg: LaunchConfig) -> Result<(), DriverError> {
        stream.context().bind_to_thread()?;
        let f = self.func.cu_function();
        let pdl = pdl_enabled();
        if pdl {
            pdl_functions().lock().unwrap_or_else(|e| e.into_inner()).insert(f as usize);
        }
        // SAFETY: a plain-old-data union; zero is a valid value of every member.
        let mut attr: CUlaunchAttribute = std::mem::zeroed();
        attr.id = CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let config = CUlaunchConfig {
            gridDimX: cfg.grid_dim.0,
            gridDimY: cfg.grid_dim.1,
            gridDimZ: cfg.grid_dim.2,
            blockDimX: cfg.block_dim.0,
            blockDimY: cfg.block_dim.1,
            blockDimZ: cfg.block_dim.2,
            sharedMemBytes: cfg.shared_mem_bytes,
            hStream: stream.cu_stream(),
            attrs: &mut attr,
            numAttrs: u32::from(pdl),
        };
        sys::cuLaunchKernelEx(&config, f, self.args.as_mut_ptr(), std::ptr::null_mut()).result()
    }
}

/// What [`link_programmatic`] needs to know of a captured node.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// A kernel; `true` when it is one of ours launched with PDL.
    Kernel(bool),
    /// A graph allocation of `[ptr, ptr + size)`.
    Alloc(u64, u64),
    /// A graph free of the allocation at `ptr` (its size known from that allocation, if it is one
    /// of this graph's).
    Free(u64, Option<u64>),
    Other,
}

fn overlaps((a, an): (u64, u64), (b, bn): (u64, u64)) -> bool {
    a < b + bn && b < a + an
}

fn default_edge() -> CUgraphEdgeData {
    // SAFETY: plain data; all-zero is the default (full) dependency.
    unsafe { std::mem::zeroed() }
}

fn programmatic_edge() -> CUgraphEdgeData {
    let mut e = default_edge();
    e.from_port = sys::CU_GRAPH_KERNEL_NODE_PORT_PROGRAMMATIC as u8;
    e.type_ = CUgraphDependencyType::CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC as u8;
    e
}

/// Rewires a graph captured from one stream (a chain of nodes) so that each of our PDL kernels
/// depends on the kernel before it through a programmatic edge → how many kernels were linked.
///
/// Between two kernels B and C the chain holds only graph allocations and frees (the outputs
/// candle allocates for C, the tensors dropped meanwhile); C's allocations move up beside B (they
/// depend on what B depends on, so C may start while B runs), and the frees move down behind C,
/// where they stay ahead of everything that followed them before. Nothing runs in those nodes;
/// they only bound the lifetimes of the graph's memory, which get longer, never shorter. A gap
/// with anything else (a copy), or an allocation that reuses memory whose free moved, keeps the
/// chain as it was at that point. A graph that is not a single chain is left alone.
///
/// Safety: `graph` is a valid, not yet instantiated graph of this context.
pub(super) unsafe fn link_programmatic(graph: CUgraph) -> Result<usize, DriverError> {
    let mut n = 0usize;
    sys::cuGraphGetNodes(graph, std::ptr::null_mut(), &mut n).result()?;
    let mut nodes = vec![std::ptr::null_mut(); n];
    sys::cuGraphGetNodes(graph, nodes.as_mut_ptr(), &mut n).result()?;
    nodes.truncate(n);
    // The chain: each node has at most one dependency, and one node has none.
    let mut next: HashMap<usize, CUgraphNode> = HashMap::new();
    let mut root = None;
    for &node in &nodes {
        let deps = dependencies(node)?;
        match deps.as_slice() {
            [] if root.is_none() => root = Some(node),
            [(d, _)] if !next.contains_key(&(*d as usize)) => {
                next.insert(*d as usize, node);
            }
            _ => return Ok(0),
        }
    }
    let Some(mut at) = root else { return Ok(0) };
    let mut order = vec![at];
    while let Some(&nx) = next.get(&(at as usize)) {
        order.push(nx);
        at = nx;
    }
    if order.len() != nodes.len() {
        return Ok(0);
    }
    let ours = pdl_functions().lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut sizes: HashMap<u64, u64> = HashMap::new();
    let mut kinds = Vec::with_capacity(order.len());
    for &node in &order {
        let mut ty = CUgraphNodeType::CU_GRAPH_NODE_TYPE_EMPTY;
        sys::cuGraphNodeGetType(node, &mut ty).result()?;
        kinds.push(match ty {
            CUgraphNodeType::CU_GRAPH_NODE_TYPE_KERNEL => {
                let mut p: CUDA_KERNEL_NODE_PARAMS_v2 = std::mem::zeroed();
                sys::cuGraphKernelNodeGetParams_v2(node, &mut p).result()?;
                Kind::Kernel(ours.contains(&(p.func as usize)))
            }
            CUgraphNodeType::CU_GRAPH_NODE_TYPE_MEM_ALLOC => {
                let mut p: sys::CUDA_MEM_ALLOC_NODE_PARAMS = std::mem::zeroed();
                sys::cuGraphMemAllocNodeGetParams(node, &mut p).result()?;
                sizes.insert(p.dptr, p.bytesize as u64);
                Kind::Alloc(p.dptr, p.bytesize as u64)
            }
            CUgraphNodeType::CU_GRAPH_NODE_TYPE_MEM_FREE => {
                let mut ptr = 0;
                sys::cuGraphMemFreeNodeGetParams(node, &mut ptr).result()?;
                Kind::Free(ptr, sizes.get(&ptr).copied())
            }
            _ => Kind::Other,
        });
    }

    // The new dependencies of every node, built by walking the chain.
    let mut deps: HashMap<usize, Vec<(CUgraphNode, CUgraphEdgeData)>> = HashMap::new();
    let mut tail: Vec<CUgraphNode> = Vec::new();
    let emit = |node: CUgraphNode, tail: &mut Vec<CUgraphNode>, deps: &mut HashMap<usize, _>| {
        deps.insert(node as usize, tail.iter().map(|&t| (t, default_edge())).collect::<Vec<_>>());
        *tail = vec![node];
    };
    // Frees moved behind the last linked kernel, not yet placed: (node, range).
    let mut carried: Vec<(CUgraphNode, (u64, u64))> = Vec::new();
    let mut prev_kernel: Option<CUgraphNode> = None;
    let mut gap: Vec<usize> = Vec::new();
    let mut linked = 0;
    for (i, &node) in order.iter().enumerate() {
        let Kind::Kernel(pdl) = kinds[i] else {
            gap.push(i);
            continue;
        };
        let allocs: Vec<(u64, u64)> =
            gap.iter().filter_map(|&g| if let Kind::Alloc(p, s) = kinds[g] { Some((p, s)) } else { None }).collect();
        let frees: Option<Vec<(CUgraphNode, (u64, u64))>> = gap
            .iter()
            .filter(|&&g| !matches!(kinds[g], Kind::Alloc(..)))
            .map(|&g| match kinds[g] {
                Kind::Free(p, Some(s)) => Some((order[g], (p, s))),
                _ => None,
            })
            .collect();
        let link = match (pdl, prev_kernel, &frees) {
            (true, Some(_), Some(frees)) => {
                !allocs.iter().any(|&a| carried.iter().chain(frees).any(|&(_, f)| overlaps(a, f)))
            }
            _ => false,
        };
        match (link, prev_kernel, frees) {
            (true, Some(b), Some(frees)) => {
                let before_b: Vec<(CUgraphNode, CUgraphEdgeData)> = deps
                    .get(&(b as usize))
                    .map(|d| d.iter().map(|&(n, _)| (n, default_edge())).collect())
                    .unwrap_or_default();
                let mut mine = vec![(b, programmatic_edge())];
                for &g in &gap {
                    if let Kind::Alloc(..) = kinds[g] {
                        deps.insert(order[g] as usize, before_b.clone());
                        mine.push((order[g], default_edge()));
                    }
                }
                deps.insert(node as usize, mine);
                tail = vec![node];
                carried.extend(frees);
                linked += 1;
            }
            _ => {
                for (f, _) in carried.drain(..) {
                    emit(f, &mut tail, &mut deps);
                }
                for &g in &gap {
                    emit(order[g], &mut tail, &mut deps);
                }
                emit(node, &mut tail, &mut deps);
            }
        }
        gap.clear();
        prev_kernel = Some(node);
    }
    for (f, _) in carried.drain(..) {
        emit(f, &mut tail, &mut deps);
    }
    for &g in &gap {
        emit(order[g], &mut tail, &mut deps);
    }
    if linked == 0 {
        return Ok(0);
    }
    // Replace every edge.
    for &node in &order {
        for (d, e) in dependencies(node)? {
            sys::cuGraphRemoveDependencies_v2(graph, &d, &node, &e, 1).result()?;
        }
    }
    for &node in &order {
        for &(d, e) in deps.get(&(node as usize)).map(Vec::as_slice).unwrap_or_default() {
            sys::cuGraphAddDependencies_v2(graph, &d, &node, &e, 1).result()?;
        }
    }
    Ok(linked)
}

/// A node's dependencies with their edge data.
unsafe fn dependencies(node: CUgraphNode) -> Result<Vec<(CUgraphNode, CUgraphEdgeData)>, DriverError> {
    let mut n = 0usize;
    sys::cuGraphNodeGetDependencies_v2(node, std::ptr::null_mut(), std::ptr::null_mut(), &mut n).result()?;
    let mut nodes = vec![std::ptr::null_mut(); n];
    let mut edges = vec![default_edge(); n];
    sys::cuGraphNodeGetDependencies_v2(node, nodes.as_mut_ptr(), edges.as_mut_ptr(), &mut n).result()?;
    Ok(nodes.into_iter().zip(edges).take(n).collect())
}
