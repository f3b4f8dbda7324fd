/* parity/parity_cases_legacy.c - cases for ggml's legacy quant types q4_1,
 * q5_0 and q5_1 (issue 16), kept apart from the q8_0/q4_0 tables so that new
 * types join without reshaping those: get_rows tables, matmul weights
 * (decode, odd and prefill-tile shapes, the packed prefill's blocking edges,
 * batched broadcast, permuted activations, quantized vs dequantized
 * equivalence), cpy to and from f32, and MoE experts (decode and prefill).
 * The builders are parity_cases.c's and parity_cases_moe.c's, passed in. */
#include <string.h>

#include "loom/backend_sdk.h"
#include "parity/parity_internal.h"

static const loom_dtype k_legacy[] = {LOOM_Q4_1, LOOM_Q5_0, LOOM_Q5_1};
#define N_LEGACY ((int)(sizeof k_legacy / sizeof k_legacy[0]))

void parity_cases_legacy(parity_table *tb, parity_build_fn get_rows, parity_build_fn matmul,
                         parity_build_fn cpy) {
    for (int q = 0; q < N_LEGACY; q++) {
        const loom_dtype t = k_legacy[q];
        const char *tn = loom_dtype_name(t);
        /* get_rows: one and several blocks per row, ids [T] and [T, B] */
        parity_table_add(tb, LOOM_OP_GET_ROWS, get_rows,
                         (parity_args){.t = {t}, .n = {32, 17, 5, 1}}, "%s D=32 V=17 ids=[5,1]",
                         tn);
        parity_table_add(tb, LOOM_OP_GET_ROWS, get_rows,
                         (parity_args){.t = {t}, .n = {96, 17, 4, 3}}, "%s D=96 V=17 ids=[4,3]",
                         tn);

        /* matmul: K, N, M, W2, X2, W3, X3 with f32 activations, as cases_matmul */
        static const int64_t shapes[][7] = {
            {64, 33, 1, 1, 1, 1, 1},   /* decode */
            {128, 17, 7, 1, 1, 1, 1},  /* odd N, M (decode path per row) */
            {256, 64, 32, 1, 1, 1, 1}, /* a small prefill tile */
            {64, 9, 5, 2, 8, 1, 2},    /* batched: r2 = 4, X3 broadcast */
        };
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            parity_args a = {.t = {t, LOOM_F32}};
            memcpy(a.n, shapes[s], sizeof shapes[s]);
            parity_table_add(tb, LOOM_OP_MATMUL, matmul, a,
                             "w=%s x=f32 K=%lld N=%lld M=%lld W2=%lld X2=%lld X3=%lld", tn,
                             (long long)a.n[0], (long long)a.n[1], (long long)a.n[2],
                             (long long)a.n[3], (long long)a.n[4], (long long)a.n[6]);
        }
        parity_table_add(tb, LOOM_OP_MATMUL, matmul,
                         (parity_args){.t = {t, LOOM_F16}, .n = {64, 33, 1}},
                         "w=%s x=f16 K=64 N=33 M=1", tn);
        parity_table_add(tb, LOOM_OP_MATMUL, matmul,
                         (parity_args){.t = {t, LOOM_F32}, .n = {64, 16, 6, 4, 4}, .i = {1}},
                         "w=%s x=f32(permuted) K=64 N=16 M=6 X2=4", tn);
        /* packed prefill: several weight blocks, K % 512 != 0, M % MR != 0 */
        parity_table_add(tb, LOOM_OP_MATMUL, matmul,
                         (parity_args){.t = {t, LOOM_BF16}, .n = {640, 300, 29}},
                         "w=%s x=bf16 K=640 N=300 M=29", tn);
        /* long decode row (many blocks, both accumulator chains) */
        parity_table_add(tb, LOOM_OP_MATMUL, matmul,
                         (parity_args){.t = {t, LOOM_F32}, .n = {4096, 8, 1}},
                         "w=%s x=f32 K=4096 N=8 M=1", tn);
        /* quantized matmul == dequantize then f32 matmul */
        parity_table_add(tb, LOOM_OP_MATMUL, matmul,
                         (parity_args){.t = {t, LOOM_F32}, .n = {128, 17, 7}, .i = {0, 0, 1}},
                         "w=%s x=f32 K=128 N=17 M=7 vs cpy(w,f32)", tn);

        /* cpy: the quantizer (bytes must match the reference's) and back */
        parity_table_add(tb, LOOM_OP_CPY, cpy,
                         (parity_args){.t = {LOOM_F32, t}, .n = {64, 6, 2, 1}},
                         "f32[64,6,2,1] -> %s", tn);
        parity_table_add(tb, LOOM_OP_CPY, cpy,
                         (parity_args){.t = {t, LOOM_F32}, .n = {64, 6, 2, 1}},
                         "%s[64,6,2,1] -> f32", tn);
        parity_table_add(tb, LOOM_OP_CPY, cpy,
                         (parity_args){.t = {LOOM_F32, t}, .n = {64, 6, 4, 1}, .i = {0, 2}},
                         "f32[64,6,4,1]P -> %s", tn);
        /* wide values, and integers (ties at the code boundaries, equal rows) */
        parity_table_add(tb, LOOM_OP_CPY, cpy,
                         (parity_args){.t = {LOOM_F32, t}, .n = {96, 5}, .i = {0, 0, 1}},
                         "f32[96,5] -> %s (wide values)", tn);
        parity_table_add(tb, LOOM_OP_CPY, cpy,
                         (parity_args){.t = {LOOM_F32, t}, .n = {32, 9}, .i = {0, 0, 2}},
                         "f32[32,9] -> %s (integers)", tn);
    }
}

