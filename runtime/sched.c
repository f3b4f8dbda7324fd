/* runtime/sched.c - the graph scheduler: placement, cross-backend copies,
 * memory planning and execution.
 *
 * loom_sched_alloc(s, g):
 *  1. Compute nodes are g's nodes that are neither views nor leaves, in order.
 *     Each goes to its pinned backend (loom_sched_set_node_backend) when it
 *     has one that supports it, else to the first scheduler backend whose
 *     supports() accepts it.
 *     An in-place node (set_rows) runs on the backend holding its destination
 *     storage, or fails with a message when that backend cannot run it: the
 *     write never goes to a copy (docs/adr/0011-kv-cache-in-place-writes.md).
 *  2. Placement of storage (a view's or in-place result's storage is its
 *     view_src): a leaf already
 *     in a buffer stays on that buffer's backend; a leaf with caller host data
 *     (loom_tensor_set_host_data, constants) lives on the "cpu" backend if the
 *     scheduler has one, else in plain host memory that every backend copies
 *     from; any other leaf is allocated on the backend of its first consumer;
 *     a node's output lives on its backend.
 *  3. Splits are runs of consecutive compute nodes on one backend. When a
 *     node reads storage that lives elsewhere, the scheduler makes a copy
 *     tensor on the node's backend (once per storage and backend, shared by
 *     later consumers there), filled at the start of the split holding the
 *     first such consumer; a view source gets a matching view of the copy.
 *  4. Activations (node outputs and copies) are planned per backend by
 *     liveness into one arena (runtime/planner.c); leaves that need storage
 *     go into separate per-backend leaf buffers that are never reused: one,
 *     or several when the backend caps a buffer's size
 *     (loom_backend_max_buffer; leaves packed greedily in tensor order, a
 *     leaf never straddles two). The arena is not split: one above the cap
 *     is still attempted and, when refused, the error says so.
 *     OUTPUT-flagged tensors and graph results (nodes nothing consumes, and
 *     the last node) stay live to the end.
 *  5. buffer/offset/data/backend_id are set on every tensor the graph uses
 *     (backend_id = index in this scheduler's backend list, -1 for plain
 *     host memory). Leaves whose storage a scheduler allocated carry a
 *     private flag, and a later loom_sched_alloc (this scheduler or another)
 *     allocates them afresh: their old buffer may have been freed.
 *
 * Copies and the graph's src pointers: backends read node->src[], so while a
 * split runs, the scheduler temporarily points the affected src slots at the
 * copies and restores them after the split has been synchronized. Outside
 * loom_sched_compute the graph is exactly as the caller built it.
 *
 * Ownership: the scheduler owns every buffer it allocates, the copy tensors
 * and its bookkeeping; loom_sched_free releases them (it never touches the
 * graph, which may already be freed). The backends are borrowed. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loom/runtime.h"
#include "runtime/planner.h"

#define SCHED_MAX_BACKENDS 8
#define SCHED_ALIGN        64
#define SCHED_ERR_MAX      1024
#define LOC_NONE           (-1) /* not placed yet */
#define LOC_HOST           (-2) /* caller host memory with no cpu backend in the list */

#define SCHED_FLAG_OWNED LOOM_FLAG_RUNTIME_OWNED

typedef struct sched_copy {
    loom_tensor *src; /* storage tensor copied from (graph-owned) */
    loom_tensor *dst; /* scheduler-owned tensor on the split's backend */
    int backend;
    int start, end; /* live range of dst in compute-node steps */
} sched_copy;

typedef struct sched_vcopy { /* a view of a copy, standing in for a view source */
    loom_tensor *orig, *dst;
    int backend;
} sched_vcopy;

typedef struct sched_swap { /* node->src[slot] is repl while the node's split runs */
    loom_tensor *node;
    int slot;
    loom_tensor *orig, *repl;
} sched_swap;

typedef struct sched_split {
    int backend;
    int first, n;             /* range of s->nodes */
    int copy_first, n_copies; /* range of s->copies, done before the split */
    int swap_first, n_swaps;  /* range of s->swaps */
} sched_split;

struct loom_sched {
    loom_backend *backends[SCHED_MAX_BACKENDS];
    int n_backends;
    int cpu; /* index of the "cpu" backend, -1 if none */

    /* State of the last successful loom_sched_alloc. */
    const loom_graph *graph;
    loom_tensor **nodes; /* compute nodes in order */
    int *node_gidx;      /* their index in g's node list (for messages) */
    int *node_be;
    int n_nodes;
    sched_split *splits;
    int n_splits;
    sched_copy *copies;
    int n_copies;
    sched_vcopy *vcopies;
    int n_vcopies;
    sched_swap *swaps;
    int n_swaps;
    loom_buffer *arena[SCHED_MAX_BACKENDS];
    /* Leaf buffers per backend and their sizes (n_leaves of each). */
    loom_buffer **leaves[SCHED_MAX_BACKENDS];
    size_t *leaf_sizes[SCHED_MAX_BACKENDS];
    int n_leaves[SCHED_MAX_BACKENDS];
    size_t max_buf[SCHED_MAX_BACKENDS]; /* loom_backend_max_buffer; 0 = no limit */
    void *staging;                      /* for copies between two non-host-visible buffers */
    size_t staging_size;
    loom_sched_stats stats;
    /* Pinned backend per tensor id (-1: none); kept across allocs. */
    int *pin;
    int n_pin;
    /* Host callbacks after nodes (loom_sched_set_node_hook), by tensor id;
     * kept across allocs as pins are. */
    struct sched_hook {
        int id;
        loom_sched_node_hook fn;
        void *ud;
    } *hooks;
    int n_hooks;

