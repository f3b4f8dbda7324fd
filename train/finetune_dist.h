/* train/finetune_dist.h - data-parallel ranks for the fine-tuning loop
 * (docs/adr/0034-communicator-data-and-tensor-parallel.md): the ZeRO-1
 * shard plan and checkpoints of a sharded optimizer.
 *
 * ZeRO-1 (DeepSpeed stage 1): every rank keeps the whole adapter and
 * computes gradients of its micro-batches; the gradients are all-reduced,
 * then rank r alone updates the parameter tensors [lo_r, hi_r) with its
 * optimizer shard (states only for those), and an allgather brings every
 * rank the updated tensors. Shards are whole tensors in order, so the
 * 8-bit optimizer's blocks never straddle ranks, and a shard's state arrays
 * are exactly the matching run of a whole optimizer's (loom_optim_ops.state
 * lists them tensor by tensor): a checkpoint holds the whole optimizer, as
 * a single rank writes it, and any rank count can resume it. */
#ifndef LOOM_TRAIN_FINETUNE_DIST_H
#define LOOM_TRAIN_FINETUNE_DIST_H

#include <stdint.h>

#include "checkpoint.h"
#include "optim.h"

#include "runtime/comm.h"

/* Tensors [lo[r], hi[r]) for rank r of size ranks: contiguous runs with
 * about equal element counts (greedy on the running total). Every rank gets
 * at least one tensor: needs n >= size. lo, hi: size entries. */
void loom_ft_shard_plan(const int64_t *sizes, int n, int size, int *lo, int *hi);

/* Gather every rank's optimizer shard into one whole optimizer (created
 * here with all n tensors; same name and hyper-parameters) and have rank 0
 * write the checkpoint; every rank returns the same status. */
loom_status loom_ft_dist_save(loom_comm *c, const char *path, const loom_ckpt_state *s,
                              const loom_lora *lo, loom_optim *shard, const char *optim_name,
                              const loom_adamw_params *hp, const int64_t *sizes, int n,
                              const int *plo, const int *phi, char *err, size_t err_n);

/* Every rank reads the checkpoint (the adapter, the loop state) and keeps
 * the state arrays of its own shard. */
loom_status loom_ft_dist_load(loom_comm *c, const char *path, loom_ckpt_state *s, loom_lora *lo,
                              loom_optim *shard, const char *optim_name,
                              const loom_adamw_params *hp, const int64_t *sizes, int n,
                              const int *plo, const int *phi, char *err, size_t err_n);

#endif
