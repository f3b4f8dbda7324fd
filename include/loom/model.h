/* loom/model.h - a Llama-3 / Mixtral-style decoder on the IR: loading from
 * GGUF, the KV cache, and the forward pass (docs/adr/0011).
 *
 * Weights. A GGUF with llama.cpp tensor names:
 *   token_embd.weight [dim, vocab]           output_norm.weight [dim]
 *   output.weight [dim, vocab] (absent = tied to token_embd)
 *   blk.N.attn_norm.weight [dim]             blk.N.ffn_norm.weight [dim]
 *   blk.N.attn_q.weight [dim, n_heads*head_dim]
 *   blk.N.attn_k.weight, attn_v.weight [dim, n_kv_heads*head_dim]
 *   blk.N.attn_output.weight [n_heads*head_dim, dim]
 *   dense layers: blk.N.ffn_gate.weight, ffn_up.weight [dim, ffn], ffn_down.weight [ffn, dim]
 *   MoE layers:   blk.N.ffn_gate_inp.weight [dim, n_experts] (router),
 *                 blk.N.ffn_gate_exps.weight, ffn_up_exps.weight [dim, eff, n_experts],
 *                 blk.N.ffn_down_exps.weight [eff, dim, n_experts]
 * Matrices may be f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1; norms f32. Every tensor is
 * checked (present, shape, dtype) and an error names the tensor.
 *
 * Config. From GGUF metadata "llama.*" (general.architecture must be
 * "llama"): context_length, embedding_length, block_count,
 * feed_forward_length, attention.head_count(_kv), attention.key_length,
 * attention.layer_norm_rms_epsilon, rope.freq_base, rope.dimension_count,
 * vocab_size, expert_count, expert_used_count, expert_feed_forward_length,
 * rope.scaling.{type = "llama3", factor, low_freq_factor, high_freq_factor,
 * original_context_length}; llama.cpp's rope_freqs.weight tensor (Llama 3.1
 * files) is recognised as llama3 scaling when it matches one. loom keys:
 * loom.moe_every / loom.moe_offset (alternating MoE layers; absent = every
 * layer), loom.random_weights (bool; general.description says so too).
 *
 * RoPE layout convention (q/k weight rows):
 *   GGUF files (loom's own and llama.cpp's) store q/k rows in llama.cpp's
 *   order, i.e. Hugging Face's q_proj/k_proj rows permuted per head so that
 *   rotary pairs are ADJACENT dims (2i, 2i+1): loaded with LOOM_ROPE_NORMAL.
 *   llama.cpp's convert_hf_to_gguf.py applies this permutation
 *   (w.reshape(H, 2, D/2, dim).swapaxes(1, 2)); `loom init-model` writes
 *   random weights in the same convention.
 *   Hugging Face checkpoints (safetensors) keep HF order, where pairs are
 *   (i, i + D/2) (rotate_half): a loader for them must either set
 *   LOOM_ROPE_NEOX in the config or permute q/k rows as llama.cpp does and
 *   keep LOOM_ROPE_NORMAL. Both give identical logits.
 *
 * Graph. embedding get_rows -> per layer: rms_norm*w -> q/k/v matmul ->
 * rope (theta, llama3 scaling) -> set_rows into the layer's KV cache ->
 * flash_attn over the cached keys (GQA, causal, q_offset = position) ->
 * o matmul -> residual -> rms_norm*w -> SwiGLU FFN or loom_moe -> residual;
 * final rms_norm*w -> LM head. Logits are computed only for the positions
 * asked for (the last token of each sequence unless all_logits).
 *
 * KV cache and graph reuse: per layer K and V block pools [kv_dim,
 * n_kv_blocks * block_size] (f16 by default, q8_0 or f32 optional; docs/adr/
 * 0035) live in a buffer of the layer's
 * device (the run backend unless the layers are split, docs/adr/0030) when
 * it supports set_rows, else on the cpu backend. A sequence owns one
 * slot, which has its own block table. A forward graph is built per distinct
 * batch shape (number of sequences, tokens per sequence, all_logits) and
 * cached (a few
 * entries, least recently used evicted): a decode loop builds its graph once
 * and re-runs it, only uploading token ids / positions and moving the KV
 * extents and q_offsets (loom_view_set_extent, loom_node_set_q_offset).
 * Prefill builds one graph per distinct chunk length.
 *
 * Threading: a loom_model is not thread-safe; one caller at a time. */
