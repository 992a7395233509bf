"""The tokenizer test corpus (tests/fixtures/tokenizer/corpus.txt), one case per line.

Lines are unescaped before use: \\n, \\t, \\r, \\\\ and \\uXXXX; any other backslash is literal.
crates/models/tests/tokenizer_hf.rs implements the same rule and checks it against the texts
the expected-output files record.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "tokenizer"


def unescape(line: str) -> str:
    out, i = [], 0
    simple = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            n = line[i + 1]
            if n in simple:
                out.append(simple[n])
                i += 2
                continue
            if n == "u" and i + 6 <= len(line):
                try:
                    out.append(chr(int(line[i + 2 : i + 6], 16)))
                    i += 6
                    continue
                except ValueError:
                    pass
        out.append(c)
        i += 1
    return "".join(out)


def read_corpus() -> list[str]:
    raw = (FIXTURES / "corpus.txt").read_text(encoding="utf-8")
    assert raw.endswith("\n"), "corpus.txt must end with a newline"
    return [unescape(line) for line in raw[:-1].split("\n")]
