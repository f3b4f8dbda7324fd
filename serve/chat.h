/* serve/chat.h - chat messages to prompt tokens for `loom serve`.
 *
 * The rendering is the model's chat template (loom_tokenizer_chat_render:
 * chosen by fingerprint; Llama 3 for loom's own models); what this adds is
 * how the result is encoded: the template's own text (headers,
 * <|eot_id|>) with special-token parsing, each message's content as plain
 * text (LOOM_TOK_NO_SPECIAL), so a client cannot forge turns or an EOS by
 * writing "<|eot_id|>" in a message. When no content has special-token text
 * (the common case) the whole rendered prompt is encoded at once, so the ids
 * equal transformers' and llama.cpp's; otherwise the template text and each
 * content are encoded apart (ids may then differ where a content meets the
 * template text, e.g. the space after "[INST]"). Any conversation the
 * template accepts works, multi-turn [INST] ones included. */
#ifndef LOOM_SERVE_CHAT_H
#define LOOM_SERVE_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "loom/status.h"
#include "loom/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Render messages with the generation prompt and encode them. *ids is
 * malloc'd (caller frees). Errors (out of memory, a tokenizer failure, or a
 * template that does not have the expected shape) are described in err. */
loom_status loom_serve_chat_encode(const loom_tokenizer *tok, const loom_chat_message *msgs,
                                   size_t n, int32_t **ids, size_t *n_ids, char *err, size_t err_n);

#ifdef __cplusplus
}
#endif
#endif
