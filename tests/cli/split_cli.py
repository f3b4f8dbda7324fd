#!/usr/bin/env python3
"""The layer split through the CLI (ctest split_cli; docs/adr/0030).

  split_cli.py LOOM WORKDIR [--multi]

With a small model (tiny-dense, f32, random weights) and Vulkan on lavapipe:
  * `loom info --backend vulkan --gpu-layers auto` prints the plan (a table
    with a row per device, all 4 layers on vulkan) and says it fits;
  * under LOOM_DEVICE_MEMORY_LIMIT, `--gpu-layers 4` is explained as not
    fitting (which device, by how much, and the --gpu-layers that fits),
    `auto` places fewer layers, and `loom run --gpu-layers 4` fails at load
    with an error naming the tensor and that --gpu-layers, exit 1;
  * `loom run` split at 0, 2 and 4 layers, and with --tensor-split, prints the
    one-line plan on stderr and exactly the greedy text of `--backend cpu`;
  * with --multi (ctest split_multi_cli), only this instead: several
    devices of one kind (docs/adr/0042), lavapipe opened as two
    logical devices (LOOM_VULKAN_LOGICAL_DEVICES=2): `loom devices` lists
    vulkan:0 and vulkan:1, `loom info --devices vulkan:0,vulkan:1,cpu
    --tensor-split 2,1,1` prints a row per device, `loom run` over them
    prints the cpu's greedy text and one activation copy per boundary, and a
    device index that does not exist (vulkan:5, cpu:1) is a one-line error.
Skipped (exit 77) when the Vulkan backend is unavailable.
"""
import os
import re
import subprocess
import sys


def main():
    loom, work = os.path.abspath(sys.argv[1]), sys.argv[2]
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, LOOM_VULKAN_ALLOW_CPU="1")
    env.pop("LOOM_DEVICE_MEMORY_LIMIT", None)
    failures = []

    def run(args, extra=None):
        e = dict(env, **(extra or {}))
        return subprocess.run([loom] + args, capture_output=True, text=True, env=e, timeout=300)

    def check(cond, what, p=None):
        if not cond:
            msg = "FAIL: " + what
            if p is not None:
                msg += "\n  rc=%d\n  stdout: %s\n  stderr: %s" % (p.returncode, p.stdout[-1500:],
                                                                 p.stderr[-1500:])
            failures.append(msg)

    dev = run(["devices"])
    if not re.search(r"^\s*vulkan\s+available", dev.stdout, re.M):
        print("split_cli: SKIP (vulkan unavailable)")
        return 77
    model = os.path.join(work, "tiny-dense-f32.gguf")
    p = run(["init-model", "--preset", "tiny-dense", "--type", "f32", "-o", model])
    check(p.returncode == 0, "init-model", p)

    base = ["run", "-m", model, "--temp", "0", "-n", "6", "--ignore-eos", "--ctx", "256",
            "-p", "The split"]
    ref = run(base + ["--backend", "cpu"])
    check(ref.returncode == 0 and ref.stdout.strip(), "cpu reference", ref)
    if "--multi" in sys.argv[3:]:
        multi(run, check, model, base, ref)
    else:
        single(run, check, model, base, ref)

    for f in failures:
        print(f)
    print("split_cli: %d failures" % len(failures))
    return 1 if failures else 0


