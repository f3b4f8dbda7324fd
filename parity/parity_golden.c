/* parity/parity_golden.c - numpy-made golden cases, part of `loom test-ops`.
 *
 * The parity suite compares backends with the reference kernels; these cases
 * check the reference itself (and every backend) against numpy, so a bug in
 * a reference kernel cannot hide by being copied into the oracle.
 *
 * Every tests/golden/<case>.bin (written by scripts/gen_golden.py) holds one op:
 * its parameters, the input tensors' bytes and the expected output, computed by
 * numpy from the op definitions in loom/ir.h. Each case is built as a one-op
 * graph with the public API, scheduled on the cpu backend, and its output
 * compared with the expected one: f32 outputs by max abs error <= the file's
 * tolerance (NMSE reported too), other dtypes (cpy to f16/bf16/q8_0/q4_0)
 * byte for byte.
 *
 * File format "LOOMGLD1" (little-endian; the authoritative description is the
 * docstring of scripts/gen_golden.py):
 *   char magic[8] = "LOOMGLD1"
 *   str  op, str case          str = u32 length (<= 128) + bytes, no NUL
 *   u32  cmp                   0: f32, |out - expected| <= tol; 1: exact bytes
 *   f64  tol
 *   u32  n_int,   i32 ints[n_int]       (<= 16)
 *   u32  n_float, f32 floats[n_float]   (<= 16)
 *   u32  n_tensor (2..8): inputs in constructor argument order, then expected
 *   per tensor: str name, u32 dtype (loom_dtype), i64 ne[4], u64 nbytes,
 *               u8 data[nbytes] (nbytes == loom_dtype_nbytes(dtype, nelements))
 *   nothing after the last tensor.
 * Params per op: rms_norm floats[eps]; rope ints[n_dims, mode, scaling,
 * orig_ctx, inverse] floats[theta, factor, low_freq_factor, high_freq_factor];
 * softmax and flash_attn ints[causal, q_offset] floats[scale]; moe ints[top_k];
 * cpy takes its target dtype from the expected tensor; set_rows (inputs dst,
 * src, rows) expects the whole destination after the write.
 *
 * Malformed files fail a CHECK with a message; everything read is bounds-checked. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/ir.h"
#include "loom/runtime.h"
#include "parity/parity_internal.h"

/* Failed checks of the golden run (parity_golden_run resets nothing: it
 * compares the count before and after each file). The suite is a product
 * library, so it has its own counter rather than the unit tests' macros. */
static int golden_failed_;

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            golden_failed_++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)
#define CHECK(cond) CHECK_MSG(cond, "%s", "")

#define GOLDEN_MAX_FILE    (64u << 20)
#define GOLDEN_MAX_STR     128
#define GOLDEN_MAX_PARAMS  16
#define GOLDEN_MAX_TENSORS 8
#define GOLDEN_MAX_ELEMS   ((int64_t)1 << 28)

enum { CMP_TOL = 0, CMP_EXACT = 1 };

typedef struct golden_tensor {
    char name[GOLDEN_MAX_STR + 1];
    loom_dtype dtype;
    int64_t ne[4];
    size_t nbytes;
    const uint8_t *data; /* points into the file buffer */
} golden_tensor;

typedef struct golden_case {
    char op[GOLDEN_MAX_STR + 1];
    char name[GOLDEN_MAX_STR + 1];
    uint32_t cmp;
    double tol;
    uint32_t n_int, n_float, n_tensor;
    int32_t ints[GOLDEN_MAX_PARAMS];
    float floats[GOLDEN_MAX_PARAMS];
    golden_tensor t[GOLDEN_MAX_TENSORS];
    const char *backend; /* name printed in result lines */
    bool verbose;        /* print passing cases too */
} golden_case;

/* ---------------- bounds-checked reader ---------------- */

typedef struct reader {
    const uint8_t *p;
    size_t n, off;
    char err[256];
} reader;

static bool rd_fail(reader *r, const char *what) {
    if (!r->err[0]) snprintf(r->err, sizeof r->err, "%s (at byte %zu of %zu)", what, r->off, r->n);
    return false;
}

