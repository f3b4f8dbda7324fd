/* parity/parity_internal.h - shared between the parity harness files.
 * Internal to the suite. */
#ifndef LOOM_PARITY_PARITY_INTERNAL_H
#define LOOM_PARITY_PARITY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parity/parity.h"

/* Outcome of comparing a backend's output with the reference. */
typedef struct cmp_result {
    bool ok;
    bool exact; /* byte comparison */
    double nmse, max_abs;
    int64_t bad_idx; /* first mismatching element, -1 if none */
    float got, want;
    int64_t n_nonfinite; /* positions where finiteness differs */
    char note[160];
} cmp_result;

/* Bytes of a contiguous tensor's storage (nf4: including its scale sections). */
size_t parity_storage_bytes(const loom_tensor *t);

/* Compare two contiguous buffers holding tensor t (dtype and extents from t):
 * NMSE against tol plus NaN/Inf positions for float types, identical bytes
 * for quantized ones. */
void parity_compare(const loom_tensor *t, const void *got, const void *want, double tol,
                    cmp_result *r);

/* ---------------- the case table, in several files ---------------- */

typedef struct parity_table parity_table; /* parity_cases.c */
void parity_table_add(parity_table *tb, loom_op op, parity_build_fn fn, parity_args a,
                      const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
/* Router logits: mode 0 normal, 1 skewed expert loads, 2 ties. */
void parity_fill_logits(parity_ctx *c, const loom_tensor *logits, int mode);
void parity_cases_moe(parity_table *tb);          /* parity_cases_moe.c */
void parity_cases_large_logits(parity_table *tb); /* parity_cases_logits.c */
void parity_cases_attn_back(parity_table *tb);    /* parity_cases_attn_back.c */
void parity_cases_paged_batch(parity_table *tb);  /* parity_cases_paged.c */
/* q4_1/q5_0/q5_1 (parity_cases_legacy.c), with the builders of the files above */
void parity_cases_legacy(parity_table *tb, parity_build_fn get_rows, parity_build_fn matmul,
                         parity_build_fn cpy);
void parity_cases_legacy_moe(parity_table *tb, parity_build_fn moe);
/* edges of the int8-activation decode kernels (parity_cases_legacy.c) */
void parity_cases_act8(parity_table *tb, parity_build_fn matmul);

/* ---------------- kernel coverage (parity_coverage.c) ---------------- */

/* "cpu(avx2)" for a backend whose kernel_info names its kernel set, else
 * the backend's name: what FAIL lines and summaries call it. */
void parity_backend_label(loom_backend *be, char *out, size_t n);

/* Nodes per (op, loom_kernel_dtype): all of them, and those that ran an
 * optimised kernel (or, on a backend without kernel_info, ran on it). */
typedef struct parity_coverage {
    char label[48];
    int all[LOOM_OP_COUNT][LOOM_DTYPE_COUNT];
    int opt[LOOM_OP_COUNT][LOOM_DTYPE_COUNT];
} parity_coverage;

void parity_coverage_init(parity_coverage *cv, loom_backend *be);
/* Count every compute node of g (scheduled on [be, cpu]); returns whether
 * focus ran an optimised kernel and names the kernel in kernel. */
bool parity_coverage_count(parity_coverage *cv, loom_backend *be, loom_backend *cpu,
                           const loom_graph *g, const loom_tensor *focus, char *kernel,
                           size_t kernel_n);
/* Print the coverage summary and check be's kernel_claims: returns the
 * number of failures (a claim never run optimised, when check_claims; an
 * optimised kernel not claimed, always). */
int parity_coverage_report(const parity_coverage *cv, loom_backend *be, bool check_claims);

/* k-quant leaves (parity_kquant.c): q2_K..q6_K have no quantizer yet, so
 * their leaves are random blocks with finite, weight-sized scales. */
bool parity_is_kquant(loom_dtype t);
loom_status parity_kquant_fill(loom_dtype t, void *dst, int64_t n, uint64_t *rng);

#endif
