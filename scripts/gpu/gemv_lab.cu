// Decode GEMV experiments around the kernel in kernels.cu (included here, so what is timed is the
// real kernel), run by scripts/gpu/gemv_lab.py on the GPU machine. Built here:
//   source ../shared/tools/cuda-toolchain.sh
//   nvcc -cubin -O3 -std=c++17 -arch=sm_90 -o scripts/gpu/gemv_lab.cubin scripts/gpu/gemv_lab.cu
// Variants that lost (a serial tail for split rows, a whole-row bulk L2 prefetch before the wait)
// were measured with earlier versions of this file: bench/RESULTS.md has their figures.
#include "../../crates/models/src/cuda/kernels.cu"

__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Read ceiling: every thread streams 16-byte chunks (grid-stride), the sum is kept live.
extern "C" __global__ void __launch_bounds__(256) lab_read(const uint4* __restrict__ p, size_t n, float* sink) {
  pdl_trigger();
  pdl_wait();
  uint32_t s = 0;
  for (size_t i = blockIdx.x * 256 + threadIdx.x; i < n; i += (size_t)gridDim.x * 256) {
    const uint4 v = ld_stream(p + i);
    s ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (s == 0x12345678u) sink[0] = 1.f;
}

// Persistent: a grid of a few CTAs an SM; each warp walks rows n, n + total warps, ...
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    lab_persist(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int N, int K) {
  constexpr int UNROLL = 8;
  const int lane = threadIdx.x & 31;
  const int warps = gridDim.x * GEMV_WARPS;
  int n = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
  pdl_trigger();
  const int kc = K / 8;
  const uint4* xr = reinterpret_cast<const uint4*>(x);
  if (n < N)
    for (int u = 0; u < UNROLL; u++)
      if (lane + 32 * u < kc)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(reinterpret_cast<const uint4*>(w) + (size_t)n * kc + lane + 32 * u));
  pdl_wait();
  for (; n < N; n += warps) {
    const uint4* wr = reinterpret_cast<const uint4*>(w) + (size_t)n * kc;
    float acc[1] = {0.f};
    int c = lane;
    for (; c + 32 * (UNROLL - 1) < kc; c += 32 * UNROLL) {
      uint4 wv[UNROLL];
#pragma unroll
      for (int u = 0; u < UNROLL; u++) wv[u] = ld_stream(wr + c + 32 * u);
#pragma unroll
      for (int u = 0; u < UNROLL; u++) dot8<__nv_bfloat16, 1>(wv[u], xr, c + 32 * u, kc, acc, false, nullptr);
    }
    for (; c < kc; c += 32) dot8<__nv_bfloat16, 1>(ld_stream(wr + c), xr, c, kc, acc, false, nullptr);
    const float v = warp_sum(acc[0]);
    if (lane == 0) y[n] = from_f<__nv_bfloat16>(v);
  }
}

// The staged form (one row, bf16, non-gated or gated): the same sums as `gemv` in the same order,
// over `stage` consecutive groups of its features (a group: the GEMV_WARPS / wpr features a CTA
// of `gemv` takes). Before its wait, thread 0 asks the copy engine for the CTA's whole weight
// slice (one bulk copy per row range) into shared memory; after it, the warps read the weights
// from there. Dynamic shared memory: stage · NR · (GEMV_WARPS / wpr) · K · 2 bytes.
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

