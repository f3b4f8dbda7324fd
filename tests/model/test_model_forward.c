/* tests/model/test_model_forward.c - the Llama/MoE model against an
 * independent scalar implementation.
 *
 * A tiny config (GQA 4:2, llama3 RoPE scaling, MoE in alternating layers,
 * tied and untied LM heads) is written as an f32 GGUF with seeded random
 * weights, loaded through loom_model_load_gguf and run on the cpu backend.
 * The reference below reads the same weights straight from the GGUF and
 * computes the decoder with plain loops in double precision; it shares no
 * code with model/arch/llama.c (only the file format and the weight layout
 * documented in loom/model.h). Checks:
 *  - full-sequence logits vs the reference (f32 KV cache): max abs error
 *    <= 1e-4 of the logit range;
 *  - KV-cache decode (prefill + one token at a time, f16 cache) equals the
 *    full-sequence logits at the same positions, and the decode graph is
 *    built once and re-used;
 *  - two sequences decoded in one batched forward equal the single runs;
 *  - malformed files (missing tensor, wrong shape) are rejected with a
 *    message naming the tensor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/gguf.h"
#include "loom/loom.h"
#include "loom/model.h"
#include "testing.h"

/* ---------------- the reference ---------------- */

typedef struct ref_model {
    loom_gguf *g;
    loom_model_config c;
} ref_model;

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wformat-nonliteral" /* W() takes the tensor name pattern */
#endif
static const float *W(ref_model *r, const char *fmt, long long l) {
    char name[96];
    snprintf(name, sizeof name, fmt, l);
    int64_t i = loom_gguf_find_tensor(r->g, name);
    loom_gguf_tensor_info info;
    if (i < 0 || loom_gguf_tensor(r->g, i, &info) != LOOM_OK ||
        info.ggml_type != LOOM_GGML_TYPE_F32) {
        fprintf(stderr, "reference: tensor %s missing or not f32\n", name);
        exit(1);
    }
    return info.data;
}

/* y[n] = sum_k w[n*K + k] x[k] (w: GGUF [K, N]) */
static void linear(const float *w, const double *x, int64_t K, int64_t N, double *y) {
    for (int64_t n = 0; n < N; n++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++)
            s += (double)w[n * K + k] * x[k];
        y[n] = s;
    }
}

static void rmsnorm(const double *x, const float *w, int64_t n, double eps, double *y) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / (double)n + eps);
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * r * w[i];
}

/* Hugging Face's _compute_llama3_parameters, written out. */
static double inv_freq(const loom_model_config *c, int64_t i) {
    double f = pow((double)c->rope.theta, -2.0 * (double)i / (double)c->rope.n_dims);
    if (c->rope.scaling != LOOM_ROPE_SCALING_LLAMA3) return f;
    const double pi = 3.14159265358979323846;
    double low_wl = c->rope.orig_ctx / c->rope.low_freq_factor;
    double high_wl = c->rope.orig_ctx / c->rope.high_freq_factor;
    double wl = 2 * pi / f;
    if (wl > low_wl) return f / c->rope.factor;
    if (wl < high_wl) return f;
    double smooth = (c->rope.orig_ctx / wl - c->rope.low_freq_factor) /
                    (c->rope.high_freq_factor - c->rope.low_freq_factor);
    return (1 - smooth) * f / c->rope.factor + smooth * f;
}

/* GGUF layout: rotary pairs are adjacent dims (2i, 2i+1) of each head. */
static void rope(const loom_model_config *c, double *v, int64_t n_heads, int64_t pos) {
    const int64_t D = c->head_dim;
    for (int64_t h = 0; h < n_heads; h++)
        for (int64_t i = 0; i < c->rope.n_dims / 2; i++) {
            double a = (double)pos * inv_freq(c, i);
            double cs = cos(a), sn = sin(a);
            double *p = v + h * D + 2 * i;
            double x0 = p[0], x1 = p[1];
            p[0] = x0 * cs - x1 * sn;
            p[1] = x0 * sn + x1 * cs;
        }
}

static double silu(double x) {
    return x / (1 + exp(-x));
}