#ifndef LOOM_MODEL_H
#define LOOM_MODEL_H

#include "loom/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/dtype.h"
#include "loom/model_config.h"
#include "loom/placement.h"
#include "loom/status.h"
#include "loom/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_model loom_model;

/* Progress while weights load: frac in [0, 1]. */
typedef void (*loom_progress_fn)(void *ud, double frac);

typedef struct loom_model_params {
    const char *backend; /* NULL/"" = $LOOM_BACKEND, else the best available */
    loom_dtype kv_dtype; /* LOOM_F16 (default), LOOM_Q8_0 or LOOM_F32 */
    int64_t n_ctx;       /* positions per slot; 0 = min(max_ctx, 4096) */
    int n_slots;         /* independent sequences (KV slots); 0 = 1 */
    loom_progress_fn progress;
    void *progress_ud;
    /* Quantize-on-load (docs/adr/0012): when quantize is true every matrix is
     * converted at load time to the type loom_model_store_type picks for
     * quant (f32, f16, bf16, q8_0, q4_0, nf4 or nf4_dq; nf4 means nf4_dq,
     * as QLoRA loads its base model). false: as stored in the file. */
    bool quantize;
    loom_dtype quant;
    /* Layer split over devices (docs/adr/0030, loom/placement.h).
     * split LOOM_SPLIT_LAYER (the default): each layer's weights and KV
     * cache live on one device; devices lists them ("vulkan:0,cpu",
     * "vulkan:0,vulkan:1,cpu": NAME:I is device I of backend NAME,
     * docs/adr/0042; NULL/"": backend, then cpu), gpu_layers is how many (the last ones)
     * go off the cpu (LOOM_GPU_LAYERS_AUTO, the default: as many as fit),
     * and n_tensor_split > 0 gives every listed device its share instead
     * (one per device of devices, or of the default pair). A plan with
     * everything on one device loads exactly as LOOM_SPLIT_NONE does:
     * every weight on the run backend (before this option existed). The
     * free memory of a non-cpu device is capped by $LOOM_DEVICE_MEMORY_LIMIT
     * (bytes, K/M/G suffixes) when set: for tests of what does not fit. */
    int split; /* loom_split_mode */
    int gpu_layers;
    const char *devices;
    int n_tensor_split;
    float tensor_split[LOOM_MAX_DEVICES];
    /* Tensor parallelism across processes (docs/adr/0034): tp > 1 loads
     * this rank's shard of every layer, Megatron-style: Q/K/V and gate/up
     * column-parallel (the rank's heads, GQA's K/V heads with them; its
     * slice of the FFN columns, of every expert's in a MoE layer), O and
     * down row-parallel with an all-reduce of their partial sums over comm
     * (2 per layer); embedding, norms, router and head are replicated.
     * loom_model_config_of then gives the shard's counts (n_heads /
     * tp, ...). Needs n_heads, n_kv_heads and the FFN width divisible by
     * tp, the row-parallel slices whole quant blocks, and no LoRA hook.
     * comm: the ranks (runtime/comm.h, made by the program, e.g. the CLI
     * with runtime/dist), size tp, not owned, alive until loom_model_free;
     * every rank must decode the same batches. tp 0 or 1: no split. */
    int tp;
    struct loom_comm *comm;
    /* Paged KV cache (docs/adr/0035): tokens per block (0 = 16) and blocks
     * in every layer's pool (0 = n_slots * ceil(n_ctx / block): the memory
     * of one full context per slot). Fewer blocks than that overcommit: a
     * forward that finds no free block fails with LOOM_ERR_OOM. */
    int kv_block_size;
    int n_kv_blocks;
} loom_model_params;

typedef enum loom_split_mode { LOOM_SPLIT_LAYER = 0, LOOM_SPLIT_NONE = 1 } loom_split_mode;

