/* model/arch/init_model.c - loom_model_write_random_gguf: a self-contained GGUF
 * with seeded random weights (what `loom init-model` writes and the default
 * model of `loom run`). Deterministic: the same config, seed and weight type
 * give the same file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/gguf.h"
#include "loom/model.h"
#include "model/model_internal.h"

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Generate tensor `name` (values center + uniform(-amp, amp), seeded by the
 * name so tensors do not depend on their order), convert to t and add it. */
static loom_status add_random(loom_gguf_writer *w, loom_blobs *keep, const char *name, loom_dtype t,
                              int64_t a, int64_t b, int64_t c, float center, float amp,
                              uint64_t seed, char *err, size_t err_n) {
    const int64_t ne[3] = {a, b, c}, n = a * b * c;
    float *v = malloc((size_t)n * sizeof *v);
    void *bytes = malloc(loom_dtype_nbytes(t, n));
    if (!v || !bytes || !loom_blobs_keep(keep, bytes)) {
        free(v);
        free(bytes);
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "init-model: out of memory");
    }
    uint64_t s = seed ^ hash_name(name);
    for (int64_t i = 0; i < n; i++) {
        float u = (float)(splitmix(&s) >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
        v[i] = center + amp * (2.0f * u - 1.0f);
    }
    loom_status st = loom_convert(LOOM_F32, v, t, bytes, n);
    free(v);
    if (st != LOOM_OK) /* bytes is kept, freed with the list */
        return loom_model_fail(err, err_n, st, "init-model: converting '%s' to %s failed", name,
                               loom_dtype_name(t));
    st = loom_gguf_writer_add_tensor(w, name, t, c > 1 ? 3 : (b > 1 ? 2 : 1), ne, bytes);
    if (st != LOOM_OK)
        return loom_model_fail(err, err_n, st, "init-model: adding '%s': %s", name,
                               loom_gguf_writer_error(w));
    return LOOM_OK;
}

/* rope_freqs.weight: llama.cpp reads llama3 rope scaling only from this
 * tensor, so files meant to run there too must carry it. */
static loom_status add_rope_freqs(loom_gguf_writer *w, loom_blobs *keep, const loom_rope_params *p,
                                  char *err, size_t err_n) {
    const int64_t n = p->n_dims / 2;
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
    if (!f || !loom_blobs_keep(keep, f)) {
        free(f);
        return loom_model_fail(err, err_n, LOOM_ERR_OOM, "init-model: out of memory");
    }
    loom_status st = loom_rope_freq_factors(p, f, n);
    if (st == LOOM_OK) st = loom_gguf_writer_add_tensor(w, "rope_freqs.weight", LOOM_F32, 1, &n, f);
    if (st != LOOM_OK)
        return loom_model_fail(err, err_n, st, "init-model: adding 'rope_freqs.weight': %s",
                               loom_gguf_writer_error(w));
    return LOOM_OK;
}

/* The whole random model as a GGUF writer: *w and the tensor bytes it points
 * at (*keep) are the caller's to free, also on failure. */
static loom_status build_random(const loom_model_config *c, loom_dtype wt, uint64_t seed,
                                const loom_tokenizer *tok, loom_gguf_writer **wp, loom_blobs *keep,
                                char *err, size_t err_n) {
    *wp = NULL;
    char verr[256];
    if (loom_model_config_validate(c, verr, sizeof verr) != LOOM_OK)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "init-model: %s", verr);
    if (wt != LOOM_F32 && wt != LOOM_F16 && wt != LOOM_BF16 && wt != LOOM_Q8_0 && wt != LOOM_Q4_0 &&
        wt != LOOM_Q4_1 && wt != LOOM_Q5_0 && wt != LOOM_Q5_1)
        return loom_model_fail(
            err, err_n, LOOM_ERR_INVALID_ARG,
            "init-model: weight type must be f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1");
    if (c->rope.mode != LOOM_ROPE_NORMAL && c->rope.mode != LOOM_ROPE_NEOX)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "init-model: bad rope mode");
    const int64_t bs = loom_dtype_block_size(wt);
    const int64_t d = c->dim, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    if (d % bs || q % bs || c->ffn_dim % bs || (c->n_experts && c->expert_ffn_dim % bs))
        return loom_model_fail(
            err, err_n, LOOM_ERR_INVALID_ARG,
            "init-model: %s needs dim, heads*head_dim and ffn sizes divisible by %lld",
            loom_dtype_name(wt), (long long)bs);
    if (tok && (int64_t)loom_tokenizer_vocab_size(tok) != c->vocab_size)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG,
                               "init-model: the tokenizer has %zu tokens but vocab_size is %lld",
                               loom_tokenizer_vocab_size(tok), (long long)c->vocab_size);

    loom_gguf_writer *w = NULL;
    loom_status st = loom_gguf_writer_new(&w);
    if (st != LOOM_OK) return loom_model_fail(err, err_n, st, "init-model: out of memory");
    *wp = w;
    char desc[256];
    snprintf(desc, sizeof desc,
             "random weights (seed %llu): a Llama-3-architecture model made by loom init-model; "
             "it produces meaningless text",
             (unsigned long long)seed);
