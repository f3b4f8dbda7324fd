/* model/formats/store_type.c - the one storage-type policy
 * (loom_model_store_type: which dtype each GGUF tensor is stored at for a
 * requested weight type) and the matching general.file_type. Shared by the
 * converter (hf_convert.c), export (export.c) and quantize-on-load
 * (arch/load.c); depends on nothing in model/. */
#include <string.h>

#include "loom/model.h"

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
    case LOOM_Q4_K:
    case LOOM_Q6_K: /* k-quants (ADR 0024): rows of whole 256-value super-blocks;
                     * other matrices q8_0, as llama-quantize falls back for q6_K */
        *out = ne[0] % LOOM_QK_K == 0 ? want : ne[0] % 32 == 0 ? LOOM_Q8_0 : LOOM_F16;
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
    case LOOM_Q4_K: /* llama.cpp's LLAMA_FTYPE_MOSTLY_Q4_K_M / _Q6_K */
        return 15;
    case LOOM_Q6_K:
        return 18;
    default:
        return -1;
    }
}
