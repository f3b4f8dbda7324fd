#!/usr/bin/env python3
"""tests/serve/serve_embed.py LOOM MODEL - POST /v1/embeddings with the official
`openai` client against `loom serve --embed-model` on the tiny random BERT of
tests/golden/encoder (32 dimensions, 24 tokens max):

  * the vectors equal `loom embed --json` of the same texts (cosine >= 0.99999)
    and PyTorch's (the goldens of scripts/gen_encoder_golden.py, >= 0.9999),
    in input order, for float, base64 (decoded here) and the client's default;
  * a text longer than the model's maximum is truncated, as `loom embed` does;
  * usage counts the tokens; /v1/models lists the encoder; /metrics counts
    the route; parallel requests give the same vectors as serial ones;
  * a missing --embed-model directory stops the server with one line;
  * errors: empty input, too many inputs, token-id input, wrong dimensions,
    unknown model, the LLM's name, GET;
  * without --embed-model the LLM embeds (run_llm below).
"""
import base64
import json
import math
import os
import re
import struct
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import Server, main_guard  # noqa: E402

try:
    import openai
except ImportError:
    print("serve_embed: FAIL: the openai package is not installed (run scripts/install-deps.sh)")
    sys.exit(1)

GOLD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "encoder")
ENC = os.path.join(GOLD, "tiny-bert")
NAME = "tiny-bert"
DIM = 32


def read_tok(path):
    b = open(path, "rb").read()
    n, at, out = struct.unpack_from("<I", b, 0)[0], 4, []
    for _ in range(n):
        ln = struct.unpack_from("<I", b, at)[0]
        at += 4
        text = b[at:at + ln]
        at += ln
        k = struct.unpack_from("<I", b, at)[0]
        at += 4 + 4 * k
        out.append(text)
    return out


def read_emb(path):
    b = open(path, "rb").read()
    n, d = struct.unpack_from("<II", b, 0)
    v = struct.unpack_from("<%df" % (n * d), b, 8)
    return [list(v[i * d:(i + 1) * d]) for i in range(n)]


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def expect_error(status, fn, param=None, text=None):
    try:
        fn()
    except openai.APIStatusError as e:
        assert e.status_code == status, (e.status_code, status, e.body)
        if param is not None:
            assert e.param == param, (e.param, param, e.body)
        if text is not None:
            assert text in e.message, (text, e.message)
        return e
    raise AssertionError("expected HTTP %d" % status)


def loom_embed(loom, texts):
    r = subprocess.run([loom, "embed", "-m", ENC, "--json"], input="\n".join(texts).encode() + b"\n",
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(l) for l in r.stdout.decode().splitlines()]
    assert [x["index"] for x in rows] == list(range(len(texts))), rows
    return [x["embedding"] for x in rows]


