//! Our kernels' module: `kernels.cu` compiled by `build.rs` into a fatbin holding sm_90 machine
//! code and compute_90 PTX, loaded once per device. The driver runs the machine code as it is on
//! an sm_90 GPU and JIT-compiles the PTX only on a newer one. (The module used to be PTX alone,
//! which the driver JIT-compiled on every fresh machine: ≈ 25 s on the H200 before the first
//! kernel ran, bench/RESULTS.md.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::cuda::cudarc::driver::{CudaFunction, CudaModule};
use candle_core::cuda::cudarc::nvrtc::Ptx;
use candle_core::cuda::WrapErr;
use candle_core::CudaDevice;

use crate::{Result, TensorContext};

/// The fatbin `build.rs` writes.
const IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/prom_kernels.fatbin"));

/// The kernel `name` of our module, loading the module on `dev` the first time.
pub(super) fn func(dev: &CudaDevice, name: &str) -> Result<CudaFunction> {
    static MODULES: OnceLock<Mutex<HashMap<candle_core::cuda::DeviceId, Arc<CudaModule>>>> = OnceLock::new();
    let module = {
        // A poisoned lock only means another thread panicked while loading: the map is intact.
        let mut modules = MODULES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
        match modules.get(&dev.id()) {
            Some(m) => m.clone(),
            None => {
                let m =
                    dev.cuda_stream().context().load_module(Ptx::from_binary(IMAGE.to_vec())).w().ctx(
                        "loading the CUDA kernels (an sm_90 build: `CUDA_COMPUTE_CAP` at build time picks another)",
                    )?;
                modules.insert(dev.id(), m.clone());
                m
            }
        }
    };
    module.load_function(name).w().ctx(format!("CUDA kernel {name}"))
}
