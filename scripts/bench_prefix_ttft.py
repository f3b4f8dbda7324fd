#!/usr/bin/env python3
"""scripts/bench_prefix_ttft.py - time-to-first-token with a long shared
system prompt, prefix-cache hit vs miss, on one running `loom serve`
(docs/adr/0035).

    scripts/bench_prefix_ttft.py --url http://127.0.0.1:8080 [--system-tokens 1000] [--reps 5]

Miss: a chat request whose ~N-token system prompt starts with a word never
used before (so no KV block of it is cached). Hit: the same request again
(its system prompt's blocks were cached by the miss). Each pair runs --reps
times, alternating, streaming with max_tokens 1; TTFT is the time from
sending the request to the first SSE chunk with content. Reports the
medians and their ratio. Standard library only.
"""
import argparse
import http.client
import json
import statistics
import time
import urllib.parse

# common words that BPE vocabularies hold as one token (with the leading space)
WORDS = ("the of and to in is it for on with as at by be this that from or an are was "
         "not but all can one had her has his how man new now old see two way who boy "
         "did its let put say she too use").split()


def system_prompt(tag, n_tokens):
    # about one token per word (SmolLM2: 1,000 words -> ~1,010 tokens)
    words = [WORDS[(i * 7) % len(WORDS)] for i in range(n_tokens - 12)]
    return "Session %s. You are a careful assistant. Context: %s." % (tag, " ".join(words))


def model_id(host, port):
    c = http.client.HTTPConnection(host, port, timeout=60)
    c.request("GET", "/v1/models")
    j = json.loads(c.getresponse().read())
    c.close()
    return j["data"][0]["id"]


def ttft(host, port, model, system, question):
    body = json.dumps({"model": model, "max_tokens": 1, "temperature": 0, "stream": True,
                       "messages": [{"role": "system", "content": system},
                                    {"role": "user", "content": question}]})
    t0 = time.perf_counter()
    c = http.client.HTTPConnection(host, port, timeout=600)
    c.request("POST", "/v1/chat/completions", body=body,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError("HTTP %d: %s" % (r.status, r.read()[:200]))
    first = None
    buf = b""
    while True:
        d = r.read1(65536)
        if not d:
            break
        buf += d
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            if first is None and ev.startswith(b"data: {"):
                j = json.loads(ev[6:])
                if j["choices"] and (j["choices"][0]["delta"].get("content") or
                                     j["choices"][0].get("finish_reason")):
                    first = time.perf_counter() - t0
    c.close()
    return first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--system-tokens", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    miss, hit = [], []
    tag = "%x" % int(time.time() * 1000)
    model = model_id(u.hostname, u.port)
    for i in range(a.reps):
        sp = system_prompt("%s-%d" % (tag, i), a.system_tokens)
        miss.append(ttft(u.hostname, u.port, model, sp, "Say hello."))
        hit.append(ttft(u.hostname, u.port, model, sp, "Say goodbye."))
    m, h = statistics.median(miss), statistics.median(hit)
    print("system prompt ~%d tokens, %d reps: TTFT miss p50 %.1f ms (min %.1f), "
          "hit p50 %.1f ms (min %.1f): %.1fx"
          % (a.system_tokens, a.reps, m * 1e3, min(miss) * 1e3, h * 1e3, min(hit) * 1e3, m / h))


if __name__ == "__main__":
    main()
