/* parity/parity_cases_moe.c - the MoE family of the parity case table
 * (fused moe and its routing op moe_gate): every expert weight dtype, decode
 * and prefill token counts, top-1/2/3, uneven expert loads and routing ties.
 *
 * Sizes matter as much as dtypes here: the cpu backend runs its optimised
 * MoE kernel only when every weight row streams whole blocks (nf4: rows of a
 * multiple of 64 values, so Dm and F both multiples of 64) and silently
 * takes the reference kernel otherwise. The F = 96 cases exercise that
 * fallback; the F = 128 ones the optimised kernel for every weight dtype
 * (the suite's coverage check fails when a claimed kernel never runs). */
#include <stdint.h>
#include <stdio.h>

#include "parity/parity_internal.h"

static int64_t max64(int64_t a, int64_t b) {
    return a > b ? a : b;
}

static loom_tensor *leaf4(parity_ctx *c, loom_graph *g, loom_dtype t, int64_t a, int64_t b,
                          int64_t cc, int64_t d) {
    return parity_input(c, g, t, a, b, cc, d);
}

static const char *dn(loom_dtype t) {
    return loom_dtype_name(t);
}

/* Router logits where expert 3 takes most tokens and expert 6 none. */
static void fill_logits_skewed(float *dst, int64_t n, const loom_tensor *t, uint64_t *rng) {
    int64_t E = t->ne[0];
    for (int64_t i = 0; i < n; i++)
        dst[i] = parity_rand_normal(rng);
    for (int64_t row = 0; row * E < n; row++) {
        if (E > 3 && parity_rand_uniform(rng) < 0.8f) dst[row * E + 3] += 4.0f;
        if (E > 6) dst[row * E + 6] -= 8.0f;
    }
}

/* Small integers: many exact ties (lower expert index must win). */
static void fill_logits_ties(float *dst, int64_t n, const loom_tensor *t, uint64_t *rng) {
    (void)t;
    for (int64_t i = 0; i < n; i++)
        dst[i] = (float)(parity_rand_u64(rng) % 3);
}

void parity_fill_logits(parity_ctx *c, const loom_tensor *logits, int mode) {
    if (mode == 1)
        parity_fill_custom(c, logits, fill_logits_skewed);
    else if (mode == 2)
        parity_fill_custom(c, logits, fill_logits_ties);
    else
        parity_fill_normal(c, logits, 1.0f);
}

/* n0 Dm, n1 F, n2 E, n3 T; i0 top_k; t0 expert weight dtype; i1 logits
 * (0 normal, 1 skewed loads, 2 ties); i2 logits = matmul(router, x). */
static loom_tensor *b_moe(parity_ctx *c, loom_graph *g, const parity_args *a) {
    int64_t Dm = a->n[0], F = a->n[1], E = a->n[2], T = a->n[3];
    loom_tensor *x = leaf4(c, g, LOOM_F32, Dm, T, 1, 1);
    loom_tensor *logits;
    if (a->i[2]) {
        loom_tensor *router = leaf4(c, g, LOOM_F32, Dm, E, 1, 1);
        logits = loom_matmul(g, router, x);
    } else {
        logits = leaf4(c, g, LOOM_F32, E, T, 1, 1);
        parity_fill_logits(c, logits, a->i[1]);
    }
    loom_tensor *gate = leaf4(c, g, a->t[0], Dm, F, E, 1);
    loom_tensor *up = leaf4(c, g, a->t[0], Dm, F, E, 1);
    loom_tensor *down = leaf4(c, g, a->t[0], F, Dm, E, 1);
    parity_fill_uniform(c, gate, -0.5f, 0.5f);
    parity_fill_uniform(c, up, -0.5f, 0.5f);
    parity_fill_uniform(c, down, -0.5f, 0.5f);
    parity_reduce(c, max64(Dm, F));
    loom_tensor *out = loom_moe(g, x, logits, gate, up, down, a->i[0]);
    parity_equiv(c, g, loom_decompose(g, out));
    return out;
}

/* n0 E, n1 T; i0 top_k; i1 logits mode. */
static loom_tensor *b_moe_gate(parity_ctx *c, loom_graph *g, const parity_args *a) {
    loom_tensor *logits = leaf4(c, g, LOOM_F32, a->n[0], a->n[1], 1, 1);
    parity_fill_logits(c, logits, a->i[1]);
    return loom_moe_gate(g, logits, a->i[0]);
}

/* Prefill through the cpu's grouped expert GEMM (ADR 0040: an expert with
 * >= 8 routed tokens runs the packed GEMM over its gathered rows, fewer run
 * per-token dots). Every expert weight dtype on skewed loads, so one call
 * mixes a GEMM expert (expert 3, most tokens), per-token experts with a
 * handful and an expert with none (6); odd f32/f16 sizes for the partial
 * strips and vector tails; and a q4_0 case with Dm over the GEMM's 512-value
 * K block and an expert over its 256-row block. */
