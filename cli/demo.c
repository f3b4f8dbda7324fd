/* cli/demo.c - `loom demo`: one Llama-style transformer block on random
 * weights, run on the selected backend (cpu fallback for unsupported ops).
 * It exercises the whole stack (IR, scheduler, backend) until real model
 * loading lands, and prints shapes, a checksum of the logits and the time. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "loom/loom.h"

typedef struct demo_cfg {
    int64_t vocab, dim, n_head, n_kv_head, head_dim, ffn, tokens;
} demo_cfg;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Weight leaf of dtype t, [in, out]; values uniform in +-1/sqrt(in) so
 * activations keep their scale through the block. */
static loom_tensor *weight(loom_graph *g, loom_dtype t, int64_t in, int64_t out, const char *name) {
    return loom_tensor_set_name(loom_tensor_2d(g, t, in, out), "%s", name);
}

/* The block: embedding -> attention (GQA, llama3 rope, causal flash
 * attention) -> SwiGLU FFN -> logits through the tied embedding. */
static loom_tensor *build_block(loom_graph *g, const demo_cfg *c) {
    const int64_t D = c->head_dim, T = c->tokens;
    loom_tensor *tokens = loom_tensor_set_name(loom_tensor_1d(g, LOOM_I32, T), "tokens");
    loom_tensor *pos = loom_tensor_set_name(loom_tensor_1d(g, LOOM_I32, T), "pos");
    loom_tensor *emb = weight(g, LOOM_F16, c->dim, c->vocab, "tok_embd");
    loom_tensor *attn_norm = loom_tensor_set_name(loom_tensor_1d(g, LOOM_F32, c->dim), "attn_norm");
    loom_tensor *ffn_norm = loom_tensor_set_name(loom_tensor_1d(g, LOOM_F32, c->dim), "ffn_norm");
    loom_tensor *wq = weight(g, LOOM_Q8_0, c->dim, c->n_head * D, "wq");
    loom_tensor *wk = weight(g, LOOM_Q8_0, c->dim, c->n_kv_head * D, "wk");
    loom_tensor *wv = weight(g, LOOM_Q8_0, c->dim, c->n_kv_head * D, "wv");
    loom_tensor *wo = weight(g, LOOM_Q4_0, c->n_head * D, c->dim, "wo");
    loom_tensor *wg = weight(g, LOOM_NF4, c->dim, c->ffn, "ffn_gate");
    loom_tensor *wu = weight(g, LOOM_NF4, c->dim, c->ffn, "ffn_up");
    loom_tensor *wd = weight(g, LOOM_Q4_0, c->ffn, c->dim, "ffn_down");

    loom_tensor *x = loom_get_rows(g, emb, tokens); /* [dim, T] */
    loom_tensor *h = loom_mul(g, loom_rms_norm(g, x, 1e-5f), attn_norm);
    loom_rope_params rp = loom_rope_params_llama3((int32_t)D);
    loom_tensor *q = loom_reshape_3d(g, loom_matmul(g, wq, h), D, c->n_head, T);
    loom_tensor *k = loom_reshape_3d(g, loom_matmul(g, wk, h), D, c->n_kv_head, T);
    loom_tensor *v = loom_reshape_3d(g, loom_matmul(g, wv, h), D, c->n_kv_head, T);
    q = loom_permute(g, loom_rope(g, q, pos, &rp), 0, 2, 1, 3); /* [D, T, H] */
    k = loom_permute(g, loom_rope(g, k, pos, &rp), 0, 2, 1, 3);
    v = loom_permute(g, v, 0, 2, 1, 3);
    loom_tensor *att = loom_flash_attn(g, q, k, v, 1.0f / sqrtf((float)D), true, 0);
    att = loom_reshape_2d(g, att, D * c->n_head, T);
    x = loom_add(g, x, loom_matmul(g, wo, att));
    h = loom_mul(g, loom_rms_norm(g, x, 1e-5f), ffn_norm);
    loom_tensor *ff = loom_swiglu(g, loom_matmul(g, wg, h), loom_matmul(g, wu, h));
    x = loom_add(g, x, loom_matmul(g, wd, ff));
    loom_tensor *logits = loom_matmul(g, emb, x); /* [vocab, T] */
    return logits ? loom_tensor_set_name(logits, "logits") : NULL;
}

