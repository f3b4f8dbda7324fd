/* tests/model/test_gguf_fixture.h - the GGUF fixture shared by test_gguf (round
 * trip) and scripts/check_gguf.py (which rebuilds the same expectations in
 * Python, independently, and checks them with the PyPI gguf reader).
 * Keep both in sync: the Python side is LOOM_FIXTURE in check_gguf.py. */
#ifndef LOOM_TESTS_GGUF_FIXTURE_H
#define LOOM_TESTS_GGUF_FIXTURE_H

#include <stdint.h>
#include <stdlib.h>

#include "loom/gguf.h"

typedef struct fixture_tensor {
    const char *name;
    uint32_t ggml_type;
    int n_dims;
    int64_t ne[4];
} fixture_tensor;

static const fixture_tensor fixture_tensors[] = {
    {"t.f32", LOOM_GGML_TYPE_F32, 2, {8, 3, 1, 1}},
    {"t.f16", LOOM_GGML_TYPE_F16, 3, {16, 2, 2, 1}},
    {"t.bf16", LOOM_GGML_TYPE_BF16, 4, {4, 3, 2, 2}},
    {"t.i32", LOOM_GGML_TYPE_I32, 1, {5, 1, 1, 1}},
    {"t.q8_0", LOOM_GGML_TYPE_Q8_0, 2, {64, 3, 1, 1}},
    {"t.q4_0", LOOM_GGML_TYPE_Q4_0, 2, {32, 5, 1, 1}},
    {"t.q4_K", 12, 2, {256, 2, 1, 1}},
    {"t.q4_1", LOOM_GGML_TYPE_Q4_1, 2, {32, 3, 1, 1}},
    {"t.q5_0", LOOM_GGML_TYPE_Q5_0, 2, {64, 2, 1, 1}},
    {"t.q5_1", LOOM_GGML_TYPE_Q5_1, 2, {32, 2, 1, 1}},
};
#define FIXTURE_N_TENSORS (sizeof fixture_tensors / sizeof fixture_tensors[0])

/* Byte i of tensor k's data (Python: (i * 131 + k * 17 + 7) & 0xff). */
static inline uint8_t fixture_byte(size_t k, size_t i) {
    return (uint8_t)((i * 131 + k * 17 + 7) & 0xff);
}

static const char *const fixture_strs[] = {"a", "", "h\xc3\xa9llo", "<|eot_id|>"};
#define FIXTURE_ARR_I32_N 1000

/* Fill w with the fixture; *bufs receives the tensor data (caller frees each
 * and the array) since the writer only references it. */
