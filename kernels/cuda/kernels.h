/* kernels/cuda/kernels.h - launch API of the CUDA/HIP kernels (internal).
 *
 * The backend (backends/cuda) describes each tensor with an lc_tensor
 * (device address of element (0,0,0,0), dtype, extents and byte strides,
 * exactly as the IR has them) and calls one lc_* function per node. Every
 * launcher enqueues on the given stream, never synchronizes, and returns
 * cudaGetLastError() (an int so this header stays plain C). Kernels read
 * inputs through their strides, as kernels/ref does, unless the comment says
 * the backend must check a layout first (backends/cuda supports()). */
#ifndef LOOM_KERNELS_CUDA_KERNELS_H
#define LOOM_KERNELS_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lc_tensor {
    char *data; /* device address of element (0,0,0,0) */
    int dtype;  /* loom_dtype */
    int64_t ne[4];
    int64_t nb[4];
    /* nf4/nf4_dq only: the sections of the whole storage tensor and the
     * element index of (0,0,0,0) in it (see loom/dtype.h). */
    const uint8_t *codes;
    const float *absmax;
    const uint8_t *qabsmax;
    const float *scale2;
    const float *dq_offset; /* device address of the f32 offset */
    const float *code;      /* device copy of loom_nf4_code[16] then loom_nf4_dq_code[256] */
    int64_t nf4_first;
} lc_tensor;

/* Device error word: a kernel that meets bad data (an id out of range) stores
 * a nonzero code here; the backend checks it on synchronize. */
enum { LC_ERR_NONE = 0, LC_ERR_BAD_ID = 1, LC_ERR_BAD_ROW = 2 };

/* elementwise.cu */
int lc_binary(void *stream, int op_mul, lc_tensor y, lc_tensor a, lc_tensor b);
/* kind: 0 scale (s), 1 silu, 2 swiglu (a=gate, b=up), 3 silu_back (a=x, b=dy),
 * 4 gelu (erf form), 5 gelu_back (a=x, b=dy) */
int lc_unary(void *stream, int kind, float s, lc_tensor y, lc_tensor a, lc_tensor b);
/* y contiguous of y.dtype in {f32,f16,bf16,i32}; a in {f32,f16,bf16,q8_0,q4_0,q4_1,q5_0,q5_1}
 * (i32 only to i32).
 */
int lc_cpy(void *stream, lc_tensor y, lc_tensor a);
/* y f32 [D,T,B]; table f32/f16/bf16/q8_0/q4_0/q4_1/q5_0/q5_1 [D,V,(1|B)]; ids i32 [T,B]. */
int lc_get_rows(void *stream, lc_tensor y, lc_tensor table, lc_tensor ids, int *err_word);
/* loom_set_rows into y (f32/f16/bf16) from src (f32) at i32 rows [T] or [T, B]. */
int lc_set_rows(void *stream, lc_tensor y, lc_tensor src, lc_tensor rows, int *err_word);

/* norm_rope.cu */
int lc_rms_norm(void *stream, float eps, lc_tensor y, lc_tensor x);
int lc_softmax(void *stream, float scale, int causal, int q_offset, lc_tensor y, lc_tensor x);
/* inv_freq: device table of the n_dims/2 frequencies (loom_rope_freq_table). */
int lc_rope(void *stream, int n_dims, int mode, int inverse, const double *inv_freq, lc_tensor y,
            lc_tensor x, lc_tensor pos);

/* matmul.cu: warp-per-row kernel, any weight dtype, any x dtype/strides; takes
 * the fast decode kernel by itself when lc_matmul_fast_ok(w, x). */
int lc_matmul_rows(void *stream, lc_tensor out, lc_tensor w, lc_tensor x);
/* Nonzero when the fast decode kernel takes this layout: dense weight rows
 * (aligned for the dtype's unit loads), f32 x with unit k-stride and 16-byte
 * aligned columns. */
int lc_matmul_fast_ok(lc_tensor w, lc_tensor x);
/* Rows [n0, n0+rows) of slice (0,0) of a q8_0/q4_0/nf4/nf4_dq weight (a layout
 * lc_matmul_fast_ok takes) -> contiguous f16 hi and lo = w - hi, [rows][K]
 * (8-byte aligned). cudaErrorInvalidValue for any other weight; with rows = 0
 * only that check (nothing enqueued, 0 when the layout is taken). */
int lc_dequant_half(void *stream, lc_tensor w, int64_t n0, int64_t rows, void *hi, void *lo);
/* kquant.cu: k-quant weights (q2_K..q6_K), warp per output, any x. */
int lc_matmul_kq(void *stream, lc_tensor out, lc_tensor w, lc_tensor x);
/* matmul.cu: 64x64 shared-memory tiles, any weight dtype, any x; for M >= 16. */
int lc_matmul_tiled(void *stream, lc_tensor out, lc_tensor w, lc_tensor x);
/* Convert a [K, M*S] f32/f16/bf16 tensor (strided) into contiguous f16 or
 * bf16 (dst_dtype); with lo != NULL also the residual x - hi (bf16 split). */
int lc_convert_half(void *stream, lc_tensor x, int dst_dtype, void *hi, void *lo);

/* attn.cu */
/* Paged flash_attn (docs/adr/0035): k/v are the block pool, tbl the
 * sequence's i32 block table on the device, bsz rows per block. */
int lc_flash_attn_paged(void *stream, float scale, int q_offset, int bsz, lc_tensor out,
                        lc_tensor q, lc_tensor k, lc_tensor v, const int32_t *tbl);
int lc_flash_attn(void *stream, float scale, int causal, int q_offset, lc_tensor out, lc_tensor q,
                  lc_tensor k, lc_tensor v);
/* Same op with the split-KV / tensor-core kernels: scratch (device) of at least
 * lc_flash_attn_scratch_bytes(q, k, v) bytes holds the per-split partials (0:
 * no split; a smaller scratch only disables the split). LOOM_CUDA_FA =
 * auto|warp|tiled|split|fma picks the kernel (docs/adr/0010). */
size_t lc_flash_attn_scratch_bytes(lc_tensor q, lc_tensor k, lc_tensor v);
int lc_flash_attn_ex(void *stream, float scale, int causal, int q_offset, lc_tensor out,
                     lc_tensor q, lc_tensor k, lc_tensor v, void *scratch, size_t scratch_bytes);

/* attn_back.cu: LOOM_OP_FLASH_ATTN_BACK, part 0 stats / 1 dq / 2 dkv (loom/ir.h);
 * x is o (stats) or the stats (dq, dkv). */
int lc_flash_attn_back(void *stream, int part, float scale, int causal, int q_offset, lc_tensor out,
                       lc_tensor q, lc_tensor k, lc_tensor v, lc_tensor dout, lc_tensor x);

/* moe.cu. scratch of lc_moe_scratch_bytes bytes: ids, gates and h [T*k*F] for both paths; the
 * grouped path (LOOM_CUDA_MOE = auto|grouped|warp, docs/adr/0010) adds y [T*k*Dm] and the
 * per-expert grouping. Same arguments as lc_moe: the size depends on the path chosen. */
size_t lc_moe_scratch_bytes(int top_k, lc_tensor x, lc_tensor logits, lc_tensor gate, lc_tensor up,
                            lc_tensor down);
int lc_moe(void *stream, int top_k, lc_tensor out, lc_tensor x, lc_tensor logits, lc_tensor gate,
           lc_tensor up, lc_tensor down, void *scratch);
int lc_moe_gate(void *stream, int top_k, lc_tensor out, lc_tensor logits);

#ifdef __cplusplus
}
#endif
#endif
