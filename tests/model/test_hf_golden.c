/* tests/model/test_hf_golden.c - the Hugging Face reference checkpoints of
 * tests/model/data/hf/<name>/ (written by scripts/gen_hf_golden.py with
 * transformers) through loom's safetensors and config.json readers.
 *
 * For every model: config.json gives the config golden.txt recorded; the
 * checkpoint (single file or sharded index, and through its directory) holds
 * exactly the tensors golden.txt lists, with their dtypes and shapes; every
 * tensor name and shape include/loom/safetensors.h documents for the
 * architecture is there; every tensor converts to finite f32; logits.bin
 * holds the recorded [T, V] blocks with the recorded ranges.
 *
 * Then the model itself: the checkpoint is converted to GGUF
 * (loom_hf_write_gguf: llama.cpp names, q/k rows permuted for adjacent-pair
 * RoPE), loaded with loom_model_load_gguf on every available backend (cpu;
 * Vulkan on lavapipe in CI; CUDA/HIP on a GPU machine) and run on each
 * prompt:
 *   f32 weights, f32 KV cache: every position's logits within 1e-4 of the
 *     logit range of transformers' (max abs error / (max - min)), and greedy
 *     decoding (one token per step, through the KV cache) gives the tokens
 *     of transformers' generate();
 *   q8_0 weights, f16 KV cache: NMSE of the logits against transformers'
 *     below HF_Q8_NMSE (quantization error, not a bug; documented here). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "loom/model.h"
#include "loom/runtime.h"
#include "loom/safetensors.h"
#include "model/hf_golden.h"
#include "testing.h"

static void check_config(const hf_golden *g, const loom_model_config *c) {
    const char *n = g->name;
    CHECK_MSG(c->dim == g->dim && c->n_layers == g->n_layers && c->n_heads == g->n_heads &&
                  c->n_kv_heads == g->n_kv_heads && c->head_dim == g->head_dim &&
                  c->vocab_size == g->vocab_size && c->max_ctx == g->max_ctx,
              "%s: sizes differ from golden.txt", n);
    if (g->n_experts)
        CHECK_MSG(c->expert_ffn_dim == g->expert_ffn_dim && c->n_experts == g->n_experts &&
                      c->n_experts_used == g->n_experts_used && c->moe_every == 1,
                  "%s: experts", n);
    else
        CHECK_MSG(c->ffn_dim == g->ffn_dim && c->n_experts == 0, "%s: ffn", n);
    CHECK_MSG(c->rms_eps == g->rms_eps, "%s: rms_eps %g vs %g", n, c->rms_eps, g->rms_eps);
    CHECK_MSG(c->rope.theta == g->rope_theta && c->rope.mode == LOOM_ROPE_NEOX &&
                  c->rope.n_dims == c->head_dim,
              "%s: rope", n);
    CHECK_MSG(c->rope.scaling ==
                  (g->rope_llama3 ? LOOM_ROPE_SCALING_LLAMA3 : LOOM_ROPE_SCALING_NONE),
              "%s: rope scaling", n);
    if (g->rope_llama3)
        CHECK_MSG(c->rope.factor == g->rope_factor && c->rope.low_freq_factor == g->rope_low &&
                      c->rope.high_freq_factor == g->rope_high &&
                      c->rope.orig_ctx == g->rope_orig_ctx,
                  "%s: llama3 rope params", n);
    CHECK_MSG(c->tie_embeddings == g->tie && c->bos_id == g->bos_id && c->eos_id == g->eos_id,
              "%s: tie/bos/eos", n);
}

/* A tensor the architecture needs: present, with this PyTorch shape. */
static void want(loom_safetensors *st, const char *model, const char *name, int64_t d0, int64_t d1,
                 loom_dtype storage) {
    int64_t i = loom_safetensors_find(st, name);
    CHECK_MSG(i >= 0, "%s: tensor %s missing", model, name);
    if (i < 0) return;
    loom_st_tensor_info ti;
    loom_dtype dt;
    CHECK(loom_safetensors_tensor(st, i, &ti) == LOOM_OK);
    int nd = d1 ? 2 : 1;
    CHECK_MSG(ti.n_dims == nd && ti.shape[0] == d0 && (nd == 1 || ti.shape[1] == d1),
              "%s: %s has shape [%lld, %lld], want [%lld, %lld]", model, name,
              (long long)ti.shape[0], (long long)ti.shape[1], (long long)d0, (long long)d1);
    CHECK_MSG(loom_safetensors_tensor_dtype(st, i, &dt) == LOOM_OK && dt == storage, "%s: %s dtype",
              model, name);
}

