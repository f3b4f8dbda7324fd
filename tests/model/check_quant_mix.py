#!/usr/bin/env python3
"""`loom export-gguf --type` k-quants and llama.cpp mixes: the type of every tensor.

  check_quant_mix.py LOOM WORKDIR

Writes three small llama GGUFs with gguf-py (f32 weights, no tokenizer: export needs only the
metadata and tensors) that between them reach every rule loom implements:
  dense16  16 layers, untied output, dim 256, GQA 4   (output q6_K, use_more_bits layers, the
                                                       first-layer ffn_down rule of Q3_K_M)
  tied8    8 layers, tied embeddings, dim 96, ffn 72  (fallbacks q4_0/q5_0/q5_1/q8_0, f16 for
                                                       rows of 72, tied token_embd as output)
  moe8     4 layers of 8 experts, dim 256, ffn 32     (attn_v/attn_k q8_0, attn_output q5_K,
                                                       the layer from an expert's name)
exports each at q2_K..q6_K and at q3_K_M / q4_K_M / q5_K_M, and compares every tensor's type
and general.file_type with EXPECTED below: a table written from llama.cpp's
llama_tensor_get_type / tensor_type_fallback (src/llama-quant.cpp; llama-quantize without an
imatrix, and with --pure for the single types), not from loom's C. Each file is then read back
with gguf-py's dequantizer and its weight RMSE checked to be finite and below each type's
step. Exit 0 when all match, 1 otherwise, 77 without numpy/gguf."""
import os
import re
import subprocess
import sys

try:
    import numpy as np
    import gguf
    import gguf.quants
except ImportError as e:  # pragma: no cover
    print(f"check_quant_mix: SKIP: cannot import gguf/numpy ({e})")
    sys.exit(77)

Q = gguf.GGMLQuantizationType
BLOCK = {Q.Q2_K: 256, Q.Q3_K: 256, Q.Q4_K: 256, Q.Q5_K: 256, Q.Q6_K: 256, Q.Q4_0: 32,
         Q.Q5_0: 32, Q.Q5_1: 32, Q.Q8_0: 32, Q.F16: 1, Q.F32: 1}
PURE = {"q2_K": (Q.Q2_K, 10), "q3_K": (Q.Q3_K, 11), "q4_K": (Q.Q4_K, 14), "q5_K": (Q.Q5_K, 16),
        "q6_K": (Q.Q6_K, 18)}
MIXES = {"q3_K_M": (Q.Q3_K, 12), "q4_K_M": (Q.Q4_K, 15), "q5_K_M": (Q.Q5_K, 17)}

CONFIGS = {
    "dense16": dict(n_layer=16, dim=256, ffn=256, heads=4, kv_heads=1, vocab=300, tied=False,
                    experts=0),
    "tied8": dict(n_layer=8, dim=96, ffn=72, heads=3, kv_heads=3, vocab=200, tied=True,
                  experts=0),
    "moe8": dict(n_layer=4, dim=256, ffn=32, heads=4, kv_heads=4, vocab=260, tied=False,
                 experts=8),
}


def tensor_list(c):
    """(name, numpy shape) in the order llama.cpp's converter writes a llama model."""
    d, f, v = c["dim"], c["ffn"], c["vocab"]
    kv = d // c["heads"] * c["kv_heads"]
    t = [("token_embd.weight", (v, d))]
    for i in range(c["n_layer"]):
        b = f"blk.{i}."
        t += [(b + "attn_norm.weight", (d,)), (b + "attn_q.weight", (d, d)),
              (b + "attn_k.weight", (kv, d)), (b + "attn_v.weight", (kv, d)),
              (b + "attn_output.weight", (d, d)), (b + "ffn_norm.weight", (d,))]
        if c["experts"]:
            e = c["experts"]
            t += [(b + "ffn_gate_inp.weight", (e, d)), (b + "ffn_gate_exps.weight", (e, f, d)),
                  (b + "ffn_down_exps.weight", (e, d, f)), (b + "ffn_up_exps.weight", (e, f, d))]
        else:
            t += [(b + "ffn_gate.weight", (f, d)), (b + "ffn_down.weight", (d, f)),
                  (b + "ffn_up.weight", (f, d))]
    t.append(("output_norm.weight", (d,)))
    if not c["tied"]:
        t.append(("output.weight", (v, d)))
    return t


