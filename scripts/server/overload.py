#!/usr/bin/env python3
"""Overload and disconnect-storm check for a running `prom serve` (stdlib only).

    python3 scripts/server/overload.py --base-url http://127.0.0.1:8000 [--factor 10] [--duration 20]

1. Overload: `factor × capacity` clients (capacity = prom_server_capacity from /metrics, i.e.
   --max-num-seqs + --max-queue) stream completions back to back for `duration` seconds, retrying
   at once on 429. Checks: the server stays up (/health answers during the load), the excess is
   answered with 429 + Retry-After (never 5xx, never a dropped connection), and the server never
   holds more than its capacity (prom_server_requests_in_flight sampled during the load).
2. Disconnect storm: `storm` clients open long streams (retrying 429s), read a chunk or two and close
   their sockets.
3. Afterwards /metrics must show zero running, waiting and in-flight sequences and KV usage back to
   0 (the cached-only level: cached blocks are free blocks) within 30 s.

Bounded in requests and time; talks only to the given (loopback) address. Exits non-zero on a failure.
"""

import argparse
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter


def metrics(base):
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def stream_once(host, port, body, read_chunks=None, timeout=120):
    """POSTs a streaming completion. Returns (status, retry_after, events_read, completed)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status != 200:
            r.read()
            return r.status, r.getheader("Retry-After"), 0, False
        events = 0
        while True:
            line = r.readline()
            if not line:
                return 200, None, events, False
            if line.startswith(b"data: "):
                if line.strip() == b"data: [DONE]":
                    return 200, None, events, True
                events += 1
                if read_chunks is not None and events >= read_chunks:
                    # Abrupt disconnect mid-stream.
                    conn.sock.close()
                    return 200, None, events, False
    finally:
        conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--factor", type=int, default=10)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--storm", type=int, default=50)
    p.add_argument("--max-tokens", type=int, default=24)
    a = p.parse_args()
    u = urllib.parse.urlparse(a.base_url)
    host, port = u.hostname, u.port
    base = a.base_url.rstrip("/")

    m0 = metrics(base)
    capacity = int(m0["prom_server_capacity"])
    clients = a.factor * capacity
    print(f"capacity {capacity} sequences; {clients} clients for {a.duration:.0f} s")

    results = Counter()
    retry_after_ok = [True]
    lock = threading.Lock()
    deadline = time.time() + a.duration
    body = {"prompt": "Write a long story about a lighthouse keeper.", "max_tokens": a.max_tokens,
            "ignore_eos": True, "stream": True}

    def client():
        while time.time() < deadline:
            try:
                st, ra, _, done = stream_once(host, port, body)
                key = f"{st}" if st != 200 else ("200 complete" if done else "200 cut")
                if st == 429 and not (ra and ra.isdigit() and int(ra) >= 1):
                    retry_after_ok[0] = False
            except Exception as e:  # a refused or reset connection counts against the server
                key = f"error {type(e).__name__}"
            with lock:
                results[key] += 1
            if key == "429":
                time.sleep(random.uniform(0.01, 0.05))

    peak_in_flight, health_worst = 0.0, 0.0

    def watch():
        nonlocal peak_in_flight, health_worst
        while time.time() < deadline:
            t = time.time()
            urllib.request.urlopen(base + "/health", timeout=10).read()
            health_worst = max(health_worst, time.time() - t)
            peak_in_flight = max(peak_in_flight, metrics(base)["prom_server_requests_in_flight"])
            time.sleep(0.2)

    threads = [threading.Thread(target=client) for _ in range(clients)] + [threading.Thread(target=watch)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"overload phase: {dict(results)} in {time.time() - t0:.1f} s")
    print(f"peak prom_server_requests_in_flight {peak_in_flight:.0f} (capacity {capacity}); "
          f"slowest /health {health_worst * 1000:.0f} ms")

    # Disconnect storm.
    storm = Counter()
    long_body = dict(body, max_tokens=2000)

    def quitter():
        # Retry 429s (the storm is larger than the capacity) until a stream opens, then cut it.
        end = time.time() + 60
        while True:
            try:
                st, _, n, _ = stream_once(host, port, long_body, read_chunks=random.randint(1, 3))
                key = f"{st}"
            except Exception as e:
                key = f"error {type(e).__name__}"
            if key != "429" or time.time() > end:
                break
            time.sleep(random.uniform(0.01, 0.05))
        with lock:
            storm[key] += 1

    ts = [threading.Thread(target=quitter) for _ in range(a.storm)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(f"disconnect storm: {dict(storm)}")

    # Back to idle.
    t0 = time.time()
    while True:
        m = metrics(base)
        idle = (m["prom_num_requests_running"] == 0 and m["prom_num_requests_waiting"] == 0
                and m["prom_server_requests_in_flight"] == 0 and m["prom_kv_cache_usage_ratio"] == 0)
        if idle or time.time() - t0 > 30:
            break
        time.sleep(0.2)
    keys = ["prom_num_requests_running", "prom_num_requests_waiting", "prom_server_requests_in_flight",
            "prom_kv_cache_usage_ratio", 'prom_request_finished_total{finish_reason="length"}',
            'prom_request_finished_total{finish_reason="abort"}',
            'prom_http_requests_total{route="/v1/completions",status="200"}',
            'prom_http_requests_total{route="/v1/completions",status="429"}']
    print(f"after {time.time() - t0:.1f} s: " + ", ".join(f"{k} {m.get(k, 0):g}" for k in keys))

    failures = []
    if not idle:
        failures.append("the server did not return to idle (running/waiting/in-flight 0, KV usage 0)")
    bad = {k: v for k, v in results.items() if k not in ("200 complete", "429")}
    if bad:
        failures.append(f"overload answers other than a complete 200 or a 429: {bad}")
    if results["429"] == 0:
        failures.append("no 429 at 10x capacity")
    if results["200 complete"] == 0:
        failures.append("no request completed under overload")
    if not retry_after_ok[0]:
        failures.append("a 429 lacked a Retry-After of >= 1 s")
    if peak_in_flight > capacity:
        failures.append(f"in-flight {peak_in_flight} exceeded capacity {capacity}")
    if any(not k.startswith("200") for k in storm):
        failures.append(f"storm clients got {dict(storm)}")
    print("overload: " + ("1 passed, 0 failed" if not failures else "0 passed, 1 failed\n  " + "\n  ".join(failures)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
