/* tests/rag/test_rag_index_file.c - the index file: every truncation and
 * every single-byte corruption of a small index is refused with one line
 * (or, for padding bytes no checksum covers, loads and answers the same);
 * a wrong version and a wrong magic are named; and a writer killed with
 * SIGKILL in the middle of saving leaves the previous file intact; the text
 * settings (format 1.1) round-trip, are checked, and 1.0 files (the fuzz
 * corpus seeds) still load without them. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rag/index.h"
#include "rag/rag_test_data.h"
#include "testing.h"

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = NULL;
    if (l > 0 && posix_memalign((void **)&b, 64, (size_t)l) == 0) *n = fread(b, 1, (size_t)l, f);
    fclose(f);
    return b;
}

static void top3(loom_rag_index *ix, const float *q, uint32_t *ids) {
    loom_rag_hit h[3];
    int n = 0;
    loom_rag_search_params sp = {.k = 3, .ef_search = 16};
    loom_rag_index_search(ix, q, &sp, NULL, h, &n);
    for (int i = 0; i < 3; i++)
        ids[i] = i < n ? h[i].id : 0xffffffffu;
}

static void test_corruption(const char *dir) {
    const int d = 8, n = 50;
    float *v = rt_mixture(n, d, 4, 0.5f, 9);
    loom_rag_index *ix = NULL;
    loom_rag_index_new(d, LOOM_RAG_I8, LOOM_RAG_L2, &ix);
    loom_rag_meta meta = {.source = "doc.md", .title = "T", .byte_end = 10};
    loom_rag_index_add(ix, v, 1, &meta, NULL, NULL);
    loom_rag_index_add(ix, v + d, n - 1, NULL, NULL, NULL);
    loom_rag_hnsw_params hp = {.M = 4, .ef_construction = 8, .seed = 1};
    loom_rag_index_build_hnsw(ix, &hp, NULL);
    loom_rag_index_delete(ix, 2);
    loom_rag_text_settings ts = {.chunk = 64, .overlap = 8, .encoder_dim = 8, .normalize = 1};
    CHECK(loom_rag_index_set_text_settings(ix, &ts) == LOOM_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/c.lvi", dir);
    CHECK(loom_rag_index_save(ix, path) == LOOM_OK);
    uint32_t want[3];
    top3(ix, v + 3 * d, want);
    size_t size = 0;
    uint8_t *good = slurp(path, &size);
    CHECK(good && size > 128);
    if (!good) return;
    uint8_t *b = NULL;
    if (posix_memalign((void **)&b, 64, size)) return;
    char err[256];
    loom_rag_index *lx = NULL;
    /* Every truncation. */
    int trunc_ok = 0;
    for (size_t l = 0; l < size; l++) {
        memcpy(b, good, l);
        err[0] = 0;
        loom_status st = loom_rag_index_load_mem(b, l, 0, &lx, err, sizeof err);
        trunc_ok += st != LOOM_OK && lx == NULL && err[0] && !strchr(err, '\n');
        if (st == LOOM_OK) loom_rag_index_free(lx);
    }
    CHECK_MSG(trunc_ok == (int)size, "%d of %zu truncations refused", trunc_ok, size);
    memcpy(b, good, size);
    loom_rag_index_load_mem(b, size / 2, 0, &lx, err, sizeof err);
    CHECK_MSG(strstr(err, "truncated") != NULL, "%s", err);
    /* Every byte flipped, with and without the checksums. */
    int refused = 0, same = 0, other = 0;
    for (int verify = 1; verify >= 0; verify--)
        for (size_t i = 0; i < size; i++) {
            memcpy(b, good, size);
            b[i] ^= 0x5a;
            lx = NULL;
            if (loom_rag_index_load_mem(b, size, verify ? 0 : LOOM_RAG_LOAD_NO_VERIFY, &lx, err,
                                        sizeof err) != LOOM_OK) {
                refused += verify;
                continue;
            }
            uint32_t got[3];
            top3(lx, v + 3 * d, got); /* must not crash, whatever it answers */
            if (verify) {
                if (!memcmp(got, want, sizeof got))
                    same++;
                else
                    other++;
            }
            loom_rag_index_free(lx);
        }
    printf("byte flips: %d refused, %d loaded (padding) with the same answer, %d different\n",
           refused, same, other);
    CHECK_MSG(other == 0, "%d corruptions loaded and changed the answer", other);
    CHECK(refused > (int)size * 9 / 10);
    /* Version and magic are named. */
    memcpy(b, good, size);
    b[8] = 2;
    loom_rag_index_load_mem(b, size, 0, &lx, err, sizeof err);
    CHECK_MSG(strstr(err, "version 2") != NULL, "%s", err);
    memcpy(b, good, size);
    b[0] = 'X';
    loom_rag_index_load_mem(b, size, 0, &lx, err, sizeof err);
    CHECK_MSG(strstr(err, "bad magic") != NULL, "%s", err);
    /* The file path is named in load errors. */
    snprintf(path, sizeof path, "%s/missing.lvi", dir);
    CHECK(loom_rag_index_load(path, 0, &lx, err, sizeof err) == LOOM_ERR_IO &&
          strstr(err, "missing.lvi"));
    free(b);
    free(good);
    free(v);
    loom_rag_index_free(ix);
}

