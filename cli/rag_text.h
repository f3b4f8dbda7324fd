/* cli/rag_text.h - the text side of `loom rag`: `loom rag index` (documents
 * -> chunks -> encoder -> index) and text queries for `loom rag search`
 * (docs/adr/0026-vector-index.md, addendum "text"). */
#ifndef LOOM_CLI_RAG_TEXT_H
#define LOOM_CLI_RAG_TEXT_H

#include <stdbool.h>

#include "cli/rag_retrieve.h"
#include "rag/index.h"

int loom_cli_rag_index(int argc, char **argv);
/* `loom rag info` (cli/rag_info_cmd.c). */
int loom_cli_rag_info(int argc, char **argv);
/* `loom rag ask` (cli/rag_ask_cmd.c). */
int loom_cli_rag_ask(int argc, char **argv);

/* Encode the queries (text, or each non-empty line of qfile) with the
 * recorded encoder (or ro->encoder) and print the top k (or re-ranked) hits
 * of each with its chunk text, from an index file or a store. Returns the
 * exit code. */
int loom_cli_rag_text_search(const loom_cli_retrieve_opts *ro, const char *text, const char *qfile,
                             const loom_cli_search_opts *so, bool json);
/* One hit as `loom rag search` prints it (a JSON line with json). */
void loom_cli_rag_print_hit(int query, int rank, const loom_cli_hit *h, bool json);

#endif