static bool rd_bytes(reader *r, size_t k, const uint8_t **out, const char *what) {
    if (r->err[0]) return false;
    if (k > r->n - r->off) return rd_fail(r, what);
    *out = r->p + r->off;
    r->off += k;
    return true;
}

/* Little-endian decoding by bytes: independent of host order and alignment. */
static bool rd_u32(reader *r, uint32_t *v, const char *what) {
    const uint8_t *b;
    if (!rd_bytes(r, 4, &b, what)) return false;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return true;
}

static bool rd_u64(reader *r, uint64_t *v, const char *what) {
    uint32_t lo, hi;
    if (!rd_u32(r, &lo, what) || !rd_u32(r, &hi, what)) return false;
    *v = (uint64_t)lo | (uint64_t)hi << 32;
    return true;
}

static bool rd_f32(reader *r, float *v, const char *what) {
    uint32_t u;
    if (!rd_u32(r, &u, what)) return false;
    memcpy(v, &u, sizeof *v);
    return true;
}

static bool rd_f64(reader *r, double *v, const char *what) {
    uint64_t u;
    if (!rd_u64(r, &u, what)) return false;
    memcpy(v, &u, sizeof *v);
    return true;
}

static bool rd_str(reader *r, char *dst, const char *what) {
    uint32_t len;
    const uint8_t *b;
    if (!rd_u32(r, &len, what)) return false;
    if (len > GOLDEN_MAX_STR) return rd_fail(r, what);
    if (!rd_bytes(r, len, &b, what)) return false;
    memcpy(dst, b, len);
    dst[len] = '\0';
    for (uint32_t i = 0; i < len; i++)
        if (dst[i] < 0x20 || dst[i] > 0x7e) return rd_fail(r, "non-printable byte in a name");
    return true;
}

static bool parse_case(reader *r, golden_case *c) {
    const uint8_t *magic;
    memset(c, 0, sizeof *c);
    if (!rd_bytes(r, 8, &magic, "truncated magic")) return false;
    if (memcmp(magic, "LOOMGLD1", 8) != 0) return rd_fail(r, "bad magic (want LOOMGLD1)");
    if (!rd_str(r, c->op, "bad op name") || !rd_str(r, c->name, "bad case name")) return false;
    if (!rd_u32(r, &c->cmp, "truncated cmp") || !rd_f64(r, &c->tol, "truncated tol")) return false;
    if (c->cmp != CMP_TOL && c->cmp != CMP_EXACT) return rd_fail(r, "unknown cmp mode");
    if (!(c->tol >= 0.0 && c->tol < 1e30)) return rd_fail(r, "tolerance not a finite >= 0");

    if (!rd_u32(r, &c->n_int, "truncated n_int")) return false;
    if (c->n_int > GOLDEN_MAX_PARAMS) return rd_fail(r, "too many int params");
    for (uint32_t i = 0; i < c->n_int; i++) {
        uint32_t u;
        if (!rd_u32(r, &u, "truncated int params")) return false;
        memcpy(&c->ints[i], &u, sizeof u);
    }
    if (!rd_u32(r, &c->n_float, "truncated n_float")) return false;
    if (c->n_float > GOLDEN_MAX_PARAMS) return rd_fail(r, "too many float params");
    for (uint32_t i = 0; i < c->n_float; i++)
        if (!rd_f32(r, &c->floats[i], "truncated float params")) return false;

    if (!rd_u32(r, &c->n_tensor, "truncated n_tensor")) return false;
    if (c->n_tensor < 2 || c->n_tensor > GOLDEN_MAX_TENSORS)
        return rd_fail(r, "tensor count outside 2..8");
    for (uint32_t i = 0; i < c->n_tensor; i++) {
        golden_tensor *t = &c->t[i];
        uint32_t dt;
        uint64_t nbytes;
        if (!rd_str(r, t->name, "bad tensor name") || !rd_u32(r, &dt, "truncated dtype"))
            return false;
        if (dt >= LOOM_DTYPE_COUNT) return rd_fail(r, "unknown dtype code");
        t->dtype = (loom_dtype)dt;
        int64_t nel = 1;
        for (int d = 0; d < 4; d++) {
            uint64_t u;
            if (!rd_u64(r, &u, "truncated extents")) return false;
            if (u < 1 || u > (uint64_t)GOLDEN_MAX_ELEMS) return rd_fail(r, "extent out of range");
            t->ne[d] = (int64_t)u;
            nel *= t->ne[d];
            if (nel > GOLDEN_MAX_ELEMS) return rd_fail(r, "tensor too large");
        }
        if (!rd_u64(r, &nbytes, "truncated byte count")) return false;
        size_t want = loom_dtype_nbytes(t->dtype, nel);
        if (want == 0 || nbytes != (uint64_t)want)
            return rd_fail(r, "byte count does not match dtype and extents");
        t->nbytes = (size_t)nbytes;
        if (!rd_bytes(r, t->nbytes, &t->data, "truncated tensor data")) return false;
    }
    if (r->off != r->n) return rd_fail(r, "trailing bytes after the last tensor");
    const golden_tensor *e = &c->t[c->n_tensor - 1];
    if (c->cmp == CMP_TOL && e->dtype != LOOM_F32)
        return rd_fail(r, "tolerance compare needs an f32 expected tensor");
    return true;
}

