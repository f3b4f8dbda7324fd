/* cli/serve_cmd.c - `loom serve`: options, model loading, signals. The
 * server itself is serve/ (serve/server.h). */
#define _DEFAULT_SOURCE /* usleep */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "loom/encoder.h"
#include "loom/loom.h"
#include "loom/model.h"
#include "serve/server.h"

/* cli/rag_serve.c: the retriever behind --rag-index / --rag-store. */
bool loom_cli_serve_rag_open(loom_server *srv, const char *index, const char *store,
                             const char *table);
void loom_cli_serve_rag_close(void);

static void serve_usage(FILE *f) {
    fprintf(f,
            "usage: loom serve [-m MODEL] [--host 127.0.0.1] [--port 8080] [--parallel N]\n"
            "                  [--ctx N] [--api-key KEY | --api-key-file FILE] [--threads N]\n"
            "                  [--prefill-chunk N] [--kv-block N] [--kv-blocks N]\n"
            "                  [--no-prefix-cache]\n"
            "                  [--max-body BYTES] [--timeout S]\n"
            "                  [--cors ORIGIN,...] [--rate-limit R] [--log-prompts]\n"
            "                  [--no-access-log] [--backend NAME] [--gpu-layers N|auto]\n"
            "                  [--devices LIST] [--tensor-split LIST] [--split MODE]\n"
            "                  [--embed-model ENCODER] [--lora DIR]\n"
            "                  [--rag-index INDEX | --rag-store URL [--rag-table NAME]]\n"
            "                  [--draft MODEL | --spec lookup] [--spec-k N] [--spec-ngram N]\n"
            "OpenAI-compatible HTTP API: POST /v1/chat/completions, POST /v1/completions,\n"
            "GET /v1/models, GET /health, GET /metrics. Without -m: the default model of\n"
            "`loom run`. --parallel: KV slots (sequences decoded together, default 4);\n"
            "--ctx: tokens per slot; --kv-block: tokens per KV-cache block (default 16);\n"
            "--kv-blocks: blocks in the pool (default: --parallel x --ctx worth; fewer\n"
            "overcommit: the newest request is preempted and recomputed when they run\n"
            "out); --no-prefix-cache: never reuse the KV blocks of an earlier request's\n"
            "prompt prefix; --port 0 picks a free port; --timeout: seconds before\n"
            "an idle or slow client is dropped (default 60); --cors: browser origins\n"
            "allowed to call the API (or *); --rate-limit: requests per second per API key\n"
            "(or client address) on /v1/ routes, 429 above. Each request is logged to\n"
            "stderr as a JSON line, without prompt text unless --log-prompts.\n"
            "--embed-model: a sentence encoder (a Hugging Face directory, or 'minilm') that\n"
            "serves POST /v1/embeddings; texts longer than its maximum are truncated.\n"
            "Without it, POST /v1/embeddings pools the model's own final hidden states\n"
            "(mean, L2-normalised); /v1/models says which.\n"
            "--lora DIR: apply the PEFT LoRA adapter in DIR to every request, unmerged\n"
            "(as loom run --lora; loom merge-lora folds it into a GGUF instead).\n"
            "--rag-index / --rag-store: retrieval on chat completions for requests with\n"
            "\"loom_retrieval\": {\"k\": K} (a loom extension; the sources go into the system\n"
            "message and come back in \"loom_sources\"); made by loom rag index.\n"
            "--draft / --spec lookup: speculative decoding (docs/adr/0038) for a greedy\n"
            "request without logprobs while it is the only one decoding; its tokens are\n"
            "the same as without (see loom run --help for the four flags).\n"
            "SIGTERM/SIGINT drain the requests in flight, then exit. The cpu backend\n"
            "runs every quantized matmul on int8 activations here (LOOM_CPU_ACT=int8:\n"
            "outputs do not depend on batching or prefill chunks; docs/adr/0043).\n"
            "ranges: --port 0..65535, --parallel 1..256, --ctx 0..16777216 (0: the\n"
            "model's), --threads 1..256, --prefill-chunk 1..65536, --kv-block 1..4096,\n"
            "--kv-blocks 0..16777216 (0: the default), --max-body\n"
            "1024..67108864, --timeout 1..3600, --rate-limit 0.001..1000000\n"
            "%s",
            LOOM_CLI_SPLIT_USAGE);
}

