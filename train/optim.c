/* train/optim.c - f32 AdamW, the cosine schedule and global-norm clipping
 * (see optim.h). */
#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

loom_adamw_params loom_adamw_default_params(void) {
    return (loom_adamw_params){.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f};
}

typedef struct adamw {
    float **m, **v;
    size_t *bytes;
    char (*names)[32];
} adamw;

static void adamw_step(loom_optim *o, int i, float *w, const float *g, int64_t n, float lr) {
    adamw *a = o->impl;
    const float b1 = o->hp.beta1, b2 = o->hp.beta2, eps = o->hp.eps;
    /* torch computes the bias corrections in Python floats (double) */
    const double bc1 = 1.0 - pow((double)b1, (double)o->t);
    const double bc2 = 1.0 - pow((double)b2, (double)o->t);
    const float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    const float decay = 1.0f - lr * o->hp.weight_decay;
    float *m = a->m[i], *v = a->v[i];
    for (int64_t j = 0; j < n; j++) {
        w[j] *= decay;
        m[j] = b1 * m[j] + (1.0f - b1) * g[j];
        v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
        w[j] -= step_size * m[j] / (sqrtf(v[j]) / bc2_sqrt + eps);
    }
}

static int adamw_n_state(const loom_optim *o) {
    return 2 * o->n;
}

static void adamw_state(loom_optim *o, int k, const char **name, void **data, size_t *bytes) {
    adamw *a = o->impl;
    int i = k / 2;
    *name = a->names[k];
    *data = k % 2 ? (void *)a->v[i] : (void *)a->m[i];
    *bytes = a->bytes[i];
}

static void adamw_free(loom_optim *o) {
    adamw *a = o->impl;
    if (!a) return;
    for (int i = 0; i < o->n; i++) {
        if (a->m) free(a->m[i]);
        if (a->v) free(a->v[i]);
    }
    free(a->m);
    free(a->v);
    free(a->bytes);
    free(a->names);
    free(a);
}

static const loom_optim_ops adamw_ops = {"adamw", adamw_step, adamw_n_state, adamw_state,
                                         adamw_free};

loom_status loom_adamw_new(const loom_adamw_params *hp, int n, const int64_t *sizes,
                           loom_optim **out) {
    if (!hp || n < 0 || (n && !sizes) || !out) return LOOM_ERR_INVALID_ARG;
    *out = NULL;
    loom_optim *o = calloc(1, sizeof *o);
    adamw *a = calloc(1, sizeof *a);
    if (!o || !a) {
        free(o);
        free(a);
        return LOOM_ERR_OOM;
    }
    o->ops = &adamw_ops;
    o->hp = *hp;
    o->n = n;
    o->impl = a;
    size_t k = (size_t)(n > 0 ? n : 1);
    a->m = calloc(k, sizeof *a->m);
    a->v = calloc(k, sizeof *a->v);
    a->bytes = calloc(k, sizeof *a->bytes);
    a->names = calloc(2 * k, sizeof *a->names);
    if (!a->m || !a->v || !a->bytes || !a->names) {
        loom_optim_free(o);
        return LOOM_ERR_OOM;
    }
    for (int i = 0; i < n; i++) {
        a->bytes[i] = (size_t)sizes[i] * sizeof(float);
        a->m[i] = calloc((size_t)sizes[i] + 1, sizeof(float));
        a->v[i] = calloc((size_t)sizes[i] + 1, sizeof(float));
        snprintf(a->names[2 * i], sizeof a->names[0], "exp_avg.%d", i);
        snprintf(a->names[2 * i + 1], sizeof a->names[0], "exp_avg_sq.%d", i);
        if (!a->m[i] || !a->v[i]) {
            loom_optim_free(o);
            return LOOM_ERR_OOM;
        }
    }
    *out = o;
    return LOOM_OK;
}

loom_status loom_optim_create(const char *name, const loom_adamw_params *hp, int n,
                              const int64_t *sizes, loom_optim **out) {
    if (!name || !strcmp(name, "adamw")) return loom_adamw_new(hp, n, sizes, out);
    if (!strcmp(name, "adamw8bit")) return loom_adamw8bit_new(hp, n, sizes, out);
    return LOOM_ERR_UNSUPPORTED;
}

void loom_optim_free(loom_optim *o) {
    if (!o) return;
    if (o->ops && o->ops->free) o->ops->free(o);
    free(o);
}

void loom_optim_step(loom_optim *o, float *const *w, float *const *g, const int64_t *sizes,
                     float lr) {
    o->t++;
    for (int i = 0; i < o->n; i++)
        o->ops->step(o, i, w[i], g[i], sizes[i], lr);
}

float loom_lr_cosine(float peak, int64_t s, int64_t warmup, int64_t total) {
    if (s < warmup) return peak * (float)((double)s / (double)(warmup > 0 ? warmup : 1));
    int64_t span = total - warmup > 0 ? total - warmup : 1;
    double progress = (double)(s - warmup) / (double)span;
    double f = 0.5 * (1.0 + cos(3.14159265358979323846 * progress));
    return peak * (float)(f > 0.0 ? f : 0.0);
}

double loom_clip_grad_norm(float *const *g, const int64_t *sizes, int n, double max_norm) {
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < sizes[i]; j++)
            ss += (double)g[i][j] * (double)g[i][j];
    double norm = sqrt(ss);
    if (max_norm > 0.0 && norm > max_norm) {
        float c = (float)(max_norm / (norm + 1e-6));
        for (int i = 0; i < n; i++)
            for (int64_t j = 0; j < sizes[i]; j++)
                g[i][j] *= c;
    }
    return norm;
}
