/* parity/parity.h - the cross-backend parity suite (`loom test-ops`).
 *
 * Every case builds a small graph with the public IR API. The harness
 * (parity.c) fills its leaves with seeded random data, computes every node
 * with the scalar reference kernels on host memory it owns (with guard bytes
 * after each tensor), then runs a freshly built copy of the same graph
 * through the scheduler on each available backend and compares the outputs
 * by NMSE (byte-exact for quantized outputs). The case table lives in
 * parity_cases.c. */
#ifndef LOOM_PARITY_PARITY_H
#define LOOM_PARITY_PARITY_H

#include <stdbool.h>
#include <stdint.h>

#include "loom/loom.h"

/* Options of a run (`loom test-ops` parses them in cli/test_ops.c). */
typedef struct loom_parity_opts {
    const char *backend; /* test only this backend; NULL: every available one */
    const char *op;      /* only cases of this op (a loom_op_name); NULL: all */
    const char *match;   /* only cases whose name contains this; NULL: all */
    const char *golden;  /* numpy golden dir; NULL: the default; "none": skip */
    bool list;           /* list the selected cases and return */
    bool verbose;        /* one line per case and backend */
    uint64_t seed;       /* base seed */
} loom_parity_opts;

/* Every case, every available backend, the default seed and golden dir. */
loom_parity_opts loom_parity_default_opts(void);

/* Run the suite. Returns the process exit code: 0 all passed, 1 a failure,
 * 2 an unknown op or backend, or a requested backend that is unavailable. */
int loom_parity_run(const loom_parity_opts *o);

/* Run every numpy golden case (*.bin in dir, written by scripts/gen_golden.py)
 * on backend be (cpu takes the nodes be does not support), adding one to
 * *passed or *failed per case; failures are printed. Returns the number of
 * cases, or -1 when dir cannot be opened. */
int parity_golden_run(loom_backend *be, loom_backend *cpu, const char *dir, bool verbose,
                      int *passed, int *failed);

/* ---------------- the case table ---------------- */

/* Per-case parameters; each builder documents which fields it reads. */
typedef struct parity_args {
    int64_t n[8];    /* extents */
    int32_t i[8];    /* flags, modes, offsets */
    loom_dtype t[4]; /* dtypes */
    float f[4];      /* scalars */
} parity_args;

/* Build state passed to a builder (opaque; see the parity_* helpers). */
typedef struct parity_ctx parity_ctx;

/* Builds the case into g and returns the output under test (a view is
 * materialised with loom_cont), or NULL on a construction error (the graph's sticky error is then
 * reported). Must be deterministic: it runs once for the reference and once
 * per backend, and leaves are matched by tensor id. */
typedef loom_tensor *(*parity_build_fn)(parity_ctx *c, loom_graph *g, const parity_args *a);

typedef struct parity_case {
    char name[128]; /* unique, e.g. "matmul w=q4_0 x=f32 K=64 N=33 M=7" */
    loom_op op;     /* op under test; --op matches loom_op_name(op) */
    parity_build_fn build;
    parity_args a;
} parity_case;

/* The case table: a malloc'd array the caller frees; returns the count
 * (or -1 when out of memory). */
int parity_cases_make(parity_case **out);

/* ---------------- helpers for builders ---------------- */

/* Fill specs given for a view apply to the leaf it aliases. */

/* A new contiguous leaf, filled with uniform [-1, 1) values unless a
 * parity_fill_* call says otherwise (quantized/f16 leaves are filled through
 * loom_convert from those f32 values). */
loom_tensor *parity_input(parity_ctx *c, loom_graph *g, loom_dtype t, int64_t ne0, int64_t ne1,
                          int64_t ne2, int64_t ne3);
void parity_fill_uniform(parity_ctx *c, const loom_tensor *t, float lo, float hi);
/* Standard normal values times scale. */
void parity_fill_normal(parity_ctx *c, const loom_tensor *t, float scale);
/* i32 leaves: uniform integers in [lo, hi). */
void parity_fill_ints(parity_ctx *c, const loom_tensor *t, int32_t lo, int32_t hi);
/* i32 leaves: start, start+1, ... (positions). */
void parity_fill_arange(parity_ctx *c, const loom_tensor *t, int32_t start);
/* Anything else: write n f32 values (converted to t's dtype afterwards;
 * i32 leaves get the values rounded). rng is the case's PRNG state. */
typedef void (*parity_fill_fn)(float *dst, int64_t n, const loom_tensor *t, uint64_t *rng);
void parity_fill_custom(parity_ctx *c, const loom_tensor *t, parity_fill_fn fn);
/* Next value of the case's PRNG (splitmix64), for custom fills. */
uint64_t parity_rand_u64(uint64_t *state);
float parity_rand_uniform(uint64_t *state); /* [0, 1) */
float parity_rand_normal(uint64_t *state);  /* N(0, 1) */

/* Longest reduction feeding the output (e.g. K of a matmul); widens the
 * NMSE tolerance in proportion. */
void parity_reduce(parity_ctx *c, int64_t k);
/* Force the NMSE tolerance of this case (overrides the derived one). */
void parity_tolerance(parity_ctx *c, double nmse);
/* Declare equiv (built in the same graph from the same leaves) as an
 * independent computation of the output, e.g. loom_decompose(g, fused): the
 * harness checks ref(output) against ref(equiv), and on every backend both
 * against the reference. A view is materialised with loom_cont. Returns the
 * tensor registered. */
loom_tensor *parity_equiv(parity_ctx *c, loom_graph *g, loom_tensor *equiv);

#endif