/* Random bytes for every leaf the scheduler allocated. */
static loom_status fill_leaves(loom_graph *g, const demo_cfg *c) {
    uint64_t rng = 0x5eed;
    for (int i = 0; i < loom_graph_n_tensors(g); i++) {
        loom_tensor *t = loom_graph_tensor(g, i);
        if (t->op != LOOM_OP_NONE || (!t->buffer && !t->data)) continue;
        int64_t n = loom_tensor_nelements(t);
        size_t nbytes = loom_tensor_nbytes(t);
        void *bytes = malloc(nbytes);
        float *v = malloc((size_t)n * sizeof *v);
        if (!bytes || !v) {
            free(bytes);
            free(v);
            return LOOM_ERR_OOM;
        }
        loom_status st = LOOM_OK;
        if (t->dtype == LOOM_I32) {
            int32_t *ids = bytes;
            bool is_pos = strcmp(t->name, "pos") == 0;
            for (int64_t j = 0; j < n; j++)
                ids[j] = is_pos ? (int32_t)j : (int32_t)(splitmix(&rng) % (uint64_t)c->vocab);
        } else {
            bool norm = strstr(t->name, "norm") != NULL;
            float amp = norm ? 0.2f : 1.0f / sqrtf((float)t->ne[0]);
            for (int64_t j = 0; j < n; j++) {
                float u = (float)(splitmix(&rng) >> 40) * (1.0f / 16777216.0f);
                v[j] = norm ? 1.0f + amp * (2 * u - 1) : amp * (2 * u - 1) * 1.7f;
            }
            st = loom_convert(LOOM_F32, v, t->dtype, bytes, n);
        }
        if (st == LOOM_OK) st = loom_tensor_upload(t, bytes, nbytes);
        free(bytes);
        free(v);
        if (st != LOOM_OK) return st;
    }
    return LOOM_OK;
}

static void demo_usage(FILE *f) {
    fprintf(f, "usage: loom demo [--backend NAME] [--tokens N]\n"
               "  runs one transformer block on random weights and prints a checksum\n"
               "  --tokens N  tokens in the batch, 1..4096 (default 64)\n");
}

