/* model/generate/speculative.c - speculative decoding: drafters (a draft
 * model, prompt lookup), one batched verification forward, the rejection
 * sampler (see loom/generate.h and docs/adr/0038). */
#include <stdlib.h>
#include <string.h>

#include "loom/generate.h"
#include "model/model_internal.h"

loom_spec_params loom_spec_default_params(void) {
    loom_spec_params p;
    memset(&p, 0, sizeof p);
    p.n_draft = 4;
    p.ngram_max = 3;
    p.ngram_min = 1;
    return p;
}

void loom_spec_lookup(const int32_t *ctx, size_t n, int ngram_max, int ngram_min, int k,
                      int32_t *out, int *n_out) {
    *n_out = 0;
    if (!ctx || !out || k <= 0) return;
    for (int g = ngram_max; g >= ngram_min && g >= 1; g--) {
        if ((size_t)g >= n) continue; /* an earlier occurrence needs a start below n - g */
        const int32_t *pat = ctx + n - (size_t)g;
        for (size_t i = n - (size_t)g; i-- > 0;) { /* the most recent occurrence first */
            if (memcmp(ctx + i, pat, (size_t)g * sizeof *pat) != 0) continue;
            /* Continue what followed it; past the end of ctx the draft copies
             * itself (a match one period back extrapolates the repetition).
             * i + g <= n - 1, so src - n < j: an entry already written. */
            for (int j = 0; j < k; j++) {
                size_t src = i + (size_t)g + (size_t)j;
                out[j] = src < n ? ctx[src] : out[src - n];
            }
            *n_out = k;
            return;
        }
    }
}

/* max(0, p - q) at i; q NULL is a point mass at x. */
static double residual(const float *p, const float *q, int64_t i, int32_t x) {
    double r = (double)p[i] - (q ? (double)q[i] : (i == x ? 1.0 : 0.0));
    return r > 0 ? r : 0;
}

loom_status loom_spec_verify(const float *p, const float *q, int64_t n_vocab, int32_t x,
                             double u_accept, double u_resample, int32_t *out, bool *accepted) {
    if (!p || n_vocab <= 0 || x < 0 || x >= n_vocab || !out || !accepted)
        return LOOM_ERR_INVALID_ARG;
    const double qx = q ? (double)q[x] : 1.0;
    if (u_accept * qx < (double)p[x]) {
        *out = x;
        *accepted = true;
        return LOOM_OK;
    }
    *accepted = false;
    double sum = 0;
    for (int64_t i = 0; i < n_vocab; i++)
        sum += residual(p, q, i, x);
    /* sum is 0 only when p <= q everywhere, i.e. p == q up to rounding, where
     * a rejection cannot happen but for that rounding: draw from p. */
    const float *from_q = sum > 0 ? q : NULL;
    const int32_t from_x = sum > 0 ? x : -1;
    if (!(sum > 0))
        for (int64_t i = 0; i < n_vocab; i++)
            sum += p[i];
    const double target = u_resample * sum;
    double cum = 0;
    int32_t last = x;
    for (int64_t i = 0; i < n_vocab; i++) {
        double r = from_x >= 0 ? residual(p, from_q, i, from_x) : (double)p[i];
        if (r <= 0) continue;
        last = (int32_t)i;
        cum += r;
        if (target < cum) {
            *out = (int32_t)i;
            return LOOM_OK;
        }
    }
    *out = last; /* rounding: the mass summed to slightly below target */
    return LOOM_OK;
}

struct loom_spec {
    loom_model *target, *draft;
    loom_spec_params p;
    int64_t V;
    float *rows;    /* (n_draft + 1) * V: the verification forward's logits */
    float *qd;      /* n_draft * V: the draft model's distribution per drafted token */
    float *pd;      /* V: the target's distribution at one position */
    float *dlog;    /* V: the draft model's logits */
    int32_t *ids;   /* V candidate scratch */
    float *probs;   /* V */
    int32_t *vtoks; /* n_draft + 1: the verification batch */
    int32_t *dkv;   /* tokens in the draft model's slot 0 */
    size_t n_dkv, cap_dkv;
    loom_spec_stats st;
    /* adaptive draft length (adapt()): drafts per step, plain steps left
     * before drafting again, the pause after the next miss, misses in a row */
    int k_cur, skip, pause, misses;
    int last_slot; /* the slot of the previous step: another one restarts the history */
};

void loom_spec_reset(loom_spec *s) {
    if (!s) return;
    s->k_cur = s->p.n_draft;
    s->skip = s->pause = s->misses = 0;
    s->last_slot = -1;
}

