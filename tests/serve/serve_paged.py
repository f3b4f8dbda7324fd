#!/usr/bin/env python3
"""tests/serve/serve_paged.py LOOM MODEL - the paged KV cache of `loom serve`
(docs/adr/0035) is invisible in the output: with greedy sampling a request's
tokens are the same whether it ran alone without the prefix cache, alone
after a prefix hit, beside 15 others sharing its prefix, or in a pool so
small that requests are preempted and recomputed. Also: a prefix hit is
counted in /metrics, no KV block stays held once every request is done, and
a client that disconnects mid-stream frees its blocks at once.
"""
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import LIGHT, Server, main_guard, sse_events  # noqa: E402

N = 16
MAX_TOKENS = 6 if LIGHT else 12
SYSTEM = "You are a helpful assistant who answers briefly and politely. " * (3 if LIGHT else 6)
PROMPTS = [SYSTEM + "Question %d: what is %s?" % (i, w) for i, w in enumerate(
    ["a cat", "a dog", "the sea", "a tree", "rain", "the moon", "a song", "a city",
     "bread", "a river", "snow", "a bird", "fire", "a book", "the wind", "a star"])]
POOL = 6 if LIGHT else 16  # KV blocks for about one and a half (light) or three requests
COMMON = ["--parallel", str(N), "--ctx", "512", "--prefill-chunk", "32", "--kv-block", "16"]


def complete(port, prompt, out, i, max_tokens=MAX_TOKENS):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/completions",
              body=json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                               "stream": True, "stream_options": {"include_usage": True}}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, r.status
    ev = sse_events(r)
    c.close()
    assert ev[-1] == "[DONE]", ev[-1]
    chunks = [json.loads(e) for e in ev[:-1]]
    text = "".join(k["choices"][0]["text"] for k in chunks if k["choices"])
    out[i] = (text, chunks[-1]["usage"]["completion_tokens"])


def run_all(port, prompts):
    out = [None] * len(prompts)
    th = [threading.Thread(target=complete, args=(port, p, out, i)) for i, p in enumerate(prompts)]
    for t in th:
        t.start()
    for t in th:
        t.join(timeout=300)
    assert all(o is not None for o in out), out
    return out


def solo(port, i):
    return run_all(port, [PROMPTS[i]])[0]


def check_same(want, got, what):
    for i, (a, b) in enumerate(zip(want, got)):
        assert a == b, "prompt %d %s: %r != alone without prefix cache %r" % (i, what, b, a)


def check_idle(s, what):
    # the engine publishes counts after its step; give it a moment
    for _ in range(100):
        if s.metric("loom_kv_blocks_used") == 0 and s.metric("loom_active_slots") == 0:
            return
        time.sleep(0.05)
    raise AssertionError("%s: %s KV blocks still used, %s slots active"
                         % (what, s.metric("loom_kv_blocks_used"), s.metric("loom_active_slots")))


