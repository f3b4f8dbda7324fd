/* tests/runtime/test_sched.c - scheduler: placement, splits, cross-backend
 * copies, memory planning, errors.
 *
 * A "mock" backend defined here has its own host-visible buffers (tagged, so
 * its compute can check that every tensor it touches lives in a mock buffer)
 * and supports only matmul, add and scale; it is placed before cpu, so the
 * scheduler must split graphs between the two and copy data across. */
#define _POSIX_C_SOURCE 200809L /* setenv */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/backend_sdk.h"
#include "loom/runtime.h"
#include "testing.h"

/* ---------------- the mock backend ---------------- */

#define MOCK_TAG ((void *)0x6d6f636b)

static struct {
    int n_alloc, n_free;
    int fail_at; /* the fail_at-th alloc (1-based) returns OOM; 0 = never */
    int n_compute_calls, n_nodes_run;
    int foreign; /* tensors seen in compute that are not in mock buffers */
} mock;

static loom_status mock_init(loom_backend *be, char *why, size_t why_n) {
    (void)be;
    (void)why;
    (void)why_n;
    return LOOM_OK;
}
static void mock_shutdown(loom_backend *be) {
    (void)be;
}
static void mock_device_info(loom_backend *be, loom_device_info *out) {
    (void)be;
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "mock device");
    snprintf(out->kind, sizeof out->kind, "gpu");
}
static loom_status mock_buffer_alloc(loom_backend *be, size_t size, loom_buffer **out) {
    *out = NULL;
    if (mock.fail_at && mock.n_alloc + 1 >= mock.fail_at)
        return loom_backend_fail(be, LOOM_ERR_OOM, "mock: out of device memory (%zu bytes)", size);
    loom_buffer *b = calloc(1, sizeof *b);
    b->backend = be;
    b->size = size;
    b->host = malloc(size);
    b->handle = MOCK_TAG;
    memset(b->host, 0xcd, size); /* garbage, so reading unwritten data shows */
    mock.n_alloc++;
    *out = b;
    return LOOM_OK;
}
static void mock_buffer_free(loom_buffer *b) {
    if (!b) return;
    mock.n_free++;
    free(b->host);
    free(b);
}
static loom_status mock_upload(loom_buffer *b, size_t off, const void *src, size_t n) {
    if (off > b->size || n > b->size - off)
        return loom_backend_fail(b->backend, LOOM_ERR_INVALID_ARG, "mock: upload out of range");
    memcpy((char *)b->host + off, src, n);
    return LOOM_OK;
}
static loom_status mock_download(loom_buffer *b, size_t off, void *dst, size_t n) {
    if (off > b->size || n > b->size - off)
        return loom_backend_fail(b->backend, LOOM_ERR_INVALID_ARG, "mock: download out of range");
    memcpy(dst, (const char *)b->host + off, n);
    return LOOM_OK;
}
static bool mock_supports(loom_backend *be, const loom_tensor *n) {
    (void)be;
    return n->op == LOOM_OP_MATMUL || n->op == LOOM_OP_ADD || n->op == LOOM_OP_SCALE;
}
static bool in_mock(const loom_backend *be, const loom_tensor *t) {
    const loom_buffer *b = t->buffer;
    if (!b || b->backend != be || b->handle != MOCK_TAG || !t->data) return false;
    return (const char *)t->data >= (const char *)b->host &&
           (const char *)t->data < (const char *)b->host + b->size;
}
static loom_status mock_compute(loom_backend *be, loom_tensor *const *nodes, int n) {
    mock.n_compute_calls++;
    for (int i = 0; i < n; i++) {
        const loom_tensor *t = nodes[i];
        if (!mock_supports(be, t))
            return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED, "op %s node '%s': unsupported",
                                     loom_op_name(t->op), t->name);
        mock.foreign += !in_mock(be, t);
        for (int k = 0; k < LOOM_MAX_SRC; k++)
            if (t->src[k]) mock.foreign += !in_mock(be, t->src[k]);
        char err[256] = "";
        loom_status s = loom_ref_compute(t, 0, 1, err, sizeof err);
        if (s != LOOM_OK)
            return loom_backend_fail(be, s, "op %s node '%s': %s", loom_op_name(t->op), t->name,
                                     err);
        mock.n_nodes_run++;
    }
    return LOOM_OK;
}
static loom_status mock_sync(loom_backend *be) {
    (void)be;
    return LOOM_OK;
}

static const loom_backend_iface k_mock_iface = {
    .abi_version = LOOM_BACKEND_ABI_VERSION,
    .name = "mock",
    .priority = 500,
    .init = mock_init,
    .shutdown = mock_shutdown,
    .device_info = mock_device_info,
    .buffer_alloc = mock_buffer_alloc,
    .buffer_free = mock_buffer_free,
    .buffer_upload = mock_upload,
    .buffer_download = mock_download,
    .supports = mock_supports,
    .compute = mock_compute,
    .synchronize = mock_sync,
};

