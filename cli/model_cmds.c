/* cli/model_cmds.c - `loom init-model`, `loom export-gguf`, `loom info`,
 * `loom run`, `loom chat`. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "loom/generate.h"
#include "loom/gguf.h"
#include "loom/loom.h"
#include "loom/model.h"
#include "loom/safetensors.h"

#ifndef LOOM_DEFAULT_SOURCE_DIR
#define LOOM_DEFAULT_SOURCE_DIR "."
#endif

#define DEFAULT_PRESET "tiny-moe"
#define DEFAULT_SEED   1234u

static bool file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Directory of the running executable (the build tree), "." if unknown. */
static void exe_dir(char *buf, size_t n) {
    ssize_t k = readlink("/proc/self/exe", buf, n - 1);
    if (k <= 0) {
        snprintf(buf, n, ".");
        return;
    }
    buf[k] = 0;
    char *slash = strrchr(buf, '/');
    if (slash) *slash = 0;
}

/* The Llama-3 tokenizer.json shipped in model/data: $LOOM_TOKENIZER_JSON,
 * then relative to the build tree, then the source tree it was built from. */
static bool find_tokenizer_json(char *out, size_t n) {
    const char *env = getenv("LOOM_TOKENIZER_JSON");
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return file_exists(out);
    }
    char dir[512];
    exe_dir(dir, sizeof dir);
    const char *rel = "model/data/llama3-tokenizer/tokenizer.json";
    snprintf(out, n, "%s/../%s", dir, rel);
    if (file_exists(out)) return true;
    snprintf(out, n, "%s/%s", LOOM_DEFAULT_SOURCE_DIR, rel);
    return file_exists(out);
}

