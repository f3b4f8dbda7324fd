#!/usr/bin/env python3
"""`loom bench model` and `loom bench compare` end to end (ctest bench_model).

  bench_model.py LOOM WORKDIR

On the default model with -p 16 -n 8 -r 2: the JSON schema of every -o
format, the markdown columns (llama-bench's, plus roofline), a --save record
and `bench compare`: equal records pass, a copy with t/s cut by 20% exits 1.
Where Vulkan is available (LOOM_VULKAN_ALLOW_CPU=1 admits lavapipe) the
same grid runs with --backend all: a ratio column, and lavapipe labelled as
CPU emulation. No timing is asserted beyond "positive".
"""
import csv
import glob
import io
import json
import os
import re
import shutil
import subprocess
import sys

GRID = ["-p", "16", "-n", "8", "-r", "2"]
FIELDS = {"model": str, "model_filename": str, "model_type": str, "model_size": (int, float),
          "model_n_params": (int, float), "backend": str, "backend_label": str, "device": str,
          "device_kind": str, "n_threads": int, "n_batch": int, "type_k": str, "n_prompt": int, "n_gen": int,
          "test": str, "test_time": str, "avg_ns": (int, float), "stddev_ns": (int, float),
          "avg_ts": (int, float), "stddev_ts": (int, float), "samples_ns": list,
          "samples_ts": list, "load_s": (int, float), "peak_rss_bytes": (int, float)}
MD_COLS = ["model", "size", "params", "backend", "threads", "test", "t/s"]

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL", what)
    return cond


def run(loom, args, env=None, rc=0):
    p = subprocess.run([loom] + args, capture_output=True, text=True, env=env, timeout=120)
    check(p.returncode == rc, "loom %s: exit %d, want %d\nstderr: %s" %
          (" ".join(args), p.returncode, rc, p.stderr[-2000:]))
    return p


def check_results(res, backends, where):
    check(isinstance(res, list) and res, where + ": not a non-empty list")
    tests = set()
    for r in res:
        for k, t in FIELDS.items():
            check(isinstance(r.get(k), t), "%s: field %s is %r" % (where, k, r.get(k)))
        check(r["avg_ts"] > 0 and r["stddev_ts"] >= 0, where + ": t/s not positive")
        check(len(r["samples_ns"]) == 2 and len(r["samples_ts"]) == 2, where + ": not 2 samples")
        check(r["backend"] in backends, where + ": backend " + r["backend"])
        check(r["test"] == ("pp16" if r["n_gen"] == 0 else "tg8"), where + ": test " + r["test"])
        check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["test_time"]), where + ": date")
        if r["device_kind"] in ("cpu", "cpu-emulated"):
            check(r["roofline_ts"] > 0 and r["roofline_pct"] > 0, where + ": no roofline")
            check(r["roofline_kind"] == ("fma" if r["test"].startswith("pp") else "bandwidth"),
                  where + ": roofline_kind " + str(r["roofline_kind"]))
        tests.add((r["backend"], r["test"]))
    check(tests == {(b, t) for b in backends for t in ("pp16", "tg8")}, where + ": cells %r" % tests)


def check_md(text, nrows, extra, where):
    lines = [l for l in text.splitlines() if l.startswith("|")]
    check(len(lines) == 2 + nrows, where + ": %d table lines, want %d" % (len(lines), 2 + nrows))
    cols = [c.strip() for c in lines[0].strip("|").split("|")]
    check(cols[:len(MD_COLS)] == MD_COLS, where + ": columns %r" % cols)
    for e in extra:
        check(e in cols, where + ": no column %r in %r" % (e, cols))
    for l in lines[2:]:
        cells = [c.strip() for c in l.strip("|").split("|")]
        check(len(cells) == len(cols), where + ": row %r" % l)
        check(re.fullmatch(r"[\d.]+ ± [\d.]+", cells[cols.index("t/s")]), where + ": t/s " + l)
    return lines


def check_svg(path, bars, roofs):
    """A well-formed SVG with the expected bars and roofline marks; rendered
    to PNG with rsvg-convert (librsvg2-bin) where it is installed."""
    import xml.etree.ElementTree as ET
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        check(False, "plot %s: %s" % (path, e))
        return
    check(root.tag == "{http://www.w3.org/2000/svg}svg", "plot: root " + root.tag)
    got = [e.get("class") for e in root.iter() if e.get("class")]
    check(got.count("bar") == bars, "plot: %d bars, want %d" % (got.count("bar"), bars))
    check(got.count("roofline") == roofs, "plot: %d rooflines" % got.count("roofline"))
    conv = shutil.which("rsvg-convert")
    if conv:
        png = path + ".png"
        p = subprocess.run([conv, path, "-o", png], capture_output=True, text=True, timeout=60)
        ok = p.returncode == 0 and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        check(ok, "plot: rsvg-convert could not render %s: %s" % (path, p.stderr[-500:]))


