/* tests/model/test_model_export.c - loom_model_export_gguf and
 * quantize-on-load from GGUF (docs/adr/0012).
 *
 * A small random f32 model (dense + MoE layer, untied LM head, 256 tokens)
 * is exported to f32/f16/q8_0/q4_0, each file loaded with
 * loom_model_load_gguf on the cpu backend (f32 KV cache) and run on one
 * 12-token prompt (all positions). Asserted:
 *   - the files: GGUF v3, general.file_type / quantization_version set,
 *     every source key/value carried over, tensors in source order with the
 *     loom_model_store_type types (norms and router f32);
 *   - f32 export: logits bit-identical to the source's;
 *   - NMSE of the logits against the f32 model's below EXPORT_NMSE[type];
 *   - quantize-on-load (params.quantize) of the f32 file to q8_0/q4_0/f16
 *     gives logits bit-identical to loading the exported file (one policy);
 *   - --quant nf4: matrices nf4_dq, embedding/LM head f16, NMSE bound;
 *   - errors: nf4 export refused with the reason, unknown type, missing
 *     input, a directory without config.json, output == input, missing
 *     output directory, a tensor type loom cannot dequantize (iq4_xs): each a
 *     status, a message naming the problem, and no file written.
 * Quantize-on-load of Hugging Face checkpoints: test_hf_quant_load.c. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/gguf.h"
#include "loom/model.h"
#include "loom/runtime.h"
#include "testing.h"

/* NMSE of the logits against the f32 model's (12 positions x 256 tokens;
 * random weights uniform with std 1/sqrt(fan_in), f32 KV cache). Measured on
 * the cpu backend: f16 7.1e-7, q8_0 2.1e-3, q4_0 5.6e-2, nf4 9.0e-2.
 * Why that much: each quantized matrix on the path (q/k/v/o and the FFN of
 * 2 layers, the embedding, the LM head) adds about its weight NMSE (f16
 * ~2e-8, q8_0 1.5e-5, q4_0 4e-3, nf4 ~6e-3 for uniform weights, which suit
 * NF4's normal-shaped codebook badly), ~15x in all; q8_0 is 10x more again
 * than a dense model of the same size (2.4e-4) because its MoE layer's
 * top-2 of 4 routing flips for a few tokens. A wrong block layout, scale or
 * nibble order gives NMSE near 1. Bounds ~2-3x the measured: */
#define NMSE_F16  3e-6
#define NMSE_Q8_0 6e-3
#define NMSE_Q4_0 0.15
#define NMSE_NF4  0.2

#define T 12

static char g_dir[256];

static loom_model_config small_config(void) {
    loom_model_config c;
    char err[256];
    loom_model_config_preset("tiny-moe", &c, err, sizeof err);
    c.vocab_size = 256;
    c.dim = 128;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 32;
    c.ffn_dim = 256;
    c.max_ctx = 64;
    c.n_experts = 4;
    c.n_experts_used = 2;
    c.moe_every = 2;
    c.moe_offset = 1;
    c.expert_ffn_dim = 128;
    c.tie_embeddings = false;
    c.rope = loom_rope_params_llama3(32);
    c.rope.mode = LOOM_ROPE_NORMAL;
    c.bos_id = 1;
    c.eos_id = 2;
    c.eot_id = -1;
    return c;
}

static const int32_t k_tokens[T] = {1, 17, 42, 5, 200, 0, 33, 33, 64, 255, 128, 9};

/* All-position logits of the model at path (loaded as p says), malloc'd. */
static float *logits_of(const char *path, bool quantize, loom_dtype quant, char *wtypes,
                        size_t wn) {
    loom_model_params p = loom_model_default_params();
    p.backend = "cpu";
    p.kv_dtype = LOOM_F32;
    p.n_ctx = 32;
    p.quantize = quantize;
    p.quant = quant;
    loom_model *m = NULL;
    char err[512];
    loom_status s = loom_model_load(path, &p, &m, err, sizeof err);
    CHECK_MSG(s == LOOM_OK, "load %s: %s", path, err);
    if (s != LOOM_OK) return NULL;
    if (wtypes) snprintf(wtypes, wn, "%s", loom_model_weight_types(m));
    const int64_t V = loom_model_config_of(m)->vocab_size;
    float *out = malloc((size_t)(T * V) * sizeof *out);
    int slot = 0;
    loom_batch b = {1, T, &slot, k_tokens, true};
    s = loom_model_decode(m, &b, out, err, sizeof err);
    CHECK_MSG(s == LOOM_OK, "decode %s: %s", path, err);
    loom_model_free(m);
    if (s != LOOM_OK) {
        free(out);
        return NULL;
    }
    return out;
}

static double nmse(const float *got, const float *want, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return den > 0 ? num / den : INFINITY;
}

