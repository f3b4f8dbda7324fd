#!/usr/bin/env python3
"""`loom bench model --peer llama.cpp` against the real llama-bench (opt-in
ctest bench_peer_llamacpp).

  bench_peer_llamacpp.py LOOM WORKDIR

llama-bench: $LOOM_LLAMA_BENCH, else $LOOM_SOURCE_DIR/.llamacpp/build/bin/
llama-bench (scripts/build-llamacpp.sh), else llama-bench on PATH; exit 77
(skipped) without one. On a tiny generated model (`loom init-model --preset
tiny-dense --type q8_0`, which llama.cpp loads as a llama model): the rows
come cell by cell, loom then llama.cpp, llama.cpp's t/s are positive, and
the `vs llama.cpp` column is loom's t/s over llama.cpp's. Nothing about
speed is asserted.
"""
import json
import os
import re
import shutil
import subprocess
import sys


def main():
    loom, work = os.path.abspath(sys.argv[1]), sys.argv[2]
    src = os.environ.get("LOOM_SOURCE_DIR",
                         os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    bench = os.environ.get("LOOM_LLAMA_BENCH") or os.path.join(src, ".llamacpp", "build", "bin",
                                                               "llama-bench")
    if not os.access(bench, os.X_OK):
        bench = shutil.which("llama-bench")
    if not bench:
        print("skipped: no llama-bench (set LOOM_LLAMA_BENCH or run scripts/build-llamacpp.sh)")
        return 77
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    model = os.path.join(work, "tiny.gguf")
    subprocess.run([loom, "init-model", "--preset", "tiny-dense", "--type", "q8_0", "-o", model],
                   check=True, capture_output=True)
    env = dict(os.environ, LOOM_LLAMA_BENCH=bench)
    args = [loom, "bench", "model", "-m", model, "--backend", "cpu", "-p", "16", "-n", "8",
            "-r", "2", "-t", "1", "--peer", "llama.cpp"]
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)
            print("FAIL", what)

    p = subprocess.run(args + ["-o", "json"], capture_output=True, text=True, env=env, timeout=600)
    check(p.returncode == 0, "json run: exit %d: %s" % (p.returncode, p.stderr[-2000:]))
    res = json.loads(p.stdout) if p.returncode == 0 else []
    check([(r["backend"], r["test"]) for r in res] ==
          [("cpu", "pp16"), ("llama.cpp", "pp16"), ("cpu", "tg8"), ("llama.cpp", "tg8")],
          "rows: %r" % [(r.get("backend"), r.get("test")) for r in res])
    for lo, pe in zip(res[::2], res[1::2]):
        check(pe["avg_ts"] > 0 and len(pe["samples_ns"]) == 2 and pe["n_threads"] == 1 and
              pe["backend_label"].startswith("llama.cpp (") and pe["build_commit"],
              "llama.cpp row %r" % pe)
        check(abs(lo["ratio_peer"] - lo["avg_ts"] / pe["avg_ts"]) <= 1e-9 * lo["ratio_peer"],
              "ratio %r" % lo)
    p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    check(p.returncode == 0, "md run: exit %d: %s" % (p.returncode, p.stderr[-2000:]))
    print(p.stdout)
    lines = [l for l in p.stdout.splitlines() if l.startswith("|")]
    cols = [c.strip() for c in lines[0].strip("|").split("|")] if lines else []
    check("vs llama.cpp" in cols and len(lines) == 6, "md: %r" % lines)
    for l in lines[2:]:
        cells = [c.strip() for c in l.strip("|").split("|")]
        peer = cells[cols.index("backend")].startswith("llama.cpp")
        ratio = cells[cols.index("vs llama.cpp")]
        check(ratio == "-" if peer else re.fullmatch(r"[\d.]+", ratio), "md row " + l)
    print("bench_peer_llamacpp: %d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
