/* train/metrics_plot.h - the end-of-run plot: loss, learning rate and
 * tokens/s against the step, three stacked panels in one SVG 1.1 file (no
 * scripts, no external fonts: any browser shows it, no TensorBoard needed).
 *
 * Each series is one <polyline class="loss|lr|tok_s"> whose points map
 * linearly to the data: x = X0 + (step - s_min)/(s_max - s_min) * W, and
 * y = top + H - (v - lo)/(hi - lo) * H with the panel's lo/hi written in the
 * polyline's data-lo/data-hi attributes (the tests invert this). NaN/Inf
 * values are left out of the line. Written atomically (tmp + rename).
 * (cli/bench_plot.c draws bars for `loom bench`; nothing there is shared: a
 * line chart with its own axes is a different drawing.) */
#ifndef LOOM_TRAIN_METRICS_PLOT_H
#define LOOM_TRAIN_METRICS_PLOT_H

#include <stddef.h>
#include <stdint.h>

#include "loom/status.h"

/* Any of loss, lr, tok_s may be NULL (that panel is left out). n >= 1.
 * On failure err names the path and the reason. */
loom_status loom_metrics_plot_svg(const char *path, const int64_t *step, const float *loss,
                                  const float *lr, const float *tok_s, int n, const char *title,
                                  char *err, size_t errn);

#endif
