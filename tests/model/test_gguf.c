/* tests/model/test_gguf.c - GGUF writer -> reader round trip and rejection of
 * malformed files (each built by corrupting a valid one).
 *
 *   test_gguf                       run the tests
 *   test_gguf --write-fixture PATH  write the shared fixture (for check_gguf.py) */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/gguf.h"
#include "model/test_gguf_fixture.h"
#include "testing.h"

static char err[512];

static bool has(const char *s, const char *sub) {
    return s && strstr(s, sub) != NULL;
}

/* First occurrence of needle in hay, or -1 (needles here are unique names). */
static long find_bytes(const uint8_t *hay, size_t n, const void *needle, size_t k) {
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return (long)i;
    return -1;
}

static void put_u64_at(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u32_at(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Parse an exact-size heap copy, so ASan sees any read past the end. */
static loom_status open_copy(const uint8_t *buf, size_t n, loom_gguf **g) {
    uint8_t *c = malloc(n ? n : 1);
    if (n) memcpy(c, buf, n);
    loom_status s = loom_gguf_open_memory(c, n, g, err, sizeof err);
    if (s == LOOM_OK) { /* keep c alive as long as g: touch everything, then close */
        for (int64_t i = 0; i < loom_gguf_n_tensors(*g); i++) {
            loom_gguf_tensor_info ti;
            if (loom_gguf_tensor(*g, i, &ti) == LOOM_OK && ti.nbytes)
                (void)((volatile const uint8_t *)ti.data)[ti.nbytes - 1];
        }
        loom_gguf_close(*g);
        *g = NULL;
    }
    free(c);
    return s;
}

static uint8_t *serialize(loom_gguf_writer *w, size_t *n) {
    void *buf = NULL;
    if (loom_gguf_writer_write_memory(w, &buf, n) != LOOM_OK) return NULL;
    return buf;
}

/* ------------------------------------------------------------ round trip */

static void check_fixture(loom_gguf *g) {
    uint8_t u8;
    int8_t i8;
    uint16_t u16;
    int16_t i16;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    bool b;
    const char *s;
    uint64_t len;
    CHECK(loom_gguf_version(g) == 3);
    CHECK(loom_gguf_alignment(g) == 32);
    CHECK(loom_gguf_get_str(g, "general.architecture", &s, &len) == LOOM_OK && len == 5 &&
          memcmp(s, "llama", 5) == 0);
    CHECK(loom_gguf_get_u8(g, "test.u8", &u8) == LOOM_OK && u8 == 200);
    CHECK(loom_gguf_get_i8(g, "test.i8", &i8) == LOOM_OK && i8 == -100);
    CHECK(loom_gguf_get_u16(g, "test.u16", &u16) == LOOM_OK && u16 == 60000);
    CHECK(loom_gguf_get_i16(g, "test.i16", &i16) == LOOM_OK && i16 == -30000);
    CHECK(loom_gguf_get_u32(g, "test.u32", &u32) == LOOM_OK && u32 == 4000000000u);
    CHECK(loom_gguf_get_i32(g, "test.i32", &i32) == LOOM_OK && i32 == -2000000000);
    CHECK(loom_gguf_get_f32(g, "test.f32", &f32) == LOOM_OK && f32 == 3.25f);
    CHECK(loom_gguf_get_bool(g, "test.bool", &b) == LOOM_OK && b);
    CHECK(loom_gguf_get_u64(g, "test.u64", &u64) == LOOM_OK && u64 == (1ull << 40) + 7);
    CHECK(loom_gguf_get_i64(g, "test.i64", &i64) == LOOM_OK && i64 == -(1ll << 40));
    CHECK(loom_gguf_get_f64(g, "test.f64", &f64) == LOOM_OK && f64 == -2.5e100);
    CHECK(loom_gguf_get_int(g, "test.u16", &i64) == LOOM_OK && i64 == 60000);
    CHECK(loom_gguf_get_int(g, "test.i8", &i64) == LOOM_OK && i64 == -100);

    /* type mismatches and absent keys */
    CHECK(loom_gguf_get_u32(g, "general.architecture", &u32) == LOOM_ERR_FORMAT);
    CHECK(has(loom_gguf_error(g), "general.architecture") && has(loom_gguf_error(g), "string") &&
          has(loom_gguf_error(g), "u32"));
    CHECK(loom_gguf_get_i32(g, "test.u32", &i32) == LOOM_ERR_FORMAT);
    CHECK(loom_gguf_get_f32(g, "no.such.key", &f32) == LOOM_ERR_INVALID_ARG);
    CHECK(has(loom_gguf_error(g), "no.such.key"));
    CHECK(loom_gguf_get_int(g, "test.f32", &i64) == LOOM_ERR_FORMAT);
    CHECK(loom_gguf_get_str(g, "test.arr_str", &s, &len) == LOOM_ERR_FORMAT);
    CHECK(loom_gguf_find_kv(g, "test.arr_str") >= 0 && loom_gguf_find_kv(g, "test.arr") == -1);

    /* arrays */
    loom_gguf_type et;
    uint64_t n;
    const void *data;
    CHECK(loom_gguf_get_arr_info(g, "test.arr_i32", &et, &n) == LOOM_OK && et == LOOM_GGUF_I32 &&
          n == FIXTURE_ARR_I32_N);
    CHECK(loom_gguf_get_arr_data(g, "test.arr_i32", LOOM_GGUF_I32, &data, &n) == LOOM_OK);
    int ok = 1;
    for (uint64_t i = 0; i < n; i++) {
        int32_t v;
        memcpy(&v, (const uint8_t *)data + 4 * i, 4);
        ok &= v == (int32_t)i * 7 - 1000;
    }
    CHECK(ok);
    CHECK(loom_gguf_get_arr_int(g, "test.arr_i32", 999, &i64) == LOOM_OK && i64 == 999 * 7 - 1000);
    CHECK(loom_gguf_get_arr_int(g, "test.arr_i32", 1000, &i64) == LOOM_ERR_INVALID_ARG);
    CHECK(has(loom_gguf_error(g), "index 1000"));
    CHECK(loom_gguf_get_arr_data(g, "test.arr_i32", LOOM_GGUF_U32, &data, &n) == LOOM_ERR_FORMAT);
    CHECK(loom_gguf_get_arr_f64(g, "test.arr_f32", 99, &f64) == LOOM_OK && f64 == 49.5);
    CHECK(loom_gguf_get_arr_f64(g, "test.arr_f64", 0, &f64) == LOOM_OK && f64 == 1.0 / 3.0);
    CHECK(loom_gguf_get_arr_int(g, "test.arr_u64", 1, &i64) == LOOM_ERR_FORMAT); /* > INT64_MAX */
    CHECK(loom_gguf_get_arr_int(g, "test.arr_i64", 0, &i64) == LOOM_OK && i64 == INT64_MIN);
    CHECK(loom_gguf_get_arr_int(g, "test.arr_i8", 0, &i64) == LOOM_OK && i64 == -128);
    CHECK(loom_gguf_get_arr_int(g, "test.arr_u16", 1, &i64) == LOOM_OK && i64 == 65535);
    CHECK(loom_gguf_get_arr_int(g, "test.arr_i16", 0, &i64) == LOOM_OK && i64 == -32768);
    CHECK(loom_gguf_get_arr_int(g, "test.arr_u32", 1, &i64) == LOOM_OK && i64 == 4294967295ll);
    CHECK(loom_gguf_get_arr_data(g, "test.arr_u8", LOOM_GGUF_U8, &data, &n) == LOOM_OK &&
          n == 256 && ((const uint8_t *)data)[255] == 255);
    CHECK(loom_gguf_get_arr_data(g, "test.arr_bool", LOOM_GGUF_BOOL, &data, &n) == LOOM_OK &&
          n == 3 && memcmp(data, "\1\0\1", 3) == 0);
    CHECK(loom_gguf_get_arr_info(g, "test.arr_empty", &et, &n) == LOOM_OK && n == 0 &&
          et == LOOM_GGUF_F32);
    CHECK(loom_gguf_get_arr_info(g, "test.arr_str", &et, &n) == LOOM_OK && et == LOOM_GGUF_STRING &&
          n == 4);
    for (uint64_t i = 0; i < 4; i++)
        CHECK(loom_gguf_get_arr_str(g, "test.arr_str", i, &s, &len) == LOOM_OK &&
              len == strlen(fixture_strs[i]) && memcmp(s, fixture_strs[i], len) == 0);
    CHECK(loom_gguf_get_arr_str(g, "test.arr_i32", 0, &s, &len) == LOOM_ERR_FORMAT);
    CHECK(has(loom_gguf_error(g), "test.arr_i32") && has(loom_gguf_error(g), "i32"));

    /* tensors: shapes, types, exact bytes, alignment */
    CHECK(loom_gguf_n_tensors(g) == (int64_t)FIXTURE_N_TENSORS);
    for (size_t k = 0; k < FIXTURE_N_TENSORS; k++) {
        const fixture_tensor *ft = &fixture_tensors[k];
        int64_t i = loom_gguf_find_tensor(g, ft->name);
        CHECK_MSG(i == (int64_t)k, "tensor %s", ft->name);
        loom_gguf_tensor_info ti;
        if (i < 0 || loom_gguf_tensor(g, i, &ti) != LOOM_OK) {
            CHECK(0);
            continue;
        }
        CHECK(strcmp(ti.name, ft->name) == 0 && ti.ggml_type == ft->ggml_type &&
              ti.n_dims == ft->n_dims);
        CHECK(memcmp(ti.ne, ft->ne, sizeof ti.ne) == 0);
        CHECK(ti.offset % 32 == 0 && (loom_gguf_data_offset(g) + ti.offset) % 32 == 0);
        int same = 1;
        for (size_t b2 = 0; b2 < ti.nbytes; b2++)
            same &= ((const uint8_t *)ti.data)[b2] == fixture_byte(k, b2);
        CHECK_MSG(same, "data of %s", ft->name);
        loom_dtype dt;
        loom_status ds = loom_gguf_tensor_dtype(g, i, &dt);
        /* q4_K (ggml type 12) loads as loom's q4_K since issue 17; an
         * unsupported type is test_errors' iq4_xs. */
        if (ft->ggml_type == 12)
            CHECK(ds == LOOM_OK && dt == LOOM_Q4_K && strcmp(ti.type_name, "q4_K") == 0 &&
                  ti.nbytes == 2 * 144);
        {
            uint32_t back = 999;
            CHECK(ds == LOOM_OK && loom_ggml_type_from_dtype(dt, &back) == LOOM_OK &&
                  back == ft->ggml_type);
            CHECK(ti.nbytes ==
                  loom_dtype_nbytes(dt, ft->ne[0] * ft->ne[1] * ft->ne[2] * ft->ne[3]));
        }
    }
    CHECK(loom_gguf_find_tensor(g, "t.nope") == -1);
    loom_gguf_tensor_info ti;
    CHECK(loom_gguf_tensor(g, (int64_t)FIXTURE_N_TENSORS, &ti) == LOOM_ERR_INVALID_ARG);
}

static void test_round_trip(void) {
    loom_gguf_writer *w = NULL;
    uint8_t **bufs = NULL;
    CHECK(loom_gguf_writer_new(&w) == LOOM_OK);
    CHECK(fixture_build(w, &bufs) == LOOM_OK);
    size_t n = 0;
    uint8_t *buf = serialize(w, &n);
    CHECK(buf != NULL);
    loom_gguf *g = NULL;
    CHECK(loom_gguf_open_memory(buf, n, &g, err, sizeof err) == LOOM_OK);
    if (g) check_fixture(g);
    loom_gguf_close(g);

    /* the same through a file and mmap */
    char path[64];
    snprintf(path, sizeof path, "test_gguf_%d.gguf", (int)getpid());
    CHECK(loom_gguf_writer_write(w, path) == LOOM_OK);
    g = NULL;
    CHECK_MSG(loom_gguf_open(path, &g, err, sizeof err) == LOOM_OK, "%s", err);
    if (g) {
        check_fixture(g);
        CHECK(loom_gguf_file_size(g) == n);
    }
    loom_gguf_close(g);
    FILE *f = fopen(path, "rb");
    uint8_t *disk = malloc(n + 1);
    CHECK(f && fread(disk, 1, n + 1, f) == n && memcmp(disk, buf, n) == 0);
    if (f) fclose(f);
    free(disk);
    remove(path);
    CHECK(loom_gguf_open(path, &g, err, sizeof err) == LOOM_ERR_IO && g == NULL && has(err, path));
    free(buf);
    fixture_free(bufs);
    loom_gguf_writer_free(w);
}

static void test_large_and_alignment(void) {
    loom_gguf_writer *w = NULL;
    CHECK(loom_gguf_writer_new(&w) == LOOM_OK);
    enum { NS = 20000, NI = 300000 };
    char **strs = malloc(NS * sizeof *strs);
    for (int i = 0; i < NS; i++) {
        strs[i] = malloc(16);
        snprintf(strs[i], 16, "tok%d", i);
    }
    int32_t *ids = malloc(NI * sizeof *ids);
    for (int i = 0; i < NI; i++)
        ids[i] = i ^ 0x5a5a;
    CHECK(loom_gguf_writer_set_u32(w, "general.alignment", 64) == LOOM_OK);
    CHECK(loom_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)strs, NS) ==
          LOOM_OK);
    CHECK(loom_gguf_writer_set_arr(w, "big.i32", LOOM_GGUF_I32, ids, NI) == LOOM_OK);
    float *wt = malloc(4 * 33 * sizeof *wt);
    for (int i = 0; i < 4 * 33; i++)
        wt[i] = (float)i;
    int64_t ne1[2] = {33, 4}, ne2[1] = {7};
    CHECK(loom_gguf_writer_add_tensor(w, "odd", LOOM_F32, 2, ne1, wt) == LOOM_OK);
    CHECK(loom_gguf_writer_add_tensor(w, "odd2", LOOM_F32, 1, ne2, wt) == LOOM_OK);
    size_t n;
    uint8_t *buf = serialize(w, &n);
    loom_gguf *g = NULL;
    CHECK(loom_gguf_open_memory(buf, n, &g, err, sizeof err) == LOOM_OK);
    if (g) {
        CHECK(loom_gguf_alignment(g) == 64 && loom_gguf_data_offset(g) % 64 == 0);
        const char *s;
        uint64_t len;
        CHECK(loom_gguf_get_arr_str(g, "tokenizer.ggml.tokens", NS - 1, &s, &len) == LOOM_OK &&
              len == 8 && memcmp(s, "tok19999", 8) == 0);
        const void *d;
        uint64_t cnt;
        CHECK(loom_gguf_get_arr_data(g, "big.i32", LOOM_GGUF_I32, &d, &cnt) == LOOM_OK &&
              cnt == NI && memcmp(d, ids, sizeof(int32_t) * NI) == 0);
        loom_gguf_tensor_info ti;
        CHECK(loom_gguf_tensor(g, 1, &ti) == LOOM_OK && ti.offset == 576 && ti.nbytes == 28 &&
              memcmp(ti.data, wt, 28) == 0); /* 4*33*4 = 528 bytes, padded to 576 */
    }
    loom_gguf_close(g);
    free(buf);
    loom_gguf_writer_free(w);
    for (int i = 0; i < NS; i++)
        free(strs[i]);
    free(strs);
    free(ids);
    free(wt);
}