/* The exported file's metadata and tensor types against the source's. */
static void check_file(const char *src, const char *out, loom_dtype type) {
    char err[512];
    loom_gguf *a = NULL, *b = NULL;
    CHECK_MSG(loom_gguf_open(src, &a, err, sizeof err) == LOOM_OK, "%s", err);
    CHECK_MSG(loom_gguf_open(out, &b, err, sizeof err) == LOOM_OK, "%s", err);
    if (!a || !b) goto done;
    CHECK(loom_gguf_version(b) == 3);
    uint32_t ft = 99, qv = 0;
    CHECK(loom_gguf_get_u32(b, "general.file_type", &ft) == LOOM_OK &&
          (int)ft == loom_model_gguf_file_type(type));
    CHECK(loom_gguf_get_u32(b, "general.quantization_version", &qv) == LOOM_OK && qv == 2);
    for (int64_t i = 0; i < loom_gguf_n_kv(a); i++) {
        const char *k = loom_gguf_kv_key(a, i);
        int64_t j = loom_gguf_find_kv(b, k);
        CHECK_MSG(j >= 0 && loom_gguf_kv_type(b, j) == loom_gguf_kv_type(a, i), "key %s", k);
    }
    uint64_t seed = 0;
    CHECK(loom_gguf_get_u64(b, "loom.seed", &seed) == LOOM_OK && seed == 11);
    CHECK(loom_gguf_n_tensors(a) == loom_gguf_n_tensors(b));
    for (int64_t i = 0; i < loom_gguf_n_tensors(a) && i < loom_gguf_n_tensors(b); i++) {
        loom_gguf_tensor_info ta, tb;
        loom_gguf_tensor(a, i, &ta);
        loom_gguf_tensor(b, i, &tb);
        loom_dtype want, got = LOOM_DTYPE_COUNT;
        loom_model_store_type(ta.name, ta.n_dims, ta.ne, type, &want);
        loom_gguf_tensor_dtype(b, i, &got);
        CHECK_MSG(!strcmp(ta.name, tb.name) && ta.n_dims == tb.n_dims &&
                      !memcmp(ta.ne, tb.ne, sizeof ta.ne) && got == want,
                  "%s: %s %s, want %s", ta.name, tb.name, loom_dtype_name(got),
                  loom_dtype_name(want));
        if (ta.n_dims == 1 || strstr(ta.name, "ffn_gate_inp"))
            CHECK_MSG(got == LOOM_F32 && !memcmp(ta.data, tb.data, ta.nbytes),
                      "%s must stay f32, unchanged", ta.name);
    }
done:
    loom_gguf_close(a);
    loom_gguf_close(b);
}

static void test_policy(void) {
    const int64_t v1[1] = {128}, m[2] = {128, 64}, odd[2] = {48, 64}, e3[3] = {128, 64, 4};
    loom_dtype t;
    CHECK(loom_model_store_type("blk.0.attn_norm.weight", 1, v1, LOOM_Q4_0, &t) == LOOM_OK &&
          t == LOOM_F32);
    CHECK(loom_model_store_type("blk.1.ffn_gate_inp.weight", 2, m, LOOM_Q8_0, &t) == LOOM_OK &&
          t == LOOM_F32);
    CHECK(loom_model_store_type("blk.0.attn_q.weight", 2, m, LOOM_Q4_0, &t) == LOOM_OK &&
          t == LOOM_Q4_0);
    CHECK(loom_model_store_type("blk.0.attn_q.weight", 2, odd, LOOM_Q8_0, &t) == LOOM_OK &&
          t == LOOM_F16); /* 48 is not a multiple of 32 */
    CHECK(loom_model_store_type("token_embd.weight", 2, m, LOOM_Q8_0, &t) == LOOM_OK &&
          t == LOOM_Q8_0);
    CHECK(loom_model_store_type("token_embd.weight", 2, m, LOOM_NF4, &t) == LOOM_OK &&
          t == LOOM_F16);
    CHECK(loom_model_store_type("output.weight", 2, m, LOOM_NF4_DQ, &t) == LOOM_OK &&
          t == LOOM_F16);
    CHECK(loom_model_store_type("blk.1.ffn_up_exps.weight", 3, e3, LOOM_NF4, &t) == LOOM_OK &&
          t == LOOM_NF4_DQ);
    CHECK(loom_model_store_type("x", 2, m, LOOM_I32, &t) == LOOM_ERR_INVALID_ARG);
    /* ggml's legacy types: blocks of 32 like q4_0, f16 otherwise; llama.cpp's file types */
    static const loom_dtype lq[3] = {LOOM_Q4_1, LOOM_Q5_0, LOOM_Q5_1};
    static const int lft[3] = {3, 8, 9};
    for (int i = 0; i < 3; i++) {
        CHECK(loom_model_store_type("blk.0.ffn_up.weight", 2, m, lq[i], &t) == LOOM_OK &&
              t == lq[i]);
        CHECK(loom_model_store_type("blk.0.ffn_up.weight", 2, odd, lq[i], &t) == LOOM_OK &&
              t == LOOM_F16);
        CHECK(loom_model_store_type("blk.0.attn_norm.weight", 1, v1, lq[i], &t) == LOOM_OK &&
              t == LOOM_F32);
        CHECK(loom_model_gguf_file_type(lq[i]) == lft[i]);
    }
    CHECK(loom_model_gguf_file_type(LOOM_Q8_0) == 7 && loom_model_gguf_file_type(LOOM_Q4_0) == 2 &&
          loom_model_gguf_file_type(LOOM_F16) == 1 && loom_model_gguf_file_type(LOOM_F32) == 0 &&
          loom_model_gguf_file_type(LOOM_NF4) == -1);
}

