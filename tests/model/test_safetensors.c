/* tests/model/test_safetensors.c - the safetensors reader on handcrafted
 * files (valid, sharded and malformed, written into a temp dir or kept in
 * memory), quantize-on-load, and the Hugging Face config.json reader. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loom/safetensors.h"
#include "hf_configs.h"
#include "testing.h"

/* ------------------------------------------------------------ file helpers */

typedef struct buf {
    uint8_t *p;
    size_t n;
} buf;

/* 8-byte length + header + data. */
static buf make_st(const char *header, const void *data, size_t data_n) {
    size_t hn = strlen(header);
    buf b = {malloc(8 + hn + data_n + 1), 8 + hn + data_n};
    for (int i = 0; i < 8; i++)
        b.p[i] = (uint8_t)((uint64_t)hn >> (8 * i));
    memcpy(b.p + 8, header, hn);
    if (data_n) memcpy(b.p + 8 + hn, data, data_n);
    return b;
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "cannot write %s", path);
    if (!f) return;
    CHECK(fwrite(p, 1, n, f) == n);
    fclose(f);
}

static char tmpdir[256];

static const char *tpath(const char *name) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

/* Open b from memory expecting failure with status want; the message must
 * contain needle (when not NULL). */
static void expect_bad(const char *what, buf b, loom_status want, const char *needle) {
    loom_safetensors *st = (loom_safetensors *)1;
    char err[512] = "";
    uint8_t *copy = malloc(b.n ? b.n : 1); /* exact size: ASan sees overreads */
    memcpy(copy, b.p, b.n);
    loom_status s = loom_safetensors_open_memory(copy, b.n, &st, err, sizeof err);
    CHECK_MSG(s == want, "%s: status %d, want %d (%s)", what, s, want, err);
    CHECK_MSG(st == NULL, "%s: context not NULL on failure", what);
    CHECK_MSG(err[0] != '\0', "%s: empty message", what);
    if (needle) CHECK_MSG(strstr(err, needle) != NULL, "%s: '%s' lacks '%s'", what, err, needle);
    free(copy);
    free(b.p);
}

static void expect_bad_hdr(const char *what, const char *header, size_t data_n,
                           const char *needle) {
    uint8_t *zeros = calloc(data_n + 1, 1);
    expect_bad(what, make_st(header, zeros, data_n), LOOM_ERR_FORMAT, needle);
    free(zeros);
}

/* ------------------------------------------------------------------ tests */

