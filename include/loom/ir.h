/* loom/ir.h - the tensor IR: tensors, ops, graphs, autodiff.
 *
 * Conventions (docs/adr/0002-ir-design.md):
 *  - ne[0] is the innermost, contiguous dimension (as in ggml/GGUF). A PyTorch
 *    tensor of shape (A, B, C) is loom ne = {C, B, A, 1}.
 *  - nb[i] are byte strides. For row-blocked quantized types nb[0] is the
 *    block size in bytes and dims >= 1 are addressed in whole rows.
 *  - A graph owns every tensor created in it (arena, freed by loom_graph_free).
 *  - Op constructors return the new tensor, or NULL on error. Errors are
 *    sticky: once a constructor fails, the graph records the first message
 *    (loom_graph_status / loom_graph_error) and every later constructor given
 *    a NULL input returns NULL, so a model builder checks once at the end.
 *    (docs/adr/0004-sticky-graph-errors.md explains why constructors do not
 *    return loom_status like the rest of the API.)
 *  - Activations are f32. matmul additionally takes f16/bf16 activations;
 *    flash_attn takes f16 K/V (KV cache); cpy converts between any dtypes.
 */
#ifndef LOOM_IR_H
#define LOOM_IR_H

#include "loom/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/dtype.h"
#include "loom/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_MAX_DIMS   4
#define LOOM_MAX_SRC    6
#define LOOM_MAX_PARAMS 12
#define LOOM_NAME_MAX   48

typedef enum loom_op {
    LOOM_OP_NONE = 0, /* leaf: input, weight or constant */

    /* views: alias src[0]'s storage, never computed */
    LOOM_OP_VIEW, /* reshape / slice / permute / transpose all become VIEW */

    /* forward ops */
    LOOM_OP_GET_ROWS,      /* src0 table [D,V,...] any row dtype but nf4, src1 ids i32 [T,B] -> f32
                              [D,T,B] */
    LOOM_OP_ADD,           /* a + b, b broadcast (numpy rules per dim: equal or 1) */
    LOOM_OP_MUL,           /* a * b, b broadcast */
    LOOM_OP_SCALE,         /* a * p.f[0] */
    LOOM_OP_MATMUL,        /* out[n,m,i2,i3] = sum_k w[k,n,i2/r2,i3/r3] * x[k,m,i2,i3] */
    LOOM_OP_RMS_NORM,      /* y = x / sqrt(mean_k(x^2) + eps), over ne[0]; p.f[0] = eps */
    LOOM_OP_ROPE,          /* see loom_rope_params */
    LOOM_OP_SOFTMAX,       /* y = softmax(scale*x + causal mask) over ne[0]; see loom_softmax */
    LOOM_OP_SILU,          /* x * sigmoid(x) */
    LOOM_OP_SWIGLU,        /* silu(gate) * up (fused) */
    LOOM_OP_FLASH_ATTN,    /* fused attention; see loom_flash_attn */
    LOOM_OP_MOE,           /* fused mixture of experts; see loom_moe */
    LOOM_OP_CPY,           /* convert/copy src0 to this tensor's dtype, contiguous */
    LOOM_OP_CONCAT,        /* concat src0, src1 along p.i[0] */
    LOOM_OP_CROSS_ENTROPY, /* mean over rows of -log softmax(logits)[target]; f32 [1] */

    /* ops that autodiff emits (also usable directly) */
    LOOM_OP_SUM_TO,        /* sum src0 over dims where this tensor has extent 1 (broadcast undo) */
    LOOM_OP_SILU_BACK,     /* src0 = x, src1 = dy: dy * silu'(x) */
    LOOM_OP_RMS_NORM_BACK, /* src0 = x, src1 = dy, p.f[0] = eps: dx */
    LOOM_OP_SOFTMAX_BACK,  /* src0 = y (softmax output), src1 = dy, p.f[0] = scale: dx of the
                              pre-scale input: scale * y * (dy - sum(dy*y)) */
    LOOM_OP_GET_ROWS_BACK, /* src0 = dy [D,T,B], src1 = ids: scatter-add into [D,V] (f32) */
    LOOM_OP_CROSS_ENTROPY_BACK, /* src0 = logits, src1 = targets, src2 = dloss [1]: dlogits */
    LOOM_OP_MOE_GATE,           /* src0 = router logits [E,T] -> dense gate weights f32 [E,T]:
                                   softmax over each token's top-k logits, 0 elsewhere; p.i[0] = k */
    LOOM_OP_MOE_GATE_BACK,      /* src0 = gates (MOE_GATE output), src1 = dgates: dlogits */

    /* in-place ops: the result aliases src0's storage (view_src/view_offs), see loom_set_rows */
    LOOM_OP_SET_ROWS, /* write rows of src1 into src0 at i32 positions src2; result = src0 */

    /* encoders (BERT family; docs/adr/0027-sentence-encoders.md) */
    LOOM_OP_GELU,      /* x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), the exact (erf) form */
    LOOM_OP_GELU_BACK, /* src0 = x, src1 = dy: dy * (Phi(x) + x phi(x)) */
    LOOM_OP_FLASH_ATTN_BACK, /* fused attention backward, never T x T; see loom_flash_attn_back */

    LOOM_OP_COUNT
} loom_op;

