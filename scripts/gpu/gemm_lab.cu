// A decode-batch GEMM on Hopper tensor cores (wgmma), for scripts/gpu/gemm_lab.py's `wgmma`
// mode, which times it against cuBLAS on the GPU machine. Not used by prom: it was slower than
// cuBLAS at M = 64–128 (bench/RESULTS.md, "a wgmma decode GEMM of our own").
//   nvcc -cubin -O3 -std=c++17 -arch=sm_90a -o scripts/gpu/gemm_lab.cubin scripts/gpu/gemm_lab.cu
// It uses kernels.cu's helpers (from_f, pdl_wait, pdl_trigger).
#include "../../crates/models/src/cuda/kernels.cu"

// y (m × n_out) = x (m × k) · Wᵀ, W row-major (n_out × k), for m ≤ 128 rows of bf16/f16
// activations (a decode step's tokens), f32 accumulation.
//
// At decode batch sizes a GEMM is bound by its weight stream, not its math: at m = 128 every
// weight byte feeds 128 FLOP, so reaching the HBM rate needs ~60% of the tensor peak, and
// cuBLAS's m = 128 kernels stream the 8B shape's narrow projections at 2.3–2.9 TB/s. This kernel:
// - "swap AB": the weight rows are wgmma's M side and the tokens its N side (BN = 64 or 128,
//   the tokens padded by TMA's zero fill), so a 256 × BN tile holds every token of 256 output
//   features and each weight byte is loaded once;
// - a producer thread streams 256 × 64 weight boxes and BN × 64 activation boxes with TMA
//   (128-byte swizzle, the layout wgmma reads) through a STAGES-deep ring of shared memory;
//   two consumer warpgroups each run two m64nBNk16 a k16 step over their 128 rows;
// - split-K over a thread-block cluster: the S CTAs of a cluster take the S slices of one
//   tile's k and sum their partials through distributed shared memory, in slice order.
// The first version (commit 3032893) took 128-row tiles and stream-K over a persistent grid,
// with f32 partials in global memory summed by the last CTA of a tile (a ticket per tile).

namespace wg {

constexpr int BM = 256;      // weight rows (output features) a tile: two warpgroups of 128
constexpr int BK = 64;       // k a stage: one 128-byte swizzle row of bf16/f16
constexpr int THREADS = 384; // a producer warpgroup (one thread issues TMA) + two consumers

// A CUtensorMap, passed by value as a __grid_constant__ parameter.
struct alignas(64) TmaDesc {
  uint64_t opaque[16];
};

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void mbar_init(uint64_t* b, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(b)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t* b, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* b) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(b)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* b, unsigned parity) {
  uint32_t done;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_u32(b)), "r"(parity)
        : "memory");
  } while (!done);
}

// A 2-D TMA load of the box at (c0 = k, c1 = row) into shared memory, counted on `bar`.
__device__ __forceinline__ void tma_load(void* dst, const TmaDesc* map, uint64_t* bar, int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];"
      ::"r"(smem_u32(dst)), "l"((uint64_t)map), "r"(smem_u32(bar)), "r"(c0), "r"(c1)
      : "memory");
}

