/* loom/generate.h - sampling and the generation loop over a loom_model.
 *
 * Sampler pipeline, applied to one row of logits in this order (the
 * Hugging Face generate() order):
 *   1. penalties over the last penalty_last_n accepted tokens:
 *      repetition (CTRL / llama.cpp: a seen token's logit l becomes l/p when
 *      l > 0, l*p otherwise), then presence (-presence once per seen token)
 *      and frequency (-frequency * count);
 *   2. temperature <= 0: greedy (argmax, lowest id on ties), done;
 *   3. logits / temperature, softmax;
 *   4. top-k (keep the k most probable; ties broken by lower id),
 *      top-p (smallest prefix of the sorted tokens whose mass >= top_p),
 *      min-p (drop tokens with p < min_p * p_max);
 *   5. renormalise and draw with the sampler's own RNG (xoshiro256**,
 *      seeded from seed: the same seed and inputs give the same tokens).
 *
 * Ownership: loom_sampler_new gives a sampler the caller frees with
 * loom_sampler_free. loom_generate borrows the model. */
#ifndef LOOM_GENERATE_H
#define LOOM_GENERATE_H

#include "loom/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/model.h"
#include "loom/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_sampler_params {
    float temperature;       /* <= 0: greedy; default 0.8 */
    int32_t top_k;           /* 0 = off; default 40 */
    float top_p;             /* 1 = off; default 0.95 */
    float min_p;             /* 0 = off; default 0.05 */
    float repeat_penalty;    /* 1 = off; default 1.0 */
    float presence_penalty;  /* 0 = off */
    float frequency_penalty; /* 0 = off */
    int32_t penalty_last_n;  /* window of accepted tokens; -1 = all; default 64 */
    uint64_t seed;           /* default 42 */
} loom_sampler_params;

LOOM_API loom_sampler_params loom_sampler_default_params(void);

typedef struct loom_sampler loom_sampler;

LOOM_API loom_status loom_sampler_new(const loom_sampler_params *p, int64_t n_vocab,
                                      loom_sampler **out);
LOOM_API void loom_sampler_free(loom_sampler *s); /* NULL is fine */
/* Record a token as part of the context (prompt or generated): penalties see it. */
LOOM_API void loom_sampler_accept(loom_sampler *s, int32_t token);
/* Forget accepted tokens and reseed the RNG with params.seed. */
LOOM_API void loom_sampler_reset(loom_sampler *s);

/* Sample one token from logits (n_vocab floats; modified in place). */
LOOM_API loom_status loom_sampler_sample(loom_sampler *s, float *logits, int32_t *out);

/* The candidate set steps 1-4 leave (for tests and tools): ids[i] with
 * probability probs[i] (renormalised, sorted by descending probability,
 * ties by id), *n entries. ids and probs hold n_vocab entries. Greedy
 * (temperature <= 0) gives the argmax alone with probability 1. logits is
 * modified in place. */
LOOM_API loom_status loom_sampler_candidates(loom_sampler *s, float *logits, int32_t *ids,
                                             float *probs, int64_t *n);

/* ---- generation ---- */

/* Streaming callback: text that is final (cannot be part of a stop string
 * any more) as it becomes available; token is the id just generated (the
 * text may lag behind it by the bytes held back). Return false to stop. */
typedef bool (*loom_token_fn)(void *ud, int32_t token, const char *text, size_t len);

typedef enum loom_stop_reason {
    LOOM_STOP_LENGTH = 0, /* n_predict tokens generated */
    LOOM_STOP_EOS,        /* EOS / <|eot_id|> / <|end_of_text|> */
    LOOM_STOP_STRING,     /* a stop string appeared (it is not part of the text) */
    LOOM_STOP_CALLBACK,   /* the callback returned false */
    LOOM_STOP_CONTEXT,    /* the slot is full */
} loom_stop_reason;

typedef struct loom_generate_params {
    int32_t n_predict; /* max tokens to generate; default 128 */
    loom_sampler_params sampling;
    const char *const *stop; /* stop strings (NUL-terminated), n_stop of them */
    size_t n_stop;
    bool add_bos;       /* prepend BOS where the tokenizer asks for it
                         * (loom_tokenizer_add_bos); false: never; default true */
    bool parse_special; /* special-token text in the prompt becomes the token; default true */
    bool ignore_eos;    /* keep going past EOS; default false */
    int slot;           /* KV slot; cleared first; default 0 */
    int32_t n_batch;    /* prefill chunk in tokens; default 256 */
    loom_token_fn on_token;
    void *ud;
} loom_generate_params;

LOOM_API loom_generate_params loom_generate_default_params(void);

typedef struct loom_generate_stats {
    int64_t n_prompt, n_gen;
    double t_prompt_s, t_gen_s; /* wall time of prefill and of the decode loop */
    loom_stop_reason stop;
} loom_generate_stats;

/* Tokenize prompt with the model's tokenizer, prefill, and decode until a
 * stop condition. *text (optional, malloc'd, NUL-terminated; caller frees)
 * receives the generated text without the prompt and without a matched stop
 * string; stats (optional) the counts and times. */
LOOM_API loom_status loom_generate(loom_model *m, const char *prompt, const loom_generate_params *p,
                                   char **text, loom_generate_stats *stats, char *err,
                                   size_t err_n);

/* The same from token ids (no tokenizer needed unless stop strings or the
 * callback's text are wanted: without one, text is empty). The prompt must
 * not be empty. */
LOOM_API loom_status loom_generate_tokens(loom_model *m, const int32_t *prompt, size_t n_prompt,
                                          const loom_generate_params *p, int32_t **out_tokens,
                                          size_t *n_out, char **text, loom_generate_stats *stats,
                                          char *err, size_t err_n);

/* Several prompts decoded together: one batched forward pass per step, each
 * sequence in its own KV slot (slots 0..n-1), leaving the batch when it
 * stops. Each texts[i] (malloc'd) gets sequence i's text. Sampling params
 * are shared; sequence i uses seed + i. on_token is not called. */
LOOM_API loom_status loom_generate_batch(loom_model *m, const char *const *prompts, size_t n,
                                         const loom_generate_params *p, char **texts,
                                         loom_generate_stats *stats, char *err, size_t err_n);

#ifdef __cplusplus
}
#endif
#endif