static bool tmp_left(const char *dir) {
    DIR *d = opendir(dir);
    bool found = false;
    for (struct dirent *e; d && !found && (e = readdir(d));)
        found = strncmp(e->d_name, "k.lvi.tmp", 9) == 0;
    if (d) closedir(d);
    return found;
}

/* A child saves index B over and over onto a path that holds index A; the
 * parent SIGKILLs it at a random moment. The path must then load and be A
 * or B entirely, never a mix. */
static void test_kill_during_write(const char *dir) {
    const int d = 128;
    const size_t na = 3000, nb = 20000;
    float *v = rt_mixture(nb, d, 50, 0.5f, 77);
    char path[512];
    snprintf(path, sizeof path, "%s/k.lvi", dir);
    loom_rag_index *a = NULL;
    loom_rag_index_new(d, LOOM_RAG_F32, LOOM_RAG_IP, &a);
    loom_rag_index_add(a, v, na, NULL, NULL, NULL);
    CHECK(loom_rag_index_save(a, path) == LOOM_OK);
    loom_rag_index_free(a);
    int mid_write = 0;
    uint64_t seed = (uint64_t)time(NULL);
    for (int trial = 0; trial < 6; trial++) {
        int fds[2];
        if (pipe(fds) != 0) return;
        pid_t pid = fork();
        if (pid == 0) {
            loom_rag_index *bx = NULL;
            loom_rag_index_new(d, LOOM_RAG_F32, LOOM_RAG_IP, &bx);
            loom_rag_index_add(bx, v, nb, NULL, NULL, NULL);
            /* Ready: from now on the child does nothing but save. */
            if (write(fds[1], "r", 1) != 1) _exit(1);
            for (;;)
                loom_rag_index_save(bx, path);
        }
        char c1;
        if (read(fds[0], &c1, 1) != 1) c1 = 0;
        close(fds[0]);
        close(fds[1]);
        /* Wait until a save has its temporary file open (the CRCs come
         * first, slow in a sanitizer build), then 0..5 ms more. */
        for (int w = 0; w < 5000 && !tmp_left(dir); w++) {
            struct timespec ms = {0, 1000000L};
            nanosleep(&ms, NULL);
        }
        struct timespec ts = {0, (long)(rt_next(&seed) % 5000) * 1000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        mid_write += tmp_left(dir);
        loom_rag_index *lx = NULL;
        char err[300] = "";
        CHECK_MSG(loom_rag_index_load(path, 0, &lx, err, sizeof err) == LOOM_OK,
                  "after kill %d: %s", trial, err);
        if (lx) {
            uint32_t c = loom_rag_index_count(lx);
            CHECK_MSG(c == na || c == nb, "after kill %d: %u rows", trial, c);
            float row[128];
            loom_rag_index_vector(lx, (uint32_t)(c - 1), row);
            CHECK(!memcmp(row, v + (size_t)(c - 1) * d, sizeof row));
            loom_rag_index_free(lx);
        }
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -f '%s'/k.lvi.tmp.*", dir);
        if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    }
    printf("kill during write: %d of 6 kills landed while a temporary file was being written\n",
           mid_write);
    CHECK_MSG(mid_write >= 3, "no kill landed mid-write: the test did not test anything");
    free(v);
}

/* A copy of n bytes at a 64-byte aligned address (load_mem wants it). */
static uint8_t *aligned_copy(const uint8_t *b, size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 1) != 0) return NULL;
    memcpy(p, b, n);
    return p;
}

