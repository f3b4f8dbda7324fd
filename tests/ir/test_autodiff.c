/* tests/ir/test_autodiff.c - finite-difference gradient check for every
 * differentiable op. Each case builds y = f(params), takes the scalar
 * loss = sum(y * R) for a fixed random R, and compares the gradients that
 * loom_graph_backward emits (run on the cpu backend through the scheduler)
 * with central differences of the same loss. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loom/loom.h"
#include "testing.h"

#define MAX_PARAMS 6
#define SAMPLES    24 /* elements probed per parameter */

static uint64_t rng_state;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

typedef struct gc_case {
    const char *name;
    /* Build y from the graph; register float params (and int inputs, with their values). */
    loom_tensor *(*build)(loom_graph *g, struct gc_case *c);
    loom_tensor *params[MAX_PARAMS];
    int n_params;
    loom_tensor *ints[2];
    int32_t *int_data[2];
    int n_ints;
    float h;   /* finite-difference step */
    float tol; /* relative L2 error allowed */
    /* optional initialiser for param p (e.g. well-separated router logits) */
    void (*init)(int p, float *data, int64_t n);
} gc_case;

static loom_tensor *param(loom_graph *g, gc_case *c, int n_dims, int64_t a, int64_t b, int64_t d2,
                          int64_t d3) {
    int64_t ne[4] = {a, b, d2, d3};
    loom_tensor *t = loom_tensor_new(g, LOOM_F32, n_dims, ne);
    loom_tensor_set_flags(t, LOOM_FLAG_PARAM);
    loom_tensor_set_name(t, "p%d", c->n_params);
    c->params[c->n_params++] = t;
    return t;
}

static loom_tensor *ints(loom_graph *g, gc_case *c, int64_t n, const int32_t *vals) {
    loom_tensor *t = loom_tensor_1d(g, LOOM_I32, n);
    loom_tensor_set_flags(t, LOOM_FLAG_INPUT);
    c->ints[c->n_ints] = t;
    c->int_data[c->n_ints] = malloc((size_t)n * sizeof(int32_t));
    memcpy(c->int_data[c->n_ints], vals, (size_t)n * sizeof(int32_t));
    c->n_ints++;
    return t;
}

/* ---- cases ---- */
static loom_tensor *b_add(loom_graph *g, gc_case *c) {
    return loom_add(g, param(g, c, 3, 5, 3, 2, 1), param(g, c, 3, 5, 1, 2, 1));
}
static loom_tensor *b_mul(loom_graph *g, gc_case *c) {
    return loom_mul(g, param(g, c, 2, 6, 4, 1, 1), param(g, c, 2, 1, 4, 1, 1));
}
static loom_tensor *b_scale(loom_graph *g, gc_case *c) {
    return loom_scale(g, param(g, c, 2, 7, 3, 1, 1), -1.75f);
}
static loom_tensor *b_matmul(loom_graph *g, gc_case *c) { /* GQA-style broadcast 2 -> 4 */
    return loom_matmul(g, param(g, c, 3, 8, 5, 2, 1), param(g, c, 3, 8, 3, 4, 1));
}
static loom_tensor *b_matmul_q8(loom_graph *g, gc_case *c) { /* quantized weight: grad to x only */
    loom_tensor *w = loom_tensor_2d(g, LOOM_F32, 32, 4);
    loom_tensor_set_flags(w, LOOM_FLAG_INPUT);
    c->params[c->n_params++] = w; /* filled like a param but not differentiated */
    loom_tensor *wq = loom_cpy(g, w, LOOM_Q8_0);
    return loom_matmul(g, wq, param(g, c, 2, 32, 3, 1, 1));
}
static loom_tensor *b_matmul_f16(loom_graph *g, gc_case *c) { /* frozen f16: W^T taken in f16 */
    loom_tensor *w = loom_tensor_2d(g, LOOM_F32, 32, 5);
    loom_tensor_set_flags(w, LOOM_FLAG_INPUT);
    c->params[c->n_params++] = w; /* filled like a param but not differentiated */
    return loom_matmul(g, loom_cpy(g, w, LOOM_F16), param(g, c, 2, 32, 3, 1, 1));
}
static loom_tensor *b_rms_norm(loom_graph *g, gc_case *c) {
    return loom_rms_norm(g, param(g, c, 2, 16, 3, 1, 1), 1e-5f);
}
static loom_tensor *b_rope_neox(loom_graph *g, gc_case *c) {
    loom_rope_params p = loom_rope_params_llama3(8);
    int32_t pos[3] = {5, 9000, 70000};
    return loom_rope(g, param(g, c, 4, 8, 2, 3, 1), ints(g, c, 3, pos), &p);
}
static loom_tensor *b_rope_normal(loom_graph *g, gc_case *c) {
    loom_rope_params p = {.n_dims = 4, .mode = LOOM_ROPE_NORMAL, .theta = 10000.0f};
    int32_t pos[2] = {3, 11};
    return loom_rope(g, param(g, c, 4, 6, 2, 2, 1), ints(g, c, 2, pos), &p);
}
static loom_tensor *b_softmax(loom_graph *g, gc_case *c) {
    return loom_softmax(g, param(g, c, 2, 6, 4, 1, 1), 0.7f, true, 2);
}
static loom_tensor *b_silu(loom_graph *g, gc_case *c) {
    return loom_silu(g, param(g, c, 2, 9, 2, 1, 1));
}
static loom_tensor *b_swiglu(loom_graph *g, gc_case *c) {
    return loom_swiglu(g, param(g, c, 2, 7, 3, 1, 1), param(g, c, 2, 7, 3, 1, 1));
}
static loom_tensor *b_flash_attn(loom_graph *g, gc_case *c) { /* D 4, Tq 3, Hq 4, Tk 5, Hkv 2 */
    loom_tensor *q = param(g, c, 3, 4, 3, 4, 1);
    loom_tensor *k = param(g, c, 3, 4, 5, 2, 1);
    loom_tensor *v = param(g, c, 3, 4, 5, 2, 1);
    return loom_flash_attn(g, q, k, v, 0.5f, true, 2);
}
/* Sizes the optimised cpu kernel of flash_attn_back takes (D a multiple of
 * the vector width, several key and query tiles), q/k/v as permuted views of
 * [D, H, T] projections as the training graph passes them. */
