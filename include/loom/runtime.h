/* loom/runtime.h - backend registry, scheduler, memory planner, tensor I/O.
 *
 * The registry is the one process-wide object in loom: it holds every
 * backend that was compiled in or found as a plugin, initialised once. */
#ifndef LOOM_RUNTIME_H
#define LOOM_RUNTIME_H

#include "loom/export.h"

#include <stdbool.h>
#include <stddef.h>

#include "loom/backend.h"
#include "loom/ir.h"
#include "loom/status.h"
#include "loom/threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------- registry ---------------- */

/* Register the built-in backends (cpu), then load every plugin file
 * libloom-backend-<name>.so in $LOOM_PLUGIN_DIR (default: the directory of
 * libloom itself), then the files listed in $LOOM_EXTRA_PLUGINS (colon-
 * separated paths). Idempotent. Each backend is initialised; one that fails
 * to load or to init stays listed as unavailable with its reason.
 * A backend whose table has device_count gets one entry per device, in
 * device order, named name:0, name:1, ... (docs/adr/0042); one that drives
 * a single device keeps its plain name. */
LOOM_API loom_status loom_registry_init(void);
/* Register a backend table by hand (tests, embedders). Must come before or
 * after loom_registry_init; the backend is initialised immediately. */
LOOM_API loom_status loom_registry_add(const loom_backend_iface *iface);
/* Shut every backend down and forget them (end of process, tests). */
LOOM_API void loom_registry_shutdown(void);

LOOM_API int loom_registry_count(void);
/* i-th registered backend in priority order (highest first); NULL if out of range. */
LOOM_API loom_backend *loom_registry_get(int i);
LOOM_API bool loom_registry_available(int i);
/* Why backend i is unavailable ("" when available). */
LOOM_API const char *loom_registry_why(int i);
/* Backend named name (available or not); NULL if none. "NAME:I" names
 * device I of backend NAME, and plain "NAME" (or "NAME:0") its device 0,
 * whatever the number of devices. */
LOOM_API loom_backend *loom_registry_find(const char *name);

/* Pick the backend to run on: name if non-NULL and non-empty, else $LOOM_BACKEND
 * if set, else the highest-priority available backend. A requested backend that
 * is unknown or unavailable is an error with a message in err. */
LOOM_API loom_status loom_registry_select(const char *name, loom_backend **out, char *err,
                                          size_t err_n);

/* Convenience wrappers over the vtable. */
LOOM_API loom_status loom_buffer_alloc(loom_backend *be, size_t size, loom_buffer **out);
LOOM_API void loom_buffer_free(loom_buffer *b); /* NULL is fine */
/* The largest buffer be can allocate (loom_device_info.max_buffer_bytes);
 * 0 when there is no known limit or be is NULL. Larger allocations may still
 * succeed on some drivers, but callers that can split should not rely on it. */
LOOM_API size_t loom_backend_max_buffer(loom_backend *be);

/* ---------------- scheduler ---------------- */

typedef struct loom_sched loom_sched;

typedef struct loom_sched_stats {
    int n_nodes;           /* compute nodes (views excluded) */
    int n_splits;          /* runs of consecutive nodes on one backend */
    int n_copies;          /* cross-backend copies inserted */
    size_t arena_bytes[8]; /* planned activation arena per scheduler backend */
    size_t naive_bytes[8]; /* what one buffer per tensor would have needed */
    size_t leaf_bytes[8];  /* leaves (inputs/weights) allocated by the scheduler */
    /* Copies in detail (layer split, docs/adr/0030): of n_copies, those of
     * activations (a compute node's output; the rest copy leaves: inputs,
     * weights); bytes all copies move per compute; and, since the last
     * loom_sched_alloc, the computes run and the wall time spent copying. */
    int n_act_copies;
    size_t copy_bytes;
    long long n_computes;
    double copy_seconds;
    /* Node hooks (loom_sched_set_node_hook) run since the last alloc and the
     * wall time in them: tensor parallelism's all-reduces, waits for the
     * slowest rank included (docs/adr/0034). */
    long long n_hook_calls;
    double hook_seconds;
} loom_sched_stats;

/* backends: preference order; the last one must support every op (cpu).
 * The scheduler does not own the backends. Caller frees *out with loom_sched_free. */
LOOM_API loom_status loom_sched_new(loom_backend *const *backends, int n_backends,
                                    loom_sched **out);
LOOM_API void loom_sched_free(loom_sched *s); /* frees every buffer the scheduler allocated */

/* Pin node (a compute node of the graph the next loom_sched_alloc gets) to
 * backend index b of this scheduler's list: it runs there when that backend
 * supports it, else on the first that does (as unpinned nodes). b = -1
 * removes the pin. Pins are kept by tensor id until changed or the
 * scheduler is freed, so they belong to one graph. A layer split pins every
 * node of a layer to the layer's device so that nothing inside a layer
 * bounces to another backend (docs/adr/0030). In-place nodes ignore pins:
 * they run where their destination lives. */
LOOM_API loom_status loom_sched_set_node_backend(loom_sched *s, const loom_tensor *node, int b);

/* A host callback the scheduler runs right after node (a compute node of
 * the graph the next loom_sched_alloc gets) is computed and its backend
 * synchronised, before any later node: the node ends its split. fn may
 * read and rewrite the node's data (loom_tensor_download/upload); its
 * consumers see what it leaves. A non-OK return fails loom_sched_compute
 * there. Kept by tensor id until the scheduler is freed, as pins are; a
 * second call for the same node replaces the first. Tensor parallelism
 * all-reduces the row-parallel partial sums with it (docs/adr/0034):
 * collectives stay out of the IR and out of every backend. */
typedef loom_status (*loom_sched_node_hook)(void *ud, loom_tensor *node);
LOOM_API loom_status loom_sched_set_node_hook(loom_sched *s, const loom_tensor *node,
                                              loom_sched_node_hook fn, void *ud);

/* Assign each node to the first backend that supports it (a leaf already in a
 * buffer stays there), insert copies between backends, plan activation
 * memory by liveness and allocate it, and allocate leaves that have no
 * storage yet (on the backend of their first consumer). After this, INPUT
 * leaves can be filled with loom_tensor_upload. g must not change afterwards;
 * a new graph needs a new loom_sched_alloc. */
LOOM_API loom_status loom_sched_alloc(loom_sched *s, loom_graph *g);
/* Run g (allocated by loom_sched_alloc on this scheduler) and wait for it. */
LOOM_API loom_status loom_sched_compute(loom_sched *s, loom_graph *g);
LOOM_API const char *loom_sched_error(const loom_sched *s); /* message of the last failure */
LOOM_API void loom_sched_get_stats(const loom_sched *s, loom_sched_stats *out);

/* Copy host data into / out of an allocated tensor. n must equal
 * loom_tensor_nbytes(t) and t must be contiguous. */
LOOM_API loom_status loom_tensor_upload(loom_tensor *t, const void *data, size_t n);
LOOM_API loom_status loom_tensor_download(const loom_tensor *t, void *data, size_t n);

/* ---------------- threads: loom/threadpool.h (included above) ---------------- */

#ifdef __cplusplus
}
#endif
#endif