LOOM_API loom_model_params loom_model_default_params(void);

/* The model cache, where scripts/fetch-default-model.sh and fetch-models.sh
 * put the models loom uses by name (the default SmolLM2, the bundled
 * encoder): $LOOM_MODEL_CACHE, else $XDG_CACHE_HOME/loom/models, else
 * $HOME/.cache/loom/models. The one rule; the scripts follow it too.
 * Writes a NUL-terminated path into buf (truncated to n bytes). */
LOOM_API void loom_model_cache_dir(char *buf, size_t n);

/* Load a GGUF model. On success *out is owned by the caller (loom_model_free).
 * Errors name the file, key or tensor in err. The backend registry must be
 * initialised (loom_registry_init). */
LOOM_API loom_status loom_model_load_gguf(const char *path, const loom_model_params *p,
                                          loom_model **out, char *err, size_t err_n);
LOOM_API void loom_model_free(loom_model *m); /* NULL is fine */

LOOM_API const loom_model_config *loom_model_config_of(const loom_model *m);
/* The tokenizer embedded in the file; NULL when it has none. Owned by m. */
LOOM_API const loom_tokenizer *loom_model_tokenizer(const loom_model *m);
LOOM_API bool loom_model_random_weights(const loom_model *m); /* loom.random_weights */
LOOM_API const char *loom_model_backend_name(const loom_model *m);
/* Where the KV cache lives ("cpu" when the run backend lacks set_rows). */
LOOM_API const char *loom_model_kv_backend_name(const loom_model *m);
LOOM_API int64_t loom_model_n_ctx(const loom_model *m);
LOOM_API int loom_model_n_slots(const loom_model *m);
LOOM_API size_t loom_model_weight_bytes(const loom_model *m);
/* Human-readable dtype summary of the matrices, e.g. "q8_0" or "f16+q4_0". */
LOOM_API const char *loom_model_weight_types(const loom_model *m);

/* The layer-split plan the model was loaded with; NULL for LOOM_SPLIT_NONE.
 * Owned by m. */
LOOM_API const loom_split_plan *loom_model_split_plan(const loom_model *m);
/* The plan a load of path (a GGUF file) with p would make, without loading
 * any weight: what `loom info --gpu-layers` prints. Errors as the loader's
 * (unknown device, a bad --tensor-split count, an unreadable file). */
LOOM_API loom_status loom_model_plan_split(const char *path, const loom_model_params *p,
                                           loom_split_plan *out, char *err, size_t err_n);

/* Scheduler statistics (loom/runtime.h) of the forward graph run last,
 * with n_computes and copy_seconds summed over every cached graph: how many
 * activation copies a layer split costs per forward, and the time spent in
 * them (docs/PERF.md). Zeroes before the first forward. */
struct loom_sched_stats;
LOOM_API void loom_model_sched_stats(const loom_model *m, struct loom_sched_stats *out);

/* One forward pass: n_seq sequences, each appending n_tokens tokens at the
 * current position of its slot (slots must be distinct). tokens holds
 * n_seq * n_tokens ids, sequence-major. logits receives vocab floats per
 * output row: n_seq * n_tokens rows when all_logits, else n_seq rows (the
 * last token of each sequence), in sequence order. Positions advance by
 * n_tokens on success. A sequence that would pass n_ctx is an error. */
typedef struct loom_batch {
    int n_seq;
    int n_tokens;
    const int *slots;
    const int32_t *tokens;
    bool all_logits;
} loom_batch;
LOOM_API loom_status loom_model_decode(loom_model *m, const loom_batch *b, float *logits, char *err,
                                       size_t err_n);

/* The embedding of one token sequence: the final hidden states (after the
 * final RMSNorm, before the LM head: transformers' last_hidden_state),
 * mean-pooled over the n tokens (as llama.cpp's --pooling mean) and
 * L2-normalised, written to out[0..dim) (loom_model_config_of(m)->dim).
 * The tokens are one sequence from position 0 (include a BOS if the model
 * wants one); 1 <= n <= min(loom_model_n_ctx, max_ctx). Runs without the KV
 * cache: no slot's tokens or blocks change, so it may run between decode
 * calls (not concurrently with them: m is not thread-safe). The model's
 * projection hook applies. Not supported for a tensor-parallel load. */
