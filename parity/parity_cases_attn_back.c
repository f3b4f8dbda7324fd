/* parity/parity_cases_attn_back.c - the fused flash-attention backward
 * (flash_attn_back: STATS, DQ, DKV) in the parity case table: causal and
 * not, GQA ratios 1/3/8, q_offset, f32 and f16 K/V, permuted-view inputs
 * as the training graph passes them, batch > 1, and a long causal case.
 *
 * Each DQ/DKV case also computes the same gradient through the unfused
 * decomposition (matmul -> softmax -> matmul, the path autodiff took before
 * the fused op) and holds it to the reference as an equivalent output, so
 * the fused op is checked against an independent formulation on every
 * backend. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "parity/parity_internal.h"

static int64_t max64(int64_t a, int64_t b) {
    return a > b ? a : b;
}

/* d(sum(o * dout))/d{q,k,v} through the decomposition of fa, or NULL. */
static loom_tensor *decomposed_grad(loom_graph *g, loom_tensor *fa, loom_tensor *dout,
                                    loom_tensor *leaf) {
    loom_tensor *o = loom_decompose(g, fa);
    loom_tensor *loss = loom_sum_to(g, loom_mul(g, o, dout), (int64_t[]){1, 1, 1, 1});
    if (!loss || loom_graph_expand(g, loss) != LOOM_OK ||
        loom_graph_backward(g, loss, false) != LOOM_OK)
        return NULL;
    return leaf->grad;
}

/* n0 D, n1 Tq, n2 Tk, n3 Hq, n4 Hkv, n5 B; t0 K/V dtype; i0 causal,
 * i1 q_offset, i2 permuted views, i3 part (loom_fa_back_part). */
static loom_tensor *b_fa_back(parity_ctx *c, loom_graph *g, const parity_args *a) {
    const int64_t D = a->n[0], Tq = a->n[1], Tk = a->n[2], Hq = a->n[3], Hkv = a->n[4];
    const int64_t B = max64(a->n[5], 1);
    const int part = a->i[3];
    loom_tensor *q, *k, *v, *lq, *lk, *lv;
    if (a->i[2]) { /* the training graph's layout: [D, H, T] projections permuted */
        lq = parity_input(c, g, LOOM_F32, D, Hq, Tq, B);
        lk = parity_input(c, g, a->t[0], D, Hkv, Tk, B);
        lv = parity_input(c, g, a->t[0], D, Hkv, Tk, B);
        q = loom_permute(g, lq, 0, 2, 1, 3);
        k = loom_permute(g, lk, 0, 2, 1, 3);
        v = loom_permute(g, lv, 0, 2, 1, 3);
    } else {
        q = lq = parity_input(c, g, LOOM_F32, D, Tq, Hq, B);
        k = lk = parity_input(c, g, a->t[0], D, Tk, Hkv, B);
        v = lv = parity_input(c, g, a->t[0], D, Tk, Hkv, B);
    }
    loom_tensor *dout = parity_input(c, g, LOOM_F32, D, Hq, Tq, B);
    parity_fill_normal(c, q, 1.0f);
    parity_fill_normal(c, k, 1.0f);
    const float scale = 1.0f / sqrtf((float)D);
    const bool causal = a->i[0] != 0;
    const int32_t qo = a->i[1];
    loom_tensor *o = loom_flash_attn(g, q, k, v, scale, causal, qo);
    loom_tensor *st = loom_flash_attn_back(g, LOOM_FA_BACK_STATS, q, k, v, dout, o, scale, causal, qo);
    /* dq sums Tk terms of D-long dots; dk/dv sum Tq * group of them. */
    parity_reduce(c, max64(D, Tk) * (part == LOOM_FA_BACK_DKV ? Tq * (Hq / Hkv) : 1));
    if (part == LOOM_FA_BACK_STATS) return st;
    loom_tensor *r = loom_flash_attn_back(g, (loom_fa_back_part)part, q, k, v, dout, st, scale,
                                          causal, qo);
    if (a->t[0] == LOOM_F32 && B == 1) { /* the decomposition's gradient, as an equivalent */
        loom_tensor_set_flags(lq, LOOM_FLAG_PARAM);
        loom_tensor_set_flags(lk, LOOM_FLAG_PARAM);
        loom_tensor_set_flags(lv, LOOM_FLAG_PARAM);
        if (part == LOOM_FA_BACK_DQ) {
            loom_tensor *dq = decomposed_grad(g, o, dout, lq);
            if (dq && a->i[2]) dq = loom_permute(g, dq, 0, 2, 1, 3);
            parity_equiv(c, g, dq);
        } else {
            loom_tensor *dk = decomposed_grad(g, o, dout, lk), *dv = lv->grad;
            if (dk && a->i[2]) {
                dk = loom_permute(g, dk, 0, 2, 1, 3);
                dv = loom_permute(g, dv, 0, 2, 1, 3);
            }
            if (dk && dv) parity_equiv(c, g, loom_concat(g, loom_cont(g, dk), loom_cont(g, dv), 3));
        }
    }
    return r;
}

