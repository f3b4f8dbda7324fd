/* cli/rag_docs.h - documents for `loom rag index` and the chunk text that
 * `loom rag search` reads back (docs/adr/0026-vector-index.md, addendum).
 *
 * A document's text is what gets chunked and what byte offsets point into:
 *  - .html/.htm: the text of train/data_prep_html's cleaner (no sections),
 *    title from <title>;
 *  - .md/.markdown/.txt/.rst/.text: the file's bytes, title from the first
 *    "# " line (Markdown) or the file name;
 *  - a line of a .jsonl file: source "FILE.jsonl#LINE" (1-based), text the
 *    object's "text" string, title its "title" (optional).
 * Reading back re-makes the text the same way, so offsets stay valid as
 * long as the source has not changed; hash is FNV-1a 64 of the source bytes
 * (the file, or the JSONL line), stored as the chunk's tag to notice that. */
#ifndef LOOM_CLI_RAG_DOCS_H
#define LOOM_CLI_RAG_DOCS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rag/index.h"

typedef struct loom_cli_doc {
    char *source; /* as stored in the index */
    char *title;
    char *text;
    size_t len;
    int64_t hash;
} loom_cli_doc;

/* The documents under path (a directory, walked recursively, hidden entries
 * and other extensions skipped, sorted by path) or in a .jsonl file: their
 * sources into *out (n entries, free with loom_cli_doc_list_free). false
 * after a one-line message in err. */
bool loom_cli_doc_list(const char *path, char ***out, size_t *n, char *err, size_t err_n);
void loom_cli_doc_list_free(char **v, size_t n);
/* The last JSONL file read, with its line offsets, so that loading its lines
 * one by one reads it once. Zero-initialise; free with
 * loom_cli_jsonl_cache_free. */
typedef struct loom_cli_jsonl_cache {
    char *path, *buf;
    size_t len, *line_off, n_lines;
} loom_cli_jsonl_cache;
void loom_cli_jsonl_cache_free(loom_cli_jsonl_cache *jc);

/* Load one source (see above); jc (may be NULL) caches JSONL files. false
 * after a one-line message in err. */
bool loom_cli_doc_load(const char *source, loom_cli_jsonl_cache *jc, loom_cli_doc *d, char *err,
                       size_t err_n);
void loom_cli_doc_free(loom_cli_doc *d);

/* Chunk text read back from its source (keeps the last document loaded).
 * A source that is gone or changed since indexing (hash != meta->tag) gives
 * "" and one warning on stderr. The text is borrowed until the next call. */
typedef struct loom_cli_doc_reader {
    loom_cli_doc d;
    bool have, warned;
    loom_cli_jsonl_cache jc;
} loom_cli_doc_reader;
const char *loom_cli_doc_chunk(loom_cli_doc_reader *r, const loom_rag_meta *m, size_t *n);
void loom_cli_doc_reader_free(loom_cli_doc_reader *r);

#endif
