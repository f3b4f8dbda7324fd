/* parity/parity_cases_logits.c - softmax and flash attention on large
 * logits.
 *
 * The rest of the table keeps softmax inputs below |8| and attention scores
 * around N(0, 1): there exp() neither overflows nor underflows, so a kernel
 * that forgets to subtract the row maximum still passes (a Vulkan softmax
 * without it did). Real logits are not that tame: a confident head or an
 * LM-head row puts one score far above the rest. These cases use scaled
 * logits of |x| >= 30, in rows shaped to break each shortcut:
 *   0  one element at 95, the rest ~N(0, 1): exp(95) overflows f32;
 *   1  one element at 80, the rest near -80: a single element dominates;
 *   2  every element in [-120, -90]: exp() underflows to 0 (0/0);
 *   3  every element in [40, 100]: several overflow, and an exp clamped to
 *      its finite range would flatten them;
 *   4  uniform in [-100, 100].
 * Flash attention gets queries scaled so scale * q.k has a standard
 * deviation of 10 to 40 (scores beyond 100 in every head), across several
 * KV tiles so the running maximum must be rescaled. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "parity/parity_internal.h"

static loom_tensor *leaf_rows(parity_ctx *c, loom_graph *g, const int64_t ne[4], bool transposed) {
    if (transposed)
        return loom_transpose(g, parity_input(c, g, LOOM_F32, ne[1], ne[0], ne[2], ne[3]));
    return parity_input(c, g, LOOM_F32, ne[0], ne[1], ne[2], ne[3]);
}

/* The patterns above, row by row of the leaf; values are divided by the
 * softmax scale (kept in the leaf's name) so the SCALED logits have them. */
static void fill_large_logits(float *dst, int64_t n, const loom_tensor *t, uint64_t *rng) {
    const int64_t W = t->ne[0];
    const float inv_scale = strtof(t->name, NULL);
    for (int64_t r = 0; r * W < n; r++) {
        float *row = dst + r * W;
        const int64_t hot = (int64_t)(parity_rand_u64(rng) % (uint64_t)W);
        for (int64_t i = 0; i < W; i++) {
            const float u = parity_rand_uniform(rng);
            switch (r % 5) {
            case 0:
                row[i] = i == hot ? 95.0f : parity_rand_normal(rng);
                break;
            case 1:
                row[i] = i == hot ? 80.0f : -80.0f + parity_rand_normal(rng);
                break;
            case 2:
                row[i] = -120.0f + 30.0f * u;
                break;
            case 3:
                row[i] = 40.0f + 60.0f * u;
                break;
            default:
                row[i] = -100.0f + 200.0f * u;
                break;
            }
            row[i] *= inv_scale;
        }
    }
}

/* Large logits carry f32 rounding of |x| * 2^-24 in absolute terms, which
 * exp() turns into that much relative error per weight, whichever way the
 * maximum is subtracted: with |x| up to 120 after scaling that is 7e-6, an
 * NMSE of 5e-11 per rounding. Some tens of roundings per score (the scaled
 * product, flash attention's D-term dot product) and a tenfold margin give
 * the bound below (measured: 1e-11 at worst on cpu); a
 * kernel without max subtraction is off by O(1) or NaN. */
static double large_logit_tol(int64_t terms) {
    const double rel = 120.0 * ldexp(1.0, -24) * sqrt((double)(terms > 1 ? terms : 1));
    const double tol = 10.0 * rel * rel;
    return tol > 1e-10 ? tol : 1e-10;
}

/* n0..3 shape; f0 scale; i0 causal, i1 q_offset, i2 transposed leaf. */
static loom_tensor *b_softmax_large(parity_ctx *c, loom_graph *g, const parity_args *a) {
    loom_tensor *x = leaf_rows(c, g, a->n, a->i[2] != 0);
    loom_tensor *leaf = x->view_src ? x->view_src : x;
    loom_tensor_set_name(leaf, "%.9g", 1.0 / (double)a->f[0]); /* read by fill_large_logits */
    parity_fill_custom(c, x, fill_large_logits);
    parity_reduce(c, a->n[0]);
    parity_tolerance(c, large_logit_tol(4));
    return loom_softmax(g, x, a->f[0], a->i[0] != 0, a->i[1]);
}

