/* tests/fuzz/fuzz_safetensors.c - libFuzzer entry for the safetensors reader
 * and the Hugging Face config.json reader.
 *
 * The input is parsed as a safetensors file from memory. When it is accepted,
 * the invariants the validator promises are checked: every tensor lies inside
 * the input, the tensors tile the data buffer exactly, names are unique and
 * findable, shapes multiply to the element count, and small float tensors
 * convert (to f32, and to q8_0 / nf4 when their shape allows) without error.
 * A rejected input must come with a message and no context. The same bytes
 * are then given to loom_hf_config_parse: accepted configs must validate.
 * Invariant failures abort, which libFuzzer and ctest both report.
 *
 * Built as a libFuzzer binary with -DLOOM_FUZZ=ON (clang), and included by
 * tests/model/test_safetensors_fuzz_corpus.c, the plain driver CI runs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ST_FUZZ_REQUIRE(cond)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_safetensors: invariant failed: %s (%s:%d)\n", #cond, __FILE__,   \
                    __LINE__);                                                                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void st_fuzz_tensors(loom_safetensors *st, const uint8_t *data, size_t size) {
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--)
        hn = (hn << 8) | data[i];
    const uint8_t *buf = data + 8 + hn;
    size_t covered = 0;
    int64_t n = loom_safetensors_n_tensors(st);
    for (int64_t i = 0; i < n; i++) {
        loom_st_tensor_info ti;
        ST_FUZZ_REQUIRE(loom_safetensors_tensor(st, i, &ti) == LOOM_OK);
        ST_FUZZ_REQUIRE(ti.name != NULL && loom_safetensors_find(st, ti.name) == i);
        ST_FUZZ_REQUIRE(ti.shard == 0 && ti.n_dims >= 0 && ti.n_dims <= LOOM_ST_MAX_DIMS);
        const uint8_t *p = ti.data;
        ST_FUZZ_REQUIRE(p >= buf && p + ti.nbytes <= data + size);
        int64_t prod = 1;
        for (int d = 0; d < ti.n_dims; d++) {
            ST_FUZZ_REQUIRE(ti.shape[d] >= 0 && ti.ne[ti.n_dims - 1 - d] == ti.shape[d]);
            prod *= ti.shape[d];
        }
        ST_FUZZ_REQUIRE(prod == ti.n_elements && ti.nbytes == (size_t)prod * ti.elem_size);
        covered += ti.nbytes;
        loom_dtype dt;
        loom_status s = loom_safetensors_tensor_dtype(st, i, &dt);
        if (s != LOOM_OK) {
            ST_FUZZ_REQUIRE(s == LOOM_ERR_UNSUPPORTED);
            ST_FUZZ_REQUIRE(strstr(loom_safetensors_error(st), ti.name) != NULL);
            continue;
        }
        ST_FUZZ_REQUIRE(loom_dtype_is_float(dt));
        if (ti.n_elements > (1 << 14)) continue; /* bounded work per input */
        static const loom_dtype targets[] = {LOOM_F32, LOOM_Q8_0, LOOM_NF4_DQ};
        for (size_t k = 0; k < sizeof targets / sizeof targets[0]; k++) {
            size_t need = 0;
            if (loom_safetensors_nbytes_as(st, i, targets[k], &need) != LOOM_OK) {
                ST_FUZZ_REQUIRE(targets[k] != LOOM_F32);
                continue;
            }
            void *out = malloc(need ? need : 1);
            ST_FUZZ_REQUIRE(out != NULL);
            s = loom_safetensors_read(st, i, targets[k], out, need);
            if (s != LOOM_OK)
                fprintf(stderr, "fuzz_safetensors: read failed: %s\n", loom_safetensors_error(st));
            ST_FUZZ_REQUIRE(s == LOOM_OK);
            free(out);
        }
        ST_FUZZ_REQUIRE(loom_safetensors_load_dtype(st, i, LOOM_Q4_0, &dt) == LOOM_OK);
    }
    /* the tensors tile the data buffer: no overlap, no hole, no tail */
    ST_FUZZ_REQUIRE(covered == size - 8 - hn);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    loom_safetensors *st = NULL;
    char err[512];
    err[0] = '\0';
    if (loom_safetensors_open_memory(data, size, &st, err, sizeof err) == LOOM_OK) {
        st_fuzz_tensors(st, data, size);
        loom_safetensors_close(st);
    } else {
        ST_FUZZ_REQUIRE(st == NULL && err[0] != '\0');
    }

    loom_model_config c;
    err[0] = '\0';
    if (loom_hf_config_parse((const char *)data, size, &c, err, sizeof err) == LOOM_OK)
        ST_FUZZ_REQUIRE(loom_model_config_validate(&c, NULL, 0) == LOOM_OK);
    else
        ST_FUZZ_REQUIRE(err[0] != '\0');
    return 0;
}
