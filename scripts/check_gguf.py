#!/usr/bin/env python3
"""Cross-check loom's GGUF files with the reference Python reader (PyPI `gguf`).

  check_gguf.py FILE                      print and validate any GGUF file
  check_gguf.py --fixture --writer EXE DIR
        run `EXE --write-fixture DIR/fixture.gguf` (loom's writer, see
        tests/model/test_gguf_fixture.h) and compare every KV value, tensor
        shape, type id and data byte with expectations rebuilt here.
  check_gguf.py --export LOOM DIR [--preset P]
        `loom export-gguf` validated by gguf-py (ctest gguf_export_check):
        LOOM init-model writes an f32 model (preset tiny-moe by default, the
        default model, with the Llama-3 tokenizer), LOOM export-gguf
        re-types it to f16, q8_0, q4_0, q4_1, q5_0 and q5_1, and every output is checked
        against the f32 source: see check_export() for the exact assertions
        and the NMSE bounds.
  check_gguf.py --make-seeds DIR --writer EXE
        (developer tool) regenerate the seed corpus tests/fuzz/corpus/gguf.

Exit status 0 when everything matches; 1 on any mismatch. When `gguf` or
numpy cannot be imported: 1 for --fixture (CI installs gguf through
scripts/install-deps.sh, so a missing package is a failure there), 77 for
--export (ctest's SKIP_RETURN_CODE: the test reports "skipped")."""
import os
import struct
import subprocess
import sys
import time

try:
    import numpy as np
    import gguf
    import gguf.quants
    from gguf import GGUFReader, GGUFValueType
except ImportError as e:  # pragma: no cover - the failure path CI must see
    if "--export" in sys.argv[1:2]:
        print(f"check_gguf: SKIP: cannot import gguf/numpy ({e}); pip install -r "
              "scripts/requirements-test.txt", file=sys.stderr)
        sys.exit(77)
    print(f"check_gguf: cannot import the gguf package ({e}); run scripts/install-deps.sh "
          "or pip install -r scripts/requirements-test.txt", file=sys.stderr)
    sys.exit(1)

# ---- the fixture, rebuilt independently of the C side ----------------------
V = GGUFValueType
STRS = ["a", "", "h\u00e9llo", "<|eot_id|>"]
FIXTURE_KVS = {
    "general.architecture": (V.STRING, "llama"),
    "general.name": (V.STRING, "loom fixture \u00fcn\u00ef \u2713"),
    "test.u8": (V.UINT8, 200),
    "test.i8": (V.INT8, -100),
    "test.u16": (V.UINT16, 60000),
    "test.i16": (V.INT16, -30000),
    "test.u32": (V.UINT32, 4000000000),
    "test.i32": (V.INT32, -2000000000),
    "test.f32": (V.FLOAT32, 3.25),
    "test.bool": (V.BOOL, True),
    "test.u64": (V.UINT64, (1 << 40) + 7),
    "test.i64": (V.INT64, -(1 << 40)),
    "test.f64": (V.FLOAT64, -2.5e100),
    "test.arr_i32": ((V.ARRAY, V.INT32), [i * 7 - 1000 for i in range(1000)]),
    "test.arr_f32": ((V.ARRAY, V.FLOAT32), [i * 0.5 for i in range(100)]),
    "test.arr_u8": ((V.ARRAY, V.UINT8), list(range(256))),
    "test.arr_bool": ((V.ARRAY, V.BOOL), [True, False, True]),
    "test.arr_i8": ((V.ARRAY, V.INT8), [-128, 0, 127]),
    "test.arr_u16": ((V.ARRAY, V.UINT16), [0, 65535]),
    "test.arr_i16": ((V.ARRAY, V.INT16), [-32768, 32767]),
    "test.arr_u32": ((V.ARRAY, V.UINT32), [0, 4294967295]),
    "test.arr_u64": ((V.ARRAY, V.UINT64), [0, 18446744073709551615]),
    "test.arr_i64": ((V.ARRAY, V.INT64), [-(1 << 63), (1 << 63) - 1]),
    "test.arr_f64": ((V.ARRAY, V.FLOAT64), [1.0 / 3.0, -1e-300]),
    "test.arr_str": ((V.ARRAY, V.STRING), STRS),
    "test.arr_empty": ((V.ARRAY, V.FLOAT32), []),
}
Q = gguf.GGMLQuantizationType
# name, ggml type, dims as stored in the file (ne order: innermost first)
FIXTURE_TENSORS = [
    ("t.f32", Q.F32, [8, 3]),
    ("t.f16", Q.F16, [16, 2, 2]),
    ("t.bf16", Q.BF16, [4, 3, 2, 2]),
    ("t.i32", Q.I32, [5]),
    ("t.q8_0", Q.Q8_0, [64, 3]),
    ("t.q4_0", Q.Q4_0, [32, 5]),
    ("t.q4_K", Q.Q4_K, [256, 2]),
    ("t.q4_1", Q.Q4_1, [32, 3]),
    ("t.q5_0", Q.Q5_0, [64, 2]),
    ("t.q5_1", Q.Q5_1, [32, 2]),
]