/* logits [T][V] of tokens[0..T) */
static void ref_forward(ref_model *r, const int32_t *tokens, int64_t T, double *logits) {
    const loom_model_config *c = &r->c;
    const int64_t d = c->dim, D = c->head_dim, Hq = c->n_heads, Hkv = c->n_kv_heads;
    const int64_t q_dim = Hq * D, kv_dim = Hkv * D, V = c->vocab_size;
    const int64_t F = c->ffn_dim > c->expert_ffn_dim ? c->ffn_dim : c->expert_ffn_dim;
    double *x = calloc((size_t)(T * d), sizeof *x);
    double *h = malloc((size_t)d * sizeof *h), *o = malloc((size_t)d * sizeof *o);
    double *q = malloc((size_t)(T * q_dim) * sizeof *q);
    double *k = malloc((size_t)(T * kv_dim) * sizeof *k),
           *v = malloc((size_t)(T * kv_dim) * sizeof *v);
    double *att = malloc((size_t)q_dim * sizeof *att), *sc = malloc((size_t)T * sizeof *sc);
    double *g = malloc((size_t)F * sizeof *g), *u = malloc((size_t)F * sizeof *u);
    double *rl = malloc((size_t)(c->n_experts + 1) * sizeof *rl);
    const float *emb = W(r, "token_embd.weight", 0);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < d; i++)
            x[t * d + i] = emb[(int64_t)tokens[t] * d + i];
    for (int64_t l = 0; l < c->n_layers; l++) {
        for (int64_t t = 0; t < T; t++) {
            rmsnorm(x + t * d, W(r, "blk.%lld.attn_norm.weight", l), d, c->rms_eps, h);
            linear(W(r, "blk.%lld.attn_q.weight", l), h, d, q_dim, q + t * q_dim);
            linear(W(r, "blk.%lld.attn_k.weight", l), h, d, kv_dim, k + t * kv_dim);
            linear(W(r, "blk.%lld.attn_v.weight", l), h, d, kv_dim, v + t * kv_dim);
            rope(c, q + t * q_dim, Hq, t);
            rope(c, k + t * kv_dim, Hkv, t);
        }
        for (int64_t t = 0; t < T; t++) {
            for (int64_t hh = 0; hh < Hq; hh++) {
                const int64_t kh = hh / (Hq / Hkv);
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j <= t; j++) {
                    double s = 0;
                    for (int64_t e = 0; e < D; e++)
                        s += q[t * q_dim + hh * D + e] * k[j * kv_dim + kh * D + e];
                    sc[j] = s / sqrt((double)D);
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int64_t j = 0; j <= t; j++)
                    sum += (sc[j] = exp(sc[j] - mx));
                for (int64_t e = 0; e < D; e++) {
                    double a = 0;
                    for (int64_t j = 0; j <= t; j++)
                        a += sc[j] / sum * v[j * kv_dim + kh * D + e];
                    att[hh * D + e] = a;
                }
            }
            linear(W(r, "blk.%lld.attn_output.weight", l), att, q_dim, d, o);
            for (int64_t i = 0; i < d; i++)
                x[t * d + i] += o[i];
            rmsnorm(x + t * d, W(r, "blk.%lld.ffn_norm.weight", l), d, c->rms_eps, h);
            if (loom_model_config_layer_is_moe(c, l)) {
                const int64_t E = c->n_experts, Fe = c->expert_ffn_dim;
                linear(W(r, "blk.%lld.ffn_gate_inp.weight", l), h, d, E, rl);
                int sel[16];
                double wsel[16], mxl = -INFINITY, z = 0;
                for (int64_t s = 0; s < c->n_experts_used; s++) {
                    int best = -1;
                    for (int e = 0; e < E; e++) {
                        bool taken = false;
                        for (int64_t q2 = 0; q2 < s; q2++)
                            taken |= sel[q2] == e;
                        if (!taken && (best < 0 || rl[e] > rl[best])) best = e;
                    }
                    sel[s] = best;
                    if (rl[best] > mxl) mxl = rl[best];
                }
                for (int64_t s = 0; s < c->n_experts_used; s++)
                    z += (wsel[s] = exp(rl[sel[s]] - mxl));
                const float *wg = W(r, "blk.%lld.ffn_gate_exps.weight", l);
                const float *wu = W(r, "blk.%lld.ffn_up_exps.weight", l);
                const float *wd = W(r, "blk.%lld.ffn_down_exps.weight", l);
                for (int64_t i = 0; i < d; i++)
                    o[i] = 0;
                for (int64_t s = 0; s < c->n_experts_used; s++) {
                    const int64_t e = sel[s];
                    linear(wg + e * Fe * d, h, d, Fe, g);
                    linear(wu + e * Fe * d, h, d, Fe, u);
                    for (int64_t f = 0; f < Fe; f++)
                        g[f] = silu(g[f]) * u[f];
                    double *dn = att; /* scratch of >= d entries (q_dim >= d here) */
                    linear(wd + e * d * Fe, g, Fe, d, dn);
                    for (int64_t i = 0; i < d; i++)
                        o[i] += wsel[s] / z * dn[i];
                }
            } else {
                const int64_t Fd = c->ffn_dim;
                linear(W(r, "blk.%lld.ffn_gate.weight", l), h, d, Fd, g);
                linear(W(r, "blk.%lld.ffn_up.weight", l), h, d, Fd, u);
                for (int64_t f = 0; f < Fd; f++)
                    g[f] = silu(g[f]) * u[f];
                linear(W(r, "blk.%lld.ffn_down.weight", l), g, Fd, d, o);
            }
            for (int64_t i = 0; i < d; i++)
                x[t * d + i] += o[i];
        }
    }
    const float *head = c->tie_embeddings ? emb : W(r, "output.weight", 0);
    for (int64_t t = 0; t < T; t++) {
        rmsnorm(x + t * d, W(r, "output_norm.weight", 0), d, c->rms_eps, h);
        linear(head, h, d, V, logits + t * V);
    }
    free(x);
    free(h);
    free(o);
    free(q);
    free(k);
    free(v);
    free(att);
    free(sc);
    free(g);
    free(u);
    free(rl);
}

