/* tests/model/test_atomic_write.c - loom_gguf_writer_write replaces its
 * target atomically (ADR 0013), so every caller (export-gguf, init-model,
 * the default-model cache) does:
 *   - a write that fails part-way (injected through the writer's test hook
 *     LOOM_TEST_GGUF_WRITE_FAULT=fail:N, as on a full device: deterministic,
 *     and unlike permission bits it also works as root) returns LOOM_ERR_IO,
 *     leaves the previous file byte for byte and no temporary file;
 *   - a process SIGKILLed mid-write (stopped by the hook's stop:N at a known
 *     offset, and also at random moments) leaves the old complete file or no
 *     file, never a prefix, and the prefix it leaves in its temporary file is
 *     rejected by the loader;
 *   - a successful write replaces the file and keeps its permission bits. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loom/gguf.h"
#include "loom/loom.h"
#include "loom/model.h"
#include "testing.h"

#define FAULT_ENV "LOOM_TEST_GGUF_WRITE_FAULT"

static char dir[256];
static char err[512];

/* A file of generation gen: KV test.generation = gen and one f32 tensor of
 * n values, all equal to gen. */
static loom_status write_gen(const char *path, uint32_t gen, int64_t n, char *msg, size_t msg_n) {
    loom_gguf_writer *w = NULL;
    float *data = malloc((size_t)n * sizeof *data);
    loom_status s = data ? loom_gguf_writer_new(&w) : LOOM_ERR_OOM;
    for (int64_t i = 0; data && i < n; i++)
        data[i] = (float)gen;
    int64_t ne[1] = {n};
    if (s == LOOM_OK) s = loom_gguf_writer_set_u32(w, "test.generation", gen);
    if (s == LOOM_OK) s = loom_gguf_writer_add_tensor(w, "w", LOOM_F32, 1, ne, data);
    if (s == LOOM_OK) s = loom_gguf_writer_write(w, path);
    if (msg) snprintf(msg, msg_n, "%s", w ? loom_gguf_writer_error(w) : "");
    loom_gguf_writer_free(w);
    free(data);
    return s;
}

/* path holds a complete generation-gen file of n values: 0; else why not. */
static const char *check_gen(const char *path, uint32_t gen, int64_t n) {
    loom_gguf *g = NULL;
    if (loom_gguf_open(path, &g, err, sizeof err) != LOOM_OK) return "does not load";
    const char *why = NULL;
    uint32_t got = 0;
    int64_t i = loom_gguf_find_tensor(g, "w");
    loom_gguf_tensor_info ti;
    if (loom_gguf_get_u32(g, "test.generation", &got) != LOOM_OK || got != gen)
        why = "wrong generation";
    else if (i < 0 || loom_gguf_tensor(g, i, &ti) != LOOM_OK || ti.ne[0] != n)
        why = "wrong tensor";
    else
        for (int64_t k = 0; k < n && !why; k++)
            if (((const float *)ti.data)[k] != (float)gen) why = "wrong data";
    loom_gguf_close(g);
    return why;
}

static size_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (size_t)sb.st_size : 0;
}

/* Temporary files left in dir (their names, in name, when one). */
static int count_temps(char *name, size_t name_n) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) {
            if (name) snprintf(name, name_n, "%s/%s", dir, e->d_name);
            n++;
        }
    if (d) closedir(d);
    return n;
}

