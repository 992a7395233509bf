"""Times decode GEMV variants (scripts/gpu/gemv_lab.cu, built here to a cubin) on Llama-3-8B's
shapes at one row, each as a CUDA graph of back-to-back launches with programmatic dependent
launch (as prom's decode graphs run), over a ring of distinct weight copies (> L2), so every
launch streams its weights from HBM. Prints µs a launch and TB/s of weight bytes.

Here:   source ../shared/tools/cuda-toolchain.sh
        nvcc -cubin -O3 -std=c++17 -arch=sm_90 -o scripts/gpu/gemv_lab.cubin scripts/gpu/gemv_lab.cu
There:  python3 scripts/gpu/gemv_lab.py scripts/gpu/gemv_lab.cubin [MODE]   (carry the cubin)

CARVEOUT=N (percent of the L1/shared split given to shared memory) sets it for every kernel.
MODE: (none) the read ceiling and the GEMV at 1, 2, 4 and 8 warps a row (and a persistent
grid); `stamps` checks that programmatic launch works (kernels start before their predecessor
ends, eagerly and in a captured graph, whose edge types it prints); `chain` puts a
latency-bound kernel before each GEMV and tries asking the GEMV's weights into L2 during it;
`mega` runs the persistent layer chain (`lab_mega`) against the same chain as separate kernels;
`all` runs everything.
Torch only allocates, times (events) and captures graphs; kernels go through the driver API.
"""
import ctypes as C
import os
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
        if os.environ.get("CARVEOUT"):
            # CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT: one L1/shared split for every
            # kernel, so that a CTA needing shared memory can join an SM running another kernel.
            check(cu.cuFuncSetAttribute(f, 9, int(os.environ["CARVEOUT"])), "carveout")
        funcs[name] = f
    return funcs[name]


attr = LaunchAttr()
attr.id = 6  # CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
attr.value = 1


