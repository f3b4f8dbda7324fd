/* tests/gpu/test_vulkan_set_rows.c - the Vulkan backend's set_rows and its
 * cpy into nf4/nf4_dq, beyond the parity suite's random inputs:
 *  - destination bytes equal the cpu backend's exactly (f32, f16, bf16,
 *    q8_0 and nf4/nf4_dq), with NaN, inf, f16 rounding ties and overflow,
 *    subnormals and all-zero blocks among the values;
 *  - a row outside the destination is an error naming the node and the row,
 *    and nothing is written (the whole destination storage is unchanged);
 *  - the KV cache stays on the device (the node runs on vulkan).
 * ctest also runs it with LOOM_VULKAN_MAX_RANGE small enough that the
 * destination is split into several dispatches. Skipped (passes) without a
 * usable Vulkan device (ctest sets LOOM_VULKAN_ALLOW_CPU=1 for lavapipe). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/runtime.h"
#include "testing.h"

static loom_backend *g_vk, *g_cpu;

static float bits_f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Values that stress the conversions: specials, f16 ties and overflow,
 * subnormals of f32 and f16, and ordinary numbers. */
static void fill_special(float *v, int64_t n, uint64_t seed) {
    static const uint32_t special[] = {
        0x7fc00000u, 0x7f800001u, 0xff800000u, 0x7f800000u, 0x80000000u, 0x00000001u,
        0x00800000u, 0x807fffffu, 0x477ff000u, 0x477fefffu, 0x33000000u, 0x33000001u,
        0x38800000u, 0x387fe000u, 0x3f801000u, 0x3f803000u, 0x3f808000u, 0x3f818000u,
    };
    const int ns = (int)(sizeof special / sizeof special[0]);
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        const uint32_t r = (uint32_t)(s >> 33);
        if (r % 5 == 0)
            v[i] = bits_f(special[(r / 5) % ns]);
        else
            v[i] = ((float)(int32_t)(r % 2001) - 1000.0f) * 0.013f;
    }
}

/* One set_rows on backends list (n of them): dst [W, R, B] of dtype dt
 * starting as init (storage bytes), src [W, T, B] f32, rows [T] or [T, B].
 * The destination's bytes after the run go to out. Returns the compute
 * status; err gets the scheduler's message. *on is the backend that ran it. */
static loom_status run_set_rows(loom_backend **list, int n, loom_dtype dt, int64_t W, int64_t R,
                                int64_t T, int64_t B, bool per_b, const void *init,
                                const float *src, const int32_t *rows, void *out, char *err,
                                size_t err_n, loom_backend **on) {
    loom_graph *g = NULL;
    loom_sched *s = NULL;
    CHECK(loom_graph_new(&g) == LOOM_OK);
    loom_tensor *dst = loom_tensor_set_name(loom_tensor_3d(g, dt, W, R, B), "kv");
    loom_tensor *sx = loom_tensor_set_flags(loom_tensor_3d(g, LOOM_F32, W, T, B), LOOM_FLAG_INPUT);
    loom_tensor *rx = loom_tensor_set_flags(per_b ? loom_tensor_2d(g, LOOM_I32, T, B)
                                                  : loom_tensor_1d(g, LOOM_I32, T),
                                            LOOM_FLAG_INPUT);
    loom_tensor *w = loom_tensor_set_name(loom_set_rows(g, dst, sx, rx), "kv_write");
    loom_tensor_set_flags(w, LOOM_FLAG_OUTPUT);
    CHECK(loom_graph_expand(g, w) == LOOM_OK);
    loom_status st = loom_sched_new(list, n, &s);
    if (st == LOOM_OK) st = loom_sched_alloc(s, g);
    const size_t nbytes = loom_tensor_nbytes(dst);
    if (st == LOOM_OK) st = loom_tensor_upload(dst, init, nbytes);
    if (st == LOOM_OK) st = loom_tensor_upload(sx, src, (size_t)(W * T * B) * sizeof(float));
    if (st == LOOM_OK)
        st = loom_tensor_upload(rx, rows, (size_t)(T * (per_b ? B : 1)) * sizeof(int32_t));
    if (st == LOOM_OK) {
        st = loom_sched_compute(s, g);
        if (loom_tensor_download(dst, out, nbytes) != LOOM_OK) memset(out, 0xee, nbytes);
    }
    snprintf(err, err_n, "%s", st == LOOM_OK ? "" : loom_sched_error(s));
    *on = w->buffer ? w->buffer->backend : NULL;
    loom_sched_free(s);
    loom_graph_free(g);
    return st;
}