static loom_backend g_mock = {.iface = &k_mock_iface};
static loom_backend *g_cpu;

/* ---------------- helpers ---------------- */

static uint32_t rng = 12345;
static float frand(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}
static float *rand_vec(size_t n) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = frand();
    return v;
}

static loom_sched *new_sched(bool with_mock) {
    loom_backend *list[2];
    int n = 0;
    if (with_mock) list[n++] = &g_mock;
    list[n++] = g_cpu;
    loom_sched *s = NULL;
    CHECK(loom_sched_new(list, n, &s) == LOOM_OK);
    return s;
}

static float max_diff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) /* NaN counts */
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

/* Non-view nodes the graph computes, in order: for liveness checks. */
static loom_tensor *storage(loom_tensor *t) {
    return t->view_src ? t->view_src : t;
}

/* Every pair of compute outputs sharing an arena buffer must not overlap in
 * memory while both are live (live = from production to last consumer,
 * forever for OUTPUT tensors and results nothing consumes). */
static int count_overlaps(loom_graph *g) {
    int n = loom_graph_n_nodes(g);
    int *start = malloc((size_t)n * sizeof *start), *end = malloc((size_t)n * sizeof *end);
    int *slot = malloc((size_t)loom_graph_n_tensors(g) * sizeof *slot);
    for (int i = 0; i < loom_graph_n_tensors(g); i++)
        slot[i] = -1;
    for (int i = 0; i < n; i++) {
        loom_tensor *t = loom_graph_node(g, i);
        slot[t->id] = i;
        start[i] = end[i] = i;
    }
    bool *consumed = calloc((size_t)n, 1);
    for (int i = 0; i < n; i++) {
        loom_tensor *t = loom_graph_node(g, i);
        for (int k = 0; k < LOOM_MAX_SRC; k++) {
            if (!t->src[k]) continue;
            int j = slot[storage(t->src[k])->id];
            if (j >= 0 && end[j] < i) end[j] = i;
            int d = slot[t->src[k]->id];
            if (d >= 0) consumed[d] = true;
        }
    }
    for (int i = 0; i < n; i++) {
        loom_tensor *t = loom_graph_node(g, i);
        int j = slot[storage(t)->id];
        if ((t->flags & LOOM_FLAG_OUTPUT) || !consumed[i] || i == n - 1) end[j] = n;
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        loom_tensor *a = loom_graph_node(g, i);
        if (a->view_src) continue;
        for (int j = i + 1; j < n; j++) {
            loom_tensor *b = loom_graph_node(g, j);
            if (b->view_src || a->buffer != b->buffer) continue;
            bool live_together = !(end[i] < start[j] || end[j] < start[i]);
            size_t a0 = a->offset, a1 = a0 + loom_tensor_nbytes(a);
            size_t b0 = b->offset, b1 = b0 + loom_tensor_nbytes(b);
            bool mem_overlap = a0 < b1 && b0 < a1;
            if (live_together && mem_overlap) {
                fprintf(stderr,
                        "overlap: '%s' [%zu,%zu) live %d..%d and '%s' [%zu,%zu) live %d..%d\n",
                        a->name, a0, a1, start[i], end[i], b->name, b0, b1, start[j], end[j]);
                bad++;
            }
        }
    }
    free(start);
    free(end);
    free(slot);
    free(consumed);
    return bad;
}

/* ---------------- the mixed graph ---------------- */

enum { K = 16, M = 8, H = 32, N2 = 16 };

typedef struct mixed {
    loom_graph *g;
    loom_tensor *x, *w1, *b, *w2, *h, *n, *a, *s, *sl, *o, *out;
    float *x_d, *w1_d, *b_d, *w2_d; /* w2 is caller host data */
} mixed;