typedef enum loom_tensor_flags {
    LOOM_FLAG_INPUT = 1u << 0,  /* data supplied by the caller before compute */
    LOOM_FLAG_PARAM = 1u << 1,  /* trainable: autodiff produces its gradient */
    LOOM_FLAG_OUTPUT = 1u << 2, /* result read back after compute; never reused */
    /* Gradient checkpoint: loom_graph_backward recomputes the forward nodes
     * between two consecutive flagged tensors (e.g. a decoder block between
     * its input and output) right before that segment's backward, instead of
     * keeping them alive from the forward pass. */
    LOOM_FLAG_CHECKPOINT = 1u << 3,
    /* A matmul whose activations stay f32: backends must not take a
     * reduced-precision activation path for it (the cpu's int8 activations,
     * ADR 0036). The model flags its output head: the logits are ranked, and
     * int8 rounding of the final hidden state alone moved SmolLM2's top two
     * first-answer logits by 0.13 against a 0.08 gap (ADR 0036 addendum 3). */
    LOOM_FLAG_F32_ACT = 1u << 4,
    /* Set by the scheduler on leaves whose storage it allocated, so a later
     * loom_sched_alloc reallocates them (the old buffer may be gone). */
    LOOM_FLAG_RUNTIME_OWNED = 1u << 31,
} loom_tensor_flags;

struct loom_buffer; /* runtime/backend-owned storage, see loom/backend.h */
struct loom_graph;

typedef struct loom_tensor {
    loom_dtype dtype;
    int64_t ne[LOOM_MAX_DIMS]; /* extents, ne[0] innermost; unused dims are 1 */
    size_t nb[LOOM_MAX_DIMS];  /* byte strides */
    loom_op op;
    union {
        int32_t i[LOOM_MAX_PARAMS];
        float f[LOOM_MAX_PARAMS];
    } p; /* op parameters; the layout per op is documented at its constructor */
    struct loom_tensor *src[LOOM_MAX_SRC];
    struct loom_tensor *view_src; /* VIEW: the tensor aliased (itself never a view) */
    size_t view_offs;             /* VIEW: byte offset into view_src */
    uint32_t flags;               /* loom_tensor_flags */
    int32_t id;                   /* index in its graph, stable */
    char name[LOOM_NAME_MAX];

    /* Storage, filled by the runtime's allocator (or loom_tensor_set_host_data).
     * data is a host-addressable pointer when the buffer is host memory, else NULL. */
    struct loom_buffer *buffer;
    size_t offset;
    void *data;
    int32_t backend_id; /* runtime-assigned backend index, -1 = unassigned */

    struct loom_tensor *grad; /* set by loom_graph_backward for PARAM/INPUT tensors */
} loom_tensor;

typedef struct loom_graph loom_graph;

/* ---------------- graph lifetime and errors ---------------- */

/* Creates an empty graph. The caller owns *out and frees it with loom_graph_free. */
LOOM_API loom_status loom_graph_new(loom_graph **out);
LOOM_API void loom_graph_free(loom_graph *g); /* frees all tensors created in g; NULL is fine */

