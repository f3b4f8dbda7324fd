/* serve/ratelimit.c - per-client token buckets (see ratelimit.h). */
#define _POSIX_C_SOURCE 200809L
#include "serve/ratelimit.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define N_ENTRIES 4096 /* power of two */
#define N_PROBE   8

typedef struct {
    uint64_t id; /* 0 = empty */
    double tokens, last;
} bucket;

struct loom_ratelimit {
    pthread_mutex_t mu;
    double rate, burst;
    bucket *b;
};

loom_ratelimit *loom_ratelimit_new(double rate, double burst) {
    if (!(rate > 0) || !(burst >= 1)) return NULL;
    loom_ratelimit *rl = calloc(1, sizeof *rl);
    if (!rl) return NULL;
    rl->b = calloc(N_ENTRIES, sizeof *rl->b);
    if (!rl->b) {
        free(rl);
        return NULL;
    }
    pthread_mutex_init(&rl->mu, NULL);
    rl->rate = rate;
    rl->burst = burst;
    return rl;
}

void loom_ratelimit_free(loom_ratelimit *rl) {
    if (!rl) return;
    pthread_mutex_destroy(&rl->mu);
    free(rl->b);
    free(rl);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h ? h : 1; /* 0 marks an empty entry */
}

double loom_ratelimit_take(loom_ratelimit *rl, const char *id, double now) {
    uint64_t h = fnv1a(id);
    pthread_mutex_lock(&rl->mu);
    bucket *hit = NULL, *victim = NULL;
    for (int k = 0; k < N_PROBE && !hit; k++) {
        bucket *e = &rl->b[(h + (uint64_t)k) & (N_ENTRIES - 1)];
        if (e->id == h)
            hit = e;
        else if (!victim || (victim->id && (!e->id || e->last < victim->last)))
            victim = e;
    }
    if (!hit) {
        hit = victim;
        hit->id = h;
        hit->tokens = rl->burst;
        hit->last = now;
    }
    double t = hit->tokens + (now - hit->last) * rl->rate;
    hit->tokens = t < rl->burst ? t : rl->burst;
    hit->last = now;
    double wait = 0;
    if (hit->tokens >= 1)
        hit->tokens -= 1;
    else
        wait = (1 - hit->tokens) / rl->rate;
    pthread_mutex_unlock(&rl->mu);
    return wait;
}
