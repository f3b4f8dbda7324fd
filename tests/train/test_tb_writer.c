/* tests/train/test_tb_writer.c - TensorBoard event files (train/tb_writer.c):
 * CRC-32C check value, write + read back through the CRC-checking reader,
 * and corrupted or truncated files rejected with the record's offset.
 *   test_tb_writer            the unit test
 *   test_tb_writer --write D  writes D/events.* with the scalars that
 *                             tests/train/tb_readback.py expects (loss and lr
 *                             for steps 0..19) and prints the file's path */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testing.h"
#include "train/tb_writer.h"

static float loss_at(int s) {
    return 3.0f * expf(-0.1f * (float)s) + 0.25f;
}
static float lr_at(int s) {
    return 2e-4f * (float)(s + 1) / 20.0f;
}

static int write_fixture(const char *dir, char *path, size_t n) {
    char err[512];
    loom_tb_writer *w = NULL;
    if (loom_tb_open(dir, &w, err, sizeof err) != LOOM_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    for (int s = 0; s < 20; s++) {
        if (loom_tb_scalar(w, "train/loss", loss_at(s), s, 1.7e9 + s) != LOOM_OK ||
            loom_tb_scalar(w, "train/lr", lr_at(s), s, 1.7e9 + s) != LOOM_OK)
            return 1;
    }
    snprintf(path, n, "%s", loom_tb_path(w));
    loom_tb_close(w);
    return 0;
}

typedef struct {
    int n_loss, n_lr, bad;
    double last_wall;
} seen;

static void on_scalar(void *ud, const char *tag, float v, int64_t step, double wall) {
    seen *s = ud;
    if (!strcmp(tag, "train/loss")) {
        s->bad += v != loss_at((int)step) || step != s->n_loss;
        s->n_loss++;
    } else if (!strcmp(tag, "train/lr")) {
        s->bad += v != lr_at((int)step);
        s->n_lr++;
    } else {
        s->bad++;
    }
    s->last_wall = wall;
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n);
    if (b && fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

static void spill(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(b, 1, n, f);
    fclose(f);
}

int main(int argc, char **argv) {
    char path[4096], err[512];
    if (argc == 3 && !strcmp(argv[1], "--write")) {
        if (write_fixture(argv[2], path, sizeof path)) return 1;
        printf("%s\n", path);
        return 0;
    }
    CHECK(loom_crc32c("123456789", 9) == 0xe3069283u);
    CHECK(loom_crc32c("", 0) == 0);
    /* RFC 3720 B.4: 32 bytes of zeros -> 8a9136aa. */
    unsigned char z[32] = {0};
    CHECK(loom_crc32c(z, 32) == 0x8a9136aau);

    char dir[] = "/tmp/loom_tb_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK(write_fixture(dir, path, sizeof path) == 0);
    seen s = {0};
    CHECK(loom_tb_read(path, on_scalar, &s, err, sizeof err) == LOOM_OK);
    CHECK(s.n_loss == 20 && s.n_lr == 20 && s.bad == 0);
    CHECK(s.last_wall == 1.7e9 + 19);

    size_t n = 0;
    unsigned char *good = slurp(path, &n);
    CHECK(good && n > 100);
    if (!good) return test_summary("test_tb_writer");
    /* First record: 12 + 26 (wall 9, step 2, file_version 15) + 4 bytes. */
    CHECK(n > 42 && good[0] == 26 && good[12] == 0x09 && !memcmp(good + 25, "brain.Event:2", 13));
    char bad_path[4200];
    snprintf(bad_path, sizeof bad_path, "%s/corrupt.tfevents", dir);
    unsigned char *b = malloc(n);
    /* A flipped payload byte in the third record: CRC mismatch, named. */
    size_t rec1 = 16 + (size_t)good[0], rec2 = rec1 + 16 + (size_t)good[rec1];
    memcpy(b, good, n);
    b[rec2 + 20] ^= 0x40;
    spill(bad_path, b, n);
    memset(&s, 0, sizeof s);
    CHECK(loom_tb_read(bad_path, on_scalar, &s, err, sizeof err) == LOOM_ERR_FORMAT);
    CHECK_MSG(strstr(err, "payload CRC mismatch") != NULL, "%s", err);
    CHECK(s.n_loss == 1); /* the record before it was delivered */
    /* A flipped length byte: the length CRC catches it before any read. */
    memcpy(b, good, n);
    b[rec1] ^= 1;
    spill(bad_path, b, n);
    CHECK(loom_tb_read(bad_path, NULL, NULL, err, sizeof err) == LOOM_ERR_FORMAT);
    CHECK_MSG(strstr(err, "length CRC mismatch") != NULL, "%s", err);
    /* Truncated in the middle of the last record. */
    spill(bad_path, good, n - 3);
    CHECK(loom_tb_read(bad_path, NULL, NULL, err, sizeof err) == LOOM_ERR_FORMAT);
    CHECK_MSG(strstr(err, "truncated") != NULL, "%s", err);
    /* Empty file, bad arguments. */
    spill(bad_path, good, 0);
    CHECK(loom_tb_read(bad_path, NULL, NULL, err, sizeof err) == LOOM_ERR_FORMAT);
    loom_tb_writer *w = NULL;
    CHECK(loom_tb_open("/proc/no/such/dir", &w, err, sizeof err) == LOOM_ERR_IO && !w);
    CHECK(strstr(err, "/proc/no/such/dir") != NULL);
    CHECK(loom_tb_open(dir, &w, err, sizeof err) == LOOM_OK);
    /* A second writer on the same directory in the same second: its own file. */
    loom_tb_writer *w2 = NULL;
    CHECK(loom_tb_open(dir, &w2, err, sizeof err) == LOOM_OK);
    CHECK(w2 && strcmp(loom_tb_path(w), loom_tb_path(w2)) != 0);
    if (w2) remove(loom_tb_path(w2));
    loom_tb_close(w2);
    CHECK(loom_tb_scalar(w, "", 1.0f, 0, -1) == LOOM_ERR_INVALID_ARG);
    CHECK(loom_tb_scalar(w, "x", 1.0f, -1, -1) == LOOM_ERR_INVALID_ARG);
    remove(loom_tb_path(w));
    loom_tb_close(w);
    remove(bad_path);
    remove(path);
    remove(dir);
    free(b);
    free(good);
    return test_summary("test_tb_writer");
}