template <bool GATED>
__device__ void lab_staged(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                           __nv_bfloat16* __restrict__ y, int N, int K, int wpr, int stage) {
  using T = __nv_bfloat16;
  constexpr int NR = GATED ? 2 : 1, UNROLL = 8 / NR;
  extern __shared__ uint4 staged[];
  __shared__ float part[GEMV_WARPS][NR];
  __shared__ __align__(8) unsigned long long bar;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int fpc = GEMV_WARPS / wpr, kc = K / 8, s = warp % wpr;
  const int first = blockIdx.x * stage * fpc;
  const int rows = max(0, min(stage * fpc, N - first));
  pdl_trigger();
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&bar)));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    const uint32_t bytes = (uint32_t)rows * K * sizeof(T);
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(&bar)), "r"(NR * bytes)
                 : "memory");
    for (int r = 0; r < NR; r++)
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                       smem_addr(staged + (size_t)r * stage * fpc * kc)),
                   "l"(w + ((size_t)r * N + first) * K), "r"(bytes), "r"(smem_addr(&bar))
                   : "memory");
  }
  __syncthreads();
  pdl_wait();
  asm volatile(
      "{\n.reg .pred done;\nwait:\nmbarrier.try_wait.parity.shared::cta.b64 done, [%0], 0;\n@!done bra wait;\n}" ::"r"(
          smem_addr(&bar))
      : "memory");
  const int seg = kc / wpr, c0 = s * seg, c1 = s == wpr - 1 ? kc : c0 + seg;
  const uint4* xr = reinterpret_cast<const uint4*>(x);
  for (int j = 0; j < stage; j++) {
    const int local = j * fpc + warp / wpr, n = first + local;
    float acc[NR][1] = {};
    if (n < N)
      for (int c = c0 + lane; c < c1; c += 32 * UNROLL) {
        uint4 wv[NR][UNROLL];
#pragma unroll
        for (int r = 0; r < NR; r++)
#pragma unroll
          for (int u = 0; u < UNROLL; u++)
            if (c + 32 * u < c1) wv[r][u] = staged[((size_t)r * stage * fpc + local) * kc + c + 32 * u];
#pragma unroll
        for (int r = 0; r < NR; r++)
#pragma unroll
          for (int u = 0; u < UNROLL; u++)
            if (c + 32 * u < c1) dot8<T, 1>(wv[r][u], xr, c + 32 * u, kc, acc[r], false, nullptr);
      }
#pragma unroll
    for (int r = 0; r < NR; r++) {
      const float v = warp_sum(acc[r][0]);
      if (lane == 0) part[warp][r] = v;
    }
    __syncthreads();
    if (n < N && s == 0 && lane == 0) {
      float v[NR];
      for (int r = 0; r < NR; r++) {
        v[r] = part[warp][r];
        for (int i = 1; i < wpr; i++) v[r] += part[warp + i][r];
      }
      if (GATED) {
        const float g = to_f(from_f<T>(v[0]));
        const float a = to_f(from_f<T>(g / (1.f + expf(-g))));
        y[n] = from_f<T>(a * to_f(from_f<T>(v[NR - 1])));
      } else {
        y[n] = from_f<T>(v[0]);
      }
    }
    __syncthreads();
  }
}
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    lab_staged_bf16_1(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int N, int K, int wpr,
                      int stage) {
  lab_staged<false>(x, w, y, N, K, wpr, stage);
}
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    lab_silu_staged_bf16_1(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int N, int K, int wpr,
                           int stage) {
  lab_staged<true>(x, w, y, N, K, wpr, stage);
}

// A latency-bound stand-in for attention: waits for its predecessor, then spins `ns` of the
// global timer (CTAs from `active` on return at once, holding the launch's shared memory until
// then, as attention's empty split-K partitions do). While it does, it may ask `bytes` at `p` (the next GEMV's weight) into L2:
//   mode 0: no; 1: bulk prefetches of `chunk` bytes from each warp's lane 0, before the wait;
//   2: the same after the wait; 3: one `prefetch.global.L2` per 128-byte line, after the wait.
extern "C" __global__ void __launch_bounds__(256)
    lab_spin(unsigned long long ns, const char* p, unsigned long long bytes, unsigned int chunk, int mode,
             unsigned int active) {
  extern __shared__ float hold[];  // sized by the launch: shared memory held as attention holds it
  pdl_trigger();
  const unsigned long long warp = (unsigned long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const unsigned long long stride = (unsigned long long)gridDim.x * (blockDim.x / 32) * chunk;
  auto bulk = [&] {
    if (threadIdx.x % 32 != 0) return;
    for (unsigned long long o = warp * chunk; o < bytes; o += stride) {
      const unsigned int len = (unsigned int)min((unsigned long long)chunk, bytes - o);
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p + o), "r"(len) : "memory");
    }
  };
  if (mode == 1) bulk();
  pdl_wait();
  if (blockIdx.x >= active) {  // attention's empty split-K partitions
    if (threadIdx.x == 0) hold[0] = 0.f;
    return;
  }
  const unsigned long long t0 = global_ns();
  if (mode == 2) bulk();
  if (mode == 3)
    for (unsigned long long o = ((unsigned long long)blockIdx.x * blockDim.x + threadIdx.x) * 128; o < bytes;
         o += (unsigned long long)gridDim.x * blockDim.x * 128)
      asm volatile("prefetch.global.L2 [%0];" ::"l"(p + o));
  while (global_ns() - t0 < ns) {
  }
}

