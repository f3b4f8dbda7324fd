/* cli/cli.h - subcommands of the loom command-line tool. Each returns the
 * process exit code (0 ok, 1 failure, 2 usage or unavailable backend). */
#ifndef LOOM_CLI_H
#define LOOM_CLI_H

#include <stddef.h>

/* `loom devices`: every registered backend and which one would be selected. */
int loom_cli_devices(const char *backend);
/* `loom demo`: one transformer block on random weights, on the selected backend. */
int loom_cli_demo(const char *backend, int argc, char **argv);

/* cli/test_ops.c: the parity suite (parity/) with its options. */
int loom_cli_test_ops(const char *backend, int argc, char **argv);

/* cli/model_cmds.c: models (loom/model.h, loom/generate.h). */
int loom_cli_init_model(int argc, char **argv);
int loom_cli_export_gguf(int argc, char **argv);
int loom_cli_info(const char *backend, int argc, char **argv);
int loom_cli_run(const char *backend, int argc, char **argv);
int loom_cli_chat(const char *backend, int argc, char **argv);
/* The path of the default model `loom run` uses without -m (under the build
 * tree), created on first use; 0 on success, else an exit code. */
int loom_cli_default_model(char *path, size_t n);

/* cli/serve_cmd.c: `loom serve` (serve/server.h). */
int loom_cli_serve(const char *backend, int argc, char **argv);

/* cli/rag_cmd.c: `loom rag` (rag/index.h). */
int loom_cli_rag(int argc, char **argv);

#endif
