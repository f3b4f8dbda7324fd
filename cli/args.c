/* cli/args.c - strict parsing of command-line values (see cli/args.h).
 *
 * strtol and friends accept a prefix ("5abc" -> 5), an empty string (-> 0),
 * leading blanks and, for the unsigned ones, a minus sign (wrapping "-1" to
 * the largest value); atoi also has undefined behaviour on overflow. Each
 * parser here checks the end pointer, errno and the sign itself. */
#include "cli/args.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loom/placement.h"

static bool not_number(const char *cmd, const char *flag, const char *s) {
    fprintf(stderr, "loom %s: %s: '%s' is not a number\n", cmd, flag, s);
    return false;
}

/* Rejects what strto* would silently skip or accept as zero. */
static bool plausible(const char *s) {
    return s && s[0] && !isspace((unsigned char)s[0]);
}

bool loom_cli_parse_i64(const char *cmd, const char *flag, const char *s, int64_t min, int64_t max,
                        int64_t *out) {
    if (!plausible(s)) return not_number(cmd, flag, s ? s : "");
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end) return not_number(cmd, flag, s);
    if (errno == ERANGE || v < min || v > max) {
        fprintf(stderr, "loom %s: %s: %s is out of range (%" PRId64 "..%" PRId64 ")\n", cmd, flag,
                s, min, max);
        return false;
    }
    *out = (int64_t)v;
    return true;
}

bool loom_cli_parse_int(const char *cmd, const char *flag, const char *s, int min, int max,
                        int *out) {
    int64_t v;
    if (!loom_cli_parse_i64(cmd, flag, s, min, max, &v)) return false;
    *out = (int)v;
    return true;
}

