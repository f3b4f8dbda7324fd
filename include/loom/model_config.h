/* loom/model_config.h - the configuration of a Llama-3-style decoder (with
 * optional Mixtral-style MoE layers), its validation and its size accounting.
 *
 * One struct describes Llama-3-8B, Mixtral and loom's own alternating-MoE
 * configurations; readers for GGUF metadata and Hugging Face config.json fill
 * it. Every field is validated with a message that names the field and the
 * rule it breaks, because this is where a wrong or hand-edited config file
 * is caught. */
#ifndef LOOM_MODEL_CONFIG_H
#define LOOM_MODEL_CONFIG_H

#include "loom/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/dtype.h"
#include "loom/ir.h"
#include "loom/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_model_config {
    char arch[32];      /* "llama" (MoE layers are still "llama", as in GGUF) */
    int64_t vocab_size; /* 128256 for Llama 3 */
    int64_t dim;        /* hidden size */
    int64_t n_layers;
    int64_t n_heads;    /* query heads */
    int64_t n_kv_heads; /* key/value heads (GQA); divides n_heads */
    int64_t head_dim;   /* usually dim / n_heads */
    int64_t ffn_dim;    /* SwiGLU intermediate size of dense layers */
    float rms_eps;
    loom_rope_params rope; /* theta, mode and llama3 scaling; n_dims = head_dim */
    int64_t max_ctx;       /* maximum context length */
    bool tie_embeddings;   /* LM head shares the token embedding */
    /* MoE: layer l uses experts when n_experts > 0 and l % moe_every == moe_offset. */
    int64_t n_experts;      /* 0 = dense model */
    int64_t n_experts_used; /* top-k */
    int64_t moe_every;      /* 1 = every layer (Mixtral), 2 = alternating */
    int64_t moe_offset;
    int64_t expert_ffn_dim;         /* intermediate size of one expert */
    int32_t bos_id, eos_id, eot_id; /* -1 when unknown */
} loom_model_config;

/* Named configurations: "llama3-8b" (Meta-Llama-3.1-8B), "seed" (the Llama-3-8B
 * shape with 8 experts top-2 in alternating layers, 131072 context),
 * "tiny-moe" (a few MB: GQA, llama3 RoPE, alternating MoE, the real
 * Llama-3 vocabulary; loom's default random-weight model) and "tiny-dense".
 * Unknown name -> LOOM_ERR_INVALID_ARG, message lists the known ones. */
LOOM_API loom_status loom_model_config_preset(const char *name, loom_model_config *out, char *err,
                                              size_t err_n);

/* Check every field; the first violation is described in err, e.g.
 * "n_heads (32) must be a multiple of n_kv_heads (6)". */
LOOM_API loom_status loom_model_config_validate(const loom_model_config *c, char *err,
                                                size_t err_n);

/* Is layer l a MoE layer? */
LOOM_API bool loom_model_config_layer_is_moe(const loom_model_config *c, int64_t layer);

/* llama.cpp's form of llama3 rope scaling: the GGUF tensor rope_freqs.weight,
 * f32 [n_dims/2], factor_i = unscaled inv_freq_i / scaled inv_freq_i (llama.cpp
 * divides the frequency by it; it ignores the rope.scaling.* keys). Writes
 * n = p->n_dims / 2 values into out (caller-owned), derived from
 * loom_rope_freq_table (loom/ir.h). LOOM_ERR_INVALID_ARG when p has no llama3
 * scaling or n is not n_dims / 2; LOOM_ERR_OOM. */
LOOM_API loom_status loom_rope_freq_factors(const loom_rope_params *p, float *out, int64_t n);

/* GGUF metadata for r's scaling as loom writes it: nothing for no scaling;
 * for llama3 the loom.rope.scaling.{type, factor, low_freq_factor,
 * high_freq_factor, original_context_length} keys. Not under llama.*: llama.cpp
 * asserts on a rope.scaling.type it does not know and reads
 * rope.scaling.factor as linear scaling; it takes llama3 scaling from the
 * rope_freqs.weight tensor instead, which writers add too. */
struct loom_gguf_writer;
LOOM_API loom_status loom_rope_write_gguf_kv(struct loom_gguf_writer *w, const loom_rope_params *r);

typedef struct loom_model_size {
    int64_t params_total;  /* every weight */
    int64_t params_active; /* weights one token touches (top-k experts only) */
    int64_t params_embed;  /* token embedding (+ untied LM head) */
    /* Bytes of all weights when the matrices are stored as dtype (norms stay
     * f32; the embedding table is included at the same dtype). */
    int64_t bytes_f16, bytes_q8_0, bytes_q4_0, bytes_nf4;
    int64_t kv_bytes_per_token_f16; /* K and V of every layer, f16 cache */
} loom_model_size;

/* Parameter and memory accounting. c must be valid. */
LOOM_API void loom_model_config_size(const loom_model_config *c, loom_model_size *out);

/* Write a multi-line human-readable description (what `loom info` prints):
 * fields, sizes, KV cache at ctx tokens, and whether it fits mem_bytes of
 * device memory (skipped when mem_bytes is 0). Returns bytes written like
 * snprintf. */
LOOM_API int loom_model_config_describe(const loom_model_config *c, int64_t ctx, size_t mem_bytes,
                                        char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
