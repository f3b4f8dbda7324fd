#!/usr/bin/env python3
"""tests/serve/serve_batching.py LOOM MODEL - continuous batching is invisible:
greedy outputs of N parallel streaming clients equal their solo runs, also
when a long prompt is prefilled in chunks while the others stream, and when
there are more clients than KV slots (requests queue, then join between
steps). Prints aggregate tokens/s for 1 and N concurrent streams.
"""
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import LIGHT, Server, main_guard, sse_events  # noqa: E402

N_SLOTS = 4
MAX_TOKENS = 6 if LIGHT else 24
PROMPTS = [
    "Once upon a time",
    "The quick brown fox",
    "In a hole in the ground there lived",
    "Call me Ishmael.",
    "It was the best of times, " * (10 if LIGHT else 40),  # several prefill chunks
    "A",
    "Once upon a time",  # the same prompt twice, and prompts of equal length: one prefill forward
]


def stream(port, prompt, out, i):
    t0 = time.time()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/v1/completions",
              body=json.dumps({"prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0,
                               "stream": True, "stream_options": {"include_usage": True}}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, r.status
    ev = sse_events(r)
    c.close()
    assert ev[-1] == "[DONE]", ev[-1]
    chunks = [json.loads(e) for e in ev[:-1]]
    text = "".join(k["choices"][0]["text"] for k in chunks if k["choices"])
    usage = chunks[-1]["usage"]
    out[i] = (text, usage["completion_tokens"], time.time() - t0)


def run_all(port, prompts):
    out = [None] * len(prompts)
    th = [threading.Thread(target=stream, args=(port, p, out, i)) for i, p in enumerate(prompts)]
    t0 = time.time()
    for t in th:
        t.start()
    for t in th:
        t.join(timeout=90)
    assert all(o is not None for o in out), out
    return out, time.time() - t0


def run(loom, model):
    chunk = "16" if LIGHT else "64"
    with Server(loom, model, "--parallel", str(N_SLOTS), "--ctx", "512", "--prefill-chunk", chunk) as s:
        solo = []
        t_solo = 0.0
        for p in PROMPTS:
            o, dt = run_all(s.port, [p])
            solo.append(o[0])
            t_solo += dt
        # all at once: 6 clients on 4 slots, the long prompt among them
        par, t_par = run_all(s.port, PROMPTS)
        for i, (a, b) in enumerate(zip(solo, par)):
            assert a[0] == b[0] and a[1] == b[1], "prompt %d: solo %r != parallel %r" % (i, a, b)
        # again in another order, so that sequences land in other slots
        if not LIGHT:
            rev, _ = run_all(s.port, PROMPTS[::-1])
            for i, (a, b) in enumerate(zip(solo, rev[::-1])):
                assert a[0] == b[0], "prompt %d (reversed): solo %r != parallel %r" % (i, a, b)
        n_tok = sum(o[1] for o in solo)
        print("tokens: %d; solo (one stream at a time) %.1f tok/s; %d streams on %d slots %.1f tok/s"
              % (n_tok, n_tok / t_solo, len(PROMPTS), N_SLOTS, n_tok / t_par))
        assert s.metric("loom_active_slots") == 0
        assert s.metric("loom_queue_depth") == 0
        assert s.stop() == 0


if __name__ == "__main__":
    main_guard(run)
