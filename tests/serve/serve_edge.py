#!/usr/bin/env python3
"""tests/serve/serve_edge.py LOOM MODEL - raw-HTTP edge cases leave the server
healthy: malformed JSON, wrong types, huge bodies (declared and chunked), a
missing body, unknown routes and methods, clients that disconnect
mid-stream (their slot is freed) or before the response, and a few hundred
requests in a row; then /health is still ready and SIGTERM exits cleanly
(under ASan, with no leak).
"""
import http.client
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import LIGHT, Server, main_guard  # noqa: E402

N_ROUNDS = 100 if LIGHT else 300


def expect_error(s, method, path, body, status, param=None, headers=None):
    st, h, raw = s.request(method, path, body=body, headers=headers)
    assert st == status, (path, body if not isinstance(body, str) else body[:80], st, raw[:200])
    err = json.loads(raw)["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert h.get("Content-Type") == "application/json", h
    if param is not None:
        assert err["param"] == param, (err, param)
    return err


def wait_idle(s, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if s.metric("loom_active_slots") == 0 and s.metric("loom_queue_depth") == 0:
            return
        time.sleep(0.05)
    raise AssertionError("slots still busy after %d s" % timeout)


def run(loom, model):
    with Server(loom, model, "--parallel", "2", "--ctx", "1024", "--max-body", "65536", "--timeout", "2",
                "--cors", "http://ok.example, http://localhost:3000") as s:
        # CORS: headers and preflight only for the configured origins
        ok = {"Origin": "http://ok.example"}
        st, h, _ = s.request("OPTIONS", "/v1/chat/completions",
                             headers=dict(ok, **{"Access-Control-Request-Method": "POST"}))
        assert st == 204 and h.get("Access-Control-Allow-Origin") == "http://ok.example", (st, h)
        assert "POST" in h.get("Access-Control-Allow-Methods", "") and "Authorization" in h.get(
            "Access-Control-Allow-Headers", ""), h
        for evil in ("http://evil.example", "http://ok.exampl", "ok.example", "http://ok.example.evil"):
            st, h, _ = s.request("OPTIONS", "/v1/chat/completions", headers={"Origin": evil})
            assert st == 403 and "Access-Control-Allow-Origin" not in h, (evil, st, h)
            st, h, _ = s.request("GET", "/health", headers={"Origin": evil})
            assert st == 200 and "Access-Control-Allow-Origin" not in h, (evil, h)
        st, h, _ = s.request("GET", "/health", headers={"Origin": "http://localhost:3000"})
        assert h.get("Access-Control-Allow-Origin") == "http://localhost:3000", h
        st, h, body = s.request("POST", "/v1/completions", body={"prompt": "x", "max_tokens": 2, "stream": True},
                                headers=ok)
        assert st == 200 and h.get("Access-Control-Allow-Origin") == "http://ok.example", h
        assert body.endswith(b"data: [DONE]\n\n")
        # slow-loris: clients that never finish their headers are dropped after
        # --timeout, and do not hold up anyone else meanwhile
        slow = []
        for _ in range(20):
            k = socket.create_connection(("127.0.0.1", s.port), timeout=30)
            k.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
            slow.append(k)
        st, _, _ = s.request("GET", "/health", timeout=5)
        assert st == 200
        t0 = time.time()
        for k in slow:
            try:
                assert k.recv(100) == b""  # closed by the server
            except ConnectionResetError:
                pass
            k.close()
        assert time.time() - t0 < 15, time.time() - t0

        chat = "/v1/chat/completions"
        expect_error(s, "POST", chat, "{not json", 400)
        expect_error(s, "POST", chat, "", 400)
        expect_error(s, "POST", chat, "[]", 400)
        expect_error(s, "POST", chat, '{"messages": [{"role": "user", "content": "x"}]} trailing', 400)
        expect_error(s, "POST", chat, '{"messages": "hello"}', 400, "messages")
        expect_error(s, "POST", chat, {"messages": [{"role": "user", "content": 1}]}, 400, "messages")
        expect_error(s, "POST", chat, {"messages": [{"role": "user", "content": "x"}], "max_tokens": "5"},
                     400, "max_tokens")
        expect_error(s, "POST", chat, {"messages": [{"role": "user", "content": "x"}], "stream": 1},
                     400, "stream")
        expect_error(s, "POST", "/v1/completions", {"prompt": ["a", "b"]}, 400, "prompt")
        expect_error(s, "POST", "/v1/completions", "{\"prompt\": \"a\u0000b\"}", 400)  # raw NUL byte
        # bodies over --max-body: read and refused, then over the hard limit: refused unread
        expect_error(s, "POST", chat, "[" + "1," * 40000 + "1]", 413)
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        c.putrequest("POST", chat)
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        for _ in range(20):
            c.send(b"1000\r\n" + b"x" * 4096 + b"\r\n")
        c.send(b"0\r\n\r\n")
        r = c.getresponse()
        assert r.status == 413, r.status
        r.read()
        c.close()
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        c.putrequest("POST", chat)
        c.putheader("Content-Length", str(1 << 40))
        c.endheaders()
        r = c.getresponse()
        assert r.status == 413, r.status
        c.close()
        expect_error(s, "GET", "/nope", None, 404)
        expect_error(s, "DELETE", chat, None, 405)
        expect_error(s, "GET", chat, None, 405)

        # mid-stream disconnect: the slot is freed at once
        for _ in range(1 if LIGHT else 3):
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
            body = json.dumps({"prompt": "Tell me a story", "max_tokens": 900, "temperature": 0,
                               "stream": True}).encode()
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            got = b""
            while got.count(b"data: ") < 3:
                d = sock.recv(4096)
                assert d, got
                got += d
            assert s.metric("loom_active_slots") >= 1
            sock.close()
            wait_idle(s)
        # a client that sends a request and leaves before any answer
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        body = json.dumps({"prompt": "x", "max_tokens": 50}).encode()
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        sock.close()
        # half a request, then gone
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro")
        sock.close()
        wait_idle(s)

        # many requests in a row, on one keep-alive connection and on fresh ones
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        for i in range(N_ROUNDS):
            kind = i % 5
            if kind == 0:
                c.request("POST", "/v1/completions", body=json.dumps({"prompt": "n%d" % i, "max_tokens": 1}),
                          headers={"Content-Type": "application/json"})
                want = 200
            elif kind == 1:
                c.request("POST", chat, body='{"messages": [', headers={"Content-Type": "application/json"})
                want = 400
            elif kind == 2:
                c.request("GET", "/health")
                want = 200
            elif kind == 3:
                c.request("GET", "/v1/models")
                want = 200
            else:
                c.request("POST", chat, body=json.dumps({"messages": [{"role": "user", "content": "q"}],
                                                         "max_tokens": 1, "stream": True}),
                          headers={"Content-Type": "application/json"})
                want = 200
            r = c.getresponse()
            data = r.read()
            assert r.status == want, (i, r.status, data[:200])
            if kind == 4:
                assert data.endswith(b"data: [DONE]\n\n"), data[-100:]
        c.close()
        for i in range(50):
            st, _, _ = s.request("GET", "/health")
            assert st == 200
        wait_idle(s)
        st, _, body = s.request("GET", "/health")
        assert st == 200 and json.loads(body)["status"] == "ok"
        st, _, body = s.request("GET", "/metrics")
        text = body.decode()
        assert 'loom_requests_total{route="/v1/chat/completions",status="400"}' in text, text
        assert 'loom_requests_total{route="other",status="404"}' in text, text
        assert 'loom_time_to_first_token_seconds_bucket{le="+Inf"}' in text, text
        assert s.metric("loom_time_to_first_token_seconds_count") >= N_ROUNDS * 2 // 5
        assert s.metric("loom_inter_token_latency_seconds_count") >= 1
        assert s.metric("loom_generation_tokens_total") >= s.metric("loom_inter_token_latency_seconds_count")
        rc = s.stop()
        assert rc == 0, (rc, s.read_log())
        # the access log: one JSON object per request, no prompt text
        lines = [json.loads(ln) for ln in s.read_log().splitlines() if ln.startswith("{")]
        assert len(lines) >= N_ROUNDS + 50, len(lines)
        assert all({"method", "path", "status", "ms", "client", "outcome"} <= set(ln) for ln in lines)
        assert not any("prompt" in ln for ln in lines)
        gen = [ln for ln in lines if ln["path"] == "/v1/completions" and ln["status"] == 200]
        bad = [ln for ln in gen if "prompt_tokens" not in ln or "completion_tokens" not in ln]
        assert gen and not bad, bad[:3]
        assert any(ln["outcome"] == "client_gone" for ln in gen), gen[:5]
        assert any(ln["status"] == 413 for ln in lines) and any(ln["status"] == 404 for ln in lines)


if __name__ == "__main__":
    main_guard(run)