/* ---------------- helpers ---------------- */

static loom_model_config tiny_config(bool tied) {
    loom_model_config c;
    char err[256];
    loom_model_config_preset("tiny-moe", &c, err, sizeof err);
    c.vocab_size = 97;
    c.dim = 64;
    c.n_layers = 3;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 16;
    c.ffn_dim = 96;
    c.max_ctx = 64;
    c.n_experts = 4;
    c.n_experts_used = 2;
    c.moe_every = 2;
    c.moe_offset = 1;
    c.expert_ffn_dim = 48;
    c.tie_embeddings = tied;
    c.rope = loom_rope_params_llama3(16);
    c.rope.mode = LOOM_ROPE_NORMAL;
    c.bos_id = 1;
    c.eos_id = 2;
    c.eot_id = -1;
    return c;
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

static loom_model *load(const char *path, loom_dtype kv, int slots) {
    loom_model_params p = loom_model_default_params();
    p.backend = "cpu";
    p.kv_dtype = kv;
    p.n_slots = slots;
    p.n_ctx = 32;
    loom_model *m = NULL;
    char err[512];
    loom_status st = loom_model_load_gguf(path, &p, &m, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "load: %s", err);
    return m;
}

static void test_against_reference(const char *path, bool tied) {
    loom_model_config c = tiny_config(tied);
    char err[512];
    CHECK_MSG(loom_model_write_random_gguf(&c, LOOM_F32, 7 + tied, NULL, path, err, sizeof err) ==
                  LOOM_OK,
              "%s", err);
    const int64_t T = 9, V = c.vocab_size;
    const int32_t tokens[9] = {1, 17, 42, 5, 96, 0, 33, 33, 64};
    loom_model *m = load(path, LOOM_F32, 1);
    if (!m) return;
    float *got = malloc((size_t)(T * V) * sizeof *got);
    double *want = malloc((size_t)(T * V) * sizeof *want);
    int slot = 0;
    loom_batch b = {1, (int)T, &slot, tokens, true};
    CHECK_MSG(loom_model_decode(m, &b, got, err, sizeof err) == LOOM_OK, "%s", err);

    ref_model r = {0};
    CHECK(loom_gguf_open(path, &r.g, err, sizeof err) == LOOM_OK);
    CHECK(loom_model_config_from_gguf(r.g, &r.c, err, sizeof err) == LOOM_OK);
    CHECK(r.c.tie_embeddings == tied && r.c.rope.scaling == LOOM_ROPE_SCALING_LLAMA3);
    ref_forward(&r, tokens, T, want);
    double lo = INFINITY, hi = -INFINITY, worst = 0;
    for (int64_t i = 0; i < T * V; i++) {
        lo = want[i] < lo ? want[i] : lo;
        hi = want[i] > hi ? want[i] : hi;
        double dd = fabs(got[i] - want[i]);
        if (!(dd <= worst)) worst = dd;
    }
    printf("%s head: logits range %.3f, max abs err %.3g (%.3g of the range)\n",
           tied ? "tied" : "untied", hi - lo, worst, worst / (hi - lo));
    CHECK(hi - lo > 1.0);
    CHECK_MSG(worst <= 1e-4 * (hi - lo), "max abs err %g vs range %g", worst, hi - lo);
    loom_gguf_close(r.g);
    free(got);
    free(want);
    loom_model_free(m);
}

/* loom_model_load_random: the same config, weight type and seed as the file
 * at path (test_against_reference's untied model, seed 7) give bit-identical
 * logits without a file, and a random-weight model says so. */
static void test_load_random(const char *path) {
    loom_model_config c = tiny_config(false);
    loom_model_params p = loom_model_default_params();
    p.backend = "cpu";
    p.kv_dtype = LOOM_F32;
    p.n_ctx = 32;
    loom_model *mem = NULL, *file = load(path, LOOM_F32, 1);
    char err[512];
    CHECK_MSG(loom_model_load_random(&c, LOOM_F32, 7, &p, &mem, err, sizeof err) == LOOM_OK, "%s",
              err);
    if (!mem || !file) {
        loom_model_free(mem);
        loom_model_free(file);
        return;
    }
    CHECK(loom_model_random_weights(mem) && loom_model_tokenizer(mem) == NULL);
    CHECK(loom_model_weight_bytes(mem) == loom_model_weight_bytes(file));
    const int V = (int)c.vocab_size;
    const int32_t tokens[5] = {3, 1, 4, 1, 5};
    float *a = malloc(sizeof *a * 5 * (size_t)V), *b = malloc(sizeof *b * 5 * (size_t)V);
    int slot = 0;
    loom_batch bt = {1, 5, &slot, tokens, true};
    CHECK_MSG(loom_model_decode(mem, &bt, a, err, sizeof err) == LOOM_OK, "%s", err);
    CHECK_MSG(loom_model_decode(file, &bt, b, err, sizeof err) == LOOM_OK, "%s", err);
    CHECK_MSG(memcmp(a, b, sizeof *a * 5 * (size_t)V) == 0, "in-memory logits differ from file");
    /* A bad config fails with the writer's message and leaves *out NULL. */
    loom_model *bad = (loom_model *)1;
    c.dim = 0;
    CHECK(loom_model_load_random(&c, LOOM_F32, 8, &p, &bad, err, sizeof err) != LOOM_OK &&
          bad == NULL && strstr(err, "init-model:"));
    free(a);
    free(b);
    loom_model_free(mem);
    loom_model_free(file);
}

/* Decode with the f16 KV cache: prefill 4, then one token at a time. */
static void test_kv_decode(const char *path) {
    const int64_t T = 9, V = 97;
    const int32_t tokens[9] = {1, 17, 42, 5, 96, 0, 33, 33, 64};
    loom_model *m = load(path, LOOM_F16, 2);
    if (!m) return;
    char err[512];
    float *full = malloc((size_t)(T * V) * sizeof *full);
    float *step = malloc((size_t)V * sizeof *step);
    int slot = 0;
    loom_batch b = {1, (int)T, &slot, tokens, true};
    CHECK_MSG(loom_model_decode(m, &b, full, err, sizeof err) == LOOM_OK, "%s", err);
    CHECK(loom_model_slot_pos(m, 0) == T);
    loom_model_slot_clear(m, 0);

    b = (loom_batch){1, 4, &slot, tokens, false};
    CHECK_MSG(loom_model_decode(m, &b, step, err, sizeof err) == LOOM_OK, "%s", err);
    double worst = max_abs_diff(step, full + 3 * V, V);
    int builds0 = 0, builds1 = 0, runs = 0;
    loom_model_graph_stats(m, &builds0, NULL);
    for (int64_t t = 4; t < T; t++) {
        b = (loom_batch){1, 1, &slot, tokens + t, false};
        CHECK_MSG(loom_model_decode(m, &b, step, err, sizeof err) == LOOM_OK, "%s", err);
        double d = max_abs_diff(step, full + t * V, V);
        if (!(d <= worst)) worst = d;
    }
    loom_model_graph_stats(m, &builds1, &runs);
    printf("kv decode vs full sequence: max abs diff %.3g; graphs built %d for %d runs\n", worst,
           builds1, runs);
    CHECK_MSG(worst <= 1e-4, "decode differs from the full sequence by %g", worst);
    CHECK_MSG(builds1 == builds0 + 1, "the decode graph was built %d times", builds1 - builds0);

    /* Two sequences in one batched step == each on its own. Slot 1 gets a
     * shorter, different history so positions differ. */
    const int32_t other[3] = {1, 50, 60};
    int s1 = 1;
    b = (loom_batch){1, 3, &s1, other, false};
    CHECK(loom_model_decode(m, &b, step, err, sizeof err) == LOOM_OK);
    /* Reference: the next token of each sequence alone (then rewind). */
    float *alone = malloc((size_t)(2 * V) * sizeof *alone);
    const int32_t nxt[2] = {7, 8};
    b = (loom_batch){1, 1, &slot, &nxt[0], false};
    CHECK(loom_model_decode(m, &b, alone, err, sizeof err) == LOOM_OK);
    b = (loom_batch){1, 1, &s1, &nxt[1], false};
    CHECK(loom_model_decode(m, &b, alone + V, err, sizeof err) == LOOM_OK);
    CHECK(loom_model_slot_truncate(m, 0, T) == LOOM_OK);
    CHECK(loom_model_slot_truncate(m, 1, 3) == LOOM_OK);
    float *both = malloc((size_t)(2 * V) * sizeof *both);
    const int slots[2] = {0, 1};
    b = (loom_batch){2, 1, slots, nxt, false};
    CHECK_MSG(loom_model_decode(m, &b, both, err, sizeof err) == LOOM_OK, "%s", err);
    double db = max_abs_diff(both, alone, 2 * V);
    printf("two sequences batched vs alone: max abs diff %.3g\n", db);
    CHECK(db <= 1e-4);
    CHECK(loom_model_slot_pos(m, 0) == T + 1 && loom_model_slot_pos(m, 1) == 4);

    /* Errors: context overflow and bad ids are reported, state unchanged. */
    int32_t many[32] = {0};
    b = (loom_batch){1, 32, &slot, many, false};
    CHECK(loom_model_decode(m, &b, step, err, sizeof err) == LOOM_ERR_INVALID_ARG &&
          strstr(err, "context"));
    int32_t bad = 97;
    b = (loom_batch){1, 1, &slot, &bad, false};
    CHECK(loom_model_decode(m, &b, step, err, sizeof err) == LOOM_ERR_INVALID_ARG &&
          strstr(err, "vocabulary"));
    CHECK(loom_model_slot_pos(m, 0) == T + 1);
    free(alone);
    free(both);
    loom_model_free(m);

    /* q8_0 KV cache: prefill + decode stay close to the f16-cache logits
     * (quantization error only; documented bound 2% of the logit range). */
    m = load(path, LOOM_Q8_0, 1);
    if (m) {
        b = (loom_batch){1, 4, &slot, tokens, false};
        CHECK_MSG(loom_model_decode(m, &b, step, err, sizeof err) == LOOM_OK, "%s", err);
        double wq = max_abs_diff(step, full + 3 * V, V), lo = INFINITY, hi = -INFINITY;
        for (int64_t t = 4; t < T; t++) {
            b = (loom_batch){1, 1, &slot, tokens + t, false};
            CHECK(loom_model_decode(m, &b, step, err, sizeof err) == LOOM_OK);
            double d = max_abs_diff(step, full + t * V, V);
            if (!(d <= wq)) wq = d;
        }
        for (int64_t i = 0; i < T * V; i++) {
            lo = full[i] < lo ? full[i] : lo;
            hi = full[i] > hi ? full[i] : hi;
        }
        printf("q8_0 kv cache vs f16: max abs diff %.3g (%.3g of the range)\n", wq, wq / (hi - lo));
        CHECK(wq > 0 && wq <= 0.02 * (hi - lo));
        loom_model_free(m);
    }
    free(full);
    free(step);
}

/* Rewrite the GGUF at src into dst with the config keys, dropping tensor
 * `drop` and giving tensor `reshape` a wrong shape. rope_freqs: 0 drops the
 * rope keys and rope_freqs.weight; 1 keeps llama.cpp's form of llama3
 * scaling (freq_base + rope_freqs.weight, no scaling keys); 2 does the same
 * with the last factor off by 1%. */
static loom_status rewrite(const char *src, const char *dst, const char *drop, const char *reshape,
                           int rope_freqs) {
    loom_gguf *g = NULL;
    char err[256];
    LOOM_TRY(loom_gguf_open(src, &g, err, sizeof err));
    loom_gguf_writer *w = NULL;
    loom_status st = loom_gguf_writer_new(&w);
    static const char *const u32keys[] = {"llama.vocab_size",
                                          "llama.context_length",
                                          "llama.embedding_length",
                                          "llama.block_count",
                                          "llama.feed_forward_length",
                                          "llama.attention.head_count",
                                          "llama.attention.head_count_kv",
                                          "llama.expert_count",
                                          "llama.expert_used_count",
                                          "loom.moe_every",
                                          "loom.moe_offset"};
    if (st == LOOM_OK) st = loom_gguf_writer_set_str(w, "general.architecture", "llama");
    for (size_t i = 0; i < sizeof u32keys / sizeof *u32keys && st == LOOM_OK; i++) {
        int64_t v;
        st = loom_gguf_get_int(g, u32keys[i], &v);
        if (st == LOOM_OK) st = loom_gguf_writer_set_u32(w, u32keys[i], (uint32_t)v);
    }
    float theta = 0.0f, freqs[64];
    if (rope_freqs && st == LOOM_OK) {
        st = loom_gguf_get_f32(g, "llama.rope.freq_base", &theta);
        if (st == LOOM_OK) st = loom_gguf_writer_set_f32(w, "llama.rope.freq_base", theta);
    }
    for (int64_t i = 0; i < loom_gguf_n_tensors(g) && st == LOOM_OK; i++) {
        loom_gguf_tensor_info ti;
        loom_gguf_tensor(g, i, &ti);
        if (drop && !strcmp(ti.name, drop)) continue;
        const void *data = ti.data;
        if (!strcmp(ti.name, "rope_freqs.weight")) {
            if (!rope_freqs || ti.ne[0] > 64) continue;
            memcpy(freqs, ti.data, (size_t)ti.ne[0] * sizeof *freqs);
            if (rope_freqs == 2) freqs[ti.ne[0] - 1] *= 1.01f;
            data = freqs;
        }
        int64_t ne[4];
        memcpy(ne, ti.ne, sizeof ne);
        int nd = ti.n_dims;
        if (reshape && !strcmp(ti.name, reshape)) { /* same bytes, transposed extents */
            int64_t t = ne[0];
            ne[0] = ne[1];
            ne[1] = t;
        }
        st = loom_gguf_writer_add_tensor(w, ti.name, LOOM_F32, nd, ne, data);
    }
    if (st == LOOM_OK) st = loom_gguf_writer_write(w, dst);
    loom_gguf_writer_free(w);
    loom_gguf_close(g);
    return st;
}

static void test_malformed(const char *path, const char *bad) {
    char err[512];
    loom_model_params p = loom_model_default_params();
    p.backend = "cpu";
    p.n_ctx = 16;
    loom_model *m = NULL;
    CHECK(rewrite(path, bad, NULL, NULL, 0) == LOOM_OK);
    CHECK_MSG(loom_model_load_gguf(bad, &p, &m, err, sizeof err) == LOOM_OK, "%s", err);
    loom_model_free(m);
    m = NULL;

    /* llama.cpp's form of llama3 scaling alone is recognised... */
    CHECK(rewrite(path, bad, NULL, NULL, 1) == LOOM_OK);
    CHECK_MSG(loom_model_load_gguf(bad, &p, &m, err, sizeof err) == LOOM_OK, "%s", err);
    if (m) {
        const loom_rope_params *r = &loom_model_config_of(m)->rope;
        CHECK_MSG(r->scaling == LOOM_ROPE_SCALING_LLAMA3 && r->factor == 8.0f &&
                      r->low_freq_factor == 1.0f && r->high_freq_factor == 4.0f &&
                      r->orig_ctx == 8192,
                  "rope from rope_freqs.weight: scaling %d factor %g", r->scaling, r->factor);
    }
    loom_model_free(m);
    m = NULL;
    /* ...and factors that match no published parameter set are refused. */
    CHECK(rewrite(path, bad, NULL, NULL, 2) == LOOM_OK);
    loom_status rs = loom_model_load_gguf(bad, &p, &m, err, sizeof err);
    printf("bad rope_freqs: %s\n", err);
    CHECK(rs == LOOM_ERR_UNSUPPORTED && m == NULL && strstr(err, "rope_freqs.weight"));

    CHECK(rewrite(path, bad, "blk.1.ffn_up_exps.weight", NULL, 0) == LOOM_OK);
    loom_status st = loom_model_load_gguf(bad, &p, &m, err, sizeof err);
    printf("missing tensor: %s\n", err);
    CHECK(st == LOOM_ERR_FORMAT && m == NULL && strstr(err, "'blk.1.ffn_up_exps.weight'") &&
          strstr(err, "missing"));

    CHECK(rewrite(path, bad, NULL, "blk.2.attn_k.weight", 0) == LOOM_OK);
    st = loom_model_load_gguf(bad, &p, &m, err, sizeof err);
    printf("wrong shape: %s\n", err);
    CHECK(st == LOOM_ERR_FORMAT && m == NULL && strstr(err, "'blk.2.attn_k.weight'") &&
          strstr(err, "shape"));

    /* A config key that breaks validation names the field. */
    loom_gguf_writer *w = NULL;
    CHECK(loom_gguf_writer_new(&w) == LOOM_OK);
    loom_gguf_writer_set_str(w, "general.architecture", "llama");
    loom_gguf_writer_set_u32(w, "llama.embedding_length", 64);
    loom_gguf_writer_set_u32(w, "llama.block_count", 1);
    loom_gguf_writer_set_u32(w, "llama.feed_forward_length", 96);
    loom_gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    loom_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 3);
    loom_gguf_writer_set_u32(w, "llama.vocab_size", 10);
    CHECK(loom_gguf_writer_write(w, bad) == LOOM_OK);
    loom_gguf_writer_free(w);
    st = loom_model_load_gguf(bad, &p, &m, err, sizeof err);
    printf("bad config: %s\n", err);
    CHECK(st == LOOM_ERR_FORMAT && strstr(err, "n_kv_heads"));
    unlink(bad);
}

int main(void) {
    CHECK(loom_registry_init() == LOOM_OK);
    char path[64], bad[64];
    snprintf(path, sizeof path, "/tmp/loom_test_model_%d.gguf", (int)getpid());
    snprintf(bad, sizeof bad, "/tmp/loom_test_model_bad_%d.gguf", (int)getpid());
    test_against_reference(path, true);
    test_against_reference(path, false); /* leaves the untied model at path */
    test_load_random(path);
    test_kv_decode(path);
    test_malformed(path, bad);
    unlink(path);
    loom_registry_shutdown();
    return test_summary("test_model_forward");
}