def run(loom, model):
    gold_texts = read_tok(os.path.join(GOLD, "tok_tiny.bin"))
    gold = read_emb(os.path.join(GOLD, "emb_tiny.bin"))
    # texts JSON and one stdin line can carry: valid UTF-8, non-empty, no line breaks or NUL
    idx = []
    for i, t in enumerate(gold_texts):
        try:
            s = t.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if s.strip() and not any(c in s for c in "\n\r\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
            idx.append(i)
    assert len(idx) >= 5, idx
    texts = [gold_texts[i].decode("utf-8") for i in idx]
    longtext = " ".join(["word%d" % i for i in range(200)])  # far above 24 tokens
    texts.append(longtext)
    ref = loom_embed(loom, texts)

    with Server(loom, model, "--embed-model", ENC) as s:
        c = openai.OpenAI(base_url=s.base + "/v1", api_key="none", max_retries=0, timeout=60)
        ids = [m.id for m in c.models.list().data]
        assert NAME in ids and len(ids) == 2, ids
        st, _, body = s.request("GET", "/v1/models/" + NAME)
        m = json.loads(body)
        assert st == 200 and m["type"] == "embedding" and m["dimensions"] == DIM, m

        def check(data, label):
            assert [d.index for d in data] == list(range(len(texts))), label
            for i, d in enumerate(data):
                assert len(d.embedding) == DIM, (label, len(d.embedding))
                cl = cos(d.embedding, ref[i])
                assert cl >= 0.99999, (label, i, cl)
                if i < len(idx):
                    cg = cos(d.embedding, gold[idx[i]])
                    assert cg >= 0.9999, (label, i, cg)
                assert abs(math.sqrt(sum(x * x for x in d.embedding)) - 1) < 1e-4, label

        r = c.embeddings.create(model=NAME, input=texts, encoding_format="float")
        check(r.data, "float")
        assert r.object == "list" and r.model == NAME, r
        assert r.usage.prompt_tokens == r.usage.total_tokens > 24, r.usage
        # a single string; usage = its tokens ([CLS] hello world [SEP] or more)
        one = c.embeddings.create(model=NAME, input=texts[0], encoding_format="float")
        assert len(one.data) == 1 and cos(one.data[0].embedding, ref[0]) >= 0.99999
        # truncation: the long text counts 24 tokens, like loom embed
        lt = c.embeddings.create(model=NAME, input=longtext, encoding_format="float")
        assert lt.usage.prompt_tokens == 24, lt.usage
        # the client's default asks for base64 and decodes it itself
        check(c.embeddings.create(model=NAME, input=texts).data, "client default")
        # explicit base64: the raw string, little-endian float32, decoded here
        st, _, body = s.request("POST", "/v1/embeddings",
                                {"model": NAME, "input": texts, "encoding_format": "base64",
                                 "user": "someone", "dimensions": DIM})
        assert st == 200, body
        fl = c.embeddings.create(model=NAME, input=texts, encoding_format="float")
        for i, d in enumerate(json.loads(body)["data"]):
            raw = base64.b64decode(d["embedding"])
            v = list(struct.unpack("<%df" % DIM, raw))
            assert v == [struct.unpack("<f", struct.pack("<f", x))[0] for x in fl.data[i].embedding], i
        # no model given: allowed (the server has one encoder)
        st, _, body = s.request("POST", "/v1/embeddings", {"input": "hello"})
        assert st == 200 and json.loads(body)["model"] == NAME, body

        # parallel requests (the encoder is shared under a mutex): same vectors
        results, errs = {}, []

        def worker(k):
            try:
                cc = openai.OpenAI(base_url=s.base + "/v1", api_key="none", max_retries=0)
                for rnd in range(3):
                    sub = texts[k % len(texts):] + texts[:k % len(texts)]
                    rr = cc.embeddings.create(model=NAME, input=sub, encoding_format="float")
                    results[(k, rnd)] = (sub, [d.embedding for d in rr.data])
            except Exception as e:  # noqa: BLE001
                errs.append(repr(e))

        th = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
        [t.start() for t in th]
        [t.join(60) for t in th]
        assert not errs, errs
        assert len(results) == 18, len(results)
        pos = {t: i for i, t in enumerate(texts)}
        for sub, vecs in results.values():
            for t, v in zip(sub, vecs):
                assert cos(v, ref[pos[t]]) >= 0.99999

        # errors, in OpenAI's shape with the parameter named
        expect_error(400, lambda: c.embeddings.create(model=NAME, input=""), "input", "empty")
        expect_error(400, lambda: c.embeddings.create(model=NAME, input=[]), "input")
        expect_error(400, lambda: c.embeddings.create(model=NAME, input=["a", ""]), "input")
        expect_error(400, lambda: c.embeddings.create(model=NAME, input=["x"] * 2049), "input",
                     "at most 2048")
        expect_error(400, lambda: c.embeddings.create(model=NAME, input=[[1, 2, 3]]), "input",
                     "token ids")
        expect_error(400, lambda: c.embeddings.create(model=NAME, input="a", dimensions=16),
                     "dimensions", "must be 32")
        expect_error(400, lambda: c.embeddings.create(model=NAME, input="a",
                                                      encoding_format="int8"), "encoding_format")
        expect_error(404, lambda: c.embeddings.create(model="text-embedding-3-small", input="a"),
                     "model", NAME)
        llm = [i for i in ids if i != NAME][0]
        expect_error(400, lambda: c.embeddings.create(model=llm, input="a"), "model",
                     "text-generation")
        st, _, body = s.request("POST", "/v1/embeddings", b"{not json")
        assert st == 400 and "JSON" in json.loads(body)["error"]["message"], body
        st, _, _ = s.request("GET", "/v1/embeddings")
        assert st == 405, st
        # the route is counted by status
        st, _, body = s.request("GET", "/metrics")
        mt = body.decode()
        ok = re.search(r'^loom_requests_total\{route="/v1/embeddings",status="200"\} (\d+)$', mt, re.M)
        bad = re.search(r'^loom_requests_total\{route="/v1/embeddings",status="400"\} (\d+)$', mt, re.M)
        assert ok and int(ok.group(1)) >= 24 and bad and int(bad.group(1)) >= 8, mt
        assert s.stop() == 0

    # a missing encoder: exit 1 with one line naming the flag, before the LLM loads
    r = subprocess.run([loom, "serve", "-m", model, "--port", "0", "--embed-model",
                        os.path.join(GOLD, "no-such-encoder")], capture_output=True, timeout=60)
    lines = [l for l in r.stderr.decode().splitlines() if "--embed-model" in l]
    assert r.returncode == 1 and len(lines) == 1 and "no-such-encoder" in lines[0], r.stderr

    run_llm(loom, model)


def run_llm(loom, model):
    """Without --embed-model the LLM embeds: its final hidden states, mean-pooled
    and L2-normalised (loom_model_embed, checked against transformers by
    tests/model/test_llm_embed.c). Here: the wire format, /v1/models naming the
    source, determinism, batch == single, a context overflow, and that
    embeddings running beside a greedy generation change neither."""
    ctx = 64
    with Server(loom, model, "--ctx", str(ctx), "--parallel", "2") as s:
        c = openai.OpenAI(base_url=s.base + "/v1", api_key="none", max_retries=0, timeout=60)
        ms = c.models.list().data
        assert len(ms) == 1, ms
        llm = ms[0].id
        st, _, body = s.request("GET", "/v1/models/" + llm)
        m = json.loads(body)
        assert st == 200 and m["type"] == "text-generation", m
        em = m["embeddings"]
        assert em["source"] == "llm" and em["pooling"] == "mean" and em["normalized"], m
        dim = em["dimensions"]
        assert dim > 0, m
        assert (ms[0].model_extra or {}).get("embeddings", {}).get("source") == "llm", ms[0]

        texts = ["hello world", "the quick brown fox jumps over the lazy dog",
                 "a", "embeddings from a decoder", "hello world!"]
        r = c.embeddings.create(model=llm, input=texts, encoding_format="float")
        assert r.model == llm and [d.index for d in r.data] == list(range(len(texts))), r
        vecs = [d.embedding for d in r.data]
        for i, v in enumerate(vecs):
            assert len(v) == dim, (i, len(v))
            assert all(math.isfinite(x) for x in v), i
            assert abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4, i
        # distinct texts, distinct vectors (a constant output would pass the rest)
        assert cos(vecs[0], vecs[1]) < 0.9999, cos(vecs[0], vecs[1])
        # usage: the tokens of every text (at least one each)
        assert r.usage.prompt_tokens == r.usage.total_tokens >= len(texts), r.usage
        # one text alone = the same text in the batch; and again = the same
        for i, t in enumerate(texts):
            one = c.embeddings.create(model=llm, input=t, encoding_format="float").data[0].embedding
            assert cos(one, vecs[i]) >= 0.99999, (i, cos(one, vecs[i]))
        again = c.embeddings.create(model=llm, input=texts, encoding_format="float")
        assert [d.embedding for d in again.data] == vecs
        # the client's default (base64) decodes to the same floats; no model named is fine
        dflt = c.embeddings.create(model=llm, input=texts)
        assert all(cos(a.embedding, b) >= 0.99999 for a, b in zip(dflt.data, vecs))
        st, _, body = s.request("POST", "/v1/embeddings", {"input": texts[0]})
        assert st == 200 and json.loads(body)["model"] == llm, body

        # beside a greedy generation: its text is the one it gives alone, and
        # the embeddings are the ones computed while idle (no KV cache shared)
        req = dict(model=llm, prompt="once upon a time", max_tokens=48, temperature=0)
        alone = c.completions.create(**req).choices[0].text
        got, errs = {}, []

        def gen():
            try:
                got["gen"] = c.completions.create(**req).choices[0].text
            except Exception as e:  # noqa: BLE001
                errs.append(repr(e))

        def emb(k):
            try:
                cc = openai.OpenAI(base_url=s.base + "/v1", api_key="none", max_retries=0)
                got[k] = [d.embedding for d in cc.embeddings.create(
                    model=llm, input=texts, encoding_format="float").data]
            except Exception as e:  # noqa: BLE001
                errs.append(repr(e))

        th = [threading.Thread(target=gen)] + [threading.Thread(target=emb, args=(k,))
                                               for k in range(3)]
        [t.start() for t in th]
        [t.join(90) for t in th]
        assert not errs, errs
        assert got.get("gen") == alone, (got.get("gen"), alone)
        for k in range(3):
            assert all(cos(a, b) >= 0.99999 for a, b in zip(got[k], vecs)), k

        # errors: longer than the context, unknown model, dimensions
        e = expect_error(400, lambda: c.embeddings.create(model=llm, input=["ok", "word " * 200]),
                         "input", "context is %d tokens" % ctx)
        assert e.code == "context_length_exceeded", e.body
        expect_error(404, lambda: c.embeddings.create(model="text-embedding-3-small", input="a"),
                     "model", llm)
        expect_error(400, lambda: c.embeddings.create(model=llm, input="a", dimensions=dim + 1),
                     "dimensions", "must be %d" % dim)
        expect_error(400, lambda: c.embeddings.create(model=llm, input=""), "input", "empty")
        assert s.stop() == 0

if __name__ == "__main__":
    main_guard(run)
