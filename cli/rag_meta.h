/* cli/rag_meta.h - `loom rag build --meta FILE.jsonl`: per-vector metadata. */
#ifndef LOOM_CLI_RAG_META_H
#define LOOM_CLI_RAG_META_H

#include <stddef.h>

#include "rag/index.h"

/* One JSON object per line and per vector: source, title, tag_str (strings),
 * byte_begin, byte_end (non-negative integers), tag (integer); a missing key
 * is empty/0. rows entries, or NULL after one line on stderr naming the file,
 * line and key. Free with loom_cli_rag_free_meta(m, rows). */
loom_rag_meta *loom_cli_rag_read_meta(const char *path, size_t rows);
void loom_cli_rag_free_meta(loom_rag_meta *m, size_t n);

#endif
