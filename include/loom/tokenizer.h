/* loom/tokenizer.h - byte-level BPE tokenizer (Llama 3 / GPT-2 style) and the
 * Llama-3 chat template.
 *
 * A loom_tokenizer is immutable once built: encode/decode/lookups take a const
 * pointer and may run concurrently from several threads. It is created by
 * loom_tokenizer_load_hf_json() (a Hugging Face tokenizer.json) or by
 * loom_tokenizer_from_vocab() (plain arrays, e.g. GGUF tokenizer.ggml.*), and
 * released with loom_tokenizer_free().
 *
 * Text is bytes: encode accepts any byte string (valid UTF-8 or not) and
 * decode returns raw bytes, so decode(encode(x)) == x for every x whose
 * bytes all have a token. A vocabulary may lack some of the 256 byte tokens
 * (SmolLM2's lacks 21): encode then drops those bytes, as Hugging Face's
 * tokenizers does.
 *
 * Errors: functions return a loom_status; those taking (err, err_n) write a
 * NUL-terminated message there on failure (err may be NULL when err_n is 0). */
#ifndef LOOM_TOKENIZER_H
#define LOOM_TOKENIZER_H

#include "loom/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_tokenizer loom_tokenizer;

/* Token kinds. The values are those of GGUF's tokenizer.ggml.token_type, so a
 * GGUF loader can pass that array straight through. */
typedef enum loom_token_type {
    LOOM_TOKEN_UNDEFINED = 0,    /* treated as NORMAL */
    LOOM_TOKEN_NORMAL = 1,       /* byte-level encoded string (GPT-2 alphabet, "Ġ" = space) */
    LOOM_TOKEN_UNKNOWN = 2,      /* raw text; never produced by encode */
    LOOM_TOKEN_CONTROL = 3,      /* special token (raw text): <|begin_of_text|>, <|eot_id|> ... */
    LOOM_TOKEN_USER_DEFINED = 4, /* added, non-special token (raw text); always split out */
    LOOM_TOKEN_UNUSED = 5,       /* raw text; never produced by encode */
    LOOM_TOKEN_BYTE = 6,         /* treated as NORMAL */
} loom_token_type;

/* Encode flags (combine with |). 0 = Hugging Face
 * tokenizer.encode(text, add_special_tokens=False): special-token text such as
 * "<|eot_id|>" in the input becomes the special id, no BOS is added. */
enum {
    LOOM_TOK_ADD_BOS = 1u << 0,    /* prepend the BOS id (loom_tokenizer_bos) */
    LOOM_TOK_NO_SPECIAL = 1u << 1, /* special-token text is encoded as plain text
                                    * (use for untrusted user input) */
};

/* Decode flags. */
enum {
    LOOM_TOK_SKIP_SPECIAL = 1u << 0, /* drop CONTROL/UNKNOWN/UNUSED tokens from the output */
};

/* Load a Hugging Face tokenizer.json (model.type "BPE" with the ByteLevel
 * alphabet; pre_tokenizer a Split regex + ByteLevel, or ByteLevel alone with
 * use_regex, or Digits(individual_digits) + ByteLevel as SmolLM2). Reads model.vocab, model.merges
 * ("a b" strings or [a, b] arrays), model.ignore_merges and added_tokens. Unsupported tokenizer
 * features are rejected with LOOM_ERR_UNSUPPORTED and a message naming them.
 * On success *out owns everything; free it with loom_tokenizer_free(). */
LOOM_API loom_status loom_tokenizer_load_hf_json(const char *path, loom_tokenizer **out, char *err,
                                                 size_t err_n);

/* Build from arrays (what a GGUF file holds). The arrays are copied; the
 * caller keeps ownership of its inputs.
 *   tokens[i]      the string of id i (n_tokens entries): byte-level encoded for
 *                  NORMAL/BYTE, raw text for the other types
 *   merges[r]      "left right" (one space between), rank r = its index
 *   token_types    per id, a loom_token_type value; NULL = all NORMAL
 *   pattern        the pre-tokenizer regex (PCRE2 syntax, compiled with UTF and
 *                  UCP); NULL = the Llama-3 regex (GGUF tokenizer.ggml.pre "llama-bpe")
 *   ignore_merges  a pre-token that is itself in the vocabulary maps directly to
 *                  that id (Llama 3: true)
 * BOS/EOS/EOT ids are guessed from the token strings (<|begin_of_text|>,
 * <|end_of_text|>, <|eot_id|>) and can be overridden with
 * loom_tokenizer_set_special_ids(). */
LOOM_API loom_status loom_tokenizer_from_vocab(const char *const *tokens, size_t n_tokens,
                                               const char *const *merges, size_t n_merges,
                                               const int32_t *token_types, const char *pattern,
                                               bool ignore_merges, loom_tokenizer **out, char *err,
                                               size_t err_n);

