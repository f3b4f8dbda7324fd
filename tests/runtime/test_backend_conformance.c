/* tests/runtime/test_backend_conformance.c - what every backend must do.
 *
 *   test_backend_conformance               every available backend
 *   test_backend_conformance --backend foo  only foo, which must be listed
 *                                          and available
 *
 * The checks go through the registry (so a plugin is found by its file name
 * and loaded with dlopen, as in `loom`): the table's required slots are set
 * and the name is the one asked for; device_info fills a name and a kind;
 * buffers round-trip at offsets and refuse out-of-range copies with a
 * message; supports() accepts a same-shape f32 add, and a graph with that
 * add runs on the backend through the scheduler and gives a + b.
 *
 * The null template (backends/null, and an unedited copy of it) runs this
 * with LOOM_TEMPLATE_DEVICE=1; tests/scripts/check_new_backend.sh does so on
 * a fresh copy. */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/runtime.h"
#include "testing.h"

static void check_table(loom_backend *be, const char *want_name) {
    const loom_backend_iface *f = be->iface;
    const char *missing = loom_backend_missing_slot(f);
    CHECK_MSG(missing == NULL, "%s: required slot %s is NULL", f->name, missing);
    CHECK(f->abi_version == LOOM_BACKEND_ABI_VERSION);
    if (want_name) CHECK_MSG(strcmp(f->name, want_name) == 0, "name '%s'", f->name);
}

static void check_device_info(loom_backend *be) {
    const char *name = be->iface->name;
    loom_device_info info;
    memset(&info, 0xab, sizeof info);
    be->iface->device_info(be, &info);
    CHECK_MSG(info.name[0] != '\0' && memchr(info.name, '\0', sizeof info.name), "%s: no name",
              name);
    CHECK_MSG(memchr(info.kind, '\0', sizeof info.kind) && info.kind[0], "%s: no kind", name);
    CHECK(memchr(info.features, '\0', sizeof info.features) != NULL);
    printf("  %s: %s (%s) mem %zu MiB, features '%s'\n", name, info.name, info.kind,
           info.mem_total >> 20, info.features);
}

static void check_buffers(loom_backend *be) {
    const char *name = be->iface->name;
    /* Round trip through a buffer, at an offset. */
    enum { N = 4096 };
    unsigned char *in = malloc(N), *out = malloc(N);
    CHECK(in && out);
    if (!in || !out) {
        free(in);
        free(out);
        return;
    }
    for (int i = 0; i < N; i++)
        in[i] = (unsigned char)(i * 31 + 7);
    loom_buffer *b = NULL;
    CHECK_MSG(loom_buffer_alloc(be, N, &b) == LOOM_OK && b, "%s: alloc: %s", name, be->error);
    if (b) {
        CHECK(b->backend == be);
        CHECK(b->size >= N);
        CHECK(be->iface->buffer_upload(b, 0, in, N) == LOOM_OK);
        memset(out, 0, N);
        CHECK(be->iface->buffer_download(b, 0, out, N) == LOOM_OK);
        CHECK_MSG(memcmp(in, out, N) == 0, "%s: round trip differs", name);
        CHECK(be->iface->buffer_upload(b, 100, in + 5, 1000) == LOOM_OK);
        CHECK(be->iface->buffer_download(b, 100, out, 1000) == LOOM_OK);
        CHECK(memcmp(in + 5, out, 1000) == 0);
        /* Out of range is rejected with a message, not written. */
        be->error[0] = '\0';
        CHECK(be->iface->buffer_upload(b, N - 10, in, 11) == LOOM_ERR_INVALID_ARG);
        CHECK_MSG(be->error[0] != '\0', "%s: no message for out-of-range upload", name);
        CHECK(be->iface->buffer_upload(b, (size_t)N + 1, in, 0) == LOOM_ERR_INVALID_ARG);
        CHECK(be->iface->buffer_upload(b, 1, in, SIZE_MAX) == LOOM_ERR_INVALID_ARG);
        CHECK(be->iface->buffer_download(b, 0, out, (size_t)N + 1) == LOOM_ERR_INVALID_ARG);
        loom_buffer_free(b);
    }
    /* Zero-size buffers are rejected. */
    b = NULL;
    CHECK_MSG(loom_buffer_alloc(be, 0, &b) != LOOM_OK && b == NULL, "%s: zero-size alloc", name);
    free(in);
    free(out);
}

