/* rag/hnsw.c - Hierarchical Navigable Small World graph (Malkov & Yashunin,
 * 2016), written for loom: the layout and the insertion follow hnswlib
 * (level-0 lists of 2M in one array, the neighbour-selection heuristic,
 * backlinks pruned with the same heuristic, one lock per node while
 * building in parallel), so recall and speed compare with it and FAISS.
 * One rule is FAISS's: a new node keeps up to 2M links of its own at level
 * 0, where hnswlib keeps M (ADR 0026: +0.04 recall@10 at 1M vectors).
 * Levels come from a hash of (seed, id), so they do not depend on the
 * thread count; with one thread the whole graph is deterministic. ADR 0026. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rag/index_impl.h"

#define NONE 0xffffffffu

static inline uint32_t *list_at(const loom_rag_index *ix, uint32_t id, int level) {
    if (level == 0) return ix->l0 + (size_t)id * (1 + ix->M0);
    return ix->upool + ix->uoff[id] + (size_t)(level - 1) * (1 + ix->M);
}
static inline int max_links(const loom_rag_index *ix, int level) {
    return level ? ix->M : ix->M0;
}

static inline uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int loom_rag__hnsw_level_of(uint64_t seed, uint32_t id, int M) {
    /* u in (0, 1]; level = floor(-ln(u) / ln(M)), the paper's mL = 1/ln(M). */
    uint64_t h = splitmix64(seed ^ splitmix64(id));
    double u = ((double)(h >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    int l = (int)(-log(u) / log((double)M));
    return l < LOOM_RAG_MAX_LEVEL - 1 ? l : LOOM_RAG_MAX_LEVEL - 1;
}

static inline void lock_node(loom_rag_index *ix, uint32_t id) {
    for (int spins = 0; atomic_exchange_explicit(&ix->node_lock[id], 1, memory_order_acquire);)
        if (++spins > 64) {
            sched_yield();
            spins = 0;
        }
}
static inline void unlock_node(loom_rag_index *ix, uint32_t id) {
    atomic_store_explicit(&ix->node_lock[id], 0, memory_order_release);
}

/* The list of id at level, copied under its lock while building (other
 * threads rewrite lists then); read in place otherwise. */
static inline const uint32_t *read_list(loom_rag_index *ix, uint32_t id, int level, bool locked,
                                        uint32_t *buf) {
    const uint32_t *l = list_at(ix, id, level);
    if (!locked) return l;
    lock_node(ix, id);
    memcpy(buf, l, (size_t)(1 + l[0]) * 4);
    unlock_node(ix, id);
    return buf;
}

static bool reserve_pairs(void **p, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * sizeof(loom_rag_pair));
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static inline uint16_t next_epoch(loom_rag_scratch *s) {
    if (++s->epoch == 0) {
        memset(s->visited, 0, (size_t)s->visited_n * sizeof(uint16_t));
        s->epoch = 1;
    }
    return s->epoch;
}

/* Greedy descent at one level (ef = 1). */
static uint32_t greedy(loom_rag_index *ix, const float *q, uint32_t ep, float *epd, int level,
                       bool locked, loom_rag_scratch *s) {
    for (bool changed = true; changed;) {
        changed = false;
        const uint32_t *l = read_list(ix, ep, level, locked, s->nbuf);
        const uint32_t cnt = l[0];
        for (uint32_t j = 1; j <= cnt; j++) {
            float d = loom_rag__dist(ix, q, l[j]);
            if (d < *epd) {
                *epd = d;
                ep = l[j];
                changed = true;
            }
        }
    }
    return ep;
}

/* In a large index the rows come from DRAM at random, and a row of 384 f32
 * spans 24 cache lines. Requesting the first lines of every unvisited
 * neighbour of a hop at once lets those misses overlap, and the hardware
 * streamer follows each row from there (hnswlib and FAISS request one line
 * of the next row only). At 1M x 384 (docs/PERF.md), 4 lines beat 1, 2, 6
 * and whole rows fetched ahead. */
#define PREFETCH_LINES 4
static inline void prefetch_head(const loom_rag_index *ix, uint32_t id) {
    const char *p = loom_rag__row(ix, id);
    const size_t n = ix->row_bytes < PREFETCH_LINES * 64 ? ix->row_bytes : PREFETCH_LINES * 64;
    for (size_t o = 0; o < n; o += 64)
        __builtin_prefetch(p + o);
}

/* Best-first search at one level from ep: s->top is left a max-heap of up
 * to ef accepted nodes (*ntop). accept NULL: every node counts (building);
 * otherwise nodes that fail it are walked through but not returned. */
static bool search_layer(loom_rag_index *ix, const float *q, uint32_t ep, float epd, int level,
                         int ef, bool locked, bool filtering, const loom_rag_filter *f,
                         loom_rag_scratch *s, size_t *ntop) {
    const uint16_t tag = next_epoch(s);
    uint16_t *vis = s->visited;
    if (!reserve_pairs(&s->top, &s->top_cap, (size_t)ef + 2) ||
        !reserve_pairs(&s->cand, &s->cand_cap, 1024))
        return false;
    loom_rag_pair *top = s->top, *cand = s->cand;
    size_t nt = 0, nc = 0;
    float bound = INFINITY;
    vis[ep] = tag;
    if (!filtering || loom_rag__pass(ix, ep, f)) {
        loom_rag__maxheap_push(top, &nt, (loom_rag_pair){epd, ep});
        bound = epd;
    }
    loom_rag__minheap_push(cand, &nc, (loom_rag_pair){epd, ep});
    while (nc) {
        loom_rag_pair c = cand[0];
        if (c.d > bound && nt >= (size_t)ef) break;
        loom_rag__minheap_pop(cand, &nc);
        /* The next candidate's list is likely the next one read. */
        if (nc) __builtin_prefetch(list_at(ix, cand[0].id, level));
        const uint32_t *l = read_list(ix, c.id, level, locked, s->nbuf);
        /* The unvisited neighbours first, so their rows load together. */
        uint32_t *fresh = s->fresh, m = 0;
        for (uint32_t j = 1; j <= l[0]; j++) {
            const uint32_t nb = l[j];
            if (vis[nb] == tag) continue;
            vis[nb] = tag;
            fresh[m++] = nb;
            prefetch_head(ix, nb);
        }
        for (uint32_t j = 0; j < m; j++) {
            const uint32_t nb = fresh[j];
            float d = loom_rag__dist(ix, q, nb);
            if (nt < (size_t)ef || d < bound) {
                if (nc + 1 > s->cand_cap) {
                    if (!reserve_pairs(&s->cand, &s->cand_cap, nc + 1)) return false;
                    cand = s->cand;
                }
                loom_rag__minheap_push(cand, &nc, (loom_rag_pair){d, nb});
                if (!filtering || loom_rag__pass(ix, nb, f)) {
                    loom_rag__maxheap_push(top, &nt, (loom_rag_pair){d, nb});
                    if (nt > (size_t)ef) loom_rag__maxheap_pop(top, &nt);
                    bound = top[0].d;
                }
            }
        }
    }
    *ntop = nt;
    return true;
}

/* hnswlib's getNeighborsByHeuristic2: walk candidates nearest first and keep
 * one only if it is nearer to the base than to every one kept, so links
 * spread in different directions. c is sorted ascending; returns the count
 * kept at the front of c. */
static size_t select_heuristic(loom_rag_index *ix, loom_rag_pair *c, size_t n, int m, float *buf) {
    size_t kept = 0;
    for (size_t i = 0; i < n && kept < (size_t)m; i++) {
        const float *cq = loom_rag__as_query(ix, c[i].id, buf);
        bool good = true;
        for (size_t j = 0; j < kept && good; j++)
            if (loom_rag__dist(ix, cq, c[j].id) < c[i].d) good = false;
        if (good) c[kept++] = c[i];
    }
    return kept;
}

typedef struct ins_bufs {
    float *qnew, *qnb, *qc;
    loom_rag_pair *tmp; /* efc + M0 + 1 pairs */
} ins_bufs;

/* Add link cur -> nb's list at level, pruning with the heuristic when full. */
static void add_backlink(loom_rag_index *ix, uint32_t nb, uint32_t cur, int level, bool locked,
                         ins_bufs *b) {
    const int mx = max_links(ix, level);
    if (locked) lock_node(ix, nb);
    uint32_t *l = list_at(ix, nb, level);
    bool present = false;
    for (uint32_t j = 1; j <= l[0]; j++)
        present |= l[j] == cur;
    if (!present) {
        if ((int)l[0] < mx) {
            l[++l[0]] = cur;
        } else {
            const float *nq = loom_rag__as_query(ix, nb, b->qnb);
            size_t n = 0;
            b->tmp[n++] = (loom_rag_pair){loom_rag__dist(ix, nq, cur), cur};
            for (uint32_t j = 1; j <= l[0]; j++)
                b->tmp[n++] = (loom_rag_pair){loom_rag__dist(ix, nq, l[j]), l[j]};
            loom_rag__sort_pairs(b->tmp, n);
            size_t kept = select_heuristic(ix, b->tmp, n, mx, b->qc);
            for (size_t j = 0; j < kept; j++)
                l[1 + j] = b->tmp[j].id;
            l[0] = (uint32_t)kept;
        }
    }
    if (locked) unlock_node(ix, nb);
}

static bool insert_one(loom_rag_index *ix, uint32_t cur, bool locked, loom_rag_scratch *s,
                       ins_bufs *b) {
    const int L = ix->levels[cur];
    pthread_mutex_lock(&ix->entry_lock);
    uint32_t ep = ix->entry;
    int maxl = ix->max_level;
    if (ep == NONE) {
        ix->entry = cur;
        ix->max_level = L;
        pthread_mutex_unlock(&ix->entry_lock);
        return true;
    }
    /* A node that raises the top level keeps the entry lock until it is
     * linked, so no other new top node races it (hnswlib does the same). */
    const bool hold = L > maxl;
    if (!hold) pthread_mutex_unlock(&ix->entry_lock);

    const float *q = loom_rag__as_query(ix, cur, b->qnew);
    float epd = loom_rag__dist(ix, q, ep);
    for (int l = maxl; l > L; l--)
        ep = greedy(ix, q, ep, &epd, l, locked, s);
    bool ok = true;
    for (int l = L < maxl ? L : maxl; l >= 0 && ok; l--) {
        size_t nt = 0;
        ok = search_layer(ix, q, ep, epd, l, ix->efc, locked, false, NULL, s, &nt);
        if (!ok) break;
        memcpy(b->tmp, s->top, nt * sizeof(loom_rag_pair));
        loom_rag__sort_pairs(b->tmp, nt);
        ep = b->tmp[0].id;
        epd = b->tmp[0].d;
        size_t kept = select_heuristic(ix, b->tmp, nt, max_links(ix, l), b->qc);
        if (locked) lock_node(ix, cur);
        uint32_t *mine = list_at(ix, cur, l);
        for (size_t j = 0; j < kept; j++)
            mine[1 + j] = b->tmp[j].id;
        mine[0] = (uint32_t)kept;
        if (locked) unlock_node(ix, cur);
        /* Copy: add_backlink reuses b->tmp. */
        uint32_t sel[2 * LOOM_RAG_MAX_M];
        for (size_t j = 0; j < kept; j++)
            sel[j] = b->tmp[j].id;
        for (size_t j = 0; j < kept; j++)
            add_backlink(ix, sel[j], cur, l, locked, b);
    }
    if (hold) {
        if (L > ix->max_level) {
            ix->entry = cur;
            ix->max_level = L;
        }
        pthread_mutex_unlock(&ix->entry_lock);
    }
    return ok;
}

typedef struct ins_ctx {
    loom_rag_index *ix;
    uint32_t first, end;
    bool locked;
    _Atomic uint32_t next;
    _Atomic int failed;
} ins_ctx;

static void ins_task(void *vctx, int ith, int nth) {
    ins_ctx *c = vctx;
    loom_rag_index *ix = c->ix;
    (void)ith, (void)nth;
    loom_rag_scratch *s = loom_rag__scratch_get(ix);
    const size_t d = (size_t)ix->dim;
    ins_bufs b = {malloc(d * 4), malloc(d * 4), malloc(d * 4),
                  malloc(((size_t)ix->efc + ix->M0 + 2) * sizeof(loom_rag_pair))};
    if (!s || !b.qnew || !b.qnb || !b.qc || !b.tmp) {
        atomic_store(&c->failed, 1);
    } else {
        for (uint32_t id; (id = atomic_fetch_add(&c->next, 1)) < c->end;)
            if (!insert_one(ix, id, c->locked, s, &b)) {
                atomic_store(&c->failed, 1);
                break;
            }
    }
    if (s) loom_rag__scratch_put(ix, s);
    free(b.qnew), free(b.qnb), free(b.qc), free(b.tmp);
}

/* Scratch sized for an older, smaller index is dropped here, under the
 * exclusive lock, so search threads always get visited arrays >= n. */
static void drop_scratch(loom_rag_index *ix) {
    for (loom_rag_scratch *s = ix->free_scratch, *nx; s; s = nx) {
        nx = s->next;
        free(s->visited), free(s->cand), free(s->top), free(s->nbuf), free(s->qbuf), free(s);
    }
    ix->free_scratch = NULL;
}

loom_status loom_rag__hnsw_insert_range(loom_rag_index *ix, uint32_t first, loom_threadpool *pool) {
    const uint32_t n = ix->n;
    /* Levels and upper-list space first, single-threaded, so the parallel
     * part never reallocates anything another thread reads. */
    size_t need = ix->upool_len;
    for (uint32_t i = first; i < n; i++) {
        int L = loom_rag__hnsw_level_of(ix->seed, i, ix->M);
        ix->levels[i] = (uint8_t)L;
        ix->l0[(size_t)i * (1 + ix->M0)] = 0;
        ix->uoff[i] = L ? (uint32_t)need : LOOM_RAG_NO_UPPER;
        need += (size_t)L * (1 + ix->M);
    }
    if (need > 0xfffffff0u)
        return loom_rag__fail(ix, LOOM_ERR_INVALID_ARG, "hnsw: graph too large");
    if (need > ix->upool_cap) {
        size_t cap = ix->upool_cap ? ix->upool_cap : 4096;
        while (cap < need)
            cap *= 2;
        uint32_t *p = realloc(ix->upool, cap * 4);
        if (!p) return loom_rag__fail(ix, LOOM_ERR_OOM, "hnsw: out of memory for the upper levels");
        ix->upool = p;
        ix->upool_cap = cap;
    }
    /* Zeroed, not just the counts: unused slots are written to the file,
     * and a build must give the same bytes every time. */
    if (need > ix->upool_len) memset(ix->upool + ix->upool_len, 0, (need - ix->upool_len) * 4);
    ix->upool_len = need;
    free((void *)ix->node_lock);
    ix->node_lock = calloc(ix->cap ? ix->cap : 1, 1);
    if (!ix->node_lock)
        return loom_rag__fail(ix, LOOM_ERR_OOM, "hnsw: out of memory for node locks");
    drop_scratch(ix);

    int nth = pool ? loom_threadpool_size(pool) : 1;
    ins_ctx c = {.ix = ix, .first = first, .end = n, .locked = nth > 1};
    atomic_init(&c.next, first);
    atomic_init(&c.failed, 0);
    if (nth > 1)
        loom_threadpool_run(pool, ins_task, &c);
    else
        ins_task(&c, 0, 1);
    free((void *)ix->node_lock);
    ix->node_lock = NULL;
    if (atomic_load(&c.failed))
        return loom_rag__fail(ix, LOOM_ERR_OOM, "hnsw: out of memory while linking");
    return LOOM_OK;
}

loom_status loom_rag__hnsw_build(loom_rag_index *ix, const loom_rag_hnsw_params *p,
                                 loom_threadpool *pool) {
    free(ix->levels), free(ix->l0), free(ix->uoff), free(ix->upool);
    ix->levels = NULL, ix->l0 = NULL, ix->uoff = NULL, ix->upool = NULL;
    ix->upool_len = ix->upool_cap = 0;
    ix->has_graph = false;
    ix->M = p->M;
    ix->M0 = 2 * p->M;
    ix->efc = p->ef_construction;
    ix->seed = p->seed;
    ix->entry = NONE;
    ix->max_level = -1;
    size_t cap = ix->cap ? ix->cap : 1;
    ix->levels = calloc(cap, 1);
    ix->l0 = calloc(cap * (size_t)(1 + ix->M0), 4);
    ix->uoff = calloc(cap, 4);
    if (!ix->levels || !ix->l0 || !ix->uoff) {
        free(ix->levels), free(ix->l0), free(ix->uoff);
        ix->levels = NULL, ix->l0 = NULL, ix->uoff = NULL;
        return loom_rag__fail(ix, LOOM_ERR_OOM, "hnsw: out of memory for %u nodes", ix->n);
    }
    ix->has_graph = true;
    return loom_rag__hnsw_insert_range(ix, 0, pool);
}

loom_status loom_rag__hnsw_search(loom_rag_index *ix, const float *q, int k, int ef,
                                  const loom_rag_filter *f, loom_rag_pair *out, int *n_out) {
    *n_out = 0;
    if (ix->entry == NONE) return LOOM_OK;
    loom_rag_scratch *s = loom_rag__scratch_get(ix);
    if (!s) return LOOM_ERR_OOM;
    uint32_t ep = ix->entry;
    float epd = loom_rag__dist(ix, q, ep);
    for (int l = ix->max_level; l > 0; l--)
        ep = greedy(ix, q, ep, &epd, l, false, s);
    const bool filtering = f || ix->n_dead;
    size_t nt = 0;
    bool ok = search_layer(ix, q, ep, epd, 0, ef, false, filtering, f, s, &nt);
    if (ok) {
        loom_rag_pair *top = s->top;
        while (nt > (size_t)k)
            loom_rag__maxheap_pop(top, &nt);
        memcpy(out, top, nt * sizeof *out);
        loom_rag__sort_pairs(out, nt);
        *n_out = (int)nt;
    }
    loom_rag__scratch_put(ix, s);
    return ok ? LOOM_OK : LOOM_ERR_OOM;
}

bool loom_rag__hnsw_check(const loom_rag_index *ix, char *err, size_t err_n) {
#define BAD(...) return (snprintf(err, err_n, __VA_ARGS__), false)
    const uint32_t n = ix->n;
    if (n == 0) {
        if (ix->entry != NONE || ix->max_level != -1) BAD("empty graph with an entry point");
        return true;
    }
    if (ix->entry >= n) BAD("graph entry point %u is not a row (%u rows)", ix->entry, n);
    if (ix->max_level < 0 || ix->max_level >= LOOM_RAG_MAX_LEVEL)
        BAD("graph top level %d is out of range", ix->max_level);
    if (ix->levels[ix->entry] != ix->max_level) BAD("graph entry point is not on the top level");
    for (uint32_t i = 0; i < n; i++) {
        const int L = ix->levels[i];
        if (L > ix->max_level) BAD("node %u has level %d above the top %d", i, L, ix->max_level);
        if (L == 0) {
            if (ix->uoff[i] != LOOM_RAG_NO_UPPER) BAD("level-0 node %u has upper links", i);
        } else if (ix->uoff[i] == LOOM_RAG_NO_UPPER ||
                   (size_t)ix->uoff[i] + (size_t)L * (1 + ix->M) > ix->upool_len) {
            BAD("node %u: upper links outside their section", i);
        }
        for (int l = 0; l <= L; l++) {
            const uint32_t *lst = list_at(ix, i, l);
            if ((int)lst[0] > max_links(ix, l))
                BAD("node %u level %d has %u links (max %d)", i, l, lst[0], max_links(ix, l));
            for (uint32_t j = 1; j <= lst[0]; j++)
                if (lst[j] >= n || ix->levels[lst[j]] < l)
                    BAD("node %u level %d links to %u, which is not a node of that level", i, l,
                        lst[j]);
        }
    }
    return true;
#undef BAD
}
