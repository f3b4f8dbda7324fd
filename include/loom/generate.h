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
/* The next uniform draw in [0, 1) from the sampler's RNG (the stream
 * loom_sampler_sample draws from): speculative verification's coin flips. */
LOOM_API double loom_sampler_uniform(loom_sampler *s);

/* ---- speculative decoding (docs/adr/0038) ----
 * A drafter proposes up to n_draft tokens after the context; the target
 * model scores all of them in ONE forward (all_logits) and keeps the longest
 * prefix its own sampler agrees with, plus one token of its own, so each
 * step emits 1..n_draft+1 tokens for one target forward. Drafters: a second,
 * smaller model with the same vocabulary, or prompt lookup (the context's
 * most recent earlier occurrence of its last n-gram is continued).
 * Verification keeps the target's distribution exactly: greedy (temperature
 * <= 0) accepts a draft while it is the target's argmax, so the tokens equal
 * the non-speculative ones; sampling uses the standard rejection scheme
 * (loom_spec_verify), with penalties seeing every accepted token. */
typedef struct loom_spec_params {
    loom_model *draft; /* draft model (borrowed, slot 0 is the drafter's), or NULL */
    bool lookup;       /* prompt lookup instead of a draft model */
    int32_t n_draft;   /* tokens drafted per step, 1..LOOM_SPEC_MAX_DRAFT; default 4 */
    int32_t ngram_max; /* lookup: longest n-gram matched, 1..LOOM_SPEC_MAX_NGRAM; default 3 */
    int32_t ngram_min; /* lookup: shortest, 1..ngram_max; default 1 */
} loom_spec_params;
/* At most 7 drafts, so that a verification forward (drafts + 1 rows) stays
 * within the rows the cpu's default int8 activations cover (8; ADR 0036,
 * 0043's LOOM_CPU_ACT=int8-decode): its activations are then rounded exactly
 * as in one-token decoding, and greedy output keeps equal plain decoding's
 * (LOOM_CPU_ACT=int8 rounds the same for any number of rows). Longer drafts rarely pay on a CPU
 * anyway (ADR 0038). */
#define LOOM_SPEC_MAX_DRAFT 7
#define LOOM_SPEC_MAX_NGRAM 16

LOOM_API loom_spec_params loom_spec_default_params(void);

typedef struct loom_spec_stats {
    int64_t n_steps;    /* verification forwards */
    int64_t n_drafted;  /* draft tokens verified */
    int64_t n_accepted; /* of them accepted */
    int64_t n_plain;    /* steps that drafted nothing (no lookup match, drafting
                         * paused, no room left): one plain decode each */
} loom_spec_stats;

/* Prompt lookup: the tokens that followed the most recent earlier
 * occurrence of ctx's last n tokens (n from ngram_max down to ngram_min,
 * the longest that occurs wins), continued as a repetition where the match
 * runs into the end of ctx. *n_out (<= k) tokens go to out; 0: no match. */
LOOM_API void loom_spec_lookup(const int32_t *ctx, size_t n, int ngram_max, int ngram_min, int k,
                               int32_t *out, int *n_out);

/* One rejection-sampling verification (Leviathan et al. 2023, Chen et al.
 * 2023): draft token x drawn from q is accepted when u_accept * q(x) <
 * p(x) (probability min(1, p(x) / q(x))); otherwise *out is drawn with
 * u_resample from normalize(max(0, p - q)). p and q hold n_vocab
 * probabilities; q NULL: a point mass at x (prompt lookup). The token is
 * then distributed exactly as p. u_* in [0, 1). */
LOOM_API loom_status loom_spec_verify(const float *p, const float *q, int64_t n_vocab, int32_t x,
                                      double u_accept, double u_resample, int32_t *out,
                                      bool *accepted);

typedef struct loom_spec loom_spec;

/* A speculator for target (borrowed, as is p->draft; both outlive it).
 * Errors: neither or both drafters, a draft model whose vocabulary differs
 * from the target's (size, or a token's text when both have tokenizers),
 * values out of range. *out is freed with loom_spec_free. */
LOOM_API loom_status loom_spec_new(loom_model *target, const loom_spec_params *p, loom_spec **out,
                                   char *err, size_t err_n);
LOOM_API void loom_spec_free(loom_spec *s); /* NULL is fine */

/* One speculative step of the sequence in target slot `slot`. hist holds
 * its n_hist tokens so far (prompt and generated); the slot's KV cache
 * holds all but the last (the token just sampled, as in a plain decode
 * loop). smp is the sequence's sampler: its history is the same tokens.
 * Emits 1..max_out tokens into out (*n_out): each is already recorded with
 * loom_sampler_accept, and the slot's KV cache then holds every token but
 * the last emitted one. max_out >= 1; the step also keeps the slot below
 * n_ctx - 1 so a caller's context check sees what a plain loop would. */
LOOM_API loom_status loom_spec_step(loom_spec *s, int slot, loom_sampler *smp, const int32_t *hist,
                                    size_t n_hist, int32_t max_out, int32_t *out, int32_t *n_out,
                                    char *err, size_t err_n);
LOOM_API void loom_spec_get_stats(const loom_spec *s, loom_spec_stats *out);
/* The draft length adapts to the acceptance seen so far (docs/adr/0038,
 * "Adaptive draft length"): shorter after rejections, drafting paused after
 * repeated misses, back to n_draft after full acceptance. loom_spec_reset
 * forgets that history; call it when a new sequence starts (loom_generate
 * does), so that a seed repeats a run whatever ran before. */
LOOM_API void loom_spec_reset(loom_spec *s); /* NULL is fine */

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
    /* Speculative decoding (borrowed; NULL: off, the default). loom_generate
     * and loom_generate_tokens only; greedy output is unchanged token for
     * token, sampled output keeps its distribution (docs/adr/0038). */
    loom_spec *spec;
} loom_generate_params;

LOOM_API loom_generate_params loom_generate_default_params(void);

typedef struct loom_generate_stats {
    int64_t n_prompt, n_gen;
    double t_prompt_s, t_gen_s; /* wall time of prefill and of the decode loop */
    loom_stop_reason stop;
    int64_t n_drafted, n_accepted; /* speculative decoding: draft tokens verified, accepted */
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