def fixture_bytes(k, n):
    return bytes(((i * 131 + k * 17 + 7) & 0xFF) for i in range(n))


def nbytes_of(qtype, dims):
    blck, size = gguf.GGML_QUANT_SIZES[qtype]
    n = 1
    for d in dims:
        n *= d
    assert dims[0] % blck == 0
    return n // blck * size


# ---- reading fields through gguf-py's ReaderField --------------------------
def field_value(f):
    """(types, python value) of a ReaderField, strings as bytes decoded utf-8."""
    t0 = f.types[0]
    if t0 == V.STRING:
        return (t0, bytes(f.parts[f.data[0]]).decode("utf-8"))
    if t0 == V.ARRAY:
        # gguf-py lists no element type for an empty array; take it from the
        # raw parts (key len, key, type, element type, count).
        et = f.types[1] if len(f.types) > 1 else V(int(f.parts[3][0]))
        if et == V.STRING:
            return ((t0, et), [bytes(f.parts[i]).decode("utf-8") for i in f.data])
        vals = [v for i in f.data for v in f.parts[i].tolist()]
        if et == V.BOOL:
            vals = [bool(v) for v in vals]
        return ((t0, et), vals)
    v = f.parts[f.data[0]].tolist()[0]
    return (t0, bool(v) if t0 == V.BOOL else v)


def type_name(t):
    return f"{t[0].name}[{t[1].name}]" if isinstance(t, tuple) else t.name


def open_reader(path):
    r = GGUFReader(path)
    return r


def describe(path):
    r = open_reader(path)
    ok = True
    print(f"{path}: {len(r.fields)} fields, {len(r.tensors)} tensors, data at {r.data_offset}")
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue
        t, v = field_value(f)
        s = repr(v)
        print(f"  kv {name} [{type_name(t)}] = {s[:100]}{'...' if len(s) > 100 else ''}")
    align = 32
    if "general.alignment" in r.fields:
        align = field_value(r.fields["general.alignment"])[1]
    for t in r.tensors:
        dims = [int(x) for x in t.shape]
        want = nbytes_of(t.tensor_type, dims)
        good = t.n_bytes == want and t.data_offset % align == 0 and len(t.data.tobytes()) == want
        ok &= good
        print(f"  tensor {t.name} {t.tensor_type.name} dims={dims} bytes={t.n_bytes}"
              f" at {t.data_offset}{'' if good else '  <-- BAD'}")
    return ok


