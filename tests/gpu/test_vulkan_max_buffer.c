/* tests/gpu/test_vulkan_max_buffer.c - buffers larger than the backend's
 * maximum buffer size (Vulkan's maxMemoryAllocationSize), forced small with
 * LOOM_VULKAN_MAX_ALLOC so lavapipe refuses what a 4 GiB driver would:
 *  - device_info / loom_backend_max_buffer report the forced limit, and
 *    buffer_alloc refuses anything above it with a message naming it;
 *  - the tiny model loads with its weights and KV cache spread over several
 *    buffers, none above the limit, no tensor straddling two, and greedy
 *    generation gives exactly the tokens of a load without the limit;
 *  - a limit below the largest weight (or below one layer's KV cache) is a
 *    clear load error naming the tensor, its size and the limit;
 *  - the scheduler splits its own leaf buffer over several buffers (results
 *    still right), and a leaf or activations arena above the limit is a
 *    clear error naming the buffer, its size and the limit.
 * The backend reads the variable at init, so each limit re-initialises the
 * registry. Skipped (exit 77) without a usable Vulkan device (ctest sets
 * LOOM_VULKAN_ALLOW_CPU=1 for lavapipe). */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/generate.h"
#include "loom/model.h"
#include "loom/runtime.h"
#include "model/model_internal.h"
#include "testing.h"

#define MIB     (1024 * 1024)
#define N_TOKEN 8

static char g_path[256];

/* Re-initialise the registry with LOOM_VULKAN_MAX_ALLOC=limit (0: unset);
 * returns the vulkan backend, or NULL when it is unavailable. */
static loom_backend *vk_with_limit(size_t limit) {
    loom_registry_shutdown();
    if (limit) {
        char v[32];
        snprintf(v, sizeof v, "%zu", limit);
        setenv("LOOM_VULKAN_MAX_ALLOC", v, 1);
    } else {
        unsetenv("LOOM_VULKAN_MAX_ALLOC");
    }
    if (loom_registry_init() != LOOM_OK) return NULL;
    loom_backend *vk = loom_registry_find("vulkan");
    return vk && loom_registry_available(vk->index) ? vk : NULL;
}

/* tiny-dense with a 1000-token vocabulary and f32 weights: token_embd is
 * the largest tensor (1,024,000 bytes; ffn_gate/up/down 768 KiB), about
 * 13 MB in all. */
static void write_model(void) {
    loom_model_config c;
    char err[512];
    CHECK(loom_model_config_preset("tiny-dense", &c, err, sizeof err) == LOOM_OK);
    c.vocab_size = 1000;
    c.bos_id = c.eos_id = c.eot_id = -1;
    CHECK_MSG(loom_model_write_random_gguf(&c, LOOM_F32, 11, NULL, g_path, err, sizeof err) ==
                  LOOM_OK,
              "%s", err);
}

static loom_status load(int64_t n_ctx, int n_slots, loom_model **m, char *err, size_t err_n) {
    loom_model_params p = loom_model_default_params();
    p.backend = "vulkan";
    p.n_ctx = n_ctx;
    p.n_slots = n_slots;
    return loom_model_load_gguf(g_path, &p, m, err, err_n);
}

/* Every buffer at most limit bytes (0: no check), every weight / cache
 * tensor inside its buffer. */
static void check_layout(const loom_model *m, size_t limit) {
    for (int i = 0; i < m->n_wbufs; i++)
        CHECK_MSG(!limit || m->wbufs[i]->size <= limit, "weight buffer %d: %zu > %zu", i,
                  m->wbufs[i]->size, limit);
    for (int i = 0; i < m->n_kvbufs; i++)
        CHECK_MSG(!limit || m->kvbufs[i]->size <= limit, "kv buffer %d: %zu > %zu", i,
                  m->kvbufs[i]->size, limit);
    int bad = 0;
    for (int i = 0; i < loom_graph_n_tensors(m->wg); i++) {
        const loom_tensor *t = loom_graph_tensor(m->wg, i);
        if (!t->buffer || t->offset % 64 != 0 ||
            t->offset + loom_tensor_nbytes(t) > t->buffer->size ||
            (t->buffer->backend != m->be && t->buffer->backend != m->kv_be))
            bad++;
    }
    CHECK_MSG(bad == 0, "%d tensors outside their buffers", bad);
}