static void test_writer_errors(void) {
    loom_gguf_writer *w = NULL;
    CHECK(loom_gguf_writer_new(&w) == LOOM_OK);
    CHECK(loom_gguf_writer_set_u32(w, "a", 1) == LOOM_OK);
    CHECK(loom_gguf_writer_set_f32(w, "a", 1) == LOOM_ERR_INVALID_ARG);
    CHECK(has(loom_gguf_writer_error(w), "'a' set twice"));
    CHECK(loom_gguf_writer_set_u32(w, "general.alignment", 48) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_gguf_writer_set_u32(w, "general.alignment", 1u << 30) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_gguf_writer_set_u64(w, "general.alignment", 64) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_gguf_writer_set_u32(w, "", 1) == LOOM_ERR_INVALID_ARG);
    uint8_t bad_bool[2] = {0, 2};
    CHECK(loom_gguf_writer_set_arr(w, "bb", LOOM_GGUF_BOOL, bad_bool, 2) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_gguf_writer_set_arr(w, "bs", LOOM_GGUF_STRING, bad_bool, 2) == LOOM_ERR_INVALID_ARG);
    uint8_t data[64 * 34] = {0};
    int64_t ne[2] = {64, 1}, ne_bad[2] = {48, 1}, ne_zero[2] = {64, 0};
    CHECK(loom_gguf_writer_add_tensor(w, "x", LOOM_NF4, 2, ne, data) == LOOM_ERR_UNSUPPORTED);
    CHECK(loom_gguf_writer_add_tensor(w, "x", LOOM_Q8_0, 2, ne_bad, data) == LOOM_ERR_INVALID_ARG);
    CHECK(has(loom_gguf_writer_error(w), "block"));
    CHECK(loom_gguf_writer_add_tensor(w, "x", LOOM_Q8_0, 2, ne_zero, data) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_gguf_writer_add_tensor(w, "x", LOOM_Q8_0, 5, ne, data) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_gguf_writer_add_tensor(w, "x", LOOM_Q8_0, 2, ne, data) == LOOM_OK);
    CHECK(loom_gguf_writer_add_tensor(w, "x", LOOM_Q8_0, 2, ne, data) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_gguf_writer_add_tensor_ggml(w, "y", 4, 2, ne, data) ==
          LOOM_ERR_INVALID_ARG); /* removed id */
    CHECK(loom_gguf_writer_write(w, "/nonexistent-dir/x.gguf") == LOOM_ERR_IO);
    loom_gguf_writer_free(w);
}