#define KV(call)                                                                                   \
    do {                                                                                           \
        if (st == LOOM_OK) st = (call);                                                            \
    } while (0)
    KV(loom_gguf_writer_set_str(w, "general.architecture", "llama"));
    KV(loom_gguf_writer_set_str(w, "general.name", "loom random-weight model"));
    KV(loom_gguf_writer_set_str(w, "general.description", desc));
    KV(loom_gguf_writer_set_bool(w, "loom.random_weights", true));
    KV(loom_gguf_writer_set_u64(w, "loom.seed", seed));
    KV(loom_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size));
    KV(loom_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)c->max_ctx));
    KV(loom_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)d));
    KV(loom_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)c->n_layers));
    KV(loom_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)c->ffn_dim));
    KV(loom_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads));
    KV(loom_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads));
    KV(loom_gguf_writer_set_u32(w, "llama.attention.key_length", (uint32_t)c->head_dim));
    KV(loom_gguf_writer_set_u32(w, "llama.attention.value_length", (uint32_t)c->head_dim));
    KV(loom_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->rms_eps));
    KV(loom_gguf_writer_set_f32(w, "llama.rope.freq_base", c->rope.theta));
    KV(loom_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)c->rope.n_dims));
    KV(loom_rope_write_gguf_kv(w, &c->rope));
    if (c->n_experts > 0) {
        KV(loom_gguf_writer_set_u32(w, "llama.expert_count", (uint32_t)c->n_experts));
        KV(loom_gguf_writer_set_u32(w, "llama.expert_used_count", (uint32_t)c->n_experts_used));
        KV(loom_gguf_writer_set_u32(w, "llama.expert_feed_forward_length",
                                    (uint32_t)c->expert_ffn_dim));
        KV(loom_gguf_writer_set_u32(w, "loom.moe_every", (uint32_t)c->moe_every));
        KV(loom_gguf_writer_set_u32(w, "loom.moe_offset", (uint32_t)c->moe_offset));
    }
    if (st != LOOM_OK)
        return loom_model_fail(err, err_n, st, "init-model: %s", loom_gguf_writer_error(w));
    if (tok) {
        if ((st = loom_tokenizer_write_gguf(tok, w, err, err_n)) != LOOM_OK) return st;
    } else {
        const int32_t ids[3] = {c->bos_id, c->eos_id, c->eot_id};
        const char *keys[3] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                               "tokenizer.ggml.eot_token_id"};
        for (int i = 0; i < 3 && st == LOOM_OK; i++)
            if (ids[i] >= 0) st = loom_gguf_writer_set_u32(w, keys[i], (uint32_t)ids[i]);
    }

    /* Weights: uniform with std 1/sqrt(fan_in) (amplitude sqrt(3) times that). */
    const float s3 = sqrtf(3.0f);