static bool parse_dtype(const char *s, loom_dtype *t) {
    static const struct {
        const char *n;
        loom_dtype t;
    } k[] = {{"f32", LOOM_F32},
             {"f16", LOOM_F16},
             {"bf16", LOOM_BF16},
             {"q8_0", LOOM_Q8_0},
             {"q4_0", LOOM_Q4_0}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (!strcmp(s, k[i].n)) {
            *t = k[i].t;
            return true;
        }
    return false;
}

/* Weight types of --quant / export --type: the GGUF ones plus nf4. */
static bool parse_quant(const char *s, loom_dtype *t) {
    if (!strcmp(s, "nf4") || !strcmp(s, "nf4_dq")) {
        /* both load as nf4_dq, QLoRA's double-quantized nf4 (loom_model_store_type) */
        *t = !strcmp(s, "nf4") ? LOOM_NF4 : LOOM_NF4_DQ;
        return true;
    }
    return parse_dtype(s, t);
}

/* Write a random-weight model of preset with the shipped tokenizer. */
static int make_model(const char *preset, loom_dtype wt, uint64_t seed, const char *tok_path,
                      const char *out) {
    loom_model_config c;
    char err[1024];
    if (loom_model_config_preset(preset, &c, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom init-model: %s\n", err);
        return 2;
    }
    c.rope.mode = LOOM_ROPE_NORMAL; /* GGUF convention (loom/model.h) */
    char tp[1024];
    if (tok_path)
        snprintf(tp, sizeof tp, "%s", tok_path);
    else if (!find_tokenizer_json(tp, sizeof tp)) {
        fprintf(stderr, "loom init-model: cannot find the Llama-3 tokenizer.json (set "
                        "LOOM_TOKENIZER_JSON or pass --tokenizer)\n");
        return 1;
    }
    loom_tokenizer *tok = NULL;
    if (loom_tokenizer_load_hf_json(tp, &tok, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom init-model: %s\n", err);
        return 1;
    }
    if ((int64_t)loom_tokenizer_vocab_size(tok) != c.vocab_size)
        c.vocab_size = (int64_t)loom_tokenizer_vocab_size(tok);
    c.bos_id = loom_tokenizer_bos(tok);
    c.eos_id = loom_tokenizer_eos(tok);
    c.eot_id = loom_tokenizer_eot(tok);
    loom_status st = loom_model_write_random_gguf(&c, wt, seed, tok, out, err, sizeof err);
    loom_tokenizer_free(tok);
    if (st != LOOM_OK) {
        fprintf(stderr, "loom init-model: %s\n", err);
        return 1;
    }
    return 0;
}

int loom_cli_init_model(int argc, char **argv) {
    const char *preset = DEFAULT_PRESET, *out = NULL, *tok = NULL;
    loom_dtype wt = LOOM_Q8_0;
    uint64_t seed = DEFAULT_SEED;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--preset") && v) {
            preset = v;
            i++;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) {
            out = v;
            i++;
        } else if (!strcmp(a, "--type") && v) {
            if (!parse_dtype(v, &wt)) {
                fprintf(stderr, "loom init-model: --type must be f32, f16, bf16, q8_0 or q4_0\n");
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--seed") && v) {
            seed = strtoull(v, NULL, 10);
            i++;
        } else if (!strcmp(a, "--tokenizer") && v) {
            tok = v;
            i++;
        } else {
            fprintf(stderr, "usage: loom init-model [--preset tiny-moe|tiny-dense|llama3-8b|seed] "
                            "-o FILE.gguf [--type q8_0] [--seed N] [--tokenizer tokenizer.json]\n");
            return 2;
        }
    }
    if (!out) {
        fprintf(stderr, "loom init-model: -o FILE.gguf is required\n");
        return 2;
    }
    int rc = make_model(preset, wt, seed, tok, out);
    if (rc == 0)
        printf("wrote %s: preset %s, %s weights, seed %llu (random weights)\n", out, preset,
               loom_dtype_name(wt), (unsigned long long)seed);
    return rc;
}

/* ---------------- export-gguf ---------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A bar on a terminal; a line per 10% otherwise (logs, CI). */
static void export_progress(void *ud, double frac) {
    int *last = ud;
    int pct = (int)(frac * 100.0 + 0.5);
    if (pct == *last) return;
    if (isatty(2)) {
        int w = 30, k = (int)(frac * w + 0.5);
        fprintf(stderr, "\rconverting [");
        for (int i = 0; i < w; i++)
            fputc(i < k ? '#' : '.', stderr);
        fprintf(stderr, "] %3d%%%s", pct, pct >= 100 ? "\n" : "");
    } else if (pct / 10 != *last / 10 || pct == 100) {
        fprintf(stderr, "converting: %d%%\n", pct);
    }
    *last = pct;
    fflush(stderr);
}

int loom_cli_export_gguf(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *type = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) {
            in = v;
            i++;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) {
            out = v;
            i++;
        } else if (!strcmp(a, "--type") && v) {
            type = v;
            i++;
        } else {
            fprintf(stderr,
                    "usage: loom export-gguf -m IN -o OUT.gguf --type f16|q8_0|q4_0|f32|bf16\n"
                    "  IN: a GGUF file or a Hugging Face checkpoint directory (config.json +\n"
                    "  model.safetensors or model.safetensors.index.json)\n");
            return 2;
        }
    }
    if (!in || !out || !type) {
        fprintf(stderr,
                "loom export-gguf: %s is required (loom export-gguf -m IN -o OUT.gguf "
                "--type f16|q8_0|q4_0|f32)\n",
                !in    ? "-m IN"
                : !out ? "-o OUT.gguf"
                       : "--type");
        return 2;
    }
    loom_export_params p = {0};
    if (!parse_quant(type, &p.type)) {
        fprintf(stderr, "loom export-gguf: unknown type '%s' (f16, q8_0, q4_0, f32 or bf16)\n",
                type);
        return 2;
    }
    int last = -1;
    p.progress = export_progress;
    p.progress_ud = &last;
    fprintf(stderr, "exporting %s (%s) to %s as %s\n", in,
            loom_model_path_is_hf(in) ? "Hugging Face checkpoint" : "GGUF", out,
            loom_dtype_name(p.type));
    char err[1024];
    loom_export_stats st;
    double t0 = now_s();
    loom_status s = loom_model_export_gguf(in, out, &p, &st, err, sizeof err);
    if (s != LOOM_OK) {
        if (last >= 0 && last < 100 && isatty(2)) fputc('\n', stderr);
        fprintf(stderr, "loom export-gguf: %s\n", err);
        return s == LOOM_ERR_UNSUPPORTED || s == LOOM_ERR_INVALID_ARG ? 2 : 1;
    }
    struct stat sb;
    long long fsize = stat(out, &sb) == 0 ? (long long)sb.st_size : -1;
    printf("wrote %s: GGUF v3, %s, %lld tensors (%lld converted), %.2f MiB, %.1f s\n", out,
           loom_dtype_name(p.type), (long long)st.n_tensors, (long long)st.n_converted,
           (double)fsize / (1 << 20), now_s() - t0);
    return 0;
}

