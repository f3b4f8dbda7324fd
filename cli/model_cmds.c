/* cli/model_cmds.c - `loom init-model`, `loom export-gguf`, `loom info`,
 * `loom run`, `loom chat`. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/wtype.h"
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

/* Values of the numeric flags: the ranges the usage texts and README state. */
#define MAX_CTX       16777216 /* --ctx: 2^24 positions, far above any preset's max_ctx */
#define MAX_N_PREDICT 1000000

/* A weight type of one use (cli/wtype.h) as a plain dtype. */
static bool parse_type(const char *cmd, const char *flag, const char *v, unsigned use,
                       loom_dtype *out) {
    loom_cli_wtype wt;
    if (!loom_cli_parse_wtype(cmd, flag, v, use, &wt)) return false;
    *out = wt.type;
    return true;
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

static void init_usage(FILE *f) {
    fprintf(f,
            "usage: loom init-model [--preset NAME] -o FILE.gguf [--type TYPE] [--seed N]\n"
            "                       [--tokenizer tokenizer.json]\n"
            "  --preset NAME  tiny-moe (default), tiny-dense, llama3-8b, seed, small-110m,\n"
            "                 small-110m-moe\n"
            "  --type TYPE    weight type: f32, f16, bf16, q8_0 (default), q4_0, q4_1, q5_0\n"
            "                 or q5_1\n"
            "  --seed N       weight seed, 0..2^64-1 (decimal or 0x hex; default %u)\n"
            "The file is written atomically: a failed or interrupted write leaves any\n"
            "existing FILE.gguf as it was.\n",
            DEFAULT_SEED);
}

int loom_cli_init_model(int argc, char **argv) {
    const char *preset = DEFAULT_PRESET, *out = NULL, *tok = NULL;
    loom_dtype wt = LOOM_Q8_0;
    uint64_t seed = DEFAULT_SEED;
    const char *cmd = "init-model";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (loom_cli_is_help(a)) {
            init_usage(stdout);
            return 0;
        }
        bool known = !strcmp(a, "--preset") || !strcmp(a, "-o") || !strcmp(a, "--output") ||
                     !strcmp(a, "--type") || !strcmp(a, "--seed") || !strcmp(a, "--tokenizer");
        if (!known) {
            loom_cli_unknown(cmd, a);
            init_usage(stderr);
            return LOOM_CLI_USAGE;
        }
        if (!(v = loom_cli_value(cmd, argc, argv, &i))) return LOOM_CLI_USAGE;
        if (!strcmp(a, "--preset")) {
            loom_model_config c;
            char err[512];
            if (loom_model_config_preset(v, &c, err, sizeof err) != LOOM_OK) {
                fprintf(stderr, "loom %s: --preset: %s\n", cmd, err);
                return LOOM_CLI_USAGE;
            }
            preset = v;
        } else if (!strcmp(a, "--type")) {
            if (!parse_type(cmd, a, v, LOOM_CLI_WT_RANDOM, &wt)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--seed")) {
            if (!loom_cli_parse_u64(cmd, a, v, 0, UINT64_MAX, &seed)) return LOOM_CLI_USAGE;
        } else if (!strcmp(a, "--tokenizer")) {
            tok = v;
        } else {
            out = v;
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

static void export_usage(FILE *f) {
    fprintf(f, "usage: loom export-gguf -m IN -o OUT.gguf\n"
               "         --type f16|q8_0|q4_0|q4_1|q5_0|q5_1|f32|bf16\n"
               "              |q2_K|q3_K|q4_K|q5_K|q6_K|q3_K_M|q4_K_M|q5_K_M\n"
               "  q2_K..q6_K: every matrix at that k-quant (llama-quantize's pure mode); rows\n"
               "  that are not a multiple of 256 values fall back as llama.cpp does (q4_0,\n"
               "  q5_0, q5_1, q8_0); norms f32\n"
               "  q3_K_M/q4_K_M/q5_K_M: llama.cpp's mixes, each tensor's type by its rules\n"
               "  (output head q6_K, more bits for attn_v/ffn_down in some layers, ...)\n"
               "  IN: a GGUF file or a Hugging Face checkpoint directory (config.json +\n"
               "  model.safetensors or model.safetensors.index.json)\n"
               "OUT.gguf is written atomically: a failed or interrupted export leaves any\n"
               "existing OUT.gguf as it was.\n");
}

int loom_cli_export_gguf(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *cmd = "export-gguf", *type_name = NULL;
    loom_export_params p = {0};
    bool have_type = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (loom_cli_is_help(a)) {
            export_usage(stdout);
            return 0;
        }
        bool known = !strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "-o") ||
                     !strcmp(a, "--output") || !strcmp(a, "--type");
        if (!known) {
            loom_cli_unknown(cmd, a);
            export_usage(stderr);
            return LOOM_CLI_USAGE;
        }
        if (!(v = loom_cli_value(cmd, argc, argv, &i))) return LOOM_CLI_USAGE;
        if (!strcmp(a, "--type")) {
            if (!strcmp(v, "nf4") || !strcmp(v, "nf4_dq")) {
                fprintf(stderr,
                        "loom %s: --type: '%s' is not a GGUF tensor type (GGUF has no "
                        "NormalFloat-4; use q4_0, or load with loom run --quant nf4)\n",
                        cmd, v);
                return LOOM_CLI_USAGE;
            }
            loom_cli_wtype wt;
            if (!loom_cli_parse_wtype(cmd, a, v, LOOM_CLI_WT_EXPORT, &wt)) return LOOM_CLI_USAGE;
            p.type = wt.type;
            p.mix = wt.mix;
            type_name = v;
            have_type = true;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            in = v;
        } else {
            out = v;
        }
    }
    if (!in || !out || !have_type) {
        fprintf(stderr, "loom export-gguf: %s is required\n",
                !in    ? "-m IN"
                : !out ? "-o OUT.gguf"
                       : "--type");
        export_usage(stderr);
        return LOOM_CLI_USAGE;
    }
    int last = -1;
    p.progress = export_progress;
    p.progress_ud = &last;
    fprintf(stderr, "exporting %s (%s) to %s as %s\n", in,
            loom_model_path_is_hf(in) ? "Hugging Face checkpoint" : "GGUF", out, type_name);
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
           type_name, (long long)st.n_tensors, (long long)st.n_converted, (double)fsize / (1 << 20),
           now_s() - t0);
    return 0;
}

/* The one rule for the model used without -m (run, chat, info, serve, bench
 * model): SmolLM2-135M-Instruct from the model cache, where
 * scripts/fetch-default-model.sh (run by install-deps.sh, so by `make run`)
 * puts it (loom_model_cache_dir).
 * Without it, the random-weight tiny-moe model under the build tree, created
 * on first use, with a line saying why (docs/adr/0025). */
#define DEFAULT_REAL_MODEL "SmolLM2-135M-Instruct.Q4_1.gguf"

/* The random-weight fallback under the build tree, created on first use. */
static int random_default_model(char *path, size_t n) {
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

static int default_model(char *path, size_t n) {
    char cache[1024];
    loom_model_cache_dir(cache, sizeof cache);
    snprintf(path, n, "%s/%s", cache, DEFAULT_REAL_MODEL);
    if (file_exists(path)) return 0;
    fprintf(stderr,
            "loom: the default model %s is not in %s (scripts/fetch-default-model.sh fetches "
            "it); using the RANDOM-WEIGHT model instead\n",
            DEFAULT_REAL_MODEL, cache);
    return random_default_model(path, n);
}

int loom_cli_default_model(char *path, size_t n) {
    return default_model(path, n);
}

/* ---------------- info ---------------- */

static void info_usage(FILE *f) {
    fprintf(f,
            "usage: loom info [MODEL.gguf|HFDIR | -m MODEL] [--ctx N] [--backend NAME]\n"
            "       [--gpu-layers N|auto] [--devices LIST] [--tensor-split LIST] [--split MODE]\n"
            "       [--kv-type f16|q8_0|f32] [--parallel N]\n"
            "  --ctx N               context for the KV-cache numbers, 0..%d (0: the model's\n"
            "                        max; for the split plan: what loom run would use)\n"
            "%s"
            "  --kv-type TYPE        KV-cache type of the split plan (default f16)\n"
            "  --parallel N          sequences (KV slots) of the split plan, 1..256 (default 1)\n"
            "With a split flag, or a backend other than cpu, info prints the layer-split plan\n"
            "of a GGUF: bytes and layers per device, and what does not fit and why.\n"
            "without MODEL: the default model (SmolLM2-135M-Instruct from the model cache, else\n"
            "%s with random weights, created on first use)\n",
            MAX_CTX, LOOM_CLI_SPLIT_USAGE, DEFAULT_PRESET);
}

int loom_cli_info(const char *backend, int argc, char **argv) {
    const char *path = NULL, *cmd = "info";
    int64_t ctx = 0;
    loom_cli_split so;
    loom_cli_split_init(&so);
    bool want_plan = false;
    loom_dtype kv = LOOM_F16;
    int n_par = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (loom_cli_is_help(a)) {
            info_usage(stdout);
            return 0;
        }
        if (loom_cli_split_flag(a) || !strcmp(a, "--kv-type") || !strcmp(a, "--parallel")) {
            if (!(v = loom_cli_value(cmd, argc, argv, &i))) return LOOM_CLI_USAGE;
            bool ok = !strcmp(a, "--kv-type")    ? loom_cli_parse_kv_type(cmd, a, v, &kv)
                      : !strcmp(a, "--parallel") ? loom_cli_parse_int(cmd, a, v, 1, 256, &n_par)
                                                 : loom_cli_split_parse(cmd, a, v, &so);
            if (!ok) return LOOM_CLI_USAGE;
            want_plan = want_plan || loom_cli_split_flag(a);
        } else if (!strcmp(a, "--ctx") || !strcmp(a, "-m")) {
            if (!(v = loom_cli_value(cmd, argc, argv, &i))) return LOOM_CLI_USAGE;
            if (!strcmp(a, "-m") && path) return loom_cli_unknown(cmd, v);
            if (!strcmp(a, "-m"))
                path = v;
            else if (!loom_cli_parse_i64(cmd, a, v, 0, MAX_CTX, &ctx))
                return LOOM_CLI_USAGE;
        } else if (a[0] != '-' && !path) {
            path = a;
        } else {
            loom_cli_unknown(cmd, a);
            info_usage(stderr);
            return LOOM_CLI_USAGE;
        }
    }
    if (!loom_cli_split_check(cmd, &so)) return LOOM_CLI_USAGE;
    /* The device the numbers are compared with; a backend asked for by name
     * must exist (checked before the default model is created). */
    size_t mem = 0;
    const char *dev = NULL;
    loom_backend *be = NULL;
    char berr[LOOM_ERROR_MAX] = "";
    loom_device_info info;
    if (loom_registry_init() == LOOM_OK &&
        loom_registry_select(backend, &be, berr, sizeof berr) == LOOM_OK) {
        memset(&info, 0, sizeof info);
        be->iface->device_info(be, &info);
        mem = info.mem_total;
        dev = info.name;
    } else if (backend && backend[0]) {
        fprintf(stderr, "loom %s: %s\n", cmd, berr[0] ? berr : "backend registry failed");
        loom_registry_shutdown();
        return LOOM_CLI_USAGE;
    }
    int rc = 1;
    loom_gguf *g = NULL;
    char defpath[1200];
    if (!path) {
        if (default_model(defpath, sizeof defpath) != 0) goto done;
        path = defpath;
    }
    char err[1024];
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
            goto done;
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
        if (loom_gguf_open(path, &g, err, sizeof err) != LOOM_OK ||
            loom_model_config_from_gguf(g, &c, err, sizeof err) != LOOM_OK) {
            fprintf(stderr, "loom info: %s\n", err);
            goto done;
        }
        for (int64_t i = 0; i < loom_gguf_n_tensors(g); i++) {
            loom_gguf_tensor_info ti;
            if (loom_gguf_tensor(g, i, &ti) == LOOM_OK) file_weights += ti.nbytes;
        }
        loom_gguf_get_bool(g, "loom.random_weights", &rw);
        loom_gguf_get_str(g, "general.description", &desc, &dlen);
        has_tok = loom_gguf_find_kv(g, "tokenizer.ggml.tokens") >= 0;
    }
    const int64_t ctx_arg = ctx; /* 0: the loader's default, for the plan */
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
    if (dev) printf("device            %s (%s)\n", loom_backend_name(be), dev);
    rc = 0;
    if (want_plan || (be && strcmp(be->iface->name, "cpu") != 0) || so.devices)
        rc = loom_cli_info_plan(path, hf, backend, &so, kv, n_par, ctx_arg,
                                c.max_ctx < 4096 ? c.max_ctx : 4096);
done:
    loom_gguf_close(g);
    loom_registry_shutdown();
    return rc;
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

#define MAX_STOP 8

typedef struct run_opts {
    const char *model, *prompt, *system, *kv_type, *quant, *chat_template, *lora;
    bool prompt_set;
    int n_predict, n_parallel, tp;
    struct loom_comm *comm; /* --tp's ranks (cli/tp_cmd.c) */
    int64_t ctx;
    loom_sampler_params sp;
    loom_dtype kv_dtype, quant_dtype;
    const char *stop[MAX_STOP];
    size_t n_stop;
    bool ignore_eos;
    loom_cli_split split;
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
            DEFAULT_PRESET,
            run ? "  -p, --prompt PROMPT   the prompt (default \"Once upon a time\")\n"
                : "  --system TEXT         the system message\n"
                  "  -p, --prompt MESSAGE  answer this one user message and exit\n"
                  "  --chat-template NAME  llama3, chatml, smollm2, mistral, llama2 or zephyr\n"
                  "                        (default: the model's own, by fingerprint)\n",
            MAX_N_PREDICT, run ? 64 : 256, MAX_N_PREDICT, MAX_CTX, MAX_STOP,
            run ? "  --parallel N          sequences generated together, 1..64 (default 1)\n"
                  "  --tp N                tensor parallelism over N ranks, 1..64: start it\n"
                  "                        with mpirun, N processes (each computes its heads\n"
                  "                        and FFN columns; rank 0 prints)\n"
                : "",
            LOOM_CLI_SPLIT_USAGE);
}
static void run_usage(FILE *f) {
    run_usage_cmd(f, "run");
}
static void chat_usage(FILE *f) {
    run_usage_cmd(f, "chat");
}

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
                     (run && (!strcmp(a, "--parallel") || !strcmp(a, "--tp"))) ||
                     (!run && (!strcmp(a, "--system") || !strcmp(a, "--chat-template"))) ||
                     loom_cli_split_flag(a);
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
            ok = loom_cli_parse_i64(cmd, a, v, 0, MAX_CTX, &o->ctx);
        else if (!strcmp(a, "--parallel"))
            ok = loom_cli_parse_int(cmd, a, v, 1, 64, &o->n_parallel);
        else if (!strcmp(a, "--tp"))
            ok = loom_cli_parse_int(cmd, a, v, 1, 64, &o->tp);
        else if (!strcmp(a, "--kv-type")) {
            ok = loom_cli_parse_kv_type(cmd, a, v, &o->kv_dtype);
            o->kv_type = v;
        } else if (!strcmp(a, "--quant")) {
            ok = parse_type(cmd, a, v, LOOM_CLI_WT_LOAD, &o->quant_dtype);
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
        if (default_model(defpath, sizeof defpath) != 0) return 1;
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
    if (st != LOOM_OK && !o->model && strstr(path, DEFAULT_REAL_MODEL)) {
        /* the default model is there but this build cannot load it (a type
         * it lacks, a damaged file): say so, then the labelled fallback */
        fprintf(stderr,
                "loom %s: the default model failed to load: %s\nloom %s: using the "
                "RANDOM-WEIGHT model instead\n",
                cmd, err, cmd);
        if (random_default_model(defpath, sizeof defpath) != 0) return 1;
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

static void final_line(const loom_model *m, const loom_generate_stats *s) {
    fprintf(stderr,
            "\nbackend %s | prompt %lld tokens, %.1f tok/s | generation %lld tokens, %.1f tok/s\n",
            loom_model_backend_name(m), (long long)s->n_prompt,
            s->t_prompt_s > 0 ? (double)s->n_prompt / s->t_prompt_s : 0.0, (long long)s->n_gen,
            s->t_gen_s > 0 ? (double)s->n_gen / s->t_gen_s : 0.0);
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
    if ((rc = loom_cli_tp_open("run", o.tp, &o.comm)) != 0) return rc;
    loom_model *m = NULL;
    if ((rc = load("run", backend, &o, o.n_parallel, &m)) != 0) {
        loom_registry_shutdown();
        loom_cli_tp_close(o.comm);
        return rc;
    }
    loom_cli_lora *lora = NULL;
    if (o.lora && (rc = loom_cli_lora_attach("run", m, o.lora, &lora)) != 0) {
        loom_model_free(m);
        loom_registry_shutdown();
        loom_cli_tp_close(o.comm);
        return rc;
    }
    loom_generate_params gp = loom_generate_default_params();
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
        final_line(m, &s);
    }
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
        final_line(m, &s);
    }
    for (size_t i = 0; i < n_owned; i++)
        free(owned[i]);
    loom_model_free(m);
    loom_cli_lora_free(lora);
    loom_registry_shutdown();
    return rc;
}