def disconnect_frees(s):
    """A streaming client that goes away mid-stream frees its blocks at once."""
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    c.request("POST", "/v1/completions",
              body=json.dumps({"prompt": PROMPTS[3] + " and more", "max_tokens": 400,
                               "temperature": 0, "stream": True}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200
    r.fp.readline()  # the first event: it is running and holds blocks
    used = s.metric("loom_kv_blocks_used")
    assert used and used > 0, "a running request holds no KV blocks (%r)" % used
    c.sock.close()
    c.close()
    t0 = time.time()
    check_idle(s, "after a disconnect")
    print("disconnect: %d blocks freed %.2f s after the client closed" % (used, time.time() - t0))


def run(loom, model):
    # 1. Every prompt alone, no prefix cache, in a pool for about three
    #    (light: one and a half) requests: the reference outputs (one request
    #    fits, nothing is preempted). Then all 16 at once in the same pool:
    #    requests are preempted and recomputed, nothing is dropped and the
    #    outputs do not change.
    with Server(loom, model, *COMMON, "--no-prefix-cache", "--kv-blocks", str(POOL)) as s:
        want = [solo(s.port, i) for i in range(N)]
        assert s.metric("loom_prefix_cache_tokens_total") == 0
        assert s.metric("loom_preemptions_total") == 0, "a request alone was preempted"
        check_same(want, run_all(s.port, PROMPTS), "beside 15 others in a %d-block pool" % POOL)
        pre = s.metric("loom_preemptions_total")
        assert pre and pre > 0, "no preemption in a %d-block pool (%r)" % (POOL, pre)
        check_idle(s, "after the preempted batch")
        print("%d-block pool: %d preemptions, outputs unchanged" % (POOL, pre))
        assert s.stop() == 0

    # 2. Prefix cache on: a miss, a hit, 16 at once, hits alone.
    with Server(loom, model, *COMMON) as s:
        check_same(want[:1], [solo(s.port, 0)], "alone (miss)")
        assert s.metric("loom_prefix_cache_tokens_total") == 0
        check_same(want[:1], [solo(s.port, 0)], "alone after a prefix hit")
        hit = s.metric("loom_prefix_cache_tokens_total")
        assert hit and hit >= 16, "no prefix hit counted (%r)" % hit
        check_same(want, run_all(s.port, PROMPTS), "beside 15 others")
        again = [solo(s.port, i) for i in range(0, N, 8 if LIGHT else 5)]
        check_same(want[::8 if LIGHT else 5], again, "alone after a prefix hit")
        check_idle(s, "after the batch")
        assert s.metric("loom_kv_blocks_cached") > 0
        print("prefix cache: %d prompt tokens reused; %d of %d blocks cached"
              % (s.metric("loom_prefix_cache_tokens_total"), s.metric("loom_kv_blocks_cached"),
                 s.metric("loom_kv_blocks")))
        disconnect_frees(s)
        assert s.stop() == 0

    # 3. The small pool with the prefix cache on: shared blocks, evictions
    #    and preemptions together (not in sanitizer builds: time).
    if not LIGHT:
        with Server(loom, model, *COMMON, "--kv-blocks", str(POOL)) as s:
            check_same(want, run_all(s.port, PROMPTS),
                       "in a %d-block pool with the prefix cache" % POOL)
            check_idle(s, "after the batch in a small pool")
            print("%d-block pool with the prefix cache: %d preemptions"
                  % (POOL, s.metric("loom_preemptions_total")))
            assert s.stop() == 0

    # 4. Preemption while decoding: two short prompts that generate long
    #    answers in a pool that holds one and a half of them; the newer one
    #    is preempted mid-answer, requeued, and resumes by recomputing its
    #    prompt and the tokens it had generated.
    two = ["Once upon a time", "The quick brown fox"]
    n_gen, pool = (40, 4) if LIGHT else (80, 8)
    with Server(loom, model, "--parallel", "2", "--ctx", "512", "--kv-block", "16",
                "--kv-blocks", str(pool)) as s:
        alone = [None, None]
        for i, p in enumerate(two):
            complete(s.port, p, alone, i, max_tokens=n_gen)
        both = [None, None]
        th = [threading.Thread(target=complete, args=(s.port, p, both, i, n_gen))
              for i, p in enumerate(two)]
        for t in th:
            t.start()
        for t in th:
            t.join(timeout=300)
        pre = s.metric("loom_preemptions_total")
        assert pre and pre > 0, "no preemption of a decoding request (%r)" % pre
        for i in range(2):
            assert both[i] == alone[i], "prompt %r preempted while decoding: %r != alone %r" % (
                two[i], both[i], alone[i])
        check_idle(s, "after preempting a decoding request")
        print("%d-block pool, 2 x %d tokens: %d preemptions, outputs unchanged"
              % (pool, n_gen, pre))
        assert s.stop() == 0


if __name__ == "__main__":
    main_guard(run)
