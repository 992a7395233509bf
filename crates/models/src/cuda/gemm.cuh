// Decode-batch GEMM on Hopper tensor cores: y (m × n_out) = x (m × k) · Wᵀ, W row-major
// (n_out × k), for m ≤ 256 rows of bf16/f16 activations (a decode step's tokens), f32
// accumulation, launched from cuda/gemm.rs.
//
// At decode batch sizes a GEMM is bound by its weight stream, not its math: at m = 128 every
// weight byte feeds 128 FLOP, so reaching the HBM rate needs ~60% of the tensor peak, and
// cuBLAS's m = 128 kernels stream the 8B shape's narrow projections at 2.3–2.9 TB/s. This kernel
// is laid out for that case:
// - "swap AB": the weight rows are wgmma's M side (64 a warpgroup) and the tokens its N side
//   (BN = 64, 128 or 256, the tokens padded by TMA's zero fill), so one 128 × BN tile holds
//   every token of 128 output features and each weight byte is loaded exactly once;
// - a producer warp streams 128 × 64 weight tiles and BN × 64 activation tiles with TMA
//   (128-byte swizzle, the layout wgmma reads) through a STAGES-deep ring of shared memory;
//   two consumer warpgroups each run m64nBNk16 on their 64 rows;
// - stream-K: a persistent grid of at most one CTA an SM splits the tiles' k-iterations
//   (tiles × k/64) into equal contiguous ranges, so every SM streams the same bytes whatever
//   the tile count. A tile cut between CTAs is summed by the last of them to finish (a ticket
//   per tile), from f32 partials in `scratch`, always in k order: the result does not depend
//   on which CTA finishes last.

namespace wg {

constexpr int BM = 128;      // weight rows (output features) a tile: two warpgroups of 64
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
template <> struct Wgmma<__nv_bfloat16, 64> {
  static __device__ __forceinline__ void run(float* d, uint64_t a, uint64_t b) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(a), "l"(b));
  }
};
template <> struct Wgmma<__nv_bfloat16, 128> {
  static __device__ __forceinline__ void run(float* d, uint64_t a, uint64_t b) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(a), "l"(b));
  }
};
template <> struct Wgmma<__nv_bfloat16, 256> {
  static __device__ __forceinline__ void run(float* d, uint64_t a, uint64_t b) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, %128, %129, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "l"(a), "l"(b));
  }
};
template <> struct Wgmma<__half, 64> {
  static __device__ __forceinline__ void run(float* d, uint64_t a, uint64_t b) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(a), "l"(b));
  }
};
template <> struct Wgmma<__half, 128> {
  static __device__ __forceinline__ void run(float* d, uint64_t a, uint64_t b) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(a), "l"(b));
  }
};
template <> struct Wgmma<__half, 256> {
  static __device__ __forceinline__ void run(float* d, uint64_t a, uint64_t b) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, %128, %129, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "l"(a), "l"(b));
  }
};

// The first k-iteration of CTA g of G over `total`.
__device__ __forceinline__ int range_begin(int g, int G, int total) { return (int)((long long)g * total / G); }

// The CTA whose range holds k-iteration `it` (every CTA has at least one: G ≤ total).
__device__ __forceinline__ int cta_of(int it, int G, int total) {
  int g = (int)((long long)it * G / total);
  while (g + 1 < G && range_begin(g + 1, G, total) <= it) g++;
  while (range_begin(g, G, total) > it) g--;
  return g;
}

// A consumer thread's accumulator element r (of N/2) in the 64 × N fragment of its warpgroup:
// row 16·warp + lane/4 + 8·((r/2)%2), column 8·(r/4) + 2·(lane%4) + r%2.
template <typename T, int BN>
__device__ __forceinline__ void store_tile(T* __restrict__ y, const float* d, int row0, int n_out, int m, int lane,
                                           int warp) {
  const int row = row0 + 16 * warp + lane / 4;
#pragma unroll
  for (int r = 0; r < BN / 2; r++) {
    const int rr = row + 8 * ((r / 2) % 2);
    const int col = 8 * (r / 4) + 2 * (lane % 4) + (r % 2);
    if (rr < n_out && col < m) y[(size_t)col * n_out + rr] = from_f<T>(d[r]);
  }
}

