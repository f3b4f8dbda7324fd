/* tests/fuzz/fuzz_gguf.c - libFuzzer entry for the GGUF reader.
 *
 * Parses the input from memory; when it is accepted, reads every KV and
 * tensor through the public getters (so any index the validator let through
 * is exercised), then rewrites the file with the writer and checks that the
 * copy parses to the same tensors: a round-trip property, not just "no crash".
 * Invariant failures abort, which libFuzzer and ctest both report.
 *
 * Built as a libFuzzer binary with -DLOOM_FUZZ=ON (clang), and included by
 * tests/model/test_gguf_fuzz_corpus.c, the plain driver CI runs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_REQUIRE(cond)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_gguf: invariant failed: %s (%s:%d)\n", #cond, __FILE__,          \
                    __LINE__);                                                                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Read every element of KV i and copy it into w (nested arrays are skipped:
 * the writer has no API for them). Returns 1 when the KV was copied. */
static int fuzz_copy_kv(loom_gguf *g, int64_t i, loom_gguf_writer *w) {
    const char *key = loom_gguf_kv_key(g, i);
    loom_gguf_type t = loom_gguf_kv_type(g, i);
    FUZZ_REQUIRE(key != NULL && loom_gguf_find_kv(g, key) == i);
    union {
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
    } v;
    int64_t iv;
    switch (t) {
    case LOOM_GGUF_U8:
        FUZZ_REQUIRE(loom_gguf_get_u8(g, key, &v.u8) == LOOM_OK);
        return loom_gguf_writer_set_u8(w, key, v.u8) == LOOM_OK;
    case LOOM_GGUF_I8:
        FUZZ_REQUIRE(loom_gguf_get_i8(g, key, &v.i8) == LOOM_OK);
        return loom_gguf_writer_set_i8(w, key, v.i8) == LOOM_OK;
    case LOOM_GGUF_U16:
        FUZZ_REQUIRE(loom_gguf_get_u16(g, key, &v.u16) == LOOM_OK);
        return loom_gguf_writer_set_u16(w, key, v.u16) == LOOM_OK;
    case LOOM_GGUF_I16:
        FUZZ_REQUIRE(loom_gguf_get_i16(g, key, &v.i16) == LOOM_OK);
        return loom_gguf_writer_set_i16(w, key, v.i16) == LOOM_OK;
    case LOOM_GGUF_U32:
        FUZZ_REQUIRE(loom_gguf_get_u32(g, key, &v.u32) == LOOM_OK);
        FUZZ_REQUIRE(loom_gguf_get_int(g, key, &iv) == LOOM_OK && iv == (int64_t)v.u32);
        return loom_gguf_writer_set_u32(w, key, v.u32) == LOOM_OK;
    case LOOM_GGUF_I32:
        FUZZ_REQUIRE(loom_gguf_get_i32(g, key, &v.i32) == LOOM_OK);
        return loom_gguf_writer_set_i32(w, key, v.i32) == LOOM_OK;
    case LOOM_GGUF_U64:
        FUZZ_REQUIRE(loom_gguf_get_u64(g, key, &v.u64) == LOOM_OK);
        return loom_gguf_writer_set_u64(w, key, v.u64) == LOOM_OK;
    case LOOM_GGUF_I64:
        FUZZ_REQUIRE(loom_gguf_get_i64(g, key, &v.i64) == LOOM_OK);
        return loom_gguf_writer_set_i64(w, key, v.i64) == LOOM_OK;
    case LOOM_GGUF_F32:
        FUZZ_REQUIRE(loom_gguf_get_f32(g, key, &v.f32) == LOOM_OK);
        FUZZ_REQUIRE(loom_gguf_get_u32(g, key, &v.u32) == LOOM_ERR_FORMAT);
        return loom_gguf_writer_set_f32(w, key, v.f32) == LOOM_OK;
    case LOOM_GGUF_F64:
        FUZZ_REQUIRE(loom_gguf_get_f64(g, key, &v.f64) == LOOM_OK);
        return loom_gguf_writer_set_f64(w, key, v.f64) == LOOM_OK;
    case LOOM_GGUF_BOOL:
        FUZZ_REQUIRE(loom_gguf_get_bool(g, key, &v.b) == LOOM_OK);
        return loom_gguf_writer_set_bool(w, key, v.b) == LOOM_OK;
    case LOOM_GGUF_STRING: {
        const char *s;
        uint64_t len;
        FUZZ_REQUIRE(loom_gguf_get_str(g, key, &s, &len) == LOOM_OK);
        return loom_gguf_writer_set_strn(w, key, s, (size_t)len) == LOOM_OK;
    }
    case LOOM_GGUF_ARRAY:
        break;
    default:
        FUZZ_REQUIRE(0 && "unknown kv type");
    }
    loom_gguf_type et;
    uint64_t n;
    FUZZ_REQUIRE(loom_gguf_get_arr_info(g, key, &et, &n) == LOOM_OK);
    if (et == LOOM_GGUF_ARRAY) {
        for (uint64_t k = 0; k < n; k++) {
            loom_gguf_type st;
            const void *d;
            uint64_t c;
            FUZZ_REQUIRE(loom_gguf_get_arr_sub(g, key, k, &st, &d, &c) == LOOM_OK);
            FUZZ_REQUIRE(st != LOOM_GGUF_ARRAY && st < LOOM_GGUF_TYPE_COUNT);
        }
        return 0;
    }
    if (et == LOOM_GGUF_STRING) {
        /* collect NUL-free copies: the writer's string-array API takes C strings */
        char **strs = calloc(n ? n : 1, sizeof *strs);
        int ok = strs != NULL;
        for (uint64_t k = 0; ok && k < n; k++) {
            const char *s;
            uint64_t len;
            FUZZ_REQUIRE(loom_gguf_get_arr_str(g, key, k, &s, &len) == LOOM_OK);
            if (memchr(s, 0, (size_t)len))
                ok = 0;
            else if ((strs[k] = malloc((size_t)len + 1)) != NULL) {
                memcpy(strs[k], s, (size_t)len);
                strs[k][len] = '\0';
            } else
                ok = 0;
        }
        ok = ok && loom_gguf_writer_set_arr_str(w, key, (const char *const *)strs, n) == LOOM_OK;
        for (uint64_t k = 0; strs && k < n; k++)
            free(strs[k]);
        free(strs);
        return ok;
    }
    const void *d;
    FUZZ_REQUIRE(loom_gguf_get_arr_data(g, key, et, &d, &n) == LOOM_OK);
    for (uint64_t k = 0; k < n; k++) {
        double f;
        if (et == LOOM_GGUF_F32 || et == LOOM_GGUF_F64)
            FUZZ_REQUIRE(loom_gguf_get_arr_f64(g, key, k, &f) == LOOM_OK);
        else if (et != LOOM_GGUF_BOOL && et != LOOM_GGUF_U64)
            FUZZ_REQUIRE(loom_gguf_get_arr_int(g, key, k, &iv) == LOOM_OK);
    }
    return loom_gguf_writer_set_arr(w, key, et, d, n) == LOOM_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    loom_gguf *g = NULL;
    char err[256];
    if (loom_gguf_open_memory(data, size, &g, err, sizeof err) != LOOM_OK) {
        FUZZ_REQUIRE(g == NULL && err[0] != '\0');
        return 0;
    }
    FUZZ_REQUIRE(loom_gguf_version(g) == 2 || loom_gguf_version(g) == 3);
    loom_gguf_writer *w = NULL;
    FUZZ_REQUIRE(loom_gguf_writer_new(&w) == LOOM_OK);
    int all_copied = 1;
    for (int64_t i = 0; i < loom_gguf_n_kv(g); i++)
        all_copied &= fuzz_copy_kv(g, i, w);

    uint64_t sum = 0;
    for (int64_t i = 0; i < loom_gguf_n_tensors(g); i++) {
        loom_gguf_tensor_info ti;
        loom_dtype dt;
        FUZZ_REQUIRE(loom_gguf_tensor(g, i, &ti) == LOOM_OK);
        FUZZ_REQUIRE(loom_gguf_find_tensor(g, ti.name) == i && ti.type_name != NULL);
        FUZZ_REQUIRE(ti.n_dims >= 1 && ti.n_dims <= 4 && ti.nbytes > 0);
        const uint8_t *p = ti.data;
        FUZZ_REQUIRE(p >= data && p + ti.nbytes <= data + size);
        sum += p[0] + p[ti.nbytes - 1];
        if (loom_gguf_tensor_dtype(g, i, &dt) != LOOM_OK)
            FUZZ_REQUIRE(strstr(loom_gguf_error(g), ti.name) != NULL);
        FUZZ_REQUIRE(loom_gguf_writer_add_tensor_ggml(w, ti.name, ti.ggml_type, ti.n_dims, ti.ne,
                                                      ti.data) == LOOM_OK);
    }
    (void)sum;

    /* Round trip: what loom accepted, loom must write and read back the same. */
    void *out = NULL;
    size_t out_n = 0;
    FUZZ_REQUIRE(loom_gguf_writer_write_memory(w, &out, &out_n) == LOOM_OK);
    loom_gguf *g2 = NULL;
    loom_status s2 = loom_gguf_open_memory(out, out_n, &g2, err, sizeof err);
    if (s2 != LOOM_OK) fprintf(stderr, "fuzz_gguf: rewritten file rejected: %s\n", err);
    FUZZ_REQUIRE(s2 == LOOM_OK);
    FUZZ_REQUIRE(loom_gguf_n_tensors(g2) == loom_gguf_n_tensors(g));
    if (all_copied) FUZZ_REQUIRE(loom_gguf_n_kv(g2) == loom_gguf_n_kv(g));
    for (int64_t i = 0; i < loom_gguf_n_tensors(g); i++) {
        loom_gguf_tensor_info a, b;
        FUZZ_REQUIRE(loom_gguf_tensor(g, i, &a) == LOOM_OK &&
                     loom_gguf_tensor(g2, i, &b) == LOOM_OK);
        FUZZ_REQUIRE(strcmp(a.name, b.name) == 0 && a.ggml_type == b.ggml_type &&
                     a.nbytes == b.nbytes);
        FUZZ_REQUIRE(memcmp(a.ne, b.ne, sizeof a.ne) == 0 && memcmp(a.data, b.data, a.nbytes) == 0);
    }
    loom_gguf_close(g2);
    free(out);
    loom_gguf_writer_free(w);
    loom_gguf_close(g);
    return 0;
}
