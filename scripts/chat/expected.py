#!/usr/bin/env python3
"""Golden chat-template renderings from HF transformers, for crates/models/tests/chat_templates.rs.

1. For every `*.jinja` in the llama-cpp-python sdist's `vendor/llama.cpp/models/templates/`, renders each
case of tests/fixtures/chat/cases.json that applies to it with transformers' own renderer
(`render_jinja_template`, the function `apply_chat_template` calls after normalising the messages)
and writes tests/fixtures/chat/expected.json:

    "templates": { "<file>.jinja": { "bos_token": .., "eos_token": .., "cases": { "<case>": {"output": str} | {"error": str} } } }

2. For the npm tokenizer packages (`$PROM_ARTIFACTS/npm/tokenizer-*/models/`), loads the tokenizer
   with `AutoTokenizer` and renders the same cases with `apply_chat_template(tokenize=False)`, so the
   test also covers reading the template and special tokens from `tokenizer_config.json`:

    "tokenizer_configs": { "tokenizer-qwen3": { "<case>": {"output": str} | {"error": str} } }

Run with the reference venv (transformers + jinja2):

    /root/venvs/ref/bin/python scripts/chat/expected.py

`strftime_now` is frozen at FIXED_NOW (UTC) so the fixture does not depend on the day it was made;
the Rust test pins the same instant with `ChatTemplate::with_fixed_time`.
"""

import json
import os
import sys
from datetime import datetime
from pathlib import Path

import jinja2
import transformers
from transformers.utils import chat_template_utils as ctu

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PROM_ARTIFACTS", Path.home() / ".cache/prometheus/artifacts"))
TEMPLATES = ARTIFACTS / "llama-cpp-python-0.3.36/vendor/llama.cpp/models/templates"
CASES = ROOT / "tests/fixtures/chat/cases.json"
OUT = ROOT / "tests/fixtures/chat/expected.json"

# 2025-07-26 09:30:00 UTC; keep in sync with FIXED_NOW_UNIX in crates/models/tests/chat_templates.rs.
FIXED_NOW = datetime(2025, 7, 26, 9, 30, 0)


class FrozenDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


# `strftime_now` in transformers' environment calls the module-level `datetime.now()`.
ctu.datetime = FrozenDatetime

# (substring of the file name, bos, eos); first match wins. The tokens only need to be plausible:
# the test compares renderers, not models. `None` means the tokenizer has no such token, so the
# variable is undefined in the template (transformers drops None entries of special_tokens_map).
TOKENS = [
    ("deepseek", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("Llama-3", "<|begin_of_text|>", "<|eot_id|>"),
    ("llama-3", "<|begin_of_text|>", "<|eot_id|>"),
    ("functionary", "<|begin_of_text|>", "<|eot_id|>"),
    ("Qwen", None, "<|im_end|>"),
    ("gemma", "<bos>", "<eos>"),
    ("granite", "<|end_of_text|>", "<|end_of_text|>"),
    ("Phi-3", "<s>", "<|endoftext|>"),
]


def tokens_for(name):
    for needle, bos, eos in TOKENS:
        if needle in name:
            return bos, eos
    return "<s>", "</s>"


def render(source, case, bos, eos):
    conversation = ctu._normalize_chat_messages(case["messages"])
    kwargs = {}
    if bos is not None:
        kwargs["bos_token"] = bos
    if eos is not None:
        kwargs["eos_token"] = eos
    kwargs.update(case.get("extra", {}))
    rendered, _ = ctu.render_jinja_template(
        conversations=[conversation],
        tools=case.get("tools"),
        chat_template=source,
        add_generation_prompt=case.get("add_generation_prompt", False),
        **kwargs,
    )
    return rendered[0]


def tokenizer_config_cases(cases):
    from transformers import AutoTokenizer

    out = {}
    for model_dir in sorted((ARTIFACTS / "npm").glob("tokenizer-*/models")):
        tok = AutoTokenizer.from_pretrained(model_dir)
        source = tok.chat_template
        entry = {}
        for name, case in cases.items():
            if not all(needle in source for needle in case.get("requires", [])):
                continue
            try:
                text = tok.apply_chat_template(
                    case["messages"],
                    tools=case.get("tools"),
                    add_generation_prompt=case.get("add_generation_prompt", False),
                    tokenize=False,
                    **case.get("extra", {}),
                )
                entry[name] = {"output": text}
            except Exception as e:
                entry[name] = {"error": f"{type(e).__name__}: {e}"}
        out[model_dir.parent.name] = entry
    return out


def main():
    if not TEMPLATES.is_dir():
        sys.exit(f"{TEMPLATES} not found; run scripts/fetch-artifacts.sh first")
    cases = json.loads(CASES.read_text(encoding="utf-8"))["cases"]
    out = {}
    for path in sorted(TEMPLATES.glob("*.jinja")):
        source = path.read_text(encoding="utf-8")
        bos, eos = tokens_for(path.name)
        entry = {"bos_token": bos, "eos_token": eos, "cases": {}}
        for name, case in cases.items():
            if not all(needle in source for needle in case.get("requires", [])):
                continue
            try:
                entry["cases"][name] = {"output": render(source, case, bos, eos)}
            except Exception as e:  # the test only compares cases where Python succeeded
                entry["cases"][name] = {"error": f"{type(e).__name__}: {e}"}
        out[path.name] = entry
    meta = {"transformers": transformers.__version__, "jinja2": jinja2.__version__, "fixed_now": FIXED_NOW.isoformat()}
    tokenizer_configs = tokenizer_config_cases(cases)
    doc = {"_meta": meta, "templates": out, "tokenizer_configs": tokenizer_configs}
    OUT.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    n_ok = sum(1 for t in out.values() for c in t["cases"].values() if "output" in c)
    n_err = sum(1 for t in out.values() for c in t["cases"].values() if "error" in c)
    print(f"{len(out)} templates, {n_ok} renderings, {n_err} errors; tokenizer configs: {sorted(tokenizer_configs)}"
          f" -> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