/* GGUF (model/tokenizer/tokenizer_gguf.c). Load from an open GGUF's tokenizer.ggml.*
 * keys (model "gpt2"; pre "llama-bpe" (also "llama3", "llama-v3") or absent
 * = the Llama-3 regex, "gpt2"/"default" = GPT-2's, "smollm" = digits one by
 * one then GPT-2's; any other pre value is LOOM_ERR_UNSUPPORTED naming it;
 * or loom.tokenizer.pattern; tokens, token_type, merges, bos/eos/eot ids), or model
 * "llama": SentencePiece BPE (Llama 2, TinyLlama, Mistral) as Hugging Face loads it:
 * merges derived from tokenizer.ggml.scores, byte fallback to the <0xXX> tokens,
 * a "▁" prefix before text at offset 0 (tokenizer.ggml.add_space_prefix, default
 * on), BOS by default; its <0xXX> tokens are LOOM_TOKEN_BYTE and decode to their
 * byte, "▁" decodes to a space (so decode gives the prefix as a leading space).
 * Such a tokenizer cannot be written back (loom_tokenizer_write_gguf:
 * LOOM_ERR_UNSUPPORTED).
 * A file without tokenizer.ggml.tokens gives LOOM_ERR_INVALID_ARG with
 * "no tokenizer" in err. *out as for the other loaders. */
struct loom_gguf;
struct loom_gguf_writer;
LOOM_API loom_status loom_tokenizer_load_gguf(struct loom_gguf *g, loom_tokenizer **out, char *err,
                                              size_t err_n);
/* Add the tokenizer.ggml.* keys of tok to a GGUF writer (the file is then
 * self-contained: llama.cpp and loom_tokenizer_load_gguf read them). */
LOOM_API loom_status loom_tokenizer_write_gguf(const loom_tokenizer *tok,
                                               struct loom_gguf_writer *w, char *err, size_t err_n);

/* The Llama-3 pre-tokenizer regex (a static string), as found in Llama 3's
 * tokenizer.json and implied by GGUF tokenizer.ggml.pre = "llama-bpe". */
LOOM_API const char *loom_tokenizer_llama3_pattern(void);

LOOM_API void loom_tokenizer_free(loom_tokenizer *tok);

/* Encode len bytes of text (need not be NUL-terminated or valid UTF-8).
 * *ids is malloc'd (caller frees with free(); non-NULL even when *n_ids is 0).
 * Invalid UTF-8: the regex never matches across an invalid byte, so each
 * maximal run of bytes the regex skips becomes its own pre-token and is
 * BPE-encoded from its bytes; decoding gives the same bytes back. */
LOOM_API loom_status loom_tokenizer_encode(const loom_tokenizer *tok, const char *text, size_t len,
                                           unsigned flags, int32_t **ids, size_t *n_ids, char *err,
                                           size_t err_n);

/* Decode ids to raw bytes (special tokens as their text unless
 * LOOM_TOK_SKIP_SPECIAL). *out is malloc'd and NUL-terminated (the terminator
 * is not counted in *out_len; the bytes may contain NULs or invalid UTF-8);
 * caller frees with free(). An id outside [0, vocab size) or without a token
 * is LOOM_ERR_INVALID_ARG. */
LOOM_API loom_status loom_tokenizer_decode(const loom_tokenizer *tok, const int32_t *ids,
                                           size_t n_ids, unsigned flags, char **out,
                                           size_t *out_len, char *err, size_t err_n);

/* The raw bytes of one token (borrowed; valid while tok lives; not
 * NUL-terminated). Special tokens give their text. */
LOOM_API loom_status loom_tokenizer_piece(const loom_tokenizer *tok, int32_t id, const char **bytes,
                                          size_t *len);

/* The id whose raw bytes are exactly (bytes, len): ordinary tokens first, then
 * special/added tokens. LOOM_ERR_INVALID_ARG when there is none. */
LOOM_API loom_status loom_tokenizer_find(const loom_tokenizer *tok, const char *bytes, size_t len,
                                         int32_t *id);

/* Token type of an id (LOOM_TOKEN_UNDEFINED for an id out of range or unassigned). */
LOOM_API loom_token_type loom_tokenizer_token_type(const loom_tokenizer *tok, int32_t id);

/* Number of ids (largest id + 1; Llama 3: 128256). */
LOOM_API size_t loom_tokenizer_vocab_size(const loom_tokenizer *tok);

/* Special ids; -1 when the tokenizer has none. */
LOOM_API int32_t loom_tokenizer_bos(const loom_tokenizer *tok);
LOOM_API int32_t loom_tokenizer_eos(const loom_tokenizer *tok);
LOOM_API int32_t loom_tokenizer_eot(const loom_tokenizer *tok);
/* Override them (-1 = none); ids must be in range. */
LOOM_API loom_status loom_tokenizer_set_special_ids(loom_tokenizer *tok, int32_t bos, int32_t eos,
                                                    int32_t eot);
