/* cli/run_cmd.c - `loom run` and `loom chat`: the one parser of their flags
 * (parse_run), loading the model, and generating. `loom run` with --draft or
 * --spec lookup decodes speculatively (docs/adr/0038, loom/generate.h): the
 * spec flags are parsed here with the helpers in cli/spec_flags.c, and the
 * run flags for several sequences or other weights (--parallel, --tp,
 * --lora, --quant, the split flags) are refused with them, one stream being
 * what a speculator follows. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/wtype.h"
#include "loom/generate.h"
#include "loom/loom.h"
#include "loom/model.h"

#define MAX_N_PREDICT 1000000

static void progress(void *ud, double frac) {
    (void)ud;
    static int last = -1;
    int pct = (int)(frac * 100.0 + 0.5);
    if (pct == last) return;
    last = pct;
    int w = 30, k = (int)(frac * w + 0.5);
    fprintf(stderr, "\rloading weights [");
    for (int i = 0; i < w; i++)
        fputc(i < k ? '#' : '.', stderr);
    fprintf(stderr, "] %3d%%%s", pct, pct >= 100 ? "\n" : "");
    fflush(stderr);
}

static bool print_token(void *ud, int32_t tok, const char *text, size_t len) {
    (void)ud;
    (void)tok;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

#define MAX_STOP 8

typedef struct run_opts {
    const char *model, *prompt, *system, *kv_type, *quant, *chat_template, *lora;
    bool prompt_set;
    int n_predict, n_parallel, tp;
    struct loom_comm *comm; /* --tp's ranks (cli/tp_cmd.c) */
    const char *comm_kind;  /* --comm: auto (NULL), mpi or nccl */
    char tp_backend[64];    /* --tp on a GPU backend: this rank's device (cli/tp_cmd.c) */
    int64_t ctx;
    loom_sampler_params sp;
    loom_dtype kv_dtype, quant_dtype;
    const char *stop[MAX_STOP];
    size_t n_stop;
    bool ignore_eos;
    loom_cli_split split;
    loom_cli_spec spec;  /* run: --draft, --spec, --spec-k, --spec-ngram */
    bool spec_set;       /* run: one of them was given */
    const char *no_spec; /* run: the first flag given that speculation refuses */
} run_opts;

static void run_usage_cmd(FILE *f, const char *cmd) {
    bool run = !strcmp(cmd, "run");
    fprintf(f,
            "usage: loom %s [-m MODEL.gguf|HFDIR] [--quant TYPE] %s[-n N]\n"
            "       [--temp T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R]\n"
            "       [--presence-penalty P] [--frequency-penalty F] [--seed S] [--ctx N]\n"
            "       [--kv-type f16|q8_0|f32] [--stop STR]... [--ignore-eos] %s[--backend NAME]\n"
            "%s"
            "       [--gpu-layers N|auto] [--devices LIST] [--tensor-split LIST] [--split MODE]\n"
            "without -m: the default model (SmolLM2-135M-Instruct from the model cache, else\n"
            "%s with random weights, created on first use);\n"
            "HFDIR: a Hugging Face checkpoint directory, converted while loading\n"
            "  --quant TYPE          weights quantized while loading: f32, f16, bf16, q8_0,\n"
            "                        q4_0, q4_1, q5_0, q5_1, nf4 or nf4_dq (both: QLoRA's\n"
            "                        double-quantized nf4)\n"
            "%s"
            "  -n, --n-predict N     tokens to generate, -1..%d; -1: until EOS or the\n"
            "                        context is full (default %d)\n"
            "  --temp T              temperature, 0..100; 0: greedy (default 0.8)\n"
            "  --top-k K             0..%d; 0: off (default 40)\n"
            "  --top-p P             0..1; 1: off (default 0.95)\n"
            "  --min-p P             0..1; 0: off (default 0.05)\n"
            "  --repeat-penalty R    0.01..100; 1: off (default 1)\n"
            "  --presence-penalty P  -2..2; 0: off (default 0)\n"
            "  --frequency-penalty F -2..2; 0: off (default 0)\n"
            "  --seed S              sampling seed, 0..2^64-1, decimal or 0x hex (default 42)\n"
            "  --ctx N               context per sequence, 0..%d; 0: min(model max, 4096)\n"
            "  --kv-type TYPE        KV-cache type: f16 (default), q8_0 or f32\n"
            "  --stop STR            stop string, at most %d\n"
            "  --ignore-eos          keep generating past EOS\n"
            "  --lora DIR            apply a PEFT LoRA adapter (adapter_config.json +\n"
            "                        adapter_model.safetensors) without merging it\n"
            "%s"
            "%s",
            cmd, run ? "[-p PROMPT] " : "[--system TEXT] [-p MESSAGE] ",
            run ? "[--parallel N] " : "", run ? "" : "       [--chat-template NAME]\n",
            LOOM_CLI_DEFAULT_PRESET,
            run ? "  -p, --prompt PROMPT   the prompt (default \"Once upon a time\")\n"
                : "  --system TEXT         the system message\n"
                  "  -p, --prompt MESSAGE  answer this one user message and exit\n"
                  "  --chat-template NAME  llama3, chatml, smollm2, mistral, llama2 or zephyr\n"
                  "                        (default: the model's own, by fingerprint)\n",
            MAX_N_PREDICT, run ? 64 : 256, MAX_N_PREDICT, LOOM_CLI_MAX_CTX, MAX_STOP,
            run ? "  --parallel N          sequences generated together, 1..64 (default 1)\n"
                  "  --tp N                tensor parallelism over N ranks, 1..64: start it\n"
                  "                        with mpirun, N processes (each computes its heads\n"
                  "                        and FFN columns; rank 0 prints)\n"
                  "  --comm KIND           --tp's all-reduces: auto (default: nccl on cuda,\n"
                  "                        each rank on its own GPU; mpi otherwise), mpi, nccl\n"
                : "",
            LOOM_CLI_SPLIT_USAGE);
    if (run) fputs(LOOM_CLI_SPEC_USAGE, f);
}
static void run_usage(FILE *f) {
    run_usage_cmd(f, "run");
}
static void chat_usage(FILE *f) {
    run_usage_cmd(f, "chat");
}

