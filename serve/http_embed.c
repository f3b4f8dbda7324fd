/* serve/http_embed.c - POST /v1/embeddings (see server.h): the request is
 * parsed and tokenized on the HTTP thread, then embedded in batches under
 * the server's encoder mutex (a loom_encoder runs one embed call at a time;
 * docs/adr/0019-serving.md, addendum "Embeddings"). Without an encoder the
 * served LLM embeds (mean-pooled final hidden states) on the engine thread,
 * which owns the model (loom_engine_embed; addendum "Embeddings from the
 * LLM"). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/encoder.h"
#include "loom/tokenizer.h"
#include "serve/embed_json.h"
#include "serve/http_internal.h"

/* Texts per encoder call: each call is padded to its longest text, so the
 * texts are sorted by length first (as sentence-transformers and `loom
 * embed` do) and a batch's activations stay small. */
#define EMBED_BATCH 32

typedef struct {
    int len, idx;
} len_idx;

static int by_len_desc(const void *a, const void *b) {
    const len_idx *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->idx - y->idx;
}

static int error_out(const loom_serve_error *e, char **out) {
    *out = loom_serve_error_json(e);
    return e->status;
}

/* The LLM path: every text tokenized as a completions prompt is (BOS when
 * the tokenizer adds one), then embedded on the engine thread. A text longer
 * than the context is refused, not truncated: a decoder has no "maximum
 * sequence length" that a client would expect to be cut to. */
static int llm_embeddings(loom_server *s, loom_serve_embed_params *p, int64_t *n_tokens,
                          char **out) {
    loom_serve_error e;
    const int64_t dim = loom_model_config_of(s->model)->dim;
    if (p->model && strcmp(p->model, s->model_name) != 0) {
        loom_serve_error_set(&e, 404, "invalid_request_error", "model", "model_not_found",
                             "the model '%.100s' does not exist (this server embeds with "
                             "'%.100s', its text-generation model; --embed-model ENCODER "
                             "serves an encoder instead)",
                             p->model, s->model_name);
        return error_out(&e, out);
    }
    if (p->dimensions && p->dimensions != dim) {
        loom_serve_error_set(&e, 400, "invalid_request_error", "dimensions", NULL,
                             "'dimensions' must be %lld for '%.100s' (its embeddings cannot be "
                             "shortened); got %lld",
                             (long long)dim, s->model_name, (long long)p->dimensions);
        return error_out(&e, out);
    }
    const size_t n = p->n_input;
    int32_t **ids = calloc(n, sizeof *ids);
    size_t *lens = calloc(n, sizeof *lens);
    float *vecs = malloc(n * (size_t)dim * sizeof *vecs);
    int status = 200;
    char err[256] = "";
    int64_t total = 0;
    if (!ids || !lens || !vecs) {
        loom_serve_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        status = error_out(&e, out);
        goto done;
    }
    const unsigned flags = loom_tokenizer_add_bos(s->tok) ? LOOM_TOK_ADD_BOS : 0u;
    for (size_t i = 0; i < n; i++) {
        if (loom_tokenizer_encode(s->tok, p->input[i], strlen(p->input[i]), flags, &ids[i],
                                  &lens[i], err, sizeof err) != LOOM_OK ||
            lens[i] == 0) {
            loom_serve_error_set(&e, 400, "invalid_request_error", "input", NULL,
                                 "cannot tokenize input[%zu]: %.200s", i,
                                 err[0] ? err : "no tokens");
            status = error_out(&e, out);
            goto done;
        }
        if ((int64_t)lens[i] > s->n_ctx) {
            loom_serve_error_set(&e, 400, "invalid_request_error", "input",
                                 "context_length_exceeded",
                                 "input[%zu] is %zu tokens; this server's context is %lld tokens "
                                 "per sequence",
                                 i, lens[i], (long long)s->n_ctx);
            status = error_out(&e, out);
            goto done;
        }
        total += (int64_t)lens[i];
    }
    loom_status st =
        loom_engine_embed(s->engine, (const int32_t *const *)ids, lens, n, vecs, err, sizeof err);
    if (st != LOOM_OK) {
        if (st == LOOM_ERR_UNAVAILABLE)
            loom_serve_error_set(&e, 503, "server_error", NULL, NULL, "the server is stopping");
        else
            loom_serve_error_set(&e, 500, "server_error", NULL, NULL, "the model failed: %.200s",
                                 err[0] ? err : loom_status_str(st));
        status = error_out(&e, out);
        goto done;
    }
    *out = loom_serve_embed_response_json(s->model_name, vecs, n, dim, p->base64, total);
    if (!*out) {
        loom_serve_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        status = error_out(&e, out);
        goto done;
    }
    *n_tokens = total;
done:
    for (size_t i = 0; ids && i < n; i++)
        free(ids[i]);
    free(ids);
    free(lens);
    free(vecs);
    return status;
}

