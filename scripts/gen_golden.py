#!/usr/bin/env python3
"""Generate loom's golden test cases (tests/golden/*.bin) with numpy.

The goldens are an independent check of loom's reference kernels: every
expected output here is computed by numpy straight from the op definitions in
include/loom/ir.h and include/loom/dtype.h, in float64 unless the definition
itself says float32 (the ggml quantizers, the fp16/bf16 roundings, cos/sin of
rope rounded to float). tests/golden/test_golden.c feeds the stored input
bytes to loom's cpu backend and compares against the stored expected output.

Usage:  pip install numpy && python3 scripts/gen_golden.py [--out DIR]

Everything is deterministic: inputs come from a splitmix64 counter PRNG seeded
by the case name (implemented here, so the bytes do not depend on numpy's
random-number streams), and the same numpy version writes the same files.

File format "LOOMGLD1" (all integers and floats little-endian)
---------------------------------------------------------------
    char    magic[8]        "LOOMGLD1"
    str     op              op name as loom_op_name() spells it ("matmul")
    str     case            case name, unique, [A-Za-z0-9_]
    u32     cmp             0: expected is f32, pass when max|out - exp| <= tol
                            1: pass when the output bytes equal the expected bytes
    f64     tol             absolute tolerance for cmp 0 (0 for cmp 1)
    u32     n_int           then i32 ints[n_int]      (n_int <= 16)
    u32     n_float         then f32 floats[n_float]  (n_float <= 16)
    u32     n_tensor        2..8; tensors 0..n_tensor-2 are the op inputs in
                            constructor argument order, the last is the
                            expected output
    n_tensor times:
        str     name
        u32     dtype       loom_dtype numbering: f32=0 f16=1 bf16=2 i32=3
                            q8_0=4 q4_0=5 nf4=6 nf4_dq=7
        i64     ne[4]       loom extents, ne[0] innermost (= the LAST numpy
                            axis of the array the tensor was made from)
        u64     nbytes      == loom_dtype_nbytes(dtype, ne0*ne1*ne2*ne3)
        u8      data[nbytes] contiguous loom layout (= numpy C order); q8_0 /
                            q4_0 as GGUF blocks, nf4 as codes then f32 absmax
    (end of file: no trailing bytes)
where str = u32 length (<= 128) followed by that many bytes, no terminator.

Parameters per op (the C reader maps them onto the op constructor):
    get_rows      inputs table, ids
    add, mul      inputs a, b (b broadcasts)
    rms_norm      input x;              floats [eps]
    rope          inputs x, pos;        ints [n_dims, mode, scaling, orig_ctx,
                                        inverse]; floats [theta, factor,
                                        low_freq_factor, high_freq_factor]
    softmax       input x;              ints [causal, q_offset]; floats [scale]
    silu          input x
    swiglu        inputs gate, up
    matmul        inputs w, x
    flash_attn    inputs q, k, v;       ints [causal, q_offset]; floats [scale]
    moe           inputs x, logits, gate, up, down; ints [top_k]
    cross_entropy inputs logits, targets
    cpy           input src; the target dtype is the expected tensor's dtype
    set_rows      inputs dst, src, rows; the expected tensor is the whole dst
                  after the write (dst's dtype: f32 compared with tolerance,
                  f16 / bf16 / q8_0 byte for byte)

Tolerances (cmp 0): tol = 1e-5 * sqrt(L) * S where L is the op's reduction
length (1 for elementwise ops, K for matmul, ne[0] for rms_norm / softmax /
cross_entropy, max(D, Tk) for flash_attn, max(Dm, F) for moe) and
S = max(1, max|expected|). float32 accumulation over L terms errs by about
6e-8 * sqrt(L) relative, so this leaves a wide margin for summation order while
still catching any semantic error (those are O(1e-3) or larger here).
Quantized and f16/bf16 weights are compared against numpy's math on exactly
the dequantized values of the stored bytes, so they get the same tolerance.
"""

import argparse
import math
import os
import struct
import sys
import zlib

import numpy as np

MAGIC = b"LOOMGLD1"
F32, F16, BF16, I32, Q8_0, Q4_0, NF4, NF4_DQ = range(8)
CMP_TOL, CMP_EXACT = 0, 1
TOL_F32 = 1e-5

ROPE_NORMAL, ROPE_NEOX = 0, 2
SCALING_NONE, SCALING_LLAMA3 = 0, 1

# bitsandbytes NF4 codebook (float32 values, as loom_nf4_code).
NF4_CODE = np.array(
    [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
        -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
        0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
        0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
        0.7229568362236023, 1.0,
    ],
    dtype=np.float32,
)