def launch(name, grid, args, stream=None, smem=0, block=256):
    # ("p", v): a 64-bit value (device address, count); ("i", v): a 32-bit int
    vals = [C.c_uint64(a) if kind == "p" else C.c_int32(a) for kind, a in args]
    ptrs = (C.c_void_p * len(vals))(*[C.cast(C.byref(v), C.c_void_p) for v in vals])
    cfg = LaunchConfig(grid, 1, 1, block, 1, 1, smem, stream or C.c_void_p(torch.cuda.current_stream().cuda_stream),
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
LAUNCHES = 32


class Case:
    """One shape's weights (a ring of copies larger than L2), input and output."""

    def __init__(self, n, k, gated):
        self.n, self.k, self.gated = n, k, gated
        rows = 2 * n if gated else n
        self.nbytes = rows * k * 2
        self.ring = max(2, (3 << 30) // self.nbytes)
        self.ws = [torch.randn(rows, k, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(self.ring)]
        self.x = torch.randn(k, device="cuda", dtype=torch.bfloat16)
        self.y = torch.empty(n, device="cuda", dtype=torch.bfloat16)

    def w(self, i):
        return self.ws[i % self.ring]

    def gemv(self, i, wpr=1, stage=0):
        """The real kernel (gemv_bf16_1 / gemv_silu_bf16_1) over copy i; with `stage` > 0 its
        staged form (lab_staged_bf16_1 / lab_silu_staged_bf16_1), `stage` feature groups a CTA."""
        args = [("p", self.x.data_ptr()), ("p", self.w(i).data_ptr()), ("p", self.y.data_ptr()), ("i", self.n),
                ("i", self.k), ("i", wpr)]
        silu = "silu_" if self.gated else ""
        if stage == 0:
            # No residual, eps 0 (the plain forms ignore both).
            launch(f"gemv_{silu}bf16_1", (self.n * wpr + 7) // 8, args + [("p", 0), ("i", 0)])
            return
        fpc = 8 // wpr
        smem = stage * (2 if self.gated else 1) * fpc * self.k * 2
        name = f"lab_{silu}staged_bf16_1"
        check(cu.cuFuncSetAttribute(func(name), 8, smem), "max dynamic shared memory")
        launch(name, -(-self.n // (fpc * stage)), args + [("i", stage)], smem=smem)

    def persist(self, i, per_sm):
        args = [("p", self.x.data_ptr()), ("p", self.w(i).data_ptr()), ("p", self.y.data_ptr()), ("i", self.n),
                ("i", self.k)]
        launch("lab_persist", 132 * per_sm, args)

    def spin(self, i, ns, ctas=64, mode=0, chunk=65536, active=None, smem=0):
        args = [("p", ns), ("p", self.w(i).data_ptr()), ("p", self.nbytes), ("i", chunk), ("i", mode),
                ("i", ctas if active is None else active)]
        launch("lab_spin", ctas, args, smem=smem)


def variants():
    for label, n, k, gated in SHAPES:
        c = Case(n, k, gated)
        cases = [(f"wpr {w}", lambda i, w=w: c.gemv(i, w)) for w in (1, 2, 4, 8)]
        if not gated:
            cases += [(f"persistent, {p} CTAs an SM", lambda i, p=p: c.persist(i, p)) for p in (4, 8)]
        want = None
        for name, f in cases:
            f(0)
            torch.cuda.synchronize()
            got = c.y.float().clone()
            want = got if want is None else want
            err = (got - want).abs().max().item()
            us = timed(lambda: [f(i) for i in range(LAUNCHES)]) * 1e3 / LAUNCHES
            print(f"{label:24} {name:26}: {us:7.2f} us  {c.nbytes / us / 1e6:5.2f} TB/s  max|d| vs wpr 1 {err:.1e}")
        del c


def chain():
    """A small kernel (spin, 64 or 132 CTAs) before each GEMV, as attention comes before o: how
    much of the GEMV's weight stream hides behind it, with and without asking it into L2."""
    for label, n, k, gated in SHAPES[:3]:
        c = Case(n, k, gated)
        for ns in (10000, 20000):
            cases = {"spin alone": lambda i: c.spin(i, ns), "spin, gemv": lambda i: (c.spin(i, ns), c.gemv(i))}
            for mode, what in ((1, "bulk before wait"), (2, "bulk after wait"), (3, "lines after wait")):
                for ctas in (64, 132):
                    cases[f"{what}, {ctas} CTAs"] = lambda i, m=mode, t=ctas: (c.spin(i, ns, t, m), c.gemv(i))
            res = {name: timed(lambda: [f(i) for i in range(LAUNCHES)]) * 1e3 / LAUNCHES for name, f in cases.items()}
            s0 = res["spin alone"]
            for name, us in res.items():
                print(f"{label:24} spin {ns / 1000:4.0f} us  {name:26} {us:7.2f} us a pair, {us - s0:6.2f} over the spin")
        del c


def staged():
    """The staged GEMV (its CTA's weight slice bulk-copied into shared memory before the wait)
    against the streaming kernel: bitwise equality, alone, after a 64-CTA spin and after an
    attention-like predecessor (528 CTAs holding 48 KB of shared memory each, 32 of them busy);
    then a layer's chain (1-CTA norm, qkv, rope, attention, o, norm, gate|up, down)."""
    cases = {label: Case(n, k, gated) for label, n, k, gated in SHAPES}
    stages = {"qkv 4096->6144": (1, 2), "o 4096->4096": (1, 2), "gate|up 4096->2x14336": (1,),
              "down 14336->4096": (1,)}
    for label, c in cases.items():
        c.gemv(0, 2)
        torch.cuda.synchronize()
        want = c.y.clone()
        for st in stages[label]:
            c.gemv(0, 2, st)
            torch.cuda.synchronize()
            print(f"{label:24} stage {st}: bitwise equal to the streaming kernel: {torch.equal(want, c.y)}")
        for ns in (5000, 10000):
            res = {}
            for st in (0,) + stages[label]:
                tag = f"stage {st}"
                res[f"{tag} alone"] = lambda i, st=st: c.gemv(i, 2, st)
                res[f"{tag} after spin"] = lambda i, st=st: (c.spin(i, ns), c.gemv(i, 2, st))
                res[f"{tag} after attn-like"] = lambda i, st=st: (c.spin(i, ns, 528, active=32, smem=48 * 1024),
                                                                  c.gemv(i, 2, st))
            res["spin alone"] = lambda i: c.spin(i, ns)
            res["attn-like alone"] = lambda i: c.spin(i, ns, 528, active=32, smem=48 * 1024)
            us = {name: timed(lambda: [f(i) for i in range(LAUNCHES)]) * 1e3 / LAUNCHES for name, f in res.items()}
            print(f"{label:24} spin {ns / 1000:3.0f} us: " + "  ".join(f"{name} {v:.2f}" for name, v in us.items()))
    q, o, gu, d = cases.values()

    def layer(i, sq, so, sg, sd):
        q.spin(i, 2000, 1)
        q.gemv(i, 2, sq)
        q.spin(i, 2000, 32)
        o.spin(i, 8000, 528, active=32, smem=48 * 1024)
        o.gemv(i, 2, so)
        o.spin(i, 2000, 1)
        gu.gemv(i, 2, sg)
        d.gemv(i, 2, sd)
    plans = {"stream": (0, 0, 0, 0), "staged o": (0, 2, 0, 0), "staged q, o": (2, 2, 0, 0),
             "staged q, o, gate|up": (2, 2, 1, 0), "staged all": (2, 2, 1, 1)}
    for rnd in range(2):
        for name, plan in plans.items():
            us = timed(lambda: [layer(i, *plan) for i in range(LAUNCHES)]) * 1e3 / LAUNCHES
            print(f"layer chain, {name:22}: {us:.2f} us a layer (round {rnd})")


def gemv_stamps():
    """When the CTAs of an o-shaped GEMV (streaming, staged 1 and 2) start and end against the
    end of a 10 us predecessor, in a captured graph."""
    c = Case(4096, 4096, False)
    buf = torch.zeros(3 * 8, dtype=torch.int64, device="cuda")
    st = torch.zeros(2 * 1024, dtype=torch.int64, device="cuda")
    for stage in (0, 1, 2, 0, 1, 2):
        ctas = 1024 if stage == 0 else -(-1024 // stage)
        smem = stage * 4 * 4096 * 2
        check(cu.cuFuncSetAttribute(func("lab_gemv_stamp"), 8, max(smem, 1)), "max dynamic shared memory")

        def go(i):
            launch("lab_stamp", 64, [("p", buf.data_ptr()), ("i", 0), ("p", 100000)])
            launch("lab_stamp", 64, [("p", buf.data_ptr()), ("i", 1), ("p", 10000)])
            launch("lab_gemv_stamp", ctas, [("p", c.x.data_ptr()), ("p", c.w(i).data_ptr()), ("p", c.y.data_ptr()),
                                            ("i", 4096), ("i", 4096), ("i", 2), ("i", stage), ("p", st.data_ptr())],
                   smem=smem)
        s = torch.cuda.Stream()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.stream(s):
            go(0)
            torch.cuda.synchronize()
            with torch.cuda.graph(g, stream=s):
                go(1)
        g.replay()
        torch.cuda.synchronize()
        b = buf.view(8, 3).tolist()
        spin_end = b[1][2]
        t = st.view(1024, 2).tolist()[:ctas]
        starts = sorted((a - spin_end) / 1e3 for a, _ in t)
        ends = sorted((e - spin_end) / 1e3 for _, e in t)
        early = [e for a, e in sorted(t) if a < spin_end]
        q = lambda v, f: v[min(len(v) - 1, int(f * len(v)))]
        print(f"stage {stage}: {len(early)}/{ctas} CTAs started before the spin's end; their ends (us after it) "
              f"min {(min(early) - spin_end) / 1e3 if early else 0:.1f} max {(max(early) - spin_end) / 1e3 if early else 0:.1f}; "
              f"starts p50 {q(starts, .5):.1f} max {starts[-1]:.1f}; ends p10 {q(ends, .1):.1f} p50 {q(ends, .5):.1f} "
              f"max {ends[-1]:.1f}")


def stamps():
    """Does a kernel start before its predecessor ends (PDL), eagerly (behind a long kernel, so
    the host is ahead) and in a graph captured with the driver API, whose edge types are printed?"""
    buf = torch.zeros(3 * 8, dtype=torch.int64, device="cuda")
    stream = C.c_void_p()
    check(cu.cuStreamCreate(C.byref(stream), 1), "stream")

    def go():
        launch("lab_stamp", 64, [("p", buf.data_ptr()), ("i", 0), ("p", 300000)], stream=stream)
        for i in range(1, 8):
            launch("lab_stamp", 64, [("p", buf.data_ptr()), ("i", i), ("p", 5000)], stream=stream)

    def show(mode):
        check(cu.cuStreamSynchronize(stream), "sync")
        b = buf.view(8, 3).tolist()
        t0 = b[0][0]
        print(f"{mode}: [start, after the wait, end] in us:",
              " ".join(f"[{(a - t0) / 1e3:.1f} {(w - t0) / 1e3:.1f} {(e - t0) / 1e3:.1f}]" for a, w, e in b))

    buf.zero_()
    torch.cuda.synchronize()
    go()
    show("stream")
    graph = C.c_void_p()
    check(cu.cuStreamBeginCapture_v2(stream, 2), "begin capture")  # relaxed
    go()
    check(cu.cuStreamEndCapture(stream, C.byref(graph)), "end capture")
    n = C.c_size_t(0)
    check(cu.cuGraphGetEdges_v2(graph, None, None, None, C.byref(n)), "edges")
    frm, to = (C.c_void_p * n.value)(), (C.c_void_p * n.value)()
    data = (C.c_uint8 * (8 * n.value))()
    check(cu.cuGraphGetEdges_v2(graph, frm, to, data, C.byref(n)), "edges")
    print("graph edges (from_port, to_port, type; 1, 0, 1 = programmatic):",
          [(data[8 * i], data[8 * i + 1], data[8 * i + 2]) for i in range(n.value)])
    exe = C.c_void_p()
    check(cu.cuGraphInstantiateWithFlags(C.byref(exe), graph, C.c_ulonglong(0)), "instantiate")
    buf.zero_()
    torch.cuda.synchronize()
    check(cu.cuGraphLaunch(exe, stream), "graph launch")
    show("graph")
    # The same through torch's capture (as `timed` captures).
    s = torch.cuda.Stream()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.stream(s):
        with torch.cuda.graph(g, stream=s):
            launch("lab_stamp", 64, [("p", buf.data_ptr()), ("i", 0), ("p", 300000)])
            for i in range(1, 8):
                launch("lab_stamp", 64, [("p", buf.data_ptr()), ("i", i), ("p", 5000)])
    buf.zero_()
    torch.cuda.synchronize()
    g.replay()
    torch.cuda.synchronize()
    b = buf.view(8, 3).tolist()
    t0 = b[0][0]
    print("torch graph: [start, after the wait, end] in us:",
          " ".join(f"[{(a - t0) / 1e3:.1f} {(w - t0) / 1e3:.1f} {(e - t0) / 1e3:.1f}]" for a, w, e in b))


def mega():
    """The persistent layer chain (`lab_mega`) against the same chain as separate kernels (the
    real `gemv` and `lab_spin` stand-ins, as `staged` runs it): each GEMV phase against torch,
    where a CTA's time goes, then µs a layer over 32 layers: without the stand-ins, with them, and
    both again with the dot products skipped (the weight stream alone)."""
    q, o, gu, d = (Case(n, k, gated) for _, n, k, gated in SHAPES)
    layers = 32
    wl = torch.tensor([c.w(l).data_ptr() for l in range(layers) for c in (q, o, gu, d)], dtype=torch.int64,
                      device="cuda")
    xa = torch.randn(4096, device="cuda", dtype=torch.bfloat16)
    qkv = torch.empty(6144, device="cuda", dtype=torch.bfloat16)
    xo = torch.empty(4096, device="cuda", dtype=torch.bfloat16)
    h = torch.empty(14336, device="cuda", dtype=torch.bfloat16)
    bar = torch.zeros(1, dtype=torch.int32, device="cuda")
    dbg = torch.zeros(8 * 132, dtype=torch.int64, device="cuda")

    def run(nl, spins, slots, per, debug=False, cons=8):
        smem = slots * per * 4096 + 28672 + 2048 + 16 * slots
        name = "lab_mega" if cons == 8 else f"lab_mega{cons}"
        check(cu.cuFuncSetAttribute(func(name), 8, smem), "max dynamic shared memory")
        bar.zero_()
        args = [("p", wl.data_ptr()), ("i", nl), ("i", spins), ("i", slots), ("i", per), ("p", xa.data_ptr()),
                ("p", qkv.data_ptr()), ("p", xo.data_ptr()), ("p", h.data_ptr()), ("p", bar.data_ptr()),
                ("p", dbg.data_ptr() if debug else 0)]
        launch(name, 132, args, smem=smem, block=(cons + 1) * 32)

    x0 = xa.clone()
    run(1, 0, 16, 3)
    torch.cuda.synchronize()
    f = lambda t: t.float()
    want_q = (f(q.w(0)) @ f(x0)).bfloat16()
    want_o = (f(o.w(0)) @ f(qkv[:4096])).bfloat16()
    g = f(gu.w(0)) @ f(xo)
    gt, up = g[:14336].bfloat16().float(), g[14336:].bfloat16().float()
    want_h = ((gt / (1 + torch.exp(-gt))).bfloat16().float() * up).bfloat16()
    want_d = (f(d.w(0)) @ f(h)).bfloat16()
    for name, got, want in (("q|k|v", qkv, want_q), ("o", xo, want_o), ("gate|up", h, want_h), ("down", xa, want_d)):
        err = ((f(got) - f(want)).abs().max() / f(want).abs().max()).item()
        print(f"mega, {name:8}: max |got - torch| / max |torch| = {err:.2e}")

    for spins in (0, 1, 3):
        for slots, per in ((48, 1), (24, 2)):
            dbg.zero_()
            run(32, spins, slots, per, True)
            torch.cuda.synchronize()
            v = dbg.view(132, 8).double()
            us = v[:, :4] / 1e3
            r = v[:, 4:] / 32
            print(f"where the time goes (us, mean over CTAs; spins {spins}, {slots} x {per * 4} KB): producer waiting "
                  f"for free slots {us[:, 0].mean():.0f}, warp 0 waiting for full slots {us[:, 1].mean():.0f}, grid "
                  f"barriers {us[:, 2].mean():.0f} (max {us[:, 2].max():.0f}), kernel {us[:, 3].mean():.0f} for 32 "
                  f"layers; ring at attention's start: {r[:, 0].mean():.1f} slots issued, {r[:, 1].mean():.1f} "
                  f"landed; at its end: {r[:, 2].mean():.1f} issued, {r[:, 3].mean():.1f} landed")

    def chain(i, spins):
        if spins:
            q.spin(i, 2000, 1)
        q.gemv(i, 2)
        if spins:
            q.spin(i, 2000, 32)
            o.spin(i, 8000, 528, active=32, smem=48 * 1024)
        o.gemv(i, 2)
        if spins:
            o.spin(i, 2000, 1)
        gu.gemv(i, 2)
        d.gemv(i, 2)
    ideal = sum(c.nbytes for c in (q, o, gu, d)) / 4.4e6
    labels = ("without spins", "with spins", "stream only", "stream only with spins")
    for rnd in range(2):
        for spins in (0, 1, 2, 3):
            res = {"separate kernels": timed(lambda: [chain(i, spins & 1) for i in range(layers)]) * 1e3 / layers}
            for slots, per in ((48, 1), (24, 2), (16, 3), (8, 6)):
                res[f"mega {slots}x{per * 4}K"] = timed(lambda: run(layers, spins, slots, per)) * 1e3 / layers
            res["mega 16 warps 48x4K"] = timed(lambda: run(layers, spins, 48, 1, cons=16)) * 1e3 / layers
            print(f"round {rnd}, {labels[spins]} (weights at 4.4 TB/s: {ideal:.1f} us): " +
                  "  ".join(f"{k} {v:.2f}" for k, v in res.items()))

MODES = {"stamps": [stamps], "gemv_stamps": [gemv_stamps], "chain": [chain], "staged": [staged], "mega": [mega], "all": [stamps, ceilings, variants, chain, staged]}
for step in MODES.get(sys.argv[2] if len(sys.argv) > 2 else "", [ceilings, variants]):
    step()
