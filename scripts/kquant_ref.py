#!/usr/bin/env python3
"""An independent numpy model of ggml's reference k-quant quantizers (no importance matrix).

quantize(type_name, x) turns float32 values (a multiple of 256) into the raw GGUF blocks of
q2_K, q3_K, q4_K, q5_K or q6_K, following quantize_row_q{2,3,4,5,6}_K_ref and their helpers
make_qx_quants / make_q3_quants / make_qkx2_quants in llama.cpp's ggml/src/ggml-quants.c,
written from that algorithm (docs/adr/0039-k-quant-mixes.md), not from loom's C.

Every float operation is float32 and runs in the order of ggml's scalar loops (sums over a
sub-block are accumulated one value at a time), rounding is half-to-even (np.rint, as ggml's
nearest_int), and conversions to fp16 round to nearest even, so a C build without FMA
contraction produces the same bytes; scripts/check_kquant.py --quant-ref compares loom's
quantizers with this module byte for byte (ctest gguf_kquant_quant_ref). Blocks are processed
together: each step below is vectorised over all sub-blocks of all super-blocks.
"""
import numpy as np

F = np.float32
EPS = F(1e-15)  # ggml's GROUP_MAX_EPS
QK_K = 256
BLOCK_BYTES = {"q2_K": 84, "q3_K": 110, "q4_K": 144, "q5_K": 176, "q6_K": 210}


def nearest(v):
    """ggml's nearest_int: round half to even (values far outside the clamps are capped)."""
    r = np.rint(np.asarray(v, dtype=F))
    r = np.where(np.isnan(r), F(0), r)
    return np.clip(r, -1e9, 1e9).astype(np.int64)


def f16(v):
    """fp32 -> fp16 bits (round to nearest even) and the fp32 value they hold."""
    h = np.asarray(v, dtype=F).astype(np.float16)
    return h.view(np.uint16), h.astype(F)


def first_absmax(x):
    """Per row: the value of largest magnitude (the first one on ties) and that magnitude."""
    idx = np.argmax(np.abs(x), axis=1)
    v = x[np.arange(x.shape[0]), idx]
    return v, np.abs(v)


def running_max(v):
    """ggml's `if (v > m) m = v` from m = 0 over each row (so -0.0 never wins over 0)."""
    m = np.zeros(v.shape[0], F)
    for j in range(v.shape[1]):
        m = np.where(v[:, j] > m, v[:, j], m)
    return m


def make_qx(x, nmax):
    """make_qx_quants, rmse_type 1 (weights x^2): rows of x -> (scale, levels + nmax)."""
    g, n = x.shape
    mx, amax = first_absmax(x)
    zero = ~(amax >= EPS)
    mx = np.where(zero, F(1), mx)
    w = x * x

    def levels(iscale):
        return np.clip(nearest(iscale[:, None] * x), -nmax, nmax - 1)

    def sums(lv):
        lf = lv.astype(F)
        slx = np.zeros(g, F)
        sl2 = np.zeros(g, F)
        for i in range(n):
            slx = slx + w[:, i] * x[:, i] * lf[:, i]
            sl2 = sl2 + w[:, i] * lf[:, i] * lf[:, i]
        return slx, sl2

    iscale = F(-nmax) / mx
    lv = levels(iscale)
    sumlx, suml2 = sums(lv)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(suml2 != 0, sumlx / suml2, F(0)).astype(F)
    best = scale * sumlx
    L = lv + nmax
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = -(F(nmax) + F(0.1) * F(step)) / mx
        lv = levels(iscale)
        sumlx, suml2 = sums(lv)
        take = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        L = np.where(take[:, None], lv + nmax, L)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(take, sumlx / suml2, scale).astype(F)
        best = np.where(take, scale * sumlx, best).astype(F)
    L = np.where(zero[:, None], 0, L)
    scale = np.where(zero, F(0), scale).astype(F)
    return scale, L