# --------------------------------------------------------------------------
# deterministic inputs: splitmix64 over a counter, seeded by the case name
# --------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class Rng:
    def __init__(self, name):
        self.seed = np.uint64((zlib.crc32(name.encode()) * 0x2545F4914F6CDD1D) & (2**64 - 1))
        self.counter = 0

    def u64(self, n):
        with np.errstate(over="ignore"):
            i = np.arange(self.counter + 1, self.counter + n + 1, dtype=np.uint64)
            self.counter += n
            z = self.seed + i * _GOLDEN
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            return z ^ (z >> np.uint64(31))

    def unit(self, n):
        """n float64 values in [0, 1)."""
        return (self.u64(n) >> np.uint64(11)).astype(np.float64) * 2.0**-53

    def uniform(self, shape, lo=-1.0, hi=1.0):
        n = int(np.prod(shape))
        return (lo + (hi - lo) * self.unit(n)).reshape(shape).astype(np.float32)

    def normal(self, shape, std=1.0):
        n = int(np.prod(shape))
        u1 = 1.0 - self.unit(n)  # (0, 1]
        u2 = self.unit(n)
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        return (std * z).reshape(shape).astype(np.float32)

    def ints(self, shape, lo, hi):
        n = int(np.prod(shape))
        return (lo + (self.u64(n) % np.uint64(hi - lo)).astype(np.int64)).reshape(shape)


# --------------------------------------------------------------------------
# dtype encoders (each returns (bytes, the float values loom will see))
# --------------------------------------------------------------------------


def f16_bits(x):
    """float32 -> IEEE half, round to nearest even (numpy's cast is RNE)."""
    with np.errstate(over="ignore"):  # values beyond 65504 round to inf, as intended
        return np.asarray(x, dtype=np.float32).astype(np.float16)


def bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (no NaN inputs here)."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = (u + np.uint64(0x7FFF) + ((u >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    return r.astype(np.uint16)


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def c_roundf(v):
    """C roundf (half away from zero) of float32 values, exactly."""
    v = v.astype(np.float64)  # |v| + 0.5 is exact in float64
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def quant_q8_0(x):
    """ggml quantize_row_q8_0_ref, float32 arithmetic as in C."""
    xb = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    amax = np.max(np.abs(xb), axis=1)
    d = amax / np.float32(127.0)
    inv = np.zeros_like(d)
    np.divide(np.float32(1.0), d, out=inv, where=d != 0)
    q = c_roundf(xb * inv[:, None]).astype(np.int8)
    blk = np.zeros(xb.shape[0], dtype=[("d", "<f2"), ("qs", "i1", 32)])
    blk["d"] = f16_bits(d)
    blk["qs"] = q
    deq = blk["d"].astype(np.float32)[:, None] * q.astype(np.float32)
    return blk.tobytes(), deq.reshape(np.shape(x))


def act8_dequant(x):
    """Activations as loom's int8-activation kernels see them (ADR 0036):
    quantize_row_q8_0's codes per 32 values, scale kept in float32 (not
    rounded to f16); returns d * q in float64 (exact)."""
    xb = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    amax = np.max(np.abs(xb), axis=1)
    d = amax / np.float32(127.0)
    inv = np.zeros_like(d)
    np.divide(np.float32(1.0), d, out=inv, where=d != 0)
    q = c_roundf(xb * inv[:, None])
    return (d.astype(np.float64)[:, None] * q).reshape(np.shape(x))


def quant_q4_0(x):
    """ggml quantize_row_q4_0_ref, float32 arithmetic as in C."""
    xb = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    absx = np.abs(xb)
    idx = np.argmax(absx, axis=1)  # first index of the largest |x| (C: strict <)
    amax = absx[np.arange(len(xb)), idx]
    # C starts from max = 0.0f and only takes x[j] when |x[j]| > amax.
    m = np.where(amax > 0, xb[np.arange(len(xb)), idx], np.float32(0.0)).astype(np.float32)
    d = m / np.float32(-8.0)  # an all-zero block gives d = -0.0, as in C
    inv = np.zeros_like(d)
    np.divide(np.float32(1.0), d, out=inv, where=d != 0)
    t = (xb * inv[:, None]) + np.float32(8.5)  # float32, as C's x0 + 8.5f
    assert t.dtype == np.float32
    q = np.minimum(15, np.trunc(t).astype(np.int64)).astype(np.uint8)
    blk = np.zeros(xb.shape[0], dtype=[("d", "<f2"), ("qs", "u1", 16)])
    blk["d"] = f16_bits(d)
    blk["qs"] = q[:, :16] | (q[:, 16:] << 4)
    deq = blk["d"].astype(np.float32)[:, None] * (q.astype(np.float32) - 8.0)
    return blk.tobytes(), deq.reshape(np.shape(x))