bool loom_cli_parse_u64(const char *cmd, const char *flag, const char *s, uint64_t min,
                        uint64_t max, uint64_t *out) {
    if (!plausible(s) || s[0] == '+') return not_number(cmd, flag, s ? s : "");
    if (s[0] == '-') { /* a negative number is a number, just not in range */
        int64_t ignored;
        if (!loom_cli_parse_i64(cmd, flag, s, INT64_MIN, INT64_MAX, &ignored)) return false;
        fprintf(stderr, "loom %s: %s: %s is out of range (%" PRIu64 "..%" PRIu64 ")\n", cmd, flag,
                s, min, max);
        return false;
    }
    bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
    const char *digits = hex ? s + 2 : s;
    if (!isxdigit((unsigned char)digits[0])) return not_number(cmd, flag, s);
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(digits, &end, hex ? 16 : 10);
    if (end == digits || *end) return not_number(cmd, flag, s);
    if (errno == ERANGE || v < min || v > max) {
        fprintf(stderr, "loom %s: %s: %s is out of range (%" PRIu64 "..%" PRIu64 ")\n", cmd, flag,
                s, min, max);
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

bool loom_cli_parse_f64(const char *cmd, const char *flag, const char *s, double min, double max,
                        double *out) {
    if (!plausible(s)) return not_number(cmd, flag, s ? s : "");
    /* strtod also reads "inf", "nan" and hex floats; a CLI value is decimal. */
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789+-.eE", *p)) return not_number(cmd, flag, s);
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end) return not_number(cmd, flag, s);
    /* ERANGE on underflow (1e-400) is harmless: the result is 0 or tiny. */
    if (!isfinite(v) || v < min || v > max) {
        fprintf(stderr, "loom %s: %s: %s is out of range (%g..%g)\n", cmd, flag, s, min, max);
        return false;
    }
    *out = v;
    return true;
}

bool loom_cli_parse_f32(const char *cmd, const char *flag, const char *s, float min, float max,
                        float *out) {
    double v;
    if (!loom_cli_parse_f64(cmd, flag, s, min, max, &v)) return false;
    *out = (float)v;
    return true;
}

bool loom_cli_parse_choice(const char *cmd, const char *flag, const char *s,
                           const char *const *choices, int *out) {
    for (int i = 0; s && choices[i]; i++)
        if (!strcmp(s, choices[i])) {
            *out = i;
            return true;
        }
    fprintf(stderr, "loom %s: %s: '%s' is not one of ", cmd, flag, s ? s : "");
    for (int i = 0; choices[i]; i++)
        fprintf(stderr, "%s%s", i ? ", " : "", choices[i]);
    fputc('\n', stderr);
    return false;
}

const char *loom_cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "loom %s: %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

bool loom_cli_is_help(const char *a) {
    return !strcmp(a, "-h") || !strcmp(a, "--help");
}

int loom_cli_unknown(const char *cmd, const char *a) {
    if (a[0] == '-' && a[1])
        fprintf(stderr, "loom %s: unknown option '%s'\n", cmd, a);
    else
        fprintf(stderr, "loom %s: unexpected argument '%s'\n", cmd, a);
    return LOOM_CLI_USAGE;
}

/* ---------------- layer-split flags ---------------- */

void loom_cli_split_init(loom_cli_split *o) {
    memset(o, 0, sizeof *o);
    o->split = 0; /* LOOM_SPLIT_LAYER */
    o->gpu_layers = LOOM_GPU_LAYERS_AUTO;
}

bool loom_cli_split_flag(const char *a) {
    return !strcmp(a, "--gpu-layers") || !strcmp(a, "--devices") || !strcmp(a, "--tensor-split") ||
           !strcmp(a, "--split");
}

/* "3,1": each share a finite decimal in [0, 1e6], at most 8, not all 0. */
static bool parse_shares(const char *cmd, const char *flag, const char *v, loom_cli_split *o) {
    char item[64];
    o->n_shares = 0;
    for (const char *s = v;;) {
        const char *c = strchr(s, ',');
        size_t len = c ? (size_t)(c - s) : strlen(s);
        if (len == 0 || len >= sizeof item || o->n_shares == LOOM_MAX_DEVICES) {
            fprintf(stderr, "loom %s: %s: '%s' is not a list of at most %d shares (e.g. 3,1)\n",
                    cmd, flag, v, LOOM_MAX_DEVICES);
            return false;
        }
        memcpy(item, s, len);
        item[len] = 0;
        if (!loom_cli_parse_f32(cmd, flag, item, 0.0f, 1e6f, &o->shares[o->n_shares])) return false;
        o->n_shares++;
        if (!c) break;
        s = c + 1;
    }
    float sum = 0;
    for (int i = 0; i < o->n_shares; i++)
        sum += o->shares[i];
    if (!(sum > 0)) {
        fprintf(stderr, "loom %s: %s: '%s' gives every device a share of 0\n", cmd, flag, v);
        return false;
    }
    return true;
}

bool loom_cli_split_parse(const char *cmd, const char *flag, const char *v, loom_cli_split *o) {
    if (!strcmp(flag, "--gpu-layers")) {
        o->gpu_layers_set = true;
        if (!strcmp(v, "auto")) {
            o->gpu_layers = LOOM_GPU_LAYERS_AUTO;
            return true;
        }
        /* a number or auto: say so when it is neither */
        for (const char *p = v; *p; p++)
            if (!isdigit((unsigned char)*p) && !(p == v && (*p == '-' || *p == '+'))) {
                fprintf(stderr, "loom %s: %s: '%s' is not a number or auto\n", cmd, flag, v);
                return false;
            }
        if (!v[0]) {
            fprintf(stderr, "loom %s: %s: '' is not a number or auto\n", cmd, flag);
            return false;
        }
        return loom_cli_parse_int(cmd, flag, v, 0, LOOM_CLI_MAX_GPU_LAYERS, &o->gpu_layers);
    }
    if (!strcmp(flag, "--devices")) {
        loom_device_ref refs[LOOM_MAX_DEVICES];
        int n = 0;
        char err[256];
        if (loom_split_parse_devices(v, refs, &n, err, sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom %s: %s: %s\n", cmd, flag, err);
            return false;
        }
        o->devices = v;
        return true;
    }
    if (!strcmp(flag, "--tensor-split")) return parse_shares(cmd, flag, v, o);
    static const char *const modes[] = {"layer", "none", NULL}; /* = loom_split_mode */
    o->split_set = true;
    return loom_cli_parse_choice(cmd, flag, v, modes, &o->split);
}

bool loom_cli_split_check(const char *cmd, const loom_cli_split *o) {
    if (o->split == 1 && (o->devices || o->n_shares || (o->gpu_layers_set && o->gpu_layers >= 0))) {
        fprintf(stderr,
                "loom %s: --split none keeps every weight on the backend; it takes no "
                "--devices, --tensor-split or --gpu-layers N\n",
                cmd);
        return false;
    }
    if (o->n_shares && o->gpu_layers_set && o->gpu_layers >= 0) {
        fprintf(stderr,
                "loom %s: --tensor-split and --gpu-layers %d contradict: the shares decide how "
                "many layers each device holds\n",
                cmd, o->gpu_layers);
        return false;
    }
    return true;
}
