/* parity/parity_cases.c - the case table of the parity suite.
 *
 * One builder per op family; parity_cases_make() enumerates the parameter
 * grid (dtypes x shapes x layouts). Shapes are small but include odd sizes,
 * strided views, broadcasting and the attention/MoE configurations the
 * models use, so several hundred cases run in seconds. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parity/parity_internal.h"

/* ---------------- builder helpers ---------------- */

/* Leaf of extents ne in a given layout:
 *   0 contiguous,
 *   1 transposed storage (a view swapping dims 0 and 1),
 *   2 permuted storage (dims 0, 1, 2 cycled). */
static loom_tensor *leaf_layout(parity_ctx *c, loom_graph *g, loom_dtype t, const int64_t ne[4],
                                int layout) {
    if (layout == 1) {
        loom_tensor *l = parity_input(c, g, t, ne[1], ne[0], ne[2], ne[3]);
        return loom_transpose(g, l);
    }
    if (layout == 2) {
        loom_tensor *l = parity_input(c, g, t, ne[1], ne[2], ne[0], ne[3]);
        return loom_permute(g, l, 1, 2, 0, 3);
    }
    return parity_input(c, g, t, ne[0], ne[1], ne[2], ne[3]);
}

static loom_tensor *leaf4(parity_ctx *c, loom_graph *g, loom_dtype t, int64_t a, int64_t b,
                          int64_t cc, int64_t d) {
    return parity_input(c, g, t, a, b, cc, d);
}

static int64_t max64(int64_t a, int64_t b) {
    return a > b ? a : b;
}

/* ---------------- builders ----------------
 * Each comment lists the parity_args fields it reads. */

/* t0 table dtype; n0 D, n1 V, n2 T, n3 B. */
static loom_tensor *b_get_rows(parity_ctx *c, loom_graph *g, const parity_args *a) {
    loom_tensor *table = leaf4(c, g, a->t[0], a->n[0], a->n[1], 1, 1);
    loom_tensor *ids = leaf4(c, g, LOOM_I32, a->n[2], a->n[3], 1, 1);
    parity_fill_ints(c, ids, 0, (int32_t)a->n[1]);
    return loom_get_rows(g, table, ids);
}

/* i0 op (add/mul); n0..3 shape of a, n4..7 shape of b; i1/i2 layouts of a/b. */
static loom_tensor *b_binary(parity_ctx *c, loom_graph *g, const parity_args *a) {
    loom_tensor *x = leaf_layout(c, g, LOOM_F32, a->n, a->i[1]);
    loom_tensor *y = leaf_layout(c, g, LOOM_F32, a->n + 4, a->i[2]);
    return a->i[0] == LOOM_OP_ADD ? loom_add(g, x, y) : loom_mul(g, x, y);
}

/* n0..3 shape; i1 layout; f0 scale. */
static loom_tensor *b_scale(parity_ctx *c, loom_graph *g, const parity_args *a) {
    return loom_scale(g, leaf_layout(c, g, LOOM_F32, a->n, a->i[1]), a->f[0]);
}

/* t0 w dtype, t1 x dtype; n0 K, n1 N, n2 M, n3 W2, n4 X2, n5 W3, n6 X3;
 * i0 x strided (permuted from [K, X2, M, X3]); i1 w transposed (from [N, K]);
 * i2 also compute matmul(cpy(w, f32), x) as the equivalent;
 * i3 flag the output LOOM_FLAG_F32_ACT (the output head: no int8 activations). */
static loom_tensor *b_matmul(parity_ctx *c, loom_graph *g, const parity_args *a) {
    int64_t K = a->n[0], N = a->n[1], M = a->n[2];
    int64_t W2 = max64(a->n[3], 1), X2 = max64(a->n[4], 1);
    int64_t W3 = max64(a->n[5], 1), X3 = max64(a->n[6], 1);
    loom_tensor *w = a->i[1] ? loom_transpose(g, leaf4(c, g, a->t[0], N, K, W2, W3))
                             : leaf4(c, g, a->t[0], K, N, W2, W3);
    loom_tensor *x = a->i[0] ? loom_permute(g, leaf4(c, g, a->t[1], K, X2, M, X3), 0, 2, 1, 3)
                             : leaf4(c, g, a->t[1], K, M, X2, X3);
    parity_reduce(c, K);
    loom_tensor *out = loom_matmul(g, w, x);
    if (a->i[3]) out = loom_tensor_set_flags(out, LOOM_FLAG_F32_ACT);
    if (a->i[2]) parity_equiv(c, g, loom_matmul(g, loom_cpy(g, w, LOOM_F32), x));
    return out;
}

/* n0..3 shape; i1 layout; f0 eps. */
static loom_tensor *b_rms_norm(parity_ctx *c, loom_graph *g, const parity_args *a) {
    parity_reduce(c, a->n[0]);
    return loom_rms_norm(g, leaf_layout(c, g, LOOM_F32, a->n, a->i[1]), a->f[0]);
}

/* n0 head_dim, n1 heads, n2 T, n3 B; i0 mode, i1 scaling, i2 position
 * offset (-1: random positions), i3 n_dims (0: head_dim), i4 inverse,
 * i5 x strided (permuted from [D, T, H, B]). */
static loom_tensor *b_rope(parity_ctx *c, loom_graph *g, const parity_args *a) {
    int64_t D = a->n[0], H = a->n[1], T = a->n[2], B = a->n[3];
    loom_tensor *x = a->i[5] ? loom_permute(g, leaf4(c, g, LOOM_F32, D, T, H, B), 0, 2, 1, 3)
                             : leaf4(c, g, LOOM_F32, D, H, T, B);
    loom_tensor *pos = leaf4(c, g, LOOM_I32, T, 1, 1, 1);
    if (a->i[2] < 0)
        parity_fill_ints(c, pos, 0, 20000);
    else
        parity_fill_arange(c, pos, a->i[2]);
    loom_rope_params p = loom_rope_params_llama3((int32_t)D);
    p.mode = a->i[0];
    p.scaling = a->i[1];
    if (p.scaling == LOOM_ROPE_SCALING_NONE) p.theta = 10000.0f;
    if (a->i[3]) p.n_dims = a->i[3];
    p.inverse = a->i[4];
    return loom_rope(g, x, pos, &p);
}

/* n0..3 shape; f0 scale; i0 causal, i1 q_offset, i2 layout. */
static loom_tensor *b_softmax(parity_ctx *c, loom_graph *g, const parity_args *a) {
    loom_tensor *x = leaf_layout(c, g, LOOM_F32, a->n, a->i[2]);
    parity_fill_uniform(c, x, -4.0f, 4.0f);
    parity_reduce(c, a->n[0]);
    return loom_softmax(g, x, a->f[0], a->i[0] != 0, a->i[1]);
}

/* n0..3 shape; i1 layout. */
static loom_tensor *b_silu(parity_ctx *c, loom_graph *g, const parity_args *a) {
    loom_tensor *x = leaf_layout(c, g, LOOM_F32, a->n, a->i[1]);
    parity_fill_uniform(c, x, -6.0f, 6.0f);
    return loom_silu(g, x);
}

/* n0..3 shape; i1 layout. Range +-8 covers both tails of Phi. */
static loom_tensor *b_gelu(parity_ctx *c, loom_graph *g, const parity_args *a) {
    loom_tensor *x = leaf_layout(c, g, LOOM_F32, a->n, a->i[1]);
    parity_fill_uniform(c, x, -8.0f, 8.0f);
    return loom_gelu(g, x);
}

/* n0 F, n1 T; i0 gate/up as two column slices of one [2F, T] leaf. */
static loom_tensor *b_swiglu(parity_ctx *c, loom_graph *g, const parity_args *a) {
    int64_t F = a->n[0], T = a->n[1];
    loom_tensor *gate, *up;
    if (a->i[0]) {
        loom_tensor *gu = leaf4(c, g, LOOM_F32, 2 * F, T, 1, 1);
        parity_fill_uniform(c, gu, -4.0f, 4.0f);
        gate = loom_slice(g, gu, 0, 0, F);
        up = loom_slice(g, gu, 0, F, F);
    } else {
        gate = leaf4(c, g, LOOM_F32, F, T, 1, 1);
        up = leaf4(c, g, LOOM_F32, F, T, 1, 1);
        parity_fill_uniform(c, gate, -4.0f, 4.0f);
    }
    loom_tensor *out = loom_swiglu(g, gate, up);
    parity_equiv(c, g, loom_decompose(g, out));
    return out;
}