// wgmma's shared-memory descriptor for a K-major operand in the 128-byte swizzle TMA writes:
// rows of 128 bytes, 8-row groups 1024 bytes apart (the stride field); the leading-dimension
// field is unused in this layout. A k16 step inside the row adds 32 bytes to the start address.
__device__ __forceinline__ uint64_t sw128_desc(const void* p) {
  const uint64_t a = smem_u32(p);
  return ((a & 0x3FFFF) >> 4) | (1ull << 16) | ((uint64_t)(1024 >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

// D (64 × N, f32, in registers) += A (64 × 16, shared) · B (16 × N, shared), both K-major.
template <typename T, int N> struct Wgmma;
// The accumulator operands of m64n64 (32 registers) and m64n128 (64).
#define WG_REGS_64 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define WG_OPS_64 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define WG_REGS_128 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define WG_OPS_128 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define WG_MMA(T, PTX, N, A, B)                                                                                    \
  template <> struct Wgmma<T, N> {                                                                                 \
    static __device__ __forceinline__ void run(float* d, uint64_t a, uint64_t b) {                                 \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\nwgmma.mma_async.sync.aligned.m64n" #N "k16.f32." PTX   \
                   "." PTX " {" WG_REGS_##N "}, %" #A ", %" #B ", p, 1, 1, 0, 0;\n}\n"                                \
                   : WG_OPS_##N                                                                                    \
                   : "l"(a), "l"(b));                                                                              \
    }                                                                                                              \
  };
WG_MMA(__nv_bfloat16, "bf16", 64, 32, 33)
WG_MMA(__nv_bfloat16, "bf16", 128, 64, 65)
WG_MMA(__half, "f16", 64, 32, 33)
WG_MMA(__half, "f16", 128, 64, 65)

// Cluster helpers: this CTA's shared address `p` as seen in CTA `rank` of the cluster, a load
// from there, and a barrier over every thread of the cluster (release / acquire).
__device__ __forceinline__ uint32_t cluster_addr(const void* p, unsigned rank) {
  uint32_t r;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(smem_u32(p)), "r"(rank));
  return r;
}
__device__ __forceinline__ float4 ld_cluster(uint32_t addr) {
  float4 v;
  asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];"
               : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
               : "r"(addr)
               : "memory");
  return v;
}
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

// The output element of accumulator register r (of BN: the first BN/2 for the warpgroup's
// first 64 rows, the rest for its second) of consumer thread ct (0..255): wgmma's m64nN
// fragment puts register rr of lane l in warp w at row 16w + l/4 + 8·((rr/2)%2), column
// 8·(rr/4) + 2·(l%4) + rr%2.
template <int BN>
__device__ __forceinline__ void acc_pos(int ct, int r, int& row, int& col) {
  const int c = ct / 128, warp = (ct / 32) % 4, lane = ct % 32, blk = r / (BN / 2), rr = r % (BN / 2);
  row = c * 128 + blk * 64 + 16 * warp + lane / 4 + 8 * ((rr / 2) % 2);
  col = 8 * (rr / 4) + 2 * (lane % 4) + (rr % 2);
}

// grid (S, tiles) in clusters of (S, 1, 1): CTA (z, t) multiplies the 256 weight rows of tile t
// over the z-th of S equal slices of k; the cluster then sums its S partials through
// distributed shared memory (each CTA one S-th of the tile, in slice order) and stores the
// tile. Dynamic shared memory STAGES · (BM + BN) · BK · 2 bytes + 1024 (alignment). `wmap`
// boxes (BK, BM) of W (n_out × k), `xmap` boxes (BK, BN) of x (m × k), both 128-byte swizzled,
// rows past the end read as zeros.
template <typename T, int BN, int STAGES, bool REDUCE = true, bool ROT = false, bool MMA = true>
__device__ __forceinline__ void gemm_body(const TmaDesc* wmap, const TmaDesc* xmap, T* __restrict__ y, int n_out,
                                          int m, int k_iters, const uint8_t* wblk = nullptr) {
  constexpr int W_BYTES = BM * BK * 2, X_BYTES = BN * BK * 2, STAGE = W_BYTES + X_BYTES;
  static_assert(256 * BN * 4 <= STAGES * STAGE, "the partials reuse the ring");
  extern __shared__ uint8_t gemm_smem_raw[];
  uint8_t* smem = (uint8_t*)(((uintptr_t)gemm_smem_raw + 1023) & ~(uintptr_t)1023);
  __shared__ uint64_t full[STAGES], empty[STAGES];
  const int S = gridDim.x, z = blockIdx.x, tile = blockIdx.y;
  const int kb = (int)((long long)z * k_iters / S), ke = (int)((long long)(z + 1) * k_iters / S);
  const int n_it = ke - kb;
  // ROT: each tile walks its slice from its own offset, so the CTAs do not all read the same
  // activation columns at the same moment.
  const int rot = ROT ? (tile * 7 + z * 3) % max(n_it, 1) : 0;
  auto kat = [&](int i) { return kb + (i + rot < n_it ? i + rot : i + rot - n_it); };
  // The weight box of k-iteration j: a TMA box of the row-major weight, or with `wblk` one
  // contiguous W_BYTES block of a copy laid out [tile][k-iteration][256 rows × 64], already in
  // the 128-byte swizzle (a single bulk copy, the DRAM reads in order).
  auto load_w = [&](uint8_t* dst, uint64_t* bar, int j) {
    if (wblk) {
      const uint8_t* src = wblk + ((size_t)tile * k_iters + j) * W_BYTES;
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                   ::"r"(smem_u32(dst)), "l"((uint64_t)src), "r"(W_BYTES), "r"(smem_u32(bar))
                   : "memory");
    } else {
      tma_load(dst, wmap, bar, j * BK, tile * BM);
    }
  };
  const int wg = threadIdx.x / 128, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) {
    asm volatile("prefetch.tensormap [%0];" ::"l"((uint64_t)wmap) : "memory");
    asm volatile("prefetch.tensormap [%0];" ::"l"((uint64_t)xmap) : "memory");
    for (int s = 0; s < STAGES; s++) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], 8); // lane 0 of each consumer warp
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  pdl_trigger();
  float d[BN]; // rows +0..63 of this warpgroup's 128 (d[0, BN/2)), then +64..127
  if (wg == 0) {
    if (threadIdx.x == 0) {
      // The weights never change in a step: the first stages' weight tiles are asked for
      // before waiting on the kernel before (programmatic launch), the activations after.
      const int pre = min(STAGES, n_it);
      for (int i = 0; i < pre; i++) {
        mbar_expect_tx(&full[i], STAGE);
        load_w(smem + i * STAGE, &full[i], kat(i));
      }
      pdl_wait();
      for (int i = 0; i < pre; i++) tma_load(smem + i * STAGE + W_BYTES, xmap, &full[i], kat(i) * BK, 0);
      for (int i = pre; i < n_it; i++) {
        const int s = i % STAGES;
        mbar_wait(&empty[s], ((i / STAGES) - 1) & 1);
        mbar_expect_tx(&full[s], STAGE);
        load_w(smem + s * STAGE, &full[s], kat(i));
        tma_load(smem + s * STAGE + W_BYTES, xmap, &full[s], kat(i) * BK, 0);
      }
    }
  } else {
    pdl_wait();
    const int c = wg - 1; // this warpgroup's 128 rows of the tile
#pragma unroll
    for (int r = 0; r < BN; r++) d[r] = 0.f;
    int pending = -1;
    for (int i = 0; i < n_it; i++) {
      const int s = i % STAGES;
      mbar_wait(&full[s], (i / STAGES) & 1);
      if (!MMA) { // the ring alone: each stage is released as soon as it lands
        if (lane == 0) mbar_arrive(&empty[s]);
        continue;
      }
      const uint8_t* st = smem + s * STAGE;
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < BK / 16; kk++) {
        const uint64_t b = sw128_desc(st + W_BYTES + kk * 32);
        Wgmma<T, BN>::run(d, sw128_desc(st + (c * 128) * 128 + kk * 32), b);
        Wgmma<T, BN>::run(d + BN / 2, sw128_desc(st + (c * 128 + 64) * 128 + kk * 32), b);
      }
      wgmma_commit();
      wgmma_wait<1>();
      if (pending >= 0 && lane == 0) mbar_arrive(&empty[pending]);
      pending = s;
    }
    if (MMA) wgmma_wait<0>();
  }
  const int ct = threadIdx.x - 128; // consumer thread 0..255
  if (S == 1 || !REDUCE) {
    if (wg == 0) return;
#pragma unroll
    for (int r = 0; r < BN; r++) {
      int row, col;
      acc_pos<BN>(ct, r, row, col);
      row += tile * BM;
      if (row < n_out && col < m) y[(size_t)col * n_out + row] = from_f<T>(d[r]);
    }
    return;
  }
  // Every stage has been read (both consumer warpgroups are past their last wgmma): the ring
  // takes this CTA's partial, 16 bytes a thread per slab of four registers.
  asm volatile("bar.sync 1, 384;" ::: "memory");
  float4* part = reinterpret_cast<float4*>(smem);
  if (wg > 0) {
#pragma unroll
    for (int q = 0; q < BN / 4; q++) part[q * 256 + ct] = make_float4(d[4 * q], d[4 * q + 1], d[4 * q + 2], d[4 * q + 3]);
  }
  cluster_sync();
  // CTA z sums slabs z, z + S, ... over the cluster's S partials, in slice order.
  if (wg > 0) {
    for (int q = z; q < BN / 4; q += S) {
      // Every load in flight before the sums (S ≤ 8), which run in slice order.
      float4 v[8];
#pragma unroll
      for (int j = 0; j < 8; j++)
        if (j < S) v[j] = ld_cluster(cluster_addr(part + q * 256 + ct, j));
      float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
      for (int j = 0; j < 8; j++) {
        if (j < S) {
          acc.x += v[j].x;
          acc.y += v[j].y;
          acc.z += v[j].z;
          acc.w += v[j].w;
        }
      }
      const float a[4] = {acc.x, acc.y, acc.z, acc.w};
#pragma unroll
      for (int e = 0; e < 4; e++) {
        int row, col;
        acc_pos<BN>(ct, 4 * q + e, row, col);
        row += tile * BM;
        if (row < n_out && col < m) y[(size_t)col * n_out + row] = from_f<T>(a[e]);
      }
    }
  }
  // No CTA leaves while another may still read its shared memory.
  cluster_sync();
}

} // namespace wg

