/* kernels/ref/ref_act8.c - the oracle for int8-activation matmuls (ADR 0036).
 *
 * The cpu backend's decode kernels quantize each activation row to int8 per
 * 32 values (loom_act8_quantize_row, shared with them so both sides see the
 * same bytes) and compute each weight block's dot in integers. This file
 * does the same arithmetic the plain way: every 32-value weight block is
 * described as integer codes c[32], a scale per 16 values and a min
 * (value = sc[l / 16] * c[l] + mn, exactly the float value
 * loom_dequantize_row gives), the block dot is sum(c * q) in integers, and
 * the per-block terms sc * d_x * isum + mn * d_x * sum(q) are summed in
 * double. So the SIMD kernels must agree with it up to f32 summation order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ref/ref_ops.h"
#include "loom/backend_sdk.h"

void loom_act8_quantize_row(const float *x, int64_t k, int8_t *q, float *d, int32_t *s) {
    for (int64_t b = 0; b < k / LOOM_ACT8_QK; b++) {
        const float *xb = x + b * LOOM_ACT8_QK;
        float amax = 0.0f;
        for (int l = 0; l < LOOM_ACT8_QK; l++)
            amax = fmaxf(amax, fabsf(xb[l]));
        float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        /* amax below ~3.7e-37: 1 / db overflows and (int)roundf(x * inf) is
         * undefined in C; such a block is a zero block (ggml leaves it UB) */
        if (isinf(id)) db = 0.0f, id = 0.0f;
        int32_t sum = 0;
        for (int l = 0; l < LOOM_ACT8_QK; l++) {
            const int v = (int)roundf(xb[l] * id);
            q[b * LOOM_ACT8_QK + l] = (int8_t)v;
            sum += v;
        }
        d[b] = db;
        s[b] = sum;
    }
}

static bool act8_weight_type(loom_dtype t) {
    return t == LOOM_Q4_0 || t == LOOM_Q4_1 || t == LOOM_Q5_0 || t == LOOM_Q5_1 || t == LOOM_Q8_0 ||
           t == LOOM_Q4_K || t == LOOM_Q6_K;
}

bool loom_ref_act8_applies(const loom_tensor *node) {
    if (!node || node->op != LOOM_OP_MATMUL || node->dtype != LOOM_F32) return false;
    if (node->flags & LOOM_FLAG_F32_ACT) return false; /* the output head, ADR 0036 add. 3 */
    const loom_tensor *w = node->src[0], *x = node->src[1];
    if (!w || !x || !act8_weight_type(w->dtype) || x->dtype != LOOM_F32) return false;
    if (!loom_ref_supports(node) || !loom_tensor_is_contiguous(node)) return false;
    const int64_t K = w->ne[0];
    /* any number of rows: the cpu's decode and prefill share one int8
     * microkernel (ADR 0043), so rounding does not depend on chunking */
    if (K <= 0 || x->ne[0] != K || x->nb[0] != sizeof(float)) return false;
    if (w->ne[2] <= 0 || w->ne[3] <= 0 || x->ne[2] % w->ne[2] || x->ne[3] % w->ne[3]) return false;
    return K % loom_dtype_block_size(w->dtype) == 0 && w->nb[0] == loom_dtype_block_bytes(w->dtype);
}

static float act8_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return loom_f16_to_f32(h);
}

/* 32-value weight block b of a row as codes, two half scales and a min. */
static void act8_wblock(loom_dtype t, const uint8_t *row, int64_t b, int c[32], float sc[2],
                        float *mn) {
    *mn = 0.0f;
    switch (t) {
    case LOOM_Q8_0: {
        const uint8_t *p = row + b * 34;
        sc[0] = sc[1] = act8_f16(p);
        for (int l = 0; l < 32; l++)
            c[l] = ((const int8_t *)(p + 2))[l];
        return;
    }
    case LOOM_Q4_0:
    case LOOM_Q4_1:
    case LOOM_Q5_0:
    case LOOM_Q5_1: {
        const bool m = t == LOOM_Q4_1 || t == LOOM_Q5_1, five = t == LOOM_Q5_0 || t == LOOM_Q5_1;
        const int bytes = t == LOOM_Q4_0 ? 18 : t == LOOM_Q4_1 ? 20 : t == LOOM_Q5_0 ? 22 : 24;
        const uint8_t *p = row + b * bytes, *qs = p + (m ? 4 : 2) + (five ? 4 : 0);
        uint32_t qh = 0;
        if (five) memcpy(&qh, p + (m ? 4 : 2), 4);
        const int off = m ? 0 : five ? 16 : 8;
        sc[0] = sc[1] = act8_f16(p);
        if (m) *mn = act8_f16(p + 2);
        for (int l = 0; l < 32; l++) {
            int n = l < 16 ? qs[l] & 15 : qs[l - 16] >> 4;
            if (five) n |= (int)((qh >> l) & 1) << 4;
            c[l] = n - off;
        }
        return;
    }
    case LOOM_Q4_K: { /* sub-block j of super-block b / 8 */
        const uint8_t *p = row + (b / 8) * 144, *scs = p + 4;
        const int j = (int)(b % 8);
        int s, mm;
        if (j < 4) {
            s = scs[j] & 63;
            mm = scs[j + 4] & 63;
        } else {
            s = (scs[j + 4] & 0xF) | ((scs[j - 4] >> 6) << 4);
            mm = (scs[j + 4] >> 4) | ((scs[j] >> 6) << 4);
        }
        const float d1 = act8_f16(p) * (float)s, m1 = act8_f16(p + 2) * (float)mm;
        sc[0] = sc[1] = d1;
        *mn = -m1;
        const uint8_t *q = p + 16 + 32 * (j / 2);
        for (int l = 0; l < 32; l++)
            c[l] = (q[l] >> (4 * (j % 2))) & 0xF;
        return;
    }
    default: { /* q6_K: 32-value run c of half h of super-block b / 8 */
        const uint8_t *p = row + (b / 8) * 210;
        const int j = (int)(b % 8), h = j / 4, cc = j % 4;
        const int8_t *scs = (const int8_t *)(p + 192);
        const float d = act8_f16(p + 208);
        sc[0] = d * (float)scs[8 * h + 2 * cc];
        sc[1] = d * (float)scs[8 * h + 2 * cc + 1];
        const uint8_t *lo = p + 64 * h + 32 * (cc & 1), *hi = p + 128 + 32 * h;
        for (int l = 0; l < 32; l++)
            c[l] = (((lo[l] >> (4 * (cc >> 1))) & 0xF) | (((hi[l] >> (2 * cc)) & 3) << 4)) - 32;
        return;
    }
    }
}

