/* cli/wtype.h - the one table of weight and cache type names behind every
 * --type, --quant and --kv-type flag of `loom` (init-model, export-gguf,
 * merge-lora, run/chat/serve/info, perplexity, finetune, bench model).
 *
 * Each name lists the uses that accept it; a flag parses with the set of its
 * command, and a bad value gets the one-line error of cli/args.h naming the
 * names that set accepts, e.g.
 *   loom export-gguf: --type: 'q4_k_m' is not one of f32, f16, ..., q5_K_M */
#ifndef LOOM_CLI_WTYPE_H
#define LOOM_CLI_WTYPE_H

#include <stdbool.h>

#include "loom/dtype.h"
#include "loom/model.h"

/* The uses, one bit each. */
enum {
    LOOM_CLI_WT_RANDOM = 1 << 0,   /* init-model / bench model: random weights written */
    LOOM_CLI_WT_EXPORT = 1 << 1,   /* export-gguf / merge-lora: GGUF tensor types and mixes */
    LOOM_CLI_WT_LOAD = 1 << 2,     /* run, chat, serve, perplexity --quant: quantize-on-load */
    LOOM_CLI_WT_FINETUNE = 1 << 3, /* finetune --quant: the frozen base of LoRA */
    LOOM_CLI_WT_MERGE = 1 << 4,    /* merge-lora --type: GGUF tensor types (no mix) */
};

typedef struct loom_cli_wtype {
    loom_dtype type;    /* for a mix: its base type (q4_K for q4_K_M) */
    loom_quant_mix mix; /* LOOM_MIX_NONE unless a llama.cpp mix was named */
} loom_cli_wtype;

/* v must be a name that `use` (one LOOM_CLI_WT_* bit) accepts. */
bool loom_cli_parse_wtype(const char *cmd, const char *flag, const char *v, unsigned use,
                          loom_cli_wtype *out);

/* --kv-type: f16, q8_0 or f32. */
bool loom_cli_parse_kv_type(const char *cmd, const char *flag, const char *v, loom_dtype *out);

#endif