def check_fixture(path):
    r = open_reader(path)
    errors = []
    seen = {}
    for name, f in r.fields.items():
        if not name.startswith("GGUF."):
            seen[name] = field_value(f)
    # header fields as gguf-py reports them
    ver = r.fields["GGUF.version"].parts[-1].tolist()[0]
    if ver != 3:
        errors.append(f"version {ver}, expected 3")
    if list(seen) != list(FIXTURE_KVS):
        errors.append(f"key order/set differs: {list(seen)}")
    for key, (types, want) in FIXTURE_KVS.items():
        if key not in seen:
            errors.append(f"missing key {key}")
            continue
        got_t, got = seen[key]
        if got_t != types:
            errors.append(f"{key}: type {got_t}, expected {types}")
        if isinstance(want, float):
            same = struct.pack("<d", got) == struct.pack("<d", want)
        else:
            same = got == want
        if not same:
            errors.append(f"{key}: value {str(got)[:80]} != {str(want)[:80]}")
    if len(r.tensors) != len(FIXTURE_TENSORS):
        errors.append(f"{len(r.tensors)} tensors, expected {len(FIXTURE_TENSORS)}")
    for k, (t, (name, qt, dims)) in enumerate(zip(r.tensors, FIXTURE_TENSORS)):
        got_dims = [int(x) for x in t.shape]
        n = nbytes_of(qt, dims)
        if t.name != name or t.tensor_type != qt or got_dims != dims:
            errors.append(f"tensor {k}: {t.name} {t.tensor_type!r} {got_dims}, expected {name} {qt!r} {dims}")
        if t.n_bytes != n or t.data.tobytes() != fixture_bytes(k, n):
            errors.append(f"tensor {name}: data bytes differ ({t.n_bytes} vs {n} bytes)")
        if t.data_offset % 32 != 0:
            errors.append(f"tensor {name}: data offset {t.data_offset} not 32-aligned")
        # numpy's view uses the reversed (row-major) shape of ne
        if qt in (Q.F32, Q.F16, Q.I32) and list(t.data.shape) != dims[::-1]:
            errors.append(f"tensor {name}: numpy shape {list(t.data.shape)} != {dims[::-1]}")
    for e in errors:
        print("check_gguf: MISMATCH:", e, file=sys.stderr)
    print(f"check_gguf: fixture {path}: {len(FIXTURE_KVS)} KVs, {len(FIXTURE_TENSORS)} tensors checked, "
          f"{len(errors)} mismatches (gguf-py {getattr(gguf, '__version__', '?')})")
    return not errors


# ---- loom export-gguf, checked against its f32 source -----------------------
# Overall NMSE (sum of squared errors over sum of squares, all quantized
# tensors together) of gguf-py's dequantization against the f32 source.
# For weights uniform in [-a, a] (loom init-model's) rounding to a step d
# gives an error variance of d^2/12 against a signal variance of a^2/3:
#   q8_0: d = amax/127  ->  NMSE ~ 1/(4*127^2) = 1.55e-5  (measured 1.42e-5)
#   q4_0: d = amax/8    ->  NMSE ~ 1/256       = 3.9e-3   (measured 4.2e-3:
#         q4_0 maps the signed extreme to -8, the opposite one clamps at +7)
# The bounds leave ~2x / ~1.4x of margin; a wrong scale, block order or
# nibble order gives NMSE near 1.
#   q4_1: d = (max-min)/15 <= 2 amax/15 -> NMSE <= 1/225 = 4.4e-3
#   q5_0: d = amax/16   ->  NMSE ~ 1/1024 = 9.8e-4; q5_1: d <= 2 amax/31 -> 1/961
EXPORT_NMSE = {"q8_0": 3e-5, "q4_0": 6e-3, "q4_1": 6e-3, "q5_0": 1.5e-3, "q5_1": 1.5e-3}
# Per element, against the block's step d (from the f32 block's absmax):
# round-to-nearest gives |err| <= d/2 (q8_0), the q4_0 clamp |err| <= d; the
# fp16 scale adds at most 127 (resp. 8) * d * 2^-11.
# q5_0 clamps like q4_0 (|err| <= d, d = amax/16); q4_1/q5_1 round to nearest
# (|err| <= d/2, d <= amax/7.5 resp. amax/15.5) and add the fp16 rounding of
# d (15 resp. 31 steps) and of the minimum (amax * 2^-11).
EXPORT_STEP = {"q8_0": (127.0, 0.5 + 127 * 2 ** -11), "q4_0": (8.0, 1.0 + 8 * 2 ** -11),
               "q4_1": (7.5, 0.5 + 23 * 2 ** -11), "q5_0": (16.0, 1.0 + 16 * 2 ** -11),
               "q5_1": (15.5, 0.5 + 47 * 2 ** -11)}
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "q4_1": 3, "q5_0": 8, "q5_1": 9}