/* ------------------------------------------------------------ malformed files */

/* A small valid file: two KVs, tensors "wa" (f32 [8,2]) and "wb" (q8_0 [32]). */
static uint8_t *small_file(size_t *n, uint32_t wb_type) {
    static float fa[16];
    static uint8_t qb[2 * 144];
    loom_gguf_writer *w = NULL;
    loom_gguf_writer_new(&w);
    loom_gguf_writer_set_str(w, "general.architecture", "llama");
    loom_gguf_writer_set_u32(w, "llama.block_count", 2);
    int64_t nea[2] = {8, 2}, neb[1] = {wb_type == 23 ? 256 : 32}; /* iq4_xs: 136 B */
    loom_gguf_writer_add_tensor(w, "wa", LOOM_F32, 2, nea, fa);
    loom_gguf_writer_add_tensor_ggml(w, "wb", wb_type, 1, neb, qb);
    uint8_t *buf = serialize(w, n);
    loom_gguf_writer_free(w);
    return buf;
}

/* Offset of the field right after tensor `name`'s name in its info. */
static size_t after_name(const uint8_t *buf, size_t n, const char *name) {
    uint8_t pat[16];
    size_t k = strlen(name);
    put_u64_at(pat, k);
    memcpy(pat + 8, name, k);
    long at = find_bytes(buf, n, pat, 8 + k);
    return at < 0 ? 0 : (size_t)at + 8 + k;
}

