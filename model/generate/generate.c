/* model/generate/generate.c - prefill, the decode loop, stop conditions and
 * streaming (see loom/generate.h). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loom/generate.h"
#include "model/model_internal.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

loom_generate_params loom_generate_default_params(void) {
    loom_generate_params p;
    memset(&p, 0, sizeof p);
    p.n_predict = 128;
    p.sampling = loom_sampler_default_params();
    p.add_bos = true;
    p.parse_special = true;
    p.n_batch = 256;
    return p;
}

/* ---- text with stop strings ---- */

typedef struct gen_text {
    char *buf;
    size_t len, cap, emitted;
} gen_text;

static bool text_append(gen_text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *b = realloc(t->buf, cap);
        if (!b) return false;
        t->buf = b;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = 0;
    return true;
}

/* Position of the first stop string in t (searching only where new bytes
 * could complete one), or -1. */
static long find_stop(const gen_text *t, const loom_generate_params *p, size_t n_new) {
    long best = -1;
    for (size_t k = 0; k < p->n_stop; k++) {
        const char *s = p->stop[k];
        size_t sl = s ? strlen(s) : 0;
        if (!sl || sl > t->len) continue;
        size_t from = t->len - n_new >= sl ? t->len - n_new - sl + 1 : 0;
        for (size_t i = from; i + sl <= t->len; i++)
            if (!memcmp(t->buf + i, s, sl)) {
                if (best < 0 || (long)i < best) best = (long)i;
                break;
            }
    }
    return best;
}

/* Bytes at the end of t that could still become a stop string. */
static size_t held_back(const gen_text *t, const loom_generate_params *p) {
    size_t hold = 0;
    for (size_t k = 0; k < p->n_stop; k++) {
        const char *s = p->stop[k];
        size_t sl = s ? strlen(s) : 0;
        for (size_t h = sl > 1 ? sl - 1 : 0; h > hold; h--)
            if (h <= t->len && !memcmp(t->buf + t->len - h, s, h)) {
                hold = h;
                break;
            }
    }
    return hold;
}

/* Pass t->buf[emitted, upto) to the callback; false when it asks to stop. */
static bool emit(gen_text *t, const loom_generate_params *p, int32_t tok, size_t upto) {
    if (upto <= t->emitted) return true;
    bool go = true;
    if (p->on_token) go = p->on_token(p->ud, tok, t->buf + t->emitted, upto - t->emitted);
    t->emitted = upto;
    return go;
}

static bool is_eos(const loom_model *m, int32_t tok) {
    const loom_model_config *c = loom_model_config_of(m);
    const loom_tokenizer *tk = loom_model_tokenizer(m);
    if (tok == c->eos_id || tok == c->eot_id) return true;
    if (tk && (tok == loom_tokenizer_eos(tk) || tok == loom_tokenizer_eot(tk))) return true;
    return false;
}

/* Prefill tokens[0..n) into slot in chunks; logits of the last token. */
static loom_status prefill(loom_model *m, int slot, const int32_t *tokens, size_t n, int32_t chunk,
                           float *logits, char *err, size_t err_n) {
    size_t step = chunk > 0 ? (size_t)chunk : 256;
    for (size_t i = 0; i < n; i += step) {
        size_t len = n - i < step ? n - i : step;
        loom_batch b = {1, (int)len, &slot, tokens + i, false};
        LOOM_TRY(loom_model_decode(m, &b, logits, err, err_n));
    }
    return LOOM_OK;
}

