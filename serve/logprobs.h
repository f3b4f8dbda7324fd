/* serve/logprobs.h - log-probabilities of generated tokens for the OpenAI
 * "logprobs" / "top_logprobs" options. Pure function over one logits row.
 *
 * The distribution is the model's own: log_softmax of the raw logits, before
 * temperature, nucleus or penalties (vLLM's default; OpenAI does not say).
 * So a greedy token's logprob is the row's maximum and the same request gives
 * the same numbers at any temperature. */
#ifndef LOOM_SERVE_LOGPROBS_H
#define LOOM_SERVE_LOGPROBS_H

#include <stdint.h>

#include "serve/openai_json.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fill out->tok.{token,logprob} for token `chosen` and out->top[0..n_top) with
 * the n_top most likely tokens (highest first; ties: lower id first), where
 * 0 <= n_top <= LOOM_SERVE_MAX_TOP_LOGPROBS. Pieces and text_offset are left
 * for the caller. The log-sum-exp is accumulated in double, so a 128k-entry
 * vocabulary loses no precision. */
void loom_serve_logprobs(const float *logits, int64_t n_vocab, int32_t chosen, int n_top,
                         loom_serve_logprob *out);

#ifdef __cplusplus
}
#endif
#endif