static inline loom_status fixture_build(loom_gguf_writer *w, uint8_t ***bufs) {
    LOOM_TRY(loom_gguf_writer_set_str(w, "general.architecture", "llama"));
    LOOM_TRY(
        loom_gguf_writer_set_str(w, "general.name", "loom fixture \xc3\xbcn\xc3\xaf \xe2\x9c\x93"));
    LOOM_TRY(loom_gguf_writer_set_u8(w, "test.u8", 200));
    LOOM_TRY(loom_gguf_writer_set_i8(w, "test.i8", -100));
    LOOM_TRY(loom_gguf_writer_set_u16(w, "test.u16", 60000));
    LOOM_TRY(loom_gguf_writer_set_i16(w, "test.i16", -30000));
    LOOM_TRY(loom_gguf_writer_set_u32(w, "test.u32", 4000000000u));
    LOOM_TRY(loom_gguf_writer_set_i32(w, "test.i32", -2000000000));
    LOOM_TRY(loom_gguf_writer_set_f32(w, "test.f32", 3.25f));
    LOOM_TRY(loom_gguf_writer_set_bool(w, "test.bool", true));
    LOOM_TRY(loom_gguf_writer_set_u64(w, "test.u64", (1ull << 40) + 7));
    LOOM_TRY(loom_gguf_writer_set_i64(w, "test.i64", -(1ll << 40)));
    LOOM_TRY(loom_gguf_writer_set_f64(w, "test.f64", -2.5e100));
    int32_t ai32[FIXTURE_ARR_I32_N];
    for (int i = 0; i < FIXTURE_ARR_I32_N; i++)
        ai32[i] = i * 7 - 1000;
    LOOM_TRY(loom_gguf_writer_set_arr(w, "test.arr_i32", LOOM_GGUF_I32, ai32, FIXTURE_ARR_I32_N));
    float af32[100];
    for (int i = 0; i < 100; i++)
        af32[i] = (float)i * 0.5f;
    LOOM_TRY(loom_gguf_writer_set_arr(w, "test.arr_f32", LOOM_GGUF_F32, af32, 100));
    uint8_t au8[256];
    for (int i = 0; i < 256; i++)
        au8[i] = (uint8_t)i;
    LOOM_TRY(loom_gguf_writer_set_arr(w, "test.arr_u8", LOOM_GGUF_U8, au8, 256));
    const uint8_t abool[3] = {1, 0, 1};
    LOOM_TRY(loom_gguf_writer_set_arr(w, "test.arr_bool", LOOM_GGUF_BOOL, abool, 3));
    const int8_t ai8[3] = {-128, 0, 127};
    LOOM_TRY(loom_gguf_writer_set_arr(w, "test.arr_i8", LOOM_GGUF_I8, ai8, 3));
    const uint16_t au16[2] = {0, 65535};
    LOOM_TRY(loom_gguf_writer_set_arr(w, "test.arr_u16", LOOM_GGUF_U16, au16, 2));
    const int16_t ai16[2] = {-32768, 32767};
    LOOM_TRY(loom_gguf_writer_set_arr(w, "test.arr_i16", LOOM_GGUF_I16, ai16, 2));
    const uint32_t au32[2] = {0, 4294967295u};
    LOOM_TRY(loom_gguf_writer_set_arr(w, "test.arr_u32", LOOM_GGUF_U32, au32, 2));
    const uint64_t au64[2] = {0, 18446744073709551615ull};
    LOOM_TRY(loom_gguf_writer_set_arr(w, "test.arr_u64", LOOM_GGUF_U64, au64, 2));
    const int64_t ai64[2] = {INT64_MIN, INT64_MAX};
    LOOM_TRY(loom_gguf_writer_set_arr(w, "test.arr_i64", LOOM_GGUF_I64, ai64, 2));
    const double af64[2] = {1.0 / 3.0, -1e-300};
    LOOM_TRY(loom_gguf_writer_set_arr(w, "test.arr_f64", LOOM_GGUF_F64, af64, 2));
    LOOM_TRY(loom_gguf_writer_set_arr_str(w, "test.arr_str", fixture_strs, 4));
    LOOM_TRY(loom_gguf_writer_set_arr(w, "test.arr_empty", LOOM_GGUF_F32, NULL, 0));

    uint8_t **b = calloc(FIXTURE_N_TENSORS, sizeof *b);
    if (!b) return LOOM_ERR_OOM;
    *bufs = b;
    for (size_t k = 0; k < FIXTURE_N_TENSORS; k++) {
        const fixture_tensor *t = &fixture_tensors[k];
        int64_t nel = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        size_t nbytes;
        switch (t->ggml_type) {
        case LOOM_GGML_TYPE_F32:
        case LOOM_GGML_TYPE_I32:
            nbytes = (size_t)nel * 4;
            break;
        case LOOM_GGML_TYPE_F16:
        case LOOM_GGML_TYPE_BF16:
            nbytes = (size_t)nel * 2;
            break;
        case LOOM_GGML_TYPE_Q8_0:
            nbytes = (size_t)nel / 32 * 34;
            break;
        case LOOM_GGML_TYPE_Q4_0:
            nbytes = (size_t)nel / 32 * 18;
            break;
        case LOOM_GGML_TYPE_Q4_1:
        case LOOM_GGML_TYPE_Q5_0:
        case LOOM_GGML_TYPE_Q5_1: /* 20, 22, 24 bytes per 32 values */
            nbytes = (size_t)nel / 32 *
                     (t->ggml_type == LOOM_GGML_TYPE_Q4_1   ? 20
                      : t->ggml_type == LOOM_GGML_TYPE_Q5_0 ? 22
                                                            : 24);
            break;
        default:
            nbytes = (size_t)nel / 256 * 144;
            break; /* q4_K */
        }
        b[k] = malloc(nbytes);
        if (!b[k]) return LOOM_ERR_OOM;
        for (size_t i = 0; i < nbytes; i++)
            b[k][i] = fixture_byte(k, i);
        LOOM_TRY(
            loom_gguf_writer_add_tensor_ggml(w, t->name, t->ggml_type, t->n_dims, t->ne, b[k]));
    }
    return LOOM_OK;
}

static inline void fixture_free(uint8_t **bufs) {
    if (!bufs) return;
    for (size_t k = 0; k < FIXTURE_N_TENSORS; k++)
        free(bufs[k]);
    free(bufs);
}

#endif
