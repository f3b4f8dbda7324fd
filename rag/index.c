/* rag/index.c - the vector index object: rows (f32, f16, int8), metadata,
 * tombstones, and the search entry points (exact in index_exact.c, HNSW in
 * hnsw.c, the file in index_file.c). ADR 0026. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "loom/dtype.h"
#include "loom/hostmem.h"
#include "rag/index_impl.h"

loom_status loom_rag__fail(loom_rag_index *ix, loom_status st, const char *fmt, ...) {
    if (!ix) return st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ix->err, sizeof ix->err, fmt, ap);
    va_end(ap);
    return st;
}

const char *loom_rag_index_error(const loom_rag_index *ix) {
    return ix ? ix->err : "no index";
}

loom_status loom_rag__alloc_common(int dim, loom_rag_vtype vtype, loom_rag_metric metric,
                                   loom_rag_index **out) {
    if (!out) return LOOM_ERR_INVALID_ARG;
    *out = NULL;
    if (dim < 1 || dim > 65536 || (unsigned)vtype > LOOM_RAG_I8 || (unsigned)metric > LOOM_RAG_L2)
        return LOOM_ERR_INVALID_ARG;
    loom_rag_index *ix = calloc(1, sizeof *ix);
    if (!ix) return LOOM_ERR_OOM;
    ix->dim = dim;
    ix->vtype = vtype;
    ix->metric = metric;
    ix->row_bytes = (size_t)dim * (vtype == LOOM_RAG_F32 ? 4 : vtype == LOOM_RAG_F16 ? 2 : 1);
    loom_rag_kernels_select(getenv("LOOM_CPU_ISA"), &ix->kern);
    ix->dist = ix->kern.dist[vtype][metric == LOOM_RAG_L2];
    pthread_rwlock_init(&ix->lock, NULL);
    pthread_mutex_init(&ix->scratch_lock, NULL);
    pthread_mutex_init(&ix->entry_lock, NULL);
    *out = ix;
    return LOOM_OK;
}

loom_status loom_rag_index_new(int dim, loom_rag_vtype vtype, loom_rag_metric metric,
                               loom_rag_index **out) {
    return loom_rag__alloc_common(dim, vtype, metric, out);
}

static void free_arrays(loom_rag_index *ix) {
    if (ix->mapped) {
        if (ix->map_is_mmap && ix->map) munmap(ix->map, ix->map_len);
    } else {
        free(ix->vecs);
        free(ix->scales);
        free(ix->dead);
        free(ix->meta);
        free(ix->pool);
        free(ix->levels);
        free(ix->l0);
        free(ix->uoff);
        free(ix->upool);
    }
    ix->vecs = NULL;
    ix->scales = NULL;
    ix->dead = NULL;
    ix->meta = NULL;
    ix->pool = NULL;
    ix->levels = NULL;
    ix->l0 = NULL;
    ix->uoff = NULL;
    ix->upool = NULL;
    ix->map = NULL;
    ix->mapped = false;
}

void loom_rag_index_free(loom_rag_index *ix) {
    if (!ix) return;
    free_arrays(ix);
    free((void *)ix->node_lock);
    for (loom_rag_scratch *s = ix->free_scratch, *nx; s; s = nx) {
        nx = s->next;
        free(s->visited);
        free(s->cand);
        free(s->top);
        free(s->nbuf);
        free(s->qbuf);
        free(s);
    }
    pthread_rwlock_destroy(&ix->lock);
    pthread_mutex_destroy(&ix->scratch_lock);
    pthread_mutex_destroy(&ix->entry_lock);
    free(ix);
}

int loom_rag_index_dim(const loom_rag_index *ix) {
    return ix->dim;
}
loom_rag_vtype loom_rag_index_vtype(const loom_rag_index *ix) {
    return ix->vtype;
}
loom_rag_metric loom_rag_index_metric(const loom_rag_index *ix) {
    return ix->metric;
}
uint32_t loom_rag_index_count(const loom_rag_index *ix) {
    return ix->n;
}
uint32_t loom_rag_index_live(const loom_rag_index *ix) {
    return ix->n - ix->n_dead;
}
bool loom_rag_index_has_hnsw(const loom_rag_index *ix) {
    return ix->has_graph;
}
const char *loom_rag_index_encoder(const loom_rag_index *ix) {
    return ix->encoder;
}
const char *loom_rag_isa_name(void) {
    loom_rag_kernels k;
    loom_rag_kernels_select(getenv("LOOM_CPU_ISA"), &k);
    return k.isa;
}

bool loom_rag_index_hnsw_params(const loom_rag_index *ix, loom_rag_hnsw_params *p) {
    if (!ix->has_graph) return false;
    p->M = ix->M;
    p->ef_construction = ix->efc;
    p->seed = ix->seed;
    return true;
}

loom_status loom_rag_index_set_encoder(loom_rag_index *ix, const char *name) {
    if (!name || strlen(name) >= sizeof ix->encoder)
        return loom_rag__fail(ix, LOOM_ERR_INVALID_ARG,
                              "encoder name missing or longer than %zu bytes",
                              sizeof ix->encoder - 1);
    pthread_rwlock_wrlock(&ix->lock);
    snprintf(ix->encoder, sizeof ix->encoder, "%s", name);
    pthread_rwlock_unlock(&ix->lock);
    return LOOM_OK;
}

loom_status loom_rag_index_set_text_settings(loom_rag_index *ix, const loom_rag_text_settings *s) {
    if (!s || s->chunk < 1 || s->overlap >= s->chunk || s->encoder_dim != (uint32_t)ix->dim ||
        s->normalize > 1)
        return loom_rag__fail(ix, LOOM_ERR_INVALID_ARG,
                              "bad text settings: chunk %u, overlap %u, encoder dim %u (index "
                              "%d), normalize %u",
                              s ? s->chunk : 0, s ? s->overlap : 0, s ? s->encoder_dim : 0, ix->dim,
                              s ? s->normalize : 0);
    pthread_rwlock_wrlock(&ix->lock);
    ix->text = *s;
    ix->has_text = true;
    pthread_rwlock_unlock(&ix->lock);
    return LOOM_OK;
}

bool loom_rag_index_text_settings(const loom_rag_index *ix, loom_rag_text_settings *out) {
    if (!ix->has_text) return false;
    if (out) *out = ix->text;
    return true;
}

/* Copy a mapped index's arrays to the heap, so they can grow and change. */
static void *dup_or_null(const void *p, size_t n, bool *oom) {
    if (!n) return NULL;
    void *q = malloc(n);
    if (!q) {
        *oom = true;
        return NULL;
    }
    loom_host_advise_huge(q, n); /* before the copy writes it (ADR 0045) */
    memcpy(q, p, n);
    return q;
}