static void test_injected_failures(void) {
    char path[512], msg[512];
    snprintf(path, sizeof path, "%s/fail.gguf", dir);
    const int64_t n_old = 1000, n_new = 50000;

    /* No previous file: a failed write creates nothing. */
    setenv(FAULT_ENV, "fail:100", 1);
    CHECK(write_gen(path, 1, n_new, msg, sizeof msg) == LOOM_ERR_IO);
    unsetenv(FAULT_ENV);
    CHECK(access(path, F_OK) != 0);
    CHECK(count_temps(NULL, 0) == 0);

    CHECK(write_gen(path, 1, n_old, msg, sizeof msg) == LOOM_OK);
    CHECK(check_gen(path, 1, n_old) == NULL);
    const size_t old_size = file_size(path);
    /* Failures in the header, the tensor infos, the data, at the last byte. */
    const size_t at[] = {0, 4, 100, 4096, 100000, (size_t)n_new * 4 - 1};
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        char spec[64];
        snprintf(spec, sizeof spec, "fail:%zu", at[k]);
        setenv(FAULT_ENV, spec, 1);
        loom_status s = write_gen(path, 2, n_new, msg, sizeof msg);
        unsetenv(FAULT_ENV);
        CHECK_MSG(s == LOOM_ERR_IO, "%s: %s", spec, loom_status_str(s));
        CHECK_MSG(strstr(msg, "No space left on device") && strstr(msg, "unchanged"), "%s", msg);
        const char *why = check_gen(path, 1, n_old);
        CHECK_MSG(why == NULL, "%s: the previous file %s", spec, why);
        CHECK(file_size(path) == old_size);
        CHECK_MSG(count_temps(NULL, 0) == 0, "%s left a temporary file", spec);
    }

    /* A missing directory: an error naming the path, nothing created. */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no-such-dir/x.gguf", dir);
    CHECK(write_gen(bad, 1, 10, msg, sizeof msg) == LOOM_ERR_IO);
    CHECK_MSG(strstr(msg, "no-such-dir") && strstr(msg, "No such file"), "%s", msg);

    /* Success replaces the file and keeps its permission bits. */
    CHECK(chmod(path, 0640) == 0);
    CHECK(write_gen(path, 3, n_new, msg, sizeof msg) == LOOM_OK);
    CHECK(check_gen(path, 3, n_new) == NULL);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 07777) == 0640);
    CHECK(count_temps(NULL, 0) == 0);
    unlink(path);
}

/* A child writing generation 2 (n_new values) over path is stopped by the
 * hook after stop_at bytes, then SIGKILLed. */
static void kill_at(const char *path, size_t stop_at, int64_t n_new) {
    pid_t pid = fork();
    if (pid == 0) {
        char spec[64];
        snprintf(spec, sizeof spec, "stop:%zu", stop_at);
        setenv(FAULT_ENV, spec, 1);
        _exit(write_gen(path, 2, n_new, NULL, 0) == LOOM_OK ? 0 : 1);
    }
    CHECK(pid > 0);
    if (pid <= 0) return;
    int st = 0;
    CHECK(waitpid(pid, &st, WUNTRACED) == pid);
    CHECK_MSG(WIFSTOPPED(st), "the writer was not stopped mid-write (status %d)", st);
    /* Mid-write: the temporary file holds exactly the prefix. */
    char tmp[600] = "";
    CHECK(count_temps(tmp, sizeof tmp) == 1);
    CHECK(file_size(tmp) == stop_at);
    kill(pid, SIGKILL);
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    /* The prefix it leaves behind is not a model the loader accepts. */
    loom_gguf *g = NULL;
    CHECK(tmp[0] && loom_gguf_open(tmp, &g, err, sizeof err) != LOOM_OK);
    loom_gguf_close(g);
    unlink(tmp);
}