def quant_nf4(x):
    """bitsandbytes NF4: 64-blocks scaled by absmax, nearest code, whole-tensor
    layout: codes (element 2i in the high nibble) then absmax f32[n/64]."""
    flat = np.asarray(x, dtype=np.float32).reshape(-1)
    assert flat.size % 64 == 0
    xb = flat.reshape(-1, 64)
    absmax = np.max(np.abs(xb), axis=1).astype(np.float32)
    safe = np.where(absmax > 0, absmax, np.float32(1.0))
    norm = xb.astype(np.float64) / safe.astype(np.float64)[:, None]
    codes = np.argmin(np.abs(norm[..., None] - NF4_CODE.astype(np.float64)), axis=-1)
    codes = codes.reshape(-1).astype(np.uint8)
    packed = (codes[0::2] << 4) | codes[1::2]
    data = packed.tobytes() + absmax.astype("<f4").tobytes()
    # loom's element value: code * absmax as a float32 product.
    deq = NF4_CODE[codes].reshape(-1, 64) * absmax[:, None]
    return data, deq.astype(np.float32).reshape(np.shape(x))


# --------------------------------------------------------------------------
# tensors and the file writer
# --------------------------------------------------------------------------


class Tensor:
    def __init__(self, name, dtype, shape, data):
        shape = tuple(int(s) for s in shape)
        assert 1 <= len(shape) <= 4
        self.name = name
        self.dtype = dtype
        self.ne = list(reversed(shape)) + [1] * (4 - len(shape))
        self.data = data


def t_f32(name, a):
    a = np.asarray(a, dtype=np.float32)
    return Tensor(name, F32, a.shape, a.astype("<f4").tobytes())


def t_i32(name, a):
    a = np.asarray(a, dtype=np.int32)
    return Tensor(name, I32, a.shape, a.astype("<i4").tobytes())


def t_weight(name, w, dtype):
    """Encode a float32 array as dtype; returns (tensor, values loom sees as f64)."""
    w = np.asarray(w, dtype=np.float32)
    if dtype == F32:
        return t_f32(name, w), w.astype(np.float64)
    if dtype == F16:
        h = f16_bits(w)
        return Tensor(name, F16, w.shape, h.astype("<f2").tobytes()), h.astype(np.float64)
    if dtype == BF16:
        b = bf16_bits(w)
        return Tensor(name, BF16, w.shape, b.astype("<u2").tobytes()), bf16_to_f32(b).astype(
            np.float64
        )
    enc = {Q8_0: quant_q8_0, Q4_0: quant_q4_0, NF4: quant_nf4}[dtype]
    data, deq = enc(w)
    return Tensor(name, dtype, w.shape, data), deq.astype(np.float64)


def tol_for(expected, reduce_len):
    s = max(1.0, float(np.max(np.abs(expected)))) if np.size(expected) else 1.0
    return TOL_F32 * math.sqrt(max(1, reduce_len)) * s


def _str(s):
    b = s.encode()
    assert len(b) <= 128
    return struct.pack("<I", len(b)) + b


class Writer:
    def __init__(self, outdir):
        self.outdir = outdir
        self.names = set()
        self.total = 0
        self.count = 0

    def case(self, op, name, inputs, expected, reduce_len=1, ints=(), floats=()):
        """expected: float64 array (f32 compare with tolerance) or a Tensor
        (compared byte for byte)."""
        assert name not in self.names, name
        self.names.add(name)
        if isinstance(expected, Tensor):
            cmp, tol, exp_t = CMP_EXACT, 0.0, expected
            exp_t.name = "expected"
        else:
            exp = np.asarray(expected, dtype=np.float64)
            assert np.all(np.isfinite(exp)), name
            cmp, tol, exp_t = CMP_TOL, tol_for(exp, reduce_len), t_f32("expected", exp)
        assert len(ints) <= 16 and len(floats) <= 16
        tensors = list(inputs) + [exp_t]
        out = bytearray(MAGIC)
        out += _str(op) + _str(name)
        out += struct.pack("<Id", cmp, tol)
        out += struct.pack("<I", len(ints)) + struct.pack("<%di" % len(ints), *ints)
        out += struct.pack("<I", len(floats)) + struct.pack("<%df" % len(floats), *floats)
        out += struct.pack("<I", len(tensors))
        for t in tensors:
            out += _str(t.name)
            out += struct.pack("<I4qQ", t.dtype, *t.ne, len(t.data))
            out += t.data
        path = os.path.join(self.outdir, "%s.bin" % name)
        with open(path, "wb") as f:
            f.write(out)
        self.total += len(out)
        self.count += 1


# --------------------------------------------------------------------------
# numpy definitions of the ops (float64)
# --------------------------------------------------------------------------


def silu(x):
    return x / (1.0 + np.exp(-x))


def ref_rms_norm(x, eps):
    x = x.astype(np.float64)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + float(np.float32(eps)))