    char error[SCHED_ERR_MAX];
};

static loom_status sched_fail(loom_sched *s, loom_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static loom_status sched_fail(loom_sched *s, loom_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof s->error, fmt, ap);
    va_end(ap);
    return st;
}

/* Room for one more element: returns arr or its realloc'd successor, and
 * bumps *cap; on OOM returns arr unchanged, so n < cap stays false. */
static void *grow_to(void *arr, int n, int *cap, size_t elem) {
    if (n < *cap) return arr;
    int nc = *cap ? *cap * 2 : 16;
    void *p = realloc(arr, (size_t)nc * elem);
    if (!p) return arr;
    *cap = nc;
    return p;
}

/* Append val to a growable array; evaluates to false on OOM. */
#define PUSH(arr, n, cap, val)                                                                     \
    ((arr) = grow_to((arr), (n), &(cap), sizeof *(arr)),                                           \
     (n) < (cap) ? ((arr)[(n)++] = (val), true) : false)

/* Views and in-place results (set_rows) use their view_src's storage. */
static loom_tensor *storage_of(loom_tensor *t) {
    return (loom_op_is_view(t->op) || loom_op_is_inplace(t->op)) && t->view_src ? t->view_src : t;
}

static bool is_inplace(const loom_tensor *t) {
    return loom_op_is_inplace(t->op) && t->view_src;
}

static bool is_leaf(const loom_tensor *t) {
    return t->op == LOOM_OP_NONE;
}

static size_t align_up(size_t n) {
    return (n + SCHED_ALIGN - 1) / SCHED_ALIGN * SCHED_ALIGN;
}

static const char *be_name(const loom_sched *s, int b) {
    return b >= 0 ? loom_backend_name(s->backends[b]) : "host";
}

/* Drop everything from the last alloc and free its buffers. */
static void sched_reset(loom_sched *s) {
    for (int i = 0; i < s->n_copies; i++)
        free(s->copies[i].dst);
    for (int i = 0; i < s->n_vcopies; i++)
        free(s->vcopies[i].dst);
    free(s->nodes);
    free(s->node_gidx);
    free(s->node_be);
    free(s->splits);
    free(s->copies);
    free(s->vcopies);
    free(s->swaps);
    free(s->staging);
    for (int b = 0; b < SCHED_MAX_BACKENDS; b++) {
        loom_buffer_free(s->arena[b]);
        for (int i = 0; s->leaves[b] && i < s->n_leaves[b]; i++)
            loom_buffer_free(s->leaves[b][i]);
        free(s->leaves[b]);
        free(s->leaf_sizes[b]);
        s->arena[b] = NULL;
        s->leaves[b] = NULL;
        s->leaf_sizes[b] = NULL;
        s->n_leaves[b] = 0;
    }
    s->graph = NULL;
    s->nodes = NULL;
    s->node_gidx = s->node_be = NULL;
    s->n_nodes = 0;
    s->splits = NULL;
    s->n_splits = 0;
    s->copies = NULL;
    s->n_copies = 0;
    s->vcopies = NULL;
    s->n_vcopies = 0;
    s->swaps = NULL;
    s->n_swaps = 0;
    s->staging = NULL;
    s->staging_size = 0;
    memset(&s->stats, 0, sizeof s->stats);
}

loom_status loom_sched_new(loom_backend *const *backends, int n_backends, loom_sched **out) {
    if (!out) return LOOM_ERR_INVALID_ARG;
    *out = NULL;
    if (!backends || n_backends <= 0 || n_backends > SCHED_MAX_BACKENDS)
        return LOOM_ERR_INVALID_ARG;
    for (int i = 0; i < n_backends; i++)
        if (!backends[i] || !backends[i]->iface || !backends[i]->iface->supports ||
            !backends[i]->iface->compute)
            return LOOM_ERR_INVALID_ARG;
    loom_sched *s = calloc(1, sizeof *s);
    if (!s) return LOOM_ERR_OOM;
    s->n_backends = n_backends;
    s->cpu = -1;
    for (int i = 0; i < n_backends; i++) {
        s->backends[i] = backends[i];
        if (s->cpu < 0 && strcmp(backends[i]->iface->name, "cpu") == 0) s->cpu = i;
        s->max_buf[i] = loom_backend_max_buffer(backends[i]);
    }
    *out = s;
    return LOOM_OK;
}

void loom_sched_free(loom_sched *s) {
    if (!s) return;
    sched_reset(s);
    free(s->pin);
    free(s->hooks);
    free(s);
}

loom_status loom_sched_set_node_hook(loom_sched *s, const loom_tensor *node,
                                     loom_sched_node_hook fn, void *ud) {
    if (!s || !node || node->id < 0 || !fn) return LOOM_ERR_INVALID_ARG;
    for (int i = 0; i < s->n_hooks; i++)
        if (s->hooks[i].id == node->id) {
            s->hooks[i].fn = fn;
            s->hooks[i].ud = ud;
            return LOOM_OK;
        }
    struct sched_hook *h = realloc(s->hooks, (size_t)(s->n_hooks + 1) * sizeof *h);
    if (!h) return LOOM_ERR_OOM;
    s->hooks = h;
    s->hooks[s->n_hooks++] = (struct sched_hook){node->id, fn, ud};
    return LOOM_OK;
}

