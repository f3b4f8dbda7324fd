/* model/model_internal.h - what the model sources share and nothing outside
 * model/ may use: the error helper, the writer-blob list, buffer placement,
 * the loom_model struct (arch/load.c: config and weights; generate/kv_cache.c:
 * KV cache; arch/llama.c: forward graph and its cache) and the cross-folder
 * entry points. Internal names are loom_-prefixed (loom_llama_*, loom_tok_*)
 * so that they cannot collide with llama.cpp's llama_* in one process. */
#ifndef LOOM_MODEL_INTERNAL_H
#define LOOM_MODEL_INTERNAL_H

#include <stdarg.h>

#include "loom/gguf.h"
#include "loom/model.h"
#include "loom/runtime.h"

/* Format a message into err (when err and err_n > 0) and return st: the one
 * error helper of the model sources (model/model_common.c), so that
 * `return loom_model_fail(err, err_n, LOOM_ERR_FORMAT, "...")` reads the same
 * everywhere. Objects that keep their last error (loom_gguf, the writer,
 * loom_safetensors) format into it with loom_model_vfail. */
loom_status loom_model_fail(char *err, size_t err_n, loom_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
loom_status loom_model_vfail(char *err, size_t err_n, loom_status st, const char *fmt, va_list ap)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 0)))
#endif
    ;

/* A leaf of g standing for persistent tensor w (weights, KV cache): same
 * storage, so the scheduler leaves it where it is. NULL (g's sticky error)
 * when g cannot take it. Used by every architecture's graph builder. */
loom_tensor *loom_model_mirror(loom_graph *g, const loom_tensor *w);

/* Heap blocks a GGUF writer references (loom_gguf_writer_add_tensor does not
 * copy) until it has written the file; loom_blobs_free frees them all. */
typedef struct loom_blobs {
    void **v;
    int n, cap;
} loom_blobs;
/* Take ownership of p; false when out of memory (p is then still the
 * caller's). */
/* Load a model from an open GGUF (model/arch/load.c); takes ownership of g
 * (closed before returning, on success and failure; memory g borrows can be
 * freed then). path only labels messages. */
struct loom_gguf;
loom_status loom_model_load_open_gguf(struct loom_gguf *g, const char *path,
                                      const loom_model_params *pp, loom_model **out, char *err,
                                      size_t err_n);
bool loom_blobs_keep(loom_blobs *b, void *p);
void loom_blobs_free(loom_blobs *b);

/* Placement of tensors into backend buffers (the weights, the KV cache):
 * greedy, in order, each tensor at a LOOM_W_ALIGN offset, a new buffer when
 * the next tensor does not fit in max bytes (0 = no limit: one buffer). */
#define LOOM_W_ALIGN 64
typedef struct loom_place {
    int buf;    /* buffer index */
    size_t off; /* byte offset in it */
} loom_place;
typedef struct loom_pack {
    size_t max;    /* set by the caller */
    size_t *sizes; /* per buffer */
    int n, cap;
    size_t end; /* bytes used in the last buffer */
} loom_pack;
/* Place a tensor of nbytes: *at gets its buffer and offset.
 * LOOM_ERR_UNSUPPORTED: larger than max (a tensor cannot be split). */
loom_status loom_pack_add(loom_pack *pk, size_t nbytes, loom_place *at);
/* After the last add: at least one buffer, none empty (backends refuse
 * empty buffers). */
loom_status loom_pack_finish(loom_pack *pk);
void loom_pack_free(loom_pack *pk);
/* Allocate n buffers of sizes[i] on be into a new array *out (owned by the
 * model, freed by loom_model_free even when this fails half-way); what names
 * them in messages. */
loom_status loom_alloc_buffers(loom_backend *be, const size_t *sizes, int n, loom_buffer ***out,
                               int *n_out, const char *what, char *err, size_t err_n);
/* A leaf of wg bound to buffer b at offset off. */
loom_tensor *loom_bound_leaf(loom_graph *wg, loom_dtype t, const int64_t ne[4], loom_buffer *b,
                             size_t off, const char *name);

#define LOOM_LLAMA_GRAPH_CACHE 4  /* forward graphs kept (decode + a few prefill shapes) */
#define LOOM_LLAMA_MAX_SEQ     64 /* sequences in one batch */

typedef struct loom_llama_layer {
    loom_tensor *attn_norm, *wq, *wk, *wv, *wo, *ffn_norm;
    loom_tensor *gate, *up, *down;                         /* dense FFN */
    loom_tensor *router, *gate_exps, *up_exps, *down_exps; /* MoE FFN */
    bool moe;
    loom_tensor *k_cache, *v_cache; /* the block pools [kv_dim, n_kv_blocks * kv_bs] */
} loom_llama_layer;

