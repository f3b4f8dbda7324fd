#!/usr/bin/env python3
"""loom's k-quant exports against llama-quantize's, tensor by tensor (opt-in ctest
llamacpp_kquant_mix; docs/adr/0039-k-quant-mixes.md).

  check_kquant_mix.py LOOM WORKDIR [TYPE...]

From one f32 GGUF of SmolLM2-135M-Instruct (made with `loom export-gguf --type f32` from the
cached Q4_1 file, which it dequantizes exactly), for each TYPE (default: every one below)
both tools write a file: `loom export-gguf --type TYPE` and `llama-quantize [--pure] F32 OUT
FTYPE` (the single types with --pure, the mixes without). Then for every tensor:
  - the stored types must be the same (the mixes' per-tensor rules and the fallbacks);
  - the weight RMSE against the f32 tensor (both dequantized with gguf-py) must be at most
    1.05x llama.cpp's.
Prints one line per TYPE (tensors, types, mean/max RMSE ratio, sizes) and every failure.

Inputs (environment): LOOM_LLAMA_QUANTIZE (default $LOOM_SOURCE_DIR/.llamacpp/build/bin/
llama-quantize), LOOM_SMOL_MODEL (default SmolLM2-135M-Instruct.Q4_1.gguf in the model cache),
LOOM_KQUANT_MAX_RATIO (default 1.05). Exit 77 (skipped) when llama-quantize, the model or
gguf-py is missing; 0 when every TYPE passes.
"""
import os
import subprocess
import sys

try:
    import numpy as np
    import gguf
    import gguf.quants
except ImportError as e:  # pragma: no cover
    print(f"check_kquant_mix: SKIP: cannot import gguf/numpy ({e})")
    sys.exit(77)

# loom --type -> (llama-quantize ftype name, --pure)
TYPES = {
    "q2_K": ("Q2_K", True), "q3_K": ("Q3_K_S", True), "q4_K": ("Q4_K_S", True),
    "q5_K": ("Q5_K_S", True), "q6_K": ("Q6_K", True),
    "q3_K_M": ("Q3_K_M", False), "q4_K_M": ("Q4_K_M", False), "q5_K_M": ("Q5_K_M", False),
}
MAX_RATIO = float(os.environ.get("LOOM_KQUANT_MAX_RATIO", "1.05"))


def skip(why):
    print("check_kquant_mix: SKIP: " + why)
    sys.exit(77)


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"check_kquant_mix: {' '.join(cmd)} failed (exit {p.returncode}):\n"
                         f"{(p.stdout + p.stderr)[-2000:]}")


def deq(t):
    return gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)


def compare(tname, src, ours_path, ref_path):
    ours = {t.name: t for t in gguf.GGUFReader(ours_path).tensors}
    ref = {t.name: t for t in gguf.GGUFReader(ref_path).tensors}
    ok, ratios, n_types = True, [], {}
    if set(ours) != set(ref):
        print(f"check_kquant_mix: {tname}: tensors differ: only loom {sorted(set(ours) - set(ref))}"
              f", only llama.cpp {sorted(set(ref) - set(ours))}")
        ok = False
    for name in sorted(set(ours) & set(ref)):
        a, b = ours[name], ref[name]
        if a.tensor_type != b.tensor_type:
            print(f"check_kquant_mix: {tname}: {name}: loom stores {a.tensor_type.name}, "
                  f"llama.cpp {b.tensor_type.name}")
            ok = False
            continue
        n_types[a.tensor_type.name] = n_types.get(a.tensor_type.name, 0) + 1
        x = src[name]
        ra = float(np.sqrt(np.mean((deq(a) - x) ** 2)))
        rb = float(np.sqrt(np.mean((deq(b) - x) ** 2)))
        ratio = ra / rb if rb > 0 else (1.0 if ra == 0 else float("inf"))
        ratios.append(ratio)
        if ratio > MAX_RATIO:
            print(f"check_kquant_mix: {tname}: {name} ({a.tensor_type.name}): loom RMSE {ra:.6g}, "
                  f"llama.cpp {rb:.6g} = {ratio:.4f}x")
            ok = False
    sa, sb = os.path.getsize(ours_path), os.path.getsize(ref_path)
    r = np.array(ratios) if ratios else np.array([float("nan")])
    print(f"check_kquant_mix: {tname}: {len(ratios)} tensors "
          f"({', '.join(f'{n} {k}' for k, n in sorted(n_types.items()))}); RMSE loom/llama.cpp "
          f"mean {r.mean():.4f}x max {r.max():.4f}x; {sa / 2**20:.2f} MiB vs {sb / 2**20:.2f} MiB "
          f"{'ok' if ok else 'FAIL'}")
    return ok


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    loom, work = os.path.abspath(argv[0]), os.path.abspath(argv[1])
    types = argv[2:] or list(TYPES)
    bad = [t for t in types if t not in TYPES]
    if bad:
        print(f"check_kquant_mix: unknown type {bad[0]} ({', '.join(TYPES)})", file=sys.stderr)
        return 2
    srcdir = os.environ.get("LOOM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
    quant = os.environ.get("LOOM_LLAMA_QUANTIZE",
                           os.path.join(srcdir, ".llamacpp", "build", "bin", "llama-quantize"))
    cache = os.environ.get("LOOM_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "loom", "models")
    model = os.environ.get("LOOM_SMOL_MODEL",
                           os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    if not os.access(quant, os.X_OK):
        skip(f"no llama-quantize at {quant} (scripts/build-llamacpp.sh, or set "
             "LOOM_LLAMA_QUANTIZE)")
    if not os.path.isfile(model):
        skip(f"no model {model} (scripts/fetch-default-model.sh, or set LOOM_SMOL_MODEL)")
    os.makedirs(work, exist_ok=True)
    f32 = os.path.join(work, "smollm2-f32.gguf")
    if not os.path.exists(f32):
        run([loom, "export-gguf", "-m", model, "-o", f32, "--type", "f32"])
    src = {t.name: np.asarray(t.data, dtype=np.float32).reshape(-1)
           for t in gguf.GGUFReader(f32).tensors}
    ok = True
    for tname in types:
        ftype, pure = TYPES[tname]
        ours = os.path.join(work, f"loom-{tname}.gguf")
        ref = os.path.join(work, f"llama-{tname}.gguf")
        run([loom, "export-gguf", "-m", f32, "-o", ours, "--type", tname])
        run([quant] + (["--pure"] if pure else []) + [f32, ref, ftype, "2"])
        ok = compare(tname, src, ours, ref) and ok
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