/* The hook after node t, or NULL (a few per layer: a linear scan). */
static const struct sched_hook *hook_of(const loom_sched *s, const loom_tensor *t) {
    for (int i = 0; i < s->n_hooks; i++)
        if (s->hooks[i].id == t->id) return &s->hooks[i];
    return NULL;
}

loom_status loom_sched_set_node_backend(loom_sched *s, const loom_tensor *node, int b) {
    if (!s || !node || node->id < 0 || b < -1 || b >= s->n_backends) return LOOM_ERR_INVALID_ARG;
    if (node->id >= s->n_pin) {
        int n = s->n_pin ? s->n_pin : 256;
        while (n <= node->id)
            n *= 2;
        int *p = realloc(s->pin, (size_t)n * sizeof *p);
        if (!p) return LOOM_ERR_OOM;
        for (int i = s->n_pin; i < n; i++)
            p[i] = -1;
        s->pin = p;
        s->n_pin = n;
    }
    s->pin[node->id] = b;
    return LOOM_OK;
}

const char *loom_sched_error(const loom_sched *s) {
    return s ? s->error : "scheduler is NULL";
}

void loom_sched_get_stats(const loom_sched *s, loom_sched_stats *out) {
    if (!out) return;
    if (!s) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = s->stats;
}

/* ---------------- allocation ---------------- */

/* Scratch state of one loom_sched_alloc, indexed by tensor id. */
typedef struct alloc_ctx {
    loom_sched *s;
    loom_graph *g;
    int n_t;
    int *loc;       /* backend index of each storage tensor, LOC_* */
    int *last;      /* last step reading the storage (consumers, copies); -1 none */
    char *keep;     /* storage stays live to the end */
    char *leaf_new; /* leaf the scheduler allocates */
} alloc_ctx;

static loom_status check_member(alloc_ctx *a, const loom_tensor *t) {
    if (t->id < 0 || t->id >= a->n_t || loom_graph_tensor(a->g, t->id) != t)
        return sched_fail(a->s, LOOM_ERR_INVALID_ARG, "tensor '%s' is not part of the graph",
                          t->name);
    return LOOM_OK;
}

/* Place a leaf that already has storage; leaves without are left LOC_NONE. */
static loom_status place_existing(alloc_ctx *a, loom_tensor *st) {
    loom_sched *s = a->s;
    LOOM_TRY(check_member(a, st));
    if (!is_leaf(st) || a->loc[st->id] != LOC_NONE) return LOOM_OK;
    if ((st->flags & SCHED_FLAG_OWNED) && st->buffer) {
        /* From an earlier loom_sched_alloc: that buffer may be freed already. */
        st->flags &= ~SCHED_FLAG_OWNED;
        st->buffer = NULL;
        st->data = NULL;
        st->offset = 0;
    }
    if (st->buffer) {
        for (int b = 0; b < s->n_backends; b++) {
            if (st->buffer->backend == s->backends[b]) {
                a->loc[st->id] = b;
                return LOOM_OK;
            }
        }
        return sched_fail(s, LOOM_ERR_INVALID_ARG,
                          "tensor '%s' lives in a buffer of backend '%s', which this scheduler "
                          "does not use",
                          st->name,
                          st->buffer->backend ? loom_backend_name(st->buffer->backend) : "(none)");
    }
    if (st->data) a->loc[st->id] = s->cpu >= 0 ? s->cpu : LOC_HOST;
    return LOOM_OK;
}

static loom_status describe_unsupported(loom_sched *s, int gidx, const loom_tensor *t) {
    char buf[SCHED_ERR_MAX / 2], d[96];
    int k = snprintf(buf, sizeof buf, "%s = %s(", loom_tensor_describe(t, d, sizeof d),
                     loom_op_name(t->op));
    for (int i = 0; i < LOOM_MAX_SRC && k >= 0 && (size_t)k < sizeof buf; i++)
        if (t->src[i])
            k += snprintf(buf + k, sizeof buf - (size_t)k, "%s%s", i ? ", " : "",
                          loom_tensor_describe(t->src[i], d, sizeof d));
    if (k >= 0 && (size_t)k < sizeof buf) snprintf(buf + k, sizeof buf - (size_t)k, ")");
    char tried[128] = "";
    for (int b = 0, w = 0; b < s->n_backends && w >= 0 && (size_t)w < sizeof tried; b++)
        w += snprintf(tried + w, sizeof tried - (size_t)w, "%s%s", b ? ", " : "",
                      loom_backend_name(s->backends[b]));
    return sched_fail(s, LOOM_ERR_UNSUPPORTED,
                      "no backend supports node %d (%s '%s'): %s (tried: %s)", gidx,
                      loom_op_name(t->op), t->name, buf, tried);
}

static void set_storage(loom_tensor *t, loom_buffer *buf, size_t off, int b) {
    t->buffer = buf;
    t->offset = off;
    t->data = buf->host ? (char *)buf->host + off : NULL;
    t->backend_id = b;
}

static void set_view(loom_tensor *v, const loom_tensor *st) {
    v->buffer = st->buffer;
    v->offset = st->offset + v->view_offs;
    v->data = st->data ? (char *)st->data + v->view_offs : NULL;
    v->backend_id = st->backend_id;
}

/* Copy tensor of storage st on backend b, made on first use at step j
 * (whose split starts at split_first). */