// Diagnostic: CTA 0 stamps the global timer at its start and after its wait, then all spin `ns`.
extern "C" __global__ void __launch_bounds__(256) lab_stamp(unsigned long long* buf, int idx, unsigned long long ns) {
  const unsigned long long t0 = global_ns();
  pdl_trigger();
  pdl_wait();
  const unsigned long long t1 = global_ns();
  while (global_ns() - t1 < ns) {
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    buf[3 * idx] = t0;
    buf[3 * idx + 1] = t1;
    buf[3 * idx + 2] = global_ns();
  }
}

// Diagnostic: the streaming or staged GEMV (one row, bf16) with each CTA's start and end on the
// global timer, in `st` (two u64 a CTA).
extern "C" __global__ void __launch_bounds__(GEMV_WARPS * 32)
    lab_gemv_stamp(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, int N, int K, int wpr,
                   int stage, unsigned long long* st) {
  const unsigned long long t0 = global_ns();
  if (stage)
    lab_staged<false>(x, w, y, N, K, wpr, stage);
  else
    gemv<__nv_bfloat16, 1, false, false, false>(x, w, y, N, K, wpr, nullptr, 0.f);
  if (threadIdx.x == 0) {
    st[2 * blockIdx.x] = t0;
    st[2 * blockIdx.x + 1] = global_ns();
  }
}

// ---------------------------------------------------------------------------------------------
// A persistent layer chain (the megakernel question): one CTA an SM runs every phase of `layers`
// decode layers at one row, with a grid barrier between phases. Phases of a layer: a 1-CTA spin
// (the input norm), the q|k|v GEMV, a 32-CTA spin (rotary), a 32-CTA spin (attention), the o
// GEMV, a 1-CTA spin (the second norm), gate|up with SwiGLU, down. `spins` bit 0 runs the spins,
// bit 1 skips the dot products (the weight stream alone).
// One lane of warp MK_CONS (the producer) streams this CTA's rows of every GEMV, in the order the
// phases use them, into a ring of `slots` slots of `per` 4 KB pieces (cp.async.bulk, a full and
// an empty mbarrier a slot), whatever phase the consumers are in: weights depend on nothing, so
// the stream runs on through spins and barriers until the ring is full. Consumer warp w reads
// the slots i ≡ w (mod MK_CONS); a piece's dot with x (staged in shared memory after the
// barrier) goes to `part`, and each row is summed over its pieces in order.
// Weights: `wl` holds 4 pointers a layer (q|k|v (6144, 4096), o (4096, 4096), gate|up
// (2 · 14336, 4096), down (4096, 14336)). Activations: xa (4096) → qkv (6144) → o reads qkv's
// first 4096 → xo (4096) → h (14336) → down → xa. `bar` must be zero at launch.
// Measured in bench/RESULTS.md ("a persistent layer chain in the lab", 2026-11-30 22:40 UTC).
constexpr int MK_CH = 4096;

__device__ __forceinline__ void mk_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\nwait:\nmbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n@!done bra wait;\n}" ::"r"(
          bar),
      "r"(parity)
      : "memory");
}

