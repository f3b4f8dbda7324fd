/* rag/chunk.h - token-based chunks with sentence-aware boundaries for
 * `loom rag index` (docs/adr/0026-vector-index.md, addendum "text").
 *
 * Rule (one place): the text is cut into sentences - a sentence ends after
 * '.', '!' or '?' followed by white space, and at every line break (the HTML
 * cleaner puts blocks on their own lines); leading white space is not part
 * of a sentence. Each sentence's size is its WordPiece piece count (the
 * encoder's tokenizer, [CLS]/[SEP] not counted). Chunks are runs of whole
 * sentences, packed greedily up to chunk_tokens; the next chunk starts with
 * the last sentences of the previous one whose sizes add up to at most
 * overlap_tokens (never with the chunk's first sentence, and none when the
 * overlap and the following sentence would not fit together: every chunk
 * then ends beyond the previous one).
 * A sentence larger than chunk_tokens is cut at white space into pieces of
 * at most chunk_tokens (a single word larger than that stays whole; the
 * encoder truncates it).
 *
 * Offsets are bytes into the text given; chunks come in text order. */
#ifndef LOOM_RAG_CHUNK_H
#define LOOM_RAG_CHUNK_H

#include <stddef.h>

#include "loom/encoder.h"
#include "loom/status.h"

typedef struct loom_rag_chunk {
    size_t begin, end; /* [begin, end) of the text */
    int tokens;        /* pieces, as counted above */
} loom_rag_chunk;

/* Chunks of text[0..len) into *out (malloc'd, the caller frees; NULL with
 * *n_out 0 when the text has no sentence). chunk_tokens >= 1,
 * 0 <= overlap_tokens < chunk_tokens. */
loom_status loom_rag_chunk_text(const loom_wordpiece *wp, const char *text, size_t len,
                                int chunk_tokens, int overlap_tokens, loom_rag_chunk **out,
                                size_t *n_out);

#endif