static void mixed_build(mixed *m) {
    rng = 777;
    memset(m, 0, sizeof *m);
    CHECK(loom_graph_new(&m->g) == LOOM_OK);
    loom_graph *g = m->g;
    m->x = loom_tensor_set_name(loom_tensor_2d(g, LOOM_F32, K, M), "x");
    loom_tensor_set_flags(m->x, LOOM_FLAG_INPUT);
    m->w1 = loom_tensor_set_name(loom_tensor_2d(g, LOOM_F32, K, H), "w1");
    m->b = loom_tensor_set_name(loom_tensor_2d(g, LOOM_F32, H, 1), "b");
    m->w2 = loom_tensor_set_name(loom_tensor_2d(g, LOOM_F32, H, N2), "w2");
    m->h = loom_tensor_set_name(loom_matmul(g, m->w1, m->x), "h");           /* mock */
    m->n = loom_tensor_set_name(loom_rms_norm(g, m->h, 1e-5f), "n");         /* cpu */
    m->a = loom_tensor_set_name(loom_add(g, m->n, m->b), "a");               /* mock */
    m->s = loom_tensor_set_name(loom_softmax(g, m->a, 1.0f, false, 0), "s"); /* cpu */
    m->sl = loom_tensor_set_name(loom_slice(g, m->s, 1, 2, 4), "s_rows");    /* view, offset */
    m->o = loom_tensor_set_name(loom_matmul(g, m->w2, m->sl), "o");          /* mock */
    m->out = loom_tensor_set_name(loom_scale(g, m->o, 0.5f), "out");         /* mock */
    loom_tensor_set_flags(m->n, LOOM_FLAG_OUTPUT);
    loom_tensor_set_flags(m->out, LOOM_FLAG_OUTPUT);
    CHECK_MSG(loom_graph_expand(g, m->out) == LOOM_OK, "%s", loom_graph_error(g));
    m->x_d = rand_vec(K * M);
    m->w1_d = rand_vec(K * H);
    m->b_d = rand_vec(H);
    m->w2_d = rand_vec(H * N2);
    CHECK(loom_tensor_set_host_data(m->w2, m->w2_d) == LOOM_OK);
}

static void mixed_upload(mixed *m) {
    CHECK(loom_tensor_upload(m->x, m->x_d, sizeof(float) * K * M) == LOOM_OK);
    CHECK(loom_tensor_upload(m->w1, m->w1_d, sizeof(float) * K * H) == LOOM_OK);
    CHECK(loom_tensor_upload(m->b, m->b_d, sizeof(float) * H) == LOOM_OK);
}

static void mixed_free(mixed *m) {
    loom_graph_free(m->g);
    free(m->x_d);
    free(m->w1_d);
    free(m->b_d);
    free(m->w2_d);
}

/* Run the mixed graph; out gets `out` and `n` results. */
static void mixed_run(bool with_mock, float *out, float *nrm, loom_sched_stats *st) {
    mixed m;
    mixed_build(&m);
    loom_sched *s = new_sched(with_mock);
    loom_status rc = loom_sched_alloc(s, m.g);
    CHECK_MSG(rc == LOOM_OK, "alloc: %s", loom_sched_error(s));
    mixed_upload(&m);
    for (int rep = 0; rep < 2; rep++) { /* a graph runs many times */
        rc = loom_sched_compute(s, m.g);
        CHECK_MSG(rc == LOOM_OK, "compute: %s", loom_sched_error(s));
    }
    CHECK(loom_tensor_download(m.out, out, sizeof(float) * N2 * 4) == LOOM_OK);
    CHECK(loom_tensor_download(m.n, nrm, sizeof(float) * H * M) == LOOM_OK);
    loom_sched_get_stats(s, st);
    CHECK(count_overlaps(m.g) == 0);
    /* The graph is as the caller built it: copies were swapped in only while running. */
    CHECK(m.o->src[0] == m.w2 && m.o->src[1] == m.sl && m.a->src[0] == m.n);
    CHECK(m.w2->data == m.w2_d && m.w2->buffer == NULL); /* caller memory kept */
    if (with_mock) {
        CHECK(m.h->buffer->backend == &g_mock && m.n->buffer->backend == g_cpu);
        CHECK(m.out->buffer->backend == &g_mock);
        CHECK(m.x->buffer->backend == &g_mock); /* leaf on its first consumer's backend */
        CHECK(m.sl->buffer == m.s->buffer && m.sl->offset == m.s->offset + m.sl->view_offs);
        CHECK(m.h->backend_id == 0 && m.n->backend_id == 1);
    }
    loom_sched_free(s);
    mixed_free(&m);
}

static void test_mixed(void) {
    float out_cpu[N2 * 4], out_mix[N2 * 4], n_cpu[H * M], n_mix[H * M];
    loom_sched_stats st_cpu, st_mix;
    mixed_run(false, out_cpu, n_cpu, &st_cpu);
    CHECK(st_cpu.n_nodes == 6 && st_cpu.n_splits == 1 && st_cpu.n_copies == 0);

    memset(&mock, 0, sizeof mock);
    mixed_run(true, out_mix, n_mix, &st_mix);
    /* mock: h | cpu: n | mock: a | cpu: s | mock: o, out */
    CHECK_MSG(st_mix.n_splits == 5, "n_splits %d", st_mix.n_splits);
    /* h->cpu, n->mock, a->cpu, s->mock, and the host weight w2 -> mock */
    CHECK_MSG(st_mix.n_copies == 5, "n_copies %d", st_mix.n_copies);
    CHECK(st_mix.n_nodes == 6);
    CHECK(mock.foreign == 0);
    CHECK(mock.n_compute_calls == 2 * 3 && mock.n_nodes_run == 2 * 4);
    CHECK(mock.n_alloc == mock.n_free);
    CHECK_MSG(max_diff(out_cpu, out_mix, N2 * 4) == 0.0f, "diff %g",
              max_diff(out_cpu, out_mix, N2 * 4));
    CHECK(max_diff(n_cpu, n_mix, H * M) == 0.0f);
    CHECK(st_mix.arena_bytes[0] > 0 && st_mix.arena_bytes[1] > 0);
    CHECK(st_mix.leaf_bytes[0] >= sizeof(float) * (K * M + K * H + H));
    CHECK(st_mix.leaf_bytes[1] == 0); /* w2 is caller memory */
}

