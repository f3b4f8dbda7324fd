#!/usr/bin/env python3
"""loom perplexity against llama.cpp's llama-perplexity (opt-in ctest
perplexity_llamacpp): the same GGUF, the same text, the same --ctx/--chunks,
and the two "Final estimate: PPL" values must agree within 0.5%.

  check_perplexity_llamacpp.py LOOM WORKDIR

Inputs (each may be overridden by the environment):
  LOOM_LLAMA_PERPLEXITY  llama.cpp's llama-perplexity binary; default
                         $LOOM_SOURCE_DIR/.llamacpp/build/bin/llama-perplexity
                         (built from the llama-cpp-python sdist's vendored
                         llama.cpp, docs/PERF.md says how)
  LOOM_PPL_MODEL         default: SmolLM2-135M-Instruct.Q4_1.gguf in the model
                         cache (scripts/fetch-default-model.sh)
  LOOM_PPL_TEXT          default: the Python 3.11 tutorial, the
                         reStructuredText sources of Debian's python3.11-doc
                         (/usr/share/doc/python3.11/html/_sources/tutorial/*.rst.txt,
                         sorted by name and concatenated; PSF licence)
  LOOM_PPL_CHUNKS        windows to score (default 8), LOOM_PPL_CTX (default 512)
Exit 77 (skipped) when llama-perplexity, the model or the text is missing, or
when this loom cannot load the model's tensor types yet; 0 when they agree.
"""
import glob
import os
import re
import subprocess
import sys
import time

TOL = 0.005
FINAL = re.compile(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)")


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


def main():
    loom, work = os.path.abspath(sys.argv[1]), sys.argv[2]
    os.makedirs(work, exist_ok=True)
    src = os.environ.get("LOOM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
    llama = os.environ.get("LOOM_LLAMA_PERPLEXITY",
                           os.path.join(src, ".llamacpp", "build", "bin", "llama-perplexity"))
    cache = os.environ.get("LOOM_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "loom", "models")
    model = os.environ.get("LOOM_PPL_MODEL",
                           os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    text = os.environ.get("LOOM_PPL_TEXT")
    if not os.access(llama, os.X_OK):
        skip("no llama-perplexity at %s (set LOOM_LLAMA_PERPLEXITY)" % llama)
    if not os.path.isfile(model):
        skip("no model %s (scripts/fetch-default-model.sh, or set LOOM_PPL_MODEL)" % model)
    if not text:
        parts = sorted(glob.glob("/usr/share/doc/python3.11/html/_sources/tutorial/*.rst.txt"))
        if not parts:
            skip("no text: install python3.11-doc or set LOOM_PPL_TEXT")
        text = os.path.join(work, "python311-tutorial.txt")
        with open(text, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    out.write(f.read())
    ctx = os.environ.get("LOOM_PPL_CTX", "512")
    chunks = os.environ.get("LOOM_PPL_CHUNKS", "8")
    threads = os.environ.get("LOOM_PPL_THREADS", "2")
    res = {}
    for name, cmd in (
            ("loom", [loom, "--backend", "cpu", "perplexity", "-m", model, "-f", text,
                      "--ctx", ctx, "--chunks", chunks, "-t", threads]),
            ("llama.cpp", [llama, "-m", model, "-f", text, "-c", ctx, "--chunks", chunks,
                           "-t", threads, "-b", ctx, "-ngl", "0"])):
        t0 = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - t0
        out = p.stdout + p.stderr
        m = FINAL.search(out)
        if name == "loom" and p.returncode != 0 and "which loom does not support" in out:
            skip("this loom cannot load %s yet: %s" % (model, out.strip().splitlines()[-1]))
        if p.returncode != 0 or not m:
            print("%s failed (exit %d):\n%s" % (name, p.returncode, out[-3000:]))
            return 1
        res[name] = (float(m.group(1)), float(m.group(2)))
        n_win = len(re.findall(r"\[\d+\][0-9.]+,", out))
        # whole process, load and tokenization included, for both
        print("%-9s PPL = %.4f +/- %.5f | %d windows in %.1f s wall, %.1f tokens/s"
              % (name, res[name][0], res[name][1], n_win, wall, n_win * int(ctx) / wall))
    a, b = res["loom"][0], res["llama.cpp"][0]
    rel = abs(a - b) / b
    print("model %s, text %s, ctx %s, chunks %s: relative difference %.4f%% (limit %.1f%%)"
          % (os.path.basename(model), os.path.basename(text), ctx, chunks, 100 * rel, 100 * TOL))
    return 0 if rel <= TOL else 1


if __name__ == "__main__":
    sys.exit(main())