loom_status loom_generate_tokens(loom_model *m, const int32_t *prompt, size_t n_prompt,
                                 const loom_generate_params *pp, int32_t **out_tokens,
                                 size_t *n_out, char **text_out, loom_generate_stats *stats,
                                 char *err, size_t err_n) {
    if (!m || !prompt || n_prompt == 0)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "generate: empty prompt");
    loom_generate_params p = pp ? *pp : loom_generate_default_params();
    const loom_tokenizer *tk = loom_model_tokenizer(m);
    const int64_t V = loom_model_config_of(m)->vocab_size;
    if (p.slot < 0 || p.slot >= loom_model_n_slots(m))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "generate: slot %d does not exist",
                               p.slot);
    if ((int64_t)n_prompt >= loom_model_n_ctx(m))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "generate: the prompt (%zu tokens) does not fit the context (%lld)",
                               n_prompt, (long long)loom_model_n_ctx(m));
    loom_generate_stats st0;
    memset(&st0, 0, sizeof st0);
    st0.n_prompt = (int64_t)n_prompt;
    const size_t cap_gen = (size_t)(p.n_predict > 0 ? p.n_predict : 0) + 1;
    float *logits = malloc((size_t)V * sizeof *logits);
    int32_t *gen = malloc(cap_gen * sizeof *gen);
    /* Speculation reads the whole sequence (prompt lookup, the draft's sync). */
    int32_t *all = p.spec ? malloc((n_prompt + cap_gen) * sizeof *all) : NULL;
    int32_t pend[LOOM_SPEC_MAX_DRAFT + 1]; /* tokens a speculative step emitted */
    int32_t n_pend = 0, i_pend = 0;
    loom_spec_stats sp0 = {0}, sp1 = {0};
    loom_spec_get_stats(p.spec, &sp0);
    loom_spec_reset(p.spec); /* a new sequence: its own draft-length history */
    loom_sampler *smp = NULL;
    gen_text t = {0};
    loom_status st = LOOM_OK;
    if (!logits || !gen || (p.spec && !all) || loom_sampler_new(&p.sampling, V, &smp) != LOOM_OK ||
        !text_append(&t, "", 0)) {
        st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "generate: out of memory");
        goto done;
    }
    if (all) memcpy(all, prompt, n_prompt * sizeof *all);
    for (size_t i = 0; i < n_prompt; i++)
        loom_sampler_accept(smp, prompt[i]);

    loom_model_slot_clear(m, p.slot);
    double t0 = now_s();
    if ((st = prefill(m, p.slot, prompt, n_prompt, p.n_batch, logits, err, err_n)) != LOOM_OK)
        goto done;
    double t1 = now_s();
    st0.t_prompt_s = t1 - t0;
    st0.stop = LOOM_STOP_LENGTH;
    size_t n_gen = 0;
    while ((int32_t)n_gen < p.n_predict) {
        int32_t tok;
        if (i_pend < n_pend) { /* emitted by a speculative step: accepted already */
            tok = pend[i_pend++];
        } else {
            if ((st = loom_sampler_sample(smp, logits, &tok)) != LOOM_OK) {
                st = loom_model_fail(err, err_n, st, "generate: sampling failed");
                goto done;
            }
            loom_sampler_accept(smp, tok);
        }
        if (all) all[n_prompt + n_gen] = tok;
        gen[n_gen++] = tok;
        if (!p.ignore_eos && is_eos(m, tok)) {
            st0.stop = LOOM_STOP_EOS;
            break;
        }
        if (tk) {
            const char *piece;
            size_t len;
            if (loom_tokenizer_piece(tk, tok, &piece, &len) == LOOM_OK) {
                if (!text_append(&t, piece, len)) {
                    st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "generate: out of memory");
                    goto done;
                }
                long at = find_stop(&t, &p, len);
                if (at >= 0) {
                    t.len = (size_t)at;
                    t.buf[t.len] = 0;
                    if (t.emitted > t.len) t.emitted = t.len;
                    emit(&t, &p, tok, t.len);
                    st0.stop = LOOM_STOP_STRING;
                    break;
                }
                if (!emit(&t, &p, tok, t.len - held_back(&t, &p))) {
                    st0.stop = LOOM_STOP_CALLBACK;
                    break;
                }
            }
        } else if (p.on_token && !p.on_token(p.ud, tok, "", 0)) {
            st0.stop = LOOM_STOP_CALLBACK;
            break;
        }
        if ((int32_t)n_gen >= p.n_predict) break;
        /* The rest of a speculative step's tokens: the slot already holds
         * them, and it stays below n_ctx - 1 during one (loom_spec_step), so
         * the context check below falls on the same token as without. */
        if (i_pend < n_pend) continue;
        if (loom_model_slot_pos(m, p.slot) >= loom_model_n_ctx(m)) {
            st0.stop = LOOM_STOP_CONTEXT;
            break;
        }
        if (p.spec) {
            if ((st = loom_spec_step(p.spec, p.slot, smp, all, n_prompt + n_gen,
                                     p.n_predict - (int32_t)n_gen, pend, &n_pend, err, err_n)) !=
                LOOM_OK)
                goto done;
            i_pend = 0;
            continue;
        }
        loom_batch b = {1, 1, &p.slot, &tok, false};
        if ((st = loom_model_decode(m, &b, logits, err, err_n)) != LOOM_OK) goto done;
    }
    if (st0.stop != LOOM_STOP_STRING) emit(&t, &p, n_gen ? gen[n_gen - 1] : -1, t.len);
    st0.t_gen_s = now_s() - t1;
    st0.n_gen = (int64_t)n_gen;
    loom_spec_get_stats(p.spec, &sp1);
    st0.n_drafted = sp1.n_drafted - sp0.n_drafted;
    st0.n_accepted = sp1.n_accepted - sp0.n_accepted;
    if (stats) *stats = st0;
    if (out_tokens) {
        *out_tokens = gen;
        gen = NULL;
    }
    if (n_out) *n_out = n_gen;
    if (text_out) {
        *text_out = t.buf;
        t.buf = NULL;
    }
