/* model/model_common.c - small helpers shared by the model sources (declared
 * in model/model_internal.h): the error convention and the list of heap
 * blocks a GGUF writer references until it writes. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/model_internal.h"

loom_status loom_model_fail(char *err, size_t err_n, loom_status st, const char *fmt, ...) {
    if (err && err_n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_n, fmt, ap);
        va_end(ap);
    }
    return st;
}

bool loom_blobs_keep(loom_blobs *b, void *p) {
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        void **v = realloc(b->v, (size_t)cap * sizeof *v);
        if (!v) return false;
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = p;
    return true;
}

void loom_blobs_free(loom_blobs *b) {
    for (int i = 0; i < b->n; i++)
        free(b->v[i]);
    free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}