/* n0 D, n1 Tq, n2 Tk, n3 Hq, n4 Hkv, n5 B; t0 K/V dtype; i0 causal,
 * i1 q_offset, i2 layout (0: leaves [D, T, H, B]; 1: views permuted from the
 * [D, H, T, B] projection layout). */
static loom_tensor *b_flash_attn(parity_ctx *c, loom_graph *g, const parity_args *a) {
    int64_t D = a->n[0], Tq = a->n[1], Tk = a->n[2], Hq = a->n[3], Hkv = a->n[4];
    int64_t B = max64(a->n[5], 1);
    loom_tensor *q, *k, *v;
    if (a->i[2]) {
        q = loom_permute(g, leaf4(c, g, LOOM_F32, D, Hq, Tq, B), 0, 2, 1, 3);
        k = loom_permute(g, leaf4(c, g, a->t[0], D, Hkv, Tk, B), 0, 2, 1, 3);
        v = loom_permute(g, leaf4(c, g, a->t[0], D, Hkv, Tk, B), 0, 2, 1, 3);
    } else {
        q = leaf4(c, g, LOOM_F32, D, Tq, Hq, B);
        k = leaf4(c, g, a->t[0], D, Tk, Hkv, B);
        v = leaf4(c, g, a->t[0], D, Tk, Hkv, B);
    }
    /* Spread the scores so softmax is far from uniform. */
    parity_fill_normal(c, q, 1.0f);
    parity_fill_normal(c, k, 1.0f);
    parity_reduce(c, max64(D, Tk));
    loom_tensor *out = loom_flash_attn(g, q, k, v, 1.0f / sqrtf((float)D), a->i[0] != 0, a->i[1]);
    parity_equiv(c, g, loom_decompose(g, out));
    return out;
}

/* A paged sequence's block table: block j is (7 j + 3) mod nb, distinct
 * and out of order when nb is not a multiple of 7 (t->name = "bs nb"). With
 * rows != 0 the pool row of every key instead (the gather of the check). */
static void paged_fill(float *dst, int64_t n, const loom_tensor *t, bool rows) {
    long long bs = 1, nb = 1;
    sscanf(t->name, "%lld %lld", &bs, &nb);
    for (int64_t j = 0; j < n; j++)
        dst[j] = rows ? (float)(((j / bs) * 7 + 3) % nb * bs + j % bs) : (float)((j * 7 + 3) % nb);
}
static void fill_block_table(float *dst, int64_t n, const loom_tensor *t, uint64_t *rng) {
    (void)rng;
    paged_fill(dst, n, t, false);
}
static void fill_block_rows(float *dst, int64_t n, const loom_tensor *t, uint64_t *rng) {
    (void)rng;
    paged_fill(dst, n, t, true);
}

/* Paged flash_attn (docs/adr/0035). n0 D, n1 Tq, n2 q_offset, n3 Hq, n4 Hkv,
 * n5 block size, n6 pool blocks, n7 table length; t0 K/V dtype. The pool is
 * [D*Hkv, R] as the model's cache, read as [D, R, Hkv]; the check gathers the
 * sequence's rows with get_rows and runs the unpaged op over them. */
static loom_tensor *b_flash_attn_paged(parity_ctx *c, loom_graph *g, const parity_args *a) {
    const int64_t D = a->n[0], Tq = a->n[1], off = a->n[2], Hq = a->n[3], Hkv = a->n[4];
    const int64_t bs = a->n[5], nb = a->n[6], R = bs * nb, Tk = off + Tq;
    const size_t esz = loom_dtype_block_bytes(a->t[0]);
    loom_tensor *q = loom_permute(g, leaf4(c, g, LOOM_F32, D, Hq, Tq, 1), 0, 2, 1, 3);
    loom_tensor *kp = leaf4(c, g, a->t[0], D * Hkv, R, 1, 1);
    loom_tensor *vp = leaf4(c, g, a->t[0], D * Hkv, R, 1, 1);
    parity_fill_normal(c, q, 1.0f);
    parity_fill_normal(c, kp, 1.0f);
    const int64_t ne[3] = {D, R, Hkv};
    const size_t nbs[3] = {esz, (size_t)(D * Hkv) * esz, (size_t)D * esz};
    loom_tensor *k = loom_view(g, kp, 3, ne, nbs, 0), *v = loom_view(g, vp, 3, ne, nbs, 0);
    loom_tensor *tbl = leaf4(c, g, LOOM_I32, a->n[7], 1, 1, 1);
    loom_tensor_set_name(tbl, "%lld %lld", (long long)bs, (long long)nb);
    parity_fill_custom(c, tbl, fill_block_table);
    parity_reduce(c, max64(D, Tk));
    const float scale = 1.0f / sqrtf((float)D);
    loom_tensor *out = loom_flash_attn_paged(g, q, k, v, tbl, (int32_t)bs, scale, (int32_t)off);
    loom_tensor *rows = leaf4(c, g, LOOM_I32, Tk, 1, 1, 1);
    loom_tensor_set_name(rows, "%lld %lld", (long long)bs, (long long)nb);
    parity_fill_custom(c, rows, fill_block_rows);
    loom_tensor *kg = loom_permute(g, loom_reshape_3d(g, loom_get_rows(g, kp, rows), D, Hkv, Tk),
                                   0, 2, 1, 3);
    loom_tensor *vg = loom_permute(g, loom_reshape_3d(g, loom_get_rows(g, vp, rows), D, Hkv, Tk),
                                   0, 2, 1, 3);
    parity_equiv(c, g, loom_flash_attn(g, q, kg, vg, scale, true, (int32_t)off));
    return out;
}

/* Distinct row indices (a permutation prefix of [0, R) per column), so no
 * two threads or workgroups write the same destination row. */