/* Access-log lines go to stderr, one JSON object per line; the lock keeps
 * lines from the HTTP threads whole. */
static void log_line(void *ud, const char *line) {
    (void)ud;
    flockfile(stderr);
    fputs(line, stderr);
    fputc('\n', stderr);
    funlockfile(stderr);
}

/* First line of a file, surrounding whitespace removed; malloc'd. */
static char *read_key_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char line[4096];
    char *r = fgets(line, sizeof line, f) ? line : NULL;
    fclose(f);
    if (!r) return NULL;
    size_t n = strlen(r);
    while (n && (r[n - 1] == '\n' || r[n - 1] == '\r' || r[n - 1] == ' ' || r[n - 1] == '\t'))
        r[--n] = 0;
    while (*r == ' ' || *r == '\t')
        r++;
    return *r ? strdup(r) : NULL;
}

/* The served name: the file name without directory and ".gguf". */
static void model_name(const char *path, char *out, size_t n) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    const char *base = path;
    for (size_t i = 0; i < len; i++)
        if (path[i] == '/') base = path + i + 1;
    size_t bl = (size_t)(path + len - base);
    if (bl > 5 && !strncmp(base + bl - 5, ".gguf", 5)) bl -= 5;
    snprintf(out, n, "%.*s", (int)bl, base);
}