def write_model(path, c, rng):
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(c["n_layer"])
    w.add_embedding_length(c["dim"])
    w.add_feed_forward_length(c["ffn"])
    w.add_head_count(c["heads"])
    w.add_head_count_kv(c["kv_heads"])
    w.add_context_length(256)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(c["dim"] // c["heads"])
    w.add_vocab_size(c["vocab"])
    w.add_file_type(0)
    if c["experts"]:
        w.add_expert_count(c["experts"])
        w.add_expert_used_count(2)
    for name, shape in tensor_list(c):
        a = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        if len(shape) == 1:
            a = 1.0 + a
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def fallback(t, ne0):
    """tensor_type_fallback: rows that are not whole blocks of t."""
    if ne0 % BLOCK[t] == 0:
        return t
    r = {Q.Q2_K: Q.Q4_0, Q.Q3_K: Q.Q4_0, Q.Q4_K: Q.Q5_0, Q.Q5_K: Q.Q5_1,
         Q.Q6_K: Q.Q8_0}.get(t, t)
    return r if ne0 % BLOCK[r] == 0 else Q.F16


def more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def expected_types(c, mix, base):
    """name -> expected ggml type; mix None = every matrix at base (llama-quantize --pure)."""
    tensors = tensor_list(c)
    n_attn_v = sum("attn_v.weight" in n for n, _ in tensors)
    i_attn_v = i_ffn_down = 0
    out = {}
    for name, shape in tensors:
        ne0 = shape[-1]
        if len(shape) < 2 or "_norm.weight" in name or "ffn_gate_inp" in name:
            out[name] = Q.F32
            continue
        t = base
        if mix is None:
            out[name] = fallback(t, ne0)
            continue
        layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
        if name == "output.weight" or (c["tied"] and name == "token_embd.weight"):
            t = Q.Q8_0 if ne0 % 256 else Q.Q6_K
        elif "attn_v.weight" in name:
            if mix == "q3_K_M":
                t = Q.Q5_K if i_attn_v < 2 else Q.Q4_K
            elif more_bits(i_attn_v, n_attn_v):
                t = Q.Q6_K
            if c["experts"] == 8:
                t = Q.Q8_0
            i_attn_v += 1
        elif "attn_k.weight" in name:
            if c["experts"] == 8:
                t = Q.Q8_0
        elif "ffn_down" in name:
            il = layer if c["experts"] > 1 else i_ffn_down
            n = c["n_layer"]
            if mix == "q3_K_M":
                t = Q.Q5_K if il < n // 16 else Q.Q4_K
            elif more_bits(il, n):
                t = Q.Q6_K
            i_ffn_down += 1
        elif "attn_output.weight" in name:
            if c["experts"] == 8:
                if mix in ("q3_K_M", "q4_K_M"):
                    t = Q.Q5_K
            elif mix == "q3_K_M":
                t = Q.Q4_K
        out[name] = fallback(t, ne0)
    return out


# largest relative RMSE (rmse / rms of the weights) each stored type may give on N(0, 1) data
MAX_REL = {Q.F32: 0.0, Q.F16: 1e-3, Q.Q8_0: 0.01, Q.Q6_K: 0.03, Q.Q5_K: 0.06, Q.Q5_1: 0.06,
           Q.Q5_0: 0.06, Q.Q4_K: 0.12, Q.Q4_0: 0.15, Q.Q3_K: 0.25, Q.Q2_K: 0.45}


def check_file(loom, src, out, cfg, name, base, ftype, mix, log):
    r = subprocess.run([loom, "export-gguf", "-m", src, "-o", out, "--type", name],
                       capture_output=True, text=True)
    if r.returncode != 0:
        log(f"{name}: export failed: {r.stderr.strip()}")
        return False
    want = expected_types(cfg, mix, base)
    rd = gguf.GGUFReader(out)
    srcr = {t.name: t for t in gguf.GGUFReader(src).tensors}
    ok = True
    got_ft = int(rd.fields["general.file_type"].contents())
    if got_ft != ftype:
        log(f"{name}: general.file_type {got_ft}, want {ftype}")
        ok = False
    seen = set()
    for t in rd.tensors:
        seen.add(t.name)
        if t.name not in want:
            log(f"{name}: unexpected tensor {t.name}")
            ok = False
            continue
        if t.tensor_type != want[t.name]:
            log(f"{name}: {t.name} is {t.tensor_type.name}, llama.cpp's rules give "
                f"{want[t.name].name}")
            ok = False
            continue
        x = np.asarray(srcr[t.name].data, dtype=np.float32).reshape(-1)
        y = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        rel = float(np.sqrt(np.mean((y - x) ** 2)) / np.sqrt(np.mean(x ** 2)))
        if not (rel <= MAX_REL[t.tensor_type]):
            log(f"{name}: {t.name} ({t.tensor_type.name}): relative RMSE {rel:.4f} above "
                f"{MAX_REL[t.tensor_type]}")
            ok = False
    if seen != set(want):
        log(f"{name}: missing tensors {sorted(set(want) - seen)[:4]}")
        ok = False
    return ok


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    loom, work = argv
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(17)
    ok = True
    for cname, cfg in CONFIGS.items():
        src = os.path.join(work, f"{cname}-f32.gguf")
        write_model(src, cfg, rng)
        for name, (base, ftype) in list(PURE.items()) + list(MIXES.items()):
            mix = name if name in MIXES else None
            lines = []
            good = check_file(loom, src, os.path.join(work, f"{cname}-{name}.gguf"), cfg, name,
                              base, ftype, mix, lines.append)
            for ln in lines:
                print(f"check_quant_mix: {cname}: {ln}")
            counts = {}
            for t in expected_types(cfg, mix, base).values():
                counts[t.name] = counts.get(t.name, 0) + 1
            print(f"check_quant_mix: {cname} {name}: {'ok' if good else 'MISMATCH'} "
                  f"({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))})")
            ok &= good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
