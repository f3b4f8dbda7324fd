/* serve/engine_embed.c - embeddings from the served model (see
 * loom_engine_embed in engine.h): a job queue the engine thread drains one
 * text per turn of its loop, so the model is only ever called from the
 * engine thread (docs/adr/0019-serving.md, addendum "Embeddings from the
 * LLM"). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "serve/engine.h"
#include "serve/engine_internal.h"

/* Lives on the submitter's stack until done is set (under e->mu). */
typedef struct loom_engine_embed_job {
    const int32_t *const *toks;
    const size_t *lens;
    size_t n, next; /* texts, and the next one to run */
    float *out;
    int64_t dim;
    loom_status st;
    char err[256];
    bool done;
    struct loom_engine_embed_job *link;
} loom_engine_embed_job;

/* Dequeue the head job with status st and wake its submitter. mu held. */
static void finish_head(loom_engine *e, loom_status st) {
    loom_engine_embed_job *j = e->emb_head;
    e->emb_head = j->link;
    if (!e->emb_head) e->emb_tail = NULL;
    j->st = st;
    j->done = true;
    pthread_cond_broadcast(&e->emb_cv);
}

void loom_engine_embed_turn(loom_engine *e) {
    loom_engine_embed_job *j = e->emb_head;
    if (!j) return;
    const size_t i = j->next;
    char err[256] = "";
    /* New jobs only join at the tail and only this thread dequeues, so j
     * stays the head while the lock is released for the forward. */
    pthread_mutex_unlock(&e->mu);
    loom_status st = loom_model_embed(e->m, j->toks[i], j->lens[i], j->out + i * (size_t)j->dim,
                                      err, sizeof err);
    pthread_mutex_lock(&e->mu);
    if (st != LOOM_OK) {
        snprintf(j->err, sizeof j->err, "%s", err[0] ? err : loom_status_str(st));
        finish_head(e, st);
    } else if (++j->next == j->n) {
        finish_head(e, LOOM_OK);
    }
}

void loom_engine_embed_abort_all(loom_engine *e) {
    while (e->emb_head) {
        snprintf(e->emb_head->err, sizeof e->emb_head->err, "server stopping");
        finish_head(e, LOOM_ERR_UNAVAILABLE);
    }
}

loom_status loom_engine_embed(loom_engine *e, const int32_t *const *toks, const size_t *lens,
                              size_t n, float *out, char *err, size_t err_n) {
    if (!e || !toks || !lens || !out) return LOOM_ERR_INVALID_ARG;
    if (!n) return LOOM_OK;
    loom_engine_embed_job j = {toks,    lens, n,     0,   out, loom_model_config_of(e->m)->dim,
                               LOOM_OK, "",   false, NULL};
    pthread_mutex_lock(&e->mu);
    if (e->stopping || !e->started) {
        pthread_mutex_unlock(&e->mu);
        snprintf(err, err_n, "server stopping");
        return LOOM_ERR_UNAVAILABLE;
    }
    if (e->emb_tail)
        e->emb_tail->link = &j;
    else
        e->emb_head = &j;
    e->emb_tail = &j;
    pthread_cond_signal(&e->cv); /* an idle engine waits there */
    while (!j.done)
        pthread_cond_wait(&e->emb_cv, &e->mu);
    pthread_mutex_unlock(&e->mu);
    if (j.st != LOOM_OK) snprintf(err, err_n, "%s", j.err);
    return j.st;
}