static void test_roundtrip(const char *src, const float *ref, int64_t n) {
    static const loom_dtype types[] = {LOOM_F32, LOOM_F16, LOOM_Q8_0, LOOM_Q4_0};
    static const double bounds[] = {0, NMSE_F16, NMSE_Q8_0, NMSE_Q4_0};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        char out[512], err[512];
        snprintf(out, sizeof out, "%s/export_%s.gguf", g_dir, loom_dtype_name(types[k]));
        loom_export_params p = {.type = types[k]};
        loom_export_stats st = {0};
        loom_status s = loom_model_export_gguf(src, out, &p, &st, err, sizeof err);
        CHECK_MSG(s == LOOM_OK, "export %s: %s", loom_dtype_name(types[k]), err);
        if (s != LOOM_OK) continue;
        CHECK(st.n_tensors > 0 && st.bytes_out > 0 &&
              (types[k] == LOOM_F32 ? st.n_converted == 0 : st.n_converted > 0));
        check_file(src, out, types[k]);
        float *got = logits_of(out, false, LOOM_F32, NULL, 0);
        if (got) {
            double e = nmse(got, ref, n);
            printf("export %-4s: %lld tensors (%lld converted), %zu -> %zu bytes, logits NMSE "
                   "%.3g (bound %g)\n",
                   loom_dtype_name(types[k]), (long long)st.n_tensors, (long long)st.n_converted,
                   st.bytes_in, st.bytes_out, e, bounds[k]);
            if (types[k] == LOOM_F32)
                CHECK_MSG(!memcmp(got, ref, (size_t)n * sizeof *got), "f32 export changed logits");
            else
                CHECK_MSG(e <= bounds[k], "%s: NMSE %g > %g", loom_dtype_name(types[k]), e,
                          bounds[k]);
        }
        /* quantize-on-load of the source: the same bytes, so the same logits */
        if (types[k] != LOOM_F32) {
            char wt[64] = "";
            float *q = logits_of(src, true, types[k], wt, sizeof wt);
            CHECK_MSG(q && got && !memcmp(q, got, (size_t)n * sizeof *q),
                      "quantize-on-load %s differs from the exported file",
                      loom_dtype_name(types[k]));
            CHECK_MSG(!strcmp(wt, loom_dtype_name(types[k])), "weight types '%s'", wt);
            free(q);
        }
        free(got);
        unlink(out);
    }
    /* nf4: matrices nf4_dq, embedding and LM head f16 */
    char wt[64] = "";
    float *q = logits_of(src, true, LOOM_NF4, wt, sizeof wt);
    if (q) {
        double e = nmse(q, ref, n);
        printf("quantize-on-load nf4: weights %s, logits NMSE %.3g (bound %g)\n", wt, e, NMSE_NF4);
        CHECK_MSG(e <= NMSE_NF4, "nf4: NMSE %g", e);
        CHECK_MSG(!strcmp(wt, "f16+nf4_dq"), "nf4 weight types '%s'", wt);
    }
    free(q);
}

static void expect_fail(const char *in, const char *out, loom_dtype type, loom_status want,
                        const char *needle) {
    char err[1024] = "";
    loom_export_params p = {.type = type};
    loom_status s = loom_model_export_gguf(in, out, &p, NULL, err, sizeof err);
    CHECK_MSG(s == want && strstr(err, needle), "export %s -> %s (%s): status %d, '%s'", in, out,
              loom_dtype_name(type), (int)s, err);
    if (strcmp(in, out) != 0) CHECK_MSG(access(out, F_OK) != 0, "%s was written", out);
    printf("error as expected: %s\n", err);
}