loom_status loom_rag__to_heap(loom_rag_index *ix) {
    if (!ix->mapped) return LOOM_OK;
    bool oom = false;
    size_t n = ix->n;
    uint8_t *vecs = dup_or_null(ix->vecs, n * ix->row_bytes, &oom);
    float *scales = ix->scales ? dup_or_null(ix->scales, n * sizeof(float), &oom) : NULL;
    uint8_t *dead = dup_or_null(ix->dead, n, &oom);
    loom_rag_meta_rec *meta = dup_or_null(ix->meta, n * sizeof *meta, &oom);
    char *pool = dup_or_null(ix->pool, ix->pool_len, &oom);
    uint8_t *levels = NULL;
    uint32_t *l0 = NULL, *uoff = NULL, *upool = NULL;
    if (ix->has_graph) {
        levels = dup_or_null(ix->levels, n, &oom);
        l0 = dup_or_null(ix->l0, n * (size_t)(1 + ix->M0) * 4, &oom);
        uoff = dup_or_null(ix->uoff, n * 4, &oom);
        upool = dup_or_null(ix->upool, ix->upool_len * 4, &oom);
    }
    if (oom) {
        free(vecs), free(scales), free(dead), free(meta), free(pool);
        free(levels), free(l0), free(uoff), free(upool);
        return loom_rag__fail(ix, LOOM_ERR_OOM, "out of memory copying the index to memory");
    }
    if (ix->map_is_mmap) munmap(ix->map, ix->map_len);
    ix->map = NULL;
    ix->mapped = false;
    ix->vecs = vecs, ix->scales = scales, ix->dead = dead, ix->meta = meta, ix->pool = pool;
    ix->levels = levels, ix->l0 = l0, ix->uoff = uoff, ix->upool = upool;
    ix->cap = ix->n;
    ix->pool_cap = ix->pool_len;
    ix->upool_cap = ix->upool_len;
    return LOOM_OK;
}