/* Greedy tokens of the model under limit; NULL model when it fails. */
static void generate(size_t limit, int32_t out[N_TOKEN], int *n_wbufs, int *n_kvbufs) {
    loom_model *m = NULL;
    char err[512];
    *n_wbufs = *n_kvbufs = 0;
    /* 2048 positions x 2 slots: each K/V tensor 512 KiB, 4 MiB in all. */
    loom_status st = load(2048, 2, &m, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "limit %zu: %s", limit, err);
    if (st != LOOM_OK) return;
    CHECK(strcmp(loom_model_backend_name(m), "vulkan") == 0);
    check_layout(m, limit);
    *n_wbufs = m->n_wbufs;
    *n_kvbufs = m->n_kvbufs;
    loom_generate_params gp = loom_generate_default_params();
    gp.sampling.temperature = 0.0f;
    gp.n_predict = N_TOKEN;
    gp.ignore_eos = true;
    const int32_t prompt[5] = {3, 141, 59, 265, 358};
    int32_t *toks = NULL;
    size_t n = 0;
    st = loom_generate_tokens(m, prompt, 5, &gp, &toks, &n, NULL, NULL, err, sizeof err);
    CHECK_MSG(st == LOOM_OK, "limit %zu: %s", limit, err);
    CHECK(n == N_TOKEN);
    for (size_t i = 0; i < N_TOKEN; i++)
        out[i] = toks && i < n ? toks[i] : -1;
    free(toks);
    loom_model_free(m);
}

static void test_model_split(void) {
    int32_t ref[N_TOKEN], got[N_TOKEN];
    int nw = 0, nkv = 0;
    loom_backend *vk = vk_with_limit(0);
    if (!vk) return;
    generate(0, ref, &nw, &nkv);
    CHECK_MSG(nw == 1 && nkv == 1, "without a forced limit: %d weight / %d kv buffers", nw, nkv);

    vk = vk_with_limit(MIB);
    CHECK(vk != NULL);
    if (!vk) return;
    CHECK(loom_backend_max_buffer(vk) == MIB);
    loom_device_info info;
    vk->iface->device_info(vk, &info);
    CHECK_MSG(info.max_buffer_bytes == MIB && strstr(info.features, "max_alloc=1024K(forced"), "%s",
              info.features);
    /* The forced limit is enforced like a strict driver's. */
    loom_buffer *b = NULL;
    CHECK(loom_buffer_alloc(vk, MIB, &b) == LOOM_OK && b);
    loom_buffer_free(b);
    b = NULL;
    CHECK(loom_buffer_alloc(vk, MIB + 1, &b) != LOOM_OK && !b);
    CHECK_MSG(strstr(vk->error, "LOOM_VULKAN_MAX_ALLOC") != NULL, "%s", vk->error);

    generate(MIB, got, &nw, &nkv);
    printf("1 MiB limit: weights in %d buffers, KV cache in %d\n", nw, nkv);
    CHECK_MSG(nw >= 12, "weights in %d buffers", nw);
    CHECK_MSG(nkv == 4, "KV cache in %d buffers", nkv);
    for (int i = 0; i < N_TOKEN; i++)
        CHECK_MSG(got[i] == ref[i], "token %d: %d with the limit, %d without", i, got[i], ref[i]);
}

static void test_model_errors(void) {
    char err[512];
    loom_model *m = NULL;
    /* token_embd.weight (1,024,000 bytes) is the first tensor above 512 KiB. */
    loom_backend *vk = vk_with_limit(512 * 1024);
    CHECK(vk != NULL);
    if (!vk) return;
    err[0] = '\0';
    CHECK(load(256, 1, &m, err, sizeof err) == LOOM_ERR_UNSUPPORTED && !m);
    printf("expected: %s\n", err);
    CHECK_MSG(strstr(err, "'token_embd.weight'") && strstr(err, "1024000 bytes") &&
                  strstr(err, "524288 bytes") && strstr(err, "vulkan"),
              "%s", err);

    /* One layer's K (64 x 4096 x 3 f16 = 1.5 MiB) above a 1 MiB limit. */
    vk = vk_with_limit(MIB);
    CHECK(vk != NULL);
    if (!vk) return;
    err[0] = '\0';
    CHECK(load(4096, 3, &m, err, sizeof err) == LOOM_ERR_UNSUPPORTED && !m);
    printf("expected: %s\n", err);
    CHECK_MSG(strstr(err, "KV cache") && strstr(err, "1572864 bytes") &&
                  strstr(err, "1048576 bytes"),
              "%s", err);
    loom_model_free(m);
}

/* The scheduler's leaves: two 600 KB inputs under a 1 MiB limit go in two
 * buffers; their sum is right. */
