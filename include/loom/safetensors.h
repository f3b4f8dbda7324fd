/* loom/safetensors.h - Hugging Face safetensors reader (single file or
 * sharded), config.json reader, and quantize-on-load.
 *
 * File format (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian u64 N, N bytes of UTF-8 JSON (an object; may be padded with
 * trailing spaces), then the data buffer. Every JSON member except
 * "__metadata__" (an object of string values) describes one tensor:
 *   "name": {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [begin, end]}
 * with offsets relative to the start of the data buffer, row-major
 * (C-order) data, little-endian elements.
 *
 * Validation (all done by loom_safetensors_open*, so accessors never read
 * outside the mapping): the header length must fit the file and be at most
 * LOOM_ST_MAX_HEADER bytes; the JSON must parse and be an object; every
 * member must have a known dtype string, a shape of at most LOOM_ST_MAX_DIMS
 * non-negative integers and data_offsets [begin <= end] with
 * end - begin == prod(shape) * element size; names are unique (across shards
 * too). As in the reference Rust implementation, the tensors sorted by
 * offset must tile the data buffer exactly: no overlap, no hole, nothing
 * past the end of the file and no trailing bytes.
 *
 * Dtypes: every dtype of the format is recognised (BOOL, U8, I8, U16, I16,
 * U32, I32, U64, I64, F16, BF16, F32, F64, F8_E4M3, F8_E5M2), so a
 * checkpoint with an odd buffer still opens; loom computes with F32, F16 and
 * BF16 only. Asking for the loom dtype of any other tensor, or converting it,
 * fails with LOOM_ERR_UNSUPPORTED and a message naming the tensor and its
 * dtype.
 *
 * Shapes: `shape` is as stored (PyTorch order, shape[0] outermost);
 * `ne` is loom's order (ne[0] innermost = shape[n_dims-1], unused dims 1).
 * A PyTorch nn.Linear weight of shape (out, in) therefore has
 * ne = [in, out], exactly what loom_matmul takes as w (y = x @ W^T): no
 * transpose is needed anywhere.
 *
 * ---------------------------------------------------------------------
 * Hugging Face Llama / Mixtral checkpoints (transformers' modeling_llama.py
 * and modeling_mixtral.py), as loom's model loader must map them. With
 * H = hidden_size, F = intermediate_size, V = vocab_size, D = head_dim,
 * Hq = num_attention_heads, Hkv = num_key_value_heads, E = num_local_experts;
 * shapes in PyTorch order (loom ne is the reverse):
 *   model.embed_tokens.weight                  [V, H]   (ne [H, V]: get_rows table)
 *   model.layers.N.input_layernorm.weight      [H]      RMSNorm before attention
 *   model.layers.N.self_attn.q_proj.weight     [Hq*D, H]
 *   model.layers.N.self_attn.k_proj.weight     [Hkv*D, H]
 *   model.layers.N.self_attn.v_proj.weight     [Hkv*D, H]
 *   model.layers.N.self_attn.o_proj.weight     [H, Hq*D]
 *   model.layers.N.post_attention_layernorm.weight [H]  RMSNorm before the FFN
 *   dense (Llama):
 *   model.layers.N.mlp.gate_proj.weight        [F, H]   out = down(silu(gate x) * up x)
 *   model.layers.N.mlp.up_proj.weight          [F, H]
 *   model.layers.N.mlp.down_proj.weight        [H, F]
 *   MoE (Mixtral, every layer):
 *   model.layers.N.block_sparse_moe.gate.weight        [E, H]  router, no bias
 *   model.layers.N.block_sparse_moe.experts.E.w1.weight [F, H] gate_proj of expert E
 *   model.layers.N.block_sparse_moe.experts.E.w3.weight [F, H] up_proj
 *   model.layers.N.block_sparse_moe.experts.E.w2.weight [H, F] down_proj
 *   model.norm.weight                          [H]      final RMSNorm
 *   lm_head.weight                             [V, H]   absent when
 *                                              tie_word_embeddings: use embed_tokens
 * Stacking experts 0..E-1 of w1 (ne [H, F] each) along a third dim gives
 * loom_moe's gate [H, F, E]; w3 gives up [H, F, E]; w2 gives down [F, H, E].
 * Mixtral routing is softmax over all E router logits, top-k, then the k
 * weights renormalised to sum 1: exactly loom_moe's definition.
 * RMSNorm: x * rsqrt(mean(x^2) + rms_norm_eps) * weight, computed in f32
 * (loom_rms_norm then loom_mul by the weight).
 *
 * RoPE layout: transformers applies rotary embeddings with rotate_half on
 * the projections as stored: within each head of q_proj / k_proj output
 * (D consecutive rows), dims i and i + D/2 form a rotated pair with
 * frequency inv_freq_i, i in [0, D/2). That is loom's LOOM_ROPE_NEOX mode,
 * so HF weights are used as they are with rope.mode = LOOM_ROPE_NEOX
 * (loom_hf_config_parse sets it). llama.cpp's convert_hf_to_gguf.py instead
 * permutes the rows of q_proj/k_proj per head,
 *   w.reshape(n_head, 2, D/2, H).swapaxes(1, 2).reshape(n_head*D, H)
 * (row 2j of a head comes from row j, row 2j+1 from row j + D/2), so that
 * GGUF llama weights rotate adjacent pairs: LOOM_ROPE_NORMAL. Both give the
 * same attention scores; never mix a permuted weight with NEOX or an
 * unpermuted one with NORMAL. Attention scale is 1/sqrt(D); causal mask;
 * GQA maps query head h to KV head h / (Hq/Hkv) (repeat_kv).
 * --------------------------------------------------------------------- */