/* Rows are reached at random by a graph build or search: a large array asks
 * for 2 MiB pages before its new part is first written (ADR 0045). */
static bool grow(void **p, size_t elem, size_t old_cap, size_t new_cap) {
    void *q = realloc(*p, new_cap * elem);
    if (!q) return false;
    loom_host_advise_huge(q, new_cap * elem);
    memset((char *)q + old_cap * elem, 0, (new_cap - old_cap) * elem);
    *p = q;
    return true;
}

/* Room for n more rows in every per-row array. */
static loom_status reserve_rows(loom_rag_index *ix, size_t more) {
    size_t need = (size_t)ix->n + more;
    if (need > 0xfffffff0u)
        return loom_rag__fail(ix, LOOM_ERR_INVALID_ARG,
                              "index full: %zu rows is over the 2^32 id limit", need);
    if (need <= ix->cap) return LOOM_OK;
    size_t cap = ix->cap ? ix->cap : 1024;
    while (cap < need)
        cap += cap / 2;
    if (cap > 0xfffffff0u) cap = 0xfffffff0u;
    bool ok = grow((void **)&ix->vecs, ix->row_bytes, ix->cap, cap) &&
              grow((void **)&ix->dead, 1, ix->cap, cap) &&
              grow((void **)&ix->meta, sizeof(loom_rag_meta_rec), ix->cap, cap) &&
              (ix->vtype != LOOM_RAG_I8 || grow((void **)&ix->scales, 4, ix->cap, cap));
    if (ok && ix->has_graph)
        ok = grow((void **)&ix->levels, 1, ix->cap, cap) &&
             grow((void **)&ix->l0, (size_t)(1 + ix->M0) * 4, ix->cap, cap) &&
             grow((void **)&ix->uoff, 4, ix->cap, cap);
    if (!ok)
        return loom_rag__fail(ix, LOOM_ERR_OOM, "out of memory growing the index to %zu rows", cap);
    ix->cap = (uint32_t)cap;
    return LOOM_OK;
}

/* Append s (may be NULL) to the string pool with its NUL. */
static loom_status pool_add(loom_rag_index *ix, const char *s, uint32_t *off, uint32_t *len) {
    size_t l = s ? strlen(s) : 0;
    if (ix->pool_len + l + 1 > 0xffffffffu)
        return loom_rag__fail(ix, LOOM_ERR_INVALID_ARG, "metadata strings over 4 GiB");
    if (ix->pool_len + l + 1 > ix->pool_cap) {
        size_t cap = ix->pool_cap ? ix->pool_cap : 4096;
        while (cap < ix->pool_len + l + 1)
            cap *= 2;
        char *p = realloc(ix->pool, cap);
        if (!p) return loom_rag__fail(ix, LOOM_ERR_OOM, "out of memory for metadata strings");
        ix->pool = p;
        ix->pool_cap = cap;
    }
    *off = (uint32_t)ix->pool_len;
    *len = (uint32_t)l;
    if (l) memcpy(ix->pool + ix->pool_len, s, l);
    ix->pool[ix->pool_len + l] = '\0';
    ix->pool_len += l + 1;
    return LOOM_OK;
}

/* Store one f32 vector in row id (normalised first for cosine). */
static void put_row(loom_rag_index *ix, uint32_t id, const float *v, float *tmp) {
    const int d = ix->dim;
    if (ix->metric == LOOM_RAG_COSINE) {
        double ss = 0;
        for (int i = 0; i < d; i++)
            ss += (double)v[i] * v[i];
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (int i = 0; i < d; i++)
            tmp[i] = v[i] * inv;
        v = tmp;
    }
    void *row = ix->vecs + (size_t)id * ix->row_bytes;
    if (ix->vtype == LOOM_RAG_F32) {
        memcpy(row, v, (size_t)d * 4);
    } else if (ix->vtype == LOOM_RAG_F16) {
        uint16_t *h = row;
        for (int i = 0; i < d; i++)
            h[i] = loom_f32_to_f16(v[i]);
    } else {
        float amax = 0;
        for (int i = 0; i < d; i++)
            amax = fmaxf(amax, fabsf(v[i]));
        float s = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
        int8_t *q = row;
        for (int i = 0; i < d; i++)
            q[i] = (int8_t)lrintf(v[i] * inv);
        ix->scales[id] = s;
    }
}