static loom_status corrupt(const uint8_t *base, size_t n, size_t at, const void *bytes, size_t k) {
    uint8_t *c = malloc(n);
    memcpy(c, base, n);
    memcpy(c + at, bytes, k);
    loom_gguf *g = NULL;
    loom_status s = open_copy(c, n, &g);
    free(c);
    return s;
}

static void test_truncation(void) {
    size_t n;
    uint8_t *buf = small_file(&n, LOOM_GGML_TYPE_Q8_0);
    loom_gguf *g = NULL;
    /* end of the last byte that matters: wb's data */
    CHECK(loom_gguf_open_memory(buf, n, &g, err, sizeof err) == LOOM_OK);
    size_t need_n = 0;
    if (g) {
        loom_gguf_tensor_info ti;
        loom_gguf_tensor(g, 1, &ti);
        need_n = loom_gguf_data_offset(g) + ti.offset + ti.nbytes;
    }
    loom_gguf_close(g);
    int bad = 0, msg_ok = 1;
    for (size_t len = 0; len < n; len++) {
        loom_status s = open_copy(buf, len, &g);
        bool want_ok = len >= need_n;
        if ((s == LOOM_OK) != want_ok) {
            bad++;
            fprintf(stderr, "truncated to %zu: status %d (%s)\n", len, s, err);
        }
        if (!want_ok && s == LOOM_ERR_FORMAT && !has(err, "truncated") && !has(err, "past") &&
            !has(err, "cannot fit"))
            msg_ok = 0, fprintf(stderr, "truncated to %zu: unexpected message: %s\n", len, err);
    }
    CHECK(bad == 0);
    CHECK(msg_ok);
    CHECK(open_copy(buf, 0, &g) == LOOM_ERR_FORMAT && has(err, "magic"));
    free(buf);
}