static void check_layout(loom_safetensors *st, const hf_golden *g) {
    const int64_t H = g->dim, D = g->head_dim, q = g->n_heads * D, kv = g->n_kv_heads * D;
    loom_dtype s = g->storage;
    char nm[160];
    want(st, g->name, "model.embed_tokens.weight", g->vocab_size, H, s);
    want(st, g->name, "model.norm.weight", H, 0, s);
    if (g->tie)
        CHECK_MSG(loom_safetensors_find(st, "lm_head.weight") < 0, "%s: tied but has lm_head",
                  g->name);
    else
        want(st, g->name, "lm_head.weight", g->vocab_size, H, s);
    int64_t expected = 2 + !g->tie;
    for (int64_t l = 0; l < g->n_layers; l++) {
#define W(fmt, d0, d1)                                                                             \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "model.layers.%lld." fmt, (long long)l);                           \
        want(st, g->name, nm, d0, d1, s);                                                          \
        expected++;                                                                                \
    } while (0)
        W("input_layernorm.weight", H, 0);
        W("post_attention_layernorm.weight", H, 0);
        W("self_attn.q_proj.weight", q, H);
        W("self_attn.k_proj.weight", kv, H);
        W("self_attn.v_proj.weight", kv, H);
        W("self_attn.o_proj.weight", H, q);
        if (!g->n_experts) {
            W("mlp.gate_proj.weight", g->ffn_dim, H);
            W("mlp.up_proj.weight", g->ffn_dim, H);
            W("mlp.down_proj.weight", H, g->ffn_dim);
        } else {
            W("block_sparse_moe.gate.weight", g->n_experts, H);
            for (int64_t e = 0; e < g->n_experts; e++) {
                const int64_t F = g->expert_ffn_dim;
                snprintf(nm, sizeof nm, "model.layers.%lld.block_sparse_moe.experts.%lld.",
                         (long long)l, (long long)e);
                char full[200];
                snprintf(full, sizeof full, "%sw1.weight", nm);
                want(st, g->name, full, F, H, s);
                snprintf(full, sizeof full, "%sw3.weight", nm);
                want(st, g->name, full, F, H, s);
                snprintf(full, sizeof full, "%sw2.weight", nm);
                want(st, g->name, full, H, F, s);
                expected += 3;
            }
        }
#undef W
    }
    CHECK_MSG(loom_safetensors_n_tensors(st) == expected, "%s: %lld tensors, layout has %lld",
              g->name, (long long)loom_safetensors_n_tensors(st), (long long)expected);
}

/* q8_0 weights (norms and the MoE router f32) + f16 KV cache: NMSE of the
 * logits against transformers'. Measured on the cpu backend: llama_gqa 5.0e-4
 * overall, every position below 1.1e-3; mixtral_moe 1.6e-2 overall, all but
 * 3 of 28 positions below 1.1e-3 and those 3 at 0.018 / 0.16 / 0.25. Those
 * are top-2 routing flips: where a token's 2nd and 3rd router logits nearly
 * tie, the weight error changes which expert runs and so the whole FFN
 * output for that token (the f32 run shows the graph itself is exact). The
 * f16 KV cache alone contributes ~1e-7. Bounds:
 *   every model:  NMSE per position <= HF_Q8_NMSE, except for MoE models at
 *                 most a quarter of the positions (routing flips);
 *   overall:      dense <= HF_Q8_NMSE, MoE <= HF_Q8_NMSE_MOE. */
#define HF_Q8_NMSE     2e-3
#define HF_Q8_NMSE_MOE 5e-2