static void parity_cases_moe_grouped(parity_table *tb) {
    static const loom_dtype wt[] = {LOOM_F32,  LOOM_F16,  LOOM_BF16, LOOM_Q8_0, LOOM_Q4_0,
                                    LOOM_Q4_1, LOOM_Q5_0, LOOM_Q5_1, LOOM_NF4,  LOOM_NF4_DQ,
                                    LOOM_Q2_K, LOOM_Q3_K, LOOM_Q4_K, LOOM_Q5_K, LOOM_Q6_K};
    for (size_t w = 0; w < sizeof wt / sizeof wt[0]; w++) {
        /* k-quants need 256-value rows; the others keep the reference cheap */
        const int64_t n = wt[w] >= LOOM_Q2_K && wt[w] <= LOOM_Q6_K ? 256 : 128;
        const int64_t T = n == 256 ? 24 : 40;
        parity_table_add(tb, LOOM_OP_MOE, b_moe,
                         (parity_args){.n = {n, n, 8, T}, .t = {wt[w]}, .i = {2, 1}},
                         "w=%s Dm=%lld F=%lld E=8 top2 T=%lld logits=skewed grouped gemm vs "
                         "decomposition",
                         dn(wt[w]), (long long)n, (long long)n, (long long)T);
    }
    static const loom_dtype wo[] = {LOOM_F32, LOOM_F16};
    for (int w = 0; w < 2; w++)
        parity_table_add(tb, LOOM_OP_MOE, b_moe,
                         (parity_args){.n = {72, 100, 8, 48}, .t = {wo[w]}, .i = {3, 1}},
                         "w=%s Dm=72 F=100 E=8 top3 T=48 logits=skewed grouped gemm tails vs "
                         "decomposition",
                         dn(wo[w]));
    parity_table_add(tb, LOOM_OP_MOE, b_moe,
                     (parity_args){.n = {576, 160, 4, 300}, .t = {LOOM_Q4_0}, .i = {2, 1}},
                     "w=q4_0 Dm=576 F=160 E=4 top2 T=300 logits=skewed grouped gemm K and M "
                     "blocks vs decomposition");
}

void parity_cases_moe(parity_table *tb) {
    static const loom_dtype wt[] = {LOOM_F32,  LOOM_F16, LOOM_BF16,  LOOM_Q8_0,
                                    LOOM_Q4_0, LOOM_NF4, LOOM_NF4_DQ};
    static const int64_t Ts[] = {1, 9, 33};
    static const char *lm[] = {"normal", "skewed", "ties"};
    for (int w = 0; w < 7; w++)
        for (int t = 0; t < 3; t++)
            for (int k = 1; k <= 2; k++) {
                /* Uneven loads for most cases; the decode case uses plain logits. */
                int mode = t == 0 ? 0 : 1;
                parity_table_add(
                    tb, LOOM_OP_MOE, b_moe,
                    (parity_args){.n = {64, 96, 8, Ts[t]}, .t = {wt[w]}, .i = {k, mode}},
                    "w=%s Dm=64 F=96 E=8 top%d T=%lld logits=%s vs decomposition", dn(wt[w]), k,
                    (long long)Ts[t], lm[mode]);
            }
    for (int k = 1; k <= 2; k++) {
        parity_table_add(tb, LOOM_OP_MOE, b_moe,
                         (parity_args){.n = {64, 96, 8, 7}, .t = {LOOM_F32}, .i = {k, 2}},
                         "w=f32 Dm=64 F=96 E=8 top%d T=7 logits=ties vs decomposition", k);
        parity_table_add(
            tb, LOOM_OP_MOE, b_moe,
            (parity_args){.n = {64, 64, 8, 12}, .t = {LOOM_Q4_0}, .i = {k, 0, 1}},
            "w=q4_0 Dm=64 F=64 E=8 top%d T=12 logits=matmul(router,x) vs decomposition", k);
    }
    /* k-quants (ADR 0024): Dm and F multiples of the 256-value super-block;
     * decode and a skewed prefill. */
    for (int w = LOOM_Q2_K; w <= LOOM_Q6_K; w++)
        for (int t = 0; t < 2; t++)
            parity_table_add(
                tb, LOOM_OP_MOE, b_moe,
                (parity_args){.n = {256, 256, 4, t ? 9 : 1}, .t = {(loom_dtype)w}, .i = {2, t}},
                "w=%s Dm=256 F=256 E=4 top2 T=%d logits=%s vs decomposition", dn((loom_dtype)w),
                t ? 9 : 1, t ? "skewed" : "normal");
    /* Prefill: > 64 (token, slot) pairs on expert 3, several tiles of the CUDA grouped GEMM. */
    static const loom_dtype wp[] = {LOOM_F16, LOOM_Q8_0, LOOM_NF4};
    for (int w = 0; w < 3; w++)
        parity_table_add(
            tb, LOOM_OP_MOE, b_moe, (parity_args){.n = {64, 96, 8, 100}, .t = {wp[w]}, .i = {2, 1}},
            "w=%s Dm=64 F=96 E=8 top2 T=100 logits=skewed vs decomposition", dn(wp[w]));
    /* F = 128: sizes the optimised cpu kernel accepts for every weight dtype
     * (F = 96 above is not a multiple of nf4's 64-value blocks, so nf4 and
     * nf4_dq fell back to the reference there). Decode, and a skewed
     * prefill whose busiest expert takes the dequantize-then-dot path. */
    for (int w = 0; w < 7; w++)
        for (int t = 0; t < 2; t++)
            parity_table_add(tb, LOOM_OP_MOE, b_moe,
                             (parity_args){.n = {64, 128, 8, t ? 9 : 1}, .t = {wt[w]}, .i = {2, t}},
                             "w=%s Dm=64 F=128 E=8 top2 T=%d logits=%s vs decomposition", dn(wt[w]),
                             t ? 9 : 1, lm[t]);
    parity_cases_legacy_moe(tb, b_moe);
    parity_cases_moe_grouped(tb);
    for (int k = 1; k <= 3; k++)
        for (int mode = 0; mode < 3; mode++)
            if (k != 3 || mode != 1)
                parity_table_add(tb, LOOM_OP_MOE_GATE, b_moe_gate,
                                 (parity_args){.n = {8, mode ? 13 : 1}, .i = {k, mode}},
                                 "E=8 top%d T=%d logits=%s", k, mode ? 13 : 1, lm[mode]);
}