/* First error recorded by a constructor, LOOM_OK if none. */
LOOM_API loom_status loom_graph_status(const loom_graph *g);
/* Message for that error ("" if none); owned by g. */
LOOM_API const char *loom_graph_error(const loom_graph *g);
/* Record an error (printf-style) unless one is already recorded; returns s. */
LOOM_API loom_status loom_graph_fail(loom_graph *g, loom_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---------------- tensors ---------------- */

/* New contiguous leaf tensor with n_dims extents (the rest are 1). */
LOOM_API loom_tensor *loom_tensor_new(loom_graph *g, loom_dtype t, int n_dims, const int64_t *ne);
LOOM_API loom_tensor *loom_tensor_1d(loom_graph *g, loom_dtype t, int64_t ne0);
LOOM_API loom_tensor *loom_tensor_2d(loom_graph *g, loom_dtype t, int64_t ne0, int64_t ne1);
LOOM_API loom_tensor *loom_tensor_3d(loom_graph *g, loom_dtype t, int64_t ne0, int64_t ne1,
                                     int64_t ne2);
LOOM_API loom_tensor *loom_tensor_4d(loom_graph *g, loom_dtype t, int64_t ne0, int64_t ne1,
                                     int64_t ne2, int64_t ne3);
LOOM_API loom_tensor *loom_tensor_set_name(loom_tensor *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Mark flags (LOOM_FLAG_*); returns t. */
LOOM_API loom_tensor *loom_tensor_set_flags(loom_tensor *t, uint32_t flags);

LOOM_API int64_t loom_tensor_nelements(const loom_tensor *t);
/* Bytes spanned by t's elements (for a contiguous tensor: its size). */
LOOM_API size_t loom_tensor_nbytes(const loom_tensor *t);
LOOM_API bool loom_tensor_is_contiguous(const loom_tensor *t);
/* Number of dims up to the last extent > 1 (at least 1). */
LOOM_API int loom_tensor_ndims(const loom_tensor *t);
/* The tensor whose storage t uses (t itself unless t is a view). */
LOOM_API loom_tensor *loom_tensor_storage(loom_tensor *t);
/* "f32[4096,32,1,1]": writes at most n bytes into buf, returns buf. */
LOOM_API char *loom_tensor_describe(const loom_tensor *t, char *buf, size_t n);

/* Point a leaf at caller-owned host memory (e.g. an mmap'd weight file); the
 * caller keeps ownership and must keep it alive while the graph runs. */
LOOM_API loom_status loom_tensor_set_host_data(loom_tensor *t, void *data);

/* ---------------- views (alias storage, no compute) ---------------- */

/* Same elements, new contiguous extents; a must be contiguous. */
LOOM_API loom_tensor *loom_reshape(loom_graph *g, loom_tensor *a, int n_dims, const int64_t *ne);
LOOM_API loom_tensor *loom_reshape_2d(loom_graph *g, loom_tensor *a, int64_t ne0, int64_t ne1);
LOOM_API loom_tensor *loom_reshape_3d(loom_graph *g, loom_tensor *a, int64_t ne0, int64_t ne1,
                                      int64_t ne2);
LOOM_API loom_tensor *loom_reshape_4d(loom_graph *g, loom_tensor *a, int64_t ne0, int64_t ne1,
                                      int64_t ne2, int64_t ne3);
/* Result dim axes[i] is a's dim i moved: out.ne[axes[i]] = a.ne[i] (ggml's permute). */
LOOM_API loom_tensor *loom_permute(loom_graph *g, loom_tensor *a, int ax0, int ax1, int ax2,
                                   int ax3);
/* Swap dims 0 and 1. */
LOOM_API loom_tensor *loom_transpose(loom_graph *g, loom_tensor *a);
/* Sub-range [start, start+len) of dimension dim (block-aligned for dim 0 of quantized). */
LOOM_API loom_tensor *loom_slice(loom_graph *g, loom_tensor *a, int dim, int64_t start,
                                 int64_t len);
/* General strided view: extents ne, strides nb (bytes), byte offset into a. */
LOOM_API loom_tensor *loom_view(loom_graph *g, loom_tensor *a, int n_dims, const int64_t *ne,
                                const size_t *nb, size_t offset);

/* ---------------- forward ops ---------------- */

/* rows of table (ne[0] = D, ne[1] = V) picked by ids (i32, up to 2 dims [T,B]).
 * Out f32 [D, T, B]. An id outside [0, V) makes the kernel fail with an error. */
LOOM_API loom_tensor *loom_get_rows(loom_graph *g, loom_tensor *table, loom_tensor *ids);
LOOM_API loom_tensor *loom_add(loom_graph *g, loom_tensor *a, loom_tensor *b);
LOOM_API loom_tensor *loom_mul(loom_graph *g, loom_tensor *a, loom_tensor *b);
LOOM_API loom_tensor *loom_scale(loom_graph *g, loom_tensor *a, float s); /* p.f[0] = s */

/* w: weights [K, N, W2, W3] in f32/f16/bf16/q8_0/q4_0/q4_1/q5_0/q5_1/nf4/nf4_dq
 * (nf4 contiguous);
 * x: activations [K, M, X2, X3] in f32/f16/bf16 with X2 % W2 == 0, X3 % W3 == 0.
 * out f32 [N, M, X2, X3]: out[n,m,i2,i3] = sum_k w[k,n,i2/(X2/W2),i3/(X3/W3)] * x[k,m,i2,i3]
 * i.e. y = x @ W^T for a PyTorch Linear weight W of shape (N, K).
 * The broadcast maps query head h to KV head h / (Hq/Hkv), as GQA's repeat_kv does. */
LOOM_API loom_tensor *loom_matmul(loom_graph *g, loom_tensor *w, loom_tensor *x);

LOOM_API loom_tensor *loom_rms_norm(loom_graph *g, loom_tensor *x, float eps); /* p.f[0] = eps */

typedef enum loom_rope_mode {
    LOOM_ROPE_NORMAL = 0, /* rotate adjacent pairs (2i, 2i+1): GGUF llama layout */
    LOOM_ROPE_NEOX = 2,   /* rotate (i, i + n_dims/2): Hugging Face rotate_half */
} loom_rope_mode;

typedef enum loom_rope_scaling {
    LOOM_ROPE_SCALING_NONE = 0,
    LOOM_ROPE_SCALING_LLAMA3 = 1,
} loom_rope_scaling;

/* Rotary embedding. x: f32 [head_dim, n_heads, T, B]; pos: i32 [T] absolute
 * positions (so a KV-cache offset is just pos = offset + t).
 * For pair i in [0, n_dims/2): inv_freq_i = theta^(-2i/n_dims); with llama3
 * scaling (Hugging Face _compute_llama3_parameters):
 *   wavelen = 2*pi / inv_freq
 *   wavelen > orig_ctx/low_freq_factor  : inv_freq /= factor
 *   wavelen < orig_ctx/high_freq_factor : unchanged
 *   otherwise smooth = (orig_ctx/wavelen - low) / (high - low),
 *             inv_freq = (1-smooth)*inv_freq/factor + smooth*inv_freq
 * angle = pos * inv_freq (computed in double, then cos/sin rounded to float);
 * (a, b) -> (a cos - b sin, a sin + b cos). Dims >= n_dims pass through.
 * inverse = 1 rotates by -angle (the backward of rope). */
typedef struct loom_rope_params {
    int32_t n_dims;                                  /* rotated dims, even, <= head_dim */
    int32_t mode;                                    /* loom_rope_mode */
    float theta;                                     /* base, e.g. 500000 */
    int32_t scaling;                                 /* loom_rope_scaling */
    float factor, low_freq_factor, high_freq_factor; /* llama3: 8, 1, 4 */
    int32_t orig_ctx;                                /* llama3: 8192 */
    int32_t inverse;
} loom_rope_params;
/* Llama-3.1 defaults: neox mode, theta 500000, llama3 scaling 8/1/4/8192. */
LOOM_API loom_rope_params loom_rope_params_llama3(int32_t head_dim);
LOOM_API loom_tensor *loom_rope(loom_graph *g, loom_tensor *x, loom_tensor *pos,
                                const loom_rope_params *p);
/* The p.i/p.f layout of a ROPE node, for kernels: */
LOOM_API void loom_rope_params_get(const loom_tensor *node, loom_rope_params *out);
/* The one implementation of the frequency rule above: out[i] = inv_freq_i
 * (scaling applied, in double) for the n_dims/2 rotated pairs. Every rope
 * kernel (ref, cpu, Vulkan, CUDA/HIP) takes its frequencies from this table,
 * and loom_rope_freq_factors (llama.cpp's rope_freqs.weight) is derived from
 * it, so a new scaling type is added here only. unscaled (may be NULL)
 * receives theta^(-2i/n_dims) for the same pairs. */
LOOM_API void loom_rope_freq_table(const loom_rope_params *p, double *out, double *unscaled);

/* softmax over ne[0] of scale*x, with an optional causal mask: element
 * (n = key index, m = row index ne[1]) is masked (-inf) when n > m + q_offset.
 * Fully masked rows produce zeros. p.f[0]=scale, p.i[1]=causal, p.i[2]=q_offset. */
LOOM_API loom_tensor *loom_softmax(loom_graph *g, loom_tensor *x, float scale, bool causal,
                                   int32_t q_offset);
LOOM_API loom_tensor *loom_silu(loom_graph *g, loom_tensor *x);
LOOM_API loom_tensor *loom_swiglu(loom_graph *g, loom_tensor *gate, loom_tensor *up);
/* Exact GELU (PyTorch nn.GELU(), approximate='none'; BERT's "gelu"):
 * 0.5 x (1 + erf(x / sqrt(2))). f32 in, f32 out, same shape. */
LOOM_API loom_tensor *loom_gelu(loom_graph *g, loom_tensor *x);

/* Fused attention, no T x T matrix materialised by optimised kernels.
 * q: f32 [D, Tq, Hq, B]; k, v: f32/f16 [D, Tk, Hkv, B]; Hq % Hkv == 0; any strides
 * (typically views permuted from [D, H, T]). Query head h reads KV head
 * h / (Hq/Hkv). Query t (position t + q_offset) sees keys j <= t + q_offset when
 * causal. out f32 [D, Hq, Tq, B] (contiguous, ready to reshape to [D*Hq, Tq]).
 * p.f[0] = scale (usually 1/sqrt(D)), p.i[1] = causal, p.i[2] = q_offset. */
LOOM_API loom_tensor *loom_flash_attn(loom_graph *g, loom_tensor *q, loom_tensor *k, loom_tensor *v,
                                      float scale, bool causal, int32_t q_offset);

/* Paged attention (docs/adr/0035, vLLM's PagedAttention) on the same op:
 * k, v are a layer's KV block pool [D, R, Hkv, 1] (R = n_pool_blocks *
 * block_size rows, any strides); blocks is i32 [n] (contiguous), the
 * sequence's block table. The sequence holds q_offset + Tq keys (always
 * causal: query t is at position q_offset + t); its logical key j lives at
 * pool row blocks[j / block_size] * block_size + j % block_size. q has
 * B = 1. src[3] = blocks, p.i[3] = block_size (0 on an unpaged node); a
 * backend that does not read src[3] must refuse nodes with p.i[3] != 0.
 * A block id outside the pool fails the compute (reference) or is clamped
 * by optimised kernels; the caller's table must be valid. */
LOOM_API loom_tensor *loom_flash_attn_paged(loom_graph *g, loom_tensor *q, loom_tensor *k,
                                            loom_tensor *v, loom_tensor *blocks,
                                            int32_t block_size, float scale, int32_t q_offset);

/* Paged attention of S sequences in one node (docs/adr/0044): q f32
 * [D, Tq, Hq, S] (Tq query tokens of every sequence); k, v one block pool
 * [D, R, Hkv, 1] as above; blocks i32 [n, S] (contiguous), column b the block
 * table of sequence b; offsets i32 [S], sequence b's query t at position
 * offsets[b] + t (always causal, seeing its keys 0 .. offsets[b] + t). out
 * f32 [D, Hq, Tq, S], sequence-major as the model's columns. src[3] = blocks,
 * src[4] = offsets, p.i[3] = block_size, p.i[2] = 0. A backend that does
 * not read src[4] must refuse nodes that have it. */
LOOM_API loom_tensor *loom_flash_attn_paged_batch(loom_graph *g, loom_tensor *q, loom_tensor *k,
                                                  loom_tensor *v, loom_tensor *blocks,
                                                  loom_tensor *offsets, int32_t block_size,
                                                  float scale);

/* Fused Mixtral-style MoE feed-forward.
 * x: f32 [Dm, T]; logits: f32 [E, T] (router output, e.g. matmul(router_w, x));
 * gate, up: weights [Dm, F, E]; down: weights [F, Dm, E] (any matmul weight dtype;
 * expert e is slice e of dim 2). Per token: the top_k largest logits are chosen
 * (ties -> lower expert index), their softmax gives weights g_e, and
 *   out = sum_e g_e * down_e( silu(gate_e x) * up_e x ).
 * Equal to softmax over all E then renormalising the top k (Mixtral).
 * out f32 [Dm, T]. p.i[0] = top_k. */
LOOM_API loom_tensor *loom_moe(loom_graph *g, loom_tensor *x, loom_tensor *logits,
                               loom_tensor *gate, loom_tensor *up, loom_tensor *down,
                               int32_t top_k);
/* Dense gate weights of loom_moe's routing as its own op (autodiff, tests). */
LOOM_API loom_tensor *loom_moe_gate(loom_graph *g, loom_tensor *logits, int32_t top_k);

/* In-place row write (docs/adr/0011-kv-cache-in-place-writes.md), like
 * llama.cpp's ggml_set_rows. dst: a leaf (or a view of one) with persistent
 * storage, [W, R, B, 1] in f32/f16/bf16/q8_0 (q8_0: W % 32 == 0); src: f32
 * [W, T, B, 1]; rows: i32 [T] (the same rows for every b) or [T, B].
 *   dst[:, rows[t, b], b] = convert(src[:, t, b])   for every t, b
 * Rows not named keep their contents. The result is dst itself: a tensor
 * whose storage IS dst's (view_src = dst's storage, view_offs = dst's offset,
 * same extents and strides), so the write happens in dst's buffer and views
 * taken of the result read the updated dst after the write (their dependency
 * on the write is the graph edge through the result). Rows outside [0, R)
 * make the kernel fail. Not differentiable. The scheduler runs it on the
 * backend that holds dst's storage, never on a copy. */
LOOM_API loom_tensor *loom_set_rows(loom_graph *g, loom_tensor *dst, loom_tensor *src,
                                    loom_tensor *rows);

/* Ops whose result aliases src0's storage instead of getting its own. */
LOOM_API bool loom_op_is_inplace(loom_op op);

/* ---- changing an allocated graph without rebuilding it ----
 * A decode loop re-runs one graph with a growing KV length. These setters
 * change only values that neither placement nor memory planning depend on,
 * so the graph stays valid for its scheduler (loom_sched_alloc need not run
 * again). Placement made at alloc time is kept: a backend's supports() must
 * not depend on a view's extents along the KV axis or on q_offset (ADR 0011). */
/* Set extent dim of a VIEW to ne (> 0). The view must stay inside its
 * storage: LOOM_ERR_INVALID_ARG otherwise (nothing changed). */
LOOM_API loom_status loom_view_set_extent(loom_tensor *view, int dim, int64_t ne);
/* Set q_offset of a FLASH_ATTN or SOFTMAX node (p.i[2]); must be >= 0. */
LOOM_API loom_status loom_node_set_q_offset(loom_tensor *node, int32_t q_offset);

/* Copy a into a new contiguous tensor of dtype t (quantizes/dequantizes as needed).
 * To nf4/nf4_dq or q*_0 the element count must be a multiple of the block size. */
LOOM_API loom_tensor *loom_cpy(loom_graph *g, loom_tensor *a, loom_dtype t);
/* Contiguous copy with a's dtype (materialises a view). */
LOOM_API loom_tensor *loom_cont(loom_graph *g, loom_tensor *a);
/* Concatenate along dim; other extents must match; f32 or same dtype. */
LOOM_API loom_tensor *loom_concat(loom_graph *g, loom_tensor *a, loom_tensor *b, int dim);
/* logits f32 [V, T], targets i32 [T]; rows with target < 0 are ignored (like
 * PyTorch ignore_index=-100). out f32 [1] = mean over counted rows of
 * logsumexp(logits) - logits[target]; 0 when no row counts. */
LOOM_API loom_tensor *loom_cross_entropy(loom_graph *g, loom_tensor *logits, loom_tensor *targets);

/* ---------------- backward helper ops (see enum) ---------------- */
/* ne[i] == a.ne[i] or 1 */
LOOM_API loom_tensor *loom_sum_to(loom_graph *g, loom_tensor *a, const int64_t *ne);
LOOM_API loom_tensor *loom_silu_back(loom_graph *g, loom_tensor *x, loom_tensor *dy);
LOOM_API loom_tensor *loom_gelu_back(loom_graph *g, loom_tensor *x, loom_tensor *dy);
LOOM_API loom_tensor *loom_rms_norm_back(loom_graph *g, loom_tensor *x, loom_tensor *dy, float eps);
LOOM_API loom_tensor *loom_softmax_back(loom_graph *g, loom_tensor *y, loom_tensor *dy,
                                        float scale);
LOOM_API loom_tensor *loom_get_rows_back(loom_graph *g, loom_tensor *dy, loom_tensor *ids,
                                         int64_t n_rows);
LOOM_API loom_tensor *loom_cross_entropy_back(loom_graph *g, loom_tensor *logits,
                                              loom_tensor *targets, loom_tensor *dloss);
LOOM_API loom_tensor *loom_moe_gate_back(loom_graph *g, loom_tensor *gates, loom_tensor *dgates);

/* FlashAttention-2's backward of o = loom_flash_attn(q, k, v, scale, causal,
 * q_offset), in three parts that each recompute the scores tile by tile and
 * never hold a T x T matrix (p.i[3] = part; p.f[0], p.i[1], p.i[2] as the forward's):
 *  LOOM_FA_BACK_STATS: x = o (the forward output) -> f32 [Tq, 2, Hq, B]: per
 *    query row the log-sum-exp L of its visible scaled scores (row 0) and
 *    Delta = dout . o (row 1);
 *  LOOM_FA_BACK_DQ:  x = the stats -> dq f32 [D, Tq, Hq, B] (q's shape);
 *  LOOM_FA_BACK_DKV: x = the stats -> f32 [D, Tk, Hkv, 2B]: dk in batches
 *    [0, B), dv in [B, 2B) (GQA: summed over each KV head's query heads).
 * dout is d(loss)/d(o), f32 [D, Hq, Tq, B]. q f32, k/v f32 or f16, any strides. */
typedef enum { LOOM_FA_BACK_STATS = 0, LOOM_FA_BACK_DQ = 1, LOOM_FA_BACK_DKV = 2 } loom_fa_back_part;
LOOM_API loom_tensor *loom_flash_attn_back(loom_graph *g, loom_fa_back_part part, loom_tensor *q,
                                           loom_tensor *k, loom_tensor *v, loom_tensor *dout,
                                           loom_tensor *x, float scale, bool causal,
                                           int32_t q_offset);

/* ---------------- graphs ---------------- */

/* Add t and everything it depends on to g's execution order (idempotent).
 * Nodes are kept in a valid topological order. */
LOOM_API loom_status loom_graph_expand(loom_graph *g, loom_tensor *t);
LOOM_API int loom_graph_n_nodes(const loom_graph *g);
LOOM_API loom_tensor *loom_graph_node(const loom_graph *g, int i); /* i-th node in order */
LOOM_API int loom_graph_n_tensors(const loom_graph *g);
LOOM_API loom_tensor *loom_graph_tensor(const loom_graph *g, int i); /* every tensor, by id */

/* Reverse-mode autodiff: appends to g the nodes computing d(loss)/d(t) for every
 * tensor flagged LOOM_FLAG_PARAM (and INPUT when include_inputs) that loss
 * depends on, and sets t->grad. loss must be an f32 scalar already expanded in g.
 * Gradients flow to float tensors only (quantized weights get none).
 * Fused ops (swiglu, moe) backpropagate through their unfused decomposition,
 * built inside the backward graph; flash_attn through loom_flash_attn_back.
 * With tensors flagged LOOM_FLAG_CHECKPOINT, each segment between two of them
 * is recomputed for its backward (same ops on the same inputs: identical
 * values), so only the checkpoints live through the whole step. */
LOOM_API loom_status loom_graph_backward(loom_graph *g, loom_tensor *loss, bool include_inputs);

/* Build the unfused equivalent of a fused node (swiglu, flash_attn, moe) from the
 * same sources, in g; used by autodiff and the parity suite. */
LOOM_API loom_tensor *loom_decompose(loom_graph *g, loom_tensor *fused);

LOOM_API const char *loom_op_name(loom_op op); /* "matmul", ... */
/* Whether op takes weights of dtype w (matmul's src0, moe's expert weights,
 * get_rows' table): the one place that rule is written. false for ops
 * without weights. */
LOOM_API bool loom_op_weight_dtype_ok(loom_op op, loom_dtype w);
/* The same rule as text for messages: "f32, f16, ..." (empty for ops without
 * weights), truncated to fit n bytes. */
LOOM_API void loom_op_weight_dtypes(loom_op op, char *buf, size_t n);
LOOM_API bool loom_op_is_view(loom_op op);

#ifdef __cplusplus
}
#endif
#endif