/* The run flags one speculative stream cannot take: several sequences
 * (--parallel), several ranks (--tp), other weights than the draft was
 * checked against (--lora, --quant), several devices (the split flags). */
static bool refused_with_spec(const char *a) {
    return !strcmp(a, "--parallel") || !strcmp(a, "--tp") || !strcmp(a, "--lora") ||
           !strcmp(a, "--quant") || loom_cli_split_flag(a);
}

/* 0, -1 after --help, or an exit code (message printed). */
static int parse_run(const char *cmd, int argc, char **argv, run_opts *o) {
    const bool run = !strcmp(cmd, "run");
    void (*usage)(FILE *) = run ? run_usage : chat_usage;
    memset(o, 0, sizeof *o);
    o->prompt = "Once upon a time";
    o->n_predict = run ? 64 : 256;
    o->n_parallel = 1;
    o->sp = loom_sampler_default_params();
    o->kv_type = "f16";
    o->kv_dtype = LOOM_F16;
    loom_cli_split_init(&o->split);
    loom_cli_spec_init(&o->spec);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        loom_sampler_params *sp = &o->sp;
        if (loom_cli_is_help(a)) {
            usage(stdout);
            return -1;
        }
        if (!strcmp(a, "--ignore-eos")) {
            o->ignore_eos = true;
            continue;
        }
        if (run) { /* refused as soon as both a spec flag and one of those are seen */
            if (loom_cli_spec_flag(a))
                o->spec_set = true;
            else if (refused_with_spec(a) && !o->no_spec)
                o->no_spec = a;
            if (o->spec_set && o->no_spec) {
                fprintf(stderr,
                        "loom run: %s cannot be combined with speculative decoding (--draft, "
                        "--spec)\n",
                        o->no_spec);
                return LOOM_CLI_USAGE;
            }
        }
        static const char *const valued[] = {"-m",
                                             "--model",
                                             "-n",
                                             "--n-predict",
                                             "--temp",
                                             "--top-k",
                                             "--top-p",
                                             "--min-p",
                                             "--repeat-penalty",
                                             "--presence-penalty",
                                             "--seed",
                                             "--frequency-penalty",
                                             "--ctx",
                                             "--kv-type",
                                             "--quant",
                                             "--stop",
                                             "--lora",
                                             NULL};
        bool known = !strcmp(a, "-p") || !strcmp(a, "--prompt") ||
                     (run && (!strcmp(a, "--parallel") || !strcmp(a, "--tp") ||
                              !strcmp(a, "--comm"))) ||
                     (!run && (!strcmp(a, "--system") || !strcmp(a, "--chat-template"))) ||
                     loom_cli_split_flag(a) || (run && loom_cli_spec_flag(a));
        for (int k = 0; valued[k] && !known; k++)
            known = !strcmp(a, valued[k]);
        if (!known) {
            loom_cli_unknown(cmd, a);
            usage(stderr);
            return LOOM_CLI_USAGE;
        }
        if (!(v = loom_cli_value(cmd, argc, argv, &i))) return LOOM_CLI_USAGE;
        bool ok = true;
        if (loom_cli_split_flag(a))
            ok = loom_cli_split_parse(cmd, a, v, &o->split);
        else if (loom_cli_spec_flag(a))
            ok = loom_cli_spec_parse(cmd, a, v, &o->spec);
        else if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            o->model = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            o->prompt = v;
            o->prompt_set = true;
        } else if (!strcmp(a, "--chat-template")) {
            const char *names[16];
            int k = 0;
            while (k < 15 && (names[k] = loom_chat_template_names((size_t)k)))
                k++;
            names[k] = NULL;
            ok = loom_cli_parse_choice(cmd, a, v, names, &k);
            o->chat_template = v;
        } else if (!strcmp(a, "--system"))
            o->system = v;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict"))
            ok = loom_cli_parse_int(cmd, a, v, -1, MAX_N_PREDICT, &o->n_predict);
        else if (!strcmp(a, "--temp"))
            ok = loom_cli_parse_f32(cmd, a, v, 0.0f, 100.0f, &sp->temperature);
        else if (!strcmp(a, "--top-k"))
            ok = loom_cli_parse_int(cmd, a, v, 0, 1000000, &sp->top_k);
        else if (!strcmp(a, "--top-p"))
            ok = loom_cli_parse_f32(cmd, a, v, 0.0f, 1.0f, &sp->top_p);
        else if (!strcmp(a, "--min-p"))
            ok = loom_cli_parse_f32(cmd, a, v, 0.0f, 1.0f, &sp->min_p);
        else if (!strcmp(a, "--repeat-penalty"))
            ok = loom_cli_parse_f32(cmd, a, v, 0.01f, 100.0f, &sp->repeat_penalty);
        else if (!strcmp(a, "--presence-penalty"))
            ok = loom_cli_parse_f32(cmd, a, v, -2.0f, 2.0f, &sp->presence_penalty);
        else if (!strcmp(a, "--frequency-penalty"))
            ok = loom_cli_parse_f32(cmd, a, v, -2.0f, 2.0f, &sp->frequency_penalty);
        else if (!strcmp(a, "--seed"))
            ok = loom_cli_parse_u64(cmd, a, v, 0, UINT64_MAX, &sp->seed);
        else if (!strcmp(a, "--ctx"))
            ok = loom_cli_parse_i64(cmd, a, v, 0, LOOM_CLI_MAX_CTX, &o->ctx);
        else if (!strcmp(a, "--parallel"))
            ok = loom_cli_parse_int(cmd, a, v, 1, 64, &o->n_parallel);
        else if (!strcmp(a, "--tp"))
            ok = loom_cli_parse_int(cmd, a, v, 1, 64, &o->tp);
        else if (!strcmp(a, "--comm")) {
            static const char *const kinds[] = {"auto", "mpi", "nccl", NULL};
            int k;
            ok = loom_cli_parse_choice(cmd, a, v, kinds, &k);
            o->comm_kind = v;
        }
        else if (!strcmp(a, "--kv-type")) {
            ok = loom_cli_parse_kv_type(cmd, a, v, &o->kv_dtype);
            o->kv_type = v;
        } else if (!strcmp(a, "--quant")) {
            loom_cli_wtype wt;
            ok = loom_cli_parse_wtype(cmd, a, v, LOOM_CLI_WT_LOAD, &wt);
            o->quant_dtype = wt.type;
            o->quant = v;
        } else if (!strcmp(a, "--lora")) {
            o->lora = v;
        } else if (o->n_stop < MAX_STOP) {
            o->stop[o->n_stop++] = v;
        } else {
            fprintf(stderr, "loom %s: --stop: at most %d stop strings\n", cmd, MAX_STOP);
            ok = false;
        }
        if (!ok) return LOOM_CLI_USAGE;
    }
    if (!loom_cli_spec_check(cmd, &o->spec)) return LOOM_CLI_USAGE;
    if (o->comm_kind && o->tp <= 1) {
        fprintf(stderr, "loom %s: --comm needs --tp N with N > 1\n", cmd);
        return LOOM_CLI_USAGE;
    }
    return loom_cli_split_check(cmd, &o->split) ? 0 : LOOM_CLI_USAGE;
}

