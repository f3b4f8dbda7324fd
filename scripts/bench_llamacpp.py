#!/usr/bin/env python3
"""scripts/bench_llamacpp.py - loom vs llama.cpp on the same GGUF files, same run.

For each model (the small-110m and small-110m-moe presets at q8_0 and q4_0 by
default, written by `loom init-model`), measures prompt (prefill) and
generation tokens/s:
  * loom:      `loom run -m FILE --temp 0 --ignore-eos`, parsing its final
               "prompt N tokens, X tok/s | generation M tokens, Y tok/s" line;
  * llama.cpp: the llama-cpp-python package (which builds llama.cpp from
               source: pip install llama-cpp-python), eval timings from
               llama.cpp's own perf counters (llama_perf_context), the figures
               llama-bench reports as pp and tg.
Both get the same prompt token count, the same number of generated tokens and
the same thread count. The runs alternate (llama.cpp, loom, llama.cpp, ...), each
llama.cpp run in a child process that has exited before loom starts (its
OpenMP threads keep spinning after a run and would steal loom's cores), and
the best of --repeat runs is kept, so background load hits both alike.

Usage: scripts/bench_llamacpp.py [--loom build/loom] [--threads 2]
                                 [--prompt-tokens 128] [--gen 64] [--repeat 3]
                                 [--out DIR] [--format table|json] [MODEL.gguf ...]
Developer tool, not run by CI (llama-cpp-python takes ~10 min to build).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

PRESETS = [("small-110m", "q8_0"), ("small-110m", "q4_0"),
           ("small-110m-moe", "q8_0"), ("small-110m-moe", "q4_0")]
LOOM_LINE = re.compile(r"prompt (\d+) tokens, ([0-9.]+) tok/s \| generation (\d+) tokens, ([0-9.]+) tok/s")


def make_prompt(n_tokens, tokenize):
    """A natural-ish prompt of exactly n_tokens tokens (without BOS)."""
    base = ("The quick brown fox jumps over the lazy dog while the river runs "
            "past the old mill and the children count the boats. ")
    text = base
    while len(tokenize(text)) < n_tokens:
        text += base
    toks = tokenize(text)[:n_tokens]
    return toks


def run_loom(loom, model, prompt_text, n_gen, threads):
    env = dict(os.environ, LOOM_THREADS=str(threads))
    cmd = [loom, "--backend", "cpu", "run", "-m", model, "-p", prompt_text, "-n", str(n_gen),
           "--temp", "0", "--ignore-eos"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("loom run failed: " + out.stderr[-2000:])
    m = LOOM_LINE.search(out.stdout + out.stderr)
    if not m:
        raise RuntimeError("no timing line in loom output:\n" + (out.stdout + out.stderr)[-2000:])
    return {"pp_tokens": int(m.group(1)), "pp_tps": float(m.group(2)),
            "tg_tokens": int(m.group(3)), "tg_tps": float(m.group(4))}


def _llamacpp_worker(model, n_ctx, n_batch, threads, prompt_tokens, n_gen, repeat):
    """Runs in a child process: load, then `repeat` timed runs (best kept)."""
    import llama_cpp
    llm = llama_cpp.Llama(model_path=model, n_ctx=n_ctx, n_batch=n_batch, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    toks = make_prompt(prompt_tokens - 1, lambda t: llm.tokenize(t.encode(), add_bos=False))
    text = llm.detokenize(toks).decode("utf-8", errors="replace")
    # loom adds BOS itself; llama.cpp gets it explicitly: both prefill n tokens.
    full = [llm.token_bos()] + llm.tokenize(text.encode(), add_bos=False)
    best = None
    for _ in range(repeat):
        llm.reset()
        llama_cpp.llama_perf_context_reset(llm.ctx)
        produced = 0
        for _tok in llm.generate(full, temp=0.0, top_k=1, reset=True):
            produced += 1
            if produced >= n_gen:
                break
        p = llama_cpp.llama_perf_context(llm.ctx)
        r = {"pp_tokens": int(p.n_p_eval), "pp_tps": 1e3 * p.n_p_eval / max(p.t_p_eval_ms, 1e-9),
             "tg_tokens": int(p.n_eval), "tg_tps": 1e3 * p.n_eval / max(p.t_eval_ms, 1e-9)}
        best = r if best is None else {**r, "pp_tps": max(best["pp_tps"], r["pp_tps"]),
                                       "tg_tps": max(best["tg_tps"], r["tg_tps"])}
    return text, best


def run_llamacpp(model, a):
    """llama.cpp in a child process that exits before loom runs: its worker
    threads (OpenMP) would otherwise keep spinning and steal loom's cores."""
    import concurrent.futures
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as ex:
        return ex.submit(_llamacpp_worker, model, a.prompt_tokens + a.gen + 16,
                         max(512, a.prompt_tokens + 1), a.threads, a.prompt_tokens, a.gen,
                         1).result()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loom", default="build/loom")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default="build/bench-llamacpp")
    ap.add_argument("--format", choices=["table", "json"], default="table")
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    try:
        import llama_cpp
    except ImportError:
        sys.exit("bench_llamacpp: the llama-cpp-python package is not installed "
                 "(pip install llama-cpp-python builds llama.cpp from source)")

    os.makedirs(a.out, exist_ok=True)
    models = a.models
    if not models:
        for preset, qt in PRESETS:
            path = os.path.join(a.out, f"{preset}-{qt}.gguf")
            if not os.path.exists(path):
                subprocess.run([a.loom, "init-model", "--preset", preset, "--type", qt, "-o", path],
                               check=True, stdout=subprocess.DEVNULL)
            models.append(path)

    rows = []
    for model in models:
        best = {"loom": None, "llama.cpp": None}
        for _ in range(a.repeat):
            text, lc = run_llamacpp(model, a)
            lo = run_loom(a.loom, model, text, a.gen, a.threads)
            for k, r in (("loom", lo), ("llama.cpp", lc)):
                b = best[k]
                if b is None:
                    best[k] = dict(r)
                else:
                    b["pp_tps"] = max(b["pp_tps"], r["pp_tps"])
                    b["tg_tps"] = max(b["tg_tps"], r["tg_tps"])
        rows.append({"model": os.path.basename(model), "threads": a.threads, **{
            f"{k}_{f}": v for k, v2 in best.items() for f, v in v2.items()}})

    if a.format == "json":
        print(json.dumps({"llama_cpp_python": getattr(llama_cpp, "__version__", "?"),
                          "time": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}, indent=1))
        return
    print(f"llama-cpp-python {getattr(llama_cpp, '__version__', '?')}, {a.threads} thread(s), "
          f"prompt {a.prompt_tokens} tokens, {a.gen} generated, best of {a.repeat}")
    print(f"{'model':28} {'loom pp':>9} {'llama pp':>9} {'ratio':>6} | "
          f"{'loom tg':>9} {'llama tg':>9} {'ratio':>6}")
    for r in rows:
        print(f"{r['model']:28} {r['loom_pp_tps']:9.1f} {r['llama.cpp_pp_tps']:9.1f} "
              f"{r['loom_pp_tps'] / r['llama.cpp_pp_tps']:6.2f} | {r['loom_tg_tps']:9.1f} "
              f"{r['llama.cpp_tg_tps']:9.1f} {r['loom_tg_tps'] / r['llama.cpp_tg_tps']:6.2f}")
    print("tokens/s; ratio = loom / llama.cpp (> 1: loom faster)")


if __name__ == "__main__":
    main()
