"""Times the Llama-3-8B shape's GEMMs (bf16, f32 accumulation, y = x·Wᵀ with W row-major) at
decode and prefill batch sizes, three ways:
- `cublas`: cublasGemmStridedBatchedEx with CUBLAS_GEMM_DEFAULT_TENSOR_OP, the call candle's
  matmul makes (batch 1);
- `lt-h0`: cuBLASLt's first heuristic choice (what an untuned cuBLASLt call runs);
- `lt-best`: the fastest of cuBLASLt's heuristic candidates (up to 64), each timed here.
Each launch reads a different copy of the weight from a ring larger than L2, so the weights
stream from HBM as in a decode step. Prints µs a launch (median of rounds), the weight stream's
TB/s and TFLOP/s.

There: python3 scripts/gpu/gemm_lab.py [M,M,...]
Modes: `search` (every cuBLASLt configuration), `splitk` (split-K through strided-batched calls),
`wgmma CUBIN [M,M,...]` (our wgmma GEMM of scripts/gpu/gemm_lab.cu, built here into CUBIN, against
cuBLAS; SPLITS=1,4 picks the cluster sizes, ONLY=o,qkv the shapes, NORED=1 adds the kernel without
its cluster sum, ROT=1 the form whose tiles start their k loop at different offsets, BLOCKED=1
the form that reads a blocked, pre-swizzled copy of the weight with one bulk copy a stage,
STREAM=1 the ring alone, without the math), `l2pre CUBIN [M,...]` (a small kernel that asks L2
for the next GEMM's first weight bytes before its own work, then cuBLAS's GEMM), `pdlpair CUBIN
[M,...]` (a small kernel between GEMMs, launched plainly or programmatically).
Torch only allocates and times (events); the GEMMs go through cuBLAS / cuBLASLt via ctypes.
"""
import ctypes as C
import os
import statistics
import sys

import torch

torch.cuda.init()
_libdir = None
for line in open("/proc/self/maps"):
    if "libcublasLt.so" in line:
        _libdir = line.split()[-1]
        break
lt = C.CDLL(_libdir or "libcublasLt.so.13")
blas = C.CDLL((_libdir or "").replace("libcublasLt", "libcublas") or "libcublas.so.13")

CUDA_R_16BF, CUDA_R_32F = 14, 0
CUBLAS_COMPUTE_32F = 68
OP_N, OP_T = 0, 1
DESC_TRANSA, DESC_TRANSB = 3, 4
PREF_MAX_WORKSPACE = 1
WORKSPACE = 32 << 20


class Algo(C.Structure):
    _fields_ = [("data", C.c_uint64 * 8)]


class Heur(C.Structure):
    _fields_ = [("algo", Algo), ("workspaceSize", C.c_size_t), ("state", C.c_int), ("wavesCount", C.c_float), ("reserved", C.c_int * 4)]


def ok(r, what):
    if r != 0:
        raise RuntimeError(f"{what}: status {r}")


lt_h = C.c_void_p()
ok(lt.cublasLtCreate(C.byref(lt_h)), "cublasLtCreate")
blas_h = C.c_void_p()
ok(blas.cublasCreate_v2(C.byref(blas_h)), "cublasCreate")
stream = torch.cuda.current_stream().cuda_stream
ok(blas.cublasSetStream_v2(blas_h, C.c_void_p(stream)), "cublasSetStream")
workspace = torch.empty(WORKSPACE, dtype=torch.uint8, device="cuda")
ok(blas.cublasSetWorkspace_v2(blas_h, C.c_void_p(workspace.data_ptr()), C.c_size_t(WORKSPACE)), "cublasSetWorkspace")
one, zero = C.c_float(1.0), C.c_float(0.0)


def layout(rows, cols, ld):
    h = C.c_void_p()
    ok(lt.cublasLtMatrixLayoutCreate(C.byref(h), CUDA_R_16BF, C.c_uint64(rows), C.c_uint64(cols), C.c_int64(ld)), "layout")
    return h


