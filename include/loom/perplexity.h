/* loom/perplexity.h - perplexity of a model on a text, computed as llama.cpp's
 * llama-perplexity does (docs/adr/0025), so the numbers can be compared.
 *
 * The tokens are cut into non-overlapping windows of n_ctx tokens (the tail
 * that does not fill a window is dropped). Each window is evaluated from an
 * empty KV cache; when the tokenizer adds BOS (loom_tokenizer_add_bos), the
 * window's first token is replaced by BOS for the evaluation, as llama.cpp
 * does. Only the second half is scored: the logits at positions
 * j = n_ctx/2 .. n_ctx-2 predict token j+1, so each window scores
 * n_ctx - n_ctx/2 - 1 tokens. With nll the negative log-likelihoods (natural
 * log; log-softmax with a float max and a double sum, as llama.cpp):
 *   ppl = exp(mean nll),  ppl_err = ppl * sqrt((mean nll^2 - (mean nll)^2) / (count - 1)),
 * llama.cpp's "Final estimate: PPL = ppl +/- ppl_err". */
#ifndef LOOM_PERPLEXITY_H
#define LOOM_PERPLEXITY_H

#include "loom/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/model.h"
#include "loom/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_perplexity_params {
    int64_t n_ctx;    /* window length in tokens, >= 4 and <= the model's n_ctx */
    int64_t n_chunks; /* windows to score; <= 0: all that fit */
    /* Called after each window with the running perplexity (may be NULL). */
    void (*on_chunk)(void *ud, int64_t chunk, int64_t n_chunks, double ppl);
    void *ud;
    /* Tokens per forward pass within a window (llama-perplexity's -b);
     * <= 0: 256. Small batches take the decode kernels (on the cpu backend,
     * int8 activations for up to 8 rows, ADR 0036), large ones the prefill
     * GEMM. */
    int64_t n_batch;
} loom_perplexity_params;

typedef struct loom_perplexity_result {
    double ppl, ppl_err; /* exp(mean nll) and its error estimate (above) */
    double nll_mean;     /* mean negative log-likelihood, nats per token */
    int64_t n_tokens;    /* tokens of the text */
    int64_t n_chunks;    /* windows scored */
    int64_t n_scored;    /* tokens scored */
    double t_eval_s;     /* seconds in forward passes */
} loom_perplexity_result;

LOOM_API loom_perplexity_params loom_perplexity_default_params(void); /* n_ctx 512, all */

/* Perplexity over tokens (n of them, already tokenized; BOS handling as
 * above, with the model tokenizer's BOS id when add_bos). The text must give
 * at least 2 * n_ctx tokens, as llama.cpp requires (LOOM_ERR_INVALID_ARG
 * otherwise, saying how many it has). Uses KV slot 0 of m. */
LOOM_API loom_status loom_perplexity_tokens(loom_model *m, const int32_t *tokens, size_t n,
                                            bool add_bos, const loom_perplexity_params *p,
                                            loom_perplexity_result *out, char *err, size_t err_n);

/* Tokenize text as llama.cpp's perplexity does (BOS when the model's metadata
 * asks for it, special-token text as plain text) and score it. */
LOOM_API loom_status loom_perplexity_text(loom_model *m, const char *text, size_t len,
                                          const loom_perplexity_params *p,
                                          loom_perplexity_result *out, char *err, size_t err_n);

#ifdef __cplusplus
}
#endif
#endif