/* After a verification of nd drafts of which a were accepted. A rejection
 * costs the rows after it (a (k+1)-row forward is ~1.1-1.5x a one-row one
 * on a cpu), so the next draft is one shorter (but not shorter than what
 * was accepted, plus one: an isolated miss in repeating text costs little);
 * full acceptance lengthens it again. Two verifications in a row with nothing
 * accepted pause drafting for 1, 2, 4 .. 32 plain steps: on text that
 * does not repeat, prompt lookup's unigram matches are rarely right (3% in
 * docs/PERF.md's ordinary prompt) and every miss was a wasted wider forward. */
static void adapt(loom_spec *s, int nd, int a) {
    if (a == nd) {
        if (s->k_cur < s->p.n_draft) s->k_cur++;
    } else {
        s->k_cur = a + 1 > s->k_cur - 1 ? a + 1 : s->k_cur - 1;
    }
    if (a > 0) {
        s->misses = 0;
        s->pause = 0;
        return;
    }
    if (++s->misses < 2) return;
    s->misses = 0;
    s->pause = s->pause ? (s->pause < 32 ? 2 * s->pause : 32) : 1;
    s->skip = s->pause;
}

void loom_spec_free(loom_spec *s) {
    if (!s) return;
    free(s->rows);
    free(s->qd);
    free(s->pd);
    free(s->dlog);
    free(s->ids);
    free(s->probs);
    free(s->vtoks);
    free(s->dkv);
    free(s);
}

/* The draft model must speak the target's vocabulary: same size and, when
 * both files carry a tokenizer, the same text for every id. */
static loom_status check_vocab(const loom_model *t, const loom_model *d, char *err, size_t err_n) {
    const int64_t vt = loom_model_config_of(t)->vocab_size,
                  vd = loom_model_config_of(d)->vocab_size;
    if (vt != vd)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "speculative: the draft model's vocabulary (%lld tokens) differs "
                               "from the target's (%lld): it needs the same tokenizer",
                               (long long)vd, (long long)vt);
    const loom_tokenizer *tt = loom_model_tokenizer(t), *td = loom_model_tokenizer(d);
    if (!tt || !td) return LOOM_OK;
    for (int64_t i = 0; i < vt; i++) {
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        bool oka = loom_tokenizer_piece(tt, (int32_t)i, &a, &la) == LOOM_OK;
        bool okb = loom_tokenizer_piece(td, (int32_t)i, &b, &lb) == LOOM_OK;
        if (oka != okb || (oka && (la != lb || memcmp(a, b, la) != 0)))
            return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                   "speculative: token %lld differs between the draft model's "
                                   "tokenizer and the target's: it needs the same tokenizer",
                                   (long long)i);
    }
    return LOOM_OK;
}

loom_status loom_spec_new(loom_model *target, const loom_spec_params *pp, loom_spec **out,
                          char *err, size_t err_n) {
    if (!target || !pp || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "speculative: NULL argument");
    *out = NULL;
    const loom_spec_params p = *pp;
    if (!p.draft == !p.lookup)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "speculative: give either a draft model or prompt lookup");
    if (p.n_draft < 1 || p.n_draft > LOOM_SPEC_MAX_DRAFT)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "speculative: n_draft %d is out of range (1..%d)", p.n_draft,
                               LOOM_SPEC_MAX_DRAFT);
    if (p.lookup && (p.ngram_max < 1 || p.ngram_max > LOOM_SPEC_MAX_NGRAM || p.ngram_min < 1 ||
                     p.ngram_min > p.ngram_max))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "speculative: n-gram sizes %d..%d are out of range (1..%d)",
                               p.ngram_min, p.ngram_max, LOOM_SPEC_MAX_NGRAM);
    if (p.draft) LOOM_TRY(check_vocab(target, p.draft, err, err_n));
    loom_spec *s = calloc(1, sizeof *s);
    if (!s) return loom_model_fail(err, err_n, LOOM_ERR_OOM, "speculative: out of memory");
    s->target = target;
    s->draft = p.draft;
    s->p = p;
    s->V = loom_model_config_of(target)->vocab_size;
    const size_t V = (size_t)s->V, K = (size_t)p.n_draft;
    s->rows = malloc((K + 1) * V * sizeof *s->rows);
    s->pd = malloc(V * sizeof *s->pd);
    s->ids = malloc(V * sizeof *s->ids);
    s->probs = malloc(V * sizeof *s->probs);
    s->vtoks = malloc((K + 1) * sizeof *s->vtoks);
    if (p.draft) {
        s->qd = malloc(K * V * sizeof *s->qd);
        s->dlog = malloc(V * sizeof *s->dlog);
    }
    if (!s->rows || !s->pd || !s->ids || !s->probs || !s->vtoks ||
        (p.draft && (!s->qd || !s->dlog))) {
        loom_spec_free(s);
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "speculative: out of memory");
    }
    loom_spec_reset(s);
    *out = s;
    return LOOM_OK;
}