/* ---------------- graph building ---------------- */

typedef struct op_spec {
    const char *op;
    uint32_t n_inputs, n_int, n_float;
} op_spec;

static const op_spec op_specs[] = {
    {"get_rows", 2, 0, 0}, {"add", 2, 0, 0},        {"mul", 2, 0, 0},  {"rms_norm", 1, 0, 1},
    {"rope", 2, 5, 4},     {"softmax", 1, 2, 1},    {"silu", 1, 0, 0}, {"swiglu", 2, 0, 0},
    {"matmul", 2, 0, 0},   {"flash_attn", 3, 2, 1}, {"moe", 5, 1, 0},  {"cross_entropy", 2, 0, 0},
    {"cpy", 1, 0, 0},      {"set_rows", 3, 0, 0},
};

/* The op node for c built on inputs in[]; NULL with msg set when the case does
 * not describe a known op (graph errors are read from g by the caller). */
static loom_tensor *build_op(loom_graph *g, const golden_case *c, loom_tensor **in, char *msg,
                             size_t msg_n) {
    const op_spec *spec = NULL;
    for (size_t i = 0; i < sizeof op_specs / sizeof op_specs[0]; i++)
        if (strcmp(op_specs[i].op, c->op) == 0) spec = &op_specs[i];
    if (!spec) {
        snprintf(msg, msg_n, "unknown op '%s'", c->op);
        return NULL;
    }
    if (c->n_tensor - 1 != spec->n_inputs || c->n_int < spec->n_int || c->n_float < spec->n_float) {
        snprintf(msg, msg_n, "%s wants %u inputs, %u ints, %u floats (file has %u, %u, %u)", c->op,
                 spec->n_inputs, spec->n_int, spec->n_float, c->n_tensor - 1, c->n_int, c->n_float);
        return NULL;
    }
    const int32_t *pi = c->ints;
    const float *pf = c->floats;
    const char *op = c->op;
    if (!strcmp(op, "get_rows")) return loom_get_rows(g, in[0], in[1]);
    if (!strcmp(op, "add")) return loom_add(g, in[0], in[1]);
    if (!strcmp(op, "mul")) return loom_mul(g, in[0], in[1]);
    if (!strcmp(op, "rms_norm")) return loom_rms_norm(g, in[0], pf[0]);
    if (!strcmp(op, "rope")) {
        loom_rope_params p = {.n_dims = pi[0],
                              .mode = pi[1],
                              .theta = pf[0],
                              .scaling = pi[2],
                              .factor = pf[1],
                              .low_freq_factor = pf[2],
                              .high_freq_factor = pf[3],
                              .orig_ctx = pi[3],
                              .inverse = pi[4]};
        return loom_rope(g, in[0], in[1], &p);
    }
    if (!strcmp(op, "softmax")) return loom_softmax(g, in[0], pf[0], pi[0] != 0, pi[1]);
    if (!strcmp(op, "silu")) return loom_silu(g, in[0]);
    if (!strcmp(op, "swiglu")) return loom_swiglu(g, in[0], in[1]);
    if (!strcmp(op, "matmul")) return loom_matmul(g, in[0], in[1]);
    if (!strcmp(op, "flash_attn"))
        return loom_flash_attn(g, in[0], in[1], in[2], pf[0], pi[0] != 0, pi[1]);
    if (!strcmp(op, "moe")) return loom_moe(g, in[0], in[1], in[2], in[3], in[4], pi[0]);
    if (!strcmp(op, "cross_entropy")) return loom_cross_entropy(g, in[0], in[1]);
    if (!strcmp(op, "cpy")) return loom_cpy(g, in[0], c->t[c->n_tensor - 1].dtype);
    /* In place: the result is dst itself, downloaded whole after the write. */
    if (!strcmp(op, "set_rows")) return loom_set_rows(g, in[0], in[1], in[2]);
    snprintf(msg, msg_n, "op '%s' has no builder", op);
    return NULL;
}