static void test_valid(void) {
    /* a: F32 [2,3] (24 B), b: F16 [4] (8 B), c: BF16 [2,32] (128 B), d: I64 [2] (16 B) */
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t bh[4], ch[64];
    for (int i = 0; i < 4; i++)
        bh[i] = loom_f32_to_f16(0.5f * (float)i);
    for (int i = 0; i < 64; i++)
        ch[i] = loom_f32_to_bf16((float)i - 32.0f);
    int64_t d[2] = {7, -7};
    uint8_t data[176];
    memcpy(data, a, 24);
    memcpy(data + 24, bh, 8);
    memcpy(data + 32, ch, 128);
    memcpy(data + 160, d, 16);
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"c\":{\"dtype\":\"BF16\",\"shape\":[2,32],\"data_offsets\":[32,160]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                      "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]},"
                      "\"d\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[160,176]}}   ";
    buf b = make_st(hdr, data, sizeof data);
    write_file(tpath("valid.safetensors"), b.p, b.n);

    for (int from_file = 0; from_file < 2; from_file++) {
        loom_safetensors *st = NULL;
        char err[512] = "";
        loom_status s =
            from_file ? loom_safetensors_open(tpath("valid.safetensors"), &st, err, sizeof err)
                      : loom_safetensors_open_memory(b.p, b.n, &st, err, sizeof err);
        CHECK_MSG(s == LOOM_OK, "open valid: %s", err);
        if (s != LOOM_OK) continue;
        CHECK(loom_safetensors_n_tensors(st) == 4);
        CHECK(loom_safetensors_n_shards(st) == 1);
        CHECK(loom_safetensors_find(st, "zz") == -1);
        const char *fmt = loom_safetensors_metadata(st, "format");
        CHECK(fmt && !strcmp(fmt, "pt"));
        CHECK(loom_safetensors_metadata(st, "nope") == NULL);
        /* file order is kept */
        loom_st_tensor_info ti;
        CHECK(loom_safetensors_tensor(st, 0, &ti) == LOOM_OK && !strcmp(ti.name, "c"));
        CHECK(loom_safetensors_tensor(st, 4, &ti) == LOOM_ERR_INVALID_ARG);
        CHECK(loom_safetensors_tensor(st, -1, &ti) == LOOM_ERR_INVALID_ARG);

        int64_t ia = loom_safetensors_find(st, "a");
        CHECK(ia == 1);
        CHECK(loom_safetensors_tensor(st, ia, &ti) == LOOM_OK);
        CHECK(ti.n_dims == 2 && ti.shape[0] == 2 && ti.shape[1] == 3);
        CHECK(ti.ne[0] == 3 && ti.ne[1] == 2 && ti.ne[2] == 1 && ti.ne[3] == 1);
        CHECK(ti.n_elements == 6 && ti.nbytes == 24 && !strcmp(ti.st_dtype, "F32"));
        CHECK(memcmp(ti.data, a, 24) == 0);
        loom_dtype dt;
        CHECK(loom_safetensors_tensor_dtype(st, ia, &dt) == LOOM_OK && dt == LOOM_F32);
        float f[6];
        CHECK(loom_safetensors_read(st, ia, LOOM_F32, f, sizeof f) == LOOM_OK);
        CHECK(memcmp(f, a, sizeof a) == 0);

        int64_t ib = loom_safetensors_find(st, "b");
        CHECK(loom_safetensors_tensor_dtype(st, ib, &dt) == LOOM_OK && dt == LOOM_F16);
        float fb[4];
        CHECK(loom_safetensors_read(st, ib, LOOM_F32, fb, sizeof fb) == LOOM_OK);
        CHECK(fb[0] == 0.0f && fb[3] == 1.5f);

        int64_t ic = loom_safetensors_find(st, "c");
        CHECK(loom_safetensors_tensor_dtype(st, ic, &dt) == LOOM_OK && dt == LOOM_BF16);
        float fc[64];
        CHECK(loom_safetensors_read(st, ic, LOOM_F32, fc, sizeof fc) == LOOM_OK);
        CHECK(fc[0] == -32.0f && fc[63] == 31.0f);
        /* BF16 -> q8_0: rows of 32 fit; same bytes as loom_convert */
        size_t nq;
        CHECK(loom_safetensors_nbytes_as(st, ic, LOOM_Q8_0, &nq) == LOOM_OK && nq == 2 * 34);
        uint8_t q[68], q2[68];
        CHECK(loom_safetensors_read(st, ic, LOOM_Q8_0, q, sizeof q) == LOOM_OK);
        CHECK(loom_convert(LOOM_F32, fc, LOOM_Q8_0, q2, 64) == LOOM_OK);
        CHECK(memcmp(q, q2, sizeof q) == 0);
        /* too small a destination */
        CHECK(loom_safetensors_read(st, ic, LOOM_Q8_0, q, 10) == LOOM_ERR_INVALID_ARG);
        CHECK(strstr(loom_safetensors_error(st), "'c'") != NULL);
        /* F16 [4] cannot be q4_0 (innermost 4) nor nf4 (4 elements) */
        CHECK(loom_safetensors_nbytes_as(st, ib, LOOM_Q4_0, &nq) == LOOM_ERR_INVALID_ARG);
        CHECK(strstr(loom_safetensors_error(st), "'b'") != NULL);
        CHECK(loom_safetensors_nbytes_as(st, ib, LOOM_NF4, &nq) == LOOM_ERR_INVALID_ARG);
        CHECK(loom_safetensors_nbytes_as(st, ib, LOOM_I32, &nq) == LOOM_ERR_INVALID_ARG);

        /* I64: opens, but loom does not compute with it; the message names both */
        int64_t id = loom_safetensors_find(st, "d");
        CHECK(loom_safetensors_tensor(st, id, &ti) == LOOM_OK && ti.elem_size == 8);
        CHECK(loom_safetensors_tensor_dtype(st, id, &dt) == LOOM_ERR_UNSUPPORTED);
        const char *e = loom_safetensors_error(st);
        CHECK_MSG(strstr(e, "'d'") && strstr(e, "I64"), "message: %s", e);
        CHECK(loom_safetensors_read(st, id, LOOM_F32, f, sizeof f) == LOOM_ERR_UNSUPPORTED);
        CHECK(loom_safetensors_load_dtype(st, id, LOOM_F16, &dt) == LOOM_ERR_UNSUPPORTED);

        /* load policy */
        CHECK(loom_safetensors_load_dtype(st, ib, LOOM_Q8_0, &dt) == LOOM_OK && dt == LOOM_F32);
        CHECK(loom_safetensors_load_dtype(st, ic, LOOM_Q4_0, &dt) == LOOM_OK && dt == LOOM_Q4_0);
        CHECK(loom_safetensors_load_dtype(st, ic, LOOM_NF4_DQ, &dt) == LOOM_OK &&
              dt == LOOM_NF4_DQ);
        CHECK(loom_safetensors_load_dtype(st, ia, LOOM_Q8_0, &dt) == LOOM_OK && dt == LOOM_F16);
        CHECK(loom_safetensors_load_dtype(st, ia, LOOM_BF16, &dt) == LOOM_OK && dt == LOOM_BF16);
        loom_safetensors_close(st);
    }
    free(b.p);
}