int loom_http_embeddings(loom_server *s, const char *body, size_t len, int64_t *n_tokens,
                         char **out) {
    loom_serve_error e;
    *n_tokens = -1;
    loom_serve_embed_params p;
    if (loom_serve_parse_embed_request(body, len, LOOM_SERVE_EMBED_MAX_INPUTS, &p, &e) != LOOM_OK)
        return error_out(&e, out);
    if (!s->enc) {
        int status = llm_embeddings(s, &p, n_tokens, out);
        loom_serve_embed_params_free(&p);
        return status;
    }
    const int64_t dim = loom_encoder_dim(s->enc);
    if (p.model && strcmp(p.model, s->enc_name) != 0) {
        if (s->model_name && !strcmp(p.model, s->model_name))
            loom_serve_error_set(&e, 400, "invalid_request_error", "model", NULL,
                                 "'%.100s' is this server's text-generation model; embeddings "
                                 "come from '%.100s'",
                                 p.model, s->enc_name);
        else
            loom_serve_error_set(&e, 404, "invalid_request_error", "model", "model_not_found",
                                 "the model '%.100s' does not exist (this server embeds with "
                                 "'%.100s')",
                                 p.model, s->enc_name);
        loom_serve_embed_params_free(&p);
        return error_out(&e, out);
    }
    if (p.dimensions && p.dimensions != dim) {
        loom_serve_error_set(&e, 400, "invalid_request_error", "dimensions", NULL,
                             "'dimensions' must be %lld for '%.100s' (its embeddings cannot be "
                             "shortened); got %lld",
                             (long long)dim, s->enc_name, (long long)p.dimensions);
        loom_serve_embed_params_free(&p);
        return error_out(&e, out);
    }
    /* Tokenize here (the tokenizer is immutable and thread-safe); texts
     * longer than the model's maximum are truncated to it, as
     * sentence-transformers does. */
    const int n = (int)p.n_input, M = loom_encoder_max_tokens(s->enc);
    const loom_wordpiece *wp = loom_encoder_tokenizer(s->enc);
    int32_t *ids = malloc((size_t)n * (size_t)M * sizeof *ids);
    int *lens = malloc((size_t)n * sizeof *lens);
    len_idx *li = malloc((size_t)n * sizeof *li);
    float *vecs = malloc((size_t)n * (size_t)dim * sizeof *vecs);
    float *tmp = malloc((size_t)EMBED_BATCH * (size_t)dim * sizeof *tmp);
    const int32_t *bids[EMBED_BATCH];
    int blens[EMBED_BATCH];
    int status = 200;
    char err[256] = "";
    if (!ids || !lens || !li || !vecs || !tmp) {
        loom_serve_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        status = error_out(&e, out);
        goto done;
    }
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        if (loom_wordpiece_encode(wp, p.input[i], strlen(p.input[i]), M, ids + (size_t)i * M, M,
                                  &lens[i]) != LOOM_OK) {
            loom_serve_error_set(&e, 400, "invalid_request_error", "input", NULL,
                                 "cannot tokenize input[%d]", i);
            status = error_out(&e, out);
            goto done;
        }
        if (lens[i] > M) lens[i] = M;
        total += lens[i];
        li[i] = (len_idx){lens[i], i};
    }
    qsort(li, (size_t)n, sizeof *li, by_len_desc);
    pthread_mutex_lock(&s->enc_mu);
    loom_status st = LOOM_OK;
    for (int b0 = 0; b0 < n && st == LOOM_OK; b0 += EMBED_BATCH) {
        const int b = n - b0 < EMBED_BATCH ? n - b0 : EMBED_BATCH;
        for (int j = 0; j < b; j++) {
            bids[j] = ids + (size_t)li[b0 + j].idx * M;
            blens[j] = li[b0 + j].len;
        }
        st = loom_encoder_embed_ids(s->enc, bids, blens, b, tmp, err, sizeof err);
        for (int j = 0; st == LOOM_OK && j < b; j++)
            memcpy(vecs + (size_t)li[b0 + j].idx * (size_t)dim, tmp + (size_t)j * (size_t)dim,
                   (size_t)dim * sizeof *vecs);
    }
    pthread_mutex_unlock(&s->enc_mu);
    if (st != LOOM_OK) {
        loom_serve_error_set(&e, 500, "server_error", NULL, NULL, "the encoder failed: %.200s",
                             err[0] ? err : loom_status_str(st));
        status = error_out(&e, out);
        goto done;
    }
    *out = loom_serve_embed_response_json(s->enc_name, vecs, (size_t)n, dim, p.base64, total);
    if (!*out) {
        loom_serve_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        status = error_out(&e, out);
        goto done;
    }
    *n_tokens = total;
done:
    free(ids);
    free(lens);
    free(li);
    free(vecs);
    free(tmp);
    loom_serve_embed_params_free(&p);
    return status;
}

loom_status loom_server_set_encoder(loom_server *s, loom_encoder *e, const char *name, char *err,
                                    size_t err_n) {
    if (s->enc || atomic_load(&s->state) != ST_LOADING) {
        snprintf(err, err_n, "the embedding model must be set once, before the model");
        return LOOM_ERR_INVALID_ARG;
    }
    size_t n = strlen(name);
    s->enc_name = malloc(n + 1);
    if (!s->enc_name) return LOOM_ERR_OOM;
    memcpy(s->enc_name, name, n + 1);
    s->enc = e;
    return LOOM_OK;
}
