/* parity/parity_kquant.c - leaves of the k-quant dtypes (q2_K..q6_K).
 *
 * loom has no quantizer for these yet (ADR 0024), so a k-quant leaf is made
 * directly in its block format: random code and sub-block scale bytes, with
 * the f16 super-block scales (d, dmin) set to random finite values sized so
 * that dequantized weights stay within about [-1, 1], like real weights.
 * Every backend reads the same bytes as the reference, so the test is of the
 * kernels, not of a quantizer. */
#include <stddef.h>
#include <string.h>

#include "parity/parity_internal.h"

bool parity_is_kquant(loom_dtype t) {
    return t == LOOM_Q2_K || t == LOOM_Q3_K || t == LOOM_Q4_K || t == LOOM_Q5_K || t == LOOM_Q6_K;
}

static void put_scale(uint8_t *p, float v) {
    const uint16_t h = loom_f32_to_f16(v);
    memcpy(p, &h, 2);
}

loom_status parity_kquant_fill(loom_dtype t, void *dst, int64_t n, uint64_t *rng) {
    if (!parity_is_kquant(t) || n % LOOM_QK_K != 0) return LOOM_ERR_INVALID_ARG;
    const size_t bb = loom_dtype_block_bytes(t);
    uint8_t *b = dst;
    /* offsets of d and dmin (-1: none), and 1 / (largest |scale * code|) */
    size_t od = 0, om = 0;
    bool has_min = true;
    float dmax = 1.0f, mmax = 1.0f;
    switch (t) {
    case LOOM_Q2_K:
        od = offsetof(loom_block_q2_K, d), om = offsetof(loom_block_q2_K, dmin);
        dmax = 1.0f / (15 * 3), mmax = 1.0f / 15;
        break;
    case LOOM_Q3_K:
        od = offsetof(loom_block_q3_K, d), has_min = false;
        dmax = 1.0f / (32 * 4);
        break;
    case LOOM_Q4_K:
        od = offsetof(loom_block_q4_K, d), om = offsetof(loom_block_q4_K, dmin);
        dmax = 1.0f / (63 * 15), mmax = 1.0f / (63 * 2);
        break;
    case LOOM_Q5_K:
        od = offsetof(loom_block_q5_K, d), om = offsetof(loom_block_q5_K, dmin);
        dmax = 1.0f / (63 * 31), mmax = 1.0f / (63 * 2);
        break;
    default: /* q6_K */
        od = offsetof(loom_block_q6_K, d), has_min = false;
        dmax = 1.0f / (128 * 32);
        break;
    }
    for (int64_t i = 0; i < n / LOOM_QK_K; i++, b += bb) {
        for (size_t j = 0; j < bb; j++)
            b[j] = (uint8_t)(parity_rand_u64(rng) >> 56);
        put_scale(b + od, dmax * (0.25f + 0.75f * parity_rand_uniform(rng)));
        if (has_min) put_scale(b + om, mmax * parity_rand_uniform(rng));
    }
    return LOOM_OK;
}
