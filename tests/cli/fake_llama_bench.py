#!/usr/bin/env python3
"""A stand-in for llama.cpp's llama-bench (tests/cli/bench_model.py, via
$LOOM_LLAMA_BENCH): parses the flags `loom bench model --peer llama.cpp`
passes and prints llama-bench-shaped `-o json` (the field names and types of
llama-bench's json_printer in llama.cpp b6xxx), so the mapping, parsing and
interleaving are tested without llama.cpp. t/s are fixed: pp 1000, tg 100,
pg 50, so the ratios loom prints are loom's t/s over these.

  FAKE_LLAMA_BENCH_LOG=FILE  append argv (JSON, one line) to FILE
  FAKE_LLAMA_BENCH_FAIL=1    fail as llama-bench does on a bad model
"""
import json
import os
import sys


def ints(v):
    return [int(x) for x in v.split(",")]


def main(argv):
    log = os.environ.get("FAKE_LLAMA_BENCH_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(argv) + "\n")
    if os.environ.get("FAKE_LLAMA_BENCH_FAIL"):
        print("llama_model_load: error loading model: tensor 'x' has wrong shape", file=sys.stderr)
        print("main: error: failed to load model '%s'" % argv[argv.index("-m") + 1], file=sys.stderr)
        return 1
    a = {"-p": [512], "-n": [128], "-pg": [], "-t": [4], "-b": [2048], "-ub": [512],
         "-ctk": ["f16"], "-ctv": ["f16"], "-r": 5, "-o": "md", "-m": None}
    i = 0
    while i < len(argv):
        k, v = argv[i], argv[i + 1]
        if k in ("-p", "-n", "-t", "-b", "-ub"):
            a[k] = ints(v)
        elif k == "-pg":
            a["-pg"].append(ints(v))
        elif k in ("-ctk", "-ctv"):
            a[k] = v.split(",")
        elif k == "-r":
            a[k] = int(v)
        elif k in ("-o", "-m"):
            a[k] = v
        else:
            print("error: invalid parameter for argument: " + k, file=sys.stderr)
            return 1
        i += 2
    if a["-o"] != "json" or not a["-m"] or not os.path.exists(a["-m"]):
        print("error: want -o json and an existing -m", file=sys.stderr)
        return 1
    size = os.path.getsize(a["-m"])
    tests = [(p, 0) for p in a["-p"] if p] + [(0, n) for n in a["-n"] if n] + \
            [tuple(pg) for pg in a["-pg"]]
    out = []
    for b in a["-b"]:
        for ub in a["-ub"]:
            for tk in a["-ctk"]:
                for tv in a["-ctv"]:
                    for t in a["-t"]:
                        for p, n in tests:
                            ts = 1000.0 if n == 0 else 100.0 if p == 0 else 50.0
                            ns = (p + n) / ts * 1e9
                            out.append({
                                "build_commit": "fake0000", "build_number": 1,
                                "cpu_info": "Fake CPU", "gpu_info": "", "backends": "CPU",
                                "model_filename": a["-m"], "model_type": "llama ?B Q4_1",
                                "model_size": size, "model_n_params": 1000000, "n_batch": b,
                                "n_ubatch": ub, "n_threads": t, "cpu_mask": "0x0",
                                "cpu_strict": False, "poll": 50, "type_k": tk, "type_v": tv,
                                "n_gpu_layers": 99, "n_prompt": p, "n_gen": n, "n_depth": 0,
                                "test_time": "2026-01-01T00:00:00Z", "avg_ns": int(ns),
                                "stddev_ns": 0, "avg_ts": ts, "stddev_ts": 0.0,
                                "samples_ns": [int(ns)] * a["-r"], "samples_ts": [ts] * a["-r"]})
    # llama-bench's json_printer layout: "[\n  {...},\n  {...}\n]\n"
    print("[\n" + ",\n".join("  " + json.dumps(o) for o in out) + "\n]")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