const float *loom_rag__as_query(const loom_rag_index *ix, uint32_t id, float *buf) {
    const void *row = loom_rag__row(ix, id);
    if (ix->vtype == LOOM_RAG_F32) return row;
    if (ix->vtype == LOOM_RAG_F16) {
        const uint16_t *h = row;
        for (int i = 0; i < ix->dim; i++)
            buf[i] = loom_f16_to_f32(h[i]);
    } else {
        const int8_t *q = row;
        const float s = ix->scales[id];
        for (int i = 0; i < ix->dim; i++)
            buf[i] = s * q[i];
    }
    return buf;
}

loom_status loom_rag_index_add(loom_rag_index *ix, const float *vecs, size_t n,
                               const loom_rag_meta *meta, loom_threadpool *pool,
                               uint32_t *first_id) {
    if (!ix) return LOOM_ERR_INVALID_ARG;
    if (!vecs && n) return loom_rag__fail(ix, LOOM_ERR_INVALID_ARG, "add: no vectors");
    for (size_t i = 0; i < n * (size_t)ix->dim; i++)
        if (!isfinite(vecs[i]))
            return loom_rag__fail(ix, LOOM_ERR_INVALID_ARG,
                                  "add: vector %zu has a non-finite value at %zu",
                                  i / (size_t)ix->dim, i % (size_t)ix->dim);
    pthread_rwlock_wrlock(&ix->lock);
    loom_status st = loom_rag__to_heap(ix);
    if (st == LOOM_OK) st = reserve_rows(ix, n);
    float *tmp = NULL;
    if (st == LOOM_OK && !(tmp = malloc((size_t)ix->dim * 4)))
        st = loom_rag__fail(ix, LOOM_ERR_OOM, "out of memory");
    const uint32_t first = ix->n;
    size_t pool_len0 = ix->pool_len;
    for (size_t i = 0; st == LOOM_OK && i < n; i++) {
        uint32_t id = first + (uint32_t)i;
        put_row(ix, id, vecs + i * (size_t)ix->dim, tmp);
        loom_rag_meta_rec *r = &ix->meta[id];
        memset(r, 0, sizeof *r);
        ix->dead[id] = 0;
        const loom_rag_meta *m = meta ? &meta[i] : NULL;
        if (m) {
            if (m->byte_end < m->byte_begin) {
                st = loom_rag__fail(
                    ix, LOOM_ERR_INVALID_ARG, "add: vector %zu: byte range end %llu < begin %llu",
                    i, (unsigned long long)m->byte_end, (unsigned long long)m->byte_begin);
                break;
            }
            r->byte_begin = m->byte_begin;
            r->byte_end = m->byte_end;
            r->tag = m->tag;
        }
        if (st == LOOM_OK) st = pool_add(ix, m ? m->source : NULL, &r->src_off, &r->src_len);
        if (st == LOOM_OK) st = pool_add(ix, m ? m->title : NULL, &r->title_off, &r->title_len);
        if (st == LOOM_OK) st = pool_add(ix, m ? m->tag_str : NULL, &r->tstr_off, &r->tstr_len);
    }
    free(tmp);
    if (st != LOOM_OK) {
        ix->pool_len = pool_len0; /* nothing of this call stays */
        pthread_rwlock_unlock(&ix->lock);
        return st;
    }
    ix->n = first + (uint32_t)n;
    if (ix->has_graph && n) {
        st = loom_rag__hnsw_insert_range(ix, first, pool);
        if (st != LOOM_OK) ix->n = first;
    }
    pthread_rwlock_unlock(&ix->lock);
    if (st == LOOM_OK && first_id) *first_id = first;
    return st;
}

loom_status loom_rag_index_delete(loom_rag_index *ix, uint32_t id) {
    pthread_rwlock_wrlock(&ix->lock);
    loom_status st = LOOM_OK;
    if (id >= ix->n)
        st = loom_rag__fail(ix, LOOM_ERR_INVALID_ARG, "delete: id %u is not in the index (%u rows)",
                            id, ix->n);
    else if (ix->dead[id])
        st = loom_rag__fail(ix, LOOM_ERR_INVALID_ARG, "delete: id %u is already deleted", id);
    else if ((st = loom_rag__to_heap(ix)) == LOOM_OK) {
        ix->dead[id] = 1;
        ix->n_dead++;
    }
    pthread_rwlock_unlock(&ix->lock);
    return st;
}

