#!/usr/bin/env python3
"""The official `openai` Python SDK against a running `prom serve`.

    python scripts/server/openai_sdk_test.py --base-url http://127.0.0.1:8000/v1 --model smol --api-key KEY

Covers chat and completions, streaming and not, n > 1, logprobs (both shapes), echo, token-id
prompts, vLLM extensions through `extra_body`, the SDK's typed errors (400, 401, 404), and that
/openapi.json is a valid OpenAPI 3 document (openapi-spec-validator).
Run by crates/cli/tests/serve_openai_sdk.rs, which starts the server; exits non-zero on a failure.
"""

import argparse
import sys
import traceback

import openai

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def msgs(text):
    return [{"role": "user", "content": text}]


@check
def openapi_document_is_valid_openapi_3(c, model, args):
    import json
    import urllib.request

    from openapi_spec_validator import validate

    root = args.base_url.rstrip("/").removesuffix("/v1")
    doc = json.load(urllib.request.urlopen(root + "/openapi.json"))
    validate(doc)
    assert doc["openapi"].startswith("3.") and "/v1/chat/completions" in doc["paths"], doc["openapi"]


@check
def models_list(c, model, args):
    ids = [m.id for m in c.models.list().data]
    assert ids == [model], ids


@check
def chat_non_streaming_and_streaming_agree(c, model, args):
    kw = dict(model=model, messages=msgs("Name a fruit."), temperature=0, max_tokens=8)
    r = c.chat.completions.create(**kw)
    ch = r.choices[0]
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-"), r
    assert ch.message.role == "assistant" and ch.message.content, ch
    assert ch.finish_reason in ("stop", "length"), ch.finish_reason
    assert r.usage.completion_tokens <= 8 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    parts, usage, finishes = [], None, []
    for chunk in c.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        for d in chunk.choices:
            parts.append(d.delta.content or "")
            if d.finish_reason:
                finishes.append(d.finish_reason)
    assert "".join(parts) == ch.message.content, ("".join(parts), ch.message.content)
    assert finishes == [ch.finish_reason], finishes
    assert usage is not None and usage.completion_tokens == r.usage.completion_tokens, usage


@check
def chat_n_and_seed(c, model, args):
    kw = dict(model=model, messages=msgs("Say something."), n=3, temperature=1.0, seed=11, max_tokens=6)
    r = c.chat.completions.create(**kw)
    assert [ch.index for ch in r.choices] == [0, 1, 2]
    again = c.chat.completions.create(**kw)
    assert [ch.message.content for ch in again.choices] == [ch.message.content for ch in r.choices]
    seen = {}
    for chunk in c.chat.completions.create(**kw, stream=True):
        for d in chunk.choices:
            seen[d.index] = seen.get(d.index, "") + (d.delta.content or "")
    assert sorted(seen) == [0, 1, 2], seen
    assert [seen[i] for i in range(3)] == [ch.message.content for ch in r.choices]


@check
def chat_logprobs(c, model, args):
    r = c.chat.completions.create(model=model, messages=msgs("Hello!"), temperature=0, max_tokens=5,
                                  logprobs=True, top_logprobs=2, extra_body={"ignore_eos": True})
    content = r.choices[0].logprobs.content
    assert len(content) == 5, content
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 2 and t.bytes is not None
        assert t.token == t.top_logprobs[0].token  # greedy
    assert "".join(t.token for t in content) == r.choices[0].message.content


@check
def completions_streaming_and_not(c, model, args):
    kw = dict(model=model, prompt="The capital of France is", temperature=0, max_tokens=6)
    r = c.completions.create(**kw)
    assert r.object == "text_completion" and r.choices[0].text
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(**kw, stream=True) if ch.choices)
    assert streamed == r.choices[0].text, (streamed, r.choices[0].text)


@check
def completions_n_logprobs_echo(c, model, args):
    r = c.completions.create(model=model, prompt="Once upon a time", n=2, max_tokens=4, logprobs=3, echo=True,
                             temperature=0, extra_body={"ignore_eos": True})
    assert [ch.index for ch in r.choices] == [0, 1]
    for ch in r.choices:
        lp = ch.logprobs
        assert ch.text.startswith("Once upon a time"), ch.text
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        assert all(x is not None and x <= 0 for x in lp.token_logprobs[1:])
        assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
        assert all(3 <= len(t) <= 4 for t in lp.top_logprobs[1:]), lp.top_logprobs
    assert r.choices[0].text == r.choices[1].text  # greedy


@check
def completions_token_id_prompts_and_batches(c, model, args):
    r = c.completions.create(model=model, prompt=[[504, 3575, 282], [19556]], max_tokens=3, temperature=0)
    assert len(r.choices) == 2 and r.usage.prompt_tokens == 4, r.usage


@check
def vllm_extensions_via_extra_body(c, model, args):
    r = c.completions.create(model=model, prompt="Hi", max_tokens=4, temperature=0.8, seed=3,
                             extra_body={"top_k": 5, "min_p": 0.05, "repetition_penalty": 1.1, "min_tokens": 4})
    assert r.usage.completion_tokens == 4, r.usage


@check
def typed_errors(c, model, args):
    try:
        c.chat.completions.create(model=model, messages=msgs("x"), temperature=-1)
        raise AssertionError("temperature -1 accepted")
    except openai.BadRequestError as e:
        assert "temperature" in str(e) and "-1" in str(e), e
    try:
        c.chat.completions.create(model="no-such-model", messages=msgs("x"))
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as e:
        assert "no-such-model" in str(e), e
    if args.api_key != "unused":
        bad = openai.OpenAI(base_url=args.base_url, api_key="wrong-key", max_retries=0)
        try:
            bad.models.list()
            raise AssertionError("wrong key accepted")
        except openai.AuthenticationError:
            pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--api-key", default="unused")
    args = p.parse_args()
    c = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=120)
    passed = failed = 0
    for fn in CHECKS:
        try:
            fn(c, args.model, args)
            passed += 1
            print(f"ok   {fn.__name__}")
        except Exception:
            failed += 1
            print(f"FAIL {fn.__name__}\n{traceback.format_exc()}")
    print(f"openai {openai.__version__}: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