def open_reader_in_memory(path):
    """GGUFReader over the file read into memory instead of np.memmap: the
    same gguf-py parser, but without memmap's per-slice overhead, which makes
    the 128k-token Llama-3 tokenizer arrays take ~30 s per file."""
    import gguf.gguf_reader as gr
    saved = gr.np.memmap
    gr.np.memmap = lambda p, mode="r", **kw: np.fromfile(p, dtype=np.uint8)
    try:
        return GGUFReader(path)
    finally:
        gr.np.memmap = saved


def kv_values(r):
    return {k: field_value(f) for k, f in r.fields.items() if not k.startswith("GGUF.")}


def expected_type(name, n_dims, ne0, want):
    """loom_model_store_type (include/loom/model.h) for GGUF export types."""
    if n_dims == 1 or "ffn_gate_inp" in name:
        return Q.F32
    if want in ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1") and ne0 % 32 != 0:
        return Q.F16
    return {"f32": Q.F32, "f16": Q.F16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0, "q4_1": Q.Q4_1,
            "q5_0": Q.Q5_0, "q5_1": Q.Q5_1}[want]


def check_export_file(src, path, want, errors):
    """Every assertion on one exported file; returns the quantization NMSE."""
    def bad(msg):
        errors.append(f"{os.path.basename(path)}: {msg}")

    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] != b"GGUF" or struct.unpack("<I", head[4:8])[0] != 3:
        bad(f"magic/version {head!r}, expected b'GGUF' v3")
    r = open_reader_in_memory(path)
    ver = r.fields["GGUF.version"].parts[-1].tolist()[0]
    if ver != 3:
        bad(f"gguf-py reads version {ver}")
    sk, ok = kv_values(src), kv_values(r)
    if ok.get("general.architecture", (None, None))[1] != "llama":
        bad("general.architecture is not 'llama'")
    for k in ("general.file_type", "general.quantization_version"):
        if k not in ok:
            bad(f"{k} missing")
    if ok.get("general.file_type", (0, -1))[1] != FILE_TYPE[want]:
        bad(f"general.file_type {ok.get('general.file_type')}, expected {FILE_TYPE[want]}")
    if ok.get("general.quantization_version", (0, -1))[1] != 2:
        bad("general.quantization_version is not 2")
    # every source key is carried over with its type and value (tokenizer too)
    for k, v in sk.items():
        if k in ("general.file_type", "general.quantization_version"):
            continue
        if k not in ok:
            bad(f"key {k} missing")
        elif ok[k] != v:
            bad(f"key {k} differs: {str(ok[k])[:60]} vs {str(v)[:60]}")
    needed = ["llama.context_length", "llama.embedding_length", "llama.block_count",
              "llama.feed_forward_length", "llama.attention.head_count",
              "llama.attention.head_count_kv", "llama.rope.freq_base",
              "llama.attention.layer_norm_rms_epsilon", "tokenizer.ggml.model",
              "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
              "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"]
    for k in needed:
        if k not in ok:
            bad(f"architecture/tokenizer key {k} missing")
    if "tokenizer.ggml.tokens" in ok and len(ok["tokenizer.ggml.tokens"][1]) != \
            ok.get("llama.vocab_size", (0, -1))[1]:
        bad("tokenizer.ggml.tokens does not have llama.vocab_size entries")

    srct = {t.name: t for t in src.tensors}
    if [t.name for t in r.tensors] != [t.name for t in src.tensors]:
        bad("tensor names/order differ from the source")
    num = den = 0.0
    counts = {}
    for t in r.tensors:
        s = srct.get(t.name)
        if s is None:
            continue
        dims = [int(x) for x in t.shape]
        if dims != [int(x) for x in s.shape]:
            bad(f"{t.name}: shape {dims} vs source {[int(x) for x in s.shape]}")
            continue
        et = expected_type(t.name, len(dims), dims[0], want)
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
        if t.tensor_type != et:
            bad(f"{t.name}: type {t.tensor_type.name}, expected {et.name}")
            continue
        if t.n_bytes != nbytes_of(t.tensor_type, dims) or t.data_offset % 32:
            bad(f"{t.name}: {t.n_bytes} bytes at {t.data_offset}")
        x = np.asarray(s.data, dtype=np.float32).reshape(-1)
        if t.tensor_type == Q.F32:
            if not np.array_equal(np.asarray(t.data).reshape(-1), x):
                bad(f"{t.name}: f32 data differs from the source")
        elif t.tensor_type == Q.F16:
            if not np.array_equal(np.asarray(t.data).reshape(-1), x.astype(np.float16)):
                bad(f"{t.name}: f16 data is not the source rounded to f16")
        else:
            # gguf-py's own numpy dequantizer, independent of loom
            y = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
            xb, yb = x.reshape(-1, 32), y.reshape(-1, 32)
            div, c = EXPORT_STEP[want]
            step = np.abs(xb).max(axis=1, keepdims=True) / div
            over = np.abs(yb - xb) > c * step + 1e-30
            if over.any():
                bad(f"{t.name}: {int(over.sum())} values off by more than {c:.3f} steps")
            num += float(((y.astype(np.float64) - x) ** 2).sum())
            den += float((x.astype(np.float64) ** 2).sum())
            # and the bytes are ggml's reference quantizer's (gguf-py's port)
            if not np.array_equal(gguf.quants.quantize(x.reshape(s.data.shape), t.tensor_type),
                                  np.asarray(t.data)):
                bad(f"{t.name}: bytes differ from gguf.quants.quantize of the source")
    nmse = num / den if den else 0.0
    if want in EXPORT_NMSE and not nmse <= EXPORT_NMSE[want]:
        bad(f"NMSE {nmse:.3g} over the bound {EXPORT_NMSE[want]:g}")
    return nmse, counts, len(r.tensors)