int loom_cli_serve(const char *backend, int argc, char **argv) {
    const char *embed_model = NULL, *lora = NULL;
    const char *rag_index = NULL, *rag_store = NULL, *rag_table = NULL;
    const char *model = NULL, *host = "127.0.0.1", *key = NULL, *key_file = NULL, *cors = NULL;
    double rate = 0;
    int kv_block = 16, kv_blocks = 0;
    bool no_prefix = false;
    int port = 8080, parallel = 4, ctx = 0, threads = 4, chunk = 128, max_body = 1 << 20,
        timeout = 60;
    bool access_log = true, log_prompts = false;
    loom_cli_split split;
    loom_cli_split_init(&split);
    loom_cli_spec spec_opts;
    loom_cli_spec_init(&spec_opts);
    /* Every value is parsed strictly (cli/args.h), before anything starts. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (loom_cli_is_help(a)) {
            serve_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--log-prompts")) {
            log_prompts = true;
            continue;
        }
        if (!strcmp(a, "--no-access-log")) {
            access_log = false;
            continue;
        }
        if (!strcmp(a, "--no-prefix-cache")) {
            no_prefix = true;
            continue;
        }
        const char **str = NULL;
        int *num = NULL, lo = 0, hi = 0;
        if (loom_cli_split_flag(a)) {
            const char *v = loom_cli_value("serve", argc, argv, &i);
            if (!v || !loom_cli_split_parse("serve", a, v, &split)) return LOOM_CLI_USAGE;
            continue;
        }
        if (loom_cli_spec_flag(a)) {
            const char *v = loom_cli_value("serve", argc, argv, &i);
            if (!v || !loom_cli_spec_parse("serve", a, v, &spec_opts)) return LOOM_CLI_USAGE;
            continue;
        }
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            str = &model;
        else if (!strcmp(a, "--embed-model"))
            str = &embed_model;
        else if (!strcmp(a, "--lora"))
            str = &lora;
        else if (!strcmp(a, "--rag-index"))
            str = &rag_index;
        else if (!strcmp(a, "--rag-store"))
            str = &rag_store;
        else if (!strcmp(a, "--rag-table"))
            str = &rag_table;
        else if (!strcmp(a, "--host"))
            str = &host;
        else if (!strcmp(a, "--api-key"))
            str = &key;
        else if (!strcmp(a, "--api-key-file"))
            str = &key_file;
        else if (!strcmp(a, "--cors"))
            str = &cors;
        else if (!strcmp(a, "--backend"))
            str = &backend;
        else if (!strcmp(a, "--port"))
            num = &port, lo = 0, hi = 65535;
        else if (!strcmp(a, "--parallel"))
            num = &parallel, lo = 1, hi = 256;
        else if (!strcmp(a, "--ctx"))
            num = &ctx, lo = 0, hi = 1 << 24;
        else if (!strcmp(a, "--threads"))
            num = &threads, lo = 1, hi = 256;
        else if (!strcmp(a, "--prefill-chunk"))
            num = &chunk, lo = 1, hi = 1 << 16;
        else if (!strcmp(a, "--kv-block"))
            num = &kv_block, lo = 1, hi = 4096;
        else if (!strcmp(a, "--kv-blocks"))
            num = &kv_blocks, lo = 0, hi = 1 << 24;
        else if (!strcmp(a, "--timeout"))
            num = &timeout, lo = 1, hi = 3600;
        else if (!strcmp(a, "--max-body"))
            num = &max_body, lo = 1024, hi = 64 << 20;
        else if (strcmp(a, "--rate-limit") != 0) {
            loom_cli_unknown("serve", a);
            serve_usage(stderr);
            return LOOM_CLI_USAGE;
        }
        const char *v = loom_cli_value("serve", argc, argv, &i);
        if (!v) return LOOM_CLI_USAGE;
        if (str)
            *str = v;
        else if (num) {
            if (!loom_cli_parse_int("serve", a, v, lo, hi, num)) return LOOM_CLI_USAGE;
        } else if (!loom_cli_parse_f64("serve", a, v, 0.001, 1e6, &rate)) {
            return LOOM_CLI_USAGE;
        }
    }
    if (key && key_file) {
        fprintf(stderr, "loom serve: give --api-key or --api-key-file, not both\n");
        return 2;
    }
    if (!loom_cli_split_check("serve", &split) || !loom_cli_spec_check("serve", &spec_opts))
        return LOOM_CLI_USAGE;
    char *file_key = NULL;
    if (key_file) {
        file_key = read_key_file(key_file);
        if (!file_key) {
            fprintf(stderr, "loom serve: cannot read an API key from %s\n", key_file);
            return 1;
        }
        key = file_key;
    }
    if ((rag_index && rag_store) || (rag_table && !rag_store)) {
        fprintf(stderr, "loom serve: %s\n",
                rag_table ? "--rag-table is for --rag-store"
                          : "give --rag-index INDEX or --rag-store URL, not both");
        free(file_key);
        return LOOM_CLI_USAGE;
    }
    char defpath[1200];
    if (!model) {
        if (loom_cli_default_model(defpath, sizeof defpath) != 0) {
            free(file_key);
            return 1;
        }
        model = defpath;
    }

    /* SIGTERM/SIGINT are taken with sigwait below: block them before any
     * thread starts so that every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    /* A client that disconnects must not kill the server. */
    signal(SIGPIPE, SIG_IGN);

    loom_server_config sc = {.host = host,
                             .port = (int)port,
                             .n_threads = (int)threads,
                             .api_key = key,
                             .max_body = (size_t)max_body,
                             .timeout_s = (int)timeout,
                             .cors = cors,
                             .rate_limit = rate,
                             .access_log = access_log ? log_line : NULL,
                             .log_prompts = log_prompts};
    loom_server *srv = NULL;
    char err[1024] = "";
    loom_status st = loom_server_start(&sc, &srv, err, sizeof err);
    free(file_key);
    if (st != LOOM_OK) {
        fprintf(stderr, "loom serve: %s\n", err);
        return 1;
    }
    fprintf(stderr, "loom serve: listening on http://%s%s%s:%d (loading %s)\n",
            strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", loom_server_port(srv),
            model);

    int rc = 1;
    loom_model *m = NULL;
    loom_encoder *enc = NULL;
    loom_cli_lora *adapter = NULL; /* the projection hook's state: freed after m */
    loom_model *draft = NULL;      /* speculative decoding: freed after the server */
    loom_spec *spec = NULL;
    /* A request's greedy tokens must not depend on its neighbours, prefix
     * hits or preemption (docs/adr/0035). The cpu's int8 activations for
     * every matmul (LOOM_CPU_ACT=int8, ADR 0043) round and sum a token's row
     * the same in a decode step and in a prefill chunk of any size; the
     * default int8-decode mode (prefill on f32) would not, and f32 (decode
     * and GEMM kernels summing in different orders) only to ~1e-6
     * (tests/serve/serve_chunk_invariance.py). The server uses them unless
     * the environment says otherwise. Read by the cpu backend at registry
     * init. */
    setenv("LOOM_CPU_ACT", "int8", 0);
    st = loom_registry_init();
    if (st != LOOM_OK) {
        fprintf(stderr, "loom serve: backend registry failed: %s\n", loom_status_str(st));
        loom_server_free(srv);
        return 1;
    }
    /* Tests hold the server in "loading" for a while to see its 503s. */
    const char *delay = getenv("LOOM_SERVE_LOAD_DELAY_MS");
    if (delay && atoi(delay) > 0) usleep((useconds_t)atoi(delay) * 1000u);
    if (embed_model) {
        /* The encoder first: a wrong --embed-model fails fast, before a
         * long LLM load. */
        char edir[1200];
        loom_encoder_params encp = {.backend = backend, .max_tokens = 0};
        st = loom_encoder_resolve(embed_model, edir, sizeof edir, err, sizeof err);
        if (st == LOOM_OK) st = loom_encoder_load(edir, &encp, &enc, err, sizeof err);
        char ename[256];
        if (st == LOOM_OK) {
            model_name(edir, ename, sizeof ename);
            st = loom_server_set_encoder(srv, enc, ename, err, sizeof err);
        }
        if (st != LOOM_OK) {
            fprintf(stderr, "loom serve: --embed-model %s: %s\n", embed_model, err);
            goto out;
        }
        fprintf(stderr, "loom serve: embedding model '%s' (%lld dimensions, %d tokens max) on %s\n",
                ename, (long long)loom_encoder_dim(enc), loom_encoder_max_tokens(enc),
                loom_encoder_backend(enc));
    }
    if ((rag_index || rag_store) && !loom_cli_serve_rag_open(srv, rag_index, rag_store, rag_table))
        goto out;
    loom_model_params mp = loom_model_default_params();
    mp.backend = backend;
    mp.n_ctx = ctx;
    mp.n_slots = (int)parallel;
    mp.kv_block_size = kv_block;
    mp.n_kv_blocks = kv_blocks;
    loom_cli_split_apply(&split, &mp);
    st = loom_model_load(model, &mp, &m, err, sizeof err);
    if (st != LOOM_OK) {
        fprintf(stderr, "loom serve: %s\n", err);
        rc = st == LOOM_ERR_UNAVAILABLE ? 2 : 1;
        goto out;
    }
    /* before the engine builds any graph: every graph then has the hook */
    if (lora && loom_cli_lora_attach("serve", m, lora, &adapter) != 0) goto out;
    loom_cli_print_plan(m);
    char name[256];
    model_name(model, name, sizeof name);
    if ((rc = loom_cli_spec_open("serve", backend, &spec_opts, m, &draft, &spec)) != 0) goto out;
    rc = 1;
    /* Read before the engine thread starts: it owns the KV blocks from then
     * on, and reading them here raced with its first step (ThreadSanitizer). */
    loom_kv_block_stats kvs;
    loom_model_kv_block_stats(m, &kvs);
    loom_engine_params ep = {
        .prefill_chunk = (int32_t)chunk, .no_prefix_cache = no_prefix, .spec = spec};
    if (loom_server_set_model(srv, m, name, &ep, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "loom serve: %s\n", err);
        goto out;
    }
    fprintf(stderr,
            "loom serve: ready: model '%s' on %s, %d slots x %lld tokens, KV cache %d blocks of "
            "%d%s%s\n",
            name, loom_model_backend_name(m), loom_model_n_slots(m), (long long)loom_model_n_ctx(m),
            kvs.n_blocks, kvs.block_size,
            loom_model_random_weights(m) ? " (RANDOM WEIGHTS: the text is meaningless)" : "",
            key ? ", API key required" : "");
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "loom serve: %s: draining requests in flight...\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");
    bool drained = loom_server_drain(srv, 30.0);
    fprintf(stderr, "loom serve: %s\n", drained ? "drained, exiting" : "drain timed out, exiting");
    rc = 0;
out:
    loom_server_free(srv);
    loom_spec_free(spec);
    loom_model_free(draft);
    loom_model_free(m);
    loom_cli_lora_free(adapter);
    loom_encoder_free(enc);
    loom_cli_serve_rag_close();
    loom_registry_shutdown();
    return rc;
}
