/* tests/runtime/test_sched_inplace.c - scheduling of in-place set_rows
 * (docs/adr/0011-kv-cache-in-place-writes.md):
 *  - a destination living on a backend without set_rows is an error naming
 *    the node, the destination and the backend (never a write to a copy);
 *  - a destination without storage goes with the write to a backend that
 *    supports it, and readers on another backend see the written rows;
 *  - the destination persists across runs (a cache), and
 *    loom_view_set_extent / loom_node_set_q_offset check their bounds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/backend_sdk.h"
#include "loom/runtime.h"
#include "testing.h"

/* A host-memory "gpu" that runs matmul only (through the reference). */
static loom_status m_init(loom_backend *be, char *why, size_t n) {
    (void)be;
    (void)why;
    (void)n;
    return LOOM_OK;
}
static void m_shutdown(loom_backend *be) {
    (void)be;
}
static void m_info(loom_backend *be, loom_device_info *o) {
    (void)be;
    memset(o, 0, sizeof *o);
}
static loom_status m_alloc(loom_backend *be, size_t size, loom_buffer **out) {
    loom_buffer *b = calloc(1, sizeof *b);
    b->backend = be;
    b->size = size;
    b->host = calloc(1, size);
    *out = b;
    return LOOM_OK;
}
static void m_free(loom_buffer *b) {
    if (!b) return;
    free(b->host);
    free(b);
}
static loom_status m_up(loom_buffer *b, size_t off, const void *s, size_t n) {
    memcpy((char *)b->host + off, s, n);
    return LOOM_OK;
}
static loom_status m_down(loom_buffer *b, size_t off, void *d, size_t n) {
    memcpy(d, (const char *)b->host + off, n);
    return LOOM_OK;
}
static bool m_supports(loom_backend *be, const loom_tensor *n) {
    (void)be;
    return n->op == LOOM_OP_MATMUL;
}
static int g_matmuls;
static loom_status m_compute(loom_backend *be, loom_tensor *const *nodes, int n) {
    for (int i = 0; i < n; i++) {
        char err[128];
        if (!m_supports(be, nodes[i]))
            return loom_backend_fail(be, LOOM_ERR_UNSUPPORTED, "mock: unsupported node");
        LOOM_TRY(loom_ref_compute(nodes[i], 0, 1, err, sizeof err));
        g_matmuls++;
    }
    return LOOM_OK;
}
static loom_status m_sync(loom_backend *be) {
    (void)be;
    return LOOM_OK;
}
static const loom_backend_iface k_iface = {
    .abi_version = LOOM_BACKEND_ABI_VERSION,
    .name = "mockgpu",
    .priority = 500,
    .init = m_init,
    .shutdown = m_shutdown,
    .device_info = m_info,
    .buffer_alloc = m_alloc,
    .buffer_free = m_free,
    .buffer_upload = m_up,
    .buffer_download = m_down,
    .supports = m_supports,
    .compute = m_compute,
    .synchronize = m_sync,
};
static loom_backend g_mock = {.iface = &k_iface};

/* cache [4, 6] f32; write 2 rows; out = matmul(w [4, 3], first 3 cache rows). */
typedef struct fixture {
    loom_graph *g;
    loom_tensor *cache, *src, *rows, *w, *out, *view;
} fixture;

static void build(fixture *f) {
    memset(f, 0, sizeof *f);
    loom_graph_new(&f->g);
    loom_graph *g = f->g;
    f->cache = loom_tensor_set_name(loom_tensor_2d(g, LOOM_F32, 4, 6), "cache");
    f->src = loom_tensor_set_flags(loom_tensor_2d(g, LOOM_F32, 4, 2), LOOM_FLAG_INPUT);
    f->rows = loom_tensor_set_flags(loom_tensor_1d(g, LOOM_I32, 2), LOOM_FLAG_INPUT);
    f->w = loom_tensor_set_flags(loom_tensor_2d(g, LOOM_F32, 4, 3), LOOM_FLAG_INPUT);
    loom_tensor *wr = loom_set_rows(g, f->cache, f->src, f->rows);
    loom_tensor_set_name(wr, "write");
    f->view = loom_view(g, wr, 2, (int64_t[]){4, 3}, (size_t[]){4, 16}, 0);
    f->out = loom_matmul(g, f->w, f->view); /* [3, 3]: out[n, m] = w_n . cache_m */
    loom_tensor_set_flags(f->out, LOOM_FLAG_OUTPUT);
    CHECK(loom_graph_expand(g, f->out) == LOOM_OK);
}

static void test_refused(void) {
    fixture f;
    build(&f);
    loom_buffer *b = NULL;
    CHECK(m_alloc(&g_mock, 96, &b) == LOOM_OK); /* the cache lives on the mock */
    f.cache->buffer = b;
    f.cache->data = b->host;
    loom_backend *cpu = loom_registry_find("cpu");
    loom_backend *list[2] = {&g_mock, cpu};
    loom_sched *s = NULL;
    CHECK(loom_sched_new(list, 2, &s) == LOOM_OK);
    loom_status st = loom_sched_alloc(s, f.g);
    const char *e = loom_sched_error(s);
    printf("refused: %s\n", e);
    CHECK(st == LOOM_ERR_UNSUPPORTED && strstr(e, "set_rows") && strstr(e, "'write'") &&
          strstr(e, "'cache'") && strstr(e, "mockgpu") && strstr(e, "never run on a copy"));
    loom_sched_free(s);
    loom_graph_free(f.g);
    m_free(b);
}

