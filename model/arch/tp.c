/* model/arch/tp.c - tensor parallelism across ranks (docs/adr/0034): which
 * weights split along which dimension, the shard's config, slicing a
 * weight at load, and the all-reduce after each row-parallel matmul. */
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"
#include "runtime/comm.h"

static int weight_dim(const char *name) {
    static const char *const col[] = {".attn_q.weight",        ".attn_k.weight",
                                      ".attn_v.weight",        ".ffn_gate.weight",
                                      ".ffn_up.weight",        ".ffn_gate_exps.weight",
                                      ".ffn_up_exps.weight",   NULL};
    static const char *const row[] = {".attn_output.weight", ".ffn_down.weight",
                                      ".ffn_down_exps.weight", NULL};
    const size_t n = strlen(name);
    for (int i = 0; col[i]; i++)
        if (n > strlen(col[i]) && !strcmp(name + n - strlen(col[i]), col[i])) return 1;
    for (int i = 0; row[i]; i++)
        if (n > strlen(row[i]) && !strcmp(name + n - strlen(row[i]), row[i])) return 0;
    return -1;
}

loom_status loom_tp_shard_weight(const char *name, loom_dtype t, int tp, int rank, int64_t ne[4],
                                 int *dim, int64_t *start, char *err, size_t err_n) {
    *dim = weight_dim(name);
    *start = 0;
    if (*dim < 0) return LOOM_OK;
    const int64_t n = ne[*dim] / tp;
    if (loom_dtype_is_nf4(t) || (*dim == 0 && n % loom_dtype_block_size(t)))
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "model: --tp %d: '%s' (%s) cannot be split into %lld columns per "
                               "rank",
                               tp, name, loom_dtype_name(t), (long long)n);
    *start = n * rank;
    ne[*dim] = n;
    return LOOM_OK;
}

loom_status loom_tp_local_config(loom_model_config *c, int tp, char *err, size_t err_n) {
    const bool moe = c->n_experts > 0;
    const int64_t ffn = c->ffn_dim, effn = c->expert_ffn_dim;
    if (c->n_heads % tp || c->n_kv_heads % tp)
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "model: --tp %d needs the heads (%lld) and KV heads (%lld) to "
                               "divide by %d",
                               tp, (long long)c->n_heads, (long long)c->n_kv_heads, tp);
    if ((ffn > 0 && ffn % tp) || (moe && effn % tp))
        return loom_model_fail(err, err_n, LOOM_ERR_UNSUPPORTED,
                               "model: --tp %d needs the FFN width (%lld) to divide by %d", tp,
                               (long long)(moe ? effn : ffn), tp);
    c->n_heads /= tp;
    c->n_kv_heads /= tp;
    c->ffn_dim /= tp;
    c->expert_ffn_dim /= tp;
    return LOOM_OK;
}

loom_status loom_tp_slice(loom_dtype t, const void *src, const int64_t ne[3], int dim,
                          int64_t start, int64_t n, void **out, size_t *nbytes) {
    *out = NULL;
    if (loom_dtype_is_nf4(t)) return LOOM_ERR_UNSUPPORTED; /* whole-tensor layout */
    const int64_t bs = loom_dtype_block_size(t);
    if (dim == 0 && (start % bs || n % bs)) return LOOM_ERR_UNSUPPORTED;
    const size_t row = loom_dtype_nbytes(t, ne[0]);
    const int64_t rows = ne[1] * ne[2];
    const size_t keep = dim == 0 ? loom_dtype_nbytes(t, n) : row;
    *nbytes = dim == 0 ? keep * (size_t)rows : row * (size_t)(n * ne[2]);
    unsigned char *dst = malloc(*nbytes ? *nbytes : 1);
    if (!dst) return LOOM_ERR_OOM;
    const unsigned char *s = src;
    if (dim == 0) {
        const size_t skip = loom_dtype_nbytes(t, start);
        for (int64_t r = 0; r < rows; r++)
            memcpy(dst + (size_t)r * keep, s + (size_t)r * row + skip, keep);
    } else {
        for (int64_t e = 0; e < ne[2]; e++)
            memcpy(dst + (size_t)(e * n) * row, s + (size_t)(e * ne[1] + start) * row,
                   (size_t)n * row);
    }
    *out = dst;
    return LOOM_OK;
}

loom_status loom_tp_allreduce_hook(void *ud, loom_tensor *node) {
    loom_model *m = ud;
    const size_t nb = loom_tensor_nbytes(node);
    if (node->dtype != LOOM_F32 || !loom_tensor_is_contiguous(node)) return LOOM_ERR_UNSUPPORTED;
    /* on cpu the node's arena is host memory: the sum happens in place */
    if (node->data) return loom_comm_allreduce_sum(m->comm, node->data, nb / 4, LOOM_COMM_F32);
    if (nb / 4 > m->tp_buf_n) {
        float *b = realloc(m->tp_buf, nb);
        if (!b) return LOOM_ERR_OOM;
        m->tp_buf = b;
        m->tp_buf_n = nb / 4;
    }
    LOOM_TRY(loom_tensor_download(node, m->tp_buf, nb));
    LOOM_TRY(loom_comm_allreduce_sum(m->comm, m->tp_buf, nb / 4, LOOM_COMM_F32));
    return loom_tensor_upload(node, m->tp_buf, nb);
}