LOOM_API loom_status loom_model_embed(loom_model *m, const int32_t *tokens, size_t n, float *out,
                                      char *err, size_t err_n);

LOOM_API int64_t loom_model_slot_pos(const loom_model *m, int slot); /* tokens cached in slot */
/* Forget a slot's tokens: its blocks are released (full ones stay cached
 * for prefix reuse until evicted). */
LOOM_API void loom_model_slot_clear(loom_model *m, int slot);
/* Keep only the first n tokens of a slot (n <= its position); blocks past
 * them are released. LOOM_ERR_UNSUPPORTED when position n falls inside a
 * block another slot shares (it would have to be copied first). */
LOOM_API loom_status loom_model_slot_truncate(loom_model *m, int slot, int64_t n);

/* ---- paged KV cache and prefix reuse (docs/adr/0035) ----
 * Each layer's K and V live in a pool of fixed-size blocks; a slot is a
 * sequence with its own block table, growing as it is decoded. Blocks are
 * reference-counted: a full block is hashed by (previous block's hash, its
 * token ids) and stays cached after its sequence releases it, so a later
 * sequence that starts with the same tokens can attach it instead of
 * recomputing it; cached blocks are evicted least recently used first when
 * the pool runs out. A block is never written while shared: a sequence only
 * appends into blocks it allocated. */
typedef struct loom_kv_block_stats {
    int block_size;
    int n_blocks;  /* pool size */
    int n_used;    /* held by at least one slot */
    int n_cached;  /* held by none, kept for prefix reuse (evictable) */
    int n_free;    /* held by none, empty */
    int64_t prefix_hits;      /* blocks attached by loom_model_slot_reuse_prefix */
    int64_t evictions;        /* cached blocks reused for new data */
} loom_kv_block_stats;
LOOM_API void loom_model_kv_block_stats(const loom_model *m, loom_kv_block_stats *out);
/* Blocks slot needs to append n_tokens more (0 when its last block has room). */
LOOM_API int loom_model_slot_blocks_needed(const loom_model *m, int slot, int64_t n_tokens);
/* Attach to an empty slot the cached blocks that hold a prefix of
 * tokens[0..n): whole blocks only, and never the last token (its logits
 * must come from a forward). *n_reused (a multiple of the block size) is
 * the slot's position afterwards; the caller feeds tokens from there.
 * LOOM_ERR_INVALID_ARG when the slot is not empty. */
LOOM_API loom_status loom_model_slot_reuse_prefix(loom_model *m, int slot, const int32_t *tokens,
                                                  int64_t n, int64_t *n_reused);

/* Statistics of the graph cache: graphs built, and forward passes run. */
LOOM_API void loom_model_graph_stats(const loom_model *m, int *n_builds, int *n_runs);

/* ---- model sources, quantize-on-load, export (docs/adr/0012) ---- */

/* Does path name a Hugging Face checkpoint directory (a directory holding
 * config.json)? Anything else is treated as a GGUF file. */
LOOM_API bool loom_model_path_is_hf(const char *path);

/* Load a GGUF file or a Hugging Face checkpoint directory (config.json +
 * model.safetensors or model.safetensors.index.json; tokenizer.json, when
 * present, becomes the model's tokenizer). A checkpoint is converted with
 * loom_hf_write_gguf into a temporary GGUF under $TMPDIR (else /tmp) that
 * is unlinked as soon as it is mapped, then loaded as a GGUF; with
 * p->quantize the conversion writes p->quant directly for f32/f16/bf16/
 * q8_0/q4_0 and a lossless float copy for nf4 (quantized while loading).
 * Ownership and errors as loom_model_load_gguf. */
LOOM_API loom_status loom_model_load(const char *path, const loom_model_params *p, loom_model **out,
                                     char *err, size_t err_n);

