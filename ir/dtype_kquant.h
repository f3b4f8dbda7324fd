/* ir/dtype_kquant.h - internal: ggml k-quant super-blocks (q2_K .. q6_K, q8_K),
 * called from ir/dtype.c's row conversion switch. Not installed. */
#ifndef LOOM_IR_DTYPE_KQUANT_H
#define LOOM_IR_DTYPE_KQUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "loom/dtype.h"

/* True for q2_K, q3_K, q4_K, q5_K, q6_K and q8_K. */
bool loom_kquant_is(loom_dtype t);

/* Dequantize nb super-blocks of type t (a k-quant) from src into dst
 * (nb * 256 floats). src may be at any byte offset. */
void loom_kquant_dequantize(loom_dtype t, const uint8_t *src, float *dst, int64_t nb);

/* Scale and min (6 bits each) of sub-block j < 8 from the 12 packed bytes
 * of a q4_K / q5_K block. */
void loom_kquant_scale_min(const uint8_t *q, int j, int *sc, int *m);

/* Quantize nb super-blocks (ggml's reference quantizers, no importance
 * matrix); only for the types where loom_kquant_can_quantize is true (every
 * k-quant). */
bool loom_kquant_can_quantize(loom_dtype t);
void loom_kquant_quantize(loom_dtype t, const float *src, uint8_t *dst, int64_t nb);

#endif
