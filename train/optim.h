/* train/optim.h - optimizers over host f32 parameters, the learning-rate
 * schedule and gradient clipping (docs/adr/0028-training.md).
 *
 * The optimizer interface. A loom_optim updates parameter tensors in place
 * given their (already averaged and clipped) f32 gradients; how it keeps its
 * state is its own business. An implementation fills loom_optim_ops:
 *   - step(o, i, w, g, n, lr): one update of parameter tensor i (n floats),
 *     after o->t has been advanced to the step being taken (1 for the first);
 *     must be deterministic (resume is checked bit for bit);
 *   - n_state(o) / state(o, k, ...): its state as named byte arrays
 *     (moments, quantized moments and their absmax, ...). The checkpoint
 *     writes every array and on resume copies the bytes back into the same
 *     pointers, so the arrays must exist (allocated) from creation on and
 *     their sizes must depend only on the parameter sizes given at creation;
 *   - free(o).
 * f32 AdamW (below) is one implementation; the 8-bit blockwise AdamW
 * (train/adam8*) is another with the same hyper-parameters and t.
 *
 * AdamW follows torch.optim.AdamW (decoupled weight decay):
 *   w -= lr * wd * w
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   w -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * Weight decay applies to every tensor it is given: LoRA's A and B are
 * matrices, which is where PEFT/transformers' Trainer applies it (biases and
 * norm weights are excluded there, and are never trainable here). */
#ifndef LOOM_TRAIN_OPTIM_H
#define LOOM_TRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "loom/status.h"

typedef struct loom_adamw_params {
    float beta1, beta2, eps, weight_decay;
} loom_adamw_params;

/* torch defaults with transformers' Trainer weight decay: 0.9, 0.999, 1e-8, 0. */
loom_adamw_params loom_adamw_default_params(void);

typedef struct loom_optim loom_optim;

typedef struct loom_optim_ops {
    const char *name; /* "adamw", "adamw8bit" (goes into checkpoints; must match on resume) */
    void (*step)(loom_optim *o, int i, float *w, const float *g, int64_t n, float lr);
    int (*n_state)(const loom_optim *o);
    void (*state)(loom_optim *o, int k, const char **name, void **data, size_t *bytes);
    void (*free)(loom_optim *o);
} loom_optim_ops;

struct loom_optim {
    const loom_optim_ops *ops;
    loom_adamw_params hp;
    int64_t t;  /* optimizer steps taken (the bias correction uses it) */
    int n;      /* parameter tensors */
    void *impl; /* the implementation's state */
};

/* f32 AdamW for n tensors of sizes[i] floats; moments start at zero.
 * *out owned by the caller (loom_optim_free). */
loom_status loom_adamw_new(const loom_adamw_params *hp, int n, const int64_t *sizes,
                           loom_optim **out);
void loom_optim_free(loom_optim *o); /* NULL is fine */

/* 8-bit AdamW (train/optim_adam8.c over train/adam8bit.c): bitsandbytes'
 * block-wise 8-bit states for tensors of >= LOOM_ADAM8_MIN_SIZE (4096)
 * elements, f32 states below that, as bitsandbytes' min_8bit_size; f32 math.
 * *out owned by the caller (loom_optim_free). */
loom_status loom_adamw8bit_new(const loom_adamw_params *hp, int n, const int64_t *sizes,
                               loom_optim **out);

/* The optimizer named name ("adamw", "adamw8bit"), for n tensors of
 * sizes[i] floats.
 * LOOM_ERR_UNSUPPORTED for an unknown name. */
loom_status loom_optim_create(const char *name, const loom_adamw_params *hp, int n,
                              const int64_t *sizes, loom_optim **out);

/* Advance o->t, then step every tensor: w[i] updated from g[i]. */
void loom_optim_step(loom_optim *o, float *const *w, float *const *g, const int64_t *sizes,
                     float lr);

/* Cosine schedule with linear warmup (transformers'
 * get_cosine_schedule_with_warmup, 0.5 cycles): the learning rate of
 * optimizer step s (0-based; the first update uses s = 0, as Trainer does):
 *   s < warmup:  peak * s / warmup
 *   else:        peak * max(0, 0.5 * (1 + cos(pi * (s - warmup) / (total - warmup)))) */
float loom_lr_cosine(float peak, int64_t s, int64_t warmup, int64_t total);

/* torch.nn.utils.clip_grad_norm_: the global L2 norm of every gradient
 * (accumulated in double); when max_norm > 0 and norm > max_norm every
 * gradient is scaled by max_norm / (norm + 1e-6). Returns the norm before
 * clipping. */
double loom_clip_grad_norm(float *const *g, const int64_t *sizes, int n, double max_norm);

#endif
