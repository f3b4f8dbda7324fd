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
#include "finetune_dist.h"
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
    free(tg->docs);
    memset(tg, 0, sizeof *tg);
}

static loom_status build(loom_train_graph *tg, loom_model *m, loom_lora *lo, int32_t T,
                         const int32_t *docs, int n_docs, unsigned mode, bool keep_logits,
                         char *err, size_t err_n) {
    const bool backward = (mode & LOOM_TG_BACKWARD) != 0;
    memset(tg, 0, sizeof *tg);
    tg->T = T;
    tg->backward = backward;
    tg->prec = (mode & LOOM_TG_F16) ? LOOM_F16 : (mode & LOOM_TG_BF16) ? LOOM_BF16 : LOOM_F32;
    tg->scale = 1.0f;
    if (loom_graph_new(&tg->g) != LOOM_OK || loom_lora_binding_init(&tg->bind, lo, backward))
        return failf(err, err_n, LOOM_ERR_OOM, "train: out of memory");
    tg->bind.mm = tg->prec;
    if (docs) {
        if (!(tg->docs = malloc((size_t)n_docs * sizeof *tg->docs))) {
            loom_train_graph_free(tg);
            return failf(err, err_n, LOOM_ERR_OOM, "train: out of memory");
        }
        memcpy(tg->docs, docs, (size_t)n_docs * sizeof *docs);
        tg->n_docs = n_docs;
    }
    loom_graph *g = tg->g;
    const loom_model_train_opts o = {.n_seq = 1,
                                     .n_tokens = T,
                                     .doc_len = docs,
                                     .n_docs = n_docs,
                                     .hook = loom_lora_hook,
                                     .ud = &tg->bind,
                                     .matmul_dtype = tg->prec};
    loom_status st = loom_model_build_train_opts(m, g, &o, &tg->io, err, err_n);
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
    /* f16: the backward starts from loss * scale (GradScaler.scale(loss)) */
    loom_tensor *root = tg->loss;
    if (st == LOOM_OK && backward && tg->prec == LOOM_F16) {
        tg->loss_scale = loom_tensor_1d(g, LOOM_F32, 1);
        if (tg->loss_scale) {
            loom_tensor_set_name(tg->loss_scale, "loss_scale");
            loom_tensor_set_flags(tg->loss_scale, LOOM_FLAG_INPUT);
        }
        root = loom_mul(g, tg->loss, tg->loss_scale);
        st = root ? loom_graph_expand(g, root) : loom_graph_status(g);
    }
    if (st == LOOM_OK && backward) st = loom_graph_backward(g, root, false);
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
    /* positions restart at 0 in every packed document (HF's position_ids) */
    for (int32_t t = 0, d = 0, start = 0; t < T; t++) {
        if (docs && d < n_docs && t - start == docs[d]) start += docs[d++];
        pos[t] = t - start;
    }
    st = loom_tensor_upload(tg->io.pos, pos, (size_t)T * sizeof *pos);
    free(pos);
    if (st != LOOM_OK) {
        loom_train_graph_free(tg);
        return failf(err, err_n, st, "train: uploading positions failed");
    }
    return LOOM_OK;
}

loom_status loom_train_graph_build(loom_train_graph *tg, loom_model *m, loom_lora *lo, int32_t T,
                                   unsigned mode, bool keep_logits, char *err, size_t err_n) {
    return build(tg, m, lo, T, NULL, 0, mode, keep_logits, err, err_n);
}

loom_status loom_train_graph_build_packed(loom_train_graph *tg, loom_model *m, loom_lora *lo,
                                          int32_t T, const int32_t *doc_len, int n_docs,
                                          unsigned mode, bool keep_logits, char *err,
                                          size_t err_n) {
    if (!doc_len || n_docs < 1) {
        memset(tg, 0, sizeof *tg);
        return failf(err, err_n, LOOM_ERR_INVALID_ARG, "train: a packed sequence needs documents");
    }
    return build(tg, m, lo, T, doc_len, n_docs, mode, keep_logits, err, err_n);
}

bool loom_train_graph_same_docs(const loom_train_graph *tg, const int32_t *doc_len, int n_docs) {
    return tg->g && tg->docs && tg->n_docs == n_docs &&
           !memcmp(tg->docs, doc_len, (size_t)n_docs * sizeof *doc_len);
}

