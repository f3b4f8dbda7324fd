#!/usr/bin/env python3
"""loom's k-quant dequantization against gguf-py's (gguf.quants.dequantize), bit for bit.

  check_kquant.py --random EXE DIR     random super-blocks of q2_K..q6_K (ctest gguf_kquant_check)
  check_kquant.py --quant-ref EXE DIR
        loom's q2_K..q6_K quantizers against scripts/kquant_ref.py (an independent numpy model
        of ggml's reference quantizers) on random data of several shapes, byte for byte
        (ctest gguf_kquant_quant_ref)
  check_kquant.py --gguf EXE DIR FILE...
        every k-quant tensor of each GGUF FILE (ctest gguf_kquant_files_check, opt-in:
        exit 77 = skipped when no FILE exists)

  check_kquant.py --rmse EXE DIR F32.gguf KQUANT.gguf...
        (developer check, ADR 0024) for every q4_K/q6_K tensor of each KQUANT file (made by
        llama-quantize from F32.gguf), quantize the f32 source with loom and compare the
        weight RMSE with llama.cpp's; fails when loom's is above 1.05x on any tensor.

EXE is tests' test_dtype: `EXE --dequant TYPE IN OUT` turns raw blocks into float32.
Random bytes are valid k-quant blocks as long as the f16 scale fields are finite, so the
random case overwrites those with random finite halves (normals, subnormals, zeros of
both signs) and leaves every other byte random. Exit 0 on a match, 1 on a mismatch,
77 when gguf/numpy are missing (--gguf only; CI installs them, so --random fails then)."""
import os
import subprocess
import sys

try:
    import numpy as np
    import gguf
    import gguf.quants
except ImportError as e:  # pragma: no cover
    print(f"check_kquant: cannot import gguf/numpy ({e}); pip install -r "
          "scripts/requirements-test.txt", file=sys.stderr)
    sys.exit(77 if "--gguf" in sys.argv[1:2] else 1)

Q = gguf.GGMLQuantizationType
KQUANTS = {Q.Q2_K: "q2_K", Q.Q3_K: "q3_K", Q.Q4_K: "q4_K", Q.Q5_K: "q5_K", Q.Q6_K: "q6_K"}
# byte offsets of the f16 fields in each block (ggml-common.h)
F16_FIELDS = {Q.Q2_K: [80, 82], Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208]}


def loom_dequant(exe, tname, raw, work):
    src = os.path.join(work, f"{tname}.in")
    dst = os.path.join(work, f"{tname}.out")
    with open(src, "wb") as f:
        f.write(raw.tobytes())
    r = subprocess.run([exe, "--dequant", tname, src, dst], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"check_kquant: {exe} --dequant {tname} failed: {r.stderr.strip()}")
    out = np.fromfile(dst, dtype=np.float32)
    os.remove(src)
    os.remove(dst)
    return out


def compare(tname, what, ours, ref):
    ref = np.ascontiguousarray(ref, dtype=np.float32).reshape(-1)
    if ours.shape != ref.shape:
        print(f"check_kquant: {what}: {ours.size} values from loom, {ref.size} from gguf-py")
        return False
    diff = ours.view(np.uint32) != ref.view(np.uint32)
    if diff.any():
        i = int(np.flatnonzero(diff)[0])
        print(f"check_kquant: {what} ({tname}): {int(diff.sum())} of {ours.size} values differ "
              f"in bits; first at {i}: loom {ours[i]!r} gguf-py {ref[i]!r}")
        return False
    return True


def random_finite_f16(rng, n):
    h = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    exp = (h >> 10) & 0x1F
    h = np.where(exp == 0x1F, h & 0x83FF, h)  # inf/NaN -> subnormal with the same mantissa
    h[: min(n, 4)] = [0x0000, 0x8000, 0x0001, 0x7BFF][: min(n, 4)]
    return h.astype(np.uint16)


