/* runtime/planner.h - activation memory planning (internal to the runtime).
 *
 * Given tensors with sizes and live ranges in execution steps, assign byte
 * offsets in one arena so that tensors alive at the same step never overlap.
 * Used by the scheduler (sched.c) once per backend. */
#ifndef LOOM_RUNTIME_PLANNER_H
#define LOOM_RUNTIME_PLANNER_H

#include <stddef.h>

#include "loom/status.h"

typedef struct loom_plan_item {
    size_t size;    /* bytes; the planner rounds up to the alignment */
    int start, end; /* first and last step at which the tensor is live (inclusive) */
    size_t offset;  /* out: byte offset in the arena (a multiple of the alignment) */
} loom_plan_item;

/* Greedy best fit in order of start step, reusing regions freed by tensors
 * whose end < the new tensor's start. align must be a power of two.
 * *arena_bytes receives the arena size needed. Fails only with LOOM_ERR_OOM
 * (scratch memory) or LOOM_ERR_INVALID_ARG. */
loom_status loom_plan_offsets(loom_plan_item *items, int n, size_t align, size_t *arena_bytes);

#endif
