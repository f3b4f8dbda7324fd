/* cli/run_spec.c - speculative decoding on the command line (docs/adr/0038):
 * the flags shared by `loom run` and `loom serve`, loading the drafter, and
 * `loom run` with a drafter. cli/main.c sends `loom run` here when a spec
 * flag is present; a run without one stays in cli/model_cmds.c. This file
 * parses the run flags that apply to one speculative stream and refuses
 * the others (--parallel, --tp, --lora, --quant, the split flags) with a
 * one-line error. */
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

/* ---- loom run with a drafter ---- */

bool loom_cli_run_wants_spec(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (loom_cli_spec_flag(a)) return true;
        if (loom_cli_is_help(a)) return false; /* the usual usage text */
        /* every other run flag but --ignore-eos takes a value: skip it */
        if (a[0] == '-' && strcmp(a, "--ignore-eos") != 0) i++;
    }
    return false;
}

#define MAX_STOP 8

static bool print_token(void *ud, int32_t tok, const char *text, size_t len) {
    (void)ud;
    (void)tok;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

int loom_cli_run_spec(const char *backend, int argc, char **argv) {
    const char *model = NULL, *prompt = "Once upon a time", *stop[MAX_STOP];
    size_t n_stop = 0;
    int n_predict = 64;
    int64_t ctx = 0;
    bool ignore_eos = false;
    loom_dtype kv = LOOM_F16;
    loom_sampler_params sp = loom_sampler_default_params();
    loom_cli_spec so;
    loom_cli_spec_init(&so);
    static const char *const kv_names[] = {"f16", "q8_0", "f32", NULL};
    static const loom_dtype kv_types[] = {LOOM_F16, LOOM_Q8_0, LOOM_F32};
    static const char *const refused[] = {"--parallel", "--tp", "--lora", "--quant", NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--ignore-eos")) {
            ignore_eos = true;
            continue;
        }
        if (loom_cli_is_help(a)) { /* run's usage (cli/model_cmds.c), then ours */
            char *help[] = {argv[0], (char *)"--help", NULL};
            int rc = loom_cli_run(backend, 2, help);
            fputs(LOOM_CLI_SPEC_USAGE, stdout);
            return rc;
        }
        bool no = loom_cli_split_flag(a);
        for (int k = 0; refused[k] && !no; k++)
            no = !strcmp(a, refused[k]);
        if (no) {
            fprintf(stderr,
                    "loom run: %s cannot be combined with speculative decoding (--draft, --spec)\n",
                    a);
            return LOOM_CLI_USAGE;
        }
        static const char *const known[] = {"-m",
                                            "--model",
                                            "-p",
                                            "--prompt",
                                            "-n",
                                            "--n-predict",
                                            "--temp",
                                            "--top-k",
                                            "--top-p",
                                            "--min-p",
                                            "--seed",
                                            "--ctx",
                                            "--kv-type",
                                            "--stop",
                                            "--repeat-penalty",
                                            "--presence-penalty",
                                            "--frequency-penalty",
                                            NULL};
        bool ok = loom_cli_spec_flag(a);
        for (int k = 0; known[k] && !ok; k++)
            ok = !strcmp(a, known[k]);
        if (!ok) {
            loom_cli_unknown("run", a);
            fprintf(stderr, "loom run --help lists the options\n");
            return LOOM_CLI_USAGE;
        }
        if (!(v = loom_cli_value("run", argc, argv, &i))) return LOOM_CLI_USAGE;
        if (loom_cli_spec_flag(a))
            ok = loom_cli_spec_parse("run", a, v, &so);
        else if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt"))
            prompt = v;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict"))
            ok = loom_cli_parse_int("run", a, v, -1, 1000000, &n_predict);
        else if (!strcmp(a, "--temp"))
            ok = loom_cli_parse_f32("run", a, v, 0.0f, 100.0f, &sp.temperature);
        else if (!strcmp(a, "--top-k"))
            ok = loom_cli_parse_int("run", a, v, 0, 1000000, &sp.top_k);
        else if (!strcmp(a, "--top-p"))
            ok = loom_cli_parse_f32("run", a, v, 0.0f, 1.0f, &sp.top_p);
        else if (!strcmp(a, "--min-p"))
            ok = loom_cli_parse_f32("run", a, v, 0.0f, 1.0f, &sp.min_p);
        else if (!strcmp(a, "--repeat-penalty"))
            ok = loom_cli_parse_f32("run", a, v, 0.01f, 100.0f, &sp.repeat_penalty);
        else if (!strcmp(a, "--presence-penalty"))
            ok = loom_cli_parse_f32("run", a, v, -2.0f, 2.0f, &sp.presence_penalty);
        else if (!strcmp(a, "--frequency-penalty"))
            ok = loom_cli_parse_f32("run", a, v, -2.0f, 2.0f, &sp.frequency_penalty);
        else if (!strcmp(a, "--seed"))
            ok = loom_cli_parse_u64("run", a, v, 0, UINT64_MAX, &sp.seed);
        else if (!strcmp(a, "--ctx"))
            ok = loom_cli_parse_i64("run", a, v, 0, 1 << 24, &ctx);
        else if (!strcmp(a, "--kv-type")) {
            int k = 0;
            ok = loom_cli_parse_choice("run", a, v, kv_names, &k);
            kv = kv_types[k];
        } else if (n_stop < MAX_STOP) {
            stop[n_stop++] = v;
        } else {
            fprintf(stderr, "loom run: --stop: at most %d stop strings\n", MAX_STOP);
            ok = false;
        }
        if (!ok) return LOOM_CLI_USAGE;
    }
    if (!loom_cli_spec_check("run", &so)) return LOOM_CLI_USAGE;

    char path[1200];
    if (!model) {
        if (loom_cli_default_model(path, sizeof path) != 0) return 1;
        model = path;
    }
    loom_status st = loom_registry_init();
    if (st != LOOM_OK) {
        fprintf(stderr, "loom run: backend registry failed: %s\n", loom_status_str(st));
        return 1;
    }
    int rc = 1;
    loom_model *m = NULL, *draft = NULL;
    loom_spec *spec = NULL;
    char err[1024];
    loom_model_params mp = loom_model_default_params();
    mp.backend = backend;
    mp.n_ctx = ctx;
    mp.kv_dtype = kv;
    fprintf(stderr, "loading %s ...\n", model);
    if ((st = loom_model_load(model, &mp, &m, err, sizeof err)) != LOOM_OK) {
        fprintf(stderr, "loom run: %s\n", err);
        rc = st == LOOM_ERR_UNAVAILABLE ? 2 : 1;
        goto out;
    }
    fprintf(stderr, "model: %s | weights %s | ctx %lld\n", model, loom_model_weight_types(m),
            (long long)loom_model_n_ctx(m));
    if (loom_model_random_weights(m))
        fprintf(stderr, "NOTE: this model has RANDOM WEIGHTS (loom init-model): the text below is "
                        "meaningless\n");
    if ((rc = loom_cli_spec_open("run", backend, &so, m, &draft, &spec)) != 0) goto out;
    rc = 1;
    loom_generate_params gp = loom_generate_default_params();
    gp.sampling = sp;
    gp.n_predict = n_predict >= 0 ? n_predict : (int32_t)loom_model_n_ctx(m);
    gp.stop = stop;
    gp.n_stop = n_stop;
    gp.ignore_eos = ignore_eos;
    gp.on_token = print_token;
    gp.spec = spec;
    loom_generate_stats s;
    printf("%s", prompt);
    fflush(stdout);
    st = loom_generate(m, prompt, &gp, NULL, &s, err, sizeof err);
    printf("\n");
    if (st != LOOM_OK) {
        fprintf(stderr, "loom run: %s\n", err);
        goto out;
    }
    loom_spec_stats ss;
    loom_spec_get_stats(spec, &ss);
    fprintf(stderr,
            "\nbackend %s | prompt %lld tokens, %.1f tok/s | generation %lld tokens, %.1f tok/s "
            "| speculative: %lld steps, drafted %lld, accepted %lld (%.1f%%), %.2f tokens/step\n",
            loom_model_backend_name(m), (long long)s.n_prompt,
            s.t_prompt_s > 0 ? (double)s.n_prompt / s.t_prompt_s : 0.0, (long long)s.n_gen,
            s.t_gen_s > 0 ? (double)s.n_gen / s.t_gen_s : 0.0, (long long)ss.n_steps,
            (long long)s.n_drafted, (long long)s.n_accepted,
            s.n_drafted ? 100.0 * (double)s.n_accepted / (double)s.n_drafted : 0.0,
            ss.n_steps ? (double)(s.n_accepted + ss.n_steps) / (double)ss.n_steps : 0.0);
    rc = 0;
out:
    loom_spec_free(spec);
    loom_model_free(draft);
    loom_model_free(m);
    loom_registry_shutdown();
    return rc;
}