/* The default model under the build tree, created on first use. */
static int default_model(char *path, size_t n) {
    char dir[1024];
    exe_dir(dir, sizeof dir);
    snprintf(path, n, "%s/models/%s.gguf", dir, DEFAULT_PRESET);
    if (file_exists(path)) return 0;
    char mdir[1100];
    snprintf(mdir, sizeof mdir, "%s/models", dir);
    if (mkdir(mdir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "loom: cannot create %s: %s\n", mdir, strerror(errno));
        return 1;
    }
    fprintf(stderr, "loom: creating the default model %s (preset %s, q8_0, random weights)...\n",
            path, DEFAULT_PRESET);
    return make_model(DEFAULT_PRESET, LOOM_Q8_0, DEFAULT_SEED, NULL, path);
}

int loom_cli_default_model(char *path, size_t n) { return default_model(path, n); }

/* ---------------- info ---------------- */

int loom_cli_info(const char *backend, int argc, char **argv) {
    const char *path = NULL;
    int64_t ctx = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ctx") && i + 1 < argc)
            ctx = strtoll(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "-m") && i + 1 < argc)
            path = argv[++i];
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else {
            fprintf(stderr, "usage: loom info [MODEL.gguf|HFDIR] [--ctx N]\n");
            return 2;
        }
    }
    char defpath[1200];
    if (!path) {
        if (default_model(defpath, sizeof defpath) != 0) return 1;
        path = defpath;
    }
    char err[1024];
    loom_gguf *g = NULL;
    loom_model_config c;
    size_t file_weights = 0;
    bool rw = false, has_tok = false, hf = loom_model_path_is_hf(path);
    const char *desc = NULL;
    uint64_t dlen = 0;
    if (hf) { /* a Hugging Face checkpoint: config.json and the safetensors sizes */
        loom_safetensors *st = NULL;
        if (loom_hf_config_load(path, &c, err, sizeof err) != LOOM_OK ||
            loom_safetensors_open(path, &st, err, sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom info: %s: %s\n", path, err);
            return 1;
        }
        for (int64_t i = 0; i < loom_safetensors_n_tensors(st); i++) {
            loom_st_tensor_info ti;
            if (loom_safetensors_tensor(st, i, &ti) == LOOM_OK) file_weights += ti.nbytes;
        }
        loom_safetensors_close(st);
        char tp[4096];
        snprintf(tp, sizeof tp, "%.4000s/tokenizer.json", path);
        has_tok = file_exists(tp);
    } else {
        if (loom_gguf_open(path, &g, err, sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom info: %s\n", err);
            return 1;
        }
        if (loom_model_config_from_gguf(g, &c, err, sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom info: %s\n", err);
            loom_gguf_close(g);
            return 1;
        }
        for (int64_t i = 0; i < loom_gguf_n_tensors(g); i++) {
            loom_gguf_tensor_info ti;
            if (loom_gguf_tensor(g, i, &ti) == LOOM_OK) file_weights += ti.nbytes;
        }
        loom_gguf_get_bool(g, "loom.random_weights", &rw);
        loom_gguf_get_str(g, "general.description", &desc, &dlen);
        has_tok = loom_gguf_find_kv(g, "tokenizer.ggml.tokens") >= 0;
    }
    size_t mem = 0;
    const char *dev = NULL;
    loom_backend *be = NULL;
    char berr[LOOM_ERROR_MAX];
    loom_device_info info;
    if (loom_registry_init() == LOOM_OK &&
        loom_registry_select(backend, &be, berr, sizeof berr) == LOOM_OK) {
        memset(&info, 0, sizeof info);
        be->iface->device_info(be, &info);
        mem = info.mem_total;
        dev = info.name;
    }
    if (ctx <= 0) ctx = c.max_ctx;
    printf("model             %s%s\n", path, rw ? "  (RANDOM WEIGHTS)" : "");
    if (desc) printf("description       %.*s\n", (int)(dlen > 300 ? 300 : dlen), desc);
    char buf[4096];
    loom_model_config_describe(&c, ctx, mem, buf, sizeof buf);
    fputs(buf, stdout);
    loom_model_size sz;
    loom_model_config_size(&c, &sz);
    printf("kv cache (q8_0)   %lld bytes/token\n",
           (long long)(sz.kv_bytes_per_token_f16 / 2 * 34 / 32));
    printf("file weights      %.2f MiB as stored\n", (double)file_weights / (1 << 20));
    printf("tokenizer         %s\n",
           has_tok ? (hf ? "tokenizer.json" : "embedded (tokenizer.ggml.*)") : "none");
    if (dev) printf("device            %s (%s)\n", be->iface->name, dev);
    loom_gguf_close(g);
    loom_registry_shutdown();
    return 0;
}

/* ---------------- run / chat ---------------- */

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

typedef struct run_opts {
    const char *model, *prompt, *system, *kv_type, *quant;
    int n_predict, n_parallel;
    int64_t ctx;
    loom_sampler_params sp;
    const char *stop[8];
    size_t n_stop;
    bool ignore_eos;
} run_opts;

static void run_usage(const char *cmd) {
    fprintf(stderr,
            "usage: loom %s [-m MODEL.gguf|HFDIR] [--quant f16|q8_0|q4_0|nf4|f32|bf16]\n"
            "       %s[-n N] [--temp T] [--top-k K] [--top-p P]\n"
            "       [--min-p P] [--repeat-penalty R] [--presence-penalty P]\n"
            "       [--frequency-penalty F] [--seed S] [--ctx N] [--kv-type f16|q8_0|f32]\n"
            "       [--stop STR]... [--ignore-eos] %s[--backend NAME]\n"
            "without -m: the default model (%s, random weights), created on first use;\n"
            "HFDIR: a Hugging Face checkpoint directory, converted while loading;\n"
            "--quant: weights quantized while loading (nf4: QLoRA's double-quantized nf4)\n",
            cmd, !strcmp(cmd, "run") ? "[-p PROMPT] " : "[--system TEXT] ",
            !strcmp(cmd, "run") ? "[--parallel N] " : "", DEFAULT_PRESET);
}

static int parse_run(const char *cmd, int argc, char **argv, run_opts *o) {
    memset(o, 0, sizeof *o);
    o->prompt = "Once upon a time";
    o->n_predict = -1;
    o->n_parallel = 1;
    o->sp = loom_sampler_default_params();
    o->kv_type = "f16";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (!strcmp(a, name) && v && (i++, true))
        if (OPT("-m") || OPT("--model"))
            o->model = v;
        else if (OPT("-p") || OPT("--prompt"))
            o->prompt = v;
        else if (OPT("--system"))
            o->system = v;
        else if (OPT("-n") || OPT("--n-predict"))
            o->n_predict = atoi(v);
        else if (OPT("--temp"))
            o->sp.temperature = strtof(v, NULL);
        else if (OPT("--top-k"))
            o->sp.top_k = atoi(v);
        else if (OPT("--top-p"))
            o->sp.top_p = strtof(v, NULL);
        else if (OPT("--min-p"))
            o->sp.min_p = strtof(v, NULL);
        else if (OPT("--repeat-penalty"))
            o->sp.repeat_penalty = strtof(v, NULL);
        else if (OPT("--presence-penalty"))
            o->sp.presence_penalty = strtof(v, NULL);
        else if (OPT("--frequency-penalty"))
            o->sp.frequency_penalty = strtof(v, NULL);
        else if (OPT("--seed"))
            o->sp.seed = strtoull(v, NULL, 10);
        else if (OPT("--ctx"))
            o->ctx = strtoll(v, NULL, 10);
        else if (OPT("--kv-type"))
            o->kv_type = v;
        else if (OPT("--quant"))
            o->quant = v;
        else if (OPT("--parallel"))
            o->n_parallel = atoi(v);
        else if (OPT("--stop")) {
            if (o->n_stop < 8) o->stop[o->n_stop++] = v;
        } else if (!strcmp(a, "--ignore-eos"))
            o->ignore_eos = true;
        else {
            run_usage(cmd);
            return 2;
        }
#undef OPT
    }
    if (o->n_parallel < 1 || o->n_parallel > 64) {
        fprintf(stderr, "loom %s: --parallel must be in 1..64\n", cmd);
        return 2;
    }
    return 0;
}

static int load(const char *cmd, const char *backend, const run_opts *o, int n_slots,
                loom_model **m) {
    char defpath[1200];
    const char *path = o->model;
    if (!path) {
        if (default_model(defpath, sizeof defpath) != 0) return 1;
        path = defpath;
    }
    loom_status st = loom_registry_init();
    if (st != LOOM_OK) {
        fprintf(stderr, "loom %s: backend registry failed: %s\n", cmd, loom_status_str(st));
        return 1;
    }
    loom_model_params mp = loom_model_default_params();
    mp.backend = backend;
    mp.n_ctx = o->ctx;
    mp.n_slots = n_slots;
    mp.progress = isatty(2) ? progress : NULL;
    if (!parse_dtype(o->kv_type, &mp.kv_dtype)) {
        fprintf(stderr, "loom %s: --kv-type must be f16, q8_0 or f32\n", cmd);
        return 2;
    }
    if (o->quant) {
        if (!parse_quant(o->quant, &mp.quant)) {
            fprintf(stderr,
                    "loom %s: --quant must be f16, q8_0, q4_0, nf4, f32 or bf16 (got '%s')\n", cmd,
                    o->quant);
            return 2;
        }
        mp.quantize = true;
    }
    char err[1024];
    bool hf = loom_model_path_is_hf(path);
    if (!isatty(2) || hf)
        fprintf(stderr, "%s %s%s%s ...\n", hf ? "converting Hugging Face checkpoint" : "loading",
                path, o->quant ? ", weights as " : "", o->quant ? o->quant : "");
    st = loom_model_load(path, &mp, m, err, sizeof err);
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
    if (loom_model_random_weights(*m))
        fprintf(stderr, "NOTE: this model has RANDOM WEIGHTS (loom init-model): the text below is "
                        "meaningless; pass -m MODEL.gguf for a real model\n");
    return 0;
}

static void final_line(const loom_model *m, const loom_generate_stats *s) {
    fprintf(stderr,
            "\nbackend %s | prompt %lld tokens, %.1f tok/s | generation %lld tokens, %.1f tok/s\n",
            loom_model_backend_name(m), (long long)s->n_prompt,
            s->t_prompt_s > 0 ? (double)s->n_prompt / s->t_prompt_s : 0.0, (long long)s->n_gen,
            s->t_gen_s > 0 ? (double)s->n_gen / s->t_gen_s : 0.0);
}

int loom_cli_run(const char *backend, int argc, char **argv) {
    run_opts o;
    int rc = parse_run("run", argc, argv, &o);
    if (rc) return rc;
    loom_model *m = NULL;
    if ((rc = load("run", backend, &o, o.n_parallel, &m)) != 0) {
        loom_registry_shutdown();
        return rc;
    }
    loom_generate_params gp = loom_generate_default_params();
    gp.sampling = o.sp;
    gp.n_predict = o.n_predict >= 0 ? o.n_predict : 64;
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
        final_line(m, &s);
    }
    loom_model_free(m);
    loom_registry_shutdown();
    return rc;
}