def make_q3(x, nmax):
    """make_q3_quants with do_rmse: rows of x -> (scale, levels + nmax)."""
    g, n = x.shape
    mx, amax = first_absmax(x)
    zero = ~(amax >= EPS)
    mx = np.where(zero, F(1), mx)
    iscale = F(-nmax) / mx
    lv = np.clip(nearest(iscale[:, None] * x), -nmax, nmax - 1)
    sumlx = np.zeros(g, F)
    suml2 = np.zeros(g, F)
    for i in range(n):
        w = x[:, i] * x[:, i]
        lf = lv[:, i].astype(F)
        sumlx = sumlx + w * x[:, i] * lf
        suml2 = suml2 + w * lf * lf
    done = np.zeros(g, bool)
    for _ in range(5):
        changed = np.zeros(g, np.int64)
        for i in range(n):
            xi = x[:, i]
            w = xi * xi
            lf = lv[:, i].astype(F)
            slx = sumlx - w * xi * lf
            c1 = slx > 0
            sl2 = suml2 - w * lf * lf
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                q = np.where(c1, xi * sl2 / np.where(c1, slx, F(1)), F(0))
            nl = np.clip(nearest(q), -nmax, nmax - 1)
            nlf = nl.astype(F)
            slx2 = slx + w * xi * nlf
            sl22 = sl2 + w * nlf * nlf
            take = c1 & (nl != lv[:, i]) & (sl22 > 0) & \
                (slx2 * slx2 * suml2 > sumlx * sumlx * sl22) & ~done
            lv[:, i] = np.where(take, nl, lv[:, i])
            sumlx = np.where(take, slx2, sumlx)
            suml2 = np.where(take, sl22, suml2)
            changed += take
        done |= changed == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(suml2 > 0, sumlx / suml2, F(0)).astype(F)
    L = np.where(zero[:, None], 0, lv + nmax)
    return np.where(zero, F(0), scale).astype(F), L


def make_qkx(x, w, nmax, rmin, rdelta, nstep, use_mad):
    """make_qkx2_quants: rows of x, weights w -> (scale, the_min >= 0, levels 0..nmax)."""
    g, n = x.shape
    mn = x[:, 0].copy()
    mxv = x[:, 0].copy()
    sum_w = w[:, 0].copy()
    sum_x = w[:, 0] * x[:, 0]
    for i in range(1, n):
        mn = np.where(x[:, i] < mn, x[:, i], mn)
        mxv = np.where(x[:, i] > mxv, x[:, i], mxv)
        sum_w = sum_w + w[:, i]
        sum_x = sum_x + w[:, i] * x[:, i]
    mn = np.where(mn > 0, F(0), mn).astype(F)
    flat = mxv == mn
    rng = np.where(flat, F(1), mxv - mn).astype(F)

    def err(scale, lv, mn_):
        lf = lv.astype(F)
        e = np.zeros(g, F)
        for i in range(n):
            d = scale * lf[:, i] + mn_ - x[:, i]
            e = e + w[:, i] * (np.abs(d) if use_mad else d * d)
        return e

    iscale = F(nmax) / rng
    scale = F(1) / iscale
    L = np.clip(nearest(iscale[:, None] * (x - mn[:, None])), 0, nmax)
    best = err(scale, L, mn)
    for step in range(nstep + 1):
        # ggml moves min to each better fit, and later candidates start from it
        rng = np.where(flat, F(1), mxv - mn).astype(F)
        iscale = (F(rmin) + F(rdelta) * F(step) + F(nmax)) / rng
        la = np.clip(nearest(iscale[:, None] * (x - mn[:, None])), 0, nmax)
        lf = la.astype(F)
        s_l = np.zeros(g, F)
        s_l2 = np.zeros(g, F)
        s_xl = np.zeros(g, F)
        for i in range(n):
            s_l = s_l + w[:, i] * lf[:, i]
            s_l2 = s_l2 + w[:, i] * lf[:, i] * lf[:, i]
            s_xl = s_xl + w[:, i] * lf[:, i] * x[:, i]
        D = sum_w * s_l2 - s_l * s_l
        ok = D > 0
        Ds = np.where(ok, D, F(1))
        t_scale = (sum_w * s_xl - sum_x * s_l) / Ds
        t_min = (s_l2 * sum_x - s_l * s_xl) / Ds
        pos = t_min > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            t_scale = np.where(pos, s_xl / s_l2, t_scale).astype(F)
        t_min = np.where(pos, F(0), t_min).astype(F)
        cur = err(t_scale, la, t_min)
        take = ok & (cur < best) & ~flat
        L = np.where(take[:, None], la, L)
        best = np.where(take, cur, best)
        scale = np.where(take, t_scale, scale).astype(F)
        mn = np.where(take, t_min, mn).astype(F)
    L = np.where(flat[:, None], 0, L)
    scale = np.where(flat, F(0), scale).astype(F)
    return scale, -mn, L


def pack2(L):
    """Four 2-bit levels per byte: qs[32 h + l] holds L[128 h + 32 s + l] at bits 2s."""
    nb = L.shape[0]
    q = L.reshape(nb, 2, 4, 32).astype(np.uint8)
    return (q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)).reshape(nb, 64)