// grid: G ≤ min(SMs, tiles · k_iters) CTAs of THREADS; dynamic shared memory STAGES · (BM + BN)
// · BK · 2 bytes + 1024 (alignment). `wmap` boxes (BK, BM) of W (n_out × k), `xmap` boxes
// (BK, BN) of x (m × k), both 128-byte swizzled with zero fill. `scratch` holds 2 · G · BM · BN
// floats, `tickets` `tiles` zeroed counters (left zeroed).
template <typename T, int BN, int STAGES>
__device__ __forceinline__ void gemm_body(const TmaDesc* wmap, const TmaDesc* xmap, T* __restrict__ y,
                                          float* __restrict__ scratch, unsigned* __restrict__ tickets, int n_out,
                                          int m, int k_iters, int tiles) {
  constexpr int W_BYTES = BM * BK * 2, X_BYTES = BN * BK * 2, STAGE = W_BYTES + X_BYTES;
  extern __shared__ uint8_t gemm_smem_raw[];
  uint8_t* smem = (uint8_t*)(((uintptr_t)gemm_smem_raw + 1023) & ~(uintptr_t)1023);
  __shared__ uint64_t full[STAGES], empty[STAGES];
  __shared__ int is_last;
  const int total = tiles * k_iters, G = gridDim.x, g = blockIdx.x;
  const int begin = range_begin(g, G, total), end = range_begin(g + 1, G, total);
  const int wg = threadIdx.x / 128, lane = threadIdx.x % 32, warp = (threadIdx.x / 32) % 4;
  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; s++) {
      mbar_init(&full[s], 1);
      mbar_init(&empty[s], 8); // lane 0 of each consumer warp
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  pdl_trigger();
  if (wg == 0) {
    if (threadIdx.x != 0) return;
    // The weights never change in a step: the first stages' weight tiles are asked for before
    // waiting on the kernel before (programmatic launch), the activations after.
    const int pre = min(STAGES, end - begin);
    for (int i = 0; i < pre; i++) {
      const int it = begin + i, tile = it / k_iters;
      mbar_expect_tx(&full[i], STAGE);
      tma_load(smem + i * STAGE, wmap, &full[i], (it - tile * k_iters) * BK, tile * BM);
    }
    pdl_wait();
    for (int i = 0; i < pre; i++) {
      const int it = begin + i, tile = it / k_iters;
      tma_load(smem + i * STAGE + W_BYTES, xmap, &full[i], (it - tile * k_iters) * BK, 0);
    }
    for (int i = pre; begin + i < end; i++) {
      const int s = i % STAGES, it = begin + i, tile = it / k_iters, kk = it - tile * k_iters;
      mbar_wait(&empty[s], ((i / STAGES) - 1) & 1);
      mbar_expect_tx(&full[s], STAGE);
      tma_load(smem + s * STAGE, wmap, &full[s], kk * BK, tile * BM);
      tma_load(smem + s * STAGE + W_BYTES, xmap, &full[s], kk * BK, 0);
    }
    return;
  }
  pdl_wait();
  const int c = wg - 1; // this warpgroup's 64 rows of the tile
  float d[BN / 2];
  int it = begin, i = 0, pending = -1;
  while (it < end) {
    const int tile = it / k_iters, tile_end = (tile + 1) * k_iters;
    const int seg_end = min(end, tile_end);
    const bool whole = it == tile * k_iters && seg_end == tile_end, first_seg = it == begin;
#pragma unroll
    for (int r = 0; r < BN / 2; r++) d[r] = 0.f;
    for (; it < seg_end; it++, i++) {
      const int s = i % STAGES;
      mbar_wait(&full[s], (i / STAGES) & 1);
      const uint8_t* st = smem + s * STAGE;
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < BK / 16; kk++)
        Wgmma<T, BN>::run(d, sw128_desc(st + c * 64 * 128 + kk * 32), sw128_desc(st + W_BYTES + kk * 32));
      wgmma_commit();
      wgmma_wait<1>();
      if (pending >= 0 && lane == 0) mbar_arrive(&empty[pending]);
      pending = s;
    }
    wgmma_wait<0>();
    if (lane == 0) mbar_arrive(&empty[pending]);
    pending = -1;
    const int row0 = tile * BM + c * 64;
    if (whole) {
      store_tile<T, BN>(y, d, row0, n_out, m, lane, warp);
      continue;
    }
    // A cut tile: this CTA's partial goes to its slot (0: the first segment of its range, 1:
    // the last), 16 bytes a thread and coalesced, then the tile's ticket.
    const int ct = threadIdx.x - 128; // 0..255 over both consumer warpgroups
    float4* sp = reinterpret_cast<float4*>(scratch + (size_t)(2 * g + (first_seg ? 0 : 1)) * BM * BN);
#pragma unroll
    for (int r = 0; r < BN / 8; r++)
      __stcg(sp + r * 256 + ct, make_float4(d[4 * r], d[4 * r + 1], d[4 * r + 2], d[4 * r + 3]));
    __threadfence();
    asm volatile("bar.sync 1, 256;" ::: "memory");
    const int first = cta_of(tile * k_iters, G, total), last = cta_of(tile_end - 1, G, total);
    if (ct == 0) {
      const unsigned prev = atomicAdd(&tickets[tile], 1u);
      is_last = prev == (unsigned)(last - first);
      if (is_last) tickets[tile] = 0; // every partial is in: ready for the next launch
    }
    asm volatile("bar.sync 1, 256;" ::: "memory");
    if (!is_last) continue;
    __threadfence();
#pragma unroll
    for (int r = 0; r < BN / 2; r++) d[r] = 0.f;
    for (int cc = first; cc <= last; cc++) {
      const int slot = range_begin(cc, G, total) / k_iters == tile ? 0 : 1;
      const float4* pp = reinterpret_cast<const float4*>(scratch + (size_t)(2 * cc + slot) * BM * BN);
#pragma unroll
      for (int r = 0; r < BN / 8; r++) {
        const float4 v = __ldcg(pp + r * 256 + ct);
        d[4 * r] += v.x;
        d[4 * r + 1] += v.y;
        d[4 * r + 2] += v.z;
        d[4 * r + 3] += v.w;
      }
    }
    store_tile<T, BN>(y, d, row0, n_out, m, lane, warp);
  }
}

} // namespace wg

