#!/usr/bin/env python3
"""Compare the tensors of two GGUF files: same names, shapes, types and bytes.

    scripts/quant/compare_gguf.py ours.gguf theirs.gguf

Prints one line per differing tensor (type or bytes) and a summary; exits 1 on any difference.
Standard library only (the GGUF header is parsed here, the data read in place).
"""
import struct
import sys


def read_header(path):
    f = open(path, "rb")

    def rd(fmt):
        return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]

    def rs():
        return f.read(rd("Q")).decode("utf-8", "replace")

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip(t):
        if t == 8:
            rs()
        elif t == 9:
            et, n = rd("I"), rd("Q")
            for _ in range(n):
                skip(et)
        else:
            f.read(sizes[t])

    assert f.read(4) == b"GGUF", path
    version, nt, nkv = rd("I"), rd("Q"), rd("Q")
    align = 32
    for _ in range(nkv):
        k, t = rs(), rd("I")
        if k == "general.alignment":
            align = rd("I")
        else:
            skip(t)
    tensors = {}
    for _ in range(nt):
        name = rs()
        dims = [rd("Q") for _ in range(rd("I"))]
        tensors[name] = (dims, rd("I"), rd("Q"))
    data = (f.tell() + align - 1) // align * align
    return f, data, tensors


# (block size, bytes per block) per GGUF type id
TYPES = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
         10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210)}
NAMES = {0: "F32", 1: "F16", 30: "BF16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K",
         11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K"}


def main(a, b):
    fa, da, ta = read_header(a)
    fb, db, tb = read_header(b)
    bad = 0
    if set(ta) != set(tb):
        print("tensor names differ:", sorted(set(ta) ^ set(tb)))
        return 1
    counts = {}
    for name in sorted(ta):
        (dims_a, ty_a, off_a), (dims_b, ty_b, off_b) = ta[name], tb[name]
        if dims_a != dims_b or ty_a != ty_b:
            print(f"{name}: {NAMES.get(ty_a, ty_a)} {dims_a} vs {NAMES.get(ty_b, ty_b)} {dims_b}")
            bad += 1
            continue
        n = 1
        for d in dims_a:
            n *= d
        bs, ts = TYPES[ty_a]
        size = n // bs * ts
        fa.seek(da + off_a)
        fb.seek(db + off_b)
        xa, xb = fa.read(size), fb.read(size)
        counts[NAMES[ty_a]] = counts.get(NAMES[ty_a], 0) + 1
        if xa != xb:
            nblk = n // bs
            diff = sum(1 for i in range(nblk) if xa[i * ts:(i + 1) * ts] != xb[i * ts:(i + 1) * ts])
            print(f"{name} ({NAMES[ty_a]}): {diff} of {nblk} blocks differ")
            bad += 1
    print(f"{len(ta)} tensors ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}); {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
