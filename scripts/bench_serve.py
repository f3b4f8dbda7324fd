#!/usr/bin/env python3
"""scripts/bench_serve.py - load test for an OpenAI-compatible server.

    scripts/bench_serve.py --url http://127.0.0.1:8080 --clients 1,4,16 \
        --requests 2 --max-tokens 64 [--prompt TEXT] [--api-key KEY] [--json OUT]

Each client runs --requests streaming /v1/completions requests back to back
(greedy, ignoring EOS is not possible over the API, so short answers count
what they got). Reports per concurrency level: aggregate generated tokens/s
(tokens from usage / wall time), time-to-first-token p50/p99 and
inter-token latency p50 (between SSE chunks). Servers that send no usage
(llama-cpp-python's) are counted in chunks that carry text. --json appends one
JSON object per level to OUT (scripts/bench_serve_peers.sh reads them).
Standard library only.
"""
import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse


def one(host, port, body, headers, out):
    t0 = time.perf_counter()
    c = http.client.HTTPConnection(host, port, timeout=300)
    c.request("POST", "/v1/completions", body=body, headers=headers)
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError("HTTP %d: %s" % (r.status, r.read()[:200]))
    buf, times, usage = b"", [], None
    while True:
        d = r.read1(65536)
        if not d:
            break
        buf += d.replace(b"\r\n", b"\n")
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            # only data lines: sse-starlette (llama-cpp-python) also sends
            # ": ping" comments
            data = b"".join(ln[5:].strip() for ln in ev.split(b"\n") if ln.startswith(b"data:"))
            if not data or data == b"[DONE]":
                continue
            j = json.loads(data)
            if j.get("usage"):
                usage = j["usage"]
            if j["choices"] and j["choices"][0]["text"]:
                times.append(time.perf_counter())
    c.close()
    out.append((t0, times, usage["completion_tokens"] if usage else len(times)))


def level(host, port, n, reqs, body, headers):
    results, errors = [], []

    def client():
        try:
            for _ in range(reqs):
                one(host, port, body, headers, results)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    th = [threading.Thread(target=client) for _ in range(n)]
    t0 = time.perf_counter()
    for t in th:
        t.start()
    for t in th:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    toks = sum(r[2] for r in results)
    ttft = sorted(r[1][0] - r[0] for r in results if r[1])
    itl = [b - a for r in results for a, b in zip(r[1], r[1][1:])]

    def pct(v, p):
        return v[min(len(v) - 1, int(p * len(v)))] * 1000 if v else float("nan")

    return toks / wall, pct(ttft, 0.5), pct(ttft, 0.99), (statistics.median(itl) * 1000 if itl else float("nan")), toks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt", default="Once upon a time, in a land far away,")
    ap.add_argument("--api-key")
    ap.add_argument("--json", help="append one JSON line per concurrency level to this file")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    headers = {"Content-Type": "application/json"}
    if a.api_key:
        headers["Authorization"] = "Bearer " + a.api_key
    body = json.dumps({"prompt": a.prompt, "max_tokens": a.max_tokens, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}})
    print("| clients | tokens | aggregate tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in [int(x) for x in a.clients.split(",")]:
        tps, t50, t99, itl, toks = level(u.hostname, u.port or 80, n, a.requests, body, headers)
        print("| %d | %d | %.1f | %.1f | %.1f | %.1f |" % (n, toks, tps, t50, t99, itl), flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(json.dumps({"clients": n, "requests": n * a.requests, "tokens": toks,
                                    "tok_s": tps, "ttft_p50_ms": t50, "ttft_p99_ms": t99,
                                    "itl_p50_ms": itl}) + "\n")


if __name__ == "__main__":
    main()