def check_random(exe, work):
    rng = np.random.default_rng(20261206)
    ok = True
    nblocks = 4096
    for qt, tname in KQUANTS.items():
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        raw = rng.integers(0, 256, size=(nblocks, ts), dtype=np.uint16).astype(np.uint8)
        for off in F16_FIELDS[qt]:
            raw[:, off:off + 2] = random_finite_f16(rng, nblocks).view(np.uint8).reshape(nblocks, 2)
        ref = gguf.quants.dequantize(raw, qt)
        ours = loom_dequant(exe, tname, raw, work)
        good = compare(tname, f"{nblocks} random blocks", ours, ref)
        print(f"check_kquant: {tname}: {nblocks} random blocks {'bit-exact' if good else 'MISMATCH'}")
        ok &= good
    return ok


def quant_ref_data(rng):
    """Super-blocks that reach every branch of the searches: weight-like normals at several
    scales, heavy tails (outliers decide the scales), all-positive and all-negative blocks
    (the min is clamped at 0), zero and constant sub-blocks, tiny values near the all-zero
    threshold, and sparse blocks."""
    n = 256
    parts = [rng.standard_normal((512, n)) * 0.02,
             rng.standard_normal((128, n)) * 3.0,
             rng.standard_t(2.0, (128, n)) * 0.05,
             np.abs(rng.standard_normal((64, n))) * 0.1 + 0.01,
             -np.abs(rng.standard_normal((64, n))) * 0.1,
             rng.uniform(-1, 1, (64, n)),
             rng.standard_normal((32, n)) * 1e-14,
             np.where(rng.random((64, n)) < 0.9, 0.0, rng.standard_normal((64, n)))]
    z = rng.standard_normal((64, n)) * 0.05
    z[:, 16:48] = 0.0          # zero sub-blocks inside live super-blocks
    z[:32, 64:96] = 0.125      # constant sub-blocks
    z[32:, 128:160] = -0.5
    parts.append(z)
    parts.append(np.zeros((4, n)))
    parts.append(np.full((4, n), 0.25))
    return np.concatenate(parts).astype(np.float32).reshape(-1)


def check_quant_ref(exe, work):
    try:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import kquant_ref
    except ImportError as e:  # pragma: no cover
        print(f"check_kquant: cannot import scripts/kquant_ref.py ({e})")
        return False
    x = quant_ref_data(np.random.default_rng(20270117))
    ok = True
    for qt, tname in KQUANTS.items():
        ref = kquant_ref.quantize(tname, x)
        ours = loom_quant(exe, tname, x, work)
        ts = gguf.GGML_QUANT_SIZES[qt][1]
        nb = x.size // 256
        if ours.size != ref.size:
            print(f"check_kquant: {tname}: {ours.size} bytes from loom, {ref.size} from kquant_ref")
            ok = False
            continue
        bad = np.flatnonzero((ours.reshape(nb, ts) != ref.reshape(nb, ts)).any(axis=1))
        back = gguf.quants.dequantize(ours.reshape(nb, ts), qt).reshape(-1)
        rel = float(np.sqrt(np.mean((back - x) ** 2)) / np.sqrt(np.mean(x ** 2)))
        if bad.size:
            b = int(bad[0])
            diff = np.flatnonzero(ours.reshape(nb, ts)[b] != ref.reshape(nb, ts)[b])
            print(f"check_kquant: {tname}: {bad.size} of {nb} blocks differ from kquant_ref; "
                  f"first block {b}, bytes {diff[:8].tolist()}")
            ok = False
        else:
            print(f"check_kquant: {tname}: {nb} blocks byte-identical to kquant_ref "
                  f"(relative RMSE {rel:.4f})")
    return ok


def check_files(exe, work, files):
    present = [f for f in files if os.path.exists(f)]
    if not present:
        print("check_kquant: SKIP: none of the GGUF files exists: " + " ".join(files))
        return 77
    ok = True
    for path in present:
        reader = gguf.GGUFReader(path)
        counts = {}
        for t in reader.tensors:
            if t.tensor_type not in KQUANTS:
                continue
            tname = KQUANTS[t.tensor_type]
            raw = np.ascontiguousarray(t.data).view(np.uint8).reshape(-1)
            ref = gguf.quants.dequantize(raw.reshape(-1, gguf.GGML_QUANT_SIZES[t.tensor_type][1]),
                                         t.tensor_type)
            ours = loom_dequant(exe, tname, raw, work)
            ok &= compare(tname, f"{os.path.basename(path)}:{t.name}", ours, ref)
            counts[tname] = counts.get(tname, 0) + 1
        if not counts:
            print(f"check_kquant: {path} holds no k-quant tensor")
            ok = False
        print(f"check_kquant: {os.path.basename(path)}: " +
              ", ".join(f"{n} {k} tensors" for k, n in sorted(counts.items())) +
              (" bit-exact" if ok else " MISMATCH"))
    return 0 if ok else 1


