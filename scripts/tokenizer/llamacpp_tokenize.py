#!/usr/bin/env python3
"""Records llama.cpp's token ids for every line of tests/fixtures/tokenizer/corpus.txt.

    llamacpp_tokenize.py LLAMA_TOKENIZE MODEL.gguf OUT.json

Runs the `llama-tokenize` binary once per corpus line and per special-token mode: with
special-token text parsed (the tool's default, as llama.cpp's server tokenizes prompts) and
with `--no-parse-special`. BOS/EOS are added when the model asks for them (the tool passes
add_special = the model's add_bos flag). Each line's bytes go through a file with `--no-escape`,
so what llama.cpp sees is exactly the unescaped corpus text.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the repo
sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import REPO, read_corpus  # noqa: E402


def tokenize(binary: Path, model: Path, text: str, parse_special: bool) -> list[int]:
    with tempfile.NamedTemporaryFile("wb", suffix=".txt") as f:
        f.write(text.encode("utf-8"))
        f.flush()
        cmd = [str(binary), "-m", str(model), "-f", f.name, "--ids", "--no-escape", "--log-disable"]
        if not parse_special:
            cmd.append("--no-parse-special")
        env = {"LD_LIBRARY_PATH": str(binary.parent)}
        out = subprocess.run(cmd, capture_output=True, check=True, env=env).stdout.decode()
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    binary, model, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    info_file = binary.parent.parent / "prometheus-build-info.json"
    commit = json.loads(info_file.read_text()).get("llama_cpp_commit") if info_file.exists() else None
    cases = [
        {
            "text": text,
            "ids": tokenize(binary, model, text, True),
            "ids_literal": tokenize(binary, model, text, False),
        }
        for text in read_corpus()
    ]
    doc = {
        "generated_by": "scripts/tokenizer/llamacpp_tokenize.py (llama-tokenize)",
        "llama_cpp_commit": commit,
        "model": model.name,
        "cases": cases,
    }
    out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out} ({len(cases)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
