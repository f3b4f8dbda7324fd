/* parity/parity.c - the parity harness: reference on the host, then
 * every backend through the scheduler, compared by NMSE.
 *
 * Flow per case:
 *   1. build the graph, give every leaf seeded random bytes;
 *   2. reference: host memory for each non-view tensor (plus guard bytes),
 *      loom_ref_compute(node, 0, 1) on each node in order, check the guards
 *      and any declared equivalent (fused vs decomposed) outputs;
 *   3. per backend: build the case again in a fresh graph, schedule it on
 *      [backend, cpu] (cpu alone for cpu), upload the same leaf bytes,
 *      compute, download the outputs and compare with the reference. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loom/backend_sdk.h"
#include "parity/parity_internal.h"

#define GUARD_BYTES  64
#define GUARD_FILL   0xA5
#define MAX_OUTS     4
#define MAX_BACKENDS 16
#define DEFAULT_SEED 0x6c6f6f6d2d706172ull /* "loom-par" */

/* ---------------- PRNG (splitmix64) ---------------- */

uint64_t parity_rand_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float parity_rand_uniform(uint64_t *state) {
    return (float)(parity_rand_u64(state) >> 40) * (1.0f / 16777216.0f);
}

float parity_rand_normal(uint64_t *state) {
    /* Box-Muller; u1 in (0, 1] so the log is finite. */
    double u1 = ((double)(parity_rand_u64(state) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(parity_rand_u64(state) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* ---------------- builder context ---------------- */

enum fill_kind { FILL_UNIFORM, FILL_NORMAL, FILL_INTS, FILL_ARANGE, FILL_CUSTOM };

typedef struct fill_spec {
    int32_t id;
    int kind;
    float a, b;
    parity_fill_fn fn;
} fill_spec;

struct parity_ctx {
    fill_spec *fills;
    int n_fills, cap_fills;
    bool oom;
    loom_tensor *outs[MAX_OUTS];
    int n_outs;
    int64_t reduce;
    double tol; /* > 0: forced */
};

static void add_fill(parity_ctx *c, const loom_tensor *t, int kind, float a, float b,
                     parity_fill_fn fn) {
    if (!t) return;
    if (loom_op_is_view(t->op) && t->view_src) t = t->view_src;
    if (c->n_fills == c->cap_fills) {
        int cap = c->cap_fills ? 2 * c->cap_fills : 16;
        fill_spec *f = realloc(c->fills, (size_t)cap * sizeof *f);
        if (!f) {
            c->oom = true;
            return;
        }
        c->fills = f;
        c->cap_fills = cap;
    }
    c->fills[c->n_fills++] = (fill_spec){t->id, kind, a, b, fn};
}

loom_tensor *parity_input(parity_ctx *c, loom_graph *g, loom_dtype t, int64_t ne0, int64_t ne1,
                          int64_t ne2, int64_t ne3) {
    (void)c;
    /* Unset trailing extents (0 in a parity_args initialiser) mean 1. */
    return loom_tensor_4d(g, t, ne0 > 0 ? ne0 : 1, ne1 > 0 ? ne1 : 1, ne2 > 0 ? ne2 : 1,
                          ne3 > 0 ? ne3 : 1);
}

void parity_fill_uniform(parity_ctx *c, const loom_tensor *t, float lo, float hi) {
    add_fill(c, t, FILL_UNIFORM, lo, hi, NULL);
}
void parity_fill_normal(parity_ctx *c, const loom_tensor *t, float scale) {
    add_fill(c, t, FILL_NORMAL, scale, 0, NULL);
}
void parity_fill_ints(parity_ctx *c, const loom_tensor *t, int32_t lo, int32_t hi) {
    add_fill(c, t, FILL_INTS, (float)lo, (float)hi, NULL);
}
void parity_fill_arange(parity_ctx *c, const loom_tensor *t, int32_t start) {
    add_fill(c, t, FILL_ARANGE, (float)start, 0, NULL);
}
void parity_fill_custom(parity_ctx *c, const loom_tensor *t, parity_fill_fn fn) {
    add_fill(c, t, FILL_CUSTOM, 0, 0, fn);
}
void parity_reduce(parity_ctx *c, int64_t k) {
    if (k > c->reduce) c->reduce = k;
}
void parity_tolerance(parity_ctx *c, double nmse) {
    c->tol = nmse;
}

loom_tensor *parity_equiv(parity_ctx *c, loom_graph *g, loom_tensor *equiv) {
    if (equiv && loom_op_is_view(equiv->op)) equiv = loom_cont(g, equiv);
    if (!equiv) return NULL;
    if (c->n_outs < MAX_OUTS) c->outs[c->n_outs++] = equiv;
    return equiv;
}

/* ---------------- options and statistics ---------------- */

typedef loom_parity_opts opts;

typedef struct be_stats {
    const char *name;
    int passed, failed;
    int fallback_nodes, fallback_cases;
    int fallback_ops[LOOM_OP_COUNT];
    parity_coverage cov; /* label "cpu(avx2)" and kernel counts */
} be_stats;

/* ---------------- tensor helpers ---------------- */

static void coord_of(const loom_tensor *t, int64_t idx, int64_t out[4]) {
    for (int d = 0; d < 4; d++) {
        int64_t ne = t->ne[d] > 0 ? t->ne[d] : 1;
        out[d] = idx % ne;
        idx /= ne;
    }
}

/* "f32[33,7,1,1] <- q4_0[64,33,1,1], f32[64,7,1,1](view)" */
static void describe_node(const loom_tensor *t, char *buf, size_t n) {
    char tmp[96];
    int w = snprintf(buf, n, "%s", loom_tensor_describe(t, tmp, sizeof tmp));
    for (int s = 0; s < LOOM_MAX_SRC && t->src[s] && w >= 0 && (size_t)w < n; s++) {
        const loom_tensor *src = t->src[s];
        w +=
            snprintf(buf + w, n - (size_t)w, "%s%s%s", s ? ", " : " <- ",
                     loom_tensor_describe(src, tmp, sizeof tmp),
                     src->op == LOOM_OP_VIEW && !loom_tensor_is_contiguous(src) ? "(strided)" : "");
    }
}

static bool is_compute(const loom_tensor *t) {
    return t->op != LOOM_OP_NONE && !loom_op_is_view(t->op);
}

/* Fill one leaf's bytes from its spec (default: uniform [-1, 1)). */
static loom_status gen_leaf(const parity_ctx *c, const loom_tensor *t, void *dst, uint64_t seed) {
    const fill_spec *fs = NULL;
    for (int i = 0; i < c->n_fills; i++)
        if (c->fills[i].id == t->id) fs = &c->fills[i]; /* last one wins */
    fill_spec def = {t->id, FILL_UNIFORM, -1.0f, 1.0f, NULL};
    if (!fs) fs = &def;
    int64_t n = loom_tensor_nelements(t);
    uint64_t rng = seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(t->id + 1));
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v) return LOOM_ERR_OOM;
    for (int64_t i = 0; i < n; i++) {
        switch (fs->kind) {
        case FILL_NORMAL:
            v[i] = fs->a * parity_rand_normal(&rng);
            break;
        case FILL_INTS: {
            int64_t lo = (int64_t)fs->a, span = (int64_t)fs->b - lo;
            v[i] = (float)(lo + (span > 0 ? (int64_t)(parity_rand_u64(&rng) % (uint64_t)span) : 0));
            break;
        }
        case FILL_ARANGE:
            v[i] = fs->a + (float)i;
            break;
        case FILL_CUSTOM:
            break;
        default:
            v[i] = fs->a + (fs->b - fs->a) * parity_rand_uniform(&rng);
            break;
        }
    }
    if (fs->kind == FILL_CUSTOM) fs->fn(v, n, t, &rng);
    loom_status st = LOOM_OK;
    if (t->dtype == LOOM_I32) {
        int32_t *d = dst;
        for (int64_t i = 0; i < n; i++)
            d[i] = (int32_t)lrintf(v[i]);
    } else if (t->dtype == LOOM_F32) {
        memcpy(dst, v, (size_t)n * sizeof *v);
    } else if (parity_is_kquant(t->dtype)) {
        st = parity_kquant_fill(t->dtype, dst, n, &rng); /* the fill spec does not apply */
    } else {
        st = loom_convert(LOOM_F32, v, t->dtype, dst, n);
    }
    free(v);
    return st;
}

/* Tolerance: f32 rounding grows with the reduction length; half-precision
 * and quantized inputs get a floor for backends that compute in lower
 * precision internally. Inputs are bit-identical, so no quantization error
 * enters (the reference reads the same quantized bytes). */
static double derive_tol(const parity_ctx *c, const loom_graph *g) {
    if (c->tol > 0) return c->tol;
    double k = c->reduce > 1 ? (double)c->reduce : 1.0;
    double tol = 1e-10 * (k > 128 ? k / 128.0 : 1.0);
    bool half = false, quant = false;
    for (int i = 0; i < loom_graph_n_tensors(g); i++) {
        const loom_tensor *t = loom_graph_tensor(g, i);
        if (t->op != LOOM_OP_NONE) continue;
        half |= t->dtype == LOOM_F16 || t->dtype == LOOM_BF16;
        quant |= loom_dtype_is_quantized(t->dtype);
    }
    if (quant && tol < 1e-8) tol = 1e-8;
    if (half && tol < 1e-6) tol = 1e-6;
    return tol;
}

/* ---------------- reporting ---------------- */

typedef struct case_run {
    const parity_case *pc;
    uint64_t seed;
    double tol;
    const opts *o;
    const char *kernel; /* kernel the backend ran for the output, while known */
    const bool *act8;   /* per node index: run loom_ref_compute_act8 (NULL: none) */
} case_run;

static void report_fail(const case_run *cr, const char *backend, const char *what,
                        const loom_tensor *out, const cmp_result *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

static void report_fail(const case_run *cr, const char *backend, const char *what,
                        const loom_tensor *out, const cmp_result *r, const char *fmt, ...) {
    printf("FAIL %-6s %s [op %s, seed 0x%016" PRIx64 "]\n", backend, cr->pc->name,
           loom_op_name(cr->pc->op), cr->seed);
    if (cr->kernel && cr->kernel[0]) printf("       kernel: %s\n", cr->kernel);
    if (out) {
        char desc[512];
        describe_node(out, desc, sizeof desc);
        printf("       %s: %s\n", what, desc);
    }
    if (r) {
        if (r->exact)
            printf("       bytes differ (dequantized NMSE %.3e, max abs %.3e)", r->nmse,
                   r->max_abs);
        else
            printf("       NMSE %.3e (tolerance %.1e), max abs err %.3e", r->nmse, cr->tol,
                   r->max_abs);
        if (r->n_nonfinite) printf(", %" PRId64 " NaN/Inf mismatches", r->n_nonfinite);
        printf("\n");
        if (r->bad_idx >= 0 && out) {
            int64_t c[4];
            coord_of(out, r->bad_idx, c);
            printf("       first mismatch at [%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64
                   "]: got %.9g, want %.9g\n",
                   c[0], c[1], c[2], c[3], (double)r->got, (double)r->want);
        }
        if (r->note[0]) printf("       %s\n", r->note);
    }
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        printf("       ");
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
    }
    fflush(stdout);
}

/* ---------------- building a case ---------------- */

static void ctx_reset(parity_ctx *c) {
    free(c->fills);
    memset(c, 0, sizeof *c);
}

/* Build pc into a fresh graph; on success c->outs holds the outputs, all
 * expanded and flagged, and every leaf is flagged INPUT. */
static loom_status build_case(const parity_case *pc, parity_ctx *c, loom_graph **out_g, char *err,
                              size_t err_n) {
    ctx_reset(c);
    loom_graph *g = NULL;
    loom_status st = loom_graph_new(&g);
    if (st != LOOM_OK) {
        snprintf(err, err_n, "loom_graph_new: %s", loom_status_str(st));
        return st;
    }
    *out_g = g;
    loom_tensor *out = pc->build(c, g, &pc->a);
    if (out && loom_op_is_view(out->op)) out = loom_cont(g, out);
    if (!out || loom_graph_status(g) != LOOM_OK) {
        snprintf(err, err_n, "graph construction failed: %s",
                 loom_graph_status(g) != LOOM_OK ? loom_graph_error(g) : "builder returned NULL");
        return loom_graph_status(g) != LOOM_OK ? loom_graph_status(g) : LOOM_ERR_INVALID_ARG;
    }
    if (c->oom) {
        snprintf(err, err_n, "out of memory in the builder");
        return LOOM_ERR_OOM;
    }
    /* The primary output goes first; equivalents were appended by the builder. */
    memmove(c->outs + 1, c->outs, (size_t)c->n_outs * sizeof c->outs[0]);
    c->outs[0] = out;
    c->n_outs++;
    for (int i = 0; i < c->n_outs; i++) {
        if (i > 0 && (c->outs[i]->dtype != out->dtype ||
                      memcmp(c->outs[i]->ne, out->ne, sizeof out->ne) != 0)) {
            char a[96], b[96];
            snprintf(err, err_n, "equivalent output %s does not match the output %s",
                     loom_tensor_describe(c->outs[i], a, sizeof a),
                     loom_tensor_describe(out, b, sizeof b));
            return LOOM_ERR_INVALID_ARG;
        }
        if (!is_compute(c->outs[i])) {
            snprintf(err, err_n, "output %d is not a computed node (op %s)", i,
                     loom_op_name(c->outs[i]->op));
            return LOOM_ERR_INVALID_ARG;
        }
        loom_tensor_set_flags(c->outs[i], c->outs[i]->flags | LOOM_FLAG_OUTPUT);
        st = loom_graph_expand(g, c->outs[i]);
        if (st != LOOM_OK) {
            snprintf(err, err_n, "loom_graph_expand: %s: %s", loom_status_str(st),
                     loom_graph_error(g));
            return st;
        }
    }
    for (int i = 0; i < loom_graph_n_tensors(g); i++) {
        loom_tensor *t = loom_graph_tensor(g, i);
        if (t->op == LOOM_OP_NONE) loom_tensor_set_flags(t, t->flags | LOOM_FLAG_INPUT);
    }
    return LOOM_OK;
}

/* ---------------- the reference run ---------------- */

typedef struct ref_run {
    loom_graph *g;
    parity_ctx c;
    int n_tensors;
    uint8_t **mem; /* per tensor id; NULL for views */
    size_t *size;  /* bytes before the guard */
} ref_run;

static void ref_free(ref_run *r) {
    for (int i = 0; i < r->n_tensors; i++)
        if (r->mem) free(r->mem[i]);
    free(r->mem);
    free(r->size);
    loom_graph_free(r->g);
    ctx_reset(&r->c);
    memset(r, 0, sizeof *r);
}

static bool guards_ok(const ref_run *r, int *bad_id) {
    for (int i = 0; i < r->n_tensors; i++) {
        if (!r->mem[i]) continue;
        for (size_t k = 0; k < GUARD_BYTES; k++)
            if (r->mem[i][r->size[i] + k] != GUARD_FILL) {
                *bad_id = i;
                return false;
            }
    }
    return true;
}

/* Returns true when the reference could be computed (the case may still
 * have failed a reference-level check; *ref_ok says). */
static bool ref_compute(case_run *cr, ref_run *r, bool *ref_ok) {
    char err[LOOM_ERROR_MAX] = "";
    *ref_ok = false;
    if (build_case(cr->pc, &r->c, &r->g, err, sizeof err) != LOOM_OK) {
        report_fail(cr, "ref", "", NULL, NULL, "%s", err);
        return false;
    }
    loom_graph *g = r->g;
    r->n_tensors = loom_graph_n_tensors(g);
    r->mem = calloc((size_t)r->n_tensors, sizeof *r->mem);
    r->size = calloc((size_t)r->n_tensors, sizeof *r->size);
    if (!r->mem || !r->size) {
        report_fail(cr, "ref", "", NULL, NULL, "out of memory");
        return false;
    }
    /* Storage for non-views first (leaves random, results NaN-filled so an
     * element the kernel forgets to write shows up), then alias the views. */
    for (int i = 0; i < r->n_tensors; i++) {
        loom_tensor *t = loom_graph_tensor(g, i);
        if (loom_op_is_view(t->op) || loom_op_is_inplace(t->op)) continue;
        size_t n = parity_storage_bytes(t);
        r->size[i] = n;
        r->mem[i] = malloc(n + GUARD_BYTES);
        if (!r->mem[i]) {
            report_fail(cr, "ref", "", t, NULL, "out of memory (%zu bytes)", n);
            return false;
        }
        memset(r->mem[i] + n, GUARD_FILL, GUARD_BYTES);
        if (t->op == LOOM_OP_NONE && t->data) {
            /* A constant the graph itself provides (e.g. autodiff's seed). */
            memcpy(r->mem[i], t->data, n);
        } else if (t->op == LOOM_OP_NONE) {
            loom_status st = gen_leaf(&r->c, t, r->mem[i], cr->seed);
            if (st != LOOM_OK) {
                report_fail(cr, "ref", "leaf", t, NULL, "filling the leaf failed: %s",
                            loom_status_str(st));
                return false;
            }
        } else {
            memset(r->mem[i], 0xff, n);
        }
        t->data = r->mem[i];
    }
    /* Views and in-place results (set_rows) alias their storage. */
    for (int i = 0; i < r->n_tensors; i++) {
        loom_tensor *t = loom_graph_tensor(g, i);
        if ((loom_op_is_view(t->op) || loom_op_is_inplace(t->op)) && t->view_src &&
            t->view_src->data)
            t->data = (uint8_t *)t->view_src->data + t->view_offs;
    }
    cr->tol = derive_tol(&r->c, g);

    for (int i = 0; i < loom_graph_n_nodes(g); i++) {
        loom_tensor *t = loom_graph_node(g, i);
        if (!is_compute(t)) continue;
        if (!loom_ref_supports(t)) {
            report_fail(cr, "ref", "node", t, NULL, "the reference does not support this node");
            return false;
        }
        const bool a8 = cr->act8 && cr->act8[i];
        if (a8 && !loom_ref_act8_applies(t)) {
            report_fail(cr, "ref", "node", t, NULL,
                        "the backend ran an int8-activation kernel on a node outside "
                        "loom_ref_act8_applies");
            return false;
        }
        loom_status st = a8 ? loom_ref_compute_act8(t, 0, 1, err, sizeof err)
                            : loom_ref_compute(t, 0, 1, err, sizeof err);
        if (st != LOOM_OK) {
            report_fail(cr, "ref", "node", t, NULL, "loom_ref_compute: %s: %s", loom_status_str(st),
                        err);
            return false;
        }
    }
    int bad = -1;
    if (!guards_ok(r, &bad)) {
        report_fail(cr, "ref", "tensor", loom_graph_tensor(g, bad), NULL,
                    "guard bytes after the tensor were overwritten (out-of-bounds write)");
        return true;
    }
    /* Fused vs decomposed (or quantized vs dequantized) on the reference;
     * not for an int8-activation reference, whose equivalent computations
     * need not quantize the same way (the f32 reference checked them). */
    for (int k = 1; k < r->c.n_outs && !cr->act8; k++) {
        cmp_result res;
        loom_tensor *a = r->c.outs[0], *b = r->c.outs[k];
        parity_compare(a, a->data, b->data, cr->tol, &res);
        if (!res.ok) {
            report_fail(cr, "ref", "output vs equivalent", a, &res,
                        "reference output differs from its equivalent computation (%s)",
                        loom_op_name(b->op));
            return true;
        }
    }
    *ref_ok = true;
    return true;
}

/* ---------------- a backend run ---------------- */

static bool same_leaves(const loom_graph *a, const loom_graph *b) {
    if (loom_graph_n_tensors(a) != loom_graph_n_tensors(b)) return false;
    for (int i = 0; i < loom_graph_n_tensors(a); i++) {
        const loom_tensor *x = loom_graph_tensor(a, i), *y = loom_graph_tensor(b, i);
        if (x->op != y->op || x->dtype != y->dtype || memcmp(x->ne, y->ne, sizeof x->ne) != 0)
            return false;
    }
    return true;
}

/* Which nodes of g the backend (or the cpu, for nodes be does not support)
 * runs with int8 activations (ADR 0036): the kernel name says " act8".
 * Returns whether any does; mask has one entry per node. */
static bool graph_act8(loom_backend *be, loom_backend *cpu, const loom_graph *g, bool *mask) {
    bool any = false;
    for (int i = 0; i < loom_graph_n_nodes(g); i++) {
        const loom_tensor *t = loom_graph_node(g, i);
        mask[i] = false;
        if (!is_compute(t)) continue;
        loom_backend *on = be != cpu && !be->iface->supports(be, t) ? cpu : be;
        char name[64] = "";
        if (!on->iface->kernel_info) continue;
        on->iface->kernel_info(on, t, name, sizeof name);
        mask[i] = strstr(name, " act8") != NULL;
        any |= mask[i];
    }
    return any;
}

static bool backend_run(case_run *cr, const ref_run *ref_f32, loom_backend *be, loom_backend *cpu,
                        be_stats *bs) {
    const char *bname = bs->cov.label;
    char err[LOOM_ERROR_MAX] = "", kernel[64] = "";
    parity_ctx c = {0};
    loom_graph *g = NULL;
    loom_sched *s = NULL;
    bool ok = false;
    void *got[MAX_OUTS] = {0};
    int fallback = 0;
    const ref_run *ref = ref_f32;
    ref_run ref8;
    memset(&ref8, 0, sizeof ref8);
    bool *a8_mask = NULL, act8 = false;

    if (build_case(cr->pc, &c, &g, err, sizeof err) != LOOM_OK) {
        report_fail(cr, bname, "", NULL, NULL, "%s", err);
        goto done;
    }
    if (!same_leaves(ref->g, g) || c.n_outs != ref->c.n_outs) {
        report_fail(cr, bname, "", NULL, NULL, "the builder is not deterministic");
        goto done;
    }
    /* Int8-activation kernels are held to the reference that quantizes the
     * activations the same way, computed for this backend's choice of nodes. */
    a8_mask = calloc((size_t)loom_graph_n_nodes(g) + 1, sizeof *a8_mask);
    if (!a8_mask) {
        report_fail(cr, bname, "", NULL, NULL, "out of memory");
        goto done;
    }
    if (graph_act8(be, cpu, g, a8_mask)) {
        bool ok8 = false;
        cr->act8 = a8_mask;
        const bool have8 = ref_compute(cr, &ref8, &ok8);
        cr->act8 = NULL;
        if (!have8 || !ok8) goto done;
        ref = &ref8;
        act8 = true;
    }
    if (be != cpu) {
        int seen[LOOM_OP_COUNT] = {0};
        for (int i = 0; i < loom_graph_n_nodes(g); i++) {
            const loom_tensor *t = loom_graph_node(g, i);
            if (is_compute(t) && !be->iface->supports(be, t)) {
                fallback++;
                if (!seen[t->op]++) bs->fallback_ops[t->op]++;
            }
        }
        bs->fallback_nodes += fallback;
        bs->fallback_cases += fallback > 0;
    }
    /* Which kernels run: counted for the coverage summary, and the output's
     * named in this case's failure lines. */
    parity_coverage_count(&bs->cov, be, cpu, g, c.outs[0], kernel, sizeof kernel);
    cr->kernel = kernel;
    loom_backend *list[2] = {be, cpu};
    loom_status st = loom_sched_new(list, be == cpu ? 1 : 2, &s);
    if (st == LOOM_OK) st = loom_sched_alloc(s, g);
    if (st != LOOM_OK) {
        report_fail(cr, bname, "", NULL, NULL, "scheduling failed: %s: %s", loom_status_str(st),
                    s ? loom_sched_error(s) : "loom_sched_new");
        goto done;
    }
    for (int i = 0; i < loom_graph_n_tensors(g); i++) {
        loom_tensor *t = loom_graph_tensor(g, i);
        if (t->op != LOOM_OP_NONE || (!t->buffer && !t->data))
            continue; /* unused leaf: nothing allocated for it */
        /* The reference wrote into in-place destinations: regenerate their
         * original contents, so a backend that writes nothing fails. */
        bool written = false;
        for (int k = 0; k < loom_graph_n_nodes(g) && !written; k++) {
            const loom_tensor *n = loom_graph_node(g, k);
            written = loom_op_is_inplace(n->op) && n->view_src == t;
        }
        if (written) {
            void *fresh = malloc(ref->size[i] ? ref->size[i] : 1);
            st = fresh ? gen_leaf(&c, t, fresh, cr->seed) : LOOM_ERR_OOM;
            if (st == LOOM_OK) st = loom_tensor_upload(t, fresh, loom_tensor_nbytes(t));
            free(fresh);
        } else {
            st = loom_tensor_upload(t, ref->mem[i], loom_tensor_nbytes(t));
        }
        if (st != LOOM_OK) {
            report_fail(cr, bname, "leaf", t, NULL, "upload failed: %s", loom_status_str(st));
            goto done;
        }
    }
    st = loom_sched_compute(s, g);
    if (st != LOOM_OK) {
        report_fail(cr, bname, "", c.outs[0], NULL, "compute failed: %s: %s", loom_status_str(st),
                    loom_sched_error(s));
        goto done;
    }
    for (int k = 0; k < c.n_outs; k++) {
        size_t n = loom_tensor_nbytes(c.outs[k]);
        got[k] = malloc(parity_storage_bytes(c.outs[k]));
        if (!got[k]) {
            report_fail(cr, bname, "", NULL, NULL, "out of memory");
            goto done;
        }
        memset(got[k], 0xff, parity_storage_bytes(c.outs[k]));
        st = loom_tensor_download(c.outs[k], got[k], n);
        if (st != LOOM_OK) {
            report_fail(cr, bname, "output", c.outs[k], NULL, "download failed: %s",
                        loom_status_str(st));
            goto done;
        }
    }
    /* Each output against its reference, then the fused output against the
     * reference of each equivalent computation. */
    ok = true;
    double worst = 0;
    for (int k = 0; k < c.n_outs && ok; k++) {
        const loom_tensor *want = ref->c.outs[k];
        cmp_result res;
        parity_compare(want, got[k], want->data, cr->tol, &res);
        if (res.nmse > worst) worst = res.nmse;
        if (!res.ok) {
            report_fail(cr, bname, k ? "equivalent output" : "output", c.outs[k], &res, NULL);
            ok = false;
        }
        if (ok && k > 0 && !act8) {
            parity_compare(want, got[0], want->data, cr->tol, &res);
            if (!res.ok) {
                report_fail(cr, bname, "output vs reference of equivalent", c.outs[0], &res,
                            "fused output differs from the reference decomposition (%s)",
                            loom_op_name(want->op));
                ok = false;
            }
        }
    }
    if (ok && cr->o->verbose)
        printf("ok   %-6s %s (NMSE %.1e, tol %.0e, kernel %s%s%s)\n", bname, cr->pc->name, worst,
               cr->tol, kernel, fallback ? ", some nodes on cpu" : "",
               act8 ? ", vs int8-activation reference" : "");
done:
    cr->kernel = NULL;
    ref_free(&ref8);
    free(a8_mask);
    for (int k = 0; k < MAX_OUTS; k++)
        free(got[k]);
    loom_sched_free(s);
    loom_graph_free(g);
    ctx_reset(&c);
    if (ok)
        bs->passed++;
    else
        bs->failed++;
    return ok;
}

/* ---------------- main ---------------- */

loom_parity_opts loom_parity_default_opts(void) {
    return (loom_parity_opts){.seed = DEFAULT_SEED};
}

static bool selected(const parity_case *pc, const opts *o) {
    if (o->op && strcmp(o->op, loom_op_name(pc->op)) != 0) return false;
    return !o->match || strstr(pc->name, o->match);
}

int loom_parity_run(const loom_parity_opts *opt) {
    const char *argv0 = "loom test-ops";
    opts o = *opt;
    if (o.op) {
        bool known = false;
        for (int op = 0; op < LOOM_OP_COUNT; op++)
            known |= !strcmp(o.op, loom_op_name((loom_op)op));
        if (!known) {
            fprintf(stderr, "%s: unknown op '%s'\n", argv0, o.op);
            return 2;
        }
    }

    parity_case *cases = NULL;
    int n_cases = parity_cases_make(&cases);
    if (n_cases < 0) {
        fprintf(stderr, "%s: out of memory building the case table\n", argv0);
        return 2;
    }
    int n_sel = 0;
    for (int i = 0; i < n_cases; i++)
        n_sel += selected(&cases[i], &o);
    if (o.list) {
        for (int i = 0; i < n_cases; i++)
            if (selected(&cases[i], &o))
                printf("%-14s %s\n", loom_op_name(cases[i].op), cases[i].name);
        printf("%d cases\n", n_sel);
        free(cases);
        return 0;
    }

    loom_status st = loom_registry_init();
    if (st != LOOM_OK) {
        fprintf(stderr, "%s: backend registry failed to initialise: %s\n", argv0,
                loom_status_str(st));
        free(cases);
        return 2;
    }
    loom_backend *cpu = loom_registry_find("cpu");
    if (!cpu || !loom_registry_available(cpu->index)) {
        fprintf(stderr, "%s: the cpu backend is not available%s%s\n", argv0, cpu ? ": " : "",
                cpu ? loom_registry_why(cpu->index) : "");
        free(cases);
        loom_registry_shutdown();
        return 2;
    }
    /* Backends under test, in registry (priority) order. */
    loom_backend *bes[MAX_BACKENDS];
    be_stats stats[MAX_BACKENDS + 1];
    int n_bes = 0;
    memset(stats, 0, sizeof stats);
    stats[0].name = "ref";
    if (o.backend) {
        loom_backend *be = loom_registry_find(o.backend);
        if (!be) {
            fprintf(stderr, "%s: unknown backend '%s'\n", argv0, o.backend);
            free(cases);
            loom_registry_shutdown();
            return 2;
        }
        if (!loom_registry_available(be->index)) {
            fprintf(stderr, "%s: backend '%s' is unavailable: %s\n", argv0, o.backend,
                    loom_registry_why(be->index));
            free(cases);
            loom_registry_shutdown();
            return 2;
        }
        bes[n_bes++] = be;
    } else {
        for (int i = 0; i < loom_registry_count() && n_bes < MAX_BACKENDS; i++) {
            if (loom_registry_available(i))
                bes[n_bes++] = loom_registry_get(i);
            else
                printf("%s: unavailable (%s), skipped\n", loom_registry_get(i)->iface->name,
                       loom_registry_why(i));
        }
    }
    for (int b = 0; b < n_bes; b++) {
        parity_coverage_init(&stats[b + 1].cov, bes[b]);
        stats[b + 1].name = stats[b + 1].cov.label;
    }

    printf("parity: %d cases x backends:", n_sel);
    for (int b = 0; b < n_bes; b++)
        printf(" %s", stats[b + 1].name);
    printf(" (seed 0x%016" PRIx64 ")\n", o.seed);
    fflush(stdout);

    clock_t t0 = clock();
    for (int i = 0; i < n_cases; i++) {
        const parity_case *pc = &cases[i];
        if (!selected(pc, &o)) continue;
        case_run cr = {pc, parity_rand_u64(&(uint64_t){o.seed ^ hash_str(pc->name)}), 0, &o, NULL, NULL};
        ref_run ref;
        memset(&ref, 0, sizeof ref);
        bool ref_ok = false;
        bool have_ref = ref_compute(&cr, &ref, &ref_ok);
        if (ref_ok)
            stats[0].passed++;
        else
            stats[0].failed++;
        if (ref_ok && o.verbose) printf("ok   %-6s %s (tol %.0e)\n", "ref", pc->name, cr.tol);
        if (have_ref)
            for (int b = 0; b < n_bes; b++)
                backend_run(&cr, &ref, bes[b], cpu, &stats[b + 1]);
        ref_free(&ref);
        fflush(stdout);
    }
    /* numpy goldens: an independent check of the reference and of each backend.
     * Filters (--op/--case) select parity cases only, so goldens run unfiltered. */
    char gdir[4096] = "";
    if (o.golden)
        snprintf(gdir, sizeof gdir, "%s", o.golden);
    else if (getenv("LOOM_SOURCE_DIR") && getenv("LOOM_SOURCE_DIR")[0])
        snprintf(gdir, sizeof gdir, "%s/tests/golden", getenv("LOOM_SOURCE_DIR"));
#ifdef LOOM_DEFAULT_SOURCE_DIR
    else
        snprintf(gdir, sizeof gdir, "%s/tests/golden", LOOM_DEFAULT_SOURCE_DIR);
#endif
    bool run_golden = gdir[0] && strcmp(gdir, "none") != 0 && !o.op && !o.match;
    for (int b = 0; b < n_bes && run_golden; b++) {
        int gp = 0, gf = 0;
        int n = parity_golden_run(bes[b], cpu, gdir, o.verbose, &gp, &gf);
        if (n < 0) {
            printf("golden: cannot open %s: skipped (use --golden DIR)\n", gdir);
            break;
        }
        printf("golden: %s: %d numpy cases, %d passed, %d failed\n", stats[b + 1].name, n, gp, gf);
        stats[b + 1].passed += gp;
        stats[b + 1].failed += gf;
    }
    /* Kernel coverage; a claim no case ran is only a failure when every
     * case ran (a filtered run skips the cases that exercise it). */
    for (int b = 0; b < n_bes && n_sel > 0; b++)
        stats[b + 1].failed += parity_coverage_report(&stats[b + 1].cov, bes[b], !o.op && !o.match);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;

    int passed = 0, failed = 0;
    for (int b = 0; b <= n_bes; b++) {
        const be_stats *bs = &stats[b];
        printf("%-6s: %d passed, %d failed", bs->name, bs->passed, bs->failed);
        if (b > 0 && bes[b - 1] != cpu) {
            printf("; %d ops fell back to cpu (in %d cases)", bs->fallback_nodes,
                   bs->fallback_cases);
            const char *sep = ": ";
            for (int op = 0; op < LOOM_OP_COUNT; op++)
                if (bs->fallback_ops[op]) {
                    printf("%s%s x%d", sep, loom_op_name((loom_op)op), bs->fallback_ops[op]);
                    sep = ", ";
                }
        }
        printf("\n");
        passed += bs->passed;
        failed += bs->failed;
    }
    printf("parity: %.1f s cpu time\n", secs);
    printf("%d passed, %d failed\n", passed, failed);
    free(cases);
    loom_registry_shutdown();
    return failed ? 1 : 0;
}