static void fill_distinct_rows(float *dst, int64_t n, const loom_tensor *t, uint64_t *rng) {
    const int64_t T = t->ne[0], R = (int64_t)t->name[0] ? strtoll(t->name, NULL, 10) : T;
    int64_t *perm = malloc((size_t)R * sizeof *perm);
    for (int64_t b = 0; b * T < n; b++) {
        for (int64_t i = 0; i < R; i++)
            perm[i] = i;
        for (int64_t i = R - 1; i > 0; i--) { /* Fisher-Yates */
            int64_t j = (int64_t)(parity_rand_u64(rng) % (uint64_t)(i + 1)), tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        for (int64_t i = 0; i < T; i++)
            dst[b * T + i] = (float)perm[i];
    }
    free(perm);
}

/* n0 W, n1 R (destination rows), n2 T, n3 B; t0 destination dtype; i0 rows
 * per batch ([T, B] instead of [T]); i1 destination is a slice (view) of a
 * larger leaf. The output is the whole destination after the write. */
static loom_tensor *b_set_rows(parity_ctx *c, loom_graph *g, const parity_args *a) {
    int64_t W = a->n[0], R = a->n[1], T = a->n[2], B = max64(a->n[3], 1);
    loom_tensor *dst;
    if (a->i[1]) {
        loom_tensor *big = leaf4(c, g, a->t[0], W, R, B + 1, 1);
        dst = loom_slice(g, big, 2, 1, B);
    } else {
        dst = leaf4(c, g, a->t[0], W, R, B, 1);
    }
    loom_tensor *src = leaf4(c, g, LOOM_F32, W, T, B, 1);
    loom_tensor *rows = leaf4(c, g, LOOM_I32, T, a->i[0] ? B : 1, 1, 1);
    loom_tensor_set_name(rows, "%lld", (long long)R); /* read by fill_distinct_rows */
    parity_fill_custom(c, rows, fill_distinct_rows);
    return loom_set_rows(g, dst, src, rows);
}

/* t0 src dtype, t1 dst dtype; n0..3 shape; i1 src layout; i2 values
 * (0 uniform [-1,1), 1 wide normal*300 (f16 range), 2 integers). */
static loom_tensor *b_cpy(parity_ctx *c, loom_graph *g, const parity_args *a) {
    loom_tensor *x = leaf_layout(c, g, a->t[0], a->n, a->i[1]);
    if (a->i[2] == 1)
        parity_fill_normal(c, x, 300.0f);
    else if (a->i[2] == 2)
        parity_fill_ints(c, x, -1000, 1000);
    return loom_cpy(g, x, a->t[1]);
}

/* t0 dtype; n0..3 shape of a; i0 dim; n4 extent of b along dim; i1/i2 layouts. */
static loom_tensor *b_concat(parity_ctx *c, loom_graph *g, const parity_args *a) {
    int64_t nb[4];
    memcpy(nb, a->n, sizeof nb);
    nb[a->i[0]] = a->n[4];
    loom_tensor *x = leaf_layout(c, g, a->t[0], a->n, a->i[1]);
    loom_tensor *y = leaf_layout(c, g, a->t[0], nb, a->i[2]);
    return loom_concat(g, x, y, a->i[0]);
}

/* n0 V, n1 T; i0 targets (0 valid, 1 some -1, 2 all ignored (-100));
 * f0 logit scale. */
static loom_tensor *b_cross_entropy(parity_ctx *c, loom_graph *g, const parity_args *a) {
    loom_tensor *logits = leaf4(c, g, LOOM_F32, a->n[0], a->n[1], 1, 1);
    loom_tensor *targets = leaf4(c, g, LOOM_I32, a->n[1], 1, 1, 1);
    parity_fill_normal(c, logits, a->f[0]);
    if (a->i[0] == 2)
        parity_fill_ints(c, targets, -100, -99);
    else
        parity_fill_ints(c, targets, a->i[0] ? -1 : 0, (int32_t)a->n[0]);
    parity_reduce(c, a->n[0] * a->n[1]);
    return loom_cross_entropy(g, logits, targets);
}

/* Views of leaves and of computed tensors feeding real ops; i0 picks one. */
static loom_tensor *b_views(parity_ctx *c, loom_graph *g, const parity_args *a) {
    switch (a->i[0]) {
    case 0: { /* permuted view of a computed tensor, materialised */
        loom_tensor *x = loom_scale(g, leaf4(c, g, LOOM_F32, 8, 6, 5, 1), 1.5f);
        return loom_cont(g, loom_permute(g, x, 2, 0, 1, 3));
    }
    case 1: { /* slice of a computed tensor added to a leaf */
        loom_tensor *x = loom_silu(g, leaf4(c, g, LOOM_F32, 7, 9, 3, 1));
        loom_tensor *s = loom_slice(g, x, 1, 2, 5);
        return loom_add(g, s, leaf4(c, g, LOOM_F32, 7, 5, 1, 1));
    }
    case 2: { /* general strided view: every other element of rows, offset */
        loom_tensor *x = leaf4(c, g, LOOM_F32, 12, 5, 1, 1);
        int64_t ne[2] = {5, 5};
        size_t nb[2] = {2 * sizeof(float), 12 * sizeof(float)};
        return loom_scale(g, loom_view(g, x, 2, ne, nb, sizeof(float)), -2.0f);
    }
    case 3: { /* reshape of a matmul result, normalised per head */
        loom_tensor *y =
            loom_matmul(g, leaf4(c, g, LOOM_F32, 32, 64, 1, 1), leaf4(c, g, LOOM_F32, 32, 3, 1, 1));
        parity_reduce(c, 32);
        return loom_rms_norm(g, loom_reshape_3d(g, y, 16, 4, 3), 1e-6f);
    }
    case 4: { /* transpose of a transpose, and a slice along dim 2 */
        loom_tensor *x = leaf4(c, g, LOOM_F32, 6, 4, 5, 2);
        loom_tensor *tt = loom_transpose(g, loom_transpose(g, x));
        return loom_mul(g, loom_slice(g, tt, 2, 1, 3), leaf4(c, g, LOOM_F32, 6, 4, 1, 2));
    }
    default: { /* reshape of a contiguous leaf into 4-d and back */
        loom_tensor *x = leaf4(c, g, LOOM_F32, 24, 5, 1, 1);
        loom_tensor *r = loom_reshape_4d(g, x, 4, 3, 2, 5);
        return loom_reshape_2d(g, loom_cont(g, loom_permute(g, r, 1, 0, 2, 3)), 24, 5);
    }
    }
}

/* n0..3 shape; i0 bit mask of reduced dims; i1 layout. */
static loom_tensor *b_sum_to(parity_ctx *c, loom_graph *g, const parity_args *a) {
    int64_t ne[4];
    int64_t red = 1;
    for (int d = 0; d < 4; d++) {
        ne[d] = (a->i[0] >> d) & 1 ? 1 : a->n[d];
        if (ne[d] == 1) red *= a->n[d];
    }
    parity_reduce(c, red);
    return loom_sum_to(g, leaf_layout(c, g, LOOM_F32, a->n, a->i[1]), ne);
}

/* n0..3 shape; i1 layout. */
static loom_tensor *b_silu_back(parity_ctx *c, loom_graph *g, const parity_args *a) {
    loom_tensor *x = leaf_layout(c, g, LOOM_F32, a->n, a->i[1]);
    parity_fill_uniform(c, x, -6.0f, 6.0f);
    return loom_silu_back(g, x, leaf_layout(c, g, LOOM_F32, a->n, 0));
}

/* n0..3 shape; i1 layout. */
static loom_tensor *b_gelu_back(parity_ctx *c, loom_graph *g, const parity_args *a) {
    loom_tensor *x = leaf_layout(c, g, LOOM_F32, a->n, a->i[1]);
    parity_fill_uniform(c, x, -6.0f, 6.0f);
    return loom_gelu_back(g, x, leaf_layout(c, g, LOOM_F32, a->n, 0));
}

/* n0..3 shape; f0 eps. */
static loom_tensor *b_rms_norm_back(parity_ctx *c, loom_graph *g, const parity_args *a) {
    parity_reduce(c, a->n[0]);
    loom_tensor *x = leaf_layout(c, g, LOOM_F32, a->n, 0);
    return loom_rms_norm_back(g, x, leaf_layout(c, g, LOOM_F32, a->n, 0), a->f[0]);
}

/* n0..3 shape; f0 scale; i0 causal. y = softmax(x) is computed in the graph. */
static loom_tensor *b_softmax_back(parity_ctx *c, loom_graph *g, const parity_args *a) {
    loom_tensor *x = leaf_layout(c, g, LOOM_F32, a->n, 0);
    parity_fill_uniform(c, x, -3.0f, 3.0f);
    loom_tensor *y = loom_softmax(g, x, a->f[0], a->i[0] != 0, 0);
    parity_reduce(c, a->n[0]);
    return loom_softmax_back(g, y, leaf_layout(c, g, LOOM_F32, a->n, 0), a->f[0]);
}

/* n0 D, n1 T, n2 B, n3 V; ids drawn from [0, n4) so rows collide. */
static loom_tensor *b_get_rows_back(parity_ctx *c, loom_graph *g, const parity_args *a) {
    loom_tensor *dy = leaf4(c, g, LOOM_F32, a->n[0], a->n[1], a->n[2], 1);
    loom_tensor *ids = leaf4(c, g, LOOM_I32, a->n[1], a->n[2], 1, 1);
    parity_fill_ints(c, ids, 0, (int32_t)a->n[4]);
    parity_reduce(c, a->n[1] * a->n[2]);
    return loom_get_rows_back(g, dy, ids, a->n[3]);
}

/* n0 V, n1 T; i0 targets mode as b_cross_entropy. */
static loom_tensor *b_cross_entropy_back(parity_ctx *c, loom_graph *g, const parity_args *a) {
    loom_tensor *logits = leaf4(c, g, LOOM_F32, a->n[0], a->n[1], 1, 1);
    loom_tensor *targets = leaf4(c, g, LOOM_I32, a->n[1], 1, 1, 1);
    loom_tensor *dloss = leaf4(c, g, LOOM_F32, 1, 1, 1, 1);
    parity_fill_normal(c, logits, 2.0f);
    parity_fill_uniform(c, dloss, 0.5f, 2.0f);
    if (a->i[0] == 2)
        parity_fill_ints(c, targets, -100, -99);
    else
        parity_fill_ints(c, targets, a->i[0] ? -1 : 0, (int32_t)a->n[0]);
    parity_reduce(c, a->n[0]);
    return loom_cross_entropy_back(g, logits, targets, dloss);
}

/* n0 E, n1 T; i0 top_k; i1 logits mode. */
static loom_tensor *b_moe_gate_back(parity_ctx *c, loom_graph *g, const parity_args *a) {
    loom_tensor *logits = leaf4(c, g, LOOM_F32, a->n[0], a->n[1], 1, 1);
    parity_fill_logits(c, logits, a->i[1]);
    loom_tensor *gates = loom_moe_gate(g, logits, a->i[0]);
    return loom_moe_gate_back(g, gates, leaf4(c, g, LOOM_F32, a->n[0], a->n[1], 1, 1));
}

/* The whole autodiff graph of a tiny MLP with cross entropy: n0 D, n1 F,
 * n2 V, n3 T. The output is the gradient of the first weight. */
static loom_tensor *b_autodiff_mlp(parity_ctx *c, loom_graph *g, const parity_args *a) {
    int64_t D = a->n[0], F = a->n[1], V = a->n[2], T = a->n[3];
    loom_tensor *x = leaf4(c, g, LOOM_F32, D, T, 1, 1);
    loom_tensor *w1 = loom_tensor_set_flags(leaf4(c, g, LOOM_F32, D, 2 * F, 1, 1), LOOM_FLAG_PARAM);
    loom_tensor *w2 = loom_tensor_set_flags(leaf4(c, g, LOOM_F32, F, V, 1, 1), LOOM_FLAG_PARAM);
    loom_tensor *nw = loom_tensor_set_flags(leaf4(c, g, LOOM_F32, D, 1, 1, 1), LOOM_FLAG_PARAM);
    loom_tensor *targets = leaf4(c, g, LOOM_I32, T, 1, 1, 1);
    parity_fill_ints(c, targets, 0, (int32_t)V);
    loom_tensor *h = loom_mul(g, loom_rms_norm(g, x, 1e-5f), nw);
    loom_tensor *gu = loom_matmul(g, w1, h);
    loom_tensor *act = loom_swiglu(g, loom_slice(g, gu, 0, 0, F), loom_slice(g, gu, 0, F, F));
    loom_tensor *loss = loom_cross_entropy(g, loom_matmul(g, w2, act), targets);
    if (!loss || loom_graph_expand(g, loss) != LOOM_OK ||
        loom_graph_backward(g, loss, false) != LOOM_OK)
        return NULL;
    parity_reduce(c, max64(D, 2 * F) * T);
    return w1->grad;
}

/* ---------------- the table ---------------- */

struct parity_table {
    parity_case *v;
    int n, cap;
    bool oom;
};
typedef parity_table table;

static void vadd(table *tb, loom_op op, parity_build_fn fn, parity_args a, const char *fmt,
                 va_list ap) {
    if (tb->oom) return;
    if (tb->n == tb->cap) {
        int cap = tb->cap ? 2 * tb->cap : 256;
        parity_case *v = realloc(tb->v, (size_t)cap * sizeof *v);
        if (!v) {
            tb->oom = true;
            return;
        }
        tb->v = v;
        tb->cap = cap;
    }
    parity_case *pc = &tb->v[tb->n++];
    memset(pc, 0, sizeof *pc);
    int w = snprintf(pc->name, sizeof pc->name, "%s ", loom_op_name(op));
    vsnprintf(pc->name + w, sizeof pc->name - (size_t)w, fmt, ap);
    pc->op = op;
    pc->build = fn;
    pc->a = a;
}

static void add(table *tb, loom_op op, parity_build_fn fn, parity_args a, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

static void add(table *tb, loom_op op, parity_build_fn fn, parity_args a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vadd(tb, op, fn, a, fmt, ap);
    va_end(ap);
}

void parity_table_add(parity_table *tb, loom_op op, parity_build_fn fn, parity_args a,
                      const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vadd(tb, op, fn, a, fmt, ap);
    va_end(ap);
}

static const char *dn(loom_dtype t) {
    return loom_dtype_name(t);
}
static const char *layout_name(int l) {
    return l == 1 ? "T" : l == 2 ? "P" : "c";
}

static void cases_get_rows(table *tb) {
    static const loom_dtype fl[] = {LOOM_F32, LOOM_F16, LOOM_BF16};
    static const loom_dtype qt[] = {LOOM_Q8_0, LOOM_Q4_0};
    static const int64_t tb_shapes[][2] = {{5, 1}, {4, 3}};
    for (int s = 0; s < 2; s++) {
        int64_t T = tb_shapes[s][0], B = tb_shapes[s][1];
        for (int i = 0; i < 3; i++)
            for (int d = 0; d < 2; d++) {
                int64_t D = d ? 64 : 7;
                add(tb, LOOM_OP_GET_ROWS, b_get_rows,
                    (parity_args){.t = {fl[i]}, .n = {D, 17, T, B}},
                    "%s D=%lld V=17 ids=[%lld,%lld]", dn(fl[i]), (long long)D, (long long)T,
                    (long long)B);
            }
        for (int i = 0; i < 2; i++)
            for (int d = 0; d < 2; d++) {
                int64_t D = d ? 96 : 32;
                add(tb, LOOM_OP_GET_ROWS, b_get_rows,
                    (parity_args){.t = {qt[i]}, .n = {D, 17, T, B}},
                    "%s D=%lld V=17 ids=[%lld,%lld]", dn(qt[i]), (long long)D, (long long)T,
                    (long long)B);
            }
    }
    /* k-quants (ADR 0024): rows of one and two super-blocks. */
    for (int t = LOOM_Q2_K; t <= LOOM_Q6_K; t++)
        for (int d = 1; d <= 2; d++)
            add(tb, LOOM_OP_GET_ROWS, b_get_rows,
                (parity_args){.t = {(loom_dtype)t}, .n = {256 * d, 17, 4, 3}},
                "%s D=%d V=17 ids=[4,3]", dn((loom_dtype)t), 256 * d);
    add(tb, LOOM_OP_GET_ROWS, b_get_rows, (parity_args){.t = {LOOM_F32}, .n = {4096, 3, 2, 1}},
        "f32 D=4096 V=3 ids=[2,1]");
}

static void cases_binary(table *tb) {
    /* a shape, b shape, a layout, b layout */
    static const struct {
        int64_t a[4], b[4];
        int la, lb;
    } sh[] = {
        {{7, 5, 3, 2}, {7, 5, 3, 2}, 0, 0},       /* same shape, odd sizes */
        {{7, 5, 3, 2}, {7, 1, 1, 1}, 0, 0},       /* row broadcast (bias) */
        {{7, 5, 3, 2}, {1, 5, 1, 2}, 0, 0},       /* column broadcast */
        {{7, 5, 3, 2}, {1, 1, 1, 1}, 0, 0},       /* scalar */
        {{7, 5, 3, 2}, {7, 1, 3, 1}, 0, 0},       /* mixed broadcast */
        {{7, 5, 3, 2}, {7, 5, 3, 2}, 1, 0},       /* a transposed */
        {{7, 5, 3, 2}, {7, 5, 3, 2}, 0, 2},       /* b permuted */
        {{9, 6, 4, 1}, {9, 1, 4, 1}, 2, 1},       /* both strided, broadcast */
        {{4096, 3, 1, 1}, {4096, 1, 1, 1}, 0, 0}, /* long rows */
    };
    for (int op = 0; op < 2; op++)
        for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
            loom_op o = op ? LOOM_OP_MUL : LOOM_OP_ADD;
            parity_args a = {.i = {(int32_t)o, sh[i].la, sh[i].lb}};
            memcpy(a.n, sh[i].a, sizeof sh[i].a);
            memcpy(a.n + 4, sh[i].b, sizeof sh[i].b);
            add(tb, o, b_binary, a, "a=[%lld,%lld,%lld,%lld]%s b=[%lld,%lld,%lld,%lld]%s",
                (long long)sh[i].a[0], (long long)sh[i].a[1], (long long)sh[i].a[2],
                (long long)sh[i].a[3], layout_name(sh[i].la), (long long)sh[i].b[0],
                (long long)sh[i].b[1], (long long)sh[i].b[2], (long long)sh[i].b[3],
                layout_name(sh[i].lb));
        }
    for (int l = 0; l < 3; l++)
        add(tb, LOOM_OP_SCALE, b_scale,
            (parity_args){.n = {13, 6, 2, 1}, .i = {0, l}, .f = {-0.75f}}, "[13,6,2,1]%s s=-0.75",
            layout_name(l));
}

static void cases_matmul(table *tb) {
    static const loom_dtype wt[] = {LOOM_F32,  LOOM_F16, LOOM_BF16,  LOOM_Q8_0,
                                    LOOM_Q4_0, LOOM_NF4, LOOM_NF4_DQ};
    static const loom_dtype xt[] = {LOOM_F32, LOOM_F16, LOOM_BF16};
    /* K, N, M, W2, X2, W3, X3 */
    static const int64_t shapes[][7] = {
        {64, 33, 1, 1, 1, 1, 1},   /* decode: matrix x vector */
        {128, 17, 7, 1, 1, 1, 1},  /* odd N, M */
        {256, 64, 32, 1, 1, 1, 1}, /* a small prefill tile */
        {192, 160, 3, 1, 1, 1, 1}, /* nf4_dq: 2 groups of 256 absmax (second partial) */
        {64, 9, 5, 2, 8, 1, 2},    /* batched: GQA-style broadcast r2 = 4, X3 broadcast */
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int w = 0; w < 7; w++)
            for (int x = 0; x < 3; x++) {
                parity_args a = {.t = {wt[w], xt[x]}};
                memcpy(a.n, shapes[s], sizeof shapes[s]);
                add(tb, LOOM_OP_MATMUL, b_matmul, a,
                    "w=%s x=%s K=%lld N=%lld M=%lld W2=%lld X2=%lld X3=%lld", dn(wt[w]), dn(xt[x]),
                    (long long)a.n[0], (long long)a.n[1], (long long)a.n[2], (long long)a.n[3],
                    (long long)a.n[4], (long long)a.n[6]);
            }
    /* Odd K (no block structure): float weights only. */
    for (int w = 0; w < 3; w++)
        for (int x = 0; x < 3; x++)
            add(tb, LOOM_OP_MATMUL, b_matmul, (parity_args){.t = {wt[w], xt[x]}, .n = {37, 11, 3}},
                "w=%s x=%s K=37 N=11 M=3", dn(wt[w]), dn(xt[x]));
    /* Strided activations (attention-style permuted x), every weight dtype. */
    for (int w = 0; w < 7; w++)
        add(tb, LOOM_OP_MATMUL, b_matmul,
            (parity_args){.t = {wt[w], LOOM_F32}, .n = {64, 16, 6, 4, 4}, .i = {1}},
            "w=%s x=f32(permuted) K=64 N=16 M=6 X2=4", dn(wt[w]));
    /* Transposed (strided) float weights, e.g. K^T in attention scores. */
    for (int w = 0; w < 2; w++)
        add(tb, LOOM_OP_MATMUL, b_matmul,
            (parity_args){.t = {wt[w], LOOM_F32}, .n = {48, 20, 5}, .i = {0, 1}},
            "w=%s(transposed) x=f32 K=48 N=20 M=5", dn(wt[w]));
    /* Longer reduction, more rows. */
    static const loom_dtype big[] = {LOOM_F32, LOOM_Q4_0, LOOM_NF4};
    for (int w = 0; w < 3; w++)
        add(tb, LOOM_OP_MATMUL, b_matmul,
            (parity_args){.t = {big[w], LOOM_F32}, .n = {512, 48, 40}},
            "w=%s x=f32 K=512 N=48 M=40", dn(big[w]));
    /* Prefill blocking edges: several packed weight blocks (N > 128 rows per
     * thread), a partial reduction block (K % 256 != 0) and a partial
     * activation group (M % 12 != 0). */
    for (int w = 0; w < 3; w++)
        add(tb, LOOM_OP_MATMUL, b_matmul,
            (parity_args){.t = {big[w], LOOM_BF16}, .n = {320, 300, 29}},
            "w=%s x=bf16 K=320 N=300 M=29", dn(big[w]));
    /* Quantized matmul vs dequantize-then-f32-matmul. */
    for (int w = 3; w < 7; w++) {
        add(tb, LOOM_OP_MATMUL, b_matmul,
            (parity_args){.t = {wt[w], LOOM_F32}, .n = {128, 17, 7}, .i = {0, 0, 1}},
            "w=%s x=f32 K=128 N=17 M=7 vs cpy(w,f32)", dn(wt[w]));
        add(tb, LOOM_OP_MATMUL, b_matmul,
            (parity_args){.t = {wt[w], LOOM_F16}, .n = {64, 9, 5, 2, 8, 1, 2}, .i = {0, 0, 1}},
            "w=%s x=f16 K=64 N=9 M=5 W2=2 X2=8 X3=2 vs cpy(w,f32)", dn(wt[w]));
    }
    /* k-quants (ADR 0024): decode, small prefill, batched/broadcast, a
     * prefill across packed blocks, strided activations, and each against
     * dequantize-then-f32-matmul. */
    static const int64_t kq_shapes[][7] = {
        {256, 33, 1, 1, 1, 1, 1},
        {512, 17, 7, 1, 1, 1, 1},
        {256, 9, 5, 2, 8, 1, 2},
        {768, 300, 29, 1, 1, 1, 1},
    };
    for (int t = LOOM_Q2_K; t <= LOOM_Q6_K; t++) {
        const loom_dtype kt = (loom_dtype)t;
        for (size_t s = 0; s < sizeof kq_shapes / sizeof kq_shapes[0]; s++) {
            parity_args a = {.t = {kt, s == 2 ? LOOM_F16 : LOOM_F32}};
            memcpy(a.n, kq_shapes[s], sizeof kq_shapes[s]);
            add(tb, LOOM_OP_MATMUL, b_matmul, a,
                "w=%s x=%s K=%lld N=%lld M=%lld W2=%lld X2=%lld X3=%lld", dn(kt), dn(a.t[1]),
                (long long)a.n[0], (long long)a.n[1], (long long)a.n[2], (long long)a.n[3],
                (long long)a.n[4], (long long)a.n[6]);
        }
        add(tb, LOOM_OP_MATMUL, b_matmul,
            (parity_args){.t = {kt, LOOM_F32}, .n = {256, 16, 6, 4, 4}, .i = {1}},
            "w=%s x=f32(permuted) K=256 N=16 M=6 X2=4", dn(kt));
        add(tb, LOOM_OP_MATMUL, b_matmul,
            (parity_args){.t = {kt, LOOM_F32}, .n = {512, 17, 7}, .i = {0, 0, 1}},
            "w=%s x=f32 K=512 N=17 M=7 vs cpy(w,f32)", dn(kt));
    }
}

static void cases_norm_rope_softmax(table *tb) {
    static const int64_t rn[][4] = {{7, 1, 1, 1}, {7, 5, 1, 1}, {64, 3, 2, 1}, {4096, 2, 1, 1}};
    for (size_t s = 0; s < 4; s++)
        for (int l = 0; l < 2; l++) {
            if (l && rn[s][1] == 1) continue;
            parity_args a = {.i = {0, l}, .f = {s & 1 ? 1e-6f : 1e-5f}};
            memcpy(a.n, rn[s], sizeof rn[s]);
            add(tb, LOOM_OP_RMS_NORM, b_rms_norm, a, "[%lld,%lld,%lld,%lld]%s eps=%g",
                (long long)a.n[0], (long long)a.n[1], (long long)a.n[2], (long long)a.n[3],
                layout_name(l), (double)a.f[0]);
        }

    /* rope: mode x scaling x head_dim x (T, position offset) */
    static const int64_t tp[][2] = {{7, 0}, {1, 100}, {5, 8000}};
    for (int mode = 0; mode < 2; mode++)
        for (int sc = 0; sc < 2; sc++)
            for (int d = 0; d < 2; d++)
                for (int p = 0; p < 3; p++) {
                    int32_t m = mode ? LOOM_ROPE_NEOX : LOOM_ROPE_NORMAL;
                    int64_t D = d ? 128 : 64;
                    add(tb, LOOM_OP_ROPE, b_rope,
                        (parity_args){.n = {D, 4, tp[p][0], 1}, .i = {m, sc, (int32_t)tp[p][1]}},
                        "%s%s D=%lld H=4 T=%lld pos0=%lld", mode ? "neox" : "normal",
                        sc ? " llama3" : "", (long long)D, (long long)tp[p][0],
                        (long long)tp[p][1]);
                }
    add(tb, LOOM_OP_ROPE, b_rope,
        (parity_args){.n = {128, 4, 256, 1}, .i = {LOOM_ROPE_NEOX, LOOM_ROPE_SCALING_LLAMA3, 0}},
        "neox llama3 D=128 H=4 T=256 pos0=0 (long)");
    add(tb, LOOM_OP_ROPE, b_rope,
        (parity_args){.n = {64, 2, 256, 1}, .i = {LOOM_ROPE_NORMAL, 0, 0}},
        "normal D=64 H=2 T=256 pos0=0 (long)");
    add(tb, LOOM_OP_ROPE, b_rope,
        (parity_args){.n = {64, 3, 6, 2}, .i = {LOOM_ROPE_NEOX, LOOM_ROPE_SCALING_LLAMA3, -1}},
        "neox llama3 D=64 H=3 T=6 B=2 random positions");
    add(tb, LOOM_OP_ROPE, b_rope,
        (parity_args){.n = {64, 4, 5, 1}, .i = {LOOM_ROPE_NORMAL, 0, 3, 32}},
        "normal D=64 n_dims=32 (partial) T=5 pos0=3");
    add(tb, LOOM_OP_ROPE, b_rope,
        (parity_args){.n = {128, 2, 5, 1}, .i = {LOOM_ROPE_NEOX, LOOM_ROPE_SCALING_LLAMA3, 7, 64}},
        "neox llama3 D=128 n_dims=64 (partial) T=5 pos0=7");
    add(tb, LOOM_OP_ROPE, b_rope,
        (parity_args){.n = {64, 4, 9, 1}, .i = {LOOM_ROPE_NEOX, LOOM_ROPE_SCALING_LLAMA3, 2, 0, 1}},
        "neox llama3 D=64 T=9 pos0=2 inverse");
    add(tb, LOOM_OP_ROPE, b_rope,
        (parity_args){.n = {64, 4, 9, 1}, .i = {LOOM_ROPE_NORMAL, 0, 0, 0, 1}},
        "normal D=64 T=9 inverse");
    add(tb, LOOM_OP_ROPE, b_rope,
        (parity_args){.n = {64, 4, 7, 1},
                      .i = {LOOM_ROPE_NEOX, LOOM_ROPE_SCALING_LLAMA3, 5, 0, 0, 1}},
        "neox llama3 D=64 H=4 T=7 x permuted from [D,T,H]");

    /* softmax: shape, scale, causal, q_offset, layout */
    static const struct {
        int64_t n[4];
        float scale;
        int causal, qoff, layout;
    } sm[] = {
        {{7, 1, 1, 1}, 1.0f, 0, 0, 0},       {{7, 5, 1, 1}, 0.125f, 0, 0, 0},
        {{33, 9, 2, 1}, 1.0f, 0, 0, 0},      {{256, 4, 1, 1}, 0.088f, 0, 0, 0},
        {{7, 7, 2, 1}, 1.0f, 1, 0, 0},       {{33, 5, 2, 1}, 0.5f, 1, 3, 0},
        {{40, 1, 4, 1}, 0.125f, 1, 39, 0},   {{9, 6, 1, 1}, 1.0f, 1, -2, 0}, /* fully masked rows */
        {{256, 256, 1, 1}, 0.088f, 1, 0, 0}, {{11, 6, 3, 1}, 1.0f, 0, 0, 1},
        {{11, 6, 3, 1}, 2.0f, 1, 1, 2},      {{4096, 2, 1, 1}, 1.0f, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof sm / sizeof sm[0]; i++) {
        parity_args a = {.f = {sm[i].scale}, .i = {sm[i].causal, sm[i].qoff, sm[i].layout}};
        memcpy(a.n, sm[i].n, sizeof sm[i].n);
        add(tb, LOOM_OP_SOFTMAX, b_softmax, a, "[%lld,%lld,%lld,%lld]%s scale=%g%s q_offset=%d",
            (long long)a.n[0], (long long)a.n[1], (long long)a.n[2], (long long)a.n[3],
            layout_name(sm[i].layout), (double)sm[i].scale, sm[i].causal ? " causal" : "",
            sm[i].qoff);
    }
}

static void cases_activations(table *tb) {
    add(tb, LOOM_OP_SILU, b_silu, (parity_args){.n = {7, 5, 3, 1}}, "[7,5,3,1]c");
    add(tb, LOOM_OP_SILU, b_silu, (parity_args){.n = {7, 5, 3, 1}, .i = {0, 1}}, "[7,5,3,1]T");
    add(tb, LOOM_OP_SILU, b_silu, (parity_args){.n = {11008, 2, 1, 1}}, "[11008,2,1,1]c");
    add(tb, LOOM_OP_GELU, b_gelu, (parity_args){.n = {7, 5, 3, 1}}, "[7,5,3,1]c");
    add(tb, LOOM_OP_GELU, b_gelu, (parity_args){.n = {7, 5, 3, 1}, .i = {0, 1}}, "[7,5,3,1]T");
    add(tb, LOOM_OP_GELU, b_gelu, (parity_args){.n = {1536, 9, 1, 1}}, "[1536,9,1,1]c (MiniLM)");
    static const int64_t sw[][2] = {{7, 3}, {96, 5}, {1376, 2}};
    for (int s = 0; s < 3; s++)
        for (int l = 0; l < 2; l++)
            add(tb, LOOM_OP_SWIGLU, b_swiglu, (parity_args){.n = {sw[s][0], sw[s][1]}, .i = {l}},
                "F=%lld T=%lld%s vs decomposition", (long long)sw[s][0], (long long)sw[s][1],
                l ? " (gate/up slices of one tensor)" : "");
}

static void cases_flash_attn(table *tb) {
    /* Tq, Tk, causal, q_offset */
    static const int32_t cfg[][4] = {
        {7, 7, 0, 0},   /* non-causal, odd length */
        {33, 33, 1, 0}, /* causal prefill */
        {1, 40, 1, 39}, /* KV-cache decode: one query at position 39 */
        {5, 21, 1, 16}, /* chunked prefill after 16 cached tokens */
    };
    static const int64_t gqa[][2] = {{8, 8}, {8, 2}, {8, 1}}; /* ratios 1, 4, 8 */
    for (int d = 0; d < 2; d++)
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++)
                for (int kv = 0; kv < 2; kv++) {
                    int64_t D = d ? 128 : 64;
                    loom_dtype kt = kv ? LOOM_F16 : LOOM_F32;
                    add(tb, LOOM_OP_FLASH_ATTN, b_flash_attn,
                        (parity_args){.n = {D, cfg[c][0], cfg[c][1], gqa[r][0], gqa[r][1], 1},
                                      .t = {kt},
                                      .i = {cfg[c][2], cfg[c][3], (c + r) & 1}},
                        "D=%lld Tq=%d Tk=%d Hq=%lld Hkv=%lld kv=%s%s q_offset=%d%s", (long long)D,
                        cfg[c][0], cfg[c][1], (long long)gqa[r][0], (long long)gqa[r][1], dn(kt),
                        cfg[c][2] ? " causal" : "", cfg[c][3],
                        (c + r) & 1 ? " (permuted views)" : "");
                }
    /* Long sequences and batch > 1. */
    add(tb, LOOM_OP_FLASH_ATTN, b_flash_attn,
        (parity_args){.n = {64, 256, 256, 4, 1, 1}, .t = {LOOM_F32}, .i = {1, 0, 1}},
        "D=64 Tq=256 Tk=256 Hq=4 Hkv=1 kv=f32 causal (long)");
    add(tb, LOOM_OP_FLASH_ATTN, b_flash_attn,
        (parity_args){.n = {128, 1, 256, 4, 1, 1}, .t = {LOOM_F16}, .i = {1, 255, 1}},
        "D=128 Tq=1 Tk=256 Hq=4 Hkv=1 kv=f16 causal q_offset=255 (long decode)");
    add(tb, LOOM_OP_FLASH_ATTN, b_flash_attn,
        (parity_args){.n = {64, 128, 128, 2, 2, 1}, .t = {LOOM_F32}, .i = {0, 0, 0}},
        "D=64 Tq=128 Tk=128 Hq=2 Hkv=2 kv=f32 (long non-causal)");
    add(tb, LOOM_OP_FLASH_ATTN, b_flash_attn,
        (parity_args){.n = {64, 6, 6, 4, 2, 3}, .t = {LOOM_F32}, .i = {1, 0, 1}},
        "D=64 Tq=6 Tk=6 Hq=4 Hkv=2 B=3 kv=f32 causal (batched)");
    add(tb, LOOM_OP_FLASH_ATTN, b_flash_attn,
        (parity_args){.n = {128, 3, 12, 4, 1, 2}, .t = {LOOM_F16}, .i = {1, 9, 0}},
        "D=128 Tq=3 Tk=12 Hq=4 Hkv=1 B=2 kv=f16 causal q_offset=9 (batched)");
}

static void cases_flash_attn_paged(table *tb) {
    /* D, Tq, q_offset, Hq, Hkv, block size, pool blocks, table length */
    static const int64_t cfg[][8] = {
        {64, 1, 39, 8, 2, 16, 9, 3},    /* decode at 39: 3 blocks, the last partial */
        {64, 5, 16, 8, 8, 16, 5, 2},    /* chunked prefill after one full block */
        {128, 17, 0, 4, 1, 8, 6, 4},    /* prefill over 3 blocks (table longer than used) */
        {64, 1, 255, 4, 1, 32, 11, 8},  /* long decode, 8 blocks of 32 */
        {64, 33, 31, 8, 1, 32, 4, 3},   /* prefill crossing block boundaries */
    };
    for (int i = 0; i < 5; i++)
        for (int kv = 0; kv < 2; kv++) {
            const loom_dtype kt = kv ? LOOM_F16 : LOOM_F32;
            const int64_t *x = cfg[i];
            add(tb, LOOM_OP_FLASH_ATTN, b_flash_attn_paged,
                (parity_args){.n = {x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]}, .t = {kt}},
                "paged D=%lld Tq=%lld q_offset=%lld Hq=%lld Hkv=%lld block=%lld pool=%lld kv=%s "
                "vs gathered rows",
                (long long)x[0], (long long)x[1], (long long)x[2], (long long)x[3], (long long)x[4],
                (long long)x[5], (long long)x[6], dn(kt));
        }
}

