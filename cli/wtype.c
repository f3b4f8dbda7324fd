/* cli/wtype.c - weight and cache type names (cli/wtype.h). */
#include "cli/wtype.h"

#include <stdio.h>
#include <string.h>

#include "cli/args.h"

#define R  LOOM_CLI_WT_RANDOM
#define E  LOOM_CLI_WT_EXPORT
#define L  LOOM_CLI_WT_LOAD
#define FT LOOM_CLI_WT_FINETUNE
#define M  LOOM_CLI_WT_MERGE

static const struct {
    const char *name;
    loom_dtype type;
    loom_quant_mix mix;
    unsigned uses;
} WTYPES[] = {
    {"f32", LOOM_F32, LOOM_MIX_NONE, R | E | M | L | FT},
    {"f16", LOOM_F16, LOOM_MIX_NONE, R | E | M | L | FT},
    {"bf16", LOOM_BF16, LOOM_MIX_NONE, R | E | M | L | FT},
    {"q8_0", LOOM_Q8_0, LOOM_MIX_NONE, R | E | M | L | FT},
    {"q4_0", LOOM_Q4_0, LOOM_MIX_NONE, R | E | M | L | FT},
    {"q4_1", LOOM_Q4_1, LOOM_MIX_NONE, R | E | M | L},
    {"q5_0", LOOM_Q5_0, LOOM_MIX_NONE, R | E | M | L},
    {"q5_1", LOOM_Q5_1, LOOM_MIX_NONE, R | E | M | L},
    /* k-quants and the llama.cpp mixes are written by export only; loading
     * quantizes to the legacy types (ADR 0024, 0039) */
    {"q2_K", LOOM_Q2_K, LOOM_MIX_NONE, E | M},
    {"q3_K", LOOM_Q3_K, LOOM_MIX_NONE, E | M},
    {"q4_K", LOOM_Q4_K, LOOM_MIX_NONE, E | M},
    {"q5_K", LOOM_Q5_K, LOOM_MIX_NONE, E | M},
    {"q6_K", LOOM_Q6_K, LOOM_MIX_NONE, E | M},
    {"q3_K_M", LOOM_Q3_K, LOOM_MIX_Q3_K_M, E},
    {"q4_K_M", LOOM_Q4_K, LOOM_MIX_Q4_K_M, E},
    {"q5_K_M", LOOM_Q5_K, LOOM_MIX_Q5_K_M, E},
    /* QLoRA's NormalFloat-4 (no GGUF type): both load as nf4_dq */
    {"nf4", LOOM_NF4, LOOM_MIX_NONE, L | FT},
    {"nf4_dq", LOOM_NF4_DQ, LOOM_MIX_NONE, L | FT},
};
#define N_WTYPES (sizeof WTYPES / sizeof WTYPES[0])

bool loom_cli_parse_wtype(const char *cmd, const char *flag, const char *v, unsigned use,
                          loom_cli_wtype *out) {
    const char *names[N_WTYPES + 1];
    int idx[N_WTYPES], n = 0;
    for (size_t i = 0; i < N_WTYPES; i++)
        if (WTYPES[i].uses & use) {
            idx[n] = (int)i;
            names[n++] = WTYPES[i].name;
        }
    names[n] = NULL;
    int k;
    if (!loom_cli_parse_choice(cmd, flag, v, names, &k)) return false;
    out->type = WTYPES[idx[k]].type;
    out->mix = WTYPES[idx[k]].mix;
    return true;
}

bool loom_cli_parse_kv_type(const char *cmd, const char *flag, const char *v, loom_dtype *out) {
    static const char *const names[] = {"f16", "q8_0", "f32", NULL};
    static const loom_dtype types[] = {LOOM_F16, LOOM_Q8_0, LOOM_F32};
    int k;
    if (!loom_cli_parse_choice(cmd, flag, v, names, &k)) return false;
    *out = types[k];
    return true;
}
