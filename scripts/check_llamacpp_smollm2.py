#!/usr/bin/env python3
"""loom's greedy tokens against llama.cpp's llama-server on the real
SmolLM2-135M-Instruct, at Q4_1 (the cached GGUF) and at q8_0 (a copy made by
`loom export-gguf --type q8_0`): opt-in ctest llamacpp_greedy_smollm2.

  check_llamacpp_smollm2.py LOOM WORKDIR

For each model and prompt both engines generate N_GEN tokens greedily
(llama-server: POST /completion, temperature 0, top_k 1, n_probs 1 for the
token pieces; loom: `loom serve` POST /v1/completions, temperature 0,
logprobs 2 for the pieces and loom's own top-1/top-2 logprobs). loom runs with
LOOM_CPU_ACT=f32 (weights dequantized exactly, activations kept in f32);
llama.cpp quantizes activations to 8 bits for its quantized dot products, so
a near tie may flip. Criterion per prompt: the token pieces agree up to the
first divergence, which (if any) is not among the first MIN_PREFIX tokens, and
where they part loom's own top-1/top-2 logit gap (= logprob gap) is below
MAX_GAP: the engines only part at a near tie.

Neither side ignores EOS: `loom serve` has no ignore_eos, and llama-server's
ignore_eos forbids EOS outright, which loom does not; the prompts are
open-ended so that 32 tokens come before any EOS (an early EOS on one side is
a divergence like any other, judged by the same gap).

Inputs (each may be overridden by the environment):
  LOOM_LLAMA_SERVER  default $LOOM_SOURCE_DIR/.llamacpp/build/bin/llama-server
                     (scripts/build-llamacpp.sh)
  LOOM_SMOL_MODEL    default SmolLM2-135M-Instruct.Q4_1.gguf in the model
                     cache ($LOOM_MODEL_CACHE, $XDG_CACHE_HOME/loom/models,
                     ~/.cache/loom/models; scripts/fetch-default-model.sh)
  LOOM_GREEDY_MODELS the models compared, comma-separated: Q4_1 (the cached
                     file) or a type of `loom export-gguf --type` made from it
                     (default Q4_1,q8_0; ctest llamacpp_greedy_kquant_mix runs
                     q4_K_M,q5_K_M,q3_K_M, ADR 0039)
  LOOM_GREEDY_MAX_GAP, LOOM_GREEDY_PROMPT_SUFFIX_LOOM (appended to loom's
                     prompts only: a way to watch the check fail)
Exit 77 (skipped) when llama-server or the model is missing; 0 when every
prompt passes.
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

N_GEN = 32
MIN_PREFIX = 4
MAX_GAP = float(os.environ.get("LOOM_GREEDY_MAX_GAP", "0.5"))
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the sea, there lived",
    "Photosynthesis is the process by which plants",
]


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body, timeout=600):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


class Server:
    """A server process on 127.0.0.1:port, up once GET /health says 200."""

    def __init__(self, name, cmd, port, env, log):
        self.name, self.port = name, port
        self.log = open(log, "wb")
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError("%s exited (%d) while starting; see %s"
                                   % (name, self.p.returncode, log))
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=5) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.3)
        self.close()
        raise RuntimeError("%s did not come up in 300 s; see %s" % (name, log))

    def close(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def llama_tokens(port, prompt):
    r = post(port, "/completion", {"prompt": prompt, "n_predict": N_GEN, "temperature": 0,
                                   "top_k": 1, "cache_prompt": False, "n_probs": 1,
                                   "return_tokens": True})
    toks = [c["token"] for c in r["completion_probabilities"]]
    # llama-server lists the EOS it stopped at; loom's logprobs end before it
    if r.get("stop_type") == "eos" and toks:
        toks.pop()
    return toks, r.get("stop_type")


def loom_tokens(port, prompt):
    r = post(port, "/v1/completions", {"prompt": prompt, "max_tokens": N_GEN, "temperature": 0,
                                       "logprobs": 2})
    lp = r["choices"][0]["logprobs"]
    gaps = []
    for top in lp["top_logprobs"]:
        v = sorted(top.values(), reverse=True)
        gaps.append(v[0] - v[1] if len(v) > 1 else float("inf"))
    return lp["tokens"], gaps, r["choices"][0]["finish_reason"]


def compare(model_name, prompt, lt, lgaps, ct, ends):
    n = 0
    while n < min(len(lt), len(ct)) and lt[n] == ct[n]:
        n += 1
    same = n == len(lt) == len(ct)
    if same:
        print("  %-8s %-42r common prefix %2d/%d, identical (%s)"
              % (model_name, prompt[:40], n, N_GEN, ends))
        return True
    gap = lgaps[n] if n < len(lgaps) else float("nan")
    ok = n >= MIN_PREFIX and gap < MAX_GAP
    print("  %-8s %-42r common prefix %2d/%d, diverge at %d: loom %r llama.cpp %r, "
          "loom top-1/top-2 gap %.4f -> %s"
          % (model_name, prompt[:40], n, N_GEN, n, lt[n] if n < len(lt) else "<end>",
             ct[n] if n < len(ct) else "<end>", gap, "ok" if ok else "FAIL"))
    return ok


def main():
    loom, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    os.makedirs(work, exist_ok=True)
    src = os.environ.get("LOOM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
    server = os.environ.get("LOOM_LLAMA_SERVER",
                            os.path.join(src, ".llamacpp", "build", "bin", "llama-server"))
    cache = os.environ.get("LOOM_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "loom", "models")
    q41 = os.environ.get("LOOM_SMOL_MODEL",
                         os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    if not os.access(server, os.X_OK):
        skip("no llama-server at %s (scripts/build-llamacpp.sh, or set LOOM_LLAMA_SERVER)"
             % server)
    if not os.path.isfile(q41):
        skip("no model %s (scripts/fetch-default-model.sh, or set LOOM_SMOL_MODEL)" % q41)
    models = []
    for name in os.environ.get("LOOM_GREEDY_MODELS", "Q4_1,q8_0").split(","):
        if name == "Q4_1":
            models.append((name, q41))
            continue
        path = os.path.join(work, "smol-%s.gguf" % name)
        p = subprocess.run([loom, "export-gguf", "-m", q41, "-o", path, "--type", name],
                           capture_output=True, text=True)
        if p.returncode != 0:
            print("loom export-gguf failed (exit %d):\n%s" % (p.returncode, p.stdout + p.stderr))
            return 1
        models.append((name, path))
    env = dict(os.environ, LOOM_CPU_ACT="f32")
    suffix = os.environ.get("LOOM_GREEDY_PROMPT_SUFFIX_LOOM", "")
    print("llama.cpp %s vs loom %s (LOOM_CPU_ACT=f32), %d greedy tokens, divergence allowed "
          "from token %d at a loom top-1/top-2 gap < %g" % (server, loom, N_GEN, MIN_PREFIX,
                                                           MAX_GAP))
    ok = True
    for name, model in models:
        cport, lport = free_port(), free_port()
        servers = []
        try:
            servers.append(Server("llama-server", [server, "-m", model, "--host", "127.0.0.1",
                                                   "--port", str(cport), "-t", "2", "-c", "512",
                                                   "-ngl", "0", "-np", "1"],
                                  cport, os.environ, os.path.join(work, "llama-%s.log" % name)))
            servers.append(Server("loom serve", [loom, "--backend", "cpu", "serve", "-m", model,
                                                 "--host", "127.0.0.1", "--port", str(lport),
                                                 "--threads", "2", "--ctx", "512",
                                                 "--parallel", "1", "--no-prefix-cache"],
                                  lport, env, os.path.join(work, "loom-%s.log" % name)))
            for prompt in PROMPTS:
                ct, cstop = llama_tokens(cport, prompt)
                lt, gaps, lstop = loom_tokens(lport, prompt + suffix)
                ok = compare(name, prompt, lt, gaps, ct,
                             "llama.cpp stop_type %s, loom finish_reason %s" % (cstop, lstop)) and ok
        finally:
            for s in servers:
                s.close()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
