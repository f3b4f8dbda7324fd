#!/usr/bin/env python3
"""tests/serve/serve_rag.py LOOM MODEL - the loom_retrieval extension of chat
completions (`loom serve --rag-index INDEX`) with the official `openai`
client (extra_body), on the tiny random model and an index made by
`loom rag index` with the tiny random BERT of tests/golden/encoder:

  * "loom_retrieval": {"k": 2} returns "loom_sources" equal to
    `loom rag search INDEX QUESTION -k 2 --json` (ids, scores, sources,
    offsets, text), in the response and in the first streamed chunk;
  * the sources are in the system message the model saw (--log-prompts),
    numbered, after the caller's own system text; the prompt grows;
  * without the field nothing changes (no loom_sources);
  * errors: bad k, unknown key, wrong type, no user message (400, param
    loom_retrieval), and a server without --rag-index.
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import Server, main_guard  # noqa: E402

try:
    import openai
except ImportError:
    print("serve_rag: FAIL: the openai package is not installed (run scripts/install-deps.sh)")
    sys.exit(1)

ENC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "encoder", "tiny-bert")
Q = "how do volcanoes erupt"


def expect_400(fn, text):
    try:
        fn()
    except openai.APIStatusError as e:
        assert e.status_code == 400 and e.param == "loom_retrieval" and text in e.message, (
            e.status_code, e.param, e.message)
        return
    raise AssertionError("expected HTTP 400 (%s)" % text)


def run(loom, model):
    work = tempfile.mkdtemp(prefix="loom_serve_rag_")
    docs = os.path.join(work, "docs")
    os.makedirs(docs)
    for name, text in {"cats.md": "# Cats\n\nCats purr. Cats sleep a lot.\n",
                       "volcano.txt": "Volcanoes erupt lava. Magma rises from below.\n",
                       "bread.md": "# Bread\n\nYeast makes dough rise.\n"}.items():
        with open(os.path.join(docs, name), "w") as f:
            f.write(text)
    ix = os.path.join(work, "ix.lvi")
    r = subprocess.run([loom, "rag", "index", "--docs", docs, "-o", ix, "-m", os.path.abspath(ENC), "--exact"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([loom, "rag", "search", "--index", ix, Q, "-k", "2", "--json"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    want = [json.loads(l) for l in r.stdout.splitlines()]
    assert len(want) == 2, want

    def same(got):
        assert len(got) == 2, got
        for i, (g, w) in enumerate(zip(got, want)):
            assert g["index"] == i + 1, g
            for key in ("id", "source", "title", "byte_begin", "byte_end", "text"):
                assert g[key] == w[key], (key, g, w)
            assert abs(g["score"] - w["score"]) < 1e-5, (g, w)

    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": Q}]
    with Server(loom, model, "--rag-index", ix, "--log-prompts") as s:
        c = openai.OpenAI(base_url=s.base + "/v1", api_key="none", max_retries=0, timeout=60)
        plain = c.chat.completions.create(model=s_model(c), messages=msgs,
                                          max_tokens=2, temperature=0)
        assert getattr(plain, "loom_sources", None) is None and "loom_sources" not in plain.model_dump()
        got = c.chat.completions.create(model=s_model(c), messages=msgs, max_tokens=2, temperature=0,
                                        extra_body={"loom_retrieval": {"k": 2}})
        same(got.model_dump()["loom_sources"])
        assert got.usage.prompt_tokens > plain.usage.prompt_tokens + 10, (got.usage, plain.usage)
        want_prompt = "You are terse.\\n\\nAnswer the question using only the numbered sources"
        log = s.wait_log(want_prompt)
        assert want_prompt in log, log[-2000:]
        assert ("[1] %s (%s)" % (want[0]["title"], want[0]["source"])) in log, log[-2000:]
        # streaming: the first chunk carries the sources
        chunks = list(c.chat.completions.create(model=s_model(c), messages=msgs, max_tokens=2, stream=True,
                                                extra_body={"loom_retrieval": {"k": 2}}))
        same(chunks[0].model_dump()["loom_sources"])
        assert all("loom_sources" not in ch.model_dump() or ch.model_dump()["loom_sources"] is None
                   for ch in chunks[1:])
        # true: the default k (4, here all 3 sources' chunks)
        got = c.chat.completions.create(model=s_model(c), messages=[msgs[1]], max_tokens=1,
                                        extra_body={"loom_retrieval": True})
        assert len(got.model_dump()["loom_sources"]) == 3
        for bad, text in (({"k": 0}, "from 1 to 32"), ({"k": 2.5}, "from 1 to 32"), ({"k": 33}, "from 1 to 32"),
                          ({"top": 2}, "unknown key 'top'"), ("yes", "must be true or an object")):
            expect_400(lambda: c.chat.completions.create(model=s_model(c), messages=msgs, max_tokens=1,
                                                         extra_body={"loom_retrieval": bad}), text)
        expect_400(lambda: c.chat.completions.create(model=s_model(c), messages=[msgs[0]], max_tokens=1,
                                                     extra_body={"loom_retrieval": True}), "user message")
        assert s.stop() == 0
    with Server(loom, model) as s:
        c = openai.OpenAI(base_url=s.base + "/v1", api_key="none", max_retries=0, timeout=60)
        expect_400(lambda: c.chat.completions.create(model=s_model(c), messages=msgs, max_tokens=1,
                                                     extra_body={"loom_retrieval": {"k": 2}}), "--rag-index")
        assert s.stop() == 0
    r = subprocess.run([loom, "serve", "-m", model, "--port", "0", "--rag-index", os.path.join(work, "none.lvi")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "none.lvi" in r.stderr, r.stderr


def s_model(c):
    return c.models.list().data[0].id


if __name__ == "__main__":
    main_guard(run)