/* ---------------- pins (layer split, docs/adr/0030) ---------------- */

/* Four "layers" t = scale(t, c_l) + x, each built in its own tensor-id
 * range, pinned the way llama.c pins a layer split: layers 0-1 on cpu,
 * 2-3 on the mock (which comes first and would take them all). Exactly one
 * activation copy (the boundary), one leaf copy (x, read on both sides), two
 * splits; a pin to a backend without the op falls back; results exact. */
static void test_pins(void) {
    enum { D = 256, NL = 4 };
    loom_graph *g = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK);
    loom_tensor *x = loom_tensor_set_flags(loom_tensor_1d(g, LOOM_F32, D), LOOM_FLAG_INPUT);
    loom_tensor *t = x;
    int seg[NL + 1];
    for (int l = 0; l < NL; l++) {
        seg[l] = loom_graph_n_tensors(g);
        t = loom_add(g, loom_scale(g, t, 0.5f + (float)l), x);
    }
    seg[NL] = loom_graph_n_tensors(g);
    loom_tensor *tail = loom_silu(g, t); /* only cpu has silu */
    CHECK(loom_graph_expand(g, tail) == LOOM_OK);
    loom_sched *s = new_sched(true); /* mock = 0, cpu = 1 */
    loom_sched_stats st;
    /* Unpinned: the four layers on the mock, silu on cpu. */
    CHECK_MSG(loom_sched_alloc(s, g) == LOOM_OK, "%s", loom_sched_error(s));
    loom_sched_get_stats(s, &st);
    CHECK_MSG(st.n_splits == 2 && st.n_act_copies == 1, "unpinned: %d splits, %d act copies",
              st.n_splits, st.n_act_copies);
    for (int i = 0; i < loom_graph_n_nodes(g); i++) {
        loom_tensor *n = loom_graph_node(g, i);
        if (n->op == LOOM_OP_NONE) continue;
        int l = 0;
        while (l < NL && n->id >= seg[l + 1])
            l++;
        CHECK(loom_sched_set_node_backend(s, n, l < 2 ? 1 : 0) == LOOM_OK);
    }
    CHECK(loom_sched_set_node_backend(s, tail, 0) == LOOM_OK); /* mock lacks silu: falls back */
    CHECK(loom_sched_set_node_backend(s, tail, 2) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_sched_set_node_backend(NULL, tail, 0) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_sched_set_node_backend(s, NULL, 0) == LOOM_ERR_INVALID_ARG);
    CHECK_MSG(loom_sched_alloc(s, g) == LOOM_OK, "%s", loom_sched_error(s));
    loom_sched_get_stats(s, &st);
    /* cpu: layers 0-1 | mock: layers 2-3 | cpu: silu */
    CHECK_MSG(st.n_splits == 3, "pinned: %d splits", st.n_splits);
    CHECK_MSG(st.n_act_copies == 2 && st.n_copies == 3, "pinned: %d act copies, %d in all",
              st.n_act_copies, st.n_copies);
    CHECK(st.copy_bytes == 3 * D * sizeof(float) && st.n_computes == 0);
    float *xd = rand_vec(D), *y = malloc(D * sizeof *y);
    CHECK(loom_tensor_upload(x, xd, D * 4) == LOOM_OK);
    for (int r = 0; r < 2; r++)
        CHECK_MSG(loom_sched_compute(s, g) == LOOM_OK, "%s", loom_sched_error(s));
    loom_sched_get_stats(s, &st);
    CHECK(st.n_computes == 2 && st.copy_seconds >= 0);
    CHECK(loom_tensor_download(tail, y, D * 4) == LOOM_OK);
    int bad = 0;
    for (int k = 0; k < D; k++) {
        float v = xd[k];
        for (int l = 0; l < NL; l++)
            v = v * (0.5f + (float)l) + xd[k];
        v = v / (1.0f + expf(-v));
        bad += fabsf(v - y[k]) > 1e-5f * fabsf(v) + 1e-6f;
    }
    CHECK(bad == 0);
    /* A pin removed: back to the mock. */
    for (int i = 0; i < loom_graph_n_nodes(g); i++)
        CHECK(loom_sched_set_node_backend(s, loom_graph_node(g, i), -1) == LOOM_OK);
    CHECK(loom_sched_alloc(s, g) == LOOM_OK);
    loom_sched_get_stats(s, &st);
    CHECK(st.n_splits == 2 && st.n_act_copies == 1);
    free(xd);
    free(y);
    loom_sched_free(s);
    loom_graph_free(g);
}