static void cases_set_rows(table *tb) {
    static const loom_dtype dt[] = {LOOM_F32, LOOM_F16, LOOM_BF16, LOOM_Q8_0};
    /* W, R, T, B, rows per batch, sliced destination */
    static const int64_t cfg[][6] = {
        {64, 16, 1, 1, 0, 0},  /* decode: one KV row */
        {256, 40, 7, 1, 0, 0}, /* prefill chunk */
        {96, 9, 3, 2, 1, 0},   /* two sequences, own positions */
        {64, 12, 4, 3, 0, 1},  /* destination is a slice of a bigger cache */
    };
    for (int d = 0; d < 4; d++)
        for (int k = 0; k < 4; k++)
            add(tb, LOOM_OP_SET_ROWS, b_set_rows,
                (parity_args){.t = {dt[d]},
                              .n = {cfg[k][0], cfg[k][1], cfg[k][2], cfg[k][3]},
                              .i = {(int32_t)cfg[k][4], (int32_t)cfg[k][5]}},
                "%s W=%lld R=%lld T=%lld B=%lld%s%s", dn(dt[d]), (long long)cfg[k][0],
                (long long)cfg[k][1], (long long)cfg[k][2], (long long)cfg[k][3],
                cfg[k][4] ? " rows per sequence" : "", cfg[k][5] ? " (sliced destination)" : "");
}

