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
    p = subprocess.run([loom] + args, capture_output=True, text=True, env=env, timeout=450)
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


def read_png(path):
    """(width, height, rows of RGB tuples) of an 8-bit RGB/RGBA PNG, decoded
    here with zlib (no image library needed)."""
    import struct
    import zlib
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype = hdr[:4]
    if depth != 8 or ctype not in (2, 6):
        return w, h, None
    bpp = 3 if ctype == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(w)])
        prev = line
    return w, h, rows


def check_png(svg_root, png, bars, roofs):
    """The rendered image: a PNG of the SVG's size, and along a row just above
    the plot's baseline (y = 350 in bench_plot.c) one run of a bar colour per
    bar, in as many colours as the legend has backends."""
    got = read_png(png)
    if not check(got is not None and got[2] is not None, "plot: %s is not an 8-bit RGB(A) PNG" % png):
        return
    w, h, rows = got
    check((w, h) == (int(svg_root.get("width")), int(svg_root.get("height"))) and w >= 560 and h >= 400,
          "plot: PNG is %dx%d, SVG %sx%s" % (w, h, svg_root.get("width"), svg_root.get("height")))
    colours = {tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in
               ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#bab0ac")}
    row, runs, seen, last = rows[347], 0, set(), None
    for px in row:
        cur = px if px in colours else None
        if cur and cur != last:
            runs, seen = runs + 1, seen | {cur}
        last = cur
    check(runs == bars, "plot: %d bars on the rendered PNG, want %d" % (runs, bars))
    red = sum(px == (255, 0, 0) for r in rows for px in r)
    check((red > 0) == (roofs > 0), "plot: %d red roofline pixels for %d marks" % (red, roofs))
    return len(seen)


def check_svg(path, bars, roofs, backends=None):
    """A well-formed SVG with the expected bars and roofline marks, rendered
    headless to PNG with rsvg-convert (librsvg2-bin, scripts/install-deps.sh)
    and checked there too."""
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
    if not check(conv, "plot: no rsvg-convert (install librsvg2-bin: scripts/install-deps.sh)"):
        return
    png = path + ".png"
    p = subprocess.run([conv, path, "-o", png], capture_output=True, text=True, timeout=60)
    if check(p.returncode == 0, "plot: rsvg-convert could not render %s: %s" % (path, p.stderr[-500:])):
        ncol = check_png(root, png, bars, roofs)
        if backends is not None:
            check(ncol == backends, "plot: %r bar colours, want %d" % (ncol, backends))


def check_peer(loom, work):
    """--peer llama.cpp through a fake llama-bench ($LOOM_LLAMA_BENCH): the
    flags loom maps its grid to, the parsing of llama-bench's JSON, rows
    interleaved cell by cell and the loom / llama.cpp ratio. The fake's t/s
    are fixed (pp 1000, tg 100, pg 50)."""
    fake = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_llama_bench.py")
    log = os.path.join(work, "fake.log")
    env = dict(os.environ, LOOM_LLAMA_BENCH=fake, FAKE_LLAMA_BENCH_LOG=log)
    grid = ["--backend", "cpu", "-p", "16", "-n", "8", "-pg", "8,4", "-t", "1,2", "-b", "8",
            "--kv-type", "q8_0", "-r", "2", "--peer", "llama.cpp"]
    res = json.loads(run(loom, ["bench", "model", "-o", "json"] + grid, env=env).stdout)
    argv = [json.loads(l) for l in open(log)]
    check(len(argv) == 1, "peer: %d llama-bench runs, want 1" % len(argv))
    a = dict(zip(argv[0][::2], argv[0][1::2])) if argv else {}
    pgs = [argv[0][i + 1] for i, x in enumerate(argv[0]) if x == "-pg"] if argv else []
    want = {"-p": "16", "-n": "8", "-t": "1,2", "-b": "8", "-ub": "8", "-ctk": "q8_0",
            "-ctv": "q8_0", "-r": "2", "-o": "json"}
    check(all(a.get(k) == v for k, v in want.items()) and pgs == ["8,4"],
          "peer: llama-bench flags %r" % argv)
    cells = [(r["n_threads"], r["test"]) for r in res]
    order = [r["backend"] for r in res]
    check(len(res) == 12 and order == ["cpu", "llama.cpp"] * 6 and cells[::2] == cells[1::2],
          "peer: rows not interleaved loom, llama.cpp per cell: %r" % list(zip(order, cells)))
    fixed = {"pp16": 1000.0, "tg8": 100.0, "pp8+tg4": 50.0}
    for lo, pe in zip(res[::2], res[1::2]):
        check(pe["avg_ts"] == fixed.get(pe["test"]) and len(pe["samples_ns"]) == 2 and
              pe["backend_label"] == "llama.cpp (CPU)" and pe["model"] == lo["model"] and
              pe["type_k"] == "q8_0" and pe["n_batch"] == 8 and pe["ratio_peer"] is None and
              pe["load_s"] is None and pe["build_commit"] == "fake0000",
              "peer: llama.cpp row %r" % pe)
        rp = lo.get("ratio_peer") or 0
        check(abs(rp - lo["avg_ts"] / fixed.get(lo["test"], 1)) < 1e-6 * rp,
              "peer: ratio %r for %r" % (rp, lo))
        # The same machine limit on both rows of a cell (pg has none).
        check(pe["roofline_ts"] == lo["roofline_ts"], "peer: roofline %r" % pe)
    svg = os.path.join(work, "peer.svg")
    md = run(loom, ["bench", "model", "--backend", "cpu", "-p", "16", "-n", "8", "-r", "2", "-t",
                    "1", "--peer", "llama.cpp", "--plot", svg], env=env).stdout
    check_svg(svg, 4, 4, backends=2)  # (cpu + llama.cpp) x (pp16, tg8)
    lines = check_md(md, 4, ["vs llama.cpp"], "md peer")
    cols = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in l.strip("|").split("|")] for l in lines[2:]]
    check([r[cols.index("backend")] for r in rows] == ["cpu", "llama.cpp (CPU)"] * 2,
          "md peer: backends " + md)
    check([bool(re.fullmatch(r"[\d.]+", r[cols.index("vs llama.cpp")])) for r in rows] ==
          [True, False] * 2, "md peer: ratio column " + md)
    check("build fake0000" in md, "md peer: no llama.cpp build line")
    # Errors: not an executable, llama-bench failing (its last stderr line).
    p = run(loom, ["bench", "model", "--peer", "llama.cpp"] + GRID,
            env=dict(env, LOOM_LLAMA_BENCH=os.path.join(work, "none")), rc=2)
    check(re.fullmatch(r"loom bench model: --peer llama.cpp: LOOM_LLAMA_BENCH=\S+ is not an "
                       r"executable file\n", p.stderr), "peer: missing binary: " + p.stderr)
    p = run(loom, ["bench", "model", "--backend", "cpu", "--peer", "llama.cpp"] + GRID,
            env=dict(env, FAKE_LLAMA_BENCH_FAIL="1"), rc=1)
    check(re.search(r"^loom bench model: --peer llama.cpp: \S+ failed \(exit 1\) on \S+: main: "
                    r"error: failed to load model", p.stderr, re.M), "peer: failure: " + p.stderr)


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
    check_svg(svg, 2, 2, backends=1)
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

    # A preset without a file, -pg only (-p 0 -n 0): generated in memory, so
    # an unusable TMPDIR does not matter.
    preset = ["bench", "model", "--backend", "cpu", "--preset", "tiny-dense", "--type", "q4_0",
              "-p", "0", "-n", "0", "-pg", "8,4", "-b", "3", "-r", "1", "-t", "1", "-o", "json"]
    p = run(loom, preset, env=dict(os.environ, TMPDIR=os.path.join(work, "no-such-dir")))
    res = json.loads(p.stdout or "[]")
    check([(r["test"], r["model_filename"], r["model_type"], r["n_prompt"], r["n_gen"],
            r["n_batch"]) for r in res] == [("pp8+tg4", "preset:tiny-dense", "q4_0", 8, 4, 3)],
          "preset: %r" % res)
    # With --peer, llama.cpp needs a file: a temporary GGUF, gone after.
    tmp = os.path.join(work, "tmp")
    os.makedirs(tmp)
    fake = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_llama_bench.py")
    p = run(loom, preset + ["--peer", "llama.cpp"], env=dict(os.environ, TMPDIR=tmp,
                                                              LOOM_LLAMA_BENCH=fake))
    res = json.loads(p.stdout or "[]")
    check([r["backend"] for r in res] == ["cpu", "llama.cpp"], "preset peer: %r" % res)
    check(os.listdir(tmp) == [], "preset left %r in TMPDIR" % os.listdir(tmp))

    check_peer(loom, work)

    # --plot FILE.png: rendered through rsvg-convert; without it on PATH, a
    # usage error before anything runs.
    png = os.path.join(work, "direct.png")
    run(loom, ["bench", "model", "--backend", "cpu", "-t", "1", "--plot", png] + GRID)
    check(os.path.exists(png) and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n" and
          not os.path.exists(png + ".tmp.svg"), "--plot FILE.png: no PNG")
    p = run(loom, ["bench", "model", "--plot", png] + GRID,
            env=dict(os.environ, PATH=os.path.join(work, "empty")), rc=2)
    check(re.fullmatch(r"loom bench model: --plot \S+: PNG needs rsvg-convert on PATH .*\n",
                       p.stderr), "--plot png without rsvg-convert: " + p.stderr)

    # Vulkan (lavapipe admitted) beside cpu, where available.
    env = dict(os.environ, LOOM_VULKAN_ALLOW_CPU="1")
    dev = subprocess.run([loom, "devices"], capture_output=True, text=True, env=env).stdout
    if re.search(r"^\s+vulkan\s+available", dev, re.M):
        # One run (lavapipe is slow): the markdown carries the ratio and the label.
        svg = os.path.join(work, "all.svg")
        vsave = os.path.join(work, "hist-vulkan")
        md = run(loom, ["bench", "model", "--backend", "all", "-t", "2", "--plot", svg,
                        "--save", vsave] + GRID, env=env).stdout
        # The record names each GPU backend's device and driver.
        recs = glob.glob(os.path.join(vsave, "bench-*.json"))
        devs = json.load(open(recs[0]))["machine"]["devices"] if len(recs) == 1 else []
        vk = [d for d in devs if d.get("backend") == "vulkan"]
        check(len(vk) == 1 and vk[0]["name"] and re.search(r"\S+ \S", vk[0].get("driver", "")),
              "record: vulkan device/driver %r" % devs)
        check_svg(svg, 4, 4, backends=2)
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