static int load(const char *cmd, const char *backend, const run_opts *o, int n_slots,
                loom_model **m) {
    char defpath[1200];
    const char *path = o->model;
    loom_status st = loom_registry_init();
    if (st != LOOM_OK) {
        fprintf(stderr, "loom %s: backend registry failed: %s\n", cmd, loom_status_str(st));
        return 1;
    }
    /* A backend that cannot be selected (unknown, unavailable) fails before
     * the default model is created or any file is read. */
    loom_backend *be = NULL;
    char berr[LOOM_ERROR_MAX] = "";
    if ((st = loom_registry_select(backend, &be, berr, sizeof berr)) != LOOM_OK) {
        fprintf(stderr, "loom %s: %s\n", cmd, berr[0] ? berr : loom_status_str(st));
        return LOOM_CLI_USAGE;
    }
    if (!path) {
        if (loom_cli_default_model(defpath, sizeof defpath) != 0) return 1;
        path = defpath;
    }
    loom_model_params mp = loom_model_default_params();
    mp.backend = backend;
    mp.n_ctx = o->ctx;
    mp.n_slots = n_slots;
    mp.progress = isatty(2) ? progress : NULL;
    mp.kv_dtype = o->kv_dtype;
    mp.tp = o->tp;
    mp.comm = o->comm;
    loom_cli_split_apply(&o->split, &mp);
    if (o->quant) {
        mp.quant = o->quant_dtype;
        mp.quantize = true;
    }
    char err[1024];
    bool hf = loom_model_path_is_hf(path);
    if (!isatty(2) || hf)
        fprintf(stderr, "%s %s%s%s ...\n", hf ? "converting Hugging Face checkpoint" : "loading",
                path, o->quant ? ", weights as " : "", o->quant ? o->quant : "");
    st = loom_model_load(path, &mp, m, err, sizeof err);
    if (st != LOOM_OK && !o->model && strstr(path, LOOM_CLI_DEFAULT_REAL_MODEL)) {
        /* the default model is there but this build cannot load it (a type
         * it lacks, a damaged file): say so, then the labelled fallback */
        fprintf(stderr,
                "loom %s: the default model failed to load: %s\nloom %s: using the "
                "RANDOM-WEIGHT model instead\n",
                cmd, err, cmd);
        if (loom_cli_random_default_model(defpath, sizeof defpath) != 0) return 1;
        path = defpath;
        st = loom_model_load(path, &mp, m, err, sizeof err);
    }
    if (st != LOOM_OK) {
        fprintf(stderr, "loom %s: %s\n", cmd, err);
        return st == LOOM_ERR_UNAVAILABLE ? 2 : 1;
    }
    const loom_model_config *c = loom_model_config_of(*m);
    loom_model_size sz;
    loom_model_config_size(c, &sz);
    fprintf(stderr,
            "model: %s | %.1fM params (%.1fM active), %lld layers, %lld experts | weights %s, "
            "%.1f MiB | kv %s on %s, ctx %lld\n",
            path, sz.params_total / 1e6, sz.params_active / 1e6, (long long)c->n_layers,
            (long long)c->n_experts, loom_model_weight_types(*m),
            (double)loom_model_weight_bytes(*m) / (1 << 20), o->kv_type,
            loom_model_kv_backend_name(*m), (long long)loom_model_n_ctx(*m));
    loom_cli_print_plan(*m);
    if (loom_model_random_weights(*m))
        fprintf(stderr, "NOTE: this model has RANDOM WEIGHTS (loom init-model): the text below is "
                        "meaningless; pass -m MODEL.gguf for a real model, or run\n"
                        "scripts/fetch-default-model.sh for the default one\n");
    return 0;
}