/* The dtype a tensor of a llama GGUF (llama.cpp names) is stored at when
 * the model is exported or loaded as `want`; the one policy shared by
 * loom_model_export_gguf, loom_hf_write_gguf and quantize-on-load:
 *   - 1-D tensors (norms, rope_freqs) and the MoE router ffn_gate_inp: f32
 *     (llama.cpp keeps them f32: tiny, and router errors flip top-k picks);
 *   - want f32/f16/bf16: want;
 *   - want q8_0/q4_0/q4_1/q5_0/q5_1: want when ne[0] is a multiple of 32, else f16
 *     (token_embd and output included, as llama.cpp's legacy types do);
 *   - want q2_K/q3_K/q4_K/q5_K/q6_K: want when ne[0] is a multiple of 256,
 *     else llama.cpp's fallback (q2_K/q3_K: q4_0, q4_K: q5_0, q5_K: q5_1,
 *     q6_K: q8_0; f16 when ne[0] is not a multiple of 32): every matrix
 *     at one type, as `llama-quantize --pure` writes (the mixes, with
 *     per-tensor rules, are loom_export_params.mix);
 *   - want nf4/nf4_dq: nf4_dq (QLoRA's double quantization) when the
 *     element count is a multiple of 64 and ne[0] even, else f16;
 *     token_embd and output stay f16 (QLoRA leaves embeddings and the LM
 *     head unquantized; get_rows has no nf4 kernel).
 * LOOM_ERR_INVALID_ARG for a want outside those types. */
LOOM_API loom_status loom_model_store_type(const char *name, int n_dims, const int64_t *ne,
                                           loom_dtype want, loom_dtype *out);

/* llama.cpp's general.file_type (LLAMA_FTYPE_*) for a weight type: f32 0,
 * f16 1, q4_0 2, q4_1 3, q8_0 7, q5_0 8, q5_1 9, bf16 32, and for one
 * k-quant everywhere its "mostly" ftype: q2_K 10 (Q2_K), q3_K 11 (Q3_K_S),
 * q4_K 14 (Q4_K_S), q5_K 16 (Q5_K_S), q6_K 18 (Q6_K); -1 for types GGUF
 * cannot hold (nf4). */
LOOM_API int loom_model_gguf_file_type(loom_dtype t);

/* llama.cpp's k-quant mixes: llama-quantize's Q3_K_M, Q4_K_M and Q5_K_M
 * without an importance matrix (docs/adr/0039-k-quant-mixes.md). Each keeps
 * most matrices at its base type (q3_K, q4_K, q5_K) and gives more bits where
 * llama.cpp's llama_tensor_get_type does: the output head (and a tied
 * token_embd) q6_K, attn_v and ffn_down in the "use_more_bits" layers, the
 * first layers of a Q3_K_M, attn_v / attn_k q8_0 and attn_output q5_K with 8
 * experts; rows that are not whole super-blocks fall back as in
 * loom_model_store_type. general.file_type is 12, 15 or 17. */
typedef enum loom_quant_mix {
    LOOM_MIX_NONE = 0, /* every matrix at loom_export_params.type */
    LOOM_MIX_Q3_K_M,
    LOOM_MIX_Q4_K_M,
    LOOM_MIX_Q5_K_M,
} loom_quant_mix;

typedef struct loom_export_params {
    loom_dtype type;           /* f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1 or q2_K..q6_K
                                  (nf4 is refused: no GGUF type); ignored when mix is set */
    loom_progress_fn progress; /* over tensors converted, by elements */
    void *progress_ud;
    /* Optional edit of weights on the way through (`loom merge-lora` adds
     * LoRA deltas; GGUF input only, else LOOM_ERR_INVALID_ARG): a tensor for
     * which edit_wants(edit_ud, name) is true is dequantized to f32, handed
     * to edit (ne[0] innermost: ne[1] rows of ne[0] floats, changed in
     * place), then stored at the type loom_model_store_type picks. An edit
     * error aborts the export with edit's status and its message in err. */
    bool (*edit_wants)(void *ud, const char *name);
    loom_status (*edit)(void *ud, const char *name, int n_dims, const int64_t *ne, float *w,
                        char *err, size_t err_n);
    void *edit_ud;
    loom_quant_mix mix; /* LOOM_MIX_NONE (0): p->type everywhere */
} loom_export_params;

