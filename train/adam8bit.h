/* train/adam8bit.h - 8-bit AdamW: optimizer states stored with bitsandbytes'
 * block-wise dynamic quantization (Dettmers et al., "8-bit Optimizers via
 * Block-wise Quantization"; bitsandbytes Optimizer2State with optim_bits=8,
 * block_wise=True). docs/adr/0029-training-data-and-metrics.md.
 *
 * The rule every implementation (this cpu loop, a future device kernel) must
 * reproduce, per parameter tensor of n elements:
 *   - blocks of LOOM_ADAM8_BLOCK = 256 consecutive elements (the last may be
 *     short); each block has one f32 absmax per state;
 *   - m (first moment) uses the signed dynamic map create_dynamic_map(
 *     signed=True) = loom_nf4_dq_code (ir/); v (second moment) the unsigned
 *     map create_dynamic_map(signed=False), loom_adam8_unsigned_map();
 *   - a step dequantizes each block (code[c] * absmax), updates in f32
 *       m = m*beta1 + (1-beta1)*g
 *       v = v*beta2 + (1-beta2)*g*g
 *       c1 = 1 - beta1^t,  c2 = sqrt(1 - beta2^t)
 *       p += (-lr*c2/c1) * m / (sqrt(v) + c2*eps)        (= Adam's m^/(sqrt(v^)+eps))
 *       p *= 1 - lr*weight_decay                         (decoupled, after the update)
 *     with the f32 m, v (not their re-quantized values), then re-quantizes:
 *     absmax = max |state| over the block, code = nearest map entry to
 *     state/absmax (ties to the lower code), and for m a code whose sign
 *     differs from the state's is moved one step toward it (bitsandbytes
 *     keeps the momentum's sign);
 *   - a non-finite gradient is refused (LOOM_ERR_INVALID_ARG, nothing
 *     changed): bitsandbytes skips that element's parameter but lets the NaN
 *     poison the whole block's absmax; the caller (loss scaling) should skip
 *     the step instead.
 * Fresh states are all code 0 with absmax 0, i.e. zero (bitsandbytes
 * allocates uint8 zeros and float zeros the same way).
 *
 * bitsandbytes keeps tensors under min_8bit_size = 4096 elements in 32-bit
 * states; that choice (LOOM_ADAM8_MIN_SIZE) is the caller's: this module
 * quantizes whatever it is given.
 *
 * Ownership: loom_adam8_state_init allocates the four arrays, which
 * loom_adam8_state_free releases; param and grad stay the caller's. No
 * globals; safe to use from several threads on distinct states. */
#ifndef LOOM_TRAIN_ADAM8BIT_H
#define LOOM_TRAIN_ADAM8BIT_H

#include <stdint.h>

#include "loom/status.h"

#define LOOM_ADAM8_BLOCK    256
#define LOOM_ADAM8_MIN_SIZE 4096

typedef struct loom_adam8_hparams {
    float lr;
    float beta1;        /* 0.9 */
    float beta2;        /* 0.999 */
    float eps;          /* 1e-8 */
    float weight_decay; /* decoupled (AdamW); 0 turns it off */
} loom_adam8_hparams;

typedef struct loom_adam8_state {
    int64_t n;        /* elements of the parameter tensor */
    int64_t n_blocks; /* ceil(n / 256) */
    uint8_t *m_code;  /* [n] index into loom_nf4_dq_code */
    uint8_t *v_code;  /* [n] index into umap */
    float *m_absmax;  /* [n_blocks] */
    float *v_absmax;  /* [n_blocks] */
    float umap[256];  /* create_dynamic_map(signed=False), sorted */
} loom_adam8_state;

/* create_dynamic_map(signed=False, max_exponent_bits=7, total_bits=8),
 * sorted, computed in float32 as bitsandbytes does with torch.linspace (first
 * half start + j*step, second half end - (steps-1-j)*step): 0.0 at index 0,
 * 1.0 at 255. */
void loom_adam8_unsigned_map(float out[256]);

/* Block-wise quantization with a sorted 256-entry map: per block of 256,
 * absmax[b] = max |x|, codes[i] = nearest map entry to x[i]/absmax[b] (ties to
 * the lower index; an all-zero block gets absmax 0 and the code nearest 0).
 * codes has n entries, absmax ceil(n/256). NaN input is an error. */
loom_status loom_adam8_quantize(const float map[256], const float *x, int64_t n, uint8_t *codes,
                                float *absmax);
/* x[i] = map[codes[i]] * absmax[i / 256]. */
void loom_adam8_dequantize(const float map[256], const uint8_t *codes, const float *absmax,
                           int64_t n, float *x);

/* Zeroed states for an n-element tensor (n >= 1). LOOM_ERR_OOM on failure,
 * with *s left empty. */
loom_status loom_adam8_state_init(loom_adam8_state *s, int64_t n);
void loom_adam8_state_free(loom_adam8_state *s);

/* One AdamW step (t = 1 for the first) on param[n] with grad[n], n == s->n.
 * LOOM_ERR_INVALID_ARG for t < 1, a size mismatch or hyperparameters out of
 * range (beta outside [0,1), eps <= 0, lr or weight_decay negative). */
loom_status loom_adam8_step(loom_adam8_state *s, const loom_adam8_hparams *h, int64_t t,
                            float *param, const float *grad);

/* The same step with f32 states m[n], v[n] (zero at t = 1): the reference the
 * 8-bit one is compared against, same formula and order of operations. */
loom_status loom_adam8_f32_step(const loom_adam8_hparams *h, int64_t t, int64_t n, float *param,
                                const float *grad, float *m, float *v);

#endif
