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

#endif
