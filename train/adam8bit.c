/* train/adam8bit.c - 8-bit AdamW with block-wise dynamically quantized
 * states; the rule is in adam8bit.h. Every float operation is written in the
 * order scripts/gen_adam8bit_golden.py replays in numpy float32, so the golden
 * test can demand identical codes. */
#include "train/adam8bit.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "loom/dtype.h"

void loom_adam8_unsigned_map(float out[256]) {
    /* create_dynamic_map(signed=False, 7, 8): for exponent i = 0..6,
     * 2^(i+1) means of a torch.linspace(0.1, 1, 2^(i+1)+1) in float32, times
     * 10^(i-6); then 0 and 1. 2+4+...+128 = 254 values + 2 = 256. */
    static const double pow10[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
    int k = 0;
    for (int i = 0; i < 7; i++) {
        int steps = (1 << (i + 1)) + 1, half = steps / 2;
        float start = 0.1f, end = 1.0f, step = (end - start) / (float)(steps - 1), b[129];
        for (int j = 0; j < steps; j++)
            b[j] = j < half ? start + step * (float)j : end - step * (float)(steps - 1 - j);
        for (int j = 0; j + 1 < steps; j++)
            out[k++] = (float)pow10[i] * ((b[j] + b[j + 1]) / 2.0f);
    }
    out[k++] = 0.0f;
    out[k++] = 1.0f;
    /* Sorted ascending (insertion sort: 256 entries, once per state). */
    for (int i = 1; i < 256; i++) {
        float v = out[i];
        int j = i - 1;
        while (j >= 0 && out[j] > v) {
            out[j + 1] = out[j];
            j--;
        }
        out[j + 1] = v;
    }
}

/* Nearest entry of a sorted map; ties go to the lower index (bitsandbytes'
 * cpu path takes argmin of |x - code|, which returns the first minimum). */
static int nearest_code(const float *map, float x) {
    int lo = 0, hi = 256; /* first index with map[i] >= x */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (map[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0) return 0;
    if (lo == 256) return 255;
    double m = ((double)map[lo - 1] + (double)map[lo]) * 0.5;
    return (double)x > m ? lo : lo - 1;
}

/* Quantize one block whose absmax is am: the code nearest 0 when am is 0
 * (bitsandbytes would divide 0 by 0 there). keep_sign: the momentum rule. */
static void quantize_block(const float *map, const float *x, int len, float am, bool keep_sign,
                           uint8_t *codes) {
    int zero = nearest_code(map, 0.0f);
    for (int i = 0; i < len; i++) {
        if (am == 0.0f) {
            codes[i] = (uint8_t)zero;
            continue;
        }
        int c = nearest_code(map, x[i] / am);
        if (keep_sign && (signbit(map[c]) != 0) != (signbit(x[i]) != 0)) c += x[i] > 0.0f ? 1 : -1;
        codes[i] = (uint8_t)c;
    }
}

static float block_absmax(const float *x, int len) {
    float am = 0.0f;
    for (int i = 0; i < len; i++)
        am = fabsf(x[i]) > am ? fabsf(x[i]) : am;
    return am;
}

loom_status loom_adam8_quantize(const float map[256], const float *x, int64_t n, uint8_t *codes,
                                float *absmax) {
    if (!map || !x || !codes || !absmax || n < 0) return LOOM_ERR_INVALID_ARG;
    for (int64_t i = 0; i < n; i++)
        if (isnan(x[i])) return LOOM_ERR_INVALID_ARG;
    for (int64_t b0 = 0; b0 < n; b0 += LOOM_ADAM8_BLOCK) {
        int len = (int)(n - b0 < LOOM_ADAM8_BLOCK ? n - b0 : LOOM_ADAM8_BLOCK);
        float am = block_absmax(x + b0, len);
        absmax[b0 / LOOM_ADAM8_BLOCK] = am;
        quantize_block(map, x + b0, len, am, false, codes + b0);
    }
    return LOOM_OK;
}

void loom_adam8_dequantize(const float map[256], const uint8_t *codes, const float *absmax,
                           int64_t n, float *x) {
    for (int64_t i = 0; i < n; i++)
        x[i] = map[codes[i]] * absmax[i / LOOM_ADAM8_BLOCK];
}

loom_status loom_adam8_state_init(loom_adam8_state *s, int64_t n) {
    if (!s || n < 1) return LOOM_ERR_INVALID_ARG;
    memset(s, 0, sizeof *s);
    int64_t nb = (n + LOOM_ADAM8_BLOCK - 1) / LOOM_ADAM8_BLOCK;
    s->m_code = calloc((size_t)n, 1);
    s->v_code = calloc((size_t)n, 1);
    s->m_absmax = calloc((size_t)nb, sizeof(float));
    s->v_absmax = calloc((size_t)nb, sizeof(float));
    if (!s->m_code || !s->v_code || !s->m_absmax || !s->v_absmax) {
        loom_adam8_state_free(s);
        return LOOM_ERR_OOM;
    }
    s->n = n;
    s->n_blocks = nb;
    loom_adam8_unsigned_map(s->umap);
    return LOOM_OK;
}

void loom_adam8_state_free(loom_adam8_state *s) {
    if (!s) return;
    free(s->m_code);
    free(s->v_code);
    free(s->m_absmax);
    free(s->v_absmax);
    memset(s, 0, sizeof *s);
}

static bool hparams_ok(const loom_adam8_hparams *h, int64_t t) {
    return h && t >= 1 && isfinite(h->lr) && h->lr >= 0.0f && h->beta1 >= 0.0f && h->beta1 < 1.0f &&
           h->beta2 >= 0.0f && h->beta2 < 1.0f && h->eps > 0.0f && isfinite(h->eps) &&
           isfinite(h->weight_decay) && h->weight_decay >= 0.0f;
}

static bool all_finite(const float *g, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(g[i])) return false;
    return true;
}

/* Bias corrections in double, then f32 (bitsandbytes uses powf; double
 * keeps the golden generator and this file bit-identical across libms). */
typedef struct {
    float b1, b2, omb1, omb2, c2, step_size, eps_c2, decay;
    bool wd;
} adam_consts;

static adam_consts consts_of(const loom_adam8_hparams *h, int64_t t) {
    adam_consts k;
    k.b1 = h->beta1;
    k.b2 = h->beta2;
    k.omb1 = 1.0f - h->beta1;
    k.omb2 = 1.0f - h->beta2;
    float c1 = (float)(1.0 - pow((double)h->beta1, (double)t));
    k.c2 = (float)sqrt(1.0 - pow((double)h->beta2, (double)t));
    k.step_size = (-h->lr * k.c2) / c1;
    k.eps_c2 = k.c2 * h->eps;
    k.wd = h->weight_decay > 0.0f;
    k.decay = 1.0f - h->lr * h->weight_decay;
    return k;
}

/* The per-element update shared by both steps: m, v in f32. */
static inline void adam_elem(const adam_consts *k, float g, float *m, float *v, float *p) {
    float mm = *m * k->b1 + k->omb1 * g;
    float vv = *v * k->b2 + k->omb2 * g * g;
    float q = *p + k->step_size * (mm / (sqrtf(vv) + k->eps_c2));
    if (k->wd) q = q * k->decay;
    *m = mm;
    *v = vv;
    *p = q;
}

loom_status loom_adam8_step(loom_adam8_state *s, const loom_adam8_hparams *h, int64_t t,
                            float *param, const float *grad) {
    if (!s || !s->m_code || !param || !grad || !hparams_ok(h, t)) return LOOM_ERR_INVALID_ARG;
    if (!all_finite(grad, s->n)) return LOOM_ERR_INVALID_ARG;
    const adam_consts k = consts_of(h, t);
    const float *smap = loom_nf4_dq_code;
    float m[LOOM_ADAM8_BLOCK], v[LOOM_ADAM8_BLOCK];
    for (int64_t b = 0; b < s->n_blocks; b++) {
        int64_t b0 = b * LOOM_ADAM8_BLOCK;
        int len = (int)(s->n - b0 < LOOM_ADAM8_BLOCK ? s->n - b0 : LOOM_ADAM8_BLOCK);
        float am1 = s->m_absmax[b], am2 = s->v_absmax[b];
        for (int i = 0; i < len; i++) {
            m[i] = smap[s->m_code[b0 + i]] * am1;
            v[i] = s->umap[s->v_code[b0 + i]] * am2;
            adam_elem(&k, grad[b0 + i], &m[i], &v[i], &param[b0 + i]);
        }
        am1 = block_absmax(m, len);
        am2 = block_absmax(v, len);
        s->m_absmax[b] = am1;
        s->v_absmax[b] = am2;
        quantize_block(smap, m, len, am1, true, s->m_code + b0);
        quantize_block(s->umap, v, len, am2, false, s->v_code + b0);
    }
    return LOOM_OK;
}

loom_status loom_adam8_f32_step(const loom_adam8_hparams *h, int64_t t, int64_t n, float *param,
                                const float *grad, float *m, float *v) {
    if (!param || !grad || !m || !v || n < 0 || !hparams_ok(h, t)) return LOOM_ERR_INVALID_ARG;
    if (!all_finite(grad, n)) return LOOM_ERR_INVALID_ARG;
    const adam_consts k = consts_of(h, t);
    for (int64_t i = 0; i < n; i++)
        adam_elem(&k, grad[i], &m[i], &v[i], &param[i]);
    return LOOM_OK;
}