void loom_spec_get_stats(const loom_spec *s, loom_spec_stats *out) {
    if (s && out) *out = s->st;
}

static bool dkv_push(loom_spec *s, const int32_t *t, size_t n) {
    if (s->n_dkv + n > s->cap_dkv) {
        size_t cap = s->cap_dkv ? s->cap_dkv : 256;
        while (cap < s->n_dkv + n)
            cap *= 2;
        int32_t *d = realloc(s->dkv, cap * sizeof *d);
        if (!d) return false;
        s->dkv = d;
        s->cap_dkv = cap;
    }
    memcpy(s->dkv + s->n_dkv, t, n * sizeof *t);
    s->n_dkv += n;
    return true;
}

/* Bring the draft model's slot 0 to hist[0..n) and leave the logits after
 * hist[n-1] in s->dlog: keep the common prefix of what it holds, feed the
 * rest (a new sequence, or the tokens accepted since the last step). */
static loom_status draft_sync(loom_spec *s, const int32_t *hist, size_t n, char *err,
                              size_t err_n) {
    size_t c = 0;
    while (c < s->n_dkv && c < n && s->dkv[c] == hist[c])
        c++;
    if (c == n) c = n - 1; /* the last token is fed again for its logits */
    if (loom_model_slot_truncate(s->draft, 0, (int64_t)c) != LOOM_OK) {
        /* Never shared here (the draft's slot is alone), but a clear and a
         * full feed is correct whatever happened. */
        loom_model_slot_clear(s->draft, 0);
        c = 0;
    }
    s->n_dkv = c;
    for (size_t i = c; i < n;) {
        size_t len = n - i < 256 ? n - i : 256;
        loom_batch b = {1, (int)len, (const int[]){0}, hist + i, false};
        LOOM_TRY(loom_model_decode(s->draft, &b, s->dlog, err, err_n));
        if (!dkv_push(s, hist + i, len))
            return loom_model_fail(err, err_n, LOOM_ERR_OOM, "speculative: out of memory");
        i += len;
    }
    return LOOM_OK;
}

/* Scatter the sampler's candidates into a dense distribution over V. */
static void densify(const loom_spec *s, int64_t n, float *dense) {
    memset(dense, 0, (size_t)s->V * sizeof *dense);
    for (int64_t i = 0; i < n; i++)
        dense[s->ids[i]] = s->probs[i];
}

/* Draw from the candidates in s->ids/probs (as loom_sampler_sample does). */
static int32_t draw(loom_spec *s, loom_sampler *smp, int64_t n) {
    if (n == 1) return s->ids[0];
    const double u = loom_sampler_uniform(smp);
    double cum = 0;
    for (int64_t i = 0; i < n; i++) {
        cum += s->probs[i];
        if (u < cum) return s->ids[i];
    }
    return s->ids[n - 1];
}

/* k tokens from the draft model after hist[0..n); q of each in s->qd. The
 * draft's distribution is the target sampler's pipeline over the draft's
 * logits (penalties over the sequence so far): any q keeps verification
 * exact, a similar one is accepted more often. */
static loom_status draft_model(loom_spec *s, loom_sampler *smp, const int32_t *hist, size_t n,
                               int k, int32_t *d, char *err, size_t err_n) {
    LOOM_TRY(draft_sync(s, hist, n, err, err_n));
    for (int j = 0; j < k; j++) {
        int64_t nc;
        LOOM_TRY(loom_sampler_candidates(smp, s->dlog, s->ids, s->probs, &nc));
        densify(s, nc, s->qd + (size_t)j * (size_t)s->V);
        d[j] = draw(s, smp, nc);
        if (j + 1 == k) break; /* the last draft is fed at the next sync, if accepted */
        loom_batch b = {1, 1, (const int[]){0}, &d[j], false};
        LOOM_TRY(loom_model_decode(s->draft, &b, s->dlog, err, err_n));
        if (!dkv_push(s, &d[j], 1))
            return loom_model_fail(err, err_n, LOOM_ERR_OOM, "speculative: out of memory");
    }
    return LOOM_OK;
}