#define WG_GEMM(name, T, BN, STAGES)                                                                              \
  extern "C" __global__ void __launch_bounds__(wg::THREADS, 1)                                                   \
      name(const __grid_constant__ wg::TmaDesc wmap, const __grid_constant__ wg::TmaDesc xmap, T* y,             \
           float* scratch, unsigned* tickets, int n_out, int m, int k_iters, int tiles) {                        \
    WG_GEMM_BODY(wg::gemm_body<T, BN, STAGES>(&wmap, &xmap, y, scratch, tickets, n_out, m, k_iters, tiles));     \
  }

// wgmma exists in sm_90a's machine code only (build.rs builds that for sm_90); the module's PTX,
// which a newer GPU JIT-compiles, holds an empty kernel that cuda/gemm.rs never launches there.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) || !defined(__CUDA_ARCH__)
#define WG_GEMM_BODY(...) __VA_ARGS__
#else
#define WG_GEMM_BODY(...) __trap()
#endif

WG_GEMM(wg_gemm_bf16_n64, __nv_bfloat16, 64, 8)
WG_GEMM(wg_gemm_bf16_n128, __nv_bfloat16, 128, 6)
WG_GEMM(wg_gemm_bf16_n256, __nv_bfloat16, 256, 4)
WG_GEMM(wg_gemm_f16_n64, __half, 64, 8)
WG_GEMM(wg_gemm_f16_n128, __half, 128, 6)
WG_GEMM(wg_gemm_f16_n256, __half, 256, 4)