static void cases_cpy_concat(table *tb) {
    static const loom_dtype all[] = {LOOM_F32,  LOOM_F16, LOOM_BF16,  LOOM_Q8_0,
                                     LOOM_Q4_0, LOOM_NF4, LOOM_NF4_DQ};
    /* f32 -> every dtype, and every dtype -> f32 */
    for (int d = 0; d < 7; d++) {
        add(tb, LOOM_OP_CPY, b_cpy, (parity_args){.t = {LOOM_F32, all[d]}, .n = {64, 6, 2, 1}},
            "f32[64,6,2,1] -> %s", dn(all[d]));
        if (d)
            add(tb, LOOM_OP_CPY, b_cpy, (parity_args){.t = {all[d], LOOM_F32}, .n = {64, 6, 2, 1}},
                "%s[64,6,2,1] -> f32", dn(all[d]));
    }
    /* Wide values: f16 rounding/range; bf16 <-> f16. */
    add(tb, LOOM_OP_CPY, b_cpy,
        (parity_args){.t = {LOOM_F32, LOOM_F16}, .n = {37, 5}, .i = {0, 0, 1}},
        "f32[37,5] -> f16 (wide values)");
    add(tb, LOOM_OP_CPY, b_cpy,
        (parity_args){.t = {LOOM_F32, LOOM_BF16}, .n = {37, 5}, .i = {0, 0, 1}},
        "f32[37,5] -> bf16 (wide values)");
    add(tb, LOOM_OP_CPY, b_cpy, (parity_args){.t = {LOOM_F16, LOOM_BF16}, .n = {37, 5}},
        "f16[37,5] -> bf16");
    add(tb, LOOM_OP_CPY, b_cpy, (parity_args){.t = {LOOM_BF16, LOOM_F16}, .n = {37, 5}},
        "bf16[37,5] -> f16");
    add(tb, LOOM_OP_CPY, b_cpy,
        (parity_args){.t = {LOOM_I32, LOOM_F32}, .n = {19, 3}, .i = {0, 0, 2}}, "i32[19,3] -> f32");
    add(tb, LOOM_OP_CPY, b_cpy, (parity_args){.t = {LOOM_Q8_0, LOOM_F16}, .n = {96, 3}},
        "q8_0[96,3] -> f16");
    /* Strided sources (materialising views), including into quantized types. */
    static const loom_dtype from_strided[] = {LOOM_F32,  LOOM_F16,  LOOM_BF16,
                                              LOOM_Q8_0, LOOM_Q4_0, LOOM_NF4};
    for (int d = 0; d < 6; d++)
        for (int l = 1; l <= 2; l++)
            add(tb, LOOM_OP_CPY, b_cpy,
                (parity_args){.t = {LOOM_F32, from_strided[d]}, .n = {64, 6, 4, 1}, .i = {0, l}},
                "f32[64,6,4,1]%s -> %s", layout_name(l), dn(from_strided[d]));
    add(tb, LOOM_OP_CPY, b_cpy,
        (parity_args){.t = {LOOM_F16, LOOM_F32}, .n = {13, 7, 3, 1}, .i = {0, 2}},
        "f16[13,7,3,1]P -> f32");
    /* nf4_dq across several second-level groups, q4_0 on a long row. */
    add(tb, LOOM_OP_CPY, b_cpy, (parity_args){.t = {LOOM_F32, LOOM_NF4_DQ}, .n = {256, 80}},
        "f32[256,80] -> nf4_dq (3 scale groups)");
    add(tb, LOOM_OP_CPY, b_cpy, (parity_args){.t = {LOOM_NF4_DQ, LOOM_F32}, .n = {256, 80}},
        "nf4_dq[256,80] -> f32 (3 scale groups)");
    add(tb, LOOM_OP_CPY, b_cpy, (parity_args){.t = {LOOM_F32, LOOM_Q4_0}, .n = {4096, 2}},
        "f32[4096,2] -> q4_0");

    /* concat along each dim, f32 and f16, with strided inputs */
    static const loom_dtype ct[] = {LOOM_F32, LOOM_F16};
    for (int t = 0; t < 2; t++)
        for (int dim = 0; dim < 4; dim++)
            add(tb, LOOM_OP_CONCAT, b_concat,
                (parity_args){
                    .t = {ct[t]}, .n = {5, 4, 3, 2, 3}, .i = {dim, dim == 1, dim == 2 ? 2 : 0}},
                "%s a=[5,4,3,2] b extent 3 along dim %d%s", dn(ct[t]), dim,
                dim == 1   ? " (a transposed)"
                : dim == 2 ? " (b permuted)"
                           : "");
    add(tb, LOOM_OP_CONCAT, b_concat,
        (parity_args){.t = {LOOM_F32}, .n = {64, 1, 8, 1, 40}, .i = {1}},
        "f32 a=[64,1,8,1] b extent 40 along dim 1 (KV append)");
}

