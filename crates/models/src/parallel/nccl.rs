//! NCCL collectives between the GPUs of one host, one communicator per rank on that rank's
//! stream (the one stream candle's device and our kernels use, so a collective is ordered after
//! the kernels that produce its input without any extra synchronisation).
//!
//! `libnccl.so.2` is opened at run time (`PROM_NCCL_LIB`, else the loader's search path; the
//! `nvidia-nccl-cu13` wheel that PyTorch ships has one): candle 0.11 links cudarc 0.19 with
//! `dynamic-linking`, which cudarc's build script refuses to combine with `dynamic-loading`,
//! so turning on cudarc's own `nccl` feature would make every CUDA build of prom need libnccl
//! at link and start time even on one GPU. Only the six entry points used here are bound.
//!
//! NVLink SHARP (multicast) stays off: `NCCL_NVLS_ENABLE=0` is set when the environment does
//! not already say otherwise, since the lent machines must never use it (a program that does
//! can take the host's shared GPUs out of service).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Arc;

use candle_core::cuda::cudarc::driver::DevicePtr;
use candle_core::cuda::CudaStorageSlice;
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, Device, Storage, Tensor};

use super::load::MakeComm;
use super::Communicator;
use crate::{Error, Result, TensorContext};

type NcclResult = c_int;
type Comm = *mut c_void;

#[repr(C)]
#[derive(Clone, Copy)]
struct UniqueId([c_char; 128]);

/// `ncclDataType_t` and `ncclRedOp_t` values (nccl.h, stable since 2.x).
const NCCL_FLOAT16: c_int = 6;
const NCCL_FLOAT32: c_int = 7;
const NCCL_BFLOAT16: c_int = 9;
const NCCL_SUM: c_int = 0;

struct Lib {
    _lib: libloading::Library,
    get_unique_id: unsafe extern "C" fn(*mut UniqueId) -> NcclResult,
    comm_init_rank: unsafe extern "C" fn(*mut Comm, c_int, UniqueId, c_int) -> NcclResult,
    all_reduce: unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, c_int, Comm, *mut c_void) -> NcclResult,
    all_gather: unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, Comm, *mut c_void) -> NcclResult,
    comm_destroy: unsafe extern "C" fn(Comm) -> NcclResult,
    error_string: unsafe extern "C" fn(NcclResult) -> *const c_char,
}

fn nccl_err(op: &str, msg: impl Into<String>) -> Error {
    Error::config("tensor_parallel_size", format!("NCCL {op}: {}", msg.into()))
}

impl Lib {
    fn open() -> Result<Arc<Lib>> {
        if std::env::var_os("NCCL_NVLS_ENABLE").is_none() {
            // SAFETY: set once, before any rank thread or NCCL reads the environment.
            std::env::set_var("NCCL_NVLS_ENABLE", "0");
        }
        let path = std::env::var("PROM_NCCL_LIB").unwrap_or_else(|_| "libnccl.so.2".into());
        // SAFETY: loading NCCL runs its initialisers, which only set up NCCL's own state.
        let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| {
            nccl_err(
                "library",
                format!(
                    "cannot open `{path}`: {e} (put the directory of libnccl.so.2, e.g. the nvidia-nccl wheel's \
                     nvidia/nccl/lib, on LD_LIBRARY_PATH or set PROM_NCCL_LIB)"
                ),
            )
        })?;
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the types match nccl.h's declarations of these functions.
                *unsafe { lib.get($name) }
                    .map_err(|e| nccl_err("library", format!("{}: {e}", String::from_utf8_lossy($name))))?
            };
        }
        Ok(Arc::new(Lib {
            get_unique_id: sym!(b"ncclGetUniqueId"),
            comm_init_rank: sym!(b"ncclCommInitRank"),
            all_reduce: sym!(b"ncclAllReduce"),
            all_gather: sym!(b"ncclAllGather"),
            comm_destroy: sym!(b"ncclCommDestroy"),
            error_string: sym!(b"ncclGetErrorString"),
            _lib: lib,
        }))
    }

    fn check(&self, op: &str, r: NcclResult) -> Result<()> {
        if r == 0 {
            return Ok(());
        }
        // SAFETY: NCCL returns a static string for any result code.
        let msg = unsafe { CStr::from_ptr((self.error_string)(r)) }.to_string_lossy().into_owned();
        Err(nccl_err(op, format!("{msg} (code {r})")))
    }
}

/// One rank's NCCL communicator, bound to its device's stream.
pub struct Nccl {
    lib: Arc<Lib>,
    comm: Comm,
    device: candle_core::CudaDevice,
    rank: usize,
    world: usize,
}

// SAFETY: an NCCL communicator may be used from any thread as long as calls on it are not
// concurrent; each rank's model makes its collectives from one thread at a time, in order.
unsafe impl Send for Nccl {}
unsafe impl Sync for Nccl {}

impl Drop for Nccl {
    fn drop(&mut self) {
        // SAFETY: the communicator was initialised and is not used after this.
        let _ = unsafe { (self.lib.comm_destroy)(self.comm) };
    }
}

/// GPUs `N..N + world` (rank 0 keeps the device it was given) and their communicators.
pub(super) fn world_on(first: &Device, world: usize) -> Result<(Vec<Device>, Vec<MakeComm>)> {
    let Device::Cuda(d) = first else { return Err(nccl_err("devices", "rank 0 is not on a GPU")) };
    let base = d.cuda_stream().context().ordinal();
    let mut devices = vec![first.clone()];
    for r in 1..world {
        devices.push(crate::cuda::parse_device(&format!("cuda:{}", base + r))?);
    }
    let lib = Lib::open()?;
    let mut id = UniqueId([0; 128]);
    // SAFETY: `id` is a valid out-pointer.
    lib.check("get unique id", unsafe { (lib.get_unique_id)(&mut id) })?;
    let comms = devices
        .iter()
        .enumerate()
        .map(|(rank, dev)| -> MakeComm {
            let (lib, dev) = (Arc::clone(&lib), dev.clone());
            Box::new(move || Ok(Arc::new(Nccl::init(lib, &dev, rank, world, id)?) as Arc<dyn Communicator>))
        })
        .collect();
    Ok((devices, comms))
}