#define WG_GEMM(name, T, BN, STAGES)                                                                              \
  extern "C" __global__ void __launch_bounds__(wg::THREADS, 1)                                                   \
      name(const __grid_constant__ wg::TmaDesc wmap, const __grid_constant__ wg::TmaDesc xmap, T* y, int n_out,  \
           int m, int k_iters) {                                                                                 \
    WG_GEMM_BODY(wg::gemm_body<T, BN, STAGES>(&wmap, &xmap, y, n_out, m, k_iters));                              \
  }

// wgmma exists in sm_90a's machine code only (build.rs builds that for sm_90); the module's PTX,
// which a newer GPU JIT-compiles, holds an empty kernel that cuda/gemm.rs never launches there.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) || !defined(__CUDA_ARCH__)
#define WG_GEMM_BODY(...) __VA_ARGS__
#else
#define WG_GEMM_BODY(...) __trap()
#endif

WG_GEMM(wg_gemm_bf16_n64, __nv_bfloat16, 64, 5)
WG_GEMM(wg_gemm_bf16_n128, __nv_bfloat16, 128, 4)
WG_GEMM(wg_gemm_f16_n64, __half, 64, 5)
WG_GEMM(wg_gemm_f16_n128, __half, 128, 4)

// Lab only: the same GEMM without the cluster's sum (each CTA stores its slice's partial as the
// output: wrong values), to time the stream apart from the reduction.
extern "C" __global__ void __launch_bounds__(wg::THREADS, 1)
    wg_gemm_bf16_n128_nored(const __grid_constant__ wg::TmaDesc wmap, const __grid_constant__ wg::TmaDesc xmap,
                            __nv_bfloat16* y, int n_out, int m, int k_iters) {
  wg::gemm_body<__nv_bfloat16, 128, 4, false>(&wmap, &xmap, y, n_out, m, k_iters);
}
extern "C" __global__ void __launch_bounds__(wg::THREADS, 1)
    wg_gemm_bf16_n64_nored(const __grid_constant__ wg::TmaDesc wmap, const __grid_constant__ wg::TmaDesc xmap,
                           __nv_bfloat16* y, int n_out, int m, int k_iters) {
  wg::gemm_body<__nv_bfloat16, 64, 5, false>(&wmap, &xmap, y, n_out, m, k_iters);
}
// Lab only: each tile's k loop starts at its own offset (ROT).
extern "C" __global__ void __launch_bounds__(wg::THREADS, 1)
    wg_gemm_bf16_n128_rot(const __grid_constant__ wg::TmaDesc wmap, const __grid_constant__ wg::TmaDesc xmap,
                          __nv_bfloat16* y, int n_out, int m, int k_iters) {
  wg::gemm_body<__nv_bfloat16, 128, 4, true, true>(&wmap, &xmap, y, n_out, m, k_iters);
}
extern "C" __global__ void __launch_bounds__(wg::THREADS, 1)
    wg_gemm_bf16_n64_rot(const __grid_constant__ wg::TmaDesc wmap, const __grid_constant__ wg::TmaDesc xmap,
                         __nv_bfloat16* y, int n_out, int m, int k_iters) {
  wg::gemm_body<__nv_bfloat16, 64, 5, true, true>(&wmap, &xmap, y, n_out, m, k_iters);
}
// Lab only: the weight from a blocked, pre-swizzled copy (`wblk`), one bulk copy a stage.
extern "C" __global__ void __launch_bounds__(wg::THREADS, 1)
    wg_gemm_bf16_n128_blk(const __grid_constant__ wg::TmaDesc wmap, const __grid_constant__ wg::TmaDesc xmap,
                          __nv_bfloat16* y, int n_out, int m, int k_iters, const uint8_t* wblk) {
  wg::gemm_body<__nv_bfloat16, 128, 4>(&wmap, &xmap, y, n_out, m, k_iters, wblk);
}
extern "C" __global__ void __launch_bounds__(wg::THREADS, 1)
    wg_gemm_bf16_n64_blk(const __grid_constant__ wg::TmaDesc wmap, const __grid_constant__ wg::TmaDesc xmap,
                         __nv_bfloat16* y, int n_out, int m, int k_iters, const uint8_t* wblk) {
  wg::gemm_body<__nv_bfloat16, 64, 5>(&wmap, &xmap, y, n_out, m, k_iters, wblk);
}
// Lab only: the TMA ring without the math (each stage released once it lands; the output is
// zeros), to time the stream the kernel can reach at a given grid.
extern "C" __global__ void __launch_bounds__(wg::THREADS, 1)
    wg_gemm_bf16_n128_stream(const __grid_constant__ wg::TmaDesc wmap, const __grid_constant__ wg::TmaDesc xmap,
                             __nv_bfloat16* y, int n_out, int m, int k_iters) {
  wg::gemm_body<__nv_bfloat16, 128, 4, false, false, false>(&wmap, &xmap, y, n_out, m, k_iters);
}
extern "C" __global__ void __launch_bounds__(wg::THREADS, 1)
    wg_gemm_bf16_n64_stream(const __grid_constant__ wg::TmaDesc wmap, const __grid_constant__ wg::TmaDesc xmap,
                            __nv_bfloat16* y, int n_out, int m, int k_iters) {
  wg::gemm_body<__nv_bfloat16, 64, 5, false, false, false>(&wmap, &xmap, y, n_out, m, k_iters);
}