def main():
    loom, work = os.path.abspath(sys.argv[1]), sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    save = os.path.join(work, "hist")

    # cpu: JSON with --save, then markdown, CSV and JSONL.
    svg = os.path.join(work, "cpu.svg")
    p = run(loom, ["--backend", "cpu", "bench", "model"] + GRID +
            ["-o", "json", "--save", save, "--plot", svg])
    res = json.loads(p.stdout)
    check_results(res, {"cpu"}, "json")
    check_svg(svg, 2, 2)
    md = run(loom, ["bench", "model", "--backend", "cpu", "-t", "1"] + GRID).stdout
    check_md(md, 2, ["roofline t/s", "% roof"], "md")
    check(re.search(r"^\| llama \S+ Q8_0 \| [\d.]+ MiB \| \d+M \| cpu \| 1 \| tg8 \|", md, re.M),
          "md: tg8 row\n" + md)
    check("peak RSS" in md and "load" in md, "md: no load / peak RSS line")
    c = run(loom, ["bench", "model", "--backend", "cpu", "-o", "csv"] + GRID).stdout
    rows = list(csv.DictReader(io.StringIO(c)))
    check(len(rows) == 2 and all(float(r["avg_ts"]) > 0 for r in rows), "csv rows")
    jl = run(loom, ["bench", "model", "--backend", "cpu", "-o", "jsonl"] + GRID).stdout
    check_results([json.loads(l) for l in jl.splitlines()], {"cpu"}, "jsonl")

    # The saved record, and compare.
    recs = glob.glob(os.path.join(save, "bench-*.json"))
    check(len(recs) == 1, "--save wrote %r" % recs)
    rec = json.load(open(recs[0]))
    check(rec.get("schema") == "loom-bench-model/1", "record schema")
    for k in ("git_rev", "date", "machine", "results"):
        check(k in rec, "record has no " + k)
    check(rec["machine"].get("cpu") is not None and rec["machine"].get("isa"), "record machine")
    check_results(rec["results"], {"cpu"}, "record")
    hist = open(os.path.join(save, "history.jsonl")).read().splitlines()
    check(len(hist) == 1 and json.loads(hist[0])["results"], "history.jsonl")
    out = run(loom, ["bench", "compare", recs[0], recs[0]]).stdout
    check("2 cell(s) compared, 0 below 0.95" in out, "compare same: " + out)
    slow = dict(rec)
    slow["results"] = [dict(r, avg_ts=r["avg_ts"] * 0.8) for r in rec["results"]]
    slow_path = os.path.join(work, "slow.json")
    json.dump(slow, open(slow_path, "w"))
    out = run(loom, ["bench", "compare", recs[0], slow_path, "--fail-below", "0.95"], rc=1).stdout
    check(out.count("REGRESSION") == 2, "compare regression: " + out)
    run(loom, ["bench", "compare", recs[0], slow_path, "--fail-below", "0.7"], rc=0)
    # A plain -o json array compares too.
    arr = os.path.join(work, "arr.json")
    json.dump(res, open(arr, "w"))
    run(loom, ["bench", "compare", arr, recs[0], "--fail-below", "0"], rc=0)
    run(loom, ["bench", "compare", arr, os.path.join(work, "missing.json")], rc=1)

    # A preset without a file, -pg only (-p 0 -n 0): the temporary GGUF is gone after.
    tmp = os.path.join(work, "tmp")
    os.makedirs(tmp)
    p = run(loom, ["bench", "model", "--backend", "cpu", "--preset", "tiny-dense", "--type", "q4_0",
                   "-p", "0", "-n", "0", "-pg", "8,4", "-b", "3", "-r", "1", "-t", "1", "-o", "json"],
            env=dict(os.environ, TMPDIR=tmp))
    res = json.loads(p.stdout)
    check([(r["test"], r["model_filename"], r["model_type"], r["n_prompt"], r["n_gen"],
            r["n_batch"]) for r in res] == [("pp8+tg4", "preset:tiny-dense", "q4_0", 8, 4, 3)],
          "preset: %r" % res)
    check(os.listdir(tmp) == [], "preset left %r in TMPDIR" % os.listdir(tmp))

    # Vulkan (lavapipe admitted) beside cpu, where available.
    env = dict(os.environ, LOOM_VULKAN_ALLOW_CPU="1")
    dev = subprocess.run([loom, "devices"], capture_output=True, text=True, env=env).stdout
    if re.search(r"^\s+vulkan\s+available", dev, re.M):
        # One run (lavapipe is slow): the markdown carries the ratio and the label.
        svg = os.path.join(work, "all.svg")
        md = run(loom, ["bench", "model", "--backend", "all", "-t", "2", "--plot", svg] + GRID,
                 env=env).stdout
        check_svg(svg, 4, 4)
        lines = check_md(md, 4, ["vs cpu"], "md all")
        cols = [c.strip() for c in lines[0].strip("|").split("|")]
        rows = [[c.strip() for c in l.strip("|").split("|")] for l in lines[2:]]
        bes = [r[cols.index("backend")] for r in rows]
        check(bes[:2] == ["cpu", "cpu"] and all(b.startswith("vulkan") for b in bes[2:]),
              "all: backends %r" % bes)
        check(all(re.fullmatch(r"[\d.]+", r[cols.index("vs cpu")]) for r in rows), "all: ratios")
        if "(cpu-emulated)" in dev:
            check("vulkan (cpu emulation)" in bes, "lavapipe not labelled: " + md)
    else:
        print("vulkan unavailable: cpu only")
    print("bench_model: %d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