// One 16-byte shared-memory load as one instruction (a plain dereference fed to `unpack` was
// split into eight 2-byte loads, 4-way bank conflicted), and bf16 → f32 by shifts.
__device__ __forceinline__ uint4 lds128(const uint4* p) {
  uint4 r;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "r"(smem_addr(p)));
  return r;
}
__device__ __forceinline__ void bf16x8(const uint4& r, float* f) {
  const uint32_t u[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    f[2 * i] = __uint_as_float(u[i] << 16);
    f[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
  }
}

struct MkGemv {
  const __nv_bfloat16* w;
  int n, k, gated;
};

__device__ __forceinline__ MkGemv mk_gemv(const __nv_bfloat16* const* wl, int layer, int g) {
  const __nv_bfloat16* w = wl[4 * layer + g];
  switch (g) {
    case 0: return {w, 6144, 4096, 0};
    case 1: return {w, 4096, 4096, 0};
    case 2: return {w, 14336, 4096, 1};
    default: return {w, 4096, 14336, 0};
  }
}

template <int MK_CONS>
__device__ __forceinline__ void mk_grid_sync(unsigned int* bar, unsigned int target) {
  asm volatile("bar.sync 1, %0;" ::"r"(MK_CONS * 32) : "memory");
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(bar, 1u);
    unsigned int v;
    do {
      asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(bar) : "memory");
    } while (v < target);
  }
  asm volatile("bar.sync 1, %0;" ::"r"(MK_CONS * 32) : "memory");
}

// One phase's slots: ranges (gate rows, then up rows when gated) of (r1 - r0) · cpr contiguous 4 KB
// pieces, cut into slots of up to `per` pieces that never cross a range.
struct MkPhase {
  MkGemv p;
  int r0, r1, cpr, nr, np, spr;  // rows, 4 KB pieces a row, ranges, pieces a range, slots a range
  __device__ MkPhase(const __nv_bfloat16* const* wl, int l, int g, int c, int G, int per) : p(mk_gemv(wl, l, g)) {
    r0 = (int)((long long)c * p.n / G);
    r1 = (int)((long long)(c + 1) * p.n / G);
    cpr = p.k * 2 / MK_CH;
    nr = p.gated ? 2 : 1;
    np = (r1 - r0) * cpr;
    spr = (np + per - 1) / per;
  }
  // Slot t's range q and first piece a; it holds min(per, np - a) pieces.
  __device__ void slot(int t, int per, int& q, int& a) const {
    q = t / spr;
    a = (t % spr) * per;
  }
  __device__ const char* src(int q, int a) const {
    return reinterpret_cast<const char*>(p.w + ((size_t)q * p.n + r0) * p.k) + (size_t)a * MK_CH;
  }
};