bool loom_rag_index_is_deleted(const loom_rag_index *ix, uint32_t id) {
    return id < ix->n && ix->dead[id];
}

void loom_rag__meta_of(const loom_rag_index *ix, uint32_t id, loom_rag_meta *m) {
    const loom_rag_meta_rec *r = &ix->meta[id];
    m->source = ix->pool ? ix->pool + r->src_off : "";
    m->title = ix->pool ? ix->pool + r->title_off : "";
    m->tag_str = ix->pool ? ix->pool + r->tstr_off : "";
    m->byte_begin = r->byte_begin;
    m->byte_end = r->byte_end;
    m->tag = r->tag;
}

loom_status loom_rag_index_meta(const loom_rag_index *ix, uint32_t id, loom_rag_meta *out) {
    if (!ix || !out || id >= ix->n) return LOOM_ERR_INVALID_ARG;
    loom_rag__meta_of(ix, id, out);
    return LOOM_OK;
}

loom_status loom_rag_index_vector(const loom_rag_index *ix, uint32_t id, float *out) {
    if (!ix || !out || id >= ix->n) return LOOM_ERR_INVALID_ARG;
    const float *v = loom_rag__as_query(ix, id, out);
    if (v != out) memcpy(out, v, (size_t)ix->dim * 4);
    return LOOM_OK;
}

bool loom_rag__pass(const loom_rag_index *ix, uint32_t id, const loom_rag_filter *f) {
    if (ix->dead[id]) return false;
    if (!f) return true;
    const loom_rag_meta_rec *r = &ix->meta[id];
    if (f->use_tag_range && (r->tag < f->tag_min || r->tag > f->tag_max)) return false;
    if (f->tag_str && strcmp(ix->pool + r->tstr_off, f->tag_str)) return false;
    if (f->source && strcmp(ix->pool + r->src_off, f->source)) return false;
    if (f->fn) {
        loom_rag_meta m;
        loom_rag__meta_of(ix, id, &m);
        if (!f->fn(f->ctx, id, &m)) return false;
    }
    return true;
}

loom_rag_scratch *loom_rag__scratch_get(loom_rag_index *ix) {
    pthread_mutex_lock(&ix->scratch_lock);
    loom_rag_scratch *s = ix->free_scratch;
    if (s) ix->free_scratch = s->next;
    pthread_mutex_unlock(&ix->scratch_lock);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        /* One allocation: nbuf, then fresh, each one list long. */
        s->nbuf = malloc((size_t)2 * LOOM_RAG_MAX_LIST * 4);
        s->qbuf = malloc((size_t)ix->dim * 4);
        if (!s->nbuf || !s->qbuf) {
            free(s->nbuf), free(s->qbuf), free(s);
            return NULL;
        }
        s->fresh = s->nbuf + LOOM_RAG_MAX_LIST;
    }
    if (s->visited_n < ix->n) {
        free(s->visited);
        size_t cap = ix->cap > ix->n ? ix->cap : ix->n;
        s->visited = calloc(cap ? cap : 1, sizeof(uint16_t));
        s->visited_n = s->visited ? (uint32_t)cap : 0;
        s->epoch = 0;
        if (!s->visited) {
            free(s->nbuf), free(s->qbuf), free(s->cand), free(s->top), free(s);
            return NULL;
        }
    }
    return s;
}

void loom_rag__scratch_put(loom_rag_index *ix, loom_rag_scratch *s) {
    pthread_mutex_lock(&ix->scratch_lock);
    s->next = ix->free_scratch;
    ix->free_scratch = s;
    pthread_mutex_unlock(&ix->scratch_lock);
}

loom_status loom_rag_index_build_hnsw(loom_rag_index *ix, const loom_rag_hnsw_params *p,
                                      loom_threadpool *pool) {
    if (!ix || !p) return LOOM_ERR_INVALID_ARG;
    if (p->M < 4 || p->M > LOOM_RAG_MAX_M)
        return loom_rag__fail(ix, LOOM_ERR_INVALID_ARG, "hnsw: M %d is out of range (4..%d)", p->M,
                              LOOM_RAG_MAX_M);
    if (p->ef_construction < p->M || p->ef_construction > 100000)
        return loom_rag__fail(ix, LOOM_ERR_INVALID_ARG,
                              "hnsw: efConstruction %d is out of range (M=%d..100000)",
                              p->ef_construction, p->M);
    pthread_rwlock_wrlock(&ix->lock);
    loom_status st = loom_rag__to_heap(ix);
    if (st == LOOM_OK) st = loom_rag__hnsw_build(ix, p, pool);
    pthread_rwlock_unlock(&ix->lock);
    return st;
}