static loom_tensor *get_copy(loom_sched *s, loom_tensor *st, int b, int j, int split_first,
                             int *cap) {
    for (int i = 0; i < s->n_copies; i++) {
        if (s->copies[i].src == st && s->copies[i].backend == b) {
            if (s->copies[i].end < j) s->copies[i].end = j;
            return s->copies[i].dst;
        }
    }
    loom_tensor *c = malloc(sizeof *c);
    if (!c) return NULL;
    *c = *st;
    c->op = LOOM_OP_NONE;
    memset(c->src, 0, sizeof c->src);
    c->view_src = NULL;
    c->view_offs = 0;
    c->flags = 0;
    c->id = -1;
    c->grad = NULL;
    c->buffer = NULL;
    c->data = NULL;
    c->offset = 0;
    c->backend_id = b;
    /* 12 = '@', a name of up to 10 characters ("vulkan:1") and the NUL */
    snprintf(c->name, sizeof c->name, "%.*s@%.10s", LOOM_NAME_MAX - 12, st->name,
             loom_backend_name(s->backends[b]));
    sched_copy cp = {st, c, b, split_first, j};
    if (!PUSH(s->copies, s->n_copies, *cap, cp)) {
        free(c);
        return NULL;
    }
    return c;
}

static loom_tensor *get_view_copy(loom_sched *s, loom_tensor *v, loom_tensor *copy, int b,
                                  int *cap) {
    for (int i = 0; i < s->n_vcopies; i++)
        if (s->vcopies[i].orig == v && s->vcopies[i].backend == b) return s->vcopies[i].dst;
    loom_tensor *c = malloc(sizeof *c);
    if (!c) return NULL;
    *c = *v;
    memset(c->src, 0, sizeof c->src);
    c->src[0] = copy;
    c->view_src = copy;
    c->id = -1;
    c->flags = 0;
    c->grad = NULL;
    c->buffer = NULL;
    c->data = NULL;
    sched_vcopy vc = {v, c, b};
    if (!PUSH(s->vcopies, s->n_vcopies, *cap, vc)) {
        free(c);
        return NULL;
    }
    return c;
}

/* Backend of in-place node j: the one holding its destination storage. */
static loom_status place_inplace(alloc_ctx *a, int j, int *out) {
    loom_sched *s = a->s;
    loom_tensor *t = s->nodes[j];
    loom_tensor *st = storage_of(t);
    LOOM_TRY(check_member(a, st));
    int l = a->loc[st->id];
    if (l == LOC_HOST)
        return sched_fail(s, LOOM_ERR_UNSUPPORTED,
                          "node %d (%s '%s') writes in place into '%s', which is caller host "
                          "memory, but this scheduler has no cpu backend to run the write",
                          s->node_gidx[j], loom_op_name(t->op), t->name, st->name);
    if (l >= 0) {
        if (!s->backends[l]->iface->supports(s->backends[l], t))
            return sched_fail(
                s, LOOM_ERR_UNSUPPORTED,
                "node %d (%s '%s') writes in place into '%s', which lives on backend '%s', and "
                "'%s' does not support %s for this node; in-place writes never run on a copy: "
                "put the destination on a backend that supports %s (e.g. cpu)",
                s->node_gidx[j], loom_op_name(t->op), t->name, st->name, be_name(s, l),
                be_name(s, l), loom_op_name(t->op), loom_op_name(t->op));
        *out = l;
        return LOOM_OK;
    }
    int b = 0;
    while (b < s->n_backends && !s->backends[b]->iface->supports(s->backends[b], t))
        b++;
    if (b == s->n_backends) return describe_unsupported(s, s->node_gidx[j], t);
    a->loc[st->id] = b; /* the destination is allocated with the node */
    a->leaf_new[st->id] = 1;
    *out = b;
    return LOOM_OK;
}

