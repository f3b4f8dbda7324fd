/* ir/graph_internal.h - the graph struct and helpers shared by the ir sources. Internal. */
#ifndef LOOM_IR_GRAPH_INTERNAL_H
#define LOOM_IR_GRAPH_INTERNAL_H

#include "loom/ir.h"

struct loom_graph {
    loom_tensor **tensors; /* every tensor, index = id; each owned by the graph */
    int n_tensors, cap_tensors;
    uint8_t *in_order;   /* in_order[id]: tensor already in nodes[] */
    loom_tensor **nodes; /* execution order (non-leaf tensors) */
    int n_nodes, cap_nodes;
    void **blobs; /* host memory of constant leaves, owned by the graph */
    int n_blobs, cap_blobs;
    loom_status status; /* first error, sticky */
    char error[512];
};

/* New contiguous tensor with exactly 4 extents; NULL (and error recorded) on failure. */
loom_tensor *loom_ir_new_tensor(loom_graph *g, loom_dtype t, const int64_t ne[4]);
/* loom_graph_expand of several roots at once: their closure in id order. */
loom_status loom_ir_expand_many(loom_graph *g, loom_tensor *const *ts, int n);
/* Leaf f32 tensor of extents ne filled with value; its host memory is owned by g. */
loom_tensor *loom_ir_constant(loom_graph *g, const int64_t ne[4], float value);
void loom_ir_contiguous_strides(loom_dtype t, const int64_t *ne, size_t *nb);

#endif