#ifndef LOOM_SAFETENSORS_H
#define LOOM_SAFETENSORS_H

#include "loom/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/dtype.h"
#include "loom/model_config.h"
#include "loom/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_ST_MAX_DIMS   4
#define LOOM_ST_MAX_HEADER (100u * 1000u * 1000u) /* as the reference implementation */

typedef struct loom_safetensors loom_safetensors; /* opaque; loom_safetensors_close frees it */

/* Open a checkpoint. path is
 *   - a .safetensors file,
 *   - a model.safetensors.index.json (sharded: its "weight_map" names, for
 *     every tensor, a shard file in the same directory; every shard is
 *     opened and every listed tensor must be in the shard that lists it),
 *   - or a directory holding model.safetensors or model.safetensors.index.json.
 * Files are mmapped read-only; tensor data is not copied. On success *out is
 * owned by the caller. On failure *out is NULL, the status is LOOM_ERR_IO
 * (cannot open/map), LOOM_ERR_FORMAT (malformed) or LOOM_ERR_OOM, and err
 * (if not NULL) receives a message (file name, and tensor name when one is
 * involved) of at most err_n bytes. */
LOOM_API loom_status loom_safetensors_open(const char *path, loom_safetensors **out, char *err,
                                           size_t err_n);
/* One file's bytes in caller memory (borrowed: buf must outlive the context).
 * Used by the fuzzer and by in-memory tests. */
LOOM_API loom_status loom_safetensors_open_memory(const void *buf, size_t n, loom_safetensors **out,
                                                  char *err, size_t err_n);
LOOM_API void loom_safetensors_close(loom_safetensors *st); /* unmaps and frees; NULL is fine */

/* Message of the last failed accessor ("" if none); owned by st. Not safe to
 * use one context from several threads while accessors fail. */
LOOM_API const char *loom_safetensors_error(const loom_safetensors *st);
LOOM_API int loom_safetensors_n_shards(const loom_safetensors *st); /* 1 for a single file */