static void test_text_settings(const char *dir) {
    const int d = 8, n = 20;
    float *v = rt_mixture(n, d, 2, 0.5f, 4);
    loom_rag_index *ix = NULL;
    loom_rag_index_new(d, LOOM_RAG_F32, LOOM_RAG_COSINE, &ix);
    loom_rag_index_add(ix, v, n, NULL, NULL, NULL);
    CHECK(!loom_rag_index_text_settings(ix, NULL));
    loom_rag_text_settings bad[] = {{.chunk = 0, .encoder_dim = 8},
                                    {.chunk = 16, .overlap = 16, .encoder_dim = 8},
                                    {.chunk = 16, .overlap = 2, .encoder_dim = 9},
                                    {.chunk = 16, .overlap = 2, .encoder_dim = 8, .normalize = 2}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(loom_rag_index_set_text_settings(ix, &bad[i]) == LOOM_ERR_INVALID_ARG &&
              strstr(loom_rag_index_error(ix), "bad text settings"));
    loom_rag_text_settings ts = {.chunk = 200,
                                 .overlap = 20,
                                 .encoder_dim = 8,
                                 .normalize = 1,
                                 .max_tokens = 256},
                           got;
    CHECK(loom_rag_index_set_text_settings(ix, &ts) == LOOM_OK);
    CHECK(loom_rag_index_set_encoder(ix, "minilm") == LOOM_OK);
    char path[512], err[300];
    snprintf(path, sizeof path, "%s/t.lvi", dir);
    CHECK(loom_rag_index_save(ix, path) == LOOM_OK);
    loom_rag_index *lx = NULL;
    CHECK(loom_rag_index_load(path, 0, &lx, err, sizeof err) == LOOM_OK);
    CHECK(lx && loom_rag_index_text_settings(lx, &got) && !memcmp(&got, &ts, sizeof ts));
    loom_rag_index_free(lx);
    size_t size = 0;
    uint8_t *b = slurp(path, &size);
    uint32_t minor = 0, nsec = 0;
    if (b) memcpy(&minor, b + 76, 4), memcpy(&nsec, b + 28, 4);
    CHECK_MSG(minor == 1, "header minor version %u, want 1", minor);
    /* A later minor version's section (an unknown id) is skipped: the text
     * settings section renamed to id 99 loads as an index without them. */
    for (uint32_t i = 0; b && i < nsec; i++) {
        uint32_t id;
        memcpy(&id, b + 128 + 32 * i, 4);
        if (id == 11) {
            id = 99;
            memcpy(b + 128 + 32 * i, &id, 4);
        }
    }
    uint8_t *a = b ? aligned_copy(b, size) : NULL;
    CHECK(a && loom_rag_index_load_mem(a, size, LOOM_RAG_LOAD_NO_VERIFY, &lx, err, sizeof err) ==
                   LOOM_OK);
    CHECK(lx && !loom_rag_index_text_settings(lx, NULL) && loom_rag_index_count(lx) == (uint32_t)n);
    loom_rag_index_free(lx), lx = NULL;
    free(a), free(b);
    /* Format 1.0 files (written before the text settings) still load. */
    const char *src = getenv("LOOM_SOURCE_DIR");
    char seed[1024];
    snprintf(seed, sizeof seed, "%s/tests/fuzz/corpus/rag_index/index_h.lvi.seed", src ? src : ".");
    b = slurp(seed, &size);
    CHECK_MSG(b && size > 129, "cannot read %s", seed);
    if (b && size > 129) {
        memcpy(&minor, b + 1 + 76, 4);
        CHECK_MSG(minor == 0, "%s is not a 1.0 file (minor %u)", seed, minor);
        a = aligned_copy(b + 1, size - 1); /* the seed's first byte is the fuzz mode */
        CHECK_MSG(a && loom_rag_index_load_mem(a, size - 1, 0, &lx, err, sizeof err) == LOOM_OK,
                  "1.0 seed: %s", err);
        CHECK(lx && !loom_rag_index_text_settings(lx, NULL));
        loom_rag_index_free(lx);
        free(a);
    }
    free(b);
    loom_rag_index_free(ix);
    free(v);
}

int main(void) {
    char dir[] = "/tmp/loom_rag_file_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    test_text_settings(dir);
    test_corruption(dir);
    test_kill_during_write(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_summary("test_rag_index_file");
}