/* Steps 1-3: nodes, placement, splits, copies, liveness. */
static loom_status plan_graph(alloc_ctx *a) {
    loom_sched *s = a->s;
    loom_graph *g = a->g;
    int n_g = loom_graph_n_nodes(g);
    int cap_splits = 0, cap_copies = 0, cap_vcopies = 0, cap_swaps = 0;
    size_t n_alloc = (size_t)(n_g ? n_g : 1);
    s->nodes = malloc(n_alloc * sizeof *s->nodes);
    s->node_gidx = malloc(n_alloc * sizeof *s->node_gidx);
    s->node_be = malloc(n_alloc * sizeof *s->node_be);
    if (!s->nodes || !s->node_gidx || !s->node_be)
        return sched_fail(s, LOOM_ERR_OOM, "scheduler: out of memory");
    for (int i = 0; i < n_g; i++) {
        loom_tensor *t = loom_graph_node(g, i);
        LOOM_TRY(check_member(a, t));
        if (is_leaf(t) || loom_op_is_view(t->op)) continue;
        s->nodes[s->n_nodes] = t;
        s->node_gidx[s->n_nodes++] = i;
    }

    /* Leaves that already have storage keep it. */
    for (int i = 0; i < n_g; i++) {
        loom_tensor *t = loom_graph_node(g, i);
        if (loom_op_is_view(t->op)) {
            LOOM_TRY(place_existing(a, storage_of(t)));
            continue;
        }
        for (int k = 0; k < LOOM_MAX_SRC; k++) {
            if (!t->src[k]) continue;
            LOOM_TRY(check_member(a, t->src[k]));
            LOOM_TRY(place_existing(a, storage_of(t->src[k])));
        }
    }

    /* Compute nodes: first backend that supports them. An in-place node
     * (set_rows) writes into its destination's storage, so it runs where that
     * storage lives, or, when the scheduler allocates the destination, on the
     * first backend that supports it (the destination is allocated there). */
    for (int j = 0; j < s->n_nodes; j++) {
        loom_tensor *t = s->nodes[j];
        int b = 0;
        if (is_inplace(t)) {
            LOOM_TRY(place_inplace(a, j, &b));
        } else {
            int want = t->id < s->n_pin ? s->pin[t->id] : -1;
            if (want >= 0 && s->backends[want]->iface->supports(s->backends[want], t)) {
                b = want;
            } else {
                while (b < s->n_backends && !s->backends[b]->iface->supports(s->backends[b], t))
                    b++;
                if (b == s->n_backends) return describe_unsupported(s, s->node_gidx[j], t);
            }
        }
        s->node_be[j] = b;
        a->loc[t->id] = b;
    }

    /* Leaves without storage: on their first consumer's backend; leaves only
     * reached through views that nothing computes with: on the last backend. */
    for (int j = 0; j < s->n_nodes; j++)
        for (int k = 0; k < LOOM_MAX_SRC; k++) {
            loom_tensor *src = s->nodes[j]->src[k];
            if (!src) continue;
            loom_tensor *st = storage_of(src);
            LOOM_TRY(check_member(a, st));
            if (a->loc[st->id] == LOC_NONE) {
                a->loc[st->id] = s->node_be[j];
                a->leaf_new[st->id] = 1;
            }
        }
    for (int i = 0; i < n_g; i++) {
        loom_tensor *st = storage_of(loom_graph_node(g, i));
        if (a->loc[st->id] == LOC_NONE) {
            a->loc[st->id] = s->n_backends - 1;
            a->leaf_new[st->id] = 1;
        }
    }

    /* Splits, copies and the last use of every storage. */
    for (int j = 0; j < s->n_nodes; j++) {
        loom_tensor *t = s->nodes[j];
        int b = s->node_be[j];
        /* a hooked node ends its split: the hook runs between splits */
        if (j == 0 || b != s->node_be[j - 1] || hook_of(s, s->nodes[j - 1])) {
            sched_split sp = {b, j, 0, s->n_copies, 0, s->n_swaps, 0};
            if (!PUSH(s->splits, s->n_splits, cap_splits, sp))
                return sched_fail(s, LOOM_ERR_OOM, "scheduler: out of memory");
        }
        sched_split *sp = &s->splits[s->n_splits - 1];
        sp->n++;
        for (int k = 0; k < LOOM_MAX_SRC; k++) {
            loom_tensor *src = t->src[k];
            if (!src) continue;
            loom_tensor *st = storage_of(src);
            int l = a->loc[st->id];
            if (l == b) {
                if (a->last[st->id] < j) a->last[st->id] = j;
                continue;
            }
            /* Read from another backend: the copy happens at the split's start. */
            if (a->last[st->id] < sp->first) a->last[st->id] = sp->first;
            loom_tensor *c = get_copy(s, st, b, j, sp->first, &cap_copies);
            loom_tensor *repl = c;
            if (c && src != st) repl = get_view_copy(s, src, c, b, &cap_vcopies);
            sched_swap sw = {t, k, src, repl};
            if (!repl || !PUSH(s->swaps, s->n_swaps, cap_swaps, sw))
                return sched_fail(s, LOOM_ERR_OOM, "scheduler: out of memory");
        }
        sp->n_copies = s->n_copies - sp->copy_first;
        sp->n_swaps = s->n_swaps - sp->swap_first;
    }

    /* Results stay live: OUTPUT tensors (or views of them), tensors nothing
     * in the graph consumes, and the last node. */
    char *consumed = calloc((size_t)a->n_t, 1);
    if (!consumed) return sched_fail(s, LOOM_ERR_OOM, "scheduler: out of memory");
    for (int i = 0; i < n_g; i++) {
        loom_tensor *t = loom_graph_node(g, i);
        for (int k = 0; k < LOOM_MAX_SRC; k++)
            if (t->src[k]) consumed[t->src[k]->id] = 1;
        if (t->view_src) consumed[t->view_src->id] = 1;
    }
    for (int i = 0; i < n_g; i++) {
        loom_tensor *t = loom_graph_node(g, i);
        if ((t->flags & LOOM_FLAG_OUTPUT) || !consumed[t->id] || i == n_g - 1)
            a->keep[storage_of(t)->id] = 1;
    }
    free(consumed);
    return LOOM_OK;
}

/* Step 4: offsets per backend. Item i of backend b's arena is either a node
 * output (its tensor) or a copy. */