static void cases_loss_views(table *tb) {
    static const int64_t ce[][2] = {{7, 1}, {7, 5}, {100, 9}, {1000, 3}};
    for (int s = 0; s < 4; s++)
        add(tb, LOOM_OP_CROSS_ENTROPY, b_cross_entropy,
            (parity_args){.n = {ce[s][0], ce[s][1]}, .i = {s & 1}, .f = {s == 3 ? 8.0f : 2.0f}},
            "V=%lld T=%lld%s", (long long)ce[s][0], (long long)ce[s][1],
            s & 1 ? " some targets ignored" : "");
    add(tb, LOOM_OP_CROSS_ENTROPY, b_cross_entropy, (parity_args){.n = {7, 4}, .i = {2}, .f = {1}},
        "V=7 T=4 all targets ignored");
    add(tb, LOOM_OP_CROSS_ENTROPY, b_cross_entropy, (parity_args){.n = {32000, 2}, .f = {4}},
        "V=32000 T=2");
    static const char *vn[] = {"permute(computed)", "slice(computed)",     "strided view",
                               "reshape(matmul)",   "transpose^2 + slice", "reshape 4d/2d"};
    for (int i = 0; i < 6; i++)
        add(tb, LOOM_OP_VIEW, b_views, (parity_args){.i = {i}}, "%s", vn[i]);
}

