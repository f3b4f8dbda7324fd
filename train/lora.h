/* train/lora.h - LoRA adapters on a loom_model's projections (PEFT's LoRA,
 * docs/adr/0028-training.md).
 *
 * For each targeted projection y = W x of a dense block (W frozen, any dtype
 * the model holds: f32/f16/bf16/q8_0/q4_0/nf4) the adapter adds
 *     y += (alpha / r) * B (A dropout(x))
 * with A [r x in] drawn Kaiming-uniform (a = sqrt(5), i.e. U(-1/sqrt(in),
 * 1/sqrt(in)), PEFT's init_lora_weights=True) and B [out x r] zero, so a
 * fresh adapter leaves the model unchanged. Dropout (training graphs only)
 * multiplies x by a host-drawn mask of 0 and 1/(1-p), one independent mask
 * per projection as PEFT's per-module nn.Dropout does.
 *
 * Storage: every A and B is a host f32 array in PyTorch's row-major
 * (rows, cols) layout, which is loom's ne = {cols, rows}; graphs bind it as
 * a PARAM leaf (loom_tensor_set_host_data), so the optimizer updates it in
 * place and no copy of a base weight is ever made. q/k rows of B follow the
 * model's layout (GGUF models permute HF rows per head, see loom/model.h);
 * the PEFT reader/writer (train/peft.h) converts. MoE FFN layers get no
 * FFN adapters (attention adapters only). */
#ifndef LOOM_TRAIN_LORA_H
#define LOOM_TRAIN_LORA_H

#include <stdbool.h>
#include <stdint.h>

#include "loom/model.h"

#define LOOM_LORA_ALL_TARGETS 0x7Fu /* q,k,v,o,gate,up,down */

typedef struct loom_lora_config {
    int r;            /* rank, >= 1 */
    float alpha;      /* scale = alpha / r */
    float dropout;    /* [0, 1) on the LoRA input path, training graphs only */
    uint32_t targets; /* bit (1u << loom_proj) per targeted projection */
} loom_lora_config;

/* r 64, alpha 16, dropout 0.05, every projection: the QLoRA recipe. */
loom_lora_config loom_lora_default_config(void);

typedef struct loom_lora_param {
    char name[128]; /* PEFT's: base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight */
    int64_t layer;
    loom_proj proj;
    bool is_b;          /* B (out x r) rather than A (r x in) */
    int64_t rows, cols; /* PyTorch shape */
    float *w;           /* rows * cols floats, owned by the adapter */
} loom_lora_param;

typedef struct loom_lora {
    loom_lora_config cfg;
    loom_model_config mc; /* of the model it was made for */
    float scale;          /* alpha / r */
    int n_params;         /* 2 per adapted projection: A then B */
    loom_lora_param *p;
    int *index; /* [n_layers * LOOM_PROJ_COUNT]: index of A in p, -1 when none */
} loom_lora;

/* Adapter for a model with config mc (validated): A drawn from seed, B zero.
 * *out owned by the caller (loom_lora_free). err names the problem. */
loom_status loom_lora_new(const loom_model_config *mc, const loom_lora_config *cfg, uint64_t seed,
                          loom_lora **out, char *err, size_t err_n);
void loom_lora_free(loom_lora *lo); /* NULL is fine */

/* In and out features of projection which (whole model, dense layers). */
void loom_lora_proj_dims(const loom_model_config *mc, loom_proj which, int64_t *in, int64_t *out);
/* "q_proj", ... (PEFT's target_modules names) */
const char *loom_lora_proj_name(loom_proj which);

/* The leaves one graph holds for an adapter: filled while the graph is built
 * (loom_lora_hook), used to read gradients and feed dropout masks. */
typedef struct loom_lora_binding {
    loom_lora *lo;
    bool training;      /* dropout masks when cfg.dropout > 0 */
    loom_tensor **leaf; /* [n_params]: the PARAM leaf of each parameter in this graph */
    int n_masks, cap_masks;
    loom_tensor **mask; /* INPUT leaves [in, N], host data in mask_data */
    float **mask_data;
    /* LOOM_BF16 / LOOM_F16: the adapter's two matmuls take that dtype's
     * inputs (A, B and their activations cast per use; the f32 masters stay
     * the PARAM leaves, so gradients reach them in f32) as the base
     * projections do (docs/adr/0041). LOOM_F32 (set by init): f32. */
    loom_dtype mm;
} loom_lora_binding;

/* Start a binding for a graph about to be built; free with
 * loom_lora_binding_free (after the graph). */
loom_status loom_lora_binding_init(loom_lora_binding *b, loom_lora *lo, bool training);
void loom_lora_binding_free(loom_lora_binding *b);

/* The loom_proj_hook (loom/model.h) that adds the adapter; ud is a
 * loom_lora_binding. */
loom_tensor *loom_lora_hook(void *ud, loom_graph *g, int64_t layer, loom_proj which, loom_tensor *x,
                            loom_tensor *y);

/* Draw fresh dropout masks for the next run of the binding's graph, from
 * the xoshiro256** state rng[4] (advanced). Mask order and draws are fixed,
 * so the same state gives the same masks. */
void loom_lora_binding_draw_masks(loom_lora_binding *b, uint64_t rng[4]);

/* ---- the one random generator of train/ (xoshiro256**, seeded by splitmix64) ---- */
void loom_train_rng_seed(uint64_t rng[4], uint64_t seed);
uint64_t loom_train_rng_next(uint64_t rng[4]);
float loom_train_rng_uniform(uint64_t rng[4]); /* [0, 1), 24 random bits */

#endif
