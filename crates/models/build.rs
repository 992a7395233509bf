//! Under the `cuda` feature, compiles `src/cuda/kernels.cu` (and the `.cuh` parts it includes)
//! with nvcc into a fatbin: machine code for sm_90 (or `CUDA_COMPUTE_CAP`) plus its PTX, for
//! GPUs newer than that; `cuda::module` embeds it. Without the feature this does nothing, so CPU
//! builds need no CUDA toolkit.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let src = "src/cuda/kernels.cu";
    // kernels.cu includes the .cuh parts beside it.
    println!("cargo:rerun-if-changed=src/cuda");
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("prom_kernels.fatbin");
    let status = Command::new(&nvcc)
        .args(["--fatbin", "-O3", "-std=c++17"])
        .args(["-gencode", &format!("arch=compute_{cap},code=sm_{cap}")])
        .args(["-gencode", &format!("arch=compute_{cap},code=compute_{cap}"), "-o"])
        .arg(&out)
        .arg(src)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "the `cuda` feature needs nvcc (`{nvcc}`: {e}); source ../shared/tools/cuda-toolchain.sh or set NVCC"
            )
        });
    assert!(status.success(), "nvcc failed on {src} ({status})");
}