def rope_inv_freq(n_dims, theta, scaling, factor, low, high, orig_ctx):
    theta, factor, low, high = (float(np.float32(v)) for v in (theta, factor, low, high))
    i = np.arange(n_dims // 2, dtype=np.float64)
    inv = theta ** (-2.0 * i / n_dims)
    if scaling == SCALING_LLAMA3:
        wavelen = 2.0 * np.pi / inv
        low_wl, high_wl = orig_ctx / low, orig_ctx / high
        scaled = np.where(wavelen > low_wl, inv / factor, inv)
        smooth = (orig_ctx / wavelen - low) / (high - low)
        smoothed = (1.0 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wl) & ~(wavelen > low_wl)
        inv = np.where(medium, smoothed, scaled)
    return inv


def ref_rope(x, pos, n_dims, mode, theta, scaling, factor, low, high, orig_ctx, inverse):
    """x numpy (B, T, H, D) float32, pos (T,)."""
    inv = rope_inv_freq(n_dims, theta, scaling, factor, low, high, orig_ctx)
    ang = pos.astype(np.float64)[:, None] * inv[None, :]  # (T, n/2)
    c = np.cos(ang).astype(np.float32).astype(np.float64)[None, :, None, :]
    s = np.sin(ang).astype(np.float32).astype(np.float64)[None, :, None, :]
    if inverse:
        s = -s
    y = x.astype(np.float64).copy()
    half = n_dims // 2
    if mode == ROPE_NORMAL:
        ia, ib = np.arange(0, n_dims, 2), np.arange(1, n_dims, 2)
    else:
        ia, ib = np.arange(half), np.arange(half, n_dims)
    a, b = y[..., ia].copy(), y[..., ib].copy()
    y[..., ia] = a * c - b * s
    y[..., ib] = a * s + b * c
    return y


def ref_softmax(x, scale, causal, q_offset):
    """softmax over the last axis; row index = second-to-last axis."""
    s = float(np.float32(scale)) * x.astype(np.float64)
    if causal:
        n = np.arange(x.shape[-1])[None, :]
        m = np.arange(x.shape[-2])[:, None]
        s = np.where(n > m + q_offset, -np.inf, s)
    mx = np.max(s, axis=-1, keepdims=True)
    full = ~np.isfinite(mx)
    e = np.exp(s - np.where(full, 0.0, mx))
    e = np.where(np.isfinite(s), e, 0.0)
    den = np.sum(e, axis=-1, keepdims=True)
    return np.where(full, 0.0, e / np.where(den > 0, den, 1.0))


def ref_matmul(w, x):
    """w numpy (W3, W2, N, K), x (X3, X2, M, K) -> (X3, X2, M, N)."""
    X3, X2 = x.shape[0], x.shape[1]
    r3, r2 = X3 // w.shape[0], X2 // w.shape[1]
    out = np.zeros((X3, X2, x.shape[2], w.shape[2]))
    for i3 in range(X3):
        for i2 in range(X2):
            out[i3, i2] = x[i3, i2] @ w[i3 // r3, i2 // r2].T
    return out


def ref_flash_attn(q, k, v, scale, causal, q_offset):
    """q (B, Hq, Tq, D), k/v (B, Hkv, Tk, D) -> (B, Tq, Hq, D)."""
    B, Hq, Tq, D = q.shape
    Hkv = k.shape[1]
    group = Hq // Hkv
    kk = np.repeat(k, group, axis=1)
    vv = np.repeat(v, group, axis=1)
    s = float(np.float32(scale)) * np.einsum("bhtd,bhjd->bhtj", q, kk)
    if causal:
        j = np.arange(k.shape[2])[None, :]
        t = np.arange(Tq)[:, None]
        s = np.where(j > t + q_offset, -np.inf, s)
    s = s - np.max(s, axis=-1, keepdims=True)
    p = np.exp(s)
    p /= np.sum(p, axis=-1, keepdims=True)
    o = np.einsum("bhtj,bhjd->bhtd", p, vv)
    return o.transpose(0, 2, 1, 3)


def ref_moe(x, logits, gate, up, down, top_k):
    """x (T, Dm), logits (T, E), gate/up (E, F, Dm), down (E, Dm, F)."""
    out = np.zeros_like(x, dtype=np.float64)
    for t in range(x.shape[0]):
        order = np.argsort(-logits[t], kind="stable")[:top_k]  # ties -> lower index
        sel = logits[t, order]
        g = np.exp(sel - sel.max())
        g /= g.sum()
        for ge, e in zip(g, order):
            h = silu(gate[e] @ x[t]) * (up[e] @ x[t])
            out[t] += ge * (down[e] @ h)
    return out


def ref_cross_entropy(logits, targets):
    """logits (T, V), targets (T,) -> (1,)."""
    rows = [t for t in range(len(targets)) if targets[t] >= 0]
    if not rows:
        return np.zeros(1)
    total = 0.0
    for t in rows:
        row = logits[t].astype(np.float64)
        mx = row.max()
        total += mx + math.log(np.sum(np.exp(row - mx))) - row[targets[t]]
    return np.array([total / len(rows)])


# --------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------


def gen_get_rows(w):
    r = Rng("get_rows_f32")
    table = r.normal((10, 16))  # V=10, D=16 -> loom [16, 10]
    ids = np.array([[3, 0, 9, 3, 7], [1, 1, 8, 2, 0]], dtype=np.int32)  # (B=2, T=5)
    w.case("get_rows", "get_rows_f32", [t_f32("table", table), t_i32("ids", ids)],
           table.astype(np.float64)[ids])

    r = Rng("get_rows_f16")
    table = r.normal((6, 8), 3.0)
    tt, deq = t_weight("table", table, F16)
    ids = np.array([5, 0, 2, 2], dtype=np.int32)
    w.case("get_rows", "get_rows_f16", [tt, t_i32("ids", ids)], deq[ids])

    r = Rng("get_rows_q8_0")
    table = r.normal((12, 64))  # V=12, D=64 (2 blocks per row)
    tt, deq = t_weight("table", table, Q8_0)
    ids = np.array([11, 0, 5, 5, 3, 10, 1], dtype=np.int32)
    w.case("get_rows", "get_rows_q8_0", [tt, t_i32("ids", ids)], deq[ids])


def gen_binary(w):
    specs = [
        ("add", "add_same", (2, 3, 4, 8), (2, 3, 4, 8)),
        ("add", "add_bcast_row", (2, 3, 5, 8), (1, 1, 1, 8)),
        ("add", "add_bcast_mixed", (2, 3, 4, 6), (2, 1, 4, 1)),
        ("mul", "mul_bcast_col", (3, 5, 7), (3, 5, 1)),
        ("mul", "mul_bcast_mixed", (3, 4, 6), (3, 1, 6)),
        ("mul", "mul_scalar", (5, 9), (1, 1)),
    ]
    for op, name, sa, sb in specs:
        r = Rng(name)
        a, b = r.normal(sa, 2.0), r.normal(sb, 2.0)
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        exp = a64 + b64 if op == "add" else a64 * b64
        w.case(op, name, [t_f32("a", a), t_f32("b", b)], exp)


def gen_rms_norm(w):
    for name, shape, std, eps in [
        ("rms_norm_d64", (2, 6, 64), 1.0, 1e-5),
        ("rms_norm_d256", (4, 256), 3.0, 1e-6),
        # tiny activations: mean(x^2) ~ 1e-6 so eps=1e-5 dominates the result
        ("rms_norm_tiny_eps", (5, 32), 1e-3, 1e-5),
    ]:
        x = Rng(name).normal(shape, std)
        w.case("rms_norm", name, [t_f32("x", x)], ref_rms_norm(x, eps), shape[-1],
               floats=[eps])


def gen_rope(w):
    llama3 = (500000.0, SCALING_LLAMA3, 8.0, 1.0, 4.0, 8192)
    plain = (10000.0, SCALING_NONE, 1.0, 1.0, 1.0, 8192)
    far = np.array([0, 1, 2047, 8191, 8192, 12345, 19999, 20000], dtype=np.int32)
    cases = [
        # name, mode, n_dims, head_dim, H, B, positions, (theta, scaling, f, lo, hi, ctx), inverse
        ("rope_normal", ROPE_NORMAL, 64, 64, 3, 2, np.arange(5), plain, 0),
        ("rope_neox", ROPE_NEOX, 64, 64, 3, 2, np.arange(5), plain, 0),
        ("rope_normal_llama3", ROPE_NORMAL, 64, 64, 2, 1, far, llama3, 0),
        ("rope_neox_llama3", ROPE_NEOX, 64, 64, 2, 1, far, llama3, 0),
        ("rope_neox_offset", ROPE_NEOX, 64, 64, 4, 1, 1000 + np.arange(6), llama3, 0),
        ("rope_normal_offset", ROPE_NORMAL, 64, 64, 2, 2, 4093 + np.arange(7), plain, 0),
        ("rope_neox_partial", ROPE_NEOX, 32, 64, 2, 1, far, plain, 0),
        ("rope_normal_partial", ROPE_NORMAL, 16, 48, 2, 1, far, llama3, 0),
        ("rope_neox_llama3_inverse", ROPE_NEOX, 64, 64, 2, 1, far, llama3, 1),
    ]
    for name, mode, n_dims, hd, H, B, pos, sc, inverse in cases:
        theta, scaling, factor, lo, hi, ctx = sc
        pos = np.asarray(pos, dtype=np.int32)
        x = Rng(name).normal((B, len(pos), H, hd))
        exp = ref_rope(x, pos, n_dims, mode, theta, scaling, factor, lo, hi, ctx, inverse)
        w.case("rope", name, [t_f32("x", x), t_i32("pos", pos)], exp,
               ints=[n_dims, mode, scaling, ctx, inverse], floats=[theta, factor, lo, hi])


def gen_softmax(w):
    for name, shape, std, scale, causal, q_off in [
        ("softmax_plain", (3, 5, 17), 2.0, 1.0, 0, 0),
        ("softmax_scaled_large", (4, 33), 30.0, 0.7, 0, 0),
        ("softmax_causal", (2, 8, 8), 1.0, 0.125, 1, 0),
        ("softmax_causal_qoffset", (3, 4, 12), 1.5, 0.5, 1, 8),
        # negative offset: rows 0 and 1 are fully masked and must be zeros
        ("softmax_causal_fully_masked", (4, 9), 1.0, 1.0, 1, -2),
    ]:
        x = Rng(name).normal(shape, std)
        w.case("softmax", name, [t_f32("x", x)], ref_softmax(x, scale, causal, q_off),
               shape[-1], ints=[causal, q_off], floats=[scale])


def gen_silu_swiglu(w):
    x = Rng("silu").normal((7, 33), 4.0)
    x[0, :6] = [-100.0, -30.0, 0.0, -0.0, 30.0, 100.0]
    x64 = x.astype(np.float64)
    w.case("silu", "silu", [t_f32("x", x)], silu(x64))

    r = Rng("swiglu")
    g, u = r.normal((6, 40), 3.0), r.normal((6, 40), 2.0)
    w.case("swiglu", "swiglu", [t_f32("gate", g), t_f32("up", u)],
           silu(g.astype(np.float64)) * u.astype(np.float64))


def gen_matmul(w):
    cases = [
        # name, wdtype, (W3, W2, N, K), (X3, X2, M), xdtype
        ("matmul_f32", F32, (1, 1, 24, 64), (1, 1, 40), F32),
        ("matmul_f32_bcast", F32, (1, 2, 8, 32), (2, 4, 3), F32),
        ("matmul_f16", F16, (1, 1, 16, 96), (1, 1, 4), F32),
        ("matmul_bf16", BF16, (1, 1, 16, 96), (1, 1, 4), F32),
        ("matmul_q8_0", Q8_0, (1, 1, 16, 128), (1, 1, 3), F32),
        ("matmul_q8_0_gemv", Q8_0, (1, 1, 40, 64), (1, 1, 1), F32),
        ("matmul_q4_0", Q4_0, (1, 1, 16, 128), (1, 1, 3), F32),
        ("matmul_q4_0_gemv", Q4_0, (1, 1, 40, 64), (1, 1, 1), F32),
        ("matmul_nf4", NF4, (1, 1, 16, 128), (1, 1, 3), F32),
        ("matmul_nf4_gemv", NF4, (1, 1, 24, 64), (1, 1, 1), F32),
        ("matmul_f32_x_f16", F32, (1, 1, 12, 48), (1, 1, 5), F16),
        ("matmul_q4_0_x_bf16", Q4_0, (1, 1, 12, 64), (1, 1, 5), BF16),
    ]
    for name, wdt, wshape, xs, xdt in cases:
        r = Rng(name)
        K = wshape[3]
        wf = r.normal(wshape, 1.0 / math.sqrt(K) * 2.0)
        xf = r.normal(xs + (K,))
        wt, w64 = t_weight("w", wf, wdt)
        xt, x64 = t_weight("x", xf, xdt)
        w.case("matmul", name, [wt, xt], ref_matmul(w64, x64), K)
        if wdt in (Q8_0, Q4_0) and xdt == F32:
            # Twin for loom's int8-activation cpu kernels: same inputs, the
            # activations quantized per 32 values first; ints [1] marks it.
            w.case("matmul", name + "_act8", [wt, xt], ref_matmul(w64, act8_dequant(xf)), K,
                   ints=[1])


def gen_flash_attn(w):
    cases = [
        # name, B, Hq, Hkv, Tq, Tk, D, causal, q_offset, kv dtype, scale (None: 1/sqrt(D))
        ("flash_attn_gqa1_causal_d64", 1, 4, 4, 9, 9, 64, 1, 0, F32, None),
        ("flash_attn_gqa4_decode_d128", 2, 8, 2, 1, 33, 128, 1, 32, F32, None),
        ("flash_attn_gqa8_noncausal_d64", 1, 8, 1, 5, 20, 64, 0, 0, F32, None),
        ("flash_attn_gqa4_causal_qoffset_d64", 1, 4, 1, 4, 14, 64, 1, 10, F32, 0.2),
        ("flash_attn_gqa4_f16_d128", 1, 4, 1, 3, 16, 128, 1, 13, F16, None),
        ("flash_attn_gqa8_f16_decode_d64", 1, 8, 1, 1, 24, 64, 1, 23, F16, None),
    ]
    for name, B, Hq, Hkv, Tq, Tk, D, causal, q_off, kvdt, scale in cases:
        r = Rng(name)
        if scale is None:
            scale = 1.0 / math.sqrt(D)
        q = r.normal((B, Hq, Tq, D), 1.5)
        k = r.normal((B, Hkv, Tk, D), 1.5)
        v = r.normal((B, Hkv, Tk, D))
        kt, k64 = t_weight("k", k, kvdt)
        vt, v64 = t_weight("v", v, kvdt)
        exp = ref_flash_attn(q.astype(np.float64), k64, v64, scale, causal, q_off)
        w.case("flash_attn", name, [t_f32("q", q), kt, vt], exp, max(D, Tk),
               ints=[causal, q_off], floats=[scale])


def gen_moe(w):
    cases = [
        # name, Dm, F, E, T, top_k, weight dtype, tie
        ("moe_e8_k2_f32", 32, 32, 8, 5, 2, F32, False),
        ("moe_e8_k2_q8_0", 64, 32, 8, 3, 2, Q8_0, False),
        ("moe_e5_k3_uneven_ties", 24, 40, 5, 6, 3, F32, True),
        ("moe_e4_k1", 16, 24, 4, 4, 1, F32, False),
    ]
    for name, Dm, F, E, T, k, wdt, tie in cases:
        r = Rng(name)
        x = r.normal((T, Dm))
        logits = r.normal((T, E), 2.0)
        if tie:
            # token 0: experts 1, 3 and 4 tie for second place (k=3 picks 1 and 3);
            # token 1: all equal (picks 0, 1, 2); token 2: tie at the top.
            logits[0] = [0.5, 1.25, 3.0, 1.25, 1.25]
            logits[1] = [0.75] * E
            logits[2] = [2.0, -1.0, 2.0, 0.0, 2.0]
        gate = r.normal((E, F, Dm), 1.0 / math.sqrt(Dm))
        up = r.normal((E, F, Dm), 1.0 / math.sqrt(Dm))
        down = r.normal((E, Dm, F), 1.0 / math.sqrt(F))
        gt, g64 = t_weight("gate", gate, wdt)
        ut, u64 = t_weight("up", up, wdt)
        dt, d64 = t_weight("down", down, wdt)
        exp = ref_moe(x.astype(np.float64), logits.astype(np.float64), g64, u64, d64, k)
        w.case("moe", name, [t_f32("x", x), t_f32("logits", logits), gt, ut, dt], exp,
               max(Dm, F), ints=[k])


def gen_cross_entropy(w):
    r = Rng("cross_entropy_ignore")
    logits = r.normal((6, 50), 3.0)
    logits[4, 7] = 60.0  # large logit: needs a stable logsumexp
    targets = np.array([3, -100, 49, 0, 7, -100], dtype=np.int32)
    w.case("cross_entropy", "cross_entropy_ignore",
           [t_f32("logits", logits), t_i32("targets", targets)],
           ref_cross_entropy(logits, targets), 50)

    r = Rng("cross_entropy_all_ignored")
    logits = r.normal((3, 20))
    targets = np.array([-100, -100, -100], dtype=np.int32)
    w.case("cross_entropy", "cross_entropy_all_ignored",
           [t_f32("logits", logits), t_i32("targets", targets)],
           ref_cross_entropy(logits, targets), 20)


def gen_set_rows(w):
    """dst[:, rows[t, b], b] = convert(src[:, t, b]) (ir.h loom_set_rows); the
    rest of dst keeps its bytes. Row indices out of order, including the first
    and the last row, so a write to the wrong row or a skipped row shows."""
    # name, dst dtype, W, R, B, rows (T,) shared by every b or (B, T)
    cases = [
        ("set_rows_f32", F32, 16, 10, 1, [7, 2, 9, 0]),
        ("set_rows_f32_per_seq", F32, 8, 6, 2, [[5, 1, 3], [0, 4, 2]]),
        ("set_rows_f16", F16, 32, 9, 1, [8, 0, 4]),
        ("set_rows_bf16", BF16, 32, 5, 2, [3, 0]),
        ("set_rows_q8_0", Q8_0, 64, 7, 1, [6, 1, 3]),
    ]
    for name, dt, W, R, B, rows in cases:
        r = Rng(name)
        rows = np.asarray(rows, dtype=np.int32)
        T = rows.shape[-1]
        dst = r.normal((B, R, W), 2.0)
        src = r.normal((B, T, W), 2.0)
        dst_t, _ = t_weight("dst", dst, dt)
        per_b = rows if rows.ndim == 2 else np.broadcast_to(rows, (B, T))
        if dt == F32:
            exp = dst.astype(np.float64)
            for b in range(B):
                for t in range(T):
                    exp[b, per_b[b, t]] = src[b, t]
        else:
            # bytes per dst row, then each written row replaced by its encoding
            row_bytes = len(dst_t.data) // (B * R)
            out = bytearray(dst_t.data)
            for b in range(B):
                for t in range(T):
                    enc, _ = t_weight("row", src[b, t], dt)
                    at = (b * R + per_b[b, t]) * row_bytes
                    out[at: at + row_bytes] = enc.data
            exp = Tensor("expected", dt, dst.shape, bytes(out))
        w.case("set_rows", name, [dst_t, t_f32("src", src), t_i32("rows", rows)], exp)


def gen_cpy(w):
    # f16: random values over many binades plus rounding / range edge cases.
    r = Rng("cpy_f32_f16")
    x = (r.normal((4, 64)) * np.exp2(r.ints((4, 64), -20, 17))).astype(np.float32)
    special = [0.0, -0.0, 1.0, -1.0, 65504.0, 65519.99, 65520.0, 1e6, -1e6, np.inf, -np.inf,
               2.0**-24, 2.0**-25, 3 * 2.0**-26, 2.0**-14, 2.0**-14 - 2.0**-25,
               1 + 2.0**-11, 1 + 3 * 2.0**-11, -(1 + 2.0**-11), 2049.0, 2051.0, 1e-10]
    x[0, : len(special)] = np.array(special, dtype=np.float32)
    w.case("cpy", "cpy_f32_f16", [t_f32("src", x)],
           Tensor("expected", F16, x.shape, f16_bits(x).astype("<f2").tobytes()))

    r = Rng("cpy_f32_bf16")
    x = (r.normal((4, 64)) * np.exp2(r.ints((4, 64), -60, 60))).astype(np.float32)
    special = [0.0, -0.0, 1.0, -1.0, 1 + 2.0**-8, 1 + 3 * 2.0**-8, -(1 + 2.0**-8),
               1 + 2.0**-8 + 2.0**-20, 3.4028235e38, -3.4028235e38, np.inf, -np.inf,
               1e-40, 2.0**-149, 1.17549435e-38, 65504.0]
    x[0, : len(special)] = np.array(special, dtype=np.float32)
    w.case("cpy", "cpy_f32_bf16", [t_f32("src", x)],
           Tensor("expected", BF16, x.shape, bf16_bits(x).astype("<u2").tobytes()))

    r = Rng("cpy_f32_q8_0")
    x = r.normal((6, 64), 2.0)
    x[0, :32] = 0.0  # all-zero block: d = 0, id = 0
    # amax = 127 gives d = 1 exactly, so these hit roundf's halfway cases
    x[1, :32] = np.array([127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5] + [3.49999] * 24)
    x[2, 32:] = r.normal((32,), 1e-6)  # tiny scale, fp16 d becomes subnormal
    x[3, :32] = np.float32(-7.25)  # constant negative block
    w.case("cpy", "cpy_f32_q8_0", [t_f32("src", x)],
           Tensor("expected", Q8_0, x.shape, quant_q8_0(x)[0]))

    r = Rng("cpy_f32_q4_0")
    x = r.normal((6, 64), 2.0)
    x[0, :32] = 0.0  # all-zero block: C keeps max = 0.0f, so d = -0.0 (fp16 0x8000)
    x[1, :32] = np.abs(x[1, :32])
    x[1, 5] = -9.0  # the max-|x| element is negative
    x[2, :32] = 1.0
    x[2, 3], x[2, 9] = 4.0, -4.0  # |x| tie: the first one (+4) sets the sign of d
    x[3, 32:] = np.linspace(-8, 8, 32, dtype=np.float32)  # values landing on x*id+8.5 edges
    x[4, :32] = np.float32(-0.0)
    w.case("cpy", "cpy_f32_q4_0", [t_f32("src", x)],
           Tensor("expected", Q4_0, x.shape, quant_q4_0(x)[0]))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "golden"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for f in os.listdir(args.out):  # drop stale cases
        if f.endswith(".bin"):
            os.remove(os.path.join(args.out, f))
    w = Writer(args.out)
    for gen in (gen_get_rows, gen_binary, gen_rms_norm, gen_rope, gen_softmax, gen_silu_swiglu,
                gen_matmul, gen_flash_attn, gen_moe, gen_cross_entropy, gen_cpy, gen_set_rows):
        gen(w)
    print("wrote %d cases, %d bytes, to %s (numpy %s)"
          % (w.count, w.total, os.path.normpath(args.out), np.__version__))
    if w.total > 1_500_000:
        print("warning: goldens exceed 1.5 MB", file=sys.stderr)


if __name__ == "__main__":
    main()