float loom_rag_index_ref_score(const loom_rag_index *ix, uint32_t id, const float *query) {
    loom_rag_kernels k;
    loom_rag_kernels_scalar(&k);
    float *qn = malloc((size_t)ix->dim * 4);
    if (!qn) return NAN;
    memcpy(qn, query, (size_t)ix->dim * 4);
    if (ix->metric == LOOM_RAG_COSINE) {
        double ss = 0;
        for (int i = 0; i < ix->dim; i++)
            ss += (double)qn[i] * qn[i];
        for (int i = 0; i < ix->dim; i++)
            qn[i] = ss > 0 ? (float)(qn[i] / sqrt(ss)) : 0.0f;
    }
    float d = k.dist[ix->vtype][ix->metric == LOOM_RAG_L2](qn, loom_rag__row(ix, id),
                                                           loom_rag__scale(ix, id), ix->dim);
    free(qn);
    return ix->metric == LOOM_RAG_L2 ? d : -d;
}

/* ---- search ---- */

static loom_status check_search(loom_rag_index *ix, const float *q,
                                const loom_rag_search_params *sp) {
    if (!q || !sp) return LOOM_ERR_INVALID_ARG;
    if (sp->k < 1 || sp->k > 100000) return LOOM_ERR_INVALID_ARG;
    if (sp->ef_search < 0 || sp->ef_search > 100000) return LOOM_ERR_INVALID_ARG;
    (void)ix;
    return LOOM_OK;
}

/* One query under the shared lock already held. out has room for k. */
static loom_status search_locked(loom_rag_index *ix, const float *query,
                                 const loom_rag_search_params *sp, loom_threadpool *pool, float *qn,
                                 loom_rag_pair *pairs, loom_rag_hit *hits, int *n_hits) {
    const float *q = query;
    for (int i = 0; i < ix->dim; i++)
        if (!isfinite(query[i])) return LOOM_ERR_INVALID_ARG;
    if (ix->metric == LOOM_RAG_COSINE) {
        double ss = 0;
        for (int i = 0; i < ix->dim; i++)
            ss += (double)query[i] * query[i];
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (int i = 0; i < ix->dim; i++)
            qn[i] = query[i] * inv;
        q = qn;
    }
    int n = 0;
    if (ix->has_graph && !sp->exact && ix->n) {
        int ef = sp->ef_search ? sp->ef_search : 64;
        if (ef < sp->k) ef = sp->k;
        LOOM_TRY(loom_rag__hnsw_search(ix, q, sp->k, ef, sp->filter, pairs, &n));
    } else {
        loom_rag__exact(ix, q, sp->k, sp->filter, pool, pairs, &n);
    }
    const bool l2 = ix->metric == LOOM_RAG_L2;
    for (int i = 0; i < n; i++) {
        hits[i].id = pairs[i].id;
        hits[i].score = l2 ? pairs[i].d : -pairs[i].d;
    }
    *n_hits = n;
    return LOOM_OK;
}

loom_status loom_rag_index_search(loom_rag_index *ix, const float *query,
                                  const loom_rag_search_params *sp, loom_threadpool *pool,
                                  loom_rag_hit *hits, int *n_hits) {
    if (!ix || !hits || !n_hits || check_search(ix, query, sp) != LOOM_OK)
        return LOOM_ERR_INVALID_ARG;
    float *qn = malloc((size_t)ix->dim * 4);
    loom_rag_pair *pairs = malloc((size_t)sp->k * sizeof *pairs);
    loom_status st = LOOM_ERR_OOM;
    if (qn && pairs) {
        pthread_rwlock_rdlock(&ix->lock);
        st = search_locked(ix, query, sp, pool, qn, pairs, hits, n_hits);
        pthread_rwlock_unlock(&ix->lock);
    }
    free(qn);
    free(pairs);
    return st;
}

typedef struct batch_ctx {
    loom_rag_index *ix;
    const float *queries;
    size_t nq;
    const loom_rag_search_params *sp;
    loom_rag_hit *hits;
    int *n_hits;
    _Atomic size_t next;
    _Atomic int status;
} batch_ctx;

