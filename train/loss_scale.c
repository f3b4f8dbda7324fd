/* train/loss_scale.c - dynamic loss scaling (see loss_scale.h). */
#include "loss_scale.h"

#include <math.h>

loom_loss_scaler loom_loss_scaler_default(void) {
    return (loom_loss_scaler){.scale = 65536.0f,
                              .growth_factor = 2.0f,
                              .backoff_factor = 0.5f,
                              .growth_interval = 2000,
                              .growth_tracker = 0};
}

bool loom_grads_finite(float *const *g, const int64_t *sizes, int n) {
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < sizes[i]; j++)
            if (!isfinite(g[i][j])) return false;
    return true;
}

void loom_loss_scaler_unscale(const loom_loss_scaler *s, float *const *g, const int64_t *sizes,
                              int n) {
    /* GradScaler: inv_scale = scale.double().reciprocal().float() */
    const float inv = (float)(1.0 / (double)s->scale);
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < sizes[i]; j++)
            g[i][j] *= inv;
}

void loom_loss_scaler_update(loom_loss_scaler *s, bool found_inf) {
    if (found_inf) {
        s->scale *= s->backoff_factor;
        s->growth_tracker = 0;
        return;
    }
    const int32_t ok = s->growth_tracker + 1;
    if (ok == s->growth_interval) {
        const float grown = s->scale * s->growth_factor;
        if (isfinite(grown)) s->scale = grown;
        s->growth_tracker = 0;
    } else {
        s->growth_tracker = ok;
    }
}
