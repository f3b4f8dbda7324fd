/* cli/spec_flags.c - speculative decoding on the command line (docs/adr/0038):
 * the flags shared by `loom run` (cli/run_cmd.c, which also refuses the run
 * flags one speculative stream cannot take) and `loom serve`, and loading
 * the drafter. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "loom/generate.h"
#include "loom/loom.h"
#include "loom/model.h"

void loom_cli_spec_init(loom_cli_spec *o) {
    memset(o, 0, sizeof *o);
    o->n_draft = 4;
    o->ngram = 3;
}

bool loom_cli_spec_flag(const char *a) {
    return !strcmp(a, "--draft") || !strcmp(a, "--spec") || !strcmp(a, "--spec-k") ||
           !strcmp(a, "--spec-ngram");
}

bool loom_cli_spec_parse(const char *cmd, const char *flag, const char *v, loom_cli_spec *o) {
    if (!strcmp(flag, "--draft")) {
        o->draft = v;
        return true;
    }
    if (!strcmp(flag, "--spec")) {
        static const char *const modes[] = {"lookup", NULL};
        int k;
        if (!loom_cli_parse_choice(cmd, flag, v, modes, &k)) return false;
        o->lookup = true;
        return true;
    }
    if (!strcmp(flag, "--spec-k")) {
        o->k_set = true;
        return loom_cli_parse_int(cmd, flag, v, 1, LOOM_SPEC_MAX_DRAFT, &o->n_draft);
    }
    o->ngram_set = true;
    return loom_cli_parse_int(cmd, flag, v, 1, LOOM_SPEC_MAX_NGRAM, &o->ngram);
}

bool loom_cli_spec_check(const char *cmd, const loom_cli_spec *o) {
    const char *bad = NULL;
    if (o->draft && o->lookup)
        bad = "give --draft MODEL or --spec lookup, not both";
    else if (o->k_set && !o->draft && !o->lookup)
        bad = "--spec-k needs --draft MODEL or --spec lookup";
    else if (o->ngram_set && !o->lookup)
        bad = "--spec-ngram is for --spec lookup";
    if (bad) fprintf(stderr, "loom %s: %s\n", cmd, bad);
    return !bad;
}

int loom_cli_spec_open(const char *cmd, const char *backend, const loom_cli_spec *o,
                       loom_model *target, loom_model **draft, loom_spec **out) {
    *draft = NULL;
    *out = NULL;
    if (!o->draft && !o->lookup) return 0;
    char err[1024];
    loom_spec_params sp = loom_spec_default_params();
    sp.n_draft = o->n_draft;
    sp.lookup = o->lookup;
    sp.ngram_max = o->ngram;
    if (o->draft) {
        /* One slot, the target's context: the draft follows one sequence. */
        loom_model_params mp = loom_model_default_params();
        mp.backend = backend;
        mp.n_ctx = loom_model_n_ctx(target);
        mp.n_slots = 1;
        fprintf(stderr, "loading draft model %s ...\n", o->draft);
        if (loom_model_load(o->draft, &mp, draft, err, sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom %s: --draft %s: %s\n", cmd, o->draft, err);
            return 1;
        }
        sp.draft = *draft;
    }
    if (loom_spec_new(target, &sp, out, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom %s: %s%s: %s\n", cmd, o->draft ? "--draft " : "--spec lookup",
                o->draft ? o->draft : "", err);
        loom_model_free(*draft);
        *draft = NULL;
        return LOOM_CLI_USAGE;
    }
    if (o->draft)
        fprintf(stderr, "speculative: draft model %s (weights %s), %d tokens per step\n", o->draft,
                loom_model_weight_types(*draft), o->n_draft);
    else
        fprintf(stderr, "speculative: prompt lookup, n-grams up to %d, %d tokens per step\n",
                o->ngram, o->n_draft);
    return 0;
}
