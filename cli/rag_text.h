/* cli/rag_text.h - the text side of `loom rag`: `loom rag index` (documents
 * -> chunks -> encoder -> index) and text queries for `loom rag search`
 * (docs/adr/0026-vector-index.md, addendum "text"). */
#ifndef LOOM_CLI_RAG_TEXT_H
#define LOOM_CLI_RAG_TEXT_H

#include <stdbool.h>

#include "rag/index.h"

int loom_cli_rag_index(int argc, char **argv);
/* `loom rag ask` (cli/rag_ask_cmd.c). */
int loom_cli_rag_ask(int argc, char **argv);

/* Encode the queries (text, or each non-empty line of qfile) with the
 * index's encoder (or encoder when not NULL) and print the top k of each
 * with its chunk text, read back from the source. Returns the exit code. */
int loom_cli_rag_text_search(const char *index, const char *encoder, const char *text,
                             const char *qfile, int k, int ef, bool exact, const loom_rag_filter *f,
                             bool json, int threads);

#endif