static void test_corruptions(void) {
    size_t n;
    uint8_t *buf = small_file(&n, LOOM_GGML_TYPE_Q8_0);
    loom_gguf *g = NULL;
    uint8_t u8[8];

    CHECK(corrupt(buf, n, 0, "GGUG", 4) == LOOM_ERR_FORMAT && has(err, "bad magic") &&
          has(err, "byte 0"));
    put_u32_at(u8, 1);
    CHECK(corrupt(buf, n, 4, u8, 4) == LOOM_ERR_UNSUPPORTED && has(err, "version 1"));
    put_u32_at(u8, 0);
    CHECK(corrupt(buf, n, 4, u8, 4) == LOOM_ERR_FORMAT && has(err, "version 0"));
    put_u32_at(u8, 4);
    CHECK(corrupt(buf, n, 4, u8, 4) == LOOM_ERR_UNSUPPORTED && has(err, "version 4"));
    put_u32_at(u8, 0x03000000u);
    CHECK(corrupt(buf, n, 4, u8, 4) == LOOM_ERR_UNSUPPORTED && has(err, "big-endian"));
    put_u32_at(u8, 2);
    CHECK(corrupt(buf, n, 4, u8, 4) == LOOM_OK); /* v2 has the same layout */

    put_u64_at(u8, 1ull << 60);
    CHECK(corrupt(buf, n, 8, u8, 8) == LOOM_ERR_FORMAT && has(err, "cannot fit"));
    put_u64_at(u8, UINT64_MAX);
    CHECK(corrupt(buf, n, 16, u8, 8) == LOOM_ERR_FORMAT && has(err, "cannot fit"));
    put_u64_at(u8, 3); /* one tensor info more than there is */
    CHECK(corrupt(buf, n, 8, u8, 8) == LOOM_ERR_FORMAT);

    /* first key's length runs past the end */
    put_u64_at(u8, n);
    CHECK(corrupt(buf, n, 24, u8, 8) == LOOM_ERR_FORMAT && has(err, "string length") &&
          has(err, "kv #0") && has(err, "byte 24"));
    /* value type 13 does not exist */
    size_t kv1 = 24 + 8 + strlen("general.architecture");
    put_u32_at(u8, 13);
    CHECK(corrupt(buf, n, kv1, u8, 4) == LOOM_ERR_FORMAT && has(err, "unknown value type 13") &&
          has(err, "general.architecture"));
    /* a NUL inside a key */
    CHECK(corrupt(buf, n, 24 + 8 + 3, "\0", 1) == LOOM_ERR_FORMAT && has(err, "NUL"));
    /* a key renamed to another of equal length stays valid */
    long k2 = find_bytes(buf, n, "llama.block_count", 17);
    CHECK(corrupt(buf, n, (size_t)k2, "general.architect", 17) == LOOM_OK);

    size_t nd_a = after_name(buf, n, "wa"), nd_b = after_name(buf, n, "wb");
    CHECK(nd_a > 0 && nd_b > 0);
    put_u32_at(u8, 5);
    CHECK(corrupt(buf, n, nd_a, u8, 4) == LOOM_ERR_FORMAT && has(err, "'wa'") &&
          has(err, "n_dims 5"));
    put_u32_at(u8, 0);
    CHECK(corrupt(buf, n, nd_a, u8, 4) == LOOM_ERR_FORMAT && has(err, "n_dims 0"));
    put_u64_at(u8, 0);
    CHECK(corrupt(buf, n, nd_a + 4, u8, 8) == LOOM_ERR_FORMAT && has(err, "'wa'") &&
          has(err, "dim 0 is 0"));
    uint8_t dims[16];
    put_u64_at(dims, 1ull << 40);
    put_u64_at(dims + 8, 1ull << 40);
    CHECK(corrupt(buf, n, nd_a + 4, dims, 16) == LOOM_ERR_FORMAT && has(err, "overflows"));
    put_u64_at(dims, 1ull << 30); /* 2^31 f32 elements: valid header, data past EOF */
    put_u64_at(dims + 8, 2);
    CHECK(corrupt(buf, n, nd_a + 4, dims, 16) == LOOM_ERR_FORMAT && has(err, "'wa'") &&
          has(err, "past the end"));
    put_u64_at(u8, 33); /* q8_0 row of 33 values */
    CHECK(corrupt(buf, n, nd_b + 4, u8, 8) == LOOM_ERR_FORMAT && has(err, "'wb'") &&
          has(err, "block size"));
    /* type and offset of wb */
    size_t ty_b = nd_b + 4 + 8, off_b = ty_b + 4;
    put_u32_at(u8, 99);
    CHECK(corrupt(buf, n, ty_b, u8, 4) == LOOM_ERR_UNSUPPORTED && has(err, "'wb'") &&
          has(err, "99"));
    put_u64_at(u8, 1ull << 40);
    CHECK(corrupt(buf, n, off_b, u8, 8) == LOOM_ERR_FORMAT && has(err, "'wb'") &&
          has(err, "past the end"));
    put_u64_at(u8, UINT64_MAX - 31);
    CHECK(corrupt(buf, n, off_b, u8, 8) == LOOM_ERR_FORMAT && has(err, "'wb'"));
    put_u64_at(u8, 64 + 1);
    CHECK(corrupt(buf, n, off_b, u8, 8) == LOOM_ERR_FORMAT && has(err, "'wb'") &&
          has(err, "alignment"));
    /* duplicate tensor name: rename wb to wa */
    CHECK(corrupt(buf, n, nd_b - 1, "a", 1) == LOOM_ERR_FORMAT &&
          has(err, "duplicate tensor name 'wa'"));
    free(buf);

    /* unsupported (but valid) tensor type: listed, reported by name */
    buf = small_file(&n, 23);
    CHECK(loom_gguf_open_memory(buf, n, &g, err, sizeof err) == LOOM_OK);
    if (g) {
        loom_dtype dt;
        loom_gguf_tensor_info ti;
        CHECK(loom_gguf_tensor(g, 1, &ti) == LOOM_OK && strcmp(ti.type_name, "iq4_xs") == 0);
        CHECK(loom_gguf_tensor_dtype(g, 1, &dt) == LOOM_ERR_UNSUPPORTED);
        CHECK(has(loom_gguf_error(g), "'wb'") && has(loom_gguf_error(g), "iq4_xs"));
        CHECK(loom_gguf_tensor_dtype(g, 0, &dt) == LOOM_OK && dt == LOOM_F32);
    }
    loom_gguf_close(g);
    free(buf);
}