def pack4(L):
    """Two nibbles per byte: qs[32 c + l] = L[64 c + l] | L[64 c + 32 + l] << 4."""
    nb = L.shape[0]
    q = (L & 0xF).reshape(nb, 4, 2, 32).astype(np.uint8)
    return (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(nb, 128)


def high_bits(L, bit):
    """Bit `bit` of value v set -> bit v // 32 of byte v % 32."""
    nb = L.shape[0]
    hb = ((L >> bit) & 1).reshape(nb, 8, 32).astype(np.uint16)
    return (hb << np.arange(8, dtype=np.uint16)[None, :, None]).sum(axis=1).astype(np.uint8)


def q2_K(x):
    nb = x.shape[0]
    xs = x.reshape(nb * 16, 16)
    scales, mins, L = make_qkx(xs, np.abs(xs), 3, -0.5, 0.1, 15, True)
    scales = scales.reshape(nb, 16)
    mins = mins.reshape(nb, 16)
    L = L.reshape(nb, 256)
    max_scale = running_max(scales)
    max_min = running_max(mins)
    hs = max_scale > 0
    hm = max_min > 0
    with np.errstate(divide="ignore"):
        isc = np.where(hs, F(15) / max_scale, F(0)).astype(F)
        imn = np.where(hm, F(15) / max_min, F(0)).astype(F)
    sc = np.where(hs[:, None], nearest(isc[:, None] * scales) & 0xFF, 0)
    sc = sc | np.where(hm[:, None], (nearest(imn[:, None] * mins) << 4) & 0xFF, 0)
    dh, dv = f16(np.where(hs, max_scale / F(15), F(0)))
    mh, mv = f16(np.where(hm, max_min / F(15), F(0)))
    d = dv[:, None] * (sc & 0xF).astype(F)
    dm = mv[:, None] * (sc >> 4).astype(F)
    d = np.repeat(d, 16, axis=1)
    dm = np.repeat(dm, 16, axis=1)
    live = d != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        Lr = np.clip(nearest(np.where(live, (x + dm) / np.where(live, d, F(1)), F(0))), 0, 3)
    L = np.where(live, Lr, L)
    out = np.zeros((nb, 84), np.uint8)
    out[:, 0:16] = sc.astype(np.uint8)
    out[:, 16:80] = pack2(L)
    out[:, 80:82] = dh.view(np.uint8).reshape(nb, 2)
    out[:, 82:84] = mh.view(np.uint8).reshape(nb, 2)
    return out


def q3_K(x):
    nb = x.shape[0]
    scales, L = make_q3(x.reshape(nb * 16, 16), 4)
    scales = scales.reshape(nb, 16)
    L = L.reshape(nb, 256)
    max_scale, _ = first_absmax(scales)
    live_b = max_scale != 0
    with np.errstate(divide="ignore"):
        iscale = np.where(live_b, F(-32) / np.where(live_b, max_scale, F(1)), F(0)).astype(F)
    li = nearest(iscale[:, None] * scales)
    li = ((li + 128) & 0xFF) - 128  # stored through int8_t
    li = np.where(live_b[:, None], np.clip(li, -32, 31) + 32, 0)
    s12 = np.zeros((nb, 12), np.int64)
    for j in range(16):
        if j < 8:
            s12[:, j] |= li[:, j] & 0xF
        else:
            s12[:, j - 8] |= (li[:, j] & 0xF) << 4
        s12[:, 8 + j % 4] |= (li[:, j] >> 4) << (2 * (j // 4))
    with np.errstate(divide="ignore"):
        dh, dv = f16(np.where(live_b, F(1) / np.where(live_b, iscale, F(1)), F(0)))
    sc = np.where(live_b[:, None], li - 32, 0)
    d = np.repeat(dv[:, None] * sc.astype(F), 16, axis=1)
    live = d != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        Lr = np.clip(nearest(np.where(live, x / np.where(live, d, F(1)), F(0))), -4, 3) + 4
    L = np.where(live, Lr, L)
    hmask = high_bits(L, 2)
    L = np.where(L > 3, L - 4, L)
    out = np.zeros((nb, 110), np.uint8)
    out[:, 0:32] = hmask
    out[:, 32:96] = pack2(L)
    out[:, 96:108] = s12.astype(np.uint8)
    out[:, 108:110] = dh.view(np.uint8).reshape(nb, 2)
    return out


def scale_min_32(x, nmax, rmin, nstep):
    """q4_K / q5_K: -> (12 packed scale bytes, d bits, dmin bits, levels 0..nmax)."""
    nb = x.shape[0]
    xs = x.reshape(nb * 8, 32)
    s = np.zeros(nb * 8, F)
    for i in range(32):
        s = s + xs[:, i] * xs[:, i]
    av = np.sqrt(s / F(32))
    w = av[:, None] + np.abs(xs)
    scales, mins, L = make_qkx(xs, w, nmax, rmin, 0.1, nstep, False)
    scales = scales.reshape(nb, 8)
    mins = mins.reshape(nb, 8)
    L = L.reshape(nb, 256)
    max_scale = running_max(scales)
    max_min = running_max(mins)
    with np.errstate(divide="ignore"):
        inv_s = np.where(max_scale > 0, F(63) / max_scale, F(0)).astype(F)
        inv_m = np.where(max_min > 0, F(63) / max_min, F(0)).astype(F)
    ls = np.minimum(63, nearest(inv_s[:, None] * scales) & 0xFF)  # through uint8_t
    lm = np.minimum(63, nearest(inv_m[:, None] * mins) & 0xFF)
    s12 = np.zeros((nb, 12), np.int64)
    for j in range(8):
        if j < 4:
            s12[:, j] |= ls[:, j]
            s12[:, j + 4] |= lm[:, j]
        else:
            s12[:, j + 4] |= (ls[:, j] & 0xF) | ((lm[:, j] & 0xF) << 4)
            s12[:, j - 4] |= (ls[:, j] >> 4) << 6
            s12[:, j] |= (lm[:, j] >> 4) << 6
    dh, dv = f16(max_scale / F(63))
    mh, mv = f16(max_min / F(63))
    d = np.repeat(dv[:, None] * ls.astype(F), 32, axis=1)
    dm = np.repeat(mv[:, None] * lm.astype(F), 32, axis=1)
    live = d != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        Lr = np.clip(nearest(np.where(live, (x + dm) / np.where(live, d, F(1)), F(0))), 0, nmax)
    L = np.where(live, Lr, L)
    return s12.astype(np.uint8), dh, mh, L


def q4_K(x):
    nb = x.shape[0]
    s12, dh, mh, L = scale_min_32(x, 15, -1.0, 20)
    out = np.zeros((nb, 144), np.uint8)
    out[:, 0:2] = dh.view(np.uint8).reshape(nb, 2)
    out[:, 2:4] = mh.view(np.uint8).reshape(nb, 2)
    out[:, 4:16] = s12
    out[:, 16:144] = pack4(L)
    return out


def q5_K(x):
    nb = x.shape[0]
    s12, dh, mh, L = scale_min_32(x, 31, -0.5, 15)
    out = np.zeros((nb, 176), np.uint8)
    out[:, 0:2] = dh.view(np.uint8).reshape(nb, 2)
    out[:, 2:4] = mh.view(np.uint8).reshape(nb, 2)
    out[:, 4:16] = s12
    out[:, 16:48] = high_bits(L, 4)
    out[:, 48:176] = pack4(L)
    return out


def q6_K(x):
    nb = x.shape[0]
    scales, L = make_qx(x.reshape(nb * 16, 16), 32)
    scales = scales.reshape(nb, 16)
    L = L.reshape(nb, 256)
    max_scale, max_abs = first_absmax(scales)
    live_b = max_abs >= EPS
    ms = np.where(live_b, max_scale, F(1))
    iscale = F(-128) / ms
    dh, dv = f16(np.where(live_b, F(1) / iscale, F(0)))
    sc = np.clip(nearest(iscale[:, None] * scales), -128, 127)
    d = np.repeat(dv[:, None] * sc.astype(F), 16, axis=1)
    live = d != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        Lr = np.clip(nearest(np.where(live, x / np.where(live, d, F(1)), F(0))), -32, 31) + 32
    L = np.where(live, Lr, L)
    q = L.reshape(nb, 2, 4, 32)
    ql = np.concatenate([(q[:, :, 0] & 0xF) | ((q[:, :, 2] & 0xF) << 4),
                         (q[:, :, 1] & 0xF) | ((q[:, :, 3] & 0xF) << 4)], axis=2)
    qh = (q[:, :, 0] >> 4) | ((q[:, :, 1] >> 4) << 2) | ((q[:, :, 2] >> 4) << 4) | \
        ((q[:, :, 3] >> 4) << 6)
    out = np.zeros((nb, 210), np.uint8)
    out[:, 0:128] = ql.reshape(nb, 128).astype(np.uint8)
    out[:, 128:192] = qh.reshape(nb, 64).astype(np.uint8)
    out[:, 192:208] = sc.astype(np.int8).view(np.uint8)
    out[:, 208:210] = dh.view(np.uint8).reshape(nb, 2)
    out[~live_b] = 0  # an all-zero super-block: every byte 0
    return out


QUANTIZERS = {"q2_K": q2_K, "q3_K": q3_K, "q4_K": q4_K, "q5_K": q5_K, "q6_K": q6_K}


def quantize(type_name, x):
    """float32 values (a multiple of 256) -> the raw bytes of type_name's blocks."""
    x = np.ascontiguousarray(x, dtype=F).reshape(-1, QK_K)
    return QUANTIZERS[type_name](x).reshape(-1)