impl Nccl {
    fn init(lib: Arc<Lib>, dev: &Device, rank: usize, world: usize, id: UniqueId) -> Result<Nccl> {
        let Device::Cuda(device) = dev else { return Err(nccl_err("init", "not a CUDA device")) };
        // NCCL picks the device current on the calling thread.
        device.cuda_stream().context().bind_to_thread().map_err(|e| nccl_err("init", e.to_string()))?;
        let mut comm: Comm = std::ptr::null_mut();
        // SAFETY: `comm` is a valid out-pointer; every rank passes the same id and world size.
        lib.check("init", unsafe { (lib.comm_init_rank)(&mut comm, world as c_int, id, rank as c_int) })?;
        Ok(Nccl { lib, comm, device: device.clone(), rank, world })
    }

    /// Runs `op(send, recv, stream)` into a fresh `(out_len)` buffer of `x`'s dtype.
    fn collective(
        &self,
        x: &Tensor,
        out_len: usize,
        what: &str,
        op: impl FnOnce(*const c_void, *mut c_void, c_int, *mut c_void) -> NcclResult,
    ) -> Result<Tensor> {
        let x = x.contiguous().ctx(what)?;
        let stream = self.device.cuda_stream();
        let (st, layout) = x.storage_and_layout();
        let Storage::Cuda(cs) = &*st else { return Err(nccl_err(what, "tensor is not on a CUDA device")) };
        let off = layout.start_offset();
        let raw = stream.cu_stream() as *mut c_void;
        macro_rules! run {
            ($s:expr, $ty:ty, $code:expr) => {{
                let send = $s.device_ptr(&stream).0 + (off * std::mem::size_of::<$ty>()) as u64;
                // SAFETY: NCCL writes every element of `out` before anything on the stream reads it.
                let out = unsafe { self.device.alloc::<$ty>(out_len) }.ctx(what)?;
                let recv = out.device_ptr(&stream).0;
                self.lib.check(what, op(send as *const c_void, recv as *mut c_void, $code, raw))?;
                Storage::Cuda(CudaStorage::wrap_cuda_slice(out, self.device.clone()))
            }};
        }
        let storage = match &cs.slice {
            CudaStorageSlice::F32(s) => run!(s, f32, NCCL_FLOAT32),
            CudaStorageSlice::BF16(s) => run!(s, half::bf16, NCCL_BFLOAT16),
            CudaStorageSlice::F16(s) => run!(s, half::f16, NCCL_FLOAT16),
            _ => return Err(nccl_err(what, format!("dtype {:?} (f32, bf16 or f16 only)", x.dtype()))),
        };
        drop(st);
        Ok(Tensor::from_storage(storage, out_len, BackpropOp::none(), false))
    }
}

impl Communicator for Nccl {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.elem_count();
        let out = self.collective(x, n, "all-reduce", |s, r, ty, stream| {
            // SAFETY: `s` and `r` hold `n` elements of `ty` on this rank's device.
            unsafe { (self.lib.all_reduce)(s, r, n, ty, NCCL_SUM, self.comm, stream) }
        })?;
        out.reshape(x.dims()).ctx("all-reduce")
    }
    fn all_gather(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.elem_count();
        let out = self.collective(x, n * self.world, "all-gather", |s, r, ty, stream| {
            // SAFETY: `s` holds `n` elements, `r` room for `n · world`, on this rank's device.
            unsafe { (self.lib.all_gather)(s, r, n, ty, self.comm, stream) }
        })?;
        let mut dims = x.dims().to_vec();
        match dims.first_mut() {
            Some(d0) => *d0 *= self.world,
            None => dims.push(self.world),
        }
        out.reshape(dims).ctx("all-gather")
    }
}

/// On a GPU (`PROM_TEST_DEVICE=cuda`): a one-rank NCCL world runs the real library through these
/// bindings (identifiers, init, both collectives, each dtype); more ranks need more GPUs
/// (bench/gpu_tp.sh). Elsewhere there is no GPU to run NCCL on, and the test says so.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rank_world_runs_nccl() {
        let Ok(spec) = std::env::var("PROM_TEST_DEVICE") else {
            eprintln!("PROM_TEST_DEVICE is not set: no GPU to run NCCL on");
            return;
        };
        let dev = crate::cuda::parse_device(&spec).unwrap();
        let (_, mut makers) = world_on(&dev, 1).unwrap();
        let comm = (makers.remove(0))().unwrap();
        let x = Tensor::arange(0f32, 12., &dev).unwrap().reshape((3, 4)).unwrap();
        for dt in [candle_core::DType::F32, candle_core::DType::BF16, candle_core::DType::F16] {
            let x = x.to_dtype(dt).unwrap();
            let host = |t: Tensor| t.to_dtype(candle_core::DType::F32).unwrap().to_vec2::<f32>().unwrap();
            let want = host(x.clone());
            assert_eq!(host(comm.all_reduce_sum(&x).unwrap()), want, "{dt:?}");
            assert_eq!(host(comm.all_gather(&x.narrow(0, 1, 2).unwrap()).unwrap()), want[1..], "{dt:?}");
        }
    }
}