loom_status loom_train_graph_run(loom_train_graph *tg, const int32_t *tokens,
                                 const int32_t *targets, float *loss, char *err, size_t err_n) {
    size_t nb = (size_t)tg->T * sizeof(int32_t);
    loom_status st = loom_tensor_upload(tg->io.tokens, tokens, nb);
    if (st == LOOM_OK) st = loom_tensor_upload(tg->targets, targets, nb);
    if (st == LOOM_OK && tg->loss_scale)
        st = loom_tensor_upload(tg->loss_scale, &tg->scale, sizeof tg->scale);
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

unsigned loom_train_precision_mode(loom_dtype prec) {
    return prec == LOOM_BF16 ? LOOM_TG_BF16 : prec == LOOM_F16 ? LOOM_TG_F16 : 0u;
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
    p.precision = LOOM_BF16;
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
    int32_t T, eT, pad; /* eT: the eval graph's length */
    int32_t *docs;      /* --pack: the document lengths of the current sequence */
    int32_t *tok, *tgt;
    float **w, *gtmp;
    int64_t *sizes;
    int64_t *order;
    FILE *log;           /* rank 0 only */
    loom_ft_metrics met; /* tb/, the progress line (rank 0 only) */
    loom_comm *comm;
    int rank, ranks;
    int *shard_lo, *shard_hi; /* ZeRO-1 plan (ranks > 1) */
    float *flat;              /* ranks > 1: every weight, for the allgather */
    char ckpt[4096];
} run;

static loom_status eval_loss(run *r, double *out, char *err, size_t err_n) {
    if (!r->eval.n) {
        *out = NAN;
        return LOOM_OK;
    }
    if (!r->eg.g)
        LOOM_TRY(loom_train_graph_build(&r->eg, r->m, r->lo, r->eT,
                                        loom_train_precision_mode(r->p->precision), false, err,
                                        err_n));
    /* the mean over every counted token of the set (Trainer's eval_loss
     * averages per-example means instead; per token does not favour short
     * examples) */
    /* with several ranks, rank r takes examples r, r + ranks, ... */
    double acc[2] = {0.0, 0.0}; /* sum of loss * tokens, tokens */
    loom_status st = LOOM_OK;
    for (int64_t i = r->rank; st == LOOM_OK && i < r->eval.n; i += r->ranks) {
        int32_t c = loom_ft_example_fill(&r->eval.ex[i], r->eT, r->pad, r->tok, r->tgt);
        float l;
        st = loom_train_graph_run(&r->eg, r->tok, r->tgt, &l, err, err_n);
        acc[0] += (double)l * c;
        acc[1] += c;
    }
    LOOM_TRY(loom_comm_agree(r->comm, st));
    LOOM_TRY(loom_comm_allreduce_sum(r->comm, acc, 2, LOOM_COMM_F64));
    *out = acc[1] > 0 ? acc[0] / acc[1] : NAN;
    return LOOM_OK;
}

/* --pack: sequences of T tokens filled greedily with whole examples in the
 * epoch's order (an example that does not fit starts the next sequence; one
 * longer than T was already cut at --seq); a sequence never spans two
 * epochs. Each example keeps its own targets (its last token predicts
 * nothing), the rest of the sequence is padding that is not trained on and
 * counts as one more document. How many sequences the order gives: */
static int64_t count_packs(const loom_ft_dataset *d, const int64_t *ord, int32_t T) {
    int64_t packs = 0;
    for (int64_t i = 0; i < d->n;) {
        int32_t used = 0;
        while (i < d->n && (used == 0 || used + d->ex[ord[i]].n <= T))
            used += d->ex[ord[i++]].n;
        packs++;
    }
    return packs;
}

/* Fill r->tok/r->tgt with the next packed sequence from cs's cursor (which
 * advances); *n_docs document lengths into r->docs. Returns the counted
 * targets. */
static int64_t next_pack(run *r, loom_ckpt_state *cs, int *n_docs) {
    const int32_t T = r->T;
    int32_t used = 0;
    int64_t counted = 0;
    int nd = 0;
    while (cs->cursor < r->train.n) {
        const loom_ft_example *e = &r->train.ex[r->order[cs->cursor]];
        if (used > 0 && used + e->n > T) break;
        counted += loom_ft_example_fill(e, e->n, r->pad, r->tok + used, r->tgt + used);
        r->docs[nd++] = e->n;
        used += e->n;
        cs->cursor++;
    }
    if (used < T) { /* padding: its own document, nothing trained on */
        for (int32_t t = used; t < T; t++) {
            r->tok[t] = r->pad;
            r->tgt[t] = -1;
        }
        r->docs[nd++] = T - used;
    }
    *n_docs = nd;
    return counted;
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
    free(r->docs);
    free(r->shard_lo);
    free(r->shard_hi);
    free(r->flat);
    if (r->log) fclose(r->log);
    loom_ft_metrics_close(&r->met);
}

/* f16 runs: ,"loss_scale":S,"skipped":B for a step's log line ("" else). */
static const char *scale_field(char *b, size_t n, bool scaling, float scale, bool skipped) {
    if (!scaling) return "";
    snprintf(b, n, ",\"loss_scale\":%.9g,\"skipped\":%s", (double)scale,
             skipped ? "true" : "false");
    return b;
}

/* %.9g, or null for inf / nan (an f16 step skipped for overflow): JSON has
 * no non-finite numbers. */
static const char *json_num(char *b, size_t n, double v) {
    if (isfinite(v))
        snprintf(b, n, "%.9g", v);
    else
        snprintf(b, n, "null");
    return b;
}

/* Log line on rank 0 (the only rank with R.log). */
static void logf_(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(run *r, const char *fmt, ...) {
    if (!r->log) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(r->log, fmt, ap);
    va_end(ap);
    fflush(r->log);
}

static loom_status save_ckpt(run *r, const loom_ckpt_state *cs, char *err, size_t err_n) {
    if (r->ranks == 1) return loom_checkpoint_save(r->ckpt, cs, r->lo, r->opt, err, err_n);
    return loom_ft_dist_save(r->comm, r->ckpt, cs, r->lo, r->opt,
                             r->p->optim ? r->p->optim : "adamw", &r->p->adamw, r->sizes,
                             r->lo->n_params, r->shard_lo, r->shard_hi, err, err_n);
}

/* ZeRO-1's step: this rank updates its tensors, then every rank gets every
 * tensor (allgatherv of the shards, in order). */
static loom_status optim_step(run *r, float **grads, float *gflat, float lr) {
    if (r->ranks == 1) {
        loom_optim_step(r->opt, r->w, grads, r->sizes, lr);
        return LOOM_OK;
    }
    const int a = r->shard_lo[r->rank], b = r->shard_hi[r->rank];
    loom_optim_step(r->opt, r->w + a, grads + a, r->sizes + a, lr);
    size_t counts[64], off = 0, mine = 0;
    for (int q = 0; q < r->ranks; q++) {
        counts[q] = 0;
        for (int i = r->shard_lo[q]; i < r->shard_hi[q]; i++)
            counts[q] += (size_t)r->sizes[i];
    }
    /* the send buffer is the gradients' (spent by now): MPI forbids it to
     * overlap the receive buffer */
    for (int i = a; i < b; i++) {
        memcpy(gflat + mine, r->w[i], (size_t)r->sizes[i] * sizeof(float));
        mine += (size_t)r->sizes[i];
    }
    LOOM_TRY(loom_comm_allgatherv(r->comm, gflat, r->flat, counts, LOOM_COMM_F32));
    for (int i = 0; i < r->lo->n_params; i++) {
        memcpy(r->w[i], r->flat + off, (size_t)r->sizes[i] * sizeof(float));
        off += (size_t)r->sizes[i];
    }
    return LOOM_OK;
}

loom_status loom_finetune_run(const loom_finetune_params *p, loom_finetune_result *res, char *err,
                              size_t err_n) {
    run R;
    memset(&R, 0, sizeof R);
    R.p = p;
    R.comm = p->comm;
    R.rank = loom_comm_rank(p->comm);
    R.ranks = loom_comm_size(p->comm);
    loom_finetune_result out = {0};
    out.eval_before = out.eval_after = NAN;
    loom_status st = LOOM_OK;
    char path[4096];
    float **grads = NULL, *gflat = NULL;
    if (R.ranks > 64)
        return failf(err, err_n, LOOM_ERR_UNSUPPORTED, "finetune: at most 64 ranks (%d)", R.ranks);
    if (R.rank == 0 && mkdir(p->out_dir, 0777) != 0 && errno != EEXIST)
        st = failf(err, err_n, LOOM_ERR_IO, "finetune: cannot create '%s'", p->out_dir);
    if ((st = loom_comm_agree(R.comm, st)) != LOOM_OK) {
        if (R.rank) failf(err, err_n, st, "finetune: rank 0 cannot create '%s'", p->out_dir);
        return st;
    }

    loom_model_params mp = loom_model_default_params();
    mp.backend = p->backend;
    mp.quantize = p->quantize;
    mp.quant = p->quant;
    mp.n_ctx = 16; /* the KV cache is unused by training graphs */
    /* Every rank loads and checks the same inputs, so every rank fails the
     * same way on bad input and none is left waiting in a collective. */
    if ((st = loom_model_load(p->model, &mp, &R.m, err, err_n)) != LOOM_OK) goto done;
    const loom_model_config *mc = loom_model_config_of(R.m);
    const loom_tokenizer *tok = loom_model_tokenizer(R.m);
    if ((st = loom_ft_dataset_load_chat(p->data, tok, p->chat_template, p->seq, &R.train, err,
                                        err_n)) != LOOM_OK)
        goto done;
    if (p->eval && (st = loom_ft_dataset_load_chat(p->eval, tok, p->chat_template, p->seq, &R.eval,
                                                   err, err_n)) != LOOM_OK)
        goto done;
    /* one graph shape: the longest example (up to --seq); --pack: --seq,
     * and the eval set (not packed) its own longest example */
    for (int64_t i = 0; i < R.train.n; i++)
        if (R.train.ex[i].n > R.T) R.T = R.train.ex[i].n;
    for (int64_t i = 0; i < R.eval.n; i++)
        if (R.eval.ex[i].n > R.eT) R.eT = R.eval.ex[i].n;
    if (p->pack)
        R.T = p->seq;
    else if (R.eT > R.T)
        R.T = R.eT;
    else
        R.eT = R.T;
    R.pad = loom_tokenizer_eos(tok) >= 0 ? loom_tokenizer_eos(tok) : 0;
    if ((st = loom_lora_new(mc, &p->lora, p->seed, &R.lo, err, err_n)) != LOOM_OK) goto done;
    const int np = R.lo->n_params;
    if (np < R.ranks) {
        st = failf(err, err_n, LOOM_ERR_INVALID_ARG,
                   "finetune: %d ranks need at least as many LoRA tensors (the adapter has %d)",
                   R.ranks, np);
        goto done;
    }
    R.sizes = malloc((size_t)np * sizeof *R.sizes);
    R.w = malloc((size_t)np * sizeof *R.w);
    grads = calloc((size_t)np, sizeof *grads);
    R.tok = malloc((size_t)R.T * sizeof *R.tok);
    R.tgt = malloc((size_t)R.T * sizeof *R.tgt);
    R.order = malloc((size_t)R.train.n * sizeof *R.order);
    R.docs = malloc((size_t)(R.train.n + 1) * sizeof *R.docs);
    if (R.eT > R.T) { /* the token buffers serve the eval set too */
        free(R.tok);
        free(R.tgt);
        R.tok = malloc((size_t)R.eT * sizeof *R.tok);
        R.tgt = malloc((size_t)R.eT * sizeof *R.tgt);
    }
    R.shard_lo = malloc((size_t)R.ranks * sizeof *R.shard_lo);
    R.shard_hi = malloc((size_t)R.ranks * sizeof *R.shard_hi);
    int64_t max_sz = 1, n_all = 0;
    if (!R.sizes || !R.w || !grads || !R.tok || !R.tgt || !R.order || !R.docs || !R.shard_lo ||
        !R.shard_hi) {
        st = failf(err, err_n, LOOM_ERR_OOM, "finetune: out of memory");
        goto done;
    }
    for (int i = 0; i < np; i++) {
        R.sizes[i] = R.lo->p[i].rows * R.lo->p[i].cols;
        R.w[i] = R.lo->p[i].w;
        if (R.sizes[i] > max_sz) max_sz = R.sizes[i];
        n_all += R.sizes[i];
    }
    /* the gradients in one block: one allreduce with several ranks */
    if (!(gflat = calloc((size_t)n_all, sizeof(float))) ||
        !(R.gtmp = malloc((size_t)max_sz * sizeof(float))) ||
        (R.ranks > 1 && !(R.flat = malloc((size_t)n_all * sizeof(float))))) {
        st = failf(err, err_n, LOOM_ERR_OOM, "finetune: out of memory");
        goto done;
    }
    for (int64_t i = 0, off = 0; i < np; off += R.sizes[i], i++)
        grads[i] = gflat + off;
    loom_ft_shard_plan(R.sizes, np, R.ranks, R.shard_lo, R.shard_hi);
    {
        const int a = R.shard_lo[R.rank], b = R.shard_hi[R.rank];
        if ((st = loom_optim_create(p->optim, &p->adamw, b - a, R.sizes + a, &R.opt)) != LOOM_OK) {
            failf(err, err_n, st, "finetune: cannot create the optimizer '%s'",
                  p->optim ? p->optim : "adamw");
            goto done;
        }
    }
    const int accum = p->grad_accum > 0 ? p->grad_accum : 1;
    const int micro = accum * R.ranks; /* micro-batches per optimizer step, all ranks */
    int64_t total = p->max_steps > 0 ? p->max_steps : 0;
    for (int64_t e = 0; p->max_steps <= 0 && e < (p->epochs > 0 ? p->epochs : 1); e++) {
        int64_t seqs = R.train.n;
        if (p->pack) {
            epoch_order(R.order, R.train.n, p->seed, e);
            seqs = count_packs(&R.train, R.order, R.T);
        }
        total += (seqs + micro - 1) / micro;
    }
    const int64_t warmup = (int64_t)ceil((double)p->warmup_ratio * (double)total);

    if (p->precision != LOOM_F32 && p->precision != LOOM_BF16 && p->precision != LOOM_F16) {
        st = failf(err, err_n, LOOM_ERR_INVALID_ARG,
                   "finetune: precision must be f32, bf16 or f16, not %s",
                   loom_dtype_name(p->precision));
        goto done;
    }
    loom_ckpt_state cs = {.seed = p->seed};
    loom_train_rng_seed(cs.rng, p->seed ^ 0x5DEECE66Dull);
    /* f16: GradScaler's state, restored from a checkpoint that has one */
    const bool scaling = p->precision == LOOM_F16;
    cs.has_scaler = scaling;
    cs.scaler = loom_loss_scaler_default();
    if (p->loss_scale_init > 0) cs.scaler.scale = p->loss_scale_init;
    snprintf(R.ckpt, sizeof R.ckpt, "%s/checkpoint.bin", p->out_dir);
    struct stat sb;
    if (p->resume && stat(R.ckpt, &sb) == 0) {
        if (R.ranks == 1)
            st = loom_checkpoint_load(R.ckpt, &cs, R.lo, R.opt, err, err_n);
        else
            st = loom_ft_dist_load(R.comm, R.ckpt, &cs, R.lo, R.opt, p->optim ? p->optim : "adamw",
                                   &p->adamw, R.sizes, np, R.shard_lo, R.shard_hi, err, err_n);
        if (st != LOOM_OK) goto done;
        if (!scaling) cs.has_scaler = false; /* a scaler saved by an f16 run is not used */
        if (scaling && !cs.has_scaler) {     /* the checkpoint's run did not scale */
            cs.has_scaler = true;
            cs.scaler = loom_loss_scaler_default();
            if (p->loss_scale_init > 0) cs.scaler.scale = p->loss_scale_init;
        }
        if (cs.seed != p->seed) {
            st = failf(err, err_n, LOOM_ERR_INVALID_ARG,
                       "finetune: %s was written with another --seed", R.ckpt);
            goto done;
        }
        if (!p->quiet && R.rank == 0)
            fprintf(stderr, "finetune: resuming at step %lld\n", (long long)cs.step);
    }
    if (R.rank == 0) {
        snprintf(path, sizeof path, "%s/train_log.jsonl", p->out_dir);
        /* a resumed run appends: the log then holds the whole curve */
        if (!(R.log = fopen(path, cs.step > 0 ? "a" : "w")))
            st = failf(err, err_n, LOOM_ERR_IO, "finetune: cannot write '%s'", path);
        if (st == LOOM_OK)
            st = loom_ft_metrics_open(&R.met, p->out_dir, !p->quiet, cs.step, total, err, err_n);
    }
    if ((st = loom_comm_agree(R.comm, st)) != LOOM_OK) goto done;
    const unsigned tg_mode = LOOM_TG_BACKWARD | (p->no_grad_checkpoint ? LOOM_TG_STORE_ACTS : 0u) |
                             loom_train_precision_mode(p->precision);
    if (!p->pack &&
        (st = loom_train_graph_build(&R.tg, R.m, R.lo, R.T, tg_mode, false, err, err_n)) != LOOM_OK)
        goto done;
    if (cs.step == 0 && R.eval.n) {
        if ((st = eval_loss(&R, &out.eval_before, err, err_n)) != LOOM_OK) goto done;
        logf_(&R, "{\"step\":0,\"eval_loss\":%.9g}\n", out.eval_before);
        if (R.rank == 0) st = loom_ft_metrics_eval(&R.met, 0, out.eval_before, err, err_n);
        if ((st = loom_comm_agree(R.comm, st)) != LOOM_OK) goto done;
    }
    epoch_order(R.order, R.train.n, p->seed, cs.epoch);
    const double t0 = now_s();
    double sum_step_s = 0.0, tokens_total = 0.0;
    int64_t steps_here = 0;
    out.first_loss = NAN;
    while (cs.step < total) {
        if (p->stop_after > 0 && cs.step >= p->stop_after) break;
        const double ts = now_s();
        memset(gflat, 0, (size_t)n_all * sizeof(float));
        double sums[2] = {0.0, 0.0}; /* loss, trained tokens */
        for (int k = 0; k < micro && st == LOOM_OK; k++) {
            if (cs.cursor >= R.train.n) {
                cs.epoch++;
                cs.cursor = 0;
                epoch_order(R.order, R.train.n, p->seed, cs.epoch);
            }
            const loom_ft_example *e = NULL;
            int64_t packed = 0;
            if (p->pack) {
                /* every rank builds every pack (the cursor and the graph's
                 * shape stay the single-rank ones); only its owner runs it */
                int nd;
                packed = next_pack(&R, &cs, &nd);
                /* the graph's shape follows the document lengths */
                if (!loom_train_graph_same_docs(&R.tg, R.docs, nd)) {
                    loom_train_graph_free(&R.tg);
                    if ((st = loom_train_graph_build_packed(&R.tg, R.m, R.lo, R.T, R.docs, nd,
                                                            tg_mode, false, err, err_n)) != LOOM_OK)
                        break;
                }
            } else {
                e = &R.train.ex[R.order[cs.cursor++]];
            }
            /* every rank draws every micro-batch's masks: the dropout stream
             * stays the single-rank one, whatever the rank count */
            loom_lora_binding_draw_masks(&R.tg.bind, cs.rng);
            if (k % R.ranks != R.rank) continue;
            sums[1] += p->pack ? (double)packed : loom_ft_example_fill(e, R.T, R.pad, R.tok, R.tgt);
            float l;
            R.tg.scale = scaling ? cs.scaler.scale : 1.0f;
            if ((st = loom_train_graph_run(&R.tg, R.tok, R.tgt, &l, err, err_n)) != LOOM_OK) break;
            sums[0] += l;
            for (int i = 0; i < np; i++) {
                if ((st = loom_train_graph_grad(&R.tg, i, R.gtmp)) != LOOM_OK) {
                    failf(err, err_n, st, "finetune: reading a gradient failed");
                    break;
                }
                for (int64_t j = 0; j < R.sizes[i]; j++)
                    grads[i][j] += R.gtmp[j];
            }
        }
        if (R.ranks > 1) {
            const bool failed_here = st != LOOM_OK;
            if ((st = loom_comm_agree(R.comm, st)) == LOOM_OK)
                st = loom_comm_allreduce_sum(R.comm, gflat, (size_t)n_all, LOOM_COMM_F32);
            if (st == LOOM_OK) st = loom_comm_allreduce_sum(R.comm, sums, 2, LOOM_COMM_F64);
            if (st != LOOM_OK && !failed_here)
                failf(err, err_n, st, "finetune: another rank failed, or the all-reduce did");
        }
        if (st != LOOM_OK) goto done;
        const int64_t ntok = (int64_t)sums[1];
        /* the mean of the micro-batch losses, as Trainer divides each by accum */
        for (int64_t j = 0; j < n_all; j++)
            gflat[j] /= (float)micro;
        /* f16: GradScaler.unscale_ then step-or-skip then update. Every rank
         * holds the same all-reduced gradients, so all skip alike. */
        const float used_scale = cs.scaler.scale;
        bool skipped = false;
        if (scaling) {
            skipped = !loom_grads_finite(grads, R.sizes, np);
            loom_loss_scaler_unscale(&cs.scaler, grads, R.sizes, np);
        }
        const double gnorm =
            loom_clip_grad_norm(grads, R.sizes, np, skipped ? 0.0 : p->max_grad_norm);
        const float lr = loom_lr_cosine(p->lr, cs.step, warmup, total);
        if (!skipped && (st = optim_step(&R, grads, gflat, lr)) != LOOM_OK) {
            failf(err, err_n, st, "finetune: gathering the updated adapter failed");
            goto done;
        }
        if (scaling) loom_loss_scaler_update(&cs.scaler, skipped);
        out.skipped_steps += skipped;
        cs.step++;
        const double dt = now_s() - ts, loss = sums[0] / micro;
        const double tok_s = (double)ntok / (dt > 0 ? dt : 1e-9);
        char sf[80], gn[32];
        sum_step_s += dt;
        tokens_total += (double)ntok;
        steps_here++;
        if (isnan(out.first_loss)) out.first_loss = loss;
        out.last_loss = loss;
        logf_(&R,
              "{\"step\":%lld,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%s,\"tokens\":%lld,"
              "\"tokens_per_s\":%.6g,\"step_s\":%.6g,\"elapsed_s\":%.6g,\"epoch\":%lld%s}\n",
              (long long)cs.step, loss, (double)lr, json_num(gn, sizeof gn, gnorm), (long long)ntok,
              tok_s, dt, now_s() - t0, (long long)cs.epoch,
              scale_field(sf, sizeof sf, scaling, used_scale, skipped));
        if (R.rank == 0)
            st = loom_ft_metrics_step(&R.met, cs.step, loss, lr, gnorm, tok_s, err, err_n);
        /* rank 0 alone can fail here: the others must not wait for it */
        if ((st = loom_comm_agree(R.comm, st)) != LOOM_OK) goto done;
        if (p->eval_every > 0 && cs.step % p->eval_every == 0 && cs.step < total && R.eval.n) {
            double ev;
            if ((st = eval_loss(&R, &ev, err, err_n)) != LOOM_OK) goto done;
            logf_(&R, "{\"step\":%lld,\"eval_loss\":%.9g}\n", (long long)cs.step, ev);
            if (R.rank == 0) st = loom_ft_metrics_eval(&R.met, cs.step, ev, err, err_n);
            if ((st = loom_comm_agree(R.comm, st)) != LOOM_OK) goto done;
        }
        if (p->save_every > 0 && cs.step % p->save_every == 0 && cs.step < total &&
            (st = save_ckpt(&R, &cs, err, err_n)) != LOOM_OK)
            goto done;
    }
    out.steps = cs.step;
    out.loss_scale = scaling ? cs.scaler.scale : 0.0f;
    if (steps_here) {
        out.step_s = sum_step_s / (double)steps_here;
        out.tokens_per_s = tokens_total / (sum_step_s > 0 ? sum_step_s : 1e-9);
    }
    if (p->stop_after > 0 && cs.step >= p->stop_after && cs.step < total) goto done; /* "killed" */
    if ((st = save_ckpt(&R, &cs, err, err_n)) != LOOM_OK) goto done;
    if (R.eval.n) {
        if ((st = eval_loss(&R, &out.eval_after, err, err_n)) != LOOM_OK) goto done;
        logf_(&R, "{\"step\":%lld,\"eval_loss\":%.9g}\n", (long long)cs.step, out.eval_after);
        if (R.rank == 0) st = loom_ft_metrics_eval(&R.met, cs.step, out.eval_after, err, err_n);
        if ((st = loom_comm_agree(R.comm, st)) != LOOM_OK) goto done;
    }
    if (R.rank == 0) {
        loom_ft_metrics_close(&R.met); /* ends the progress line */
        if ((st = loom_peft_save(p->out_dir, R.lo, p->model, err, err_n)) == LOOM_OK)
            st = loom_ft_metrics_plot(p->out_dir, err, err_n);
    }
    /* the other ranks return once the adapter is written (or failed) */
    if (loom_comm_agree(R.comm, st) != LOOM_OK && st == LOOM_OK)
        st = failf(err, err_n, LOOM_ERR_IO, "finetune: rank 0 failed to write the adapter");
done:
    free(gflat);
    free(grads);
    run_free(&R);
    if (res) *res = out;
    return st;
}
