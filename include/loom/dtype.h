/* loom/dtype.h - element types, block layouts, conversion and quantization.
 *
 * Layouts are chosen for compatibility with the formats users already have:
 *   q8_0, q4_0  byte-identical to GGUF/ggml blocks (32 values, fp16 scale), so
 *   (q4_1, q5_0, q5_1 likewise; q4_1/q5_1 add an fp16 block minimum)
 *               GGUF tensors are used in place without repacking.
 *   nf4         bitsandbytes/QLoRA NormalFloat-4: blocks of 64 values scaled by
 *               their absmax, two 4-bit codes per byte (first value in the HIGH
 *               nibble, as bitsandbytes packs). Stored structure-of-arrays over
 *               the whole tensor (see loom_nf4_layout), like bitsandbytes'
 *               QuantState, because double quantization groups 256 absmax
 *               values and so cannot be split into self-contained row blocks.
 *   nf4_dq      nf4 with the absmax values double-quantized to 8 bits
 *               (bitsandbytes' compress_statistics=True).
 * See docs/adr/0003-dtypes-and-quant-layouts.md. */
#ifndef LOOM_DTYPE_H
#define LOOM_DTYPE_H

#include "loom/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum loom_dtype {
    LOOM_F32 = 0,
    LOOM_F16,
    LOOM_BF16,
    LOOM_I32,
    LOOM_Q8_0,
    LOOM_Q4_0,
    LOOM_NF4,
    LOOM_NF4_DQ,
    /* ggml legacy types (issue 16) and k-quants (issue 17); byte layouts below.
     * Kernels arrive with their issues: ir/ops.c's weight-dtype tables say
     * which ops accept each one today. */
    LOOM_Q4_1,
    LOOM_Q5_0,
    LOOM_Q5_1,
    LOOM_Q2_K,
    LOOM_Q3_K,
    LOOM_Q4_K,
    LOOM_Q5_K,
    LOOM_Q6_K,
    LOOM_Q8_K, /* activations only, as in ggml */
    LOOM_DTYPE_COUNT
} loom_dtype;

#define LOOM_QK8_0        32
#define LOOM_QK4_0        32
#define LOOM_NF4_BLOCK    64  /* values per absmax */
#define LOOM_NF4_DQ_BLOCK 256 /* absmax values per second-level scale */

/* GGUF block_q8_0: x[i] = d * qs[i]. */
typedef struct loom_block_q8_0 {
    uint16_t d; /* fp16 scale */
    int8_t qs[LOOM_QK8_0];
} loom_block_q8_0;

/* GGUF block_q4_0: x[j] = d * ((qs[j] & 15) - 8), x[j+16] = d * ((qs[j] >> 4) - 8). */
typedef struct loom_block_q4_0 {
    uint16_t d; /* fp16 scale */
    uint8_t qs[LOOM_QK4_0 / 2];
} loom_block_q4_0;

#define LOOM_QK4_1        32
#define LOOM_QK5_0        32
#define LOOM_QK5_1        32
#define LOOM_QK_K         256 /* values per k-quant super-block */
#define LOOM_K_SCALE_SIZE 12  /* packed 6-bit scales/mins of q4_K/q5_K (and q3_K's 12 bytes) */

/* GGUF block_q4_1: x[j] = d * (qs[j] & 15) + m, x[j+16] = d * (qs[j] >> 4) + m. */
typedef struct loom_block_q4_1 {
    uint16_t d, m; /* fp16 scale and minimum */
    uint8_t qs[LOOM_QK4_1 / 2];
} loom_block_q4_1;

/* GGUF block_q5_0: the 5th bit of value j is bit j of qh (little-endian u32). */
typedef struct loom_block_q5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[LOOM_QK5_0 / 2];
} loom_block_q5_0;

typedef struct loom_block_q5_1 {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[LOOM_QK5_1 / 2];
} loom_block_q5_1;

/* k-quant super-blocks of 256 values, field order exactly as ggml-common.h. */
typedef struct loom_block_q2_K {
    uint8_t scales[LOOM_QK_K / 16]; /* 4-bit scale | 4-bit min per 16 values */
    uint8_t qs[LOOM_QK_K / 4];
    uint16_t d, dmin;
} loom_block_q2_K;

typedef struct loom_block_q3_K {
    uint8_t hmask[LOOM_QK_K / 8];
    uint8_t qs[LOOM_QK_K / 4];
    uint8_t scales[12]; /* 6-bit scales */
    uint16_t d;
} loom_block_q3_K;

typedef struct loom_block_q4_K {
    uint16_t d, dmin;
    uint8_t scales[LOOM_K_SCALE_SIZE];
    uint8_t qs[LOOM_QK_K / 2];
} loom_block_q4_K;

typedef struct loom_block_q5_K {
    uint16_t d, dmin;
    uint8_t scales[LOOM_K_SCALE_SIZE];
    uint8_t qh[LOOM_QK_K / 8];
    uint8_t qs[LOOM_QK_K / 2];
} loom_block_q5_K;

typedef struct loom_block_q6_K {
    uint8_t ql[LOOM_QK_K / 2];
    uint8_t qh[LOOM_QK_K / 4];
    int8_t scales[LOOM_QK_K / 16];
    uint16_t d;
} loom_block_q6_K;