// The `l2pre` mode's stand-in for a small kernel between two GEMMs (a norm, rotary, SwiGLU):
// it first asks L2 for the next GEMM's weight bytes (fire and forget: a bulk prefetch does not
// hold the kernel), then spins `ns` nanoseconds, as the small kernel's own work would. Two
// patterns: the first `prefix` bytes of each of `rows` rows of `row_bytes` (every output tile's
// first k steps), or, with prefix = 0, the first `range` bytes of the weight in 4 KiB pieces
// (the first tiles' whole rows).
extern "C" __global__ void spin_prefetch(const char* w, unsigned rows, unsigned row_bytes, unsigned prefix,
                                         unsigned long long range, unsigned long long ns) {
  unsigned long long t0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  const unsigned tid = blockIdx.x * blockDim.x + threadIdx.x, nth = gridDim.x * blockDim.x;
  if (prefix) {
    for (unsigned r = tid; r < rows; r += nth)
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(w + (size_t)r * row_bytes), "r"(prefix) : "memory");
  } else {
    for (unsigned long long off = (unsigned long long)tid * 4096; off < range; off += (unsigned long long)nth * 4096)
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(w + off), "r"(4096u) : "memory");
  }
  unsigned long long t;
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

// The `pdlpair` mode's small kernel: with `trigger` it lets the next launch start at once
// (griddepcontrol.launch_dependents); it waits for its predecessor (a no-op unless launched
// with programmatic serialization), then spins `ns` nanoseconds.
extern "C" __global__ void pdl_tiny(unsigned long long ns, int trigger) {
  if (trigger) pdl_trigger();
  pdl_wait();
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}