def check_export(loom, work, preset="tiny-moe"):
    os.makedirs(work, exist_ok=True)
    src_path = os.path.join(work, f"export_src_{preset}_f32.gguf")
    subprocess.run([loom, "init-model", "--preset", preset, "--type", "f32", "--seed", "7",
                    "-o", src_path], check=True)
    src = open_reader_in_memory(src_path)
    errors = []
    for want in ("f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"):
        out = os.path.join(work, f"export_{preset}_{want}.gguf")
        t0 = time.time()
        p = subprocess.run([loom, "export-gguf", "-m", src_path, "-o", out, "--type", want],
                           capture_output=True, text=True)
        dt = time.time() - t0
        sys.stdout.write(p.stdout)
        sys.stderr.write(p.stderr)
        if p.returncode != 0:
            errors.append(f"export-gguf --type {want} exited {p.returncode}")
            continue
        if "converting" not in p.stderr or "wrote" not in p.stdout:
            errors.append(f"export-gguf --type {want}: no progress / summary line")
        nmse, counts, n = check_export_file(src, out, want, errors)
        print(f"check_gguf: export {want}: {n} tensors {counts}, "
              f"{os.path.getsize(out) / 2**20:.2f} MiB, export {dt:.1f} s, "
              f"NMSE vs f32 {nmse:.3g} (bound {EXPORT_NMSE.get(want, 0)})")
        os.remove(out)
    # nf4 has no GGUF type: refused with a reason, nothing written
    out = os.path.join(work, f"export_{preset}_nf4.gguf")
    p = subprocess.run([loom, "export-gguf", "-m", src_path, "-o", out, "--type", "nf4"],
                       capture_output=True, text=True)
    if p.returncode == 0 or "not a GGUF tensor type" not in p.stderr or os.path.exists(out):
        errors.append(f"--type nf4 not refused with a reason: rc {p.returncode}, {p.stderr!r}")
    os.remove(src_path)
    for e in errors:
        print("check_gguf: MISMATCH:", e, file=sys.stderr)
    try:
        from importlib.metadata import version
        gv = version("gguf")
    except Exception:  # pragma: no cover
        gv = "?"
    print(f"check_gguf: export check: {len(errors)} mismatches (gguf-py {gv})")
    return not errors