def single(run, check, model, base, ref):
    p = run(["info", "-m", model, "--backend", "vulkan", "--gpu-layers", "auto", "--ctx", "256"])
    check(p.returncode == 0 and re.search(r"^vulkan\s+layers 0-3", p.stdout, re.M)
          and re.search(r"^cpu\s+", p.stdout, re.M) and "fits: yes" in p.stdout
          and "layers off the cpu: 4 of 4" in p.stdout, "info auto: the plan table", p)

    limit = {"LOOM_DEVICE_MEMORY_LIMIT": "12M"}
    p = run(["info", "-m", model, "--backend", "vulkan", "--gpu-layers", "4", "--ctx", "256"],
            limit)
    m = re.search(r"fits: NO: vulkan needs [\d.]+ MiB .* but has [\d.]+ MiB .*"
                  r"at most (\d) layers fit off the cpu \(--gpu-layers (\d)\)", p.stdout)
    check(p.returncode == 0 and m and m.group(1) == m.group(2) and int(m.group(1)) < 4,
          "info --gpu-layers 4 under 12M: does not fit, why, and what fits", p)
    fit = int(m.group(1)) if m else -1
    p = run(["info", "-m", model, "--backend", "vulkan", "--gpu-layers", "auto", "--ctx", "256"],
            limit)
    check(p.returncode == 0 and "fits: yes" in p.stdout
          and ("layers off the cpu: %d of 4" % fit) in p.stdout,
          "info auto under 12M: %d layers" % fit, p)
    p = run(["run", "-m", model, "--backend", "vulkan", "--gpu-layers", "4", "--ctx", "256",
             "-n", "4"], limit)
    check(p.returncode == 1 and re.search(
        r"loom run: model: out of memory on vulkan at tensor '[a-z0-9_.]+' .*try --gpu-layers %d"
        % fit, p.stderr), "run --gpu-layers 4 under 12M: the load error", p)

    for extra, want in ((["--gpu-layers", "0"], None),
                        (["--gpu-layers", "2"], r"split: vulkan layers 2-3.*; cpu layers 0-1"),
                        (["--gpu-layers", "4"], None),
                        (["--devices", "vulkan:0,cpu", "--tensor-split", "1,1"],
                         r"split: vulkan layers 2-3.*; cpu layers 0-1")):
        p = run(base + ["--backend", "vulkan"] + extra)
        check(p.returncode == 0 and p.stdout == ref.stdout,
              "run %s: same greedy text as the cpu" % " ".join(extra), p)
        if want:
            check(re.search(want, p.stderr), "run %s: the one-line plan" % " ".join(extra), p)


def multi(run, check, model, base, ref):
    # Several devices of one kind: two logical Vulkan devices.
    two = {"LOOM_VULKAN_LOGICAL_DEVICES": "2"}
    p = run(["devices"], two)
    check(re.search(r"^\s*vulkan:0\s+available", p.stdout, re.M)
          and re.search(r"^\s*vulkan:1\s+available", p.stdout, re.M), "devices: vulkan:0, :1", p)
    p = run(["info", "-m", model, "--devices", "vulkan:0,vulkan:1,cpu", "--tensor-split", "2,1,1",
             "--ctx", "256"], two)
    check(p.returncode == 0 and re.search(r"^vulkan:0\s+layers 1-2\s", p.stdout, re.M)
          and re.search(r"^vulkan:1\s+layer 3 \+ embd \+ head\s", p.stdout, re.M)
          and re.search(r"^cpu\s+layer 0\s", p.stdout, re.M) and "fits: yes" in p.stdout,
          "info --devices vulkan:0,vulkan:1,cpu: the plan table", p)
    for devs, shares, want, copies in (
            ("vulkan:0,vulkan:1", "1,1", r"split: vulkan:0 layers 0-1.*; vulkan:1 layers 2-3", 2),
            ("vulkan:0,vulkan:1,cpu", "1,2,1",
             r"split: vulkan:0 layer 1.*; vulkan:1 layers 2-3.*; cpu layer 0", 3)):
        extra = ["--devices", devs, "--tensor-split", shares]
        p = run(base + extra, two)
        check(p.returncode == 0 and p.stdout == ref.stdout,
              "run %s: same greedy text as the cpu" % " ".join(extra), p)
        check(re.search(want, p.stderr), "run %s: the one-line plan" % " ".join(extra), p)
        check(re.search(r"split copies: %d activation copies" % copies, p.stderr),
              "run %s: %d activation copies per forward" % (" ".join(extra), copies), p)
    for devs, msg in (("vulkan:5,cpu", r"no device vulkan:5: backend 'vulkan' has 2 devices "
                                       r"\(vulkan:0 to vulkan:1; `loom devices` lists them\)"),
                      ("vulkan:0,cpu:1", r"no device cpu:1: backend 'cpu' has 1 device "
                                         r"\(only cpu:0;")):
        p = run(base + ["--devices", devs], two)
        check(p.returncode == 1 and re.search(r"^loom run: model: --devices: " + msg, p.stderr,
                                              re.M)
              and len([l for l in p.stderr.splitlines() if l.startswith("loom run:")]) == 1,
              "run --devices %s: the one-line error" % devs, p)


if __name__ == "__main__":
    sys.exit(main())