/* ---------------- comparison ---------------- */

static float load_f32_le(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void compare_f32(const golden_case *c, const uint8_t *got, const golden_tensor *e) {
    size_t n = e->nbytes / 4, worst = 0, n_bad = 0;
    double max_err = 0.0, num = 0.0, den = 0.0;
    bool nonfinite = false;
    for (size_t i = 0; i < n; i++) {
        double a = load_f32_le(got + 4 * i), b = load_f32_le(e->data + 4 * i);
        double d = fabs(a - b);
        if (!isfinite(a)) {
            nonfinite = true;
            d = INFINITY;
        }
        if (d > max_err) {
            max_err = d;
            worst = i;
        }
        if (d > c->tol) n_bad++;
        num += isfinite(d) ? d * d : 0.0;
        den += b * b;
    }
    double nmse = den > 0.0 ? num / den : num;
    bool ok = !nonfinite && max_err <= c->tol;
    if (!ok || c->verbose)
        printf("%s %-6s golden %-14s %-38s max_err=%.3e tol=%.3e nmse=%.3e\n", ok ? "ok  " : "FAIL",
               c->backend, c->op, c->name, max_err, c->tol, nmse);
    CHECK_MSG(ok, "%s: %zu of %zu elements beyond tol %.3e; worst #%zu got %.9g want %.9g%s",
              c->name, n_bad, n, c->tol, worst, (double)load_f32_le(got + 4 * worst),
              (double)load_f32_le(e->data + 4 * worst), nonfinite ? " (non-finite output)" : "");
}

static void compare_exact(const golden_case *c, const uint8_t *got, const golden_tensor *e) {
    size_t first = e->nbytes, n_diff = 0;
    for (size_t i = 0; i < e->nbytes; i++) {
        if (got[i] != e->data[i]) {
            if (first == e->nbytes) first = i;
            n_diff++;
        }
    }
    bool ok = n_diff == 0;
    if (!ok || c->verbose)
        printf("%s %-6s golden %-14s %-38s %s bytes=%zu differing=%zu\n", ok ? "ok  " : "FAIL",
               c->backend, c->op, c->name, loom_dtype_name(e->dtype), e->nbytes, n_diff);
    if (!ok)
        CHECK_MSG(ok, "%s: %zu of %zu bytes differ; first at byte %zu: got 0x%02x want 0x%02x",
                  c->name, n_diff, e->nbytes, first, got[first], e->data[first]);
    else
        CHECK(ok);
}

/* ---------------- one case ---------------- */

/* A matmul golden with ints [1] holds the expected output of int8
 * activations (ADR 0036, scripts/gen_golden.py's "_act8" twins). Each case
 * runs where the node's kernel matches: an act8 kernel (its name says so)
 * against the twin, any other kernel against the plain golden. */
static bool act8_mismatch(loom_backend *be, loom_backend *cpu, const golden_case *c,
                          const loom_tensor *out) {
    loom_backend *on = be != cpu && !be->iface->supports(be, out) ? cpu : be;
    char kn[64] = "";
    if (on->iface->kernel_info) on->iface->kernel_info(on, out, kn, sizeof kn);
    const bool node8 = strstr(kn, " act8") != NULL;
    const bool gold8 = !strcmp(c->op, "matmul") && c->n_int > 0 && c->ints[0] == 1;
    if (node8 != gold8 && c->verbose)
        printf("skip %-6s golden %-14s %-38s (%s)\n", c->backend, c->op, c->name,
               node8 ? "int8 activations here: its _act8 twin checks it"
                     : "int8-activation golden, f32 activations here");
    return node8 != gold8;
}

/* Returns 1 when the output was compared (and a result line printed), -1
 * when the case does not apply to this backend's kernel, 0 on an error. */
static int run_case(loom_backend *be, loom_backend *cpu, const golden_case *c) {
    loom_graph *g = NULL;
    loom_sched *s = NULL;
    uint8_t *got = NULL;
    char msg[256] = "";
    const golden_tensor *e = &c->t[c->n_tensor - 1];

    int compared = 0;
    loom_status st = loom_graph_new(&g);
    CHECK_MSG(st == LOOM_OK, "%s: loom_graph_new: %s", c->name, loom_status_str(st));
    if (st != LOOM_OK) return false;

    loom_tensor *in[GOLDEN_MAX_TENSORS] = {0};
    for (uint32_t i = 0; i + 1 < c->n_tensor; i++) {
        in[i] = loom_tensor_new(g, c->t[i].dtype, 4, c->t[i].ne);
        if (in[i]) {
            loom_tensor_set_name(in[i], "%s", c->t[i].name);
            loom_tensor_set_flags(in[i], LOOM_FLAG_INPUT);
        }
    }
    loom_tensor *out = build_op(g, c, in, msg, sizeof msg);
    if (!out) {
        CHECK_MSG(false, "%s: cannot build %s: %s", c->name, c->op,
                  msg[0] ? msg : loom_graph_error(g));
        goto done;
    }
    bool shape_ok = out->dtype == e->dtype;
    for (int d = 0; d < 4; d++)
        shape_ok = shape_ok && out->ne[d] == e->ne[d];
    CHECK_MSG(shape_ok,
              "%s: op gives %s[%lld,%lld,%lld,%lld], file expects %s[%lld,%lld,%lld,%lld]", c->name,
              loom_dtype_name(out->dtype), (long long)out->ne[0], (long long)out->ne[1],
              (long long)out->ne[2], (long long)out->ne[3], loom_dtype_name(e->dtype),
              (long long)e->ne[0], (long long)e->ne[1], (long long)e->ne[2], (long long)e->ne[3]);
    if (!shape_ok) goto done;
    if (act8_mismatch(be, cpu, c, out)) {
        loom_graph_free(g);
        return -1;
    }
    loom_tensor_set_name(out, "out");
    loom_tensor_set_flags(out, LOOM_FLAG_OUTPUT);

    st = loom_graph_expand(g, out);
    CHECK_MSG(st == LOOM_OK, "%s: loom_graph_expand: %s (%s)", c->name, loom_status_str(st),
              loom_graph_error(g));
    if (st != LOOM_OK) goto done;

    loom_backend *list[2] = {be, cpu}; /* cpu takes what be does not support */
    st = loom_sched_new(list, be == cpu ? 1 : 2, &s);
    CHECK_MSG(st == LOOM_OK, "%s: loom_sched_new: %s", c->name, loom_status_str(st));
    if (st != LOOM_OK) goto done;
    st = loom_sched_alloc(s, g);
    CHECK_MSG(st == LOOM_OK, "%s: loom_sched_alloc: %s (%s)", c->name, loom_status_str(st),
              loom_sched_error(s));
    if (st != LOOM_OK) goto done;

    for (uint32_t i = 0; i + 1 < c->n_tensor; i++) {
        size_t want = loom_tensor_nbytes(in[i]);
        CHECK_MSG(want == c->t[i].nbytes, "%s: input %s: loom wants %zu bytes, file has %zu",
                  c->name, c->t[i].name, want, c->t[i].nbytes);
        if (want != c->t[i].nbytes) goto done;
        st = loom_tensor_upload(in[i], c->t[i].data, c->t[i].nbytes);
        CHECK_MSG(st == LOOM_OK, "%s: upload %s: %s", c->name, c->t[i].name, loom_status_str(st));
        if (st != LOOM_OK) goto done;
    }

    st = loom_sched_compute(s, g);
    CHECK_MSG(st == LOOM_OK, "%s: loom_sched_compute: %s (%s)", c->name, loom_status_str(st),
              loom_sched_error(s));
    if (st != LOOM_OK) goto done;

    CHECK_MSG(loom_tensor_nbytes(out) == e->nbytes, "%s: output has %zu bytes, expected %zu",
              c->name, loom_tensor_nbytes(out), e->nbytes);
    if (loom_tensor_nbytes(out) != e->nbytes) goto done;
    got = malloc(e->nbytes ? e->nbytes : 1);
    CHECK_MSG(got != NULL, "%s: out of memory", c->name);
    if (!got) goto done;
    st = loom_tensor_download(out, got, e->nbytes);
    CHECK_MSG(st == LOOM_OK, "%s: download: %s", c->name, loom_status_str(st));
    if (st != LOOM_OK) goto done;

    if (c->cmp == CMP_TOL)
        compare_f32(c, got, e);
    else
        compare_exact(c, got, e);
    compared = 1;

done:
    free(got);
    loom_sched_free(s);
    loom_graph_free(g);
    return compared;
}

/* ---------------- files ---------------- */

static uint8_t *read_file(const char *path, size_t *n, char *err, size_t err_n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_n, "cannot open");
        return NULL;
    }
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= GOLDEN_MAX_FILE) {
                snprintf(err, err_n, "larger than %u bytes", GOLDEN_MAX_FILE);
                free(buf);
                fclose(f);
                return NULL;
            }
            size_t ncap = cap ? cap * 2 : 65536;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                snprintf(err, err_n, "out of memory");
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad) {
        snprintf(err, err_n, "read error");
        free(buf);
        return NULL;
    }
    *n = len;
    return buf;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns true when the case passed. */
