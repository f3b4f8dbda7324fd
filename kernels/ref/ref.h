/* kernels/ref/ref.h - scalar reference kernels: the oracle every backend is
 * compared against. Written for clarity: f32 data, f64 accumulation for
 * reductions, no SIMD. Internal to libloom (not a public header) except
 * for the two entry points in loom/backend_sdk.h. */
#ifndef LOOM_KERNELS_REF_H
#define LOOM_KERNELS_REF_H

#include <stdbool.h>
#include <stddef.h>

#include "loom/backend_sdk.h"
#include "loom/ir.h"

/* loom_ref_supports and loom_ref_compute, the whole-node entry points, are
 * public (loom/backend_sdk.h): plugins and the parity suite call them. */

/* Host pointer to element (i0, i1, i2, i3) of a row-blocked tensor (for
 * quantized types i0 must be a block start). */
void *loom_ref_ptr(const loom_tensor *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3);
/* Read element as float (any dtype but nf4 and quantized). */
float loom_ref_get_f32(const loom_tensor *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3);
/* Dequantize/convert row (i1, i2, i3) of t (ne[0] values, any dtype incl. nf4
 * when t is contiguous) into dst. */
/* MoE routing for one token (the rule loom_moe defines): idx[k] = the top-k
 * experts by logits[E] in decreasing order (ties: lower index first), g[k] =
 * their softmax, computed in double. sel[E] is scratch. */
void loom_ref_moe_route(const float *logits, int64_t E, int64_t k, unsigned char *sel,
                        int64_t *idx, double *g);

void loom_ref_get_row(const loom_tensor *t, int64_t i1, int64_t i2, int64_t i3, float *dst);

#endif