def loom_quant(exe, tname, x, work):
    src = os.path.join(work, f"{tname}.f32")
    dst = os.path.join(work, f"{tname}.q")
    np.ascontiguousarray(x, dtype=np.float32).tofile(src)
    r = subprocess.run([exe, "--quantize", tname, src, dst], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"check_kquant: {exe} --quantize {tname} failed: {r.stderr.strip()}")
    out = np.fromfile(dst, dtype=np.uint8)
    os.remove(src)
    os.remove(dst)
    return out


def check_rmse(exe, work, f32_path, files):
    if not os.path.exists(f32_path) or not any(os.path.exists(f) for f in files):
        print("check_kquant: SKIP: files missing")
        return 77
    src = {t.name: t for t in gguf.GGUFReader(f32_path).tensors}
    worst, ok = 0.0, True
    for path in files:
        if not os.path.exists(path):
            continue
        per_type = {}
        for t in gguf.GGUFReader(path).tensors:
            if t.tensor_type not in (Q.Q4_K, Q.Q6_K) or t.name not in src:
                continue
            tname = KQUANTS[t.tensor_type]
            x = np.asarray(src[t.name].data, dtype=np.float32).reshape(-1)
            ts = gguf.GGML_QUANT_SIZES[t.tensor_type][1]
            ref = gguf.quants.dequantize(np.ascontiguousarray(t.data).view(np.uint8).reshape(-1, ts),
                                         t.tensor_type).reshape(-1)
            ours_b = loom_quant(exe, tname, x, work)
            ours = gguf.quants.dequantize(ours_b.reshape(-1, ts), t.tensor_type).reshape(-1)
            r_ref = float(np.sqrt(np.mean((ref - x) ** 2)))
            r_ours = float(np.sqrt(np.mean((ours - x) ** 2)))
            ratio = r_ours / r_ref if r_ref > 0 else (1.0 if r_ours == 0 else float("inf"))
            same = float(np.mean(ours_b == np.ascontiguousarray(t.data).view(np.uint8).reshape(-1)))
            s = per_type.setdefault(tname, [0, 0.0, 0.0, 0.0])
            s[0] += 1
            s[1] = max(s[1], ratio)
            s[2] += same
            s[3] += ratio
            worst = max(worst, ratio)
            if ratio > 1.05:
                ok = False
                print(f"check_kquant: {t.name} ({tname}): loom RMSE {r_ours:.6g} vs llama.cpp "
                      f"{r_ref:.6g} = {ratio:.4f}x")
        for tname, (n, mx, same, tot) in sorted(per_type.items()):
            print(f"check_kquant: {os.path.basename(path)}: {n} {tname} tensors, RMSE loom/llama.cpp "
                  f"mean {tot / n:.4f}x max {mx:.4f}x, identical bytes {100 * same / n:.2f}%")
    return 0 if ok else 1


def main(argv):
    if len(argv) == 3 and argv[0] == "--random":
        os.makedirs(argv[2], exist_ok=True)
        return 0 if check_random(argv[1], argv[2]) else 1
    if len(argv) == 3 and argv[0] == "--quant-ref":
        os.makedirs(argv[2], exist_ok=True)
        return 0 if check_quant_ref(argv[1], argv[2]) else 1
    if len(argv) >= 4 and argv[0] == "--gguf":
        os.makedirs(argv[2], exist_ok=True)
        return check_files(argv[1], argv[2], argv[3:])
    if len(argv) >= 5 and argv[0] == "--rmse":
        os.makedirs(argv[2], exist_ok=True)
        return check_rmse(argv[1], argv[2], argv[3], argv[4:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
