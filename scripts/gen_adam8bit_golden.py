#!/usr/bin/env python3
"""Golden states for loom's 8-bit AdamW (train/adam8bit.c), from numpy.

An independent replay of bitsandbytes' 8-bit block-wise Adam (Optimizer2State
with optim_bits=8, block_wise=True; the CUDA kernel
kOptimizerStatic8bit2StateBlockwise), written from bitsandbytes' source, not
from loom's C:
  - state1 (m) on create_dynamic_map(signed=True), state2 (v) on
    create_dynamic_map(signed=False), both built here with torch.linspace's
    float32 formula; blocks of 256, one absmax per block and state, fresh
    states = uint8 zeros + absmax zeros;
  - per step: dequantize, m = m*b1 + (1-b1)*g, v = v*b2 + (1-b2)*g*g,
    p += (-lr*c2/c1) * m/(sqrt(v) + c2*eps), p *= 1 - lr*wd, new absmax =
    max|state| of the block, codes = nearest map entry (argmin |x - code|, the
    first on ties), and a momentum code with the wrong sign moves one step.
Everything is float32 in the kernel's order of operations; the bias
corrections are computed in float64 and rounded (loom does the same).

Usage: python3 scripts/gen_adam8bit_golden.py [OUT]   (numpy only)
default OUT: tests/train/data/adam8bit_golden.bin

File (little-endian): "LA8GOLD1", u32 n, u32 steps, f32 lr b1 b2 eps wd,
f32 umap[256], f32 p0[n], then per step: f32 grad[n], and after the step
f32 p[n], u8 m_code[n], u8 v_code[n], f32 m_absmax[nb], f32 v_absmax[nb].
"""
import os
import struct
import sys

import numpy as np

f32 = np.float32
BLOCK = 256


def torch_linspace_f32(start, end, steps):
    start, end = f32(start), f32(end)
    step = (end - start) / f32(steps - 1)
    half = steps // 2
    out = np.empty(steps, dtype=f32)
    for j in range(steps):
        out[j] = start + step * f32(j) if j < half else end - step * f32(steps - 1 - j)
    return out


def create_dynamic_map(signed, max_exponent_bits=7, total_bits=8):
    data = []
    non_sign_bits = total_bits - 1
    for i in range(max_exponent_bits):
        items = 2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed else \
            2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1
        b = torch_linspace_f32(0.1, 1, items)
        means = (b[:-1] + b[1:]) / f32(2.0)
        scale = f32(10.0 ** (-(max_exponent_bits - 1) + i))
        data += list(scale * means)
        if signed:
            data += list(-scale * means)
    data += [f32(0.0), f32(1.0)]
    assert len(data) == 256
    return np.array(sorted(data), dtype=f32)


def quantize(code, x, keep_sign):
    # argmin |x - code| on float64 values picks the first minimum: ties low.
    d = np.abs(x.astype(np.float64)[:, None] - code.astype(np.float64)[None, :])
    c = np.argmin(d, axis=1)
    if keep_sign:
        wrong = np.signbit(code[c]) != np.signbit(x)
        c = np.where(wrong, np.where(x > 0, c + 1, c - 1), c)
    return c.astype(np.uint8)


def step8(p, g, st, t, hp, smap, umap):
    lr, b1, b2, eps, wd = (f32(v) for v in hp)
    c1 = f32(1.0 - np.float64(b1) ** t)
    c2 = f32(np.sqrt(1.0 - np.float64(b2) ** t))
    step_size = (-lr * c2) / c1
    n = p.size
    for b0 in range(0, n, BLOCK):
        sl = slice(b0, min(n, b0 + BLOCK))
        bi = b0 // BLOCK
        m = smap[st["m"][sl]] * st["am"][bi]
        v = umap[st["v"][sl]] * st["av"][bi]
        gg = g[sl]
        m = m * b1 + (f32(1) - b1) * gg
        v = v * b2 + ((f32(1) - b2) * gg) * gg
        q = p[sl] + step_size * (m / (np.sqrt(v) + c2 * eps))
        if wd > 0:
            q = q * (f32(1) - lr * wd)
        p[sl] = q
        am, av = f32(np.max(np.abs(m))), f32(np.max(np.abs(v)))
        st["am"][bi], st["av"][bi] = am, av
        if am == 0:
            st["m"][sl] = quantize(smap, np.zeros(1, f32), False)[0]
        else:
            st["m"][sl] = quantize(smap, m / am, True)
        if av == 0:
            st["v"][sl] = 0
        else:
            st["v"][sl] = quantize(umap, v / av, False)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "tests", "train", "data", "adam8bit_golden.bin")
    rng = np.random.default_rng(20261206)
    n, steps = 1000, 6  # 4 blocks, the last 232 long
    hp = (1e-3, 0.9, 0.999, 1e-8, 0.01)
    smap, umap = create_dynamic_map(True), create_dynamic_map(False)
    p = rng.standard_normal(n).astype(f32)
    # Per-block gradient scales 1, 1e-4 and 30, with exact zeros in the last
    # block's first 40 entries, so tiny, large and zero states all occur.
    scale = np.ones(n, dtype=f32)
    scale[256:512] = 1e-4
    scale[512:768] = 30
    st = {"m": np.zeros(n, np.uint8), "v": np.zeros(n, np.uint8),
          "am": np.zeros((n + BLOCK - 1) // BLOCK, f32), "av": np.zeros((n + BLOCK - 1) // BLOCK, f32)}
    buf = bytearray(b"LA8GOLD1")
    buf += struct.pack("<II", n, steps) + np.array(hp, dtype="<f4").tobytes()
    buf += umap.astype("<f4").tobytes() + p.astype("<f4").tobytes()
    for t in range(1, steps + 1):
        g = (rng.standard_normal(n).astype(f32) * scale).astype(f32)
        g[768:808] = 0
        # Momenta far below the block's absmax quantize to the map's 0; the
        # negative ones exercise the keep-the-sign rule.
        g[100:110] = f32(1e-9) * np.where(np.arange(10) % 2 == 0, f32(-1), f32(1))
        step8(p, g, st, t, hp, smap, umap)
        buf += g.astype("<f4").tobytes() + p.astype("<f4").tobytes()
        buf += st["m"].tobytes() + st["v"].tobytes()
        buf += st["am"].astype("<f4").tobytes() + st["av"].astype("<f4").tobytes()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as f:
        f.write(bytes(buf))
    print(f"wrote {out}: n={n} steps={steps} ({len(buf)} bytes)")


if __name__ == "__main__":
    main()