static loom_tensor *b_flash_attn_tiles(loom_graph *g, gc_case *c, bool causal) {
    loom_tensor *q = loom_permute(g, param(g, c, 3, 16, 3, 37, 1), 0, 2, 1, 3);
    loom_tensor *k = loom_permute(g, param(g, c, 3, 16, 1, 37, 1), 0, 2, 1, 3);
    loom_tensor *v = loom_permute(g, param(g, c, 3, 16, 1, 37, 1), 0, 2, 1, 3);
    return loom_flash_attn(g, q, k, v, 0.6f, causal, 0);
}
static loom_tensor *b_flash_attn_causal(loom_graph *g, gc_case *c) {
    return b_flash_attn_tiles(g, c, true);
}
static loom_tensor *b_flash_attn_full(loom_graph *g, gc_case *c) {
    return b_flash_attn_tiles(g, c, false);
}
static void init_logits(int p, float *d, int64_t n) {
    if (p != 1) return;
    for (int64_t i = 0; i < n; i++) /* distinct, well separated: top-k stable under +-h */
        d[i] = (float)((i * 7) % 11) * 0.3f - 1.5f;
}
static loom_tensor *b_moe(loom_graph *g, gc_case *c) { /* Dm 6, T 3, E 4, F 5, top 2 */
    loom_tensor *x = param(g, c, 2, 6, 3, 1, 1);
    loom_tensor *logits = param(g, c, 2, 4, 3, 1, 1);
    loom_tensor *gate = param(g, c, 3, 6, 5, 4, 1);
    loom_tensor *up = param(g, c, 3, 6, 5, 4, 1);
    loom_tensor *down = param(g, c, 3, 5, 6, 4, 1);
    return loom_moe(g, x, logits, gate, up, down, 2);
}
static void init_gate_logits(int p, float *d, int64_t n) {
    (void)p;
    for (int64_t i = 0; i < n; i++)
        d[i] = (float)((i * 5) % 9) * 0.25f - 1.0f;
}
static loom_tensor *b_moe_gate(loom_graph *g, gc_case *c) {
    return loom_moe_gate(g, param(g, c, 2, 5, 3, 1, 1), 2);
}
static loom_tensor *b_cpy(loom_graph *g, gc_case *c) { /* f32 -> f16 -> f32: gradient passes */
    return loom_cpy(g, loom_cpy(g, param(g, c, 2, 4, 3, 1, 1), LOOM_F16), LOOM_F32);
}
static loom_tensor *b_concat(loom_graph *g, gc_case *c) {
    return loom_concat(g, param(g, c, 2, 3, 2, 1, 1), param(g, c, 2, 3, 4, 1, 1), 1);
}
static loom_tensor *b_cross_entropy(loom_graph *g, gc_case *c) {
    int32_t tg[4] = {2, -100, 0, 4};
    return loom_cross_entropy(g, param(g, c, 2, 5, 4, 1, 1), ints(g, c, 4, tg));
}
static loom_tensor *b_get_rows(loom_graph *g, gc_case *c) {
    int32_t ids[5] = {1, 3, 1, 0, 2};
    return loom_get_rows(g, param(g, c, 2, 4, 4, 1, 1), ints(g, c, 5, ids));
}
static loom_tensor *b_sum_to(loom_graph *g, gc_case *c) {
    return loom_sum_to(g, param(g, c, 3, 4, 3, 2, 1), (int64_t[]){4, 1, 2, 1});
}
static loom_tensor *b_views(loom_graph *g, gc_case *c) { /* reshape, permute, slice */
    loom_tensor *a = param(g, c, 2, 6, 4, 1, 1);
    loom_tensor *r = loom_reshape_3d(g, a, 3, 2, 4);
    loom_tensor *p = loom_permute(g, r, 2, 0, 1, 3); /* [2, 4, 3] */
    loom_tensor *s = loom_slice(g, p, 1, 1, 2);      /* [2, 2, 3] */
    return loom_cont(g, s);
}

