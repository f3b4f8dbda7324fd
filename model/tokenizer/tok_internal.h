/* model/tokenizer/tok_internal.h - internals shared by the tokenizer sources
 * (tokenizer.c, tokenizer_encode.c, tokenizer_export.c: the core, whose
 * representation is in tok_core.h; tokenizer_json.c: tokenizer.json loader;
 * tokenizer_chat.c: chat template). Not a public header. */
#ifndef LOOM_TOK_INTERNAL_H
#define LOOM_TOK_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/tokenizer.h"
#include "model/model_internal.h" /* loom_model_fail */

/* One merge rule as two strings in the byte-level alphabet. */
typedef struct loom_tok_merge {
    const char *left;
    const char *right;
} loom_tok_merge;

/* ---- pre-tokenizer (pretok.c) ---- */

/* One to LOOM_PRETOK_MAX_STAGES regexes, each splitting the pieces of the
 * previous one (Hugging Face: a Sequence of Isolated splits). */
#define LOOM_PRETOK_MAX_STAGES 2
typedef struct loom_pretok loom_pretok;
loom_status loom_pretok_new(const char *const *stages, size_t n, loom_pretok **out, char *err,
                            size_t err_n);
void loom_pretok_free(loom_pretok *p);
/* The stages of a GGUF tokenizer.ggml.pre value and whether llama.cpp maps a
 * pre-token found whole in the vocabulary straight to it (ignore_merges);
 * LOOM_ERR_UNSUPPORTED naming the value when loom does not know it. */
loom_status loom_pretok_named(const char *name, size_t len, const char *const **stages,
                              size_t *n_stages, bool *ignore_merges, char *err, size_t err_n);
/* The tokenizer.ggml.pre name loom writes for p, or NULL when p has none. */
const char *loom_pretok_name(const loom_pretok *p);
/* ignore_merges implied by a name from loom_pretok_name (NULL: a bare pattern). */
bool loom_pretok_default_ignore_merges(const char *name);
/* The regex of a one-stage p, or NULL. */
const char *loom_pretok_pattern(const loom_pretok *p);
const char *loom_pretok_gpt2_pattern(void);
const char *loom_pretok_digits_pattern(void);
/* Per-encode match state (one per thread). */
void *loom_pretok_scratch_new(const loom_pretok *p);
void loom_pretok_scratch_free(void *s);
/* Cut text into pre-tokens and call emit on each, in order. */
typedef loom_status (*loom_pretok_emit)(void *ud, const uint8_t *p, size_t n);
loom_status loom_pretok_split(const loom_pretok *p, void *scratch, const uint8_t *text, size_t n,
                              loom_pretok_emit emit, void *ud, char *err, size_t err_n);

/* The common constructor behind loom_tokenizer_from_vocab and the JSON and
 * GGUF loaders. tokens[id] may be NULL for an unassigned id. Strings are
 * copied. stages: the pre-tokenizer regexes (NULL, 0: Llama 3's). */
loom_status loom_tok_build(const char *const *tokens, size_t n_tokens, const int32_t *types,
                           const loom_tok_merge *merges, size_t n_merges, const char *const *stages,
                           size_t n_stages, bool ignore_merges, loom_tokenizer **out, char *err,
                           size_t err_n);
/* loom_tokenizer_from_vocab with pre-tokenizer stages. */
loom_status loom_tok_from_vocab(const char *const *tokens, size_t n_tokens,
                                const char *const *merges, size_t n_merges,
                                const int32_t *token_types, const char *const *stages,
                                size_t n_stages, bool ignore_merges, loom_tokenizer **out,
                                char *err, size_t err_n);

/* The arrays a GGUF file stores (tokenizer.ggml.*), rebuilt from a
 * tokenizer: tokens in the byte-level alphabet (special tokens raw), types,
 * merges "left right" by rank. Everything points into d->strings, except
 * pre_name and pattern, which are borrowed from the tokenizer: pre_name is
 * the tokenizer.ggml.pre value when the pre-tokenizer has one, else pattern
 * its single regex (NULL for an unnamed multi-stage one). Free with
 * loom_tok_export_free. */
typedef struct loom_tok_export_data {
    size_t n_tokens, n_merges;
    const char **tokens;
    int32_t *types;
    const char **merges;
    const char *pre_name, *pattern;
    bool ignore_merges, add_bos;
    char *strings;
} loom_tok_export_data;
loom_status loom_tok_export(const loom_tokenizer *t, loom_tok_export_data *d, char *err,
                            size_t err_n);
void loom_tok_export_free(loom_tok_export_data *d);

/* ---- SentencePiece BPE (tokenizer_spm.c) ---- */

/* Byte-level (GPT-2 alphabet) spelling of n raw bytes into dst (room for 2n + 1). */
void loom_tok_byte_level_encode(const uint8_t *p, size_t n, char *dst);
/* Where a SentencePiece tokenizer puts its "▁" (add_dummy_prefix), in
 * Hugging Face's terms; a segment is text between special tokens. */
typedef enum loom_tok_spm_prefix {
    LOOM_TOK_SPM_PREFIX_NONE = 0, /* add_space_prefix false; Metaspace "never" */
    LOOM_TOK_SPM_PREFIX_FIRST,    /* Metaspace "first": the segment at offset 0,
                                     unless it starts with a space (GGUF, newer JSON) */
    LOOM_TOK_SPM_PREFIX_ALWAYS,   /* Metaspace "always": every segment, same rule */
    LOOM_TOK_SPM_PREFIX_PREPEND,  /* normalizer Prepend("▁") (legacy Llama 2 JSON):
                                     every non-empty segment, even " x" -> "▁▁x" */
} loom_tok_spm_prefix;
/* Turn a tokenizer built by loom_tok_build into a SentencePiece one:
 * byte_ids[b] is the <0xXX> token of byte b (-1: none); those tokens were
 * built as UNUSED and become 1-byte BYTE tokens. */
loom_status loom_tok_spm_finish(loom_tokenizer *t, const int32_t *byte_ids,
                                loom_tok_spm_prefix prefix);
/* A tokenizer.json whose BPE model has byte_fallback (Llama 2, TinyLlama,
 * Mistral): the vocabulary and merges as written, "▁" for a space, the
 * prefix rule from its normalizer or Metaspace pre-tokenizer
 * (tokenizer_json_spm.c). root is the parsed file (a cJSON *). */
loom_status loom_tok_load_json_spm(const void *root, loom_tokenizer **out, char *err,
                                   size_t err_n);
bool loom_tok_is_spm(const loom_tokenizer *t);
/* GGUF tokenizer.ggml.model "llama": tokens, scores, token_type; merges
 * derived from the scores as transformers' generate_merges does. */
struct loom_gguf;
loom_status loom_tok_load_gguf_spm(struct loom_gguf *g, loom_tokenizer **out, char *err,
                                   size_t err_n);

#endif
