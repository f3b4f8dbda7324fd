/* tests/fuzz/fuzz_rag_index.c - libFuzzer entry point for the vector index
 * loader (rag/index_file.c) and the .npy reader (rag/index_npy.c).
 * The first byte picks the parser; the loader runs without the checksums
 * (LOOM_RAG_LOAD_NO_VERIFY) so the fuzzer reaches the structural checks
 * instead of stopping at a CRC, and an index that loads is searched (exact
 * and HNSW) so a check that let a bad id through shows up as a crash.
 * Build: see rag/CMakeLists.txt. Replayed in CI by tests/rag/test_rag_fuzz_corpus.c. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rag/index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t mode = data[0];
    data++, size--;
    char err[256];
    if (mode & 1) {
        loom_rag_matrix m;
        if (loom_rag_matrix_parse(data, size, !(mode & 2), 4, &m, err, sizeof err) == LOOM_OK)
            loom_rag_matrix_free(&m);
        return 0;
    }
    /* The loader wants 64-byte alignment (it uses the bytes in place). */
    void *buf = NULL;
    if (posix_memalign(&buf, 64, size ? size : 1) != 0) return 0;
    if (size) memcpy(buf, data, size);
    loom_rag_index *ix = NULL;
    if (loom_rag_index_load_mem(buf, size, LOOM_RAG_LOAD_NO_VERIFY, &ix, err, sizeof err) ==
        LOOM_OK) {
        const int d = loom_rag_index_dim(ix);
        loom_rag_text_settings ts;
        if (loom_rag_index_text_settings(ix, &ts) && ts.encoder_dim != (uint32_t)d) abort();
        float *q = calloc((size_t)d, sizeof(float));
        if (q) {
            q[0] = 1.0f;
            loom_rag_hit hits[3];
            int n = 0;
            loom_rag_search_params sp = {.k = 3, .ef_search = 8};
            (void)loom_rag_index_search(ix, q, &sp, NULL, hits, &n);
            sp.exact = true;
            (void)loom_rag_index_search(ix, q, &sp, NULL, hits, &n);
            for (int i = 0; i < n; i++) {
                loom_rag_meta m;
                (void)loom_rag_index_meta(ix, hits[i].id, &m);
            }
            free(q);
        }
        loom_rag_index_free(ix);
    }
    free(buf);
    return 0;
}