static void test_sched_leaves(loom_backend *vk) {
    loom_backend *cpu = loom_registry_find("cpu");
    loom_backend *list[2] = {vk, cpu};
    const int64_t n = 150000;
    loom_graph *g = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK);
    loom_tensor *a = loom_tensor_set_flags(loom_tensor_1d(g, LOOM_F32, n), LOOM_FLAG_INPUT);
    loom_tensor *b = loom_tensor_set_flags(loom_tensor_1d(g, LOOM_F32, n), LOOM_FLAG_INPUT);
    loom_tensor *y = loom_add(g, a, b);
    CHECK(loom_graph_expand(g, y) == LOOM_OK);
    loom_sched *s = NULL;
    CHECK(loom_sched_new(list, 2, &s) == LOOM_OK);
    loom_status st = loom_sched_alloc(s, g);
    CHECK_MSG(st == LOOM_OK, "%s", loom_sched_error(s));
    float *x = malloc((size_t)n * sizeof *x), *r = malloc((size_t)n * sizeof *r);
    if (st == LOOM_OK && x && r) {
        CHECK(a->buffer && b->buffer && a->buffer != b->buffer);
        CHECK(a->buffer->backend == vk && b->buffer->backend == vk);
        CHECK(a->buffer->size <= MIB && b->buffer->size <= MIB);
        for (int64_t i = 0; i < n; i++)
            x[i] = (float)(i % 1000);
        CHECK(loom_tensor_upload(a, x, (size_t)n * sizeof *x) == LOOM_OK);
        CHECK(loom_tensor_upload(b, x, (size_t)n * sizeof *x) == LOOM_OK);
        st = loom_sched_compute(s, g);
        CHECK_MSG(st == LOOM_OK, "%s", loom_sched_error(s));
        CHECK(loom_tensor_download(y, r, (size_t)n * sizeof *r) == LOOM_OK);
        int bad = 0;
        for (int64_t i = 0; i < n; i++)
            bad += r[i] != 2.0f * x[i];
        CHECK_MSG(bad == 0, "%d wrong sums", bad);
    }
    free(x);
    free(r);
    loom_sched_free(s);
    loom_graph_free(g);
}

/* A buffer of the scheduler above the limit: a clear error naming it (no
 * crash). big_leaf: a 1.2 MB matmul weight leaf with a small output; else
 * a 1.44 MB matmul output (the activations arena) from small inputs. */
static void test_sched_too_big(loom_backend *vk, bool big_leaf) {
    loom_backend *cpu = loom_registry_find("cpu");
    loom_backend *list[2] = {vk, cpu};
    loom_graph *g = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK);
    loom_tensor *y;
    if (big_leaf) {
        loom_tensor *w =
            loom_tensor_set_flags(loom_tensor_2d(g, LOOM_F32, 300, 1000), LOOM_FLAG_INPUT);
        loom_tensor *x =
            loom_tensor_set_flags(loom_tensor_2d(g, LOOM_F32, 300, 1), LOOM_FLAG_INPUT);
        y = loom_matmul(g, w, x);
    } else {
        loom_tensor *w =
            loom_tensor_set_flags(loom_tensor_2d(g, LOOM_F32, 4, 600), LOOM_FLAG_INPUT);
        loom_tensor *x =
            loom_tensor_set_flags(loom_tensor_2d(g, LOOM_F32, 4, 600), LOOM_FLAG_INPUT);
        y = loom_matmul(g, w, x);
    }
    CHECK(loom_graph_expand(g, y) == LOOM_OK);
    loom_sched *s = NULL;
    CHECK(loom_sched_new(list, 2, &s) == LOOM_OK);
    loom_status st = loom_sched_alloc(s, g);
    const char *e = loom_sched_error(s);
    printf("expected: %s\n", e);
    CHECK(st != LOOM_OK);
    CHECK_MSG(strstr(e, big_leaf ? "inputs and weights" : "activations") &&
                  strstr(e, big_leaf ? "1200000 bytes" : "1440000 bytes") &&
                  strstr(e, "maximum buffer size (1048576 bytes)") && strstr(e, "vulkan"),
              "%s", e);
    loom_sched_free(s);
    loom_graph_free(g);
}

int main(void) {
    setenv("LOOM_VULKAN_ALLOW_CPU", "1", 0);
    if (!vk_with_limit(0)) {
        loom_backend *vk = loom_registry_find("vulkan");
        printf("test_vulkan_max_buffer: SKIP: %s\n",
               vk ? loom_registry_why(vk->index) : "no vulkan backend built");
        loom_registry_shutdown();
        return 77;
    }
    snprintf(g_path, sizeof g_path, "/tmp/loom_vk_max_buffer_%d.gguf", (int)getpid());
    write_model();
    test_model_split();
    test_model_errors();
    loom_backend *vk = vk_with_limit(MIB);
    CHECK(vk != NULL);
    if (vk) {
        test_sched_leaves(vk);
        test_sched_too_big(vk, true);
        test_sched_too_big(vk, false);
    }
    unlink(g_path);
    loom_registry_shutdown();
    return test_summary("test_vulkan_max_buffer");
}
