/* train/finetune_metrics.h - what `loom finetune` reports besides
 * train_log.jsonl (docs/adr/0028-training.md, addendum): TensorBoard scalars
 * (train/tb_writer.h) in OUTDIR/tb, the progress line on stderr
 * (train/progress.h) and, at the end, OUTDIR/metrics.svg
 * (train/metrics_plot.h) drawn from train_log.jsonl, so a resumed run's plot
 * shows the whole curve.
 *
 * TensorBoard tags, step = the optimizer step (eval at step 0 = before
 * training): train/loss, train/lr, train/grad_norm, train/tokens_per_s,
 * eval/loss; the values are the JSONL's, as f32. A resumed run opens a new
 * event file in the same directory (tensorboard reads them all). */
#ifndef LOOM_TRAIN_FINETUNE_METRICS_H
#define LOOM_TRAIN_FINETUNE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "progress.h"
#include "tb_writer.h"

#include "loom/status.h"

typedef struct loom_ft_metrics {
    loom_tb_writer *tb; /* owned */
    loom_progress prog;
    bool progress; /* draw the progress line */
} loom_ft_metrics;

/* Opens OUTDIR/tb's event file; progress: the line on stderr for steps
 * first_step+1 .. total. On failure err names the path. */
loom_status loom_ft_metrics_open(loom_ft_metrics *m, const char *out_dir, bool progress,
                                 int64_t first_step, int64_t total, char *err, size_t err_n);
loom_status loom_ft_metrics_step(loom_ft_metrics *m, int64_t step, double loss, float lr,
                                 double grad_norm, double tokens_per_s, char *err, size_t err_n);
loom_status loom_ft_metrics_eval(loom_ft_metrics *m, int64_t step, double eval_loss, char *err,
                                 size_t err_n);
/* Ends the progress line and closes the event file; a zeroed m is fine. */
void loom_ft_metrics_close(loom_ft_metrics *m);

/* OUTDIR/metrics.svg from OUTDIR/train_log.jsonl (loss, lr, tokens/s per
 * step; of a step logged twice, after a kill and resume, the later line).
 * LOOM_ERR_FORMAT naming the line when the log does not parse. */
loom_status loom_ft_metrics_plot(const char *out_dir, char *err, size_t err_n);

#endif