/* spec: the speculator of the run, else NULL (its counts end the line). */
static void final_line(const loom_model *m, const loom_generate_stats *s, const loom_spec *spec) {
    fprintf(stderr,
            "\nbackend %s | prompt %lld tokens, %.1f tok/s | generation %lld tokens, %.1f tok/s",
            loom_model_backend_name(m), (long long)s->n_prompt,
            s->t_prompt_s > 0 ? (double)s->n_prompt / s->t_prompt_s : 0.0, (long long)s->n_gen,
            s->t_gen_s > 0 ? (double)s->n_gen / s->t_gen_s : 0.0);
    if (spec) {
        loom_spec_stats ss;
        loom_spec_get_stats(spec, &ss);
        fprintf(stderr,
                " | speculative: %lld steps, drafted %lld, accepted %lld (%.1f%%), %.2f "
                "tokens/step",
                (long long)ss.n_steps, (long long)s->n_drafted, (long long)s->n_accepted,
                s->n_drafted ? 100.0 * (double)s->n_accepted / (double)s->n_drafted : 0.0,
                ss.n_steps ? (double)(s->n_accepted + ss.n_steps) / (double)ss.n_steps : 0.0);
    }
    fputc('\n', stderr);
    loom_cli_print_split_cost(m, s->t_prompt_s + s->t_gen_s);
}