typedef struct loom_st_tensor_info {
    const char *name;                /* NUL-terminated, owned by the context */
    const char *st_dtype;            /* the format's dtype string, e.g. "BF16" (static) */
    size_t elem_size;                /* bytes per element of st_dtype */
    int n_dims;                      /* 0..LOOM_ST_MAX_DIMS (0 = scalar) */
    int64_t shape[LOOM_ST_MAX_DIMS]; /* as stored, shape[0] outermost; unused 0 */
    int64_t ne[LOOM_ST_MAX_DIMS];    /* loom order, ne[0] innermost; unused 1 */
    int64_t n_elements;
    size_t nbytes;    /* end - begin */
    const void *data; /* into the mapping, valid until close (any alignment) */
    int shard;        /* index of the file holding it */
} loom_st_tensor_info;

/* Tensors in file order (shard by shard). */
LOOM_API int64_t loom_safetensors_n_tensors(const loom_safetensors *st);
/* -1 if absent */
LOOM_API int64_t loom_safetensors_find(const loom_safetensors *st, const char *name);
/* LOOM_ERR_INVALID_ARG when i is out of range. */
LOOM_API loom_status loom_safetensors_tensor(loom_safetensors *st, int64_t i,
                                             loom_st_tensor_info *out);
/* F32 -> LOOM_F32, F16 -> LOOM_F16, BF16 -> LOOM_BF16; any other dtype is
 * LOOM_ERR_UNSUPPORTED with "tensor 'NAME' has dtype I64; loom supports F32,
 * F16 and BF16" (read it with loom_safetensors_error). */
LOOM_API loom_status loom_safetensors_tensor_dtype(loom_safetensors *st, int64_t i,
                                                   loom_dtype *out);

/* String value of key in the "__metadata__" object of shard 0 (e.g.
 * "format" -> "pt"); NULL when absent. Owned by st. */
LOOM_API const char *loom_safetensors_metadata(const loom_safetensors *st, const char *key);

/* ---- quantize-on-load ----
 * Convert tensor i (F32/F16/BF16) to dst_t: f32, f16, bf16, q8_0, q4_0, nf4
 * or nf4_dq (nf4 with double quantization, as QLoRA loads its base model),
 * with loom_convert. Row-blocked types (q8_0, q4_0) need ne[0] to be a
 * multiple of 32 (blocks never straddle rows); nf4 needs the element count to
 * be a multiple of 64. The result is the contiguous loom tensor of extents ne.
 *
 * loom_safetensors_nbytes_as: bytes dst must hold (loom_dtype_nbytes), or
 * LOOM_ERR_INVALID_ARG (message names the tensor and the block rule) when
 * the shape does not fit dst_t. */
LOOM_API loom_status loom_safetensors_nbytes_as(loom_safetensors *st, int64_t i, loom_dtype dst_t,
                                                size_t *out);
/* dst (caller-owned) holds dst_n bytes, at least loom_safetensors_nbytes_as. */
LOOM_API loom_status loom_safetensors_read(loom_safetensors *st, int64_t i, loom_dtype dst_t,
                                           void *dst, size_t dst_n);
/* The dtype a loader should store tensor i at when the user asked for
 * `want` (--quant f32|f16|bf16|q8_0|q4_0|nf4|nf4_dq): 0-D and 1-D tensors
 * (norm weights) are f32; a 2-D+ weight whose shape does not fit a quantized
 * want's blocks falls back to f16; every other weight takes want. Fails only
 * for a tensor loom cannot compute with (see tensor_dtype) or a bad want. */
LOOM_API loom_status loom_safetensors_load_dtype(loom_safetensors *st, int64_t i, loom_dtype want,
                                                 loom_dtype *out);