/* ---------------- planner ---------------- */

static void test_chain(void) {
    enum { L = 64, D = 1024 };
    loom_graph *g = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK);
    loom_tensor *x = loom_tensor_1d(g, LOOM_F32, D), *t = x;
    for (int i = 0; i < L; i++)
        t = loom_tensor_set_name(loom_scale(g, t, 1.0f + (float)i / 64), "c%d", i);
    CHECK(loom_graph_expand(g, t) == LOOM_OK);
    loom_sched *s = new_sched(false);
    CHECK_MSG(loom_sched_alloc(s, g) == LOOM_OK, "%s", loom_sched_error(s));
    loom_sched_stats st;
    loom_sched_get_stats(s, &st);
    CHECK(st.naive_bytes[0] == (size_t)L * D * 4);
    /* A chain needs two live buffers at a time (plus alignment). */
    CHECK_MSG(st.arena_bytes[0] <= 2 * D * 4, "arena %zu", st.arena_bytes[0]);
    CHECK(st.leaf_bytes[0] == D * 4);
    CHECK(count_overlaps(g) == 0);
    float *xd = rand_vec(D), *y = malloc(D * sizeof *y);
    CHECK(loom_tensor_upload(x, xd, D * 4) == LOOM_OK);
    CHECK_MSG(loom_sched_compute(s, g) == LOOM_OK, "%s", loom_sched_error(s));
    CHECK(loom_tensor_download(t, y, D * 4) == LOOM_OK);
    int bad = 0;
    for (int k = 0; k < D; k++) {
        float v = xd[k];
        for (int i = 0; i < L; i++)
            v *= 1.0f + (float)i / 64;
        bad += fabsf(v - y[k]) > 1e-4f * fabsf(v) + 1e-6f;
    }
    CHECK(bad == 0);
    free(xd);
    free(y);
    loom_sched_free(s);
    loom_graph_free(g);
}

/* loom_sched_set_node_hook: a hooked node ends its split, its hook sees
 * the node's result and what it writes is what the consumers read (tensor
 * parallelism's all-reduce, docs/adr/0034); a failing hook fails the
 * compute, naming the node. */
static int hook_calls;
static loom_status add_one(void *ud, loom_tensor *t) {
    float v[64];
    hook_calls++;
    LOOM_TRY(loom_tensor_download(t, v, sizeof v));
    for (int i = 0; i < 64; i++)
        v[i] += *(const float *)ud;
    return loom_tensor_upload(t, v, sizeof v);
}
static loom_status fail_hook(void *ud, loom_tensor *t) {
    (void)ud;
    (void)t;
    return LOOM_ERR_DEVICE;
}

static void test_hooks(void) {
    loom_graph *g = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK);
    loom_tensor *x = loom_tensor_1d(g, LOOM_F32, 64);
    loom_tensor *a = loom_tensor_set_name(loom_scale(g, x, 2.0f), "a");
    loom_tensor *b = loom_tensor_set_name(loom_scale(g, a, 3.0f), "b");
    loom_tensor *c = loom_scale(g, b, 0.5f);
    CHECK(loom_graph_expand(g, c) == LOOM_OK);
    loom_sched *s = new_sched(false);
    const float one = 1.0f, zero = 0.0f;
    CHECK(loom_sched_set_node_hook(s, a, add_one, (void *)&one) == LOOM_OK);
    CHECK(loom_sched_set_node_hook(s, b, add_one, (void *)&one) == LOOM_OK);
    CHECK(loom_sched_set_node_hook(s, b, add_one, (void *)&zero) == LOOM_OK); /* replaces */
    CHECK(loom_sched_set_node_hook(s, b, NULL, NULL) == LOOM_ERR_INVALID_ARG);
    CHECK_MSG(loom_sched_alloc(s, g) == LOOM_OK, "%s", loom_sched_error(s));
    loom_sched_stats st;
    loom_sched_get_stats(s, &st);
    CHECK_MSG(st.n_splits == 3, "splits %d", st.n_splits); /* a | b | c */
    float xd[64], y[64];
    for (int i = 0; i < 64; i++)
        xd[i] = (float)i - 20.0f;
    CHECK(loom_tensor_upload(x, xd, sizeof xd) == LOOM_OK);
    hook_calls = 0;
    for (int run = 0; run < 2; run++)
        CHECK_MSG(loom_sched_compute(s, g) == LOOM_OK, "%s", loom_sched_error(s));
    CHECK(loom_tensor_download(c, y, sizeof y) == LOOM_OK);
    int bad = 0;
    for (int i = 0; i < 64; i++)
        bad += y[i] != (2.0f * xd[i] + 1.0f) * 3.0f * 0.5f;
    CHECK_MSG(bad == 0, "%d wrong (y[0] %g)", bad, (double)y[0]);
    CHECK(hook_calls == 4);
    loom_sched_get_stats(s, &st);
    CHECK(st.n_hook_calls == 4 && st.hook_seconds >= 0.0);
    CHECK(loom_sched_set_node_hook(s, b, fail_hook, NULL) == LOOM_OK);
    CHECK(loom_sched_compute(s, g) == LOOM_ERR_DEVICE);
    CHECK_MSG(strstr(loom_sched_error(s), "hook") && strstr(loom_sched_error(s), "'b'"), "%s",
              loom_sched_error(s));
    loom_sched_free(s);
    loom_graph_free(g);
}