template <int MK_CONS>
__device__ void lab_mega_t(const __nv_bfloat16* const* wl, int layers, int spins, int slots, int per, __nv_bfloat16* xa,
             __nv_bfloat16* qkv, __nv_bfloat16* xo, __nv_bfloat16* h, unsigned int* bar,
             unsigned long long* dbg) {
  // dbg (optional, zeroed), 8 u64 a CTA: ns the producer waited for free slots, ns warp 0 waited
  // for full slots, ns thread 0 spent in grid barriers, the kernel's ns; then, summed over the
  // layers, slots issued and not consumed and of those landed, at the attention stand-in's start
  // and at its end.
  using T = __nv_bfloat16;
  const unsigned long long t_start = global_ns();
  unsigned long long w_empty = 0, w_full = 0, w_grid = 0;
  extern __shared__ __align__(128) unsigned char mk_smem[];
  const size_t slot_bytes = (size_t)per * MK_CH;
  uint4* ring = reinterpret_cast<uint4*>(mk_smem);                                    // slots · per · 4 KB
  uint4* xs = reinterpret_cast<uint4*>(mk_smem + (size_t)slots * slot_bytes);        // 14336 bf16
  float* part = reinterpret_cast<float*>(mk_smem + (size_t)slots * slot_bytes + 28672);  // 512 pieces
  unsigned long long* full = reinterpret_cast<unsigned long long*>(part + 512);
  unsigned long long* empty = full + slots;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int G = gridDim.x, c = blockIdx.x;
  if (threadIdx.x == 0) {
    for (int s = 0; s < slots; s++) {
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(full + s)));
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(empty + s)));
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __shared__ unsigned int issued;  // slots the producer has issued (read by the probe in `spin`)
  if (threadIdx.x == 0) issued = 0;
  __syncthreads();
  if (warp == MK_CONS) {  // the producer
    if (lane != 0) return;
    unsigned int s = 0, use = 0;  // the next ring slot and its use (no divisions in this loop)
    for (int l = 0; l < layers; l++)
      for (int g = 0; g < 4; g++) {
        const MkPhase ph(wl, l, g, c, G, per);
        for (int q = 0; q < ph.nr; q++)
          for (int a = 0; a < ph.np; a += per) {
            const uint32_t bytes = (uint32_t)min(per, ph.np - a) * MK_CH;
            if (use > 0) {
              if (dbg) {
                const unsigned long long t0 = global_ns();
                mk_wait(smem_addr(empty + s), (use - 1) & 1);
                w_empty += global_ns() - t0;
              } else {
                mk_wait(smem_addr(empty + s), (use - 1) & 1);
              }
            }
            asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(full + s)),
                         "r"(bytes)
                         : "memory");
            asm volatile(
                "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                    smem_addr(ring + (size_t)s * (slot_bytes / 16))),
                "l"(ph.src(q, a)), "r"(bytes), "r"(smem_addr(full + s))
                : "memory");
            if (dbg) *(volatile unsigned int*)&issued = use * slots + s + 1;
            if (++s == (unsigned int)slots) {
              s = 0;
              use++;
            }
          }
      }
    if (dbg) dbg[8 * c] = w_empty;
    return;
  }
  unsigned int i0 = 0, target = 0;  // slots consumed before this phase; barrier count
  // Probe (dbg): at the start and the end of a layer's attention stand-in (its spin and barrier),
  // the slots issued and not yet consumed, and how many of those have landed.
  auto ring_state = [&](int k) {
    if (!dbg || threadIdx.x != 0) return;
    const unsigned int n = *(volatile unsigned int*)&issued;
    unsigned int landed = 0;
    for (unsigned int i = i0; i < n; i++) {
      uint32_t done;
      asm volatile(
          "{\n.reg .pred p;\nmbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}"
          : "=r"(done)
          : "r"(smem_addr(full + i % slots)), "r"((i / slots) & 1)
          : "memory");
      landed += done;
    }
    dbg[8 * c + 4 + 2 * k] += n - i0;
    dbg[8 * c + 5 + 2 * k] += landed;
  };
  auto spin = [&](unsigned long long ns, int active) {
    if (spins & 1) {
      if (ns == 8000) ring_state(0);
      if (c < active) {
        const unsigned long long t0 = global_ns();
        while (global_ns() - t0 < ns) {
        }
      }
      target += G;
      const unsigned long long t0 = dbg ? global_ns() : 0;
      mk_grid_sync<MK_CONS>(bar, target);
      if (dbg) w_grid += global_ns() - t0;
      if (ns == 8000) ring_state(1);
    }
  };
  for (int l = 0; l < layers; l++) {
    for (int g = 0; g < 4; g++) {
      if (g == 0) spin(2000, 1);
      if (g == 1) {
        spin(2000, 32);
        spin(8000, 32);
      }
      if (g == 2) spin(2000, 1);
      const MkPhase ph(wl, l, g, c, G, per);
      const T* x = g == 0 ? xa : g == 1 ? qkv : g == 2 ? xo : h;
      T* y = g == 0 ? qkv : g == 1 ? xo : g == 2 ? h : xa;
      for (int e = threadIdx.x; e < ph.p.k / 8; e += MK_CONS * 32)
        xs[e] = __ldcg(reinterpret_cast<const uint4*>(x) + e);
      asm volatile("bar.sync 1, %0;" ::"r"(MK_CONS * 32) : "memory");
      const int n = ph.nr * ph.spr;
      // Warp w takes the slots i ≡ w (mod MK_CONS) of the whole sequence, so a ring slot (slots is a
      // multiple of MK_CONS) is always read by one warp, its uses in order: a warp that ran a lap
      // ahead of another would otherwise wait on a parity the slot's previous use still holds.
      for (int t = (int)((warp + MK_CONS - i0 % MK_CONS) % MK_CONS); t < n; t += MK_CONS) {
        const unsigned int i = i0 + t, s = i % slots;
        int q, a;
        ph.slot(t, per, q, a);
        const int pieces = min(per, ph.np - a);
        if (dbg && warp == 0) {
          const unsigned long long t0 = global_ns();
          mk_wait(smem_addr(full + s), (i / slots) & 1);
          w_full += global_ns() - t0;
        } else {
          mk_wait(smem_addr(full + s), (i / slots) & 1);
        }
        for (int pc = 0; pc < ((spins & 2) ? 0 : pieces); pc++) {
          const uint4* src = ring + (size_t)s * (slot_bytes / 16) + pc * (MK_CH / 16);
          const uint4* xr = xs + ((a + pc) % ph.cpr) * (MK_CH / 16);
          // Four accumulators: a chain of 16 dependent FMAs a lane instead of 64.
          float a4[4] = {0.f, 0.f, 0.f, 0.f};
          uint4 wv[MK_CH / 16 / 32], xv[MK_CH / 16 / 32];
#pragma unroll
          for (int u = 0; u < MK_CH / 16 / 32; u++) {
            wv[u] = lds128(src + lane + 32 * u);
            xv[u] = lds128(xr + lane + 32 * u);
          }
#pragma unroll
          for (int u = 0; u < MK_CH / 16 / 32; u++) {
            float wf[8], xf[8];
            bf16x8(wv[u], wf);
            bf16x8(xv[u], xf);
#pragma unroll
            for (int e = 0; e < 8; e++) a4[e & 3] = fmaf(wf[e], xf[e], a4[e & 3]);
          }
          const float acc = warp_sum((a4[0] + a4[1]) + (a4[2] + a4[3]));
          if (lane == 0) part[q * ph.np + a + pc] = acc;
        }
        __syncwarp();
        if (lane == 0) asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(empty + s)) : "memory");
      }
      i0 += n;
      asm volatile("bar.sync 1, %0;" ::"r"(MK_CONS * 32) : "memory");
      for (int u = threadIdx.x; u < ph.r1 - ph.r0; u += MK_CONS * 32) {
        float v[2] = {0.f, 0.f};
        for (int q = 0; q < ph.nr; q++)
          for (int k = 0; k < ph.cpr; k++) v[q] += part[q * ph.np + u * ph.cpr + k];
        if (ph.p.gated) {
          const float gt = to_f(from_f<T>(v[0]));
          const float av = to_f(from_f<T>(gt / (1.f + expf(-gt))));
          y[ph.r0 + u] = from_f<T>(av * to_f(from_f<T>(v[1])));
        } else {
          y[ph.r0 + u] = from_f<T>(v[0]);
        }
      }
      target += G;
      const unsigned long long t0 = dbg ? global_ns() : 0;
      mk_grid_sync<MK_CONS>(bar, target);
      if (dbg) w_grid += global_ns() - t0;
    }
  }
  if (dbg && threadIdx.x == 0) {
    dbg[8 * c + 1] = w_full;
    dbg[8 * c + 2] = w_grid;
    dbg[8 * c + 3] = global_ns() - t_start;
  }
}

extern "C" __global__ void __launch_bounds__(9 * 32)
    lab_mega(const __nv_bfloat16* const* wl, int layers, int spins, int slots, int per, __nv_bfloat16* xa,
             __nv_bfloat16* qkv, __nv_bfloat16* xo, __nv_bfloat16* h, unsigned int* bar, unsigned long long* dbg) {
  lab_mega_t<8>(wl, layers, spins, slots, per, xa, qkv, xo, h, bar, dbg);
}
extern "C" __global__ void __launch_bounds__(17 * 32)
    lab_mega16(const __nv_bfloat16* const* wl, int layers, int spins, int slots, int per, __nv_bfloat16* xa,
               __nv_bfloat16* qkv, __nv_bfloat16* xo, __nv_bfloat16* h, unsigned int* bar, unsigned long long* dbg) {
  lab_mega_t<16>(wl, layers, spins, slots, per, xa, qkv, xo, h, bar, dbg);
}
