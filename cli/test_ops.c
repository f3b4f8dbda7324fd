/* cli/test_ops.c - `loom test-ops`: the options of the parity suite
 * (parity/), parsed with the same strict rules as every subcommand. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "loom/loom.h"
#include "parity/parity.h"

static void test_ops_usage(FILE *f) {
    fprintf(f,
            "usage: loom test-ops [--backend NAME] [--op NAME] [--case SUBSTR] [--seed N]\n"
            "                     [--golden DIR] [--list] [-v]\n"
            "  Compares every op on every available backend with the scalar reference.\n"
            "  --backend NAME  test only this backend (cpu, vulkan, cuda, hip)\n"
            "  --op NAME       only cases of this op (e.g. matmul, flash_attn, moe)\n"
            "  --case SUBSTR   only cases whose name contains SUBSTR\n"
            "  --seed N        base seed, 0..2^64-1, decimal or 0x hex (default 0x%016" PRIx64 ")\n"
            "  --list          list the selected cases and exit\n"
            "  --golden DIR    numpy golden cases (default: $LOOM_SOURCE_DIR/tests/golden,\n"
            "                  else the source tree loom was built from); 'none' skips them\n"
            "  -v, --verbose   one line per case and backend\n",
            loom_parity_default_opts().seed);
}

/* --op NAME: one of loom_op_name's names (the error lists them all). */
static bool parse_op(const char *flag, const char *v, const char **out) {
    const char *names[LOOM_OP_COUNT + 1];
    for (int op = 0; op < LOOM_OP_COUNT; op++)
        names[op] = loom_op_name((loom_op)op);
    names[LOOM_OP_COUNT] = NULL;
    int k;
    if (!loom_cli_parse_choice("test-ops", flag, v, names, &k)) return false;
    *out = names[k];
    return true;
}

int loom_cli_test_ops(const char *backend, int argc, char **argv) {
    const char *cmd = "test-ops";
    loom_parity_opts o = loom_parity_default_opts();
    o.backend = backend;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (loom_cli_is_help(a)) {
            test_ops_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--list")) {
            o.list = true;
            continue;
        }
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o.verbose = true;
            continue;
        }
        /* --backend=NAME and --op=NAME as well as the two-word forms. */
        char flag[16] = "";
        if (!strncmp(a, "--backend=", 10) || !strncmp(a, "--op=", 5)) {
            size_t n = (size_t)(strchr(a, '=') - a);
            memcpy(flag, a, n);
            flag[n] = 0;
            v = a + n + 1;
        } else if (!strcmp(a, "--backend") || !strcmp(a, "--op") || !strcmp(a, "--case") ||
                   !strcmp(a, "--seed") || !strcmp(a, "--golden")) {
            snprintf(flag, sizeof flag, "%s", a);
            if (!(v = loom_cli_value(cmd, argc, argv, &i))) return LOOM_CLI_USAGE;
        } else {
            loom_cli_unknown(cmd, a);
            test_ops_usage(stderr);
            return LOOM_CLI_USAGE;
        }
        bool ok = true;
        if (!strcmp(flag, "--backend"))
            o.backend = v;
        else if (!strcmp(flag, "--op"))
            ok = parse_op(flag, v, &o.op);
        else if (!strcmp(flag, "--case"))
            o.match = v;
        else if (!strcmp(flag, "--golden"))
            o.golden = v;
        else
            ok = loom_cli_parse_u64(cmd, flag, v, 0, UINT64_MAX, &o.seed);
        if (!ok) return LOOM_CLI_USAGE;
    }
    return loom_parity_run(&o);
}