/* A random DAG of add/scale/silu over vectors: results against a plain host
 * evaluation, and no live tensors overlapping. With the mock in front, add
 * and scale run there and silu on cpu, so the graph is split many times. */
static void test_dag(bool with_mock, uint32_t seed) {
    enum { NN = 120, D = 256 };
    rng = seed;
    loom_graph *g = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK);
    loom_tensor *t[NN];
    float *val[NN];
    int kind[NN], ia[NN], ib[NN];
    t[0] = loom_tensor_set_name(loom_tensor_1d(g, LOOM_F32, D), "in0");
    t[1] = loom_tensor_set_name(loom_tensor_1d(g, LOOM_F32, D), "in1");
    val[0] = rand_vec(D);
    val[1] = rand_vec(D);
    for (int i = 2; i < NN; i++) {
        rng = rng * 1664525u + 1013904223u;
        /* Mostly recent operands, sometimes far back: long and short lives. */
        int back_a = (rng >> 10) % 4 == 0 ? (int)((rng >> 12) % (uint32_t)i) + 1 : 1;
        int back_b = (int)((rng >> 16) % 3) + 1;
        ia[i] = i - back_a;
        ib[i] = i - (back_b <= i ? back_b : i);
        kind[i] = (int)((rng >> 20) % 3);
        if (i == 2) { /* both inputs used */
            ia[i] = 0;
            ib[i] = 1;
            kind[i] = 0;
        }
        if (kind[i] == 0)
            t[i] = loom_add(g, t[ia[i]], t[ib[i]]);
        else if (kind[i] == 1)
            t[i] = loom_scale(g, t[ia[i]], 0.5f);
        else
            t[i] = loom_silu(g, t[ia[i]]);
        loom_tensor_set_name(t[i], "n%d", i);
        if ((rng >> 24) % 17 == 0) loom_tensor_set_flags(t[i], LOOM_FLAG_OUTPUT);
        val[i] = malloc(D * sizeof(float));
        for (int k = 0; k < D; k++) {
            float a = val[ia[i]][k], b = val[ib[i]][k];
            val[i][k] = kind[i] == 0 ? a + b : kind[i] == 1 ? a * 0.5f : a / (1.0f + expf(-a));
        }
    }
    CHECK(loom_graph_expand(g, t[NN - 1]) == LOOM_OK);
    for (int i = 2; i < NN; i++) /* keep every node: expand the dead ones too */
        CHECK(loom_graph_expand(g, t[i]) == LOOM_OK);
    loom_sched *s = new_sched(with_mock);
    CHECK_MSG(loom_sched_alloc(s, g) == LOOM_OK, "%s", loom_sched_error(s));
    CHECK(loom_tensor_upload(t[0], val[0], D * 4) == LOOM_OK);
    CHECK(loom_tensor_upload(t[1], val[1], D * 4) == LOOM_OK);
    CHECK_MSG(loom_sched_compute(s, g) == LOOM_OK, "%s", loom_sched_error(s));
    CHECK(count_overlaps(g) == 0);
    loom_sched_stats st;
    loom_sched_get_stats(s, &st);
    for (int b = 0; b < (with_mock ? 2 : 1); b++)
        CHECK_MSG(st.arena_bytes[b] < st.naive_bytes[b], "arena %zu naive %zu", st.arena_bytes[b],
                  st.naive_bytes[b]);
    /* Results that must survive: OUTPUT tensors and the last node. */
    float *y = malloc(D * sizeof *y);
    int bad = 0;
    for (int i = 2; i < NN; i++) {
        if (!(t[i]->flags & LOOM_FLAG_OUTPUT) && i != NN - 1) continue;
        CHECK(loom_tensor_download(t[i], y, D * 4) == LOOM_OK);
        for (int k = 0; k < D; k++)
            bad += !(fabsf(y[k] - val[i][k]) <= 1e-5f * fmaxf(1.0f, fabsf(val[i][k])));
    }
    CHECK_MSG(bad == 0, "seed %u: %d output values differ", seed, bad);
    free(y);
    for (int i = 0; i < NN; i++)
        free(val[i]);
    loom_sched_free(s);
    loom_graph_free(g);
}

