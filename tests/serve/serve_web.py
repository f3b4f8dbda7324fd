#!/usr/bin/env python3
"""tests/serve/serve_web.py LOOM MODEL - the chat page (GET /) in a real
browser: headless Chromium, driven over the DevTools protocol.

The page is loaded with ?q=... so it sends a first message by itself; a
second message is typed into the textarea and sent with Enter, as a user
would. Each streamed reply, reassembled by the page from Server-Sent Events,
must equal the text the API returns for the same conversation without
streaming (greedy, so the two are the same tokens). The page must raise no
JavaScript exception and no console error (a Content-Security-Policy
violation is one), and the API-key path must show the server's 401 message.
A screenshot is written next to the model for people to look at.

Fails when chromium or websocket-client is missing: scripts/install-deps.sh
installs both.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import base64

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import Server, main_guard  # noqa: E402

try:
    import websocket  # websocket-client
except ImportError:
    print("serve_web: FAIL: the websocket-client package is not installed (run scripts/install-deps.sh)")
    sys.exit(1)

FIRST = "Hello there, who are you?"
SECOND = "Tell me more."
MAX_TOKENS = 12


class Browser:
    """One headless Chromium with one page, driven over CDP."""

    def __init__(self):
        exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
        if not exe:
            raise RuntimeError("no chromium on PATH (scripts/install-deps.sh installs Debian's chromium)")
        self.profile = tempfile.mkdtemp(prefix="loom_chromium_")
        self.err = open(os.path.join(self.profile, "stderr.log"), "w+")
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-port=0", "--user-data-dir=" + self.profile, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self.err)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + 60
        while not os.path.exists(port_file) or os.path.getsize(port_file) == 0:
            if time.time() > deadline or self.proc.poll() is not None:
                self.err.seek(0)
                raise RuntimeError("chromium did not start:\n" + self.err.read()[-2000:])
            time.sleep(0.05)
        port = int(open(port_file).read().split()[0])
        targets = json.load(urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=10))
        page = [t for t in targets if t.get("type") == "page"][0]
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0
        self.events = []
        self.call("Runtime.enable")
        self.call("Log.enable")
        self.call("Page.enable")

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            self.events.append(msg)

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError("evaluate %r: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    def wait_for(self, expr, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = self.eval(expr)
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError("timed out waiting for %s" % expr)

    def problems(self):
        """JavaScript exceptions and console errors seen so far."""
        out = []
        for e in self.events:
            m = e.get("method")
            if m == "Runtime.exceptionThrown":
                out.append(e["params"]["exceptionDetails"].get("text", "exception"))
            elif m == "Runtime.consoleAPICalled" and e["params"]["type"] == "error":
                out.append("console.error: %r" % e["params"]["args"])
            elif m == "Log.entryAdded" and e["params"]["entry"]["level"] == "error":
                out.append("log: " + e["params"]["entry"]["text"])
        return out

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def api_reply(s, name, messages):
    body = {"model": name, "messages": messages, "temperature": 0, "max_tokens": MAX_TOKENS}
    st, _, raw = s.request("POST", "/v1/chat/completions", body)
    assert st == 200, (st, raw)
    r = json.loads(raw)
    return r["choices"][0]["message"]["content"], r["choices"][0]["finish_reason"]


ASSISTANT_N = "document.querySelectorAll('.msg.assistant').length"


def assistant(i):
    return "document.querySelectorAll('.msg.assistant')[%d]" % i


def run(loom, model):
    name = os.path.basename(model)[: -len(".gguf")]
    b = Browser()
    try:
        with Server(loom, model, "--parallel", "1", "--ctx", "256") as s:
            # the API's own answers (greedy), for the two turns
            want1, fin1 = api_reply(s, name, [{"role": "user", "content": FIRST}])
            want2, fin2 = api_reply(s, name, [{"role": "user", "content": FIRST},
                                        {"role": "assistant", "content": want1},
                                        {"role": "user", "content": SECOND}])

            q = urllib.parse.urlencode({"q": FIRST, "temperature": 0, "max_tokens": MAX_TOKENS})
            b.call("Page.navigate", url="%s/?%s" % (s.base, q))
            b.wait_for("document.readyState === 'complete'")
            # the header says "connecting…" until /v1/models answers
            shown = b.wait_for("(t => t !== 'connecting…' && t)(document.getElementById('model').textContent)")
            assert shown == "model: " + name, shown
            b.wait_for(assistant(0) + "?.dataset.done === '1'")
            got1 = b.eval(assistant(0) + ".querySelector('.text').textContent")
            assert got1 == want1, "page streamed %r, API says %r" % (got1, want1)
            assert b.eval(assistant(0) + ".dataset.finish") == fin1
            stats = b.eval(assistant(0) + ".querySelector('.stats').textContent")
            assert re.search(r"\d+ tokens, [\d.]+ tok/s", stats), stats

            # a second turn typed like a user: textarea + Enter
            b.eval("""(() => { const t = document.getElementById('input');
                        t.value = %s;
                        t.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true}));
                        return true; })()""" % json.dumps(SECOND))
            b.wait_for(ASSISTANT_N + " === 2 && " + assistant(1) + ".dataset.done === '1'")
            got2 = b.eval(assistant(1) + ".querySelector('.text').textContent")
            assert got2 == want2, "second turn: page %r, API %r" % (got2, want2)
            users = b.eval("[...document.querySelectorAll('.msg.user .text')].map(e => e.textContent)")
            assert users == [FIRST, SECOND], users

            shot = b.call("Page.captureScreenshot", format="png")["data"]
            png = os.path.join(os.path.dirname(os.path.abspath(model)), "chat_page.png")
            with open(png, "wb") as f:
                f.write(base64.b64decode(shot))
            problems = b.problems()
            assert not problems, "the page logged errors: %s" % problems
            print("serve_web: two streamed turns match the API (%r, %r); screenshot %s"
                  % (got1, got2, png))

        # With a key, the page without one shows the server's 401 message.
        with Server(loom, model, "--api-key", "sk-web-test") as s:
            b.events.clear()
            b.call("Page.navigate", url=s.base + "/")
            b.wait_for("document.readyState === 'complete'")
            shown = b.wait_for("(t => t.startsWith('HTTP') && t)(document.getElementById('model').textContent)")
            assert shown.startswith("HTTP 401") and "API key" in shown, shown
            print("serve_web: without the key the page shows %r" % shown)
    finally:
        b.close()


if __name__ == "__main__":
    main_guard(run)