static gc_case cases[] = {
    {.name = "add", .build = b_add},
    {.name = "mul", .build = b_mul},
    {.name = "scale", .build = b_scale},
    {.name = "matmul", .build = b_matmul},
    {.name = "matmul_q8_0", .build = b_matmul_q8},
    {.name = "matmul_f16", .build = b_matmul_f16},
    {.name = "rms_norm", .build = b_rms_norm},
    {.name = "rope_neox_llama3", .build = b_rope_neox},
    {.name = "rope_normal", .build = b_rope_normal},
    {.name = "softmax_causal", .build = b_softmax},
    {.name = "silu", .build = b_silu},
    {.name = "swiglu", .build = b_swiglu},
    {.name = "flash_attn", .build = b_flash_attn},
    {.name = "flash_attn_causal_tiles", .build = b_flash_attn_causal},
    {.name = "flash_attn_full_tiles", .build = b_flash_attn_full},
    {.name = "moe", .build = b_moe, .init = init_logits},
    {.name = "moe_gate", .build = b_moe_gate, .init = init_gate_logits},
    {.name = "cpy", .build = b_cpy, .tol = 2e-2f},
    {.name = "concat", .build = b_concat},
    {.name = "cross_entropy", .build = b_cross_entropy},
    {.name = "get_rows", .build = b_get_rows},
    {.name = "sum_to", .build = b_sum_to},
    {.name = "views", .build = b_views},
};

static loom_backend *cpu;