/* One weight row (K values) . one quantized activation row. */
static double act8_dot(loom_dtype t, const uint8_t *row, const int8_t *q, const float *d,
                       const int32_t *s, int64_t K) {
    double acc = 0.0;
    int c[32];
    for (int64_t b = 0; b < K / LOOM_ACT8_QK; b++) {
        float sc[2], mn;
        act8_wblock(t, row, b, c, sc, &mn);
        int32_t i0 = 0, i1 = 0;
        for (int l = 0; l < 16; l++) {
            i0 += c[l] * q[b * 32 + l];
            i1 += c[l + 16] * q[b * 32 + 16 + l];
        }
        acc += (double)d[b] * ((double)sc[0] * i0 + (double)sc[1] * i1 + (double)mn * s[b]);
    }
    return acc;
}

static loom_status act8_matmul(const loom_ref_ctx *c) {
    const loom_tensor *out = c->node, *w = out->src[0], *x = out->src[1];
    const int64_t K = w->ne[0], N = w->ne[1], M = x->ne[1], X2 = x->ne[2], X3 = x->ne[3];
    const int64_t r2 = X2 / w->ne[2], r3 = X3 / w->ne[3], nb = K / LOOM_ACT8_QK;
    int64_t lo, hi;
    loom_ref_range(c, N * X2 * X3, &lo, &hi);
    if (lo >= hi || M == 0) return LOOM_OK;
    float *xf = malloc((size_t)K * sizeof(float));
    int8_t *q = malloc((size_t)(M * K));
    float *d = malloc((size_t)(M * nb) * sizeof(float));
    int32_t *s = malloc((size_t)(M * nb) * sizeof(int32_t));
    if (!xf || !q || !d || !s) {
        free(xf);
        free(q);
        free(d);
        free(s);
        return loom_ref_fail(c, LOOM_ERR_OOM, "matmul: out of memory for scratch");
    }
    for (int64_t r = lo; r < hi;) {
        const int64_t slice = r / N, i2 = slice % X2, i3 = slice / X2;
        const int64_t end = (slice + 1) * N < hi ? (slice + 1) * N : hi;
        for (int64_t m = 0; m < M; m++) {
            for (int64_t k = 0; k < K; k++)
                xf[k] = loom_ref_get_f32(x, k, m, i2, i3);
            loom_act8_quantize_row(xf, K, q + m * K, d + m * nb, s + m * nb);
        }
        for (int64_t n = r - slice * N; n < end - slice * N; n++) {
            const uint8_t *row = loom_ref_ptr(w, 0, n, i2 / r2, i3 / r3);
            for (int64_t m = 0; m < M; m++)
                *(float *)loom_ref_ptr(out, n, m, i2, i3) =
                    (float)act8_dot(w->dtype, row, q + m * K, d + m * nb, s + m * nb, K);
        }
        r = end;
    }
    free(xf);
    free(q);
    free(d);
    free(s);
    return LOOM_OK;
}

loom_status loom_ref_compute_act8(const loom_tensor *node, int ith, int nth, char *err,
                                  size_t err_n) {
    if (!loom_ref_act8_applies(node)) return loom_ref_compute(node, ith, nth, err, err_n);
    if (err && err_n > 0) err[0] = '\0';
    const loom_ref_ctx c = {node, ith, nth, err, err_n};
    if (nth < 1 || ith < 0 || ith >= nth)
        return loom_ref_fail(&c, LOOM_ERR_INVALID_ARG, "ref: bad thread split ith=%d nth=%d", ith,
                             nth);
    return act8_matmul(&c);
}