# ---- seed corpus (developer tool) -----------------------------------------
def make_seeds(out_dir, writer):
    os.makedirs(out_dir, exist_ok=True)

    def put(name, data):
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)

    fx = os.path.join(out_dir, "loom_fixture.gguf")
    subprocess.run([writer, "--write-fixture", fx], check=True)
    data = open(fx, "rb").read()
    put("loom_fixture_v2.gguf", data[:4] + struct.pack("<I", 2) + data[8:])
    put("broken_truncated_header.gguf", data[:300])
    put("broken_bad_magic.gguf", b"GGUG" + data[4:600])
    put("broken_version1.gguf", data[:4] + struct.pack("<I", 1) + data[8:600])

    # files written by gguf-py itself: another writer's layout choices
    p = os.path.join(out_dir, "gguf_py_small.gguf")
    w = gguf.GGUFWriter(p, "llama")
    w.add_block_count(2)
    w.add_context_length(128)
    w.add_rope_freq_base(500000.0)
    w.add_token_list(["<s>", "</s>", "a", "b\u00e9"])
    w.add_token_scores([0.0, -1.0, -2.5, -3.0])
    w.add_bool("x.flag", False)
    w.add_tensor("tok_embd.weight", np.arange(32, dtype=np.float32).reshape(4, 8))
    w.add_tensor("norm.weight", np.ones(8, dtype=np.float16))
    q8 = np.zeros((2, 34), dtype=np.uint8)
    q8[:, 2:] = 3
    w.add_tensor("blk.0.q8.weight", q8, raw_dtype=Q.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    p = os.path.join(out_dir, "gguf_py_align64.gguf")
    w = gguf.GGUFWriter(p, "llama")
    w.add_custom_alignment(64)
    w.add_array("x.ints", [1, 2, 3])
    w.add_tensor("a", np.arange(3, dtype=np.float32))
    w.add_tensor("b", np.arange(5, dtype=np.int32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # hand-built: nested arrays (valid) and a 5-dim tensor (invalid)
    def gstr(s):
        b = s.encode()
        return struct.pack("<Q", len(b)) + b

    nested = (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gstr("nested") + struct.pack("<II", 9, 9) +
              struct.pack("<Q", 2) + struct.pack("<IQ", 4, 2) + struct.pack("<II", 7, 8) +
              struct.pack("<IQ", 8, 1) + gstr("xy"))
    put("nested_arrays.gguf", nested)
    five = (b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + gstr("t") + struct.pack("<I", 5) +
            struct.pack("<5Q", 1, 1, 1, 1, 1) + struct.pack("<IQ", 0, 0) + b"\0" * 40)
    put("broken_ndims5.gguf", five)
    print(f"check_gguf: seeds written to {out_dir}")
    return True


def main(argv):
    if len(argv) == 4 and argv[0] == "--fixture" and argv[1] == "--writer":
        path = os.path.join(argv[3], "gguf_python_check_fixture.gguf")
        subprocess.run([argv[2], "--write-fixture", path], check=True)
        ok = check_fixture(path) and describe(path)
        os.remove(path)
        return 0 if ok else 1
    if len(argv) in (3, 5) and argv[0] == "--export":
        preset = argv[4] if len(argv) == 5 and argv[3] == "--preset" else "tiny-moe"
        return 0 if check_export(argv[1], argv[2], preset) else 1
    if len(argv) == 4 and argv[0] == "--make-seeds" and argv[2] == "--writer":
        return 0 if make_seeds(argv[1], argv[3]) else 1
    if len(argv) == 1 and not argv[0].startswith("-"):
        return 0 if describe(argv[0]) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