static int run_case(gc_case *c) {
    loom_graph *g = NULL;
    loom_sched *s = NULL;
    int ok = 0;
    float *vals[MAX_PARAMS] = {0}, *grads[MAX_PARAMS] = {0}, *r = NULL;
    if (loom_graph_new(&g) != LOOM_OK) return 0;
    loom_tensor *y = c->build(g, c);
    loom_tensor *R = y ? loom_tensor_new(g, LOOM_F32, 4, y->ne) : NULL;
    loom_tensor_set_flags(R, LOOM_FLAG_INPUT);
    loom_tensor *loss = loom_sum_to(g, loom_mul(g, y, R), (int64_t[]){1, 1, 1, 1});
    loom_tensor_set_flags(loss, LOOM_FLAG_OUTPUT);
    if (!loss || loom_graph_expand(g, loss) != LOOM_OK ||
        loom_graph_backward(g, loss, false) != LOOM_OK) {
        CHECK_MSG(0, "%s: building graph: %s", c->name, loom_graph_error(g));
        goto done;
    }
    if (loom_sched_new(&cpu, 1, &s) != LOOM_OK || loom_sched_alloc(s, g) != LOOM_OK) {
        CHECK_MSG(0, "%s: alloc: %s", c->name, s ? loom_sched_error(s) : "sched_new failed");
        goto done;
    }
    for (int i = 0; i < c->n_ints; i++)
        loom_tensor_upload(c->ints[i], c->int_data[i], loom_tensor_nbytes(c->ints[i]));
    int64_t nr = loom_tensor_nelements(R);
    r = malloc((size_t)nr * sizeof *r);
    for (int64_t i = 0; i < nr; i++)
        r[i] = frand();
    loom_tensor_upload(R, r, (size_t)nr * sizeof *r);
    for (int p = 0; p < c->n_params; p++) {
        int64_t n = loom_tensor_nelements(c->params[p]);
        vals[p] = malloc((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            vals[p][i] = frand();
        if (c->init) c->init(p, vals[p], n);
        loom_tensor_upload(c->params[p], vals[p], (size_t)n * sizeof(float));
    }
    if (loom_sched_compute(s, g) != LOOM_OK) {
        CHECK_MSG(0, "%s: compute: %s", c->name, loom_sched_error(s));
        goto done;
    }
    ok = 1;
    for (int p = 0; p < c->n_params; p++) {
        loom_tensor *t = c->params[p];
        int64_t n = loom_tensor_nelements(t);
        if (!(t->flags & LOOM_FLAG_PARAM)) {
            CHECK_MSG(t->grad == NULL, "%s: non-param input got a gradient", c->name);
            continue;
        }
        if (!t->grad) {
            CHECK_MSG(0, "%s: param %d has no gradient", c->name, p);
            ok = 0;
            continue;
        }
        grads[p] = malloc((size_t)n * sizeof(float));
        loom_tensor_download(t->grad, grads[p], (size_t)n * sizeof(float));
    }
    float h = c->h > 0 ? c->h : 1e-2f, tol = c->tol > 0 ? c->tol : 1e-2f;
    for (int p = 0; p < c->n_params && ok; p++) {
        if (!grads[p]) continue;
        loom_tensor *t = c->params[p];
        int64_t n = loom_tensor_nelements(t);
        double err2 = 0, ref2 = 0, worst = 0;
        int64_t worst_i = 0;
        float worst_a = 0, worst_f = 0;
        for (int k = 0; k < SAMPLES && k < n; k++) {
            int64_t i = n <= SAMPLES ? k : (int64_t)((frand() * 0.5f + 0.5f) * (float)n) % n;
            float lp, lm, x0 = vals[p][i];
            vals[p][i] = x0 + h;
            loom_tensor_upload(t, vals[p], (size_t)n * sizeof(float));
            loom_sched_compute(s, g);
            loom_tensor_download(loss, &lp, sizeof lp);
            vals[p][i] = x0 - h;
            loom_tensor_upload(t, vals[p], (size_t)n * sizeof(float));
            loom_sched_compute(s, g);
            loom_tensor_download(loss, &lm, sizeof lm);
            vals[p][i] = x0;
            loom_tensor_upload(t, vals[p], (size_t)n * sizeof(float));
            double fd = ((double)lp - lm) / (2.0 * h), an = grads[p][i];
            err2 += (fd - an) * (fd - an);
            ref2 += fd * fd;
            if (fabs(fd - an) > worst) {
                worst = fabs(fd - an);
                worst_i = i;
                worst_a = (float)an;
                worst_f = (float)fd;
            }
        }
        double rel = sqrt(err2) / fmax(sqrt(ref2), 1e-3);
        CHECK_MSG(rel < tol,
                  "%s: param %d: relative L2 error %.3g (tol %.3g); worst element %lld: "
                  "analytic %.6g vs finite difference %.6g",
                  c->name, p, rel, tol, (long long)worst_i, worst_a, worst_f);
        printf("  %-18s param %d  rel err %.2e\n", c->name, p, rel);
    }
done:
    for (int p = 0; p < MAX_PARAMS; p++) {
        free(vals[p]);
        free(grads[p]);
    }
    for (int i = 0; i < c->n_ints; i++)
        free(c->int_data[i]);
    free(r);
    loom_sched_free(s);
    loom_graph_free(g);
    return ok;
}

static void test_errors(void) {
    loom_graph *g = NULL;
    loom_graph_new(&g);
    loom_tensor *a = loom_tensor_2d(g, LOOM_F32, 3, 2);
    loom_tensor_set_flags(a, LOOM_FLAG_PARAM);
    loom_tensor *y = loom_silu(g, a);
    loom_graph_expand(g, y);
    CHECK(loom_graph_backward(g, y, false) == LOOM_ERR_INVALID_ARG); /* not a scalar */
    CHECK(strstr(loom_graph_error(g), "scalar") != NULL);
    loom_graph_free(g);

    /* a quantized weight never receives a gradient, but its activations do */
    loom_graph_new(&g);
    loom_tensor *w = loom_tensor_2d(g, LOOM_Q4_0, 32, 2);
    loom_tensor_set_flags(w, LOOM_FLAG_PARAM);
    loom_tensor *x = loom_tensor_2d(g, LOOM_F32, 32, 1);
    loom_tensor_set_flags(x, LOOM_FLAG_PARAM);
    loom_tensor *l = loom_sum_to(g, loom_matmul(g, w, x), (int64_t[]){1, 1, 1, 1});
    loom_graph_expand(g, l);
    CHECK(loom_graph_backward(g, l, false) == LOOM_OK);
    CHECK(w->grad == NULL && x->grad != NULL);
    loom_graph_free(g);
}

int main(void) {
    /* Finite differences need a forward that is smooth in the activations:
     * the cpu backend's int8 activations (ADR 0036) round them per block, so
     * the gradient checks run with f32 activations. */
    setenv("LOOM_CPU_ACT", "f32", 1);
    rng_state = 0x9e3779b97f4a7c15ull;
    if (loom_registry_init() != LOOM_OK || !(cpu = loom_registry_find("cpu"))) {
        fprintf(stderr, "no cpu backend\n");
        return 1;
    }
    test_errors();
    int n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        printf("gradcheck %s\n", cases[i].name);
        run_case(&cases[i]);
    }
    loom_registry_shutdown();
    return test_summary("test_autodiff");
}