/* ---------------- errors ---------------- */

static void test_unsupported(void) {
    mixed m;
    mixed_build(&m);
    loom_backend *only_mock[1] = {&g_mock};
    loom_sched *s = NULL;
    CHECK(loom_sched_new(only_mock, 1, &s) == LOOM_OK);
    loom_status rc = loom_sched_alloc(s, m.g);
    CHECK(rc == LOOM_ERR_UNSUPPORTED);
    const char *e = loom_sched_error(s);
    CHECK_MSG(strstr(e, "no backend supports") && strstr(e, "rms_norm") && strstr(e, "'n'") &&
                  strstr(e, "f32[32,8,1,1]") && strstr(e, "mock"),
              "got '%s'", e);
    CHECK(loom_sched_compute(s, m.g) == LOOM_ERR_INVALID_ARG); /* not allocated */
    loom_sched_free(s);
    mixed_free(&m);
}

static void test_oom(void) {
    for (int fail_at = 1; fail_at <= 2; fail_at++) {
        memset(&mock, 0, sizeof mock);
        mock.fail_at = fail_at; /* 1: the activation arena, 2: the leaf buffer */
        mixed m;
        mixed_build(&m);
        loom_sched *s = new_sched(true);
        loom_status rc = loom_sched_alloc(s, m.g);
        CHECK(rc == LOOM_ERR_OOM);
        const char *e = loom_sched_error(s);
        CHECK_MSG(strstr(e, "cannot allocate") && strstr(e, "bytes") && strstr(e, "'mock'") &&
                      strstr(e, "out of device memory"),
                  "got '%s'", e);
        CHECK(mock.n_alloc == mock.n_free); /* nothing left behind */
        /* The scheduler is still usable once memory is back. */
        mock.fail_at = 0;
        CHECK_MSG(loom_sched_alloc(s, m.g) == LOOM_OK, "%s", loom_sched_error(s));
        mixed_upload(&m);
        CHECK_MSG(loom_sched_compute(s, m.g) == LOOM_OK, "%s", loom_sched_error(s));
        loom_sched_free(s);
        CHECK(mock.n_alloc == mock.n_free);
        mixed_free(&m);
    }
    memset(&mock, 0, sizeof mock);
}

static void test_compute_error(void) {
    loom_graph *g = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK);
    loom_tensor *table = loom_tensor_2d(g, LOOM_F32, 4, 10);
    loom_tensor *ids = loom_tensor_1d(g, LOOM_I32, 3);
    loom_tensor *x = loom_tensor_set_name(loom_scale(g, table, 2.0f), "pre");
    loom_tensor *r = loom_tensor_set_name(loom_get_rows(g, x, ids), "emb");
    loom_tensor *y = loom_tensor_set_name(loom_silu(g, r), "post");
    CHECK(loom_graph_expand(g, y) == LOOM_OK);
    loom_sched *s = new_sched(false);
    CHECK(loom_sched_alloc(s, g) == LOOM_OK);
    float tab[40] = {0};
    int32_t bad_ids[3] = {1, 99, 2};
    CHECK(loom_tensor_upload(table, tab, sizeof tab) == LOOM_OK);
    CHECK(loom_tensor_upload(ids, bad_ids, sizeof bad_ids) == LOOM_OK);
    loom_status rc = loom_sched_compute(s, g);
    CHECK(rc == LOOM_ERR_INVALID_ARG);
    const char *e = loom_sched_error(s);
    CHECK_MSG(strstr(e, "compute failed on backend 'cpu' at node 1 (get_rows 'emb')"), "got '%s'",
              e);
    /* Wrong sizes and unallocated tensors are rejected by upload/download. */
    CHECK(loom_tensor_upload(ids, bad_ids, 4) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_tensor_download(y, tab, 4) == LOOM_ERR_INVALID_ARG);
    loom_tensor *loose = loom_tensor_1d(g, LOOM_F32, 4);
    CHECK(loom_tensor_upload(loose, tab, 16) == LOOM_ERR_INVALID_ARG);
    loom_sched_free(s);
    loom_graph_free(g);
}