#define ADD(name, t, a, b, cc, center, amp)                                                        \
    do {                                                                                           \
        if (st == LOOM_OK)                                                                         \
            st = add_random(w, keep, name, t, a, b, cc, center, amp, seed, err, err_n);            \
    } while (0)
    ADD("token_embd.weight", wt, d, c->vocab_size, 1, 0.0f, s3 / sqrtf((float)d));
    if (st == LOOM_OK && c->rope.scaling == LOOM_ROPE_SCALING_LLAMA3)
        st = add_rope_freqs(w, keep, &c->rope, err, err_n);
    ADD("output_norm.weight", LOOM_F32, d, 1, 1, 1.0f, 0.1f);
    if (!c->tie_embeddings)
        ADD("output.weight", wt, d, c->vocab_size, 1, 0.0f, s3 / sqrtf((float)d));
    for (int64_t l = 0; l < c->n_layers && st == LOOM_OK; l++) {
        char n[64];
#define NAME(suffix) (snprintf(n, sizeof n, "blk.%lld." suffix, (long long)l), n)
        ADD(NAME("attn_norm.weight"), LOOM_F32, d, 1, 1, 1.0f, 0.1f);
        ADD(NAME("attn_q.weight"), wt, d, q, 1, 0.0f, s3 / sqrtf((float)d));
        ADD(NAME("attn_k.weight"), wt, d, kv, 1, 0.0f, s3 / sqrtf((float)d));
        ADD(NAME("attn_v.weight"), wt, d, kv, 1, 0.0f, s3 / sqrtf((float)d));
        ADD(NAME("attn_output.weight"), wt, q, d, 1, 0.0f, s3 / sqrtf((float)q));
        ADD(NAME("ffn_norm.weight"), LOOM_F32, d, 1, 1, 1.0f, 0.1f);
        if (loom_model_config_layer_is_moe(c, l)) {
            const int64_t f = c->expert_ffn_dim, e = c->n_experts;
            ADD(NAME("ffn_gate_inp.weight"), LOOM_F32, d, e, 1, 0.0f, s3 / sqrtf((float)d));
            ADD(NAME("ffn_gate_exps.weight"), wt, d, f, e, 0.0f, s3 / sqrtf((float)d));
            ADD(NAME("ffn_up_exps.weight"), wt, d, f, e, 0.0f, s3 / sqrtf((float)d));
            ADD(NAME("ffn_down_exps.weight"), wt, f, d, e, 0.0f, s3 / sqrtf((float)f));
        } else {
            const int64_t f = c->ffn_dim;
            ADD(NAME("ffn_gate.weight"), wt, d, f, 1, 0.0f, s3 / sqrtf((float)d));
            ADD(NAME("ffn_up.weight"), wt, d, f, 1, 0.0f, s3 / sqrtf((float)d));
            ADD(NAME("ffn_down.weight"), wt, f, d, 1, 0.0f, s3 / sqrtf((float)f));
        }
#undef NAME
    }
#undef ADD
#undef KV
    return st;
}

loom_status loom_model_write_random_gguf(const loom_model_config *c, loom_dtype wt, uint64_t seed,
                                         const loom_tokenizer *tok, const char *path, char *err,
                                         size_t err_n) {
    if (!c || !path)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "init-model: NULL argument");
    loom_gguf_writer *w = NULL;
    loom_blobs keep = {0};
    loom_status st = build_random(c, wt, seed, tok, &w, &keep, err, err_n);
    if (st == LOOM_OK && (st = loom_gguf_writer_write(w, path)) != LOOM_OK)
        st = loom_model_fail(err, err_n, st, "init-model: writing %s failed: %s", path,
                             loom_gguf_writer_error(w));
    loom_blobs_free(&keep);
    loom_gguf_writer_free(w);
    return st;
}

loom_status loom_model_load_random(const loom_model_config *c, loom_dtype wt, uint64_t seed,
                                   const loom_model_params *p, loom_model **out, char *err,
                                   size_t err_n) {
    if (!c || !out)
        return loom_model_fail(err, err_n, LOOM_ERR_INVALID_ARG, "model: NULL argument");
    *out = NULL;
    /* The loader reads a GGUF, so the weights are serialized into one heap
     * buffer and read from there: no file, but twice the weights' bytes at
     * the peak (the generated tensors and the buffer; then the buffer and the
     * backend's copy). Generating straight into the backend buffers would
     * need a second loader. */
    loom_gguf_writer *w = NULL;
    loom_blobs keep = {0};
    void *buf = NULL;
    size_t n = 0;
    loom_status st = build_random(c, wt, seed, NULL, &w, &keep, err, err_n);
    if (st == LOOM_OK && (st = loom_gguf_writer_write_memory(w, &buf, &n)) != LOOM_OK)
        st = loom_model_fail(err, err_n, st, "model: serializing random weights failed: %s",
                             loom_gguf_writer_error(w));
    loom_blobs_free(&keep);
    loom_gguf_writer_free(w);
    loom_gguf *g = NULL;
    char gerr[512];
    if (st == LOOM_OK && (st = loom_gguf_open_memory(buf, n, &g, gerr, sizeof gerr)) != LOOM_OK)
        st = loom_model_fail(err, err_n, st, "model: random weights: %s", gerr);
    if (st == LOOM_OK) st = loom_model_load_open_gguf(g, "random weights", p, out, err, err_n);
    free(buf); /* the loader copied the weights into backend buffers */
    return st;
}