done:
    free(logits);
    free(gen);
    free(all);
    free(t.buf);
    loom_sampler_free(smp);
    return st;
}

static loom_status tokenize(const loom_model *m, const char *prompt, const loom_generate_params *p,
                            int32_t **ids, size_t *n, char *err, size_t err_n) {
    const loom_tokenizer *tk = loom_model_tokenizer(m);
    if (!tk)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "generate: the model file has no tokenizer (tokenizer.ggml.*)");
    /* BOS only where the model's tokenizer metadata asks for it: a
     * tokenizer without one (SmolLM2's GGUF) must still run (issue 16). */
    unsigned flags = (p->add_bos && loom_tokenizer_add_bos(tk) ? LOOM_TOK_ADD_BOS : 0u) |
                     (p->parse_special ? 0u : LOOM_TOK_NO_SPECIAL);
    char terr[256];
    loom_status st =
        loom_tokenizer_encode(tk, prompt, strlen(prompt), flags, ids, n, terr, sizeof terr);
    if (st != LOOM_OK) return loom_model_fail(err, err_n, st, "generate: %s", terr);
    if (*n == 0) {
        free(*ids);
        *ids = NULL;
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "generate: the prompt is empty");
    }
    return LOOM_OK;
}

loom_status loom_generate(loom_model *m, const char *prompt, const loom_generate_params *pp,
                          char **text, loom_generate_stats *stats, char *err, size_t err_n) {
    if (!m || !prompt)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "generate: NULL argument");
    loom_generate_params p = pp ? *pp : loom_generate_default_params();
    int32_t *ids = NULL;
    size_t n = 0;
    LOOM_TRY(tokenize(m, prompt, &p, &ids, &n, err, err_n));
    loom_status st = loom_generate_tokens(m, ids, n, &p, NULL, NULL, text, stats, err, err_n);
    free(ids);
    return st;
}

