"""Times decode GEMV variants (scripts/gpu/gemv_lab.cu, built here to a cubin) on Llama-3-8B's
shapes at one row, each as a CUDA graph of back-to-back launches with programmatic dependent
launch (as prom's decode graphs run), over a ring of distinct weight copies (> L2), so every
launch streams its weights from HBM. Prints µs a launch and TB/s of weight bytes.

Here:   source ../shared/tools/cuda-toolchain.sh
        nvcc -cubin -O3 -std=c++17 -arch=sm_90 -o scripts/gpu/gemv_lab.cubin scripts/gpu/gemv_lab.cu
There:  python3 scripts/gpu/gemv_lab.py scripts/gpu/gemv_lab.cubin [MODE]   (carry the cubin)

MODE: (none) the read ceiling and the GEMV variants at wpr 1/2/4/8; `stamps` checks that
programmatic launch works (kernels start before their predecessor ends, eagerly and in a
captured graph, whose edge types it prints); `chain` and `chain2` put a latency-bound kernel
before each GEMV and try asking the GEMV's weights into L2 during it; `all` runs everything.
Torch only allocates, times (events) and captures graphs; kernels go through the driver API.
"""
import ctypes as C
import statistics
import sys

import torch

cu = C.CDLL("libcuda.so.1")


def check(r, what):
    if r != 0:
        raise RuntimeError(f"{what}: CUresult {r}")


class LaunchAttr(C.Structure):
    # value: a 64-byte union whose first int is programmaticStreamSerializationAllowed
    _fields_ = [("id", C.c_int), ("pad", C.c_char * 4), ("value", C.c_int), ("rest", C.c_char * 60)]


class LaunchConfig(C.Structure):
    _fields_ = [("gx", C.c_uint), ("gy", C.c_uint), ("gz", C.c_uint), ("bx", C.c_uint), ("by", C.c_uint),
                ("bz", C.c_uint), ("smem", C.c_uint), ("stream", C.c_void_p), ("attrs", C.POINTER(LaunchAttr)),
                ("nattrs", C.c_uint)]


torch.zeros(1, device="cuda")  # the primary context, current on this thread
mod = C.c_void_p()
image = open(sys.argv[1], "rb").read()
check(cu.cuModuleLoadData(C.byref(mod), C.c_char_p(image)), "module")
funcs = {}


def func(name):
    if name not in funcs:
        f = C.c_void_p()
        check(cu.cuModuleGetFunction(C.byref(f), mod, name.encode()), name)
        funcs[name] = f
    return funcs[name]


attr = LaunchAttr()
attr.id = 6  # CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
attr.value = 1


def launch(name, grid, args, stream=None):
    vals = [C.c_uint64(a) if kind == "p" else C.c_int32(a) for kind, a in args]
    ptrs = (C.c_void_p * len(vals))(*[C.cast(C.byref(v), C.c_void_p) for v in vals])
    cfg = LaunchConfig(grid, 1, 1, 256, 1, 1, 0, stream or C.c_void_p(torch.cuda.current_stream().cuda_stream),
                       C.pointer(attr), 1)
    check(cu.cuLaunchKernelEx(C.byref(cfg), func(name), ptrs, None), f"launch {name}")