/* The int8-activation kernels (ADR 0036, 0043): an odd number of 32-value
 * blocks (AVX-512 pairs blocks, then one left over), activation rows around
 * the microkernel's group sizes (4 on AVX2, 8 on AVX-512) and a prefill
 * batch, and a weight range of several cache panels (600 rows), for every
 * weight type they take; k-quants with an odd number of super-blocks. */
void parity_cases_act8(parity_table *tb, parity_build_fn matmul) {
    static const loom_dtype types[] = {LOOM_Q4_0, LOOM_Q4_1, LOOM_Q5_0, LOOM_Q5_1,
                                       LOOM_Q8_0, LOOM_Q4_K, LOOM_Q6_K};
    static const int64_t NMs[][2] = {{19, 1}, {19, 4},  {19, 5},  {19, 8},
                                     {19, 9}, {19, 33}, {600, 12}};
    for (size_t q = 0; q < sizeof types / sizeof types[0]; q++) {
        const loom_dtype t = types[q];
        const int64_t K = t == LOOM_Q4_K || t == LOOM_Q6_K ? 768 : 96;
        for (size_t c = 0; c < sizeof NMs / sizeof NMs[0]; c++)
            parity_table_add(tb, LOOM_OP_MATMUL, matmul,
                             (parity_args){.t = {t, LOOM_F32}, .n = {K, NMs[c][0], NMs[c][1]}},
                             "w=%s x=f32 K=%lld N=%lld M=%lld (act8 edges)", loom_dtype_name(t),
                             (long long)K, (long long)NMs[c][0], (long long)NMs[c][1]);
    }
    /* The output head (flagged LOOM_FLAG_F32_ACT, ADR 0036 addendum 3): the
     * f32 path on every backend, at the rows of a decode, of speculative
     * verifications (up to LOOM_SPEC_MAX_DRAFT + 1 rows) and past them; K with an odd
     * block count. */
    static const loom_dtype heads[] = {LOOM_Q8_0, LOOM_Q6_K, LOOM_Q4_0, LOOM_Q4_1,
                                       LOOM_Q5_0, LOOM_Q5_1, LOOM_Q4_K};
    for (size_t q = 0; q < sizeof heads / sizeof heads[0]; q++) {
        const loom_dtype t = heads[q];
        const int64_t K = t == LOOM_Q6_K || t == LOOM_Q4_K ? 768 : 608;
        static const int64_t Ms[] = {1, 5, 8, 9};
        for (int m = 0; m < 4; m++)
            parity_table_add(
                tb, LOOM_OP_MATMUL, matmul,
                (parity_args){.t = {t, LOOM_F32}, .n = {K, 37, Ms[m]}, .i = {0, 0, 0, 1}},
                "w=%s x=f32 K=%lld N=37 M=%lld (head, LOOM_FLAG_F32_ACT)", loom_dtype_name(t),
                (long long)K, (long long)Ms[m]);
    }
}

void parity_cases_legacy_moe(parity_table *tb, parity_build_fn moe) {
    for (int q = 0; q < N_LEGACY; q++)
        for (int t = 0; t < 3; t++) {
            static const int64_t Ts[] = {1, 9, 33};
            parity_table_add(
                tb, LOOM_OP_MOE, moe,
                (parity_args){.n = {64, 128, 8, Ts[t]}, .t = {k_legacy[q]}, .i = {2, t ? 1 : 0}},
                "w=%s Dm=64 F=128 E=8 top2 T=%lld logits=%s vs decomposition",
                loom_dtype_name(k_legacy[q]), (long long)Ts[t], t ? "skewed" : "normal");
        }
}
