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

#ifdef __cplusplus
}
#endif
#endif
