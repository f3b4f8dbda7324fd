/* cli/cli.h - subcommands of the loom command-line tool. Each returns the
 * process exit code (0 ok, 1 failure, 2 usage or unavailable backend). */
#ifndef LOOM_CLI_H
#define LOOM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/dtype.h"

/* `loom devices`: every registered backend and which one would be selected. */
int loom_cli_devices(const char *backend);
/* `loom demo`: one transformer block on random weights, on the selected backend. */
int loom_cli_demo(const char *backend, int argc, char **argv);

/* cli/test_ops.c: the parity suite (parity/) with its options. */
int loom_cli_test_ops(const char *backend, int argc, char **argv);

/* cli/model_cmds.c: models (loom/model.h). */
int loom_cli_init_model(int argc, char **argv);
int loom_cli_export_gguf(int argc, char **argv);
int loom_cli_info(const char *backend, int argc, char **argv);
/* cli/run_cmd.c: generation (loom/generate.h); `loom run --draft|--spec`
 * decodes speculatively (docs/adr/0038). */
int loom_cli_run(const char *backend, int argc, char **argv);
int loom_cli_chat(const char *backend, int argc, char **argv);
/* --ctx of run, chat and info: 2^24 positions, far above any preset's max_ctx. */
#define LOOM_CLI_MAX_CTX 16777216
/* The path of the default model `loom run` uses without -m: SmolLM2 from the
 * model cache, else the random-weight model under the build tree, created on
 * first use (cli/model_cmds.c says the rule); 0 on success, else an exit code.
 * loom_cli_random_default_model: that random-weight model's path (created if
 * missing), for a default model that is there but fails to load. */
#define LOOM_CLI_DEFAULT_REAL_MODEL "SmolLM2-135M-Instruct.Q4_1.gguf"
#define LOOM_CLI_DEFAULT_PRESET     "tiny-moe"
int loom_cli_default_model(char *path, size_t n);
int loom_cli_random_default_model(char *path, size_t n);

/* cli/perplexity_cmd.c: `loom perplexity` (loom/perplexity.h). */
int loom_cli_perplexity(const char *backend, int argc, char **argv);
/* cli/embed_cmd.c: `loom embed` (loom/encoder.h). */
int loom_cli_embed(const char *backend, int argc, char **argv);
/* cli/data_cmd.c: `loom data prep` (train/data_prep.h). */
int loom_cli_data(int argc, char **argv);
/* cli/split_cmds.c (docs/adr/0030): the layer-split flags (cli/args.h) into
 * model params; the one-line plan a load prints on stderr (when a non-cpu
 * device took part); the boundary copies' cost after a run (total_s: the
 * run's seconds); `loom info`'s plan table of path (0, or 1 after printing
 * the error; ctx 0: default_ctx, what a load uses). */
struct loom_cli_split;
struct loom_model_params;
struct loom_model;
void loom_cli_split_apply(const struct loom_cli_split *o, struct loom_model_params *p);
void loom_cli_print_plan(const struct loom_model *m);
void loom_cli_print_split_cost(const struct loom_model *m, double total_s);
int loom_cli_info_plan(const char *path, bool hf, const char *backend,
                       const struct loom_cli_split *so, loom_dtype kv, int n_slots, int64_t ctx,
                       int64_t default_ctx);

/* cli/spec_flags.c: speculative decoding (docs/adr/0038). The flags shared by
 * `loom run` and `loom serve`:
 *   --draft MODEL      a draft model with the target's tokenizer
 *   --spec lookup      prompt lookup (no second model)
 *   --spec-k N         tokens drafted per step (1..7, default 4)
 *   --spec-ngram N     lookup: longest n-gram matched (1..16, default 3)
 * loom_cli_spec_flag says whether a is one (each takes a value),
 * loom_cli_spec_parse parses one, loom_cli_spec_check rejects contradicting
 * combinations after the loop (one-line errors, cli/args.h).
 * loom_cli_spec_open loads the draft model (one slot, target's context) and
 * makes the speculator for target: *draft and *spec are NULL when no flag
 * asked for one; freed by the caller (spec first); 0 or an exit code
 * (message printed). */
typedef struct loom_cli_spec {
    const char *draft;
    bool lookup, k_set, ngram_set;
    int n_draft, ngram;
} loom_cli_spec;
#define LOOM_CLI_SPEC_USAGE                                                                        \
    "speculative decoding (docs/adr/0038; one sequence: not with --parallel, --tp,\n"              \
    "--lora, --quant or the split flags):\n"                                                       \
    "  --draft MODEL         draft model with the same tokenizer (e.g. a smaller one)\n"           \
    "  --spec lookup         prompt lookup: drafts copied from the prompt and text so far\n"       \
    "  --spec-k N            tokens drafted per step, 1..7 (default 4)\n"                          \
    "  --spec-ngram N        lookup: longest n-gram matched, 1..16 (default 3)\n"
struct loom_spec;
void loom_cli_spec_init(loom_cli_spec *o);
bool loom_cli_spec_flag(const char *a);
bool loom_cli_spec_parse(const char *cmd, const char *flag, const char *v, loom_cli_spec *o);
bool loom_cli_spec_check(const char *cmd, const loom_cli_spec *o);
int loom_cli_spec_open(const char *cmd, const char *backend, const loom_cli_spec *o,
                       struct loom_model *target, struct loom_model **draft,
                       struct loom_spec **spec);

/* cli/serve_cmd.c: `loom serve` (serve/server.h). */
int loom_cli_serve(const char *backend, int argc, char **argv);

/* cli/finetune_cmd.c: `loom finetune` (train/finetune.h). */
int loom_cli_finetune(const char *backend, int argc, char **argv);
/* `loom merge-lora` (train/merge.h), in cli/finetune_cmd.c. */
int loom_cli_merge_lora(int argc, char **argv);
/* `loom run|chat --lora DIR`: load the PEFT adapter in DIR for m and install
 * it as m's projection hook (applied unmerged). *out is freed with
 * loom_cli_lora_free after m; 0 or an exit code (message printed). */
typedef struct loom_cli_lora loom_cli_lora;
struct loom_model;
int loom_cli_lora_attach(const char *cmd, struct loom_model *m, const char *dir,
                         loom_cli_lora **out);
void loom_cli_lora_free(loom_cli_lora *l); /* NULL is fine */

/* `loom run --tp N` (cli/tp_cmd.c, docs/adr/0034): the ranks mpirun started,
 * checked to be N (an MPI build, started under mpirun -np N); on ranks other
 * than 0, stdout goes to /dev/null (every rank computes the same tokens).
 * *out is NULL for N <= 1. 0 or an exit code (message printed). */
struct loom_comm;
/* --tp's ranks: the communicator (kind: "auto" or NULL = nccl when backend
 * names cuda, else mpi; "mpi"; "nccl") in *out, NULL for tp <= 1. On a GPU
 * backend named without an index (cuda, hip, vulkan) each rank takes its own
 * device, <name>:<local rank mod devices>, written to dev (else dev = "").
 * 0, or an exit code after a one-line message. */
int loom_cli_tp_open(const char *cmd, int tp, const char *kind, const char *backend,
                     struct loom_comm **out, char *dev, size_t dev_n);
void loom_cli_tp_close(struct loom_comm *c); /* NULL is fine */
/* cli/rag_cmd.c: `loom rag` (rag/index.h). */
int loom_cli_rag(int argc, char **argv);

#endif
