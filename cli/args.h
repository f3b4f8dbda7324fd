/* cli/args.h - strict parsing of command-line values, shared by every `loom`
 * subcommand (`loom test-ops` included: its options are parsed in cli/).
 *
 * One rule everywhere: the whole string is the value (no empty string, no
 * leading blanks, no trailing junk), integers must fit their type, floats
 * must be finite, and the value must lie in [min, max]. On failure one line
 * on stderr names the command, the flag and the value, e.g.
 *   loom run: --temp: 'abc' is not a number
 *   loom run: -n: -5 is out of range (-1..1000000)
 *   loom run: --kv-type: 'q5' is not one of f16, q8_0, f32
 * and the parser returns false; the caller exits with LOOM_CLI_USAGE. */
#ifndef LOOM_CLI_ARGS_H
#define LOOM_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Exit code of every usage error (bad flag, bad value, missing value). */
#define LOOM_CLI_USAGE 2

/* Decimal integers with an optional sign. */
bool loom_cli_parse_i64(const char *cmd, const char *flag, const char *s, int64_t min, int64_t max,
                        int64_t *out);
bool loom_cli_parse_int(const char *cmd, const char *flag, const char *s, int min, int max,
                        int *out);
/* Unsigned: decimal, or hexadecimal with a 0x prefix (seeds are printed in
 * hex); a minus sign is rejected (strtoull would wrap "-1" to 2^64-1). */
bool loom_cli_parse_u64(const char *cmd, const char *flag, const char *s, uint64_t min,
                        uint64_t max, uint64_t *out);
/* Finite decimal floats (no inf, nan or hex floats). */
bool loom_cli_parse_f64(const char *cmd, const char *flag, const char *s, double min, double max,
                        double *out);
bool loom_cli_parse_f32(const char *cmd, const char *flag, const char *s, float min, float max,
                        float *out);
/* s must be one of choices (NULL-terminated); *out is its index. */
bool loom_cli_parse_choice(const char *cmd, const char *flag, const char *s,
                           const char *const *choices, int *out);

/* The value of the option at argv[*i]: advances *i and returns argv[*i], or
 * prints "loom CMD: FLAG needs a value" and returns NULL. */
const char *loom_cli_value(const char *cmd, int argc, char **argv, int *i);
/* -h or --help. */
bool loom_cli_is_help(const char *a);
/* "loom CMD: unknown option 'A'" (or "unexpected argument" for a non-option)
 * on stderr; returns LOOM_CLI_USAGE. The caller prints its usage after it. */
int loom_cli_unknown(const char *cmd, const char *a);

/* The layer-split flags shared by run, chat, serve, bench model and info
 * (docs/adr/0030-layer-split.md):
 *   --gpu-layers N|auto   layers off the cpu (the last N), or as many as fit
 *   --devices LIST        NAME[:INDEX],... in order, e.g. vulkan:0,cpu
 *   --tensor-split LIST   one share per device of --devices, e.g. 3,1
 *   --split layer|none    layer (default) or none: all on the run backend
 * loom_cli_split_flag says whether a is one of them (each takes a value);
 * loom_cli_split_parse parses one (one-line errors as above); after the
 * loop, loom_cli_split_check rejects combinations that contradict each
 * other. LOOM_CLI_SPLIT_USAGE is the lines for a usage text. */
typedef struct loom_cli_split {
    int split;      /* loom_split_mode */
    int gpu_layers; /* LOOM_GPU_LAYERS_AUTO (-1) or N */
    bool gpu_layers_set, split_set;
    const char *devices; /* NULL: not given */
    int n_shares;
    float shares[8];
} loom_cli_split;
#define LOOM_CLI_MAX_GPU_LAYERS 65536
#define LOOM_CLI_SPLIT_USAGE                                                                       \
    "  --gpu-layers N|auto   layers off the cpu: the last N (0..65536), plus the output\n"         \
    "                        head when it fits; auto (default): as many as fit\n"                  \
    "  --devices LIST        devices in order, NAME[:INDEX],... (e.g. vulkan:0,cpu);\n"            \
    "                        default: the backend, then cpu\n"                                     \
    "  --tensor-split LIST   one share per device of --devices (e.g. 3,1)\n"                       \
    "  --split MODE          layer (default): layers split over the devices; none:\n"              \
    "                        every weight on the backend\n"
void loom_cli_split_init(loom_cli_split *o);
bool loom_cli_split_flag(const char *a);
bool loom_cli_split_parse(const char *cmd, const char *flag, const char *v, loom_cli_split *o);
bool loom_cli_split_check(const char *cmd, const loom_cli_split *o);

#endif