/* Interactive, multi-turn, with the Llama-3 chat template. Each turn
 * re-renders the whole conversation and prefills it (simple and correct;
 * reusing the cached prefix is future work). */
int loom_cli_chat(const char *backend, int argc, char **argv) {
    run_opts o;
    int rc = parse_run("chat", argc, argv, &o);
    if (rc) return rc;
    loom_model *m = NULL;
    if ((rc = load("chat", backend, &o, 1, &m)) != 0) {
        loom_registry_shutdown();
        return rc;
    }
    loom_chat_message msgs[256];
    char *owned[256];
    size_t n = 0, n_owned = 0;
    if (o.system) msgs[n++] = (loom_chat_message){"system", o.system};
    loom_generate_params gp = loom_generate_default_params();
    gp.sampling = o.sp;
    gp.n_predict = o.n_predict >= 0 ? o.n_predict : 256;
    gp.stop = o.stop;
    gp.n_stop = o.n_stop;
    gp.add_bos = false; /* the template starts with <|begin_of_text|> */
    gp.on_token = print_token;
    fprintf(stderr, "chat: type a message, an empty line or EOF ends\n");
    char line[4096];
    while (n + 2 < sizeof msgs / sizeof msgs[0] && n_owned + 2 < 256) {
        printf("> ");
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) break;
        line[strcspn(line, "\n")] = 0;
        if (!line[0]) break;
        char *u = malloc(strlen(line) + 1);
        if (!u) break;
        memcpy(u, line, strlen(line) + 1);
        owned[n_owned++] = u;
        msgs[n++] = (loom_chat_message){"user", u};
        char *prompt = NULL;
        if (loom_chat_format_llama3(msgs, n, true, &prompt) != LOOM_OK) break;
        char err[1024], *reply = NULL;
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
        final_line(m, &s);
    }
    for (size_t i = 0; i < n_owned; i++)
        free(owned[i]);
    loom_model_free(m);
    loom_registry_shutdown();
    return rc;
}