typedef struct loom_export_stats {
    int64_t n_tensors;
    int64_t n_converted;        /* tensors whose type changed */
    size_t bytes_in, bytes_out; /* tensor data */
} loom_export_stats;

/* Write the model at in (a GGUF file or a Hugging Face checkpoint directory)
 * as a llama.cpp-style GGUF v3 at out with matrices in p->type (per
 * loom_model_store_type). GGUF input: every key/value pair is copied
 * (tokenizer.ggml.* included) except general.file_type and
 * general.quantization_version, which are set for the new type; tensors
 * keep their names and order and are dequantized from f32/f16/bf16/q8_0/
 * q4_0/q4_1/q5_0/q5_1/q2_K..q6_K (requantizing compounds errors; other ggml types are an
 * error naming the tensor); p->mix picks each tensor's type by llama.cpp's rules. HF input: loom_hf_write_gguf with tokenizer.json embedded
 * when the directory has one. The input must be a llama model loom can
 * load (validated config). out is written atomically (loom_gguf_writer_write),
 * so a failure leaves no partial file; out must not be the input. stats
 * (optional) is filled on success. Memory: the converted tensors. */
LOOM_API loom_status loom_model_export_gguf(const char *in, const char *out,
                                            const loom_export_params *p, loom_export_stats *stats,
                                            char *err, size_t err_n);

/* ---- writing a model (loom init-model) ---- */

/* Write a GGUF with seeded random weights for config c (validated):
 * matrices in wtype (f32/f16/bf16/q8_0/q4_0), norms f32 near 1, the
 * embedding in wtype too. Values are N(0, 1/sqrt(fan_in))-like uniform so
 * activations keep their scale. tok (optional) is embedded as
 * tokenizer.ggml.*; loom.random_weights = true and general.description
 * "random weights ..." label the file. Same config, seed and wtype give the
 * same bytes. */
LOOM_API loom_status loom_model_write_random_gguf(const loom_model_config *c, loom_dtype wtype,
                                                  uint64_t seed, const loom_tokenizer *tok,
                                                  const char *path, char *err, size_t err_n);

/* Load config c with the same seeded random weights that
 * loom_model_write_random_gguf would write (no tokenizer), without a file:
 * the weights are generated and serialized in memory and copied into the
 * backend buffers as a loaded file's would be. Peak memory is about twice
 * the weights' bytes during the load. c->rope.mode must be
 * LOOM_ROPE_NORMAL or LOOM_ROPE_NEOX, as for the writer. */
LOOM_API loom_status loom_model_load_random(const loom_model_config *c, loom_dtype wtype,
                                            uint64_t seed, const loom_model_params *p,
                                            loom_model **out, char *err, size_t err_n);

/* Read the config from an open GGUF's metadata and tensor shapes (as the
 * loader does), validated. */
struct loom_gguf;
LOOM_API loom_status loom_model_config_from_gguf(struct loom_gguf *g, loom_model_config *out,
                                                 char *err, size_t err_n);

/* ---- projections and the training forward (train/, docs/adr/0028) ---- */

/* The seven linear projections of a dense block, PEFT's target_modules. */
typedef enum loom_proj {
    LOOM_PROJ_Q = 0, /* q_proj / attn_q */
    LOOM_PROJ_K,     /* k_proj / attn_k */
    LOOM_PROJ_V,     /* v_proj / attn_v */
    LOOM_PROJ_O,     /* o_proj / attn_output */
    LOOM_PROJ_GATE,  /* gate_proj / ffn_gate */
    LOOM_PROJ_UP,    /* up_proj / ffn_up */
    LOOM_PROJ_DOWN,  /* down_proj / ffn_down */
    LOOM_PROJ_COUNT
} loom_proj;

/* Called while a graph is built, right after each projection y = W x of
 * layer `layer` (x [in, N], y f32 [out, N], both in g); returns the tensor
 * the block uses instead of y, e.g. y + scale * B(A(dropout(x))) for a LoRA
 * adapter, or y itself. Errors go to g (sticky). Rows of q/k outputs are in
 * the model's layout (GGUF: llama.cpp's per-head permutation of HF rows). */
