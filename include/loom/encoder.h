/* loom/encoder.h - sentence-embedding encoders (BERT family) and their
 * WordPiece tokenizer. docs/adr/0027-sentence-encoders.md.
 *
 * An encoder is a Hugging Face / sentence-transformers model directory:
 * config.json (model_type "bert"), model.safetensors (f32/f16/bf16),
 * tokenizer.json (or vocab.txt) and optionally sentence_bert_config.json
 * (max_seq_length). loom_encoder_embed gives, per text, what
 * sentence-transformers' Transformer -> Pooling(mean) -> Normalize modules
 * give: the mean of the last hidden states over the attention mask,
 * L2-normalised.
 *
 * Ownership: every object returned through an out-parameter is the caller's
 * and is freed by its _free function (NULL is fine). A loaded tokenizer is
 * immutable and may encode from several threads at once; an encoder runs
 * one embed call at a time.
 * Errors: functions return a loom_status and write a one-line message into
 * err (at most err_n bytes; err may be NULL when err_n is 0). */
#ifndef LOOM_ENCODER_H
#define LOOM_ENCODER_H

#include "loom/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------- WordPiece (BERT) tokenizer ----------------
 * Hugging Face tokenizers' BertNormalizer + BertPreTokenizer + WordPiece +
 * the [CLS] A [SEP] template:
 *  - special tokens ([CLS], [SEP], [PAD], [UNK], [MASK] and any other entry
 *    of tokenizer.json's added_tokens) written in the text are matched on
 *    the raw text first and become their ids;
 *  - clean_text: U+0000, U+FFFD and control/format/unassigned/private-use
 *    characters (categories C*, except tab, CR, LF) are dropped; white
 *    space becomes ' ';
 *  - handle_chinese_chars: CJK ideographs get spaces around them;
 *  - strip_accents (default: same as lowercase): NFD, then nonspacing marks
 *    (Mn) dropped; lowercase: Unicode simple lower case (U+0130 -> "i\u0307");
 *  - split on white space, and every punctuation character (ASCII
 *    punctuation or Unicode P*) is a word of its own;
 *  - each word: greedy longest match, continuations prefixed "##"; a word
 *    with no match, or longer than max_input_chars_per_word (100)
 *    characters, becomes [UNK].
 * Unicode data (categories, decompositions, case) come from utf8proc. */
typedef struct loom_wordpiece loom_wordpiece;

/* dir holds tokenizer.json (preferred) or vocab.txt (with the
 * do_lower_case of tokenizer_config.json when present, default true). */
LOOM_API loom_status loom_wordpiece_load(const char *dir, loom_wordpiece **out, char *err,
                                         size_t err_n);
/* From the text of a tokenizer.json (n bytes); used by the fuzzer. */
LOOM_API loom_status loom_wordpiece_load_json(const char *json, size_t n, loom_wordpiece **out,
                                              char *err, size_t err_n);
LOOM_API void loom_wordpiece_free(loom_wordpiece *wp);
LOOM_API int32_t loom_wordpiece_vocab_size(const loom_wordpiece *wp);
/* The token of id ("" when out of range); owned by wp. */
LOOM_API const char *loom_wordpiece_token(const loom_wordpiece *wp, int32_t id);
LOOM_API int32_t loom_wordpiece_pad_id(const loom_wordpiece *wp);

/* Encode len bytes of text (any bytes; invalid UTF-8 is dropped as U+FFFD
 * is) as [CLS] pieces [SEP], truncated to at most max_tokens ids in all
 * (>= 2; the pieces are cut, as tokenizers' truncation does). Writes
 * min(count, cap) ids into ids and the count into *n_out. */
LOOM_API loom_status loom_wordpiece_encode(const loom_wordpiece *wp, const char *text, size_t len,
                                           int max_tokens, int32_t *ids, int cap, int *n_out);

/* ---------------- encoder model ---------------- */
typedef struct loom_encoder loom_encoder;

typedef struct loom_encoder_params {
    const char *backend; /* NULL: the best available (as loom_registry_select) */
    int max_tokens;      /* 0: sentence_bert_config.json max_seq_length, else the
                            model's max_position_embeddings */
} loom_encoder_params;

/* The directory of an encoder argument: "minilm" (the bundled default,
 * all-MiniLM-L6-v2) is loom_model_cache_dir()/
 * all-MiniLM-L6-v2, which scripts/fetch-models.sh fills; anything else is a
 * directory path. LOOM_ERR_IO with a message saying how to get the model
 * when the directory has no config.json. */
LOOM_API loom_status loom_encoder_resolve(const char *arg, char *dir, size_t n, char *err,
                                          size_t err_n);
/* Load the encoder in directory dir (see the top of this file). */
LOOM_API loom_status loom_encoder_load(const char *dir, const loom_encoder_params *p,
                                       loom_encoder **out, char *err, size_t err_n);
LOOM_API void loom_encoder_free(loom_encoder *e);
LOOM_API int64_t loom_encoder_dim(const loom_encoder *e); /* embedding size, e.g. 384 */
LOOM_API int loom_encoder_max_tokens(const loom_encoder *e);
LOOM_API const loom_wordpiece *loom_encoder_tokenizer(const loom_encoder *e);
/* Name of the backend the weights live on ("cpu", "vulkan", ...). */
LOOM_API const char *loom_encoder_backend(const loom_encoder *e);

/* Embed n texts as one batch (padded to the longest): out receives n rows of
 * loom_encoder_dim floats, each of L2 norm 1. */
LOOM_API loom_status loom_encoder_embed(loom_encoder *e, const char *const *texts, int n,
                                        float *out, char *err, size_t err_n);
/* The same from token ids: seq i is ids[i][0..lens[i]) (lens[i] in
 * 1..max_tokens, ids in the vocabulary), e.g. from loom_wordpiece_encode. */
LOOM_API loom_status loom_encoder_embed_ids(loom_encoder *e, const int32_t *const *ids,
                                            const int *lens, int n, float *out, char *err,
                                            size_t err_n);

#ifdef __cplusplus
}
#endif
#endif