def timed(enqueue, reps=15):
    """Median ms of one replay of a graph that holds what `enqueue` launches."""
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        enqueue()  # warm-up, eager
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=s):
            enqueue()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def ceilings():
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    ms = timed(lambda: [b.copy_(a) for _ in range(4)]) / 4
    print(f"copy 1 GiB: {2 * n / ms / 1e9:.2f} TB/s (read + write)")
    sink = torch.zeros(1, device="cuda")
    for ctas in (132 * 4, 132 * 8, 132 * 16):
        ms = timed(lambda: [launch("lab_read", ctas, [("p", a.data_ptr()), ("p", n // 16), ("p", sink.data_ptr())])
                            for _ in range(4)]) / 4
        print(f"read 1 GiB, {ctas} CTAs: {n / ms / 1e9:.2f} TB/s")


SHAPES = [  # (label, out features, in, gated)
    ("qkv 4096->6144", 6144, 4096, False),
    ("o 4096->4096", 4096, 4096, False),
    ("gate|up 4096->2x14336", 14336, 4096, True),
    ("down 14336->4096", 4096, 14336, False),
]


def variants(n, gated):
    base = "gemv_silu_bf16_1" if gated else "gemv_bf16_1"
    out = [(f"{base}/w{w}", (n * w + 7) // 8) for w in (1, 2, 4, 8)]
    serial = "lab_serial_silu" if gated else "lab_serial"
    out += [(f"{serial}/w{w}", (n * w + 7) // 8) for w in (1, 2, 4, 8)]
    for wpr in (2, 4, 8):
        out.append((f"lab_kw{'_silu' if gated else ''}{wpr}", (n * wpr + 7) // 8))
    if not gated:
        for per_sm in (4, 8):
            out.append((f"lab_persist/{per_sm}", 132 * per_sm))
    return out


def main():
    ceilings()
    launches = 32
    for label, n, k, gated in SHAPES:
        rows = 2 * n if gated else n
        nbytes = rows * k * 2
        ring = max(2, (3 << 30) // nbytes)
        ws = [torch.randn(rows, k, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(ring)]
        x = torch.randn(k, device="cuda", dtype=torch.bfloat16)
        y = torch.empty(n, device="cuda", dtype=torch.bfloat16)
        want = None
        for name, grid in variants(n, gated):
            kname = name.split("/")[0]
            wpr = [("i", int(name.split("/w")[1]))] if "/w" in name else []
            args = lambda w: [("p", x.data_ptr()), ("p", w.data_ptr()), ("p", y.data_ptr()), ("i", n), ("i", k)] + wpr
            launch(kname, grid, args(ws[0]))
            torch.cuda.synchronize()
            got = y.float().clone()
            if want is None:
                want = got
            err = (got - want).abs().max().item()
            ms = timed(lambda: [launch(kname, grid, args(ws[i % ring])) for i in range(launches)])
            us = ms * 1e3 / launches
            print(f"{label:24} {name:20} grid {grid:6d}: {us:7.2f} us  {nbytes / us / 1e6:5.2f} TB/s  "
                  f"max|d| vs base {err:.1e}")
        del ws


def chain():
    """A small kernel (spin, 64 CTAs) before each GEMV, as attention comes before o: how much of
    the GEMV's weight stream can hide behind it."""
    launches = 32
    for label, n, k, gated in SHAPES[:3]:
        rows = 2 * n if gated else n
        nbytes = rows * k * 2
        ring = max(2, (3 << 30) // nbytes)
        ws = [torch.randn(rows, k, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(ring)]
        x = torch.randn(k, device="cuda", dtype=torch.bfloat16)
        y = torch.empty(n, device="cuda", dtype=torch.bfloat16)
        base = "gemv_silu_bf16_1" if gated else "gemv_bf16_1"
        bulk = "lab_bulk_silu" if gated else "lab_bulk"
        grid = (n + 7) // 8
        args = lambda w: [("p", x.data_ptr()), ("p", w.data_ptr()), ("p", y.data_ptr()), ("i", n), ("i", k), ("i", 1)]
        for ns in (5000, 10000, 20000):
            spin = lambda: launch("lab_spin", 64, [("p", ns)])
            spin_pf = lambda w: launch("lab_spin_prefetch", 64, [("p", ns), ("p", w.data_ptr()), ("p", nbytes), ("i", 65536)])
            cases = {
                "spin alone": lambda: [spin() for i in range(launches)],
                "spin, gemv": lambda: [(spin(), launch(base, grid, args(ws[i % ring]))) for i in range(launches)],
                "spin, gemv bulk-prefetching": lambda: [(spin(), launch(bulk, grid, args(ws[i % ring]))) for i in range(launches)],
                "spin prefetching, gemv": lambda: [(spin_pf(ws[i % ring]), launch(base, grid, args(ws[i % ring]))) for i in range(launches)],
                "spin prefetching, gemv bulk": lambda: [(spin_pf(ws[i % ring]), launch(bulk, grid, args(ws[i % ring]))) for i in range(launches)],
            }
            res = {name: timed(f) * 1e3 / launches for name, f in cases.items()}
            s0 = res["spin alone"]
            for name, us in res.items():
                print(f"{label:24} spin {ns / 1000:4.0f} us  {name:30} {us:7.2f} us a pair, {us - s0:6.2f} over the spin")
        del ws


def stamps():
    """Does a kernel start before its predecessor ends (PDL), eagerly and in a graph?"""
    buf = torch.zeros(3 * 8, dtype=torch.int64, device="cuda")
    def chain():
        for i in range(8):
            launch("lab_stamp", 64, [("p", buf.data_ptr()), ("i", i), ("p", 5000)])
    for mode in ("eager", "graph"):
        buf.zero_()
        if mode == "eager":
            chain()
        else:
            s = torch.cuda.Stream()
            with torch.cuda.stream(s):
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g, stream=s):
                    chain()
            g.replay()
        torch.cuda.synchronize()
        b = buf.view(8, 3).tolist()
        t0 = b[0][0]
        print(mode, " ".join(f"[{(a - t0) / 1e3:.1f} {(w - t0) / 1e3:.1f} {(e - t0) / 1e3:.1f}]" for a, w, e in b))


def stamps2():
    """PDL in a plain stream (behind a long kernel, so the host is ahead) and in a graph captured
    with the driver API, whose edge types are printed."""
    buf = torch.zeros(3 * 8, dtype=torch.int64, device="cuda")
    stream = C.c_void_p()
    check(cu.cuStreamCreate(C.byref(stream), 1), "stream")

    def go(st):
        launch("lab_spin", 64, [("p", 300000)], stream=st)
        for i in range(8):
            launch("lab_stamp", 64, [("p", buf.data_ptr()), ("i", i), ("p", 5000)], stream=st)

    def show(mode):
        check(cu.cuStreamSynchronize(stream), "sync")
        b = buf.view(8, 3).tolist()
        t0 = b[0][0]
        print(mode, " ".join(f"[{(a - t0) / 1e3:.1f} {(w - t0) / 1e3:.1f} {(e - t0) / 1e3:.1f}]" for a, w, e in b))

    buf.zero_()
    torch.cuda.synchronize()
    go(stream)
    show("eager")
    graph = C.c_void_p()
    check(cu.cuStreamBeginCapture_v2(stream, 2), "begin capture")  # relaxed
    go(stream)
    check(cu.cuStreamEndCapture(stream, C.byref(graph)), "end capture")
    n = C.c_size_t(0)
    for fname in ("cuGraphGetEdges_v2", "cuGraphGetEdges"):
        fn = getattr(cu, fname, None)
        if fn is None:
            continue
        r = fn(graph, None, None, None, C.byref(n))
        if r != 0:
            print(fname, "->", r)
            continue
        frm = (C.c_void_p * n.value)()
        to = (C.c_void_p * n.value)()
        data = (C.c_uint8 * (8 * n.value))()
        r = fn(graph, frm, to, data, C.byref(n))
        print(fname, r, "edges:", n.value, "(from_port, to_port, type):",
              [(data[8 * i], data[8 * i + 1], data[8 * i + 2]) for i in range(n.value)])
        break
    exe = C.c_void_p()
    check(cu.cuGraphInstantiateWithFlags(C.byref(exe), graph, C.c_ulonglong(0)), "instantiate")
    buf.zero_()
    torch.cuda.synchronize()
    check(cu.cuGraphLaunch(exe, stream), "graph launch")
    show("graph")


def chain2():
    """Prefetch issued by the small kernel while it runs (after its wait)."""
    launches = 32
    for label, n, k, gated in SHAPES[:3]:
        rows = 2 * n if gated else n
        nbytes = rows * k * 2
        ring = max(2, (3 << 30) // nbytes)
        ws = [torch.randn(rows, k, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(ring)]
        x = torch.randn(k, device="cuda", dtype=torch.bfloat16)
        y = torch.empty(n, device="cuda", dtype=torch.bfloat16)
        base = "gemv_silu_bf16_1" if gated else "gemv_bf16_1"
        grid = (n + 7) // 8
        args = lambda w: [("p", x.data_ptr()), ("p", w.data_ptr()), ("p", y.data_ptr()), ("i", n), ("i", k), ("i", 1)]
        for ns in (10000, 20000):
            spin = lambda: launch("lab_spin", 64, [("p", ns)])
            cases = {
                "spin alone": lambda: [spin() for i in range(launches)],
                "spin, gemv": lambda: [(spin(), launch(base, grid, args(ws[i % ring]))) for i in range(launches)],
            }
            for ctas in (64, 132):
                for chunk in (4096, 65536):
                    cases[f"bulk after {ctas}x{chunk // 1024}K"] = (lambda ctas, chunk: lambda: [(launch("lab_spin_prefetch_after", ctas, [("p", ns), ("p", ws[i % ring].data_ptr()), ("p", nbytes), ("i", chunk)]), launch(base, grid, args(ws[i % ring]))) for i in range(launches)])(ctas, chunk)
                cases[f"touch after {ctas}"] = (lambda ctas: lambda: [(launch("lab_spin_touch_after", ctas, [("p", ns), ("p", ws[i % ring].data_ptr()), ("p", nbytes // 16)]), launch(base, grid, args(ws[i % ring]))) for i in range(launches)])(ctas)
            res = {name: timed(f) * 1e3 / launches for name, f in cases.items()}
            s0 = res["spin alone"]
            for name, us in res.items():
                print(f"{label:24} spin {ns / 1000:4.0f} us  {name:30} {us:7.2f} us a pair, {us - s0:6.2f} over the spin")
        del ws


if len(sys.argv) > 2 and sys.argv[2] == "all":
    stamps()
    stamps2()
    main()
    chain()
    chain2()
elif len(sys.argv) > 2 and sys.argv[2] == "stamps":
    stamps()
    stamps2()
elif len(sys.argv) > 2 and sys.argv[2] == "chain":
    chain()
else:
    main()
