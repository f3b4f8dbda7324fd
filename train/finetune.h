/* train/finetune.h - the training step as one graph, and the fine-tuning
 * loop behind `loom finetune` (docs/adr/0028-training.md).
 *
 * The step graph (built once per sequence length): the model's forward
 * without KV cache through the LoRA hook, next-token cross-entropy over the
 * counted targets (prompt and padding positions carry target -1), and
 * loom_graph_backward for every LoRA parameter. Scheduled on the model's
 * backend (cpu fallback); LoRA parameters are host leaves, gradients are
 * read back after each run.
 *
 * One optimizer step = grad_accum micro-steps (per rank, see comm below) of one sequence each
 * (batch 1, as the QLoRA recipe): gradients averaged over the micro-steps, clipped to a global
 * norm, AdamW with the cosine/warmup learning rate. Deterministic on cpu for a fixed thread count:
 * data order (a seeded shuffle per epoch), dropout masks (one xoshiro256** stream whose state is
 * checkpointed) and the reductions are the same on every run, so a resumed run repeats the
 * uninterrupted one bit for bit. */
#ifndef LOOM_TRAIN_FINETUNE_H
#define LOOM_TRAIN_FINETUNE_H

#include <stdbool.h>
#include <stdint.h>

#include "finetune_data.h"
#include "lora.h"
#include "loss_scale.h"
#include "optim.h"

#include "loom/model.h"
#include "loom/runtime.h"
#include "runtime/comm.h"

/* ---------------- the step graph ---------------- */

typedef struct loom_train_graph {
    loom_graph *g;
    loom_sched *s;
    loom_lora_binding bind;
    loom_model_train_io io;
    loom_tensor *targets; /* i32 [T] INPUT */
    loom_tensor *loss;    /* f32 [1] */
    int32_t T;
    bool backward;
    int32_t *docs; /* packed graphs: the document lengths it was built for (owned) */
    int n_docs;
    loom_dtype prec;         /* matmul inputs: LOOM_F32, LOOM_BF16 or LOOM_F16 (docs/adr/0041) */
    loom_tensor *loss_scale; /* f16 training graphs: f32 [1] INPUT the loss is multiplied by
                                before the backward (NULL otherwise) */
    float scale;             /* uploaded to loss_scale by each run; 1 after build */
} loom_train_graph;

/* Modes of loom_train_graph_build (true/false read as BACKWARD / none). */
enum {
    LOOM_TG_BACKWARD = 1u,   /* gradients of every LoRA parameter (a training graph) */
    LOOM_TG_STORE_ACTS = 2u, /* no gradient checkpointing: keep every block's activations */
    /* Mixed precision (docs/adr/0041): matmul inputs in bf16 / f16, f32
     * accumulation, f32 gradients of the f32 LoRA masters. LOOM_TG_F16
     * training graphs also scale the loss by tg->scale before the backward
     * (the gradients read back are then scaled: see train/loss_scale.h). */
    LOOM_TG_BF16 = 4u,
    LOOM_TG_F16 = 8u,
};
/* The LOOM_TG_ precision bit of LOOM_F32 / LOOM_BF16 / LOOM_F16 (0 for f32). */
unsigned loom_train_precision_mode(loom_dtype prec);
/* Build and schedule for sequences of T tokens. mode & LOOM_TG_BACKWARD:
 * gradients of every LoRA parameter and dropout (a training graph), each
 * decoder block recomputed in the backward (gradient checkpointing) unless
 * mode & LOOM_TG_STORE_ACTS; else loss only (eval). keep_logits: the logits
 * stay readable after a run (tests). The model's own (decoding) hook and
 * graph cache are left alone. */
loom_status loom_train_graph_build(loom_train_graph *tg, loom_model *m, loom_lora *lo, int32_t T,
                                   unsigned mode, bool keep_logits, char *err, size_t err_n);
/* The same for one packed sequence of T tokens holding n_docs documents of
 * doc_len[i] tokens end to end (sum T; a trailing run of padding counts as
 * a document): attention stays within each document and positions restart
 * at 0 in each (loom_model_build_train_packed). The graph's shape depends on
 * the lengths, so the loop rebuilds it when they change
 * (loom_train_graph_same_docs). */
loom_status loom_train_graph_build_packed(loom_train_graph *tg, loom_model *m, loom_lora *lo,
                                          int32_t T, const int32_t *doc_len, int n_docs,
                                          unsigned mode, bool keep_logits, char *err, size_t err_n);
bool loom_train_graph_same_docs(const loom_train_graph *tg, const int32_t *doc_len, int n_docs);
/* Run on one sequence: tokens and targets [T] (target -1 = not counted).
 * *loss = mean cross-entropy over the counted targets (0 when none). */