/* Hand-built files for what the writer cannot produce. */
typedef struct raw {
    uint8_t b[512];
    size_t n;
} raw;
static void r32(raw *r, uint32_t v) {
    put_u32_at(r->b + r->n, v), r->n += 4;
}
static void r64(raw *r, uint64_t v) {
    put_u64_at(r->b + r->n, v), r->n += 8;
}
static void rstr(raw *r, const char *s) {
    r64(r, strlen(s));
    memcpy(r->b + r->n, s, strlen(s));
    r->n += strlen(s);
}
static void rhead(raw *r, uint64_t nt, uint64_t nkv) {
    r->n = 0;
    memcpy(r->b, "GGUF", 4);
    r->n = 4;
    r32(r, 3);
    r64(r, nt);
    r64(r, nkv);
}

static void test_handmade(void) {
    raw r;
    loom_gguf *g = NULL;
    /* array of arrays (one level: allowed) */
    rhead(&r, 0, 1);
    rstr(&r, "nested");
    r32(&r, LOOM_GGUF_ARRAY);
    r32(&r, LOOM_GGUF_ARRAY);
    r64(&r, 2);
    r32(&r, LOOM_GGUF_U16), r64(&r, 2), r32(&r, 0x00020001u);
    r32(&r, LOOM_GGUF_STRING), r64(&r, 1), rstr(&r, "xy");
    CHECK(loom_gguf_open_memory(r.b, r.n, &g, err, sizeof err) == LOOM_OK);
    if (g) {
        loom_gguf_type et;
        const void *d;
        uint64_t cnt;
        CHECK(loom_gguf_get_arr_sub(g, "nested", 0, &et, &d, &cnt) == LOOM_OK &&
              et == LOOM_GGUF_U16 && cnt == 2 && memcmp(d, "\1\0\2\0", 4) == 0);
        CHECK(loom_gguf_get_arr_sub(g, "nested", 1, &et, &d, &cnt) == LOOM_OK &&
              et == LOOM_GGUF_STRING && cnt == 1 && memcmp((const uint8_t *)d + 8, "xy", 2) == 0);
        CHECK(loom_gguf_get_arr_sub(g, "nested", 2, &et, &d, &cnt) == LOOM_ERR_INVALID_ARG);
    }
    loom_gguf_close(g);
    /* array of arrays of arrays: rejected */
    rhead(&r, 0, 1);
    rstr(&r, "deep");
    r32(&r, LOOM_GGUF_ARRAY), r32(&r, LOOM_GGUF_ARRAY), r64(&r, 1);
    r32(&r, LOOM_GGUF_ARRAY), r64(&r, 1);
    r32(&r, LOOM_GGUF_U8), r64(&r, 0);
    CHECK(open_copy(r.b, r.n, &g) == LOOM_ERR_FORMAT && has(err, "nested") && has(err, "'deep'"));
    /* bool that is neither 0 nor 1 */
    rhead(&r, 0, 1);
    rstr(&r, "flag");
    r32(&r, LOOM_GGUF_BOOL);
    r.b[r.n++] = 2;
    CHECK(open_copy(r.b, r.n, &g) == LOOM_ERR_FORMAT && has(err, "'flag'") && has(err, "bool"));
    /* absurd array count */
    rhead(&r, 0, 1);
    rstr(&r, "arr");
    r32(&r, LOOM_GGUF_ARRAY), r32(&r, LOOM_GGUF_U64), r64(&r, 1ull << 61);
    CHECK(open_copy(r.b, r.n, &g) == LOOM_ERR_FORMAT && has(err, "'arr'") &&
          has(err, "cannot fit"));
    /* bad array element type */
    rhead(&r, 0, 1);
    rstr(&r, "arr");
    r32(&r, LOOM_GGUF_ARRAY), r32(&r, 77), r64(&r, 0);
    CHECK(open_copy(r.b, r.n, &g) == LOOM_ERR_FORMAT && has(err, "unknown value type 77"));
    /* general.alignment of the wrong type / not a power of two */
    rhead(&r, 0, 1);
    rstr(&r, "general.alignment");
    r32(&r, LOOM_GGUF_U64), r64(&r, 64);
    CHECK(open_copy(r.b, r.n, &g) == LOOM_ERR_FORMAT && has(err, "general.alignment") &&
          has(err, "u64"));
    rhead(&r, 0, 1);
    rstr(&r, "general.alignment");
    r32(&r, LOOM_GGUF_U32), r32(&r, 24);
    CHECK(open_copy(r.b, r.n, &g) == LOOM_ERR_FORMAT && has(err, "power of two"));
    rhead(&r, 0, 1); /* power of two, but absurd (fuzzer find: GiB of padding) */
    rstr(&r, "general.alignment");
    r32(&r, LOOM_GGUF_U32), r32(&r, 1u << 30);
    CHECK(open_copy(r.b, r.n, &g) == LOOM_ERR_FORMAT && has(err, "power of two up to"));
    /* duplicate keys */
    rhead(&r, 0, 2);
    rstr(&r, "k"), r32(&r, LOOM_GGUF_U8), r.b[r.n++] = 1;
    rstr(&r, "k"), r32(&r, LOOM_GGUF_U8), r.b[r.n++] = 2;
    CHECK(open_copy(r.b, r.n, &g) == LOOM_ERR_FORMAT && has(err, "duplicate key 'k'"));
    /* empty key, empty file-level everything */
    rhead(&r, 0, 1);
    rstr(&r, ""), r32(&r, LOOM_GGUF_U8), r.b[r.n++] = 1;
    CHECK(open_copy(r.b, r.n, &g) == LOOM_ERR_FORMAT && has(err, "empty key"));
    rhead(&r, 0, 0);
    CHECK(open_copy(r.b, r.n, &g) == LOOM_OK);
    /* tensor info whose data section start lies past EOF */
    rhead(&r, 1, 0);
    rstr(&r, "t"), r32(&r, 1), r64(&r, 1), r32(&r, 0), r64(&r, 0);
    CHECK(open_copy(r.b, r.n, &g) == LOOM_ERR_FORMAT && has(err, "truncated"));
}

