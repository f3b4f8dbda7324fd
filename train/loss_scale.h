/* train/loss_scale.h - dynamic loss scaling for f16 training
 * (docs/adr/0041-mixed-precision-training.md), PyTorch's
 * torch.amp.GradScaler semantics.
 *
 * The loss is multiplied by `scale` before the backward, so small f16
 * gradients do not flush to zero; the gradients read back are divided by it
 * (times inv = (float)(1.0 / (double)scale), as GradScaler.unscale_) before
 * clipping and the optimizer. A step whose gradients hold any inf or nan is
 * skipped (no optimizer update) and the scale backs off; after
 * growth_interval clean steps in a row it grows (when the grown value is
 * still finite). The state (scale, growth_tracker) is small and saved in
 * checkpoints so a resumed run repeats the uninterrupted one. */
#ifndef LOOM_TRAIN_LOSS_SCALE_H
#define LOOM_TRAIN_LOSS_SCALE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct loom_loss_scaler {
    float scale;             /* 65536 (2^16) */
    float growth_factor;     /* 2 */
    float backoff_factor;    /* 0.5 */
    int32_t growth_interval; /* 2000 */
    int32_t growth_tracker;  /* clean steps since the last change */
} loom_loss_scaler;

/* GradScaler's defaults: init_scale 65536, growth 2, backoff 0.5, interval 2000. */
loom_loss_scaler loom_loss_scaler_default(void);

/* True when every value of the n arrays g[i] (sizes[i] floats) is finite. */
bool loom_grads_finite(float *const *g, const int64_t *sizes, int n);

/* g[i] *= (float)(1.0 / (double)s->scale), in place. */
void loom_loss_scaler_unscale(const loom_loss_scaler *s, float *const *g, const int64_t *sizes,
                              int n);

/* After a step: found_inf backs off (and resets the tracker), else a clean
 * step counts toward growth (torch's _amp_update_scale_). */
void loom_loss_scaler_update(loom_loss_scaler *s, bool found_inf);

#endif