/* label names the backend (and its kernel set: "cpu(avx2)") in failures. */
static loom_model *load_converted(const char *backend, const char *label, const hf_golden *g,
                                  const loom_model_config *c, loom_dtype wtype, loom_dtype kv,
                                  const char *path) {
    char err[512] = "", ck[1400];
    snprintf(ck, sizeof ck, "%s/%s", g->dir, g->checkpoint);
    loom_safetensors *st = NULL;
    loom_status s = loom_safetensors_open(ck, &st, err, sizeof err);
    CHECK_MSG(s == LOOM_OK, "%s: %s", g->name, err);
    if (s != LOOM_OK) return NULL;
    s = loom_hf_write_gguf(st, c, wtype, path, err, sizeof err);
    loom_safetensors_close(st);
    CHECK_MSG(s == LOOM_OK, "%s: hf -> gguf %s: %s", g->name, loom_dtype_name(wtype), err);
    if (s != LOOM_OK) return NULL;
    loom_model_params p = loom_model_default_params();
    p.backend = backend;
    p.kv_dtype = kv;
    p.n_ctx = 64;
    loom_model *m = NULL;
    s = loom_model_load_gguf(path, &p, &m, err, sizeof err);
    CHECK_MSG(s == LOOM_OK, "%s %s: load converted %s: %s", label, g->name, loom_dtype_name(wtype),
              err);
    if (m) {
        /* the GGUF config is the HF one, in adjacent-pair rope order */
        const loom_model_config *mc = loom_model_config_of(m);
        CHECK_MSG(
            mc->dim == c->dim && mc->n_layers == c->n_layers && mc->n_kv_heads == c->n_kv_heads &&
                mc->n_experts == c->n_experts && mc->tie_embeddings == c->tie_embeddings &&
                mc->rope.mode == LOOM_ROPE_NORMAL && mc->rope.theta == c->rope.theta &&
                mc->rope.scaling == c->rope.scaling &&
                (c->rope.scaling == LOOM_ROPE_SCALING_NONE ||
                 (mc->rope.orig_ctx == c->rope.orig_ctx && mc->rope.factor == c->rope.factor)),
            "%s %s: converted config", label, g->name);
    }
    return m;
}

static int argmax(const float *x, int64_t n) {
    int best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = (int)i;
    return best;
}

static void check_forward(const char *be, const char *label, const hf_golden *g,
                          const loom_model_config *c) {
    char path[256], err[512];
    snprintf(path, sizeof path, "/tmp/loom_test_hf_%s_%d.gguf", g->name, (int)getpid());
    const int64_t V = g->vocab_size;
    for (int q8 = 0; q8 < 2; q8++) {
        loom_model *m = load_converted(be, label, g, c, q8 ? LOOM_Q8_0 : LOOM_F32,
                                       q8 ? LOOM_F16 : LOOM_F32, path);
        unlink(path);
        if (!m) continue;
        double num = 0, den = 0;
        int n_pos = 0, n_bad = 0; /* positions, and those over HF_Q8_NMSE */
        for (int p = 0; p < g->n_prompts; p++) {
            const hf_golden_prompt *pr = &g->prompts[p];
            const float *want = g->logits + pr->logits_offset;
            float *got = malloc((size_t)(pr->n_tokens * V) * sizeof *got);
            int slot = 0;
            loom_model_slot_clear(m, slot);
            loom_batch b = {1, pr->n_tokens, &slot, pr->tokens, true};
            loom_status s = loom_model_decode(m, &b, got, err, sizeof err);
            CHECK_MSG(s == LOOM_OK, "%s %s: decode: %s", label, g->name, err);
            double max_err = 0, range = (double)pr->logit_max - pr->logit_min;
            for (int64_t i = 0; s == LOOM_OK && i < pr->n_tokens * V; i++) {
                double d = fabs((double)got[i] - want[i]);
                if (!(d <= max_err)) max_err = d; /* NaN propagates */
                num += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
                den += (double)want[i] * want[i];
            }
            for (int t = 0; q8 && s == LOOM_OK && t < pr->n_tokens; t++) {
                double e2 = 0, w2 = 0;
                for (int64_t i = t * V; i < (t + 1) * V; i++) {
                    e2 += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
                    w2 += (double)want[i] * want[i];
                }
                n_pos++;
                n_bad += !(e2 / w2 <= HF_Q8_NMSE);
            }
            if (!q8) {
                CHECK_MSG(max_err <= 1e-4 * range,
                          "%s %s prompt %d: max |loom - transformers| = %g, range %g (%g "
                          "relative)",
                          label, g->name, p, max_err, range, max_err / range);
                printf("%s %s prompt %d f32: max abs err %.3g (%.3g of the logit range)\n", label,
                       g->name, p, max_err, max_err / range);
                /* greedy through the KV cache, one token per step */
                int32_t tok = argmax(got + (pr->n_tokens - 1) * V, V);
                int ok = 1;
                for (int k = 0; k < pr->n_generated && s == LOOM_OK; k++) {
                    ok &= tok == pr->generated[k];
                    CHECK_MSG(tok == pr->generated[k],
                              "%s %s prompt %d: greedy token %d is %d, transformers %d", label,
                              g->name, p, k, tok, pr->generated[k]);
                    if (k + 1 == pr->n_generated) break;
                    loom_batch step = {1, 1, &slot, &tok, false};
                    s = loom_model_decode(m, &step, got, err, sizeof err);
                    CHECK_MSG(s == LOOM_OK, "%s %s: decode step: %s", label, g->name, err);
                    tok = argmax(got, V);
                }
                if (ok)
                    printf("%s %s prompt %d: %d greedy tokens equal\n", label, g->name, p,
                           pr->n_generated);
            }
            free(got);
        }
        if (q8) {
            double nmse = num / den, bound = g->n_experts ? HF_Q8_NMSE_MOE : HF_Q8_NMSE;
            printf("%s %s q8_0 weights, f16 KV: logits NMSE %.3g (bound %g), %d of %d positions "
                   "over %g\n",
                   label, g->name, nmse, bound, n_bad, n_pos, HF_Q8_NMSE);
            CHECK_MSG(nmse < bound, "%s %s: q8_0 NMSE %g", label, g->name, nmse);
            CHECK_MSG(n_bad <= (g->n_experts ? n_pos / 4 : 0),
                      "%s %s: q8_0: %d of %d positions over NMSE %g", label, g->name, n_bad, n_pos,
                      HF_Q8_NMSE);
        }
        loom_model_free(m);
    }
}