/* A leaf the caller placed in a cpu buffer stays there; the mock gets a copy. */
static void test_preplaced_and_realloc(void) {
    memset(&mock, 0, sizeof mock);
    loom_graph *g = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK);
    loom_tensor *w = loom_tensor_set_name(loom_tensor_2d(g, LOOM_F32, 8, 4), "w");
    loom_tensor *x = loom_tensor_set_name(loom_tensor_2d(g, LOOM_F32, 8, 2), "x");
    loom_tensor *y = loom_tensor_set_name(loom_matmul(g, w, x), "y");
    loom_tensor *z = loom_tensor_set_name(loom_silu(g, y), "z");
    CHECK(loom_graph_expand(g, z) == LOOM_OK);
    loom_buffer *wb = NULL;
    CHECK(loom_buffer_alloc(g_cpu, loom_tensor_nbytes(w) + 64, &wb) == LOOM_OK);
    w->buffer = wb;
    w->offset = 64;
    w->data = (char *)wb->host + 64;
    float wd[32], xd[16], z1[8], z2[8];
    for (int i = 0; i < 32; i++)
        wd[i] = (float)(i % 7) - 3;
    for (int i = 0; i < 16; i++)
        xd[i] = (float)(i % 5) * 0.25f;
    CHECK(loom_tensor_upload(w, wd, sizeof wd) == LOOM_OK);

    loom_sched *s = new_sched(true);
    for (int round = 0; round < 2; round++) { /* re-alloc of the same graph */
        CHECK_MSG(loom_sched_alloc(s, g) == LOOM_OK, "%s", loom_sched_error(s));
        CHECK(w->buffer == wb && w->offset == 64);
        CHECK(x->buffer && x->buffer->backend == &g_mock);
        loom_sched_stats st;
        loom_sched_get_stats(s, &st);
        CHECK(st.n_copies == 2 && st.n_splits == 2); /* w -> mock, y -> cpu */
        CHECK(loom_tensor_upload(x, xd, sizeof xd) == LOOM_OK);
        CHECK_MSG(loom_sched_compute(s, g) == LOOM_OK, "%s", loom_sched_error(s));
        CHECK(loom_tensor_download(z, round ? z2 : z1, sizeof z1) == LOOM_OK);
    }
    CHECK(memcmp(z1, z2, sizeof z1) == 0);
    CHECK(mock.foreign == 0);
    float want = 0; /* z[0] = silu(sum_k w[k,0] x[k,0]) */
    for (int k = 0; k < 8; k++)
        want += wd[k] * xd[k];
    want = want / (1.0f + expf(-want));
    CHECK(fabsf(z1[0] - want) < 1e-5f);

    /* Another graph on the same scheduler, then this one again: the leaves
     * it allocated before are allocated afresh. */
    loom_graph *g2 = NULL;
    CHECK(loom_graph_new(&g2) == LOOM_OK);
    loom_tensor *q = loom_tensor_1d(g2, LOOM_F32, 16);
    CHECK(loom_graph_expand(g2, loom_scale(g2, q, 2.0f)) == LOOM_OK);
    CHECK(loom_sched_alloc(s, g2) == LOOM_OK);
    CHECK(loom_sched_compute(s, g) == LOOM_ERR_INVALID_ARG); /* g is no longer allocated */
    CHECK_MSG(loom_sched_alloc(s, g) == LOOM_OK, "%s", loom_sched_error(s));
    CHECK(loom_tensor_upload(x, xd, sizeof xd) == LOOM_OK);
    CHECK_MSG(loom_sched_compute(s, g) == LOOM_OK, "%s", loom_sched_error(s));
    CHECK(loom_tensor_download(z, z2, sizeof z2) == LOOM_OK);
    CHECK(memcmp(z1, z2, sizeof z1) == 0);

    loom_sched_free(s);
    loom_buffer_free(wb);
    loom_graph_free(g2);
    loom_graph_free(g);
    CHECK(mock.n_alloc == mock.n_free);
}

static void test_args(void) {
    loom_sched *s = NULL;
    loom_backend *list[9];
    for (int i = 0; i < 9; i++)
        list[i] = g_cpu;
    CHECK(loom_sched_new(list, 0, &s) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_sched_new(list, 9, &s) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_sched_new(NULL, 1, &s) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_sched_new(list, 1, NULL) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_sched_new(list, 1, &s) == LOOM_OK);
    CHECK(loom_sched_alloc(s, NULL) == LOOM_ERR_INVALID_ARG);
    /* An empty graph is fine. */
    loom_graph *g = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK);
    CHECK(loom_sched_alloc(s, g) == LOOM_OK);
    CHECK(loom_sched_compute(s, g) == LOOM_OK);
    loom_sched_free(s);
    loom_sched_free(NULL);
    loom_graph_free(g);
}

int main(void) {
    /* The mock runs the reference kernels; so must cpu for bit-equal results. */
    setenv("LOOM_CPU_ISA", "scalar", 1);
    CHECK(mock_init(&g_mock, NULL, 0) == LOOM_OK);
    g_cpu = loom_registry_find("cpu");
    CHECK(g_cpu != NULL);
    if (!g_cpu) return test_summary("test_sched");
    test_args();
    test_mixed();
    test_pins();
    test_chain();
    test_hooks();
    for (uint32_t seed = 1; seed <= 4; seed++) {
        test_dag(false, seed);
        test_dag(true, seed);
    }
    test_unsupported();
    test_oom();
    test_compute_error();
    test_preplaced_and_realloc();
    loom_registry_shutdown();
    return test_summary("test_sched");
}
