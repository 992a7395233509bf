// The decode GEMM of crates/models/src/cuda/gemm.cuh as a standalone cubin for
// scripts/gpu/gemm_lab.py (`wgmma` mode), which times it against cuBLAS on the GPU machine.
//   nvcc -cubin -O3 -std=c++17 -arch=sm_90a -o scripts/gpu/gemm_lab.cubin scripts/gpu/gemm_lab.cu
#include "../../crates/models/src/cuda/kernels.cu"
#include "../../crates/models/src/cuda/gemm.cuh"
