/* train/lora.c - LoRA adapters: parameters, the projection hook, dropout
 * masks, and train/'s random generator (see lora.h). */
#include "lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const proj_names[LOOM_PROJ_COUNT] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

const char *loom_lora_proj_name(loom_proj which) {
    return (unsigned)which < LOOM_PROJ_COUNT ? proj_names[which] : "?";
}

loom_lora_config loom_lora_default_config(void) {
    return (loom_lora_config){
        .r = 64, .alpha = 16.0f, .dropout = 0.05f, .targets = LOOM_LORA_ALL_TARGETS};
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void loom_train_rng_seed(uint64_t rng[4], uint64_t seed) {
    for (int i = 0; i < 4; i++)
        rng[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t loom_train_rng_next(uint64_t s[4]) { /* xoshiro256** */
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

float loom_train_rng_uniform(uint64_t rng[4]) {
    return (float)(loom_train_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

void loom_lora_proj_dims(const loom_model_config *mc, loom_proj which, int64_t *in, int64_t *out) {
    const int64_t q = mc->n_heads * mc->head_dim, kv = mc->n_kv_heads * mc->head_dim;
    int64_t i = mc->dim, o = mc->dim;
    switch (which) {
    case LOOM_PROJ_Q:
        o = q;
        break;
    case LOOM_PROJ_K:
    case LOOM_PROJ_V:
        o = kv;
        break;
    case LOOM_PROJ_O:
        i = q;
        break;
    case LOOM_PROJ_GATE:
    case LOOM_PROJ_UP:
        o = mc->ffn_dim;
        break;
    case LOOM_PROJ_DOWN:
        i = mc->ffn_dim;
        break;
    default:
        break;
    }
    *in = i;
    *out = o;
}

static loom_status fail(char *err, size_t n, loom_status st, const char *msg) {
    if (err && n) snprintf(err, n, "lora: %s", msg);
    return st;
}

loom_status loom_lora_new(const loom_model_config *mc, const loom_lora_config *cfg, uint64_t seed,
                          loom_lora **out, char *err, size_t err_n) {
    if (!mc || !cfg || !out) return fail(err, err_n, LOOM_ERR_INVALID_ARG, "NULL argument");
    *out = NULL;
    if (cfg->r < 1 || cfg->r > 65536)
        return fail(err, err_n, LOOM_ERR_INVALID_ARG, "rank r must be in 1..65536");
    if (!(cfg->alpha > 0.0f) || !isfinite(cfg->alpha))
        return fail(err, err_n, LOOM_ERR_INVALID_ARG, "alpha must be a positive number");
    if (!(cfg->dropout >= 0.0f && cfg->dropout < 1.0f))
        return fail(err, err_n, LOOM_ERR_INVALID_ARG, "dropout must be in [0, 1)");
    if (!(cfg->targets & LOOM_LORA_ALL_TARGETS) || (cfg->targets & ~LOOM_LORA_ALL_TARGETS))
        return fail(err, err_n, LOOM_ERR_INVALID_ARG, "no (or an unknown) target module");
    loom_lora *lo = calloc(1, sizeof *lo);
    const int64_t L = mc->n_layers;
    if (!lo || !(lo->index = malloc((size_t)(L * LOOM_PROJ_COUNT) * sizeof *lo->index)) ||
        !(lo->p = calloc((size_t)(2 * L * LOOM_PROJ_COUNT), sizeof *lo->p))) {
        loom_lora_free(lo);
        return fail(err, err_n, LOOM_ERR_OOM, "out of memory");
    }
    lo->cfg = *cfg;
    lo->mc = *mc;
    lo->scale = cfg->alpha / (float)cfg->r;
    uint64_t rng[4];
    loom_train_rng_seed(rng, seed);
    for (int64_t l = 0; l < L; l++) {
        const bool moe = loom_model_config_layer_is_moe(mc, l);
        for (int j = 0; j < LOOM_PROJ_COUNT; j++) {
            lo->index[l * LOOM_PROJ_COUNT + j] = -1;
            if (!(cfg->targets >> j & 1u) || (moe && j >= LOOM_PROJ_GATE)) continue;
            int64_t in, o;
            loom_lora_proj_dims(mc, (loom_proj)j, &in, &o);
            lo->index[l * LOOM_PROJ_COUNT + j] = lo->n_params;
            for (int b = 0; b < 2; b++) {
                loom_lora_param *p = &lo->p[lo->n_params++];
                p->layer = l;
                p->proj = (loom_proj)j;
                p->is_b = b;
                p->rows = b ? o : cfg->r;
                p->cols = b ? cfg->r : in;
                snprintf(p->name, sizeof p->name,
                         "base_model.model.model.layers.%lld.%s.%s.lora_%c.weight", (long long)l,
                         j <= LOOM_PROJ_O ? "self_attn" : "mlp", proj_names[j], b ? 'B' : 'A');
                p->w = calloc((size_t)(p->rows * p->cols), sizeof *p->w);
                if (!p->w) {
                    loom_lora_free(lo);
                    return fail(err, err_n, LOOM_ERR_OOM, "out of memory");
                }
                /* kaiming_uniform_(a=sqrt(5)): bound = sqrt(6/((1+5) fan_in)) */
                const float bound = 1.0f / sqrtf((float)in);
                if (!b)
                    for (int64_t i = 0; i < p->rows * p->cols; i++)
                        p->w[i] = (2.0f * loom_train_rng_uniform(rng) - 1.0f) * bound;
            }
        }
    }
    *out = lo;
    return LOOM_OK;
}

void loom_lora_free(loom_lora *lo) {
    if (!lo) return;
    if (lo->p)
        for (int i = 0; i < lo->n_params; i++)
            free(lo->p[i].w);
    free(lo->p);
    free(lo->index);
    free(lo);
}

/* ---------------- graphs ---------------- */

loom_status loom_lora_binding_init(loom_lora_binding *b, loom_lora *lo, bool training) {
    memset(b, 0, sizeof *b);
    b->lo = lo;
    b->training = training && lo->cfg.dropout > 0.0f;
    b->leaf = calloc((size_t)(lo->n_params > 0 ? lo->n_params : 1), sizeof *b->leaf);
    return b->leaf ? LOOM_OK : LOOM_ERR_OOM;
}

void loom_lora_binding_free(loom_lora_binding *b) {
    if (!b) return;
    for (int i = 0; i < b->n_masks; i++)
        free(b->mask_data[i]);
    free(b->mask_data);
    free(b->mask);
    free(b->leaf);
    memset(b, 0, sizeof *b);
}

static loom_tensor *param_leaf(loom_graph *g, loom_lora_param *p) {
    loom_tensor *t = loom_tensor_2d(g, LOOM_F32, p->cols, p->rows);
    if (!t) return NULL;
    loom_tensor_set_name(t, "lora_%c.%lld.%s", p->is_b ? 'B' : 'A', (long long)p->layer,
                         proj_names[p->proj]);
    loom_tensor_set_flags(t, LOOM_FLAG_PARAM);
    if (loom_tensor_set_host_data(t, p->w) != LOOM_OK) {
        loom_graph_fail(g, LOOM_ERR_INTERNAL, "lora: cannot bind %s", p->name);
        return NULL;
    }
    return t;
}

/* x * mask, mask an INPUT leaf whose host memory the binding owns. */
static loom_tensor *dropout(loom_lora_binding *b, loom_graph *g, loom_tensor *x) {
    if (b->n_masks == b->cap_masks) {
        int cap = b->cap_masks ? 2 * b->cap_masks : 16;
        loom_tensor **m = realloc(b->mask, (size_t)cap * sizeof *m);
        if (m) b->mask = m;
        float **d = realloc(b->mask_data, (size_t)cap * sizeof *d);
        if (d) b->mask_data = d;
        if (!m || !d) {
            loom_graph_fail(g, LOOM_ERR_OOM, "lora: out of memory");
            return NULL;
        }
        b->cap_masks = cap;
    }
    loom_tensor *m = loom_tensor_2d(g, LOOM_F32, x->ne[0], x->ne[1] * x->ne[2] * x->ne[3]);
    float *d = m ? malloc((size_t)loom_tensor_nelements(m) * sizeof *d) : NULL;
    if (!d || loom_tensor_set_host_data(m, d) != LOOM_OK) {
        free(d);
        loom_graph_fail(g, LOOM_ERR_OOM, "lora: out of memory for a dropout mask");
        return NULL;
    }
    loom_tensor_set_flags(m, LOOM_FLAG_INPUT);
    loom_tensor_set_name(m, "lora_dropout_%d", b->n_masks);
    for (int64_t i = 0; i < loom_tensor_nelements(m); i++)
        d[i] = 1.0f; /* until the first draw */
    b->mask[b->n_masks] = m;
    b->mask_data[b->n_masks++] = d;
    return loom_mul(g, x, loom_reshape(g, m, 4, x->ne));
}

loom_tensor *loom_lora_hook(void *ud, loom_graph *g, int64_t layer, loom_proj which, loom_tensor *x,
                            loom_tensor *y) {
    loom_lora_binding *b = ud;
    loom_lora *lo = b->lo;
    if (!x || !y || layer < 0 || layer >= lo->mc.n_layers) return y;
    int i = lo->index[layer * LOOM_PROJ_COUNT + which];
    if (i < 0) return y;
    loom_tensor *A = b->leaf[i] = param_leaf(g, &lo->p[i]);
    loom_tensor *B = b->leaf[i + 1] = param_leaf(g, &lo->p[i + 1]);
    if (!loom_tensor_is_contiguous(x)) x = loom_cont(g, x);
    if (b->training) x = dropout(b, g, x);
    if (b->mm != LOOM_F32) { /* autocast: low-precision inputs, f32 accumulation */
        A = loom_cpy(g, A, b->mm);
        B = loom_cpy(g, B, b->mm);
        x = loom_cpy(g, x, b->mm);
    }
    loom_tensor *ax = loom_matmul(g, A, x); /* [r, N] */
    if (b->mm != LOOM_F32) ax = loom_cpy(g, ax, b->mm);
    loom_tensor *d = loom_scale(g, loom_matmul(g, B, ax), lo->scale); /* [out, N] */
    return loom_add(g, y, d);
}

void loom_lora_binding_draw_masks(loom_lora_binding *b, uint64_t rng[4]) {
    const float p = b->lo->cfg.dropout, keep = 1.0f / (1.0f - p);
    for (int k = 0; k < b->n_masks; k++) {
        float *d = b->mask_data[k];
        int64_t n = loom_tensor_nelements(b->mask[k]);
        for (int64_t i = 0; i < n; i++)
            d[i] = loom_train_rng_uniform(rng) < p ? 0.0f : keep;
    }
}