loom_status loom_train_graph_run(loom_train_graph *tg, const int32_t *tokens,
                                 const int32_t *targets, float *loss, char *err, size_t err_n);
/* Gradient of LoRA parameter i after a backward run: rows*cols floats in
 * PyTorch layout, into out (not accumulated). */
loom_status loom_train_graph_grad(loom_train_graph *tg, int i, float *out);
void loom_train_graph_free(loom_train_graph *tg);

/* ---------------- the fine-tuning loop ---------------- */

typedef struct loom_finetune_params {
    const char *model;   /* GGUF file or HF directory */
    const char *data;    /* training JSONL */
    const char *eval;    /* held-out JSONL, or NULL */
    const char *out_dir; /* adapter, log, checkpoint (created) */
    const char *backend; /* NULL = default */
    bool quantize;       /* base weights converted at load (--quant) */
    loom_dtype quant;
    loom_lora_config lora;
    loom_adamw_params adamw;
    const char *optim;         /* loom_optim_create's name; NULL = "adamw" */
    const char *chat_template; /* chat data: a template name, NULL = the model's */
    float lr;                  /* peak, 2e-4 */
    float warmup_ratio;        /* of the total optimizer steps, 0.03 */
    int grad_accum;            /* 16 */
    int32_t seq;               /* maximum tokens per sequence, 512 */
    int epochs;                /* 1 */
    int64_t max_steps;         /* > 0: total optimizer steps (overrides epochs) */
    uint64_t seed;             /* 42 */
    double max_grad_norm;      /* 1.0; 0 = no clipping */
    int64_t save_every;        /* checkpoint every N optimizer steps (0 = only at the end) */
    int64_t eval_every;        /* eval loss every N steps (0 = at the start and end only) */
    bool resume;               /* continue from OUTDIR/checkpoint.bin when present */
    bool quiet;                /* no per-step lines on stderr */
    bool pack;                 /* several examples per sequence of seq tokens, attention
                                  within each (loom_train_graph_build_packed) */
    bool no_grad_checkpoint;   /* keep activations instead of recomputing blocks */
    /* Matmul inputs (docs/adr/0041): LOOM_BF16 (the default), LOOM_F16 with
     * dynamic loss scaling (train/loss_scale.h; skipped steps are logged),
     * or LOOM_F32. LoRA masters, gradient sums and the optimizer are f32 in
     * every mode. */
    loom_dtype precision;
    float loss_scale_init; /* f16: the scaler's first scale; 0 = 65536 (GradScaler's) */
    /* Tests: after this many optimizer steps (total, counting resumed
     * ones), stop as if killed, without the final save (0 = never). */
    int64_t stop_after;
    /* Data-parallel ranks (docs/adr/0034): NULL or a one-rank comm = this
     * process alone. With R ranks an optimizer step takes R * grad_accum
     * micro-batches (grad_accum per rank, as Trainer's per-device
     * accumulation), rank r the k-th of them for k % R == r; gradients are
     * all-reduced and averaged over all R * grad_accum; the optimizer states
     * are sharded ZeRO-1 style (train/finetune_dist.h); rank 0 alone writes
     * OUTDIR (log, metrics, adapter, checkpoint). Every rank must be given
     * the same parameters. Not owned. */
    loom_comm *comm;
} loom_finetune_params;

/* The QLoRA recipe: lora r64/a16/p0.05 on all projections, lr 2e-4 cosine
 * with 3% warmup, accumulation 16, clip 1.0, seq 512, 1 epoch, seed 42. */
loom_finetune_params loom_finetune_default_params(void);

typedef struct loom_finetune_result {
    int64_t steps; /* optimizer steps done (in total) */
    double first_loss, last_loss;
    double eval_before, eval_after; /* NAN when no eval set */
    double tokens_per_s;
    double step_s;         /* mean seconds per optimizer step */
    int64_t skipped_steps; /* f16: steps of this call skipped for inf/nan gradients */
    float loss_scale;      /* f16: the scaler's scale at the end (0 otherwise) */
} loom_finetune_result;

/* Run the loop: writes OUTDIR/adapter_config.json, adapter_model.safetensors
 * (PEFT), train_log.jsonl (one line per step: step, loss (mean over the
 * micro-steps), lr, grad_norm (before clipping), tokens (the trained target
 * tokens of the step), tokens_per_s (of those), step_s, elapsed_s, epoch;
 * and eval_loss lines), checkpoint.bin. A resumed run appends to the log, so
 * a step lost to a kill appears twice (its second line is the one that
 * counts). */
loom_status loom_finetune_run(const loom_finetune_params *p, loom_finetune_result *res, char *err,
                              size_t err_n);

#endif