typedef loom_tensor *(*loom_proj_hook)(void *ud, loom_graph *g, int64_t layer, loom_proj which,
                                       loom_tensor *x, loom_tensor *y);

/* Install (or with NULL remove) a hook for every later inference graph
 * (loom_model_decode); cached graphs are dropped. ud is the caller's and
 * must outlive the model or the next call. */
LOOM_API loom_status loom_model_set_proj_hook(loom_model *m, loom_proj_hook hook, void *ud);

typedef struct loom_model_train_io {
    loom_tensor *tokens; /* i32 [n_seq * n_tokens] INPUT, sequence-major */
    loom_tensor *pos;    /* i32 [same] INPUT: the position of each token (0.. per sequence) */
    loom_tensor *logits; /* f32 [vocab, n_seq * n_tokens] */
} loom_model_train_io;

/* Append to g (the caller's, not scheduled yet) the forward pass of n_seq
 * independent sequences of n_tokens tokens, without the KV cache, every
 * position's logits, through the projection hook given here (NULL: none;
 * the model's own hook for decoding is not used). Weights enter g
 * as leaves bound to m's buffers (not PARAM: frozen; quantized ones pass
 * gradient to activations only). m must outlive g's use. The caller
 * schedules g on the backends from loom_model_backends. The residual stream
 * before and after each block is flagged LOOM_FLAG_CHECKPOINT (loom_graph_backward
 * then recomputes blocks instead of keeping their activations); clear the
 * flags for a backward that stores everything. */
LOOM_API loom_status loom_model_build_train(loom_model *m, loom_graph *g, int n_seq, int n_tokens,
                                            loom_proj_hook hook, void *ud,
                                            loom_model_train_io *io, char *err, size_t err_n);
/* The same for one packed sequence of n_tokens tokens holding n_docs
 * documents of doc_len[i] tokens end to end (sum = n_tokens): attention is
 * causal within each document and never crosses into another (HF's packing
 * with position_ids / DataCollatorWithFlattening); the caller uploads
 * positions that restart at 0 per document. doc_len is read during the
 * call only. */
LOOM_API loom_status loom_model_build_train_packed(loom_model *m, loom_graph *g, int n_tokens,
                                                   const int32_t *doc_len, int n_docs,
                                                   loom_proj_hook hook, void *ud,
                                                   loom_model_train_io *io, char *err,
                                                   size_t err_n);
/* Every option of a training graph (the two functions above are this with
 * matmul_dtype LOOM_F32). doc_len NULL: n_seq sequences of n_tokens; else
 * one packed sequence (n_seq 1) as loom_model_build_train_packed.
 * matmul_dtype (docs/adr/0041-mixed-precision-training.md): LOOM_F32 keeps
 * every matmul as it is; LOOM_BF16 or LOOM_F16 casts both inputs of every
 * projection and of the LM head (activations and base weight, quantized
 * ones dequantized) to that dtype, accumulating in f32 with an f32 result;
 * loom_graph_backward then runs their backward matmuls in the same dtype.
 * Norms, attention, softmax and the loss stay f32. The hook's own matmuls
 * are the hook's (train/ casts LoRA's the same way). */
typedef struct loom_model_train_opts {
    int n_seq, n_tokens;
    const int32_t *doc_len; /* read during the call only */
    int n_docs;
    loom_proj_hook hook; /* NULL: none */
    void *ud;
    loom_dtype matmul_dtype;
} loom_model_train_opts;
LOOM_API loom_status loom_model_build_train_opts(loom_model *m, loom_graph *g,
                                                 const loom_model_train_opts *o,
                                                 loom_model_train_io *io, char *err, size_t err_n);
/* The backend the weights live on and the cpu backend (borrowed). */
struct loom_backend;
LOOM_API void loom_model_backends(const loom_model *m, struct loom_backend **run,
                                  struct loom_backend **cpu);

#ifdef __cplusplus
}
#endif
#endif
