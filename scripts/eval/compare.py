#!/usr/bin/env python3
"""Compares lm-eval's and prom's results JSON per task and metric (in points), and per sample:
the share of documents where both pick the same choice (multiple choice) or produce the same
filtered answer (generation), and the largest loglikelihood difference.

    compare.py LM_EVAL_DIR PROM_DIR [PROM_ENDPOINT_DIR]   (each holds one subdir/file set per task)
"""
import glob
import json
import sys
from pathlib import Path

TASKS = [("parity_arc_easy", ["acc,none", "acc_norm,none"]),
         ("parity_hellaswag", ["acc,none", "acc_norm,none"]),
         ("parity_piqa", ["acc,none", "acc_norm,none"]),
         ("parity_gsm8k", ["exact_match,strict-match", "exact_match,flexible-extract"])]


def newest(pattern):
    files = sorted(glob.glob(pattern, recursive=True))
    return files[-1] if files else None


def results(root, task):
    f = newest(f"{root}/{task}/**/results_*.json")
    return json.load(open(f)) if f else None


def samples(root, task):
    f = newest(f"{root}/{task}/**/samples_{task}_*.jsonl")
    if not f:
        return {}
    out = {}
    for line in open(f):
        s = json.loads(line)
        out[(s["doc_id"], s.get("filter", "none"))] = s
    return out


def mc_pred(s):
    # lm-eval logs [["-17.55", "False"], ...] (strings); prom logs [[-17.55, false], ...].
    lls = [float(r[0]) for r in s["filtered_resps"]]
    return max(range(len(lls)), key=lambda i: lls[i]), lls


def compare_samples(a, b):
    keys = sorted(set(a) & set(b))
    if not keys:
        return "no common samples"
    same, maxdiff = 0, 0.0
    for k in keys:
        x, y = a[k], b[k]
        if isinstance(x["filtered_resps"][0], list):
            px, lx = mc_pred(x)
            py, ly = mc_pred(y)
            same += px == py
            maxdiff = max(maxdiff, max(abs(u - v) for u, v in zip(lx, ly)))
        else:
            fx = x["filtered_resps"][0] if isinstance(x["filtered_resps"], list) else x["filtered_resps"]
            fy = y["filtered_resps"][0] if isinstance(y["filtered_resps"], list) else y["filtered_resps"]
            same += fx == fy
    msg = f"{same}/{len(keys)} samples agree"
    if maxdiff:
        msg += f", max |loglikelihood diff| {maxdiff:.2e}"
    return msg


def main():
    roots = sys.argv[1:]
    names = ["lm-eval (HF, CPU torch)", "prom eval (in-process)", "prom eval --endpoint"][: len(roots)]
    ok = True
    print("| task | metric | " + " | ".join(names) + " | |prom − lm-eval| (points) |")
    print("|---|---|" + "---|" * len(names) + "---|")
    for task, metrics in TASKS:
        rs = [results(r, task) for r in roots]
        if rs[0] is None or rs[1] is None:
            print(f"| {task} | (missing results) |")
            ok = False
            continue
        for m in metrics:
            vals = [r["results"][task].get(m) if r else None for r in rs]
            diffs = [abs(v - vals[0]) * 100 for v in vals[1:] if v is not None]
            ok &= all(d <= 1.0 for d in diffs)
            cells = " | ".join("—" if v is None else f"{v:.4f}" for v in vals)
            print(f"| {task} | {m} | {cells} | {', '.join(f'{d:.2f}' for d in diffs)} |")
    print()
    for task, _ in TASKS:
        ss = [samples(r, task) for r in roots]
        line = f"- {task}: lm-eval vs in-process: {compare_samples(ss[0], ss[1])}"
        if len(ss) > 2:
            line += f"; in-process vs endpoint: {compare_samples(ss[1], ss[2])}"
        print(line)
    print()
    print("PARITY (every metric within 1 point):", "yes" if ok else "NO")


if __name__ == "__main__":
    main()
