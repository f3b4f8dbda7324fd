"""tests/serve/serve_util.py - start `loom serve` for a test and always stop it.

The server listens on 127.0.0.1 with --port 0 (the kernel picks a free
port, which the server prints); every wait is bounded, and the server is
killed when the test ends, whether it passed or not.
"""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

# Sanitizer builds (serve/CMakeLists.txt sets it): fewer tokens and rounds.
LIGHT = os.environ.get("LOOM_SERVE_LIGHT") == "1"


class Server:
    def __init__(self, loom, model, *args, env=None, wait_ready=True, timeout=60):
        self.log = tempfile.NamedTemporaryFile(prefix="loom_serve_", suffix=".log", delete=False)
        e = dict(os.environ)
        e.update(env or {})
        cmd = [loom, "serve", "-m", model, "--host", "127.0.0.1", "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, env=e)
        self.port = None
        deadline = time.time() + timeout
        while time.time() < deadline and self.port is None:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.read_log())
            if m:
                self.port = int(m.group(1))
            elif self.proc.poll() is not None:
                break
            else:
                time.sleep(0.05)
        if self.port is None:
            self.kill()
            raise RuntimeError("loom serve did not start:\n" + self.read_log())
        self.base = "http://127.0.0.1:%d" % self.port
        if wait_ready:
            self.wait_health(200, timeout=timeout)

    def read_log(self):
        with open(self.log.name, "r", errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=20.0):
        """The log once it contains text (or as it is after timeout s): the
        server writes a request's log line when the response has been sent,
        so a client that has its answer may be ahead of it (seen under ASan)."""
        end = time.monotonic() + timeout
        log = self.read_log()
        while text not in log and time.monotonic() < end:
            time.sleep(0.05)
            log = self.read_log()
        return log

    def request(self, method, path, body=None, headers=None, timeout=60):
        """(status, headers, body bytes) of one request on a fresh connection."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            h = {"Content-Type": "application/json"} if body is not None else {}
            h.update(headers or {})
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def wait_health(self, status, timeout=60):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("loom serve exited:\n" + self.read_log())
            try:
                last = self.request("GET", "/health", timeout=5)
                if last[0] == status:
                    return last
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("/health never answered %d (last %r)" % (status, last))

    def metric(self, name, headers=None):
        st, _, body = self.request("GET", "/metrics", headers=headers)
        assert st == 200, st
        m = re.search(r"^%s (\S+)$" % re.escape(name), body.decode(), re.M)
        return float(m.group(1)) if m else None

    def stop(self, timeout=30):
        """SIGTERM (drain, then exit); returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise RuntimeError("loom serve did not exit after SIGTERM:\n" + self.read_log())
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def close(self):
        self.kill()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            sys.stderr.write("---- server log ----\n" + self.read_log() + "\n")
        self.close()
        return False


def sse_events(resp):
    """The data payloads of an SSE response (http.client response), in order."""
    out = []
    buf = b""
    while True:
        chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            assert ev.startswith(b"data: "), ev
            out.append(ev[6:].decode())
    assert buf == b"", buf
    return out


def main_guard(fn):
    """Run fn(loom, model) with a hard wall-clock limit; exit 1 on failure."""
    if len(sys.argv) != 3:
        sys.exit("usage: %s LOOM MODEL.gguf" % sys.argv[0])
    signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("test timed out")))
    signal.alarm(int(os.environ.get("LOOM_SERVE_TEST_TIMEOUT", "110")))
    t0 = time.time()
    fn(sys.argv[1], sys.argv[2])
    signal.alarm(0)
    print("%s: ok (%.1f s)" % (os.path.basename(sys.argv[0]), time.time() - t0))
