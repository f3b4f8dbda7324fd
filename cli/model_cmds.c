/* cli/model_cmds.c - `loom init-model`, `loom export-gguf`, `loom info`, and
 * the default model (`loom run` and `loom chat` are in cli/run_cmd.c). */
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
#include "loom/gguf.h"
#include "loom/loom.h"
#include "loom/model.h"
#include "loom/safetensors.h"

#ifndef LOOM_DEFAULT_SOURCE_DIR
#define LOOM_DEFAULT_SOURCE_DIR "."
#endif

#define DEFAULT_SEED 1234u

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
    const char *preset = LOOM_CLI_DEFAULT_PRESET, *out = NULL, *tok = NULL;
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

/* The random-weight fallback under the build tree, created on first use. */
static int random_default_model(char *path, size_t n) {
    char dir[1024];
    exe_dir(dir, sizeof dir);
    snprintf(path, n, "%s/models/%s.gguf", dir, LOOM_CLI_DEFAULT_PRESET);
    if (file_exists(path)) return 0;
    char mdir[1100];
    snprintf(mdir, sizeof mdir, "%s/models", dir);
    if (mkdir(mdir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "loom: cannot create %s: %s\n", mdir, strerror(errno));
        return 1;
    }
    fprintf(stderr, "loom: creating the default model %s (preset %s, q8_0, random weights)...\n",
            path, LOOM_CLI_DEFAULT_PRESET);
    return make_model(LOOM_CLI_DEFAULT_PRESET, LOOM_Q8_0, DEFAULT_SEED, NULL, path);
}

static int default_model(char *path, size_t n) {
    char cache[1024];
    loom_model_cache_dir(cache, sizeof cache);
    snprintf(path, n, "%s/%s", cache, LOOM_CLI_DEFAULT_REAL_MODEL);
    if (file_exists(path)) return 0;
    fprintf(stderr,
            "loom: the default model %s is not in %s (scripts/fetch-default-model.sh fetches "
            "it); using the RANDOM-WEIGHT model instead\n",
            LOOM_CLI_DEFAULT_REAL_MODEL, cache);
    return random_default_model(path, n);
}

int loom_cli_default_model(char *path, size_t n) {
    return default_model(path, n);
}

int loom_cli_random_default_model(char *path, size_t n) {
    return random_default_model(path, n);
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
            LOOM_CLI_MAX_CTX, LOOM_CLI_SPLIT_USAGE, LOOM_CLI_DEFAULT_PRESET);
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
            else if (!loom_cli_parse_i64(cmd, a, v, 0, LOOM_CLI_MAX_CTX, &ctx))
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