int loom_cli_demo(const char *backend, int argc, char **argv) {
    demo_cfg c = {.vocab = 2048,
                  .dim = 512,
                  .n_head = 8,
                  .n_kv_head = 2,
                  .head_dim = 64,
                  .ffn = 1408,
                  .tokens = 64};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (loom_cli_is_help(a)) {
            demo_usage(stdout);
            return 0;
        }
        if (strcmp(a, "--tokens") != 0) {
            loom_cli_unknown("demo", a);
            demo_usage(stderr);
            return LOOM_CLI_USAGE;
        }
        if (!(v = loom_cli_value("demo", argc, argv, &i)) ||
            !loom_cli_parse_i64("demo", a, v, 1, 4096, &c.tokens))
            return LOOM_CLI_USAGE;
    }
    loom_status st = loom_registry_init();
    if (st != LOOM_OK) {
        fprintf(stderr, "loom demo: backend registry failed: %s\n", loom_status_str(st));
        return 1;
    }
    int rc = 1;
    loom_graph *g = NULL;
    loom_sched *s = NULL;
    float *out = NULL;
    loom_backend *be = NULL, *cpu = loom_registry_find("cpu");
    char err[LOOM_ERROR_MAX] = "";
    st = loom_registry_select(backend, &be, err, sizeof err);
    if (st != LOOM_OK) {
        fprintf(stderr, "loom demo: %s\n", err[0] ? err : loom_status_str(st));
        rc = 2;
        goto done;
    }
    if (!cpu || !loom_registry_available(cpu->index)) {
        fprintf(stderr, "loom demo: the cpu backend is unavailable\n");
        goto done;
    }
    loom_device_info info;
    memset(&info, 0, sizeof info);
    be->iface->device_info(be, &info);
    printf("backend: %s (%s)\n", be->iface->name, info.name);
    printf("block: vocab %" PRId64 ", dim %" PRId64 ", heads %" PRId64 "/%" PRId64
           " (GQA), head_dim %" PRId64 ", ffn %" PRId64 ", tokens %" PRId64 "\n",
           c.vocab, c.dim, c.n_head, c.n_kv_head, c.head_dim, c.ffn, c.tokens);
    printf("weights: embedding f16, q/k/v q8_0, out q4_0, gate/up nf4, down q4_0\n");

    if ((st = loom_graph_new(&g)) != LOOM_OK) goto fail;
    loom_tensor *logits = build_block(g, &c);
    if (!logits || loom_graph_status(g) != LOOM_OK) {
        fprintf(stderr, "loom demo: building the graph failed: %s\n", loom_graph_error(g));
        goto done;
    }
    loom_tensor_set_flags(logits, logits->flags | LOOM_FLAG_OUTPUT);
    for (int i = 0; i < loom_graph_n_tensors(g); i++) {
        loom_tensor *t = loom_graph_tensor(g, i);
        if (t->op == LOOM_OP_NONE) loom_tensor_set_flags(t, t->flags | LOOM_FLAG_INPUT);
    }
    if ((st = loom_graph_expand(g, logits)) != LOOM_OK) goto fail;
    int n_fallback = 0;
    for (int i = 0; i < loom_graph_n_nodes(g) && be != cpu; i++) {
        const loom_tensor *t = loom_graph_node(g, i);
        if (t->op != LOOM_OP_NONE && !loom_op_is_view(t->op) && !be->iface->supports(be, t))
            n_fallback++;
    }
    loom_backend *list[2] = {be, cpu};
    if ((st = loom_sched_new(list, be == cpu ? 1 : 2, &s)) != LOOM_OK) goto fail;
    double t0 = now_s();
    if ((st = loom_sched_alloc(s, g)) != LOOM_OK || (st = fill_leaves(g, &c)) != LOOM_OK) goto fail;
    double t1 = now_s();
    if ((st = loom_sched_compute(s, g)) != LOOM_OK) /* first run: warm-up */
        goto fail;
    double t2 = now_s();
    if ((st = loom_sched_compute(s, g)) != LOOM_OK) goto fail;
    double t3 = now_s();

    int64_t n = loom_tensor_nelements(logits);
    out = malloc((size_t)n * sizeof *out);
    if (!out || (st = loom_tensor_download(logits, out, (size_t)n * sizeof *out)) != LOOM_OK) {
        st = out ? st : LOOM_ERR_OOM;
        goto fail;
    }
    double sum = 0, sum_abs = 0;
    bool finite = true;
    for (int64_t i = 0; i < n; i++) {
        finite &= isfinite(out[i]) != 0;
        sum += out[i];
        sum_abs += fabs(out[i]);
    }
    const float *last = out + (c.tokens - 1) * c.vocab; /* logits of the last token */
    int64_t best = 0;
    for (int64_t i = 1; i < c.vocab; i++)
        if (last[i] > last[best]) best = i;

    loom_sched_stats stats;
    loom_sched_get_stats(s, &stats);
    char desc[96];
    printf("graph: %d nodes, %d splits, %d cross-backend copies, activation arena %.1f MiB\n",
           stats.n_nodes, stats.n_splits, stats.n_copies, (double)stats.arena_bytes[0] / (1 << 20));
    if (be != cpu) printf("coverage: %d ops fell back to cpu\n", n_fallback);
    printf("output: logits %s\n", loom_tensor_describe(logits, desc, sizeof desc));
    printf("checksum: sum %.6f, sum|x| %.6f, last-token argmax %" PRId64 "%s\n", sum, sum_abs, best,
           finite ? "" : " (NON-FINITE VALUES)");
    printf("time: alloc+upload %.1f ms, first run %.1f ms, second run %.1f ms (%.0f tokens/s)\n",
           1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (t3 - t2),
           (double)c.tokens / (t3 - t2 > 0 ? t3 - t2 : 1e-9));
    rc = finite ? 0 : 1;
    goto done;
fail:
    fprintf(stderr, "loom demo: %s%s%s\n", loom_status_str(st), s ? ": " : "",
            s ? loom_sched_error(s) : "");
done:
    free(out);
    loom_sched_free(s);
    loom_graph_free(g);
    loom_registry_shutdown();
    return rc;
}
