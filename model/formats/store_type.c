/* model/formats/store_type.c - the one storage-type policy
 * (loom_model_store_type: which dtype each GGUF tensor is stored at for a
 * requested weight type), llama.cpp's k-quant fallback and the matching
 * general.file_type. The k-quant mixes (per-tensor rules) are in
 * quant_mix.c. Shared by the
 * converter (hf_convert.c), export (export.c) and quantize-on-load
 * (arch/load.c); depends on nothing in model/. */
#include <string.h>

#include "loom/model.h"
#include "model/model_internal.h"

loom_status loom_model_store_type(const char *name, int n_dims, const int64_t *ne, loom_dtype want,
                                  loom_dtype *out) {
    if (!name || !ne || !out || n_dims < 1) return LOOM_ERR_INVALID_ARG;
    int64_t n = 1;
    for (int d = 0; d < n_dims; d++)
        n *= ne[d];
    if (n_dims == 1 || strstr(name, "ffn_gate_inp")) {
        *out = LOOM_F32;
        return LOOM_OK;
    }
    switch (want) {
    case LOOM_F32:
    case LOOM_F16:
    case LOOM_BF16:
        *out = want;
        return LOOM_OK;
    case LOOM_Q8_0:
    case LOOM_Q4_0:
    case LOOM_Q4_1:
    case LOOM_Q5_0:
    case LOOM_Q5_1:
        *out = ne[0] % loom_dtype_block_size(want) == 0 ? want : LOOM_F16;
        return LOOM_OK;
    case LOOM_Q2_K:
    case LOOM_Q3_K:
    case LOOM_Q4_K:
    case LOOM_Q5_K:
    case LOOM_Q6_K: /* k-quants (ADR 0024, 0039): rows of whole 256-value super-blocks */
        *out = loom_model_kquant_fallback(want, ne[0]);
        return LOOM_OK;
    case LOOM_NF4:
    case LOOM_NF4_DQ: {
        /* QLoRA quantizes the decoder's linear layers only: the embedding
         * and the LM head keep the compute dtype */
        bool embed = !strcmp(name, "token_embd.weight") || !strcmp(name, "output.weight");
        bool fits = n % LOOM_NF4_BLOCK == 0 && ne[0] % 2 == 0;
        *out = !embed && fits ? LOOM_NF4_DQ : LOOM_F16;
        return LOOM_OK;
    }
    default:
        return LOOM_ERR_INVALID_ARG;
    }
}

/* llama.cpp's tensor_type_fallback (src/llama-quant.cpp): a matrix whose rows
 * are not whole super-blocks takes the 32-value type of about the same size
 * (q2_K/q3_K: q4_0, q4_K: q5_0, q5_K: q5_1, q6_K: q8_0), and f16 when the
 * rows are not whole 32-value blocks either. */
loom_dtype loom_model_kquant_fallback(loom_dtype t, int64_t ne0) {
    loom_dtype r = t;
    if (ne0 % loom_dtype_block_size(t) != 0) {
        switch (t) {
        case LOOM_Q2_K:
        case LOOM_Q3_K:
            r = LOOM_Q4_0;
            break;
        case LOOM_Q4_K:
            r = LOOM_Q5_0;
            break;
        case LOOM_Q5_K:
            r = LOOM_Q5_1;
            break;
        case LOOM_Q6_K:
            r = LOOM_Q8_0;
            break;
        default:
            break;
        }
        if (ne0 % loom_dtype_block_size(r) != 0) r = LOOM_F16;
    }
    return r;
}

int loom_model_gguf_file_type(loom_dtype t) {
    switch (t) {
    case LOOM_F32:
        return 0;
    case LOOM_F16:
        return 1;
    case LOOM_Q4_0:
        return 2;
    case LOOM_Q4_1: /* llama.cpp's LLAMA_FTYPE_MOSTLY_* */
        return 3;
    case LOOM_Q5_0:
        return 8;
    case LOOM_Q5_1:
        return 9;
    case LOOM_Q8_0:
        return 7;
    case LOOM_BF16:
        return 32;
    /* every matrix at one k-quant: llama.cpp's "mostly" ftype of that type
     * (Q2_K, Q3_K_S, Q4_K_S, Q5_K_S, Q6_K); the mixes are in quant_mix.c */
    case LOOM_Q2_K:
        return 10;
    case LOOM_Q3_K:
        return 11;
    case LOOM_Q4_K:
        return 14;
    case LOOM_Q5_K:
        return 16;
    case LOOM_Q6_K:
        return 18;
    default:
        return -1;
    }
}
