/* serve/openai_json.h - the OpenAI wire format: request bodies parsed and
 * validated into loom_serve_params, and responses, SSE chunks and errors
 * formatted as JSON. Pure functions (no model, no I/O), so the parser can be
 * unit-tested and fuzzed on its own.
 *
 * Ownership: strings inside a loom_serve_params are malloc'd and released by
 * loom_serve_params_free; every char * returned by a format function is
 * malloc'd, NUL-terminated, and freed by the caller with free(). */
#ifndef LOOM_SERVE_OPENAI_JSON_H
#define LOOM_SERVE_OPENAI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/status.h"
#include "loom/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum loom_serve_kind {
    LOOM_SERVE_CHAT = 0,   /* POST /v1/chat/completions */
    LOOM_SERVE_COMPLETION, /* POST /v1/completions */
} loom_serve_kind;

#define LOOM_SERVE_MAX_STOP 4 /* OpenAI allows up to 4 stop sequences */

typedef struct loom_serve_params {
    loom_serve_kind kind;
    char *model;                 /* NULL when the request names none */
    char *prompt;                /* completions: the prompt text */
    loom_chat_message *messages; /* chat: role/content strings owned here */
    size_t n_messages;
    double temperature;       /* default 1 (OpenAI's default) */
    double top_p;             /* default 1 */
    double presence_penalty;  /* default 0, in [-2, 2] */
    double frequency_penalty; /* default 0, in [-2, 2] */
    int64_t max_tokens;       /* -1 = not given (until the context is full) */
    char *stop[LOOM_SERVE_MAX_STOP];
    size_t n_stop;
    bool has_seed;
    uint64_t seed;
    bool stream;
    bool include_usage; /* stream_options.include_usage */
    /* chat: "logprobs": true and "top_logprobs": 0..20; completions: the
     * legacy integer "logprobs": 0..5 (alternatives per token). -1 = off. */
    int n_logprobs;
} loom_serve_params;

#define LOOM_SERVE_MAX_TOP_LOGPROBS 20

/* One token piece: its raw bytes (borrowed from the tokenizer, so they may
 * be part of a multi-byte character) and its log-probability. */
typedef struct loom_serve_token_lp {
    int32_t token;
    float logprob;
    const char *piece;
    size_t piece_len;
} loom_serve_token_lp;

/* A generated token with its log-probability under the model's own
 * distribution (raw logits, before temperature, nucleus or penalties, as
 * vLLM reports by default), and the n_top most likely alternatives. */
typedef struct loom_serve_logprob {
    loom_serve_token_lp tok;
    int64_t text_offset; /* where its text starts in the generated text, in characters */
    int n_top;
    loom_serve_token_lp top[LOOM_SERVE_MAX_TOP_LOGPROBS];
} loom_serve_logprob;

/* The logprobs of one response or chunk: NULL/0 when the request asked for
 * none (then "logprobs": null is written). */
typedef struct loom_serve_lps {
    const loom_serve_logprob *v;
    size_t n;
    bool on;
} loom_serve_lps;

/* An OpenAI-style error: HTTP status, message, type, and the offending
 * parameter (NULL when none) and code (NULL when none). */
typedef struct loom_serve_error {
    int status;
    char message[256];
    const char *type;  /* static string, e.g. "invalid_request_error" */
    const char *param; /* static string or NULL */
    const char *code;  /* static string or NULL */
} loom_serve_error;

/* Fill e (printf-style message). Returns LOOM_ERR_INVALID_ARG for chaining. */
loom_status loom_serve_error_set(loom_serve_error *e, int status, const char *type,
                                 const char *param, const char *code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

/* Parse and validate a request body of the given kind (len bytes, need not
 * be NUL-terminated). On success *out holds the request (free with
 * loom_serve_params_free); on failure *out is left freed and e says why
 * (status 400 and the parameter's name). */
loom_status loom_serve_parse_request(const char *body, size_t len, loom_serve_kind kind,
                                     loom_serve_params *out, loom_serve_error *e);
void loom_serve_params_free(loom_serve_params *p);

/* {"error":{"message":...,"type":...,"param":...,"code":...}} */
char *loom_serve_error_json(const loom_serve_error *e);

/* What every response of one request shares. */
typedef struct loom_serve_meta {
    loom_serve_kind kind;
    const char *id;    /* "chatcmpl-..." / "cmpl-..." */
    int64_t created;   /* unix seconds */
    const char *model; /* the served model's name */
} loom_serve_meta;

/* The text must be valid UTF-8 without NUL bytes (the engine guarantees it).
 * finish is "stop", "length" or NULL. */

/* A whole non-streaming response (chat.completion / text_completion). */
char *loom_serve_response_json(const loom_serve_meta *m, const char *text, size_t len,
                               const char *finish, int64_t n_prompt, int64_t n_gen,
                               loom_serve_lps lps);

/* One SSE event "data: {chunk}\n\n". role: put "role":"assistant" in the
 * delta (the first chat chunk). usage_null: add "usage":null (when the
 * client asked for include_usage, every chunk but the last carries it). */
char *loom_serve_sse_chunk(const loom_serve_meta *m, const char *text, size_t len, bool role,
                           const char *finish, bool usage_null, loom_serve_lps lps);
/* The include_usage chunk: empty choices and the usage object. */
char *loom_serve_sse_usage(const loom_serve_meta *m, int64_t n_prompt, int64_t n_gen);
/* "data: [DONE]\n\n" (static; do not free). */
const char *loom_serve_sse_done(void);

#ifdef __cplusplus
}
#endif
#endif