static loom_status plan_memory(alloc_ctx *a, size_t *arena_off, size_t *copy_off, size_t *leaf_off,
                               int *leaf_buf) {
    loom_sched *s = a->s;
    int n_items = s->n_nodes + s->n_copies;
    loom_plan_item *items = malloc((size_t)(n_items ? n_items : 1) * sizeof *items);
    int *owner = malloc((size_t)(n_items ? n_items : 1) * sizeof *owner);
    if (!items || !owner) {
        free(items);
        free(owner);
        return sched_fail(s, LOOM_ERR_OOM, "scheduler: out of memory");
    }
    loom_status st = LOOM_OK;
    for (int b = 0; b < s->n_backends && st == LOOM_OK; b++) {
        int n = 0;
        size_t naive = 0;
        for (int j = 0; j < s->n_nodes; j++) {
            if (s->node_be[j] != b || is_inplace(s->nodes[j])) continue;
            const loom_tensor *t = s->nodes[j];
            int end = a->last[t->id] > j ? a->last[t->id] : j;
            if (a->keep[t->id]) end = INT_MAX;
            items[n] = (loom_plan_item){loom_tensor_nbytes(t), j, end, 0};
            owner[n++] = j;
            naive += align_up(loom_tensor_nbytes(t));
        }
        for (int c = 0; c < s->n_copies; c++) {
            if (s->copies[c].backend != b) continue;
            const sched_copy *cp = &s->copies[c];
            items[n] = (loom_plan_item){loom_tensor_nbytes(cp->dst), cp->start, cp->end, 0};
            owner[n++] = -1 - c;
            naive += align_up(loom_tensor_nbytes(cp->dst));
        }
        size_t bytes = 0;
        st = loom_plan_offsets(items, n, SCHED_ALIGN, &bytes);
        if (st != LOOM_OK) break;
        for (int i = 0; i < n; i++) {
            if (owner[i] >= 0)
                arena_off[owner[i]] = items[i].offset;
            else
                copy_off[-1 - owner[i]] = items[i].offset;
        }
        s->stats.arena_bytes[b] = bytes;
        s->stats.naive_bytes[b] = naive;
    }
    free(items);
    free(owner);
    if (st != LOOM_OK)
        return sched_fail(s, st, "scheduler: memory planning failed: %s", loom_status_str(st));

    /* Leaves: packed, never reused; a new buffer when the backend's cap
     * would be passed (a leaf above the cap gets a buffer of its own). */
    int cap[SCHED_MAX_BACKENDS] = {0};
    for (int i = 0; i < a->n_t; i++) {
        if (!a->leaf_new[i]) continue;
        int b = a->loc[i];
        size_t n = align_up(loom_tensor_nbytes(loom_graph_tensor(a->g, i)));
        if (!n) n = SCHED_ALIGN; /* even empty leaves get a buffer */
        int k = s->n_leaves[b];
        size_t used = k ? s->leaf_sizes[b][k - 1] : 0;
        const size_t max = s->max_buf[b];
        if (!k || (max && used && (used >= max || n > max - used))) {
            if (!PUSH(s->leaf_sizes[b], s->n_leaves[b], cap[b], (size_t)0))
                return sched_fail(s, LOOM_ERR_OOM, "scheduler: out of memory");
            k++;
            used = 0;
        }
        leaf_buf[i] = k - 1;
        leaf_off[i] = used;
        s->leaf_sizes[b][k - 1] = used + n;
        s->stats.leaf_bytes[b] += n;
    }
    return LOOM_OK;
}

static loom_status alloc_buffer(loom_sched *s, int b, size_t size, const char *what,
                                loom_buffer **out) {
    if (size == 0) return LOOM_OK;
    loom_backend *be = s->backends[b];
    be->error[0] = '\0';
    loom_status st = loom_buffer_alloc(be, size, out);
    if (st != LOOM_OK || !*out) {
        *out = NULL;
        const char *why = be->error[0] ? be->error : loom_status_str(st);
        /* Above the backend's cap: say which buffer and that it cannot be
         * split (the activations arena is planned as one range; a leaf is
         * one tensor), rather than only the driver's refusal. */
        if (s->max_buf[b] && size > s->max_buf[b])
            return sched_fail(s, LOOM_ERR_OOM,
                              "cannot allocate %zu bytes for %s on backend '%s': that is above "
                              "the backend's maximum buffer size (%zu bytes) and %s: %s",
                              size, what, loom_backend_name(be), s->max_buf[b],
                              strcmp(what, "activations") == 0
                                  ? "the scheduler does not split its activations arena (a "
                                    "smaller batch or context needs less)"
                                  : "a single tensor cannot be split across buffers",
                              why);
        return sched_fail(s, LOOM_ERR_OOM, "cannot allocate %zu bytes for %s on backend '%s': %s",
                          size, what, loom_backend_name(be), why);
    }
    return LOOM_OK;
}

/* Step 5: buffers and tensor pointers. */
static loom_status bind_memory(alloc_ctx *a, const size_t *arena_off, const size_t *copy_off,
                               const size_t *leaf_off, const int *leaf_buf) {
    loom_sched *s = a->s;
    for (int b = 0; b < s->n_backends; b++) {
        LOOM_TRY(alloc_buffer(s, b, s->stats.arena_bytes[b], "activations", &s->arena[b]));
        if (!s->n_leaves[b]) continue;
        s->leaves[b] = calloc((size_t)s->n_leaves[b], sizeof *s->leaves[b]);
        if (!s->leaves[b]) return sched_fail(s, LOOM_ERR_OOM, "scheduler: out of memory");
        for (int k = 0; k < s->n_leaves[b]; k++) {
            char what[64];
            if (s->n_leaves[b] == 1)
                snprintf(what, sizeof what, "inputs and weights");
            else
                snprintf(what, sizeof what, "inputs and weights (buffer %d of %d)", k + 1,
                         s->n_leaves[b]);
            LOOM_TRY(alloc_buffer(s, b, s->leaf_sizes[b][k], what, &s->leaves[b][k]));
        }
    }
    for (int j = 0; j < s->n_nodes; j++)
        if (!is_inplace(s->nodes[j]))
            set_storage(s->nodes[j], s->arena[s->node_be[j]], arena_off[j], s->node_be[j]);
    for (int c = 0; c < s->n_copies; c++)
        set_storage(s->copies[c].dst, s->arena[s->copies[c].backend], copy_off[c],
                    s->copies[c].backend);
    for (int i = 0; i < a->n_t; i++) {
        loom_tensor *t = loom_graph_tensor(a->g, i);
        if (a->leaf_new[i]) {
            set_storage(t, s->leaves[a->loc[i]][leaf_buf[i]], leaf_off[i], a->loc[i]);
            t->flags |= SCHED_FLAG_OWNED;
        } else if (is_leaf(t) && a->loc[i] != LOC_NONE)
            t->backend_id = a->loc[i] >= 0 ? a->loc[i] : -1;
    }
    for (int i = 0; i < loom_graph_n_nodes(a->g); i++) {
        loom_tensor *t = loom_graph_node(a->g, i);
        if ((loom_op_is_view(t->op) || is_inplace(t)) && t->view_src) set_view(t, t->view_src);
    }
    for (int i = 0; i < s->n_vcopies; i++)
        set_view(s->vcopies[i].dst, s->vcopies[i].dst->view_src);

    return LOOM_OK;
}