static void test_quantize_on_load(void) {
    /* F32 [4, 64] random-ish -> every target equals loom_convert of the data */
    enum { R = 4, C = 64, N = R * C };
    float w[N];
    uint32_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 1664525u + 1013904223u;
        w[i] = (float)((int)(x >> 8) % 2001 - 1000) / 300.0f;
    }
    char hdr[256];
    snprintf(hdr, sizeof hdr,
             "{\"w\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[0,%d]}}", R, C, N * 4);
    /* header of odd length: the data is unaligned, as safetensors allows */
    buf b = make_st(hdr, w, sizeof w);
    loom_safetensors *st = NULL;
    char err[256];
    CHECK(loom_safetensors_open_memory(b.p, b.n, &st, err, sizeof err) == LOOM_OK);
    const loom_dtype ts[] = {LOOM_F32,  LOOM_F16, LOOM_BF16,  LOOM_Q8_0,
                             LOOM_Q4_0, LOOM_NF4, LOOM_NF4_DQ};
    for (size_t k = 0; st && k < sizeof ts / sizeof ts[0]; k++) {
        size_t n = 0;
        CHECK(loom_safetensors_nbytes_as(st, 0, ts[k], &n) == LOOM_OK);
        CHECK(n == loom_dtype_nbytes(ts[k], N));
        uint8_t *got = malloc(n), *want = malloc(n);
        CHECK_MSG(loom_safetensors_read(st, 0, ts[k], got, n) == LOOM_OK, "%s: %s",
                  loom_dtype_name(ts[k]), loom_safetensors_error(st));
        CHECK(loom_convert(LOOM_F32, w, ts[k], want, N) == LOOM_OK);
        CHECK_MSG(memcmp(got, want, n) == 0, "quantize-on-load to %s", loom_dtype_name(ts[k]));
        /* and it dequantizes back near the input */
        float back[N];
        CHECK(loom_convert(ts[k], got, LOOM_F32, back, N) == LOOM_OK);
        double num = 0, den = 0;
        for (int i = 0; i < N; i++) {
            num += (back[i] - w[i]) * (double)(back[i] - w[i]);
            den += (double)w[i] * w[i];
        }
        CHECK_MSG(num / den < 0.02, "%s nmse %g", loom_dtype_name(ts[k]), num / den);
        free(got);
        free(want);
    }
    loom_safetensors_close(st);
    free(b.p);
}