/* Whether the model's own metadata asks for BOS in front of a prompt, as
 * Hugging Face's add_special_tokens and llama.cpp's add_bos do: GGUF
 * tokenizer.ggml.add_bos_token; absent, llama.cpp's default for the
 * tokenizer.ggml.pre value (llama-bpe: yes; gpt2, smollm: no). tokenizer.json:
 * tokenizer_config.json's add_bos_token beside it, else its TemplateProcessing
 * post-processor, else yes when the vocabulary has <|begin_of_text|> (Llama
 * 3); the BOS id is tokenizer_config.json's bos_token when given. A tokenizer
 * from loom_tokenizer_from_vocab: yes when it has <|begin_of_text|>. Generation
 * (loom_generate, loom serve) adds BOS only when this is true. */
LOOM_API bool loom_tokenizer_add_bos(const loom_tokenizer *tok);
/* Set it; true needs a BOS id (LOOM_ERR_INVALID_ARG otherwise). */
LOOM_API loom_status loom_tokenizer_set_add_bos(loom_tokenizer *tok, bool add_bos);

/* ---- chat template ---- */

typedef struct loom_chat_message {
    const char *role;    /* "system", "user", "assistant", ... (NUL-terminated) */
    const char *content; /* NUL-terminated UTF-8 */
} loom_chat_message;

/* Render messages with the Llama-3 chat template (the one in Llama 3's
 * tokenizer_config.json):
 *   <|begin_of_text|> then per message
 *   <|start_header_id|>ROLE<|end_header_id|>\n\nTRIM(CONTENT)<|eot_id|>
 *   and, when add_generation_prompt, <|start_header_id|>assistant<|end_header_id|>\n\n
 * TRIM removes leading/trailing whitespace as Jinja's |trim (Python
 * str.strip()) does. The shipped template appends the generation prompt
 * unconditionally, so add_generation_prompt = true reproduces it exactly;
 * false gives the Meta-Llama-3-Instruct variant without it. The result is
 * meant to be encoded with special-token parsing on. *out is malloc'd,
 * NUL-terminated; caller frees with free(). */
LOOM_API loom_status loom_chat_format_llama3(const loom_chat_message *messages, size_t n,
                                             bool add_generation_prompt, char **out);

/* ---- chat templates by fingerprint (docs/adr/0025) ----
 *
 * loom renders a table of real chat templates in C, chosen by the FNV-1a 64
 * hash of the template text stored with the model (GGUF
 * tokenizer.chat_template, tokenizer_config.json chat_template), byte-for-byte
 * as transformers' apply_chat_template renders them. Names: "llama3",
 * "chatml", "smollm2" (ChatML with SmolLM2's default system turn), "mistral"
 * ([INST], Mistral-7B-Instruct v0.1/v0.2: no system role), "llama2"
 * ([INST] with <<SYS>>), "zephyr". */
typedef struct loom_chat_template {
    const char *name;       /* one of the names above (static string) */
    bool gen_prompt_always; /* the text appends the generation prompt even when not asked */
} loom_chat_template;

/* The i-th template name (static), NULL past the end. */
LOOM_API const char *loom_chat_template_names(size_t i);

/* Choose a template: by name when name != NULL (unknown name:
 * LOOM_ERR_INVALID_ARG listing the names), else by the fingerprint of text
 * (NULL text or an unknown one: LOOM_ERR_UNSUPPORTED, with the fingerprint
 * and the family the text resembles in err). */
LOOM_API loom_status loom_chat_template_select(const char *name, const char *text,
                                               loom_chat_template *out, char *err, size_t err_n);

/* Render messages; bos/eos are the texts of the model's bos_token/eos_token
 * (NULL = ""). A conversation the template itself refuses (roles that do not
 * alternate in mistral/llama2, a system message in mistral) is
 * LOOM_ERR_INVALID_ARG with the reason in err. *out is malloc'd,
 * NUL-terminated; caller frees with free(). Encode the result with
 * special-token parsing on and without adding BOS (templates that want BOS
 * write it). */
LOOM_API loom_status loom_chat_render(const loom_chat_template *tmpl, const char *bos,
                                      const char *eos, const loom_chat_message *messages, size_t n,
                                      bool add_generation_prompt, char **out, char *err,
                                      size_t err_n);

/* The chat template text stored with the tokenizer's model (borrowed, valid
 * while tok lives), NULL when there is none. */
LOOM_API const char *loom_tokenizer_chat_template(const loom_tokenizer *tok);
/* Store a copy of text (NULL clears it). */
LOOM_API loom_status loom_tokenizer_set_chat_template(loom_tokenizer *tok, const char *text);

/* Render with the tokenizer's template: name != NULL overrides the stored
 * text (--chat-template); bos/eos are the tokenizer's. A tokenizer without a
 * stored text whose vocabulary has <|start_header_id|> (loom init-model's
 * models) renders as "llama3". Errors as loom_chat_template_select and
 * loom_chat_render. */
LOOM_API loom_status loom_tokenizer_chat_render(const loom_tokenizer *tok, const char *name,
                                                const loom_chat_message *messages, size_t n,
                                                bool add_generation_prompt, char **out, char *err,
                                                size_t err_n);

#ifdef __cplusplus
}
#endif
#endif
