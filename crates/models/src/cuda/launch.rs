//! Launching our kernels with programmatic dependent launch (PDL, sm_90).
//!
//! A decode step at small batch is ~10 short kernels a layer, and each pays its ramp-up (CTAs
//! scheduled, first loads in flight) and drain after the one before it has completely finished.
//! With PDL a kernel may start while its predecessor is still running: every kernel in
//! `kernels.cu` lets its successor start at once (`griddepcontrol.launch_dependents`) and waits
//! for its predecessor's completion and memory (`griddepcontrol.wait`) before touching any
//! activation. The GEMV asks its first weight chunks into L2 before that wait, so a step's
//! weight stream no longer stops at every small kernel.
//!
//! In a stream the launch attribute is all it takes. A captured decode graph keeps a
//! programmatic edge only where two of our kernels were captured back to back: candle's
//! stream-ordered allocations and frees become graph nodes between most kernels, and only a
//! kernel → kernel edge can be programmatic (CUDA refuses to rewire a graph with memory nodes:
//! `CUDA_ERROR_INVALID_VALUE`). Measured on the H200 (bench/RESULTS.md), PDL in a stream and
//! those partial edges give ~2–3% at bs 1. Making the edges all programmatic (a step arena for
//! the outputs: 258 of 267 at bs 1) gave nothing more, so the kernels' own latency, not the
//! gaps between them, is what is left; `alloc.rs` says more.
//!
//! `PROM_PDL=0` turns it off (plain launches), for comparison.

use std::ffi::c_void;
use std::sync::OnceLock;

use candle_core::cuda::cudarc::driver::sys::{self, CUlaunchAttribute, CUlaunchAttributeID, CUlaunchConfig};
use candle_core::cuda::cudarc::driver::{CudaFunction, CudaStream, DriverError, LaunchConfig};

/// A switch for comparisons, read once into `cell`: on unless the variable `var` is "0".
pub(super) fn env_switch(cell: &'static OnceLock<bool>, var: &str) -> bool {
    *cell.get_or_init(|| std::env::var(var).map_or(true, |v| v != "0"))
}

/// Whether launches use PDL: on unless `PROM_PDL=0`.
fn pdl_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    env_switch(&ON, "PROM_PDL")
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
    /// Pointers to values borrowed for `'a` (see `arg`).
    args: Vec<*mut c_void>,
}

impl<'a> Launch<'a> {
    pub fn new(func: &'a CudaFunction) -> Self {
        Self { func, args: Vec::with_capacity(16) }
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