static void test_killed_mid_write(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/killed.gguf", dir);
    const int64_t n_old = 1000, n_new = 1 << 20; /* 4 MiB of data */

    /* No previous file: after the kill there is still none. */
    kill_at(path, 2u << 20, n_new);
    CHECK(access(path, F_OK) != 0);

    /* A previous file: after the kill it is the old, complete file. */
    CHECK(write_gen(path, 1, n_old, NULL, 0) == LOOM_OK);
    const size_t at[] = {10, 200, 2u << 20};
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        kill_at(path, at[k], n_new);
        const char *why = check_gen(path, 1, n_old);
        CHECK_MSG(why == NULL, "killed at %zu: the previous file %s", at[k], why);
    }

    /* Real timing, no hook: kills at random moments of a write. Whatever the
     * moment, path is generation 1 or a complete generation 2. */
    srand((unsigned)time(NULL));
    int completed = 0;
    for (int it = 0; it < 6; it++) {
        pid_t pid = fork();
        if (pid == 0) _exit(write_gen(path, 2, n_new, NULL, 0) == LOOM_OK ? 0 : 1);
        CHECK(pid > 0);
        if (pid <= 0) return;
        struct timespec ts = {0, (long)(rand() % 40) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        bool old = check_gen(path, 1, n_old) == NULL, new = check_gen(path, 2, n_new) == NULL;
        CHECK_MSG(old || new, "after a kill at random: neither the old nor the new file");
        completed += new;
        /* Back to generation 1 for the next round; drop the killed temp. */
        char tmp[600];
        while (count_temps(tmp, sizeof tmp) > 0)
            unlink(tmp);
        CHECK(write_gen(path, 1, n_old, NULL, 0) == LOOM_OK);
    }
    printf("random kills: %d of 6 writes completed before the kill\n", completed);
    unlink(path);
}

static bool read_all(const char *path, char **buf, size_t *n) {
    FILE *f = fopen(path, "rb");
    *n = file_size(path);
    *buf = f ? malloc(*n + 1) : NULL;
    bool ok = *buf && fread(*buf, 1, *n, f) == *n;
    if (f) fclose(f);
    return ok;
}

/* The model-level writers (export-gguf, init-model and the default-model
 * cache all end in one of these) go through the same atomic write. */
static void test_model_callers(void) {
    char src[512], dst[512];
    snprintf(src, sizeof src, "%s/src.gguf", dir);
    snprintf(dst, sizeof dst, "%s/dst.gguf", dir);
    loom_model_config c;
    CHECK(loom_model_config_preset("tiny-dense", &c, err, sizeof err) == LOOM_OK);
    c.vocab_size = 1024; /* small and quick, so no Llama-3 special tokens */
    c.bos_id = c.eos_id = c.eot_id = -1;
    c.rope.mode = LOOM_ROPE_NORMAL;
    CHECK_MSG(loom_model_write_random_gguf(&c, LOOM_F32, 1, NULL, src, err, sizeof err) == LOOM_OK,
              "%s", err);
    CHECK(loom_model_write_random_gguf(&c, LOOM_Q8_0, 2, NULL, dst, err, sizeof err) == LOOM_OK);
    char *before = NULL, *after = NULL;
    size_t n_before = 0, n_after = 0;
    CHECK(read_all(dst, &before, &n_before));

    setenv(FAULT_ENV, "fail:50000", 1);
    loom_export_params p = {.type = LOOM_F16};
    loom_status s = loom_model_export_gguf(src, dst, &p, NULL, err, sizeof err);
    CHECK_MSG(s == LOOM_ERR_IO && strstr(err, "No space left"), "export: %s", err);
    s = loom_model_write_random_gguf(&c, LOOM_F16, 3, NULL, dst, err, sizeof err);
    CHECK_MSG(s == LOOM_ERR_IO && strstr(err, "No space left"), "init-model: %s", err);
    unsetenv(FAULT_ENV);

    CHECK(read_all(dst, &after, &n_after));
    CHECK(n_after == n_before && before && after && !memcmp(before, after, n_before));
    CHECK(count_temps(NULL, 0) == 0);
    free(before);
    free(after);
    /* Without the fault the export replaces the file. */
    CHECK(loom_model_export_gguf(src, dst, &p, NULL, err, sizeof err) == LOOM_OK);
    CHECK(file_size(dst) != n_before);
    unlink(src);
    unlink(dst);
}

int main(void) {
    const char *base = getenv("TMPDIR") && getenv("TMPDIR")[0] ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/loom_atomic_XXXXXX", base);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", dir, strerror(errno));
        return 1;
    }
    unsetenv(FAULT_ENV);
    test_injected_failures();
    test_killed_mid_write();
    test_model_callers();
    CHECK(count_temps(NULL, 0) == 0);
    rmdir(dir);
    return test_summary("test_atomic_write");
}