/* n0 D, n1 Tq, n2 Tk, n3 Hq, n4 Hkv; t0 K/V dtype; i0 causal, i1 q_offset;
 * f0 standard deviation of the scaled scores (q ~ N(0, f0^2), k ~ N(0, 1),
 * scale 1/sqrt(D)). */
static loom_tensor *b_flash_attn_large(parity_ctx *c, loom_graph *g, const parity_args *a) {
    const int64_t D = a->n[0], Tq = a->n[1], Tk = a->n[2], Hq = a->n[3], Hkv = a->n[4];
    loom_tensor *q = parity_input(c, g, LOOM_F32, D, Tq, Hq, 1);
    loom_tensor *k = parity_input(c, g, a->t[0], D, Tk, Hkv, 1);
    loom_tensor *v = parity_input(c, g, a->t[0], D, Tk, Hkv, 1);
    parity_fill_normal(c, q, a->f[0]);
    parity_fill_normal(c, k, 1.0f);
    parity_tolerance(c, large_logit_tol(D));
    loom_tensor *out = loom_flash_attn(g, q, k, v, 1.0f / sqrtf((float)D), a->i[0] != 0, a->i[1]);
    parity_equiv(c, g, loom_decompose(g, out));
    return out;
}

void parity_cases_large_logits(parity_table *tb) {
    /* shape, scale, causal, q_offset, transposed */
    static const struct {
        int64_t n[4];
        float scale;
        int causal, qoff, transposed;
    } sm[] = {
        {{33, 10, 1, 1}, 1.0f, 0, 0, 0},   /* odd width: the cpu vector tail */
        {{64, 10, 2, 1}, 0.125f, 0, 0, 0}, /* raw logits up to 960, scaled */
        {{256, 5, 1, 1}, 1.0f, 1, 252, 0}, /* long causal rows */
        {{40, 10, 1, 1}, 1.0f, 0, 0, 1},   /* strided rows */
    };
    for (size_t i = 0; i < sizeof sm / sizeof sm[0]; i++) {
        parity_args a = {.f = {sm[i].scale}, .i = {sm[i].causal, sm[i].qoff, sm[i].transposed}};
        for (int d = 0; d < 4; d++)
            a.n[d] = sm[i].n[d];
        parity_table_add(tb, LOOM_OP_SOFTMAX, b_softmax_large, a,
                         "large logits [%lld,%lld,%lld,%lld]%s scale=%g%s q_offset=%d",
                         (long long)a.n[0], (long long)a.n[1], (long long)a.n[2], (long long)a.n[3],
                         sm[i].transposed ? "T" : "c", (double)sm[i].scale,
                         sm[i].causal ? " causal" : "", sm[i].qoff);
    }
    /* D, Tq, Tk, Hq, Hkv, kv dtype, causal, q_offset, score std */
    static const struct {
        int64_t n[5];
        loom_dtype kv;
        int causal, qoff;
        float sd;
    } fa[] = {
        {{64, 7, 100, 4, 2}, LOOM_F32, 1, 93, 40.0f}, /* chunked prefill over 100 keys */
        {{128, 1, 80, 8, 1}, LOOM_F16, 1, 79, 40.0f}, /* decode, GQA 8 */
        {{64, 16, 16, 2, 2}, LOOM_F32, 0, 0, 10.0f},  /* non-causal, scores ~30 */
        {{64, 33, 33, 4, 1}, LOOM_F16, 1, 0, 25.0f},  /* causal prefill */
    };
    for (size_t i = 0; i < sizeof fa / sizeof fa[0]; i++) {
        parity_args a = {.t = {fa[i].kv}, .i = {fa[i].causal, fa[i].qoff}, .f = {fa[i].sd}};
        for (int d = 0; d < 5; d++)
            a.n[d] = fa[i].n[d];
        parity_table_add(tb, LOOM_OP_FLASH_ATTN, b_flash_attn_large, a,
                         "large scores (sd %g) D=%lld Tq=%lld Tk=%lld Hq=%lld Hkv=%lld kv=%s%s "
                         "q_offset=%d",
                         (double)fa[i].sd, (long long)a.n[0], (long long)a.n[1], (long long)a.n[2],
                         (long long)a.n[3], (long long)a.n[4], loom_dtype_name(fa[i].kv),
                         fa[i].causal ? " causal" : "", fa[i].qoff);
    }
}
