/* train/checkpoint.h - training checkpoints and atomic file writes
 * (docs/adr/0028-training.md).
 *
 * A checkpoint is one file holding everything a resumed run needs to repeat
 * the uninterrupted run bit for bit: the step counters and data cursor, the
 * dropout RNG state, every LoRA parameter and every optimizer state array
 * (through loom_optim_ops.state). Layout (little-endian):
 *   "LOOMCKPT" u32 version(1) u32 n_records
 *   n_records x { u32 name_len, name bytes, u64 n_bytes, bytes }
 *   u64 FNV-1a-64 of everything before it
 * It is written with loom_train_write_atomic, so a crash or kill -9 during a
 * save leaves the previous checkpoint intact: at most the steps since it are
 * lost. Loading checks the checksum, the optimizer's name and every
 * record's name and size against the adapter and optimizer it fills, and
 * names the first mismatch. */
#ifndef LOOM_TRAIN_CHECKPOINT_H
#define LOOM_TRAIN_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lora.h"
#include "loss_scale.h"
#include "optim.h"

typedef struct loom_ckpt_state {
    int64_t step;    /* optimizer steps done */
    int64_t epoch;   /* current epoch (0-based) */
    int64_t cursor;  /* examples of this epoch consumed */
    uint64_t rng[4]; /* dropout stream */
    uint64_t seed;   /* the run's seed (data order derives from it) */
    /* f16 runs (docs/adr/0041): the loss scaler, saved as one more record
     * "loss_scaler" after the optimizer's; a file without it loads with
     * has_scaler false. */
    bool has_scaler;
    loom_loss_scaler scaler;
} loom_ckpt_state;

loom_status loom_checkpoint_save(const char *path, const loom_ckpt_state *s, const loom_lora *lo,
                                 loom_optim *o, char *err, size_t err_n);
/* Fill s, lo's parameters and o's state (o->t too) from path. lo and o must
 * have been created with the same shapes. */
loom_status loom_checkpoint_load(const char *path, loom_ckpt_state *s, loom_lora *lo, loom_optim *o,
                                 char *err, size_t err_n);

/* Replace path with n bytes: a new path.tmp.XXXXXX in the same directory,
 * written, fsync'ed, renamed over path, directory fsync'ed (ADR 0013).
 * On failure path is unchanged and the temporary file removed. */
loom_status loom_train_write_atomic(const char *path, const void *data, size_t n, char *err,
                                    size_t err_n);

#endif
