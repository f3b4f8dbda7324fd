/* model/generate/sampler.c - token sampling (see loom/generate.h for the pipeline). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loom/generate.h"

struct loom_sampler {
    loom_sampler_params p;
    int64_t n_vocab;
    int32_t *hist; /* accepted tokens, oldest first */
    size_t n_hist, cap_hist;
    int32_t *count; /* per-token scratch for penalties, all zero between calls */
    int32_t *ids;   /* candidate scratch */
    float *probs;
    uint64_t rng[4];
};

loom_sampler_params loom_sampler_default_params(void) {
    loom_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.penalty_last_n = 64;
    p.seed = 42;
    return p;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static uint64_t next_u64(uint64_t s[4]) {
    const uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

static void seed_rng(loom_sampler *s) {
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix(&x);
}

loom_status loom_sampler_new(const loom_sampler_params *p, int64_t n_vocab, loom_sampler **out) {
    if (!out || n_vocab <= 0 || n_vocab > INT32_MAX) return LOOM_ERR_INVALID_ARG;
    *out = NULL;
    loom_sampler *s = calloc(1, sizeof *s);
    if (!s) return LOOM_ERR_OOM;
    s->p = p ? *p : loom_sampler_default_params();
    s->n_vocab = n_vocab;
    s->count = calloc((size_t)n_vocab, sizeof *s->count);
    s->ids = malloc((size_t)n_vocab * sizeof *s->ids);
    s->probs = malloc((size_t)n_vocab * sizeof *s->probs);
    if (!s->count || !s->ids || !s->probs) {
        loom_sampler_free(s);
        return LOOM_ERR_OOM;
    }
    seed_rng(s);
    *out = s;
    return LOOM_OK;
}

void loom_sampler_free(loom_sampler *s) {
    if (!s) return;
    free(s->hist);
    free(s->count);
    free(s->ids);
    free(s->probs);
    free(s);
}

void loom_sampler_accept(loom_sampler *s, int32_t token) {
    if (!s || token < 0 || token >= s->n_vocab) return;
    if (s->n_hist == s->cap_hist) {
        size_t cap = s->cap_hist ? 2 * s->cap_hist : 256;
        int32_t *h = realloc(s->hist, cap * sizeof *h);
        if (!h) return; /* penalties then miss this token; sampling still works */
        s->hist = h;
        s->cap_hist = cap;
    }
    s->hist[s->n_hist++] = token;
}

void loom_sampler_reset(loom_sampler *s) {
    if (!s) return;
    s->n_hist = 0;
    seed_rng(s);
}

static void apply_penalties(loom_sampler *s, float *logits) {
    const loom_sampler_params *p = &s->p;
    if (p->repeat_penalty == 1.0f && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f)
        return;
    size_t n = s->n_hist, first = 0;
    if (p->penalty_last_n >= 0 && (size_t)p->penalty_last_n < n)
        first = n - (size_t)p->penalty_last_n;
    for (size_t i = first; i < n; i++)
        s->count[s->hist[i]]++;
    for (size_t i = first; i < n; i++) {
        int32_t t = s->hist[i];
        int32_t c = s->count[t];
        if (c == 0) continue; /* already applied */
        float *l = &logits[t];
        if (p->repeat_penalty != 1.0f && p->repeat_penalty > 0.0f)
            *l = *l > 0 ? *l / p->repeat_penalty : *l * p->repeat_penalty;
        *l -= p->presence_penalty + p->frequency_penalty * (float)c;
        s->count[t] = 0;
    }
}

/* Higher logit first; equal logits: lower id first. */
static int cand_cmp_ctx(const float *logits, int32_t a, int32_t b) {
    if (logits[a] != logits[b]) return logits[a] > logits[b] ? -1 : 1;
    return a < b ? -1 : (a > b);
}

static const float *g_sort_logits; /* qsort has no context argument in C11 */
static int cand_cmp(const void *a, const void *b) {
    return cand_cmp_ctx(g_sort_logits, *(const int32_t *)a, *(const int32_t *)b);
}

/* Sort ids[0..n) by (logit desc, id asc): insertion for small n, else qsort. */
static void sort_cands(const float *logits, int32_t *ids, int64_t n) {
    if (n <= 64) {
        for (int64_t i = 1; i < n; i++) {
            int32_t x = ids[i];
            int64_t j = i;
            for (; j > 0 && cand_cmp_ctx(logits, x, ids[j - 1]) < 0; j--)
                ids[j] = ids[j - 1];
            ids[j] = x;
        }
        return;
    }
    g_sort_logits = logits;
    qsort(ids, (size_t)n, sizeof *ids, cand_cmp);
}

loom_status loom_sampler_candidates(loom_sampler *s, float *logits, int32_t *ids, float *probs,
                                    int64_t *n_out) {
    if (!s || !logits || !ids || !probs || !n_out) return LOOM_ERR_INVALID_ARG;
    const loom_sampler_params *p = &s->p;
    const int64_t V = s->n_vocab;
    apply_penalties(s, logits);
    if (!(p->temperature > 0.0f)) {
        int64_t best = 0;
        for (int64_t i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        ids[0] = (int32_t)best;
        probs[0] = 1.0f;
        *n_out = 1;
        return LOOM_OK;
    }
    for (int64_t i = 0; i < V; i++)
        logits[i] /= p->temperature;
    int64_t n;
    if (p->top_k > 0 && p->top_k < V) {
        /* Keep the k best in ids[0..k), sorted, by insertion (k is small). */
        const int64_t k = p->top_k;
        n = 0;
        for (int64_t i = 0; i < V; i++) {
            int32_t x = (int32_t)i;
            if (n == k && cand_cmp_ctx(logits, x, ids[k - 1]) >= 0) continue;
            int64_t j = n < k ? n++ : k - 1;
            for (; j > 0 && cand_cmp_ctx(logits, x, ids[j - 1]) < 0; j--)
                ids[j] = ids[j - 1];
            ids[j] = x;
        }
    } else {
        for (int64_t i = 0; i < V; i++)
            ids[i] = (int32_t)i;
        n = V;
        sort_cands(logits, ids, n);
    }
    /* softmax over the candidates (ids[0] has the max logit) */
    const float mx = logits[ids[0]];
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        probs[i] = expf(logits[ids[i]] - mx); /* -inf (masked) gives 0 */
        sum += probs[i];
    }
    for (int64_t i = 0; i < n; i++)
        probs[i] = (float)(probs[i] / sum);
    if (p->top_p < 1.0f) {
        double cum = 0;
        int64_t keep = n;
        for (int64_t i = 0; i < n; i++) {
            cum += probs[i];
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (p->min_p > 0.0f) {
        const float thr = p->min_p * probs[0];
        int64_t keep = 1;
        while (keep < n && probs[keep] >= thr)
            keep++;
        n = keep;
    }
    sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += probs[i];
    for (int64_t i = 0; i < n; i++)
        probs[i] = (float)(probs[i] / sum);
    *n_out = n;
    return LOOM_OK;
}

double loom_sampler_uniform(loom_sampler *s) {
    return s ? (double)(next_u64(s->rng) >> 11) * (1.0 / 9007199254740992.0) : 0.0;
}

loom_status loom_sampler_sample(loom_sampler *s, float *logits, int32_t *out) {
    if (!s || !out) return LOOM_ERR_INVALID_ARG;
    int64_t n;
    LOOM_TRY(loom_sampler_candidates(s, logits, s->ids, s->probs, &n));
    if (n == 1) {
        *out = s->ids[0];
        return LOOM_OK;
    }
    const double u = loom_sampler_uniform(s);
    double cum = 0;
    for (int64_t i = 0; i < n; i++) {
        cum += s->probs[i];
        if (u < cum) {
            *out = s->ids[i];
            return LOOM_OK;
        }
    }
    *out = s->ids[n - 1]; /* rounding: the mass summed to slightly below 1 */
    return LOOM_OK;
}