static int run_file(loom_backend *be, loom_backend *cpu, const char *label, const char *dir,
                     const char *file, bool verbose) {
    int failed_before = golden_failed_, ran = 0;
    char path[4096], err[128] = "";
    int len = snprintf(path, sizeof path, "%s/%s", dir, file);
    CHECK_MSG(len > 0 && (size_t)len < sizeof path, "path too long: %s/%s", dir, file);
    if (len <= 0 || (size_t)len >= sizeof path) return 0;
    size_t n = 0;
    uint8_t *buf = read_file(path, &n, err, sizeof err);
    CHECK_MSG(buf != NULL, "%s: %s", path, err);
    if (!buf) return 0;
    golden_case *c = malloc(sizeof *c);
    CHECK_MSG(c != NULL, "%s: out of memory", file);
    if (c) {
        reader r = {.p = buf, .n = n, .off = 0, .err = ""};
        bool ok = parse_case(&r, c);
        c->backend = label; /* "cpu(avx2)": names the kernel set that ran */
        c->verbose = verbose;
        CHECK_MSG(ok, "%s: malformed golden file: %s", file, r.err);
        if (!ok)
            printf("FAIL %-6s golden %-38s malformed file\n", c->backend, file);
        else if ((ran = run_case(be, cpu, c)) == 0)
            printf("FAIL %-6s golden %-14s %-38s did not run (see the error above)\n", c->backend,
                   c->op, c->name);
    }
    free(c);
    free(buf);
    return ran < 0 ? -1 : golden_failed_ == failed_before;
}

int parity_golden_run(loom_backend *be, loom_backend *cpu, const char *dir, bool verbose,
                      int *passed, int *failed) {
    char **names = NULL;
    size_t n_names = 0, cap = 0;
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".bin") != 0) continue;
        if (n_names == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) break;
            names = nn;
            cap = ncap;
        }
        names[n_names] = malloc(len + 1);
        if (!names[n_names]) break;
        memcpy(names[n_names++], de->d_name, len + 1);
    }
    closedir(d);
    if (n_names) qsort(names, n_names, sizeof *names, cmp_names);
    char label[48];
    parity_backend_label(be, label, sizeof label);
    for (size_t i = 0; i < n_names; i++) {
        const int r = run_file(be, cpu, label, dir, names[i], verbose);
        if (r > 0)
            (*passed)++;
        else if (r == 0)
            (*failed)++;
        free(names[i]);
    }
    free(names);
    return (int)n_names;
}