/* y = a + b (f32, 64 x 4): supported, and run on be by the scheduler (with
 * cpu as the fallback the scheduler requires last). */
static void check_add(loom_backend *be) {
    const char *name = be->iface->name;
    enum { W = 64, H = 4 };
    loom_graph *g = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK);
    if (!g) return;
    loom_tensor *x = loom_tensor_2d(g, LOOM_F32, W, H);
    loom_tensor *y = loom_tensor_2d(g, LOOM_F32, W, H);
    loom_tensor *z = loom_add(g, x, y);
    CHECK(z != NULL);
    if (!z) {
        loom_graph_free(g);
        return;
    }
    CHECK_MSG(be->iface->supports(be, z), "%s: does not support f32 add", name);
    loom_tensor_set_flags(x, LOOM_FLAG_INPUT);
    loom_tensor_set_flags(y, LOOM_FLAG_INPUT);
    loom_tensor_set_flags(z, LOOM_FLAG_OUTPUT);
    CHECK(loom_graph_expand(g, z) == LOOM_OK);

    loom_backend *cpu = loom_registry_find("cpu");
    loom_backend *list[2] = {be, cpu};
    int n = be == cpu ? 1 : 2;
    loom_sched *s = NULL;
    CHECK(cpu && loom_sched_new(list, n, &s) == LOOM_OK);
    if (s) {
        float xs[W * H], ys[W * H], zs[W * H];
        for (int i = 0; i < W * H; i++) {
            xs[i] = (float)i * 0.5f;
            ys[i] = 3.0f - (float)i;
        }
        loom_status st = loom_sched_alloc(s, g);
        CHECK_MSG(st == LOOM_OK, "%s: %s", name, loom_sched_error(s));
        if (st == LOOM_OK) {
            CHECK(z->backend_id == 0); /* on be, not on the cpu fallback */
            CHECK(loom_tensor_upload(x, xs, sizeof xs) == LOOM_OK);
            CHECK(loom_tensor_upload(y, ys, sizeof ys) == LOOM_OK);
            st = loom_sched_compute(s, g);
            CHECK_MSG(st == LOOM_OK, "%s: %s", name, loom_sched_error(s));
            memset(zs, 0, sizeof zs);
            CHECK(loom_tensor_download(z, zs, sizeof zs) == LOOM_OK);
            int bad = 0;
            for (int i = 0; i < W * H; i++)
                bad += zs[i] != xs[i] + ys[i];
            CHECK_MSG(bad == 0, "%s: %d wrong sums", name, bad);
        }
        loom_sched_free(s);
    }
    loom_graph_free(g);
    CHECK(loom_backend_synchronize(be) == LOOM_OK);
}

static void conformance(loom_backend *be, const char *want_name) {
    printf("conformance: %s\n", be->iface->name);
    check_table(be, want_name);
    check_device_info(be);
    check_buffers(be);
    check_add(be);
}

int main(int argc, char **argv) {
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--backend NAME]\n", argv[0]);
            return 2;
        }
    }
    if (only) {
        loom_backend *be = loom_registry_find(only);
        CHECK_MSG(be != NULL, "backend '%s' is not listed", only);
        if (be) {
            int i = be->index;
            CHECK_MSG(loom_registry_available(i), "backend '%s' is unavailable: %s", only,
                      loom_registry_why(i));
            if (loom_registry_available(i)) conformance(be, only);
        }
    } else {
        int n_av = 0;
        for (int i = 0; i < loom_registry_count(); i++) {
            if (!loom_registry_available(i)) continue;
            n_av++;
            conformance(loom_registry_get(i), NULL);
        }
        CHECK(n_av >= 1);
    }
    loom_registry_shutdown();
    return test_summary("test_backend_conformance");
}