static const char *part_name(int p) {
    return p == LOOM_FA_BACK_STATS ? "stats" : p == LOOM_FA_BACK_DQ ? "dq" : "dkv";
}

void parity_cases_attn_back(parity_table *tb) {
    /* Tq, Tk, causal, q_offset */
    static const int32_t cfg[][4] = {
        {7, 7, 0, 0},   /* non-causal, odd length */
        {33, 33, 1, 0}, /* causal, crosses key tiles of 16 and query tiles */
        {5, 21, 1, 16}, /* chunked: queries after 16 cached keys */
    };
    static const int64_t gqa[][2] = {{4, 4}, {3, 1}, {8, 1}};
    for (int part = 0; part < 3; part++)
        for (int r = 0; r < 3; r++)
            for (int cc = 0; cc < 3; cc++)
                for (int kv = 0; kv < 2; kv++) {
                    const loom_dtype kt = kv ? LOOM_F16 : LOOM_F32;
                    const int64_t D = (cc + r) & 1 ? 64 : 32;
                    parity_table_add(
                        tb, LOOM_OP_FLASH_ATTN_BACK, b_fa_back,
                        (parity_args){.n = {D, cfg[cc][0], cfg[cc][1], gqa[r][0], gqa[r][1], 1},
                                      .t = {kt},
                                      .i = {cfg[cc][2], cfg[cc][3], (cc + r + kv) & 1, part}},
                        "%s D=%lld Tq=%d Tk=%d Hq=%lld Hkv=%lld kv=%s%s q_offset=%d%s%s",
                        part_name(part), (long long)D, cfg[cc][0], cfg[cc][1],
                        (long long)gqa[r][0], (long long)gqa[r][1], loom_dtype_name(kt),
                        cfg[cc][2] ? " causal" : "", cfg[cc][3],
                        (cc + r + kv) & 1 ? " (permuted views)" : "",
                        part && !kv ? " vs decomposition" : "");
                }
    for (int part = 0; part < 3; part++) {
        parity_table_add(tb, LOOM_OP_FLASH_ATTN_BACK, b_fa_back,
                         (parity_args){.n = {64, 6, 6, 4, 2, 3}, .t = {LOOM_F32}, .i = {1, 0, 1, part}},
                         "%s D=64 Tq=6 Tk=6 Hq=4 Hkv=2 B=3 kv=f32 causal (batched)",
                         part_name(part));
        parity_table_add(tb, LOOM_OP_FLASH_ATTN_BACK, b_fa_back,
                         (parity_args){.n = {64, 160, 160, 3, 1, 1}, .t = {LOOM_F32}, .i = {1, 0, 1, part}},
                         "%s D=64 Tq=160 Tk=160 Hq=3 Hkv=1 kv=f32 causal (long)%s",
                         part_name(part), part ? " vs decomposition" : "");
    }
}
