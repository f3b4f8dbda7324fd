/* tests/rag/test_rag_fuzz_corpus.c - the index-loader fuzz entry point
 * (tests/fuzz/fuzz_rag_index.c) without libFuzzer: every seed file of
 * tests/fuzz/corpus/rag_index/, freshly written indexes (f32/f16/int8, with
 * and without a graph, with tombstones), and deterministic random mutations
 * of each (bit flips, boundary integers, truncation). CI runs it under
 * ASan/UBSan in the sanitizer build.
 *
 *   test_rag_fuzz_corpus [N_MUTATIONS_PER_INPUT]
 *   test_rag_fuzz_corpus FILE...     replay inputs (e.g. a crash file) */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_rag_index.c"
#include "rag/rag_test_data.h"
#include "testing.h"

static uint64_t rng_state = 12345;

static void run_with_mutations(const uint8_t *in, size_t n, int muts) {
    uint8_t *b = malloc(n + 1);
    if (!b) return;
    b[0] = 0; /* loader */
    memcpy(b + 1, in, n);
    LLVMFuzzerTestOneInput(b, n + 1);
    static const uint64_t interesting[] = {0,
                                           1,
                                           2,
                                           7,
                                           64,
                                           127,
                                           128,
                                           255,
                                           0x7fffffff,
                                           0xffffffffu,
                                           0xfffffff0u,
                                           0x100000000ull,
                                           0xffffffffffffffffull};
    for (int m = 0; m < muts; m++) {
        memcpy(b + 1, in, n);
        size_t len = n;
        for (int e = 0; e < 1 + (int)(rt_next(&rng_state) % 3); e++) {
            uint64_t r = rt_next(&rng_state);
            size_t at = len ? (size_t)(rt_next(&rng_state) % len) : 0;
            /* Mostly the header and table, where the structure lives. */
            if (r % 2 && len > 512) at %= 512;
            switch (r % 5) {
            case 0:
                if (len) b[1 + at] ^= (uint8_t)(1u << (r >> 8) % 8);
                break;
            case 1:
            case 2: {
                uint64_t v = interesting[(r >> 8) % (sizeof interesting / sizeof *interesting)];
                size_t w = r % 5 == 1 ? 4 : 8;
                for (size_t k = 0; k < w && at + k < len; k++)
                    b[1 + at + k] = (uint8_t)(v >> (8 * k));
                break;
            }
            case 3:
                len = at; /* truncate */
                break;
            default:
                if (len) b[1 + at] = (uint8_t)(r >> 16);
            }
        }
        LLVMFuzzerTestOneInput(b, len + 1);
        CHECK(1);
    }
    /* The .npy / raw paths on the same bytes. */
    b[0] = 1;
    LLVMFuzzerTestOneInput(b, n + 1);
    b[0] = 3;
    LLVMFuzzerTestOneInput(b, n + 1);
    free(b);
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(l > 0 ? (size_t)l : 1);
    *n = b && l > 0 ? fread(b, 1, (size_t)l, f) : 0;
    fclose(f);
    return b;
}

int main(int argc, char **argv) {
    int muts = 300;
    if (argc > 1 && argv[1][0] >= '0' && argv[1][0] <= '9') {
        muts = atoi(argv[1]);
    } else if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            size_t n;
            uint8_t *b = slurp(argv[i], &n);
            if (b) LLVMFuzzerTestOneInput(b, n);
            free(b);
        }
        return 0;
    }
    const char *src = getenv("LOOM_SOURCE_DIR");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/rag_index", src ? src : ".");
    DIR *dp = opendir(dir);
    int files = 0;
    if (dp) {
        for (struct dirent *e; (e = readdir(dp));) {
            if (e->d_name[0] == '.') continue;
            char p[1400];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            size_t n;
            uint8_t *b = slurp(p, &n);
            if (!b) continue;
            /* Seed files carry their mode byte already. */
            LLVMFuzzerTestOneInput(b, n);
            if (n > 1 && b[0] == 0) run_with_mutations(b + 1, n - 1, muts / 3);
            free(b);
            files++;
        }
        closedir(dp);
    }
    CHECK_MSG(files > 0, "no seed files in %s", dir);
    /* Fresh indexes of every storage type. */
    char tmpl[] = "/tmp/loom_rag_fuzz_XXXXXX";
    if (!mkdtemp(tmpl)) return 1;
    for (int vt = 0; vt < 3; vt++)
        for (int g = 0; g < 2; g++) {
            const int d = 8, n = 60;
            float *v = rt_mixture(n, d, 4, 0.5f, (uint64_t)(vt * 2 + g));
            loom_rag_index *ix = NULL;
            loom_rag_index_new(d, (loom_rag_vtype)vt, (loom_rag_metric)(vt % 3), &ix);
            loom_rag_meta meta = {.source = "s.md", .title = "t", .tag_str = "x", .byte_end = 3};
            loom_rag_index_add(ix, v, 1, &meta, NULL, NULL);
            loom_rag_index_add(ix, v + d, n - 1, NULL, NULL, NULL);
            loom_rag_index_delete(ix, 5);
            loom_rag_hnsw_params hp = {.M = 4, .ef_construction = 8, .seed = 3};
            if (g) loom_rag_index_build_hnsw(ix, &hp, NULL);
            loom_rag_text_settings ts = {
                .chunk = 32, .overlap = 4, .encoder_dim = d, .normalize = 1};
            if (vt != 1) loom_rag_index_set_text_settings(ix, &ts); /* 1.1 and 1.0 layouts */
            char p[256];
            snprintf(p, sizeof p, "%s/i%d%d.lvi", tmpl, vt, g);
            CHECK(loom_rag_index_save(ix, p) == LOOM_OK);
            size_t sz;
            uint8_t *b = slurp(p, &sz);
            if (b) run_with_mutations(b, sz, muts);
            free(b);
            remove(p);
            loom_rag_index_free(ix);
            free(v);
        }
    remove(tmpl);
    printf("replayed %d seed files and fresh indexes, %d mutations each\n", files, muts);
    return test_summary("test_rag_fuzz_corpus");
}