/* A built and allocated forward graph for one batch shape. */
typedef struct loom_llama_graph {
    bool used;
    int n_seq, n_tokens;
    int slots[LOOM_LLAMA_MAX_SEQ];
    bool all_logits;
    loom_graph *g;
    loom_sched *s;
    loom_tensor *tokens, *pos, *rows, *out_ids, *logits;
    loom_tensor *tables; /* i32 [max_blk, n_seq]: the block table of every sequence */
    /* Per (layer, sequence): the flash_attn node, whose q_offset is
     * re-targeted before every run; unused (NULL entries) when batched. */
    loom_tensor **fa;
    /* Batched paged attention (docs/adr/0044): one flash_attn node per layer
     * over every sequence, their query offsets an i32 input [n_seq]; NULL:
     * one node per sequence (a backend other than the cpu runs the model). */
    loom_tensor *q_offsets;
    uint64_t last_used;
} loom_llama_graph;

struct loom_model {
    loom_model_config cfg;
    loom_tokenizer *tok;
    bool random_weights;
    loom_backend *be, *cpu, *kv_be;
    loom_graph *wg; /* persistent leaves: weights and KV cache (never computed) */
    /* Weights (on be) and KV cache (on kv_be), each spread over as many
     * buffers as the backend's maximum buffer size needs (usually one).
     * The model owns the arrays and every buffer in them; loom_model_free
     * frees them after the graphs that reference them. */
    loom_buffer **wbufs, **kvbufs;
    int n_wbufs, n_kvbufs;
    size_t wbytes;
    char wtypes[64];
    loom_tensor *tok_embd, *output_norm, *output;
    loom_llama_layer *layers;
    int64_t n_ctx;
    int n_slots;
    loom_dtype kv_dtype;
    int64_t *slot_pos;
    /* Paged KV cache (docs/adr/0035): kv_bs tokens per block, kv_nblk blocks
     * per layer pool; a slot's block table slot_tbl[slot * max_blk ..] holds
     * slot_nblk[slot] blocks, slot_bhash the hash of each full registered
     * block (0: none), slot_tok the slot's token ids (for the hashes). */
    int kv_bs, kv_nblk, max_blk;
    int32_t *slot_tbl, *slot_tok;
    int *slot_nblk;
    uint64_t *slot_bhash;
    struct loom_kv_blocks *blocks;
    loom_llama_graph cache[LOOM_LLAMA_GRAPH_CACHE];
    uint64_t tick;
    int n_builds, n_runs;
    loom_proj_hook hook; /* loom_model_set_proj_hook; NULL: plain projections */
    void *hook_ud;
    /* Layer split (docs/adr/0030; arch/load.c fills it). devs: the devices
     * of the plan (plan.dev order, cpu included); layer_dev[l], embd_dev,
     * head_dev: indices into devs; kv_dev[l]: the device of layer l's KV
     * cache (its layer's, or the cpu when that lacks set_rows). split: more
     * than one device computes, so llama.c pins every node to its layer's
     * device; false: everything on be as before (no pins). */
    bool has_plan, split;
    loom_split_plan plan;
    loom_backend *devs[LOOM_MAX_DEVICES];
    int n_devs;
    int *layer_dev, *kv_dev;
    int embd_dev, head_dev;
    char kv_names[64]; /* loom_model_kv_backend_name: "vulkan" or "vulkan+cpu" */
    /* Tensor parallelism (docs/adr/0034; arch/tp.c): tp ranks, this one
     * tp_rank; cfg holds the shard's head and FFN counts; tp_buf: host
     * scratch of the all-reduce hook. */
    int tp, tp_rank;
    struct loom_comm *comm;
    float *tp_buf;
    size_t tp_buf_n;
};

/* arch/tp.c: this rank's part of weight name (type t, shape ne, made the
 * slice's): *dim = the dimension split, 1 (output rows: attn_q/k/v,
 * ffn_gate/up and their _exps), 0 (input columns: attn_output, ffn_down,
 * ffn_down_exps) or -1 (replicated; ne unchanged), from element *start.
 * LOOM_ERR_UNSUPPORTED (err says why) when the slice is not whole blocks
 * of t or t is nf4. */
loom_status loom_tp_shard_weight(const char *name, loom_dtype t, int tp, int rank, int64_t ne[4],
                                 int *dim, int64_t *start, char *err, size_t err_n);
/* arch/tp.c: check that cfg divides over tp ranks (heads, KV heads, FFN
 * width) and turn it into one rank's shard (counts / tp). */
loom_status loom_tp_local_config(loom_model_config *cfg, int tp, char *err, size_t err_n);
/* arch/tp.c: the part [start, start + n) along dim (0: elements of every
 * row, whole blocks of t; 1: rows of every ne[2] slab) of a [ne0, ne1, ne2]
 * tensor of type t, into a malloc'd *out of *nbytes. */
