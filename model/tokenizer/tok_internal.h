/* model/tokenizer/tok_internal.h - internals shared by the tokenizer sources
 * (tokenizer.c: core, encode/decode; tokenizer_json.c: tokenizer.json loader;
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

/* The common constructor behind loom_tokenizer_from_vocab and the JSON loader.
 * tokens[id] may be NULL for an unassigned id. Strings are copied. */
loom_status loom_tok_build(const char *const *tokens, size_t n_tokens, const int32_t *types,
                           const loom_tok_merge *merges, size_t n_merges, const char *pattern,
                           bool ignore_merges, loom_tokenizer **out, char *err, size_t err_n);

/* The arrays a GGUF file stores (tokenizer.ggml.*), rebuilt from a
 * tokenizer: tokens in the byte-level alphabet (special tokens raw), types,
 * merges "left right" by rank. Everything points into d->strings, except
 * pattern, which is borrowed from the tokenizer. Free with loom_tok_export_free. */
typedef struct loom_tok_export_data {
    size_t n_tokens, n_merges;
    const char **tokens;
    int32_t *types;
    const char **merges;
    const char *pattern;
    bool llama3_pattern, ignore_merges;
    char *strings;
} loom_tok_export_data;
loom_status loom_tok_export(const loom_tokenizer *t, loom_tok_export_data *d, char *err,
                            size_t err_n);
void loom_tok_export_free(loom_tok_export_data *d);

#endif