/* ---- Hugging Face config.json ----
 * Fill a loom_model_config from a config.json text of a LlamaForCausalLM,
 * MistralForCausalLM or MixtralForCausalLM (model_type "llama", "mistral" or
 * "mixtral"). Fields read (with transformers' defaults when absent):
 *   hidden_size -> dim, intermediate_size -> ffn_dim (and expert_ffn_dim for
 *   Mixtral), num_attention_heads -> n_heads, num_key_value_heads ->
 *   n_kv_heads (default n_heads), head_dim (default hidden/heads),
 *   num_hidden_layers, vocab_size, rms_norm_eps, rope_theta, rope_scaling
 *   (null, or rope_type/type "llama3" with factor, low_freq_factor,
 *   high_freq_factor, original_max_position_embeddings; other types are
 *   LOOM_ERR_UNSUPPORTED), tie_word_embeddings, max_position_embeddings,
 *   num_local_experts / num_experts_per_tok (Mixtral: MoE in every layer,
 *   moe_every 1), bos_token_id, eos_token_id (an int, or a list: first ->
 *   eos_id, last -> eot_id).
 * rope.mode is LOOM_ROPE_NEOX (HF weight layout, see above), n_dims = head_dim.
 * hidden_act must be "silu"; attention_bias / mlp_bias must be false;
 * sliding_window must be null or >= max_position_embeddings. The result is
 * checked with loom_model_config_validate. Errors: LOOM_ERR_FORMAT (not JSON,
 * a field of the wrong type: the message names the field), LOOM_ERR_UNSUPPORTED
 * (an architecture or feature loom lacks), LOOM_ERR_INVALID_ARG (validation,
 * message names field and rule). */
LOOM_API loom_status loom_hf_config_parse(const char *json, size_t n, loom_model_config *out,
                                          char *err, size_t err_n);
/* Read path (a config.json, or a directory holding one) and parse it. */
LOOM_API loom_status loom_hf_config_load(const char *path, loom_model_config *out, char *err,
                                         size_t err_n);

/* ---- Hugging Face checkpoint -> GGUF ----
 * Write the checkpoint st, described by c (from loom_hf_config_load: HF
 * layout, rope.mode NEOX), as a llama-architecture GGUF that
 * loom_model_load_gguf reads (names and shapes: loom/model.h):
 * model.embed_tokens -> token_embd, layers.N.input_layernorm -> blk.N.attn_norm,
 * q/k/v/o_proj -> attn_q/k/v/output, post_attention_layernorm -> ffn_norm,
 * mlp.gate/up/down_proj -> ffn_gate/up/down, block_sparse_moe.gate ->
 * ffn_gate_inp, experts.E.w1/w3/w2 stacked -> ffn_gate/up/down_exps,
 * model.norm -> output_norm, lm_head -> output (absent when tied).
 * q_proj/k_proj rows are permuted per head to llama.cpp's adjacent-pair
 * order, so the file uses LOOM_ROPE_NORMAL like every GGUF. "llama.*" keys
 * come from c (llama3 rope scaling as llama.rope.scaling.* keys;
 * bos/eos/eot as tokenizer.ggml.*_token_id; no tokenizer is embedded).
 * Matrices and the embedding are stored as wtype (f32, f16, bf16, q8_0,
 * q4_0; a matrix whose rows do not fit the blocks becomes f16); norms and
 * the MoE router stay f32 (as llama.cpp keeps ffn_gate_inp).
 * Every tensor is checked against c (present, shape); errors name it.
 * Memory: the converted weights plus one tensor in f32. */
LOOM_API loom_status loom_hf_write_gguf(loom_safetensors *st, const loom_model_config *c,
                                        loom_dtype wtype, const char *path, char *err,
                                        size_t err_n);

/* The same with options: the weight type, a tokenizer to embed as
 * tokenizer.ggml.* (borrowed; its special ids then replace config.json's;
 * it may not have more tokens than vocab_size) and progress over the
 * elements converted. general.file_type and general.quantization_version
 * are written as llama.cpp does. loom_hf_write_gguf is this with only
 * wtype set. */
struct loom_tokenizer;
typedef struct loom_hf_gguf_opts {
    loom_dtype wtype;
    const struct loom_tokenizer *tok; /* NULL: no tokenizer embedded */
    void (*progress)(void *ud, double frac);
    void *progress_ud;
} loom_hf_gguf_opts;
LOOM_API loom_status loom_hf_write_gguf_ex(loom_safetensors *st, const loom_model_config *c,
                                           const loom_hf_gguf_opts *o, const char *path, char *err,
                                           size_t err_n);

#ifdef __cplusplus
}
#endif
#endif
