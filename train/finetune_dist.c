/* train/finetune_dist.c - ZeRO-1 shards and their checkpoints (see
 * finetune_dist.h). */
#include "finetune_dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void loom_ft_shard_plan(const int64_t *sizes, int n, int size, int *lo, int *hi) {
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        total += sizes[i];
    int i = 0;
    int64_t acc = 0;
    for (int r = 0; r < size; r++) {
        lo[r] = i;
        /* the rank's share ends where the running total passes (r+1)/size
         * of all elements, leaving one tensor for every later rank */
        const int64_t goal = total * (r + 1) / size;
        do {
            acc += sizes[i++];
        } while (i < n - (size - 1 - r) && acc + sizes[i] / 2 <= goal);
        if (r == size - 1) {
            while (i < n)
                acc += sizes[i++];
        }
        hi[r] = i;
    }
}

/* Bytes of every state array of o, in order. */
static size_t state_bytes(loom_optim *o) {
    size_t b = 0;
    for (int k = 0; k < o->ops->n_state(o); k++) {
        const char *name;
        void *d;
        size_t nb;
        o->ops->state(o, k, &name, &d, &nb);
        b += nb;
    }
    return b;
}

/* Copy o's state arrays out of (to = false) or into (to = true) the flat
 * buf, starting at state k0 of o. */
static void state_copy(loom_optim *o, int k0, int k1, unsigned char *buf, bool into) {
    for (int k = k0; k < k1; k++) {
        const char *name;
        void *d;
        size_t nb;
        o->ops->state(o, k, &name, &d, &nb);
        if (into)
            memcpy(d, buf, nb);
        else
            memcpy(buf, d, nb);
        buf += nb;
    }
}

/* The first state index of tensor lo_t in a whole optimizer: the states of
 * tensors before it (a shard optimizer for [0, lo_t) has exactly those). */
static loom_status state_offset(const char *name, const loom_adamw_params *hp,
                                const int64_t *sizes, int lo_t, int *k0) {
    *k0 = 0;
    if (lo_t == 0) return LOOM_OK;
    loom_optim *o;
    LOOM_TRY(loom_optim_create(name, hp, lo_t, sizes, &o));
    *k0 = o->ops->n_state(o);
    loom_optim_free(o);
    return LOOM_OK;
}

loom_status loom_ft_dist_save(loom_comm *c, const char *path, const loom_ckpt_state *s,
                              const loom_lora *lo, loom_optim *shard, const char *optim_name,
                              const loom_adamw_params *hp, const int64_t *sizes, int n,
                              const int *plo, const int *phi, char *err, size_t err_n) {
    const int R = loom_comm_size(c), me = loom_comm_rank(c);
    size_t *counts = calloc((size_t)R, sizeof *counts);
    int64_t *c64 = calloc((size_t)R, sizeof *c64);
    unsigned char *mine = NULL, *all = NULL;
    loom_optim *whole = NULL;
    loom_status st = counts && c64 ? LOOM_OK : LOOM_ERR_OOM;
    size_t nb = state_bytes(shard), total = 0;
    if (st == LOOM_OK && !(mine = malloc(nb ? nb : 1))) st = LOOM_ERR_OOM;
    if (st == LOOM_OK) {
        state_copy(shard, 0, shard->ops->n_state(shard), mine, false);
        c64[me] = (int64_t)nb;
    }
    st = loom_comm_agree(c, st);
    if (st == LOOM_OK) st = loom_comm_allreduce_sum(c, c64, (size_t)R, LOOM_COMM_I64);
    for (int r = 0; st == LOOM_OK && r < R; r++)
        total += counts[r] = (size_t)c64[r];
    /* every rank receives the gather (MPI's allgatherv; a checkpoint is rare
     * and the file's buffer on rank 0 is as large anyway) */
    if (st == LOOM_OK && !(all = malloc(total ? total : 1))) st = LOOM_ERR_OOM;
    st = loom_comm_agree(c, st);
    if (st == LOOM_OK) st = loom_comm_allgatherv(c, mine, all, counts, LOOM_COMM_U8);
    if (st != LOOM_OK) snprintf(err, err_n, "finetune: gathering the optimizer state failed");
    loom_status wst = LOOM_OK;
    if (st == LOOM_OK && me == 0) {
        wst = loom_optim_create(optim_name, hp, n, sizes, &whole);
        if (wst == LOOM_OK && state_bytes(whole) != total) wst = LOOM_ERR_INTERNAL;
        if (wst == LOOM_OK) {
            whole->t = shard->t;
            state_copy(whole, 0, whole->ops->n_state(whole), all, true);
            wst = loom_checkpoint_save(path, s, lo, whole, err, err_n);
        } else
            snprintf(err, err_n, "finetune: the optimizer shards do not add up to the whole");
    }
    if (st == LOOM_OK) {
        st = loom_comm_agree(c, wst);
        if (st != LOOM_OK && wst == LOOM_OK)
            snprintf(err, err_n, "finetune: rank 0 failed to write %s", path);
    }
    (void)plo;
    (void)phi;
    loom_optim_free(whole);
    free(all);
    free(mine);
    free(c64);
    free(counts);
    return st;
}

loom_status loom_ft_dist_load(loom_comm *c, const char *path, loom_ckpt_state *s, loom_lora *lo,
                              loom_optim *shard, const char *optim_name,
                              const loom_adamw_params *hp, const int64_t *sizes, int n,
                              const int *plo, const int *phi, char *err, size_t err_n) {
    const int me = loom_comm_rank(c);
    loom_optim *whole = NULL;
    unsigned char *buf = NULL;
    int k0 = 0;
    loom_status st = loom_optim_create(optim_name, hp, n, sizes, &whole);
    if (st != LOOM_OK) snprintf(err, err_n, "finetune: out of memory");
    if (st == LOOM_OK) st = loom_checkpoint_load(path, s, lo, whole, err, err_n);
    if (st == LOOM_OK && (st = state_offset(optim_name, hp, sizes, plo[me], &k0)) != LOOM_OK)
        snprintf(err, err_n, "finetune: out of memory");
    const size_t nb = st == LOOM_OK ? state_bytes(shard) : 0;
    if (st == LOOM_OK && !(buf = malloc(nb ? nb : 1))) {
        st = LOOM_ERR_OOM;
        snprintf(err, err_n, "finetune: out of memory");
    }
    if (st == LOOM_OK) {
        const int ks = shard->ops->n_state(shard);
        state_copy(whole, k0, k0 + ks, buf, false);
        state_copy(shard, 0, ks, buf, true);
        shard->t = whole->t;
    }
    (void)phi;
    free(buf);
    loom_optim_free(whole);
    return st;
}