static void test_edge_valid(void) {
    loom_safetensors *st = NULL;
    char err[256];
    /* no tensors at all */
    buf b = make_st("{}", NULL, 0);
    CHECK(loom_safetensors_open_memory(b.p, b.n, &st, err, sizeof err) == LOOM_OK);
    CHECK(st && loom_safetensors_n_tensors(st) == 0 && loom_safetensors_find(st, "a") == -1);
    loom_safetensors_close(st);
    free(b.p);
    /* a scalar and an empty tensor sharing offset 4 */
    float one = 1.0f;
    b = make_st("{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                "\"e\":{\"dtype\":\"F16\",\"shape\":[0,4],\"data_offsets\":[4,4]}}",
                &one, 4);
    CHECK_MSG(loom_safetensors_open_memory(b.p, b.n, &st, err, sizeof err) == LOOM_OK, "%s", err);
    loom_st_tensor_info ti;
    if (st) {
        CHECK(loom_safetensors_tensor(st, 0, &ti) == LOOM_OK && ti.n_dims == 0 &&
              ti.n_elements == 1 && ti.ne[0] == 1);
        CHECK(loom_safetensors_tensor(st, 1, &ti) == LOOM_OK && ti.n_elements == 0 &&
              ti.ne[0] == 4 && ti.ne[1] == 0);
        float f;
        CHECK(loom_safetensors_read(st, 0, LOOM_F32, &f, 4) == LOOM_OK && f == 1.0f);
    }
    loom_safetensors_close(st);
    free(b.p);
}

static void test_malformed(void) {
    uint8_t tiny[5] = {1, 2, 3, 4, 5};
    expect_bad("too short", (buf){memcpy(malloc(5), tiny, 5), 5}, LOOM_ERR_FORMAT, "too short");
    expect_bad("empty", (buf){malloc(1), 0}, LOOM_ERR_FORMAT, "too short");
    buf b = make_st("{}", NULL, 0);
    b.p[5] = 0x10; /* header length 2^40 + 2 */
    expect_bad("absurd header length", b, LOOM_ERR_FORMAT, "absurd");
    b = make_st("{}", NULL, 0);
    b.p[0] = 3; /* 3 > 2 bytes present */
    expect_bad("header past end", b, LOOM_ERR_FORMAT, "past the end");
    expect_bad_hdr("array", "[1,2]", 0, "'{'");
    expect_bad_hdr("leading space", " {}", 0, "'{'");
    expect_bad_hdr("invalid json", "{\"a\":", 0, "not valid JSON");
    expect_bad_hdr("garbage after json", "{} x", 0, "after the header");
    {
        buf z = make_st("{}  ", NULL, 0);
        z.p[8 + 2] = '\0';
        expect_bad("NUL padding", z, LOOM_ERR_FORMAT, "after the header");
    }
    expect_bad_hdr("tensor not object", "{\"a\":3}", 0, "'a'");
    expect_bad_hdr("no dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype");
    expect_bad_hdr("unknown dtype",
                   "{\"a\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "F7");
    expect_bad_hdr("no shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "shape");
    expect_bad_hdr("negative dim",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                   "shape[0]");
    expect_bad_hdr("fraction dim",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
                   "shape[0]");
    expect_bad_hdr("string dim",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4,
                   "shape[0]");
    expect_bad_hdr("huge dims",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                   "\"data_offsets\":[0,4]}}",
                   4, "too large");
    expect_bad_hdr("5 dims",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                   "dims");
    expect_bad_hdr("3 offsets",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4,
                   "data_offsets");
    expect_bad_hdr("offsets 1e300",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,1e300]}}", 4,
                   "data_offsets");
    expect_bad_hdr("end before begin",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4,
                   "before begin");
    expect_bad_hdr("size mismatch",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
                   "needs 8");
    expect_bad_hdr("overlap",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                   12, "overlaps tensor 'a'");
    expect_bad_hdr("hole",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                   12, "hole");
    expect_bad_hdr("out of file",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 15,
                   "past the end");
    expect_bad_hdr("trailing bytes",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 9,
                   "trailing");
    expect_bad_hdr("data but no tensors", "{}", 3, "no tensors");
    expect_bad_hdr("duplicate name",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                   8, "duplicate tensor name 'a'");
    expect_bad_hdr("duplicate metadata", "{\"__metadata__\":{},\"__metadata__\":{}}", 0,
                   "duplicate");
    expect_bad_hdr("metadata not object", "{\"__metadata__\":[]}", 0, "__metadata__");
    expect_bad_hdr("metadata value", "{\"__metadata__\":{\"k\":1}}", 0, "'k'");
    /* truncation of a valid file at every length is an error, never a crash */
    float v[8] = {0};
    buf full =
        make_st("{\"x\":{\"dtype\":\"F32\",\"shape\":[2,4],\"data_offsets\":[0,32]}}", v, sizeof v);
    for (size_t n = 0; n < full.n; n++) {
        uint8_t *c = malloc(n ? n : 1);
        memcpy(c, full.p, n);
        loom_safetensors *st = NULL;
        char err[256] = "";
        CHECK(loom_safetensors_open_memory(c, n, &st, err, sizeof err) == LOOM_ERR_FORMAT &&
              st == NULL && err[0]);
        free(c);
    }
    free(full.p);

    /* files */
    loom_safetensors *st = NULL;
    char err[512];
    CHECK(loom_safetensors_open(tpath("does-not-exist.safetensors"), &st, err, sizeof err) ==
          LOOM_ERR_IO);
    CHECK(st == NULL && strstr(err, "does-not-exist"));
    write_file(tpath("empty.safetensors"), "", 0);
    CHECK(loom_safetensors_open(tpath("empty.safetensors"), &st, err, sizeof err) ==
          LOOM_ERR_FORMAT);
    CHECK(strstr(err, "empty.safetensors") != NULL);
    CHECK(loom_safetensors_open(NULL, &st, err, sizeof err) == LOOM_ERR_INVALID_ARG);
}

