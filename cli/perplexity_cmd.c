/* cli/perplexity_cmd.c - `loom perplexity`: llama-perplexity's measure
 * (loom/perplexity.h) on a text file, with its output lines. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/wtype.h"
#include "loom/loom.h"
#include "loom/model.h"
#include "loom/perplexity.h"

#define CMD "perplexity"

static void usage(FILE *f) {
    fprintf(f, "usage: loom perplexity -m MODEL -f TEXT [--ctx N] [--chunks N] [--batch N] [-t N]\n"
               "                       [--kv-type f16|q8_0|f32] [--quant TYPE] [--backend NAME]\n"
               "perplexity of MODEL (GGUF or Hugging Face directory) on the text file TEXT,\n"
               "as llama.cpp's llama-perplexity computes it: non-overlapping windows of --ctx\n"
               "tokens, BOS as the model's metadata says, the second half of each window\n"
               "scored; prints the running value per window and PPL +/- its error estimate\n"
               "  --ctx N      window length in tokens, 4..1048576 (default 512)\n"
               "  --chunks N   windows to score, 0..1000000; 0: all (default)\n"
               "  --batch N    tokens per forward pass, 1..65536 (default 256); up to 8 the\n"
               "               cpu runs its decode kernels (int8 activations unless\n"
               "               LOOM_CPU_ACT=f32)\n"
               "  -t N         cpu threads, 1..4096 (default: the cpu backend's, LOOM_THREADS)\n"
               "  --kv-type T  KV-cache type (default f16)\n"
               "  --quant T    weights quantized while loading: f32, f16, bf16, q8_0, q4_0,\n"
               "               q4_1, q5_0, q5_1, nf4 (the quality of a load-time type)\n");
}

static void on_chunk(void *ud, int64_t c, int64_t n, double ppl) {
    (void)ud;
    printf("[%lld]%.4f,", (long long)c + 1, ppl);
    if (c + 1 == n) printf("\n");
    fflush(stdout);
}

/* The whole file; like llama.cpp's -f, one trailing newline is dropped. */
static char *read_text(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (size_t r; buf && (r = fread(buf + len, 1, cap - len, f)) > 0;) {
        len += r;
        if (len == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    if (buf && len && buf[len - 1] == '\n') len--;
    *n = len;
    return buf;
}

int loom_cli_perplexity(const char *backend, int argc, char **argv) {
    const char *model = NULL, *file = NULL, *kv = "f16";
    int64_t ctx = 512, chunks = 0, batch = 256;
    int threads = 0;
    loom_dtype kvt = LOOM_F16, qt = LOOM_F32;
    const char *quant = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (loom_cli_is_help(a)) {
            usage(stdout);
            return 0;
        }
        static const char *const valued[] = {"-m",      "--model",  "-f", "--file",
                                             "--ctx",   "--chunks", "-t", "--kv-type",
                                             "--batch", "--quant",  NULL};
        bool known = false;
        for (int k = 0; valued[k] && !known; k++)
            known = !strcmp(a, valued[k]);
        if (!known) {
            loom_cli_unknown(CMD, a);
            usage(stderr);
            return LOOM_CLI_USAGE;
        }
        if (!(v = loom_cli_value(CMD, argc, argv, &i))) return LOOM_CLI_USAGE;
        bool ok = true;
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "-f") || !strcmp(a, "--file"))
            file = v;
        else if (!strcmp(a, "--ctx"))
            ok = loom_cli_parse_i64(CMD, a, v, 4, 1048576, &ctx);
        else if (!strcmp(a, "--chunks"))
            ok = loom_cli_parse_i64(CMD, a, v, 0, 1000000, &chunks);
        else if (!strcmp(a, "--batch"))
            ok = loom_cli_parse_i64(CMD, a, v, 1, 65536, &batch);
        else if (!strcmp(a, "-t"))
            ok = loom_cli_parse_int(CMD, a, v, 1, 4096, &threads);
        else if (!strcmp(a, "--quant")) {
            /* the load-time types of `loom run --quant` (nf4 = QLoRA's NF4) */
            loom_cli_wtype wt;
            ok = loom_cli_parse_wtype(CMD, a, v, LOOM_CLI_WT_LOAD, &wt);
            if (ok) qt = wt.type, quant = v;
        } else {
            ok = loom_cli_parse_kv_type(CMD, a, v, &kvt);
            if (ok) kv = v;
        }
        if (!ok) return LOOM_CLI_USAGE;
    }
    if (!model || !file) {
        fprintf(stderr, "loom %s: %s is required\n", CMD, !model ? "-m MODEL" : "-f TEXT");
        usage(stderr);
        return LOOM_CLI_USAGE;
    }
    size_t len = 0;
    char *text = read_text(file, &len);
    if (!text) {
        fprintf(stderr, "loom %s: cannot read %s\n", CMD, file);
        return 1;
    }
    loom_status st = loom_registry_init();
    loom_backend *be = NULL;
    char err[1024] = "";
    if (st == LOOM_OK) st = loom_registry_select(backend, &be, err, sizeof err);
    if (st != LOOM_OK) {
        fprintf(stderr, "loom %s: %s\n", CMD, err[0] ? err : loom_status_str(st));
        free(text);
        loom_registry_shutdown();
        return LOOM_CLI_USAGE;
    }
    if (threads > 0) {
        be->n_threads = threads;
        loom_backend *cpu = loom_registry_find("cpu");
        if (cpu) cpu->n_threads = threads; /* ops a GPU backend leaves to the cpu */
    }
    loom_model_params mp = loom_model_default_params();
    mp.backend = backend;
    mp.n_ctx = ctx;
    mp.kv_dtype = kvt;
    if (quant) {
        mp.quant = qt;
        mp.quantize = true;
    }
    loom_model *m = NULL;
    fprintf(stderr, "loading %s%s%s ...\n", model, quant ? ", weights as " : "",
            quant ? quant : "");
    st = loom_model_load(model, &mp, &m, err, sizeof err);
    int rc = 0;
    if (st != LOOM_OK) {
        fprintf(stderr, "loom %s: %s\n", CMD, err);
        rc = 1;
    } else {
        loom_perplexity_params pp = loom_perplexity_default_params();
        pp.n_ctx = ctx;
        pp.n_chunks = chunks;
        pp.n_batch = batch;
        pp.on_chunk = on_chunk;
        loom_perplexity_result r;
        fprintf(stderr, "perplexity: %s, weights %s, kv %s on %s, ctx %lld\n", model,
                loom_model_weight_types(m), kv, loom_model_backend_name(m), (long long)ctx);
        st = loom_perplexity_text(m, text, len, &pp, &r, err, sizeof err);
        if (st != LOOM_OK) {
            /* the library's messages start with "perplexity: " already */
            fprintf(stderr, "loom %s\n", err);
            rc = 1;
        } else {
            printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_err);
            fprintf(stderr,
                    "perplexity: %lld tokens, %lld windows of %lld, %lld scored | %.2f s in "
                    "forward passes, %.1f tokens/s\n",
                    (long long)r.n_tokens, (long long)r.n_chunks, (long long)ctx,
                    (long long)r.n_scored, r.t_eval_s,
                    r.t_eval_s > 0 ? (double)(r.n_chunks * ctx) / r.t_eval_s : 0.0);
        }
    }
    loom_model_free(m);
    free(text);
    loom_registry_shutdown();
    return rc;
}