typedef struct loom_block_q8_K {
    float d;
    int8_t qs[LOOM_QK_K];
    int16_t bsums[LOOM_QK_K / 16];
} loom_block_q8_K;

/* Static name, e.g. "q4_0"; "?" for an out-of-range value. */
LOOM_API const char *loom_dtype_name(loom_dtype t);
/* Parse a name from loom_dtype_name(); LOOM_ERR_INVALID_ARG if unknown. */
LOOM_API loom_status loom_dtype_from_name(const char *name, loom_dtype *out);

/* Values per block: 1 for plain types, 32 for q8_0/q4_0/q4_1/q5_0/q5_1, 256
 * for the k-quants, 64 for nf4/nf4_dq. */
LOOM_API int64_t loom_dtype_block_size(loom_dtype t);
/* Bytes per block for row-blocked types (f32 4, f16 2, q8_0 34, q4_0 18).
 * 0 for nf4/nf4_dq, whose size is only defined for a whole tensor. */
LOOM_API size_t loom_dtype_block_bytes(loom_dtype t);
LOOM_API bool loom_dtype_is_quantized(loom_dtype t); /* q8_0, q4_0, nf4, nf4_dq */
LOOM_API bool loom_dtype_is_nf4(loom_dtype t);       /* nf4, nf4_dq */
LOOM_API bool loom_dtype_is_float(loom_dtype t);     /* f32, f16, bf16 */

/* Bytes needed to store n contiguous elements (n must be a multiple of the
 * block size). For nf4 this includes the absmax section(s). */
LOOM_API size_t loom_dtype_nbytes(loom_dtype t, int64_t n);

/* ---- scalar conversions (round-to-nearest-even, NaN preserved) ---- */
LOOM_API uint16_t loom_f32_to_f16(float f);
LOOM_API float loom_f16_to_f32(uint16_t h);
LOOM_API uint16_t loom_f32_to_bf16(float f);
LOOM_API float loom_bf16_to_f32(uint16_t h);

/* ---- row conversions for row-blocked dtypes (everything except nf4) ----
 * n must be a multiple of the block size. I32 converts by value (int <-> float). */
LOOM_API loom_status loom_dequantize_row(loom_dtype t, const void *src, float *dst, int64_t n);
/* q8_0, q4_0, q4_1, q5_0 and q5_1 round exactly as ggml's reference
 * quantizers do (and dequantize as ggml/gguf-py do, bit for bit), so files
 * written by loom and by llama.cpp hold the same bytes for the same input.
 * The k-quants q2_K..q6_K dequantize bit-exactly as ggml and gguf-py (ADR
 * 0024) and quantize with ggml's reference algorithm (no importance
 * matrix; ADR 0039), as does q8_K. */
LOOM_API loom_status loom_quantize_row(loom_dtype t, const float *src, void *dst, int64_t n);

/* ---- NF4 ----
 * For an nf4/nf4_dq tensor of n elements (n % 64 == 0) the bytes are:
 *   codes   : n/2 bytes; element i in byte i/2, high nibble when i is even.
 *   nf4     : absmax  f32[n/64]
 *   nf4_dq  : qabsmax u8[n/64], zero padding to a multiple of 4 bytes,
 *             scale2  f32[ceil(n/64/256)], offset f32[1]
 *             absmax[b] = loom_nf4_dq_code[qabsmax[b]] * scale2[b/256] + offset
 * Element value: x[i] = loom_nf4_code[code_i] * absmax[i/64].
 * Double quantization follows bitsandbytes: offset = mean(absmax); each group
 * of 256 (absmax - offset) values is scaled by its max |.| into [-1, 1] and
 * mapped to the nearest entry of the signed 8-bit dynamic map. */
/* bitsandbytes NF4 codebook */
LOOM_API extern const float loom_nf4_code[16];
/* bitsandbytes create_dynamic_map(signed=True), sorted */
LOOM_API extern const float loom_nf4_dq_code[256];

typedef struct loom_nf4_layout {
    const uint8_t *codes;
    const float *absmax;    /* nf4 only, else NULL */
    const uint8_t *qabsmax; /* nf4_dq only, else NULL */
    const float *scale2;    /* nf4_dq only */
    float offset;           /* nf4_dq only */
    int64_t n;
} loom_nf4_layout;

/* Locate the sections of an nf4/nf4_dq tensor of n elements at base. */
LOOM_API loom_status loom_nf4_layout_of(loom_dtype t, const void *base, int64_t n,
                                        loom_nf4_layout *out);
/* Absmax of block b, double-quantized or not. */
LOOM_API float loom_nf4_absmax(const loom_nf4_layout *l, int64_t b);
/* Dequantize count elements starting at element first (first % 64 == 0 not required). */
LOOM_API void loom_nf4_dequantize(const loom_nf4_layout *l, int64_t first, int64_t count,
                                  float *dst);
/* Quantize n floats into dst (loom_dtype_nbytes(t, n) bytes). */
LOOM_API loom_status loom_nf4_quantize(loom_dtype t, const float *src, int64_t n, void *dst);

/* Convert n elements of a whole contiguous tensor between any two dtypes
 * (nf4 included, as source or destination). */
LOOM_API loom_status loom_convert(loom_dtype src_t, const void *src, loom_dtype dst_t, void *dst,
                                  int64_t n);

#ifdef __cplusplus
}
#endif
#endif