static void cases_backward(table *tb) {
    static const int32_t masks[] = {1, 2, 5, 15, 12};
    for (int m = 0; m < 5; m++)
        add(tb, LOOM_OP_SUM_TO, b_sum_to, (parity_args){.n = {7, 5, 3, 2}, .i = {masks[m], m == 2}},
            "[7,5,3,2]%s reduce mask %d", m == 2 ? "T" : "c", masks[m]);
    add(tb, LOOM_OP_SUM_TO, b_sum_to, (parity_args){.n = {4096, 16, 1, 1}, .i = {2}},
        "[4096,16] -> [4096,1] (bias grad)");
    for (int l = 0; l < 2; l++)
        add(tb, LOOM_OP_SILU_BACK, b_silu_back, (parity_args){.n = {7, 5, 3, 1}, .i = {0, l}},
            "[7,5,3,1]%s", layout_name(l));
    add(tb, LOOM_OP_SILU_BACK, b_silu_back, (parity_args){.n = {4096, 3, 1, 1}}, "[4096,3,1,1]c");
    for (int l = 0; l < 2; l++)
        add(tb, LOOM_OP_GELU_BACK, b_gelu_back, (parity_args){.n = {7, 5, 3, 1}, .i = {0, l}},
            "[7,5,3,1]%s", layout_name(l));
    add(tb, LOOM_OP_GELU_BACK, b_gelu_back, (parity_args){.n = {1536, 3, 1, 1}}, "[1536,3,1,1]c");
    static const int64_t rb[][2] = {{7, 3}, {64, 5}, {4096, 2}};
    for (int s = 0; s < 3; s++)
        add(tb, LOOM_OP_RMS_NORM_BACK, b_rms_norm_back,
            (parity_args){.n = {rb[s][0], rb[s][1], 1, 1}, .f = {1e-5f}}, "[%lld,%lld] eps=1e-5",
            (long long)rb[s][0], (long long)rb[s][1]);
    static const int64_t sb[][2] = {{7, 3}, {33, 6}, {256, 4}};
    for (int s = 0; s < 3; s++)
        add(tb, LOOM_OP_SOFTMAX_BACK, b_softmax_back,
            (parity_args){.n = {sb[s][0], sb[s][1], 1, 1}, .f = {s ? 0.125f : 1.0f}, .i = {s == 1}},
            "[%lld,%lld]%s", (long long)sb[s][0], (long long)sb[s][1], s == 1 ? " causal" : "");
    add(tb, LOOM_OP_SOFTMAX_BACK, b_softmax_back,
        (parity_args){.n = {9, 9, 2, 1}, .f = {0.5f}, .i = {1}}, "[9,9,2] causal scale=0.5");
    /* D, T, B, V, id range */
    static const int64_t gb[][5] = {{7, 5, 1, 11, 11}, {64, 6, 3, 50, 4}, {33, 40, 1, 9, 9}};
    for (int s = 0; s < 3; s++)
        add(tb, LOOM_OP_GET_ROWS_BACK, b_get_rows_back,
            (parity_args){.n = {gb[s][0], gb[s][1], gb[s][2], gb[s][3], gb[s][4]}},
            "D=%lld ids=[%lld,%lld] V=%lld ids<%lld", (long long)gb[s][0], (long long)gb[s][1],
            (long long)gb[s][2], (long long)gb[s][3], (long long)gb[s][4]);
    static const int64_t cb[][2] = {{7, 1}, {7, 5}, {100, 9}};
    for (int s = 0; s < 3; s++)
        add(tb, LOOM_OP_CROSS_ENTROPY_BACK, b_cross_entropy_back,
            (parity_args){.n = {cb[s][0], cb[s][1]}, .i = {s == 2}}, "V=%lld T=%lld%s",
            (long long)cb[s][0], (long long)cb[s][1], s == 2 ? " some targets ignored" : "");
    add(tb, LOOM_OP_CROSS_ENTROPY_BACK, b_cross_entropy_back, (parity_args){.n = {7, 3}, .i = {2}},
        "V=7 T=3 all targets ignored");
    for (int k = 1; k <= 2; k++)
        for (int mode = 0; mode < 3; mode += 2)
            add(tb, LOOM_OP_MOE_GATE_BACK, b_moe_gate_back,
                (parity_args){.n = {8, 11}, .i = {k, mode}}, "E=8 T=11 top%d logits=%s", k,
                mode ? "ties" : "normal");
    add(tb, LOOM_OP_NONE, b_autodiff_mlp, (parity_args){.n = {32, 48, 17, 6}},
        "autodiff: d loss/d w1 of rms_norm -> matmul -> swiglu -> matmul -> cross_entropy");
}

int parity_cases_make(parity_case **out) {
    table tb = {0};
    cases_get_rows(&tb);
    cases_binary(&tb);
    cases_matmul(&tb);
    cases_norm_rope_softmax(&tb);
    cases_activations(&tb);
    cases_flash_attn(&tb);
    cases_flash_attn_paged(&tb);
    parity_cases_paged_batch(&tb);
    parity_cases_attn_back(&tb);
    parity_cases_moe(&tb);
    cases_set_rows(&tb);
    cases_cpy_concat(&tb);
    cases_loss_views(&tb);
    cases_backward(&tb);
    parity_cases_large_logits(&tb);
    parity_cases_legacy(&tb, b_get_rows, b_matmul, b_cpy);
    parity_cases_act8(&tb, b_matmul);
    if (tb.oom) {
        free(tb.v);
        *out = NULL;
        return -1;
    }
    *out = tb.v;
    return tb.n;
}