/* A llama GGUF whose token_embd is iq4_xs (a type loom cannot dequantize). */
static void write_q4k_model(const char *src, const char *path) {
    char err[512];
    loom_gguf *g = NULL;
    loom_gguf_writer *w = NULL;
    CHECK(loom_gguf_open(src, &g, err, sizeof err) == LOOM_OK);
    CHECK(loom_gguf_writer_new(&w) == LOOM_OK);
    if (!g || !w) goto done;
    for (int64_t i = 0; i < loom_gguf_n_kv(g); i++)
        CHECK(loom_gguf_writer_copy_kv(w, g, i) == LOOM_OK);
    CHECK(loom_gguf_writer_copy_kv(w, g, loom_gguf_n_kv(g)) == LOOM_ERR_INVALID_ARG);
    static uint8_t q4k[128 * 256 / 256 * 144];
    for (int64_t i = 0; i < loom_gguf_n_tensors(g); i++) {
        loom_gguf_tensor_info ti;
        loom_gguf_tensor(g, i, &ti);
        if (!strcmp(ti.name, "token_embd.weight")) {
            const int64_t ne[2] = {256, 128}; /* iq4_xs blocks: 256 values, 136 bytes */
            CHECK(loom_gguf_writer_add_tensor_ggml(w, ti.name, 23, 2, ne, q4k) == LOOM_OK);
        } else {
            CHECK(loom_gguf_writer_add_tensor_ggml(w, ti.name, ti.ggml_type, ti.n_dims, ti.ne,
                                                   ti.data) == LOOM_OK);
        }
    }
    CHECK(loom_gguf_writer_write(w, path) == LOOM_OK);
done:
    loom_gguf_writer_free(w);
    loom_gguf_close(g);
}

static void test_errors(const char *src) {
    char out[512], bad[512];
    snprintf(out, sizeof out, "%s/export_err.gguf", g_dir);
    expect_fail(src, out, LOOM_NF4, LOOM_ERR_UNSUPPORTED, "not a GGUF tensor type");
    expect_fail(src, out, LOOM_NF4_DQ, LOOM_ERR_UNSUPPORTED, "llama.cpp has no NormalFloat-4");
    expect_fail(src, out, LOOM_I32, LOOM_ERR_INVALID_ARG, "cannot be exported");
    expect_fail("/nonexistent/model.gguf", out, LOOM_Q8_0, LOOM_ERR_IO, "/nonexistent/model.gguf");
    expect_fail(g_dir, out, LOOM_Q8_0, LOOM_ERR_IO, "without config.json");
    expect_fail(src, src, LOOM_Q8_0, LOOM_ERR_INVALID_ARG, "is the input");
    expect_fail(src, "/nonexistent-dir/x.gguf", LOOM_Q8_0, LOOM_ERR_IO, "not writable");
    snprintf(bad, sizeof bad, "%s/export_q4k.gguf", g_dir);
    write_q4k_model(src, bad);
    expect_fail(bad, out, LOOM_Q8_0, LOOM_ERR_UNSUPPORTED,
                "'token_embd.weight' has ggml type iq4_xs");
    unlink(bad);
    /* not a GGUF at all */
    FILE *f = fopen(bad, "wb");
    if (f) {
        fputs("definitely not a gguf file, but long enough to have a header", f);
        fclose(f);
    }
    expect_fail(bad, out, LOOM_Q8_0, LOOM_ERR_FORMAT, "magic");
    unlink(bad);
    /* quantize-on-load to a type that is not a weight type */
    loom_model_params p = loom_model_default_params();
    p.backend = "cpu";
    p.quantize = true;
    p.quant = LOOM_I32;
    loom_model *m = NULL;
    char err[512] = "";
    CHECK(loom_model_load(src, &p, &m, err, sizeof err) == LOOM_ERR_INVALID_ARG && !m);
    CHECK_MSG(strstr(err, "cannot quantize"), "%s", err);
}

int main(void) {
    CHECK(loom_registry_init() == LOOM_OK);
    snprintf(g_dir, sizeof g_dir, "/tmp/loom_test_export_%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", g_dir);
    CHECK(system(cmd) == 0);
    test_policy();
    char src[512], err[512];
    snprintf(src, sizeof src, "%s/src_f32.gguf", g_dir);
    loom_model_config c = small_config();
    loom_status s = loom_model_write_random_gguf(&c, LOOM_F32, 11, NULL, src, err, sizeof err);
    CHECK_MSG(s == LOOM_OK, "%s", err);
    float *ref = s == LOOM_OK ? logits_of(src, false, LOOM_F32, NULL, 0) : NULL;
    if (ref) {
        test_roundtrip(src, ref, (int64_t)T * c.vocab_size);
        test_errors(src);
    }
    free(ref);
    unlink(src);
    rmdir(g_dir);
    loom_registry_shutdown();
    return test_summary("test_model_export");
}
