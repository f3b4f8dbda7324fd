/* tests/gpu/test_cuda_probe.c - the CUDA and HIP plugins on any machine.
 *
 * Needs no GPU. For each of cuda and hip: when the plugin was built (the
 * file is in $LOOM_PLUGIN_DIR), the registry must list it, and either it is
 * available (a GPU is present: its device info is printed and a buffer round
 * trip is checked) or it is unavailable with a one-line reason naming the
 * API (e.g. "cudaGetDeviceCount: CUDA driver version is insufficient for
 * CUDA runtime version (35)"), and selecting it by name fails with that
 * reason. When it was not built it must be listed as not found. Either way a
 * small graph still runs on whatever the registry picks by default. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "loom/runtime.h"
#include "testing.h"

static bool plugin_built(const char *name) {
    const char *dir = getenv("LOOM_PLUGIN_DIR");
    if (!dir || !*dir) return false;
    char path[4096];
    snprintf(path, sizeof path, "%s/libloom-backend-%s.so", dir, name);
    return access(path, F_OK) == 0;
}

static int index_of(const loom_backend *be) {
    for (int i = 0; i < loom_registry_count(); i++)
        if (loom_registry_get(i) == be) return i;
    return -1;
}

/* A GPU is present: check a device round trip through the pool and staging. */
static void check_round_trip(loom_backend *be) {
    loom_device_info info;
    be->iface->device_info(be, &info);
    printf("%s: available: %s, %zu MiB, subgroup %d, %s\n", be->iface->name, info.name,
           info.mem_total >> 20, info.subgroup_size, info.features);
    enum { N = (3 << 20) + 5 }; /* spans several staging chunks when those are small */
    unsigned char *src = malloc(N), *dst = malloc(N);
    CHECK(src && dst);
    if (!src || !dst) {
        free(src);
        free(dst);
        return;
    }
    for (size_t i = 0; i < N; i++)
        src[i] = (unsigned char)(i * 131u + 7u);
    loom_buffer *b = NULL;
    CHECK_MSG(loom_buffer_alloc(be, N, &b) == LOOM_OK, "%s", be->error);
    if (b) {
        CHECK(be->iface->buffer_upload(b, 0, src, N) == LOOM_OK);
        memset(dst, 0, N);
        CHECK(be->iface->buffer_download(b, 0, dst, N) == LOOM_OK);
        CHECK(memcmp(src, dst, N) == 0);
        /* Out-of-range copies are refused with a message, not a crash. */
        CHECK(be->iface->buffer_upload(b, N - 1, src, 2) == LOOM_ERR_INVALID_ARG);
        loom_buffer_free(b);
        /* The freed block comes back from the pool for the same size. */
        loom_buffer *b2 = NULL;
        CHECK(loom_buffer_alloc(be, N, &b2) == LOOM_OK);
        loom_buffer_free(b2);
    }
    free(src);
    free(dst);
}

static void check_plugin(const char *name, const char *api_a, const char *api_b) {
    loom_backend *be = loom_registry_find(name);
    CHECK_MSG(be != NULL, "%s is not listed", name);
    if (!be) return;
    const int i = index_of(be);
    const char *why = loom_registry_why(i);
    if (!plugin_built(name)) {
        printf("%s: plugin not built here (%s)\n", name, why);
        CHECK(!loom_registry_available(i));
        CHECK_MSG(strstr(why, "not found") != NULL, "why: %s", why);
        return;
    }
    if (loom_registry_available(i)) {
        check_round_trip(be);
        return;
    }
    printf("%s: unavailable: %s\n", name, why);
    CHECK_MSG(strstr(why, api_a) || strstr(why, api_b), "reason should name %s: '%s'", api_a, why);
    CHECK(strchr(why, '\n') == NULL);
    loom_backend *sel = NULL;
    char err[512];
    CHECK(loom_registry_select(name, &sel, err, sizeof err) == LOOM_ERR_UNAVAILABLE);
    CHECK(sel == NULL);
    CHECK_MSG(strstr(err, "unavailable") && strstr(err, why), "err: %s", err);
}

/* y = a + b on the default backend (scheduled with cpu as the fallback). */
static void check_default_runs(void) {
    unsetenv("LOOM_BACKEND");
    loom_backend *be = NULL;
    char err[512];
    CHECK_MSG(loom_registry_select(NULL, &be, err, sizeof err) == LOOM_OK, "%s", err);
    if (!be) return;
    printf("default backend: %s\n", be->iface->name);
    loom_backend *cpu = loom_registry_find("cpu");
    loom_backend *list[2] = {be, cpu};
    const int n = be == cpu ? 1 : 2;
    loom_graph *g = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK);
    loom_tensor *a = loom_tensor_set_flags(loom_tensor_1d(g, LOOM_F32, 5), LOOM_FLAG_INPUT);
    loom_tensor *b = loom_tensor_set_flags(loom_tensor_1d(g, LOOM_F32, 5), LOOM_FLAG_INPUT);
    loom_tensor *y = loom_tensor_set_flags(loom_add(g, a, b), LOOM_FLAG_OUTPUT);
    CHECK(loom_graph_expand(g, y) == LOOM_OK);
    loom_sched *s = NULL;
    CHECK(loom_sched_new(list, n, &s) == LOOM_OK);
    if (s && loom_graph_status(g) == LOOM_OK) {
        const float av[5] = {1, 2, 3, 4, 5}, bv[5] = {10, 20, 30, 40, 50};
        float out[5] = {0};
        CHECK_MSG(loom_sched_alloc(s, g) == LOOM_OK, "%s", loom_sched_error(s));
        CHECK(loom_tensor_upload(a, av, sizeof av) == LOOM_OK);
        CHECK(loom_tensor_upload(b, bv, sizeof bv) == LOOM_OK);
        CHECK_MSG(loom_sched_compute(s, g) == LOOM_OK, "%s", loom_sched_error(s));
        CHECK(loom_tensor_download(y, out, sizeof out) == LOOM_OK);
        for (int i = 0; i < 5; i++)
            CHECK(out[i] == av[i] + bv[i]);
    }
    loom_sched_free(s);
    loom_graph_free(g);
}

int main(void) {
    CHECK(loom_registry_init() == LOOM_OK);
    check_plugin("cuda", "CUDA", "cuda");
    check_plugin("hip", "HIP", "hip");
    check_default_runs();
    loom_registry_shutdown();
    return test_summary("test_cuda_probe");
}
