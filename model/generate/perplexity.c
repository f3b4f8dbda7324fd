/* model/generate/perplexity.c - perplexity as llama.cpp's llama-perplexity
 * computes it (include/loom/perplexity.h gives the definition). */
#define _POSIX_C_SOURCE 200809L
#include "loom/perplexity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model_internal.h" /* loom_model_fail */

/* Window evaluated in sub-batches of this many tokens by default, so the
 * logits buffer stays rows * vocab floats whatever n_ctx is. */
#define PPL_BATCH 256

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

loom_perplexity_params loom_perplexity_default_params(void) {
    loom_perplexity_params p = {0};
    p.n_ctx = 512;
    return p;
}

/* -log softmax(logits)[tok], as llama.cpp's log_softmax: float max, double sum. */
static double nll_of(const float *logits, size_t n_vocab, int32_t tok) {
    float mx = logits[0];
    for (size_t i = 1; i < n_vocab; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (size_t i = 0; i < n_vocab; i++)
        sum += expf(logits[i] - mx);
    return -((double)(logits[tok] - mx) - log(sum));
}

loom_status loom_perplexity_tokens(loom_model *m, const int32_t *tokens, size_t n, bool add_bos,
                                   const loom_perplexity_params *p, loom_perplexity_result *out,
                                   char *err, size_t err_n) {
    if (!m || !p || !out || (n && !tokens))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "perplexity: NULL argument");
    memset(out, 0, sizeof *out);
    out->n_tokens = (int64_t)n;
    const int64_t ctx = p->n_ctx;
    if (ctx < 4 || ctx > loom_model_n_ctx(m))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "perplexity: context %lld is outside 4..%lld (the model's context)",
                               (long long)ctx, (long long)loom_model_n_ctx(m));
    if ((int64_t)n < 2 * ctx)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "perplexity: the text has %zu tokens; a context of %lld needs at "
                               "least %lld",
                               n, (long long)ctx, (long long)(2 * ctx));
    const loom_tokenizer *tok = loom_model_tokenizer(m);
    int32_t bos = tok ? loom_tokenizer_bos(tok) : -1;
    if (add_bos && bos < 0)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "perplexity: BOS wanted but the model's tokenizer has none");
    const size_t n_vocab = (size_t)loom_model_config_of(m)->vocab_size;
    int64_t n_chunk = (int64_t)n / ctx;
    if (p->n_chunks > 0 && p->n_chunks < n_chunk) n_chunk = p->n_chunks;
    const int64_t first = ctx / 2;
    const int64_t want = p->n_batch > 0 ? p->n_batch : PPL_BATCH;
    const int64_t bsz = ctx < want ? ctx : want;
    float *logits = malloc(sizeof *logits * n_vocab * (size_t)bsz);
    int32_t *win = malloc(sizeof *win * (size_t)ctx);
    if (!logits || !win) {
        free(logits);
        free(win);
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "perplexity: out of memory");
    }
    double nll = 0.0, nll2 = 0.0, t_eval = 0.0;
    int64_t count = 0;
    loom_status st = LOOM_OK;
    const int slot = 0;
    for (int64_t c = 0; c < n_chunk && st == LOOM_OK; c++) {
        const int32_t *w = tokens + c * ctx;
        memcpy(win, w, sizeof *win * (size_t)ctx);
        if (add_bos) win[0] = bos; /* llama.cpp: BOS replaces the window's first token */
        loom_model_slot_clear(m, slot);
        for (int64_t b0 = 0; b0 < ctx && st == LOOM_OK; b0 += bsz) {
            const int64_t nb = ctx - b0 < bsz ? ctx - b0 : bsz;
            loom_batch b = {.n_seq = 1,
                            .n_tokens = (int)nb,
                            .slots = &slot,
                            .tokens = win + b0,
                            .all_logits = true};
            const double t0 = now_s();
            st = loom_model_decode(m, &b, logits, err, err_n);
            t_eval += now_s() - t0;
            /* position j's logits predict the original token j + 1 */
            for (int64_t j = b0; st == LOOM_OK && j < b0 + nb; j++) {
                if (j < first || j >= ctx - 1) continue;
                const double v = nll_of(logits + (size_t)(j - b0) * n_vocab, n_vocab, w[j + 1]);
                nll += v;
                nll2 += v * v;
                count++;
            }
        }
        if (st == LOOM_OK && p->on_chunk) p->on_chunk(p->ud, c, n_chunk, exp(nll / (double)count));
    }
    loom_model_slot_clear(m, slot);
    free(logits);
    free(win);
    if (st != LOOM_OK) return st;
    const double mean = nll / (double)count, mean2 = nll2 / (double)count;
    const double var = mean2 - mean * mean;
    out->ppl = exp(mean);
    out->ppl_err = var > 0 && count > 1 ? sqrt(var / (double)(count - 1)) * out->ppl : 0.0;
    out->nll_mean = mean;
    out->n_chunks = n_chunk;
    out->n_scored = count;
    out->t_eval_s = t_eval;
    return LOOM_OK;
}

loom_status loom_perplexity_text(loom_model *m, const char *text, size_t len,
                                 const loom_perplexity_params *p, loom_perplexity_result *out,
                                 char *err, size_t err_n) {
    if (!m || (len && !text))
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "perplexity: NULL argument");
    const loom_tokenizer *tok = loom_model_tokenizer(m);
    if (!tok)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "perplexity: the model has no tokenizer");
    const bool add_bos = loom_tokenizer_add_bos(tok);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    /* llama.cpp: common_tokenize(ctx, text, add_special = true, parse_special = false) */
    LOOM_TRY(loom_tokenizer_encode(tok, text ? text : "", len,
                                   (add_bos ? LOOM_TOK_ADD_BOS : 0) | LOOM_TOK_NO_SPECIAL, &ids,
                                   &n_ids, err, err_n));
    loom_status st = loom_perplexity_tokens(m, ids, n_ids, add_bos, p, out, err, err_n);
    free(ids);
    return st;
}