/* Converter errors name the tensor or the rule. */
static void check_convert_errors(const hf_golden *g, const loom_model_config *c) {
    char ck[1400], err[512] = "", path[256];
    snprintf(ck, sizeof ck, "%s/%s", g->dir, g->checkpoint);
    snprintf(path, sizeof path, "/tmp/loom_test_hf_bad_%d.gguf", (int)getpid());
    loom_safetensors *st = NULL;
    if (loom_safetensors_open(ck, &st, err, sizeof err) != LOOM_OK) return;
    loom_model_config x = *c;
    x.n_layers = c->n_layers + 1; /* the last layer's tensors are missing */
    CHECK(loom_hf_write_gguf(st, &x, LOOM_F16, path, err, sizeof err) == LOOM_ERR_FORMAT);
    CHECK_MSG(strstr(err, "input_layernorm") && strstr(err, "missing"), "%s", err);
    x = *c;
    x.n_kv_heads = c->n_heads; /* k_proj has fewer rows */
    CHECK(loom_hf_write_gguf(st, &x, LOOM_F16, path, err, sizeof err) == LOOM_ERR_FORMAT);
    CHECK_MSG(strstr(err, "k_proj") && strstr(err, "shape"), "%s", err);
    CHECK(loom_hf_write_gguf(st, c, LOOM_NF4, path, err, sizeof err) == LOOM_ERR_INVALID_ARG);
    CHECK_MSG(strstr(err, "nf4"), "%s", err);
    x = *c;
    x.rope.mode = LOOM_ROPE_NORMAL;
    CHECK(loom_hf_write_gguf(st, &x, LOOM_F16, path, err, sizeof err) == LOOM_ERR_INVALID_ARG);
    CHECK(access(path, F_OK) != 0); /* nothing written on failure */
    loom_safetensors_close(st);
}

