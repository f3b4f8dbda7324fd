/* serve/embed_json.h - the OpenAI embeddings wire format (POST
 * /v1/embeddings): the request parsed and validated, the response formatted.
 * Pure functions (no model, no I/O), unit-tested and fuzzed like
 * serve/openai_json.h, whose error type they share.
 *
 * Ownership: strings in a loom_serve_embed_params are malloc'd and released
 * by loom_serve_embed_params_free; the formatter's result is malloc'd and
 * freed by the caller with free(). */
#ifndef LOOM_SERVE_EMBED_JSON_H
#define LOOM_SERVE_EMBED_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/status.h"
#include "serve/openai_json.h"

#ifdef __cplusplus
extern "C" {
#endif

/* OpenAI's own limit on inputs per request. */
#define LOOM_SERVE_EMBED_MAX_INPUTS 2048

typedef struct loom_serve_embed_params {
    char **input; /* n_input non-empty texts (NUL-free UTF-8 as sent) */
    size_t n_input;
    char *model;        /* NULL when the request names none */
    bool base64;        /* encoding_format "base64" (else "float") */
    int64_t dimensions; /* 0 = not given; else >= 1 (the caller compares it) */
} loom_serve_embed_params;

/* Parse a request body (len bytes, need not be NUL-terminated). `input` is a
 * string or an array of 1..max_inputs strings; each must be non-empty.
 * Arrays of token ids are refused (400, param "input"): this server takes
 * text. `user` is accepted and ignored. On failure *out is left freed and e
 * holds a 400 naming the parameter. */
loom_status loom_serve_parse_embed_request(const char *body, size_t len, size_t max_inputs,
                                           loom_serve_embed_params *out, loom_serve_error *e);
void loom_serve_embed_params_free(loom_serve_embed_params *p);

/* {"object":"list","data":[{"object":"embedding","index":i,"embedding":...}],
 *  "model":model,"usage":{"prompt_tokens":n,"total_tokens":n}}: vecs holds n
 * rows of dim floats; with base64 each embedding is the base64 of its
 * little-endian float32 bytes (as OpenAI sends it), else an array of
 * numbers printed so that they read back as the same float32. NULL when out
 * of memory. */
char *loom_serve_embed_response_json(const char *model, const float *vecs, size_t n, int64_t dim,
                                     bool base64, int64_t prompt_tokens);

#ifdef __cplusplus
}
#endif
#endif
