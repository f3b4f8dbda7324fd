/* train/finetune.c - the step graph and the fine-tuning loop (see
 * finetune.h). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, mkdir */
#include "finetune.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "checkpoint.h"
#include "finetune_metrics.h"
#include "peft.h"

static loom_status failf(char *err, size_t n, loom_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static loom_status failf(char *err, size_t n, loom_status st, const char *fmt, ...) {
    if (err && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, n, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* ---------------- the step graph ---------------- */

void loom_train_graph_free(loom_train_graph *tg) {
    if (!tg) return;
    loom_sched_free(tg->s);
    loom_graph_free(tg->g);
    loom_lora_binding_free(&tg->bind);
    memset(tg, 0, sizeof *tg);
}

loom_status loom_train_graph_build(loom_train_graph *tg, loom_model *m, loom_lora *lo, int32_t T,
                                   unsigned mode, bool keep_logits, char *err, size_t err_n) {
    const bool backward = (mode & LOOM_TG_BACKWARD) != 0;
    memset(tg, 0, sizeof *tg);
    tg->T = T;
    tg->backward = backward;
    if (loom_graph_new(&tg->g) != LOOM_OK || loom_lora_binding_init(&tg->bind, lo, backward))
        return failf(err, err_n, LOOM_ERR_OOM, "train: out of memory");
    loom_graph *g = tg->g;
    loom_status st =
        loom_model_build_train(m, g, 1, T, loom_lora_hook, &tg->bind, &tg->io, err, err_n);
    if (st != LOOM_OK) {
        loom_train_graph_free(tg);
        return st;
    }
    tg->targets = loom_tensor_1d(g, LOOM_I32, T);
    if (tg->targets) {
        loom_tensor_set_name(tg->targets, "targets");
        loom_tensor_set_flags(tg->targets, LOOM_FLAG_INPUT);
    }
    tg->loss = loom_cross_entropy(g, tg->io.logits, tg->targets);
    if (tg->loss) loom_tensor_set_flags(loom_tensor_set_name(tg->loss, "loss"), LOOM_FLAG_OUTPUT);
    if (keep_logits && tg->io.logits) loom_tensor_set_flags(tg->io.logits, LOOM_FLAG_OUTPUT);
    st = tg->loss ? loom_graph_expand(g, tg->loss) : loom_graph_status(g);
    if (st == LOOM_OK && keep_logits) st = loom_graph_expand(g, tg->io.logits);
    if (mode & LOOM_TG_STORE_ACTS) /* the model flags its blocks as checkpoints */
        for (int i = 0; i < loom_graph_n_tensors(g); i++)
            loom_graph_tensor(g, i)->flags &= ~(uint32_t)LOOM_FLAG_CHECKPOINT;
    if (st == LOOM_OK && backward) st = loom_graph_backward(g, tg->loss, false);
    for (int i = 0; st == LOOM_OK && backward && i < lo->n_params; i++)
        if (!tg->bind.leaf[i] || !tg->bind.leaf[i]->grad) {
            snprintf(err, err_n, "train: LoRA parameter %s got no gradient", lo->p[i].name);
            st = LOOM_ERR_INTERNAL;
        }
    if (st != LOOM_OK) {
        if (loom_graph_status(g) != LOOM_OK)
            snprintf(err, err_n, "train: building the step graph failed: %s", loom_graph_error(g));
        loom_train_graph_free(tg);
        return st;
    }
    loom_backend *be, *cpu;
    loom_model_backends(m, &be, &cpu);
    loom_backend *list[2] = {be, cpu};
    st = loom_sched_new(list, be == cpu ? 1 : 2, &tg->s);
    if (st == LOOM_OK) st = loom_sched_alloc(tg->s, g);
    if (st != LOOM_OK) {
        snprintf(err, err_n, "train: scheduling the step graph failed: %s",
                 tg->s ? loom_sched_error(tg->s) : loom_status_str(st));
        loom_train_graph_free(tg);
        return st;
    }
    int32_t *pos = malloc((size_t)T * sizeof *pos);
    if (!pos) {
        loom_train_graph_free(tg);
        return failf(err, err_n, LOOM_ERR_OOM, "train: out of memory");
    }
    for (int32_t t = 0; t < T; t++)
        pos[t] = t;
    st = loom_tensor_upload(tg->io.pos, pos, (size_t)T * sizeof *pos);
    free(pos);
    if (st != LOOM_OK) {
        loom_train_graph_free(tg);
        return failf(err, err_n, st, "train: uploading positions failed");
    }
    return LOOM_OK;
}

loom_status loom_train_graph_run(loom_train_graph *tg, const int32_t *tokens,
                                 const int32_t *targets, float *loss, char *err, size_t err_n) {
    size_t nb = (size_t)tg->T * sizeof(int32_t);
    loom_status st = loom_tensor_upload(tg->io.tokens, tokens, nb);
    if (st == LOOM_OK) st = loom_tensor_upload(tg->targets, targets, nb);
    if (st != LOOM_OK) return failf(err, err_n, st, "train: uploading the batch failed");
    st = loom_sched_compute(tg->s, tg->g);
    if (st != LOOM_OK)
        return failf(err, err_n, st, "train: step failed: %s", loom_sched_error(tg->s));
    st = loom_tensor_download(tg->loss, loss, sizeof *loss);
    if (st != LOOM_OK) return failf(err, err_n, st, "train: reading the loss failed");
    return LOOM_OK;
}

loom_status loom_train_graph_grad(loom_train_graph *tg, int i, float *out) {
    if (!tg->backward || i < 0 || i >= tg->bind.lo->n_params) return LOOM_ERR_INVALID_ARG;
    const loom_tensor *gr = tg->bind.leaf[i]->grad;
    return loom_tensor_download(gr, out, loom_tensor_nbytes(gr));
}

/* ---------------- the loop ---------------- */

loom_finetune_params loom_finetune_default_params(void) {
    loom_finetune_params p;
    memset(&p, 0, sizeof p);
    p.quant = LOOM_F32;
    p.lora = loom_lora_default_config();
    p.adamw = loom_adamw_default_params();
    p.lr = 2e-4f;
    p.warmup_ratio = 0.03f;
    p.grad_accum = 16;
    p.seq = 512;
    p.epochs = 1;
    p.seed = 42;
    p.max_grad_norm = 1.0;
    return p;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Example order of epoch e: a Fisher-Yates shuffle seeded by (seed, e), so
 * no state beyond (epoch, cursor) is needed to resume. */
static void epoch_order(int64_t *ord, int64_t n, uint64_t seed, int64_t e) {
    uint64_t rng[4];
    loom_train_rng_seed(rng, seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(e + 1)));
    for (int64_t i = 0; i < n; i++)
        ord[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(loom_train_rng_next(rng) % (uint64_t)(i + 1));
        int64_t t = ord[i];
        ord[i] = ord[j];
        ord[j] = t;
    }
}

typedef struct run {
    const loom_finetune_params *p;
    loom_model *m;
    loom_lora *lo;
    loom_optim *opt;
    loom_ft_dataset train, eval;
    loom_train_graph tg, eg;
    int32_t T, pad;
    int32_t *tok, *tgt;
    float **w, *gtmp;
    int64_t *sizes;
    int64_t *order;
    FILE *log;
    loom_ft_metrics met; /* tb/, the progress line */
    char ckpt[4096];
} run;

static loom_status eval_loss(run *r, double *out, char *err, size_t err_n) {
    if (!r->eval.n) {
        *out = NAN;
        return LOOM_OK;
    }
    if (!r->eg.g)
        LOOM_TRY(loom_train_graph_build(&r->eg, r->m, r->lo, r->T, false, false, err, err_n));
    /* the mean over every counted token of the set (Trainer's eval_loss
     * averages per-example means instead; per token does not favour short
     * examples) */
    double sum = 0.0;
    int64_t cnt = 0;
    for (int64_t i = 0; i < r->eval.n; i++) {
        int32_t c = loom_ft_example_fill(&r->eval.ex[i], r->T, r->pad, r->tok, r->tgt);
        float l;
        LOOM_TRY(loom_train_graph_run(&r->eg, r->tok, r->tgt, &l, err, err_n));
        sum += (double)l * c;
        cnt += c;
    }
    *out = cnt ? sum / (double)cnt : NAN;
    return LOOM_OK;
}

static void run_free(run *r) {
    loom_train_graph_free(&r->tg);
    loom_train_graph_free(&r->eg);
    loom_ft_dataset_free(&r->train);
    loom_ft_dataset_free(&r->eval);
    loom_optim_free(r->opt);
    loom_lora_free(r->lo);
    loom_model_free(r->m);
    free(r->tok);
    free(r->tgt);
    free(r->w);
    free(r->gtmp);
    free(r->sizes);
    free(r->order);
    if (r->log) fclose(r->log);
    loom_ft_metrics_close(&r->met);
}

loom_status loom_finetune_run(const loom_finetune_params *p, loom_finetune_result *res, char *err,
                              size_t err_n) {
    run R;
    memset(&R, 0, sizeof R);
    R.p = p;
    loom_finetune_result out = {0};
    out.eval_before = out.eval_after = NAN;
    loom_status st = LOOM_OK;
    char path[4096];
    float **grads = NULL;
    if (mkdir(p->out_dir, 0777) != 0 && errno != EEXIST)
        return failf(err, err_n, LOOM_ERR_IO, "finetune: cannot create '%s'", p->out_dir);

    loom_model_params mp = loom_model_default_params();
    mp.backend = p->backend;
    mp.quantize = p->quantize;
    mp.quant = p->quant;
    mp.n_ctx = 16; /* the KV cache is unused by training graphs */
    if ((st = loom_model_load(p->model, &mp, &R.m, err, err_n)) != LOOM_OK) goto done;
    const loom_model_config *mc = loom_model_config_of(R.m);
    const loom_tokenizer *tok = loom_model_tokenizer(R.m);
    if ((st = loom_ft_dataset_load_chat(p->data, tok, p->chat_template, p->seq, &R.train, err,
                                        err_n)) != LOOM_OK)
        goto done;
    if (p->eval && (st = loom_ft_dataset_load_chat(p->eval, tok, p->chat_template, p->seq, &R.eval,
                                                   err, err_n)) != LOOM_OK)
        goto done;
    /* one graph shape: the longest example (up to --seq) */
    for (int64_t i = 0; i < R.train.n; i++)
        if (R.train.ex[i].n > R.T) R.T = R.train.ex[i].n;
    for (int64_t i = 0; i < R.eval.n; i++)
        if (R.eval.ex[i].n > R.T) R.T = R.eval.ex[i].n;
    R.pad = loom_tokenizer_eos(tok) >= 0 ? loom_tokenizer_eos(tok) : 0;
    if ((st = loom_lora_new(mc, &p->lora, p->seed, &R.lo, err, err_n)) != LOOM_OK) goto done;
    const int np = R.lo->n_params;
    R.sizes = malloc((size_t)np * sizeof *R.sizes);
    R.w = malloc((size_t)np * sizeof *R.w);
    grads = calloc((size_t)np, sizeof *grads);
    R.tok = malloc((size_t)R.T * sizeof *R.tok);
    R.tgt = malloc((size_t)R.T * sizeof *R.tgt);
    R.order = malloc((size_t)R.train.n * sizeof *R.order);
    int64_t max_sz = 1;
    if (!R.sizes || !R.w || !grads || !R.tok || !R.tgt || !R.order) {
        st = failf(err, err_n, LOOM_ERR_OOM, "finetune: out of memory");
        goto done;
    }
    for (int i = 0; i < np; i++) {
        R.sizes[i] = R.lo->p[i].rows * R.lo->p[i].cols;
        R.w[i] = R.lo->p[i].w;
        if (R.sizes[i] > max_sz) max_sz = R.sizes[i];
        if (!(grads[i] = calloc((size_t)R.sizes[i], sizeof(float)))) {
            st = failf(err, err_n, LOOM_ERR_OOM, "finetune: out of memory");
            goto done;
        }
    }
    if (!(R.gtmp = malloc((size_t)max_sz * sizeof(float)))) {
        st = failf(err, err_n, LOOM_ERR_OOM, "finetune: out of memory");
        goto done;
    }
    if ((st = loom_optim_create(p->optim, &p->adamw, np, R.sizes, &R.opt)) != LOOM_OK) {
        failf(err, err_n, st, "finetune: cannot create the optimizer '%s'",
              p->optim ? p->optim : "adamw");
        goto done;
    }
    const int accum = p->grad_accum > 0 ? p->grad_accum : 1;
    const int64_t steps_per_epoch = (R.train.n + accum - 1) / accum;
    const int64_t total =
        p->max_steps > 0 ? p->max_steps : steps_per_epoch * (p->epochs > 0 ? p->epochs : 1);
    const int64_t warmup = (int64_t)ceil((double)p->warmup_ratio * (double)total);

    loom_ckpt_state cs = {.seed = p->seed};
    loom_train_rng_seed(cs.rng, p->seed ^ 0x5DEECE66Dull);
    snprintf(R.ckpt, sizeof R.ckpt, "%s/checkpoint.bin", p->out_dir);
    struct stat sb;
    if (p->resume && stat(R.ckpt, &sb) == 0) {
        if ((st = loom_checkpoint_load(R.ckpt, &cs, R.lo, R.opt, err, err_n)) != LOOM_OK) goto done;
        if (cs.seed != p->seed) {
            st = failf(err, err_n, LOOM_ERR_INVALID_ARG,
                       "finetune: %s was written with another --seed", R.ckpt);
            goto done;
        }
        if (!p->quiet) fprintf(stderr, "finetune: resuming at step %lld\n", (long long)cs.step);
    }
    snprintf(path, sizeof path, "%s/train_log.jsonl", p->out_dir);
    /* a resumed run appends: the log then holds the whole curve */
    if (!(R.log = fopen(path, cs.step > 0 ? "a" : "w"))) {
        st = failf(err, err_n, LOOM_ERR_IO, "finetune: cannot write '%s'", path);
        goto done;
    }
    if ((st = loom_ft_metrics_open(&R.met, p->out_dir, !p->quiet, cs.step, total, err, err_n)) !=
        LOOM_OK)
        goto done;
    if ((st = loom_train_graph_build(&R.tg, R.m, R.lo, R.T,
                                     LOOM_TG_BACKWARD |
                                         (p->no_grad_checkpoint ? LOOM_TG_STORE_ACTS : 0u),
                                     false, err, err_n)) != LOOM_OK)
        goto done;
    if (cs.step == 0 && R.eval.n) {
        if ((st = eval_loss(&R, &out.eval_before, err, err_n)) != LOOM_OK) goto done;
        fprintf(R.log, "{\"step\":0,\"eval_loss\":%.9g}\n", out.eval_before);
        fflush(R.log);
        if ((st = loom_ft_metrics_eval(&R.met, 0, out.eval_before, err, err_n)) != LOOM_OK)
            goto done;
    }
    epoch_order(R.order, R.train.n, p->seed, cs.epoch);
    const double t0 = now_s();
    double sum_step_s = 0.0, tokens_total = 0.0;
    int64_t steps_here = 0;
    out.first_loss = NAN;
    while (cs.step < total) {
        if (p->stop_after > 0 && cs.step >= p->stop_after) break;
        const double ts = now_s();
        for (int i = 0; i < np; i++)
            memset(grads[i], 0, (size_t)R.sizes[i] * sizeof(float));
        double loss_sum = 0.0;
        int64_t ntok = 0;
        for (int k = 0; k < accum; k++) {
            if (cs.cursor >= R.train.n) {
                cs.epoch++;
                cs.cursor = 0;
                epoch_order(R.order, R.train.n, p->seed, cs.epoch);
            }
            const loom_ft_example *e = &R.train.ex[R.order[cs.cursor++]];
            ntok += loom_ft_example_fill(e, R.T, R.pad, R.tok, R.tgt);
            loom_lora_binding_draw_masks(&R.tg.bind, cs.rng);
            float l;
            if ((st = loom_train_graph_run(&R.tg, R.tok, R.tgt, &l, err, err_n)) != LOOM_OK)
                goto done;
            loss_sum += l;
            for (int i = 0; i < np; i++) {
                if ((st = loom_train_graph_grad(&R.tg, i, R.gtmp)) != LOOM_OK) {
                    failf(err, err_n, st, "finetune: reading a gradient failed");
                    goto done;
                }
                for (int64_t j = 0; j < R.sizes[i]; j++)
                    grads[i][j] += R.gtmp[j];
            }
        }
        /* the mean of the micro-batch losses, as Trainer divides each by accum */
        for (int i = 0; i < np; i++)
            for (int64_t j = 0; j < R.sizes[i]; j++)
                grads[i][j] /= (float)accum;
        const double gnorm = loom_clip_grad_norm(grads, R.sizes, np, p->max_grad_norm);
        const float lr = loom_lr_cosine(p->lr, cs.step, warmup, total);
        loom_optim_step(R.opt, R.w, grads, R.sizes, lr);
        cs.step++;
        const double dt = now_s() - ts, loss = loss_sum / accum;
        const double tok_s = (double)ntok / (dt > 0 ? dt : 1e-9);
        sum_step_s += dt;
        tokens_total += (double)ntok;
        steps_here++;
        if (isnan(out.first_loss)) out.first_loss = loss;
        out.last_loss = loss;
        fprintf(R.log,
                "{\"step\":%lld,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"tokens\":%lld,"
                "\"tokens_per_s\":%.6g,\"step_s\":%.6g,\"elapsed_s\":%.6g,\"epoch\":%lld}\n",
                (long long)cs.step, loss, (double)lr, gnorm, (long long)ntok, tok_s, dt,
                now_s() - t0, (long long)cs.epoch);
        fflush(R.log);
        if ((st = loom_ft_metrics_step(&R.met, cs.step, loss, lr, gnorm, tok_s, err, err_n)) !=
            LOOM_OK)
            goto done;
        if (p->eval_every > 0 && cs.step % p->eval_every == 0 && cs.step < total && R.eval.n) {
            double ev;
            if ((st = eval_loss(&R, &ev, err, err_n)) != LOOM_OK) goto done;
            fprintf(R.log, "{\"step\":%lld,\"eval_loss\":%.9g}\n", (long long)cs.step, ev);
            fflush(R.log);
            if ((st = loom_ft_metrics_eval(&R.met, cs.step, ev, err, err_n)) != LOOM_OK) goto done;
        }
        if (p->save_every > 0 && cs.step % p->save_every == 0 && cs.step < total &&
            (st = loom_checkpoint_save(R.ckpt, &cs, R.lo, R.opt, err, err_n)) != LOOM_OK)
            goto done;
    }
    out.steps = cs.step;
    if (steps_here) {
        out.step_s = sum_step_s / (double)steps_here;
        out.tokens_per_s = tokens_total / (sum_step_s > 0 ? sum_step_s : 1e-9);
    }
    if (p->stop_after > 0 && cs.step >= p->stop_after && cs.step < total) goto done; /* "killed" */
    if ((st = loom_checkpoint_save(R.ckpt, &cs, R.lo, R.opt, err, err_n)) != LOOM_OK) goto done;
    if (R.eval.n) {
        if ((st = eval_loss(&R, &out.eval_after, err, err_n)) != LOOM_OK) goto done;
        fprintf(R.log, "{\"step\":%lld,\"eval_loss\":%.9g}\n", (long long)cs.step, out.eval_after);
        fflush(R.log);
        if ((st = loom_ft_metrics_eval(&R.met, cs.step, out.eval_after, err, err_n)) != LOOM_OK)
            goto done;
    }
    loom_ft_metrics_close(&R.met); /* ends the progress line */
    if ((st = loom_peft_save(p->out_dir, R.lo, p->model, err, err_n)) != LOOM_OK) goto done;
    st = loom_ft_metrics_plot(p->out_dir, err, err_n);
done:
    if (grads)
        for (int i = 0; R.lo && i < R.lo->n_params; i++)
            free(grads[i]);
    free(grads);
    run_free(&R);
    if (res) *res = out;
    return st;
}