static void test_placed_and_persistent(void) {
    fixture f;
    build(&f);
    loom_backend *cpu = loom_registry_find("cpu");
    loom_backend *list[2] = {&g_mock, cpu};
    loom_sched *s = NULL;
    CHECK(loom_sched_new(list, 2, &s) == LOOM_OK);
    CHECK_MSG(loom_sched_alloc(s, f.g) == LOOM_OK, "%s", loom_sched_error(s));
    CHECK(f.cache->buffer && f.cache->buffer->backend == cpu); /* with the write */
    CHECK(f.out->buffer && f.out->buffer->backend == &g_mock);
    float zeros[24] = {0}, w[12], src[8], out[9];
    for (int i = 0; i < 12; i++)
        w[i] = (float)(i + 1);
    for (int i = 0; i < 8; i++)
        src[i] = (float)(i % 4) - 1.5f * (float)(i / 4);
    int32_t rows[2] = {2, 0};
    CHECK(loom_tensor_upload(f.cache, zeros, sizeof zeros) == LOOM_OK);
    CHECK(loom_tensor_upload(f.w, w, sizeof w) == LOOM_OK);
    CHECK(loom_tensor_upload(f.src, src, sizeof src) == LOOM_OK);
    CHECK(loom_tensor_upload(f.rows, rows, sizeof rows) == LOOM_OK);
    CHECK_MSG(loom_sched_compute(s, f.g) == LOOM_OK, "%s", loom_sched_error(s));
    CHECK(loom_tensor_download(f.out, out, sizeof out) == LOOM_OK);
    /* cache row 2 = src row 0, row 0 = src row 1, row 1 = 0 */
    float cache[24];
    CHECK(loom_tensor_download(f.cache, cache, sizeof cache) == LOOM_OK);
    CHECK(!memcmp(cache + 8, src, 16) && !memcmp(cache, src + 4, 16) && cache[4] == 0);
    bool ok = true;
    for (int m = 0; m < 3; m++)
        for (int n = 0; n < 3; n++) {
            float want = 0;
            for (int k = 0; k < 4; k++)
                want += w[n * 4 + k] * cache[m * 4 + k];
            ok &= out[m * 3 + n] == want;
        }
    CHECK_MSG(ok, "the mock's matmul did not see the written rows");
    /* Second run writes row 1; rows 0 and 2 keep the first run's values. */
    rows[0] = 1;
    rows[1] = 5;
    CHECK(loom_tensor_upload(f.rows, rows, sizeof rows) == LOOM_OK);
    CHECK(loom_sched_compute(s, f.g) == LOOM_OK);
    CHECK(loom_tensor_download(f.cache, cache, sizeof cache) == LOOM_OK);
    CHECK(!memcmp(cache + 8, src, 16) && !memcmp(cache, src + 4, 16) &&
          !memcmp(cache + 4, src, 16) && !memcmp(cache + 20, src + 4, 16));
    CHECK(g_matmuls == 2);
    /* A row outside the destination is a compute error, not a stray write. */
    rows[1] = 6;
    CHECK(loom_tensor_upload(f.rows, rows, sizeof rows) == LOOM_OK);
    CHECK(loom_sched_compute(s, f.g) == LOOM_ERR_INVALID_ARG &&
          strstr(loom_sched_error(s), "outside"));

    /* Re-targeting setters. */
    CHECK(loom_view_set_extent(f.view, 1, 6) == LOOM_OK && f.view->ne[1] == 6);
    CHECK(loom_view_set_extent(f.view, 1, 7) == LOOM_ERR_INVALID_ARG && f.view->ne[1] == 6);
    CHECK(loom_view_set_extent(f.view, 1, 3) == LOOM_OK);
    CHECK(loom_view_set_extent(f.out, 1, 3) == LOOM_ERR_INVALID_ARG); /* not a view */
    CHECK(loom_node_set_q_offset(f.out, 1) == LOOM_ERR_INVALID_ARG);
    loom_sched_free(s);
    loom_graph_free(f.g);
}

static void test_constructor_checks(void) {
    loom_graph *g = NULL;
    loom_graph_new(&g);
    loom_tensor *a = loom_tensor_2d(g, LOOM_F32, 4, 6);
    loom_tensor *node = loom_scale(g, a, 2.0f);
    loom_tensor *src = loom_tensor_2d(g, LOOM_F32, 4, 2);
    loom_tensor *rows = loom_tensor_1d(g, LOOM_I32, 2);
    CHECK(loom_set_rows(g, node, src, rows) == NULL &&
          strstr(loom_graph_error(g), "leaf or a view of one"));
    loom_graph_free(g);
    loom_graph_new(&g);
    a = loom_tensor_2d(g, LOOM_F16, 4, 6);
    src = loom_tensor_2d(g, LOOM_F32, 5, 2);
    rows = loom_tensor_1d(g, LOOM_I32, 2);
    CHECK(loom_set_rows(g, a, src, rows) == NULL && strstr(loom_graph_error(g), "set_rows"));
    loom_graph_free(g);
    CHECK(loom_op_is_inplace(LOOM_OP_SET_ROWS) && !loom_op_is_inplace(LOOM_OP_VIEW));
}

int main(void) {
    CHECK(loom_registry_init() == LOOM_OK);
    test_refused();
    test_placed_and_persistent();
    test_constructor_checks();
    loom_registry_shutdown();
    return test_summary("test_sched_inplace");
}
