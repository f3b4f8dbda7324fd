/* runtime/planner.c - liveness-based offset assignment for one arena.
 *
 * Items are placed in order of their start step. Before placing an item,
 * every placed item whose live range ended before that step returns its
 * region to a free list (kept sorted by offset, neighbours merged). The new
 * item takes the smallest free block that fits (best fit, lowest offset on
 * ties); if none fits it extends a free block touching the arena's end, or
 * grows the arena. Quadratic in the worst case, which is fine for graphs of a
 * few thousand nodes planned once per shape. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "runtime/planner.h"

typedef struct block {
    size_t off, size;
} block;

typedef struct free_list {
    block *b;
    int n, cap;
} free_list;

/* Return [off, off + size) to the list, merging with its neighbours. */
static loom_status fl_insert(free_list *fl, size_t off, size_t size) {
    int i = 0;
    while (i < fl->n && fl->b[i].off < off)
        i++;
    bool merge_prev = i > 0 && fl->b[i - 1].off + fl->b[i - 1].size == off;
    bool merge_next = i < fl->n && off + size == fl->b[i].off;
    if (merge_prev && merge_next) {
        fl->b[i - 1].size += size + fl->b[i].size;
        for (int k = i; k + 1 < fl->n; k++)
            fl->b[k] = fl->b[k + 1];
        fl->n--;
    } else if (merge_prev) {
        fl->b[i - 1].size += size;
    } else if (merge_next) {
        fl->b[i].off = off;
        fl->b[i].size += size;
    } else {
        if (fl->n == fl->cap) {
            int cap = fl->cap ? fl->cap * 2 : 16;
            block *nb = realloc(fl->b, (size_t)cap * sizeof *nb);
            if (!nb) return LOOM_ERR_OOM;
            fl->b = nb;
            fl->cap = cap;
        }
        for (int k = fl->n; k > i; k--)
            fl->b[k] = fl->b[k - 1];
        fl->b[i] = (block){off, size};
        fl->n++;
    }
    return LOOM_OK;
}

static void fl_remove(free_list *fl, int i) {
    for (int k = i; k + 1 < fl->n; k++)
        fl->b[k] = fl->b[k + 1];
    fl->n--;
}

/* Take size bytes from the free list or the end of the arena. */
static size_t fl_take(free_list *fl, size_t size, size_t *top) {
    int best = -1;
    for (int i = 0; i < fl->n; i++)
        if (fl->b[i].size >= size && (best < 0 || fl->b[i].size < fl->b[best].size)) best = i;
    if (best >= 0) {
        size_t off = fl->b[best].off;
        fl->b[best].off += size;
        fl->b[best].size -= size;
        if (fl->b[best].size == 0) fl_remove(fl, best);
        return off;
    }
    /* A free block at the very end can be grown in place. */
    if (fl->n > 0 && fl->b[fl->n - 1].off + fl->b[fl->n - 1].size == *top) {
        size_t off = fl->b[fl->n - 1].off;
        fl_remove(fl, fl->n - 1);
        *top = off + size;
        return off;
    }
    size_t off = *top;
    *top += size;
    return off;
}

static int cmp_start(const void *a, const void *b, const loom_plan_item *items) {
    int ia = *(const int *)a, ib = *(const int *)b;
    if (items[ia].start != items[ib].start) return items[ia].start < items[ib].start ? -1 : 1;
    return ia < ib ? -1 : ia > ib;
}

/* Insertion sort of indices by (start, index): stable, no global for qsort. */
static void sort_by_start(int *order, int n, const loom_plan_item *items) {
    for (int i = 1; i < n; i++) {
        int v = order[i], j = i;
        while (j > 0 && cmp_start(&order[j - 1], &v, items) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
}

loom_status loom_plan_offsets(loom_plan_item *items, int n, size_t align, size_t *arena_bytes) {
    if (!arena_bytes || n < 0 || (n > 0 && !items) || align == 0 || (align & (align - 1)))
        return LOOM_ERR_INVALID_ARG;
    *arena_bytes = 0;
    if (n == 0) return LOOM_OK;
    int *order = malloc((size_t)n * sizeof *order);
    int *live = malloc((size_t)n * sizeof *live);
    free_list fl = {0};
    loom_status s = LOOM_OK;
    if (!order || !live) {
        s = LOOM_ERR_OOM;
        goto done;
    }
    for (int i = 0; i < n; i++)
        order[i] = i;
    sort_by_start(order, n, items);

    size_t top = 0;
    int n_live = 0;
    for (int k = 0; k < n && s == LOOM_OK; k++) {
        loom_plan_item *it = &items[order[k]];
        /* Release everything that died before this item is born. */
        for (int j = 0; j < n_live && s == LOOM_OK;) {
            const loom_plan_item *d = &items[live[j]];
            if (d->end < it->start) {
                size_t sz = (d->size + align - 1) & ~(align - 1);
                s = fl_insert(&fl, d->offset, sz ? sz : align);
                live[j] = live[--n_live];
            } else {
                j++;
            }
        }
        if (it->size > SIZE_MAX - align) {
            s = LOOM_ERR_INVALID_ARG;
            break;
        }
        size_t sz = (it->size + align - 1) & ~(align - 1);
        it->offset = fl_take(&fl, sz ? sz : align, &top);
        live[n_live++] = order[k];
    }
    *arena_bytes = top;
done:
    free(fl.b);
    free(live);
    free(order);
    return s;
}
