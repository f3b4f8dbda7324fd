#!/usr/bin/env python3
"""tests/serve/serve_openai.py LOOM MODEL - the official `openai` client against
`loom serve`: models, chat, completions, streaming with include_usage, stop,
seed, and every error status (400, 401, 404, 413, 503 loading and draining).

Fails when the openai package is missing (scripts/install-deps.sh installs it).
"""
import http.client
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import LIGHT, Server, main_guard  # noqa: E402

try:
    import openai
except ImportError:
    # CI installs it (scripts/install-deps.sh): missing is a failure, as for gguf.
    print("serve_openai: FAIL: the openai package is not installed (run scripts/install-deps.sh)")
    sys.exit(1)

KEY = "sk-test-1234567890"
MSGS = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello there!"}]


def expect_status(exc_type, status, fn, param=None):
    try:
        fn()
    except exc_type as e:
        assert e.status_code == status, (e.status_code, status)
        if param is not None:
            assert e.param == param, (e.param, param, e.body)
        return e
    raise AssertionError("expected HTTP %d" % status)


def run(loom, model):
    name = os.path.basename(model)[: -len(".gguf")]
    with Server(loom, model, "--parallel", "2", "--ctx", "256", "--api-key", KEY, "--log-prompts") as s:
        c = openai.OpenAI(base_url=s.base + "/v1", api_key=KEY, max_retries=0, timeout=60)

        ids = [m.id for m in c.models.list().data]
        assert ids == [name], ids

        # chat, greedy: length-limited, usage counted
        r = c.chat.completions.create(model=name, messages=MSGS, max_tokens=8, temperature=0)
        assert r.object == "chat.completion" and r.model == name and r.id.startswith("chatcmpl-")
        ch = r.choices[0]
        assert ch.index == 0 and ch.message.role == "assistant"
        assert isinstance(ch.message.content, str)
        assert ch.finish_reason in ("length", "stop"), ch.finish_reason
        assert r.usage.prompt_tokens > 10 and 1 <= r.usage.completion_tokens <= 8, r.usage
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
        full = ch.message.content

        # the same request streamed with include_usage gives the same text
        chunks = list(c.chat.completions.create(model=name, messages=MSGS, max_tokens=8,
                                                temperature=0, stream=True,
                                                stream_options={"include_usage": True}))
        assert chunks[0].choices[0].delta.role == "assistant"
        text = "".join(k.choices[0].delta.content or "" for k in chunks if k.choices)
        assert text == full, (text, full)
        fin = [k.choices[0].finish_reason for k in chunks if k.choices and k.choices[0].finish_reason]
        assert fin == [ch.finish_reason], fin
        assert not chunks[-1].choices and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
        assert all(k.usage is None for k in chunks[:-1])

        # completions, plain and streamed (no usage chunk unless asked)
        r2 = c.completions.create(model=name, prompt="Once upon a time", max_tokens=6, temperature=0)
        assert r2.object == "text_completion" and r2.choices[0].finish_reason in ("length", "stop")
        assert r2.usage.prompt_tokens == 5, r2.usage  # BOS + 4 tokens
        parts = list(c.completions.create(model=name, prompt="Once upon a time", max_tokens=6,
                                          temperature=0, stream=True))
        assert "".join(p.choices[0].text for p in parts) == r2.choices[0].text
        assert all(p.usage is None for p in parts)

        # stop: cut before the first occurrence of an ASCII piece of the greedy text
        long = c.completions.create(model=name, prompt="The", max_tokens=12 if LIGHT else 40, temperature=0).choices[0].text
        stop = next((long[i:i + 2] for i in range(1, len(long) - 1)
                     if long[i:i + 2].isascii() and long[i:i + 2].strip()), None)
        if stop:
            r3 = c.completions.create(model=name, prompt="The", max_tokens=12 if LIGHT else 40, temperature=0, stop=[stop, "\x01"])
            assert r3.choices[0].finish_reason == "stop", r3
            assert r3.choices[0].text == long[: long.find(stop)], (r3.choices[0].text, long, stop)

        # seed: the same seed samples the same text at temperature 1
        a = c.completions.create(model=name, prompt="Hi", max_tokens=10, temperature=1, seed=7).choices[0].text
        b = c.completions.create(model=name, prompt="Hi", max_tokens=10, temperature=1, seed=7).choices[0].text
        assert a == b, (a, b)
        c.completions.create(model=name, prompt="Hi", max_tokens=3, top_p=0.5, presence_penalty=1,
                             frequency_penalty=0.5)

        # logprobs: the greedy token is the most likely one, alternatives sorted,
        # the pieces spell the text, streaming gives the same numbers, and
        # sampling at another temperature does not change them (raw logits).
        lr = c.chat.completions.create(model=name, messages=MSGS, max_tokens=8, temperature=0,
                                       logprobs=True, top_logprobs=3)
        content = lr.choices[0].logprobs.content
        assert lr.choices[0].message.content == full
        assert len(content) == lr.usage.completion_tokens - (lr.choices[0].finish_reason == "stop")
        assert b"".join(bytes(t.bytes) for t in content).decode("utf-8", "replace") == full
        for t in content:
            assert t.logprob <= 0 and len(t.top_logprobs) == 3
            tops = [x.logprob for x in t.top_logprobs]
            assert tops == sorted(tops, reverse=True), tops
            assert t.top_logprobs[0].bytes == t.bytes and abs(tops[0] - t.logprob) < 1e-6, t
        ls = list(c.chat.completions.create(model=name, messages=MSGS, max_tokens=8, temperature=0,
                                            logprobs=True, top_logprobs=3, stream=True))
        streamed = [t for k in ls if k.choices and k.choices[0].logprobs
                    for t in k.choices[0].logprobs.content]
        assert [(t.bytes, t.logprob) for t in streamed] == [(t.bytes, t.logprob) for t in content]
        hot = c.chat.completions.create(model=name, messages=MSGS, max_tokens=1, temperature=1.5,
                                        seed=3, logprobs=True, top_logprobs=2)
        h = hot.choices[0].logprobs.content[0]
        assert [x.logprob for x in h.top_logprobs] == [x.logprob for x in content[0].top_logprobs[:2]]
        lc = c.completions.create(model=name, prompt="Once upon a time", max_tokens=6, temperature=0,
                                  logprobs=2)
        L = lc.choices[0].logprobs
        assert "".join(L.tokens) == lc.choices[0].text == r2.choices[0].text
        assert len(L.token_logprobs) == len(L.tokens) == len(L.top_logprobs) == len(L.text_offset)
        assert L.text_offset == [sum(len(t) for t in L.tokens[:i]) for i in range(len(L.tokens))]
        assert all(max(d.values()) == lp for d, lp in zip(L.top_logprobs, L.token_logprobs))
        expect_status(openai.BadRequestError, 400,
                      lambda: c.chat.completions.create(model=name, messages=MSGS, top_logprobs=2),
                      param="top_logprobs")

        # errors through the client
        expect_status(openai.BadRequestError, 400,
                      lambda: c.chat.completions.create(model=name, messages=MSGS, temperature=5),
                      param="temperature")
        expect_status(openai.BadRequestError, 400,
                      lambda: c.chat.completions.create(model=name, messages=MSGS, n=2), param="n")
        expect_status(openai.BadRequestError, 400,
                      lambda: c.chat.completions.create(model=name, messages=[]), param="messages")
        expect_status(openai.BadRequestError, 400,
                      lambda: c.completions.create(model=name, prompt="x " * 400),
                      param="prompt")  # longer than --ctx 256
        expect_status(openai.NotFoundError, 404,
                      lambda: c.chat.completions.create(model="gpt-4o", messages=MSGS), param="model")
        bad = openai.OpenAI(base_url=s.base + "/v1", api_key="sk-wrong", max_retries=0)
        e = expect_status(openai.AuthenticationError, 401, lambda: bad.models.list())
        assert e.code == "invalid_api_key", e.body
        st, _, body = s.request("GET", "/v1/models")  # no key at all
        assert st == 401 and json.loads(body)["error"]["type"], body
        st, _, body = s.request("POST", "/v1/completions", body="x" * (2 << 20),
                                headers={"Authorization": "Bearer " + KEY})
        assert st == 413, st
        assert json.loads(body)["error"]["code"] == "request_too_large"
        st, _, body = s.request("GET", "/v1/nothing", headers={"Authorization": "Bearer " + KEY})
        assert st == 404 and "error" in json.loads(body)
        st, _, _ = s.request("GET", "/health")  # no key needed
        assert st == 200

        # SIGTERM drains: a stream in flight finishes, new requests get 503
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        conn.request("POST", "/v1/completions",
                     body=json.dumps({"model": name, "prompt": "Go", "max_tokens": 30 if LIGHT else 200,
                                      "temperature": 0, "stream": True}),
                     headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        first = resp.read1(64)
        assert first.startswith(b"data: "), first
        s.proc.send_signal(15)
        s.wait_health(503, timeout=20)
        e = expect_status(openai.InternalServerError, 503,
                          lambda: c.completions.create(model=name, prompt="late", max_tokens=2))
        assert e.code == "server_draining", e.body
        rest = first + resp.read()
        assert rest.endswith(b"data: [DONE]\n\n"), rest[-200:]
        conn.close()
        s.proc.wait(timeout=30)
        assert s.proc.returncode == 0, (s.proc.returncode, s.read_log())
        # --log-prompts: the request text is in the access log
        lines = [json.loads(ln) for ln in s.read_log().splitlines() if ln.startswith("{")]
        chat = [ln for ln in lines if ln["path"] == "/v1/chat/completions" and ln["status"] == 200]
        assert chat and "user: Hello there!" in chat[0]["prompt"], chat[:1]
        assert KEY not in s.read_log()

    # 503 while the model loads (and the key from --api-key-file)
    with tempfile.NamedTemporaryFile("w", suffix=".key") as kf:
        kf.write("  %s\n" % KEY)
        kf.flush()
        with Server(loom, model, "--api-key-file", kf.name, "--rate-limit", "0.2", "--log-prompts",
                    env={"LOOM_SERVE_LOAD_DELAY_MS": "3000"}, wait_ready=False) as s:
            loading(s, name)


def loading(s, name):
    st, _, body = s.request("GET", "/health")
    assert st == 503 and json.loads(body)["status"] == "loading", (st, body)
    bad = openai.OpenAI(base_url=s.base + "/v1", api_key="sk-wrong", max_retries=0)
    expect_status(openai.AuthenticationError, 401, lambda: bad.models.list())
    c = openai.OpenAI(base_url=s.base + "/v1", api_key=KEY, max_retries=0)
    e = expect_status(openai.InternalServerError, 503,
                      lambda: c.chat.completions.create(model=name, messages=MSGS))
    assert e.code == "model_loading", e.body
    s.wait_health(200, timeout=60)
    # --rate-limit 0.2: one request per 5 s per key, so of two in a row at
    # least the second is refused with 429 and a Retry-After
    got = []
    for _ in range(2):
        try:
            c.models.list()
            got.append(200)
        except openai.RateLimitError as e:
            assert e.code == "rate_limit_exceeded", e.body
            assert int(e.response.headers["retry-after"]) >= 1, e.response.headers
            got.append(429)
    assert got[-1] == 429, got
    st, _, _ = s.request("GET", "/health")  # not limited
    assert st == 200
    assert s.stop() == 0
    lines = [json.loads(ln) for ln in s.read_log().splitlines() if ln.startswith("{")]
    chat = [ln for ln in lines if ln["path"] == "/v1/chat/completions"]
    assert chat and chat[0]["status"] == 503, chat  # loading: refused before any prompt
    assert any(ln["status"] == 429 for ln in lines), lines


if __name__ == "__main__":
    main_guard(run)