loom_status loom_sched_alloc(loom_sched *s, loom_graph *g) {
    if (!s) return LOOM_ERR_INVALID_ARG;
    s->error[0] = '\0';
    if (!g) return sched_fail(s, LOOM_ERR_INVALID_ARG, "loom_sched_alloc: graph is NULL");
    if (loom_graph_status(g) != LOOM_OK)
        return sched_fail(s, loom_graph_status(g), "graph has an error: %s", loom_graph_error(g));

    alloc_ctx a = {.s = s, .g = g, .n_t = loom_graph_n_tensors(g)};
    sched_reset(s);
    size_t nt = (size_t)(a.n_t ? a.n_t : 1);
    a.loc = malloc(nt * sizeof *a.loc);
    a.last = malloc(nt * sizeof *a.last);
    a.keep = calloc(nt, 1);
    a.leaf_new = calloc(nt, 1);
    size_t *arena_off = NULL, *copy_off = NULL, *leaf_off = NULL;
    int *leaf_buf = NULL;
    loom_status st = LOOM_OK;
    if (!a.loc || !a.last || !a.keep || !a.leaf_new) {
        st = sched_fail(s, LOOM_ERR_OOM, "scheduler: out of memory");
        goto done;
    }
    for (int i = 0; i < a.n_t; i++) {
        a.loc[i] = LOC_NONE;
        a.last[i] = -1;
    }
    st = plan_graph(&a);
    if (st != LOOM_OK) goto done;

    arena_off = calloc((size_t)(s->n_nodes ? s->n_nodes : 1), sizeof *arena_off);
    copy_off = calloc((size_t)(s->n_copies ? s->n_copies : 1), sizeof *copy_off);
    leaf_off = calloc(nt, sizeof *leaf_off);
    leaf_buf = calloc(nt, sizeof *leaf_buf);
    if (!arena_off || !copy_off || !leaf_off || !leaf_buf) {
        st = sched_fail(s, LOOM_ERR_OOM, "scheduler: out of memory");
        goto done;
    }
    st = plan_memory(&a, arena_off, copy_off, leaf_off, leaf_buf);
    if (st == LOOM_OK) st = bind_memory(&a, arena_off, copy_off, leaf_off, leaf_buf);
    if (st == LOOM_OK) {
        s->graph = g;
        s->stats.n_nodes = s->n_nodes;
        s->stats.n_splits = s->n_splits;
        s->stats.n_copies = s->n_copies;
        for (int c = 0; c < s->n_copies; c++) {
            s->stats.n_act_copies += !is_leaf(s->copies[c].src);
            s->stats.copy_bytes += loom_tensor_nbytes(s->copies[c].dst);
        }
    }
done:
    if (st != LOOM_OK) {
        char msg[SCHED_ERR_MAX];
        memcpy(msg, s->error, sizeof msg);
        sched_reset(s);
        memcpy(s->error, msg, sizeof msg);
    }
    free(a.loc);
    free(a.last);
    free(a.keep);
    free(a.leaf_new);
    free(arena_off);
    free(copy_off);
    free(leaf_off);
    free(leaf_buf);
    return st;
}

/* ---------------- execution ---------------- */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static loom_status do_copy(loom_sched *s, const sched_copy *cp) {
    const loom_tensor *src = cp->src;
    loom_tensor *dst = cp->dst;
    size_t n = loom_tensor_nbytes(dst);
    loom_backend *from = src->buffer ? src->buffer->backend : NULL;
    loom_backend *to = dst->buffer->backend;
    loom_backend *failed = NULL;
    loom_status st = LOOM_OK;
    if (src->data && dst->data) {
        memcpy(dst->data, src->data, n);
    } else if (src->data) {
        st = to->iface->buffer_upload(dst->buffer, dst->offset, src->data, n);
        failed = to;
    } else if (dst->data) {
        st = from->iface->buffer_download(src->buffer, src->offset, dst->data, n);
        failed = from;
    } else {
        /* Neither side is host-addressable: bounce through host memory. */
        if (s->staging_size < n) {
            void *p = realloc(s->staging, n);
            if (!p)
                return sched_fail(s, LOOM_ERR_OOM,
                                  "cannot allocate %zu bytes of host staging memory", n);
            s->staging = p;
            s->staging_size = n;
        }
        st = from->iface->buffer_download(src->buffer, src->offset, s->staging, n);
        failed = from;
        if (st == LOOM_OK) {
            st = to->iface->buffer_upload(dst->buffer, dst->offset, s->staging, n);
            failed = to;
        }
    }
    if (st != LOOM_OK)
        return sched_fail(s, st, "copying '%s' (%zu bytes) to backend '%s' failed: %s", src->name,
                          n, be_name(s, cp->backend),
                          failed && failed->error[0] ? failed->error : loom_status_str(st));
    return LOOM_OK;
}

/* Name the node a failed split's message is about: backends write
 * "op <op> node '<name>': ...", so look for a quoted node name. */