loom_status loom_generate_batch(loom_model *m, const char *const *prompts, size_t n,
                                const loom_generate_params *pp, char **texts,
                                loom_generate_stats *stats, char *err, size_t err_n) {
    if (!m || !prompts || !texts || n == 0)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "generate: NULL argument");
    if (n > (size_t)loom_model_n_slots(m))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "generate: %zu prompts need %zu KV slots, the model has %d", n, n,
                               loom_model_n_slots(m));
    loom_generate_params p = pp ? *pp : loom_generate_default_params();
    const int64_t V = loom_model_config_of(m)->vocab_size;
    const loom_tokenizer *tk = loom_model_tokenizer(m);
    loom_status st = LOOM_OK;
    loom_sampler **smp = calloc(n, sizeof *smp);
    gen_text *t = calloc(n, sizeof *t);
    float *logits = malloc(n * (size_t)V * sizeof *logits);
    int *active = malloc(n * sizeof *active), *slots = malloc(n * sizeof *slots);
    int32_t *next = malloc(n * sizeof *next), *ngen = calloc(n, sizeof *ngen);
    loom_generate_stats st0;
    memset(&st0, 0, sizeof st0);
    for (size_t i = 0; i < n; i++)
        texts[i] = NULL;
    if (!smp || !t || !logits || !active || !slots || !next || !ngen) {
        st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "generate: out of memory");
        goto done;
    }
    double t0 = now_s();
    for (size_t i = 0; i < n && st == LOOM_OK; i++) {
        loom_sampler_params sp = p.sampling;
        sp.seed += i;
        int32_t *ids = NULL;
        size_t ni = 0;
        if (loom_sampler_new(&sp, V, &smp[i]) != LOOM_OK || !text_append(&t[i], "", 0)) {
            st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "generate: out of memory");
            break;
        }
        if ((st = tokenize(m, prompts[i], &p, &ids, &ni, err, err_n)) != LOOM_OK) break;
        for (size_t k = 0; k < ni; k++)
            loom_sampler_accept(smp[i], ids[k]);
        loom_model_slot_clear(m, (int)i);
        if ((int64_t)ni >= loom_model_n_ctx(m))
            st = loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                                 "generate: prompt %zu is too long", i);
        else
            st = prefill(m, (int)i, ids, ni, p.n_batch, logits + i * (size_t)V, err, err_n);
        st0.n_prompt += (int64_t)ni;
        free(ids);
        active[i] = 1;
    }
    if (st != LOOM_OK) goto done;
    double t1 = now_s();
    st0.t_prompt_s = t1 - t0;
    /* logits + i*V holds sequence i's next-token logits. */
    for (;;) {
        int n_act = 0;
        for (size_t i = 0; i < n; i++) {
            if (!active[i]) continue;
            int32_t tok;
            if ((st = loom_sampler_sample(smp[i], logits + i * (size_t)V, &tok)) != LOOM_OK)
                goto done;
            loom_sampler_accept(smp[i], tok);
            ngen[i]++;
            st0.n_gen++;
            bool stop = (!p.ignore_eos && is_eos(m, tok)) || ngen[i] >= p.n_predict ||
                        loom_model_slot_pos(m, (int)i) >= loom_model_n_ctx(m);
            const char *piece;
            size_t len;
            if (!is_eos(m, tok) && tk && loom_tokenizer_piece(tk, tok, &piece, &len) == LOOM_OK) {
                text_append(&t[i], piece, len);
                long at = find_stop(&t[i], &p, len);
                if (at >= 0) {
                    t[i].len = (size_t)at;
                    t[i].buf[at] = 0;
                    stop = true;
                }
            }
            if (stop) {
                active[i] = 0;
                continue;
            }
            slots[n_act] = (int)i;
            next[n_act++] = tok;
        }
        if (n_act == 0) break;
        float *out = malloc((size_t)n_act * (size_t)V * sizeof *out);
        if (!out) {
            st = loom_model_fail(err, err_n, LOOM_ERR_OOM, "generate: out of memory");
            goto done;
        }
        loom_batch b = {n_act, 1, slots, next, false};
        st = loom_model_decode(m, &b, out, err, err_n);
        for (int k = 0; k < n_act && st == LOOM_OK; k++)
            memcpy(logits + (size_t)slots[k] * (size_t)V, out + (size_t)k * (size_t)V,
                   (size_t)V * sizeof *out);
        free(out);
        if (st != LOOM_OK) goto done;
    }
    st0.t_gen_s = now_s() - t1;
    if (stats) *stats = st0;
    for (size_t i = 0; i < n; i++) {
        texts[i] = t[i].buf;
        t[i].buf = NULL;
    }
done:
    if (st != LOOM_OK)
        for (size_t i = 0; i < n; i++) {
            free(texts[i]);
            texts[i] = NULL;
        }
    for (size_t i = 0; smp && i < n; i++)
        loom_sampler_free(smp[i]);
    for (size_t i = 0; t && i < n; i++)
        free(t[i].buf);
    free(smp);
    free(t);
    free(logits);
    free(active);
    free(slots);
    free(next);
    free(ngen);
    return st;
}
