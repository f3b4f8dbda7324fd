/* loom/backend_sdk.h - what libloom offers backend authors beyond the vtable
 * (loom/backend.h): the reference kernels, as a whole-node oracle.
 *
 * The reference kernels are the oracle every backend is compared against
 * (the parity suite, `loom test-ops`, calls them for each case) and a
 * correct, slow fallback a plugin may run for a node on host memory. Only
 * the node-level entry points are public; the per-op kernels behind them
 * stay internal to libloom (docs/adr/0018-library-surface.md). */
#ifndef LOOM_BACKEND_SDK_H
#define LOOM_BACKEND_SDK_H

#include <stdbool.h>
#include <stddef.h>

#include "loom/export.h"
#include "loom/ir.h"
#include "loom/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Does the reference implement this node (op and dtype combination)? */
LOOM_API bool loom_ref_supports(const loom_tensor *node);

/* Compute node from its sources. Every tensor involved must have host data
 * (t->data, or view_src->data + view_offs for views). The work is split over
 * nth threads: the caller runs this once for each ith in [0, nth) (possibly
 * concurrently) and the union of the calls computes the node; nth = 1 is the
 * plain single-threaded oracle. Data errors (e.g. an id out of range) return
 * LOOM_ERR_INVALID_ARG with a message in err (err may be NULL). */
LOOM_API loom_status loom_ref_compute(const loom_tensor *node, int ith, int nth, char *err,
                                      size_t err_n);

/* ---- int8 activations (ADR 0036) ----
 * The cpu backend runs matmuls of q4_0/q4_1/q5_0/q5_1/q8_0/q4_K/q6_K weights
 * with the activation rows quantized to int8 per 32 values, as llama.cpp
 * does: by default those of at most 8 rows (decode), with LOOM_CPU_ACT=int8
 * (loom serve's default) prefill too, with one arithmetic for any number of
 * rows (ADR 0043); LOOM_CPU_ACT=f32 turns it off.
 * Such a node differs from loom_ref_compute by the activation rounding
 * (~1e-5 NMSE); its oracle is loom_ref_compute_act8, which quantizes the
 * activations the same way and then computes exactly in integers per block. */
#define LOOM_ACT8_QK 32 /* activation values per int8 block */

/* Does the int8-activation rule cover this node? matmul, f32 output and
 * contiguous f32 activation rows (any number of them), a weight of
 * the types above with whole blocks per row, broadcast as matmul allows, and
 * not flagged LOOM_FLAG_F32_ACT. */
LOOM_API bool loom_ref_act8_applies(const loom_tensor *node);

/* Quantize k activations (k a multiple of LOOM_ACT8_QK) the way ggml's
 * quantize_row_q8_0 does, but keeping the scale in f32: per block of 32,
 * d = max|x| / 127, q = roundf(x / d) (as x * (1/d)); also the integer sum of
 * each block's q (for weights with a min). q[k], d[k/32], s[k/32]. */
LOOM_API void loom_act8_quantize_row(const float *x, int64_t k, int8_t *q, float *d, int32_t *s);

/* loom_ref_compute, except that a node for which loom_ref_act8_applies
 * quantizes its activation rows with loom_act8_quantize_row and sums
 * d_w * d_x * (integer block dot) (+ m_w * d_x * block sum) in double. */
LOOM_API loom_status loom_ref_compute_act8(const loom_tensor *node, int ith, int nth, char *err,
                                           size_t err_n);

#ifdef __cplusplus
}
#endif
#endif