class LtGemm:
    """C (col-major n×m) = Wᵀ(col-major k×n, op T) · X (col-major k×m): row-major y = x·Wᵀ."""

    def __init__(self, m, n, k):
        self.desc = C.c_void_p()
        ok(lt.cublasLtMatmulDescCreate(C.byref(self.desc), CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc")
        for attr, v in ((DESC_TRANSA, OP_T), (DESC_TRANSB, OP_N)):
            val = C.c_int(v)
            ok(lt.cublasLtMatmulDescSetAttribute(self.desc, attr, C.byref(val), C.sizeof(val)), "desc attr")
        self.a, self.b, self.c = layout(k, n, k), layout(k, m, k), layout(n, m, n)
        pref = C.c_void_p()
        ok(lt.cublasLtMatmulPreferenceCreate(C.byref(pref)), "pref")
        ws = C.c_uint64(WORKSPACE)
        ok(lt.cublasLtMatmulPreferenceSetAttribute(pref, PREF_MAX_WORKSPACE, C.byref(ws), C.sizeof(ws)), "pref attr")
        res = (Heur * 64)()
        cnt = C.c_int()
        ok(lt.cublasLtMatmulAlgoGetHeuristic(lt_h, self.desc, self.a, self.b, self.c, self.c, pref, 64, res, C.byref(cnt)), "heuristic")
        self.algos = [res[i] for i in range(cnt.value) if res[i].state == 0]

    def run(self, i, w, x, y):
        h = self.algos[i]
        return lt.cublasLtMatmul(lt_h, self.desc, C.byref(one), C.c_void_p(w), self.a, C.c_void_p(x), self.b, C.byref(zero),
                                 C.c_void_p(y), self.c, C.c_void_p(y), self.c, C.byref(h.algo), C.c_void_p(workspace.data_ptr()),
                                 C.c_size_t(WORKSPACE), C.c_void_p(stream))


def cublas_run(m, n, k, w, x, y):
    # cublasGemmStridedBatchedEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, ...)
    return blas.cublasGemmStridedBatchedEx(
        blas_h, OP_T, OP_N, n, m, k, C.byref(one), C.c_void_p(w), CUDA_R_16BF, k, C.c_longlong(n * k),
        C.c_void_p(x), CUDA_R_16BF, k, C.c_longlong(m * k), C.byref(zero), C.c_void_p(y), CUDA_R_16BF, n,
        C.c_longlong(m * n), 1, CUBLAS_COMPUTE_32F, 99)  # 99: CUBLAS_GEMM_DEFAULT_TENSOR_OP


def time_us(fn, ring, reps=3, per=20):
    for i in range(4):
        ok(fn(ring[i % len(ring)]), "warm-up")
    out = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for i in range(per):
            fn(ring[i % len(ring)])
        e.record()
        e.synchronize()
        out.append(s.elapsed_time(e) * 1000 / per)
    return statistics.median(out)


def time_graph(fn, ring, reps=5, per=20):
    """time_us with the `per` launches captured into one CUDA graph and replayed: the host's
    launch cost (ctypes, a few µs a call) stays out of the figure, as in prom's decode graphs."""
    global stream
    g = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    for i in range(4):
        ok(fn(ring[i % len(ring)]), "warm-up")
    torch.cuda.synchronize()
    with torch.cuda.graph(g, stream=side):
        stream = side.cuda_stream
        ok(blas.cublasSetStream_v2(blas_h, C.c_void_p(stream)), "cublasSetStream")
        for i in range(per):
            ok(fn(ring[i % len(ring)]), "capture")
    stream = torch.cuda.current_stream().cuda_stream
    ok(blas.cublasSetStream_v2(blas_h, C.c_void_p(stream)), "cublasSetStream")
    g.replay()
    out = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        g.replay()
        e.record()
        e.synchronize()
        out.append(s.elapsed_time(e) * 1000 / per)
    return statistics.median(out)


def lt_attr(algo, attr, value):
    v = C.c_uint32(value)
    return lt.cublasLtMatmulAlgoConfigSetAttribute(C.byref(algo), attr, C.byref(v), 4)


def cap(algo, attr, n=1):
    buf = (C.c_uint32 * max(n, 1))()
    w = C.c_size_t()
    r = lt.cublasLtMatmulAlgoCapGetAttribute(C.byref(algo), attr, buf, 4 * n, C.byref(w))
    return list(buf[: w.value // 4]) if r == 0 else []


def search_configs(g, m, n, k):
    """Every algo id cuBLASLt has for bf16 in / f32 compute, each of its tiles, with split-K 1–8
    where it has split-K: the configs cublasLtMatmulAlgoCheck accepts within the workspace."""
    ids = (C.c_int * 512)()
    cnt = C.c_int()
    ok(lt.cublasLtMatmulAlgoGetIds(lt_h, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF, CUDA_R_16BF, CUDA_R_16BF, 512, ids, C.byref(cnt)), "ids")
    out = []
    for algo_id in ids[: cnt.value]:
        base = Algo()
        if lt.cublasLtMatmulAlgoInit(lt_h, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF, CUDA_R_16BF, CUDA_R_16BF, algo_id, C.byref(base)) != 0:
            continue
        w = C.c_size_t()
        lt.cublasLtMatmulAlgoCapGetAttribute(C.byref(base), 6, None, 0, C.byref(w))
        tiles = cap(base, 6, w.value // 4) or [0]
        lt.cublasLtMatmulAlgoCapGetAttribute(C.byref(base), 13, None, 0, C.byref(w))
        stages = cap(base, 13, w.value // 4) or [0]
        splitk = cap(base, 0)
        schemes = cap(base, 1)
        splits = [1, 2, 3, 4, 6, 8] if splitk and splitk[0] else [1]
        for tile in tiles:
            for stage in stages[:1] + stages[-1:] if len(stages) > 1 else stages:
                for sk in splits:
                    for scheme in ([0] if sk == 1 else [s for s in (1, 2, 4) if schemes and schemes[0] & s]):
                        a = Algo()
                        C.memmove(C.byref(a), C.byref(base), C.sizeof(a))
                        if lt_attr(a, 1, tile) or lt_attr(a, 6, stage) or lt_attr(a, 2, sk) or lt_attr(a, 3, scheme):
                            continue
                        h = Heur()
                        if lt.cublasLtMatmulAlgoCheck(lt_h, g.desc, g.a, g.b, g.c, g.c, C.byref(a), C.byref(h)) != 0:
                            continue
                        if h.workspaceSize > WORKSPACE:
                            continue
                        h.algo = a
                        out.append(((algo_id, tile, stage, sk, scheme), h))
    return out


def operands(m, n, k):
    """Copies of an (n, k) weight that together outgrow L2 (each launch streams its weight from
    HBM), their addresses, and an (m, k) input and (m, n) output, all bf16."""
    copies = max(2, -(-(1 << 30) // (n * k * 2)))
    ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    return ws, [w.data_ptr() for w in ws], x, torch.empty(m, n, device="cuda", dtype=torch.bfloat16)


SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate|up": (28672, 4096), "down": (4096, 14336), "head": (128256, 4096)}


class Attr(C.Structure):
    """CUlaunchAttribute: an id and its value (the cluster dims, or the programmatic flag)."""
    _fields_ = [("id", C.c_int), ("pad", C.c_char * 4), ("value", C.c_uint * 3), ("rest", C.c_char * 52)]


class Cfg(C.Structure):
    """CUlaunchConfig for cuLaunchKernelEx."""
    _fields_ = [("gx", C.c_uint), ("gy", C.c_uint), ("gz", C.c_uint), ("bx", C.c_uint), ("by", C.c_uint),
                ("bz", C.c_uint), ("smem", C.c_uint), ("stream", C.c_void_p), ("attrs", C.POINTER(Attr)),
                ("nattrs", C.c_uint)]


def lab_module(path):
    """The lab cubin (scripts/gpu/gemm_lab.cu built at `path`) → (libcuda, a kernel getter by name)."""
    cu = C.CDLL("libcuda.so.1")
    mod = C.c_void_p()
    ok(cu.cuModuleLoadData(C.byref(mod), C.c_char_p(open(path, "rb").read())), "module")

    def get(name):
        f = C.c_void_p()
        ok(cu.cuModuleGetFunction(C.byref(f), mod, name.encode()), "function")
        return f

    return cu, get


def decode_shapes(M):
    """(name, n, k, ring, x, y) of each layer GEMM shape (ONLY=... picks some) at M rows, its
    operands freed after the caller's turn."""
    for name, (n, k) in SHAPES.items():
        if name == "head" or (os.environ.get("ONLY") and name not in os.environ["ONLY"].split(",")):
            continue
        ws, ring, x, y = operands(M, n, k)
        yield name, n, k, ring, x, y
        del ws
        torch.cuda.empty_cache()
if len(sys.argv) > 1 and sys.argv[1] == "search":
    # The exhaustive search at decode sizes: is there a config far better than cuBLAS's?
    for M in [int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "128").split(",")]:
        for name, (n, k) in SHAPES.items():
            if name == "head":
                continue
            ws, ring, x, y = operands(M, n, k)
            ref = torch.empty_like(y)
            g = LtGemm(M, n, k)
            t_cublas = time_us(lambda w: cublas_run(M, n, k, w, x.data_ptr(), y.data_ptr()), ring)
            cublas_run(M, n, k, ring[0], x.data_ptr(), ref.data_ptr())
            cfgs = search_configs(g, M, n, k)
            g.algos = [h for _, h in cfgs]
            times = []
            for i in range(len(cfgs)):
                try:
                    times.append(time_us(lambda w: g.run(i, w, x.data_ptr(), y.data_ptr()), ring, reps=1, per=8))
                except RuntimeError:
                    times.append(float("inf"))
            order = sorted(range(len(times)), key=times.__getitem__)[:5]
            print(f"{name} M={M}: cublas {t_cublas:.1f} µs, {len(cfgs)} configs; floor {n * k * 2 / 4.2e6:.1f} µs at 4.2 TB/s")
            for i in order:
                t = time_us(lambda w: g.run(i, w, x.data_ptr(), y.data_ptr()), ring)
                ok(g.run(i, ring[0], x.data_ptr(), y.data_ptr()), "run")
                torch.cuda.synchronize()
                d = (y.float() - ref.float()).abs().max().item()
                print(f"   id,tile,stages,splitK,scheme {cfgs[i][0]}: {t:.1f} µs ({t / t_cublas:.3f}), maxdiff {d:.3g}")
            del ws
            torch.cuda.empty_cache()
    sys.exit(0)
if len(sys.argv) > 1 and sys.argv[1] == "splitk":
    # Split-K through the library: the K range cut into s slices run as one strided-batched call
    # with f32 partial outputs (s times the CTAs of the plain call), then summed to bf16. Is that
    # faster than cuBLAS's own choice for the narrow decode shapes?
    for M in [int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "128").split(",")]:
        total = {}
        for name, (n, k) in SHAPES.items():
            ws, ring, x, ref = operands(M, n, k)
            t1 = time_us(lambda w: cublas_run(M, n, k, w, x.data_ptr(), ref.data_ptr()), ring)
            cublas_run(M, n, k, ring[0], x.data_ptr(), ref.data_ptr())
            line = f"{name:8} M={M}: cublas {t1:6.1f} µs (floor {n * k * 2 / 4.2e6:5.1f})"
            best = t1
            for sk in (2, 3, 4, 6, 8):
                if k % (sk * 64):
                    continue
                ks = k // sk
                yf = torch.empty(sk, M, n, device="cuda", dtype=torch.float32)

                def run(w):
                    return blas.cublasGemmStridedBatchedEx(
                        blas_h, OP_T, OP_N, n, M, ks, C.byref(one), C.c_void_p(w), CUDA_R_16BF, k, C.c_longlong(ks),
                        C.c_void_p(x.data_ptr()), CUDA_R_16BF, k, C.c_longlong(ks), C.byref(zero), C.c_void_p(yf.data_ptr()),
                        CUDA_R_32F, n, C.c_longlong(M * n), sk, CUBLAS_COMPUTE_32F, 99)

                tg = time_us(run, ring)
                red = torch.empty(M, n, device="cuda", dtype=torch.float32)

                def reduce(_w):
                    torch.sum(yf, 0, out=red)
                    return 0

                tr = time_us(reduce, ring)
                ok(run(ring[0]), "split-K")
                torch.cuda.synchronize()
                d = (yf.sum(0).bfloat16().float() - ref.float()).abs().max().item()
                line += f" | s{sk} {tg:5.1f} + sum {tr:4.1f}"
                best = min(best, tg)
                del yf
            total[name] = (t1, best)
            print(line + f"  maxdiff {d:.3g}")
            del ws
            torch.cuda.empty_cache()
        a = sum(t * (32 if nm != "head" else 1) for nm, (t, _) in total.items())
        b = sum(t * (32 if nm != "head" else 1) for nm, (_, t) in total.items())
        print(f"M={M}: a step's GEMMs cublas {a / 1000:.2f} ms, best split (GEMM only) {b / 1000:.2f} ms")
    sys.exit(0)
if len(sys.argv) > 1 and sys.argv[1] == "wgmma":
    # The wgmma decode GEMM of crates/models/src/cuda/gemm.cuh (built here into a cubin from
    # scripts/gpu/gemm_lab.cu) against cuBLAS on the decode shapes: µs a launch over the ring of
    # weight copies, plain launches and with programmatic launch (as prom launches), for split-K
    # cluster sizes S (the first: the one cuda/gemm.rs picks), and the largest error of each
    # against an f32 reference, relative to the reference's largest value.
    cu, get = lab_module(sys.argv[2])
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    BM, STAGES = 256, {64: 5, 128: 4}

    keep = []

    def tmap(ptr, rows, k, box_rows):
        raw = C.create_string_buffer(256)
        addr = (C.addressof(raw) + 127) // 128 * 128
        keep.append(raw)
        dims = (C.c_uint64 * 2)(k, rows)
        strides = (C.c_uint64 * 1)(k * 2)
        box = (C.c_uint32 * 2)(64, box_rows)
        es = (C.c_uint32 * 2)(1, 1)
        # bf16 (9), no interleave, 128-byte swizzle (3), L2 promotion 256 B (3), zero fill
        ok(cu.cuTensorMapEncodeTiled(C.c_void_p(addr), 9, 2, C.c_void_p(ptr), dims, strides, box, es, 0, 3, 3, 0), "tensor map")
        return C.c_void_p(addr)

    def kernel(bn, form=""):
        """wg_gemm_bf16_n{bn}{form} (form: "", "_rot", "_blk", "_stream", "_nored"), its shared
        memory allowed."""
        f = get(f"wg_gemm_bf16_n{bn}{form}")
        smem = STAGES[bn] * (BM + bn) * 64 * 2 + 1024
        ok(cu.cuFuncSetAttribute(f, 8, smem), "smem attribute")
        return f, smem

    Ms = [int(v) for v in (sys.argv[3] if len(sys.argv) > 3 else "32,64,128").split(",")]
    blocked_for = {}
    tot = {}
    for M in Ms:
        for name, (n, k) in SHAPES.items():
            if os.environ.get("ONLY") and name not in os.environ["ONLY"].split(","):
                continue
            ws, ring, x, y = operands(M, n, k)
            ref = (x.float() @ ws[0].float().T)
            t_cublas = time_us(lambda w: cublas_run(M, n, k, w, x.data_ptr(), y.data_ptr()), ring)
            ok(cublas_run(M, n, k, ring[0], x.data_ptr(), y.data_ptr()), "cublas")
            torch.cuda.synchronize()
            e_cublas = ((y.float() - ref).abs().max() / ref.abs().max()).item()
            line = f"{name:8} M={M:3}: cublas {t_cublas:6.1f} µs (err {e_cublas:.2e}) floor {n * k * 2 / 4.2e6:5.1f}"
            bn = 64 if M <= 64 else 128
            f, smem = kernel(bn)
            maps = {w: tmap(w, n, k, BM) for w in ring}
            xm = tmap(x.data_ptr(), M, k, bn)
            tiles = -(-n // BM)
            kit = -(-k // 64)
            auto = max(1, min(8, sms // tiles, kit // 4))
            splits = [auto] + [s for s in (1, 2, 4, 6, 8) if s * tiles <= 2 * sms and s != auto and kit // s >= 4 and name != "head"]
            if os.environ.get("SPLITS"):
                splits = [int(v) for v in os.environ["SPLITS"].split(",")]
            for S in dict.fromkeys(splits):
                a_y = C.c_uint64(y.data_ptr())
                a_n, a_m, a_k = C.c_int(n), C.c_int(M), C.c_int(kit)

                def launch(w, pdl, func=None, blocked=None):
                    # func: another form of the kernel; blocked: its blocked weight copies
                    ptrs = [maps[w], xm, C.addressof(a_y), C.addressof(a_n), C.addressof(a_m), C.addressof(a_k)]
                    if blocked:
                        a_b = C.c_uint64(blocked[w])
                        ptrs.append(C.addressof(a_b))
                    args = (C.c_void_p * len(ptrs))(*ptrs)
                    attrs = (Attr * 2)()
                    attrs[0].id = 4  # cluster dimension
                    attrs[0].value[0], attrs[0].value[1], attrs[0].value[2] = S, 1, 1
                    attrs[1].id = 6  # programmatic stream serialization
                    attrs[1].value[0] = 1
                    cfg = Cfg(S, tiles, 1, 384, 1, 1, smem, C.c_void_p(stream), attrs, 2 if pdl else 1)
                    return cu.cuLaunchKernelEx(C.byref(cfg), func or f, args, None)

                def form(suffix, blocked=None, check=True):
                    """The kernel's `suffix` form: µs a launch, and its error when `check`."""
                    g, _ = kernel(bn, suffix)
                    err = ""
                    if check:
                        y.zero_()
                        ok(launch(ring[0], False, g, blocked), "launch")
                        torch.cuda.synchronize()
                        err = f", err {((y.float() - ref).abs().max() / ref.abs().max()).item():.1e}"
                    return f"{time_us(lambda w: launch(w, False, g, blocked), ring):5.1f}{err}"

                y.zero_()
                r = launch(ring[0], False)
                if r != 0:
                    line += f" | S{S}: launch error {r}"
                    continue
                torch.cuda.synchronize()
                err = ((y.float() - ref).abs().max() / ref.abs().max()).item()
                y2 = y.clone()
                ok(launch(ring[0], True), "launch")
                torch.cuda.synchronize()
                same = torch.equal(y, y2)
                t0 = time_us(lambda w: launch(w, False), ring)
                t1 = time_us(lambda w: launch(w, True), ring)
                line += f" | S{S} {t0:6.1f} / pdl {t1:6.1f} ({t0 / t_cublas:.3f}, err {err:.2e}{'' if same else ', NOT DETERMINISTIC'})"
                if os.environ.get("ROT"):
                    line += f" [rot {form('_rot')}]"
                if os.environ.get("BLOCKED"):
                    # The same kernel reading a blocked, pre-swizzled copy of each weight.
                    if name not in blocked_for:
                        r = torch.arange(256, device="cuda")[:, None]
                        sw = torch.arange(8, device="cuda")[None, :] ^ (r & 7)
                        blocked_for[name] = [w.view(n // 256, 256, k // 64, 8, 8).permute(0, 2, 1, 3, 4)[:, :, r, sw].contiguous() for w in ws]
                    blk = {w: b.data_ptr() for w, b in zip(ring, blocked_for[name])}
                    line += f" [blocked {form('_blk', blk)}]"
                if os.environ.get("STREAM"):
                    line += f" [ring alone {form('_stream', check=False)}]"
                if S > 1 and os.environ.get("NORED"):
                    line += f" [no sum {form('_nored', check=False)}]"
                if S == auto:
                    tot.setdefault(M, {}).setdefault("wgmma", 0)
                    tot[M]["wgmma"] += t0 * (32 if name != "head" else 1)
                    tot[M].setdefault("wgmma-pdl", 0)
                    tot[M]["wgmma-pdl"] += t1 * (32 if name != "head" else 1)
            tot.setdefault(M, {}).setdefault("cublas", 0)
            tot[M]["cublas"] += t_cublas * (32 if name != "head" else 1)
            print(line, flush=True)
            del ws, maps
            blocked_for.clear()
            torch.cuda.empty_cache()
    for M, d in tot.items():
        print(f"M={M}: a step's GEMMs (32 layers + head) " + ", ".join(f"{key} {v / 1000:.2f} ms" for key, v in d.items()))
    sys.exit(0)
if len(sys.argv) > 1 and sys.argv[1] == "l2pre":
    # Can the small kernel before a GEMM (a norm, rotary, SwiGLU: a few µs that leave HBM idle)
    # hide part of the GEMM's weight stream by asking L2 for it first? Each pair is
    # spin_prefetch (scripts/gpu/gemm_lab.cu: prefetch, then spin SPIN_NS) followed by cuBLAS's
    # GEMM on the same weight copy; µs a pair, against the pair with nothing prefetched. Patterns:
    # p<B>: the first B bytes of every weight row; r<MB>: the first MB of the weight, whole rows.
    cu, get = lab_module(sys.argv[2])
    f = get("spin_prefetch")
    spin = int(os.environ.get("SPIN_NS", "5000"))
    for M in [int(v) for v in (sys.argv[3] if len(sys.argv) > 3 else "128").split(",")]:
        for name, n, k, ring, x, y in decode_shapes(M):

            def pair(w, prefix, rng, ns=spin):
                a = [C.c_uint64(w), C.c_uint(n), C.c_uint(k * 2), C.c_uint(prefix), C.c_uint64(rng), C.c_uint64(ns)]
                args = (C.c_void_p * 6)(*[C.addressof(v) for v in a])
                r = cu.cuLaunchKernel(f, 128, 1, 1, 128, 1, 1, 0, C.c_void_p(stream), args, None)
                return r or cublas_run(M, n, k, w, x.data_ptr(), y.data_ptr())

            t_gemm = time_graph(lambda w: cublas_run(M, n, k, w, x.data_ptr(), y.data_ptr()), ring)
            t_spin = time_graph(lambda w: pair(w, 0, 0), ring)
            line = f"{name:8} M={M}: gemm {t_gemm:5.1f} | spin {spin / 1000:.1f} + gemm {t_spin:5.1f}"
            for p in (256, 512, 1024, 2048, 4096):
                if p <= k * 2:
                    line += f" | p{p} ({n * p / 1e6:4.1f} MB) {time_graph(lambda w: pair(w, p, 0), ring):5.1f}"
            for mb in (8, 16, 24):
                line += f" | r{mb} {time_graph(lambda w: pair(w, 0, mb << 20), ring):5.1f}"
            print(line, flush=True)
    sys.exit(0)
if len(sys.argv) > 1 and sys.argv[1] == "pdlpair":
    # What a small kernel between two cuBLAS GEMMs costs beyond its own work, and whether
    # programmatic launch wins it back: µs a (small kernel + GEMM) pair over the weight ring, for
    # the small kernel (pdl_tiny, 128 CTAs, spinning SPIN_NS) launched plainly, with programmatic
    # serialization, and with that plus an early trigger; against the GEMM alone.
    cu, get = lab_module(sys.argv[2])
    f = get("pdl_tiny")

    def tiny(ns, pdl, trigger):
        a = [C.c_uint64(ns), C.c_int(trigger)]
        args = (C.c_void_p * 2)(*[C.addressof(v) for v in a])
        attrs = (Attr * 1)()
        attrs[0].id = 6
        attrs[0].value[0] = 1
        cfg = Cfg(128, 1, 1, 128, 1, 1, 0, C.c_void_p(stream), attrs, 1 if pdl else 0)
        return cu.cuLaunchKernelEx(C.byref(cfg), f, args, None)

    for M in [int(v) for v in (sys.argv[3] if len(sys.argv) > 3 else "128").split(",")]:
        for name, n, k, ring, x, y in decode_shapes(M):
            g = lambda w: cublas_run(M, n, k, w, x.data_ptr(), y.data_ptr())
            line = f"{name:8} M={M}: gemm {time_us(g, ring):5.1f}, graphed {time_graph(g, ring):5.1f}"
            for ns in [int(v) for v in os.environ.get("SPIN_NS", "0,3000").split(",")]:
                line += f" | spin {ns / 1000:.1f}:"
                for tag, pdl, trig in (("plain", 0, 0), ("pdl", 1, 0), ("pdl+trigger", 1, 1)):
                    line += f" {tag} {time_graph(lambda w: tiny(ns, pdl, trig) or g(w), ring):5.1f}"
                line += f" (alone {time_graph(lambda w: tiny(ns, 0, 0), ring):4.1f})"
            print(line, flush=True)
    sys.exit(0)
if len(sys.argv) > 1 and sys.argv[1] == "mlp":
    # A decode layer's MLP half as prom's graph runs it, captured into a CUDA graph: add_rms_norm
    # (prom's kernel, from kernels.cu in CUBIN), gate|up GEMM, silu_mul (prom's kernel), down GEMM,
    # each round on another weight copy. µs a round with every kernel, and without the norm or
    # the silu_mul (their outputs then stale): what each small kernel costs inside the graph.
    # SILU_CTAS=132,264,... times silu_mul at other grid sizes (a grid-stride loop: any grid);
    # NORM_FN / SILU_FN name other kernels of CUBIN with the same arguments (a variant to try).
    cu, get = lab_module(sys.argv[2])
    f_norm, f_silu = get(os.environ.get("NORM_FN", "add_rms_norm_bf16")), get(os.environ.get("SILU_FN", "silu_mul_bf16"))
    D, FF = 4096, 14336
    bf = dict(device="cuda", dtype=torch.bfloat16)

    def launch(f, grid, block, vals):
        keep = [v for v in vals]
        args = (C.c_void_p * len(keep))(*[C.addressof(v) for v in keep])
        return cu.cuLaunchKernel(f, grid, 1, 1, block, 1, 1, 0, C.c_void_p(stream), args, None)

    for M in [int(v) for v in (sys.argv[3] if len(sys.argv) > 3 else "128").split(",")]:
        wgu = [torch.randn(2 * FF, D, **bf) for _ in range(3)]
        wd = [torch.randn(D, FF, **bf) for _ in range(3)]
        dout, h, s2, normed = (torch.randn(M, D, **bf) for _ in range(4))
        wn = torch.randn(D, **bf)
        gu, act = torch.randn(M, 2 * FF, **bf), torch.randn(M, FF, **bf)
        ring = list(range(3))

        def norm():
            return launch(f_norm, M, 256, [C.c_uint64(dout.data_ptr()), C.c_uint64(h.data_ptr()), C.c_uint64(wn.data_ptr()),
                                           C.c_uint64(s2.data_ptr()), C.c_uint64(normed.data_ptr()), C.c_int(D), C.c_float(1e-5), C.c_int(1)])

        def silu(ctas):
            return launch(f_silu, ctas, 256, [C.c_uint64(gu.data_ptr()), C.c_uint64(gu.data_ptr() + FF * 2), C.c_uint64(act.data_ptr()),
                                              C.c_int(M), C.c_int(FF), C.c_int(2 * FF)])

        prom_ctas = min(-(-(M * FF // 8) // 256), 132 * 16)

        def rnd(i, with_norm=True, silu_ctas=prom_ctas):
            r = norm() if with_norm else 0
            r = r or cublas_run(M, 2 * FF, D, wgu[i].data_ptr(), normed.data_ptr(), gu.data_ptr())
            r = r or (silu(silu_ctas) if silu_ctas else 0)
            return r or cublas_run(M, D, FF, wd[i].data_ptr(), act.data_ptr(), dout.data_ptr())

        def alloc(nbytes):
            ptr = C.c_uint64()
            ok(cu.cuMemAllocAsync(C.byref(ptr), C.c_size_t(nbytes), C.c_void_p(stream)), "cuMemAllocAsync")
            return ptr.value

        def free(ptr):
            return cu.cuMemFreeAsync(C.c_uint64(ptr), C.c_void_p(stream))

        def rnd_nodes(i):
            # As prom's graph: each kernel's output allocated stream-ordered before it and freed
            # after its last reader (memory nodes between the kernels).
            ny, ns = alloc(M * D * 2), alloc(M * D * 2)
            r = launch(f_norm, M, 256, [C.c_uint64(dout.data_ptr()), C.c_uint64(h.data_ptr()), C.c_uint64(wn.data_ptr()),
                                        C.c_uint64(ns), C.c_uint64(ny), C.c_int(D), C.c_float(1e-5), C.c_int(1)])
            g = alloc(M * 2 * FF * 2)
            r = r or cublas_run(M, 2 * FF, D, wgu[i].data_ptr(), ny, g)
            r = r or free(ny)
            a = alloc(M * FF * 2)
            r = r or launch(f_silu, prom_ctas, 256, [C.c_uint64(g), C.c_uint64(g + FF * 2), C.c_uint64(a), C.c_int(M), C.c_int(FF), C.c_int(2 * FF)])
            r = r or free(g)
            r = r or cublas_run(M, D, FF, wd[i].data_ptr(), a, dout.data_ptr())
            return r or free(a) or free(ns)

        line0 = f"M={M}: with memory nodes {time_graph(rnd_nodes, ring):6.1f} µs | "
        full = time_graph(lambda i: rnd(i), ring)
        line = line0 + f"norm+gate|up+silu+down {full:6.1f} µs | no norm {time_graph(lambda i: rnd(i, False), ring):6.1f}"
        line += f" | no silu {time_graph(lambda i: rnd(i, True, 0), ring):6.1f} | GEMMs only {time_graph(lambda i: rnd(i, False, 0), ring):6.1f}"
        line += f" | norm alone {time_graph(lambda i: norm(), ring):4.1f} | silu alone ({prom_ctas} CTAs) {time_graph(lambda i: silu(prom_ctas), ring):4.1f}"
        for c in [int(v) for v in os.environ.get("SILU_CTAS", "132,264,528").split(",")]:
            line += f" | silu {c} CTAs: round {time_graph(lambda i: rnd(i, True, c), ring):6.1f}, alone {time_graph(lambda i: silu(c), ring):4.1f}"
        print(line, flush=True)
        del wgu, wd
        torch.cuda.empty_cache()
    sys.exit(0)
ms = [int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "32,128,256,8192").split(",")]
print(torch.cuda.get_device_name(), "torch", torch.__version__)
print(f"{'shape':8} {'M':>5} {'cublas µs':>10} {'lt-h0 µs':>9} {'lt-best µs':>10} {'#':>3} {'best/cublas':>11} {'TB/s':>6} {'TFLOP/s':>8}")
tot = {}
for M in ms:
    for name, (n, k) in SHAPES.items():
        wbytes = n * k * 2
        ws, ring, x, y = operands(M, n, k)
        g = LtGemm(M, n, k)
        t_cublas = time_us(lambda w: cublas_run(M, n, k, w, x.data_ptr(), y.data_ptr()), ring)
        ref = y.clone()
        times = []
        for i in range(len(g.algos)):
            try:
                times.append(time_us(lambda w: g.run(i, w, x.data_ptr(), y.data_ptr()), ring, reps=2, per=10))
            except RuntimeError:
                times.append(float("inf"))
        best = min(range(len(times)), key=times.__getitem__)
        t_best = time_us(lambda w: g.run(best, w, x.data_ptr(), y.data_ptr()), ring)
        t_h0 = time_us(lambda w: g.run(0, w, x.data_ptr(), y.data_ptr()), ring)
        g.run(best, ring[-1], x.data_ptr(), y.data_ptr())
        cublas_run(M, n, k, ring[-1], x.data_ptr(), ref.data_ptr())
        torch.cuda.synchronize()
        err = (y.float() - ref.float()).abs().max().item()
        tb = wbytes / t_best / 1e6
        tf = 2 * M * n * k / t_best / 1e6
        tot.setdefault(M, [0, 0, 0])
        for j, t in enumerate((t_cublas, t_h0, t_best)):
            tot[M][j] += t * (32 if name != "head" else 1)
        print(f"{name:8} {M:5} {t_cublas:10.1f} {t_h0:9.1f} {t_best:10.1f} {len(g.algos):3} {t_best / t_cublas:11.3f} {tb:6.2f} {tf:8.1f}  maxdiff {err:.3g}")
        del ws
        torch.cuda.empty_cache()
for M, (a, b, c) in tot.items():
    print(f"M={M}: a step's GEMMs (32 layers + head) cublas {a / 1000:.2f} ms, lt-h0 {b / 1000:.2f} ms, lt-best {c / 1000:.2f} ms ({c / a:.3f})")
