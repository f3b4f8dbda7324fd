#!/usr/bin/env python3
"""Cross-check loom's GGUF files with the reference Python reader (PyPI `gguf`).

  check_gguf.py FILE                      print and validate any GGUF file
  check_gguf.py --fixture --writer EXE DIR
        run `EXE --write-fixture DIR/fixture.gguf` (loom's writer, see
        tests/model/test_gguf_fixture.h) and compare every KV value, tensor
        shape, type id and data byte with expectations rebuilt here.
  check_gguf.py --make-seeds DIR --writer EXE
        (developer tool) regenerate the seed corpus tests/fuzz/corpus/gguf.

Exit status 0 when everything matches; 1 on any mismatch or when `gguf`
cannot be imported (CI installs it through scripts/install-deps.sh, so a
missing package is a failure, never a skip)."""
import os
import struct
import subprocess
import sys

try:
    import numpy as np
    import gguf
    from gguf import GGUFReader, GGUFValueType
except ImportError as e:  # pragma: no cover - the failure path CI must see
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
    if len(argv) == 4 and argv[0] == "--make-seeds" and argv[2] == "--writer":
        return 0 if make_seeds(argv[1], argv[3]) else 1
    if len(argv) == 1 and not argv[0].startswith("-"):
        return 0 if describe(argv[0]) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