loom_status loom_spec_step(loom_spec *s, int slot, loom_sampler *smp, const int32_t *hist,
                           size_t n_hist, int32_t max_out, int32_t *out, int32_t *n_out, char *err,
                           size_t err_n) {
    if (!s || !smp || !hist || n_hist == 0 || max_out < 1 || !out || !n_out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "speculative: bad arguments");
    *n_out = 0;
    loom_model *m = s->target;
    const int64_t pos0 = loom_model_slot_pos(m, slot), n_ctx = loom_model_n_ctx(m);
    if (pos0 < 0 || (size_t)pos0 + 1 != n_hist)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "speculative: slot %d holds %lld tokens, the history %zu", slot,
                               (long long)pos0, n_hist);
    const size_t V = (size_t)s->V;
    /* Drafts that fit: the caller's budget (one token is the target's own)
     * and the context, where the slot stays below n_ctx - 1 so that a
     * caller's "context full" check falls on the same token as without. */
    if (slot != s->last_slot) { /* another sequence (the server's streams take turns) */
        loom_spec_reset(s);
        s->last_slot = slot;
    }
    int64_t k = s->k_cur;
    if (s->skip > 0) { /* drafting paused (adapt()) */
        s->skip--;
        k = 0;
    }
    if (k > max_out - 1) k = max_out - 1;
    if (k > n_ctx - pos0 - 2) k = n_ctx - pos0 - 2;
    if (s->draft && k > loom_model_n_ctx(s->draft) - (int64_t)n_hist + 1)
        k = loom_model_n_ctx(s->draft) - (int64_t)n_hist + 1;
    int32_t *d = s->vtoks + 1;
    int nd = 0;
    if (k > 0 && s->p.lookup)
        loom_spec_lookup(hist, n_hist, s->p.ngram_max, s->p.ngram_min, (int)k, d, &nd);
    else if (k > 0) {
        LOOM_TRY(draft_model(s, smp, hist, n_hist, (int)k, d, err, err_n));
        nd = (int)k;
    }
    s->vtoks[0] = hist[n_hist - 1];
    loom_batch b = {1, 1 + nd, &slot, s->vtoks, nd > 0};
    LOOM_TRY(loom_model_decode(m, &b, s->rows, err, err_n));
    if (nd == 0) { /* nothing to verify: a plain decode step */
        s->st.n_plain++;
        LOOM_TRY(loom_sampler_sample(smp, s->rows, &out[0]));
        loom_sampler_accept(smp, out[0]);
        *n_out = 1;
        return LOOM_OK;
    }
    s->st.n_steps++;
    s->st.n_drafted += nd;
    int a = 0;
    for (; a < nd; a++) {
        int64_t nc;
        float *row = s->rows + (size_t)a * V;
        LOOM_TRY(loom_sampler_candidates(smp, row, s->ids, s->probs, &nc));
        int32_t t;
        bool ok;
        if (nc == 1) { /* greedy (or a cut to one token): accept the argmax only */
            t = s->ids[0];
            ok = t == d[a];
        } else {
            densify(s, nc, s->pd);
            const double u1 = loom_sampler_uniform(smp), u2 = loom_sampler_uniform(smp);
            const float *q = s->draft ? s->qd + (size_t)a * V : NULL;
            LOOM_TRY(loom_spec_verify(s->pd, q, s->V, d[a], u1, u2, &t, &ok));
        }
        loom_sampler_accept(smp, t);
        out[a] = t;
        if (!ok) break;
        s->st.n_accepted++;
    }
    if (a == nd) { /* every draft accepted: the last row gives one more token */
        LOOM_TRY(loom_sampler_sample(smp, s->rows + (size_t)nd * V, &out[nd]));
        loom_sampler_accept(smp, out[nd]);
    }
    *n_out = a + 1;
    adapt(s, nd, a);
    /* The slot keeps hist and the accepted drafts; the rejected rows go.
     * Every row past pos0 lies in a block this slot allocated (a sequence
     * only appends into its own blocks, docs/adr/0035), so the truncation
     * never meets a shared block. */
    loom_status st = loom_model_slot_truncate(m, slot, pos0 + a + 1);
    if (st != LOOM_OK)
        return loom_model_fail(err, err_n, st, "speculative: dropping rejected KV rows failed");
    return LOOM_OK;
}
