#!/usr/bin/env python3
"""tests/serve/serve_spec.py LOOM MODEL - speculative decoding in `loom serve`
(docs/adr/0038) is invisible in the output: every greedy request gives the
same text with --spec lookup and with --draft (the model itself at q4_0) as
without, alone (speculative), after a prefix hit (its blocks shared with the
cache while drafts are written and dropped), and beside others (batched
steps, speculative again once it is the last one decoding). Sampled and
logprobs requests do not speculate: their seeded output is unchanged too.
/metrics counts drafted and accepted tokens.
"""
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import LIGHT, Server, main_guard  # noqa: E402

MAX_TOKENS = 12 if LIGHT else 24
SYSTEM = "You are a helpful assistant who answers briefly. " * 3
PROMPTS = [SYSTEM + "List: red green blue red green blue red green blue red",
           SYSTEM + "Once upon a time there was a small village",
           "def f(x):\n    return x + 1\n\ndef g(x):\n    return x + 1\n\ndef h(x):\n",
           "The quick brown fox"]
COMMON = ["--parallel", "4", "--ctx", "256", "--kv-block", "8", "--prefill-chunk", "32"]


def complete(port, body, out, i):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/completions", body=json.dumps(body),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    assert r.status == 200, (r.status, data)
    j = json.loads(data)
    ch = j["choices"][0]
    # logprobs: the tokens (their values move in the last digits after a
    # prefix hit, with or without speculation)
    lp = ch.get("logprobs")
    out[i] = (ch["text"], ch["finish_reason"], j["usage"]["completion_tokens"],
              lp and lp["tokens"])


def greedy(p, n=MAX_TOKENS):
    return {"prompt": p, "max_tokens": n, "temperature": 0}


def requests():
    """Every request of a round: greedy ones, a stop string, a sampled one
    with a seed, one with logprobs."""
    rs = [greedy(p) for p in PROMPTS]
    rs.append(greedy(PROMPTS[0], 7))  # max_tokens ends inside a step
    rs.append(dict(greedy(PROMPTS[1]), stop=["e"]))
    rs.append({"prompt": PROMPTS[1], "max_tokens": MAX_TOKENS, "temperature": 0.9,
               "seed": 5})
    rs.append(dict(greedy(PROMPTS[2], 8), logprobs=2))
    return rs


def one_by_one(port, rs):
    out = [None] * len(rs)
    for i, b in enumerate(rs):
        complete(port, b, out, i)
    return out


def together(port, rs):
    out = [None] * len(rs)
    th = [threading.Thread(target=complete, args=(port, b, out, i)) for i, b in enumerate(rs)]
    for t in th:
        t.start()
    for t in th:
        t.join(timeout=300)
    assert all(o is not None for o in out), out
    return out


def run(loom, model):
    rs = requests()
    with Server(loom, model, *COMMON, "--no-prefix-cache") as s:
        want = one_by_one(s.port, rs)
        assert s.metric("loom_spec_draft_tokens_total") == 0
        assert s.stop() == 0
    tmp = tempfile.mkdtemp(prefix="loom_serve_spec_")
    draft = os.path.join(tmp, "draft-q4_0.gguf")
    subprocess.run([loom, "export-gguf", "-m", model, "-o", draft, "--type", "q4_0"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for flags in (["--spec", "lookup", "--spec-k", "5"], ["--draft", draft, "--spec-k", "3"]):
            with Server(loom, model, *COMMON, *flags) as s:
                alone = one_by_one(s.port, rs)
                hits = one_by_one(s.port, rs)  # the same prompts again: prefix hits
                both = together(s.port, rs)
                for what, got in (("alone", alone), ("after a prefix hit", hits),
                                  ("beside others", both)):
                    for i, (a, b) in enumerate(zip(want, got)):
                        assert a == b, "%s, request %d %s: %r != without speculation %r" % (
                            " ".join(flags), i, what, b, a)
                drafted = s.metric("loom_spec_draft_tokens_total")
                accepted = s.metric("loom_spec_accepted_tokens_total")
                prefix = s.metric("loom_prefix_cache_tokens_total")
                assert drafted and drafted > 0 and 0 < accepted <= drafted, (drafted, accepted)
                assert prefix and prefix > 0, prefix
                print("%s: outputs unchanged; drafted %d, accepted %d (%.0f%%), %d prefix tokens"
                      % (" ".join(flags), drafted, accepted, 100 * accepted / drafted, prefix))
                assert s.stop() == 0
    finally:
        os.unlink(draft)
        os.rmdir(tmp)


if __name__ == "__main__":
    main_guard(run)