/* -n -1: until EOS or the context is full; generation stops at the end of the
 * context anyway, so the context length is the bound. */
static int32_t n_predict(const loom_model *m, int n) {
    int64_t ctx = loom_model_n_ctx(m);
    return n >= 0 ? n : (int32_t)(ctx < INT32_MAX ? ctx : INT32_MAX);
}

int loom_cli_run(const char *backend, int argc, char **argv) {
    run_opts o;
    int rc = parse_run("run", argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc; /* < 0: --help */
    if ((rc = loom_cli_tp_open("run", o.tp, o.comm_kind, backend, &o.comm, o.tp_backend,
                               sizeof o.tp_backend)) != 0)
        return rc;
    if (o.tp_backend[0]) backend = o.tp_backend;
    loom_model *m = NULL;
    if ((rc = load("run", backend, &o, o.n_parallel, &m)) != 0) {
        loom_registry_shutdown();
        loom_cli_tp_close(o.comm);
        return rc;
    }
    loom_cli_lora *lora = NULL;
    loom_model *draft = NULL; /* --draft's model, freed after spec */
    loom_spec *spec = NULL;   /* --draft or --spec lookup (parse_run: then one stream) */
    if ((o.lora && (rc = loom_cli_lora_attach("run", m, o.lora, &lora)) != 0) ||
        (rc = loom_cli_spec_open("run", backend, &o.spec, m, &draft, &spec)) != 0) {
        loom_model_free(m);
        loom_cli_lora_free(lora);
        loom_registry_shutdown();
        loom_cli_tp_close(o.comm);
        return rc;
    }
    loom_generate_params gp = loom_generate_default_params();
    gp.spec = spec;
    gp.sampling = o.sp;
    gp.n_predict = n_predict(m, o.n_predict);
    gp.stop = o.stop;
    gp.n_stop = o.n_stop;
    gp.ignore_eos = o.ignore_eos;
    char err[1024];
    loom_generate_stats s;
    loom_status st;
    if (o.n_parallel == 1) {
        gp.on_token = print_token;
        printf("%s", o.prompt);
        fflush(stdout);
        st = loom_generate(m, o.prompt, &gp, NULL, &s, err, sizeof err);
        printf("\n");
    } else {
        const char **prompts = malloc((size_t)o.n_parallel * sizeof *prompts);
        char **texts = calloc((size_t)o.n_parallel, sizeof *texts);
        st = prompts && texts ? LOOM_OK : LOOM_ERR_OOM;
        for (int i = 0; prompts && i < o.n_parallel; i++)
            prompts[i] = o.prompt;
        if (st == LOOM_OK)
            st = loom_generate_batch(m, prompts, (size_t)o.n_parallel, &gp, texts, &s, err,
                                     sizeof err);
        for (int i = 0; st == LOOM_OK && i < o.n_parallel; i++)
            printf("[%d] %s%s\n", i, o.prompt, texts[i]);
        for (int i = 0; texts && i < o.n_parallel; i++)
            free(texts[i]);
        free(texts);
        free(prompts);
        if (st == LOOM_ERR_OOM && !err[0]) snprintf(err, sizeof err, "out of memory");
    }
    if (st != LOOM_OK) {
        fprintf(stderr, "loom run: %s\n", err);
        rc = 1;
    } else {
        final_line(m, &s, spec);
    }
    loom_spec_free(spec);
    loom_model_free(draft);
    loom_model_free(m);
    loom_cli_lora_free(lora);
    loom_registry_shutdown();
    loom_cli_tp_close(o.comm);
    return rc;
}

/* Interactive, multi-turn, with the model's chat template (chosen by
 * fingerprint, or --chat-template). Each turn re-renders the whole
 * conversation and prefills it (simple and correct; reusing the cached prefix
 * is future work). With -p: that one message, then exit. */
int loom_cli_chat(const char *backend, int argc, char **argv) {
    run_opts o;
    int rc = parse_run("chat", argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc; /* < 0: --help */
    loom_model *m = NULL;
    if ((rc = load("chat", backend, &o, 1, &m)) != 0) {
        loom_registry_shutdown();
        return rc;
    }
    loom_cli_lora *lora = NULL;
    if (o.lora && (rc = loom_cli_lora_attach("chat", m, o.lora, &lora)) != 0) {
        loom_model_free(m);
        loom_registry_shutdown();
        return rc;
    }
    loom_chat_message msgs[256];
    char *owned[256];
    size_t n = 0, n_owned = 0;
    if (o.system) msgs[n++] = (loom_chat_message){"system", o.system};
    loom_generate_params gp = loom_generate_default_params();
    gp.sampling = o.sp;
    gp.n_predict = n_predict(m, o.n_predict);
    gp.ignore_eos = o.ignore_eos;
    gp.stop = o.stop;
    gp.n_stop = o.n_stop;
    gp.add_bos = false; /* templates that want BOS write it themselves */
    gp.on_token = print_token;
    /* The template is checked before the first message is read. */
    char err[1024], *probe = NULL;
    const loom_tokenizer *tok = loom_model_tokenizer(m);
    loom_status tst = tok ? loom_tokenizer_chat_render(tok, o.chat_template, msgs, n, true, &probe,
                                                       err, sizeof err)
                          : LOOM_ERR_UNSUPPORTED;
    free(probe);
    if (tst != LOOM_OK) {
        fprintf(stderr, "loom chat: %s\n", tok ? err : "the model has no tokenizer");
        loom_model_free(m);
        loom_registry_shutdown();
        return 1;
    }
    if (!o.prompt_set) fprintf(stderr, "chat: type a message, an empty line or EOF ends\n");
    char line[4096];
    bool once = o.prompt_set;
    while (n + 2 < sizeof msgs / sizeof msgs[0] && n_owned + 2 < 256) {
        if (once) {
            if (n_owned) break; /* -p: one turn */
            snprintf(line, sizeof line, "%s", o.prompt);
            printf("> %s\n", line);
        } else {
            printf("> ");
            fflush(stdout);
            if (!fgets(line, sizeof line, stdin)) break;
            line[strcspn(line, "\n")] = 0;
            if (!line[0]) break;
        }
        char *u = malloc(strlen(line) + 1);
        if (!u) break;
        memcpy(u, line, strlen(line) + 1);
        owned[n_owned++] = u;
        msgs[n++] = (loom_chat_message){"user", u};
        char *prompt = NULL, *reply = NULL;
        if (loom_tokenizer_chat_render(tok, o.chat_template, msgs, n, true, &prompt, err,
                                       sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom chat: %s\n", err);
            rc = 1;
            break;
        }
        loom_generate_stats s;
        loom_status st = loom_generate(m, prompt, &gp, &reply, &s, err, sizeof err);
        free(prompt);
        if (st != LOOM_OK) {
            fprintf(stderr, "\nloom chat: %s\n", err);
            rc = 1;
            break;
        }
        owned[n_owned++] = reply;
        msgs[n++] = (loom_chat_message){"assistant", reply};
        final_line(m, &s, NULL);
    }
    for (size_t i = 0; i < n_owned; i++)
        free(owned[i]);
    loom_model_free(m);
    loom_cli_lora_free(lora);
    loom_registry_shutdown();
    return rc;
}
