#!/usr/bin/env python3
"""Reference BBQ metrics from lm-eval 0.4.13's own `tasks/bbq/utils.py`, for
crates/eval/tests/bbq_lm_eval.rs: on the real BBQ files (scripts/eval/fetch-bbq.sh), every
document gets an answer by a fixed rule (no model), lm-eval's process_docs/_process_results/
process_results_generate_until score it and its aggregations reduce the scores. The Rust test
applies the same rules through prom's `bbq` task and must get the same numbers.

    PYTHON_WITH_LM_EVAL bbq_reference.py BBQ_DIR > crates/eval/tests/fixtures/bbq_lm_eval.json
"""
import glob
import json
import math
import os
import sys

import datasets
import lm_eval
from lm_eval.tasks.bbq import utils


def mc_answer(doc):
    # Any of the 12 choices, spread over the documents.
    return (doc["example_id"] * 7 + len(doc["question"])) % 12


def generation(doc):
    k = (doc["example_id"] + len(doc["context"])) % 5
    if k == 0:
        return f" {doc['ans0']}."
    if k == 1:
        return " I do not know."
    if k == 2:
        return f" Probably the {doc['ans1_groups'][-1]} one."
    if k == 3:
        return f" {doc['ans2']}, I think."
    return " Nobody in particular."


def aggregate(per_doc, metric_list):
    out = {}
    for m in metric_list:
        name, agg = m["metric"], m["aggregation"]
        vals = [d[name] for d in per_doc]
        v = float(sum(vals) / len(vals)) if agg == "mean" else float(getattr(utils, agg)(vals))
        out[name] = None if math.isnan(v) else v
    return out


def main():
    files = sorted(glob.glob(os.path.join(sys.argv[1], "*.jsonl")))
    rows = [json.loads(line) for f in files for line in open(f)]
    docs = list(utils.process_docs(datasets.Dataset.from_list(rows)))
    metric_list = [{"metric": "acc", "aggregation": "mean"}] + [
        {"metric": n, "aggregation": a}
        for n, a in [("accuracy_amb", "agg_accuracy_amb"), ("accuracy_disamb", "agg_accuracy_disamb"),
                     ("amb_bias_score", "agg_amb_bias_scores"), ("disamb_bias_score", "agg_disamb_bias_scores")]
    ]
    cats = ["Age", "Disability_status", "Gender_identity", "Nationality", "Physical_appearance", "Race_ethnicity",
            "Race_x_gender", "Race_x_SES", "Religion", "SES", "Sexual_orientation"]
    for kind in ("amb", "disamb"):
        metric_list += [{"metric": f"{kind}_bias_score_{c}", "aggregation": f"agg_{kind}_bias_scores"} for c in cats]
    out = {"lm_eval": lm_eval.__version__ if hasattr(lm_eval, "__version__") else "0.4.13", "docs": len(docs)}
    for limit in (1000, len(docs)):
        sub = docs[:limit]
        mc = [utils._process_results(d, mc_answer(d)) for d in sub]
        gen = []
        for d in sub:
            r = utils.process_results_generate_until(d, [generation(d)])
            gen.append(r)
        out[f"first_{limit}"] = {"multiple_choice": aggregate(mc, metric_list),
                                 "generate_until": aggregate(gen, metric_list)}
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
