#!/usr/bin/env python3
"""tests/serve/serve_chunk_invariance.py LOOM MODEL - a request's numbers do not
depend on how its prompt is chunked: two servers that prefill in chunks of 3
and of 512 tokens return the same greedy tokens and the same logprobs, to the
last printed digit, for prompts of several lengths. The tokens alone (what
serve_openai / serve_paged compare) rarely part on a random model; logprobs
show any difference in rounding. With the cpu's default int8-decode
activations (chunks of <= 8 rows on int8, longer ones on the f32 GEMM) this
fails, and with f32 too (its decode and GEMM kernels sum in different
orders); `loom serve` runs LOOM_CPU_ACT=int8, one arithmetic for every chunk
(docs/adr/0043).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import LIGHT, Server, main_guard  # noqa: E402

MAX_TOKENS = 4 if LIGHT else 12
PROMPTS = ["Once upon a time", "It was the best of times, " * (4 if LIGHT else 12)]


def ask(srv, prompt):
    st, _, body = srv.request("POST", "/v1/completions",
                              {"prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0,
                               "logprobs": 2})
    assert st == 200, (st, body)
    ch = json.loads(body)["choices"][0]
    lp = ch["logprobs"]
    return ch["text"], lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]


def run(loom, model):
    with Server(loom, model, "--prefill-chunk", "3", "--parallel", "1") as a, \
            Server(loom, model, "--prefill-chunk", "512", "--parallel", "1") as b:
        for p in PROMPTS:
            ra, rb = ask(a, p), ask(b, p)
            assert ra[1] == rb[1], "tokens differ by chunking:\n%r\n%r" % (ra[0], rb[0])
            worst = max(abs(x - y) for x, y in zip(ra[2], rb[2]))
            assert ra[2:] == rb[2:], (
                "logprobs differ by chunking (prompt %r..., max |d| %.3g):\n%r\n%r"
                % (p[:20], worst, ra[2], rb[2]))
            print("prompt of %d chars: %d tokens, logprobs identical" % (len(p), len(ra[1])))


if __name__ == "__main__":
    main_guard(run)