static void batch_task(void *vctx, int ith, int nth) {
    batch_ctx *c = vctx;
    (void)ith, (void)nth;
    const int k = c->sp->k, d = c->ix->dim;
    float *qn = malloc((size_t)d * 4);
    loom_rag_pair *pairs = malloc((size_t)k * sizeof *pairs);
    if (!qn || !pairs) {
        atomic_store(&c->status, LOOM_ERR_OOM);
    } else {
        /* Queries are claimed one at a time: HNSW searches vary in cost. */
        for (size_t q; (q = atomic_fetch_add(&c->next, 1)) < c->nq;) {
            loom_status st = search_locked(c->ix, c->queries + q * (size_t)d, c->sp, NULL, qn,
                                           pairs, c->hits + q * (size_t)k, &c->n_hits[q]);
            if (st != LOOM_OK) atomic_store(&c->status, st);
        }
    }
    free(qn);
    free(pairs);
}

/* Batched exact search over f32 rows: tasks take eight queries at a time
 * and stream the rows once for all eight (index_exact.c). */
static void batch8_task(void *vctx, int ith, int nth) {
    batch_ctx *c = vctx;
    (void)ith, (void)nth;
    const int k = c->sp->k, d = c->ix->dim;
    float *qb = malloc((size_t)8 * d * 4);
    loom_rag_pair *heaps = malloc((size_t)8 * k * sizeof *heaps);
    if (!qb || !heaps) {
        atomic_store(&c->status, LOOM_ERR_OOM);
    } else {
        for (size_t q0; (q0 = atomic_fetch_add(&c->next, 8)) < c->nq;) {
            const int nq = c->nq - q0 < 8 ? (int)(c->nq - q0) : 8;
            bool bad = false;
            for (int j = 0; j < 8; j++) {
                const float *src = c->queries + (q0 + (size_t)(j < nq ? j : 0)) * d;
                double ss = 0;
                for (int i = 0; i < d; i++) {
                    bad |= !isfinite(src[i]);
                    ss += (double)src[i] * src[i];
                }
                float s =
                    c->ix->metric == LOOM_RAG_COSINE && ss > 0 ? (float)(1.0 / sqrt(ss)) : 1.0f;
                if (c->ix->metric == LOOM_RAG_COSINE && !(ss > 0)) s = 0.0f;
                for (int i = 0; i < d; i++)
                    qb[(size_t)j * d + i] = src[i] * s;
            }
            if (bad) {
                atomic_store(&c->status, LOOM_ERR_INVALID_ARG);
                continue;
            }
            size_t counts[8];
            loom_rag__exact_block8(c->ix, qb, nq, k, c->sp->filter, heaps, counts);
            const bool l2 = c->ix->metric == LOOM_RAG_L2;
            for (int j = 0; j < nq; j++) {
                loom_rag_hit *h = c->hits + (q0 + j) * (size_t)k;
                for (size_t r = 0; r < counts[j]; r++) {
                    const loom_rag_pair p = heaps[(size_t)j * k + r];
                    h[r].id = p.id;
                    h[r].score = l2 ? p.d : -p.d;
                }
                c->n_hits[q0 + j] = (int)counts[j];
            }
        }
    }
    free(qb);
    free(heaps);
}

loom_status loom_rag_index_search_batch(loom_rag_index *ix, const float *queries, size_t nq,
                                        const loom_rag_search_params *sp, loom_threadpool *pool,
                                        loom_rag_hit *hits, int *n_hits) {
    if (!ix || !hits || !n_hits || check_search(ix, queries, sp) != LOOM_OK)
        return LOOM_ERR_INVALID_ARG;
    batch_ctx c = {
        .ix = ix, .queries = queries, .nq = nq, .sp = sp, .hits = hits, .n_hits = n_hits};
    atomic_init(&c.next, 0);
    atomic_init(&c.status, LOOM_OK);
    pthread_rwlock_rdlock(&ix->lock);
    const bool blocked =
        (sp->exact || !ix->has_graph) && ix->vtype == LOOM_RAG_F32 && ix->kern.dist8[0] && nq > 1;
    loom_task_fn fn = blocked ? batch8_task : batch_task;
    if (pool)
        loom_threadpool_run(pool, fn, &c);
    else
        fn(&c, 0, 1);
    pthread_rwlock_unlock(&ix->lock);
    return (loom_status)atomic_load(&c.status);
}