/* Files written by the reference writer (PyPI gguf, committed as fuzz seeds
 * by scripts/check_gguf.py --make-seeds): loom must read them the same way. */
static void test_gguf_py_files(void) {
    const char *src = getenv("LOOM_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fuzz/corpus/gguf/gguf_py_small.gguf", src ? src : ".");
    loom_gguf *g = NULL;
    CHECK_MSG(loom_gguf_open(path, &g, err, sizeof err) == LOOM_OK, "%s", err);
    if (g) {
        uint32_t u32;
        float f;
        bool b = true;
        const char *s;
        uint64_t len;
        double d;
        CHECK(loom_gguf_get_u32(g, "llama.block_count", &u32) == LOOM_OK && u32 == 2);
        CHECK(loom_gguf_get_u32(g, "llama.context_length", &u32) == LOOM_OK && u32 == 128);
        CHECK(loom_gguf_get_f32(g, "llama.rope.freq_base", &f) == LOOM_OK && f == 500000.0f);
        CHECK(loom_gguf_get_bool(g, "x.flag", &b) == LOOM_OK && !b);
        CHECK(loom_gguf_get_str(g, "general.architecture", &s, &len) == LOOM_OK && len == 5);
        CHECK(loom_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 3, &s, &len) == LOOM_OK &&
              len == 3 && memcmp(s, "b\xc3\xa9", 3) == 0);
        CHECK(loom_gguf_get_arr_f64(g, "tokenizer.ggml.scores", 2, &d) == LOOM_OK && d == -2.5);
        loom_gguf_tensor_info ti;
        loom_dtype dt;
        /* numpy shape (4, 8) is GGUF dims [8, 4]: ne[0] innermost */
        CHECK(loom_gguf_tensor(g, loom_gguf_find_tensor(g, "tok_embd.weight"), &ti) == LOOM_OK &&
              ti.n_dims == 2 && ti.ne[0] == 8 && ti.ne[1] == 4 && ti.nbytes == 128);
        float row1[8];
        memcpy(row1, (const uint8_t *)ti.data + 32, sizeof row1);
        CHECK(row1[0] == 8.0f && row1[7] == 15.0f);
        CHECK(loom_gguf_tensor(g, loom_gguf_find_tensor(g, "norm.weight"), &ti) == LOOM_OK &&
              ti.ne[0] == 8 && ((const uint8_t *)ti.data)[1] == 0x3c);
        int64_t qi = loom_gguf_find_tensor(g, "blk.0.q8.weight");
        CHECK(loom_gguf_tensor(g, qi, &ti) == LOOM_OK && ti.ne[0] == 32 && ti.ne[1] == 2 &&
              ti.nbytes == 68);
        CHECK(loom_gguf_tensor_dtype(g, qi, &dt) == LOOM_OK && dt == LOOM_Q8_0);
    }
    loom_gguf_close(g);
    snprintf(path, sizeof path, "%s/tests/fuzz/corpus/gguf/gguf_py_align64.gguf", src ? src : ".");
    g = NULL;
    CHECK_MSG(loom_gguf_open(path, &g, err, sizeof err) == LOOM_OK, "%s", err);
    if (g) {
        loom_gguf_tensor_info ti;
        CHECK(loom_gguf_alignment(g) == 64 && loom_gguf_data_offset(g) == 256);
        CHECK(loom_gguf_tensor(g, 1, &ti) == LOOM_OK && ti.offset == 64 &&
              ti.ggml_type == LOOM_GGML_TYPE_I32);
    }
    loom_gguf_close(g);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-fixture") == 0) {
        loom_gguf_writer *w = NULL;
        uint8_t **bufs = NULL;
        loom_status s = loom_gguf_writer_new(&w);
        if (s == LOOM_OK) s = fixture_build(w, &bufs);
        if (s == LOOM_OK) s = loom_gguf_writer_write(w, argv[2]);
        if (s != LOOM_OK)
            fprintf(stderr, "write-fixture: %s: %s\n", loom_status_str(s),
                    loom_gguf_writer_error(w));
        fixture_free(bufs);
        loom_gguf_writer_free(w);
        return s == LOOM_OK ? 0 : 1;
    }
    test_round_trip();
    test_large_and_alignment();
    test_writer_errors();
    test_truncation();
    test_corruptions();
    test_handmade();
    test_gguf_py_files();
    return test_summary("test_gguf");
}
