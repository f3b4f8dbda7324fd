/* train/finetune_metrics.c - TensorBoard, progress line and plot for
 * `loom finetune` (see finetune_metrics.h). */
#define _POSIX_C_SOURCE 200809L
#include "finetune_metrics.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_plot.h"

loom_status loom_ft_metrics_open(loom_ft_metrics *m, const char *out_dir, bool progress,
                                 int64_t first_step, int64_t total, char *err, size_t err_n) {
    memset(m, 0, sizeof *m);
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s/tb", out_dir) >= (int)sizeof dir) {
        snprintf(err, err_n, "finetune: output path too long: %s", out_dir);
        return LOOM_ERR_INVALID_ARG;
    }
    LOOM_TRY(loom_tb_open(dir, &m->tb, err, err_n));
    m->progress = progress;
    if (progress) loom_progress_init(&m->prog, stderr, -1, first_step, total, loom_progress_now());
    return LOOM_OK;
}

static loom_status scalar(loom_ft_metrics *m, const char *tag, double v, int64_t step, char *err,
                          size_t err_n) {
    loom_status st = loom_tb_scalar(m->tb, tag, (float)v, step, -1.0);
    if (st != LOOM_OK)
        snprintf(err, err_n, "finetune: cannot write %s to %s", tag, loom_tb_path(m->tb));
    return st;
}

loom_status loom_ft_metrics_step(loom_ft_metrics *m, int64_t step, double loss, float lr,
                                 double grad_norm, double tokens_per_s, char *err, size_t err_n) {
    LOOM_TRY(scalar(m, "train/loss", loss, step, err, err_n));
    LOOM_TRY(scalar(m, "train/lr", lr, step, err, err_n));
    LOOM_TRY(scalar(m, "train/grad_norm", grad_norm, step, err, err_n));
    LOOM_TRY(scalar(m, "train/tokens_per_s", tokens_per_s, step, err, err_n));
    if (m->progress)
        loom_progress_update(&m->prog, step, loss, lr, tokens_per_s, loom_progress_now());
    return LOOM_OK;
}

loom_status loom_ft_metrics_eval(loom_ft_metrics *m, int64_t step, double eval_loss, char *err,
                                 size_t err_n) {
    return scalar(m, "eval/loss", eval_loss, step, err, err_n);
}

void loom_ft_metrics_close(loom_ft_metrics *m) {
    if (m->progress && m->prog.out) loom_progress_finish(&m->prog);
    loom_tb_close(m->tb);
    memset(m, 0, sizeof *m);
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

loom_status loom_ft_metrics_plot(const char *out_dir, char *err, size_t err_n) {
    char path[4096], svg[4096];
    snprintf(path, sizeof path, "%s/train_log.jsonl", out_dir);
    snprintf(svg, sizeof svg, "%s/metrics.svg", out_dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_n, "finetune: cannot read %s", path);
        return LOOM_ERR_IO;
    }
    int64_t *step = NULL;
    float *loss = NULL, *lr = NULL, *tps = NULL;
    int n = 0, cap = 0;
    loom_status st = LOOM_OK;
    char *line = NULL;
    size_t lcap = 0;
    long lineno = 0;
    while (getline(&line, &lcap, f) > 0) {
        lineno++;
        cJSON *o = cJSON_Parse(line);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "step");
        if (!o || !cJSON_IsNumber(s) || s->valuedouble < 0) {
            cJSON_Delete(o);
            snprintf(err, err_n, "finetune: %s:%ld: not a log line", path, lineno);
            st = LOOM_ERR_FORMAT;
            goto done;
        }
        const int64_t k = (int64_t)s->valuedouble;
        const double l = num(o, "loss");
        if (!isnan(l)) { /* a training step (eval lines have no "loss") */
            /* a resumed run appends: a step seen before is replaced, and the
             * steps after it (the lost tail) are dropped */
            while (n > 0 && step[n - 1] >= k)
                n--;
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                int64_t *a = realloc(step, (size_t)cap * sizeof *a);
                if (a) step = a;
                float *b = realloc(loss, (size_t)cap * sizeof *b);
                if (b) loss = b;
                float *c = realloc(lr, (size_t)cap * sizeof *c);
                if (c) lr = c;
                float *d = realloc(tps, (size_t)cap * sizeof *d);
                if (d) tps = d;
                if (!a || !b || !c || !d) {
                    cJSON_Delete(o);
                    snprintf(err, err_n, "finetune: out of memory");
                    st = LOOM_ERR_OOM;
                    goto done;
                }
            }
            step[n] = k;
            loss[n] = (float)l;
            lr[n] = (float)num(o, "lr");
            tps[n] = (float)num(o, "tokens_per_s");
            n++;
        }
        cJSON_Delete(o);
    }
    if (n > 0) st = loom_metrics_plot_svg(svg, step, loss, lr, tps, n, "loom finetune", err, err_n);
done:
    free(line);
    fclose(f);
    free(step);
    free(loss);
    free(lr);
    free(tps);
    return st;
}