static void test_set_rows(loom_dtype dt, int64_t W, int64_t R, int64_t T, int64_t B, bool per_b) {
    const size_t nbytes = loom_dtype_nbytes(dt, W * R * B);
    uint8_t *init = malloc(nbytes), *a = malloc(nbytes), *b = malloc(nbytes);
    float *src = malloc((size_t)(W * T * B) * sizeof *src);
    int32_t *rows = malloc((size_t)(T * B) * sizeof *rows);
    for (size_t i = 0; i < nbytes; i++)
        init[i] = (uint8_t)(i * 37 + 11);
    if (dt == LOOM_Q8_0) /* keep the untouched blocks' scales finite */
        for (size_t i = 0; i < nbytes; i += 34)
            init[i + 1] = 0x3c;
    fill_special(src, W * T * B, (uint64_t)dt * 1000 + (uint64_t)W);
    if (dt == LOOM_Q8_0) /* a block of zeros and one of subnormals */
        for (int64_t i = 0; i < 32 && W * T * B >= 96; i++) {
            src[i] = 0.0f;
            src[32 + i] = bits_f(0x00000100u + (uint32_t)i * 3u);
        }
    for (int64_t bb = 0; bb < (per_b ? B : 1); bb++)
        for (int64_t t = 0; t < T; t++) /* distinct rows, spread over R */
            rows[bb * T + t] = (int32_t)((t * 7 + bb * 3 + 1) % R);
    char err[512];
    loom_backend *cpu_only[1] = {g_cpu}, *vk_list[2] = {g_vk, g_cpu}, *on = NULL;
    CHECK(run_set_rows(cpu_only, 1, dt, W, R, T, B, per_b, init, src, rows, a, err, sizeof err,
                       &on) == LOOM_OK);
    loom_status st =
        run_set_rows(vk_list, 2, dt, W, R, T, B, per_b, init, src, rows, b, err, sizeof err, &on);
    CHECK_MSG(st == LOOM_OK, "%s", err);
    CHECK_MSG(on == g_vk, "set_rows %s did not run on vulkan", loom_dtype_name(dt));
    size_t i = 0;
    while (i < nbytes && a[i] == b[i])
        i++;
    CHECK_MSG(i == nbytes,
              "set_rows %s W=%lld R=%lld T=%lld B=%lld: byte %zu differs (%02x vs %02x)",
              loom_dtype_name(dt), (long long)W, (long long)R, (long long)T, (long long)B, i,
              i < nbytes ? a[i] : 0, i < nbytes ? b[i] : 0);

    /* A row outside [0, R): an error naming the node and the row. The other
     * (t, b) positions may have been written (the device runs them in
     * parallel); the bad one must write nowhere. */
    rows[T > 1 ? 1 : 0] = (int32_t)R + 5;
    st = run_set_rows(vk_list, 2, dt, W, R, T, B, per_b, init, src, rows, b, err, sizeof err, &on);
    char want[64];
    snprintf(want, sizeof want, "row %d", (int)R + 5);
    CHECK_MSG(st == LOOM_ERR_INVALID_ARG && strstr(err, "set_rows") && strstr(err, "kv_write") &&
                  strstr(err, want),
              "status %d: %s", (int)st, err);
    rows[T > 1 ? 1 : 0] = -3;
    st = run_set_rows(vk_list, 2, dt, W, R, T, B, per_b, init, src, rows, b, err, sizeof err, &on);
    CHECK_MSG(st == LOOM_ERR_INVALID_ARG && strstr(err, "row -3"), "status %d: %s", (int)st, err);
    /* Only rows named in rows may differ from init: every other row is
     * byte-identical (the bad row wrote nowhere). */
    const size_t row_bytes = loom_dtype_nbytes(dt, W);
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t r = 0; r < R; r++) {
            bool named = false;
            for (int64_t t = 0; t < T; t++)
                named |= rows[(per_b ? bb : 0) * T + t] == r;
            const size_t off = ((size_t)bb * (size_t)R + (size_t)r) * row_bytes;
            if (!named)
                CHECK_MSG(memcmp(b + off, init + off, row_bytes) == 0,
                          "set_rows %s: row %lld of batch %lld changed", loom_dtype_name(dt),
                          (long long)r, (long long)bb);
        }
    free(init);
    free(a);
    free(b);
    free(src);
    free(rows);
}