static void check_model(const char *name) {
    hf_golden g;
    char err[512] = "";
    loom_status s = hf_golden_load(name, &g, err, sizeof err);
    CHECK_MSG(s == LOOM_OK, "%s: %s", name, err);
    if (s != LOOM_OK) return;

    loom_model_config c;
    s = loom_hf_config_load(g.dir, &c, err, sizeof err);
    CHECK_MSG(s == LOOM_OK, "%s: config.json: %s", name, err);
    if (s == LOOM_OK) check_config(&g, &c);
    /* every available backend (cpu always; Vulkan on lavapipe in CI) */
    for (int i = 0; s == LOOM_OK && i < loom_registry_count(); i++) {
        loom_backend *be = loom_registry_get(i);
        if (!loom_registry_available(i) || !strcmp(be->iface->name, "null")) continue;
        /* Failures name the backend, and the cpu's ISA kernel set with it. */
        char set[32] = "", label[64];
        if (be->iface->kernel_info) be->iface->kernel_info(be, NULL, set, sizeof set);
        snprintf(label, sizeof label, set[0] ? "%s(%s)" : "%s%s", be->iface->name, set);
        check_forward(be->iface->name, label, &g, &c);
    }
    if (s == LOOM_OK) check_convert_errors(&g, &c);

    char path[1400];
    snprintf(path, sizeof path, "%s/%s", g.dir, g.checkpoint);
    for (int via_dir = 0; via_dir < 2; via_dir++) {
        loom_safetensors *st = NULL;
        s = loom_safetensors_open(via_dir ? g.dir : path, &st, err, sizeof err);
        CHECK_MSG(s == LOOM_OK, "%s: open %s: %s", name, via_dir ? g.dir : path, err);
        if (s != LOOM_OK) continue;
        CHECK_MSG(loom_safetensors_n_shards(st) == (strstr(g.checkpoint, "index") ? 2 : 1),
                  "%s: %d shards", name, loom_safetensors_n_shards(st));
        const char *fmt = loom_safetensors_metadata(st, "format");
        CHECK_MSG(fmt && !strcmp(fmt, "pt"), "%s: __metadata__.format", name);
        /* exactly the tensors the generator listed */
        CHECK_MSG(loom_safetensors_n_tensors(st) == g.n_tensors, "%s: %lld tensors, golden %d",
                  name, (long long)loom_safetensors_n_tensors(st), g.n_tensors);
        for (int k = 0; k < g.n_tensors; k++) {
            const hf_golden_tensor *t = &g.tensors[k];
            int64_t i = loom_safetensors_find(st, t->name);
            CHECK_MSG(i >= 0, "%s: %s missing", name, t->name);
            loom_st_tensor_info ti;
            if (i < 0 || loom_safetensors_tensor(st, i, &ti) != LOOM_OK) continue;
            bool same = ti.n_dims == t->n_dims && !strcmp(ti.st_dtype, t->dtype);
            for (int d = 0; same && d < t->n_dims; d++)
                same = ti.shape[d] == t->shape[d] && ti.ne[d] == t->shape[t->n_dims - 1 - d];
            CHECK_MSG(same, "%s: %s is %s/%d dims, golden %s/%d", name, t->name, ti.st_dtype,
                      ti.n_dims, t->dtype, t->n_dims);
            if (via_dir) continue;
            /* every weight converts to finite f32 */
            float *f = malloc((size_t)ti.n_elements * sizeof *f);
            s = loom_safetensors_read(st, i, LOOM_F32, f, (size_t)ti.n_elements * sizeof *f);
            CHECK_MSG(s == LOOM_OK, "%s: read %s: %s", name, t->name, loom_safetensors_error(st));
            int finite = 1;
            for (int64_t e = 0; s == LOOM_OK && e < ti.n_elements; e++)
                finite &= isfinite(f[e]) != 0;
            CHECK_MSG(finite, "%s: %s has non-finite values", name, t->name);
            free(f);
        }
        check_layout(st, &g);
        loom_safetensors_close(st);
    }

    /* the reference logits */
    for (int p = 0; p < g.n_prompts; p++) {
        const hf_golden_prompt *pr = &g.prompts[p];
        const float *L = g.logits + pr->logits_offset;
        float lo = INFINITY, hi = -INFINITY;
        for (int64_t i = 0; i < (int64_t)pr->n_tokens * g.vocab_size; i++) {
            lo = fminf(lo, L[i]);
            hi = fmaxf(hi, L[i]);
        }
        CHECK_MSG(lo == pr->logit_min && hi == pr->logit_max, "%s prompt %d: logits range", name,
                  p);
        CHECK_MSG(pr->n_generated > 0 && pr->margin > 0, "%s prompt %d: generation", name, p);
    }
    hf_golden_free(&g);
}

int main(void) {
    CHECK(loom_registry_init() == LOOM_OK);
    check_model("llama_gqa");
    check_model("mixtral_moe");
    loom_registry_shutdown();
    return test_summary("test_hf_golden");
}
