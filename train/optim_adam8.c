/* train/optim_adam8.c - "adamw8bit": the loom_optim interface (optim.h)
 * over train/adam8bit.c's block-wise 8-bit states.
 *
 * bitsandbytes' Optimizer2State keeps a tensor with fewer than
 * min_8bit_size = 4096 elements in 32-bit states (small tensors gain nothing
 * and lose most to quantization); so does this: tensors under
 * LOOM_ADAM8_MIN_SIZE step with loom_adam8_f32_step (bitsandbytes' 32-bit
 * kernel: same formula, weight decay after the update), the rest with
 * loom_adam8_step. The math is f32 either way.
 *
 * State arrays, in the checkpoint's order, per tensor i:
 *   8-bit:  m_code.i (u8[n]), v_code.i (u8[n]), m_absmax.i, v_absmax.i (f32[ceil(n/256)])
 *   32-bit: exp_avg.i, exp_avg_sq.i (f32[n])
 * The unsigned map is recomputed at creation (a constant, not state).
 *
 * A gradient with a non-finite value is refused by adam8bit.c and that
 * tensor is left as it was for this step (its state too); bitsandbytes
 * skips the non-finite elements. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "adam8bit.h"
#include "optim.h"

typedef struct adam8_slot {
    bool q8;            /* 8-bit states (n >= LOOM_ADAM8_MIN_SIZE) */
    loom_adam8_state s; /* q8 */
    float *m, *v;       /* !q8: f32 [n] */
    int64_t n;
} adam8_slot;

typedef struct adam8_impl {
    adam8_slot *slot;
    char (*names)[32]; /* 4 per tensor */
} adam8_impl;

static loom_adam8_hparams hp_of(const loom_optim *o, float lr) {
    return (loom_adam8_hparams){.lr = lr,
                                .beta1 = o->hp.beta1,
                                .beta2 = o->hp.beta2,
                                .eps = o->hp.eps,
                                .weight_decay = o->hp.weight_decay};
}

static void adam8_step(loom_optim *o, int i, float *w, const float *g, int64_t n, float lr) {
    adam8_impl *a = o->impl;
    adam8_slot *s = &a->slot[i];
    const loom_adam8_hparams h = hp_of(o, lr);
    if (n != s->n) return; /* sizes are fixed at creation */
    /* LOOM_ERR_INVALID_ARG (a non-finite gradient) leaves w and the state
     * untouched: the step skips this tensor (see the header comment) */
    if (s->q8)
        (void)loom_adam8_step(&s->s, &h, o->t, w, g);
    else
        (void)loom_adam8_f32_step(&h, o->t, n, w, g, s->m, s->v);
}

static int adam8_n_state(const loom_optim *o) {
    const adam8_impl *a = o->impl;
    int k = 0;
    for (int i = 0; i < o->n; i++)
        k += a->slot[i].q8 ? 4 : 2;
    return k;
}

static void adam8_state(loom_optim *o, int k, const char **name, void **data, size_t *bytes) {
    adam8_impl *a = o->impl;
    for (int i = 0; i < o->n; i++) {
        adam8_slot *s = &a->slot[i];
        const int c = s->q8 ? 4 : 2;
        if (k >= c) {
            k -= c;
            continue;
        }
        *name = a->names[4 * i + k];
        if (!s->q8) {
            *data = k ? (void *)s->v : (void *)s->m;
            *bytes = (size_t)s->n * sizeof(float);
        } else if (k < 2) {
            *data = k ? (void *)s->s.v_code : (void *)s->s.m_code;
            *bytes = (size_t)s->n;
        } else {
            *data = k == 3 ? (void *)s->s.v_absmax : (void *)s->s.m_absmax;
            *bytes = (size_t)s->s.n_blocks * sizeof(float);
        }
        return;
    }
    *name = NULL;
    *data = NULL;
    *bytes = 0;
}

static void adam8_free(loom_optim *o) {
    adam8_impl *a = o->impl;
    if (!a) return;
    for (int i = 0; a->slot && i < o->n; i++) {
        loom_adam8_state_free(&a->slot[i].s);
        free(a->slot[i].m);
        free(a->slot[i].v);
    }
    free(a->slot);
    free(a->names);
    free(a);
}

static const loom_optim_ops adam8_ops = {"adamw8bit", adam8_step, adam8_n_state, adam8_state,
                                         adam8_free};

loom_status loom_adamw8bit_new(const loom_adamw_params *hp, int n, const int64_t *sizes,
                               loom_optim **out) {
    if (!hp || n < 0 || (n && !sizes) || !out) return LOOM_ERR_INVALID_ARG;
    *out = NULL;
    for (int i = 0; i < n; i++)
        if (sizes[i] < 1) return LOOM_ERR_INVALID_ARG;
    loom_optim *o = calloc(1, sizeof *o);
    adam8_impl *a = calloc(1, sizeof *a);
    if (!o || !a) {
        free(o);
        free(a);
        return LOOM_ERR_OOM;
    }
    o->ops = &adam8_ops;
    o->hp = *hp;
    o->n = n;
    o->impl = a;
    size_t k = (size_t)(n > 0 ? n : 1);
    a->slot = calloc(k, sizeof *a->slot);
    a->names = calloc(4 * k, sizeof *a->names);
    if (!a->slot || !a->names) {
        loom_optim_free(o);
        return LOOM_ERR_OOM;
    }
    for (int i = 0; i < n; i++) {
        adam8_slot *s = &a->slot[i];
        char(*nm)[32] = a->names + 4 * i;
        s->n = sizes[i];
        s->q8 = sizes[i] >= LOOM_ADAM8_MIN_SIZE;
        if (s->q8) {
            if (loom_adam8_state_init(&s->s, sizes[i]) != LOOM_OK) {
                loom_optim_free(o);
                return LOOM_ERR_OOM;
            }
            snprintf(nm[0], sizeof nm[0], "m_code.%d", i);
            snprintf(nm[1], sizeof nm[0], "v_code.%d", i);
            snprintf(nm[2], sizeof nm[0], "m_absmax.%d", i);
            snprintf(nm[3], sizeof nm[0], "v_absmax.%d", i);
        } else {
            s->m = calloc((size_t)sizes[i], sizeof(float));
            s->v = calloc((size_t)sizes[i], sizeof(float));
            if (!s->m || !s->v) {
                loom_optim_free(o);
                return LOOM_ERR_OOM;
            }
            snprintf(nm[0], sizeof nm[0], "exp_avg.%d", i);
            snprintf(nm[1], sizeof nm[0], "exp_avg_sq.%d", i);
        }
    }
    *out = o;
    return LOOM_OK;
}
