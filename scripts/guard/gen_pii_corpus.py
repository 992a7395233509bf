#!/usr/bin/env python3
"""Generates the guard's labelled PII corpus: synthetic sentences with entities (all made up;
no real people's data) and hard negatives that look like entities but are not (order numbers,
version strings, dates, UUIDs, hashes, Luhn-invalid card-like numbers, never-issued SSNs, ...).

    python3 scripts/guard/gen_pii_corpus.py > crates/guard/tests/data/pii_corpus.jsonl

Seeded: the output is the same on every run. One JSON object per line:
{"text": ..., "entities": [{"type": "EMAIL_ADDRESS", "start": 10, "end": 27}], "kind": "positive"|"negative"}
with UTF-8 byte offsets. Checksums (Luhn, IBAN mod-97, base58check, bech32) are computed here
independently of the Rust validators, so the corpus also cross-checks them.
"""

import base64
import hashlib
import json
import random
import string
import uuid

R = random.Random(20261129)
PER_TYPE = 42
NEGATIVES = 560

FIRST = ["alex", "maria", "chen", "fatima", "john", "priya", "lukas", "amara", "sofia", "kenji", "olga", "diego",
         "noah", "leila", "tom", "ines", "yusuf", "emma", "ravi", "zoe"]
LAST = ["smith", "garcia", "wang", "okafor", "novak", "silva", "muller", "tanaka", "rossi", "haddad", "kim",
        "johnson", "dubois", "singh", "lopez", "ivanova"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.co.uk", "test.example.io", "corp.example.de"]


def luhn_complete(prefix, length):
    digits = [int(c) for c in prefix]
    while len(digits) < length - 1:
        digits.append(R.randrange(10))
    for check in range(10):
        cand = digits + [check]
        total = 0
        for i, d in enumerate(reversed(cand)):
            if i % 2 == 1:
                d *= 2
                d = d - 9 if d > 9 else d
            total += d
        if total % 10 == 0:
            return "".join(map(str, cand))
    raise AssertionError


def luhn_ok(num):
    total = 0
    for i, d in enumerate(reversed([int(c) for c in num])):
        if i % 2 == 1:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return total % 10 == 0


def iban(country, bban):
    rearranged = bban + country + "00"
    num = int("".join(str(int(c, 36)) for c in rearranged))
    return f"{country}{98 - num % 97:02d}{bban}"


def digits(n):
    return "".join(R.choice(string.digits) for _ in range(n))


def letters(n):
    return "".join(R.choice(string.ascii_uppercase) for _ in range(n))


def alnum(n, alphabet=string.ascii_letters + string.digits):
    return "".join(R.choice(alphabet) for _ in range(n))


B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58check(version, payload):
    raw = bytes([version]) + payload
    raw += hashlib.sha256(hashlib.sha256(raw).digest()).digest()[:4]
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


BECH = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def polymod(values):
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        b = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (b >> i) & 1 else 0
    return chk


def segwit(version, prog):
    acc, bits, data = 0, 0, [version]
    for b in prog:
        acc = (acc << 8) | b
        bits += 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    const = 1 if version == 0 else 0x2BC830A3
    hrp = "bc"
    exp = [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]
    pm = polymod(exp + data + [0] * 6) ^ const
    return hrp + "1" + "".join(BECH[d] for d in data + [(pm >> 5 * (5 - i)) & 31 for i in range(6)])


def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def group(s, n, sep=" "):
    return sep.join(s[i:i + n] for i in range(0, len(s), n))


# Each generator returns an entity string; templates put it in a sentence.
def email():
    f, l = R.choice(FIRST), R.choice(LAST)
    local = R.choice([f"{f}.{l}", f"{f}{R.randrange(10, 99)}", f"{f[0]}{l}", f"{f}+news", f"{l}.{f}"])
    return f"{local}@{R.choice(DOMAINS)}"


def phone():
    return R.choice([
        lambda: f"+1 {R.randrange(201, 989)} 555 {digits(4)}",
        lambda: f"+1-{R.randrange(201, 989)}-555-{digits(4)}",
        lambda: f"({R.randrange(201, 989)}) 555-{digits(4)}",
        lambda: f"{R.randrange(201, 989)}-555-{digits(4)}",
        lambda: f"{R.randrange(201, 989)}.555.{digits(4)}",
        lambda: f"+44 20 7946 {digits(4)}",
        lambda: f"+44 7700 900{digits(3)}",
        lambda: f"020 7946 {digits(4)}",
        lambda: f"07700 900{digits(3)}",
        lambda: f"+49 30 {digits(7)}",
        lambda: f"+33 1 {digits(2)} {digits(2)} {digits(2)} {digits(2)}",
        lambda: f"+61 2 {digits(4)} {digits(4)}",
        lambda: f"+14155550{digits(3)}",
    ])()


def card():
    kind = R.choice(["visa", "mc", "amex", "disc"])
    if kind == "amex":
        n = luhn_complete(R.choice(["34", "37"]), 15)
        return R.choice([n, f"{n[:4]} {n[4:10]} {n[10:]}", f"{n[:4]}-{n[4:10]}-{n[10:]}"])
    n = luhn_complete({"visa": "4", "mc": f"5{R.randrange(1, 6)}", "disc": "6011"}[kind], 16)
    return R.choice([n, group(n, 4), group(n, 4, "-")])


def iban_code():
    c = R.choice(["GB", "DE", "FR", "NL", "ES", "CH", "IT", "BE"])
    bban = {
        "GB": lambda: letters(4) + digits(14), "DE": lambda: digits(18), "FR": lambda: digits(23),
        "NL": lambda: letters(4) + digits(10), "ES": lambda: digits(20), "CH": lambda: digits(17),
        "IT": lambda: letters(1) + digits(22), "BE": lambda: digits(12),
    }[c]()
    s = iban(c, bban)
    return R.choice([s, group(s, 4)])


def ssn():
    area = R.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{R.randrange(1, 100):02d}-{R.randrange(1, 10000):04d}"


def ip():
    if R.random() < 0.65:
        return ".".join(str(R.randrange(1, 255)) for _ in range(4))
    groups = [f"{R.randrange(0, 65536):x}" for _ in range(8)]
    return R.choice([":".join(groups), f"2001:db8::{groups[2]}:{groups[3]}", f"fe80::{groups[4]}:{groups[5]}:{groups[6]}"])


def mac():
    b = [f"{R.randrange(256):02x}" for _ in range(6)]
    s = R.choice([":".join(b), "-".join(b).upper(), f"{b[0]}{b[1]}.{b[2]}{b[3]}.{b[4]}{b[5]}"])
    return s


def url():
    host = R.choice(["example.com", "docs.example.org", "shop.example.net", "example.io"])
    path = R.choice(["", "/", "/login", "/a/b?id=" + digits(4), "/docs/intro.html", "/u/" + R.choice(FIRST)])
    return R.choice([f"https://{host}{path}", f"http://{host}{path}", f"www.{host}{path}"])


def crypto():
    if R.random() < 0.5:
        return b58check(R.choice([0, 5]), R.randbytes(20))
    return segwit(0, R.randbytes(20)) if R.random() < 0.7 else segwit(1, R.randbytes(32))


def aws():
    return R.choice(["AKIA", "ASIA"]) + alnum(16, string.ascii_uppercase + string.digits)


def github():
    if R.random() < 0.8:
        return R.choice(["ghp_", "gho_", "ghs_", "ghu_"]) + alnum(36)
    return "github_pat_" + alnum(22) + "_" + alnum(59)


def gitlab():
    return "glpat-" + alnum(20, string.ascii_letters + string.digits + "_-")


def slack():
    return R.choice([
        lambda: f"xoxb-{digits(12)}-{digits(13)}-{alnum(24)}",
        lambda: f"xoxp-{digits(12)}-{digits(12)}-{digits(13)}-{alnum(32, '0123456789abcdef')}",
        lambda: f"https://hooks.slack.com/services/T{letters(8)}/B{letters(8)}/{alnum(24)}",
    ])()


def private_key():
    kind = R.choice(["", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED "])
    body = "\n".join(base64.b64encode(R.randbytes(48)).decode() for _ in range(R.randrange(3, 8)))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


def jwt():
    header = b64url(json.dumps({"alg": R.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"sub": digits(8), "name": R.choice(FIRST), "iat": 1700000000 + R.randrange(10**6)}).encode())
    return f"{header}.{payload}.{b64url(R.randbytes(32))}"


GENERATORS = {
    "EMAIL_ADDRESS": (email, ["Please email {} about the invoice.", "Contact: {}", "my address is {} thanks",
                              "Send the draft to {} before Friday.", "cc {} on the thread"]),
    "PHONE_NUMBER": (phone, ["Call me at {} tomorrow.", "My phone number is {}.", "Tel: {}", "reach me on {} after 6pm",
                             "You can text {} anytime.", "mobile {} (whatsapp too)"]),
    "CREDIT_CARD": (card, ["Card number: {}", "I paid with {} last week.", "visa {} exp 04/27", "charge it to {}",
                           "the card {} was declined"]),
    "IBAN_CODE": (iban_code, ["IBAN: {}", "Please transfer it to {} by Monday.", "bank account {}", "wire to {} (ref 2231)"]),
    "US_SSN": (ssn, ["SSN: {}", "my social security number is {}", "ssn {} on the W-2", "Employee SSN {} verified"]),
    "IP_ADDRESS": (ip, ["The server is at {}.", "connect to {} on port 22", "request from IP {} blocked", "host {} is down"]),
    "MAC_ADDRESS": (mac, ["MAC address {}", "device {} joined the wifi", "the NIC reports {}", "whitelist {} on the router"]),
    "URL": (url, ["See {} for details.", "visit {}", "the link is {}", "I uploaded it to {} yesterday"]),
    "CRYPTO": (crypto, ["Send BTC to {}", "my bitcoin wallet: {}", "donations: {}", "pay to address {} please"]),
    "AWS_ACCESS_KEY": (aws, ["aws_access_key_id = {}", "the key {} was leaked", "export AWS_ACCESS_KEY_ID={}"]),
    "GITHUB_TOKEN": (github, ["token: {}", "GITHUB_TOKEN={}", "use {} for the CI push", "git clone https://{}@example.com/repo"]),
    "GITLAB_TOKEN": (gitlab, ["GITLAB_TOKEN={}", "private token {}", "curl -H 'PRIVATE-TOKEN: {}' $GITLAB_API"]),
    "SLACK_TOKEN": (slack, ["SLACK_BOT_TOKEN={}", "post with {}", "the webhook is {}"]),
    "PRIVATE_KEY": (private_key, ["here is the key:\n{}\nkeep it safe", "{}", "id_rsa:\n{}"]),
    "JWT": (jwt, ["Authorization: Bearer {}", "the session token is {}", "jwt={}"]),
}

# Hard negatives: things that look like entities and are not.
def neg_order():
    return R.choice([f"Order #{digits(R.randrange(5, 9))} has shipped.", f"order number {digits(10)} is delayed",
                     f"Your ticket INC-{digits(7)} was updated.", f"Invoice {digits(4)}-{digits(4)} is due.",
                     f"PO {letters(2)}-{digits(6)} approved", f"Tracking 1Z{alnum(6, string.ascii_uppercase + string.digits)}{digits(10)}"])


def neg_version():
    return R.choice([f"Upgrade to version {R.randrange(1, 20)}.{R.randrange(30)}.{R.randrange(30)}.{R.randrange(300)} today.",
                     f"Windows build 10.0.{digits(5)}.{digits(4)}", f"release {R.randrange(1, 9)}.{R.randrange(9)}.{R.randrange(99)}",
                     f"pip install torch=={R.randrange(1, 3)}.{R.randrange(9)}.{R.randrange(9)}",
                     f"firmware v{R.randrange(1, 9)}.{R.randrange(9)}.{R.randrange(9)}.{R.randrange(99)}",
                     f"see RFC {digits(4)} section {R.randrange(1, 9)}.{R.randrange(1, 9)}.{R.randrange(1, 9)}",
                     f"OID 1.3.6.1.4.1.{digits(5)}"])


def neg_date():
    y, m, d = R.randrange(1990, 2030), R.randrange(1, 13), R.randrange(1, 29)
    return R.choice([f"Meeting on {y}-{m:02d}-{d:02d} at {R.randrange(24):02d}:{R.randrange(60):02d}:{R.randrange(60):02d}.",
                     f"Born {m:02d}/{d:02d}/{y}, joined {d}.{m}.{y}", f"timestamp {y}{m:02d}{d:02d}T{digits(6)}Z",
                     f"epoch {R.randrange(1_500_000_000, 1_800_000_000)} ms", f"deadline {d} {R.choice(['Jan', 'Mar', 'Sep'])} {y}"])


def neg_uuid():
    return R.choice([f"request id {uuid.UUID(int=R.getrandbits(128))}", f"trace {uuid.UUID(int=R.getrandbits(128)).hex}",
                     f"session={uuid.UUID(int=R.getrandbits(128))}"])


def neg_hash():
    h = hashlib.sha256(R.randbytes(16)).hexdigest()
    return R.choice([f"commit {h[:40]}", f"sha256: {h}", f"md5 {h[:32]}", f"fixed in {h[:7]}", f"etag \"{h[:16]}\"",
                     f"color #{h[:6]} and #{h[6:12]}"])


def neg_cardlike():
    while True:
        n = "4" + digits(15)
        if not luhn_ok(n):
            return R.choice([f"ref {n}", f"account no {group(n, 4)} (internal)", f"serial {n}"])


def neg_ssnlike():
    return R.choice([f"code {R.choice(['000', '666', '9' + digits(2)])}-{digits(2)}-{digits(4)}",
                     f"form {digits(3)}-00-{digits(4)}", f"part {digits(3)}-{digits(2)}-0000",
                     f"ITIN 9{digits(2)}-7{digits(1)}-{digits(4)}"])


def neg_ibanlike():
    good = iban("GB", letters(4) + digits(14))
    bad = good[:2] + f"{(int(good[2:4]) + 1) % 100:02d}" + good[4:]
    return R.choice([f"ref {bad}", f"IBAN {bad[:-1]} (truncated)", f"code {letters(2)}{digits(2)}{letters(4)}{digits(6)}"])


def neg_misc():
    return R.choice([f"price ${R.randrange(1, 999)}.{digits(2)} for {R.randrange(2, 9)} items", f"call stack depth {digits(3)}",
                     f"coordinates {R.uniform(-90, 90):.5f}, {R.uniform(-180, 180):.5f}",
                     f"ISBN 978-{digits(1)}-{digits(3)}-{digits(5)}-{digits(1)}", f"ZIP {digits(5)}-{digits(4)}",
                     f"file report_{digits(8)}.pdf in /var/log/app/{digits(4)}", f"std::collections::HashMap and Vec::new",
                     f"the ratio was {digits(1)}:{digits(2)}:{digits(2)}", f"room {digits(3)}, floor {digits(1)}, ext. {digits(4)}",
                     f"x = {digits(3)}.{digits(3)}.{digits(3)}", f"temperature 12:30:45 reading", f"error 0x{digits(8)}",
                     f"base64 data: {base64.b64encode(R.randbytes(24)).decode()}", f"api version 2024-{digits(2)}-01"])


NEG = [neg_order, neg_version, neg_date, neg_uuid, neg_hash, neg_cardlike, neg_ssnlike, neg_ibanlike, neg_misc]


def record(text, ents, kind):
    spans = []
    for t, s, e in ents:
        spans.append({"type": t, "start": len(text[:s].encode()), "end": len(text[:e].encode())})
    return {"text": text, "entities": spans, "kind": kind}


def main():
    out = []
    for typ, (gen, templates) in GENERATORS.items():
        for _ in range(PER_TYPE):
            value = gen()
            tpl = R.choice(templates)
            pre = tpl.split("{}")[0]
            text = tpl.format(value)
            ents = [(typ, len(pre), len(pre) + len(value))]
            if "@example.com/repo" in tpl:  # the host and path after the credentials are a URL too
                at = text.index("@example.com/repo") + 1
                ents.append(("URL", at, at + len("example.com/repo")))
            # A third of positives also carry a hard negative, so precision is measured in context.
            if R.random() < 0.33:
                extra = R.choice(NEG)()
                text = text + " " + extra
            out.append(record(text, ents, "positive"))
    for _ in range(NEGATIVES):
        out.append(record(R.choice(NEG)(), [], "negative"))
    R.shuffle(out)
    for r in out:
        print(json.dumps(r, ensure_ascii=False))


if __name__ == "__main__":
    main()