/* Shard k holds tensors named by names[k] (each F32 [2] = {k, k}). */
static void write_shard(const char *file, const char *const *names, int n, float val) {
    char hdr[1024] = "{";
    float data[16];
    for (int i = 0; i < n; i++) {
        char m[200];
        snprintf(m, sizeof m, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[%d,%d]}",
                 i ? "," : "", names[i], 8 * i, 8 * i + 8);
        strcat(hdr, m);
        data[2 * i] = data[2 * i + 1] = val;
    }
    strcat(hdr, "}");
    buf b = make_st(hdr, data, (size_t)n * 8);
    write_file(tpath(file), b.p, b.n);
    free(b.p);
}

static void test_sharded(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/sharded", tmpdir);
    mkdir(dir, 0700);
    const char *s1[] = {"model.embed_tokens.weight", "model.layers.0.a"};
    const char *s2[] = {"model.layers.0.b", "lm_head.weight", "extra"};
    write_shard("sharded/model-00001-of-00002.safetensors", s1, 2, 1.0f);
    write_shard("sharded/model-00002-of-00002.safetensors", s2, 3, 2.0f);
    const char *idx = "{\"metadata\":{\"total_size\":40},\"weight_map\":{"
                      "\"lm_head.weight\":\"model-00002-of-00002.safetensors\","
                      "\"model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\","
                      "\"model.layers.0.a\":\"model-00001-of-00002.safetensors\","
                      "\"model.layers.0.b\":\"model-00002-of-00002.safetensors\"}}";
    write_file(tpath("sharded/model.safetensors.index.json"), idx, strlen(idx));
    for (int via_dir = 0; via_dir < 2; via_dir++) {
        loom_safetensors *st = NULL;
        char err[512] = "";
        loom_status s = loom_safetensors_open(
            via_dir ? dir : tpath("sharded/model.safetensors.index.json"), &st, err, sizeof err);
        CHECK_MSG(s == LOOM_OK, "sharded open: %s", err);
        if (!st) continue;
        CHECK(loom_safetensors_n_shards(st) == 2 && loom_safetensors_n_tensors(st) == 5);
        loom_st_tensor_info ti;
        int64_t i = loom_safetensors_find(st, "lm_head.weight");
        CHECK(i >= 0 && loom_safetensors_tensor(st, i, &ti) == LOOM_OK && ti.shard == 1);
        CHECK(memcmp(ti.data, &(float){2.0f}, 4) == 0);
        float f[2];
        i = loom_safetensors_find(st, "model.embed_tokens.weight");
        CHECK(loom_safetensors_read(st, i, LOOM_F32, f, sizeof f) == LOOM_OK && f[1] == 1.0f);
        CHECK(loom_safetensors_find(st, "extra") >= 0); /* in a shard, not in the map */
        loom_safetensors_close(st);
    }

    struct {
        const char *what, *index;
        loom_status want;
        const char *needle;
    } bad[] = {
        {"wrong shard",
         "{\"weight_map\":{\"lm_head.weight\":\"model-00001-of-00002.safetensors\"}}",
         LOOM_ERR_FORMAT, "lm_head.weight"},
        {"missing tensor", "{\"weight_map\":{\"nope\":\"model-00001-of-00002.safetensors\"}}",
         LOOM_ERR_FORMAT, "nope"},
        {"missing shard", "{\"weight_map\":{\"a\":\"model-00009-of-00009.safetensors\"}}",
         LOOM_ERR_IO, "model-00009-of-00009"},
        {"path escape", "{\"weight_map\":{\"a\":\"../x.safetensors\"}}", LOOM_ERR_FORMAT,
         "same directory"},
        {"no weight_map", "{\"metadata\":{}}", LOOM_ERR_FORMAT, "weight_map"},
        {"empty weight_map", "{\"weight_map\":{}}", LOOM_ERR_FORMAT, "empty"},
        {"not json", "{\"weight_map\":", LOOM_ERR_FORMAT, "JSON"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        write_file(tpath("sharded/bad.index.json"), bad[k].index, strlen(bad[k].index));
        loom_safetensors *st = NULL;
        char err[512] = "";
        loom_status s =
            loom_safetensors_open(tpath("sharded/bad.index.json"), &st, err, sizeof err);
        CHECK_MSG(s == bad[k].want && st == NULL, "%s: %d (%s)", bad[k].what, s, err);
        CHECK_MSG(strstr(err, bad[k].needle) != NULL, "%s: '%s' lacks '%s'", bad[k].what, err,
                  bad[k].needle);
        loom_safetensors_close(st);
    }
    /* the same name in two shards */
    const char *dup[] = {"model.layers.0.a"};
    write_shard("sharded/dup.safetensors", dup, 1, 3.0f);
    const char *di = "{\"weight_map\":{\"model.layers.0.a\":\"model-00001-of-00002.safetensors\","
                     "\"x\":\"dup.safetensors\"}}";
    write_file(tpath("sharded/bad.index.json"), di, strlen(di));
    loom_safetensors *st = NULL;
    char err[512] = "";
    CHECK(loom_safetensors_open(tpath("sharded/bad.index.json"), &st, err, sizeof err) ==
          LOOM_ERR_FORMAT);
    CHECK_MSG(strstr(err, "duplicate tensor name 'model.layers.0.a'"), "%s", err);

    /* a directory with neither file */
    char empty[600];
    snprintf(empty, sizeof empty, "%s/nothing", tmpdir);
    mkdir(empty, 0700);
    CHECK(loom_safetensors_open(empty, &st, err, sizeof err) == LOOM_ERR_IO);
    CHECK(strstr(err, "model.safetensors") != NULL);
    rmdir(empty);
    const char *rm[] = {"sharded/model-00001-of-00002.safetensors",
                        "sharded/model-00002-of-00002.safetensors",
                        "sharded/model.safetensors.index.json", "sharded/bad.index.json",
                        "sharded/dup.safetensors"};
    for (size_t k = 0; k < sizeof rm / sizeof rm[0]; k++)
        unlink(tpath(rm[k]));
    rmdir(dir);
}

/* ------------------------------------------------------------ config.json */

static const char *mixtral_8x7b =
    "{\"architectures\":[\"MixtralForCausalLM\"],\"attention_dropout\":0.0,\"bos_token_id\":1,"
    "\"eos_token_id\":2,\"hidden_act\":\"silu\",\"hidden_size\":4096,\"initializer_range\":0.02,"
    "\"intermediate_size\":14336,\"max_position_embeddings\":32768,\"model_type\":\"mixtral\","
    "\"num_attention_heads\":32,\"num_experts_per_tok\":2,\"num_hidden_layers\":32,"
    "\"num_key_value_heads\":8,\"num_local_experts\":8,\"output_router_logits\":false,"
    "\"rms_norm_eps\":1e-05,\"rope_theta\":1000000.0,\"router_aux_loss_coef\":0.02,"
    "\"sliding_window\":null,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\","
    "\"transformers_version\":\"4.36.0.dev0\",\"use_cache\":true,\"vocab_size\":32000}";

static void expect_cfg_bad(const char *base, const char *from, const char *to, loom_status want,
                           const char *needle) {
    char *j = test_replace(base, from, to);
    CHECK_MSG(j != NULL, "edit '%s' not found", from);
    if (!j) return;
    loom_model_config c;
    char err[512] = "";
    loom_status s = loom_hf_config_parse(j, strlen(j), &c, err, sizeof err);
    CHECK_MSG(s == want, "'%s'->'%s': status %d want %d (%s)", from, to, s, want, err);
    CHECK_MSG(strstr(err, needle) != NULL, "'%s'->'%s': '%s' lacks '%s'", from, to, err, needle);
    free(j);
}

static void test_hf_config(void) {
    loom_model_config c;
    char err[512] = "";
    loom_status s = loom_hf_config_parse(hf_config_llama31_8b, strlen(hf_config_llama31_8b), &c,
                                         err, sizeof err);
    CHECK_MSG(s == LOOM_OK, "llama: %s", err);
    loom_model_config p;
    CHECK(loom_model_config_preset("llama3-8b", &p, NULL, 0) == LOOM_OK);
    CHECK(c.dim == p.dim && c.n_layers == p.n_layers && c.n_heads == p.n_heads &&
          c.n_kv_heads == p.n_kv_heads && c.head_dim == p.head_dim && c.ffn_dim == p.ffn_dim &&
          c.vocab_size == p.vocab_size && c.max_ctx == p.max_ctx && !c.tie_embeddings);
    CHECK(c.rms_eps == p.rms_eps);
    CHECK(memcmp(&c.rope, &p.rope, sizeof c.rope) == 0); /* neox, 500000, llama3 8/1/4/8192 */
    CHECK(c.n_experts == 0);
    CHECK(c.bos_id == 128000 && c.eos_id == 128001 && c.eot_id == 128009);

    s = loom_hf_config_parse(mixtral_8x7b, strlen(mixtral_8x7b), &c, err, sizeof err);
    CHECK_MSG(s == LOOM_OK, "mixtral: %s", err);
    CHECK(c.n_experts == 8 && c.n_experts_used == 2 && c.moe_every == 1 && c.moe_offset == 0 &&
          c.expert_ffn_dim == 14336 && c.rope.scaling == LOOM_ROPE_SCALING_NONE &&
          c.rope.theta == 1e6f && c.head_dim == 128 && c.eos_id == 2 && c.eot_id == -1);
    for (int64_t l = 0; l < c.n_layers; l++)
        CHECK(loom_model_config_layer_is_moe(&c, l));

    /* defaults: no kv heads -> MHA; no rope_scaling; head_dim explicit */
    const char *minimal = "{\"model_type\":\"llama\",\"vocab_size\":256,\"hidden_size\":64,"
                          "\"intermediate_size\":128,\"num_hidden_layers\":2,"
                          "\"num_attention_heads\":4,\"head_dim\":32,\"rope_scaling\":null,"
                          "\"bos_token_id\":null}";
    s = loom_hf_config_parse(minimal, strlen(minimal), &c, err, sizeof err);
    CHECK_MSG(s == LOOM_OK, "minimal: %s", err);
    CHECK(c.n_kv_heads == 4 && c.head_dim == 32 && c.rope.n_dims == 32 && c.rms_eps == 1e-6f &&
          c.rope.theta == 10000.0f && c.max_ctx == 2048 && c.bos_id == -1 && c.eos_id == 2);

    const char *L = hf_config_llama31_8b;
    expect_cfg_bad(L, "\"hidden_size\":4096,", "", LOOM_ERR_FORMAT, "hidden_size is missing");
    expect_cfg_bad(L, "\"hidden_size\":4096", "\"hidden_size\":\"4096\"", LOOM_ERR_FORMAT,
                   "hidden_size must be an integer");
    expect_cfg_bad(L, "\"num_key_value_heads\":8", "\"num_key_value_heads\":6",
                   LOOM_ERR_INVALID_ARG, "n_heads (32) must be a multiple of n_kv_heads (6)");
    expect_cfg_bad(L, "\"num_hidden_layers\":32", "\"num_hidden_layers\":0", LOOM_ERR_INVALID_ARG,
                   "n_layers must be positive");
    expect_cfg_bad(L, "\"num_attention_heads\":32", "\"num_attention_heads\":0",
                   LOOM_ERR_INVALID_ARG, "num_attention_heads");
    expect_cfg_bad(L, "\"rope_type\":\"llama3\"", "\"rope_type\":\"yarn\"", LOOM_ERR_UNSUPPORTED,
                   "yarn");
    expect_cfg_bad(L, "\"low_freq_factor\":1.0", "\"low_freq_factor\":5.0", LOOM_ERR_INVALID_ARG,
                   "low_freq_factor");
    expect_cfg_bad(L, "\"factor\":8.0,", "", LOOM_ERR_FORMAT, "rope_scaling.factor is missing");
    expect_cfg_bad(L, "\"original_max_position_embeddings\":8192",
                   "\"original_max_position_embeddings\":0", LOOM_ERR_INVALID_ARG,
                   "original_max_position_embeddings");
    expect_cfg_bad(L, "\"rms_norm_eps\":1e-05", "\"rms_norm_eps\":0", LOOM_ERR_INVALID_ARG,
                   "rms_eps");
    expect_cfg_bad(L, "\"hidden_act\":\"silu\"", "\"hidden_act\":\"gelu\"", LOOM_ERR_UNSUPPORTED,
                   "hidden_act");
    expect_cfg_bad(L, "\"attention_bias\":false", "\"attention_bias\":true", LOOM_ERR_UNSUPPORTED,
                   "attention_bias");
    expect_cfg_bad(L, "\"tie_word_embeddings\":false", "\"tie_word_embeddings\":1", LOOM_ERR_FORMAT,
                   "tie_word_embeddings");
    expect_cfg_bad(L, "\"model_type\":\"llama\"", "\"model_type\":\"qwen2\"", LOOM_ERR_UNSUPPORTED,
                   "qwen2");
    expect_cfg_bad(L, "\"bos_token_id\":128000", "\"bos_token_id\":999999", LOOM_ERR_INVALID_ARG,
                   "bos_id");
    const char *M = mixtral_8x7b;
    expect_cfg_bad(M, "\"num_experts_per_tok\":2", "\"num_experts_per_tok\":9",
                   LOOM_ERR_INVALID_ARG, "n_experts_used (9)");
    expect_cfg_bad(M, "\"sliding_window\":null", "\"sliding_window\":4096", LOOM_ERR_UNSUPPORTED,
                   "sliding_window");
    CHECK(loom_hf_config_parse("[1]", 3, &c, err, sizeof err) == LOOM_ERR_FORMAT);
    CHECK(loom_hf_config_parse("{", 1, &c, err, sizeof err) == LOOM_ERR_FORMAT);
    CHECK(strstr(err, "JSON") != NULL);

    /* from a file and from its directory */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/cfg", tmpdir);
    mkdir(dir, 0700);
    write_file(tpath("cfg/config.json"), mixtral_8x7b, strlen(mixtral_8x7b));
    CHECK(loom_hf_config_load(dir, &c, err, sizeof err) == LOOM_OK && c.n_experts == 8);
    CHECK(loom_hf_config_load(tpath("cfg/config.json"), &c, err, sizeof err) == LOOM_OK);
    CHECK(loom_hf_config_load(tpath("cfg/none.json"), &c, err, sizeof err) == LOOM_ERR_IO);
    unlink(tpath("cfg/config.json"));
    rmdir(dir);
}

int main(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/loom_st_XXXXXX", t && t[0] ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_valid();
    test_quantize_on_load();
    test_edge_valid();
    test_malformed();
    test_sharded();
    test_hf_config();
    unlink(tpath("valid.safetensors"));
    unlink(tpath("empty.safetensors"));
    rmdir(tmpdir);
    return test_summary("test_safetensors");
}
