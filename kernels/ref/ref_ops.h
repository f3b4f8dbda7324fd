/* kernels/ref/ref_ops.h - per-op entry points of the reference kernels,
 * dispatched by loom_ref_compute (ref.c). Internal. */
#ifndef LOOM_KERNELS_REF_OPS_H
#define LOOM_KERNELS_REF_OPS_H

#include <stddef.h>

#include "kernels/ref/ref.h"

/* One call's view of the work: node to compute, this thread's share, and
 * where to put an error message. */
typedef struct loom_ref_ctx {
    const loom_tensor *node;
    int ith, nth;
    char *err;
    size_t err_n;
} loom_ref_ctx;

/* Record a printf-style message in c->err (if any); returns s. */
loom_status loom_ref_fail(const loom_ref_ctx *c, loom_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Split [0, n) into nth contiguous chunks; this thread gets [*lo, *hi). */
void loom_ref_range(const loom_ref_ctx *c, int64_t n, int64_t *lo, int64_t *hi);

/* Row r of a tensor with extents ne -> (i1, i2, i3). */
static inline void loom_ref_row_index(const int64_t *ne, int64_t r, int64_t *i1, int64_t *i2,
                                      int64_t *i3) {
    *i1 = r % ne[1];
    *i2 = (r / ne[1]) % ne[2];
    *i3 = r / (ne[1] * ne[2]);
}

/* Rows of ne[0] elements in t. */
static inline int64_t loom_ref_nrows(const loom_tensor *t) {
    return t->ne[1] * t->ne[2] * t->ne[3];
}

static inline bool loom_ref_same_shape(const loom_tensor *a, const loom_tensor *b) {
    for (int i = 0; i < LOOM_MAX_DIMS; i++)
        if (a->ne[i] != b->ne[i]) return false;
    return true;
}

/* Output element pointer (outputs are f32). */
static inline float *loom_ref_out(const loom_tensor *t, int64_t i0, int64_t i1, int64_t i2,
                                  int64_t i3) {
    return (float *)loom_ref_ptr(t, i0, i1, i2, i3);
}

/* ref_elementwise.c, ref_norm.c, ref_misc.c */
loom_status loom_ref_get_rows(const loom_ref_ctx *c);
loom_status loom_ref_add(const loom_ref_ctx *c);
loom_status loom_ref_mul(const loom_ref_ctx *c);
loom_status loom_ref_scale(const loom_ref_ctx *c);
loom_status loom_ref_rms_norm(const loom_ref_ctx *c);
loom_status loom_ref_rope(const loom_ref_ctx *c);
loom_status loom_ref_softmax(const loom_ref_ctx *c);
loom_status loom_ref_silu(const loom_ref_ctx *c);
loom_status loom_ref_swiglu(const loom_ref_ctx *c);
loom_status loom_ref_cpy(const loom_ref_ctx *c);
loom_status loom_ref_concat(const loom_ref_ctx *c);
loom_status loom_ref_cross_entropy(const loom_ref_ctx *c);
loom_status loom_ref_sum_to(const loom_ref_ctx *c);
loom_status loom_ref_silu_back(const loom_ref_ctx *c);
loom_status loom_ref_gelu(const loom_ref_ctx *c);
loom_status loom_ref_gelu_back(const loom_ref_ctx *c);
loom_status loom_ref_rms_norm_back(const loom_ref_ctx *c);
loom_status loom_ref_softmax_back(const loom_ref_ctx *c);
loom_status loom_ref_get_rows_back(const loom_ref_ctx *c);
loom_status loom_ref_cross_entropy_back(const loom_ref_ctx *c);
loom_status loom_ref_set_rows(const loom_ref_ctx *c);
/* ref_attn_back.c */
loom_status loom_ref_flash_attn_back(const loom_ref_ctx *c);

/* ref_matmul.c, ref_attn.c, ref_moe.c */
loom_status loom_ref_matmul(const loom_ref_ctx *c);
loom_status loom_ref_flash_attn(const loom_ref_ctx *c);
loom_status loom_ref_moe(const loom_ref_ctx *c);
loom_status loom_ref_moe_gate(const loom_ref_ctx *c);
loom_status loom_ref_moe_gate_back(const loom_ref_ctx *c);

#endif