loom_status loom_tp_slice(loom_dtype t, const void *src, const int64_t ne[3], int dim,
                          int64_t start, int64_t n, void **out, size_t *nbytes);
/* arch/tp.c: the scheduler hook that all-reduces a row-parallel partial
 * sum over m->comm (ud = the model). */
loom_status loom_tp_allreduce_hook(void *ud, loom_tensor *node);

/* arch/split.c: the devices of a load (m->devs, m->be; --devices, else
 * the run backend; the cpu always last unless listed), checked against the
 * registry and p->n_tensor_split. m->cpu must be set. */
loom_status loom_split_devices(loom_model *m, const loom_model_params *p, char *err, size_t err_n);
/* arch/split.c: the plan from the weight sizes (m->plan, m->layer_dev,
 * embd_dev, head_dev, split; m->be becomes the only device when the plan
 * puts everything on one). m->layer_dev must be allocated. */
loom_status loom_split_make(loom_model *m, const loom_model_params *p, const size_t *layer_bytes,
                            size_t embd_bytes, size_t head_bytes, char *err, size_t err_n);

/* generate/kv_cache.c: the context length a load with p gives (p->n_ctx, or
 * min(max_ctx, 4096)). */
int64_t loom_kv_cache_n_ctx(const loom_model_config *c, const loom_model_params *p);

/* generate/kv_cache.c: the KV cache backend, buffers, K/V leaves of every
 * layer and slot positions, from p->kv_dtype, n_ctx and n_slots (the loader's
 * step after the weights; m->be, m->cpu, m->wg and m->layers must be set). */
loom_status loom_kv_cache_alloc(loom_model *m, const loom_model_params *p, char *err, size_t err_n);
/* generate/kv_cache.c: frees what loom_kv_cache_alloc allocated on the host. */
void loom_kv_cache_free(loom_model *m);
/* generate/kv_cache.c: give the slot blocks for positions up to upto (its
 * table grows); LOOM_ERR_OOM with a message when the pool has none left. */
loom_status loom_kv_cache_reserve(loom_model *m, int slot, int64_t upto, char *err, size_t err_n);
/* generate/kv_cache.c: after a successful forward appended tokens[0..n) at
 * position pos of slot: remember them and hash the blocks they filled. */
void loom_kv_cache_commit(loom_model *m, int slot, int64_t pos, const int32_t *tokens, int64_t n);

/* formats/hf_convert.c: convert the checkpoint directory dir (config.json,
 * safetensors, tokenizer.json if present) to a GGUF at path with weight type
 * wtype (f32/f16/bf16/q8_0/q4_0; LOOM_DTYPE_COUNT: the checkpoint's lossless
 * float type). Feeds the loader (a temporary GGUF) and export. */
loom_status loom_hf_dir_to_gguf(const char *dir, loom_dtype wtype, const char *path,
                                loom_progress_fn progress, void *ud, char *err, size_t err_n);

/* formats/store_type.c: llama.cpp's type for a k-quant matrix of rows of
 * ne0 values (t itself when ne0 is a multiple of 256; see loom/model.h). */
loom_dtype loom_model_kquant_fallback(loom_dtype t, int64_t ne0);

/* formats/quant_mix.c: the per-tensor types of a llama.cpp k-quant mix
 * (loom_quant_mix), chosen as llama-quantize's llama_tensor_get_type does
 * without an importance matrix. loom_mix_begin counts the attn_v tensors of
 * g and reads the model's shape from c; loom_mix_type must then be called
 * once per tensor in file order (the rules count attn_v and ffn_down
 * tensors as they come). */
typedef struct loom_mix_state {
    loom_quant_mix mix;
    loom_dtype base; /* q3_K, q4_K or q5_K */
    int n_layer, n_expert;
    bool tied;     /* no output.weight: token_embd is the output head */
    bool is_70b;   /* llama.cpp's LLM_TYPE_70B: 80 layers with grouped KV heads */
    int n_attn_v, i_attn_v, i_ffn_down;
} loom_mix_state;
loom_dtype loom_mix_base(loom_quant_mix mix); /* LOOM_DTYPE_COUNT for NONE */
int loom_mix_file_type(loom_quant_mix mix);   /* LLAMA_FTYPE_MOSTLY_Q*_K_M */
const char *loom_mix_name(loom_quant_mix mix);
void loom_mix_begin(loom_mix_state *st, loom_quant_mix mix, const loom_model_config *c,
                    loom_gguf *g);
loom_dtype loom_mix_type(loom_mix_state *st, const char *name, int n_dims, const int64_t *ne);

/* arch/llama.c */
void loom_llama_graph_release(loom_llama_graph *lg);

#endif