static int failed_node(const loom_sched *s, const sched_split *sp, const char *msg) {
    if (sp->n == 1) return sp->first;
    for (int j = sp->first; j < sp->first + sp->n; j++) {
        const char *name = s->nodes[j]->name;
        size_t len = strlen(name);
        if (!len) continue;
        for (const char *p = strchr(msg, '\''); p; p = strchr(p + 1, '\''))
            if (strncmp(p + 1, name, len) == 0 && p[1 + len] == '\'') return j;
    }
    return -1;
}

loom_status loom_sched_compute(loom_sched *s, loom_graph *g) {
    if (!s) return LOOM_ERR_INVALID_ARG;
    s->error[0] = '\0';
    if (!g || g != s->graph)
        return sched_fail(s, LOOM_ERR_INVALID_ARG,
                          "graph was not allocated by this scheduler (call loom_sched_alloc)");
    /* A view copy stands in for a view whose extents may have changed since
     * alloc (loom_view_set_extent, ADR 0011): follow them. */
    for (int i = 0; i < s->n_vcopies; i++) {
        memcpy(s->vcopies[i].dst->ne, s->vcopies[i].orig->ne, sizeof s->vcopies[i].dst->ne);
        memcpy(s->vcopies[i].dst->nb, s->vcopies[i].orig->nb, sizeof s->vcopies[i].dst->nb);
    }
    s->stats.n_computes++;
    for (int i = 0; i < s->n_splits; i++) {
        const sched_split *sp = &s->splits[i];
        loom_backend *be = s->backends[sp->backend];
        if (sp->n_copies) {
            /* Timed for the split's cost (docs/PERF.md): a copy waits for
             * its source's backend, which was synchronised after its split. */
            const double t0 = now_seconds();
            for (int c = sp->copy_first; c < sp->copy_first + sp->n_copies; c++)
                LOOM_TRY(do_copy(s, &s->copies[c]));
            s->stats.copy_seconds += now_seconds() - t0;
        }
        for (int w = sp->swap_first; w < sp->swap_first + sp->n_swaps; w++)
            s->swaps[w].node->src[s->swaps[w].slot] = s->swaps[w].repl;

        be->error[0] = '\0';
        loom_status st = be->iface->compute(be, s->nodes + sp->first, sp->n);
        /* Always drain before restoring src pointers or returning. */
        loom_status st_sync = loom_backend_synchronize(be); /* optional slot */

        for (int w = sp->swap_first + sp->n_swaps - 1; w >= sp->swap_first; w--)
            s->swaps[w].node->src[s->swaps[w].slot] = s->swaps[w].orig;

        if (st != LOOM_OK) {
            const char *msg = be->error[0] ? be->error : loom_status_str(st);
            int j = failed_node(s, sp, msg);
            if (j >= 0)
                return sched_fail(s, st, "compute failed on backend '%s' at node %d (%s '%s'): %s",
                                  loom_backend_name(be), s->node_gidx[j],
                                  loom_op_name(s->nodes[j]->op), s->nodes[j]->name, msg);
            const loom_tensor *t0 = s->nodes[sp->first];
            return sched_fail(
                s, st, "compute failed on backend '%s' in nodes %d..%d (from %s '%s'): %s",
                loom_backend_name(be), s->node_gidx[sp->first], s->node_gidx[sp->first + sp->n - 1],
                loom_op_name(t0->op), t0->name, msg);
        }
        if (st_sync != LOOM_OK)
            return sched_fail(
                s, st_sync, "synchronize failed on backend '%s' after nodes %d..%d: %s",
                loom_backend_name(be), s->node_gidx[sp->first], s->node_gidx[sp->first + sp->n - 1],
                be->error[0] ? be->error : loom_status_str(st_sync));
        loom_tensor *last = s->nodes[sp->first + sp->n - 1];
        const struct sched_hook *h = s->n_hooks ? hook_of(s, last) : NULL;
        const double th = h ? now_seconds() : 0.0;
        if (h) st = h->fn(h->ud, last);
        if (h) {
            s->stats.n_hook_calls++;
            s->stats.hook_seconds += now_seconds() - th;
        }
        if (h && st != LOOM_OK)
            return sched_fail(s, st, "the hook after node %d (%s '%s') failed: %s",
                              s->node_gidx[sp->first + sp->n - 1], loom_op_name(last->op),
                              last->name, loom_status_str(st));
    }
    return LOOM_OK;
}

/* ---------------- tensor I/O ---------------- */

static loom_status check_io(const loom_tensor *t, const void *data, size_t n) {
    if (!t || (!data && n)) return LOOM_ERR_INVALID_ARG;
    if (!loom_tensor_is_contiguous(t) || n != loom_tensor_nbytes(t)) return LOOM_ERR_INVALID_ARG;
    if (!t->buffer && !t->data) return LOOM_ERR_INVALID_ARG; /* not allocated */
    return LOOM_OK;
}

loom_status loom_tensor_upload(loom_tensor *t, const void *data, size_t n) {
    LOOM_TRY(check_io(t, data, n));
    if (t->buffer) return t->buffer->backend->iface->buffer_upload(t->buffer, t->offset, data, n);
    if (n) memcpy(t->data, data, n);
    return LOOM_OK;
}

loom_status loom_tensor_download(const loom_tensor *t, void *data, size_t n) {
    LOOM_TRY(check_io(t, data, n));
    if (t->buffer) return t->buffer->backend->iface->buffer_download(t->buffer, t->offset, data, n);
    if (n) memcpy(data, t->data, n);
    return LOOM_OK;
}