/* cpy f32 -> nf4/nf4_dq on vulkan vs cpu, byte for byte. */
static void test_nf4(loom_dtype dt, int64_t ne0, int64_t ne1, int mode) {
    const int64_t n = ne0 * ne1;
    float *x = malloc((size_t)n * sizeof *x);
    fill_special(x, n, (uint64_t)n + (uint64_t)mode);
    if (mode == 1) /* tame values: the ordinary path, plus a zero block and a subnormal block */
        for (int64_t i = 0; i < n; i++) {
            x[i] = (float)((i * 7919) % 2003) / 1001.0f - 1.0f;
            if (i < 64) x[i] = 0.0f;
            if (i >= 64 && i < 128) x[i] = bits_f(0x00000400u + (uint32_t)i * 11u);
        }
    const size_t nbytes = loom_dtype_nbytes(dt, n);
    uint8_t *out[2] = {malloc(nbytes), malloc(nbytes)};
    loom_backend *lists[2][2] = {{g_cpu, NULL}, {g_vk, g_cpu}};
    for (int k = 0; k < 2; k++) {
        loom_graph *g = NULL;
        loom_sched *s = NULL;
        CHECK(loom_graph_new(&g) == LOOM_OK);
        loom_tensor *a =
            loom_tensor_set_flags(loom_tensor_2d(g, LOOM_F32, ne0, ne1), LOOM_FLAG_INPUT);
        loom_tensor *y = loom_tensor_set_flags(loom_cpy(g, a, dt), LOOM_FLAG_OUTPUT);
        CHECK(loom_graph_expand(g, y) == LOOM_OK);
        CHECK(loom_sched_new(lists[k], k + 1, &s) == LOOM_OK);
        loom_status st = loom_sched_alloc(s, g);
        if (st == LOOM_OK) st = loom_tensor_upload(a, x, (size_t)n * sizeof *x);
        if (st == LOOM_OK) st = loom_sched_compute(s, g);
        if (st == LOOM_OK) st = loom_tensor_download(y, out[k], nbytes);
        CHECK_MSG(st == LOOM_OK, "%s", loom_sched_error(s));
        if (k == 1)
            CHECK_MSG(y->buffer && y->buffer->backend == g_vk, "cpy to %s did not run on vulkan",
                      loom_dtype_name(dt));
        loom_sched_free(s);
        loom_graph_free(g);
    }
    size_t i = 0;
    while (i < nbytes && out[0][i] == out[1][i])
        i++;
    CHECK_MSG(i == nbytes, "cpy f32[%lld,%lld] -> %s (values %d): byte %zu of %zu differs",
              (long long)ne0, (long long)ne1, loom_dtype_name(dt), mode, i, nbytes);
    free(out[0]);
    free(out[1]);
    free(x);
}

int main(void) {
    loom_registry_init();
    g_cpu = loom_registry_find("cpu");
    g_vk = loom_registry_find("vulkan");
    int vi = -1;
    for (int i = 0; i < loom_registry_count(); i++)
        if (loom_registry_get(i) == g_vk) vi = i;
    if (!g_vk || vi < 0 || !loom_registry_available(vi)) {
        printf("vulkan unavailable (%s): skipped\n", vi >= 0 ? loom_registry_why(vi) : "not built");
        loom_registry_shutdown();
        return test_summary("test_vulkan_set_rows");
    }
    static const loom_dtype dts[] = {LOOM_F32, LOOM_F16, LOOM_BF16, LOOM_Q8_0};
    for (int d = 0; d < 4; d++) {
        test_set_rows(dts[d], 64, 16, 1, 1, false);                        /* decode */
        test_set_rows(dts[d], 256, 40, 3, 1, false);                       /* prefill chunk */
        test_set_rows(dts[d], 96, 9, 3, 2, true);                          /* two sequences */
        if (dts[d] != LOOM_Q8_0) test_set_rows(dts[d], 7, 5, 3, 2, false); /* odd rows: atomics */
    }
    /* Under LOOM_VULKAN_MAX_RANGE (the split run) the nf4 inputs no longer
     * fit one binding and cpy declines them: only set_rows splits. */
    const char *mr = getenv("LOOM_VULKAN_MAX_RANGE");
    for (int mode = 0; mode < 2 && !(mr && *mr); mode++) {
        test_nf4(LOOM_NF4, 64, 6, mode);
        test_nf4(LOOM_NF4_DQ, 64, 6, mode);
        test_nf4(LOOM_NF4_DQ, 256, 300, mode); /* 1200 blocks: 5 groups, the last partial */
    }
    loom_registry_shutdown();
    return test_summary("test_vulkan_set_rows");
}
